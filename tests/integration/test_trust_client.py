"""The sendmail client on the trust boundary.

The setgid group is lent for one act only: a drop into the maildrop of the
system configuration (/etc/mailrelay/mailrelay.conf).  A configuration a
user names (-C, -c, $MAILRELAY_CONFIG) is read with the user's own rights,
so a file only the group may read is never echoed, and with it the
maildrop is out of reach.  And sendmail never loses a message: when the
conversation with the daemon breaks anywhere before the 250 to the final
dot (no greeting, a lost connection, a 421, a daemon that never answers,
a daemon killed mid-submission), the message goes into the maildrop and
sendmail exits 0; the daemon delivers it once.

The tests that run a setgid copy of the client as uid 65534 against the
system configuration do so in a private mount namespace where a test
directory is bind-mounted on /etc/mailrelay (they need root, as CI has).
"""
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from mrtest import client_env, make_message, one_line, to_crlf, wait_until

SENDER = "sender@example.org"
RCPT = "rcpt@example.net"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
SYSTEM_DIR = "/etc/mailrelay"
SYSTEM_CONF = SYSTEM_DIR + "/mailrelay.conf"
SECRET = "hunter2-never-to-be-printed"
REPLY_DEADLINE = 10         # SUBMIT_REPLY_TIMEOUT in client/sendmail.c


def maildrop_files(d):
    md = os.path.join(d.spool, "maildrop")
    return sorted(os.listdir(md)) if os.path.isdir(md) else []


def group_only_file(path, text):
    """A file as a password_file is kept: 0640, owned by root and the daemon's group."""
    with open(path, "w") as f:
        f.write(text)
    os.chown(path, 0, os.getgid())
    os.chmod(path, 0o640)
    return path


@pytest.fixture
def setgid_client(build, workdir):
    """A copy of the client installed as `make install` does: setgid to the
    daemon's group (root's here, as the test daemons run as root)."""
    assert os.geteuid() == 0, "this test sets up a setgid binary and must run as root (CI does)"
    client = os.path.join(workdir, "sendmail-setgid")
    shutil.copy(build.sendmail, client)
    os.chown(client, 0, os.getgid())
    os.chmod(client, 0o2755)
    return client


class SystemConfig:
    """Runs programs with a test directory in place of /etc/mailrelay."""

    def __init__(self, confdir):
        self.dir = confdir

    def install(self, text):
        return group_only_file(os.path.join(self.dir, "mailrelay.conf"), text)

    def run(self, argv, data=b"", as_nobody=True, env=None, timeout=30):
        script = 'mount --bind "$0" %s && exec "$@"' % SYSTEM_DIR
        cmd = ["unshare", "-m", "sh", "-c", script, self.dir] + (NOBODY if as_nobody else []) + argv
        return subprocess.run(cmd, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=env or client_env(), timeout=timeout)


@pytest.fixture
def system_config(workdir):
    created = not os.path.isdir(SYSTEM_DIR)
    if created:
        os.makedirs(SYSTEM_DIR, exist_ok=True)
    confdir = os.path.join(workdir, "etc-mailrelay")
    os.mkdir(confdir)
    os.chmod(confdir, 0o755)
    yield SystemConfig(confdir)
    if created:
        try:
            os.rmdir(SYSTEM_DIR)
        except OSError:
            pass


# ---------------------------------------------------------------------------
# the group is never lent to the caller's choices

@pytest.mark.setgid
@pytest.mark.parametrize("how", ["-C", "-c", "MAILRELAY_CONFIG"])
def test_named_group_only_file_is_never_printed(setgid_client, workdir, how):
    secret = group_only_file(os.path.join(workdir, "secret"), SECRET + "\n")
    env = client_env()
    argv = [setgid_client, "-i", RCPT]
    if how == "MAILRELAY_CONFIG":
        env["MAILRELAY_CONFIG"] = secret
    else:
        argv[1:1] = [how, secret]
    p = subprocess.run(NOBODY + argv, input=make_message(), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=env, timeout=20)
    assert SECRET.encode() not in p.stdout + p.stderr, p
    assert p.returncode == 78, p
    line = one_line(p.stderr.decode())
    assert secret in line and "Permission denied" in line, line


@pytest.mark.setgid
def test_system_config_error_is_shown_without_its_text_to_those_who_cannot_read_it(
        daemon, setgid_client, system_config):
    d = daemon(start=False)
    system_config.install(d.config_text + SECRET + "\n")
    bad_line = d.config_text.count("\n") + 1
    p = system_config.run([setgid_client, "-i", RCPT], make_message())
    assert SECRET.encode() not in p.stdout + p.stderr, p
    assert p.returncode == 78, p
    line = one_line(p.stderr.decode())
    assert "%s:%d:" % (SYSTEM_CONF, bad_line) in line, line
    assert "mailrelay check-config" in line, line
    # root, who can read the file, is told what is wrong in it
    p = system_config.run([setgid_client, "-i", RCPT], make_message(), as_nobody=False)
    assert p.returncode == 78 and SECRET.encode() in p.stderr, p


@pytest.mark.setgid
@pytest.mark.parametrize("how", ["-C", "MAILRELAY_CONFIG"])
def test_named_config_with_the_daemon_down_never_uses_the_group_for_the_maildrop(
        daemon, smarthost, setgid_client, how):
    d = daemon(smarthost())
    d.stop()
    os.chmod(d.conf, 0o644)
    env = client_env()
    argv = [setgid_client, "-i", RCPT]
    if how == "MAILRELAY_CONFIG":
        env["MAILRELAY_CONFIG"] = d.conf
    else:
        argv[1:1] = ["-C", d.conf]
    p = subprocess.run(NOBODY + argv, input=make_message(subject="not through the group"),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=20)
    assert p.returncode == 75, p
    line = one_line(p.stderr.decode())
    assert "cannot connect" in line and "maildrop" in line and SYSTEM_CONF in line, line
    assert maildrop_files(d) == []


@pytest.mark.setgid
def test_named_config_still_submits_through_the_running_daemon(daemon, smarthost, setgid_client):
    sh = smarthost()
    d = daemon(sh)
    os.chmod(d.conf, 0o644)
    msg = make_message(subject="own config, daemon up")
    p = subprocess.run(NOBODY + [setgid_client, "-C", d.conf, "-i", RCPT], input=msg,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=client_env(), timeout=20)
    assert p.returncode == 0 and p.stderr == b"", p
    assert [t.content for t in sh.wait_for(1)] == [to_crlf(msg)]
    assert d.wait_for_record(uid="65534")


@pytest.mark.setgid
@pytest.mark.parametrize("how", ["default", "-C path", "-C symlink"])
def test_system_config_with_the_daemon_down_drops_and_is_delivered_later(
        daemon, smarthost, setgid_client, system_config, workdir, how):
    """As installed: a user who can read neither the config nor the spool
    still leaves mail in the maildrop through the setgid client, and the
    daemon delivers it when it runs."""
    sh = smarthost()
    d = daemon(sh)
    d.stop()
    system_config.install(d.config_text)
    assert oct(os.stat(d.spool).st_mode & 0o777) == oct(0o710)
    argv = [setgid_client, "-i", RCPT]
    if how == "-C path":
        argv[1:1] = ["-C", SYSTEM_CONF]
    elif how == "-C symlink":
        link = os.path.join(workdir, "link.conf")
        os.symlink(SYSTEM_CONF, link)
        argv[1:1] = ["-C", link]
    msgs = []
    for i in range(5):
        m = make_message(subject="from nobody %d" % i)
        p = system_config.run(argv, m)
        assert p.returncode == 0 and p.stderr == b"", p
        msgs.append(to_crlf(m))
    files = maildrop_files(d)
    assert len(files) == 5, files
    for f in files:
        assert os.stat(os.path.join(d.spool, "maildrop", f)).st_uid == 65534
    # the same user can read neither the drops nor the config
    for path in (os.path.join(d.spool, "maildrop"), os.path.join(system_config.dir, "mailrelay.conf")):
        p = subprocess.run(NOBODY + ["cat", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert p.returncode != 0, p
    d.start()
    sh.wait_for(5, timeout=30)
    assert sorted(t.content for t in sh.delivered()) == sorted(msgs)
    d.wait_queue_empty()
    accepted = [r for r in d.accepted() if r.get("via") == "maildrop"]
    assert {r["uid"] for r in accepted} == {"65534"} and len(accepted) == 5
    # without -f the sender is the submitting user, qualified
    assert {t.mail_from for t in sh.delivered()} == {"nobody@relay.test"}


@pytest.mark.setgid
@pytest.mark.parametrize("mode", [["-bv", "root"], ["-bi"]])
def test_modes_other_than_submitting_read_with_the_users_own_rights(
        daemon, setgid_client, system_config, mode):
    """-bv and -bi read aliases_file after the group is given up: a file
    only the group may read stays closed, and nothing of it is shown."""
    d = daemon(start=False)
    group_only_file(os.path.join(d.dir, "aliases"), "root: %s@example.net\n" % SECRET)
    system_config.install(d.config_text)
    p = system_config.run([setgid_client] + mode)
    assert SECRET.encode() not in p.stdout + p.stderr, p
    assert p.returncode == 77, p
    # root reads it: the file itself is fine
    p = system_config.run([setgid_client] + mode, as_nobody=False)
    assert p.returncode == 0, p


# ---------------------------------------------------------------------------
# a conversation that breaks, or a daemon that does not answer

class StandIn:
    """Stands in for mailrelayd on its submit socket: speaks SMTP as far as
    `step`, then breaks the conversation there (or, with "silent", accepts
    the connection and never says a word until stopped)."""

    def __init__(self, path, step):
        self.path = path
        self.step = step
        self.stopping = threading.Event()
        self.finished = threading.Event()
        self.error = None
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        os.chmod(path, 0o666)
        self.sock.listen(8)
        self.sock.settimeout(30)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            conn, _ = self.sock.accept()
            conn.settimeout(30)
            try:
                self._script(conn, conn.makefile("rb"))
            finally:
                conn.close()
        except Exception as e:       # reported by stop()
            self.error = e
        finally:
            self.finished.set()

    def _script(self, conn, f):
        step = self.step
        if step == "silent":
            self.stopping.wait(60)
            return
        if step == "close_before_greeting":
            return
        if step == "421_at_greeting":
            conn.sendall(b"421 4.3.2 relay.test service shutting down\r\n")
            return
        conn.sendall(b"220 relay.test ESMTP stand-in\r\n")
        replies = [("after_ehlo", b"250-relay.test\r\n250-8BITMIME\r\n250 SIZE 36700160\r\n"),
                   ("after_mail", b"250 2.1.0 Ok\r\n"),
                   ("after_rcpt", b"250 2.1.5 Ok\r\n")]
        for name, reply in replies:
            f.readline()
            if step == name:
                return
            conn.sendall(reply)
        f.readline()                 # DATA
        conn.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
        if step == "during_data":
            f.read(4096)
            return
        while f.readline() not in (b".\r\n", b""):
            pass
        # after_dot: the connection ends without a reply to the dot

    def stop(self):
        self.stopping.set()
        self.finished.wait(10)
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        assert self.error is None, "stand-in for mailrelayd failed: %r" % self.error


BREAKS = ["close_before_greeting", "421_at_greeting", "after_ehlo", "after_mail", "after_rcpt",
          "during_data", "after_dot"]


def stopped_daemon(daemon, sh):
    """A daemon that ran once (its spool and maildrop exist) and is stopped."""
    d = daemon(sh)
    d.stop()
    if os.path.exists(d.submit_sock):
        os.unlink(d.submit_sock)
    return d


def delivered_once_after_start(d, sh, msg):
    d.start()
    t = sh.wait_for(1, timeout=20)
    d.wait_queue_empty()
    assert [x.content for x in sh.delivered()] == [to_crlf(msg)], t
    assert len(d.accepted()) == 1 and d.accepted()[0]["via"] == "maildrop", d.accepted()
    assert maildrop_files(d) == []


@pytest.mark.parametrize("step", BREAKS)
def test_broken_conversation_leaves_the_message_in_the_maildrop(daemon, smarthost, step):
    sh = smarthost()
    d = stopped_daemon(daemon, sh)
    standin = StandIn(d.submit_sock, step)
    # big enough that "during_data" breaks while the client is still writing
    msg = make_message(subject="broken at %s" % step, body=("y" * 99 + "\n") * 3000)
    try:
        r = d.sendmail(["-i", "-f", SENDER, RCPT], msg)
    finally:
        standin.stop()
    assert r.rc == 0 and r.err == b"", r
    assert len(maildrop_files(d)) == 1, maildrop_files(d)
    delivered_once_after_start(d, sh, msg)


@pytest.mark.mailrelay_timeout(60)
def test_silent_daemon_gets_a_short_deadline_then_the_maildrop(daemon, smarthost):
    sh = smarthost()
    d = stopped_daemon(daemon, sh)
    standin = StandIn(d.submit_sock, "silent")
    msg = make_message(subject="nobody answers")
    start = time.monotonic()
    try:
        r = d.sendmail(["-i", "-f", SENDER, RCPT], msg, timeout=REPLY_DEADLINE + 20)
    finally:
        standin.stop()
    elapsed = time.monotonic() - start
    assert r.rc == 0 and r.err == b"", r
    assert elapsed < REPLY_DEADLINE + 5, "sendmail took %.1fs" % elapsed
    assert len(maildrop_files(d)) == 1
    delivered_once_after_start(d, sh, msg)


@pytest.mark.parametrize("reply,code", [(b"450 4.2.1 try later", 75), (b"550 5.1.1 no such user", 67)])
def test_explicit_refusal_keeps_its_exit_code_and_drops_nothing(daemon, smarthost, workdir, reply, code):
    d = stopped_daemon(daemon, smarthost())
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(d.submit_sock)
    sock.listen(1)
    sock.settimeout(20)

    def serve():
        conn, _ = sock.accept()
        with conn, conn.makefile("rb") as f:
            conn.sendall(b"220 stand-in\r\n")
            for answer in (b"250 ok", b"250 ok", reply, b"221 bye"):
                if not f.readline():
                    return
                try:
                    conn.sendall(answer + b"\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    return      # the client left at the refusal, the rest of its group unanswered

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        r = d.sendmail(["-i", "-f", SENDER, RCPT], make_message())
    finally:
        t.join(10)
        sock.close()
        os.unlink(d.submit_sock)
    assert r.rc == code, r
    assert reply.decode()[:3] in one_line(r.err_text)
    assert maildrop_files(d) == []


def connected_unix_socket(pid):
    """Has process pid a connected unix socket (state SS_CONNECTED in /proc/net/unix)?"""
    inodes = set()
    fddir = "/proc/%d/fd" % pid
    try:
        for fd in os.listdir(fddir):
            link = os.readlink(os.path.join(fddir, fd))
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        return False
    with open("/proc/net/unix") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if len(fields) >= 7 and fields[6] in inodes and fields[5] == "03":
                return True
    return False


def test_daemon_killed_during_submission_loses_nothing(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    os.kill(d.proc.pid, signal.SIGSTOP)
    msg = make_message(subject="the daemon died under me")
    p = subprocess.Popen([d.build.sendmail, "-C", d.conf, "-i", "-f", SENDER, RCPT],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=client_env())
    p.stdin.write(msg)
    p.stdin.close()
    # connected, waiting for the greeting of a daemon that is stopped
    wait_until(lambda: connected_unix_socket(p.pid) or p.poll() is not None, 10,
               what="sendmail connected to the stopped daemon")
    assert p.poll() is None
    d.kill()
    rc = p.wait(REPLY_DEADLINE + 10)
    err = p.stderr.read()
    assert rc == 0 and err == b"", (rc, err)
    assert len(maildrop_files(d)) == 1
    d.start()
    sh.wait_for(1, timeout=20)
    d.wait_queue_empty()
    assert [t.content for t in sh.delivered()] == [to_crlf(msg)]


# ---------------------------------------------------------------------------
# a NUL byte

@pytest.mark.parametrize("running", [True, False])
def test_nul_byte_is_refused_at_submission(daemon, smarthost, running):
    sh = smarthost()
    d = daemon(sh)
    if not running:
        d.stop()
    r = d.sendmail(["-i", "-f", SENDER, RCPT], b"Subject: nul\n\nline one\nbefore\0after\n")
    assert r.rc == 65, r
    line = one_line(r.err_text)
    assert "NUL" in line and "line 4" in line, line
    assert maildrop_files(d) == []
    # the next message is the only one that arrives
    ok = make_message(subject="after the NUL")
    assert d.sendmail(["-i", "-f", SENDER, RCPT], ok).rc == 0
    if not running:
        d.start()
    sh.wait_for(1, timeout=20)
    d.wait_queue_empty()
    assert [t.content for t in sh.delivered()] == [to_crlf(ok)]

"""The configuration as a trust boundary (issue 9, point 7).

- Values that go into SMTP commands are bounded when the file is loaded:
  a too long from_address, admin_address, username or password is refused
  with "FILE:LINE: KEY: why" and exit 78 by mailrelayd at start and by
  `mailrelay check-config`, and a SIGHUP reload with one is refused while
  the old configuration keeps working.  A password is never quoted.
- A command that cannot be built (an envelope from the queue too long for
  a MAIL FROM line) fails that attempt with the reason: the daemon lives on.
- Every descriptor of the daemon is close-on-exec: a password_command sees
  only its stdin, stdout and stderr, never the smarthost connection, the
  listeners, accepted clients or the spool.
"""

import os
import re
import shutil
import socket
import subprocess

import pytest

from authsrv import AuthSmarthost
from mrtest import (assert_no_sanitizer_report, client_env, line_of, make_message,
                    message_id_of, one_line, quote, smarthost_opts, to_crlf, wait_until,
                    write_config)

SENDER = "sender@example.org"
RCPT = "rcpt@example.net"
USER = "relay-user@example.org"

# The reproduction: 1,199 + len("@example.com") = 1,211 octets.
LONG_ADDRESS = "f" * 1199 + "@example.com"
# A DNS name of 190 octets: fine for helo_name, one too many for hostname.
HOST_190 = ".".join(["a" * 63, "b" * 63, "c" * 62])
ADDRESS_WHY = ("too long (1211 octets): an address has at most 254 octets, 256 with its <> "
               "(RFC 5321 4.5.3.1.3)")


def shown(value):
    """How a refused value is quoted in the message: its first 80 octets."""
    return '"%s..."' % value[:80] if len(value) > 80 else '"%s"' % value


# (id, top-level overrides, smarthost overrides, key, marker on the bad line, why)
TOO_LONG = [
    ("from_address", {"from_address": quote(LONG_ADDRESS)}, {}, "from_address",
     "from_address =", "%s, got %s" % (ADDRESS_WHY, shown(LONG_ADDRESS))),
    ("admin_address", {"admin_address": quote(LONG_ADDRESS)}, {}, "admin_address",
     "admin_address =", "%s, got %s" % (ADDRESS_WHY, shown(LONG_ADDRESS))),
    ("local_part", {"admin_address": quote("r" * 65 + "@example.com")}, {}, "admin_address",
     "admin_address =", "too long (65 octets): the part before the @ has at most 64 octets "
     "(RFC 5321 4.5.3.1.1), got \"%s@example.com\"" % ("r" * 65)),
    ("hostname", {"hostname": quote(HOST_190)}, {}, "hostname", "hostname =",
     "too long (190 octets): the host name qualifies local names, and with a local part of 64 "
     "octets an address has at most 254, so at most 189 octets, got %s" % shown(HOST_190)),
    ("username", {}, {"username": quote("u" * 256), "password": quote("pw")}, "username",
     "username =", "too long (256 octets): a user name has at most 255 octets (RFC 4616), "
     "got %s" % shown("u" * 256)),
    ("password", {}, {"username": quote(USER), "password": quote("p" * 4097)}, "password",
     "password =", "too long (4097 octets): a password has at most 4096 octets, "
     "to fit the AUTH command"),
    ("identity", {"rewrite_from": "always"},
     {"username": quote("a" * 240 + "@example.org"), "password": quote("pw")}, "username",
     "username =", "with rewrite_from = always and no from_address, mail is sent as this user "
     "name, so it must be an address: too long (240 octets): the part before the @ has at most "
     "64 octets (RFC 5321 4.5.3.1.1), got %s" % shown("a" * 240 + "@example.org")),
]

# Already refused before the length checks; kept so that it stays so.
CONTROL = [
    ("from_address", {"from_address": '"a\\r\\nb@example.com"'}, {}, "from_address",
     "from_address =", 'control characters are not allowed, got "a\\x0d\\x0ab@example.com"'),
    ("helo_name", {}, {"helo_name": '"relay\\r\\nMAIL FROM:<x@y>"'}, "helo_name",
     "helo_name =", 'control characters are not allowed, got "relay\\x0d\\x0aMAIL FROM:<x@y>"'),
    ("add_header", {}, {"add_header": ['"X-A: b\\r\\nBcc: x@y"']}, "add_header",
     "add_header =", 'control characters are not allowed, got "X-A: b\\x0d\\x0aBcc: x@y"'),
    ("password", {}, {"username": quote(USER), "password": '"se\\r\\ncret"'}, "password",
     "password =", "control characters are not allowed"),
]


def run(argv, timeout=15):
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout, env=client_env())
    err = p.stderr.decode("utf-8", "replace")
    assert_no_sanitizer_report(err, argv[0])
    return p.returncode, err


def assert_refused(build, workdir, top, sh_over, key, marker, why):
    path, text = write_config(workdir, top, sh_over)
    want = "%s:%d: %s: %s" % (path, line_of(text, marker), key, why)

    rc, err = run([build.mailrelay, "-c", path, "check-config"])
    assert rc == 78, err
    assert one_line(err) == "mailrelay: " + want, err

    rc, err = run([build.mailrelayd, "-c", path, "-f"])
    assert rc == 78, err
    assert one_line(err) == "mailrelayd: " + want, err
    return err


@pytest.mark.parametrize("case", TOO_LONG, ids=[c[0] for c in TOO_LONG])
def test_too_long_value_is_refused_at_load(build, workdir, case):
    _, top, sh_over, key, marker, why = case
    err = assert_refused(build, workdir, top, sh_over, key, marker, why)
    assert "p" * 100 not in err, "the password was shown: %r" % err


@pytest.mark.parametrize("case", CONTROL, ids=[c[0] for c in CONTROL])
def test_control_characters_are_refused_at_load(build, workdir, case):
    _, top, sh_over, key, marker, why = case
    err = assert_refused(build, workdir, top, sh_over, key, marker, why)
    assert "cret" not in err, "the password was shown: %r" % err


def test_values_at_the_limits_load(build, workdir):
    """The bounds are the RFC's, not tighter: 254 octets with a 64-octet local part,
    a hostname of 189 (64 + '@' + 189 = 254), any DNS name for helo_name."""
    address = "l" * 64 + "@" + ".".join(["a" * 63, "b" * 63, "c" * 61])
    assert len(address) == 254
    hostname = ".".join(["a" * 63, "b" * 63, "c" * 61])
    assert len(hostname) == 189
    path, _ = write_config(workdir, {"from_address": quote(address), "admin_address": quote(address),
                                   "hostname": quote(hostname)},
                         {"username": quote("u" * 255), "password": quote("p" * 4096),
                          "helo_name": quote(HOST_190)})
    rc, err = run([build.mailrelay, "-c", path, "check-config"])
    assert rc == 0, err


def test_sighup_with_too_long_from_address_keeps_the_old_config(daemon, smarthost):
    """Today's crash loop: the reload took the 1,211-octet from_address and the
    next MAIL FROM stopped the daemon.  Now the reload is refused, the old
    config stays, and mail from a local user still goes out."""
    sh = smarthost()
    d = daemon(sh)
    d.client_conf = d.conf + ".good"
    shutil.copyfile(d.conf, d.client_conf)

    text = d.write_config([sh], overrides={"from_address": quote(LONG_ADDRESS)})
    mark = len(d.log_lines())
    d.hup()
    d.wait_for_log(re.escape("mailrelay.conf:%d: from_address: %s"
                             % (line_of(text, "from_address ="), ADDRESS_WHY)), after=mark)
    assert d.alive

    # no -f: the sender is the submitting user, qualified by the old config
    msg = make_message(subject="after a refused reload")
    r = d.sendmail(["-i", RCPT], msg)
    assert r.rc == 0, r
    t = sh.wait_for(1)[0]
    assert t.content == to_crlf(msg)
    assert t.mail_from.endswith("@relay.test") and len(t.mail_from) < 100, t.mail_from
    d.wait_queue_empty()
    assert d.alive


def test_command_too_long_fails_the_attempt_not_the_daemon(daemon, smarthost):
    """An envelope in the queue whose sender does not fit a MAIL FROM line
    (written by hand, or under an older config): the attempt is deferred
    with the reason, the daemon goes on delivering other mail."""
    sh = smarthost()
    d = daemon()                                   # no smarthost: the message waits
    assert d.sendmail(["-i", "-f", SENDER, RCPT], make_message(subject="held")).rc == 0
    qid = d.accepted_id(SENDER)
    d.stop()

    lines = d.envelope_text(qid).split("\n")
    lines = ["sender\t" + LONG_ADDRESS if l.startswith("sender\t") else l for l in lines]
    d.put_envelope(qid, "\n".join(lines))

    d.write_config([sh])
    d.start()
    rec = d.wait_for_record(id=qid, to=RCPT, status="deferred", timeout=15)
    assert "cannot send the MAIL command" in rec["text"], rec
    assert "more than the 1097 this client sends" in rec["text"], rec
    assert d.alive
    q = [m for m in d.queue_json() if m["id"] == qid]
    assert q and q[0]["recipients"][0]["status"] == "pending", q
    assert "cannot send the MAIL command" in q[0]["recipients"][0]["last_reply"], q
    assert sh.delivered() == []

    # and other mail still goes out
    msg = make_message(subject="the next one")
    assert d.sendmail(["-i", "-f", SENDER, RCPT], msg).rc == 0
    wait_until(lambda: sh.find(message_id_of(msg)), 15, what="the next message delivered",
               alive=d.check_alive)
    assert d.alive


# ---------------------------------------------------------------------------
# close-on-exec

@pytest.fixture
def plain_auth_smarthost(request):
    made = []
    request.node._mr_smarthosts = made

    def factory(**kw):
        sh = AuthSmarthost(mechanisms=["PLAIN"], plaintext_auth=True, name="auth%d" % len(made),
                           **kw)
        made.append(sh)
        sh.start()
        return sh

    yield factory
    for sh in made:
        sh.stop()


def fd_listings(directory):
    """{run file: [(fd, target)]} from the `ls -l /proc/self/fd` files of each run."""
    out = {}
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name)) as f:
            fds = []
            for line in f:
                m = re.search(r"\s(\d+) -> (.*)$", line.rstrip("\n"))
                if m:
                    fds.append((int(m.group(1)), m.group(2)))
            out[name] = fds
    return out


def test_password_command_inherits_no_descriptor(daemon, plain_auth_smarthost, workdir):
    """The command lists its open descriptors.  The first token is refused,
    so it runs again in a second session; meanwhile an SMTP client and a
    submit-socket client hold accepted connections open in the daemon.  Each
    run may see 0, 1, 2 and the directory `ls` itself opens, nothing else
    (today: the smarthost socket and a /dev/null)."""
    good = "tok-good-51f0"
    sh = plain_auth_smarthost(credentials={USER: good})
    fddir = os.path.join(workdir, "fds")
    os.mkdir(fddir)
    counter = os.path.join(workdir, "runs")
    command = ("ls -l /proc/self/fd > '%s'/run.$$; echo run >> '%s'; "
               "if [ $(wc -l < '%s') -ge 2 ]; then echo %s; else echo tok-expired; fi"
               % (fddir, counter, counter, good))
    opts = smarthost_opts(sh.port, tls="disabled", timeout="5s", connect_timeout="3s",
                          username=quote(USER), password_command=quote(command),
                          auth_allow_plaintext="yes")
    d = daemon(smarthosts=[("main", opts)])

    held = []
    try:
        tcp = socket.create_connection(("127.0.0.1", d.tcp_port), timeout=5)
        held.append(tcp)
        assert tcp.recv(512).startswith(b"220")
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.settimeout(5)
        unix.connect(d.submit_sock)
        held.append(unix)
        assert unix.recv(512).startswith(b"220")

        msg = make_message(subject="close-on-exec", sender=SENDER, to=(RCPT,))
        assert d.sendmail(["-i", "-f", SENDER, RCPT], msg).rc == 0
        qid = d.accepted_id(SENDER)
        d.wait_for_record(id=qid, to=RCPT, status="sent", timeout=20)
    finally:
        for s in held:
            s.close()

    runs = fd_listings(fddir)
    assert len(runs) >= 2, runs
    for name, fds in runs.items():
        assert [fd for fd, _ in fds][:3] == [0, 1, 2], (name, fds)
        extra = [(fd, target) for fd, target in fds
                 if fd > 2 and not re.fullmatch(r"/proc/\d+/fd", target)]
        assert extra == [], "%s: the password_command inherited %r" % (name, extra)
    assert sh.find(message_id_of(msg))


O_CLOEXEC = 0o2000000


def descriptors(pid):
    """[(fd, flags, target)] of the process's descriptors above 2."""
    out = []
    for name in os.listdir("/proc/%d/fd" % pid):
        fd = int(name)
        if fd <= 2:
            continue
        try:
            with open("/proc/%d/fdinfo/%d" % (pid, fd)) as f:
                flags = int(re.search(r"^flags:\s*([0-7]+)$", f.read(), re.M).group(1), 8)
            target = os.readlink("/proc/%d/fd/%d" % (pid, fd))
        except FileNotFoundError:
            continue                    # closed meanwhile
        out.append((fd, flags, target))
    return out


def test_every_daemon_descriptor_is_close_on_exec(daemon, smarthost):
    """Whatever the daemon holds while it works (listeners, an accepted SMTP
    client, a control client, a delivery in DATA at the smarthost, the spool,
    inotify, the event loop, the resolver) carries close-on-exec; today the
    smarthost connection does not."""
    sh = smarthost()
    sh.hold()                           # the delivery stays in DATA
    d = daemon(sh)
    held = []
    try:
        tcp = socket.create_connection(("127.0.0.1", d.tcp_port), timeout=5)
        held.append(tcp)
        assert tcp.recv(512).startswith(b"220")
        ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ctl.connect(d.control_sock)
        held.append(ctl)

        msg = make_message(subject="in flight")
        assert d.sendmail(["-i", "-f", SENDER, RCPT], msg).rc == 0
        wait_until(lambda: sh.in_data == 1, 10, what="the delivery to reach DATA",
                   alive=d.check_alive)
        fds = descriptors(d.proc.pid)
        assert len([t for _, _, t in fds if t.startswith("socket:")]) >= 4, fds
        leaked = [(fd, t) for fd, flags, t in fds if not flags & O_CLOEXEC]
        assert leaked == [], "descriptors an exec would keep: %r" % leaked
    finally:
        for s in held:
            s.close()
        sh.release()
    sh.wait_for(1)
    d.wait_queue_empty()

"""The sendmail client on the trust boundary.

sendmail never loses a message: when the conversation with the daemon
breaks anywhere before the 250 to the final dot (no greeting, a lost
connection, a 421, a daemon that never answers, a daemon killed
mid-submission), the message goes into the maildrop and sendmail exits 0;
the daemon delivers it once.  What the daemon explicitly refuses keeps its
exit status.  A NUL byte is refused before anything is sent.
"""
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from mrtest import client_env, make_message, one_line, to_crlf, wait_until

SENDER = "sender@example.org"
RCPT = "rcpt@example.net"
REPLY_DEADLINE = 10         # SUBMIT_REPLY_TIMEOUT in client/sendmail.c


def maildrop_files(d):
    md = os.path.join(d.spool, "maildrop")
    return sorted(os.listdir(md)) if os.path.isdir(md) else []


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
                conn.sendall(answer + b"\r\n")

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


def listen_backlog(path):
    """Connections waiting in the listen queue of the unix socket at path."""
    out = subprocess.run(["ss", "-xlnH"], stdout=subprocess.PIPE, universal_newlines=True).stdout
    for line in out.splitlines():
        f = line.split()
        if path in f:
            return int(f[2])
    return 0


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
    wait_until(lambda: listen_backlog(d.submit_sock) >= 1 or p.poll() is not None, 10,
               what="sendmail's connection in the daemon's listen queue")
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

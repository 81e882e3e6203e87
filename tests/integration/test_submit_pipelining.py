"""
The sendmail client's dialogue with mailrelayd, pipelined (RFC 2920).

As soon as it is connected the client sends EHLO, MAIL, every RCPT and
DATA in one write and only then reads the greeting and their replies; after the 354 it sends the
message, the final dot and QUIT in one write, and it exits once the dot
is answered 250, without waiting for the reply to QUIT.  A stand-in for
the daemon on the submit socket records what arrives in each read and
withholds its replies until the whole envelope is in: a client that
waited for a reply first is caught by a bounded wait.

Refusals in the middle of a pipelined group keep their exit codes and
messages (the first refusal is reported), the message is then never sent,
and the real daemon queues nothing; a 421 there still leaves the message
in the maildrop.  Recipients beyond a group of 100 go in further groups,
so that a client with thousands of them never waits on a daemon that
waits for it to read its replies.

On the daemon's side, commands already sent when the connection is
accepted are read at once: the greeting and their replies leave in one
write, so that the client wakes once for them.
"""

import os
import signal
import socket
import threading
import time

import pytest

from mrtest import RawSMTP, make_message, one_line, to_crlf, wait_until

SENDER = "sender@example.org"
ENVELOPE_WAIT = 3.0         # seconds the stand-in waits for the whole envelope
EHLO_REPLY = b"250-relay.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 36700160\r\n"
GREETING = b"220 relay.test ESMTP stand-in\r\n"
QUEUED = b"250 2.0.0 Ok: queued as 0123456789ABCDEF\r\n"


class StandIn:
    """mailrelayd's stand-in on a unix socket, for one connection.

    withhold=True: no reply before "DATA\\r\\n" has arrived (within
    ENVELOPE_WAIT), nor the greeting with greet_late=True; then all the
    envelope's replies at once, the message read to its dot, 250 to the
    dot, and no reply to QUIT: the connection is held until the client
    closes it.

    withhold=False: each command answered as it arrives (a client that
    waits for every reply works with it too); replies = {"MAIL": line,
    "RCPT": [line per recipient], "DATA": line}, 250s and a 354 by
    default; a 421 ends the session, as mailrelayd's does.  Whatever
    arrives after the reply to DATA is recorded.
    """

    def __init__(self, path, withhold=False, replies=None, greet_late=False):
        self.path = path
        self.withhold = withhold
        self.greet_late = greet_late
        self.replies = replies or {}
        self.envelope_reads = []    # what each read returned, greeting to DATA (withhold)
        self.commands = []          # command lines, in order
        self.message_reads = []     # what each read returned after the 354, to the dot and QUIT
        self.after_data = b""       # all that arrived after the reply to DATA
        self.got_quit = False
        self.client_closed = None   # monotonic time the client closed the connection
        self.error = None
        self.finished = threading.Event()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1)
        self.sock.settimeout(20)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            conn, _ = self.sock.accept()
            with conn:
                conn.settimeout(10)
                if not self.greet_late:
                    conn.sendall(GREETING)
                if self.withhold:
                    self._withholding(conn)
                else:
                    try:
                        self._lockstep(conn)
                    except (BrokenPipeError, ConnectionResetError):
                        pass    # the client left at a refusal, replies to the group unread
        except Exception as e:      # reported by the test through stop()
            self.error = e
        finally:
            self.finished.set()

    def _until_closed(self, recv, buf=b""):
        """Read to the end of the connection; QUIT noted, never answered."""
        while True:
            if b"QUIT\r\n" in buf:
                self.got_quit = True
            chunk = recv(65536)
            if not chunk:
                self.client_closed = time.monotonic()
                return
            buf += chunk
            self.after_data += chunk

    def _withholding(self, conn):
        buf = b""
        deadline = time.monotonic() + ENVELOPE_WAIT
        while not buf.endswith(b"DATA\r\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no reply sent, and the envelope did not arrive within "
                                     "%.0fs: the client waits for a reply before sending it all; "
                                     "received %r" % (ENVELOPE_WAIT, buf))
            conn.settimeout(left)
            try:
                chunk = conn.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise AssertionError("the client closed after %r" % buf)
            self.envelope_reads.append(chunk)
            buf += chunk
        conn.settimeout(10)
        self.commands = buf.decode().split("\r\n")[:-1]
        answers = {"EHLO": EHLO_REPLY, "MAIL": b"250 2.1.0 Ok\r\n", "RCPT": b"250 2.1.5 Ok\r\n",
                   "DATA": b"354 End data with <CR><LF>.<CR><LF>\r\n"}
        conn.sendall((GREETING if self.greet_late else b"") +
                     b"".join(answers[c.split()[0]] for c in self.commands))
        buf = b""
        while b"\r\n.\r\n" not in b"\r\n" + buf:
            chunk = conn.recv(65536)
            if not chunk:
                raise AssertionError("the client closed before the dot, after %r" % buf[-200:])
            self.message_reads.append(chunk)
            buf += chunk
        self.after_data = buf
        conn.sendall(QUEUED)
        self._until_closed(conn.recv, buf)

    def _lockstep(self, conn):
        f = conn.makefile("rb")
        nrcpt = 0
        while True:
            line = f.readline()
            if not line:
                return
            self.commands.append(line.decode().rstrip("\r\n"))
            verb = line.split()[0].upper() if line.split() else b""
            answer = ""
            if verb == b"EHLO":
                conn.sendall(EHLO_REPLY)
            elif verb == b"MAIL":
                answer = self.replies.get("MAIL", "250 2.1.0 Ok")
                conn.sendall(answer.encode() + b"\r\n")
            elif verb == b"RCPT":
                rcpts = self.replies.get("RCPT", [])
                answer = rcpts[nrcpt] if nrcpt < len(rcpts) else "250 2.1.5 Ok"
                nrcpt += 1
                conn.sendall(answer.encode() + b"\r\n")
            elif verb == b"DATA":
                answer = self.replies.get("DATA", "354 End data with <CR><LF>.<CR><LF>")
                conn.sendall(answer.encode() + b"\r\n")
                if answer.startswith("354"):
                    # the client must go away without sending the message
                    self._until_closed(f.read1)
                    return
            elif verb == b"QUIT":
                conn.sendall(b"221 2.0.0 Bye\r\n")
                return
            else:
                conn.sendall(b"500 5.5.2 unexpected\r\n")
                continue
            if answer.startswith("421"):
                return          # the session ends with the 421, as mailrelayd's does

    def stop(self):
        self.finished.wait(15)
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        if self.error is not None:
            raise self.error


@pytest.fixture
def standin_daemon(daemon):
    """A daemon that is configured, never started: its submit socket is the stand-in's."""
    return daemon(start=False)


def test_envelope_is_sent_in_one_write_before_any_reply(standin_daemon):
    d = standin_daemon
    s = StandIn(d.submit_sock, withhold=True)
    msg = make_message(subject="pipelined", to=("a@example.net", "b@example.net"))
    try:
        r = d.sendmail(["-i", "-f", SENDER, "a@example.net", "b@example.net"], msg, timeout=15)
    finally:
        s.stop()
    assert [c.split()[0] for c in s.commands] == ["EHLO", "MAIL", "RCPT", "RCPT", "DATA"], s.commands
    assert s.commands[1].startswith("MAIL FROM:<%s> SIZE=" % SENDER), s.commands
    assert s.commands[2:4] == ["RCPT TO:<a@example.net>", "RCPT TO:<b@example.net>"], s.commands
    # the read after the greeting returned the whole envelope: one write
    assert len(s.envelope_reads) == 1, s.envelope_reads
    assert r.rc == 0 and r.err == b"", r


def test_envelope_goes_before_the_greeting_is_read(standin_daemon):
    """The greeting is withheld until the whole envelope is in: a client
    that waited for it would be caught by the stand-in's bounded wait.  The
    session then goes on as usual and the message is queued."""
    d = standin_daemon
    s = StandIn(d.submit_sock, withhold=True, greet_late=True)
    msg = make_message(subject="before the greeting", to=("a@example.net",))
    try:
        r = d.sendmail(["-i", "-f", SENDER, "a@example.net"], msg, timeout=15)
    finally:
        s.stop()
    assert [c.split()[0] for c in s.commands] == ["EHLO", "MAIL", "RCPT", "DATA"], s.commands
    assert len(s.envelope_reads) == 1, s.envelope_reads
    assert r.rc == 0 and r.err == b"", r
    assert to_crlf(msg) in s.after_data.replace(b"\r\n.\r\nQUIT\r\n", b"\r\n"), s.after_data[-200:]


def test_daemon_answers_commands_sent_with_the_connect_in_the_greetings_write(daemon, smarthost):
    """The daemon is stopped (SIGSTOP) while the client connects and sends
    its envelope, so that all of it is there when the connection is
    accepted: the first read then returns the greeting and every reply up
    to the 354 together.  The session goes on as usual.  Five rounds: a
    daemon that wrote the greeting alone would be seen in one of them."""
    sh = smarthost()
    d = daemon(smarthost=sh)
    envelope = ("EHLO client.test\r\nMAIL FROM:<%s>\r\nRCPT TO:<a@example.net>\r\n"
                "RCPT TO:<b@example.net>\r\nDATA\r\n" % SENDER).encode()
    for k in range(5):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        os.kill(d.proc.pid, signal.SIGSTOP)
        try:
            s.connect(d.submit_sock)
            s.sendall(envelope)
        finally:
            os.kill(d.proc.pid, signal.SIGCONT)
        with s:
            first = s.recv(65536)
            lines = first.split(b"\r\n")
            assert lines[0].startswith(b"220 ") and lines[-1] == b"", first
            assert [ln[:4] for ln in lines[1:-1] if not ln.startswith(b"250-")] == \
                [b"250 ", b"250 ", b"250 ", b"250 ", b"354 "], first
            s.sendall(b"Subject: round %d\r\n\r\nHello.\r\n.\r\nQUIT\r\n" % k)
            rest = b""
            while not rest.endswith(b"221 2.0.0 Bye\r\n"):
                chunk = s.recv(4096)
                assert chunk, rest
                rest += chunk
        assert rest.startswith(b"250 2.0.0 Ok: queued as "), rest
    for t in sh.wait_for(5):
        assert sorted(t.rcpt_tos) == ["a@example.net", "b@example.net"], t


def test_message_dot_and_quit_in_one_write_and_no_wait_for_the_221(standin_daemon):
    d = standin_daemon
    s = StandIn(d.submit_sock, withhold=True)
    msg = make_message(subject="one write", body="line one\n.leading dot\n")
    start = time.monotonic()
    try:
        # the stand-in never answers QUIT: a client that waits for it would hang
        r = d.sendmail(["-i", "-f", SENDER, "a@example.net"], msg, timeout=8)
    finally:
        s.stop()
    assert r.rc == 0 and r.err == b"", r
    assert s.client_closed is not None and s.client_closed - start < 5, s.client_closed
    assert len(s.message_reads) == 1, s.message_reads
    sent = s.message_reads[0]
    assert sent.endswith(b"\r\n.\r\nQUIT\r\n"), sent[-100:]
    assert b"\r\n..leading dot\r\n" in sent and b"Subject: one write\r\n" in sent, sent
    assert s.got_quit


# (stand-in replies, exit code, the one line on stderr)
REFUSALS = {
    "mail": ({"MAIL": "550 5.7.1 sender not allowed"}, 67,
             "sender refused: 550 5.7.1 sender not allowed"),
    "second_rcpt": ({"RCPT": ["250 2.1.5 Ok", "550 5.1.1 no such user"]}, 67,
                    "recipient <b@example.net> refused: 550 5.1.1 no such user"),
    "every_rcpt": ({"RCPT": ["553 5.1.3 bad address", "550 5.1.1 no such user"],
                    "DATA": "503 5.5.1 Error: need RCPT command"}, 67,
                   "recipient <a@example.net> refused: 553 5.1.3 bad address"),
    "rcpt_tempfail": ({"RCPT": ["250 2.1.5 Ok", "452 4.5.3 too many recipients"]}, 75,
                      "recipient <b@example.net> refused: 452 4.5.3 too many recipients"),
    "data": ({"DATA": "554 5.3.0 no more today"}, 69, "DATA refused: 554 5.3.0 no more today"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusal_in_the_pipelined_group_exits_with_its_code(standin_daemon, case):
    replies, code, line = REFUSALS[case]
    d = standin_daemon
    s = StandIn(d.submit_sock, replies=replies)
    try:
        r = d.sendmail(["-i", "-f", SENDER, "a@example.net", "b@example.net"],
                       make_message(subject="refused"), timeout=15)
    finally:
        s.stop()
    assert r.rc == code, r
    assert one_line(r.err_text) == "mailrelay-sendmail: " + line
    # after a 354 that followed a refusal the client left without the message
    assert s.after_data == b"", s.after_data[:200]
    assert not os.path.isdir(os.path.join(d.spool, "maildrop")) or \
        os.listdir(os.path.join(d.spool, "maildrop")) == []


@pytest.mark.parametrize("where", ["MAIL", "RCPT", "DATA"])
def test_421_in_the_pipelined_group_leaves_the_message_in_the_maildrop(daemon, smarthost, where):
    sh = smarthost()
    d = daemon(sh)
    d.stop()                    # the spool and its maildrop exist; the stand-in takes the socket
    os.unlink(d.submit_sock)
    bye = "421 4.3.2 relay.test shutting down"
    replies = {"MAIL": {"MAIL": bye}, "RCPT": {"RCPT": ["250 2.1.5 Ok", bye]}, "DATA": {"DATA": bye}}
    s = StandIn(d.submit_sock, replies=replies[where])
    msg = make_message(subject="421 after %s" % where)
    try:
        r = d.sendmail(["-v", "-i", "-f", SENDER, "a@example.net", "b@example.net"], msg, timeout=15)
    finally:
        s.stop()
    assert r.rc == 0, r
    assert r.err_text.splitlines()[-1] == ("mailrelayd closed the session after %s: %s; message left "
                                           "in the maildrop for mailrelayd" % (where, bye)), r
    assert s.after_data == b""
    assert len(os.listdir(os.path.join(d.spool, "maildrop"))) == 1
    d.start()
    t = sh.wait_for(1, timeout=20)[0]
    assert t.content == to_crlf(msg) and sorted(t.rcpt_tos) == ["a@example.net", "b@example.net"]
    assert [a["via"] for a in d.accepted()] == ["maildrop"]


def strict_daemon(daemon, workdir):
    """A daemon with strict_addresses and a 2K max_message_size, and a client
    configuration without either, so that the daemon is the one to refuse."""
    d = daemon(overrides={"strict_addresses": "yes", "max_message_size": "2K"})
    client = os.path.join(workdir, "client.conf")
    with open(client, "w") as f:
        f.write(d.config_text.replace("strict_addresses = yes", "strict_addresses = no")
                .replace("max_message_size = 2K", "max_message_size = 35M"))
    d.client_conf = client
    return d


def assert_nothing_queued(d):
    wait_until(lambda: d.tmp_files() == [], 5, what="no transaction left in spool/tmp")
    assert d.queue_files() == [] and d.queue_json() == []
    assert not d.accepted()


# (arguments, message padding, exit code, the one line on stderr)
REAL_REFUSALS = {
    "mail_size": ([SENDER, "a@example.net"], 3000, 73,
                  "sender refused: 552 5.3.4 Message size exceeds the limit of 2048 bytes"),
    "mail_syntax": (["x..y@example.org", "a@example.net"], 0, 67,
                    "sender refused: 553 5.1.7 Error: bad sender address syntax: "
                    "misplaced dot in the local part (strict_addresses)"),
    "second_rcpt": ([SENDER, "a@example.net", "b..c@example.net"], 0, 67,
                    "recipient <b..c@example.net> refused: 553 5.1.3 Error: bad recipient "
                    "address syntax: misplaced dot in the local part (strict_addresses)"),
    "every_rcpt": ([SENDER, "a@-example.net", "b..c@example.net"], 0, 67,
                   "recipient <a@-example.net> refused: 553 5.1.3 Error: bad recipient "
                   "address syntax: domain label starts or ends with a hyphen (strict_addresses)"),
}


@pytest.mark.parametrize("case", sorted(REAL_REFUSALS))
def test_refusal_by_the_daemon_queues_nothing(daemon, workdir, case):
    (sender, *rcpts), pad, code, line = REAL_REFUSALS[case]
    d = strict_daemon(daemon, workdir)
    body = "Hello.\n" + ("x" * 99 + "\n") * (pad // 100)
    r = d.sendmail(["-i", "-f", sender] + rcpts, make_message(body=body))
    assert r.rc == code, r
    assert one_line(r.err_text) == "mailrelay-sendmail: " + line
    if case == "second_rcpt":
        # DATA was answered 354 for the good recipient: the client left instead of the message
        d.wait_for_log(r"connection lost during DATA; nothing queued")
    assert_nothing_queued(d)
    # the daemon is still fine: the next message goes through
    r = d.sendmail(["-i", "-f", SENDER, "a@example.net"], make_message(subject="after"))
    assert r.rc == 0, r
    assert len(d.accepted()) == 1


def test_queue_file_refused_after_data_exits_75_and_queues_nothing(daemon):
    """A message that fits the daemon's 16 KiB buffer is written straight
    into queue/, one larger goes through tmp/ as it arrives: with tmp/ gone
    under the daemon, the larger one cannot be written and is refused after
    its data (451, exit 75, nothing queued, nothing left in the maildrop),
    and the small one is still accepted."""
    d = daemon()
    os.rmdir(os.path.join(d.spool, "tmp"))
    big = make_message(subject="no tmp", body=("x" * 99 + "\n") * 200)
    r = d.sendmail(["-i", "-f", SENDER, "a@example.net"], big)
    assert r.rc == 75, r
    assert one_line(r.err_text) == ("mailrelay-sendmail: message refused: 451 4.3.0 Error: "
                                    "cannot write the queue file; try again later")
    assert d.queue_files() == [] and not d.accepted()
    assert not os.listdir(os.path.join(d.spool, "maildrop"))
    d.wait_for_log(r"cannot queue message: .*/tmp/[0-9A-F]{16}\.msg: No such file or directory")
    r = d.sendmail(["-i", "-f", SENDER, "a@example.net"], make_message(subject="small"))
    assert r.rc == 0, r
    assert len(d.accepted()) == 1


def test_verbose_transcript_shows_each_command_and_each_reply(daemon):
    d = daemon()
    msg = make_message(subject="transcript")
    r = d.sendmail(["-v", "-i", "-f", SENDER, "a@example.net", "b@example.net"], msg)
    assert r.rc == 0, r
    lines = r.err_text.splitlines()
    sent = [l[4:] for l in lines if l.startswith(">>> ")]
    got = [l[4:] for l in lines if l.startswith("<<< ")]
    assert len(sent) + len(got) == len(lines), lines
    assert [c.split()[0] for c in sent[:5]] == ["EHLO", "MAIL", "RCPT", "RCPT", "DATA"], sent
    assert sent[5].startswith("(") and sent[5].endswith(" bytes of message)"), sent
    assert sent[6:] == [".", "QUIT"], sent
    # each reply once, in the order of the commands; none awaited for QUIT
    codes = [g[:3] for g in got if g[3:4] != "-"]
    assert codes == ["220", "250", "250", "250", "250", "354", "250"], got
    assert got[-1].startswith("250 2.0.0 Ok: queued as "), got
    # the group's commands are all shown before its first reply
    assert lines.index(">>> DATA") < lines.index("<<< " + [g for g in got if g.startswith("250-")][0])
    assert len(d.accepted()) == 1


def test_recipients_beyond_a_group_and_beyond_the_daemons_limit(daemon):
    d = daemon()
    rcpts = ["r%d@example.net" % i for i in range(250)]
    r = d.sendmail(["-i", "-f", SENDER] + rcpts, make_message(subject="many"))
    assert r.rc == 0, r
    assert [a["nrcpt"] for a in d.accepted()] == ["250"], d.accepted()
    # far more recipients than the daemon takes (1,000): the first 452 is reported at once,
    # the groups keep the daemon's unread replies small, nothing waits for anything
    rcpts = ["r%d@example.net" % i for i in range(12000)]
    start = time.monotonic()
    r = d.sendmail(["-i", "-f", SENDER] + rcpts, make_message(subject="too many"))
    assert time.monotonic() - start < 8, r        # a deadlock ends at the client's 10 s deadline
    assert r.rc == 75, r
    assert one_line(r.err_text) == ("mailrelay-sendmail: recipient <r1000@example.net> refused: "
                                    "452 4.5.3 Error: too many recipients")
    assert len(d.accepted()) == 1
    assert not os.listdir(os.path.join(d.spool, "maildrop"))


def test_large_message_is_streamed_intact(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    # about 1.3 MB in lines of every length up to 300, many starting with a dot, so that
    # the 64 KB writes end anywhere in a line, in a CRLF or in a dot's stuffing
    lines = [("." if i % 3 == 0 else "") + "x" * (i % 300) for i in range(9000)]
    msg = make_message(subject="large", body="\n".join(lines) + "\n")
    r = d.sendmail(["-i", "-f", SENDER, "a@example.net"], msg, timeout=60)
    assert r.rc == 0 and r.err == b"", r
    t = sh.wait_for(1, timeout=30)[0]
    assert t.content == to_crlf(msg)


class OlderDaemon(threading.Thread):
    """A daemon from before X-MAILDROP=: it refuses that MAIL parameter with
    555 (the rest of the group then gets 503s), takes the message otherwise."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1)
        self.sock.settimeout(20)
        self.path = path
        self.commands, self.message, self.error = [], b"", None
        self.start()

    def run(self):
        try:
            conn, _ = self.sock.accept()
            with conn:
                conn.settimeout(10)
                f = conn.makefile("rb")
                conn.sendall(b"220 relay.test ESMTP older\r\n")
                have_mail = False
                while True:
                    line = f.readline()
                    if not line:
                        return
                    cmd = line.decode().rstrip("\r\n")
                    self.commands.append(cmd)
                    verb = cmd.split()[0].upper()
                    if verb == "EHLO":
                        conn.sendall(EHLO_REPLY)
                    elif verb == "MAIL" and "X-MAILDROP=" in cmd:
                        conn.sendall(b"555 5.5.4 Unsupported parameter X-MAILDROP\r\n")
                    elif verb == "MAIL":
                        have_mail = True
                        conn.sendall(b"250 2.1.0 Ok\r\n")
                    elif verb in ("RCPT", "DATA") and not have_mail:
                        conn.sendall(b"503 5.5.1 Error: need MAIL command\r\n")
                    elif verb == "RCPT":
                        conn.sendall(b"250 2.1.5 Ok\r\n")
                    elif verb == "DATA":
                        conn.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                        while not self.message.endswith(b"\r\n.\r\n"):
                            chunk = f.readline()
                            if not chunk:
                                return
                            self.message += chunk
                        conn.sendall(QUEUED)
                    elif verb == "QUIT":
                        return
        except Exception as e:
            self.error = e

    def stop(self):
        self.join(15)
        self.sock.close()
        os.unlink(self.path)
        if self.error is not None:
            raise self.error


def test_a_daemon_older_than_x_maildrop_gets_the_mail_command_again_without_it(standin_daemon):
    """The client names the drop it would write in MAIL (X-MAILDROP=); a
    daemon still running from before that parameter answers 555, and the
    client sends MAIL, the RCPTs and DATA again without it: queued, exit 0,
    nothing in the maildrop."""
    d = standin_daemon
    s = OlderDaemon(d.submit_sock)
    try:
        r = d.sendmail(["-i", "-f", SENDER, "a@example.net"], make_message(subject="older"), timeout=15)
    finally:
        s.stop()
    assert r.rc == 0, r
    mails = [c for c in s.commands if c.startswith("MAIL")]
    assert len(mails) == 2 and "X-MAILDROP=" in mails[0] and "X-MAILDROP=" not in mails[1], s.commands
    assert s.message.endswith(b"\r\n.\r\n")
    assert not os.path.isdir(os.path.join(d.spool, "maildrop")) or \
        os.listdir(os.path.join(d.spool, "maildrop")) == []


def test_x_maildrop_is_refused_over_tcp(daemon):
    """X-MAILDROP= is the sendmail client's, on the local socket: over TCP it
    is an unknown parameter."""
    d = daemon()
    c = RawSMTP(socket.AF_INET, ("127.0.0.1", d.tcp_port))
    try:
        assert c.reply()[0] == 220
        assert c.cmd("EHLO client.test")[0] == 250
        code, text = c.cmd("MAIL FROM:<a@example.org> X-MAILDROP=1733288000.123456789.4242")
        assert code == 555 and "X-MAILDROP" in text[0], (code, text)
        assert c.cmd("MAIL FROM:<a@example.org>")[0] == 250     # the session goes on
    finally:
        c.close()

"""What a local client can make mailrelayd hold is bounded (issue 9, point 3).

Each test plays an attacker on the sockets any local user may open (the
unix submit socket, the loopback SMTP listener, the control socket) and
checks what an admin would see: the daemon's resident memory and CPU time
(from /proc), its log, the 421 a client over a limit reads, and a normal
submission going through while the attack runs.  Attacks are bounded in
bytes, connections and seconds, and use loopback and unix sockets only.
"""

import contextlib
import os
import signal
import re
import select
import socket
import subprocess
import threading
import time

import pytest

from mrtest import (RawSMTP, base_config, client_env, free_port, line_of, make_message,
                    message_id_of, render_config, smarthost_opts, vmrss_kib, wait_until)

SENDER = "sender@example.org"
RCPT = "rcpt@example.net"
NOBODY = 65534
MB = 1024 * 1024
QUIET = {"log_level": "info"}           # a flood must not be measured through debug logging


# ---------------------------------------------------------------------------
# helpers

def rss_bound_kb(pid):
    """How much a bounded daemon's VmRSS may grow under a flood: 8 MiB, or
    64 MiB under AddressSanitizer, whose quarantine keeps every freed block
    for a while, so that RSS follows the allocations made, not those kept.
    Over TCP the kernel takes megabytes of replies off the daemon's hands
    (its send buffer), and the commands that produced them churn memory."""
    with open("/proc/%d/maps" % pid) as f:
        asan = "libasan" in f.read()
    return (64 if asan else 8) * 1024


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3): utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def as_user(uid):
    """Act as uid for the connect() calls inside: SO_PEERCRED records the
    effective uid and gid at connect time."""
    os.setegid(uid)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def unix_connect(path, uid=None, blocking=True):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    if not blocking:
        s.setblocking(False)
    try:
        if uid is None:
            s.connect(path)
        else:
            with as_user(uid):
                s.connect(path)
    except BaseException:
        s.close()
        raise
    return s


def tcp_connect(port, source="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def read_line(s, timeout=10.0):
    """One line (without CRLF/LF), or None at EOF."""
    s.settimeout(timeout)
    buf = b""
    while not buf.endswith(b"\n"):
        c = s.recv(1)
        if not c:
            return buf.decode(errors="replace") if buf else None
        buf += c
    return buf.rstrip(b"\r\n").decode(errors="replace")


def read_to_eof(s, timeout=10.0):
    s.settimeout(timeout)
    out = b""
    while True:
        c = s.recv(65536)
        if not c:
            return out.decode(errors="replace")
        out += c


def flood(sock, unit, pid, limit=30 * MB, stall=2.0, max_secs=15.0):
    """Send unit over and over without reading a byte, until limit bytes are
    sent, the socket has not taken a byte for stall seconds (the daemon
    stopped reading) or max_secs pass.  Returns (bytes sent, the daemon's
    largest VmRSS growth in KiB seen meanwhile, whether it stalled)."""
    sock.setblocking(False)
    # Small socket buffers on the attacker's side: the replies the kernel
    # takes off the daemon's hands are few, so what the daemon does with
    # the rest is what is measured (also under ASan, whose quarantine
    # makes RSS follow every allocation made, not only those kept).
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    chunk = memoryview(unit * (65536 // len(unit)))
    base = vmrss_kib(pid)
    sent = peak = 0
    start = last = time.monotonic()
    stalled = False
    while sent < limit and time.monotonic() - start < max_secs:
        try:
            # after a partial send, go on from where it stopped: starting
            # the chunk again would cut a command in two ("NOONOOP")
            sent += sock.send(chunk[sent % len(chunk):])
            last = time.monotonic()
        except BlockingIOError:
            if time.monotonic() - last > stall:
                stalled = True
                break
            select.select([], [sock], [], 0.05)
        peak = max(peak, vmrss_kib(pid) - base)
    peak = max(peak, vmrss_kib(pid) - base)
    return sent, peak, stalled


def finish(sock, unit, sent, last, half_close=False):
    """After flood(), become a client that reads: complete the unit cut by
    the last send, send last (and half-close), and read everything to the
    end meanwhile.  Returns (whole units sent in all, the text read)."""
    sock.setblocking(True)
    sock.settimeout(20)
    rest = (len(unit) - sent % len(unit)) % len(unit)
    got = []
    reader = threading.Thread(target=lambda: got.append(read_to_eof(sock, timeout=20)))
    reader.start()
    sock.sendall(unit[len(unit) - rest:] + last)
    if half_close:
        sock.shutdown(socket.SHUT_WR)
    reader.join(30)
    assert got, "no end of the replies within 30s"
    return (sent + rest) // len(unit), got[0]


def submit_ok(d, sh, subject, timeout=10.0):
    """A normal sendmail submission (as root) succeeds within timeout seconds
    and reaches the smarthost."""
    msg = make_message(subject=subject)
    t0 = time.monotonic()
    r = d.sendmail(["-i", "-f", SENDER, RCPT], msg, timeout=timeout)
    took = time.monotonic() - t0
    assert r.rc == 0, r
    assert took < timeout, took
    wait_until(lambda: message_id_of(msg) in [t.message_id for t in sh.delivered()], 10,
               what="the normal submission at the smarthost")
    return took


def refusals(d, regex):
    return [l for l in d.log_lines() if re.search(regex, l)]


# ---------------------------------------------------------------------------
# replies a client does not read

@pytest.mark.mailrelay_timeout(60)
@pytest.mark.parametrize("where", ["unix", "tcp"])
def test_pipelined_noop_without_reading_does_not_grow_the_daemon(daemon, smarthost, where):
    sh = smarthost()
    d = daemon(sh, overrides=QUIET)
    pid = d.proc.pid
    if where == "unix":
        s = unix_connect(d.submit_sock, uid=NOBODY)
    else:
        s = tcp_connect(d.tcp_port)
    try:
        sent, grew, stalled = flood(s, b"NOOP\r\n", pid)
        print("NOOP flood on %s: %d bytes taken, VmRSS +%d KiB" % (where, sent, grew))
        # the daemon stops reading once its unsent replies pass a bound
        assert stalled, "the daemon read %d bytes of NOOP without its replies being read" % sent
        assert grew < rss_bound_kb(pid), "VmRSS grew by %d KiB under %d bytes of unread NOOPs" % (grew, sent)
        # the attacker's connection is still open: a normal submission goes through meanwhile
        submit_ok(d, sh, "during a NOOP flood on %s" % where)
        # a client that does read gets every reply: the pause loses no command
        n, text = finish(s, b"NOOP\r\n", sent, b"QUIT\r\n")
        assert text.count("250 2.0.0 Ok\r\n") == n, (n, text[-300:])
        assert text.endswith("221 2.0.0 Bye\r\n"), text[-300:]
    finally:
        s.close()
    d.check_alive()


@pytest.mark.mailrelay_timeout(60)
def test_burst_waiting_at_the_accept_is_read_with_the_same_bounds(daemon, smarthost):
    """The listener reads a connection's first input in the accept's turn
    (the greeting then goes out with its replies).  An unprivileged user
    fills the socket before the daemon gets to the accept (the daemon is
    stopped meanwhile): an over-long line and NOOPs it never reads the
    replies to.  The daemon answers the over-long line with a 500 as in any
    turn, stops reading at its bound on unread replies, does not grow, and
    serves a normal submission meanwhile."""
    sh = smarthost()
    d = daemon(sh, overrides=QUIET)
    pid = d.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        s = unix_connect(d.submit_sock, uid=NOBODY)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(b"X" * 3000 + b"\r\n")  # over CMD_LINE_MAX (2,048)
        s.setblocking(False)
        burst = b"NOOP\r\n" * 10000
        try:
            queued = s.send(burst)  # as much as the socket takes before the accept
        except BlockingIOError:
            queued = 0
    finally:
        os.kill(pid, signal.SIGCONT)
    try:
        sent, grew, stalled = flood(s, b"NOOP\r\n", pid)
        assert stalled, "the daemon read %d bytes of NOOP without its replies being read" % (queued + sent)
        assert grew < rss_bound_kb(pid), "VmRSS grew by %d KiB" % grew
        submit_ok(d, sh, "beside a burst read at the accept")
        s.setblocking(True)
        s.settimeout(10)
        head = s.recv(4096)
        assert head.startswith(b"220 "), head[:200]
        assert b"500 5.5.2 Error: line too long\r\n" in head, head[:300]
    finally:
        s.close()
    d.check_alive()


@pytest.mark.mailrelay_timeout(60)
def test_pipelined_status_on_control_socket_without_reading_does_not_grow_the_daemon(daemon):
    d = daemon(None, overrides=QUIET)
    pid = d.proc.pid
    s = unix_connect(d.control_sock, uid=NOBODY)
    try:
        sent, grew, stalled = flood(s, b"STATUS\n", pid)
        print("STATUS flood: %d bytes taken, VmRSS +%d KiB" % (sent, grew))
        assert stalled, "the daemon read %d bytes of STATUS without its answers being read" % sent
        assert grew < rss_bound_kb(pid), "VmRSS grew by %d KiB under %d bytes of unread STATUS" % (grew, sent)
        # other clients are still served meanwhile
        t0 = time.monotonic()
        r = d.mailrelay(["status"], timeout=10)
        assert r.rc == 0, r
        assert "running" in r.out_text, r
        assert time.monotonic() - t0 < 10
        # a client that does read gets every answer: the pause loses no request
        n, text = finish(s, b"STATUS\n", sent, b"", half_close=True)
        assert text.count("\nOK status\n") == n, (n, text[-300:])
    finally:
        s.close()
    d.check_alive()


@pytest.mark.mailrelay_timeout(60)
def test_control_answers_larger_than_the_bound_are_sent_whole(daemon):
    """A client that reads gets every answer in full, however large, even
    with many requests sent at once (the pause for unread answers resumes)."""
    d = daemon(None, overrides=QUIET)
    nlines = 20000
    body = "".join("body line %05d of a long message %s\n" % (i, "x" * 20) for i in range(nlines))
    r = d.sendmail(["-i", "-f", SENDER, RCPT], make_message(subject="long", body=body))
    assert r.rc == 0, r
    qid = d.accepted_id()
    nreq = 4
    s = unix_connect(d.control_sock)
    try:
        s.sendall(("SHOW %s BODY\n" % qid).encode() * nreq + b"STATUS\n" * 3000)
        s.settimeout(20)
        data = b""
        want = nreq + 3000
        while data.count(b"\nOK ") + data.startswith(b"OK ") < want:
            c = s.recv(1 << 20)
            assert c, "connection closed after %d bytes" % len(data)
            data += c
    finally:
        s.close()
    text = data.decode()
    answers = text.split("\nOK %s\n" % qid)
    assert len(answers) == nreq + 1, [a[-200:] for a in answers]
    for a in answers[:nreq]:
        got = re.findall(r"(?m)^D body line (\d{5}) ", a)
        assert len(got) == nlines, len(got)
    assert text.count("\nOK status\n") == 3000


# ---------------------------------------------------------------------------
# max_connections

@pytest.mark.mailrelay_timeout(60)
def test_unix_connections_beyond_max_connections_per_client_get_421(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh, overrides=dict(QUIET, max_connections="10", max_connections_per_client="3"))
    held = []
    try:
        for _ in range(3):
            s = unix_connect(d.submit_sock, uid=NOBODY)
            held.append(s)
            assert read_line(s).startswith("220 "), "a connection within the limit is greeted"
        refused = []
        for _ in range(5):
            s = unix_connect(d.submit_sock, uid=NOBODY)
            refused.append(read_to_eof(s))
            s.close()
        for text in refused:
            assert re.match(r"421 4\.7\.0 relay\.test Error: too many connections from uid 65534 "
                            r"\(max_connections_per_client 3\); try again later\r\n$", text), text
        # one log line for the burst
        d.wait_for_log(r"smtpd: connection from uid 65534 refused")
        lines = refusals(d, r"smtpd: connection from uid 65534 refused: too many connections")
        assert len(lines) == 1, lines
        # another uid is not affected
        submit_ok(d, sh, "while uid 65534 is at its limit")
    finally:
        for s in held:
            s.close()


@pytest.mark.mailrelay_timeout(60)
def test_sendmail_over_the_limit_loses_nothing(daemon, smarthost):
    """A user at max_connections_per_client who runs sendmail once more
    gets the 421, and sendmail leaves the message in the maildrop, from
    where the daemon delivers it: the limit defers mail, never loses it."""
    sh = smarthost()
    d = daemon(sh, overrides=dict(QUIET, max_connections_per_client="2"))
    held = [unix_connect(d.submit_sock) for _ in range(2)]
    try:
        for s in held:
            assert read_line(s).startswith("220 ")
        msg = make_message(subject="over the limit")
        r = d.sendmail(["-i", "-f", SENDER, RCPT], msg)
        assert r.rc == 0, r
        d.wait_for_log(r"connection from uid 0 refused: too many connections "
                       r"\(max_connections_per_client 2\)")
        sh.wait_for(1)
        assert [t.message_id for t in sh.delivered()] == [message_id_of(msg)]
    finally:
        for s in held:
            s.close()


@pytest.mark.mailrelay_timeout(60)
def test_tcp_connections_per_address_and_in_total(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh, overrides=dict(QUIET, max_connections="4", max_connections_per_client="2"))
    held = []
    try:
        for src in ("127.0.0.1", "127.0.0.1"):
            held.append(tcp_connect(d.tcp_port, src))
            assert read_line(held[-1]).startswith("220 ")
        s = tcp_connect(d.tcp_port, "127.0.0.1")
        text = read_to_eof(s)
        s.close()
        assert text.startswith("421 4.7.0 ") and "too many connections from 127.0.0.1" in text, text
        for src in ("127.0.0.2", "127.0.0.2"):
            held.append(tcp_connect(d.tcp_port, src))
            assert read_line(held[-1]).startswith("220 ")
        # four sessions: the limit in total, whoever asks
        s = tcp_connect(d.tcp_port, "127.0.0.3")
        text = read_to_eof(s)
        s.close()
        assert text.startswith("421 4.7.0 ") and "(max_connections 4)" in text, text
        # one session ends: there is room again
        held.pop().close()

        def greeted():
            s = tcp_connect(d.tcp_port, "127.0.0.3")
            try:
                return read_line(s).startswith("220 ")
            finally:
                s.close()
        wait_until(greeted, 5, interval=0.1, what="a 220 once a session ended")
    finally:
        for s in held:
            s.close()


@pytest.mark.mailrelay_timeout(60)
def test_control_connections_are_bounded(daemon):
    d = daemon(None, overrides=dict(QUIET, max_connections="10", max_connections_per_client="2"))
    held = [unix_connect(d.control_sock, uid=NOBODY) for _ in range(2)]
    try:
        s = unix_connect(d.control_sock, uid=NOBODY)
        try:
            try:
                s.sendall(b"STATUS\n")
            except (BrokenPipeError, ConnectionResetError):
                pass                    # refused and closed already: the answer is waiting
            first = read_line(s)
        finally:
            s.close()
        assert first is not None and first.startswith("ERR 75 too many connections"), first
        d.wait_for_log(r"control: connection from uid=65534 refused: too many")
        assert len(refusals(d, r"control: connection from uid=65534 refused: too many")) == 1
        # root is another client: served
        r = d.mailrelay(["status"], timeout=10)
        assert r.rc == 0, r
        assert "running" in r.out_text
    finally:
        for s in held:
            s.close()


# ---------------------------------------------------------------------------
# descriptors run out

@pytest.mark.mailrelay_timeout(90)
def test_descriptor_exhaustion_pauses_accepting_instead_of_spinning(daemon, smarthost):
    """With 64 descriptors and more connections than that, the daemon
    neither burns CPU nor floods its log, and serves again once the
    attacker lets go."""
    sh = smarthost()
    d = daemon(sh, overrides=dict(QUIET, max_connections="1000", max_connections_per_client="1000"),
               start=False)
    d.wrapper = ["prlimit", "--nofile=64:64", "--"]
    d.start()
    pid = d.proc.pid
    conns = []
    try:
        for _ in range(200):
            try:
                conns.append(unix_connect(d.submit_sock, uid=NOBODY, blocking=False))
            except (BlockingIOError, ConnectionRefusedError, OSError):
                pass                # the backlog is full: that is as far as an attacker gets
        assert len(conns) > 100, len(conns)
        # the daemon has run out of descriptors: wait until it says so
        d.wait_for_log(r"accept.*Too many open files", 10)
        log0 = len(d.log_lines())
        cpu0 = cpu_seconds(pid)
        t0 = time.monotonic()
        time.sleep(3)           # the measurement window itself, not a wait for an event
        cpu = cpu_seconds(pid) - cpu0
        wall = time.monotonic() - t0
        logged = len(d.log_lines()) - log0
        print("descriptors exhausted: %.2fs CPU in %.1fs, %d log lines, %d bytes of log"
              % (cpu, wall, logged, len(d.log_text())))
        assert cpu < 0.3 * wall, "%.2fs of CPU in %.1fs with descriptors exhausted" % (cpu, wall)
        assert logged < 20, "%d log lines in %.1fs" % (logged, wall)
    finally:
        for s in conns:
            s.close()
    d.check_alive()
    submit_ok(d, sh, "after the descriptor attack", timeout=15)


@pytest.mark.mailrelay_timeout(90)
def test_one_user_cannot_take_every_descriptor(daemon, smarthost):
    """Default limits, 64 descriptors: one user opening 200 connections
    holds max_connections_per_client of them, and others still submit."""
    sh = smarthost()
    d = daemon(sh, overrides=QUIET, start=False)
    d.wrapper = ["prlimit", "--nofile=64:64", "--"]
    d.start()
    # the limit is too low for the default max_connections, and it says so
    d.wait_for_log(r"max_connections 100 needs up to 492 descriptors, the limit is 64")
    conns = []
    try:
        for _ in range(200):
            try:
                conns.append(unix_connect(d.submit_sock, uid=NOBODY, blocking=False))
            except (BlockingIOError, ConnectionRefusedError, OSError):
                pass
        assert len(conns) > 100, len(conns)
        d.wait_for_log(r"connection from uid 65534 refused: too many connections "
                       r"\(max_connections_per_client 20\)")
        submit_ok(d, sh, "while one user holds 200 connections")
        greeted = 0
        for s in conns:
            s.setblocking(True)
            line = read_line(s, timeout=5)
            greeted += line is not None and line.startswith("220 ")
        assert greeted == 20, greeted
    finally:
        for s in conns:
            s.close()
    assert not refusals(d, r"Too many open files")


# ---------------------------------------------------------------------------
# deadlines

@pytest.mark.mailrelay_timeout(60)
@pytest.mark.parametrize("how", ["silent", "trickle"])
def test_idle_session_gets_421_after_idle_timeout(daemon, how):
    d = daemon(None, overrides=dict(QUIET, idle_timeout="2s"))
    s = tcp_connect(d.tcp_port)
    try:
        assert read_line(s).startswith("220 ")
        t0 = time.monotonic()
        if how == "trickle":
            # bytes keep coming, a complete command never does
            s.setblocking(False)
            got = b""
            while time.monotonic() - t0 < 10:
                try:
                    s.send(b"X")
                except OSError:
                    break
                r, _, _ = select.select([s], [], [], 0.3)
                if r:
                    c = s.recv(4096)
                    if not c:
                        break
                    got += c
                    if b"\r\n" in got:
                        break
            s.setblocking(True)
            text = got.decode(errors="replace") + read_to_eof(s)
        else:
            text = read_to_eof(s)
        took = time.monotonic() - t0
    finally:
        s.close()
    assert text.startswith("421 4.4.2 relay.test Error: timeout exceeded"), text
    assert 1.5 <= took < 6, took
    d.wait_for_log(r"smtpd 127\.0\.0\.1: no complete command for 2s \(idle_timeout\); closing")


@pytest.mark.mailrelay_timeout(60)
def test_busy_session_gets_421_after_session_timeout(daemon):
    d = daemon(None, overrides=dict(QUIET, idle_timeout="2s", session_timeout="3s"))
    c = RawSMTP(socket.AF_UNIX, d.submit_sock)
    try:
        assert c.reply()[0] == 220
        t0 = time.monotonic()
        code = 250
        while code == 250 and time.monotonic() - t0 < 10:
            code, text = c.cmd("NOOP")
            # the pace of a busy client, under idle_timeout; the 421 may come meanwhile
            if code == 250 and select.select([c.sock], [], [], 0.4)[0]:
                code, text = c.reply()
        took = time.monotonic() - t0
    finally:
        c.close()
    assert code == 421 and "session lasted too long" in text[0], (code, text)
    assert 2.5 <= took < 6, took
    d.wait_for_log(r"session open for 3s \(session_timeout\); closing")


@pytest.mark.mailrelay_timeout(60)
def test_control_connection_idle_is_closed(daemon):
    d = daemon(None, overrides=dict(QUIET, idle_timeout="2s"))
    s = unix_connect(d.control_sock, uid=NOBODY)
    try:
        t0 = time.monotonic()
        assert read_to_eof(s, timeout=15) == ""
        took = time.monotonic() - t0
    finally:
        s.close()
    assert 1.5 <= took < 6, took


# ---------------------------------------------------------------------------
# partial messages on disk

def _msg_tmp_sizes(d):
    sizes = []
    for name in d.tmp_files():
        try:
            sizes.append(os.path.getsize(os.path.join(d.spool, "tmp", name)))
        except FileNotFoundError:
            pass
    return sizes


@pytest.mark.mailrelay_timeout(60)
def test_data_beyond_max_message_size_is_not_written_and_a_dead_session_leaves_nothing(daemon):
    d = daemon(None, overrides=dict(QUIET, max_message_size="100K"))
    c = RawSMTP(socket.AF_UNIX, d.submit_sock)
    try:
        assert c.reply()[0] == 220
        assert c.cmd("EHLO client.test")[0] == 250
        assert c.cmd("MAIL FROM:<%s>" % SENDER)[0] == 250
        assert c.cmd("RCPT TO:<%s>" % RCPT)[0] == 250
        assert c.cmd("DATA")[0] == 354
        line = b"y" * 78 + b"\r\n"
        c.send(b"Subject: big\r\n\r\n" + line * (4 * MB // len(line)))     # 40 times the limit
        # a unix socket buffers a few hundred KiB: most of it has been read
        biggest = max(_msg_tmp_sizes(d) or [0])
        assert 0 < biggest <= 100 * 1024 + 64 * 1024, biggest
    finally:
        c.close()                       # the client dies in the middle of DATA
    wait_until(lambda: d.tmp_files() == [], 5, what="spool tmp/ empty after the session died")
    assert d.queue_files() == []


# ---------------------------------------------------------------------------
# configuration

BAD = [
    ("max_connections", {"max_connections": "0"}, "max_connections = 0",
     'max_connections: expected a number from 1 to 10000, got "0"'),
    ("max_connections_per_client", {"max_connections": "5", "max_connections_per_client": "6"},
     "max_connections_per_client = 6",
     "max_connections_per_client: expected at most max_connections (5), got 6"),
    ("idle_timeout", {"idle_timeout": "0"}, "idle_timeout = 0",
     'idle_timeout: expected at least 1s, got "0"'),
    ("session_timeout", {"session_timeout": "soon"}, "session_timeout = soon",
     'session_timeout: expected a duration such as 90s, 15m, 2h or 5d, got "soon"'),
]


@pytest.mark.parametrize("key, top, marker, why", BAD, ids=[b[0] for b in BAD])
def test_bad_limits_are_refused_at_load_naming_file_line_key(build, workdir, key, top, marker, why):
    conf = base_config(workdir, free_port())
    conf.update(top)
    text = render_config(conf, [("main", smarthost_opts(free_port()))])
    path = os.path.join(workdir, "bad.conf")
    with open(path, "w") as f:
        f.write(text)
    p = subprocess.run([build.mailrelayd, "-c", path, "-f"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10, env=client_env())
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 78, err
    assert "bad.conf:%d: %s" % (line_of(text, marker), why) in err, err

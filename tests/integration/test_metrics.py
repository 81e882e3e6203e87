"""Metrics for fleets: `mailrelay status --prometheus` and GET /metrics on
metrics_listen print the Prometheus text format (checked here by a strict
parser of format 0.0.4 and by Debian's `promtool check metrics`, which
scripts/deps.sh takes out of the prometheus package).  After a known
sequence (one message over STARTTLS to
three recipients: sent, deferred, bounced; the bounce's notice sent too)
every counter has its exact value and label set, no label carries an
address, other paths answer 404 and other methods 405, and a
metrics_listen that is not on loopback is refused at load with
FILE:LINE: KEY: why.  What a local client can make the endpoint hold is
bounded: CONN_MAX connections (one more gets 503 at once), DEADLINE
seconds each (silent or sending a byte at a time), 8 KiB of header."""
import ctypes
import http.client
import json
import math
import os
import re
import select
import shutil
import smtplib
import socket
import subprocess
import time

import pytest

from mrtest import free_port, line_of, make_message, quote, smarthost_opts, vmrss_kib, wait_until
from test_trust_resources import rss_bound_kb

SENDER = "app@example.org"
RCPT = "rcpt@example.net"
BUSY = "busy@example.net"
GONE = "gone@example.net"

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"'
SAMPLE = re.compile(r"^(%s)(?:\{((?:%s)(?:,%s)*)?\})? (\S+)$" % (NAME, LABEL, LABEL))
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def parse_exposition(text):
    """{family: {"type", "help", "samples": {(name, ((label, value), ...)): float}}},
    failing on anything format 0.0.4 does not allow or our naming rules forbid."""
    assert text.endswith("\n") and "\r" not in text, repr(text[-80:])
    fams, cur, seen = {}, None, set()
    for n, line in enumerate(text.split("\n")[:-1], 1):
        where = "line %d: %r" % (n, line)
        if line.startswith("# HELP "):
            name, _, help_ = line[7:].partition(" ")
            assert re.fullmatch(NAME, name) and help_, where
            assert name not in fams, "family twice: " + where
            fams[name] = {"help": help_, "type": None, "samples": {}}
            cur = name
        elif line.startswith("# TYPE "):
            name, _, typ = line[7:].partition(" ")
            assert name == cur and typ in TYPES and fams[name]["type"] is None, where
            fams[name]["type"] = typ
        else:
            assert not line.startswith("#") and line, where
            m = SAMPLE.match(line)
            assert m, where
            name, value = m.group(1), m.group(m.lastindex)
            labels = tuple(re.findall(LABEL, m.group(2) or ""))
            assert len({k for k, _ in labels}) == len(labels), "label twice: " + where
            fam = fams[cur]
            typ = fam["type"]
            assert typ is not None, "sample before TYPE: " + where
            if typ == "histogram":
                assert name in (cur + "_bucket", cur + "_sum", cur + "_count"), where
            else:
                assert name == cur, where
            if typ == "counter":
                assert cur.endswith("_total"), "counter without _total: " + where
            assert (name, labels) not in seen, "series twice: " + where
            seen.add((name, labels))
            v = float(value)
            assert not math.isnan(v), where
            fam["samples"][(name, labels)] = v
    for name, fam in fams.items():
        assert fam["type"] is not None and fam["samples"] is not None, name
        if fam["type"] == "histogram":
            check_histogram(name, fam["samples"])
    return fams


def check_histogram(name, samples):
    buckets = sorted(((float(dict(l)["le"]), v) for (n, l), v in samples.items()
                      if n == name + "_bucket"))
    assert buckets and buckets[-1][0] == math.inf, buckets
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), "buckets not cumulative: %r" % buckets
    assert samples[(name + "_count", ())] == counts[-1]
    assert samples[(name + "_sum", ())] >= 0


# Debian's promtool; scripts/deps.sh takes it out of the prometheus package
# into the tests' cache (without installing the package)
PROMTOOL_CACHED = "/var/cache/mailrelay-tests/promtool"


def promtool_check(text, what):
    """`promtool check metrics` finds nothing to say about text."""
    tool = shutil.which("promtool") or PROMTOOL_CACHED
    assert os.access(tool, os.X_OK), "no promtool: run scripts/deps.sh (it fetches %s)" % PROMTOOL_CACHED
    r = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", \
        "promtool check metrics on %s: rc %d\n%s%s" % (what, r.returncode, r.stdout, r.stderr)


def series(fams, family):
    """{frozenset of labels: value} of one family's plain samples."""
    return {frozenset(l): v for (n, l), v in fams[family]["samples"].items() if n == family}


def assert_no_address(fams):
    for fam in fams.values():
        for (_, labels) in fam["samples"]:
            for k, v in labels:
                assert "@" not in v and "127.0.0.1" not in v and "example" not in v, (k, v)


def get(port, path, method="GET"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, r.getheader("Content-Type"), r.read().decode()
    finally:
        c.close()


def metrics_daemon(daemon, smarthost, pki):
    sh = smarthost(tls_context=pki.server_context())
    sh.rcpt_replies = {BUSY: "450 4.2.0 busy", GONE: "550 5.1.1 gone"}
    port = free_port()
    opts = smarthost_opts(sh.port, host=quote("localhost"), tls="required",
                          tls_ca_file=quote(pki.ca.cert))
    d = daemon(smarthosts=[("main", opts)],
               overrides={"retry_schedule": ["1h"], "metrics_listen": quote("127.0.0.1:%d" % port)})
    return d, sh, port


def prometheus(d):
    r = d.mailrelay(["status", "--prometheus"])
    assert r.rc == 0, r
    return r.out_text


def test_counters_after_a_known_sequence(daemon, smarthost, pki):
    d, sh, port = metrics_daemon(daemon, smarthost, pki)
    fams = parse_exposition(prometheus(d))
    # before any event: the configured smarthost's series, at zero
    assert series(fams, "mailrelay_deliveries_total") == {
        frozenset({("relay", "main"), ("result", r)}): 0 for r in ("sent", "deferred", "bounced")}
    assert series(fams, "mailrelay_submissions_total") == {}

    assert d.sendmail(["-i", "-f", SENDER, RCPT, BUSY, GONE], make_message()).rc == 0
    with smtplib.SMTP("127.0.0.1", d.tcp_port, timeout=10) as s:
        s.sendmail(SENDER, [BUSY], make_message(subject="by smtp"))
    # three outcomes of the first message, the notice of its bounce sent,
    # the second message deferred: wait until all of them are counted

    def done():
        f = parse_exposition(prometheus(d))
        dl = series(f, "mailrelay_deliveries_total")
        return dl[frozenset({("relay", "main"), ("result", "sent")})] == 2 and \
            dl[frozenset({("relay", "main"), ("result", "deferred")})] == 2
    wait_until(done, what="the outcomes counted")

    text = prometheus(d)
    fams = parse_exposition(text)
    assert_no_address(fams)
    tls_sessions = [s for s in sh.greeted_sessions() if s.tls]
    assert len(tls_sessions) == len(sh.greeted_sessions()) >= 1

    version = json.loads(d.mailrelay(["status", "--json"]).out_text)["version"]
    assert series(fams, "mailrelay_build_info") == {frozenset({("version", version)}): 1}
    assert series(fams, "mailrelay_submissions_total") == {
        frozenset({("via", "sendmail")}): 1, frozenset({("via", "smtp")}): 1,
        frozenset({("via", "bounce")}): 1}
    assert series(fams, "mailrelay_deliveries_total") == {
        frozenset({("relay", "main"), ("result", "sent")}): 2,
        frozenset({("relay", "main"), ("result", "deferred")}): 2,
        frozenset({("relay", "main"), ("result", "bounced")}): 1}
    assert series(fams, "mailrelay_bounces_total") == {
        frozenset({("kind", "failed")}): 1, frozenset({("kind", "delayed")}): 0,
        frozenset({("kind", "relayed")}): 0, frozenset({("kind", "double")}): 0}
    assert series(fams, "mailrelay_tls_handshakes_total") == {
        frozenset({("relay", "main"), ("result", "ok")}): len(tls_sessions),
        frozenset({("relay", "main"), ("result", "failed")}): 0,
        frozenset({("relay", "main"), ("result", "untrusted")}): 0}
    assert series(fams, "mailrelay_auth_failures_total") == {frozenset({("relay", "main")}): 0}
    replies = {dict(k)["code"]: v for k, v in series(fams, "mailrelay_smtp_replies_total").items()}
    assert all(dict(k)["relay"] == "main" for k in series(fams, "mailrelay_smtp_replies_total"))
    assert replies["450"] == 2 and replies["550"] == 1
    assert replies["354"] == 2                   # the first message and the notice
    assert replies["220"] == 2 * len(tls_sessions)   # greeting and the answer to STARTTLS
    # one attempt per message taken: the first, the second and the notice
    h = fams["mailrelay_delivery_duration_seconds"]["samples"]
    assert h[("mailrelay_delivery_duration_seconds_count", ())] == 3
    assert series(fams, "mailrelay_queue_messages") == {
        frozenset({("state", "active")}): 0, frozenset({("state", "deferred")}): 2,
        frozenset({("state", "held")}): 0, frozenset({("state", "waiting")}): 0,
        frozenset({("state", "damaged")}): 0}
    assert series(fams, "mailrelay_queue_oldest_message_age_seconds")[frozenset()] >= 0

    # the same over HTTP
    status, ctype, body = get(port, "/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4"), (status, ctype)
    over_http = parse_exposition(body)
    promtool_check(text, "status --prometheus")
    promtool_check(body, "GET /metrics")
    assert series(over_http, "mailrelay_deliveries_total") == series(fams, "mailrelay_deliveries_total")
    assert set(over_http) == set(fams)


def test_promtool_reports_a_bad_exposition():
    """The promtool the test above runs is one that speaks up."""
    bad = "# HELP x_seconds A counter.\n# TYPE x_seconds counter\nx_seconds 1\n"
    with pytest.raises(AssertionError, match='"_total" suffix'):
        promtool_check(bad, "a counter without _total")


def test_other_paths_and_methods(daemon, smarthost, pki):
    d, sh, port = metrics_daemon(daemon, smarthost, pki)
    for path in ("/", "/metrics/x", "/status", "/../etc/passwd"):
        status, _, body = get(port, path)
        assert status == 404, (path, status, body)
        assert "mailrelay" not in body
    assert get(port, "/metrics?x=1")[0] == 200
    assert get(port, "/metrics", "HEAD")[0] == 200
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        assert get(port, "/metrics", method)[0] == 405, method

    def raw(request, half_close=False):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(request)
            if half_close:
                s.shutdown(socket.SHUT_WR)
            return read_all(s, 5)
    # HTTP/1.0, the absolute form, a client that half-closes after its request
    for request in (b"GET /metrics HTTP/1.0\r\n\r\n",
                    b"GET http://127.0.0.1/metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"GET /metrics HTTP/1.1\nHost: x\n\n"):
        for half_close in (False, True):
            reply = raw(request, half_close)
            head, _, body = reply.partition(b"\r\n\r\n")
            assert status_of(reply) == 200, (request, reply[:200])
            assert b"\r\nConnection: close" in head, head
            length = int(re.search(rb"\r\nContent-Length: (\d+)\r\n", head).group(1))
            assert length == len(body) and b"mailrelay_build_info" in body
    # a head whose end arrives in pieces (the pauses only make separate
    # reads likely; the reply is the same either way)
    for pieces in ((b"GET /metrics HTTP/1.1\r\nHost: x\r\n", b"\r", b"\n"),
                   (b"GET /metrics HTTP/1.1\nHost: x\n", b"\n")):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for piece in pieces:
                s.sendall(piece)
                time.sleep(0.1)
            reply = read_all(s, 3)
        assert status_of(reply) == 200 and b"mailrelay_build_info" in reply, reply[:200]
    reply = raw(b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
    assert status_of(reply) == 405 and b"\r\nAllow: GET, HEAD\r\n" in reply, reply
    assert status_of(raw(b"GET /metrics HTTP/2.0\r\n\r\n")) == 505
    for request in (b"GET /metrics\r\n\r\n", b"GET  /metrics HTTP/1.1\r\n\r\n",
                    b"\x00\x01\x02\r\n\r\n", b"GET /metrics FTP/1.0\r\n\r\n"):
        reply = raw(request)
        assert status_of(reply) == 400 and b"mailrelay_" not in reply, (request, reply)
    d.wait_for_log(r"metrics on http://127\.0\.0\.1:%d/metrics" % port)


def test_prometheus_with_the_daemon_down(daemon, smarthost):
    d = daemon(smarthost(start=False), start=False)
    r = d.mailrelay(["status", "--prometheus"])
    assert r.rc == 69, r
    assert r.out_text == ""
    assert "mailrelayd is not running" in r.err_text


def test_non_loopback_metrics_listen_is_refused(daemon, build):
    for value in ("0.0.0.0:9465", "192.0.2.1:9465", "[::]:9465", "unix:/tmp/metrics.sock"):
        d = daemon(overrides={"metrics_listen": quote(value)}, start=False)
        where = "%s:%d: metrics_listen: " % (d.conf, line_of(d.config_text, "metrics_listen"))
        r = subprocess.run([build.mailrelayd, "-c", d.conf, "-f"], capture_output=True,
                           text=True, timeout=10)
        assert r.returncode == 78, r
        assert where in r.stderr, r.stderr
        assert ("loopback" in r.stderr) or ("HOST:PORT" in r.stderr), r.stderr
        c = d.mailrelay(["check-config"])
        assert c.rc == 78 and where in c.err_text, c
    for value in ("127.0.0.1:9465", "[::1]:9465", "localhost:9465"):
        d = daemon(overrides={"metrics_listen": quote(value)}, start=False)
        c = d.mailrelay(["check-config"])
        assert c.rc == 0, c


LIBC = ctypes.CDLL(None, use_errno=True)
SYS_PIDFD_GETFD = 438     # the same number on every architecture
DEADLINE = 5            # seconds a /metrics connection may live (metrics_listen.c)
CONN_MAX = 16           # /metrics connections held at once
PARTIAL = b"GET /metrics HTTP/1.1\r\n"       # a request whose head never ends


def still_open(s):
    """True when the daemon has neither closed s nor sent anything on it."""
    s.setblocking(False)
    try:
        s.recv(1, socket.MSG_PEEK)
        return False
    except BlockingIOError:
        return True
    except ConnectionResetError:
        return False
    finally:
        s.setblocking(True)


def read_all(s, limit):
    """Everything the daemon sends until it closes (a reset counts as the
    close); socket.timeout when it has not closed within limit seconds."""
    s.settimeout(limit)
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def status_of(reply):
    return int(reply.split(b"\r\n", 1)[0].split()[1])


def conn_fds(pid, port):
    """How many descriptors of process pid are TCP connections to (or from)
    local port: each socket is borrowed with pidfd_getfd(2) and asked its
    addresses.  (Reading /proc/net/tcp instead took 0.1 s a call once the
    suite had left 30,000 sockets in TIME-WAIT.)"""
    n = 0
    pidfd = os.pidfd_open(pid)
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                if not os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:["):
                    continue
            except FileNotFoundError:
                continue
            mine = LIBC.syscall(SYS_PIDFD_GETFD, pidfd, int(fd), 0)
            if mine < 0:
                continue                # closed meanwhile
            with socket.socket(fileno=mine) as s:
                if s.family not in (socket.AF_INET, socket.AF_INET6) or s.type != socket.SOCK_STREAM:
                    continue
                try:
                    s.getpeername()
                except OSError:
                    continue            # a listener, or not connected
                if s.getsockname()[1] == port:
                    n += 1
    finally:
        os.close(pidfd)
    return n


def test_an_oversized_header_is_refused(daemon, smarthost, pki):
    """A header past 8 KiB gets 431 (the whole of it sent, and one never
    ended); a scrape's connection closes after the reply."""
    d, sh, port = metrics_daemon(daemon, smarthost, pki)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n")
        reply = read_all(s, 5)
    assert status_of(reply) == 431, reply[:200]
    assert b"mailrelay_" not in reply
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 20000)
        reply = read_all(s, 5)          # no end of the head in sight: refused all the same
    assert status_of(reply) == 431, reply[:200]

    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = read_all(s, 5)          # returns only because the daemon closes
    assert reply.startswith(b"HTTP/1.1 200") and b"mailrelay_build_info" in reply


@pytest.mark.mailrelay_timeout(40)
def test_silent_and_slow_clients_are_cut_at_the_deadline(daemon, smarthost, pki):
    """A client that says nothing and one that sends its header a byte
    every 0.3 s (each byte would restart a read timeout) are both cut
    DEADLINE seconds after they connected."""
    d, sh, port = metrics_daemon(daemon, smarthost, pki)
    t0 = time.monotonic()
    idle = socket.create_connection(("127.0.0.1", port), timeout=5)
    loris = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        loris.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
        cut = None
        while time.monotonic() - t0 < 3 * DEADLINE:
            try:
                loris.sendall(b"a")
            except (BrokenPipeError, ConnectionResetError):
                cut = time.monotonic() - t0
                break
            r, _, _ = select.select([loris], [], [], 0.3)
            if r:
                assert read_all(loris, 1) == b""
                cut = time.monotonic() - t0
                break
        assert cut is not None, "a byte every 0.3 s kept the connection for %ds" % (3 * DEADLINE)
        assert DEADLINE - 1 <= cut <= DEADLINE + 3, cut
        assert read_all(idle, DEADLINE + 3) == b""
        took = time.monotonic() - t0
        assert DEADLINE - 1 <= took <= DEADLINE + 3, took
    finally:
        idle.close()
        loris.close()
    assert get(port, "/metrics")[0] == 200


@pytest.mark.mailrelay_timeout(60)
def test_connections_beyond_the_limit_are_refused_at_once(daemon, smarthost, pki):
    """CONN_MAX connections that never end their request are held; the 64 opened next are each
    answered 503 and closed at once, the daemon's descriptors and memory
    do not follow them, the log says so once, and once the idle ones are
    cut at the deadline a scrape is served again."""
    d, sh, port = metrics_daemon(daemon, smarthost, pki)
    pid = d.proc.pid
    assert get(port, "/metrics")[0] == 200
    # the scrape's connection is closed at the client's EOF, which may come after the reply
    wait_until(lambda: conn_fds(pid, port) == 0, what="the scrape's connection closed")
    rss0 = vmrss_kib(pid)
    held, extra = [], []
    try:
        # each sends the start of a request (a silent connection might
        # stay in the kernel's queue, with TCP_DEFER_ACCEPT)
        for _ in range(CONN_MAX):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            held[-1].sendall(PARTIAL)
        wait_until(lambda: conn_fds(pid, port) == CONN_MAX, what="the first connections accepted")
        # one beyond the limit, first: a scrape that the held ones crowd out
        status, _, body = get(port, "/metrics")
        assert status == 503 and "too many connections" in body, (status, body)
        peak_fds = 0
        # 64 more beyond the limit (the first version opened 184)
        for _ in range(64):
            extra.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            extra[-1].sendall(PARTIAL)
            peak_fds = max(peak_fds, conn_fds(pid, port))
        for s in extra:
            # a refusal that waited for a slot would come after the held
            # ones' deadline: the check below tells, not this limit
            reply = read_all(s, 3 * DEADLINE)
            assert reply == b"" or status_of(reply) == 503, reply[:200]
            peak_fds = max(peak_fds, conn_fds(pid, port))
        # "at once": every refusal came while all the held connections were
        # still open, i.e. before their deadline: an order of events rather
        # than a measured time (only this test's own steps, 80 connects,
        # have to fit in the deadline)
        alive = sum(1 for s in held if still_open(s))
        assert alive == CONN_MAX, "%d of the held connections were cut before the refusals ended" % (
            CONN_MAX - alive)
        peak_rss = vmrss_kib(pid) - rss0
        print("%d connections: the daemon held %d of them at most, VmRSS +%d KiB"
              % (len(held) + len(extra) + 1, peak_fds, peak_rss))
        assert peak_fds <= CONN_MAX + 1, peak_fds   # +1: one accepted, about to be refused
        assert peak_rss < rss_bound_kb(pid), peak_rss
        d.wait_for_log(r"metrics: connection refused: too many connections \(16\)")
        assert len([l for l in d.log_lines() if "metrics: connection refused" in l]) == 1
        for s in held:
            assert read_all(s, DEADLINE + 3) == b""
    finally:
        for s in held + extra:
            s.close()
    wait_until(lambda: conn_fds(pid, port) == 0, what="every connection closed")
    status, ctype, body = get(port, "/metrics")
    assert status == 200 and "mailrelay_build_info" in body


def test_a_busy_metrics_port_stops_the_start(daemon, build):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        d = daemon(overrides={"metrics_listen": quote("127.0.0.1:%d" % port)}, start=False)
        r = subprocess.run([build.mailrelayd, "-c", d.conf, "-f"], capture_output=True,
                           text=True, timeout=10)
    assert r.returncode == 71, r
    assert "metrics_listen 127.0.0.1:%d: cannot listen: " % port in r.stderr, r.stderr

"""
Helpers for the mailrelay integration tests: a scriptable recording
smarthost (aiosmtpd), a handle on a running mailrelayd, log-line parsing,
message builders and a small raw SMTP client.

The fixtures in conftest.py hand these objects to the tests; tests import
the plain helpers (make_message, to_crlf, wait_until, ...) from here.
"""

import asyncio
import functools
import itertools
import json
import os
import pwd
import re
import signal
import socket
import subprocess
import threading
import time
import uuid

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, TLSSetupException

SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")
QID_RE = r"[0-9A-F]{16}"
FIXED_DATE = "Mon, 02 Jan 2023 03:04:05 +0000"


class TimeLimitExceeded(Exception):
    """Raised in the main thread when a test runs past its time limit."""


# ---------------------------------------------------------------------------
# small utilities

def wait_until(predicate, timeout=10.0, interval=0.02, what=None, alive=None):
    """Poll predicate() until it returns a true value; return that value.

    alive, when given, is called on every round and may raise to stop
    waiting early (the daemon died, ...).  On timeout an AssertionError
    names what was awaited.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if alive is not None:
            alive()
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s"
                                 % (timeout, what or getattr(predicate, "__name__", "condition")))
        time.sleep(interval)


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def current_user():
    return pwd.getpwuid(os.getuid()).pw_name


def delivery_pids(pid):
    """The delivery processes (mailrelay-deliver) of the daemon with pid."""
    found = []
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % e) as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if ppid == pid and comm == "mailrelay-deliv":
            found.append(int(e))
    return found


def vmrss_kib(pid):
    """The resident set size of process pid, in KiB (/proc/PID/status)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


class BlackHole:
    """host:port (by default [::1]) that never completes a handshake:
    listen(0), the accept queue filled by a connection of our own, never
    accepted."""

    def __init__(self, port, host="::1"):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.srv = socket.socket(family, socket.SOCK_STREAM)
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind((host, port))
        self.srv.listen(0)
        self.fillers = []
        for _ in range(2):
            c = socket.socket(family, socket.SOCK_STREAM)
            c.setblocking(False)
            c.connect_ex((host, port))
            self.fillers.append(c)
        time.sleep(0.2)
        # the proof it is a black hole: one more connection does not complete
        probe = socket.socket(family, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect((host, port))
            self.works = False
        except (socket.timeout, OSError):
            self.works = True
        finally:
            probe.close()

    def close(self):
        for c in self.fillers:
            c.close()
        self.srv.close()


def require_root(why):
    """Tests that switch users or mount file systems run as root, as the
    README's test command and CI do: fail loudly rather than skip."""
    assert os.geteuid() == 0, "%s needs root (./scripts/test-all runs as root)" % why


def to_crlf(data):
    """Normalise line endings to CRLF, as the relay must deliver them."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def assert_no_sanitizer_report(text, who):
    for marker in SANITIZER_MARKERS:
        assert marker not in text, "%s reported %r:\n%s" % (who, marker, text[-6000:])


def quote(s):
    """A libconfuse quoted string."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def line_of(text, needle):
    """1-based number of the first line of text containing needle."""
    for n, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return n
    raise AssertionError("%r not in config text" % needle)


def new_msgid():
    return "<%s@test.example.org>" % uuid.uuid4().hex


def make_message(subject="test message", sender="sender@example.org",
                 to=("rcpt@example.net",), cc=(), bcc=(), body="Hello.\n",
                 msgid=None, extra_headers=(), utf8=False):
    """A complete RFC 5322 message with LF line endings, as bytes.

    It always carries From:, Date: and Message-ID: so that the relay has no
    reason to add any header and the delivered bytes can be compared exactly.
    """
    lines = ["From: Test Sender <%s>" % sender]
    if to:
        lines.append("To: " + ", ".join(to))
    if cc:
        lines.append("Cc: " + ", ".join(cc))
    if bcc:
        lines.append("Bcc: " + ", ".join(bcc))
    lines.append("Subject: " + subject)
    lines.append("Date: " + FIXED_DATE)
    lines.append("Message-ID: " + (msgid or new_msgid()))
    if utf8:
        lines += ["MIME-Version: 1.0",
                  "Content-Type: text/plain; charset=utf-8",
                  "Content-Transfer-Encoding: 8bit"]
    lines += list(extra_headers)
    head = "\n".join(lines) + "\n\n"
    return (head + body).encode("utf-8")


def header_block(content):
    """The top-level header section of a message (up to the first empty line)."""
    m = re.search(rb"\r?\n\r?\n", content)
    return content[:m.start() + 1] if m else content


def message_id_of(content):
    """Message-ID of the message itself (not of one quoted in a bounce)."""
    m = re.search(rb"(?im)^Message-ID:[ \t]*(<[^>\r\n]*>)", header_block(content))
    return m.group(1).decode() if m else None


# ---------------------------------------------------------------------------
# log lines

LOG_PREFIX = "mailrelayd: "
# mailrelayd stamps its foreground lines (RFC 3339, milliseconds) unless
# stderr is the journal; Daemon.log_lines() hands the tests lines without it.
STAMP_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(?:Z|[+-]\d\d:\d\d) ")
_LINE_RE = re.compile(r"^(%s): (.*)$" % QID_RE)
_STATUS_RE = re.compile(r"^status=([A-Za-z_-]+)(?: \((.*)\))?$")


def parse_log_line(line):
    """Parse a queue-id key=value log line into a dict, or return None.

      "mailrelayd: ID: to=<a@b>, relay=..., dsn=2.0.0, status=sent (250 ok)"
    -> {"id": ID, "to": "<a@b>", "relay": ..., "dsn": "2.0.0",
        "status": "sent", "text": "250 ok", "line": <the whole line>}

    The part before the trailing "status=X (...)" is split on ", " into
    key=value pairs; a line with a part that is not key=value is not a
    record (e.g. a free-text debug line that happens to name a queue id).
    """
    line = line.rstrip("\n")
    rest = line[len(LOG_PREFIX):] if line.startswith(LOG_PREFIX) else line
    m = _LINE_RE.match(rest)
    if not m:
        return None
    rec = {"id": m.group(1), "line": line}
    body = m.group(2)
    if body.startswith("status="):
        head, tail = "", body
    else:
        i = body.find(", status=")
        if i >= 0:
            head, tail = body[:i], body[i + 2:]
        else:
            head, tail = body, None
    if head:
        for part in head.split(", "):
            key, eq, value = part.partition("=")
            if not eq or not key or " " in key:
                return None
            rec[key] = value
    if tail is not None:
        sm = _STATUS_RE.match(tail)
        if not sm:
            return None
        rec["status"] = sm.group(1)
        rec["text"] = sm.group(2) if sm.group(2) is not None else ""
    return rec


def strip_angle(addr):
    return addr[1:-1] if addr.startswith("<") and addr.endswith(">") else addr


# ---------------------------------------------------------------------------
# the Received: field mailrelay adds to every message it accepts

_SEP = rb"(?: |\r\n\t)"
RECEIVED_RE = re.compile(
    rb"Received: from (?P<from>local(?: \(uid (?P<uid>\d+)(?: (?P<login>[^()\s]+))?\))?"
    rb"|(?P<helo>[^()\s\[\]]+) \(\[(?P<addr1>[^\]\s]+)\]\)|\[(?P<addr2>[^\]\s]+)\])"
    + _SEP + rb"by (?P<by>\S+) \(mailrelay (?P<version>[^()\s]+)\)"
    + _SEP + rb"with (?P<with>E?SMTP|local)"
    + _SEP + rb"id (?P<id>[0-9A-F]{16})"
    + rb"(?:" + _SEP + rb"for <(?P<for>[^<>\s]+)>)?;"
    + _SEP + rb"(?P<date>[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4})\r\n")


def split_received(content):
    """(match, rest): mailrelay's Received: field at the start of content, in
    the form the daemon writes it (RFC 5321 4.4; lines folded within 78
    octets), and what follows it; (None, content) when the message does not
    start with one (a bounce made by the daemon, or a malformed field: the
    tests that compare content then see it)."""
    m = RECEIVED_RE.match(content)
    if m is None:
        return None, content
    if any(len(l) > 78 for l in m.group(0).split(b"\r\n")):
        return None, content
    return m, content[m.end():]


# ---------------------------------------------------------------------------
# the recording smarthost

class Transaction:
    """One DATA transaction seen by the smarthost."""

    def __init__(self, seq, session, mail_from, mail_options, rcpt_tos, content):
        self.seq = seq
        self.session = session          # SessionInfo
        self.mail_from = mail_from      # "" for the null sender
        self.mail_options = mail_options
        self.rcpt_tos = rcpt_tos
        self.rcpt_options = {}          # {recipient: [RCPT parameters]}
        self.raw = content              # bytes, unstuffed, ends with CRLF: all that arrived
        # the Received: field mailrelay put first (None: none, as in a bounce) and the rest
        self.received, self.content = split_received(content)
        self.time = time.monotonic()
        self.reply = None               # what the smarthost answered
        self.accepted = False           # 2xx sent to a client still connected
        self.client_gone = False        # the client left before the reply
        self.tls = session.tls          # the transaction arrived encrypted
        self.tls_version = session.tls_version

    @property
    def message_id(self):
        return message_id_of(self.content)

    def __repr__(self):
        return ("<Transaction #%d session=%d from=%r to=%r %d bytes reply=%r%s%s>"
                % (self.seq, self.session.sid, self.mail_from, self.rcpt_tos,
                   len(self.content), self.reply, " client-gone" if self.client_gone else "",
                   " tls=%s" % self.tls_version if self.tls else ""))


class SessionInfo:
    def __init__(self, sid, peer):
        self.sid = sid
        self.peer = peer
        self.opened = time.monotonic()
        self.closed = None
        self.greeted = False            # sent EHLO or HELO
        self.helo = None
        self.transactions = 0
        self.probe = False              # the server's own start-up connection
        self.commands = []              # [(VERB, over_tls)] of recognised commands
        self.tls = False                # encrypted now (STARTTLS done or implicit TLS)
        self.tls_how = None             # "starttls" or "implicit"
        self.tls_version = None         # "TLSv1.3", ...
        self.cipher = None              # OpenSSL cipher name
        self.sni = None                 # server name the client sent, if any
        self.client_cert = None         # getpeercert() of a verified client certificate
        self.starttls_failed = False    # a STARTTLS handshake failed

    def verbs(self, tls=None):
        """Command verbs in order; tls=False/True: only those sent in plaintext/encrypted."""
        return [v for v, enc in self.commands if tls is None or enc == tls]

    def ehlos(self):
        """[over_tls, ...] for each EHLO of the session."""
        return [enc for v, enc in self.commands if v == "EHLO"]

    def __repr__(self):
        return ("<Session %d%s%s %s>"
                % (self.sid, " probe" if self.probe else "",
                   " tls=%s(%s)" % (self.tls_version, self.tls_how) if self.tls else "",
                   " ".join(v + ("*" if enc else "") for v, enc in self.commands)))


class _RecordingSMTP(SMTP):
    """aiosmtpd's server with connection bookkeeping for the recorder.

    Every recognised command is noted with whether it came encrypted;
    a STARTTLS upgrade keeps the recorder's session (aiosmtpd starts a
    fresh Session object for it, RFC 3207 4.2).
    """

    def __init__(self, handler, recorder, **kw):
        super().__init__(handler, **kw)
        self._recorder = recorder
        self.test_session = None
        self.test_close_after_reply = False     # a scripted 421: close once it is sent
        self.test_dropped = False               # a scripted "drop": closed without a reply
        for verb, method in list(self._smtp_methods.items()):
            self._smtp_methods[verb] = self._noting(verb, method)

    def _noting(self, verb, method):
        @functools.wraps(method)
        async def wrapper(arg):
            info = self.test_session
            if info is not None:
                self._recorder._session_command(info, verb)
            try:
                result = await method(arg)
            except TLSSetupException:
                if info is not None:
                    self._recorder._session_tls_failed(info)
                raise
            except ConnectionResetError:
                if self.test_dropped:
                    return None
                raise
            if self.test_close_after_reply and self.transport is not None:
                self.transport.close()
            return result
        return wrapper

    @functools.wraps(SMTP.smtp_DATA)
    async def smtp_DATA(self, arg):
        # Smarthost.body_replies: give up in the middle of the body.
        reply = None
        if self.envelope.rcpt_tos and not arg:
            reply = self._recorder._next_body_reply()
        if reply is None:
            return await super().smtp_DATA(arg)
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            await self._reader.readuntil(b"\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        if reply == "drop":
            self.test_dropped = True
            self.transport.abort()
            return
        await self.push(reply)
        self.transport.close()

    def connection_made(self, transport):
        upgraded = self.test_session is not None and self._original_transport is not None
        super().connection_made(transport)
        if upgraded:                    # STARTTLS handshake completed
            self.session.test_session = self.test_session
            self._recorder._session_encrypted(self.test_session, transport, "starttls")
            return
        self.test_session = self._recorder._session_opened(self.session.peer)
        self.session.test_session = self.test_session
        if transport.get_extra_info("ssl_object") is not None:
            self._recorder._session_encrypted(self.test_session, transport, "implicit")

    def _getparams(self, params):
        # a DSN-capable smarthost (Smarthost.dsn) takes RFC 3461's parameters
        result = super()._getparams(params)
        if result is not None and self._recorder.dsn:
            for k in ("RET", "ENVID", "NOTIFY", "ORCPT"):
                result.pop(k, None)
        return result

    def connection_lost(self, error):
        if self.test_session is not None:
            self._recorder._session_closed(self.test_session)
        super().connection_lost(error)

    async def smtp_EHLO(self, hostname):
        if hostname and self.test_session is not None:
            self._recorder._session_greeted(self.test_session, hostname)
        await super().smtp_EHLO(hostname)

    async def smtp_HELO(self, hostname):
        if hostname and self.test_session is not None:
            self._recorder._session_greeted(self.test_session, hostname)
        await super().smtp_HELO(hostname)


class _Controller(Controller):
    def __init__(self, handler, recorder, **kw):
        self._recorder = recorder
        super().__init__(handler, **kw)

    def factory(self):
        return _RecordingSMTP(self.handler, self._recorder, **self.SMTP_kwargs)


class Smarthost:
    """A recording, scriptable SMTP server on 127.0.0.1.

    Script it by setting attributes (safe at any time, also while running):
      rcpt_replies  {address: reply}  a string is answered to every RCPT TO
                    that address; a list is used in turn and, once used up,
                    the address is accepted
      data_replies  [reply, ...]      answers to the final dot, used in turn;
                    once used up, messages are accepted
      mail_replies  [reply, ...]      answers to MAIL FROM, used in turn; once
                    used up, senders are accepted
      max_rcpts     accept at most this many recipients per transaction; the
                    next ones get "452 4.5.3" (too many recipients)
      body_replies  [reply, ...]      used in turn, one per DATA: the reply is
                    sent after the first line of the body and the connection
                    closed while the client is still sending
      A scripted reply "421 ..." is sent and the connection closed after
      it; the reply "drop" closes the connection without a reply.
      data_delay    seconds to wait before answering the final dot
      hold()/release()  keep every final-dot answer waiting until released;
                    hold(after=n) lets the first n transactions through
      dsn           offer DSN (RFC 3461) and take its parameters
      pipelining    offer PIPELINING (RFC 2920)
      smtputf8      offer SMTPUTF8 (default True; set before start())
    Transaction.rcpt_options maps each accepted recipient to its RCPT
    parameters.
    Stop it and start it again on the same port with stop()/start().

    TLS: tls_context (an ssl server context) offers STARTTLS with it;
    ssl_context makes it an implicit-TLS (SMTPS) server.  Sessions record
    whether and how they were encrypted (SessionInfo.tls, .tls_how, ...)
    and every transaction whether it arrived encrypted (Transaction.tls).
    """

    def __init__(self, port=None, name="smarthost", tls_context=None, ssl_context=None,
                 require_starttls=False):
        self.port = port or free_port()
        self.name = name
        self.tls_context = tls_context
        self.ssl_context = ssl_context
        self.require_starttls = require_starttls
        self.rcpt_replies = {}
        self.data_replies = []
        self.mail_replies = []
        self.body_replies = []
        self.max_rcpts = None
        self.data_delay = 0.0
        self.dsn = False
        self.pipelining = False
        self.smtputf8 = True
        self._gate = threading.Event()
        self._gate.set()
        self._hold_after = 0
        self._lock = threading.Condition()
        self._seq = itertools.count(1)
        self._sid = itertools.count(1)
        self.transactions = []
        self.sessions = []
        self.open_greeted = 0
        self.max_open_greeted = 0
        self.in_data = 0
        self.max_in_data = 0
        self.controller = None

    # -- control
    @property
    def running(self):
        return self.controller is not None

    def _controller(self):
        kw = {}
        if self.tls_context is not None:
            kw.update(tls_context=self.tls_context, require_starttls=self.require_starttls)
        if self.ssl_context is not None:
            kw.update(ssl_context=self.ssl_context)
        return _Controller(_Handler(self), self, hostname="127.0.0.1", port=self.port,
                           server_hostname="%s.test" % self.name, decode_data=False,
                           enable_SMTPUTF8=self.smtputf8, ready_timeout=10, timeout=60, **kw)

    def start(self):
        assert self.controller is None, "%s already running" % self.name
        deadline = time.monotonic() + 10
        before = len(self.sessions)
        while True:
            c = self._controller()
            try:
                c.start()
                break
            except OSError:
                # the port may linger briefly after a stop
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        # Controller.start() connects once itself to see the server is up.
        with self._lock:
            for s in self.sessions[before:]:
                s.probe = True
        self.controller = c
        return self

    def stop(self):
        if self.controller is not None:
            self.release()
            c, self.controller = self.controller, None
            c.stop()

    def hold(self, after=0):
        self._hold_after = after
        self._gate.clear()

    def release(self):
        self._gate.set()

    # -- results
    def delivered(self):
        """Accepted transactions, in order."""
        with self._lock:
            return [t for t in self.transactions if t.accepted]

    def all_transactions(self):
        with self._lock:
            return list(self.transactions)

    def greeted_sessions(self):
        with self._lock:
            return [s for s in self.sessions if s.greeted]

    def client_sessions(self):
        """Every connection a client made (the server's own start-up probe left out)."""
        with self._lock:
            return [s for s in self.sessions if not s.probe]

    def commands(self, tls=None):
        """All command verbs the clients sent, in session order (see SessionInfo.verbs)."""
        with self._lock:
            return [v for s in self.sessions for v in s.verbs(tls)]

    def wait_for(self, count, timeout=15.0, alive=None):
        """Wait until at least count transactions were accepted; return them all."""
        wait_until(lambda: len(self.delivered()) >= count, timeout,
                   what="%d message(s) at %s (have %d)" % (count, self.name, len(self.delivered())),
                   alive=alive)
        return self.delivered()

    def find(self, msgid):
        """Accepted transactions carrying the given Message-ID."""
        return [t for t in self.delivered() if t.message_id == msgid]

    def summary(self):
        with self._lock:
            out = ["%s on 127.0.0.1:%d: %d session(s), %d transaction(s)"
                   % (self.name, self.port, len([s for s in self.sessions if s.greeted]),
                      len(self.transactions))]
            out += ["  %r" % t for t in self.transactions[-50:]]
            out += ["  %r" % s for s in self.sessions[-20:] if s.commands or s.tls]
            return "\n".join(out)

    # -- called from the server thread
    def _session_opened(self, peer):
        with self._lock:
            s = SessionInfo(next(self._sid), peer)
            self.sessions.append(s)
            return s

    def _session_greeted(self, s, hostname):
        with self._lock:
            s.helo = hostname
            if not s.greeted:
                s.greeted = True
                self.open_greeted += 1
                self.max_open_greeted = max(self.max_open_greeted, self.open_greeted)

    def _session_command(self, s, verb):
        with self._lock:
            s.commands.append((verb, s.tls))

    def _session_encrypted(self, s, transport, how):
        obj = transport.get_extra_info("ssl_object")
        with self._lock:
            s.tls = True
            s.tls_how = how
            if obj is not None:
                s.tls_version = obj.version()
                s.cipher = (obj.cipher() or (None,))[0]
                s.sni = getattr(obj, "mr_sni", None)
                try:
                    s.client_cert = obj.getpeercert() or None
                except (ValueError, AttributeError):
                    s.client_cert = None

    def _session_tls_failed(self, s):
        with self._lock:
            s.starttls_failed = True

    def _session_closed(self, s):
        with self._lock:
            if s.closed is None:
                s.closed = time.monotonic()
                if s.greeted:
                    self.open_greeted -= 1

    def _rcpt_reply(self, address):
        with self._lock:
            script = self.rcpt_replies.get(address.lower(), self.rcpt_replies.get(address))
            if script is None:
                return None
            if isinstance(script, str):
                return script
            if script:
                return script.pop(0)
            return None

    def _next_data_reply(self, seq):
        with self._lock:
            if self.data_replies:
                return self.data_replies.pop(0)
        return "250 2.0.0 Ok: queued as T%d" % seq

    def _next_mail_reply(self):
        with self._lock:
            return self.mail_replies.pop(0) if self.mail_replies else None

    def _next_body_reply(self):
        with self._lock:
            return self.body_replies.pop(0) if self.body_replies else None

    @staticmethod
    def _scripted(server, reply):
        """Act out a scripted reply: "drop" closes at once, "421 ..." after the reply."""
        if reply == "drop":
            server.test_dropped = True
            server.transport.abort()
            return "421 4.4.2 not sent: the connection is gone"
        if reply.startswith("421"):
            server.test_close_after_reply = True
        return reply


class _Handler:
    def __init__(self, sh):
        self.sh = sh

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.sh.dsn:
            responses.insert(len(responses) - 1, "250-DSN")
        if self.sh.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        reply = self.sh._next_mail_reply()
        if reply is not None and not reply.startswith("2"):
            return self.sh._scripted(server, reply)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return reply or "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        limit = self.sh.max_rcpts
        if limit is not None and len(envelope.rcpt_tos) >= limit:
            return "452 4.5.3 Error: too many recipients"
        reply = self.sh._rcpt_reply(address)
        if reply is not None and not reply.startswith("2"):
            return self.sh._scripted(server, reply)
        if not hasattr(envelope, "test_rcpt_options"):
            envelope.test_rcpt_options = {}
        envelope.test_rcpt_options[address] = list(rcpt_options)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return reply or "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        sh = self.sh
        info = getattr(session, "test_session", None) or SessionInfo(0, session.peer)
        content = envelope.original_content
        if isinstance(content, str):          # decode_data=False: never, but be exact
            content = content.encode("utf-8", "surrogateescape")
        with sh._lock:
            sender = envelope.mail_from or ""
            if sender == "<>":
                sender = ""
            t = Transaction(next(sh._seq), info, sender,
                            list(envelope.mail_options), list(envelope.rcpt_tos), bytes(content))
            t.rcpt_options = dict(getattr(envelope, "test_rcpt_options", {}))
            sh.transactions.append(t)
            info.transactions += 1
            sh.in_data += 1
            sh.max_in_data = max(sh.max_in_data, sh.in_data)
            sh._lock.notify_all()
        try:
            if sh.data_delay:
                await asyncio.sleep(sh.data_delay)
            while not sh._gate.is_set() and t.seq > sh._hold_after:
                await asyncio.sleep(0.01)
            reply = sh._next_data_reply(t.seq)
            with sh._lock:
                t.reply = reply
                gone = server.transport is None or server.transport.is_closing()
                t.client_gone = gone
                t.accepted = reply.startswith("2") and not gone
                sh._lock.notify_all()
            return sh._scripted(server, reply)
        except asyncio.CancelledError:
            with sh._lock:
                t.client_gone = True
            raise
        finally:
            with sh._lock:
                sh.in_data -= 1


# ---------------------------------------------------------------------------
# running the programs

class Result:
    def __init__(self, argv, rc, out, err):
        self.argv = argv
        self.rc = rc
        self.out = out
        self.err = err

    @property
    def err_text(self):
        return self.err.decode("utf-8", "replace")

    @property
    def out_text(self):
        return self.out.decode("utf-8", "replace")

    def __iter__(self):
        return iter((self.rc, self.out, self.err))

    def __repr__(self):
        return "<%s rc=%r stdout=%r stderr=%r>" % (" ".join(self.argv), self.rc,
                                                   self.out[-2000:], self.err[-2000:])


def client_env():
    env = dict(os.environ)
    env.pop("MAILRELAY_CONFIG", None)
    env.setdefault("LC_ALL", "C.UTF-8")
    return env


def run(argv, data=b"", timeout=20.0):
    """Run a client program to completion; stdin gets data."""
    p = subprocess.run(argv, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, env=client_env())
    res = Result([str(a) for a in argv], p.returncode, p.stdout, p.stderr)
    assert_no_sanitizer_report(res.err_text, " ".join(res.argv))
    return res


def one_line(text):
    """The stderr text of a failing client: exactly one non-empty line."""
    lines = [l for l in text.splitlines() if l.strip()]
    assert len(lines) == 1, "expected one line on stderr, got %r" % text
    return lines[0]


# ---------------------------------------------------------------------------
# configuration

def render_value(v):
    if isinstance(v, (list, tuple)):
        return "{ " + ", ".join(render_value(x) for x in v) + " }"
    return str(v)


def render_config(top, smarthosts, extra=""):
    """libconfuse text: top is an ordered dict of raw values (None: left out);
    smarthosts a list of (name, {key: raw value})."""
    out = []
    for key, value in top.items():
        if value is None:
            continue
        out.append("%s = %s" % (key, render_value(value)))
    for name, opts in smarthosts:
        out.append("smarthost %s {" % name)
        for key, value in opts.items():
            if value is None:
                continue
            out.append("    %s = %s" % (key, render_value(value)))
        out.append("}")
    if extra:
        out.append(extra)
    return "\n".join(out) + "\n"


def base_config(workdir, tcp_port):
    """The top-level keys every test daemon starts from (raw values)."""
    return {
        "hostname": quote("relay.test"),
        "spool_dir": quote(os.path.join(workdir, "spool")),
        "user": quote(current_user()),
        "listen": [quote("unix:" + os.path.join(workdir, "submit.sock")),
                   quote("127.0.0.1:%d" % tcp_port)],
        "control_socket": quote(os.path.join(workdir, "control.sock")),
        # not the machine's /etc/aliases: tests write this file when they need one
        "aliases_file": quote(os.path.join(workdir, "aliases")),
        "max_message_size": "35M",
        "retry_schedule": ["1s"],
        "max_queue_time": "1h",
        "concurrency": "4",
        "log_level": "debug",
    }


def smarthost_opts(port, **over):
    opts = {"host": quote("127.0.0.1"), "port": str(port), "tls": "disabled",
            "timeout": "10s", "connect_timeout": "5s"}
    opts.update(over)
    return opts


def write_config(workdir, top, sh_over, name="bad.conf"):
    """A whole config for the loaders alone (no daemon runs on it): the base
    keys with top's over them and one smarthost "main" with sh_over's, at
    workdir/name.  Returns (path, text)."""
    conf = base_config(workdir, free_port())
    conf.update(top)
    text = render_config(conf, [("main", smarthost_opts(free_port(), **sh_over))])
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write(text)
    return path, text


# ---------------------------------------------------------------------------
# the daemon

class Daemon:
    """One mailrelayd in its own directory, with its config, spool and sockets.

    smarthosts: a list of Smarthost objects, ports or (name, opts) pairs
    overrides:  top-level keys to replace or add (raw libconfuse values;
                None removes a key)
    """

    def __init__(self, build, workdir, smarthosts=(), overrides=None, extra=""):
        self.build = build
        self.dir = workdir
        self.conf = os.path.join(workdir, "mailrelay.conf")
        self.spool = os.path.join(workdir, "spool")
        self.submit_sock = os.path.join(workdir, "submit.sock")
        self.control_sock = os.path.join(workdir, "control.sock")
        self.tcp_port = free_port()
        self.client_conf = None         # config file the clients read, when not self.conf
        self.wrapper = []               # argv prefix, e.g. valgrind
        self.proc = None
        self.starts = 0
        self.logs = []
        self._logfile = None
        os.makedirs(self.spool, mode=0o700, exist_ok=True)
        self.write_config(smarthosts, overrides, extra)

    # -- configuration
    def write_config(self, smarthosts=(), overrides=None, extra=""):
        top = base_config(self.dir, self.tcp_port)
        top.update(overrides or {})
        hosts = []
        for i, sh in enumerate(smarthosts):
            name = "main" if i == 0 else "backup%d" % i
            if isinstance(sh, Smarthost):
                hosts.append((name, smarthost_opts(sh.port)))
            elif isinstance(sh, int):
                hosts.append((name, smarthost_opts(sh)))
            else:
                hosts.append(sh)
        self.config_text = render_config(top, hosts, extra)
        tmp = self.conf + ".tmp"
        with open(tmp, "w") as f:
            f.write(self.config_text)
        os.rename(tmp, self.conf)
        return self.config_text

    # -- process control
    @property
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self):
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError("mailrelayd exited with status %r; stderr:\n%s"
                                 % (self.proc.returncode, self.log_text()[-6000:]))

    def start(self, timeout=10.0):
        assert not self.alive, "mailrelayd already running"
        path = os.path.join(self.dir, "mailrelayd.%d.log" % self.starts)
        self.starts += 1
        self.logs.append(path)
        self._logfile = open(path, "wb")
        binary = getattr(self, "binary", None) or self.build.mailrelayd
        self.proc = subprocess.Popen(self.wrapper + [binary, "-c", self.conf, "-f"],
                                     stdin=subprocess.DEVNULL, stdout=self._logfile,
                                     stderr=self._logfile, env=client_env())
        self.wait_ready(timeout)
        return self

    def _socket_greets(self, family, address):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(2.0)
        try:
            s.connect(address)
        except OSError:
            s.close()
            return False
        try:
            banner = s.recv(512)
            assert banner.startswith(b"220"), \
                "listener %r greeted with %r instead of 220" % (address, banner)
            s.sendall(b"QUIT\r\n")
            try:
                s.recv(512)
            except OSError:
                pass
        finally:
            s.close()
        return True

    def wait_ready(self, timeout=10.0):
        wait_until(lambda: self._socket_greets(socket.AF_UNIX, self.submit_sock), timeout,
                   interval=0.05, what="mailrelayd's submit socket %s" % self.submit_sock,
                   alive=self.check_alive)
        if ("127.0.0.1:%d" % self.tcp_port) in self.config_text:
            wait_until(lambda: self._socket_greets(socket.AF_INET, ("127.0.0.1", self.tcp_port)),
                       timeout, interval=0.05, what="mailrelayd's TCP listener",
                       alive=self.check_alive)

    def _reap(self, timeout):
        try:
            rc = self.proc.wait(timeout)
        finally:
            if self._logfile:
                self._logfile.close()
                self._logfile = None
        return rc

    def stop(self, timeout=10.0):
        """SIGTERM; the daemon must exit 0 within timeout seconds."""
        assert self.alive, "mailrelayd is not running (status %r)" % (
            self.proc and self.proc.returncode)
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self._reap(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("mailrelayd did not exit within %.0fs of SIGTERM" % timeout)
        assert rc == 0, "mailrelayd exited %r on SIGTERM; stderr:\n%s" % (rc, self.log_text()[-4000:])
        return rc

    def kill(self):
        assert self.alive
        self.proc.send_signal(signal.SIGKILL)
        self._reap(10)

    def restart(self, timeout=10.0):
        if self.alive:
            self.stop()
        return self.start(timeout)

    def hup(self):
        assert self.alive
        self.proc.send_signal(signal.SIGHUP)

    def teardown(self):
        """Stop if running (SIGTERM must give exit 0); return the problems found."""
        problems = []
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self._reap(10)
                if rc != 0:
                    problems.append("mailrelayd exited %r on SIGTERM at teardown" % rc)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self._reap(10)
                problems.append("mailrelayd ignored SIGTERM at teardown for 10s; killed")
        elif self._logfile:
            self._logfile.close()
            self._logfile = None
        text = self.log_text()
        for marker in SANITIZER_MARKERS:
            if marker in text:
                problems.append("mailrelayd stderr contains %r" % marker)
        return problems

    # -- logs
    def log_text(self):
        parts = []
        for path in self.logs:
            try:
                with open(path, "rb") as f:
                    parts.append(f.read().decode("utf-8", "replace"))
            except FileNotFoundError:
                pass
        return "".join(parts)

    def log_lines(self):
        """Complete lines written so far (a partial last line is left out),
        without the timestamp (log_text() keeps it)."""
        text = self.log_text()
        lines = text.split("\n")
        return [STAMP_RE.sub("", l, count=1) for l in lines[:-1]]

    def records(self, qid=None):
        recs = [r for r in map(parse_log_line, self.log_lines()) if r]
        if qid is not None:
            recs = [r for r in recs if r["id"] == qid]
        return recs

    def accepted(self, qid=None):
        """The 'from=..., size=...' acceptance records."""
        return [r for r in self.records(qid) if "from" in r and "to" not in r]

    def outcomes(self, qid=None, status=None, to=None):
        """The per-recipient 'to=..., status=...' records."""
        recs = [r for r in self.records(qid) if "to" in r and "status" in r]
        if status is not None:
            recs = [r for r in recs if r["status"] == status]
        if to is not None:
            recs = [r for r in recs if strip_angle(r["to"]) == to]
        return recs

    def wait_for_log(self, regex, timeout=10.0, after=0):
        """Wait for a log line (from line index `after` on) matching regex; return the match."""
        rx = re.compile(regex)

        def found():
            for line in self.log_lines()[after:]:
                m = rx.search(line)
                if m:
                    return m
            return None
        return wait_until(found, timeout, what="a mailrelayd log line matching %r" % regex,
                          alive=self.check_alive)

    def wait_for_record(self, timeout=10.0, **want):
        """Wait for a parsed log record whose fields equal want (to= without <>); return it."""
        def match(r):
            for k, v in want.items():
                have = r.get(k)
                if k in ("to", "from") and have is not None:
                    have = strip_angle(have)
                if have != v:
                    return False
            return True

        def found():
            for r in self.records():
                if match(r):
                    return r
            return None
        return wait_until(found, timeout, what="a log record with %r" % (want,),
                          alive=self.check_alive)

    def accepted_id(self, sender=None, timeout=10.0):
        """Queue id of the latest acceptance record (optionally for a sender)."""
        def found():
            recs = self.accepted()
            if sender is not None:
                recs = [r for r in recs if strip_angle(r.get("from", "")) == sender]
            return recs[-1]["id"] if recs else None
        return wait_until(found, timeout, what="an acceptance log line", alive=self.check_alive)

    # -- clients
    def sendmail(self, args, data, timeout=20.0):
        return run([self.build.sendmail, "-C", self.client_conf or self.conf] + list(args),
                   data, timeout)

    def mailrelay(self, args, timeout=20.0):
        return run([self.build.mailrelay, "-c", self.client_conf or self.conf] + list(args),
                   b"", timeout)

    def queue_json(self):
        r = self.mailrelay(["queue", "--json"])
        assert r.rc == 0, "mailrelay queue --json failed: %r" % r
        try:
            q = json.loads(r.out)
        except ValueError as e:
            raise AssertionError("mailrelay queue --json printed invalid JSON (%s): %r" % (e, r.out))
        assert isinstance(q, list), "queue --json must print an array: %r" % q
        return q

    def wait_queue_empty(self, timeout=10.0):
        return wait_until(lambda: self.queue_json() == [] and not self.queue_files(), timeout,
                          what="an empty queue")

    def spool_files(self, sub):
        try:
            return sorted(os.listdir(os.path.join(self.spool, sub)))
        except FileNotFoundError:
            return []

    def queue_files(self):
        return self.spool_files("queue")

    def tmp_files(self):
        """tmp/ but for the kept files of delivered messages (ID.free): what
        is being written, or left by a crash."""
        return [n for n in self.spool_files("tmp") if not n.endswith(".free")]

    def envelope_text(self, qid):
        """The envelope of a queued message as the spool holds it: queue/ID.env
        once it changed, else the tail of queue/ID.msg (spool/spool.h)."""
        q = os.path.join(self.spool, "queue", qid)
        if os.path.exists(q + ".env"):
            with open(q + ".env") as f:
                return f.read()
        with open(q + ".msg", "rb") as f:
            data = f.read()
        foot = data[-26:]
        assert foot.startswith(b"mailrelay-tail ") and foot.endswith(b"\n"), foot
        n = int(foot[15:25])
        return data[-26 - n:-26].decode()

    def put_envelope(self, qid, text):
        """Write text as queue/ID.env, as an admin editing the queue by hand
        would (the daemon stopped).  A one-file message's .env records the
        tail its .msg holds after the content: added when text lacks it."""
        q = os.path.join(self.spool, "queue", qid)
        if not os.path.exists(q + ".env") and "\ntail\t" not in text:
            size = int(re.search(r"^size\t(\d+)$", text, re.M).group(1))
            tail = os.path.getsize(q + ".msg") - size
            text = re.sub(r"^(size\t\d+\n)", lambda m: m.group(1) + "tail\t%d\n" % tail, text,
                          count=1, flags=re.M)
        with open(q + ".env", "w") as f:
            f.write(text)


# ---------------------------------------------------------------------------
# a raw SMTP client (for pipelining and exact protocol checks)

class RawSMTP:
    def __init__(self, family, address, timeout=10.0):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(address)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; partial %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def reply(self):
        """(code, [text lines]) of one possibly multi-line reply."""
        texts = []
        while True:
            line = self._line()
            assert len(line) >= 3 and line[:3].isdigit(), "bad reply line %r" % line
            texts.append(line[4:])
            if len(line) == 3 or line[3] == " ":
                return int(line[:3]), texts
            assert line[3] == "-", "bad reply line %r" % line

    def cmd(self, line):
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def close(self):
        self.sock.close()


def dot_stuff(content):
    """SMTP transparency for CRLF content, with the terminating dot line."""
    assert content.endswith(b"\r\n")
    out = re.sub(rb"(?m)^\.", b"..", content)
    return out + b".\r\n"

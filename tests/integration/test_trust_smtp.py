"""What the listeners take in DATA (issue 9, points 5 and 8).

SMTP smuggling: on the loopback TCP listener and on the unix socket a
message ends only at <CR><LF>.<CR><LF>.  Each other "dot line" an
attacker may try (bare LF or bare CR around the dot) stays inside the
message, so the smarthost receives exactly one message per outer
transaction, from the outer sender to the outer recipient, and never one
from the smuggled sender.  Bare CR and bare LF are normalised to CRLF.

A NUL byte in DATA is refused at the end of DATA (554 5.6.0) and nothing is
queued.  8-bit content sent without BODY=8BITMIME is detected at
acceptance: a smarthost that offers 8BITMIME gets BODY=8BITMIME, one that
does not gets 7-bit quoted-printable that decodes to the original text.
"""
import email
import email.policy
import socket
import smtplib
import time

import pytest

from mrtest import RawSMTP, _Handler, make_message

OUTER_FROM = "app@example.org"
OUTER_TO = "rcpt@example.net"
EVIL_FROM = "evil@attacker.test"
EVIL_TO = "victim@target.test"

# What follows the smuggled "end of data": a whole second transaction.
SMUGGLED = (b"MAIL FROM:<" + EVIL_FROM.encode() + b">\r\n"
            b"RCPT TO:<" + EVIL_TO.encode() + b">\r\n"
            b"DATA\r\n"
            b"From: <" + EVIL_FROM.encode() + b">\r\n"
            b"Subject: smuggled\r\n"
            b"\r\n"
            b"smuggled body\r\n")

VARIANTS = {
    "lf-dot-lf": b"\n.\n",
    "crlf-dot-lf": b"\r\n.\n",
    "lf-dot-crlf": b"\n.\r\n",
    "cr-dot-crlf": b"\r.\r\n",
    "crlf-dot-cr": b"\r\n.\r",
    "cr-dot-cr": b"\r.\r",
    "lf-dot-cr": b"\n.\r",
}

HEAD = (b"From: <" + OUTER_FROM.encode() + b">\r\n"
        b"To: <" + OUTER_TO.encode() + b">\r\n"
        b"Subject: outer\r\n"
        b"\r\n"
        b"outer body")


def address(d, kind):
    if kind == "unix":
        return socket.AF_UNIX, d.submit_sock
    return socket.AF_INET, ("127.0.0.1", d.tcp_port)


def transaction(d, kind, pieces, mail_from=OUTER_FROM, rcpt_to=OUTER_TO):
    """One outer transaction whose DATA is sent in pieces (one send each,
    TCP_NODELAY, a pause between them so that they tend to arrive as
    separate segments), then QUIT.  Returns the reply lines that followed
    the 354, up to the close."""
    family, addr = address(d, kind)
    c = RawSMTP(family, addr)
    try:
        if family == socket.AF_INET:
            c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert c.reply()[0] == 220
        assert c.cmd("EHLO client.test")[0] == 250
        assert c.cmd("MAIL FROM:<%s>" % mail_from)[0] == 250
        assert c.cmd("RCPT TO:<%s>" % rcpt_to)[0] == 250
        assert c.cmd("DATA")[0] == 354
        for i, p in enumerate(pieces):
            if i:
                time.sleep(0.02)    # only to make separate segments likely
            c.send(p)
        c.send(b"QUIT\r\n")
        data = c.buf
        while True:
            chunk = c.sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        c.close()
    return [l.decode("utf-8", "replace") for l in data.split(b"\r\n") if l]


def assert_one_outer_message(d, sh, replies):
    """The oracle: one 250 for the one transaction, one acceptance log
    line, and the smarthost gets exactly that message."""
    t = sh.wait_for(1, timeout=20)[0]
    d.wait_queue_empty(timeout=20)
    assert len(sh.transactions) == 1, "the smarthost got %d messages: %r" % (
        len(sh.transactions), sh.transactions)
    queued = [r for r in replies if r.startswith("250 ")]
    assert len(queued) == 1 and queued[0].startswith("250 2.0.0 Ok: queued as "), replies
    assert replies[-1].startswith("221 "), replies
    assert len(d.accepted()) == 1, d.accepted()
    assert t.mail_from == OUTER_FROM and t.rcpt_tos == [OUTER_TO], t
    assert not any(x.mail_from == EVIL_FROM or EVIL_TO in x.rcpt_tos for x in sh.transactions)
    assert b"\r" not in t.content.replace(b"\r\n", b""), t.content
    assert b"\n" not in t.content.replace(b"\r\n", b""), t.content
    return t


@pytest.mark.parametrize("kind", ["tcp", "unix"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_smuggled_end_of_data_stays_in_the_message(daemon, smarthost, kind, variant):
    sh = smarthost()
    d = daemon(sh)
    replies = transaction(d, kind, [HEAD + VARIANTS[variant] + SMUGGLED + b".\r\n"])
    t = assert_one_outer_message(d, sh, replies)
    # the would-be second transaction is text of the first one
    assert b"MAIL FROM:<" + EVIL_FROM.encode() + b">\r\n" in t.content
    assert t.content.endswith(b"smuggled body\r\n"), t.content
    if not variant.startswith("cr-dot"):     # after a bare CR a dot is plain text
        d.wait_for_log(r"smtpd .*: message from <%s>: 1 line\(s\) \".\" with a bare CR or LF kept as text"
                       % OUTER_FROM)


@pytest.mark.parametrize("kind", ["tcp", "unix"])
@pytest.mark.parametrize("variant", ["lf-dot-lf", "crlf-dot-lf", "lf-dot-crlf", "crlf-dot-cr"])
def test_smuggling_split_across_segments(daemon, smarthost, kind, variant):
    """The same with the dot line cut into single bytes, and the real end of
    data cut between its CR and LF."""
    sh = smarthost()
    d = daemon(sh)
    v = VARIANTS[variant]
    pieces = [HEAD] + [v[i:i + 1] for i in range(len(v))] + [SMUGGLED, b".", b"\r", b"\n"]
    t = assert_one_outer_message(d, sh, transaction(d, kind, pieces))
    assert b"smuggled body" in t.content


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_bare_cr_and_lf_inside_lines_are_normalised(daemon, smarthost, kind):
    sh = smarthost()
    d = daemon(sh)
    body = b"one\rtwo\nthree\r\n.four\n..five\r\n"
    t = assert_one_outer_message(d, sh, transaction(d, kind, [HEAD + b"\r\n" + body + b".\r\n"]))
    assert t.content.endswith(b"outer body\r\none\r\ntwo\r\nthree\r\nfour\r\n.five\r\n"), t.content


def test_real_end_of_data_then_pipelined_transaction(daemon, smarthost):
    """<CR><LF>.<CR><LF> still ends DATA, and a second transaction that the
    client pipelines after it is its own message (not smuggling)."""
    sh = smarthost()
    d = daemon(sh)
    second = (b"MAIL FROM:<" + OUTER_FROM.encode() + b">\r\nRCPT TO:<" + OUTER_TO.encode()
              + b">\r\nDATA\r\nSubject: second\r\n\r\nsecond\r\n.\r\n")
    replies = transaction(d, "tcp", [HEAD + b"\r\n.\r\n" + second])
    assert len([r for r in replies if r.startswith("250 2.0.0 Ok: queued as")]) == 2, replies
    got = sh.wait_for(2, timeout=20)
    assert all(t.mail_from == OUTER_FROM and t.rcpt_tos == [OUTER_TO] for t in got)


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_no_chunking_offered(daemon, smarthost, kind):
    """DATA is the only way in: CHUNKING is not offered and BDAT is refused,
    so the dot rule above is the whole story."""
    d = daemon(smarthost())
    family, addr = address(d, kind)
    c = RawSMTP(family, addr)
    try:
        assert c.reply()[0] == 220
        code, ext = c.cmd("EHLO client.test")
        assert code == 250 and not any(e.upper().startswith("CHUNKING") for e in ext), ext
        assert c.cmd("MAIL FROM:<%s>" % OUTER_FROM)[0] == 250
        assert c.cmd("RCPT TO:<%s>" % OUTER_TO)[0] == 250
        assert c.cmd("BDAT 5 LAST")[0] == 502
    finally:
        c.close()
    assert d.accepted() == []


# --- NUL bytes

@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_nul_byte_is_refused_at_end_of_data(daemon, smarthost, kind):
    sh = smarthost()
    d = daemon(sh)
    family, addr = address(d, kind)
    c = RawSMTP(family, addr)
    try:
        assert c.reply()[0] == 220
        assert c.cmd("EHLO client.test")[0] == 250
        assert c.cmd("MAIL FROM:<%s>" % OUTER_FROM)[0] == 250
        assert c.cmd("RCPT TO:<%s>" % OUTER_TO)[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(HEAD + b"\r\nbefore\x00after\r\n.\r\n")
        code, text = c.reply()
        assert code == 554, (code, text)
        assert text[0].startswith("5.6.0 ") and "NUL" in text[0], text
        # the session goes on: the next, clean transaction is accepted
        assert c.cmd("MAIL FROM:<%s>" % OUTER_FROM)[0] == 250
        assert c.cmd("RCPT TO:<%s>" % OUTER_TO)[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(HEAD + b"\r\nclean\r\n.\r\n")
        code, text = c.reply()
        assert code == 250, (code, text)
        c.cmd("QUIT")
    finally:
        c.close()
    t = sh.wait_for(1, timeout=20)[0]
    d.wait_queue_empty(timeout=20)
    assert len(sh.transactions) == 1 and b"clean" in t.content, sh.transactions
    assert len(d.accepted()) == 1
    assert d.tmp_files() == []
    d.wait_for_log(r"refused: .*NUL")


# --- 8-bit content without BODY=8BITMIME

EIGHTBIT_TEXT = "Grüße aus Köln, 3 € — naïve café\n"


def eightbit_message(multipart=False):
    if not multipart:
        return make_message(subject="8bit", body=EIGHTBIT_TEXT,
                            extra_headers=["MIME-Version: 1.0",
                                           "Content-Type: text/plain; charset=utf-8"])
    body = ("preamble\n"
            "--BOUND\n"
            "Content-Type: text/plain; charset=utf-8\n"
            "\n" + EIGHTBIT_TEXT +
            "--BOUND\n"
            "Content-Type: text/plain; charset=us-ascii\n"
            "\n"
            "plain ascii part\n"
            "--BOUND--\n")
    return make_message(subject="8bit multipart", body=body,
                        extra_headers=["MIME-Version: 1.0",
                                       'Content-Type: multipart/mixed; boundary="BOUND"'])


def submit_without_body_param(d, kind, raw):
    crlf = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if kind == "tcp":
        with smtplib.SMTP("127.0.0.1", d.tcp_port, timeout=20) as s:
            s.ehlo("client.test")
            # no mail_options: smtplib sends no BODY= parameter
            assert s.sendmail(OUTER_FROM, [OUTER_TO], crlf) == {}
        return
    family, addr = address(d, kind)
    c = RawSMTP(family, addr)
    try:
        assert c.reply()[0] == 220
        assert c.cmd("EHLO client.test")[0] == 250
        assert c.cmd("MAIL FROM:<%s>" % OUTER_FROM)[0] == 250
        assert c.cmd("RCPT TO:<%s>" % OUTER_TO)[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(crlf.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        assert c.reply()[0] == 250
        c.cmd("QUIT")
    finally:
        c.close()


@pytest.mark.parametrize("kind", ["tcp", "unix", "sendmail-B7BIT"])
def test_undeclared_8bit_is_relayed_with_body_8bitmime(daemon, smarthost, kind):
    sh = smarthost()
    d = daemon(sh)
    raw = eightbit_message()
    if kind == "sendmail-B7BIT":
        r = d.sendmail(["-i", "-B", "7BIT", "-f", OUTER_FROM, OUTER_TO], raw)
        assert r.rc == 0, r
    else:
        submit_without_body_param(d, kind, raw)
    t = sh.wait_for(1, timeout=20)[0]
    assert "BODY=8BITMIME" in t.mail_options, t.mail_options
    assert EIGHTBIT_TEXT.replace("\n", "\r\n").encode() in t.content


class _No8BitMime(_Handler):
    """A smarthost handler that does not offer 8BITMIME."""

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        responses = await super().handle_EHLO(server, session, envelope, hostname, responses)
        return [r for r in responses if "8BITMIME" not in r.upper()]


def seven_bit_smarthost(smarthost):
    sh = smarthost()
    sh.controller.handler = _No8BitMime(sh)     # used for every new connection
    return sh


def text_parts(content):
    """The decoded text of each leaf part, line endings as LF, without the
    last one (in a multipart it belongs to the boundary)."""
    msg = email.message_from_bytes(content, policy=email.policy.default)
    return [p.get_content().replace("\r\n", "\n").rstrip("\n")
            for p in msg.walk() if not p.is_multipart()]


@pytest.mark.parametrize("multipart", [False, True], ids=["single", "multipart"])
def test_undeclared_8bit_becomes_quoted_printable_without_8bitmime(daemon, smarthost, multipart):
    sh = seven_bit_smarthost(smarthost)
    d = daemon(sh)
    submit_without_body_param(d, "tcp", eightbit_message(multipart))
    t = sh.wait_for(1, timeout=20)[0]
    assert "BODY=8BITMIME" not in t.mail_options, t.mail_options
    assert all(b < 0x80 for b in t.content), t.content
    parts = text_parts(t.content)
    if multipart:
        assert parts == [EIGHTBIT_TEXT.rstrip("\n"), "plain ascii part"], parts
        assert b"Content-Transfer-Encoding: quoted-printable" in t.content
    else:
        assert parts == [EIGHTBIT_TEXT.rstrip("\n")], parts
    d.wait_for_log(r"quoted-printable")


def test_declared_8bit_becomes_quoted_printable_without_8bitmime(daemon, smarthost):
    """BODY=8BITMIME declared by the client: the same conversion."""
    sh = seven_bit_smarthost(smarthost)
    d = daemon(sh)
    r = d.sendmail(["-i", "-f", OUTER_FROM, OUTER_TO], eightbit_message())
    assert r.rc == 0, r
    t = sh.wait_for(1, timeout=20)[0]
    assert all(b < 0x80 for b in t.content), t.content
    assert text_parts(t.content) == [EIGHTBIT_TEXT.rstrip("\n")]


def test_8bit_header_without_8bitmime_bounces_instead_of_going_out_8bit(daemon, smarthost):
    """What cannot be made 7-bit (here an 8-bit header field, without
    SMTPUTF8) is bounced with 5.6.3 (RFC 6152 3), never sent as it is."""
    sh = seven_bit_smarthost(smarthost)
    d = daemon(sh)
    raw = make_message(subject="caf\u00e9", body="ascii body\n")
    submit_without_body_param(d, "tcp", raw)
    rec = d.wait_for_record(to=OUTER_TO, status="bounced", timeout=20)
    assert rec["dsn"] == "5.6.3", rec
    assert "8BITMIME" in rec["text"], rec
    assert not any(OUTER_TO in t.rcpt_tos for t in sh.transactions), sh.transactions

"""Nothing that relays refuse since the SMTP smuggling fixes ever leaves
mailrelay: no bare CR, no bare LF, no line over 998 octets.  Long header
lines are folded; a body with long lines is re-encoded quoted-printable
(its text unchanged for the reader); in a multipart message only the part
that needs it is touched."""
import email
import email.policy
import re
import smtplib

from mrtest import make_message, to_crlf

RCPT = "rcpt@example.net"


def lines_ok(content):
    """No bare CR or LF, no line longer than 998 octets."""
    assert not re.search(rb"\r(?!\n)", content), "bare CR"
    assert not re.search(rb"(?<!\r)\n", content), "bare LF"
    for line in content.split(b"\r\n"):
        assert len(line) <= 998, "line of %d octets" % len(line)


def smtp_submit(d, raw, sender="app@example.org"):
    with smtplib.SMTP("127.0.0.1", d.tcp_port, timeout=20) as s:
        assert s.sendmail(sender, [RCPT], raw) == {}


def parse(content):
    return email.message_from_bytes(content, policy=email.policy.default)


def test_long_body_line_is_reencoded_quoted_printable(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    text = "word " * 900 + "end\n" + "short line\n" + "Grüße " * 300 + "\n"
    raw = make_message(subject="long body", body=text, utf8=True)
    r = d.sendmail(["-i", RCPT], raw)
    assert r.rc == 0, r
    t = sh.wait_for(1)[0]
    lines_ok(t.content)
    m = parse(t.content)
    assert m["Content-Transfer-Encoding"] == "quoted-printable"
    assert m.get_content().replace("\r\n", "\n") == text
    # every other header as it was
    assert m["Subject"] == "long body"
    d.wait_for_log(r"long lines repaired: 0 header line\(s\) folded, 1 part\(s\) re-encoded")


def test_long_header_line_is_folded_without_changing_its_value(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    value = " ".join("item%d" % i for i in range(400))      # ~3000 octets
    raw = to_crlf(make_message(subject="long header", extra_headers=["X-Items: " + value]))
    smtp_submit(d, raw)
    t = sh.wait_for(1)[0]
    lines_ok(t.content)
    head = t.content.split(b"\r\n\r\n", 1)[0]
    unfolded = re.sub(rb"\r\n([ \t])", rb"\1", head)
    assert ("X-Items: " + value).encode() in unfolded.split(b"\r\n")
    assert t.content.split(b"\r\n\r\n", 1)[1] == b"Hello.\r\n"


def test_only_the_multipart_part_with_long_lines_is_touched(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    long_text = "x" * 2500 + "\r\n"
    short_part = (b"Content-Type: text/plain; charset=us-ascii\r\n"
                  b"\r\n"
                  b"a short part\r\n")
    raw = (b"From: app@example.org\r\nTo: rcpt@example.net\r\nSubject: mixed\r\n"
           b"Date: Mon, 02 Jan 2026 10:00:00 +0000\r\nMessage-ID: <mixed@example.org>\r\n"
           b"MIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=\"BOUNDARY\"\r\n\r\n"
           b"--BOUNDARY\r\n" + short_part +
           b"--BOUNDARY\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" + long_text.encode() +
           b"--BOUNDARY--\r\n")
    smtp_submit(d, raw)
    t = sh.wait_for(1)[0]
    lines_ok(t.content)
    assert short_part in t.content
    m = parse(t.content)
    parts = list(m.iter_parts())
    assert parts[0].get_content() == "a short part"
    assert parts[1]["Content-Transfer-Encoding"] == "quoted-printable"
    # the CRLF before a boundary belongs to the boundary (RFC 2046 5.1.1)
    assert parts[1].get_content() == long_text[:-2]


def test_bare_cr_and_lf_never_leave(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    with smtplib.SMTP("127.0.0.1", d.tcp_port, timeout=20) as s:
        s.ehlo()
        s.mail("app@example.org")
        s.rcpt(RCPT)
        # raw DATA with a bare CR and bare LFs inside lines
        s.putcmd("DATA")
        assert s.getreply()[0] == 354
        s.send(b"Subject: bare\r\n\r\none\rtwo\nthree\r\n\nfour\r\r\n.\r\n")
        assert s.getreply()[0] == 250
    t = sh.wait_for(1)[0]
    lines_ok(t.content)
    assert t.content.endswith(b"\r\n\r\none\r\ntwo\r\nthree\r\n\r\nfour\r\n\r\n")


def test_long_lines_through_the_maildrop_are_repaired_too(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    d.stop()
    text = "y" * 1500 + "\n"
    assert d.sendmail(["-i", RCPT], make_message(subject="dropped", body=text)).rc == 0
    d.start()
    t = sh.wait_for(1)[0]
    lines_ok(t.content)
    assert parse(t.content).get_content().replace("\r\n", "\n") == text

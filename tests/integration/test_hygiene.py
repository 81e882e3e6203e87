"""Message hygiene on the SMTP listeners: missing Date:, Message-ID: and
From: are added for locally submitted mail, Bcc: never leaves the machine,
and a message that carries its own headers is left byte for byte."""
import re
import smtplib

from mrtest import make_message, to_crlf

SENDER = "app@example.org"
RCPT = "rcpt@example.net"


def submit_smtp(d, raw, rcpts=(RCPT,)):
    with smtplib.SMTP("127.0.0.1", d.tcp_port, timeout=20) as s:
        assert s.sendmail(SENDER, list(rcpts), raw) == {}


def split(content):
    head, _, body = content.partition(b"\r\n\r\n")
    return head.split(b"\r\n"), body


def test_missing_headers_are_added_and_bcc_removed(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    raw = (b"Subject: from an application\r\n"
           b"To: rcpt@example.net\r\n"
           b"Bcc: hidden@example.net,\r\n"
           b"  also-hidden@example.net\r\n"
           b"X-Kept: yes\r\n"
           b"\r\n"
           b"body line\r\n")
    submit_smtp(d, raw, rcpts=(RCPT, "hidden@example.net"))
    t = sh.wait_for(1, timeout=20)[0]
    head, body = split(t.content)
    assert body == b"body line\r\n"
    assert head[:3] == [b"Subject: from an application", b"To: rcpt@example.net", b"X-Kept: yes"]
    assert not any(h.lower().startswith(b"bcc") or b"hidden" in h for h in head), head
    rec = d.wait_for_record(**{"from": SENDER})
    qid = rec["id"]
    assert any(re.match(rb"Date: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}$", h) for h in head), head
    assert ("Message-ID: <%s@relay.test>" % qid).encode() in head
    assert ("From: <%s>" % SENDER).encode() in head
    # the size logged is the size stored and delivered
    assert int(rec["size"]) == len(t.raw)


def test_message_without_any_header(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    submit_smtp(d, b"just a line of text\r\nand another\r\n")
    t = sh.wait_for(1, timeout=20)[0]
    head, body = split(t.content)
    assert [h.split(b":")[0] for h in head] == [b"Date", b"Message-ID", b"From"]
    assert body == b"just a line of text\r\nand another\r\n"


def test_complete_message_is_untouched(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    msg = to_crlf(make_message(subject="complete"))
    submit_smtp(d, msg)
    assert sh.wait_for(1, timeout=20)[0].content == msg

"""max_message_size is enforced at submission (never accept-then-drop),
and bad sendmail usage is refused."""

import re
import smtplib

import pytest

from mrtest import make_message, message_id_of, one_line, to_crlf, wait_until

SENDER = "sender@example.org"
RCPT = "rcpt@example.net"
LIMIT = 10 * 1024                      # max_message_size = 10K
SMALL_LIMIT = {"max_message_size": "10K"}


def _big():
    return make_message(subject="too big", body=("x" * 70 + "\n") * 300)      # ~21 KiB


def _nothing_kept(d):
    wait_until(lambda: d.tmp_files() == [], 5, what="spool tmp/ to be empty")
    assert d.queue_files() == []
    assert d.queue_json() == []


def _only_this_delivered(d, sh, msg):
    """Barrier: msg is delivered, and it is the only message delivered."""
    sh.wait_for(1)
    d.wait_queue_empty()
    assert [t.message_id for t in sh.delivered()] == [message_id_of(msg)]
    assert sh.delivered()[0].content == to_crlf(msg)


def test_oversize_sendmail_exits_73(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh, overrides=SMALL_LIMIT)

    r = d.sendmail(["-i", "-f", SENDER, RCPT], _big())
    assert r.rc == 73, r
    line = one_line(r.err_text)
    assert re.search(r"(?i)size|too (big|large)|limit|exceed", line), line
    assert r.out == b""
    _nothing_kept(d)
    assert d.accepted() == []

    small = make_message(subject="small enough")
    r = d.sendmail(["-i", "-f", SENDER, RCPT], small)
    assert r.rc == 0, r
    _only_this_delivered(d, sh, small)
    assert len(d.accepted()) == 1


def test_smtp_size_parameter_too_big_gets_552_at_mail(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh, overrides=SMALL_LIMIT)
    small = make_message(subject="declared small")

    s = smtplib.SMTP("127.0.0.1", d.tcp_port, local_hostname="client.test", timeout=10)
    try:
        assert s.ehlo()[0] == 250
        assert s.esmtp_features.get("size") == str(LIMIT)
        code, text = s.mail(SENDER, ["SIZE=%d" % (4 * LIMIT)])
        assert code == 552, text
        # The session goes on; a message declared within the limit passes.
        assert s.mail(SENDER, ["SIZE=%d" % len(to_crlf(small))])[0] == 250
        assert s.rcpt(RCPT)[0] == 250
        assert s.data(to_crlf(small))[0] == 250
    finally:
        s.quit()
    _only_this_delivered(d, sh, small)


def test_smtp_oversize_data_gets_552_and_nothing_is_queued(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh, overrides=SMALL_LIMIT)
    # Just under the limit (CRLF size), to show the limit is where it should be.
    filler = "y" * 60 + "\n"
    body = filler * ((LIMIT - 600) // (len(filler) + 1))
    near = make_message(subject="near the limit", body=body)
    assert LIMIT - 700 < len(to_crlf(near)) < LIMIT

    s = smtplib.SMTP("127.0.0.1", d.tcp_port, local_hostname="client.test", timeout=10)
    try:
        assert s.ehlo()[0] == 250
        # No SIZE= declared: the server finds out while reading the data.
        assert s.mail(SENDER)[0] == 250
        assert s.rcpt(RCPT)[0] == 250
        code, text = s.data(to_crlf(_big()))
        assert code == 552, text
        _nothing_kept(d)
        assert d.accepted() == []
        # The session is usable after the 552.
        assert s.mail(SENDER)[0] == 250
        assert s.rcpt(RCPT)[0] == 250
        assert s.data(to_crlf(near))[0] == 250
    finally:
        s.quit()
    _only_this_delivered(d, sh, near)


@pytest.mark.parametrize("flag", ["-j", "--no-such-option"])
def test_unknown_sendmail_flag_exits_64(daemon, flag):
    d = daemon()
    r = d.sendmail([flag, RCPT], make_message(subject="unknown flag"))
    assert r.rc == 64, r
    line = one_line(r.err_text)
    # The message names the offending flag.
    assert re.search(r"(?<![A-Za-z])%s(?![A-Za-z])" % re.escape(flag.lstrip("-")), line), line
    assert d.queue_json() == []
    assert d.accepted() == []


def test_header_injection_through_arguments_is_refused(daemon, smarthost):
    """CR or LF in -f, -F or a recipient would smuggle headers or SMTP
    commands: refused with exit 64 and one line, nothing queued or sent."""
    sh = smarthost()
    d = daemon(sh)
    msg = make_message(subject="injection")
    for args in (["-f", "a@b.example\r\nRCPT TO:<evil@x.example>", "rcpt@example.net"],
                 ["-F", "Name\nBcc: evil@x.example", "rcpt@example.net"],
                 ["rcpt@example.net\nevil@x.example"]):
        r = d.sendmail(["-i"] + args, msg)
        assert r.rc == 64, (args, r)
        assert len(r.err.decode().strip().splitlines()) == 1, r
        assert b"control character" in r.err, r
    assert d.queue_json() == []
    assert sh.delivered() == []

"""Messages submitted through sendmail and the loopback SMTP listener reach
the smarthost byte for byte, with the right envelope and log lines."""

import os
import smtplib

import pytest

from mrtest import make_message, message_id_of, strip_angle, to_crlf

SENDER = "sender@example.org"
RCPT = "rcpt@example.net"

# Dot lines, an empty line, white space and 8-bit UTF-8: what transparency
# and line handling bugs corrupt.
TRICKY_BODY = ("First line.\n"
               ".\n"
               ".leading dot\n"
               "..two leading dots\n"
               "...\n"
               ". dot and space\n"
               "\n"
               "tab\tand trailing spaces   \n"
               "UTF-8: Gr\u00fc\u00dfe aus K\u00f6ln \u2014 \u2713\n"
               "last line\n")


def test_sendmail_delivers_byte_exact(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    rcpts = ["alice@example.net", "bob@example.com"]
    msg = make_message(subject="byte exact", sender=SENDER, to=rcpts, body=TRICKY_BODY, utf8=True)

    r = d.sendmail(["-i", "-f", SENDER, "--"] + rcpts, msg)
    assert r.rc == 0, r
    assert r.out == b"" and r.err == b"", r

    t = sh.wait_for(1)[0]
    expected = to_crlf(msg)
    assert t.content == expected
    assert t.mail_from == SENDER
    assert sorted(t.rcpt_tos) == sorted(rcpts)

    acc = d.wait_for_record(**{"from": SENDER})
    qid = acc["id"]
    assert acc["from"] == "<%s>" % SENDER
    # the size logged is what was stored and delivered, our Received: field included
    assert t.received is not None
    assert acc["size"] == str(len(t.raw))
    assert acc["nrcpt"] == "2"
    assert acc["uid"] == str(os.getuid())
    assert acc["via"] == "sendmail"

    for rcpt in rcpts:
        rec = d.wait_for_record(id=qid, to=rcpt, status="sent")
        assert rec["to"] == "<%s>" % rcpt
        assert rec["relay"] == "127.0.0.1[127.0.0.1]:%d" % sh.port
        assert rec["tls"] == "none"
        assert rec["dsn"] == "2.0.0"
        assert rec["attempts"] == "1"
        assert float(rec["delay"]) >= 0
        assert rec["text"].startswith("250"), rec

    d.wait_queue_empty()
    # One message for two recipients at one smarthost: one transaction.
    assert len(sh.delivered()) == 1
    assert sorted(strip_angle(o["to"]) for o in d.outcomes(qid)) == sorted(rcpts)
    assert d.tmp_files() == []


def test_sendmail_t_takes_recipients_from_headers_and_drops_bcc(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    head_keep_1 = ("From: Test Sender <%s>\n"
                   "To: To One <to1@example.net>, to2@example.net\n"
                   "Cc: \"Copy, Person\" <cc@example.net>\n" % SENDER)
    bcc = ("Bcc: hidden1@example.net,\n"
           " Hidden Two <hidden2@example.net>\n")
    head_keep_2 = ("Subject: recipients from headers\n"
                   "Date: Mon, 02 Jan 2023 03:04:05 +0000\n"
                   "Message-ID: <dash-t@test.example.org>\n"
                   "\n"
                   "Bcc: nobody@example.net is body text, not a header.\n")
    msg = (head_keep_1 + bcc + head_keep_2).encode()

    r = d.sendmail(["-t", "-i", "-f", SENDER], msg)
    assert r.rc == 0, r

    t = sh.wait_for(1)[0]
    assert sorted(t.rcpt_tos) == sorted(["to1@example.net", "to2@example.net", "cc@example.net",
                                         "hidden1@example.net", "hidden2@example.net"])
    assert b"hidden" not in t.content
    assert t.content == to_crlf((head_keep_1 + head_keep_2).encode())
    d.wait_queue_empty()
    assert len(sh.delivered()) == 1


@pytest.mark.parametrize("flags, dot_ends_input", [
    ([], True),
    (["-i"], False),
    (["-oi"], False),
], ids=["no-i", "-i", "-oi"])
def test_lone_dot_line(daemon, smarthost, flags, dot_ends_input):
    sh = smarthost()
    d = daemon(sh)
    msg = make_message(subject="lone dot", body="before the dot\n.\nafter the dot\n")

    r = d.sendmail(flags + ["-f", SENDER, RCPT], msg)
    assert r.rc == 0, r

    t = sh.wait_for(1)[0]
    if dot_ends_input:
        assert t.content == to_crlf(msg.split(b"\n.\n")[0] + b"\n")
    else:
        assert t.content == to_crlf(msg)
    d.wait_queue_empty()


@pytest.mark.parametrize("flags", [
    ["-f", "bounces@example.org"],
    ["-fbounces@example.org"],
    ["-F", "Full Name", "-f", "bounces@example.org"],
], ids=["-f ADDR", "-fADDR", "-F NAME -f ADDR"])
def test_f_sets_envelope_sender(daemon, smarthost, flags):
    sh = smarthost()
    d = daemon(sh)
    # The header From: differs from the envelope sender on purpose.
    msg = make_message(subject="envelope sender", sender="someone@example.org")

    r = d.sendmail(["-i"] + flags + [RCPT], msg)
    assert r.rc == 0, r

    t = sh.wait_for(1)[0]
    assert t.mail_from == "bounces@example.org"
    assert t.rcpt_tos == [RCPT]
    # -F only names a From: that would be generated; this one has its own.
    assert t.content == to_crlf(msg)
    acc = d.wait_for_record(**{"from": "bounces@example.org"})
    assert acc["via"] == "sendmail"
    d.wait_queue_empty()


def test_smtp_listener_delivers(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    msg = to_crlf(make_message(subject="via smtp", body=TRICKY_BODY, utf8=True))

    s = smtplib.SMTP("127.0.0.1", d.tcp_port, local_hostname="client.test", timeout=10)
    try:
        code, _ = s.ehlo()
        assert code == 250
        assert s.has_extn("pipelining")
        assert s.has_extn("8bitmime")
        assert s.esmtp_features.get("size") == str(35 * 1024 * 1024)
        # smtplib adds SIZE=<n> itself; it also dot-stuffs the data.
        refused = s.sendmail(SENDER, [RCPT, "second@example.net"], msg,
                             mail_options=["BODY=8BITMIME"])
        assert refused == {}
    finally:
        s.quit()

    t = sh.wait_for(1)[0]
    assert t.content == msg
    assert t.mail_from == SENDER
    assert sorted(t.rcpt_tos) == sorted([RCPT, "second@example.net"])

    acc = d.wait_for_record(**{"from": SENDER})
    assert acc["via"] == "smtp"
    assert acc["nrcpt"] == "2"
    assert acc["size"] == str(len(t.raw))
    for rcpt in (RCPT, "second@example.net"):
        rec = d.wait_for_record(id=acc["id"], to=rcpt, status="sent")
        assert rec["dsn"] == "2.0.0"
    d.wait_queue_empty()


def test_connections_are_reused(daemon, smarthost):
    sh = smarthost()
    # the first answers wait until every message is queued, so messages pile up
    # behind the open sessions however slowly the submissions run (sanitizers, load)
    sh.hold()
    concurrency = 2
    d = daemon(sh, overrides={"concurrency": str(concurrency)})
    n = 8
    msgs = [make_message(subject="reuse %d" % i) for i in range(n)]
    for m in msgs:
        r = d.sendmail(["-i", "-f", SENDER, RCPT], m)
        assert r.rc == 0, r
    sh.release()

    sh.wait_for(n, timeout=30)
    d.wait_queue_empty()
    delivered = sh.delivered()
    assert sorted(t.message_id for t in delivered) == sorted(message_id_of(m) for m in msgs)
    for t in delivered:
        assert t.content == to_crlf(next(m for m in msgs if message_id_of(m) == t.message_id))

    sessions = {t.session.sid for t in delivered}
    # Without reuse every message opens its own connection (n sessions).
    # With reuse, the sessions that were open while messages were waiting
    # carry them; allow a reconnect or two but not one session per message.
    assert len(sessions) <= n // 2, "%d sessions for %d messages" % (len(sessions), n)
    assert max(sum(1 for t in delivered if t.session.sid == sid) for sid in sessions) >= 2
    assert sh.max_open_greeted <= concurrency, \
        "%d sessions open at once with concurrency = %d" % (sh.max_open_greeted, concurrency)

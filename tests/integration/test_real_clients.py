"""The sendmail command lines real programs use, each with the message such
a program writes, and the exact envelope and header section that reach
the smarthost.  The daemon is relay.test with admin_address set, as a
newcomer's five-line config would have it."""
import re

import pytest

from mrtest import current_user, one_line, quote

HOST = "relay.test"
ADMIN = "admin@example.com"
DATE_RE = r"\w{3}, \d\d? \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}"


def head_body(content):
    head, _, body = content.partition(b"\r\n\r\n")
    return head.decode("utf-8").split("\r\n"), body


def check_head(head, expected):
    """expected: the header lines in order; a line given as re.compile(...)
    must match, a string must be equal."""
    assert len(head) == len(expected), "\n".join(head)
    for got, want in zip(head, expected):
        if isinstance(want, str):
            assert got == want, (got, want)
        else:
            assert want.fullmatch(got), (got, want.pattern)


@pytest.fixture
def relay(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh, overrides={"admin_address": quote(ADMIN)})
    return d, sh


def deliver(relay, argv, message):
    d, sh = relay
    r = d.sendmail(argv, message)
    assert r.rc == 0 and r.out == b"" and r.err == b"", r
    t = sh.wait_for(1)[0]
    return t


def test_cron(relay):
    """cron (Debian's cron 3.0pl1): -FCronDaemon -i -B8BITMIME -oem root."""
    msg = ("From: root (Cron Daemon)\n"
           "To: root\n"
           "Subject: Cron <root@web1> /usr/local/bin/backup --nightly\n"
           "MIME-Version: 1.0\n"
           "Content-Type: text/plain; charset=UTF-8\n"
           "Content-Transfer-Encoding: 8bit\n"
           "X-Cron-Env: <SHELL=/bin/sh>\n"
           "X-Cron-Env: <HOME=/root>\n"
           "X-Cron-Env: <LOGNAME=root>\n"
           "\n"
           "backup: 3 files copied — done\n").encode()
    t = deliver(relay, ["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"], msg)
    user = current_user()
    assert t.mail_from == "%s@%s" % (user, HOST)
    assert t.rcpt_tos == [ADMIN]                   # root is local: admin_address
    assert "BODY=8BITMIME" in t.mail_options
    head, body = head_body(t.content)
    check_head(head, [
        re.compile("Date: " + DATE_RE),             # what is missing comes first
        re.compile(r"Message-ID: <\d+\.\d{9}\.\d+@relay\.test>"),
        "From: root@%s (Cron Daemon)" % HOST,
        "To: root@%s" % HOST,
        "Subject: Cron <root@web1> /usr/local/bin/backup --nightly",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=UTF-8",
        "Content-Transfer-Encoding: 8bit",
        "X-Cron-Env: <SHELL=/bin/sh>",
        "X-Cron-Env: <HOME=/root>",
        "X-Cron-Env: <LOGNAME=root>",
    ])
    assert body == "backup: 3 files copied — done\r\n".encode()
    d, _ = relay
    rec = d.wait_for_record(to=ADMIN, status="sent")
    assert rec["orig_to"].strip("<>") == "root"


def test_mutt(relay):
    """mutt: -oem -oi -- a@b ...; a complete message, left byte for byte."""
    msg = (b"Date: Sun, 22 Nov 2026 10:00:00 +0100\n"
           b"From: Alice Example <alice@example.org>\n"
           b"To: Bob <bob@example.net>\n"
           b"Cc: carol@example.net\n"
           b"Subject: Re: the plan\n"
           b"Message-ID: <20261122090000.GA1234@example.org>\n"
           b"MIME-Version: 1.0\n"
           b"Content-Type: text/plain; charset=us-ascii\n"
           b"Content-Disposition: inline\n"
           b"User-Agent: Mutt/2.2.9 (2022-11-12)\n"
           b"\n"
           b"> quoted\n"
           b".\n"
           b"a line with only a dot above\n")
    t = deliver(relay, ["-oem", "-oi", "--", "bob@example.net", "carol@example.net"], msg)
    assert t.mail_from == "%s@%s" % (current_user(), HOST)
    assert t.rcpt_tos == ["bob@example.net", "carol@example.net"]
    assert t.content == msg.replace(b"\n", b"\r\n")


def test_php_mail(relay):
    """PHP mail() with sendmail_path "sendmail -t -i": recipients from To:,
    no From:, Date: or Message-ID: of its own."""
    msg = (b"To: customer@example.net\n"
           b"Subject: Your order\n"
           b"X-PHP-Originating-Script: 33:order.php\n"
           b"Content-type: text/plain; charset=UTF-8\n"
           b"\n"
           b"Thank you.\n")
    t = deliver(relay, ["-t", "-i"], msg)
    user = current_user()
    assert t.mail_from == "%s@%s" % (user, HOST)
    assert t.rcpt_tos == ["customer@example.net"]
    head, body = head_body(t.content)
    check_head(head, [
        re.compile(r"From: (.+ )?<%s@relay\.test>" % re.escape(user)),
        re.compile("Date: " + DATE_RE),
        re.compile(r"Message-ID: <\d+\.\d{9}\.\d+@relay\.test>"),
        "To: customer@example.net",
        "Subject: Your order",
        "X-PHP-Originating-Script: 33:order.php",
        "Content-type: text/plain; charset=UTF-8",
    ])
    assert body == b"Thank you.\r\n"


def test_git_send_email(relay):
    """git send-email: -i a@b c@d with a patch mail (a line "." inside
    the patch must not end it)."""
    msg = (b"From: Dev One <dev1@example.org>\n"
           b"To: list@example.net\n"
           b"Cc: maintainer@example.net\n"
           b"Subject: [PATCH] fix the frobnicator\n"
           b"Date: Sun, 22 Nov 2026 10:00:00 +0000\n"
           b"Message-ID: <20261122100000.1-1-dev1@example.org>\n"
           b"X-Mailer: git-send-email 2.39.5\n"
           b"MIME-Version: 1.0\n"
           b"Content-Transfer-Encoding: 8bit\n"
           b"\n"
           b"---\n"
           b" a | 1 +\n"
           b"\n"
           b"@@ -1 +1,2 @@\n"
           b" x\n"
           b"+.\n"
           b".\n"
           b"-- \n"
           b"2.39.5\n")
    t = deliver(relay, ["-i", "list@example.net", "maintainer@example.net"], msg)
    assert t.rcpt_tos == ["list@example.net", "maintainer@example.net"]
    assert t.content == msg.replace(b"\n", b"\r\n")


def test_mdadm(relay):
    """mdadm --monitor: sendmail -t, From: with a local address."""
    msg = (b"From: mdadm monitoring <root>\n"
           b"To: root\n"
           b"Subject: Fail event on /dev/md0:web1\n"
           b"\n"
           b"This is an automatically generated mail message from mdadm\n"
           b"running on web1\n")
    t = deliver(relay, ["-t"], msg)
    assert t.rcpt_tos == [ADMIN]
    head, body = head_body(t.content)
    check_head(head, [
        re.compile("Date: " + DATE_RE),
        re.compile(r"Message-ID: <\d+\.\d{9}\.\d+@relay\.test>"),
        "From: mdadm monitoring <root@%s>" % HOST,
        "To: root@%s" % HOST,
        "Subject: Fail event on /dev/md0:web1",
    ])
    assert body.endswith(b"running on web1\r\n")


def test_logwatch(relay):
    """logwatch: sendmail -t, MIME headers, a report with lines starting
    with dots and no trailing newline."""
    msg = (b"To: root\n"
           b"From: Logwatch <root>\n"
           b"Subject: Logwatch for web1 (Linux)\n"
           b"Auto-Submitted: auto-generated\n"
           b"MIME-Version: 1.0\n"
           b"Content-Transfer-Encoding: 7bit\n"
           b"Content-Type: text/plain; charset=\"iso-8859-1\"\n"
           b"\n"
           b" ################### Logwatch 7.8 (01/22/23) ####################\n"
           b"..hidden dir\n"
           b" ###################### Logwatch End #########################")
    t = deliver(relay, ["-t"], msg)
    assert t.rcpt_tos == [ADMIN]
    head, body = head_body(t.content)
    assert head[2:9] == ["To: root@%s" % HOST, "From: Logwatch <root@%s>" % HOST,
                        "Subject: Logwatch for web1 (Linux)", "Auto-Submitted: auto-generated",
                        "MIME-Version: 1.0", "Content-Transfer-Encoding: 7bit",
                        "Content-Type: text/plain; charset=\"iso-8859-1\""]
    assert body == (b" ################### Logwatch 7.8 (01/22/23) ####################\r\n"
                    b"..hidden dir\r\n"
                    b" ###################### Logwatch End #########################\r\n")


def test_plain_sendmail_with_a_file(relay, workdir):
    """sendmail a@b < file: a file with no header at all."""
    t = deliver(relay, ["ops@example.com"], b"disk /var is 91% full\n")
    user = current_user()
    assert t.mail_from == "%s@%s" % (user, HOST)
    assert t.rcpt_tos == ["ops@example.com"]
    head, body = head_body(t.content)
    check_head(head, [
        re.compile(r"From: (.+ )?<%s@relay\.test>" % re.escape(user)),
        re.compile("Date: " + DATE_RE),
        re.compile(r"Message-ID: <\d+\.\d{9}\.\d+@relay\.test>"),
    ])
    assert body == b"disk /var is 91% full\r\n"


def test_plain_sendmail_stops_at_a_lone_dot_without_i(relay):
    """Without -i, a line with a single dot ends the message (sendmail's rule)."""
    t = deliver(relay, ["ops@example.com"], b"Subject: dot\n\nbefore\n.\nafter\n")
    assert head_body(t.content)[1] == b"before\r\n"


@pytest.mark.parametrize("argv, message", [
    ([], b"Subject: nobody to send to\n\nbody\n"),
    (["-t"], b"Subject: no To, Cc or Bcc\n\nbody\n"),
    (["-t"], b"To: undisclosed-recipients:;\nSubject: an empty group\n\nbody\n"),
])
def test_no_recipients_is_a_data_error(relay, argv, message):
    d, sh = relay
    r = d.sendmail(argv, message)
    assert r.rc == 65, r
    assert one_line(r.err_text) == ("mailrelay-sendmail: no recipients: give them as arguments or use -t "
                                    "with To:, Cc: or Bcc: headers")
    assert d.queue_json() == []

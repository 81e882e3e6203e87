"""Addresses (SPEC "Addresses"): local senders and header addresses
qualified or rewritten (from_address, rewrite_from = never | local |
always), strict_addresses, DSN parameters carried to a smarthost that
offers DSN (with ORCPT for alias-expanded recipients), SMTPUTF8, -t with
Resent-* fields, and the note left when a user sets someone else's
sender."""
import os
import smtplib
import subprocess

import pytest

from mrtest import client_env, make_message, one_line, quote, require_root

HOST = "relay.test"


def split(content):
    head, _, body = content.partition(b"\r\n\r\n")
    return head.split(b"\r\n"), body


def header(content, name):
    """Values of a header field (unfolded), in order."""
    head, _ = split(content)
    out, cur = [], None
    for line in head:
        if line[:1] in (b" ", b"\t") and cur is not None:
            cur += b" " + line.strip()
            out[-1] = cur
            continue
        k, _, v = line.partition(b":")
        if k.strip().lower() == name.lower().encode():
            cur = v.strip()
            out.append(cur)
        else:
            cur = None
    return [v.decode("utf-8", "replace") for v in out]


CRON_MSG = (b"From: root (Cron Daemon)\n"
            b"To: root\n"
            b"Subject: Cron <root@web1> /usr/local/bin/backup\n"
            b"\n"
            b"backup done\n")


def test_local_sender_and_header_addresses_are_qualified(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    r = d.sendmail(["-i", "ops@example.com"], CRON_MSG)
    assert r.rc == 0, r
    t = sh.wait_for(1)[0]
    assert t.mail_from == "root@" + HOST
    assert header(t.content, "From") == ["root@%s (Cron Daemon)" % HOST]
    assert header(t.content, "To") == ["root@" + HOST]
    # a Subject that looks like an address is not an address field
    assert header(t.content, "Subject") == ["Cron <root@web1> /usr/local/bin/backup"]


def test_from_address_replaces_local_senders_keeping_the_display_name(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh, overrides={"from_address": quote("alerts@example.com")})
    assert d.sendmail(["-i", "ops@example.com"], CRON_MSG).rc == 0
    # a generated From: (no From: in the message) with -F
    assert d.sendmail(["-F", "Nightly Backup", "-i", "ops@example.com"],
                      b"Subject: second\n\nbody\n").rc == 0
    # a sender with a real domain is left alone
    assert d.sendmail(["-f", "app@shop.example", "-i", "ops@example.com"],
                      b"From: Shop <app@shop.example>\nSubject: third\n\nbody\n").rc == 0
    ts = sorted(sh.wait_for(3), key=lambda t: header(t.content, "Subject")[0])
    by_subject = {header(t.content, "Subject")[0]: t for t in ts}
    cron = by_subject["Cron <root@web1> /usr/local/bin/backup"]
    assert cron.mail_from == "alerts@example.com"
    assert header(cron.content, "From") == ["alerts@example.com (Cron Daemon)"]
    assert header(cron.content, "To") == ["root@" + HOST]   # recipients are only qualified
    second = by_subject["second"]
    assert second.mail_from == "alerts@example.com"
    assert header(second.content, "From") == ["Nightly Backup <alerts@example.com>"]
    third = by_subject["third"]
    assert third.mail_from == "app@shop.example"
    assert header(third.content, "From") == ["Shop <app@shop.example>"]


def test_rewrite_from_never_only_qualifies_the_header(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh, overrides={"from_address": quote("alerts@example.com"), "rewrite_from": "never"})
    assert d.sendmail(["-i", "ops@example.com"], CRON_MSG).rc == 0
    t = sh.wait_for(1)[0]
    # SPEC: a local envelope sender becomes from_address whatever rewrite_from says
    assert t.mail_from == "alerts@example.com"
    assert header(t.content, "From") == ["root@%s (Cron Daemon)" % HOST]


def test_rewrite_from_always_sends_as_the_identity_and_keeps_the_author_as_reply_to(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh, overrides={"from_address": quote("relay@corp.example"), "rewrite_from": "always"})
    raw = (b"From: \"Shop, Orders\" <orders@shop.example>\r\n"
           b"Sender: app@shop.example\r\n"
           b"To: customer@example.net\r\n"
           b"Subject: order 42\r\n"
           b"\r\n"
           b"thanks\r\n")
    with smtplib.SMTP("127.0.0.1", d.tcp_port, timeout=20) as s:
        assert s.sendmail("orders@shop.example", ["customer@example.net"], raw) == {}
        # a bounce (null sender) stays a bounce
        assert s.sendmail("", ["customer@example.net"],
                          b"From: MAILER-DAEMON@relay.test\r\nSubject: bounce\r\n\r\nx\r\n") == {}
    ts = {header(t.content, "Subject")[0]: t for t in sh.wait_for(2)}
    t = ts["order 42"]
    assert t.mail_from == "relay@corp.example"
    assert header(t.content, "From") == ["\"Shop, Orders\" <relay@corp.example>"]
    assert header(t.content, "Sender") == ["relay@corp.example"]
    assert header(t.content, "Reply-To") == ["\"Shop, Orders\" <orders@shop.example>"]
    assert split(t.content)[1] == b"thanks\r\n"
    # the queue keeps what was submitted: rewriting happens per smarthost, on the way out
    assert d.wait_for_record(**{"from": "orders@shop.example"})
    b = ts["bounce"]
    assert b.mail_from == ""
    # an existing Reply-To is never doubled
    with smtplib.SMTP("127.0.0.1", d.tcp_port, timeout=20) as s:
        s.sendmail("a@shop.example", ["c@example.net"],
                   b"From: a@shop.example\r\nReply-To: desk@shop.example\r\nSubject: r\r\n\r\nx\r\n")
    t = [t for t in sh.wait_for(3) if header(t.content, "Subject") == ["r"]][0]
    assert header(t.content, "Reply-To") == ["desk@shop.example"]
    assert header(t.content, "From") == ["relay@corp.example"]


def test_strict_addresses_refuses_what_does_not_parse(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh, overrides={"strict_addresses": "yes"})
    r = d.sendmail(["-i", "bad..dots@example.com"], make_message())
    assert r.rc == 65, r
    assert "bad..dots@example.com" in one_line(r.err_text)
    assert "strict_addresses" in r.err_text
    r = d.sendmail(["-f", "x@-bad-.example", "-i", "ok@example.com"], make_message())
    assert r.rc == 65, r
    # over SMTP: 553 for the bad one, the good ones go through
    with smtplib.SMTP("127.0.0.1", d.tcp_port, timeout=20) as s:
        s.ehlo()
        s.command_encoding = "utf-8"
        assert s.mail("app@example.org", ["SMTPUTF8"])[0] == 250
        code, text = s.docmd("RCPT TO:<a@example..com>")
        assert code in (501, 553), (code, text)
        code, text = s.docmd("RCPT TO:<x@-bad-.example>")
        assert code == 553 and b"strict_addresses" in text, (code, text)
        assert s.rcpt("\"john doe\"@example.com")[0] == 250
        assert s.rcpt("jörg@bücher.example")[0] == 250
        assert s.rcpt("root")[0] == 250          # a local user is fine
        code, _ = s.data(make_message(subject="strict"))
        assert code == 250
    t = sh.wait_for(1)[0]
    assert sorted(t.rcpt_tos) == sorted(["\"john doe\"@example.com", "jörg@bücher.example", "root@" + HOST])


def test_lenient_addresses_take_display_names_on_the_command_line(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    r = d.sendmail(["-i", "Ops Team <ops@example.com>", "dev@example.com (Developers)"], make_message())
    assert r.rc == 0, r
    assert sorted(sh.wait_for(1)[0].rcpt_tos) == ["dev@example.com", "ops@example.com"]
    r = d.sendmail(["-i", "John Doe"], make_message())
    assert r.rc == 65 and "John Doe" in one_line(r.err_text), r


def test_dsn_parameters_reach_a_smarthost_that_offers_dsn(daemon, smarthost, workdir):
    sh = smarthost()
    sh.dsn = True
    d = daemon(sh, overrides={"admin_address": quote("admin@example.com")})
    with open(os.path.join(d.dir, "aliases"), "w") as f:
        f.write("root: ops@example.com\n")
    r = d.sendmail(["-N", "success,delay", "-R", "hdrs", "-V", "job=42 nightly", "-i",
                    "root", "dev@example.com"], make_message(subject="dsn"))
    assert r.rc == 0, r
    t = sh.wait_for(1)[0]
    assert "RET=HDRS" in t.mail_options
    assert "ENVID=JOB+3D42+20NIGHTLY" in t.mail_options     # xtext; aiosmtpd upper-cases options
    assert t.rcpt_options["ops@example.com"] == ["NOTIFY=SUCCESS,DELAY", "ORCPT=RFC822;ROOT@RELAY.TEST"]
    assert t.rcpt_options["dev@example.com"] == ["NOTIFY=SUCCESS,DELAY"]
    # orig_to in the log says the same
    rec = d.wait_for_record(to="ops@example.com", status="sent")
    assert rec.get("orig_to", "").strip("<>") == "root"

    # -N never, over SMTP too, ORCPT as the client gave it
    with smtplib.SMTP("127.0.0.1", d.tcp_port, timeout=20) as s:
        s.ehlo()
        assert s.has_extn("dsn")
        assert s.mail("app@example.org", ["RET=FULL", "ENVID=abc"])[0] == 250
        assert s.rcpt("x@example.net", ["NOTIFY=NEVER", "ORCPT=rfc822;first@example.net"])[0] == 250
        assert s.data(make_message(subject="dsn2"))[0] == 250
    t = [t for t in sh.wait_for(2) if b"Subject: dsn2" in t.content][0]
    assert "RET=FULL" in t.mail_options and "ENVID=ABC" in t.mail_options
    assert t.rcpt_options["x@example.net"] == ["NOTIFY=NEVER", "ORCPT=RFC822;FIRST@EXAMPLE.NET"]


def test_without_dsn_at_the_smarthost_nothing_extra_is_sent(daemon, smarthost):
    sh = smarthost()            # aiosmtpd refuses unknown parameters with 555
    d = daemon(sh)
    r = d.sendmail(["-N", "failure", "-R", "full", "-V", "x1", "-i", "dev@example.com"], make_message())
    assert r.rc == 0, r
    t = sh.wait_for(1)[0]
    assert not any(o.startswith(("RET=", "ENVID=")) for o in t.mail_options)
    assert t.rcpt_options["dev@example.com"] == []


@pytest.mark.parametrize("bad", [["-N", "sometimes"], ["-N", "never,success"], ["-R", "body"]])
def test_bad_dsn_flags_are_usage_errors(daemon, smarthost, bad):
    d = daemon(smarthost())
    r = d.sendmail(bad + ["-i", "dev@example.com"], make_message())
    assert r.rc == 64, r
    assert ": %s: " % bad[0] in one_line(r.err_text)


def test_utf8_headers_and_addresses_use_smtputf8(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    msg = ("From: Jörg <jörg@bücher.example>\nTo: Zoë <zoë@example.net>\n"
           "Subject: Grüße aus Köln\n\nHallo — schöne Grüße\n").encode()
    r = d.sendmail(["-f", "jörg@bücher.example", "-i", "zoë@example.net"], msg)
    assert r.rc == 0, r
    t = sh.wait_for(1)[0]
    assert "SMTPUTF8" in t.mail_options
    assert t.mail_from == "jörg@bücher.example"
    assert t.rcpt_tos == ["zoë@example.net"]
    head, body = split(t.content)
    assert "Subject: Grüße aus Köln".encode() in head
    assert body == "Hallo — schöne Grüße\r\n".encode()


def test_non_ascii_address_is_bounced_by_a_smarthost_without_smtputf8(daemon, smarthost):
    sh = smarthost(start=False)
    sh.smtputf8 = False
    sh.start()
    d = daemon(sh)
    assert d.sendmail(["-i", "zoë@example.net"], make_message(subject="utf8 rcpt")).rc == 0
    rec = d.wait_for_record(to="zoë@example.net", status="bounced")
    assert rec["dsn"] == "5.6.7"
    # UTF-8 in a header only: still delivered (the smarthost takes 8-bit headers or says so)
    msg = "Subject: Grüße\n\nbody\n".encode()
    assert d.sendmail(["-i", "ascii@example.net"], msg).rc == 0
    sh.wait_for(2)      # that message, and the notification of the bounce above
    t = [t for t in sh.delivered() if t.rcpt_tos == ["ascii@example.net"]][0]
    assert t.rcpt_tos == ["ascii@example.net"]
    assert "SMTPUTF8" not in t.mail_options


def test_t_uses_resent_fields_when_the_message_is_resent(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    msg = (b"From: a@example.org\nTo: original@example.org\n"
           b"Resent-From: b@example.org\nResent-To: new@example.net\n"
           b"Resent-Bcc: hidden@example.net\nSubject: fwd\n\nbody\n")
    assert d.sendmail(["-t", "-i"], msg).rc == 0
    t = sh.wait_for(1)[0]
    assert sorted(t.rcpt_tos) == ["hidden@example.net", "new@example.net"]
    assert b"hidden" not in t.content
    assert header(t.content, "To") == ["original@example.org"]


def test_t_adds_command_line_recipients_like_postfix(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    msg = b"To: a@example.net\nCc: b@example.net\nSubject: t\n\nbody\n"
    assert d.sendmail(["-t", "-i", "c@example.net"], msg).rc == 0
    assert sorted(sh.wait_for(1)[0].rcpt_tos) == ["a@example.net", "b@example.net", "c@example.net"]


def test_a_user_setting_another_sender_is_noted(daemon, smarthost, workdir, build):
    """sendmail -f by a user who is not root: the message says who it was
    (X-Authentication-Warning) and the daemon logs the real uid."""
    require_root("running the client as another user")
    sh = smarthost()
    d = daemon(sh)
    os.chmod(d.conf, 0o644)
    client = build.sendmail
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        client, "-C", d.conf, "-f", "ceo@example.com", "-i", "dev@example.com"],
                       input=make_message(subject="forged"), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=client_env(), timeout=20)
    assert r.returncode == 0, r
    t = sh.wait_for(1)[0]
    assert t.mail_from == "ceo@example.com"
    assert header(t.content, "X-Authentication-Warning") == [
        "%s: nobody set sender to ceo@example.com using -f" % HOST]
    d.wait_for_log(r"sender <ceo@example.com> set by uid=65534 \(nobody\)")
    # root setting a sender, or a user giving their own address: no note
    assert d.sendmail(["-f", "ceo@example.com", "-i", "dev@example.com"], make_message(subject="root")).rc == 0
    t = [t for t in sh.wait_for(2) if b"Subject: root" in t.content][0]
    assert header(t.content, "X-Authentication-Warning") == []

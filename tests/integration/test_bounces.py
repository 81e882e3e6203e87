"""Bounces (SPEC "Delivery"): failed recipients are reported to the
envelope sender in an RFC 3464 notification from <>, checked here field
by field with Python's email package; NOTIFY is honoured; mail from <> is
never bounced to <> (double_bounce = admin | drop); expiry after
max_queue_time bounces with 4.4.7."""
import email
import email.policy
import os
import re
import smtplib
import time

import pytest

from mrtest import make_message, quote, wait_until

SENDER = "app@example.org"
ADMIN = "admin@example.com"


def parse(content):
    return email.message_from_bytes(content, policy=email.policy.default)


def report_blocks(msg):
    """The message/delivery-status part as a list of {field: value} blocks."""
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts][:2] == ["text/plain", "message/delivery-status"]
    raw = parts[1].as_bytes().decode().split("\n\n", 1)[1]
    blocks = []
    for chunk in raw.replace("\r\n", "\n").strip().split("\n\n"):
        fields, last = {}, None
        for line in chunk.split("\n"):
            if line[:1] in (" ", "\t") and last:
                fields[last] += " " + line.strip()
                continue
            k, _, v = line.partition(":")
            last = k.strip()
            fields[last] = v.strip()
        blocks.append(fields)
    return blocks


def notices(sh):
    return [t for t in sh.delivered() if t.mail_from == ""]


def test_a_failed_recipient_is_reported_to_the_sender(daemon, smarthost):
    sh = smarthost()
    sh.rcpt_replies = {"nobody@example.net": "550 5.1.1 <nobody@example.net>: no such user"}
    d = daemon(sh)
    m = make_message(subject="partly failing", sender=SENDER, to=("ok@example.net", "nobody@example.net"))
    assert d.sendmail(["-i", "-f", SENDER, "ok@example.net", "nobody@example.net"], m).rc == 0
    qid = d.accepted_id(SENDER)
    sh.wait_for(2)
    d.wait_queue_empty()
    (t,) = notices(sh)
    assert t.rcpt_tos == [SENDER]
    n = parse(t.content)
    assert n.get_content_type() == "multipart/report"
    assert n.get_param("report-type") == "delivery-status"
    assert n["From"].addresses[0].addr_spec == "MAILER-DAEMON@relay.test"
    assert n["To"] == SENDER
    assert n["Subject"] == "Undelivered Mail Returned to Sender"
    assert n["Auto-Submitted"] == "auto-replied"
    text = list(n.iter_parts())[0].get_content()
    assert "nobody@example.net" in text and qid in text and "no such user" in text
    assert "ok@example.net" not in text
    per_msg, *per_rcpt = report_blocks(n)
    assert per_msg["Reporting-MTA"] == "dns; relay.test"
    assert len(per_rcpt) == 1
    r = per_rcpt[0]
    assert r["Final-Recipient"] == "rfc822; nobody@example.net"
    assert r["Action"] == "failed"
    assert r["Status"] == "5.1.1"
    assert r["Diagnostic-Code"] == "smtp; 550 5.1.1 <nobody@example.net>: no such user"
    # small message, no RET: returned whole
    returned = list(n.iter_parts())[2]
    assert returned.get_content_type() == "message/rfc822"
    assert returned.get_content()["Subject"] == "partly failing"
    d.wait_for_log(r"%s: delivery status notification to <%s> queued as [0-9A-F]{16}" % (qid, SENDER))
    assert [r["via"] for r in d.accepted() if r["from"] == "<>"] == ["bounce"]


def test_ret_hdrs_returns_only_the_header(daemon, smarthost):
    sh = smarthost()
    sh.rcpt_replies = {"nobody@example.net": "550 5.1.1 no such user"}
    d = daemon(sh)
    assert d.sendmail(["-R", "hdrs", "-i", "-f", SENDER, "nobody@example.net"],
                      make_message(subject="headers only", body="secret body\n")).rc == 0
    (t,) = [t for t in sh.wait_for(1) if t.mail_from == ""] or [None]
    n = parse(t.content)
    returned = list(n.iter_parts())[2]
    assert returned.get_content_type() == "text/rfc822-headers"
    assert b"headers only" in t.content and b"secret body" not in t.content


def test_notify_never_means_no_notification(daemon, smarthost):
    sh = smarthost()
    sh.rcpt_replies = {"nobody@example.net": "550 5.1.1 no such user"}
    d = daemon(sh)
    assert d.sendmail(["-N", "never", "-i", "-f", SENDER, "nobody@example.net"], make_message()).rc == 0
    qid = d.accepted_id(SENDER)
    d.wait_for_log(r"%s: no delivery status notification: NOTIFY excludes failures" % qid)
    d.wait_queue_empty()
    assert sh.delivered() == []


def test_local_sender_gets_it_through_aliases(daemon, smarthost):
    """Cron's mail (sender root) that fails: the notice reaches a person."""
    sh = smarthost()
    sh.rcpt_replies = {"gone@example.net": "550 5.1.1 no such user"}
    d = daemon(sh, overrides={"admin_address": quote(ADMIN)})
    assert d.sendmail(["-i", "gone@example.net"], b"Subject: from cron\n\nout\n").rc == 0
    (t,) = [t for t in sh.wait_for(1) if t.mail_from == ""]
    assert t.rcpt_tos == [ADMIN]


def test_mail_from_null_sender_goes_to_the_admin_or_is_dropped(daemon, smarthost):
    sh = smarthost()
    sh.rcpt_replies = {"gone@example.net": "550 5.1.1 no such user"}
    d = daemon(sh, overrides={"admin_address": quote(ADMIN)})
    assert d.sendmail(["-f", "<>", "-i", "gone@example.net"], make_message(subject="from null")).rc == 0
    (t,) = [t for t in sh.wait_for(1) if t.mail_from == ""]
    assert t.rcpt_tos == [ADMIN]
    assert [r["via"] for r in d.accepted() if r.get("via") in ("bounce", "double-bounce")] == ["double-bounce"]
    # and when the admin's notice fails too, it is dropped: nothing loops
    sh.rcpt_replies[ADMIN] = "550 5.1.1 admin gone"
    assert d.sendmail(["-f", "<>", "-i", "gone@example.net"], make_message(subject="again")).rc == 0
    d.wait_for_log(r"undeliverable notice to the administrator dropped")
    d.wait_queue_empty()


def test_double_bounce_drop(daemon, smarthost):
    sh = smarthost()
    sh.rcpt_replies = {"gone@example.net": "550 5.1.1 no such user"}
    d = daemon(sh, overrides={"admin_address": quote(ADMIN), "double_bounce": "drop"})
    assert d.sendmail(["-f", "<>", "-i", "gone@example.net"], make_message()).rc == 0
    d.wait_for_log(r"failed mail from <> dropped \(double_bounce = drop\)")
    d.wait_queue_empty()
    assert sh.delivered() == []


def test_a_notice_the_sender_cannot_receive_goes_to_the_admin(daemon, smarthost):
    sh = smarthost()
    sh.rcpt_replies = {"gone@example.net": "550 5.1.1 no such user",
                       SENDER: "550 5.1.1 sender mailbox gone"}
    d = daemon(sh, overrides={"admin_address": quote(ADMIN)})
    assert d.sendmail(["-i", "-f", SENDER, "gone@example.net"], make_message()).rc == 0
    (t,) = [t for t in sh.wait_for(1) if t.mail_from == ""]
    assert t.rcpt_tos == [ADMIN]
    blocks = report_blocks(parse(t.content))
    assert blocks[1]["Final-Recipient"] == "rfc822; %s" % SENDER


def test_expiry_bounces_with_4_4_7(daemon, smarthost):
    sh = smarthost()
    sh.rcpt_replies = {"slow@example.net": "450 4.2.0 mailbox busy"}
    d = daemon(sh, overrides={"max_queue_time": "2s", "retry_schedule": ["1s"]})
    assert d.sendmail(["-i", "-f", SENDER, "slow@example.net"], make_message(subject="expires")).rc == 0
    (t,) = [t for t in sh.wait_for(1, timeout=20) if t.mail_from == ""]
    r = report_blocks(parse(t.content))[1]
    assert r["Action"] == "failed"
    assert r["Status"] == "4.4.7"
    assert "expired" in r["Diagnostic-Code"] and "450 4.2.0 mailbox busy" in r["Diagnostic-Code"]


def test_one_delay_notice_per_message_after_delay_warning(daemon, smarthost):
    sh = smarthost()
    sh.rcpt_replies = {"slow@example.net": "450 4.2.0 mailbox busy"}
    d = daemon(sh, overrides={"delay_warning": "2s", "retry_schedule": ["1s"], "max_queue_time": "1h"})
    assert d.sendmail(["-i", "-f", SENDER, "slow@example.net"], make_message(subject="slow")).rc == 0
    qid = d.accepted_id(SENDER)
    (t,) = [t for t in sh.wait_for(1, timeout=20) if t.mail_from == ""]
    assert t.rcpt_tos == [SENDER]
    n = parse(t.content)
    assert n["Subject"] == "Delayed Mail (still being retried)"
    r = report_blocks(n)[1]
    assert r["Action"] == "delayed" and r["Status"] == "4.2.0"
    assert r["Final-Recipient"] == "rfc822; slow@example.net"
    assert "Will-Retry-Until" in r
    d.wait_for_log(r"%s: delay notice to <%s> queued as" % (qid, SENDER))
    # more deferrals, no second notice; the message is still queued
    d.wait_for_record(id=qid, to="slow@example.net", status="deferred", attempts="4", timeout=20)
    assert len(notices(sh)) == 1
    assert [m["id"] for m in d.queue_json()] == [qid]
    # ...and the restart keeps the memory of it
    d.restart()
    d.wait_for_record(id=qid, to="slow@example.net", status="deferred", attempts="6", timeout=20)
    assert len(notices(sh)) == 1


def test_no_delay_notice_without_delay_in_notify_or_with_delay_warning_0(daemon, smarthost):
    sh = smarthost()
    sh.rcpt_replies = {"slow@example.net": "450 4.2.0 mailbox busy"}
    d = daemon(sh, overrides={"delay_warning": "1s", "retry_schedule": ["1s"]})
    assert d.sendmail(["-N", "failure", "-i", "-f", SENDER, "slow@example.net"], make_message()).rc == 0
    qid = d.accepted_id(SENDER)
    d.wait_for_record(id=qid, to="slow@example.net", status="deferred", attempts="3", timeout=20)
    assert notices(sh) == []
    d2 = daemon(sh, overrides={"delay_warning": "0", "retry_schedule": ["1s"]})
    assert d2.sendmail(["-i", "-f", SENDER, "slow@example.net"], make_message()).rc == 0
    qid2 = d2.accepted_id(SENDER)
    d2.wait_for_record(id=qid2, to="slow@example.net", status="deferred", attempts="3", timeout=20)
    assert notices(sh) == []


def test_notify_success_is_answered_with_a_relayed_notice_when_the_smarthost_has_no_dsn(daemon, smarthost):
    sh = smarthost()                     # no DSN offered
    sh.rcpt_replies = {"gone@example.net": "550 5.1.1 no such user"}
    d = daemon(sh)
    assert d.sendmail(["-N", "success,failure", "-i", "-f", SENDER, "ok@example.net", "gone@example.net"],
                      make_message(subject="both")).rc == 0
    (t,) = [t for t in sh.wait_for(2) if t.mail_from == ""]
    n = parse(t.content)
    blocks = {b["Final-Recipient"]: b for b in report_blocks(n)[1:]}
    assert blocks["rfc822; ok@example.net"]["Action"] == "relayed"
    assert blocks["rfc822; ok@example.net"]["Status"] == "2.0.0"
    assert blocks["rfc822; gone@example.net"]["Action"] == "failed"
    # success only: a report that is not a bounce
    assert d.sendmail(["-N", "success", "-i", "-f", SENDER, "ok@example.net"],
                      make_message(subject="only success")).rc == 0
    sh.wait_for(4)
    t = [t for t in notices(sh) if b"only success" in t.content][0]
    assert parse(t.content)["Subject"] == "Successful Mail Delivery Report"


def test_notify_success_is_left_to_a_smarthost_that_offers_dsn(daemon, smarthost):
    sh = smarthost()
    sh.dsn = True
    d = daemon(sh)
    assert d.sendmail(["-N", "success", "-i", "-f", SENDER, "ok@example.net"], make_message()).rc == 0
    t = sh.wait_for(1)[0]
    assert t.rcpt_options["ok@example.net"] == ["NOTIFY=SUCCESS"]
    d.wait_queue_empty()
    assert notices(sh) == []


def test_a_failure_is_reported_at_once_while_other_recipients_wait(daemon, smarthost):
    """A 550 for one recipient is reported after the pass that decided it,
    not days later when a deferred one is final; each failure is reported
    once, across a restart, and the deferred one gets its own notice when
    it fails in turn."""
    sh = smarthost()
    sh.rcpt_replies = {"gone@example.net": "550 5.1.1 no such user",
                       "busy@example.net": "450 4.2.0 mailbox busy"}
    d = daemon(sh, overrides={"retry_schedule": ["1h"]})
    assert d.sendmail(["-i", "-f", SENDER, "ok@example.net", "gone@example.net", "busy@example.net"],
                      make_message(subject="three ways")).rc == 0
    qid = d.accepted_id(SENDER)
    d.wait_for_log(r"%s: delivery status notification to <%s> queued as" % (qid, SENDER))
    (t,) = [t for t in sh.wait_for(2) if t.mail_from == ""]
    n = parse(t.content)
    assert n["Subject"] == "Undelivered Mail Returned to Sender"
    (r,) = report_blocks(n)[1:]
    assert r["Final-Recipient"] == "rfc822; gone@example.net" and r["Action"] == "failed"
    text = list(n.iter_parts())[0].get_content()
    assert "busy@example.net" not in text
    assert ("Delivery to 1 other recipient of this message is still being attempted; "
            "it is not part of this report.") in " ".join(text.split())
    # the original stays queued for the deferred recipient, its failure marked as told
    # (the notice leaves the queue a moment after the smarthost has it)
    wait_until(lambda: [m["id"] for m in d.queue_json()] == [qid], what="only the original queued")
    env = os.path.join(d.spool, "queue", qid + ".env")
    wait_until(lambda: os.path.exists(env) and "reported\t1\n" in open(env).read(), what="the reported mark on disk")
    assert "<gone@example.net>: failed, 1 attempt, sender notified" in d.mailrelay(["show", qid]).out_text
    d.restart()
    d.wait_for_record(id=qid, to="busy@example.net", status="deferred", attempts="2")
    assert len(notices(sh)) == 1
    # the deferred one now fails for good: a notice of its own, naming only it
    sh.rcpt_replies = {"busy@example.net": "550 5.2.1 mailbox disabled"}
    assert d.mailrelay(["flush", qid]).rc == 0
    d.wait_queue_empty()
    sh.wait_for(3)
    first, second = notices(sh)
    assert first is t
    (r,) = report_blocks(parse(second.content))[1:]
    assert r["Final-Recipient"] == "rfc822; busy@example.net" and r["Status"] == "5.2.1"
    assert "still being attempted" not in list(parse(second.content).iter_parts())[0].get_content()


BURST = 300


def queue_then_restart_past(d, rcpt, key):
    """BURST messages to rcpt queued through d (its smarthost down); then
    d restarted with `key = 1s` (delay_warning or max_queue_time) already
    past for every one of them, and 128 descriptors: one refused connection
    defers them all at once, and each owes its notice at the same moment.
    Returns their ids."""
    msg = make_message(subject="burst", sender=SENDER, to=(rcpt,))
    with smtplib.SMTP("127.0.0.1", d.tcp_port, timeout=30) as s:
        for _ in range(BURST):
            s.sendmail(SENDER, [rcpt], msg)
    last = time.time()
    ids = {m["id"] for m in d.queue_json()}
    assert len(ids) == BURST
    d.stop()
    d.config_text = re.sub(r"^%s = .*$" % key, "%s = 1s" % key, d.config_text, flags=re.M)
    assert re.search(r"^%s = 1s$" % key, d.config_text, re.M), d.config_text
    with open(d.conf, "w") as f:
        f.write(d.config_text)
    wait_until(lambda: time.time() - last > 1.2, 5, what="%s to pass" % key)
    d.wrapper = ["prlimit", "--nofile=128:128", "--"]
    d.start()
    return ids


@pytest.mark.mailrelay_timeout(180)
def test_a_burst_of_delay_notices_is_bounded(daemon, smarthost):
    """300 messages owe a delay notice at the same moment.  With 128
    descriptors the daemon writes at most 64 notices at a time, so none
    fails with "Too many open files"; the others wait for their messages'
    next attempts; each message's sender gets exactly one notice, and a new
    submission is accepted meanwhile."""
    n = BURST
    sh = smarthost()
    sh.rcpt_replies = {"slow@example.net": "450 4.2.0 mailbox busy"}
    sh.stop()
    d = daemon(sh, overrides={"delay_warning": "1h", "retry_schedule": ["1s"], "max_queue_time": "2h",
                              "max_connections": "4", "max_connections_per_client": "4"})
    queue_then_restart_past(d, "slow@example.net", "delay_warning")

    def warned():
        return {m.group(1) for m in re.finditer(r"mailrelayd: (\w+): delay notice to <%s> queued as \w+$"
                                                % re.escape(SENDER), d.log_text(), re.M)}
    wait_until(lambda: len(warned()) == n, 120, what="a delay notice for each message")
    log = d.log_text()
    assert "Too many open files" not in log, [l for l in log.splitlines() if "open files" in l][:3]
    assert "cannot queue" not in log and "cannot create" not in log
    assert re.search(r"mailrelayd: 64 delivery status notifications being written: more wait", log)
    assert len(re.findall(r"delay notice to <%s> queued as" % re.escape(SENDER), log)) == n
    r = d.sendmail(["-i", "-f", SENDER, "rcpt@example.net"], make_message(subject="meanwhile"))
    assert r.rc == 0, r
    # the smarthost back: each sender has one notice, no more
    sh.start()
    d.mailrelay(["flush"])
    wait_until(lambda: len(notices(sh)) >= n, 60, what="the notices delivered")
    assert len(notices(sh)) == n
    assert {t.rcpt_tos[0] for t in notices(sh)} == {SENDER}


@pytest.mark.mailrelay_timeout(180)
def test_a_burst_of_final_notices_waits_its_turn(daemon, smarthost):
    """300 messages expire at the same moment: the final notices beyond the
    64 being written wait, in order, for their turn instead of failing, and
    each original is removed once its notice is on disk."""
    n = BURST
    sh = smarthost()
    sh.stop()
    d = daemon(sh, overrides={"retry_schedule": ["1h"], "max_queue_time": "1h", "delay_warning": "0",
                              "max_connections": "4", "max_connections_per_client": "4"})
    ids = queue_then_restart_past(d, "gone@example.net", "max_queue_time")

    def notified():
        return re.findall(r"mailrelayd: (\w+): delivery status notification to <%s> queued as \w+$"
                          % re.escape(SENDER), d.log_text(), re.M)
    wait_until(lambda: len(notified()) >= n, 120, what="a notice for each expired message")
    log = d.log_text()
    assert sorted(notified()) == sorted(ids)
    assert "Too many open files" not in log
    assert "not queued" not in log and "cannot queue" not in log and "cannot create" not in log
    m = re.search(r"mailrelayd: 64 delivery status notifications being written: more wait .*"
                  r"\((\d+) final notices waiting\)", log)
    assert m and int(m.group(1)) >= 1, "no final notice waited for its turn"
    # each original goes once its notice is on disk
    wait_until(lambda: not ids & {m["id"] for m in d.queue_json()}, 30, what="the originals removed")
    assert "Too many open files" not in d.log_text()

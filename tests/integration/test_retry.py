"""Temporary failures are retried per retry_schedule (1s in these tests);
permanent ones bounce only the recipients they concern."""

import os
import re

from mrtest import make_message, message_id_of, smarthost_opts, strip_angle, to_crlf, wait_until

SENDER = "sender@example.org"
RCPT = "rcpt@example.net"


def _queued(d, qid):
    return [m for m in d.queue_json() if m["id"] == qid]


def test_smarthost_down_then_up(daemon, smarthost):
    sh = smarthost(start=False)          # nothing listens on sh.port yet
    d = daemon(sh)
    msg = make_message(subject="smarthost down")

    r = d.sendmail(["-i", "-f", SENDER, RCPT], msg)
    assert r.rc == 0, r
    qid = d.accepted_id(SENDER)

    rec = d.wait_for_record(id=qid, to=RCPT, status="deferred")
    assert rec["relay"] == "none"
    assert re.search(r"(?i)connection refused", rec["text"]), rec

    def pending_with_attempt():
        q = _queued(d, qid)
        if not q:
            return None
        rcpts = q[0]["recipients"]
        if len(rcpts) == 1 and rcpts[0]["attempts"] >= 1 and rcpts[0]["last_reply"]:
            return q[0]
        return None
    entry = wait_until(pending_with_attempt, 10, what="the queue to show the failed attempt")
    assert strip_angle(entry["sender"]) == SENDER
    assert entry["held"] is False
    rc = entry["recipients"][0]
    assert strip_angle(rc["address"]) == RCPT
    assert rc["status"] == "pending"
    assert re.search(r"(?i)refused|connect", rc["last_reply"]), rc

    sh.start()
    sent = d.wait_for_record(id=qid, to=RCPT, status="sent", timeout=15)
    assert int(sent["attempts"]) >= 2
    assert sent["relay"] == "127.0.0.1[127.0.0.1]:%d" % sh.port
    t = sh.wait_for(1)[0]
    assert t.content == to_crlf(msg)
    d.wait_queue_empty()
    assert len(sh.delivered()) == 1


def test_data_451_twice_then_accepted(daemon, smarthost):
    sh = smarthost()
    sh.data_replies = ["451 4.3.0 try later", "451 4.3.0 try later"]
    d = daemon(sh)
    msg = make_message(subject="451 twice")

    r = d.sendmail(["-i", "-f", SENDER, RCPT], msg)
    assert r.rc == 0, r
    qid = d.accepted_id(SENDER)

    sent = d.wait_for_record(id=qid, to=RCPT, status="sent", timeout=20)
    assert sent["attempts"] == "3"
    outcomes = d.outcomes(qid, to=RCPT)
    assert [o["status"] for o in outcomes] == ["deferred", "deferred", "sent"]
    for n, o in enumerate(outcomes[:2], 1):
        assert o["attempts"] == str(n)
        assert o["dsn"] == "4.3.0"
        assert "451" in o["text"] and "try later" in o["text"], o

    d.wait_queue_empty()
    assert len(sh.all_transactions()) == 3
    delivered = sh.delivered()
    assert len(delivered) == 1
    assert delivered[0].content == to_crlf(msg)


def test_rcpt_550_bounces_one_recipient_and_delivers_the_other(daemon, smarthost):
    sh = smarthost()
    sh.rcpt_replies = {"nobody@example.net": "550 5.1.1 no such user"}
    d = daemon(sh)
    msg = make_message(subject="one bad recipient", to=("good@example.net", "nobody@example.net"))

    r = d.sendmail(["-i", "-f", SENDER, "good@example.net", "nobody@example.net"], msg)
    assert r.rc == 0, r
    qid = d.accepted_id(SENDER)

    bounced = d.wait_for_record(id=qid, to="nobody@example.net", status="bounced")
    assert "550" in bounced["text"] and "no such user" in bounced["text"], bounced
    assert bounced["dsn"] == "5.1.1"
    sent = d.wait_for_record(id=qid, to="good@example.net", status="sent")
    assert sent["dsn"] == "2.0.0"

    copies = sh.find(message_id_of(msg))
    assert len(copies) == 1
    assert copies[0].rcpt_tos == ["good@example.net"]
    assert copies[0].content == to_crlf(msg)

    # The original leaves the queue (a bounce report, if one is generated,
    # is a new message with its own id).
    wait_until(lambda: not _queued(d, qid) and not [f for f in d.queue_files() if f.startswith(qid)],
               10, what="message %s to leave the queue" % qid)
    # A permanent failure is final: never retried.
    assert len(d.outcomes(qid, to="nobody@example.net")) == 1
    assert len(d.outcomes(qid, to="good@example.net")) == 1


def test_rcpt_450_retries_only_that_recipient(daemon, smarthost):
    sh = smarthost()
    sh.rcpt_replies = {"later@example.net": ["450 4.2.0 mailbox busy"]}
    d = daemon(sh)
    msg = make_message(subject="one recipient later", to=("good@example.net", "later@example.net"))

    r = d.sendmail(["-i", "-f", SENDER, "good@example.net", "later@example.net"], msg)
    assert r.rc == 0, r
    qid = d.accepted_id(SENDER)

    deferred = d.wait_for_record(id=qid, to="later@example.net", status="deferred")
    assert "450" in deferred["text"], deferred
    late = d.wait_for_record(id=qid, to="later@example.net", status="sent", timeout=15)
    assert late["attempts"] == "2"
    good = d.wait_for_record(id=qid, to="good@example.net", status="sent")
    assert good["attempts"] == "1"

    d.wait_queue_empty()
    copies = sh.find(message_id_of(msg))
    # The good recipient got exactly one copy; the retry went to the other only.
    assert [c.rcpt_tos for c in copies] == [["good@example.net"], ["later@example.net"]]
    assert all(c.content == to_crlf(msg) for c in copies)


def test_data_554_bounces_all_recipients(daemon, smarthost):
    sh = smarthost()
    sh.data_replies = ["554 5.6.0 content rejected"]
    d = daemon(sh)
    rcpts = ["one@example.net", "two@example.net"]
    msg = make_message(subject="rejected content", to=rcpts)

    r = d.sendmail(["-i", "-f", SENDER] + rcpts, msg)
    assert r.rc == 0, r
    qid = d.accepted_id(SENDER)

    for rcpt in rcpts:
        rec = d.wait_for_record(id=qid, to=rcpt, status="bounced")
        assert "554" in rec["text"] and "content rejected" in rec["text"], rec
        assert rec["dsn"] == "5.6.0"
    wait_until(lambda: not _queued(d, qid), 10, what="message %s to leave the queue" % qid)
    assert d.outcomes(qid, status="sent") == []
    assert d.outcomes(qid, status="deferred") == []
    assert sh.find(message_id_of(msg)) == []
    tries = [t for t in sh.all_transactions() if t.message_id == message_id_of(msg)]
    assert len(tries) == 1, tries


def test_timeout_is_retried(daemon, smarthost):
    sh = smarthost()
    sh.hold()                            # the answer to the final dot never comes
    # the wait for it is bounded by data_timeout (timeout bounds the other replies)
    d = daemon(smarthosts=[("main", smarthost_opts(sh.port, timeout="1s", data_timeout="1s"))])
    msg = make_message(subject="smarthost hangs")

    r = d.sendmail(["-i", "-f", SENDER, RCPT], msg)
    assert r.rc == 0, r
    qid = d.accepted_id(SENDER)

    deferred = d.wait_for_record(id=qid, to=RCPT, status="deferred", timeout=10)
    assert re.search(r"(?i)time", deferred["text"]), deferred
    # Release the held answer only once the smarthost has seen the daemon
    # drop that connection, so that it cannot count as an accepted copy.
    wait_until(lambda: sh.in_data == 0, 10, what="the timed-out session to close")
    sh.release()

    sent = d.wait_for_record(id=qid, to=RCPT, status="sent", timeout=15)
    assert int(sent["attempts"]) >= 2
    d.wait_queue_empty()
    # The timed-out transaction never got its 250, so exactly one copy.
    copies = sh.find(message_id_of(msg))
    assert len(copies) == 1 and copies[0].content == to_crlf(msg)


def test_retries_are_spread_out_not_all_in_the_same_second(daemon, smarthost):
    """Messages deferred together come back over a tenth of the delay, at
    random, not all at once (a smarthost that was down for an hour)."""
    import calendar
    import time as _time
    sh = smarthost()
    sh.rcpt_replies = {RCPT: "450 4.3.2 try later"}
    d = daemon(sh, overrides={"retry_schedule": ["100s"]})
    n = 30
    for i in range(n):
        assert d.sendmail(["-i", "-f", SENDER, RCPT], make_message(subject="spread %d" % i)).rc == 0
    wait_until(lambda: len([r for r in d.records() if r.get("status") == "deferred"]) == n,
               timeout=30, what="every message deferred once")
    q = d.queue_json()
    delays = []
    for m in q:
        (r,) = m["recipients"]
        nxt = calendar.timegm(_time.strptime(r["next_attempt"], "%Y-%m-%dT%H:%M:%SZ"))
        last = calendar.timegm(_time.strptime(m["arrival"], "%Y-%m-%dT%H:%M:%SZ"))
        delays.append(nxt - last)
    assert all(99 <= x <= 112 for x in delays), delays      # 100 s plus up to 10 %
    assert len(set(delays)) >= 4, delays


def test_an_unreached_smarthost_writes_nothing_and_a_stop_keeps_the_tries(daemon, smarthost):
    """Deferrals at a smarthost that cannot be reached stay in memory: the
    message keeps its one spool file (no .env), the queue still shows the
    attempts and why, and `show` one record for the repeated failure.  A
    stop keeps them in spool/unreached, which the listing reads while the
    daemon is down and the next start takes back (and removes); a crash
    loses them, never the message.  The delivery removes one file."""
    sh = smarthost(start=False)
    d = daemon(sh, overrides={"retry_schedule": ["1h"]})     # the tries are the flushes'
    r = d.sendmail(["-i", "-f", SENDER, RCPT], make_message(subject="unreached"))
    assert r.rc == 0, r
    qid = d.accepted_id(SENDER)
    kept = os.path.join(d.spool, "unreached")

    def attempts(n):
        def enough():
            q = _queued(d, qid)
            return q and q[0]["recipients"][0]["attempts"] >= n and q[0]
        return enough
    d.wait_for_record(id=qid, to=RCPT, status="deferred")
    for n in (2, 3):
        assert d.mailrelay(["flush"]).rc == 0
        entry = wait_until(attempts(n), 10, what="attempt %d in the queue" % n)
    rc = entry["recipients"][0]
    assert re.search(r"(?i)refused", rc["last_reply"]), rc
    assert d.queue_files() == [qid + ".msg"]
    show = d.mailrelay(["show", qid])
    assert show.rc == 0, show
    assert "pending, 3 attempts" in show.out_text, show.out_text
    tries = [l for l in show.out_text.splitlines() if l.lstrip().startswith("20") and "deferred" in l]
    assert len(tries) == 1 and re.search(r"(?i)refused", tries[0]), show.out_text

    # a stop keeps them: the listing read from the spool shows them
    d.stop()
    d.wait_for_log(r"queue: the tries of 1 recipient at unreached smarthosts kept in .*/unreached$")
    assert os.path.exists(kept)
    (entry,) = d.queue_json()
    (x,) = entry["recipients"]
    assert x["status"] == "pending" and x["attempts"] == 3, x
    assert re.search(r"(?i)refused", x["last_reply"]), x
    show = d.mailrelay(["show", qid])
    assert "pending, 3 attempts" in show.out_text and re.search(r"(?i)deferred.*refused", show.out_text), \
        show.out_text

    # the start takes them back and tries at once: the fourth attempt
    d.start()
    d.wait_for_log(r"queue: the tries of 1 recipient at unreached smarthosts, kept by the last stop, "
                   r"restored")
    assert not os.path.exists(kept)
    d.wait_for_record(id=qid, to=RCPT, status="deferred", attempts="4")
    assert d.queue_files() == [qid + ".msg"]

    # a crash keeps nothing of them: the message waits, untried as far as the spool knows
    d.kill()
    assert not os.path.exists(kept)
    (entry,) = d.queue_json()
    assert [(x["status"], x["attempts"], x["last_reply"]) for x in entry["recipients"]] == \
        [("pending", 0, "")]

    sh.start()
    d.start()
    d.wait_for_record(id=qid, to=RCPT, status="sent", attempts="1", timeout=15)
    d.wait_queue_empty()
    assert len(sh.delivered()) == 1


def test_a_deferral_the_smarthost_gave_is_written(daemon, smarthost):
    """A 4xx from a smarthost that was reached is the message's own news: it
    is in the spool (queue/ID.env) with its reply, for a restart."""
    sh = smarthost()
    sh.data_replies = ["451 4.3.0 try later"] * 10
    d = daemon(sh, overrides={"retry_schedule": ["1h"]})
    r = d.sendmail(["-i", "-f", SENDER, RCPT], make_message(subject="451 written"))
    assert r.rc == 0, r
    qid = d.accepted_id(SENDER)
    d.wait_for_record(id=qid, to=RCPT, status="deferred")
    wait_until(lambda: qid + ".env" in d.queue_files(), 10, what="the .env")
    assert "451 4.3.0 try later" in d.envelope_text(qid)

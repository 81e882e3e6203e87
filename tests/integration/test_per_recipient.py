"""Per-recipient truth: whatever a smarthost answers, and wherever it
breaks off, every recipient ends with the outcome its answers call for
(sent once, deferred and retried, or bounced with one notification), and
what the log says of a recipient is what `mailrelay queue --json` says.

  partial RCPT refusals   550 bounced now, 450 retried, 250 sent once
  452 (too many)          the rest go in further transactions at once,
                          no attempt counted (RFC 5321 4.5.3.1.10)
  421 / dropped           nothing of that transaction sent, retried;
                          earlier transactions stay sent
  5xx / 4xx after the dot that transaction bounced / retried only

The smarthost is scripted (mrtest.Smarthost): rcpt_replies, mail_replies,
data_replies, body_replies, max_rcpts, "421 ..." closes, "drop" drops.
"""

import re

import pytest

from mrtest import make_message, message_id_of, strip_angle, wait_until

SENDER = "app@example.org"
# what the log's status= is called in the queue listing
QUEUE_STATUS = {"sent": "sent", "deferred": "pending", "bounced": "failed"}
BYE = "421 4.3.2 service shutting down"


def rcpts(n, tag="r"):
    return ["%s%d@example.net" % (tag, i) for i in range(n)]


def submit(d, to, subject, body="Hello.\n"):
    msg = make_message(subject=subject, sender=SENDER, to=to, body=body)
    r = d.sendmail(["-i", "-f", SENDER] + list(to), msg)
    assert r.rc == 0, r
    return msg, d.accepted_id(SENDER)


def history(d, qid):
    """{recipient: [status of each logged outcome, in order]}"""
    h = {}
    for r in d.outcomes(qid):
        h.setdefault(strip_angle(r["to"]), []).append(r["status"])
    return h


def attempts(d, qid):
    """{recipient: attempts= of its latest logged outcome}"""
    return {strip_angle(r["to"]): int(r["attempts"]) for r in d.outcomes(qid)}


def copies(sh, msg):
    """{recipient: number of accepted copies of msg}"""
    n = {}
    for t in sh.find(message_id_of(msg)):
        for a in t.rcpt_tos:
            n[a] = n.get(a, 0) + 1
    return n


def txns(sh, msg):
    """The accepted transactions carrying msg."""
    return sh.find(message_id_of(msg))


def notices(sh):
    return [t for t in sh.delivered() if t.mail_from == ""]


def reported(notice):
    """The recipients a delivery status notification reports, and their Action fields."""
    text = notice.content.decode("utf-8", "replace")
    final = re.findall(r"(?im)^Final-Recipient:\s*rfc822;\s*(\S+?)\s*$", text)
    actions = re.findall(r"(?im)^Action:\s*(\S+?)\s*$", text)
    return sorted(final), actions


def wait_gone(d, qid, timeout=15):
    wait_until(lambda: not [m for m in d.queue_json() if m["id"] == qid]
               and not [f for f in d.queue_files() if f.startswith(qid)],
               timeout, what="message %s to leave the queue" % qid, alive=d.check_alive)


def queue_agrees(d, qid, expect, timeout=5.0):
    """Wait for a moment when `mailrelay queue --json` shows qid with the
    statuses in expect ({address: "sent" | "pending" | "failed" | "untried"},
    untried: pending with no attempt yet) and every recipient exactly as its
    latest log record has it: status (deferred is pending, bounced is
    failed), attempts and last reply.  The log is read before and after the
    listing; a moment in which it moved is skipped."""
    last = ["message %s never listed" % qid]

    def agree():
        before = d.outcomes(qid)
        entry = [m for m in d.queue_json() if m["id"] == qid]
        if not entry or d.outcomes(qid) != before:
            return None
        latest = {strip_angle(r["to"]): r for r in before}
        shown = {}
        for rc in entry[0]["recipients"]:
            a = strip_angle(rc["address"])
            shown[a] = rc["status"] if rc["attempts"] else "untried"
            r = latest.get(a)
            logged = ((QUEUE_STATUS[r["status"]], int(r["attempts"]), r["text"])
                      if r else ("pending", 0, ""))
            listed = (rc["status"], rc["attempts"], rc["last_reply"] or "")
            if logged != listed:
                last[0] = "%s: the log says %r, the queue %r" % (a, logged, listed)
                return None
        if shown != expect:
            last[0] = "the queue shows %r" % shown
            return None
        return entry[0]
    try:
        return wait_until(agree, timeout, what="the queue listing of %s" % qid,
                          alive=d.check_alive)
    except AssertionError as e:
        raise AssertionError("%s (last seen: %s)" % (e, last[0]))


def one_notice_for(sh, d, failed):
    """Once the queue is empty: exactly one notification, to SENDER, reporting exactly `failed`."""
    d.wait_queue_empty(timeout=15)
    (n,) = notices(sh)
    assert n.rcpt_tos == [SENDER]
    final, actions = reported(n)
    assert final == sorted(failed)
    assert actions == ["failed"] * len(failed)
    return n


# ---------------------------------------------------------------------------
# 1. some recipients refused for good, some for now, the rest accepted

@pytest.mark.parametrize("pipelining", [False, True], ids=["lockstep", "pipelining"])
def test_partial_rcpt_failures(daemon, smarthost, pipelining):
    sh = smarthost()
    sh.pipelining = pipelining
    ok, bad, later = ["ok0@example.net", "ok1@example.net"], ["bad0@example.net", "bad1@example.net"], \
        "later@example.net"
    sh.rcpt_replies = {bad[0]: "550 5.1.1 <bad0@example.net>: no such user",
                       bad[1]: "553 5.1.3 <bad1@example.net>: bad address",
                       later: ["450 4.2.0 mailbox busy", "450 4.2.0 mailbox busy"]}
    d = daemon(sh)
    msg, qid = submit(d, [ok[0], bad[0], later, ok[1], bad[1]], "partly refused")

    # While `later` waits for its retry, the queue says what the log says.
    queue_agrees(d, qid, {ok[0]: "sent", ok[1]: "sent", bad[0]: "failed", bad[1]: "failed",
                          later: "pending"})
    d.wait_for_record(id=qid, to=later, status="sent", timeout=15)
    wait_gone(d, qid)

    assert history(d, qid) == {ok[0]: ["sent"], ok[1]: ["sent"], bad[0]: ["bounced"],
                               bad[1]: ["bounced"], later: ["deferred", "deferred", "sent"]}
    assert attempts(d, qid) == {ok[0]: 1, ok[1]: 1, bad[0]: 1, bad[1]: 1, later: 3}
    assert [r["dsn"] for r in d.outcomes(qid, status="bounced")] == ["5.1.1", "5.1.3"]
    assert [t.rcpt_tos for t in txns(sh, msg)] == [ok, [later]]
    assert copies(sh, msg) == {ok[0]: 1, ok[1]: 1, later: 1}
    one_notice_for(sh, d, bad)


# ---------------------------------------------------------------------------
# 2. 452: a smarthost that takes N recipients per transaction

@pytest.mark.parametrize("pipelining", [False, True], ids=["lockstep", "pipelining"])
@pytest.mark.parametrize("n", [1, 3])
def test_452_sends_the_rest_in_following_transactions(daemon, smarthost, pipelining, n):
    sh = smarthost()
    sh.pipelining = pipelining
    sh.max_rcpts = n
    d = daemon(sh)
    to = rcpts(3 * n)
    msg, qid = submit(d, to, "three transactions")
    wait_gone(d, qid)

    # Everyone sent at the first attempt: a 452 is neither a failure nor a delay.
    assert history(d, qid) == {a: ["sent"] for a in to}
    assert attempts(d, qid) == {a: 1 for a in to}
    got = txns(sh, msg)
    assert [t.rcpt_tos for t in got] == [to[i:i + n] for i in range(0, 3 * n, n)]
    assert len({t.session.sid for t in got}) == 1, "all in the same session"
    assert got[-1].time - got[0].time < 1.0, "not after a retry delay"
    assert copies(sh, msg) == {a: 1 for a in to}
    d.wait_for_log(r"%s: .* took %d recipients? of %d in one transaction; the other %d go in the next"
                   % (qid, n, 3 * n, 2 * n))
    d.wait_for_log(r"%s: .* took %d recipients? of %d in one transaction; the other %d go in the next"
                   % (qid, n, 2 * n, n))
    assert notices(sh) == []


def test_452_mixed_with_refusals(daemon, smarthost):
    """Only the 452 ones follow in the same session; the 450 one waits for its
    retry, the 550 one is bounced once."""
    sh = smarthost()
    sh.max_rcpts = 2
    sh.rcpt_replies = {"bad@example.net": "550 5.1.1 no such user",
                       "later@example.net": ["450 4.2.0 mailbox busy"]}
    d = daemon(sh)
    to = ["a@example.net", "bad@example.net", "later@example.net", "b@example.net",
          "c@example.net", "e@example.net"]
    msg, qid = submit(d, to, "mixed")
    queue_agrees(d, qid, {"a@example.net": "sent", "b@example.net": "sent",
                          "c@example.net": "sent", "e@example.net": "sent",
                          "bad@example.net": "failed", "later@example.net": "pending"})
    wait_gone(d, qid)
    assert history(d, qid) == {"a@example.net": ["sent"], "b@example.net": ["sent"],
                               "c@example.net": ["sent"], "e@example.net": ["sent"],
                               "bad@example.net": ["bounced"],
                               "later@example.net": ["deferred", "sent"]}
    got = txns(sh, msg)
    assert [t.rcpt_tos for t in got] == [["a@example.net", "b@example.net"],
                                         ["c@example.net", "e@example.net"],
                                         ["later@example.net"]]
    # the 452 ones in the same session at once; the 450 one at its retry (which
    # may find the connection still open: reuse_time)
    assert got[0].session.sid == got[1].session.sid
    assert [t.seq for t in got] == sorted(t.seq for t in got)
    one_notice_for(sh, d, ["bad@example.net"])


@pytest.mark.parametrize("who", ["first", "all"])
def test_452_before_any_acceptance_is_a_temporary_failure(daemon, smarthost, who):
    """A 452 before anything was accepted says the server has no room at all
    (RFC 5321 4.5.3.1.10): deferred and retried, not looped on."""
    sh = smarthost()
    to = rcpts(2)
    full = "452 4.3.1 insufficient system storage"
    sh.rcpt_replies = {a: [full] for a in (to[:1] if who == "first" else to)}
    d = daemon(sh)
    msg, qid = submit(d, to, "no room")
    wait_gone(d, qid)
    if who == "first":
        assert history(d, qid) == {to[0]: ["deferred", "sent"], to[1]: ["sent"]}
        assert [t.rcpt_tos for t in txns(sh, msg)] == [[to[1]], [to[0]]]
    else:
        assert history(d, qid) == {to[0]: ["deferred", "sent"], to[1]: ["deferred", "sent"]}
        assert [t.rcpt_tos for t in txns(sh, msg)] == [to]
    assert all("452 4.3.1" in r["text"] for r in d.outcomes(qid, status="deferred"))
    assert copies(sh, msg) == {a: 1 for a in to}


# ---------------------------------------------------------------------------
# 3. the transaction breaks off: 421 or a dropped connection

BIG_BODY = "".join("%075d\n" % i for i in range(40000))      # 3 MB: still sending when it breaks

BREAKS = {
    # where: (script the smarthost, what the deferral says, body)
    "mail-421": (lambda sh, to: setattr(sh, "mail_replies", [BYE]), r"421 4\.3\.2", None),
    "rcpt-421": (lambda sh, to: sh.rcpt_replies.update({to[2]: [BYE]}), r"421 4\.3\.2", None),
    "rcpt-drop": (lambda sh, to: sh.rcpt_replies.update({to[2]: ["drop"]}),
                  r"lost connection .* while sending MAIL/RCPT/DATA", None),
    "body-421": (lambda sh, to: setattr(sh, "body_replies", [BYE]),
                 r"421 4\.3\.2|lost connection", BIG_BODY),
    "body-drop": (lambda sh, to: setattr(sh, "body_replies", ["drop"]), r"lost connection", BIG_BODY),
    "dot-421": (lambda sh, to: setattr(sh, "data_replies", [BYE]), r"421 4\.3\.2", None),
    "dot-drop": (lambda sh, to: setattr(sh, "data_replies", ["drop"]),
                 r"lost connection .* while waiting for the reply to the end of data", None),
}
# the commands of the broken session (lockstep): nothing is sent after a 421
VERBS_TO_421 = {"mail-421": ["EHLO", "MAIL"], "rcpt-421": ["EHLO", "MAIL", "RCPT", "RCPT", "RCPT"],
                "dot-421": ["EHLO", "MAIL", "RCPT", "RCPT", "RCPT", "RCPT", "DATA"]}


@pytest.mark.parametrize("where,pipelining", [(w, False) for w in BREAKS] +
                         [("mail-421", True), ("rcpt-421", True), ("rcpt-drop", True)],
                         ids=lambda v: v if isinstance(v, str) else ("pipelining" if v else "lockstep"))
def test_break_in_the_transaction_sends_nothing_and_retries(daemon, smarthost, where, pipelining):
    script, said, body = BREAKS[where]
    sh = smarthost()
    sh.pipelining = pipelining
    to = rcpts(4)
    script(sh, to)
    d = daemon(sh)
    msg, qid = submit(d, to, "broken off", **({"body": body} if body else {}))

    entry = queue_agrees(d, qid, {a: "pending" for a in to})
    assert all(rc["attempts"] == 1 for rc in entry["recipients"])
    for rec in d.outcomes(qid):
        assert rec["status"] == "deferred" and re.search(said, rec["text"]), rec
    wait_gone(d, qid)
    assert history(d, qid) == {a: ["deferred", "sent"] for a in to}
    assert [t.rcpt_tos for t in txns(sh, msg)] == [to]
    assert copies(sh, msg) == {a: 1 for a in to}
    assert notices(sh) == []
    if where in VERBS_TO_421 and not pipelining:
        broken = [s for s in sh.client_sessions() if "MAIL" in s.verbs()][0]
        assert broken.verbs() == VERBS_TO_421[where]


@pytest.mark.parametrize("where", ["rcpt-421", "dot-421", "dot-drop"])
def test_break_in_a_later_transaction_keeps_earlier_ones_sent(daemon, smarthost, where):
    sh = smarthost()
    sh.max_rcpts = 2
    to = rcpts(6)
    if where == "rcpt-421":
        sh.rcpt_replies = {to[3]: [BYE]}     # the second RCPT of the second transaction
    else:
        sh.data_replies = ["250 2.0.0 first one", BYE if where == "dot-421" else "drop"]
    d = daemon(sh)
    msg, qid = submit(d, to, "second transaction breaks")

    queue_agrees(d, qid, {to[0]: "sent", to[1]: "sent", to[2]: "pending", to[3]: "pending",
                          to[4]: "pending", to[5]: "pending"})
    wait_gone(d, qid)
    assert history(d, qid) == dict([(a, ["sent"]) for a in to[:2]] +
                                   [(a, ["deferred", "sent"]) for a in to[2:]])
    assert attempts(d, qid) == dict([(a, 1) for a in to[:2]] + [(a, 2) for a in to[2:]])
    assert [t.rcpt_tos for t in txns(sh, msg)] == [to[0:2], to[2:4], to[4:6]]
    assert copies(sh, msg) == {a: 1 for a in to}


def test_421_ends_the_session_and_spares_the_next_message(daemon, smarthost):
    """After a 421 nothing more goes over that connection: the next ready
    message is not charged with a failed attempt it never had."""
    sh = smarthost()
    sh.hold()
    sh.data_replies = [BYE]
    d = daemon(sh, overrides={"concurrency": "1"})
    first, qid1 = submit(d, ["one@example.net"], "first")
    wait_until(lambda: sh.in_data == 1, 10, what="the first message at the final dot")
    second, qid2 = submit(d, ["two@example.net"], "second")
    sh.release()
    wait_gone(d, qid1)
    wait_gone(d, qid2)
    assert history(d, qid1) == {"one@example.net": ["deferred", "sent"]}
    assert history(d, qid2) == {"two@example.net": ["sent"]}
    assert attempts(d, qid2) == {"two@example.net": 1}
    assert copies(sh, first) == {"one@example.net": 1}
    assert copies(sh, second) == {"two@example.net": 1}


def test_crash_in_a_later_transaction_does_not_resend_earlier_ones(daemon, smarthost):
    """What a finished transaction decided is on disk before the next one
    starts: only the transaction in flight at a crash is tried again."""
    sh = smarthost()
    sh.max_rcpts = 2
    sh.hold(after=1)                    # the first transaction goes through, the second waits
    to = rcpts(4)
    d = daemon(sh)
    msg, qid = submit(d, to, "crash between transactions")
    wait_until(lambda: len(sh.all_transactions()) == 2 and sh.in_data == 1, 10,
               what="the second transaction at its final dot")
    queue_agrees(d, qid, {to[0]: "sent", to[1]: "sent", to[2]: "untried", to[3]: "untried"})
    d.kill()
    wait_until(lambda: sh.in_data == 0, 10, what="the killed session to close")
    sh.release()
    d.start()
    wait_gone(d, qid)
    assert history(d, qid) == {to[0]: ["sent"], to[1]: ["sent"], to[2]: ["sent"], to[3]: ["sent"]}
    assert copies(sh, msg) == {a: 1 for a in to}
    assert [t.rcpt_tos for t in txns(sh, msg)] == [to[0:2], to[2:4]]


# ---------------------------------------------------------------------------
# 4. and 5. the reply to the final dot decides for its own transaction only

@pytest.mark.parametrize("which", ["first", "second"])
def test_5xx_after_the_dot_bounces_that_transaction_only(daemon, smarthost, which):
    sh = smarthost()
    sh.max_rcpts = 2
    rejected = "554 5.6.0 content rejected"
    sh.data_replies = [rejected] if which == "first" else ["250 2.0.0 ok", rejected]
    d = daemon(sh)
    to = rcpts(4)
    msg, qid = submit(d, to, "rejected in one transaction")
    failed, sent = (to[:2], to[2:]) if which == "first" else (to[2:], to[:2])
    wait_gone(d, qid)
    assert history(d, qid) == dict([(a, ["bounced"]) for a in failed] + [(a, ["sent"]) for a in sent])
    assert attempts(d, qid) == {a: 1 for a in to}
    for rec in d.outcomes(qid, status="bounced"):
        assert rec["dsn"] == "5.6.0" and rejected in rec["text"], rec
    assert copies(sh, msg) == {a: 1 for a in sent}
    one_notice_for(sh, d, failed)


def test_4xx_after_the_dot_is_retried_and_delivered_once(daemon, smarthost):
    sh = smarthost()
    sh.max_rcpts = 2
    sh.data_replies = ["451 4.3.0 try later"]
    d = daemon(sh)
    to = rcpts(4)
    msg, qid = submit(d, to, "deferred in one transaction")
    queue_agrees(d, qid, {to[0]: "pending", to[1]: "pending", to[2]: "sent", to[3]: "sent"})
    wait_gone(d, qid)
    assert history(d, qid) == {to[0]: ["deferred", "sent"], to[1]: ["deferred", "sent"],
                               to[2]: ["sent"], to[3]: ["sent"]}
    assert attempts(d, qid) == {to[0]: 2, to[1]: 2, to[2]: 1, to[3]: 1}
    assert [t.rcpt_tos for t in txns(sh, msg)] == [to[2:4], to[0:2]]
    assert copies(sh, msg) == {a: 1 for a in to}
    assert notices(sh) == []


# ---------------------------------------------------------------------------
# the reply to MAIL decides for every recipient of the transaction

@pytest.mark.parametrize("reply", ["550 5.7.1 sender rejected", "451 4.7.1 greylisted"])
def test_mail_refused(daemon, smarthost, reply):
    sh = smarthost()
    sh.mail_replies = [reply]
    d = daemon(sh)
    to = rcpts(2)
    msg, qid = submit(d, to, "sender refused")
    if reply.startswith("4"):
        queue_agrees(d, qid, {a: "pending" for a in to})
        wait_gone(d, qid)
        assert history(d, qid) == {a: ["deferred", "sent"] for a in to}
        assert copies(sh, msg) == {a: 1 for a in to}
        assert notices(sh) == []
    else:
        wait_gone(d, qid)
        assert history(d, qid) == {a: ["bounced"] for a in to}
        assert copies(sh, msg) == {}
        one_notice_for(sh, d, to)

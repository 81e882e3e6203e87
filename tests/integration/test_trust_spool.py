"""Issue 9, point 6: a damaged spool never causes silent loss or partial
delivery.  A message whose envelope is cut short or garbled, or whose
content is missing or not the length recorded at acceptance, is held as
damaged: shown by mailq, `mailrelay queue [--json]`, `show` and `status`,
logged once with its queue id and what is wrong, never sent in part, never
removed but by `mailrelay delete`; the intact messages around it go out."""

import json
import os
import re
import subprocess

from mrtest import make_message, to_crlf, wait_until

SENDER = "app@example.org"


def _queue_path(d, qid, suffix):
    return os.path.join(d.spool, "queue", qid + suffix)


def _damage_lines(d, qid):
    return [line for line in d.log_lines() if re.search(r"\b%s: damaged: " % qid, line)]


def _cut_envelope(path):
    """Drop the last recipient line and everything after it, at a line boundary."""
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    last = max(i for i, line in enumerate(lines) if line.startswith(b"rcpt\t"))
    with open(path, "wb") as f:
        f.write(b"\n".join(lines[:last]) + b"\n")
    return "no end record"


def _cut_content(path):
    os.truncate(path, 62)
    return "content is 62 octets, the envelope says"


def _garble_envelope(path):
    with open(path, "rb") as f:
        data = f.read()
    # a disk error's kind of damage: a block of the file overwritten
    data = data[:40] + b"\x00\xff" * 16 + data[72:]
    with open(path, "wb") as f:
        f.write(data)
    return "envelope:"


DAMAGE = {
    "envelope_cut_short": (".env", _cut_envelope),
    "content_cut_short": (".msg", _cut_content),
    "envelope_garbled": (".env", _garble_envelope),
}


def _submit(d, subject, rcpts=("a@example.net", "b@example.net"), body=None):
    """Submit one message; its queue id (from its own acceptance line)."""
    n = len(d.accepted())
    msg = make_message(subject=subject, to=rcpts, body=body or ("a line of %s\n" % subject) * 40)
    r = d.sendmail(["-i", "-f", SENDER] + list(rcpts), msg)
    assert r.rc == 0, r
    wait_until(lambda: len(d.accepted()) > n, what="the acceptance of %r" % subject)
    return d.accepted()[n]["id"], to_crlf(msg)


def _write_envelope(d, qid):
    """Give a waiting message its queue/ID.env.  A deferral at a smarthost
    that is down is not written (it stays in the daemon's memory); a hold
    is, and so is the release after it."""
    for verb in ("hold", "release"):
        r = d.mailrelay([verb, qid])
        assert r.rc == 0, r
    assert os.path.exists(_queue_path(d, qid, ".env"))


def _queue_three(d, tag):
    """Three messages deferred (the smarthost is down), each with its .env:
    the middle one is the victim."""
    ids = [_submit(d, "%s %d" % (tag, i))[0] for i in range(3)]
    for qid in ids:
        d.wait_for_record(id=qid, to="a@example.net", status="deferred")
        _write_envelope(d, qid)
    return ids


def _assert_held_as_damaged(d, qid, why):
    """What an admin sees: mailq, queue --json, show, status."""
    q = {m["id"]: m for m in d.queue_json()}
    assert qid in q, q
    assert q[qid]["held"] is True
    assert isinstance(q[qid]["damaged"], str) and why in q[qid]["damaged"], q[qid]

    r = d.mailrelay(["queue"])
    assert r.rc == 0, r
    lines = r.out_text.splitlines()
    head = [i for i, line in enumerate(lines) if line.startswith(qid)]
    assert len(head) == 1 and lines[head[0]].startswith(qid + "#"), r.out_text
    assert lines[head[0] + 1].strip().startswith("(damaged: ") and why in lines[head[0] + 1], r.out_text

    r = d.mailrelay(["show", qid])
    assert r.rc == 0, r
    assert re.search(r"^Damaged: +.*%s" % re.escape(why), r.out_text, re.M), r.out_text


def test_damaged_at_start_is_held_shown_and_deleted(daemon, smarthost):
    sh = smarthost(start=False)
    d = daemon(sh, overrides={"retry_schedule": ["1h"]})
    victims = {}
    # one daemon run per kind of damage would take too long: all four at once, one victim each
    for kind in DAMAGE:
        victims[kind] = _queue_three(d, kind)
    d.stop()
    why = {}
    for kind, (suffix, damage) in DAMAGE.items():
        qid = victims[kind][1]
        why[qid] = damage(_queue_path(d, qid, suffix))
    damaged = set(why)
    intact = {qid for ids in victims.values() for qid in ids} - damaged

    sh.start()
    d.start()
    # every intact message goes out whole, to both recipients; nothing of a damaged one does
    sh.wait_for(len(intact), timeout=20)
    wait_until(lambda: len(d.queue_json()) == len(damaged), what="the intact messages delivered")
    got = sh.delivered()
    assert len(got) == len(intact)
    for t in got:
        assert sorted(t.rcpt_tos) == ["a@example.net", "b@example.net"]
        subject = re.search(rb"Subject: (\w+ [02])\r\n", t.content).group(1)
        assert t.content.endswith(b"\r\n\r\n" + (b"a line of %s\r\n" % subject) * 40), t.content
    # a session that began one would show here even if it never ended it
    assert not any(re.search(rb"Subject: \w+ 1\r\n", t.content) for t in sh.all_transactions())

    for qid in damaged:
        _assert_held_as_damaged(d, qid, why[qid])
        assert len(_damage_lines(d, qid)) == 1, _damage_lines(d, qid)
        assert os.path.exists(_queue_path(d, qid, ".env"))    # never removed on its own

    r = d.mailrelay(["status"])
    assert r.rc == 0, r
    assert re.search(r"\b%d damaged\b" % len(damaged), r.out_text), r.out_text
    s = json.loads(d.mailrelay(["status", "--json"]).out_text)
    assert s["queue"]["damaged"] == len(damaged) and s["queue"]["messages"] == len(damaged)

    # flushing and releasing do not deliver it, nor log it again
    qid = victims["content_cut_short"][1]
    assert d.mailrelay(["flush"]).rc == 0
    r = d.mailrelay(["flush", qid])
    assert r.rc == 65, r
    assert "%s is damaged (content is 62 octets" % qid in r.out_text, r
    r = d.mailrelay(["release", qid])
    assert r.rc == 65, r
    assert "%s is damaged (content is 62 octets" % qid in r.out_text, r
    # a message sent after those requests is delivered after they were handled
    marker, content = _submit(d, "marker", rcpts=("c@example.net",))
    sh.wait_for(len(intact) + 1)
    assert sh.delivered()[-1].content == content
    assert all(len(_damage_lines(d, q)) == 1 for q in damaged)
    assert len(sh.all_transactions()) == len(intact) + 1

    # an admin removes them
    r = d.mailrelay(["delete"] + sorted(damaged))
    assert r.rc == 0, r
    d.wait_queue_empty()
    for q in damaged:
        assert not os.path.exists(_queue_path(d, q, ".env"))
        assert not os.path.exists(_queue_path(d, q, ".msg"))


def test_an_envelope_left_without_its_content_is_removed_at_start(daemon, smarthost):
    """A removal unlinks the content first: a crash between its two unlinks
    leaves an envelope that records a tail and has no .msg (made here by
    deleting the .msg of a deferred message).  With the daemon down the
    listing shows it as damaged; the next start removes it with one
    warning, delivers the others, and nothing of it goes out."""
    sh = smarthost(start=False)
    d = daemon(sh, overrides={"retry_schedule": ["1h"]})
    ids = _queue_three(d, "leftover")
    d.stop()
    victim = ids[1]
    assert "\ntail\t" in d.envelope_text(victim)
    os.unlink(_queue_path(d, victim, ".msg"))
    q = {m["id"]: m for m in d.queue_json()}            # read from the spool
    assert "content missing (or its removal was cut short)" in q[victim]["damaged"]

    sh.start()
    d.start()
    d.wait_for_log(r"%s: envelope without content \(a removal cut short by a crash, or the content "
                   r"deleted\): removed" % victim)
    sh.wait_for(2)
    d.wait_queue_empty()
    assert not os.path.exists(_queue_path(d, victim, ".env"))
    assert len(sh.delivered()) == 2
    assert not any(re.search(rb"Subject: leftover 1\r\n", t.content) for t in sh.all_transactions())
    assert _damage_lines(d, victim) == []


def test_listing_with_the_daemon_down_shows_damage(daemon, smarthost):
    sh = smarthost(start=False)
    d = daemon(sh, overrides={"retry_schedule": ["1h"]})
    ids = _queue_three(d, "down")
    d.stop()
    why = _cut_envelope(_queue_path(d, ids[0], ".env"))
    q = d.queue_json()                          # read from the spool
    assert [m["id"] for m in q] == ids
    assert why in q[0]["damaged"] and q[0]["held"] is True and q[0]["recipients"] == []
    assert q[1]["damaged"] is None and len(q[1]["recipients"]) == 2
    r = d.mailrelay(["show", ids[0]])
    assert r.rc == 0 and "Damaged:" in r.out_text, r
    r = d.mailrelay(["status", "--json"])
    assert r.rc == 69, r
    s = json.loads(r.out_text)
    assert s["queue"]["damaged"] == 1 and s["queue"]["messages"] == 3


def test_content_damaged_while_waiting_is_caught_before_delivery(daemon, smarthost):
    sh = smarthost(start=False)
    d = daemon(sh, overrides={"retry_schedule": ["1h"]})
    ids = _queue_three(d, "waiting")
    why = _cut_content(_queue_path(d, ids[1], ".msg"))
    sh.start()
    assert d.mailrelay(["flush"]).rc == 0
    sh.wait_for(2, timeout=15)
    wait_until(lambda: [m["id"] for m in d.queue_json()] == [ids[1]], what="two delivered")
    assert not any(b"Subject: waiting 1\r\n" in t.content for t in sh.all_transactions())
    _assert_held_as_damaged(d, ids[1], why)
    assert len(_damage_lines(d, ids[1])) == 1
    # a restart finds it again (one line per start), and still sends nothing of it
    d.restart()
    wait_until(lambda: len(_damage_lines(d, ids[1])) == 2, what="the damage said at start")
    assert len(sh.all_transactions()) == 2


def test_content_cut_short_without_an_envelope_beside_it_goes_to_quarantine(daemon, smarthost):
    """A message that never had an .env keeps its envelope in the tail of
    its .msg: cut short there (a disk fault, a hand), nothing says where
    it was to go.  The daemon holds it as damaged while it runs; a restart
    moves the file to quarantine/ with one line that says so, and nothing
    of it is sent."""
    sh = smarthost(start=False)
    d = daemon(sh, overrides={"retry_schedule": ["1h"]})
    ids = [_submit(d, "tail %d" % i)[0] for i in range(2)]
    for qid in ids:
        d.wait_for_record(id=qid, to="a@example.net", status="deferred")
    assert d.queue_files() == sorted(q + ".msg" for q in ids)
    why = _cut_content(_queue_path(d, ids[0], ".msg"))
    assert d.mailrelay(["flush"]).rc == 0
    wait_until(lambda: len(_damage_lines(d, ids[0])) == 1, what="the damage found")
    _assert_held_as_damaged(d, ids[0], why)
    d.stop()
    sh.start()
    d.start()
    d.wait_for_log(r"%s: content without envelope \(cut short, or never acknowledged\) "
                   r"moved to .*/quarantine/%s\.msg" % (ids[0], ids[0]))
    sh.wait_for(1)
    d.wait_queue_empty()
    assert os.path.getsize(os.path.join(d.spool, "quarantine", ids[0] + ".msg")) == 62
    assert not any(b"Subject: tail 0\r\n" in t.content for t in sh.all_transactions())
    assert len(sh.all_transactions()) == 1


def test_content_cut_while_queued_for_a_busy_session_is_not_sent(daemon, smarthost):
    """The check on the descriptor the session sends from: the message was
    ready (intact) when it was queued, and is cut before its session reads it."""
    sh = smarthost()
    d = daemon(sh, overrides={"concurrency": "1"})
    sh.hold()                                   # the first message waits for its 250
    _, first = _submit(d, "first", rcpts=("a@example.net",))
    wait_until(lambda: sh.in_data == 1, what="the first message in DATA")
    qid, _ = _submit(d, "second", rcpts=("b@example.net",))
    why = _cut_content(_queue_path(d, qid, ".msg"))
    sh.release()
    wait_until(lambda: len(_damage_lines(d, qid)) == 1, what="the damage found")
    sh.wait_for(1)
    _assert_held_as_damaged(d, qid, why)
    # nothing of it reached the smarthost as a message, now or later
    assert d.mailrelay(["flush"]).rc == 0
    _, third = _submit(d, "third", rcpts=("c@example.net",))
    sh.wait_for(2)
    assert [t.content for t in sh.delivered()] == [first, third]
    assert len(_damage_lines(d, qid)) == 1


def test_envelope_written_before_the_end_record_is_still_delivered(daemon, smarthost):
    """A spool from before the end record (format version 1) keeps working."""
    sh = smarthost(start=False)
    d = daemon(sh, overrides={"retry_schedule": ["1h"]})
    qid, content = _submit(d, "old format")
    d.wait_for_record(id=qid, to="b@example.net", status="deferred")
    _write_envelope(d, qid)
    d.stop()
    path = _queue_path(d, qid, ".env")
    with open(path) as f:
        lines = f.read().splitlines()
    assert lines[0] == "mailrelay-env 2" and lines[-1] == "end\t2"
    with open(path, "w") as f:
        f.write("\n".join(["mailrelay-env 1"] + lines[1:-1]) + "\n")
    sh.start()
    d.start()
    (t,) = sh.wait_for(1)
    assert sorted(t.rcpt_tos) == ["a@example.net", "b@example.net"] and t.content == content
    d.wait_queue_empty()
    assert not _damage_lines(d, qid)


def test_kept_files_of_delivered_messages_are_closed_to_local_users(daemon, smarthost):
    """A delivered message's file, kept in tmp/ for a later message to be
    written into (ID.free), still holds its octets: no local user may read
    it, not even with the group the setgid sendmail holds (the spool's,
    which lets that client into the spool directory itself)."""
    sh = smarthost()
    d = daemon(sh)
    secret = "kept-file-secret-%d" % os.getpid()
    qid, _ = _submit(d, "kept", body="%s\n" % secret)
    sh.wait_for(1)
    d.wait_queue_empty()
    kept = os.path.join(d.spool, "tmp", qid + ".free")
    wait_until(lambda: os.path.exists(kept), what="the delivered message's file kept")
    with open(kept, "rb") as f:
        assert secret.encode() in f.read()         # it is the message's own file
    assert os.stat(kept).st_mode & 0o777 == 0o600
    assert os.stat(os.path.dirname(kept)).st_mode & 0o777 == 0o700
    spool_gid = os.stat(d.spool).st_gid
    for gid in (65534, spool_gid):
        who = ["setpriv", "--reuid=65534", "--regid=%d" % gid, "--clear-groups"]
        for argv in (["cat", kept], ["ls", os.path.dirname(kept)]):
            p = subprocess.run(who + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
            assert p.returncode != 0, (gid, argv, p)
            assert b"Permission denied" in p.stderr, (gid, argv, p)
            assert secret.encode() not in p.stdout + p.stderr

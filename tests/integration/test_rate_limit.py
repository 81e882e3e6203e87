"""rate_limit = COUNT/PERIOD per smarthost: messages wait for the window
instead of collecting 4xx replies; no deferral, no failover, kept across
a reload."""

import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from mrtest import make_message, message_id_of, smarthost_opts, wait_until

SENDER = "sender@example.org"
RCPT = "rcpt@example.net"


def _starts(d, name):
    """The daemon's own record of each message start against the window of
    smarthost `name`, in seconds (monotonic).  What the smarthost sees comes
    later by a scheduling delay that no fixed slack bounds on a busy machine,
    so the window is checked on the daemon's clock, exactly."""
    rx = re.compile(r"([0-9A-F]{16}): counted in the rate_limit window of smarthost %s at ([0-9]+) ms$" % re.escape(name))
    out = []
    for line in d.log_lines():
        m = rx.search(line)
        if m:
            out.append((m.group(1), int(m.group(2)) / 1000.0))
    return out


def _start_times(d, name, count):
    starts = _starts(d, name)
    assert len(starts) == count, starts
    assert len({qid for qid, _ in starts}) == count, starts    # each message started once
    return sorted(t for _, t in starts)


def _submit(d, n, tag):
    msgs = [make_message(subject="%s %d" % (tag, i), body="message number %d\n" % i)
            for i in range(n)]
    with ThreadPoolExecutor(max_workers=n) as ex:
        results = list(ex.map(lambda m: d.sendmail(["-i", "-f", SENDER, RCPT], m), msgs))
    for r in results:
        assert r.rc == 0, r
    return msgs


def _pacing_lines(d, name):
    return [l for l in d.log_lines() if "smarthost %s: rate_limit" % name in l]


def _assert_each_sent_once_first_try(d, sh, msgs):
    # the smarthost has a message once it answered the dot; the daemon logs
    # "sent" when that answer reaches it, a moment later
    wait_until(lambda: len(d.outcomes(status="sent")) >= len(msgs), 10,
               what="the daemon to log each message sent")
    counts = Counter(t.message_id for t in sh.delivered())
    assert sorted(counts) == sorted(message_id_of(m) for m in msgs)
    assert set(counts.values()) == {1}, counts
    assert d.outcomes(status="deferred") == []
    assert "status=deferred" not in d.log_text()
    sent = d.outcomes(status="sent")
    assert len(sent) == len(msgs)
    assert {r["attempts"] for r in sent} == {"1"}, sent


def _assert_at_most(times, count, period):
    """No `count`+1 starts within one period (the daemon's clock has ms steps)."""
    times = sorted(times)
    for i in range(len(times) - count):
        gap = times[i + count] - times[i]
        assert gap >= period - 0.0015, ("starts %d and %d only %.3fs apart: %r"
                                        % (i, i + count, gap, times))


def test_messages_wait_for_the_window_and_are_not_deferred(daemon, smarthost):
    sh = smarthost()
    d = daemon(smarthosts=[("main", smarthost_opts(sh.port, rate_limit="3/s"))])
    msgs = _submit(d, 9, "paced")

    sh.wait_for(9, timeout=15)
    d.wait_queue_empty(timeout=5)
    _assert_each_sent_once_first_try(d, sh, msgs)
    times = _start_times(d, "main", 9)
    _assert_at_most(times, 3, 1.0)
    # three windows: 0 s, 1 s, 2 s; not much later either (the timer fires
    # when the window opens, not on the next retry)
    assert times[-1] - times[0] >= 2.0 - 0.0015, times
    assert times[-1] - times[0] < 10.0, times
    # one line when pacing starts, not one per message
    lines = _pacing_lines(d, "main")
    assert len(lines) == 1, lines
    assert "smarthost main: rate_limit 3/s reached; next message in 1s" in lines[0]


def test_no_failover_to_the_next_smarthost_while_pacing(daemon, smarthost):
    sh1, sh2 = smarthost(), smarthost()
    d = daemon(smarthosts=[("main", smarthost_opts(sh1.port, rate_limit="2/s")),
                           ("backup", smarthost_opts(sh2.port))])
    msgs = _submit(d, 6, "no failover")

    sh1.wait_for(6, timeout=15)
    d.wait_queue_empty(timeout=5)
    _assert_each_sent_once_first_try(d, sh1, msgs)
    _assert_at_most(_start_times(d, "main", 6), 2, 1.0)
    assert sh2.client_sessions() == []
    assert "trying backup" not in d.log_text()


def test_a_reload_keeps_the_window(daemon, smarthost):
    sh = smarthost()
    d = daemon(smarthosts=[("main", smarthost_opts(sh.port, rate_limit="3/2s"))])
    first = _submit(d, 3, "before reload")
    sh.wait_for(3, timeout=10)
    d.wait_queue_empty(timeout=5)
    assert _pacing_lines(d, "main") == []

    mark = len(d.log_lines())
    d.hup()
    d.wait_for_log(r"configuration reloaded", after=mark)
    second = _submit(d, 3, "after reload")
    d.wait_for_log(r"smarthost main: rate_limit 3/2s reached; next message in [12]s", after=mark)
    sh.wait_for(6, timeout=10)
    d.wait_queue_empty(timeout=5)
    _assert_each_sent_once_first_try(d, sh, first + second)
    # the three after the reload waited for the window the first three opened
    _assert_at_most(_start_times(d, "main", 6), 3, 2.0)


@pytest.mark.parametrize("how", ["restart", "crash"])
def test_a_restart_keeps_the_window(daemon, smarthost, how):
    """A restart, even after SIGKILL, does not grant a fresh allowance: the
    starts are saved in the spool (within a second) and restored."""
    sh = smarthost()
    d = daemon(smarthosts=[("main", smarthost_opts(sh.port, rate_limit="3/4s"))])
    first = _submit(d, 3, "before " + how)
    sh.wait_for(3, timeout=10)
    d.wait_queue_empty(timeout=5)
    saved = os.path.join(d.spool, "rate-window")
    wait_until(lambda: os.path.exists(saved) and open(saved).read().count("start\tmain\t") == 3,
               what="the window saved in the spool")
    if how == "restart":
        d.restart()
    else:
        d.kill()
        d.start()
    d.wait_for_log(r"rate_limit: 3 message start\(s\) of the current window\(s\) restored")
    second = _submit(d, 3, "after " + how)
    d.wait_for_log(r"smarthost main: rate_limit 3/4s reached; next message in [1-4]s")
    sh.wait_for(6, timeout=15)
    d.wait_queue_empty(timeout=5)
    counts = Counter(t.message_id for t in sh.delivered())
    assert sorted(counts) == sorted(message_id_of(m) for m in first + second)
    assert set(counts.values()) == {1}, counts
    # the daemon's monotonic clock runs on across the restart
    _assert_at_most(_start_times(d, "main", 6), 3, 4.0)


def test_a_window_file_that_is_not_ours_is_ignored(daemon, smarthost):
    sh = smarthost()
    d = daemon(smarthosts=[("main", smarthost_opts(sh.port, rate_limit="3/4s"))], start=False)
    os.makedirs(d.spool, exist_ok=True)
    with open(os.path.join(d.spool, "rate-window"), "w") as f:
        f.write("something else\nstart\tmain\t1\n")
    d.start()
    d.wait_for_log(r"cannot read the rate_limit windows \(Invalid argument\); they start empty")
    msgs = _submit(d, 3, "fresh")
    sh.wait_for(3, timeout=10)
    _assert_each_sent_once_first_try(d, sh, msgs)


def test_without_rate_limit_nothing_waits(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    msgs = _submit(d, 9, "unpaced")
    sh.wait_for(9, timeout=10)
    d.wait_queue_empty(timeout=5)
    _assert_each_sent_once_first_try(d, sh, msgs)
    assert "rate_limit" not in d.log_text()
    wait_until(lambda: sh.in_data == 0, 5, what="the smarthost to be idle")

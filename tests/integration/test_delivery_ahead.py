"""A session that goes on to the next message on its connection gets the
one after it ahead (LK_AHEAD), so that the delivery process never waits
for mailrelayd between two messages.  The two processes race: the
process may go idle before the message ahead comes, or end, or refuse it,
or die holding it; and it takes it only once the one before is done,
which may be long after that one's release (an RSET between).  A stand-in for mailrelay-deliver
(standin_deliver.py) makes each of those orders of frames every time;
whatever the order, each message is sent once, at its first attempt, and
nothing is left in the queue."""
import os
import shutil
import sys

import pytest

from mrtest import make_message, smarthost_opts, wait_until

RCPT = "rcpt@example.net"
SENDER = "sender@example.org"
HERE = os.path.dirname(os.path.abspath(__file__))
COUNT = 6


def standin_daemon(daemon, build, workdir, mode):
    where = os.path.join(workdir, "standin")
    os.mkdir(where)
    # mailrelayd runs the mailrelay-deliver beside itself: a copy of it beside the stand-in
    shutil.copy(build.mailrelayd, os.path.join(where, "mailrelayd"))
    with open(os.path.join(where, "mailrelay-deliver"), "w") as f:
        f.write("#!/bin/sh\nexec %s %s %s %s \"$@\"\n" % (
            sys.executable, os.path.join(HERE, "standin_deliver.py"), where, mode))
    os.chmod(os.path.join(where, "mailrelay-deliver"), 0o755)
    # one session: the messages queue behind it, each given on its connection
    d = daemon(smarthosts=[("main", smarthost_opts(9, reuse_time="60s"))],
               overrides={"concurrency": "1"}, start=False)
    d.binary = os.path.join(where, "mailrelayd")
    d.start()
    return d, where


def events(where):
    try:
        with open(os.path.join(where, "log")) as f:
            return f.read().split("\n")[:-1]
    except FileNotFoundError:
        return []


@pytest.mark.parametrize("mode,raced", [
    ("normal", None),
    ("cross", "crossed"),
    ("refuse", "refused"),
    ("end_ahead", "ended holding "),
    ("rset", "released, not taken yet"),
    ("die", "died"),
])
def test_every_order_of_frames_sends_each_message_once(daemon, build, workdir, mode, raced):
    d, where = standin_daemon(daemon, build, workdir, mode)
    qids = []
    for i in range(COUNT):
        r = d.sendmail(["-i", "-f", SENDER, RCPT], make_message(subject="m%d" % i, sender=SENDER, to=(RCPT,)))
        assert r.rc == 0, r
        qids.append(d.accepted_id(sender=SENDER))
        if i == 0:
            wait_until(lambda: any(e.startswith("start ") for e in events(where)), 10,
                       what="the first session started", alive=d.check_alive)
    open(os.path.join(where, "go"), "w").close()
    wait_until(lambda: len(d.outcomes(status="sent")) >= COUNT, 30, what="every message sent",
               alive=d.check_alive)
    d.wait_queue_empty(timeout=10)
    log = events(where)
    assert [e for e in log if e.startswith("error")] == [], log
    sent = [e.split()[1] for e in log if e.startswith("sent ")]
    assert sorted(sent) == sorted(qids), log                   # each once, none lost
    assert any(e.startswith("ahead ") for e in log), log       # messages were given ahead
    if raced is not None:
        assert any(e.startswith(raced) for e in log), log      # and the race was made
    for rec in d.outcomes(status="sent"):
        assert rec["attempts"] == "1", rec["line"]           # an untried message is no attempt
    assert d.outcomes(status="deferred") == []
    ended = [l for l in d.log_lines() if "the delivery process ended" in l]
    if mode == "die":
        d.wait_for_log(r"mailrelayd: the delivery process ended \(its link closed\); "
                       r"the messages it was sending are tried again$")
    else:
        assert ended == [], ended                            # no frame was out of order
    d.check_alive()

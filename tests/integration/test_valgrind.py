"""A full run of the daemon under valgrind: no invalid access, no leak, in
mailrelayd and in every process it runs (its delivery processes and their
checks, followed through exec).

Covers start-up, submissions through the sendmail client and the TCP
listener, a deferral and its retry, a permanent recipient failure, a
failure reported while another recipient waits, the control socket
(status, queue, show, hold, release, delete), a rate_limit window saved to
the spool, a reload, and a clean shutdown.  Run against the plain build only (valgrind
and ASan do not mix): scripts/test-all deselects the `valgrind` marker for
the sanitizer build.
"""
import glob
import os
import re
import smtplib
import shutil

import pytest

from mrtest import make_message, smarthost_opts, to_crlf, wait_until

SENDER = "sender@example.org"

pytestmark = pytest.mark.valgrind


@pytest.mark.mailrelay_timeout(240)
def test_full_daemon_run_is_clean_under_valgrind(daemon, smarthost):
    assert shutil.which("valgrind"), "valgrind is required (scripts/deps.sh installs it)"
    sh = smarthost()
    sh.data_replies = ["451 4.3.0 try later"]
    sh.rcpt_replies = {"nobody@example.net": "550 5.1.1 no such user",
                       "later@example.net": "450 4.2.0 not now"}
    d = daemon(smarthosts=[("main", smarthost_opts(sh.port, rate_limit="1000/m"))], start=False)
    vlog = os.path.join(d.dir, "valgrind")
    d.wrapper = ["valgrind", "--quiet", "--leak-check=full", "--show-leak-kinds=definite,indirect,possible",
                 "--errors-for-leak-kinds=definite,indirect,possible", "--track-fds=no",
                 "--trace-children=yes", "--log-file=" + vlog + ".%p.log"]
    d.start(timeout=60)

    msgs = []
    for i in range(3):
        m = make_message(subject="valgrind %d" % i, body="line\n.\n..dots\n")
        r = d.sendmail(["-i", "-f", SENDER, "rcpt%d@example.net" % i], m, timeout=60)
        assert r.rc == 0, r
        msgs.append(to_crlf(m))
    # a permanent failure for one of two recipients
    m = make_message(subject="valgrind 550")
    r = d.sendmail(["-i", "-f", SENDER, "ok@example.net", "nobody@example.net"], m, timeout=60)
    assert r.rc == 0, r
    msgs.append(to_crlf(m))
    # the TCP listener
    m = to_crlf(make_message(subject="valgrind smtp"))
    with smtplib.SMTP("127.0.0.1", d.tcp_port, timeout=60) as s:
        assert s.sendmail(SENDER, ["tcp@example.net"], m) == {}
    msgs.append(m)

    # every message arrives (one after a 451 and a retry), and the sender
    # gets a delivery status notification for nobody@example.net
    sh.wait_for(6, timeout=90)
    d.wait_queue_empty(timeout=60)
    got = sorted(t.content for t in sh.delivered() if t.mail_from != "")
    assert got == sorted(msgs)
    assert d.wait_for_record(to="nobody@example.net", status="bounced", timeout=30)
    notices = [t for t in sh.delivered() if t.mail_from == ""]
    assert len(notices) == 1 and notices[0].rcpt_tos == [SENDER], notices
    assert b"report-type=delivery-status" in notices[0].content

    # a failure reported at once while another recipient of the message waits;
    # then the admin's commands, the waiting message deleted
    r = d.sendmail(["-i", "-f", SENDER, "nobody@example.net", "later@example.net"],
                   make_message(subject="valgrind partial"), timeout=60)
    assert r.rc == 0, r
    wait_until(lambda: len([t for t in sh.delivered() if t.mail_from == ""]) == 2, timeout=60,
               what="the notice of the partial failure")
    (q,) = d.queue_json()
    for args in (["status"], ["status", "--json"], ["queue"], ["show", q["id"], "--body"],
                 ["hold", q["id"]], ["release", q["id"]], ["flush"]):
        r = d.mailrelay(args, timeout=60)
        assert r.rc == 0, (args, r)

    def deleted():
        r = d.mailrelay(["delete", q["id"]], timeout=60)
        assert r.rc in (0, 75), r         # 75: being delivered right now, try again
        return r.rc == 0
    wait_until(deleted, timeout=60, interval=0.5, what="the deletion")
    assert d.queue_json() == []
    wait_until(lambda: os.path.exists(os.path.join(d.spool, "rate-window")), timeout=30,
               what="the rate_limit window saved")

    d.hup()
    d.wait_for_log(r"reloaded", timeout=30)
    d.stop(timeout=60)

    logs = glob.glob(vlog + ".*.log")
    # mailrelayd, its checks at start and at the reload, and at least one delivery process
    assert len(logs) >= 4, "valgrind did not run in every process: %s" % logs
    report = "".join(open(p).read() for p in logs)
    assert not re.search(r"Invalid (read|write|free)|uninitialised|Mismatched free", report), report
    assert "definitely lost" not in report and "indirectly lost" not in report \
        and "possibly lost" not in report, report
    # --quiet prints nothing unless there is an error
    assert report.strip() == "", report

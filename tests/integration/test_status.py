"""`mailrelay status [--json]`: the daemon's account of itself (version,
uptime, the queue by state, counters since start, each smarthost's last
success, last error and back-off), open to every user since it names no
sender, recipient or subject; and what the spool holds when the daemon is
down, with exit 69."""
import json
import os
import subprocess

from mrtest import client_env, make_message, smarthost_opts, wait_until, require_root

SENDER = "app@example.org"
RCPT = "rcpt@example.net"


def status_json(d):
    r = d.mailrelay(["status", "--json"])
    assert r.rc == 0, r
    return json.loads(r.out_text)


def test_status_counts_and_smarthosts(daemon, smarthost):
    sh = smarthost()
    sh.rcpt_replies = {"busy@example.net": "450 4.2.0 busy", "gone@example.net": "550 5.1.1 gone"}
    d = daemon(sh, overrides={"retry_schedule": ["1h"]})
    for to in (RCPT, "busy@example.net", "gone@example.net"):
        assert d.sendmail(["-i", "-f", SENDER, to], make_message()).rc == 0
    # the notice of the bounce is a message of its own, sent after the bounce
    # is counted: wait for it too, or its "sent" may not be counted yet
    wait_until(lambda: (lambda c: c["bounced"] == 1 and c["deferred"] == 1 and
                        c["sent"] >= 2)(status_json(d)["counters"]),
               what="the outcomes and the notice")
    s = status_json(d)
    assert s["running"] is True and s["version"] and s["pid"] > 0
    assert s["uptime"] >= 0 and s["started"].endswith("Z")
    assert s["counters"]["accepted"] == 3
    assert s["counters"]["sent"] >= 2            # RCPT and the notification of the bounce
    assert s["counters"]["notices"] == 1
    assert s["queue"]["messages"] == 1 and s["queue"]["deferred"] == 1
    assert s["queue"]["oldest_age"] >= 0
    (h,) = s["smarthosts"]
    assert h["name"] == "main" and h["host"] == "127.0.0.1" and h["port"] == sh.port
    assert h["last_success"] is not None and h["backoff_until"] is None
    assert h["rate_limit"] is None and h["paced_until"] is None
    text = d.mailrelay(["status"]).out_text
    assert "running" in text and "queue: 1 message(s)" in text
    assert "smarthost main (127.0.0.1:%d): last success" % sh.port in text


def test_status_shows_a_failing_smarthost_and_its_back_off(daemon, smarthost):
    sh = smarthost(start=False)          # nothing listens: connection refused
    d = daemon(smarthosts=[("main", smarthost_opts(sh.port))],
               overrides={"retry_schedule": ["1h"]})
    assert d.sendmail(["-i", "-f", SENDER, RCPT], make_message()).rc == 0
    wait_until(lambda: status_json(d)["smarthosts"][0]["failures"] >= 1, what="a failure")
    h = status_json(d)["smarthosts"][0]
    assert "refused" in h["last_error"].lower()
    assert h["last_success"] is None and h["backoff_until"] is not None
    text = d.mailrelay(["status"]).out_text
    assert "last success never" in text and "backed off after 1 failure(s)" in text


def test_status_when_the_daemon_is_down(daemon, smarthost):
    d = daemon(smarthost(start=False), overrides={"retry_schedule": ["1h"]})
    assert d.sendmail(["-i", "-f", SENDER, RCPT], make_message()).rc == 0
    d.stop()
    r = d.mailrelay(["status"])
    assert r.rc == 69, r
    assert r.out_text.startswith("mailrelayd is not running")
    assert "1 message(s), 0 held" in r.out_text
    r = d.mailrelay(["status", "--json"])
    assert r.rc == 69
    s = json.loads(r.out_text)
    assert s["running"] is False and s["queue"]["messages"] == 1 and s["error"]


def test_any_user_may_ask_for_the_status(daemon, smarthost):
    require_root("running the client as another user")
    d = daemon(smarthost())
    os.chmod(d.conf, 0o644)
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        d.build.mailrelay, "-c", d.conf, "status", "--json"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=client_env(), timeout=20)
    assert p.returncode == 0, p
    assert json.loads(p.stdout)["running"] is True

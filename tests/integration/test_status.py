"""`mailrelay status [--json]`: the daemon's account of itself (version,
uptime, the queue by state, counters since start, each smarthost's last
success, last error and back-off), open to every user since it names no
sender, recipient or subject; and what the spool holds when the daemon is
down, with exit 69."""
import json
import os
import re
import subprocess
import time

from mrtest import client_env, make_message, quote, smarthost_opts, wait_until, require_root

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
    # what it means, under the last error: the row of lib/explain.c for a refused connection
    lines = text.splitlines()
    i = next(n for n, l in enumerate(lines) if l.startswith("  last error "))
    assert lines[i + 1] == ("    why: the host answered, but nothing takes connections on that port "
                            "(or a firewall rejects them)"), text
    assert lines[i + 2] == ("    what to do: check `port`: 587 for STARTTLS submission, 465 for TLS "
                            "from the first byte, 25 between servers"), text


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


# The --json layouts as mailrelay(8) documents them: every key, its type.
# A key added, removed or retyped fails here and must be documented first.
STR, INT, BOOL, NULL = str, int, bool, type(None)
RFC3339 = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
QUEUE_MSG = {"id": STR, "arrival": STR, "size": INT, "sender": STR, "held": BOOL,
             "damaged": (STR, NULL), "recipients": list}
QUEUE_RCPT = {"address": STR, "orig": STR, "status": STR, "attempts": INT, "last_reply": STR,
              "next_attempt": (STR, NULL)}
STATUS = {"running": BOOL, "version": STR, "pid": INT, "started": STR, "uptime": INT,
          "queue": dict, "counters": dict, "smarthosts": list, "configuration": dict}
STATUS_CONFIGURATION = {"path": (STR, NULL), "loaded": STR, "file_changed": (STR, NULL),
                        "file_newer": BOOL, "reload_refused": (STR, NULL),
                        "reload_refused_why": (STR, NULL)}
STATUS_QUEUE = {"messages": INT, "active": INT, "deferred": INT, "held": INT, "waiting": INT,
                "damaged": INT, "oldest_age": (INT, NULL)}
STATUS_COUNTERS = {k: INT for k in ("accepted", "notices", "sent", "deferred", "bounced",
                                    "tls_failures", "auth_failures")}
STATUS_SMARTHOST = {"name": STR, "host": STR, "port": INT, "last_success": (STR, NULL),
                    "last_failure": (STR, NULL), "last_error": (STR, NULL), "failures": INT,
                    "backoff_until": (STR, NULL), "rate_limit": (STR, NULL), "paced_until": (STR, NULL),
                    "needs_authorisation": (STR, NULL)}
STATUS_DOWN = {"running": BOOL, "error": STR, "queue": dict, "smarthosts": list}
STATUS_DOWN_SMARTHOST = {"name": STR, "host": STR, "port": INT, "needs_authorisation": (STR, NULL)}
STATUS_DOWN_QUEUE = {"messages": INT, "held": INT, "damaged": INT, "oldest_age": (INT, NULL)}


def conforms(obj, schema, where):
    assert isinstance(obj, dict), "%s: not an object: %r" % (where, obj)
    assert set(obj) == set(schema), "%s: keys %s, documented %s" % (where, sorted(obj), sorted(schema))
    for k, t in schema.items():
        types = t if isinstance(t, tuple) else (t,)
        # bool is an int in Python: an INT must not be a bool, nor the reverse
        ok = any(isinstance(obj[k], ty) and (ty is bool or not isinstance(obj[k], bool)) for ty in types)
        assert ok, "%s.%s: %r is not %s" % (where, k, obj[k], types)
        if t in (STR, (STR, NULL)) and isinstance(obj[k], str) and \
                k in ("arrival", "next_attempt", "started", "last_success", "last_failure",
                      "backoff_until", "paced_until", "loaded", "file_changed", "reload_refused"):
            assert re.fullmatch(RFC3339, obj[k]), "%s.%s: %r is not RFC 3339 UTC" % (where, k, obj[k])


def test_json_outputs_keep_their_documented_layout(daemon, smarthost):
    sh = smarthost()
    sh.rcpt_replies = {"busy@example.net": "450 4.2.0 busy", "gone@example.net": "550 5.1.1 gone"}
    d = daemon(smarthosts=[("main", smarthost_opts(sh.port, rate_limit="30/m")),
                           ("backup", smarthost_opts(sh.port))],
               overrides={"retry_schedule": ["1h"]})
    assert d.sendmail(["-i", "-f", SENDER, "busy@example.net", "gone@example.net", RCPT],
                      make_message()).rc == 0
    assert d.sendmail(["-i", "-f", "", "busy@example.net"], make_message()).rc == 0
    wait_until(lambda: len(d.queue_json()) == 2 and
               all(r["attempts"] for m in d.queue_json() for r in m["recipients"]), what="two deferred")
    assert d.mailrelay(["hold", d.queue_json()[1]["id"]]).rc == 0

    for where in ("running", "stopped"):
        q = d.queue_json()
        assert len(q) == 2
        for m in q:
            conforms(m, QUEUE_MSG, "queue[%s]" % m.get("id"))
            assert re.fullmatch(r"[0-9A-F]{16}", m["id"])
            for r in m["recipients"]:
                conforms(r, QUEUE_RCPT, "queue[%s].recipients" % m["id"])
                assert r["status"] in ("pending", "sent", "failed")
        assert {r["status"] for r in q[0]["recipients"]} == {"pending", "sent", "failed"}
        assert q[1]["sender"] == "" and q[1]["held"] is True
        if where == "running":
            s = status_json(d)
            conforms(s, STATUS, "status")
            conforms(s["configuration"], STATUS_CONFIGURATION, "status.configuration")
            conforms(s["queue"], STATUS_QUEUE, "status.queue")
            conforms(s["counters"], STATUS_COUNTERS, "status.counters")
            assert [h["name"] for h in s["smarthosts"]] == ["main", "backup"]
            for h in s["smarthosts"]:
                conforms(h, STATUS_SMARTHOST, "status.smarthosts[%s]" % h["name"])
            assert s["smarthosts"][0]["rate_limit"] == "30/60s"
            d.stop()
        else:
            r = d.mailrelay(["status", "--json"])
            assert r.rc == 69, r
            s = json.loads(r.out_text)
            conforms(s, STATUS_DOWN, "status (down)")
            conforms(s["queue"], STATUS_DOWN_QUEUE, "status (down).queue")
            assert [h["name"] for h in s["smarthosts"]] == ["main", "backup"]
            for h in s["smarthosts"]:
                conforms(h, STATUS_DOWN_SMARTHOST, "status (down).smarthosts[%s]" % h["name"])
            assert s["running"] is False and s["queue"]["messages"] == 2 and s["queue"]["held"] == 1


def test_json_strings_round_trip_up_and_down(daemon, smarthost):
    """Text from a peer (quotes, backslashes, slashes) comes back from
    `queue --json` and `status --json` exactly as it was recorded, from the
    daemon and from the spool, each output one JSON text (json-c writes
    them all)."""
    reply = '450 4.2.0 try "later" at C:\\queue\\busy or https://status.example/x'
    sh = smarthost()
    sh.rcpt_replies = {"busy@example.net": reply}
    d = daemon(sh, overrides={"retry_schedule": ["1h"]})
    assert d.sendmail(["-i", "-f", SENDER, "busy@example.net"], make_message()).rc == 0
    wait_until(lambda: [r["attempts"] for m in d.queue_json() for r in m["recipients"]] == [1],
               what="the deferral")
    for where in ("daemon", "spool"):
        (m,) = d.queue_json()
        assert m["recipients"][0]["last_reply"] == reply, (where, m)
        r = d.mailrelay(["status", "--json"])
        assert r.out_text.count("\n") == 1, (where, r.out_text)
        js = json.loads(r.out_text)
        assert js["running"] is (where == "daemon"), js
        if where == "daemon":
            d.stop()


def test_a_refused_reload_and_an_edit_not_loaded_are_shown(daemon, smarthost):
    """Before: a refused reload was one log line, and status said nothing of a
    configuration file newer than what runs."""
    sh = smarthost()
    d = daemon(sh, start=False)
    t = time.time()
    os.utime(d.conf, (t - 100, t - 100))      # mtimes have whole seconds: an edit now is later
    d.start()
    text = d.mailrelay(["status"]).out_text
    assert re.search(r"^configuration: %s, loaded \S+ ago$" % re.escape(d.conf), text, re.M), text
    assert "refused" not in text and "not loaded yet" not in text
    c = status_json(d)["configuration"]
    assert c["path"] == d.conf and c["file_newer"] is False and c["reload_refused"] is None

    # an edit, not reloaded: the file is newer than what runs
    os.utime(d.conf, None)
    text = d.mailrelay(["status"]).out_text
    assert re.search(r"^  %s changed \S+ ago and is not loaded yet: run mailrelay check-config, then "
                     r"systemctl reload mailrelay" % re.escape(d.conf), text, re.M), text
    assert status_json(d)["configuration"]["file_newer"] is True

    # an edit the daemon refuses (a secret file that is not there), reloaded: status says why
    good = d.config_text
    d.write_config([("main", smarthost_opts(sh.port, username=quote("u"),
                                            password_file=quote("/nonexistent/secret")))])
    d.hup()
    d.wait_for_log(r"reload refused: ")
    text = d.mailrelay(["status"]).out_text
    m = re.search(r"^  reload refused \S+ ago: (.*); the configuration loaded \S+ ago is still "
                  r"running$", text, re.M)
    assert m and "/nonexistent/secret" in m.group(1), text
    c = status_json(d)["configuration"]
    assert c["reload_refused"] is not None and "/nonexistent/secret" in c["reload_refused_why"], c

    # fixed and reloaded: nothing to say any more
    with open(d.conf, "w") as f:
        f.write(good)
    d.hup()
    wait_until(lambda: status_json(d)["configuration"]["reload_refused"] is None,
               what="the refusal forgotten after a good reload")
    text = d.mailrelay(["status"]).out_text
    assert "refused" not in text and "not loaded yet" not in text, text

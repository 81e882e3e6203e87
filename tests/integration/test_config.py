"""Config errors name FILE:LINE: KEY and exit 78; SIGHUP reloads (or keeps
the old config when the new one is bad); SIGTERM exits 0."""

import re
import shutil
import subprocess

import pytest

from mrtest import (assert_no_sanitizer_report, client_env, line_of, make_message,
                    message_id_of, one_line, smarthost_opts, to_crlf, wait_until, write_config)

SENDER = "sender@example.org"
RCPT = "rcpt@example.net"

# (key, top-level overrides, smarthost overrides, text that marks the bad line)
BAD_CONFIGS = [
    ("tls", {}, {"tls": "yes"}, "tls = yes"),
    ("max_message_size", {"max_message_size": "10Q"}, {}, "max_message_size = 10Q"),
    ("retry_schedule", {"retry_schedule": ["soon"]}, {}, "retry_schedule = { soon }"),
    ("concurrency", {"concurrency": "0"}, {}, "concurrency = 0"),
    ("log_level", {"log_level": "chatty"}, {}, "log_level = chatty"),
]


def _run(argv, timeout=10):
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout, env=client_env())
    err = p.stderr.decode("utf-8", "replace")
    assert_no_sanitizer_report(err, argv[0])
    return p.returncode, p.stdout.decode("utf-8", "replace"), err


@pytest.mark.parametrize("key, top, sh_over, marker", BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS])
def test_bad_config_exits_78_naming_file_line_key(build, workdir, key, top, sh_over, marker):
    path, text = write_config(workdir, top, sh_over)
    where = "bad.conf:%d: %s:" % (line_of(text, marker), key)

    rc, _, err = _run([build.mailrelayd, "-c", path, "-f"])
    assert rc == 78, err
    assert where in err, err

    rc, _, err = _run([build.mailrelay, "-c", path, "check-config"])
    assert rc == 78, err
    assert where in err, err

    rc, _, err = _run([build.sendmail, "-C", path, "-i", RCPT])
    assert rc == 78, err
    assert where in one_line(err), err


def test_tls_error_message_lists_the_choices(build, workdir):
    path, text = write_config(workdir, {}, {"tls": "yes"})
    rc, _, err = _run([build.mailrelayd, "-c", path, "-f"])
    assert rc == 78
    assert ('bad.conf:%d: tls: expected one of disabled, opportunistic, required, implicit, got "yes"'
            % line_of(text, "tls = yes")) in err, err


def test_check_config_good(daemon, smarthost):
    d = daemon(smarthost(start=False), start=False)
    r = d.mailrelay(["check-config"])
    assert r.rc == 0, r


def test_sighup_with_broken_config_keeps_the_old_one(daemon, smarthost):
    first = smarthost(name="first")
    second = smarthost(name="second")
    d = daemon(first)

    # The clients read the file too: keep a good copy for them.
    d.client_conf = d.conf + ".good"
    shutil.copyfile(d.conf, d.client_conf)
    # The new file would move delivery to `second`, but it has an error:
    # none of it may take effect.
    text = d.write_config([("main", smarthost_opts(second.port, tls="yes"))])
    mark = len(d.log_lines())
    d.hup()
    d.wait_for_log(r"mailrelay\.conf:%d: tls:" % line_of(text, "tls = yes"), after=mark)
    assert d.alive

    msg = make_message(subject="after a bad reload")
    r = d.sendmail(["-i", "-f", SENDER, RCPT], msg)
    assert r.rc == 0, r
    t = first.wait_for(1)[0]
    assert t.content == to_crlf(msg)
    d.wait_queue_empty()
    assert second.delivered() == [] and second.greeted_sessions() == []
    assert d.alive


def test_sighup_with_valid_config_takes_effect(daemon, smarthost):
    first = smarthost(name="first")
    second = smarthost(name="second")
    d = daemon(first)

    m1 = make_message(subject="before reload")
    assert d.sendmail(["-i", "-f", SENDER, RCPT], m1).rc == 0
    first.wait_for(1)
    d.wait_queue_empty()

    d.write_config([second])
    mark = len(d.log_lines())
    d.hup()
    m = d.wait_for_log(r"(?i).*reload.*", after=mark)
    assert not re.search(r"(?i)error|fail|invalid", m.group(0)), m.group(0)

    m2 = make_message(subject="after reload")
    assert d.sendmail(["-i", "-f", SENDER, RCPT], m2).rc == 0
    wait_until(lambda: second.find(message_id_of(m2)), 15, what="m2 at the second smarthost")
    d.wait_queue_empty()
    assert first.find(message_id_of(m2)) == []
    assert second.find(message_id_of(m2))[0].content == to_crlf(m2)
    assert [t.message_id for t in first.delivered()] == [message_id_of(m1)]


def test_sigterm_exits_0_and_restart_works(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    m1 = make_message(subject="before sigterm")
    assert d.sendmail(["-i", "-f", SENDER, RCPT], m1).rc == 0
    sh.wait_for(1)
    d.wait_queue_empty()
    d.stop(timeout=5)                     # asserts exit status 0

    d.start()                             # sockets left behind must not block a restart
    m2 = make_message(subject="after restart")
    assert d.sendmail(["-i", "-f", SENDER, RCPT], m2).rc == 0
    wait_until(lambda: sh.find(message_id_of(m2)), 15, what="m2 delivered")
    d.wait_queue_empty()


def test_sigterm_during_delivery_exits_0_and_keeps_the_message(daemon, smarthost):
    sh = smarthost()
    sh.hold()                             # delivery in progress, no answer to the dot
    d = daemon(sh)
    msg = make_message(subject="in flight at sigterm")
    assert d.sendmail(["-i", "-f", SENDER, RCPT], msg).rc == 0
    wait_until(lambda: sh.in_data == 1, 10, what="the transaction to reach the smarthost")

    d.stop(timeout=8)
    # Not acknowledged by the smarthost, so it must still be queued.
    q = d.queue_json()
    assert len(q) == 1 and q[0]["recipients"][0]["status"] == "pending", q

    wait_until(lambda: sh.in_data == 0, 5, what="the smarthost to see the session end")
    sh.release()
    d.start()
    wait_until(lambda: sh.find(message_id_of(msg)), 15, what="delivery after restart")
    d.wait_queue_empty()
    # The interrupted transaction never got its 250: one copy.
    assert len(sh.find(message_id_of(msg))) == 1

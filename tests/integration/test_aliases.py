"""Local recipients: aliases_file (recursive, loop-safe, no commands or
files ever run), then admin_address; mail to root from cron reaches a person."""
import os
import time

from mrtest import make_message, quote

SENDER = "cron@web1.example.com"


def write_aliases(d, text):
    path = os.path.join(d.dir, "aliases")
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)
    return path


ALIASES = """# system aliases
postmaster: root
root: ops@example.com,
      admin
admin: "|/bin/touch {marker}", /var/log/mail.dump, :include:/etc/more,
       boss@example.com
loop1: loop2
loop2: loop1
selfish: selfish, self@example.com
"""


def deliveries(sh):
    return sorted(r for t in sh.delivered() for r in t.rcpt_tos)


def test_root_reaches_people_through_aliases(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh, overrides={"admin_address": quote("it@example.com")}, start=False)
    marker = os.path.join(d.dir, "command-ran")
    write_aliases(d, ALIASES.format(marker=marker))
    d.start()
    r = d.sendmail(["-i", "-f", SENDER, "postmaster"], make_message(subject="cron output"))
    assert r.rc == 0, r
    sh.wait_for(1, timeout=20)
    d.wait_queue_empty()
    assert deliveries(sh) == ["boss@example.com", "ops@example.com"]
    outs = d.outcomes(status="sent")
    assert {o["orig_to"] for o in outs} == {"<postmaster>"}
    # the command, file and include targets were refused and never run
    assert not os.path.exists(marker)
    log = d.log_text()
    assert "refused" in log and "/var/log/mail.dump" in log and ":include:" in log


def test_unknown_local_user_and_loops_go_to_admin_address(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh, overrides={"admin_address": quote("it@example.com")}, start=False)
    write_aliases(d, ALIASES.format(marker="/nonexistent"))
    d.start()
    assert d.wait_for_log(r"alias loop1 loops back to itself")
    for rcpt in ("www-data", "loop1"):
        assert d.sendmail(["-i", "-f", SENDER, rcpt], make_message(subject=rcpt)).rc == 0
    sh.wait_for(2, timeout=20)
    assert deliveries(sh) == ["it@example.com", "it@example.com"]


def test_self_reference_keeps_the_name_local(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh, overrides={"admin_address": quote("it@example.com")}, start=False)
    write_aliases(d, ALIASES.format(marker="/nonexistent"))
    d.start()
    assert d.sendmail(["-i", "-f", SENDER, "selfish"], make_message(subject="self")).rc == 0
    sh.wait_for(1, timeout=20)
    assert deliveries(sh) == ["it@example.com", "self@example.com"]


def test_without_admin_address_local_names_are_qualified(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    assert d.sendmail(["-i", "-f", SENDER, "root"], make_message(subject="no admin")).rc == 0
    sh.wait_for(1, timeout=20)
    assert deliveries(sh) == ["root@relay.test"]


def test_aliases_file_change_is_picked_up_without_reload(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh, start=False)
    write_aliases(d, "root: first@example.com\n")
    d.start()
    assert d.sendmail(["-i", "-f", SENDER, "root"], make_message(subject="one")).rc == 0
    sh.wait_for(1, timeout=20)
    # a different size: the change is seen whatever the clock's granularity
    write_aliases(d, "root: second@example.com\n")
    assert d.sendmail(["-i", "-f", SENDER, "root"], make_message(subject="two")).rc == 0
    sh.wait_for(2, timeout=20)
    assert [t.rcpt_tos for t in sh.delivered()] == [["first@example.com"], ["second@example.com"]]


def test_duplicate_targets_are_delivered_once(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh, start=False)
    write_aliases(d, "root: ops@example.com\nadmin: ops@example.com\n")
    d.start()
    r = d.sendmail(["-i", "-f", SENDER, "root", "admin", "ops@example.com"], make_message(subject="dups"))
    assert r.rc == 0
    sh.wait_for(1, timeout=20)
    assert deliveries(sh) == ["ops@example.com"]

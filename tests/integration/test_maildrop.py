"""No loss when the daemon is down: sendmail writes into the maildrop,
mailrelayd imports it at start and while running (inotify), bad drops are
quarantined, and when nothing can be stored sendmail exits 75.  A user
other than root reaching the maildrop through the setgid client, which
needs the system configuration, is tested in test_trust_client.py."""
import os
import re
import subprocess
import threading

from mrtest import make_message, quote, to_crlf, wait_until

SENDER = "sender@example.org"
RCPT = "rcpt@example.net"


def maildrop_files(d):
    md = os.path.join(d.spool, "maildrop")
    return sorted(f for f in os.listdir(md)) if os.path.isdir(md) else []


def test_twenty_messages_while_down_all_arrive_after_start(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    d.stop()
    msgs = [make_message(subject="offline %d" % i, body="line\n.\n..dots %d\n" % i) for i in range(20)]
    results = [None] * 20

    def one(i):
        results[i] = d.sendmail(["-i", "-f", SENDER, RCPT], msgs[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for r in results:
        assert r.rc == 0 and r.err == b"", r
    files = maildrop_files(d)
    assert len(files) == 20 and not any(f.startswith(".") for f in files), files

    d.start()
    sh.wait_for(20, timeout=30)
    d.wait_queue_empty()
    assert sorted(t.content for t in sh.delivered()) == sorted(to_crlf(m) for m in msgs)
    assert maildrop_files(d) == []
    accepted = [r for r in d.accepted() if r.get("via") == "maildrop"]
    assert len(accepted) == 20
    assert all(r["uid"] == str(os.getuid()) for r in accepted)


def test_drop_written_while_running_is_imported(daemon, smarthost, workdir):
    # a client whose config names a socket nobody listens on, sharing the
    # spool: it falls back to the maildrop, and inotify brings it in
    sh = smarthost()
    d = daemon(sh)
    other = os.path.join(workdir, "client.conf")
    text = d.config_text.replace(d.submit_sock, os.path.join(workdir, "nobody-here.sock"))
    with open(other, "w") as f:
        f.write(text)
    d.client_conf = other
    msg = make_message(subject="dropped while running")
    r = d.sendmail(["-i", "-f", SENDER, RCPT], msg)
    assert r.rc == 0, r
    t = sh.wait_for(1, timeout=20)[0]        # well before the 60 s rescan
    assert t.content == to_crlf(msg)
    assert d.wait_for_record(via="maildrop", timeout=10)
    wait_until(lambda: maildrop_files(d) == [], 10, what="an empty maildrop")


def test_bad_drop_is_quarantined_and_the_daemon_goes_on(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    d.stop()
    md = os.path.join(d.spool, "maildrop")
    with open(os.path.join(md, "garbage"), "wb") as f:
        f.write(b"this is not a drop file\n")
    with open(os.path.join(md, "norcpt"), "wb") as f:
        f.write(b"mailrelay-drop 1\nsender\ta@b\nbody\t7BIT\n\nSubject: x\r\n\r\nx\r\n")
    good = make_message(subject="good one")
    assert d.sendmail(["-i", "-f", SENDER, RCPT], good).rc == 0
    d.start()
    sh.wait_for(1, timeout=20)
    assert [t.content for t in sh.delivered()] == [to_crlf(good)]
    q = os.path.join(d.spool, "quarantine")
    wait_until(lambda: os.path.isdir(q) and sorted(os.listdir(q)) == ["garbage", "norcpt"], 10,
               what="both bad drops in quarantine")
    assert maildrop_files(d) == []
    assert d.wait_for_log(r"maildrop/garbage: not a valid drop")
    assert d.alive


def test_nothing_can_be_stored_exits_75(daemon, workdir):
    d = daemon(start=False)
    conf = os.path.join(workdir, "nospool.conf")
    text = d.config_text.replace(quote(d.spool), quote(os.path.join(workdir, "no-such-spool")))
    with open(conf, "w") as f:
        f.write(text)
    d.client_conf = conf
    r = d.sendmail(["-i", "-f", SENDER, RCPT], make_message(subject="nowhere"))
    assert r.rc == 75, r
    lines = r.err.decode().strip().splitlines()
    assert len(lines) == 1 and "maildrop" in lines[0] and "cannot connect" in lines[0], lines
    assert not os.path.exists(os.path.join(workdir, "no-such-spool"))


def test_full_maildrop_leaves_nothing_half_written(daemon, workdir):
    # a read-only maildrop stands for a full or read-only disk
    if os.geteuid() == 0:
        # root ignores modes: use a tiny tmpfs-like limit instead via RLIMIT_FSIZE
        import resource
        d = daemon(start=False)
        msg = make_message(subject="too big for the limit", body="x" * 200000)

        def limit():
            resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
            import signal
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

        p = subprocess.run([d.build.sendmail, "-C", d.conf, "-i", "-f", SENDER, RCPT], input=msg,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=limit, timeout=20)
        assert p.returncode == 75, p
        assert maildrop_files(d) == []
    else:
        d = daemon(start=False)
        os.chmod(os.path.join(d.spool, "maildrop"), 0o500)
        r = d.sendmail(["-i", "-f", SENDER, RCPT], make_message(subject="read-only"))
        assert r.rc == 75, r
        assert maildrop_files(d) == []


def test_a_drop_committed_before_a_crash_is_not_imported_twice(daemon, smarthost):
    """The state a SIGKILL leaves between a drop's commit and its removal
    (at start the drops are committed before the event loop removes them):
    the message queued and its drop still in maildrop/.  Made exactly: the
    drop is saved before the daemon imports it and put back once it is
    queued.  The next start removes the drop, which the queued message
    names, instead of queueing it a second time."""
    sh = smarthost(start=False)                # keep what is queued in the queue
    d = daemon(sh)
    d.stop()
    msg = make_message(subject="dropped once")
    r = d.sendmail(["-i", "-f", SENDER, RCPT], msg)
    assert r.rc == 0, r
    (name,) = maildrop_files(d)
    path = os.path.join(d.spool, "maildrop", name)
    st = os.stat(path)
    with open(path, "rb") as f:
        saved = f.read()

    d.start()
    wait_until(lambda: maildrop_files(d) == [] and len(d.queue_json()) == 1, what="the drop imported")
    (m,) = d.queue_json()
    assert "drop\t%s\n" % name in d.envelope_text(m["id"])
    d.kill()
    with open(path, "wb") as f:                 # the drop as the crash left it
        f.write(saved)
    os.chown(path, st.st_uid, st.st_gid)
    os.chmod(path, st.st_mode & 0o7777)

    sh.start()
    d.start()
    d.wait_for_log(r"maildrop/%s: already queued as %s \(queued before a crash\); removed"
                   % (re.escape(name), m["id"]))
    sh.wait_for(1)
    d.wait_queue_empty()
    assert maildrop_files(d) == []
    assert [t.content for t in sh.delivered()] == [to_crlf(msg)]
    assert len([a for a in d.accepted() if a.get("via") == "maildrop"]) == 1


def test_a_lost_250_to_the_dot_does_not_queue_the_message_twice(daemon, smarthost):
    """The daemon commits a submission and is killed before its 250 reaches
    sendmail, which then writes the message to the maildrop, under the
    name it sent in MAIL (X-MAILDROP=).  Made exactly: a message queued
    through the socket, then the same message dropped while the daemon is
    down, the drop renamed to the name the queued message records.  The
    next start removes the drop instead of queueing it again."""
    sh = smarthost(start=False)
    d = daemon(sh)
    msg = make_message(subject="the 250 lost")
    r = d.sendmail(["-i", "-f", SENDER, RCPT], msg)
    assert r.rc == 0, r
    qid = d.accepted_id(SENDER)
    name = re.search(r"^drop\t(\S+)$", d.envelope_text(qid), re.M).group(1)
    d.kill()
    r = d.sendmail(["-i", "-f", SENDER, RCPT], msg)      # the daemon is down: the maildrop
    assert r.rc == 0, r
    (dropped,) = maildrop_files(d)
    md = os.path.join(d.spool, "maildrop")
    os.rename(os.path.join(md, dropped), os.path.join(md, name))

    sh.start()
    d.start()
    d.wait_for_log(r"maildrop/%s: already queued as %s \(queued before a crash\); removed"
                   % (re.escape(name), qid))
    sh.wait_for(1)
    d.wait_queue_empty()
    assert [t.content for t in sh.delivered()] == [to_crlf(msg)]
    assert maildrop_files(d) == []


def test_a_drop_name_claimed_by_another_user_is_imported_all_the_same(daemon, smarthost):
    """X-MAILDROP= is the client's word: a local user could name another
    user's drop in MAIL.  A queued message only stands for a drop of its own
    submitter: the drop of another owner under that name is imported and
    delivered, not removed."""
    sh = smarthost(start=False)
    d = daemon(sh)
    mine = make_message(subject="claims a name")
    r = d.sendmail(["-i", "-f", SENDER, RCPT], mine)
    assert r.rc == 0, r
    qid = d.accepted_id(SENDER)
    name = re.search(r"^drop\t(\S+)$", d.envelope_text(qid), re.M).group(1)
    d.kill()
    theirs = make_message(subject="someone else's drop")
    r = d.sendmail(["-i", "-f", SENDER, RCPT], theirs)    # the daemon is down: the maildrop
    assert r.rc == 0, r
    (dropped,) = maildrop_files(d)
    md = os.path.join(d.spool, "maildrop")
    os.rename(os.path.join(md, dropped), os.path.join(md, name))
    os.chown(os.path.join(md, name), 65534, -1)            # another user's drop, same name

    sh.start()
    d.start()
    sh.wait_for(2)
    d.wait_queue_empty()
    assert sorted(t.content for t in sh.delivered()) == sorted([to_crlf(mine), to_crlf(theirs)])
    assert not any("already queued" in line for line in d.log_lines())
    assert [a["uid"] for a in d.accepted() if a.get("via") == "maildrop"] == ["65534"]

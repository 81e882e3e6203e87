"""The control socket (lib/ctlproto.h): `mailrelay flush [ID...]` and
`sendmail -q` make deferred mail due now; `hold`, `release` and `delete`
act on single messages; ids are validated; who may change the queue is
decided from the peer's credentials; the protocol refuses what it does not
understand with a clear line."""
import json
import os
import re
import socket
import subprocess

from mrtest import client_env, free_port, make_message, one_line, wait_until, require_root

SENDER = "app@example.org"
RCPT = "rcpt@example.net"


def deferred_message(d, sh, subject="deferred"):
    """Submit one message the smarthost defers once; return its queue id."""
    sh.rcpt_replies = {RCPT: ["450 4.2.0 try later"]}
    r = d.sendmail(["-i", "-f", SENDER, RCPT], make_message(subject=subject))
    assert r.rc == 0, r
    qid = d.accepted_id(SENDER)
    d.wait_for_record(id=qid, status="deferred")
    return qid


def long_retry(daemon, sh):
    # the next attempt is an hour away: only a flush brings it back
    return daemon(sh, overrides={"retry_schedule": ["1h"]})


def control(d, request):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(d.control_sock)
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    return out.decode().splitlines()


def test_flush_retries_deferred_mail_now(daemon, smarthost):
    sh = smarthost()
    d = long_retry(daemon, sh)
    qid = deferred_message(d, sh)
    assert sh.delivered() == []
    r = d.mailrelay(["flush"])
    assert r.rc == 0, r
    assert r.out_text.strip() == "1 message(s) in the queue, all due now"
    sh.wait_for(1)
    d.wait_for_record(id=qid, status="sent")
    d.wait_for_log(r"control: uid=%d: flush of the whole queue" % os.getuid())


def test_flush_one_id_and_errors(daemon, smarthost):
    sh = smarthost()
    d = long_retry(daemon, sh)
    qid = deferred_message(d, sh)
    # lower case is accepted and normalised
    r = d.mailrelay(["flush", qid.lower()])
    assert r.rc == 0, r
    assert r.out_text.splitlines() == ["%s due now" % qid, "1 message(s) due now"]
    sh.wait_for(1)
    d.wait_for_log(r"%s: flushed by uid=" % qid)
    # gone from the queue now: a clear error, exit 65
    d.wait_queue_empty()
    r = d.mailrelay(["flush", qid])
    assert r.rc == 65, r
    assert r.out_text.strip() == "%s not in the queue" % qid
    assert one_line(r.err_text) == "mailrelay: flush: 1 of 1 message(s) not in the queue"
    # a malformed id is refused before anything is sent, never used as a path
    for bad in ("../../etc/passwd", "6B0391", "6B03923FBC3B700G"):
        r = d.mailrelay(["flush", bad])
        assert r.rc == 64, r
        assert "is not a queue id" in one_line(r.err_text)


def test_flush_with_the_daemon_down(daemon, smarthost):
    d = daemon(smarthost())
    d.stop()
    r = d.mailrelay(["flush"])
    assert r.rc == 69, r
    assert "is mailrelayd running?" in one_line(r.err_text)
    r = d.sendmail(["-q"], b"")
    assert r.rc == 69, r
    assert "is mailrelayd running?" in one_line(r.err_text)


def test_sendmail_q_flushes(daemon, smarthost):
    sh = smarthost()
    d = long_retry(daemon, sh)
    qid = deferred_message(d, sh)
    r = d.sendmail(["-q"], b"")
    assert r.rc == 0 and r.out == b"" and r.err == b"", r
    d.wait_for_record(id=qid, status="sent")
    # an interval is accepted (one flush), queue selectors are not
    assert d.sendmail(["-q30m"], b"").rc == 0
    r = d.sendmail(["-qIABC"], b"")
    assert r.rc == 64 and "-qIABC is not supported" in one_line(r.err_text), r


def test_other_users_may_not_flush(daemon, smarthost):
    require_root("running the client as another user")
    sh = smarthost()
    d = long_retry(daemon, sh)
    qid = deferred_message(d, sh)
    os.chmod(d.conf, 0o644)
    for argv in ([d.build.mailrelay, "-c", d.conf, "flush"], [d.build.sendmail, "-C", d.conf, "-q"]):
        p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + argv,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=client_env(), timeout=20)
        assert p.returncode == 77, p
        assert "permission denied" in one_line(p.stderr.decode()), p
    d.wait_for_log(r"control: uid=65534: flushing the queue refused")
    assert sh.delivered() == []
    assert [m["id"] for m in d.queue_json()] == [qid]


def test_protocol_refuses_what_it_does_not_understand(daemon, smarthost):
    d = daemon(smarthost())
    assert control(d, b"BOGUS\n")[-1] == 'ERR 64 unknown request "BOGUS"'
    assert control(d, b"HOLD\n")[-1] == "ERR 64 HOLD needs at least one queue id"
    assert control(d, b"DELETE\n")[-1] == "ERR 64 DELETE needs at least one queue id (or ALL)"
    assert control(d, b"FLUSH ../x\n")[-1].startswith("ERR 64 \"../x\" is not a queue id")
    assert control(d, b"FLUSH  \n")[-1] == "ERR 64 arguments must be separated by single spaces"
    assert control(d, b"FLUSH \x01\n")[-1].startswith("ERR 64 request holds a control")
    assert control(d, b"X" * 5000)[-1].startswith("ERR 64 request longer than")
    # several requests on one connection, each answered
    lines = control(d, b"flush\nFLUSH 0000000000000000\n")
    assert lines[0].startswith("OK ")
    assert lines[-1] == "ERR 65 1 of 1 message(s) not in the queue"
    assert d.alive


def test_hold_keeps_a_message_from_delivery_until_released(daemon, smarthost):
    sh = smarthost()
    d = long_retry(daemon, sh)
    qid = deferred_message(d, sh)
    r = d.mailrelay(["hold", qid])
    assert r.rc == 0, r
    assert r.out_text.splitlines() == ["%s held" % qid, "1 message(s) held"]
    d.wait_for_log(r"%s: held by uid=%d" % (qid, os.getuid()))
    # held: the listing says so, and neither a flush nor a restart sends it
    (m,) = d.queue_json()
    assert m["held"] is True
    assert "%s!" % qid in d.mailrelay(["queue"]).out_text
    assert d.mailrelay(["flush"]).rc == 0
    d.restart()
    import time
    time.sleep(1.5)
    assert sh.delivered() == []
    assert d.queue_json()[0]["held"] is True       # kept across the restart
    r = d.mailrelay(["release", qid])
    assert r.rc == 0, r
    assert r.out_text.splitlines() == ["%s released" % qid, "1 message(s) released"]
    d.wait_for_record(id=qid, status="sent")       # due at once, not in an hour
    d.wait_queue_empty()


def test_delete_removes_messages_unsent(daemon, smarthost):
    sh = smarthost()
    d = long_retry(daemon, sh)
    first = deferred_message(d, sh, "first")
    second = deferred_message(d, sh, "second")
    r = d.mailrelay(["delete", first])
    assert r.rc == 0, r
    # the files go with the next spool commit, a moment after the answer
    wait_until(lambda: [m["id"] for m in d.queue_json()] == [second], what="the deletion")
    d.wait_for_log(r"%s: deleted by uid=%d" % (first, os.getuid()))
    assert not any(f.startswith(first) for f in d.queue_files())
    third = deferred_message(d, sh, "third")
    r = d.mailrelay(["delete", "--all"])
    assert r.rc == 0, r
    assert r.out_text.splitlines()[-1] == "2 message(s) deleted"
    wait_until(lambda: d.queue_json() == [] and d.queue_files() == [], what="the deletions")
    # nothing was sent, and no notification either: deleting is the admin's decision
    d.mailrelay(["flush"])
    import time
    time.sleep(0.5)
    assert sh.delivered() == []
    del third
    r = d.mailrelay(["delete"])
    assert r.rc == 64 and "give one or more queue ids, or --all" in one_line(r.err_text), r
    r = d.mailrelay(["hold", "x"])
    assert r.rc == 64 and "is not a queue id" in one_line(r.err_text), r


def test_other_users_may_not_change_the_queue(daemon, smarthost):
    require_root("running the client as another user")
    sh = smarthost()
    d = long_retry(daemon, sh)
    qid = deferred_message(d, sh)
    os.chmod(d.conf, 0o644)
    for cmd in (["hold", qid], ["release", qid], ["delete", qid], ["delete", "--all"]):
        p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            d.build.mailrelay, "-c", d.conf] + cmd,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=client_env(), timeout=20)
        assert p.returncode == 77, (cmd, p)
        assert "permission denied" in one_line(p.stderr.decode())
    assert [m["id"] for m in d.queue_json()] == [qid]
    assert d.queue_json()[0]["held"] is False


def test_the_listing_shows_other_users_only_their_own_messages(daemon, smarthost):
    """mailq through the daemon: root sees everything; another user sees
    the messages they submitted and nothing of anyone else's."""
    require_root("running the client as another user")
    sh = smarthost()
    d = long_retry(daemon, sh)
    sh.rcpt_replies = {RCPT: "450 4.2.0 try later", "theirs@example.net": "450 4.2.0 try later"}
    assert d.sendmail(["-i", "-f", "root-secret@example.org", RCPT], make_message(subject="root's")).rc == 0
    os.chmod(d.conf, 0o644)
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    p = subprocess.run(nobody + [d.build.sendmail, "-C", d.conf, "-i", "theirs@example.net"],
                       input=make_message(subject="nobody's"), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=client_env(), timeout=20)
    assert p.returncode == 0, p
    wait_until(lambda: len(d.queue_json()) == 2 and
               all(m["recipients"][0]["attempts"] == 1 for m in d.queue_json()), what="two deferrals")
    assert len(d.queue_json()) == 2                     # root: both
    for argv in ([d.build.mailrelay, "-c", d.conf, "queue", "--json"],
                 [d.build.sendmail, "-C", d.conf, "-bp"]):
        p = subprocess.run(nobody + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=client_env(), timeout=20)
        assert p.returncode == 0, p
        assert b"theirs@example.net" in p.stdout
        assert b"root-secret" not in p.stdout and RCPT.encode() not in p.stdout, p.stdout
    # with the daemon down the spool is not readable for them: a clear refusal
    d.stop()
    p = subprocess.run(nobody + [d.build.mailrelay, "-c", d.conf, "queue"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=client_env(), timeout=20)
    assert p.returncode == 77, p
    assert b"mailrelayd is not running" in p.stderr


def test_show_gives_the_envelope_the_attempts_and_the_header(daemon, smarthost):
    sh = smarthost()
    d = long_retry(daemon, sh)
    qid = deferred_message(d, sh, "shown")
    r = d.mailrelay(["show", qid])
    assert r.rc == 0, r
    out = r.out_text
    assert "Queue ID:    %s" % qid in out
    assert "Sender:      <%s>" % SENDER in out
    assert "<%s>: pending, 1 attempt, next " % RCPT in out
    assert "last reply: 450 4.2.0 try later" in out
    # the failure kind's sentence and hint, from the one table (lib/trouble.h)
    assert "      why:        the smarthost refused the recipient (RCPT TO)\n" in out
    assert "      what to do: the smarthost's reply says why\n" in out
    assert re.search(r"deferred <%s> via 127\.0\.0\.1\[127\.0\.0\.1\]:%d: 450 4\.2\.0 try later"
                     % (re.escape(RCPT), sh.port), out), out
    assert "Subject: shown" in out
    assert "Hello." not in out                      # the body only with --body
    r = d.mailrelay(["show", qid, "--body"])
    assert r.rc == 0 and r.out_text.rstrip().endswith("Hello."), r
    # the history survives a restart (it is in the envelope)
    d.stop()
    r = d.mailrelay(["show", qid])
    assert r.rc == 0, r
    assert "mailrelayd is not running" in r.err_text
    assert "450 4.2.0 try later" in r.out_text and "Subject: shown" in r.out_text
    assert "why:        the smarthost refused the recipient (RCPT TO)" in r.out_text  # kept in the envelope
    sh.rcpt_replies = {RCPT: ["450 4.2.0 try later"]}
    d.start()
    # a restart makes it due: tried again and deferred again.  The daemon keeps no history
    # in memory: it shows the attempt from before the restart (read from the envelope) and
    # the new one, in order, whether that one is written yet or not
    wait_until(lambda: len(d.outcomes(qid, status="deferred")) >= 2, 15,
               what="a second deferral after the restart")
    r = d.mailrelay(["show", qid])
    assert r.rc == 0, r
    tried = re.findall(r"deferred <%s> via 127\.0\.0\.1\[127\.0\.0\.1\]:%d: 450 4\.2\.0 try later"
                       % (re.escape(RCPT), sh.port), r.out_text)
    assert len(tried) == 2, r.out_text
    assert "<%s>: pending, 2 attempts, next " % RCPT in r.out_text
    d.stop()
    r = d.mailrelay(["show", qid])                  # and both are on disk
    assert r.rc == 0 and len(re.findall(r"deferred <%s> via" % re.escape(RCPT), r.out_text)) == 2, r
    d.start()
    r = d.mailrelay(["show", "0000000000000000"])
    assert r.rc == 65 and "is not in the queue" in one_line(r.err_text), r
    r = d.mailrelay(["show", "../../etc/shadow"])
    assert r.rc == 64 and "is not a queue id" in one_line(r.err_text), r


def test_show_explains_a_smarthost_nobody_answers_at(daemon):
    # nothing listens on the smarthost's port: the kind is CONNECT, the reply table says more
    d = daemon(free_port(), overrides={"retry_schedule": ["1h"]})
    r = d.sendmail(["-i", "-f", SENDER, RCPT], make_message(subject="nobody"))
    assert r.rc == 0, r
    qid = d.accepted_id(SENDER)
    d.wait_for_record(id=qid, status="deferred")
    r = d.mailrelay(["show", qid])
    assert r.rc == 0, r
    assert ("      why:        the host answered, but nothing takes connections on that port "
            "(or a firewall rejects them)\n" in r.out_text), r.out_text
    assert ("      what to do: check `port`: 587 for STARTTLS submission, 465 for TLS from the first "
            "byte, 25 between servers\n" in r.out_text), r.out_text


def test_show_of_someone_elses_message_is_refused(daemon, smarthost):
    require_root("running the client as another user")
    sh = smarthost()
    d = long_retry(daemon, sh)
    qid = deferred_message(d, sh)
    os.chmod(d.conf, 0o644)
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        d.build.mailrelay, "-c", d.conf, "show", qid],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=client_env(), timeout=20)
    assert p.returncode == 65, p
    assert p.stdout == b"" and SENDER.encode() not in p.stderr


def test_the_human_listing_reads_like_postfix_mailq(daemon, smarthost):
    """`mailrelay queue`, `mailq` and `sendmail -bp` print the same text: a
    header, per message its id (! when held), size, arrival and sender,
    then each unfinished recipient indented under its last error; a
    summary line; everything within 80 columns."""
    sh = smarthost()
    d = long_retry(daemon, sh)
    assert d.mailrelay(["queue"]).out_text == "Mail queue is empty\n"
    sh.rcpt_replies = {RCPT: "450 4.2.0 <rcpt@example.net>: mailbox temporarily unavailable " + "x" * 80,
                       "second@example.net": "450 4.7.1 greylisted",
                       "x@example.net": "451 4.3.0 later"}
    msg = make_message(subject="listed")
    assert d.sendmail(["-i", "-f", SENDER, RCPT, "second@example.net", "ok@example.net"], msg).rc == 0
    qid = d.accepted_id(SENDER)
    d.wait_for_record(id=qid, to="second@example.net", status="deferred")
    assert d.sendmail(["-i", "-f", "", "x@example.net"], make_message(subject="null")).rc == 0
    wait_until(lambda: len(d.queue_json()) == 2 and
               all(r["attempts"] for m in d.queue_json() for r in m["recipients"]), what="two deferred")
    held = [m["id"] for m in d.queue_json() if m["id"] != qid][0]
    assert d.mailrelay(["hold", held]).rc == 0

    text = d.mailrelay(["queue"]).out_text
    lines = text.split("\n")
    assert lines[0].startswith("-Queue ID-") and "Size" in lines[0] and "Arrival Time" in lines[0]
    assert max(len(l) for l in lines) <= 80, text
    size = d.queue_json()[0]["size"]
    head = re.compile(r"^([0-9A-F]{16})([ !]) +(\d+) (\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d)  (\S+)$")
    m = head.match(lines[1])
    assert m and m.group(1) == qid and m.group(2) == " " and int(m.group(3)) == size, lines[1]
    assert m.group(5) == SENDER
    # the unfinished recipients, each under its last error; the delivered one is not listed
    block = lines[2:lines.index("", 2)]
    assert block[0].startswith(" " * 18 + "(450 4.2.0 <rcpt@example.net>: mailbox") and block[0].endswith(")")
    assert block[1].strip() == RCPT and block[1].startswith(" " * 40)
    assert block[2].strip() == "(450 4.7.1 greylisted)"
    assert block[3].strip() == "second@example.net"
    assert "ok@example.net" not in text
    m = head.match(lines[lines.index("", 2) + 1])
    assert m and m.group(1) == held and m.group(2) == "!" and m.group(5) == "MAILER-DAEMON"
    assert lines[-2] == "-- %d Kbytes in 2 Requests." % ((size + d.queue_json()[1]["size"] + 1023) // 1024)
    assert lines[-1] == ""
    # the same text from mailq and sendmail -bp
    mailq = os.path.join(os.path.dirname(d.build.sendmail), "mailq")
    if not os.path.exists(mailq):
        os.symlink(d.build.sendmail, mailq)
    for argv in ([d.build.sendmail, "-C", d.conf, "-bp"], [mailq, "-C", d.conf]):
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=client_env(), timeout=20)
        assert p.returncode == 0, p
        assert p.stdout.decode() == text


def test_requests_on_one_connection_are_answered_in_order(daemon, smarthost):
    """A change is answered once it is on disk; a request sent behind it on
    the same connection waits for that answer instead of overtaking it."""
    sh = smarthost()
    d = long_retry(daemon, sh)
    qid = deferred_message(d, sh)
    # held, it cannot be in a delivery when the DELETE comes
    lines = control(d, ("HOLD %s\nLIST JSON\nDELETE %s\nSTATUS\n" % (qid, qid)).encode())
    finals = [l for l in lines if not l.startswith("D ")]
    assert finals == ["OK 1 message(s) held", "OK 1 message(s)", "OK 1 message(s) deleted",
                      "OK status"], lines
    listing = lines[lines.index("OK 1 message(s) held") + 1:lines.index("OK 1 message(s)")]
    assert '"held": true' in "".join(listing)
    assert d.queue_json() == []
    assert os.listdir(os.path.join(d.spool, "queue")) == []


def test_a_message_whose_listing_is_longer_than_a_request_line(daemon):
    """A message with 250 long recipients is one LIST JSON line of about
    35 KB: `mailrelay queue --json` prints it whole, once, as valid JSON,
    from the running daemon (never a partial answer followed by the spool
    read offline)."""
    d = daemon()                                   # no smarthost: the message waits
    rcpts = ["recipient-%03d-%s@example.net" % (i, "r" * 90) for i in range(250)]
    r = d.sendmail(["-i", "-f", SENDER] + rcpts, make_message(subject="many"))
    assert r.rc == 0, r
    qid = d.accepted_id(SENDER)
    r = d.mailrelay(["queue", "--json"])
    assert r.rc == 0 and r.err_text == "", r
    (m,) = json.loads(r.out)
    assert m["id"] == qid and [x["address"] for x in m["recipients"]] == rcpts
    r = d.mailrelay(["queue"])
    assert r.rc == 0 and r.err_text == "", r
    assert all(a in r.out_text for a in rcpts)
    r = d.mailrelay(["show", qid])
    assert r.rc == 0 and r.err_text == "", r
    assert rcpts[-1] in r.out_text

"""The sendmail modes besides submitting one message: -bs (SMTP on
stdin/stdout, relayed to the daemon's submit socket), -bv (verify
recipients: the daemon's alias expansion and route choice, nothing sent)
and -bi / newaliases (check aliases_file with the daemon's parser)."""
import os
import re
import subprocess

from mrtest import client_env, dot_stuff, make_message, one_line, quote, run, to_crlf, require_root

SENDER = "sender@example.org"
RCPT = "rcpt@example.net"


def replies(out):
    """Reply codes of the SMTP replies in a -bs transcript (one per reply, multi-line ones once)."""
    codes = []
    for line in out.decode("utf-8", "replace").split("\r\n"):
        if not line:
            continue
        assert re.match(r"^[2-5]\d\d[ -]", line) or re.match(r"^[2-5]\d\d$", line), \
            "not an SMTP reply line: %r" % line
        if len(line) == 3 or line[3] == " ":
            codes.append(int(line[:3]))
    return codes


def write_aliases(d, text):
    path = os.path.join(d.dir, "aliases")
    with open(path, "w") as f:
        f.write(text)
    return path


def bv(d, *args):
    return d.sendmail(["-bv"] + list(args), b"")


def lines(r):
    return r.out.decode().splitlines()


def via(port, name="main"):
    """What -bv says of the first smarthost, with no other one configured."""
    return "via smarthost %s (127.0.0.1:%d)" % (name, port)


# ---------------------------------------------------------------------------
# -bs

def test_bs_piped_dialogue_is_queued_and_relayed(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    msg = make_message(subject="through -bs", body="one\n.\n..two\n")
    dialogue = (b"EHLO client.test\r\nMAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n"
                % (SENDER.encode(), RCPT.encode()))
    dialogue += dot_stuff(to_crlf(msg)) + b"QUIT\r\n"
    r = d.sendmail(["-bs"], dialogue)
    assert r.rc == 0, r
    assert r.err == b"", r
    # the daemon's replies, untranslated: greeting, EHLO, MAIL, RCPT, DATA, end of data, QUIT
    assert replies(r.out) == [220, 250, 250, 250, 354, 250, 221], r.out
    assert r.out.startswith(b"220 relay.test ESMTP"), r.out
    assert re.search(rb"\r\n250 2\.0\.0 Ok: queued as [0-9A-F]{16}\r\n221 ", r.out), r.out
    t = sh.wait_for(1)[0]
    assert t.mail_from == SENDER and t.rcpt_tos == [RCPT]
    assert t.content == to_crlf(msg)
    rec = d.wait_for_record(**{"from": SENDER})
    assert rec["uid"] == str(os.getuid()) and rec["via"] == "unix", rec
    d.wait_queue_empty()


def test_bs_end_of_input_without_quit_still_gets_every_reply(daemon, smarthost):
    # stdin ends right after the final dot: the socket is half-closed and
    # the 250 for the message must still come back before the exit
    sh = smarthost()
    d = daemon(sh)
    msg = make_message(subject="half-close")
    dialogue = (b"EHLO client.test\r\nMAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n"
                % (SENDER.encode(), RCPT.encode())) + dot_stuff(to_crlf(msg))
    r = d.sendmail(["-bs"], dialogue)
    assert r.rc == 0, r
    assert replies(r.out) == [220, 250, 250, 250, 354, 250], r.out
    assert sh.wait_for(1)[0].content == to_crlf(msg)


def _reply(stream):
    """One reply from a -bs process's stdout: (code, [lines])."""
    got = []
    while True:
        line = stream.readline()
        assert line, "-bs closed its output; had %r" % got
        assert line.endswith(b"\r\n"), line
        got.append(line.decode())
        if line[3:4] == b" ":
            return int(line[:3]), got


def test_bs_interactive_as_another_user_keeps_the_uid(daemon, smarthost):
    """Replies come as the dialogue goes (not at the end of the input), and
    the daemon records the uid of the user who ran sendmail -bs."""
    require_root("switching to uid 65534")
    sh = smarthost()
    d = daemon(sh)
    os.chmod(d.conf, 0o644)
    p = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          d.build.sendmail, "-C", d.conf, "-bs"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=client_env())
    try:
        assert _reply(p.stdout)[0] == 220            # before we send a byte

        def cmd(line):
            p.stdin.write(line + b"\r\n")
            p.stdin.flush()
            return _reply(p.stdout)[0]

        assert cmd(b"EHLO client.test") == 250
        assert cmd(b"MAIL FROM:<%s>" % SENDER.encode()) == 250
        assert cmd(b"RCPT TO:<%s>" % RCPT.encode()) == 250
        assert cmd(b"DATA") == 354
        msg = to_crlf(make_message(subject="from uid 65534"))
        p.stdin.write(dot_stuff(msg))
        p.stdin.flush()
        code, text = _reply(p.stdout)
        assert code == 250 and "queued as" in text[0], text
        assert cmd(b"QUIT") == 221
        p.stdin.close()
        assert p.wait(10) == 0
        assert p.stdout.read() == b""
        assert p.stderr.read() == b""
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    rec = d.wait_for_record(**{"from": SENDER})
    assert rec["uid"] == "65534" and rec["via"] == "unix", rec
    assert sh.wait_for(1)[0].content == msg


def test_bs_with_the_daemon_down_answers_421_and_exits_75(daemon):
    d = daemon(start=False)
    r = d.sendmail(["-bs"], b"EHLO client.test\r\nQUIT\r\n")
    assert r.rc == 75, r
    assert r.out == b"421 4.3.0 relay.test mailrelayd is not running; try again later\r\n"
    err = one_line(r.err_text)
    assert "cannot connect to mailrelayd at %s" % d.submit_sock in err, err
    # nothing is left in the maildrop: an SMTP client keeps its message on a 421
    md = os.path.join(d.spool, "maildrop")
    assert not os.path.isdir(md) or os.listdir(md) == []


def test_bs_session_ended_by_the_daemon_with_421_exits_75(daemon):
    d = daemon()
    r = d.sendmail(["-bs"], b"EHLO client.test\r\n" + b"FROBNICATE\r\n" * 30)
    assert r.rc == 75, r
    codes = replies(r.out)
    assert codes[:2] == [220, 250] and codes[-1] == 421, r.out
    assert "421" in one_line(r.err_text)


def test_bs_takes_no_recipient_arguments(daemon):
    d = daemon(start=False)
    r = d.sendmail(["-bs", RCPT], b"")
    assert r.rc == 64, r
    assert "RCPT TO" in one_line(r.err_text)


# ---------------------------------------------------------------------------
# -bv

CHAIN = """postmaster: root
root: admin, ops@example.com
admin: boss@example.com, "|/usr/local/bin/archive {marker}"
backup: |/usr/local/bin/store {marker}
"""


def test_bv_follows_an_alias_chain_like_the_daemon(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh, overrides={"admin_address": quote("it@example.com")}, start=False)
    write_aliases(d, "postmaster: root\nroot: admin, ops@example.com\nadmin: boss@example.com\n")
    d.start()
    r = bv(d, "postmaster")
    assert r.rc == 0, r
    assert r.err == b"", r
    assert lines(r) == [
        "postmaster... deliverable: relayed to <boss@example.com> %s" % via(sh.port),
        "postmaster... deliverable: relayed to <ops@example.com> %s" % via(sh.port),
    ]
    # a local name without an alias goes to admin_address
    r = bv(d, "www-data")
    assert r.rc == 0, r
    assert lines(r) == ["www-data... deliverable: relayed to <it@example.com> %s" % via(sh.port)]
    # and what the daemon does with the same recipients agrees
    assert d.sendmail(["-i", "-f", SENDER, "postmaster", "www-data"], make_message()).rc == 0
    t = sh.wait_for(1)[0]
    assert sorted(t.rcpt_tos) == ["boss@example.com", "it@example.com", "ops@example.com"]


def test_bv_command_alias_is_undeliverable_exit_67(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh, overrides={"admin_address": quote("it@example.com")}, start=False)
    marker = os.path.join(d.dir, "command-ran")
    write_aliases(d, CHAIN.format(marker=marker))
    r = bv(d, "backup")
    assert r.rc == 67, r
    out = lines(r)
    assert out[0] == ('backup... undeliverable: alias backup: target "|/usr/local/bin/store %s" '
                      "refused (mailrelay relays mail; it never runs commands or writes files)" % marker)
    # with no usable target the name stays local: admin_address, as the daemon has it
    assert out[1:] == ["backup... deliverable: relayed to <it@example.com> %s" % via(sh.port)]
    # a chain that meets a refused target: the rest is delivered, the exit is 67
    r = bv(d, "postmaster")
    assert r.rc == 67, r
    assert [l.split(": ", 1)[0] for l in lines(r)] == [
        "postmaster... undeliverable", "postmaster... deliverable", "postmaster... deliverable"]
    assert "|/usr/local/bin/archive" in lines(r)[0]
    assert "<boss@example.com>" in lines(r)[1] and "<ops@example.com>" in lines(r)[2]
    assert not os.path.exists(marker)


def test_bv_full_and_malformed_addresses(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh, start=False)          # -bv needs no daemon
    r = bv(d, '"Ops Team" <ops@example.com>, dev@example.com')
    assert r.rc == 0, r
    assert lines(r) == [
        "ops@example.com... deliverable: relayed to <ops@example.com> %s" % via(sh.port),
        "dev@example.com... deliverable: relayed to <dev@example.com> %s" % via(sh.port),
    ]
    r = bv(d, "ok@example.com", "broken <ops@example.com")
    assert r.rc == 67, r
    assert lines(r) == [
        "ok@example.com... deliverable: relayed to <ok@example.com> %s" % via(sh.port),
        "broken <ops@example.com... undeliverable: malformed address",
    ]
    # no recipient at all is a usage error
    r = bv(d)
    assert r.rc == 64 and "no recipients" in one_line(r.err_text), r


def test_bv_names_the_route_of_the_sender(daemon, smarthost):
    main, billing = smarthost(), smarthost(name="billing")
    d = daemon(smarthosts=[main, billing], start=False,
               extra='route {\n    from = "*@billing.example"\n    smarthost = backup1\n}\n')
    r = bv(d, "-f", "Invoices@BILLING.example", "client@example.net")
    assert r.rc == 0, r
    assert lines(r) == ["client@example.net... deliverable: relayed to <client@example.net> "
                        "via smarthost backup1 (127.0.0.1:%d), route for senders *@billing.example"
                        % billing.port]
    # any other sender: the first smarthost, failing over in order
    r = bv(d, "-f", "cron@web1.example", "client@example.net")
    assert r.rc == 0, r
    assert lines(r) == ["client@example.net... deliverable: relayed to <client@example.net> "
                        "via smarthost main (127.0.0.1:%d), failover to backup1" % main.port]
    # the daemon routes the same way
    d.start()
    assert d.sendmail(["-i", "-f", "invoices@billing.example", "client@example.net"],
                      make_message()).rc == 0
    assert billing.wait_for(1)[0].rcpt_tos == ["client@example.net"]
    assert main.delivered() == []


def test_bv_route_follows_the_sender_the_daemon_stores(daemon, smarthost):
    # a local sender becomes from_address, as the daemon rewrites it: that is what routes see
    main, billing = smarthost(), smarthost(name="billing")
    d = daemon(smarthosts=[main, billing], start=False,
               overrides={"from_address": quote("app@billing.example")},
               extra='route {\n    from = "*@billing.example"\n    smarthost = backup1\n}\n')
    r = bv(d, "-f", "cron", "client@example.net")
    assert r.rc == 0, r
    assert lines(r) == ["client@example.net... deliverable: relayed to <client@example.net> "
                        "via smarthost backup1 (127.0.0.1:%d), route for senders *@billing.example"
                        % billing.port]
    d.start()
    assert d.sendmail(["-i", "-f", "cron", "client@example.net"], make_message()).rc == 0
    t = billing.wait_for(1)[0]
    assert t.mail_from == "app@billing.example" and t.rcpt_tos == ["client@example.net"]
    assert main.delivered() == []


def test_bv_applies_strict_addresses_as_the_daemon_does(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh, overrides={"strict_addresses": "yes"})
    r = bv(d, "a..b@example.com", "ok@example.com")
    assert r.rc == 67, r
    assert lines(r) == [
        "a..b@example.com... undeliverable: bad recipient address syntax: "
        "misplaced dot in the local part (strict_addresses)",
        "ok@example.com... deliverable: relayed to <ok@example.com> %s" % via(sh.port),
    ]
    # the daemon refuses the same address in RCPT TO
    r = d.sendmail(["-bs"], b"EHLO client.test\r\nMAIL FROM:<%s>\r\n"
                           b"RCPT TO:<a..b@example.com>\r\nQUIT\r\n" % SENDER.encode())
    assert r.rc == 0, r
    assert replies(r.out) == [220, 250, 250, 553, 221], r.out


def test_bv_without_smarthost_says_the_mail_is_kept(daemon):
    d = daemon(start=False)
    r = bv(d, "root")
    assert r.rc == 0, r
    assert lines(r) == ["root... deliverable: kept in the queue (no smarthost configured) "
                        "for <root@relay.test>"]


def test_bv_sends_and_stores_nothing(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh, start=False)
    write_aliases(d, CHAIN.format(marker="/nonexistent"))
    d.start()
    before = len([l for l in d.log_lines() if "connection from" in l])
    for args in (["root"], ["backup"], ["x@example.com", "postmaster"], ["-f", SENDER, "bad<"]):
        r = bv(d, *args)
        assert r.rc in (0, 67), r
    assert d.log_lines() and len([l for l in d.log_lines() if "connection from" in l]) == before
    assert d.accepted() == []
    assert d.queue_files() == [] and d.tmp_files() == []
    md = os.path.join(d.spool, "maildrop")
    assert not os.path.isdir(md) or os.listdir(md) == []
    assert sh.all_transactions() == [] and sh.client_sessions() == []


# ---------------------------------------------------------------------------
# newaliases, -bi

def newaliases(d, workdir, args=()):
    link = os.path.join(workdir, "newaliases")
    if not os.path.lexists(link):
        os.symlink(d.build.sendmail, link)
    return run([link, "-C", d.conf] + list(args), b"")


def test_newaliases_counts_a_good_file(daemon, workdir):
    d = daemon(start=False)
    path = write_aliases(d, "# system\npostmaster: root\nroot: ops@example.com,\n"
                            "  boss@example.com\n\nwww-data: root\n")
    r = newaliases(d, workdir)
    assert r.rc == 0, r
    assert r.out_text == "%s: 3 aliases\n" % path
    assert r.err == b""
    # -bi is the same
    r = d.sendmail(["-bi"], b"")
    assert r.rc == 0 and r.out_text == "%s: 3 aliases\n" % path, r


def test_newaliases_reports_syntax_errors_with_line_numbers(daemon, workdir):
    d = daemon(start=False)
    path = write_aliases(d, "postmaster: root\nroot: ops@example.com\n"
                            "this line has no colon\n"
                            "ok: a@example.com\n"
                            "bad name: b@example.com\n")
    r = newaliases(d, workdir)
    assert r.rc == 78, r
    assert r.out == b""
    err = r.err_text.splitlines()
    assert "%s:3: no ':' in alias entry; skipped" % path in err, err
    assert any(l.startswith("%s:5: bad alias name" % path) for l in err), err
    assert err[-1].endswith("%s: 2 malformed entries skipped; the other 3 aliases are in use" % path), err


def test_newaliases_warns_about_refused_targets_and_loops_but_accepts(daemon, workdir):
    d = daemon(start=False)
    path = write_aliases(d, "root: ops@example.com, |/usr/bin/procmail\nloop1: loop2\nloop2: loop1\n")
    r = newaliases(d, workdir)
    assert r.rc == 0, r
    assert r.out_text == "%s: 3 aliases\n" % path
    err = r.err_text
    assert "%s:1: alias root: target \"|/usr/bin/procmail\" refused" % path in err, err
    assert "%s:2: alias loop1 loops back to itself" % path in err, err


def test_newaliases_missing_file_named_in_the_config_is_an_error(daemon, workdir):
    d = daemon(start=False)
    path = os.path.join(d.dir, "aliases")
    assert not os.path.exists(path)
    r = newaliases(d, workdir)
    assert r.rc == 78, r
    err = one_line(r.err_text)
    assert "%s: no such file (aliases_file, %s:" % (path, d.conf) in err, err

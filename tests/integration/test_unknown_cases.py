"""Further behaviour from SPEC.md that users rely on: real SMTP clients
(swaks, pipelining, the unix socket), line-ending hygiene, large and
many-recipient messages, sender handling, the queue listing with the
daemon stopped, and never losing a message."""

import datetime
import json
import os
import re
import shutil
import smtplib
import socket
import subprocess

from mrtest import (RawSMTP, client_env, current_user, dot_stuff, make_message, message_id_of,
                    strip_angle, to_crlf, wait_until)

SENDER = "sender@example.org"
RCPT = "rcpt@example.net"


def _swaks(port, path, rcpt):
    swaks = shutil.which("swaks")
    assert swaks, "swaks is required for the integration tests (apt-get install swaks)"
    p = subprocess.run([swaks, "--server", "127.0.0.1", "--port", str(port),
                        "--from", SENDER, "--to", rcpt, "--helo", "client.test",
                        "--data", "@" + path, "--timeout", "10", "--silent", "2"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30, env=client_env())
    assert p.returncode == 0, (p.stdout, p.stderr)


def test_swaks_submission_over_tcp(daemon, smarthost, workdir):
    sh = smarthost()
    reference = smarthost(name="reference")
    d = daemon(sh)
    path = os.path.join(workdir, "swaks.eml")
    with open(path, "wb") as f:
        f.write(make_message(subject="from swaks", body="hello\n.\n..dots\n"))

    # What swaks sends, as a plain SMTP server records it...
    _swaks(reference.port, path, RCPT)
    sent = reference.wait_for(1)[0].content
    # ...must be exactly what the relay hands on.
    _swaks(d.tcp_port, path, RCPT)
    t = sh.wait_for(1)[0]
    assert t.content == sent
    assert t.mail_from == SENDER and t.rcpt_tos == [RCPT]
    assert d.wait_for_record(**{"from": SENDER})["via"] == "smtp"
    d.wait_queue_empty()


def test_pipelined_smtp_session(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    msg = to_crlf(make_message(subject="pipelined", to=("one@example.net", "two@example.net"),
                               body="a\n.\n.b\n..c\n"))
    r = RawSMTP(socket.AF_INET, ("127.0.0.1", d.tcp_port))
    try:
        assert r.reply()[0] == 220
        code, lines = r.cmd("EHLO client.test")
        assert code == 250
        assert "PIPELINING" in [l.split()[0].upper() for l in lines[1:] if l.strip()]
        assert r.cmd("RCPT TO:<one@example.net>")[0] == 503          # no MAIL yet
        assert 500 <= r.cmd("FROBNICATE now")[0] <= 502
        assert r.cmd("NOOP")[0] == 250
        r.send(b"MAIL FROM:<%s>\r\nRCPT TO:<one@example.net>\r\n"
               b"RCPT TO:<two@example.net>\r\nDATA\r\n" % SENDER.encode())
        assert [r.reply()[0] for _ in range(4)] == [250, 250, 250, 354]
        r.send(dot_stuff(msg))
        assert r.reply()[0] == 250
        assert r.cmd("RSET")[0] == 250
        assert r.cmd("QUIT")[0] == 221
    finally:
        r.close()
    t = sh.wait_for(1)[0]
    assert t.content == msg
    assert sorted(t.rcpt_tos) == ["one@example.net", "two@example.net"]
    d.wait_queue_empty()


class _UnixSMTP(smtplib.SMTP):
    def __init__(self, path, **kw):
        self._path = path
        super().__init__(**kw)

    def _get_socket(self, host, port, timeout):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(self._path)
        return s


def test_smtp_over_the_unix_submit_socket_records_uid(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    msg = to_crlf(make_message(subject="unix socket", body=".\nbody\n"))
    s = _UnixSMTP(d.submit_sock, local_hostname="client.test", timeout=10)
    s.connect("localhost", 25)
    try:
        assert s.ehlo()[0] == 250
        assert s.sendmail(SENDER, [RCPT], msg) == {}
    finally:
        s.quit()
    t = sh.wait_for(1)[0]
    assert t.content == msg
    acc = d.wait_for_record(**{"from": SENDER})
    assert acc["uid"] == str(os.getuid())
    # our sendmail client is via=sendmail; any other program on the socket is via=unix
    assert acc["via"] == "unix"
    d.wait_queue_empty()


def test_queue_listing_with_daemon_stopped_then_delivery_after_restart(daemon, smarthost):
    sh = smarthost()
    # each recipient deferred once by the smarthost (a deferral of the
    # message's own, written), taken at the next try
    sh.rcpt_replies = {"a@example.net": ["450 4.2.0 mailbox busy"], "b@example.net": ["450 4.2.0 mailbox busy"]}
    d = daemon(sh, overrides={"retry_schedule": ["1h"]})
    msg = make_message(subject="waits in the queue", to=("a@example.net", "b@example.net"))
    before = datetime.datetime.now(datetime.timezone.utc)
    r = d.sendmail(["-i", "-f", SENDER, "a@example.net", "b@example.net"], msg)
    assert r.rc == 0, r
    qid = d.accepted_id(SENDER)
    assert re.fullmatch(r"[0-9A-F]{16}", qid)
    d.wait_for_record(id=qid, to="a@example.net", status="deferred")
    d.wait_for_record(id=qid, to="b@example.net", status="deferred")
    d.stop()

    assert d.queue_files() == ["%s.env" % qid, "%s.msg" % qid]
    q = d.queue_json()                    # read from the spool: no daemon
    assert [m["id"] for m in q] == [qid]
    m = q[0]
    arrival = datetime.datetime.fromisoformat(m["arrival"])
    assert arrival.tzinfo is not None
    assert before - datetime.timedelta(seconds=5) <= arrival <= \
        datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=5)
    size = m["size"]
    assert strip_angle(m["sender"]) == SENDER
    assert m["held"] is False
    assert sorted(strip_angle(x["address"]) for x in m["recipients"]) == \
        ["a@example.net", "b@example.net"]
    for x in m["recipients"]:
        assert x["status"] == "pending"
        assert x["attempts"] == 1
        assert "450 4.2.0 mailbox busy" in x["last_reply"]
        assert "next_attempt" in x and "orig" in x

    d.start()
    sh.wait_for(1, timeout=15)
    d.wait_queue_empty()
    assert sh.delivered()[0].content == to_crlf(msg)
    assert sorted(sh.delivered()[0].rcpt_tos) == ["a@example.net", "b@example.net"]
    # the size listed is what was stored and then delivered (our Received: field included)
    assert size == len(sh.delivered()[0].raw)


def test_without_smarthost_mail_is_kept(daemon, smarthost):
    d = daemon(None)
    msg = make_message(subject="no smarthost yet")
    r = d.sendmail(["-i", "-f", SENDER, RCPT], msg)
    assert r.rc == 0, r
    q = d.queue_json()
    assert len(q) == 1 and q[0]["recipients"][0]["status"] == "pending"
    d.stop()

    sh = smarthost()
    d.write_config([sh])
    d.start()
    assert sh.wait_for(1, timeout=15)[0].content == to_crlf(msg)
    d.wait_queue_empty()


def test_sendmail_with_daemon_down_never_loses_the_message(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    d.stop()
    msg = make_message(subject="daemon down")
    r = d.sendmail(["-i", "-f", SENDER, RCPT], msg)
    # accepted into the maildrop: the daemon delivers it once it runs
    assert r.rc == 0, r
    d.start()
    assert sh.wait_for(1, timeout=15)[0].content == to_crlf(msg)
    d.wait_queue_empty()


def test_line_endings_are_normalised(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    base = make_message(subject="line endings", body="one\ntwo\n.dot\nthree\n")
    cases = [
        ("crlf", to_crlf(base), to_crlf(base)),
        ("no final newline", base[:-1], to_crlf(base)),
        ("mixed", base.replace(b"one\n", b"one\r\n"), to_crlf(base)),
    ]
    for name, data, _ in cases:
        data = data.replace(b"Subject: line endings", b"Subject: line endings " + name.encode())
        r = d.sendmail(["-i", "-f", SENDER, RCPT], data)
        assert r.rc == 0, (name, r)
    delivered = sh.wait_for(len(cases))
    d.wait_queue_empty()
    got = {re.search(rb"Subject: line endings ([^\r\n]*)", t.content).group(1).decode(): t.content
           for t in delivered}
    for name, _, expected in cases:
        expected = expected.replace(b"Subject: line endings", b"Subject: line endings " + name.encode())
        assert got[name] == expected, name


def test_large_message_is_delivered_exactly(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    # ~2 MB of lines of varying length, many starting with dots, so that
    # line and dot handling cross every internal buffer boundary.
    lines = []
    for i in range(30000):
        n = (i * 37) % 120
        lead = ("", ".", "..", ".")[i % 4] if i % 3 else ""
        lines.append(lead + ("%06d" % i) + "z" * n)
        if i % 1000 == 0:
            lines.append(".")
    msg = make_message(subject="large", body="\n".join(lines) + "\n")
    assert len(msg) > 2000000
    r = d.sendmail(["-i", "-f", SENDER, RCPT], msg, timeout=60)
    assert r.rc == 0, r
    t = sh.wait_for(1, timeout=30)[0]
    assert len(t.content) == len(to_crlf(msg))
    assert t.content == to_crlf(msg)
    d.wait_queue_empty()


def test_many_recipients_each_get_one_copy(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    rcpts = ["user%02d@example.net" % i for i in range(30)]
    msg = make_message(subject="many recipients", to=("list@example.net",))
    r = d.sendmail(["-i", "-f", SENDER] + rcpts, msg)
    assert r.rc == 0, r
    acc = d.wait_for_record(**{"from": SENDER})
    assert acc["nrcpt"] == "30"
    wait_until(lambda: len(d.outcomes(acc["id"], status="sent")) == 30, 20,
               what="30 sent log lines")
    d.wait_queue_empty()
    got = [a for t in sh.find(message_id_of(msg)) for a in t.rcpt_tos]
    assert sorted(got) == rcpts


def test_null_sender(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    msg = make_message(subject="null sender")
    r = d.sendmail(["-i", "-f", "<>", RCPT], msg)
    assert r.rc == 0, r
    t = sh.wait_for(1)[0]
    assert t.mail_from == ""
    assert t.content == to_crlf(msg)
    acc = d.wait_for_record(**{"from": ""})
    assert acc["from"] == "<>"
    d.wait_queue_empty()


def test_default_envelope_sender_is_login_at_hostname(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    msg = make_message(subject="default sender")
    r = d.sendmail(["-i", RCPT], msg)
    assert r.rc == 0, r
    t = sh.wait_for(1)[0]
    assert t.mail_from == "%s@relay.test" % current_user()
    assert t.content == to_crlf(msg)
    d.wait_queue_empty()


def test_r_is_an_alias_of_f(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    r = d.sendmail(["-i", "-r", "bounces@example.org", RCPT], make_message(subject="-r"))
    assert r.rc == 0, r
    assert sh.wait_for(1)[0].mail_from == "bounces@example.org"
    d.wait_queue_empty()


def test_bcc_header_never_leaves_even_without_t(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    msg = make_message(subject="bcc without -t", bcc=("hidden@example.net",))
    r = d.sendmail(["-i", "-f", SENDER, RCPT, "hidden@example.net"], msg)
    assert r.rc == 0, r
    t = sh.wait_for(1)[0]
    assert sorted(t.rcpt_tos) == sorted([RCPT, "hidden@example.net"])
    assert t.content == to_crlf(msg.replace(b"Bcc: hidden@example.net\n", b""))
    d.wait_queue_empty()


def test_queue_json_of_an_empty_queue(daemon):
    d = daemon()
    r = d.mailrelay(["queue", "--json"])
    assert r.rc == 0, r
    assert json.loads(r.out) == []


def test_check_config_accepts_c_after_the_command(daemon, smarthost):
    d = daemon(smarthost(start=False), start=False)
    r = subprocess.run([d.build.mailrelay, "check-config", "-c", d.conf], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20, env=client_env())
    assert r.returncode == 0, r

"""Several smarthosts: failover in order, back-off of a failing one,
routes by sender, and add_header."""
from mrtest import free_port, make_message, quote, smarthost_opts, split_received, to_crlf

SENDER = "sender@example.org"
RCPT = "rcpt@example.net"


def test_first_smarthost_refuses_connections_second_delivers(daemon, smarthost):
    dead = free_port()
    sh2 = smarthost()
    d = daemon(smarthosts=[("first", smarthost_opts(dead)), ("second", smarthost_opts(sh2.port))])
    msg = make_message(subject="failover")
    r = d.sendmail(["-i", "-f", SENDER, RCPT], msg)
    assert r.rc == 0, r
    qid = d.accepted_id(SENDER)
    sent = d.wait_for_record(id=qid, to=RCPT, status="sent", timeout=20)
    assert sent["relay"] == "127.0.0.1[127.0.0.1]:%d" % sh2.port
    # the failover is one attempt, not a deferral
    assert sent["attempts"] == "1"
    assert [o["status"] for o in d.outcomes(qid, to=RCPT)] == ["sent"]
    assert d.wait_for_log(r"%s: smarthost first failed; trying second" % qid)
    assert [t.content for t in sh2.delivered()] == [to_crlf(msg)]
    d.wait_queue_empty()


def test_failing_smarthost_is_backed_off_not_retried_per_message(daemon, smarthost):
    dead = free_port()
    sh2 = smarthost()
    d = daemon(smarthosts=[("first", smarthost_opts(dead)), ("second", smarthost_opts(sh2.port))],
               overrides={"retry_schedule": ["1h"]})
    for i in range(5):
        r = d.sendmail(["-i", "-f", SENDER, RCPT], make_message(subject="backoff %d" % i))
        assert r.rc == 0, r
        sh2.wait_for(i + 1, timeout=20)
    d.wait_queue_empty()
    # only the first message probed the dead smarthost; the others went straight to the second
    failovers = [l for l in d.log_lines() if "smarthost first failed; trying second" in l]
    assert len(failovers) == 1, failovers
    connects = [l for l in d.log_lines() if "connecting" in l and ":%d" % dead in l]
    assert len(connects) == 1, connects


def test_all_smarthosts_down_defers_then_delivers(daemon, smarthost):
    p1, p2 = free_port(), free_port()
    d = daemon(smarthosts=[("first", smarthost_opts(p1)), ("second", smarthost_opts(p2))])
    msg = make_message(subject="all down")
    r = d.sendmail(["-i", "-f", SENDER, RCPT], msg)
    assert r.rc == 0, r
    qid = d.accepted_id(SENDER)
    deferred = d.wait_for_record(id=qid, to=RCPT, status="deferred", timeout=20)
    assert "Connection refused" in deferred["text"]
    assert deferred["attempts"] == "1"
    sh = smarthost(port=p2)
    sent = d.wait_for_record(id=qid, to=RCPT, status="sent", timeout=30)
    assert int(sent["attempts"]) >= 2
    assert [t.content for t in sh.delivered()] == [to_crlf(msg)]


def test_route_sends_a_sender_through_its_smarthost(daemon, smarthost):
    sh_main, sh_a = smarthost(name="main"), smarthost(name="routed")
    d = daemon(smarthosts=[("main", smarthost_opts(sh_main.port)), ("adom", smarthost_opts(sh_a.port))],
               extra='route {\n    from = "*@a.example"\n    smarthost = "adom"\n}')
    r1 = d.sendmail(["-i", "-f", "app@a.example", RCPT], make_message(subject="routed"))
    r2 = d.sendmail(["-i", "-f", "cron@b.example", RCPT], make_message(subject="default"))
    assert r1.rc == 0 and r2.rc == 0
    sh_a.wait_for(1, timeout=20)
    sh_main.wait_for(1, timeout=20)
    assert [t.mail_from for t in sh_a.delivered()] == ["app@a.example"]
    assert [t.mail_from for t in sh_main.delivered()] == ["cron@b.example"]


def test_routed_sender_does_not_fail_over(daemon, smarthost):
    dead = free_port()
    sh_main = smarthost()
    d = daemon(smarthosts=[("main", smarthost_opts(sh_main.port)), ("adom", smarthost_opts(dead))],
               extra='route {\n    from = "*@a.example"\n    smarthost = "adom"\n}')
    r = d.sendmail(["-i", "-f", "app@a.example", RCPT], make_message(subject="strict route"))
    assert r.rc == 0
    qid = d.accepted_id("app@a.example")
    d.wait_for_record(id=qid, to=RCPT, status="deferred", timeout=20)
    assert sh_main.delivered() == []


def test_add_header_is_prepended(daemon, smarthost):
    sh = smarthost()
    opts = smarthost_opts(sh.port, add_header=[quote("X-Mailer-Host: web1"), quote("X-Env: prod")])
    d = daemon(smarthosts=[("main", opts)])
    msg = make_message(subject="extra headers")
    assert d.sendmail(["-i", "-f", SENDER, RCPT], msg).rc == 0
    t = sh.wait_for(1, timeout=20)[0]
    added = b"X-Mailer-Host: web1\r\nX-Env: prod\r\n"
    assert t.raw.startswith(added)
    received, rest = split_received(t.raw[len(added):])
    assert received is not None and rest == to_crlf(msg)
    d.wait_queue_empty()


def test_failover_when_the_first_smarthost_fails_tls(daemon, smarthost):
    # the first one offers no STARTTLS while tls = required: on to the second
    sh1, sh2 = smarthost(name="no-tls"), smarthost(name="second")
    d = daemon(smarthosts=[("first", smarthost_opts(sh1.port, tls="required")),
                           ("second", smarthost_opts(sh2.port))])
    msg = make_message(subject="failover on TLS")
    assert d.sendmail(["-i", "-f", SENDER, RCPT], msg).rc == 0
    t = sh2.wait_for(1, timeout=20)[0]
    assert t.content == to_crlf(msg)
    assert sh1.delivered() == []
    assert [c for s in sh1.client_sessions() for c, _ in s.commands if c == "MAIL"] == []


def test_failover_when_the_first_smarthost_fails_auth(daemon, smarthost):
    # username set but the first one offers no AUTH: on to the second
    sh1, sh2 = smarthost(name="no-auth"), smarthost(name="second")
    d = daemon(smarthosts=[("first", smarthost_opts(sh1.port, username=quote("joe"),
                                                    password=quote("pw"),
                                                    auth_allow_plaintext="yes")),
                           ("second", smarthost_opts(sh2.port))])
    msg = make_message(subject="failover on AUTH")
    assert d.sendmail(["-i", "-f", SENDER, RCPT], msg).rc == 0
    sh2.wait_for(1, timeout=20)
    assert sh1.delivered() == []
    assert d.wait_for_log(r"does not offer AUTH")


def test_helo_name(daemon, smarthost):
    sh = smarthost()
    d = daemon(smarthosts=[("main", smarthost_opts(sh.port, helo_name=quote("web1.example.com")))])
    assert d.sendmail(["-i", "-f", SENDER, RCPT], make_message(subject="helo name")).rc == 0
    sh.wait_for(1, timeout=20)
    assert [s.helo for s in sh.greeted_sessions()] == ["web1.example.com"]


class _HeloOnlyServer:
    """A plain SMTP server of the 1990s: 502 to EHLO, HELO only."""

    def __init__(self):
        import socket
        import threading
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.received = []
        self.dialogue = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            f = c.makefile("rb")
            c.sendall(b"220 old.example ready\r\n")
            data = None
            try:
                for raw in f:
                    line = raw.rstrip(b"\r\n")
                    if data is not None:
                        if line == b".":
                            self.received.append(b"".join(data))
                            data = None
                            c.sendall(b"250 ok\r\n")
                        else:
                            data.append((line[1:] if line.startswith(b".") else line) + b"\r\n")
                        continue
                    verb = line.split(b" ")[0].upper()
                    self.dialogue.append(verb.decode())
                    if verb == b"EHLO":
                        c.sendall(b"502 command not recognized\r\n")
                    elif verb == b"DATA":
                        data = []
                        c.sendall(b"354 go ahead\r\n")
                    elif verb == b"QUIT":
                        c.sendall(b"221 bye\r\n")
                        break
                    else:
                        c.sendall(b"250 ok\r\n")
            finally:
                c.close()

    def stop(self):
        self.sock.close()


def test_helo_fallback_when_ehlo_is_refused(daemon):
    srv = _HeloOnlyServer()
    try:
        d = daemon(smarthosts=[("main", smarthost_opts(srv.port))])
        msg = make_message(subject="helo fallback")
        assert d.sendmail(["-i", "-f", SENDER, RCPT], msg).rc == 0
        d.wait_for_record(to=RCPT, status="sent", timeout=20)
        assert [split_received(m)[1] for m in srv.received] == [to_crlf(msg)]
        assert split_received(srv.received[0])[0] is not None
        assert srv.dialogue[:2] == ["EHLO", "HELO"]
    finally:
        srv.stop()


def test_no_helo_fallback_when_turned_off(daemon):
    srv = _HeloOnlyServer()
    try:
        d = daemon(smarthosts=[("main", smarthost_opts(srv.port, helo_fallback="no"))])
        assert d.sendmail(["-i", "-f", SENDER, RCPT], make_message(subject="no fallback")).rc == 0
        rec = d.wait_for_record(to=RCPT, status="deferred", timeout=20)
        assert "EHLO" in rec["text"]
        assert "HELO" not in srv.dialogue
    finally:
        srv.stop()

"""A connection to the smarthost is kept open for the next message
(reuse_time): a burst goes over one connection, one EHLO (and with a real
smarthost one TLS handshake and one AUTH) instead of one per message; it
QUITs once reuse_time passes with nothing to send; and a server that
closes it meanwhile, even just as the next message's MAIL crosses the
close, costs that message nothing: it goes out on a new connection, with
no deferral and no attempt counted."""


from mrtest import make_message, smarthost_opts, wait_until

SENDER = "sender@example.org"
RCPT = "rcpt@example.net"


def send(d, subject):
    r = d.sendmail(["-i", "-f", SENDER, RCPT], make_message(subject=subject, sender=SENDER, to=[RCPT]))
    assert r.rc == 0, r


def sent_once(d, count):
    """count messages sent, each at its first attempt, none deferred."""
    recs = wait_until(lambda: d.outcomes(status="sent") if len(d.outcomes(status="sent")) >= count else None,
                      what="%d messages sent" % count)
    assert len(recs) == count, recs
    assert all(r["attempts"] == "1" for r in recs), recs
    assert d.outcomes(status="deferred") == []


def test_a_burst_goes_over_one_connection(daemon, smarthost):
    sh = smarthost()
    d = daemon(smarthost=("main", smarthost_opts(sh.port, reuse_time="60s")))
    for i in range(5):
        send(d, "burst %d" % i)
        sh.wait_for(i + 1)          # delivered: the connection is idle when the next one comes
    sent_once(d, 5)
    sessions = sh.client_sessions()
    assert len(sessions) == 1, sessions
    s = sessions[0]
    assert s.transactions == 5
    assert s.verbs() == ["EHLO"] + ["MAIL", "RCPT", "DATA"] * 5, s.verbs()
    assert s.closed is None         # still open: reuse_time is a minute


def test_an_idle_connection_quits_after_reuse_time(daemon, smarthost):
    sh = smarthost()
    d = daemon(smarthost=("main", smarthost_opts(sh.port, reuse_time="1s")))
    send(d, "then quiet")
    t = sh.wait_for(1)[0]
    s = t.session
    wait_until(lambda: s.closed is not None, what="the idle connection to close")
    assert s.verbs() == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"], s.verbs()
    # from the smarthost's end of the data, which comes before the 250 the
    # daemon's idle time starts from (not from when this test noticed the
    # message: under load that is later, and the check failed at 0.8997 s)
    assert s.closed - t.time >= 0.9, "QUIT before reuse_time passed"
    sent_once(d, 1)


def test_reuse_time_0_quits_after_each_message(daemon, smarthost):
    sh = smarthost()
    d = daemon(smarthost=("main", smarthost_opts(sh.port, reuse_time="0")))
    for i in range(2):
        send(d, "no reuse %d" % i)
        t = sh.wait_for(i + 1)[i]
        wait_until(lambda: t.session.closed is not None, what="QUIT after the message")
    sessions = sh.client_sessions()
    assert len(sessions) == 2
    assert all(s.verbs() == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"] for s in sessions), sessions
    sent_once(d, 2)


def check_closed_under_the_next_mail(daemon, smarthost, reply):
    sh = smarthost()
    d = daemon(smarthost=("main", smarthost_opts(sh.port, reuse_time="60s")))
    send(d, "first")
    sh.wait_for(1)
    # the server closes the kept connection just as the next MAIL arrives on it
    sh.mail_replies = [reply]
    send(d, "second")
    sh.wait_for(2)
    sent_once(d, 2)
    sessions = sh.client_sessions()
    assert len(sessions) == 2, sessions
    assert sessions[0].verbs() == ["EHLO", "MAIL", "RCPT", "DATA", "MAIL"], sessions[0].verbs()
    assert sessions[1].verbs()[:4] == ["EHLO", "MAIL", "RCPT", "DATA"], sessions[1].verbs()
    d.wait_for_log(r"the connection kept open was closed by the server .*its message goes on a new connection")


def test_a_drop_under_the_next_mail_costs_nothing(daemon, smarthost):
    check_closed_under_the_next_mail(daemon, smarthost, "drop")


def test_a_421_to_the_next_mail_costs_nothing(daemon, smarthost):
    check_closed_under_the_next_mail(daemon, smarthost, "421 4.4.2 idle too long, closing")


def test_a_server_restart_while_idle_costs_nothing(daemon, smarthost):
    """The server goes away while the connection waits: the session ends
    quietly (or, if the next message came first, that message goes on a
    new connection): either way it is sent at its first attempt."""
    sh = smarthost()
    d = daemon(smarthost=("main", smarthost_opts(sh.port, reuse_time="60s")))
    send(d, "before")
    sh.wait_for(1)
    sh.stop()
    sh.start()
    send(d, "after")
    sh.wait_for(2)
    sent_once(d, 2)

"""Native OAuth2 (issue 11; SPEC "AUTH, per smarthost"): the daemon obtains,
caches and renews its own access tokens from a token endpoint and uses them
with XOAUTH2 / OAUTHBEARER.

The token endpoint is tokensrv.TokenEndpoint (HTTPS on loopback with the
test PKI); the smarthost is authsrv.AuthSmarthost, whose valid tokens are
the endpoint's live set of issued tokens.  Everything runs at log_level =
debug, and every test ends by grepping the log for each secret and its
base64 forms."""

import base64
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from authsrv import AuthSmarthost, b64
from mrtest import client_env, make_message, quote, run, smarthost_opts, to_crlf, wait_until
from tokensrv import TokenEndpoint

USER = "relay@contoso.test"
SENDER = "app@example.org"
RCPT = "rcpt@example.net"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"


# ---------------------------------------------------------------------------
# fixtures and helpers

@pytest.fixture
def endpoint(request, pki):
    ep = TokenEndpoint(pki.server_context("good")).start()
    yield ep
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(ep.summary())
    ep.stop()


@pytest.fixture
def oauth_smarthost(request, pki):
    made = []
    request.node._mr_smarthosts = made

    def factory(endpoint, mechanisms=("XOAUTH2", "OAUTHBEARER"), **kw):
        sh = AuthSmarthost(mechanisms=mechanisms, tokens={USER: endpoint.valid_tokens},
                           tls_context=pki.server_context("good"),
                           name="oauth%d" % (len(made) + 1), **kw)
        made.append(sh)
        sh.start()
        return sh

    yield factory
    for sh in made:
        sh.stop()


def write_secret(workdir, name, value, mode=0o600):
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write(value + "\n")
    os.chmod(path, mode)
    return path


def oauth2_section(**keys):
    return "{ " + "; ".join("%s = %s" % (k, quote(v) if k != "grant" and k != "provider" else v)
                            for k, v in keys.items()) + " }"


def oauth_host(pki, sh, endpoint, auth="xoauth2", **oauth2):
    opts = smarthost_opts(sh.port, tls="required", timeout="5s", connect_timeout="3s")
    opts["tls_ca_file"] = quote(pki.ca.cert)
    opts["auth"] = auth
    opts["username"] = quote(USER)
    oauth2.setdefault("client_id", CLIENT_ID)
    oauth2.setdefault("token_url", endpoint.token_url)
    opts["oauth2"] = oauth2_section(**oauth2)
    return opts


def start(daemon, smarthosts, extra="", overrides=None):
    """A daemon whose smarthosts may hold an oauth2 section (rendered by
    render_config as `oauth2 = {...}`, written here as the section it is)."""
    d = daemon(smarthosts=smarthosts, extra=extra, overrides=overrides, start=False)
    text = d.config_text.replace("oauth2 = {", "oauth2 {")
    with open(d.conf, "w") as f:
        f.write(text)
    d.config_text = text
    return d.start()


def submit(d, subject, sender=SENDER):
    msg = make_message(subject=subject, sender=sender, to=(RCPT,))
    r = d.sendmail(["-i", "-f", sender, RCPT], msg)
    assert r.rc == 0, r
    return msg, d.accepted_id(sender)


def sent(d, qid):
    return d.wait_for_record(id=qid, to=RCPT, status="sent", timeout=20)


def delivered_once(sh, msg):
    mine = [t for t in sh.delivered() if t.content == to_crlf(msg)]
    assert len(mine) == 1, "not delivered exactly once: %r" % sh.delivered()
    return mine[0]


def needles(values):
    """Each secret, its base64 forms, and the XOAUTH2 / OAUTHBEARER lines that carry it."""
    out = set()
    for s in values:
        out |= {s, b64(s), b64(s).rstrip("="),
                b64("user=%s\x01auth=Bearer %s\x01\x01" % (USER, s)),
                base64.urlsafe_b64encode(s.encode()).decode().rstrip("=")}
    return {n for n in out if len(n) >= 8}


def assert_no_secret_logged(d, endpoint, sh, extra=()):
    values = set(extra)
    values |= {t for t, _, _ in endpoint.issued}
    values |= set(endpoint.refresh_issued) | set(endpoint.refresh_tokens)
    values |= set(endpoint.clients.values()) | set(endpoint.users.values())
    for r in endpoint.requests():
        for k in ("client_secret", "client_assertion", "refresh_token", "password"):
            if r.form.get(k):
                values.add(r.form[k])
    found = needles(values)
    for ex in sh.auth_exchanges():
        found |= {line for line in ex.secret_lines if len(line) >= 8}
    texts = {"mailrelayd stderr": d.log_text()}
    if d.alive:
        for args in (["status"], ["status", "--json"], ["queue", "--json"]):
            r = d.mailrelay(args)
            texts["mailrelay " + " ".join(args)] = r.out_text + r.err_text
    for where, text in texts.items():
        for n in sorted(found):
            assert n not in text, "%s reveals a secret (%r)" % (where, n)


# ---------------------------------------------------------------------------
# configuration

def test_check_config_show_prints_what_the_preset_filled(build, workdir):
    secret = write_secret(workdir, "m365.secret", "s3cret-value-not-shown")
    conf = os.path.join(workdir, "m.conf")
    with open(conf, "w") as f:
        f.write('spool_dir = "%s"\n'
                'smarthost m365 {\n'
                '  preset = microsoft365\n'
                '  username = "%s"\n'
                '  oauth2 { tenant = "contoso.onmicrosoft.com"; client_id = "%s"\n'
                '           client_secret_file = "%s" }\n'
                '}\n' % (os.path.join(workdir, "spool"), USER, CLIENT_ID, secret))
    from mrtest import run
    r = run([build.mailrelay, "-c", conf, "check-config", "--show"])
    assert r.rc == 0, r
    out = r.out_text
    assert re.search(r'host = "smtp\.office365\.com"\s+# from preset microsoft365', out), out
    assert re.search(r"port = 587\s+# from preset microsoft365", out), out
    assert re.search(r"tls = required\s+# from preset microsoft365", out), out
    assert re.search(r"auth = xoauth2\s+# from preset microsoft365", out), out
    assert re.search(r'token_url = "https://login\.microsoftonline\.com/contoso\.onmicrosoft\.com/'
                     r'oauth2/v2\.0/token"\s+# default of provider microsoft', out), out
    assert re.search(r'scope = "https://outlook\.office365\.com/\.default"', out), out
    assert "s3cret-value-not-shown" not in out


def test_client_secret_file_readable_by_others_is_refused(build, workdir, daemon, pki):
    secret = write_secret(workdir, "client.secret", "cs-world-readable", mode=0o644)
    opts = smarthost_opts(2525, tls="required")
    opts.update(auth="xoauth2", username=quote(USER),
                oauth2=oauth2_section(client_id=CLIENT_ID, token_url="https://localhost:1/token",
                                      client_secret_file=secret))
    d = daemon(smarthosts=[("main", opts)], start=False)
    with open(d.conf, "w") as f:
        f.write(d.config_text.replace("oauth2 = {", "oauth2 {"))
    from mrtest import run
    r = run([build.mailrelayd, "-c", d.conf, "-f"], timeout=10)
    assert r.rc == 78, r
    line = [l for l in r.err_text.splitlines() if "client_secret_file" in l]
    assert line, r.err_text
    assert re.search(r"mailrelay\.conf:\d+: client_secret_file: %s is readable by others "
                     r"\(mode 0644\)" % re.escape(secret), line[0]), line
    assert "cs-world-readable" not in r.err_text


# ---------------------------------------------------------------------------
# each grant delivers

def test_client_credentials_with_secret(daemon, workdir, pki, endpoint, oauth_smarthost):
    endpoint.clients[CLIENT_ID] = "cs-" + os.urandom(8).hex()
    sh = oauth_smarthost(endpoint)
    secret = write_secret(workdir, "client.secret", endpoint.clients[CLIENT_ID])
    d = start(daemon, [("m365", oauth_host(pki, sh, endpoint, client_secret_file=secret,
                                                scope="https://outlook.office365.com/.default"))])
    msg, qid = submit(d, "client credentials")
    sent(d, qid)
    delivered_once(sh, msg)
    reqs = endpoint.requests(grant="client_credentials")
    assert len(reqs) == 1 and reqs[0].status == 200, endpoint.summary()
    assert reqs[0].form["scope"] == "https://outlook.office365.com/.default"
    ok = sh.auth_exchanges(success=True)
    assert len(ok) == 1 and ok[0].mechanism == "XOAUTH2" and ok[0].user == USER, ok
    assert ok[0].secret == endpoint.issued[0][0]
    d.wait_for_log(r"smarthost m365: OAuth2 access token obtained, valid for 3600s")
    assert_no_secret_logged(d, endpoint, sh)


def test_client_credentials_with_certificate_assertion(daemon, pki, endpoint, oauth_smarthost):
    endpoint.cert_clients[CLIENT_ID] = pki.client.cert
    sh = oauth_smarthost(endpoint)
    d = start(daemon, [("m365", oauth_host(pki, sh, endpoint, auth="oauthbearer",
                                                client_certificate=pki.client.cert,
                                                client_key=pki.client.key))])
    msg, qid = submit(d, "certificate credential")
    sent(d, qid)
    delivered_once(sh, msg)
    reqs = endpoint.requests(grant="client_credentials")
    assert len(reqs) == 1 and reqs[0].status == 200, endpoint.summary()
    assert getattr(reqs[0], "assertion_ok", False), reqs[0].why
    assert "client_secret" not in reqs[0].form
    ok = sh.auth_exchanges(success=True)
    assert len(ok) == 1 and ok[0].mechanism == "OAUTHBEARER", ok
    assert_no_secret_logged(d, endpoint, sh)


def test_password_grant(daemon, workdir, pki, endpoint, oauth_smarthost):
    endpoint.users[USER] = "pw-" + os.urandom(8).hex()
    sh = oauth_smarthost(endpoint)
    pw = write_secret(workdir, "user.pw", endpoint.users[USER])
    opts = oauth_host(pki, sh, endpoint, grant="password")
    opts["password_file"] = quote(pw)
    d = start(daemon, [("app", opts)])
    msg, qid = submit(d, "password grant")
    sent(d, qid)
    delivered_once(sh, msg)
    reqs = endpoint.requests(grant="password")
    assert len(reqs) == 1 and reqs[0].status == 200 and reqs[0].form["username"] == USER, \
        endpoint.summary()
    assert_no_secret_logged(d, endpoint, sh)


def test_refresh_token_rotation_written_back(daemon, workdir, pki, endpoint, oauth_smarthost):
    endpoint.rotate = True
    endpoint.lifetime = 2
    first = endpoint._new_refresh()
    sh = oauth_smarthost(endpoint)
    rt = write_secret(workdir, "m365.refresh", first)
    d = start(daemon, [("m365", oauth_host(pki, sh, endpoint, refresh_token_file=rt))])
    msg, qid = submit(d, "delegated one")
    sent(d, qid)
    with open(rt) as f:
        now_in_file = f.read().strip()
    assert now_in_file in endpoint.refresh_issued[1:], endpoint.summary()
    assert oct(os.stat(rt).st_mode & 0o777) == "0o600"
    # the next token (renewed at 80% of its 2s) comes from the rotated refresh token,
    # and each later one from the one rotated before it
    wait_until(lambda: len(endpoint.requests(grant="refresh_token")) >= 2, timeout=10,
               what="the renewal", alive=d.check_alive)
    msg2, qid2 = submit(d, "delegated two")
    sent(d, qid2)
    reqs = endpoint.requests(grant="refresh_token")
    assert all(r.status == 200 for r in reqs), endpoint.summary()
    assert reqs[0].form["refresh_token"] == first
    for i in range(1, len(reqs)):
        assert reqs[i].form["refresh_token"] == endpoint.refresh_issued[i], endpoint.summary()
    d.wait_for_log(r"smarthost m365: the token endpoint rotated the refresh token; .* rewritten")
    assert_no_secret_logged(d, endpoint, sh)


# ---------------------------------------------------------------------------
# life cycle

def test_token_renewed_in_background_before_expiry(daemon, workdir, pki, endpoint,
                                                  oauth_smarthost):
    """At 80% of its lifetime the token is renewed by a timer while no mail
    flows; the next delivery then asks the endpoint nothing and no AUTH
    fails."""
    endpoint.clients[CLIENT_ID] = "cs-" + os.urandom(8).hex()
    endpoint.lifetime = 8
    sh = oauth_smarthost(endpoint)
    secret = write_secret(workdir, "client.secret", endpoint.clients[CLIENT_ID])
    d = start(daemon, [("m365", oauth_host(pki, sh, endpoint, client_secret_file=secret))])
    msg, qid = submit(d, "first")
    sent(d, qid)
    issued_at = endpoint.issued[0][1]
    wait_until(lambda: len(endpoint.requests(status=200)) >= 2, timeout=15,
               what="the renewal in the background", alive=d.check_alive)
    renewal = endpoint.requests()[1]
    # about 80% of the lifetime, before expiry, with no session open meanwhile
    assert issued_at + 5.5 < renewal.time < issued_at + 8, (issued_at, renewal.time)
    assert len(sh.delivered()) == 1 and sh.in_data == 0
    d.wait_for_log(r"smarthost m365: renewing the OAuth2 access token before it expires")
    n = len(endpoint.requests())
    t0 = time.time()
    msg2, qid2 = submit(d, "second, with the renewed token")
    sent(d, qid2)
    t1 = time.time()
    assert [r for r in endpoint.requests() if t0 <= r.time <= t1] == [], endpoint.summary()
    assert len(endpoint.requests()) >= n
    assert sh.auth_exchanges(success=False) == [], sh.auth_exchanges()
    assert sh.auth_exchanges(success=True)[-1].secret == endpoint.issued[1][0]
    assert_no_secret_logged(d, endpoint, sh)


def test_failing_renewal_backs_off_and_stops_at_expiry(daemon, workdir, pki, endpoint,
                                                       oauth_smarthost):
    """An endpoint that fails the renewal gets a few requests spaced by a
    growing wait, none after the token expired while no mail flows; the
    next delivery asks again and goes through."""
    endpoint.clients[CLIENT_ID] = "cs-" + os.urandom(8).hex()
    endpoint.lifetime = 8
    sh = oauth_smarthost(endpoint)
    secret = write_secret(workdir, "client.secret", endpoint.clients[CLIENT_ID])
    d = start(daemon, [("m365", oauth_host(pki, sh, endpoint, client_secret_file=secret))])
    msg, qid = submit(d, "first")
    sent(d, qid)
    issued_at = endpoint.issued[0][1]
    endpoint.answers = [(503, {"error": "temporarily_unavailable",
                               "error_description": "AADSTS90033: A transient error."})] * 50
    wait_until(lambda: endpoint.requests(status=503), timeout=15,
               what="the failed renewal", alive=d.check_alive)
    # idle until well past expiry: no request after it
    wait_until(lambda: time.time() > issued_at + 10, timeout=15, what="the token to expire")
    failed = endpoint.requests(status=503)
    assert 1 <= len(failed) <= 2, endpoint.summary()
    assert all(issued_at + 5.5 < r.time < issued_at + 8 for r in failed), endpoint.summary()
    if len(failed) == 2:
        assert failed[1].time - failed[0].time >= 0.95, endpoint.summary()
    assert len(endpoint.requests()) == 1 + len(failed), endpoint.summary()
    d.wait_for_log(r"smarthost m365: the OAuth2 token endpoint failed: HTTP 503")
    assert "needs authorisation" not in d.log_text()
    # the endpoint is back: the next delivery asks (the old token has expired)
    endpoint.answers = []
    msg2, qid2 = submit(d, "after the endpoint came back")
    sent(d, qid2)
    assert sh.auth_exchanges(success=False) == [], sh.auth_exchanges()
    assert sh.auth_exchanges(success=True)[-1].secret == endpoint.issued[-1][0]
    assert_no_secret_logged(d, endpoint, sh)


def test_no_renewal_once_a_reload_took_the_oauth2_section_away(daemon, workdir, pki, endpoint,
                                                                oauth_smarthost):
    """The renewal timer asks the current configuration: a smarthost
    without an oauth2 section after a reload gets no token request."""
    endpoint.clients[CLIENT_ID] = "cs-" + os.urandom(8).hex()
    endpoint.lifetime = 4
    sh = oauth_smarthost(endpoint)
    secret = write_secret(workdir, "client.secret", endpoint.clients[CLIENT_ID])
    d = start(daemon, [("m365", oauth_host(pki, sh, endpoint, client_secret_file=secret))])
    msg, qid = submit(d, "one")
    sent(d, qid)
    issued_at = endpoint.issued[0][1]
    with open(d.conf) as f:
        text = f.read()
    text = re.sub(r"\n\s*oauth2 \{[^}]*\}", "", text).replace("auth = xoauth2", "auth = none")
    assert "oauth2" not in text
    with open(d.conf, "w") as f:
        f.write(text)
    n = len(d.log_lines())
    d.hup()
    d.wait_for_log(r"configuration reloaded", after=n)
    assert time.time() < issued_at + 3, "the reload came after the renewal was due"
    # past the renewal (80%) and the expiry of the token: nothing asked
    wait_until(lambda: time.time() > issued_at + 5, timeout=10, what="the token's lifetime")
    assert len(endpoint.requests()) == 1, endpoint.summary()


def test_stale_token_microsoft_535_recovers_in_same_session(daemon, workdir, pki, endpoint,
                                                            oauth_smarthost):
    endpoint.clients[CLIENT_ID] = "cs-" + os.urandom(8).hex()
    sh = oauth_smarthost(endpoint)
    sh.auth_replies = ["535 5.7.3 Authentication unsuccessful [SN4PR0201CA0000.namprd02.prod]"]
    secret = write_secret(workdir, "client.secret", endpoint.clients[CLIENT_ID])
    d = start(daemon, [("m365", oauth_host(pki, sh, endpoint, client_secret_file=secret))])
    msg, qid = submit(d, "stale token, Microsoft")
    sent(d, qid)
    t = delivered_once(sh, msg)
    exchanges = [e for e in sh.auth_exchanges() if e.session is t.session]
    assert [e.success for e in exchanges] == [False, True], exchanges
    assert len(endpoint.requests(status=200)) == 2, endpoint.summary()
    d.wait_for_log(r"the OAuth2 token was rejected \(535 5\.7\.3 .*\); asking for a new one")
    assert_no_secret_logged(d, endpoint, sh)


def test_stale_token_google_334_recovers_in_same_session(daemon, workdir, pki, endpoint,
                                                         oauth_smarthost):
    endpoint.clients[CLIENT_ID] = "cs-" + os.urandom(8).hex()
    sh = oauth_smarthost(endpoint, mechanisms=("XOAUTH2",))
    secret = write_secret(workdir, "client.secret", endpoint.clients[CLIENT_ID])
    opts = oauth_host(pki, sh, endpoint, client_secret_file=secret)
    opts["reuse_time"] = "0"     # the next message on a new connection, which authenticates
    d = start(daemon, [("gmail", opts)])
    msg, qid = submit(d, "first")
    sent(d, qid)
    endpoint.revoke()            # the cached token is now stale at the smarthost
    msg2, qid2 = submit(d, "stale token, Google")
    sent(d, qid2)
    t = delivered_once(sh, msg2)
    exchanges = [e for e in sh.auth_exchanges() if e.session is t.session]
    assert [e.success for e in exchanges] == [False, True], exchanges
    assert exchanges[0].error_answer == "", exchanges[0]      # the empty line Google requires
    assert exchanges[0].reply.startswith("535"), exchanges[0]
    assert len(endpoint.requests(status=200)) == 2, endpoint.summary()
    assert_no_secret_logged(d, endpoint, sh)


def test_restart_reuses_cached_token(daemon, workdir, pki, endpoint, oauth_smarthost):
    endpoint.clients[CLIENT_ID] = "cs-" + os.urandom(8).hex()
    sh = oauth_smarthost(endpoint)
    secret = write_secret(workdir, "client.secret", endpoint.clients[CLIENT_ID])
    d = start(daemon, [("m365", oauth_host(pki, sh, endpoint, client_secret_file=secret))])
    msg, qid = submit(d, "before restart")
    sent(d, qid)
    cache = os.path.join(d.spool, "oauth2-m365.token")
    assert oct(os.stat(cache).st_mode & 0o777) == "0o600"
    d.restart()
    msg, qid = submit(d, "after restart")
    sent(d, qid)
    assert len(endpoint.requests()) == 1, endpoint.summary()
    d.wait_for_log(r"smarthost m365: using the OAuth2 access token kept in the spool")
    assert len(sh.auth_exchanges(success=True)) == 2
    assert_no_secret_logged(d, endpoint, sh)


def test_rotated_refresh_token_survives_kill9(daemon, workdir, pki, endpoint, oauth_smarthost):
    endpoint.rotate = True
    first = endpoint._new_refresh()
    sh = oauth_smarthost(endpoint)
    rt = write_secret(workdir, "m365.refresh", first)
    d = start(daemon, [("m365", oauth_host(pki, sh, endpoint, refresh_token_file=rt))])
    sh.hold()                    # the session waits after the token arrived
    msg, qid = submit(d, "rotation then kill")
    d.wait_for_log(r"smarthost m365: the token endpoint rotated the refresh token")
    d.kill()
    sh.release()
    rotated = endpoint.refresh_issued[-1]
    assert rotated != first
    with open(rt) as f:
        assert f.read().strip() == rotated
    assert first not in endpoint.refresh_tokens            # the old one is dead at the endpoint
    try:                         # the kill may come before the token is kept: force a new request
        os.unlink(os.path.join(d.spool, "oauth2-m365.token"))
    except FileNotFoundError:
        pass
    d.start()
    sent(d, qid)
    reqs = endpoint.requests(grant="refresh_token")
    assert [r.status for r in reqs] == [200, 200], endpoint.summary()
    assert reqs[0].form["refresh_token"] == first
    assert reqs[1].form["refresh_token"] == rotated


# ---------------------------------------------------------------------------
# failures a person must fix

def test_invalid_grant_keeps_mail_queued_others_deliver_status_explains(
        daemon, workdir, pki, endpoint, oauth_smarthost, smarthost):
    sh = oauth_smarthost(endpoint)
    other = smarthost()
    rt = write_secret(workdir, "m365.refresh", "rt-revoked-" + os.urandom(8).hex())
    m365 = oauth_host(pki, sh, endpoint, refresh_token_file=rt)
    d = start(daemon, [("m365", m365), ("other", smarthost_opts(other.port))],
              extra='route { from = "@contoso.test"; smarthost = m365 }')
    msg, qid = submit(d, "through m365", sender="app@contoso.test")
    d.wait_for_record(id=qid, to=RCPT, status="deferred", timeout=15)
    msg2, qid2 = submit(d, "through the other smarthost")
    sent(d, qid2)
    delivered_once(other, msg2)
    q = [m for m in d.queue_json() if m["id"] == qid]
    assert len(q) == 1 and q[0]["recipients"][0]["status"] == "pending", d.queue_json()
    # one line of its own (error level); the deferrals name the relay first
    errors = [l for l in d.log_lines() if l.startswith("mailrelayd: smarthost m365 needs authorisation")]
    assert len(errors) == 1, d.log_text()[-3000:]
    assert "invalid_grant" in errors[0] and "AADSTS70008" in errors[0], errors[0]
    assert "run: mailrelay oauth2 authorize --smarthost m365" in errors[0], errors[0]
    r = d.mailrelay(["status"])
    assert "smarthost m365 needs authorisation" in r.out_text, r
    assert "mailrelay oauth2 authorize --smarthost m365" in r.out_text, r
    js = json.loads(d.mailrelay(["status", "--json"]).out)
    na = {s["name"]: s["needs_authorisation"] for s in js["smarthosts"]}
    assert na["other"] is None and "invalid_grant" in na["m365"], na
    # retried without a new request while nothing changed
    n = len(endpoint.requests())
    d.mailrelay(["flush"])
    wait_until(lambda: len(d.outcomes(qid, status="deferred")) >= 2, timeout=15,
               what="a second deferral")
    assert len(endpoint.requests()) == n, endpoint.summary()
    # a person writes a good refresh token: the next attempt delivers
    good = endpoint._new_refresh()
    write_secret(workdir, "m365.refresh.new", good)
    os.rename(os.path.join(workdir, "m365.refresh.new"), rt)
    d.mailrelay(["flush"])
    sent(d, qid)
    delivered_once(sh, msg)
    assert_no_secret_logged(d, endpoint, sh)


def test_mail_waiting_for_authorisation_is_not_expired(daemon, workdir, pki, endpoint,
                                                       oauth_smarthost, smarthost):
    """max_queue_time does not bounce mail whose smarthost needs a person;
    mail that only a working (but refusing) smarthost could take still
    expires, and the authorised smarthost delivers the kept mail."""
    sh = oauth_smarthost(endpoint)
    other = smarthost()
    other.rcpt_replies = {"busy@example.net": "450 4.2.0 mailbox busy"}
    rt = write_secret(workdir, "m365.refresh", "rt-revoked-" + os.urandom(8).hex())
    d = start(daemon, [("m365", oauth_host(pki, sh, endpoint, refresh_token_file=rt)),
                       ("other", smarthost_opts(other.port))],
              extra='route { from = "@contoso.test"; smarthost = m365 }\n'
                    'route { from = "@example.org"; smarthost = other }',
              overrides={"max_queue_time": "2s", "retry_schedule": ["1s"]})
    msg, qid = submit(d, "waits for a person", sender="app@contoso.test")
    d.wait_for_log(r"^mailrelayd: smarthost m365 needs authorisation")
    busy = make_message(subject="expires", sender=SENDER, to=("busy@example.net",))
    assert d.sendmail(["-i", "-f", SENDER, "busy@example.net"], busy).rc == 0
    qid2 = d.accepted_id(SENDER)
    # the control: a temporary failure through a smarthost that needs no person expires
    d.wait_for_record(id=qid2, to="busy@example.net", status="bounced", timeout=20)
    # the kept one: deferred again after max_queue_time, saying why, never bounced
    d.wait_for_log(r"^mailrelayd: %s: to=<%s>, .*status=deferred \(.*; kept past max_queue_time: "
                   r"smarthost m365 needs authorisation\)" % (qid, RCPT), timeout=20)
    assert d.outcomes(qid, status="bounced") == [], d.log_text()[-3000:]
    q = [m for m in d.queue_json() if m["id"] == qid]
    assert len(q) == 1 and q[0]["recipients"][0]["status"] == "pending", d.queue_json()
    assert "kept past max_queue_time" in q[0]["recipients"][0]["last_reply"], q
    assert [t for t in other.delivered() if t.mail_from == "" and
            "waits for a person" in t.content.decode("utf-8", "replace")] == []
    # a person acts: the kept mail is delivered, not bounced
    good = endpoint._new_refresh()
    write_secret(workdir, "m365.refresh.new", good)
    os.rename(os.path.join(workdir, "m365.refresh.new"), rt)
    d.mailrelay(["flush"])
    sent(d, qid)
    delivered_once(sh, msg)
    assert d.outcomes(qid, status="bounced") == []


def test_needs_authorisation_shown_once_and_with_the_daemon_down(daemon, workdir, pki, endpoint,
                                                                 oauth_smarthost):
    """status says it once; the daemon keeps the state in the spool (0600),
    so status with the daemon down still shows it; it goes once a person
    acted and a token was had."""
    sh = oauth_smarthost(endpoint)
    rt = write_secret(workdir, "m365.refresh", "rt-revoked-" + os.urandom(8).hex())
    d = start(daemon, [("m365", oauth_host(pki, sh, endpoint, refresh_token_file=rt))])
    msg, qid = submit(d, "waits for a person")
    d.wait_for_record(id=qid, to=RCPT, status="deferred", timeout=15)
    r = d.mailrelay(["status"])
    assert r.rc == 0, r
    assert r.out_text.count("smarthost m365 needs authorisation") == 1, r.out_text
    assert "run: mailrelay oauth2 authorize --smarthost m365" in r.out_text, r.out_text
    state = os.path.join(d.spool, "oauth2-m365.state")
    assert oct(os.stat(state).st_mode & 0o777) == "0o600"
    d.stop()
    r = d.mailrelay(["status"])
    assert r.rc == 69 and "mailrelayd is not running" in r.out_text, r
    assert r.out_text.count("smarthost m365 needs authorisation") == 1, r.out_text
    assert "invalid_grant" in r.out_text and \
        "run: mailrelay oauth2 authorize --smarthost m365" in r.out_text, r.out_text
    r = d.mailrelay(["status", "--json"])
    js = json.loads(r.out)
    assert r.rc == 69 and js["running"] is False, r
    na = {s["name"]: s["needs_authorisation"] for s in js["smarthosts"]}
    assert "invalid_grant" in na["m365"], js
    # a person acts while the daemon is down; it starts, asks again and delivers
    write_secret(workdir, "m365.refresh.new", endpoint._new_refresh())
    os.rename(os.path.join(workdir, "m365.refresh.new"), rt)
    d.start()
    sent(d, qid)
    delivered_once(sh, msg)
    d.wait_for_log(r"smarthost m365 needed authorisation when the daemon last ran; asking")
    assert not os.path.exists(state)
    assert "needs authorisation" not in d.mailrelay(["status"]).out_text
    d.stop()
    r = d.mailrelay(["status", "--json"])
    assert [s["needs_authorisation"] for s in json.loads(r.out)["smarthosts"]] == [None], r.out
    assert_no_secret_logged(d, endpoint, sh)


# ---------------------------------------------------------------------------
# the CLI: mailrelay oauth2 authorize | token

def test_authorize_device_code_honours_slow_down(build, daemon, workdir, pki, endpoint,
                                                 oauth_smarthost):
    endpoint.device_steps = ["authorization_pending", "slow_down"]
    sh = oauth_smarthost(endpoint)
    rt = os.path.join(workdir, "m365.refresh")
    opts = oauth_host(pki, sh, endpoint, refresh_token_file=rt, device_url=endpoint.device_url)
    d = daemon(smarthosts=[("m365", opts)], start=False)
    with open(d.conf, "w") as f:
        f.write(d.config_text.replace("oauth2 = {", "oauth2 {"))
    r = run([build.mailrelay, "-c", d.conf, "oauth2", "authorize", "--smarthost", "m365"],
            timeout=30)
    assert r.rc == 0, r
    assert "open\n    https://localhost:%d/device\nand enter the code\n    ABCD-EFGH" % endpoint.port \
        in r.out_text, r.out_text
    polls = endpoint.requests(grant="urn:ietf:params:oauth:grant-type:device_code")
    assert [p.answer.get("error") for p in polls] == ["authorization_pending", "slow_down", None]
    # interval 1s, then 5s more after slow_down (RFC 8628 3.5)
    assert polls[1].time - polls[0].time >= 0.9
    assert polls[2].time - polls[1].time >= 5.9, [p.time for p in polls]
    st = os.stat(rt)
    assert oct(st.st_mode & 0o777) == "0o600" and st.st_uid == os.geteuid()
    with open(rt) as f:
        assert f.read().strip() == endpoint.refresh_issued[-1]
    assert endpoint.refresh_issued[-1] not in r.out_text + r.err_text
    # the daemon then delivers with it
    d.start()
    msg, qid = submit(d, "after authorize")
    sent(d, qid)
    delivered_once(sh, msg)


def test_authorize_code_with_pkce_and_loopback_redirect(build, daemon, workdir, pki, endpoint,
                                                        oauth_smarthost):
    sh = oauth_smarthost(endpoint)
    rt = os.path.join(workdir, "gmail.refresh")
    opts = oauth_host(pki, sh, endpoint, refresh_token_file=rt,
                      authorize_url="https://localhost:%d/auth" % endpoint.port)
    d = daemon(smarthosts=[("gmail", opts)], start=False)
    with open(d.conf, "w") as f:
        f.write(d.config_text.replace("oauth2 = {", "oauth2 {"))
    p = subprocess.Popen([build.mailrelay, "-c", d.conf, "oauth2", "authorize", "--smarthost",
                          "gmail"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=client_env())
    try:
        url = None
        for _ in range(10):
            line = p.stdout.readline().decode()
            if line.strip().startswith("https://localhost:%d/auth?" % endpoint.port):
                url = line.strip()
                break
        assert url, "no authorisation URL printed"
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        assert q["code_challenge_method"] == "S256" and q["response_type"] == "code", q
        assert q["redirect_uri"].startswith("http://127.0.0.1:"), q
        # a redirect with another state is refused
        try:
            urllib.request.urlopen(q["redirect_uri"] + "?state=forged&code=x")
            raise AssertionError("a redirect with a forged state was accepted")
        except urllib.error.HTTPError as e:
            assert e.code == 400
    except BaseException:
        p.kill()
        p.communicate()
        raise
    endpoint.codes["code-123"] = (q["code_challenge"], q["redirect_uri"])
    with urllib.request.urlopen(q["redirect_uri"] + "?state=%s&code=code-123" % q["state"]) as resp:
        assert resp.status == 200
    out, err = p.communicate(timeout=20)
    assert p.returncode == 0, (out, err)
    reqs = endpoint.requests(grant="authorization_code")
    assert len(reqs) == 1 and reqs[0].status == 200, endpoint.summary()
    with open(rt) as f:
        assert f.read().strip() == endpoint.refresh_issued[-1]


def test_oauth2_token_shows_expiry_scopes_audience_never_the_token(daemon, workdir, pki, endpoint,
                                                                   oauth_smarthost):
    endpoint.clients[CLIENT_ID] = "cs-" + os.urandom(8).hex()
    sh = oauth_smarthost(endpoint)
    secret = write_secret(workdir, "client.secret", endpoint.clients[CLIENT_ID])
    d = start(daemon, [("m365", oauth_host(pki, sh, endpoint, client_secret_file=secret,
                                           scope="https://outlook.office365.com/.default"))])
    r = d.mailrelay(["oauth2", "token", "--smarthost", "m365"])
    assert r.rc == 69 and "no access token kept" in r.out_text, r
    msg, qid = submit(d, "one")
    sent(d, qid)
    r = d.mailrelay(["oauth2", "token", "--smarthost", "m365"])
    assert r.rc == 0, r
    assert re.search(r"expires +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(in \d+s", r.out_text), r.out_text
    assert "scopes    https://outlook.office365.com/.default" in r.out_text, r.out_text
    assert "audience  https://outlook.office365.com" in r.out_text, r.out_text
    token = endpoint.issued[-1][0]
    assert token not in r.out_text and token.split(".")[1] not in r.out_text
    assert_no_secret_logged(d, endpoint, sh)


def test_microsoft_replies_are_explained(daemon, workdir, pki, endpoint, oauth_smarthost):
    endpoint.clients[CLIENT_ID] = "cs-" + os.urandom(8).hex()
    sh = oauth_smarthost(endpoint)
    sh.mail_replies = ["550 5.7.60 SMTP; Client does not have permissions to send as this sender"]
    secret = write_secret(workdir, "client.secret", endpoint.clients[CLIENT_ID])
    d = start(daemon, [("m365", oauth_host(pki, sh, endpoint, client_secret_file=secret))])
    msg, qid = submit(d, "send as denied")
    d.wait_for_log(r"550 5\.7\.60 SMTP; Client does not have permissions to send as this sender: "
                   r"the mailbox may not send as this sender: grant it Send As")


def test_smtp_auth_disabled_stops_the_smarthost_without_a_loop(daemon, workdir, pki, endpoint,
                                                             oauth_smarthost):
    endpoint.clients[CLIENT_ID] = "cs-" + os.urandom(8).hex()
    sh = oauth_smarthost(endpoint)
    sh.auth_replies = ["535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is "
                       "disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled"] * 5
    secret = write_secret(workdir, "client.secret", endpoint.clients[CLIENT_ID])
    d = start(daemon, [("m365", oauth_host(pki, sh, endpoint, client_secret_file=secret))])
    msg, qid = submit(d, "auth disabled")
    d.wait_for_log(r"^mailrelayd: smarthost m365 needs authorisation: .*535 5\.7\.139.*"
                   r"Set-CASMailbox -Identity MAILBOX -SmtpClientAuthenticationDisabled \$false")
    d.wait_for_record(id=qid, to=RCPT, status="deferred", timeout=15)
    d.mailrelay(["flush"])
    wait_until(lambda: len(d.outcomes(qid, status="deferred")) >= 2, timeout=15,
               what="a second deferral")
    # one AUTH only, and one token request: the next attempts do not try again
    assert len(sh.auth_exchanges()) == 1, sh.auth_exchanges()
    assert len(endpoint.requests()) == 1, endpoint.summary()
    r = d.mailrelay(["status"])
    assert "smarthost m365 needs authorisation" in r.out_text, r
    q = [m for m in d.queue_json() if m["id"] == qid]
    assert q and q[0]["recipients"][0]["status"] == "pending"


def test_invalid_client_needs_authorisation_until_reload(daemon, workdir, pki, endpoint,
                                                         oauth_smarthost):
    endpoint.clients[CLIENT_ID] = "cs-right-" + os.urandom(8).hex()
    sh = oauth_smarthost(endpoint)
    secret = write_secret(workdir, "client.secret", "cs-wrong-" + os.urandom(8).hex())
    d = start(daemon, [("m365", oauth_host(pki, sh, endpoint, client_secret_file=secret))])
    msg, qid = submit(d, "wrong client secret")
    d.wait_for_record(id=qid, to=RCPT, status="deferred", timeout=15)
    d.wait_for_log(r"^mailrelayd: smarthost m365 needs authorisation: the token endpoint "
                   r"refused the client credentials \(HTTP 401, invalid_client: "
                   r"AADSTS7000215: Invalid client secret provided\.\); mail stays queued; "
                   r"check client_id, the client secret or certificate .* then reload "
                   r"mailrelayd")
    assert sh.auth_exchanges() == []
    # the right secret, and a reload: the next attempt asks again and delivers
    write_secret(workdir, "client.secret", endpoint.clients[CLIENT_ID])
    n = len(d.log_lines())
    d.hup()
    d.wait_for_log(r"configuration reloaded", after=n)
    d.mailrelay(["flush"])
    sent(d, qid)
    delivered_once(sh, msg)
    assert d.mailrelay(["status", "--json"]).out_text.count('"needs_authorisation": null') == 1
    assert_no_secret_logged(d, endpoint, sh)


def test_token_request_goes_through_the_smarthosts_proxy(daemon, workdir, pki, endpoint,
                                                         oauth_smarthost):
    from test_socks import Socks5Proxy
    endpoint.clients[CLIENT_ID] = "cs-" + os.urandom(8).hex()
    sh = oauth_smarthost(endpoint)
    secret = write_secret(workdir, "client.secret", endpoint.clients[CLIENT_ID])
    proxy = Socks5Proxy()
    try:
        opts = oauth_host(pki, sh, endpoint, client_secret_file=secret)
        opts["proxy"] = quote("socks5://127.0.0.1:%d" % proxy.port)
        d = start(daemon, [("m365", opts)])
        msg, qid = submit(d, "through the proxy")
        sent(d, qid)
        delivered_once(sh, msg)
        # the token endpoint by name through the proxy, then the smarthost
        assert (3, "localhost", endpoint.port) in proxy.requests, proxy.requests
        assert (1, "127.0.0.1", sh.port) in proxy.requests or \
            (3, "127.0.0.1", sh.port) in proxy.requests, proxy.requests
    finally:
        proxy.stop()


def test_daemon_descriptors_stay_close_on_exec_with_oauth2(daemon, workdir, pki, endpoint,
                                                           oauth_smarthost):
    """libcurl's connection and its wake-up socket pair carry close-on-exec
    like every other descriptor of the daemon (a password_command of another
    smarthost inherits none)."""
    from test_trust_config import O_CLOEXEC, descriptors
    endpoint.clients[CLIENT_ID] = "cs-" + os.urandom(8).hex()
    sh = oauth_smarthost(endpoint)
    sh.hold()                    # the session stays in DATA, the token request is done
    secret = write_secret(workdir, "client.secret", endpoint.clients[CLIENT_ID])
    d = start(daemon, [("m365", oauth_host(pki, sh, endpoint, client_secret_file=secret))])
    msg, qid = submit(d, "descriptors")
    wait_until(lambda: sh.in_data == 1, 10, what="the delivery to reach DATA", alive=d.check_alive)
    fds = descriptors(d.proc.pid)
    leaked = [(fd, t) for fd, flags, t in fds if not flags & O_CLOEXEC]
    sh.release()
    assert leaked == [], "descriptors an exec would keep: %r" % leaked
    sent(d, qid)


def test_endpoint_5xx_defers_without_needing_a_person(daemon, workdir, pki, endpoint,
                                                      oauth_smarthost):
    endpoint.clients[CLIENT_ID] = "cs-" + os.urandom(8).hex()
    endpoint.answers = [(503, {"error": "temporarily_unavailable",
                               "error_description": "AADSTS90033: A transient error has occurred."})]
    sh = oauth_smarthost(endpoint)
    secret = write_secret(workdir, "client.secret", endpoint.clients[CLIENT_ID])
    d = start(daemon, [("m365", oauth_host(pki, sh, endpoint, client_secret_file=secret))])
    msg, qid = submit(d, "endpoint down for a moment")
    d.wait_for_record(id=qid, to=RCPT, status="deferred", timeout=15)
    d.wait_for_log(r"smarthost m365: the OAuth2 token endpoint failed: HTTP 503, "
                   r"temporarily_unavailable")
    assert "needs authorisation" not in d.log_text()
    d.mailrelay(["flush"])
    sent(d, qid)
    delivered_once(sh, msg)
    assert [r.status for r in endpoint.requests()] == [503, 200], endpoint.summary()


def test_sendmail_links_no_http_json_or_tls_library(build):
    """mailrelay-sendmail runs once per message: libc and libconfuse only."""
    r = run(["ldd", build.sendmail])
    assert r.rc == 0, r
    for lib in ("libcurl", "libjson-c", "libssl", "libcrypto", "libevent"):
        assert lib not in r.out_text, r.out_text


def test_slow_token_endpoint_does_not_stop_the_daemon(daemon, workdir, pki, endpoint,
                                                      oauth_smarthost):
    """While the token request waits, the daemon still accepts mail and answers status."""
    endpoint.clients[CLIENT_ID] = "cs-" + os.urandom(8).hex()
    endpoint.hold = threading.Event()
    sh = oauth_smarthost(endpoint)
    secret = write_secret(workdir, "client.secret", endpoint.clients[CLIENT_ID])
    d = start(daemon, [("m365", oauth_host(pki, sh, endpoint, client_secret_file=secret))])
    try:
        msg, qid = submit(d, "waits for its token")
        wait_until(lambda: len(endpoint.requests()) == 1, 10, what="the token request")
        msg2, qid2 = submit(d, "accepted meanwhile")
        r = d.mailrelay(["status"])
        assert r.rc == 0 and "mailrelayd" in r.out_text, r
        # both answered while the token request was still held: the order
        # of events shows the daemon did not wait for it (the request is
        # released only below)
        assert endpoint.requests()[0].status is None
    finally:
        endpoint.hold.set()
    sent(d, qid)
    sent(d, qid2)
    assert len(endpoint.requests()) == 1, endpoint.summary()   # both sessions shared one request


def test_mailrelay_test_gets_its_own_token_and_sends(daemon, workdir, pki, endpoint, oauth_smarthost):
    """`mailrelay test` with an OAuth2 smarthost: the CLI asks the token
    endpoint itself (the daemon's code, a private spool), sends, and prints
    no secret."""
    endpoint.clients[CLIENT_ID] = "cs-" + os.urandom(8).hex()
    sh = oauth_smarthost(endpoint)
    secret = write_secret(workdir, "client.secret", endpoint.clients[CLIENT_ID])
    d = start(daemon, [("m365", oauth_host(pki, sh, endpoint, client_secret_file=secret))])
    d.stop()                                 # the command needs no daemon
    r = d.mailrelay(["test", "--to", RCPT, "--smarthost", "m365"])
    assert r.rc == 0, r
    assert "auth      using XOAUTH2" in r.out_text, r.out_text
    assert r.out_text.splitlines()[-1].startswith("OK: m365 accepted the message for <%s>" % RCPT)
    assert len(endpoint.requests()) == 1 and len(sh.delivered()) == 1
    for t, _, _ in endpoint.issued:
        assert t not in r.out_text and t not in r.err_text
    assert endpoint.clients[CLIENT_ID] not in r.out_text + r.err_text

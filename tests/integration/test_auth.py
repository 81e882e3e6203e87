"""SMTP AUTH to the smarthost (SPEC "AUTH, per smarthost"): every mechanism,
`auto` choosing the strongest, the secret sources (password, password_file,
password_command), failures deferring the message, no secret in plaintext
unless auth_allow_plaintext = yes, SCRAM's server signature checked, and no
secret ever in the daemon's log (the suite runs it at log_level = debug).

The smarthosts are authsrv.AuthSmarthost: the server side of each mechanism,
recording every AUTH exchange and whether it came over TLS."""

import os
import re
import secrets
import ssl
import stat
import subprocess

import pytest

import authsrv
from authsrv import ALL_MECHANISMS, AuthSmarthost, b64
from mrtest import (assert_no_sanitizer_report, client_env, free_port, line_of, make_message,
                    quote, smarthost_opts, to_crlf, wait_until)

USER = "relay-user@example.org"
SENDER = "sender@example.org"
RCPT = "rcpt@example.net"
QUOTED_KEYS = ("username", "password", "password_file", "password_command")
PASSWORD_MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256")
OAUTH_MECHANISMS = ("XOAUTH2", "OAUTHBEARER")


def new_secret(prefix="pw"):
    return "%s-%s" % (prefix, secrets.token_hex(12))


# ---------------------------------------------------------------------------
# fixtures

class AuthTLS:
    """The certificate the AUTH smarthosts present and what the daemon trusts."""

    def __init__(self, context_factory, ca_file):
        self.server_context = context_factory
        self.ca_file = ca_file


@pytest.fixture(scope="session")
def auth_tls(pki):
    """The server side of STARTTLS for the AUTH tests: conftest's PKI."""
    return AuthTLS(lambda: pki.server_context("good"), pki.ca.cert)


def _broken_tls_context():
    """Offers STARTTLS, answers 220, then every handshake fails (no certificate)."""
    return ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)


@pytest.fixture
def auth_smarthost(request, auth_tls):
    """auth_smarthost(mechanisms=ALL_MECHANISMS, starttls=True|False|"broken",
    credentials=..., tokens=..., plaintext_auth=..., scram_bad_signature=...)
    -> authsrv.AuthSmarthost, started; stopped at teardown."""
    made = []
    request.node._mr_smarthosts = made      # shown by conftest when a test fails

    def factory(mechanisms=ALL_MECHANISMS, starttls=True, **kw):
        if starttls == "broken":
            kw["tls_context"] = _broken_tls_context()
        elif starttls:
            kw["tls_context"] = auth_tls.server_context()
        sh = AuthSmarthost(mechanisms=mechanisms, name="auth%d" % (len(made) + 1), **kw)
        made.append(sh)
        sh.start()
        return sh

    yield factory
    for sh in made:
        sh.stop()


# ---------------------------------------------------------------------------
# helpers

def relay(auth_tls, sh, tls="required", **keys):
    """The daemon's smarthost list: one smarthost `main` pointing at sh with
    the given TLS policy and AUTH keys (username, password, ... are quoted
    here; auth, auth_allow_plaintext are raw)."""
    port = sh.port if isinstance(sh, AuthSmarthost) else sh
    opts = smarthost_opts(port, tls=tls, timeout="5s", connect_timeout="3s")
    if tls != "disabled":
        opts["tls_ca_file"] = quote(auth_tls.ca_file)
    for key, value in keys.items():
        opts[key] = quote(value) if key in QUOTED_KEYS and value is not None else value
    return [("main", opts)]


def submit(d, subject):
    msg = make_message(subject=subject, sender=SENDER, to=(RCPT,))
    r = d.sendmail(["-i", "-f", SENDER, RCPT], msg)
    assert r.rc == 0, r
    return msg, d.accepted_id(SENDER)


def secret_needles(secret_values, user=USER):
    """Strings that must never appear in a log: each secret, its base64,
    and the base64 initial responses that carry it."""
    out = set()
    for s in secret_values:
        out |= {s, b64(s), b64(s).rstrip("="),
                b64("\0%s\0%s" % (user, s)),                        # PLAIN
                b64("%s\0%s\0%s" % (user, user, s)),                # PLAIN with authzid
                b64("user=%s\x01auth=Bearer %s\x01\x01" % (user, s))}   # XOAUTH2
    return out


def assert_no_secret_logged(d, smarthosts, secret_values, extra_text=""):
    """Neither the daemon's whole stderr (all starts, debug level) nor
    `mailrelay queue --json` holds a secret, its base64, or any line the
    client sent that carries it (as the smarthosts recorded them)."""
    needles = secret_needles(secret_values)
    for sh in smarthosts:
        for ex in sh.auth_exchanges():
            needles |= {line for line in ex.secret_lines if len(line) >= 8}
    texts = {"mailrelayd stderr": d.log_text() + extra_text}
    if d.alive:
        r = d.mailrelay(["queue", "--json"])
        texts["mailrelay queue --json"] = r.out_text + r.err_text
    for where, text in texts.items():
        for needle in sorted(needles):
            if needle in text:
                lines = [l for l in text.splitlines() if needle in l]
                raise AssertionError("%s reveals a secret (%r) in:\n%s"
                                     % (where, needle, "\n".join(lines[:5])))


def assert_authenticated_delivery(sh, msg, mechanism, tls=True, user=USER):
    """msg arrived intact through a session that authenticated once with
    `mechanism` (after STARTTLS and the second EHLO when tls), before MAIL."""
    mine = [t for t in sh.delivered() if t.content == to_crlf(msg)]
    assert len(mine) == 1, "message not delivered exactly once: %r" % sh.delivered()
    t = mine[0]
    assert t.tls is tls, t
    session = t.session
    exchanges = [e for e in sh.auth_exchanges() if e.session is session]
    ok = [e for e in exchanges if e.success]
    assert len(ok) == 1, "expected one successful AUTH in the session: %r" % exchanges
    ex = ok[0]
    assert ex.mechanism == mechanism, ex
    assert ex.tls is tls, ex
    if user is not None:
        assert ex.user == user, ex
    verbs = session.verbs()
    first_auth = verbs.index("AUTH")
    last_auth = len(verbs) - 1 - verbs[::-1].index("AUTH")
    assert "MAIL" in verbs[last_auth:] and "MAIL" not in verbs[:first_auth], verbs
    assert verbs[first_auth - 1] == "EHLO", verbs
    if tls:
        assert "STARTTLS" in verbs[:first_auth - 1], verbs
        assert all(enc for v, enc in session.commands if v == "AUTH"), session.commands
    else:
        assert "STARTTLS" not in verbs, verbs
    return ex


def assert_no_auth_no_mail(sh):
    cmds = sh.commands()
    assert "AUTH" not in cmds, "the smarthost received AUTH: %r" % sh.auth_exchanges()
    assert "MAIL" not in cmds and not sh.all_transactions(), cmds
    assert sh.auth_exchanges() == []


def assert_still_queued(d, qid):
    q = [m for m in d.queue_json() if m["id"] == qid]
    assert len(q) == 1, "message %s left the queue: %r" % (qid, d.queue_json())
    rcpts = q[0]["recipients"]
    assert [r["status"] for r in rcpts] == ["pending"], rcpts
    assert rcpts[0]["attempts"] >= 1, rcpts


def deferred(d, qid):
    return d.wait_for_record(id=qid, to=RCPT, status="deferred", timeout=15)


def sent(d, qid):
    return d.wait_for_record(id=qid, to=RCPT, status="sent", timeout=20)


def write_token_script(directory, tokens, name="token.sh"):
    """A password_command: prints tokens[0] on its first run, tokens[1] on
    the second, ..., the last one ever after, then a second line that is not
    part of the secret; each run appends a line to the counter file.
    Returns (script path, counter path)."""
    script = os.path.join(directory, name)
    counter = os.path.join(directory, name + ".runs")
    branches = "".join("  %d) echo '%s' ;;\n" % (i + 1, t) for i, t in enumerate(tokens[:-1]))
    with open(script, "w") as f:
        f.write("#!/bin/sh\n"
                "echo run >> '%s'\n"
                "n=$(wc -l < '%s')\n"
                "case \"$n\" in\n%s  *) echo '%s' ;;\nesac\n"
                "echo 'second line, not the secret'\n"
                % (counter, counter, branches, tokens[-1]))
    os.chmod(script, 0o755)
    return script, counter


def runs(counter):
    try:
        with open(counter) as f:
            return len(f.read().splitlines())
    except FileNotFoundError:
        return 0


# ---------------------------------------------------------------------------
# success

@pytest.mark.parametrize("mechanism", ALL_MECHANISMS)
def test_each_mechanism_over_starttls(daemon, auth_smarthost, auth_tls, mechanism):
    password, token = new_secret("pw"), new_secret("tok")
    sh = auth_smarthost(credentials={USER: password}, tokens={USER: token})
    secret = token if mechanism in OAUTH_MECHANISMS else password
    d = daemon(smarthosts=relay(auth_tls, sh, username=USER, password=secret,
                                auth=mechanism.lower()))
    msg, qid = submit(d, "auth %s" % mechanism)

    rec = sent(d, qid)
    assert rec["attempts"] == "1", rec
    ex = assert_authenticated_delivery(sh, msg, mechanism,
                                       user=None if mechanism == "OAUTHBEARER" else USER)
    if mechanism == "OAUTHBEARER":
        assert ex.user in (None, USER), ex             # a= is optional (RFC 7628)
        if "port" in ex.fields:
            assert ex.fields["port"] == str(sh.port), ex.fields
    if mechanism in ("PLAIN", "LOGIN") + OAUTH_MECHANISMS:
        assert ex.secret == secret, ex
    assert len(sh.auth_exchanges()) == 1, sh.auth_exchanges()
    d.wait_queue_empty()
    assert_no_secret_logged(d, [sh], [password, token])


AUTO_CASES = [
    # (advertised, expected, write "auth = auto" rather than leave auth unset)
    (["LOGIN", "PLAIN", "CRAM-MD5", "SCRAM-SHA-256"], "SCRAM-SHA-256", False),
    (["LOGIN", "PLAIN", "CRAM-MD5", "SCRAM-SHA-256", "XOAUTH2", "OAUTHBEARER"], "SCRAM-SHA-256",
     True),
    (["LOGIN", "PLAIN", "CRAM-MD5"], "CRAM-MD5", False),
    (["LOGIN", "PLAIN"], "PLAIN", True),
    (["OAUTHBEARER", "XOAUTH2", "GSSAPI", "LOGIN"], "LOGIN", False),
]


@pytest.mark.parametrize("advertised, expected, explicit", AUTO_CASES,
                         ids=["%s-from-%s%s" % (c[1], "+".join(c[0]), "-explicit" if c[2] else "")
                              for c in AUTO_CASES])
def test_auto_picks_the_strongest_offered(daemon, auth_smarthost, auth_tls, advertised, expected,
                                          explicit):
    password = new_secret()
    sh = auth_smarthost(mechanisms=advertised, credentials={USER: password},
                        tokens={USER: password})
    keys = {"username": USER, "password": password}
    if explicit:
        keys["auth"] = "auto"
    d = daemon(smarthosts=relay(auth_tls, sh, **keys))
    msg, qid = submit(d, "auto picks %s" % expected)

    sent(d, qid)
    assert_authenticated_delivery(sh, msg, expected)
    assert [e.mechanism for e in sh.auth_exchanges()] == [expected], sh.auth_exchanges()
    assert_no_secret_logged(d, [sh], [password])


def test_no_username_no_auth(daemon, auth_smarthost, auth_tls):
    """AUTH offered but no username configured: mail goes unauthenticated."""
    sh = auth_smarthost()
    d = daemon(smarthosts=relay(auth_tls, sh))
    msg, qid = submit(d, "no auth")
    sent(d, qid)
    t = sh.wait_for(1)[0]
    assert t.content == to_crlf(msg) and t.tls
    assert "AUTH" not in sh.commands() and sh.auth_exchanges() == []


# ---------------------------------------------------------------------------
# rejected credentials

@pytest.mark.parametrize("mechanism", PASSWORD_MECHANISMS)
def test_wrong_password_defers_then_delivers_when_fixed(daemon, auth_smarthost, auth_tls,
                                                        mechanism):
    daemon_pw, server_pw = new_secret("pw"), new_secret("other")
    sh = auth_smarthost(mechanisms=[mechanism], credentials={USER: server_pw})
    d = daemon(smarthosts=relay(auth_tls, sh, username=USER, password=daemon_pw,
                                auth=mechanism.lower()))
    msg, qid = submit(d, "wrong password %s" % mechanism)

    rec = deferred(d, qid)
    assert re.search(r"(?i)authentication failed", rec["text"]), rec
    assert "535" in rec["text"] and "Authentication credentials invalid" in rec["text"], rec
    assert_still_queued(d, qid)
    failed = sh.auth_exchanges(mechanism=mechanism, success=False)
    assert failed and all(e.tls for e in failed), sh.auth_exchanges()
    assert not sh.auth_exchanges(success=True)
    assert "MAIL" not in sh.commands() and not sh.all_transactions()
    if mechanism in ("PLAIN", "LOGIN"):
        assert failed[0].secret == daemon_pw, failed[0]
    assert_no_secret_logged(d, [sh], [daemon_pw, server_pw])

    sh.credentials[USER] = daemon_pw         # the account's password is fixed on the server
    rec = sent(d, qid)
    assert int(rec["attempts"]) >= 2, rec
    assert_authenticated_delivery(sh, msg, mechanism)
    d.wait_queue_empty()
    assert_no_secret_logged(d, [sh], [daemon_pw, server_pw])


def test_temporary_auth_reply_defers(daemon, auth_smarthost, auth_tls):
    password = new_secret()
    sh = auth_smarthost(mechanisms=["PLAIN"], credentials={USER: password})
    sh.auth_replies = ["454 4.7.0 Temporary authentication failure"]
    d = daemon(smarthosts=relay(auth_tls, sh, username=USER, password=password))
    msg, qid = submit(d, "454 to AUTH")

    rec = deferred(d, qid)
    assert re.search(r"(?i)authentication failed", rec["text"]), rec
    assert "454" in rec["text"] and "Temporary authentication failure" in rec["text"], rec
    rec = sent(d, qid)
    assert int(rec["attempts"]) >= 2, rec
    assert_authenticated_delivery(sh, msg, "PLAIN")
    assert_no_secret_logged(d, [sh], [password])


def test_xoauth2_bad_token_defers_with_the_decoded_error(daemon, auth_smarthost, auth_tls):
    daemon_token, server_token = new_secret("tok"), new_secret("good")
    sh = auth_smarthost(mechanisms=["XOAUTH2", "PLAIN"], tokens={USER: server_token})
    d = daemon(smarthosts=relay(auth_tls, sh, username=USER, password=daemon_token,
                                auth="xoauth2"))
    msg, qid = submit(d, "xoauth2 bad token")

    rec = deferred(d, qid)
    text = rec["text"]
    assert re.search(r"(?i)authentication failed", text), rec
    assert "535" in text, rec
    # the server's 334 challenge, base64 JSON, decoded into the reason
    assert re.search(r'status\W{1,6}401', text), rec
    assert authsrv.XOAUTH2_ERROR["scope"] in text, rec
    failed = sh.auth_exchanges(mechanism="XOAUTH2", success=False)
    assert failed and failed[0].secret == daemon_token, sh.auth_exchanges()
    assert failed[0].error_answer == "", \
        "XOAUTH2: the error challenge must be answered with an empty line: %r" % failed[0]
    assert "MAIL" not in sh.commands()
    assert_still_queued(d, qid)
    assert_no_secret_logged(d, [sh], [daemon_token, server_token])

    sh.tokens[USER] = daemon_token           # the server now knows the token
    sent(d, qid)
    assert_authenticated_delivery(sh, msg, "XOAUTH2")
    assert_no_secret_logged(d, [sh], [daemon_token, server_token])


def test_oauthbearer_bad_token_is_answered_with_ctrl_a(daemon, auth_smarthost, auth_tls):
    daemon_token, server_token = new_secret("tok"), new_secret("good")
    sh = auth_smarthost(mechanisms=["OAUTHBEARER", "PLAIN"], tokens={USER: server_token})
    d = daemon(smarthosts=relay(auth_tls, sh, username=USER, password=daemon_token,
                                auth="oauthbearer"))
    msg, qid = submit(d, "oauthbearer bad token")

    rec = deferred(d, qid)
    assert re.search(r"(?i)authentication failed", rec["text"]), rec
    assert "535" in rec["text"], rec
    failed = sh.auth_exchanges(mechanism="OAUTHBEARER", success=False)
    assert failed and failed[0].secret == daemon_token, sh.auth_exchanges()
    assert failed[0].error_answer == "AQ==", \
        "OAUTHBEARER: the error challenge must be answered with ^A (RFC 7628 3.2.3): %r" % failed[0]
    assert "MAIL" not in sh.commands()
    assert_still_queued(d, qid)
    assert_no_secret_logged(d, [sh], [daemon_token, server_token])

    sh.tokens[USER] = daemon_token           # the server now knows the token
    sent(d, qid)
    assert_authenticated_delivery(sh, msg, "OAUTHBEARER", user=None)
    assert_no_secret_logged(d, [sh], [daemon_token, server_token])


def test_scram_wrong_server_signature_defers_without_mail(daemon, auth_smarthost, auth_tls):
    password = new_secret()
    sh = auth_smarthost(mechanisms=["SCRAM-SHA-256", "PLAIN"], credentials={USER: password},
                        scram_bad_signature=True)
    d = daemon(smarthosts=relay(auth_tls, sh, username=USER, password=password,
                                auth="scram-sha-256"))
    msg, qid = submit(d, "scram impostor")

    rec = deferred(d, qid)
    assert re.search(r"(?i)server signature|authentication", rec["text"]), rec
    exchanges = sh.auth_exchanges(mechanism="SCRAM-SHA-256")
    assert exchanges and any(e.proof_ok for e in exchanges), \
        "the client's proof should have been right (only the server's signature is wrong): %r" \
        % exchanges
    for verb in ("MAIL", "RCPT", "DATA"):
        assert verb not in sh.commands(), sh.commands()
    assert not sh.all_transactions()
    assert_still_queued(d, qid)
    assert_no_secret_logged(d, [sh], [password])

    sh.scram_bad_signature = False           # the real server again
    sent(d, qid)
    assert_authenticated_delivery(sh, msg, "SCRAM-SHA-256")
    assert_no_secret_logged(d, [sh], [password])


# ---------------------------------------------------------------------------
# where the secret comes from

def test_password_file_0600(daemon, auth_smarthost, auth_tls, workdir):
    password = new_secret()
    path = os.path.join(workdir, "smarthost.secret")
    with open(path, "w") as f:
        f.write(password + "\n")
    os.chmod(path, 0o600)
    sh = auth_smarthost(mechanisms=["PLAIN", "LOGIN"], credentials={USER: password})
    d = daemon(smarthosts=relay(auth_tls, sh, username=USER, password_file=path))
    msg, qid = submit(d, "password_file")

    sent(d, qid)
    ex = assert_authenticated_delivery(sh, msg, "PLAIN")
    assert ex.secret == password, ex                    # first line, newline stripped
    assert_no_secret_logged(d, [sh], [password])


def test_password_file_readable_by_others_is_refused(daemon, auth_tls, workdir):
    password = new_secret()
    path = os.path.join(workdir, "world-readable.secret")
    with open(path, "w") as f:
        f.write(password + "\n")
    os.chmod(path, 0o644)
    assert os.stat(path).st_mode & stat.S_IROTH
    d = daemon(smarthosts=relay(auth_tls, free_port(), username=USER, password_file=path),
               start=False)

    p = subprocess.run([d.build.mailrelayd, "-c", d.conf, "-f"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=15,
                       env=client_env())
    err = p.stderr.decode("utf-8", "replace")
    assert_no_sanitizer_report(err, "mailrelayd")
    assert p.returncode == 78, (p.returncode, err)
    where = "mailrelay.conf:%d: password_file:" % line_of(d.config_text, "password_file =")
    assert where in err, err
    assert path in err, err
    assert re.search(r"(?i)readable", err), err
    assert password not in err and b64(password) not in err, err


def test_password_command(daemon, auth_smarthost, auth_tls, workdir):
    token = new_secret("cmd")
    script, counter = write_token_script(workdir, [token])
    sh = auth_smarthost(mechanisms=["PLAIN", "LOGIN"], credentials={USER: token})
    d = daemon(smarthosts=relay(auth_tls, sh, username=USER, password_command=script))
    msg, qid = submit(d, "password_command")

    sent(d, qid)
    ex = assert_authenticated_delivery(sh, msg, "PLAIN")
    assert ex.secret == token, ex                       # the first line of stdout only
    assert runs(counter) >= 1
    assert_no_secret_logged(d, [sh], [token])


@pytest.mark.parametrize("mechanism", OAUTH_MECHANISMS)
def test_password_command_runs_again_after_rejection(daemon, auth_smarthost, auth_tls, workdir,
                                                     mechanism):
    """An expired OAuth2 access token: the server says 535 to token A, the
    command's next run prints token B, which the server takes."""
    token_a, token_b = new_secret("expired"), new_secret("fresh")
    script, counter = write_token_script(workdir, [token_a, token_b])
    sh = auth_smarthost(mechanisms=[mechanism], tokens={USER: token_b})
    d = daemon(smarthosts=relay(auth_tls, sh, username=USER, password_command=script,
                                auth=mechanism.lower()))
    msg, qid = submit(d, "token refresh %s" % mechanism)

    sent(d, qid)
    ex = assert_authenticated_delivery(sh, msg, mechanism, user=None)
    assert ex.secret == token_b, ex
    exchanges = sh.auth_exchanges()
    assert [e.secret for e in exchanges if not e.success] and \
        all(e.secret == token_a for e in exchanges if not e.success), exchanges
    assert exchanges[0].secret == token_a and exchanges[0].success is False, exchanges
    assert runs(counter) >= 2, "password_command ran %d time(s)" % runs(counter)
    d.wait_queue_empty()
    assert_no_secret_logged(d, [sh], [token_a, token_b])


# ---------------------------------------------------------------------------
# no secret in plaintext

PLAINTEXT_CASES = [
    # (tls policy, what the smarthost offers for STARTTLS)
    ("disabled", True),              # offered, but the policy says never
    ("opportunistic", False),        # not offered
    ("opportunistic", "broken"),     # offered, the handshake fails, plaintext retry
]


@pytest.mark.parametrize("tls, starttls", PLAINTEXT_CASES,
                         ids=["disabled", "opportunistic-no-starttls",
                              "opportunistic-handshake-fails"])
def test_no_auth_over_plaintext_by_default(daemon, auth_smarthost, auth_tls, tls, starttls):
    password = new_secret()
    sh = auth_smarthost(mechanisms=["PLAIN", "LOGIN"], credentials={USER: password},
                        starttls=starttls, plaintext_auth=True)
    d = daemon(smarthosts=relay(auth_tls, sh, tls=tls, username=USER, password=password))
    msg, qid = submit(d, "no plaintext auth (%s)" % tls)

    rec = deferred(d, qid)
    if starttls != "broken":
        assert re.search(r"(?i)unencrypted|plaintext", rec["text"]), rec
        assert "auth_allow_plaintext" in rec["text"], rec
    # a second attempt must refuse too
    wait_until(lambda: len(d.outcomes(qid, status="deferred")) >= 2, 15,
               what="a second deferral", alive=d.check_alive)
    assert_no_auth_no_mail(sh)
    if tls == "disabled":
        assert "STARTTLS" not in sh.commands()
    assert_still_queued(d, qid)
    assert_no_secret_logged(d, [sh], [password])


@pytest.mark.parametrize("tls", ["disabled", "opportunistic"])
def test_auth_over_plaintext_when_allowed(daemon, auth_smarthost, auth_tls, tls):
    password = new_secret()
    sh = auth_smarthost(mechanisms=["PLAIN", "LOGIN"], credentials={USER: password},
                        starttls=False, plaintext_auth=True)
    d = daemon(smarthosts=relay(auth_tls, sh, tls=tls, username=USER, password=password,
                                auth_allow_plaintext="yes"))
    msg, qid = submit(d, "plaintext auth allowed (%s)" % tls)

    sent(d, qid)
    ex = assert_authenticated_delivery(sh, msg, "PLAIN", tls=False)
    assert ex.secret == password
    assert_no_secret_logged(d, [sh], [password])


# ---------------------------------------------------------------------------
# nothing suitable offered

@pytest.mark.parametrize("advertised", [[], ["XOAUTH2", "OAUTHBEARER"]],
                         ids=["no-AUTH", "only-OAuth-for-auto"])
def test_no_usable_auth_offered_defers(daemon, auth_smarthost, auth_tls, advertised):
    password = new_secret()
    sh = auth_smarthost(mechanisms=advertised, credentials={USER: password},
                        tokens={USER: password})
    d = daemon(smarthosts=relay(auth_tls, sh, username=USER, password=password))
    msg, qid = submit(d, "no usable AUTH")

    rec = deferred(d, qid)
    assert "AUTH" in rec["text"], rec
    assert_no_auth_no_mail(sh)
    assert_still_queued(d, qid)
    assert_no_secret_logged(d, [sh], [password])


@pytest.mark.parametrize("configured, advertised", [
    ("cram-md5", ["PLAIN", "LOGIN"]),
    ("xoauth2", ["PLAIN", "LOGIN", "SCRAM-SHA-256"]),
], ids=["cram-md5", "xoauth2"])
def test_configured_mechanism_not_offered_defers(daemon, auth_smarthost, auth_tls, configured,
                                                 advertised):
    password = new_secret()
    sh = auth_smarthost(mechanisms=advertised, credentials={USER: password})
    d = daemon(smarthosts=relay(auth_tls, sh, username=USER, password=password, auth=configured))
    msg, qid = submit(d, "%s not offered" % configured)

    rec = deferred(d, qid)
    assert "AUTH" in rec["text"], rec
    assert configured in rec["text"].lower(), rec
    assert_no_auth_no_mail(sh)
    assert_still_queued(d, qid)
    assert_no_secret_logged(d, [sh], [password])


def test_password_file_group_readable(daemon, auth_smarthost, auth_tls, workdir):
    """0640 is accepted only for root's file with the daemon's group
    (the packaged root:mailrelay layout); any other group-readable file is
    refused.  As root both cases are checked; as a user, the refusal."""
    password = new_secret()
    path = os.path.join(workdir, "group.secret")
    with open(path, "w") as f:
        f.write(password + "\n")
    os.chmod(path, 0o640)
    sh = auth_smarthost(mechanisms=["PLAIN"], credentials={USER: password})

    if os.geteuid() == 0:
        # root's file with the daemon's group (the daemon runs as root here: group 0)
        os.chown(path, 0, os.getgid())
        d = daemon(smarthosts=relay(auth_tls, sh, username=USER, password_file=path))
        msg, qid = submit(d, "password_file 0640")
        sent(d, qid)
        assert_authenticated_delivery(sh, msg, "PLAIN")
        d.stop()
        # the same mode with another group is refused
        os.chown(path, 0, 65534)
    d = daemon(smarthosts=relay(auth_tls, sh, username=USER, password_file=path), start=False)
    p = subprocess.run([d.build.mailrelayd, "-c", d.conf, "-f"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=15, env=client_env())
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode == 78, (p.returncode, err)
    assert "password_file:" in err and "group" in err, err
    assert password not in err


def test_password_command_that_hangs_is_killed_and_defers(daemon, auth_smarthost, auth_tls, workdir):
    """password_command gets the smarthost's timeout; a hanging command (and
    what it started) is killed and the attempt is deferred."""
    marker = os.path.join(workdir, "still-running")
    script = os.path.join(workdir, "hang.sh")
    with open(script, "w") as f:
        f.write("#!/bin/sh\n(sleep 30; touch '%s') &\nsleep 30\n" % marker)
    os.chmod(script, 0o755)
    sh = auth_smarthost(mechanisms=["PLAIN"], credentials={USER: "unused"})
    conf = relay(auth_tls, sh, username=USER, password_command=script)
    conf[0][1]["timeout"] = "2s"
    d = daemon(smarthosts=conf)
    msg, qid = submit(d, "hanging password_command")
    rec = d.wait_for_record(id=qid, to=RCPT, status="deferred", timeout=20)
    assert "password_command" in rec["text"] and "2s" in rec["text"], rec
    assert sh.auth_exchanges() == [] if hasattr(sh, "auth_exchanges") else True
    # the command's process group was killed: its background child never finishes
    wait_until(lambda: subprocess.run(["pgrep", "-f", script], stdout=subprocess.PIPE).stdout.strip() == b"",
               10, what="the password_command's processes to be gone")
    assert not os.path.exists(marker)


def test_rewrite_from_always_sends_as_the_authenticated_account(daemon, auth_smarthost, auth_tls):
    """rewrite_from = always without from_address: the smarthost's username
    (an address) becomes the envelope sender and the From: address, as
    Office 365 and Gmail require; the author stays reachable by Reply-To."""
    password = new_secret("pw")
    sh = auth_smarthost(credentials={USER: password})
    d = daemon(smarthosts=relay(auth_tls, sh, username=USER, password=password, auth="plain"),
               overrides={"rewrite_from": "always"})
    msg, qid = submit(d, "as the account")
    sent(d, qid)
    t = sh.wait_for(1)[0]
    assert t.mail_from == USER
    head = t.content.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
    assert "From: Test Sender <%s>" % USER in head
    assert "Reply-To: Test Sender <%s>" % SENDER in head
    # the queue and the log keep the submitted sender
    assert d.wait_for_record(**{"from": SENDER})

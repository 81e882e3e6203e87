"""TLS towards the smarthost: the four `tls =` policies, certificate
verification (chain, host name, IP literal, expiry), pinning, client
certificates, protocol version and cipher settings, and what a man in the
middle who strips or refuses STARTTLS gets out of the daemon (nothing).

Every test checks the recipient's log line (tls=, verify=, status=), what
the smarthost saw (sessions, commands, whether the transaction came over
TLS) and, for deferrals, that the message stays queued.  Certificates come
from the session fixture `pki` (tlsutil.PKI); retry_schedule is 1s.
"""

import re

import pytest

from mrtest import make_message, quote, smarthost_opts, strip_angle, to_crlf, wait_until
from tlsutil import wait_closed_sessions, wait_handshake_failed

SENDER = "sender@example.org"
RCPT = "rcpt@example.net"

# How deferral texts must name the problem (case-insensitive, loose).
CERT_WORDS = r"(?i)certif|verif"
STARTTLS_WORDS = r"(?i)starttls"
HANDSHAKE_WORDS = r"(?i)tls|ssl|handshake|protocol|version|alert"

# Quoted as libconfuse strings; the others are written bare.
_BARE_KEYS = ("tls", "tls_verify", "port", "timeout", "connect_timeout", "data_timeout")


def tls_host(sh, tls, host="localhost", **keys):
    """(name, opts) of smarthost section "main" pointing at sh (a Smarthost,
    proxy or port).  tls=None leaves the key out (the default, required)."""
    port = sh if isinstance(sh, int) else sh.port
    opts = smarthost_opts(port, host=quote(host), tls=tls, timeout="5s", connect_timeout="3s")
    for key, value in keys.items():
        opts[key] = value if key in _BARE_KEYS or value is None else quote(value)
    return ("main", opts)


def submit(d, subject):
    msg = make_message(subject=subject)
    r = d.sendmail(["-i", "-f", SENDER, RCPT], msg)
    assert r.rc == 0, r
    return d.accepted_id(SENDER), msg


def relay_of(host, port):
    return "%s[127.0.0.1]:%d" % (host, port)


def expect_sent(d, sh, qid, msg, host="localhost", port=None, timeout=15):
    """The sent record and the one delivered transaction of qid."""
    rec = d.wait_for_record(id=qid, to=RCPT, status="sent", timeout=timeout)
    assert rec["relay"] == relay_of(host, port or sh.port), rec
    assert rec["dsn"] == "2.0.0", rec
    assert rec["text"].startswith("250"), rec
    copies = [t for t in sh.delivered() if t.content == to_crlf(msg)]
    assert len(copies) == 1, sh.summary()
    assert d.outcomes(qid, status="deferred") == [], d.outcomes(qid)
    return rec, copies[0]


def assert_tls_record(rec, t, verify):
    """A record of a delivery over TLS agrees with what the server saw."""
    assert rec["tls"] in ("TLSv1.2", "TLSv1.3"), rec
    assert t.tls, t
    assert rec["tls"] == t.tls_version, (rec, t)
    assert "verify" in rec, rec
    if verify == "fail":
        assert rec["verify"].startswith("fail"), rec
        assert re.match(r"^fail \(.+\)$", rec["verify"]), rec
    else:
        assert rec["verify"] == verify, rec


def assert_plaintext_record(rec, t):
    assert rec["tls"] == "none", rec
    assert "verify" not in rec, rec
    assert not t.tls, t


def assert_says_why(text):
    """A reason a user can act on: no strerror(0) and no OpenSSL placeholder."""
    assert not re.search(r"(?i):\s*success\b", text), "errno 0 reported as the reason: %r" % text
    assert not re.search(r"\breason\(\d+\)", text), "OpenSSL reason code without text: %r" % text


def expect_deferred(d, qid, words, relay, attempts=1, timeout=15):
    """The deferral record of attempt `attempts`; its text must match words;
    relay= names the server it was connected to; the message must still be
    queued with that reason.  (test_tls_failure_reason_says_why checks the
    wording further.)"""
    rec = d.wait_for_record(id=qid, to=RCPT, status="deferred", attempts=str(attempts),
                            timeout=timeout)
    assert re.search(words, rec["text"]), rec
    assert rec.get("dsn", "").startswith("4"), rec
    assert rec["relay"] == relay, rec

    def queued():
        q = [m for m in d.queue_json() if m["id"] == qid]
        if not q:
            return None
        rc = q[0]["recipients"]
        if len(rc) == 1 and rc[0]["attempts"] >= attempts and rc[0]["last_reply"]:
            return q[0]
        return None
    entry = wait_until(queued, 10, what="the queue to show the failed attempt of %s" % qid)
    rc = entry["recipients"][0]
    assert strip_angle(rc["address"]) == RCPT
    assert rc["status"] == "pending", entry
    assert re.search(words, rc["last_reply"]), entry
    assert d.outcomes(qid, status="sent") == []
    return rec


def assert_no_mail_reached(sh):
    """The smarthost got no transaction and not even a MAIL command."""
    assert sh.all_transactions() == [], sh.summary()
    for verb in ("MAIL", "RCPT", "DATA", "AUTH", "BDAT"):
        assert verb not in sh.commands(), sh.summary()


def assert_ehlo_then_starttls(session):
    """Plaintext was EHLO and STARTTLS only, then a fresh EHLO over TLS."""
    assert session.verbs(tls=False) == ["EHLO", "STARTTLS"], session
    assert session.verbs(tls=True)[:1] == ["EHLO"], session


# ---------------------------------------------------------------------------
# tls = disabled / opportunistic


def test_disabled_never_starttls_even_if_offered(daemon, smarthost, pki):
    sh = smarthost(tls_context=pki.server_context())
    d = daemon(smarthosts=[tls_host(sh, "disabled")])
    qid, msg = submit(d, "tls disabled")

    rec, t = expect_sent(d, sh, qid, msg)
    assert_plaintext_record(rec, t)
    assert rec["attempts"] == "1"
    assert "STARTTLS" not in sh.commands(), sh.summary()
    assert not any(s.tls for s in sh.client_sessions())


@pytest.mark.parametrize("trust", ["untrusted", "ca_file"])
def test_opportunistic_uses_starttls_and_logs_verification(daemon, smarthost, pki, trust):
    sh = smarthost(tls_context=pki.server_context())
    keys = {"tls_ca_file": pki.ca.cert} if trust == "ca_file" else {}
    d = daemon(smarthosts=[tls_host(sh, "opportunistic", **keys)])
    qid, msg = submit(d, "opportunistic " + trust)

    rec, t = expect_sent(d, sh, qid, msg)
    # Without our CA the chain does not verify: logged, not enforced.
    assert_tls_record(rec, t, "ok" if trust == "ca_file" else "fail")
    assert rec["attempts"] == "1"
    assert_ehlo_then_starttls(t.session)


def test_opportunistic_without_starttls_is_plaintext(daemon, smarthost):
    sh = smarthost()
    d = daemon(smarthosts=[tls_host(sh, "opportunistic")])
    qid, msg = submit(d, "opportunistic, no starttls")

    rec, t = expect_sent(d, sh, qid, msg)
    assert_plaintext_record(rec, t)
    assert rec["attempts"] == "1"
    assert "STARTTLS" not in sh.commands()


@pytest.mark.parametrize("failure", ["no_server_certificate", "version_mismatch"])
def test_opportunistic_handshake_failure_retries_once_in_plaintext(daemon, smarthost, pki,
                                                                    failure):
    if failure == "no_server_certificate":
        sh = smarthost(tls_context=pki.broken_context())
        keys = {}
    else:                       # server TLS 1.2 at most, daemon TLS 1.3 at least
        sh = smarthost(tls_context=pki.server_context(tls12_only=True))
        keys = {"tls_min_version": "TLSv1.3"}
    d = daemon(smarthosts=[tls_host(sh, "opportunistic", tls_ca_file=pki.ca.cert, **keys)])
    after = len(d.log_lines())
    qid, msg = submit(d, "opportunistic, handshake fails: " + failure)

    rec, t = expect_sent(d, sh, qid, msg)
    assert_plaintext_record(rec, t)
    # The plaintext retry belongs to the same attempt.
    assert rec["attempts"] == "1", rec
    assert len(sh.delivered()) == 1

    sessions = sh.greeted_sessions()
    assert len(sessions) == 2, sh.summary()
    first, second = sessions
    assert first.verbs(tls=False)[:2] == ["EHLO", "STARTTLS"], first
    assert not first.tls and first.transactions == 0, first
    assert "MAIL" not in first.verbs(), first
    # One retry, on a new connection, without STARTTLS.
    assert "STARTTLS" not in second.verbs(), second
    assert t.session is second

    said = [l for l in d.log_lines()[after:] if re.search(r"(?i)handshake|retry|retrying", l)]
    assert said, "no log line mentions the failed handshake or the plaintext retry"


# ---------------------------------------------------------------------------
# tls = required: verification


@pytest.mark.parametrize("host,trust", [("localhost", "ca_file"),
                                        ("127.0.0.1", "ca_file"),
                                        ("localhost", "ca_path")])
def test_required_verified_delivers_over_tls(daemon, smarthost, pki, host, trust):
    sh = smarthost(tls_context=pki.server_context())
    keys = {"tls_ca_file": pki.ca.cert} if trust == "ca_file" else {"tls_ca_path": pki.ca_path}
    d = daemon(smarthosts=[tls_host(sh, "required", host=host, **keys)])
    qid, msg = submit(d, "required %s %s" % (host, trust))

    rec, t = expect_sent(d, sh, qid, msg, host=host)
    assert_tls_record(rec, t, "ok")
    assert rec["attempts"] == "1"
    assert_ehlo_then_starttls(t.session)
    assert t.session.tls_how == "starttls"
    # SNI names the host; an IP literal is not a server name (RFC 6066 3).
    assert t.session.sni == (host if host == "localhost" else None), t.session.sni


def test_default_policy_is_required_and_verified(daemon, smarthost, pki):
    sh = smarthost(tls_context=pki.server_context())
    d = daemon(smarthosts=[tls_host(sh, None, tls_ca_file=pki.ca.cert)])
    qid, msg = submit(d, "default policy")

    rec, t = expect_sent(d, sh, qid, msg)
    assert_tls_record(rec, t, "ok")


def test_ehlo_again_after_starttls(daemon, smarthost, pki):
    sh = smarthost(tls_context=pki.server_context())
    d = daemon(smarthosts=[tls_host(sh, "required", tls_ca_file=pki.ca.cert)])
    qid, msg = submit(d, "second ehlo")

    rec, t = expect_sent(d, sh, qid, msg)
    s = t.session
    assert s.ehlos() == [False, True], s
    assert s.verbs()[:3] == ["EHLO", "STARTTLS", "EHLO"], s
    # Everything of the transaction went encrypted.
    for verb in ("MAIL", "RCPT", "DATA"):
        assert verb in s.verbs(tls=True) and verb not in s.verbs(tls=False), s


BAD_CERTS = [
    # (id, certificate on the server, host in the config, CA given)
    ("wrong_name", "wrong_name", "localhost", True),
    ("wrong_name_ip_literal", "wrong_name", "127.0.0.1", True),
    ("expired", "expired", "localhost", True),
    ("self_signed", "self_signed", "localhost", True),
    ("untrusted_ca", "good", "localhost", False),
    # An IP literal matches IP addresses in the certificate, never DNS names.
    ("ip_literal_vs_dns_name", "ip_as_dns", "127.0.0.1", True),
]


@pytest.mark.parametrize("cert,host,with_ca", [c[1:] for c in BAD_CERTS],
                         ids=[c[0] for c in BAD_CERTS])
def test_required_bad_certificate_defers(daemon, smarthost, pki, cert, host, with_ca):
    sh = smarthost(tls_context=pki.server_context(cert))
    keys = {"tls_ca_file": pki.ca.cert} if with_ca else {}
    d = daemon(smarthosts=[tls_host(sh, "required", host=host, **keys)])
    qid, msg = submit(d, "bad certificate " + cert)

    rec = expect_deferred(d, qid, CERT_WORDS, relay_of(host, sh.port))
    if "verify" in rec:
        assert rec["verify"].startswith("fail"), rec
    # Retried on schedule, and still nothing goes to that server.
    expect_deferred(d, qid, CERT_WORDS, relay_of(host, sh.port), attempts=2)
    assert_no_mail_reached(sh)
    assert any("STARTTLS" in s.verbs() for s in sh.client_sessions()), sh.summary()
    for s in sh.client_sessions():
        assert s.verbs(tls=False) in ([], ["EHLO"], ["EHLO", "STARTTLS"]), s


@pytest.mark.parametrize("cert", ["wrong_name", "expired", "self_signed"])
def test_tls_verify_no_accepts_any_certificate(daemon, smarthost, pki, cert):
    sh = smarthost(tls_context=pki.server_context(cert))
    d = daemon(smarthosts=[tls_host(sh, "required", tls_verify="no", tls_ca_file=pki.ca.cert)])
    qid, msg = submit(d, "tls_verify no, " + cert)

    rec, t = expect_sent(d, sh, qid, msg)
    assert_tls_record(rec, t, "off")
    assert_ehlo_then_starttls(t.session)


# ---------------------------------------------------------------------------
# pinning


@pytest.mark.parametrize("kind,style", [("cert", "hex"), ("spki", "hex"), ("cert", "openssl")])
def test_fingerprint_pins_self_signed_certificate(daemon, smarthost, pki, kind, style):
    sh = smarthost(tls_context=pki.server_context("self_signed"))
    pin = pki.self_signed.pin(kind, style)
    d = daemon(smarthosts=[tls_host(sh, "required", tls_fingerprint=pin)])
    qid, msg = submit(d, "pinned %s %s" % (kind, style))

    rec, t = expect_sent(d, sh, qid, msg)
    assert_tls_record(rec, t, "pinned")


@pytest.mark.parametrize("kind", ["cert", "spki"])
def test_wrong_fingerprint_defers(daemon, smarthost, pki, kind):
    sh = smarthost(tls_context=pki.server_context("self_signed"))
    # the fingerprint of another certificate
    d = daemon(smarthosts=[tls_host(sh, "required", tls_fingerprint=pki.good.pin(kind))])
    qid, msg = submit(d, "wrong pin " + kind)

    expect_deferred(d, qid, r"(?i)fingerprint|pin|certif|verif", relay_of("localhost", sh.port))
    assert_no_mail_reached(sh)


# ---------------------------------------------------------------------------
# no STARTTLS, and men in the middle


@pytest.mark.parametrize("tls", ["required", None], ids=["required", "default"])
def test_required_without_starttls_defers(daemon, smarthost, pki, tls):
    sh = smarthost()                    # plaintext only
    d = daemon(smarthosts=[tls_host(sh, tls, tls_ca_file=pki.ca.cert)])
    qid, msg = submit(d, "no starttls offered")

    expect_deferred(d, qid, STARTTLS_WORDS, relay_of("localhost", sh.port))
    wait_closed_sessions(sh)
    assert_no_mail_reached(sh)
    assert sh.greeted_sessions(), "the daemon never greeted the server"
    for s in sh.client_sessions():
        assert set(s.verbs()) <= {"EHLO", "QUIT"}, s


def test_required_through_starttls_stripping_proxy_defers(daemon, smarthost, smtp_proxy, pki):
    sh = smarthost(tls_context=pki.server_context())
    px = smtp_proxy(sh, mode="strip")
    d = daemon(smarthosts=[tls_host(px, "required", tls_ca_file=pki.ca.cert)])
    qid, msg = submit(d, "stripped starttls")

    expect_deferred(d, qid, STARTTLS_WORDS, relay_of("localhost", px.port))
    px.wait_idle()
    assert px.stripped() >= 1, px.summary()
    assert "EHLO" in px.saw_plaintext_commands(), px.summary()
    px.assert_nothing_after_ehlo_in_plaintext()
    assert "STARTTLS" not in px.saw_plaintext_commands()
    assert not px.saw_tls()
    assert_no_mail_reached(sh)


def test_required_when_starttls_refused_defers(daemon, smarthost, smtp_proxy, pki):
    sh = smarthost(tls_context=pki.server_context())
    px = smtp_proxy(sh, mode="refuse")          # offered, then answered 454
    d = daemon(smarthosts=[tls_host(px, "required", tls_ca_file=pki.ca.cert)])
    qid, msg = submit(d, "refused starttls")

    expect_deferred(d, qid, r"(?i)starttls|454", relay_of("localhost", px.port))
    px.wait_idle()
    assert px.refused() >= 1, px.summary()
    px.assert_nothing_after_ehlo_in_plaintext()
    assert_no_mail_reached(sh)


def test_opportunistic_through_stripping_proxy_falls_back_to_plaintext(daemon, smarthost,
                                                                      smtp_proxy, pki):
    # What opportunistic means: a stripped STARTTLS goes unnoticed.  This
    # also shows that the proxy does strip it.
    sh = smarthost(tls_context=pki.server_context())
    px = smtp_proxy(sh, mode="strip")
    d = daemon(smarthosts=[tls_host(px, "opportunistic", tls_ca_file=pki.ca.cert)])
    qid, msg = submit(d, "opportunistic, stripped")

    rec, t = expect_sent(d, sh, qid, msg, port=px.port)
    assert_plaintext_record(rec, t)
    assert px.stripped() >= 1
    assert "STARTTLS" not in px.saw_plaintext_commands()
    assert "MAIL" in px.saw_plaintext_commands()


def test_required_sends_only_ehlo_and_starttls_in_plaintext(daemon, smarthost, smtp_proxy, pki):
    sh = smarthost(tls_context=pki.server_context())
    px = smtp_proxy(sh, mode="pass")
    d = daemon(smarthosts=[tls_host(px, "required", tls_ca_file=pki.ca.cert)])
    qid, msg = submit(d, "watched on the wire")

    rec, t = expect_sent(d, sh, qid, msg, port=px.port)
    assert_tls_record(rec, t, "ok")
    assert px.saw_plaintext_commands()[:2] == ["EHLO", "STARTTLS"], px.summary()
    assert px.saw_tls()
    px.assert_nothing_after_ehlo_in_plaintext()


# ---------------------------------------------------------------------------
# client certificates


def test_client_certificate_missing_defers(daemon, smarthost, pki):
    sh = smarthost(tls_context=pki.server_context(require_client_cert=True))
    d = daemon(smarthosts=[tls_host(sh, "required", tls_ca_file=pki.ca.cert)])
    qid, msg = submit(d, "no client certificate")

    expect_deferred(d, qid, HANDSHAKE_WORDS + r"|certif|connection|closed|reset",
                    relay_of("localhost", sh.port))
    assert_no_mail_reached(sh)
    # It did try: the server refused the handshake for want of a certificate.
    wait_handshake_failed(sh)


def test_client_certificate_presented(daemon, smarthost, pki):
    sh = smarthost(tls_context=pki.server_context(require_client_cert=True))
    d = daemon(smarthosts=[tls_host(sh, "required", tls_ca_file=pki.ca.cert,
                                    tls_client_cert=pki.client.cert,
                                    tls_client_key=pki.client.key)])
    qid, msg = submit(d, "client certificate")

    rec, t = expect_sent(d, sh, qid, msg)
    assert_tls_record(rec, t, "ok")
    cert = t.session.client_cert
    assert cert and (("commonName", "relay.test"),) in cert["subject"], cert


# ---------------------------------------------------------------------------
# tls = implicit


def test_implicit_tls_delivers(daemon, smarthost, pki):
    sh = smarthost(ssl_context=pki.server_context())
    d = daemon(smarthosts=[tls_host(sh, "implicit", tls_ca_file=pki.ca.cert)])
    qid, msg = submit(d, "implicit tls")

    rec, t = expect_sent(d, sh, qid, msg)
    assert_tls_record(rec, t, "ok")
    s = t.session
    assert s.tls_how == "implicit", s
    assert "STARTTLS" not in s.verbs(), s
    assert s.verbs(tls=False) == [], s
    assert s.sni == "localhost", s


def test_implicit_verifies_certificate(daemon, smarthost, pki):
    sh = smarthost(ssl_context=pki.server_context("wrong_name"))
    d = daemon(smarthosts=[tls_host(sh, "implicit", tls_ca_file=pki.ca.cert)])
    qid, msg = submit(d, "implicit, wrong name")

    expect_deferred(d, qid, CERT_WORDS, relay_of("localhost", sh.port))
    assert_no_mail_reached(sh)


def test_implicit_against_plaintext_server_defers(daemon, smarthost, pki):
    sh = smarthost()                    # speaks plaintext SMTP from the first byte
    d = daemon(smarthosts=[tls_host(sh, "implicit", tls_ca_file=pki.ca.cert)])
    qid, msg = submit(d, "implicit vs plaintext")

    expect_deferred(d, qid, HANDSHAKE_WORDS, relay_of("localhost", sh.port))
    wait_until(lambda: sh.client_sessions(), 5, what="the daemon to connect")
    wait_closed_sessions(sh)
    assert_no_mail_reached(sh)
    assert sh.commands() == [], sh.summary()


# ---------------------------------------------------------------------------
# protocol versions and ciphers


def test_min_version_tls13_against_tls12_server_defers(daemon, smarthost, pki):
    sh = smarthost(tls_context=pki.server_context(tls12_only=True))
    d = daemon(smarthosts=[tls_host(sh, "required", tls_ca_file=pki.ca.cert,
                                    tls_min_version="TLSv1.3")])
    qid, msg = submit(d, "tls 1.3 required, server 1.2")

    expect_deferred(d, qid, HANDSHAKE_WORDS, relay_of("localhost", sh.port))
    assert_no_mail_reached(sh)
    # It did try: the server saw STARTTLS and a handshake it could not complete.
    wait_handshake_failed(sh)


def test_tls12_server_with_default_min_version(daemon, smarthost, pki):
    sh = smarthost(tls_context=pki.server_context(tls12_only=True))
    d = daemon(smarthosts=[tls_host(sh, "required", tls_ca_file=pki.ca.cert)])
    qid, msg = submit(d, "tls 1.2 server")

    rec, t = expect_sent(d, sh, qid, msg)
    assert_tls_record(rec, t, "ok")
    assert rec["tls"] == "TLSv1.2", rec


def test_tls_ciphers_applies_to_tls12(daemon, smarthost, pki):
    # Left to itself the server would pick AES-GCM; the daemon offers only this.
    cipher = "ECDHE-ECDSA-CHACHA20-POLY1305"
    sh = smarthost(tls_context=pki.server_context(tls12_only=True))
    d = daemon(smarthosts=[tls_host(sh, "required", tls_ca_file=pki.ca.cert, tls_ciphers=cipher)])
    qid, msg = submit(d, "tls_ciphers")

    rec, t = expect_sent(d, sh, qid, msg)
    assert_tls_record(rec, t, "ok")
    assert t.session.cipher == cipher, t.session


# ---------------------------------------------------------------------------
# what the user reads


@pytest.mark.parametrize("case", ["implicit_vs_plaintext", "min_version_mismatch",
                                  "no_client_certificate", "broken_server_opportunistic"])
def test_tls_failure_reason_says_why(daemon, smarthost, pki, case):
    """Handshake failures are reported with a reason a user can act on:
    never strerror(0) ("Success") nor an OpenSSL "reason(N)" placeholder."""
    keys = {"tls_ca_file": pki.ca.cert}
    tls = "required"
    if case == "implicit_vs_plaintext":
        sh = smarthost()
        tls = "implicit"
    elif case == "min_version_mismatch":
        sh = smarthost(tls_context=pki.server_context(tls12_only=True))
        keys["tls_min_version"] = "TLSv1.3"
    elif case == "no_client_certificate":
        sh = smarthost(tls_context=pki.server_context(require_client_cert=True))
    else:
        sh = smarthost(tls_context=pki.broken_context())
        tls = "opportunistic"
    d = daemon(smarthosts=[tls_host(sh, tls, **keys)])
    after = len(d.log_lines())
    qid, msg = submit(d, "reason: " + case)

    if tls == "opportunistic":
        d.wait_for_record(id=qid, to=RCPT, status="sent")
    else:
        rec = d.wait_for_record(id=qid, to=RCPT, status="deferred")
        assert_says_why(rec["text"])
    # The handshake was really tried (and failed on the server's side too).
    if case == "implicit_vs_plaintext":
        wait_until(lambda: sh.client_sessions(), 5, what="the daemon to connect")
    else:
        wait_handshake_failed(sh)
    said = [l for l in d.log_lines()[after:] if re.search(r"(?i)handshake|tls|ssl", l)
            and "status=sent" not in l]
    for line in said:
        assert_says_why(line)


def test_credentials_never_cross_a_stripping_proxy(daemon, smarthost, smtp_proxy, pki):
    # required TLS with AUTH configured: the proxy strips STARTTLS; the
    # daemon must defer without sending AUTH, the password or its base64.
    import base64
    password = "pr0xy-s3cret"
    sh = smarthost(tls_context=pki.server_context())
    px = smtp_proxy(sh, mode="strip")
    d = daemon(smarthosts=[tls_host(px, "required", tls_ca_file=pki.ca.cert,
                                    username="joe", password=password,
                                    auth_allow_plaintext="yes")])
    qid, msg = submit(d, "credentials and a stripping proxy")
    expect_deferred(d, qid, STARTTLS_WORDS, relay_of("localhost", px.port))
    px.wait_idle()
    px.assert_nothing_after_ehlo_in_plaintext()
    wire = b"\n".join(l.encode() if isinstance(l, str) else l
                      for lines in px.plaintext_lines() for l in lines)
    for secret in (password.encode(), base64.b64encode(password.encode()),
                   base64.b64encode(b"\0joe\0" + password.encode())):
        assert secret not in wire
    assert "AUTH" not in px.saw_plaintext_commands()
    assert_no_mail_reached(sh)


def test_timeout_applies_over_tls(daemon, smarthost, pki):
    # after STARTTLS the deadlines still apply: the server holds its reply
    # to the final dot for longer than data_timeout (the deadline of that wait)
    sh = smarthost(tls_context=pki.server_context())
    sh.hold()
    d = daemon(smarthosts=[tls_host(sh, "required", tls_ca_file=pki.ca.cert, timeout="1s",
                                    data_timeout="1s")])
    qid, msg = submit(d, "slow over tls")
    rec = d.wait_for_record(id=qid, to=RCPT, status="deferred", timeout=20)
    assert "timed out" in rec["text"] and rec["tls"].startswith("TLSv"), rec
    sh.release()
    sent = d.wait_for_record(id=qid, to=RCPT, status="sent", timeout=30)
    assert int(sent["attempts"]) >= 2

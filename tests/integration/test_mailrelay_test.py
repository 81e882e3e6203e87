"""`mailrelay test`: the "send test email" button for the whole machine.

One real message through the configured smarthost, from the CLI process,
with the daemon's own delivery code (daemon/probe.c): each step printed with
its time, and a failure explained in one sentence with what to try, from
lib/explain.c's rows or the failure kind's row of lib/trouble.h.  `--probe`
goes up to AUTH and sends nothing.  No daemon runs in these tests: the
command needs none.

The smarthosts are real aiosmtpd servers on loopback (authsrv.AuthSmarthost
for AUTH, with STARTTLS from conftest's PKI), or raw servers answering what a
provider answers."""

import glob
import json
import os
import re
import signal
import socket
import subprocess
import threading

import pytest

from authsrv import AuthSmarthost
from mrtest import BlackHole, free_port, quote, require_root, run, smarthost_opts

USER = "relay-user@example.org"
PASSWORD = "correct horse battery"
RCPT = "me@example.net"


@pytest.fixture
def auth_smarthost(request, pki):
    made = []
    request.node._mr_smarthosts = made

    def factory(**kw):
        sh = AuthSmarthost(mechanisms=["PLAIN", "LOGIN"], name="auth%d" % (len(made) + 1),
                           tls_context=pki.server_context("good"),
                           credentials={USER: PASSWORD}, **kw)
        made.append(sh)
        sh.start()
        return sh

    yield factory
    for sh in made:
        sh.stop()


def config(daemon, port, **keys):
    """A configuration with one smarthost `main` at 127.0.0.1:port (no daemon started)."""
    opts = smarthost_opts(port, timeout="5s", connect_timeout="3s")
    for k, v in keys.items():
        opts[k] = quote(v) if k in ("username", "password", "password_file", "tls_ca_file") else v
    return daemon(smarthosts=[("main", opts)], start=False)


def steps(out):
    """(step, text) of each step line: '  0.001s  step      text'."""
    got = []
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2 and parts[0].endswith("s") and parts[0][:-1].replace(".", "").isdigit():
            got.append((parts[1], parts[2] if len(parts) > 2 else ""))
    return got


def test_success_over_starttls_with_auth(daemon, auth_smarthost, pki):
    sh = auth_smarthost()
    d = config(daemon, sh.port, tls="required", tls_ca_file=pki.ca.cert, username=USER,
               password=PASSWORD)
    r = d.mailrelay(["test", "--to", RCPT])
    assert r.rc == 0, r
    out = r.out_text
    s = steps(out)
    names = [n for n, _ in s]
    # every step, in order
    for want in ("config", "message", "dns", "connect", "greeting", "ehlo", "starttls", "tls",
                 "auth", "mail", "rcpt", "data", "sent"):
        assert want in names, (want, out)
    assert names.index("starttls") < names.index("tls") < names.index("auth") < names.index("mail")
    assert ("ehlo", "offers: STARTTLS PIPELINING 8BITMIME SMTPUTF8 SIZE 33554432") in s or \
        any(n == "ehlo" and t.startswith("offers:") and "STARTTLS" in t for n, t in s), out
    tls = [t for n, t in s if n == "tls"]
    assert tls[0].startswith("TLSv1.3, cipher "), tls
    assert any(t.startswith("certificate ") and "localhost" in t for t in tls), tls
    assert any(t.startswith("issued by ") and ", valid until " in t for t in tls), tls
    assert "verification: ok" in tls, tls
    assert ("auth", "using PLAIN") in s, out
    assert any(n == "auth" and t.startswith("<<< 235") for n, t in s), out
    assert ("auth", ">>> AUTH PLAIN ****") in s, out          # the secret is never printed
    assert PASSWORD not in out and PASSWORD not in r.err_text
    assert out.splitlines()[-1].startswith("OK: main accepted the message for <%s> in " % RCPT), out
    # the message arrived, once, saying what it is
    (msg,) = sh.delivered()
    assert msg.rcpt_tos == [RCPT]
    assert b"Subject: mailrelay test message from " in msg.content
    assert msg.mail_from == USER          # the username, an address, is the sender by default


def test_probe_sends_nothing(daemon, auth_smarthost, pki):
    sh = auth_smarthost()
    d = config(daemon, sh.port, tls="required", tls_ca_file=pki.ca.cert, username=USER,
               password=PASSWORD)
    r = d.mailrelay(["test", "--probe"])
    assert r.rc == 0, r
    names = [n for n, _ in steps(r.out_text)]
    assert "auth" in names and "mail" not in names and "quit" in names, r.out_text
    assert "nothing was sent" in r.out_text.splitlines()[-1], r.out_text
    assert sh.delivered() == []


def test_wrong_port(daemon):
    d = config(daemon, free_port(), tls="disabled")
    r = d.mailrelay(["test", "--to", RCPT])
    assert r.rc == 69, r
    lines = r.out_text.splitlines()
    assert lines[-3].startswith("FAILED at connect: connect to 127.0.0.1[127.0.0.1]:"), r.out_text
    assert lines[-3].endswith(": Connection refused"), r.out_text
    assert lines[-2] == ("  what it means: the host answered, but nothing takes connections on that "
                         "port (or a firewall rejects them)"), r.out_text
    assert lines[-1].startswith("  what to do:    check `port`: 587 for STARTTLS"), r.out_text


def test_bad_password(daemon, auth_smarthost, pki):
    sh = auth_smarthost()
    d = config(daemon, sh.port, tls="required", tls_ca_file=pki.ca.cert, username=USER,
               password="wrong")
    r = d.mailrelay(["test", "--to", RCPT])
    assert r.rc == 77, r
    lines = r.out_text.splitlines()
    assert lines[-3].startswith("FAILED at auth: authentication failed at "), r.out_text
    assert "535" in lines[-3], r.out_text
    assert lines[-2].startswith("  what it means: the user name or the "), r.out_text
    assert sh.delivered() == []


MS_TENANT = ("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for "
             "the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. "
             "[AM0PR01CA0000.eurprd01.prod.exchangelabs.com 2026-12-04T07:00:00.000Z]")


@pytest.mark.parametrize("reply,sentence", [
    (MS_TENANT, "SMTP AUTH is turned off for the whole Microsoft 365 tenant"),
    ("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
     "Mailbox. Visit https://aka.ms/smtp_auth_disabled for more information.",
     "SMTP AUTH is turned off for this mailbox"),
    ("535 5.7.139 Authentication unsuccessful, basic authentication is disabled.",
     "Microsoft 365 no longer takes a password (Basic authentication) from this tenant"),
    ("535 5.7.139 Authentication unsuccessful, user is locked by your organization's security "
     "defaults policy. Contact your administrator.",
     "the tenant's security defaults block sign-in with a password over SMTP"),
    ("535 5.7.139 Authentication unsuccessful, the request did not meet the criteria to be "
     "authenticated successfully. Contact your administrator.",
     "Microsoft 365 refused the sign-in by policy (SMTP AUTH disabled, or Basic authentication off)"),
    ("550 5.7.30 Basic authentication is not supported for Client Submission.",
     "the server no longer takes a password (Basic authentication)"),
    ("534-5.7.9 Application-specific password required. Learn more at\r\n"
     "534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor",
     "Google wants an app password (or OAuth2) for this account, not its normal password"),
    ("534-5.7.14 <https://accounts.google.com/signin/continue?...> Please log in via your web "
     "browser and\r\n534 5.7.14 then try again.",
     "Google wants this account to sign in through a web browser first"),
    ("535-5.7.8 Username and Password not accepted. Learn more at\r\n"
     "535 5.7.8  https://support.google.com/mail/?p=BadCredentials",
     "the user name or the password was not accepted"),
    ("504 5.7.4 Unrecognized authentication type", "the smarthost does not support this AUTH mechanism"),
])
def test_provider_replies_to_auth_are_explained(daemon, auth_smarthost, pki, reply, sentence):
    sh = auth_smarthost()
    sh.auth_replies.append(reply)
    d = config(daemon, sh.port, tls="required", tls_ca_file=pki.ca.cert, username=USER,
               password=PASSWORD)
    r = d.mailrelay(["test", "--to", RCPT])
    assert r.rc == 77, r
    lines = r.out_text.splitlines()
    assert lines[-3].startswith("FAILED at auth: "), r.out_text
    assert lines[-2] == "  what it means: " + sentence, r.out_text


def test_json_gives_the_same_steps(daemon, auth_smarthost, pki):
    sh = auth_smarthost()
    d = config(daemon, sh.port, tls="required", tls_ca_file=pki.ca.cert, username=USER,
               password=PASSWORD)
    r = d.mailrelay(["test", "--to", RCPT, "--json"])
    assert r.rc == 0, r
    (one,) = json.loads(r.out_text)
    assert one["smarthost"] == "main" and one["ok"] is True and one["exit"] == 0
    assert [s["step"] for s in one["steps"]][:3] == ["config", "message", "dns"]
    assert all(isinstance(s["time"], float) for s in one["steps"])
    assert one["kind"] is None and one["meaning"] is None
    r = config(daemon, free_port(), tls="disabled").mailrelay(["test", "--to", RCPT, "--json"])
    (one,) = json.loads(r.out_text)
    assert r.rc == 69 and one["ok"] is False and one["exit"] == 69
    assert one["step"] == "connect" and one["kind"] == "CONNECT"
    assert one["explanation"] == "refused" and one["hint"].startswith("check `port`")


class RawServer:
    """A TCP server on 127.0.0.1 that answers each connection with `greeting`
    (bytes) and then each line with the next of `replies`; it never speaks
    TLS (a plaintext port)."""

    def __init__(self, greeting, replies=()):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.greeting = greeting
        self.replies = list(replies)
        self.t = threading.Thread(target=self.serve, daemon=True)
        self.t.start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with c:
                try:
                    c.sendall(self.greeting)
                    f = c.makefile("rb")
                    for rep in self.replies:
                        if not f.readline():
                            break
                        c.sendall(rep)
                    c.recv(65536)
                except OSError:
                    pass

    def close(self):
        self.sock.close()


def test_tls_spoken_to_a_plaintext_port(daemon):
    srv = RawServer(b"220 plain.example ESMTP\r\n")
    try:
        d = config(daemon, srv.port, tls="implicit")
        r = d.mailrelay(["test", "--to", RCPT])
    finally:
        srv.close()
    assert r.rc == 69, r
    lines = r.out_text.splitlines()
    assert "wrong version number" in lines[-3], r.out_text
    assert lines[-2] == "  what it means: TLS was spoken to a port that answers in plaintext", r.out_text
    assert "tls = required (STARTTLS)" in lines[-1], r.out_text


def test_must_issue_starttls_first(daemon):
    srv = RawServer(b"220 strict.example ESMTP\r\n",
                    [b"250-strict.example\r\n250 SIZE 1000\r\n",
                     b"530 5.7.0 Must issue a STARTTLS command first\r\n",
                     b"250 2.0.0 ok\r\n", b"221 2.0.0 bye\r\n"])
    try:
        d = config(daemon, srv.port, tls="disabled")
        r = d.mailrelay(["test", "--to", RCPT])
    finally:
        srv.close()
    assert r.rc == 69, r
    lines = r.out_text.splitlines()
    assert lines[-3] == "FAILED at mail: 530 5.7.0 Must issue a STARTTLS command first", r.out_text
    assert lines[-2] == "  what it means: the smarthost wants TLS before this command", r.out_text
    assert lines[-1] == "  what to do:    set tls = required (STARTTLS) for this smarthost", r.out_text


def test_usage_errors(daemon):
    d = config(daemon, free_port())
    r = d.mailrelay(["test"])
    assert r.rc == 64 and "--to ADDR is needed" in r.err_text, r
    r = d.mailrelay(["test", "--to", RCPT, "--smarthost", "nosuch"])
    assert r.rc == 64 and 'no smarthost "nosuch"' in r.err_text, r
    r = d.mailrelay(["test", "--bogus"])
    assert r.rc == 64 and "expected" in r.err_text, r


@pytest.mark.parametrize("cert,ca,reason,sentence,names", [
    ("wrong_name", True, "mismatch", "the certificate is not for the name in `host`",
     "for wrong.example"),
    ("expired", True, "expired", "the smarthost's certificate has expired", "valid until "),
    ("self_signed", True, "self-signed", "the certificate is signed by itself, not by a CA this "
     "machine trusts", "for localhost, 127.0.0.1"),
    ("good", False, "issuer", "the certificate is signed by a CA this machine does not trust "
     "(a private CA)", "CN=mailrelay test CA, valid until "),
])
def test_certificates_are_explained_with_their_names_and_dates(daemon, smarthost, pki, cert, ca,
                                                                  reason, sentence, names):
    sh = smarthost(tls_context=pki.server_context(cert))
    keys = {"tls": "required"}
    if ca:
        keys["tls_ca_file"] = pki.ca.cert
    r = config(daemon, sh.port, **keys).mailrelay(["test", "--to", RCPT])
    assert r.rc == 69, r
    out = r.out_text
    tls = [t for n, t in steps(out) if n == "tls"]
    assert any(t.startswith("verification failed: ") and reason in t for t in tls), out
    assert any(names in t for t in tls), out        # the names and dates involved
    lines = out.splitlines()
    assert lines[-3].startswith("FAILED at tls: TLS is required"), out
    assert lines[-2] == "  what it means: " + sentence, out
    assert sh.delivered() == []


def test_starttls_spoken_to_an_implicit_tls_port(daemon, smarthost, pki):
    # port 465 waits for a TLS ClientHello: no greeting comes before `timeout`
    sh = smarthost(ssl_context=pki.server_context("good"))
    d = config(daemon, sh.port, tls="required", tls_ca_file=pki.ca.cert, timeout="2s")
    r = d.mailrelay(["test", "--to", RCPT])
    assert r.rc == 69, r
    lines = r.out_text.splitlines()
    assert lines[-3].startswith("FAILED at greeting: conversation with "), r.out_text
    assert "timed out while waiting for the greeting" in lines[-3], r.out_text
    assert lines[-1].startswith("  what to do:    with port 465 use tls = implicit"), r.out_text


def test_name_that_does_not_resolve(daemon, workdir):
    """In new mount and network namespaces (whose loopback is down) with a
    resolv.conf naming a name server on 127.0.0.1: no network is used."""
    require_root("a private /etc/resolv.conf in a mount namespace")
    resolv = os.path.join(workdir, "resolv.conf")
    with open(resolv, "w") as f:
        f.write("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    d = config(daemon, 25, tls="disabled", host=quote("smtp.relay.invalid"))
    r = run(["unshare", "-m", "-n", "sh", "-c",
             'mount --bind "$0" /etc/resolv.conf && exec "$@"', resolv,
             d.build.mailrelay, "-c", d.conf, "test", "--to", RCPT], b"", 30)
    assert r.rc == 68, r
    s = steps(r.out_text)
    assert any(n == "dns" and t.startswith("Nameserver 127.0.0.1:53 has failed: ") for n, t in s), \
        r.out_text
    lines = r.out_text.splitlines()
    assert lines[-3].startswith("FAILED at dns: connect to smtp.relay.invalid:25: host name lookup "
                                "failed: "), r.out_text
    assert lines[-2] == ("  what it means: the host name of the smarthost (or of its proxy) did "
                         "not resolve"), r.out_text


def test_every_explanation_is_in_the_man_page():
    """man/mailrelay.8 lists every row of lib/explain.c by name, with its sentence."""
    top = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    with open(os.path.join(top, "lib", "explain.c")) as f:
        src = f.read()
    with open(os.path.join(top, "man", "mailrelay.8")) as f:
        page = f.read().replace("\\-", "-").replace("\\e", "\\")
    rows = re.findall(r'^\t\{ "([a-z0-9.-]+)", (?:NULL|"[A-Z_0-9]+"), \{[^}]*\}, [01],\n\t  "([^"]*)"',
                      src, re.M)
    assert len(rows) >= 30, rows
    for name, sentence_start in rows:
        assert "\n.B %s\n" % name in page, name
        assert sentence_start[1:40] in page, (name, sentence_start)


GREETING = b"220 smtp.example.net ESMTP\r\n"
EHLO = b"250-smtp.example.net\r\n250 SIZE 35882577\r\n"
OK = b"250 2.0.0 OK\r\n"
GO = b"354 go ahead\r\n"
BYE = b"221 2.0.0 bye\r\n"


@pytest.mark.parametrize("replies,step,code,sentence", [
    # MAIL refused: not authenticated (Microsoft)
    ([EHLO, b"530 5.7.57 Client not authenticated to send mail. [AM0PR01CA0000]\r\n", OK, BYE],
     "mail", 69, "the smarthost takes mail only after AUTH, and this session did not authenticate"),
    # RCPT refused: relay denied
    ([EHLO, OK, b"554 5.7.1 <me@example.net>: Relay access denied\r\n", OK, BYE],
     "rcpt", 69, "the smarthost does not relay mail for this sender or this machine"),
    # RCPT deferred: throttled (Microsoft), a temporary failure
    ([EHLO, OK, b"452 4.2.254 Recipient rate limit exceeded (5.2.254)\r\n", OK, BYE],
     "rcpt", 75, "the mailbox is over a sending limit of Exchange Online (too many messages or "
     "recipients)"),
    # the end of data refused: Send As (Microsoft)
    ([EHLO, OK, OK, GO, b"550 5.7.60 SMTP; Client does not have permissions to send as this sender\r\n",
      BYE], "sent", 69, "the mailbox may not send as this sender"),
    ([EHLO, OK, OK, GO, b"554 5.2.252 SendAsDenied; root@relay.test not allowed to send as "
      b"root@relay.test\r\n", BYE], "sent", 69, "SendAsDenied: the mailbox may not send as this sender"),
    # too big for the smarthost's SIZE: refused before MAIL
    ([b"250-smtp.example.net\r\n250 SIZE 100\r\n", BYE], "ehlo", 69,
     "the message is larger than the smarthost takes"),
])
def test_refusals_of_the_mail_are_explained(daemon, replies, step, code, sentence):
    srv = RawServer(GREETING, replies)
    try:
        r = config(daemon, srv.port, tls="disabled").mailrelay(["test", "--to", RCPT])
    finally:
        srv.close()
    assert r.rc == code, r
    lines = r.out_text.splitlines()
    assert lines[-3].startswith("FAILED at %s: " % step), r.out_text
    assert lines[-2] == "  what it means: " + sentence, r.out_text


def test_probe_tries_every_smarthost(daemon, auth_smarthost, pki):
    sh = auth_smarthost()
    good = smarthost_opts(sh.port, tls="required", tls_ca_file=quote(pki.ca.cert),
                          username=quote(USER), password=quote(PASSWORD))
    closed = smarthost_opts(free_port(), tls="disabled")
    d = daemon(smarthosts=[("main", good), ("backup", closed)], start=False)
    r = d.mailrelay(["test", "--probe"])
    assert r.rc == 69, r                     # the first failure's status
    out = r.out_text
    assert "OK: main is ready for mail" in out and "FAILED at connect: " in out, out
    (a, b) = json.loads(d.mailrelay(["test", "--probe", "--json"]).out_text)
    assert (a["smarthost"], a["ok"], b["smarthost"], b["ok"]) == ("main", True, "backup", False)
    assert sh.delivered() == []


def test_every_failure_kind_is_in_the_man_page():
    """mailrelayd(8), section FAILURES, lists every kind of lib/trouble.h."""
    top = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    with open(os.path.join(top, "lib", "trouble.h")) as f:
        kinds = re.findall(r"^\s*X\(([A-Z_0-9]+), TS_", f.read(), re.M)
    with open(os.path.join(top, "man", "mailrelayd.8")) as f:
        page = f.read()
    assert len(kinds) >= 36, kinds
    section = page[page.index(".SH FAILURES"):page.index(".SH OPTIONS")]
    for k in kinds:
        assert "\n.B %s\n" % k in section, k


@pytest.fixture
def black_hole():
    """A port on 127.0.0.1 whose connections never complete (mrtest.BlackHole)."""
    for _ in range(5):
        try:
            hole = BlackHole(free_port(), host="127.0.0.1")
            break
        except OSError:         # the free port was taken meanwhile
            continue
    else:
        pytest.fail("no free port on 127.0.0.1 after 5 tries")
    if not hole.works:
        hole.close()
        pytest.fail("this network stack completes connections past a full accept queue")
    yield hole.srv.getsockname()[1]
    hole.close()


def test_a_connection_nobody_answers(daemon, black_hole):
    """A black hole: the whole connect phase is bounded by connect_timeout."""
    d = config(daemon, black_hole, tls="disabled", connect_timeout="1s")
    r = d.mailrelay(["test", "--to", RCPT])
    assert r.rc == 69, r
    lines = r.out_text.splitlines()
    assert lines[-3].startswith("FAILED at connect: connect to ") and "timed out after 1s" in lines[-3], \
        r.out_text
    assert lines[-2] == ("  what it means: nothing answered at all: a firewall drops the packets, or "
                         "the host is down"), r.out_text


def test_an_interrupted_test_leaves_nothing_behind(daemon, black_hole):
    """Ctrl-C while it waits on a connection nobody answers: exit 130, and
    the run's private spool is removed."""
    before = set(glob.glob("/tmp/mailrelay-test-*"))
    d = config(daemon, black_hole, tls="disabled", connect_timeout="60s")
    p = subprocess.Popen([d.build.mailrelay, "-c", d.conf, "test", "--to", RCPT],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = b""
    while b"connect   127.0.0.1" not in line:     # the attempt is under way
        line = p.stdout.readline()
        assert line, p.stderr.read()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=10)
    assert p.returncode == 130, (out, err)
    assert out.decode().splitlines()[-1].startswith("INTERRUPTED at connect ("), out
    assert set(glob.glob("/tmp/mailrelay-test-*")) == before


def test_an_unprivileged_user_gets_no_secret_and_sends_nothing(daemon, auth_smarthost, pki, workdir):
    """mailrelay is not setgid: as nobody, a configuration only root may
    read is refused with one line naming no secret; and one they may read
    that names a secret file they may not is refused before any connection."""
    require_root("running the client as another user")
    sh = auth_smarthost()
    d = config(daemon, sh.port, tls="required", tls_ca_file=pki.ca.cert, username=USER,
               password=PASSWORD)
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    os.chmod(d.conf, 0o600)
    r = run(nobody + [d.build.mailrelay, "-c", d.conf, "test", "--to", RCPT])
    assert r.rc == 78 and r.out_text == "", r
    assert len(r.err_text.splitlines()) == 1 and "Permission denied" in r.err_text, r
    assert PASSWORD not in r.err_text
    # readable, but the secret it names is root's
    secret = os.path.join(workdir, "root-only.secret")
    with open(secret, "w") as f:
        f.write(PASSWORD + "\n")
    os.chmod(secret, 0o600)
    os.chmod(workdir, 0o755)
    d2 = config(daemon, sh.port, tls="required", tls_ca_file=pki.ca.cert, username=USER,
                password_file=secret)
    os.chmod(os.path.dirname(d2.conf), 0o755)
    os.chmod(d2.conf, 0o644)
    r = run(nobody + [d2.build.mailrelay, "-c", d2.conf, "test", "--to", RCPT])
    assert r.rc == 78, r
    assert "cannot run: " in r.out_text and "Permission denied" in r.out_text, r
    assert PASSWORD not in r.out_text + r.err_text
    assert sh.delivered() == [] and sh.client_sessions() == [], sh.summary()

"""`mailrelay check-config` catches what the daemon would refuse, and what
would keep mail from leaving, without sending any (issue 12, point 3).

Errors go to stderr as "mailrelay: FILE:LINE: KEY: why" and exit 78;
warnings to stdout as "FILE:LINE: warning: KEY: why", then "FILE: OK, N
warnings" and exit 0.  Each check has one test asserting the exact lines.
What the daemon itself refuses is checked with its own loader: the tests
of those run mailrelayd on the same file and expect the same line.

No test uses the network: DNS tests run in private mount and network
namespaces with their own /etc/nsswitch.conf and /etc/resolv.conf.
"""
import datetime
import os
import pwd
import subprocess

import pytest

from mrtest import (base_config, client_env, free_port, line_of, quote, render_config,
                    require_root, run, smarthost_opts)

ADMIN = quote("ops@relay.test")


def write(workdir, top=None, sh=None, name="check.conf", mode=0o640, extra=""):
    """A config that draws no warning (admin_address set, a loopback smarthost
    without a username) with top's and sh's keys over it.  Returns (path, text)."""
    conf = base_config(workdir, free_port())
    conf["admin_address"] = ADMIN
    conf.update(top or {})
    hosts = [] if sh is None else [("main", smarthost_opts(free_port(), **sh))]
    text = render_config(conf, hosts, extra)
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path, text


def check(build, path, prefix=()):
    r = run(list(prefix) + [build.mailrelay, "-c", path, "check-config"])
    return r.rc, r.out_text.splitlines(), r.err_text.splitlines()


def assert_error(build, path, line, daemon_too=False):
    rc, out, err = check(build, path)
    assert (rc, err) == (78, ["mailrelay: " + line]), (rc, out, err)
    if daemon_too:
        r = run([build.mailrelayd, "-c", path, "-f"])
        assert r.rc == 78, r
        assert r.err_text.splitlines() == ["mailrelayd: " + line], r


def assert_warning(build, path, line, prefix=()):
    rc, out, err = check(build, path, prefix)
    assert (rc, err, out) == (0, [], [line, "%s: OK, 1 warning" % path]), (rc, out, err)


def secret(workdir, name="pw", mode=0o600, owner=None):
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write("s3cret\n")
    os.chmod(path, mode)
    if owner is not None:
        os.chown(path, *owner)
    return path


AUTH = {"username": quote("relay@relay.test"), "tls": "required"}


# ---------------------------------------------------------------------------
# a clean file

def test_a_clean_file_is_ok(build, workdir):
    path, _ = write(workdir, sh={})
    rc, out, err = check(build, path)
    assert (rc, out, err) == (0, ["%s: OK" % path], [])


# ---------------------------------------------------------------------------
# what the daemon refuses, found by its own loader

def test_missing_password_file(build, workdir):
    missing = os.path.join(workdir, "nope")
    path, text = write(workdir, sh=dict(AUTH, password_file=quote(missing)))
    assert_error(build, path, "%s:%d: password_file: %s: No such file or directory (smarthost main)"
                 % (path, line_of(text, "password_file"), missing), daemon_too=True)


def test_world_readable_password_file(build, workdir):
    pw = secret(workdir, mode=0o644)
    path, text = write(workdir, sh=dict(AUTH, password_file=quote(pw)))
    assert_error(build, path, "%s:%d: password_file: %s is readable by others (mode 0644); "
                 "run chmod o-rw %s (smarthost main)" % (path, line_of(text, "password_file"), pw, pw),
                 daemon_too=True)


def test_missing_ca_file(build, workdir):
    missing = os.path.join(workdir, "ca.pem")
    path, text = write(workdir, sh={"tls": "required", "tls_ca_file": quote(missing)})
    assert_error(build, path, "%s:%d: tls_ca_file: cannot load CA certificates from %s: "
                 "No such file or directory (smarthost main)"
                 % (path, line_of(text, "tls_ca_file"), missing), daemon_too=True)


def test_ca_file_that_does_not_parse(build, workdir):
    bad = os.path.join(workdir, "ca.pem")
    with open(bad, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    path, text = write(workdir, sh={"tls": "required", "tls_ca_file": quote(bad)})
    rc, out, err = check(build, path)
    assert rc == 78, (out, err)
    assert len(err) == 1 and err[0].startswith("mailrelay: %s:%d: tls_ca_file: cannot load CA "
                                               "certificates from %s: " % (
                                                   path, line_of(text, "tls_ca_file"), bad)), err


def test_client_key_that_does_not_match_its_certificate(build, workdir, pki):
    path, text = write(workdir, sh={"tls": "required", "tls_client_cert": quote(pki.client.cert),
                                    "tls_client_key": quote(pki.good.key)})
    rc, out, err = check(build, path)
    assert rc == 78, (out, err)
    want = "mailrelay: %s:%d: tls_client_key: " % (path, line_of(text, "tls_client_key"))
    assert len(err) == 1 and err[0].startswith(want) and pki.good.key in err[0], err


# ---------------------------------------------------------------------------
# the daemon's user: what it reads again at every reload, and opens after start

def nobody():
    require_root("checking a file as another user")
    return pwd.getpwnam("nobody")


def test_password_file_the_daemon_user_cannot_read(build, workdir):
    """Root reads it; the delivery process, started as `user`, could not:
    mailrelayd does not start (test_delivery_process)."""
    nb = nobody()
    pw = secret(workdir, mode=0o600, owner=(0, 0))
    path, text = write(workdir, top={"user": quote("nobody")},
                       sh=dict(AUTH, password_file=quote(pw)))
    assert_error(build, path, "%s:%d: password_file: %s: Permission denied (smarthost main), as "
                 "user nobody: the daemon's delivery process runs as nobody and reads it whenever it starts "
                 "(mailrelayd does not start)"
                 % (path, line_of(text, "password_file"), pw))
    # the same file given to that user passes
    os.chown(pw, nb.pw_uid, nb.pw_gid)
    rc, out, err = check(build, path)
    assert (rc, err) == (0, []), (out, err)


def test_log_file_the_daemon_user_cannot_create(build, workdir):
    nobody()
    logdir = os.path.join(workdir, "logs")
    os.mkdir(logdir, 0o755)
    log = os.path.join(logdir, "mailrelay.log")
    path, text = write(workdir, top={"user": quote("nobody"), "log_file": quote(log)}, sh={})
    assert_error(build, path, "%s:%d: log_file: %s: cannot be created by user nobody (Permission "
                 "denied): the daemon opens it as that user at start and would not start"
                 % (path, line_of(text, "log_file"), log))


def test_unknown_user_is_a_warning(build, workdir):
    path, text = write(workdir, top={"user": quote("mr-check-nosuchuser")}, sh={})
    assert_warning(build, path, "%s:%d: warning: user: \"mr-check-nosuchuser\": no such user: "
                   "mailrelayd started as root stops at start; create the user, or set user"
                   % (path, line_of(text, "user =")))


# ---------------------------------------------------------------------------
# certificates

def not_after(cert):
    out = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-enddate"],
                         capture_output=True, text=True, check=True).stdout
    when = datetime.datetime.strptime(out.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y %Z")
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def test_expired_client_certificate(build, workdir, pki):
    path, text = write(workdir, sh={"tls": "required", "tls_client_cert": quote(pki.expired.cert),
                                    "tls_client_key": quote(pki.expired.key)})
    assert_error(build, path, "%s:%d: tls_client_cert: %s: certificate \"localhost\" expired on %s "
                 "(smarthost main)" % (path, line_of(text, "tls_client_cert"), pki.expired.cert,
                                      not_after(pki.expired.cert)))


def test_client_certificate_near_expiry_is_a_warning(build, workdir, pki):
    """pki.client is valid for 30 days from the session's start."""
    path, text = write(workdir, sh={"tls": "required", "tls_client_cert": quote(pki.client.cert),
                                    "tls_client_key": quote(pki.client.key)})
    assert_warning(build, path, "%s:%d: warning: tls_client_cert: %s: certificate \"relay.test\" "
                   "expires on %s, in less than 30 days (smarthost main)"
                   % (path, line_of(text, "tls_client_cert"), pki.client.cert,
                      not_after(pki.client.cert)))


# ---------------------------------------------------------------------------
# placeholders

@pytest.mark.parametrize("host", ["mail.example.com", "smtp.example.com", "example.net",
                                  "relay.corp.EXAMPLE.org"])
def test_placeholder_host_is_an_error(build, workdir, host):
    path, text = write(workdir, sh={"host": quote(host)})
    assert_error(build, path, "%s:%d: host: \"%s\" is a placeholder: names under example.com, "
                 "example.net and example.org are reserved for documentation and accept no mail; "
                 "set the SMTP server your provider gives (smarthost main)"
                 % (path, line_of(text, "host ="), host))


def test_localhost_with_a_username_is_a_warning(build, workdir):
    pw = secret(workdir)
    path, text = write(workdir, sh={"host": quote("localhost"), "username": quote("u@relay.test"),
                                    "password_file": quote(pw)})
    assert_warning(build, path, "%s:%d: warning: host: localhost with a username: is this a "
                   "placeholder? A server on this machine seldom asks for a password; set the SMTP "
                   "server your provider gives (smarthost main)" % (path, line_of(text, "host =")))


# ---------------------------------------------------------------------------
# DNS, in private namespaces: no network is used

class PrivateEtc:
    """Runs argv with /etc/nsswitch.conf and /etc/resolv.conf of the test's
    choosing, in new mount and network namespaces (only a loopback that is down)."""

    def __init__(self, workdir, nsswitch, resolv):
        require_root("an overlay on /etc in a private mount namespace")
        self.upper = os.path.join(workdir, "etc-upper")
        self.work = os.path.join(workdir, "etc-work")
        os.makedirs(self.upper)
        os.makedirs(self.work)
        for name, text in (("nsswitch.conf", nsswitch), ("resolv.conf", resolv),
                           ("hosts", "127.0.0.1 localhost\n")):
            with open(os.path.join(self.upper, name), "w") as f:
                f.write(text)

    def prefix(self):
        script = 'mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1,workdir=$2" /etc && shift 2 && exec "$@"'
        return ["unshare", "-m", "-n", "sh", "-c", script, "etc", self.upper, self.work]


def test_host_that_does_not_resolve_is_a_warning(build, workdir):
    etc = PrivateEtc(workdir, "hosts: files\n", "nameserver 127.0.0.1\n")
    path, text = write(workdir, sh={"host": quote("smtp.relay.invalid")})
    assert_warning(build, path, "%s:%d: warning: host: \"smtp.relay.invalid\" does not resolve "
                   "(Name or service not known): check the spelling (smarthost main)"
                   % (path, line_of(text, "host =")), prefix=etc.prefix())


def test_dns_out_of_reach_is_a_warning(build, workdir):
    etc = PrivateEtc(workdir, "hosts: files dns\n", "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    path, text = write(workdir, sh={"host": quote("smtp.relay.invalid")})
    assert_warning(build, path, "%s:%d: warning: host: \"smtp.relay.invalid\" cannot be resolved "
                   "now (Temporary failure in name resolution): DNS is not reachable from here; "
                   "the daemon retries (smarthost main)" % (path, line_of(text, "host =")),
                   prefix=etc.prefix())


# ---------------------------------------------------------------------------
# weakened security and local mail

def test_dotless_hostname_is_a_warning(build, workdir):
    path, text = write(workdir, top={"hostname": quote("relay")}, sh={})
    assert_warning(build, path, "%s:%d: warning: hostname: \"relay\" has no dot: smarthosts often "
                   "refuse it in EHLO and addresses such as root@relay do not route; set hostname "
                   "in the configuration or write the mail name to /etc/mailname"
                   % (path, line_of(text, "hostname =")))


def test_admin_address_unset_is_a_warning(build, workdir):
    path, _ = write(workdir, top={"admin_address": None}, sh={})
    assert_warning(build, path, "%s: warning: admin_address: not set: mail to root and other local "
                   "users goes to root@relay.test, which seldom reaches a person; set it to a "
                   "mailbox someone reads" % path)


def test_no_smarthost_is_a_warning(build, workdir):
    path, _ = write(workdir)
    assert_warning(build, path, "%s: warning: smarthost: none is configured: mail is accepted and "
                   "kept in the queue" % path)


def test_inline_password_in_a_file_others_can_read(build, workdir):
    path, text = write(workdir, sh=dict(AUTH, password=quote("s3cret")), mode=0o644)
    assert_warning(build, path, "%s:%d: warning: password: inline, in a file others may read "
                   "(mode 0644): run chmod o-r %s, or move it to a password_file (smarthost main)"
                   % (path, line_of(text, "password ="), path))
    os.chmod(path, 0o640)
    rc, out, err = check(build, path)
    assert (rc, out, err) == (0, ["%s: OK" % path], [])


@pytest.mark.parametrize("tls, why", [
    ("disabled", "the password is never sent in clear, so AUTH fails and mail waits"),
    ("opportunistic", "anyone on the path can strip STARTTLS, and then the password is not sent "
     "(mail waits) or, with auth_allow_plaintext, sent in clear"),
])
def test_no_tls_towards_another_host_with_a_username(build, workdir, tls, why):
    pw = secret(workdir)
    path, text = write(workdir, sh={"host": quote("192.0.2.25"), "tls": tls,
                                    "username": quote("u@relay.test"), "password_file": quote(pw)})
    assert_warning(build, path, "%s:%d: warning: tls: %s towards 192.0.2.25 with a username: %s; "
                   "set tls = required (port 587) or implicit (port 465) (smarthost main)"
                   % (path, line_of(text, "tls ="), tls, why))
    # towards this machine, it is not
    path, text = write(workdir, sh={"tls": tls, "username": quote("u@relay.test"),
                                    "password_file": quote(pw)}, name="loopback.conf")
    rc, out, err = check(build, path)
    assert (rc, out, err) == (0, ["%s: OK" % path], [])


def test_tls_verify_no_is_a_warning(build, workdir):
    path, text = write(workdir, sh={"tls": "required", "tls_verify": "no"})
    assert_warning(build, path, "%s:%d: warning: tls_verify: no: the server's certificate is not "
                   "checked, so anyone on the path can read the mail and the password; trust a "
                   "private CA with tls_ca_file, or pin it with tls_fingerprint (smarthost main)"
                   % (path, line_of(text, "tls_verify")))


def test_auth_allow_plaintext_is_a_warning(build, workdir):
    path, text = write(workdir, sh={"auth_allow_plaintext": "yes"})
    assert_warning(build, path, "%s:%d: warning: auth_allow_plaintext: yes: the password is sent "
                   "unencrypted to a server that offers no TLS (smarthost main)"
                   % (path, line_of(text, "auth_allow_plaintext")))


# ---------------------------------------------------------------------------
# an unquoted '#' or ';' inside a value: refused by the loader itself

@pytest.mark.parametrize("value, why", [
    ("abc#def", "an unquoted '#' starts a comment, so the value would end before it"),
    ("abc;def", "an unquoted ';' ends the value, so it would be cut there"),
])
def test_unquoted_comment_or_separator_in_a_password(build, workdir, value, why):
    """Before, `password = abc#def` loaded as "abc" and AUTH failed later;
    the password itself is never shown."""
    path, text = write(workdir, sh=dict(AUTH, password=value))
    assert_error(build, path, "%s:%d: password: %s; put the whole value in double quotes: "
                 "password = \"...\"" % (path, line_of(text, "password ="), why), daemon_too=True)


@pytest.mark.parametrize("value, cut, fixed", [
    ("relay#1", "relay", '"relay#1"'),
    ("relay;one", "relay", '"relay;one"'),
    ("relay; one", "relay", '"relay; one"'),
])
def test_unquoted_comment_or_separator_in_a_value_shows_the_quoted_form(build, workdir, value, cut,
                                                                         fixed):
    path, text = write(workdir, sh={"helo_name": value})
    sign = "#" if "#" in value else ";"
    how = ("starts a comment, so the value would be cut to" if sign == "#"
           else "ends the value, so it would be cut to")
    assert_error(build, path, "%s:%d: helo_name: an unquoted '%s' %s \"%s\"; write helo_name = %s"
                 % (path, line_of(text, "helo_name"), sign, how, cut, fixed), daemon_too=True)


def test_separators_and_comments_that_are_meant_still_load(build, workdir):
    path, _ = write(workdir, sh={"timeout": "10s; # a comment", "data_timeout": "10m;",
                                 "tls": "disabled; helo_name = relay.test"},
                    extra="route { from = @relay.test; smarthost = main; }  # trailing")
    rc, out, err = check(build, path)
    assert (rc, out, err) == (0, ["%s: OK" % path], [])


# ---------------------------------------------------------------------------
# more files the daemon reads

def test_expired_certificate_in_the_ca_file(build, workdir, pki):
    path, text = write(workdir, sh={"tls": "required", "tls_ca_file": quote(pki.expired.cert)})
    assert_error(build, path, "%s:%d: tls_ca_file: %s: certificate \"localhost\" expired on %s "
                 "(smarthost main)" % (path, line_of(text, "tls_ca_file"), pki.expired.cert,
                                      not_after(pki.expired.cert)))


def test_what_the_aliases_file_skips_is_a_warning(build, workdir):
    aliases = os.path.join(workdir, "aliases")
    with open(aliases, "w") as f:
        f.write("root ops@relay.test\n")
    path, text = write(workdir, sh={})
    assert_warning(build, path, "%s:%d: warning: aliases_file: %s:1: no ':' in alias entry; skipped"
                   % (path, line_of(text, "aliases_file"), aliases))


def test_ca_path_the_daemon_user_cannot_search(build, workdir, pki):
    nobody()
    capath = os.path.join(workdir, "ca-path")
    os.mkdir(capath, 0o700)
    path, text = write(workdir, top={"user": quote("nobody")},
                       sh={"tls": "required", "tls_ca_path": quote(capath)})
    assert_error(build, path, "%s:%d: tls_ca_path: %s: cannot be searched by user nobody (Permission "
                 "denied): the daemon looks certificates up there as that user, and every "
                 "verification would fail (smarthost main)" % (path, line_of(text, "tls_ca_path"),
                                                              capath))
    os.chmod(capath, 0o755)
    rc, out, err = check(build, path)
    assert (rc, out, err) == (0, ["%s: OK" % path], [])


def test_oauth2_client_certificate_near_expiry_is_a_warning(build, workdir, pki):
    section = ('{ client_id = "11111111-2222-3333-4444-555555555555"; '
               'token_url = "https://127.0.0.1:9/token"; client_certificate = %s; client_key = %s }'
               % (quote(pki.client.cert), quote(pki.client.key)))
    path, text = write(workdir, sh={"auth": "xoauth2", "username": quote("relay@relay.test"),
                                    "oauth2": section})
    text = text.replace("oauth2 = {", "oauth2 {")
    with open(path, "w") as f:
        f.write(text)
    assert_warning(build, path, "%s:%d: warning: client_certificate: %s: certificate \"relay.test\" "
                   "expires on %s, in less than 30 days (smarthost main)"
                   % (path, line_of(text, "client_certificate"), pki.client.cert,
                      not_after(pki.client.cert)))


def test_an_aliases_loop_is_a_warning(build, workdir):
    aliases = os.path.join(workdir, "aliases")
    with open(aliases, "w") as f:
        f.write("ops: backup\nbackup: ops\n")
    path, text = write(workdir, sh={})
    rc, out, err = check(build, path)
    where = "%s:%d: warning: aliases_file: %s:" % (path, line_of(text, "aliases_file"), aliases)
    assert (rc, err) == (0, []), (out, err)
    assert out == [where + "1: alias ops loops back to itself",
                   where + "2: alias backup loops back to itself",
                   "%s: OK, 2 warnings" % path], out

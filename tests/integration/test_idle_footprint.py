"""What an idle daemon maps (issue 14: idle RSS at most 3 MB).

libcurl serves only the OAuth2 token requests (daemon/httpc.c), so
mailrelayd does not link it: it loads libcurl.so.4 the first time it needs
a token (daemon/curlload.h).  A daemon without an OAuth2 smarthost never
maps libcurl nor its chain of dependencies (gnutls, p11-kit, krb5, ldap,
ssh2, ...), about 4 MB of resident pages each daemon used to carry.

A TLS smarthost that trusts the system's CAs has its store read by its
first connection, not at start (daemon/tls.c): parsing the bundle costs
about 1.5 MB that a smarthost not used yet need not hold.  And when the
store's directory holds hashed names, the bundle is not parsed at all: a
verification reads the certificates its chain names from the directory.

When libcurl cannot be loaded, the token request fails with one line
naming the library and the loader's reason, the OAuth2 smarthost is
deferred as for any token failure (AUTH_TOKEN), the rest of the daemon
works, and a later request loads the library once it is there again.  The
library is made unloadable for the daemon alone: it runs in a private
mount namespace with an empty file bound over the library (root only, as
the suite runs)."""
import os
import re
import shutil
import smtplib
import subprocess

import pytest

from mrtest import (delivery_pids, make_message, quote, require_root, run, smarthost_opts, to_crlf,
                    vmrss_kib, wait_until)
from test_oauth2 import (CLIENT_ID, RCPT, endpoint, oauth_host, oauth_smarthost,  # noqa: F401
                         sent, start, submit, write_secret)

# the libraries libcurl brings and nothing else in the daemon needs
CURL_CHAIN = ("libcurl", "libgnutls", "libp11-kit", "libkrb5", "libgssapi_krb5", "libldap",
              "libssh2", "librtmp", "libnghttp2", "libidn2", "libpsl", "libnettle")
# libsystemd and what Debian 12 builds it with: the daemon speaks systemd's
# protocols itself (daemon/sysd.c) and maps none of them
SYSTEMD_CHAIN = ("libsystemd", "liblzma", "libzstd", "liblz4", "libgcrypt", "libgpg-error", "libcap.")
# bind an empty file ($MR_EMPTY) over the library ($MR_LIB), in the daemon's namespace only
NS_NO_CURL = 'mount --bind "$MR_EMPTY" "$MR_LIB" && exec "$@"'


def mapped(pid):
    """The file names mapped into process pid."""
    with open("/proc/%d/maps" % pid) as f:
        return {os.path.basename(l.split()[5]) for l in f if len(l.split()) > 5}


def curl_chain_in(names):
    return sorted(n for n in names if n.startswith(CURL_CHAIN))


def loader_lines(d):
    """The daemon's own lines about loading libcurl (not the session's echo of them)."""
    return [l for l in d.log_lines() if l.startswith("mailrelayd: smarthost m365: cannot load")]


def libcurl_path(build):
    """The file libcurl.so.4 resolves to, from the CLI (which links it)."""
    r = run(["ldd", build.mailrelay])
    m = re.search(r"^\s*libcurl\.so\.4 => (\S+)", r.out_text, re.M)
    assert m, "mailrelay links no libcurl.so.4: %s" % r.out_text
    return os.path.realpath(m.group(1))


def test_idle_daemon_without_oauth2_maps_no_libcurl(daemon, smarthost, build):
    """The daemon maps no TLS library, and its delivery process, while it
    runs (the connection kept for reuse_time), no libcurl."""
    sh = smarthost()
    d = daemon(smarthosts=[("main", smarthost_opts(sh.port, reuse_time="60s"))])
    msg = make_message(subject="plain", sender="a@example.org", to=(RCPT,))
    assert d.sendmail(["-i", "-f", "a@example.org", RCPT], msg).rc == 0
    d.wait_for_record(to=RCPT, status="sent")
    (child,) = delivery_pids(d.proc.pid)
    names = mapped(child)
    assert "libcrypto.so.3" in names, names      # the listing is the delivery process's
    assert curl_chain_in(names) == [], "the delivery process maps %s" % curl_chain_in(names)
    daemon_names = mapped(d.proc.pid)
    assert [n for n in daemon_names if n.startswith(("libssl", "libcrypto", "libevent_openssl"))] == [], \
        daemon_names
    assert curl_chain_in(daemon_names) == []
    for prog in (build.mailrelayd, build.mailrelay_deliver):
        r = run(["ldd", prog])
        assert "libcurl" not in r.out_text, r.out_text
    assert "libssl" not in run(["ldd", build.mailrelayd]).out_text


def test_libcurl_is_loaded_by_the_first_token_request(daemon, workdir, pki, endpoint,
                                                     oauth_smarthost):
    endpoint.clients[CLIENT_ID] = "cs-" + os.urandom(8).hex()
    sh = oauth_smarthost(endpoint)
    secret = write_secret(workdir, "client.secret", endpoint.clients[CLIENT_ID])
    opts = oauth_host(pki, sh, endpoint, client_secret_file=secret)
    opts["reuse_time"] = "60s"     # the delivery process stays while the connection does
    d = start(daemon, [("m365", opts)])
    assert curl_chain_in(mapped(d.proc.pid)) == []
    msg, qid = submit(d, "first token")
    sent(d, qid)
    (child,) = delivery_pids(d.proc.pid)
    assert "libcurl.so.4" in {n.split(".so")[0] + ".so.4" for n in mapped(child)
                              if n.startswith("libcurl")}
    assert curl_chain_in(mapped(d.proc.pid)) == []


def test_unloadable_libcurl_defers_the_oauth2_smarthost_only(build, daemon, workdir, pki, endpoint,
                                                             oauth_smarthost, smarthost):
    require_root("a mount namespace with libcurl hidden")
    lib = libcurl_path(build)
    empty = os.path.join(workdir, "empty")
    open(empty, "w").close()
    endpoint.clients[CLIENT_ID] = "cs-" + os.urandom(8).hex()
    sh = oauth_smarthost(endpoint)
    other = smarthost()
    secret = write_secret(workdir, "client.secret", endpoint.clients[CLIENT_ID])
    d = daemon(smarthosts=[("m365", oauth_host(pki, sh, endpoint, client_secret_file=secret)),
                           ("other", smarthost_opts(other.port))],
               extra='route { from = "@contoso.test"; smarthost = m365 }', start=False)
    d.wrapper = ["env", "MR_EMPTY=" + empty, "MR_LIB=" + lib,
                 "unshare", "-m", "--propagation", "private", "sh", "-c", NS_NO_CURL, "sh"]
    d.config_text = d.config_text.replace("oauth2 = {", "oauth2 {")
    with open(d.conf, "w") as f:
        f.write(d.config_text)
    d.start()

    msg, qid = submit(d, "through m365", sender="app@contoso.test")
    rec = d.wait_for_record(id=qid, to=RCPT, status="deferred", timeout=15)
    # one line naming the library and the loader's reason
    # (one per token request: the background renewal may make another before the end)
    lines = loader_lines(d)
    assert len(lines) >= 1, d.log_text()[-3000:]
    for line in lines:
        assert re.match(r"^mailrelayd: smarthost m365: cannot load libcurl\.so\.4: "
                        r"/\S*/libcurl\.so\.4[.\d]*: file too short$", line), line
    assert rec["dsn"] == "4.7.0" and "cannot load libcurl.so.4" in rec["text"], rec["line"]
    assert endpoint.requests() == [], endpoint.summary()
    # the failure kind is AUTH_TOKEN's, as for any token failure
    text = d.mailrelay(["status"]).out_text
    assert re.search(r"last error .*cannot load libcurl\.so\.4", text), text
    assert "    why: no OAuth2 token could be had for the smarthost" in text, text
    q = [m for m in d.queue_json() if m["id"] == qid]
    assert len(q) == 1 and q[0]["recipients"][0]["status"] == "pending", d.queue_json()

    # the daemon runs on and the plain smarthost delivers
    msg2, qid2 = submit(d, "through the other smarthost")
    sent(d, qid2)
    assert [t.content for t in other.delivered()] == [to_crlf(msg2)]
    d.check_alive()
    assert curl_chain_in(mapped(d.proc.pid)) == []

    # the library back (the bind mount gone): the next request loads it and delivers
    subprocess.run(["nsenter", "-t", str(d.proc.pid), "-m", "umount", lib], check=True)
    d.mailrelay(["flush"])
    sent(d, qid)
    assert [r.status for r in endpoint.requests()] == [200], endpoint.summary()
    # no load failed after the token was had
    log = d.log_lines()
    got = max(i for i, l in enumerate(log) if "smarthost m365: OAuth2 access token obtained" in l)
    assert not any("cannot load libcurl" in l for l in log[got:]), d.log_text()[-3000:]


def test_daemon_maps_no_libsystemd(daemon, smarthost, build, workdir):
    """Started as systemd starts it (NOTIFY_SOCKET, WATCHDOG_USEC), with a
    message delivered: readiness still reaches the manager, and neither
    libsystemd nor its compression and crypto libraries are mapped."""
    import socket
    path = os.path.join(workdir, "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(10)
    d = daemon(smarthost=smarthost(), start=False)
    d.wrapper = ["env", "NOTIFY_SOCKET=" + path, "WATCHDOG_USEC=10000000"]
    d.start()
    got = []
    while "READY=1" not in got:
        got += s.recv(4096).decode().split("\n")
    msg = make_message(subject="plain", sender="a@example.org", to=(RCPT,))
    assert d.sendmail(["-i", "-f", "a@example.org", RCPT], msg).rc == 0
    d.wait_for_record(to=RCPT, status="sent")
    names = mapped(d.proc.pid)
    assert "libc.so.6" in names, names
    assert sorted(n for n in names if n.startswith(SYSTEMD_CHAIN)) == [], names
    assert "libsystemd" not in run(["ldd", build.mailrelayd]).out_text
    s.close()


def test_daemon_maps_the_event_loop_once(daemon, smarthost):
    """libevent's event loop is mapped once: from libevent_core, which
    libevent_openssl needs too, with evdns from libevent_extra.  The whole
    libevent beside them was a second copy of the loop's code.  The daemon
    maps libevent_core alone: its delivery process resolves names and
    speaks TLS."""
    d = daemon(smarthosts=[("main", smarthost_opts(smarthost().port, reuse_time="60s"))])
    msg = make_message(subject="plain", sender="a@example.org", to=(RCPT,))
    assert d.sendmail(["-i", "-f", "a@example.org", RCPT], msg).rc == 0
    d.wait_for_record(to=RCPT, status="sent")
    (child,) = delivery_pids(d.proc.pid)
    for pid, want in ((d.proc.pid, ["libevent_core-2.1"]),
                      (child, ["libevent_core-2.1", "libevent_extra-2.1", "libevent_openssl-2.1"])):
        names = mapped(pid)
        libevent = sorted(n.split(".so")[0] for n in names if n.startswith("libevent"))
        assert libevent == want, names


BACKLOG = 1200


@pytest.mark.mailrelay_timeout(180)
def test_memory_goes_back_once_a_large_queue_drains(daemon, smarthost, build):
    """1,200 messages queued while the smarthost is down, then delivered.
    Once the queue is down to an eighth of the most it held (at least 1,000
    messages), the daemon gives its free heap back to the system and says
    how much; it does so once, as the backlog drains.  Without it, a
    daemon that had held 100,000 messages kept 59 MB with its queue empty."""
    sh = smarthost()
    sh.stop()
    d = daemon(sh)
    msg = make_message(subject="backlog", sender="a@example.org", to=(RCPT,))
    with smtplib.SMTP("127.0.0.1", d.tcp_port, timeout=30) as s:
        for _ in range(BACKLOG):
            s.sendmail("a@example.org", [RCPT], msg)
    assert len(d.queue_json()) == BACKLOG
    returned = r"mailrelayd: queue down to (\d+) messages? from (\d+): (\d+) kB of memory returned to the system \((\d+) kB resident\)$"
    assert not [l for l in d.log_lines() if re.search(returned, l)]
    sh.start()
    d.mailrelay(["flush"])
    m = d.wait_for_log(returned, timeout=120)
    left, most, back, resident = (int(g) for g in m.groups())
    assert most == BACKLOG and left <= most // 8, m.group(0)
    assert resident > 0
    if not sanitized(build):	# AddressSanitizer's allocator is not glibc's: nothing for it to trim
        assert back > 0, m.group(0)
    wait_until(lambda: len(sh.delivered()) == BACKLOG, 120, what="the backlog delivered")
    wait_until(lambda: d.queue_json() == [], 30, what="the queue empty")
    # once: the queue never held 1,000 again
    assert len([l for l in d.log_lines() if re.search(returned, l)]) == 1


def sanitized(build):
    return "libasan" in run(["ldd", build.mailrelayd]).out_text


def test_system_ca_store_is_read_by_the_first_connection(daemon, smarthost, workdir, pki):
    """The bundle the system store names (SSL_CERT_FILE here) does not
    exist when the daemon starts and is written before the first message:
    the connection reads it and verifies the smarthost.  Read at start, as
    before, the store stayed empty and the message was deferred."""
    bundle = os.path.join(workdir, "system-cas.pem")
    sh = smarthost(tls_context=pki.server_context("good"))
    d = daemon(smarthosts=[("main", smarthost_opts(sh.port, host=quote("localhost"),
                                                   tls="required"))], start=False)
    d.wrapper = ["env", "SSL_CERT_FILE=" + bundle, "SSL_CERT_DIR=" + workdir]
    d.start()
    shutil.copy(pki.ca.cert, bundle)
    msg = make_message(subject="system store", sender="a@example.org", to=(RCPT,))
    assert d.sendmail(["-i", "-f", "a@example.org", RCPT], msg).rc == 0
    rec = d.wait_for_record(to=RCPT, status="sent", timeout=15)
    assert rec["verify"] == "ok" and rec["tls"].startswith("TLSv1."), rec["line"]
    assert [t.content for t in sh.delivered()] == [to_crlf(msg)]
    assert d.outcomes(status="deferred") == [], d.outcomes()


def other_ca_server(pki):
    """A server certificate for localhost signed by client_ca, not by ca."""
    if getattr(pki, "other_ca_good", None) is None:
        pki.other_ca_good = pki._issue(pki.client_ca, "other-ca-good", "localhost",
                                       ["DNS:localhost", "IP:127.0.0.1"])
    return pki.other_ca_good


@pytest.mark.parametrize("signer", ["ca_in_directory", "ca_in_bundle_only"])
def test_system_ca_store_is_its_hashed_directory(daemon, smarthost, workdir, pki, signer):
    """The system store's directory (SSL_CERT_DIR here) holds hashed names:
    a chain is verified through it, and the bundle (SSL_CERT_FILE here,
    with another CA) is not read, not even for a chain it would verify:
    parsed whole it held about 1.4 MB per context (daemon/tls.c).
    Opportunistic TLS logs the verdict without enforcing it."""
    bundle = os.path.join(workdir, "system-cas.pem")
    shutil.copy(pki.client_ca.cert, bundle)
    cert = pki.good if signer == "ca_in_directory" else other_ca_server(pki)
    sh = smarthost(tls_context=pki.server_context(cert))
    d = daemon(smarthosts=[("main", smarthost_opts(sh.port, host=quote("localhost"),
                                                   tls="opportunistic"))], start=False)
    d.wrapper = ["env", "SSL_CERT_FILE=" + bundle, "SSL_CERT_DIR=" + pki.ca_path]
    d.start()
    msg = make_message(subject="system store " + signer, sender="a@example.org", to=(RCPT,))
    assert d.sendmail(["-i", "-f", "a@example.org", RCPT], msg).rc == 0
    rec = d.wait_for_record(to=RCPT, status="sent", timeout=15)
    assert rec["tls"].startswith("TLSv1."), rec["line"]
    if signer == "ca_in_directory":
        assert rec["verify"] == "ok", rec["line"]
    else:
        assert rec["verify"].startswith("fail (") and "issuer" in rec["verify"], rec["line"]


def test_idle_tls_smarthost_costs_no_ca_bundle(build, daemon, smarthost):
    """Idle, a daemon whose TLS smarthost trusts the system's CAs holds its
    TLS context but not the parsed bundle.  On Debian 12 (CI): about
    2,550 kB more than with a plain smarthost, 3,960 kB when the bundle was
    parsed at start; the bound lies between."""
    if sanitized(build):
        pytest.skip("resident sizes under AddressSanitizer say nothing of the daemon's")
    plain = daemon(smarthost=smarthost())
    tls = daemon(smarthosts=[("main", smarthost_opts(smarthost().port, tls="required"))])
    extra = vmrss_kib(tls.proc.pid) - vmrss_kib(plain.proc.pid)
    assert extra < 3250, "an idle TLS smarthost costs %d kB" % extra

"""
TLS helpers for the integration tests.

  PKI        a throwaway public-key infrastructure made with the openssl
             command line at test time (conftest.py's session fixture `pki`):
             a private CA, server certificates good and bad, a self-signed one
             to pin, a client CA and a client certificate; and the ssl server
             contexts the smarthosts use.
  SMTPProxy  a recording man in the middle on 127.0.0.1 between the daemon
             and a smarthost: it can strip STARTTLS from the EHLO reply,
             refuse STARTTLS itself, or just pass everything through; it keeps
             every byte the client sent before TLS began.

Nothing here talks to anything but loopback.
"""

import datetime
import hashlib
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time

from mrtest import free_port, wait_until

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"

# ---------------------------------------------------------------------------
# certificates


def openssl(args, cwd=None, input=None):
    """Run the openssl command line; return stdout, raise with stderr on failure."""
    argv = [OPENSSL] + list(args)
    p = subprocess.run(argv, cwd=cwd, input=input, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    if p.returncode != 0:
        raise RuntimeError("%s exited %d:\n%s" % (" ".join(argv), p.returncode,
                                                  p.stderr.decode("utf-8", "replace")))
    return p.stdout


def _asn1_time(when):
    """openssl ca -startdate/-enddate format (GeneralizedTime)."""
    return when.astimezone(datetime.timezone.utc).strftime("%Y%m%d%H%M%SZ")


def _write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def _colon_hex(hexdigest):
    return ":".join(hexdigest[i:i + 2] for i in range(0, len(hexdigest), 2)).upper()


class Cert:
    """A certificate file, its key file and its SHA-256 fingerprints."""

    def __init__(self, name, cert, key):
        self.name = name
        self.cert = cert
        self.key = key
        with open(cert) as f:
            self.der = ssl.PEM_cert_to_DER_cert(f.read())
        self.sha256 = hashlib.sha256(self.der).hexdigest()
        pub_pem = openssl(["x509", "-in", cert, "-noout", "-pubkey"])
        spki_der = openssl(["pkey", "-pubin", "-outform", "DER"], input=pub_pem)
        self.spki_sha256 = hashlib.sha256(spki_der).hexdigest()
        # What users copy from `openssl x509 -fingerprint -sha256`: must agree.
        out = openssl(["x509", "-in", cert, "-noout", "-fingerprint", "-sha256"]).decode()
        self.openssl_fingerprint = out.strip().split("=", 1)[1]
        assert self.openssl_fingerprint == _colon_hex(self.sha256), (out, self.sha256)

    def pin(self, kind="cert", style="hex"):
        """A tls_fingerprint value: "sha256:HEX" of the certificate DER
        (kind="cert") or of its SubjectPublicKeyInfo DER (kind="spki");
        style="openssl" writes the hex as openssl prints it (AB:CD:...)."""
        digest = {"cert": self.sha256, "spki": self.spki_sha256}[kind]
        return "sha256:" + (_colon_hex(digest) if style == "openssl" else digest)

    def __repr__(self):
        return "<Cert %s %s>" % (self.name, self.cert)


class _CA:
    """A CA directory for `openssl ca` (which, unlike `x509 -req` in
    OpenSSL 3.0, takes explicit -startdate/-enddate)."""

    def __init__(self, base, name, cn):
        self.name = name
        self.dir = os.path.join(base, name)
        os.makedirs(os.path.join(self.dir, "issued"))
        self.cert = os.path.join(self.dir, "ca.crt")
        self.key = os.path.join(self.dir, "ca.key")
        _write(os.path.join(self.dir, "index.txt"), "")
        _write(os.path.join(self.dir, "serial"), "1000\n")
        req = _write(os.path.join(self.dir, "req.cnf"),
                     "[req]\nprompt = no\ndistinguished_name = dn\nx509_extensions = v3_ca\n"
                     "[dn]\nO = mailrelay tests\nCN = %s\n"
                     "[v3_ca]\nbasicConstraints = critical, CA:TRUE\n"
                     "keyUsage = critical, keyCertSign, cRLSign\n"
                     "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\n" % cn)
        openssl(["req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-sha256", "-days", "3650", "-config", req,
                 "-keyout", self.key, "-out", self.cert])
        os.chmod(self.key, 0o600)
        self.conf = _write(os.path.join(self.dir, "ca.cnf"), """\
[ca]
default_ca = this_ca
[this_ca]
dir = {d}
database = {d}/index.txt
new_certs_dir = {d}/issued
serial = {d}/serial
certificate = {d}/ca.crt
private_key = {d}/ca.key
default_md = sha256
policy = any_name
unique_subject = no
email_in_dn = no
copy_extensions = none
[any_name]
commonName = supplied
organizationName = optional
""".format(d=self.dir))


class PKI:
    """Every certificate the TLS tests use, made under `directory`.

      ca, client_ca       the CAs (.cert, .key); ca_path: a hashed directory
                          holding ca.crt (for tls_ca_path)
      good                CA-signed, DNS:localhost + IP:127.0.0.1
      wrong_name          CA-signed, DNS:wrong.example only
      expired             CA-signed for localhost + 127.0.0.1, expired in 2021
      ip_as_dns           CA-signed, CN and DNS name "127.0.0.1", no IP address
      self_signed         self-signed, DNS:localhost + IP:127.0.0.1 (to pin)
      client              signed by client_ca (clientAuth), RSA key
    """

    def __init__(self, directory):
        self.dir = directory
        now = datetime.datetime.now(datetime.timezone.utc)
        self._valid = (now - datetime.timedelta(days=1), now + datetime.timedelta(days=30))
        both = ["DNS:localhost", "IP:127.0.0.1"]
        self.ca = _CA(directory, "ca", "mailrelay test CA")
        self.client_ca = _CA(directory, "client-ca", "mailrelay test client CA")
        self.good = self._issue(self.ca, "good", "localhost", both)
        self.wrong_name = self._issue(self.ca, "wrong-name", "wrong.example", ["DNS:wrong.example"])
        self.expired = self._issue(self.ca, "expired", "localhost", both,
                                   validity=(datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc),
                                             datetime.datetime(2021, 1, 1, tzinfo=datetime.timezone.utc)))
        self.ip_as_dns = self._issue(self.ca, "ip-as-dns", "127.0.0.1", ["DNS:127.0.0.1"])
        self.self_signed = self._self_signed("self-signed", "localhost", both)
        self.client = self._issue(self.client_ca, "client", "relay.test", None, client=True)
        self.ca_path = os.path.join(directory, "ca-path")
        os.mkdir(self.ca_path)
        shutil.copy(self.ca.cert, os.path.join(self.ca_path, "mailrelay-test-ca.pem"))
        openssl(["rehash", self.ca_path])
        assert any(re.match(r"^[0-9a-f]{8}\.0$", n) for n in os.listdir(self.ca_path)), \
            "openssl rehash made no hash link in %s" % self.ca_path

    # -- making certificates
    def _new_key_and_csr(self, name, cn, rsa=False):
        key = os.path.join(self.dir, name + ".key")
        csr = os.path.join(self.dir, name + ".csr")
        cnf = _write(os.path.join(self.dir, name + ".req.cnf"),
                     "[req]\nprompt = no\ndistinguished_name = dn\n[dn]\nCN = %s\n" % cn)
        newkey = ["-newkey", "rsa:2048"] if rsa else \
            ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
        openssl(["req", "-new"] + newkey + ["-nodes", "-sha256", "-config", cnf,
                                            "-keyout", key, "-out", csr])
        os.chmod(key, 0o600)
        return key, csr

    def _issue(self, ca, name, cn, san, client=False, validity=None):
        key, csr = self._new_key_and_csr(name, cn, rsa=client)
        cert = os.path.join(self.dir, name + ".crt")
        ext = ["basicConstraints = critical, CA:FALSE",
               "subjectKeyIdentifier = hash",
               "authorityKeyIdentifier = keyid"]
        if client:
            ext += ["keyUsage = critical, digitalSignature, keyEncipherment",
                    "extendedKeyUsage = clientAuth"]
        else:
            ext += ["keyUsage = critical, digitalSignature",
                    "extendedKeyUsage = serverAuth"]
        if san:
            ext.append("subjectAltName = " + ", ".join(san))
        extfile = _write(os.path.join(self.dir, name + ".ext.cnf"),
                         "[leaf]\n" + "\n".join(ext) + "\n")
        start, end = validity or self._valid
        openssl(["ca", "-batch", "-notext", "-config", ca.conf, "-in", csr, "-out", cert,
                 "-startdate", _asn1_time(start), "-enddate", _asn1_time(end),
                 "-extfile", extfile, "-extensions", "leaf"])
        return Cert(name, cert, key)

    def _self_signed(self, name, cn, san):
        key = os.path.join(self.dir, name + ".key")
        cert = os.path.join(self.dir, name + ".crt")
        cnf = _write(os.path.join(self.dir, name + ".req.cnf"),
                     "[req]\nprompt = no\ndistinguished_name = dn\nx509_extensions = leaf\n"
                     "[dn]\nCN = %s\n"
                     "[leaf]\nbasicConstraints = critical, CA:FALSE\n"
                     "keyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n"
                     "subjectKeyIdentifier = hash\nsubjectAltName = %s\n" % (cn, ", ".join(san)))
        openssl(["req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-sha256", "-days", "30", "-config", cnf, "-keyout", key, "-out", cert])
        os.chmod(key, 0o600)
        return Cert(name, cert, key)

    # -- server contexts
    def server_context(self, cert="good", require_client_cert=False, tls12_only=False,
                       tls13_only=False, ciphers=None):
        """An ssl server context presenting `cert` (a Cert or an attribute
        name such as "wrong_name").  require_client_cert: the handshake needs
        a client certificate from client_ca.  tls12_only / tls13_only cap the
        protocol.  ciphers: OpenSSL cipher list for TLS 1.2 and below.
        The SNI name a client sends ends up in SessionInfo.sni."""
        c = getattr(self, cert) if isinstance(cert, str) else cert
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(c.cert, c.key)
        if require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cafile=self.client_ca.cert)
        if tls12_only:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        if tls13_only:
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        if ciphers:
            ctx.set_ciphers(ciphers)
        ctx.sni_callback = _note_sni
        return ctx

    def broken_context(self):
        """A server context with no certificate at all: STARTTLS is offered
        and answered 220, and then every handshake fails."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.sni_callback = _note_sni
        return ctx


def _note_sni(ssl_object, server_name, ctx):
    """sni_callback: keep the name the client asked for on its SSL object
    (the recorder reads it back as SessionInfo.sni)."""
    try:
        ssl_object.mr_sni = server_name
    except AttributeError:
        pass
    return None


# ---------------------------------------------------------------------------
# a man in the middle

REPLY_LAST_RE = re.compile(rb"^\d{3}(?: |\r?\n|$)")


def strip_starttls_from_reply(lines):
    """Remove STARTTLS lines from one (multiline) reply, keeping it well
    formed: every line but the last "CODE-", the last "CODE ".  lines are
    bytes ending in CRLF; returns (lines, how many were removed)."""
    kept = [l for l in lines if l[4:].strip().upper() != b"STARTTLS"]
    out = []
    for i, l in enumerate(kept):
        sep = b" " if i == len(kept) - 1 else b"-"
        text = l[4:] if len(l) > 4 else b"\r\n"
        out.append(l[:3] + sep + text)
    return out, len(lines) - len(kept)


def _verb(line):
    words = line.split()
    return words[0].decode("ascii", "replace").upper() if words else ""


class _ProxyConnection:
    def __init__(self, proxy, client, server):
        self.proxy = proxy
        self.client = client
        self.server = server
        self.client_plain = bytearray()     # every byte the client sent before TLS
        self.server_plain = bytearray()     # every byte the server sent before TLS (as received)
        self.client_tls_bytes = 0           # bytes the client sent after TLS began
        self.tls = False                    # STARTTLS answered 220: both ways are raw now
        self.stripped = 0                   # STARTTLS lines taken out of EHLO replies
        self.refused = 0                    # STARTTLS commands the proxy answered 454 itself
        self.closed = False
        self._send_lock = threading.Lock()
        self._awaiting_starttls = False
        self._starttls_answered = threading.Event()
        self._threads = [threading.Thread(target=self._client_to_server, daemon=True),
                         threading.Thread(target=self._server_to_client, daemon=True)]

    def start(self):
        for t in self._threads:
            t.start()
        threading.Thread(target=self._reaper, daemon=True).start()

    def _reaper(self):
        for t in self._threads:
            t.join()
        self.close()

    def close(self):
        for s in (self.client, self.server):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        with self.proxy._lock:
            self.closed = True

    def join(self, timeout):
        for t in self._threads:
            t.join(timeout)

    def _to_client(self, data):
        with self._send_lock:
            self.client.sendall(data)

    @staticmethod
    def _half_close(sock):
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _client_to_server(self):
        buf = b""
        in_data = False
        try:
            while True:
                data = self.client.recv(65536)
                if not data:
                    break
                if self.tls:
                    with self.proxy._lock:
                        self.client_tls_bytes += len(data)
                    self.server.sendall(data)
                    continue
                buf += data
                while not self.tls and b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    line += b"\n"
                    with self.proxy._lock:
                        self.client_plain += line
                    verb = _verb(line)
                    if in_data:
                        in_data = line.rstrip(b"\r\n") != b"."
                    elif verb == "DATA":
                        in_data = True
                    if in_data or verb != "STARTTLS":
                        self.server.sendall(line)
                        continue
                    if self.proxy.mode == "refuse":
                        with self.proxy._lock:
                            self.refused += 1
                        self._to_client(b"454 4.7.0 TLS not available due to temporary reason\r\n")
                        continue
                    self._starttls_answered.clear()
                    self._awaiting_starttls = True
                    self.server.sendall(line)
                    # The client waits for the answer before its ClientHello.
                    self._starttls_answered.wait(15)
                if self.tls and buf:
                    with self.proxy._lock:
                        self.client_tls_bytes += len(buf)
                    self.server.sendall(buf)
                    buf = b""
        except OSError:
            pass
        finally:
            self._half_close(self.server)

    def _server_to_client(self):
        buf = b""
        reply = []
        try:
            while True:
                data = self.server.recv(65536)
                if not data:
                    break
                if self.tls:
                    self._to_client(data)
                    continue
                buf += data
                while not self.tls and b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    line += b"\n"
                    with self.proxy._lock:
                        self.server_plain += line
                    reply.append(line)
                    if not REPLY_LAST_RE.match(line):
                        continue
                    self._reply(reply)
                    reply = []
                if self.tls and buf:
                    self._to_client(buf)
                    buf = b""
        except OSError:
            pass
        finally:
            if reply:
                try:
                    self._to_client(b"".join(reply))
                except OSError:
                    pass
            self._half_close(self.client)

    def _reply(self, lines):
        if self._awaiting_starttls:
            self._awaiting_starttls = False
            if lines[-1].startswith(b"220"):
                self.tls = True
            self._starttls_answered.set()
        elif self.proxy.mode == "strip" and lines[0].startswith(b"250"):
            lines, n = strip_starttls_from_reply(lines)
            with self.proxy._lock:
                self.stripped += n
        self._to_client(b"".join(lines))

    def plaintext_lines(self):
        with self.proxy._lock:
            data = bytes(self.client_plain)
        return [l for l in data.split(b"\n") if l] if data else []


class SMTPProxy:
    """A recording TCP proxy on 127.0.0.1:port in front of 127.0.0.1:upstream.

    mode "strip":  STARTTLS is taken out of the server's EHLO reply (the
                   multiline reply stays well formed)
    mode "refuse": the EHLO reply is left alone, but STARTTLS is answered
                   "454" by the proxy and never reaches the server
    mode "pass":   everything goes through unchanged
    In every mode, once a STARTTLS is answered 220 the proxy passes the
    TLS bytes through blind; until then it keeps every byte the client sent.
    """

    # What a client may send in plaintext when it must not send mail in
    # plaintext: greeting, STARTTLS itself and leaving.
    ALLOWED_PLAINTEXT = frozenset({"EHLO", "HELO", "STARTTLS", "QUIT", "RSET", "NOOP"})

    def __init__(self, upstream_port, mode="strip", name="proxy"):
        assert mode in ("strip", "refuse", "pass"), mode
        self.upstream = upstream_port
        self.mode = mode
        self.name = name
        self.port = free_port()
        self.connections = []
        self._lock = threading.RLock()
        self._listener = None
        self._thread = None
        self._stopping = threading.Event()

    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(16)
        s.settimeout(0.2)
        self._listener = s
        self._stopping.clear()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()
        return self

    def _accept_loop(self):
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            client.settimeout(None)
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            conn = _ProxyConnection(self, client, server)
            with self._lock:
                self.connections.append(conn)
            conn.start()

    def stop(self):
        if self._listener is None:
            return
        self._stopping.set()
        self._thread.join(5)
        self._listener.close()
        self._listener = None
        with self._lock:
            conns = list(self.connections)
        for c in conns:
            c.close()
        for c in conns:
            c.join(5)

    # -- what was seen
    def wait_idle(self, timeout=5.0):
        """Wait until every connection so far is closed; True if they are."""
        try:
            wait_until(lambda: all(c.closed for c in self.connections), timeout,
                       what="the proxied connections to close")
            return True
        except AssertionError:
            return False

    def plaintext_lines(self):
        """[[line, ...] per connection] of what the client sent in plaintext."""
        with self._lock:
            conns = list(self.connections)
        return [c.plaintext_lines() for c in conns]

    def saw_plaintext_commands(self):
        """Every verb (first word, upper case) of a line the client sent in
        plaintext, over all connections, in order."""
        return [_verb(l) for lines in self.plaintext_lines() for l in lines]

    def saw_tls(self):
        with self._lock:
            return any(c.tls for c in self.connections)

    def stripped(self):
        with self._lock:
            return sum(c.stripped for c in self.connections)

    def refused(self):
        with self._lock:
            return sum(c.refused for c in self.connections)

    def assert_nothing_after_ehlo_in_plaintext(self):
        """Only EHLO/HELO, STARTTLS, RSET, NOOP and QUIT went through in
        plaintext: no MAIL, RCPT, DATA, AUTH, no message line and no base64
        credentials."""
        for n, lines in enumerate(self.plaintext_lines()):
            bad = [l for l in lines if _verb(l) not in self.ALLOWED_PLAINTEXT]
            assert not bad, ("connection %d through %s sent in plaintext %r (all: %r)"
                             % (n, self.name, bad[:5], lines[:20]))

    def summary(self):
        with self._lock:
            out = ["%s 127.0.0.1:%d -> 127.0.0.1:%d mode=%s: %d connection(s)"
                   % (self.name, self.port, self.upstream, self.mode, len(self.connections))]
            for n, c in enumerate(self.connections):
                out.append("  #%d tls=%s stripped=%d refused=%d closed=%s client plaintext=%r"
                           % (n, c.tls, c.stripped, c.refused, c.closed,
                              bytes(c.client_plain[:2000])))
            return "\n".join(out)


def wait_closed_sessions(sh, timeout=10.0):
    """Wait until every client session of smarthost sh is closed."""
    wait_until(lambda: all(s.closed is not None for s in sh.client_sessions()), timeout,
               what="every session of the smarthost on port %d to close" % sh.port)


def wait_handshake_failed(sh, timeout=10.0):
    """Wait until the smarthost has seen a STARTTLS whose handshake failed.

    The daemon logs its deferral as soon as its own side of the handshake
    gives up; the server thread may record its side a moment later, so
    this waits for that event rather than looking once.  A session counts
    when the server recorded the failure, or when it got STARTTLS, never
    became encrypted and is closed (the server may see only the close)."""
    def failed():
        return any(s.starttls_failed or
                   ("STARTTLS" in s.verbs() and not s.tls and s.closed is not None)
                   for s in sh.client_sessions())
    wait_until(failed, timeout, what="the smarthost to see a failed STARTTLS handshake")

"""
An OAuth 2.0 token endpoint for the integration tests: HTTPS on loopback
(Python's http.server with ssl, the certificate of conftest's PKI), written
from RFC 6749, RFC 7523 and RFC 8628.

  POST /token       grant_type = client_credentials (client_secret, or a
                    JWT client assertion verified with the registered
                    certificate's public key and its x5t#S256), refresh_token
                    (with rotation when `rotate` is set: the old refresh
                    token then stops working), password, and the device
                    code grant
  POST /devicecode  RFC 8628 device authorisation: a device_code, a
                    user_code and a verification_uri

Script it with attributes:

  clients        {client_id: secret}
  cert_clients   {client_id: path of the PEM certificate}
  users          {username: password} for the password grant
  refresh_tokens set of valid refresh tokens
  rotate         answer each refresh with a new refresh token
  lifetime       expires_in of the access tokens issued (seconds)
  hold           a threading.Event: when set (not None), /token answers only
                 once it is set (a slow endpoint)
  answers        [(status, json object), ...] answered in turn instead of
                 judging the request (errors: invalid_grant, 5xx, ...)
  device_steps   answers of the device code polls before success, e.g.
                 ["authorization_pending", "slow_down"]
  codes          {authorization code: (code_challenge, redirect_uri)} that
                 the authorization_code grant takes (PKCE S256 checked)

Every access token issued goes into `valid_tokens` (a set the AUTH
smarthost reads live: authsrv.AuthSmarthost(tokens={user: ep.valid_tokens}));
revoke() empties it.  Every request is recorded (requests(): the form as
parsed, the HTTP status answered, the time) for the assertions.
"""

import base64
import hashlib
import http.server
import json
import secrets
import ssl
import threading
import time
import urllib.parse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

AUDIENCE = "https://outlook.office365.com"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Request:
    def __init__(self, path, form):
        self.path = path
        self.form = form
        self.grant = form.get("grant_type")
        self.time = time.time()
        self.status = None
        self.answer = None
        self.why = None         # why a request was refused

    def __repr__(self):
        return "<Request %s grant=%s status=%s why=%s>" % (self.path, self.grant, self.status,
                                                            self.why)


class TokenEndpoint:
    def __init__(self, ssl_context):
        self.ssl_context = ssl_context
        self.clients = {}
        self.cert_clients = {}
        self.users = {}
        self.refresh_tokens = set()
        self.rotate = False
        self.lifetime = 3600
        self.hold = None
        self.answers = []
        self.device_steps = []
        self.codes = {}                 # authorization code -> (code_challenge, redirect_uri)
        self.valid_tokens = set()
        self.issued = []                # (access token, issued at, expires_in)
        self.refresh_issued = []        # refresh tokens handed out, in order
        self._device = {}
        self._lock = threading.Lock()
        self._requests = []
        self.server = None
        self.port = None

    # -- control
    @property
    def token_url(self):
        return "https://localhost:%d/token" % self.port

    @property
    def device_url(self):
        return "https://localhost:%d/devicecode" % self.port

    def start(self):
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                endpoint._handle(self)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = self.ssl_context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def requests(self, grant=None, status=None):
        with self._lock:
            out = list(self._requests)
        if grant is not None:
            out = [r for r in out if r.grant == grant]
        if status is not None:
            out = [r for r in out if r.status == status]
        return out

    def revoke(self):
        with self._lock:
            self.valid_tokens.clear()

    def summary(self):
        return "token endpoint :%s\n" % self.port + "\n".join("  %r" % r for r in self.requests())

    # -- the protocol
    def _handle(self, h):
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length).decode("ascii")
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body, keep_blank_values=True).items()}
        req = Request(h.path, form)
        with self._lock:
            self._requests.append(req)
        if self.hold is not None and h.path == "/token":
            self.hold.wait(30)
        with self._lock:
            scripted = self.answers.pop(0) if self.answers else None
        if scripted is not None:
            status, answer = scripted
            req.why = "scripted"
        elif h.path == "/devicecode":
            status, answer = self._devicecode(form)
        elif h.path == "/token":
            status, answer = self._token(req, form)
        else:
            status, answer = 404, {"error": "not_found"}
        req.status, req.answer = status, answer
        data = json.dumps(answer).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _error(self, req, status, error, description):
        req.why = description
        return status, {"error": error, "error_description": description}

    def _client_ok(self, req, form):
        cid = form.get("client_id")
        if "client_assertion" in form:
            return self._assertion_ok(req, form, cid)
        if cid in self.clients:
            return form.get("client_secret") == self.clients[cid]
        return cid is not None and cid not in self.cert_clients and "client_secret" not in form

    def _assertion_ok(self, req, form, cid):
        if form.get("client_assertion_type") != \
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" or cid not in self.cert_clients:
            return False
        with open(self.cert_clients[cid], "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        try:
            h64, p64, s64 = form["client_assertion"].split(".")
            header = json.loads(b64url_decode(h64))
            payload = json.loads(b64url_decode(p64))
            thumb = b64url(cert.fingerprint(hashes.SHA256()))
            if header.get("alg") != "RS256" or header.get("x5t#S256") != thumb:
                req.why = "assertion header %r" % header
                return False
            cert.public_key().verify(b64url_decode(s64), (h64 + "." + p64).encode(),
                                     padding.PKCS1v15(), hashes.SHA256())
        except Exception as e:          # noqa: BLE001 - any defect refuses it
            req.why = "assertion: %r" % e
            return False
        now = time.time()
        if payload.get("aud") != self.token_url or payload.get("iss") != cid or \
                payload.get("sub") != cid or not payload.get("jti") or \
                not payload.get("exp", 0) > now or payload.get("nbf", now + 1) > now + 5:
            req.why = "assertion claims %r" % payload
            return False
        req.assertion_ok = True
        return True

    def _issue(self, form, refresh=None):
        now = int(time.time())
        claims = {"aud": AUDIENCE, "iat": now, "exp": now + self.lifetime,
                  "scp": form.get("scope", ""), "jti": secrets.token_hex(8)}
        token = "%s.%s.%s" % (b64url(b'{"alg":"none","typ":"JWT"}'),
                              b64url(json.dumps(claims).encode()), b64url(secrets.token_bytes(16)))
        with self._lock:
            self.valid_tokens.add(token)
            self.issued.append((token, time.time(), self.lifetime))
        answer = {"access_token": token, "token_type": "Bearer", "expires_in": self.lifetime,
                  "scope": form.get("scope", "")}
        if refresh is not None:
            answer["refresh_token"] = refresh
        return 200, answer

    def _new_refresh(self):
        r = "rt-" + secrets.token_hex(16)
        with self._lock:
            self.refresh_tokens.add(r)
            self.refresh_issued.append(r)
        return r

    def _token(self, req, form):
        grant = form.get("grant_type")
        if not self._client_ok(req, form):
            return self._error(req, 401, "invalid_client",
                               "AADSTS7000215: Invalid client secret provided.")
        if grant == "client_credentials":
            return self._issue(form)
        if grant == "refresh_token":
            rt = form.get("refresh_token")
            with self._lock:
                ok = rt in self.refresh_tokens
                if ok and self.rotate:
                    self.refresh_tokens.discard(rt)
            if not ok:
                return self._error(req, 400, "invalid_grant",
                                   "AADSTS70008: The provided authorization code or refresh "
                                   "token has expired due to inactivity.")
            return self._issue(form, self._new_refresh() if self.rotate else None)
        if grant == "password":
            if self.users.get(form.get("username")) != form.get("password"):
                return self._error(req, 400, "invalid_grant",
                                   "AADSTS50126: Error validating credentials due to invalid "
                                   "username or password.")
            return self._issue(form)
        if grant == "urn:ietf:params:oauth:grant-type:device_code":
            with self._lock:
                known = form.get("device_code") in self._device
                step = self.device_steps.pop(0) if self.device_steps else None
            if not known:
                return self._error(req, 400, "invalid_grant", "unknown device code")
            if step is not None:
                return self._error(req, 400, step, "the user has not finished yet")
            return self._issue(form, self._new_refresh())
        if grant == "authorization_code":
            with self._lock:
                want = self.codes.pop(form.get("code"), None)
            verifier = form.get("code_verifier", "")
            if want is None or b64url(hashlib.sha256(verifier.encode()).digest()) != want[0] or \
                    form.get("redirect_uri") != want[1]:
                return self._error(req, 400, "invalid_grant", "bad code, verifier or redirect_uri")
            return self._issue(form, self._new_refresh())
        return self._error(req, 400, "unsupported_grant_type", "grant %r" % grant)

    def _devicecode(self, form):
        code = "dc-" + secrets.token_hex(8)
        with self._lock:
            self._device[code] = form.get("client_id")
        return 200, {"device_code": code, "user_code": "ABCD-EFGH",
                     "verification_uri": "https://localhost:%d/device" % self.port,
                     "expires_in": 900, "interval": 1,
                     "message": "To sign in, open https://localhost:%d/device and enter the code "
                                "ABCD-EFGH." % self.port}

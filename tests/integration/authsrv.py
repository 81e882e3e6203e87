"""
An SMTP AUTH smarthost for the integration tests.

AuthSmarthost is mrtest.Smarthost (same recording of sessions, commands
and transactions, same scripting of RCPT and DATA replies, same TLS
options) plus the server side of the SASL mechanisms the relay speaks,
written from the specifications:

  PLAIN          RFC 4616 ([authzid] NUL authcid NUL passwd)
  LOGIN          draft-murchison-sasl-login ("Username:", "Password:")
  CRAM-MD5       RFC 2195 (HMAC-MD5 of a one-time challenge)
  SCRAM-SHA-256  RFC 5802 / RFC 7677 (salt, 4096 iterations, the client's
                 proof verified, the server signature sent as a 334
                 challenge that the client answers with an empty line)
  XOAUTH2        Google's format ("user=U^Aauth=Bearer T^A^A"; a bad token
                 gets a 334 base64 JSON error the client answers empty)
  OAUTHBEARER    RFC 7628 ("n,a=U,^Ahost=H^Aport=P^Aauth=Bearer T^A^A"; a
                 bad token gets a 334 base64 JSON error the client answers
                 with a single ^A)

Script it by setting attributes (safe at any time, also while running; a
change of `mechanisms` or `plaintext_auth` applies to the next connection):

  mechanisms       names advertised in EHLO, exactly and in this order
                   (a name with no implementation here, e.g. GSSAPI, is
                   advertised and answered 504); [] advertises no AUTH
  credentials      {user: password} for PLAIN, LOGIN, CRAM-MD5, SCRAM
  tokens           {user: token or set of tokens} for XOAUTH2, OAUTHBEARER
  plaintext_auth   offer and accept AUTH before TLS (aiosmtpd's
                   auth_require_tls=False); otherwise AUTH is advertised
                   only after STARTTLS (or on an implicit-TLS server)
  scram_bad_signature  send a wrong server signature (v=) in SCRAM
  auth_replies     [reply, ...] answered in turn to AUTH commands right
                   after the command line, instead of running the
                   mechanism (e.g. "454 4.7.0 Try again later")

Every AUTH command is recorded as an AuthExchange (auth_exchanges()):
the mechanism, the outcome, whether the connection was encrypted, the
user and secret the client presented, and every line the client sent
(for the tests that grep the relay's log for leaked secrets).

SASLprep (RFC 4013) is not applied: the tests use ASCII secrets.
"""

import asyncio
import base64
import binascii
import hashlib
import hmac
import itertools
import json
import os
import secrets as _secrets
import time

from aiosmtpd.smtp import AuthResult

import mrtest

ALL_MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256", "XOAUTH2", "OAUTHBEARER")
REPLY_OK = "235 2.7.0 Authentication successful"
REPLY_BAD = "535 5.7.8 Authentication credentials invalid"
REPLY_BAD_XOAUTH2 = "535 5.7.8 Username and Password not accepted"
XOAUTH2_ERROR = {"status": "401", "schemes": "Bearer", "scope": "https://mail.test/"}
OAUTHBEARER_ERROR = {"status": "invalid_token", "scope": "mail",
                     "openid-configuration": "https://auth.test/.well-known/openid-configuration"}
SCRAM_ITERATIONS = 4096


def b64(data):
    """base64 text of str or bytes."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.b64encode(data).decode("ascii")


def _text(data):
    return data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data


class AuthExchange:
    """One AUTH command and what followed it."""

    def __init__(self, seq, session, mechanism, tls):
        self.seq = seq
        self.session = session          # mrtest.SessionInfo (or None)
        self.mechanism = mechanism      # as the client named it, upper case
        self.tls = tls                  # the connection was encrypted at AUTH time
        self.time = time.monotonic()
        self.initial_response = None    # raw text after "AUTH MECH ", if any
        self.client_lines = []          # raw lines the client sent (initial response first)
        self.secret_lines = []          # those of them that carry the secret
        self.user = None                # authentication identity presented
        self.secret = None              # password/token presented (PLAIN, LOGIN, OAuth)
        self.success = None             # True/False once answered
        self.reply = None               # final reply sent
        self.cancelled = False          # the client sent "*" or closed
        self.proof_ok = None            # SCRAM: the client's proof verified
        self.final_answer = None        # SCRAM: the client's raw answer to v=...
        self.error_answer = None        # OAuth: the client's raw answer to the error challenge
        self.fields = {}                # OAUTHBEARER key/value pairs (host, port, ...)

    def __repr__(self):
        return ("<AuthExchange #%d session=%s %s%s user=%r success=%r reply=%r%s%s>"
                % (self.seq, self.session.sid if self.session else "?", self.mechanism,
                   " tls" if self.tls else " PLAINTEXT", self.user, self.success, self.reply,
                   " cancelled" if self.cancelled else "",
                   " error_answer=%r" % self.error_answer if self.error_answer is not None else ""))


class AuthSmarthost(mrtest.Smarthost):
    """mrtest.Smarthost with SMTP AUTH; see the module docstring."""

    def __init__(self, mechanisms=ALL_MECHANISMS, credentials=None, tokens=None,
                 plaintext_auth=False, scram_bad_signature=False, **kw):
        super().__init__(**kw)
        self.mechanisms = list(mechanisms)
        self.credentials = dict(credentials or {})
        self.tokens = dict(tokens or {})
        self.plaintext_auth = plaintext_auth
        self.scram_bad_signature = scram_bad_signature
        self.scram_iterations = SCRAM_ITERATIONS
        self.auth_replies = []
        self._auth_seq = itertools.count(1)
        self._exchanges = []

    def _controller(self):
        # Let the base class build the controller (with its TLS options),
        # then swap in the AUTH handler and server.
        c = super()._controller()
        c.handler = _AuthHandler(self)
        c.SMTP_kwargs["auth_require_tls"] = not self.plaintext_auth
        recorder = self
        c.factory = lambda: _AuthSMTP(c.handler, recorder, **c.SMTP_kwargs)
        return c

    # -- results
    def auth_exchanges(self, mechanism=None, success=None):
        with self._lock:
            out = list(self._exchanges)
        if mechanism is not None:
            out = [e for e in out if e.mechanism == mechanism]
        if success is not None:
            out = [e for e in out if e.success is success]
        return out

    def summary(self):
        with self._lock:
            ex = list(self._exchanges[-30:])
        return "\n".join([super().summary(),
                          "  advertised AUTH: %s%s" % (" ".join(self.mechanisms) or "(none)",
                                                      " (also in plaintext)" if self.plaintext_auth
                                                      else "")]
                         + ["  %r" % e for e in ex])

    # -- called from the server thread
    def _valid_password(self, user, password):
        with self._lock:
            want = self.credentials.get(user)
        return want is not None and hmac.compare_digest(want.encode("utf-8", "surrogateescape"),
                                                        password.encode("utf-8", "surrogateescape"))

    def _password_of(self, user):
        with self._lock:
            return self.credentials.get(user)

    def _valid_token(self, user, token):
        with self._lock:
            if user is None:
                candidates = list(self.tokens.values())
            else:
                candidates = [self.tokens.get(user)]
        for c in candidates:
            if c is None:
                continue
            if isinstance(c, str):
                c = [c]
            if token in c:
                return True
        return False

    def _next_auth_reply(self):
        with self._lock:
            if self.auth_replies:
                return self.auth_replies.pop(0)
        return None

    def _new_exchange(self, server, mechanism):
        obj = server.transport.get_extra_info("ssl_object") if server.transport else None
        info = getattr(server.session, "test_session", None)
        with self._lock:
            ex = AuthExchange(next(self._auth_seq), info, mechanism, obj is not None)
            self._exchanges.append(ex)
        return ex

    def _set(self, ex, **attrs):
        with self._lock:
            for k, v in attrs.items():
                setattr(ex, k, v)

    def _note_line(self, ex, raw, secret=False):
        with self._lock:
            ex.client_lines.append(raw)
            if secret:
                ex.secret_lines.append(raw)


class _AuthSMTP(mrtest._RecordingSMTP):
    """The recording server with the advertised AUTH list under the test's control."""

    def __init__(self, handler, recorder, **kw):
        super().__init__(handler, recorder, **kw)
        with recorder._lock:
            self._advertised = list(recorder.mechanisms)
        self._auth_methods = {name: impl for name, impl in self._auth_methods.items()
                              if name in self._advertised}

    async def push(self, status):
        # aiosmtpd advertises every implemented mechanism, sorted; say
        # exactly what the test configured instead (or nothing).
        if isinstance(status, str) and status.startswith("250-AUTH"):
            if not self._advertised:
                return
            status = "250-AUTH " + " ".join(self._advertised)
        await super().push(status)


class _Abort(Exception):
    """The exchange ended early; the reply (if any) was already sent."""


class _AuthHandler(mrtest._Handler):
    """The SASL mechanisms, as aiosmtpd handler methods auth_NAME
    ("__" in the method name stands for "-" in the mechanism name)."""

    # -- plumbing
    async def _start(self, server, mechanism, args, initial_secret=False):
        """Record the exchange; answer a scripted reply if one is due.
        Returns (exchange, decoded initial response or None)."""
        sh = self.sh
        ex = sh._new_exchange(server, mechanism)
        initial = None
        if len(args) > 1:
            raw = args[1]
            sh._set(ex, initial_response=raw)
            sh._note_line(ex, raw, secret=initial_secret)
        scripted = sh._next_auth_reply()
        if scripted is not None:
            await self._fail(server, ex, scripted)
        if len(args) > 1:
            if args[1] == "=":                  # RFC 4954: an empty initial response
                initial = b""
            else:
                try:
                    initial = base64.b64decode(args[1], validate=True)
                except (binascii.Error, ValueError):
                    await self._fail(server, ex, "501 5.5.2 Cannot decode the initial response")
        return ex, initial

    async def _challenge(self, server, ex, data, secret=False):
        """Send 334 with data; return the client's decoded answer.
        Raises _Abort when the client cancels ("*"), leaves, or sends garbage."""
        await server.push("334 " + b64(data))
        line = await server._reader.readline()
        if not line:
            self.sh._set(ex, cancelled=True, success=False, reply=None)
            raise _Abort()
        raw = line.rstrip(b"\r\n").decode("ascii", "replace")
        self.sh._note_line(ex, raw, secret=secret)
        if raw.strip() == "*":
            self.sh._set(ex, cancelled=True)
            await self._fail(server, ex, "501 5.7.0 Authentication cancelled")
        try:
            return base64.b64decode(raw.strip(), validate=True)
        except (binascii.Error, ValueError):
            await self._fail(server, ex, "501 5.5.2 Cannot decode base64")

    async def _challenge_noting(self, server, ex, data, attr):
        """_challenge(), keeping the client's raw answer (even "*") in ex.<attr>."""
        n = len(ex.client_lines)
        try:
            return await self._challenge(server, ex, data)
        finally:
            with self.sh._lock:
                if len(ex.client_lines) > n:
                    setattr(ex, attr, ex.client_lines[n])

    async def _first(self, server, ex, initial, secret=False):
        """The client's first message: the initial response, or the answer
        to an empty challenge."""
        if initial is not None:
            return initial
        return await self._challenge(server, ex, b"", secret=secret)

    async def _fail(self, server, ex, reply):
        self.sh._set(ex, success=False, reply=reply)
        await server.push(reply)
        raise _Abort()

    def _done(self, ex, ok, reply=None):
        reply = reply or (REPLY_OK if ok else REPLY_BAD)
        self.sh._set(ex, success=ok, reply=reply)
        return AuthResult(success=ok, handled=False, message=reply, auth_data=ex.user)

    async def _run(self, server, args, mechanism, body, initial_secret=False):
        ex = None
        try:
            ex, initial = await self._start(server, mechanism, args, initial_secret)
            return await body(server, ex, initial)
        except _Abort:
            return AuthResult(success=False, handled=True)
        except asyncio.CancelledError:          # the client closed the connection
            if ex is not None:
                self.sh._set(ex, cancelled=True)
            raise

    # -- PLAIN (RFC 4616)
    async def auth_PLAIN(self, server, args):
        return await self._run(server, args, "PLAIN", self._plain, initial_secret=True)

    async def _plain(self, server, ex, initial):
        data = await self._first(server, ex, initial, secret=True)
        parts = data.split(b"\0")
        if len(parts) != 3 or not parts[1]:
            await self._fail(server, ex, "501 5.5.2 PLAIN: expected [authzid] NUL user NUL password")
        authz, user, password = (_text(p) for p in parts)
        self.sh._set(ex, user=user, secret=password)
        ok = (authz in ("", user)) and self.sh._valid_password(user, password)
        return self._done(ex, ok)

    # -- LOGIN (draft-murchison-sasl-login)
    async def auth_LOGIN(self, server, args):
        return await self._run(server, args, "LOGIN", self._login)

    async def _login(self, server, ex, initial):
        if initial is None:
            initial = await self._challenge(server, ex, b"Username:")
        user = _text(initial)
        self.sh._set(ex, user=user)
        password = _text(await self._challenge(server, ex, b"Password:", secret=True))
        self.sh._set(ex, secret=password)
        return self._done(ex, self.sh._valid_password(user, password))

    # -- CRAM-MD5 (RFC 2195)
    async def auth_CRAM__MD5(self, server, args):
        return await self._run(server, args, "CRAM-MD5", self._cram_md5)

    async def _cram_md5(self, server, ex, initial):
        if initial is not None:
            await self._fail(server, ex, "501 5.5.2 CRAM-MD5 takes no initial response")
        challenge = "<%d.%d@%s.test>" % (_secrets.randbelow(10 ** 9), int(time.time()), self.sh.name)
        answer = _text(await self._challenge(server, ex, challenge.encode(), secret=True))
        user, sp, digest = answer.rpartition(" ")
        if not sp or not user:
            await self._fail(server, ex, "501 5.5.2 CRAM-MD5: expected user SP digest")
        self.sh._set(ex, user=user)
        password = self.sh._password_of(user)
        ok = False
        if password is not None:
            want = hmac.new(password.encode(), challenge.encode(), hashlib.md5).hexdigest()
            ok = hmac.compare_digest(want, digest)  # RFC 2195: lower-case hex
        return self._done(ex, ok)

    # -- SCRAM-SHA-256 (RFC 5802, RFC 7677)
    async def auth_SCRAM__SHA__256(self, server, args):
        return await self._run(server, args, "SCRAM-SHA-256", self._scram)

    @staticmethod
    def _scram_attrs(text):
        attrs = []
        for part in text.split(","):
            key, eq, value = part.partition("=")
            if not eq or len(key) != 1:
                return None
            attrs.append((key, value))
        return attrs

    @staticmethod
    def _saslname(value):
        # RFC 5802 5.1: "=2C" is ",", "=3D" is "=", any other "=" is an error.
        out, i = [], 0
        while i < len(value):
            if value[i] == "=":
                code = value[i:i + 3]
                if code == "=2C":
                    out.append(",")
                elif code == "=3D":
                    out.append("=")
                else:
                    return None
                i += 3
            else:
                out.append(value[i])
                i += 1
        return "".join(out)

    async def _scram(self, server, ex, initial):
        sh = self.sh
        first = _text(await self._first(server, ex, initial))
        # gs2-header: cbind-flag "," [authzid] ","
        flag, c1, rest = first.partition(",")
        authz, c2, bare = rest.partition(",")
        if not c1 or not c2 or flag not in ("n", "y"):
            # "p=...": channel binding, which this server does not offer
            await self._fail(server, ex, "535 5.7.8 SCRAM: channel binding not supported")
        gs2_header = "%s,%s," % (flag, authz)
        attrs = self._scram_attrs(bare)
        if not attrs or len(attrs) < 2 or attrs[0][0] != "n" or attrs[1][0] != "r":
            await self._fail(server, ex, "501 5.5.2 SCRAM: bad client-first-message")
        user = self._saslname(attrs[0][1])
        cnonce = attrs[1][1]
        if user is None or not cnonce or any(k == "m" for k, _ in attrs):
            await self._fail(server, ex, "501 5.5.2 SCRAM: bad client-first-message")
        if authz and authz != "a=" + attrs[0][1]:
            await self._fail(server, ex, "535 5.7.8 SCRAM: authorization identity refused")
        sh._set(ex, user=user)

        salt = os.urandom(16)
        iterations = sh.scram_iterations
        nonce = cnonce + b64(os.urandom(18))
        server_first = "r=%s,s=%s,i=%d" % (nonce, b64(salt), iterations)
        final = _text(await self._challenge(server, ex, server_first.encode(), secret=True))

        without_proof, sep, proof_b64 = final.rpartition(",p=")
        fattrs = self._scram_attrs(without_proof) if sep else None
        if not fattrs or len(fattrs) < 2 or fattrs[0][0] != "c" or fattrs[1][0] != "r":
            await self._fail(server, ex, "501 5.5.2 SCRAM: bad client-final-message")
        if fattrs[0][1] != b64(gs2_header):
            await self._fail(server, ex, "535 5.7.8 SCRAM: channel binding data mismatch")
        if fattrs[1][1] != nonce:
            await self._fail(server, ex, "535 5.7.8 SCRAM: nonce mismatch")
        try:
            proof = base64.b64decode(proof_b64, validate=True)
        except (binascii.Error, ValueError):
            proof = b""

        password = sh._password_of(user)
        if password is None or len(proof) != hashlib.sha256().digest_size:
            sh._set(ex, proof_ok=False)
            return self._done(ex, False)
        salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        auth_message = ("%s,%s,%s" % (bare, server_first, without_proof)).encode("utf-8")
        client_sig = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
        recovered = bytes(a ^ b for a, b in zip(proof, client_sig))
        ok = hmac.compare_digest(hashlib.sha256(recovered).digest(), stored_key)
        sh._set(ex, proof_ok=ok)
        if not ok:
            return self._done(ex, False)

        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        signature = hmac.new(server_key, auth_message, hashlib.sha256).digest()
        with sh._lock:
            bad = sh.scram_bad_signature
        if bad:
            signature = bytes(b ^ 0x5A for b in signature)
        # server-final-message as a 334 challenge; the client answers empty
        answer = await self._challenge_noting(server, ex, b"v=" + b64(signature).encode(),
                                              "final_answer")
        if answer != b"":
            await self._fail(server, ex, "501 5.5.2 SCRAM: expected an empty response")
        return self._done(ex, True)

    # -- XOAUTH2 (Google)
    async def auth_XOAUTH2(self, server, args):
        return await self._run(server, args, "XOAUTH2", self._xoauth2, initial_secret=True)

    async def _xoauth2(self, server, ex, initial):
        data = await self._first(server, ex, initial, secret=True)
        kv = {}
        for part in data.split(b"\x01"):
            if part:
                key, _, value = part.partition(b"=")
                kv[_text(key)] = _text(value)
        auth = kv.get("auth", "")
        if not data.endswith(b"\x01\x01") or "user" not in kv or \
                not auth.lower().startswith("bearer "):
            await self._fail(server, ex, "501 5.5.2 XOAUTH2: bad initial client response")
        user, token = kv["user"], auth[len("bearer "):]
        self.sh._set(ex, user=user, secret=token)
        if self.sh._valid_token(user, token):
            return self._done(ex, True)
        error = json.dumps(XOAUTH2_ERROR, separators=(",", ":")).encode()
        await self._challenge_noting(server, ex, error, "error_answer")
        return self._done(ex, False, REPLY_BAD_XOAUTH2)

    # -- OAUTHBEARER (RFC 7628)
    async def auth_OAUTHBEARER(self, server, args):
        return await self._run(server, args, "OAUTHBEARER", self._oauthbearer, initial_secret=True)

    async def _oauthbearer(self, server, ex, initial):
        data = await self._first(server, ex, initial, secret=True)
        gs2, sep, rest = data.partition(b"\x01")
        gs2_parts = _text(gs2).split(",")
        # gs2-header kvsep *(key "=" value kvsep) kvsep
        if not sep or len(gs2_parts) != 3 or gs2_parts[0] not in ("n", "y") or gs2_parts[2] != "" \
                or not (rest == b"\x01" or rest.endswith(b"\x01\x01")):
            await self._fail(server, ex, "501 5.5.2 OAUTHBEARER: bad initial client response")
        user = None
        if gs2_parts[1]:
            if not gs2_parts[1].startswith("a="):
                await self._fail(server, ex, "501 5.5.2 OAUTHBEARER: bad gs2 header")
            user = self._saslname(gs2_parts[1][2:])
        fields = {}
        for part in (rest[:-2].split(b"\x01") if rest != b"\x01" else []):
            key, eq, value = part.partition(b"=")
            if not eq:
                await self._fail(server, ex, "501 5.5.2 OAUTHBEARER: bad key/value pair")
            fields[_text(key)] = _text(value)
        auth = fields.get("auth", "")
        if not auth.lower().startswith("bearer "):
            await self._fail(server, ex, "501 5.5.2 OAUTHBEARER: no bearer token")
        token = auth[len("bearer "):]
        self.sh._set(ex, user=user, secret=token, fields=fields)
        if self.sh._valid_token(user, token):
            return self._done(ex, True)
        error = json.dumps(OAUTHBEARER_ERROR, separators=(",", ":")).encode()
        await self._challenge_noting(server, ex, error, "error_answer")
        return self._done(ex, False)

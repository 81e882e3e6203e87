"""proxy = socks5://HOST:PORT: delivery through a SOCKS5 proxy that is
asked to CONNECT to the smarthost by name."""
import socket
import struct
import threading

from mrtest import free_port, make_message, quote, smarthost_opts, to_crlf

SENDER = "sender@example.org"
RCPT = "rcpt@example.net"


class Socks5Proxy:
    """A minimal RFC 1928 proxy (no authentication, CONNECT only) on loopback.
    Names are resolved by the proxy; every CONNECT request is recorded."""

    def __init__(self, refuse=False):
        self.requests = []
        self.refuse = refuse
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _recv(self, c, n):
        buf = b""
        while len(buf) < n:
            chunk = c.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            ver, n = self._recv(c, 2)
            methods = self._recv(c, n)
            assert ver == 5 and 0 in methods
            c.sendall(b"\x05\x00")
            ver, cmd, _, atyp = self._recv(c, 4)
            if atyp == 3:
                host = self._recv(c, self._recv(c, 1)[0]).decode()
            elif atyp == 1:
                host = socket.inet_ntoa(self._recv(c, 4))
            else:
                host = socket.inet_ntop(socket.AF_INET6, self._recv(c, 16))
            port = struct.unpack("!H", self._recv(c, 2))[0]
            self.requests.append((atyp, host, port))
            if self.refuse:
                c.sendall(b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00")
                return
            up = socket.create_connection(("127.0.0.1" if host == "localhost" else host, port))
            c.sendall(b"\x05\x00\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack("!H", 0))
            self._pipe(c, up)
        except (EOFError, OSError, AssertionError):
            pass
        finally:
            c.close()

    def _pipe(self, a, b):
        def one(src, dst):
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
        t = threading.Thread(target=one, args=(b, a), daemon=True)
        t.start()
        one(a, b)
        t.join(10)
        b.close()

    def stop(self):
        self.stopped = True
        self.sock.close()


def test_delivery_through_socks5_by_name(daemon, smarthost):
    sh = smarthost()
    proxy = Socks5Proxy()
    try:
        opts = smarthost_opts(sh.port, host=quote("localhost"),
                              proxy=quote("socks5://127.0.0.1:%d" % proxy.port))
        d = daemon(smarthosts=[("main", opts)])
        msg = make_message(subject="via socks")
        assert d.sendmail(["-i", "-f", SENDER, RCPT], msg).rc == 0
        t = sh.wait_for(1, timeout=20)[0]
        assert t.content == to_crlf(msg)
        # the proxy was asked for the smarthost by name (ATYP 3), not an address
        assert proxy.requests == [(3, "localhost", sh.port)]
        rec = d.wait_for_record(to=RCPT, status="sent", timeout=10)
        assert "socks5" in rec["relay"]
        d.wait_queue_empty()
    finally:
        proxy.stop()


def test_socks5_refusal_defers(daemon, smarthost):
    sh = smarthost()
    proxy = Socks5Proxy(refuse=True)
    try:
        opts = smarthost_opts(sh.port, proxy=quote("socks5://127.0.0.1:%d" % proxy.port))
        d = daemon(smarthosts=[("main", opts)])
        assert d.sendmail(["-i", "-f", SENDER, RCPT], make_message(subject="refused")).rc == 0
        rec = d.wait_for_record(to=RCPT, status="deferred", timeout=20)
        assert "SOCKS5" in rec["text"] and "connection refused" in rec["text"]
        assert sh.delivered() == []
    finally:
        proxy.stop()


def test_socks5_proxy_down_defers(daemon, smarthost):
    sh = smarthost()
    opts = smarthost_opts(sh.port, proxy=quote("socks5://127.0.0.1:%d" % free_port()))
    d = daemon(smarthosts=[("main", opts)])
    assert d.sendmail(["-i", "-f", SENDER, RCPT], make_message(subject="no proxy")).rc == 0
    rec = d.wait_for_record(to=RCPT, status="deferred", timeout=20)
    assert "Connection refused" in rec["text"]

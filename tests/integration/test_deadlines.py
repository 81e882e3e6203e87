"""Per-state deadlines of a delivery session (mailrelay.conf(5): timeout,
data_timeout, connect_timeout).

A deadline bounds the whole reply, not the silence between two bytes: a
smarthost that trickles its greeting is cut off at `timeout` and counts as
a failing smarthost (back-off, failover).  The reply to the final dot has
its own, longer data_timeout: a smarthost that takes a while to accept the
content gets the message once, not again after each cut."""
import select
import socket
import threading
import time

import pytest

from mrtest import make_message, smarthost_opts, to_crlf, wait_until

SENDER = "sender@example.org"
RCPT = "rcpt@example.net"


class Trickler:
    """A TCP server on 127.0.0.1 that sends its SMTP greeting one byte per
    `interval` seconds, to every connection, and records how long each
    connection stayed open."""

    GREETING = b"220 trickle.test ESMTP a very slow server greets you\r\n"

    def __init__(self, interval=1.0):
        self.interval = interval
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.conns = []          # [opened, closed or None, bytes sent]
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        self.sock.settimeout(0.2)
        while not self.stopping.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            rec = [time.monotonic(), None, 0]
            with self.lock:
                self.conns.append(rec)
            t = threading.Thread(target=self._serve, args=(c, rec), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, c, rec):
        """One byte per interval; the client closing is seen at once."""
        i = 0
        try:
            while not self.stopping.is_set():
                readable, _, _ = select.select([c], [], [], self.interval)
                if readable:
                    if c.recv(4096) == b"":
                        break
                    continue
                if i < len(self.GREETING):
                    c.sendall(self.GREETING[i:i + 1])
                    i += 1
                    rec[2] = i
        except OSError:
            pass
        finally:
            rec[1] = time.monotonic()
            c.close()

    def connections(self):
        with self.lock:
            return [list(r) for r in self.conns]

    def stop(self):
        self.stopping.set()
        self.sock.close()
        for t in self.threads:
            t.join(timeout=5)


@pytest.fixture
def trickler():
    made = []

    def factory(**kw):
        t = Trickler(**kw)
        made.append(t)
        return t

    yield factory
    for t in made:
        t.stop()


def test_trickled_greeting_is_cut_at_timeout_and_mail_fails_over(daemon, smarthost, trickler):
    """Before: each byte restarted a 10 s inactivity timer, the greeting
    took ~55 s, and no message reached the second smarthost in 90 s.
    Now: the greeting gets 10 s in all, the slow smarthost is backed off
    and all three messages go to the second one."""
    slow = trickler(interval=1.0)
    sh2 = smarthost(name="second")
    d = daemon(smarthosts=[("slow", smarthost_opts(slow.port, timeout="10s")),
                           ("second", smarthost_opts(sh2.port))])
    t0 = time.monotonic()
    msgs = [make_message(subject="trickle %d" % i) for i in range(3)]
    for m in msgs:
        r = d.sendmail(["-i", "-f", SENDER, RCPT], m)
        assert r.rc == 0, r
    # a few deadlines: one for the slow smarthost's greeting, then the second delivers
    sh2.wait_for(3, timeout=35, alive=lambda: d.alive)
    elapsed = time.monotonic() - t0
    assert elapsed < 30, elapsed
    assert sorted(t.content for t in sh2.delivered()) == sorted(to_crlf(m) for m in msgs)
    assert d.wait_for_log(r"conversation with 127\.0\.0\.1\[127\.0\.0\.1\]:%d timed out while "
                          r"waiting for the greeting" % slow.port)
    assert d.wait_for_log(r"smarthost slow failed; trying second")
    # every session to the slow smarthost was cut at its deadline, mid-greeting
    wait_until(lambda: slow.connections() and all(c[1] is not None for c in slow.connections()),
               timeout=5, what="the slow smarthost's connections closed")
    conns = slow.connections()
    for opened, closed, sent in conns:
        assert closed is not None, conns
        assert closed - opened < 10 + 3, conns
        assert sent < len(Trickler.GREETING), conns
    d.wait_queue_empty()


def test_slow_reply_to_final_dot_is_waited_for_not_sent_again(daemon, smarthost):
    """Before: `timeout` (3 s here) cut the wait for the reply to the dot,
    the recipients were deferred and the message sent again: three copies
    arrived.  Now the dot's reply gets data_timeout (10 minutes by
    default): one copy, delivered."""
    sh = smarthost()
    sh.data_delay = 9.0          # three times `timeout`
    d = daemon(smarthost=("main", smarthost_opts(sh.port, timeout="3s")))
    msg = make_message(subject="slow dot")
    r = d.sendmail(["-i", "-f", SENDER, RCPT], msg)
    assert r.rc == 0, r
    qid = d.accepted_id(SENDER)
    sent = d.wait_for_record(id=qid, to=RCPT, status="sent", timeout=30)
    assert sent["attempts"] == "1"
    assert [o["status"] for o in d.outcomes(qid, to=RCPT)] == ["sent"]
    # the message is gone from the queue once sent: no other copy can have started after
    d.wait_queue_empty()
    assert len(sh.transactions) == 1, sh.summary()
    assert [t.content for t in sh.delivered()] == [to_crlf(msg)]


def test_data_timeout_bounds_the_reply_to_final_dot(daemon, smarthost):
    """data_timeout is the key that bounds that wait: past it the
    recipients are deferred, with the state named in the reason."""
    sh = smarthost()
    sh.data_delay = 8.0
    d = daemon(smarthost=("main", smarthost_opts(sh.port, timeout="10s", data_timeout="2s")),
               overrides={"retry_schedule": ["1h"]})
    t0 = time.monotonic()
    r = d.sendmail(["-i", "-f", SENDER, RCPT], make_message(subject="dot deadline"))
    assert r.rc == 0, r
    qid = d.accepted_id(SENDER)
    rec = d.wait_for_record(id=qid, to=RCPT, status="deferred", timeout=15)
    assert time.monotonic() - t0 < 7
    assert "timed out while waiting for the reply to the end of data" in rec["text"], rec
    assert rec["dsn"] == "4.4.2", rec

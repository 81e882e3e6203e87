"""The connect phase: a host's addresses raced IPv6 and IPv4 interleaved
with a short head start (Happy Eyeballs, RFC 8305), the whole phase bounded
by connect_timeout.

The name "dual.mailrelay.test" is given an IPv6 and an IPv4 address in an
/etc/hosts of the daemon's own: it runs in a private mount namespace with a
file of the test's bound over /etc/hosts, which the resolver reads at start
as on any machine (root only, as the suite runs; the daemon has no test
seam for names).
The IPv6 address is a black hole: a listener on [::1] whose accept queue is
full drops every further SYN, as a broken IPv6 route does."""
import os
import socket
import time

import pytest

from mrtest import BlackHole, free_port, make_message, require_root, smarthost_opts, to_crlf

SENDER = "sender@example.org"
RCPT = "rcpt@example.net"
NAME = "dual.mailrelay.test"
# bind the test's hosts file ($MR_HOSTS) over /etc/hosts, in the daemon's own namespace only
NS_HOSTS = 'mount --bind "$MR_HOSTS" /etc/hosts && exec "$@"'


def ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


def start_with_hosts(d, hosts):
    """Start daemon d with `hosts` as its /etc/hosts."""
    d.wrapper = ["env", "MR_HOSTS=" + hosts,
                 "unshare", "-m", "--propagation", "private", "sh", "-c", NS_HOSTS, "sh"]
    d.start()
    return d


@pytest.fixture
def dual_name(workdir):
    """(port, hosts): a port free on 127.0.0.1 and [::1], a black hole on
    [::1] there, and a hosts file in which NAME resolves to ::1 first, then
    127.0.0.1."""
    require_root("a mount namespace with its own /etc/hosts")
    if not ipv6_loopback():
        pytest.fail("this test needs an IPv6 loopback (::1); CI has one")
    for _ in range(20):
        port = free_port()
        try:
            hole = BlackHole(port)
            break
        except OSError:
            continue
    else:
        pytest.fail("no port free on both loopbacks after 20 tries")
    if not hole.works:
        hole.close()
        pytest.fail("this network stack completes connections past a full accept queue: no black hole to test against")
    hosts = os.path.join(workdir, "hosts")
    with open(hosts, "w") as f:
        f.write("::1 %s\n127.0.0.1 %s\n" % (NAME, NAME))
    os.chmod(hosts, 0o644)
    yield port, hosts
    hole.close()


def test_unreachable_ipv6_costs_the_head_start_not_connect_timeout(daemon, smarthost, dual_name):
    """Before: the IPv6 address was tried alone until connect_timeout (10 s
    here) ran out, then the IPv4 one.  Now the IPv4 attempt starts after the
    head start (250 ms) beside the stalled one and wins."""
    port, hosts = dual_name
    sh = smarthost(port=port)
    d = start_with_hosts(daemon(smarthost=("main", smarthost_opts(port, host='"%s"' % NAME,
                                                                  connect_timeout="10s")),
                                start=False), hosts)
    msg = make_message(subject="happy eyeballs")
    r = d.sendmail(["-i", "-f", SENDER, RCPT], msg)
    assert r.rc == 0, r
    qid = d.accepted_id(SENDER)
    sent = d.wait_for_record(id=qid, to=RCPT, status="sent", timeout=20)
    assert sent["relay"] == "%s[127.0.0.1]:%d" % (NAME, port), sent
    assert sent["attempts"] == "1"
    assert [t.content for t in sh.delivered()] == [to_crlf(msg)]
    # IPv6 was tried first: the interleaving starts with the resolver's first family
    lines = d.log_lines()
    v6 = [i for i, l in enumerate(lines) if "%s[::1]:%d: connecting" % (NAME, port) in l]
    v4 = [i for i, l in enumerate(lines) if "%s[127.0.0.1]:%d: connecting" % (NAME, port) in l]
    assert v6 and v4 and v6[0] < v4[0], (v6, v4)
    # and IPv4 started beside it, while the stalled attempt was still
    # pending: no end of the IPv6 attempt comes before it (an order of
    # events, where a measured time would depend on the machine's load)
    v6_end = [i for i, l in enumerate(lines) if "connect to %s[::1]:%d" % (NAME, port) in l]
    assert not v6_end or v6_end[0] > v4[0], (v6_end, v4)


def test_connect_timeout_bounds_the_whole_phase(daemon, dual_name):
    """With no address answering, the attempt ends after connect_timeout in
    all.  Before: connect_timeout for each address (6 s here)."""
    port, hosts = dual_name
    hole4 = BlackHole(port, host="127.0.0.1")     # both addresses black holes now
    if not hole4.works:
        hole4.close()
        pytest.fail("this network stack completes connections past a full accept queue: no black hole to test against")
    d = start_with_hosts(daemon(smarthost=("main", smarthost_opts(port, host='"%s"' % NAME,
                                                                  connect_timeout="3s")),
                                overrides={"retry_schedule": ["1h"]}, start=False), hosts)
    t0 = time.monotonic()
    r = d.sendmail(["-i", "-f", SENDER, RCPT], make_message(subject="all down"))
    assert r.rc == 0, r
    qid = d.accepted_id(SENDER)
    rec = d.wait_for_record(id=qid, to=RCPT, status="deferred", timeout=15)
    elapsed = time.monotonic() - t0
    hole4.close()
    assert 2.5 < elapsed < 5, elapsed
    assert "timed out after 3s" in rec["text"], rec
    assert rec["dsn"] == "4.4.1", rec
    # both addresses were tried within the phase
    lines = d.log_lines()
    assert any("%s[::1]:%d: connecting" % (NAME, port) in l for l in lines)
    assert any("%s[127.0.0.1]:%d: connecting" % (NAME, port) in l for l in lines)

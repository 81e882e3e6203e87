"""
mailrelayd under a service manager: sd_notify messages (READY, STATUS,
WATCHDOG, RELOADING, STOPPING) read from a NOTIFY_SOCKET the test listens
on, socket activation through systemd-socket-activate, and the installed
units checked by systemd-analyze.
"""

import os
import re
import shutil
import socket
import subprocess

import pytest

from mrtest import make_message, wait_until

SOCKET_ACTIVATE = shutil.which("systemd-socket-activate")
ANALYZE = shutil.which("systemd-analyze")


class Notifications:
    """A NOTIFY_SOCKET: every datagram the daemon sends, split into its lines."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setblocking(False)
        self.messages = []

    def poll(self):
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return self.messages
            self.messages.append(data.decode().split("\n"))

    def lines(self, start=0):
        return [l for m in self.poll()[start:] for l in m]

    def wait(self, pred, what, start=0, timeout=10.0):
        return wait_until(lambda: [l for l in self.lines(start) if pred(l)], timeout, what=what)

    def close(self):
        self.sock.close()


@pytest.fixture
def notify(workdir):
    n = Notifications(os.path.join(workdir, "notify.sock"))
    yield n
    n.close()


def test_notify_ready_status_watchdog_reload_stopping(daemon, notify):
    d = daemon(start=False)
    d.wrapper = ["env", "NOTIFY_SOCKET=" + notify.path, "WATCHDOG_USEC=400000"]
    d.start()
    notify.wait(lambda l: l == "READY=1", "READY=1")
    # The queue summary, at start and whenever the queue changes.
    notify.wait(lambda l: l == "STATUS=0 queued: 0 being delivered, 0 deferred, 0 held",
                "STATUS= with an empty queue")
    # WATCHDOG_USEC=0.4s: pinged every 0.2s.
    notify.wait(lambda l: l == "WATCHDOG=1", "WATCHDOG=1")
    seen = len(notify.poll())
    notify.wait(lambda l: l == "WATCHDOG=1", "a second WATCHDOG=1", start=seen)

    # No smarthost: the message stays queued and STATUS= says so within a second or two.
    r = d.sendmail(["-t"], make_message(to=("a@example.org",)))
    assert r.rc == 0, r
    notify.wait(lambda l: l.startswith("STATUS=1 queued:"), "STATUS= naming 1 queued")

    seen = len(notify.poll())
    d.hup()
    rel = notify.wait(lambda l: l == "RELOADING=1", "RELOADING=1 on SIGHUP", start=seen)
    assert rel
    msg = next(m for m in notify.poll()[seen:] if "RELOADING=1" in m)
    mono = [l for l in msg if l.startswith("MONOTONIC_USEC=")]
    assert mono and int(mono[0].split("=", 1)[1]) > 0, msg
    notify.wait(lambda l: l == "READY=1", "READY=1 after the reload", start=seen)

    seen = len(notify.poll())
    d.stop()
    assert "STOPPING=1" in notify.lines(seen)
    # Rate: at most one STATUS= a second (plus the one at start).
    statuses = [l for l in notify.lines() if l.startswith("STATUS=")]
    assert len(statuses) <= 4, statuses


def activated(d, listeners, extra_env=()):
    argv = [SOCKET_ACTIVATE]
    for l in listeners:
        argv += ["-l", l]
    for e in extra_env:
        argv += ["-E", e]
    d.wrapper = argv
    d.start()


@pytest.mark.skipif(SOCKET_ACTIVATE is None, reason="systemd-socket-activate not installed")
def test_socket_activation_uses_passed_sockets(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh, start=False)
    activated(d, [d.submit_sock, "127.0.0.1:%d" % d.tcp_port])
    d.wait_for_log(r"listening on %s \(passed by systemd\)" % re.escape(d.submit_sock))
    d.wait_for_log(r"listening on 127\.0\.0\.1:%d \(passed by systemd\)" % d.tcp_port)
    # The socket is the one systemd made, not unlinked and bound anew.
    assert not any("listening on %s" % d.submit_sock == l.split(": ", 1)[-1]
                   for l in d.log_lines())
    r = d.sendmail(["-t"], make_message(to=("rcpt@example.org",)))
    assert r.rc == 0, r
    sh.wait_for(1)
    with socket.create_connection(("127.0.0.1", d.tcp_port), timeout=5) as s:
        assert s.recv(512).startswith(b"220")
    d.stop()


@pytest.mark.skipif(SOCKET_ACTIVATE is None, reason="systemd-socket-activate not installed")
def test_socket_activation_binds_what_was_not_passed(daemon, smarthost):
    """Only the submit socket passed: the TCP listener is bound by the daemon."""
    sh = smarthost()
    d = daemon(sh, start=False)
    activated(d, [d.submit_sock])
    d.wait_for_log(r"listening on %s \(passed by systemd\)" % re.escape(d.submit_sock))
    d.wait_for_log(r"listening on 127\.0\.0\.1:%d$" % d.tcp_port)


@pytest.mark.skipif(SOCKET_ACTIVATE is None, reason="systemd-socket-activate not installed")
def test_socket_activation_unconfigured_socket_closed(daemon, workdir):
    from mrtest import free_port
    d = daemon(start=False)
    stray = free_port()
    activated(d, [d.submit_sock, "127.0.0.1:%d" % stray])
    d.wait_for_log(r"socket-activated descriptor \d+ matches no `listen` entry: closed")
    d.stop()


def _make(build, *args):
    p = subprocess.run(["make", "-s", "-C", build.dir] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=300)
    assert p.returncode == 0, "make %s: exit %d\n%s" % (" ".join(args), p.returncode, p.stdout)
    return p.stdout


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed")
def test_installed_units_verify_and_score(build, workdir):
    """make install DESTDIR=...: both units pass systemd-analyze verify, the
    service runs as mailrelay with no capability, and its exposure is <= 1.5."""
    dest = os.path.join(workdir, "dest")
    _make(build, "install", "DESTDIR=" + dest)
    try:
        unitdir = _make(build, "--no-print-directory",
                        "--eval=mr-unitdir: ; @echo $(systemdunitdir)", "mr-unitdir").strip()
        service = dest + unitdir + "/mailrelay.service"
        sock = dest + unitdir + "/mailrelay.socket"
        assert os.path.isfile(sock), "mailrelay.socket not installed"
        with open(service) as f:
            unit = f.read()
        assert "\nUser=mailrelay\n" in unit and "\nCapabilityBoundingSet=\n" in unit, unit
        with open(sock) as f:
            assert "\nListenStream=/run/mailrelay/submit.sock\n" in f.read()

        # verify checks that ExecStart exists: a copy names the staged daemon.
        m = re.search(r"\nExecStart=(\S+)", unit)
        assert m, unit
        check = os.path.join(workdir, "units")
        os.mkdir(check)
        with open(os.path.join(check, "mailrelay.service"), "w") as f:
            f.write(unit.replace("ExecStart=" + m.group(1), "ExecStart=" + dest + m.group(1)))
        shutil.copy(sock, check)
        p = subprocess.run([ANALYZE, "verify", "--man=no", os.path.join(check, "mailrelay.service"),
                            os.path.join(check, "mailrelay.socket")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
        assert p.returncode == 0 and p.stdout.strip() == "", p.stdout
        p = subprocess.run([ANALYZE, "security", "--offline=yes", "--no-pager", service],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
        m = re.search(r"Overall exposure level for mailrelay\.service: (\d+\.\d+)", p.stdout)
        assert m, p.stdout
        assert float(m.group(1)) <= 1.5, p.stdout
    finally:
        subprocess.run(["make", "-s", "-C", build.dir, "uninstall", "DESTDIR=" + dest],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)

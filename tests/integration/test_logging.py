"""
Where mailrelayd's log lines go, so that none vanish: RFC 3339 timestamps
on the foreground lines, journald's native protocol with MAILRELAY_*
fields when stderr is the journal (JOURNAL_STREAM), and a warning on
stderr before detaching when neither journald nor syslog can be reached.

journald cannot run in the test container, so the journal is a datagram
socket of the test's, bind-mounted over /run/systemd/journal in a mount
namespace of the daemon's own (root only, as the suite runs); the test
decodes the native protocol that sd_journal_send(3) writes there.
"""

import datetime
import os
import re
import signal
import socket
import stat
import struct
import subprocess
import threading

import pytest

from mrtest import STAMP_RE, client_env, make_message, quote, require_root, wait_until

# Mount a private /run/systemd (so the host's journal, if any, is never
# written) whose journal/ is the test's directory; then run the daemon.
NS_SCRIPT = ('mount -t tmpfs -o mode=0755 tmpfs /run/systemd && mkdir /run/systemd/journal && '
             'mount --bind "$MR_JOURNAL_DIR" /run/systemd/journal && exec "$@"')


def parse_native(data):
    """One journald native-protocol datagram -> dict of fields."""
    fields = {}
    i = 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            k, _, v = line.partition(b"=")
            fields[k.decode()] = v.decode("utf-8", "replace")
            i = nl + 1
        else:
            (n,) = struct.unpack("<Q", data[nl + 1:nl + 9])
            fields[line.decode()] = data[nl + 9:nl + 9 + n].decode("utf-8", "replace")
            i = nl + 9 + n + 1
    return fields


class Journal:
    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "journal")
        os.mkdir(self.dir)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(os.path.join(self.dir, "socket"))
        os.chmod(os.path.join(self.dir, "socket"), 0o666)
        self.sock.settimeout(0.1)
        self.entries = []
        self.lock = threading.Lock()
        self.running = True
        # Read all the time: a full datagram queue would block the daemon.
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while self.running:
            try:
                e = parse_native(self.sock.recv(65536))
            except (socket.timeout, OSError):
                continue
            with self.lock:
                self.entries.append(e)

    def poll(self):
        with self.lock:
            return list(self.entries)

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close()

    def wait(self, what, **want):
        def found():
            return [e for e in self.poll() if all(e.get(k) == v for k, v in want.items())]
        return wait_until(found, 10, what=what)[0]


def test_foreground_lines_carry_rfc3339_timestamps(daemon):
    d = daemon()
    r = d.sendmail(["-t"], make_message(to=("a@example.org",)))
    assert r.rc == 0, r
    qid = d.accepted_id()
    raw = [l for l in d.log_text().split("\n") if l]
    assert raw
    for line in raw:
        m = STAMP_RE.match(line)
        assert m, "no timestamp: %r" % line
        assert line[m.end():].startswith("mailrelayd: "), line
    stamp = STAMP_RE.match(raw[-1]).group(0).strip()
    when = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - when).total_seconds()) < 120, (stamp, now)
    assert re.search(r"\.\d{3}(Z|[+-]\d\d:\d\d)$", stamp), stamp
    # log_lines() hands the tests the lines without the stamp.
    assert any(l.startswith("mailrelayd: %s: " % qid) for l in d.log_lines())


def test_journal_gets_structured_fields_and_no_timestamps(request, daemon, smarthost, workdir):
    require_root("a mount namespace over /run/systemd")
    sh = smarthost()
    d = daemon(sh, start=False)
    j = Journal(workdir)
    request.addfinalizer(j.close)
    # stderr is the journal: JOURNAL_STREAM names its device and inode.
    log = os.path.join(d.dir, "mailrelayd.0.log")
    open(log, "wb").close()
    st = os.stat(log)
    d.wrapper = ["env", "JOURNAL_STREAM=%d:%d" % (st.st_dev, st.st_ino), "MR_JOURNAL_DIR=" + j.dir,
                 "unshare", "-m", "--propagation", "private", "sh", "-c", NS_SCRIPT, "sh"]
    d.start()
    j.wait("the start line in the journal", PRIORITY="6", SYSLOG_IDENTIFIER="mailrelayd")

    r = d.sendmail(["-t", "-f", "sender@example.org"], make_message(to=("rcpt@example.org",)))
    assert r.rc == 0, r
    sh.wait_for(1)
    e = j.wait("the delivery line with its fields", MAILRELAY_STATUS="sent")
    qid = e["MAILRELAY_QUEUE_ID"]
    assert re.fullmatch(r"[0-9A-F]{16}", qid), e
    assert e["MAILRELAY_RECIPIENT"] == "rcpt@example.org", e
    assert e["MAILRELAY_RELAY"].startswith("127.0.0.1"), e
    assert e["MAILRELAY_DSN"] == "2.0.0", e
    assert e["PRIORITY"] == "6", e
    assert e["MESSAGE"].startswith(qid + ": to=<rcpt@example.org>"), e
    assert e["SYSLOG_FACILITY"] == "2", e
    # The acceptance line: queue id, no recipient field invented.
    acc = j.wait("the acceptance line", MAILRELAY_QUEUE_ID=qid, MAILRELAY_STATUS="queued")
    assert "MAILRELAY_RECIPIENT" not in acc, acc
    d.stop()
    # Nothing went to stderr, hence nothing stamped twice.
    assert not STAMP_RE.search(d.log_text()), d.log_text()


def _daemon_pids(conf):
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % p, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if conf.encode() in argv and any(a.endswith(b"mailrelayd") for a in argv):
            pids.append(int(p))
    return pids


def test_detached_daemon_without_journal_or_syslog_says_so(daemon, workdir):
    require_root("a mount namespace over /run/systemd and /dev")
    d = daemon(start=False)
    # In a private mount namespace: no journal socket, and a /dev holding
    # only null, so that a syslog socket of this machine is out of sight too.
    keep = os.path.join(workdir, "dev-null")
    open(keep, "w").close()
    script = ("mount -t tmpfs -o mode=0755 tmpfs /run/systemd && "
              "mount --bind /dev/null \"$0\" && mount -t tmpfs -o mode=0755 tmpfs /dev && "
              ": > /dev/null && mount --bind \"$0\" /dev/null && exec \"$@\"")
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, keep,
                        d.build.mailrelayd, "-c", d.conf], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20, env=client_env())
    try:
        err = p.stderr.decode(errors="replace")
        assert p.returncode == 0, err
        assert re.search(r"mailrelayd: neither journald \(/run/systemd/journal/socket\) nor syslog "
                         r"\(/dev/log\) can be reached and no log_file is set: log lines after start-up are lost", err), err
    finally:
        pids = wait_until(lambda: _daemon_pids(d.conf), 10, what="the detached daemon")
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not _daemon_pids(d.conf), 15, what="the detached daemon to stop")


def test_log_file_gets_every_line_and_is_reopened_on_sighup(daemon, workdir):
    path = os.path.join(workdir, "mailrelay.log")
    d = daemon(overrides={"log_file": quote(path)})
    r = d.sendmail(["-t"], make_message(to=("a@example.org",)))
    assert r.rc == 0, r
    qid = d.accepted_id()

    def lines(p):
        try:
            with open(p) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []
    line = wait_until(lambda: [l for l in lines(path) if ("%s: from=<" % qid) in l], 10,
                      what="the acceptance line in log_file")[0]
    m = STAMP_RE.match(line)
    assert m, line
    assert line[m.end():].startswith("mailrelayd[%d]: %s: from=<" % (d.proc.pid, qid)), line
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # the daemon's umask 077

    # logrotate: rename, then SIGHUP; new lines go to a new file.
    os.rename(path, path + ".1")
    d.hup()
    wait_until(lambda: any("configuration reloaded" in l for l in lines(path)), 10,
               what="the reload line in the new log file")
    before = lines(path + ".1")
    r = d.sendmail(["-t", "-f", "second@example.org"], make_message(to=("b@example.org",)))
    assert r.rc == 0, r
    qid2 = d.accepted_id(sender="second@example.org")
    wait_until(lambda: any("%s: from=<" % qid2 in l for l in lines(path)), 10,
               what="the second acceptance line in the new log file")
    d.stop()
    assert lines(path + ".1") == before
    assert any(l.endswith("mailrelayd[%d]: stopped" % d.proc.pid) for l in lines(path)), lines(path)


def test_log_file_that_cannot_be_opened_stops_the_start(daemon, workdir):
    d = daemon(overrides={"log_file": quote(os.path.join(workdir, "no", "such", "dir.log"))},
               start=False)
    p = subprocess.run([d.build.mailrelayd, "-c", d.conf, "-f"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=15, env=client_env())
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 73, (p.returncode, err)
    assert re.search(r"mailrelayd: log_file .*/no/such/dir\.log: No such file or directory$",
                     err.strip().splitlines()[-1]), err

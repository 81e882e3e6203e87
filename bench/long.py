#!/usr/bin/python3
"""
The long fault run of issue 14 point 4: `bench/run --long [MESSAGES]`.

MESSAGES (default 10,000) go into one mailrelayd through its sendmail
(several processes at a time) and over loopback SMTP (several connections),
while a flaky smarthost (bench/flaky_smarthost.py) defers, drops and stalls
at random and the daemon is SIGKILLed KILLS times (default 50) at random
moments, each kill followed, after a random pause in which sendmail must
use the maildrop, by a restart.  Once the submitters are done and every
kill made, the queue must drain.  Then the run is judged:

  lost          every acknowledged message (sendmail exited 0, or the SMTP
                client got 250 to the final dot) must have reached the
                smarthost at least once;
  duplicates    each copy beyond the first must come from a kill while its
                smarthost transaction was in flight: the same queue entry
                delivered again, with a kill between the MAIL FROM of the
                two copies (the daemon died before it recorded the 250),
                but not more than RECORD_SLACK after the daemon logged the
                first copy "removed" (then its record of the 250 lagged).
                A second queue entry for one message was not in flight at
                the smarthost (SPEC: "a duplicate is possible only for a
                transaction that was in flight at the smarthost") and fails
                the run; the summary names its cause: a kill during its
                sendmail (the 250 to the dot lost, and sendmail wrote the
                maildrop too) or during the drop's pickup (committed, the
                drop not yet removed, imported again), or no kill at all;
  corrupted     every copy's body must be the body submitted;
  foreign       nothing else may arrive (a bounce would mean a message
                was given up).

Messages that were not acknowledged may arrive or not.  The summary is
printed; the exit status is 0 only when nothing was lost, corrupted or
unexplained, the queue drained in time and the daemon never died on its
own.  The work directory (spool, daemon log, smarthost log, kills.log:
SENT GONE PHASE per kill, submissions.log: SEQ PATH T0 T1 acked|unacked
maildrop|- per message) is kept when the run fails, or with --keep.

Times are wall-clock seconds (time.time() here and in the smarthost, the
daemon's RFC 3339 stamps), all from one machine.

A kill lasts from the SIGKILL sent to mailrelayd until mailrelayd and its
delivery process are both gone.  The delivery process is ended by the
kernel once mailrelayd's exit is done (PR_SET_PDEATHSIG), a few
milliseconds later, and may meanwhile go on with what it holds: a
transaction the smarthost sees begin in that time was in flight at the
crash all the same.
"""

import argparse
import datetime
import hashlib
import json
import os
import pwd
import random
import re
import select
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time

SENDER = "bench@bench.test"
RCPT = "rcpt@example.net"
SENDMAIL_WORKERS = 4
SMTP_WORKERS = 2
AT_START_SHARE = 0.2    # the share of kills made during a start (queue load, pickup)
DOWN_MAX = 1.0          # the longest pause between a kill and the restart, seconds
STALL = 5.0             # a kill waiting this long for progress is made anyway
MAILDROP_NOTE = b"message left in the maildrop"
STAMP_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z mailrelayd: ([0-9A-F]{16}): from=.* via=(\w+)")
REMOVED_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z mailrelayd: ([0-9A-F]{16}): removed")
# A kill this long after the daemon logged a message "removed" (every
# recipient final) no longer counts as a kill in flight: the daemon had
# acted on the 250 and its record of it should have been on disk.  One
# second is far more than a commit batch takes, even on a busy machine.
RECORD_SLACK = 1.0
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")


def note(msg):
    print("bench/long: %s" % msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# the messages: one per sequence number, the same every time

def message(seq):
    """(LF text for sendmail, CRLF bytes for SMTP, body digest) of message seq.

    Bodies of a few lines to about 20 KB, so that a drop in the middle of
    DATA cuts some of them; lines starting with a dot, and lone dots (the
    sendmail runs use -i), exercise dot-stuffing both ways.
    """
    rng = random.Random(seq)
    n = rng.choice((2, 5, 20, 60, 250))
    body = []
    for i in range(n):
        r = rng.random()
        if r < 0.05:
            body.append(".")
        elif r < 0.10:
            body.append(".dot line %d of message %d" % (i, seq))
        else:
            body.append("line %d of message %d %s" % (i, seq, "x" * rng.randrange(60)))
    head = ["From: Bench <%s>" % SENDER, "To: <%s>" % RCPT,
            "Subject: long run message %d" % seq,
            "Date: Mon, 02 Jan 2023 03:04:05 +0000",
            "Message-ID: <long.%d@bench.test>" % seq,
            "X-Bench-Seq: %d" % seq]
    lf = ("\n".join(head) + "\n\n" + "\n".join(body) + "\n").encode()
    crlf = lf.replace(b"\n", b"\r\n")
    digest = hashlib.sha256(("\r\n".join(body) + "\r\n").encode()).hexdigest()[:16]
    return lf, crlf, digest


class Pool:
    """Sequence numbers handed out to the workers of one path."""

    def __init__(self, seqs):
        self.seqs = list(seqs)
        self.lock = threading.Lock()

    def next(self):
        with self.lock:
            return self.seqs.pop(0) if self.seqs else None


# ---------------------------------------------------------------------------
# the daemon

def delivery_pids(pid):
    """The delivery processes (mailrelay-deliver) of the daemon with pid."""
    found = []
    for e in os.listdir("/proc"):
        try:
            with open("/proc/%s/stat" % e) as f:
                stat = f.read()
        except (OSError, ValueError):
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        if int(stat[stat.rindex(")") + 2:].split()[1]) == pid and comm == "mailrelay-deliv":
            found.append(int(e))
    return found


class Daemon:
    def __init__(self, build, work, conf):
        self.mailrelayd = os.path.join(build, "mailrelayd")
        self.conf = conf
        self.submit_sock = os.path.join(work, "submit.sock")
        self.log = os.path.join(work, "mailrelayd.log")
        self.proc = None
        self.starts = 0
        self.last_start = 0.0
        self.crashes = []       # (time, status) of exits nobody asked for
        self.lock = threading.Lock()

    def start(self):
        with self.lock:
            with open(self.log, "ab") as f:
                f.write(("=== bench/long: start %d at %.6f\n" % (self.starts, time.time())).encode())
                self.last_start = time.time()
                self.proc = subprocess.Popen([self.mailrelayd, "-c", self.conf, "-f"],
                                             stdin=subprocess.DEVNULL, stdout=f, stderr=f)
            self.starts += 1

    def kill(self):
        """SIGKILL; (sent, gone): when it was sent and when the daemon and its
        delivery process were both gone, or None when the daemon had died
        already."""
        with self.lock:
            if self.check():
                return None
            fds = []
            for pid in delivery_pids(self.proc.pid):
                try:
                    fds.append(os.pidfd_open(pid))
                except OSError:
                    pass            # ended meanwhile
            t = time.time()
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            for fd in fds:
                select.select([fd], [], [], 10.0)     # readable once it has exited
                os.close(fd)
            return t, time.time()

    def check(self):
        """True (and the death noted) when the daemon exited on its own."""
        if self.proc is not None and self.proc.poll() is not None and self.proc.returncode != -signal.SIGKILL:
            self.crashes.append((time.time(), self.proc.returncode))
            note("mailrelayd exited on its own with status %r" % self.proc.returncode)
            self.proc = None
            return True
        return self.proc is None

    def ready(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(2.0)
        try:
            s.connect(self.submit_sock)
            ok = s.recv(512).startswith(b"220")
            s.sendall(b"QUIT\r\n")
            return ok
        except OSError:
            return False
        finally:
            s.close()

    def stop(self, timeout=60):
        """SIGTERM; the exit status (None: it had to be killed)."""
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                return self.proc.returncode if self.proc else None
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None


def wait_for(pred, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


# ---------------------------------------------------------------------------
# the run

class LongRun:
    def __init__(self, args, work=None):
        """A new run in a new work directory, or (work) the records of one
        that ran, to be judged again."""
        self.a = args
        self.n = args.messages
        self.seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
        self.rng = random.Random(self.seed)
        self.work = work or tempfile.mkdtemp(prefix="mailrelay-long.", dir=args.workdir)
        self.sendmail = os.path.join(args.build or "", "mailrelay-sendmail")
        self.mailrelay = os.path.join(args.build or "", "mailrelay")
        self.conf = os.path.join(self.work, "mailrelay.conf")
        self.shlog = os.path.join(self.work, "smarthost.log")
        self.shstats = os.path.join(self.work, "smarthost.stats")
        self.subs = {}          # seq: dict(path, t0, t1, acked, maildrop, why)
        self.subs_lock = threading.Lock()
        self.kills = []         # (sent, gone, phase): see Daemon.kill()
        self.submitting = True
        self.acked = 0
        self._shlog_off = 0
        self._received = 0
        self.t_start = time.time()

    # -- setup
    def free_port(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def write_config(self, sport):
        self.lport = self.free_port()
        w = self.work
        with open(self.conf, "w") as f:
            f.write('''hostname = "bench.test"
spool_dir = "%s/spool"
listen = { "unix:%s/submit.sock", "127.0.0.1:%d" }
control_socket = "%s/control.sock"
user = "%s"
log_level = info
retry_schedule = { 1s }
smarthost flaky { host = "127.0.0.1"; port = %d; tls = disabled; timeout = 30s; connect_timeout = 5s }
''' % (w, w, self.lport, w, pwd.getpwuid(os.getuid()).pw_name, sport))

    def start_smarthost(self):
        sport = self.free_port()
        argv = ["/usr/bin/python3", os.path.join(os.path.dirname(os.path.abspath(__file__)), "flaky_smarthost.py"),
                "--port", str(sport), "--log", self.shlog, "--stats", self.shstats,
                "--seed", str(self.rng.randrange(1 << 32))]
        self.sh = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=open(os.path.join(self.work, "smarthost.err"), "wb"),
                                   stdin=subprocess.DEVNULL)
        self.sh_seed = self.sh.stdout.readline().decode().strip().rsplit(" ", 1)[-1]
        ready = self.sh.stdout.readline().decode()
        if not ready.startswith("ready"):
            raise SystemExit("bench/long: the flaky smarthost did not start (see %s/smarthost.err)" % self.work)
        return sport

    # -- what the smarthost has accepted
    def received(self):
        """The number of lines in the smarthost's log, read incrementally."""
        try:
            with open(self.shlog, "rb") as f:
                f.seek(self._shlog_off)
                chunk = f.read()
        except FileNotFoundError:
            return 0
        end = chunk.rfind(b"\n") + 1
        self._received += chunk.count(b"\n", 0, end)
        self._shlog_off += end
        return self._received

    def progress(self):
        return self.acked + self.received()

    # -- submitters
    def record(self, seq, path, t0, t1, acked, maildrop=False, why=""):
        with self.subs_lock:
            self.subs[seq] = dict(path=path, t0=t0, t1=t1, acked=acked, maildrop=maildrop, why=why)
            if acked:
                self.acked += 1

    def sendmail_worker(self, pool):
        argv = [self.sendmail, "-C", self.conf, "-v", "-i", "-f", SENDER, RCPT]
        while True:
            seq = pool.next()
            if seq is None:
                return
            lf, _, _ = message(seq)
            t0 = time.time()
            try:
                p = subprocess.run(argv, input=lf, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
                rc, err = p.returncode, p.stderr
            except subprocess.TimeoutExpired:
                rc, err = None, b"no exit within 600 s"
            t1 = time.time()
            last = err.decode("utf-8", "replace").strip().splitlines()[-1:]
            why = "" if rc == 0 else "exit %r: %s" % (rc, last[0] if last else "")
            self.record(seq, "sendmail", t0, t1, rc == 0, MAILDROP_NOTE in err, why)

    def smtp_worker(self, pool):
        """One connection, reused; a seq whose DATA was not yet sent is kept
        for the next attempt (it cannot be stored), any later failure uses
        it up (it may be stored and arrive, unacknowledged)."""
        conn = None
        seq = None
        while True:
            if seq is None:
                seq = pool.next()
                if seq is None:
                    break
            if conn is None:
                try:
                    conn = smtplib.SMTP("127.0.0.1", self.lport, local_hostname="bench.test", timeout=120)
                    conn.ehlo()
                except OSError:
                    conn = None
                    time.sleep(0.02)       # the daemon is down: its restart is awaited
                    continue
            t0 = time.time()
            try:
                code, _ = conn.docmd("MAIL", "FROM:<%s>" % SENDER)
                if code == 250:
                    code, _ = conn.docmd("RCPT", "TO:<%s>" % RCPT)
                if code == 250:
                    code, _ = conn.docmd("DATA")
                if code != 354:
                    raise smtplib.SMTPResponseException(code, b"refused before the data")
            except OSError:
                try:
                    conn.close()
                finally:
                    conn = None
                time.sleep(0.02)
                continue
            _, crlf, _ = message(seq)
            stuffed = re.sub(rb"(?m)^\.", b"..", crlf) + b".\r\n"
            try:
                conn.send(stuffed)
                code, text = conn.getreply()
            except OSError as e:
                code, text = None, str(e).encode()
            self.record(seq, "smtp", t0, time.time(), code == 250,
                        why="" if code == 250 else "reply to the dot: %r %s" % (code, text.decode("utf-8", "replace")))
            if code != 250:
                try:
                    conn.close()
                finally:
                    conn = None
            seq = None
        if conn is not None:
            try:
                conn.quit()
            except OSError:
                pass

    # -- the killer
    def killer(self, daemon):
        k = self.a.kills
        # thresholds of progress (acknowledged + received), spread over the
        # submissions and the deliveries that follow them
        marks = sorted(self.rng.uniform(0.02, 1.9) * self.n for _ in range(k))
        for i in range(k):
            if i > 0 and self.rng.random() < AT_START_SHARE:
                phase = "start"
                at = daemon.last_start + self.rng.uniform(0.0, 0.4)
                time.sleep(max(0.0, at - time.time()))
            else:
                last, since = self.progress(), time.monotonic()
                while True:
                    daemon.check() and daemon.start()
                    p = self.progress()
                    if p >= marks[i]:
                        break
                    if p != last:
                        last, since = p, time.monotonic()
                    elif time.monotonic() - since > STALL:
                        break
                    time.sleep(0.005)
                time.sleep(self.rng.uniform(0.0, 0.03))
                phase = "submitting" if self.submitting else "draining"
            t = daemon.kill()
            if t is not None:
                self.kills.append((t[0], t[1], phase))
            time.sleep(self.rng.uniform(0.0, DOWN_MAX))
            daemon.start()

    # -- the drain
    def queue_empty(self):
        p = subprocess.run([self.mailrelay, "-c", self.conf, "queue", "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        if p.returncode != 0:
            return False
        try:
            if json.loads(p.stdout) != []:
                return False
        except ValueError:
            return False
        md = os.path.join(self.work, "spool", "maildrop")
        return not [f for f in os.listdir(md) if not f.startswith(".")]

    # -- the whole run
    def rel(self, t):
        """A time in the summary: seconds since the run began."""
        return "%.3f" % (t - self.t_start)

    def run(self):
        t_start = self.t_start
        sport = self.start_smarthost()
        self.write_config(sport)
        daemon = Daemon(self.a.build, self.work, self.conf)
        print("bench/run --long: %d messages, %d SIGKILLs; seed %d (smarthost seed %s); work directory %s"
              % (self.n, self.a.kills, self.seed, self.sh_seed, self.work), flush=True)
        daemon.start()
        if not wait_for(daemon.ready, 30):
            raise SystemExit("bench/long: mailrelayd did not start:\n" + open(daemon.log).read()[-3000:])
        seqs = list(range(1, self.n + 1))
        sm_pool = Pool(s for s in seqs if s % 3 != 0)
        smtp_pool = Pool(s for s in seqs if s % 3 == 0)
        workers = [threading.Thread(target=self.sendmail_worker, args=(sm_pool,)) for _ in range(SENDMAIL_WORKERS)]
        workers += [threading.Thread(target=self.smtp_worker, args=(smtp_pool,)) for _ in range(SMTP_WORKERS)]
        kt = threading.Thread(target=self.killer, args=(daemon,))
        for t in workers:
            t.start()
        kt.start()
        last = time.monotonic()
        while any(t.is_alive() for t in workers):
            for t in workers:
                t.join(1.0)
            if not kt.is_alive():
                daemon.check() and daemon.start()      # died on its own after the last kill
            if time.monotonic() - last > 30:
                last = time.monotonic()
                note("%d of %d submitted, %d received, %d kills"
                     % (len(self.subs), self.n, self.received(), len(self.kills)))
        self.submitting = False
        t_submitted = time.time()
        kt.join()
        t_killed = time.time()
        drain_bound = 120 + self.n / 50
        drained = wait_for(lambda: daemon.check() and daemon.start() or self.queue_empty(), drain_bound, 0.2)
        t_end = time.time()
        rc = daemon.stop()
        self.sh.send_signal(signal.SIGTERM)
        self.sh.wait(30)
        timing = dict(messages=self.n, t_start=t_start, wall=t_end - t_start, submit=t_submitted - t_start,
                      drain=t_end - max(t_submitted, t_killed), drained=drained, drain_bound=drain_bound,
                      stop_rc=rc, starts=daemon.starts, crashes=len(daemon.crashes))
        self.save(timing)
        ok, _ = self.judge(timing)
        if ok and not self.a.keep:
            shutil.rmtree(self.work, ignore_errors=True)
        else:
            print("work directory kept: %s" % self.work)
        return 0 if ok else 1

    # -- the records the judgement rests on, kept with the logs
    def save(self, timing):
        with open(os.path.join(self.work, "kills.log"), "w") as f:
            f.writelines("%.6f %.6f %s\n" % k for k in self.kills)
        with open(os.path.join(self.work, "submissions.log"), "w") as f:
            f.writelines("%d %s %.6f %.6f %s %s %s\n" % (seq, r["path"], r["t0"], r["t1"],
                                                         "acked" if r["acked"] else "unacked",
                                                         "maildrop" if r["maildrop"] else "-", r["why"])
                         for seq, r in sorted(self.subs.items()))
        with open(os.path.join(self.work, "run.json"), "w") as f:
            json.dump(timing, f)

    def load(self):
        """The records save() wrote; the run's timing."""
        with open(os.path.join(self.work, "run.json")) as f:
            timing = json.load(f)
        self.n = timing["messages"]
        self.t_start = timing["t_start"]
        with open(os.path.join(self.work, "kills.log")) as f:
            self.kills = [(float(t), float(g), ph) for t, g, ph in (l.split() for l in f)]
        with open(os.path.join(self.work, "submissions.log")) as f:
            for line in f:
                seq, path, t0, t1, acked, md, why = (line.rstrip("\n").split(" ", 6) + [""])[:7]
                self.subs[int(seq)] = dict(path=path, t0=float(t0), t1=float(t1), acked=acked == "acked",
                                           maildrop=md == "maildrop", why=why)
        return timing

    # -- judging
    def judge(self, timing):
        """Print the summary; (passed, {class: count})."""
        copies = {}             # seq: [(qid, t_mail, t_accept, sid, digest)]
        foreign = []
        with open(self.shlog) as f:
            for line in f:
                parts = line.split()
                if len(parts) != 6 or not parts[0].isdigit() or not 1 <= int(parts[0]) <= self.n:
                    foreign.append(line.strip())
                    continue
                seq = int(parts[0])
                copies.setdefault(seq, []).append((parts[1], float(parts[2]), float(parts[3]), parts[4], parts[5]))
        kills = sorted((t, g) for t, g, _ in self.kills)

        def kill_in(a, b):
            """The kills (their SIGKILL's time) that overlap [a, b]."""
            return [t for t, g in kills if t <= b and g >= a]

        acked = [s for s, r in self.subs.items() if r["acked"]]
        unacked = [s for s, r in self.subs.items() if not r["acked"]]
        lost = sorted(s for s in acked if s not in copies)
        corrupt = []
        # how the daemon says each queue entry came in (its "from=..., via="
        # line; none when it was killed between the commit and the line)
        via = {}
        removed = {}            # qid: [times the daemon logged it removed]
        with open(os.path.join(self.work, "mailrelayd.log"), errors="replace") as f:
            text = f.read()
        for line in text.splitlines():
            m = STAMP_RE.match(line)
            if m:
                via[m.group(2)] = m.group(3)
            m = REMOVED_RE.match(line)
            if m:
                removed.setdefault(m.group(2), []).append(
                    datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f")
                    .replace(tzinfo=datetime.timezone.utc).timestamp())
        imports = sum(1 for v in via.values() if v == "maildrop")
        # each extra copy in one of four classes; only the first is what
        # SPEC allows ("a duplicate is possible only for a transaction that
        # was in flight at the smarthost")
        in_flight, late, sub_twice, pickup_twice, no_kill = [], [], [], [], []
        lags = []
        for seq, cs in sorted(copies.items()):
            want = message(seq)[2]
            corrupt += [(seq, c[0]) for c in cs if c[4] != want]
            if len(cs) == 1:
                continue
            by_qid = {}
            for c in sorted(cs, key=lambda c: c[1]):
                by_qid.setdefault(c[0], []).append(c)
            # the same queue entry delivered again: the daemon died before
            # it recorded the first copy's 250
            for qid, qcs in by_qid.items():
                for a, b in zip(qcs, qcs[1:]):
                    ks = kill_in(a[1], b[1])
                    # the daemon's "removed" for the first copy, logged before the kill
                    rm = [t for t in removed.get(qid, ()) if ks and a[2] - 0.5 <= t <= ks[0]]
                    if ks and rm and ks[0] - rm[0] > RECORD_SLACK:
                        late.append("seq %d: queue entry %s: 250 at %s s, logged removed at %s s, killed at %s s,"
                                    " delivered again at %s s" % (seq, qid, self.rel(a[2]), self.rel(rm[0]),
                                                                  self.rel(ks[0]), self.rel(b[1])))
                    elif ks:
                        in_flight.append(seq)
                        lags.append(ks[0] - a[2])
                    else:
                        no_kill.append("seq %d: queue entry %s delivered at %s and again at %s s, no kill in between"
                                       % (seq, qid, self.rel(a[1]), self.rel(b[1])))
            # more than one queue entry for one submission
            entries = sorted(by_qid.values(), key=lambda qcs: qcs[0][1])
            sub = self.subs.get(seq)
            for qcs in entries[1:]:
                what = "seq %d: queue entries %s, delivered at %s s" % (
                    seq, " and ".join(q[0][0] for q in entries), " and ".join(self.rel(q[0][1]) for q in entries))
                ks = kill_in(sub["t0"], qcs[0][1]) if sub else []
                if sub is None or sub["path"] != "sendmail" or not sub["maildrop"] or not ks:
                    no_kill.append("%s; one %s submission%s, %s" % (
                        what, sub["path"] if sub else "unrecorded",
                        " through the maildrop" if sub and sub["maildrop"] else "",
                        "a kill at %s s" % self.rel(ks[0]) if ks else "no kill since it began"))
                elif any(via.get(q[0][0]) == "sendmail" for q in entries) or (
                        any(q[0][0] not in via for q in entries) and any(sub["t0"] <= k <= sub["t1"] for k in ks)):
                    # one entry from the socket (its acceptance logged, or
                    # unlogged because the kill came while this sendmail
                    # ran: the commit made, the 250 never sent), one from the maildrop
                    # one entry from the socket, one from the maildrop
                    sub_twice.append("%s (via %s); its sendmail ran from %s to %s s, the daemon killed at %s s"
                                     % (what, " and ".join(via.get(q[0][0], "unlogged") for q in entries),
                                        self.rel(sub["t0"]), self.rel(sub["t1"]), self.rel(ks[0])))
                else:
                    later = [k for k in ks if k >= sub["t1"]] or ks
                    pickup_twice.append("%s (via %s); its sendmail wrote the maildrop by %s s, the next kill at %s s"
                                        % (what, " and ".join(via.get(q[0][0], "unlogged") for q in entries),
                                           self.rel(sub["t1"]), self.rel(later[0])))
        sanitizer = [m for m in SANITIZER_MARKERS if m in text]

        subs = self.subs.values()
        n_sm = sum(1 for r in subs if r["path"] == "sendmail")
        n_smtp = sum(1 for r in subs if r["path"] == "smtp")
        sm_ok = sum(1 for r in subs if r["path"] == "sendmail" and r["acked"])
        sm_drop = sum(1 for r in subs if r["path"] == "sendmail" and r["acked"] and r["maildrop"])
        smtp_ok = sum(1 for r in subs if r["path"] == "smtp" and r["acked"])
        extra = sum(len(cs) - 1 for cs in copies.values())
        phases = {}
        for _, _, ph in self.kills:
            phases[ph] = phases.get(ph, 0) + 1
        gone_ms = [1000 * (g - t) for t, g, _ in self.kills]
        try:
            with open(self.shstats) as f:
                stats = json.load(f)
        except (OSError, ValueError):
            stats = {}

        P = lambda *a: print(*a, flush=True)
        P("  submitted        %d of %d (%d by sendmail, %d at a time; %d over SMTP, %d connections)"
          % (len(self.subs), self.n, n_sm, SENDMAIL_WORKERS, n_smtp, SMTP_WORKERS))
        P("  acknowledged     %d (sendmail exit 0: %d, of which %d through the maildrop; SMTP 250 to the dot: %d)"
          % (len(acked), sm_ok, sm_drop, smtp_ok))
        P("  not acknowledged %d, of which %d arrived anyway%s"
          % (len(unacked), sum(1 for s in unacked if s in copies),
             "".join("\n                     seq %d (%s): %s" % (s, self.subs[s]["path"], self.subs[s]["why"])
                     for s in sorted(unacked)[:5])))
        P("  received         %d copies of %d messages" % (sum(len(c) for c in copies.values()), len(copies)))
        P("  lost             %d%s" % (len(lost), (": seq " + " ".join(map(str, lost[:20]))) if lost else ""))
        P("  duplicates       %d messages, %d extra copies:" % (sum(1 for c in copies.values() if len(c) > 1), extra))
        P("    %5d redelivered, a kill in their smarthost transaction (in flight: allowed)%s"
          % (len(in_flight), " (kill at %+.3f to %+.3f s from the first copy's 250)" % (min(lags), max(lags)) if lags else ""))
        P("    %5d redelivered, the kill more than %.0f s after the daemon logged the first copy removed"
          " (its record of the 250 lagged: NOT in flight)" % (len(late), RECORD_SLACK))
        P("    %5d queued twice, a kill during their sendmail: the 250 to the dot lost, the message also"
          " dropped in the maildrop (NOT in flight at the smarthost)" % len(sub_twice))
        P("    %5d queued twice, a kill during their maildrop pickup: committed, the drop not yet removed,"
          " imported again (NOT in flight at the smarthost)" % len(pickup_twice))
        P("    %5d with no kill to explain them" % len(no_kill))
        for u in (late[:3] + sub_twice[:3] + pickup_twice[:3] + no_kill[:10]):
            P("          " + u)
        P("  corrupted        %d%s" % (len(corrupt), "".join(" seq %d (%s)" % c for c in corrupt[:10])))
        P("  foreign          %d%s" % (len(foreign), "".join("\n                     " + l for l in foreign[:5])))
        P("  kills            %d (%s); daemon starts %d; deaths on its own %d"
          % (len(self.kills), ", ".join("%d %s" % (v, k) for k, v in sorted(phases.items())),
             timing["starts"], timing["crashes"]))
        if gone_ms:
            P("                   all its processes gone %.1f to %.1f ms after the SIGKILL"
              % (min(gone_ms), max(gone_ms)))
        P("  maildrop         %d sendmail submissions went to the maildrop; the daemon imported %d drops"
          % (sum(1 for r in subs if r["maildrop"]), imports))
        P("  smarthost        %s" % ", ".join("%s %d" % kv for kv in stats.items()))
        P("  wall time        %.1f s (submissions %.1f s, drain after the last kill %.1f s%s)"
          % (timing["wall"], timing["submit"], timing["drain"],
             "" if timing["drained"] else ", NOT DRAINED within %.0f s" % timing["drain_bound"]))
        fails = []
        if lost:
            fails.append("%d lost" % len(lost))
        unexplained = len(late) + len(sub_twice) + len(pickup_twice) + len(no_kill)
        if unexplained:
            fails.append("%d duplicates not in flight at the smarthost" % unexplained)
        if corrupt:
            fails.append("%d corrupted" % len(corrupt))
        if foreign:
            fails.append("%d foreign messages" % len(foreign))
        if not timing["drained"]:
            fails.append("the queue did not drain")
        if timing["crashes"]:
            fails.append("mailrelayd died on its own %d times" % timing["crashes"])
        if timing["stop_rc"] != 0:
            fails.append("mailrelayd exited %r on SIGTERM at the end" % timing["stop_rc"])
        if len(self.subs) != self.n:
            fails.append("only %d of %d submitted" % (len(self.subs), self.n))
        if sanitizer:
            fails.append("the daemon's log has %s" % ", ".join(sanitizer))
        counts = dict(lost=len(lost), in_flight=len(in_flight), late=len(late), sub_twice=len(sub_twice),
                      pickup_twice=len(pickup_twice), no_kill=len(no_kill), corrupt=len(corrupt),
                      foreign=len(foreign))
        if fails:
            P("FAIL: " + "; ".join(fails))
            return False, counts
        P("PASS: 0 lost, every duplicate explained by a kill during its smarthost transaction")
        return True, counts


def self_test(args):
    """The judge against made-up records with one case of each class; 0 when
    each is counted where it belongs."""
    work = tempfile.mkdtemp(prefix="mailrelay-long-selftest.")
    t0 = 1000.0

    def stamp(t):
        return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

    def q(name):
        return name.rjust(16, "0")

    d = {s: message(s)[2] for s in range(1, 12)}
    files = {
        "run.json": json.dumps(dict(messages=11, t_start=t0, wall=20, submit=10, drain=5, drained=True,
                                    drain_bound=100, stop_rc=0, starts=2, crashes=0)),
        "kills.log": "1010.000000 1010.004000 submitting\n",
        "submissions.log": "".join("%d %s %.1f %.1f %s %s %s\n" % r for r in (
            (1, "sendmail", 1001, 1001.1, "acked", "-", ""),
            (2, "sendmail", 1002, 1002.1, "acked", "-", ""),           # lost
            (3, "smtp", 1003, 1003.1, "acked", "-", ""),
            (4, "smtp", 1004, 1004.1, "acked", "-", ""),
            (5, "sendmail", 1001, 1002, "acked", "maildrop", ""),
            (6, "smtp", 1005, 1005.1, "acked", "-", ""),
            (7, "smtp", 1006, 1006.1, "unacked", "-", "reply to the dot: None lost"),
            (8, "sendmail", 1007, 1007.1, "acked", "-", ""),
            (9, "sendmail", 1009.9, 1010.2, "acked", "maildrop", ""),
            (10, "smtp", 1003, 1003.1, "acked", "-", ""),
            (11, "smtp", 1003, 1003.1, "acked", "-", ""))),
        "smarthost.log": "".join("%s %s %.6f %.6f %d %s\n" % r for r in (
            ("1", q("1"), 1001.5, 1001.6, 1, d[1]),
            ("3", q("3"), 1009.9, 1009.95, 2, d[3]),     # in flight at the kill
            ("3", q("3"), 1011.0, 1011.1, 3, d[3]),
            ("4", q("4"), 1005.0, 1005.1, 4, d[4]),      # again, with no kill
            ("4", q("4"), 1006.0, 1006.1, 5, d[4]),
            ("5", q("5A"), 1012.0, 1012.1, 6, d[5]),     # its drop imported twice
            ("5", q("5B"), 1013.0, 1013.1, 7, d[5]),
            ("6", q("6"), 1008.0, 1008.1, 8, d[6]),      # removed 1.9 s before the kill
            ("6", q("6"), 1011.0, 1011.1, 9, d[6]),
            ("8", q("8"), 1008.0, 1008.1, 10, "0" * 16),  # another body
            ("-", "-", 1009.0, 1009.1, 11, "0" * 16),    # not one of the run's
            ("9", q("9A"), 1011.0, 1011.1, 12, d[9]),    # its 250 lost, and dropped too
            ("9", q("9B"), 1012.0, 1012.1, 13, d[9]),
            ("10", q("10"), 1010.002, 1010.05, 14, d[10]),  # begun after the SIGKILL, before all was gone
            ("10", q("10"), 1011.0, 1011.1, 15, d[10]),
            ("11", q("11"), 1010.010, 1010.05, 16, d[11]),  # begun once all was gone
            ("11", q("11"), 1011.0, 1011.1, 17, d[11]))),
        "mailrelayd.log": "".join("%s mailrelayd: %s\n" % r for r in (
            (stamp(1009.95), q("3") + ": removed"),
            (stamp(1008.1), q("6") + ": removed"),
            (stamp(1012.5), q("5B") + ": from=<bench@bench.test>, size=1, nrcpt=1, uid=0, via=maildrop"),
            (stamp(1009.99), q("9A") + ": from=<bench@bench.test>, size=1, nrcpt=1, uid=0, via=sendmail"),
            (stamp(1010.9), q("9B") + ": from=<bench@bench.test>, size=1, nrcpt=1, uid=0, via=maildrop"))),
    }
    for name, text in files.items():
        with open(os.path.join(work, name), "w") as f:
            f.write(text)
    r = LongRun(args, work)
    ok, counts = r.judge(r.load())
    want = dict(lost=1, in_flight=2, late=1, sub_twice=1, pickup_twice=1, no_kill=2, corrupt=1, foreign=1)
    shutil.rmtree(work, ignore_errors=True)
    if ok or counts != want:
        note("self-test: the judge counted %r, not %r" % (counts, want))
        return 1
    print("self-test: every made-up case judged as it should be")
    return 0


def main():
    ap = argparse.ArgumentParser(description="The long fault run (bench/run --long).")
    ap.add_argument("--build", help="the build directory (mailrelayd, mailrelay, mailrelay-sendmail)")
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--workdir", default="/var/tmp", help="where the work directory is made (a real disk)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory after a pass too")
    ap.add_argument("--judge", metavar="WORKDIR", help="judge a kept run again from its records")
    ap.add_argument("--self-test", action="store_true", help="judge made-up records with one case of each class")
    a = ap.parse_args()
    if a.self_test:
        return self_test(a)
    if a.judge:
        r = LongRun(a, a.judge)
        print("bench/long: judging %s again" % a.judge)
        return 0 if r.judge(r.load())[0] else 1
    if a.build is None:
        note("--build is needed for a run")
        return 64
    if a.messages < 1 or a.kills < 0:
        note("MESSAGES must be at least 1 and KILLS at least 0")
        return 64
    return LongRun(a).run()


if __name__ == "__main__":
    sys.exit(main())

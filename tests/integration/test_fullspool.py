"""Full spool: the spool on a small tmpfs, filled to the last page.

What the user must see: a submission that cannot be stored is refused
with a temporary failure (sendmail exits 75 with one line saying why, an
SMTP client gets a 4xx, never a 250), nothing half-written is left in
tmp/, queue/ or maildrop/, the daemon keeps running, mail accepted before
the disk filled is neither lost nor duplicated, and mail flows again as
soon as space is freed.

Each test mounts its own tmpfs on the spool directory of a daemon that
has not started yet (root only; skipped otherwise) and unmounts it at
teardown, after the daemon has stopped.
"""
import errno
import os
import re
import smtplib
import socket
import subprocess
import threading

import pytest

from mrtest import make_message, message_id_of, one_line, to_crlf, wait_until, require_root

SENDER = "sender@example.org"
RCPT = "rcpt@example.net"
TMPFS_SIZE = 2 * 1024 * 1024
PAGE = os.sysconf("SC_PAGE_SIZE")
ENOSPC_TEXT = os.strerror(errno.ENOSPC)        # "No space left on device"
EROFS_TEXT = os.strerror(errno.EROFS)          # "Read-only file system"


class SpoolFS:
    """A small tmpfs mounted on a spool directory, and a filler file that
    takes its free space."""

    def __init__(self, path, size):
        self.path = path
        self.size = size
        self.filler = os.path.join(path, "filler")
        self.mounted = False

    def mount(self):
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d,mode=0700" % self.size,
                            "tmpfs", self.path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if p.returncode != 0:
            pytest.fail("cannot mount a %d-byte tmpfs on %s for the spool: %s"
                        % (self.size, self.path, p.stderr.decode(errors="replace").strip()))
        self.mounted = True

    def unmount(self):
        if not self.mounted:
            return
        self.mounted = False
        if subprocess.run(["umount", self.path], stderr=subprocess.DEVNULL).returncode != 0:
            # still busy (a daemon that would not stop): detach it anyway
            subprocess.run(["umount", "-l", self.path], stderr=subprocess.DEVNULL)

    def remount(self, mode):
        p = subprocess.run(["mount", "-o", "remount,%s" % mode, self.path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert p.returncode == 0, "remount,%s of %s failed: %r" % (mode, self.path, p.stderr)

    def free(self):
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, leave=0):
        """Take every free page, then give back `leave` bytes (whole pages)."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            chunk = b"\0" * (64 * 1024)
            # again if a page came free meanwhile (a daemon replacing a file)
            for _ in range(20):
                while True:
                    try:
                        os.write(fd, chunk)
                    except OSError as e:
                        if e.errno != errno.ENOSPC:
                            raise
                        break
                if self.free() == 0:
                    break
            if leave:
                size = os.fstat(fd).st_size
                keep = max(0, (size - leave) // PAGE * PAGE)
                os.ftruncate(fd, keep)
        finally:
            os.close(fd)
        if leave:
            assert self.free() >= leave, (self.free(), leave)
        else:
            assert self.free() == 0, self.free()

    def top_up(self):
        """Fill again what the daemon may have freed meanwhile; returns False (for wait loops)."""
        self.fill()
        return False

    def release(self):
        os.unlink(self.filler)
        assert self.free() > self.size // 2


@pytest.fixture
def spoolfs(workdir):
    """spoolfs(d, size=TMPFS_SIZE) -> SpoolFS mounted on the spool of daemon d,
    which must not be running yet.

    Tests list this fixture before `daemon`: it is then torn down after the
    daemons have stopped (a clean unmount) and before workdir is removed.
    """
    require_root("mounting a tmpfs for the spool")
    made = []

    def factory(d, size=TMPFS_SIZE):
        assert not d.alive, "mount the spool before the daemon starts"
        assert os.listdir(d.spool) == [], os.listdir(d.spool)
        fs = SpoolFS(d.spool, size)
        made.append(fs)
        fs.mount()
        return fs

    yield factory
    for fs in reversed(made):
        fs.unmount()


# ---------------------------------------------------------------------------
# helpers

def send(d, msg, rcpt=RCPT):
    return d.sendmail(["-i", "-f", SENDER, rcpt], msg)


def listing(d):
    """Names in the spool's tmp/, queue/ and maildrop/, as {"tmp": [...], ...};
    tmp/ without the kept files of delivered messages (ID.free, written into
    by later messages), which are no transaction."""
    return {"tmp": d.tmp_files(), "queue": d.queue_files(), "maildrop": d.spool_files("maildrop")}


def submit_all(d, msgs):
    for m in msgs:
        r = send(d, m)
        assert r.rc == 0, r


def kept_files(d):
    return [n for n in d.spool_files("tmp") if n.endswith(".free")]


def assert_queue_consistent(d, qids):
    """queue/ holds exactly ID.msg for each id, with ID.env beside it once the
    envelope changed (a deferral), every envelope reads back (mailrelay queue
    --json parses them), and nothing lingers in tmp/."""
    files = d.queue_files()
    assert sorted(f for f in files if f.endswith(".msg")) == sorted(q + ".msg" for q in qids)
    assert set(files) <= set([q + ".env" for q in qids] + [q + ".msg" for q in qids])
    assert d.tmp_files() == []
    assert sorted(m["id"] for m in d.queue_json()) == sorted(qids)


def assert_refused_cleanly(res):
    """sendmail exit 75 with exactly one line on stderr carrying the daemon's 4xx reply."""
    assert res.rc == 75, res
    line = one_line(res.err_text)
    assert line.startswith("mailrelay-sendmail: "), line
    assert re.search(r"\b4\d\d[ -]", line), line
    assert res.out == b"", res
    return line


def assert_each_once(sh, msgs):
    """Every message reached the smarthost exactly once, byte for byte."""
    for m in msgs:
        mid = message_id_of(m)
        copies = sh.find(mid)
        assert len(copies) == 1, "%s delivered %d times" % (mid, len(copies))
        assert copies[0].content == to_crlf(m)


def assert_never_delivered(sh, msg):
    mid = message_id_of(msg)
    assert [t for t in sh.all_transactions() if t.message_id == mid] == []


class UnixSMTP(smtplib.SMTP):
    """smtplib over the daemon's unix submission socket."""

    def __init__(self, path, timeout=10):
        self._unix_path = path
        super().__init__(timeout=timeout)
        self.connect("localhost")

    def _get_socket(self, host, port, timeout):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(self._unix_path)
        return s


def smtp_session(d, how):
    if how == "tcp":
        s = smtplib.SMTP("127.0.0.1", d.tcp_port, timeout=10)
    else:
        s = UnixSMTP(d.submit_sock)
    code, _ = s.ehlo("client.test")
    assert code == 250
    return s


def smtp_transaction(s, msg, rcpt=RCPT):
    """MAIL, RCPT, DATA, content: (code, text) of the first reply that ends the
    transaction (a refusal at any step, or the reply to the final dot)."""
    code, text = s.mail(SENDER)
    if code != 250:
        return code, text.decode()
    code, text = s.rcpt(rcpt)
    if code != 250:
        s.rset()
        return code, text.decode()
    try:
        code, text = s.data(to_crlf(msg))
    except smtplib.SMTPDataError as e:       # DATA itself refused (no 354)
        s.rset()
        return e.smtp_code, e.smtp_error.decode()
    return code, text.decode()


# ---------------------------------------------------------------------------
# mail queued before the disk filled is delivered once space is back

def test_mail_queued_before_the_disk_filled_is_all_delivered_once(spoolfs, daemon, smarthost):
    sh = smarthost(start=False)               # nothing listens yet: every attempt is deferred
    d = daemon(sh, start=False)
    fs = spoolfs(d)
    d.start()

    msgs = [make_message(subject="queued before full %d" % i, body="body %d\n" % i)
            for i in range(5)]
    for m in msgs:
        r = send(d, m)
        assert r.rc == 0 and r.err == b"", r
    qids = [r["id"] for r in d.accepted()]
    assert len(qids) == 5
    for q in qids:
        d.wait_for_record(id=q, to=RCPT, status="deferred")

    fs.fill()
    # full indeed: a new submission is refused, the earlier ones stay queued
    late = make_message(subject="refused while full")
    assert_refused_cleanly(send(d, late))
    # let a few retry rounds run against the full disk
    wait_until(lambda: fs.top_up() or all(len(d.outcomes(q, status="deferred")) >= 3 for q in qids),
               15, what="three deferrals of every message", alive=d.check_alive)
    assert_queue_consistent(d, qids)

    fs.release()
    sh.start()
    for q in qids:
        d.wait_for_record(id=q, to=RCPT, status="sent", timeout=15)
    d.wait_queue_empty()
    sh.wait_for(5)
    assert_each_once(sh, msgs)
    assert len(sh.delivered()) == 5
    assert_never_delivered(sh, late)
    assert listing(d) == {"tmp": [], "queue": [], "maildrop": []}
    assert d.alive


# ---------------------------------------------------------------------------
# sendmail, daemon running, disk full

def test_sendmail_on_a_full_spool_exits_75_and_leaves_nothing(spoolfs, daemon, smarthost):
    sh = smarthost()
    d = daemon(sh, start=False)
    fs = spoolfs(d)
    d.start()
    fs.fill()

    msg = make_message(subject="disk is full", body=("x" * 70 + "\n") * 300)
    line = assert_refused_cleanly(send(d, msg))
    assert "refused" in line, line
    # the daemon says what and why, with the queue id
    err = d.wait_for_log(r"([0-9A-F]{16}): cannot queue message: .*%s" % re.escape(ENOSPC_TEXT))
    assert d.accepted() == [] and d.records(err.group(1)) == []
    assert listing(d) == {"tmp": [], "queue": [], "maildrop": []}
    assert d.alive

    # the daemon still answers: once there is room, the same message goes through
    fs.release()
    r = send(d, msg)
    assert r.rc == 0 and r.err == b"", r
    sh.wait_for(1)
    d.wait_queue_empty()
    assert_each_once(sh, [msg])
    # mail flows again: a fresh message too
    fresh = make_message(subject="after the disk was freed")
    assert send(d, fresh).rc == 0
    sh.wait_for(2)
    d.wait_queue_empty()
    assert_each_once(sh, [msg, fresh])
    assert listing(d) == {"tmp": [], "queue": [], "maildrop": []}


def test_kept_files_of_delivered_messages_are_given_back_when_the_spool_is_full(spoolfs, daemon, smarthost):
    """The files of delivered messages are kept in tmp/ for new messages to
    be written into: on a full disk, a message that needs more room than
    they have is refused, and the kept files are unlinked, their space given
    back; nothing queued is touched, and mail flows once there is room."""
    sh = smarthost()
    d = daemon(sh, start=False)
    fs = spoolfs(d)
    d.start()
    small = [make_message(subject="small %d" % i) for i in range(3)]
    submit_all(d, small)
    sh.wait_for(3)
    d.wait_queue_empty()
    # each message's file is kept once it is delivered, until a later message takes it
    wait_until(lambda: len(kept_files(d)) >= 1, 5, what="a delivered message's file kept")

    fs.fill()
    big = make_message(subject="larger than a kept file", body=("x" * 70 + "\n") * 150)
    assert_refused_cleanly(send(d, big))
    d.wait_for_log(r"cannot queue message: .*%s" % re.escape(ENOSPC_TEXT))
    assert kept_files(d) == []
    assert listing(d) == {"tmp": [], "queue": [], "maildrop": []}

    fs.release()
    assert send(d, big).rc == 0
    sh.wait_for(4)
    d.wait_queue_empty()
    assert_each_once(sh, small + [big])
    assert d.alive


# ---------------------------------------------------------------------------
# SMTP submission, disk full

@pytest.mark.parametrize("how", ["tcp", "unix"])
def test_smtp_on_a_full_spool_gets_4xx_then_250_once_freed(spoolfs, daemon, smarthost, how):
    sh = smarthost()
    d = daemon(sh, start=False)
    fs = spoolfs(d)
    d.start()
    fs.fill()

    refused = make_message(subject="smtp while full (%s)" % how, body=("y" * 70 + "\n") * 150)
    s = smtp_session(d, how)
    try:
        code, text = smtp_transaction(s, refused)
        assert 400 <= code < 500, (code, text)
        assert listing(d) == {"tmp": [], "queue": [], "maildrop": []}
        assert d.alive

        # the same session, once there is room
        fs.release()
        again = make_message(subject="smtp same session (%s)" % how)
        code, text = smtp_transaction(s, again)
        assert code == 250 and re.match(r"2\.0\.0 Ok: queued as [0-9A-F]{16}$", text), (code, text)
        assert s.quit()[0] == 221
    finally:
        s.close()

    # and a new one
    s = smtp_session(d, how)
    try:
        fresh = make_message(subject="smtp new session (%s)" % how)
        code, text = smtp_transaction(s, fresh)
        assert code == 250, (code, text)
        s.quit()
    finally:
        s.close()
    sh.wait_for(2)
    d.wait_queue_empty()
    assert_each_once(sh, [again, fresh])
    assert len(sh.delivered()) == 2
    assert_never_delivered(sh, refused)
    assert listing(d) == {"tmp": [], "queue": [], "maildrop": []}


# ---------------------------------------------------------------------------
# messages larger than the free space (max_message_size is far larger)

def test_message_larger_than_the_free_space_is_refused_smaller_one_accepted(spoolfs, daemon,
                                                                            smarthost):
    sh = smarthost()
    d = daemon(sh, start=False)
    fs = spoolfs(d)
    d.start()
    fs.fill(leave=64 * 1024)

    big = make_message(subject="bigger than the free space", body=("z" * 899 + "\n") * 512)
    assert len(big) > 4 * fs.free()
    assert_refused_cleanly(send(d, big))
    s = smtp_session(d, "tcp")
    try:
        code, text = smtp_transaction(s, big)
        assert 400 <= code < 500, (code, text)
        s.quit()
    finally:
        s.close()
    assert listing(d) == {"tmp": [], "queue": [], "maildrop": []}

    # what fits still goes through
    small = make_message(subject="fits in the free space")
    r = send(d, small)
    assert r.rc == 0, r
    sh.wait_for(1)
    d.wait_queue_empty()

    fs.release()
    r = send(d, big)
    assert r.rc == 0, r
    sh.wait_for(2)
    d.wait_queue_empty()
    assert_each_once(sh, [small, big])
    assert len(sh.delivered()) == 2
    assert listing(d) == {"tmp": [], "queue": [], "maildrop": []}


def test_content_fits_but_the_envelope_does_not(spoolfs, daemon, smarthost):
    """The content takes the last free page: writing the envelope after it
    (the message's tail, in the same file; forty long recipients make it
    larger than a page) fails, and the content already in tmp/ goes too."""
    sh = smarthost()
    d = daemon(sh, start=False)
    fs = spoolfs(d)
    d.start()
    rcpts = ["rcpt%02d-%s@example.net" % (i, "x" * 60) for i in range(40)]
    fs.fill(leave=16 * PAGE)
    free = fs.free()
    head = make_message(subject="exactly the free space", body="")
    lines = (free - 1000 - len(to_crlf(head))) // 72
    msg = make_message(subject="exactly the free space", body=("e" * 70 + "\n") * lines)
    assert free - PAGE < len(to_crlf(msg)) <= free

    argv = ["-i", "-f", SENDER] + rcpts
    assert_refused_cleanly(d.sendmail(argv, msg))
    d.wait_for_log(r"[0-9A-F]{16}: cannot queue message: .*/tmp/[0-9A-F]{16}\.msg: %s" % re.escape(ENOSPC_TEXT))
    assert listing(d) == {"tmp": [], "queue": [], "maildrop": []}
    assert fs.free() == free

    fs.release()
    assert d.sendmail(argv, msg).rc == 0
    sh.wait_for(1)
    d.wait_queue_empty()
    assert_each_once(sh, [msg])
    assert len(sh.delivered()) == 1


def test_concurrent_submissions_as_the_disk_fills(spoolfs, daemon, smarthost):
    """Sixteen submissions at once into room for at most ten (group commit
    batches): each one either exits 0 and is delivered exactly once, or
    exits 75 and is never delivered; nothing is left half-written."""
    sh = smarthost(start=False)                # keep what is accepted in the queue
    d = daemon(sh, start=False)
    fs = spoolfs(d)
    d.start()
    fs.fill(leave=40 * PAGE)
    # one file of four or five pages each: the content, the envelope in its
    # tail (a deferral at the smarthost that is down writes no .env)
    msgs = [make_message(subject="concurrent %d" % i, body=("c" * 70 + "\n") * 200)
            for i in range(16)]
    assert all(3 * PAGE < len(to_crlf(m)) <= 4 * PAGE for m in msgs)
    results = [None] * len(msgs)

    def one(i):
        results[i] = send(d, msgs[i])
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(msgs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ok = [m for m, r in zip(msgs, results) if r.rc == 0]
    refused = [m for m, r in zip(msgs, results) if r.rc != 0]
    for r in results:
        if r.rc != 0:
            assert_refused_cleanly(r)
    assert len(ok) <= 10 and len(refused) >= 6, [r.rc for r in results]
    assert len(d.accepted()) == len(ok)
    assert d.tmp_files() == []
    # one .msg each, and nothing else
    assert d.queue_files() == sorted(r["id"] + ".msg" for r in d.accepted())
    assert d.alive

    fs.release()
    for m in refused:
        assert send(d, m).rc == 0
    sh.start()
    sh.wait_for(16, timeout=30)
    d.wait_queue_empty(timeout=20)
    assert_each_once(sh, msgs)
    assert len(sh.delivered()) == 16
    assert listing(d) == {"tmp": [], "queue": [], "maildrop": []}


# ---------------------------------------------------------------------------
# daemon stopped, disk full: the maildrop

def test_daemon_down_and_disk_full_exits_75_with_nothing_in_the_maildrop(spoolfs, daemon,
                                                                         smarthost):
    sh = smarthost()
    d = daemon(sh, start=False)
    fs = spoolfs(d)
    d.start()                                  # lays out the spool
    d.stop()

    fs.fill()
    msg = make_message(subject="nowhere to drop it")
    r = send(d, msg)
    assert r.rc == 75, r
    line = one_line(r.err_text)
    assert "cannot connect to mailrelayd" in line, line
    assert "maildrop" in line and ENOSPC_TEXT in line, line
    assert listing(d)["maildrop"] == []        # not even a .tmp.* file

    # room for a small drop but not for a large one
    fs.release()
    fs.fill(leave=64 * 1024)
    big = make_message(subject="drop bigger than the free space", body=("w" * 899 + "\n") * 512)
    r = send(d, big)
    assert r.rc == 75, r
    assert ENOSPC_TEXT in one_line(r.err_text)
    assert listing(d)["maildrop"] == []
    small = make_message(subject="small drop")
    r = send(d, small)
    assert r.rc == 0 and r.err == b"", r
    drops = listing(d)["maildrop"]
    assert len(drops) == 1 and not drops[0].startswith("."), drops

    fs.release()
    d.start()
    sh.wait_for(1)
    d.wait_queue_empty()
    assert_each_once(sh, [small])
    assert len(sh.delivered()) == 1
    assert listing(d) == {"tmp": [], "queue": [], "maildrop": []}
    # mail flows again
    fresh = make_message(subject="after the maildrop")
    assert send(d, fresh).rc == 0
    sh.wait_for(2)
    assert_each_once(sh, [small, fresh])


# ---------------------------------------------------------------------------
# the disk fills while messages are being retried

def test_disk_fills_during_retries_nothing_lost_or_corrupted(spoolfs, daemon, smarthost):
    sh = smarthost()
    sh.rcpt_replies = {RCPT: "450 4.2.0 mailbox busy"}     # every attempt deferred
    d = daemon(sh, start=False)
    fs = spoolfs(d)
    d.start()

    msgs = [make_message(subject="retried while full %d" % i) for i in range(3)]
    submit_all(d, msgs)
    qids = [r["id"] for r in d.accepted()]
    assert len(qids) == 3
    for q in qids:
        d.wait_for_record(id=q, to=RCPT, status="deferred")

    fs.fill()
    # the envelope update after a deferral fails: said once per failure, with
    # the queue id and the reason, not silently dropped
    err_re = re.compile(r"^mailrelayd: ([0-9A-F]{16}): cannot record delivery state: .*%s"
                        % re.escape(ENOSPC_TEXT))

    def failed_ids():
        return {m.group(1) for m in map(err_re.match, d.log_lines()) if m}
    wait_until(lambda: fs.top_up() or failed_ids() >= set(qids), 15,
               what="a failed envelope update of every message", alive=d.check_alive)
    # and it keeps retrying while the disk stays full
    seen = {q: len(d.outcomes(q, status="deferred")) for q in qids}
    wait_until(lambda: fs.top_up() or all(len(d.outcomes(q, status="deferred")) >= seen[q] + 2
                                          for q in qids),
               15, what="two more deferrals of every message", alive=d.check_alive)
    assert d.alive
    assert_queue_consistent(d, qids)
    assert sh.delivered() == []

    fs.release()
    sh.rcpt_replies = {}
    for q in qids:
        sent = d.wait_for_record(id=q, to=RCPT, status="sent", timeout=15)
        assert int(sent["attempts"]) >= seen[q] + 3
    d.wait_queue_empty()
    sh.wait_for(3)
    assert_each_once(sh, msgs)
    assert len(sh.delivered()) == 3
    assert listing(d) == {"tmp": [], "queue": [], "maildrop": []}
    # mail flows again
    fresh = make_message(subject="after the retries")
    assert send(d, fresh).rc == 0
    sh.wait_for(4)
    assert_each_once(sh, msgs + [fresh])


def test_daemon_restarted_on_a_full_spool_keeps_its_queue(spoolfs, daemon, smarthost, workdir):
    """A stop and start while the disk is full: the queue is read back whole,
    a drop waiting in the maildrop is kept until it can be imported."""
    # deferred by the smarthost (450), written: a stop with deferrals only
    # in memory would write its unreached file, and the start's removal
    # of it would give the drop room
    sh = smarthost()
    sh.rcpt_replies = {RCPT: "450 4.2.0 try later"}
    d = daemon(sh, start=False)
    fs = spoolfs(d)
    d.start()
    msgs = [make_message(subject="survives a restart %d" % i) for i in range(3)]
    submit_all(d, msgs)
    qids = [r["id"] for r in d.accepted()]
    for q in qids:
        d.wait_for_record(id=q, to=RCPT, status="deferred")
    d.stop()

    # a drop left while the daemon was down, then the disk fills up
    dropped = make_message(subject="dropped before the restart")
    assert send(d, dropped).rc == 0
    assert len(listing(d)["maildrop"]) == 1
    fs.fill()

    d.start()                                  # on a full disk
    d.wait_for_log(r"queue: 3 messages loaded from the spool")
    d.wait_for_log(r"cannot import maildrop/[^:]+: .*%s; will try again" % re.escape(ENOSPC_TEXT))
    wait_until(lambda: fs.top_up() or all(len(d.outcomes(q, status="deferred")) >= 2 for q in qids),
               15, what="deferrals after the restart", alive=d.check_alive)
    assert_queue_consistent(d, qids)
    assert len(listing(d)["maildrop"]) == 1    # kept, not lost

    fs.release()
    sh.rcpt_replies = {}
    for q in qids:
        d.wait_for_record(id=q, to=RCPT, status="sent", timeout=15)
    # the drop is imported at the latest with the next drop (or the periodic rescan)
    other = os.path.join(workdir, "client.conf")
    with open(other, "w") as f:
        f.write(d.config_text.replace(d.submit_sock, os.path.join(workdir, "nobody-here.sock")))
    d.client_conf = other
    nudge = make_message(subject="second drop")
    assert send(d, nudge).rc == 0
    sh.wait_for(5, timeout=20)
    d.wait_queue_empty()
    assert_each_once(sh, msgs + [dropped, nudge])
    assert listing(d) == {"tmp": [], "queue": [], "maildrop": []}


# ---------------------------------------------------------------------------
# read-only spool (the other "cannot store at all" case)

def test_read_only_spool_exits_75_running_or_not(spoolfs, daemon, smarthost):
    sh = smarthost()
    d = daemon(sh, start=False)
    fs = spoolfs(d)
    d.start()
    fs.remount("ro")

    msg = make_message(subject="read-only spool, daemon up")
    assert_refused_cleanly(send(d, msg))
    d.wait_for_log(r"cannot queue message: .*/queue/[0-9A-F]{16}\.msg: %s" % re.escape(EROFS_TEXT))
    assert d.alive
    d.stop()

    down = make_message(subject="read-only spool, daemon down")
    r = send(d, down)
    assert r.rc == 75, r
    line = one_line(r.err_text)
    assert "maildrop" in line and EROFS_TEXT in line, line

    fs.remount("rw")
    assert listing(d) == {"tmp": [], "queue": [], "maildrop": []}
    d.start()
    for m in (msg, down):
        assert send(d, m).rc == 0
    sh.wait_for(2)
    d.wait_queue_empty()
    assert_each_once(sh, [msg, down])
    assert len(sh.delivered()) == 2


# ---------------------------------------------------------------------------
# what the submitter is told

def test_refusal_on_a_full_spool_names_the_storage_problem(spoolfs, daemon, smarthost):
    """Not just "cannot write": the submitter learns that the disk is full
    (RFC 3463 X.3.1, RFC 5321 452 "insufficient system storage")."""
    sh = smarthost()
    d = daemon(sh, start=False)
    fs = spoolfs(d)
    d.start()
    fs.fill()
    storage = r"(?i)\b4\.3\.1\b|insufficient (system )?storage|no space|disk is full|spool is full"

    line = assert_refused_cleanly(send(d, make_message(subject="why refused")))
    s = smtp_session(d, "tcp")
    try:
        code, text = smtp_transaction(s, make_message(subject="why refused (smtp)"))
        s.quit()
    finally:
        s.close()
    assert 400 <= code < 500, (code, text)
    assert re.search(storage, text), (code, text)
    assert re.search(storage, line), line


def test_state_the_full_disk_refused_is_recorded_once_space_returns(spoolfs, daemon, smarthost):
    """A recipient delivered while the disk was full must not stay 'pending' on
    disk once there is room again: else the next restart sends it twice."""
    sh = smarthost(start=False)
    sh.rcpt_replies = {"later@example.net": "450 4.2.0 mailbox busy"}
    # the second retry is far away: only a rewrite of its own brings the
    # envelope up to date before then
    d = daemon(sh, overrides={"retry_schedule": ["1s", "1h"]}, start=False)
    fs = spoolfs(d)
    d.start()
    msg = make_message(subject="two recipients", to=("good@example.net", "later@example.net"))
    r = d.sendmail(["-i", "-f", SENDER, "good@example.net", "later@example.net"], msg)
    assert r.rc == 0, r
    qid = d.accepted_id(SENDER)
    d.wait_for_record(id=qid, to="later@example.net", status="deferred")
    # a deferral at a smarthost that is down stays in memory: a hold and a
    # release write the envelope (the release makes it due: a second try, in
    # memory too, and the next is an hour away)
    for verb in ("hold", "release"):
        assert d.mailrelay([verb, qid]).rc == 0

    def on_disk():
        # the envelope file itself (mailrelay queue asks the daemon, which knows better)
        try:
            with open(os.path.join(d.spool, "queue", qid + ".env")) as f:
                rcpts = [l.split("\t") for l in f.read().splitlines() if l.startswith("rcpt\t")]
        except FileNotFoundError:
            return None
        return {r[5]: r[1] for r in rcpts}
    # the envelope written before the disk fills (the first change makes the .env)
    wait_until(lambda: on_disk() == {"good@example.net": "pending", "later@example.net": "pending"},
               what="the envelope on disk")
    fs.fill()
    sh.start()
    assert d.mailrelay(["flush"]).rc == 0
    d.wait_for_record(id=qid, to="good@example.net", status="sent", timeout=10)
    d.wait_for_log(r"%s: cannot record delivery state: .*%s" % (qid, re.escape(ENOSPC_TEXT)))
    assert on_disk() == {"good@example.net": "pending", "later@example.net": "pending"}

    fs.release()

    wait_until(lambda: on_disk() == {"good@example.net": "sent", "later@example.net": "pending"},
               10, what="the envelope on disk to record the delivered recipient",
               alive=d.check_alive)
    d.wait_for_log(r"%s: delivery state recorded" % qid)

    d.restart()
    d.wait_for_log(r"queue: 1 message loaded from the spool")
    # two tries at the smarthost down, the 450, and this one
    d.wait_for_record(id=qid, to="later@example.net", status="deferred", attempts="4")
    copies = sh.find(message_id_of(msg))
    assert [c.rcpt_tos for c in copies] == [["good@example.net"]]


def test_delete_and_hold_answer_only_once_on_disk(spoolfs, daemon, smarthost):
    """`mailrelay delete` says "deleted" only when the removal is on disk:
    on a read-only spool it fails with 75, and the message stays queued
    (in the daemon and on disk), as does a hold that could not be
    written; both work once the spool takes writes again."""
    sh = smarthost()
    d = daemon(sh, start=False, overrides={"retry_schedule": ["1h"]})
    sh.rcpt_replies = {RCPT: "450 4.2.0 try later"}
    fs = spoolfs(d)
    d.start()
    msg = make_message(subject="kept")
    assert send(d, msg).rc == 0
    qid = d.accepted_id(SENDER)
    d.wait_for_record(id=qid, status="deferred")
    # the deferral written (the first change puts the envelope beside the content)
    wait_until(lambda: listing(d)["queue"] == [qid + ".env", qid + ".msg"], what="the deferral on disk")
    fs.remount("ro")
    r = d.mailrelay(["delete", qid])
    assert r.rc == 75, r
    assert "not deleted after all" in r.out_text + r.err_text and EROFS_TEXT in r.out_text + r.err_text, r
    assert [m["id"] for m in d.queue_json()] == [qid]
    assert listing(d)["queue"] == [qid + ".env", qid + ".msg"]
    r = d.mailrelay(["hold", qid])
    assert r.rc == 75, r
    assert "held in the running daemon only, not on disk" in r.out_text + r.err_text, r
    assert d.queue_json()[0]["held"] is True
    fs.remount("rw")
    env = os.path.join(d.spool, "queue", qid + ".env")
    wait_until(lambda: "held\t1\n" in open(env).read(), timeout=30,
               what="the hold written once the spool takes writes")
    r = d.mailrelay(["delete", qid])
    assert r.rc == 0 and qid + " deleted" in r.out_text, r
    # the answer came after the removal: nothing is left at that moment
    assert listing(d)["queue"] == []
    assert d.queue_json() == []

"""Issue 9, point 2: the maildrop cannot be used to bypass the daemon's rules.

Drops are made as an attacker would make them: written straight into the
maildrop in the format spool/maildrop.c writes (and chowned to nobody, as
a user's drop would be owned), or by the client as root with a
configuration of its own.  The daemon must apply its own max_message_size,
never size a read by what a file claims, remove abandoned ".tmp.*" files,
quarantine what it cannot import once and say so once, and keep the
quarantine within its cap, the oldest removed first.

Rescans are triggered by event: a valid drop renamed into the maildrop
wakes the daemon (inotify), and its delivery proves the scan is over.
"""
import os
import re
import time

import pytest

from mrtest import make_message, require_root, to_crlf, vmrss_kib, wait_until

SENDER = "sender@example.org"
RCPT = "rcpt@example.net"
NOBODY = 65534
LIMIT = 10 * 1024 * 1024                # max_message_size = 10M
QUARANTINE_MAX_FILES = 200              # pickup.c's caps
QUARANTINE_MAX_BYTES = 64 * 1024 * 1024


def drop_header(sender=SENDER, rcpts=(RCPT,), extra=""):
    return ("mailrelay-drop 1\nsender\t%s\n" % sender
            + "".join("rcpt\t%s\n" % r for r in rcpts)
            + "body\t7BIT\n" + extra + "\n").encode()


def drop_path(d, name):
    return os.path.join(d.spool, "maildrop", name)


def put_drop(d, name, data, uid=NOBODY, size=None):
    """Write a drop as the client does (a .tmp file, then the rename), owned by uid;
    with size, the file is then extended (sparse) to that many bytes first."""
    tmp = drop_path(d, ".tmp.test.%s" % name)
    with open(tmp, "wb") as f:
        f.write(data)
    if size is not None:
        os.truncate(tmp, size)
    os.chown(tmp, uid, os.getgid())
    os.chmod(tmp, 0o640)
    os.rename(tmp, drop_path(d, name))


def maildrop(d):
    return sorted(os.listdir(os.path.join(d.spool, "maildrop")))


def quarantine(d):
    q = os.path.join(d.spool, "quarantine")
    return sorted(os.listdir(q)) if os.path.isdir(q) else []


def lines_with(d, needle):
    return [l for l in d.log_lines() if needle in l]


class Valid:
    """Valid drops, one at a time, each waited for at the smarthost: a rescan done."""

    def __init__(self, d, sh):
        self.d, self.sh, self.sent = d, sh, []

    def one(self):
        n = len(self.sent)
        msg = make_message(subject="valid drop %d" % n)
        self.sent.append(to_crlf(msg))
        put_drop(self.d, "valid-%d" % n, drop_header() + to_crlf(msg))
        wait_until(lambda: len([t for t in self.sh.delivered() if t.mail_from != ""]) >= len(self.sent),
                   20, what="valid drop %d delivered" % n, alive=self.d.check_alive)

    def only_these_delivered(self, notices=0):
        """Only the valid drops were relayed, besides `notices` notices from <>; returns those."""
        got = self.sh.delivered()
        assert [t.content for t in got if t.mail_from != ""] == self.sent
        dsns = [t for t in got if t.mail_from == ""]
        assert len(dsns) == notices, dsns
        return dsns


def wait_notice(sh, d):
    """The delivery status notification of a refused drop, as the smarthost got it."""
    return wait_until(lambda: [t for t in sh.delivered() if t.mail_from == ""], 20,
                      what="a notice from <>", alive=d.check_alive)[0]


def assert_size_notice(t, subject, sender=SENDER):
    """A notice to the sender: failed, 5.3.4, the limit, the original header
    section (its Subject) and nothing of the body."""
    assert t.rcpt_tos == [sender], t
    text = t.content.decode("utf-8", "replace")
    assert "Status: 5.3.4" in text and "Action: failed" in text, text[:3000]
    assert re.search(r"exceeds the limit of\s+%d bytes" % LIMIT, text), text[:3000]
    assert "Subject: %s" % subject in text, text[:3000]
    assert len(t.content) < 64 * 1024, len(t.content)


def big_message(subject):
    # 11,000 lines of 999 octets with CRLF: 11,000,000 octets, over 10M
    # and still under the 1 MiB of slack the old size check allowed
    return make_message(subject=subject, body=("x" * 998 + "\n") * 11000)


def test_oversize_drop_is_quarantined_not_relayed_and_logged_once(daemon, smarthost):
    require_root("chowning drops to nobody")
    sh = smarthost()
    d = daemon(sh, overrides={"max_message_size": "10M"})
    msg = to_crlf(big_message("too big"))
    assert len(msg) > LIMIT
    put_drop(d, "big", drop_header() + msg)
    d.wait_for_log(r"maildrop/big: larger than max_message_size \(%d\), uid=%d, size=%d; "
                   r"moved to .*/quarantine/big$" % (LIMIT, NOBODY, len(drop_header()) + len(msg)))
    assert_size_notice(wait_notice(sh, d), "too big")
    bounced = d.outcomes(status="bounced", to=RCPT)
    assert len(bounced) == 1 and bounced[0]["dsn"] == "5.3.4", bounced
    v = Valid(d, sh)
    for _ in range(3):
        v.one()
    v.only_these_delivered(notices=1)
    assert len(lines_with(d, "maildrop/big")) == 1, lines_with(d, "maildrop/big")
    assert quarantine(d) == ["big"]
    assert maildrop(d) == []
    d.wait_queue_empty()


def test_oversize_drop_with_notify_never_is_refused_without_a_notice(daemon, smarthost):
    require_root("chowning drops to nobody")
    sh = smarthost()
    d = daemon(sh, overrides={"max_message_size": "10M"})
    put_drop(d, "big", drop_header(extra="notify\tNEVER\n") + to_crlf(big_message("too big, never")))
    d.wait_for_log(r"maildrop/big: larger than max_message_size \(%d\), uid=%d" % (LIMIT, NOBODY))
    d.wait_for_log(r"no delivery status notification: NOTIFY excludes failures")
    v = Valid(d, sh)
    v.one()
    v.only_these_delivered(notices=0)
    assert quarantine(d) == ["big"]
    d.wait_queue_empty()


def test_own_config_of_the_client_cannot_lift_the_daemons_limit(daemon, smarthost, workdir):
    """Root may run the client with a config of its own (max_message_size = 0,
    a socket nobody listens on): the drop it leaves is judged by the daemon."""
    require_root("the client with a config of its own writes the system maildrop")
    sh = smarthost()
    d = daemon(sh, overrides={"max_message_size": "10M"})
    own = os.path.join(workdir, "own.conf")
    text = d.config_text.replace(d.submit_sock, os.path.join(workdir, "nobody-here.sock"))
    text = text.replace("max_message_size = 10M", "max_message_size = 0")
    assert "max_message_size = 0" in text
    with open(own, "w") as f:
        f.write(text)
    d.client_conf = own
    r = d.sendmail(["-i", "-f", SENDER, RCPT], big_message("too big, own config"))
    assert r.rc == 0, r
    m = d.wait_for_log(r"maildrop/(\S+): larger than max_message_size \(%d\), uid=0, size=\d+; "
                       r"moved to .*/quarantine/" % LIMIT)
    d.client_conf = None
    assert_size_notice(wait_notice(sh, d), "too big, own config")
    v = Valid(d, sh)
    v.one()
    v.only_these_delivered(notices=1)
    assert quarantine(d) == [m.group(1)]
    d.wait_queue_empty()


@pytest.mark.parametrize("limit", ["0", "10M"])
def test_sparse_40g_drop_neither_crashes_nor_bloats_the_daemon(daemon, smarthost, limit):
    # what follows the message is a hole: NUL octets, seen in the first
    # piece read; a drop with NUL octets is hostile (the client never
    # writes one), so it is quarantined without a notice, whatever the limit
    require_root("chowning drops to nobody")
    sh = smarthost()
    d = daemon(sh, overrides={"max_message_size": limit})
    rss_before = vmrss_kib(d.proc.pid)
    size = 40 << 30
    put_drop(d, "sparse", drop_header() + to_crlf(make_message(subject="sparse")), size=size)
    d.wait_for_log(r"maildrop/sparse: a NUL octet in the message \(RFC 5321 forbids it\), "
                   r"uid=%d, size=%d; moved to" % (NOBODY, size))
    v = Valid(d, sh)
    v.one()
    v.only_these_delivered()
    assert d.alive
    rss = vmrss_kib(d.proc.pid)
    assert rss - rss_before < 32 * 1024, "VmRSS grew from %d to %d KiB" % (rss_before, rss)
    assert quarantine(d) == ["sparse"]
    assert len(lines_with(d, "maildrop/sparse")) == 1


def test_nul_octet_drop_is_quarantined_not_relayed(daemon, smarthost):
    require_root("chowning drops to nobody")
    sh = smarthost()
    d = daemon(sh)
    put_drop(d, "nul", drop_header() + to_crlf(make_message(subject="nul", body="a\0b\n")))
    d.wait_for_log(r"maildrop/nul: a NUL octet in the message \(RFC 5321 forbids it\), uid=%d" % NOBODY)
    v = Valid(d, sh)
    v.one()
    v.only_these_delivered()
    assert quarantine(d) == ["nul"]


def test_strict_addresses_holds_for_drops(daemon, smarthost):
    require_root("chowning drops to nobody")
    sh = smarthost()
    d = daemon(sh, overrides={"strict_addresses": "yes"})
    put_drop(d, "bad-rcpt", drop_header(rcpts=(RCPT, "two@@example.net"))
             + to_crlf(make_message(subject="bad address")))
    d.wait_for_log(r"maildrop/bad-rcpt: not a valid drop \(bad address of recipient 2: .*"
                   r"\(strict_addresses\)\), uid=%d, size=\d+; moved to" % NOBODY)
    v = Valid(d, sh)
    v.one()
    v.only_these_delivered()
    assert quarantine(d) == ["bad-rcpt"]


def test_symlink_fifo_and_hard_link_are_quarantined_and_logged_once(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    os.symlink("/etc/shadow", drop_path(d, "link"))
    os.mkfifo(drop_path(d, "fifo"))
    secret = os.path.join(d.dir, "secret")          # a file the daemon may read
    with open(secret, "wb") as f:
        f.write(drop_header() + to_crlf(make_message(subject="linked in")))
    os.link(secret, drop_path(d, "hardlink"))
    v = Valid(d, sh)
    for _ in range(3):
        v.one()
    v.only_these_delivered()
    d.wait_for_log(r"maildrop/link: not a valid drop \(a symbolic link\), uid=0, size=\d+; moved to")
    d.wait_for_log(r"maildrop/fifo: not a valid drop \(not a regular file\), uid=0, size=0; moved to")
    d.wait_for_log(r"maildrop/hardlink: not a valid drop \(a file with 2 names\), uid=0, size=\d+; moved to")
    for name in ("link", "fifo", "hardlink"):
        assert len(lines_with(d, "maildrop/%s:" % name)) == 1, lines_with(d, "maildrop/" + name)
    assert quarantine(d) == ["fifo", "hardlink", "link"]
    assert os.path.exists(secret)
    assert os.path.islink(os.path.join(d.spool, "quarantine", "link"))
    assert maildrop(d) == []


def test_name_taken_in_quarantine_is_not_overwritten(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    q = os.path.join(d.spool, "quarantine")
    os.makedirs(q, exist_ok=True)
    with open(os.path.join(q, "bad"), "wb") as f:
        f.write(b"quarantined earlier\n")
    put_drop(d, "bad", b"not a drop\n")
    d.wait_for_log(r"maildrop/bad: not a valid drop \(not a mailrelay drop file\), uid=%d, size=11; "
                   r"moved to .*/quarantine/bad\.1$" % NOBODY)
    with open(os.path.join(q, "bad"), "rb") as f:
        assert f.read() == b"quarantined earlier\n"
    assert quarantine(d) == ["bad", "bad.1"]


def test_abandoned_tmp_drops_are_removed_fresh_ones_kept(daemon, smarthost):
    require_root("chowning drops to nobody")
    sh = smarthost()
    d = daemon(sh)
    d.stop()
    now = time.time()

    def tmp(name, mtime):
        p = drop_path(d, name)
        with open(p, "wb") as f:
            f.write(drop_header() + b"Subject: half written\r\n")
        os.chown(p, NOBODY, os.getgid())
        os.utime(p, (mtime, mtime))

    tmp(".tmp.100.1", now - 2 * 3600)          # the writer died two hours ago
    tmp(".tmp.100.2", now - 60)                # being written, or nearly so
    tmp(".tmp.100.3", now + 86400)             # an mtime set into the future
    d.start()
    wait_until(lambda: ".tmp.100.1" not in maildrop(d), 10, what="the old .tmp removed at start")
    d.wait_for_log(r"maildrop/\.tmp\.100\.1: removed a partial drop, uid=%d, size=\d+, "
                   r"unchanged for 120 minutes" % NOBODY)
    d.wait_for_log(r"maildrop/\.tmp\.100\.3: removed a partial drop")
    # and on a rescan while running
    tmp(".tmp.200.1", now - 3 * 3600)
    v = Valid(d, sh)
    v.one()
    assert ".tmp.200.1" not in maildrop(d)
    v.one()
    v.only_these_delivered()
    assert maildrop(d) == [".tmp.100.2"]
    for name in (".tmp.100.1", ".tmp.100.3", ".tmp.200.1"):
        assert len(lines_with(d, "maildrop/%s:" % name)) == 1, lines_with(d, name)
    assert lines_with(d, ".tmp.100.2") == []


def test_quarantine_cap_on_files_removes_the_oldest_first(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    d.stop()
    q = os.path.join(d.spool, "quarantine")
    os.makedirs(q, exist_ok=True)
    names = ["q%03d" % i for i in range(QUARANTINE_MAX_FILES)]
    for name in names:                          # in this order: the oldest first
        with open(os.path.join(q, name), "wb") as f:
            f.write(b"old\n")
    d.start()
    v = Valid(d, sh)
    v.one()
    assert quarantine(d) == names               # at the cap, not over it
    put_drop(d, "garbled-1", b"mailrelay-drop 1\nsender\ta@b\n")
    d.wait_for_log(r"/quarantine/q000: removed, the oldest of a quarantine over its limit "
                   r"\(%d files, 64 MiB\)" % QUARANTINE_MAX_FILES)
    put_drop(d, "garbled-2", b"garbage\n")
    d.wait_for_log(r"/quarantine/q001: removed")
    v.one()
    v.only_these_delivered()
    assert quarantine(d) == sorted(names[2:] + ["garbled-1", "garbled-2"])
    assert len(lines_with(d, "/quarantine/q0")) == 2


def test_quarantine_cap_on_bytes_removes_the_oldest_first(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    d.stop()
    q = os.path.join(d.spool, "quarantine")
    os.makedirs(q, exist_ok=True)
    chunk = b"y" * (1 << 20)
    for name, mib in (("old-40m", 40), ("new-20m", 20)):
        with open(os.path.join(q, name), "wb") as f:
            for _ in range(mib):
                f.write(chunk)
    d.start()
    v = Valid(d, sh)
    v.one()
    assert quarantine(d) == ["new-20m", "old-40m"]      # 60 MiB: under the cap
    # 6 MiB of garbage more: over 64 MiB, the 40 MiB file goes, the 20 MiB one stays
    put_drop(d, "garbage-6m", b"garbage\n" * (6 << 17))
    d.wait_for_log(r"/quarantine/old-40m: removed, the oldest of a quarantine over its limit")
    v.one()
    v.only_these_delivered()
    assert quarantine(d) == ["garbage-6m", "new-20m"]
    assert lines_with(d, "/quarantine/new-20m") == []


def test_undeclared_8bit_drop_is_relayed_as_8bitmime(daemon, smarthost):
    """A drop whose "body" line says 7BIT over 8-bit content: the octets
    decide, as on the listeners, so the smarthost (which offers 8BITMIME)
    is told BODY=8BITMIME and the content arrives unchanged."""
    require_root("chowning drops to nobody")
    sh = smarthost()
    d = daemon(sh)
    msg = to_crlf(make_message(subject="eight bit", body="Gr\u00fc\u00dfe aus K\u00f6ln\n"))
    put_drop(d, "eightbit", drop_header() + msg)
    sh.wait_for(1, timeout=20)
    (t,) = sh.delivered()
    assert "BODY=8BITMIME" in t.mail_options, t.mail_options
    assert t.content == msg

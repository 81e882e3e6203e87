"""The name this host gives itself in mail when the configuration does not.

`hostname` defaults to the first line of /etc/mailname (trimmed; ignored
when missing, empty or not a domain with a dot), then to the fully
qualified name the resolver gives for the system's host name, then to the
host name itself.  A name without a dot is a `mailrelay check-config`
warning and one log line when the daemon starts.

These tests never touch this machine's /etc: each program runs in private
mount and UTS namespaces, with an overlay on /etc that holds the test's
mailname and hosts files and a host name of the test's choosing (they need
root, as CI has).
"""
import datetime
import email.utils
import os
import pwd
import re
import smtplib
import socket
import subprocess
import sys

import pytest

from mrtest import current_user, make_message, quote, render_config, require_root, run, to_crlf

SHOW_HOSTNAME = re.compile(r'^hostname = "([^"]*)"$', re.M)


class Identity:
    """Runs argv with /etc/mailname, /etc/hosts and the host name given."""

    def __init__(self, workdir, host, mailname=None, hosts="127.0.0.1 localhost\n"):
        require_root("an overlay on /etc in a private mount namespace")
        self.upper = os.path.join(workdir, "etc-upper")
        self.work = os.path.join(workdir, "etc-work")
        os.makedirs(self.upper)
        os.makedirs(self.work)
        if mailname is not None:
            with open(os.path.join(self.upper, "mailname"), "w") as f:
                f.write(mailname)
        else:
            # an overlay whiteout: /etc/mailname is missing even where the machine has one
            os.mknod(os.path.join(self.upper, "mailname"), 0o600 | 0o020000, os.makedev(0, 0))
        with open(os.path.join(self.upper, "hosts"), "w") as f:
            f.write(hosts)
        self.host = host

    def prefix(self):
        script = ('mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1,workdir=$2" /etc'
                  ' && hostname "$3" && shift 3 && exec "$@"')
        return ["unshare", "-m", "-u", "sh", "-c", script, "identity",
                self.upper, self.work, self.host]

    def run(self, argv):
        return run(self.prefix() + argv)


def minimal_config(workdir, **top):
    path = os.path.join(workdir, "id.conf")
    with open(path, "w") as f:
        f.write(render_config(top, []))
    return path


def show(build, ident, conf):
    r = ident.run([build.mailrelay, "-c", conf, "check-config", "--show"])
    assert r.rc == 0, r
    m = SHOW_HOSTNAME.search(r.out_text)
    assert m, r
    # the check's report: one line per warning, then the verdict
    return m.group(1), "\n".join(l for l in r.out_text.splitlines() if ": warning: " in l or ": OK" in l)


def test_mailname_first_line_trimmed_is_the_default(build, workdir):
    ident = Identity(workdir, "vm", mailname="  mail.example.org \t\nsecond.example.org\n",
                     hosts="127.0.0.1 localhost\n127.0.1.1 vm.example.net vm\n")
    name, verdict = show(build, ident, minimal_config(workdir))
    assert name == "mail.example.org"
    assert "warning: hostname" not in verdict, verdict


@pytest.mark.parametrize("content", ["", "\n", "not a domain!\n", "mailhost\n", "a..b\n",
                                     "x" * 300 + ".example.org\n"],
                         ids=["empty", "blank", "junk", "dotless", "empty-label", "too-long"])
def test_unusable_mailname_falls_back_to_the_fqdn(build, workdir, content):
    ident = Identity(workdir, "vm", mailname=content,
                     hosts="127.0.0.1 localhost\n127.0.1.1 vm.example.net vm\n")
    name, verdict = show(build, ident, minimal_config(workdir))
    assert name == "vm.example.net"
    assert "warning: hostname" not in verdict, verdict


def test_missing_mailname_gives_the_fqdn(build, workdir):
    ident = Identity(workdir, "box", hosts="127.0.0.1 localhost\n127.0.1.1 box.example.net box\n")
    name, _ = show(build, ident, minimal_config(workdir))
    assert name == "box.example.net"


def test_dotless_name_is_a_check_config_warning(build, workdir):
    ident = Identity(workdir, "vm")
    name, verdict = show(build, ident, minimal_config(workdir))
    assert name == "vm"
    assert 'warning: hostname: "vm" has no dot' in verdict, verdict
    assert "set hostname" in verdict and "/etc/mailname" in verdict, verdict
    r = ident.run([build.mailrelay, "-c", minimal_config(workdir), "check-config"])
    assert r.rc == 0
    assert len([l for l in r.out_text.splitlines() if "hostname" in l]) == 1, r


def test_configured_hostname_wins_over_mailname(build, workdir):
    ident = Identity(workdir, "vm", mailname="mail.example.org\n")
    conf = minimal_config(workdir, hostname=quote("relay.example.com"))
    name, verdict = show(build, ident, conf)
    assert name == "relay.example.com"
    assert "warning: hostname" not in verdict


def test_configured_dotless_hostname_is_warned_too(build, workdir):
    ident = Identity(workdir, "vm", mailname="mail.example.org\n")
    conf = minimal_config(workdir, hostname=quote("relay"))
    _, verdict = show(build, ident, conf)
    assert 'warning: hostname: "relay" has no dot' in verdict, verdict


def _greeting(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        banner = s.recv(512)
        s.sendall(b"QUIT\r\n")
    return banner.decode()


def test_daemon_greets_with_mailname(daemon, workdir):
    d = daemon(overrides={"hostname": None}, start=False)
    d.wrapper = Identity(workdir, "vm", mailname="mail.example.org\n").prefix()
    d.start()
    assert _greeting(d.tcp_port).startswith("220 mail.example.org ")
    assert "has no dot" not in d.log_text()


def test_daemon_logs_a_dotless_name_once_at_start(daemon, workdir):
    d = daemon(overrides={"hostname": None}, start=False)
    d.wrapper = Identity(workdir, "vm").prefix()
    d.start()
    d.wait_for_log(r'hostname "vm" has no dot: set hostname in .*mailrelay\.conf or write '
                   r'the mail name to /etc/mailname')
    assert _greeting(d.tcp_port).startswith("220 vm ")
    d.hup()
    d.wait_for_log(r"configuration reloaded")
    assert d.log_text().count("has no dot") == 1


# ---------------------------------------------------------------------------
# the Received: field on every accepted message

SENDER = "sender@example.org"
RCPT = "rcpt@example.net"


def _received(t, d):
    """The checked Received: field of a delivered transaction, as a dict."""
    assert t.received is not None, "no well-formed Received: field first in %r" % t.raw[:300]
    f = {k: (v.decode() if v is not None else None) for k, v in t.received.groupdict().items()}
    assert f["by"] == "relay.test"
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?\S*", f["version"]), f
    acc = d.wait_for_record(id=f["id"])
    assert acc["id"] == f["id"]
    stamp = email.utils.parsedate_to_datetime(f["date"])
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - stamp).total_seconds()) < 120, f
    return f


def test_received_from_sendmail_names_uid_and_login(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    msg = make_message(subject="trace")
    assert d.sendmail(["-i", "-f", SENDER, RCPT], msg).rc == 0
    t = sh.wait_for(1)[0]
    f = _received(t, d)
    assert f["from"] == "local (uid %d %s)" % (os.getuid(), current_user())
    assert f["with"] == "ESMTP" and f["for"] == RCPT
    assert t.content == to_crlf(msg)
    # first line of what the smarthost got, every line within 78 octets
    assert t.raw.startswith(b"Received: from local (uid ")
    assert all(len(l) <= 78 for l in t.received.group(0).split(b"\r\n"))


def test_received_from_tcp_names_address_and_helo_no_for_with_two_recipients(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    msg = to_crlf(make_message(subject="tcp trace", to=[RCPT, "two@example.net"]))
    with smtplib.SMTP("127.0.0.1", d.tcp_port, local_hostname="client.example", timeout=10) as c:
        c.sendmail(SENDER, [RCPT, "two@example.net"], msg)
    t = sh.wait_for(1)[0]
    f = _received(t, d)
    assert f["helo"] == "client.example" and f["addr1"] == "127.0.0.1"
    assert f["with"] == "ESMTP"
    assert f["for"] is None
    assert t.content == msg


def test_received_after_helo_says_smtp(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    msg = to_crlf(make_message(subject="helo trace"))
    with smtplib.SMTP("127.0.0.1", d.tcp_port, local_hostname="old.example", timeout=10) as c:
        c.helo("old.example")
        c.sendmail(SENDER, [RCPT], msg)
    f = _received(sh.wait_for(1)[0], d)
    assert f["with"] == "SMTP" and f["helo"] == "old.example" and f["for"] == RCPT


def test_received_on_a_maildrop_import(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    d.stop()
    msg = make_message(subject="dropped")
    assert d.sendmail(["-i", "-f", SENDER, RCPT], msg).rc == 0
    d.start()
    t = sh.wait_for(1, timeout=20)[0]
    f = _received(t, d)
    assert f["from"] == "local (uid %d %s)" % (os.getuid(), current_user())
    assert f["with"] == "local" and f["for"] == RCPT
    assert t.content == to_crlf(msg)
    acc = d.wait_for_record(id=f["id"])
    assert acc["via"] == "maildrop" and acc["size"] == str(len(t.raw))


LIMIT = 10 * 1024


def _near_limit_message(margin):
    """A message whose CRLF form is LIMIT - margin octets, in short lines."""
    msg = to_crlf(make_message(subject="near the limit", body=""))
    while len(msg) < LIMIT - margin:
        msg += b"x" * min(70, LIMIT - margin - len(msg) - 2) + b"\r\n"
    return msg


def test_received_counts_in_max_message_size_on_the_listener(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh, overrides={"max_message_size": "10K"})
    msg = _near_limit_message(20)      # fits, but not with the Received: field
    assert len(msg) == LIMIT - 20
    with smtplib.SMTP("127.0.0.1", d.tcp_port, timeout=10) as c:
        with pytest.raises(smtplib.SMTPDataError) as e:
            c.sendmail(SENDER, [RCPT], msg)
    assert e.value.smtp_code == 552
    d.wait_for_log(r"refused: larger than max_message_size")
    small = _near_limit_message(400)
    with smtplib.SMTP("127.0.0.1", d.tcp_port, timeout=10) as c:
        c.sendmail(SENDER, [RCPT], small)
    t = sh.wait_for(1)[0]
    assert len(t.raw) <= LIMIT and t.content == small


def test_received_counts_in_max_message_size_in_the_maildrop(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh, overrides={"max_message_size": "10K"})
    d.stop()
    assert d.sendmail(["-i", "-f", SENDER, RCPT], _near_limit_message(20)).rc == 0
    d.start()
    d.wait_for_log(r"maildrop/\S+: larger than max_message_size")
    # what leaves is the notice to the sender, made by the daemon: no Received: in it
    t = sh.wait_for(1, timeout=20)[0]
    assert t.mail_from == "" and t.rcpt_tos == [SENDER]
    assert t.received is None and b"Received:" not in t.raw.split(b"\r\n\r\n")[0]


def _hops(n):
    return "".join("Received: from h%d.example by h%d.example; Mon, 02 Jan 2023 03:04:05 +0000\n"
                   % (i, i + 1) for i in range(n)).encode()


def test_a_mail_loop_is_refused_after_100_hops(daemon, smarthost):
    sh = smarthost()
    d = daemon(sh)
    looping = to_crlf(_hops(100) + make_message(subject="loop"))
    with smtplib.SMTP("127.0.0.1", d.tcp_port, timeout=10) as c:
        with pytest.raises(smtplib.SMTPDataError) as e:
            c.sendmail(SENDER, [RCPT], looping)
    assert e.value.smtp_code == 554 and b"5.4.6" in e.value.smtp_error
    assert b"too many hops" in e.value.smtp_error
    d.wait_for_log(r"refused: 100 Received: fields, a mail loop")
    fine = to_crlf(_hops(99) + make_message(subject="long way"))
    with smtplib.SMTP("127.0.0.1", d.tcp_port, timeout=10) as c:
        c.sendmail(SENDER, [RCPT], fine)
    t = sh.wait_for(1)[0]
    assert t.content == fine


_SUBMIT_AS = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rb")
def cmd(line, want):
    if line is not None:
        s.sendall(line)
    while True:
        r = f.readline()
        if r[3:4] != b"-":
            break
    assert r.startswith(want), (line, r)
cmd(None, b"220")
cmd(b"EHLO app\r\n", b"250")
cmd(b"MAIL FROM:<app@example.org>\r\n", b"250")
cmd(b"RCPT TO:<rcpt@example.net>\r\n", b"250")
cmd(b"DATA\r\n", b"354")
cmd(b"Subject: as another user\r\n\r\nHello.\r\n.\r\n", b"250")
cmd(b"QUIT\r\n", b"221")
"""


def test_received_on_the_socket_names_another_users_uid_and_login(daemon, smarthost, workdir):
    require_root("submitting as uid 65534")
    sh = smarthost()
    d = daemon(sh)
    for p in (workdir, d.dir):
        os.chmod(p, 0o755)
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        sys.executable, "-c", _SUBMIT_AS, d.submit_sock],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    assert p.returncode == 0, p.stdout
    f = _received(sh.wait_for(1)[0], d)
    assert f["from"] == "local (uid 65534 %s)" % pwd.getpwuid(65534).pw_name
    assert f["with"] == "ESMTP" and f["for"] == RCPT

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
import os
import re
import socket

import pytest

from mrtest import base_config, free_port, quote, render_config, require_root, run

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
    return m.group(1), r.out_text.strip().splitlines()[-1]


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
    assert 'warning: hostname "vm" has no dot' in verdict, verdict
    assert "set hostname" in verdict and "/etc/mailname" in verdict, verdict
    r = ident.run([build.mailrelay, "-c", minimal_config(workdir), "check-config"])
    assert r.rc == 0
    assert len(r.out_text.splitlines()) == 1, r


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
    assert 'warning: hostname "relay" has no dot' in verdict, verdict


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

"""
`make install` for those who build from source (issue 13, point 2), run in
the build directory ($MAILRELAY_BUILDDIR) into a DESTDIR: the layout the
package has, the sendmail links relative and complete, the unit starting
the daemon of the configured sbindir, another MTA's sendmail never
replaced silently, and `make uninstall` taking back all it made.

A staged install (DESTDIR) creates no account and gives nothing to a
group: the install says so.  The real install as root (the group, 2755
root:mailrelay) is what the package test (tests/pkg) checks in a chroot;
it is not run here, on the machine's own root.  `make distcheck` runs in
tests/pkg too, once per suite run.
"""

import os
import stat
import subprocess

import pytest


def make(build, *args, check=True):
    p = subprocess.run(["make", "-s", "-C", build.dir] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=300)
    if check:
        assert p.returncode == 0, "make %s: exit %d\n%s" % (" ".join(args), p.returncode, p.stdout)
    return p


def dirs(build):
    """The configured installation directories, as make expands them."""
    names = ("prefix", "bindir", "sbindir", "sysconfdir", "systemdunitdir", "sysusersdir",
             "tmpfilesdir", "mandir")
    out = make(build, "--no-print-directory",
               "--eval=mr-print-dirs: ; @echo %s" % " ".join("$(%s)" % n for n in names),
               "mr-print-dirs").stdout.split()
    assert len(out) == len(names), out
    return dict(zip(names, out))


def tree(root):
    """Every file and link under root (directories left out)."""
    found = []
    for d, subdirs, files in os.walk(root):
        found += [os.path.relpath(os.path.join(d, f), root) for f in files]
        found += [os.path.relpath(os.path.join(d, s), root) for s in subdirs
                  if os.path.islink(os.path.join(d, s))]
    return sorted(found)


@pytest.fixture
def staged(build, workdir):
    dest = os.path.join(workdir, "dest")
    yield dest, dirs(build)
    make(build, "uninstall", "DESTDIR=" + dest, check=False)


def test_staged_install_lays_out_what_the_package_has(build, staged):
    dest, d = staged
    out = make(build, "install", "DESTDIR=" + dest).stdout

    def at(path):
        return dest + path

    for prog in ("mailrelayd", "mailrelay"):
        assert os.access(at(d["sbindir"] + "/" + prog), os.X_OK), prog
    client = at(d["bindir"] + "/mailrelay-sendmail")
    assert os.access(client, os.X_OK)
    # The links, relative so that the staged tree can move as it is.
    assert os.readlink(at(d["sbindir"] + "/sendmail")) == \
        os.path.relpath(d["bindir"] + "/mailrelay-sendmail", d["sbindir"])
    assert os.readlink(at(d["prefix"] + "/lib/sendmail")) == \
        os.path.relpath(d["sbindir"] + "/sendmail", d["prefix"] + "/lib")
    for name in ("sendmail", "mailq", "newaliases"):
        path = at((d["sbindir"] if name == "sendmail" else d["bindir"]) + "/" + name)
        assert os.path.realpath(path) == os.path.realpath(client), name
    assert os.path.realpath(at(d["prefix"] + "/lib/sendmail")) == os.path.realpath(client)

    # The unit starts the daemon of this sbindir.
    with open(at(d["systemdunitdir"] + "/mailrelay.service")) as f:
        unit = f.read()
    assert "\nExecStart=%s/mailrelayd -f\n" % d["sbindir"] in unit, unit
    assert "@sbindir@" not in unit
    for snippet in (d["sysusersdir"], d["tmpfilesdir"]):
        assert os.path.isfile(at(snippet + "/mailrelay.conf")), snippet

    # The configuration 0640 (the group is the system's matter, see below).
    conf = at(d["sysconfdir"] + "/mailrelay/mailrelay.conf")
    assert stat.S_IMODE(os.stat(conf).st_mode) == 0o640

    # Staged: no account made, nothing setgid, and install says so.
    assert stat.S_IMODE(os.stat(client).st_mode) == 0o755
    assert "staged install" in out and "no mailrelay account made" in out, out


def test_another_mtas_sendmail_is_replaced_only_when_asked(build, staged):
    dest, d = staged
    other = dest + d["sbindir"] + "/sendmail"
    os.makedirs(os.path.dirname(other))
    with open(other, "w") as f:
        f.write("#!/bin/sh\n# another MTA\n")
    os.chmod(other, 0o755)

    p = make(build, "install", "DESTDIR=" + dest, check=False)
    assert p.returncode != 0
    assert "error: %s exists and is not mailrelay's" % other in p.stdout, p.stdout
    assert "FORCE_SENDMAIL=yes" in p.stdout
    with open(other) as f:
        assert "another MTA" in f.read(), "the other MTA's sendmail was replaced"
    # Refused before any program was installed.
    assert not os.path.exists(dest + d["sbindir"] + "/mailrelayd")

    out = make(build, "install", "DESTDIR=" + dest, "FORCE_SENDMAIL=yes").stdout
    assert "replacing %s" % other in out, out
    assert os.readlink(other).endswith("mailrelay-sendmail")

    # Once it is mailrelay's, a second install goes through without asking.
    make(build, "install", "DESTDIR=" + dest)


def test_uninstall_removes_what_install_made(build, staged):
    dest, d = staged
    make(build, "install", "DESTDIR=" + dest)
    assert tree(dest)
    make(build, "uninstall", "DESTDIR=" + dest)
    assert tree(dest) == [], "left after make uninstall"


def test_uninstall_keeps_a_changed_configuration(build, staged):
    dest, d = staged
    make(build, "install", "DESTDIR=" + dest)
    conf = dest + d["sysconfdir"] + "/mailrelay/mailrelay.conf"
    with open(conf, "a") as f:
        f.write("hostname = mail.example.com\n")
    out = make(build, "uninstall", "DESTDIR=" + dest).stdout
    assert "keeping %s" % conf in out, out
    assert tree(dest) == [os.path.relpath(conf, dest)]

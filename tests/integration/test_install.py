"""
`make install` for those who build from source (issue 13, point 2), run in
the build directory ($MAILRELAY_BUILDDIR) into a DESTDIR: the layout the
package has, the sendmail links relative and complete, the unit starting
the daemon of the configured sbindir, another MTA's sendmail never
replaced silently, and `make uninstall` taking back all it made.

A staged install (DESTDIR) creates no account and gives nothing to a
group: the install says so.  The real install as root (no DESTDIR: the
account made, the client 2755 root:mailrelay) runs chrooted into an
overlay of this machine's root, on a tmpfs, in a mount namespace of its
own: everything it writes vanishes with the namespace, and the machine's
own root is never changed.  `make distcheck` runs in tests/pkg, once per
suite run.
"""

import grp
import os
import stat
import subprocess
import textwrap

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
             "tmpfilesdir", "mandir", "bashcompletiondir", "pkglibexecdir")
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
    # the delivery process, where mailrelayd runs it from (not beside it: not for running by hand)
    assert os.access(at(d["pkglibexecdir"] + "/mailrelay-deliver"), os.X_OK)
    assert not os.path.exists(at(d["sbindir"] + "/mailrelay-deliver"))
    with open(at(d["sbindir"] + "/mailrelayd"), "rb") as f:
        assert (d["pkglibexecdir"] + "/mailrelay-deliver\0").encode() in f.read()
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

    # bash completion, under the name bash-completion loads for the command.
    assert os.path.isfile(at(d["bashcompletiondir"] + "/mailrelay"))

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


# Run inside the overlay root by test_root_install_*: install, report,
# submit as nobody with the daemon down, uninstall, report what is left.
ROOT_INSTALL = textwrap.dedent("""\
    set -e
    b=$1 sbindir=$2 bindir=$3 sysconfdir=$4 prefix=$5
    if getent group mailrelay >/dev/null; then echo "had-group"; fi
    make -s -C "$b" install > /tmp/install.out 2>&1 || { cat /tmp/install.out; exit 1; }
    cat /tmp/install.out
    echo "client: $(stat -c '%a %U:%G' "$bindir/mailrelay-sendmail")"
    echo "conf: $(stat -c '%a %U:%G' "$sysconfdir/mailrelay/mailrelay.conf")"
    echo "spool: $(stat -c '%a %U:%G' /var/spool/mailrelay/maildrop)"
    printf 'To: someone@example.com\\nSubject: offline\\n\\ntest\\n' |
        setpriv --reuid=65534 --regid=65534 --clear-groups "$sbindir/sendmail" -t
    echo "sendmail-exit: $?"
    echo "maildrop: $(ls /var/spool/mailrelay/maildrop | wc -l)"
    make -s -C "$b" uninstall > /tmp/uninstall.out 2>&1 || { cat /tmp/uninstall.out; exit 1; }
    for f in "$sbindir/sendmail" "$prefix/lib/sendmail" "$bindir/mailq" "$bindir/newaliases" \\
             "$bindir/mailrelay-sendmail" "$sbindir/mailrelayd"; do
        if [ -e "$f" ] || [ -h "$f" ]; then echo "left: $f"; fi
    done
    """)


def host_has_group():
    try:
        grp.getgrnam("mailrelay")
        return True
    except KeyError:
        return False


@pytest.mark.setgid
def test_root_install_makes_the_group_and_a_setgid_client(build, workdir):
    """make install as root, without DESTDIR, on a copy-on-write root."""
    d = dirs(build)
    had_group = host_has_group()
    had_client = os.path.lexists(d["bindir"] + "/mailrelay-sendmail")
    top = os.path.join(workdir, "ov")
    os.mkdir(top)
    binds = ""
    if os.stat(build.dir).st_dev != os.stat("/").st_dev:
        binds = 'mkdir -p "$m$1" && mount --rbind "$1" "$m$1" && '
    script = ('t=%s; mount -t tmpfs tmpfs "$t" && mkdir "$t/u" "$t/w" "$t/m" && m="$t/m" && '
              'mount -t overlay overlay -o "lowerdir=/,upperdir=$t/u,workdir=$t/w" "$m" && '
              'mount -t proc proc "$m/proc" && mount --rbind /dev "$m/dev" && %s'
              'exec chroot "$m" sh -c "$0" root-install "$@"') % (top, binds)
    p = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                        ROOT_INSTALL, build.dir, d["sbindir"], d["bindir"], d["sysconfdir"],
                        d["prefix"]],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    out = p.stdout
    assert p.returncode == 0, out
    if "had-group" not in out:
        assert "systemd-sysusers" in out or "useradd" in out, out
    assert "staged install" not in out, out
    assert "client: 2755 root:mailrelay" in out, out
    assert "conf: 640 root:mailrelay" in out, out
    assert "spool: 1730 mailrelay:mailrelay" in out, out
    # An ordinary user's mail, with the daemon down, is kept in the maildrop.
    assert "sendmail-exit: 0" in out and "maildrop: 1" in out, out
    assert "left:" not in out, out
    # Nothing of it reached this machine's own root.
    assert had_group == host_has_group(), "the machine's own account database changed"
    assert not os.path.lexists(d["bindir"] + "/mailrelay-sendmail") or had_client

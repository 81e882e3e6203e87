"""
The Debian package, built from this tree and installed in a throwaway
Debian 12 root, as an admin would use it (issue 13, point 1).

The root is a debootstrap minbase chroot with the package's run-time
dependencies (systemd brings systemd-sysusers and systemd-tmpfiles), made
from the mirror this machine's apt uses and kept as a tarball in
/var/cache/mailrelay-tests, so that a second run unpacks it in seconds.
Every command runs chrooted in a private mount namespace of its own
(unshare, with /proc and /dev mounted there), so nothing is mounted on the
host and this machine's root is never touched.  The chroot shares the
host's network: the smarthost is a recording aiosmtpd server on 127.0.0.1,
as in tests/integration.

The tests run in order on one root: build (and lintian), a preseeded
non-interactive install, mail from an unprivileged user, a reconfiguration
through debconf's teletype frontend, an upgrade, then removal and purge.

Run as root: /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/pkg
"""

import glob
import hashlib
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))

import mrtest  # noqa: E402

SUITE = "bookworm"
# Installed with the root besides the package's own run-time dependencies
# (read from the built package: see runtime_deps()), so that dpkg -i alone
# (no apt, no network) installs the package.  systemd brings
# systemd-sysusers and systemd-tmpfiles.
INCLUDE_ALWAYS = ("systemd",)
CACHE = "/var/cache/mailrelay-tests"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
PASSWORD = "pkg-test-Secret-7f3a"

# What dpkg and the package may leave after a purge: dpkg's and debconf's
# own records, and the mailrelay account (Debian keeps system accounts, so
# that files they owned never pass to a later account with the same id).
PURGE_MAY_CHANGE = re.compile(
    r"^\./(var/lib/dpkg/|var/cache/debconf/|var/log/|var/lib/systemd/deb-systemd-"
    r"|etc/(passwd|group|shadow|gshadow)-?$|tmp/)")


def run(cmd, timeout=600, **kw):
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.STDOUT)
    return subprocess.run(cmd, text=True, timeout=timeout, **kw)


def must(cmd, timeout=600, **kw):
    p = run(cmd, timeout=timeout, **kw)
    assert p.returncode == 0, "%s: exit %d\n%s" % (" ".join(cmd), p.returncode, p.stdout)
    return p.stdout


def runtime_deps(debfile):
    """The packages the built .deb depends on (the first of each set of
    alternatives, versions dropped), with INCLUDE_ALWAYS, sorted: the root
    is made with them, and a change of them makes a new cached root."""
    names = set(INCLUDE_ALWAYS)
    for line in must(["dpkg-deb", "-f", debfile, "Pre-Depends", "Depends"]).splitlines():
        _, _, value = line.partition(":")
        for dep in value.split(","):
            name = dep.split("|")[0].split("(")[0].split(":")[0].strip()
            if name:
                names.add(name)
    return sorted(names)


def clean_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEB")}
    env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
    env["LC_ALL"] = "C.UTF-8"
    return env


class Root:
    """A Debian root directory and the way to run commands in it."""

    def __init__(self, path):
        self.path = path

    def argv(self, cmd):
        script = ('R=$1; shift; mount -t proc proc "$R/proc" && '
                  'mount --rbind /dev "$R/dev" && exec chroot "$R" "$@"')
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                "inroot", self.path] + list(cmd)

    def run(self, cmd, timeout=120, **kw):
        kw.setdefault("env", clean_env())
        return run(self.argv(cmd), timeout=timeout, **kw)

    def must(self, cmd, timeout=120, **kw):
        p = self.run(cmd, timeout=timeout, **kw)
        assert p.returncode == 0, "in the root: %s: exit %d\n%s" % (" ".join(cmd), p.returncode, p.stdout)
        return p.stdout

    def sh(self, script, user=None, **kw):
        return self.run((user or []) + ["sh", "-c", script], **kw)

    def file(self, path):
        return os.path.join(self.path, path.lstrip("/"))

    def lstat(self, path):
        try:
            return os.lstat(self.file(path))
        except FileNotFoundError:
            return None

    def owner(self, path):
        """"mode user:group" of path, names as the root's own databases give them."""
        return self.must(["stat", "-c", "%a %U:%G", path]).strip()

    def listing(self):
        """Every path in the root, /proc, /dev and /sys left out."""
        out = []
        for d, dirs, files in os.walk(self.path):
            rel = "." + d[len(self.path):]
            if rel in ("./proc", "./dev", "./sys"):
                dirs[:] = []
                continue
            out.append(rel)
            out.extend(os.path.join(rel, f) for f in files)
            out.extend(os.path.join(rel, x) for x in dirs if os.path.islink(os.path.join(d, x)))
        return sorted(set(out))


def apt_mirror():
    """The mirror this machine's apt uses for Debian 12's main archive: an
    entry for the suite itself (not -security nor -updates) with main."""
    for f in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*")):
        try:
            with open(f) as fh:
                text = fh.read()
        except OSError:
            continue
        entries = []
        for stanza in re.split(r"\n\s*\n", text):   # deb822 .sources
            fields = dict(re.findall(r"^(\w+):\s*(.*)$", stanza, re.M))
            if "URIs" in fields:
                entries += [(u, fields.get("Suites", "").split(), fields.get("Components", "").split())
                            for u in fields["URIs"].split()]
        for m in re.finditer(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)$", text, re.M):
            entries.append((m.group(1), [m.group(2)], m.group(3).split()))
        for uri, suites, components in entries:
            if SUITE in suites and "main" in components:
                return uri
    return None


@pytest.fixture(scope="module")
def tmp():
    d = tempfile.mkdtemp(prefix="mrpkg-", dir="/var/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def deb(tmp):
    """Build the package from a copy of this tree: (the .deb, the .changes)."""
    assert os.geteuid() == 0, "the package test needs root (./scripts/test-all runs as root)"
    for tool in ("dpkg-buildpackage", "dh", "lintian", "debootstrap"):
        assert shutil.which(tool), "%s is missing: sh scripts/deps.sh installs it" % tool
    src = os.path.join(tmp, "src", "mailrelay")
    # The sources as git knows them (tracked, and new files not ignored);
    # outside a checkout, the tree less what builds and test runs leave.
    p = run(["git", "-C", TOP, "ls-files", "-z", "-co", "--exclude-standard"],
            stderr=subprocess.DEVNULL)
    if p.returncode == 0:
        os.makedirs(src)
        for f in filter(None, p.stdout.split("\0")):
            if os.path.lexists(os.path.join(TOP, f)):
                must(["cp", "-a", "--parents", f, src], cwd=TOP)
    else:
        shutil.copytree(TOP, src, symlinks=True, ignore=shutil.ignore_patterns(
            "build", "build-*", "autom4te.cache", "__pycache__", "*.o", "*.a", "*.log"))
    env = clean_env()
    env["DEB_BUILD_OPTIONS"] = "parallel=2 nocheck"  # the unit tests run in the suite itself
    p = run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src, env=env, timeout=900)
    assert p.returncode == 0, "dpkg-buildpackage failed:\n" + p.stdout[-6000:]
    debs = glob.glob(os.path.join(tmp, "src", "mailrelay_*_*.deb"))
    changes = glob.glob(os.path.join(tmp, "src", "mailrelay_*.changes"))
    assert len(debs) == 1 and len(changes) == 1, os.listdir(os.path.join(tmp, "src"))
    return debs[0], changes[0]


@pytest.fixture(scope="module")
def root(tmp, deb):
    """A fresh Debian 12 minbase root holding the package file in /tmp."""
    path = os.path.join(tmp, "root")
    include = ",".join(runtime_deps(deb[0]))
    key = hashlib.sha256((SUITE + " " + include).encode()).hexdigest()[:12]
    tarball = os.path.join(CACHE, "%s-minbase-%s.tar" % (SUITE, key))
    if not os.path.exists(tarball):
        mirror = apt_mirror()
        assert mirror, "no Debian mirror in /etc/apt/sources.list*: cannot make the test root"
        made = os.path.join(tmp, "made")
        p = run(["debootstrap", "--variant=minbase", "--include=" + include, SUITE, made, mirror],
                env=clean_env(), timeout=900)
        assert p.returncode == 0, "debootstrap failed:\n" + p.stdout[-4000:]
        os.makedirs(CACHE, exist_ok=True)
        must(["tar", "-C", made, "--one-file-system", "-cf", tarball + ".part", "."])
        os.rename(tarball + ".part", tarball)
        shutil.rmtree(made, ignore_errors=True)
    os.makedirs(path)
    must(["tar", "-C", path, "-xf", tarball])
    r = Root(path)
    shutil.copy(deb[0], r.file("/tmp/mailrelay.deb"))
    r.before = r.listing()
    return r


@pytest.fixture(scope="module")
def smarthost():
    sh = mrtest.Smarthost(name="pkg-smarthost")
    sh.start()
    yield sh
    sh.stop()


class Daemon:
    """mailrelayd -f, run in the root."""

    def __init__(self, root):
        self.root = root
        self.log = open(os.path.join(os.path.dirname(root.path), "mailrelayd.log"), "a+")
        self.proc = subprocess.Popen(root.argv(["/usr/sbin/mailrelayd", "-f"]),
                                     stdout=self.log, stderr=subprocess.STDOUT, env=clean_env())
        mrtest.wait_until(lambda: "started" in self.text(), 15, what="mailrelayd started",
                          alive=self.alive)

    def text(self):
        self.log.seek(0)
        return self.log.read()

    def alive(self):
        assert self.proc.poll() is None, "mailrelayd exited %s:\n%s" % (self.proc.returncode, self.text())

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=20) == 0, self.text()
        self.log.close()


def preseed(root, port):
    answers = [
        "mailrelay mailrelay/mailname string relay.example.net",
        "mailrelay mailrelay/provider select other",
        "mailrelay mailrelay/smarthost string 127.0.0.1",
        "mailrelay mailrelay/port string %d" % port,
        "mailrelay mailrelay/tls select disabled",
        "mailrelay mailrelay/admin_address string admin@example.net",
    ]
    root.must(["debconf-set-selections"], input="\n".join(answers) + "\n")


def debconf_block(root):
    with open(root.file("/etc/mailrelay/mailrelay.conf")) as f:
        text = f.read()
    m = re.search(r"^# BEGIN debconf.*?^# END debconf\n", text, re.M | re.S)
    assert m, "no debconf block in the configuration:\n" + text[-800:]
    return m.group(0)


def test_package_builds_lintian_clean(deb):
    p = run(["lintian", "--pedantic", "-I", deb[1]], timeout=300)
    tags = [l for l in p.stdout.splitlines() if re.match(r"^[EWIPX]: ", l)]
    assert p.returncode == 0 and not tags, "lintian:\n" + p.stdout
    info = must(["dpkg-deb", "-f", deb[0], "Provides", "Conflicts", "Replaces"])
    for field in ("Provides", "Conflicts", "Replaces"):
        assert "%s: mail-transport-agent" % field in info, info
    # bash completion where bash-completion loads it for the command
    listing = must(["dpkg-deb", "-c", deb[0]])
    assert re.search(r" \./usr/share/bash-completion/completions/mailrelay$", listing, re.M), listing


def test_noninteractive_install_with_preseeded_answers(root, smarthost):
    preseed(root, smarthost.port)
    env = clean_env()
    env["DEBIAN_FRONTEND"] = "noninteractive"
    out = root.must(["dpkg", "-i", "/tmp/mailrelay.deb"], env=env)
    assert "Setting up mailrelay" in out, out

    # The client setgid mailrelay and the configuration 0640 root:mailrelay,
    # exactly as the client's trust rules assume.
    assert root.owner("/usr/bin/mailrelay-sendmail") == "2755 root:mailrelay"
    assert root.owner("/etc/mailrelay/mailrelay.conf") == "640 root:mailrelay"
    assert root.owner("/var/spool/mailrelay") == "710 mailrelay:mailrelay"
    assert root.owner("/var/spool/mailrelay/maildrop") == "1730 mailrelay:mailrelay"
    assert root.owner("/usr/libexec/mailrelay/mailrelay-deliver") == "755 root:root"
    for link, target in (("/usr/sbin/sendmail", "../bin/mailrelay-sendmail"),
                         ("/usr/lib/sendmail", "../sbin/sendmail"),
                         ("/usr/bin/mailq", "mailrelay-sendmail"),
                         ("/usr/bin/newaliases", "mailrelay-sendmail")):
        assert os.readlink(root.file(link)) == target, link
    assert os.readlink(root.file("/etc/systemd/system/multi-user.target.wants/mailrelay.service")) \
        == "/lib/systemd/system/mailrelay.service", "the service is not enabled"
    assert os.readlink(root.file("/etc/systemd/system/sockets.target.wants/mailrelay.socket")) \
        == "/lib/systemd/system/mailrelay.socket", "the socket unit is not enabled"

    block = debconf_block(root)
    for line in ('hostname = "relay.example.net"', 'admin_address = "admin@example.net"',
                 'host = "127.0.0.1"', "port = %d" % smarthost.port, "tls = disabled"):
        assert line in block, block
    assert "OK" in root.must(["mailrelay", "check-config"])


def test_unprivileged_user_sends_through_sendmail(root, smarthost):
    msg = "To: someone@example.com\nSubject: from the package\n\ntest\n"
    # The daemon is not running (nothing starts it in a chroot): the setgid
    # client leaves the message in the maildrop ...
    p = root.run(NOBODY + ["sendmail", "-t"], input=msg)
    assert p.returncode == 0, p.stdout
    assert len(os.listdir(root.file("/var/spool/mailrelay/maildrop"))) == 1

    # ... and the daemon, once running, sends it.
    d = Daemon(root)
    try:
        t = smarthost.wait_for(1, alive=d.alive)[0]
        assert t.mail_from == "nobody@relay.example.net"
        assert t.rcpt_tos == ["someone@example.com"]
        assert b"Subject: from the package" in t.content

        # Through the daemon's socket this time: echo test | sendmail -t.
        p = root.sh("{ echo 'To: other@example.com'; echo; echo test; } | sendmail -t", user=NOBODY)
        assert p.returncode == 0, p.stdout
        t = smarthost.wait_for(2, alive=d.alive)[1]
        assert t.rcpt_tos == ["other@example.com"] and t.content.endswith(b"test\r\n")

        p = root.run(NOBODY + ["mailq"])
        assert p.returncode == 0 and "Mail queue is empty" in p.stdout, p.stdout
    finally:
        d.stop()
    p = root.run(["newaliases"])
    assert p.returncode == 0, p.stdout


def test_reconfigure_asks_and_keeps_the_secret_out_of_debconf(root):
    # dpkg-reconfigure asks at priority low: mail name, provider, port, TLS,
    # user name, password, root's address (debconf's teletype frontend).
    # A mail name or a port that cannot be is asked again.
    answers = ["not a name", "relay2.example.net", "2", "eighty", "587", "1", "relay@example.net",
               PASSWORD, "root-mail@example.net"]
    env = clean_env()
    env["DEBIAN_FRONTEND"] = "teletype"
    p = root.run(["dpkg-reconfigure", "mailrelay"], env=env, input="\n".join(answers) + "\n")
    assert p.returncode == 0, p.stdout
    assert "Smarthost that relays this system's mail" in p.stdout, p.stdout

    block = debconf_block(root)
    for line in ('hostname = "relay2.example.net"', 'admin_address = "root-mail@example.net"',
                 "rewrite_from = always", "smarthost gmail {", 'host = "smtp.gmail.com"',
                 "port = 587", "tls = required", 'username = "relay@example.net"',
                 "password_file = /etc/mailrelay/smarthost.secret"):
        assert line in block, block
    assert root.owner("/etc/mailrelay/smarthost.secret") == "640 root:mailrelay"
    with open(root.file("/etc/mailrelay/smarthost.secret")) as f:
        assert f.read() == PASSWORD + "\n"
    assert root.owner("/etc/mailrelay/mailrelay.conf") == "640 root:mailrelay"
    # The password is in no debconf database once the postinst has run.
    p = run(["grep", "-rl", PASSWORD, root.file("/var/cache/debconf")])
    assert p.returncode == 1, "the password is still in debconf: " + p.stdout
    assert "OK" in root.must(["mailrelay", "check-config"])

    # An edit of the block is the answer shown next time, and a reconfigure
    # with an empty password keeps the stored secret.
    conf = root.file("/etc/mailrelay/mailrelay.conf")
    with open(conf) as f:
        text = f.read()
    with open(conf, "w") as f:
        f.write(text.replace("port = 587", "port = 2587"))
    env["DEBIAN_FRONTEND"] = "noninteractive"
    root.must(["dpkg-reconfigure", "mailrelay"], env=env)
    assert "port = 2587" in debconf_block(root)
    with open(conf) as f:
        text = f.read()
    root.must(["dpkg-reconfigure", "mailrelay"], env=env)
    with open(conf) as f:
        assert f.read() == text, "a reconfiguration with the same answers changed the file"
    with open(root.file("/etc/mailrelay/smarthost.secret")) as f:
        assert f.read() == PASSWORD + "\n"


def test_upgrade_keeps_the_configuration_the_secret_and_the_modes(root):
    # dpkg -i of the installed version again runs the upgrade path
    # (prerm upgrade, the new postinst configure).
    files = ("/etc/mailrelay/mailrelay.conf", "/etc/mailrelay/smarthost.secret")
    before = {}
    for path in files:
        with open(root.file(path)) as f:
            before[path] = f.read()
    env = clean_env()
    env["DEBIAN_FRONTEND"] = "noninteractive"
    root.must(["dpkg", "-i", "/tmp/mailrelay.deb"], env=env)
    for path in files:
        with open(root.file(path)) as f:
            assert f.read() == before[path], path + " changed by an upgrade"
        assert root.owner(path) == "640 root:mailrelay", path
    assert root.owner("/usr/bin/mailrelay-sendmail") == "2755 root:mailrelay"
    overrides = root.run(["dpkg-statoverride", "--list"]).stdout
    assert overrides.count("mailrelay-sendmail") == 1, overrides


def test_remove_keeps_config_and_spool_purge_leaves_nothing(root):
    root.must(["dpkg", "-r", "mailrelay"])
    for gone in ("/usr/sbin/sendmail", "/usr/lib/sendmail", "/usr/bin/mailq",
                 "/usr/bin/newaliases", "/usr/bin/mailrelay-sendmail", "/usr/sbin/mailrelayd"):
        assert root.lstat(gone) is None, gone + " is left after dpkg -r"
    for kept in ("/etc/mailrelay/mailrelay.conf", "/etc/mailrelay/smarthost.secret",
                 "/var/spool/mailrelay/queue"):
        assert root.lstat(kept) is not None, kept + " went with dpkg -r"
    assert "mailrelay-sendmail" not in root.run(["dpkg-statoverride", "--list"]).stdout

    root.must(["dpkg", "-P", "mailrelay"])
    after = root.listing()
    added = [p for p in set(after) - set(root.before) if not PURGE_MAY_CHANGE.match(p)]
    removed = [p for p in set(root.before) - set(after) if not PURGE_MAY_CHANGE.match(p)]
    assert not added and not removed, "left behind: %s; gone: %s" % (sorted(added), sorted(removed))
    assert "mailrelay" not in root.must(["debconf-show", "mailrelay"])

"""
`make distcheck` (issue 13, point 2): the tarball builds, passes its unit
tests, installs into a prefix and uninstalls leaving nothing, out of a
read-only source tree.  Its installcheck (Makefile.am, installcheck-local)
shows that the installed programs look for their configuration under the
configured sysconfdir and that the unit starts the daemon of the configured
sbindir.  distcheck runs as root here, configured --disable-system-setup
so that it never creates an account on this machine.

Run from the top of a tree where `autoreconf -fi` has run (scripts/test-all
does); it builds in a temporary directory.
"""

import os
import re
import shutil
import subprocess
import tempfile

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_make_distcheck_passes():
    assert os.path.exists(os.path.join(TOP, "configure")), "run autoreconf -fi first"
    d = tempfile.mkdtemp(prefix="mr-distcheck-", dir="/var/tmp")
    try:
        p = subprocess.run([os.path.join(TOP, "configure"), "-q"], cwd=d, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=300)
        assert p.returncode == 0, p.stdout
        p = subprocess.run(["make", "-j2", "distcheck"], cwd=d, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=900)
        assert p.returncode == 0, "make distcheck failed:\n" + p.stdout[-8000:]
        with open(os.path.join(TOP, "configure.ac")) as f:
            version = re.search(r"AC_INIT\(\[mailrelay\], \[([^]]+)\]", f.read()).group(1)
        inst = os.path.join(d, "mailrelay-" + version, "_inst")
        assert "%s/etc/mailrelay/mailrelay.conf: OK" % inst in p.stdout, p.stdout[-4000:]
        assert "ExecStart=%s/sbin/mailrelayd -f" % inst in p.stdout, p.stdout[-4000:]
        assert "archives ready for distribution" in p.stdout
    finally:
        shutil.rmtree(d, ignore_errors=True)

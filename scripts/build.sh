#!/bin/sh
# Build mailrelay out of tree: scripts/build.sh DIR [configure options...]
# The configuration is looked for in /etc/mailrelay, as installed systems and
# the tests (test_trust_client) expect, whatever the prefix.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
dir=$1; shift
[ -x "$top/configure" ] || (cd "$top" && autoreconf -fi >/dev/null 2>&1)
mkdir -p "$dir"
cd "$dir"
if [ ! -f Makefile ] || [ "$top/configure" -nt Makefile ] || [ "$top/Makefile.am" -nt Makefile ]; then
	"$top/configure" -q --sysconfdir=/etc "$@"
fi
make -s -j"$(nproc)" all

#!/bin/sh
# Install the Debian 12 packages mailrelay needs to build and test.
# Idempotent: does nothing when everything is already installed.
set -eu

PKGS="build-essential autoconf automake pkg-config
libevent-dev libssl-dev libconfuse-dev libcmocka-dev
libcurl4-openssl-dev libjson-c-dev
openssl python3 python3-pytest python3-aiosmtpd python3-cryptography swaks
clang libclang-rt-14-dev valgrind procps groff-base
debhelper lintian debootstrap"

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done

if [ "$(id -u)" -ne 0 ]; then
	SUDO=sudo
else
	SUDO=
fi
if [ -n "$missing" ]; then
	echo "installing:$missing"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# promtool, which test_metrics runs on the exposition, comes only in the
# prometheus package: 96 MB installed, with the server, its web assets and
# their dependencies.  promtool itself is one static Go binary needing
# only libc, so it is taken out of the downloaded .deb (19 MB, once) into
# the tests' cache, and nothing is installed.
PROMTOOL=/var/cache/mailrelay-tests/promtool
if ! "$PROMTOOL" --version >/dev/null 2>&1; then
	echo "fetching promtool from Debian's prometheus package into $PROMTOOL"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	chown _apt "$tmp" 2>/dev/null || true	# apt's download sandbox user writes there
	(cd "$tmp" && { $SUDO apt-get download -qq prometheus 2>/dev/null ||
		{ $SUDO apt-get update -qq && $SUDO apt-get download -qq prometheus; }; })
	dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb | tar -xO ./usr/bin/promtool > "$tmp/promtool"
	chmod 0755 "$tmp/promtool"
	"$tmp/promtool" --version >/dev/null
	$SUDO mkdir -p "$(dirname "$PROMTOOL")"
	$SUDO mv "$tmp/promtool" "$PROMTOOL"
fi

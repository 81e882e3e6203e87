#!/bin/sh
# Install the Debian 12 packages mailrelay needs to build and test.
# Idempotent: does nothing when everything is already installed.
set -eu

PKGS="build-essential autoconf automake pkg-config
libevent-dev libssl-dev libconfuse-dev libsystemd-dev libcmocka-dev
libcurl4-openssl-dev libjson-c-dev
openssl python3 python3-pytest python3-aiosmtpd python3-cryptography swaks
clang libclang-rt-14-dev valgrind procps groff-base
debhelper lintian debootstrap"

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	SUDO=sudo
else
	SUDO=
fi
echo "installing:$missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null

#!/bin/sh
# Check that every man page of mailrelay renders without a single groff
# warning.  Usage: man/check.sh [PAGE...]   (default: every page next to
# this script).  Exits 0 when all pages are clean, 1 when any page warns
# or fails, 77 (the automake "skip" status) when groff is not installed.
set -u

dir=$(cd "$(dirname "$0")" && pwd)

if ! command -v groff >/dev/null 2>&1; then
	echo "check.sh: groff not found; skipping the man page check" >&2
	exit 77
fi

if [ $# -eq 0 ]; then
	set -- "$dir"/*.[1-9]
fi

status=0
for page in "$@"; do
	if [ ! -f "$page" ]; then
		echo "check.sh: $page: no such file" >&2
		status=1
		continue
	fi
	# -ww: all warnings; -z: no output.  groff's exit status does not
	# reflect warnings, so any text on stderr counts as a failure.
	out=$(groff -man -ww -z -Tutf8 "$page" 2>&1)
	rc=$?
	if [ $rc -ne 0 ] || [ -n "$out" ]; then
		echo "FAIL: $page" >&2
		[ -n "$out" ] && printf '%s\n' "$out" >&2
		status=1
	else
		echo "ok: $page"
	fi
done
exit $status

#!/bin/sh
# The include and call graph of daemon/ has no circle beyond the pairs
# named here (see scripts/include-graph): a module calling back into the
# one that drives it is a named pair (delivery <-> delivery_trouble: the
# session struct of delivery_int.h carries failure kinds, and the table
# reads the session; dchild <-> delivery_session: the delivery process
# drives the sessions and stands in for the dispatch they call, as
# dispatch.c does in mailrelayd); any other circle fails the check.
# Exits 0 when clean, 1 otherwise, 77 (automake "skip") without python3.
set -u

dir=$(cd "$(dirname "$0")" && pwd)

if ! command -v python3 >/dev/null 2>&1; then
	echo "check-include-graph.sh: python3 not found; skipping" >&2
	exit 77
fi

exec python3 "$dir/include-graph" \
	--allow queue,bounce \
	--allow listener,smtpd \
	--allow delivery_session,delivery_auth \
	--allow delivery_session,delivery_conn \
	--allow delivery_session,delivery_txn \
	--allow delivery_session,dispatch \
	--allow delivery_session,delivery_trouble \
	--allow delivery,delivery_trouble \
	--allow dchild,delivery_session \
	"$dir/../daemon"

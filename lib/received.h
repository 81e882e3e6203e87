/*
 * received: the Received: trace field (RFC 5321 4.4, RFC 5322 3.6.7) the
 * daemon puts first in every message it accepts from a client, on the
 * listeners and from the maildrop.  A pure function: the caller says who
 * submitted, the text comes back folded and ready to store.
 */
#ifndef MAILRELAY_RECEIVED_H
#define MAILRELAY_RECEIVED_H

#include <sys/types.h>
#include <stddef.h>
#include <time.h>

/* Where a message came from. */
struct received_from {
	int          local;     /* 1: unix socket or maildrop (uid, login); 0: TCP (helo, addr) */
	uid_t        uid;       /* local: the submitting uid, (uid_t)-1 when unknown */
	const char  *login;     /* local: its login name, or NULL */
	const char  *helo;      /* TCP: the HELO/EHLO argument, or NULL */
	const char  *addr;      /* TCP: the client's address, as inet_ntop wrote it */
	const char  *with;      /* the protocol: "ESMTP" (EHLO), "SMTP" (HELO), "local" (maildrop) */
};

/*
 * The whole field, "Received: ...CRLF", as a new string:
 *   Received: from web1 ([192.0.2.1]) by relay.example.com (mailrelay 1.0)
 *           with ESMTP id 6B036B6B9EB3B000 for <ops@example.com>; DATE
 * (a local submission reads "from local (uid 1000 www-data)").  rcpt is
 * given for a message of exactly one recipient, else NULL; when is the
 * acceptance time, written in local time.  Folded between its clauses so
 * that lines stay within 78 octets where the names allow; no line is ever
 * over 998 (every part is bounded: a HELO or address that is not plain
 * text, or too long, is left out).  Never NULL (x* allocation).
 */
char *received_field(const struct received_from *from, const char *hostname,
    const char *version, const char *qid, const char *rcpt, time_t when);

/*
 * How many Received: fields the header section hdr[0..len) holds (CRLF
 * or LF lines; continuation lines are not counted), for hop counting.
 */
size_t received_count(const char *hdr, size_t len);

#endif

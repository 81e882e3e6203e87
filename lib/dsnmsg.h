/*
 * dsnmsg: compose a delivery status notification (RFC 3464 report inside
 * an RFC 6522 multipart/report, for the RFC 3461 SMTP DSN extension).
 *
 * Contract: a pure function of its input.  No I/O, no clock, no globals:
 * the caller passes the time, its host name and the ids.  Deciding who is
 * notified and about which recipients (NOTIFY=, the null sender,
 * double bounces) is the caller's business; this module only writes the
 * message.
 *
 * The message (CRLF lines, none over 998 octets):
 *
 *   From: Mail Delivery System <MAILER-DAEMON@host>
 *   To: the envelope sender being notified
 *   Subject: Undelivered Mail Returned to Sender        (any recipient failed)
 *            Delayed Mail (still being retried)          (else any delayed)
 *            Successful Mail Delivery Report             (delivered/relayed/expanded)
 *   Date, Message-ID <QUEUEID.NOW.KIND@host>, Auto-Submitted: auto-replied,
 *   MIME-Version, Content-Type: multipart/report; report-type=delivery-status
 *
 *   1. text/plain (us-ascii): what happened, per recipient, with the
 *      server's reply quoted and the queue id, for a person to read.
 *   2. message/delivery-status: Reporting-MTA, Original-Envelope-Id,
 *      X-Mailrelay-Queue-ID, Arrival-Date; then one block per recipient:
 *      Original-Recipient (when an ORCPT was given), Final-Recipient,
 *      Action, Status, Remote-MTA, Diagnostic-Code, Last-Attempt-Date,
 *      Will-Retry-Until (delayed only).
 *   3. text/rfc822-headers with the original header section (empty when
 *      the original has none), or with ret_full message/rfc822 with the
 *      whole original (headers only, and the text says so, when it is
 *      larger than full_limit).
 *
 * Everything that comes from outside (replies, addresses, ids, host
 * names) is treated as hostile: control characters (CR and LF included)
 * become spaces, non-ASCII octets become '?' in the report fields and the
 * text, values are folded so that no line exceeds 998 octets, and texts
 * longer than DSN_TEXT_MAX octets are cut (marked with "...").  The
 * returned original passes through linefix when it needs to (bare CR/LF,
 * over-long lines).  The MIME boundary is derived from boundary_seed and
 * varied until it occurs in none of the parts.
 *
 * Diagnostic-Code: a diagnostic that starts like an SMTP reply ("550",
 * "550 5.1.1 ...", "451-...") is given as "smtp; REPLY"; any other text is
 * our own and is given as "X-Mailrelay; TEXT".
 *
 * Status: kept when it is a valid RFC 3463 code whose class fits the
 * action (failed: 4 or 5, delayed: 4, the others: 2); otherwise replaced
 * by 5.0.0, 4.0.0 or 2.0.0.
 *
 * ORCPT and ENVID arrive xtext-encoded (RFC 3461 section 4); the report
 * carries them decoded when that gives printable ASCII, as received
 * (cleaned) otherwise.  A Final-Recipient address with non-ASCII octets
 * (SMTPUTF8) is written as type utf-8 with \x{HEX} escapes (RFC 6533).
 */
#ifndef MAILRELAY_DSNMSG_H
#define MAILRELAY_DSNMSG_H

#include <stddef.h>

#define DSN_TEXT_MAX 2000       /* octets kept of a diagnostic or other text value */

enum dsn_action { DSN_FAILED, DSN_DELAYED, DSN_DELIVERED, DSN_RELAYED, DSN_EXPANDED };

struct dsn_rcpt {
	const char *final;              /* address as delivered or attempted */
	const char *orig;               /* ORCPT as submitted ("rfc822;a@b", xtext) or NULL */
	enum dsn_action action;
	const char *status;             /* "5.1.1"; NULL: derived from the action */
	const char *diagnostic;         /* the remote reply or our own text; may be NULL */
	const char *remote_mta;         /* host name of the server that replied, or NULL */
	long long last_attempt;         /* unix time, 0 = none */
	long long will_retry_until;     /* unix time, delayed only, 0 = none */
};

struct dsn_msg {
	const char *reporting_mta;      /* our host name */
	const char *envid;              /* ENVID (xtext) or NULL */
	const char *queue_id;           /* of the original message */
	long long arrival;              /* unix time the original arrived, 0 = unknown */
	long long now;                  /* unix time of the report */
	int tz_offset_minutes;          /* for the dates: east of UTC */
	const char *to;                 /* the envelope sender being notified */
	const char *from_display;       /* NULL: "Mail Delivery System" */
	const char *from_addr;          /* NULL: MAILER-DAEMON@reporting_mta */
	int ret_full;                   /* RET=FULL: return the whole message, else headers only */
	size_t full_limit;              /* with ret_full: headers only beyond this size; 0 = no limit */
	const struct dsn_rcpt *rcpts;
	size_t nrcpt;
	const char *orig_msg;           /* the original as stored (CRLF lines), may be NULL */
	size_t orig_len;
	const char *boundary_seed;      /* makes the MIME boundary unique (queue id + time) */
	size_t still_pending;           /* other recipients still being tried (not in this report) */
};

/*
 * Build the whole notification (header and body, CRLF lines).  Returns
 * it allocated, its length in *outlen; NULL when there is nothing to send
 * (no recipient, or no one to send it to).  *eightbit (when not NULL) is
 * set when the returned original carries 8-bit octets: the message then
 * needs BODY=8BITMIME (or SMTPUTF8 for 8-bit header fields) on the way out.
 */
char *dsn_compose(const struct dsn_msg *m, size_t *outlen, int *eightbit);

/* Name of an action as written in the Action: field ("failed", ...). */
const char *dsn_action_name(enum dsn_action a);

/*
 * RFC 5322 date-time of a unix time at a zone offset, locale-independent:
 * "Thu, 13 Feb 2025 10:00:00 +0100".  out needs 32 octets.
 */
void dsn_date(char *out, size_t outlen, long long t, int tz_offset_minutes);

#endif

/*
 * smtp_reply: parsing of SMTP server replies (RFC 5321 section 4.2) and of
 * the EHLO capability list.
 *
 * Contract: pure functions, no I/O, no allocation.  Input is hostile: every
 * line is bounded, the code must be three digits 200..599 (1xx is refused:
 * no SMTP command we send allows it), every line of a multiline reply must
 * carry the same code, and the number of lines is bounded.  A reply that
 * breaks any rule is an error, never a crash.
 */
#ifndef MAILRELAY_SMTP_REPLY_H
#define MAILRELAY_SMTP_REPLY_H

#include <stddef.h>

#define SMTP_REPLY_LINE_MAX  1000   /* octets per line without CRLF (RFC 5321 4.5.3.1.5 says 512; be lenient) */
#define SMTP_REPLY_LINES_MAX 100    /* lines per multiline reply */
#define SMTP_REPLY_TEXT_MAX  4096   /* text kept, lines joined by '\n', truncated beyond */

struct smtp_reply {
	int    code;            /* 200..599 once complete, 0 before the first line */
	int    enh[3];          /* enhanced status code (RFC 3463) of the first line, {-1,-1,-1} when absent */
	size_t nlines;          /* lines fed so far */
	int    complete;        /* last line seen ("NNN " or a bare "NNN") */
	size_t textlen;
	char   text[SMTP_REPLY_TEXT_MAX];  /* texts after "NNN-"/"NNN ", enhanced code kept, joined by '\n';
	                                    * NUL-terminated; NUL/CR/LF inside a line are stored as '?' */
};

enum smtp_reply_status {
	SMTP_REPLY_MORE = 0,    /* a continuation line was consumed, feed the next one */
	SMTP_REPLY_DONE = 1,    /* the reply is complete */
	SMTP_REPLY_ERROR = -1   /* malformed; errbuf says why */
};

void smtp_reply_init(struct smtp_reply *r);

/*
 * Feed one line, without its CRLF (a trailing CR left by an LF-only peer is
 * tolerated and dropped).  Returns an enum smtp_reply_status.
 */
int smtp_reply_feed(struct smtp_reply *r, const char *line, size_t len,
    char *errbuf, size_t errlen);

/* Class of a complete reply: 2, 3, 4 or 5. */
static inline int smtp_reply_class(const struct smtp_reply *r) { return r->code / 100; }

/*
 * A one-line, printable rendering for logs and the queue: "250 2.0.0 OK queued"
 * (code, then the text of every line joined by single spaces).  Control
 * characters and non-ASCII bytes are replaced by '?'; output is always
 * NUL-terminated and truncated to outlen-1.
 */
void smtp_reply_summary(const struct smtp_reply *r, char *out, size_t outlen);

/* Capabilities from a 250 reply to EHLO. */
#define SMTP_AUTH_MECHS_MAX 16
struct smtp_caps {
	unsigned pipelining:1, eightbitmime:1, smtputf8:1, dsn:1, starttls:1,
	         enhancedstatuscodes:1, chunking:1, size_present:1, auth_present:1;
	unsigned long long size;          /* SIZE limit, 0 = none advertised or unlimited */
	size_t nauth;
	char   auth[SMTP_AUTH_MECHS_MAX][24]; /* mechanisms, upper-cased, from "AUTH" and "AUTH=" lines */
};

/* Fill caps from a complete 2xx EHLO reply (first line is the greeting, skipped).  Never fails: unknown lines are ignored. */
void smtp_caps_parse(const struct smtp_reply *r, struct smtp_caps *caps);

#endif

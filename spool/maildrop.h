/*
 * maildrop: offline submission.  When mailrelayd cannot be reached, the
 * sendmail client (setgid to the daemon's group) leaves the message in
 * spool_dir/maildrop/ and the daemon imports it when it runs.
 *
 * A drop file:
 *   mailrelay-drop 1
 *   sender<TAB>ADDRESS          (empty for the null sender)
 *   rcpt<TAB>ADDRESS            (one line per recipient, at least one)
 *   body<TAB>7BIT|8BITMIME
 *   smtputf8<TAB>1              (optional: SMTPUTF8 requested)
 *   notify<TAB>NOTIFY           (optional, DSN, for every recipient: NEVER or SUCCESS,DELAY,FAILURE)
 *   ret<TAB>FULL|HDRS           (optional, DSN)
 *   envid<TAB>XTEXT             (optional, DSN)
 *   <empty line>
 *   the message, CRLF line endings, not dot-stuffed
 *
 * It is written as maildrop/.tmp.* (mode 0640, fsynced), renamed to its
 * final name (which does not start with '.'), and the directory fsynced:
 * the daemon only ever sees complete files.  The submitter is the file's
 * owner.
 *
 * The daemon reads every drop as hostile (whoever holds the group, or
 * root with a configuration of their own, can write one): the header is
 * bounded by MAILDROP_HEADER_MAX, the content is read in pieces through
 * maildrop_crlf_feed() and never held whole, and the daemon's own
 * max_message_size, not the client's, decides what is imported.
 */
#ifndef MAILRELAY_MAILDROP_H
#define MAILRELAY_MAILDROP_H

#include <stddef.h>
#include <sys/uio.h>

#define MAILDROP_ADDR_MAX 256       /* longest sender or recipient */
#define MAILDROP_RCPT_MAX 10000     /* most recipients in one drop */
/*
 * The longest header maildrop_parse() accepts: every line is at most
 * MAILDROP_ADDR_MAX + 8 octets ("sender\t", "rcpt\t", the LF), there is
 * one sender and at most MAILDROP_RCPT_MAX recipients, and the other
 * records (first line, body, smtputf8, notify, ret, envid, the empty
 * line) take less than 256 octets together.  A reader holds at most this
 * much of a drop before it knows where the message starts.
 */
#define MAILDROP_HEADER_MAX ((MAILDROP_RCPT_MAX + 1) * (MAILDROP_ADDR_MAX + 8) + 256)

struct maildrop_env {
	char *sender;
	char **rcpts;
	size_t nrcpt;
	int eightbit;
	int smtputf8;
	char notify[32];        /* "" when not given */
	char ret[5];
	char envid[101];        /* xtext */
	char name[64];          /* the drop's name (maildrop_name()), "" for a new one */
};

/*
 * A name for a drop, unique on this machine: seconds, nanoseconds and the
 * process id.  The sendmail client makes it before it talks to the daemon
 * and sends it along (X-MAILDROP=): when the reply to its final dot is
 * lost and it writes the drop, the daemon knows the message it already
 * committed (see daemon/pickup.c).
 */
void maildrop_name(char out[64]);

/* Write a drop durably (named env->name when set); 0, or -1 with errbuf (nothing is left behind). */
int maildrop_write(const char *spool_dir, const struct maildrop_env *env,
    const struct iovec *parts, size_t nparts, char *errbuf, size_t errlen);

/*
 * Parse a drop's header.  On success fills env (free with
 * maildrop_env_free) and *content_off (where the message starts, never
 * beyond MAILDROP_HEADER_MAX).  buf may hold only the start of the drop:
 * a header not complete within len is refused as truncated.  Addresses
 * with control characters, or longer than MAILDROP_ADDR_MAX, are refused.
 */
int maildrop_parse(const char *buf, size_t len, struct maildrop_env *env, size_t *content_off,
    char *errbuf, size_t errlen);
void maildrop_env_free(struct maildrop_env *env);

/*
 * Line ends of drop content made CRLF, for content read in pieces of any
 * size: every LF, CR or CRLF ends a line and becomes CRLF (a CRLF split
 * between two pieces too), and a last line without an end gets one.
 * Start from a zeroed state.  The state also counts the octets produced
 * (what the spool will hold, compared with max_message_size), notes a
 * NUL octet, which no message may carry (RFC 5321 2.3.8), and notes an
 * octet above 127, which makes the message 8BITMIME whatever the drop's
 * "body" line claims (it must never be relayed as 7-bit).
 */
struct maildrop_crlf {
	int cr;                 /* the last octet fed was a CR */
	int open;               /* octets fed since the last line end */
	int nul;                /* a NUL octet was fed */
	int eightbit;           /* an octet above 127 was fed */
	unsigned long long out; /* octets produced so far */
};

/* Normalise p[0..len) into out, which has room for 2 * len octets; returns the octets written. */
size_t maildrop_crlf_feed(struct maildrop_crlf *st, const char *p, size_t len, char *out);
/* The end of the content: writes the CRLF an unterminated last line needs into out (room for 2). */
size_t maildrop_crlf_end(struct maildrop_crlf *st, char *out);

#endif

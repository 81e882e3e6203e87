/*
 * unreach: what a stop knows of the tries at smarthosts that could not
 * be reached.
 *
 * Such a deferral is not written into the message's envelope: it stays in
 * the daemon's memory (daemon/queue.c).  So that a stop (an upgrade,
 * `systemctl restart`) does not lose it, the daemon writes, as it stops,
 * the state of each recipient whose envelope on disk is older than what
 * it knows, all in this one file: a few dozen octets a recipient, where
 * an envelope each would have taken seconds for a large queue.  The next
 * start adds them to the envelopes it loads and removes the file; the
 * listing read from the spool while the daemon is down adds them too.  A
 * crash writes nothing: it loses those counts and replies, never a
 * message.
 *
 * File: spool_dir/unreached, text, written in tmp/, fsynced, renamed; the
 * records in the order of their ids (then recipients), so that a scan of
 * the queue reads it along, without holding it:
 *   mailrelay-unreached 1
 *   tried <TAB> ID <TAB> RCPT <TAB> ATTEMPTS <TAB> WHEN <TAB> KIND <TAB> DSN <TAB> RELAY <TAB> REPLY
 *   ...
 * RCPT is the recipient's index in its envelope, ATTEMPTS its count of
 * attempts, WHEN (unix seconds) the latest of them.  Each of the last four
 * fields is ":" and the string, or "=" for the same string as the record
 * before's.  Unknown record names are ignored; a malformed record, and a
 * last line without its LF, are skipped.
 */
#ifndef MAILRELAY_UNREACH_H
#define MAILRELAY_UNREACH_H

#include <stddef.h>
#include <time.h>

#include "spool.h"

#define UNREACH_FILE "unreached"

struct unreach_rec {
	char id[QID_LEN + 1];
	unsigned rcpt;
	unsigned attempts;
	time_t when;
	const char *kind;           /* each NUL-terminated, without TAB or LF; valid during the call */
	const char *dsn;
	const char *relay;
	const char *reply;
};

/* Called once per record, in file order. */
typedef void (*unreach_fn)(const struct unreach_rec *r, void *arg);

/* Parse a file held in memory.  -1 when it is not one (bad header). */
int unreach_parse(const char *buf, size_t len, unreach_fn fn, void *arg);

/* Remove spool_dir/unreached (once its records are in memory); 0 also when there is none. */
int unreach_remove(struct spool *sp);

/* Writing: begin, add records (in id order), commit (fsync, rename into place). */
struct unreach_out;
struct unreach_out *unreach_begin(struct spool *sp);
void unreach_add(struct unreach_out *o, const struct unreach_rec *r);
int  unreach_commit(struct unreach_out *o);

/*
 * Reading along a scan of the queue (spool_scan() goes in id order, and
 * the file is written in id order): open, apply to each envelope in turn,
 * close.  NULL when the file cannot be read (errno); a cursor with
 * nothing to add when there is none.
 */
struct unreach_cursor;
struct unreach_cursor *unreach_open(struct spool *sp);
/*
 * Add to env what the file knows newer than it (a recipient still pending,
 * with more attempts than env counts): its attempts, latest try, reply,
 * kind and dsn, and one attempt record.  Returns the recipients updated.
 * Records of ids before env's are passed over: call in id order.
 */
size_t unreach_apply(struct unreach_cursor *c, struct spool_env *env);
/* The same for one record (of env's id); 1 when it updated a recipient. */
size_t unreach_rec_apply(const struct unreach_rec *u, struct spool_env *env);
/* The records read so far. */
size_t unreach_read(const struct unreach_cursor *c);
void unreach_close(struct unreach_cursor *c);

#endif

/*
 * ratewin: the rate_limit windows kept across restarts.
 *
 * The daemon counts, per smarthost, the messages started within the last
 * rate_limit period (daemon/shstate.c).  That count lives in memory; this
 * file keeps a copy in the spool, so that a restart (an upgrade, a crash,
 * systemd's Restart=) does not grant a fresh allowance and send a burst
 * the provider then refuses with 4xx.
 *
 * File: spool_dir/rate-window, text, replaced through tmp/ with rename:
 *   mailrelay-rate 1
 *   start <TAB> <smarthost name> <TAB> <unix time in milliseconds>
 *   ...
 * Unknown record names are ignored; a malformed record is skipped.  It is
 * written without fsync: losing the last second of starts in a power cut
 * is the price of not flushing the disk once per message.
 */
#ifndef MAILRELAY_RATEWIN_H
#define MAILRELAY_RATEWIN_H

#include <stddef.h>

#include "spool.h"

#define RATEWIN_FILE "rate-window"

/* Called once per start record, in file order. */
typedef void (*ratewin_fn)(const char *name, long long wall_ms, void *arg);

/* Parse a window file held in memory.  -1 when it is not one (bad header). */
int ratewin_parse(const char *buf, size_t len, ratewin_fn fn, void *arg);

/* Read spool_dir/rate-window; 0 also when there is none, -1 when unreadable. */
int ratewin_load(struct spool *sp, ratewin_fn fn, void *arg);

/* Writing: open, add records, commit (rename into place) or abort. */
struct ratewin_out;
struct ratewin_out *ratewin_begin(struct spool *sp);
void ratewin_add(struct ratewin_out *o, const char *name, long long wall_ms);
int  ratewin_commit(struct ratewin_out *o);

#endif

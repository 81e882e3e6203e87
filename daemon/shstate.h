/*
 * shstate: what the daemon has learnt about each smarthost while running
 * (kept by name across reloads): when it last worked, its last error, and
 * the back-off after failures.  A smarthost that keeps failing is skipped
 * by failover until its back-off ends, instead of being tried once per
 * message.  The back-off follows retry_schedule.
 *
 * It also keeps the sliding window of rate_limit (see dispatch.c): the
 * start times of the messages taken for this smarthost within the last
 * period, so that a reload (which keeps the state by name) does not reset
 * the count; daemon/ratekeep.c keeps a copy in the spool for restarts.
 */
#ifndef MAILRELAY_SHSTATE_H
#define MAILRELAY_SHSTATE_H

#include <time.h>

struct shstate {
	char *name;
	unsigned failures;          /* consecutive */
	time_t down_until;          /* 0: not backed off */
	time_t last_success, last_failure;
	char last_error[300];
	int last_kind;              /* its failure kind (lib/trouble.h), for status's sentence and hint */

	/* rate_limit: start times (monotonic milliseconds) of the messages
	 * taken within the last period, oldest first, in a ring */
	long long *starts;
	unsigned starts_cap, nstarts, starts_head;
	time_t paced_until;         /* wall clock: next message allowed; 0: not pacing */
	unsigned long long paced_gen; /* delivery's bookkeeping: when it last had to wait */
	struct shstate *next;
};

struct shstate *shstate_get(const char *name);
/* Is it backed off now? */
int  shstate_down(const char *name, time_t now);
void shstate_success(const char *name);
void shstate_failure(const char *name, int kind, const char *why, unsigned backoff);
void shstate_free_all(void);

/* Milliseconds on the monotonic clock, the time base of the window. */
long long shstate_now_ms(void);
/*
 * How many milliseconds until one more message may start under `count`
 * messages per `period` seconds; 0: now.  Forgets the starts that left
 * the window.
 */
long long shstate_rate_wait(struct shstate *s, unsigned count, unsigned period, long long now_ms);
/*
 * A message started at now_ms (call only when shstate_rate_wait() said 0,
 * or in time order when restoring: the oldest start then makes room).
 */
void shstate_rate_start(struct shstate *s, unsigned count, long long now_ms);
/* Every start in every window, oldest first per smarthost. */
void shstate_each_start(void (*fn)(const char *name, long long start_ms, void *arg), void *arg);

#endif

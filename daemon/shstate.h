/*
 * shstate: what the daemon has learnt about each smarthost while running
 * (kept by name across reloads): when it last worked, its last error, and
 * the back-off after failures.  A smarthost that keeps failing is skipped
 * by failover until its back-off ends, instead of being tried once per
 * message.  The back-off follows retry_schedule.
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
	struct shstate *next;
};

struct shstate *shstate_get(const char *name);
/* Is it backed off now? */
int  shstate_down(const char *name, time_t now);
void shstate_success(const char *name);
void shstate_failure(const char *name, const char *why, unsigned backoff);
void shstate_free_all(void);

#endif

/*
 * probe: one delivery session of the daemon's own code, run in the calling
 * process, for `mailrelay test`.
 *
 * The session, connection (resolver, Happy Eyeballs, SOCKS5, TLS), AUTH
 * and transaction code are the daemon's, linked into the client: no
 * second SMTP client.  In place of the queue there is one message, written
 * to a private spool made for the run and removed after it; in place of
 * the daemon's log, each step is handed to the caller as it happens
 * (delivery_int.h "enum trace_ev").  Nothing of the daemon's spool, state
 * or counters is touched.
 *
 * With send = 0 (`--probe`) the session ends with QUIT once it is ready
 * for mail (after the greeting, EHLO, TLS and AUTH): nothing is sent.
 */
#ifndef MAILRELAY_PROBE_H
#define MAILRELAY_PROBE_H

#include <stddef.h>

#include "conf/conf.h"
#include "delivery_int.h"

/* One step of the session, as it happens; elapsed: seconds since the run began. */
typedef void (*probe_step_fn)(void *arg, struct dsession *s, enum trace_ev ev, const char *text,
    double elapsed);

struct probe_result {
	int done;                       /* the session ended (not cut by the run's own limit) */
	int interrupted;                /* SIGINT or SIGTERM ended the run (its spool removed all the same) */
	int ready;                      /* it got as far as mail (greeting, EHLO, TLS, AUTH passed) */
	int sent;                       /* the smarthost accepted the message */
	int have_outcome;               /* the recipient got an outcome (else: failed before mail) */
	enum outcome outcome;
	char dsn[16];
	char kind[24];                  /* the failure kind (lib/trouble.h) of the outcome or failure */
	char text[1200];                /* the last reply, or why it failed */
	double elapsed;
};

/*
 * Run one session to smarthost shidx of conf: with send, one message from
 * `from` to `to` (its Subject names the host and time); fn gets each step.
 * limit bounds the whole run in seconds.  conf is the run's, freed at its
 * end.  0, or -1 with err (the run could not start: the TLS or secret
 * files of the configuration, the run's spool).
 */
int probe_run(struct config *conf, size_t shidx, const char *from, const char *to, int send,
    unsigned limit, probe_step_fn fn, void *arg, struct probe_result *res, char *err, size_t errlen);

#endif

/*
 * dispatch: which ready message goes to which smarthost (routes, failover,
 * back-off), at most `concurrency` sessions per smarthost, `rate_limit`.
 * See dispatch.c.
 */
#ifndef MAILRELAY_DISPATCH_H
#define MAILRELAY_DISPATCH_H

/* Register with the queue: dispatch_kick() runs whenever a message is ready. */
void dispatch_init(void);
/* Start sessions for ready messages, as far as concurrency and rate_limit allow. */
void dispatch_kick(void);
/* Stop the rate_limit timer and save the windows (shutdown). */
void dispatch_shutdown(void);

#endif

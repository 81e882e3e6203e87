/*
 * delivery: the client side of SMTP towards the smarthost(s).
 *
 * One `struct dsession` per connection, an explicit state machine
 * (DELIVERY_STATES below: names and per-state timeouts from one table),
 * connection reuse for every ready message, PIPELINING when offered, at
 * most `concurrency` sessions.  Outcomes are handed to queue_outcome().
 */
#ifndef MAILRELAY_DELIVERY_H
#define MAILRELAY_DELIVERY_H

/* Also registers dispatch with the queue (dispatch_init()). */
void delivery_init(void);
/* Abort every session without recording outcomes (shutdown). */
void delivery_shutdown(void);
/* Number of open sessions. */
unsigned delivery_sessions(void);

#endif

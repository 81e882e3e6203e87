/*
 * queue_one: the queue as the delivery code sees it (queue.h's functions,
 * and ratekeep's), for a delivery session run outside the daemon:
 * `mailrelay test` (probe.c) and the session harness of the unit tests and
 * the fuzz target.  Linked instead of queue.c and ratekeep.c, with the
 * daemon's globals (D).
 *
 * One message at a time, never "ready" for dispatch (the caller starts its
 * session with session_start()); each outcome the session records is
 * handed to queue_one_outcome, and each time the message is given back is
 * counted in queue_one_released.  Nothing is retried or written.
 */
#ifndef MAILRELAY_QUEUE_ONE_H
#define MAILRELAY_QUEUE_ONE_H

#include <stddef.h>

#include "queue.h"

extern void (*queue_one_outcome)(struct qmsg *m, size_t idx, enum outcome o, const char *dsn,
    const char *kind, const char *reply);
extern unsigned queue_one_released;

#endif

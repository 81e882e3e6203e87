/*
 * delivery_trouble: the daemon's side of the failure-kind table
 * (lib/trouble.h): the one recorder of the delivery code's outcomes, the
 * counters and the smarthost back-off.  Call sites name a kind; they do
 * not pick an outcome or a status code of their own, and nothing decides
 * by matching log text (a bounce's status comes with the recipient, see
 * spool.h "rstatus", and so does the kind, "rkind").
 */
#ifndef MAILRELAY_DELIVERY_TROUBLE_H
#define MAILRELAY_DELIVERY_TROUBLE_H

#include <stddef.h>

#include "trouble.h"

struct dsession;
struct qmsg;
struct relay_info;
/*
 * The one recorder of the delivery code's outcomes: recipient idx of m
 * gets what kind k (the reply's class cls, 0 when none) says, with the
 * kind's status (or the reply's), in session s.
 */
void trouble_record(struct dsession *s, struct qmsg *m, size_t idx, enum trouble_kind k, int cls,
    const char *text);
/* The same with the relay and connection as ri says (a session that has ended). */
void trouble_record_ri(const struct relay_info *ri, struct qmsg *m, size_t idx, enum trouble_kind k,
    int cls, const char *text);
/* Session s failed with kind k: bump the kind's counter of `mailrelay status`. */
void trouble_count(const struct dsession *s, enum trouble_kind k);
/* s's smarthost failed (kind k) before any transaction: backed off for its next retry step. */
void trouble_smarthost_failed(const struct dsession *s, enum trouble_kind k, const char *why);
/* s's smarthost got through to mail: its back-off ends. */
void trouble_smarthost_ok(const struct dsession *s);

#endif

/*
 * outcome: what became of one recipient in one attempt.  Its own header
 * so that the failure table (delivery_trouble.h) can name outcomes
 * without depending on the queue that records them.
 */
#ifndef MAILRELAY_OUTCOME_H
#define MAILRELAY_OUTCOME_H

enum outcome { OUTCOME_SENT, OUTCOME_DEFERRED, OUTCOME_BOUNCED };

#endif

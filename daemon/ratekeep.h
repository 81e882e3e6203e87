/*
 * ratekeep: the rate_limit windows (shstate) saved in the spool, so that a
 * restart does not reset them (spool/ratewin.h has the file).
 */
#ifndef MAILRELAY_RATEKEEP_H
#define MAILRELAY_RATEKEEP_H

/* At start, before delivery begins: the starts still inside each window. */
void ratekeep_load(void);
/* A message was started: save within a second. */
void ratekeep_touch(void);
/* Save now when something changed (shutdown), and stop the timer. */
void ratekeep_flush(void);

#endif

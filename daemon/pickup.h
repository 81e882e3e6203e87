/*
 * pickup: imports what the sendmail client left in spool_dir/maildrop/
 * while the daemon could not be reached — at start, when inotify says a
 * file arrived, and once a minute as a fallback.
 */
#ifndef MAILRELAY_PICKUP_H
#define MAILRELAY_PICKUP_H

int  pickup_start(void);
void pickup_stop(void);

#endif

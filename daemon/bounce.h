/*
 * bounce: delivery status notifications for failed recipients (bounce.c).
 */
#ifndef MAILRELAY_BOUNCE_H
#define MAILRELAY_BOUNCE_H

#include "spool/spool.h"

#define ADDR_LEN_MAX 512

/*
 * Every recipient of env is final and none is `reporting`: queue the
 * notification its unreported failures call for, then remove the message
 * from the spool (once the notification is on disk).  env is only read,
 * during the call: when the notices being written are at their bound
 * (bounce.c), a copy waits for its turn.
 */
void bounce_finish(const struct spool_env *env);
/* Drop the waiting final notices (their messages stay on disk, finished, for the next start). */
void bounce_shutdown(void);

/*
 * Some recipients of env are still pending: queue one notice for the
 * failed (and relayed) ones not yet reported, and mark them `reporting`.
 * When the notice is on disk (or could not be written) the queue hears of
 * it through queue_reported().
 */
void bounce_report(struct spool_env *env);

/*
 * delay_warning: env has been queued that long and some recipients are
 * still pending: queue one "delayed" notice for those whose NOTIFY allows
 * it (no NOTIFY does).  Returns 1 when the matter is settled (sent, or
 * nobody to tell), 0 when it should be tried again later.
 */
int  bounce_delay(const struct spool_env *env);

#endif

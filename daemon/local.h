/*
 * local: what happens to recipients without a domain — aliases_file,
 * then admin_address (SPEC "Addresses").  The aliases file is re-read when
 * it changes (checked at each use) and at reload.
 */
#ifndef MAILRELAY_LOCAL_H
#define MAILRELAY_LOCAL_H

#include "spool/spool.h"

/* Append to env the envelope recipients for one submitted recipient, with orig = rcpt. */
void local_add_rcpt(struct spool_env *env, const char *rcpt);
/* Load (or reload if changed) the aliases now: at start and on SIGHUP, so problems are logged early. */
void local_load(void);
void local_free(void);

#endif

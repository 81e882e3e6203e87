/*
 * qprint: the queue listing shared by `mailrelay queue`, `mailq` and
 * `sendmail -bp`, read from the spool directly.
 */
#ifndef MAILRELAY_QPRINT_H
#define MAILRELAY_QPRINT_H

#include "conf/conf.h"

/* Print the queue (text like Postfix's mailq, or the JSON of SPEC.md). Returns an exit code. */
int queue_print(const char *progname, const struct config *conf, int json);

#endif

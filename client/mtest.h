/*
 * mtest: `mailrelay test` — the "send test email" button for the whole
 * machine.  One real message (or, with --probe, everything up to AUTH)
 * through a configured smarthost now, from this process, with the
 * daemon's own delivery code (daemon/probe.h); each step printed with its
 * outcome and time, and a failure explained in one sentence with what to
 * try, from the failure-kind table (lib/trouble.h) and the table of
 * replies (lib/explain.h).
 */
#ifndef MAILRELAY_MTEST_H
#define MAILRELAY_MTEST_H

/* argv[0] is "test"; path: the configuration (NULL: the default).  Returns the exit status. */
int cmd_test(const char *path, int argc, char **argv);

#endif

/*
 * cfgcheck: `mailrelay check-config` after the file has loaded: what the
 * daemon would refuse at start or reload, found with the daemon's own
 * loader, and what would keep mail from leaving, without sending any.
 *
 *   1. runconf_new(), as the daemon calls it at start: secrets read under
 *      their permission rules, OAuth2 credentials, CA files parsed, the
 *      client certificate and key loaded and matched (daemon/runconf.c).
 *   2. Run as root with a `user` other than root: the same again in a
 *      child that has dropped to that user as the daemon does, because
 *      every reload reads those files as that user; and the files the
 *      daemon opens only as that user (log_file, tls_ca_path, aliases_file).
 *   3. Certificates named by tls_client_cert, tls_ca_file and an OAuth2
 *      client_certificate: expired is an error, expiring within
 *      CFGCHECK_EXPIRY_DAYS a warning.
 *   4. Each smarthost's host (or its proxy's) resolves: a warning when it
 *      does not, saying whether the name is unknown or DNS unreachable
 *      (a user without a passwd entry is a warning too).
 *   5. An inline password in a file others may read: a warning.
 *   6. conf/confcheck.h: placeholders and weakened security.
 *   7. The aliases file as the daemon parses it: what it skips and its
 *      loops, as warnings.
 *
 * Output: errors on stderr, "mailrelay: FILE:LINE: KEY: why"; warnings on
 * stdout, "FILE:LINE: warning: KEY: why" (LINE left out for a key the
 * file does not set); then "FILE: OK" on stdout when there is no error.
 */
#ifndef MAILRELAY_CFGCHECK_H
#define MAILRELAY_CFGCHECK_H

#include "conf/conf.h"

#define CFGCHECK_EXPIRY_DAYS 30

/* Takes the config (frees it).  Returns the exit code: 0, or 78 (EX_CONFIG) after an error. */
int cfgcheck_run(struct config *c);

#endif

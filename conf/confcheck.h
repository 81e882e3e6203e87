/*
 * confcheck: the judgements on a loaded configuration that need nothing
 * but the configuration itself: values the loader accepts because they
 * are well formed, but that will not deliver mail (a placeholder host
 * such as mail.example.com) or that weaken what the daemon promises (a
 * password that may cross the network in clear, an unverified
 * certificate, local mail with nowhere to go).
 *
 * `mailrelay check-config` prints them next to what it finds on disk and
 * in DNS (client/cfgcheck.c).  They are kept out of conf_load() on
 * purpose: the daemon must keep starting with them (a fresh install with
 * the sample's placeholder still accepts and keeps mail, SPEC "Config
 * file"), while check-config tells the admin before any mail waits.
 *
 * Which is which, and why:
 *   error    a smarthost host under example.com, example.net or
 *            example.org (RFC 2606: reserved for documentation, nothing
 *            there accepts mail): every message would wait and then bounce
 *   warning  host = localhost with a username (a placeholder copied from
 *            an application's settings page, or a local proxy: both exist);
 *            tls = disabled or opportunistic towards a host off this
 *            machine with a username; tls_verify = no (unless pinned with
 *            tls_fingerprint); auth_allow_plaintext = yes; admin_address
 *            not set; a hostname without a dot; no smarthost at all
 */
#ifndef MAILRELAY_CONFCHECK_H
#define MAILRELAY_CONFCHECK_H

#include "conf.h"

enum confcheck_level { CONFCHECK_WARNING = 0, CONFCHECK_ERROR };

/*
 * One finding: line is where key was set (0 when it was not: a default),
 * msg is "why" without the "FILE:LINE: KEY: " prefix, ending with
 * "(smarthost NAME)" for a smarthost's key, as runconf's errors do.
 */
typedef void confcheck_fn(void *arg, enum confcheck_level level, unsigned line,
    const char *key, const char *msg);

/* Report every finding of the list above, in the file's order of sections. */
void confcheck_config(const struct config *c, confcheck_fn *fn, void *arg);

/* A documentation name (RFC 2606): example.com/.net/.org or a name under them. */
int confcheck_is_placeholder(const char *host);
/* localhost, 127.0.0.0/8 or ::1: a host on this machine. */
int confcheck_is_loopback(const char *host);

#endif

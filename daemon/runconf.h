/*
 * runconf: a loaded configuration together with what is built from it
 * (one TLS context per smarthost, the secrets and OAuth2 credentials read
 * as root), reference-counted so that a reload can replace it while
 * delivery sessions still hold the old one.
 */
#ifndef MAILRELAY_RUNCONF_H
#define MAILRELAY_RUNCONF_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "conf/conf.h"
#include "oauth2_proto.h"

struct runconf {
	struct config *conf;
	SSL_CTX **tls;          /* per smarthost; NULL where tls = disabled */
	char **secret;          /* per smarthost: password or password_file's; NULL otherwise */
	char **cmd_secret;      /* per smarthost: password_command's last answer, until rejected */
	struct oauth2_creds **oauth2; /* per smarthost with an oauth2 section: its credentials; else NULL */
	unsigned refs;
};

/*
 * Build from a loaded config (taking ownership of it on success).  On
 * failure returns NULL with "FILE:LINE: KEY: why" in errbuf; conf is then
 * still the caller's.
 */
struct runconf *runconf_new(struct config *conf, char *errbuf, size_t errlen);
struct runconf *runconf_ref(struct runconf *rc);
void runconf_unref(struct runconf *rc);

#endif

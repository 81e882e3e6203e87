/*
 * listener: the sockets of `listen` (unix submit socket, loopback TCP),
 * bound before privileges are dropped; `allow` checked at connect.
 */
#ifndef MAILRELAY_LISTENER_H
#define MAILRELAY_LISTENER_H

#include <stddef.h>

#include "conf/conf.h"

int  listeners_open(const struct config *conf, char *errbuf, size_t errlen);
/* Stop accepting (shutdown). */
void listeners_close(void);
/* Path of the first unix listener (to chown it), or NULL. */
const char *listeners_unix_path(void);

#endif

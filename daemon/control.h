/*
 * control: the control socket (see control.c and lib/ctlproto.h).
 */
#ifndef MAILRELAY_CONTROL_H
#define MAILRELAY_CONTROL_H

#include <stddef.h>

#include "conf/conf.h"

/* Listen on conf->control_socket (before privileges are dropped); -1 with errbuf. */
int  control_open(const struct config *conf, char *errbuf, size_t errlen);
/* Stop listening and drop every control connection. */
void control_close(void);

#endif

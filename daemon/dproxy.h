/*
 * dproxy: mailrelayd's side of its delivery process (see dproxy.c).
 * delivery.h's functions, and the sessions of delivery_int.h as
 * dispatch.c sees them, are implemented there; these are the rest.
 */
#ifndef MAILRELAY_DPROXY_H
#define MAILRELAY_DPROXY_H

#include <stddef.h>

/* Reap the delivery process once it has exited (SIGCHLD). */
void dproxy_reap(void);
struct config;
/*
 * Load configuration c as the delivery process would (mailrelay-deliver
 * --check: TLS files, keys, password_file), as the user running now; -1
 * with its one-line reason in err when it cannot.
 */
int  dproxy_check(const struct config *c, char *err, size_t errlen);
/* The configuration was reloaded: the running delivery process reads it too. */
void dproxy_reload(void);
/* Free what is kept for oauth2_status() (shutdown). */
void dproxy_free(void);

#endif

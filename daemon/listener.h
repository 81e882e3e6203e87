/*
 * listener: the sockets of `listen` (unix submit socket, loopback TCP),
 * bound before privileges are dropped; `allow` checked at connect.
 *
 * Also the two guards every socket a local user may open shares with the
 * control socket: the accept guard (what to do when accept() fails for
 * want of descriptors or memory) and the log gate (at most one log line
 * per interval for an event a peer can repeat at will).
 */
#ifndef MAILRELAY_LISTENER_H
#define MAILRELAY_LISTENER_H

#include <stddef.h>
#include <time.h>

#include <event2/listener.h>

#include "conf/conf.h"

int  listeners_open(const struct config *conf, char *errbuf, size_t errlen);
/* Stop accepting (shutdown). */
void listeners_close(void);
/* Path of the first unix listener (to chown it), or NULL. */
const char *listeners_unix_path(void);

/*
 * accept() failing with EMFILE, ENFILE, ENOBUFS or ENOMEM leaves the
 * connection in the kernel's backlog and the listening socket readable:
 * retrying at once spins the event loop and floods the log.  The guard
 * stops accepting on its socket for ACCEPT_PAUSE_MS, then tries again
 * (the backlog waits meanwhile, so a client is served as soon as a
 * descriptor is free), and logs through one log gate for all sockets.
 */
#define ACCEPT_PAUSE_MS 250
struct accept_guard;
struct accept_guard *accept_guard_new(struct evconnlistener *lev, const char *desc);
void accept_guard_free(struct accept_guard *g);
/* Call from the listener's error callback. */
void accept_guard_error(struct accept_guard *g);

/*
 * A log line for a repeatable event, at most once per LOG_GATE_SECS:
 * log_gate_pass() counts one event and returns 1 when its line is due,
 * with *n the number of events it stands for (those kept quiet since the
 * previous line, and this one).
 */
#define LOG_GATE_SECS 10
struct log_gate {
	time_t last;                /* when the last line was logged */
	unsigned long quiet;        /* events since then, not logged */
};
int log_gate_pass(struct log_gate *g, unsigned long *n);

#endif

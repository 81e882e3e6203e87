/*
 * daemon: state shared by the modules of mailrelayd.  One process, one
 * libevent loop; the only other thread is the spool committer (commit.c).
 */
#ifndef MAILRELAY_DAEMON_H
#define MAILRELAY_DAEMON_H

#include <event2/event.h>
#include <event2/dns.h>

#include "conf/conf.h"
#include "spool/spool.h"

struct daemon {
	struct event_base *base;
	struct evdns_base *dns;
	struct runconf *rc;         /* current config and its TLS contexts; replaced on SIGHUP */
	struct config *conf;        /* = rc->conf */
	const char *conf_path;      /* as given with -c, or NULL */
	struct spool spool;
	int foreground;
	int debug;
	int shutting_down;
	unsigned qid_seq;
};

extern struct daemon *D;

/* A new, unique queue id (sortable by arrival). */
void daemon_new_qid(char out[QID_LEN + 1], struct timeval *arrival);

#endif

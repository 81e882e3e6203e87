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

/* Counters since start, for `mailrelay status`. */
struct daemon_stats {
	unsigned long long accepted;    /* messages queued from clients and the maildrop */
	unsigned long long notices;     /* delivery status notifications queued */
	unsigned long long sent, deferred, bounced;     /* recipient outcomes */
	unsigned long long tls_failures, auth_failures; /* sessions that failed there */
};

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
	time_t started;
	/*
	 * The configuration running: when it was loaded and the file's mtime
	 * then; and the last reload refused since (0: none), with why, so
	 * that `mailrelay status` says the file is newer than what runs.
	 */
	time_t conf_loaded, conf_mtime;
	time_t reload_refused;
	char reload_refused_why[1024];
	struct daemon_stats stats;
};

extern struct daemon *D;

#endif

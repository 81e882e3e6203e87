/*
 * session_harness: one delivery session of the real daemon code
 * (daemon/delivery*.c, dispatch.c) driven in-process, without the daemon.
 *
 *   - the smarthost is a scripted server on 127.0.0.1 in the same event
 *     loop: a greeting, then one reply per command line it reads (after
 *     354, one for the whole body at its final dot); HX_TLS after a reply
 *     makes it start TLS (a self-signed certificate made at setup), so
 *     STARTTLS runs for real;
 *   - the configuration may change between runs (hx_config(): TLS
 *     policies, AUTH, a proxy, another host or port), as a reload does;
 *   - the clock is fake (session_clock_hook): each state's deadline is
 *     recorded, and hx_fire() makes it pass at once;
 *   - the queue is a stub holding one message: each outcome the session
 *     records is kept per recipient for the test to check.
 *
 * Used by tests/unit/test_session.c and tests/fuzz/fuzz_session.c.
 */
#ifndef MAILRELAY_SESSION_HARNESS_H
#define MAILRELAY_SESSION_HARNESS_H

#include <stddef.h>

#include "daemon/delivery_int.h"

#define HX_RCPTS_MAX 8
#define HX_STEPS_MAX 64

/* A scripted reply: text sent as it is (CRLF added per line by the script writer). */
#define HX_STALL  "\001stall"   /* send nothing: the session waits (fire the deadline) */
#define HX_CLOSE  "\001close"   /* close the connection */
#define HX_TLS    "\001tls"     /* after the reply before it: TLS from here on (server side) */

struct hx_outcome {
	int n;                          /* outcomes recorded for this recipient */
	enum outcome o;
	char dsn[16];
	char kind[24];                  /* the failure kind's name (lib/trouble.h) */
	char text[400];
};

struct hx {
	/* the script: replies[0] is the greeting */
	const char *replies[HX_STEPS_MAX];
	size_t nreplies;
	size_t next;                    /* the next reply to send */
	char commands[HX_STEPS_MAX][128];   /* what the server read, in order */
	size_t ncommands;
	int in_data;                    /* reading the body */
	int server_closed;

	/* the fake clock: the deadline armed last, per state */
	unsigned armed[DS_QUIT + 1];
	int armed_set[DS_QUIT + 1];
	struct dsession *session;       /* the session whose deadline is armed */
	int deadline_pending;

	/* the message */
	size_t nrcpt;
	struct hx_outcome out[HX_RCPTS_MAX];
	int released;

	unsigned quiet_ms;              /* hx_run(): this long without a command: waiting (default 100) */

	/* the next message (set before hx_start(); cleared by hx_end()) */
	struct hx_opts {
		unsigned age;           /* arrived this many seconds ago */
		int utf8_rcpt;          /* the first recipient's address is not ASCII */
		int eightbit;           /* 8-bit content, declared */
		int no_content;         /* its content file is missing */
		int long_rcpt;          /* the first recipient's address is too long to send */
		int big;                /* a body of many chunks (it is still going out after 354) */
	} opt;
};

extern struct hx HX;

/*
 * Once per process: the event loop, a spool in a temporary directory,
 * the configuration (extra: more smarthost keys, one per line, or NULL).
 * Returns 0, or -1 with a message on stderr.
 */
int  hx_setup(const char *extra);
/*
 * A new configuration, as a reload: smarthost "main" at host:port (NULL,
 * 0: the scripted server) with the extra keys; 0, or -1 with a message.
 */
int  hx_config(const char *host, unsigned port, const char *extra);
/* A port on 127.0.0.1 where nothing listens: a connection is refused. */
unsigned hx_closed_port(void);
/* The scripted server's port (for a proxy = socks5://127.0.0.1:PORT). */
unsigned hx_port(void);
/* A new run: nrcpt recipients, the script (NULL-terminated; replies[0] is the greeting). */
void hx_start(size_t nrcpt, const char *const *replies);
/*
 * Run the loop until the session is gone, or its deadline is pending; 0,
 * or -1 after 10,000 rounds of the loop (about 5 s when nothing is ready).
 */
int  hx_run(void);
/* Make the pending deadline pass (the fake clock), then run on. */
int  hx_fire(void);
/* Every recipient has exactly one outcome, the session is gone and the message given back. */
int  hx_all_decided(void);
/* On stderr: the run as the server saw it and what the session decided (for a failed check). */
void hx_report(const char *why);
/* Drop what is left of a run (the server's connection). */
void hx_end(void);
/* The scripted server closes its connection now (an idle timeout of its own). */
void hx_server_close(void);

#endif

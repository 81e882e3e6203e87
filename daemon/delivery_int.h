/*
 * delivery_int: the delivery session shared by the files of delivery.h's
 * list (the session core, the transaction, the connection, AUTH,
 * dispatch and the failure table).  Not for other modules.
 */
#ifndef MAILRELAY_DELIVERY_INT_H
#define MAILRELAY_DELIVERY_INT_H

#include <sys/queue.h>

#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/ssl.h>

#include "delivery_trouble.h"
#include "dotstuff.h"
#include "log.h"
#include "sasl.h"
#include "queue.h"
#include "runconf.h"
#include "smtp_reply.h"
#include "tls.h"
#include "util.h"

/*
 * Which limit bounds a state (mailrelay.conf(5) says the same):
 *   DL_NONE      none of ours (the resolver's own timeouts)
 *   DL_CONNECT   connect_timeout, for the whole connect phase: every
 *                address together, not each one
 *   DL_REPLY     timeout, for the complete reply (a greeting or a reply
 *                trickled byte by byte gets no longer)
 *   DL_PROGRESS  timeout, for each step of progress: the body must drain
 *                below the low-water mark again within it
 *   DL_DATA      data_timeout, for the reply to the final dot (RFC 5321
 *                4.5.3.2.6: the server may be scanning the content;
 *                cutting it off makes the next attempt a duplicate)
 *   DL_SECRET    timeout plus a margin: password_command's own timeout
 *                (the same value) fires first and says why
 */
enum deadline { DL_NONE, DL_CONNECT, DL_REPLY, DL_PROGRESS, DL_DATA, DL_SECRET, DL_IDLE };

/*
 * name, what we are doing (for error messages), the deadline that bounds
 * it.  One table, so names, phrases and deadlines cannot drift apart.
 */
#define DELIVERY_STATES(X)							\
	X(RESOLVE,   "looking up the host name",			DL_NONE)	\
	X(CONNECT,   "connecting",					DL_CONNECT)	\
	X(SOCKS,     "talking to the SOCKS5 proxy",			DL_REPLY)	\
	X(GREETING,  "waiting for the greeting",			DL_REPLY)	\
	X(EHLO,      "sending EHLO",					DL_REPLY)	\
	X(HELO,      "sending HELO",					DL_REPLY)	\
	X(STARTTLS,  "sending STARTTLS",				DL_REPLY)	\
	X(HANDSHAKE, "performing the TLS handshake",			DL_REPLY)	\
	X(SECRET,    "running password_command",			DL_SECRET)	\
	X(AUTH,      "authenticating",					DL_REPLY)	\
	X(ENVELOPE,  "sending MAIL/RCPT/DATA",				DL_REPLY)	\
	X(BODY,      "sending the message body",			DL_PROGRESS)	\
	X(DOT,       "waiting for the reply to the end of data",	DL_DATA)	\
	X(RSET,      "sending RSET",					DL_REPLY)	\
	X(IDLE,      "waiting for the next message",			DL_IDLE)	\
	X(QUIT,      "sending QUIT",					DL_REPLY)

enum dstate {
#define X(name, what, deadline) DS_##name,
	DELIVERY_STATES(X)
#undef X
};

extern const char *const dstate_what[];
extern const char *const dstate_name[];
extern const enum deadline dstate_deadline[];

/* Where a recipient of the current transaction stands. */
enum rcstate {
	RC_WAITING = 0,                 /* no reply to its RCPT yet (or RCPT not sent yet) */
	RC_ACCEPTED,                    /* 2xx to RCPT: its outcome comes with the end of DATA */
	RC_DECIDED,                     /* its outcome is recorded */
	RC_LATER                        /* 452 after others were accepted: for the next transaction */
};

/* Why a step failed, as delivery_auth.c and delivery_conn.c tell the core. */
struct dfailure {
	enum trouble_kind kind;
	char why[1600];
};

#define CONN_ATTEMPTS_MAX 8     /* connection attempts in flight at once, per session */

/* One connection attempt of the connect phase (delivery_conn.c). */
struct conn_attempt {
	struct dsession *s;
	struct bufferevent *bev;
	SSL *ssl;                       /* owned by bev once made */
	struct evutil_addrinfo *addr;
	char relay[320];                /* "host[addr]:port" */
};

struct dsession {
	struct bufferevent *bev;
	enum dstate state;
	struct event *deadline_ev;      /* the state's deadline (see enum deadline) */
	struct timeval connect_until;   /* monotonic: the end of the connect phase */
	int dead;                       /* free at the end of the top-level callback */
	int nested;                     /* >0: inside session_io() or session_start(): not freed yet */
	int connected;

	/* the configuration this session started with; a reload does not pull it away */
	struct runconf *rc;
	const struct smarthost_conf *sh;
	size_t shidx;
	char relay[320];                /* "host[addr]:port" once connected, "host:port" before */

	/* connecting: the host's addresses, raced (see delivery_conn.c) */
	struct evdns_getaddrinfo_request *dnsreq;
	struct evutil_addrinfo *addrs;  /* all of them, IPv6 and IPv4 interleaved */
	struct evutil_addrinfo *addr;   /* the next one to try */
	struct evutil_addrinfo *won;    /* the one connected to */
	struct conn_attempt *attempts[CONN_ATTEMPTS_MAX];
	size_t nattempts;               /* in flight */
	struct event *attempt_ev;       /* the head start of the next attempt */
	char last_error[300];
	int socks_step;                 /* 0 greeting sent, 1 CONNECT sent */

	/* TLS */
	SSL *ssl;                       /* owned by the bufferevent once wrapped */
	int tls_active;                 /* mail may go over this TLS connection */
	int tls_done;                   /* a handshake completed (tlsv is filled in) */
	int plaintext_retry;            /* opportunistic: STARTTLS failed once, now without */
	struct tls_verdict tlsv;

	/* AUTH */
	enum auth_mech auth_mech;
	struct sasl sasl;
	struct secret_job *secret_job;
	struct oauth2_wait *oauth2_wait; /* asking daemon/oauth2.c for a token */
	unsigned long oauth2_gen;       /* the token sent, for oauth2_rejected() */
	int oauth2_retried;             /* a rejected token was replaced once in this session */
	int authenticated;

	struct smtp_caps caps;
	struct smtp_reply reply;

	/* the current transaction */
	struct qmsg *msg;
	struct qmsg *ahead;             /* the next message, given ahead (delivery process only: dlink.h) */
	size_t *rc_idx;                 /* indexes of the recipients in this transaction */
	size_t nrc;
	enum rcstate *rc_st;            /* where each of them stands */
	size_t naccepted;
	size_t *carry;                  /* between transactions: the RC_LATER ones, for the next */
	size_t ncarry;
	size_t reply_idx;               /* which envelope reply comes next */
	size_t sent_idx;                /* how many envelope commands were sent */
	int mail_failed;
	int body_fd;
	unsigned long long body_left;   /* octets of stored content still to read (the tail is not content) */
	struct dot_encoder enc;
	long long size_delta;           /* octets added to the stored content (add_header, rewriting) */
	int need_smtputf8;              /* SMTPUTF8 on MAIL when the smarthost offers it */
	char *mail_from;                /* MAIL FROM when not the stored sender (rewrite_from = always) */
	char *hdr_new;                  /* header section sent instead of the stored one ... */
	size_t hdr_newlen, hdr_skip;    /* ... which is this long */
	unsigned sid;                   /* its name between mailrelayd and mailrelay-deliver (dlink.h) */
	unsigned messages;              /* transactions on this connection */
	int reused;                     /* taken out of IDLE, no reply to its MAIL yet (session_resume()) */
	enum trouble_kind fail_kind;    /* why it failed, once session_fail() said so */
	int failed;

	TAILQ_ENTRY(dsession) entry;
};

/* delivery_session.c */
void session_enter(struct dsession *s, enum dstate st);
/*
 * The session failed with kind k (see delivery_trouble.h): `why` is
 * logged; what was not decided is deferred, or before the first
 * transaction the smarthost is backed off and its messages fail over.
 */
void session_fail(struct dsession *s, enum trouble_kind k, const char *why);
void session_close(struct dsession *s);
/* At the end of a top-level callback: free s if it ended (the only place it is freed). */
void session_top(struct dsession *s);
/*
 * Arm the current state's deadline from the table (session_enter() does);
 * again after each complete reply and each step of body progress.  Past
 * it, as a timeout of the connection (session_io()).
 */
void session_timeouts(struct dsession *s);
/*
 * The test seam for the clock (tests/unit/session_harness.c): when set,
 * each deadline is handed to it (secs, 0 for none) instead of arming the
 * timer, and the test calls session_deadline_passed() when its fake clock
 * gets there.  NULL in the daemon.
 */
extern void (*session_clock_hook)(struct dsession *s, unsigned secs);
/*
 * What a session does, step by step, for `mailrelay test` (probe.c): each
 * event is handed to the hook with its text; NULL in the daemon, where
 * the log says the same at debug level.
 */
enum trace_ev {
	TR_RESOLVED,                    /* the addresses found, space-separated */
	TR_CONNECTING,                  /* an attempt: "host[addr]:port" */
	TR_CONNECT_FAILED,              /* an attempt failed: why */
	TR_CONNECTED,                   /* the connection mail goes over: its relay */
	TR_TLS,                         /* a handshake is done: s->tlsv and s->ssl say how */
	TR_SENT,                        /* a command line (a secret masked) */
	TR_REPLY,                       /* a complete reply, on one line */
	TR_FAILED,                      /* the session failed: why; s->fail_kind says the kind */
	TR_NOTE,                        /* (probe.c only, s NULL) what a library said: a name server failed */
	TR_OUTCOME                      /* (probe.c only, s NULL) the recipient's outcome is recorded: text */
};
extern void (*session_trace_hook)(struct dsession *s, enum trace_ev ev, const char *text);
void session_trace(struct dsession *s, enum trace_ev ev, const char *text);
/* The current state's deadline passed: as a timeout of the connection; may free s. */
void session_deadline_passed(struct dsession *s);
/* Seconds left of the connect phase (at least 1); the phase starts on the first call after a reset. */
unsigned session_connect_left(struct dsession *s);
/* The bufferevent callbacks of a session's connection: all go to session_io(). */
void session_on_read(struct bufferevent *bev, void *arg);
void session_on_write(struct bufferevent *bev, void *arg);
void session_on_event(struct bufferevent *bev, short what, void *arg);
/*
 * Send one command line; -1 when it cannot be (the session has failed:
 * send nothing more and return).
 */
int  session_send(struct dsession *s, const char *fmt, ...) PRINTFLIKE(2, 3);
/* The transaction is over: the next message for this connection, or QUIT. */
void session_next_message(struct dsession *s);
/* A transaction is over (and RSET done if it needed one): the next one, of this message or another. */
void session_continue(struct dsession *s);
/* Send a line that carries a secret: only `logtext` is logged. */
void session_send_masked(struct dsession *s, const char *line, const char *logtext);
/* Ready for mail (after EHLO, TLS and AUTH): begin the transaction. */
void session_go(struct dsession *s);

/*
 * For dispatch.c: start a session to smarthost shidx for m (taken
 * already).  It is named session_start_sid (the delivery process sets it
 * first, dlink.h; 0 elsewhere).
 */
void session_start(size_t shidx, struct qmsg *m);
extern unsigned session_start_sid;
/* The live session named sid, or NULL. */
struct dsession *session_find(unsigned sid);
/* Live sessions to smarthost shidx of the current configuration (the idle ones too). */
unsigned session_count(size_t shidx);
/*
 * A connection to smarthost shidx (current configuration) that is IDLE:
 * its last message is done and it waits reuse_time for another
 * before QUIT.  NULL when there is none.
 */
struct dsession *session_idle(size_t shidx);
/* For dispatch.c: m (taken already) goes over s, a session session_idle() returned. */
void session_resume(struct dsession *s, struct qmsg *m);
/*
 * 0: a connection with nothing more to send QUITs at once, whatever the
 * smarthost's reuse_time (`mailrelay test`, and the unit tests that
 * expect it); 1 in the daemon.
 */
extern int session_reuse;
/* What the outcome log line says about s's relay and connection. */
void session_relay_info(struct dsession *s, struct relay_info *ri);

/* dispatch.c */
/*
 * The next ready message for s's smarthost, taken and counted against its
 * rate_limit; NULL when none may go now (none, shutting down, or paced).
 */
struct qmsg *dispatch_next(struct dsession *s);
/*
 * dispatch_next() found nothing for s: may it wait, IDLE, for the next
 * message?  Not while shutting down, not when its rate_limit is what
 * holds the messages back (the connection ends, see rate_paced()).
 */
int dispatch_may_idle(struct dsession *s);
/*
 * s's smarthost failed before its first transaction (it is backed off):
 * m (s's message, or NULL) and every ready message meant for it go on to
 * the next smarthost or are deferred, as kind k says, with why.
 */
void dispatch_smarthost_failed(struct dsession *s, struct qmsg *m, enum trouble_kind k, const char *why);

/*
 * s entered IDLE / s is being freed.  Nothing to do where dispatch runs
 * beside the sessions (`mailrelay test`, the unit tests); in the delivery
 * process (dchild.c) they tell mailrelayd, whose dispatch gives the next
 * message and counts the sessions.
 */
void dispatch_idle(struct dsession *s);
void dispatch_ended(struct dsession *s);

/* delivery_txn.c: one transaction */
/* Begin a transaction for s->msg (the recipients carried by a 452, else every pending one). */
void txn_begin(struct dsession *s);
/* Judge one reply to MAIL, RCPT or DATA. */
void txn_on_reply(struct dsession *s, const char *text);
/* DS_ENVELOPE entered: send MAIL (with PIPELINING, RCPTs and DATA too). */
void txn_send_envelope(struct dsession *s);
/* DS_BODY entered: start the body. */
void txn_body_start(struct dsession *s);
/* The body drained below the low-water mark: more of it; -1 on a read error. */
int  txn_body_refill(struct dsession *s);
/*
 * The transaction is over: carry the recipients a 452 left to a next one
 * (rset: RSET first), else give the message back.
 */
void txn_end(struct dsession *s, int rset);
/*
 * Each recipient of the transaction not yet decided gets the outcome of
 * kind k (cls: the reply's class, 0 when none); only_accepted: only those
 * the smarthost accepted.
 */
void txn_outcome_all(struct dsession *s, enum trouble_kind k, int cls, const char *reply,
    int only_accepted);
/* Drop the transaction's bookkeeping (not the carried recipients). */
void txn_clear(struct dsession *s);
/* Drop the carried recipients. */
void txn_carry_clear(struct dsession *s);
/* Give the message back to the queue (see delivery_txn.c). */
void txn_release(struct dsession *s);

/* delivery_auth.c: never fails the session itself, it says what happened */
enum auth_result {
	AUTH_GO,                        /* no AUTH needed, or it succeeded: on to mail */
	AUTH_WAIT,                      /* under way: a reply or password_command is awaited */
	AUTH_FAILED                     /* failed: see the dfailure */
};
/* After EHLO (and TLS): start AUTH if the smarthost needs it. */
enum auth_result auth_start(struct dsession *s, struct dfailure *f);
/* A reply in DS_AUTH. */
enum auth_result auth_on_reply(struct dsession *s, struct dfailure *f);
/* delivery_session.c: what AUTH said: go on to mail, wait, or fail the session with the failure's kind. */
void session_auth(struct dsession *s, enum auth_result r, const struct dfailure *f);
void auth_free(struct dsession *s);

/*
 * delivery_conn.c: gets the session a connection mail may go over.  It
 * enters no state and fails nothing itself: it reports where the
 * connection stands, and the core (session_conn()) picks the state or
 * hands the failure to the trouble table.
 */
enum conn_report {
	CONN_RESOLVING,                 /* the host (or proxy) name is being looked up */
	CONN_CONNECTING,                /* addresses to race: the connect phase (again, for a plaintext retry) */
	CONN_SOCKS,                     /* connected to the proxy: the tunnel is being opened */
	CONN_HANDSHAKE,                 /* a TLS handshake is under way on the connection */
	CONN_READY,                     /* a connection mail may go over: the greeting comes next */
	CONN_SECURED,                   /* STARTTLS done and the peer judged: EHLO again (RFC 3207 4.2) */
	CONN_FAILED                     /* no usable connection: see the dfailure */
};
/* delivery_session.c: what the connection code reports; f only with CONN_FAILED. */
void session_conn(struct dsession *s, enum conn_report r, const struct dfailure *f);

/* What the TLS policy says after EHLO or a refused STARTTLS. */
enum conn_verdict {
	CONN_GO_ON,                     /* on to AUTH and mail over this connection as it is */
	CONN_STARTTLS,                  /* send STARTTLS first */
	CONN_REFUSE                     /* mail may not go over it: see the dfailure */
};
/* Resolve and connect; reports as it goes (CONN_RESOLVING first, perhaps before it returns). */
void conn_start(struct dsession *s);
/* After EHLO (or HELO): what the TLS policy says now. */
enum conn_verdict conn_after_ehlo(struct dsession *s, struct dfailure *f);
/* The 220 to STARTTLS arrived: wrap the connection; reports CONN_HANDSHAKE or CONN_FAILED. */
void conn_starttls(struct dsession *s);
/* A reply other than 220 to STARTTLS: CONN_GO_ON (in plaintext) or CONN_REFUSE. */
enum conn_verdict conn_starttls_refused(struct dsession *s, const char *text, struct dfailure *f);
/*
 * Whether the connection code handles s's I/O now: its input (the SOCKS5
 * replies) and its events (connect phase, SOCKS, TLS handshake).
 */
int  conn_owns_io(const struct dsession *s, short what);
/* Input while conn_owns_io(). */
void conn_input(struct dsession *s);
/* An event (or the deadline, as BEV_EVENT_TIMEOUT) while conn_owns_io(). */
void conn_event(struct dsession *s, struct bufferevent *bev, short what);
/* Why an I/O event ended the connection: the TLS reason, the socket error, or "closed". */
void conn_io_reason(struct bufferevent *bev, short what, char *buf, size_t len);
void conn_free(struct dsession *s);

#endif

/*
 * delivery_session: the session core of the SMTP client towards the smarthost(s).
 * See delivery.h.
 *
 * Shape (after OpenSMTPD's mta_session): a state enum generated with its
 * names, phrases and deadlines from one table (delivery_int.h);
 * session_enter() is the way into a state: it arms the state's deadline
 * and sends what the state needs; on_reply() judges each complete reply;
 * the bufferevent callbacks and the deadline timer only turn I/O into
 * calls of those.  A session is never freed inside a nested call:
 * session_close() marks it and the top-level callback frees it on the
 * way out.
 *
 * Around it: dispatch.c gives each session its messages, delivery_txn.c
 * runs each transaction (MAIL/RCPT/DATA, the body), delivery_conn.c gets
 * the connection (resolve, connect, SOCKS5, TLS), delivery_auth.c AUTH,
 * and delivery_trouble.h names every way it can fail.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/stat.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>

#include <time.h>

#include "addr.h"
#include "daemon.h"
#include "delivery.h"
#include "delivery_int.h"
#include "delivery_trouble.h"
#include "dispatch.h"
#include "dotstuff.h"
#include "explain.h"
#include "linefix.h"
#include "log.h"
#include "metrics.h"
#include "oauth2.h"
#include "queue.h"
#include "ratekeep.h"
#include "shstate.h"
#include "smtp_reply.h"
#include "util.h"
#include "xmalloc.h"

const char *const dstate_what[] = {
#define X(name, what, deadline) [DS_##name] = what,
	DELIVERY_STATES(X)
#undef X
};

const char *const dstate_name[] = {
#define X(name, what, deadline) [DS_##name] = #name,
	DELIVERY_STATES(X)
#undef X
};

const enum deadline dstate_deadline[] = {
#define X(name, what, deadline) [DS_##name] = deadline,
	DELIVERY_STATES(X)
#undef X
};

#define REPLY_LINE_LIMIT 2048

static TAILQ_HEAD(, dsession) sessions = TAILQ_HEAD_INITIALIZER(sessions);
static unsigned nsessions;
int session_reuse = 1;
unsigned session_start_sid;


void
delivery_init(void)
{
	TAILQ_INIT(&sessions);
	dispatch_init();
}

unsigned
session_count(size_t shidx)
{
	struct dsession *s;
	unsigned n = 0;

	TAILQ_FOREACH(s, &sessions, entry)
		if (s->rc == D->rc && s->shidx == shidx && !s->dead)
			n++;
	return n;
}

void
session_start(size_t shidx, struct qmsg *m)
{
	struct dsession *s = xcalloc(1, sizeof *s);

	s->sid = session_start_sid;
	s->rc = runconf_ref(D->rc);
	s->shidx = shidx;
	s->sh = &s->rc->conf->smarthosts[s->shidx];
	s->body_fd = -1;
	snprintf(s->relay, sizeof s->relay, "%s:%u", s->sh->host, s->sh->port);
	TAILQ_INSERT_TAIL(&sessions, s, entry);
	nsessions++;
	s->msg = m;
	s->nested++;	/* the lookup may answer before conn_start() returns */
	conn_start(s);
	s->nested--;
	session_top(s);
}

/*
 * Keeping a connection for the next message: mail often comes in bursts
 * (a cron run, a script's loop, a monitoring storm), and each message on
 * a new connection paid for a TCP handshake, the greeting, EHLO, and
 * with a real smarthost a TLS handshake and AUTH, before its MAIL.  A
 * session with nothing more to send waits in IDLE for its smarthost's
 * reuse_time (2 s by default, as Postfix's connection cache);
 * dispatch_kick() gives the next ready message to it before it starts a
 * session.  An idle session still counts against `concurrency`.  The
 * server may close an idle connection at any time (its own idle timeout,
 * a 421): the session then ends quietly, and if that happens just as a
 * message was given to it (session_resume()), the message goes back to
 * the queue untried, to a new connection: see session_reuse_failed().
 */
struct dsession *
session_idle(size_t shidx)
{
	struct dsession *s;

	TAILQ_FOREACH(s, &sessions, entry)
		if (s->state == DS_IDLE && s->rc == D->rc && s->shidx == shidx && !s->dead)
			return s;
	return NULL;
}

void
session_resume(struct dsession *s, struct qmsg *m)
{
	log_debug("%s: the next message on the open connection", s->relay);
	s->msg = m;
	s->reused = 1;
	s->nested++;
	txn_begin(s);
	s->nested--;
	session_top(s);
}

/*
 * A connection taken out of IDLE broke (or said 421) before its server
 * answered the MAIL of the message given to it: the server had closed it
 * meanwhile.  That is no attempt and no failure of the smarthost: the
 * message goes back to the queue as it was, and session_free() kicks
 * dispatch, which gives it to a new connection.
 */
static void
session_reuse_failed(struct dsession *s, const char *why)
{
	log_info("%s: the connection kept open was closed by the server (%s); "
	    "its message goes on a new connection", s->relay, why);
	txn_release(s);
	session_close(s);
}

struct dsession *
session_find(unsigned sid)
{
	struct dsession *s;

	TAILQ_FOREACH(s, &sessions, entry)
		if (s->sid == sid)
			return s;
	return NULL;
}

unsigned
delivery_sessions(void)
{
	return nsessions;
}

/*
 * Send one command line.  A command longer than the line buffer is not
 * sent: its text comes from the queue (an envelope written by an older
 * version or by hand) or the configuration, never from a broken
 * invariant, so it fails this session's attempt with the reason (the
 * recipients are deferred, retried, and bounced at max_queue_time) and the
 * daemon goes on.  Returns 0, or -1 when the session has failed: the
 * caller sends nothing more and returns.
 */
int
session_send(struct dsession *s, const char *fmt, ...)
{
	va_list ap;
	char line[1100], why[300];
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof line - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof line - 2) {
		snprintf(why, sizeof why, "cannot send the %.*s command to %s: it would be %d octets, "
		    "more than the %zu this client sends", (int)strcspn(line, " :"), line, s->relay, n,
		    sizeof line - 3);
		session_fail(s, TK_COMMAND_TOO_LONG, why);
		return -1;
	}
	log_debug("%s: >>> %s", s->relay, line);
	session_trace(s, TR_SENT, line);
	memcpy(line + n, "\r\n", 3);
	bufferevent_write(s->bev, line, (size_t)n + 2);
	return 0;
}

void
session_send_masked(struct dsession *s, const char *line, const char *logtext)
{
	log_debug("%s: >>> %s", s->relay, logtext);
	session_trace(s, TR_SENT, logtext);
	bufferevent_write(s->bev, line, strlen(line));
	bufferevent_write(s->bev, "\r\n", 2);
}

static void
monotonic_now(struct timeval *tv)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	tv->tv_sec = ts.tv_sec;
	tv->tv_usec = ts.tv_nsec / 1000;
}

unsigned
session_connect_left(struct dsession *s)
{
	struct timeval now, left;

	monotonic_now(&now);
	if (!timerisset(&s->connect_until)) {
		s->connect_until = now;
		s->connect_until.tv_sec += s->sh->connect_timeout ? s->sh->connect_timeout : 30;
	}
	if (!timercmp(&now, &s->connect_until, <))
		return 1;
	timersub(&s->connect_until, &now, &left);
	return (unsigned)left.tv_sec + (left.tv_usec > 0);
}

void (*session_clock_hook)(struct dsession *s, unsigned secs);
void (*session_trace_hook)(struct dsession *s, enum trace_ev ev, const char *text);

void
session_trace(struct dsession *s, enum trace_ev ev, const char *text)
{
	if (session_trace_hook != NULL)
		session_trace_hook(s, ev, text);
}

/* What the connection did, as session_io() is told. */
enum session_ev {
	SEV_INPUT,              /* bytes to read */
	SEV_DRAINED,            /* the output went below the low-water mark */
	SEV_EVENT,              /* connected, closed, an error (bufferevent event flags) */
	SEV_DEADLINE            /* the state's deadline passed */
};
static void session_io(struct dsession *s, enum session_ev ev, short what);
static void session_free(struct dsession *s);

void
session_deadline_passed(struct dsession *s)
{
	session_io(s, SEV_DEADLINE, 0);
}

static void
session_on_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	session_io(arg, SEV_DEADLINE, 0);
}

/*
 * One timer per session, not the bufferevent's timeouts: those restart
 * with every byte read, so a smarthost trickling its reply held the
 * session for as long as it liked.
 */
void
session_timeouts(struct dsession *s)
{
	unsigned reply = s->sh->timeout ? s->sh->timeout : 60, t = 0;
	struct timeval tv;

	if (s->deadline_ev == NULL)
		s->deadline_ev = evtimer_new(D->base, session_on_deadline, s);
	evtimer_del(s->deadline_ev);
	switch (dstate_deadline[s->state]) {
	case DL_NONE:
		if (session_clock_hook != NULL)
			session_clock_hook(s, 0);
		return;
	case DL_CONNECT:
		t = session_connect_left(s);
		break;
	case DL_REPLY:
	case DL_PROGRESS:
		t = reply;
		break;
	case DL_SECRET:
		t = reply + 5;
		break;
	case DL_DATA:
		t = s->sh->data_timeout ? s->sh->data_timeout : 600;
		break;
	case DL_IDLE:
		t = s->sh->reuse_time;
		break;
	}
	if (session_clock_hook != NULL) {
		session_clock_hook(s, t);	/* a fake clock: it calls session_deadline_passed() */
		return;
	}
	tv.tv_sec = t;
	tv.tv_usec = 0;
	evtimer_add(s->deadline_ev, &tv);
}

void
session_relay_info(struct dsession *s, struct relay_info *ri)
{
	ri->relay = s->connected ? s->relay : "none";
	ri->tls = s->tls_done ? s->tlsv.version : "none";
	ri->verify = s->tls_done ? s->tlsv.verify : NULL;
	ri->dsn = s->caps.dsn;
	ri->name = s->sh->name;
}

void
session_close(struct dsession *s)
{
	s->dead = 1;
}

/*
 * The end of a top-level callback: a session marked dead is freed here
 * and nowhere else (but delivery_shutdown()), never inside a nested call
 * that may still use it.
 */
void
session_top(struct dsession *s)
{
	if (s->dead && s->nested == 0)
		session_free(s);
}

static void
session_free(struct dsession *s)
{
	txn_release(s);
	txn_carry_clear(s);	/* delivery_shutdown() takes the message back without txn_release() */
	auth_free(s);
	conn_free(s);
	if (s->deadline_ev != NULL)
		event_free(s->deadline_ev);
	TAILQ_REMOVE(&sessions, s, entry);
	nsessions--;
	dispatch_ended(s);
	runconf_unref(s->rc);
	free(s);
	if (!D->shutting_down)
		dispatch_kick();
}

/*
 * The connection failed or broke: everything not yet decided is deferred
 * with `why`.  When the session never got through (connect, TLS, AUTH),
 * it is the smarthost that failed: it is backed off, and its message and
 * every other ready message meant for it go on to the next smarthost or
 * are deferred — one probe per back-off step, not one per message.
 */
void
session_fail(struct dsession *s, enum trouble_kind k, const char *why)
{
	int never_ready = s->messages == 0 && s->rc_idx == NULL;

	log_info("%s", why);
	/* what it means and what to do, unless the reason says it already (OAuth2's) */
	const struct explanation *ex = explain_find(trouble_get(k)->name, why);
	if (ex != NULL && strstr(why, ex->sentence) == NULL)
		log_info("%s: %s: %s", s->relay, ex->sentence, ex->hint);
	s->fail_kind = k;
	s->failed = 1;
	session_trace(s, TR_FAILED, why);
	trouble_count(s, k);
	if (!never_ready) {
		txn_outcome_all(s, k, 0, why, 0);
		txn_release(s);
		session_close(s);
		return;
	}
	trouble_smarthost_failed(s, k, why);

	struct qmsg *m = s->msg;
	s->msg = NULL;
	txn_clear(s);
	dispatch_smarthost_failed(s, m, k, why);
	session_close(s);
}

static void
session_quit(struct dsession *s)
{
	txn_release(s);
	session_enter(s, DS_QUIT);
}

/* ------------------------------------------------------------------ */

/* After the greeting (and TLS and AUTH): the message taken at session start, else the next ready one. */
void
session_go(struct dsession *s)
{
	if (s->messages == 0)
		trouble_smarthost_ok(s);
	if (s->msg != NULL)
		txn_begin(s);
	else
		session_next_message(s);
}

void
session_auth(struct dsession *s, enum auth_result r, const struct dfailure *f)
{
	switch (r) {
	case AUTH_GO:
		session_go(s);
		break;
	case AUTH_WAIT:
		break;
	case AUTH_FAILED:
		session_fail(s, f->kind, f->why);
		break;
	}
}

void
session_next_message(struct dsession *s)
{
	if (s->dead)
		return;
	s->msg = dispatch_next(s);
	if (s->msg == NULL) {
		int idle = session_reuse && s->sh->reuse_time > 0 && s->rc == D->rc && !s->failed &&
		    dispatch_may_idle(s);
		session_enter(s, idle ? DS_IDLE : DS_QUIT);
		return;
	}
	txn_begin(s);
}

/* A transaction is over (and RSET done if it needed one): the next one, of this message or another. */
void
session_continue(struct dsession *s)
{
	if (s->dead)
		return;
	if (s->msg != NULL && s->carry != NULL && !D->shutting_down) {
		txn_begin(s);
		return;
	}
	txn_release(s);
	session_next_message(s);
}

static const char *
helo_name(const struct dsession *s)
{
	return s->sh->helo_name ? s->sh->helo_name : s->rc->conf->hostname;
}

void
session_enter(struct dsession *s, enum dstate st)
{
	log_debug("%s: state %s -> %s", s->relay, dstate_name[s->state], dstate_name[st]);
	s->state = st;
	session_timeouts(s);
	switch (st) {
	case DS_RESOLVE:
	case DS_CONNECT:
	case DS_SOCKS:
	case DS_GREETING:
	case DS_HANDSHAKE:
	case DS_SECRET:
	case DS_AUTH:
		break;
	case DS_EHLO:
		(void)session_send(s, "EHLO %s", helo_name(s));	/* on failure the session is closed */
		break;
	case DS_HELO:
		(void)session_send(s, "HELO %s", helo_name(s));
		break;
	case DS_STARTTLS:
		session_send(s, "STARTTLS");
		break;
	case DS_ENVELOPE:
		txn_send_envelope(s);
		break;
	case DS_BODY:
		txn_body_start(s);
		break;
	case DS_DOT:
		bufferevent_setwatermark(s->bev, EV_WRITE, 0, 0);
		break;
	case DS_RSET:
		session_send(s, "RSET");
		break;
	case DS_IDLE:
		dispatch_idle(s);
		break;
	case DS_QUIT:
		session_send(s, "QUIT");
		break;
	}
}

/*
 * What delivery_conn.c reports: the state that follows, or the failure
 * handed to session_fail().
 */
void
session_conn(struct dsession *s, enum conn_report r, const struct dfailure *f)
{
	switch (r) {
	case CONN_RESOLVING:
		session_enter(s, DS_RESOLVE);
		break;
	case CONN_CONNECTING:
		session_enter(s, DS_CONNECT);
		break;
	case CONN_SOCKS:
		session_enter(s, DS_SOCKS);
		break;
	case CONN_HANDSHAKE:
		session_enter(s, DS_HANDSHAKE);
		break;
	case CONN_READY:
		smtp_reply_init(&s->reply);
		session_enter(s, DS_GREETING);
		break;
	case CONN_SECURED:
		memset(&s->caps, 0, sizeof s->caps);	/* RFC 3207 4.2: learnt again over TLS */
		session_enter(s, DS_EHLO);
		break;
	case CONN_FAILED:
		session_fail(s, f->kind, f->why);
		break;
	}
}

/* What the TLS policy said after EHLO or a refused STARTTLS. */
static void
session_tls_policy(struct dsession *s, enum conn_verdict v, const struct dfailure *f)
{
	struct dfailure af;

	switch (v) {
	case CONN_GO_ON:
		session_auth(s, auth_start(s, &af), &af);
		break;
	case CONN_STARTTLS:
		session_enter(s, DS_STARTTLS);
		break;
	case CONN_REFUSE:
		session_fail(s, f->kind, f->why);
		break;
	}
}

/* The smarthost refused us before any transaction: a failure of the host, retried. */
static void
host_refused(struct dsession *s, const char *what, const char *text)
{
	char why[1400];

	snprintf(why, sizeof why, "%s refused %s: %s", s->relay, what, text);
	session_fail(s, TK_EHLO_REFUSED, why);
}

static void
on_reply(struct dsession *s)
{
	struct dfailure af;
	char text[1200];
	int cls = smtp_reply_class(&s->reply);

	smtp_reply_summary(&s->reply, text, sizeof text);
	log_debug("%s: <<< %s", s->relay, text);
	session_trace(s, TR_REPLY, text);
	metrics_reply(s->sh->name, s->reply.code);
	/*
	 * What a refusal means and what to do, in words, from the one table
	 * of replies (lib/explain.h; `mailrelay test` and `show` say the
	 * same).  AUTH's are said with the session's failure.
	 */
	const char *means = cls >= 4 && s->state != DS_AUTH ? oauth2_explain_reply(&s->reply) : "";
	if (means[0] != '\0')
		log_warnx("%s: %s: %s", s->relay, text, means);

	if (s->state == DS_IDLE) {
		/* the server speaks while we wait: a 421 as it closes (its own idle timeout) */
		log_debug("%s: the idle connection ends: %s", s->relay, text);
		session_close(s);
		return;
	}
	if (s->reused && s->state == DS_ENVELOPE) {
		if (s->reply.code == 421) {
			session_reuse_failed(s, text);
			return;
		}
		s->reused = 0;	/* the server answered the MAIL: the connection is good */
	}
	if (s->reply.code == 421 && (s->state == DS_ENVELOPE || s->state == DS_BODY ||
	    s->state == DS_DOT || s->state == DS_RSET)) {
		/*
		 * 421 answers any command of a server that is closing the
		 * connection (RFC 5321 3.8): the transaction is over whatever
		 * came before.  Nothing of it was delivered, so every recipient
		 * in it not yet refused is deferred (accepted ones too, and
		 * those left for a next transaction), and no further command is
		 * sent: a next message here would only be deferred too, for a
		 * transaction it never had.  Recipients sent in earlier
		 * transactions keep their outcome.
		 */
		txn_outcome_all(s, TK_CLOSING, 0, text, 0);
		txn_release(s);
		session_close(s);
		return;
	}

	switch (s->state) {
	case DS_GREETING:
		if (cls != 2) {
			char why[1400];
			snprintf(why, sizeof why, "host %s refused to talk to us: %s", s->relay, text);
			session_fail(s, TK_GREETING_REFUSED, why);
			return;
		}
		session_enter(s, DS_EHLO);
		break;
	case DS_EHLO:
		if (cls == 2) {
			smtp_caps_parse(&s->reply, &s->caps);
			session_tls_policy(s, conn_after_ehlo(s, &af), &af);
		} else if (cls == 5 && s->sh->helo_fallback) {
			/* RFC 5321 4.1.4: fall back to HELO when EHLO is not understood. */
			session_enter(s, DS_HELO);
		} else
			host_refused(s, "EHLO", text);
		break;
	case DS_STARTTLS:
		if (s->reply.code == 220)
			conn_starttls(s);
		else
			session_tls_policy(s, conn_starttls_refused(s, text, &af), &af);
		break;
	case DS_HELO:
		if (cls == 2) {
			memset(&s->caps, 0, sizeof s->caps);
			session_tls_policy(s, conn_after_ehlo(s, &af), &af);
		} else
			host_refused(s, "HELO", text);
		break;
	case DS_ENVELOPE:
		txn_on_reply(s, text);
		break;
	case DS_BODY:
		/*
		 * A reply while we are still sending the body: the server gave
		 * up.  It decides for the accepted recipients; the connection is
		 * dropped, so any left for a next transaction are deferred.
		 */
		txn_outcome_all(s, TK_BODY_CUT, cls, text, 1);
		txn_outcome_all(s, TK_ABANDONED, 0, text, 0);
		txn_release(s);
		session_close(s);
		break;
	case DS_DOT:
		if (s->msg != NULL) {
			txn_outcome_all(s, TK_DOT_REPLY, cls, text, 1);
			txn_end(s, 0);
			break;
		}
		session_next_message(s);
		break;
	case DS_RSET:
		if (cls != 2) {
			/* no clean state for another transaction: those left for one are deferred */
			txn_outcome_all(s, TK_RSET_REFUSED, 0, text, 0);
			session_quit(s);
			break;
		}
		session_continue(s);
		break;
	case DS_QUIT:
		session_close(s);
		break;
	case DS_IDLE:	/* above */
		break;
	case DS_AUTH:
		session_auth(s, auth_on_reply(s, &af), &af);
		break;
	case DS_RESOLVE:
	case DS_CONNECT:
	case DS_SOCKS:
	case DS_HANDSHAKE:
	case DS_SECRET:
		break;
	}
}

/* ------------------------------------------------------------------
 * I/O: the one entry point.  The bufferevent callbacks and the deadline
 * timer only say what happened (enum session_ev); session_io() acts on
 * it and, at its end, frees a session that ended (session_top()).
 */

/* Complete replies from the input, each judged by on_reply(). */
static void
session_input(struct dsession *s, struct bufferevent *bev)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	char err[200], *line;
	size_t len;

	while (!s->dead && (line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF)) != NULL) {
		int rc = smtp_reply_feed(&s->reply, line, len, err, sizeof err);
		free(line);
		if (rc == SMTP_REPLY_ERROR) {
			char why[300];
			snprintf(why, sizeof why, "protocol error from %s while %s: %s",
			    s->relay, dstate_what[s->state], err);
			session_fail(s, TK_PROTOCOL, why);
			break;
		}
		if (rc == SMTP_REPLY_DONE) {
			on_reply(s);
			smtp_reply_init(&s->reply);
			/* each complete reply gets the whole deadline (pipelined replies, AUTH rounds) */
			if (!s->dead)
				session_timeouts(s);
			if (s->dead || s->bev != bev)
				break;	/* now on a TLS filter or a new connection */
		}
	}
	if (!s->dead && s->bev == bev && evbuffer_get_length(in) > REPLY_LINE_LIMIT) {
		char why[300];
		snprintf(why, sizeof why, "protocol error from %s: reply line too long", s->relay);
		session_fail(s, TK_PROTOCOL, why);
	}
}

/* The output drained below the low-water mark: more of the body, a new deadline. */
static void
session_drained(struct dsession *s)
{
	if (s->state == DS_BODY && s->body_fd != -1) {
		session_timeouts(s);
		if (txn_body_refill(s) == -1) {
			txn_outcome_all(s, TK_SPOOL_READ, 0, "cannot read queued content", 0);
			session_close(s);
		}
	}
}

/* The states in which the connection code handles the session's I/O. */
static int
conn_state(enum dstate st)
{
	return st == DS_CONNECT || st == DS_SOCKS || st == DS_HANDSHAKE;
}

/* The connection broke, or a state past the connection's own ran out of time. */
static void
session_broke(struct dsession *s, struct bufferevent *bev, short what)
{
	char why[700], reason[256];

	if (s->state == DS_QUIT) {
		session_close(s);	/* after QUIT anything goes */
		return;
	}
	if (s->state == DS_IDLE) {
		if (what & BEV_EVENT_TIMEOUT)
			session_enter(s, DS_QUIT);	/* no next message came */
		else {
			log_debug("%s: the server closed the idle connection", s->relay);
			session_close(s);
		}
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		snprintf(why, sizeof why, "conversation with %s timed out while %s",
		    s->relay, dstate_what[s->state]);
	} else {
		/* over TLS the reason may be an alert (a refused client certificate) */
		conn_io_reason(bev, what, reason, sizeof reason);
		snprintf(why, sizeof why, "lost connection with %s while %s: %s%s",
		    s->relay, dstate_what[s->state], s->tls_done ? "TLS: " : "", reason);
	}
	if (s->reused && s->state == DS_ENVELOPE) {
		session_reuse_failed(s, why);
		return;
	}
	session_fail(s, what & BEV_EVENT_TIMEOUT ? TK_TIMEOUT : TK_LOST, why);
}

static void
session_io(struct dsession *s, enum session_ev ev, short what)
{
	struct bufferevent *bev = s->bev;

	s->nested++;
	switch (ev) {
	case SEV_INPUT:
		if (s->state == DS_SOCKS)
			conn_input(s);
		else
			session_input(s, bev);
		break;
	case SEV_DRAINED:
		session_drained(s);
		break;
	case SEV_DEADLINE:
		log_debug("%s: deadline of state %s passed", s->relay, dstate_name[s->state]);
		what = BEV_EVENT_TIMEOUT | BEV_EVENT_READING;
		/* FALLTHROUGH */
	case SEV_EVENT:
		if ((what & BEV_EVENT_CONNECTED) || conn_state(s->state))
			conn_event(s, bev, what);
		else
			session_broke(s, bev, what);
		break;
	}
	s->nested--;
	session_top(s);
}

void
session_on_read(struct bufferevent *bev, void *arg)
{
	(void)bev;
	session_io(arg, SEV_INPUT, 0);
}

void
session_on_write(struct bufferevent *bev, void *arg)
{
	(void)bev;
	session_io(arg, SEV_DRAINED, 0);
}

void
session_on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	session_io(arg, SEV_EVENT, what);
}

void
delivery_shutdown(void)
{
	struct dsession *s;

	dispatch_shutdown();
	/* Messages go back untouched: no attempt is counted for an aborted session. */
	while ((s = TAILQ_FIRST(&sessions)) != NULL) {
		if (s->msg != NULL) {
			txn_clear(s);
			queue_untake(s->msg);
			s->msg = NULL;
		}
		session_free(s);
	}
}

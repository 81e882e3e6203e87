/*
 * dchild: mailrelay-deliver, the delivery process of mailrelayd.
 *
 * mailrelayd starts it when it has a message to send and no delivery
 * process is running, and ends it (by closing the link) once it has had
 * no session for a moment: the daemon that stays maps no TLS library.
 * It runs the delivery sessions of delivery.h (connections, TLS, AUTH,
 * OAuth2 tokens, password_command) and decides nothing about the queue:
 * every outcome, release and failure goes back to mailrelayd as a frame
 * (dlink.h), where the queue, dispatch and the failure table run as they
 * did in one process.  This file stands in for them here, with the same
 * functions (queue.h, delivery_int.h's dispatch and delivery_trouble.h),
 * as daemon/queue_one.c does for `mailrelay test`.
 *
 *   mailrelay-deliver [-l LEVEL] [-d]   (fd 3: the link)
 *   mailrelay-deliver --check           (fd 3: the configuration)
 *
 * The first frame on fd 3 is the configuration mailrelayd runs (its
 * file's text as mailrelayd read it: the file may have changed since, a
 * reload refused), and each reload sends the new one.  --check loads it
 * as a delivery would (runconf_new(): TLS contexts, keys, password_file)
 * and says on stderr why it cannot; mailrelayd runs it at start and at
 * each reload before it takes the configuration.  Log lines go to mailrelayd, which writes them where its
 * own go.  The link's end (mailrelayd gone or done) ends every session
 * without an outcome, as a stop of the daemon does, and the process.
 */
#include "config.h"

#include <sys/prctl.h>
#include <sys/stat.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>

#include "commit.h"
#include "daemon.h"
#include "delivery.h"
#include "delivery_int.h"
#include "delivery_trouble.h"
#include "dispatch.h"
#include "dlink.h"
#include "log.h"
#include "metrics.h"
#include "oauth2.h"
#include "queue.h"
#include "ratekeep.h"
#include "runconf.h"
#include "secret.h"
#include "util.h"
#include "xmalloc.h"

#define LINK_FD 3

static struct daemon dstate;
struct daemon *D = &dstate;

static struct bufferevent *link_bev;
static int exit_code;                  /* once the loop ends (finish()) */

/* A message as a session holds it here: the envelope mailrelayd sent, and whose session it is. */
struct cmsg {
	struct qmsg q;              /* first: the session's struct qmsg * is the cmsg */
	unsigned sid;
};

static unsigned
sid_of(const struct qmsg *m)
{
	return ((const struct cmsg *)(const void *)m)->sid;
}

static void
cmsg_free(struct qmsg *m)
{
	spool_env_free(&m->env);
	free(m);
}

/* ---- frames to mailrelayd ------------------------------------------------ */

static struct evbuffer *
out(void)
{
	return link_bev != NULL ? bufferevent_get_output(link_bev) : NULL;
}

static void
relay_fields(struct dl_out *f, const struct relay_info *ri)
{
	dl_str(f, ri->relay);
	dl_str(f, ri->tls);
	dl_str(f, ri->verify);
	dl_u32(f, (uint32_t)ri->dsn);
}

static void
send_sid(enum lk_type t, unsigned sid)
{
	struct dl_out f;

	if (out() == NULL)
		return;
	dl_begin(&f, out(), t);
	dl_u32(&f, sid);
	dl_end(&f);
}

/* Log lines go to mailrelayd; before the link, and after it, to stderr. */
static void
log_forward(int prio, const char *qid, const char *status, const char *msg)
{
	struct dl_out f;

	if (out() == NULL) {
		fprintf(stderr, "mailrelayd: %s%s%s\n", qid ? qid : "", qid ? ": " : "", msg);
		return;
	}
	dl_begin(&f, out(), LK_LOG);
	dl_u32(&f, (uint32_t)prio);
	dl_str(&f, qid);
	dl_str(&f, status);
	dl_str(&f, msg);
	dl_end(&f);
}

/* What is still to go out when the process ends (log_fatal, the link's end). */
static void
flush_out(void)
{
	struct evbuffer *b = out();

	if (b == NULL)
		return;
	(void)evutil_make_socket_nonblocking(LINK_FD);
	while (evbuffer_get_length(b) > 0 && evbuffer_write(b, LINK_FD) > 0)
		;
}

/* ---- the queue, as the sessions see it (queue.h) ---------------------------- */

struct qmsg *
queue_ready_next(struct qmsg *after)
{
	(void)after;
	return NULL;
}

void
queue_take(struct qmsg *m)
{
	m->ready = 0;
	m->inflight = 1;
}

int
queue_has_ready(void)
{
	return 0;
}

size_t
queue_ready_failover(void)
{
	return 0;
}

int
queue_verify(struct qmsg *m, int fd)
{
	char why[SPOOL_DAMAGED_MAX];
	struct dl_out f;

	if (m->env.damaged)
		return -1;
	if (spool_msg_check(&D->spool, &m->env, fd, why, sizeof why) == 0)
		return 0;
	spool_env_set_damaged(&m->env, why);
	if (out() != NULL) {
		dl_begin(&f, out(), LK_DAMAGED);
		dl_u32(&f, sid_of(m));
		dl_str(&f, why);
		dl_end(&f);
	}
	return -1;
}

void
queue_release(struct qmsg *m)
{
	send_sid(LK_RELEASE, sid_of(m));
	cmsg_free(m);
}

/* At the end (shutdown): mailrelayd's copy stays queued; this one goes. */
void
queue_untake(struct qmsg *m)
{
	cmsg_free(m);
}

void
queue_checkpoint(struct qmsg *m)
{
	send_sid(LK_CHECKPOINT, sid_of(m));
}

void
queue_on_ready(queue_ready_fn fn)
{
	(void)fn;
}

void
queue_on_flush(queue_ready_fn fn)
{
	(void)fn;
}

int
commit_removals_full(void)
{
	return 0;
}

void
commit_on_relief(void (*fn)(void))
{
	(void)fn;
}

void
ratekeep_touch(void)
{
}

void
ratekeep_flush(void)
{
}

/* ---- dispatch, as the sessions see it (delivery_int.h) ---------------------- */

void
dispatch_init(void)
{
}

void
dispatch_kick(void)
{
}

void
dispatch_shutdown(void)
{
}

/* The message mailrelayd gave ahead (LK_AHEAD), if it has come; else it gives one (LK_RESUME) once the session is idle. */
struct qmsg *
dispatch_next(struct dsession *s)
{
	struct qmsg *m = s->ahead;

	if (D->shutting_down || m == NULL)
		return NULL;
	s->ahead = NULL;
	send_sid(LK_TAKEN, s->sid);	/* before any report that names it */
	return m;
}

int
dispatch_may_idle(struct dsession *s)
{
	(void)s;
	return !D->shutting_down;
}

void
dispatch_smarthost_failed(struct dsession *s, struct qmsg *m, enum trouble_kind k, const char *why)
{
	struct relay_info ri;
	struct dl_out f;

	session_relay_info(s, &ri);
	if (out() != NULL) {
		dl_begin(&f, out(), LK_FAILOVER);
		dl_u32(&f, s->sid);
		dl_u32(&f, (uint32_t)k);
		dl_str(&f, why);
		relay_fields(&f, &ri);
		dl_end(&f);
	}
	if (m != NULL)
		cmsg_free(m);	/* mailrelayd's copy fails over */
}

void
dispatch_idle(struct dsession *s)
{
	send_sid(LK_IDLE, s->sid);
}

void
dispatch_ended(struct dsession *s)
{
	if (s->ahead != NULL) {
		cmsg_free(s->ahead);	/* mailrelayd gives it back at LK_END */
		s->ahead = NULL;
	}
	send_sid(LK_END, s->sid);
}

/* ---- the failure table's recorder (delivery_trouble.h) ---------------------- */

void
trouble_record(struct dsession *s, struct qmsg *m, size_t idx, enum trouble_kind k, int cls,
    const char *text)
{
	struct relay_info ri;
	struct dl_out f;
	enum outcome o = trouble_outcome(k, cls);

	/* this copy knows what is left to send; mailrelayd's decides and keeps */
	m->env.rcpts[idx].status = o == OUTCOME_SENT ? RCPT_SENT : o == OUTCOME_BOUNCED ? RCPT_FAILED :
	    RCPT_PENDING;
	session_relay_info(s, &ri);
	if (out() == NULL)
		return;
	dl_begin(&f, out(), LK_RECORD);
	dl_u32(&f, sid_of(m));
	dl_u32(&f, (uint32_t)idx);
	dl_u32(&f, (uint32_t)k);
	dl_u32(&f, (uint32_t)cls);
	dl_str(&f, text);
	relay_fields(&f, &ri);
	dl_end(&f);
}

void
trouble_count(const struct dsession *s, enum trouble_kind k)
{
	struct dl_out f;

	if (out() == NULL)
		return;
	dl_begin(&f, out(), LK_COUNT);
	dl_u32(&f, s->sid);
	dl_u32(&f, (uint32_t)k);
	dl_u32(&f, (uint32_t)s->state);
	dl_end(&f);
}

void
trouble_smarthost_failed(const struct dsession *s, enum trouble_kind k, const char *why)
{
	struct dl_out f;

	if (out() == NULL)
		return;
	dl_begin(&f, out(), LK_SH_FAILED);
	dl_u32(&f, s->sid);
	dl_u32(&f, (uint32_t)k);
	dl_str(&f, why);
	dl_end(&f);
}

void
trouble_smarthost_ok(const struct dsession *s)
{
	send_sid(LK_SH_OK, s->sid);
}

/* ---- the counters (metrics.h): kept by mailrelayd ----------------------------- */

void
metrics_reply(const char *relay, int code)
{
	struct dl_out f;

	if (out() == NULL)
		return;
	dl_begin(&f, out(), LK_METRIC_REPLY);
	dl_str(&f, relay);
	dl_u32(&f, (uint32_t)code);
	dl_end(&f);
}

void
metrics_tls(const char *relay, enum metrics_tls r)
{
	struct dl_out f;

	if (out() == NULL)
		return;
	dl_begin(&f, out(), LK_METRIC_TLS);
	dl_str(&f, relay);
	dl_u32(&f, (uint32_t)r);
	dl_end(&f);
}

/* ---- frames from mailrelayd ---------------------------------------------- */

/* The envelope of a frame, as a message of sid; NULL (logged) when it does not parse. */
static struct qmsg *
take_envelope(struct dl_in *m, unsigned sid)
{
	const char *text = dl_get_str(m);
	size_t len = dl_last_len(m);
	char err[300];
	struct cmsg *c;

	if (text == NULL)
		return NULL;
	c = xcalloc(1, sizeof *c);
	c->sid = sid;
	if (spool_env_parse(text, len, &c->q.env, err, sizeof err) == -1) {
		log_errx("an envelope from mailrelayd does not parse: %s", err);
		free(c);
		return NULL;
	}
	c->q.inflight = 1;
	return &c->q;
}

/* The smarthost named, in this process's configuration: at index shidx when the names agree. */
static long
smarthost_index(uint32_t shidx, const char *name)
{
	const struct config *c = D->conf;
	size_t i;

	if (shidx < c->nsmarthosts && strcmp(c->smarthosts[shidx].name, name) == 0)
		return (long)shidx;
	for (i = 0; i < c->nsmarthosts; i++)
		if (strcmp(c->smarthosts[i].name, name) == 0)
			return (long)i;
	return -1;
}

/*
 * A session for a smarthost this process's configuration does not have
 * (the file changed and mailrelayd was reloaded with it, this process not
 * yet, or the other way round): its recipients are deferred, the message
 * given back, the session over.
 */
static void
unknown_smarthost(unsigned sid, struct qmsg *q, const char *name)
{
	struct relay_info ri = { .relay = "none", .tls = "none", .verify = NULL, .dsn = 0, .name = NULL };
	char why[300];
	struct dl_out f;
	size_t i;

	snprintf(why, sizeof why, "the delivery process has no smarthost %s in its configuration", name);
	log_errx("%s", why);
	for (i = 0; i < q->env.nrcpt; i++) {
		if (q->env.rcpts[i].status != RCPT_PENDING)
			continue;
		dl_begin(&f, out(), LK_RECORD);
		dl_u32(&f, sid);
		dl_u32(&f, (uint32_t)i);
		dl_u32(&f, TK_SPOOL_READ);
		dl_u32(&f, 0);
		dl_str(&f, why);
		relay_fields(&f, &ri);
		dl_end(&f);
	}
	queue_release(q);
	send_sid(LK_END, sid);
}

/* The configuration of an LK_CONFIG or LK_RELOAD frame; NULL with err set. */
static struct config *
frame_config(struct dl_in *m, char *err, size_t errlen)
{
	const char *path = dl_get_str(m), *text = dl_get_str(m);
	size_t len = dl_last_len(m);

	if (!dl_done(m) || (path != NULL && text == NULL)) {
		snprintf(err, errlen, "mailrelayd sent a configuration that does not parse");
		return NULL;
	}
	return conf_load_text(path, text, len, err, errlen);
}

static void
reload(struct dl_in *m, uint32_t level)
{
	char err[1024];
	struct config *nc = frame_config(m, err, sizeof err);
	struct runconf *nrc;

	if (nc == NULL || (nrc = runconf_new(nc, err, sizeof err)) == NULL) {
		if (nc != NULL)
			conf_free(nc);
		log_errx("the delivery process keeps its configuration: %s", err);
		return;
	}
	runconf_unref(D->rc);	/* sessions still running keep the old one */
	D->rc = nrc;
	D->conf = nc;
	if (!D->debug && level >= LOG_ERR && level <= LOG_DEBUG)
		log_set_level((int)level);
}

/*
 * The first frame, read before anything else (blocking, and no further
 * than its end: the loop reads the rest): the configuration to run.
 */
static struct config *
first_config(char *err, size_t errlen)
{
	struct evbuffer *in = evbuffer_new();
	struct config *c = NULL;
	unsigned char h[4], *body;
	size_t len;
	struct dl_in m;

	snprintf(err, errlen, "no configuration from mailrelayd on fd %d", LINK_FD);
	if (read_full(LINK_FD, h, sizeof h) != (ssize_t)sizeof h)
		goto out;
	len = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
	if (len == 0 || len > LK_FRAME_MAX)
		goto out;
	body = xmalloc(len);
	if (read_full(LINK_FD, body, len) == (ssize_t)len) {
		evbuffer_add(in, h, sizeof h);
		evbuffer_add(in, body, len);
		if (dl_next(in, LK_FRAME_MAX, &m) == 1) {
			if (m.type == LK_CONFIG)
				c = frame_config(&m, err, errlen);
			dl_in_free(&m);
		}
	}
	free(body);
out:
	evbuffer_free(in);
	return c;
}

/* One frame; -1: it does not parse (mailrelayd is broken: end). */
static int
on_frame(struct dl_in *m)
{
	uint32_t sid, shidx, level;
	const char *name;
	struct dsession *s;
	struct qmsg *q;
	long idx;

	switch (m->type) {
	case LK_START:
		sid = dl_get_u32(m);
		shidx = dl_get_u32(m);
		name = dl_get_str(m);
		if (name == NULL || (q = take_envelope(m, sid)) == NULL)
			return -1;
		if (!dl_done(m)) {
			cmsg_free(q);
			return -1;
		}
		if ((idx = smarthost_index(shidx, name)) == -1) {
			unknown_smarthost(sid, q, name);
			return 0;
		}
		session_start_sid = sid;
		session_start((size_t)idx, q);
		return 0;
	case LK_RESUME:
		sid = dl_get_u32(m);
		if ((q = take_envelope(m, sid)) == NULL)
			return -1;
		if (!dl_done(m)) {
			cmsg_free(q);
			return -1;
		}
		s = session_find(sid);
		if (s == NULL || s->state != DS_IDLE || s->dead) {
			/* it left IDLE meanwhile (its reuse_time passed, the server closed it) */
			cmsg_free(q);
			send_sid(LK_REFUSED, sid);
			return 0;
		}
		session_resume(s, q);
		return 0;
	case LK_AHEAD:
		sid = dl_get_u32(m);
		if ((q = take_envelope(m, sid)) == NULL)
			return -1;
		s = session_find(sid);
		if (!dl_done(m) || (s != NULL && s->ahead != NULL)) {
			cmsg_free(q);	/* one ahead at most */
			return -1;
		}
		if (s == NULL || s->dead || s->state == DS_QUIT) {
			cmsg_free(q);
			send_sid(LK_REFUSED, sid);
		} else if (s->state == DS_IDLE) {
			send_sid(LK_TAKEN, sid);	/* it went idle before this came */
			session_resume(s, q);
		} else
			s->ahead = q;
		return 0;
	case LK_QUIT:
		sid = dl_get_u32(m);
		if (!dl_done(m))
			return -1;
		s = session_find(sid);
		if (s != NULL && s->state == DS_IDLE && !s->dead) {
			session_enter(s, DS_QUIT);
			session_top(s);
		}
		return 0;
	case LK_RELOAD:
		level = dl_get_u32(m);
		reload(m, level);
		return 0;
	default:
		return -1;
	}
}

static void
finish(int code)
{
	if (!D->shutting_down) {
		exit_code = code;
		D->shutting_down = 1;
		delivery_shutdown();
	}
	event_base_loopbreak(D->base);
}

static void
on_link_read(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	struct dl_in m;
	int r;

	(void)arg;
	while ((r = dl_next(in, LK_FRAME_MAX, &m)) == 1) {
		int rc = on_frame(&m);
		dl_in_free(&m);
		if (rc == -1) {
			log_errx("mailrelayd sent a frame that does not parse; the delivery process ends");
			finish(EX_PROTOCOL);
			return;
		}
	}
	if (r == -1) {
		log_errx("mailrelayd sent a frame that does not parse; the delivery process ends");
		finish(EX_PROTOCOL);
	}
}

static void
on_link_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	(void)arg;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		/* mailrelayd is done with us, or gone: no outcome for what is in flight */
		bufferevent_free(link_bev);
		link_bev = NULL;
		finish(0);
	}
}

static void
on_term(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	(void)arg;
	finish(0);
}

/*
 * Work of its own with no session open (OAuth2: a token renewed before it
 * expires, a request in flight) keeps the process: mailrelayd is told
 * when that starts and ends, checked every second.
 */
static void
on_busy_tick(evutil_socket_t fd, short what, void *arg)
{
	static int told;
	int busy = oauth2_background();
	struct dl_out f;

	(void)fd;
	(void)what;
	(void)arg;
	if (busy == told || out() == NULL)
		return;
	told = busy;
	dl_begin(&f, out(), LK_BUSY);
	dl_u32(&f, (uint32_t)busy);
	dl_end(&f);
}

static void
on_chld(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	(void)arg;
	secret_reap();
}

static void
usage(int code)
{
	fprintf(code ? stderr : stdout,
	    "usage: mailrelay-deliver [-l LEVEL] [-d]\n"
	    "       mailrelay-deliver --check\n"
	    "The delivery process of mailrelayd, which starts it and hands it its configuration\n"
	    "on descriptor 3; not for running by hand.\n");
	exit(code);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "check", no_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct event *ev_term, *ev_int, *ev_chld, *ev_busy;
	char err[1024];
	int ch, check = 0, level = LOG_INFO;

	umask(077);
	while ((ch = getopt_long(argc, argv, "l:dh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'l':
			level = atoi(optarg);
			if (level < LOG_ERR || level > LOG_DEBUG)
				usage(EX_USAGE);
			break;
		case 'd':
			D->debug = 1;
			level = LOG_DEBUG;
			break;
		case 'k':
			check = 1;
			break;
		case 'h':
			usage(0);
			break;
		default:
			usage(EX_USAGE);
		}
	}
	if (optind != argc)
		usage(EX_USAGE);

	log_init("mailrelayd", LOG_TO_STDERR, level);
	if ((D->conf = first_config(err, sizeof err)) == NULL ||
	    (D->rc = runconf_new(D->conf, err, sizeof err)) == NULL) {
		fprintf(stderr, "%s\n", err);
		return EX_CONFIG;
	}
	if (check)
		return 0;

	signal(SIGPIPE, SIG_IGN);
	if (spool_open(&D->spool, D->conf->spool_dir, 0, err, sizeof err) == -1) {
		fprintf(stderr, "mailrelayd: the delivery process: %s\n", err);
		return EX_CANTCREAT;
	}
	if ((D->base = event_base_new()) == NULL)
		return EX_OSERR;
	if (evutil_make_socket_nonblocking(LINK_FD) == -1 ||
	    (link_bev = bufferevent_socket_new(D->base, LINK_FD, BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		fprintf(stderr, "mailrelayd: the delivery process has no link to mailrelayd (fd %d)\n", LINK_FD);
		return EX_OSERR;
	}
	(void)evutil_make_socket_closeonexec(LINK_FD);
	bufferevent_setcb(link_bev, on_link_read, NULL, on_link_event, NULL);
	bufferevent_enable(link_bev, EV_READ);
	log_init("mailrelayd", LOG_TO_SYSLOG, level);
	log_set_sink(log_forward);
	atexit(flush_out);
	D->dns = evdns_base_new(D->base, EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (D->dns == NULL) {
		log_warnx("no usable name servers in /etc/resolv.conf: only /etc/hosts and addresses will resolve");
		D->dns = evdns_base_new(D->base, 0);
		evdns_base_load_hosts(D->dns, NULL);
	}

	delivery_init();
	if (oauth2_init(D->base, D->spool.dir) == -1)
		log_fatalx_code(EX_OSERR, "cannot start the HTTP client for OAuth2 token endpoints");
	ev_term = evsignal_new(D->base, SIGTERM, on_term, NULL);
	ev_int = evsignal_new(D->base, SIGINT, on_term, NULL);
	ev_chld = evsignal_new(D->base, SIGCHLD, on_chld, NULL);
	event_add(ev_term, NULL);
	event_add(ev_int, NULL);
	event_add(ev_chld, NULL);
	struct timeval second = { 1, 0 };
	ev_busy = event_new(D->base, -1, EV_PERSIST, on_busy_tick, NULL);
	event_add(ev_busy, &second);
	D->started = time(NULL);
	event_base_dispatch(D->base);
	finish(0);

	/* everything back, the freed connections' finalizers run by event_base_free() */
	oauth2_shutdown();
	flush_out();
	if (link_bev != NULL)
		bufferevent_free(link_bev);
	link_bev = NULL;
	event_free(ev_term);
	event_free(ev_int);
	event_free(ev_chld);
	event_free(ev_busy);
	evdns_base_free(D->dns, 0);
	event_base_free(D->base);
	runconf_unref(D->rc);
	spool_close(&D->spool);
	return exit_code;
}

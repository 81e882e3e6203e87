/*
 * control: the control socket (control_socket), where `mailrelay` and
 * `sendmail -q` ask the daemon to act on its queue.  The protocol is in
 * lib/ctlproto.h; this file accepts connections, reads request lines,
 * checks who is asking (SO_PEERCRED) and answers.
 *
 * Requests that change the queue (FLUSH included: SPEC "Admin CLI")
 * need root, the daemon's own user or membership of its group.
 *
 * Any local user may connect, so what a client can make us hold is
 * bounded as on the submit socket (smtpd.c): max_connections and
 * max_connections_per_client (per uid) count control connections on
 * their own; requests are not read while more than CTL_OUT_HIGH octets
 * of answers wait unread (an answer itself, a long LIST, is always sent
 * whole); a client silent for CTL_TIMEOUT (or idle_timeout, when
 * shorter) between requests, or connected longer than session_timeout,
 * is disconnected.
 */
#include "config.h"

#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <stdint.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "control.h"
#include "ctlproto.h"
#include "daemon.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "queue.h"
#include "oauth2.h"
#include "shstate.h"
#include "explain.h"
#include "xmalloc.h"
#include "trouble.h"
#include "spool/qformat.h"
#include "spool/qjson.h"
#include "util.h"
#include "xmalloc.h"

#define CTL_TIMEOUT 30          /* seconds a client may stay silent */
#define CTL_OUT_HIGH (64 * 1024) /* unread answers above this: stop reading requests */
#define CTL_OUT_LOW  (16 * 1024) /* ... until they drain below this */

struct cwait;

struct csession {
	struct bufferevent *bev;
	struct event *idle_ev;      /* no complete request for ctl_idle() seconds */
	struct event *life_ev;      /* session_timeout */
	struct cwait *wait;         /* a change being written; requests wait for its answer */
	int out_paused;             /* not reading: answers unread */
	uid_t uid;
	gid_t gid;
	int closing;                /* close once the reply is written */
	int discard;                /* a request was too long: read and drop the rest */
	int eof;                    /* the client closed its side */
	TAILQ_ENTRY(csession) entry;
};

static TAILQ_HEAD(, csession) csessions = TAILQ_HEAD_INITIALIZER(csessions);
static unsigned ncsessions;
static struct evconnlistener *ctl_lev;
static struct accept_guard *ctl_guard;

/*
 * HOLD, RELEASE, DELETE are answered once every change they made is on
 * disk: "deleted" means gone after a crash too.
 */
struct cwait {
	struct csession *s;         /* NULL once the client is gone */
	enum ctl_verb verb;
	size_t n, pending, ok, missing, busy, failed;
	size_t damaged;             /* RELEASE of a damaged message: refused */
};

static void
cs_free(struct csession *s)
{
	if (s->wait != NULL)
		s->wait->s = NULL;	/* the writes finish; nobody hears of them */
	TAILQ_REMOVE(&csessions, s, entry);
	ncsessions--;
	event_free(s->idle_ev);
	event_free(s->life_ev);
	bufferevent_free(s->bev);
	free(s);
}

/* Seconds a client may stay silent between requests. */
static unsigned
ctl_idle(void)
{
	return D->conf->idle_timeout < CTL_TIMEOUT ? D->conf->idle_timeout : CTL_TIMEOUT;
}

static void
cs_idle_restart(struct csession *s)
{
	struct timeval tv = { .tv_sec = ctl_idle() };

	evtimer_add(s->idle_ev, &tv);
}

static void
on_idle(evutil_socket_t fd, short what, void *arg)
{
	struct csession *s = arg;

	(void)fd;
	(void)what;
	if (s->wait != NULL || evbuffer_get_length(bufferevent_get_output(s->bev)) > 0) {
		/* the spool is slow, or a long answer is still being read: not idle */
		cs_idle_restart(s);
		return;
	}
	log_debug("control: uid=%lu: no request for %us; disconnected", (unsigned long)s->uid, ctl_idle());
	cs_free(s);
}

static void
on_lifetime(evutil_socket_t fd, short what, void *arg)
{
	struct csession *s = arg;

	(void)fd;
	(void)what;
	log_info("control: uid=%lu: connected for %us (session_timeout); disconnected",
	    (unsigned long)s->uid, D->conf->session_timeout);
	cs_free(s);
}

static void
cs_reply(struct csession *s, const char *fmt, ...) PRINTFLIKE(2, 3);

static void
cs_reply(struct csession *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(s->bev), fmt, ap);
	va_end(ap);
	evbuffer_add(bufferevent_get_output(s->bev), "\n", 1);
}

/* Root, our own user, or a member of our group (primary or supplementary). */
static int
may_change(const struct csession *s)
{
	struct passwd *pw;
	gid_t groups[256];
	int n = 256;

	if (s->uid == (uid_t)-1)
		return 0;
	if (s->uid == 0 || s->uid == getuid() || s->gid == getgid())
		return 1;
	if ((pw = getpwuid(s->uid)) == NULL)
		return 0;
	if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &n) == -1)
		return 0;
	for (int i = 0; i < n; i++)
		if (groups[i] == getgid())
			return 1;
	return 0;
}

/* Changing requests: refused, with a log line, to everyone but root and our group. */
static int
allowed(struct csession *s, const char *what)
{
	struct group *gr;

	if (may_change(s))
		return 1;
	gr = getgrgid(getgid());
	log_info("control: uid=%lu: %s refused (not root, not in group %s)",
	    (unsigned long)s->uid, what, gr ? gr->gr_name : "of mailrelayd");
	cs_reply(s, "ERR %d permission denied: %s needs root or the %s group",
	    CTL_ERR_PERM, what, gr ? gr->gr_name : "mailrelay");
	return 0;
}

/* Every line of text as a "D " line; frees text. */
static void
cs_reply_lines(struct csession *s, char *text)
{
	char *line, *next;

	for (line = text; line != NULL && *line != '\0'; line = next) {
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		cs_reply(s, "D %s", line);
	}
	free(text);
}

static void
do_flush(struct csession *s, const struct ctl_req *req)
{
	size_t i, missing = 0, damaged = 0;

	if (!allowed(s, "flushing the queue"))
		return;
	if (req->nids == 0) {
		log_info("control: uid=%lu: flush of the whole queue (%zu message(s))",
		    (unsigned long)s->uid, queue_count());
		queue_flush_all();
		cs_reply(s, "OK %zu message(s) in the queue, all due now", queue_count());
		return;
	}
	for (i = 0; i < req->nids; i++) {
		int rc = queue_flush_one(req->ids[i]);
		if (rc == 0) {
			log_qid(LOG_INFO, req->ids[i], NULL, "flushed by uid=%lu", (unsigned long)s->uid);
			cs_reply(s, "D %s due now", req->ids[i]);
		} else if (rc == -3) {
			cs_reply(s, "D %s is damaged (%s); not due", req->ids[i], queue_find(req->ids[i])->damaged);
			damaged++;
		} else {
			cs_reply(s, "D %s not in the queue", req->ids[i]);
			missing++;
		}
	}
	if (missing)
		cs_reply(s, "ERR %d %zu of %zu message(s) not in the queue", CTL_ERR_DATA, missing, req->nids);
	else if (damaged)
		cs_reply(s, "ERR %d %zu damaged message(s) not flushed", CTL_ERR_DATA, damaged);
	else
		cs_reply(s, "OK %zu message(s) due now", req->nids);
}

static const char *const change_done[] = {
	[CTL_HOLD] = "held", [CTL_RELEASE] = "released", [CTL_DELETE] = "deleted",
};

static void on_read(struct bufferevent *bev, void *arg);

/*
 * Every change of the request is settled: the summary line, and with
 * resume (the answer waited for the spool) the requests that came in
 * meanwhile.
 */
static void
change_answer(struct cwait *w, int resume)
{
	struct csession *s = w->s;

	if (s != NULL) {
		s->wait = NULL;
		if (w->missing)
			cs_reply(s, "ERR %d %zu of %zu message(s) not in the queue", CTL_ERR_DATA, w->missing, w->n);
		else if (w->damaged)
			cs_reply(s, "ERR %d %zu damaged message(s) not released", CTL_ERR_DATA, w->damaged);
		else if (w->failed)
			cs_reply(s, "ERR %d %zu change(s) could not be written to the spool", CTL_ERR_TEMP,
			    w->failed);
		else if (w->busy)
			cs_reply(s, "ERR %d %zu message(s) being delivered right now; try again in a moment",
			    CTL_ERR_TEMP, w->busy);
		else
			cs_reply(s, "OK %zu message(s) %s", w->ok, change_done[w->verb]);
		if (resume && !s->out_paused) {
			bufferevent_enable(s->bev, EV_READ);
			on_read(s->bev, s);
		}
	}
	free(w);
}

struct cchange {
	struct cwait *w;
	char id[QID_LEN + 1];
};

/* One change of a waiting request is on disk, or failed. */
static void
on_change_written(int ok, const char *err, void *arg)
{
	struct cchange *c = arg;
	struct cwait *w = c->w;

	if (!ok) {
		w->failed++;
		w->ok--;
		log_qid(LOG_ERR, c->id, NULL, "not %s: %s", change_done[w->verb], err);
		if (w->s != NULL && w->verb == CTL_DELETE)
			cs_reply(w->s, "D %s not deleted after all: %s", c->id, err);
		else if (w->s != NULL)	/* the queue writes it again later (persist_later) */
			cs_reply(w->s, "D %s %s in the running daemon only, not on disk: %s; "
			    "written once the spool takes writes again", c->id, change_done[w->verb], err);
	}
	free(c);
	if (--w->pending == 0)
		change_answer(w, 1);
}

/* HOLD, RELEASE, DELETE: one data line per id, then a summary once it is all on disk. */
static void
do_change(struct csession *s, const struct ctl_req *req)
{
	static const char *const what[] = {
		[CTL_HOLD] = "holding messages", [CTL_RELEASE] = "releasing messages",
		[CTL_DELETE] = "deleting messages",
	};
	char (*all)[QID_LEN + 1] = NULL;
	size_t i;
	struct cwait *w;

	if (!allowed(s, what[req->verb]))
		return;
	w = xcalloc(1, sizeof *w);
	w->s = s;
	w->verb = req->verb;
	w->pending = 1;		/* this loop's own: nothing is answered before it ends */
	if (req->all)
		w->n = queue_ids(&all);
	else
		w->n = req->nids;
	for (i = 0; i < w->n; i++) {
		const char *id = req->all ? all[i] : req->ids[i];
		struct cchange *c = xcalloc(1, sizeof *c);
		int rc;
		c->w = w;
		strlcpy_mr(c->id, id, sizeof c->id);
		rc = req->verb == CTL_DELETE ? queue_delete(id, on_change_written, c)
		    : queue_hold(id, req->verb == CTL_HOLD, on_change_written, c);
		if (rc == 1)
			w->pending++;
		else
			free(c);
		if (rc >= 0) {
			w->ok++;
			log_qid(LOG_INFO, id, NULL, "%s by uid=%lu", change_done[req->verb], (unsigned long)s->uid);
			cs_reply(s, "D %s %s", id, change_done[req->verb]);
		} else if (rc == -2) {
			w->busy++;
			cs_reply(s, "D %s is being delivered right now; not %s", id, change_done[req->verb]);
		} else if (rc == -3) {
			/* never sent as found: repair its files and restart, or delete it */
			w->damaged++;
			cs_reply(s, "D %s is damaged (%s); not released", id, queue_find(id)->damaged);
		} else {
			w->missing++;
			cs_reply(s, "D %s not in the queue", id);
		}
	}
	free(all);
	if (--w->pending == 0) {
		change_answer(w, 0);	/* nothing to wait for */
		return;
	}
	/* answered by the last write; the session reads nothing more until then */
	s->wait = w;
	bufferevent_disable(s->bev, EV_READ);
}

/* "3h 12m ago", "in 5m", for the text form */
static void
ago(char *out, size_t len, time_t t, time_t now)
{
	long long d = (long long)(now - t), v;
	int past = d >= 0;
	char unit;

	if (t == 0) {
		snprintf(out, len, "never");
		return;
	}
	if (d < 0)
		d = -d;
	if (d < 120)
		v = d, unit = 's';
	else if (d < 7200)
		v = d / 60, unit = 'm';
	else if (d < 172800)
		v = d / 3600, unit = 'h';
	else
		v = d / 86400, unit = 'd';
	snprintf(out, len, "%s%lld%c%s", past ? "" : "in ", v, unit, past ? " ago" : "");
}

struct list_ctx {
	struct qformat f;
	uid_t only;                 /* (uid_t)-1: everyone's */
};

static void
list_one(const struct spool_env *env, void *arg)
{
	struct list_ctx *c = arg;

	if (c->only == (uid_t)-1 || env->uid == c->only)
		qformat_one(&c->f, env);
}

/*
 * LIST [JSON]: the listing mailq prints.  Root and the daemon's group see
 * every message; other users only those they submitted, so nobody learns
 * other people's senders or recipients.
 */
static void
do_list(struct csession *s, const struct ctl_req *req)
{
	struct list_ctx c;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (f == NULL) {
		cs_reply(s, "ERR %d cannot build the listing: %s", CTL_ERR_TEMP, strerror(errno));
		return;
	}
	c.only = may_change(s) ? (uid_t)-1 : s->uid;
	qformat_begin(&c.f, f, req->json ? &qjson_list : NULL);
	queue_each(list_one, &c);
	qformat_end(&c.f);
	fclose(f);
	cs_reply_lines(s, text);
	cs_reply(s, "OK %zu message(s)%s", c.f.count, c.only == (uid_t)-1 ? "" : " of yours");
}

/* SHOW ID [BODY]: for root and our group, and for the user who submitted it. */
static void
do_show(struct csession *s, const struct ctl_req *req)
{
	const struct spool_env *e = queue_find(req->ids[0]);
	char *text = NULL, *content;
	size_t len = 0, clen;
	FILE *f;

	if (e == NULL || (!may_change(s) && e->uid != s->uid)) {
		/* the same answer for a message that is someone else's: nothing leaks */
		cs_reply(s, "ERR %d %s is not in the queue%s", CTL_ERR_DATA, req->ids[0],
		    may_change(s) ? "" : " (or not yours)");
		return;
	}
	content = spool_msg_read(&D->spool, e, req->body ? SIZE_MAX : 256 * 1024, &clen);
	if ((f = open_memstream(&text, &len)) == NULL) {
		free(content);
		cs_reply(s, "ERR %d cannot build the answer: %s", CTL_ERR_TEMP, strerror(errno));
		return;
	}
	/*
	 * The history is on disk: the daemon holds only the attempts made
	 * since the envelope was last written (queue.c); shown after those.
	 */
	struct spool_env disk, view = *e;
	struct spool_attempt *hist;
	size_t nh = 0, first;
	char err[256];
	int have_disk = e->damaged == NULL && spool_env_read(&D->spool, e->id, &disk, err, sizeof err) == 0;

	hist = xcalloc((have_disk ? disk.nhist : 0) + e->nhist + 1, sizeof *hist);
	if (have_disk && disk.nhist > 0) {
		memcpy(hist, disk.hist, disk.nhist * sizeof *hist);
		nh = disk.nhist;
	}
	/* those not written yet borrow what they do not hold (queue_attempts_own()) */
	for (size_t i = 0; i < e->nhist; i++) {
		struct spool_attempt *h = &hist[nh + i];
		*h = e->hist[i];
		if (h->relay == NULL)
			h->relay = "none";
		if (h->reply == NULL)
			h->reply = h->rcpt < e->nrcpt && e->rcpts[h->rcpt].last_reply ? e->rcpts[h->rcpt].last_reply : "";
	}
	nh += e->nhist;
	first = nh > SPOOL_HISTORY_MAX ? nh - SPOOL_HISTORY_MAX : 0;
	view.hist = hist + first;
	view.nhist = nh - first;
	qformat_show(f, &view, content, clen, req->body, time(NULL));
	fclose(f);
	free(hist);
	if (have_disk)
		spool_env_free(&disk);
	free(content);
	cs_reply_lines(s, text);
	cs_reply(s, "OK %s", req->ids[0]);
}

/*
 * The configuration running, and whether the file is newer: changed since
 * it was loaded (mtime), or a reload refused (with why).  The file's
 * mtime is read now, so an edit not yet reloaded shows too.
 */
static time_t
conf_file_mtime(void)
{
	struct stat st;

	return D->conf->path != NULL && stat(D->conf->path, &st) == 0 ? st.st_mtime : 0;
}

static json_object *
conf_json(time_t now)
{
	json_object *o = json_object_new_object();
	time_t mt = conf_file_mtime();

	(void)now;
	json_object_object_add(o, "path", qjson_str(D->conf->path));
	json_object_object_add(o, "loaded", qjson_time(D->conf_loaded));
	json_object_object_add(o, "file_changed", qjson_time(mt));
	json_object_object_add(o, "file_newer", json_object_new_boolean(mt > D->conf_mtime));
	json_object_object_add(o, "reload_refused", qjson_time(D->reload_refused));
	json_object_object_add(o, "reload_refused_why",
	    qjson_str(D->reload_refused ? D->reload_refused_why : NULL));
	return o;
}

static void
conf_text(struct csession *s, time_t now)
{
	char a[64], b[64];
	time_t mt = conf_file_mtime();
	const char *path = D->conf->path ? D->conf->path : "built-in defaults";

	ago(a, sizeof a, D->conf_loaded, now);
	cs_reply(s, "D configuration: %s, loaded %s", path, a);
	if (D->reload_refused) {
		ago(b, sizeof b, D->reload_refused, now);
		cs_reply(s, "D   reload refused %s: %s; the configuration loaded %s is still running", b,
		    D->reload_refused_why, a);
	} else if (mt > D->conf_mtime) {
		ago(b, sizeof b, mt, now);
		cs_reply(s, "D   %s changed %s and is not loaded yet: run mailrelay check-config, then "
		    "systemctl reload mailrelay (or send mailrelayd SIGHUP)", path, b);
	}
}

/* STATUS [JSON|PROMETHEUS]: open to every user (no sender, recipient or subject in it). */
static void
do_status(struct csession *s, const struct ctl_req *req)
{
	const struct config *c = D->conf;
	const struct daemon_stats *k = &D->stats;
	struct queue_stats q;
	time_t now = time(NULL);
	char a[64], b2[64];
	size_t i;

	queue_stats(&q);
	if (req->prometheus) {
		/* the exposition's lines as data lines: the client prints them as they are */
		struct evbuffer *b = evbuffer_new();
		char *line;
		size_t n;

		metrics_render(b);
		while ((line = evbuffer_readln(b, &n, EVBUFFER_EOL_LF)) != NULL) {
			cs_reply(s, "D %s", line);
			free(line);
		}
		evbuffer_free(b);
		cs_reply(s, "OK status");
		return;
	}
	if (req->json) {
		/* one line, written by json-c (spool/qjson.h) */
		json_object *o = json_object_new_object(), *jq = json_object_new_object();
		json_object *jc = json_object_new_object(), *sa = json_object_new_array();
		json_object_object_add(o, "running", json_object_new_boolean(1));
		json_object_object_add(o, "version", json_object_new_string(PACKAGE_VERSION));
		json_object_object_add(o, "pid", json_object_new_int64(getpid()));
		json_object_object_add(o, "started", qjson_time(D->started));
		json_object_object_add(o, "uptime", json_object_new_int64(now - D->started));
		json_object_object_add(jq, "messages", json_object_new_uint64(q.messages));
		json_object_object_add(jq, "active", json_object_new_uint64(q.active));
		json_object_object_add(jq, "deferred", json_object_new_uint64(q.deferred));
		json_object_object_add(jq, "held", json_object_new_uint64(q.held));
		json_object_object_add(jq, "waiting", json_object_new_uint64(q.waiting));
		json_object_object_add(jq, "damaged", json_object_new_uint64(q.damaged));
		json_object_object_add(jq, "oldest_age", q.oldest ? json_object_new_int64(now - q.oldest) : NULL);
		json_object_object_add(o, "queue", jq);
		json_object_object_add(jc, "accepted", json_object_new_uint64(k->accepted));
		json_object_object_add(jc, "notices", json_object_new_uint64(k->notices));
		json_object_object_add(jc, "sent", json_object_new_uint64(k->sent));
		json_object_object_add(jc, "deferred", json_object_new_uint64(k->deferred));
		json_object_object_add(jc, "bounced", json_object_new_uint64(k->bounced));
		json_object_object_add(jc, "tls_failures", json_object_new_uint64(k->tls_failures));
		json_object_object_add(jc, "auth_failures", json_object_new_uint64(k->auth_failures));
		json_object_object_add(o, "counters", jc);
		for (i = 0; i < c->nsmarthosts; i++) {
			const struct smarthost_conf *sh = &c->smarthosts[i];
			struct shstate *st = shstate_get(sh->name);
			json_object *js = json_object_new_object();
			json_object_object_add(js, "name", json_object_new_string(sh->name));
			json_object_object_add(js, "host", json_object_new_string(sh->host));
			json_object_object_add(js, "port", json_object_new_int64(sh->port));
			json_object_object_add(js, "last_success", qjson_time(st->last_success));
			json_object_object_add(js, "last_failure", qjson_time(st->last_failure));
			json_object_object_add(js, "last_error", qjson_str(st->last_error[0] ? st->last_error : NULL));
			json_object_object_add(js, "failures", json_object_new_int64(st->failures));
			json_object_object_add(js, "backoff_until", qjson_time(st->down_until > now ? st->down_until : 0));
			if (sh->rate_limit_count > 0) {
				char rl[64];
				snprintf(rl, sizeof rl, "%u/%us", sh->rate_limit_count, sh->rate_limit_period);
				json_object_object_add(js, "rate_limit", json_object_new_string(rl));
			} else
				json_object_object_add(js, "rate_limit", NULL);
			json_object_object_add(js, "paced_until", qjson_time(st->paced_until > now ? st->paced_until : 0));
			json_object_object_add(js, "needs_authorisation", qjson_str(oauth2_status(sh->name)));
			json_object_array_add(sa, js);
		}
		json_object_object_add(o, "smarthosts", sa);
		json_object_object_add(o, "configuration", conf_json(now));
		cs_reply(s, "D %s", json_object_to_json_string_ext(o, QJSON_FLAGS));
		json_object_put(o);
		cs_reply(s, "OK status");
		return;
	}
	ago(a, sizeof a, D->started, now);
	cs_reply(s, "D mailrelayd %s running, pid %ld, started %s", PACKAGE_VERSION, (long)getpid(), a);
	if (q.oldest)
		ago(a, sizeof a, q.oldest, now);
	cs_reply(s, "D queue: %zu message(s): %zu being delivered, %zu deferred, %zu held, %zu waiting, "
	    "%zu damaged%s%s", q.messages, q.active, q.deferred, q.held, q.waiting, q.damaged,
	    q.oldest ? "; oldest arrived " : "", q.oldest ? a : "");
	cs_reply(s, "D since start: %llu accepted, %llu sent, %llu deferred, %llu bounced, %llu notice(s); "
	    "%llu TLS and %llu AUTH failures", k->accepted, k->sent, k->deferred, k->bounced, k->notices,
	    k->tls_failures, k->auth_failures);
	conf_text(s, now);
	if (c->nsmarthosts == 0)
		cs_reply(s, "D no smarthost is configured: mail is accepted and kept in the queue");
	for (i = 0; i < c->nsmarthosts; i++) {
		const struct smarthost_conf *sh = &c->smarthosts[i];
		struct shstate *st = shstate_get(sh->name);
		const char *na = oauth2_status(sh->name);
		char mark[200];
		ago(a, sizeof a, st->last_success, now);
		cs_reply(s, "D smarthost %s (%s:%u): last success %s", sh->name, sh->host, sh->port, a);
		/* a last error that is the needs-authorisation sentence (cut short) is said once, whole, below */
		snprintf(mark, sizeof mark, "smarthost %s needs authorisation", sh->name);
		if (st->last_error[0] && (na == NULL || strstr(st->last_error, mark) == NULL)) {
			ago(b2, sizeof b2, st->last_failure, now);
			cs_reply(s, "D   last error %s: %s", b2, st->last_error);
			/*
			 * What it means and what to do: the table of replies when a
			 * row fits (lib/explain.h), else the failure kind's row
			 */
			const char *why, *todo;
			explain_failure(trouble_get((enum trouble_kind)st->last_kind)->name, st->last_error,
			    &why, &todo);
			cs_reply(s, "D     why: %s", why);
			cs_reply(s, "D     what to do: %s", todo);
		}
		if (na != NULL)
			cs_reply(s, "D   %s", na);
		if (st->down_until > now) {
			ago(b2, sizeof b2, st->down_until, now);
			cs_reply(s, "D   backed off after %u failure(s); next try %s", st->failures, b2);
		}
		if (st->paced_until > now) {
			ago(b2, sizeof b2, st->paced_until, now);
			cs_reply(s, "D   rate_limit %u per %us reached; next message %s", sh->rate_limit_count,
			    sh->rate_limit_period, b2);
		}
	}
	cs_reply(s, "OK status");
}

static void
handle(struct csession *s, const char *line, size_t len)
{
	struct ctl_req req;
	char err[200];

	if (ctl_parse(line, len, &req, err, sizeof err) == -1) {
		cs_reply(s, "ERR %d %s", CTL_ERR_USAGE, err);
		return;
	}
	switch (req.verb) {
	case CTL_FLUSH:
		do_flush(s, &req);
		break;
	case CTL_HOLD:
	case CTL_RELEASE:
	case CTL_DELETE:
		do_change(s, &req);
		break;
	case CTL_STATUS:
		do_status(s, &req);
		break;
	case CTL_LIST:
		do_list(s, &req);
		break;
	case CTL_SHOW:
		do_show(s, &req);
		break;
	}
}

static void
on_read(struct bufferevent *bev, void *arg)
{
	struct csession *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line;
	size_t n;

	if (s->discard) {
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	while (s->wait == NULL && !s->out_paused &&
	    (line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF)) != NULL) {
		cs_idle_restart(s);
		handle(s, line, n);
		free(line);
		if (evbuffer_get_length(bufferevent_get_output(bev)) > CTL_OUT_HIGH) {
			/*
			 * The client sends requests without reading the
			 * answers: read nothing more (the kernel then stops
			 * the client) until on_write() sees them drain.
			 */
			s->out_paused = 1;
			bufferevent_setwatermark(bev, EV_WRITE, CTL_OUT_LOW, 0);
		}
	}
	if (s->out_paused) {
		bufferevent_disable(bev, EV_READ);
		return;
	}
	if (s->wait != NULL)
		return;
	if (evbuffer_get_length(in) >= CTL_LINE_MAX) {
		/*
		 * Answer, then keep reading and dropping until the client
		 * closes: closing with unread data would reset the connection
		 * and lose the answer.
		 */
		cs_reply(s, "ERR %d request longer than %d octets", CTL_ERR_USAGE, CTL_LINE_MAX - 1);
		evbuffer_drain(in, evbuffer_get_length(in));
		s->discard = s->closing = 1;
	}
}

static void
on_write(struct bufferevent *bev, void *arg)
{
	struct csession *s = arg;

	if (s->out_paused && evbuffer_get_length(bufferevent_get_output(bev)) <= CTL_OUT_LOW) {
		s->out_paused = 0;
		bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
		if (s->wait == NULL && !s->eof) {
			bufferevent_enable(bev, EV_READ);
			on_read(bev, s);	/* the requests read before the pause */
		}
	}
	if (!s->closing)
		return;
	if (evbuffer_get_length(bufferevent_get_output(bev)) > 0)
		return;		/* the low-water mark called early */
	if (s->eof)
		cs_free(s);
	else
		shutdown(bufferevent_getfd(bev), SHUT_WR);	/* answered; free at the client's EOF */
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
	struct csession *s = arg;

	(void)bev;
	if ((what & BEV_EVENT_EOF) && evbuffer_get_length(bufferevent_get_output(s->bev)) > 0) {
		/* the client half-closed after its request: answer, then close */
		s->eof = s->closing = 1;
		return;
	}
	cs_free(s);
}

/*
 * Over max_connections (control connections only) or over
 * max_connections_per_client for this uid: the answer a request would
 * get, straight on the socket, then close; one log line per LOG_GATE_SECS.
 */
static int
over_limit(evutil_socket_t fd, uid_t uid)
{
	static struct log_gate gate;
	const struct csession *o;
	unsigned mine = 0, limit;
	const char *key;
	char buf[256];
	unsigned long n;
	int len;

	TAILQ_FOREACH(o, &csessions, entry)
		if (o->uid == uid)
			mine++;
	if (ncsessions >= D->conf->max_connections) {
		key = "max_connections";
		limit = D->conf->max_connections;
	} else if (mine >= D->conf->max_connections_per_client) {
		key = "max_connections_per_client";
		limit = D->conf->max_connections_per_client;
	} else
		return 0;
	len = snprintf(buf, sizeof buf, "ERR %d too many connections to the control socket (%s %u); "
	    "try again later\n", CTL_ERR_TEMP, key, limit);
	if (len > 0 && (size_t)len < sizeof buf)
		(void)send(fd, buf, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL);
	evutil_closesocket(fd);
	if (log_gate_pass(&gate, &n))
		log_warnx("control: connection from uid=%lu refused: too many connections (%s %u); "
		    "%lu refused since the last such line", (unsigned long)uid, key, limit, n);
	return 1;
}

static void
on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	struct csession *s;
	struct ucred cred;
	socklen_t cl = sizeof cred;
	uid_t uid = (uid_t)-1;
	gid_t gid = (gid_t)-1;
	struct timeval tv = { .tv_sec = ctl_idle() }, life = { .tv_sec = D->conf->session_timeout };

	(void)lev;
	(void)sa;
	(void)salen;
	(void)arg;
	if (D->shutting_down) {
		evutil_closesocket(fd);
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0) {
		uid = cred.uid;
		gid = cred.gid;
	}
	if (over_limit(fd, uid))
		return;
	s = xcalloc(1, sizeof *s);
	s->uid = uid;
	s->gid = gid;
	s->bev = bufferevent_socket_new(D->base, fd, BEV_OPT_CLOSE_ON_FREE);
	s->idle_ev = evtimer_new(D->base, on_idle, s);
	s->life_ev = evtimer_new(D->base, on_lifetime, s);
	if (s->bev == NULL || s->idle_ev == NULL || s->life_ev == NULL)
		log_fatalx("control: cannot create the events of a connection");
	TAILQ_INSERT_TAIL(&csessions, s, entry);
	ncsessions++;
	bufferevent_setcb(s->bev, on_read, on_write, on_event, s);
	/* the write timeout: answers left unread; the read side is on_idle's */
	bufferevent_set_timeouts(s->bev, NULL, &tv);
	evtimer_add(s->idle_ev, &tv);
	evtimer_add(s->life_ev, &life);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

static void
on_accept_error(struct evconnlistener *lev, void *arg)
{
	(void)lev;
	(void)arg;
	accept_guard_error(ctl_guard);
}

int
control_open(const struct config *conf, char *errbuf, size_t errlen)
{
	struct sockaddr_un sun;
	struct stat st;
	const char *path = conf->control_socket;

	if (path == NULL || *path == '\0')
		return 0;
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path) {
		snprintf(errbuf, errlen, "control_socket %s: path too long", path);
		return -1;
	}
	strlcpy_mr(sun.sun_path, path, sizeof sun.sun_path);
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);	/* stale, from a previous run */
	ctl_lev = evconnlistener_new_bind(D->base, on_accept, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16, (struct sockaddr *)&sun, sizeof sun);
	if (ctl_lev == NULL) {
		snprintf(errbuf, errlen, "control_socket %s: cannot listen: %s", path, strerror(errno));
		return -1;
	}
	ctl_guard = accept_guard_new(ctl_lev, path);
	evconnlistener_set_error_cb(ctl_lev, on_accept_error);
	/* every user may connect; what each may do is decided per request */
	if (chmod(path, 0666) == -1) {
		snprintf(errbuf, errlen, "control_socket %s: chmod: %s", path, strerror(errno));
		accept_guard_free(ctl_guard);
		ctl_guard = NULL;
		evconnlistener_free(ctl_lev);
		ctl_lev = NULL;
		return -1;
	}
	log_info("control socket %s", path);
	return 0;
}

void
control_close(void)
{
	struct csession *s;

	if (ctl_lev != NULL) {
		accept_guard_free(ctl_guard);
		ctl_guard = NULL;
		evconnlistener_free(ctl_lev);
		ctl_lev = NULL;
	}
	while ((s = TAILQ_FIRST(&csessions)) != NULL)
		cs_free(s);
}

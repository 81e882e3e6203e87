/*
 * bounce: the notices a message owes its sender.
 *
 * The failed recipients whose NOTIFY asks for it (no NOTIFY means
 * FAILURE) are reported in RFC 3464 notifications (lib/dsnmsg.c) to the
 * envelope sender; a local sender gets them through aliases and
 * admin_address like any local recipient.  Failures are reported after
 * the delivery pass that decided them, as Postfix does, not when the last
 * recipient is final: a recipient refused with 550 is not kept waiting for
 * another one deferred for days.  Each notice is queued as a new message
 * from <> (via=bounce); only once it is on disk are its recipients marked
 * "reported" in the envelope (a crash in between sends it again rather
 * than losing it), and only once the final notice is on disk is the
 * original removed.
 *
 * Mail from <> is never bounced to <>: when such a message fails (a
 * bounce that could not be delivered, or any null-sender mail), the
 * notification goes to admin_address with double_bounce = admin
 * (via=double-bounce), else it is logged and dropped.  A double bounce
 * that fails is logged and dropped: nothing loops.
 *
 * At most NOTICES_INFLIGHT_MAX notices are being written at a time: each
 * holds a spool file open until the committer has it on disk, and a
 * burst (every message of a dead smarthost's queue deferred at once, each
 * owing a delay notice; a mass expiry) would otherwise open one file per
 * message before the first is committed.  Measured with 100,000 queued
 * and a 20,000-descriptor limit: 43,117 notices failed with "Too many
 * open files", and the listener and the spool with them.  Beyond the
 * bound a delay or partial notice waits for the message's next attempt,
 * as it does when it cannot be written; a final notice, which the
 * original's removal waits for, is parked (a copy of the envelope) and
 * written, in order, as earlier ones reach the disk.
 */
#include "config.h"

#include <sys/time.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "bounce.h"
#include "commit.h"
#include "enqueue.h"
#include "daemon.h"
#include "dsnmsg.h"
#include "local.h"
#include "log.h"
#include "metrics.h"
#include "queue.h"
#include "util.h"
#include "xmalloc.h"

#define RETURN_MAX   (256 * 1024)  /* octets of the original read for the notification */
#define RETURN_FULL  (64 * 1024)   /* RET=FULL: the whole original up to this size, else headers */
#define NOTICES_INFLIGHT_MAX 64     /* notices created and not yet on disk (see above) */

static unsigned inflight;           /* notices created and not yet on disk */
static int held_logged;             /* the bound's line was logged since inflight was last 0 */

/* Final notices waiting for the bound, in order: copies of their messages' envelopes. */
struct parked {
	struct spool_env env;
	struct parked *next;
};
static struct parked *parked_head, **parked_tail = &parked_head;
static size_t nparked;
static struct event *resume_ev;

static int finish_notice(const struct spool_env *env);

static void
on_removed(struct commit_req *req, void *arg)
{
	(void)arg;
	if (req->rc == -1)
		log_errx("%s: cannot remove the finished message: %s", req->id, req->err);
	commit_req_free(req);
}

/* env_file: the message has (or may have) an .env to remove too. */
static void
remove_message(const char *id, int env_file)
{
	struct commit_req *req = xcalloc(1, sizeof *req);

	req->kind = COMMIT_REMOVE;
	memcpy(req->id, id, sizeof req->id);
	req->no_env = !env_file;
	req->later = 1;		/* nobody waits for it: in the next batch (commit.c) */
	req->done = on_removed;
	commit_submit(req);
}

enum notice_kind { NOTICE_FINAL, NOTICE_PARTIAL, NOTICE_DELAY };

struct bctx {
	char orig_id[QID_LEN + 1];
	int env_file;               /* the original's env_file, for its removal */
	char to[ADDR_LEN_MAX];
	enum notice_kind kind;
	unsigned *idx;              /* PARTIAL: the recipients it reports */
	size_t nidx;
	const char *metrics_kind;   /* failed, delayed, relayed or double (metrics.h) */
};

static void
on_notice_committed(struct commit_req *req, void *arg)
{
	struct bctx *c = arg;

	if (req->rc == 0) {
		/* enqueue.c logged it queued, and queues it once this returns */
		log_qid(LOG_INFO, c->orig_id, NULL, "%s to <%s> queued as %s",
		    c->kind == NOTICE_DELAY ? "delay notice" : "delivery status notification", c->to,
		    req->env.id);
		metrics_bounce(c->metrics_kind);
		D->stats.notices++;
	} else if (c->kind == NOTICE_DELAY) {
		log_qid(LOG_ERR, c->orig_id, NULL, "cannot queue the delay notice: %s", req->err);
	} else if (c->kind == NOTICE_PARTIAL) {
		log_qid(LOG_ERR, c->orig_id, NULL,
		    "cannot queue the delivery status notification: %s; tried again later", req->err);
	} else {
		/* the original stays on disk; the next start finds it finished and tries again */
		log_qid(LOG_ERR, c->orig_id, NULL,
		    "cannot queue the delivery status notification: %s; kept until the next start", req->err);
	}
	if (c->kind == NOTICE_FINAL && req->rc == 0)
		remove_message(c->orig_id, c->env_file);
	else if (c->kind == NOTICE_PARTIAL)
		queue_reported(c->orig_id, c->idx, c->nidx, req->rc == 0);
	free(c->idx);
	free(c);
	if (--inflight == 0)
		held_logged = 0;
	/* parked final notices go on from the loop, not from inside the committer's callback */
	if (parked_head != NULL && resume_ev != NULL)
		event_active(resume_ev, EV_TIMEOUT, 0);
}

/* Write parked final notices while the bound allows, oldest first. */
static void
on_resume(evutil_socket_t fd, short what, void *arg)
{
	struct parked *p;

	(void)fd, (void)what, (void)arg;
	while ((p = parked_head) != NULL && inflight < NOTICES_INFLIGHT_MAX) {
		if ((parked_head = p->next) == NULL)
			parked_tail = &parked_head;
		nparked--;
		/* cannot be held: the bound has room; a failure is logged there and kept for the next start */
		finish_notice(&p->env);
		spool_env_free(&p->env);
		free(p);
	}
}

/* The bound is reached: say so once a burst, with what waits. */
static void
held_back(void)
{
	if (held_logged)
		return;
	held_logged = 1;
	log_info("%u delivery status notifications being written: more wait for their messages' "
	    "next attempts, or their turn (%zu final notices waiting)", inflight, nparked);
}

void
bounce_shutdown(void)
{
	struct parked *p;

	/* their messages stay on disk, finished: the next start notifies and removes them */
	while ((p = parked_head) != NULL) {
		parked_head = p->next;
		spool_env_free(&p->env);
		free(p);
	}
	parked_tail = &parked_head;
	nparked = 0;
	if (resume_ev != NULL) {
		event_free(resume_ev);
		resume_ev = NULL;
	}
}

/*
 * The enhanced status of a recipient's last outcome, as decided then and
 * carried with it (spool.h "rstatus"); for an envelope written before
 * that was recorded, the code of its last reply ("550 5.1.1 ..."), else
 * 5.0.0.  Never derived from our own log text.
 */
static void
status_of(const struct spool_rcpt *r, char *out, size_t len)
{
	const char *t = r->last_reply ? r->last_reply : "";
	size_t n;

	if (r->dsn[0] != '\0') {
		snprintf(out, len, "%s", r->dsn);
		return;
	}
	if (strlen(t) > 9 && t[3] == ' ' && (t[4] == '4' || t[4] == '5') && t[5] == '.') {
		n = strcspn(t + 4, " ");
		if (n >= 5 && n < len) {
			memcpy(out, t + 4, n);
			out[n] = '\0';
			return;
		}
	}
	snprintf(out, len, "5.0.0");
}

/*
 * Queue the notification for env's failed recipients; 0 when done, -1
 * when it could not be, -2 when NOTICES_INFLIGHT_MAX are being written
 * (nothing done: try again later).
 */
static int
queue_notice(const struct spool_env *env, const char *to, const char *via,
    const struct dsn_rcpt *dr, size_t ndr, enum notice_kind kind, const unsigned *idx)
{
	struct dsn_msg dm;
	struct timeval arrival;
	struct tm tm;
	time_t now;
	size_t olen = 0, blen;
	char *orig, *notice, id[QID_LEN + 1];
	int eightbit = 0;

	if (inflight >= NOTICES_INFLIGHT_MAX) {
		held_back();
		return -2;
	}
	now = time(NULL);
	memset(&dm, 0, sizeof dm);
	localtime_r(&now, &tm);
	orig = spool_msg_read(&D->spool, env, RETURN_MAX, &olen);
	dm.reporting_mta = D->conf->hostname;
	dm.envid = env->envid;
	dm.queue_id = env->id;
	dm.arrival = env->arrival;
	dm.now = now;
	dm.tz_offset_minutes = (int)(tm.tm_gmtoff / 60);
	dm.to = to;
	/* RET=FULL, or no RET: the whole original when small, else its header (RFC 3461 4.3) */
	dm.ret_full = strcmp(env->ret, "HDRS") != 0 && env->size <= RETURN_FULL;
	dm.full_limit = RETURN_FULL;
	dm.rcpts = dr;
	dm.nrcpt = ndr;
	dm.orig_msg = orig;
	dm.orig_len = olen;
	dm.boundary_seed = env->id;
	if (kind == NOTICE_PARTIAL)
		for (size_t i = 0; i < env->nrcpt; i++)
			dm.still_pending += env->rcpts[i].status == RCPT_PENDING;
	notice = dsn_compose(&dm, &blen, &eightbit);
	free(orig);
	if (notice == NULL)
		return -1;

	struct commit_req *req = xcalloc(1, sizeof *req);
	if (enqueue_begin(id, &arrival, &req->txn) == -1) {
		log_qid(LOG_ERR, env->id, NULL, "cannot create the delivery status notification: %s",
		    strerror(errno));
		free(notice);
		free(req);
		return -1;
	}
	spool_txn_write(&req->txn, notice, blen);
	free(notice);
	memcpy(req->env.id, id, sizeof req->env.id);
	req->env.arrival = arrival.tv_sec;
	req->env.arrival_usec = arrival.tv_usec;
	req->env.sender = xstrdup("");
	req->env.uid = getuid();
	strlcpy_mr(req->env.via, via, sizeof req->env.via);
	req->env.size = req->txn.size;
	req->env.eightbit = eightbit;
	/* a local sender (cron's root) is reached through aliases and admin_address */
	struct rewrite_policy pol = conf_rewrite_policy(D->conf);
	if (rewrite_is_local(&pol, to)) {
		char local[ADDR_LEN_MAX];
		snprintf(local, sizeof local, "%.*s", (int)strcspn(to, "@"), to);
		local_add_rcpt(&req->env, local);
	} else
		local_add_rcpt(&req->env, to);

	struct bctx *c = xcalloc(1, sizeof *c);
	memcpy(c->orig_id, env->id, sizeof c->orig_id);
	c->env_file = env->env_file;
	snprintf(c->to, sizeof c->to, "%s", to);
	c->kind = kind;
	/* for metrics: a notice to the administrator, a delay, a failure, else success notices */
	c->metrics_kind = "relayed";
	for (size_t i = 0; i < ndr; i++)
		if (dr[i].action == DSN_FAILED)
			c->metrics_kind = "failed";
	if (kind == NOTICE_DELAY)
		c->metrics_kind = "delayed";
	if (strcmp(via, "double-bounce") == 0)
		c->metrics_kind = "double";
	if (kind == NOTICE_PARTIAL) {
		c->idx = xcalloc(ndr, sizeof *c->idx);
		memcpy(c->idx, idx, ndr * sizeof *c->idx);
		c->nidx = ndr;
	}
	char who[32];
	snprintf(who, sizeof who, "uid=%lu", (unsigned long)req->env.uid);
	inflight++;
	enqueue_commit(req, who, ENQ_QUEUE, on_notice_committed, c);
	return 0;
}

/*
 * Who hears of env's failures: the sender, or for mail from <> the
 * administrator (double_bounce = admin), or nobody (NULL; logged once,
 * when log_drop).  *via is set to the notice's via=.
 */
static const char *
notice_target(const struct spool_env *env, const char **via, int log_drop)
{
	*via = "bounce";
	if (env->sender[0] != '\0')
		return env->sender;
	if (strcmp(env->via, "double-bounce") == 0) {
		if (log_drop)
			log_qid(LOG_WARNING, env->id, NULL, "undeliverable notice to the administrator dropped");
		return NULL;
	}
	if (D->conf->double_bounce == DOUBLE_BOUNCE_ADMIN && D->conf->admin_address != NULL) {
		*via = "double-bounce";
		return D->conf->admin_address;
	}
	if (log_drop)
		log_qid(LOG_WARNING, env->id, NULL, "failed mail from <> dropped (double_bounce = %s%s)",
		    D->conf->double_bounce == DOUBLE_BOUNCE_ADMIN ? "admin" : "drop",
		    D->conf->admin_address == NULL ? ", no admin_address" : "");
	return NULL;
}

/* The recipients a notice is owed for and not yet given: failed or relayed, and unreported. */
static int
owed(const struct spool_env *env, const struct spool_rcpt *r)
{
	if (r->reported || r->reporting)
		return 0;
	if (r->status == RCPT_SENT)
		return r->success_notice && env->sender[0] != '\0';
	/* NOTIFY=NEVER, or a NOTIFY without FAILURE: the sender asked not to hear */
	return r->status == RCPT_FAILED && (r->notify[0] == '\0' || strstr(r->notify, "FAILURE") != NULL);
}

struct owed_list {
	struct dsn_rcpt *dr;
	char (*status)[16];
	char **orcpt;
	unsigned *idx;
	size_t n;
};

static void
owed_collect(const struct spool_env *env, struct owed_list *ol)
{
	size_t i, cap = env->nrcpt ? env->nrcpt : 1;

	ol->dr = xcalloc(cap, sizeof *ol->dr);
	ol->status = xcalloc(cap, sizeof *ol->status);
	ol->orcpt = xcalloc(cap, sizeof *ol->orcpt);
	ol->idx = xcalloc(cap, sizeof *ol->idx);
	ol->n = 0;
	for (i = 0; i < env->nrcpt; i++) {
		const struct spool_rcpt *r = &env->rcpts[i];
		size_t n = ol->n;
		int ok = r->status == RCPT_SENT;
		if (!owed(env, r))
			continue;
		if (ok)
			snprintf(ol->status[n], sizeof ol->status[n], "2.0.0");
		else
			status_of(r, ol->status[n], sizeof ol->status[n]);
		if (r->orcpt != NULL)
			ol->orcpt[n] = xstrdup(r->orcpt);
		else if (r->orig != NULL && strcmp(r->orig, r->addr) != 0)
			ol->orcpt[n] = strchr(r->orig, '@') ? xasprintf("rfc822;%s", r->orig)
			    : xasprintf("rfc822;%s@%s", r->orig, D->conf->hostname);
		ol->dr[n].final = r->addr;
		ol->dr[n].orig = ol->orcpt[n];
		/* relayed: passed to a smarthost that makes no report of its own (RFC 3464 2.3.3) */
		ol->dr[n].action = ok ? DSN_RELAYED : DSN_FAILED;
		ol->dr[n].status = ol->status[n];
		ol->dr[n].diagnostic = r->last_reply;
		ol->dr[n].last_attempt = r->last_attempt;
		ol->idx[n] = (unsigned)i;
		ol->n++;
	}
}

static void
owed_free(struct owed_list *ol)
{
	size_t i;

	for (i = 0; i < ol->n; i++)
		free(ol->orcpt[i]);
	free(ol->orcpt);
	free(ol->status);
	free(ol->dr);
	free(ol->idx);
}

void
bounce_finish(const struct spool_env *env)
{
	struct parked *p;

	if (parked_head == NULL && finish_notice(env) != -2)
		return;
	/* held: after those already waiting, once earlier notices are on disk */
	p = xcalloc(1, sizeof *p);
	spool_env_copy(&p->env, env);
	*parked_tail = p;
	parked_tail = &p->next;
	nparked++;
	held_back();
	if (resume_ev == NULL)
		resume_ev = evtimer_new(D->base, on_resume, NULL);
}

/* bounce_finish() itself; -2 when held by the bound (nothing done), else 0. */
static int
finish_notice(const struct spool_env *env)
{
	struct owed_list ol;
	size_t i;
	int any = 0, excluded = 0, rc;
	const char *to, *via;

	for (i = 0; i < env->nrcpt && !any; i++)
		any = owed(env, &env->rcpts[i]);
	for (i = 0; i < env->nrcpt && !any && !excluded; i++)
		excluded = env->rcpts[i].status == RCPT_FAILED && !env->rcpts[i].reported;
	if (excluded)
		log_qid(LOG_INFO, env->id, NULL, "no delivery status notification: NOTIFY excludes failures");
	if (!any) {
		remove_message(env->id, env->env_file);
		return 0;
	}
	if (inflight >= NOTICES_INFLIGHT_MAX)
		return -2;	/* before notice_target() logs a drop twice */
	if ((to = notice_target(env, &via, 1)) == NULL) {
		remove_message(env->id, env->env_file);
		return 0;
	}
	owed_collect(env, &ol);
	if ((rc = queue_notice(env, to, via, ol.dr, ol.n, NOTICE_FINAL, NULL)) == -1)
		log_qid(LOG_ERR, env->id, NULL, "delivery status notification to <%s> not queued; "
		    "the message is kept until the next start", to);
	owed_free(&ol);
	return rc == -2 ? -2 : 0;
}

void
bounce_report(struct spool_env *env)
{
	struct owed_list ol;
	size_t i;
	int any = 0;
	const char *to, *via;

	for (i = 0; i < env->nrcpt && !any; i++)
		any = owed(env, &env->rcpts[i]);
	/* nobody to tell: the final pass logs that once */
	if (!any || (to = notice_target(env, &via, 0)) == NULL)
		return;
	owed_collect(env, &ol);
	if (queue_notice(env, to, via, ol.dr, ol.n, NOTICE_PARTIAL, ol.idx) == 0)
		for (i = 0; i < ol.n; i++)
			env->rcpts[ol.idx[i]].reporting = 1;
	owed_free(&ol);
}

int
bounce_delay(const struct spool_env *env)
{
	struct dsn_rcpt *dr;
	char (*status)[16];
	size_t i, n = 0;
	long long until = D->conf->max_queue_time > 0 ?
	    (long long)env->arrival + (long long)D->conf->max_queue_time : 0;

	if (env->sender[0] == '\0')
		return 1;	/* nobody to tell: bounces and other mail from <> */
	dr = xcalloc(env->nrcpt ? env->nrcpt : 1, sizeof *dr);
	status = xcalloc(env->nrcpt ? env->nrcpt : 1, sizeof *status);
	for (i = 0; i < env->nrcpt; i++) {
		const struct spool_rcpt *r = &env->rcpts[i];
		if (r->status != RCPT_PENDING)
			continue;
		/* a NOTIFY without DELAY (or NEVER) asked not to hear about delays */
		if (r->notify[0] != '\0' && strstr(r->notify, "DELAY") == NULL)
			continue;
		status_of(r, status[n], sizeof status[n]);
		if (status[n][0] != '4')
			snprintf(status[n], sizeof status[n], "4.0.0");
		dr[n].final = r->addr;
		dr[n].orig = r->orcpt;
		dr[n].action = DSN_DELAYED;
		dr[n].status = status[n];
		dr[n].diagnostic = r->last_reply;
		dr[n].last_attempt = r->last_attempt;
		dr[n].will_retry_until = until;
		n++;
	}
	int rc = 1;
	if (n > 0 && queue_notice(env, env->sender, "bounce", dr, n, NOTICE_DELAY, NULL) != 0)
		rc = 0;	/* not written, or held by the bound: try again after the next attempt */
	free(status);
	free(dr);
	return rc;
}

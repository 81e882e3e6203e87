/*
 * dispatch: which ready message goes to which smarthost, and when.
 *
 * Owns the choice of smarthost (routes, failover order, back-off: see
 * msg_target()), `concurrency` (sessions per smarthost) and `rate_limit`
 * (messages per window).  The queue reaches it through its ready hook
 * (queue_on_ready()); sessions reach it for their next message
 * (dispatch_next()) and when their smarthost failed before any
 * transaction (dispatch_smarthost_failed()).  It starts sessions with
 * session_start() and counts them with session_count(); it never judges a
 * reply or touches a connection.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "commit.h"
#include "daemon.h"
#include "delivery_int.h"
#include "delivery_trouble.h"
#include "dispatch.h"
#include "log.h"
#include "queue.h"
#include "ratekeep.h"
#include "shstate.h"
#include "xmalloc.h"

static int warned_no_smarthost;

static int rate_paced(const struct smarthost_conf *sh);
static void rate_started(const struct smarthost_conf *sh, const struct qmsg *m);

static void failjobs_give_back(void);

void
dispatch_init(void)
{
	queue_on_ready(dispatch_kick);
	queue_on_flush(failjobs_give_back);
	commit_on_relief(dispatch_kick);
}

/*
 * Which smarthost a message goes to now: the one its sender's route names
 * (routes are strict: that smarthost only), else the first one from the
 * message's failover position that is not backed off; if all of those
 * are, the one at the position (a probe).
 */
static size_t
msg_target(const struct config *c, const struct qmsg *m, int *routed)
{
	size_t i;
	time_t now = time(NULL);
	const struct route_conf *rt = conf_route_find(c, m->env.sender);

	*routed = rt != NULL;
	if (rt != NULL)
		return rt->smarthost_index;
	size_t fo = m->fo < c->nsmarthosts ? m->fo : 0;
	for (i = fo; i < c->nsmarthosts; i++)
		if (!shstate_down(c->smarthosts[i].name, now))
			return i;
	return fo;
}

static int
wants(const struct dsession *s, const struct qmsg *m)
{
	int routed;

	return msg_target(s->rc->conf, m, &routed) == s->shidx;
}

/* The first ready message this session's smarthost should carry; or NULL. */
static struct qmsg *
find_for(struct dsession *s)
{
	struct qmsg *m;

	for (m = queue_ready_next(NULL); m != NULL; m = queue_ready_next(m))
		if (wants(s, m))
			return m;
	return NULL;
}

/* The same, taken. */
static struct qmsg *
take_for(struct dsession *s)
{
	struct qmsg *m = find_for(s);

	if (m != NULL)
		queue_take(m);
	return m;
}

/*
 * A message smarthost shidx (of conf) could not take: on to the next
 * smarthost in the same attempt (no attempt counted), or, after the last
 * one, deferred with `why` (ri: the relay and connection of the failure).
 */
static void
failover_or_defer(const struct config *conf, size_t shidx, const struct relay_info *ri, struct qmsg *m,
    enum trouble_kind k, const char *why)
{
	int routed;
	size_t i;

	msg_target(conf, m, &routed);
	if (!routed && shidx + 1 < conf->nsmarthosts && !D->shutting_down) {
		m->fo = (unsigned)shidx + 1;
		log_qid(LOG_INFO, m->env.id, NULL, "smarthost %s failed; trying %s",
		    conf->smarthosts[shidx].name, conf->smarthosts[m->fo].name);
		queue_release(m);	/* ready again, for the next smarthost */
		return;
	}
	/* no transaction reached the smarthost: deferrals are kept in memory (queue.c) */
	m->unreached = 1;
	for (i = 0; i < m->env.nrcpt; i++)
		if (m->env.rcpts[i].status == RCPT_PENDING)
			trouble_record_ri(ri, m, i, k, 0, why);
	m->unreached = 0;
	queue_release(m);
}

/*
 * The messages a failed smarthost leaves, all taken at once, are given
 * back FAIL_CHUNK at a time, one chunk per turn of the event loop: with
 * the whole queue due (a restart, a flush) and the smarthost refusing,
 * giving back 100,000 messages (a log line and an envelope write each)
 * kept the loop from answering anyone for most of a second.  A job keeps
 * what its session knew (the session ends meanwhile) and holds the
 * configuration it was started with.
 */
#define FAIL_CHUNK 256
struct failjob {
	struct runconf *rc;
	size_t shidx;
	struct relay_info ri;       /* its strings copied: */
	char *relay, *tls, *verify, *name;
	enum trouble_kind k;
	char *why;
	struct qmsg **msgs;
	size_t n, done;
	struct failjob *next;
};
static struct failjob *failjobs, **failjobs_tail = &failjobs;
static struct event *failjob_ev;

static void
failjob_free(struct failjob *j)
{
	runconf_unref(j->rc);
	free(j->relay);
	free(j->tls);
	free(j->verify);
	free(j->name);
	free(j->why);
	free(j->msgs);
	free(j);
}

/*
 * The messages failed smarthosts left and not given back yet: back as
 * they were, untried.  At shutdown, and at a flush: the admin asks for a
 * try now (the smarthost may be back), and a message still waiting in a
 * job would otherwise be deferred after the flush had passed it by (it
 * was in flight), and wait for its next retry.
 */
static void
failjobs_give_back(void)
{
	while (failjobs != NULL) {
		struct failjob *j = failjobs;
		failjobs = j->next;
		while (j->done < j->n)
			queue_release(j->msgs[j->done++]);
		failjob_free(j);
	}
	failjobs_tail = &failjobs;
}

static void
on_failjob(evutil_socket_t fd, short what, void *arg)
{
	struct failjob *j = failjobs;
	size_t end;

	(void)fd;
	(void)what;
	(void)arg;
	if (j == NULL)
		return;
	end = j->done + FAIL_CHUNK < j->n ? j->done + FAIL_CHUNK : j->n;
	while (j->done < end) {
		struct qmsg *m = j->msgs[j->done++];
		failover_or_defer(j->rc->conf, j->shidx, &j->ri, m, j->k, j->why);
	}
	if (j->done == j->n) {
		if ((failjobs = j->next) == NULL)
			failjobs_tail = &failjobs;
		failjob_free(j);
	}
	if (failjobs != NULL) {
		struct timeval now = { 0, 0 };
		evtimer_add(failjob_ev, &now);
	}
	dispatch_kick();	/* those failed over are ready again */
}

/* Take m for smarthost shidx: on its idle connection if it has one, else a new session. */
static void
dispatch_start(size_t shidx, struct qmsg *m)
{
	struct dsession *idle = session_idle(shidx);

	queue_take(m);
	rate_started(&D->rc->conf->smarthosts[shidx], m);
	if (idle != NULL)
		session_resume(idle, m);
	else
		session_start(shidx, m);
}

int
dispatch_may_idle(struct dsession *s)
{
	/*
	 * A message there that dispatch_next() did not give: the rate_limit
	 * holds it, and the connection ends; or the spool's removals do
	 * (commit_removals_full()), for a moment: it waits for the relief's kick.
	 */
	return !D->shutting_down && (find_for(s) == NULL || commit_removals_full());
}

struct qmsg *
dispatch_next(struct dsession *s)
{
	struct qmsg *m;

	/*
	 * Over its rate_limit: this connection ends and the message stays
	 * ready for the timer's kick (see rate_paced()), rather than holding
	 * the connection idle for as long as the window says.
	 */
	if (D->shutting_down || commit_removals_full() || find_for(s) == NULL || rate_paced(s->sh))
		return NULL;
	m = take_for(s);
	rate_started(s->sh, m);
	return m;
}

/*
 * One probe per back-off step, not one per message: m (the session's own,
 * or NULL) and every other ready message meant for this smarthost, all
 * taken before any is given back, go on to the next smarthost or are
 * deferred.
 */
void
dispatch_smarthost_failed(struct dsession *s, struct qmsg *m, enum trouble_kind k, const char *why)
{
	struct failjob *j = xcalloc(1, sizeof *j);
	struct relay_info ri;
	size_t cap = 0, first;

	if (m != NULL) {
		cap = 16;
		j->msgs = xreallocarray(j->msgs, cap, sizeof *j->msgs);
		j->msgs[j->n++] = m;
	}
	while ((m = take_for(s)) != NULL) {
		if (j->n == cap) {
			cap = cap ? 2 * cap : 16;
			j->msgs = xreallocarray(j->msgs, cap, sizeof *j->msgs);
		}
		j->msgs[j->n++] = m;
	}
	session_relay_info(s, &ri);
	j->rc = runconf_ref(s->rc);
	j->shidx = s->shidx;
	j->ri.relay = j->relay = xstrdup(ri.relay);
	j->ri.tls = j->tls = xstrdup(ri.tls);
	j->ri.verify = j->verify = ri.verify != NULL ? xstrdup(ri.verify) : NULL;
	j->ri.name = j->name = xstrdup(ri.name);
	j->ri.dsn = ri.dsn;
	j->k = k;
	j->why = xstrdup(why ? why : "");
	/* the first chunk now, the rest from the loop (in order, after the jobs before) */
	first = failjobs == NULL ? (j->n < FAIL_CHUNK ? j->n : FAIL_CHUNK) : 0;
	while (j->done < first) {
		m = j->msgs[j->done++];
		failover_or_defer(j->rc->conf, j->shidx, &j->ri, m, j->k, j->why);
	}
	if (j->done == j->n) {
		failjob_free(j);
		return;
	}
	*failjobs_tail = j;
	failjobs_tail = &j->next;
	if (failjob_ev == NULL)
		failjob_ev = evtimer_new(D->base, on_failjob, NULL);
	if (!evtimer_pending(failjob_ev, NULL)) {
		struct timeval now = { 0, 0 };
		evtimer_add(failjob_ev, &now);
	}
}

/*
 * rate_limit = COUNT/PERIOD: what is counted is messages, each one when a
 * session takes it for this smarthost (at session start or for the next
 * transaction on an open connection), since providers count messages
 * (Exchange Online: 30 a minute; Gmail: so many a day).  Further
 * transactions of the same message (recipients left by a 452) are not
 * counted again; a message taken and then not sent (the connection
 * failed) is: the count errs on the safe side.
 *
 * A sliding window, not even spacing: at most COUNT starts in any PERIOD,
 * which is how providers state their limits, and the whole allowance is
 * usable at once (a burst of 30 after a quiet minute) instead of one
 * message every 2 s.  A token bucket would let up to 2*COUNT-1 through in
 * one PERIOD.  The window (start times, in shstate by name) survives a
 * reload, and a restart (ratekeep.c saves it in the spool).
 *
 * A message that must wait stays ready: no attempt, no deferral, no log
 * line of its own, and no failover (msg_target() does not look at the
 * window): it waits for its own smarthost.  One timer re-kicks delivery
 * when the first waiting smarthost may start again.  One info line when a
 * smarthost starts to wait; shstate's paced_until says until when, and
 * goes back to 0 at the first kick that finds nothing waiting for it.
 */
static struct event *rate_timer;
static long long rate_timer_at;         /* monotonic ms; 0: not armed */
static unsigned long long kick_gen;     /* counts dispatch_kick() passes */

static void
rate_on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	rate_timer_at = 0;
	dispatch_kick();
}

static void
rate_timer_arm(long long now, long long wait)
{
	struct timeval tv;

	if (rate_timer_at != 0 && rate_timer_at <= now + wait)
		return;
	if (rate_timer == NULL)
		rate_timer = evtimer_new(D->base, rate_on_timer, NULL);
	rate_timer_at = now + wait;
	tv.tv_sec = (time_t)(wait / 1000);
	tv.tv_usec = (suseconds_t)(wait % 1000 * 1000);
	evtimer_add(rate_timer, &tv);
}

/* "30/m", "1000/h", "500/d", "100/90s" */
static void
rate_text(const struct smarthost_conf *sh, char *buf, size_t len)
{
	static const struct { unsigned secs; const char *unit; } units[] = {
		{ 86400, "d" }, { 3600, "h" }, { 60, "m" }, { 1, "s" },
	};
	size_t i;

	for (i = 0; i < sizeof units / sizeof units[0]; i++)
		if (sh->rate_limit_period == units[i].secs) {
			snprintf(buf, len, "%u/%s", sh->rate_limit_count, units[i].unit);
			return;
		}
	snprintf(buf, len, "%u/%us", sh->rate_limit_count, sh->rate_limit_period);
}

/* 1: this smarthost may not start another message now (the timer is armed). */
static int
rate_paced(const struct smarthost_conf *sh)
{
	if (sh->rate_limit_count == 0)
		return 0;
	struct shstate *st = shstate_get(sh->name);
	long long now = shstate_now_ms();
	long long wait = shstate_rate_wait(st, sh->rate_limit_count, sh->rate_limit_period, now);
	if (wait <= 0)
		return 0;
	if (st->paced_until == 0) {
		char rate[40];
		rate_text(sh, rate, sizeof rate);
		log_info("smarthost %s: rate_limit %s reached; next message in %llds",
		    sh->name, rate, (wait + 999) / 1000);
	}
	st->paced_until = time(NULL) + (time_t)((wait + 999) / 1000);
	st->paced_gen = kick_gen;
	rate_timer_arm(now, wait);
	return 1;
}

/*
 * A message counts against the window when it is taken for a
 * transaction.  The debug line is the daemon's own record of each start
 * (monotonic ms), which the tests read: what a smarthost sees is later
 * by a scheduling delay that no slack can bound on a busy machine.
 */
static void
rate_started(const struct smarthost_conf *sh, const struct qmsg *m)
{
	if (sh->rate_limit_count != 0) {
		long long now = shstate_now_ms();
		shstate_rate_start(shstate_get(sh->name), sh->rate_limit_count, now);
		ratekeep_touch();
		log_qid(LOG_DEBUG, m->env.id, NULL, "counted in the rate_limit window of smarthost %s at %lld ms", sh->name, now);
	}
}

/*
 * Start sessions for ready messages, at most `concurrency` per smarthost,
 * and no more messages than its rate_limit allows (those wait, ready).
 * After each start the ready list is walked again from its head: a
 * session that fails at once moves messages around.
 *
 * A pass stops as soon as every smarthost a ready message can go to is
 * busy (its sessions all taken, or paced): no later message could start
 * either.  Those smarthosts are, while no ready message is part-way
 * through failover, the first one up and the ones routes name (a backup
 * that nothing is failing over to does not keep the walk going); else
 * all of them.  Without that, each kick walked the whole ready list once
 * every session was busy, and a kick comes with every message that
 * becomes ready and every session that ends: loading a queue of 100,000
 * messages took minutes (the square of the queue) with the event loop
 * blocked, and nothing was delivered.  A smarthost found busy is not
 * asked again in the same pass.  Pacing is forgotten only after a walk of
 * the whole list (below).
 *
 * A pass starts at most KICK_STARTS sessions, then goes on from the event
 * loop (kick_more): a smarthost that refuses at once (down, a restart with
 * the whole queue due) fails each session as it starts, and one pass
 * would otherwise try every ready message with the loop blocked, the
 * control socket and the listeners unanswered until it was over.
 */
#define KICK_STARTS 64
static struct event *kick_more;

static void
on_kick_more(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	dispatch_kick();
}

/*
 * The smarthosts a ready message can go to now: with a ready message
 * part-way through failover, any; else the first one up (msg_target() of
 * a message at position 0) and those that routes name.
 */
static void
targets(const struct config *c, unsigned char *wanted)
{
	size_t i;
	time_t now = time(NULL);

	if (queue_ready_failover() > 0) {
		memset(wanted, 1, c->nsmarthosts);
		return;
	}
	memset(wanted, 0, c->nsmarthosts);
	for (i = 0; i < c->nsmarthosts && shstate_down(c->smarthosts[i].name, now); i++)
		;
	wanted[i < c->nsmarthosts ? i : 0] = 1;
	for (i = 0; i < c->nroutes; i++)
		wanted[c->routes[i].smarthost_index] = 1;
}

void
dispatch_kick(void)
{
	static int kicking;
	struct qmsg *m;
	unsigned char small[128], *busy, *wanted;
	size_t i, n, nwanted, nbusy;
	int started, whole = 0;
	unsigned nstarts = 0;

	if (kicking || D->shutting_down)
		return;
	if (D->conf->nsmarthosts == 0) {
		if (!warned_no_smarthost && queue_has_ready()) {
			log_warnx("no smarthost is configured: mail is accepted and kept in the queue");
			warned_no_smarthost = 1;
		}
		return;
	}
	warned_no_smarthost = 0;
	/* the finished messages' removals are behind: nothing starts until their relief kicks again */
	if (commit_removals_full())
		return;
	kicking = 1;
	kick_gen++;
	n = D->conf->nsmarthosts;
	busy = 2 * n <= sizeof small ? small : xcalloc(2 * n, 1);
	wanted = busy + n;
	targets(D->conf, wanted);
	for (nwanted = 0, i = 0; i < n; i++)
		nwanted += wanted[i];
	do {
		started = 0;
		memset(busy, 0, n);
		/* those a ready message can go to whose sessions are all taken */
		for (nbusy = 0, i = 0; i < n; i++)
			if (wanted[i] && session_count(i) >= D->conf->concurrency && session_idle(i) == NULL) {
				busy[i] = 1;
				nbusy++;
			}
		if (nbusy == nwanted) {
			whole = 0;
			break;
		}
		for (m = queue_ready_next(NULL); m != NULL; m = queue_ready_next(m)) {
			int routed;
			size_t t = msg_target(D->conf, m, &routed);
			struct shstate *st = shstate_get(D->conf->smarthosts[t].name);
			if (st->paced_until != 0)
				st->paced_gen = kick_gen;	/* still waiting for it */
			if (busy[t])
				continue;
			if ((session_count(t) < D->conf->concurrency || session_idle(t) != NULL) &&
			    !rate_paced(&D->conf->smarthosts[t])) {
				dispatch_start(t, m);
				started = 1;
				nstarts++;
				break;
			}
			busy[t] = 1;
			if (wanted[t] && ++nbusy == nwanted)
				break;	/* every smarthost wanted is busy: the rest of the list waits */
		}
		whole = m == NULL;	/* the walk saw the whole list */
	} while (started && nstarts < KICK_STARTS);
	if (busy != small)
		free(busy);
	if (started && nstarts >= KICK_STARTS) {
		/* the rest of the pass after the loop has had its turn */
		struct timeval now = { 0, 0 };
		if (kick_more == NULL)
			kick_more = evtimer_new(D->base, on_kick_more, NULL);
		evtimer_add(kick_more, &now);
		kicking = 0;
		return;
	}
	if (!whole) {
		kicking = 0;
		return;
	}
	/* a walk of the whole list: no message waited for it, its pacing is over */
	for (i = 0; i < n; i++) {
		struct shstate *st = shstate_get(D->conf->smarthosts[i].name);
		if (st->paced_until != 0 && st->paced_gen != kick_gen)
			st->paced_until = 0;
	}
	kicking = 0;
}

void
dispatch_idle(struct dsession *s)
{
	(void)s;
}

void
dispatch_ended(struct dsession *s)
{
	(void)s;
}

void
dispatch_shutdown(void)
{
	if (rate_timer != NULL) {
		event_free(rate_timer);
		rate_timer = NULL;
		rate_timer_at = 0;
	}
	if (kick_more != NULL) {
		event_free(kick_more);
		kick_more = NULL;
	}
	failjobs_give_back();
	if (failjob_ev != NULL) {
		event_free(failjob_ev);
		failjob_ev = NULL;
	}
	ratekeep_flush();
}

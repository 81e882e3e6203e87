/*
 * queue: see queue.h.
 *
 * Retry policy lives here and nowhere else: a deferred recipient is due
 * again after retry_schedule[attempts - 1] (the last step repeats); a
 * message is due at its earliest due pending recipient.  The waiting
 * messages are kept in a heap by the time they are due, under one timer
 * for the whole queue (armed for the earliest): a timer event per message
 * was a third of the memory a large deferred queue held.  Whether a
 * temporary failure after max_queue_time becomes permanent is the failure
 * table's decision (delivery_trouble.c, TK_EXPIRED), taken before the
 * outcome comes here.  Outcomes are persisted before a message is
 * rescheduled; messages whose recipients are all final are removed.
 * Writes of deferrals beyond UPDATES_MAX in the committer wait their turn
 * (write_msgs) and go as the envelope is then: memory stays bounded when a
 * whole queue is deferred at once.
 *
 * An envelope update the spool refuses (disk full, read-only) is written
 * again after PERSIST_RETRY seconds (the wait doubling while the spool
 * still refuses) until it is written, not only at the message's next
 * delivery attempt, which may be hours away: a recipient delivered
 * meanwhile would otherwise stay "pending" on disk once space is back, and
 * the next restart would deliver it a second time.
 *
 * A deferral at a smarthost that could not be reached (refused, timed
 * out, TLS or AUTH failed before any transaction of the message:
 * m->unreached, set by dispatch.c) stays in memory and is not written.
 * It says nothing of the message, and writing it cost an envelope write
 * for every queued message each time a down smarthost was tried (the
 * whole queue after a restart) and a second unlink when the message left
 * (a drain of 100,000 messages ran at half the speed).  A restart or a
 * crash loses only the count and the reply of those attempts since the
 * message was last written: every pending message is due at start, and
 * its first try says again why it waits.  Any later write of the message
 * (an outcome, a notice) takes them with it.
 *
 * Damaged messages: the content is checked (spool_msg_check(): there, and
 * the length recorded) each time a message becomes ready (but not again
 * right after it was loaded or committed), and once more by
 * the session on the descriptor it sends from (queue_verify()), so that a
 * file cut short while waiting is never sent in part.  The check is a
 * stat, nothing is read.
 */
#include "config.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bounce.h"
#include "commit.h"
#include "daemon.h"
#include "log.h"
#include "metrics.h"
#include "queue.h"
#include "spool/unreach.h"
#include "util.h"
#include "xmalloc.h"

#define PERSIST_RETRY     2	/* seconds before state the spool refused is written again */
#define PERSIST_RETRY_MAX 60	/* the wait doubles up to this while the spool still refuses */

static TAILQ_HEAD(, qmsg) all_msgs = TAILQ_HEAD_INITIALIZER(all_msgs);
static TAILQ_HEAD(, qmsg) ready_msgs = TAILQ_HEAD_INITIALIZER(ready_msgs);
/*
 * Envelope writes in the committer are bounded: a whole queue deferred at
 * once (a restart with the smarthost down) would otherwise hold one
 * request per message in memory until the disk caught up.  A deferral
 * beyond the bound waits in write_msgs and is written, as it is by then,
 * when a place frees; every other change goes at once.
 */
#define UPDATES_MAX 256
static TAILQ_HEAD(, qmsg) write_msgs = TAILQ_HEAD_INITIALIZER(write_msgs);
static unsigned nupdates;	/* COMMIT_UPDATE requests in the committer */
/*
 * Ready messages part-way through failover (fo > 0), for dispatch.c: with
 * none, every ready message goes to the first smarthost up or to its
 * route's.  fo changes only while a message is not ready.
 */
static size_t nready_fo;

static void
ready_remove(struct qmsg *m)
{
	TAILQ_REMOVE(&ready_msgs, m, ready_entry);
	if (m->fo > 0)
		nready_fo--;
}
static size_t nmsgs;
/*
 * Memory back to the system once a large queue has drained.  The heap
 * that held 100,000 envelopes is free inside but fragmented, and glibc
 * gives back only its top: measured, the daemon kept 59 MB resident with
 * the queue empty.  When the queue falls to an eighth of the most it held
 * since the last trim, and that was at least TRIM_QUEUE_MIN messages,
 * malloc_trim() returns every free page.  So a backlog of 100,000 costs
 * three trims as it drains (below 12,500, 1,562 and none after), and a
 * queue that stays small costs none.
 */
#define TRIM_QUEUE_MIN 1000
static size_t nmsgs_high;
static struct event *persist_ev;	/* retry of refused envelope updates */
static unsigned persist_delay = PERSIST_RETRY;
static char (*unsaved)[QID_LEN + 1];	/* ids whose update failed since the last retry */
static size_t nunsaved, unsaved_cap;
static char persist_retry_tag;		/* req->arg of such a retry */

static void queue_schedule(struct qmsg *m);
static void unready(struct qmsg *m);
static void damaged(struct qmsg *m, const char *why);
static struct qmsg *find_any(const char *id);

void
queue_init(void)
{
	TAILQ_INIT(&all_msgs);
	TAILQ_INIT(&ready_msgs);
}

size_t
queue_count(void)
{
	return nmsgs;
}

static queue_ready_fn ready_hook;
/*
 * While the spool is loaded at start, nothing is delivered: the ready
 * hook runs once the load is over, from the event loop (a queue of
 * 100,000 messages would otherwise start its delivery, and a smarthost
 * that refuses at once fail it, before the daemon answers anyone).
 */
static int loading;
static struct event *loaded_ev;

static void
on_loaded(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (ready_hook != NULL && !TAILQ_EMPTY(&ready_msgs))
		ready_hook();
}

void
queue_on_ready(queue_ready_fn fn)
{
	ready_hook = fn;
}

static void
make_ready(struct qmsg *m)
{
	char why[SPOOL_DAMAGED_MAX];

	if (m->ready || m->inflight || m->removed || m->env.held || m->env.damaged)
		return;
	if (m->checked)
		m->checked = 0;	/* a stat is what the load or the commit just did */
	else if (spool_msg_check(&D->spool, &m->env, -1, why, sizeof why) == -1) {
		damaged(m, why);
		return;
	}
	m->ready = 1;
	TAILQ_INSERT_TAIL(&ready_msgs, m, ready_entry);
	if (m->fo > 0)
		nready_fo++;
	if (ready_hook != NULL && !loading)
		ready_hook();
}

/*
 * The waiting messages: a binary heap by due time, m->slot being a
 * message's index + 1 (0: not in it), and one timer armed for the top.
 */
static struct qmsg **wait_heap;
static unsigned nwait, wait_cap;
static struct event *wait_ev;
static time_t wait_armed;		/* the due time the timer is armed for, 0: none */

static void
heap_put(unsigned i, struct qmsg *m)
{
	wait_heap[i] = m;
	m->slot = i + 1;
}

static void
heap_up(unsigned i)
{
	struct qmsg *m = wait_heap[i];

	while (i > 0 && wait_heap[(i - 1) / 2]->due > m->due) {
		heap_put(i, wait_heap[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	heap_put(i, m);
}

static void
heap_down(unsigned i)
{
	struct qmsg *m = wait_heap[i];

	for (;;) {
		unsigned c = 2 * i + 1;
		if (c >= nwait)
			break;
		if (c + 1 < nwait && wait_heap[c + 1]->due < wait_heap[c]->due)
			c++;
		if (wait_heap[c]->due >= m->due)
			break;
		heap_put(i, wait_heap[c]);
		i = c;
	}
	heap_put(i, m);
}

static void wait_arm(void);

/* Out of the waiting heap (nothing when it is not in it). */
static void
wait_del(struct qmsg *m)
{
	unsigned i;
	struct qmsg *last;

	if (m->slot == 0)
		return;
	i = m->slot - 1;
	m->slot = 0;
	last = wait_heap[--nwait];
	if (i < nwait) {
		heap_put(i, last);
		heap_up(i);
		heap_down(last->slot - 1);
	}
	if (nwait == 0 && wait_ev != NULL) {
		evtimer_del(wait_ev);
		wait_armed = 0;
	}
}

/* Wait until due (a message waiting already is moved). */
static void
wait_add(struct qmsg *m, time_t due)
{
	wait_del(m);
	if (nwait == wait_cap) {
		wait_cap = wait_cap ? 2 * wait_cap : 64;
		wait_heap = xreallocarray(wait_heap, wait_cap, sizeof *wait_heap);
	}
	m->due = due;
	heap_put(nwait++, m);
	heap_up(nwait - 1);
	wait_arm();
}

static void make_ready(struct qmsg *m);

static void
on_wait_timer(evutil_socket_t fd, short what, void *arg)
{
	time_t now = time(NULL);

	(void)fd;
	(void)what;
	(void)arg;
	wait_armed = 0;
	while (nwait > 0 && wait_heap[0]->due <= now) {
		struct qmsg *m = wait_heap[0];
		wait_del(m);
		make_ready(m);
	}
	wait_arm();
}

/* The timer, for the earliest waiting message (not touched when it is armed for that already). */
static void
wait_arm(void)
{
	time_t now, due;
	struct timeval tv = { 0, 0 };

	if (nwait == 0 || wait_heap[0]->due == wait_armed)
		return;
	due = wait_heap[0]->due;
	now = time(NULL);
	if (wait_ev == NULL)
		wait_ev = evtimer_new(D->base, on_wait_timer, NULL);
	tv.tv_sec = due > now ? due - now : 0;
	evtimer_add(wait_ev, &tv);
	wait_armed = due;
}

static struct qmsg *
qmsg_new(struct spool_env *env)
{
	struct qmsg *m = xcalloc(1, sizeof *m);

	m->env = *env;
	memset(env, 0, sizeof *env);
	TAILQ_INSERT_TAIL(&all_msgs, m, all_entry);
	if (++nmsgs > nmsgs_high)
		nmsgs_high = nmsgs;
	return m;
}

/* Resident kB of this process, or 0. */
static unsigned long
resident_kb(void)
{
	unsigned long size, pages = 0;
	FILE *f = fopen("/proc/self/statm", "re");

	if (f != NULL) {
		if (fscanf(f, "%lu %lu", &size, &pages) != 2)
			pages = 0;
		fclose(f);
	}
	return pages * (unsigned long)(sysconf(_SC_PAGESIZE) / 1024);
}

static void
trim_if_drained(void)
{
	unsigned long before, after;

	if (nmsgs_high < TRIM_QUEUE_MIN || nmsgs > nmsgs_high / 8 || D->shutting_down)
		return;
	before = resident_kb();
	malloc_trim(0);
	after = resident_kb();
	log_info("queue down to %zu message%s from %zu: %lu kB of memory returned to the system (%lu kB resident)",
	    nmsgs, nmsgs == 1 ? "" : "s", nmsgs_high, before > after ? before - after : 0, after);
	nmsgs_high = nmsgs;
}

static void
qmsg_free(struct qmsg *m)
{
	if (m->ready)
		ready_remove(m);
	if (m->write_waits)
		TAILQ_REMOVE(&write_msgs, m, write_entry);
	TAILQ_REMOVE(&all_msgs, m, all_entry);
	nmsgs--;
	wait_del(m);
	spool_env_free(&m->env);
	free(m);
	trim_if_drained();
}

/*
 * The maildrop files the messages found at start were imported from, by
 * name (sorted once the load is over): a drop still there was committed
 * before a crash kept it from being removed, and pickup removes it
 * instead of importing it a second time.
 */
struct loaded_drop {
	char *name;
	char id[QID_LEN + 1];
	uid_t uid;                  /* the submitter: only its own drop is taken for the message */
};
static struct loaded_drop *loaded_drops;
static size_t nloaded_drops, loaded_drops_cap;

static int
cmp_drop(const void *a, const void *b)
{
	return strcmp(((const struct loaded_drop *)a)->name, ((const struct loaded_drop *)b)->name);
}

const char *
queue_loaded_drop(const char *name, uid_t *submitter)
{
	struct loaded_drop key = { .name = (char *)name }, *hit;

	if (nloaded_drops == 0)
		return NULL;
	hit = bsearch(&key, loaded_drops, nloaded_drops, sizeof *loaded_drops, cmp_drop);
	if (hit == NULL)
		return NULL;
	*submitter = hit->uid;
	return hit->id;
}

void
queue_loaded_drops_free(void)
{
	size_t i;

	for (i = 0; i < nloaded_drops; i++)
		free(loaded_drops[i].name);
	free(loaded_drops);
	loaded_drops = NULL;
	nloaded_drops = loaded_drops_cap = 0;
}

/*
 * The attempt records unreach_apply() added, in the form the daemon
 * holds those not written yet (see pending_attempt()): a relay of "none"
 * and the recipient's latest reply are not copied.
 */
static void
hist_to_memory(struct spool_env *env)
{
	size_t j;

	for (j = 0; j < env->nhist; j++) {
		struct spool_attempt *h = &env->hist[j];
		const char *last = h->rcpt < env->nrcpt ? env->rcpts[h->rcpt].last_reply : NULL;
		if (h->relay != NULL && strcmp(h->relay, "none") == 0) {
			free(h->relay);
			h->relay = NULL;
		}
		if (h->reply != NULL && last != NULL && strcmp(h->reply, last) == 0) {
			free(h->reply);
			h->reply = NULL;
		}
	}
}

static size_t nrestored;	/* recipients queue_load() gave their kept tries back */

static int
load_one(struct spool_env *env, void *arg)
{
	struct unreach_cursor *kept = arg;
	size_t i, restored;
	int pending = 0;

	if (env->drop != NULL) {
		if (nloaded_drops == loaded_drops_cap) {
			loaded_drops_cap = loaded_drops_cap ? 2 * loaded_drops_cap : 16;
			loaded_drops = xreallocarray(loaded_drops, loaded_drops_cap, sizeof *loaded_drops);
		}
		loaded_drops[nloaded_drops].name = xstrdup(env->drop);
		loaded_drops[nloaded_drops].uid = env->uid;
		memcpy(loaded_drops[nloaded_drops++].id, env->id, QID_LEN + 1);
	}
	if (env->damaged) {
		damaged(qmsg_new(env), NULL);	/* said once, kept for an admin */
		return 1;
	}
	/* the history stays on disk: the updates add to it (spool_env_stage_update()) */
	spool_env_clear_hist(env);
	/* the tries the last stop kept: not on disk yet, as they were before it */
	restored = unreach_apply(kept, env);
	nrestored += restored;
	hist_to_memory(env);
	for (i = 0; i < env->nrcpt; i++) {
		if (env->rcpts[i].status == RCPT_PENDING) {
			/* A restart is a good reason to try again now. */
			env->rcpts[i].next_attempt = 0;
			pending = 1;
		}
	}
	struct qmsg *m = qmsg_new(env);
	m->checked = 1;	/* spool_env_load() checked the content */
	m->memonly = restored > 0;
	if (!pending) {
		/*
		 * Finished before a crash (or its notification could not be
		 * queued): notify if it calls for it, then remove.
		 */
		bounce_finish(&m->env);
		qmsg_free(m);
		return 1;
	}
	queue_schedule(m);
	return 1;	/* env contents now owned by the qmsg */
}

int
queue_load(void)
{
	struct timeval now = { 0, 0 };
	int n;

	struct unreach_cursor *kept = unreach_open(&D->spool);

	if (kept == NULL)
		log_warn("spool: %s/%s: cannot be read (the tries at unreached smarthosts the last stop "
		    "kept are not counted)", D->spool.dir, UNREACH_FILE);
	nrestored = 0;
	loading = 1;
	n = spool_scan(&D->spool, SPOOL_SCAN_REMOVE_ORPHANS | SPOOL_SCAN_NO_HISTORY, load_one, kept);
	loading = 0;
	if (nrestored > 0)
		log_info("queue: the tries of %zu recipient%s at unreached smarthosts, kept by the last stop, "
		    "restored", nrestored, nrestored == 1 ? "" : "s");
	unreach_close(kept);
	/* in memory now, as before the stop: a crash from here on loses them, as it would have */
	if (unreach_remove(&D->spool) == -1)
		log_warn("spool: %s/%s: cannot remove", D->spool.dir, UNREACH_FILE);
	if (loaded_ev == NULL)
		loaded_ev = evtimer_new(D->base, on_loaded, NULL);
	evtimer_add(loaded_ev, &now);

	if (nloaded_drops > 1)
		qsort(loaded_drops, nloaded_drops, sizeof *loaded_drops, cmp_drop);
	if (n > 0)
		log_info("queue: %d message%s loaded from the spool", n, n == 1 ? "" : "s");
	return n;
}

void
queue_add(struct spool_env *env)
{
	struct qmsg *m = qmsg_new(env);

	m->checked = 1;	/* written and synced a moment ago */
	make_ready(m);
}

size_t
queue_ready_failover(void)
{
	return nready_fo;
}

int
queue_has_ready(void)
{
	return !TAILQ_EMPTY(&ready_msgs);
}

struct qmsg *
queue_ready_next(struct qmsg *after)
{
	return after == NULL ? TAILQ_FIRST(&ready_msgs) : TAILQ_NEXT(after, ready_entry);
}

/* Monotonic milliseconds, wrapping at 2^32 (durations under 49 days come out right). */
static uint32_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint32_t)((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
}

void
queue_take(struct qmsg *m)
{
	ready_remove(m);
	m->ready = 0;
	m->inflight = 1;
	m->taken_ms = mono_ms();
}

/*
 * Hold a message as damaged and say so, once: why (NULL: already in
 * env.damaged, from the spool scan).  Nothing is written: the files stay
 * as found; a restart finds the damage again and says it once again.
 */
static void
damaged(struct qmsg *m, const char *why)
{
	if (why != NULL) {
		if (m->env.damaged)
			return;
		spool_env_set_damaged(&m->env, why);
	}
	if (!m->inflight)
		unready(m);
	log_qid(LOG_ERR, m->env.id, "damaged", "damaged: %s; held, not delivered "
	    "(mailrelay show or delete it; a restart checks it again)", m->env.damaged);
}

int
queue_verify(struct qmsg *m, int fd)
{
	char why[SPOOL_DAMAGED_MAX];

	if (m->env.damaged)
		return -1;
	if (spool_msg_check(&D->spool, &m->env, fd, why, sizeof why) == 0)
		return 0;
	damaged(m, why);
	return -1;
}

void
queue_untake(struct qmsg *m)
{
	m->inflight = 0;
}

void
queue_giveback(struct qmsg *m)
{
	m->inflight = 0;
	if (!D->shutting_down)
		queue_schedule(m);
}

void
queue_damaged(struct qmsg *m, const char *why)
{
	damaged(m, why);
}

unsigned
queue_retry_delay(unsigned attempts)
{
	const struct config *c = D->conf;
	size_t i = attempts == 0 ? 0 : attempts - 1;

	if (c->nretry == 0)
		return 300;
	if (i >= c->nretry)
		i = c->nretry - 1;
	return c->retry_schedule[i];
}

/*
 * Up to a tenth more than the delay, at random, so that messages deferred
 * together (a smarthost down for an hour) do not all come back in the same
 * second.  Delays under 10 s are kept exact.
 */
static unsigned
retry_jitter(unsigned delay)
{
	if (delay < 10)
		return delay;
	return delay + arc4random_uniform(delay / 10 + 1);
}

static void
derive_dsn(char *out, size_t len, enum outcome o, const char *reply)
{
	/* "250 2.0.0 text": take the enhanced code when the reply has one. */
	if (reply != NULL && strlen(reply) > 9 && reply[3] == ' ' &&
	    (reply[4] == '2' || reply[4] == '4' || reply[4] == '5') && reply[5] == '.') {
		size_t n = strcspn(reply + 4, " ");
		if (n < len && n >= 5) {
			memcpy(out, reply + 4, n);
			out[n] = '\0';
			return;
		}
	}
	snprintf(out, len, "%s", o == OUTCOME_SENT ? "2.0.0" : o == OUTCOME_DEFERRED ? "4.0.0" : "5.0.0");
}

static const char *const outcome_names[] = {
	[OUTCOME_SENT] = "sent",
	[OUTCOME_DEFERRED] = "deferred",
	[OUTCOME_BOUNCED] = "bounced",
};

/*
 * An attempt, kept until the envelope is next written, and kept small: a
 * whole queue deferred at once holds one each until the committer gets
 * to it.  A relay of "none" is NULL, and the reply is NULL, being the
 * recipient's last_reply: the next outcome of that recipient gives it
 * the string, and queue_attempts_own() before the attempts leave.
 */
static void
pending_attempt(struct qmsg *m, time_t when, size_t idx, const char *outcome, const char *relay)
{
	struct spool_attempt *h = spool_env_new_attempt(&m->env);

	h->when = when;
	h->rcpt = (unsigned)idx;
	strlcpy_mr(h->outcome, outcome, sizeof h->outcome);
	h->relay = relay == NULL || strcmp(relay, "none") == 0 ? NULL : xstrdup(relay);
	h->reply = NULL;
}

void
queue_attempts_own(struct spool_env *env)
{
	size_t i;

	for (i = 0; i < env->nhist; i++) {
		struct spool_attempt *h = &env->hist[i];
		if (h->relay == NULL)
			h->relay = xstrdup("none");
		if (h->reply == NULL)
			h->reply = xstrdup(h->rcpt < env->nrcpt && env->rcpts[h->rcpt].last_reply ?
			    env->rcpts[h->rcpt].last_reply : "");
	}
}

/*
 * The attempt record not written yet that a deferral of recipient idx at
 * an unreached smarthost repeats (the latest of idx's, a deferral from the
 * same relay with the same reply), or NULL.
 */
static struct spool_attempt *
unreached_again(struct qmsg *m, size_t idx, const char *relay, const char *text)
{
	const struct spool_rcpt *r = &m->env.rcpts[idx];
	struct spool_attempt *h = NULL;
	size_t j;

	for (j = m->env.nhist; j > 0; j--)
		if (m->env.hist[j - 1].rcpt == idx) {
			h = &m->env.hist[j - 1];
			break;
		}
	if (relay != NULL && strcmp(relay, "none") == 0)
		relay = NULL;
	if (h == NULL || h->reply != NULL || strcmp(h->outcome, outcome_names[OUTCOME_DEFERRED]) != 0 ||
	    r->last_reply == NULL || strcmp(r->last_reply, text) != 0)
		return NULL;
	if ((h->relay == NULL) != (relay == NULL) || (relay != NULL && strcmp(h->relay, relay) != 0))
		return NULL;
	return h;
}

void
queue_outcome(struct qmsg *m, size_t idx, enum outcome o, const struct relay_info *ri,
    const char *dsn, const char *kind, const char *reply)
{
	struct spool_rcpt *r = &m->env.rcpts[idx];
	struct spool_attempt *again = NULL;
	struct timeval now;
	char dsnbuf[32], text[1024], orig[600], verify[200];
	double delay;

	gettimeofday(&now, NULL);
	r->attempts++;
	r->last_attempt = now.tv_sec;
	sanitize_text(text, sizeof text, reply ? reply : "", strlen(reply ? reply : ""), 0);
	/*
	 * The same failure of an unreached smarthost once more: its record
	 * is the one before, whose time moves on (the attempts count them all),
	 * so that a long outage holds one record per recipient, not one per try.
	 */
	if (o == OUTCOME_DEFERRED && m->unreached)
		again = unreached_again(m, idx, ri->relay, text);
	/* the attempt before, not written yet, takes the reply it had (see pending_attempt()) */
	for (size_t j = 0; again == NULL && j < m->env.nhist; j++)
		if (m->env.hist[j].rcpt == idx && m->env.hist[j].reply == NULL) {
			m->env.hist[j].reply = r->last_reply;
			r->last_reply = NULL;
		}
	if (again == NULL) {
		free(r->last_reply);
		r->last_reply = xstrdup(text);
	}

	metrics_delivery(ri->name, o);
	if (o == OUTCOME_SENT)
		D->stats.sent++;
	else if (o == OUTCOME_BOUNCED)
		D->stats.bounced++;
	else
		D->stats.deferred++;
	switch (o) {
	case OUTCOME_SENT:
		m->urgent = 1;	/* on disk before anything can send it again */
		r->status = RCPT_SENT;
		r->next_attempt = 0;
		/* NOTIFY=SUCCESS the smarthost could not take: we owe a "relayed" notice (RFC 3461 5.2.2) */
		if (strstr(r->notify, "SUCCESS") != NULL && !ri->dsn)
			r->success_notice = 1;
		break;
	case OUTCOME_BOUNCED:
		m->urgent = 1;
		r->status = RCPT_FAILED;
		r->next_attempt = 0;
		break;
	case OUTCOME_DEFERRED:
		r->status = RCPT_PENDING;
		r->next_attempt = now.tv_sec + retry_jitter(queue_retry_delay(r->attempts));
		break;
	}
	/*
	 * A deferral at a smarthost that could not be reached says nothing of
	 * the message: it stays in memory (see the head of this file).
	 */
	if (!(o == OUTCOME_DEFERRED && m->unreached))
		m->dirty = 1;
	else
		m->memonly = 1;
	m->fo = 0;	/* an outcome ends this attempt's walk through the smarthosts */
	if (dsn == NULL) {
		derive_dsn(dsnbuf, sizeof dsnbuf, o, r->last_reply);
		dsn = dsnbuf;
	}
	/* carried with the recipient: its notice reports this status, never re-parsed */
	strlcpy_mr(r->dsn, dsn, sizeof r->dsn);
	strlcpy_mr(r->kind, kind ? kind : "", sizeof r->kind);
	delay = (double)(now.tv_sec - m->env.arrival) +
	    (double)(now.tv_usec - m->env.arrival_usec) / 1e6;
	if (delay < 0)
		delay = 0;
	if (r->orig != NULL && strcmp(r->orig, r->addr) != 0)
		snprintf(orig, sizeof orig, ", orig_to=<%s>", r->orig);
	else
		orig[0] = '\0';
	if (ri->verify != NULL) {
		/* commas would split the field for log parsers */
		char *c;
		snprintf(verify, sizeof verify, ", verify=%s", ri->verify);
		for (c = verify + 2; (c = strchr(c, ',')) != NULL; )
			*c = ';';
	} else
		verify[0] = '\0';
	if (again != NULL)
		again->when = now.tv_sec;
	else
		pending_attempt(m, now.tv_sec, idx, outcome_names[o], ri->relay);
	log_qid(o == OUTCOME_SENT ? LOG_INFO : LOG_WARNING, m->env.id, outcome_names[o],
	    "to=<%s>%s, relay=%s, tls=%s%s, delay=%.2f, attempts=%u, dsn=%s, status=%s (%s)",
	    r->addr, orig, ri->relay, ri->tls, verify, delay, r->attempts, dsn, outcome_names[o],
	    r->last_reply);
}

/* Arm the timer for the earliest pending recipient, or make it ready now. */
static void
queue_schedule(struct qmsg *m)
{
	time_t next = 0, now = time(NULL);
	size_t i;
	int any = 0;

	for (i = 0; i < m->env.nrcpt; i++) {
		const struct spool_rcpt *r = &m->env.rcpts[i];
		if (r->status != RCPT_PENDING)
			continue;
		if (!any || r->next_attempt < next)
			next = r->next_attempt;
		any = 1;
	}
	if (!any)
		return;
	if (next <= now) {
		make_ready(m);
		return;
	}
	wait_add(m, next);
}

static void on_committed(struct commit_req *req, void *arg);

/*
 * An update of the envelope as it is now; the message is clean from here
 * on.  The history is not kept in memory (up to SPOOL_HISTORY_MAX attempts
 * per message, most of a deferred queue's memory): a message holds the
 * attempts made since its last update, which the request takes and the
 * committer adds to those on disk.  The request carries the envelope
 * rendered, not a copy of it: a few
 * hundred octets instead of a structure and its strings, which matters
 * when a whole queue is deferred at once (100,000 messages after a
 * restart with the smarthost down).
 */
static struct commit_req *
update_req(struct qmsg *m)
{
	struct commit_req *req = xcalloc(1, sizeof *req);

	req->kind = COMMIT_UPDATE;
	nupdates++;	/* on_committed() counts it out */
	m->env.env_file = 1;	/* from now on its removal unlinks an .env too */
	memcpy(req->id, m->env.id, sizeof req->id);
	/* the attempts made since the last update go with it; the text has none */
	queue_attempts_own(&m->env);
	req->hist = m->env.hist;
	req->nhist = m->env.nhist;
	m->env.hist = NULL;
	m->env.nhist = 0;
	req->text = spool_env_render(&m->env, &req->textlen);
	m->dirty = 0;
	m->memonly = 0;	/* the deferrals kept in memory go with it */
	return req;
}

static int
cmp_msg_id(const void *a, const void *b)
{
	const struct qmsg *const *x = a, *const *y = b;

	return strcmp((*x)->env.id, (*y)->env.id);
}

void
queue_save_unreached(void)
{
	struct unreach_out *out = NULL;
	struct qmsg *m, **v = NULL;
	size_t i, j, k, nv = 0, cap = 0, n = 0;

	TAILQ_FOREACH(m, &all_msgs, all_entry) {
		if (!m->memonly || m->removed || m->env.damaged)
			continue;
		if (nv == cap) {
			cap = cap ? 2 * cap : 256;
			v = xreallocarray(v, cap, sizeof *v);
		}
		v[nv++] = m;
	}
	/* in the order of their ids, which a scan of the queue reads them back in */
	if (nv > 1)
		qsort(v, nv, sizeof *v, cmp_msg_id);
	for (k = 0; k < nv; k++) {
		m = v[k];
		for (i = 0; i < m->env.nrcpt; i++) {
			const struct spool_rcpt *r = &m->env.rcpts[i];
			const struct spool_attempt *h = NULL;
			struct unreach_rec rec;
			if (r->status != RCPT_PENDING)
				continue;
			for (j = m->env.nhist; j > 0 && h == NULL; j--)
				if (m->env.hist[j - 1].rcpt == i)
					h = &m->env.hist[j - 1];
			if (h == NULL)
				continue;	/* nothing newer than its envelope */
			if (out == NULL && (out = unreach_begin(&D->spool)) == NULL) {
				log_warn("spool: %s/tmp/%s: cannot create (the tries at unreached smarthosts "
				    "are not kept)", D->spool.dir, UNREACH_FILE);
				free(v);
				return;
			}
			memset(&rec, 0, sizeof rec);
			memcpy(rec.id, m->env.id, sizeof rec.id);
			rec.rcpt = (unsigned)i;
			rec.attempts = r->attempts;
			rec.when = r->last_attempt;
			rec.kind = r->kind;
			rec.dsn = r->dsn;
			rec.relay = h->relay != NULL ? h->relay : "none";
			rec.reply = r->last_reply != NULL ? r->last_reply : "";
			unreach_add(out, &rec);
			n++;
		}
	}
	free(v);
	if (out == NULL)
		return;
	if (unreach_commit(out) == -1) {
		log_warn("spool: %s/%s: cannot write (the tries at unreached smarthosts are not kept)",
		    D->spool.dir, UNREACH_FILE);
		return;
	}
	log_info("queue: the tries of %zu recipient%s at unreached smarthosts kept in %s/%s",
	    n, n == 1 ? "" : "s", D->spool.dir, UNREACH_FILE);
}

/*
 * Write the envelope as it is now (arg: NULL, or &persist_retry_tag for a
 * retry); a deferral waits its turn when UPDATES_MAX writes are in the
 * committer already (it is written as it is then).
 */
static void
persist(struct qmsg *m, void *arg)
{
	struct commit_req *req;

	if (m->env.damaged)
		return;		/* never written over: the files stay as found */
	if (!m->urgent && arg == NULL && nupdates >= UPDATES_MAX) {
		if (!m->write_waits) {
			m->write_waits = 1;
			TAILQ_INSERT_TAIL(&write_msgs, m, write_entry);
		}
		return;
	}
	if (m->write_waits) {
		m->write_waits = 0;
		TAILQ_REMOVE(&write_msgs, m, write_entry);
	}
	m->urgent = 0;
	req = update_req(m);

	req->done = on_committed;
	req->arg = arg;
	commit_submit(req);
}

/* Someone waits for a change to be on disk (an admin's hold or delete). */
struct qwait {
	queue_done_fn fn;
	void *arg;
	struct qmsg *deleting;      /* a removal: the message, kept out of sight until it is done */
};

static void
on_committed_wait(struct commit_req *req, void *arg)
{
	struct qwait w = *(struct qwait *)arg;
	char err[sizeof req->err];
	int ok = req->rc == 0;

	free(arg);
	snprintf(err, sizeof err, "%s", ok ? "" : req->err);
	on_committed(req, NULL);
	if (w.deleting != NULL && ok)
		qmsg_free(w.deleting);
	else if (w.deleting != NULL) {
		/* still on disk: back in the queue, as it would be after a restart */
		w.deleting->removed = w.deleting->deleting = 0;
		queue_schedule(w.deleting);
	}
	w.fn(ok, err, w.arg);
}

static void
commit_wait(struct commit_req *req, struct qmsg *deleting, queue_done_fn fn, void *arg)
{
	struct qwait *w = xcalloc(1, sizeof *w);

	w->fn = fn;
	w->arg = arg;
	w->deleting = deleting;
	req->done = on_committed_wait;
	req->arg = w;
	commit_submit(req);
}

static int
cmp_qid(const void *a, const void *b)
{
	return strcmp(a, b);
}

/*
 * One pass over the queue whatever the number of failures: the messages
 * whose update failed become dirty again, and every dirty message no
 * session holds is written (one in flight is written by its
 * queue_release()).  While the spool keeps refusing, the wait doubles.
 */
static void
on_persist_retry(evutil_socket_t fd, short what, void *arg)
{
	struct qmsg *m;

	(void)fd;
	(void)what;
	(void)arg;
	if (nunsaved > 1)
		qsort(unsaved, nunsaved, sizeof *unsaved, cmp_qid);
	TAILQ_FOREACH(m, &all_msgs, all_entry) {
		if (nunsaved > 0 && bsearch(m->env.id, unsaved, nunsaved, sizeof *unsaved, cmp_qid) != NULL)
			m->dirty = 1;
		if (m->dirty && !m->inflight && !m->removed)
			persist(m, &persist_retry_tag);
	}
	nunsaved = 0;
	persist_delay = persist_delay * 2 > PERSIST_RETRY_MAX ? PERSIST_RETRY_MAX : persist_delay * 2;
}

/* The update of message id failed: write it again at the next retry. */
static void
persist_later(const char *id)
{
	struct timeval tv = { .tv_sec = persist_delay, .tv_usec = 0 };

	if (D->shutting_down)
		return;
	if (nunsaved == unsaved_cap) {
		unsaved_cap = unsaved_cap ? 2 * unsaved_cap : 16;
		unsaved = xreallocarray(unsaved, unsaved_cap, sizeof *unsaved);
	}
	memcpy(unsaved[nunsaved++], id, QID_LEN + 1);
	if (persist_ev == NULL)
		persist_ev = evtimer_new(D->base, on_persist_retry, NULL);
	if (!evtimer_pending(persist_ev, NULL))
		evtimer_add(persist_ev, &tv);
}

/* An update was not written: its attempts go back to the message, before those made since. */
static void
hist_back(struct commit_req *req)
{
	struct qmsg *m = find_any(req->id);
	struct spool_env h = { .hist = NULL, .nhist = 0 };
	size_t i;

	if (m == NULL || req->nhist == 0)
		return;
	queue_attempts_own(&m->env);
	for (i = 0; i < req->nhist; i++)
		spool_env_add_attempt(&h, req->hist[i].when, req->hist[i].rcpt, req->hist[i].outcome,
		    req->hist[i].relay, req->hist[i].reply);
	for (i = 0; i < m->env.nhist; i++)
		spool_env_add_attempt(&h, m->env.hist[i].when, m->env.hist[i].rcpt, m->env.hist[i].outcome,
		    m->env.hist[i].relay, m->env.hist[i].reply);
	spool_env_clear_hist(&m->env);
	m->env.hist = h.hist;
	m->env.nhist = h.nhist;
}

static void
on_committed(struct commit_req *req, void *arg)
{
	const char *id = req->id;
	int retry = arg == &persist_retry_tag;

	if (req->rc == -1) {
		/* said once per refused state change; retries of it fail quietly */
		if (retry)
			log_debug("%s: still cannot record delivery state: %s", id, req->err);
		else
			log_errx("%s: cannot record delivery state: %s", id, req->err);
		if (req->kind == COMMIT_UPDATE) {
			hist_back(req);
			persist_later(req->id);
		}
	} else if (req->kind == COMMIT_UPDATE) {
		if (retry)
			log_info("%s: delivery state recorded", id);
		persist_delay = PERSIST_RETRY;	/* the spool takes writes again */
	}
	if (req->kind == COMMIT_UPDATE) {
		nupdates--;
		/*
		 * The next waiting envelopes, as they are now (one in a session
		 * is written at its release).  Not while shutting down: they
		 * only hold deferrals (every other change goes at once), which
		 * a restart does not need (every pending recipient is due again
		 * at start); writing 100,000 of them made a stop take a quarter
		 * of a minute after a retry of the whole queue.
		 */
		while (nupdates < UPDATES_MAX && !TAILQ_EMPTY(&write_msgs) && !D->shutting_down) {
			struct qmsg *m = TAILQ_FIRST(&write_msgs);
			TAILQ_REMOVE(&write_msgs, m, write_entry);
			m->write_waits = 0;
			if (m->dirty && !m->inflight && !m->deleting)
				persist(m, NULL);
		}
	}
	commit_req_free(req);
}

/* Every recipient is final: report what is owed, then remove (bounce.c). */
static void
finish(struct qmsg *m)
{
	size_t i;
	int failed = 0;

	for (i = 0; i < m->env.nrcpt; i++)
		if (m->env.rcpts[i].status == RCPT_FAILED)
			failed = 1;
	log_qid(LOG_INFO, m->env.id, "removed", "removed%s", failed ? " (some recipients failed)" : "");
	bounce_finish(&m->env);
	qmsg_free(m);
}

void
queue_release(struct qmsg *m)
{
	size_t i;
	int pending = 0, reporting = 0;

	/* one attempt of this message at one smarthost, for the duration histogram */
	if (m->inflight) {
		metrics_delivery_duration((double)(uint32_t)(mono_ms() - m->taken_ms) / 1e3);
	}
	m->inflight = 0;
	if (m->env.damaged)
		return;		/* found damaged by its session: held, nothing decided is written */
	for (i = 0; i < m->env.nrcpt; i++) {
		if (m->env.rcpts[i].status == RCPT_PENDING)
			pending++;
		reporting |= m->env.rcpts[i].reporting;
	}
	/* failures decided in this pass are reported now, not when the last recipient is final */
	if (pending > 0 && !D->shutting_down)
		bounce_report(&m->env);
	if (pending == 0 && !reporting) {
		finish(m);
		return;
	}
	if (pending == 0) {
		/* final, but a notice is on its way to disk: finish once it is there */
		unready(m);
		m->removed = 1;
		if (m->dirty)
			persist(m, NULL);
		return;
	}
	/* delay_warning: one notice per message, once it has waited that long */
	if (!m->env.warned && D->conf->delay_warning > 0 &&
	    time(NULL) - m->env.arrival >= (time_t)D->conf->delay_warning && bounce_delay(&m->env)) {
		m->env.warned = 1;
		m->dirty = 1;
		m->urgent = 1;	/* the notice is out: never sent twice */
	}
	if (m->dirty)
		persist(m, NULL);
	if (!D->shutting_down)
		queue_schedule(m);
}

void
queue_reported(const char *id, const unsigned *idx, size_t n, int ok)
{
	struct qmsg *m;
	size_t i;

	if ((m = find_any(id)) == NULL)
		return;		/* deleted meanwhile */
	for (i = 0; i < n; i++) {
		if (idx[i] >= m->env.nrcpt)
			continue;
		m->env.rcpts[idx[i]].reporting = 0;
		/* not written: the next pass (or the final one) tries again */
		if (ok)
			m->env.rcpts[idx[i]].reported = 1;
	}
	if (ok)
		m->dirty = m->urgent = 1;
	if (m->deleting || (!ok && !m->removed))
		return;
	for (i = 0; i < m->env.nrcpt; i++)
		if (m->env.rcpts[i].reporting)
			return;		/* another notice is still on its way */
	if (m->removed) {
		finish(m);	/* the rest of what is owed, then removal */
		return;
	}
	if (!m->inflight)
		persist(m, NULL);
}

/*
 * A session keeps the message for another transaction (recipients a 452
 * left for later): what is decided so far is written now, so that a crash
 * during that transaction cannot send the earlier ones again.
 */
void
queue_checkpoint(struct qmsg *m)
{
	if (m->dirty)
		persist(m, NULL);
}

/* Due now, unless it is being delivered, already due, or finished. */
static void
flush_msg(struct qmsg *m)
{
	size_t i;

	if (m->inflight || m->ready || m->removed || m->env.damaged)
		return;
	for (i = 0; i < m->env.nrcpt; i++)
		m->env.rcpts[i].next_attempt = 0;
	wait_del(m);
	make_ready(m);
}

static queue_ready_fn flush_hook;

void
queue_on_flush(queue_ready_fn fn)
{
	flush_hook = fn;
}

void
queue_flush_all(void)
{
	struct qmsg *m;

	if (flush_hook != NULL)
		flush_hook();	/* messages held by delivery, not tried, come back first */
	TAILQ_FOREACH(m, &all_msgs, all_entry)
		flush_msg(m);
}

int
queue_flush_one(const char *id)
{
	struct qmsg *m;

	if (flush_hook != NULL)
		flush_hook();
	TAILQ_FOREACH(m, &all_msgs, all_entry)
		if (strcmp(m->env.id, id) == 0 && !m->removed) {
			if (m->env.damaged)
				return -3;	/* never sent as found: its files need repair */
			flush_msg(m);
			return 0;
		}
	return -1;
}

/* A message of the queue, those leaving it included. */
static struct qmsg *
find_any(const char *id)
{
	struct qmsg *m;

	TAILQ_FOREACH(m, &all_msgs, all_entry)
		if (strcmp(m->env.id, id) == 0)
			return m;
	return NULL;
}

/* A message of the queue as the admin sees it (not leaving it). */
static struct qmsg *
find(const char *id)
{
	struct qmsg *m = find_any(id);

	return m != NULL && !m->removed ? m : NULL;
}

static void
unready(struct qmsg *m)
{
	if (m->ready) {
		ready_remove(m);
		m->ready = 0;
	}
	wait_del(m);
}

int
queue_hold(const char *id, int hold, queue_done_fn done, void *arg)
{
	struct qmsg *m = find(id);
	size_t i;

	if (m == NULL)
		return -1;
	if (m->env.damaged)
		return hold ? 0 : -3;	/* held already; its files need repair, not a release */
	if (!m->env.held == !hold)
		return 0;
	m->env.held = hold ? 1 : 0;
	m->dirty = 1;
	if (hold) {
		/* a delivery in progress finishes; nothing new starts (make_ready checks held) */
		if (!m->inflight)
			unready(m);
	} else {
		/* released: due now, like a flush */
		for (i = 0; i < m->env.nrcpt; i++)
			m->env.rcpts[i].next_attempt = 0;
	}
	if (m->inflight)
		return 0;	/* written with the outcome, when the session gives it back */
	commit_wait(update_req(m), NULL, done, arg);
	if (!hold)
		queue_schedule(m);
	return 1;
}

int
queue_delete(const char *id, queue_done_fn done, void *arg)
{
	struct qmsg *m = find(id);
	struct commit_req *req;

	if (m == NULL)
		return -1;
	if (m->inflight)
		return -2;	/* being delivered: its outcome is decided in a moment */
	unready(m);
	if (m->write_waits) {
		/* its waiting envelope is never written: the removal is what goes to disk */
		m->write_waits = 0;
		TAILQ_REMOVE(&write_msgs, m, write_entry);
	}
	req = xcalloc(1, sizeof *req);
	req->kind = COMMIT_REMOVE;
	memcpy(req->id, m->env.id, sizeof req->id);
	req->no_env = !m->env.env_file;
	m->removed = m->deleting = 1;
	commit_wait(req, m, done, arg);
	return 1;
}

void
queue_stats(struct queue_stats *st)
{
	struct qmsg *m;
	size_t i;

	memset(st, 0, sizeof *st);
	TAILQ_FOREACH(m, &all_msgs, all_entry) {
		int tried = 0;
		if (m->removed)
			continue;
		st->messages++;
		if (st->oldest == 0 || m->env.arrival < st->oldest)
			st->oldest = m->env.arrival;
		for (i = 0; i < m->env.nrcpt; i++)
			if (m->env.rcpts[i].status == RCPT_PENDING && m->env.rcpts[i].attempts > 0)
				tried = 1;
		if (m->env.damaged)
			st->damaged++;
		else if (m->env.held)
			st->held++;
		else if (m->inflight)
			st->active++;
		else if (tried)
			st->deferred++;
		else
			st->waiting++;
	}
}

const struct spool_env *
queue_find(const char *id)
{
	struct qmsg *m = find(id);

	return m ? &m->env : NULL;
}

void
queue_each(void (*fn)(const struct spool_env *env, void *arg), void *arg)
{
	struct qmsg *m;

	TAILQ_FOREACH(m, &all_msgs, all_entry)
		if (!m->removed)
			fn(&m->env, arg);
}

size_t
queue_ids(char (**ids)[QID_LEN + 1])
{
	struct qmsg *m;
	size_t n = 0;

	*ids = xcalloc(nmsgs ? nmsgs : 1, sizeof **ids);
	TAILQ_FOREACH(m, &all_msgs, all_entry)
		if (!m->removed && n < nmsgs)
			memcpy((*ids)[n++], m->env.id, QID_LEN + 1);
	return n;
}

void
queue_free_all(void)
{
	struct qmsg *m;
	size_t unwritten = 0;

	TAILQ_FOREACH(m, &write_msgs, write_entry)
		unwritten++;
	if (unwritten > 0)
		log_info("%zu deferral%s not written at shutdown (the attempt counts and history of the last "
		    "try); %s due again at the next start", unwritten, unwritten == 1 ? "" : "s",
		    unwritten == 1 ? "it is" : "they are");

	while ((m = TAILQ_FIRST(&all_msgs)) != NULL)
		qmsg_free(m);
	if (persist_ev != NULL) {
		event_free(persist_ev);
		persist_ev = NULL;
	}
	if (wait_ev != NULL) {
		event_free(wait_ev);
		wait_ev = NULL;
	}
	if (loaded_ev != NULL) {
		event_free(loaded_ev);
		loaded_ev = NULL;
	}
	free(wait_heap);
	wait_heap = NULL;
	nwait = wait_cap = 0;
	wait_armed = 0;
	free(unsaved);
	unsaved = NULL;
	nunsaved = unsaved_cap = 0;
}

/*
 * commit: the spool committer thread.  See commit.h for the contract.
 *
 * Hand-off: the loop appends to `pending` under the mutex and signals the
 * condition; the thread swaps the whole list out (that is the batch),
 * works without the lock, appends results to `done`, and writes one byte
 * to a pipe whose read end is a libevent event on the loop.  The loop then
 * runs every done() callback.  No libevent call is made from the thread.
 * A batch of many removals shares them with a second thread, made for
 * that batch (remove_all()).
 *
 * The removal of a finished message (req->later) waits up to
 * REMOVE_LATER_MS on the loop for the next request that must be written
 * now (a new message, an update) and goes in its batch: one hand-off and
 * one fsync of queue/ for both, where each had its own (in a run of
 * single submissions, one fsync in three and half the hand-offs).  What
 * it costs: a crash or a power loss in those milliseconds delivers that
 * message again, as one in the millisecond before its removal always
 * could: its transaction is over only once the removal is on disk, and
 * a transaction in flight may be repeated, never lost.
 *
 * How far the removals may fall behind is bounded (COMMIT_REMOVALS_MAX,
 * commit.h): a full backlog stops new deliveries until half of it is
 * done, so that a crash during a large drain repeats at most about a
 * second of deliveries, not the whole backlog.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "commit.h"
#include "log.h"
#include "xmalloc.h"

#define REMOVE_LATER_MS 20
unsigned commit_remove_later_ms = REMOVE_LATER_MS;
#define BATCH_MAX 1024		/* requests the thread takes at once */

static void later_splice(void);
static void on_later(evutil_socket_t fd, short what, void *arg);

static struct {
	pthread_t thread;
	pthread_mutex_t mtx;
	pthread_cond_t cond;
	struct commit_req *pending, **pending_tail;
	struct commit_req *done, **done_tail;
	int stop;
	int running;
	int pipefd[2];
	struct event *ev;
	struct spool *sp;
	/* the loop's own, no lock: removals waiting for the next batch */
	struct commit_req *later, **later_tail;
	struct event *later_ev;
	/* the loop's own too: removals submitted and not done, and the bound on them */
	unsigned removals;
	int removals_full;
	void (*relief)(void);
} C = {
	.mtx = PTHREAD_MUTEX_INITIALIZER,
	.cond = PTHREAD_COND_INITIALIZER,
	.pending_tail = &C.pending,	/* requests may be queued before the thread starts */
	.pipefd = { -1, -1 },
	.later_tail = &C.later,
};

void
commit_req_free_hist(struct commit_req *req)
{
	struct spool_env h = { .hist = req->hist, .nhist = req->nhist };

	spool_env_clear_hist(&h);
	req->hist = NULL;
	req->nhist = 0;
}

/* Put from's attempts before to's own (the history of a superseded update goes with the later one). */
static void
hist_move(struct commit_req *from, struct commit_req *to)
{
	if (from->nhist == 0)
		return;
	from->hist = xreallocarray(from->hist, from->nhist + to->nhist, sizeof *from->hist);
	if (to->nhist > 0)
		memcpy(from->hist + from->nhist, to->hist, to->nhist * sizeof *to->hist);
	free(to->hist);
	to->hist = from->hist;
	to->nhist += from->nhist;
	from->hist = NULL;
	from->nhist = 0;
}

void
commit_req_free(struct commit_req *req)
{
	if (req->kind == COMMIT_NEW && req->txn.sp != NULL)
		spool_txn_abort(&req->txn);
	spool_env_free(&req->env);
	free(req->text);
	commit_req_free_hist(req);
	free(req);
}

/*
 * The removals of a batch (see batch_run() for when).  An unlink of a file
 * with data waits for the file system to free (here: discard) its blocks,
 * after the directory entry is gone and the directory's lock released:
 * two threads overlap those waits.  A batch of at least REMOVE_SPLIT
 * removals gives every other one to a second thread, made for it (a
 * thread's start is a few dozen microseconds, an unlink here about 120).
 */
#define REMOVE_SPLIT 64

struct removals {
	struct commit_req *batch;
	int step, first;            /* the removals k with k % step == first */
};

/*
 * Retired files (spool_retire()): the .msg files of removed messages,
 * kept in tmp/ for new messages to be written into (spool_txn_reuse()),
 * so that neither the removal frees an inode and its blocks nor the new
 * message makes one.  A file retired in a batch is `fresh` until that
 * batch's fsync of queue/ has made its rename out of queue/ durable, and
 * only then `ready`.  The committer's own (a batch shared with the other
 * thread removes as before); at most COMMIT_KEPT_MAX files in all.
 *
 * Only a finished message's file (req->later: bounce.c's removal, once
 * every recipient has its outcome) is kept.  Nothing reads it any more:
 * its delivery sessions are over (a message being delivered cannot be
 * deleted, queue_delete()), and its notices were written before.  A
 * descriptor still open on it would read the next message's octets.
 * The kept files hold disk space (at most COMMIT_KEPT_MAX messages of up to
 * SPOOL_TXN_BUF octets and their envelopes): a batch that fails for want
 * of it unlinks them all.
 */
static struct {
	char ready[COMMIT_KEPT_MAX][QID_LEN + 1], fresh[COMMIT_KEPT_MAX][QID_LEN + 1];
	size_t nready, nfresh;
} P;

/* One removal; pool: the committer alone, the file may be kept. */
static int
remove_one(struct commit_req *r, int pool)
{
	int rc;

	if (!pool || P.nready + P.nfresh >= COMMIT_KEPT_MAX)
		return spool_remove_known(C.sp, r->id, !r->no_env);
	rc = spool_retire(C.sp, r->id, !r->no_env);
	if (rc == 1)
		memcpy(P.fresh[P.nfresh++], r->id, QID_LEN + 1);
	return rc == -1 ? -1 : 0;
}

/* The end of a batch: its retired files are ready when queue/ was fsynced, else unlinked. */
static void
pool_settle(int synced)
{
	size_t i;

	for (i = 0; i < P.nfresh; i++) {
		if (synced)
			memcpy(P.ready[P.nready++], P.fresh[i], QID_LEN + 1);
		else
			spool_unlink_retired(C.sp, P.fresh[i]);
	}
	P.nfresh = 0;
}

static void
pool_empty(void)
{
	pool_settle(0);
	while (P.nready > 0)
		spool_unlink_retired(C.sp, P.ready[--P.nready]);
}

static void *
remove_some(void *arg)
{
	const struct removals *w = arg;
	struct commit_req *r;
	int k = 0;

	for (r = w->batch; r != NULL; r = r->next) {
		if (r->kind != COMMIT_REMOVE)
			continue;
		if (k++ % w->step != w->first)
			continue;
		r->rc = remove_one(r, w->step == 1 && r->later);
		if (r->rc == -1)
			snprintf(r->err, sizeof r->err, "%s: remove: %s", r->id, strerror(errno));
	}
	return NULL;
}

static void
remove_all(struct commit_req *batch, size_t nremove)
{
	struct removals all = { batch, 1, 0 }, mine = { batch, 2, 0 }, theirs = { batch, 2, 1 };
	pthread_t t;

	if (nremove >= REMOVE_SPLIT && pthread_create(&t, NULL, remove_some, &theirs) == 0) {
		remove_some(&mine);
		pthread_join(t, NULL);
	} else
		remove_some(&all);
}

/*
 * Make a batch durable: flush, publish, one directory fsync.  Requests
 * keep their order, but for removals, which come before the flush in a
 * batch without updates and last in one with them (no request of a
 * batch follows the removal of its message; an update before it must be
 * installed first, or its .env would outlive the removal).
 */
static struct commit_req *
batch_run(struct commit_req *batch)
{
	struct commit_req *r;
	size_t n = 0;
	int sync_each, early, dir_dirty = 0, full = 0;
	size_t nremove = 0, nupdate = 0;

	for (r = batch; r != NULL; r = r->next) {
		n += r->kind != COMMIT_REMOVE;
		nremove += r->kind == COMMIT_REMOVE;
		nupdate += r->kind == COMMIT_UPDATE;
	}
	/* One file to write: fsync it.  Several: one syncfs for all of them.  A removal writes none. */
	sync_each = n <= 1;
	early = nremove > 0 && nupdate == 0;	/* the removals before the flush (below) */

	/*
	 * Two updates of one envelope in a batch would stage the same
	 * tmp/ID.env.new: the first install would take the second's file and
	 * the second find none.  Only the last is written; the earlier ones
	 * succeed with it (they held older states of the same envelope), and
	 * the attempts they were to add to the history go with it.
	 */
	for (r = batch; r != NULL; r = r->next) {
		struct commit_req *later;
		r->superseded = 0;
		if (r->kind != COMMIT_UPDATE)
			continue;
		for (later = r->next; later != NULL; later = later->next)
			if (later->kind == COMMIT_UPDATE && strcmp(later->id, r->id) == 0) {
				r->superseded = 1;
				hist_move(r, later);
				break;
			}
	}
	for (r = batch; r != NULL; r = r->next) {
		r->rc = 0;
		if (r->superseded)
			continue;
		switch (r->kind) {
		case COMMIT_NEW:
			if (P.nready > 0 && spool_txn_reuse(&r->txn, P.ready[P.nready - 1]))
				P.nready--;
			r->rc = spool_txn_prepare(&r->txn, &r->env, sync_each, r->err, sizeof r->err);
			break;
		case COMMIT_UPDATE:
			r->rc = spool_env_stage_update(C.sp, r->id, r->text, r->textlen, r->hist, r->nhist,
			    sync_each, r->err, sizeof r->err);
			break;
		case COMMIT_REMOVE:
			break;
		}
		full |= r->rc == -1 && (errno == ENOSPC || errno == EDQUOT);
	}
	/*
	 * Without an update in the batch, the removals go first: the flush
	 * that makes the new files durable takes their unlinks along, and
	 * the directory's fsync at the end finds little left to write (one
	 * flush a batch, not two).  An update must be installed before its
	 * message's removal, so a batch with updates removes last.
	 */
	if (early)
		remove_all(batch, nremove);
	if (!sync_each) {
		if (spool_syncfs(C.sp) == -1) {
			int saved = errno;
			full |= saved == ENOSPC || saved == EDQUOT;
			for (r = batch; r != NULL; r = r->next) {
				if (r->kind != COMMIT_REMOVE && r->rc == 0) {
					r->rc = -1;
					snprintf(r->err, sizeof r->err, "%s: syncfs: %s", C.sp->dir, strerror(saved));
				}
			}
		}
	}
	for (r = batch; r != NULL; r = r->next) {
		if (r->rc == -1 || r->superseded)
			continue;
		switch (r->kind) {
		case COMMIT_NEW:
			r->rc = spool_txn_publish(&r->txn, r->err, sizeof r->err);
			if (r->rc == 0)
				r->txn.sp = NULL;	/* published: nothing to abort */
			break;
		case COMMIT_UPDATE:
			r->rc = spool_env_install(C.sp, r->id, r->err, sizeof r->err);
			break;
		case COMMIT_REMOVE:
			break;	/* below, after the rest */
		}
		if (r->rc == 0 && r->kind != COMMIT_REMOVE)
			dir_dirty = 1;
	}
	if (nremove > 0) {
		if (!early)
			remove_all(batch, nremove);
		for (r = batch; r != NULL; r = r->next)
			if (r->kind == COMMIT_REMOVE && r->rc == 0)
				dir_dirty = 1;
	}
	if (dir_dirty && spool_sync_queue(C.sp) == -1) {
		int saved = errno;
		for (r = batch; r != NULL; r = r->next) {
			if (r->rc == 0) {
				r->rc = -1;
				snprintf(r->err, sizeof r->err, "%s/queue: fsync: %s", C.sp->dir, strerror(saved));
			}
		}
		pool_settle(0);
	} else
		pool_settle(1);
	if (full)
		pool_empty();	/* the space the kept files hold, back to the file system */
	return batch;
}

static void *
commit_thread(void *unused)
{
	(void)unused;
	pthread_mutex_lock(&C.mtx);
	for (;;) {
		while (C.pending == NULL && !C.stop)
			pthread_cond_wait(&C.cond, &C.mtx);
		if (C.pending == NULL && C.stop)
			break;
		/*
		 * At most BATCH_MAX requests: a backlog of removals is done
		 * in parts, whose done() (and the relief, commit_drain())
		 * come while the next part is on its way, so that deliveries
		 * go on beside the unlinks instead of waiting for all of them.
		 */
		struct commit_req *batch = C.pending, *last = batch;
		size_t n = 1;
		while (last->next != NULL && n < BATCH_MAX) {
			last = last->next;
			n++;
		}
		C.pending = last->next;
		if (C.pending == NULL)
			C.pending_tail = &C.pending;
		last->next = NULL;
		pthread_mutex_unlock(&C.mtx);

		batch_run(batch);

		pthread_mutex_lock(&C.mtx);
		for (last = batch; last->next != NULL; last = last->next)
			;
		*C.done_tail = batch;
		C.done_tail = &last->next;
		pthread_mutex_unlock(&C.mtx);
		char b = 1;
		while (write(C.pipefd[1], &b, 1) == -1 && errno == EINTR)
			;
		pthread_mutex_lock(&C.mtx);
	}
	pthread_mutex_unlock(&C.mtx);
	return NULL;
}

static void
commit_drain(void)
{
	struct commit_req *r, *next;

	pthread_mutex_lock(&C.mtx);
	r = C.done;
	C.done = NULL;
	C.done_tail = &C.done;
	pthread_mutex_unlock(&C.mtx);
	for (; r != NULL; r = next) {
		next = r->next;
		r->next = NULL;
		if (r->kind == COMMIT_REMOVE)
			C.removals--;
		if (r->done != NULL)
			r->done(r, r->arg);
		else {
			if (r->rc == -1)
				log_errx("spool: %s", r->err);
			commit_req_free(r);
		}
	}
	if (C.removals_full && C.removals <= COMMIT_REMOVALS_MAX / 2) {
		C.removals_full = 0;
		log_debug("spool: removals down to %u: deliveries go on", C.removals);
		if (C.relief != NULL)
			C.relief();
	}
}

unsigned
commit_removals(void)
{
	return C.removals;
}

int
commit_removals_full(void)
{
	return C.removals_full;
}

void
commit_on_relief(void (*fn)(void))
{
	C.relief = fn;
}

static void
commit_on_pipe(evutil_socket_t fd, short what, void *arg)
{
	char buf[256];

	(void)what;
	(void)arg;
	while (read(fd, buf, sizeof buf) > 0)
		;
	commit_drain();
}

int
commit_start(struct event_base *base, struct spool *sp)
{
	C.sp = sp;
	C.stop = 0;
	C.done = NULL;
	C.done_tail = &C.done;
	if (pipe2(C.pipefd, O_CLOEXEC | O_NONBLOCK) == -1)
		return -1;
	C.ev = event_new(base, C.pipefd[0], EV_READ | EV_PERSIST, commit_on_pipe, NULL);
	event_add(C.ev, NULL);
	C.later_ev = evtimer_new(base, on_later, NULL);
	if (pthread_create(&C.thread, NULL, commit_thread, NULL) != 0)
		return -1;
	C.running = 1;
	return 0;
}

/* Finish every queued request (their callbacks run here), then stop the thread. */
void
commit_stop(void)
{
	if (!C.running)
		return;
	pthread_mutex_lock(&C.mtx);
	later_splice();
	C.stop = 1;
	pthread_cond_signal(&C.cond);
	pthread_mutex_unlock(&C.mtx);
	pthread_join(C.thread, NULL);
	C.running = 0;
	commit_drain();
	/* callbacks may have queued more (a notice's original to remove): run those here */
	while (C.pending != NULL) {
		struct commit_req *batch = C.pending, *last;
		C.pending = NULL;
		C.pending_tail = &C.pending;
		batch_run(batch);
		for (last = batch; last->next != NULL; last = last->next)
			;
		*C.done_tail = batch;
		C.done_tail = &last->next;
		commit_drain();
	}
	pool_empty();
	event_free(C.ev);
	event_free(C.later_ev);
	C.later_ev = NULL;
	close(C.pipefd[0]);
	close(C.pipefd[1]);
}

/* Under the mutex: the removals waiting on the loop go to the thread, first. */
static void
later_splice(void)
{
	if (C.later == NULL)
		return;
	*C.pending_tail = C.later;
	C.pending_tail = C.later_tail;
	C.later = NULL;
	C.later_tail = &C.later;
	if (C.later_ev != NULL)
		evtimer_del(C.later_ev);
}

static void
on_later(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	pthread_mutex_lock(&C.mtx);
	later_splice();
	pthread_cond_signal(&C.cond);
	pthread_mutex_unlock(&C.mtx);
}

void
commit_submit(struct commit_req *req)
{
	req->next = NULL;
	if (req->kind == COMMIT_REMOVE && ++C.removals >= COMMIT_REMOVALS_MAX && !C.removals_full) {
		C.removals_full = 1;
		log_debug("spool: %u removals wait for the disk: no new delivery until half are done", C.removals);
	}
	/* a full backlog waits for nothing: no new message comes to take it along */
	if (req->later && C.later_ev != NULL && !C.stop && !C.removals_full) {
		*C.later_tail = req;
		C.later_tail = &req->next;
		if (!evtimer_pending(C.later_ev, NULL)) {
			struct timeval tv = { commit_remove_later_ms / 1000, commit_remove_later_ms % 1000 * 1000 };
			evtimer_add(C.later_ev, &tv);
		}
		return;
	}
	pthread_mutex_lock(&C.mtx);
	later_splice();
	*C.pending_tail = req;
	C.pending_tail = &req->next;
	pthread_cond_signal(&C.cond);
	pthread_mutex_unlock(&C.mtx);
}

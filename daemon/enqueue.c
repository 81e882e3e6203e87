/*
 * enqueue: a new message into the spool and the queue.  See enqueue.h.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include "daemon.h"
#include "enqueue.h"
#include "log.h"
#include "metrics.h"
#include "xmalloc.h"

struct enqueue_ctx {
	commit_done_fn done;
	void *arg;
	enum enqueue_flags flags;
	char who[96];
};

static void (*hand_over)(struct spool_env *env);

void
enqueue_init(void (*to_queue)(struct spool_env *env))
{
	hand_over = to_queue;
}

int
enqueue_begin(char id[QID_LEN + 1], struct timeval *arrival, struct spool_txn *txn)
{
	spool_qid_new(&D->spool, id, arrival);
	return spool_txn_begin(&D->spool, id, txn);
}

static void
on_durable(struct commit_req *req, void *arg)
{
	struct enqueue_ctx *e = arg;
	int queue_it = req->rc == 0 && e->flags == ENQ_QUEUE;

	if (queue_it) {
		log_qid(LOG_INFO, req->env.id, "queued", "from=<%s>, size=%llu, nrcpt=%zu, %s, via=%s",
		    req->env.sender, req->env.size, req->env.nrcpt, e->who, req->env.via);
		metrics_submission(req->env.via);
	}
	if (req->rc != 0 && req->txn.sp != NULL) {
		/* gone before the submitter hears of the failure (a 4xx goes out at once) */
		spool_txn_abort(&req->txn);
		req->txn.sp = NULL;
	}
	e->done(req, e->arg);
	if (queue_it)
		hand_over(&req->env);	/* takes the envelope over */
	commit_req_free(req);
	free(e);
}

void
enqueue_commit(struct commit_req *req, const char *who, enum enqueue_flags flags,
    commit_done_fn done, void *arg)
{
	struct enqueue_ctx *e = xcalloc(1, sizeof *e);

	e->done = done;
	e->arg = arg;
	e->flags = flags;
	snprintf(e->who, sizeof e->who, "%s", who);
	req->kind = COMMIT_NEW;
	req->done = on_durable;
	req->arg = e;
	commit_submit(req);
}

/*
 * commit: durable spool writes off the event loop, with group commit.
 *
 * The event loop queues requests; one committer thread takes every request
 * queued so far as a batch and makes the whole batch durable with a fixed
 * number of flushes whatever its size: for new messages, content and
 * envelope are written by then (whole into queue/, or in tmp/ for content
 * larger than the buffer); the thread flushes them (fsync for a batch of
 * one, syncfs for more), renames those in tmp/ into queue/, fsyncs queue/
 * once, and only then reports back to the loop, which answers 250 / exit 0.
 * Envelope updates and removals ride in the same batches.  One thread keeps
 * requests for the same message in order.
 */
#ifndef MAILRELAY_COMMIT_H
#define MAILRELAY_COMMIT_H

#include "spool/spool.h"

struct event_base;

enum commit_kind { COMMIT_NEW, COMMIT_UPDATE, COMMIT_REMOVE };

struct commit_req;
typedef void (*commit_done_fn)(struct commit_req *req, void *arg);

struct commit_req {
	enum commit_kind kind;
	struct spool_txn txn;          /* COMMIT_NEW: the open transaction */
	struct spool_env env;          /* NEW: the envelope, owned by the request */
	char *text;                    /* UPDATE: the envelope rendered (spool_env_render()), owned */
	size_t textlen;
	struct spool_attempt *hist;    /* UPDATE: attempts to add to the history on disk, owned */
	size_t nhist;                  /*   (the text has none: see spool_env_stage_update()) */
	char id[QID_LEN + 1];          /* UPDATE, REMOVE */
	commit_done_fn done;           /* called on the loop; NULL: nothing to tell */
	void *arg;
	int rc;                        /* 0 ok, -1 failed */
	int superseded;                /* UPDATE: a later one in the batch writes the same envelope */
	int no_env;                    /* REMOVE: the message never had an .env (none to unlink) */
	int later;                     /* REMOVE of a finished message: may wait for the next batch */
	char err[256];
	struct commit_req *next;
};

/*
 * The removals of finished messages wait for the disk (an unlink costs
 * 70-100 us on the machine measured, two for a message with an .env),
 * and delivery can finish messages faster than that: with 100,000
 * messages queued, all were at the sink while 63,000 removals still
 * waited, 12 s of unlinks, each holding its request (34 MB), and a crash
 * then would have sent all of them again.  At COMMIT_REMOVALS_MAX
 * removals submitted and not done, the backlog is full: dispatch starts
 * no transaction (commit_removals_full()) until it is down to half, when
 * the relief hook runs on the loop.  About a second of unlinks.
 */
#define COMMIT_REMOVALS_MAX 4096

/*
 * The files of finished messages the committer keeps in tmp/ for new
 * messages to be written into (commit.c): at most this many; a removal
 * beyond unlinks.
 */
#define COMMIT_KEPT_MAX 256

/*
 * How long a removal waits on the loop for the next request to go with
 * (REMOVE_LATER_MS in commit.c); a test sets it, to see the wait without
 * racing its timer.
 */
extern unsigned commit_remove_later_ms;

int  commit_start(struct event_base *base, struct spool *sp);
void commit_stop(void);
/* Queue a request; ownership passes to the committer until done() (which must free it). */
void commit_submit(struct commit_req *req);
/* Free the attempts an update carries (the rest stays). */
void commit_req_free_hist(struct commit_req *req);
/* Free a request and what it owns. */
void commit_req_free(struct commit_req *req);
/* Removals submitted whose done() has not run yet. */
unsigned commit_removals(void);
/* 1 from COMMIT_REMOVALS_MAX removals waiting until they are down to half. */
int  commit_removals_full(void);
/* fn runs on the loop each time a full backlog of removals is down to half. */
void commit_on_relief(void (*fn)(void));

#endif

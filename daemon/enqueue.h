/*
 * enqueue: the one way a new message enters the queue, for every path that
 * makes one: the listeners (SMTP on loopback, the unix socket the sendmail
 * client speaks to), the maildrop import, and bounces.
 *
 *   enqueue_begin()   a queue id, the arrival time and an open spool
 *                     transaction for the content
 *   ...               the path writes the content and fills in the
 *                     envelope (sender, recipients, via, uid)
 *   enqueue_commit()  the group commit (commit.h); once the message is
 *                     durable: the "queued" log line and the submission
 *                     counter, the path's own callback (its 250, removing
 *                     the drop, noting the bounce on the original), and
 *                     then the message is handed to the queue through
 *                     the hook main.c registers (queue_add()), so that
 *                     the queue, which makes bounces, is not called back
 *
 * So the queued line, the metrics and the hand-over cannot differ between
 * the paths, and a message reaches the queue only once it is durable.
 */
#ifndef MAILRELAY_ENQUEUE_H
#define MAILRELAY_ENQUEUE_H

#include <sys/time.h>

#include "commit.h"

/*
 * Choose a queue id (id, arrival) and open the content's transaction;
 * -1 with errno set (ENOSPC, EDQUOT: the spool is full) when it cannot be
 * opened.
 */
/* Where durable messages go: queue_add(), registered by main.c. */
void enqueue_init(void (*to_queue)(struct spool_env *env));

int  enqueue_begin(char id[QID_LEN + 1], struct timeval *arrival, struct spool_txn *txn);

enum enqueue_flags {
	ENQ_QUEUE = 0,          /* a message to deliver: logged "queued", counted, queued */
	ENQ_FINISHED = 1        /* already decided (every recipient refused): only made durable */
};

/*
 * Commit req (kind COMMIT_NEW: its transaction and envelope filled in).
 * `who` names the submitter in the "queued" line ("uid=0",
 * "client=[127.0.0.1]").  done(req, arg) runs on the loop once the
 * committer answers, with req->rc 0 (durable) or -1 (req->err says why),
 * after the queued line; it must not free req and may read req->env.
 * Then the message goes to the queue (ENQ_QUEUE, when durable) and req is
 * freed.
 */
void enqueue_commit(struct commit_req *req, const char *who, enum enqueue_flags flags,
    commit_done_fn done, void *arg);

#endif

/*
 * queue_one: a queue of one message outside the daemon.  See queue_one.h.
 */
#include "config.h"

#include <stddef.h>

#include "commit.h"
#include "daemon.h"
#include "queue_one.h"
#include "ratekeep.h"

static struct daemon dstate;
struct daemon *D = &dstate;

void (*queue_one_outcome)(struct qmsg *m, size_t idx, enum outcome o, const char *dsn,
    const char *kind, const char *reply);
unsigned queue_one_released;

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

void
queue_release(struct qmsg *m)
{
	m->inflight = 0;
	queue_one_released++;
}

void
queue_untake(struct qmsg *m)
{
	m->inflight = 0;
}

int
queue_verify(struct qmsg *m, int fd)
{
	(void)m;
	(void)fd;
	return 0;
}

size_t
queue_ready_failover(void)
{
	return 0;
}

int
queue_has_ready(void)
{
	return 0;
}

unsigned
queue_retry_delay(unsigned attempts)
{
	(void)attempts;
	return 60;
}

void
queue_checkpoint(struct qmsg *m)
{
	(void)m;
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

/* No spool, no committer: no removal ever waits. */
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
queue_outcome(struct qmsg *m, size_t idx, enum outcome o, const struct relay_info *ri,
    const char *dsn, const char *kind, const char *reply)
{
	(void)ri;
	m->env.rcpts[idx].status = o == OUTCOME_SENT ? RCPT_SENT : o == OUTCOME_BOUNCED ? RCPT_FAILED :
	    RCPT_PENDING;
	m->env.rcpts[idx].attempts++;
	if (queue_one_outcome != NULL)
		queue_one_outcome(m, idx, o, dsn, kind, reply);
}

void
ratekeep_touch(void)
{
}

void
ratekeep_flush(void)
{
}

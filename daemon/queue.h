/*
 * queue: the daemon's in-memory index of the spool, the retry scheduler and
 * the one place where recipient outcomes are decided, logged and persisted.
 *
 * Every queued message is a `struct qmsg` holding its envelope.  A message
 * is either waiting for its next attempt (a timer), ready (in the ready
 * list, waiting for a delivery session), or in flight (owned by a
 * session).  Sessions report each recipient's outcome with queue_outcome()
 * and give the message back with queue_release().
 *
 * A damaged message (see spool.h: its envelope cut short or garbled, its
 * content missing or not the length recorded) is a fourth state: found at
 * start or before an attempt, logged once, kept in the queue and in the
 * listings, never made ready, never written over, never expired or removed
 * but by an admin's delete.  Release does not let it go: only a repair of
 * its files and a restart (which checks it again) do.
 */
#ifndef MAILRELAY_QUEUE_H
#define MAILRELAY_QUEUE_H

#include <sys/queue.h>
#include <sys/time.h>

#include <stdint.h>

#include <event2/event.h>

#include "outcome.h"
#include "spool/spool.h"


struct qmsg {
	struct spool_env env;
	time_t due;                 /* while waiting: when it is due (the queue's one timer) */
	unsigned slot;              /* its place in the timer heap + 1; 0: not waiting */
	unsigned fo;                /* failover: the smarthost index this attempt has reached */
	unsigned ready:1;           /* in the ready list */
	unsigned inflight:1;        /* owned by a delivery session */
	unsigned removed:1;         /* leaving the queue: out of sight, never tried again */
	unsigned deleting:1;        /* ...deleted by an admin, the removal not yet on disk */
	unsigned dirty:1;           /* env changed since the last commit */
	unsigned checked:1;         /* content just checked (loaded, committed): make_ready() need not again */
	unsigned urgent:1;          /* a change that must not wait its turn (an outcome other than deferred) */
	unsigned write_waits:1;     /* in the list of envelopes waiting for a place in the committer */
	unsigned unreached:1;       /* its smarthost could not be reached: its deferrals stay in memory (queue_outcome()) */
	unsigned memonly:1;         /* holds such deferrals not in its envelope on disk (queue_save_unreached()) */
	uint32_t taken_ms;          /* monotonic milliseconds (wrapping): when the current attempt took it (metrics) */
	TAILQ_ENTRY(qmsg) all_entry;
	TAILQ_ENTRY(qmsg) ready_entry;
	TAILQ_ENTRY(qmsg) write_entry;
};

/* What the log line says about the relay and the connection. */
struct relay_info {
	const char *relay;          /* "host[1.2.3.4]:587" or "none" */
	const char *tls;            /* "none", "TLSv1.3" */
	const char *verify;         /* NULL without TLS, else "ok", "pinned", "off", "fail (why)" */
	int dsn;                    /* the smarthost took DSN: success notices are its job */
	const char *name;           /* the smarthost's configured name (metrics label), NULL: none */
};

void queue_init(void);
/*
 * Scan the spool at start; every pending recipient becomes due now.  The
 * tries at unreached smarthosts the last stop kept (spool/unreach.h) are
 * added to the envelopes loaded, and their file removed.
 */
int  queue_load(void);
/*
 * At a stop, once the committer is done: the tries at unreached smarthosts
 * that no envelope on disk holds, into the spool's one file for them.
 */
void queue_save_unreached(void);
/*
 * The id of a message found at start that was imported from maildrop file
 * name (its submitter in *submitter), or NULL; pickup asks before it
 * imports a drop, and takes the message for the drop only when the drop's
 * owner is its submitter, so that no local user can name another's drop
 * in MAIL (X-MAILDROP=) and have it dropped.  The names are kept until
 * queue_loaded_drops_free().
 */
const char *queue_loaded_drop(const char *name, uid_t *submitter);
void queue_loaded_drops_free(void);
/* A message just committed (the queue takes ownership of env's contents). */
void queue_add(struct spool_env *env);
/* The ready list in order: the first (after == NULL) or the one after `after`. */
struct qmsg *queue_ready_next(struct qmsg *after);
/* Take a ready message for a delivery session; marks it in flight. */
void queue_take(struct qmsg *m);
/*
 * Check a message's content before a session sends it (fd: the content as
 * opened for sending).  0: intact; -1: damaged, now held as such (logged);
 * the session must not send it and gives it back with queue_release().
 */
int  queue_verify(struct qmsg *m, int fd);
/* The same check failed where the session runs (the delivery process): held as damaged, why logged. */
void queue_damaged(struct qmsg *m, const char *why);
int  queue_has_ready(void);
/* How many ready messages are part-way through failover (fo > 0). */
size_t queue_ready_failover(void);
/* Seconds to wait after the n-th failed attempt (retry_schedule, last step repeating). */
unsigned queue_retry_delay(unsigned attempts);
/*
 * Record one recipient's outcome: counts the attempt, sets status, reply
 * and next attempt (per retry_schedule) and logs the greppable line.  dsn
 * may be NULL (derived from the reply code); kind is the failure kind's
 * name (lib/trouble.h), kept with the recipient for `mailrelay show`.
 * Called by delivery_trouble.c only, which has already decided (expiry
 * included).
 */
void queue_outcome(struct qmsg *m, size_t rcpt, enum outcome o, const struct relay_info *ri,
    const char *dsn, const char *kind, const char *reply);
/*
 * The attempts a message holds (those not written yet) get their own
 * strings: in memory a relay of "none" and a recipient's latest reply
 * are not copied (NULL).  For `mailrelay show`, on a copy.
 */
void queue_attempts_own(struct spool_env *env);
/* The session is done with the message: persist, then reschedule or remove. */
void queue_release(struct qmsg *m);
/* A session aborted at shutdown gives its message back as it was: no attempt counted, nothing written. */
void queue_untake(struct qmsg *m);
/* A message taken but never given to its session (it ended first): ready again as it was. */
void queue_giveback(struct qmsg *m);
/*
 * A notice for recipients idx[0..n) of message id is on disk (ok) or could
 * not be written: mark them reported, or owed again.  Called by bounce.c.
 */
void queue_reported(const char *id, const unsigned *idx, size_t n, int ok);
/* The session goes on with the message: persist the outcomes recorded so far. */
void queue_checkpoint(struct qmsg *m);
/* Make every waiting message due now (flush). */
void queue_flush_all(void);
/* The same for one message; -1 when no such message is queued, -3 when it is damaged (not made due). */
int  queue_flush_one(const char *id);
/*
 * An admin's change is on disk (ok) or could not be written (err says
 * why).  Called on the loop.
 */
typedef void (*queue_done_fn)(int ok, const char *err, void *arg);
/*
 * Hold (hold = 1) or release (0) a message; a released one is due now.
 * Returns 1 when the change is being written (done() follows), 0 when it
 * is made with nothing to wait for (already so, or written when the
 * delivery in progress ends), -1 when no such message is queued, -3 when
 * it is damaged (held already; not released: its files need repair).
 */
int  queue_hold(const char *id, int hold, queue_done_fn done, void *arg);
/*
 * Remove a message unsent.  1: removed from the queue, done() follows once
 * the removal is on disk; -1: not queued; -2: being delivered right now.
 */
int  queue_delete(const char *id, queue_done_fn done, void *arg);
/* A queued message's envelope, or NULL. */
const struct spool_env *queue_find(const char *id);
/* Call fn for every queued message, in arrival order. */
void queue_each(void (*fn)(const struct spool_env *env, void *arg), void *arg);
struct queue_stats {
	size_t messages;            /* in the queue */
	size_t active;              /* being delivered */
	size_t deferred;            /* waiting for a retry after a failed attempt */
	size_t held;
	size_t waiting;             /* never tried yet, not being delivered */
	size_t damaged;             /* kept for an admin (counted in none of the above) */
	time_t oldest;              /* arrival of the oldest, 0 when empty */
};
void queue_stats(struct queue_stats *st);
/* The ids of every queued message, in arrival order (allocated array; returns the count). */
size_t queue_ids(char (**ids)[QID_LEN + 1]);
/* Free everything (shutdown). */
void queue_free_all(void);
size_t queue_count(void);

/*
 * Called whenever a message becomes ready.  The delivery side registers
 * itself here at start (delivery_init()): the queue knows nothing of who
 * takes its messages, so it does not call into delivery.
 */
typedef void (*queue_ready_fn)(void);
void queue_on_ready(queue_ready_fn fn);
/*
 * Called first by a flush: delivery gives back, untried, the messages it
 * holds without trying them (those a failed smarthost left, still being
 * deferred a chunk at a time), so that the flush makes them due too.
 */
void queue_on_flush(queue_ready_fn fn);

#endif

/*
 * Unit tests for daemon/queue.c's envelope writes: how many of them the
 * committer holds at once.  The committer here is a list of requests
 * that complete when the test says so.  A whole queue deferred at once
 * (a restart with the smarthost down) used to put one request per
 * message, each with a copy of its envelope, in the committer's memory
 * until the disk caught up; the writes of deferrals are now bounded, and
 * what waits is written as it is when its turn comes.  Outcomes that must
 * not wait (a recipient sent) still go at once.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "daemon/bounce.h"
#include "daemon/commit.h"
#include "daemon/daemon.h"
#include "daemon/metrics.h"
#include "daemon/queue.h"
#include "log.h"
#include "spool/unreach.h"
#include "xmalloc.h"

static struct daemon dstate;
struct daemon *D = &dstate;
static struct config conf;

#define NMSG 1000
#define BOUND 256       /* UPDATES_MAX in queue.c */

/* ---- the committer: requests kept in order until completed ---- */

static struct commit_req *held[4 * NMSG];
static size_t nheld, updates_seen, max_inflight, inflight;

static char watch_id[QID_LEN + 1];     /* the message whose update is looked at */
static size_t watch_nhist;
static char watch_hist[4][128];

void
commit_submit(struct commit_req *req)
{
	assert_true(nheld < sizeof held / sizeof held[0]);
	held[nheld++] = req;
	if (req->kind == COMMIT_UPDATE && strcmp(req->id, watch_id) == 0) {
		/* the attempts it carries, each with its own strings */
		watch_nhist = req->nhist;
		for (size_t i = 0; i < req->nhist && i < 4; i++)
			snprintf(watch_hist[i], sizeof watch_hist[i], "%u %s %s %s", req->hist[i].rcpt,
			    req->hist[i].outcome, req->hist[i].relay, req->hist[i].reply);
	}
	if (req->kind == COMMIT_UPDATE) {
		updates_seen++;
		inflight++;
		if (inflight > max_inflight)
			max_inflight = inflight;
	}
}

void
commit_req_free(struct commit_req *req)
{
	struct spool_env h = { .hist = req->hist, .nhist = req->nhist };

	spool_env_clear_hist(&h);
	spool_env_free(&req->env);
	free(req->text);
	free(req);
}

/* Complete the oldest request (its callback may submit more). */
static int
complete_one(void)
{
	struct commit_req *req;

	if (nheld == 0)
		return 0;
	req = held[0];
	memmove(held, held + 1, --nheld * sizeof held[0]);
	if (req->kind == COMMIT_UPDATE)
		inflight--;
	req->rc = 0;
	req->done(req, req->arg);
	return 1;
}

/* ---- the rest of the daemon queue.c calls ---- */

int bounce_delay(const struct spool_env *env) { (void)env; return 0; }
void bounce_report(struct spool_env *env) { (void)env; }
void bounce_finish(const struct spool_env *env) { (void)env; }
void metrics_delivery(const char *shname, enum outcome o) { (void)shname; (void)o; }
void metrics_delivery_duration(double seconds) { (void)seconds; }

static char root[64];

/* A message's envelope, its content in the spool (make_ready() checks its length). */
static void
make_env(struct spool_env *e, unsigned n, size_t nrcpt)
{
	char name[64];
	size_t i;
	int fd;

	memset(e, 0, sizeof *e);
	spool_qid_make(e->id, 1700000000, 1, n);
	snprintf(name, sizeof name, "%s.msg", e->id);
	fd = openat(D->spool.queuefd, name, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "0123456789", 10), 10);
	close(fd);
	e->sender = xstrdup("a@example.org");
	e->rcpts = xcalloc(nrcpt, sizeof *e->rcpts);
	for (i = 0; i < nrcpt; i++) {
		e->rcpts[i].addr = xasprintf("r%zu@example.net", i);
		e->rcpts[i].orig = xstrdup(e->rcpts[i].addr);
		e->rcpts[i].last_reply = xstrdup("");
	}
	e->nrcpt = nrcpt;
	e->size = 10;
}

static const struct relay_info ri = { .relay = "none", .tls = "none" };

/* Every ready message deferred by a transaction of its own (a 4xx each): each is written. */
static void
defer_all(void)
{
	struct qmsg *m;

	while ((m = queue_ready_next(NULL)) != NULL) {
		queue_take(m);
		queue_outcome(m, 0, OUTCOME_DEFERRED, &ri, "4.4.1", "CONNECT", "connect: refused");
		queue_outcome(m, 1, OUTCOME_DEFERRED, &ri, "4.4.1", "CONNECT", "connect: refused");
		queue_release(m);
	}
}

static int
setup(void **state)
{
	static unsigned schedule[] = { 3600 };
	struct spool_env e;
	char err[256];
	unsigned i;

	(void)state;
	memset(&dstate, 0, sizeof dstate);
	snprintf(root, sizeof root, "/tmp/test_queue_writes.XXXXXX");
	assert_non_null(mkdtemp(root));
	assert_int_equal(spool_open(&D->spool, root, 1, err, sizeof err), 0);
	memset(&conf, 0, sizeof conf);
	conf.retry_schedule = schedule;
	conf.nretry = 1;
	D->conf = &conf;
	D->base = event_base_new();
	nheld = updates_seen = max_inflight = inflight = 0;
	queue_init();
	for (i = 0; i < NMSG; i++) {
		make_env(&e, i, 2);
		queue_add(&e);
	}
	return 0;
}

static int
teardown(void **state)
{
	char cmd[128];

	(void)state;
	while (complete_one())
		;
	queue_free_all();
	event_base_free(D->base);
	spool_close(&D->spool);
	snprintf(cmd, sizeof cmd, "rm -rf %s", root);
	assert_int_equal(system(cmd), 0);
	return 0;
}

/* A thousand deferrals at once: at most BOUND writes held, every message written once. */
static void
test_deferrals_are_bounded(void **state)
{
	(void)state;
	defer_all();
	assert_int_equal(updates_seen, BOUND);
	assert_int_equal(inflight, BOUND);
	while (complete_one())
		;
	assert_int_equal(updates_seen, NMSG);
	assert_int_equal(max_inflight, BOUND);
}

/* What waits is written as it is when its turn comes: one write, not one per change. */
static void
test_a_waiting_envelope_is_written_once_as_it_is_then(void **state)
{
	const struct spool_env *e;
	struct qmsg *m;
	char id[QID_LEN + 1];

	(void)state;
	defer_all();
	spool_qid_make(id, 1700000000, 1, NMSG - 1);	/* the last one: it waits */
	memcpy(watch_id, id, sizeof watch_id);
	/* flushed and deferred again before its first write */
	assert_int_equal(queue_flush_one(id), 0);
	m = queue_ready_next(NULL);
	assert_non_null(m);
	assert_string_equal(m->env.id, id);
	queue_take(m);
	queue_outcome(m, 0, OUTCOME_DEFERRED, &ri, "4.4.1", "CONNECT", "connect: refused again");
	queue_outcome(m, 1, OUTCOME_DEFERRED, &ri, "4.4.1", "CONNECT", "connect: refused again");
	queue_release(m);
	while (complete_one())
		;
	assert_int_equal(updates_seen, NMSG);
	/* its one write carried both attempts */
	e = queue_find(id);
	assert_non_null(e);
	assert_int_equal(e->rcpts[0].attempts + e->rcpts[1].attempts, 4);
	/* and the four attempts for the history, the replies each had then (not held twice in memory) */
	assert_int_equal(watch_nhist, 4);
	assert_string_equal(watch_hist[0], "0 deferred none connect: refused");
	assert_string_equal(watch_hist[1], "1 deferred none connect: refused");
	assert_string_equal(watch_hist[2], "0 deferred none connect: refused again");
	assert_string_equal(watch_hist[3], "1 deferred none connect: refused again");
	assert_int_equal(e->nhist, 0);
	watch_id[0] = '\0';
}

/* A recipient sent does not wait behind the deferrals: its write goes at once. */
static void
test_a_sent_recipient_is_written_at_once(void **state)
{
	struct spool_env e;
	struct qmsg *m;

	(void)state;
	defer_all();
	assert_int_equal(inflight, BOUND);
	make_env(&e, NMSG, 2);
	queue_add(&e);
	m = queue_ready_next(NULL);
	assert_non_null(m);
	queue_take(m);
	queue_outcome(m, 0, OUTCOME_SENT, &ri, "2.0.0", NULL, "250 ok");
	queue_outcome(m, 1, OUTCOME_DEFERRED, &ri, "4.2.0", NULL, "450 later");
	queue_release(m);
	assert_int_equal(inflight, BOUND + 1);
	assert_int_equal(held[nheld - 1]->kind, COMMIT_UPDATE);
	assert_non_null(strstr(held[nheld - 1]->text, "rcpt\tsent\t"));
}

/*
 * A stop does not write the deferrals still waiting (a restart makes them
 * due anyway; writing 100,000 of them made a stop take a quarter of a
 * minute), but a recipient sent meanwhile is still written.
 */
static void
test_a_stop_leaves_waiting_deferrals_unwritten(void **state)
{
	struct spool_env e;
	struct qmsg *m;

	(void)state;
	defer_all();
	assert_int_equal(inflight, BOUND);
	D->shutting_down = 1;
	make_env(&e, NMSG, 2);
	queue_add(&e);
	m = queue_ready_next(NULL);
	assert_non_null(m);
	queue_take(m);
	queue_outcome(m, 0, OUTCOME_SENT, &ri, "2.0.0", NULL, "250 ok");
	queue_release(m);
	assert_int_equal(updates_seen, BOUND + 1);
	while (complete_one())
		;
	assert_int_equal(updates_seen, BOUND + 1);	/* the other NMSG - BOUND not written */
	D->shutting_down = 0;
}

/*
 * Waiting messages are kept in one heap under one timer: each comes back
 * when it is due, the earliest first, and the timer is armed again for
 * the next (here 1 s and 2 s: the schedule's steps under 10 s are exact).
 */
static void
test_waiting_messages_come_back_in_due_order(void **state)
{
	static unsigned steps[] = { 1, 2 };
	struct qmsg *a, *b;
	int turns = 0;

	(void)state;
	conf.retry_schedule = steps;
	conf.nretry = 2;
	a = queue_ready_next(NULL);
	queue_take(a);
	queue_outcome(a, 0, OUTCOME_DEFERRED, &ri, "4.4.1", "CONNECT", "refused");
	queue_outcome(a, 1, OUTCOME_DEFERRED, &ri, "4.4.1", "CONNECT", "refused");
	b = queue_ready_next(NULL);
	queue_take(b);
	for (int k = 0; k < 2; k++) {
		queue_outcome(b, 0, OUTCOME_DEFERRED, &ri, "4.4.1", "CONNECT", "refused");
		queue_outcome(b, 1, OUTCOME_DEFERRED, &ri, "4.4.1", "CONNECT", "refused");
	}
	queue_release(b);	/* the later one first: the heap orders them, not the order of release */
	queue_release(a);
	assert_false(a->ready);
	assert_false(b->ready);
	assert_true(a->due < b->due);
	time_t b_due = b->due;
	while (!a->ready && turns++ < 100)
		event_base_loop(D->base, EVLOOP_ONCE);
	assert_true(a->ready);
	/*
	 * b waits while it is not due.  A loop woken late (a loaded machine:
	 * this failed once beside a fuzzing campaign) finds both due, and
	 * that says nothing of the order.
	 */
	if (time(NULL) < b_due)
		assert_false(b->ready);
	while (!b->ready && turns++ < 100)
		event_base_loop(D->base, EVLOOP_ONCE);
	assert_true(b->ready);
	conf.nretry = 1;
}

static int deleted;

static void
on_deleted(int ok, const char *err, void *arg)
{
	(void)err;
	(void)arg;
	assert_true(ok);
	deleted++;
}

/* A message deleted while its write waits is never written (nor touched). */
static void
test_a_message_deleted_while_waiting(void **state)
{
	char id[QID_LEN + 1];

	(void)state;
	defer_all();
	spool_qid_make(id, 1700000000, 1, NMSG - 1);
	assert_int_equal(queue_delete(id, on_deleted, NULL), 1);
	while (complete_one())
		;
	assert_int_equal(deleted, 1);
	assert_null(queue_find(id));
	assert_int_equal(updates_seen, NMSG - 1);
}

static const struct relay_info down = { .relay = "127.0.0.1[127.0.0.1]:25", .tls = "none" };

/* Every ready message deferred because its smarthost could not be reached (dispatch.c's way). */
static void
defer_all_unreached(const char *why)
{
	struct qmsg *m;

	while ((m = queue_ready_next(NULL)) != NULL) {
		queue_take(m);
		m->unreached = 1;
		queue_outcome(m, 0, OUTCOME_DEFERRED, &down, "4.4.1", "CONNECT", why);
		queue_outcome(m, 1, OUTCOME_DEFERRED, &down, "4.4.1", "CONNECT", why);
		m->unreached = 0;
		queue_release(m);
	}
}

/*
 * Deferrals at a smarthost that could not be reached are not written: a
 * queue of a thousand deferred three times makes no write.  Each message
 * still knows its attempts and why, and holds one attempt record per
 * recipient, its time the latest try's.
 */
static void
test_unreached_deferrals_are_not_written(void **state)
{
	const struct spool_env *e;
	char id[QID_LEN + 1];
	int round;

	(void)state;
	for (round = 0; round < 3; round++) {
		if (round > 0)
			queue_flush_all();
		defer_all_unreached("connect to 127.0.0.1:25: Connection refused");
	}
	assert_int_equal(updates_seen, 0);
	assert_int_equal(nheld, 0);
	spool_qid_make(id, 1700000000, 1, 7);
	e = queue_find(id);
	assert_non_null(e);
	assert_int_equal(e->rcpts[0].attempts, 3);
	assert_int_equal(e->rcpts[1].attempts, 3);
	assert_int_equal(e->rcpts[0].status, RCPT_PENDING);
	assert_true(e->rcpts[0].next_attempt > 0);
	assert_string_equal(e->rcpts[0].last_reply, "connect to 127.0.0.1:25: Connection refused");
	assert_int_equal(e->nhist, 2);
	assert_int_equal(e->hist[0].rcpt, 0);
	assert_int_equal(e->hist[1].rcpt, 1);
	assert_string_equal(e->hist[0].relay, "127.0.0.1[127.0.0.1]:25");
	assert_true(e->hist[0].when == e->rcpts[0].last_attempt);
	/* never written: its removal has no .env to unlink */
	assert_false(e->env_file);
}

/*
 * What the unreached smarthost said differently is a record of its own,
 * and every record not written goes with the next write the message has
 * (here a 451 from the smarthost, back up), each with the reply it had.
 */
static void
test_unreached_deferrals_go_with_the_next_write(void **state)
{
	const struct spool_env *e;
	struct qmsg *m;
	char id[QID_LEN + 1];

	(void)state;
	spool_qid_make(id, 1700000000, 1, 0);
	memcpy(watch_id, id, sizeof watch_id);
	defer_all_unreached("Connection refused");
	queue_flush_all();
	defer_all_unreached("Connection refused");
	queue_flush_all();
	defer_all_unreached("Connection timed out");
	assert_int_equal(updates_seen, 0);
	assert_int_equal(queue_flush_one(id), 0);
	m = queue_ready_next(NULL);
	assert_non_null(m);
	assert_string_equal(m->env.id, id);
	queue_take(m);
	queue_outcome(m, 0, OUTCOME_DEFERRED, &down, "4.3.0", NULL, "451 4.3.0 try later");
	queue_outcome(m, 1, OUTCOME_SENT, &down, "2.0.0", NULL, "250 ok");
	queue_release(m);
	assert_int_equal(updates_seen, 1);
	/* six records: two a recipient while unreached (the reply changed once), then this try's */
	assert_int_equal(watch_nhist, 6);
	assert_string_equal(watch_hist[0], "0 deferred 127.0.0.1[127.0.0.1]:25 Connection refused");
	assert_string_equal(watch_hist[1], "1 deferred 127.0.0.1[127.0.0.1]:25 Connection refused");
	assert_string_equal(watch_hist[2], "0 deferred 127.0.0.1[127.0.0.1]:25 Connection timed out");
	assert_string_equal(watch_hist[3], "1 deferred 127.0.0.1[127.0.0.1]:25 Connection timed out");
	e = queue_find(id);
	assert_non_null(e);
	assert_int_equal(e->rcpts[0].attempts, 4);
	assert_int_equal(e->rcpts[1].attempts, 4);
	assert_true(e->env_file);
	watch_id[0] = '\0';
}

/* A recipient that expires at an unreached smarthost is bounced: that is written at once. */
static void
test_an_unreached_bounce_is_written(void **state)
{
	struct qmsg *m;

	(void)state;
	m = queue_ready_next(NULL);
	assert_non_null(m);
	queue_take(m);
	m->unreached = 1;
	queue_outcome(m, 0, OUTCOME_BOUNCED, &down, "4.4.7", "EXPIRED", "expired; last error: refused");
	queue_outcome(m, 1, OUTCOME_DEFERRED, &down, "4.4.1", "CONNECT", "refused");
	m->unreached = 0;
	queue_release(m);
	assert_int_equal(updates_seen, 1);
	assert_non_null(strstr(held[nheld - 1]->text, "rcpt\tfailed\t"));
}

static size_t nkept;
static char kept_first[160];

static void
count_kept(const struct unreach_rec *r, void *arg)
{
	(void)arg;
	if (nkept++ == 0)
		snprintf(kept_first, sizeof kept_first, "%s %u %u %s %s %s %s", r->id, r->rcpt, r->attempts,
		    r->kind, r->dsn, r->relay, r->reply);
}

/*
 * A stop keeps, in one file, the tries no envelope on disk holds: one
 * record per pending recipient of each message deferred only at an
 * unreached smarthost, none for a message written since.
 */
static void
test_a_stop_keeps_the_tries_no_envelope_holds(void **state)
{
	struct qmsg *m;
	char id[QID_LEN + 1];

	(void)state;
	defer_all_unreached("Connection refused");
	queue_flush_all();
	defer_all_unreached("Connection refused");
	/* one message written since (a recipient sent): its tries went with it */
	spool_qid_make(id, 1700000000, 1, 5);
	assert_int_equal(queue_flush_one(id), 0);
	m = queue_ready_next(NULL);
	queue_take(m);
	queue_outcome(m, 1, OUTCOME_SENT, &down, "2.0.0", NULL, "250 ok");
	queue_release(m);
	while (complete_one())
		;
	queue_save_unreached();
	char *text;
	size_t len;
	nkept = 0;
	assert_int_equal(spool_state_read(&D->spool, UNREACH_FILE, 1 << 20, &text, &len), 1);
	assert_int_equal(unreach_parse(text, len, count_kept, NULL), 0);
	free(text);
	assert_int_equal(nkept, 2 * (NMSG - 1));
	spool_qid_make(id, 1700000000, 1, 0);
	char want[160];
	snprintf(want, sizeof want, "%s 0 2 CONNECT 4.4.1 127.0.0.1[127.0.0.1]:25 Connection refused", id);
	assert_string_equal(kept_first, want);
	assert_int_equal(faccessat(D->spool.tmpfd, UNREACH_FILE, F_OK, 0), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_deferrals_are_bounded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_waiting_envelope_is_written_once_as_it_is_then, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_sent_recipient_is_written_at_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_message_deleted_while_waiting, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_stop_leaves_waiting_deferrals_unwritten, setup, teardown),
		cmocka_unit_test_setup_teardown(test_waiting_messages_come_back_in_due_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unreached_deferrals_are_not_written, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unreached_deferrals_go_with_the_next_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_an_unreached_bounce_is_written, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_stop_keeps_the_tries_no_envelope_holds, setup, teardown),
	};

	log_init("test_queue_writes", LOG_TO_STDERR, LOG_CRIT);
	return cmocka_run_group_tests(tests, NULL, NULL);
}

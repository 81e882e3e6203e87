/*
 * Unit tests for daemon/dispatch.c's kick: how much of the ready list a
 * kick walks.  The queue here is an array of ready messages; sessions are
 * counted, never started.  What is checked is work, not time: once every
 * smarthost is busy, a kick looks at one message per smarthost at most.
 * Before, each kick walked the whole ready list, and a kick comes with
 * every message that becomes ready: a queue of 100,000 took minutes to
 * load, with the event loop blocked.  Two more bounds on one turn of the
 * loop: a kick starts at most 64 sessions (a smarthost that refuses at
 * once ends each as it starts), and the messages a failed smarthost
 * leaves are given back 256 at a time; before, a restart with 100,000
 * messages due and the smarthost down kept the loop (and `mailrelay
 * status`) waiting most of a second.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "daemon/daemon.h"
#include "daemon/delivery_int.h"
#include "daemon/commit.h"
#include "daemon/dispatch.h"
#include "daemon/queue.h"
#include "daemon/ratekeep.h"
#include "daemon/runconf.h"
#include "xmalloc.h"

static struct daemon dstate;
struct daemon *D = &dstate;
static struct runconf rc;               /* only its configuration is read */

#define NMSG 20000

static struct qmsg *msgs;
static size_t nmsg;
static unsigned long visits;            /* queue_ready_next() calls */
static unsigned sessions[4];            /* per smarthost index */
static unsigned started[4];

/* ---- the stand-ins dispatch.c calls ---- */

struct qmsg *
queue_ready_next(struct qmsg *after)
{
	size_t i = after == NULL ? 0 : (size_t)(after - msgs) + 1;

	visits++;
	for (; i < nmsg; i++)
		if (msgs[i].ready)
			return &msgs[i];
	return NULL;
}

void
queue_take(struct qmsg *m)
{
	m->ready = 0;
	m->inflight = 1;
}

static size_t released;                 /* queue_release() calls */
static int instant_end;                 /* session_start(): the session ends at once */

void
queue_release(struct qmsg *m)
{
	m->inflight = 0;
	released++;
}

static size_t fo_ready;                 /* what queue_ready_failover() says */

size_t
queue_ready_failover(void)
{
	return fo_ready;
}

int
queue_has_ready(void)
{
	return nmsg > 0;
}

void
queue_on_ready(queue_ready_fn fn)
{
	(void)fn;
}

static queue_ready_fn flush_hook;       /* dispatch's: a flush gives back what jobs hold */

void
queue_on_flush(queue_ready_fn fn)
{
	flush_hook = fn;
}

unsigned
queue_retry_delay(unsigned attempts)
{
	(void)attempts;
	return 60;
}

void
session_start(size_t shidx, struct qmsg *m)
{
	(void)m;
	if (!instant_end)
		sessions[shidx]++;
	started[shidx]++;
}

unsigned
session_count(size_t shidx)
{
	return sessions[shidx];
}

static unsigned idle[4];                /* sessions waiting in IDLE, among sessions[] */
static unsigned resumed[4];             /* messages given to an idle session */

struct dsession *
session_idle(size_t shidx)
{
	return idle[shidx] > 0 ? (struct dsession *)&idle[shidx] : NULL;
}

void
session_resume(struct dsession *s, struct qmsg *m)
{
	size_t shidx = (size_t)((unsigned *)s - idle);

	(void)m;
	idle[shidx]--;
	resumed[shidx]++;
}

void
trouble_record(struct dsession *s, struct qmsg *m, size_t idx, enum trouble_kind k, int cls,
    const char *text)
{
	(void)s, (void)m, (void)idx, (void)k, (void)cls, (void)text;
}

void
trouble_record_ri(const struct relay_info *ri, struct qmsg *m, size_t idx, enum trouble_kind k, int cls,
    const char *text)
{
	(void)ri, (void)m, (void)idx, (void)k, (void)cls, (void)text;
}

void
session_relay_info(struct dsession *s, struct relay_info *ri)
{
	(void)s;
	ri->relay = "none";
	ri->tls = "none";
	ri->verify = NULL;
	ri->dsn = 0;
	ri->name = "main";
}

struct runconf *
runconf_ref(struct runconf *r)
{
	return r;
}

void
runconf_unref(struct runconf *r)
{
	(void)r;
}

static int removals_full;               /* what commit_removals_full() says */
static void (*relief_hook)(void);       /* dispatch's: the removals are down to half */

int
commit_removals_full(void)
{
	return removals_full;
}

void
commit_on_relief(void (*fn)(void))
{
	relief_hook = fn;
}

void
ratekeep_touch(void)
{
}

void
ratekeep_flush(void)
{
}

/* ---- setup ---- */

static void
configure(const char *smarthosts)
{
	char dir[] = "/tmp/mr-dispatch-XXXXXX", path[300], err[300];
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/mailrelay.conf", dir);
	assert_non_null(f = fopen(path, "w"));
	fprintf(f, "hostname = relay.test\nspool_dir = \"%s\"\nconcurrency = 2\n%s", dir, smarthosts);
	fclose(f);
	if (D->conf != NULL)
		conf_free(D->conf);
	D->conf = conf_load(path, err, sizeof err);
	if (D->conf == NULL)
		fail_msg("%s", err);
	rc.conf = D->conf;
	D->rc = &rc;
	unlink(path);
	rmdir(dir);
}

static void
fill(const char *sender_of_last)
{
	size_t i;

	nmsg = NMSG;
	msgs = xcalloc(nmsg, sizeof *msgs);
	for (i = 0; i < nmsg; i++) {
		msgs[i].ready = 1;
		msgs[i].env.sender = (char *)"a@example.org";
	}
	if (sender_of_last != NULL)
		msgs[nmsg - 1].env.sender = (char *)sender_of_last;
	memset(sessions, 0, sizeof sessions);
	memset(started, 0, sizeof started);
	visits = 0;
}

static int
setup(void **state)
{
	(void)state;
	log_init("test", LOG_TO_STDERR, LOG_EMERG);
	D->base = event_base_new();
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	free(msgs);
	msgs = NULL;
	dispatch_shutdown();
	return 0;
}

/* One smarthost, both sessions busy: each later kick looks at one message. */
static void
test_busy_kicks_look_at_one_message(void **state)
{
	int k;

	(void)state;
	configure("smarthost main {\n host = \"127.0.0.1\"\n tls = disabled\n}\n");
	fill(NULL);
	dispatch_kick();
	assert_int_equal(started[0], 2);       /* concurrency */
	visits = 0;
	for (k = 0; k < 1000; k++)
		dispatch_kick();                /* as 1,000 more messages become ready */
	assert_int_equal(started[0], 2);
	assert_true(visits <= 1000);            /* before: 1,000 walks of 20,000 */
	free(msgs);
	msgs = NULL;
}

/*
 * A connection waiting in IDLE takes the next message before any new
 * session starts, even with every session of the smarthost open.
 */
static void
test_idle_session_takes_the_next_message(void **state)
{
	(void)state;
	memset(sessions, 0, sizeof sessions);
	memset(started, 0, sizeof started);
	configure("smarthost main {\n host = \"127.0.0.1\"\n tls = disabled\n}\n");
	fill(NULL);
	sessions[0] = 2;                        /* concurrency reached ... */
	idle[0] = 1;                            /* ... but one of them is idle */
	dispatch_kick();
	assert_int_equal(resumed[0], 1);
	assert_int_equal(started[0], 0);
	assert_int_equal(idle[0], 0);
	assert_false(msgs[0].ready);            /* the first ready message, taken */
	assert_true(msgs[1].ready);
	dispatch_kick();                        /* busy now: nothing more */
	assert_int_equal(resumed[0], 1);
	assert_int_equal(started[0], 0);
	sessions[0] = 1;                        /* one ended, one is idle: the idle one first */
	idle[0] = 1;
	dispatch_kick();
	assert_int_equal(resumed[0], 2);
	assert_int_equal(started[0], 1);        /* then a new one up to concurrency */
	memset(resumed, 0, sizeof resumed);
	memset(sessions, 0, sizeof sessions);
	memset(started, 0, sizeof started);
	free(msgs);
	msgs = NULL;
}

/*
 * While the spool's removals are behind (commit_removals_full()), no
 * transaction starts: a kick starts no session, a session asking for its
 * next message gets none and may wait idle for it; the relief's kick
 * then hands the messages out as before.
 */
static void
test_full_removal_backlog_starts_nothing_until_its_relief(void **state)
{
	struct dsession s = { .shidx = 0 };

	(void)state;
	memset(sessions, 0, sizeof sessions);
	memset(started, 0, sizeof started);
	configure("smarthost main {\n host = \"127.0.0.1\"\n tls = disabled\n}\n");
	fill(NULL);
	s.rc = D->rc;
	s.sh = &D->conf->smarthosts[0];
	dispatch_init();
	assert_non_null(relief_hook);
	removals_full = 1;
	dispatch_kick();
	assert_int_equal(started[0], 0);
	assert_null(dispatch_next(&s));
	assert_true(msgs[0].ready);
	assert_true(dispatch_may_idle(&s));     /* it waits, connected, for the relief */
	idle[0] = 1;
	sessions[0] = 1;
	removals_full = 0;
	relief_hook();
	assert_int_equal(resumed[0], 1);        /* the idle session first */
	assert_int_equal(started[0], 1);        /* then up to concurrency */
	assert_false(msgs[0].ready);
	assert_false(msgs[1].ready);
	assert_non_null(dispatch_next(&s));     /* and the next message to a session that asks */
	memset(resumed, 0, sizeof resumed);
	memset(sessions, 0, sizeof sessions);
	memset(started, 0, sizeof started);
	free(msgs);
	msgs = NULL;
}

/* Two smarthosts, both busy: a kick stops at the first message for each. */
static void
test_every_smarthost_busy_stops_the_walk(void **state)
{
	(void)state;
	configure("smarthost main {\n host = \"127.0.0.1\"\n tls = disabled\n}\n"
	    "smarthost other {\n host = \"127.0.0.2\"\n tls = disabled\n}\n"
	    "route {\n from = \"b@example.org\"\n smarthost = other\n}\n");
	fill("b@example.org");                  /* the last message is routed to the other one */
	dispatch_kick();
	/* the walk went to the end to find it: both smarthosts started */
	assert_int_equal(started[0], 2);
	assert_int_equal(started[1], 1);
	sessions[1] = 2;                        /* now the other one is busy too */
	visits = 0;
	dispatch_kick();
	if (visits > 3)
		fail_msg("visits %lu, started %u %u, sessions %u %u, routes %zu", visits, started[0], started[1], sessions[0], sessions[1], D->conf->nroutes);
	free(msgs);
	msgs = NULL;
}

/*
 * A backup that nothing fails over to does not keep the walk going; a
 * message part-way through failover is found for it.
 */
static void
test_an_idle_backup_does_not_make_kicks_walk(void **state)
{
	int k;

	(void)state;
	configure("smarthost main {\n host = \"127.0.0.1\"\n tls = disabled\n}\n"
	    "smarthost backup {\n host = \"127.0.0.2\"\n tls = disabled\n}\n");
	fill(NULL);
	dispatch_kick();
	assert_int_equal(started[0], 2);
	assert_int_equal(started[1], 0);
	visits = 0;
	for (k = 0; k < 1000; k++)
		dispatch_kick();
	if (visits > 1000)
		fail_msg("1,000 kicks looked at %lu messages", visits);
	/* the last message failed over from main: backup takes it */
	msgs[nmsg - 1].fo = 1;
	fo_ready = 1;
	dispatch_kick();
	fo_ready = 0;
	assert_int_equal(started[1], 1);
	assert_int_equal(msgs[nmsg - 1].ready, 0);
	free(msgs);
	msgs = NULL;
}

/* Sessions that end as they start: 64 starts a kick, the rest from the loop. */
static void
test_a_kick_yields_after_64_starts(void **state)
{
	(void)state;
	configure("smarthost main {\n host = \"127.0.0.1\"\n tls = disabled\n}\n");
	fill(NULL);
	instant_end = 1;
	dispatch_kick();
	assert_int_equal(started[0], 64);
	event_base_loop(D->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	assert_int_equal(started[0], 128);
	instant_end = 0;
	dispatch_shutdown();
	free(msgs);
	msgs = NULL;
}

/* A failed smarthost's ready messages: all taken at once, given back 256 a turn, in order. */
static void
test_failed_smarthost_gives_back_in_chunks(void **state)
{
	struct dsession s;
	size_t turns = 0, i;

	(void)state;
	configure("smarthost main {\n host = \"127.0.0.1\"\n tls = disabled\n}\n");
	fill(NULL);
	memset(&s, 0, sizeof s);
	s.rc = &rc;
	s.shidx = 0;
	s.sh = &D->conf->smarthosts[0];
	released = 0;
	queue_take(&msgs[0]);                   /* the session's own */
	dispatch_smarthost_failed(&s, &msgs[0], TK_CONNECT, "connection refused");
	assert_int_equal(released, 256);
	for (i = 0; i < nmsg; i++)
		assert_int_equal(msgs[i].ready, 0);     /* every one taken: none tried again meanwhile */
	assert_int_equal(msgs[255].inflight, 0);
	assert_int_equal(msgs[256].inflight, 1);
	while (released < nmsg && turns < nmsg) {
		event_base_loop(D->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		turns++;
	}
	assert_int_equal(released, nmsg);
	assert_int_equal(turns, (nmsg - 256 + 255) / 256);
	/*
	 * A flush while a job is not done gives its messages back untried
	 * (the bench's drain: the sink back, a flush, while 100,000 were
	 * still being deferred, and most then waited for their next retry).
	 */
	free(msgs);
	fill(NULL);
	released = 0;
	dispatch_init();
	assert_non_null(flush_hook);
	dispatch_smarthost_failed(&s, NULL, TK_CONNECT, "connection refused");
	assert_int_equal(released, 256);
	flush_hook();
	assert_int_equal(released, nmsg);
	for (i = 0; i < nmsg; i++)
		assert_int_equal(msgs[i].inflight, 0);
	event_base_loop(D->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);	/* the job's event finds nothing */
	assert_int_equal(released, nmsg);
	/* a job not done at shutdown gives its messages back untried */
	free(msgs);
	fill(NULL);
	released = 0;
	dispatch_smarthost_failed(&s, NULL, TK_CONNECT, "connection refused");
	assert_int_equal(released, 256);
	dispatch_shutdown();
	assert_int_equal(released, nmsg);
	free(msgs);
	msgs = NULL;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_busy_kicks_look_at_one_message),
		cmocka_unit_test(test_idle_session_takes_the_next_message),
		cmocka_unit_test(test_full_removal_backlog_starts_nothing_until_its_relief),
		cmocka_unit_test(test_every_smarthost_busy_stops_the_walk),
		cmocka_unit_test(test_an_idle_backup_does_not_make_kicks_walk),
		cmocka_unit_test(test_a_kick_yields_after_64_starts),
		cmocka_unit_test(test_failed_smarthost_gives_back_in_chunks),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

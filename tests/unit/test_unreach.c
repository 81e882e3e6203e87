/*
 * Unit tests for spool/unreach.c: the file in which a stop keeps the tries
 * at unreached smarthosts that no envelope holds, read back by the next
 * start and by the listing while the daemon is down.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spool/spool.h"
#include "spool/unreach.h"
#include "xmalloc.h"

static char root[64];
static struct spool sp;

static int
setup(void **state)
{
	char err[256];

	(void)state;
	snprintf(root, sizeof root, "/tmp/test_unreach.XXXXXX");
	assert_non_null(mkdtemp(root));
	assert_int_equal(spool_open(&sp, root, 1, err, sizeof err), 0);
	return 0;
}

static int
teardown(void **state)
{
	char cmd[128];

	(void)state;
	spool_close(&sp);
	snprintf(cmd, sizeof cmd, "rm -rf %s", root);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static char *
file_text(void)
{
	static char buf[4096];
	char path[128];
	FILE *f;
	size_t n;

	snprintf(path, sizeof path, "%s/%s", root, UNREACH_FILE);
	f = fopen(path, "r");
	if (f == NULL)
		return NULL;
	n = fread(buf, 1, sizeof buf - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void
write_file(const char *text)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof path, "%s/%s", root, UNREACH_FILE);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static struct unreach_rec
rec(const char *id, unsigned rcpt, unsigned attempts, time_t when, const char *reply)
{
	struct unreach_rec r;

	memset(&r, 0, sizeof r);
	snprintf(r.id, sizeof r.id, "%s", id);
	r.rcpt = rcpt;
	r.attempts = attempts;
	r.when = when;
	r.kind = "CONNECT";
	r.dsn = "4.4.1";
	r.relay = "127.0.0.1[127.0.0.1]:25";
	r.reply = reply;
	return r;
}

/* An envelope of two recipients: 0 pending with one attempt, 1 as given. */
static void
make_env(struct spool_env *e, const char *id, enum rcpt_status st1)
{
	memset(e, 0, sizeof *e);
	snprintf(e->id, sizeof e->id, "%s", id);
	e->sender = xstrdup("a@example.org");
	e->nrcpt = 2;
	e->rcpts = xcalloc(2, sizeof *e->rcpts);
	for (int i = 0; i < 2; i++) {
		e->rcpts[i].addr = xasprintf("r%d@example.net", i);
		e->rcpts[i].last_reply = xstrdup("connect: refused");
		e->rcpts[i].attempts = 1;
	}
	e->rcpts[1].status = st1;
}

#define ID_A "6B13AB2125E44001"
#define ID_B "6B13AB2125E44002"
#define ID_C "6B13AB2125E44003"

/* Written and read back along a scan: every record as it was; the same strings again are "=". */
static void
test_written_records_read_back(void **state)
{
	struct unreach_out *o;
	struct unreach_rec r;
	struct unreach_cursor *c;
	struct spool_env e;

	(void)state;
	o = unreach_begin(&sp);
	assert_non_null(o);
	r = rec(ID_A, 0, 4, 1800000002, "connect to 127.0.0.1:25: Connection timed out");
	unreach_add(o, &r);
	r = rec(ID_A, 1, 3, 1800000001, "connect to 127.0.0.1:25: Connection refused");
	unreach_add(o, &r);
	r = rec(ID_B, 0, 7, 1800000000, "connect to 127.0.0.1:25: Connection refused");
	unreach_add(o, &r);
	assert_int_equal(unreach_commit(o), 0);
	assert_string_equal(file_text(),
	    "mailrelay-unreached 1\n"
	    "tried\t" ID_A "\t0\t4\t1800000002\t:CONNECT\t:4.4.1\t:127.0.0.1[127.0.0.1]:25"
	    "\t:connect to 127.0.0.1:25: Connection timed out\n"
	    "tried\t" ID_A "\t1\t3\t1800000001\t=\t=\t=\t:connect to 127.0.0.1:25: Connection refused\n"
	    "tried\t" ID_B "\t0\t7\t1800000000\t=\t=\t=\t=\n");
	/* nothing was left in tmp/ */
	assert_int_equal(faccessat(sp.tmpfd, UNREACH_FILE, F_OK, 0), -1);

	c = unreach_open(&sp);
	assert_non_null(c);
	make_env(&e, ID_A, RCPT_PENDING);
	assert_int_equal(unreach_apply(c, &e), 2);
	assert_int_equal(e.rcpts[0].attempts, 4);
	assert_int_equal(e.rcpts[0].last_attempt, 1800000002);
	assert_string_equal(e.rcpts[0].last_reply, "connect to 127.0.0.1:25: Connection timed out");
	assert_string_equal(e.rcpts[0].kind, "CONNECT");
	assert_string_equal(e.rcpts[0].dsn, "4.4.1");
	assert_int_equal(e.rcpts[1].attempts, 3);
	assert_string_equal(e.rcpts[1].last_reply, "connect to 127.0.0.1:25: Connection refused");
	/* one attempt record each */
	assert_int_equal(e.nhist, 2);
	assert_int_equal(e.hist[0].rcpt, 0);
	assert_string_equal(e.hist[0].outcome, "deferred");
	assert_string_equal(e.hist[0].relay, "127.0.0.1[127.0.0.1]:25");
	assert_string_equal(e.hist[0].reply, "connect to 127.0.0.1:25: Connection timed out");
	assert_int_equal(e.hist[1].rcpt, 1);
	spool_env_free(&e);
	make_env(&e, ID_B, RCPT_PENDING);
	assert_int_equal(unreach_apply(c, &e), 1);
	assert_int_equal(e.rcpts[0].attempts, 7);
	assert_string_equal(e.rcpts[0].last_reply, "connect to 127.0.0.1:25: Connection refused");
	spool_env_free(&e);
	assert_int_equal(unreach_read(c), 3);
	unreach_close(c);

	assert_int_equal(unreach_remove(&sp), 0);
	assert_null(file_text());
	assert_int_equal(unreach_remove(&sp), 0);	/* none: not an error */
	c = unreach_open(&sp);				/* none: nothing to add */
	assert_non_null(c);
	make_env(&e, ID_A, RCPT_PENDING);
	assert_int_equal(unreach_apply(c, &e), 0);
	spool_env_free(&e);
	unreach_close(c);
}

/* Only what is newer than the envelope: a pending recipient with more attempts than it counts. */
static void
test_only_what_is_newer_is_applied(void **state)
{
	struct unreach_cursor *c;
	struct spool_env e;

	(void)state;
	write_file("mailrelay-unreached 1\n"
	    "tried\t" ID_A "\t0\t1\t1800000000\t:CONNECT\t:4.4.1\t:none\t:older\n"
	    "tried\t" ID_A "\t1\t9\t1800000000\t=\t=\t=\t:sent since\n"
	    "tried\t" ID_A "\t5\t9\t1800000000\t=\t=\t=\t:no such recipient\n");
	c = unreach_open(&sp);
	assert_non_null(c);
	make_env(&e, ID_A, RCPT_SENT);
	e.rcpts[0].attempts = 2;
	assert_int_equal(unreach_apply(c, &e), 0);
	assert_int_equal(e.rcpts[0].attempts, 2);
	assert_int_equal(e.rcpts[1].attempts, 1);
	assert_string_equal(e.rcpts[0].last_reply, "connect: refused");
	assert_int_equal(e.nhist, 0);
	spool_env_free(&e);
	assert_int_equal(unreach_read(c), 3);
	unreach_close(c);
}

/*
 * Along the scan: records of messages gone since (ids before the one
 * scanned) are passed over, a message without records takes nothing, and
 * one scanned out of order (before the records read) takes nothing either.
 */
static void
test_records_are_read_along_the_scan(void **state)
{
	struct unreach_cursor *c;
	struct spool_env e;

	(void)state;
	write_file("mailrelay-unreached 1\n"
	    "tried\t" ID_A "\t0\t5\t1800000000\t:CONNECT\t:4.4.1\t:none\t:gone\n"
	    "tried\t" ID_C "\t0\t6\t1800000000\t=\t=\t=\t:here\n");
	c = unreach_open(&sp);
	assert_non_null(c);
	make_env(&e, ID_B, RCPT_PENDING);
	assert_int_equal(unreach_apply(c, &e), 0);
	spool_env_free(&e);
	make_env(&e, ID_C, RCPT_PENDING);
	assert_int_equal(unreach_apply(c, &e), 1);
	assert_string_equal(e.rcpts[0].last_reply, "here");
	spool_env_free(&e);
	make_env(&e, ID_A, RCPT_PENDING);
	assert_int_equal(unreach_apply(c, &e), 0);
	spool_env_free(&e);
	unreach_close(c);
}

/*
 * Damage is skipped record by record: a bad id, number or string, a field
 * too many or too few, an "=" with no whole record before it, a line
 * longer than any record, a last line without its LF; records of another
 * name are another version's.  A file that is not ours yields nothing.
 */
static void
test_damaged_records_are_skipped(void **state)
{
	struct unreach_cursor *c;
	struct spool_env e;
	char text[8192], longer[3000];

	(void)state;
	memset(longer, 'x', sizeof longer - 1);
	longer[sizeof longer - 1] = '\0';
	snprintf(text, sizeof text, "mailrelay-unreached 1\n"
	    "tried\t" ID_A "\t0\t5\t1800000000\t=\t=\t=\t=\n"           /* "=" with nothing before */
	    "tried\t6B13AB2125E4400\t0\t5\t1800000000\t:K\t:4.4.1\t:r\t:x\n"      /* id one short */
	    "tried\t" ID_A "\t0\t-5\t1800000000\t:K\t:4.4.1\t:r\t:x\n"
	    "tried\t" ID_A "\t0\t5\t1800000000\t:K\t:4.4.1\t:r\n"
	    "tried\t" ID_A "\t0\t5\t1800000000\t:K\t:4.4.1\t:r\t:x\t:y\n"
	    "tried\t" ID_A "\t0\t5\t1800000000\tK\t:4.4.1\t:r\t:x\n"
	    "tried\t" ID_A "\t0\t5\t1800000000\t:a-kind-far-longer-than-its-field\t:4.4.1\t:r\t:x\n"
	    "tried\t" ID_A "\t0\t5\t1800000000\t:K\t:4.4.1\t:r\t:%s\n"
	    "later\tsomething\n"
	    "tried\t" ID_A "\t1\t6\t1800000000\t:CONNECT\t:4.4.1\t:none\t:whole\n"
	    "tried\t" ID_A "\t0\t8\t1800000000\t=\t=\t=\t:cut", longer);
	write_file(text);
	c = unreach_open(&sp);
	assert_non_null(c);
	make_env(&e, ID_A, RCPT_PENDING);
	assert_int_equal(unreach_apply(c, &e), 1);
	assert_int_equal(e.rcpts[0].attempts, 1);
	assert_int_equal(e.rcpts[1].attempts, 6);
	assert_string_equal(e.rcpts[1].last_reply, "whole");
	spool_env_free(&e);
	assert_int_equal(unreach_read(c), 1);
	unreach_close(c);

	write_file("mailrelay-rate 1\nstart\tx\t1\n");
	errno = 0;
	assert_null(unreach_open(&sp));
	assert_int_equal(errno, EINVAL);
}

/* What the parser would refuse is never written: a TAB or LF in a string, one too long. */
static void
test_the_writer_writes_only_what_reads_back(void **state)
{
	struct unreach_out *o;
	struct unreach_rec r;
	char longer[1100];

	(void)state;
	memset(longer, 'x', sizeof longer - 1);
	longer[sizeof longer - 1] = '\0';
	o = unreach_begin(&sp);
	assert_non_null(o);
	r = rec(ID_A, 0, 2, 1800000000, "a\ttab");
	unreach_add(o, &r);
	r = rec(ID_A, 0, 2, 1800000000, longer);
	unreach_add(o, &r);
	r = rec("not-an-id", 0, 2, 1800000000, "fine");
	unreach_add(o, &r);
	r = rec(ID_A, 0, 2, 1800000000, "fine");
	unreach_add(o, &r);
	assert_int_equal(unreach_commit(o), 0);
	assert_string_equal(file_text(), "mailrelay-unreached 1\n"
	    "tried\t" ID_A "\t0\t2\t1800000000\t:CONNECT\t:4.4.1\t:127.0.0.1[127.0.0.1]:25\t:fine\n");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_written_records_read_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_only_what_is_newer_is_applied, setup, teardown),
		cmocka_unit_test_setup_teardown(test_records_are_read_along_the_scan, setup, teardown),
		cmocka_unit_test_setup_teardown(test_damaged_records_are_skipped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_the_writer_writes_only_what_reads_back, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

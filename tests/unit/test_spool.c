/*
 * Unit tests for spool/: queue ids, the commit protocol, envelope
 * round trips and updates, removal, scanning and orphan clean-up, and
 * damage (an envelope cut short or garbled, content of the wrong length).
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
#include <sys/stat.h>
#include <unistd.h>

#include "spool/ratewin.h"
#include "spool/spool.h"
#include "xmalloc.h"

static char root[256];

static int
setup(void **state)
{
	(void)state;
	snprintf(root, sizeof root, "/tmp/mr-spool-test.XXXXXX");
	assert_non_null(mkdtemp(root));
	return 0;
}

static int
teardown(void **state)
{
	char cmd[300];
	(void)state;
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static void
make_env(struct spool_env *e, const char *id, size_t nrcpt)
{
	size_t i;

	memset(e, 0, sizeof *e);
	memcpy(e->id, id, QID_LEN + 1);
	e->arrival = 1700000000;
	e->arrival_usec = 123456;
	e->sender = xstrdup("cron@web1.example.com");
	e->uid = 1000;
	strcpy(e->via, "sendmail");
	e->size = 42;
	e->eightbit = 1;
	e->rcpts = xcalloc(nrcpt, sizeof *e->rcpts);
	e->nrcpt = nrcpt;
	for (i = 0; i < nrcpt; i++) {
		e->rcpts[i].addr = xasprintf("user%zu@example.com", i);
		e->rcpts[i].orig = xasprintf("user%zu", i);
		e->rcpts[i].last_reply = xstrdup("");
	}
}

static int
exists(const char *sub, const char *id, const char *suffix)
{
	char p[512];
	struct stat st;
	snprintf(p, sizeof p, "%s/%s/%s%s", root, sub, id, suffix);
	return stat(p, &st) == 0;
}

static void
test_qid(void **state)
{
	char a[QID_LEN + 1], b[QID_LEN + 1], c[QID_LEN + 1];
	(void)state;

	spool_qid_make(a, 1700000000, 999999, 0);
	spool_qid_make(b, 1700000000, 999999, 1);
	spool_qid_make(c, 1700000001, 0, 0);
	assert_int_equal(strlen(a), QID_LEN);
	assert_true(spool_qid_valid(a));
	assert_true(strcmp(a, b) < 0);
	assert_true(strcmp(b, c) < 0);		/* sorts by arrival */
	assert_string_equal(a, "6553F100F423F000");
	/* sequence wraps in 12 bits, never overflows the id */
	spool_qid_make(a, 1700000000, 0, 0x1fff);
	assert_string_equal(a + 13, "FFF");

	assert_false(spool_qid_valid(NULL));
	assert_false(spool_qid_valid(""));
	assert_false(spool_qid_valid("6553F100F423F00"));	/* short */
	assert_false(spool_qid_valid("6553F100F423F0000"));	/* long */
	assert_false(spool_qid_valid("6553f100f423f000"));	/* lower case */
	assert_false(spool_qid_valid("../../etc/passwd"));
	assert_false(spool_qid_valid("6553F100F423F/00"));
}

static void
test_commit_and_read(void **state)
{
	struct spool sp;
	struct spool_txn txn;
	struct spool_env e, r;
	char err[256], buf[64];
	const char *id = "6553F100F423F000";
	(void)state;

	assert_int_equal(spool_open(&sp, root, 1, err, sizeof err), 0);
	assert_int_equal(spool_txn_begin(&sp, id, &txn), 0);
	spool_txn_write(&txn, "Subject: x\r\n\r\n", 14);
	spool_txn_write(&txn, "body\r\n", 6);
	assert_int_equal(txn.size, 20);
	/* content that fits the buffer makes no file before prepare */
	assert_false(exists("tmp", id, ".msg"));
	assert_false(exists("queue", id, ".msg"));
	make_env(&e, id, 2);
	e.size = txn.size;
	assert_int_equal(spool_txn_prepare(&txn, &e, 1, err, sizeof err), 0);
	/* one file, made in queue/ whole: the content, then the envelope and its footer */
	assert_int_equal(e.size, 20);
	assert_true(e.tail > SPOOL_FOOT_LEN);
	assert_true(exists("queue", id, ".msg"));
	assert_false(exists("tmp", id, ".msg"));
	assert_false(exists("tmp", id, ".env"));
	assert_int_equal(spool_txn_publish(&txn, err, sizeof err), 0);
	assert_int_equal(spool_sync_queue(&sp), 0);
	assert_false(exists("queue", id, ".env"));
	assert_true(exists("queue", id, ".msg"));
	assert_false(exists("tmp", id, ".msg"));
	/* the same id again: its prepare fails (O_EXCL), and its abort leaves the first alone */
	{
		struct spool_txn txn2;
		struct spool_env e2;
		assert_int_equal(spool_txn_begin(&sp, id, &txn2), 0);
		spool_txn_write(&txn2, "other\r\n", 7);
		make_env(&e2, id, 1);
		assert_int_equal(spool_txn_prepare(&txn2, &e2, 1, err, sizeof err), -1);
		assert_int_equal(errno, EEXIST);
		assert_non_null(strstr(err, "/queue/6553F100F423F000.msg"));
		spool_txn_abort(&txn2);
		spool_env_free(&e2);
		assert_true(exists("queue", id, ".msg"));
	}
	{
		struct stat st;
		char p[512];
		snprintf(p, sizeof p, "%s/queue/%s.msg", root, id);
		assert_int_equal(stat(p, &st), 0);
		assert_int_equal(st.st_size, 20 + e.tail);
	}

	assert_int_equal(spool_env_read(&sp, id, &r, err, sizeof err), 0);
	assert_string_equal(r.id, id);
	assert_int_equal(r.arrival, 1700000000);
	assert_int_equal(r.arrival_usec, 123456);
	assert_string_equal(r.sender, "cron@web1.example.com");
	assert_int_equal(r.uid, 1000);
	assert_string_equal(r.via, "sendmail");
	assert_int_equal(r.size, 20);
	assert_int_equal(r.tail, e.tail);
	assert_int_equal(spool_msg_check(&sp, &r, -1, err, sizeof err), 0);
	assert_int_equal(r.eightbit, 1);
	assert_int_equal(r.nrcpt, 2);
	assert_string_equal(r.rcpts[1].addr, "user1@example.com");
	assert_string_equal(r.rcpts[1].orig, "user1");
	assert_int_equal(r.rcpts[0].status, RCPT_PENDING);

	/* the content is the file's first size octets; readers stop there */
	int fd = spool_msg_open(&sp, id);
	assert_true(fd >= 0);
	ssize_t n = read(fd, buf, 20);
	close(fd);
	assert_int_equal(n, 20);
	assert_memory_equal(buf, "Subject: x\r\n\r\nbody\r\n", 20);
	size_t clen;
	char *content = spool_msg_read(&sp, &r, SIZE_MAX, &clen);
	assert_non_null(content);
	assert_int_equal(clen, 20);
	assert_memory_equal(content, "Subject: x\r\n\r\nbody\r\n", 20);
	free(content);
	spool_env_free(&r);

	/* update: status, attempts, reply with a tab and newline flattened */
	e.rcpts[0].status = RCPT_SENT;
	e.rcpts[0].attempts = 1;
	e.rcpts[1].attempts = 3;
	e.rcpts[1].next_attempt = 1700000300;
	e.rcpts[1].last_attempt = 1700000000;
	free(e.rcpts[1].last_reply);
	e.rcpts[1].last_reply = xstrdup("451 4.3.0\ttry\r\nlater");
	e.rcpts[0].reported = 1;	/* written */
	e.rcpts[1].reporting = 1;	/* memory only */
	snprintf(e.rcpts[1].dsn, sizeof e.rcpts[1].dsn, "4.4.7");	/* the status decided, carried */
	snprintf(e.rcpts[1].kind, sizeof e.rcpts[1].kind, "EXPIRED");	/* and the failure kind */
	assert_int_equal(spool_env_write(&sp, &e, 1, err, sizeof err), 0);
	assert_false(exists("tmp", id, ".env.new"));
	/* the first change puts the envelope beside the content; it records the tail */
	assert_true(exists("queue", id, ".env"));
	assert_int_equal(spool_env_read(&sp, id, &r, err, sizeof err), 0);
	assert_int_equal(r.tail, e.tail);
	assert_int_equal(spool_msg_check(&sp, &r, -1, err, sizeof err), 0);
	assert_int_equal(r.rcpts[0].status, RCPT_SENT);
	assert_int_equal(r.rcpts[1].attempts, 3);
	assert_int_equal(r.rcpts[1].next_attempt, 1700000300);
	assert_string_equal(r.rcpts[1].last_reply, "451 4.3.0 try  later");
	assert_int_equal(r.rcpts[0].reported, 1);
	assert_int_equal(r.rcpts[1].reported, 0);
	assert_int_equal(r.rcpts[1].reporting, 0);
	assert_string_equal(r.rcpts[1].dsn, "4.4.7");
	assert_string_equal(r.rcpts[0].dsn, "");
	assert_string_equal(r.rcpts[1].kind, "EXPIRED");
	assert_string_equal(r.rcpts[0].kind, "");
	spool_env_free(&r);

	assert_int_equal(spool_remove(&sp, id, 1), 0);
	assert_false(exists("queue", id, ".env"));
	assert_false(exists("queue", id, ".msg"));
	assert_int_equal(spool_env_read(&sp, id, &r, err, sizeof err), -1);
	assert_int_equal(spool_env_read(&sp, "../queue/x", &r, err, sizeof err), -1);
	spool_env_free(&e);
	spool_close(&sp);
}

/* The content a transaction buffers: order kept across the buffer's edge, big writes, filter, failure. */
static int
upper_filter_calls;

static char *
upper_filter(const char *content, size_t len, size_t *outlen, void *arg)
{
	char *out = xmalloc(len);
	size_t i;

	(void)arg;
	upper_filter_calls++;
	for (i = 0; i < len; i++)
		out[i] = content[i] >= 'a' && content[i] <= 'z' ? (char)(content[i] - 32) : content[i];
	*outlen = len;
	return out;
}

/* Replaces any content by 2 * SPOOL_TXN_BUF octets: more than the buffer holds. */
static char *
grow_filter(const char *content, size_t len, size_t *outlen, void *arg)
{
	char *out = xmalloc(2 * SPOOL_TXN_BUF);

	(void)arg;
	upper_filter_calls++;
	memset(out, 'g', 2 * SPOOL_TXN_BUF);
	memcpy(out, content, len < SPOOL_TXN_BUF ? len : SPOOL_TXN_BUF);
	*outlen = 2 * SPOOL_TXN_BUF;
	return out;
}

static void
commit_content(struct spool *sp, const char *id, const char *const *parts, const size_t *lens, size_t n,
    int filter, char **content, size_t *clen)
{
	struct spool_txn txn;
	struct spool_env e, r;
	char err[256];
	unsigned long long total = 0;
	size_t i;

	assert_int_equal(spool_txn_begin(sp, id, &txn), 0);
	for (i = 0; i < n; i++) {
		spool_txn_write(&txn, parts[i], lens[i]);
		total += lens[i];
		assert_int_equal(txn.size, total);	/* counted when buffered, not when written */
		assert_true(txn.blen <= SPOOL_TXN_BUF);
	}
	if (filter)
		assert_int_equal(spool_txn_filter(&txn, filter == 2 ? grow_filter : upper_filter, NULL), 1);
	/* a file in tmp/ only once the content overflowed the buffer */
	int overflowed = txn.msgfd != -1;
	assert_int_equal(exists("tmp", id, ".msg"), overflowed);
	make_env(&e, id, 1);
	assert_int_equal(spool_txn_prepare(&txn, &e, 1, err, sizeof err), 0);
	assert_null(txn.buf);
	assert_int_equal(e.size, total > 0 && filter == 2 ? 2 * SPOOL_TXN_BUF : total);
	/* content that fit the buffer is written straight into queue/; the rest goes by tmp/ */
	assert_int_equal(txn.in_queue, !overflowed);
	assert_int_equal(exists("queue", id, ".msg"), !overflowed);
	assert_int_equal(spool_txn_publish(&txn, err, sizeof err), 0);
	assert_true(exists("queue", id, ".msg"));
	assert_false(exists("tmp", id, ".msg"));
	assert_int_equal(spool_env_read(sp, id, &r, err, sizeof err), 0);
	assert_int_equal(spool_msg_check(sp, &r, -1, err, sizeof err), 0);
	*content = spool_msg_read(sp, &r, SIZE_MAX, clen);
	assert_non_null(*content);
	spool_env_free(&r);
	spool_env_free(&e);
}

static void
test_txn_buffer(void **state)
{
	struct spool sp;
	struct spool_txn txn;
	struct spool_env e;
	char err[256], *content, *big, *expect;
	size_t clen, i, off;
	(void)state;

	assert_int_equal(spool_open(&sp, root, 1, err, sizeof err), 0);
	big = xmalloc(3 * SPOOL_TXN_BUF);
	for (i = 0; i < 3 * SPOOL_TXN_BUF; i++)
		big[i] = (char)('a' + i % 26);

	/* small parts, then one that crosses the edge, one larger than the buffer, a last small one */
	{
		const char *parts[] = { "Subject: x\r\n\r\n", big, big + 100, big + 7, "end\r\n" };
		size_t lens[] = { 14, SPOOL_TXN_BUF - 20, 300, 2 * SPOOL_TXN_BUF + 5, 5 };
		size_t total = 14 + SPOOL_TXN_BUF - 20 + 300 + 2 * SPOOL_TXN_BUF + 5 + 5;

		commit_content(&sp, "6553F100F423F010", parts, lens, 5, 0, &content, &clen);
		assert_int_equal(clen, total);
		expect = xmalloc(total);
		for (off = 0, i = 0; i < 5; i++) {
			memcpy(expect + off, parts[i], lens[i]);
			off += lens[i];
		}
		assert_memory_equal(content, expect, total);
		free(expect);
		free(content);
	}
	/* the filter sees the buffered content too, and what it writes replaces it */
	{
		const char *parts[] = { "subject: y\r\n\r\n", "body\r\n" };
		size_t lens[] = { 14, 6 };

		upper_filter_calls = 0;
		commit_content(&sp, "6553F100F423F011", parts, lens, 2, 1, &content, &clen);
		assert_int_equal(upper_filter_calls, 1);
		assert_int_equal(clen, 20);
		assert_memory_equal(content, "SUBJECT: Y\r\n\r\nBODY\r\n", 20);
		free(content);
	}
	/* a filter of buffered content that returns more than the buffer holds: it goes by tmp/ */
	{
		const char *parts[] = { "subject: z\r\n\r\nbody\r\n" };
		size_t lens[] = { 20 };

		upper_filter_calls = 0;
		commit_content(&sp, "6553F100F423F014", parts, lens, 1, 2, &content, &clen);
		assert_int_equal(upper_filter_calls, 1);
		assert_int_equal(clen, 2 * SPOOL_TXN_BUF);
		assert_memory_equal(content, "subject: z\r\n\r\nbody\r\ngggg", 24);
		assert_int_equal(content[clen - 1], 'g');
		free(content);
	}
	/* a filter of content in tmp/ (larger than the buffer) */
	{
		const char *parts[] = { "subject: w\r\n\r\n", big };
		size_t lens[] = { 14, SPOOL_TXN_BUF + 3 };

		upper_filter_calls = 0;
		commit_content(&sp, "6553F100F423F015", parts, lens, 2, 1, &content, &clen);
		assert_int_equal(upper_filter_calls, 1);
		assert_int_equal(clen, 14 + SPOOL_TXN_BUF + 3);
		assert_memory_equal(content, "SUBJECT: W\r\n\r\nABC", 17);
		free(content);
	}
	/* a write that fails while buffered content goes out: the transaction fails with its errno */
	assert_int_equal(spool_txn_begin(&sp, "6553F100F423F012", &txn), 0);
	spool_txn_write(&txn, big, 100);
	assert_false(txn.failed);
	{
		int fd = txn.msgfd;

		txn.msgfd = open("/dev/null", O_RDONLY);	/* writes now fail: EBADF */
		spool_txn_write(&txn, big, SPOOL_TXN_BUF);
		assert_true(txn.failed);
		assert_int_equal(txn.err, EBADF);
		close(txn.msgfd);
		txn.msgfd = fd;
	}
	make_env(&e, "6553F100F423F012", 1);
	assert_int_equal(spool_txn_prepare(&txn, &e, 1, err, sizeof err), -1);
	assert_null(txn.buf);
	assert_non_null(strstr(err, strerror(EBADF)));
	spool_txn_abort(&txn);
	assert_false(exists("tmp", "6553F100F423F012", ".msg"));
	spool_env_free(&e);
	/* an abort with content still buffered frees it and removes the file */
	assert_int_equal(spool_txn_begin(&sp, "6553F100F423F013", &txn), 0);
	spool_txn_write(&txn, big, 10);
	spool_txn_abort(&txn);
	assert_false(exists("tmp", "6553F100F423F013", ".msg"));
	free(big);
	spool_close(&sp);
}

static void
test_abort(void **state)
{
	struct spool sp;
	struct spool_txn txn;
	char err[256];
	const char *id = "6553F100F423F001";
	(void)state;

	assert_int_equal(spool_open(&sp, root, 1, err, sizeof err), 0);
	assert_int_equal(spool_txn_begin(&sp, id, &txn), 0);
	spool_txn_write(&txn, "x", 1);
	spool_txn_abort(&txn);
	assert_false(exists("tmp", id, ".msg"));
	assert_false(exists("queue", id, ".msg"));
	/*
	 * Prepared, whole in queue/, then its batch's flush fails: the abort
	 * that answers the failure removes it there, or a restart would
	 * deliver a message the client was told was not accepted.
	 */
	{
		struct spool_env e;
		char err2[256];
		assert_int_equal(spool_txn_begin(&sp, id, &txn), 0);
		spool_txn_write(&txn, "Subject: a\r\n\r\n", 14);
		make_env(&e, id, 1);
		assert_int_equal(spool_txn_prepare(&txn, &e, 0, err2, sizeof err2), 0);
		assert_true(txn.in_queue);
		assert_true(exists("queue", id, ".msg"));
		spool_txn_abort(&txn);
		assert_false(exists("queue", id, ".msg"));
		spool_env_free(&e);
	}
	spool_close(&sp);
}

struct scan_ctx {
	char ids[8][QID_LEN + 1];
	char damaged[8][200];
	int n;
};

static int
collect(struct spool_env *e, void *arg)
{
	struct scan_ctx *c = arg;
	if (c->n < 8) {
		snprintf(c->damaged[c->n], sizeof c->damaged[c->n], "%s", e->damaged ? e->damaged : "");
		memcpy(c->ids[c->n++], e->id, QID_LEN + 1);
	}
	return 0;
}

static void
commit_rcpts(struct spool *sp, const char *id, size_t nrcpt)
{
	struct spool_txn txn;
	struct spool_env e;
	char err[256];

	assert_int_equal(spool_txn_begin(sp, id, &txn), 0);
	spool_txn_write(&txn, "hello\r\n", 7);
	make_env(&e, id, nrcpt);
	assert_int_equal(spool_txn_prepare(&txn, &e, 0, err, sizeof err), 0);
	assert_int_equal(e.size, 7);	/* the spool records what it wrote, not the caller's 42 */
	assert_int_equal(spool_syncfs(sp), 0);
	assert_int_equal(spool_txn_publish(&txn, err, sizeof err), 0);
	spool_env_free(&e);
}

static void
commit_one(struct spool *sp, const char *id)
{
	commit_rcpts(sp, id, 1);
}

/* A message committed, then changed once: its envelope is then queue/ID.env. */
static void
commit_changed_rcpts(struct spool *sp, const char *id, size_t nrcpt)
{
	struct spool_env e;
	char err[256];

	commit_rcpts(sp, id, nrcpt);
	assert_int_equal(spool_env_read(sp, id, &e, err, sizeof err), 0);
	e.rcpts[0].attempts = 1;
	assert_int_equal(spool_env_write(sp, &e, 1, err, sizeof err), 0);
	spool_env_free(&e);
}

static void
commit_changed(struct spool *sp, const char *id)
{
	commit_changed_rcpts(sp, id, 1);
}

static void
put_file(const char *sub, const char *name, const char *text, size_t len)
{
	char p[512];
	int fd;

	snprintf(p, sizeof p, "%s/%s/%s", root, sub, name);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
}

/*
 * What a crash can leave of the one-file layout, and messages of the
 * older two-file layout, as spool_scan() finds them at start.
 */
static void
test_scan_crash_leftovers(void **state)
{
	struct spool sp;
	struct scan_ctx c = { .n = 0 };
	struct spool_env e;
	char err[256], p[512], *buf;
	size_t len;
	(void)state;

	assert_int_equal(spool_open(&sp, root, 1, err, sizeof err), 0);
	/* a removal cut between its two unlinks: the .msg gone, the .env left */
	commit_changed(&sp, "6553F100F423F010");
	snprintf(p, sizeof p, "%s/queue/6553F100F423F010.msg", root);
	assert_int_equal(unlink(p), 0);
	/* a message of the two-file layout: an .env without tail record, the content alone in its .msg */
	make_env(&e, "6553F100F423F011", 1);
	e.size = 7;
	buf = spool_env_render(&e, &len);
	assert_null(strstr(buf, "tail\t"));
	put_file("queue", "6553F100F423F011.env", buf, len);
	put_file("queue", "6553F100F423F011.msg", "hello\r\n", 7);
	free(buf);
	spool_env_free(&e);
	/* a one-file message whose tail's envelope is garbled: damaged, shown, kept */
	commit_one(&sp, "6553F100F423F012");
	snprintf(p, sizeof p, "%s/queue/6553F100F423F012.msg", root);
	{
		int fd = open(p, O_WRONLY);
		assert_true(fd >= 0);
		assert_int_equal(pwrite(fd, "X", 1, 7), 1);	/* the envelope's first octet */
		close(fd);
	}
	/* a one-file message never changed: read from its tail */
	commit_one(&sp, "6553F100F423F013");

	/* read-only (the CLI with the daemon down): the removal's rest shows as damaged */
	assert_int_equal(spool_scan(&sp, 0, collect, &c), 4);
	assert_string_equal(c.ids[0], "6553F100F423F010");
	assert_string_equal(c.damaged[0], "content missing (or its removal was cut short)");
	assert_true(exists("queue", "6553F100F423F010", ".env"));
	/* the daemon at start: removed, nothing was left to deliver; the others as they are */
	c.n = 0;
	assert_int_equal(spool_scan(&sp, 1, collect, &c), 3);
	assert_int_equal(c.n, 3);
	assert_false(exists("queue", "6553F100F423F010", ".env"));
	assert_string_equal(c.ids[0], "6553F100F423F011");
	assert_string_equal(c.damaged[0], "");
	assert_string_equal(c.ids[1], "6553F100F423F012");
	assert_non_null(strstr(c.damaged[1], "envelope: "));
	assert_true(exists("queue", "6553F100F423F012", ".msg"));	/* never removed on its own */
	assert_string_equal(c.ids[2], "6553F100F423F013");
	assert_string_equal(c.damaged[2], "");

	/* the older layout reads as before: size exact, content whole */
	assert_int_equal(spool_env_load(&sp, "6553F100F423F011", &e, err, sizeof err), 0);
	assert_int_equal(e.tail, 0);
	buf = spool_msg_read(&sp, &e, SIZE_MAX, &len);
	assert_int_equal(len, 7);
	free(buf);
	/* its removal leaves nothing */
	spool_env_free(&e);
	assert_int_equal(spool_remove(&sp, "6553F100F423F011", 1), 0);
	assert_false(exists("queue", "6553F100F423F011", ".env"));
	assert_false(exists("queue", "6553F100F423F011", ".msg"));
	spool_close(&sp);
}

/* Every message spool_scan() passes, in order: ids and whether each is damaged. */
struct scan_all {
	char (*ids)[QID_LEN + 1];
	int *damaged;
	size_t *nrcpt;
	size_t n, cap;
};

static int
collect_all(struct spool_env *e, void *arg)
{
	struct scan_all *c = arg;

	assert_true(c->n < c->cap);
	memcpy(c->ids[c->n], e->id, QID_LEN + 1);
	c->nrcpt[c->n] = e->nrcpt;
	c->damaged[c->n++] = e->damaged != NULL;
	return 0;
}

/*
 * A queue large enough for spool_scan()'s read-ahead thread (1,000
 * messages): plain ones, changed ones, damaged ones, removals cut short
 * and never-acknowledged content mixed through it, and envelopes larger
 * than a read-ahead slot (which the caller reads again), so that every
 * kind falls on the read-ahead's items and on the caller's.  The callback
 * sees what the inline scan would show: every message in id order, once,
 * with all its recipients, the damaged as damaged, the leftovers removed
 * or quarantined.
 */
static void
test_scan_read_ahead(void **state)
{
	enum { N = 1000 };
	struct spool sp;
	struct scan_all c = { .cap = N };
	char err[256], id[QID_LEN + 1], p[512];
	int kind[N], expect_damaged[N], shown[N];
	size_t i, nshown = 0, k, nrcpt[N];
	(void)state;

	c.ids = calloc(N, sizeof *c.ids);
	c.damaged = calloc(N, sizeof *c.damaged);
	c.nrcpt = calloc(N, sizeof *c.nrcpt);
	assert_int_equal(spool_open(&sp, root, 1, err, sizeof err), 0);
	for (i = 0; i < N; i++) {
		snprintf(id, sizeof id, "6553F100F42%05zX", i);
		kind[i] = i % 17 == 5 ? 4 : i % 13 == 3 ? 3 : i % 11 == 2 ? 2 : i % 19 == 7 ? 5 :
		    i % 23 == 9 ? 6 : i % 29 == 4 ? 7 : i % 3 == 1 ? 1 : 0;
		expect_damaged[i] = kind[i] == 2 || kind[i] == 7;
		shown[i] = kind[i] != 3 && kind[i] != 4;
		nrcpt[i] = kind[i] == 5 || kind[i] == 6 ? 300 : 1;
		switch (kind[i]) {
		case 0:		/* plain: its envelope in the tail */
			commit_one(&sp, id);
			break;
		case 1:		/* changed once: queue/ID.env */
			commit_changed(&sp, id);
			break;
		case 2:		/* its tail's envelope garbled: damaged, shown */
			commit_one(&sp, id);
			snprintf(p, sizeof p, "%s/queue/%s.msg", root, id);
			{
				int fd = open(p, O_WRONLY);
				assert_true(fd >= 0);
				assert_int_equal(pwrite(fd, "X", 1, 7), 1);
				close(fd);
			}
			break;
		case 3:		/* a removal cut short: the .env alone, removed by the scan */
			commit_changed(&sp, id);
			snprintf(p, sizeof p, "%s/queue/%s.msg", root, id);
			assert_int_equal(unlink(p), 0);
			break;
		case 4:		/* content never acknowledged: to quarantine/ */
			snprintf(p, sizeof p, "%s/queue/%s.msg", root, id);
			{
				int fd = open(p, O_WRONLY | O_CREAT, 0600);
				assert_true(fd >= 0);
				close(fd);
			}
			break;
		case 5:		/* plain, its tail larger than a read-ahead slot (over 8 KB; a slot is 4 KB) */
			commit_rcpts(&sp, id, nrcpt[i]);
			break;
		case 6:		/* changed, its queue/ID.env as large */
			commit_changed_rcpts(&sp, id, nrcpt[i]);
			break;
		case 7:		/* changed, its content cut: damaged, shown */
			commit_changed(&sp, id);
			snprintf(p, sizeof p, "%s/queue/%s.msg", root, id);
			assert_int_equal(truncate(p, 3), 0);
			break;
		}
		nshown += (size_t)shown[i];
	}
	assert_int_equal(spool_scan(&sp, SPOOL_SCAN_REMOVE_ORPHANS | SPOOL_SCAN_NO_HISTORY, collect_all, &c),
	    (int)nshown);
	assert_int_equal(c.n, nshown);
	for (i = 0, k = 0; i < N; i++) {
		snprintf(id, sizeof id, "6553F100F42%05zX", i);
		if (kind[i] == 3)
			assert_false(exists("queue", id, ".env"));
		if (kind[i] == 4) {
			assert_false(exists("queue", id, ".msg"));
			assert_true(exists("quarantine", id, ".msg"));
		}
		if (!shown[i])
			continue;
		assert_string_equal(c.ids[k], id);
		assert_int_equal(c.damaged[k], expect_damaged[i]);
		if (!expect_damaged[i])
			assert_int_equal(c.nrcpt[k], nrcpt[i]);
		k++;
	}
	for (i = 0; i < N; i++)
		if (kind[i] == 5)
			break;
	snprintf(id, sizeof id, "6553F100F42%05zX", i);
	snprintf(p, sizeof p, "%s/queue/%s.msg", root, id);
	{
		struct stat st;
		assert_int_equal(stat(p, &st), 0);
		assert_true(st.st_size > 8192);	/* larger than a slot indeed */
	}
	free(c.ids);
	free(c.damaged);
	free(c.nrcpt);
	spool_close(&sp);
}

/*
 * A new message is made whole in queue/ by one writev, and is queued only
 * once its tail is there: a crash before its flush may leave any prefix
 * of the file (or its full length with the last octets missing).  At
 * every such length, the start's scan must not take it for a message:
 * the daemon's scan moves it to quarantine/, a reader's scan skips it.
 * The whole file, the last case, is the one message listed.
 */
static void
test_scan_new_message_cut_short(void **state)
{
	struct spool sp;
	struct spool_txn txn;
	struct spool_env e;
	struct scan_ctx c;
	char err[256], p[512], q[512], *whole;
	const char *id = "6553F100F423F020";
	struct stat st;
	size_t len, cut[8], i, ncut = 0;
	int fd;
	(void)state;

	assert_int_equal(spool_open(&sp, root, 1, err, sizeof err), 0);
	assert_int_equal(spool_txn_begin(&sp, id, &txn), 0);
	spool_txn_write(&txn, "Subject: cut\r\n\r\nbody\r\n", 22);
	make_env(&e, id, 2);
	assert_int_equal(spool_txn_prepare(&txn, &e, 1, err, sizeof err), 0);
	assert_true(txn.in_queue);
	snprintf(p, sizeof p, "%s/queue/%s.msg", root, id);
	snprintf(q, sizeof q, "%s/quarantine/%s.msg", root, id);
	assert_int_equal(stat(p, &st), 0);
	len = (size_t)st.st_size;
	assert_int_equal(len, 22 + e.tail);
	whole = xmalloc(len);
	fd = open(p, O_RDONLY);
	assert_int_equal(read(fd, whole, len), (ssize_t)len);
	close(fd);
	/* nothing; part of the content; the content; into the envelope; into the footer; all but its LF */
	cut[ncut++] = 0;
	cut[ncut++] = 10;
	cut[ncut++] = 22;
	cut[ncut++] = 22 + (len - 22 - SPOOL_FOOT_LEN) / 2;
	cut[ncut++] = len - SPOOL_FOOT_LEN + 5;
	cut[ncut++] = len - 1;
	for (i = 0; i < ncut; i++) {
		fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, whole, cut[i]), (ssize_t)cut[i]);
		close(fd);
		/* a reader (flags 0) skips it and leaves it where it is */
		memset(&c, 0, sizeof c);
		assert_int_equal(spool_scan(&sp, 0, collect, &c), 0);
		assert_true(exists("queue", id, ".msg"));
		/* the daemon's start moves it aside */
		assert_int_equal(spool_scan(&sp, SPOOL_SCAN_REMOVE_ORPHANS, collect, &c), 0);
		assert_int_equal(c.n, 0);
		assert_false(exists("queue", id, ".msg"));
		assert_int_equal(stat(q, &st), 0);
		assert_int_equal(st.st_size, (off_t)cut[i]);
		assert_int_equal(unlink(q), 0);
	}
	/* whole, it is the message */
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_int_equal(write(fd, whole, len), (ssize_t)len);
	close(fd);
	memset(&c, 0, sizeof c);
	assert_int_equal(spool_scan(&sp, SPOOL_SCAN_REMOVE_ORPHANS, collect, &c), 1);
	assert_string_equal(c.ids[0], id);
	assert_string_equal(c.damaged[0], "");
	free(whole);
	spool_env_free(&e);
	spool_close(&sp);
}

/* A transaction of id with content text, given old's retired file, prepared (fsynced). */
static void
prepare_into(struct spool *sp, struct spool_txn *txn, struct spool_env *e, const char *id,
    const char *text, const char *old)
{
	char err[256];

	assert_int_equal(spool_txn_begin(sp, id, txn), 0);
	spool_txn_write(txn, text, strlen(text));
	assert_int_equal(spool_txn_reuse(txn, old), 1);
	make_env(e, id, 1);
	assert_int_equal(spool_txn_prepare(txn, e, 1, err, sizeof err), 0);
}

/*
 * spool_retire() keeps the .msg in tmp/ (and unlinks the .env); a
 * transaction given that file writes itself into it, cut to its length,
 * and its publish renames it into queue/ under the new id.  An abort
 * unlinks it; a retired file that is gone leaves the transaction to a
 * file of its own.
 */
static void
test_retire_and_reuse(void **state)
{
	struct spool sp;
	struct spool_txn txn;
	struct spool_env e, r;
	char err[256], p[512], *content;
	const char *old = "6553F100F4230030", *nw = "6553F100F4230031", *nw2 = "6553F100F4230032";
	struct stat st;
	ino_t ino;
	size_t len;
	int fd;
	(void)state;

	assert_int_equal(spool_open(&sp, root, 1, err, sizeof err), 0);
	snprintf(p, sizeof p, "%s/queue/%s.msg", root, old);
	fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_int_equal(write(fd, "0123456789012345678901234567890123456789", 40), 40);
	close(fd);
	assert_int_equal(stat(p, &st), 0);
	ino = st.st_ino;
	snprintf(p, sizeof p, "%s/queue/%s.env", root, old);
	fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
	close(fd);
	assert_int_equal(spool_retire(&sp, old, 1), 1);
	assert_false(exists("queue", old, ".msg"));
	assert_false(exists("queue", old, ".env"));
	assert_true(exists("tmp", old, ".free"));
	assert_false(exists("tmp", old, ".env"));
	assert_int_equal(spool_retire(&sp, old, 0), 0);		/* nothing left to retire */

	/* written into the retired file: the new message's octets only */
	prepare_into(&sp, &txn, &e, nw, "S: r\r\n\r\nb\r\n", old);
	assert_false(txn.in_queue);
	assert_false(exists("queue", nw, ".msg"));
	assert_int_equal(spool_txn_publish(&txn, err, sizeof err), 0);
	assert_false(exists("tmp", old, ".free"));
	snprintf(p, sizeof p, "%s/queue/%s.msg", root, nw);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_ino, ino);
	assert_int_equal(st.st_size, (off_t)(11 + e.tail));
	assert_int_equal(spool_env_load(&sp, nw, &r, err, sizeof err), 0);
	assert_null(r.damaged);
	content = spool_msg_read(&sp, &r, SIZE_MAX, &len);
	assert_int_equal(len, 11);
	assert_memory_equal(content, "S: r\r\n\r\nb\r\n", 11);
	free(content);
	spool_env_free(&r);
	spool_env_free(&e);

	/* retired again; a transaction given it and aborted unlinks it */
	assert_int_equal(spool_retire(&sp, nw, 0), 1);
	prepare_into(&sp, &txn, &e, nw2, "x\r\n", nw);
	spool_txn_abort(&txn);
	assert_false(exists("tmp", nw, ".free"));
	assert_false(exists("queue", nw2, ".msg"));
	spool_env_free(&e);

	/* given a retired file that is gone: a file of its own, made in queue/ */
	prepare_into(&sp, &txn, &e, nw2, "y\r\n", old);
	assert_true(txn.in_queue);
	assert_int_equal(spool_txn_publish(&txn, err, sizeof err), 0);
	assert_true(exists("queue", nw2, ".msg"));
	spool_env_free(&e);

	/* content in a file of its own already (larger than the buffer): not given one */
	{
		char *big = xmalloc(SPOOL_TXN_BUF + 1);
		memset(big, 'b', SPOOL_TXN_BUF + 1);
		assert_int_equal(spool_txn_begin(&sp, "6553F100F4230033", &txn), 0);
		spool_txn_write(&txn, big, SPOOL_TXN_BUF + 1);
		assert_int_equal(spool_txn_reuse(&txn, nw2), 0);
		spool_txn_abort(&txn);
		free(big);
	}
	assert_true(exists("queue", nw2, ".msg"));
	spool_close(&sp);
}

static void
test_scan(void **state)
{
	struct spool sp;
	struct scan_ctx c = { .n = 0 };
	char err[256], p[512];
	int fd;
	(void)state;

	assert_int_equal(spool_open(&sp, root, 1, err, sizeof err), 0);
	commit_one(&sp, "6553F100F423F003");
	commit_one(&sp, "6553F100F423F002");
	/* an older version's orphan: content renamed but the envelope never was (crash between renames) */
	snprintf(p, sizeof p, "%s/queue/6553F100F423F009.msg", root);
	fd = open(p, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);
	/* a corrupt envelope: shown as damaged, not fatal, not skipped */
	snprintf(p, sizeof p, "%s/queue/6553F100F423F00A.env", root);
	fd = open(p, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "garbage\n", 8), 8);
	close(fd);
	/* files with other names are ignored */
	snprintf(p, sizeof p, "%s/queue/README", root);
	fd = open(p, O_WRONLY | O_CREAT, 0600);
	close(fd);
	/* leftovers in tmp/ */
	snprintf(p, sizeof p, "%s/tmp/6553F100F423F00B.msg", root);
	fd = open(p, O_WRONLY | O_CREAT, 0600);
	close(fd);

	assert_int_equal(spool_scan(&sp, 1, collect, &c), 3);
	assert_int_equal(c.n, 3);
	assert_string_equal(c.ids[0], "6553F100F423F002");	/* arrival order */
	assert_string_equal(c.ids[1], "6553F100F423F003");
	assert_string_equal(c.damaged[0], "");
	assert_string_equal(c.damaged[1], "");
	assert_string_equal(c.ids[2], "6553F100F423F00A");
	assert_string_equal(c.damaged[2], "envelope: line 1: unknown format");
	/* never acknowledged: out of the queue, kept in quarantine/ for a look */
	assert_false(exists("queue", "6553F100F423F009", ".msg"));
	assert_true(exists("quarantine", "6553F100F423F009", ".msg"));
	spool_clean_tmp(&sp);
	assert_false(exists("tmp", "6553F100F423F00B", ".msg"));
	spool_close(&sp);
}

static void
test_env_parse_rejects(void **state)
{
	struct spool_env e;
	char err[256];
	const char *good =
	    "mailrelay-env 1\nid\t6553F100F423F000\narrival\t1700000000.5\nsender\t\n"
	    "uid\t0\nvia\tsmtp\nsize\t7\nbody\t7BIT\nheld\t1\nfuture\tignored\n"
	    "rcpt\tfailed\t2\t0\t1700000001\ta@b\t\t550 no\n";
	(void)state;

	assert_int_equal(spool_env_parse(good, strlen(good), &e, err, sizeof err), 0);
	assert_string_equal(e.sender, "");	/* null sender */
	assert_int_equal(e.held, 1);
	assert_int_equal(e.arrival_usec, 5);
	assert_int_equal(e.rcpts[0].status, RCPT_FAILED);
	assert_null(e.rcpts[0].orig);	/* empty orig means the address */
	assert_string_equal(e.ret, "");
	assert_null(e.rcpts[0].orcpt);
	spool_env_free(&e);

	/* DSN records: RET may be empty when only ENVID was given; NOTIFY/ORCPT per recipient */
	const char *dsn =
	    "mailrelay-env 1\nid\t6553F100F423F000\narrival\t1700000000.5\nsender\ta@b\n"
	    "dsn\t\tjob+3D42\nsmtputf8\t1\n"
	    "rcpt\tpending\t0\t0\t0\tx@y\troot\t\tSUCCESS,DELAY\trfc822;root@h\n"
	    "rcpt\tpending\t0\t0\t0\tz@y\t\t\tNEVER\t\n";
	assert_int_equal(spool_env_parse(dsn, strlen(dsn), &e, err, sizeof err), 0);
	assert_string_equal(e.ret, "");
	assert_string_equal(e.envid, "job+3D42");
	assert_int_equal(e.smtputf8, 1);
	assert_string_equal(e.rcpts[0].notify, "SUCCESS,DELAY");
	assert_string_equal(e.rcpts[0].orcpt, "rfc822;root@h");
	assert_string_equal(e.rcpts[1].notify, "NEVER");
	assert_null(e.rcpts[1].orcpt);
	struct spool_env copy;
	spool_env_copy(&copy, &e);
	assert_string_equal(copy.rcpts[0].orcpt, "rfc822;root@h");
	spool_env_free(&copy);
	spool_env_free(&e);
	/* the maildrop file a message came from: a name in maildrop/, never a path */
	const char *drop = "mailrelay-env 1\nid\t6553F100F423F000\nsender\ta@b\ndrop\t1733288000.123456789.4242\n"
	    "rcpt\tpending\t0\t0\t0\tx@y\t\t\n";
	assert_int_equal(spool_env_parse(drop, strlen(drop), &e, err, sizeof err), 0);
	assert_string_equal(e.drop, "1733288000.123456789.4242");
	{
		size_t rl;
		char *r = spool_env_render(&e, &rl);
		assert_non_null(strstr(r, "\ndrop\t1733288000.123456789.4242\n"));
		free(r);
	}
	spool_env_free(&e);
	const char *droppath[] = { "../queue/x", ".tmp.1", "" };
	for (size_t k = 0; k < 3; k++) {
		char *t = xasprintf("mailrelay-env 1\nid\t6553F100F423F000\nsender\ta@b\ndrop\t%s\n"
		    "rcpt\tpending\t0\t0\t0\tx@y\t\t\n", droppath[k]);
		assert_int_equal(spool_env_parse(t, strlen(t), &e, err, sizeof err), -1);
		free(t);
	}
	const char *badret = "mailrelay-env 1\nid\t6553F100F423F000\nsender\ta\ndsn\tBODY\tx\n"
	    "rcpt\tpending\t0\t0\t0\ta\ta\t\n";
	assert_int_equal(spool_env_parse(badret, strlen(badret), &e, err, sizeof err), -1);

	const char *bad[] = {
		"",
		"mailrelay-env 2\n",
		"mailrelay-env 1\nid\t6553F100F423F000\n",			/* no sender, no rcpt */
		"mailrelay-env 1\nid\t../etc\nsender\ta\nrcpt\tpending\t0\t0\t0\ta\ta\t\n",
		"mailrelay-env 1\nid\t6553F100F423F000\nsender\ta\nrcpt\tmaybe\t0\t0\t0\ta\ta\t\n",
		"mailrelay-env 1\nid\t6553F100F423F000\nsender\ta\nrcpt\tpending\t99999999999\t0\t0\ta\ta\t\n",
		"mailrelay-env 1\nid\t6553F100F423F000\nsender\ta\nrcpt\tpending\t0\t0\t0\ta\ta\n",
		"mailrelay-env 1\nid\t6553F100F423F000\nsender\ta\nsize\t-1\nrcpt\tpending\t0\t0\t0\ta\ta\t\n",
		"mailrelay-env 1\nid\t6553F100F423F000\nsender\ta\nrcpt\tpending\t0\t0\t0\ta\ta\t",	/* truncated */
		"mailrelay-env 1\nid\t6553F100F423F000\nsender\ta\nrcpt\tpending\t0\t0\t0\ta\ta\t\nreported\t1\n",
		/* an rstatus that is not an enhanced status code, or for no recipient */
		"mailrelay-env 1\nid\t6553F100F423F000\nsender\ta\nrcpt\tpending\t0\t0\t0\ta\ta\t\nrstatus\t0\tmessage expired\n",
		"mailrelay-env 1\nid\t6553F100F423F000\nsender\ta\nrcpt\tpending\t0\t0\t0\ta\ta\t\nrstatus\t0\t3.0.0\n",
		"mailrelay-env 1\nid\t6553F100F423F000\nsender\ta\nrcpt\tpending\t0\t0\t0\ta\ta\t\nrstatus\t1\t4.4.7\n",
		/* an rkind that is no kind's spelling, too long, empty, or for no recipient */
		"mailrelay-env 1\nid\t6553F100F423F000\nsender\ta\nrcpt\tpending\t0\t0\t0\ta\ta\t\nrkind\t0\ttimed out\n",
		"mailrelay-env 1\nid\t6553F100F423F000\nsender\ta\nrcpt\tpending\t0\t0\t0\ta\ta\t\nrkind\t0\tABCDEFGHIJKLMNOPQRSTUVWXYZ\n",
		"mailrelay-env 1\nid\t6553F100F423F000\nsender\ta\nrcpt\tpending\t0\t0\t0\ta\ta\t\nrkind\t0\t\n",
		"mailrelay-env 1\nid\t6553F100F423F000\nsender\ta\nrcpt\tpending\t0\t0\t0\ta\ta\t\nrkind\t1\tTIMEOUT\n",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = '\0';
		assert_int_equal(spool_env_parse(bad[i], strlen(bad[i]), &e, err, sizeof err), -1);
		assert_true(err[0] != '\0');
	}
	/* an embedded NUL */
	assert_int_equal(spool_env_parse("mailrelay-env 1\0x\n", 18, &e, err, sizeof err), -1);
}

/* Every envelope written ends with its end record; one cut short anywhere is refused. */
static void
test_env_end_record(void **state)
{
	struct spool_env e, r;
	char err[256], *buf, *cut;
	size_t len, i, lines = 0;
	(void)state;

	make_env(&e, "6553F100F423F000", 3);
	spool_env_add_attempt(&e, 1700000001, 1, "deferred", "mx[192.0.2.1]:25", "451 later");
	buf = spool_env_render(&e, &len);
	assert_memory_equal(buf, "mailrelay-env 2\n", 16);
	assert_true(len > 7 && memcmp(buf + len - 7, "\nend\t3\n", 7) == 0);
	assert_int_equal(spool_env_parse(buf, len, &r, err, sizeof err), 0);
	assert_int_equal(r.nrcpt, 3);
	assert_null(r.damaged);
	spool_env_free(&r);

	/* cut after any line but the last: refused, never fewer recipients */
	for (i = 0; i + 1 < len; i++) {
		if (buf[i] != '\n')
			continue;
		lines++;
		err[0] = '\0';
		assert_int_equal(spool_env_parse(buf, i + 1, &r, err, sizeof err), -1);
		assert_non_null(strstr(err, "no end record"));
	}
	assert_true(lines >= 10);
	/* cut inside a line, the end record's included */
	assert_int_equal(spool_env_parse(buf, len - 1, &r, err, sizeof err), -1);
	assert_int_equal(spool_env_parse(buf, len - 20, &r, err, sizeof err), -1);

	/* anything after the end record */
	cut = xasprintf("%.*srcpt\tpending\t0\t0\t0\tx@y\t\t\n", (int)len, buf);
	assert_int_equal(spool_env_parse(cut, strlen(cut), &r, err, sizeof err), -1);
	assert_non_null(strstr(err, "after the end record"));
	free(cut);
	/* an end record that counts other recipients than there are */
	cut = xasprintf("%.*send\t2\n", (int)len - 6, buf);
	assert_int_equal(spool_env_parse(cut, strlen(cut), &r, err, sizeof err), -1);
	assert_non_null(strstr(err, "counts 2 recipients, 3 found"));
	free(cut);
	free(buf);

	spool_env_free(&e);

	/* a version 1 envelope (before the end record) is still read */
	const char *v1 = "mailrelay-env 1\nid\t6553F100F423F000\nsender\ta@b\nsize\t7\n"
	    "rcpt\tpending\t0\t0\t0\tx@y\t\t\n";
	assert_int_equal(spool_env_parse(v1, strlen(v1), &r, err, sizeof err), 0);
	spool_env_free(&r);
}

static void
cut_file(const char *sub, const char *name, off_t len)
{
	char p[512];

	snprintf(p, sizeof p, "%s/%s/%s", root, sub, name);
	assert_int_equal(truncate(p, len), 0);
}

/* spool_env_load(): a damaged message is reported with a stand-in, never dropped. */
static void
test_damaged(void **state)
{
	struct spool sp;
	struct spool_env e;
	char err[256], p[512];
	const char *id = "6553F100F423F004";
	struct stat st;
	(void)state;

	assert_int_equal(spool_open(&sp, root, 1, err, sizeof err), 0);
	commit_changed(&sp, id);	/* 7 octets of content, and an .env */
	assert_int_equal(spool_env_load(&sp, id, &e, err, sizeof err), 0);
	assert_int_equal(spool_msg_check(&sp, &e, -1, err, sizeof err), 0);
	unsigned long long tail = e.tail;
	spool_env_free(&e);

	/* content cut short */
	cut_file("queue", "6553F100F423F004.msg", 3);
	assert_int_equal(spool_env_load(&sp, id, &e, err, sizeof err), 1);
	{
		char want[100];
		snprintf(want, sizeof want, "content is 3 octets, the envelope says 7 and %llu after it", tail);
		assert_string_equal(e.damaged, want);
	}
	assert_string_equal(e.id, id);
	assert_int_equal(e.arrival, 0x6553F100);
	assert_int_equal(e.arrival_usec, 0xF423F % 1000000);
	assert_int_equal(e.size, 3);
	assert_int_equal(e.nrcpt, 0);
	assert_string_equal(e.sender, "");
	assert_non_null(strstr(err, "damaged"));
	/* the writers refuse it: the files stay as found */
	assert_int_equal(spool_env_write(&sp, &e, 1, err, sizeof err), -1);
	assert_non_null(strstr(err, "not rewritten"));
	spool_env_free(&e);
	snprintf(p, sizeof p, "%s/queue/%s.env", root, id);
	assert_int_equal(stat(p, &st), 0);
	assert_true(st.st_size > 50);

	/* content gone */
	snprintf(p, sizeof p, "%s/queue/%s.msg", root, id);
	assert_int_equal(unlink(p), 0);
	assert_int_equal(spool_env_load(&sp, id, &e, err, sizeof err), 1);
	assert_string_equal(e.damaged, "content missing (or its removal was cut short)");
	spool_env_free(&e);

	/* envelope cut at a line boundary (its last recipient lines and the end record lost) */
	commit_changed(&sp, "6553F100F423F005");
	snprintf(p, sizeof p, "%s/queue/6553F100F423F005.env", root);
	assert_int_equal(stat(p, &st), 0);
	cut_file("queue", "6553F100F423F005.env", st.st_size - 6);	/* "end\t1\n" */
	assert_int_equal(spool_env_load(&sp, "6553F100F423F005", &e, err, sizeof err), 1);
	assert_non_null(strstr(e.damaged, "envelope: truncated envelope: no end record"));
	snprintf(p, sizeof p, "%s/queue/6553F100F423F005.msg", root);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(e.size, st.st_size);	/* the stand-in: what the file holds */
	spool_env_free(&e);

	/*
	 * A one-file message cut short loses its footer: nothing says it is
	 * queued any more (spool_scan() moves it to quarantine/).  A daemon
	 * holding it finds out before a byte is sent: its length is checked
	 * against the envelope's size and tail.
	 */
	commit_one(&sp, "6553F100F423F006");
	assert_int_equal(spool_env_load(&sp, "6553F100F423F006", &e, err, sizeof err), 0);
	cut_file("queue", "6553F100F423F006.msg", 5);
	assert_int_equal(spool_msg_check(&sp, &e, -1, err, sizeof err), -1);
	assert_non_null(strstr(err, "content is 5 octets, the envelope says 7 and"));
	spool_env_free(&e);
	assert_int_equal(spool_env_load(&sp, "6553F100F423F006", &e, err, sizeof err), -1);
	/* a footer whose length does not fit the file */
	put_file("queue", "6553F100F423F007.msg", "hellomailrelay-tail 0000099999\n", 31);
	assert_int_equal(spool_env_load(&sp, "6553F100F423F007", &e, err, sizeof err), 1);
	assert_non_null(strstr(e.damaged, "does not fit"));
	spool_env_free(&e);

	/* not queued: -1, no stand-in */
	assert_int_equal(spool_env_load(&sp, "6553F100F423F0FF", &e, err, sizeof err), -1);
	assert_int_equal(spool_env_load(&sp, "../x", &e, err, sizeof err), -1);
	spool_close(&sp);
}

/*
 * The daemon keeps no history in memory: an update adds the attempts made
 * since to those on disk, and the latest SPOOL_HISTORY_MAX are kept.
 */
static void
test_stage_update_history(void **state)
{
	struct spool sp;
	struct spool_env e, h, back;
	char err[256];
	const char *id = "6553F100F423F000";
	size_t len, i;
	char *text;

	(void)state;
	assert_int_equal(spool_open(&sp, root, 1, err, sizeof err), 0);
	make_env(&e, id, 1);
	text = spool_env_render(&e, &len);

	/* no .env yet (a one-file message's first change): only the new attempts */
	memset(&h, 0, sizeof h);
	spool_env_add_attempt(&h, 1700000001, 0, "deferred", "none", "451 first");
	assert_int_equal(spool_env_stage_update(&sp, id, text, len, h.hist, h.nhist, 1, err, sizeof err), 0);
	assert_int_equal(spool_env_install(&sp, id, err, sizeof err), 0);
	spool_env_clear_hist(&h);
	assert_int_equal(spool_env_read(&sp, id, &back, err, sizeof err), 0);
	assert_int_equal(back.nhist, 1);
	assert_string_equal(back.hist[0].reply, "451 first");
	assert_int_equal(back.nrcpt, 1);
	spool_env_free(&back);

	/* 60 more, in three updates: the latest 50 stay, oldest first */
	for (i = 0; i < 60; i++) {
		char reply[32];
		snprintf(reply, sizeof reply, "451 n%zu", i);
		spool_env_add_attempt(&h, 1700000100 + (time_t)i, 0, "deferred", "relay[1.2.3.4]:25", reply);
		if (i % 20 == 19) {
			assert_int_equal(spool_env_stage_update(&sp, id, text, len, h.hist, h.nhist, 0,
			    err, sizeof err), 0);
			assert_int_equal(spool_env_install(&sp, id, err, sizeof err), 0);
			spool_env_clear_hist(&h);
		}
	}
	assert_int_equal(spool_env_read(&sp, id, &back, err, sizeof err), 0);
	assert_int_equal(back.nhist, SPOOL_HISTORY_MAX);
	assert_string_equal(back.hist[0].reply, "451 n10");
	assert_string_equal(back.hist[SPOOL_HISTORY_MAX - 1].reply, "451 n59");
	assert_string_equal(back.hist[0].relay, "relay[1.2.3.4]:25");
	assert_int_equal(back.hist[49].when, 1700000159);
	spool_env_free(&back);

	/* more new ones than fit at once: only the latest new ones */
	for (i = 0; i < SPOOL_HISTORY_MAX + 3; i++)
		spool_env_add_attempt(&h, 1700001000 + (time_t)i, 0, "bounced", "none", "550 x");
	assert_int_equal(h.nhist, SPOOL_HISTORY_MAX);	/* add_attempt caps too */
	assert_int_equal(spool_env_stage_update(&sp, id, text, len, h.hist, h.nhist, 0, err, sizeof err), 0);
	assert_int_equal(spool_env_install(&sp, id, err, sizeof err), 0);
	spool_env_clear_hist(&h);
	assert_int_equal(spool_env_read(&sp, id, &back, err, sizeof err), 0);
	assert_int_equal(back.nhist, SPOOL_HISTORY_MAX);
	assert_int_equal(back.hist[0].when, 1700001003);
	spool_env_free(&back);

	/* a text without its end record is refused, nothing staged */
	assert_int_equal(spool_env_stage_update(&sp, id, "mailrelay-env 2\n", 16, NULL, 0, 0, err, sizeof err), -1);
	assert_false(exists("tmp", id, ".env.new"));
	free(text);
	spool_env_free(&e);
	spool_close(&sp);
}

static int
count_one(struct spool_env *env, void *arg)
{
	(void)env;
	++*(int *)arg;
	return 0;
}

/*
 * What the spool knows so that the daemon can skip a syscall per
 * message: whether a message has an .env (env_file; its removal need not
 * look for one it never had), and the highest id after the start-up scan
 * (a new id above it is checked against nothing).
 */
static void
test_env_file_and_id_floor(void **state)
{
	struct spool sp;
	struct spool_txn txn;
	struct spool_env e, r;
	struct timeval tv;
	char err[256], id[QID_LEN + 1], far[QID_LEN + 1];
	int n = 0;

	(void)state;
	assert_int_equal(spool_open(&sp, root, 1, err, sizeof err), 0);
	spool_qid_new(&sp, id, &tv);
	assert_int_equal(spool_txn_begin(&sp, id, &txn), 0);
	spool_txn_write(&txn, "Subject: x\r\n\r\nbody\r\n", 20);
	make_env(&e, id, 1);
	assert_int_equal(spool_txn_prepare(&txn, &e, 1, err, sizeof err), 0);
	assert_int_equal(spool_txn_publish(&txn, err, sizeof err), 0);
	/* one file: its envelope is the tail, there is no .env */
	assert_int_equal(spool_env_load(&sp, id, &r, err, sizeof err), 0);
	assert_false(r.env_file);
	spool_env_free(&r);
	/* its first change writes one */
	assert_int_equal(spool_env_write(&sp, &e, 1, err, sizeof err), 0);
	assert_int_equal(spool_env_load(&sp, id, &r, err, sizeof err), 0);
	assert_true(r.env_file);
	spool_env_free(&r);
	/* a removal that knows better than to look for the .env leaves it (hence env_file) */
	assert_int_equal(spool_remove_known(&sp, id, 0), 0);
	assert_false(exists("queue", id, ".msg"));
	assert_true(exists("queue", id, ".env"));
	assert_int_equal(spool_remove_known(&sp, id, 1), 0);
	assert_false(exists("queue", id, ".env"));
	spool_env_free(&e);

	/* a message far in the future: the scan knows it, and a new id below it is checked */
	assert_false(sp.qid_known);
	spool_qid_make(far, 0xF0000000, 0, 0);
	make_env(&e, far, 1);
	assert_int_equal(spool_txn_begin(&sp, far, &txn), 0);
	spool_txn_write(&txn, "Subject: x\r\n\r\nbody\r\n", 20);
	assert_int_equal(spool_txn_prepare(&txn, &e, 1, err, sizeof err), 0);
	assert_int_equal(spool_txn_publish(&txn, err, sizeof err), 0);
	spool_env_free(&e);
	assert_int_equal(spool_scan(&sp, SPOOL_SCAN_REMOVE_ORPHANS, count_one, &n), 1);
	assert_true(sp.qid_known);
	assert_true(sp.qid_high == 0xF000000000000000ULL);
	spool_qid_new(&sp, id, &tv);
	assert_true(strcmp(id, far) < 0);
	assert_true(sp.qid_high == 0xF000000000000000ULL);	/* not above: not raised */
	/* one above it raises it (as the clock would once it passes the far id) */
	sp.qid_high = 0;
	spool_qid_new(&sp, id, &tv);
	assert_true(sp.qid_high > 0);
	spool_close(&sp);
}

static void
test_open_missing(void **state)
{
	struct spool sp;
	char err[256], p[300];
	(void)state;

	snprintf(p, sizeof p, "%s/does-not-exist", root);
	assert_int_equal(spool_open(&sp, p, 0, err, sizeof err), -1);
	assert_non_null(strstr(err, "does-not-exist"));
}

struct seen {
	char names[8][32];
	long long ms[8];
	size_t n;
};

static void
collect_start(const char *name, long long ms, void *arg)
{
	struct seen *s = arg;

	assert_true(s->n < 8);
	snprintf(s->names[s->n], sizeof s->names[s->n], "%s", name);
	s->ms[s->n++] = ms;
}

/* The rate_limit window file: written through tmp/, read back in order; damage is skipped. */
static void
test_ratewin(void **state)
{
	struct spool sp;
	struct seen seen = { .n = 0 };
	struct ratewin_out *o;
	char err[256];
	(void)state;

	assert_int_equal(spool_open(&sp, root, 1, err, sizeof err), 0);
	assert_int_equal(ratewin_load(&sp, collect_start, &seen), 0);	/* none yet */
	assert_int_equal(seen.n, 0);
	assert_non_null(o = ratewin_begin(&sp));
	ratewin_add(o, "main", 1700000000123LL);
	ratewin_add(o, "bad\tname", 1);		/* cannot be written: left out */
	ratewin_add(o, "backup", 1700000001000LL);
	assert_int_equal(ratewin_commit(o), 0);
	assert_false(exists("tmp", "", RATEWIN_FILE));
	assert_int_equal(ratewin_load(&sp, collect_start, &seen), 0);
	assert_int_equal(seen.n, 2);
	assert_string_equal(seen.names[0], "main");
	assert_true(seen.ms[0] == 1700000000123LL);
	assert_string_equal(seen.names[1], "backup");
	spool_close(&sp);

	const char *damaged = "mailrelay-rate 1\nstart\tmain\t12\nstart\tx\t-5\nstart\t\t7\n"
	    "later\tx\t1\nstart\tmain\t1234567890123456\nstart\tmain\t99\nstart\tcut\t4";
	seen.n = 0;
	assert_int_equal(ratewin_parse(damaged, strlen(damaged), collect_start, &seen), 0);
	assert_int_equal(seen.n, 2);
	assert_true(seen.ms[0] == 12 && seen.ms[1] == 99);
	seen.n = 0;
	assert_int_equal(ratewin_parse("mailrelay-rate 2\n", 17, collect_start, &seen), -1);
	assert_int_equal(ratewin_parse("", 0, collect_start, &seen), -1);
	assert_int_equal(seen.n, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_qid),
		cmocka_unit_test_setup_teardown(test_commit_and_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_txn_buffer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abort, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scan, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scan_crash_leftovers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scan_read_ahead, setup, teardown),
		cmocka_unit_test(test_env_parse_rejects),
		cmocka_unit_test(test_env_end_record),
		cmocka_unit_test_setup_teardown(test_scan_new_message_cut_short, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retire_and_reuse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_damaged, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stage_update_history, setup, teardown),
		cmocka_unit_test_setup_teardown(test_env_file_and_id_floor, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_missing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ratewin, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Unit tests for daemon/commit.c, the committer thread, against a real
 * spool: requests queued before the thread starts make one batch, which
 * makes a batch's contents exact.  Two updates of one envelope in a
 * batch staged the same tmp/ID.env.new: the first install took the
 * second's file and the second failed ("rename: No such file or
 * directory", seen once in the long fault run).  Only the last is
 * written now, and both succeed, and the attempts the first was to add
 * to the history on disk are written with the second's.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sys/stat.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "daemon/commit.h"
#include "log.h"
#include "xmalloc.h"

static int ndone, nfailed;
static unsigned later_ms;       /* commit_remove_later_ms as the daemon has it */
static struct event_base *base;
/* The running test's spool and directory, for teardown(): none when root[0] is 0. */
static struct {
	struct spool *sp;
	char root[sizeof "/tmp/test_commit.XXXXXX"];
} cur;

static void
on_done(struct commit_req *req, void *arg)
{
	(void)arg;
	ndone++;
	if (req->rc != 0) {
		nfailed++;
		fprintf(stderr, "request failed: %s\n", req->err);
	}
	commit_req_free(req);
	if (ndone == 3)
		event_base_loopbreak(base);
}

/* An update whose text is state then the end record, adding one attempt whose reply is reply. */
static struct commit_req *
update(const char *id, const char *state, const char *reply)
{
	struct commit_req *req = xcalloc(1, sizeof *req);
	struct spool_env h = { .hist = NULL };

	req->kind = COMMIT_UPDATE;
	memcpy(req->id, id, QID_LEN + 1);
	req->text = xasprintf("%s\nend\t0\n", state);
	req->textlen = strlen(req->text);
	spool_env_add_attempt(&h, 1700000000, 0, "deferred", "none", reply);
	req->hist = h.hist;
	req->nhist = h.nhist;
	req->done = on_done;
	return req;
}

/* The start of a test: a spool in a new directory (root, a mkdtemp template), and a loop. */
static void
begin(char *root, struct spool *sp)
{
	char err[256];

	assert_non_null(mkdtemp(root));
	assert_int_equal(spool_open(sp, root, 1, err, sizeof err), 0);
	base = event_base_new();
	cur.sp = sp;
	memcpy(cur.root, root, sizeof cur.root);
}

/* The end of a test: the spool closed, the loop freed, the directory removed. */
static void
finish(struct spool *sp, const char *root)
{
	char cmd[600];

	spool_close(sp);
	event_base_free(base);
	snprintf(cmd, sizeof cmd, "rm -rf %s", root);
	cur.root[0] = '\0';
	assert_int_equal(system(cmd), 0);
}

/*
 * After every test, whatever it did: a failed assertion leaves it by
 * longjmp, past its commit_stop() and finish().  The committer is the
 * process's (its thread, its kept files): left running, the next test
 * would start a second thread beside it and inherit its kept files (the
 * reuse case, failing with one file kept, made test_kept_files_are_bounded
 * count 255).  Stopped here, each test starts from nothing.
 */
static int
teardown(void **state)
{
	(void)state;
	commit_stop();		/* nothing when the test stopped it */
	commit_remove_later_ms = later_ms;
	if (cur.root[0] != '\0')
		finish(cur.sp, cur.root);
	return 0;
}

static void
test_two_updates_of_one_envelope_in_a_batch(void **state)
{
	char root[] = "/tmp/test_commit.XXXXXX", p[512], buf[512];
	const char *id = "6553F100F423F000", *other = "6553F100F423F001";
	static struct spool sp;		/* static: teardown() closes it after a failure */
	ssize_t n;
	int fd;

	(void)state;
	begin(root, &sp);
	/* on disk: an envelope with one attempt in its history */
	snprintf(p, sizeof p, "%s/queue/%s.env", root, id);
	fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	snprintf(buf, sizeof buf, "state zero\nattempt\t1600000000\t0\tdeferred\tnone\told\nend\t0\n");
	assert_int_equal(write(fd, buf, strlen(buf)), (ssize_t)strlen(buf));
	close(fd);
	/* queued before the thread runs: one batch of three */
	commit_submit(update(id, "first state", "one"));
	commit_submit(update(other, "another envelope", "x"));
	commit_submit(update(id, "second state", "two"));
	assert_int_equal(commit_start(base, &sp), 0);
	event_base_dispatch(base);
	commit_stop();
	assert_int_equal(ndone, 3);
	assert_int_equal(nfailed, 0);
	snprintf(p, sizeof p, "%s/queue/%s.env", root, id);
	fd = open(p, O_RDONLY);
	assert_true(fd >= 0);
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	assert_true(n > 0);
	buf[n] = '\0';
	/* the second state, with the history on disk and both attempts, in order */
	assert_string_equal(buf, "second state\n"
	    "attempt\t1600000000\t0\tdeferred\tnone\told\n"
	    "attempt\t1700000000\t0\tdeferred\tnone\tone\n"
	    "attempt\t1700000000\t0\tdeferred\tnone\ttwo\n"
	    "end\t0\n");
	snprintf(p, sizeof p, "%s/queue/%s.env", root, other);
	assert_int_equal(access(p, F_OK), 0);
	snprintf(p, sizeof p, "%s/tmp/%s.env.new", root, id);
	assert_int_equal(access(p, F_OK), -1);
	finish(&sp, root);
}

static int order[COMMIT_REMOVALS_MAX], norder, want;

static void
on_done_order(struct commit_req *req, void *arg)
{
	order[norder++] = (int)(intptr_t)arg;
	if (req->rc != 0)
		fprintf(stderr, "request failed: %s\n", req->err);
	assert_int_equal(req->rc, 0);
	commit_req_free(req);
	if (norder == want)
		event_base_loopbreak(base);
}

/* As on_done_order, for a batch where some requests may fail: counted in nfailed. */
static void
on_done_any(struct commit_req *req, void *arg)
{
	order[norder++] = (int)(intptr_t)arg;
	nfailed += req->rc != 0;
	commit_req_free(req);
	if (norder == want)
		event_base_loopbreak(base);
}

static void
touch(const char *root, const char *id, const char *suffix)
{
	char p[512];
	int fd;

	snprintf(p, sizeof p, "%s/queue/%s%s", root, id, suffix);
	fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	close(fd);
}

static int
present(const char *root, const char *id, const char *suffix)
{
	char p[512];

	snprintf(p, sizeof p, "%s/queue/%s%s", root, id, suffix);
	return access(p, F_OK) == 0;
}

/* The removal of a finished message (one without an .env), as bounce.c asks for it. */
static struct commit_req *
removal(const char *id, int tag)
{
	struct commit_req *req = xcalloc(1, sizeof *req);

	req->kind = COMMIT_REMOVE;
	memcpy(req->id, id, QID_LEN + 1);
	req->no_env = 1;
	req->later = 1;
	req->done = on_done_order;
	req->arg = (void *)(intptr_t)tag;
	return req;
}

/*
 * The removal of a finished message waits on the loop for the next
 * request that must be written now and goes in its batch, ahead of it;
 * with none coming, its timer sends it alone.
 */
static void
test_a_removal_waits_for_the_next_batch(void **state)
{
	char root[] = "/tmp/test_commit.XXXXXX";
	const char *a = "6553F100F423F000", *b = "6553F100F423F001", *c = "6553F100F423F002";
	struct commit_req *req;
	static struct spool sp;		/* static: teardown() closes it after a failure */

	(void)state;
	begin(root, &sp);
	assert_int_equal(commit_start(base, &sp), 0);
	touch(root, a, ".msg");
	touch(root, c, ".msg");

	commit_remove_later_ms = 3600 * 1000;	/* its timer does not race the look below */
	commit_submit(removal(a, 1));
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_true(present(root, a, ".msg"));	/* waiting, not handed to the thread */
	commit_remove_later_ms = later_ms;

	req = update(b, "state of b", "r");
	req->done = on_done_order;
	req->arg = (void *)2;
	norder = 0;
	want = 2;
	commit_submit(req);			/* takes the removal along, ahead of it */
	event_base_dispatch(base);
	assert_int_equal(norder, 2);
	assert_int_equal(order[0], 1);
	assert_int_equal(order[1], 2);
	assert_false(present(root, a, ".msg"));
	assert_true(present(root, b, ".env"));

	norder = 0;
	want = 1;
	commit_submit(removal(c, 3));
	event_base_dispatch(base);		/* nothing else comes: its timer sends it */
	assert_int_equal(order[0], 3);
	assert_false(present(root, c, ".msg"));

	commit_stop();
	finish(&sp, root);
}

static unsigned reliefs;

static void
on_relief(void)
{
	reliefs++;
}

/*
 * The backlog of removals is counted from their submission to their
 * done(): full at COMMIT_REMOVALS_MAX, and the relief hook runs once,
 * when it is down to half, on the loop.
 */
static void
test_removal_backlog_is_bounded_and_relieved(void **state)
{
	char root[] = "/tmp/test_commit.XXXXXX", id[QID_LEN + 1];
	static struct spool sp;		/* static: teardown() closes it after a failure */
	int i;

	(void)state;
	begin(root, &sp);
	assert_int_equal(commit_start(base, &sp), 0);
	commit_on_relief(on_relief);
	reliefs = 0;
	norder = 0;
	want = COMMIT_REMOVALS_MAX;
	for (i = 0; i < COMMIT_REMOVALS_MAX; i++) {
		snprintf(id, sizeof id, "6553F100F42%05X", (unsigned)i);
		touch(root, id, ".msg");
		assert_int_equal(commit_removals_full(), 0);
		commit_submit(removal(id, i + 1));
		assert_int_equal(commit_removals(), (unsigned)i + 1);
	}
	assert_int_equal(commit_removals_full(), 1);
	assert_int_equal(reliefs, 0);
	event_base_dispatch(base);		/* until every done() has run */
	assert_int_equal(norder, COMMIT_REMOVALS_MAX);
	for (i = 0; i < COMMIT_REMOVALS_MAX; i++)
		assert_int_equal(order[i], i + 1);
	assert_int_equal(commit_removals(), 0);
	assert_int_equal(commit_removals_full(), 0);
	assert_int_equal(reliefs, 1);
	assert_false(present(root, id, ".msg"));

	commit_on_relief(NULL);
	commit_stop();
	finish(&sp, root);
}

/*
 * A batch of many removals is shared by two threads, after the batch's
 * other requests: an update of a message before its removal in the same
 * batch is installed first, so that its .env does not outlive the
 * removal.  Every removal is done, and done() keeps the batch's order.
 */
static void
test_a_large_batch_of_removals(void **state)
{
	char root[] = "/tmp/test_commit.XXXXXX", id[QID_LEN + 1], first[QID_LEN + 1];
	struct commit_req *req;
	static struct spool sp;		/* static: teardown() closes it after a failure */
	int i, n = 301;

	(void)state;
	begin(root, &sp);
	norder = 0;
	want = n + 1;
	snprintf(first, sizeof first, "6553F100F42%05X", 0u);
	/* queued before the thread runs: one batch, the update of the first message first */
	req = update(first, "its last state", "r");
	req->done = on_done_order;
	req->arg = (void *)(intptr_t)1;
	commit_submit(req);
	for (i = 0; i < n; i++) {
		snprintf(id, sizeof id, "6553F100F42%05X", (unsigned)i);
		touch(root, id, ".msg");
		if (i % 3 == 0 && i > 0)
			touch(root, id, ".env");
		req = removal(id, i + 2);
		req->later = 0;
		req->no_env = i % 3 != 0;
		commit_submit(req);
	}
	assert_int_equal(commit_start(base, &sp), 0);
	event_base_dispatch(base);
	assert_int_equal(norder, n + 1);
	for (i = 0; i < n + 1; i++)
		assert_int_equal(order[i], i + 1);
	for (i = 0; i < n; i++) {
		snprintf(id, sizeof id, "6553F100F42%05X", (unsigned)i);
		assert_false(present(root, id, ".msg"));
		assert_false(present(root, id, ".env"));
	}
	commit_stop();
	finish(&sp, root);
}

/* A new message of one recipient, its content buffered in its transaction, as smtpd.c makes it. */
static struct commit_req *
new_message(struct spool *sp, const char *id, int tag)
{
	struct commit_req *req = xcalloc(1, sizeof *req);

	req->kind = COMMIT_NEW;
	assert_int_equal(spool_txn_begin(sp, id, &req->txn), 0);
	spool_txn_write(&req->txn, "Subject: n\r\n\r\nbody\r\n", 20);
	memcpy(req->env.id, id, QID_LEN + 1);
	req->env.arrival = 1700000000;
	req->env.sender = xstrdup("s@example.com");
	strcpy(req->env.via, "smtp");
	req->env.size = req->txn.size;
	req->env.rcpts = xcalloc(1, sizeof *req->env.rcpts);
	req->env.rcpts[0].addr = xstrdup("r@example.net");
	req->env.rcpts[0].last_reply = xstrdup("");
	req->env.nrcpt = 1;
	req->done = on_done_any;
	req->arg = (void *)(intptr_t)tag;
	return req;
}

/*
 * A batch of new messages and removals, without updates (the removals
 * then go before the flush, which takes their unlinks along): each new
 * message is in queue/ whole, one file, with nothing in tmp/; each removal
 * is done; a new message whose id is already in queue/ fails alone and
 * leaves that file as it was.  done() keeps the batch's order.
 */
static void
test_new_messages_and_removals_in_one_batch(void **state)
{
	char root[] = "/tmp/test_commit.XXXXXX", err[256], id[QID_LEN + 1], p[512];
	const char *taken = "6553F100F4230100";
	struct spool_env e;
	static struct spool sp;		/* static: teardown() closes it after a failure */
	struct stat st;
	int i, n = 8;

	(void)state;
	begin(root, &sp);
	norder = 0;
	nfailed = 0;
	want = 2 * n + 1;
	touch(root, taken, ".msg");
	/* queued before the thread runs: one batch, new messages and removals alternating */
	for (i = 0; i < n; i++) {
		snprintf(id, sizeof id, "6553F100F42%05X", (unsigned)i);
		touch(root, id, ".msg");
		struct commit_req *req = removal(id, 2 * i + 1);
		req->done = on_done_any;
		req->later = 0;
		commit_submit(req);
		snprintf(id, sizeof id, "6553F100F42%05X", (unsigned)(0x1000 + i));
		commit_submit(new_message(&sp, id, 2 * i + 2));
	}
	commit_submit(new_message(&sp, taken, 2 * n + 1));
	assert_int_equal(commit_start(base, &sp), 0);
	event_base_dispatch(base);
	commit_stop();
	assert_int_equal(norder, 2 * n + 1);
	for (i = 0; i < 2 * n + 1; i++)
		assert_int_equal(order[i], i + 1);
	assert_int_equal(nfailed, 1);		/* the id already taken */
	snprintf(p, sizeof p, "%s/queue/%s.msg", root, taken);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_size, 0);	/* as it was */
	for (i = 0; i < n; i++) {
		snprintf(id, sizeof id, "6553F100F42%05X", (unsigned)i);
		assert_false(present(root, id, ".msg"));
		snprintf(id, sizeof id, "6553F100F42%05X", (unsigned)(0x1000 + i));
		assert_int_equal(spool_env_load(&sp, id, &e, err, sizeof err), 0);
		assert_null(e.damaged);
		assert_int_equal(e.size, 20);
		assert_string_equal(e.rcpts[0].addr, "r@example.net");
		spool_env_free(&e);
		snprintf(p, sizeof p, "%s/tmp/%s.msg", root, id);
		assert_int_equal(access(p, F_OK), -1);
	}
	finish(&sp, root);
}

static ino_t
inode_of(const char *root, const char *sub, const char *id)
{
	char p[512];
	struct stat st;

	snprintf(p, sizeof p, "%s/%s/%s%s", root, sub, id, strcmp(sub, "tmp") == 0 ? SPOOL_FREE_SUFFIX : ".msg");
	if (stat(p, &st) == -1)
		return 0;
	return st.st_ino;
}

/* A queued message's file of n octets (content as far as the scan is concerned: none). */
static void
fill(const char *root, const char *id, size_t n)
{
	char p[512], *b = xmalloc(n);
	int fd;

	memset(b, 'o', n);
	snprintf(p, sizeof p, "%s/queue/%s.msg", root, id);
	fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, b, n), (ssize_t)n);
	close(fd);
	free(b);
}

/* Submit reqs[0..n) as one batch and run it to the end of every done(). */
static void
one_batch(struct commit_req **reqs, int n)
{
	int i;

	norder = 0;
	nfailed = 0;
	want = n;
	for (i = 0; i < n; i++)
		commit_submit(reqs[i]);
	event_base_dispatch(base);
	assert_int_equal(norder, n);
	assert_int_equal(nfailed, 0);
}

/*
 * The file of a finished message, removed, is kept in tmp/ and becomes a
 * new message's in a later batch (no inode made or freed): its octets are
 * the new message's alone, cut to its length.  Not in the batch that
 * removed it (its rename out of queue/ is durable only at that batch's
 * end), not for a removal of an unfinished message (a deletion), not for
 * a message larger than the buffer; the files still kept at the stop are
 * unlinked.
 */
static void
test_finished_messages_files_are_reused(void **state)
{
	char root[] = "/tmp/test_commit.XXXXXX", err[256];
	const char *a = "6553F100F4230001", *b = "6553F100F4230002", *c = "6553F100F4230003";
	const char *x = "6553F100F4230011", *y = "6553F100F4230012", *z = "6553F100F4230013";
	const char *w = "6553F100F4230014";
	struct commit_req *reqs[4];
	struct spool_env e;
	static struct spool sp;		/* static: teardown() closes it after a failure */
	ino_t ia, ib;
	char *content;
	size_t len;

	(void)state;
	begin(root, &sp);
	assert_int_equal(commit_start(base, &sp), 0);
	fill(root, a, 5000);
	fill(root, b, 5000);
	fill(root, c, 5000);
	ia = inode_of(root, "queue", a);
	ib = inode_of(root, "queue", b);

	/*
	 * batch 1: a finished (kept), b finished (kept), x new, in the same
	 * batch: a and b wait on the loop and go to the committer with x, in
	 * one step, however busy the machine; c deleted (unlinked), in that
	 * batch or the next.
	 */
	reqs[0] = removal(a, 1);
	reqs[1] = removal(b, 2);
	reqs[2] = new_message(&sp, x, 3);
	reqs[3] = removal(c, 4);
	reqs[3]->later = 0;
	for (int i = 0; i < 4; i++)
		if (i != 2)
			reqs[i]->done = on_done_any;
	one_batch(reqs, 4);
	assert_false(present(root, a, ".msg"));
	assert_int_equal(inode_of(root, "tmp", a), ia);
	assert_int_equal(inode_of(root, "tmp", b), ib);
	assert_int_equal(inode_of(root, "tmp", c), 0);
	assert_true(inode_of(root, "queue", x) != ia && inode_of(root, "queue", x) != ib);

	/* batch 2: y and z take the two kept files; w, larger than the buffer, a file of its own */
	reqs[0] = new_message(&sp, y, 1);
	reqs[1] = new_message(&sp, z, 2);
	reqs[2] = new_message(&sp, w, 3);
	{
		char *big = xmalloc(SPOOL_TXN_BUF + 10);
		memset(big, 'w', SPOOL_TXN_BUF + 10);
		spool_txn_write(&reqs[2]->txn, big, SPOOL_TXN_BUF + 10);
		reqs[2]->env.size = reqs[2]->txn.size;
		free(big);
	}
	one_batch(reqs, 3);
	assert_true((inode_of(root, "queue", y) == ia && inode_of(root, "queue", z) == ib) ||
	    (inode_of(root, "queue", y) == ib && inode_of(root, "queue", z) == ia));
	assert_true(inode_of(root, "queue", w) != ia && inode_of(root, "queue", w) != ib);
	assert_int_equal(inode_of(root, "tmp", a), 0);
	assert_int_equal(inode_of(root, "tmp", b), 0);
	/* each is its own message, whole: nothing of the old 5,000 octets left */
	assert_int_equal(spool_env_load(&sp, y, &e, err, sizeof err), 0);
	assert_null(e.damaged);
	content = spool_msg_read(&sp, &e, SIZE_MAX, &len);
	assert_int_equal(len, 20);
	assert_memory_equal(content, "Subject: n\r\n\r\nbody\r\n", 20);
	free(content);
	{
		char p[512];
		struct stat st;
		snprintf(p, sizeof p, "%s/queue/%s.msg", root, y);
		assert_int_equal(stat(p, &st), 0);
		assert_int_equal(st.st_size, (off_t)(e.size + e.tail));
	}
	spool_env_free(&e);
	assert_int_equal(spool_env_load(&sp, w, &e, err, sizeof err), 0);
	assert_null(e.damaged);
	assert_int_equal(e.size, 20 + SPOOL_TXN_BUF + 10);
	spool_env_free(&e);

	/* batch 3: y and z finished; the stop unlinks the files kept */
	reqs[0] = removal(y, 1);
	reqs[1] = removal(z, 2);
	reqs[0]->done = reqs[1]->done = on_done_any;
	one_batch(reqs, 2);
	assert_true(inode_of(root, "tmp", y) != 0);
	commit_stop();
	assert_int_equal(inode_of(root, "tmp", y), 0);
	assert_int_equal(inode_of(root, "tmp", z), 0);
	finish(&sp, root);
}

static size_t
kept_count(const char *root)
{
	char cmd[600], buf[64];
	FILE *f;
	size_t n = 0;

	snprintf(cmd, sizeof cmd, "ls %s/tmp | grep -c '%s$'", root, SPOOL_FREE_SUFFIX);
	f = popen(cmd, "r");
	assert_non_null(f);
	if (fgets(buf, sizeof buf, f) != NULL)
		n = (size_t)strtoul(buf, NULL, 10);
	pclose(f);
	return n;
}

/*
 * At most COMMIT_KEPT_MAX files are kept: finished messages removed beyond
 * that are unlinked, and every one of them leaves queue/ either way.
 * (Batches of fewer than REMOVE_SPLIT removals: the committer's own.)
 */
static void
test_kept_files_are_bounded(void **state)
{
	char root[] = "/tmp/test_commit.XXXXXX", id[QID_LEN + 1];
	struct commit_req *reqs[50];
	static struct spool sp;		/* static: teardown() closes it after a failure */
	int b, i, k = 0, nb = (COMMIT_KEPT_MAX + 49) / 50 + 1;

	(void)state;
	begin(root, &sp);
	assert_int_equal(commit_start(base, &sp), 0);
	for (b = 0; b < nb; b++) {
		for (i = 0; i < 50; i++, k++) {
			snprintf(id, sizeof id, "6553F100F42%05X", (unsigned)k);
			fill(root, id, 100);
			reqs[i] = removal(id, i + 1);
			reqs[i]->done = on_done_any;
		}
		one_batch(reqs, 50);
	}
	assert_true(k > COMMIT_KEPT_MAX);
	assert_int_equal(kept_count(root), COMMIT_KEPT_MAX);
	for (i = 0; i < k; i++) {
		snprintf(id, sizeof id, "6553F100F42%05X", (unsigned)i);
		assert_false(present(root, id, ".msg"));
	}
	commit_stop();
	assert_int_equal(kept_count(root), 0);
	finish(&sp, root);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_two_updates_of_one_envelope_in_a_batch, teardown),
		cmocka_unit_test_teardown(test_a_removal_waits_for_the_next_batch, teardown),
		cmocka_unit_test_teardown(test_removal_backlog_is_bounded_and_relieved, teardown),
		cmocka_unit_test_teardown(test_a_large_batch_of_removals, teardown),
		cmocka_unit_test_teardown(test_new_messages_and_removals_in_one_batch, teardown),
		cmocka_unit_test_teardown(test_finished_messages_files_are_reused, teardown),
		cmocka_unit_test_teardown(test_kept_files_are_bounded, teardown),
	};

	later_ms = commit_remove_later_ms;
	log_init("test_commit", LOG_TO_STDERR, LOG_CRIT);
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * pickup: see pickup.h.
 *
 * Each drop is parsed, its content normalised to CRLF lines and written
 * to a spool transaction, and committed like any submission; only once
 * the committer reports it durable is the drop file removed.  A crash in
 * between leaves both, and the message is imported twice (at-least-once,
 * never lost).  A file that is not a well-formed drop is moved to
 * spool_dir/quarantine/ and logged; it never stops the daemon.
 */
#include "config.h"

#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "commit.h"
#include "daemon.h"
#include "local.h"
#include "log.h"
#include "pickup.h"
#include "queue.h"
#include "smtpd.h"
#include "spool/maildrop.h"
#include "util.h"
#include "xmalloc.h"

#define RESCAN_SECONDS 60
#define RETRY_SECONDS  3	/* after an import the spool refused (full disk) */

static int dropfd = -1, inofd = -1;
static struct event *ino_ev, *rescan_ev, *retry_ev;

static void retry_soon(void);

/* Names being imported (committer busy with them): not picked twice. */
struct busy {
	char *name;
	struct busy *next;
};
static struct busy *busy;

static int
is_busy(const char *name)
{
	for (struct busy *b = busy; b != NULL; b = b->next)
		if (strcmp(b->name, name) == 0)
			return 1;
	return 0;
}

static void
busy_del(const char *name)
{
	for (struct busy **pp = &busy; *pp != NULL; pp = &(*pp)->next) {
		if (strcmp((*pp)->name, name) == 0) {
			struct busy *b = *pp;
			*pp = b->next;
			free(b->name);
			free(b);
			return;
		}
	}
}

struct pickup_ctx {
	char *name;
};

static void
quarantine(const char *name, const char *why)
{
	if (mkdirat(D->spool.dirfd, "quarantine", 0700) == -1 && errno != EEXIST) {
		log_warn("%s/quarantine", D->spool.dir);
		return;
	}
	int qfd = openat(D->spool.dirfd, "quarantine", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (qfd == -1 || renameat(dropfd, name, qfd, name) == -1)
		log_warn("maildrop/%s: cannot move to quarantine", name);
	else
		log_warnx("maildrop/%s: not a valid drop (%s); moved to %s/quarantine/", name, why, D->spool.dir);
	if (qfd != -1)
		close(qfd);
}

static void
on_committed(struct commit_req *req, void *arg)
{
	struct pickup_ctx *ctx = arg;

	if (req->rc == 0) {
		if (unlinkat(dropfd, ctx->name, 0) == -1 && errno != ENOENT)
			log_warn("maildrop/%s: imported, but cannot remove it", ctx->name);
		fsync_dir_fd(dropfd);
		log_qid(LOG_INFO, req->env.id, "queued", "from=<%s>, size=%llu, nrcpt=%zu, uid=%lu, via=maildrop",
		    req->env.sender, req->env.size, req->env.nrcpt, (unsigned long)req->env.uid);
		queue_add(&req->env);
		D->stats.accepted++;
	} else {
		log_qid(LOG_ERR, req->env.id, NULL, "cannot import maildrop/%s: %s; will try again",
		    ctx->name, req->err);
		retry_soon();
	}
	commit_req_free(req);
	busy_del(ctx->name);
	free(ctx->name);
	free(ctx);
}

/* Write content with every line ending made CRLF (the drop came from another process). */
static unsigned long long
write_crlf(struct spool_txn *txn, const char *p, size_t len)
{
	unsigned long long size = 0;
	size_t i, start = 0;

	for (i = 0; i < len; i++) {
		if (p[i] != '\n' && p[i] != '\r')
			continue;
		spool_txn_write(txn, p + start, i - start);
		spool_txn_write(txn, "\r\n", 2);
		size += i - start + 2;
		if (p[i] == '\r' && i + 1 < len && p[i + 1] == '\n')
			i++;	/* CRLF is one line end */
		start = i + 1;
	}
	if (start < len) {
		spool_txn_write(txn, p + start, len - start);
		spool_txn_write(txn, "\r\n", 2);
		size += len - start + 2;
	}
	return size;
}

static void
import(const char *name)
{
	struct stat st;
	struct maildrop_env de;
	struct spool_txn txn;
	struct timeval arrival;
	char err[256], id[QID_LEN + 1];
	size_t off, i;
	char *buf;
	int fd;

	fd = openat(dropfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd == -1) {
		if (errno != ENOENT)
			log_warn("maildrop/%s", name);
		return;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		close(fd);
		quarantine(name, "not a regular file");
		return;
	}
	unsigned long long limit = D->conf->max_message_size ? D->conf->max_message_size + 1024 * 1024 : 0;
	if (limit && (unsigned long long)st.st_size > limit) {
		close(fd);
		quarantine(name, "larger than max_message_size");
		return;
	}
	buf = xmalloc((size_t)st.st_size + 1);
	ssize_t n = read_full(fd, buf, (size_t)st.st_size);
	close(fd);
	if (n != st.st_size) {
		free(buf);
		log_warnx("maildrop/%s: short read; will try again", name);
		return;
	}
	if (maildrop_parse(buf, (size_t)n, &de, &off, err, sizeof err) == -1) {
		free(buf);
		quarantine(name, err);
		return;
	}
	daemon_new_qid(id, &arrival);
	if (spool_txn_begin(&D->spool, id, &txn) == -1) {
		log_err("maildrop/%s: cannot create a queue file; will try again", name);
		retry_soon();
		maildrop_env_free(&de);
		free(buf);
		return;
	}
	struct commit_req *req = xcalloc(1, sizeof *req);
	struct rewrite_policy pol = conf_rewrite_policy(D->conf);
	int complete;
	size_t hl = rewrite_header_len(buf + off, (size_t)n - off, (size_t)n - off, &complete);
	size_t nl;
	char *nh = hl ? rewrite_header_block(&pol, buf + off, hl, &nl, NULL) : NULL;
	req->kind = COMMIT_NEW;
	if (nh != NULL) {
		/* local addresses in the header rewritten as for the submit socket */
		req->env.size = write_crlf(&txn, nh, nl);
		req->env.size += write_crlf(&txn, buf + off + hl, (size_t)n - off - hl);
		free(nh);
	} else
		req->env.size = write_crlf(&txn, buf + off, (size_t)n - off);
	if (spool_txn_filter(&txn, smtpd_linefix, id) == 1)
		req->env.size = txn.size;
	req->txn = txn;
	free(buf);
	memcpy(req->env.id, id, sizeof req->env.id);
	req->env.arrival = arrival.tv_sec;
	req->env.arrival_usec = arrival.tv_usec;
	req->env.sender = rewrite_sender(&pol, de.sender);
	req->env.uid = st.st_uid;	/* the submitter: the file's owner */
	strlcpy_mr(req->env.via, "maildrop", sizeof req->env.via);
	req->env.eightbit = de.eightbit;
	req->env.smtputf8 = de.smtputf8;
	strlcpy_mr(req->env.ret, de.ret, sizeof req->env.ret);
	strlcpy_mr(req->env.envid, de.envid, sizeof req->env.envid);
	for (i = 0; i < de.nrcpt; i++)
		local_add_rcpt(&req->env, de.rcpts[i]);
	for (i = 0; i < req->env.nrcpt; i++)
		strlcpy_mr(req->env.rcpts[i].notify, de.notify, sizeof req->env.rcpts[i].notify);
	maildrop_env_free(&de);

	struct pickup_ctx *ctx = xcalloc(1, sizeof *ctx);
	ctx->name = xstrdup(name);
	struct busy *b = xcalloc(1, sizeof *b);
	b->name = xstrdup(name);
	b->next = busy;
	busy = b;
	req->done = on_committed;
	req->arg = ctx;
	commit_submit(req);
}

static void
scan(void)
{
	DIR *d;
	struct dirent *de;
	int fd;

	if (D->shutting_down || (fd = fcntl(dropfd, F_DUPFD_CLOEXEC, 0)) == -1)
		return;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return;
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' || is_busy(de->d_name))
			continue;	/* ".tmp.*" are still being written */
		import(de->d_name);
	}
	closedir(d);
}

static void
on_inotify(evutil_socket_t fd, short what, void *arg)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

	(void)what;
	(void)arg;
	while (read(fd, buf, sizeof buf) > 0)
		;	/* which file does not matter: scan them all */
	scan();
}

static void
on_rescan(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	scan();
}

/* A drop the spool refused is tried again in a few seconds, not at the next 60 s rescan. */
static void
retry_soon(void)
{
	struct timeval tv = { .tv_sec = RETRY_SECONDS };

	if (retry_ev == NULL)
		retry_ev = evtimer_new(D->base, on_rescan, NULL);
	if (retry_ev != NULL && !evtimer_pending(retry_ev, NULL))
		evtimer_add(retry_ev, &tv);
}

int
pickup_start(void)
{
	struct timeval tv = { .tv_sec = RESCAN_SECONDS };

	dropfd = openat(D->spool.dirfd, "maildrop", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dropfd == -1) {
		log_warn("%s/maildrop", D->spool.dir);
		return -1;
	}
	inofd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (inofd != -1) {
		char path[4096];
		snprintf(path, sizeof path, "%s/maildrop", D->spool.dir);
		if (inotify_add_watch(inofd, path, IN_MOVED_TO | IN_CLOSE_WRITE) == -1) {
			log_warn("inotify on %s (falling back to a scan every %ds)", path, RESCAN_SECONDS);
			close(inofd);
			inofd = -1;
		} else {
			ino_ev = event_new(D->base, inofd, EV_READ | EV_PERSIST, on_inotify, NULL);
			event_add(ino_ev, NULL);
		}
	}
	rescan_ev = event_new(D->base, -1, EV_PERSIST, on_rescan, NULL);
	event_add(rescan_ev, &tv);
	scan();
	return 0;
}

void
pickup_stop(void)
{
	if (ino_ev)
		event_free(ino_ev);
	if (rescan_ev)
		event_free(rescan_ev);
	if (retry_ev)
		event_free(retry_ev);
	retry_ev = NULL;
	if (inofd != -1)
		close(inofd);
	if (dropfd != -1)
		close(dropfd);
	ino_ev = rescan_ev = NULL;
	inofd = dropfd = -1;
	while (busy != NULL)
		busy_del(busy->name);
}

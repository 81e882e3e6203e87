/*
 * spool: the on-disk queue.  The format and the crash-safety argument are
 * documented at the top of spool.h; this file keeps to them.
 *
 * All paths are resolved relative to directory fds opened once, so that a
 * queue id, validated by spool_qid_valid(), is the only thing ever joined
 * into a file name.
 */
#include "config.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "spool.h"
#include "util.h"
#include "xmalloc.h"

#define ENV_MAX (1024 * 1024)	/* an envelope larger than this is corrupt */
#define ENV_FIRST_READ 4096	/* env_read()'s first read: most envelopes are smaller */

static const char *const rcpt_status_names[] = {
	[RCPT_PENDING] = "pending",
	[RCPT_SENT] = "sent",
	[RCPT_FAILED] = "failed",
};

const char *
rcpt_status_name(enum rcpt_status s)
{
	if ((unsigned)s < sizeof rcpt_status_names / sizeof rcpt_status_names[0])
		return rcpt_status_names[s];
	return "unknown";
}

int
spool_qid_valid(const char *s)
{
	size_t i;

	if (s == NULL)
		return 0;
	for (i = 0; i < QID_LEN; i++) {
		char c = s[i];
		if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F')))
			return 0;
	}
	return s[QID_LEN] == '\0';
}

void
spool_qid_make(char out[QID_LEN + 1], time_t sec, long usec, unsigned seq)
{
	snprintf(out, QID_LEN + 1, "%08" PRIX32 "%05lX%03X",
	    (uint32_t)sec, (unsigned long)usec & 0xfffffUL, seq & 0xfffU);
}

static uint64_t qid_key(const char *id);

void
spool_qid_new(struct spool *sp, char out[QID_LEN + 1], struct timeval *arrival)
{
	char name[QID_LEN + 8];

	gettimeofday(arrival, NULL);
	for (;;) {
		spool_qid_make(out, arrival->tv_sec, arrival->tv_usec, sp->qid_seq++);
		uint64_t k = qid_key(out);
		if (sp->qid_known && k > sp->qid_high) {
			sp->qid_high = k;
			break;
		}
		snprintf(name, sizeof name, "%s.msg", out);
		if (faccessat(sp->queuefd, name, F_OK, 0) == -1 && errno == ENOENT) {
			if (k > sp->qid_high)
				sp->qid_high = k;
			break;
		}
	}
}

static int
open_subdir(int dirfd, const char *name, int create, mode_t mode)
{
	int fd;

	if (create && mkdirat(dirfd, name, mode) == -1 && errno != EEXIST)
		return -1;
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fd;
}

int
spool_open(struct spool *sp, const char *dir, int create, char *errbuf, size_t errlen)
{
	memset(sp, 0, sizeof *sp);
	sp->dirfd = sp->queuefd = sp->tmpfd = -1;

	if (create && mkdir(dir, 0700) == -1 && errno != EEXIST) {
		snprintf(errbuf, errlen, "%s: cannot create spool: %s", dir, strerror(errno));
		return -1;
	}
	sp->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sp->dirfd == -1) {
		snprintf(errbuf, errlen, "%s: cannot open spool: %s", dir, strerror(errno));
		return -1;
	}
	/*
	 * 0710: the daemon's group may pass through to maildrop/ (the setgid
	 * sendmail client writes there when the daemon is down), nothing more.
	 */
	if (create && fchmod(sp->dirfd, 0710) == -1) {
		snprintf(errbuf, errlen, "%s: chmod: %s", dir, strerror(errno));
		goto fail;
	}
	sp->queuefd = open_subdir(sp->dirfd, "queue", create, 0700);
	if (sp->queuefd == -1) {
		snprintf(errbuf, errlen, "%s/queue: %s", dir, strerror(errno));
		goto fail;
	}
	if (create) {
		sp->tmpfd = open_subdir(sp->dirfd, "tmp", create, 0700);
		if (sp->tmpfd == -1) {
			snprintf(errbuf, errlen, "%s/tmp: %s", dir, strerror(errno));
			goto fail;
		}
		/* maildrop is written by the setgid sendmail client: group-writable, sticky. */
		if ((mkdirat(sp->dirfd, "maildrop", 01730) == -1 && errno != EEXIST) ||
		    fchmodat(sp->dirfd, "maildrop", 01730, 0) == -1) {	/* umask would have cut the mode */
			snprintf(errbuf, errlen, "%s/maildrop: %s", dir, strerror(errno));
			goto fail;
		}
		if (fsync_dir_fd(sp->dirfd) == -1) {
			snprintf(errbuf, errlen, "%s: fsync: %s", dir, strerror(errno));
			goto fail;
		}
	}
	sp->dir = xstrdup(dir);
	return 0;
fail:
	spool_close(sp);
	return -1;
}

void
spool_close(struct spool *sp)
{
	if (sp->queuefd != -1)
		close(sp->queuefd);
	if (sp->tmpfd != -1)
		close(sp->tmpfd);
	if (sp->dirfd != -1)
		close(sp->dirfd);
	free(sp->dir);
	memset(sp, 0, sizeof *sp);
	sp->dirfd = sp->queuefd = sp->tmpfd = -1;
}

void
spool_clean_tmp(struct spool *sp)
{
	DIR *d;
	struct dirent *de;
	int fd = fcntl(sp->tmpfd, F_DUPFD_CLOEXEC, 0);

	if (fd == -1 || (d = fdopendir(fd)) == NULL) {
		if (fd != -1)
			close(fd);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (unlinkat(sp->tmpfd, de->d_name, 0) == -1)
			log_warn("%s/tmp/%s: unlink", sp->dir, de->d_name);
	}
	closedir(d);
}

/* ---------------------------------------------------------------------
 * New messages
 */

static void
name_of(char *buf, size_t len, const char *id, const char *suffix)
{
	snprintf(buf, len, "%s%s", id, suffix);
}

/* The transaction's file, in tmp/ or queue/: a kept one (OLD.free, spool_txn_reuse()) or its own. */
static void
txn_name(const struct spool_txn *txn, char *buf, size_t len)
{
	if (txn->reuse[0] != '\0')
		name_of(buf, len, txn->reuse, SPOOL_FREE_SUFFIX);
	else
		name_of(buf, len, txn->id, ".msg");
}

int
spool_txn_begin(struct spool *sp, const char *id, struct spool_txn *txn)
{
	memset(txn, 0, sizeof *txn);
	txn->sp = sp;
	txn->msgfd = -1;
	if (!spool_qid_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	memcpy(txn->id, id, QID_LEN + 1);
	return 0;
}

/*
 * The file of a message larger than the buffer: tmp/ID.msg, made when the
 * content first overflows (read-write: spool_txn_filter() may read it
 * back).  0, or -1 with the transaction failed.
 */
static int
txn_open_tmp(struct spool_txn *txn)
{
	char name[64];

	if (txn->msgfd != -1)
		return 0;
	name_of(name, sizeof name, txn->id, ".msg");
	txn->msgfd = openat(txn->sp->tmpfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (txn->msgfd == -1) {
		txn->failed = 1;
		txn->err = errno;
		return -1;
	}
	return 0;
}

/* Write the buffered content out; 0, or -1 with the transaction failed. */
static int
txn_flush(struct spool_txn *txn)
{
	if (txn->failed)
		return -1;
	if (txn->blen > 0 && (txn_open_tmp(txn) == -1 || write_all(txn->msgfd, txn->buf, txn->blen) == -1)) {
		txn->failed = 1;
		txn->err = errno;
		return -1;
	}
	txn->blen = 0;
	return 0;
}

static void
txn_buf_free(struct spool_txn *txn)
{
	free(txn->buf);
	txn->buf = NULL;
	txn->blen = 0;
}

void
spool_txn_write(struct spool_txn *txn, const void *buf, size_t len)
{
	if (txn->failed || len == 0)
		return;
	if (txn->blen + len > SPOOL_TXN_BUF) {
		if (txn_flush(txn) == -1)
			return;
		if (len >= SPOOL_TXN_BUF) {
			if (txn_open_tmp(txn) == -1)
				return;
			if (write_all(txn->msgfd, buf, len) == -1) {
				txn->failed = 1;
				txn->err = errno;
				return;
			}
			txn->size += len;
			return;
		}
	}
	if (txn->buf == NULL && (txn->buf = malloc(SPOOL_TXN_BUF)) == NULL) {
		txn->failed = 1;
		txn->err = errno;
		return;
	}
	memcpy(txn->buf + txn->blen, buf, len);
	txn->blen += len;
	txn->size += len;
}

int
spool_txn_filter(struct spool_txn *txn, spool_filter_fn fn, void *arg)
{
	char *map, *out;
	size_t outlen;

	if (txn->failed)
		return -1;	/* with its errno kept */
	if (txn->size == 0)
		return 0;
	if (txn->msgfd == -1) {
		/* all of it still in the buffer: filtered there */
		out = fn(txn->buf, txn->blen, &outlen, arg);
		if (out == NULL)
			return 0;
		txn->blen = 0;
		txn->size = 0;
		spool_txn_write(txn, out, outlen);
		free(out);
		return txn->failed ? -1 : 1;
	}
	if (txn_flush(txn) == -1)
		return -1;
	if (txn->size > SIZE_MAX) {
		errno = EFBIG;
		goto fail;
	}
	map = mmap(NULL, (size_t)txn->size, PROT_READ, MAP_SHARED, txn->msgfd, 0);
	if (map == MAP_FAILED)
		goto fail;
	out = fn(map, (size_t)txn->size, &outlen, arg);
	munmap(map, (size_t)txn->size);
	if (out == NULL)
		return 0;
	if (ftruncate(txn->msgfd, 0) == -1 || lseek(txn->msgfd, 0, SEEK_SET) == -1 ||
	    write_all(txn->msgfd, out, outlen) == -1) {
		free(out);
		goto fail;
	}
	free(out);
	txn->size = outlen;
	return 1;
fail:
	txn->failed = 1;
	txn->err = errno;
	return -1;
}

/* A field value with TAB, CR, LF (and other controls) replaced by spaces. */
static const char *
clean_field(const char *s, char *buf, size_t len)
{
	size_t i;

	for (i = 0; s[i] != '\0' && i + 1 < len; i++)
		buf[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? ' ' : s[i];
	buf[i] = '\0';
	return buf;
}

/* One attempt record. */
static void
put_attempt(FILE *f, const struct spool_attempt *h)
{
	char oc[16], rl[600], tmp[2048];

	fprintf(f, "attempt\t%lld\t%u\t%s\t%s\t%s\n", (long long)h->when, h->rcpt,
	    clean_field(h->outcome, oc, sizeof oc), clean_field(h->relay ? h->relay : "", rl, sizeof rl),
	    clean_field(h->reply ? h->reply : "", tmp, sizeof tmp));
}

char *
spool_env_render(const struct spool_env *env, size_t *lenp)
{
	char *buf = NULL;
	size_t len = 0, i;
	FILE *f = open_memstream(&buf, &len);

	if (f == NULL)
		log_fatal("open_memstream");

	char tmp[2048];
	fprintf(f, "mailrelay-env 2\n");
	fprintf(f, "id\t%s\n", env->id);
	fprintf(f, "arrival\t%lld.%06ld\n", (long long)env->arrival, env->arrival_usec);
	fprintf(f, "sender\t%s\n", clean_field(env->sender, tmp, sizeof tmp));
	fprintf(f, "uid\t%lu\n", (unsigned long)env->uid);
	fprintf(f, "via\t%s\n", clean_field(env->via, tmp, sizeof tmp));
	fprintf(f, "size\t%llu\n", env->size);
	if (env->tail != 0)
		fprintf(f, "tail\t%llu\n", env->tail);
	fprintf(f, "body\t%s\n", env->eightbit ? "8BITMIME" : "7BIT");
	fprintf(f, "held\t%d\n", env->held ? 1 : 0);
	if (env->ret[0] || env->envid != NULL)
		fprintf(f, "dsn\t%s\t%s\n", env->ret, clean_field(env->envid ? env->envid : "", tmp, sizeof tmp));
	if (env->smtputf8)
		fprintf(f, "smtputf8\t1\n");
	if (env->drop != NULL && env->drop[0] != '\0')
		fprintf(f, "drop\t%s\n", clean_field(env->drop, tmp, sizeof tmp));
	if (env->warned)
		fprintf(f, "warned\t1\n");
	for (i = 0; i < env->nrcpt; i++) {
		const struct spool_rcpt *r = &env->rcpts[i];
		char a[600], o[600];
		fprintf(f, "rcpt\t%s\t%u\t%lld\t%lld\t%s\t%s\t%s",
		    rcpt_status_name(r->status), r->attempts,
		    (long long)r->next_attempt, (long long)r->last_attempt,
		    clean_field(r->addr, a, sizeof a),
		    clean_field(r->orig ? r->orig : r->addr, o, sizeof o),
		    clean_field(r->last_reply ? r->last_reply : "", tmp, sizeof tmp));
		if (r->notify[0] || (r->orcpt && r->orcpt[0]))
			fprintf(f, "\t%s\t%s", clean_field(r->notify, a, sizeof a),
			    clean_field(r->orcpt ? r->orcpt : "", o, sizeof o));
		fputc('\n', f);
	}
	for (i = 0; i < env->nrcpt; i++)
		if (env->rcpts[i].success_notice)
			fprintf(f, "notice\t%zu\n", i);
	for (i = 0; i < env->nrcpt; i++)
		if (env->rcpts[i].reported)
			fprintf(f, "reported\t%zu\n", i);
	for (i = 0; i < env->nrcpt; i++)
		if (env->rcpts[i].dsn[0] != '\0')
			fprintf(f, "rstatus\t%zu\t%s\n", i, env->rcpts[i].dsn);
	for (i = 0; i < env->nrcpt; i++)
		if (env->rcpts[i].kind[0] != '\0')
			fprintf(f, "rkind\t%zu\t%s\n", i, env->rcpts[i].kind);
	for (i = 0; i < env->nhist; i++)
		put_attempt(f, &env->hist[i]);
	/* last: an envelope cut short anywhere before this line is known to be */
	fprintf(f, "end\t%zu\n", env->nrcpt);
	if (fclose(f) != 0)
		log_fatal("open_memstream");
	*lenp = len;
	return buf;
}

/* Write an envelope's text to tmp/NAME and, with sync, fsync it. */
static int
text_write_tmp(struct spool *sp, const char *name, const char *buf, size_t len,
    int sync, char *errbuf, size_t errlen)
{
	int fd, saved;

	fd = openat(sp->tmpfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd == -1) {
		saved = errno;
		snprintf(errbuf, errlen, "%s/tmp/%s: %s", sp->dir, name, strerror(saved));
		errno = saved;
		return -1;
	}
	if (write_all(fd, buf, len) == -1 || (sync && fsync(fd) == -1)) {
		saved = errno;
		snprintf(errbuf, errlen, "%s/tmp/%s: %s", sp->dir, name, strerror(saved));
		close(fd);
		unlinkat(sp->tmpfd, name, 0);
		errno = saved;
		return -1;
	}
	if (close(fd) == -1) {
		saved = errno;
		snprintf(errbuf, errlen, "%s/tmp/%s: close: %s", sp->dir, name, strerror(saved));
		unlinkat(sp->tmpfd, name, 0);
		errno = saved;
		return -1;
	}
	return 0;
}

/* text_write_tmp(), then free(buf) (errno kept). */
static int
text_write_tmp_free(struct spool *sp, const char *name, char *buf, size_t len, int sync,
    char *errbuf, size_t errlen)
{
	int rc = text_write_tmp(sp, name, buf, len, sync, errbuf, errlen), saved = errno;

	free(buf);
	errno = saved;
	return rc;
}

/* Write an envelope to tmp/NAME and fsync it. */
static int
env_write_tmp(struct spool *sp, const char *name, const struct spool_env *env,
    int sync, char *errbuf, size_t errlen)
{
	size_t len;
	char *buf;

	if (env->damaged != NULL) {
		/* a stand-in or a message found damaged: the files stay as found */
		snprintf(errbuf, errlen, "%s: damaged (%s); its envelope is not rewritten", env->id,
		    env->damaged);
		errno = EINVAL;
		return -1;
	}
	buf = spool_env_render(env, &len);
	return text_write_tmp_free(sp, name, buf, len, sync, errbuf, errlen);
}

int
spool_txn_prepare(struct spool_txn *txn, struct spool_env *env, int sync,
    char *errbuf, size_t errlen)
{
	char foot[SPOOL_FOOT_LEN + 1], name[64], *buf;
	const char *where = txn->msgfd == -1 ? "queue" : "tmp";	/* of the file written */
	struct iovec iov[3];
	size_t len;
	int saved;

	if (txn->failed) {
		txn_buf_free(txn);
		snprintf(errbuf, errlen, "%s/tmp/%s.msg: %s", txn->sp->dir, txn->id, strerror(txn->err));
		errno = txn->err;
		return -1;
	}
	if (env->damaged != NULL) {
		txn_buf_free(txn);
		snprintf(errbuf, errlen, "%s: damaged (%s); not queued", env->id, env->damaged);
		errno = EINVAL;
		return -1;
	}
	/*
	 * The lengths are the spool's to record, from what it wrote, whatever
	 * the caller counted: the content, then the envelope and the footer.
	 */
	env->size = txn->size;
	env->tail = 0;
	buf = spool_env_render(env, &len);
	env->tail = len + SPOOL_FOOT_LEN;
	snprintf(foot, sizeof foot, "mailrelay-tail %010zu\n", len);
	saved = len > ENV_MAX ? EFBIG : 0;
	if (saved == 0 && txn->msgfd == -1 && txn->reuse[0] != '\0') {
		/* a retired message's file: written from its start, cut to length below */
		txn_name(txn, name, sizeof name);
		txn->msgfd = openat(txn->sp->tmpfd, name, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
		if (txn->msgfd == -1)
			txn->reuse[0] = '\0';	/* a new file, then */
		else
			where = "tmp";
	}
	if (saved == 0 && txn->msgfd == -1) {
		/*
		 * All of the content is in the buffer: the file is made in
		 * queue/ at once, with everything it will ever hold, in one
		 * writev.  No rename, so a batch costs the file system one
		 * journal commit where the rename into queue/ made it two.
		 * Until its tail is there, the file is not a queued message.
		 */
		name_of(name, sizeof name, txn->id, ".msg");
		txn->msgfd = openat(txn->sp->queuefd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (txn->msgfd == -1)
			saved = errno;
		else
			txn->in_queue = 1;
	}
	/* the content still buffered, the envelope and the footer: one writev */
	iov[0].iov_base = txn->buf;
	iov[0].iov_len = txn->blen;
	iov[1].iov_base = buf;
	iov[1].iov_len = len;
	iov[2].iov_base = foot;
	iov[2].iov_len = SPOOL_FOOT_LEN;
	if (saved == 0 && writev_all(txn->msgfd, iov, 3) == -1)
		saved = errno;
	if (saved == 0 && txn->reuse[0] != '\0' &&
	    ftruncate(txn->msgfd, (off_t)(txn->size + len + SPOOL_FOOT_LEN)) == -1)
		saved = errno;
	free(buf);
	txn_buf_free(txn);
	/* close whatever fsync says (a failed fsync must not leak the descriptor); the first error wins */
	if (saved == 0 && sync && fsync(txn->msgfd) == -1)
		saved = errno;
	if (txn->msgfd != -1 && close(txn->msgfd) == -1 && saved == 0)
		saved = errno;
	txn->msgfd = -1;
	if (saved != 0) {
		txn_name(txn, name, sizeof name);
		snprintf(errbuf, errlen, "%s/%s/%s: %s", txn->sp->dir, where, name, strerror(saved));
		errno = saved;
		return -1;
	}
	return 0;
}

int
spool_txn_publish(struct spool_txn *txn, char *errbuf, size_t errlen)
{
	struct spool *sp = txn->sp;
	char name[64], from[64];
	int saved;

	if (txn->in_queue)
		return 0;	/* written there */
	name_of(name, sizeof name, txn->id, ".msg");
	txn_name(txn, from, sizeof from);
	if (renameat(sp->tmpfd, from, sp->queuefd, name) == -1) {
		saved = errno;
		snprintf(errbuf, errlen, "%s/queue/%s: rename: %s", sp->dir, name, strerror(saved));
		errno = saved;
		return -1;
	}
	return 0;
}

void
spool_txn_abort(struct spool_txn *txn)
{
	char name[64];

	if (txn->sp == NULL)
		return;
	if (txn->msgfd != -1) {
		close(txn->msgfd);
		txn->msgfd = -1;
	}
	txn_buf_free(txn);
	txn_name(txn, name, sizeof name);
	/* a message written into queue/ and not acknowledged: it must not be delivered */
	unlinkat(txn->in_queue ? txn->sp->queuefd : txn->sp->tmpfd, name, 0);
	name_of(name, sizeof name, txn->id, ".env");
	unlinkat(txn->sp->tmpfd, name, 0);
	txn->sp = NULL;
}

int
spool_txn_reuse(struct spool_txn *txn, const char *old_id)
{
	if (txn->msgfd != -1 || txn->failed || !spool_qid_valid(old_id))
		return 0;	/* its content already has a file, in tmp/ */
	memcpy(txn->reuse, old_id, QID_LEN + 1);
	return 1;
}

int
spool_sync_queue(struct spool *sp)
{
	return fsync_dir_fd(sp->queuefd);
}

int
spool_syncfs(struct spool *sp)
{
	return syncfs(sp->queuefd);
}

FILE *
spool_state_create(struct spool *sp, const char *name)
{
	FILE *f;
	int fd = openat(sp->tmpfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);

	if (fd == -1)
		return NULL;
	if ((f = fdopen(fd, "w")) == NULL) {
		int saved = errno;
		close(fd);
		errno = saved;
	}
	return f;
}

int
spool_state_publish(struct spool *sp, FILE *f, const char *name, int sync)
{
	int rc = 0, saved = 0;

	if (fflush(f) == EOF || ferror(f) || (sync && fsync(fileno(f)) == -1)) {
		rc = -1;
		saved = errno ? errno : EIO;
	}
	if (fclose(f) == EOF && rc == 0) {
		rc = -1;
		saved = errno;
	}
	if (rc == 0 && (renameat(sp->tmpfd, name, sp->dirfd, name) == -1 ||
	    (sync && fsync(sp->dirfd) == -1))) {
		rc = -1;
		saved = errno;
	}
	if (rc == -1)
		unlinkat(sp->tmpfd, name, 0);
	errno = saved;
	return rc;
}

int
spool_state_read(struct spool *sp, const char *name, size_t max, char **buf, size_t *len)
{
	struct stat st;
	ssize_t n;
	int fd = openat(sp->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd == -1)
		return errno == ENOENT ? 0 : -1;
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
		close(fd);
		errno = EINVAL;
		return -1;
	}
	*buf = xmalloc((size_t)st.st_size + 1);
	n = read_full(fd, *buf, (size_t)st.st_size);
	close(fd);
	if (n < 0) {
		int saved = errno;
		free(*buf);
		*buf = NULL;
		errno = saved;
		return -1;
	}
	*len = (size_t)n;
	return 1;
}

/* ---------------------------------------------------------------------
 * Envelopes
 */

int
spool_env_stage(struct spool *sp, const struct spool_env *env, int sync,
    char *errbuf, size_t errlen)
{
	char tname[64];

	if (!spool_qid_valid(env->id)) {
		snprintf(errbuf, errlen, "invalid queue id");
		errno = EINVAL;
		return -1;
	}
	name_of(tname, sizeof tname, env->id, ".env.new");
	return env_write_tmp(sp, tname, env, sync, errbuf, errlen);
}

/* The longest queue/ID.env whose history spool_env_stage_update() reads (50 attempts fit many times). */
#define HIST_READ_MAX (1024 * 1024)

int
spool_env_stage_update(struct spool *sp, const char *id, const char *text, size_t len,
    const struct spool_attempt *hist, size_t nhist, int sync, char *errbuf, size_t errlen)
{
	char name[64], *old = NULL, *buf = NULL, *p, *end;
	const char *endrec;
	size_t oldlen = 0, blen = 0, nold = 0, skip, i, k;
	const char *lines[SPOOL_HISTORY_MAX];
	size_t lens[SPOOL_HISTORY_MAX];
	int fd;
	FILE *f;

	if (!spool_qid_valid(id)) {
		snprintf(errbuf, errlen, "invalid queue id");
		errno = EINVAL;
		return -1;
	}
	/* the text ends with its end record, after which the history goes */
	for (endrec = text + len; endrec > text && endrec[-1] == '\n'; endrec--)
		;
	while (endrec > text && endrec[-1] != '\n')
		endrec--;
	if (len < 5 || strncmp(endrec, "end\t", 4) != 0) {
		snprintf(errbuf, errlen, "%s: envelope to write has no end record", id);
		errno = EINVAL;
		return -1;
	}
	/*
	 * The attempts the envelope on disk holds (the latest kept, in order);
	 * one that cannot be read has none to keep (its one-file tail never
	 * has any: it is written before the first attempt).
	 */
	name_of(name, sizeof name, id, ".env");
	if ((fd = openat(sp->queuefd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) != -1) {
		struct stat st;
		if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 && st.st_size <= HIST_READ_MAX) {
			old = xmalloc((size_t)st.st_size);
			ssize_t n = pread(fd, old, (size_t)st.st_size, 0);
			oldlen = n > 0 ? (size_t)n : 0;
		}
		close(fd);
	}
	for (p = old, end = old + oldlen; p != NULL && p < end; ) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			break;
		if (nl - p > 8 && memcmp(p, "attempt\t", 8) == 0) {
			/* a ring of the latest SPOOL_HISTORY_MAX */
			lines[nold % SPOOL_HISTORY_MAX] = p;
			lens[nold % SPOOL_HISTORY_MAX] = (size_t)(nl - p) + 1;
			nold++;
		}
		p = nl + 1;
	}
	if ((f = open_memstream(&buf, &blen)) == NULL)
		log_fatal("open_memstream");
	fwrite(text, 1, (size_t)(endrec - text), f);
	k = nold < SPOOL_HISTORY_MAX ? nold : SPOOL_HISTORY_MAX;	/* old ones held in the ring */
	skip = k + nhist > SPOOL_HISTORY_MAX ? k + nhist - SPOOL_HISTORY_MAX : 0;
	for (i = skip; i < k; i++) {
		size_t at = (nold - k + i) % SPOOL_HISTORY_MAX;
		fwrite(lines[at], 1, lens[at], f);
	}
	for (i = skip > k ? skip - k : 0; i < nhist; i++)
		put_attempt(f, &hist[i]);
	fwrite(endrec, 1, (size_t)(text + len - endrec), f);
	if (fclose(f) != 0)
		log_fatal("open_memstream");
	free(old);
	name_of(name, sizeof name, id, ".env.new");
	return text_write_tmp_free(sp, name, buf, blen, sync, errbuf, errlen);
}

void
spool_env_clear_hist(struct spool_env *env)
{
	size_t i;

	for (i = 0; i < env->nhist; i++) {
		free(env->hist[i].relay);
		free(env->hist[i].reply);
	}
	free(env->hist);
	env->hist = NULL;
	env->nhist = 0;
}

int
spool_env_install(struct spool *sp, const char *id, char *errbuf, size_t errlen)
{
	char tname[64], qname[64];
	int saved;

	name_of(tname, sizeof tname, id, ".env.new");
	name_of(qname, sizeof qname, id, ".env");
	if (renameat(sp->tmpfd, tname, sp->queuefd, qname) == -1) {
		saved = errno;
		snprintf(errbuf, errlen, "%s/queue/%s: rename: %s", sp->dir, qname, strerror(saved));
		unlinkat(sp->tmpfd, tname, 0);
		errno = saved;
		return -1;
	}
	return 0;
}

int
spool_env_write(struct spool *sp, const struct spool_env *env, int sync_dir,
    char *errbuf, size_t errlen)
{
	int saved;

	if (spool_env_stage(sp, env, 1, errbuf, errlen) == -1 ||
	    spool_env_install(sp, env->id, errbuf, errlen) == -1)
		return -1;
	if (sync_dir && spool_sync_queue(sp) == -1) {
		saved = errno;
		snprintf(errbuf, errlen, "%s/queue: fsync: %s", sp->dir, strerror(saved));
		errno = saved;
		return -1;
	}
	return 0;
}

void
spool_env_free(struct spool_env *env)
{
	size_t i;

	for (i = 0; i < env->nrcpt; i++) {
		free(env->rcpts[i].addr);
		free(env->rcpts[i].orig);
		free(env->rcpts[i].last_reply);
		free(env->rcpts[i].orcpt);
	}
	free(env->rcpts);
	spool_env_clear_hist(env);
	free(env->sender);
	free(env->drop);
	free(env->envid);
	free(env->damaged);
	memset(env, 0, sizeof *env);
}

void
spool_env_set_damaged(struct spool_env *env, const char *why)
{
	free(env->damaged);
	env->damaged = xstrndup(why, SPOOL_DAMAGED_MAX - 1);
}

void
spool_env_copy(struct spool_env *dst, const struct spool_env *src)
{
	size_t i;

	*dst = *src;
	dst->sender = xstrdup(src->sender ? src->sender : "");
	dst->drop = src->drop != NULL ? xstrdup(src->drop) : NULL;
	dst->envid = src->envid != NULL ? xstrdup(src->envid) : NULL;
	dst->damaged = src->damaged != NULL ? xstrdup(src->damaged) : NULL;
	dst->rcpts = xcalloc(src->nrcpt ? src->nrcpt : 1, sizeof *dst->rcpts);
	for (i = 0; i < src->nrcpt; i++) {
		dst->rcpts[i] = src->rcpts[i];
		dst->rcpts[i].addr = xstrdup(src->rcpts[i].addr);
		dst->rcpts[i].orig = src->rcpts[i].orig ? xstrdup(src->rcpts[i].orig) : NULL;
		dst->rcpts[i].last_reply = xstrdup(src->rcpts[i].last_reply ? src->rcpts[i].last_reply : "");
		dst->rcpts[i].orcpt = src->rcpts[i].orcpt ? xstrdup(src->rcpts[i].orcpt) : NULL;
	}
	dst->hist = NULL;
	dst->nhist = 0;
	for (i = 0; i < src->nhist; i++)
		spool_env_add_attempt(dst, src->hist[i].when, src->hist[i].rcpt, src->hist[i].outcome,
		    src->hist[i].relay, src->hist[i].reply);
}

struct spool_attempt *
spool_env_new_attempt(struct spool_env *env)
{
	struct spool_attempt *h;

	if (env->nhist >= SPOOL_HISTORY_MAX) {
		free(env->hist[0].relay);
		free(env->hist[0].reply);
		memmove(env->hist, env->hist + 1, (env->nhist - 1) * sizeof *env->hist);
		env->nhist--;
	}
	env->hist = xreallocarray(env->hist, env->nhist + 1, sizeof *env->hist);
	h = &env->hist[env->nhist++];
	memset(h, 0, sizeof *h);
	return h;
}

void
spool_env_add_attempt(struct spool_env *env, time_t when, unsigned rcpt, const char *outcome,
    const char *relay, const char *reply)
{
	struct spool_attempt *h = spool_env_new_attempt(env);

	h->when = when;
	h->rcpt = rcpt;
	strlcpy_mr(h->outcome, outcome, sizeof h->outcome);
	h->relay = xstrdup(relay ? relay : "");
	h->reply = xstrdup(reply ? reply : "");
}

static int
parse_time(const char *s, time_t *out)
{
	unsigned long long v;

	if (parse_ull(s, (unsigned long long)INT64_MAX, &v) == -1)
		return -1;
	*out = (time_t)v;
	return 0;
}

/* Split a line at TABs into at most max fields; returns the count. */
static size_t
split_tabs(char *line, char **f, size_t max)
{
	size_t n = 0;
	char *p = line;

	while (n < max) {
		f[n++] = p;
		p = strchr(p, '\t');
		if (p == NULL)
			break;
		*p++ = '\0';
	}
	return n;
}

static int
env_parse_rcpt(struct spool_env *env, char **f, size_t nf, char *errbuf, size_t errlen)
{
	struct spool_rcpt r;
	unsigned long long att;
	int st;

	if (nf != 7 && nf != 9) {
		snprintf(errbuf, errlen, "rcpt: expected 7 or 9 fields, got %zu", nf);
		return -1;
	}
	memset(&r, 0, sizeof r);
	if (strcmp(f[0], "pending") == 0)
		st = RCPT_PENDING;
	else if (strcmp(f[0], "sent") == 0)
		st = RCPT_SENT;
	else if (strcmp(f[0], "failed") == 0)
		st = RCPT_FAILED;
	else {
		snprintf(errbuf, errlen, "rcpt: bad status");
		return -1;
	}
	r.status = (enum rcpt_status)st;
	if (parse_ull(f[1], UINT_MAX, &att) == -1 ||
	    parse_time(f[2], &r.next_attempt) == -1 ||
	    parse_time(f[3], &r.last_attempt) == -1 || f[4][0] == '\0') {
		snprintf(errbuf, errlen, "rcpt: bad field");
		return -1;
	}
	r.attempts = (unsigned)att;
	if (env->nrcpt >= 100000) {
		snprintf(errbuf, errlen, "too many recipients");
		return -1;
	}
	env->rcpts = xreallocarray(env->rcpts, env->nrcpt + 1, sizeof *env->rcpts);
	r.addr = xstrdup(f[4]);
	/* empty, or the address itself: NULL (one string less per recipient held) */
	r.orig = f[5][0] && strcmp(f[5], f[4]) != 0 ? xstrdup(f[5]) : NULL;
	r.last_reply = xstrdup(f[6]);
	if (nf == 9) {
		/* DSN: NOTIFY as given, ORCPT kept in its xtext form */
		strlcpy_mr(r.notify, f[7], sizeof r.notify);
		r.orcpt = f[8][0] ? xstrdup(f[8]) : NULL;
	}
	env->rcpts[env->nrcpt++] = r;
	return 0;
}

static int env_parse(const char *buf, size_t len, struct spool_env *env, int no_hist, char *errbuf, size_t errlen);

int
spool_env_parse(const char *buf, size_t len, struct spool_env *env, char *errbuf, size_t errlen)
{
	return env_parse(buf, len, env, 0, errbuf, errlen);
}

/* spool_env_parse(); with no_hist, attempt records are checked but not kept. */
static int
env_parse(const char *buf, size_t len, struct spool_env *env, int no_hist, char *errbuf, size_t errlen)
{
	char *copy, *line, *next, *f[10];
	size_t nf, lineno = 0;
	int have_id = 0, have_sender = 0, version = 0, have_end = 0;
	unsigned long long v;

	memset(env, 0, sizeof *env);
	if (len > ENV_MAX || memchr(buf, '\0', len) != NULL) {
		snprintf(errbuf, errlen, "not an envelope");
		return -1;
	}
	copy = xstrndup(buf, len);
	for (line = copy; line != NULL && *line != '\0'; line = next) {
		next = strchr(line, '\n');
		if (next == NULL) {
			snprintf(errbuf, errlen, "line %zu: truncated", lineno + 1);
			goto fail;
		}
		*next++ = '\0';
		lineno++;
		if (lineno == 1) {
			if (strcmp(line, "mailrelay-env 1") == 0)
				version = 1;
			else if (strcmp(line, "mailrelay-env 2") == 0)
				version = 2;
			else {
				snprintf(errbuf, errlen, "line 1: unknown format");
				goto fail;
			}
			continue;
		}
		if (have_end) {
			snprintf(errbuf, errlen, "line %zu: data after the end record", lineno);
			goto fail;
		}
		nf = split_tabs(line, f, 10);
		if (nf < 2) {
			snprintf(errbuf, errlen, "line %zu: no value", lineno);
			goto fail;
		}
		if (strcmp(f[0], "id") == 0 && nf == 2 && spool_qid_valid(f[1])) {
			memcpy(env->id, f[1], QID_LEN + 1);
			have_id = 1;
		} else if (strcmp(f[0], "arrival") == 0 && nf == 2) {
			char *dot = strchr(f[1], '.');
			unsigned long long us = 0;
			if (dot != NULL) {
				*dot = '\0';
				if (parse_ull(dot + 1, 999999, &us) == -1)
					goto bad;
			}
			if (parse_time(f[1], &env->arrival) == -1)
				goto bad;
			env->arrival_usec = (long)us;
		} else if (strcmp(f[0], "sender") == 0 && nf == 2) {
			free(env->sender);
			env->sender = xstrdup(f[1]);
			have_sender = 1;
		} else if (strcmp(f[0], "uid") == 0 && nf == 2) {
			if (parse_ull(f[1], UINT32_MAX, &v) == -1)
				goto bad;
			env->uid = (uid_t)v;
		} else if (strcmp(f[0], "via") == 0 && nf == 2) {
			strlcpy_mr(env->via, f[1], sizeof env->via);
		} else if (strcmp(f[0], "size") == 0 && nf == 2) {
			if (parse_ull(f[1], ULLONG_MAX, &env->size) == -1)
				goto bad;
		} else if (strcmp(f[0], "tail") == 0 && nf == 2) {
			if (parse_ull(f[1], ENV_MAX + SPOOL_FOOT_LEN, &env->tail) == -1)
				goto bad;
		} else if (strcmp(f[0], "body") == 0 && nf == 2) {
			env->eightbit = strcmp(f[1], "8BITMIME") == 0;
		} else if (strcmp(f[0], "held") == 0 && nf == 2) {
			env->held = strcmp(f[1], "1") == 0;
		} else if (strcmp(f[0], "dsn") == 0 && nf == 3) {
			if (strcmp(f[1], "FULL") != 0 && strcmp(f[1], "HDRS") != 0 && f[1][0] != '\0')
				goto bad;
			strlcpy_mr(env->ret, f[1], sizeof env->ret);
			free(env->envid);
			env->envid = f[2][0] != '\0' ? xstrndup(f[2], 100) : NULL;
		} else if (strcmp(f[0], "drop") == 0 && nf == 2) {
			/* a file name in maildrop/: never a path */
			if (f[1][0] == '\0' || f[1][0] == '.' || strchr(f[1], '/') != NULL || strlen(f[1]) > 255)
				goto bad;
			free(env->drop);
			env->drop = xstrdup(f[1]);
		} else if (strcmp(f[0], "smtputf8") == 0 && nf == 2) {
			env->smtputf8 = strcmp(f[1], "1") == 0;
		} else if (strcmp(f[0], "warned") == 0 && nf == 2) {
			env->warned = strcmp(f[1], "1") == 0;
		} else if (strcmp(f[0], "notice") == 0 && nf == 2) {
			if (parse_ull(f[1], 100000, &v) == -1 || v >= env->nrcpt)
				goto bad;
			env->rcpts[v].success_notice = 1;
		} else if (strcmp(f[0], "reported") == 0 && nf == 2) {
			if (parse_ull(f[1], 100000, &v) == -1 || v >= env->nrcpt)
				goto bad;
			env->rcpts[v].reported = 1;
		} else if (strcmp(f[0], "rstatus") == 0 && nf == 3) {
			/* d.d.d, each part short: anything else is not one of ours */
			if (parse_ull(f[1], 100000, &v) == -1 || v >= env->nrcpt ||
			    strlen(f[2]) >= sizeof env->rcpts[v].dsn ||
			    strspn(f[2], "0123456789.") != strlen(f[2]) ||
			    (f[2][0] != '2' && f[2][0] != '4' && f[2][0] != '5') || f[2][1] != '.')
				goto bad;
			strlcpy_mr(env->rcpts[v].dsn, f[2], sizeof env->rcpts[v].dsn);
		} else if (strcmp(f[0], "rkind") == 0 && nf == 3) {
			/*
			 * A kind's name, as lib/trouble.h spells them; one this
			 * version does not know (a newer one's) is kept, and shown
			 * without a sentence.
			 */
			if (parse_ull(f[1], 100000, &v) == -1 || v >= env->nrcpt || f[2][0] == '\0' ||
			    strlen(f[2]) >= sizeof env->rcpts[v].kind ||
			    strspn(f[2], "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != strlen(f[2]))
				goto bad;
			strlcpy_mr(env->rcpts[v].kind, f[2], sizeof env->rcpts[v].kind);
		} else if (strcmp(f[0], "attempt") == 0 && nf == 6) {
			time_t when;
			if (parse_time(f[1], &when) == -1 || parse_ull(f[2], 100000, &v) == -1)
				goto bad;
			if (!no_hist)
				spool_env_add_attempt(env, when, (unsigned)v, f[3], f[4], f[5]);
		} else if (strcmp(f[0], "rcpt") == 0) {
			if (env_parse_rcpt(env, f + 1, nf - 1, errbuf, errlen) == -1)
				goto fail;
		} else if (strcmp(f[0], "end") == 0) {
			if (nf != 2 || parse_ull(f[1], 100000, &v) == -1)
				goto bad;
			if (v != env->nrcpt) {
				snprintf(errbuf, errlen, "line %zu: end record counts %llu recipients, %zu found",
				    lineno, v, env->nrcpt);
				goto fail;
			}
			have_end = 1;
		} else if (strcmp(f[0], "id") == 0 || strcmp(f[0], "arrival") == 0 ||
		    strcmp(f[0], "sender") == 0 || strcmp(f[0], "uid") == 0 ||
		    strcmp(f[0], "size") == 0 || strcmp(f[0], "tail") == 0) {
			goto bad;
		}
		/* other records: ignored, for forward compatibility */
	}
	if (version == 2 && !have_end && lineno > 0) {
		/* cut short at a line boundary: what follows (recipients) is lost */
		snprintf(errbuf, errlen, "truncated envelope: no end record after line %zu", lineno);
		goto fail;
	}
	if (lineno == 0 || !have_id || !have_sender || env->nrcpt == 0) {
		snprintf(errbuf, errlen, "incomplete envelope");
		goto fail;
	}
	free(copy);
	return 0;
bad:
	snprintf(errbuf, errlen, "line %zu: bad %s", lineno, f[0]);
fail:
	free(copy);
	spool_env_free(env);
	return -1;
}

/* The footer of a one-file message: the envelope's length, or -1 when the octets are not a footer. */
static int
foot_parse(const char *foot, unsigned long long *len)
{
	static const char magic[] = "mailrelay-tail ";
	size_t i, m = sizeof magic - 1;

	if (memcmp(foot, magic, m) != 0 || foot[SPOOL_FOOT_LEN - 1] != '\n')
		return -1;
	*len = 0;
	for (i = m; i < SPOOL_FOOT_LEN - 1; i++) {
		if (foot[i] < '0' || foot[i] > '9')
			return -1;
		*len = *len * 10 + (unsigned long long)(foot[i] - '0');
	}
	return 0;
}

int
spool_tail_parse(const char *buf, size_t len, unsigned long long fsize, struct spool_env *env,
    char *errbuf, size_t errlen)
{
	unsigned long long elen;

	memset(env, 0, sizeof *env);
	if (len < SPOOL_FOOT_LEN || len > fsize || foot_parse(buf + len - SPOOL_FOOT_LEN, &elen) == -1) {
		snprintf(errbuf, errlen, "no envelope");
		errno = ENOENT;
		return -1;
	}
	if (elen > ENV_MAX || elen > fsize - SPOOL_FOOT_LEN || elen > len - SPOOL_FOOT_LEN) {
		snprintf(errbuf, errlen, "the tail's length does not fit the file");
		errno = EBADMSG;
		return -1;
	}
	if (spool_env_parse(buf + len - SPOOL_FOOT_LEN - elen, (size_t)elen, env, errbuf, errlen) == -1) {
		errno = EBADMSG;
		return -1;
	}
	if (env->size != fsize - SPOOL_FOOT_LEN - elen || env->tail != 0) {
		snprintf(errbuf, errlen, "the tail's envelope does not match the content");
		spool_env_free(env);
		errno = EBADMSG;
		return -1;
	}
	env->tail = elen + SPOOL_FOOT_LEN;
	return 0;
}

/*
 * A queue file opened for reading: O_NOATIME where the file is ours (the
 * daemon's), else a first read after a write would dirty the inode, a
 * journal write per envelope when the whole queue is loaded at start.
 */
static int
queue_open(struct spool *sp, const char *name)
{
	int fd = openat(sp->queuefd, name, O_RDONLY | O_CLOEXEC | O_NOATIME);

	if (fd == -1 && errno == EPERM)
		fd = openat(sp->queuefd, name, O_RDONLY | O_CLOEXEC);
	return fd;
}

/* The envelope in the tail of queue/ID.msg (errno as spool_tail_parse() sets it). */
static int
env_read_tail(struct spool *sp, const char *id, struct spool_env *env, char *errbuf, size_t errlen)
{
	char name[64], foot[SPOOL_FOOT_LEN], *buf, err[200];
	unsigned long long elen, fsize;
	struct stat st;
	ssize_t n;
	size_t want;
	int fd, saved;

	memset(env, 0, sizeof *env);
	name_of(name, sizeof name, id, ".msg");
	fd = queue_open(sp, name);
	if (fd == -1) {
		saved = errno;
		snprintf(errbuf, errlen, "%s: %s", id, strerror(saved));
		errno = saved;
		return -1;
	}
	/* the footer first, for the envelope's length; then the envelope and the footer */
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) || st.st_size < SPOOL_FOOT_LEN ||
	    pread(fd, foot, SPOOL_FOOT_LEN, st.st_size - SPOOL_FOOT_LEN) != SPOOL_FOOT_LEN ||
	    foot_parse(foot, &elen) == -1) {
		close(fd);
		snprintf(errbuf, errlen, "%s: no envelope", id);
		errno = ENOENT;
		return -1;
	}
	fsize = (unsigned long long)st.st_size;
	want = elen > ENV_MAX || elen > fsize - SPOOL_FOOT_LEN ? SPOOL_FOOT_LEN : (size_t)elen + SPOOL_FOOT_LEN;
	buf = xmalloc(want);
	n = pread(fd, buf, want, (off_t)(fsize - want));
	close(fd);
	if (n < 0 || (size_t)n != want) {
		snprintf(errbuf, errlen, "%s: short read", id);
		free(buf);
		errno = EBADMSG;
		return -1;
	}
	if (spool_tail_parse(buf, want, fsize, env, err, sizeof err) == -1) {
		saved = errno;
		snprintf(errbuf, errlen, "%s: %s", id, err);
		free(buf);
		errno = saved;
		return -1;
	}
	free(buf);
	if (strcmp(env->id, id) != 0) {
		snprintf(errbuf, errlen, "%s: envelope names another id", id);
		spool_env_free(env);
		errno = EBADMSG;
		return -1;
	}
	return 0;
}

/* Does buf[0..n) end with a whole end record (the last line of a version 2 envelope)? */
static int
ends_with_end_record(const char *buf, size_t n)
{
	const char *nl;

	if (n < 7 || buf[n - 1] != '\n')
		return 0;
	nl = memrchr(buf, '\n', n - 1);
	nl = nl == NULL ? buf : nl + 1;
	return (size_t)(buf + n - nl) >= 6 && memcmp(nl, "end\t", 4) == 0;
}

/* spool_env_read(); *from_tail set when the envelope was the .msg's tail (its length then checked). */
static int
env_read(struct spool *sp, const char *id, struct spool_env *env, int *from_tail, char *errbuf, size_t errlen)
{
	char name[64], *buf;
	struct stat st;
	ssize_t n;
	int fd, rc, saved;

	/* errno on failure: ENOENT only when there is no envelope (spool_env_load() relies on it) */
	memset(env, 0, sizeof *env);
	if (!spool_qid_valid(id)) {
		snprintf(errbuf, errlen, "invalid queue id");
		errno = EINVAL;
		return -1;
	}
	name_of(name, sizeof name, id, ".env");
	fd = queue_open(sp, name);
	*from_tail = 0;
	if (fd == -1 && errno == ENOENT) {
		*from_tail = 1;
		return env_read_tail(sp, id, env, errbuf, errlen);	/* never changed: one file */
	}
	if (fd == -1) {
		saved = errno;
		snprintf(errbuf, errlen, "%s: %s", id, strerror(saved));
		errno = saved;
		return -1;
	}
	/*
	 * Most envelopes fit one read, and one that ends with its end record
	 * is whole (nothing may follow it): no fstat for the size and no
	 * second read to see the end of the file.  Else the rest is read by
	 * the file's size.
	 */
	buf = xmalloc(ENV_FIRST_READ);
	do
		n = read(fd, buf, ENV_FIRST_READ);
	while (n == -1 && errno == EINTR);
	if (n >= 0 && !ends_with_end_record(buf, (size_t)n)) {
		if (fstat(fd, &st) == -1 || st.st_size > ENV_MAX) {
			snprintf(errbuf, errlen, "%s: envelope unreadable or too large", id);
			close(fd);
			free(buf);
			errno = EBADMSG;
			return -1;
		}
		if (st.st_size > n) {
			ssize_t more;
			buf = xreallocarray(buf, (size_t)st.st_size, 1);
			more = read_full(fd, buf + n, (size_t)(st.st_size - n));
			n = more < 0 ? -1 : n + more;
		}
	}
	close(fd);
	if (n < 0) {
		snprintf(errbuf, errlen, "%s: short read", id);
		free(buf);
		errno = EBADMSG;
		return -1;
	}
	rc = env_parse(buf, (size_t)n, env, sp->no_history, errbuf, errlen);
	free(buf);
	if (rc == 0 && strcmp(env->id, id) != 0) {
		snprintf(errbuf, errlen, "%s: envelope names another id", id);
		spool_env_free(env);
		rc = -1;
	}
	if (rc == -1)
		errno = EBADMSG;
	else
		env->env_file = 1;	/* read from queue/ID.env */
	return rc;
}

int
spool_env_read(struct spool *sp, const char *id, struct spool_env *env, char *errbuf, size_t errlen)
{
	int from_tail;

	return env_read(sp, id, env, &from_tail, errbuf, errlen);
}

int
spool_msg_open(struct spool *sp, const char *id)
{
	char name[64];

	if (!spool_qid_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	name_of(name, sizeof name, id, ".msg");
	return openat(sp->queuefd, name, O_RDONLY | O_CLOEXEC);
}

char *
spool_msg_read(struct spool *sp, const struct spool_env *env, size_t max, size_t *len)
{
	char *buf;
	ssize_t n;
	size_t want;
	int fd;

	*len = 0;
	if ((fd = spool_msg_open(sp, env->id)) == -1)
		return NULL;
	/* the content only: what follows it (the tail) is the spool's */
	want = env->size < max ? (size_t)env->size : max;
	buf = xmalloc(want + 1);
	n = read_full(fd, buf, want);
	close(fd);
	if (n < 0) {
		free(buf);
		return NULL;
	}
	*len = (size_t)n;
	return buf;
}

/* spool_msg_check() on the .msg's status, or NULL and errno when it could not be had. */
static int
msg_stat_check(const struct spool_env *env, const struct stat *st, char *errbuf, size_t errlen)
{
	if (st == NULL && errno == ENOENT && env->tail != 0) {
		/* its removal unlinks the .msg first: a crash in between leaves this too */
		snprintf(errbuf, errlen, "content missing (or its removal was cut short)");
		return -1;
	}
	if (st == NULL) {
		snprintf(errbuf, errlen, "content %s", errno == ENOENT ? "missing" : strerror(errno));
		return -1;
	}
	if (!S_ISREG(st->st_mode)) {
		snprintf(errbuf, errlen, "content is not a regular file");
		return -1;
	}
	if ((unsigned long long)st->st_size != env->size + env->tail) {
		if (env->tail == 0)
			snprintf(errbuf, errlen, "content is %llu octets, the envelope says %llu",
			    (unsigned long long)st->st_size, env->size);
		else
			snprintf(errbuf, errlen, "content is %llu octets, the envelope says %llu and %llu after it",
			    (unsigned long long)st->st_size, env->size, env->tail);
		return -1;
	}
	return 0;
}

int
spool_msg_check(struct spool *sp, const struct spool_env *env, int fd, char *errbuf, size_t errlen)
{
	char name[64];
	struct stat st;
	int rc;

	if (fd != -1)
		rc = fstat(fd, &st);
	else {
		name_of(name, sizeof name, env->id, ".msg");
		rc = fstatat(sp->queuefd, name, &st, 0);
	}
	return msg_stat_check(env, rc == -1 ? NULL : &st, errbuf, errlen);
}

/* The stand-in for a damaged message: what its id and content file still tell. */
static void
env_stand_in(struct spool *sp, const char *id, struct spool_env *env, const char *why)
{
	char name[64], hex[9];
	struct stat st;

	memset(env, 0, sizeof *env);
	memcpy(env->id, id, QID_LEN + 1);
	/* the id is the arrival: 8 hex digits of seconds, 5 of microseconds */
	memcpy(hex, id, 8);
	hex[8] = '\0';
	env->arrival = (time_t)strtoul(hex, NULL, 16);
	memcpy(hex, id + 8, 5);
	hex[5] = '\0';
	env->arrival_usec = (long)(strtoul(hex, NULL, 16) % 1000000);
	env->sender = xstrdup("");
	name_of(name, sizeof name, id, ".msg");
	if (fstatat(sp->queuefd, name, &st, 0) == 0 && S_ISREG(st.st_mode))
		env->size = (unsigned long long)st.st_size;
	env->env_file = 1;	/* whatever is there goes with a delete */
	spool_env_set_damaged(env, why);
}

int
spool_env_load(struct spool *sp, const char *id, struct spool_env *env, char *errbuf, size_t errlen)
{
	char err[SPOOL_DAMAGED_MAX - 32], why[SPOOL_DAMAGED_MAX];
	int from_tail;

	if (!spool_qid_valid(id)) {
		memset(env, 0, sizeof *env);
		snprintf(errbuf, errlen, "invalid queue id");
		errno = EINVAL;
		return -1;
	}
	if (env_read(sp, id, env, &from_tail, err, sizeof err) == -1) {
		if (errno == ENOENT) {
			snprintf(errbuf, errlen, "%s: not in the queue", id);
			errno = ENOENT;
			return -1;
		}
		snprintf(why, sizeof why, "envelope: %s", err);
	} else if (from_tail)
		return 0;	/* the tail's reader checked the length against the file's */
	else if (spool_msg_check(sp, env, -1, err, sizeof err) == -1) {
		snprintf(why, sizeof why, "%s", err);
		spool_env_free(env);
	} else
		return 0;
	env_stand_in(sp, id, env, why);
	snprintf(errbuf, errlen, "%s: damaged: %s", id, why);
	return 1;
}

int
spool_remove(struct spool *sp, const char *id, int sync_dir)
{
	char name[64];

	if (!spool_qid_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	/*
	 * The .msg first: were the .env removed first, a crash in between
	 * would leave a one-file message's tail to be read as its envelope,
	 * and it would go out again from its first state.  The .env left
	 * instead records a tail: spool_scan() knows it for what it is.
	 */
	name_of(name, sizeof name, id, ".msg");
	if (unlinkat(sp->queuefd, name, 0) == -1 && errno != ENOENT)
		return -1;
	name_of(name, sizeof name, id, ".env");
	if (unlinkat(sp->queuefd, name, 0) == -1 && errno != ENOENT)
		return -1;
	if (sync_dir)
		return spool_sync_queue(sp);
	return 0;
}

int
spool_remove_known(struct spool *sp, const char *id, int has_env)
{
	char name[64];

	if (has_env)
		return spool_remove(sp, id, 0);
	if (!spool_qid_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	name_of(name, sizeof name, id, ".msg");
	if (unlinkat(sp->queuefd, name, 0) == -1 && errno != ENOENT)
		return -1;
	return 0;
}

int
spool_retire(struct spool *sp, const char *id, int has_env)
{
	char name[64], kept[64];
	int moved = 0;

	if (!spool_qid_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	/* the .msg first, as in spool_remove() */
	name_of(name, sizeof name, id, ".msg");
	name_of(kept, sizeof kept, id, SPOOL_FREE_SUFFIX);
	if (renameat(sp->queuefd, name, sp->tmpfd, kept) == 0)
		moved = 1;
	else if (errno != ENOENT)
		return -1;
	if (has_env) {
		name_of(name, sizeof name, id, ".env");
		if (unlinkat(sp->queuefd, name, 0) == -1 && errno != ENOENT)
			return -1;
	}
	return moved;
}

void
spool_unlink_retired(struct spool *sp, const char *id)
{
	char name[64];

	if (!spool_qid_valid(id))
		return;
	name_of(name, sizeof name, id, SPOOL_FREE_SUFFIX);
	unlinkat(sp->tmpfd, name, 0);
}

/*
 * A queue id is 16 hex digits: 64 bits, which sort as the ids do.  The
 * scan lists them so (8 octets an id, no allocation each): the lists are
 * held while the whole queue is loaded, which for 100,000 messages (two
 * files each) were 8 MB of names.
 */
static uint64_t
qid_key(const char *id)
{
	uint64_t k = 0;
	size_t i;

	for (i = 0; i < QID_LEN; i++)
		k = k << 4 | (uint64_t)(id[i] <= '9' ? id[i] - '0' : id[i] - 'A' + 10);
	return k;
}

static void
qid_of_key(uint64_t k, char id[QID_LEN + 1])
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i;

	for (i = QID_LEN; i-- > 0; k >>= 4)
		id[i] = hex[k & 15];
	id[QID_LEN] = '\0';
}

static int
cmp_keys(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void
keys_add(uint64_t **keys, size_t *n, size_t *cap, uint64_t k)
{
	if (*n == *cap) {
		*cap = *cap ? 2 * *cap : 256;
		*keys = xreallocarray(*keys, *cap, sizeof **keys);
	}
	(*keys)[(*n)++] = k;
}

/*
 * A .msg with neither .env nor tail: cut short after it was queued (its
 * envelope was in the tail), or what a crash left of a message it never
 * acknowledged (one written into queue/ whole, before its flush, or an
 * older version's between its two renames).  Nothing says where it was
 * to go: into quarantine/, for a look.
 */
static void
quarantine_msg(struct spool *sp, const char *id)
{
	char name[64], dst[96];

	name_of(name, sizeof name, id, ".msg");
	snprintf(dst, sizeof dst, "quarantine/%s", name);
	/* never over what is there (quarantine/ keeps what it was given) */
	if ((mkdirat(sp->dirfd, "quarantine", 0700) == -1 && errno != EEXIST) ||
	    renameat2(sp->queuefd, name, sp->dirfd, dst, RENAME_NOREPLACE) == -1) {
		log_warn("%s/queue/%s: content without envelope (cut short, or never acknowledged): "
		    "cannot move it to quarantine",
		    sp->dir, name);
		return;
	}
	log_warnx("%s: content without envelope (cut short, or never acknowledged) moved to %s/%s",
	    id, sp->dir, dst);
}

/*
 * spool_scan()'s read-ahead.  At a start with a large queue the load is
 * system calls (open, read, stat, close: four a message) and parsing,
 * and it is what the daemon's start waits for.  A second thread shares
 * the system calls for the messages that have their content (the common
 * case): it reads the envelope's octets (the .env, or the .msg's tail)
 * into a ring of SCAN_RING slots, at most that far ahead of the caller.
 * The calling thread reads an item itself when the read-ahead has not
 * taken it yet; when the read-ahead is still reading the item the caller
 * needs, the caller reads a later one meanwhile rather than wait (at a
 * start it spent half its time waiting, measured with 100,000 queued).
 * It parses every item and runs the callback for each message in order.
 *
 * The read-ahead thread allocates nothing.  glibc would give it a malloc
 * arena of its own, and what the calling thread frees into that arena
 * stays there: measured with 100,000 queued, 9 MB more at the peak.
 * Whatever is not the common case (an error, an envelope larger than a
 * slot) is left to the calling thread's spool_env_load(), from the start;
 * so is everything that logs, moves or removes a file.
 *
 * Each slot's word says which item it is for and who has it: the item's
 * index times 4, plus SLOT_FREE (nobody yet), SLOT_AHEAD (being read by
 * the read-ahead), SLOT_DONE (read by it) or SLOT_MINE (the caller reads
 * it).  The caller frees the slot of item k for item k + SCAN_RING once it
 * is done with k.  Taking a slot is a compare-and-swap from FREE for that
 * very item, so an item is read once, by one thread.
 */
#define SCAN_RING	128
#define SCAN_AHEAD_MIN	64	/* fewer messages than this: read inline */

enum { SLOT_FREE, SLOT_AHEAD, SLOT_DONE, SLOT_MINE };

struct scan_item {
	uint64_t key;
	unsigned char has_msg, has_env;
};

enum { RAW_NONE, RAW_ENV, RAW_TAIL };

struct scan_slot {
	_Atomic size_t word;            /* item * 4 + SLOT_* */
	int kind;                       /* RAW_*: what buf holds */
	size_t n;
	struct stat st;                 /* the .msg's */
	int st_errno;                   /* RAW_ENV: fstatat()'s errno, or 0 */
	char buf[ENV_FIRST_READ];
};

struct scan_ahead {
	struct spool *sp;
	const struct scan_item *items;
	size_t n;
	struct scan_slot *ring;
	atomic_int helper_waits;        /* the read-ahead waits for a slot */
	pthread_mutex_t mtx;
	pthread_cond_t space;
};

/*
 * The system calls for message id: RAW_NONE in s->kind leaves it to the
 * caller.  has_env: the listing had its .env.  Without one, the .env is
 * not looked for: a failed lookup in a large directory costs as much as
 * an open (an .env made since the listing is a change the listing did not
 * see either).
 */
static void
raw_fetch(struct spool *sp, const char *id, int has_env, struct scan_slot *s)
{
	char name[64];
	size_t want;
	ssize_t n;
	int fd = -1;

	s->kind = RAW_NONE;
	name_of(name, sizeof name, id, ".env");
	if (!has_env || (fd = queue_open(sp, name)) == -1) {
		if (has_env && errno != ENOENT)
			return;
		/*
		 * Never changed: the envelope is the .msg's tail, before its
		 * footer.  One read of the file's last slot holds both for all
		 * but the largest envelopes.  Most messages are smaller than a
		 * slot: a read from the start then takes the whole file, and its
		 * size, without the fstat (a short read of a regular file is its
		 * end; raw_load() needs nothing else of the stat).
		 */
		name_of(name, sizeof name, id, ".msg");
		if ((fd = queue_open(sp, name)) == -1)
			return;
		do
			n = read(fd, s->buf, sizeof s->buf);
		while (n == -1 && errno == EINTR);
		if (n >= 0 && (size_t)n < sizeof s->buf) {
			close(fd);
			if ((size_t)n >= SPOOL_FOOT_LEN) {
				memset(&s->st, 0, sizeof s->st);
				s->st.st_size = n;
				s->n = (size_t)n;
				s->kind = RAW_TAIL;
			}
			return;
		}
		if (fstat(fd, &s->st) == -1 || !S_ISREG(s->st.st_mode) || s->st.st_size < SPOOL_FOOT_LEN) {
			close(fd);
			return;
		}
		want = (unsigned long long)s->st.st_size < sizeof s->buf ? (size_t)s->st.st_size : sizeof s->buf;
		n = pread(fd, s->buf, want, s->st.st_size - (off_t)want);
		close(fd);
		if (n == (ssize_t)want) {
			s->n = want;
			s->kind = RAW_TAIL;
		}
		return;
	}
	do
		n = read(fd, s->buf, sizeof s->buf);
	while (n == -1 && errno == EINTR);
	close(fd);
	if (n < 0 || !ends_with_end_record(s->buf, (size_t)n))
		return;	/* larger than a slot, or unreadable */
	s->n = (size_t)n;
	name_of(name, sizeof name, id, ".msg");
	s->st_errno = fstatat(sp->queuefd, name, &s->st, 0) == -1 ? errno : 0;
	s->kind = RAW_ENV;
}

/* spool_env_load() of message id, on what the read-ahead fetched of it. */
static int
raw_load(struct spool *sp, const char *id, const struct scan_slot *s, struct spool_env *env,
    char *errbuf, size_t errlen)
{
	char err[SPOOL_DAMAGED_MAX];

	if (s->kind == RAW_TAIL &&
	    spool_tail_parse(s->buf, s->n, (unsigned long long)s->st.st_size, env, err, sizeof err) == 0) {
		if (strcmp(env->id, id) == 0)
			return 0;
		spool_env_free(env);
	} else if (s->kind == RAW_ENV && env_parse(s->buf, s->n, env, sp->no_history, err, sizeof err) == 0) {
		env->env_file = 1;
		errno = s->st_errno;
		if (strcmp(env->id, id) == 0 &&
		    msg_stat_check(env, s->st_errno ? NULL : &s->st, err, sizeof err) == 0)
			return 0;
		spool_env_free(env);
	}
	/* not the common case: the whole load again, for its error or its damage */
	return spool_env_load(sp, id, env, errbuf, errlen);
}

static void *
ahead_main(void *arg)
{
	struct scan_ahead *a = arg;
	size_t i;

	for (i = 0; i < a->n; i++) {
		struct scan_slot *s = &a->ring[i % SCAN_RING];
		char id[QID_LEN + 1];
		size_t w, free_w = i * 4 + SLOT_FREE;

		if (!a->items[i].has_msg)
			continue;
		if ((w = atomic_load(&s->word)) < free_w) {
			/* SCAN_RING ahead of the caller: wait for it to free the slot */
			pthread_mutex_lock(&a->mtx);
			atomic_store(&a->helper_waits, 1);
			while ((w = atomic_load(&s->word)) < free_w)
				pthread_cond_wait(&a->space, &a->mtx);
			atomic_store(&a->helper_waits, 0);
			pthread_mutex_unlock(&a->mtx);
		}
		/* a later item's word: the caller read this one itself and went on */
		if (w != free_w || !atomic_compare_exchange_strong(&s->word, &w, i * 4 + SLOT_AHEAD))
			continue;
		qid_of_key(a->items[i].key, id);
		raw_fetch(a->sp, id, a->items[i].has_env, s);
		atomic_store(&s->word, i * 4 + SLOT_DONE);
	}
	return NULL;
}

/* Take item k's slot from FREE and read it: 0 when another thread has it. */
static int
ahead_claim(struct scan_ahead *a, size_t k)
{
	struct scan_slot *s = &a->ring[k % SCAN_RING];
	size_t w = k * 4 + SLOT_FREE;
	char id[QID_LEN + 1];

	if (!atomic_compare_exchange_strong(&s->word, &w, k * 4 + SLOT_MINE))
		return 0;
	qid_of_key(a->items[k].key, id);
	raw_fetch(a->sp, id, a->items[k].has_env, s);
	atomic_store(&s->word, k * 4 + SLOT_DONE);
	return 1;
}

/* The caller's part of item k: the slot read, by the read-ahead or by itself. */
static struct scan_slot *
ahead_take(struct scan_ahead *a, size_t k)
{
	struct scan_slot *s = &a->ring[k % SCAN_RING];
	size_t next = k + 1, end = k + SCAN_RING < a->n ? k + SCAN_RING : a->n;

	if (ahead_claim(a, k))
		return s;
	/*
	 * Being read by the read-ahead: a few system calls' time, spent
	 * reading the next items it has not reached (their slots are theirs
	 * already: each is at most SCAN_RING past k).
	 */
	while (atomic_load(&s->word) != k * 4 + SLOT_DONE) {
		while (next < end && !(a->items[next].has_msg && ahead_claim(a, next)))
			next++;
		if (next == end)
			sched_yield();
	}
	return s;
}

/* The caller is done with item k: its slot is item k + SCAN_RING's. */
static void
ahead_free(struct scan_ahead *a, size_t k)
{
	atomic_store(&a->ring[k % SCAN_RING].word, (k + SCAN_RING) * 4 + SLOT_FREE);
	if (atomic_load(&a->helper_waits)) {
		pthread_mutex_lock(&a->mtx);
		pthread_cond_signal(&a->space);
		pthread_mutex_unlock(&a->mtx);
	}
}

int
spool_scan(struct spool *sp, int flags, spool_scan_fn fn, void *arg)
{
	DIR *d;
	struct dirent *de;
	uint64_t *envs = NULL, *msgs = NULL;
	size_t nenv = 0, nmsg = 0, envcap = 0, msgcap = 0, i, j;
	int fd = fcntl(sp->queuefd, F_DUPFD_CLOEXEC, 0), visited = 0;
	int remove_orphans = flags & SPOOL_SCAN_REMOVE_ORPHANS;

	if (fd == -1)
		return -1;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return -1;
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		char id[QID_LEN + 1];
		if (len != QID_LEN + 4)
			continue;
		memcpy(id, de->d_name, QID_LEN);
		id[QID_LEN] = '\0';
		if (!spool_qid_valid(id))
			continue;
		if (strcmp(de->d_name + QID_LEN, ".env") == 0)
			keys_add(&envs, &nenv, &envcap, qid_key(id));
		else if (strcmp(de->d_name + QID_LEN, ".msg") == 0)
			keys_add(&msgs, &nmsg, &msgcap, qid_key(id));
	}
	closedir(d);
	if (nenv > 1)
		qsort(envs, nenv, sizeof *envs, cmp_keys);
	if (nmsg > 1)
		qsort(msgs, nmsg, sizeof *msgs, cmp_keys);
	/* the daemon keeps no history in memory: its load does not read it */
	sp->no_history = (flags & SPOOL_SCAN_NO_HISTORY) != 0;
	if (flags & SPOOL_SCAN_REMOVE_ORPHANS) {
		/* the daemon's start: every id in queue/ is known from here on (spool_qid_new()) */
		if (nmsg > 0 && msgs[nmsg - 1] > sp->qid_high)
			sp->qid_high = msgs[nmsg - 1];
		if (nenv > 0 && envs[nenv - 1] > sp->qid_high)
			sp->qid_high = envs[nenv - 1];
		sp->qid_known = 1;
	}

	/* Every id in order, from both lists merged. */
	struct scan_item *items = xreallocarray(NULL, nmsg + nenv + 1, sizeof *items);
	size_t n = 0, k;
	for (i = 0, j = 0; i < nmsg || j < nenv; n++) {
		int c = i == nmsg ? 1 : j == nenv ? -1 : cmp_keys(&msgs[i], &envs[j]);

		items[n].key = c <= 0 ? msgs[i] : envs[j];
		items[n].has_msg = c <= 0;
		items[n].has_env = c >= 0;
		if (c <= 0)
			i++;
		if (c >= 0)
			j++;
	}
	free(envs);
	free(msgs);

	struct scan_ahead a = { .sp = sp, .items = items, .n = n };
	pthread_t helper;
	int ahead = 0;
	if (n >= SCAN_AHEAD_MIN) {
		a.ring = xreallocarray(NULL, SCAN_RING, sizeof *a.ring);
		for (k = 0; k < SCAN_RING; k++)
			atomic_init(&a.ring[k].word, k * 4 + SLOT_FREE);
		atomic_init(&a.helper_waits, 0);
		pthread_mutex_init(&a.mtx, NULL);
		pthread_cond_init(&a.space, NULL);
		ahead = pthread_create(&helper, NULL, ahead_main, &a) == 0;
		if (!ahead) {
			pthread_mutex_destroy(&a.mtx);
			pthread_cond_destroy(&a.space);
		}
	}

	for (k = 0; k < n; k++) {
		char id[QID_LEN + 1];
		int has_msg = items[k].has_msg, has_env = items[k].has_env;
		struct spool_env env;
		char err[256];
		int rc, err_no;

		qid_of_key(items[k].key, id);
		if (ahead && has_msg) {
			errno = 0;
			rc = raw_load(sp, id, ahead_take(&a, k), &env, err, sizeof err);
			err_no = errno;
		} else {
			if (!has_msg && remove_orphans && spool_env_read(sp, id, &env, err, sizeof err) == 0) {
				/*
				 * An .env that records a tail, without its .msg: a removal
				 * cut short (it unlinks the .msg first), or content deleted
				 * by hand.  Either way there is nothing left to deliver.
				 */
				unsigned long long tail = env.tail;
				spool_env_free(&env);
				if (tail != 0) {
					char name[64];
					name_of(name, sizeof name, id, ".env");
					if (unlinkat(sp->queuefd, name, 0) == 0)
						log_warnx("%s: envelope without content (a removal cut short by a crash, "
						    "or the content deleted): removed", id);
					goto next;
				}
			}
			errno = 0;
			rc = spool_env_load(sp, id, &env, err, sizeof err);
			err_no = errno;
		}
		if (rc == -1) {
			/* a .msg with neither .env nor tail: cut short, or a submission a crash interrupted */
			if (has_msg && !has_env && err_no == ENOENT && remove_orphans)
				quarantine_msg(sp, id);
			goto next;	/* or removed meanwhile */
		}
		visited++;
		if (fn(&env, arg) != 1)
			spool_env_free(&env);
next:
		if (ahead)
			ahead_free(&a, k);
	}
	if (ahead) {
		pthread_join(helper, NULL);
		pthread_mutex_destroy(&a.mtx);
		pthread_cond_destroy(&a.space);
	}
	free(a.ring);
	free(items);
	sp->no_history = 0;
	return visited;
}

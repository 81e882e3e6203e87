/*
 * pickup: see pickup.h.
 *
 * Each drop is parsed, its content normalised to CRLF lines and written
 * to a spool transaction after a Received: field naming the drop's owner,
 * and committed like any submission; only once
 * the committer reports it durable is the drop file removed.  A crash in
 * between leaves both; the queued message's envelope names its drop
 * (spool.h, "drop"), and at the next start a drop a loaded message names
 * is removed instead of imported again (queue_loaded_drop()): imported
 * once, never lost.
 *
 * A drop is hostile input (see maildrop.h): it is read with a bound,
 * never by its claimed size, and the daemon's max_message_size holds for
 * it as for any submission.  What cannot be imported (not a drop, a
 * garbled header or address, content over max_message_size or with a
 * NUL octet, a symbolic link, a hard link or other non-file) is moved to
 * spool_dir/quarantine/ with one log line and never stops the daemon;
 * quarantine/ is kept within a count and a size, the oldest removed
 * first.  The sender of a well-formed drop over max_message_size is sent
 * a delivery status notification, as a listener's 552 would have told
 * it.  Partial drops (".tmp.*") left by a writer that died are removed
 * after a grace period, at start and on each scan.
 */
#include "config.h"

#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "addr.h"
#include "bounce.h"
#include "commit.h"
#include "enqueue.h"
#include "daemon.h"
#include "local.h"
#include "log.h"
#include "metrics.h"
#include "pickup.h"
#include "received.h"
#include "queue.h"
#include "smtpd.h"
#include "spool/maildrop.h"
#include "util.h"
#include "xmalloc.h"

#define RESCAN_SECONDS 60
#define RETRY_SECONDS  3	/* after an import the spool refused (full disk) */
#define READ_CHUNK     (64 * 1024)	/* content is normalised and stored in slices of this */
#define MSG_HEADER_MAX (256 * 1024)	/* as smtpd: a longer header section is stored untouched */
#define TMP_GRACE_SECONDS 3600		/* a ".tmp.*" drop unchanged this long is abandoned */
#define TMP_FUTURE_SLACK  300		/* an mtime this far ahead is not believed */
#define QUARANTINE_MAX_FILES 200	/* quarantine/ keeps at most this many entries ... */
#define QUARANTINE_MAX_BYTES (64ULL * 1024 * 1024)	/* ... and this much disk; the oldest go first */

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
	int refused;                /* a stub for the notice of a drop over max_message_size */
	struct stat st;             /* refused: the drop, for the quarantine's log line */
	unsigned long long max;     /* refused: the limit it broke */
};

/*
 * Names already reported (a drop that cannot be moved to quarantine, a
 * read error, a leftover that cannot be removed): tried again on every
 * scan, but logged once, not once a minute.  An entry is forgotten when
 * a complete scan no longer finds its name, so a new file of the same
 * name is reported again.
 */
struct noted {
	char *name;
	int seen;
	struct noted *next;
};
static struct noted *noted;

static int
note_first(const char *name)
{
	for (struct noted *n = noted; n != NULL; n = n->next)
		if (strcmp(n->name, name) == 0)
			return 0;
	struct noted *n = xcalloc(1, sizeof *n);
	n->name = xstrdup(name);
	n->seen = 1;
	n->next = noted;
	noted = n;
	return 1;
}

static void
note_forget(const char *name)
{
	for (struct noted **pp = &noted; *pp != NULL; pp = &(*pp)->next) {
		if (strcmp((*pp)->name, name) == 0) {
			struct noted *n = *pp;
			*pp = n->next;
			free(n->name);
			free(n);
			return;
		}
	}
}

static void
note_seen(const char *name)
{
	for (struct noted *n = noted; n != NULL; n = n->next)
		if (strcmp(n->name, name) == 0)
			n->seen = 1;
}

/* After a complete scan: forget the names it did not find; mark the rest for the next one. */
static void
note_sweep(void)
{
	for (struct noted **pp = &noted; *pp != NULL;) {
		struct noted *n = *pp;
		if (!n->seen) {
			*pp = n->next;
			free(n->name);
			free(n);
		} else {
			n->seen = 0;
			pp = &n->next;
		}
	}
}

/* An entry of quarantine/, for quarantine_trim(). */
struct qent {
	char name[256];
	struct timespec ctime;
	unsigned long long bytes;
	int isdir;
};

static int
qent_older(const void *a, const void *b)
{
	const struct qent *x = a, *y = b;

	if (x->ctime.tv_sec != y->ctime.tv_sec)
		return x->ctime.tv_sec < y->ctime.tv_sec ? -1 : 1;
	if (x->ctime.tv_nsec != y->ctime.tv_nsec)
		return x->ctime.tv_nsec < y->ctime.tv_nsec ? -1 : 1;
	return strcmp(x->name, y->name);
}

/*
 * Keep quarantine/ within QUARANTINE_MAX_FILES and QUARANTINE_MAX_BYTES
 * (blocks on disk: a sparse file costs what it occupies): whatever a
 * drop's writer sends there must not fill the spool's file system.  The
 * oldest go first, by the time they were moved in (ctime: set by the
 * rename, and not one a drop's owner can forge, unlike mtime); each
 * removal is one log line.
 */
static void
quarantine_trim(void)
{
	struct qent *ents = NULL;
	size_t n = 0, cap = 0, i;
	unsigned long long bytes = 0;
	struct dirent *de;
	struct stat st;
	DIR *d;
	int qfd, fd;

	qfd = openat(D->spool.dirfd, "quarantine", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (qfd == -1)
		return;
	if ((fd = dup(qfd)) == -1 || (d = fdopendir(fd)) == NULL) {
		if (fd != -1)
			close(fd);
		close(qfd);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (fstatat(qfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == -1)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			ents = xreallocarray(ents, cap, sizeof *ents);
		}
		strlcpy_mr(ents[n].name, de->d_name, sizeof ents[n].name);
		ents[n].ctime = st.st_ctim;
		ents[n].bytes = (unsigned long long)st.st_blocks * 512;
		ents[n].isdir = S_ISDIR(st.st_mode);
		bytes += ents[n].bytes;
		n++;
	}
	closedir(d);
	if (n > QUARANTINE_MAX_FILES || bytes > QUARANTINE_MAX_BYTES) {
		qsort(ents, n, sizeof *ents, qent_older);
		for (i = 0; i < n && (n - i > QUARANTINE_MAX_FILES || bytes > QUARANTINE_MAX_BYTES); i++) {
			if (unlinkat(qfd, ents[i].name, ents[i].isdir ? AT_REMOVEDIR : 0) == -1) {
				log_warn("%s/quarantine/%s: cannot remove", D->spool.dir, ents[i].name);
				continue;
			}
			bytes -= ents[i].bytes;
			log_warnx("%s/quarantine/%s: removed, the oldest of a quarantine over its limit "
			    "(%d files, %llu MiB)", D->spool.dir, ents[i].name, QUARANTINE_MAX_FILES,
			    QUARANTINE_MAX_BYTES >> 20);
		}
	}
	free(ents);
	close(qfd);
}

/*
 * Move a drop that cannot be imported to spool_dir/quarantine/ under its
 * own name (NAME.1, NAME.2, ... when that is taken: nothing there is
 * overwritten), in one log line that names it, its owner and its size.
 * Once moved it is out of the maildrop, so no later scan reports it again;
 * when it cannot be moved it is tried again on each scan, reported once.
 * Returns 0 when moved, -1 when not.
 */
static int
quarantine(const char *name, const struct stat *st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
quarantine(const char *name, const struct stat *st, const char *fmt, ...)
{
	char why[512], qname[256];
	va_list ap;
	int qfd, rc = -1, i;

	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	if (mkdirat(D->spool.dirfd, "quarantine", 0700) == -1 && errno != EEXIST) {
		if (note_first(name))
			log_warn("maildrop/%s: %s, but cannot create %s/quarantine", name, why, D->spool.dir);
		return -1;
	}
	qfd = openat(D->spool.dirfd, "quarantine", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	for (i = 0; qfd != -1 && i < 100; i++) {
		if (i == 0)
			strlcpy_mr(qname, name, sizeof qname);
		else
			snprintf(qname, sizeof qname, "%.240s.%d", name, i);
		rc = renameat2(dropfd, name, qfd, qname, RENAME_NOREPLACE);
		if (rc == -1 && errno == EINVAL)	/* a file system without RENAME_NOREPLACE */
			rc = renameat(dropfd, name, qfd, qname);
		if (rc == 0 || errno != EEXIST)
			break;
	}
	if (rc == -1) {
		if (errno != ENOENT && note_first(name))
			log_warn("maildrop/%s: %s, but cannot move it to %s/quarantine", name, why, D->spool.dir);
	} else {
		note_forget(name);
		log_warnx("maildrop/%s: %s, uid=%lu, size=%llu; moved to %s/quarantine/%s", name, why,
		    (unsigned long)st->st_uid, (unsigned long long)st->st_size, D->spool.dir, qname);
	}
	if (qfd != -1)
		close(qfd);
	if (rc == 0)
		quarantine_trim();
	return rc;
}

/*
 * The stub of a drop over max_message_size is on disk: each recipient's
 * outcome is logged, the drop goes to quarantine, and bounce_finish()
 * queues the notice and removes the stub.  A drop that cannot be moved
 * to quarantine is removed: left in place it would be refused, and its
 * sender told, again at every scan.
 */
static void
refused_committed(struct commit_req *req, struct pickup_ctx *ctx)
{
	struct spool_env *env = &req->env;
	char orig[600];
	size_t i;

	for (i = 0; i < env->nrcpt; i++) {
		const struct spool_rcpt *r = &env->rcpts[i];
		if (r->orig != NULL && strcmp(r->orig, r->addr) != 0)
			snprintf(orig, sizeof orig, ", orig_to=<%s>", r->orig);
		else
			orig[0] = '\0';
		log_qid(LOG_WARNING, env->id, "bounced", "to=<%s>%s, relay=none, tls=none, delay=0.00, "
		    "attempts=1, dsn=5.3.4, status=bounced (%s)", r->addr, orig, r->last_reply);
	}
	D->stats.bounced += env->nrcpt;
	if (quarantine(ctx->name, &ctx->st, "larger than max_message_size (%llu)", ctx->max) == -1 &&
	    unlinkat(dropfd, ctx->name, 0) == 0)
		log_warnx("maildrop/%s: removed instead; its sender is notified", ctx->name);
	bounce_finish(env);
}

static void
on_committed(struct commit_req *req, void *arg)
{
	struct pickup_ctx *ctx = arg;

	if (req->rc == 0 && ctx->refused) {
		refused_committed(req, ctx);
	} else if (req->rc == 0) {
		if (unlinkat(dropfd, ctx->name, 0) == -1 && errno != ENOENT)
			log_warn("maildrop/%s: imported, but cannot remove it", ctx->name);
		fsync_dir_fd(dropfd);
		D->stats.accepted++;	/* enqueue.c logged it queued, and queues it once this returns */
	} else {
		log_qid(LOG_ERR, req->env.id, NULL, "cannot import maildrop/%s: %s; will try again",
		    ctx->name, req->err);
		retry_soon();
	}
	busy_del(ctx->name);
	free(ctx->name);
	free(ctx);
}

/*
 * Content through the CRLF normaliser into the spool, in slices; -1 as
 * soon as it holds a NUL or grows past max_message_size (the caller then
 * stops reading).
 */
static int
feed(struct spool_txn *txn, struct maildrop_crlf *cs, const char *p, size_t len)
{
	static char out[2 * READ_CHUNK];
	unsigned long long max = D->conf->max_message_size;

	while (len > 0) {
		size_t take = len < READ_CHUNK ? len : READ_CHUNK;
		spool_txn_write(txn, out, maildrop_crlf_feed(cs, p, take, out));
		if (cs->nul || (max && cs->out > max))
			return -1;
		p += take;
		len -= take;
	}
	return 0;
}

/* strict_addresses holds for a drop as for the listeners (their 553): 1 and err when it refuses one. */
static int
strict_refuses(const struct maildrop_env *de, char *err, size_t errlen)
{
	const char *why;
	size_t i;

	if (!D->conf->strict_addresses)
		return 0;
	if (de->sender[0] && addr_spec_check(de->sender, ADDR_LOCAL_OK, &why) == -1) {
		snprintf(err, errlen, "bad sender address: %s (strict_addresses)", why);
		return 1;
	}
	for (i = 0; i < de->nrcpt; i++) {
		if (addr_spec_check(de->rcpts[i], ADDR_LOCAL_OK, &why) == -1) {
			snprintf(err, errlen, "bad address of recipient %zu: %s (strict_addresses)", i + 1, why);
			return 1;
		}
	}
	return 0;
}

/* The envelope of a drop, as for any local submission (the sender and header rewritten by the same policy). */
static void
env_from_drop(struct spool_env *env, const struct maildrop_env *de, const char *id,
    const struct timeval *arrival, uid_t uid)
{
	struct rewrite_policy pol = conf_rewrite_policy(D->conf);
	size_t i;

	memcpy(env->id, id, sizeof env->id);
	env->arrival = arrival->tv_sec;
	env->arrival_usec = arrival->tv_usec;
	env->sender = rewrite_sender(&pol, de->sender);
	env->uid = uid;	/* the submitter: the file's owner */
	strlcpy_mr(env->via, "maildrop", sizeof env->via);
	env->eightbit = de->eightbit;
	env->smtputf8 = de->smtputf8;
	strlcpy_mr(env->ret, de->ret, sizeof env->ret);
	env->envid = de->envid[0] ? xstrdup(de->envid) : NULL;
	for (i = 0; i < de->nrcpt; i++)
		local_add_rcpt(env, de->rcpts[i]);
	for (i = 0; i < env->nrcpt; i++)
		strlcpy_mr(env->rcpts[i].notify, de->notify, sizeof env->rcpts[i].notify);
}

/* Hand a request to the committer; the drop is busy (not picked again) until it answers. */
static void
submit(struct commit_req *req, const char *name, struct pickup_ctx *ctx)
{
	struct busy *b = xcalloc(1, sizeof *b);
	char who[32];

	ctx->name = xstrdup(name);
	b->name = xstrdup(name);
	b->next = busy;
	busy = b;
	snprintf(who, sizeof who, "uid=%lu", (unsigned long)req->env.uid);
	enqueue_commit(req, who, ctx->refused ? ENQ_FINISHED : ENQ_QUEUE, on_committed, ctx);
}

/*
 * A drop over max_message_size whose header is well formed: as Postfix's
 * cleanup does, the sender is told (a drop is what sendmail left when the
 * daemon was down: its exit 0 told nobody anything).  A stub holding only
 * the message's header section is committed with every recipient failed
 * "552 5.3.4", so that the notice is made and queued, with the headers,
 * by bounce_finish() like any other (NOTIFY, the null sender and
 * double_bounce obeyed); the drop goes to quarantine once the stub is
 * durable.  A crash before that leaves the drop to be refused again, and
 * a crash between the two leaves both: the sender may be told twice,
 * never not at all.
 */
static void
refuse_oversize(const char *name, const struct stat *st, const struct maildrop_env *de,
    const char *hdr, size_t hlen, unsigned long long max)
{
	struct maildrop_crlf cs = { 0 };
	struct timeval arrival;
	struct commit_req *req;
	struct pickup_ctx *ctx;
	char id[QID_LEN + 1], reply[128], end[2];
	time_t now = time(NULL);
	size_t i;

	req = xcalloc(1, sizeof *req);
	if (enqueue_begin(id, &arrival, &req->txn) == -1) {
		log_err("maildrop/%s: cannot create a queue file; will try again", name);
		retry_soon();
		free(req);
		return;
	}
	feed(&req->txn, &cs, hdr, hlen);
	spool_txn_write(&req->txn, end, maildrop_crlf_end(&cs, end));
	spool_txn_write(&req->txn, "\r\n", 2);	/* the empty line: no body */
	env_from_drop(&req->env, de, id, &arrival, st->st_uid);
	req->env.size = req->txn.size;
	strlcpy_mr(req->env.ret, "HDRS", sizeof req->env.ret);	/* the stub is no message to return */
	snprintf(reply, sizeof reply, "552 5.3.4 Message size exceeds the limit of %llu bytes", max);
	for (i = 0; i < req->env.nrcpt; i++) {
		struct spool_rcpt *r = &req->env.rcpts[i];
		r->status = RCPT_FAILED;
		r->attempts = 1;
		r->last_attempt = now;
		free(r->last_reply);
		r->last_reply = xstrdup(reply);
		spool_env_add_attempt(&req->env, now, (unsigned)i, "bounced", "none", reply);
	}
	ctx = xcalloc(1, sizeof *ctx);
	ctx->refused = 1;
	ctx->st = *st;
	ctx->max = max;
	submit(req, name, ctx);
}

/*
 * The Received: field, first in the stored message as for the listeners:
 * the drop's owner (the submitting uid) and its login, "with local".  It
 * counts in cs->out, so towards max_message_size, as on the listeners.
 */
static void
put_received(struct spool_txn *txn, struct maildrop_crlf *cs, const struct maildrop_env *de,
    const char *id, const struct timeval *arrival, uid_t uid)
{
	struct received_from from = { .local = 1, .uid = uid, .with = "local" };
	struct passwd *pw = getpwuid(uid);
	char *f;
	size_t n;

	if (pw != NULL)
		from.login = pw->pw_name;
	f = received_field(&from, D->conf->hostname, PACKAGE_VERSION, id,
	    de->nrcpt == 1 ? de->rcpts[0] : NULL, arrival->tv_sec);
	n = strlen(f);
	spool_txn_write(txn, f, n);
	cs->out += n;
	free(f);
}

/*
 * Import one drop.  Nothing is sized by what the file claims: at most
 * MAILDROP_HEADER_MAX + MSG_HEADER_MAX octets are held (the drop's
 * header, then the message's header section for the address rewriting),
 * the rest is streamed into a spool transaction, and the daemon's
 * max_message_size is applied to the content as stored, whatever the
 * writer's configuration said.  A drop that cannot be imported is
 * quarantined; an I/O error leaves it for the next scan.
 */
static void
import(const char *name)
{
	static char chunk[READ_CHUNK];
	struct stat st;
	struct maildrop_env de;
	struct spool_txn txn;
	struct maildrop_crlf cs = { 0 };
	struct timeval arrival;
	char err[256], id[QID_LEN + 1];
	unsigned long long max = D->conf->max_message_size, got;
	size_t off, cap, clen, hl, hsec, nl = 0;
	char *buf, *c, *nh = NULL;
	const char *qid;
	uid_t submitter;
	ssize_t n;
	int fd, eof, bad, complete;

	if ((qid = queue_loaded_drop(name, &submitter)) != NULL &&
	    fstatat(dropfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
	    st.st_uid == submitter) {
		/* committed before a crash kept it from being removed: already queued, not again */
		if (unlinkat(dropfd, name, 0) == -1 && errno != ENOENT)
			log_warn("maildrop/%s: already queued as %s, but cannot remove it", name, qid);
		else {
			fsync_dir_fd(dropfd);
			log_info("maildrop/%s: already queued as %s (queued before a crash); removed", name, qid);
		}
		return;
	}
	fd = openat(dropfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
	if (fd == -1) {
		int e = errno;
		if (e == ENOENT)
			return;
		if (fstatat(dropfd, name, &st, AT_SYMLINK_NOFOLLOW) == -1)
			memset(&st, 0, sizeof st);
		if (e == ELOOP)
			quarantine(name, &st, "not a valid drop (a symbolic link)");
		else if (e == EACCES || e == EPERM || e == ENXIO)
			quarantine(name, &st, "not a valid drop (cannot be read: %s)", strerror(e));
		else if (note_first(name))
			log_warnx("maildrop/%s: %s; will try again", name, strerror(e));
		return;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		close(fd);
		if (fstatat(dropfd, name, &st, AT_SYMLINK_NOFOLLOW) == -1)
			return;
		quarantine(name, &st, "not a valid drop (not a regular file)");
		return;
	}
	/*
	 * The client writes a new file and renames it: a second name means
	 * someone linked a file in, maybe one the daemon's group may read
	 * and the linker may not (where protected_hardlinks is off).
	 */
	if (st.st_nlink != 1) {
		close(fd);
		quarantine(name, &st, "not a valid drop (a file with %lu names)", (unsigned long)st.st_nlink);
		return;
	}
	cap = MAILDROP_HEADER_MAX + MSG_HEADER_MAX;
	if ((unsigned long long)st.st_size < cap)
		cap = (size_t)st.st_size + 1;	/* one more: a file that grew is still seen to go on */
	buf = xmalloc(cap);
	n = read_full(fd, buf, cap);
	if (n == -1) {
		if (note_first(name))
			log_warn("maildrop/%s: read error; will try again", name);
		goto out;
	}
	eof = (size_t)n < cap;
	got = (unsigned long long)n;
	if (maildrop_parse(buf, (size_t)n, &de, &off, err, sizeof err) == -1) {
		quarantine(name, &st, "not a valid drop (%s)", err);
		goto out;
	}
	if (strict_refuses(&de, err, sizeof err)) {
		quarantine(name, &st, "not a valid drop (%s)", err);
		goto out_env;
	}
	c = buf + off;
	clen = (size_t)n - off;
	if (memchr(c, '\0', clen) != NULL) {
		quarantine(name, &st, "a NUL octet in the message (RFC 5321 forbids it)");
		goto out_env;
	}
	/*
	 * The message's header section, when it is complete within
	 * MSG_HEADER_MAX (or the whole message is that header): its local
	 * addresses are rewritten as for the submit socket, and a refusal
	 * notice returns it.  A longer one is stored as it came, as smtpd does.
	 */
	hl = rewrite_header_len(c, clen, clen < MSG_HEADER_MAX ? clen : MSG_HEADER_MAX, &complete);
	hsec = complete || (eof && clen <= MSG_HEADER_MAX) ? hl : 0;
	/* certainly too large (line ends only grow): refused without reading the rest */
	if (max && (unsigned long long)st.st_size > off + max) {
		refuse_oversize(name, &st, &de, c, hsec, max);
		goto out_env;
	}
	if (enqueue_begin(id, &arrival, &txn) == -1) {
		log_err("maildrop/%s: cannot create a queue file; will try again", name);
		retry_soon();
		goto out_env;
	}
	put_received(&txn, &cs, &de, id, &arrival, st.st_uid);
	if (hsec > 0) {
		struct rewrite_policy pol = conf_rewrite_policy(D->conf);
		nh = rewrite_header_block(&pol, c, hsec, &nl, NULL);
	}
	if (nh != NULL)
		bad = feed(&txn, &cs, nh, nl) == -1 || feed(&txn, &cs, c + hsec, clen - hsec) == -1;
	else
		bad = feed(&txn, &cs, c, clen) == -1;
	free(nh);
	/* the rest in pieces, into chunk: buf still holds the header section for a refusal */
	while (!bad && !eof) {
		n = read_full(fd, chunk, sizeof chunk);
		if (n == -1) {
			if (note_first(name))
				log_warn("maildrop/%s: read error; will try again", name);
			spool_txn_abort(&txn);
			goto out_env;
		}
		got += (unsigned long long)n;
		eof = (size_t)n < sizeof chunk;
		bad = feed(&txn, &cs, chunk, (size_t)n) == -1;
	}
	if (!bad) {
		char end[2];
		spool_txn_write(&txn, end, maildrop_crlf_end(&cs, end));
		bad = max && cs.out > max;
	}
	if (bad) {
		spool_txn_abort(&txn);
		if (got > (unsigned long long)st.st_size)
			st.st_size = (off_t)got;	/* it grew while read: say what was seen */
		if (cs.nul)
			quarantine(name, &st, "a NUL octet in the message (RFC 5321 forbids it)");
		else
			refuse_oversize(name, &st, &de, c, hsec, max);
		goto out_env;
	}
	struct commit_req *req = xcalloc(1, sizeof *req);
	spool_txn_filter(&txn, smtpd_linefix, id);
	req->txn = txn;
	req->env.size = txn.size;
	env_from_drop(&req->env, &de, id, &arrival, st.st_uid);
	req->env.drop = xstrdup(name);	/* a crash before the drop is removed: not imported twice */
	/* the octets decide, not the drop's claim (as on the listeners) */
	req->env.eightbit |= cs.eightbit;
	note_forget(name);
	submit(req, name, xcalloc(1, sizeof(struct pickup_ctx)));
out_env:
	maildrop_env_free(&de);
out:
	close(fd);
	free(buf);
}

/*
 * A ".tmp.*" file is a drop still being written, or one whose writer was
 * killed or refused (a file size limit, a full disk) before the rename.
 * The writer holds it for the moment of one write and fsync, so one left
 * unchanged for TMP_GRACE_SECONDS is removed: it would never be completed.
 * An mtime further in the future than TMP_FUTURE_SLACK (the drop's owner
 * may set it) counts as stale too, so none is kept forever.
 */
static void
tmp_expire(const char *name, time_t now)
{
	struct stat st;

	if (fstatat(dropfd, name, &st, AT_SYMLINK_NOFOLLOW) == -1)
		return;
	if (st.st_mtime > now - TMP_GRACE_SECONDS && st.st_mtime <= now + TMP_FUTURE_SLACK)
		return;
	if (unlinkat(dropfd, name, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) == -1) {
		if (errno != ENOENT && note_first(name))
			log_warn("maildrop/%s: cannot remove this partial drop", name);
		return;
	}
	note_forget(name);
	log_warnx("maildrop/%s: removed a partial drop, uid=%lu, size=%llu, unchanged for %ld minutes",
	    name, (unsigned long)st.st_uid, (unsigned long long)st.st_size,
	    st.st_mtime <= now ? (long)((now - st.st_mtime) / 60) : 0L);
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
	time_t now = time(NULL);
	while ((de = readdir(d)) != NULL) {
		note_seen(de->d_name);
		if (strncmp(de->d_name, ".tmp.", 5) == 0)
			tmp_expire(de->d_name, now);
		if (de->d_name[0] == '.' || is_busy(de->d_name))
			continue;	/* ".tmp.*" are still being written */
		import(de->d_name);
	}
	closedir(d);
	note_sweep();
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
	quarantine_trim();
	scan();
	queue_loaded_drops_free();	/* asked by the first scan only: later drops are new */
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
	while (noted != NULL)
		note_forget(noted->name);
}

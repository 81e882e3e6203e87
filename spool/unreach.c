/*
 * unreach: the tries at unreached smarthosts, kept across a stop.  See unreach.h.
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "unreach.h"
#include "util.h"
#include "xmalloc.h"

#define UNREACH_MAGIC   "mailrelay-unreached 1\n"
#define NFIELDS         9
#define RCPT_MAX        1000000ULL
#define ATTEMPTS_MAX    4000000000ULL
#define WHEN_MAX        999999999999ULL         /* 12 digits: the year 33658 */

/* The longest of each string field, with its NUL (spool_rcpt's kind and dsn; a relay; a reply). */
static const size_t str_cap[4] = { 24, 16, 512, 1024 };

struct strs {
	char kind[24], dsn[16], relay[512], reply[1024];
	int have;                   /* the record before was whole: "=" may refer to it */
};

static char *
str_of(struct strs *s, int i)
{
	switch (i) {
	case 0: return s->kind;
	case 1: return s->dsn;
	case 2: return s->relay;
	default: return s->reply;
	}
}

static int
parse_num(const char *f, size_t flen, unsigned long long max, unsigned long long *out)
{
	char num[24];

	if (flen == 0 || flen >= sizeof num || memchr(f, '\0', flen) != NULL)
		return -1;
	memcpy(num, f, flen);
	num[flen] = '\0';
	return parse_ull(num, max, out);
}

/* One record's fields (after "tried"): into rec, its strings into next (from prev for "="). */
static int
parse_tried(const char **f, const size_t *flen, const struct strs *prev, struct strs *next,
    struct unreach_rec *rec)
{
	unsigned long long v;
	int i;

	if (flen[0] != QID_LEN)
		return -1;
	memcpy(rec->id, f[0], QID_LEN);
	rec->id[QID_LEN] = '\0';
	if (!spool_qid_valid(rec->id))
		return -1;
	if (parse_num(f[1], flen[1], RCPT_MAX, &v) == -1)
		return -1;
	rec->rcpt = (unsigned)v;
	if (parse_num(f[2], flen[2], ATTEMPTS_MAX, &v) == -1)
		return -1;
	rec->attempts = (unsigned)v;
	if (parse_num(f[3], flen[3], WHEN_MAX, &v) == -1)
		return -1;
	rec->when = (time_t)v;
	for (i = 0; i < 4; i++) {
		const char *s = f[4 + i];
		size_t n = flen[4 + i];
		char *dst = str_of(next, i);
		if (n == 1 && s[0] == '=') {
			if (!prev->have)
				return -1;
			memcpy(dst, str_of((struct strs *)prev, i), str_cap[i]);
			continue;
		}
		if (n == 0 || s[0] != ':' || n - 1 >= str_cap[i] || memchr(s, '\0', n) != NULL)
			return -1;
		memcpy(dst, s + 1, n - 1);
		dst[n - 1] = '\0';
	}
	rec->kind = next->kind;
	rec->dsn = next->dsn;
	rec->relay = next->relay;
	rec->reply = next->reply;
	return 0;
}

/*
 * One line, without its LF: 1 with *rec filled when it is a whole record
 * (its strings in *cur, which becomes the next line's "="), 0 when it is
 * not one (skipped: another record's name, or damage).
 */
static int
parse_line(const char *line, size_t llen, struct strs **prev, struct strs **cur, struct unreach_rec *rec)
{
	const char *f[NFIELDS + 1];
	size_t flen[NFIELDS + 1], nf = 0, at = 6;
	struct strs *t;

	if (llen < 6 || memcmp(line, "tried\t", 6) != 0)
		return 0;	/* another record, from a later version */
	/* the fields after "tried": exactly NFIELDS - 1 */
	while (nf <= NFIELDS) {
		const char *tab = memchr(line + at, '\t', llen - at);
		size_t end = tab ? (size_t)(tab - line) : llen;
		f[nf] = line + at;
		flen[nf++] = end - at;
		if (tab == NULL)
			break;
		at = end + 1;
	}
	memset(rec, 0, sizeof *rec);
	if (nf != NFIELDS - 1 || parse_tried(f, flen, *prev, *cur, rec) == -1) {
		(*prev)->have = 0;	/* what "=" would refer to is not known */
		return 0;
	}
	(*cur)->have = 1;
	t = *prev;
	*prev = *cur;
	*cur = t;
	return 1;
}

int
unreach_parse(const char *buf, size_t len, unreach_fn fn, void *arg)
{
	size_t mlen = sizeof UNREACH_MAGIC - 1, pos;
	struct strs *a = xcalloc(2, sizeof *a), *prev = &a[0], *cur = &a[1];

	if (len < mlen || memcmp(buf, UNREACH_MAGIC, mlen) != 0) {
		free(a);
		return -1;
	}
	for (pos = mlen; pos < len; ) {
		const char *line = buf + pos, *nl = memchr(line, '\n', len - pos);
		size_t llen = nl ? (size_t)(nl - line) : len - pos;
		struct unreach_rec rec;

		pos += llen + (nl ? 1 : 0);
		if (nl == NULL)
			break;		/* a last line cut short */
		if (parse_line(line, llen, &prev, &cur, &rec))
			fn(&rec, arg);
	}
	free(a);
	return 0;
}

int
unreach_remove(struct spool *sp)
{
	if (unlinkat(sp->dirfd, UNREACH_FILE, 0) == -1 && errno != ENOENT)
		return -1;
	return 0;
}

struct unreach_out {
	struct spool *sp;
	FILE *f;
	struct strs prev;
};

struct unreach_out *
unreach_begin(struct spool *sp)
{
	struct unreach_out *o;
	FILE *f = spool_state_create(sp, UNREACH_FILE);

	if (f == NULL)
		return NULL;
	o = xcalloc(1, sizeof *o);
	o->sp = sp;
	o->f = f;
	fputs(UNREACH_MAGIC, o->f);
	return o;
}

void
unreach_add(struct unreach_out *o, const struct unreach_rec *r)
{
	const char *s[4] = { r->kind, r->dsn, r->relay, r->reply };
	int i;

	/* what the parser would refuse is not written (replies are sanitized: never the case) */
	for (i = 0; i < 4; i++)
		if (strlen(s[i]) >= str_cap[i] || strpbrk(s[i], "\t\n") != NULL)
			return;
	if (!spool_qid_valid(r->id))
		return;
	fprintf(o->f, "tried\t%s\t%u\t%u\t%lld", r->id, r->rcpt, r->attempts, (long long)r->when);
	for (i = 0; i < 4; i++) {
		char *p = str_of(&o->prev, i);
		if (o->prev.have && strcmp(p, s[i]) == 0)
			fputs("\t=", o->f);
		else {
			fprintf(o->f, "\t:%s", s[i]);
			memcpy(p, s[i], strlen(s[i]) + 1);
		}
	}
	o->prev.have = 1;
	fputc('\n', o->f);
}

int
unreach_commit(struct unreach_out *o)
{
	int rc = spool_state_publish(o->sp, o->f, UNREACH_FILE, 1), saved = errno;

	free(o);
	errno = saved;
	return rc;
}

/* ---- the records read along a scan of the queue ---- */

#define LINE_CAP 2048   /* longer than any whole record */

struct unreach_cursor {
	FILE *f;
	struct strs a[2], *prev, *cur;
	struct unreach_rec rec;     /* the next record not yet passed */
	int have;                   /* rec holds one */
	size_t read;                /* records read */
	char line[LINE_CAP];
};

/* The next whole record into c->rec; 0 at the end of the file. */
static int
cursor_next(struct unreach_cursor *c)
{
	c->have = 0;
	while (c->f != NULL && fgets(c->line, sizeof c->line, c->f) != NULL) {
		size_t llen = strlen(c->line);
		if (llen == 0 || c->line[llen - 1] != '\n') {
			int ch;
			if (feof(c->f))
				break;		/* a last line cut short */
			/* longer than any record: skipped to its end */
			while ((ch = getc(c->f)) != EOF && ch != '\n')
				;
			c->prev->have = 0;
			continue;
		}
		/* a NUL inside the line shortens it: parse_tried() refuses what is left */
		if (parse_line(c->line, llen - 1, &c->prev, &c->cur, &c->rec)) {
			c->have = 1;
			c->read++;
			return 1;
		}
	}
	return 0;
}

struct unreach_cursor *
unreach_open(struct spool *sp)
{
	struct unreach_cursor *c = xcalloc(1, sizeof *c);
	struct stat st;
	int fd = openat(sp->dirfd, UNREACH_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	c->prev = &c->a[0];
	c->cur = &c->a[1];
	if (fd == -1) {
		if (errno == ENOENT)
			return c;	/* none: nothing to add */
		free(c);
		return NULL;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) || (c->f = fdopen(fd, "r")) == NULL) {
		close(fd);
		free(c);
		errno = EINVAL;
		return NULL;
	}
	if (fgets(c->line, sizeof c->line, c->f) == NULL || strcmp(c->line, UNREACH_MAGIC) != 0) {
		fclose(c->f);
		free(c);
		errno = EINVAL;
		return NULL;
	}
	cursor_next(c);
	return c;
}

size_t
unreach_rec_apply(const struct unreach_rec *u, struct spool_env *env)
{
	struct spool_rcpt *r;

	if (env->damaged != NULL || strcmp(u->id, env->id) != 0 || u->rcpt >= env->nrcpt)
		return 0;
	r = &env->rcpts[u->rcpt];
	/* newer than the envelope: more attempts than it counts, the recipient still pending */
	if (r->status != RCPT_PENDING || u->attempts <= r->attempts)
		return 0;
	r->attempts = u->attempts;
	r->last_attempt = u->when;
	free(r->last_reply);
	r->last_reply = xstrdup(u->reply);
	snprintf(r->kind, sizeof r->kind, "%s", u->kind);
	snprintf(r->dsn, sizeof r->dsn, "%s", u->dsn);
	spool_env_add_attempt(env, u->when, u->rcpt, "deferred", u->relay, u->reply);
	return 1;
}

size_t
unreach_apply(struct unreach_cursor *c, struct spool_env *env)
{
	size_t n = 0;

	if (c == NULL)
		return 0;
	/* records of messages before this one are of messages gone since */
	while (c->have && strcmp(c->rec.id, env->id) < 0)
		cursor_next(c);
	while (c->have && strcmp(c->rec.id, env->id) == 0) {
		n += unreach_rec_apply(&c->rec, env);
		cursor_next(c);
	}
	return n;
}

size_t
unreach_read(const struct unreach_cursor *c)
{
	return c != NULL ? c->read : 0;
}

void
unreach_close(struct unreach_cursor *c)
{
	if (c == NULL)
		return;
	if (c->f != NULL)
		fclose(c->f);
	free(c);
}

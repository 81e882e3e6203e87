/*
 * ratewin: the rate_limit windows kept across restarts.  See ratewin.h.
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ratewin.h"
#include "util.h"
#include "xmalloc.h"

#define RATEWIN_MAGIC   "mailrelay-rate 1\n"
#define RATEWIN_MAX     (16 * 1024 * 1024)      /* a larger file is not ours */
#define NAME_MAX_LEN    128
#define MS_MAX          999999999999999ULL      /* 15 digits: the year 33658 */

int
ratewin_parse(const char *buf, size_t len, ratewin_fn fn, void *arg)
{
	size_t mlen = sizeof RATEWIN_MAGIC - 1, pos;

	if (len < mlen || memcmp(buf, RATEWIN_MAGIC, mlen) != 0)
		return -1;
	for (pos = mlen; pos < len; ) {
		const char *line = buf + pos, *nl = memchr(line, '\n', len - pos);
		size_t llen = nl ? (size_t)(nl - line) : len - pos;
		const char *t1, *t2;
		char name[NAME_MAX_LEN + 1], num[16];
		unsigned long long ms;
		size_t nlen;

		pos += llen + (nl ? 1 : 0);
		if (nl == NULL)
			break;		/* a truncated last line: cut off by a crash while writing */
		if (llen < 6 || memcmp(line, "start\t", 6) != 0)
			continue;	/* another record, from a later version */
		t1 = line + 5;
		t2 = memchr(t1 + 1, '\t', llen - 6);
		if (t2 == NULL || t2 == t1 + 1 || (size_t)(t2 - t1 - 1) > NAME_MAX_LEN)
			continue;
		if (memchr(t1 + 1, '\0', (size_t)(t2 - t1 - 1)) != NULL)
			continue;
		nlen = (size_t)(line + llen - t2 - 1);
		if (nlen >= sizeof num || memchr(t2 + 1, '\0', nlen) != NULL)
			continue;
		memcpy(num, t2 + 1, nlen);
		num[nlen] = '\0';
		if (parse_ull(num, MS_MAX, &ms) == -1)
			continue;
		memcpy(name, t1 + 1, (size_t)(t2 - t1 - 1));
		name[t2 - t1 - 1] = '\0';
		fn(name, (long long)ms, arg);
	}
	return 0;
}

int
ratewin_load(struct spool *sp, ratewin_fn fn, void *arg)
{
	struct stat st;
	char *buf;
	ssize_t n;
	int fd = openat(sp->dirfd, RATEWIN_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd == -1)
		return errno == ENOENT ? 0 : -1;
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) || st.st_size > RATEWIN_MAX) {
		close(fd);
		errno = EINVAL;
		return -1;
	}
	buf = xmalloc((size_t)st.st_size + 1);
	n = read_full(fd, buf, (size_t)st.st_size);
	close(fd);
	if (n < 0) {
		free(buf);
		return -1;
	}
	if (ratewin_parse(buf, (size_t)n, fn, arg) == -1) {
		free(buf);
		errno = EINVAL;
		return -1;
	}
	free(buf);
	return 0;
}

struct ratewin_out {
	struct spool *sp;
	FILE *f;
};

struct ratewin_out *
ratewin_begin(struct spool *sp)
{
	struct ratewin_out *o;
	int fd = openat(sp->tmpfd, RATEWIN_FILE, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);

	if (fd == -1)
		return NULL;
	o = xcalloc(1, sizeof *o);
	o->sp = sp;
	o->f = fdopen(fd, "w");
	if (o->f == NULL) {
		close(fd);
		free(o);
		return NULL;
	}
	fputs(RATEWIN_MAGIC, o->f);
	return o;
}

void
ratewin_add(struct ratewin_out *o, const char *name, long long wall_ms)
{
	/* names come from the configuration (letters, digits, - and _), never a TAB or LF */
	if (strpbrk(name, "\t\n") != NULL || strlen(name) > NAME_MAX_LEN)
		return;
	fprintf(o->f, "start\t%s\t%lld\n", name, wall_ms);
}

int
ratewin_commit(struct ratewin_out *o)
{
	int rc = 0, saved = 0;

	if (fflush(o->f) == EOF || ferror(o->f)) {
		rc = -1;
		saved = errno;
	}
	if (fclose(o->f) == EOF && rc == 0) {
		rc = -1;
		saved = errno;
	}
	if (rc == 0 && renameat(o->sp->tmpfd, RATEWIN_FILE, o->sp->dirfd, RATEWIN_FILE) == -1) {
		rc = -1;
		saved = errno;
	}
	if (rc == -1)
		unlinkat(o->sp->tmpfd, RATEWIN_FILE, 0);
	free(o);
	errno = saved;
	return rc;
}

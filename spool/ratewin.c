/*
 * ratewin: the rate_limit windows kept across restarts.  See ratewin.h.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	char *buf;
	size_t len;
	int rc = spool_state_read(sp, RATEWIN_FILE, RATEWIN_MAX, &buf, &len);

	if (rc <= 0)
		return rc;
	rc = ratewin_parse(buf, len, fn, arg);
	free(buf);
	if (rc == -1)
		errno = EINVAL;
	return rc;
}

struct ratewin_out {
	struct spool *sp;
	FILE *f;
};

struct ratewin_out *
ratewin_begin(struct spool *sp)
{
	struct ratewin_out *o;
	FILE *f = spool_state_create(sp, RATEWIN_FILE);

	if (f == NULL)
		return NULL;
	o = xcalloc(1, sizeof *o);
	o->sp = sp;
	o->f = f;
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
	/* not fsynced: see ratewin.h */
	int rc = spool_state_publish(o->sp, o->f, RATEWIN_FILE, 0), saved = errno;

	free(o);
	errno = saved;
	return rc;
}

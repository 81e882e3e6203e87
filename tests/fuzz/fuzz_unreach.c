/*
 * Fuzz target for the file of tries at unreached smarthosts (spool/unreach.c):
 * its parser, its writer's records read back, and the set applied to an
 * envelope.
 * fuzz-sources: spool/unreach.c spool/spool.c lib/xmalloc.c lib/log.c lib/util.c
 *
 * The file sits in the spool and may be damaged: parsing must never read
 * out of bounds.  Oracles:
 *  - a file that is not ours (bad header) yields no record;
 *  - every record has a valid queue id and strings within their bounds,
 *    without TAB or LF;
 *  - the records parsed, written again by the writer and parsed back, are
 *    the same records (the "=" shorthand included);
 *  - applying the records to an envelope of the first record's id never
 *    lowers a recipient's attempts, raises only pending ones, and adds
 *    one attempt record per recipient it updates.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spool/spool.h"
#include "spool/unreach.h"
#include "xmalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define KEEP 16		/* records compared, of each parse */

struct got {
	struct unreach_rec r[KEEP];
	char s[KEEP][4][1025];
	size_t n;
};
static struct got a, b;	/* static: no large allocation per input */

static void
keep(const struct unreach_rec *r, void *arg)
{
	struct got *g = arg;
	const char *s[4] = { r->kind, r->dsn, r->relay, r->reply };
	int i;

	if (!spool_qid_valid(r->id))
		abort();
	for (i = 0; i < 4; i++)
		if (strlen(s[i]) >= 1024 || strpbrk(s[i], "\t\n") != NULL)
			abort();
	if (g->n >= KEEP)
		return;
	g->r[g->n] = *r;
	for (i = 0; i < 4; i++)
		snprintf(g->s[g->n][i], sizeof g->s[g->n][i], "%s", s[i]);
	g->n++;
}

/* The writer's output for the records kept: what unreach_add() prints, to memory. */
static char *
rewrite(const struct got *g, size_t *len)
{
	char *text = NULL;
	FILE *f = open_memstream(&text, len);
	const char *prev[4] = { NULL, NULL, NULL, NULL };
	size_t k;
	int i;

	if (f == NULL)
		abort();
	fputs("mailrelay-unreached 1\n", f);
	for (k = 0; k < g->n; k++) {
		fprintf(f, "tried\t%s\t%u\t%u\t%lld", g->r[k].id, g->r[k].rcpt, g->r[k].attempts,
		    (long long)g->r[k].when);
		for (i = 0; i < 4; i++) {
			if (prev[i] != NULL && strcmp(prev[i], g->s[k][i]) == 0)
				fputs("\t=", f);
			else
				fprintf(f, "\t:%s", g->s[k][i]);
			prev[i] = g->s[k][i];
		}
		fputc('\n', f);
	}
	fclose(f);
	return text;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size ? size : 1), *text;
	size_t len, k;
	int i;

	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);	/* an exact-size copy: a read past the end is caught */
	a.n = b.n = 0;
	if (unreach_parse(buf, size, keep, &a) == -1 && a.n != 0)
		abort();
	text = rewrite(&a, &len);
	if (unreach_parse(text, len, keep, &b) == -1 || b.n != a.n)
		abort();
	for (k = 0; k < a.n; k++) {
		if (strcmp(a.r[k].id, b.r[k].id) != 0 || a.r[k].rcpt != b.r[k].rcpt ||
		    a.r[k].attempts != b.r[k].attempts || a.r[k].when != b.r[k].when)
			abort();
		for (i = 0; i < 4; i++)
			if (strcmp(a.s[k][i], b.s[k][i]) != 0)
				abort();
	}
	free(text);

	/* the records of the first id applied to an envelope: recipients pending, sent, pending */
	if (a.n > 0) {
		static const enum rcpt_status st[3] = { RCPT_PENDING, RCPT_SENT, RCPT_PENDING };
		static const unsigned before[3] = { 1, 1, 5 };
		struct spool_env e;
		size_t n = 0;
		memset(&e, 0, sizeof e);
		memcpy(e.id, a.r[0].id, sizeof e.id);
		e.sender = xstrdup("a@example.org");
		e.nrcpt = 3;
		e.rcpts = xcalloc(3, sizeof *e.rcpts);
		for (k = 0; k < 3; k++) {
			e.rcpts[k].addr = xstrdup("r@example.net");
			e.rcpts[k].last_reply = xstrdup("");
			e.rcpts[k].status = st[k];
			e.rcpts[k].attempts = before[k];
		}
		for (k = 0; k < a.n; k++) {
			struct unreach_rec u = a.r[k];
			u.kind = a.s[k][0];
			u.dsn = a.s[k][1];
			u.relay = a.s[k][2];
			u.reply = a.s[k][3];
			n += unreach_rec_apply(&u, &e);
		}
		if (n != e.nhist)
			abort();
		for (k = 0; k < 3; k++)
			if (e.rcpts[k].attempts < before[k] ||
			    (st[k] != RCPT_PENDING && e.rcpts[k].attempts != before[k]))
				abort();
		spool_env_free(&e);
	}
	free(buf);
	return 0;
}

/*
 * Fuzz target for the spool envelope parser (spool_env_parse), its
 * renderer (spool_env_render), and the reader of a one-file message's
 * tail (spool_tail_parse), the input then taken as a whole queue/ID.msg.
 * fuzz-sources: spool/spool.c lib/xmalloc.c lib/log.c lib/util.c
 *
 * An envelope on disk may be damaged; parsing it must fail cleanly or
 * yield an envelope that keeps the promises of spool.h.  Oracles:
 *  - every failure says why;
 *  - a parsed envelope is never marked damaged (only spool_env_load() does);
 *  - a version 2 envelope that parses, cut before its last line, never
 *    parses: a truncation is never read as fewer recipients;
 *  - rendering a parsed envelope gives an envelope that parses back to the
 *    same id, size, tail, flags and recipients, and renders to the same bytes;
 *  - a tail that reads gives a content size and a tail that add up to the
 *    file's length, its envelope has the id, recipients and no tail record
 *    of its own, and a tail that fails says why.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "spool/spool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_round_trip(const struct spool_env *e)
{
	struct spool_env b;
	char err[256], *r1, *r2;
	size_t l1, l2, i;

	r1 = spool_env_render(e, &l1);
	if (spool_env_parse(r1, l1, &b, err, sizeof err) == -1)
		abort();	/* what we write, we read */
	if (strcmp(b.id, e->id) != 0 || b.nrcpt != e->nrcpt || b.size != e->size ||
	    b.held != e->held || b.eightbit != e->eightbit || b.smtputf8 != e->smtputf8 ||
	    b.warned != e->warned || b.arrival != e->arrival || b.tail != e->tail)
		abort();
	for (i = 0; i < b.nrcpt; i++)
		if (b.rcpts[i].status != e->rcpts[i].status ||
		    b.rcpts[i].attempts != e->rcpts[i].attempts ||
		    b.rcpts[i].reported != e->rcpts[i].reported)
			abort();
	/* a fixpoint after one rendering (fields are cleaned and bounded once) */
	r2 = spool_env_render(&b, &l2);
	if (l1 != l2 || memcmp(r1, r2, l1) != 0)
		abort();
	free(r1);
	free(r2);
	spool_env_free(&b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct spool_env e, c;
	char err[256];
	const char *buf = (const char *)data;
	size_t i, cut;

	log_init("fuzz", LOG_TO_STDERR, LOG_CRIT);
	/* the input as a whole queue/ID.msg: content, then the tail */
	err[0] = '\0';
	if (spool_tail_parse(buf, size, size, &e, err, sizeof err) == 0) {
		if (e.size + e.tail != size || e.tail < SPOOL_FOOT_LEN || !spool_qid_valid(e.id) ||
		    e.nrcpt == 0 || e.damaged != NULL)
			abort();
		check_round_trip(&e);
		spool_env_free(&e);
	} else if (err[0] == '\0')
		abort();
	err[0] = '\0';
	if (spool_env_parse(buf, size, &e, err, sizeof err) == -1) {
		if (err[0] == '\0')
			abort();	/* every failure says why */
		return 0;
	}
	if (!spool_qid_valid(e.id) || e.sender == NULL || e.nrcpt == 0 || e.damaged != NULL)
		abort();
	for (i = 0; i < e.nrcpt; i++) {
		const struct spool_rcpt *r = &e.rcpts[i];
		/* orig is NULL when it is the address itself (one string less per recipient held) */
		if (r->addr == NULL || r->addr[0] == '\0' || r->last_reply == NULL ||
		    (r->orig != NULL && strcmp(r->orig, r->addr) == 0))
			abort();
		if (r->status != RCPT_PENDING && r->status != RCPT_SENT && r->status != RCPT_FAILED)
			abort();
	}
	if (size > 16 && memcmp(buf, "mailrelay-env 2\n", 16) == 0) {
		/* the input ends with "\n"; cut after the line before the last one */
		for (cut = size - 1; cut > 0 && buf[cut - 1] != '\n'; cut--)
			;
		if (spool_env_parse(buf, cut, &c, err, sizeof err) == 0)
			abort();
	}
	check_round_trip(&e);
	spool_env_free(&e);
	return 0;
}

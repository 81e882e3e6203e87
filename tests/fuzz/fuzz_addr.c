/*
 * Fuzz target for the header address-list parser (lib/addr.c).
 * fuzz-sources: lib/addr.c
 *
 * Every reported address must be non-empty, bounded and free of control
 * characters; the count returned must match the addresses reported.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(const char *a, void *arg)
{
	size_t n = strlen(a);

	(*(int *)arg)++;
	if (n == 0 || n > ADDR_MAX)
		abort();
	for (; *a; a++)
		if ((unsigned char)*a < 0x20 || *a == 0x7f)
			abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int seen = 0, rc;

	rc = addr_list_parse((const char *)data, size, check, &seen);
	if (rc >= 0 && rc != seen)
		abort();
	if (rc < -1)
		abort();
	return 0;
}

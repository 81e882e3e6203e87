/*
 * Fuzz target for the header scrubber (lib/header.c).
 * fuzz-sources: lib/header.c
 *
 * The output is never longer than the input, and no field that starts a
 * line in it is a Bcc field.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "header.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct header_info hi;
	char *buf = malloc(size ? size : 1);
	size_t n, i;

	memcpy(buf, data, size);
	n = header_scrub(buf, size, &hi);
	if (n > size)
		abort();
	for (i = 0; i < n; i = (size_t)((char *)memchr(buf + i, '\n', n - i) - buf) + 1) {
		if (buf[i] != ' ' && buf[i] != '\t' && header_is(buf + i, n - i, "Bcc"))
			abort();
		if (memchr(buf + i, '\n', n - i) == NULL)
			break;
	}
	free(buf);
	return 0;
}

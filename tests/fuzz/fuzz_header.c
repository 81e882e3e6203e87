/*
 * Fuzz target for the header code: the scrubber (lib/header.c) and the
 * address rewriting of header blocks (lib/rewrite.c).
 * fuzz-sources: lib/header.c lib/rewrite.c lib/addr.c lib/xmalloc.c lib/log.c lib/util.c
 *
 * Scrubbing: the output is never longer than the input, and no field
 * that starts a line in it is a Bcc or Resent-Bcc field.
 * Rewriting: a rewritten block has no more lines than the input (folding
 * inside a replaced address goes with it); rewriting
 * it again changes nothing (the policy is idempotent); rewriting for an
 * identity twice changes nothing the second time.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "header.h"
#include "rewrite.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t
count_lf(const char *p, size_t n)
{
	size_t c = 0;

	for (size_t i = 0; i < n; i++)
		c += p[i] == '\n';
	return c;
}

static void
check_rewrite(const char *buf, size_t n)
{
	static const struct rewrite_policy pols[] = {
		{ "web1.example.com", NULL, REWRITE_NEVER },
		{ "web1.example.com", "alerts@example.com", REWRITE_LOCAL },
	};
	size_t len, len2;
	char *r, *r2;

	for (size_t k = 0; k < sizeof pols / sizeof pols[0]; k++) {
		r = rewrite_header_block(&pols[k], buf, n, &len, NULL);
		if (r == NULL)
			continue;
		if (count_lf(r, len) > count_lf(buf, n))
			abort();
		r2 = rewrite_header_block(&pols[k], r, len, &len2, NULL);
		if (r2 != NULL)
			abort();
		free(r);
	}
	r = rewrite_for_identity("relay@corp.example", buf, n, &len);
	if (r != NULL) {
		r2 = rewrite_for_identity("relay@corp.example", r, len, &len2);
		if (r2 != NULL)
			abort();
		free(r);
	}
}

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
		if (buf[i] != ' ' && buf[i] != '\t' &&
		    (header_is(buf + i, n - i, "Bcc") || header_is(buf + i, n - i, "Resent-Bcc")))
			abort();
		if (memchr(buf + i, '\n', n - i) == NULL)
			break;
	}
	check_rewrite(buf, n);
	free(buf);
	return 0;
}

/*
 * Fuzz target for the aliases parser and expansion (lib/aliases.c).
 * fuzz-sources: lib/aliases.c lib/xmalloc.c lib/log.c
 *
 * Every name of the table is expanded: each must end in at least one
 * address, every address must have a domain and no control character.
 * aliases_verify() (sendmail -bv) must give the same number of addresses,
 * and every refused target it reports must carry a reason.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aliases.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(const char *addr, void *arg)
{
	(*(size_t *)arg)++;
	if (strchr(addr, '@') == NULL)
		abort();
	for (; *addr; addr++)
		if ((unsigned char)*addr < 0x20)
			abort();
}

static void
refused(const char *alias, const struct alias_refused *r, void *arg)
{
	(void)arg;
	if (alias == NULL || r->target == NULL || r->why == NULL || r->why[0] == '\0')
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct aliases a;

	aliases_parse(&a, "fuzz", (const char *)data, size, NULL, NULL);
	for (size_t i = 0; i < a.n; i++) {
		size_t seen = 0;
		size_t n = aliases_expand(&a, a.v[i].name, i % 2 ? "admin@x.test" : NULL, "h.test",
		    check, &seen, NULL, NULL);
		if (n == 0 || n != seen)
			abort();
		seen = 0;
		if (aliases_verify(&a, a.v[i].name, i % 2 ? "admin@x.test" : NULL, "h.test",
		    check, refused, &seen, NULL, NULL) != n || seen != n)
			abort();
	}
	aliases_check(&a, "fuzz", NULL, NULL);
	aliases_free(&a);
	return 0;
}

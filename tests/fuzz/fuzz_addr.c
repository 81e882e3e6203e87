/*
 * Fuzz target for the address code (lib/addr.c): the header address-list
 * walker, in-place rewriting and the RFC 5321 mailbox check.
 * fuzz-sources: lib/addr.c lib/xmalloc.c lib/log.c lib/util.c
 *
 * Every reported address must be non-empty, bounded and free of control
 * characters, and its span must lie inside the value in order; the count
 * returned must match the mailboxes reported.  Rewriting every address
 * to a fixed one must give a value that parses to the same number of
 * mailboxes, each the new address.  addr_spec_check must give a reason
 * whenever it refuses.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "xmalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct st {
	int seen;
	size_t len, last_end;
	const char *want;
};

static void
check(const struct addr_mbox *m, void *arg)
{
	struct st *st = arg;
	size_t n = strlen(m->addr);
	const char *why;

	st->seen++;
	if (n == 0 || n > ADDR_MAX)
		abort();
	for (const char *a = m->addr; *a; a++)
		if ((unsigned char)*a < 0x20 || *a == 0x7f)
			abort();
	if (m->start > m->end || m->end > st->len || m->start < st->last_end)
		abort();
	st->last_end = m->end;
	if (st->want != NULL && strcmp(m->addr, st->want) != 0)
		abort();
	if (addr_spec_check(m->addr, ADDR_LOCAL_OK, &why) == -1 && why == NULL)
		abort();
}

static char *
replace(const char *addr, void *arg)
{
	(void)addr;
	(void)arg;
	return xstrdup("x@y.z");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct st st = { 0, size, 0, NULL };
	int rc;

	rc = addr_list_walk((const char *)data, size, check, &st);
	if (rc >= 0 && rc != st.seen)
		abort();
	if (rc < -1)
		abort();
	if (rc > 0) {
		size_t n;
		char *r = addr_list_rewrite((const char *)data, size, replace, NULL, &n);
		if (r == NULL)
			abort();
		struct st st2 = { 0, n, 0, "x@y.z" };
		if (addr_list_walk(r, n, check, &st2) != rc)
			abort();
		free(r);
	}
	return 0;
}

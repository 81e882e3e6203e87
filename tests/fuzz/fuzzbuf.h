/*
 * fuzzbuf.h: what the fuzz targets that feed their input in pieces share:
 * a growing byte buffer, and a small deterministic random source (seeded
 * from the input, so a crash replays) for choosing the pieces' sizes.
 * Header-only, since run.sh builds each target from its own file and the
 * sources it names.
 */
#ifndef MAILRELAY_FUZZBUF_H
#define MAILRELAY_FUZZBUF_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct buf {
	char  *p;
	size_t len, cap;
};

static void
buf_add(struct buf *b, const char *s, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 16;
		b->p = realloc(b->p, b->cap);
		if (b->p == NULL)
			abort();
	}
	if (n > 0)
		memcpy(b->p + b->len, s, n);
	b->len += n;
}

static uint64_t fuzz_rng;

/* The next pseudo-random number (a linear congruential step). */
static size_t
fuzz_rand(void)
{
	fuzz_rng = fuzz_rng * 6364136223846793005ULL + 1442695040888963407ULL;
	return (size_t)(fuzz_rng >> 33);
}

#endif

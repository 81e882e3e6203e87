/*
 * Fuzz target for the message repair (lib/linefix.c).
 * fuzz-sources: lib/linefix.c lib/header.c lib/xmalloc.c lib/log.c
 * fuzz-flags: -max_len=40000
 *
 * The input is a stored message.  Checked, with abort() on any violation:
 *   - linefix_message() returns NULL exactly when linefix_needed() is
 *     false, and then leaves *outlen at 0 and the report at zero;
 *   - the output is CRLF-only, ends in CRLF, has no line longer than
 *     LINEFIX_MAX octets, and is at most 3.25 times the input (plus a
 *     little);
 *   - the report's bare_eol_fixed is the number of bare CRs and LFs;
 *   - unless a body was re-encoded, only line breaks, spaces (folding) and
 *     "=" (soft line breaks) were added and only padding removed: both
 *     texts are the same once CR, LF, space, tab and "=" are dropped;
 *   - the output needs nothing: linefix_needed() is false and a second
 *     repair returns NULL.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "linefix.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t
count_bare(const char *p, size_t n)
{
	size_t i, bare = 0;

	for (i = 0; i < n; i++) {
		if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
			i++;
		else if (p[i] == '\r' || p[i] == '\n')
			bare++;
	}
	return bare;
}

/* p[0..n) without CR, LF, space, tab and "=", in a new buffer. */
static char *
strip(const char *p, size_t n, size_t *outn)
{
	char *s = malloc(n ? n : 1);
	size_t i, o = 0;

	if (s == NULL)
		abort();
	for (i = 0; i < n; i++)
		if (strchr("\r\n \t=", p[i]) == NULL || p[i] == '\0')
			s[o++] = p[i];
	*outn = o;
	return s;
}

static void
check_clean(const char *p, size_t n)
{
	size_t i, col = 0;

	if (n < 2 || p[n - 2] != '\r' || p[n - 1] != '\n')
		abort();
	for (i = 0; i < n; i++) {
		if (p[i] == '\r') {
			if (i + 1 >= n || p[i + 1] != '\n')
				abort();
			i++;
			col = 0;
		} else if (p[i] == '\n')
			abort();
		else if (++col > LINEFIX_MAX)
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct linefix_report rep, rep2;
	const char *in;
	char *buf, *out, *again;
	size_t n = 1, n2 = 1;
	int needed;

	/* a copy of exactly size octets, so that ASan sees any overread */
	buf = malloc(size ? size : 1);
	if (buf == NULL)
		abort();
	if (size > 0)
		memcpy(buf, data, size);
	in = size > 0 ? buf : NULL;

	needed = linefix_needed(in, size);
	out = linefix_message(in, size, &n, &rep);
	if ((out != NULL) != (needed != 0))
		abort();
	if (out == NULL) {
		if (n != 0 || rep.bare_eol_fixed != 0 ||
		    rep.header_lines_folded != 0 || rep.parts_qp_encoded != 0 ||
		    rep.parts_rewrapped != 0 || rep.lines_wrapped != 0)
			abort();
		free(buf);
		return 0;
	}
	check_clean(out, n);
	if (n > size * 13 / 4 + 256)
		abort();
	if (rep.bare_eol_fixed != count_bare(in, size))
		abort();
	if (rep.parts_qp_encoded == 0) {
		char *a, *b;
		size_t an, bn;

		a = strip(in, size, &an);
		b = strip(out, n, &bn);
		if (an != bn || memcmp(a, b, an) != 0)
			abort();
		free(a);
		free(b);
	}
	if (linefix_needed(out, n))
		abort();
	again = linefix_message(out, n, &n2, &rep2);
	if (again != NULL || n2 != 0)
		abort();
	free(out);
	free(buf);
	return 0;
}

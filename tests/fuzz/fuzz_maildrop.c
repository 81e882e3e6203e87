/*
 * Fuzz target for the maildrop reader (spool/maildrop.c): any group
 * member can write a drop file, so the daemon reads it as hostile.
 *
 * The header parser must never place the content beyond the input or
 * beyond MAILDROP_HEADER_MAX (the daemon's read bound), and must refuse
 * addresses it promised to refuse.  The CRLF normaliser, fed the content
 * in pieces whose size the input chooses, must produce exactly what one
 * piece produces, only CRLF line ends, the octet count it reports, and
 * note a NUL exactly when there is one.
 * fuzz-sources: spool/maildrop.c lib/xmalloc.c lib/log.c lib/util.c
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spool/maildrop.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_crlf(const char *p, size_t len, size_t piece)
{
	struct maildrop_crlf whole = { 0 }, parts = { 0 };
	char *a = malloc(2 * len + 2), *b = malloc(2 * len + 2);
	size_t na, nb = 0, i, off;

	if (a == NULL || b == NULL)
		abort();
	na = maildrop_crlf_feed(&whole, p, len, a);
	na += maildrop_crlf_end(&whole, a + na);
	for (off = 0; off < len; off += piece)
		nb += maildrop_crlf_feed(&parts, p + off, len - off < piece ? len - off : piece, b + nb);
	nb += maildrop_crlf_end(&parts, b + nb);
	if (na != nb || memcmp(a, b, na) != 0 || whole.out != na || parts.out != nb)
		abort();
	if (whole.nul != (memchr(p, '\0', len) != NULL))
		abort();
	if (na > 0 && (na < 2 || a[na - 2] != '\r' || a[na - 1] != '\n'))
		abort();	/* the last line is always ended */
	for (i = 0; i < na; i++) {
		if (a[i] == '\r' && (i + 1 == na || a[i + 1] != '\n'))
			abort();	/* a bare CR */
		if (a[i] == '\n' && (i == 0 || a[i - 1] != '\r'))
			abort();	/* a bare LF */
	}
	free(a);
	free(b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct maildrop_env e;
	char err[256];
	size_t off, i, j;

	err[0] = '\0';
	if (maildrop_parse((const char *)data, size, &e, &off, err, sizeof err) == -1) {
		if (err[0] == '\0')
			abort();
		/* the whole input as content, in pieces of 1 to 8 octets */
		check_crlf((const char *)data, size, size > 0 ? 1 + data[0] % 8 : 1);
		return 0;
	}
	if (off > size || off > MAILDROP_HEADER_MAX || e.sender == NULL || e.nrcpt == 0)
		abort();
	check_crlf((const char *)data + off, size - off, 1 + size % 5);
	for (i = 0; i < e.nrcpt; i++) {
		if (e.rcpts[i][0] == '\0' || strlen(e.rcpts[i]) > MAILDROP_ADDR_MAX)
			abort();
		for (j = 0; e.rcpts[i][j]; j++)
			if ((unsigned char)e.rcpts[i][j] < 0x20)
				abort();
	}
	maildrop_env_free(&e);
	return 0;
}

/*
 * Fuzz target for lib/dotstuff.c.
 * fuzz-sources: lib/dotstuff.c
 *
 * The input is a DATA stream as a client would send it.  A hash of the
 * input picks the line limit and the chunk sizes, so that corpus files
 * are plain mail.  Checked, with abort() on any violation:
 *   - decoding in random chunks gives exactly what decoding at once gives
 *     (output, bytes consumed, done, overlong);
 *   - the decoder never writes more than len + 2 and always progresses;
 *   - the output is CRLF-only, overlong matches its longest line, and when
 *     done the consumed input ends with <CR><LF>.<CR><LF> (or is ".\r\n");
 *   - encoding the output and decoding that again gives the output back
 *     (plus a CRLF for an unterminated last line);
 *   - encoding the raw input in chunks equals encoding it at once, stays
 *     within 2*len + 2, and decodes to the input with normalised endings.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dotstuff.h"
#include "fuzzbuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t
next_chunk(size_t left)
{
	size_t n;

	n = fuzz_rand();
	/* mostly small chunks, sometimes large ones, sometimes empty */
	switch (n % 4) {
	case 0:
		n = n % 3;
		break;
	case 1:
	case 2:
		n = 1 + n % 17;
		break;
	default:
		n = n % 1024;
		break;
	}
	return n > left ? left : n;
}

struct decoded {
	struct buf out;
	size_t consumed;
	int done, overlong;
};

/* chunked != 0: random chunk sizes; else the whole rest each call */
static void
decode(const char *in, size_t len, size_t max_line, int chunked,
    struct decoded *res)
{
	struct dot_decoder d;
	size_t pos = 0, end, n, olen;
	char *tmp;

	memset(res, 0, sizeof(*res));
	if (in == NULL)
		in = "";
	dot_decoder_init(&d, max_line);
	while (pos < len && !d.done) {
		end = chunked ? pos + next_chunk(len - pos) : len;
		while (pos < end && !d.done) {
			/* exactly the promised capacity, for ASan */
			tmp = malloc(end - pos + 2);
			if (tmp == NULL)
				abort();
			n = dot_decode(&d, in + pos, end - pos, tmp, &olen);
			if (olen > end - pos + 2 || n > end - pos)
				abort();
			if (n == 0 && !d.done)
				abort();	/* no progress */
			buf_add(&res->out, tmp, olen);
			free(tmp);
			pos += n;
		}
	}
	res->consumed = pos;
	res->done = d.done;
	res->overlong = d.overlong;
}

static void
encode(const char *in, size_t len, int chunked, struct buf *out)
{
	struct dot_encoder e;
	size_t pos = 0, n, k;
	char *tmp;

	memset(out, 0, sizeof(*out));
	if (in == NULL)
		in = "";	/* an empty buffer: NULL + 0 is undefined in C */
	dot_encoder_init(&e);
	do {
		n = chunked ? next_chunk(len - pos) : len - pos;
		tmp = malloc(2 * n + 2);
		if (tmp == NULL)
			abort();
		k = dot_encode(&e, in + pos, n, tmp);
		if (k > 2 * n + 2)
			abort();
		buf_add(out, tmp, k);
		free(tmp);
		pos += n;
	} while (pos < len);
	tmp = malloc(6);
	if (tmp == NULL)
		abort();
	k = dot_encode_finish(&e, tmp);
	if (k > 6)
		abort();
	buf_add(out, tmp, k);
	free(tmp);
}

/* CRLF-only: every CR is followed by LF and every LF preceded by CR. */
static void
check_canonical(const struct buf *b)
{
	size_t i;

	for (i = 0; i < b->len; i++) {
		if (b->p[i] == '\r' && (i + 1 >= b->len || b->p[i + 1] != '\n'))
			abort();
		if (b->p[i] == '\n' && (i == 0 || b->p[i - 1] != '\r'))
			abort();
	}
}

static size_t
longest_line(const struct buf *b)
{
	size_t i, cur = 0, max = 0;

	for (i = 0; i < b->len; i++) {
		if (b->p[i] == '\r' || b->p[i] == '\n') {
			cur = 0;
			continue;
		}
		if (++cur > max)
			max = cur;
	}
	return max;
}

static void
same(const struct buf *a, const char *p, size_t len)
{
	if (a->len != len || (len > 0 && memcmp(a->p, p, len) != 0))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	struct decoded whole, parts, again;
	struct buf enc, enc2, norm, expect;
	uint64_t h = 1469598103934665603ULL;
	size_t i, max_line;

	for (i = 0; i < size; i++)
		h = (h ^ data[i]) * 1099511628211ULL;
	fuzz_rng = h;
	max_line = (size_t)(h >> 40) % 4 == 0 ? 0 : (size_t)(h >> 20) % 64;

	/* 1. chunking does not matter */
	decode(in, size, max_line, 0, &whole);
	decode(in, size, max_line, 1, &parts);
	same(&parts.out, whole.out.p, whole.out.len);
	if (parts.consumed != whole.consumed || parts.done != whole.done ||
	    parts.overlong != whole.overlong)
		abort();

	/* 2. what the decoder promises about its output */
	check_canonical(&whole.out);
	if (max_line != 0 &&
	    whole.overlong != (longest_line(&whole.out) > max_line))
		abort();
	if (max_line == 0 && whole.overlong)
		abort();
	if (!whole.done && whole.consumed != size)
		abort();
	if (whole.done) {
		size_t c = whole.consumed;

		/* only <CR><LF>.<CR><LF> ends the data (or ".\r\n" first) */
		if (c < 3 || memcmp(in + c - 3, ".\r\n", 3) != 0 ||
		    (c > 3 && (c < 5 || memcmp(in + c - 5, "\r\n", 2) != 0)))
			abort();
	}
	if (whole.out.len > whole.consumed * 2)
		abort();

	/* 3. decoded data survives encode + decode */
	encode(whole.out.p, whole.out.len, 1, &enc);
	decode(enc.p, enc.len, 0, 0, &again);
	if (!again.done || again.consumed != enc.len)
		abort();
	memset(&expect, 0, sizeof(expect));
	buf_add(&expect, whole.out.p, whole.out.len);
	if (expect.len > 0 && expect.p[expect.len - 1] != '\n')
		buf_add(&expect, "\r\n", 2);
	same(&again.out, expect.p, expect.len);
	free(again.out.p);
	free(enc.p);
	free(expect.p);

	/* 4. the encoder on raw input */
	encode(in, size, 0, &enc);
	encode(in, size, 1, &enc2);
	same(&enc2, enc.p, enc.len);
	check_canonical(&enc);
	memset(&norm, 0, sizeof(norm));
	for (i = 0; i < size; i++) {
		if (in[i] == '\r' || in[i] == '\n') {
			buf_add(&norm, "\r\n", 2);
			if (in[i] == '\r' && i + 1 < size && in[i + 1] == '\n')
				i++;
		} else
			buf_add(&norm, in + i, 1);
	}
	if (norm.len > 0 && norm.p[norm.len - 1] != '\n')
		buf_add(&norm, "\r\n", 2);
	decode(enc.p, enc.len, 0, 1, &again);
	if (!again.done || again.consumed != enc.len)
		abort();
	same(&again.out, norm.p, norm.len);

	free(again.out.p);
	free(norm.p);
	free(enc.p);
	free(enc2.p);
	free(whole.out.p);
	free(parts.out.p);
	return 0;
}

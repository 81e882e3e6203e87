/*
 * Unit tests for lib/dotstuff.c: the DATA transparency encoder and
 * decoder, line-ending normalisation, and streaming at every split point.
 *
 * Output buffers are allocated with exactly the capacity the header
 * promises (2*len + 2 for the encoder, len + 2 for the decoder) so that
 * AddressSanitizer catches any write beyond it.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dotstuff.h"

#define BIG 8192

struct result {
	char   out[BIG];
	size_t outlen;
	size_t consumed;
	int    done;
	int    overlong;
	int    nul, eightbit;
	size_t bare_lf, bare_cr, dot_lines;
};

/* Encode in[0..len) cut at the given offsets (ascending), then finish. */
static void
encode_cuts(const char *in, size_t len, const size_t *cuts, size_t ncuts,
    struct result *res)
{
	struct dot_encoder e;
	size_t start = 0, end, k;
	char *buf;

	dot_encoder_init(&e);
	res->outlen = 0;
	for (k = 0; k <= ncuts; k++) {
		end = k < ncuts ? cuts[k] : len;
		buf = malloc(2 * (end - start) + 2);
		assert_non_null(buf);
		size_t n = dot_encode(&e, in + start, end - start, buf);
		assert_true(n <= 2 * (end - start) + 2);
		assert_true(res->outlen + n <= BIG);
		memcpy(res->out + res->outlen, buf, n);
		res->outlen += n;
		free(buf);
		start = end;
	}
	buf = malloc(6);
	assert_non_null(buf);
	k = dot_encode_finish(&e, buf);
	assert_true(k <= 6);
	memcpy(res->out + res->outlen, buf, k);
	res->outlen += k;
	free(buf);
}

static void
encode_str(const char *in, struct result *res)
{
	encode_cuts(in, strlen(in), NULL, 0, res);
}

/*
 * Decode in[0..len) cut at the given offsets, each chunk passed again
 * from where the decoder stopped until it is used up or the data ends.
 */
static void
decode_cuts(const char *in, size_t len, size_t max_line, const size_t *cuts,
    size_t ncuts, struct result *res)
{
	struct dot_decoder d;
	size_t start = 0, end, k, n, olen;
	char *buf;

	dot_decoder_init(&d, max_line);
	res->outlen = 0;
	res->consumed = 0;
	for (k = 0; k <= ncuts && !d.done; k++) {
		end = k < ncuts ? cuts[k] : len;
		while (start < end && !d.done) {
			buf = malloc(end - start + 2);
			assert_non_null(buf);
			n = dot_decode(&d, in + start, end - start, buf, &olen);
			assert_true(olen <= end - start + 2);
			/* progress is guaranteed */
			assert_true(n > 0 || d.done);
			assert_true(n <= end - start);
			assert_true(res->outlen + olen <= BIG);
			memcpy(res->out + res->outlen, buf, olen);
			res->outlen += olen;
			free(buf);
			start += n;
			res->consumed += n;
		}
		if (d.done)
			break;
		start = end;
	}
	res->done = d.done;
	res->overlong = d.overlong;
	res->nul = d.nul;
	res->eightbit = d.eightbit;
	res->bare_lf = d.bare_lf;
	res->bare_cr = d.bare_cr;
	res->dot_lines = d.dot_lines;
}

static void
decode_mem(const char *in, size_t len, size_t max_line, struct result *res)
{
	decode_cuts(in, len, max_line, NULL, 0, res);
}

static void
decode_str(const char *in, struct result *res)
{
	decode_mem(in, strlen(in), 0, res);
}

static void
decode_lim(const char *in, size_t max_line, struct result *res)
{
	decode_mem(in, strlen(in), max_line, res);
}

#define assert_out(res, lit) do {					\
	assert_int_equal((res)->outlen, sizeof(lit) - 1);		\
	assert_memory_equal((res)->out, lit, sizeof(lit) - 1);		\
} while (0)

static struct result r1, r2;

static void check_decode_splits(const char *in, size_t len, size_t max_line);

static void
test_encode_basic(void **state)
{
	(void)state;
	encode_str("Subject: x\r\n\r\nbody\r\n", &r1);
	assert_out(&r1, "Subject: x\r\n\r\nbody\r\n.\r\n");
}

static void
test_encode_bare_lf_cr(void **state)
{
	(void)state;
	encode_str("a\nb\n", &r1);
	assert_out(&r1, "a\r\nb\r\n.\r\n");
	/* a bare CR ends a line too */
	encode_str("a\rb\r\nc\n\rd", &r1);
	assert_out(&r1, "a\r\nb\r\nc\r\n\r\nd\r\n.\r\n");
	encode_str("\r\r\n\n", &r1);
	assert_out(&r1, "\r\n\r\n\r\n.\r\n");
	/* a '.' after a bare CR is at a line start */
	encode_str("x\r.y", &r1);
	assert_out(&r1, "x\r\n..y\r\n.\r\n");
}

static void
test_encode_dots(void **state)
{
	(void)state;
	encode_str(".\n", &r1);
	assert_out(&r1, "..\r\n.\r\n");
	encode_str("..\n", &r1);
	assert_out(&r1, "...\r\n.\r\n");
	encode_str("..x\r\n.y\r\na.b\r\n. \n", &r1);
	assert_out(&r1, "...x\r\n..y\r\na.b\r\n.. \r\n.\r\n");
	/* last line unterminated and a lone dot */
	encode_str("a\n.", &r1);
	assert_out(&r1, "a\r\n..\r\n.\r\n");
}

static void
test_encode_empty_and_unterminated(void **state)
{
	(void)state;
	encode_str("", &r1);
	assert_out(&r1, ".\r\n");
	encode_str("abc", &r1);
	assert_out(&r1, "abc\r\n.\r\n");
	encode_str("abc\r", &r1);
	assert_out(&r1, "abc\r\n.\r\n");
}

static void
test_encode_cr_lf_split(void **state)
{
	static const size_t cut[] = { 2 };
	static const size_t cuts[] = { 1, 2, 2, 3 };

	(void)state;
	encode_cuts("a\r\nb", 4, cut, 1, &r1);
	assert_out(&r1, "a\r\nb\r\n.\r\n");
	/* CR, then an empty chunk, then LF */
	encode_cuts("a\r\n.b", 5, cuts, 4, &r1);
	assert_out(&r1, "a\r\n..b\r\n.\r\n");
}

static void
test_encode_reuse(void **state)
{
	struct dot_encoder e;
	char out[64];
	size_t n;

	(void)state;
	dot_encoder_init(&e);
	n = dot_encode(&e, "x", 1, out);
	n += dot_encode_finish(&e, out + n);
	assert_int_equal(n, 6);
	assert_memory_equal(out, "x\r\n.\r\n", 6);
	/* finish() leaves the encoder ready for the next message */
	n = dot_encode(&e, ".", 1, out);
	assert_int_equal(n, 2);
	assert_memory_equal(out, "..", 2);
}

static void
test_encode_worst_case_size(void **state)
{
	static const char *const inputs[] = {
		"\r\r\r\r\r\r", "\n\n\n\n", ".\n.\n.\n", "\r.\r.\r.", ".",
		"\n", "\r",
	};
	size_t i;

	(void)state;
	/* encode_cuts() gives every call exactly 2*len + 2 bytes */
	for (i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++)
		encode_str(inputs[i], &r1);
	encode_str(".\n.\n.\n", &r1);
	assert_out(&r1, "..\r\n..\r\n..\r\n.\r\n");
	encode_str("\r.\r.\r.", &r1);
	assert_out(&r1, "\r\n..\r\n..\r\n..\r\n.\r\n");
}

/* Every one- and two-point split, and one byte at a time, match. */
static void
check_encode_splits(const char *in)
{
	size_t len = strlen(in), i, j, cuts[BIG];

	encode_cuts(in, len, NULL, 0, &r1);
	for (i = 0; i <= len; i++) {
		cuts[0] = i;
		encode_cuts(in, len, cuts, 1, &r2);
		assert_int_equal(r2.outlen, r1.outlen);
		assert_memory_equal(r2.out, r1.out, r1.outlen);
		for (j = i; j <= len; j++) {
			cuts[1] = j;
			encode_cuts(in, len, cuts, 2, &r2);
			assert_int_equal(r2.outlen, r1.outlen);
			assert_memory_equal(r2.out, r1.out, r1.outlen);
		}
	}
	for (i = 0; i < len; i++)
		cuts[i] = i + 1;
	encode_cuts(in, len, cuts, len, &r2);
	assert_int_equal(r2.outlen, r1.outlen);
	assert_memory_equal(r2.out, r1.out, r1.outlen);
}

static void
test_encode_every_split(void **state)
{
	(void)state;
	check_encode_splits(".a\r\n..b\nc\r\r\n.\r.\n\rd.\r\n.");
	check_encode_splits("");
	check_encode_splits("\r\n");
}

static void
test_decode_basic(void **state)
{
	static const char in[] = "Subject: x\r\n\r\nbody\r\n.\r\n";

	(void)state;
	decode_mem(in, sizeof(in) - 1, 998, &r1);
	assert_out(&r1, "Subject: x\r\n\r\nbody\r\n");
	assert_int_equal(r1.done, 1);
	assert_int_equal(r1.consumed, sizeof(in) - 1);
	assert_int_equal(r1.overlong, 0);
}

static void
test_decode_unstuff(void **state)
{
	(void)state;
	/* a body line that is a single "." travels as ".." */
	decode_str("..\r\n.\r\n", &r1);
	assert_out(&r1, ".\r\n");
	assert_int_equal(r1.done, 1);
	decode_str("...x\r\n..\r\n.y\r\na.b\r\n.\r\n", &r1);
	assert_out(&r1, "..x\r\n.\r\ny\r\na.b\r\n");
	decode_str(". \r\n.\r\n", &r1);
	assert_out(&r1, " \r\n");
}

static void
test_decode_empty(void **state)
{
	(void)state;
	decode_str(".\r\n", &r1);
	assert_int_equal(r1.outlen, 0);
	assert_int_equal(r1.done, 1);
	assert_int_equal(r1.consumed, 3);
	/* ".\n" is not the end: only <CR><LF>.<CR><LF> is */
	decode_str(".\n", &r1);
	assert_out(&r1, ".\r\n");
	assert_int_equal(r1.done, 0);
	assert_int_equal(r1.consumed, 2);
	assert_int_equal(r1.dot_lines, 1);
}

static void
test_decode_bare_lf(void **state)
{
	(void)state;
	/* bare LF ends a line and becomes CRLF; a leading '.' is unstuffed */
	decode_str("a\nb\r\n\n..c\r\n.\r\n", &r1);
	assert_out(&r1, "a\r\nb\r\n\r\n.c\r\n");
	assert_int_equal(r1.done, 1);
	assert_int_equal(r1.bare_lf, 2);
	/* but a "." line next to a bare LF never ends the data */
	decode_str("a\nb\r\n\n.\n", &r1);
	assert_out(&r1, "a\r\nb\r\n\r\n.\r\n");
	assert_int_equal(r1.done, 0);
	decode_str("a\n..b\n.\r\n", &r1);
	assert_out(&r1, "a\r\n.b\r\n.\r\n");
	assert_int_equal(r1.done, 0);
	assert_int_equal(r1.dot_lines, 1);
	decode_str("a\n..b\n.\r\n.\r\n", &r1);
	assert_out(&r1, "a\r\n.b\r\n.\r\n");
	assert_int_equal(r1.done, 1);
}

/*
 * SMTP smuggling: each "dot line" that is not <CR><LF>.<CR><LF> stays in
 * the message, and the data ends at the one real terminator, whatever the
 * chunking.
 */
static void
test_decode_smuggling_variants(void **state)
{
	static const char *const variant[] = {
		"\n.\n", "\r\n.\n", "\n.\r\n", "\r.\r\n", "\r\n.\r",
		"\r.\r", "\n.\r", "\r\n.\r\r\n",
	};
	static const char evil[] = "MAIL FROM:<e@x>\r\nRCPT TO:<v@y>\r\nDATA\r\nz\r\n";
	char in[256];
	size_t i, len;

	(void)state;
	for (i = 0; i < sizeof(variant) / sizeof(variant[0]); i++) {
		len = (size_t)snprintf(in, sizeof(in), "a%s%s.\r\nQUIT\r\n",
		    variant[i], evil);
		decode_mem(in, len, 0, &r1);
		assert_int_equal(r1.done, 1);
		assert_int_equal(r1.consumed, len - 6);	/* "QUIT\r\n" left */
		/* after a bare CR a '.' is plain text, not a dot line */
		assert_true(r1.dot_lines == 1 ||
		    (variant[i][0] == '\r' && variant[i][1] == '.'));
		assert_true(r1.outlen >= sizeof(evil) - 1);
		assert_memory_equal(r1.out + r1.outlen - (sizeof(evil) - 1),
		    evil, sizeof(evil) - 1);
		check_decode_splits(in, len, 0);
	}
	/* what each one becomes */
	decode_str("a\n.\nb\r\n.\r\n", &r1);
	assert_out(&r1, "a\r\n.\r\nb\r\n");
	decode_str("a\r\n.\nb\r\n.\r\n", &r1);
	assert_out(&r1, "a\r\n.\r\nb\r\n");
	decode_str("a\n.\r\nb\r\n.\r\n", &r1);
	assert_out(&r1, "a\r\n.\r\nb\r\n");
	decode_str("a\r.\r\nb\r\n.\r\n", &r1);
	assert_out(&r1, "a\r\n.\r\nb\r\n");
	decode_str("a\r\n.\rb\r\n.\r\n", &r1);
	assert_out(&r1, "a\r\n\r\nb\r\n");
	assert_int_equal(r1.bare_cr, 1);
	/* the real terminator split anywhere still ends the data */
	check_decode_splits("a\r\n.\r\n", 7, 0);
}

static void
test_decode_nul_and_8bit(void **state)
{
	static const char nul[] = "a\0b\r\n.\r\n";
	static const char nul2[] = "\0\r\n.\r\n";
	static const char nul3[] = "a\r\0\r\n.\r\n";

	(void)state;
	decode_str("plain ascii\r\n.\r\n", &r1);
	assert_int_equal(r1.nul, 0);
	assert_int_equal(r1.eightbit, 0);
	decode_mem(nul, sizeof(nul) - 1, 0, &r1);
	assert_int_equal(r1.done, 1);
	assert_int_equal(r1.nul, 1);
	assert_int_equal(r1.outlen, 5);		/* passed through: the caller judges */
	decode_mem(nul2, sizeof(nul2) - 1, 0, &r1);
	assert_int_equal(r1.nul, 1);
	decode_mem(nul3, sizeof(nul3) - 1, 0, &r1);
	assert_int_equal(r1.nul, 1);
	assert_int_equal(r1.eightbit, 0);
	decode_str("caf\xc3\xa9\r\n.\r\n", &r1);
	assert_int_equal(r1.eightbit, 1);
	assert_int_equal(r1.nul, 0);
	decode_str("..\xff\r\n.\r\n", &r1);
	assert_int_equal(r1.eightbit, 1);
	decode_str("\r\xff\r\n.\r\n", &r1);
	assert_int_equal(r1.eightbit, 1);
	/* after the end nothing counts */
	decode_str("a\r\n.\r\n\xff", &r1);
	assert_int_equal(r1.eightbit, 0);
}

static void
test_decode_bare_cr(void **state)
{
	(void)state;
	/* a bare CR becomes CRLF ... */
	decode_str("a\rb\r\n.\r\n", &r1);
	assert_out(&r1, "a\r\nb\r\n");
	assert_int_equal(r1.done, 1);
	/* ... but what follows is not a line start: no terminator, no
	 * unstuffing */
	decode_str("a\r.\r\nb\r\n.\r\n", &r1);
	assert_out(&r1, "a\r\n.\r\nb\r\n");
	assert_int_equal(r1.done, 1);
	decode_str("a\r..b\r\n.\r\n", &r1);
	assert_out(&r1, "a\r\n..b\r\n");
	decode_str("\r\r\n.\r\n", &r1);
	assert_out(&r1, "\r\n\r\n");
	/* "." then a bare CR is not the end either: the dot is stuffing */
	decode_str(".\rX\r\n.\r\n", &r1);
	assert_out(&r1, "\r\nX\r\n");
	assert_int_equal(r1.done, 1);
	decode_str(".\r\r\n.\r\n", &r1);
	assert_out(&r1, "\r\n\r\n");
	assert_int_equal(r1.done, 1);
}

static void
test_decode_rest_not_consumed(void **state)
{
	static const char in[] = "hi\r\n.\r\nQUIT\r\n";
	static const char lf[] = "hi\n.\nMAIL FROM:<>\n";
	static const size_t cut[] = { 5 };

	(void)state;
	decode_mem(in, sizeof(in) - 1, 0, &r1);
	assert_out(&r1, "hi\r\n");
	assert_int_equal(r1.done, 1);
	assert_int_equal(r1.consumed, 7);
	/* LF-only: no end of data, all of it is text */
	decode_mem(lf, sizeof(lf) - 1, 0, &r1);
	assert_out(&r1, "hi\r\n.\r\nMAIL FROM:<>\r\n");
	assert_int_equal(r1.consumed, sizeof(lf) - 1);
	assert_int_equal(r1.done, 0);
	/* terminator split between CR and LF */
	decode_cuts(in, sizeof(in) - 1, 0, cut, 1, &r1);
	assert_int_equal(r1.consumed, 7);
	assert_int_equal(r1.done, 1);
}

static void
test_decode_done_consumes_nothing(void **state)
{
	struct dot_decoder d;
	char out[16];
	size_t olen = 99, n;

	(void)state;
	dot_decoder_init(&d, 0);
	n = dot_decode(&d, ".\r\nabc", 6, out, &olen);
	assert_int_equal(n, 3);
	assert_int_equal(olen, 0);
	assert_int_equal(d.done, 1);
	olen = 99;
	n = dot_decode(&d, "abc", 3, out, &olen);
	assert_int_equal(n, 0);
	assert_int_equal(olen, 0);
}

static void
test_decode_unterminated(void **state)
{
	static const char in[] = "abc\r\ndef";
	struct dot_decoder d;
	char out[16];
	size_t olen, n;

	(void)state;
	decode_mem(in, sizeof(in) - 1, 0, &r1);
	assert_out(&r1, "abc\r\ndef");
	assert_int_equal(r1.done, 0);
	assert_int_equal(r1.consumed, sizeof(in) - 1);

	/* pending ".\r" produces nothing until the next byte arrives */
	dot_decoder_init(&d, 0);
	n = dot_decode(&d, "x\r\n.\r", 5, out, &olen);
	assert_int_equal(n, 5);
	assert_int_equal(olen, 3);
	assert_int_equal(d.done, 0);
	n = dot_decode(&d, "\n", 1, out, &olen);
	assert_int_equal(n, 1);
	assert_int_equal(olen, 0);
	assert_int_equal(d.done, 1);
}

static void
test_decode_overlong(void **state)
{
	(void)state;
	/* ten octets: at the limit */
	decode_lim("0123456789\r\n.\r\n", 10, &r1);
	assert_int_equal(r1.overlong, 0);
	assert_int_equal(r1.done, 1);
	/* eleven octets: over, and the data still passes */
	decode_lim("0123456789A\r\n.\r\n", 10, &r1);
	assert_int_equal(r1.overlong, 1);
	assert_out(&r1, "0123456789A\r\n");
	/* counted after unstuffing: ".0123456789" is ten octets */
	decode_lim(".0123456789\r\n.\r\n", 10, &r1);
	assert_int_equal(r1.overlong, 0);
	/* counted per line, CRLF excluded */
	decode_lim("01234\r\n56789\n0123456789\r\n.\r\n", 10, &r1);
	assert_int_equal(r1.overlong, 0);
	/* an overlong last line without a line ending */
	decode_lim("0123456789AB", 10, &r1);
	assert_int_equal(r1.overlong, 1);
	/* 0 means no limit */
	decode_lim("0123456789AB\r\n.\r\n", 0, &r1);
	assert_int_equal(r1.overlong, 0);
}

static void
test_decode_linelen(void **state)
{
	struct dot_decoder d;
	char out[32];
	size_t olen;

	(void)state;
	dot_decoder_init(&d, 998);
	assert_int_equal(d.max_line, 998);
	dot_decode(&d, "..abc", 5, out, &olen);
	assert_int_equal(d.linelen, 4);
	dot_decode(&d, "de\r", 3, out, &olen);
	assert_int_equal(d.linelen, 6);
	dot_decode(&d, "\n", 1, out, &olen);
	assert_int_equal(d.linelen, 0);
}

/* Bare LFs grow the output: the decoder stops before overflowing. */
static void
test_decode_capacity(void **state)
{
	static const char lfs[] = "\n\n\n\n\n\n\n\n";
	struct dot_decoder d;
	char *out;
	size_t olen, n;

	(void)state;
	dot_decoder_init(&d, 0);
	out = malloc(sizeof(lfs) - 1 + 2);
	assert_non_null(out);
	n = dot_decode(&d, lfs, sizeof(lfs) - 1, out, &olen);
	assert_int_equal(n, 5);
	assert_int_equal(olen, 10);
	assert_int_equal(d.done, 0);
	free(out);

	decode_mem(lfs, sizeof(lfs) - 1, 0, &r1);
	assert_out(&r1, "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n");
	assert_int_equal(r1.consumed, 8);
	decode_str("\r\r\r\r\r\r\r\r.\n", &r1);
	assert_out(&r1, "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n.\r\n");
	assert_int_equal(r1.done, 0);

	/* CRLF input of any length is consumed in one call */
	dot_decoder_init(&d, 0);
	out = malloc(20 + 2);
	assert_non_null(out);
	n = dot_decode(&d, "ab\r\ncd\r\nef\r\n..\r\nxyz\r", 20, out, &olen);
	assert_int_equal(n, 20);
	assert_int_equal(olen, 18);
	free(out);
}

/* Decode at every one- and two-point split, and byte by byte. */
static void
check_decode_splits(const char *in, size_t len, size_t max_line)
{
	size_t i, j, cuts[BIG];

	decode_mem(in, len, max_line, &r1);
	for (i = 0; i <= len; i++) {
		cuts[0] = i;
		decode_cuts(in, len, max_line, cuts, 1, &r2);
		assert_int_equal(r2.outlen, r1.outlen);
		assert_memory_equal(r2.out, r1.out, r1.outlen);
		assert_int_equal(r2.consumed, r1.consumed);
		assert_int_equal(r2.done, r1.done);
		assert_int_equal(r2.overlong, r1.overlong);
		for (j = i; j <= len; j++) {
			cuts[1] = j;
			decode_cuts(in, len, max_line, cuts, 2, &r2);
			assert_int_equal(r2.outlen, r1.outlen);
			assert_memory_equal(r2.out, r1.out, r1.outlen);
			assert_int_equal(r2.consumed, r1.consumed);
			assert_int_equal(r2.done, r1.done);
			assert_int_equal(r2.overlong, r1.overlong);
		}
	}
	for (i = 0; i < len; i++)
		cuts[i] = i + 1;
	decode_cuts(in, len, max_line, cuts, len, &r2);
	assert_int_equal(r2.outlen, r1.outlen);
	assert_memory_equal(r2.out, r1.out, r1.outlen);
	assert_int_equal(r2.consumed, r1.consumed);
	assert_int_equal(r2.done, r1.done);
}

static void
test_decode_every_split(void **state)
{
	static const char a[] =
	    "..a\r\nb\n\r\n.x\r.\r\n\rc\r\rd\n..\r\n.\r\nRSET\r\n";
	static const char b[] = "line one\nlonger line two\r\n.\r.\n\n.";
	static const char c[] = ".\r\n";

	(void)state;
	check_decode_splits(a, sizeof(a) - 1, 3);
	decode_mem(a, sizeof(a) - 1, 3, &r1);
	assert_out(&r1, ".a\r\nb\r\n\r\nx\r\n.\r\n\r\nc\r\n\r\nd\r\n.\r\n");
	assert_int_equal(r1.done, 1);
	assert_int_equal(r1.consumed, sizeof(a) - 1 - 6);
	assert_int_equal(r1.overlong, 0);
	check_decode_splits(b, sizeof(b) - 1, 8);
	decode_mem(b, sizeof(b) - 1, 8, &r1);
	assert_int_equal(r1.done, 0);
	assert_int_equal(r1.overlong, 1);
	check_decode_splits(c, sizeof(c) - 1, 0);
}

/* encode then decode gives the input with CRLF line endings */
static void
check_round_trip(const char *in, const char *expect)
{
	encode_str(in, &r1);
	decode_mem(r1.out, r1.outlen, 0, &r2);
	assert_int_equal(r2.done, 1);
	assert_int_equal(r2.consumed, r1.outlen);
	assert_int_equal(r2.outlen, strlen(expect));
	assert_memory_equal(r2.out, expect, r2.outlen);
}

static void
test_round_trip(void **state)
{
	(void)state;
	check_round_trip("", "");
	check_round_trip(".", ".\r\n");
	check_round_trip(".\n", ".\r\n");
	check_round_trip("..\r\n...\r\n", "..\r\n...\r\n");
	check_round_trip("a\nb\rc\r\n.\n\n", "a\r\nb\r\nc\r\n.\r\n\r\n");
	check_round_trip("no newline", "no newline\r\n");
	check_round_trip("\r\n.\r\n", "\r\n.\r\n");	/* not the end */
	check_round_trip("x\n.\ny\n", "x\r\n.\r\ny\r\n");
}

/* decoded data is canonical: encoding it and decoding again is stable */
static void
test_decode_encode_decode(void **state)
{
	static const char wire[] = "a\rb\n..c\r\n.\rd\r\r\n\n.\r\n.\n\r\n.\r\n";
	struct result r3;

	(void)state;
	decode_mem(wire, sizeof(wire) - 1, 0, &r1);
	assert_int_equal(r1.done, 1);
	encode_cuts(r1.out, r1.outlen, NULL, 0, &r2);
	decode_mem(r2.out, r2.outlen, 0, &r3);
	assert_int_equal(r3.done, 1);
	assert_int_equal(r3.outlen, r1.outlen);
	assert_memory_equal(r3.out, r1.out, r1.outlen);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encode_basic),
		cmocka_unit_test(test_encode_bare_lf_cr),
		cmocka_unit_test(test_encode_dots),
		cmocka_unit_test(test_encode_empty_and_unterminated),
		cmocka_unit_test(test_encode_cr_lf_split),
		cmocka_unit_test(test_encode_reuse),
		cmocka_unit_test(test_encode_worst_case_size),
		cmocka_unit_test(test_encode_every_split),
		cmocka_unit_test(test_decode_basic),
		cmocka_unit_test(test_decode_unstuff),
		cmocka_unit_test(test_decode_empty),
		cmocka_unit_test(test_decode_bare_lf),
		cmocka_unit_test(test_decode_bare_cr),
		cmocka_unit_test(test_decode_smuggling_variants),
		cmocka_unit_test(test_decode_nul_and_8bit),
		cmocka_unit_test(test_decode_rest_not_consumed),
		cmocka_unit_test(test_decode_done_consumes_nothing),
		cmocka_unit_test(test_decode_unterminated),
		cmocka_unit_test(test_decode_overlong),
		cmocka_unit_test(test_decode_linelen),
		cmocka_unit_test(test_decode_capacity),
		cmocka_unit_test(test_decode_every_split),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_decode_encode_decode),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

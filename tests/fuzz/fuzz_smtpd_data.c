/*
 * Fuzz target for the listener's DATA state machine: the smuggling oracle.
 * fuzz-sources: lib/dotstuff.c
 *
 * The input is what a client sends after "DATA\r\n" on a listener (unix
 * socket or TCP), fed through the decoder the way daemon/smtpd.c's
 * process_data() does: in segments (sizes from a hash of the input, as TCP
 * would cut them), each passed again from where the decoder stopped.
 * Checked, with abort() on any violation:
 *   - one message in: the data ends exactly at the first <CR><LF>.<CR><LF>
 *     of "\r\n" + input (the DATA line's CRLF counts), and there only; with
 *     none the data has not ended and everything was consumed.  So at most
 *     one end of data, and nothing after a bare CR or LF dot line starts
 *     another transaction;
 *   - at most one message out: what is stored, encoded for the smarthost
 *     as daemon/delivery.c does, holds <CR><LF>.<CR><LF> only at its very
 *     end, and a strict decoder reads back exactly what was stored;
 *   - what is stored is CRLF-only, and the decoder's NUL and 8-bit flags
 *     say whether the consumed input had such an octet.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dotstuff.h"
#include "fuzzbuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SLICE (64 * 1024)	/* smtpd.c's DATA_SLICE */

static size_t
segment(size_t left)
{
	size_t n;

	n = fuzz_rand();
	switch (n % 4) {
	case 0:
		n = 1 + n % 2;
		break;
	case 1:
	case 2:
		n = 1 + n % 13;
		break;
	default:
		n = 1 + n % 2048;
		break;
	}
	return n > left ? left : n;
}

/* First offset of "\r\n.\r\n" in p[0..n), or n. */
static size_t
find_end(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i + 5 <= n; i++)
		if (memcmp(p + i, "\r\n.\r\n", 5) == 0)
			return i;
	return n;
}

struct run {
	struct buf out;
	size_t consumed;
	struct dot_decoder d;
};

/* The listener's loop: segments arrive, each decoded until used up. */
static void
listen_data(const char *in, size_t len, struct run *r)
{
	size_t pos = 0, seg_end, take, used, olen;
	char *tmp;

	memset(r, 0, sizeof(*r));
	dot_decoder_init(&r->d, 998);
	while (pos < len && !r->d.done) {
		seg_end = pos + segment(len - pos);
		while (pos < seg_end && !r->d.done) {
			take = seg_end - pos < SLICE ? seg_end - pos : SLICE;
			tmp = malloc(take + 2);		/* the promised capacity, for ASan */
			if (tmp == NULL)
				abort();
			used = dot_decode(&r->d, in + pos, take, tmp, &olen);
			if (olen > take + 2 || used > take || (used == 0 && !r->d.done))
				abort();
			buf_add(&r->out, tmp, olen);
			free(tmp);
			pos += used;
		}
	}
	r->consumed = pos;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	struct buf w = { 0 }, enc = { 0 }, expect = { 0 };
	struct run r, back;
	struct dot_encoder e;
	uint64_t h = 1469598103934665603ULL;
	size_t i, end, n;
	int nul = 0, eight = 0;
	char *tmp;

	if (in == NULL)
		in = "";
	for (i = 0; i < size; i++)
		h = (h ^ data[i]) * 1099511628211ULL;
	fuzz_rng = h;

	/* one message in: the end is the first <CR><LF>.<CR><LF> */
	listen_data(in, size, &r);
	buf_add(&w, "\r\n", 2);
	buf_add(&w, in, size);
	end = find_end(w.p, w.len);
	if (end < w.len) {
		if (!r.d.done || r.consumed != end + 3)
			abort();
	} else if (r.d.done || r.consumed != size)
		abort();

	/* stored text: CRLF-only; the flags match the consumed octets */
	for (i = 0; i < r.out.len; i++) {
		if (r.out.p[i] == '\r' && (i + 1 >= r.out.len || r.out.p[i + 1] != '\n'))
			abort();
		if (r.out.p[i] == '\n' && (i == 0 || r.out.p[i - 1] != '\r'))
			abort();
	}
	for (i = 0; i < r.consumed; i++) {
		nul |= data[i] == 0;
		eight |= data[i] >= 0x80;
	}
	if (nul != r.d.nul || eight != r.d.eightbit)
		abort();

	/* at most one message out: encode as delivery does, then decode */
	dot_encoder_init(&e);
	tmp = malloc(2 * r.out.len + 8);
	if (tmp == NULL)
		abort();
	n = dot_encode(&e, r.out.p, r.out.len, tmp);
	n += dot_encode_finish(&e, tmp + n);
	buf_add(&enc, tmp, n);
	free(tmp);
	free(w.p);
	memset(&w, 0, sizeof(w));
	buf_add(&w, "\r\n", 2);
	buf_add(&w, enc.p, enc.len);
	if (find_end(w.p, w.len) != w.len - 5)
		abort();
	listen_data(enc.p, enc.len, &back);
	if (!back.d.done || back.consumed != enc.len || back.d.dot_lines != 0 ||
	    back.d.bare_cr != 0 || back.d.bare_lf != 0)
		abort();
	buf_add(&expect, r.out.p, r.out.len);
	if (expect.len > 0 && expect.p[expect.len - 1] != '\n')
		buf_add(&expect, "\r\n", 2);
	if (back.out.len != expect.len ||
	    (expect.len > 0 && memcmp(back.out.p, expect.p, expect.len) != 0))
		abort();

	free(back.out.p);
	free(expect.p);
	free(enc.p);
	free(w.p);
	free(r.out.p);
	return 0;
}

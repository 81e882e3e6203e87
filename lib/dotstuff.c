/*
 * dotstuff: see dotstuff.h.
 *
 * Both directions produce CRLF-only text: the encoder because smarthosts
 * refuse anything else, the decoder so that the spool holds one canonical
 * form that the encoder turns back into exactly the same lines.
 *
 * Line endings:
 *   encoder  CRLF, bare LF and bare CR all end a line.  A bare CR is
 *            turned into CRLF rather than passed on: since the SMTP
 *            smuggling fixes (2023/24) relays reject bare CR and bare LF
 *            in DATA, so sending them would bounce otherwise good mail.
 *   decoder  CRLF and bare LF end a line (local programs write LF).  A
 *            bare CR is written out as CRLF, but what follows it is not a
 *            line start: no '.' is removed there.
 *
 * End of data (SMTP smuggling, 2023): only <CR><LF>.<CR><LF> ends the
 * data, i.e. a "." line that began after a real CRLF (or at the start of
 * the data) and is ended by CRLF.  A smarthost behind us, or the program
 * in front of us, may disagree with us about any other "dot line"; so
 * rather than guess, every other one ("\n.\n", "\r\n.\n", "\n.\r\n",
 * "\r\n.\r" then text, ...) stays in the message as text (dotstuff.h
 * says how).  Since the encoder stuffs a "." line back to ".." on the
 * way out, nothing an SMTP client sent inside one DATA can become a
 * second message, here or downstream.  Bare LF and bare CR are
 * normalised, not refused, as SPEC's message hygiene asks ("bare LF
 * becomes CRLF"), like Postfix's smtpd_forbid_bare_newline = normalize.
 */
#include "config.h"

#include <string.h>

#include "dotstuff.h"

void
dot_encoder_init(struct dot_encoder *e)
{
	e->at_line_start = 1;
	e->pending_cr = 0;
}

/*
 * A CR is written as CRLF at once and remembered in pending_cr, so that an
 * LF right after it, in this chunk or the next, is swallowed.  This keeps
 * the output of one input byte at two octets at most ('.' at a line start,
 * CR, LF), hence the 2*len bound.
 */
size_t
dot_encode(struct dot_encoder *e, const char *in, size_t len, char *out)
{
	size_t i = 0, o = 0, run;
	char c;

	while (i < len) {
		c = in[i];
		if (e->pending_cr) {
			e->pending_cr = 0;
			if (c == '\n') {
				i++;
				continue;
			}
		}
		if (c == '\r' || c == '\n') {
			out[o++] = '\r';
			out[o++] = '\n';
			e->at_line_start = 1;
			e->pending_cr = (c == '\r');
			i++;
			continue;
		}
		if (e->at_line_start && c == '.')
			out[o++] = '.';
		e->at_line_start = 0;
		/* The rest of the line is copied as it is. */
		for (run = 1; i + run < len; run++)
			if (in[i + run] == '\r' || in[i + run] == '\n')
				break;
		memcpy(out + o, in + i, run);
		o += run;
		i += run;
	}
	return o;
}

size_t
dot_encode_finish(struct dot_encoder *e, char *out)
{
	size_t o = 0;

	if (!e->at_line_start) {
		out[o++] = '\r';
		out[o++] = '\n';
	}
	out[o++] = '.';
	out[o++] = '\r';
	out[o++] = '\n';
	dot_encoder_init(e);
	return o;
}

/* Decoder states: where we are in the current line. */
enum {
	DS_LINE_START = 0,	/* nothing of this line seen yet */
	DS_TEXT,		/* inside a line */
	DS_CR,			/* inside a line, CR seen, not yet written */
	DS_DOT,			/* line start, '.' seen, not yet written */
	DS_DOT_CR		/* line start, ".\r" seen */
};

void
dot_decoder_init(struct dot_decoder *d, size_t max_line)
{
	d->state = DS_LINE_START;
	d->crlf_start = 1;	/* the DATA command line ended with CRLF */
	d->linelen = 0;
	d->max_line = max_line;
	d->overlong = 0;
	d->nul = 0;
	d->eightbit = 0;
	d->bare_lf = 0;
	d->bare_cr = 0;
	d->dot_lines = 0;
	d->done = 0;
}

static void
count_octets(struct dot_decoder *d, size_t n)
{
	d->linelen += n;
	if (d->max_line != 0 && d->linelen > d->max_line)
		d->overlong = 1;
}

/* Note what the listener judges in line text: NUL and 8-bit octets. */
static void
note_text(struct dot_decoder *d, const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i] == '\0')
			d->nul = 1;
		else if ((unsigned char)p[i] >= 0x80)
			d->eightbit = 1;
	}
}

static size_t
put_text(struct dot_decoder *d, char c, char *tmp)
{
	tmp[0] = c;
	note_text(d, tmp, 1);
	count_octets(d, 1);
	return 1;
}

static size_t
put_crlf(struct dot_decoder *d, char *tmp)
{
	tmp[0] = '\r';
	tmp[1] = '\n';
	d->linelen = 0;
	return 2;
}

/* A "." line that does not end the data: kept as the text ".". */
static size_t
put_dot_line(struct dot_decoder *d, char *tmp)
{
	d->dot_lines++;
	tmp[0] = '.';
	count_octets(d, 1);
	return 1 + put_crlf(d, tmp + 1);
}

/*
 * One byte that is not plain line text: advance d and write at most three
 * octets to tmp.  The caller applies the result only if it fits.
 */
static size_t
decode_byte(struct dot_decoder *d, char c, char *tmp)
{
	size_t n;

	switch (d->state) {
	case DS_LINE_START:
	case DS_TEXT:
		if (c == '.' && d->state == DS_LINE_START) {
			d->state = DS_DOT;
			return 0;
		}
		if (c == '\r') {
			d->state = DS_CR;
			return 0;
		}
		if (c == '\n') {
			d->bare_lf++;
			d->state = DS_LINE_START;
			d->crlf_start = 0;
			return put_crlf(d, tmp);
		}
		d->state = DS_TEXT;
		return put_text(d, c, tmp);
	case DS_CR:
		if (c == '\n') {
			d->state = DS_LINE_START;
			d->crlf_start = 1;
			return put_crlf(d, tmp);
		}
		/* The CR was bare: CRLF, but not a line start (see top). */
		d->bare_cr++;
		n = put_crlf(d, tmp);
		if (c == '\r')
			return n;	/* stay in DS_CR for the new CR */
		d->state = DS_TEXT;
		return n + put_text(d, c, tmp + n);
	case DS_DOT:
		if (c == '\r') {
			d->state = DS_DOT_CR;
			return 0;
		}
		if (c == '\n') {	/* ".\n": not the end (see top) */
			d->bare_lf++;
			d->state = DS_LINE_START;
			d->crlf_start = 0;
			return put_dot_line(d, tmp);
		}
		/* Transparency: the leading '.' is dropped. */
		d->state = DS_TEXT;
		return put_text(d, c, tmp);
	case DS_DOT_CR:
		if (c == '\n' && d->crlf_start) {
			d->done = 1;
			return 0;
		}
		if (c == '\n') {	/* "\n.\r\n": not the end either */
			d->state = DS_LINE_START;
			d->crlf_start = 1;
			return put_dot_line(d, tmp);
		}
		/*
		 * "." then a bare CR: not the end either; the dot is
		 * stuffing and dropped (keeping it would write four octets
		 * for one), the CR is bare.
		 */
		d->dot_lines++;
		d->bare_cr++;
		n = put_crlf(d, tmp);
		if (c == '\r') {
			d->state = DS_CR;
			return n;
		}
		d->state = DS_TEXT;
		return n + put_text(d, c, tmp + n);
	}
	return 0;
}

/*
 * Output is bounded by len + 2.  CRLF or dot-stuffed input never writes
 * more than it reads, but every bare LF grows by one octet: when the next
 * byte's output would not fit, we stop and return what was consumed so
 * far; the caller passes the rest again (see dotstuff.h).  At least one
 * byte is always consumed when len > 0, since one byte writes at most 3
 * (a kept "." line: the '.' held back from an earlier byte, then CRLF).
 */
size_t
dot_decode(struct dot_decoder *d, const char *in, size_t len,
    char *out, size_t *outlen)
{
	size_t i = 0, o = 0, cap = len + 2, run, n;
	struct dot_decoder next;
	char tmp[4];
	char c;

	while (i < len && !d->done) {
		c = in[i];
		if (d->state == DS_TEXT && c != '\r' && c != '\n') {
			for (run = 1; i + run < len; run++)
				if (in[i + run] == '\r' || in[i + run] == '\n')
					break;
			if (run > cap - o)
				run = cap - o;
			if (run == 0)
				break;
			memcpy(out + o, in + i, run);
			note_text(d, in + i, run);
			count_octets(d, run);
			o += run;
			i += run;
			continue;
		}
		next = *d;
		n = decode_byte(&next, c, tmp);
		if (n > cap - o)
			break;
		memcpy(out + o, tmp, n);
		o += n;
		*d = next;
		i++;
	}
	*outlen = o;
	return i;
}

/*
 * Unit tests for lib/linefix.c: line endings, header folding, bodies and
 * MIME parts re-encoded or re-wrapped, the forced-break fallback, and the
 * promise that what comes out never needs repair again.
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

#include "linefix.h"

/* A growing string for building messages. */
struct sb {
	char *p;
	size_t len, cap;
};

static void
sb_add(struct sb *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->p = realloc(b->p, b->cap);
		assert_non_null(b->p);
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
sb_str(struct sb *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

static void
sb_rep(struct sb *b, const char *unit, size_t times)
{
	while (times-- > 0)
		sb_str(b, unit);
}

static void
sb_free(struct sb *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/*
 * What every output must be: CRLF lines within the limit, ending in CRLF,
 * and nothing more to repair.
 */
static void
assert_clean(const char *out, size_t n)
{
	size_t i, col = 0, n2 = 99;

	for (i = 0; i < n; i++) {
		if (out[i] == '\r') {
			assert_true(i + 1 < n && out[i + 1] == '\n');
			i++;
			col = 0;
			continue;
		}
		assert_true(out[i] != '\n');
		col++;
		assert_true(col <= LINEFIX_MAX);
	}
	assert_true(n == 0 || (n >= 2 && out[n - 2] == '\r' && out[n - 1] == '\n'));
	assert_int_equal(linefix_needed(out, n), 0);
	assert_null(linefix_message(out, n, &n2, NULL));
	assert_int_equal(n2, 0);
}

/* Repair, check the output is clean, NUL-terminate it for strstr(). */
static char *
fix(const char *in, size_t n, size_t *olen, struct linefix_report *r)
{
	char *out, *z;

	assert_int_equal(linefix_needed(in, n), 1);
	out = linefix_message(in, n, olen, r);
	assert_non_null(out);
	assert_clean(out, *olen);
	z = malloc(*olen + 1);
	assert_non_null(z);
	memcpy(z, out, *olen);
	z[*olen] = '\0';
	free(out);
	return z;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * A strict quoted-printable decoder: encoded lines of at most 76
 * characters, escapes in upper-case hex, no white space at the end of a
 * line, only printable ASCII, space and tab as literals (strict unset:
 * any line length and trailing white space).  in holds CRLF lines; a last
 * line without CRLF decodes without one.
 */
static char *
qp_decode_as(const char *in, size_t n, size_t *outn, int strict)
{
	char *out = malloc(n + 1);
	size_t i = 0, o = 0, e, end, k;
	int crlf, soft;

	assert_non_null(out);
	while (i < n) {
		for (e = i; e < n && !(in[e] == '\r' && e + 1 < n && in[e + 1] == '\n'); e++)
			continue;
		crlf = e < n;
		end = e;
		if (strict) {
			assert_true(e - i <= 76);
			assert_true(end == i || (in[end - 1] != ' ' && in[end - 1] != '\t'));
		}
		soft = end > i && in[end - 1] == '=';
		if (soft)
			end--;
		for (k = i; k < end; k++) {
			if (in[k] == '=') {
				assert_true(k + 2 < end);
				assert_true(hexval(in[k + 1]) >= 0 && hexval(in[k + 2]) >= 0);
				out[o++] = (char)(hexval(in[k + 1]) * 16 + hexval(in[k + 2]));
				k += 2;
				continue;
			}
			assert_true((in[k] >= 33 && in[k] <= 126) || in[k] == ' ' || in[k] == '\t');
			out[o++] = in[k];
		}
		if (crlf && !soft) {
			out[o++] = '\r';
			out[o++] = '\n';
		}
		i = crlf ? e + 2 : e;
	}
	*outn = o;
	return out;
}

static char *
qp_decode(const char *in, size_t n, size_t *outn)
{
	return qp_decode_as(in, n, outn, 1);
}

/* The body after the first empty line. */
static const char *
body_of(const char *msg)
{
	const char *p = strstr(msg, "\r\n\r\n");

	assert_non_null(p);
	return p + 4;
}

/* A copy of s[0..n) with every CRLF followed by white space removed. */
static char *
unfold(const char *s, size_t n, size_t *outn)
{
	char *u = malloc(n + 1);
	size_t i, o = 0;

	assert_non_null(u);
	for (i = 0; i < n; i++) {
		if (s[i] == '\r' && i + 2 < n && s[i + 1] == '\n' &&
		    (s[i + 2] == ' ' || s[i + 2] == '\t')) {
			i++;
			continue;
		}
		u[o++] = s[i];
	}
	u[o] = '\0';
	*outn = o;
	return u;
}

static size_t
first_line_len(const char *s)
{
	const char *e = strstr(s, "\r\n");

	assert_non_null(e);
	return (size_t)(e - s);
}

static void
test_bare_lf(void **state)
{
	static const char in[] = "Subject: x\nFrom: a@example.com\n\nbody\n";
	static const char want[] = "Subject: x\r\nFrom: a@example.com\r\n\r\nbody\r\n";
	struct linefix_report r;
	size_t n;
	char *out;
	(void)state;

	out = fix(in, sizeof(in) - 1, &n, &r);
	assert_int_equal(n, sizeof(want) - 1);
	assert_memory_equal(out, want, n);
	assert_int_equal(r.bare_eol_fixed, 4);
	assert_int_equal(r.header_lines_folded + r.parts_qp_encoded +
	    r.parts_rewrapped + r.lines_wrapped, 0);
	free(out);
}

static void
test_bare_cr(void **state)
{
	static const char in[] = "A: b\rC: d\r\n\r\nx\r";
	static const char want[] = "A: b\r\nC: d\r\n\r\nx\r\n";
	struct linefix_report r;
	size_t n;
	char *out;
	(void)state;

	out = fix(in, sizeof(in) - 1, &n, &r);
	assert_string_equal(out, want);
	assert_int_equal(r.bare_eol_fixed, 2);
	free(out);
}

static void
test_mixed_endings(void **state)
{
	/* CR CR LF is two line breaks; the unterminated last line gets CRLF */
	static const char in[] = "A: b\r\nC: d\n\r\nbody\r\r\nmore\n\rend";
	static const char want[] =
	    "A: b\r\nC: d\r\n\r\nbody\r\n\r\nmore\r\n\r\nend\r\n";
	struct linefix_report r;
	size_t n;
	char *out;
	(void)state;

	out = fix(in, sizeof(in) - 1, &n, &r);
	assert_string_equal(out, want);
	assert_int_equal(r.bare_eol_fixed, 4);
	free(out);
}

static void
test_header_fold_at_space(void **state)
{
	struct sb in = { 0 };
	struct linefix_report r;
	size_t n, un;
	char *out, *u;
	const char *h2;
	(void)state;

	sb_str(&in, "From: a@example.com\r\nSubject:");
	sb_rep(&in, " word", 300);			/* 1508 octets */
	sb_str(&in, "\r\nTo: b@example.com\r\n\r\nshort body\r\n");
	out = fix(in.p, in.len, &n, &r);
	assert_int_equal(r.header_lines_folded, 1);
	assert_int_equal(r.lines_wrapped + r.parts_qp_encoded, 0);
	h2 = out + strlen("From: a@example.com\r\n");
	/* spaces are at 8 + 5k: the last one within the limit is at 998 */
	assert_int_equal(first_line_len(h2), 998);
	assert_true(h2[first_line_len(h2) + 2] == ' ');
	/* unfolded, the message is what it was */
	u = unfold(out, n, &un);
	assert_int_equal(un, in.len);
	assert_memory_equal(u, in.p, un);
	/* the other lines are untouched */
	assert_memory_equal(out, "From: a@example.com\r\nSubject: word", 34);
	assert_non_null(strstr(out, " word\r\nTo: b@example.com\r\n\r\nshort body\r\n"));
	free(u);
	free(out);
	sb_free(&in);
}

static void
test_header_fold_without_space(void **state)
{
	struct sb in = { 0 }, want = { 0 };
	struct linefix_report r;
	size_t n;
	char *out;
	(void)state;

	sb_str(&in, "X-Long:");
	sb_rep(&in, "a", 2000);
	sb_str(&in, "\r\n\r\nb\r\n");
	out = fix(in.p, in.len, &n, &r);
	assert_int_equal(r.header_lines_folded, 1);
	/* 998 octets, then CRLF SP and 997 more, then the last 12 */
	sb_str(&want, "X-Long:");
	sb_rep(&want, "a", 991);
	sb_str(&want, "\r\n ");
	sb_rep(&want, "a", 997);
	sb_str(&want, "\r\n ");
	sb_rep(&want, "a", 12);
	sb_str(&want, "\r\n\r\nb\r\n");
	assert_string_equal(out, want.p);
	free(out);
	sb_free(&in);
	sb_free(&want);
}

static void
test_header_continuation_folded(void **state)
{
	struct sb in = { 0 };
	struct linefix_report r;
	size_t n, un;
	char *out, *u;
	(void)state;

	/* a continuation line over the limit, white space only at its start */
	sb_str(&in, "References: <a@example.com>\r\n\t<");
	sb_rep(&in, "x", 1200);
	sb_str(&in, "@example.com>");
	sb_rep(&in, " <b@example.com>", 80);
	sb_str(&in, "\r\n\r\nbody\r\n");
	out = fix(in.p, in.len, &n, &r);
	assert_int_equal(r.header_lines_folded, 1);
	/* no fold before the leading tab: that would leave a blank line */
	assert_memory_equal(out, "References: <a@example.com>\r\n\t<xxx", 33);
	assert_int_equal(first_line_len(out + 29), 998);
	u = unfold(out, n, &un);
	/* one space added by the forced fold, none by the folds at white space
	 * (the input's own fold, CRLF TAB, is unfolded too) */
	assert_int_equal(un, in.len - 2 + 1);
	assert_true(strstr(out, "\r\n <b@example.com>") != NULL);
	free(u);
	free(out);
	sb_free(&in);
}

static void
test_body_qp_ascii(void **state)
{
	struct sb in = { 0 }, body = { 0 };
	struct linefix_report r;
	size_t n, dn;
	char *out, *dec;
	const char *b;
	(void)state;

	sb_rep(&body, "The quick = brown fox\t", 70);	/* 1540 octets */
	sb_str(&body, "  \r\n.leading dot, trailing tab\t\r\n\r\nlast line \r\n");
	sb_str(&in, "From: a@example.com\r\nSubject: s\r\n\r\n");
	sb_add(&in, body.p, body.len);
	out = fix(in.p, in.len, &n, &r);
	assert_int_equal(r.parts_qp_encoded, 1);
	assert_int_equal(r.lines_wrapped + r.header_lines_folded, 0);
	assert_non_null(strstr(out, "From: a@example.com\r\nSubject: s\r\n"
	    "MIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"));
	assert_null(strstr(out, "Content-Type"));	/* plain ASCII: the default fits */
	b = body_of(out);
	dec = qp_decode(b, strlen(b), &dn);
	assert_int_equal(dn, body.len);
	assert_memory_equal(dec, body.p, dn);
	assert_non_null(strstr(b, "=3D"));
	assert_non_null(strstr(b, "=09\r\n"));
	free(dec);
	free(out);
	sb_free(&in);
	sb_free(&body);
}

static void
test_body_8bit_gets_charset(void **state)
{
	struct sb in = { 0 }, body = { 0 };
	struct linefix_report r;
	size_t n, dn;
	char *out, *dec;
	const char *b;
	(void)state;

	sb_rep(&body, "gr\xc3\xbc\xc3\x9f dich ", 120);
	sb_str(&body, "\r\n");
	sb_str(&in, "Subject: utf-8\r\n\r\n");
	sb_add(&in, body.p, body.len);
	out = fix(in.p, in.len, &n, &r);
	assert_non_null(strstr(out, "Subject: utf-8\r\nMIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Transfer-Encoding: quoted-printable\r\n\r\n"));
	b = body_of(out);
	dec = qp_decode(b, strlen(b), &dn);
	assert_int_equal(dn, body.len);
	assert_memory_equal(dec, body.p, dn);
	free(dec);
	free(out);
	sb_free(&in);
	sb_free(&body);

	/* octets that are not UTF-8: labelled as of unknown charset */
	sb_str(&in, "Subject: latin-1\r\n\r\n");
	sb_rep(&in, "gr\xfc\xdf dich ", 120);
	sb_str(&in, "\r\n");
	out = fix(in.p, in.len, &n, &r);
	assert_non_null(strstr(out, "Content-Type: text/plain; charset=unknown-8bit\r\n"));
	free(out);
	sb_free(&in);
}

static void
test_cte_8bit_replaced(void **state)
{
	static const char head[] =
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=iso-8859-1\r\n"
	    "Content-Transfer-Encoding: 8bit\r\n"
	    "Subject: x\r\n\r\n";
	static const char want[] =
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=iso-8859-1\r\n"
	    "Content-Transfer-Encoding: quoted-printable\r\n"
	    "Subject: x\r\n\r\n";
	static const char want2[] =
	    "Content-Transfer-Encoding: quoted-printable\r\n"
	    "X: y\r\nMIME-Version: 1.0\r\n\r\nzzz";
	struct sb in = { 0 };
	struct linefix_report r;
	size_t n;
	char *out;
	(void)state;

	sb_str(&in, head);
	sb_rep(&in, "\xe9t\xe9 ", 400);
	sb_str(&in, "\r\n");
	out = fix(in.p, in.len, &n, &r);
	assert_memory_equal(out, want, sizeof(want) - 1);
	assert_int_equal(r.parts_qp_encoded, 1);
	free(out);
	sb_free(&in);

	/* a folded Content-Transfer-Encoding is replaced as a whole */
	sb_str(&in, "Content-Transfer-Encoding:\r\n 7bit (folded)\r\nX: y\r\n\r\n");
	sb_rep(&in, "z", 1000);
	sb_str(&in, "\r\n");
	out = fix(in.p, in.len, &n, &r);
	assert_memory_equal(out, want2, sizeof(want2) - 1);
	free(out);
	sb_free(&in);
}

static const char mp_head[] =
    "From: a@example.com\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed;\r\n boundary=\"=_b 1\"\r\n"
    "\r\n"
    "This is a multi-part message.\r\n"
    "--=_b 1\r\n"
    "Content-Type: text/plain; charset=us-ascii\r\n"
    "\r\n";
static const char mp_short[] =
    "--=_b 1  \r\n"
    "Content-Type: text/html\r\n"
    "Content-Transfer-Encoding: 7bit\r\n"
    "\r\n"
    "<p>short</p>\r\n"
    "\r\n"
    "--=_b 1--\r\n"
    "epilogue\r\n";

static void
test_multipart_long_and_short(void **state)
{
	struct sb in = { 0 }, text = { 0 };
	struct linefix_report r;
	size_t n, dn;
	char *out, *dec;
	const char *p, *e;
	static const char part_head[] =
	    "--=_b 1\r\n"
	    "Content-Type: text/plain; charset=us-ascii\r\n"
	    "Content-Transfer-Encoding: quoted-printable\r\n\r\n";
	(void)state;

	sb_rep(&text, "0123456789 ", 100);
	sb_str(&text, "\r\nsecond line");
	sb_str(&in, mp_head);
	sb_add(&in, text.p, text.len);
	sb_str(&in, "\r\n");
	sb_str(&in, mp_short);
	out = fix(in.p, in.len, &n, &r);
	assert_int_equal(r.parts_qp_encoded, 1);
	assert_int_equal(r.lines_wrapped + r.header_lines_folded, 0);
	/* the top header, the preamble and the part's Content-Type as they were */
	assert_memory_equal(out, in.p, strlen(mp_head) - 2);
	/* the short part byte for byte */
	assert_true(n > strlen(mp_short));
	assert_string_equal(out + n - strlen(mp_short), mp_short);
	/* the long part: its own header changed, no MIME-Version in it */
	p = strstr(out, part_head);
	assert_non_null(p);
	p += strlen(part_head);
	e = strstr(p, "\r\n--=_b 1  \r\n");
	assert_non_null(e);
	dec = qp_decode(p, (size_t)(e - p), &dn);
	assert_int_equal(dn, text.len);
	assert_memory_equal(dec, text.p, dn);
	assert_null(strstr(strstr(out, "MIME-Version") + 1, "MIME-Version"));
	free(dec);
	free(out);
	sb_free(&in);
	sb_free(&text);
}

static void
test_nested_multipart(void **state)
{
	struct sb in = { 0 };
	struct linefix_report r;
	size_t n, dn;
	char *out, *dec;
	const char *p, *e;
	(void)state;

	sb_str(&in, "Content-Type: multipart/mixed; boundary=outer\r\n\r\n"
	    "--outer\r\n"
	    "Content-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n"
	    "--inner\r\n"
	    "Content-Type: text/plain\r\n\r\n");
	sb_rep(&in, "abc", 500);
	sb_str(&in, "\r\n--inner\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n"
	    "--inner--\r\n"
	    "--outer\r\nContent-Type: application/octet-stream\r\n"
	    "Content-Transfer-Encoding: base64\r\n\r\nAAAA\r\n"
	    "--outer--\r\n");
	out = fix(in.p, in.len, &n, &r);
	assert_int_equal(r.parts_qp_encoded, 1);
	assert_int_equal(r.lines_wrapped, 0);
	p = strstr(out, "--inner\r\nContent-Type: text/plain\r\n"
	    "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
	assert_non_null(p);
	p = strstr(p, "\r\n\r\n") + 4;
	e = strstr(p, "\r\n--inner\r\n");
	assert_non_null(e);
	dec = qp_decode(p, (size_t)(e - p), &dn);
	assert_int_equal(dn, 1500);
	assert_memory_equal(dec, strstr(in.p, "abc"), 1500);
	/* the top header, which needed nothing, did not change */
	assert_memory_equal(out, in.p, strstr(in.p, "--inner") - in.p);
	assert_non_null(strstr(out, "--outer--\r\n"));
	free(dec);
	free(out);
	sb_free(&in);
}

static void
test_boundary_forms(void **state)
{
	static const char *forms[][2] = {
		{ "multipart/mixed; boundary=simple", "simple" },
		{ "Multipart/Mixed; BOUNDARY=\"a \\\"q\\\" b\"", "a \"q\" b" },
		{ "multipart/related (a comment; boundary=no);\r\n\ttype=\"text/html\";\r\n"
		    " boundary = \"x(y)z\" (another)", "x(y)z" },
		/* not a token, but sent unquoted and taken whole elsewhere */
		{ "multipart/alternative; boundary==_Part_1=abc; x=y", "=_Part_1=abc" },
	};
	struct sb in = { 0 };
	struct linefix_report r;
	size_t n, i;
	char *out;
	(void)state;

	for (i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		sb_str(&in, "Content-Type: ");
		sb_str(&in, forms[i][0]);
		sb_str(&in, "\r\n\r\n--");
		sb_str(&in, forms[i][1]);
		sb_str(&in, "\r\n\r\n");
		sb_rep(&in, "t", 1000);
		sb_str(&in, "\r\n--");
		sb_str(&in, forms[i][1]);
		sb_str(&in, "--\r\n");
		out = fix(in.p, in.len, &n, &r);
		assert_int_equal(r.parts_qp_encoded, 1);
		assert_int_equal(r.lines_wrapped, 0);
		free(out);
		sb_free(&in);
	}
}

static void
test_base64_rewrapped(void **state)
{
	struct sb in = { 0 }, b64 = { 0 };
	struct linefix_report r;
	size_t n, i, k;
	char *out;
	const char *p;
	(void)state;

	sb_rep(&b64, "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=", 60);	/* 2160 */
	sb_str(&in, "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
	    "Content-Type: image/png\r\nContent-Transfer-Encoding: BASE64\r\n\r\n");
	sb_add(&in, b64.p, b64.len);
	sb_str(&in, "\r\nAAAA\r\n--b--\r\n");
	out = fix(in.p, in.len, &n, &r);
	assert_int_equal(r.parts_rewrapped, 1);
	assert_int_equal(r.parts_qp_encoded + r.lines_wrapped, 0);
	p = strstr(out, "BASE64\r\n\r\n");
	assert_non_null(p);
	p += 10;
	/* 76 a line, and the same characters in the same order */
	for (i = 0, k = 0; k < b64.len; i++) {
		if (p[i] == '\r') {
			assert_int_equal((i + 2) % 78, 0);
			i++;
			continue;
		}
		assert_int_equal(p[i], b64.p[k++]);
	}
	assert_string_equal(p + i, "\r\nAAAA\r\n--b--\r\n");
	free(out);
	sb_free(&in);
	sb_free(&b64);
}

static void
test_qp_part_soft_breaks(void **state)
{
	struct sb in = { 0 }, qp = { 0 };
	struct linefix_report r;
	size_t n, d1, d2;
	char *out, *a, *b;
	const char *p;
	(void)state;

	/* a malformed quoted-printable line: escapes must not be split */
	sb_rep(&qp, "ab=3Dc=C3=A9", 100);
	sb_str(&qp, "\r\nend");
	sb_str(&in, "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
	sb_add(&in, qp.p, qp.len);
	sb_str(&in, "\r\n");
	out = fix(in.p, in.len, &n, &r);
	assert_int_equal(r.parts_rewrapped, 1);
	assert_int_equal(r.parts_qp_encoded + r.lines_wrapped, 0);
	assert_memory_equal(out, in.p, 47);	/* the header as it was */
	/* the same text once decoded; the output obeys the line rules */
	p = body_of(out);
	b = qp_decode(p, strlen(p), &d2);
	a = qp_decode_as(in.p + 47, in.len - 47, &d1, 0);
	assert_int_equal(d1, d2);
	assert_memory_equal(a, b, d1);
	assert_int_equal(d1, 100 * 6 + 2 + 5);
	free(a);
	free(b);
	free(out);
	sb_free(&in);
	sb_free(&qp);
}

static void
test_unparseable_multipart_wraps(void **state)
{
	static const char *heads[][2] = {
		/* no closing delimiter */
		{ "Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n\r\n", "" },
		/* no boundary */
		{ "Content-Type: multipart/mixed\r\n\r\n--zz\r\n\r\n", "--zz--\r\n" },
		/* a line that starts like a delimiter but is not one */
		{ "Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zzz\r\n--zz\r\n\r\n",
		    "--zz--\r\n" },
		/* the boundary parameter twice */
		{ "Content-Type: multipart/mixed; boundary=zz; boundary=zz\r\n\r\n--zz\r\n\r\n",
		    "--zz--\r\n" },
		/* a second Content-Type */
		{ "Content-Type: text/plain\r\nContent-Type: text/html\r\n\r\n", "" },
		/* an encoding we do not know */
		{ "Content-Transfer-Encoding: x-uuencode\r\n\r\n", "" },
		/* a header line that is not a field */
		{ "Subject: x\r\nnot a header line\r\n", "" },
		/* a type that must not be re-encoded */
		{ "Content-Type: message/partial; id=1\r\n\r\n", "" },
	};
	struct sb in = { 0 };
	struct linefix_report r;
	size_t n, i;
	char *out, *p;
	(void)state;

	for (i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
		sb_str(&in, heads[i][0]);
		sb_rep(&in, "w", 1500);
		sb_str(&in, "\r\n");
		sb_str(&in, heads[i][1]);
		out = fix(in.p, in.len, &n, &r);
		assert_int_equal(r.lines_wrapped, 1);
		assert_int_equal(r.parts_qp_encoded + r.parts_rewrapped, 0);
		/* the text as it was, with one CRLF at the limit */
		p = strstr(out, "wwww");
		assert_non_null(p);
		assert_int_equal(first_line_len(p), 998);
		assert_int_equal(first_line_len(p + 1000), 502);
		assert_int_equal(n, in.len + 2);
		free(out);
		sb_free(&in);
	}
}

static void
test_wrap_avoids_split(void **state)
{
	struct sb in = { 0 };
	struct linefix_report r;
	size_t n;
	char *out, *p;
	(void)state;

	/* the break would start a line with "--": it moves back */
	sb_str(&in, "Content-Transfer-Encoding: x-unknown\r\n\r\n");
	sb_rep(&in, "a", 997);
	sb_rep(&in, "-", 4);
	sb_rep(&in, "b", 100);
	sb_str(&in, "\r\n");
	out = fix(in.p, in.len, &n, &r);
	p = (char *)body_of(out);
	assert_int_equal(first_line_len(p), 996);
	assert_memory_equal(p + 998, "a----b", 6);
	free(out);
	sb_free(&in);

	/* nor in the middle of a UTF-8 sequence */
	sb_str(&in, "Content-Transfer-Encoding: x-unknown\r\n\r\n");
	sb_rep(&in, "a", 997);
	sb_rep(&in, "\xe2\x82\xac", 10);
	sb_str(&in, "\r\n");
	out = fix(in.p, in.len, &n, &r);
	p = (char *)body_of(out);
	assert_int_equal(first_line_len(p), 997);
	free(out);
	sb_free(&in);
}

static void
test_message_rfc822_part(void **state)
{
	struct sb in = { 0 };
	struct linefix_report r;
	size_t n;
	char *out;
	const char *p;
	(void)state;

	sb_str(&in, "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
	    "Content-Type: message/rfc822\r\n\r\n"
	    "Subject:");
	sb_rep(&in, " inner", 200);
	sb_str(&in, "\r\nFrom: x@example.com\r\n\r\n");
	sb_rep(&in, "y", 1200);
	sb_str(&in, "\r\n--b--\r\n");
	out = fix(in.p, in.len, &n, &r);
	assert_int_equal(r.header_lines_folded, 1);
	assert_int_equal(r.parts_qp_encoded, 1);
	assert_int_equal(r.lines_wrapped, 0);
	/* the embedded message is a message: it gets MIME-Version */
	p = strstr(out, "From: x@example.com\r\nMIME-Version: 1.0\r\n"
	    "Content-Transfer-Encoding: quoted-printable\r\n\r\nyyy");
	assert_non_null(p);
	/* the part's own header is left alone */
	assert_non_null(strstr(out, "--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner"));
	free(out);
	sb_free(&in);
}

static void
test_nothing_needed(void **state)
{
	static const char *ok[] = {
		"",
		"Subject: x\r\n\r\nbody\r\n",
		"Subject: x\r\n\r\nno final line ending",
		"no header at all\r\n",
		"\r\n\r\n\r\n",
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n",
	};
	struct linefix_report r;
	size_t i, n = 7;
	(void)state;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		memset(&r, 0xff, sizeof(r));
		assert_int_equal(linefix_needed(ok[i], strlen(ok[i])), 0);
		assert_null(linefix_message(ok[i], strlen(ok[i]), &n, &r));
		assert_int_equal(n, 0);
		assert_int_equal(r.bare_eol_fixed + r.header_lines_folded +
		    r.parts_qp_encoded + r.parts_rewrapped + r.lines_wrapped, 0);
	}
	assert_int_equal(linefix_needed(NULL, 0), 0);
	assert_null(linefix_message(NULL, 0, &n, NULL));
}

static void
test_needed_agrees(void **state)
{
#define C(s, needed) { s, sizeof(s) - 1, needed }
	static const struct {
		const char *s;
		size_t len;
		int needed;
	} cases[] = {
		C("a\r\nb\r\n", 0),
		C("a\nb\r\n", 1),
		C("a\r\nb\r", 1),
		C("\r", 1),
		C("\n", 1),
		C("\r\n", 0),
		C("a\rb", 1),
		C("\r\r\n", 1),
		C("\n\r", 1),
		C("x\0y\r\n\0", 0),
	};
#undef C
	struct sb s = { 0 };
	size_t i, n, len;
	char *out;
	(void)state;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		len = cases[i].len;
		assert_int_equal(linefix_needed(cases[i].s, len), cases[i].needed);
		out = linefix_message(cases[i].s, len, &n, NULL);
		assert_int_equal(out != NULL, cases[i].needed);
		if (out != NULL)
			assert_clean(out, n);
		free(out);
	}
	/* a long line anywhere: last, unterminated, between bare CRs */
	sb_rep(&s, "q", 999);
	assert_int_equal(linefix_needed(s.p, s.len), 1);
	assert_int_equal(linefix_needed(s.p, 998), 0);
	sb_free(&s);
	sb_str(&s, "a\r\r\n");
	sb_rep(&s, "q", 999);
	sb_str(&s, "\r\r\n");
	assert_int_equal(linefix_needed(s.p, s.len), 1);
	sb_free(&s);
}

static void
test_limit_998_999(void **state)
{
	struct sb in = { 0 };
	struct linefix_report r;
	size_t n;
	char *out;
	(void)state;

	/* a body line of 998 octets, a header line of 998: nothing to do */
	sb_str(&in, "X-H: ");
	sb_rep(&in, "h", 993);
	sb_str(&in, "\r\n\r\n");
	sb_rep(&in, "b", 998);
	sb_str(&in, "\r\n");
	assert_int_equal(linefix_needed(in.p, in.len), 0);
	assert_null(linefix_message(in.p, in.len, &n, &r));
	sb_free(&in);

	/* 999 in the body */
	sb_str(&in, "X-H: h\r\n\r\n");
	sb_rep(&in, "b", 999);
	sb_str(&in, "\r\n");
	out = fix(in.p, in.len, &n, &r);
	assert_int_equal(r.parts_qp_encoded, 1);
	assert_int_equal(r.header_lines_folded, 0);
	free(out);
	sb_free(&in);

	/* 999 in the header */
	sb_str(&in, "X-H: ");
	sb_rep(&in, "h", 994);
	sb_str(&in, "\r\n\r\nbody\r\n");
	out = fix(in.p, in.len, &n, &r);
	assert_int_equal(r.header_lines_folded, 1);
	assert_int_equal(r.parts_qp_encoded, 0);
	assert_memory_equal(out, "X-H:\r\n hhh", 10);
	assert_string_equal(body_of(out), "body\r\n");
	free(out);
	sb_free(&in);
}

static void
test_idempotent(void **state)
{
	struct sb in = { 0 };
	size_t n, n2, i;
	char *out, *again;
	(void)state;

	for (i = 0; i < 4; i++) {
		switch (i) {
		case 0:
			sb_str(&in, "Subject:\n");
			sb_rep(&in, "\xff=", 1500);
			sb_str(&in, "\n\n");
			sb_rep(&in, "  \t", 800);
			sb_str(&in, "\r");
			break;
		case 1:
			sb_str(&in, mp_head);
			sb_add(&in, "\0\1", 2);
			sb_rep(&in, "x", 3000);
			sb_str(&in, "\r\n");
			sb_str(&in, mp_short);
			break;
		case 2:
			sb_rep(&in, " ", 3000);
			break;
		case 3:
			sb_str(&in, "X:");
			sb_rep(&in, " ", 3000);
			sb_str(&in, "\r\n\tfoo");
			sb_rep(&in, "\t", 3000);
			break;
		}
		out = linefix_message(in.p, in.len, &n, NULL);
		assert_non_null(out);
		assert_clean(out, n);
		again = linefix_message(out, n, &n2, NULL);
		assert_null(again);
		free(out);
		sb_free(&in);
	}
}

static void
test_odd_input(void **state)
{
	static const char nul[] = "\0\0\n\0\r\0";
	struct sb in = { 0 };
	struct linefix_report r;
	size_t n;
	char *out;
	(void)state;

	out = linefix_message(nul, sizeof(nul) - 1, &n, &r);
	assert_non_null(out);
	assert_int_equal(n, 10);
	assert_memory_equal(out, "\0\0\r\n\0\r\n\0\r\n", 10);
	free(out);

	/* only header-like lines, no empty line, one of them too long */
	sb_str(&in, "A: b\r\nC:");
	sb_rep(&in, "d ", 700);
	out = fix(in.p, in.len, &n, &r);
	assert_int_equal(r.header_lines_folded, 1);
	free(out);
	sb_free(&in);

	/* a part without any header, only a body */
	sb_str(&in, "Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\n\r\n");
	sb_rep(&in, "v", 1100);
	sb_str(&in, "\r\n--q--");
	out = fix(in.p, in.len, &n, &r);
	assert_int_equal(r.parts_qp_encoded, 1);
	assert_non_null(strstr(out, "--q\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nvvv"));
	assert_string_equal(out + n - 7, "--q--\r\n");
	free(out);
	sb_free(&in);
}

static void
test_digest_parts_are_messages(void **state)
{
	struct sb in = { 0 };
	struct linefix_report r;
	size_t n;
	char *out;
	(void)state;

	sb_str(&in, "Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\n"
	    "Subject: in digest\r\n\r\n");
	sb_rep(&in, "m", 1000);
	sb_str(&in, "\r\n--d--\r\n");
	out = fix(in.p, in.len, &n, &r);
	/* the part's body is a message: the fields go into its header */
	assert_non_null(strstr(out, "--d\r\n\r\nSubject: in digest\r\nMIME-Version: 1.0\r\n"
	    "Content-Transfer-Encoding: quoted-printable\r\n\r\nmmm"));
	free(out);
	sb_free(&in);
}

/* levels multiparts, each the first part of the one around it */
static void
nested(size_t levels, struct linefix_report *r)
{
	struct sb in = { 0 };
	size_t n, i;
	char *out;
	char line[128];

	for (i = 0; i < levels; i++) {
		snprintf(line, sizeof(line),
		    "Content-Type: multipart/mixed; boundary=b%zux\r\n\r\n--b%zux\r\n",
		    i, i);
		sb_str(&in, line);
	}
	sb_str(&in, "\r\n");
	sb_rep(&in, "n", 1200);
	sb_str(&in, "\r\n");
	for (i = levels; i-- > 0;) {
		snprintf(line, sizeof(line), "--b%zux--\r\n", i);
		sb_str(&in, line);
	}
	out = fix(in.p, in.len, &n, r);
	free(out);
	sb_free(&in);
}

static void
test_deep_nesting_is_bounded(void **state)
{
	struct linefix_report r;
	(void)state;

	nested(LINEFIX_MAX_DEPTH, &r);
	assert_int_equal(r.parts_qp_encoded, 1);
	assert_int_equal(r.lines_wrapped, 0);
	/* past the depth limit the long line is wrapped, not re-encoded */
	nested(LINEFIX_MAX_DEPTH + 1, &r);
	assert_int_equal(r.parts_qp_encoded, 0);
	assert_int_equal(r.lines_wrapped, 1);
	nested(500, &r);
	assert_int_equal(r.parts_qp_encoded, 0);
	assert_int_equal(r.lines_wrapped, 1);
}

static void
test_large_input(void **state)
{
	size_t big = 8u << 20, n;
	struct linefix_report r;
	char *in = malloc(big), *out;
	(void)state;

	assert_non_null(in);
	/* 8 MB of bare CRs: each one a line */
	memset(in, '\r', big);
	out = linefix_message(in, big, &n, &r);
	assert_non_null(out);
	assert_int_equal(n, 2 * big);
	assert_int_equal(r.bare_eol_fixed, big);
	free(out);
	/* one 8 MB line, no header */
	memset(in, 'x', big);
	out = linefix_message(in, big, &n, &r);
	assert_non_null(out);
	assert_clean(out, n);
	assert_int_equal(r.lines_wrapped, 1);
	free(out);
	/* a body of one 8 MB line, re-encoded */
	memcpy(in, "Subject: big\r\n\r\n", 16);
	out = linefix_message(in, big, &n, &r);
	assert_non_null(out);
	assert_clean(out, n);
	assert_int_equal(r.parts_qp_encoded, 1);
	free(out);
	free(in);
}

/* linefix_7bit(): 8-bit bodies and leaf parts to quoted-printable, nothing else. */
static void
test_to_7bit(void **state)
{
	static const char plain[] = "Subject: x\r\n\r\nascii only\r\n";
	static const char single[] = "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
	    "Content-Transfer-Encoding: 8bit\r\n\r\ncaf\xc3\xa9\r\n";
	static const char mp[] = "Subject: x\r\nMIME-Version: 1.0\r\n"
	    "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
	    "Content-Type: text/plain\r\n\r\nascii\r\n--b\r\n"
	    "Content-Type: text/plain; charset=latin1\r\n\r\nna\xefve\r\n--b--\r\n";
	static const char hdr8[] = "Subject: caf\xc3\xa9\r\n\r\nascii\r\n";
	struct linefix_report r;
	size_t n = 99, i, dn;
	char *out, *z, *d;
	(void)state;

	assert_null(linefix_7bit(plain, sizeof(plain) - 1, &n, &r));
	assert_int_equal(n, 0);

	out = linefix_7bit(single, sizeof(single) - 1, &n, &r);
	assert_non_null(out);
	assert_clean(out, n);
	for (i = 0; i < n; i++)
		assert_true((unsigned char)out[i] < 0x80);
	z = strndup(out, n);
	assert_non_null(z);
	assert_non_null(strstr(z, "Content-Transfer-Encoding: quoted-printable\r\n\r\n"));
	assert_null(strstr(z, ": 8bit"));
	d = qp_decode(body_of(z), strlen(body_of(z)), &dn);
	assert_int_equal(dn, 7);
	assert_memory_equal(d, "caf\xc3\xa9\r\n", 7);
	assert_int_equal(r.parts_qp_encoded, 1);
	free(d);
	free(z);
	free(out);

	/* only the 8-bit leaf part is re-encoded; the ASCII one is untouched */
	out = linefix_7bit(mp, sizeof(mp) - 1, &n, &r);
	assert_non_null(out);
	z = strndup(out, n);
	assert_non_null(z);
	assert_non_null(strstr(z, "--b\r\nContent-Type: text/plain\r\n\r\nascii\r\n--b\r\n"));
	assert_non_null(strstr(z, "charset=latin1\r\nContent-Transfer-Encoding: quoted-printable\r\n"
	    "\r\nna=EFve\r\n--b--\r\n"));
	assert_int_equal(r.parts_qp_encoded, 1);
	free(z);
	free(out);

	/* 8-bit in a header field is not the body's to encode: it stays */
	out = linefix_7bit(hdr8, sizeof(hdr8) - 1, &n, &r);
	assert_non_null(out);
	assert_int_equal(n, sizeof(hdr8) - 1);
	assert_memory_equal(out, hdr8, n);
	free(out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bare_lf),
		cmocka_unit_test(test_bare_cr),
		cmocka_unit_test(test_mixed_endings),
		cmocka_unit_test(test_header_fold_at_space),
		cmocka_unit_test(test_header_fold_without_space),
		cmocka_unit_test(test_header_continuation_folded),
		cmocka_unit_test(test_body_qp_ascii),
		cmocka_unit_test(test_body_8bit_gets_charset),
		cmocka_unit_test(test_cte_8bit_replaced),
		cmocka_unit_test(test_multipart_long_and_short),
		cmocka_unit_test(test_nested_multipart),
		cmocka_unit_test(test_boundary_forms),
		cmocka_unit_test(test_base64_rewrapped),
		cmocka_unit_test(test_qp_part_soft_breaks),
		cmocka_unit_test(test_unparseable_multipart_wraps),
		cmocka_unit_test(test_wrap_avoids_split),
		cmocka_unit_test(test_message_rfc822_part),
		cmocka_unit_test(test_nothing_needed),
		cmocka_unit_test(test_needed_agrees),
		cmocka_unit_test(test_limit_998_999),
		cmocka_unit_test(test_idempotent),
		cmocka_unit_test(test_odd_input),
		cmocka_unit_test(test_to_7bit),
		cmocka_unit_test(test_digest_parts_are_messages),
		cmocka_unit_test(test_deep_nesting_is_bounded),
		cmocka_unit_test(test_large_input),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

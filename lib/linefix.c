/*
 * linefix: see linefix.h.
 *
 * The input is read in place and the output appended, line by line, to
 * a growing buffer.  A line is an offset and a length; its ending (CRLF,
 * bare CR, bare LF or none) is dropped and every line written gets CRLF,
 * so unchanged CRLF text comes out byte for byte.  A part's range ends
 * where the next delimiter line starts: the CRLF that belongs to the
 * delimiter is written as the part's last line ending, the same octets.
 *
 * Each entity is read first (header fields, then what its body needs)
 * and written second, because re-encoding a body changes the header in
 * front of it.  A multipart body is checked as a whole before anything of
 * it is written, so that a structure we cannot trust is wrapped as plain
 * lines rather than half re-encoded.  Nesting adds one pass per level and
 * is bounded, so the work stays linear in the input.
 *
 * Where a rule could go either way we choose what keeps the text a
 * reader sees: soft folding and re-encoding lose nothing, a forced break
 * (rule 6) is the last resort.
 */
#include "config.h"

#include <string.h>
#include <strings.h>

#include "header.h"
#include "linefix.h"
#include "xmalloc.h"

#define QP_LINE		76	/* RFC 2045 6.7 (5): encoded line, "=" included */
#define BOUNDARY_MAX	256	/* RFC 2046 allows 70; longer ones occur and cost nothing */
#define CUT_BACKOFF	8	/* octets a forced break may move back */

struct line {
	size_t start;		/* first octet */
	size_t len;		/* octets before the line ending */
	size_t next;		/* first octet of the next line */
};

struct ctx {
	const char *msg;
	size_t len;
	char *out;
	size_t olen, ocap;
	struct linefix_report *rep;
	int to7bit;		/* linefix_7bit(): 8-bit bodies are re-encoded too */
};

enum kind {
	ENT_MESSAGE,		/* a message: MIME-Version belongs in its header */
	ENT_PART,		/* a body part: no Content-Type means text/plain */
	ENT_DIGEST_PART		/* in multipart/digest: no Content-Type means message/rfc822 */
};

enum ctype { CT_NONE, CT_OTHER, CT_MULTIPART, CT_EMBEDDED, CT_MESSAGE, CT_BAD };
enum cte { CTE_IDENTITY, CTE_QP, CTE_BASE64, CTE_OTHER };

/* What becomes of a body. */
enum plan {
	B_LINES,		/* lines as they are; over-long ones broken by force */
	B_QP,			/* re-encoded quoted-printable */
	B_BASE64,		/* over-long lines cut every 76 octets */
	B_QPSOFT,		/* over-long lines get soft line breaks */
	B_MULTIPART,		/* walked part by part */
	B_MESSAGE		/* an embedded message, repaired as one */
};

struct hdrinfo {
	size_t hdr_end;		/* where the header lines end */
	size_t body;		/* where the body starts */
	int sep;		/* an empty line ended the header */
	int bad;		/* a line neither field nor continuation ended it */
	size_t nct, ncte;	/* Content-Type, Content-Transfer-Encoding fields */
	int mimever;
	size_t ct_start, ct_end, cte_start, cte_end;	/* first field of each */
	enum ctype ct;
	int digest;
	enum cte cte;
	char boundary[BOUNDARY_MAX];
	size_t blen;		/* 0: no usable boundary */
};

static void fix_entity(struct ctx *, size_t, size_t, int, enum kind);

/* Input */

static int
is_wsp(char ch)
{
	return ch == ' ' || ch == '\t';
}

static void
line_at(const struct ctx *c, size_t pos, struct line *l)
{
	const char *m = c->msg;
	size_t i = pos;

	while (i < c->len && m[i] != '\r' && m[i] != '\n')
		i++;
	l->start = pos;
	l->len = i - pos;
	if (i >= c->len)
		l->next = i;
	else if (m[i] == '\r' && i + 1 < c->len && m[i + 1] == '\n')
		l->next = i + 2;
	else
		l->next = i + 1;
}

static int
has_long_line(const struct ctx *c, size_t from, size_t end)
{
	struct line l;
	size_t pos;

	for (pos = from; pos < end; pos = l.next) {
		line_at(c, pos, &l);
		if (l.len > LINEFIX_MAX)
			return 1;
	}
	return 0;
}

/*
 * Bare line endings and over-long lines in one pass.  memchr() finds the
 * LFs; a CR anywhere but right before one is bare.  stop: return at the
 * first finding.
 */
static int
scan(const char *msg, size_t len, size_t *bare, int stop)
{
	const char *p = msg, *end, *nl, *cr, *q, *text_end;
	int overlong = 0;

	*bare = 0;
	if (len == 0)
		return 0;	/* msg may be NULL: no arithmetic on it */
	end = msg + len;
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		text_end = nl != NULL ? nl : end;
		if (nl != NULL) {
			if (nl > p && nl[-1] == '\r')
				text_end = nl - 1;
			else
				(*bare)++;
		}
		for (q = p; (cr = memchr(q, '\r', (size_t)(text_end - q))) != NULL;
		    q = cr + 1) {
			if ((size_t)(cr - q) > LINEFIX_MAX)
				overlong = 1;
			(*bare)++;
		}
		if ((size_t)(text_end - q) > LINEFIX_MAX)
			overlong = 1;
		if (stop && (overlong || *bare > 0))
			return 1;
		p = nl != NULL ? nl + 1 : end;
	}
	return overlong || *bare > 0;
}

/* Output */

static void
put(struct ctx *c, const char *s, size_t n)
{
	size_t need;

	if (n == 0)
		return;
	if (n > c->ocap - c->olen) {
		need = c->olen + n;
		c->ocap = need + need / 2 + 256;
		c->out = xreallocarray(c->out, c->ocap, 1);
	}
	memcpy(c->out + c->olen, s, n);
	c->olen += n;
}

static void
puts_crlf(struct ctx *c, const char *s)
{
	put(c, s, strlen(s));
	put(c, "\r\n", 2);
}

static void
put_line(struct ctx *c, const char *s, size_t n)
{
	put(c, s, n);
	put(c, "\r\n", 2);
}

/*
 * Where to break s[0..n) by force, at limit or up to CUT_BACKOFF octets
 * before it (never at from or before): not inside a UTF-8 sequence and,
 * with dash set, not where the new line would start with "--" and could
 * be taken for a MIME boundary delimiter.  limit < n.
 */
static size_t
cut_point(const char *s, size_t n, size_t from, size_t limit, int dash)
{
	size_t k, p;

	for (k = 0; k <= CUT_BACKOFF && limit - k > from; k++) {
		p = limit - k;
		if (((unsigned char)s[p] & 0xc0) == 0x80)
			continue;
		if (dash && s[p] == '-' && p + 1 < n && s[p + 1] == '-')
			continue;
		return p;
	}
	return limit;
}

/* Rule 6: a body line, broken by force if over the limit. */
static void
put_wrapped(struct ctx *c, const char *s, size_t n)
{
	size_t cut;

	if (n > LINEFIX_MAX)
		c->rep->lines_wrapped++;
	while (n > LINEFIX_MAX) {
		cut = cut_point(s, n, 0, LINEFIX_MAX, 1);
		put_line(c, s, cut);
		s += cut;
		n -= cut;
	}
	put_line(c, s, n);
}

static void
put_lines(struct ctx *c, size_t from, size_t end)
{
	struct line l;
	size_t pos;

	for (pos = from; pos < end; pos = l.next) {
		line_at(c, pos, &l);
		put_wrapped(c, c->msg + l.start, l.len);
	}
}

/*
 * Rule 3: fold a header line.  A fold goes before a space or tab that
 * has something other than white space both before it on its line (and,
 * on a field's first line, after the colon) and after it, so that no
 * line is left empty or blank; where there is none, CRLF SP is inserted.
 * Scanning back from the limit costs at most LINEFIX_MAX per line
 * written, and every two lines written move on by about LINEFIX_MAX.
 */
static void
put_folded(struct ctx *c, const char *s, size_t n, int field)
{
	size_t i = 0, lo, hi, q, f, room, last = n, colon = 0;
	int lead = 0, first = 1, found;

	if (n <= LINEFIX_MAX) {
		put_line(c, s, n);
		return;
	}
	c->rep->header_lines_folded++;
	if (field)
		colon = (size_t)((const char *)memchr(s, ':', n) - s);
	for (q = n; q > 0; q--)
		if (!is_wsp(s[q - 1])) {
			last = q - 1;		/* last octet that is not white space */
			break;
		}
	while (lead + (n - i) > LINEFIX_MAX) {
		room = LINEFIX_MAX - (size_t)lead;
		hi = i + room;			/* a fold at q keeps s[i..q) */
		if (last < n && hi >= last)
			hi = last - 1;
		if (first && field)
			lo = colon + 1;
		else {
			for (f = i; f <= hi && is_wsp(s[f]); f++)
				continue;
			lo = f + 1;
		}
		found = 0;
		if (last < n && lo <= hi && hi < n)
			for (q = hi; q >= lo; q--)
				if (is_wsp(s[q])) {
					found = 1;
					break;
				}
		if (lead)
			put(c, " ", 1);
		if (found) {
			put_line(c, s + i, q - i);
			i = q;
			lead = 0;
		} else {
			q = cut_point(s, n, i, i + room, 0);
			put_line(c, s + i, q - i);
			i = q;
			lead = 1;
		}
		first = 0;
	}
	if (lead)
		put(c, " ", 1);
	put_line(c, s + i, n - i);
}

/* Rule 4: one line of text as quoted-printable, then CRLF. */
static void
put_qp(struct ctx *c, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	char buf[QP_LINE + 4];
	size_t i, col = 0, tl, limit;
	unsigned char ch;

	for (i = 0; i < n; i++) {
		ch = (unsigned char)s[i];
		if ((ch >= 33 && ch <= 126 && ch != '=') ||
		    ((ch == ' ' || ch == '\t') && i + 1 < n)) {
			tl = 1;
		} else
			tl = 3;
		/* the last character needs no room for a soft break after it */
		limit = i + 1 == n ? QP_LINE : QP_LINE - 1;
		if (col + tl > limit) {
			buf[col++] = '=';
			put_line(c, buf, col);
			col = 0;
		}
		if (tl == 1)
			buf[col++] = (char)ch;
		else {
			buf[col++] = '=';
			buf[col++] = hex[ch >> 4];
			buf[col++] = hex[ch & 15];
		}
	}
	put_line(c, buf, col);
}

/* Rule 5: an over-long line of base64 cut every 76 octets. */
static void
put_base64(struct ctx *c, const char *s, size_t n)
{
	if (n > LINEFIX_MAX)
		while (n > QP_LINE) {
			put_line(c, s, QP_LINE);
			s += QP_LINE;
			n -= QP_LINE;
		}
	put_line(c, s, n);
}

/*
 * Rule 5: soft line breaks in an over-long quoted-printable line.  "="
 * and the two octets after it stay together even when they are not a
 * valid escape.
 */
static void
put_qpsoft(struct ctx *c, const char *s, size_t n)
{
	size_t k, t;

	if (n > LINEFIX_MAX)
		while (n > QP_LINE) {
			for (k = 0; k < n; k += t) {
				t = s[k] == '=' ? (n - k < 3 ? n - k : 3) : 1;
				if (k + t > QP_LINE - 1)
					break;
			}
			put(c, s, k);
			put(c, "=\r\n", 3);
			s += k;
			n -= k;
		}
	put_line(c, s, n);
}

/* Header parsing */

/* A field's first line: printable ASCII name, obsolete white space, ':'. */
static int
is_field_line(const char *s, size_t n)
{
	size_t i = 0;

	while (i < n && (unsigned char)s[i] > 32 && (unsigned char)s[i] < 127 &&
	    s[i] != ':')
		i++;
	if (i == 0)
		return 0;
	while (i < n && is_wsp(s[i]))
		i++;
	return i < n && s[i] == ':';
}

/* A field value, CR and LF of its folding counted as white space. */
struct tok {
	const char *p;
	size_t i, n;
};

static void
skip_cfws(struct tok *t)
{
	size_t depth;
	char ch;

	for (;;) {
		while (t->i < t->n && (is_wsp(t->p[t->i]) || t->p[t->i] == '\r' ||
		    t->p[t->i] == '\n'))
			t->i++;
		if (t->i >= t->n || t->p[t->i] != '(')
			return;
		/* a comment, nested, with quoted-pairs; unclosed runs to the end */
		depth = 0;
		while (t->i < t->n) {
			ch = t->p[t->i++];
			if (ch == '\\' && t->i < t->n)
				t->i++;
			else if (ch == '(')
				depth++;
			else if (ch == ')' && --depth == 0)
				break;
		}
	}
}

/* RFC 2045 token */
static size_t
token(struct tok *t, const char **s)
{
	size_t start = t->i;
	unsigned char ch;

	while (t->i < t->n) {
		ch = (unsigned char)t->p[t->i];
		if (ch <= 32 || ch >= 127 || strchr("()<>@,;:\\\"/[]?=", ch) != NULL)
			break;
		t->i++;
	}
	*s = t->p + start;
	return t->i - start;
}

static int
eat(struct tok *t, char ch)
{
	if (t->i < t->n && t->p[t->i] == ch) {
		t->i++;
		return 1;
	}
	return 0;
}

static int
token_is(const char *s, size_t n, const char *word)
{
	return n == strlen(word) && strncasecmp(s, word, n) == 0;
}

/* The value of the field whose first line starts at start, up to end. */
static void
field_value(const struct ctx *c, size_t start, size_t end, struct tok *t)
{
	const char *colon = memchr(c->msg + start, ':', end - start);

	t->p = colon + 1;
	t->n = (size_t)(c->msg + end - t->p);
	t->i = 0;
}

/*
 * An unquoted value.  RFC 2045 makes it a token, but boundaries such as
 * =_abc=1 go out unquoted and other parsers take them whole, so any
 * printable octet but ';', '(' and '"' belongs to it.
 */
static size_t
bare_value(struct tok *t, const char **s)
{
	size_t start = t->i;
	unsigned char ch;

	while (t->i < t->n) {
		ch = (unsigned char)t->p[t->i];
		if (ch <= 32 || ch >= 127 || ch == ';' || ch == '(' || ch == '"')
			break;
		t->i++;
	}
	*s = t->p + start;
	return t->i - start;
}

/*
 * A parameter value into h->boundary when it is the boundary; 0 on a
 * syntax error, a second boundary or one of the wrong length.  Line
 * breaks inside a quoted string are folding and dropped.
 */
static int
param_value(struct tok *t, struct hdrinfo *h, int is_boundary)
{
	const char *s;
	size_t n = 0, k;
	char ch;

	if (is_boundary && h->blen > 0)
		return 0;
	if (eat(t, '"')) {
		for (;;) {
			if (t->i >= t->n)
				return 0;
			ch = t->p[t->i++];
			if (ch == '"')
				break;
			if (ch == '\r' || ch == '\n')
				continue;
			if (ch == '\\') {
				if (t->i >= t->n)
					return 0;
				ch = t->p[t->i++];
			}
			if (is_boundary) {
				if (n >= BOUNDARY_MAX)
					return 0;
				h->boundary[n] = ch;
			}
			n++;
		}
	} else {
		n = bare_value(t, &s);
		if (n == 0 || (is_boundary && n > BOUNDARY_MAX))
			return 0;
		if (is_boundary)
			for (k = 0; k < n; k++)
				h->boundary[k] = s[k];
	}
	if (is_boundary) {
		if (n == 0)
			return 0;
		h->blen = n;
	}
	return 1;
}

static void
parse_ct(const struct ctx *c, struct hdrinfo *h)
{
	struct tok t;
	const char *type, *sub, *attr;
	size_t tn, sn, an;

	field_value(c, h->ct_start, h->ct_end, &t);
	skip_cfws(&t);
	tn = token(&t, &type);
	skip_cfws(&t);
	if (tn == 0 || !eat(&t, '/')) {
		h->ct = CT_BAD;
		return;
	}
	skip_cfws(&t);
	sn = token(&t, &sub);
	if (sn == 0) {
		h->ct = CT_BAD;
		return;
	}
	if (token_is(type, tn, "multipart")) {
		h->ct = CT_MULTIPART;
		h->digest = token_is(sub, sn, "digest");
	} else if (token_is(type, tn, "message"))
		h->ct = token_is(sub, sn, "rfc822") || token_is(sub, sn, "global") ?
		    CT_EMBEDDED : CT_MESSAGE;
	else {
		h->ct = CT_OTHER;
		return;
	}
	if (h->ct != CT_MULTIPART)
		return;
	/* parameters: only the boundary matters; any doubt drops it */
	for (;;) {
		skip_cfws(&t);
		if (t.i >= t.n)
			return;
		if (!eat(&t, ';'))
			break;
		skip_cfws(&t);
		if (t.i >= t.n)
			return;
		an = token(&t, &attr);
		skip_cfws(&t);
		if (an == 0 || !eat(&t, '='))
			break;
		skip_cfws(&t);
		if (!param_value(&t, h, token_is(attr, an, "boundary")))
			break;
	}
	h->blen = 0;
}

static void
parse_cte(const struct ctx *c, struct hdrinfo *h)
{
	struct tok t;
	const char *s;
	size_t n;

	field_value(c, h->cte_start, h->cte_end, &t);
	skip_cfws(&t);
	n = token(&t, &s);
	skip_cfws(&t);
	if (t.i < t.n)
		h->cte = CTE_OTHER;
	else if (token_is(s, n, "7bit") || token_is(s, n, "8bit") ||
	    token_is(s, n, "binary"))
		h->cte = CTE_IDENTITY;
	else if (token_is(s, n, "quoted-printable"))
		h->cte = CTE_QP;
	else if (token_is(s, n, "base64"))
		h->cte = CTE_BASE64;
	else
		h->cte = CTE_OTHER;
}

/*
 * The header of the entity at start: its extent, and the fields that
 * decide what its body is.  The first line that is neither a field nor a
 * continuation ends the header without an empty line (h->bad).
 */
static void
header_read(const struct ctx *c, size_t start, size_t end, struct hdrinfo *h)
{
	struct line l;
	size_t pos, *open = NULL;
	const char *s;

	memset(h, 0, sizeof(*h));
	h->hdr_end = h->body = end;
	for (pos = start; pos < end; pos = l.next) {
		line_at(c, pos, &l);
		s = c->msg + l.start;
		if (l.len == 0) {
			h->hdr_end = pos;
			h->body = l.next;
			h->sep = 1;
			break;
		}
		if (is_wsp(s[0]) && pos != start)
			continue;
		if (open != NULL) {
			*open = pos;
			open = NULL;
		}
		if (!is_field_line(s, l.len)) {
			h->hdr_end = h->body = pos;
			h->bad = 1;
			break;
		}
		if (header_is(s, l.len, "Content-Type")) {
			if (h->nct++ == 0) {
				h->ct_start = pos;
				open = &h->ct_end;
			}
		} else if (header_is(s, l.len, "Content-Transfer-Encoding")) {
			if (h->ncte++ == 0) {
				h->cte_start = pos;
				open = &h->cte_end;
			}
		} else if (header_is(s, l.len, "MIME-Version"))
			h->mimever = 1;
	}
	if (open != NULL)
		*open = h->hdr_end;
	if (h->nct == 1)
		parse_ct(c, h);
	if (h->ncte == 1)
		parse_cte(c, h);
}

static enum plan
plan_body(const struct hdrinfo *h, int depth, enum kind kind)
{
	enum ctype ct = h->ct;

	if (h->bad || h->nct > 1 || h->ncte > 1)
		return B_LINES;
	if (h->nct == 0)
		ct = kind == ENT_DIGEST_PART ? CT_EMBEDDED : CT_NONE;
	if (ct == CT_MULTIPART)
		return h->cte == CTE_IDENTITY && h->blen > 0 &&
		    depth < LINEFIX_MAX_DEPTH ? B_MULTIPART : B_LINES;
	switch (h->cte) {
	case CTE_BASE64:
		return B_BASE64;
	case CTE_QP:
		return B_QPSOFT;
	case CTE_OTHER:
		return B_LINES;
	case CTE_IDENTITY:
		break;
	}
	switch (ct) {
	case CT_NONE:
	case CT_OTHER:
		return B_QP;
	case CT_EMBEDDED:
		return depth < LINEFIX_MAX_DEPTH ? B_MESSAGE : B_LINES;
	default:
		return B_LINES;
	}
}

/* Any 8-bit octet in s[0..n)? */
static int
any_8bit(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80)
			return 1;
	return 0;
}

/* Any 8-bit octet in [from, end), and is it all valid UTF-8? */
static void
scan_8bit(const struct ctx *c, size_t from, size_t end, int *has8, int *utf8)
{
	const unsigned char *p = (const unsigned char *)c->msg;
	size_t i = from, need, k;
	unsigned char lo, hi;

	*has8 = 0;
	*utf8 = 1;
	while (i < end) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		*has8 = 1;
		lo = 0x80;
		hi = 0xbf;
		if (p[i] >= 0xc2 && p[i] <= 0xdf)
			need = 1;
		else if (p[i] >= 0xe0 && p[i] <= 0xef) {
			need = 2;
			if (p[i] == 0xe0)
				lo = 0xa0;
			else if (p[i] == 0xed)
				hi = 0x9f;
		} else if (p[i] >= 0xf0 && p[i] <= 0xf4) {
			need = 3;
			if (p[i] == 0xf0)
				lo = 0x90;
			else if (p[i] == 0xf4)
				hi = 0x8f;
		} else {
			*utf8 = 0;
			return;
		}
		if (end - i <= need) {
			*utf8 = 0;
			return;
		}
		for (k = 1; k <= need; k++) {
			if (p[i + k] < lo || p[i + k] > hi) {
				*utf8 = 0;
				return;
			}
			lo = 0x80;
			hi = 0xbf;
		}
		i += need + 1;
	}
}

/* Multipart */

enum { D_NONE, D_OPEN, D_CLOSE, D_BAD };

/* Is the line a boundary delimiter (RFC 2046 5.1.1), or one in doubt? */
static int
delimiter(const char *s, size_t n, const struct hdrinfo *h)
{
	size_t i = 2 + h->blen;
	int kind = D_OPEN;

	if (n < i || s[0] != '-' || s[1] != '-' ||
	    memcmp(s + 2, h->boundary, h->blen) != 0)
		return D_NONE;
	if (n - i >= 2 && s[i] == '-' && s[i + 1] == '-') {
		kind = D_CLOSE;
		i += 2;
	}
	while (i < n && is_wsp(s[i]))	/* transport padding */
		i++;
	return i == n ? kind : D_BAD;
}

/*
 * Walk a multipart body; 0, having written nothing, when its structure is
 * not one to trust: no delimiter, no closing delimiter, or a line that
 * starts like a delimiter but is not one before the closing delimiter.
 */
static int
put_multipart(struct ctx *c, const struct hdrinfo *h, size_t end, int depth)
{
	struct line l;
	size_t pos, part;
	int d, seen = 0;
	enum kind kind = h->digest ? ENT_DIGEST_PART : ENT_PART;

	for (pos = h->body; pos < end; pos = l.next) {
		line_at(c, pos, &l);
		d = delimiter(c->msg + l.start, l.len, h);
		if (d == D_BAD || (d == D_CLOSE && !seen))
			return 0;
		if (d == D_CLOSE)
			break;
		if (d == D_OPEN)
			seen = 1;
	}
	if (pos >= end)
		return 0;

	/* preamble */
	for (pos = h->body;; pos = l.next) {
		line_at(c, pos, &l);
		if (delimiter(c->msg + l.start, l.len, h) != D_NONE)
			break;
		put_wrapped(c, c->msg + l.start, l.len);
	}
	/* pos: an opening delimiter; the parts */
	for (;;) {
		line_at(c, pos, &l);
		d = delimiter(c->msg + l.start, l.len, h);
		if (l.len <= LINEFIX_MAX)
			put_line(c, c->msg + l.start, l.len);
		else				/* padding dropped */
			put_line(c, c->msg + l.start,
			    2 + h->blen + (d == D_CLOSE ? 2 : 0));
		if (d == D_CLOSE)
			break;
		part = l.next;
		for (pos = part;; pos = l.next) {
			line_at(c, pos, &l);
			if (delimiter(c->msg + l.start, l.len, h) != D_NONE)
				break;
		}
		fix_entity(c, part, pos, depth + 1, kind);
	}
	/* epilogue */
	put_lines(c, l.next, end);
	return 1;
}

/* Entities */

static void
put_header(struct ctx *c, size_t start, const struct hdrinfo *h, int new_cte)
{
	struct line l;
	size_t pos;
	const char *s;

	for (pos = start; pos < h->hdr_end; pos = l.next) {
		line_at(c, pos, &l);
		s = c->msg + l.start;
		if (new_cte && h->ncte > 0 && pos >= h->cte_start &&
		    pos < h->cte_end) {
			if (pos == h->cte_start)
				puts_crlf(c, "Content-Transfer-Encoding: quoted-printable");
			continue;
		}
		put_folded(c, s, l.len, !is_wsp(s[0]));
	}
}

/* Repair the entity in [start, end), depth levels down. */
static void
fix_entity(struct ctx *c, size_t start, size_t end, int depth, enum kind kind)
{
	struct hdrinfo h;
	struct line l;
	enum plan plan;
	size_t pos;
	int has8 = 0, utf8 = 1;

	header_read(c, start, end, &h);
	plan = plan_body(&h, depth, kind);
	if ((plan == B_QP || plan == B_BASE64 || plan == B_QPSOFT) &&
	    !has_long_line(c, h.body, end) &&
	    !(plan == B_QP && c->to7bit &&
	    any_8bit(c->msg + h.body, end - h.body)))
		plan = B_LINES;
	if (plan == B_QP && h.nct == 0)
		scan_8bit(c, h.body, end, &has8, &utf8);

	put_header(c, start, &h, plan == B_QP);
	if (plan == B_QP) {
		if (kind == ENT_MESSAGE && !h.mimever)
			puts_crlf(c, "MIME-Version: 1.0");
		if (has8)
			puts_crlf(c, utf8 ? "Content-Type: text/plain; charset=utf-8" :
			    "Content-Type: text/plain; charset=unknown-8bit");
		if (h.ncte == 0)
			puts_crlf(c, "Content-Transfer-Encoding: quoted-printable");
		c->rep->parts_qp_encoded++;
	}
	if (h.sep)
		put(c, "\r\n", 2);

	switch (plan) {
	case B_MULTIPART:
		if (!put_multipart(c, &h, end, depth))
			put_lines(c, h.body, end);
		return;
	case B_MESSAGE:
		fix_entity(c, h.body, end, depth + 1, ENT_MESSAGE);
		return;
	case B_BASE64:
	case B_QPSOFT:
		c->rep->parts_rewrapped++;
		break;
	default:
		break;
	}
	for (pos = h.body; pos < end; pos = l.next) {
		line_at(c, pos, &l);
		switch (plan) {
		case B_QP:
			put_qp(c, c->msg + l.start, l.len);
			break;
		case B_BASE64:
			put_base64(c, c->msg + l.start, l.len);
			break;
		case B_QPSOFT:
			put_qpsoft(c, c->msg + l.start, l.len);
			break;
		default:
			put_wrapped(c, c->msg + l.start, l.len);
			break;
		}
	}
}

int
linefix_needed(const char *msg, size_t len)
{
	size_t bare;

	return scan(msg, len, &bare, 1);
}

static char *
repair(const char *msg, size_t len, size_t *outlen,
    struct linefix_report *rep, int to7bit)
{
	struct linefix_report dummy;
	struct ctx c;
	size_t bare;
	int needed;

	if (rep == NULL)
		rep = &dummy;
	memset(rep, 0, sizeof(*rep));
	*outlen = 0;
	needed = scan(msg, len, &bare, 0);
	if (to7bit)
		needed = len > 0 && any_8bit(msg, len);
	if (!needed)
		return NULL;
	rep->bare_eol_fixed = bare;
	c.msg = msg;
	c.len = len;
	c.ocap = len + len / 8 + 1024;
	c.out = xmalloc(c.ocap);
	c.olen = 0;
	c.rep = rep;
	c.to7bit = to7bit;
	fix_entity(&c, 0, len, 0, ENT_MESSAGE);
	*outlen = c.olen;
	return c.out;
}

char *
linefix_message(const char *msg, size_t len, size_t *outlen,
    struct linefix_report *rep)
{
	return repair(msg, len, outlen, rep, 0);
}

char *
linefix_7bit(const char *msg, size_t len, size_t *outlen,
    struct linefix_report *rep)
{
	return repair(msg, len, outlen, rep, 1);
}

/*
 * dsnmsg: see dsnmsg.h.
 *
 * The three parts are written into their own buffers first, so that the
 * boundary can be checked against all of them before the message is put
 * together.
 */
#include "config.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsnmsg.h"
#include "linefix.h"
#include "xmalloc.h"

#define LINE_MAX_OCTETS 998     /* RFC 5322 2.1.1, CRLF not counted */
#define FOLD_AT         78      /* preferred line length */
#define TEXT_WIDTH      76      /* wrapping in the human-readable part */
#define LABEL_COL       26      /* value column of the per-recipient lines of the text */
#define BOUNDARY_TRIES  1000

struct dbuf {
	char *p;
	size_t len, cap;
};

static void
db_add(struct dbuf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->p = xreallocarray(b->p, b->cap, 1);
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
db_str(struct dbuf *b, const char *s)
{
	db_add(b, s, strlen(s));
}

static void db_printf(struct dbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
db_printf(struct dbuf *b, const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	s = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	db_add(b, s, (size_t)n);
	free(s);
}

static const char *const action_names[] = {
	[DSN_FAILED] = "failed",
	[DSN_DELAYED] = "delayed",
	[DSN_DELIVERED] = "delivered",
	[DSN_RELAYED] = "relayed",
	[DSN_EXPANDED] = "expanded",
};
#define NACTIONS (sizeof action_names / sizeof action_names[0])

/* A value outside the enum (a caller's bug) counts as a failure: never report success by mistake. */
static enum dsn_action
action_of(const struct dsn_rcpt *r)
{
	return (unsigned)r->action < NACTIONS ? r->action : DSN_FAILED;
}

const char *
dsn_action_name(enum dsn_action a)
{
	return (unsigned)a < NACTIONS ? action_names[a] : "failed";
}

/*
 * One line of printable ASCII from untrusted text: controls (CR, LF, TAB,
 * NUL...) become spaces, runs of spaces one space, no space at either end;
 * non-ASCII octets become '?'.  Longer than DSN_TEXT_MAX: cut, "..." added.
 * Allocated; "" for NULL.
 */
static char *
clean(const char *s)
{
	size_t i, o = 0, n = s ? strlen(s) : 0;
	char *d = xmalloc(n + 4);

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f || c == ' ') {
			if (o > 0 && d[o - 1] != ' ')
				d[o++] = ' ';
			continue;
		}
		d[o++] = c >= 0x80 ? '?' : (char)c;
	}
	while (o > 0 && d[o - 1] == ' ')
		o--;
	if (o > DSN_TEXT_MAX) {
		o = DSN_TEXT_MAX - 3;
		memcpy(d + o, "...", 3);
		o += 3;
	}
	d[o] = '\0';
	return d;
}

/*
 * Append a header field "Name: value" (value from clean()), folded before
 * a space so that lines stay within FOLD_AT where the words allow it;
 * a word that does not fit even in LINE_MAX_OCTETS is cut there (each cut
 * adds one space to the unfolded value).
 */
static void
put_field(struct dbuf *b, const char *name, const char *value)
{
	const char *s = value;
	size_t col = strlen(name) + 1;
	int fresh = 1;          /* nothing but the field name or the fold on this line */

	db_str(b, name);
	db_add(b, ":", 1);
	while (*s != '\0') {
		size_t w = strcspn(s, " ");
		if (!fresh && col + 1 + w > FOLD_AT) {
			db_add(b, "\r\n", 2);
			col = 0;
		}
		db_add(b, " ", 1);
		col++;
		while (col + w > LINE_MAX_OCTETS) {
			size_t n = LINE_MAX_OCTETS - col;
			db_add(b, s, n);
			db_add(b, "\r\n ", 3);
			s += n;
			w -= n;
			col = 1;
		}
		db_add(b, s, w);
		col += w;
		s += w;
		if (*s == ' ')
			s++;
		fresh = 0;
	}
	db_add(b, "\r\n", 2);
}

/* Clean value, then put_field(). */
static void
put_field_clean(struct dbuf *b, const char *name, const char *value)
{
	char *c = clean(value);

	put_field(b, name, c);
	free(c);
}

/*
 * Text for people: s (from clean()) wrapped at TEXT_WIDTH, starting at
 * column col of the current line; continuation lines are indented by
 * indent spaces.  Ends the line.
 */
static void
put_wrapped(struct dbuf *b, size_t col, size_t indent, const char *s)
{
	static const char spaces[] = "                                        ";
	int fresh = 1;

	while (*s != '\0') {
		size_t w = strcspn(s, " ");
		if (!fresh && col + 1 + w > TEXT_WIDTH) {
			db_add(b, "\r\n", 2);
			db_add(b, spaces, indent);
			col = indent;
			fresh = 1;
		}
		if (!fresh) {
			db_add(b, " ", 1);
			col++;
		}
		while (col + w > LINE_MAX_OCTETS) {
			size_t n = LINE_MAX_OCTETS - col;
			db_add(b, s, n);
			db_add(b, "\r\n", 2);
			db_add(b, spaces, indent);
			s += n;
			w -= n;
			col = indent;
		}
		db_add(b, s, w);
		col += w;
		s += w;
		if (*s == ' ')
			s++;
		fresh = 0;
	}
	db_add(b, "\r\n", 2);
}

/* A paragraph of our own text with untrusted pieces: printf, clean, wrap. */
static void para(struct dbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
para(struct dbuf *b, const char *fmt, ...)
{
	va_list ap;
	char raw[DSN_TEXT_MAX * 2], *c;

	va_start(ap, fmt);
	vsnprintf(raw, sizeof raw, fmt, ap);
	va_end(ap);
	c = clean(raw);
	put_wrapped(b, 0, 0, c);
	free(c);
}

/* "  Label:            value" in the per-recipient list of the text. */
static void
put_label(struct dbuf *b, const char *label, const char *value)
{
	char *c = clean(value);

	db_printf(b, "      %-*s", LABEL_COL - 6, label);
	put_wrapped(b, LABEL_COL, LABEL_COL, c);
	free(c);
}

/* Days since 1970-01-01 to a civil date (proleptic Gregorian). */
static void
civil_from_days(long long z, long long *y, unsigned *m, unsigned *d)
{
	long long era, yy;
	unsigned doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = (unsigned)(z - era * 146097);
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	yy = (long long)yoe + era * 400;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = yy + (*m <= 2);
}

void
dsn_date(char *out, size_t outlen, long long t, int tz)
{
	static const char *const wday[] = { "Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed" };
	static const char *const mon[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
	    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	long long days, secs, y;
	unsigned m, d;
	int atz;

	/* keep the arithmetic far from overflow: years 0..9999, offsets within a day */
	if (t < -62135596800LL || t > 253402300799LL)
		t = 0;
	if (tz <= -24 * 60 || tz >= 24 * 60)
		tz = 0;
	t += (long long)tz * 60;
	days = t / 86400;
	secs = t % 86400;
	if (secs < 0) {
		secs += 86400;
		days--;
	}
	civil_from_days(days, &y, &m, &d);
	atz = tz < 0 ? -tz : tz;
	snprintf(out, outlen, "%s, %02u %s %04lld %02lld:%02lld:%02lld %c%02d%02d",
	    wday[((days % 7) + 7) % 7], d, mon[m - 1], y, secs / 3600, secs / 60 % 60, secs % 60,
	    tz < 0 ? '-' : '+', atz / 60, atz % 60);
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/*
 * Decode xtext (RFC 3461 section 4: "+XX" for an octet).  Allocated, or
 * NULL when it is not valid xtext or decodes to anything but printable
 * ASCII (which RFC 3461 requires of ENVID and ORCPT values).
 */
static char *
xtext_decode(const char *s)
{
	size_t i, o = 0, n = strlen(s);
	char *d = xmalloc(n + 1);

	for (i = 0; i < n; i++) {
		int c = (unsigned char)s[i];
		if (c == '+') {
			int hi = i + 2 < n ? hexval((unsigned char)s[i + 1]) : -1;
			int lo = hi >= 0 ? hexval((unsigned char)s[i + 2]) : -1;
			if (lo < 0)
				goto bad;
			c = hi * 16 + lo;
			i += 2;
		}
		if (c < 0x20 || c > 0x7e)
			goto bad;
		d[o++] = (char)c;
	}
	d[o] = '\0';
	return d;
bad:
	free(d);
	return NULL;
}

/* An xtext value for the report: decoded when that works, else as received, cleaned. */
static char *
xtext_value(const char *s)
{
	char *d = xtext_decode(s), *c;

	if (d == NULL)
		return clean(s);
	c = clean(d);
	free(d);
	return c;
}

/* "rfc822;a@b" (ORCPT, xtext) to the Original-Recipient value. */
static char *
orcpt_value(const char *orcpt)
{
	const char *semi = strchr(orcpt, ';');
	char *type, *addr, *v;

	if (semi == NULL) {
		addr = xtext_value(orcpt);
		v = xasprintf("rfc822;%s", addr);
		free(addr);
		return v;
	}
	v = xstrndup(orcpt, (size_t)(semi - orcpt));
	type = clean(v);
	free(v);
	addr = xtext_value(semi + 1);
	v = xasprintf("%s;%s", type[0] ? type : "rfc822", addr);
	free(type);
	free(addr);
	return v;
}

/*
 * Final-Recipient value: "rfc822; addr" for ASCII, "utf-8; addr" with
 * every non-ASCII character (and '\', '+', '=') as \x{HEX} (RFC 6533
 * utf-8-addr-xtext) otherwise.  Octets that are not UTF-8 become '?'.
 */
static char *
final_value(const char *addr)
{
	struct dbuf b = { NULL, 0, 0 };
	const unsigned char *s = (const unsigned char *)(addr ? addr : "");
	char *c, *v;
	int utf8 = 0;
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		if (s[i] >= 0x80)
			utf8 = 1;
	if (!utf8) {
		c = clean(addr);
		v = xasprintf("rfc822; %s", c);
		free(c);
		return v;
	}
	db_str(&b, "utf-8; ");
	for (i = 0; s[i] != '\0' && b.len < DSN_TEXT_MAX; ) {
		uint32_t cp = s[i];
		size_t k, n = cp < 0x80 ? 1 : (cp & 0xe0) == 0xc0 ? 2 : (cp & 0xf0) == 0xe0 ? 3 :
		    (cp & 0xf8) == 0xf0 ? 4 : 0;
		if (n == 0)
			goto invalid;
		if (n > 1)
			cp &= 0x3fu >> (n - 1);
		for (k = 1; k < n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				goto invalid;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			goto invalid;
		if (cp > 0x20 && cp < 0x7f && cp != '\\' && cp != '+' && cp != '=') {
			char ch = (char)cp;
			db_add(&b, &ch, 1);
		} else if (cp <= 0x20 || cp == 0x7f)
			db_add(&b, "?", 1);
		else
			db_printf(&b, "\\x{%02X}", (unsigned)cp);
		i += n;
		continue;
invalid:
		db_add(&b, "?", 1);
		i++;
	}
	return b.p;
}

/* RFC 3463 status code whose class fits the action; else the action's default. */
static const char *
status_for(const struct dsn_rcpt *r)
{
	const char *s = r->status, *p;
	char want = action_of(r) == DSN_FAILED ? '5' : action_of(r) == DSN_DELAYED ? '4' : '2';
	size_t n;
	int k;

	if (s == NULL || strlen(s) > 9)
		goto dflt;
	if (!(s[0] == want || (action_of(r) == DSN_FAILED && s[0] == '4')) || s[1] != '.')
		goto dflt;
	for (p = s + 2, k = 0; k < 2; k++) {
		n = strspn(p, "0123456789");
		if (n < 1 || n > 3 || p[n] != (k == 0 ? '.' : '\0'))
			goto dflt;
		p += n + 1;
	}
	return s;
dflt:
	return want == '5' ? "5.0.0" : want == '4' ? "4.0.0" : "2.0.0";
}

/* Does the (cleaned) text start like an SMTP reply: "NNN", "NNN ...", "NNN-..."? */
static int
is_smtp_reply(const char *s)
{
	return s[0] >= '2' && s[0] <= '5' && s[1] >= '0' && s[1] <= '9' &&
	    s[2] >= '0' && s[2] <= '9' && (s[3] == '\0' || s[3] == ' ' || s[3] == '-');
}

/* A dot-atom for a Message-ID: [A-Za-z0-9_-] and single inner dots, at most 64 octets. */
static void
atomize(char *out, size_t outlen, const char *s)
{
	size_t o = 0;

	for (; s != NULL && *s != '\0' && o + 1 < outlen && o < 64; s++) {
		char c = *s;
		if (c == '.' && (o == 0 || out[o - 1] == '.'))
			c = '_';
		else if (!(c == '.' || c == '-' || c == '_' || (c >= '0' && c <= '9') ||
		    (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')))
			c = '_';
		out[o++] = c;
	}
	if (o > 0 && out[o - 1] == '.')
		out[o - 1] = '_';
	if (o == 0)
		out[o++] = 'x';
	out[o] = '\0';
}

/* Display name as a phrase: quoted when it has anything but atext and spaces. */
static char *
display_name(const char *s)
{
	struct dbuf b = { NULL, 0, 0 };
	char *c = clean(s);
	size_t i;

	if (strcspn(c, "()<>[]:;@\\,.\"") == strlen(c))
		return c;
	db_add(&b, "\"", 1);
	for (i = 0; c[i] != '\0'; i++) {
		if (c[i] == '"' || c[i] == '\\')
			db_add(&b, "\\", 1);
		db_add(&b, c + i, 1);
	}
	db_add(&b, "\"", 1);
	free(c);
	return b.p;
}

/*
 * Length of the header section of msg: field lines ("Name:") and their
 * continuation lines, up to the empty line (*complete = 1; the empty line
 * not counted), the first line that is neither, or the end.
 */
static size_t
header_section(const char *msg, size_t len, int *complete)
{
	size_t i = 0;

	*complete = 0;
	while (i < len) {
		size_t e = i, k;
		while (e < len && msg[e] != '\n')
			e++;
		if (msg[i] == '\n' || (msg[i] == '\r' && i + 1 < len && msg[i + 1] == '\n')) {
			*complete = 1;
			return i;
		}
		if (msg[i] == ' ' || msg[i] == '\t') {
			if (i == 0)
				return 0;
		} else {
			size_t j;
			for (k = i; k < e && (unsigned char)msg[k] > ' ' && (unsigned char)msg[k] < 0x7f &&
			    msg[k] != ':'; k++)
				;
			/* white space before the colon is allowed (obsolete syntax) */
			for (j = k; j < e && (msg[j] == ' ' || msg[j] == '\t'); j++)
				;
			if (k == i || j >= e || msg[j] != ':')
				return i;
		}
		i = e < len ? e + 1 : e;
	}
	return i;
}

/* The returned original, ready to be a MIME part body (CRLF, lines within the limit). */
struct ret_part {
	struct dbuf body;
	int full;                       /* message/rfc822, else text/rfc822-headers */
	int cut;                        /* ret_full was asked but the message was too large */
	int eightbit;
};

static void
add_fixed(struct dbuf *b, const char *s, size_t n)
{
	size_t fixlen;
	char *fix = linefix_needed(s, n) ? linefix_message(s, n, &fixlen, NULL) : NULL;

	if (fix != NULL) {
		db_add(b, fix, fixlen);
		free(fix);
	} else
		db_add(b, s, n);
	if (b->len > 0 && b->p[b->len - 1] != '\n')
		db_add(b, "\r\n", 2);
}

static void
build_returned(const struct dsn_msg *m, struct ret_part *rp)
{
	const char *msg = m->orig_msg;
	size_t len = msg != NULL ? m->orig_len : 0, i;
	int complete;

	memset(rp, 0, sizeof *rp);
	rp->full = m->ret_full && len > 0;
	if (rp->full && m->full_limit > 0 && len > m->full_limit) {
		rp->full = 0;
		rp->cut = 1;
	}
	if (rp->full) {
		struct dbuf fixed = { NULL, 0, 0 };
		size_t h;
		add_fixed(&fixed, msg, len);
		h = header_section(fixed.p, fixed.len, &complete);
		if (!complete && h < fixed.len) {
			/* no empty line after the header: add it, or the rest would be taken as fields */
			db_add(&rp->body, fixed.p, h);
			db_add(&rp->body, "\r\n", 2);
			db_add(&rp->body, fixed.p + h, fixed.len - h);
			free(fixed.p);
		} else
			rp->body = fixed;
	} else {
		size_t h = header_section(msg, len, &complete);
		if (h > 0)
			add_fixed(&rp->body, msg, h);
	}
	for (i = 0; i < rp->body.len; i++)
		if ((unsigned char)rp->body.p[i] >= 0x80) {
			rp->eightbit = 1;
			break;
		}
}

static const char *
intro_for(enum dsn_action a)
{
	switch (a) {
	case DSN_FAILED:
		return "Delivery to the following recipients failed. No further attempts will be "
		    "made for them:";
	case DSN_DELAYED:
		return "Delivery to the following recipients is delayed. The message stays in the "
		    "queue and delivery will be retried; you do not need to send it again:";
	case DSN_DELIVERED:
		return "The message was delivered to the following recipients:";
	case DSN_RELAYED:
		return "The message was passed on to the following recipients through a server "
		    "that does not send delivery reports, so no further report will come for them:";
	case DSN_EXPANDED:
		return "The message was delivered to the following recipients, which were expanded "
		    "into further recipients:";
	}
	return "";
}

static void
build_text(const struct dsn_msg *m, enum dsn_action kind, const struct ret_part *rp,
    const char *host, struct dbuf *b)
{
	size_t i;
	unsigned a;
	char date[40];

	para(b, "mailrelay on %s reports on a message you sent.", host);
	db_str(b, "\r\n");
	if (kind == DSN_FAILED)
		para(b, "Your message could not be delivered to one or more of its recipients. "
		    "The details are below.");
	else if (kind == DSN_DELAYED)
		para(b, "Your message has not yet been delivered to one or more of its recipients. "
		    "This is a warning only: nothing needs to be done now.");
	else
		para(b, "This is the delivery report that was requested for your message.");
	db_str(b, "\r\n");
	if (m->queue_id != NULL)
		put_label(b, "Queue ID:", m->queue_id);
	if (m->arrival != 0) {
		dsn_date(date, sizeof date, m->arrival, m->tz_offset_minutes);
		put_label(b, "Arrived:", date);
	}
	for (a = 0; a < NACTIONS; a++) {
		int any = 0;
		for (i = 0; i < m->nrcpt; i++)
			any |= action_of(&m->rcpts[i]) == (enum dsn_action)a;
		if (!any)
			continue;
		db_str(b, "\r\n");
		para(b, "%s", intro_for((enum dsn_action)a));
		for (i = 0; i < m->nrcpt; i++) {
			const struct dsn_rcpt *r = &m->rcpts[i];
			char *c, *v;
			if (action_of(r) != (enum dsn_action)a)
				continue;
			c = clean(r->final);
			v = xasprintf("<%s>", c);
			db_str(b, "\r\n  ");
			put_wrapped(b, 2, 4, v);
			free(v);
			free(c);
			if (r->orig != NULL) {
				c = orcpt_value(r->orig);
				put_label(b, "Original recipient:", c);
				free(c);
			}
			put_label(b, "Status:", status_for(r));
			if (r->remote_mta != NULL)
				put_label(b, "Remote server:", r->remote_mta);
			if (r->diagnostic != NULL) {
				c = clean(r->diagnostic);
				if (c[0] != '\0')
					put_label(b, is_smtp_reply(c) ? "Server reply:" : "Reason:", c);
				free(c);
			}
			if (r->last_attempt != 0) {
				dsn_date(date, sizeof date, r->last_attempt, m->tz_offset_minutes);
				put_label(b, "Last attempt:", date);
			}
			if (action_of(r) == DSN_DELAYED && r->will_retry_until != 0) {
				dsn_date(date, sizeof date, r->will_retry_until, m->tz_offset_minutes);
				put_label(b, "Will retry until:", date);
			}
		}
	}
	db_str(b, "\r\n");
	if (m->still_pending > 0 && kind != DSN_DELAYED) {
		para(b, "Delivery to %zu other recipient%s of this message is still being "
		    "attempted; %s not part of this report.", m->still_pending,
		    m->still_pending == 1 ? "" : "s", m->still_pending == 1 ? "it is" : "they are");
		db_str(b, "\r\n");
	}
	if (rp->cut)
		para(b, "The delivery report follows in machine-readable form. The message was "
		    "larger than %zu octets, so only its header is returned.", m->full_limit);
	else
		para(b, "The delivery report follows in machine-readable form, then %s.",
		    rp->full ? "the message" : "the header of the message");
	if (m->queue_id != NULL)
		para(b, "Please quote the queue ID %s when asking the administrator of %s "
		    "about this message.", m->queue_id, host);
}

static void
build_status(const struct dsn_msg *m, const char *host, struct dbuf *b)
{
	char date[40], *v;
	size_t i;

	v = xasprintf("dns; %s", host);
	put_field(b, "Reporting-MTA", v);
	free(v);
	if (m->envid != NULL && m->envid[0] != '\0') {
		v = xtext_value(m->envid);
		put_field(b, "Original-Envelope-Id", v);
		free(v);
	}
	if (m->queue_id != NULL)
		put_field_clean(b, "X-Mailrelay-Queue-ID", m->queue_id);
	if (m->arrival != 0) {
		dsn_date(date, sizeof date, m->arrival, m->tz_offset_minutes);
		put_field(b, "Arrival-Date", date);
	}
	for (i = 0; i < m->nrcpt; i++) {
		const struct dsn_rcpt *r = &m->rcpts[i];
		db_str(b, "\r\n");
		if (r->orig != NULL) {
			v = orcpt_value(r->orig);
			put_field(b, "Original-Recipient", v);
			free(v);
		}
		v = final_value(r->final);
		put_field(b, "Final-Recipient", v);
		free(v);
		put_field(b, "Action", dsn_action_name(action_of(r)));
		put_field(b, "Status", status_for(r));
		if (r->remote_mta != NULL) {
			char *c = clean(r->remote_mta);
			v = xasprintf("dns; %s", c);
			put_field(b, "Remote-MTA", v);
			free(c);
			free(v);
		}
		if (r->diagnostic != NULL) {
			char *c = clean(r->diagnostic);
			if (c[0] != '\0') {
				v = xasprintf("%s; %s", is_smtp_reply(c) ? "smtp" : "X-Mailrelay", c);
				put_field(b, "Diagnostic-Code", v);
				free(v);
			}
			free(c);
		}
		if (r->last_attempt != 0) {
			dsn_date(date, sizeof date, r->last_attempt, m->tz_offset_minutes);
			put_field(b, "Last-Attempt-Date", date);
		}
		if (action_of(r) == DSN_DELAYED && r->will_retry_until != 0) {
			dsn_date(date, sizeof date, r->will_retry_until, m->tz_offset_minutes);
			put_field(b, "Will-Retry-Until", date);
		}
	}
}

static int
contains(const struct dbuf *b, const char *needle, size_t n)
{
	const char *p = b->p, *end = b->p + b->len;

	if (b->len < n)
		return 0;
	while ((p = memchr(p, needle[0], (size_t)(end - p) - n + 1)) != NULL) {
		if (memcmp(p, needle, n) == 0)
			return 1;
		if (++p > end - n)
			break;
	}
	return 0;
}

/*
 * "=_SEED_HASH": the seed's [A-Za-z0-9.] (up to 40) and a 64-bit FNV-1a
 * hash of the seed and the attempt number.  '=' and '_' cannot start a
 * base64 line nor appear as "=_" in quoted-printable, so most content can
 * never contain it; the caller still checks.
 */
static void
make_boundary(char *out, size_t outlen, const char *seed, unsigned attempt)
{
	uint64_t h = 14695981039346656037ULL;
	char clean_seed[41];
	size_t i, o = 0;

	for (i = 0; seed != NULL && seed[i] != '\0'; i++) {
		char c = seed[i];
		h = (h ^ (unsigned char)c) * 1099511628211ULL;
		if (o < 40 && (c == '.' || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
		    (c >= 'a' && c <= 'z')))
			clean_seed[o++] = c;
	}
	clean_seed[o] = '\0';
	for (i = 0; i < 4; i++)
		h = (h ^ ((attempt >> (8 * i)) & 0xff)) * 1099511628211ULL;
	snprintf(out, outlen, "=_%s_%016llx", clean_seed, (unsigned long long)h);
}

static void
put_part_header(struct dbuf *b, const char *boundary, const char *type, const char *descr,
    int eightbit)
{
	db_printf(b, "\r\n--%s\r\n", boundary);
	db_printf(b, "Content-Description: %s\r\n", descr);
	db_printf(b, "Content-Type: %s\r\n", type);
	if (eightbit)
		db_str(b, "Content-Transfer-Encoding: 8bit\r\n");
	db_str(b, "\r\n");
}

char *
dsn_compose(const struct dsn_msg *m, size_t *outlen, int *eightbit)
{
	struct dbuf out = { NULL, 0, 0 }, text = { NULL, 0, 0 }, status = { NULL, 0, 0 };
	struct ret_part rp;
	enum dsn_action kind = DSN_DELIVERED;
	char boundary[80], date[40], qid[70], hostatom[70], *host, *v, *name, *from;
	const char *subject;
	unsigned attempt;
	size_t i;

	*outlen = 0;
	if (eightbit != NULL)
		*eightbit = 0;
	if (m->nrcpt == 0 || m->rcpts == NULL || m->to == NULL || m->to[0] == '\0')
		return NULL;
	for (i = 0; i < m->nrcpt; i++) {
		if (action_of(&m->rcpts[i]) == DSN_FAILED)
			kind = DSN_FAILED;
		else if (action_of(&m->rcpts[i]) == DSN_DELAYED && kind != DSN_FAILED)
			kind = DSN_DELAYED;
	}
	subject = kind == DSN_FAILED ? "Undelivered Mail Returned to Sender" :
	    kind == DSN_DELAYED ? "Delayed Mail (still being retried)" :
	    "Successful Mail Delivery Report";
	host = clean(m->reporting_mta != NULL && m->reporting_mta[0] ? m->reporting_mta : "localhost");

	build_returned(m, &rp);
	build_text(m, kind, &rp, host, &text);
	build_status(m, host, &status);
	for (attempt = 0; attempt < BOUNDARY_TRIES; attempt++) {
		size_t n;
		make_boundary(boundary, sizeof boundary, m->boundary_seed, attempt);
		n = strlen(boundary);
		if (!contains(&text, boundary, n) && !contains(&status, boundary, n) &&
		    !contains(&rp.body, boundary, n))
			break;
	}

	/* the header */
	name = display_name(m->from_display ? m->from_display : "Mail Delivery System");
	from = m->from_addr ? clean(m->from_addr) : xasprintf("MAILER-DAEMON@%s", host);
	v = name[0] != '\0' ? xasprintf("%s <%s>", name, from) : xasprintf("<%s>", from);
	put_field(&out, "From", v);
	free(v);
	free(name);
	free(from);
	put_field_clean(&out, "To", m->to);
	put_field(&out, "Subject", subject);
	dsn_date(date, sizeof date, m->now, m->tz_offset_minutes);
	put_field(&out, "Date", date);
	atomize(qid, sizeof qid, m->queue_id ? m->queue_id : "dsn");
	atomize(hostatom, sizeof hostatom, host);
	db_printf(&out, "Message-ID: <%s.%lld.%s@%s>\r\n", qid, m->now,
	    kind == DSN_FAILED ? "failed" : kind == DSN_DELAYED ? "delayed" : "report", hostatom);
	db_str(&out, "Auto-Submitted: auto-replied\r\n");
	db_str(&out, "MIME-Version: 1.0\r\n");
	db_printf(&out, "Content-Type: multipart/report; report-type=delivery-status;\r\n"
	    "\tboundary=\"%s\"\r\n", boundary);
	if (rp.eightbit)
		db_str(&out, "Content-Transfer-Encoding: 8bit\r\n");
	db_str(&out, "\r\nA delivery report in MIME format: a text part, the report, the message.\r\n");

	/* the parts */
	put_part_header(&out, boundary, "text/plain; charset=us-ascii", "Notification", 0);
	db_add(&out, text.p, text.len);
	put_part_header(&out, boundary, "message/delivery-status", "Delivery report", 0);
	db_add(&out, status.p, status.len);
	put_part_header(&out, boundary, rp.full ? "message/rfc822" : "text/rfc822-headers",
	    rp.full ? "Returned message" : "Returned message header", rp.eightbit);
	if (rp.body.len > 0)
		db_add(&out, rp.body.p, rp.body.len);
	db_printf(&out, "\r\n--%s--\r\n", boundary);

	free(text.p);
	free(status.p);
	free(rp.body.p);
	free(host);
	if (eightbit != NULL)
		*eightbit = rp.eightbit;
	*outlen = out.len;
	return out.p;
}

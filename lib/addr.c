/*
 * addr: see addr.h.
 *
 * The list walker is one pass over the value.  Outside angle brackets the
 * mailbox's text is collected without white space and comments (so
 * "root (Cron Daemon)" yields "root"); inside them the angle address is
 * collected and wins.  A top-level ':' starts a group (its name is
 * dropped), ',' and ';' end a mailbox.  Alongside the text, the span of
 * the address in the value is kept so that it can be replaced in place.
 */
#include "config.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "xmalloc.h"

struct mbox {
	char bare[ADDR_MAX + 1];
	size_t nbare;
	size_t bare_start, bare_end;
	int bare_words;         /* atoms separated by white space or comments */
	int bare_gap;           /* white space or a comment since the last character */
	char angle[ADDR_MAX + 1];
	size_t nangle;
	size_t angle_start, angle_end;
	size_t route_end;       /* obsolete route: where the address after ':' starts */
	int route_seen;         /* the angle address had its first ':' */
	int routed;             /* ... which ended a route: angle[] holds what follows it */
	int have_angle;
	int overflow;
};

static void
mbox_reset(struct mbox *m)
{
	memset(m, 0, sizeof *m);
}

static void
put(char *buf, size_t *n, int *overflow, char c)
{
	if (*n >= ADDR_MAX) {
		*overflow = 1;
		return;
	}
	buf[(*n)++] = c;
	buf[*n] = '\0';
}

/* A character of the bare (not angle) address at value offset i. */
static void
put_bare(struct mbox *m, char c, size_t i)
{
	if (m->nbare == 0)
		m->bare_start = i;
	else if (m->bare_gap) {
		char last = m->bare[m->nbare - 1];
		/* "john . doe @ example.com" is obsolete but one address; "John Doe" is two words */
		if (last != '.' && last != '@' && c != '.' && c != '@')
			m->bare_words++;
	}
	m->bare_gap = 0;
	m->bare_end = i + 1;
	put(m->bare, &m->nbare, &m->overflow, c);
}

/* Report the mailbox; returns 1 if one was reported, 0 if empty, -1 when malformed. */
static int
mbox_emit(struct mbox *m, int group, addr_mbox_fn fn, void *arg)
{
	struct addr_mbox mb;

	if (m->overflow)
		return -1;
	memset(&mb, 0, sizeof mb);
	mb.group = group;
	if (m->have_angle) {
		mb.addr = m->angle;
		mb.start = m->angle_start;
		mb.end = m->angle_end;
		mb.angle = 1;
		/* obsolete route "@a,@b:user@d": the address is what follows it */
		if (m->routed)
			mb.start = m->route_end;
		else if (m->angle[0] == '@')
			return -1;
	} else {
		if (m->bare_words > 0)
			return -1;	/* "John Doe" without an address */
		mb.addr = m->bare;
		mb.start = m->bare_start;
		mb.end = m->bare_end;
	}
	if (*mb.addr == '\0')
		return 0;	/* "<>" or an empty list element */
	fn(&mb, arg);
	return 1;
}

int
addr_list_walk(const char *val, size_t len, addr_mbox_fn fn, void *arg)
{
	struct mbox m;
	size_t i;
	int depth = 0, quoted = 0, in_angle = 0, group = 0, count = 0, rc;

	mbox_reset(&m);
	for (i = 0; i < len; i++) {
		char c = val[i];

		/* NUL and controls other than folding white space never belong in a header */
		if ((unsigned char)c < 0x20 && c != '\t' && c != '\r' && c != '\n')
			return -1;
		if (c == 0x7f)
			return -1;

		if (quoted) {
			size_t at = i;
			if (c == '\\' && i + 1 < len) {
				if (in_angle)
					put(m.angle, &m.nangle, &m.overflow, c);
				else
					put_bare(&m, c, i);
				c = val[++i];
				if ((unsigned char)c < 0x20 || c == 0x7f)
					return -1;	/* quoted-pair is VCHAR or WSP; we take VCHAR only */
				at = i;
			} else if (c == '"')
				quoted = 0;
			if (c == '\r' || c == '\n')
				continue;	/* folding */
			if (c == '\t')
				c = ' ';	/* white space in a quoted string; SMTP allows only SP */
			if (in_angle)
				put(m.angle, &m.nangle, &m.overflow, c);
			else {
				m.bare_gap = 0;	/* white space inside quotes is part of the word */
				put_bare(&m, c, at);
			}
			continue;
		}
		if (depth > 0) {
			if (c == '\\' && i + 1 < len)
				i++;
			else if (c == '(')
				depth++;
			else if (c == ')')
				depth--;
			continue;
		}
		switch (c) {
		case '(':
			depth = 1;
			if (!in_angle)
				m.bare_gap = 1;
			break;
		case '"':
			quoted = 1;
			if (in_angle)
				put(m.angle, &m.nangle, &m.overflow, c);
			else
				put_bare(&m, c, i);
			break;
		case '<':
			if (in_angle || m.have_angle)
				return -1;
			in_angle = 1;
			m.have_angle = 1;
			m.nangle = 0;
			m.angle[0] = '\0';
			m.angle_start = m.route_end = i + 1;
			break;
		case '>':
			if (!in_angle)
				return -1;
			in_angle = 0;
			m.angle_end = i;
			break;
		case ' ': case '\t': case '\r': case '\n':
			if (!in_angle)
				m.bare_gap = 1;
			break;
		case ':':
			if (in_angle) {
				if (!m.route_seen && m.angle[0] == '@') {
					/*
					 * The route ends at the first ':' and is dropped:
					 * the address after it has all of ADDR_MAX, as it
					 * has when a rewrite puts another in its place.
					 */
					m.route_seen = m.routed = 1;
					m.route_end = i + 1;
					m.nangle = 0;
					m.angle[0] = '\0';
					break;
				}
				m.route_seen = 1;
				put(m.angle, &m.nangle, &m.overflow, c);
				break;
			}
			/* group: what came before was its display name */
			if (group)
				return -1;	/* groups do not nest */
			group = 1;
			mbox_reset(&m);
			break;
		case ',':
		case ';':
			if (in_angle) {
				put(m.angle, &m.nangle, &m.overflow, c);
				break;
			}
			if ((rc = mbox_emit(&m, group, fn, arg)) == -1)
				return -1;
			count += rc;
			mbox_reset(&m);
			if (c == ';')
				group = 0;
			break;
		default:
			if (in_angle)
				put(m.angle, &m.nangle, &m.overflow, c);
			else if (!m.have_angle)
				put_bare(&m, c, i);
			/* text after <address> is ignored, as it always was */
			break;
		}
	}
	if (quoted || depth > 0 || in_angle)
		return -1;
	if ((rc = mbox_emit(&m, group, fn, arg)) == -1)
		return -1;
	return count + rc;
}

struct parse_arg {
	addr_fn fn;
	void *arg;
};

static void
parse_cb(const struct addr_mbox *m, void *arg)
{
	struct parse_arg *p = arg;

	p->fn(m->addr, p->arg);
}

int
addr_list_parse(const char *val, size_t len, addr_fn fn, void *arg)
{
	struct parse_arg p = { fn, arg };

	return addr_list_walk(val, len, parse_cb, &p);
}

/* ------------------------------------------------------------------ */

struct repl {
	size_t start, end;
	char *with;
};

struct rewrite_arg {
	char *(*fn)(const char *addr, void *arg);
	void *arg;
	struct repl *r;
	size_t n;
};

static void
rewrite_cb(const struct addr_mbox *m, void *arg)
{
	struct rewrite_arg *a = arg;
	char *with = a->fn(m->addr, a->arg);

	if (with == NULL)
		return;
	a->r = xreallocarray(a->r, a->n + 1, sizeof *a->r);
	a->r[a->n].start = m->start;
	a->r[a->n].end = m->end;
	a->r[a->n].with = with;
	a->n++;
}

char *
addr_list_rewrite(const char *val, size_t len, char *(*fn)(const char *addr, void *arg),
    void *arg, size_t *outlen)
{
	struct rewrite_arg a = { fn, arg, NULL, 0 };
	char *out = NULL;
	size_t i, total, o = 0, from = 0;

	if (addr_list_walk(val, len, rewrite_cb, &a) == -1 || a.n == 0)
		goto done;
	total = len + 1;
	for (i = 0; i < a.n; i++)
		total += strlen(a.r[i].with);
	out = xmalloc(total);
	for (i = 0; i < a.n; i++) {
		size_t wl = strlen(a.r[i].with);
		memcpy(out + o, val + from, a.r[i].start - from);
		o += a.r[i].start - from;
		memcpy(out + o, a.r[i].with, wl);
		o += wl;
		from = a.r[i].end;
	}
	memcpy(out + o, val + from, len - from);
	o += len - from;
	out[o] = '\0';
	*outlen = o;
done:
	for (i = 0; i < a.n; i++)
		free(a.r[i].with);
	free(a.r);
	return out;
}

/* ------------------------------------------------------------------ */

/* RFC 5322 atext, plus UTF-8 octets (RFC 6531 extends atext with UTF8-non-ascii). */
static int
is_atext(unsigned char c)
{
	if (c >= 0x80)
		return 1;
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return 1;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* Well-formed UTF-8 (no overlongs, no surrogates, at most U+10FFFF)?  Returns the bytes used, 0 if not. */
static size_t
utf8_len(const unsigned char *p)
{
	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		return (p[1] & 0xc0) == 0x80 ? 2 : 0;
	if (p[0] >= 0xe0 && p[0] <= 0xef) {
		if ((p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
			return 0;
		if (p[0] == 0xe0 && p[1] < 0xa0)
			return 0;
		if (p[0] == 0xed && p[1] >= 0xa0)
			return 0;
		return 3;
	}
	if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		if ((p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
			return 0;
		if (p[0] == 0xf0 && p[1] < 0x90)
			return 0;
		if (p[0] == 0xf4 && p[1] >= 0x90)
			return 0;
		return 4;
	}
	return 0;
}

static int
utf8_valid(const char *s, size_t n)
{
	size_t i = 0, l;

	while (i < n) {
		if ((l = utf8_len((const unsigned char *)s + i)) == 0 || i + l > n)
			return 0;
		i += l;
	}
	return 1;
}

/* The '@' that separates local part and domain: the last one outside quotes. */
static const char *
find_at(const char *addr)
{
	const char *p, *at = NULL;
	int quoted = 0;

	for (p = addr; *p; p++) {
		if (quoted && *p == '\\' && p[1] != '\0')
			p++;
		else if (*p == '"')
			quoted = !quoted;
		else if (!quoted && *p == '@')
			at = p;
	}
	return at;
}

const char *
addr_domain(const char *addr)
{
	const char *at = find_at(addr);

	return at ? at + 1 : NULL;
}

static int
check_local(const char *s, size_t n, const char **why)
{
	size_t i;

	if (n == 0) {
		*why = "empty local part";
		return -1;
	}
	if (n > 64) {
		*why = "local part longer than 64 octets";
		return -1;
	}
	if (!utf8_valid(s, n)) {
		*why = "local part is not valid UTF-8";
		return -1;
	}
	if (s[0] == '"') {
		/* quoted-string: qtext and quoted-pairs, SP allowed */
		if (n < 2 || s[n - 1] != '"') {
			*why = "unterminated quoted local part";
			return -1;
		}
		for (i = 1; i + 1 < n; i++) {
			unsigned char c = (unsigned char)s[i];
			if (c == '\\') {
				if (i + 2 >= n || (unsigned char)s[i + 1] < 0x20 || s[i + 1] == 0x7f) {
					*why = "bad quoted pair in the local part";
					return -1;
				}
				i++;
				continue;
			}
			if (c == '"' || c < 0x20 || c == 0x7f) {
				*why = "bad character in the quoted local part";
				return -1;
			}
		}
		return 0;
	}
	/* dot-string */
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '.') {
			if (i == 0 || i + 1 == n || s[i + 1] == '.') {
				*why = "misplaced dot in the local part";
				return -1;
			}
		} else if (!is_atext(c)) {
			*why = "character not allowed in an unquoted local part";
			return -1;
		}
	}
	return 0;
}

static int
check_literal(const char *s, size_t n, const char **why)
{
	char buf[64];
	struct in6_addr a6;
	struct in_addr a4;

	*why = "bad address literal";
	if (n < 3 || s[n - 1] != ']' || n - 2 >= sizeof buf)
		return -1;
	memcpy(buf, s + 1, n - 2);
	buf[n - 2] = '\0';
	if (strncasecmp(buf, "IPv6:", 5) == 0)
		return inet_pton(AF_INET6, buf + 5, &a6) == 1 ? 0 : -1;
	if (strchr(buf, ':') == NULL)
		return inet_pton(AF_INET, buf, &a4) == 1 ? 0 : -1;
	/* General-address-literal: Standardized-tag ":" dcontent */
	for (size_t i = 0; i < n - 2; i++)
		if ((unsigned char)buf[i] < 33 || (unsigned char)buf[i] > 126 || buf[i] == '[' ||
		    buf[i] == ']' || buf[i] == '\\')
			return -1;
	return buf[0] != ':' ? 0 : -1;
}

static int
check_domain(const char *s, size_t n, const char **why)
{
	size_t i, label = 0;
	int eight = 0;

	if (n == 0) {
		*why = "empty domain";
		return -1;
	}
	if (s[0] == '[')
		return check_literal(s, n, why);
	if (n > 253) {
		*why = "domain longer than 253 octets";
		return -1;
	}
	if (!utf8_valid(s, n)) {
		*why = "domain is not valid UTF-8";
		return -1;
	}
	for (i = 0; i <= n; i++) {
		unsigned char c = i < n ? (unsigned char)s[i] : '.';
		if (c == '.') {
			if (label == 0) {
				*why = "empty label in the domain";
				return -1;
			}
			if (label > 63) {
				*why = "domain label longer than 63 octets";
				return -1;
			}
			if (!eight && (s[i - label] == '-' || s[i - 1] == '-')) {
				*why = "domain label starts or ends with a hyphen";
				return -1;
			}
			label = 0;
			eight = 0;
			continue;
		}
		if (c >= 0x80)
			eight = 1;	/* a U-label (IDN): kept as given */
		else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-')) {
			*why = "character not allowed in a domain";
			return -1;
		}
		label++;
	}
	return 0;
}

int
addr_spec_check(const char *addr, int flags, const char **why)
{
	const char *at = find_at(addr);
	size_t n = strlen(addr);

	*why = NULL;
	if (n == 0) {
		*why = "empty address";
		return -1;
	}
	if (n > 254) {
		*why = "address longer than 254 octets";
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)addr[i] < 0x20 || addr[i] == 0x7f) {
			*why = "control character in the address";
			return -1;
		}
	if (at == NULL) {
		if (!(flags & ADDR_LOCAL_OK)) {
			*why = "no domain";
			return -1;
		}
		return check_local(addr, n, why);
	}
	if (check_local(addr, (size_t)(at - addr), why) == -1)
		return -1;
	return check_domain(at + 1, strlen(at + 1), why);
}

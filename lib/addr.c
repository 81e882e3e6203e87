/*
 * addr: see addr.h.
 *
 * One pass over the value.  Outside angle brackets, the mailbox's text is
 * collected without whitespace and comments (so "root (Cron Daemon)"
 * yields "root"); inside them the angle address is collected and wins.
 * A top-level ':' starts a group (its name is dropped), ',' and ';' end
 * a mailbox.
 */
#include "config.h"

#include <string.h>

#include "addr.h"

struct mbox {
	char bare[ADDR_MAX + 1];
	size_t nbare;
	char angle[ADDR_MAX + 1];
	size_t nangle;
	int have_angle;
	int overflow;
};

static void
mbox_reset(struct mbox *m)
{
	m->nbare = m->nangle = 0;
	m->have_angle = m->overflow = 0;
	m->bare[0] = m->angle[0] = '\0';
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

/* Emit the mailbox; returns 1 if an address was reported, 0 if empty, -1 on overflow. */
static int
mbox_emit(struct mbox *m, addr_fn fn, void *arg)
{
	const char *a;

	if (m->overflow)
		return -1;
	if (m->have_angle) {
		a = m->angle;
		/* obsolete route "@a,@b:user@d" */
		if (a[0] == '@') {
			const char *colon = strchr(a, ':');
			a = colon ? colon + 1 : a + strlen(a);
		}
	} else
		a = m->bare;
	if (*a == '\0')
		return 0;
	fn(a, arg);
	return 1;
}

int
addr_list_parse(const char *val, size_t len, addr_fn fn, void *arg)
{
	struct mbox m;
	size_t i;
	int depth = 0, quoted = 0, in_angle = 0, count = 0, rc;

	mbox_reset(&m);
	for (i = 0; i < len; i++) {
		char c = val[i];

		/* NUL and controls other than folding white space never belong in a header */
		if ((unsigned char)c < 0x20 && c != '\t' && c != '\r' && c != '\n')
			return -1;
		if (c == 0x7f)
			return -1;

		if (quoted) {
			char *buf = in_angle ? m.angle : m.bare;
			size_t *n = in_angle ? &m.nangle : &m.nbare;
			if (c == '\\' && i + 1 < len) {
				put(buf, n, &m.overflow, c);
				c = val[++i];
				if ((unsigned char)c < 0x20 || c == 0x7f)
					return -1;	/* quoted-pair is VCHAR or WSP; we take VCHAR only */
			} else if (c == '"')
				quoted = 0;
			if (c == '\r' || c == '\n')
				continue;	/* folding */
			if (c == '\t')
				c = ' ';	/* white space in a quoted string; SMTP allows only SP */
			put(buf, n, &m.overflow, c);
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
			break;
		case '"':
			quoted = 1;
			put(in_angle ? m.angle : m.bare, in_angle ? &m.nangle : &m.nbare, &m.overflow, c);
			break;
		case '<':
			if (in_angle)
				return -1;
			in_angle = 1;
			m.have_angle = 1;
			m.nangle = 0;
			m.angle[0] = '\0';
			break;
		case '>':
			if (!in_angle)
				return -1;
			in_angle = 0;
			break;
		case ' ': case '\t': case '\r': case '\n':
			break;
		case ':':
			if (in_angle) {
				put(m.angle, &m.nangle, &m.overflow, c);
				break;
			}
			/* group: what came before was its display name */
			mbox_reset(&m);
			break;
		case ',':
		case ';':
			if (in_angle) {
				put(m.angle, &m.nangle, &m.overflow, c);
				break;
			}
			if ((rc = mbox_emit(&m, fn, arg)) == -1)
				return -1;
			count += rc;
			mbox_reset(&m);
			break;
		default:
			if (in_angle)
				put(m.angle, &m.nangle, &m.overflow, c);
			else if (!m.have_angle)
				put(m.bare, &m.nbare, &m.overflow, c);
			break;
		}
	}
	if (quoted || depth > 0 || in_angle)
		return -1;
	if ((rc = mbox_emit(&m, fn, arg)) == -1)
		return -1;
	return count + rc;
}

/*
 * received: the Received: trace field (contract in received.h).
 *
 * The field is built from clauses ("from ...", "by ...", "with ...",
 * "id ...", "for ...;", the date) joined by a space, or by CRLF and a tab
 * where the line would pass 78 octets: RFC 5322 allows folding wherever
 * white space is, and a clause is never split.  What a client chose (the
 * HELO argument, the recipient) goes in only when it is printable ASCII
 * without parentheses, brackets or backslashes and of bounded length, so
 * nothing it sends can add a line, a field or an unbalanced comment.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "received.h"
#include "util.h"
#include "xmalloc.h"

#define FOLD_AT     78
#define PART_MAX    300     /* a HELO, login or address longer than this is left out */

/* Printable, no white space, nothing that ends or opens a comment or literal. */
static int
plain(const char *s, size_t max)
{
	size_t n = 0;

	if (s == NULL || *s == '\0')
		return 0;
	for (; *s; s++, n++) {
		unsigned char c = (unsigned char)*s;
		if (c <= ' ' || c >= 0x7f || c == '(' || c == ')' || c == '\\' || c == '[' ||
		    c == ']' || c == ';' || c == '"' || n >= max)
			return 0;
	}
	return 1;
}

struct fold {
	char   *buf;
	size_t  len, cap, line;     /* line: octets on the current line so far */
};

static void
put(struct fold *f, const char *s, size_t n)
{
	if (f->len + n + 1 > f->cap) {
		f->cap = (f->len + n + 1) * 2;
		f->buf = xreallocarray(f->buf, f->cap, 1);
	}
	memcpy(f->buf + f->len, s, n);
	f->len += n;
	f->buf[f->len] = '\0';
}

/* One clause, after a space or on a new folded line (never right after the field name). */
static void
clause(struct fold *f, const char *s)
{
	size_t n = strlen(s);

	if (f->line + 1 + n > FOLD_AT && f->len > sizeof "Received:" - 1) {
		put(f, "\r\n\t", 3);
		f->line = 1;	/* the tab */
	} else {
		put(f, " ", 1);
		f->line++;
	}
	put(f, s, n);
	f->line += n;
}

char *
received_field(const struct received_from *from, const char *hostname,
    const char *version, const char *qid, const char *rcpt, time_t when)
{
	struct fold f = { NULL, 0, 0, 0 };
	char part[2 * PART_MAX + 64], date[64];
	struct tm tm;

	put(&f, "Received:", 9);
	f.line = 9;
	if (from->local) {
		if (from->uid == (uid_t)-1)
			snprintf(part, sizeof part, "from local");
		else if (plain(from->login, PART_MAX))
			snprintf(part, sizeof part, "from local (uid %ld %s)", (long)from->uid, from->login);
		else
			snprintf(part, sizeof part, "from local (uid %ld)", (long)from->uid);
	} else {
		const char *a = plain(from->addr, PART_MAX) ? from->addr : "unknown";
		const char *v6 = strchr(a, ':') != NULL ? "IPv6:" : "";

		if (plain(from->helo, PART_MAX))
			snprintf(part, sizeof part, "from %s ([%s%s])", from->helo, v6, a);
		else
			snprintf(part, sizeof part, "from [%s%s]", v6, a);
	}
	clause(&f, part);
	snprintf(part, sizeof part, "by %s (mailrelay %s)", hostname, version);
	clause(&f, part);
	snprintf(part, sizeof part, "with %s", from->with);
	clause(&f, part);
	snprintf(part, sizeof part, "id %s", qid);
	clause(&f, part);
	if (plain(rcpt, PART_MAX)) {
		snprintf(part, sizeof part, "for <%s>;", rcpt);
		clause(&f, part);
	} else
		put(&f, ";", 1), f.line++;
	localtime_r(&when, &tm);
	strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S %z", &tm);
	clause(&f, date);
	put(&f, "\r\n", 2);
	return f.buf;
}

size_t
received_count(const char *hdr, size_t len)
{
	size_t n = 0, i = 0;

	while (i < len) {
		const char *eol = memchr(hdr + i, '\n', len - i);
		size_t ll = eol ? (size_t)(eol - (hdr + i)) : len - i;

		if (ll >= 9 && strncasecmp(hdr + i, "Received:", 9) == 0)
			n++;
		i += ll + 1;
	}
	return n;
}

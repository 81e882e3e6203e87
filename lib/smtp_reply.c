/*
 * smtp_reply: see smtp_reply.h.
 *
 * A reply is fed line by line.  Every rule of RFC 5321 4.2 that matters to
 * a client is checked here, once, so that the delivery code can trust
 * r->code: three digits 200..599 (second digit 0..5), the same code on every
 * line, a bounded line length and a bounded number of lines.  The text is
 * kept (joined by '\n') for logs, bounces and the EHLO capability list.
 *
 * The stored text is always a C string in which '\n' separates lines and
 * nothing else: NUL, CR and LF bytes found inside a line are stored as '?'.
 * Other bytes are stored as received; smtp_reply_summary() makes them
 * printable.
 */
#include "config.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "smtp_reply.h"

static void
reply_error(char *errbuf, size_t errlen, const char *msg)
{
	if (errbuf != NULL && errlen > 0)
		snprintf(errbuf, errlen, "%s", msg);
}

void
smtp_reply_init(struct smtp_reply *r)
{
	r->code = 0;
	r->enh[0] = r->enh[1] = r->enh[2] = -1;
	r->nlines = 0;
	r->complete = 0;
	r->textlen = 0;
	r->text[0] = '\0';
}

/*
 * Parse 1 to 3 decimal digits at s[*i..n).  RFC 3463 allows up to three
 * digits for the subject and the detail, hence 0..999.
 */
static int
enh_number(const char *s, size_t n, size_t *i, int *val)
{
	size_t start = *i;
	int v = 0;

	while (*i < n && *i - start < 3 && s[*i] >= '0' && s[*i] <= '9') {
		v = v * 10 + (s[*i] - '0');
		(*i)++;
	}
	if (*i == start)
		return -1;
	/* A fourth digit makes it something else than an enhanced code. */
	if (*i < n && s[*i] >= '0' && s[*i] <= '9')
		return -1;
	*val = v;
	return 0;
}

/*
 * Enhanced status code at the start of the text of the first line:
 * "class.subject.detail" followed by a space or the end of the line.  The
 * class must agree with the reply (a "250 5.0.0" is not trusted), and only
 * 2, 4 and 5 exist (RFC 3463 section 3.1).
 */
static void
parse_enhanced(struct smtp_reply *r, const char *t, size_t n)
{
	size_t i = 0;
	int cls, subj, det;

	if (n < 5 || t[0] < '2' || t[0] > '5' || t[0] == '3' || t[1] != '.')
		return;
	cls = t[0] - '0';
	if (cls != r->code / 100)
		return;
	i = 2;
	if (enh_number(t, n, &i, &subj) == -1)
		return;
	if (i >= n || t[i] != '.')
		return;
	i++;
	if (enh_number(t, n, &i, &det) == -1)
		return;
	if (i < n && t[i] != ' ')
		return;
	r->enh[0] = cls;
	r->enh[1] = subj;
	r->enh[2] = det;
}

/*
 * Append one line's text (sep: preceded by the '\n' separator), truncating
 * at SMTP_REPLY_TEXT_MAX - 1.
 */
static void
text_append(struct smtp_reply *r, int sep, const char *s, size_t n)
{
	size_t k;
	char c;

	if (sep && r->textlen < SMTP_REPLY_TEXT_MAX - 1)
		r->text[r->textlen++] = '\n';
	if (n > SMTP_REPLY_TEXT_MAX - 1 - r->textlen)
		n = SMTP_REPLY_TEXT_MAX - 1 - r->textlen;
	for (k = 0; k < n; k++) {
		c = s[k];
		if (c == '\0' || c == '\r' || c == '\n')
			c = '?';
		r->text[r->textlen++] = c;
	}
	r->text[r->textlen] = '\0';
}

int
smtp_reply_feed(struct smtp_reply *r, const char *line, size_t len,
    char *errbuf, size_t errlen)
{
	int code;
	int last;

	if (r->complete) {
		reply_error(errbuf, errlen, "reply line after the end of the reply");
		return SMTP_REPLY_ERROR;
	}
	if (line == NULL)
		len = 0;
	/* An LF-only peer leaves its CR, if any, for us to drop. */
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len > SMTP_REPLY_LINE_MAX) {
		reply_error(errbuf, errlen, "reply line too long");
		return SMTP_REPLY_ERROR;
	}
	if (r->nlines >= SMTP_REPLY_LINES_MAX) {
		reply_error(errbuf, errlen, "too many lines in reply");
		return SMTP_REPLY_ERROR;
	}
	/*
	 * RFC 5321 4.2: the first digit is 2..5 for us (1xx is never valid
	 * for the commands we send), the second 0..5, the third any digit.
	 */
	if (len < 3 || line[0] < '2' || line[0] > '5' ||
	    line[1] < '0' || line[1] > '5' ||
	    line[2] < '0' || line[2] > '9') {
		reply_error(errbuf, errlen, "malformed reply code");
		return SMTP_REPLY_ERROR;
	}
	if (len > 3 && line[3] != ' ' && line[3] != '-') {
		reply_error(errbuf, errlen, "malformed reply code");
		return SMTP_REPLY_ERROR;
	}
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (r->nlines > 0 && code != r->code) {
		reply_error(errbuf, errlen,
		    "reply code changed within a multiline reply");
		return SMTP_REPLY_ERROR;
	}
	last = (len == 3 || line[3] == ' ');

	r->code = code;
	text_append(r, r->nlines > 0, len > 4 ? line + 4 : line,
	    len > 4 ? len - 4 : 0);
	if (r->nlines == 0 && len > 4)
		parse_enhanced(r, line + 4, len - 4);
	r->nlines++;
	if (last) {
		r->complete = 1;
		return SMTP_REPLY_DONE;
	}
	return SMTP_REPLY_MORE;
}

void
smtp_reply_summary(const struct smtp_reply *r, char *out, size_t outlen)
{
	size_t o = 0, i;
	int need_space;
	unsigned char c;
	char digits[3];

	if (out == NULL || outlen == 0)
		return;
	out[0] = '\0';
	if (r->code < 100 || r->code > 999)
		return;
	/* Room is checked byte by byte: outlen may be tiny. */
	digits[0] = (char)('0' + r->code / 100);
	digits[1] = (char)('0' + r->code / 10 % 10);
	digits[2] = (char)('0' + r->code % 10);
	for (i = 0; i < 3 && o + 1 < outlen; i++)
		out[o++] = digits[i];
	/*
	 * Lines are joined by one space; an empty line adds nothing, so that
	 * "250-\r\n250 OK" reads "250 OK" and a final bare "250" leaves no
	 * trailing blank.
	 */
	need_space = 1;
	for (i = 0; i < r->textlen && i < SMTP_REPLY_TEXT_MAX && o + 1 < outlen;
	    i++) {
		c = (unsigned char)r->text[i];
		if (c == '\n') {
			need_space = 1;
			continue;
		}
		if (need_space) {
			out[o++] = ' ';
			need_space = 0;
			if (o + 1 >= outlen)
				break;
		}
		if (c < 0x20 || c >= 0x7f)
			c = '?';
		out[o++] = (char)c;
	}
	out[o] = '\0';
}

static int
ascii_upper(int c)
{
	return (c >= 'a' && c <= 'z') ? c - 'a' + 'A' : c;
}

/* Case-insensitive comparison of s[0..n) with the upper-case keyword kw. */
static int
keyword_is(const char *s, size_t n, const char *kw)
{
	size_t i;

	if (strlen(kw) != n)
		return 0;
	for (i = 0; i < n; i++)
		if (ascii_upper((unsigned char)s[i]) != kw[i])
			return 0;
	return 1;
}

static int
is_space(char c)
{
	return c == ' ' || c == '\t';
}

/* SASL mechanism names are [A-Z0-9-_] (RFC 4422 section 3.1). */
static int
is_mech_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* Add the mechanisms of s[0..n), separated by spaces, to caps->auth. */
static void
caps_add_mechs(struct smtp_caps *caps, const char *s, size_t n)
{
	size_t i = 0, start, len, k, j;
	int ok, dup;
	char name[sizeof(caps->auth[0])];

	while (i < n) {
		while (i < n && is_space(s[i]))
			i++;
		start = i;
		while (i < n && !is_space(s[i]))
			i++;
		len = i - start;
		if (len == 0)
			continue;
		/* Overlong or odd names are skipped, not truncated: a
		 * truncated name would be a different mechanism. */
		if (len >= sizeof(name))
			continue;
		ok = 1;
		for (k = 0; k < len; k++) {
			if (!is_mech_char(s[start + k])) {
				ok = 0;
				break;
			}
			name[k] = (char)ascii_upper((unsigned char)s[start + k]);
		}
		if (!ok)
			continue;
		name[len] = '\0';
		dup = 0;
		for (j = 0; j < caps->nauth; j++)
			if (strcmp(caps->auth[j], name) == 0)
				dup = 1;
		if (dup || caps->nauth >= SMTP_AUTH_MECHS_MAX)
			continue;
		memcpy(caps->auth[caps->nauth], name, len + 1);
		caps->nauth++;
	}
}

/*
 * "SIZE" alone or "SIZE 0" means no fixed limit (RFC 1870 section 4); a
 * number that is not all digits or does not fit is treated the same way
 * rather than guessed at.
 */
static unsigned long long
caps_size(const char *s, size_t n)
{
	unsigned long long v = 0;
	size_t i = 0, start;

	while (i < n && is_space(s[i]))
		i++;
	start = i;
	while (i < n && s[i] >= '0' && s[i] <= '9') {
		unsigned d = (unsigned)(s[i] - '0');

		if (v > (ULLONG_MAX - d) / 10)
			return 0;
		v = v * 10 + d;
		i++;
	}
	if (i == start)
		return 0;
	while (i < n && is_space(s[i]))
		i++;
	if (i != n)
		return 0;
	return v;
}

static void
caps_line(struct smtp_caps *caps, const char *s, size_t n)
{
	size_t kw = 0;

	while (n > 0 && is_space(s[0])) {
		s++;
		n--;
	}
	while (n > 0 && is_space(s[n - 1]))
		n--;
	while (kw < n && !is_space(s[kw]) && s[kw] != '=')
		kw++;

	/* The old "AUTH=LOGIN PLAIN" form some servers add for old clients. */
	if (kw < n && s[kw] == '=') {
		if (keyword_is(s, kw, "AUTH")) {
			caps->auth_present = 1;
			caps_add_mechs(caps, s + kw + 1, n - kw - 1);
		}
		return;
	}
	if (keyword_is(s, kw, "PIPELINING"))
		caps->pipelining = 1;
	else if (keyword_is(s, kw, "8BITMIME"))
		caps->eightbitmime = 1;
	else if (keyword_is(s, kw, "SMTPUTF8"))
		caps->smtputf8 = 1;
	else if (keyword_is(s, kw, "DSN"))
		caps->dsn = 1;
	else if (keyword_is(s, kw, "STARTTLS"))
		caps->starttls = 1;
	else if (keyword_is(s, kw, "ENHANCEDSTATUSCODES"))
		caps->enhancedstatuscodes = 1;
	else if (keyword_is(s, kw, "CHUNKING"))
		caps->chunking = 1;
	else if (keyword_is(s, kw, "SIZE")) {
		caps->size_present = 1;
		caps->size = caps_size(s + kw, n - kw);
	} else if (keyword_is(s, kw, "AUTH")) {
		caps->auth_present = 1;
		caps_add_mechs(caps, s + kw, n - kw);
	}
}

void
smtp_caps_parse(const struct smtp_reply *r, struct smtp_caps *caps)
{
	size_t i, start, end;

	memset(caps, 0, sizeof(*caps));
	if (!r->complete || r->code / 100 != 2)
		return;
	end = r->textlen;
	if (end > SMTP_REPLY_TEXT_MAX - 1)
		end = SMTP_REPLY_TEXT_MAX - 1;
	/* The first line is the greeting ("mx.example.com Hello ..."). */
	i = 0;
	while (i < end && r->text[i] != '\n')
		i++;
	while (i < end) {
		start = ++i;
		while (i < end && r->text[i] != '\n')
			i++;
		/*
		 * A text filled to the limit was probably cut: its last line
		 * may be "SIZE 1" from "SIZE 10240000", so it is not trusted.
		 */
		if (i == end && end == SMTP_REPLY_TEXT_MAX - 1)
			break;
		caps_line(caps, r->text + start, i - start);
	}
}

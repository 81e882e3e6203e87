/*
 * smtp_cmd: see smtp_cmd.h.
 *
 * One command line in, one struct smtp_cmd out.  The parser is a chain of
 * small checks over (pointer, length) pairs: nothing is NUL-terminated on
 * input, every copy is bounded by the destination, and every number is
 * parsed with an explicit overflow check.
 *
 * Decisions worth knowing about:
 *   - An unrecognised verb is not an error (return 0, SMTP_CMD_UNKNOWN):
 *     the session answers 500 whatever the rest of the line holds.
 *   - A path may lack a domain ("<root>"): local programs submit to local
 *     users and the aliases decide where that goes.
 *   - '<' and '>' are refused even inside a quoted local part.  RFC 5321
 *     allows them there, but no real mail uses them and they confuse every
 *     tool that later splits log lines or headers on angle brackets.
 *   - Dots in a local part are not checked for placement ("a..b@x"): some
 *     real senders use such addresses and they are harmless to us.
 *   - Bytes >= 0x80 are accepted in paths and free-text arguments (SMTPUTF8,
 *     RFC 6531); the session decides whether the client may use them.
 */
#include "config.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "smtp_cmd.h"

/* One table: the parser and smtp_verb_name() both read it. */
static const char *const verb_names[] = {
	[SMTP_CMD_UNKNOWN] = "UNKNOWN",
	[SMTP_CMD_HELO] = "HELO",
	[SMTP_CMD_EHLO] = "EHLO",
	[SMTP_CMD_MAIL] = "MAIL",
	[SMTP_CMD_RCPT] = "RCPT",
	[SMTP_CMD_DATA] = "DATA",
	[SMTP_CMD_RSET] = "RSET",
	[SMTP_CMD_NOOP] = "NOOP",
	[SMTP_CMD_QUIT] = "QUIT",
	[SMTP_CMD_VRFY] = "VRFY",
	[SMTP_CMD_EXPN] = "EXPN",
	[SMTP_CMD_HELP] = "HELP",
	[SMTP_CMD_STARTTLS] = "STARTTLS",
	[SMTP_CMD_AUTH] = "AUTH",
	[SMTP_CMD_BDAT] = "BDAT",
};
#define NVERBS (sizeof(verb_names) / sizeof(verb_names[0]))

/* Bits for duplicate detection of ESMTP parameters. */
enum {
	P_SIZE = 1 << 0, P_BODY = 1 << 1, P_SMTPUTF8 = 1 << 2, P_RET = 1 << 3,
	P_ENVID = 1 << 4, P_NOTIFY = 1 << 5, P_ORCPT = 1 << 6, P_MAILDROP = 1 << 7
};

const char *
smtp_verb_name(enum smtp_verb v)
{
	if ((size_t)v >= NVERBS || verb_names[v] == NULL)
		return "UNKNOWN";
	return verb_names[v];
}

static void
cmd_error(char *errbuf, size_t errlen, const char *msg)
{
	if (errbuf != NULL && errlen > 0)
		snprintf(errbuf, errlen, "%s", msg);
}

static int
ascii_upper(int c)
{
	return (c >= 'a' && c <= 'z') ? c - 'a' + 'A' : c;
}

static int
is_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9');
}

/* Case-insensitive comparison of s[0..n) with the upper-case word kw. */
static int
word_is(const char *s, size_t n, const char *kw)
{
	size_t i;

	if (strlen(kw) != n)
		return 0;
	for (i = 0; i < n; i++)
		if (ascii_upper((unsigned char)s[i]) != kw[i])
			return 0;
	return 1;
}

/* Does s[0..n) start with the upper-case word kw, case-insensitively? */
static int
prefix_is(const char *s, size_t n, const char *kw)
{
	size_t k = strlen(kw);

	return n >= k && word_is(s, k, kw);
}

/* Copy s[0..n) into dst of size dstsz as a C string; -1 if it does not fit. */
static int
copy_str(char *dst, size_t dstsz, const char *s, size_t n)
{
	if (n >= dstsz)
		return -1;
	memcpy(dst, s, n);
	dst[n] = '\0';
	return 0;
}

static void
copy_upper(char *dst, const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		dst[i] = (char)ascii_upper((unsigned char)s[i]);
	dst[n] = '\0';
}

/*
 * Parse all of s[0..n) as a decimal number no larger than LLONG_MAX.
 * Returns 0, or -1 for no digits or a non-digit, or -2 for overflow.
 */
static int
parse_number(const char *s, size_t n, long long *out)
{
	long long v = 0;
	size_t i;
	int d;

	if (n == 0)
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		d = s[i] - '0';
		if (v > (LLONG_MAX - d) / 10)
			return -2;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

/*
 * A domain name or an address literal, the whole of s[0..n).  Labels take
 * letters, digits, '-' and, leniently, '_' (common in Windows host names
 * seen in HELO) and bytes >= 0x80 (internationalised names).  A general
 * address literal (RFC 5321 4.1.3) is checked for its characters only:
 * "[192.0.2.1]", "[IPv6:2001:db8::1]".
 */
static int
valid_domain(const char *s, size_t n)
{
	size_t i, label = 0;
	unsigned char c;

	if (n == 0 || n > 255)
		return 0;
	if (s[0] == '[') {
		if (n < 3 || s[n - 1] != ']')
			return 0;
		for (i = 1; i < n - 1; i++) {
			c = (unsigned char)s[i];
			if (c < 33 || c > 126 || c == '[' || c == ']' ||
			    c == '\\')
				return 0;
		}
		return 1;
	}
	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		if (c == '.') {
			if (label == 0)
				return 0;
			label = 0;
			continue;
		}
		if (!is_alnum(c) && c != '-' && c != '_' && c < 0x80)
			return 0;
		if (++label > 63)
			return 0;
	}
	return label > 0;
}

/* atext of RFC 5322 3.2.3, plus bytes >= 0x80 (RFC 6531). */
static int
is_atext(unsigned char c)
{
	if (is_alnum(c) || c >= 0x80)
		return 1;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/*
 * A mailbox "local-part[@domain]".  The local part is a dot-string or a
 * quoted string (kept with its quotes).
 */
static int
valid_mailbox(const char *s, size_t n)
{
	size_t i = 0;
	unsigned char c;

	if (n == 0)
		return 0;
	if (s[0] == '"') {
		for (i = 1; i < n; i++) {
			c = (unsigned char)s[i];
			if (c == '"')
				break;
			if (c == '\\') {
				/* quoted-pair: backslash and one printable */
				if (++i >= n)
					return 0;
				c = (unsigned char)s[i];
				if (c < 32 || c > 126)
					return 0;
			}
			/* escaped or not, see the top of the file */
			if (c == '<' || c == '>')
				return 0;
			if (c == '\\' || c == '"')
				continue;	/* the escaped character */
			if ((c < 32 || c > 126) && c < 0x80)
				return 0;
		}
		if (i >= n)
			return 0;	/* unterminated quote */
		i++;
	} else {
		while (i < n && s[i] != '@') {
			c = (unsigned char)s[i];
			if (c != '.' && !is_atext(c))
				return 0;
			i++;
		}
		if (i == 0)
			return 0;
	}
	if (i == n)
		return 1;
	if (s[i] != '@')
		return 0;
	return valid_domain(s + i + 1, n - i - 1);
}

/*
 * An RFC 5321 source route "@a,@b" (without the final ':'), obsolete but
 * still allowed on input; it is checked and then dropped (4.1.1.3).
 */
static int
valid_route(const char *s, size_t n)
{
	size_t i = 0, start;

	for (;;) {
		if (i >= n || s[i] != '@')
			return 0;
		start = ++i;
		while (i < n && s[i] != ',')
			i++;
		if (!valid_domain(s + start, i - start))
			return 0;
		if (i == n)
			return 1;
		i++;	/* ',' */
	}
}

enum path_result { PATH_OK = 0, PATH_SYNTAX = -1, PATH_BAD = -2,
	PATH_TOO_LONG = -3, PATH_NULL = -4 };

/*
 * s[0..n) starts with '<'.  Find the matching '>' (outside quotes), check
 * the path, store it without the route in out, and set *used to the
 * octets taken including both brackets.
 */
static enum path_result
parse_path(const char *s, size_t n, char *out, size_t outsz, size_t *used)
{
	size_t i, plen, k;
	const char *p;
	int inq = 0;

	for (i = 1; i < n; i++) {
		if (inq) {
			if (s[i] == '\\')
				i++;
			else if (s[i] == '"')
				inq = 0;
			continue;
		}
		if (s[i] == '"')
			inq = 1;
		else if (s[i] == '>')
			break;
	}
	if (i >= n)
		return PATH_SYNTAX;
	*used = i + 1;
	p = s + 1;
	plen = i - 1;
	if (plen == 0) {
		out[0] = '\0';
		return PATH_NULL;
	}
	if (plen > SMTP_PATH_MAX)
		return PATH_TOO_LONG;
	if (p[0] == '@') {
		for (k = 0; k < plen && p[k] != ':'; k++)
			;
		if (k == plen || !valid_route(p, k))
			return PATH_BAD;
		p += k + 1;
		plen -= k + 1;
	}
	if (!valid_mailbox(p, plen))
		return PATH_BAD;
	if (copy_str(out, outsz, p, plen) == -1)
		return PATH_TOO_LONG;
	return PATH_OK;
}

/*
 * xtext (RFC 3461 4): printable ASCII except '+' and '=', or "+HH" with
 * upper-case hex.  ORCPT may also carry UTF-8 (RFC 6533).
 */
static int
valid_xtext(const char *s, size_t n, int allow8bit)
{
	size_t i, k;
	unsigned char c;

	if (n == 0)
		return 0;
	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		if (c == '+') {
			if (n - i < 3)
				return 0;
			for (k = 1; k <= 2; k++) {
				c = (unsigned char)s[i + k];
				if (!((c >= '0' && c <= '9') ||
				    (c >= 'A' && c <= 'F')))
					return 0;
			}
			i += 2;
			continue;
		}
		if (c >= 0x80 && allow8bit)
			continue;
		if (c < 33 || c > 126 || c == '=')
			return 0;
	}
	return 1;
}

/* NOTIFY=NEVER or a list of SUCCESS, FAILURE, DELAY, each at most once. */
static int
valid_notify(const char *s, size_t n)
{
	static const char *const words[] = { "SUCCESS", "FAILURE", "DELAY" };
	size_t i = 0, start, w;
	unsigned seen = 0;

	if (word_is(s, n, "NEVER"))
		return 1;
	for (;;) {
		start = i;
		while (i < n && s[i] != ',')
			i++;
		for (w = 0; w < 3; w++)
			if (word_is(s + start, i - start, words[w]))
				break;
		if (w == 3 || (seen & (1u << w)))
			return 0;
		seen |= 1u << w;
		if (i == n)
			return 1;
		i++;
	}
}

/* ORCPT=addr-type;xtext (RFC 3461 4.2). */
static int
valid_orcpt(const char *s, size_t n)
{
	size_t i = 0;

	while (i < n && (is_alnum((unsigned char)s[i]) || s[i] == '-'))
		i++;
	if (i == 0 || i >= n || s[i] != ';')
		return 0;
	return valid_xtext(s + i + 1, n - i - 1, 1);
}

/*
 * Apply one "KEYWORD[=value]" parameter.  `seen` holds the parameters
 * already given: repeating one is an error.
 */
static int
apply_param(struct smtp_cmd *cmd, const char *kw, size_t kwlen,
    const char *val, size_t vallen, int hasval, unsigned *seen,
    char *errbuf, size_t errlen)
{
	long long v;
	unsigned bit;
	int r;

	if (cmd->verb == SMTP_CMD_MAIL && word_is(kw, kwlen, "SIZE"))
		bit = P_SIZE;
	else if (cmd->verb == SMTP_CMD_MAIL && word_is(kw, kwlen, "BODY"))
		bit = P_BODY;
	else if (cmd->verb == SMTP_CMD_MAIL && word_is(kw, kwlen, "SMTPUTF8"))
		bit = P_SMTPUTF8;
	else if (cmd->verb == SMTP_CMD_MAIL && word_is(kw, kwlen, "RET"))
		bit = P_RET;
	else if (cmd->verb == SMTP_CMD_MAIL && word_is(kw, kwlen, "ENVID"))
		bit = P_ENVID;
	else if (cmd->verb == SMTP_CMD_MAIL && word_is(kw, kwlen, "X-MAILDROP"))
		bit = P_MAILDROP;
	else if (cmd->verb == SMTP_CMD_RCPT && word_is(kw, kwlen, "NOTIFY"))
		bit = P_NOTIFY;
	else if (cmd->verb == SMTP_CMD_RCPT && word_is(kw, kwlen, "ORCPT"))
		bit = P_ORCPT;
	else {
		/* kw is already known to be letters, digits and '-'. */
		if (errbuf != NULL && errlen > 0)
			snprintf(errbuf, errlen, "Unsupported parameter %.*s",
			    kwlen > 32 ? 32 : (int)kwlen, kw);
		return -1;
	}
	if (*seen & bit) {
		if (errbuf != NULL && errlen > 0)
			snprintf(errbuf, errlen, "Parameter %.*s given twice",
			    kwlen > 32 ? 32 : (int)kwlen, kw);
		return -1;
	}
	*seen |= bit;

	if (bit == P_SMTPUTF8) {
		if (hasval) {
			cmd_error(errbuf, errlen, "SMTPUTF8 takes no value");
			return -1;
		}
		cmd->smtputf8 = 1;
		return 0;
	}
	if (!hasval) {
		if (errbuf != NULL && errlen > 0)
			snprintf(errbuf, errlen, "Parameter %.*s needs a value",
			    kwlen > 32 ? 32 : (int)kwlen, kw);
		return -1;
	}
	switch (bit) {
	case P_SIZE:
		r = parse_number(val, vallen, &v);
		if (r == -2) {
			cmd_error(errbuf, errlen, "SIZE parameter out of range");
			return -1;
		}
		if (r == -1) {
			cmd_error(errbuf, errlen, "Bad SIZE parameter");
			return -1;
		}
		cmd->size = v;
		return 0;
	case P_BODY:
		if (word_is(val, vallen, "7BIT"))
			cmd->body = SMTP_BODY_7BIT;
		else if (word_is(val, vallen, "8BITMIME"))
			cmd->body = SMTP_BODY_8BITMIME;
		else {
			cmd_error(errbuf, errlen,
			    "Bad BODY parameter (7BIT or 8BITMIME)");
			return -1;
		}
		return 0;
	case P_RET:
		if (!word_is(val, vallen, "FULL") &&
		    !word_is(val, vallen, "HDRS")) {
			cmd_error(errbuf, errlen,
			    "Bad RET parameter (FULL or HDRS)");
			return -1;
		}
		copy_upper(cmd->ret, val, vallen);
		return 0;
	case P_ENVID:
		if (vallen > 100 || !valid_xtext(val, vallen, 0)) {
			cmd_error(errbuf, errlen, "Bad ENVID parameter");
			return -1;
		}
		copy_str(cmd->envid, sizeof(cmd->envid), val, vallen);
		return 0;
	case P_NOTIFY:
		if (vallen >= sizeof(cmd->notify) ||
		    !valid_notify(val, vallen)) {
			cmd_error(errbuf, errlen, "Bad NOTIFY parameter "
			    "(NEVER or SUCCESS,FAILURE,DELAY)");
			return -1;
		}
		copy_upper(cmd->notify, val, vallen);
		return 0;
	case P_MAILDROP:
		/* a drop's name as maildrop_name() makes it: digits and dots, not starting with a dot */
		for (r = 0; (size_t)r < vallen && ((val[r] >= '0' && val[r] <= '9') || val[r] == '.'); r++)
			;
		if (vallen == 0 || vallen >= sizeof(cmd->maildrop) || val[0] == '.' || (size_t)r != vallen) {
			cmd_error(errbuf, errlen, "Bad X-MAILDROP parameter");
			return -1;
		}
		copy_str(cmd->maildrop, sizeof(cmd->maildrop), val, vallen);
		return 0;
	case P_ORCPT:
		if (vallen >= sizeof(cmd->orcpt) || !valid_orcpt(val, vallen)) {
			cmd_error(errbuf, errlen, "Bad ORCPT parameter");
			return -1;
		}
		copy_str(cmd->orcpt, sizeof(cmd->orcpt), val, vallen);
		return 0;
	}
	return -1;
}

/* The parameters after the path: (SP keyword["="value])*, then spaces. */
static int
parse_params(struct smtp_cmd *cmd, const char *s, size_t n,
    char *errbuf, size_t errlen)
{
	size_t i = 0, kw, kwlen, val, vallen;
	unsigned seen = 0;
	unsigned char c;
	int hasval;

	for (;;) {
		if (i == n)
			return 0;
		if (s[i] != ' ')
			return -2;	/* junk glued to the path */
		while (i < n && s[i] == ' ')
			i++;
		if (i == n)
			return 0;
		kw = i;
		while (i < n && (is_alnum((unsigned char)s[i]) || s[i] == '-'))
			i++;
		kwlen = i - kw;
		if (kwlen == 0 || !is_alnum((unsigned char)s[kw])) {
			cmd_error(errbuf, errlen, "Bad parameter syntax");
			return -1;
		}
		hasval = 0;
		val = vallen = 0;
		if (i < n && s[i] == '=') {
			hasval = 1;
			val = ++i;
			/* esmtp-value: printable except '=' (RFC 5321
			 * 4.1.2), UTF-8 allowed (RFC 6531). */
			while (i < n && s[i] != ' ') {
				c = (unsigned char)s[i];
				if (c == '=' || (c < 33 && c != ' '))
					break;
				i++;
			}
			vallen = i - val;
			if (vallen == 0) {
				cmd_error(errbuf, errlen, "Bad parameter syntax");
				return -1;
			}
		}
		if (i < n && s[i] != ' ') {
			cmd_error(errbuf, errlen, "Bad parameter syntax");
			return -1;
		}
		if (apply_param(cmd, s + kw, kwlen, s + val, vallen, hasval,
		    &seen, errbuf, errlen) == -1)
			return -1;
	}
}

/* MAIL FROM:<path> [params] and RCPT TO:<path> [params]. */
static int
parse_mail_rcpt(struct smtp_cmd *cmd, const char *s, size_t n,
    char *errbuf, size_t errlen)
{
	const char *syntax, *kw;
	size_t i = 0, used;
	enum path_result pr;
	int r;

	if (cmd->verb == SMTP_CMD_MAIL) {
		syntax = "Syntax: MAIL FROM:<address>";
		kw = "FROM:";
	} else {
		syntax = "Syntax: RCPT TO:<address>";
		kw = "TO:";
	}
	if (n == 0 || s[0] != ' ')
		goto syntax;
	while (i < n && s[i] == ' ')
		i++;
	if (!prefix_is(s + i, n - i, kw))
		goto syntax;
	i += strlen(kw);
	/* "MAIL FROM: <a@b>" is common enough to accept. */
	while (i < n && s[i] == ' ')
		i++;
	if (i == n || s[i] != '<')
		goto syntax;
	pr = parse_path(s + i, n - i, cmd->path, sizeof(cmd->path), &used);
	switch (pr) {
	case PATH_OK:
		break;
	case PATH_NULL:
		if (cmd->verb == SMTP_CMD_MAIL)
			break;
		cmd_error(errbuf, errlen, "Null recipient address not allowed");
		return -1;
	case PATH_TOO_LONG:
		cmd_error(errbuf, errlen, "Address too long");
		return -1;
	case PATH_BAD:
		cmd_error(errbuf, errlen, "Bad address syntax");
		return -1;
	case PATH_SYNTAX:
		goto syntax;
	}
	i += used;
	r = parse_params(cmd, s + i, n - i, errbuf, errlen);
	if (r == -2)
		goto syntax;
	return r;
syntax:
	cmd_error(errbuf, errlen, syntax);
	return -1;
}

/*
 * The argument of a free-text command: leading and trailing spaces
 * dropped, the rest copied to cmd->arg.  Returns its length, or -1 if it
 * does not fit.
 */
static int
take_arg(struct smtp_cmd *cmd, const char *s, size_t n)
{
	while (n > 0 && s[0] == ' ') {
		s++;
		n--;
	}
	while (n > 0 && s[n - 1] == ' ')
		n--;
	if (copy_str(cmd->arg, sizeof(cmd->arg), s, n) == -1)
		return -1;
	return (int)n;
}

static int
only_spaces(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (s[i] != ' ')
			return 0;
	return 1;
}

/* AUTH mechanism [initial-response] (RFC 4954 4). */
static int
valid_auth(const char *s, size_t n)
{
	size_t i = 0, start;
	unsigned char c;

	while (i < n && (is_alnum((unsigned char)s[i]) || s[i] == '-' ||
	    s[i] == '_'))
		i++;
	if (i == 0 || i > 20)
		return 0;
	if (i == n)
		return 1;
	if (s[i] != ' ')
		return 0;
	start = ++i;
	/* base64, or "=" for an empty response */
	for (; i < n; i++) {
		c = (unsigned char)s[i];
		if (!is_alnum(c) && c != '+' && c != '/' && c != '=')
			return 0;
	}
	return i > start;
}

/* BDAT chunk-size [SP "LAST"] (RFC 3030 2); the size goes to cmd->size. */
static int
parse_bdat(struct smtp_cmd *cmd, const char *s, size_t n)
{
	size_t i = 0;

	while (i < n && s[i] >= '0' && s[i] <= '9')
		i++;
	if (parse_number(s, i, &cmd->size) != 0)
		return -1;
	if (i == n)
		return 0;
	if (n - i == 5 && s[i] == ' ' && word_is(s + i + 1, 4, "LAST"))
		return 0;
	return -1;
}

int
smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *cmd,
    char *errbuf, size_t errlen)
{
	size_t i, vlen, v;
	const char *rest;
	size_t restlen;
	unsigned char c;
	int n;

	memset(cmd, 0, sizeof(*cmd));
	cmd->verb = SMTP_CMD_UNKNOWN;
	cmd->size = -1;
	cmd->body = SMTP_BODY_NONE;
	if (errbuf != NULL && errlen > 0)
		errbuf[0] = '\0';
	if (line == NULL)
		len = 0;

	/*
	 * The verb ends at a space or at a control character, so that
	 * "DATA\r" (a stray CR) is a malformed DATA, not an unknown verb.
	 */
	for (vlen = 0; vlen < len; vlen++) {
		c = (unsigned char)line[vlen];
		if (c == ' ' || c < 0x20 || c == 0x7f)
			break;
	}
	for (v = 1; v < NVERBS; v++)
		if (word_is(line, vlen, verb_names[v]))
			break;
	if (v == NVERBS)
		return 0;
	cmd->verb = (enum smtp_verb)v;

	for (i = 0; i < len; i++) {
		c = (unsigned char)line[i];
		if (c < 0x20 || c == 0x7f) {
			cmd_error(errbuf, errlen, "Invalid character in command");
			return -1;
		}
	}
	rest = line + vlen;
	restlen = len - vlen;

	switch (cmd->verb) {
	case SMTP_CMD_HELO:
	case SMTP_CMD_EHLO:
		if (restlen == 0 || (n = take_arg(cmd, rest, restlen)) <= 0 ||
		    !valid_domain(cmd->arg, (size_t)n)) {
			cmd->arg[0] = '\0';
			cmd_error(errbuf, errlen, cmd->verb == SMTP_CMD_HELO ?
			    "Syntax: HELO hostname" : "Syntax: EHLO hostname");
			return -1;
		}
		return 0;
	case SMTP_CMD_MAIL:
	case SMTP_CMD_RCPT:
		return parse_mail_rcpt(cmd, rest, restlen, errbuf, errlen);
	case SMTP_CMD_DATA:
	case SMTP_CMD_STARTTLS:
		/* Exactly the verb: an argument here is a confused client. */
		if (restlen != 0) {
			cmd_error(errbuf, errlen, cmd->verb == SMTP_CMD_DATA ?
			    "Syntax: DATA" : "Syntax: STARTTLS");
			return -1;
		}
		return 0;
	case SMTP_CMD_RSET:
	case SMTP_CMD_QUIT:
		if (!only_spaces(rest, restlen)) {
			cmd_error(errbuf, errlen, cmd->verb == SMTP_CMD_RSET ?
			    "Syntax: RSET" : "Syntax: QUIT");
			return -1;
		}
		return 0;
	case SMTP_CMD_NOOP:
	case SMTP_CMD_HELP:
		if (take_arg(cmd, rest, restlen) == -1) {
			cmd_error(errbuf, errlen, "Argument too long");
			return -1;
		}
		return 0;
	case SMTP_CMD_VRFY:
	case SMTP_CMD_EXPN:
		n = take_arg(cmd, rest, restlen);
		if (n == -1) {
			cmd_error(errbuf, errlen, "Argument too long");
			return -1;
		}
		if (n == 0) {
			cmd_error(errbuf, errlen, cmd->verb == SMTP_CMD_VRFY ?
			    "Syntax: VRFY address" : "Syntax: EXPN list");
			return -1;
		}
		return 0;
	case SMTP_CMD_AUTH:
		n = take_arg(cmd, rest, restlen);
		if (n == -1) {
			cmd_error(errbuf, errlen, "Argument too long");
			return -1;
		}
		if (restlen == 0 || rest[0] != ' ' ||
		    !valid_auth(cmd->arg, (size_t)n)) {
			cmd->arg[0] = '\0';
			cmd_error(errbuf, errlen,
			    "Syntax: AUTH mechanism [initial-response]");
			return -1;
		}
		return 0;
	case SMTP_CMD_BDAT:
		n = take_arg(cmd, rest, restlen);
		if (n <= 0 || restlen == 0 || rest[0] != ' ' ||
		    parse_bdat(cmd, cmd->arg, (size_t)n) == -1) {
			cmd->arg[0] = '\0';
			cmd->size = -1;
			cmd_error(errbuf, errlen, "Syntax: BDAT size [LAST]");
			return -1;
		}
		return 0;
	case SMTP_CMD_UNKNOWN:
		break;
	}
	return 0;
}

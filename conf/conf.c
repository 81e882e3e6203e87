/*
 * conf: the libconfuse schema of mailrelay.conf, its validation, and the
 * conversion into the immutable struct config (contract in conf.h).
 *
 * How validation is arranged.  Every scalar key is a libconfuse string with
 * a parse callback.  The callback runs while the scanner still sits on the
 * value, so cfg->line is exact and the message names the right line; it
 * checks the text with the same function that later converts it
 * (conf_parse_duration() and friends), so whatever is accepted can be
 * converted.  The callbacks also note where each key was set; rules that
 * involve several keys (a smarthost needs a host, a route names a defined
 * smarthost, at most one secret source) run after the parse and use those
 * lines.  Defaults are written in the schema as the text a user would
 * write and go through the same conversion.
 *
 * The first error wins: parsing stops there, and the message is one line,
 * "FILE:LINE: KEY: why", with control characters from the file escaped.
 */
#include "config.h"

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <confuse.h>

#include "conf.h"
#include "log.h"
#include "xmalloc.h"

/* A config file bigger than this is a mistake (-c /dev/zero), not a config. */
#define CONF_MAX_FILE_SIZE	(1024 * 1024)
/* How much of an offending value a message quotes. */
#define QUOTE_MAX		80
/* Numbers in messages, spelled out by the preprocessor. */
#define STR_(x)			#x
#define STR(x)			STR_(x)
#define PATH_MAX_1		4095	/* PATH_MAX - 1: the longest path open() takes */
_Static_assert(PATH_MAX_1 == PATH_MAX - 1, "PATH_MAX_1");

/*
 * Names of enumerated values, in the order of the C enums they map to.
 * Both the validation and the conversion read these tables.
 */
static const char *const tls_names[] =
    { "disabled", "opportunistic", "required", "implicit", NULL };
static const char *const log_level_names[] =
    { "error", "warning", "info", "debug", NULL };
static const char *const rewrite_from_names[] =
    { "never", "local", "always", NULL };
static const char *const double_bounce_names[] =
    { "admin", "drop", NULL };
static const char *const auth_names[] =
    { "none", "auto", "plain", "login", "cram-md5", "scram-sha-256",
      "xoauth2", "oauthbearer", NULL };
/* Index i stands for TLS protocol number 0x0301 + i. */
static const char *const tls_version_names[] =
    { "TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3", NULL };

static const char *const preset_names[] =
    { "none", "microsoft365", "gmail", NULL };
static const char *const provider_names[] =
    { "generic", "microsoft", "google", NULL };
static const char *const grant_names[] =
    { "client_credentials", "refresh_token", "password", NULL };

_Static_assert(TLS_IMPLICIT == 3, "tls_names order");
_Static_assert(PRESET_GMAIL == 2, "preset_names order");
_Static_assert(OAUTH2_GOOGLE == 2, "provider_names order");
_Static_assert(OAUTH2_PASSWORD == 2, "grant_names order");
_Static_assert(CONF_LOG_DEBUG == 3, "log_level_names order");
_Static_assert(REWRITE_FROM_ALWAYS == 2, "rewrite_from_names order");
_Static_assert(REWRITE_FROM_NEVER == REWRITE_NEVER && REWRITE_FROM_LOCAL == REWRITE_LOCAL &&
    REWRITE_FROM_ALWAYS == REWRITE_ALWAYS, "conf and lib/rewrite.h agree");
_Static_assert(DOUBLE_BOUNCE_DROP == 1, "double_bounce_names order");
_Static_assert(AUTH_OAUTHBEARER == 7, "auth_names order");

static const struct enum_key {
	const char		*key;
	const char *const	*names;
} enum_keys[] = {
	{ "tls",		tls_names },
	{ "log_level",		log_level_names },
	{ "rewrite_from",	rewrite_from_names },
	{ "double_bounce",	double_bounce_names },
	{ "auth",		auth_names },
	{ "tls_min_version",	tls_version_names },
	{ "preset",		preset_names },
	{ "provider",		provider_names },
	{ "grant",		grant_names },
};

/*
 * The load in progress.  libconfuse callbacks get no user pointer, hence
 * the file-scope pointer; libconfuse's scanner is global anyway, so
 * conf_load() cannot run twice at once (see conf.h).
 */
struct seen {
	const cfg_t	*sec;		/* section the key was set in */
	const char	*key;		/* owned by libconfuse until cfg_free() */
	unsigned	 line;
};

struct loadctx {
	const char	*file;		/* as the caller named it */
	char		*err;
	size_t		 errlen;
	int		 failed;
	struct seen	*seen;
	size_t		 nseen;
};

static struct loadctx *lctx;

/* ---- messages ---------------------------------------------------------- */

/* Copy src to dst with control characters escaped, so a message stays one line. */
static void
escape_into(char *dst, size_t len, const char *src)
{
	size_t o = 0;

	if (len == 0)
		return;
	for (const unsigned char *p = (const unsigned char *)src; *p; p++) {
		char tmp[5];
		size_t n;

		if (*p < 0x20 || *p == 0x7f) {
			snprintf(tmp, sizeof tmp, "\\x%02x", *p);
			n = 4;
		} else {
			tmp[0] = (char)*p;
			n = 1;
		}
		if (o + n >= len)
			break;
		memcpy(dst + o, tmp, n);
		o += n;
	}
	dst[o] = '\0';
}

/* A value as messages show it: in double quotes, escaped, bounded. */
static const char *
quoted(char *buf, size_t len, const char *s)
{
	size_t o = 0, shown = 0;
	const unsigned char *p;

	buf[o++] = '"';
	for (p = (const unsigned char *)s; *p && shown < QUOTE_MAX; p++, shown++) {
		char tmp[5];
		size_t n = 1;

		if (*p < 0x20 || *p == 0x7f) {
			snprintf(tmp, sizeof tmp, "\\x%02x", *p);
			n = 4;
		} else if (*p == '"' || *p == '\\') {
			tmp[0] = '\\';
			tmp[1] = (char)*p;
			n = 2;
		} else
			tmp[0] = (char)*p;
		if (o + n + 5 >= len)
			break;
		memcpy(buf + o, tmp, n);
		o += n;
	}
	if (*p != '\0') {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

static void conf_failv(unsigned line, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void
conf_failv(unsigned line, const char *fmt, va_list ap)
{
	char msg[1024], full[1200];

	if (lctx == NULL || lctx->failed)
		return;
	lctx->failed = 1;
	vsnprintf(msg, sizeof msg, fmt, ap);
	if (line > 0)
		snprintf(full, sizeof full, "%s:%u: %s", lctx->file, line, msg);
	else
		snprintf(full, sizeof full, "%s: %s", lctx->file, msg);
	if (lctx->err != NULL)
		escape_into(lctx->err, lctx->errlen, full);
}

static void conf_fail(unsigned line, const char *fmt, ...) PRINTFLIKE(2, 3);

static void
conf_fail(unsigned line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	conf_failv(line, fmt, ap);
	va_end(ap);
}

static unsigned
cfg_lineno(const cfg_t *cfg)
{
	return cfg != NULL && cfg->line > 0 ? (unsigned)cfg->line : 0;
}

/*
 * libconfuse's own errors: syntax, unknown keys.  Its text reads well
 * ("no such option 'hostnme'") except for duplicate section titles, which
 * only smarthost sections have.
 */
static void conf_errfunc(cfg_t *cfg, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void
conf_errfunc(cfg_t *cfg, const char *fmt, va_list ap)
{
	if (strcmp(fmt, "found duplicate title '%s'") == 0) {
		char q[QUOTE_MAX * 4 + 8];
		const char *title = va_arg(ap, const char *);

		conf_fail(cfg_lineno(cfg), "smarthost: name %s is used twice",
		    quoted(q, sizeof q, title));
		return;
	}
	conf_failv(cfg_lineno(cfg), fmt, ap);
}

/* ---- small predicates ---------------------------------------------------- */

static int
is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static int
is_alnum(int c)
{
	return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int
hex_value(int c)
{
	if (is_digit(c))
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int
has_control(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return 1;
	return 0;
}

static int
is_ipv6(const char *s)
{
	struct in6_addr a;

	return inet_pton(AF_INET6, s, &a) == 1;
}

/*
 * A DNS host name: labels of letters, digits, '-' and '_' (seen on
 * internal names), no empty label.  A name whose last label is numeric
 * must be a valid IPv4 address: no top-level domain is all digits.
 */
static int
is_hostname(const char *s)
{
	size_t len = strlen(s), label = 0;
	const char *last;
	int numeric = 1;

	if (len == 0 || len > 253)
		return 0;
	for (const char *p = s; *p; p++) {
		if (*p == '.') {
			if (label == 0)
				return 0;
			label = 0;
			continue;
		}
		if (!is_alnum(*p) && *p != '-' && *p != '_')
			return 0;
		if (++label > 63)
			return 0;
	}
	if (label == 0)
		return 0;
	last = strrchr(s, '.');
	last = last ? last + 1 : s;
	for (; *last; last++)
		if (!is_digit(*last))
			numeric = 0;
	if (numeric) {
		struct in_addr a;

		return inet_pton(AF_INET, s, &a) == 1;
	}
	return 1;
}

/* Smarthost names: used on the command line and in logs. */
static int
is_name(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++)
		if (!is_alnum(s[n]) && s[n] != '.' && s[n] != '_' && s[n] != '-')
			return 0;
	return n > 0 && n <= 64;
}

static int
is_username(const char *s)
{
	size_t n = 0;

	if (s[0] == '-')
		return 0;
	for (; s[n]; n++)
		if (!is_alnum(s[n]) && s[n] != '.' && s[n] != '_' && s[n] != '-')
			return 0;
	return n > 0 && n <= 32;
}

/*
 * local@domain, as a bare address (no <>, no display name).  The local
 * part is not parsed to the letter of RFC 5321: it is only kept free of
 * what would break an SMTP command or a header.
 */
static int
is_address(const char *s)
{
	const char *at = strrchr(s, '@');
	const char *dom;

	if (at == NULL || at == s || at[1] == '\0')
		return 0;
	for (const unsigned char *p = (const unsigned char *)s;
	    p < (const unsigned char *)at; p++)
		if (*p <= ' ' || *p == 0x7f || strchr("<>(),;:\\\"[]", *p) != NULL)
			return 0;
	dom = at + 1;
	if (dom[0] == '[') {
		char lit[INET6_ADDRSTRLEN + 8];
		size_t n = strlen(dom);
		struct in_addr a4;

		if (n < 3 || dom[n - 1] != ']' || n - 2 >= sizeof lit)
			return 0;
		memcpy(lit, dom + 1, n - 2);
		lit[n - 2] = '\0';
		if (strncasecmp(lit, "IPv6:", 5) == 0)
			return is_ipv6(lit + 5);
		return inet_pton(AF_INET, lit, &a4) == 1;
	}
	return is_hostname(dom);
}

/* Decimal only: no sign, no 0x, no spaces.  0 on success. */
static int
parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
	unsigned long n = 0;

	if (!is_digit(*s))
		return -1;
	for (; *s; s++) {
		if (!is_digit(*s))
			return -1;
		n = n * 10 + (unsigned long)(*s - '0');
		if (n > max)
			return -1;
	}
	if (n < min)
		return -1;
	*out = n;
	return 0;
}

static int
enum_index(const char *const *names, const char *s)
{
	for (int i = 0; names[i] != NULL; i++)
		if (strcasecmp(names[i], s) == 0)
			return i;
	return -1;
}

static const char *const *
enum_names(const char *key)
{
	for (size_t i = 0; i < sizeof enum_keys / sizeof enum_keys[0]; i++)
		if (strcmp(enum_keys[i].key, key) == 0)
			return enum_keys[i].names;
	return NULL;
}

/* ---- public value parsers ------------------------------------------------ */

/*
 * "90" (seconds), "90s", "15m", "2h", "5d", "1w", and sums such as "1h30m"
 * in which every part has its unit.  Units are case-insensitive.
 */
int
conf_parse_duration(const char *s, unsigned *out)
{
	unsigned long long total = 0;
	int parts = 0;

	if (s == NULL || *s == '\0')
		return -1;
	while (*s) {
		unsigned long long n = 0, mult;

		if (!is_digit(*s))
			return -1;
		for (; is_digit(*s); s++) {
			n = n * 10 + (unsigned)(*s - '0');
			if (n > UINT_MAX)
				return -1;
		}
		switch (*s) {
		case '\0':
			if (parts > 0)
				return -1;	/* "1h30": 30 what? */
			mult = 1;
			break;
		case 's': case 'S': mult = 1; break;
		case 'm': case 'M': mult = 60; break;
		case 'h': case 'H': mult = 3600; break;
		case 'd': case 'D': mult = 86400; break;
		case 'w': case 'W': mult = 7 * 86400; break;
		default:
			return -1;
		}
		if (*s != '\0')
			s++;
		total += n * mult;	/* n < 2^32, mult < 2^20: no wrap */
		if (total > UINT_MAX)
			return -1;
		parts++;
	}
	*out = (unsigned)total;
	return 0;
}

/* "1000", "512K", "35M", "1G": binary multiples, case-insensitive suffix. */
int
conf_parse_size(const char *s, unsigned long long *out)
{
	unsigned long long n = 0, mult = 1;

	if (s == NULL || !is_digit(*s))
		return -1;
	for (; is_digit(*s); s++) {
		unsigned d = (unsigned)(*s - '0');

		if (n > (ULLONG_MAX - d) / 10)
			return -1;
		n = n * 10 + d;
	}
	switch (*s) {
	case '\0': break;
	case 'k': case 'K': mult = 1ULL << 10; s++; break;
	case 'm': case 'M': mult = 1ULL << 20; s++; break;
	case 'g': case 'G': mult = 1ULL << 30; s++; break;
	default:
		return -1;
	}
	if (*s != '\0')
		return -1;
	if (n > ULLONG_MAX / mult)
		return -1;
	*out = n * mult;
	return 0;
}

/*
 * HOST:PORT or [IPv6]:PORT.  Returns NULL with *host and *port allocated,
 * or the reason it is not one.
 */
static const char *
split_hostport(const char *s, char **host, char **port)
{
	const char *portstr;
	char *h;
	unsigned long pn;

	if (s[0] == '[') {
		const char *end = strchr(s, ']');

		if (end == NULL || end[1] != ':')
			return "expected [IPv6-ADDRESS]:PORT";
		h = xstrndup(s + 1, (size_t)(end - s - 1));
		if (!is_ipv6(h)) {
			free(h);
			return "expected an IPv6 address inside [ ]";
		}
		portstr = end + 2;
	} else {
		const char *colon = strrchr(s, ':');

		if (colon == NULL)
			return "expected HOST:PORT";
		if (memchr(s, ':', (size_t)(colon - s)) != NULL)
			return "an IPv6 address goes in brackets, as in [::1]:25";
		h = xstrndup(s, (size_t)(colon - s));
		if (!is_hostname(h)) {
			free(h);
			return "expected a host name or address before the port";
		}
		portstr = colon + 1;
	}
	if (parse_uint(portstr, 1, 65535, &pn) != 0) {
		free(h);
		return "expected a port number from 1 to 65535 after the colon";
	}
	*host = h;
	*port = xasprintf("%lu", pn);
	return NULL;
}

static const char *
listen_parse(const char *s, struct listen_conf *out)
{
	memset(out, 0, sizeof *out);
	if (strncmp(s, "unix:", 5) == 0) {
		const char *path = s + 5;

		if (path[0] != '/')
			return "a unix socket needs an absolute path, as in unix:/run/mailrelay/submit.sock";
		if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
			return "the socket path is too long";
		if (has_control(path))
			return "the socket path contains a control character";
		out->kind = LISTEN_UNIX;
		out->path = xstrdup(path);
		return NULL;
	}
	if (strchr(s, ':') == NULL)
		return "expected unix:/PATH or HOST:PORT";
	out->kind = LISTEN_TCP;
	return split_hostport(s, &out->host, &out->port);
}

int
conf_parse_listen(const char *s, struct listen_conf *out)
{
	if (s == NULL || out == NULL)
		return -1;
	return listen_parse(s, out) == NULL ? 0 : -1;
}

int
conf_parse_cidr(const char *s, struct cidr *out)
{
	char buf[INET6_ADDRSTRLEN];
	const char *slash;
	size_t alen;
	unsigned max;

	if (s == NULL || out == NULL)
		return -1;
	slash = strchr(s, '/');
	alen = slash ? (size_t)(slash - s) : strlen(s);
	if (alen == 0 || alen >= sizeof buf)
		return -1;
	memcpy(buf, s, alen);
	buf[alen] = '\0';
	memset(out, 0, sizeof *out);
	if (inet_pton(AF_INET, buf, out->addr) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else
		return -1;
	out->prefix = max;
	if (slash != NULL) {
		unsigned long p;

		/* at most 3 digits: "/0000000000000000000032" is not a typo we keep */
		if (strlen(slash + 1) > 3 || parse_uint(slash + 1, 0, max, &p) != 0)
			return -1;
		out->prefix = (unsigned)p;
	}
	/* Host bits are cleared: "10.1.2.3/8" means 10.0.0.0/8. */
	for (unsigned bit = out->prefix; bit < max; bit++)
		out->addr[bit / 8] &= (unsigned char)~(0x80u >> (bit % 8));
	return 0;
}

static int
prefix_match(const unsigned char *a, const unsigned char *net, unsigned prefix)
{
	unsigned bytes = prefix / 8, rest = prefix % 8;

	if (memcmp(a, net, bytes) != 0)
		return 0;
	if (rest == 0)
		return 1;
	unsigned char mask = (unsigned char)(0xffu << (8 - rest));
	return (a[bytes] & mask) == (net[bytes] & mask);
}

int
conf_allow_match(const struct config *conf, const struct sockaddr *sa)
{
	static const unsigned char mapped[12] =
	    { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	unsigned char a4[4], a6[16];
	int have4 = 0;

	if (conf == NULL || sa == NULL)
		return 0;
	if (sa->sa_family == AF_INET) {
		struct sockaddr_in sin;

		memcpy(&sin, sa, sizeof sin);
		memcpy(a4, &sin.sin_addr, 4);
		/* also as ::ffff:a.b.c.d, for networks written that way */
		memcpy(a6, mapped, 12);
		memcpy(a6 + 12, a4, 4);
		have4 = 1;
	} else if (sa->sa_family == AF_INET6) {
		struct sockaddr_in6 sin6;

		memcpy(&sin6, sa, sizeof sin6);
		memcpy(a6, &sin6.sin6_addr, 16);
		if (memcmp(a6, mapped, 12) == 0) {
			memcpy(a4, a6 + 12, 4);
			have4 = 1;
		}
	} else
		return 0;

	for (size_t i = 0; i < conf->nallow; i++) {
		const struct cidr *net = &conf->allow[i];

		if (net->family == AF_INET && have4 &&
		    prefix_match(a4, net->addr, net->prefix))
			return 1;
		if (net->family == AF_INET6 &&
		    prefix_match(a6, net->addr, net->prefix))
			return 1;
	}
	return 0;
}

/* "sha256:" and 32 bytes in hex, optionally colon-separated: normalised copy or NULL. */
static char *
fingerprint_normalize(const char *s)
{
	char hex[65];
	size_t n = 0;
	int prev_colon = 0;

	if (strncasecmp(s, "sha256:", 7) != 0)
		return NULL;
	for (const char *p = s + 7; *p; p++) {
		if (*p == ':') {
			/* only between byte pairs, as openssl x509 -fingerprint prints */
			if (n == 0 || n % 2 != 0 || prev_colon || p[1] == '\0')
				return NULL;
			prev_colon = 1;
			continue;
		}
		prev_colon = 0;
		if (hex_value(*p) < 0 || n == 64)
			return NULL;
		hex[n++] = "0123456789abcdef"[hex_value(*p)];
	}
	if (n != 64)
		return NULL;
	hex[n] = '\0';
	return xasprintf("sha256:%s", hex);
}

/* "COUNT/PERIOD": "30/m", "100/1h", "10000/d". */
static int
rate_limit_parse(const char *s, unsigned *count, unsigned *period)
{
	const char *slash = strchr(s, '/');
	char num[16], per[32];
	unsigned long c;
	size_t n;

	if (slash == NULL || (size_t)(slash - s) >= sizeof num)
		return -1;
	memcpy(num, s, (size_t)(slash - s));
	num[slash - s] = '\0';
	if (parse_uint(num, 1, UINT_MAX, &c) != 0)
		return -1;
	n = strlen(slash + 1);
	if (n == 0 || n + 2 > sizeof per)
		return -1;
	/* "30/m" reads as "30 per 1m" */
	snprintf(per, sizeof per, "%s%s", is_digit(slash[1]) ? "" : "1", slash + 1);
	if (conf_parse_duration(per, period) != 0 || *period == 0)
		return -1;
	*count = (unsigned)c;
	return 0;
}

/* An extra header line: "Name: value", safe to put into a message. */
static int
is_header(const char *s)
{
	const char *colon = strchr(s, ':');

	if (colon == NULL || colon == s || strlen(s) > 998)
		return 0;
	for (const char *p = s; p < colon; p++)
		if (*p <= ' ' || *p > '~')
			return 0;
	for (const unsigned char *p = (const unsigned char *)colon; *p; p++)
		if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
			return 0;
	return 1;
}

/* ---- parse callbacks ---------------------------------------------------- */

/*
 * Note where a key was set.  Setting a plain key twice in one section is
 * refused: libconfuse would keep the last silently, and the first is
 * usually the one the reader looks at.
 */
static int
note(cfg_t *cfg, cfg_opt_t *opt)
{
	unsigned line = cfg_lineno(cfg);

	if (lctx == NULL || line == 0)	/* a default from the schema */
		return 0;
	for (size_t i = 0; i < lctx->nseen; i++) {
		struct seen *s = &lctx->seen[i];

		if (s->sec != cfg || strcmp(s->key, opt->name) != 0)
			continue;
		if (opt->flags & CFGF_LIST)
			return 0;	/* the first line of a list is its line */
		conf_fail(line, "%s: set twice (first on line %u)", opt->name, s->line);
		return -1;
	}
	lctx->seen = xreallocarray(lctx->seen, lctx->nseen + 1, sizeof *lctx->seen);
	lctx->seen[lctx->nseen++] = (struct seen){ cfg, opt->name, line };
	return 0;
}

/*
 * A check looks at one value of one key: NULL when it is fine, else what
 * was expected, which becomes "KEY: <that>, got \"VALUE\"".
 */
typedef const char *check_fn(const cfg_opt_t *opt, const char *value);

/*
 * What every callback does: note the key, refuse control characters (they
 * have no business in any key and could forge a header or a log line),
 * run the key's check, and hand the text to libconfuse unchanged.
 */
static int
checked(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result, check_fn *check)
{
	char q[QUOTE_MAX * 4 + 8];
	const char *why;

	if (value == NULL || note(cfg, opt) != 0)
		return -1;
	why = has_control(value) ? "control characters are not allowed" : check(opt, value);
	if (why != NULL && strcmp(opt->name, "password") == 0) {
		/* a secret is never shown, not even the part that is wrong */
		conf_fail(cfg_lineno(cfg), "%s: %s", opt->name, why);
		return -1;
	}
	if (why != NULL) {
		conf_fail(cfg_lineno(cfg), "%s: %s, got %s", opt->name, why,
		    quoted(q, sizeof q, value));
		return -1;
	}
	*(const char **)result = value;
	return 0;
}

#define CALLBACK(cb, check)						\
static int								\
cb(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)	\
{									\
	return checked(cfg, opt, value, result, check);			\
}

static const char *
check_text(const cfg_opt_t *opt, const char *v)
{
	(void)opt;
	return *v ? NULL : "expected a value";
}

/*
 * "too long (N octets): WHY" in a static buffer, for the checks of values
 * that must fit an SMTP command or header (conf_load() runs one at a time).
 * The length is told because the message quotes only the value's start.
 */
static const char *
too_long(size_t len, const char *why)
{
	static char msg[256];

	snprintf(msg, sizeof msg, "too long (%zu octets): %s", len, why);
	return msg;
}

static const char *
check_path(const cfg_opt_t *opt, const char *v)
{
	(void)opt;
	if (v[0] != '/')
		return "expected an absolute path";
	/* open() would fail later with ENAMETOOLONG, at a worse moment */
	if (strlen(v) >= PATH_MAX)
		return too_long(strlen(v), "a path has at most " STR(PATH_MAX_1) " octets");
	return NULL;
}

static const char *
check_socket(const cfg_opt_t *opt, const char *v)
{
	if (check_path(opt, v) != NULL)
		return check_path(opt, v);
	if (strlen(v) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return "the socket path is too long";
	return NULL;
}

static const char *
check_hostname(const cfg_opt_t *opt, const char *v)
{
	(void)opt;
	return is_hostname(v) ? NULL : "expected a host name such as mail.example.com";
}

/*
 * The top-level hostname also qualifies local names (root becomes
 * root@hostname, in MAIL FROM and RCPT TO): with any local part of up to
 * 64 octets the address must still fit, hence 254 - 64 - 1 octets.
 */
_Static_assert(CONF_ADDRESS_MAX - CONF_LOCAL_PART_MAX - 1 == 189, "the message says 189");

static const char *
check_qualifying_hostname(const cfg_opt_t *opt, const char *v)
{
	const char *why = check_hostname(opt, v);

	if (why == NULL && strlen(v) > CONF_ADDRESS_MAX - CONF_LOCAL_PART_MAX - 1)
		return too_long(strlen(v), "the host name qualifies local names, and with a local "
		    "part of 64 octets an address has at most 254, so at most 189 octets");
	return why;
}

static const char *
check_host(const cfg_opt_t *opt, const char *v)
{
	(void)opt;
	return is_hostname(v) || is_ipv6(v) ? NULL :
	    "expected a host name or IP address such as smtp.example.com";
}

static const char *
check_user(const cfg_opt_t *opt, const char *v)
{
	(void)opt;
	return is_username(v) ? NULL : "expected a user name";
}

/*
 * An address the daemon puts into MAIL FROM / RCPT TO (and headers): it
 * must fit the command with its parameters, so its length is checked
 * before its form (a 1,211-octet address is too long, whatever its form).
 */
static const char *
check_address(const cfg_opt_t *opt, const char *v)
{
	const char *at;

	(void)opt;
	if (strlen(v) > CONF_ADDRESS_MAX)
		return too_long(strlen(v), "an address has at most " STR(CONF_ADDRESS_MAX)
		    " octets, 256 with its <> (RFC 5321 4.5.3.1.3)");
	if (!is_address(v))
		return "expected an address such as postmaster@example.com";
	at = strrchr(v, '@');
	if ((size_t)(at - v) > CONF_LOCAL_PART_MAX)
		return too_long((size_t)(at - v), "the part before the @ has at most "
		    STR(CONF_LOCAL_PART_MAX) " octets (RFC 5321 4.5.3.1.1)");
	return NULL;
}

/* The SASL authentication identity, sent in every AUTH mechanism. */
static const char *
check_sasl_user(const cfg_opt_t *opt, const char *v)
{
	(void)opt;
	if (*v == '\0')
		return "expected a value";
	if (strlen(v) > CONF_USERNAME_MAX)
		return too_long(strlen(v), "a user name has at most " STR(CONF_USERNAME_MAX)
		    " octets (RFC 4616)");
	return NULL;
}

/* An inline password: it goes base64-encoded into one AUTH line. */
static const char *
check_password(const cfg_opt_t *opt, const char *v)
{
	(void)opt;
	if (*v == '\0')
		return "expected a value";
	if (strlen(v) > CONF_PASSWORD_MAX)
		return too_long(strlen(v), "a password has at most " STR(CONF_PASSWORD_MAX)
		    " octets, to fit the AUTH command");
	return NULL;
}

static const char *
check_enum(const cfg_opt_t *opt, const char *v)
{
	static char why[256];	/* conf_load() runs one at a time */
	const char *const *names = enum_names(opt->name);

	if (names == NULL)
		log_fatalx("conf: no value names for key %s", opt->name);
	if (enum_index(names, v) >= 0)
		return NULL;
	strlcpy_mr(why, "expected one of ", sizeof why);
	for (int i = 0; names[i] != NULL; i++) {
		if (i > 0)
			strlcat_mr(why, ", ", sizeof why);
		strlcat_mr(why, names[i], sizeof why);
	}
	return why;
}

static const char *
check_bool(const cfg_opt_t *opt, const char *v)
{
	(void)opt;
	return cfg_parse_boolean(v) >= 0 ? NULL : "expected yes or no";
}

static const char *
check_duration(const cfg_opt_t *opt, const char *v)
{
	unsigned secs;

	(void)opt;
	if (conf_parse_duration(v, &secs) != 0)
		return "expected a duration such as 90s, 15m, 2h or 5d";
	return secs > 0 ? NULL : "expected at least 1s";
}

/* A duration for which 0 means "never". */
static const char *
check_duration0(const cfg_opt_t *opt, const char *v)
{
	unsigned secs;

	(void)opt;
	return conf_parse_duration(v, &secs) == 0 ? NULL :
	    "expected a duration such as 90s, 15m, 2h or 5d (0 for never)";
}

static const char *
check_size(const cfg_opt_t *opt, const char *v)
{
	unsigned long long n;

	(void)opt;
	return conf_parse_size(v, &n) == 0 ? NULL : "expected a size such as 35M";
}

static const char *
check_concurrency(const cfg_opt_t *opt, const char *v)
{
	unsigned long n;

	(void)opt;
	return parse_uint(v, 1, 256, &n) == 0 ? NULL : "expected a number from 1 to 256";
}

/* max_connections, max_connections_per_client: a descriptor budget, not a wish */
static const char *
check_connections(const cfg_opt_t *opt, const char *v)
{
	unsigned long n;

	(void)opt;
	return parse_uint(v, 1, CONF_CONNECTIONS_MAX, &n) == 0 ? NULL :
	    "expected a number from 1 to 10000";
}

static const char *
check_port(const cfg_opt_t *opt, const char *v)
{
	unsigned long n;

	(void)opt;
	return parse_uint(v, 1, 65535, &n) == 0 ? NULL :
	    "expected a port number from 1 to 65535";
}

static const char *
check_listen(const cfg_opt_t *opt, const char *v)
{
	struct listen_conf l;
	const char *why;

	if ((why = listen_parse(v, &l)) != NULL)
		return why;
	free(l.path);
	free(l.host);
	free(l.port);
	/* The entry being parsed is already in the list, still without a value. */
	for (unsigned i = 0; i < opt->nvalues; i++) {
		const char *other = opt->values[i]->string;

		if (other != NULL && strcmp(other, v) == 0)
			return "listed twice";
	}
	return NULL;
}

/*
 * metrics_listen: a TCP HOST:PORT on loopback only.  The metrics carry no
 * address, but queue sizes and smarthost names are still the host's own
 * business and evhttp is not a server we put in front of a network: a
 * fleet scrapes through node_exporter's textfile collector (`mailrelay
 * status --prometheus`) or a local proxy.
 */
static const char *
check_metrics_listen(const cfg_opt_t *opt, const char *v)
{
	struct listen_conf l;
	const char *why;
	struct in_addr a4;
	int loopback;

	(void)opt;
	if ((why = listen_parse(v, &l)) != NULL)
		return why;
	loopback = l.kind == LISTEN_TCP && (strcmp(l.host, "localhost") == 0 ||
	    strcmp(l.host, "::1") == 0 ||
	    (inet_pton(AF_INET, l.host, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127));
	if (l.kind != LISTEN_TCP)
		why = "expected HOST:PORT, as in 127.0.0.1:9465";
	else if (!loopback)
		why = "only a loopback address is allowed (127.0.0.1, ::1, localhost): the metrics are "
		    "not served to the network; scrape through node_exporter or a local proxy";
	free(l.path);
	free(l.host);
	free(l.port);
	return why;
}

static const char *
check_cidr(const cfg_opt_t *opt, const char *v)
{
	struct cidr c;

	(void)opt;
	return conf_parse_cidr(v, &c) == 0 ? NULL :
	    "expected an address or network such as 127.0.0.0/8 or ::1";
}

static const char *
check_fingerprint(const cfg_opt_t *opt, const char *v)
{
	char *norm = fingerprint_normalize(v);
	int ok = norm != NULL;

	(void)opt;
	free(norm);
	return ok ? NULL : "expected \"sha256:\" and 64 hex digits";
}

static const char *
check_proxy(const cfg_opt_t *opt, const char *v)
{
	char *host, *port;

	(void)opt;
	if (strncasecmp(v, "socks5://", 9) != 0 ||
	    split_hostport(v + 9, &host, &port) != NULL)
		return "expected socks5://HOST:PORT";
	free(host);
	free(port);
	return NULL;
}

static const char *
check_header(const cfg_opt_t *opt, const char *v)
{
	(void)opt;
	return is_header(v) ? NULL :
	    "expected a header line such as \"X-Mailer-Host: web1\"";
}

static const char *
check_rate_limit(const cfg_opt_t *opt, const char *v)
{
	unsigned c, p;

	(void)opt;
	return rate_limit_parse(v, &c, &p) == 0 ? NULL :
	    "expected messages per time such as 30/m or 1000/1h";
}

static const char *
check_pattern(const cfg_opt_t *opt, const char *v)
{
	(void)opt;
	if (*v == '\0' || strpbrk(v, " \t") != NULL || strlen(v) > 320)
		return "expected a sender pattern such as \"*@example.com\"";
	return NULL;
}

/*
 * An OAuth2 endpoint.  Only https: the request carries the client secret
 * or a refresh token.  No spaces or quotes, so it can be shown and logged
 * as it is.
 */
static const char *
check_url(const cfg_opt_t *opt, const char *v)
{
	(void)opt;
	if (strncasecmp(v, "https://", 8) != 0 || v[8] == '\0' || v[8] == '/' ||
	    strpbrk(v, " \"'<>\\") != NULL || strlen(v) > 2048)
		return "expected an https:// URL";
	return NULL;
}

/* A Microsoft tenant: a directory id (GUID), a domain, or organizations / common / consumers. */
static const char *
check_tenant(const cfg_opt_t *opt, const char *v)
{
	(void)opt;
	if (*v == '\0' || strlen(v) > 253)
		return "expected a directory id or domain such as contoso.onmicrosoft.com";
	for (const char *p = v; *p; p++)
		if (!is_alnum((unsigned char)*p) && *p != '.' && *p != '-')
			return "expected a directory id or domain such as contoso.onmicrosoft.com";
	return NULL;
}

/* A client id or a scope list: printable ASCII, spaces only between scopes, bounded. */
static const char *
check_token_text(const cfg_opt_t *opt, const char *v)
{
	int spaces_ok = strcmp(opt->name, "scope") == 0;

	if (*v == '\0' || strlen(v) > 1024)
		return "expected a value of at most 1024 characters";
	for (const unsigned char *p = (const unsigned char *)v; *p; p++)
		if (*p > '~' || *p == '"' || *p == '\\' || (*p == ' ' && !spaces_ok) || *p < ' ')
			return spaces_ok ? "expected scopes separated by spaces" :
			    "expected printable characters without spaces";
	return NULL;
}

static const char *
check_name(const cfg_opt_t *opt, const char *v)
{
	(void)opt;
	return is_name(v) ? NULL : "expected a smarthost name";
}

CALLBACK(cb_text, check_text)
CALLBACK(cb_path, check_path)
CALLBACK(cb_socket, check_socket)
CALLBACK(cb_hostname, check_hostname)
CALLBACK(cb_qualifying_hostname, check_qualifying_hostname)
CALLBACK(cb_host, check_host)
CALLBACK(cb_user, check_user)
CALLBACK(cb_address, check_address)
CALLBACK(cb_sasl_user, check_sasl_user)
CALLBACK(cb_password, check_password)
CALLBACK(cb_enum, check_enum)
CALLBACK(cb_bool, check_bool)
CALLBACK(cb_duration, check_duration)
CALLBACK(cb_duration0, check_duration0)
CALLBACK(cb_size, check_size)
CALLBACK(cb_concurrency, check_concurrency)
CALLBACK(cb_connections, check_connections)
CALLBACK(cb_port, check_port)
CALLBACK(cb_listen, check_listen)
CALLBACK(cb_cidr, check_cidr)
CALLBACK(cb_metrics_listen, check_metrics_listen)
CALLBACK(cb_fingerprint, check_fingerprint)
CALLBACK(cb_proxy, check_proxy)
CALLBACK(cb_header, check_header)
CALLBACK(cb_rate_limit, check_rate_limit)
CALLBACK(cb_pattern, check_pattern)
CALLBACK(cb_name, check_name)
CALLBACK(cb_url, check_url)
CALLBACK(cb_tenant, check_tenant)
CALLBACK(cb_token_text, check_token_text)

/* ---- the schema ---------------------------------------------------------- */

static cfg_opt_t oauth2_opts[] = {
	CFG_STR_CB("provider", NULL, CFGF_NODEFAULT, cb_enum),	/* generic, or the preset's */
	CFG_STR_CB("tenant", NULL, CFGF_NONE, cb_tenant),
	CFG_STR_CB("client_id", NULL, CFGF_NONE, cb_token_text),
	CFG_STR_CB("client_secret_file", NULL, CFGF_NONE, cb_path),
	CFG_STR_CB("client_certificate", NULL, CFGF_NONE, cb_path),
	CFG_STR_CB("client_key", NULL, CFGF_NONE, cb_path),
	CFG_STR_CB("refresh_token_file", NULL, CFGF_NONE, cb_path),
	CFG_STR_CB("scope", NULL, CFGF_NONE, cb_token_text),	/* the provider's for the grant */
	CFG_STR_CB("token_url", NULL, CFGF_NONE, cb_url),	/* the provider's */
	CFG_STR_CB("device_url", NULL, CFGF_NONE, cb_url),	/* the provider's */
	CFG_STR_CB("authorize_url", NULL, CFGF_NONE, cb_url),	/* the provider's */
	CFG_STR_CB("grant", NULL, CFGF_NODEFAULT, cb_enum),	/* see build_oauth2() */
	CFG_END()
};

static cfg_opt_t smarthost_opts[] = {
	CFG_STR_CB("preset", NULL, CFGF_NONE, cb_enum),
	CFG_STR_CB("host", NULL, CFGF_NONE, cb_host),
	CFG_STR_CB("port", NULL, CFGF_NODEFAULT, cb_port),	/* 587, or 465 for implicit */
	CFG_STR_CB("tls", "required", CFGF_NONE, cb_enum),
	CFG_STR_CB("timeout", "60s", CFGF_NONE, cb_duration),
	CFG_STR_CB("connect_timeout", "30s", CFGF_NONE, cb_duration),
	CFG_STR_CB("data_timeout", "10m", CFGF_NONE, cb_duration),
	CFG_STR_CB("reuse_time", "2s", CFGF_NONE, cb_duration0),
	CFG_STR_CB("helo_name", NULL, CFGF_NONE, cb_hostname),
	CFG_STR_CB("helo_fallback", "yes", CFGF_NONE, cb_bool),
	CFG_STR_CB("tls_verify", "yes", CFGF_NONE, cb_bool),
	CFG_STR_CB("tls_ca_file", NULL, CFGF_NONE, cb_path),
	CFG_STR_CB("tls_ca_path", NULL, CFGF_NONE, cb_path),
	CFG_STR_CB("tls_fingerprint", NULL, CFGF_NONE, cb_fingerprint),
	CFG_STR_CB("tls_client_cert", NULL, CFGF_NONE, cb_path),
	CFG_STR_CB("tls_client_key", NULL, CFGF_NONE, cb_path),
	CFG_STR_CB("tls_min_version", "TLSv1.2", CFGF_NONE, cb_enum),
	CFG_STR_CB("tls_ciphers", NULL, CFGF_NONE, cb_text),
	CFG_STR_CB("auth", NULL, CFGF_NODEFAULT, cb_enum),	/* auto with username, else none */
	CFG_STR_CB("username", NULL, CFGF_NONE, cb_sasl_user),
	CFG_STR_CB("password", NULL, CFGF_NONE, cb_password),
	CFG_STR_CB("password_file", NULL, CFGF_NONE, cb_path),
	CFG_STR_CB("password_command", NULL, CFGF_NONE, cb_text),
	CFG_STR_CB("auth_allow_plaintext", "no", CFGF_NONE, cb_bool),
	CFG_STR_CB("proxy", NULL, CFGF_NONE, cb_proxy),
	CFG_STR_LIST_CB("add_header", NULL, CFGF_NONE, cb_header),
	CFG_STR_CB("rate_limit", NULL, CFGF_NONE, cb_rate_limit),
	CFG_SEC("oauth2", oauth2_opts, CFGF_NODEFAULT),
	CFG_END()
};

static cfg_opt_t route_opts[] = {
	CFG_STR_CB("from", NULL, CFGF_NONE, cb_pattern),
	CFG_STR_CB("smarthost", NULL, CFGF_NONE, cb_name),
	CFG_END()
};

static cfg_opt_t top_opts[] = {
	CFG_STR_CB("hostname", NULL, CFGF_NONE, cb_qualifying_hostname),	/* NULL: ask the system */
	CFG_STR_CB("spool_dir", "/var/spool/mailrelay", CFGF_NONE, cb_path),
	CFG_STR_CB("user", "mailrelay", CFGF_NONE, cb_user),
	CFG_STR_LIST_CB("listen", "{\"unix:/run/mailrelay/submit.sock\"}", CFGF_NONE, cb_listen),
	CFG_STR_LIST_CB("allow", "{\"127.0.0.0/8\", \"::1/128\"}", CFGF_NONE, cb_cidr),
	CFG_STR_CB("control_socket", "/run/mailrelay/control.sock", CFGF_NONE, cb_socket),
	CFG_STR_CB("metrics_listen", NULL, CFGF_NONE, cb_metrics_listen),	/* NULL: no /metrics */
	CFG_STR_CB("max_message_size", "35M", CFGF_NONE, cb_size),
	CFG_STR_LIST_CB("retry_schedule", "{1m, 5m, 15m, 30m, 1h, 2h, 4h}", CFGF_NONE, cb_duration),
	CFG_STR_CB("max_queue_time", "5d", CFGF_NONE, cb_duration),
	CFG_STR_CB("concurrency", "4", CFGF_NONE, cb_concurrency),
	CFG_STR_CB("log_level", "info", CFGF_NONE, cb_enum),
	CFG_STR_CB("log_file", NULL, CFGF_NONE, cb_path),
	CFG_STR_CB("admin_address", NULL, CFGF_NONE, cb_address),
	CFG_STR_CB("aliases_file", "/etc/aliases", CFGF_NONE, cb_path),
	CFG_STR_CB("from_address", NULL, CFGF_NONE, cb_address),
	CFG_STR_CB("rewrite_from", "local", CFGF_NONE, cb_enum),
	CFG_STR_CB("strict_addresses", "no", CFGF_NONE, cb_bool),
	CFG_STR_CB("double_bounce", "admin", CFGF_NONE, cb_enum),
	CFG_STR_CB("delay_warning", "4h", CFGF_NONE, cb_duration0),
	CFG_STR_CB("max_connections", "100", CFGF_NONE, cb_connections),
	CFG_STR_CB("max_connections_per_client", "20", CFGF_NONE, cb_connections),
	CFG_STR_CB("idle_timeout", "5m", CFGF_NONE, cb_duration),
	CFG_STR_CB("session_timeout", "1h", CFGF_NONE, cb_duration),
	CFG_SEC("smarthost", smarthost_opts, CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
	CFG_SEC("route", route_opts, CFGF_MULTI),
	CFG_END()
};

/* ---- conversion ---------------------------------------------------------- */

static unsigned
line_of(const cfg_t *sec, const char *key)
{
	for (size_t i = 0; i < lctx->nseen; i++)
		if (lctx->seen[i].sec == sec && strcmp(lctx->seen[i].key, key) == 0)
			return lctx->seen[i].line;
	return 0;
}

/* Keys set in sec, and in its subsection sub (NULL: none), for conf_key_line(). */
static void
copy_keylines(const cfg_t *sec, const cfg_t *sub, struct conf_keyline **out, size_t *nout)
{
	size_t n = 0;

	for (size_t i = 0; i < lctx->nseen; i++)
		if (lctx->seen[i].sec == sec || (sub != NULL && lctx->seen[i].sec == sub))
			n++;
	*out = n ? xcalloc(n, sizeof **out) : NULL;
	*nout = 0;
	for (size_t i = 0; i < lctx->nseen; i++) {
		if (lctx->seen[i].sec != sec && (sub == NULL || lctx->seen[i].sec != sub))
			continue;
		(*out)[*nout].key = xstrdup(lctx->seen[i].key);
		(*out)[(*nout)++].line = lctx->seen[i].line;
	}
}

/*
 * The getters below convert text the callbacks (or the schema's defaults)
 * already validated: failing here is a broken invariant, not a user error.
 */
static char *
get_str(cfg_t *sec, const char *key)
{
	const char *s = cfg_getstr(sec, key);

	return s ? xstrdup(s) : NULL;
}

static _Noreturn void
invariant(const char *key, const char *value)
{
	log_fatalx("conf: %s: converting validated value \"%s\" failed", key,
	    value ? value : "(null)");
}

static unsigned
get_duration_at(cfg_t *sec, const char *key, unsigned i)
{
	const char *s = cfg_getnstr(sec, key, i);
	unsigned v;

	if (s == NULL || conf_parse_duration(s, &v) != 0)
		invariant(key, s);
	return v;
}

static unsigned
get_duration(cfg_t *sec, const char *key)
{
	return get_duration_at(sec, key, 0);
}

static unsigned
get_uint(cfg_t *sec, const char *key, unsigned long max)
{
	const char *s = cfg_getstr(sec, key);
	unsigned long v;

	if (s == NULL || parse_uint(s, 0, max, &v) != 0)
		invariant(key, s);
	return (unsigned)v;
}

static int
get_enum(cfg_t *sec, const char *key)
{
	const char *s = cfg_getstr(sec, key);
	int i;

	if (s == NULL || (i = enum_index(enum_names(key), s)) < 0)
		invariant(key, s);
	return i;
}

static bool
get_bool(cfg_t *sec, const char *key)
{
	const char *s = cfg_getstr(sec, key);
	int b;

	if (s == NULL || (b = cfg_parse_boolean(s)) < 0)
		invariant(key, s);
	return b == 1;
}

#ifndef MAILNAME_PATH
#define MAILNAME_PATH "/etc/mailname"
#endif

/*
 * The mail name of Debian policy: the first line of /etc/mailname,
 * surrounding blanks removed, or NULL when the file is missing, empty,
 * unreadable, or its line is not a host name with a dot that can qualify
 * local names (at most 189 octets).  The path is fixed at compile time:
 * the setgid client reads it too, so nothing it runs under may move it.
 * Only the first 256 octets are read: a longer line is no host name anyway.
 */
static char *
read_mailname(void)
{
	char buf[258], *p, *end;
	FILE *f;

	if ((f = fopen(MAILNAME_PATH, "re")) == NULL)
		return NULL;
	p = fgets(buf, sizeof buf, f);
	fclose(f);
	if (p == NULL)
		return NULL;
	p[strcspn(p, "\n")] = '\0';
	while (*p == ' ' || *p == '\t')
		p++;
	end = p + strlen(p);
	while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		*--end = '\0';
	if (strchr(p, '.') == NULL || !is_hostname(p) ||
	    strlen(p) > CONF_ADDRESS_MAX - CONF_LOCAL_PART_MAX - 1)
		return NULL;
	return xstrdup(p);
}

/*
 * The host name this machine calls itself when the configuration does not
 * say, in the order Debian admins expect: /etc/mailname, then the fully
 * qualified name the resolver gives for gethostname() (as Postfix's
 * myhostname), then gethostname() itself.  The result may lack a dot;
 * conf_hostname_dotless() lets check-config and the daemon say so.
 */
static char *
default_hostname(void)
{
	char name[256];
	struct addrinfo hints, *res = NULL;
	char *fq = NULL;

	if ((fq = read_mailname()) != NULL)
		return fq;
	if (gethostname(name, sizeof name) != 0 || name[0] == '\0')
		return xstrdup("localhost");
	name[sizeof name - 1] = '\0';
	if (strchr(name, '.') != NULL)
		return xstrdup(name);
	/*
	 * A bare name makes a poor HELO and bad qualified addresses; the
	 * resolver (usually /etc/hosts) may know the full one.  Any failure
	 * keeps the bare name: this must work without a network.
	 */
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_CANONNAME;
	if (getaddrinfo(name, NULL, &hints, &res) == 0) {
		if (res != NULL && res->ai_canonname != NULL &&
		    strchr(res->ai_canonname, '.') != NULL &&
		    is_hostname(res->ai_canonname) &&
		    strlen(res->ai_canonname) <= CONF_ADDRESS_MAX - CONF_LOCAL_PART_MAX - 1)
			fq = xstrdup(res->ai_canonname);
		freeaddrinfo(res);
	}
	return fq ? fq : xstrdup(name);
}

int
conf_hostname_dotless(const struct config *c)
{
	return strchr(c->hostname, '.') == NULL;
}

/*
 * What a preset fills in when the section does not set it.  A preset
 * never hides a key: check-config --show prints each value it filled.
 */
static const struct preset {
	enum smarthost_preset	 preset;
	const char		*host;
	unsigned		 port;
	enum tls_mode		 tls;
	enum auth_mech		 auth;
	enum oauth2_provider	 provider;
} presets[] = {
	{ PRESET_MICROSOFT365, "smtp.office365.com", 587, TLS_REQUIRED, AUTH_XOAUTH2, OAUTH2_MICROSOFT },
	{ PRESET_GMAIL, "smtp.gmail.com", 465, TLS_IMPLICIT, AUTH_XOAUTH2, OAUTH2_GOOGLE },
};

static const struct preset *
preset_of(enum smarthost_preset p)
{
	for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
		if (presets[i].preset == p)
			return &presets[i];
	return NULL;
}

/*
 * The provider defaults of the issue: Microsoft's v2.0 endpoints under the
 * tenant, with the .default scope of Exchange Online for an application
 * (client credentials) and SMTP.Send for a user (delegated); Google's one
 * scope for SMTP.  A generic provider has no defaults: token_url is required.
 */
static void
oauth2_defaults(struct oauth2_conf *o)
{
	switch (o->provider) {
	case OAUTH2_MICROSOFT:
		if (o->scope == NULL)
			o->scope = xstrdup(o->grant == OAUTH2_CLIENT_CREDENTIALS ?
			    "https://outlook.office365.com/.default" :
			    "https://outlook.office.com/SMTP.Send offline_access");
		if (o->token_url == NULL)
			o->token_url = xasprintf("https://login.microsoftonline.com/%s/oauth2/v2.0/token",
			    o->tenant);
		if (o->device_url == NULL)
			o->device_url = xasprintf("https://login.microsoftonline.com/%s/oauth2/v2.0/devicecode",
			    o->tenant);
		if (o->authorize_url == NULL)
			o->authorize_url = xasprintf("https://login.microsoftonline.com/%s/oauth2/v2.0/authorize",
			    o->tenant);
		break;
	case OAUTH2_GOOGLE:
		if (o->scope == NULL)
			o->scope = xstrdup("https://mail.google.com/");
		if (o->token_url == NULL)
			o->token_url = xstrdup("https://oauth2.googleapis.com/token");
		if (o->device_url == NULL)
			o->device_url = xstrdup("https://oauth2.googleapis.com/device/code");
		if (o->authorize_url == NULL)
			o->authorize_url = xstrdup("https://accounts.google.com/o/oauth2/v2/auth");
		break;
	case OAUTH2_GENERIC:
		break;
	}
}

/*
 * The oauth2 { } section of smarthost sh (named q in messages).  The rules:
 * a client_id always; one client credential at most (a secret file, or a
 * certificate with its key); the grant, unless set, is refresh_token when
 * a refresh_token_file is given and client_credentials otherwise;
 * client_credentials needs a client credential, refresh_token its file,
 * password the smarthost's password (the resource-owner flow: username
 * and password are the user's).
 */
static int
build_oauth2(cfg_t *osec, cfg_t *sec, struct smarthost_conf *sh, enum oauth2_provider dflt,
    const char *q)
{
	struct oauth2_conf *o = xcalloc(1, sizeof *o);
	unsigned end = cfg_lineno(osec);

	sh->oauth2 = o;
	o->provider = cfg_getstr(osec, "provider") ? (enum oauth2_provider)get_enum(osec, "provider") : dflt;
	o->tenant = get_str(osec, "tenant");
	o->client_id = get_str(osec, "client_id");
	o->client_secret_file = get_str(osec, "client_secret_file");
	o->client_certificate = get_str(osec, "client_certificate");
	o->client_key = get_str(osec, "client_key");
	o->refresh_token_file = get_str(osec, "refresh_token_file");
	o->scope = get_str(osec, "scope");
	o->token_url = get_str(osec, "token_url");
	o->device_url = get_str(osec, "device_url");
	o->authorize_url = get_str(osec, "authorize_url");
	if (cfg_getstr(osec, "grant") != NULL)
		o->grant = (enum oauth2_grant)get_enum(osec, "grant");
	else
		o->grant = o->refresh_token_file ? OAUTH2_REFRESH_TOKEN : OAUTH2_CLIENT_CREDENTIALS;

	if (sh->auth != AUTH_XOAUTH2 && sh->auth != AUTH_OAUTHBEARER) {
		conf_fail(end, "oauth2: needs auth = xoauth2 or auth = oauthbearer in smarthost %s", q);
		return -1;
	}
	if (o->client_id == NULL) {
		conf_fail(end, "oauth2: client_id is required in smarthost %s", q);
		return -1;
	}
	if (o->client_secret_file != NULL && o->client_certificate != NULL) {
		const char *later = line_of(osec, "client_certificate") > line_of(osec, "client_secret_file") ?
		    "client_certificate" : "client_secret_file";
		conf_fail(line_of(osec, later),
		    "%s: only one of client_secret_file and client_certificate may be set", later);
		return -1;
	}
	if ((o->client_certificate != NULL) != (o->client_key != NULL)) {
		const char *set = o->client_key ? "client_key" : "client_certificate";
		conf_fail(line_of(osec, set), "%s: client_certificate and client_key go together "
		    "(a certificate credential signs a JWT client assertion)", set);
		return -1;
	}
	if (o->provider == OAUTH2_MICROSOFT && o->tenant == NULL &&
	    (o->token_url == NULL || o->device_url == NULL || o->authorize_url == NULL)) {
		conf_fail(end, "oauth2: provider microsoft needs a tenant (the directory id or "
		    "a domain such as contoso.onmicrosoft.com) in smarthost %s", q);
		return -1;
	}
	if (o->provider == OAUTH2_GENERIC && o->token_url == NULL) {
		conf_fail(end, "oauth2: provider generic needs a token_url in smarthost %s", q);
		return -1;
	}
	switch (o->grant) {
	case OAUTH2_CLIENT_CREDENTIALS:
		if (o->client_secret_file == NULL && o->client_certificate == NULL) {
			conf_fail(line_of(osec, "grant") ? line_of(osec, "grant") : end,
			    "grant: client_credentials needs a client_secret_file, or a client_certificate "
			    "and client_key, in smarthost %s", q);
			return -1;
		}
		break;
	case OAUTH2_REFRESH_TOKEN:
		if (o->refresh_token_file == NULL) {
			conf_fail(line_of(osec, "grant"), "grant: refresh_token needs a refresh_token_file "
			    "(mailrelay oauth2 authorize --smarthost %s writes it) in smarthost %s",
			    sh->name, q);
			return -1;
		}
		break;
	case OAUTH2_PASSWORD:
		if (sh->password == NULL && sh->password_file == NULL) {
			conf_fail(line_of(osec, "grant"), "grant: password needs the user's password or "
			    "password_file on smarthost %s", q);
			return -1;
		}
		break;
	}
	if (o->grant != OAUTH2_REFRESH_TOKEN && o->refresh_token_file != NULL) {
		conf_fail(line_of(osec, "refresh_token_file"),
		    "refresh_token_file: only used with grant = refresh_token in smarthost %s", q);
		return -1;
	}
	if (sh->password_command != NULL) {
		conf_fail(line_of(sec, "password_command"), "password_command: not used with an "
		    "oauth2 section, which obtains the token itself, in smarthost %s", q);
		return -1;
	}
	if (o->grant != OAUTH2_PASSWORD && (sh->password != NULL || sh->password_file != NULL)) {
		const char *key = sh->password ? "password" : "password_file";
		conf_fail(line_of(sec, key), "%s: only used with grant = password in the oauth2 "
		    "section of smarthost %s", key, q);
		return -1;
	}
	oauth2_defaults(o);
	return 0;
}

static int
build_smarthost(cfg_t *sec, struct smarthost_conf *sh)
{
	static const char *const secrets[] =
	    { "password", "password_file", "password_command" };
	char q[QUOTE_MAX * 4 + 8];
	const char *title = cfg_title(sec), *rate, *fp, *proxy, *secret = NULL;
	unsigned end = cfg_lineno(sec);	/* the line of the closing brace */
	cfg_t *osec = cfg_size(sec, "oauth2") > 0 ? cfg_getsec(sec, "oauth2") : NULL;
	const struct preset *pre;

	sh->name = xstrdup(title ? title : "");
	if (!is_name(sh->name)) {
		conf_fail(end, "smarthost: expected a name of letters, digits, '.', '_' and '-', got %s",
		    quoted(q, sizeof q, sh->name));
		return -1;
	}
	quoted(q, sizeof q, sh->name);
	sh->preset = cfg_getstr(sec, "preset") ? (enum smarthost_preset)get_enum(sec, "preset") : PRESET_NONE;
	pre = preset_of(sh->preset);
	if ((sh->host = get_str(sec, "host")) == NULL && pre != NULL)
		sh->host = xstrdup(pre->host);
	if (sh->host == NULL) {
		conf_fail(end, "smarthost %s: host is required", q);
		return -1;
	}
	/* tls has a schema default: only a tls written in the section beats the preset */
	if (pre != NULL && line_of(sec, "tls") == 0)
		sh->tls = pre->tls;
	else
		sh->tls = (enum tls_mode)get_enum(sec, "tls");
	if (cfg_getstr(sec, "port") != NULL)
		sh->port = get_uint(sec, "port", 65535);
	else if (pre != NULL && line_of(sec, "tls") == 0)
		sh->port = pre->port;
	else
		sh->port = sh->tls == TLS_IMPLICIT ? 465 : 587;
	sh->timeout = get_duration(sec, "timeout");
	sh->connect_timeout = get_duration(sec, "connect_timeout");
	sh->data_timeout = get_duration(sec, "data_timeout");
	sh->reuse_time = get_duration(sec, "reuse_time");
	sh->helo_name = get_str(sec, "helo_name");
	sh->helo_fallback = get_bool(sec, "helo_fallback");
	sh->tls_verify = get_bool(sec, "tls_verify");
	sh->tls_ca_file = get_str(sec, "tls_ca_file");
	sh->tls_ca_path = get_str(sec, "tls_ca_path");
	if ((fp = cfg_getstr(sec, "tls_fingerprint")) != NULL &&
	    (sh->tls_fingerprint = fingerprint_normalize(fp)) == NULL)
		invariant("tls_fingerprint", fp);
	sh->tls_client_cert = get_str(sec, "tls_client_cert");
	sh->tls_client_key = get_str(sec, "tls_client_key");
	sh->tls_min_version = 0x0301 + get_enum(sec, "tls_min_version");
	sh->tls_ciphers = get_str(sec, "tls_ciphers");
	sh->username = get_str(sec, "username");
	sh->password = get_str(sec, "password");
	sh->password_file = get_str(sec, "password_file");
	sh->password_command = get_str(sec, "password_command");
	sh->auth_allow_plaintext = get_bool(sec, "auth_allow_plaintext");
	if ((proxy = cfg_getstr(sec, "proxy")) != NULL &&
	    split_hostport(proxy + 9, &sh->proxy_host, &sh->proxy_port) != NULL)
		invariant("proxy", proxy);
	sh->nadd_header = cfg_size(sec, "add_header");
	if (sh->nadd_header > 0) {
		sh->add_header = xcalloc(sh->nadd_header, sizeof *sh->add_header);
		for (size_t i = 0; i < sh->nadd_header; i++)
			sh->add_header[i] = xstrdup(cfg_getnstr(sec, "add_header", (unsigned)i));
	}
	if ((rate = cfg_getstr(sec, "rate_limit")) != NULL &&
	    rate_limit_parse(rate, &sh->rate_limit_count, &sh->rate_limit_period) != 0)
		invariant("rate_limit", rate);
	copy_keylines(sec, osec, &sh->keylines, &sh->nkeylines);

	/* Rules between keys, reported at the line of the key that breaks them. */
	if (sh->tls_client_key != NULL && sh->tls_client_cert == NULL) {
		conf_fail(line_of(sec, "tls_client_key"),
		    "tls_client_key: set without tls_client_cert in smarthost %s", q);
		return -1;
	}
	for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++) {
		if (cfg_getstr(sec, secrets[i]) == NULL)
			continue;
		if (secret != NULL) {
			const char *later = line_of(sec, secrets[i]) > line_of(sec, secret) ?
			    secrets[i] : secret;

			conf_fail(line_of(sec, later),
			    "%s: only one of password, password_file and password_command may be set",
			    later);
			return -1;
		}
		secret = secrets[i];
	}
	if (cfg_getstr(sec, "auth") != NULL)
		sh->auth = (enum auth_mech)get_enum(sec, "auth");
	else if (pre != NULL)
		sh->auth = pre->auth;
	else
		sh->auth = sh->username != NULL ? AUTH_AUTO : AUTH_NONE;
	if (osec != NULL) {
		if (build_oauth2(osec, sec, sh, pre ? pre->provider : OAUTH2_GENERIC, q) != 0)
			return -1;
		if (sh->username == NULL) {
			conf_fail(end, "username: required with oauth2 (the mailbox the token is "
			    "for) in smarthost %s", q);
			return -1;
		}
		return 0;
	}
	if (pre != NULL && (sh->auth == AUTH_XOAUTH2 || sh->auth == AUTH_OAUTHBEARER) && secret == NULL) {
		conf_fail(end, "preset: %s needs an oauth2 section (client_id and a credential) "
		    "in smarthost %s", preset_names[sh->preset], q);
		return -1;
	}
	if (sh->auth != AUTH_NONE && sh->username == NULL) {
		conf_fail(line_of(sec, "auth"), "auth: needs a username in smarthost %s", q);
		return -1;
	}
	if (secret != NULL && sh->username == NULL) {
		conf_fail(line_of(sec, secret), "%s: set without a username in smarthost %s",
		    secret, q);
		return -1;
	}
	if (sh->auth != AUTH_NONE && secret == NULL) {
		conf_fail(line_of(sec, "username"),
		    "username: needs a password, password_file or password_command in smarthost %s", q);
		return -1;
	}
	return 0;
}

static int
build_route(cfg_t *sec, const struct config *conf, struct route_conf *r)
{
	const char *from = cfg_getstr(sec, "from");
	const char *name = cfg_getstr(sec, "smarthost");
	char q[QUOTE_MAX * 4 + 8];

	if (from == NULL) {
		conf_fail(cfg_lineno(sec), "route: from is required");
		return -1;
	}
	if (name == NULL) {
		conf_fail(cfg_lineno(sec), "route: smarthost is required");
		return -1;
	}
	/* '*' cannot be written unquoted in libconfuse, so *@a.example arrives as @a.example */
	r->from = from[0] == '@' ? xasprintf("*%s", from) : xstrdup(from);
	r->smarthost = xstrdup(name);
	const struct smarthost_conf *sh = conf_smarthost(conf, name);
	if (sh != NULL) {
		r->smarthost_index = (size_t)(sh - conf->smarthosts);
		return 0;
	}
	conf_fail(line_of(sec, "smarthost"), "smarthost: no smarthost named %s is defined",
	    quoted(q, sizeof q, name));
	return -1;
}

/*
 * With rewrite_from = always and no from_address, a smarthost whose
 * username contains an '@' sends mail as that username (delivery.c,
 * send_identity()): it then goes into MAIL FROM and the From: header and
 * must be an address that fits them like from_address.
 */
static int
check_identities(const struct config *conf)
{
	char q[QUOTE_MAX * 4 + 8];
	const char *why;

	if (conf->rewrite_from != REWRITE_FROM_ALWAYS || conf->from_address != NULL)
		return 0;
	for (size_t i = 0; i < conf->nsmarthosts; i++) {
		const struct smarthost_conf *sh = &conf->smarthosts[i];

		if (sh->username == NULL || strchr(sh->username, '@') == NULL ||
		    (why = check_address(NULL, sh->username)) == NULL)
			continue;
		conf_fail(conf_key_line(conf, sh, "username"),
		    "username: with rewrite_from = always and no from_address, mail is sent as "
		    "this user name, so it must be an address: %s, got %s", why,
		    quoted(q, sizeof q, sh->username));
		return -1;
	}
	return 0;
}

static struct config *
build(cfg_t *root, const char *path)
{
	struct config *conf = xcalloc(1, sizeof *conf);
	const char *s;
	size_t n;

	conf->path = path ? xstrdup(path) : NULL;
	conf->hostname = get_str(root, "hostname");
	if (conf->hostname == NULL)
		conf->hostname = default_hostname();
	conf->spool_dir = get_str(root, "spool_dir");
	conf->user = get_str(root, "user");
	conf->control_socket = get_str(root, "control_socket");
	s = cfg_getstr(root, "metrics_listen");
	if (s != NULL && listen_parse(s, &conf->metrics_listen) != NULL)
		invariant("metrics_listen", s);

	n = cfg_size(root, "listen");
	if (n == 0) {
		conf_fail(line_of(root, "listen"), "listen: expected at least one socket");
		goto fail;
	}
	conf->listen = xcalloc(n, sizeof *conf->listen);
	for (size_t i = 0; i < n; i++) {
		s = cfg_getnstr(root, "listen", (unsigned)i);
		if (s == NULL || listen_parse(s, &conf->listen[i]) != NULL)
			invariant("listen", s);
		conf->nlisten++;
	}
	n = cfg_size(root, "allow");
	conf->allow = n ? xcalloc(n, sizeof *conf->allow) : NULL;
	for (size_t i = 0; i < n; i++) {
		s = cfg_getnstr(root, "allow", (unsigned)i);
		if (s == NULL || conf_parse_cidr(s, &conf->allow[i]) != 0)
			invariant("allow", s);
		conf->nallow++;
	}
	s = cfg_getstr(root, "max_message_size");
	if (s == NULL || conf_parse_size(s, &conf->max_message_size) != 0)
		invariant("max_message_size", s);
	n = cfg_size(root, "retry_schedule");
	if (n == 0) {
		conf_fail(line_of(root, "retry_schedule"),
		    "retry_schedule: expected at least one duration");
		goto fail;
	}
	conf->retry_schedule = xcalloc(n, sizeof *conf->retry_schedule);
	for (size_t i = 0; i < n; i++)
		conf->retry_schedule[conf->nretry++] =
		    get_duration_at(root, "retry_schedule", (unsigned)i);
	conf->max_queue_time = get_duration(root, "max_queue_time");
	conf->concurrency = get_uint(root, "concurrency", 256);
	conf->log_level = (enum log_level_conf)get_enum(root, "log_level");
	conf->log_file = get_str(root, "log_file");
	conf->admin_address = get_str(root, "admin_address");
	conf->aliases_file = get_str(root, "aliases_file");
	conf->from_address = get_str(root, "from_address");
	conf->rewrite_from = (enum rewrite_from_mode)get_enum(root, "rewrite_from");
	conf->strict_addresses = get_bool(root, "strict_addresses");
	conf->double_bounce = (enum double_bounce_mode)get_enum(root, "double_bounce");
	conf->delay_warning = get_duration(root, "delay_warning");
	conf->max_connections = get_uint(root, "max_connections", CONF_CONNECTIONS_MAX);
	conf->max_connections_per_client = get_uint(root, "max_connections_per_client",
	    CONF_CONNECTIONS_MAX);
	if (conf->max_connections_per_client > conf->max_connections) {
		conf_fail(line_of(root, "max_connections_per_client"),
		    "max_connections_per_client: expected at most max_connections (%u), got %u",
		    conf->max_connections, conf->max_connections_per_client);
		goto fail;
	}
	conf->idle_timeout = get_duration(root, "idle_timeout");
	conf->session_timeout = get_duration(root, "session_timeout");
	copy_keylines(root, NULL, &conf->keylines, &conf->nkeylines);

	n = cfg_size(root, "smarthost");
	conf->smarthosts = n ? xcalloc(n, sizeof *conf->smarthosts) : NULL;
	for (size_t i = 0; i < n; i++) {
		conf->nsmarthosts++;
		if (build_smarthost(cfg_getnsec(root, "smarthost", (unsigned)i),
		    &conf->smarthosts[i]) != 0)
			goto fail;
	}
	n = cfg_size(root, "route");
	conf->routes = n ? xcalloc(n, sizeof *conf->routes) : NULL;
	for (size_t i = 0; i < n; i++) {
		conf->nroutes++;
		if (build_route(cfg_getnsec(root, "route", (unsigned)i), conf,
		    &conf->routes[i]) != 0)
			goto fail;
	}
	if (check_identities(conf) != 0)
		goto fail;
	return conf;

fail:
	conf_free(conf);
	return NULL;
}

/* ---- loading ------------------------------------------------------------- */

/*
 * Read the whole file: bounded, and refusing what libconfuse's scanner
 * cannot take (it exits the process on a read error, and stops a value
 * silently at a NUL byte).  0 on success, 1 when the file does not exist
 * and may be missing, -1 with the message set otherwise.
 */
static int
read_file(const char *path, int may_be_missing, char **text, size_t *len)
{
	struct stat st;
	char *buf = NULL;
	size_t n = 0, cap = 0;
	int fd;

	*text = NULL;
	*len = 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1) {
		if (errno == ENOENT && may_be_missing)
			return 1;
		conf_fail(0, "cannot open: %s", strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		close(fd);
		conf_fail(0, "cannot read: %s", strerror(EISDIR));
		return -1;
	}
	for (;;) {
		ssize_t r;

		if (n == cap) {
			cap = cap ? cap * 2 : 8192;
			buf = xreallocarray(buf, cap + 1, 1);
		}
		r = read(fd, buf + n, cap - n);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			conf_fail(0, "cannot read: %s", strerror(errno));
			goto fail;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n > CONF_MAX_FILE_SIZE) {
			conf_fail(0, "cannot read: larger than %d bytes, not a config file",
			    CONF_MAX_FILE_SIZE);
			goto fail;
		}
	}
	close(fd);
	buf[n] = '\0';
	if (memchr(buf, '\0', n) != NULL) {
		unsigned line = 1;

		for (const char *p = buf; *p; p++)
			if (*p == '\n')
				line++;
		conf_fail(line, "a NUL byte: this is not a text file");
		free(buf);
		return -1;
	}
	*text = buf;
	*len = n;
	return 0;

fail:
	close(fd);
	free(buf);
	return -1;
}

/* Characters that end an unquoted token, as the libconfuse scanner reads them. */
#define TOKEN_END " \t\r\n={}()+,*"

/*
 * An unquoted '#' or ';' at p, right after a token (no blank between):
 * NULL when it is harmless, else why it is not.  "password = abc#def"
 * would silently become "abc" (the rest is a comment), "abc;def" a value
 * and a stray key.  A ';' followed on its line by a '=' or '{' separates
 * two settings ("port = 587;tls = required"), and one followed only by
 * blanks, a comment or a '}' ends a value; anything else is a value that
 * goes on.  The message
 * names the key and, for any key but password, the quoted form to write.
 * The text before p is still as the file has it (only comments and
 * separators behind p have been blanked, never a token).
 */
static const char *
cut_value(const char *text, const char *end, const char *p)
{
	static char msg[600];	/* conf_load() runs one at a time */
	const char *tok = p, *stop = p + 1, *bol = p, *k, *kend;
	char key[40], value[QUOTE_MAX * 4 + 8];

	if (*p == ';') {
		const char *q = p + 1;

		/* the end of a value: nothing after it but blanks, a comment or a '}' */
		while (q < end && (*q == ' ' || *q == '\t' || *q == '\r'))
			q++;
		if (q == end || strchr("\n#}/", *q) != NULL)
			return NULL;
		/* a separator: another setting follows on the line */
		for (; q < end && *q != '\n'; q++)
			if (*q == '=' || *q == '{')
				return NULL;
	}
	while (tok > text && strchr(TOKEN_END, tok[-1]) == NULL && tok[-1] != '"' && tok[-1] != '\'')
		tok--;
	/* the value meant: up to a blank after a '#', the rest of the line after a ';' */
	while (stop < end && *stop != '\n' && (*p == ';' || (*stop != ' ' && *stop != '\t')))
		stop++;
	while (stop > p + 1 && (stop[-1] == ' ' || stop[-1] == '\t' || stop[-1] == '\r'))
		stop--;
	while (bol > text && bol[-1] != '\n')
		bol--;
	for (k = bol; k < tok && (*k == ' ' || *k == '\t'); k++)
		;
	for (kend = k; kend < tok && strchr(TOKEN_END, *kend) == NULL; kend++)
		;
	if (kend > k && (size_t)(kend - k) < sizeof key)
		snprintf(key, sizeof key, "%.*s", (int)(kend - k), k);
	else
		snprintf(key, sizeof key, "value");
	if (strcmp(key, "password") == 0) {
		/* a secret is never shown, not even the part that is wrong */
		snprintf(msg, sizeof msg, "%s: an unquoted '%c' %s; put the whole value in double "
		    "quotes: password = \"...\"", key, *p,
		    *p == '#' ? "starts a comment, so the value would end before it" :
		    "ends the value, so it would be cut there");
		return msg;
	}
	char *raw = xstrndup(tok, (size_t)(stop - tok));
	quoted(value, sizeof value, raw);
	free(raw);
	snprintf(msg, sizeof msg, "%s: an unquoted '%c' %s \"%.*s\"; write %s = %s", key, *p,
	    *p == '#' ? "starts a comment, so the value would be cut to" :
	    "ends the value, so it would be cut to", (int)(p - tok), tok, key, value);
	return msg;
}

/*
 * Prepare the text for libconfuse 3.3, in place and keeping every newline
 * so that line numbers stay right:
 *
 * - Comments become spaces.  The 3.3 scanner counts two extra lines for
 *   every '#' comment and one for every block comment, so that errors
 *   would name the wrong line in any commented file, and it hands comments
 *   to the parser as tokens, so that a comment inside a list is a syntax
 *   error.  Without comments in its input, both go away.
 * - ';' outside quotes becomes a space.  SPEC.md writes one-line sections
 *   as route { from = "*@a.example"; smarthost = NAME }, but libconfuse has
 *   no ';': it would stick to an unquoted value ("587;") or be read as a
 *   key.  A ';' inside a value must therefore be quoted.
 *
 * - A '{' never closed is refused: libconfuse accepts a section left
 *   open at the end of the file.
 *
 * Quotes and comments are recognised as the libconfuse scanner does: '#'
 * starts a comment anywhere outside quotes, "//" and slash-star only where
 * a token could start.  Returns NULL, or what is wrong with *line set to
 * where it starts.
 */
static const char *
prepare_text(char *p, size_t len, unsigned *line)
{
	enum { MAXDEPTH = 8 };
	unsigned open_line[MAXDEPTH];
	size_t depth = 0;
	char *text = p, *end = p + len;
	int in_token = 0;
	const char *why;

	*line = 1;
	while (p < end) {
		if (in_token && (*p == '#' || *p == ';') && (why = cut_value(text, end, p)) != NULL)
			return why;
		if (*p == '#' || (!in_token && *p == '/' && p + 1 < end && p[1] == '/')) {
			for (; p < end && *p != '\n'; p++)
				*p = ' ';
			in_token = 0;
			continue;
		}
		if (!in_token && *p == '/' && p + 1 < end && p[1] == '*') {
			unsigned start = *line;

			for (;;) {
				if (p >= end) {
					*line = start;
					return "unterminated comment";
				}
				if (*p == '*' && p + 1 < end && p[1] == '/') {
					p[0] = p[1] = ' ';
					p += 2;
					break;
				}
				if (*p == '\n')
					(*line)++;
				else
					*p = ' ';
				p++;
			}
			in_token = 0;
			continue;
		}
		if (*p == '"' || *p == '\'') {
			unsigned start = *line;
			char q = *p++;

			for (; p < end && *p != q; p++) {
				if (*p == '\\' && p + 1 < end)
					p++;
				if (*p == '\n')
					(*line)++;
			}
			if (p >= end) {
				*line = start;
				return "unterminated quoted string";
			}
			p++;
			in_token = 0;
			continue;
		}
		if (*p == ';')
			*p = ' ';
		else if (*p == '\n')
			(*line)++;
		else if (*p == '{') {
			if (depth < MAXDEPTH)
				open_line[depth] = *line;
			depth++;
		} else if (*p == '}' && depth > 0)
			depth--;	/* an extra '}' is libconfuse's to report */
		in_token = strchr(TOKEN_END, *p) == NULL;
		p++;
	}
	if (depth > 0) {
		*line = open_line[depth <= MAXDEPTH ? depth - 1 : MAXDEPTH - 1];
		return "'{' is never closed";
	}
	return NULL;
}

const char *
conf_default_path(void)
{
	const char *env = getenv("MAILRELAY_CONFIG");

	return env != NULL && *env != '\0' ? env : CONF_DEFAULT_PATH;
}

static void
ctx_begin(struct loadctx *ctx, const char *path, char *errbuf, size_t errlen)
{
	if (errbuf != NULL && errlen > 0)
		errbuf[0] = '\0';
	memset(ctx, 0, sizeof *ctx);
	ctx->file = path;
	ctx->err = errlen > 0 ? errbuf : NULL;
	ctx->errlen = errlen;
	lctx = ctx;
}

static void
ctx_end(struct loadctx *ctx)
{
	free(ctx->seen);
	lctx = NULL;
}

/* Parse text (r: read_file()'s answer, 1 for the defaults) as the file path says, in lctx. */
static struct config *
parse(const char *path, int r, const char *text, size_t len)
{
	struct config *conf = NULL;
	cfg_t *cfg;
	char *copy = NULL;

	if ((cfg = cfg_init(top_opts, CFGF_NONE)) == NULL)
		log_fatalx("conf: out of memory");
	cfg_set_error_function(cfg, conf_errfunc);
	if (r == 0 && len > 0) {
		FILE *fp;
		const char *why;
		unsigned line;

		/* prepare_text() works in place: the text is kept as read, for the delivery process */
		copy = xmalloc(len + 1);
		memcpy(copy, text, len);
		copy[len] = '\0';
		if ((why = prepare_text(copy, len, &line)) != NULL) {
			conf_fail(line, "%s", why);
			goto parsed;
		}
		free(cfg->filename);
		cfg->filename = xstrdup(path);
		if ((fp = fmemopen(copy, len, "r")) == NULL)
			log_fatal("conf: fmemopen");
		if (cfg_parse_fp(cfg, fp) != CFG_SUCCESS && !lctx->failed)
			conf_fail(cfg_lineno(cfg), "syntax error");
		fclose(fp);
	}
parsed:
	free(copy);
	if (!lctx->failed)
		conf = build(cfg, r == 1 ? NULL : path);
	cfg_free(cfg);
	if (conf != NULL && r == 0) {
		conf->text = xmalloc(len + 1);
		memcpy(conf->text, text, len);
		conf->text[len] = '\0';
		conf->text_len = len;
	}
	return conf;
}

struct config *
conf_load(const char *path, char *errbuf, size_t errlen)
{
	struct loadctx ctx;
	struct config *conf = NULL;
	char *text = NULL;
	size_t len = 0;
	int may_be_missing = 0, r;

	if (path == NULL) {
		path = conf_default_path();
		may_be_missing = strcmp(path, CONF_DEFAULT_PATH) == 0;
	}
	ctx_begin(&ctx, path, errbuf, errlen);
	if ((r = read_file(path, may_be_missing, &text, &len)) != -1)
		conf = parse(path, r, text, len);
	free(text);
	ctx_end(&ctx);
	return conf;
}

struct config *
conf_load_text(const char *path, const char *text, size_t len, char *errbuf, size_t errlen)
{
	struct loadctx ctx;
	struct config *conf;

	ctx_begin(&ctx, path != NULL ? path : CONF_DEFAULT_PATH, errbuf, errlen);
	conf = parse(path != NULL ? path : CONF_DEFAULT_PATH, path != NULL ? 0 : 1, text, len);
	ctx_end(&ctx);
	return conf;
}

static void
free_smarthost(struct smarthost_conf *sh)
{
	free(sh->name);
	free(sh->host);
	free(sh->helo_name);
	free(sh->tls_ca_file);
	free(sh->tls_ca_path);
	free(sh->tls_fingerprint);
	free(sh->tls_client_cert);
	free(sh->tls_client_key);
	free(sh->tls_ciphers);
	free(sh->username);
	free(sh->password);
	free(sh->password_file);
	free(sh->password_command);
	free(sh->proxy_host);
	free(sh->proxy_port);
	if (sh->oauth2 != NULL) {
		struct oauth2_conf *o = sh->oauth2;
		free(o->tenant);
		free(o->client_id);
		free(o->client_secret_file);
		free(o->client_certificate);
		free(o->client_key);
		free(o->refresh_token_file);
		free(o->scope);
		free(o->token_url);
		free(o->device_url);
		free(o->authorize_url);
		free(o);
	}
	for (size_t i = 0; i < sh->nadd_header; i++)
		free(sh->add_header[i]);
	free(sh->add_header);
	for (size_t i = 0; i < sh->nkeylines; i++)
		free(sh->keylines[i].key);
	free(sh->keylines);
}

void
conf_free(struct config *conf)
{
	if (conf == NULL)
		return;
	free(conf->path);
	free(conf->text);
	free(conf->hostname);
	free(conf->spool_dir);
	free(conf->user);
	for (size_t i = 0; i < conf->nlisten; i++) {
		free(conf->listen[i].path);
		free(conf->listen[i].host);
		free(conf->listen[i].port);
	}
	free(conf->listen);
	free(conf->allow);
	free(conf->control_socket);
	free(conf->metrics_listen.path);
	free(conf->metrics_listen.host);
	free(conf->metrics_listen.port);
	free(conf->retry_schedule);
	free(conf->admin_address);
	free(conf->aliases_file);
	free(conf->log_file);
	free(conf->from_address);
	for (size_t i = 0; i < conf->nsmarthosts; i++)
		free_smarthost(&conf->smarthosts[i]);
	free(conf->smarthosts);
	for (size_t i = 0; i < conf->nroutes; i++) {
		free(conf->routes[i].from);
		free(conf->routes[i].smarthost);
	}
	free(conf->routes);
	for (size_t i = 0; i < conf->nkeylines; i++)
		free(conf->keylines[i].key);
	free(conf->keylines);
	free(conf);
}

const char *
conf_tls_mode_name(enum tls_mode m)
{
	if ((unsigned)m >= sizeof tls_names / sizeof tls_names[0] - 1)
		return "unknown";
	return tls_names[m];
}

const char *
conf_auth_name(enum auth_mech m)
{
	if ((unsigned)m >= sizeof auth_names / sizeof auth_names[0] - 1)
		return "unknown";
	return auth_names[m];
}

const char *
conf_preset_name(enum smarthost_preset p)
{
	if ((unsigned)p >= sizeof preset_names / sizeof preset_names[0] - 1)
		return "unknown";
	return preset_names[p];
}

const char *
conf_oauth2_provider_name(enum oauth2_provider p)
{
	if ((unsigned)p >= sizeof provider_names / sizeof provider_names[0] - 1)
		return "unknown";
	return provider_names[p];
}

const char *
conf_oauth2_grant_name(enum oauth2_grant g)
{
	if ((unsigned)g >= sizeof grant_names / sizeof grant_names[0] - 1)
		return "unknown";
	return grant_names[g];
}

unsigned
conf_key_line(const struct config *conf, const struct smarthost_conf *sh, const char *key)
{
	const struct conf_keyline *kl;
	size_t n;

	if (conf == NULL || key == NULL)
		return 0;
	kl = sh ? sh->keylines : conf->keylines;
	n = sh ? sh->nkeylines : conf->nkeylines;
	for (size_t i = 0; i < n; i++)
		if (strcmp(kl[i].key, key) == 0)
			return kl[i].line;
	return 0;
}

const struct route_conf *
conf_route_find(const struct config *conf, const char *sender)
{
	for (size_t i = 0; i < conf->nroutes; i++)
		if (fnmatch(conf->routes[i].from, sender, FNM_CASEFOLD) == 0)
			return &conf->routes[i];
	return NULL;
}

const struct smarthost_conf *
conf_smarthost(const struct config *conf, const char *name)
{
	for (size_t i = 0; i < conf->nsmarthosts; i++)
		if (strcmp(conf->smarthosts[i].name, name) == 0)
			return &conf->smarthosts[i];
	return NULL;
}

/*
 * mailrelay-sendmail: the sendmail-compatible submission client, also
 * installed as `sendmail`, `mailq` and `newaliases` (argv[0] decides).
 *
 * Small and paranoid, as a program every user can run should be: umask
 * set, fds 0-2 guaranteed open, the whole message read (bounded by
 * max_message_size) before the daemon is contacted, arguments with CR or
 * LF refused (no header injection), and exit 0 only after the daemon
 * answered 250 to the final dot, which it does only once the message is
 * on disk.  Links libc and libconfuse only: it runs once per message.
 *
 * The setgid group (Postfix's postdrop rule) is lent for one act only:
 * writing a drop into the maildrop of the system configuration
 * (CONF_DEFAULT_PATH).  A configuration a user other than root names
 * (-C, -c, $MAILRELAY_CONFIG) is read with the user's own rights, the
 * group given up for good first; with it the daemon's socket may be used,
 * the maildrop only as far as the user's own rights reach.  A system
 * configuration the user cannot read is reported by file and line only.
 *
 * Nothing is lost when the daemon is down or dies under us: if the
 * conversation breaks anywhere before the 250 to the final dot (no
 * connection, a lost one, a reply not in time, a 421), the message goes
 * into the maildrop and the exit is 0.  Replies before DATA get a short
 * deadline (SUBMIT_REPLY_TIMEOUT), the reply to the dot a long one.
 *
 * The dialogue is pipelined (RFC 2920, offered by the daemon): three
 * round trips per message, the greeting, the envelope's group and the
 * message with its dot (submit_message()).
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/types.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "conf/conf.h"
#include "ctlclient.h"
#include "dotstuff.h"
#include "header.h"
#include "log.h"
#include "spool/maildrop.h"
#include "smtp_reply.h"
#include "submit.h"
#include "util.h"
#include "xmalloc.h"

#include "qprint.h"
#include "smodes.h"

static const char *progname = "sendmail";

/*
 * Deadlines for the daemon, in seconds.  Before DATA the daemon only
 * parses a line: a daemon that takes longer is stopped, hung or
 * overloaded, and the maildrop is the better place for the message.  The
 * reply to the final dot waits for the daemon's fsync and gets long.
 */
#define SUBMIT_REPLY_TIMEOUT	10
#define SUBMIT_FINAL_TIMEOUT	300

/* The effective group at start: the group the binary is installed setgid to. */
static gid_t setgid_gid;

struct opts {
	int extract;            /* -t */
	int ignore_dots;        /* -i, -oi */
	int verbose;            /* -v */
	const char *sender;     /* -f, -r */
	const char *fullname;   /* -F */
	const char *conf_path;  /* -C */
	const char *body;       /* -B */
	const char *notify;     /* -N, upper-cased into notifybuf */
	const char *ret;        /* -R: FULL or HDRS */
	const char *envid;      /* -V */
	char notifybuf[32];
	char **rcpts;
	size_t nrcpt;
};

struct msgbuf {
	char *data;
	size_t len, cap;
};

static void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

static void
die(int code, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(code);
}

/* Give up the setgid group for good: real, effective and saved ids. */
static void
group_drop_for_good(void)
{
	gid_t g = getgid();

	if (setresgid(g, g, g) == -1 || getegid() != g)
		die(EX_OSERR, "cannot give up the setgid group: %s", strerror(errno));
}

/*
 * Act with group g for now (the caller's own, or setgid_gid back): the
 * saved set-group-ID keeps the way back until group_drop_for_good().
 */
static void
group_act_as(gid_t g)
{
	if (getegid() != g && setegid(g) == -1)
		die(EX_OSERR, "cannot switch the effective group: %s", strerror(errno));
}

static void
ensure_std_fds(void)
{
	int fd;

	/* A program started with a closed 0, 1 or 2 must not have our files land there. */
	while ((fd = open("/dev/null", O_RDWR)) >= 0 && fd <= 2)
		;
	if (fd > 2)
		close(fd);
}

static void
check_arg(const char *what, const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			die(EX_USAGE, "%s contains a control character; refused", what);
}

static int strict_addresses;   /* the config's strict_addresses */

static void
add_rcpt(struct opts *o, const char *a)
{
	const char *why;

	check_arg("recipient", a);
	if (strlen(a) > ADDR_MAX)
		die(EX_DATAERR, "recipient address too long: %.40s...", a);
	if (strict_addresses && addr_spec_check(a, ADDR_LOCAL_OK, &why) == -1)
		die(EX_DATAERR, "bad recipient address \"%s\": %s (strict_addresses = yes)", a, why);
	o->rcpts = xreallocarray(o->rcpts, o->nrcpt + 1, sizeof *o->rcpts);
	o->rcpts[o->nrcpt++] = xstrdup(a);
}

static void
collect_rcpt(const char *a, void *arg)
{
	add_rcpt(arg, a);
}

static const char *
strip_angles(const char *a, char *buf, size_t len)
{
	size_t n = strlen(a);

	if (n >= 2 && a[0] == '<' && a[n - 1] == '>') {
		if (n - 2 >= len)
			die(EX_DATAERR, "sender address too long");
		memcpy(buf, a + 1, n - 2);
		buf[n - 2] = '\0';
		return buf;
	}
	return a;
}

/* -N never | success,delay,failure (any non-empty subset, any case) */
static void
parse_notify(struct opts *o, const char *val)
{
	char buf[64], *tok, *save = NULL;
	int never = 0, other = 0;

	if (strlen(val) >= sizeof buf)
		die(EX_USAGE, "-N: expected never or a list of success, delay, failure, got \"%.40s\"", val);
	snprintf(buf, sizeof buf, "%s", val);
	o->notifybuf[0] = '\0';
	for (tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		const char *up;
		if (strcasecmp(tok, "never") == 0) {
			never = 1;
			up = "NEVER";
		} else if (strcasecmp(tok, "success") == 0)
			up = "SUCCESS";
		else if (strcasecmp(tok, "delay") == 0)
			up = "DELAY";
		else if (strcasecmp(tok, "failure") == 0)
			up = "FAILURE";
		else
			die(EX_USAGE, "-N: expected never or a list of success, delay, failure, got \"%s\"", val);
		if (strcmp(up, "NEVER") != 0)
			other = 1;
		if (strstr(o->notifybuf, up) != NULL)
			continue;
		if (o->notifybuf[0])
			strlcat_mr(o->notifybuf, ",", sizeof o->notifybuf);
		strlcat_mr(o->notifybuf, up, sizeof o->notifybuf);
	}
	if (o->notifybuf[0] == '\0' || (never && other))
		die(EX_USAGE, "-N: never cannot be combined with other values (got \"%s\")", val);
	o->notify = o->notifybuf;
}

/*
 * --help: not a sendmail(1) flag (sendmail has no long options), so the
 * name is free and nothing sendmail-compatible changes.  On stdout, exit 0.
 */
static void
help(void)
{
	if (strcmp(progname, "mailq") == 0)
		printf("usage: mailq [-C FILE]\nList the queue, as sendmail -bp does.\n"
		    "The options when called as sendmail:\n");
	else if (strcmp(progname, "newaliases") == 0)
		printf("usage: newaliases [-C FILE]\nCheck the aliases file, as sendmail -bi does "
		    "(mailrelay reads it as it is: there is no database to build).\n"
		    "The options when called as sendmail:\n");
	else
		printf("usage: %s [OPTIONS] [--] [RECIPIENT...] < MESSAGE\n"
		    "       mailq             (the same as sendmail -bp)\n"
		    "Submit one message read on stdin to mailrelayd, sendmail-compatibly.\n", progname);
	printf(
	    "  -t            recipients from To:, Cc: and Bcc: (Bcc: removed)\n"
	    "  -i, -oi       a line holding only \".\" does not end the message\n"
	    "  -f, -r ADDR   envelope sender\n"
	    "  -F NAME       full name for a generated From:\n"
	    "  -B 7BIT|8BITMIME    body type\n"
	    "  -N never|success,delay,failure   DSN notify\n"
	    "  -R full|hdrs  DSN return\n"
	    "  -V ENVID      DSN envelope id\n"
	    "  -bm           deliver (the default)\n"
	    "  -bp           list the queue (mailq)\n"
	    "  -bs           SMTP on stdin and stdout\n"
	    "  -bv           verify recipients only\n"
	    "  -bi           check the aliases file (newaliases)\n"
	    "  -q            flush the queue\n"
	    "  -v            show the dialogue\n"
	    "  -C, -c FILE   the configuration\n"
	    "  -L TAG, -h N, -O OPT=VAL, -oX, -G, -U   accepted, ignored\n"
	    "Exit 0 once the message is stored on disk; 64 usage, 75 try again later.\n"
	    "See mailrelay-sendmail(8).\n");
	exit(0);
}

#define KNOWN_OPTIONS "-t -i -f -r -F -B -N -R -V -bm -bp -bs -bv -bi -q -v -C -c -L -h -O -o -G -U"

/*
 * sendmail(1) options.  Short options may carry their value attached
 * ("-fuser", "-FCronDaemon") or as the next argument.
 */
static int
parse_args(struct opts *o, int argc, char **argv, int *mode)
{
	int i;

	for (i = 1; i < argc; i++) {
		char *a = argv[i];
		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		if (a[0] != '-' || a[1] == '\0')
			break;
		if (strcmp(a, "--help") == 0)
			help();
		char opt = a[1];
		const char *val = NULL;
		/* options that take a value */
		if (strchr("fFrCcBNRVLhOX", opt) != NULL) {
			if (a[2] != '\0')
				val = a + 2;
			else if (i + 1 < argc)
				val = argv[++i];
			else
				die(EX_USAGE, "option -%c requires a value", opt);
		}
		switch (opt) {
		case 'f':
		case 'r':
			o->sender = val;
			break;
		case 'F':
			o->fullname = val;
			break;
		case 'C':
		case 'c':	/* SPEC: every program takes -c FILE; sendmail also -C */
			o->conf_path = val;
			break;
		case 'B':
			if (strcasecmp(val, "7BIT") != 0 && strcasecmp(val, "8BITMIME") != 0)
				die(EX_USAGE, "-B: expected 7BIT or 8BITMIME, got \"%s\"", val);
			o->body = val;
			break;
		case 'N':
			/* DSN NOTIFY: never, or a list of success, delay, failure */
			parse_notify(o, val);
			break;
		case 'R':
			if (strcasecmp(val, "full") == 0)
				o->ret = "FULL";
			else if (strcasecmp(val, "hdrs") == 0)
				o->ret = "HDRS";
			else
				die(EX_USAGE, "-R: expected full or hdrs, got \"%s\"", val);
			break;
		case 'V':
			check_arg("envelope id (-V)", val);
			if (strlen(val) > 100)
				die(EX_USAGE, "-V: envelope id longer than 100 characters");
			o->envid = val;
			break;
		case 'L': case 'h': case 'O': case 'X':
			/* logging and sendmail-internal options: accepted, meaningless here */
			break;
		case 't':
			if (a[2] != '\0')
				die(EX_USAGE, "unknown option %s: expected -t alone (%s --help)", a, progname);
			o->extract = 1;
			break;
		case 'i':
			if (a[2] != '\0')
				die(EX_USAGE, "unknown option %s: expected -i alone (%s --help)", a, progname);
			o->ignore_dots = 1;
			break;
		case 'v':
			o->verbose = 1;
			break;
		case 'o':
			/* -oi is -i; every other -oX is accepted and ignored (-oem, -odb, -oQ...) */
			if (a[2] == 'i' && a[3] == '\0')
				o->ignore_dots = 1;
			else if (a[2] == '\0')
				die(EX_USAGE, "option -o requires a value");
			break;
		case 'G':
		case 'U':
			break;
		case 'q':
			/* -q, or -q with an interval (-q15m): flush once; selectors are not supported */
			if (a[2] != '\0' && strspn(a + 2, "0123456789smhdw") != strlen(a + 2))
				die(EX_USAGE, "%s is not supported: use -q, or mailrelay flush ID", a);
			*mode = 'q';
			break;
		case 'b':
			if (strcmp(a, "-bm") == 0)
				*mode = 'm';
			else if (strcmp(a, "-bp") == 0)
				*mode = 'p';
			else if (strcmp(a, "-bs") == 0)
				*mode = 's';
			else if (strcmp(a, "-bv") == 0)
				*mode = 'v';
			else if (strcmp(a, "-bi") == 0)
				*mode = 'i';
			else
				die(EX_USAGE, "mode %s is not supported: expected -bm, -bp, -bs, -bv or -bi "
				    "(%s --help)", a, progname);
			break;
		default:
			die(EX_USAGE, "unknown option %s: expected one of " KNOWN_OPTIONS
			    " (%s --help)", a, progname);
		}
	}
	return i;
}

/*
 * Read the message from stdin.  Without -i a line holding a single "."
 * ends it (the rest of stdin is not read), as sendmail does.  Input larger
 * than max_message_size is refused before anything is sent.
 */
static void
read_message(struct msgbuf *m, int ignore_dots, unsigned long long max)
{
	char buf[65536];
	ssize_t n;

	for (;;) {
		n = read(0, buf, sizeof buf);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die(EX_IOERR, "reading the message from standard input: %s", strerror(errno));
		}
		if (n == 0)
			break;
		if (m->len + (size_t)n + 1 > m->cap) {
			m->cap = (m->len + (size_t)n + 1) * 2;
			m->data = xreallocarray(m->data, m->cap, 1);
		}
		memcpy(m->data + m->len, buf, (size_t)n);
		/* rescan the last two old bytes: a "." or ".\r" may have ended the previous read */
		size_t i = m->len >= 2 ? m->len - 2 : 0;
		m->len += (size_t)n;
		for (; !ignore_dots && i < m->len; i++) {
			if (m->data[i] != '.' || (i > 0 && m->data[i - 1] != '\n'))
				continue;
			if ((i + 1 < m->len && m->data[i + 1] == '\n') ||
			    (i + 2 < m->len && m->data[i + 1] == '\r' && m->data[i + 2] == '\n')) {
				m->len = i;
				return;
			}
		}
		if (max > 0 && m->len > max)
			die(EX_CANTCREAT, "message is larger than the limit of %llu bytes (max_message_size); not sent", max);
	}
	/* "." (or ".\r") as the very last line, without a newline */
	if (!ignore_dots) {
		size_t l = m->len;
		if (l >= 1 && m->data[l - 1] == '\r')
			l--;
		if (l >= 1 && m->data[l - 1] == '.' && (l == 1 || m->data[l - 2] == '\n'))
			m->len = l - 1;
	}
}

/*
 * RFC 5321 2.3.8 forbids NUL in SMTP text: refuse the message here, with
 * the line, before anything is sent or dropped (it would be refused or
 * mangled further on, after the exit 0).
 */
static void
refuse_nul(const struct msgbuf *m)
{
	const char *nul = m->len > 0 ? memchr(m->data, '\0', m->len) : NULL;
	unsigned long line = 1;

	if (nul == NULL)
		return;
	for (const char *p = m->data; p < nul; p++)
		if (*p == '\n')
			line++;
	die(EX_DATAERR, "the message contains a NUL byte (line %lu), which SMTP does not allow "
	    "(RFC 5321); not sent", line);
}

/* Length of the header section (up to and including the empty line, or all of it). */
static size_t
header_len(const char *d, size_t len)
{
	size_t i;

	if (len > 0 && (d[0] == '\n' || (len > 1 && d[0] == '\r' && d[1] == '\n')))
		return 0;
	for (i = 0; i + 1 < len; i++) {
		if (d[i] == '\n' && (d[i + 1] == '\n' ||
		    (i + 2 < len && d[i + 1] == '\r' && d[i + 2] == '\n')))
			return i + 1;
	}
	return len;
}

struct hdrinfo {
	int has_from, has_date, has_msgid;
	int eightbit;
	int utf8hdr;
};

/*
 * Walk the header section: note which headers exist, take recipients for
 * -t from To/Cc/Bcc, and drop Bcc (with its continuation lines) in place.
 */
static void
scan_headers(struct msgbuf *m, struct opts *o, struct hdrinfo *hi)
{
	size_t hlen = header_len(m->data, m->len), i = 0, kept;
	struct header_info info;

	/*
	 * -t: recipients from To, Cc and Bcc, each value with its continuation
	 * lines; from Resent-To, Resent-Cc and Resent-Bcc instead when the
	 * message is being resent (RFC 5322 3.6.6).
	 */
	int resent = 0;
	for (i = 0; o->extract && i < hlen; i++)
		if ((i == 0 || m->data[i - 1] == '\n') &&
		    (header_is(m->data + i, hlen - i, "Resent-To") || header_is(m->data + i, hlen - i, "Resent-Cc") ||
		    header_is(m->data + i, hlen - i, "Resent-Bcc")))
			resent = 1;
	i = 0;
	while (o->extract && i < hlen) {
		size_t end = i;
		while (end < hlen && m->data[end] != '\n')
			end++;
		if (end < hlen)
			end++;
		const char *line = m->data + i;
		size_t len = end - i;
		if (resent ? (header_is(line, len, "Resent-To") || header_is(line, len, "Resent-Cc") ||
		    header_is(line, len, "Resent-Bcc")) :
		    (header_is(line, len, "To") || header_is(line, len, "Cc") || header_is(line, len, "Bcc"))) {
			while (end < hlen && (m->data[end] == ' ' || m->data[end] == '\t')) {
				while (end < hlen && m->data[end] != '\n')
					end++;
				if (end < hlen)
					end++;
			}
			const char *v = (const char *)memchr(line, ':', len) + 1;
			if (addr_list_parse(v, (size_t)(m->data + end - v), collect_rcpt, o) == -1)
				die(EX_DATAERR, "cannot parse the addresses in the %.*s header",
				    (int)(strchr(line, ':') - line), line);
		}
		i = end;
	}
	/* Bcc never leaves the machine (with -t or without) */
	kept = header_scrub(m->data, hlen, &info);
	if (kept != hlen) {
		memmove(m->data + kept, m->data + hlen, m->len - hlen);
		m->len -= hlen - kept;
	}
	hi->has_from = info.has_from;
	hi->has_date = info.has_date;
	hi->has_msgid = info.has_msgid;
	for (i = 0; i < m->len; i++)
		if ((unsigned char)m->data[i] >= 0x80) {
			hi->eightbit = 1;
			/* UTF-8 in the header section (RFC 6532) asks for SMTPUTF8 */
			if (i < kept)
				hi->utf8hdr = 1;
			break;
		}
}

/*
 * A display name as RFC 5322 wants it: as is when it is all atoms and
 * spaces, a quoted string when it has specials, and an RFC 2047 encoded
 * word when it is not ASCII.
 */
static void
display_name(const char *name, char *out, size_t outlen)
{
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *p;
	int specials = 0, eightbit = 0;
	size_t o = 0, n = strlen(name), i;

	for (p = (const unsigned char *)name; *p; p++) {
		if (*p >= 0x80)
			eightbit = 1;
		else if (strchr("()<>[]:;@\\,.\"", *p) != NULL)
			specials = 1;
	}
	if (eightbit) {
		if (n > (outlen - 16) / 4 * 3)
			n = (outlen - 16) / 4 * 3;
		o = (size_t)snprintf(out, outlen, "=?UTF-8?B?");
		for (i = 0; i < n; i += 3) {
			unsigned v = (unsigned)(unsigned char)name[i] << 16;
			if (i + 1 < n)
				v |= (unsigned)(unsigned char)name[i + 1] << 8;
			if (i + 2 < n)
				v |= (unsigned char)name[i + 2];
			out[o++] = b64[(v >> 18) & 63];
			out[o++] = b64[(v >> 12) & 63];
			out[o++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
			out[o++] = i + 2 < n ? b64[v & 63] : '=';
		}
		snprintf(out + o, outlen - o, "?=");
		return;
	}
	if (!specials) {
		snprintf(out, outlen, "%s", name);
		return;
	}
	out[o++] = '"';
	for (p = (const unsigned char *)name; *p && o + 3 < outlen; p++) {
		if (*p == '"' || *p == '\\')
			out[o++] = '\\';
		out[o++] = (char)*p;
	}
	out[o++] = '"';
	out[o] = '\0';
}

/* The message with every line ending made CRLF, as the spool keeps it. */
static char *
crlf_copy(const char *p, size_t len, size_t *outlen)
{
	char *out = xmalloc(2 * len + 3);
	size_t i, o = 0;

	for (i = 0; i < len; i++) {
		if (p[i] == '\r' && i + 1 < len && p[i + 1] == '\n') {
			out[o++] = '\r';
			out[o++] = '\n';
			i++;
		} else if (p[i] == '\r' || p[i] == '\n') {
			out[o++] = '\r';
			out[o++] = '\n';
		} else
			out[o++] = p[i];
	}
	if (o > 0 && out[o - 1] != '\n') {
		out[o++] = '\r';
		out[o++] = '\n';
	}
	*outlen = o;
	return out;
}

/* What is submitted, to the daemon or into the maildrop: the envelope and the content. */
struct outgoing {
	const struct opts *o;           /* recipients, DSN options */
	const char *sender;
	unsigned long long size;        /* as the daemon counts it: CRLF line endings */
	int eightbit, smtputf8;
	const char *envid;              /* xtext, "" when not given */
	const char *added;              /* the header fields we add, CRLF */
	size_t addlen;
	const struct msgbuf *m;         /* the message as read */
	char dropname[64];              /* the drop's name, sent as X-MAILDROP= too (maildrop.h) */
};

/* An older daemon answered 555 to X-MAILDROP=: MAIL is sent again without it. */
static int maildrop_param_refused;

static int
drop_message(const struct config *conf, const struct outgoing *g, char *err, size_t errlen)
{
	struct maildrop_env de = {
		.sender = (char *)g->sender, .rcpts = g->o->rcpts, .nrcpt = g->o->nrcpt,
		.eightbit = g->eightbit, .smtputf8 = g->smtputf8,
	};

	strlcpy_mr(de.notify, g->o->notify ? g->o->notify : "", sizeof de.notify);
	strlcpy_mr(de.ret, g->o->ret ? g->o->ret : "", sizeof de.ret);
	strlcpy_mr(de.envid, g->envid, sizeof de.envid);
	strlcpy_mr(de.name, g->dropname, sizeof de.name);
	size_t clen;
	char *content = crlf_copy(g->m->data, g->m->len, &clen);
	struct iovec parts[2] = {
		{ .iov_base = (void *)g->added, .iov_len = g->addlen },
		{ .iov_base = content, .iov_len = clen },
	};
	int rc = maildrop_write(conf->spool_dir, &de, parts, 2, err, errlen);

	free(content);
	return rc;
}

static void
submit_fail(int code, const struct smtp_reply *r, const char *what)
{
	char text[600];

	smtp_reply_summary(r, text, sizeof text);
	die(code, "%s: %s", what, text);
}

/*
 * Does the file a user named denote the system configuration?  By path,
 * or by device and inode as the user sees them: the stat() runs with the
 * user's own group, so nothing is learned about a file only the setgid
 * group could reach.  The caller then loads CONF_DEFAULT_PATH itself,
 * never the user's path, so a symlink swapped after this check gains
 * nothing.
 */
static int
names_system_config(const char *path)
{
	struct stat a, b;
	int same;

	if (strcmp(path, CONF_DEFAULT_PATH) == 0)
		return 1;
	group_act_as(getgid());
	same = stat(path, &a) == 0 && stat(CONF_DEFAULT_PATH, &b) == 0 &&
	    a.st_dev == b.st_dev && a.st_ino == b.st_ino;
	group_act_as(setgid_gid);
	return same;
}

/*
 * A load error of the system configuration, for a user who cannot read
 * the file: only the file, the line and the system's own reasons for
 * not opening it ("cannot open: ...") are shown, never text from the
 * file (a key, a value, a libconfuse token could be a secret).
 */
static void __attribute__((noreturn))
die_config_unreadable(const char *err)
{
	size_t pl = strlen(CONF_DEFAULT_PATH);
	const char *p = err + pl;
	unsigned long line = 0;

	if (strncmp(err, CONF_DEFAULT_PATH, pl) == 0 && *p == ':') {
		p++;
		if (isdigit((unsigned char)*p)) {
			char *end;
			line = strtoul(p, &end, 10);
			if (*end != ':')
				line = 0;
		} else if (strncmp(p, " cannot open: ", 14) == 0 || strncmp(p, " cannot read: ", 14) == 0)
			die(EX_CONFIG, "%s", err);
	}
	if (line > 0)
		die(EX_CONFIG, "%s:%lu: error in the configuration (details not shown: you cannot read "
		    "the file); run `mailrelay check-config` as root", CONF_DEFAULT_PATH, line);
	die(EX_CONFIG, "%s: error in the configuration (details not shown: you cannot read "
	    "the file); run `mailrelay check-config` as root", CONF_DEFAULT_PATH);
}

/*
 * Load the configuration with the right rights.  *lend is set when the
 * setgid group may be used for the maildrop: for root, and for the
 * system configuration.  A configuration a user other than root names is
 * read after the group is given up for good.  Exits 78 on errors.
 */
static struct config *
config_open(const char *option, int *lend)
{
	struct config *conf;
	const char *named = option;
	char err[1024];

	if (named == NULL && (named = getenv("MAILRELAY_CONFIG")) != NULL && *named == '\0')
		named = NULL;
	if (getuid() == 0) {
		*lend = 1;
		conf = conf_load(option, err, sizeof err);
	} else if (named == NULL) {
		*lend = 1;
		conf = conf_load(NULL, err, sizeof err);
	} else if (names_system_config(named)) {
		*lend = 1;
		conf = conf_load(CONF_DEFAULT_PATH, err, sizeof err);
	} else {
		*lend = 0;
		group_drop_for_good();
		conf = conf_load(named, err, sizeof err);
	}
	if (conf != NULL)
		return conf;
	/* access() asks with the real ids: could the user have read the file? */
	if (*lend && getuid() != 0 && access(CONF_DEFAULT_PATH, R_OK) == -1)
		die_config_unreadable(err);
	die(EX_CONFIG, "%s", err);
}

/*
 * sendmail -q: ask mailrelayd to retry every message now.  The setgid
 * group is dropped first: flushing needs root or the mailrelay group of
 * the user's own (SPEC "Admin CLI"), not of this binary.
 */
static int
flush_queue(struct config *conf, int verbose)
{
	char final[1024], err[1024];
	int rc;

	rc = ctl_request(conf->control_socket, "FLUSH", NULL, NULL, final, sizeof final, err, sizeof err);
	conf_free(conf);
	if (rc == -1)
		die(EX_UNAVAILABLE, "%s; is mailrelayd running?", err);
	if (rc != 0)
		die(rc, "%s", final);
	if (verbose)
		fprintf(stderr, "%s\n", final);
	return 0;
}

static int
reply_exit_code(const struct smtp_reply *r)
{
	if (r->code == 552)
		return EX_CANTCREAT;
	if (smtp_reply_class(r) == 4)
		return EX_TEMPFAIL;
	if (r->code == 550 || r->code == 553)
		return EX_NOUSER;
	if (r->code == 501)
		return EX_DATAERR;
	return EX_UNAVAILABLE;
}

/*
 * A 421 closes the session without judging the message (the daemon is
 * shutting down, or at its connection limit): a broken conversation, not
 * a refusal.  1 with err set for a 421, else 0.
 */
static int
session_closed(const struct smtp_reply *r, const char *when, char *err, size_t errlen)
{
	char text[600];

	if (r->code != 421)
		return 0;
	smtp_reply_summary(r, text, sizeof text);
	snprintf(err, errlen, "mailrelayd closed the session %s: %s", when, text);
	return 1;
}

/*
 * Commands sent before their replies are read (RFC 2920 PIPELINING, which
 * the daemon offers): EHLO, MAIL, the RCPTs and DATA go in one write when
 * there are fewer than this many, and their replies are read in order.
 * More recipients are sent in groups of this size: the replies a group
 * leaves unread (a few KB) must fit in the socket's buffers, or the
 * daemon, which stops reading a client that does not read its replies,
 * and this client, blocked in its write, would wait for each other.
 */
#define SUBMIT_GROUP_MAX	100

/*
 * Command i of the envelope: 0 EHLO, 1 MAIL, 2 .. nrcpt+1 the RCPTs,
 * nrcpt+2 DATA.  Queued, not sent.
 */
static int
queue_envelope_cmd(struct submit *s, const struct outgoing *g, size_t i, char *err, size_t errlen)
{
	const struct opts *o = g->o;

	if (i == 0)
		return submit_queue(s, err, errlen, "EHLO mailrelay-sendmail");
	if (i == 1)
		return submit_queue(s, err, errlen, "MAIL FROM:<%s> SIZE=%llu%s%s%s%s%s%s%s%s", g->sender, g->size,
		    g->eightbit ? " BODY=8BITMIME" : "", g->smtputf8 ? " SMTPUTF8" : "",
		    o->ret ? " RET=" : "", o->ret ? o->ret : "", g->envid[0] ? " ENVID=" : "", g->envid,
		    maildrop_param_refused ? "" : " X-MAILDROP=", maildrop_param_refused ? "" : g->dropname);
	if (i < o->nrcpt + 2)
		return submit_queue(s, err, errlen, "RCPT TO:<%s>%s%s", o->rcpts[i - 2],
		    o->notify ? " NOTIFY=" : "", o->notify ? o->notify : "");
	return submit_queue(s, err, errlen, "DATA");
}

/*
 * Judge the reply to envelope command i (as numbered above): 0 to go on,
 * 1 when MAIL got 555 for X-MAILDROP= from a daemon older than it (MAIL
 * is then sent again without it, once), -1 with err for a 421 (a
 * broken conversation), and an exit with the
 * reply's code for a refusal.  The exit closes the connection with the
 * replies to the rest of the group unread and the message unsent: if
 * DATA was answered 354 after a refused recipient, the daemon sees the
 * connection end in DATA and discards the transaction.
 */
static int
judge_envelope_reply(const struct outgoing *g, size_t i, const struct smtp_reply *r, char *err, size_t errlen)
{
	const struct opts *o = g->o;

	if (i == 0) {
		if (session_closed(r, "after EHLO", err, errlen))
			return -1;
		if (smtp_reply_class(r) != 2)
			submit_fail(EX_TEMPFAIL, r, "EHLO");
	} else if (i == 1) {
		if (session_closed(r, "after MAIL", err, errlen))
			return -1;
		if (r->code == 555 && !maildrop_param_refused) {
			maildrop_param_refused = 1;	/* a daemon older than X-MAILDROP=: again without it */
			return 1;
		}
		if (smtp_reply_class(r) != 2)
			submit_fail(reply_exit_code(r), r, "sender refused");
	} else if (i < o->nrcpt + 2) {
		if (session_closed(r, "after RCPT", err, errlen))
			return -1;
		if (smtp_reply_class(r) != 2) {
			char what[ADDR_MAX + 40];
			snprintf(what, sizeof what, "recipient <%s> refused", o->rcpts[i - 2]);
			submit_fail(reply_exit_code(r), r, what);
		}
	} else {
		if (session_closed(r, "after DATA", err, errlen))
			return -1;
		if (r->code != 354)
			submit_fail(reply_exit_code(r), r, "DATA refused");
	}
	return 0;
}

/*
 * The conversation with mailrelayd.  0 once it answered 250 to the final
 * dot (the message is on disk, SPEC "Acceptance means durable"); -1 with
 * err when the conversation broke before that: no connection, a lost
 * one, a reply not in time or not SMTP, a 421.  The caller then uses the
 * maildrop.  An explicit refusal (a 5xx, a 4xx other than 421) exits
 * here with its code: the daemon judged the message, and a drop would
 * only be judged again.  A duplicate is possible only when the reply to
 * the dot is what was lost (mailrelay-sendmail(8)).
 *
 * Two round trips, pipelined (RFC 2920): EHLO, MAIL, the RCPTs and DATA
 * in one write as soon as the connection is made, then the greeting and
 * their replies (the daemon reads commands in order from its input,
 * whenever they arrive, and a client talking before the greeting is one
 * of ours on the submit socket); the message, its dot and QUIT in one
 * write (in 64 KB pieces when larger), then the reply to the dot.  A
 * greeting that refuses is still read and reported: the daemon wrote it
 * before it closed, and the group it never read changes nothing.  The reply to QUIT is not awaited: the message is on disk
 * at the 250, and QUIT is a courtesy whose answer changes nothing.
 */
static int
submit_message(struct submit *s, const char *sock, const struct outgoing *g, char *err, size_t errlen)
{
	struct smtp_reply r;
	struct dot_encoder enc;
	size_t off, n, sent, got, most, ncmd = g->o->nrcpt + 3;
	char *out;

	s->timeout = SUBMIT_REPLY_TIMEOUT;
	if (submit_connect(s, sock, err, errlen) == -1)
		return -1;
	/* The first group goes with the connection, before the greeting is read. */
	for (sent = 0; sent < ncmd && sent < SUBMIT_GROUP_MAX; sent++)
		if (queue_envelope_cmd(s, g, sent, err, errlen) == -1)
			return -1;
	if (submit_reply(s, &r, err, errlen) == -1 || session_closed(&r, "at the greeting", err, errlen))
		return -1;
	if (smtp_reply_class(&r) != 2)
		submit_fail(EX_TEMPFAIL, &r, "mailrelayd refused the connection");
	for (got = 0; got < ncmd; got++) {
		/* every reply of the last group read: queue the next group (sent by submit_reply) */
		if (got == sent)
			for (; sent < ncmd && sent - got < SUBMIT_GROUP_MAX; sent++)
				if (queue_envelope_cmd(s, g, sent, err, errlen) == -1)
					return -1;
		if (submit_reply(s, &r, err, errlen) == -1)
			return -1;
		switch (judge_envelope_reply(g, got, &r, err, errlen)) {
		case -1:
			return -1;
		case 1:
			/* MAIL refused for X-MAILDROP=: the group's other replies (503s), then from MAIL again */
			while (++got < sent)
				if (submit_reply(s, &r, err, errlen) == -1)
					return -1;
			sent = got = 1;
			got--;	/* the loop's got++ */
			break;
		}
	}

	/* Room for the largest piece encoded: the added headers, or a 64 KB piece of the message. */
	most = g->m->len < 65536 ? g->m->len : 65536;
	if (g->addlen > most)
		most = g->addlen;
	out = xmalloc(2 * most + 8);
	dot_encoder_init(&enc);
	n = dot_encode(&enc, g->added, g->addlen, out);
	if (submit_queue_raw(s, out, n, err, errlen) == -1)
		goto broken;
	for (off = 0; off < g->m->len; off += 65536) {
		size_t chunk = g->m->len - off < 65536 ? g->m->len - off : 65536;
		n = dot_encode(&enc, g->m->data + off, chunk, out);
		if (submit_queue_raw(s, out, n, err, errlen) == -1)
			goto broken;
	}
	n = dot_encode_finish(&enc, out);
	if (submit_queue_raw(s, out, n, err, errlen) == -1)
		goto broken;
	free(out);
	if (s->verbose)
		fprintf(stderr, ">>> (%llu bytes of message)\n>>> .\n", g->size);
	if (submit_queue(s, err, errlen, "QUIT") == -1 || submit_flush(s, err, errlen) == -1)
		return -1;
	s->timeout = SUBMIT_FINAL_TIMEOUT;
	if (submit_reply(s, &r, err, errlen) == -1 || session_closed(&r, "after the message", err, errlen))
		return -1;
	if (smtp_reply_class(&r) != 2)
		submit_fail(reply_exit_code(&r), &r, "message refused");
	submit_close(s);
	return 0;

broken:
	free(out);
	return -1;
}

int
main(int argc, char **argv)
{
	struct opts o;
	struct msgbuf m = { 0 };
	struct hdrinfo hi = { 0 };
	struct config *conf;
	struct submit s;
	char err[1024], senderbuf[ADDR_MAX + 2], *sender;
	const char *p, *sock = NULL;
	int i, mode = 'm', lend;
	size_t k;

	umask(077);
	ensure_std_fds();
	p = strrchr(argv[0], '/');
	progname = p ? p + 1 : argv[0];
	log_init(progname, LOG_TO_STDERR, LOG_WARNING);

	memset(&o, 0, sizeof o);
	submit_init(&s);
	if (strcmp(progname, "mailq") == 0)
		mode = 'p';
	else if (strcmp(progname, "newaliases") == 0)
		mode = 'i';
	i = parse_args(&o, argc, argv, &mode);

	setgid_gid = getegid();
	conf = config_open(o.conf_path, &lend);
	/*
	 * Only -bm may need the group again, for a drop.  Every other mode
	 * gives it up for good: mailq, -q and -bs go through the daemon with
	 * the user's own rights, -bv and -bi read the aliases file with them.
	 */
	if (mode != 'm')
		group_drop_for_good();
	else if (lend)
		group_act_as(getgid());
	if (mode == 'p') {
		int lrc = queue_list(progname, conf, 0);
		conf_free(conf);
		return lrc;
	}
	if (mode == 'q')
		return flush_queue(conf, o.verbose);
	if (mode == 's' || mode == 'v' || mode == 'i')
		return smodes_run(mode, conf, o.sender, o.extract, argv + i, argc - i);
	strict_addresses = conf->strict_addresses;
	for (; i < argc; i++) {
		/* before parsing: the parser would take CR/LF for folding white space */
		check_arg("recipient", argv[i]);
		int n = addr_list_parse(argv[i], strlen(argv[i]), collect_rcpt, &o);
		if (n == -1)
			die(EX_DATAERR, "bad recipient address: %s", argv[i]);
	}

	/*
	 * Envelope sender.  A local one (no domain) is sent as it is:
	 * mailrelayd qualifies it, or replaces it with from_address, the same
	 * way for every submission path (SPEC "Addresses").
	 */
	struct passwd *me = getpwuid(getuid());
	if (me == NULL)
		die(EX_NOUSER, "uid %lu has no user name", (unsigned long)getuid());
	char *login = xstrdup(me->pw_name);
	/* the full name for From:, taken now: one lookup of the user per message, not two */
	char gecos[256];
	snprintf(gecos, sizeof gecos, "%.*s", (int)strcspn(me->pw_gecos ? me->pw_gecos : "", ","),
	    me->pw_gecos ? me->pw_gecos : "");
	char authwarn[ADDR_MAX + 400] = "";
	if (o.sender != NULL) {
		const char *why;
		check_arg("sender", o.sender);
		const char *f = strip_angles(o.sender, senderbuf, sizeof senderbuf);
		if (*f != '\0' && strict_addresses && addr_spec_check(f, ADDR_LOCAL_OK, &why) == -1)
			die(EX_DATAERR, "bad sender address \"%s\": %s (strict_addresses = yes)", f, why);
		sender = xstrdup(f);
		/*
		 * A user other than root who sets the sender says so in the
		 * message, as sendmail does; the daemon also logs the uid.
		 */
		struct rewrite_policy pol = conf_rewrite_policy(conf);
		size_t ll = strlen(login);
		int own = rewrite_is_local(&pol, f) && strncmp(f, login, ll) == 0 && (f[ll] == '\0' || f[ll] == '@');
		if (getuid() != 0 && !own)
			snprintf(authwarn, sizeof authwarn, "X-Authentication-Warning: %s: %s set sender to %s using -f\r\n",
			    conf->hostname, login, *f ? f : "<>");
	} else
		sender = xstrdup(login);
	if (o.fullname != NULL)
		check_arg("full name (-F)", o.fullname);

	read_message(&m, o.ignore_dots, conf->max_message_size);
	refuse_nul(&m);
	scan_headers(&m, &o, &hi);
	if (o.nrcpt == 0)
		die(EX_DATAERR, "no recipients: give them as arguments or use -t with To:, Cc: or Bcc: headers");

	/* Headers every message must carry (RFC 5322 3.6): added here for local submissions. */
	char added[2048];
	size_t addlen = 0;
	added[0] = '\0';
	if (authwarn[0])
		addlen += (size_t)snprintf(added, sizeof added, "%s", authwarn);
	if (!hi.has_from) {
		const char *name = o.fullname;
		if (name == NULL && (name = getenv("NAME")) != NULL)
			check_arg("$NAME", name);
		if (name == NULL && gecos[0] != '\0')
			name = gecos;
		if (name != NULL && *sender) {
			char dn[700];
			display_name(name, dn, sizeof dn);
			addlen += (size_t)snprintf(added + addlen, sizeof added - addlen, "From: %s <%s>\r\n", dn, sender);
		}
		else
			addlen += (size_t)snprintf(added + addlen, sizeof added - addlen, "From: <%s>\r\n", *sender ? sender : "MAILER-DAEMON");
	}
	if (!hi.has_date && addlen < sizeof added) {
		char d[64];
		time_t now = time(NULL);
		struct tm tm;
		localtime_r(&now, &tm);
		strftime(d, sizeof d, "%a, %d %b %Y %H:%M:%S %z", &tm);
		addlen += (size_t)snprintf(added + addlen, sizeof added - addlen, "Date: %s\r\n", d);
	}
	if (!hi.has_msgid && addlen < sizeof added) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		addlen += (size_t)snprintf(added + addlen, sizeof added - addlen,
		    "Message-ID: <%lld.%09ld.%ld@%s>\r\n", (long long)ts.tv_sec, ts.tv_nsec,
		    (long)getpid(), conf->hostname);
	}
	/*
	 * Input that does not start with a header field ("disk is full\n"
	 * from a script) is all body: the empty line goes between our
	 * fields and it, or its first line would be taken for a field.
	 */
	int hcomplete;
	if (addlen > 0 && addlen < sizeof added &&
	    rewrite_header_len(m.data ? m.data : "", m.len, m.len, &hcomplete) == 0 &&
	    !(m.len >= 1 && m.data[0] == '\n') && !(m.len >= 2 && m.data[0] == '\r' && m.data[1] == '\n'))
		addlen += (size_t)snprintf(added + addlen, sizeof added - addlen, "\r\n");
	if (addlen >= sizeof added)
		die(EX_DATAERR, "generated headers too long (check -F and the host name)");

	/* The size the daemon will count: every line ending as CRLF. */
	unsigned long long size = m.len + addlen;
	for (k = 0; k < m.len; k++)
		if ((m.data[k] == '\n' && (k == 0 || m.data[k - 1] != '\r')) ||
		    (m.data[k] == '\r' && (k + 1 == m.len || m.data[k + 1] != '\n')))
			size++;
	if (m.len > 0 && m.data[m.len - 1] != '\n' && m.data[m.len - 1] != '\r')
		size += 2;	/* the last line gets its CRLF */
	if (conf->max_message_size > 0 && size > conf->max_message_size)
		die(EX_CANTCREAT, "message of %llu bytes is larger than the limit of %llu bytes (max_message_size); not sent",
		    size, conf->max_message_size);

	/* Submit */
	for (k = 0; k < conf->nlisten; k++)
		if (conf->listen[k].kind == LISTEN_UNIX) {
			sock = conf->listen[k].path;
			break;
		}
	if (sock == NULL)
		die(EX_CONFIG, "%s: listen has no unix: socket to submit to", conf->path ? conf->path : "configuration");
	s.verbose = o.verbose;
	int eightbit = o.body ? strcasecmp(o.body, "8BITMIME") == 0 : hi.eightbit;
	/* SMTPUTF8 when an address or the header section is not ASCII (RFC 6531, 6532) */
	int smtputf8 = hi.utf8hdr || has_8bit(sender);
	for (k = 0; k < o.nrcpt; k++)
		smtputf8 |= has_8bit(o.rcpts[k]);
	char envid[400] = "";
	if (o.envid)
		xtext_encode(o.envid, envid, sizeof envid);
	struct outgoing g = {
		.o = &o, .sender = sender, .size = size, .eightbit = eightbit, .smtputf8 = smtputf8,
		.envid = envid, .added = added, .addlen = addlen, .m = &m,
	};
	maildrop_name(g.dropname);	/* made before the daemon hears of it: the same if the 250 is lost */
	if (submit_message(&s, sock, &g, err, sizeof err) == -1) {
		/*
		 * The daemon is down, or the conversation broke before the
		 * message was accepted: leave it in the maildrop, where the
		 * daemon picks it up when it runs.  Exit 0 only once it is on
		 * disk; otherwise 75 with both reasons.
		 */
		char derr[600];
		int drc;
		submit_close(&s);
		if (lend)
			group_act_as(setgid_gid);
		drc = drop_message(conf, &g, derr, sizeof derr);
		group_drop_for_good();
		if (drc == 0) {
			if (o.verbose)
				fprintf(stderr, "%s; message left in the maildrop for mailrelayd\n", err);
			goto done;
		}
		if (!lend)
			die(EX_TEMPFAIL, "%s, and the maildrop is not writable with your own rights (%s; "
			    "the mailrelay group is lent only with %s); message not sent",
			    err, derr, CONF_DEFAULT_PATH);
		die(EX_TEMPFAIL, "%s, and %s; message not sent", err, derr);
	}
done:
	free(m.data);
	for (k = 0; k < o.nrcpt; k++)
		free(o.rcpts[k]);
	free(o.rcpts);
	free(sender);
	free(login);
	conf_free(conf);
	return 0;
}

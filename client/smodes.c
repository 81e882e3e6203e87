/*
 * smodes: see smodes.h.
 *
 * All three modes give up the setgid group of the installed binary first:
 * they need no spool access, and -bv and -bi read the aliases file with
 * the rights of the user who runs them, so a file kept from other users
 * stays so.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/stat.h>

#include <errno.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "addr.h"
#include "aliases.h"
#include "conf/conf.h"
#include "log.h"
#include "rewrite.h"
#include "smodes.h"
#include "smtp_cmd.h"
#include "submit.h"
#include "util.h"
#include "xmalloc.h"

static int
drop_group(void)
{
	if (getegid() != getgid() && setgid(getgid()) == -1) {
		log_err("cannot give up the setgid group");
		return -1;
	}
	return 0;
}

/* The socket the daemon takes submissions on: the first unix: entry of listen. */
static const char *
submit_socket(const struct config *conf)
{
	for (size_t k = 0; k < conf->nlisten; k++)
		if (conf->listen[k].kind == LISTEN_UNIX)
			return conf->listen[k].path;
	return NULL;
}

/* ------------------------------------------------------------------ */
/* -bs */

/* Write a whole reply line to stdout (the SMTP client), CRLF added. */
static void
say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
say(const char *fmt, ...)
{
	char line[600];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof line - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof line - 3)
		n = (int)(sizeof line - 3);
	memcpy(line + n, "\r\n", 2);
	(void)write_all(1, line, (size_t)n + 2);
}

/* The first bytes of the last complete line the daemon sent: enough for its reply code. */
struct lastline {
	char cur[4], last[4];
	size_t col, lastlen;
};

static void
lastline_feed(struct lastline *l, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (l->col < sizeof l->cur)
			l->cur[l->col] = p[i];
		l->col++;
		if (p[i] == '\n') {
			l->lastlen = l->col < sizeof l->cur ? l->col : sizeof l->cur;
			memcpy(l->last, l->cur, l->lastlen);
			l->col = 0;
		}
	}
}

static int
lastline_code(const struct lastline *l, const char *code)
{
	return l->lastlen >= 3 && memcmp(l->last, code, 3) == 0;
}

/*
 * Copy bytes both ways until the daemon closes the connection.  At the end
 * of our input the socket is half-closed (SHUT_WR) and the replies still
 * owed are read to the end.  The daemon never blocks on us (its output is
 * buffered), so a blocking write to it cannot deadlock.
 */
static int
relay(int fd)
{
	char buf[16384];
	struct lastline last = { .col = 0 };
	int in_open = 1, client_eof = 0, client_gone = 0;

	for (;;) {
		struct pollfd p[2] = {
			{ .fd = fd, .events = POLLIN },
			{ .fd = 0, .events = POLLIN },
		};
		if (poll(p, in_open ? 2 : 1, -1) == -1) {
			if (errno == EINTR)
				continue;
			log_err("poll");
			return EX_OSERR;
		}
		/* the daemon's side first: replies reach the client as soon as they come */
		if (p[0].revents != 0) {
			ssize_t n = read(fd, buf, sizeof buf);
			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n < 0) {
				log_err("lost connection with mailrelayd");
				return EX_TEMPFAIL;
			}
			if (n == 0)
				break;
			lastline_feed(&last, buf, (size_t)n);
			if (!client_gone && write_all(1, buf, (size_t)n) == -1) {
				/* nobody reads our replies: stop sending, let the daemon end the session */
				log_err("writing to standard output");
				client_gone = 1;
				if (in_open)
					shutdown(fd, SHUT_WR);
				in_open = 0;
			}
		}
		if (in_open && p[1].revents != 0) {
			ssize_t n = read(0, buf, sizeof buf);
			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n < 0)
				log_err("reading standard input");
			if (n == 0)
				client_eof = 1;
			else if (n < 0)
				client_gone = 1;
			if (n <= 0 || write_all(fd, buf, (size_t)n) == -1) {
				/* end of input (or the daemon stopped reading): replies may still come */
				shutdown(fd, SHUT_WR);
				in_open = 0;
			}
		}
	}
	if (client_gone)
		return EX_IOERR;
	if (lastline_code(&last, "421")) {
		log_errx("mailrelayd ended the session with %.3s", last.last);
		return EX_TEMPFAIL;
	}
	/* after QUIT (221) or the end of our input, the daemon closing is the normal end */
	if (!lastline_code(&last, "221") && !client_eof) {
		log_errx("mailrelayd closed the connection unexpectedly");
		return EX_TEMPFAIL;
	}
	return EX_OK;
}

static int
smodes_relay(const struct config *conf, int nargs)
{
	struct submit s;
	char err[600];
	const char *sock;
	int rc;

	if (nargs > 0) {
		log_errx("-bs takes no recipients: give them in RCPT TO commands");
		return EX_USAGE;
	}
	submit_init(&s);
	sock = submit_socket(conf);
	if (sock == NULL) {
		say("421 4.3.5 %s mail system configuration error; try again later", conf->hostname);
		log_errx("%s: listen has no unix: socket to submit to", conf->path ? conf->path : "configuration");
		return EX_CONFIG;
	}
	if (submit_connect(&s, sock, err, sizeof err) == -1) {
		say("421 4.3.0 %s mailrelayd is not running; try again later", conf->hostname);
		log_errx("%s", err);
		return EX_TEMPFAIL;
	}
	/* a client that goes away must give EPIPE, not kill us before the socket is closed */
	signal(SIGPIPE, SIG_IGN);
	rc = relay(s.fd);
	submit_close(&s);
	return rc;
}

/* ------------------------------------------------------------------ */
/* -bv */

struct verify {
	const struct config *conf;
	const struct route_conf *route;     /* the sender's route, or NULL */
	struct aliases table;
	int table_loaded;
	const char *rcpt;                   /* the address being verified */
	size_t bad;                         /* undeliverable lines printed */
};

/* An address or argument as it can be printed: control characters made '?'. */
static void
printable(char *out, size_t outlen, const char *s)
{
	sanitize_text(out, outlen, s, strlen(s), 0);
}

static void
undeliverable(struct verify *v, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
undeliverable(struct verify *v, const char *what, const char *fmt, ...)
{
	char p[ADDR_MAX * 2 + 8];
	va_list ap;

	printable(p, sizeof p, what);
	printf("%s... undeliverable: ", p);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	v->bad++;
}

/* "HOST:PORT", with brackets around an IPv6 literal. */
static void
hostport(char *out, size_t outlen, const struct smarthost_conf *sh)
{
	if (strchr(sh->host, ':') != NULL)
		snprintf(out, outlen, "[%s]:%u", sh->host, sh->port);
	else
		snprintf(out, outlen, "%s:%u", sh->host, sh->port);
}

static void
on_final(const char *addr, void *arg)
{
	struct verify *v = arg;
	const struct config *c = v->conf;
	char who[ADDR_MAX * 2 + 8], to[ADDR_MAX * 2 + 8], hp[300];

	printable(who, sizeof who, v->rcpt);
	printable(to, sizeof to, addr);
	if (c->nsmarthosts == 0) {
		printf("%s... deliverable: kept in the queue (no smarthost configured) for <%s>\n", who, to);
		return;
	}
	if (v->route != NULL) {
		const struct smarthost_conf *sh = &c->smarthosts[v->route->smarthost_index];
		hostport(hp, sizeof hp, sh);
		printf("%s... deliverable: relayed to <%s> via smarthost %s (%s), route for senders %s\n",
		    who, to, sh->name, hp, v->route->from);
		return;
	}
	hostport(hp, sizeof hp, &c->smarthosts[0]);
	printf("%s... deliverable: relayed to <%s> via smarthost %s (%s)", who, to, c->smarthosts[0].name, hp);
	for (size_t i = 1; i < c->nsmarthosts; i++)
		printf("%s%s", i == 1 ? ", failover to " : ", ", c->smarthosts[i].name);
	putchar('\n');
}

static void
on_refused(const char *alias, const struct alias_refused *r, void *arg)
{
	struct verify *v = arg;
	char t[600];

	printable(t, sizeof t, r->target);
	undeliverable(v, v->rcpt, "alias %s: target \"%s\" refused (%s)", alias, t, r->why);
}

/* Problems met while expanding (an alias nested too deep): the address still goes somewhere. */
static void
on_expand_warn(const char *file, unsigned line, const char *msg, void *arg)
{
	(void)file;
	(void)line;
	(void)arg;
	log_warnx("aliases: %s", msg);
}

/* aliases_file as the daemon reads it: a missing file is an empty table. */
static int
load_aliases(struct verify *v)
{
	const char *path = v->conf->aliases_file;

	if (v->table_loaded)
		return 0;
	v->table_loaded = 1;
	if (path == NULL || *path == '\0')
		return 0;
	if (aliases_load(&v->table, path, NULL, NULL) == -1) {
		int e = errno;
		log_errx("%s: cannot read the aliases: %s", path, strerror(e));
		return e == EACCES ? EX_NOPERM : EX_IOERR;
	}
	return 0;
}

/*
 * One address, as the daemon would take it in RCPT TO: the same command
 * parser decides whether it is acceptable, and the path it yields is
 * expanded.
 */
static int
verify_one(struct verify *v, const char *addr)
{
	char line[ADDR_MAX + 16], err[200];
	struct smtp_cmd c;
	const char *why;
	int rc;

	v->rcpt = addr;
	snprintf(line, sizeof line, "RCPT TO:<%s>", addr);
	if (smtp_cmd_parse(line, strlen(line), &c, err, sizeof err) == -1 || c.verb != SMTP_CMD_RCPT) {
		undeliverable(v, addr, "malformed address (%s)", err);
		return 0;
	}
	if (c.path[0] == '\0') {
		undeliverable(v, addr, "empty recipient address");
		return 0;
	}
	if (v->conf->strict_addresses && addr_spec_check(c.path, ADDR_LOCAL_OK, &why) == -1) {
		undeliverable(v, addr, "bad recipient address syntax: %s (strict_addresses)", why);
		return 0;
	}
	if (strchr(c.path, '@') == NULL && (rc = load_aliases(v)) != 0)
		return rc;
	aliases_verify(&v->table, c.path, v->conf->admin_address, v->conf->hostname,
	    on_final, on_refused, v, on_expand_warn, NULL);
	return 0;
}

struct addrs {
	char **v;
	size_t n;
};

static void
collect(const char *a, void *arg)
{
	struct addrs *l = arg;

	l->v = xreallocarray(l->v, l->n + 1, sizeof *l->v);
	l->v[l->n++] = xstrdup(a);
}

static void
addrs_free(struct addrs *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/*
 * The envelope sender as the daemon would store it (the route is chosen by
 * it): -f/-r without angle brackets, else the login name, through the
 * daemon's rewrite_sender().  NULL with *rc set on error.
 */
static char *
envelope_sender(const struct config *conf, const char *opt, int *rc)
{
	struct rewrite_policy pol = conf_rewrite_policy(conf);
	char buf[ADDR_MAX + 1];

	if (opt != NULL) {
		size_t n = strlen(opt);
		for (const char *p = opt; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f) {
				log_errx("sender contains a control character; refused");
				*rc = EX_USAGE;
				return NULL;
			}
		if (n >= 2 && opt[0] == '<' && opt[n - 1] == '>') {
			if (n - 2 >= sizeof buf) {
				log_errx("sender address too long");
				*rc = EX_DATAERR;
				return NULL;
			}
			memcpy(buf, opt + 1, n - 2);
			buf[n - 2] = '\0';
			opt = buf;
		}
		return rewrite_sender(&pol, opt);
	}
	struct passwd *pw = getpwuid(getuid());
	if (pw == NULL) {
		log_errx("uid %lu has no user name", (unsigned long)getuid());
		*rc = EX_NOUSER;
		return NULL;
	}
	return rewrite_sender(&pol, pw->pw_name);
}

static int
smodes_verify(const struct config *conf, const char *sender_opt, int extract, char **args, int nargs)
{
	struct verify v = { .conf = conf };
	char *sender = NULL;
	int rc = 0;

	if (extract) {
		log_errx("-bv does not take recipients from the headers (-t): give them as arguments");
		return EX_USAGE;
	}
	if (nargs == 0) {
		log_errx("-bv: no recipients to verify");
		return EX_USAGE;
	}
	/* Only routes depend on the sender: without any, no need to know it. */
	if (conf->nroutes > 0) {
		if ((sender = envelope_sender(conf, sender_opt, &rc)) == NULL)
			return rc;
		v.route = conf_route_find(conf, sender);
	}
	for (int i = 0; i < nargs && rc == 0; i++) {
		const char *a = args[i];
		struct addrs l = { 0 };
		int bad = 0;

		for (const char *p = a; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				bad = 1;
		if (bad) {
			undeliverable(&v, a, "contains a control character");
			continue;
		}
		int n = addr_list_parse(a, strlen(a), collect, &l);
		if (n == -1)
			undeliverable(&v, a, "malformed address");
		else if (l.n == 0)
			undeliverable(&v, a, "no address in it");
		for (size_t k = 0; n != -1 && k < l.n && rc == 0; k++)
			rc = verify_one(&v, l.v[k]);
		addrs_free(&l);
	}
	if (fflush(stdout) == EOF || ferror(stdout)) {
		log_err("writing to standard output");
		if (rc == 0)
			rc = EX_IOERR;
	}
	aliases_free(&v.table);
	free(sender);
	if (rc != 0)
		return rc;
	return v.bad > 0 ? EX_NOUSER : EX_OK;
}

/* ------------------------------------------------------------------ */
/* -bi, newaliases */

static void
on_parse_warn(const char *file, unsigned line, const char *msg, void *arg)
{
	(void)arg;
	if (file != NULL && line > 0)
		fprintf(stderr, "%s:%u: %s\n", file, line, msg);
	else
		fprintf(stderr, "%s: %s\n", file ? file : "aliases", msg);
}

/*
 * Check aliases_file as the daemon will read it.  Every problem is printed
 * as FILE:LINE: why.  Malformed entries (which the daemon skips) make the
 * exit status 78; refused targets, second definitions and loops are
 * printed and do not.  A missing file is what the daemon takes for an
 * empty table: fine for the built-in default path, an error when the
 * configuration names the file.
 */
static int
smodes_newaliases(const struct config *conf)
{
	const char *path = conf->aliases_file;
	struct aliases a;
	struct stat st;
	unsigned kline = conf_key_line(conf, NULL, "aliases_file");

	if (path == NULL || *path == '\0') {
		printf("aliases_file is not set: no aliases\n");
		return EX_OK;
	}
	if (stat(path, &st) == -1) {
		if (errno == ENOENT && kline > 0) {
			log_errx("%s: no such file (aliases_file, %s:%u)", path, conf->path, kline);
			return EX_CONFIG;
		}
		if (errno == ENOENT) {
			printf("%s: no such file: no aliases\n", path);
			return EX_OK;
		}
		/* other errors: aliases_load() meets them too and they are reported there */
	} else if (!S_ISREG(st.st_mode)) {
		log_errx("%s: not a regular file", path);
		return EX_CONFIG;
	}
	if (aliases_load(&a, path, on_parse_warn, NULL) == -1) {
		int e = errno;
		log_errx("%s: cannot read the aliases: %s", path, strerror(e));
		return e == EACCES ? EX_NOPERM : EX_IOERR;
	}
	aliases_check(&a, path, on_parse_warn, NULL);
	if (a.nerrors > 0) {
		log_errx("%s: %zu malformed entr%s skipped; the other %zu aliases are in use", path,
		    a.nerrors, a.nerrors == 1 ? "y" : "ies", a.n);
		aliases_free(&a);
		return EX_CONFIG;
	}
	printf("%s: %zu aliases\n", path, a.n);
	aliases_free(&a);
	if (fflush(stdout) == EOF) {
		log_err("writing to standard output");
		return EX_IOERR;
	}
	return EX_OK;
}

/* ------------------------------------------------------------------ */

int
smodes_run(int mode, struct config *conf, const char *sender, int extract, char **args, int nargs)
{
	int rc;

	if (drop_group() == -1) {
		conf_free(conf);
		return EX_OSERR;
	}
	switch (mode) {
	case 's':
		rc = smodes_relay(conf, nargs);
		break;
	case 'v':
		rc = smodes_verify(conf, sender, extract, args, nargs);
		break;
	case 'i':
		rc = smodes_newaliases(conf);
		break;
	default:
		log_errx("mode -b%c is not supported", mode);
		rc = EX_USAGE;
		break;
	}
	conf_free(conf);
	return rc;
}

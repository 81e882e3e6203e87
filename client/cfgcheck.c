/*
 * cfgcheck: see cfgcheck.h.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <netdb.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "cfgcheck.h"
#include "conf/confcheck.h"
#include "aliases.h"
#include "runconf.h"
#include "tls.h"
#include "util.h"
#include "xmalloc.h"

/*
 * Findings are gathered, then printed in the order of the file's lines
 * (those of keys the file does not set last), whatever check found them.
 */
struct finding {
	enum confcheck_level level;
	unsigned line;
	size_t seq;
	char *text;		/* "KEY: why" */
};

struct findings {
	const char *file;	/* as messages name it */
	struct finding *v;
	size_t n;
	unsigned errors, warnings;
};

static void
found(void *arg, enum confcheck_level level, unsigned line, const char *key, const char *msg)
{
	struct findings *f = arg;

	f->v = xreallocarray(f->v, f->n + 1, sizeof *f->v);
	f->v[f->n] = (struct finding){ level, line, f->n, xasprintf("%s: %s", key, msg) };
	f->n++;
	if (level == CONFCHECK_ERROR)
		f->errors++;
	else
		f->warnings++;
}

static int
by_line(const void *a, const void *b)
{
	const struct finding *x = a, *y = b;
	unsigned lx = x->line ? x->line : ~0u, ly = y->line ? y->line : ~0u;

	if (lx != ly)
		return lx < ly ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void
findings_print(struct findings *f)
{
	if (f->n > 1)
		qsort(f->v, f->n, sizeof *f->v, by_line);
	for (size_t i = 0; i < f->n; i++) {
		char where[1200];
		const struct finding *x = &f->v[i];

		if (x->line > 0)
			snprintf(where, sizeof where, "%s:%u", f->file, x->line);
		else
			snprintf(where, sizeof where, "%s", f->file);
		if (x->level == CONFCHECK_ERROR)
			fprintf(stderr, "mailrelay: %s: %s\n", where, x->text);
		else
			printf("%s: warning: %s\n", where, x->text);
		free(x->text);
	}
	free(f->v);
}

/*
 * runconf_new()'s "FILE:LINE: KEY: why (smarthost NAME)", met as user:
 * taken apart so that it sorts with the rest, and told whose rights failed.
 */
static void
found_runconf(struct findings *f, const char *err, const char *user)
{
	size_t flen = strlen(f->file);
	unsigned line = 0;
	int n = 0;
	char key[64], msg[2400];
	const char *rest = err, *sep;

	if (strncmp(err, f->file, flen) == 0 && sscanf(err + flen, ":%u: %n", &line, &n) == 1 && n > 0)
		rest = err + flen + n;
	if ((sep = strstr(rest, ": ")) == NULL || (size_t)(sep - rest) >= sizeof key) {
		snprintf(key, sizeof key, "user");
		sep = rest - 2;
	} else
		snprintf(key, sizeof key, "%.*s", (int)(sep - rest), rest);
	snprintf(msg, sizeof msg, "%s, as user %s: the daemon's delivery process runs as %s and reads "
	    "it whenever it starts (mailrelayd does not start)", sep + 2, user, user);
	found(f, CONFCHECK_ERROR, line, key, msg);
}

/* A finding on a smarthost's key: "why (smarthost NAME)" at the key's line. */
static void
sh_found(struct findings *f, enum confcheck_level level, const struct config *c,
    const struct smarthost_conf *sh, const char *key, const char *why)
{
	char msg[1024];

	snprintf(msg, sizeof msg, "%s (smarthost %s)", why, sh->name);
	found(f, level, conf_key_line(c, sh, key), key, msg);
}

/*
 * What the daemon does once it runs as `user` and may fail there: reread
 * every secret and TLS file on SIGHUP (runconf_new()), open log_file (at
 * start: a failure stops it), search tls_ca_path at each handshake, read
 * aliases_file (a failure is logged).  In a child that has dropped
 * privileges exactly as mailrelayd's drop_privileges() does; it writes
 * its findings to fd, one per line: "R " and runconf_new()'s message, or
 * "E|W LINE KEY\tMSG".
 */
static void
child_as_user(const struct config *c, const struct passwd *pw, int fd)
{
	char err[1024];
	FILE *out = fdopen(fd, "w");

	if (out == NULL)
		_exit(EX_OSERR);
	if (setgroups(0, NULL) == -1 || setgid(pw->pw_gid) == -1 || setuid(pw->pw_uid) == -1) {
		fprintf(out, "E 0 user\tcannot become %s to check its rights: %s\n", c->user, strerror(errno));
		_exit(0);
	}
	/* the child's memory is its own: what runconf_new() takes is never given back */
	if (runconf_new((struct config *)c, err, sizeof err) == NULL)
		fprintf(out, "R %s\n", err);
	if (c->log_file != NULL) {
		const char *what = NULL;
		int lfd = open(c->log_file, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY);
		if (lfd != -1)
			close(lfd);
		else if (errno == ENOENT) {
			/* not created here: a check changes nothing */
			char *dup = xstrdup(c->log_file);
			if (access(dirname(dup), W_OK | X_OK) == -1)
				what = "cannot be created";
			int saved = errno;
			free(dup);
			errno = saved;
		} else
			what = "cannot be opened";
		if (what != NULL)
			fprintf(out, "E %u log_file\t%s: %s by user %s (%s): the daemon opens it as that "
			    "user at start and would not start\n", conf_key_line(c, NULL, "log_file"),
			    c->log_file, what, c->user, strerror(errno));
	}
	/* a CA directory is searched at each handshake, as this user: runconf_new() only names it */
	for (size_t i = 0; i < c->nsmarthosts; i++) {
		const struct smarthost_conf *sh = &c->smarthosts[i];
		if (sh->tls != TLS_DISABLED && sh->tls_ca_path != NULL &&
		    access(sh->tls_ca_path, R_OK | X_OK) == -1)
			fprintf(out, "E %u tls_ca_path\t%s: cannot be searched by user %s (%s): the daemon "
			    "looks certificates up there as that user, and every verification would fail "
			    "(smarthost %s)\n", conf_key_line(c, sh, "tls_ca_path"), sh->tls_ca_path,
			    c->user, strerror(errno), sh->name);
	}
	if (c->aliases_file != NULL && access(c->aliases_file, F_OK) == 0 &&
	    access(c->aliases_file, R_OK) == -1)
		fprintf(out, "W %u aliases_file\t%s: cannot be read by user %s (%s): the daemon reads it "
		    "as that user, and local names would not be expanded\n",
		    conf_key_line(c, NULL, "aliases_file"), c->aliases_file, c->user, strerror(errno));
	fclose(out);
	_exit(0);
}

/*
 * Run as root for a `user` that is not root: do child_as_user() and report
 * what it found, each saying that it is that user who cannot.
 */
static void
check_as_user(const struct config *c, struct findings *f)
{
	struct passwd *pw;
	int fds[2], status = 0;
	pid_t pid;
	char line[2048];

	errno = 0;
	if ((pw = getpwnam(c->user)) == NULL) {
		/*
		 * A warning: it matters only to a daemon started as root (one
		 * started as a user runs as that user), and how it is started
		 * is not in the file.
		 */
		char msg[512];
		snprintf(msg, sizeof msg, "\"%s\": %s: mailrelayd started as root stops at start; "
		    "create the user, or set user", c->user, errno ? strerror(errno) : "no such user");
		found(f, CONFCHECK_WARNING, conf_key_line(c, NULL, "user"), "user", msg);
		return;
	}
	if (geteuid() != 0 || pw->pw_uid == 0)
		return;		/* the daemon reads as this process can, or cannot be checked */
	if (pipe(fds) == -1) {
		fprintf(stderr, "mailrelay: check-config: cannot check as user %s: %s\n", c->user,
		    strerror(errno));
		return;
	}
	fflush(NULL);	/* nothing buffered is written twice */
	if ((pid = fork()) == -1) {
		fprintf(stderr, "mailrelay: check-config: cannot check as user %s: %s\n", c->user,
		    strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return;
	}
	if (pid == 0) {
		close(fds[0]);
		child_as_user(c, pw, fds[1]);
	}
	close(fds[1]);
	FILE *in = fdopen(fds[0], "r");
	while (in != NULL && fgets(line, sizeof line, in) != NULL) {
		char *tab;
		unsigned ln = 0;
		int n = 0;

		line[strcspn(line, "\n")] = '\0';
		if (line[0] == 'R') {
			found_runconf(f, line + 2, c->user);
			continue;
		}
		if ((tab = strchr(line, '\t')) == NULL || sscanf(line + 2, "%u %n", &ln, &n) != 1)
			continue;
		*tab = '\0';
		found(f, line[0] == 'E' ? CONFCHECK_ERROR : CONFCHECK_WARNING, ln, line + 2 + n, tab + 1);
	}
	if (in != NULL)
		fclose(in);
	else
		close(fds[0]);
	while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		/* what it found so far stands; that it could not finish is said too */
		char msg[256];
		snprintf(msg, sizeof msg, "\"%s\": the check as that user did not finish (%s %d)",
		    c->user, WIFEXITED(status) ? "exit" : "signal",
		    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
		found(f, CONFCHECK_ERROR, conf_key_line(c, NULL, "user"), "user", msg);
	}
}

/* A certificate file: expired is an error, expiring soon a warning. */
static void
check_expiry(const struct config *c, const struct smarthost_conf *sh, const char *key,
    const char *path, time_t now, struct findings *f)
{
	char subject[256], err[512], day[32], why[1024];
	time_t na;
	struct tm tm;

	if (path == NULL || tls_file_first_expiry(path, &na, subject, sizeof subject, err, sizeof err) == -1)
		return;		/* unreadable or empty: runconf_new() has said why, if it matters */
	gmtime_r(&na, &tm);
	strftime(day, sizeof day, "%Y-%m-%d %H:%M:%S UTC", &tm);
	if (na <= now) {
		snprintf(why, sizeof why, "%s: certificate \"%s\" expired on %s", path, subject, day);
		sh_found(f, CONFCHECK_ERROR, c, sh, key, why);
	} else if (na - now < (time_t)CFGCHECK_EXPIRY_DAYS * 86400) {
		snprintf(why, sizeof why, "%s: certificate \"%s\" expires on %s, in less than %d days",
		    path, subject, day, CFGCHECK_EXPIRY_DAYS);
		sh_found(f, CONFCHECK_WARNING, c, sh, key, why);
	}
}

/*
 * The name the daemon resolves: the smarthost's host, or with a proxy the
 * proxy's (the proxy resolves the smarthost).  An IP literal and a
 * placeholder (already an error) are not looked up.
 */
static void
check_dns(const struct config *c, const struct smarthost_conf *sh, struct findings *f)
{
	const char *name = sh->proxy_host ? sh->proxy_host : sh->host;
	const char *key = sh->proxy_host ? "proxy" : "host";
	struct addrinfo hints, *res = NULL;
	char why[1024];
	int r;

	if (confcheck_is_placeholder(name))
		return;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST;
	if (getaddrinfo(name, NULL, &hints, &res) == 0) {
		freeaddrinfo(res);
		return;
	}
	hints.ai_flags = 0;
	r = getaddrinfo(name, NULL, &hints, &res);
	if (r == 0) {
		freeaddrinfo(res);
		return;
	}
	/*
	 * Warnings, both: what DNS answers depends on where and when the
	 * check runs (a build host without network, split-horizon DNS, a
	 * VPN that is down; some offline resolvers deny every name), and the
	 * daemon retries.  The words tell a typo from an outage.
	 */
	if (r == EAI_NONAME || r == EAI_NODATA)
		snprintf(why, sizeof why, "\"%s\" does not resolve (%s): check the spelling", name,
		    gai_strerror(r));
	else
		snprintf(why, sizeof why, "\"%s\" cannot be resolved now (%s): DNS is not reachable "
		    "from here; the daemon retries", name, r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
	sh_found(f, CONFCHECK_WARNING, c, sh, key, why);
}

/*
 * Each problem of the aliases file (refused targets, syntax) as a warning:
 * newaliases' errors are the daemon's warnings (local names stay local).
 */
struct alias_ctx {
	struct findings *f;
	unsigned line;		/* of aliases_file in the config, 0 for the default */
};

static void
alias_warn(const char *file, unsigned line, const char *msg, void *arg)
{
	struct alias_ctx *x = arg;
	char text[1400];

	if (line > 0)
		snprintf(text, sizeof text, "%s:%u: %s", file, line, msg);
	else
		snprintf(text, sizeof text, "%s: %s", file, msg);
	found(x->f, CONFCHECK_WARNING, x->line, "aliases_file", text);
}

int
cfgcheck_run(struct config *c)
{
	struct findings f = { c->path ? c->path : "(defaults)", NULL, 0, 0, 0 };
	struct runconf *rc;
	struct aliases al;
	struct stat st;
	char err[1024];
	time_t now = time(NULL);

	/* 1. the daemon's own loader, as at start */
	if ((rc = runconf_new(c, err, sizeof err)) == NULL) {
		fprintf(stderr, "mailrelay: %s\n", err);
		conf_free(c);
		return EX_CONFIG;
	}
	/* 2. again as the daemon's user */
	check_as_user(c, &f);
	for (size_t i = 0; i < c->nsmarthosts; i++) {
		const struct smarthost_conf *sh = &c->smarthosts[i];

		/* 3. certificates: the files loaded above, so they exist and parse */
		if (sh->tls != TLS_DISABLED) {
			check_expiry(c, sh, "tls_client_cert", sh->tls_client_cert, now, &f);
			check_expiry(c, sh, "tls_ca_file", sh->tls_ca_file, now, &f);
		}
		if (sh->oauth2 != NULL)
			check_expiry(c, sh, "client_certificate", sh->oauth2->client_certificate, now, &f);
		/* 4. DNS */
		check_dns(c, sh, &f);
		/* 5. an inline password in a file others may read */
		if (sh->password != NULL && c->path != NULL && stat(c->path, &st) == 0 &&
		    (st.st_mode & S_IROTH)) {
			char why[1024];
			snprintf(why, sizeof why, "inline, in a file others may read (mode %04o): run "
			    "chmod o-r %s, or move it to a password_file", (unsigned)(st.st_mode & 07777),
			    c->path);
			sh_found(&f, CONFCHECK_WARNING, c, sh, "password", why);
		}
	}
	/* 6. placeholders and weakened security */
	confcheck_config(c, found, &f);
	struct alias_ctx ax = { &f, conf_key_line(c, NULL, "aliases_file") };
	if (c->aliases_file != NULL && aliases_load(&al, c->aliases_file, alias_warn, &ax) == 0) {
		aliases_check(&al, c->aliases_file, alias_warn, &ax);	/* loops */
		aliases_free(&al);
	}

	fflush(stdout);
	findings_print(&f);
	if (f.errors == 0) {
		if (f.warnings > 0)
			printf("%s: OK, %u warning%s\n", f.file, f.warnings, f.warnings == 1 ? "" : "s");
		else
			printf("%s: OK\n", f.file);
	}
	runconf_unref(rc);	/* and the config with it */
	return f.errors > 0 ? EX_CONFIG : 0;
}

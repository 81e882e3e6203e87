/*
 * listener: see listener.h.
 *
 * The accept callback hands every connection to smtpd, which applies
 * max_connections; the error callback pauses the socket (accept_guard).
 *
 * Socket activation: the sockets a .socket unit passes are matched to the
 * `listen` entries by their bound address (the unix path; the TCP address
 * and port), not by order or FileDescriptorName=, so that the unit and
 * mailrelay.conf cannot silently disagree.  An entry with no passed
 * socket is bound here as usual; a passed socket that no entry names is
 * closed with a warning (mail would arrive where the config says nothing).
 */
#include "config.h"

#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "daemon.h"
#include "listener.h"
#include "log.h"
#include "smtpd.h"
#include "sysd.h"
#include "xmalloc.h"

struct listener {
	struct evconnlistener *lev;
	struct accept_guard *guard;
	int is_unix;
	char *desc;
};

struct accept_guard {
	struct evconnlistener *lev;
	struct event *resume;       /* ACCEPT_PAUSE_MS after a failed accept() */
	char *desc;
};

/* One gate for every listening socket: a descriptor shortage hits them all at once. */
static struct log_gate accept_gate;

int
log_gate_pass(struct log_gate *g, unsigned long *n)
{
	time_t now = time(NULL);

	if (g->last != 0 && now - g->last < LOG_GATE_SECS && now >= g->last) {
		g->quiet++;
		return 0;
	}
	*n = g->quiet + 1;
	g->quiet = 0;
	g->last = now;
	return 1;
}

static void
accept_resume(evutil_socket_t fd, short what, void *arg)
{
	struct accept_guard *g = arg;

	(void)fd;
	(void)what;
	evconnlistener_enable(g->lev);
}

struct accept_guard *
accept_guard_new(struct evconnlistener *lev, const char *desc)
{
	struct accept_guard *g = xcalloc(1, sizeof *g);

	g->lev = lev;
	g->desc = xstrdup(desc);
	if ((g->resume = evtimer_new(D->base, accept_resume, g)) == NULL)
		log_fatalx("listener: cannot create a timer");
	return g;
}

void
accept_guard_free(struct accept_guard *g)
{
	if (g == NULL)
		return;
	event_free(g->resume);
	free(g->desc);
	free(g);
}

void
accept_guard_error(struct accept_guard *g)
{
	struct timeval tv = { .tv_sec = 0, .tv_usec = ACCEPT_PAUSE_MS * 1000 };
	int saved = errno;
	unsigned long n;

	/*
	 * Whatever the error, accepting again at once would meet it again:
	 * pause this socket.  libevent retries EAGAIN and ECONNABORTED by
	 * itself and never reports them here.
	 */
	evconnlistener_disable(g->lev);
	evtimer_add(g->resume, &tv);
	if (log_gate_pass(&accept_gate, &n)) {
		errno = saved;
		log_warn("%s: accept (not accepting for %d ms; %lu pause(s) since the last line)",
		    g->desc, ACCEPT_PAUSE_MS, n);
	}
}

static struct listener **listeners;	/* each separately: libevent holds the pointers */
static size_t nlisteners;
static char *first_unix_path;
static int *passed;		/* sockets from systemd; -1 once taken */
static size_t npassed;

/* Same socket address?  Unix sockets by path; inet by address and port. */
static int
sockaddr_same(const struct sockaddr *a, const struct sockaddr *b)
{
	if (a->sa_family != b->sa_family)
		return 0;
	switch (a->sa_family) {
	case AF_UNIX:
		return strncmp(((const struct sockaddr_un *)a)->sun_path,
		    ((const struct sockaddr_un *)b)->sun_path,
		    sizeof ((const struct sockaddr_un *)a)->sun_path) == 0;
	case AF_INET: {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	case AF_INET6: {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
		return x->sin6_port == y->sin6_port &&
		    memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
	}
	}
	return 0;
}

/*
 * A passed listening stream socket bound to sa, made non-blocking and
 * wrapped in a disabled listener; NULL when systemd passed none.
 */
static struct evconnlistener *
take_passed(const struct sockaddr *sa)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int type, listening;
	size_t i;

	for (i = 0; i < npassed; i++) {
		socklen_t olen = sizeof type;
		if (passed[i] == -1)
			continue;
		len = sizeof ss;
		memset(&ss, 0, sizeof ss);
		if (getsockname(passed[i], (struct sockaddr *)&ss, &len) == -1 ||
		    !sockaddr_same((struct sockaddr *)&ss, sa))
			continue;
		if (getsockopt(passed[i], SOL_SOCKET, SO_TYPE, &type, &olen) == -1 || type != SOCK_STREAM)
			continue;
		olen = sizeof listening;
		if (getsockopt(passed[i], SOL_SOCKET, SO_ACCEPTCONN, &listening, &olen) == -1 || !listening)
			continue;
		evutil_make_socket_nonblocking(passed[i]);
		struct evconnlistener *lev = evconnlistener_new(D->base, NULL, NULL,
		    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_DISABLED, -1, passed[i]);
		if (lev == NULL)
			return NULL;	/* bound anew by the caller, which then reports */
		passed[i] = -1;
		return lev;
	}
	return NULL;
}

static void
on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct listener *l = arg;
	int allowed = 1;

	(void)lev;
	if (!l->is_unix)
		allowed = conf_allow_match(D->conf, sa);
	smtpd_accept(fd, sa, (socklen_t)salen, l->is_unix, allowed);
}

static void
on_accept_error(struct evconnlistener *lev, void *arg)
{
	struct listener *l = arg;

	(void)lev;
	accept_guard_error(l->guard);
}

static int
add_listener(struct evconnlistener *lev, int is_unix, const char *desc)
{
	struct listener *l = xcalloc(1, sizeof *l);
	listeners = xreallocarray(listeners, nlisteners + 1, sizeof *listeners);
	listeners[nlisteners++] = l;
	l->lev = lev;
	l->is_unix = is_unix;
	l->desc = xstrdup(desc);
	l->guard = accept_guard_new(lev, desc);
	evconnlistener_set_cb(lev, on_accept, l);
	evconnlistener_set_error_cb(lev, on_accept_error);
	return 0;
}

static int
open_unix(const char *path, char *errbuf, size_t errlen)
{
	struct sockaddr_un sun;
	struct stat st;
	struct evconnlistener *lev;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path) {
		snprintf(errbuf, errlen, "unix:%s: path too long", path);
		return -1;
	}
	strlcpy_mr(sun.sun_path, path, sizeof sun.sun_path);
	/* Passed by systemd: its SocketMode= and owner stand; nothing to unlink. */
	if ((lev = take_passed((struct sockaddr *)&sun)) != NULL) {
		char desc[sizeof sun.sun_path + 32];
		snprintf(desc, sizeof desc, "%s (passed by systemd)", path);
		if (first_unix_path == NULL)
			first_unix_path = xstrdup(path);
		return add_listener(lev, 1, desc);
	}
	/* A stale socket from a previous run; never remove anything else. */
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	lev = evconnlistener_new_bind(D->base, NULL, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_DISABLED, 128,
	    (struct sockaddr *)&sun, sizeof sun);
	if (lev == NULL) {
		snprintf(errbuf, errlen, "unix:%s: cannot listen: %s", path, strerror(errno));
		return -1;
	}
	/* Any local user may submit (SPEC: Submission). */
	if (chmod(path, 0666) == -1) {
		snprintf(errbuf, errlen, "unix:%s: chmod: %s", path, strerror(errno));
		evconnlistener_free(lev);
		return -1;
	}
	if (first_unix_path == NULL)
		first_unix_path = xstrdup(path);
	return add_listener(lev, 1, path);
}

static int
open_tcp(const char *host, const char *port, char *errbuf, size_t errlen)
{
	struct addrinfo hints, *res, *ai;
	int rc, n = 0;

	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
		snprintf(errbuf, errlen, "%s:%s: %s", host, port, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		char desc[300];
		struct evconnlistener *lev = take_passed(ai->ai_addr);
		if (lev != NULL) {
			snprintf(desc, sizeof desc, "%s:%s (passed by systemd)", host, port);
			add_listener(lev, 0, desc);
			n++;
			continue;
		}
		lev = evconnlistener_new_bind(D->base, NULL, NULL,
		    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE | LEV_OPT_DISABLED,
		    128, ai->ai_addr, (int)ai->ai_addrlen);
		if (lev == NULL) {
			snprintf(errbuf, errlen, "%s:%s: cannot listen: %s", host, port, strerror(errno));
			freeaddrinfo(res);
			return -1;
		}
		snprintf(desc, sizeof desc, "%s:%s", host, port);
		add_listener(lev, 0, desc);
		n++;
	}
	freeaddrinfo(res);
	return n > 0 ? 0 : -1;
}

/*
 * The descriptors max_connections needs: a session holds its socket and,
 * while it receives a message, the file in spool/tmp; a control
 * connection holds one; a margin covers the spool, the smarthost
 * sessions, the notices being written (at most 64, bounce.c) and the
 * libraries.  The soft limit is raised towards that (as far as
 * the hard limit allows); a limit still lower is said once at start: the
 * accept guard then keeps the daemon from spinning, but clients wait.
 */
static void
fd_budget(const struct config *conf)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)conf->max_connections * 3 + 192, old;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= want)
		return;
	old = rl.rlim_cur;
	rl.rlim_cur = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want ? rl.rlim_max : want;
	if (rl.rlim_cur > old && setrlimit(RLIMIT_NOFILE, &rl) == -1)
		rl.rlim_cur = old;
	if (rl.rlim_cur < want)
		log_warnx("max_connections %u needs up to %llu descriptors, the limit is %llu (RLIMIT_NOFILE): "
		    "clients wait once they run out", conf->max_connections, (unsigned long long)want,
		    (unsigned long long)rl.rlim_cur);
}

int
listeners_open(const struct config *conf, char *errbuf, size_t errlen)
{
	size_t i;

	fd_budget(conf);

	npassed = (size_t)sysd_listen_fds();
	passed = npassed ? xreallocarray(NULL, npassed, sizeof *passed) : NULL;
	for (i = 0; i < npassed; i++)
		passed[i] = SYSD_LISTEN_FDS_START + (int)i;
	for (i = 0; i < conf->nlisten; i++) {
		const struct listen_conf *lc = &conf->listen[i];
		int rc = lc->kind == LISTEN_UNIX ? open_unix(lc->path, errbuf, errlen)
		    : open_tcp(lc->host, lc->port, errbuf, errlen);
		if (rc == -1)
			break;
	}
	for (size_t j = 0; j < npassed; j++) {
		if (passed[j] == -1)
			continue;
		if (i == conf->nlisten)
			log_warnx("socket-activated descriptor %d matches no `listen` entry: closed", passed[j]);
		close(passed[j]);
	}
	free(passed);
	passed = NULL;
	npassed = 0;
	if (i < conf->nlisten)
		return -1;
	for (i = 0; i < nlisteners; i++) {
		evconnlistener_enable(listeners[i]->lev);
		log_info("listening on %s", listeners[i]->desc);
	}
	return 0;
}

const char *
listeners_unix_path(void)
{
	return first_unix_path;
}

void
listeners_close(void)
{
	size_t i;

	for (i = 0; i < nlisteners; i++) {
		accept_guard_free(listeners[i]->guard);
		evconnlistener_free(listeners[i]->lev);
		free(listeners[i]->desc);
		free(listeners[i]);
	}
	free(listeners);
	listeners = NULL;
	nlisteners = 0;
	free(first_unix_path);
	first_unix_path = NULL;
}

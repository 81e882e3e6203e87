/*
 * probe: one delivery session in the calling process.  See probe.h.
 *
 * The queue is queue_one.c's (one message, never "ready" for dispatch:
 * the run starts its session itself, to the smarthost asked for); the
 * outcome is kept for the caller.  A failover the delivery code decides
 * (the smarthost failed before mail) ends the run too: `mailrelay test`
 * tests one smarthost.
 */
#include "config.h"

#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "daemon.h"
#include "delivery.h"
#include "oauth2.h"
#include "probe.h"
#include "queue.h"
#include "queue_one.h"
#include "runconf.h"
#include "secret.h"
#include "util.h"
#include "xmalloc.h"

static double elapsed(void);

static struct {
	struct qmsg msg;
	struct probe_result *res;
	probe_step_fn fn;
	void *arg;
	struct timespec t0;
	int timed_out;
	int interrupted;                /* SIGINT or SIGTERM: end, and clean up */
} P;

/* The recipient's outcome (queue_one.h): kept for the caller, and said as a step. */
static void
on_outcome(struct qmsg *m, size_t idx, enum outcome o, const char *dsn, const char *kind,
    const char *reply)
{
	struct probe_result *r = P.res;

	(void)m;
	(void)idx;
	r->have_outcome = 1;
	r->outcome = o;
	r->sent = o == OUTCOME_SENT;
	snprintf(r->dsn, sizeof r->dsn, "%s", dsn ? dsn : "");
	snprintf(r->kind, sizeof r->kind, "%s", kind ? kind : "");
	snprintf(r->text, sizeof r->text, "%s", reply ? reply : "");
	if (P.fn != NULL)
		P.fn(P.arg, NULL, TR_OUTCOME, r->text, elapsed());
}

/* ---- the steps ---- */

static double
elapsed(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - P.t0.tv_sec) + (double)(now.tv_nsec - P.t0.tv_nsec) / 1e9;
}

static void
on_trace(struct dsession *s, enum trace_ev ev, const char *text)
{
	struct probe_result *r = P.res;

	if (ev == TR_FAILED && !r->have_outcome) {	/* the recipient's outcome says more */
		snprintf(r->kind, sizeof r->kind, "%s", trouble_get(s->fail_kind)->name);
		snprintf(r->text, sizeof r->text, "%s", text);
	}
	if (ev == TR_SENT && s->msg == NULL && strcmp(text, "QUIT") == 0 && !s->failed)
		r->ready = 1;	/* --probe: ready for mail, and leaving */
	if (ev == TR_SENT && strncmp(text, "MAIL FROM:", 10) == 0)
		r->ready = 1;
	if (P.fn != NULL)
		P.fn(P.arg, s, ev, text, elapsed());
}

/* libevent's own messages (the resolver's: "Nameserver 10.0.0.1:53 has failed: ..."). */
static void
on_event_log(int severity, const char *msg)
{
	(void)severity;
	if (P.fn != NULL)
		P.fn(P.arg, NULL, TR_NOTE, msg, elapsed());
}

static void
on_limit(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	P.timed_out = 1;
	event_base_loopbreak(D->base);
}

static void
on_stop(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	(void)arg;
	P.interrupted = 1;
	event_base_loopbreak(D->base);
}

static void
on_chld(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	(void)arg;
	secret_reap();
}

/* The test message: plain, short, saying where it came from. */
static char *
compose(const struct config *conf, const struct smarthost_conf *sh, const char *from, const char *to,
    const char *id)
{
	char date[64];
	time_t now = time(NULL);
	struct tm tm;

	localtime_r(&now, &tm);
	strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S %z", &tm);
	return xasprintf("From: <%s>\r\nTo: <%s>\r\nSubject: mailrelay test message from %s\r\n"
	    "Date: %s\r\nMessage-ID: <%s.test@%s>\r\nMIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
	    "This message was sent by `mailrelay test` on %s through smarthost %s (%s:%u),\r\n"
	    "to check that mail from this machine reaches its recipients.\r\n",
	    from, to, conf->hostname, date, id, conf->hostname, conf->hostname, sh->name, sh->host,
	    sh->port);
}

/* Remove the run's spool: its files, and the files of its directories. */
static void
remove_tree(const char *dir)
{
	DIR *d = opendir(dir), *sd;
	struct dirent *de, *se;
	int fd;

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) == 0)
			continue;
		/* a directory of the spool's layout: flat */
		fd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd == -1 || (sd = fdopendir(fd)) == NULL) {
			if (fd != -1)
				close(fd);
			continue;
		}
		while ((se = readdir(sd)) != NULL)
			if (strcmp(se->d_name, ".") != 0 && strcmp(se->d_name, "..") != 0)
				unlinkat(dirfd(sd), se->d_name, 0);
		closedir(sd);
		unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR);
	}
	closedir(d);
	rmdir(dir);
}

int
probe_run(struct config *conf, size_t shidx, const char *from, const char *to, int send,
    unsigned limit, probe_step_fn fn, void *arg, struct probe_result *res, char *err, size_t errlen)
{
	char dir[] = "/tmp/mailrelay-test-XXXXXX", path[600];
	const struct smarthost_conf *sh = &conf->smarthosts[shidx];
	struct event *limit_ev = NULL, *chld_ev = NULL, *int_ev = NULL, *term_ev = NULL;
	struct timeval tv = { limit, 0 };
	struct timeval arrival;
	char *text = NULL;
	int rc = -1, fd;

	memset(&P, 0, sizeof P);
	memset(res, 0, sizeof *res);
	P.res = res;
	P.fn = fn;
	P.arg = arg;
	clock_gettime(CLOCK_MONOTONIC, &P.t0);
	signal(SIGPIPE, SIG_IGN);
	if (mkdtemp(dir) == NULL) {
		snprintf(err, errlen, "cannot make a directory in /tmp: %s", strerror(errno));
		return -1;
	}
	D->conf = conf;
	if ((D->rc = runconf_new(conf, err, errlen)) == NULL)
		goto out;
	D->conf = D->rc->conf;
	if (spool_open(&D->spool, dir, 1, err, errlen) == -1)
		goto out;
	event_set_log_callback(on_event_log);
	D->base = event_base_new();
	D->dns = evdns_base_new(D->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	if (D->dns == NULL) {
		D->dns = evdns_base_new(D->base, 0);
		evdns_base_load_hosts(D->dns, NULL);
	}
	if (oauth2_init(D->base, dir) == -1) {
		snprintf(err, errlen, "cannot start the HTTP client for OAuth2 token endpoints");
		goto out;
	}
	chld_ev = evsignal_new(D->base, SIGCHLD, on_chld, NULL);
	event_add(chld_ev, NULL);
	/* interrupted: the run's spool is removed all the same */
	int_ev = evsignal_new(D->base, SIGINT, on_stop, NULL);
	term_ev = evsignal_new(D->base, SIGTERM, on_stop, NULL);
	event_add(int_ev, NULL);
	event_add(term_ev, NULL);
	limit_ev = evtimer_new(D->base, on_limit, NULL);
	evtimer_add(limit_ev, &tv);
	session_trace_hook = on_trace;
	session_reuse = 0;	/* a test QUITs when its message is done */
	queue_one_outcome = on_outcome;
	delivery_init();

	if (send) {
		struct spool_env *e = &P.msg.env;
		gettimeofday(&arrival, NULL);
		spool_qid_new(&D->spool, e->id, &arrival);
		text = compose(D->conf, sh, from, to, e->id);
		snprintf(path, sizeof path, "%s.msg", e->id);
		fd = openat(D->spool.queuefd, path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd == -1 || write_all(fd, text, strlen(text)) == -1) {
			snprintf(err, errlen, "cannot write the test message in %s: %s", dir, strerror(errno));
			if (fd != -1)
				close(fd);
			goto out;
		}
		close(fd);
		e->arrival = arrival.tv_sec;
		e->arrival_usec = arrival.tv_usec;
		e->sender = xstrdup(from);
		e->size = strlen(text);
		e->uid = getuid();
		snprintf(e->via, sizeof e->via, "test");
		e->nrcpt = 1;
		e->rcpts = xcalloc(1, sizeof *e->rcpts);
		e->rcpts[0].addr = xstrdup(to);
		e->rcpts[0].orig = xstrdup(to);
		e->rcpts[0].last_reply = xstrdup("");
		queue_take(&P.msg);
		session_start(shidx, &P.msg);
	} else
		session_start(shidx, NULL);
	while (delivery_sessions() > 0 && !P.timed_out && !P.interrupted)
		event_base_loop(D->base, EVLOOP_ONCE);
	res->done = !P.timed_out && !P.interrupted;
	if (P.timed_out) {
		snprintf(res->kind, sizeof res->kind, "TIMEOUT");
		snprintf(res->text, sizeof res->text, "no end after %us", limit);
	} else if (P.interrupted) {
		res->interrupted = 1;
		res->have_outcome = 0;
		res->kind[0] = '\0';
		snprintf(res->text, sizeof res->text, "interrupted");
	}
	res->elapsed = elapsed();
	rc = 0;
out:
	session_trace_hook = NULL;
	event_set_log_callback(NULL);
	if (D->base != NULL) {
		delivery_shutdown();
		oauth2_shutdown();
		if (limit_ev != NULL)
			event_free(limit_ev);
		if (chld_ev != NULL)
			event_free(chld_ev);
		if (int_ev != NULL)
			event_free(int_ev);
		if (term_ev != NULL)
			event_free(term_ev);
		evdns_base_free(D->dns, 0);
		event_base_free(D->base);
	}
	if (P.msg.env.rcpts != NULL)
		spool_env_free(&P.msg.env);
	free(text);
	if (D->spool.dir != NULL)
		spool_close(&D->spool);
	if (D->rc != NULL)
		runconf_unref(D->rc);	/* frees conf too */
	else
		conf_free(conf);
	remove_tree(dir);
	memset(D, 0, sizeof *D);
	return rc;
}

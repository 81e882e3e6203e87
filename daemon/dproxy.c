/*
 * dproxy: mailrelayd's side of its delivery process (dchild.c, dlink.h).
 *
 * The sessions of delivery.h run in mailrelay-deliver; here each is a
 * `struct dsession` that stands for it (a proxy: its id, smarthost,
 * configuration, state as far as dispatch asks, the message it carries
 * and the relay its last report named).  Dispatch, the queue and the
 * failure table run here unchanged: session_start() and
 * session_resume() send the message over, and what the process reports
 * (outcomes, releases, a failed smarthost, an idle or ended session) is
 * handed to the same functions a session called in one process.
 *
 * The process starts with the first session needed and ends (its link
 * closed) once no session has been open for DPROXY_IDLE_MS, so that an
 * idle daemon maps no TLS library; unless it has work of its own (an
 * OAuth2 token it renews before expiry: LK_BUSY), which keeps it.  If it ends on its own (a crash, a
 * start that failed), what its sessions carried goes back to the queue
 * untried, one line says so, and no session starts for a back-off that
 * doubles from 1 s to 60 s while it keeps failing (dispatch sees every
 * smarthost busy meanwhile); the back-off ends with the first report of
 * a process that works.
 *
 * Also here: what mailrelayd needs of the modules that moved there: a
 * runconf that holds the configuration only (the TLS contexts and
 * secrets are the process's), OAuth2's "needs authorisation" state read
 * from its files in the spool, and the check of a configuration's TLS
 * files and secrets (dproxy_check()).
 */
#include "config.h"

#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <malloc.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "daemon.h"
#include "delivery.h"
#include "delivery_int.h"
#include "delivery_trouble.h"
#include "dispatch.h"
#include "dlink.h"
#include "dproxy.h"
#include "log.h"
#include "metrics.h"
#include "oauth2.h"
#include "oauth2_proto.h"
#include "oauth2_state.h"
#include "queue.h"
#include "runconf.h"
#include "xmalloc.h"

#ifndef MAILRELAY_DELIVER_PATH
#define MAILRELAY_DELIVER_PATH "/usr/libexec/mailrelay/mailrelay-deliver"
#endif

/* where it is installed (a string of its own: `make install`'s test looks for it) */
static const char deliver_path[] = MAILRELAY_DELIVER_PATH;

#define DPROXY_IDLE_MS 1000     /* no session this long: the process ends */
#define BACKOFF_MAX 60

static TAILQ_HEAD(, dsession) proxies = TAILQ_HEAD_INITIALIZER(proxies);
static unsigned nproxies;

static struct {
	pid_t pid;                  /* the running process (0: none), until reaped */
	struct bufferevent *bev;    /* its link; NULL: none open */
	int stopping;               /* we closed the link: its end is no failure */
	int busy;                   /* it has work of its own (LK_BUSY): it stays without sessions */
	struct event *idle_ev, *retry_ev;
	unsigned backoff;           /* seconds of the current back-off, 0: none */
	int held;                   /* in a back-off: no session starts */
	unsigned next_sid;
	char path[PATH_MAX];
} C;

/* ---- the process ----------------------------------------------------------- */

/* mailrelay-deliver beside this program (the build tree), else where it is installed. */
static void
find_path(void)
{
	char self[PATH_MAX];

	if (C.path[0] != '\0')
		return;
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);

	if (n > 0) {
		self[n] = '\0';
		snprintf(C.path, sizeof C.path, "%s/mailrelay-deliver", dirname(self));
		if (access(C.path, X_OK) == 0)
			return;
	}
	snprintf(C.path, sizeof C.path, "%s", deliver_path);
}

static void on_link_read(struct bufferevent *bev, void *arg);
static void on_link_event(struct bufferevent *bev, short what, void *arg);

/*
 * Run argv with linkfd as its descriptor 3 and errfd (when not -1) as its
 * stderr.  Between fork and exec only async-signal-safe calls: the
 * committer thread may hold any lock at the fork.
 */
static pid_t
spawn(char *const *argv, int linkfd, int errfd)
{
	char failed[PATH_MAX + 64];
	int n = snprintf(failed, sizeof failed, "mailrelayd: cannot run %s\n", argv[0]);
	pid_t parent = getpid(), pid = fork();

	if (pid != 0)
		return pid;
	/* the child: never outlives mailrelayd (a SIGKILL of it included) */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 || getppid() != parent)
		_exit(127);
	if (linkfd != -1 && (linkfd == 3 ? fcntl(3, F_SETFD, 0) : dup2(linkfd, 3)) == -1)
		_exit(127);
	if (errfd != -1 && dup2(errfd, 2) == -1)
		_exit(127);
	execv(argv[0], argv);
	if (n > 0)
		(void)!write(2, failed, (size_t)n < sizeof failed ? (size_t)n : sizeof failed - 1);
	_exit(127);
}

static void
build_argv(char **argv, char *level, size_t levellen, int check)
{
	size_t n = 0;

	argv[n++] = C.path;
	if (check)
		argv[n++] = (char *)"--check";
	else if (D->debug)
		argv[n++] = (char *)"-d";
	else {
		snprintf(level, levellen, "%d", log_get_level());
		argv[n++] = (char *)"-l";
		argv[n++] = level;
	}
	argv[n] = NULL;
}

/* The configuration c, as the delivery process is to run it (LK_CONFIG, LK_RELOAD). */
static void
config_fields(struct dl_out *f, const struct config *c)
{
	dl_str(f, c->path);
	if (c->text != NULL)
		dl_bytes(f, c->text, c->text_len);
	else
		dl_str(f, NULL);
}

static int
child_start(void)
{
	char *argv[8], level[16];
	struct dl_out f;
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
		log_warn("cannot start the delivery process: socketpair");
		return -1;
	}
	build_argv(argv, level, sizeof level, 0);
	C.pid = spawn(argv, sv[1], -1);
	close(sv[1]);
	if (C.pid == -1) {
		log_warn("cannot start the delivery process: fork");
		C.pid = 0;
		close(sv[0]);
		return -1;
	}
	evutil_make_socket_nonblocking(sv[0]);
	C.bev = bufferevent_socket_new(D->base, sv[0], BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(C.bev, on_link_read, NULL, on_link_event, NULL);
	bufferevent_enable(C.bev, EV_READ);
	dl_begin(&f, bufferevent_get_output(C.bev), LK_CONFIG);
	config_fields(&f, D->conf);
	dl_end(&f);
	C.stopping = 0;
	C.busy = 0;
	log_debug("delivery process started (pid %ld)", (long)C.pid);
	return 0;
}

static void
on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	C.held = 0;
	dispatch_kick();
}

/* The process failed: no session starts for the back-off. */
static void
hold(void)
{
	struct timeval tv;

	C.backoff = C.backoff == 0 ? 1 : C.backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : C.backoff * 2;
	C.held = 1;
	tv.tv_sec = C.backoff;
	tv.tv_usec = 0;
	evtimer_add(C.retry_ev, &tv);
}

static void
proxy_free(struct dsession *p)
{
	TAILQ_REMOVE(&proxies, p, entry);
	nproxies--;
	runconf_unref(p->rc);
	free(p);
}

/*
 * The link ended: what the sessions carried goes back to the queue
 * untried.  The back-off is set first, so that the messages given back
 * start no session (dispatch sees every smarthost busy) until it ends.
 */
static void
link_lost(const char *why)
{
	TAILQ_HEAD(, dsession) gone = TAILQ_HEAD_INITIALIZER(gone);
	struct dsession *p;
	unsigned lost = 0;

	bufferevent_free(C.bev);
	C.bev = NULL;
	TAILQ_CONCAT(&gone, &proxies, entry);
	nproxies = 0;
	if (!C.stopping) {
		TAILQ_FOREACH(p, &gone, entry)
			lost += p->msg != NULL;
		log_errx("the delivery process ended (%s)%s", why,
		    lost ? "; the messages it was sending are tried again" : "");
		if (!D->shutting_down) {
			hold();
			log_errx("no delivery for %us", C.backoff);
		}
	}
	while ((p = TAILQ_FIRST(&gone)) != NULL) {
		struct qmsg *m = p->msg, *ahead = p->ahead;
		TAILQ_REMOVE(&gone, p, entry);
		runconf_unref(p->rc);
		free(p);
		if (m != NULL)
			queue_release(m);
		if (ahead != NULL)
			queue_giveback(ahead);
	}
}

static void
stop_child(void)
{
	if (C.bev == NULL)
		return;
	C.stopping = 1;
	/*
	 * Its end of the link reads EOF, and it ends.  Now: the socket of a
	 * freed bufferevent is closed only when the loop runs again, and at a
	 * stop it does not.
	 */
	shutdown(bufferevent_getfd(C.bev), SHUT_RDWR);
	bufferevent_free(C.bev);
	C.bev = NULL;
}

/*
 * No session for DPROXY_IDLE_MS: the delivery process ends, and the
 * daemon, idle too, gives its free heap back (a burst leaves it free but
 * fragmented; glibc returns only its top by itself).
 */
static void
on_idle(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (nproxies == 0 && !C.busy) {
		stop_child();
		malloc_trim(0);
	}
}

void
dproxy_reap(void)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (pid != C.pid)
			continue;
		C.pid = 0;
		if (WIFSIGNALED(status) && WTERMSIG(status) != SIGKILL)
			log_errx("the delivery process was killed by signal %d", WTERMSIG(status));
		else if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
			log_errx("the delivery process exited with status %d", WEXITSTATUS(status));
	}
}

int
dproxy_check(const struct config *c, char *err, size_t errlen)
{
	char *argv[8], level[16], buf[1024];
	struct evbuffer *frame = evbuffer_new();
	struct dl_out f;
	int p[2], cf[2], status;
	ssize_t n;
	size_t len = 0;
	pid_t pid;

	find_path();
	build_argv(argv, level, sizeof level, 1);
	dl_begin(&f, frame, LK_CONFIG);
	config_fields(&f, c);
	dl_end(&f);
	if (pipe2(p, O_CLOEXEC) == -1 || pipe2(cf, O_CLOEXEC) == -1) {
		snprintf(err, errlen, "cannot check the configuration's TLS files and secrets: %s", strerror(errno));
		evbuffer_free(frame);
		return -1;
	}
	pid = spawn(argv, cf[0], p[1]);
	close(p[1]);
	close(cf[0]);
	if (pid == -1) {
		close(p[0]);
		close(cf[1]);
		evbuffer_free(frame);
		snprintf(err, errlen, "cannot check the configuration's TLS files and secrets: fork: %s",
		    strerror(errno));
		return -1;
	}
	/* the configuration in, then what it says: it reads all of the first before it writes */
	while (evbuffer_get_length(frame) > 0 && (evbuffer_write(frame, cf[1]) > 0 || errno == EINTR))
		;
	close(cf[1]);
	evbuffer_free(frame);
	while (len < sizeof buf - 1 && ((n = read(p[0], buf + len, sizeof buf - 1 - len)) > 0 ||
	    (n == -1 && errno == EINTR)))
		if (n > 0)
			len += (size_t)n;
	close(p[0]);
	while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	buf[len] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	if (buf[0] == '\0')
		snprintf(buf, sizeof buf, "%s failed (status %d)", C.path, status);
	snprintf(err, errlen, "%s", buf);
	return -1;
}

void
dproxy_reload(void)
{
	struct dl_out f;

	if (C.bev == NULL)
		return;
	dl_begin(&f, bufferevent_get_output(C.bev), LK_RELOAD);
	dl_u32(&f, (uint32_t)log_get_level());
	config_fields(&f, D->conf);
	dl_end(&f);
}

/* ---- the sessions as dispatch sees them (delivery_int.h) -------------------- */

void
delivery_init(void)
{
	find_path();
	C.idle_ev = evtimer_new(D->base, on_idle, NULL);
	C.retry_ev = evtimer_new(D->base, on_retry, NULL);
	dispatch_init();
}

void
delivery_shutdown(void)
{
	struct dsession *p;
	int i;

	dispatch_shutdown();
	/* Messages go back untouched: no attempt is counted for an aborted session. */
	while ((p = TAILQ_FIRST(&proxies)) != NULL) {
		if (p->msg != NULL)
			queue_untake(p->msg);
		if (p->ahead != NULL)
			queue_untake(p->ahead);
		proxy_free(p);
	}
	stop_child();
	/* no delivery process outlives the daemon: it ends at the link's end, at once */
	for (i = 0; C.pid != 0 && i < 200; i++) {
		dproxy_reap();
		if (C.pid != 0)
			usleep(10000);
	}
	if (C.pid != 0) {
		kill(C.pid, SIGKILL);
		while (waitpid(C.pid, NULL, 0) == -1 && errno == EINTR)
			;
		C.pid = 0;
	}
	if (C.idle_ev != NULL)
		event_free(C.idle_ev);
	if (C.retry_ev != NULL)
		event_free(C.retry_ev);
	C.idle_ev = C.retry_ev = NULL;
}

unsigned
delivery_sessions(void)
{
	return nproxies;
}

unsigned
session_count(size_t shidx)
{
	struct dsession *p;
	unsigned n = 0;

	if (C.held)
		return D->conf->concurrency;	/* every smarthost busy until the back-off ends */
	TAILQ_FOREACH(p, &proxies, entry)
		if (p->rc == D->rc && p->shidx == shidx)
			n++;
	return n;
}

struct dsession *
session_idle(size_t shidx)
{
	struct dsession *p;

	if (C.held)
		return NULL;
	TAILQ_FOREACH(p, &proxies, entry)
		if (p->state == DS_IDLE && p->rc == D->rc && p->shidx == shidx)
			return p;
	return NULL;
}

void
session_relay_info(struct dsession *p, struct relay_info *ri)
{
	ri->relay = p->relay;
	ri->tls = p->tlsv.version;
	ri->verify = p->tls_done ? p->tlsv.verify : NULL;
	ri->dsn = p->caps.dsn;
	ri->name = p->sh->name;
}

/* Send m's envelope in a LK_START, LK_RESUME or LK_AHEAD; -1 when it cannot be rendered. */
static int
send_message(struct dsession *p, enum lk_type t, struct qmsg *m)
{
	size_t len;
	char *text = spool_env_render(&m->env, &len);
	struct dl_out f;

	if (text == NULL)
		return -1;
	dl_begin(&f, bufferevent_get_output(C.bev), t);
	dl_u32(&f, p->sid);
	if (t == LK_START) {
		dl_u32(&f, (uint32_t)p->shidx);
		dl_str(&f, p->sh->name);
	}
	dl_bytes(&f, text, len);
	dl_end(&f);
	free(text);
	return 0;
}

void
session_start(size_t shidx, struct qmsg *m)
{
	struct dsession *p;

	if (C.bev == NULL && child_start() == -1) {
		hold();
		queue_release(m);	/* untried: after the back-off */
		return;
	}
	if (C.idle_ev != NULL)
		evtimer_del(C.idle_ev);
	p = xcalloc(1, sizeof *p);
	if (++C.next_sid == 0)
		C.next_sid = 1;
	p->sid = C.next_sid;
	p->rc = runconf_ref(D->rc);
	p->shidx = shidx;
	p->sh = &p->rc->conf->smarthosts[shidx];
	p->state = DS_CONNECT;
	p->body_fd = -1;
	snprintf(p->relay, sizeof p->relay, "none");
	snprintf(p->tlsv.version, sizeof p->tlsv.version, "none");
	TAILQ_INSERT_TAIL(&proxies, p, entry);
	nproxies++;
	p->msg = m;
	if (send_message(p, LK_START, m) == -1) {
		p->msg = NULL;
		queue_release(m);
		proxy_free(p);
	}
}

/*
 * A session that goes on to another message on its connection gets the
 * one after it too, ahead (LK_AHEAD): the process starts it as soon as it
 * is done with this one, without waiting for us, and says so (LK_TAKEN);
 * the next goes ahead only then.  Measured on a queue of 20,000 (bench's
 * drain), a round trip between the processes per message cost 14% of the
 * rate.  A new session's first message is its own: a burst still opens
 * its connections side by side.
 */
static void
give_ahead(struct dsession *p)
{
	struct qmsg *m;

	if (p->msg == NULL || p->ahead != NULL || p->state == DS_QUIT || p->rc != D->rc ||
	    D->shutting_down || C.held || C.bev == NULL || (m = dispatch_next(p)) == NULL)
		return;
	p->ahead = m;
	if (send_message(p, LK_AHEAD, m) == -1) {
		p->ahead = NULL;
		queue_release(m);
	}
}

void
session_resume(struct dsession *p, struct qmsg *m)
{
	p->msg = m;
	p->state = DS_ENVELOPE;
	if (send_message(p, LK_RESUME, m) == -1) {
		p->msg = NULL;
		queue_release(m);
		return;
	}
	give_ahead(p);
}

/* ---- what the process reports ----------------------------------------------- */

static void
idle_arm(void)
{
	struct timeval tv = { DPROXY_IDLE_MS / 1000, DPROXY_IDLE_MS % 1000 * 1000 };

	if (C.idle_ev != NULL)
		evtimer_add(C.idle_ev, &tv);
}

static struct dsession *
proxy_find(uint32_t sid)
{
	struct dsession *p;

	TAILQ_FOREACH(p, &proxies, entry)
		if (p->sid == sid)
			return p;
	return NULL;
}

/* The relay fields of a frame into p (for the outcome lines). */
static void
take_relay(struct dl_in *m, struct dsession *p)
{
	const char *relay = dl_get_str(m), *tls = dl_get_str(m), *verify = dl_get_str(m);
	uint32_t dsn = dl_get_u32(m);

	if (m->bad || relay == NULL || tls == NULL) {
		m->bad = 1;
		return;
	}
	snprintf(p->relay, sizeof p->relay, "%s", relay);
	snprintf(p->tlsv.version, sizeof p->tlsv.version, "%s", tls);
	p->tls_done = verify != NULL;
	snprintf(p->tlsv.verify, sizeof p->tlsv.verify, "%s", verify ? verify : "");
	p->caps.dsn = dsn != 0;
}

static int
known_smarthost(const char *name)
{
	size_t i;

	for (i = 0; name != NULL && i < D->conf->nsmarthosts; i++)
		if (strcmp(D->conf->smarthosts[i].name, name) == 0)
			return 1;
	return 0;
}

/* After a session's report: the next message, or QUIT, as session_next_message() decided. */
static void
went_idle(struct dsession *p)
{
	struct qmsg *m;
	struct dl_out f;

	p->state = DS_IDLE;
	if (p->rc == D->rc && !D->shutting_down && (m = dispatch_next(p)) != NULL) {
		session_resume(p, m);
		return;
	}
	if (p->rc == D->rc && dispatch_may_idle(p))
		return;
	p->state = DS_QUIT;
	dl_begin(&f, bufferevent_get_output(C.bev), LK_QUIT);
	dl_u32(&f, p->sid);
	dl_end(&f);
}

/* One frame; -1 when it does not parse or names what is not there. */
static int
on_frame(struct dl_in *m)
{
	uint32_t sid, rcpt, kind, cls, state, prio, code;
	const char *qid, *status, *text, *name;
	struct dsession *p = NULL;
	struct qmsg *msg;

	if (m->type != LK_LOG && m->type != LK_METRIC_REPLY && m->type != LK_METRIC_TLS &&
	    m->type != LK_BUSY) {
		sid = dl_get_u32(m);
		p = proxy_find(sid);
		if (p == NULL)
			return m->type == LK_REFUSED ? 0 : -1;	/* a refusal may cross the end */
	}
	switch (m->type) {
	case LK_LOG:
		prio = dl_get_u32(m);
		qid = dl_get_str(m);
		status = dl_get_str(m);
		text = dl_get_str(m);
		if (!dl_done(m) || text == NULL || prio > LOG_DEBUG)
			return -1;
		log_qid((int)prio, qid, status, "%s", text);
		return 0;
	case LK_RECORD:
		rcpt = dl_get_u32(m);
		kind = dl_get_u32(m);
		cls = dl_get_u32(m);
		text = dl_get_str(m);
		take_relay(m, p);
		if (!dl_done(m) || p->msg == NULL || rcpt >= p->msg->env.nrcpt || kind >= TK_COUNT || cls > 5)
			return -1;
		C.backoff = 0;	/* it works */
		trouble_record(p, p->msg, rcpt, (enum trouble_kind)kind, (int)cls, text);
		return 0;
	case LK_COUNT:
		kind = dl_get_u32(m);
		state = dl_get_u32(m);
		if (!dl_done(m) || kind >= TK_COUNT || state > DS_QUIT)
			return -1;
		{
			enum dstate was = p->state;
			p->state = (enum dstate)state;	/* the counter goes by the step that failed */
			trouble_count(p, (enum trouble_kind)kind);
			p->state = was;
		}
		return 0;
	case LK_SH_FAILED:
		kind = dl_get_u32(m);
		text = dl_get_str(m);
		if (!dl_done(m) || kind >= TK_COUNT)
			return -1;
		trouble_smarthost_failed(p, (enum trouble_kind)kind, text);
		return 0;
	case LK_SH_OK:
		if (!dl_done(m))
			return -1;
		C.backoff = 0;
		trouble_smarthost_ok(p);
		return 0;
	case LK_FAILOVER:
		kind = dl_get_u32(m);
		text = dl_get_str(m);
		take_relay(m, p);
		if (!dl_done(m) || kind >= TK_COUNT)
			return -1;
		msg = p->msg;
		p->msg = NULL;
		p->state = DS_QUIT;
		if (p->ahead != NULL) {
			queue_giveback(p->ahead);	/* ready again: it fails over with the others */
			p->ahead = NULL;
		}
		dispatch_smarthost_failed(p, msg, (enum trouble_kind)kind, text);
		return 0;
	case LK_RELEASE:
		if (!dl_done(m) || p->msg == NULL)
			return -1;
		msg = p->msg;
		p->msg = NULL;
		queue_release(msg);
		return 0;
	case LK_TAKEN:
		if (!dl_done(m) || p->msg != NULL || p->ahead == NULL)
			return -1;
		p->msg = p->ahead;
		p->ahead = NULL;
		give_ahead(p);
		return 0;
	case LK_CHECKPOINT:
		if (!dl_done(m) || p->msg == NULL)
			return -1;
		queue_checkpoint(p->msg);
		return 0;
	case LK_DAMAGED:
		text = dl_get_str(m);
		if (!dl_done(m) || p->msg == NULL || text == NULL)
			return -1;
		queue_damaged(p->msg, text);
		return 0;
	case LK_IDLE:
		if (!dl_done(m) || p->msg != NULL)
			return -1;
		/* with one given ahead: it went idle before that came, and takes it when it does */
		if (p->ahead == NULL)
			went_idle(p);
		return 0;
	case LK_REFUSED:
		if (!dl_done(m))
			return -1;
		/* untried, whichever of the two it was: the next connection takes it */
		p->state = DS_QUIT;
		if ((msg = p->ahead) != NULL) {
			p->ahead = NULL;
			queue_giveback(msg);
		} else if ((msg = p->msg) != NULL) {
			p->msg = NULL;
			queue_release(msg);
		}
		dispatch_kick();
		return 0;
	case LK_END:
		if (!dl_done(m))
			return -1;
		if ((msg = p->msg) != NULL) {
			p->msg = NULL;
			queue_release(msg);	/* given after the session had ended: untried */
		}
		if ((msg = p->ahead) != NULL) {
			p->ahead = NULL;
			queue_giveback(msg);
		}
		proxy_free(p);
		if (nproxies == 0)
			idle_arm();
		if (!D->shutting_down)
			dispatch_kick();
		return 0;
	case LK_METRIC_REPLY:
		name = dl_get_str(m);
		code = dl_get_u32(m);
		if (!dl_done(m))
			return -1;
		if (known_smarthost(name))
			metrics_reply(name, (int)code);
		return 0;
	case LK_BUSY:
		code = dl_get_u32(m);
		if (!dl_done(m) || code > 1)
			return -1;
		C.busy = (int)code;
		if (!C.busy && nproxies == 0)
			idle_arm();
		return 0;
	case LK_METRIC_TLS:
		name = dl_get_str(m);
		code = dl_get_u32(m);
		if (!dl_done(m) || code > METRICS_TLS_UNTRUSTED)
			return -1;
		if (known_smarthost(name))
			metrics_tls(name, (enum metrics_tls)code);
		return 0;
	default:
		return -1;
	}
}

static void
on_link_read(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	struct dl_in m;
	int r;

	(void)arg;
	while (C.bev == bev && (r = dl_next(in, LK_FRAME_UP_MAX, &m)) == 1) {
		int rc = on_frame(&m);
		dl_in_free(&m);
		if (rc == -1) {
			C.stopping = 0;
			link_lost("it sent a frame that does not parse");
			return;
		}
	}
	if (C.bev == bev && r == -1)
		link_lost("it sent a frame that does not parse");
}

static void
on_link_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	(void)arg;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		link_lost(what & BEV_EVENT_EOF ? "its link closed" : "its link broke");
}

/* ---- the configuration, without TLS contexts and secrets (runconf.h) --------- */

struct runconf *
runconf_new(struct config *conf, char *errbuf, size_t errlen)
{
	struct runconf *rc = xcalloc(1, sizeof *rc);

	(void)errbuf;
	(void)errlen;
	rc->conf = conf;
	rc->refs = 1;
	return rc;
}

struct runconf *
runconf_ref(struct runconf *rc)
{
	rc->refs++;
	return rc;
}

void
runconf_unref(struct runconf *rc)
{
	if (rc == NULL || --rc->refs > 0)
		return;
	conf_free(rc->conf);
	free(rc);
}

/* ---- OAuth2's "needs authorisation", from its files (oauth2.h) -------------- */

/* The last sentence read per smarthost name, kept for the pointer oauth2_status() returns. */
static struct ostate {
	char *name, *why;
	struct ostate *next;
} *ostates;

const char *
oauth2_status(const char *name)
{
	struct ostate *o;
	time_t since;

	for (o = ostates; o != NULL && strcmp(o->name, name) != 0; o = o->next)
		;
	if (o == NULL) {
		o = xcalloc(1, sizeof *o);
		o->name = xstrdup(name);
		o->next = ostates;
		ostates = o;
	}
	free(o->why);
	o->why = oauth2_state_read(D->spool.dir, name, &since);
	return o->why;
}

void
dproxy_free(void)
{
	struct ostate *o;

	while ((o = ostates) != NULL) {
		ostates = o->next;
		free(o->name);
		free(o->why);
		free(o);
	}
}

/*
 * mailrelayd: start-up, privilege drop, signals, reload and shutdown.
 *
 * Order at start: config, spool (created and owned by `user`), listeners
 * bound (or taken from systemd), privileges dropped, log_file opened,
 * detached (unless -f), committer thread, queue scanned, event loop.
 * Log lines: stderr stamped with the time, or the journal when stderr is
 * the journal; once detached journald or syslog; log_file besides.
 * Signals are libevent signal events, all here: SIGTERM/SIGINT shut down
 * cleanly (exit 0), SIGHUP reloads (a bad config is refused and the old
 * one stays) and reopens log_file, SIGUSR1 makes every queued message due now.
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include <event2/event.h>

#include "bounce.h"
#include "commit.h"
#include "control.h"
#include "daemon.h"
#include "delivery.h"
#include "enqueue.h"
#include "dispatch.h"
#include "dproxy.h"
#include "listener.h"
#include "local.h"
#include "metrics.h"
#include "pickup.h"
#include "runconf.h"
#include "shstate.h"
#include "log.h"
#include "queue.h"
#include "ratekeep.h"
#include "smtpd.h"
#include "sysd.h"
#include "xmalloc.h"

#define SYSLOG_SOCKET "/dev/log"	/* where syslog(3) sends */
#define SHUTDOWN_GRACE 10	/* seconds to wait for messages being committed */

static struct daemon daemon_state;
struct daemon *D = &daemon_state;

static struct event *ev_term, *ev_int, *ev_hup, *ev_usr1, *ev_chld, *ev_shutdown_tick;
static int shutdown_ticks;
static struct event *ev_status;

#define STATUS_SECS 1	/* STATUS= at most this often */

/*
 * STATUS= for `systemctl status`: one line on the queue.  The queue is
 * sampled on a timer rather than told about each change, which bounds the
 * notifications to one per STATUS_SECS however busy the queue is; a line
 * equal to the last one sent is not sent again.
 */
static void
on_status(evutil_socket_t fd, short what, void *arg)
{
	static char last[256];
	char line[256];
	struct queue_stats st;

	(void)fd;
	(void)what;
	(void)arg;
	queue_stats(&st);
	snprintf(line, sizeof line, "%zu queued: %zu being delivered, %zu deferred, %zu held%s",
	    st.messages, st.active, st.deferred, st.held, st.damaged ? ", some damaged" : "");
	if (D->shutting_down || strcmp(line, last) == 0)
		return;
	strlcpy_mr(last, line, sizeof last);
	sysd_status("%s", line);
}

static void
usage(int code)
{
	fprintf(code ? stderr : stdout,
	    "usage: mailrelayd [-c FILE] [-f|--foreground] [-d|--debug] [--version]\n");
	exit(code);
}

static int
syslog_level(enum log_level_conf l)
{
	switch (l) {
	case CONF_LOG_ERROR: return LOG_ERR;
	case CONF_LOG_WARNING: return LOG_WARNING;
	case CONF_LOG_INFO: return LOG_INFO;
	case CONF_LOG_DEBUG: return LOG_DEBUG;
	}
	return LOG_INFO;
}

static void
finish_shutdown(void)
{
	if (ev_shutdown_tick != NULL)
		event_del(ev_shutdown_tick);
	event_base_loopbreak(D->base);
}

static void
on_shutdown_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (smtpd_sessions() == 0 || ++shutdown_ticks > SHUTDOWN_GRACE * 10)
		finish_shutdown();
}

static void
on_term(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	(void)arg;
	if (D->shutting_down)
		return;
	log_info("received %s, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
	D->shutting_down = 1;
	sysd_stopping();
	listeners_close();
	control_close();
	delivery_shutdown();
	smtpd_shutdown(0);
	struct timeval tv = { .tv_sec = 0, .tv_usec = 100000 };
	ev_shutdown_tick = event_new(D->base, -1, EV_PERSIST, on_shutdown_tick, NULL);
	event_add(ev_shutdown_tick, &tv);
	on_shutdown_tick(-1, 0, NULL);
}

static int
listen_equal(const struct config *a, const struct config *b)
{
	size_t i;

	if (a->nlisten != b->nlisten)
		return 0;
	for (i = 0; i < a->nlisten; i++) {
		const struct listen_conf *x = &a->listen[i], *y = &b->listen[i];
		if (x->kind != y->kind)
			return 0;
		if (x->kind == LISTEN_UNIX ? strcmp(x->path, y->path) != 0
		    : strcmp(x->host, y->host) != 0 || strcmp(x->port, y->port) != 0)
			return 0;
	}
	return 1;
}

/*
 * log_file, opened again on every SIGHUP (that is how logrotate lets go of
 * a rotated file), as the user the daemon runs as; a file that cannot be
 * opened leaves the one open before in use.
 */
static void
reopen_log_file(const struct config *conf)
{
	char err[1024];

	if (log_file_open(conf->log_file, err, sizeof err) == -1)
		log_errx("%s; the log file open before stays in use", err);
}

/* The queue's gauges for metrics.c, as `mailrelay status` counts them. */
static void
queue_gauges(struct metrics_queue *g)
{
	struct queue_stats q;
	time_t now = time(NULL);

	queue_stats(&q);
	g->active = q.active;
	g->deferred = q.deferred;
	g->held = q.held;
	g->waiting = q.waiting;
	g->damaged = q.damaged;
	g->oldest_age = q.oldest && now > q.oldest ? (long long)(now - q.oldest) : 0;
}

/* The same metrics_listen (both unset, or the same host and port)? */
static int
metrics_listen_equal(const struct config *a, const struct config *b)
{
	const struct listen_conf *x = &a->metrics_listen, *y = &b->metrics_listen;

	if (x->host == NULL || y->host == NULL)
		return x->host == y->host;
	return strcmp(x->host, y->host) == 0 && strcmp(x->port, y->port) == 0;
}

/* The running configuration was loaded from D->conf now: note when, and the file's mtime. */
static void
conf_loaded_now(void)
{
	struct stat st;

	D->conf_loaded = time(NULL);
	D->conf_mtime = D->conf->path != NULL && stat(D->conf->path, &st) == 0 ? st.st_mtime : 0;
	D->reload_refused = 0;
	D->reload_refused_why[0] = '\0';
}

/* A reload was refused: `mailrelay status` says so until a reload works. */
static void
reload_refused(const char *why)
{
	D->reload_refused = time(NULL);
	snprintf(D->reload_refused_why, sizeof D->reload_refused_why, "%s", why);
	log_errx("reload refused: %s; keeping the current configuration", why);
}

static void
on_hup(evutil_socket_t sig, short what, void *arg)
{
	char err[1024];
	struct config *nc;

	(void)sig;
	(void)what;
	(void)arg;
	sysd_reloading();
	nc = conf_load(D->conf_path, err, sizeof err);
	if (nc == NULL) {
		reopen_log_file(D->conf);
		reload_refused(err);
		sysd_ready();
		return;
	}
	/* the TLS files and secrets, as the delivery process will load them */
	struct runconf *nrc = dproxy_check(nc, err, sizeof err) == 0 ? runconf_new(nc, err, sizeof err) : NULL;
	if (nrc == NULL) {
		reopen_log_file(D->conf);
		reload_refused(err);
		conf_free(nc);
		sysd_ready();
		return;
	}
	if (!listen_equal(nc, D->conf))
		log_warnx("reload: changes to listen take effect at the next restart");
	if (strcmp(nc->spool_dir, D->conf->spool_dir) != 0)
		log_warnx("reload: changes to spool_dir take effect at the next restart");
	if (!metrics_listen_equal(nc, D->conf))
		log_warnx("reload: changes to metrics_listen take effect at the next restart");
	runconf_unref(D->rc);	/* sessions still running keep the old one alive */
	D->rc = nrc;
	D->conf = nc;
	if (!D->debug)
		log_set_level(syslog_level(nc->log_level));
	reopen_log_file(nc);
	conf_loaded_now();
	log_info("configuration reloaded from %s", nc->path ? nc->path : "built-in defaults");
	local_load();
	metrics_config(nc);
	dproxy_reload();
	sysd_ready();
	dispatch_kick();
}

static void
on_usr1(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	(void)arg;
	log_info("received SIGUSR1: flushing the queue");
	queue_flush_all();
}

static void
on_chld(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	(void)arg;
	dproxy_reap();
}

static void
drop_privileges(void)
{
	struct passwd *pw;

	if (geteuid() != 0)
		return;		/* started as a user: run as that user */
	errno = 0;
	pw = getpwnam(D->conf->user);
	if (pw == NULL)
		log_fatalx_code(EX_NOUSER, "user %s: %s", D->conf->user,
		    errno ? strerror(errno) : "no such user (create it or set `user`)");
	if (pw->pw_uid == 0)
		return;
	if (fchown(D->spool.dirfd, pw->pw_uid, pw->pw_gid) == -1 ||
	    fchown(D->spool.queuefd, pw->pw_uid, pw->pw_gid) == -1 ||
	    fchown(D->spool.tmpfd, pw->pw_uid, pw->pw_gid) == -1 ||
	    fchownat(D->spool.dirfd, "maildrop", pw->pw_uid, pw->pw_gid, AT_SYMLINK_NOFOLLOW) == -1)
		log_fatalx_code(EX_OSERR, "%s: cannot give the spool to %s: %s", D->spool.dir,
		    D->conf->user, strerror(errno));
	if (setgroups(0, NULL) == -1 || setgid(pw->pw_gid) == -1 ||
	    setuid(pw->pw_uid) == -1)
		log_fatalx_code(EX_OSERR, "cannot drop privileges to %s: %s", D->conf->user, strerror(errno));
	if (setuid(0) != -1)
		log_fatalx_code(EX_SOFTWARE, "privileges could be regained after dropping them");
	log_debug("running as %s (uid %lu)", D->conf->user, (unsigned long)pw->pw_uid);
}

static void
daemonize(void)
{
	pid_t pid = fork();
	int fd;

	if (pid == -1)
		log_fatalx_code(EX_OSERR, "fork: %s", strerror(errno));
	if (pid > 0)
		_exit(0);
	setsid();
	if ((fd = open("/dev/null", O_RDWR)) != -1) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "foreground", no_argument, NULL, 'f' },
		{ "debug", no_argument, NULL, 'd' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char err[1024];
	int ch;

	umask(077);
	while ((ch = getopt_long(argc, argv, "c:fdh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			D->conf_path = optarg;
			break;
		case 'f':
			D->foreground = 1;
			break;
		case 'd':
			D->debug = 1;
			break;
		case 'V':
			printf("mailrelayd %s\n", PACKAGE_VERSION);
			return 0;
		case 'h':
			usage(0);
			break;
		default:
			usage(EX_USAGE);
		}
	}
	if (optind != argc)
		usage(EX_USAGE);

	log_init("mailrelayd", LOG_TO_STDERR, LOG_INFO);
	signal(SIGPIPE, SIG_IGN);	/* before the check below writes to its process */
	D->conf = conf_load(D->conf_path, err, sizeof err);
	if (D->conf == NULL) {
		fprintf(stderr, "mailrelayd: %s\n", err);
		return EX_CONFIG;
	}
	/*
	 * The delivery process loads the TLS files, keys and secrets: a check
	 * that they do, now, as root, so that a start with a bad one fails
	 * here; again below as the daemon's user, who starts that process.
	 */
	if (dproxy_check(D->conf, err, sizeof err) == -1 || (D->rc = runconf_new(D->conf, err, sizeof err)) == NULL) {
		fprintf(stderr, "mailrelayd: %s\n", err);
		conf_free(D->conf);
		return EX_CONFIG;
	}
	conf_loaded_now();
	/*
	 * Until the daemon has detached, errors go to stderr too, so that a
	 * failed start is never silent; stamped with the time unless stderr
	 * is the journal (JOURNAL_STREAM names it), which gets structured
	 * fields through the native protocol instead.
	 */
	int level = D->debug ? LOG_DEBUG : syslog_level(D->conf->log_level);
	int to_journal = sysd_stderr_is_journal();
	log_init("mailrelayd", LOG_TO_STDERR, level);
	if (to_journal) {
		log_init("mailrelayd", LOG_TO_SYSLOG, level);
		sysd_log_init();
	} else
		log_set_timestamps(1);

	if (spool_open(&D->spool, D->conf->spool_dir, 1, err, sizeof err) == -1)
		log_fatalx_code(EX_CANTCREAT, "%s", err);
	spool_clean_tmp(&D->spool);

	D->base = event_base_new();
	if (D->base == NULL)
		log_fatalx_code(EX_OSERR, "cannot create the event loop");
	if (listeners_open(D->conf, err, sizeof err) == -1)
		log_fatalx_code(EX_OSERR, "%s", err);
	/* like the listeners: bound before the privileges go, its failure said on stderr */
	metrics_on_queue(queue_gauges);
	if (metrics_listen_start(D->conf, err, sizeof err) == -1)
		log_fatalx_code(EX_OSERR, "%s", err);
	if (control_open(D->conf, err, sizeof err) == -1)
		log_warnx("%s: `mailrelay flush` and `sendmail -q` cannot reach the daemon", err);
	uid_t was = geteuid();
	drop_privileges();
	if (geteuid() != was && dproxy_check(D->conf, err, sizeof err) == -1)
		log_fatalx_code(EX_CONFIG, "%s (as user %s, who runs the delivery process: make the file "
		    "readable by it, e.g. mode 0640, group %s)", err, D->conf->user, D->conf->user);
	/* As the daemon's user, as every reopen on SIGHUP will be. */
	if (log_file_open(D->conf->log_file, err, sizeof err) == -1)
		log_fatalx_code(EX_CANTCREAT, "%s", err);
	if (!D->foreground) {
		/*
		 * Detached, stderr is /dev/null: journald (structured fields)
		 * when its socket is there, else syslog.  With neither and no
		 * log_file, every later line would vanish: say so while stderr
		 * is still seen.
		 */
		int journal = !to_journal && sysd_journal_available();
		if (!to_journal && !journal && D->conf->log_file == NULL &&
		    access(SYSLOG_SOCKET, W_OK) == -1)
			log_warnx("neither journald (/run/systemd/journal/socket) nor syslog (%s) "
			    "can be reached and no log_file is set: log lines after start-up are lost; "
			    "set log_file, run with -f and keep stderr, or start a syslog daemon",
			    SYSLOG_SOCKET);
		daemonize();
		if (!to_journal) {
			log_set_timestamps(0);
			log_init("mailrelayd", LOG_TO_SYSLOG, level);
			if (journal)
				sysd_log_init();
		}
	}
	if (event_reinit(D->base) == -1)
		log_fatalx_code(EX_OSERR, "event_reinit failed");

	if (commit_start(D->base, &D->spool) == -1)
		log_fatalx_code(EX_OSERR, "cannot start the spool committer: %s", strerror(errno));
	queue_init();
	enqueue_init(queue_add);
	delivery_init();

	ev_term = evsignal_new(D->base, SIGTERM, on_term, NULL);
	ev_int = evsignal_new(D->base, SIGINT, on_term, NULL);
	ev_hup = evsignal_new(D->base, SIGHUP, on_hup, NULL);
	ev_usr1 = evsignal_new(D->base, SIGUSR1, on_usr1, NULL);
	ev_chld = evsignal_new(D->base, SIGCHLD, on_chld, NULL);
	event_add(ev_chld, NULL);
	event_add(ev_term, NULL);
	event_add(ev_int, NULL);
	event_add(ev_hup, NULL);
	event_add(ev_usr1, NULL);

	D->started = time(NULL);
	local_load();
	ratekeep_load();
	queue_load();
	pickup_start();
	if (D->conf->nsmarthosts == 0)
		log_warnx("no smarthost is configured: mail is accepted and kept in the queue");
	if (conf_hostname_dotless(D->conf))
		log_warnx("hostname \"%s\" has no dot: set hostname in %s or write the mail name "
		    "to /etc/mailname", D->conf->hostname, D->conf->path ? D->conf->path : conf_default_path());
	log_info("mailrelayd %s started, spool %s, %zu queued", PACKAGE_VERSION, D->spool.dir, queue_count());
	sysd_watchdog_start(D->base);
	if (sysd_notifying()) {
		struct timeval tv = { .tv_sec = STATUS_SECS, .tv_usec = 0 };
		on_status(-1, 0, NULL);
		ev_status = event_new(D->base, -1, EV_PERSIST, on_status, NULL);
		event_add(ev_status, &tv);
	}
	sysd_ready();

	event_base_dispatch(D->base);

	/* Shutdown: every commit finishes (and answers) before we go. */
	commit_stop();
	queue_save_unreached();
	control_close();
	metrics_stop();
	pickup_stop();
	smtpd_shutdown(1);
	delivery_shutdown();
	queue_free_all();
	bounce_shutdown();
	sysd_watchdog_stop();
	if (ev_status != NULL)
		event_free(ev_status);
	if (ev_shutdown_tick != NULL)
		event_free(ev_shutdown_tick);
	event_free(ev_term);
	event_free(ev_int);
	event_free(ev_hup);
	event_free(ev_usr1);
	event_free(ev_chld);
	listeners_close();
	event_base_free(D->base);
	spool_close(&D->spool);
	log_info("stopped");
	runconf_unref(D->rc);
	shstate_free_all();
	dproxy_free();
	local_free();
	return 0;
}

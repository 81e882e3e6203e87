/*
 * secret: see secret.h.
 */
#include "config.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "log.h"
#include "secret.h"
#include "util.h"
#include "xmalloc.h"

#define SECRET_MAX 8192

struct secret_job {
	pid_t pid;                  /* 0 once reaped */
	int status;                 /* valid when exited */
	int exited;
	struct secret_job *next;    /* running jobs, for the reaper */
	int fd;
	struct event *ev, *timer;
	secret_cb cb;
	void *arg;
	unsigned timeout;
	size_t len;
	char buf[SECRET_MAX + 1];
};

static struct secret_job *jobs;

static void
job_free(struct secret_job *j)
{
	struct secret_job **pp;

	for (pp = &jobs; *pp != NULL; pp = &(*pp)->next)
		if (*pp == j) {
			*pp = j->next;
			break;
		}
	if (j->pid > 0) {
		/* the whole process group: the shell and whatever it started */
		kill(-j->pid, SIGKILL);
		kill(j->pid, SIGKILL);
		/* reaped by the SIGCHLD handler */
	}
	if (j->ev)
		event_free(j->ev);
	if (j->timer)
		event_free(j->timer);
	if (j->fd != -1)
		close(j->fd);
	OPENSSL_cleanse(j->buf, sizeof j->buf);
	free(j);
}

static void
job_done(struct secret_job *j, const char *secret, const char *err)
{
	secret_cb cb = j->cb;
	void *arg = j->arg;
	char copy[SECRET_MAX + 1] = "";

	if (secret)
		strlcpy_mr(copy, secret, sizeof copy);
	job_free(j);
	cb(secret ? copy : NULL, err, arg);
	OPENSSL_cleanse(copy, sizeof copy);
}

static void
on_output(evutil_socket_t fd, short what, void *arg)
{
	struct secret_job *j = arg;
	char err[200];
	ssize_t n;

	(void)what;
	n = read(fd, j->buf + j->len, SECRET_MAX - j->len);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n > 0) {
		j->len += (size_t)n;
		j->buf[j->len] = '\0';
		if (strchr(j->buf, '\n') == NULL && j->len < SECRET_MAX)
			return;		/* the first line is not complete yet */
	}
	j->buf[strcspn(j->buf, "\r\n")] = '\0';
	if (j->buf[0] == '\0') {
		int st = 0;
		if (j->pid > 0 && waitpid(j->pid, &st, WNOHANG) == j->pid) {	/* never block the loop */
			j->pid = 0;
			j->exited = 1;
			j->status = st;
		}
		st = j->status;
		if (j->exited && WIFEXITED(st) && WEXITSTATUS(st) != 0)
			snprintf(err, sizeof err, "password_command exited with status %d and printed nothing",
			    WEXITSTATUS(st));
		else if (j->exited && WIFSIGNALED(st))
			snprintf(err, sizeof err, "password_command was killed by signal %d", WTERMSIG(st));
		else
			snprintf(err, sizeof err, "password_command printed nothing");
		job_done(j, NULL, err);
		return;
	}
	job_done(j, j->buf, NULL);
}

static void
on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct secret_job *j = arg;
	char err[100];

	(void)fd;
	(void)what;
	snprintf(err, sizeof err, "password_command did not answer within %us", j->timeout);
	job_done(j, NULL, err);
}

/*
 * In the child, before exec: close every descriptor above 2.  Every
 * descriptor the daemon opens is close-on-exec already; this is the
 * second line, for one a library opened without the flag, since a
 * password_command must never hold a smarthost connection, a listener or
 * the spool.  Only async-signal-safe calls: the daemon has threads.
 */
static void
close_inherited(void)
{
	struct rlimit rl;
	unsigned long fd, max = 1024;

	if (close_range(3, ~0U, 0) == 0)
		return;
	/* a kernel before 5.9: every descriptor number the limit allows */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		max = rl.rlim_cur;
	for (fd = 3; fd < max && fd < (1UL << 20); fd++)
		close((int)fd);
}

struct secret_job *
secret_run(struct event_base *base, const char *cmd, unsigned timeout, secret_cb cb, void *arg)
{
	struct secret_job *j = xcalloc(1, sizeof *j);
	int p[2], devnull;
	struct timeval tv = { .tv_sec = timeout };

	j->fd = -1;
	j->cb = cb;
	j->arg = arg;
	j->timeout = timeout;
	if (pipe2(p, O_CLOEXEC) == -1) {
		free(j);
		return NULL;
	}
	j->pid = fork();
	if (j->pid == -1) {
		close(p[0]);
		close(p[1]);
		free(j);
		return NULL;
	}
	if (j->pid == 0) {
		/* child: its own process group (killed whole on timeout), stdin from
		 * /dev/null, stdout to us, stderr left to the daemon's log */
		setpgid(0, 0);
		devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (devnull != -1)
			dup2(devnull, 0);
		dup2(p[1], 1);
		/* dup2() onto itself keeps the flag: 0 and 1 must survive the exec */
		fcntl(0, F_SETFD, 0);
		fcntl(1, F_SETFD, 0);
		close_inherited();
		signal(SIGPIPE, SIG_DFL);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	setpgid(j->pid, j->pid);	/* as the child does: whichever runs first */
	close(p[1]);
	j->fd = p[0];
	j->next = jobs;
	jobs = j;
	evutil_make_socket_nonblocking(j->fd);
	j->ev = event_new(base, j->fd, EV_READ | EV_PERSIST, on_output, j);
	j->timer = evtimer_new(base, on_timeout, j);
	event_add(j->ev, NULL);
	evtimer_add(j->timer, &tv);
	return j;
}

void
secret_cancel(struct secret_job *job)
{
	if (job != NULL)
		job_free(job);
}

void
secret_reap(void)
{
	struct secret_job *j;
	pid_t pid;
	int st;

	/* keep a running job's exit status for its error message */
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		for (j = jobs; j != NULL; j = j->next)
			if (j->pid == pid) {
				j->pid = 0;
				j->exited = 1;
				j->status = st;
			}
	}
}

/* log: see log.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static const char *log_ident = "mailrelay";
static enum log_dest log_dest = LOG_TO_STDERR;
static int log_level = LOG_INFO;
static log_sink_fn log_sink;
static int log_stamps;
static int log_fd = -1;		/* log_file, or -1 */

void
log_init(const char *ident, enum log_dest dest, int level)
{
	log_ident = ident;
	log_dest = dest;
	log_level = level;
	if (dest == LOG_TO_SYSLOG)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void log_set_level(int level) { log_level = level; }
int log_get_level(void) { return log_level; }
void log_set_sink(log_sink_fn sink) { log_sink = sink; }
void log_set_timestamps(int on) { log_stamps = on; }

/* "2026-01-02T03:04:05.678+01:00 " (RFC 3339, local time, milliseconds), or "" when off. */
static void
log_stamp(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;
	size_t n;
	long off;

	buf[0] = '\0';
	if (!log_stamps || clock_gettime(CLOCK_REALTIME, &ts) == -1 ||
	    localtime_r(&ts.tv_sec, &tm) == NULL)
		return;
	n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	if (n == 0)
		return;
	off = tm.tm_gmtoff / 60;
	if (off == 0)
		snprintf(buf + n, len - n, ".%03ldZ ", ts.tv_nsec / 1000000);
	else
		snprintf(buf + n, len - n, ".%03ld%c%02ld:%02ld ", ts.tv_nsec / 1000000,
		    off < 0 ? '-' : '+', labs(off) / 60, labs(off) % 60);
}

int
log_file_open(const char *path, char *errbuf, size_t errlen)
{
	int fd = -1;

	if (path != NULL) {
		fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
		if (fd == -1) {
			snprintf(errbuf, errlen, "log_file %s: %s", path, strerror(errno));
			return -1;
		}
	}
	if (log_fd != -1)
		close(log_fd);
	log_fd = fd;
	return 0;
}

/* One write per line, so that lines of concurrent writers never interleave. */
static void
log_to_file(const char *qid, const char *msg)
{
	char line[4400], stamp[64];
	int on = log_stamps, n;

	log_stamps = 1;
	log_stamp(stamp, sizeof stamp);
	log_stamps = on;
	if (qid)
		n = snprintf(line, sizeof line, "%s%s[%ld]: %s: %s\n", stamp, log_ident, (long)getpid(), qid, msg);
	else
		n = snprintf(line, sizeof line, "%s%s[%ld]: %s\n", stamp, log_ident, (long)getpid(), msg);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof line) {
		n = sizeof line - 1;
		line[n - 1] = '\n';
	}
	(void)!write(log_fd, line, (size_t)n);
}

static void
log_emit(int prio, const char *qid, const char *status, const char *msg)
{
	if (prio > log_level)
		return;
	if (log_fd != -1)
		log_to_file(qid, msg);
	if (log_sink != NULL && log_dest != LOG_TO_STDERR) {
		log_sink(prio, qid, status, msg);
		return;
	}
	if (log_dest == LOG_TO_SYSLOG) {
		if (qid)
			syslog(prio, "%s: %s", qid, msg);
		else
			syslog(prio, "%s", msg);
		return;
	}
	char stamp[64];
	log_stamp(stamp, sizeof stamp);
	if (qid)
		fprintf(stderr, "%s%s: %s: %s\n", stamp, log_ident, qid, msg);
	else
		fprintf(stderr, "%s%s: %s\n", stamp, log_ident, msg);
	fflush(stderr);
}

static void log_vemit(int prio, const char *qid, const char *status, int with_errno,
    const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));

static void
log_vemit(int prio, const char *qid, const char *status, int with_errno,
    const char *fmt, va_list ap)
{
	char buf[4096];
	int saved = errno;

	if (prio > log_level)
		return;
	vsnprintf(buf, sizeof buf, fmt, ap);
	if (with_errno) {
		size_t n = strlen(buf);
		snprintf(buf + n, sizeof buf - n, ": %s", strerror(saved));
	}
	log_emit(prio, qid, status, buf);
	errno = saved;
}

#define LOGFN(name, prio, witherr)				\
	void name(const char *fmt, ...)				\
	{							\
		va_list ap;					\
		va_start(ap, fmt);				\
		log_vemit(prio, NULL, NULL, witherr, fmt, ap);	\
		va_end(ap);					\
	}

LOGFN(log_debug, LOG_DEBUG, 0)
LOGFN(log_info, LOG_INFO, 0)
LOGFN(log_warn, LOG_WARNING, 1)
LOGFN(log_warnx, LOG_WARNING, 0)
LOGFN(log_err, LOG_ERR, 1)
LOGFN(log_errx, LOG_ERR, 0)

void
log_fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vemit(LOG_CRIT, NULL, NULL, 1, fmt, ap);
	va_end(ap);
	exit(EX_SOFTWARE);
}

void
log_fatalx(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vemit(LOG_CRIT, NULL, NULL, 0, fmt, ap);
	va_end(ap);
	exit(EX_SOFTWARE);
}

void
log_fatalx_code(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vemit(LOG_CRIT, NULL, NULL, 0, fmt, ap);
	va_end(ap);
	exit(code);
}

void
log_qid(int prio, const char *qid, const char *status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vemit(prio, qid, status, 0, fmt, ap);
	va_end(ap);
}

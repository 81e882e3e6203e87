/* log: see log.h. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include "log.h"

static const char *log_ident = "mailrelay";
static enum log_dest log_dest = LOG_TO_STDERR;
static int log_level = LOG_INFO;
static log_sink_fn log_sink;

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

static void
log_emit(int prio, const char *qid, const char *status, const char *msg)
{
	if (prio > log_level)
		return;
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
	if (qid)
		fprintf(stderr, "%s: %s: %s\n", log_ident, qid, msg);
	else
		fprintf(stderr, "%s: %s\n", log_ident, msg);
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

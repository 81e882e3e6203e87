/*
 * sysd: see sysd.h.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"
#include "sysd.h"

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>

static struct event *watchdog_ev;

void sysd_ready(void) { sd_notify(0, "READY=1"); }
void
sysd_reloading(void)
{
	struct timespec ts;

	/* systemd 253+ wants the reload time with RELOADING=1 (Type=notify-reload). */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
}
void sysd_stopping(void) { sd_notify(0, "STOPPING=1"); }

int
sysd_listen_fds(void)
{
	int n = sd_listen_fds(1);

	if (n < 0) {
		errno = -n;
		log_warn("LISTEN_FDS: ignored");
		return 0;
	}
	return n;
}

void
sysd_status(const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	sd_notifyf(0, "STATUS=%s", buf);
}

int
sysd_notifying(void)
{
	const char *e = getenv("NOTIFY_SOCKET");

	return e != NULL && *e != '\0';
}

static void
on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	sd_notify(0, "WATCHDOG=1");
}

void
sysd_watchdog_start(struct event_base *base)
{
	uint64_t usec;

	if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
		return;
	/* Ping at half the interval, as sd_watchdog_enabled(3) recommends. */
	struct timeval tv = { .tv_sec = (time_t)(usec / 2000000), .tv_usec = (suseconds_t)((usec / 2) % 1000000) };
	watchdog_ev = event_new(base, -1, EV_PERSIST, on_watchdog, NULL);
	event_add(watchdog_ev, &tv);
}

void
sysd_watchdog_stop(void)
{
	if (watchdog_ev != NULL) {
		event_free(watchdog_ev);
		watchdog_ev = NULL;
	}
}

static void
journal_sink(int prio, const char *qid, const char *status, const char *msg)
{
	if (qid != NULL && status != NULL)
		sd_journal_send("MESSAGE=%s: %s", qid, msg, "PRIORITY=%d", prio,
		    "SYSLOG_IDENTIFIER=mailrelayd", "SYSLOG_FACILITY=2",
		    "MAILRELAY_QUEUE_ID=%s", qid, "MAILRELAY_STATUS=%s", status, NULL);
	else if (qid != NULL)
		sd_journal_send("MESSAGE=%s: %s", qid, msg, "PRIORITY=%d", prio,
		    "SYSLOG_IDENTIFIER=mailrelayd", "SYSLOG_FACILITY=2",
		    "MAILRELAY_QUEUE_ID=%s", qid, NULL);
	else
		sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", prio,
		    "SYSLOG_IDENTIFIER=mailrelayd", "SYSLOG_FACILITY=2", NULL);
}

void
sysd_log_init(void)
{
	/* JOURNAL_STREAM tells us stderr is already the journal; the native protocol is better. */
	if (getenv("JOURNAL_STREAM") != NULL || getenv("INVOCATION_ID") != NULL)
		log_set_sink(journal_sink);
}

#else

void sysd_ready(void) { }
void sysd_reloading(void) { }
void sysd_stopping(void) { }
void sysd_status(const char *fmt, ...) { (void)fmt; }
int sysd_listen_fds(void) { return 0; }
int sysd_notifying(void) { return 0; }
void sysd_watchdog_start(struct event_base *base) { (void)base; }
void sysd_watchdog_stop(void) { }
void sysd_log_init(void) { }

#endif

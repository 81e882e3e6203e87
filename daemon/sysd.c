/*
 * sysd: see sysd.h.
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/uio.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/*
 * The value of "key=" in a log line's text ("to=<a@b>, relay=x, dsn=2.0.0,
 * status=sent (...)"): from after the '=' to the next ", " (or the end),
 * angle brackets dropped; "" when the key is not there.
 */
static void
field(const char *msg, const char *key, char *out, size_t outlen)
{
	size_t klen = strlen(key), n;
	const char *p = msg, *end;

	out[0] = '\0';
	for (;;) {
		if (strncmp(p, key, klen) == 0 && p[klen] == '=')
			break;
		if ((p = strstr(p, ", ")) == NULL)
			return;
		p += 2;
	}
	p += klen + 1;
	end = strstr(p, ", ");
	n = end != NULL ? (size_t)(end - p) : strlen(p);
	if (strcmp(key, "status") == 0)
		n = strcspn(p, " ,");
	if (n >= 2 && p[0] == '<' && p[n - 1] == '>') {
		p++;
		n -= 2;
	}
	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, p, n);
	out[n] = '\0';
}

/*
 * journald, native protocol: the text as MESSAGE= (with "ID: " as on
 * syslog), PRIORITY=, and for a queue id's line MAILRELAY_QUEUE_ID= plus
 * what its key=value text names: MAILRELAY_RECIPIENT (to=, brackets
 * dropped), MAILRELAY_RELAY, MAILRELAY_DSN and MAILRELAY_STATUS (the
 * caller's status, else status=).  Taking them from the text keeps one
 * format for every destination; a field the line lacks is left out.
 */
static void
journal_sink(int prio, const char *qid, const char *status, const char *msg)
{
	char rcpt[512], relay[300], dsn[16], st[32];
	struct iovec iov[9];
	char *f[9];
	int n = 0, i;

	if (qid == NULL) {
		sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", prio,
		    "SYSLOG_IDENTIFIER=mailrelayd", "SYSLOG_FACILITY=2", NULL);
		return;
	}
	field(msg, "to", rcpt, sizeof rcpt);
	field(msg, "relay", relay, sizeof relay);
	field(msg, "dsn", dsn, sizeof dsn);
	if (status != NULL)
		snprintf(st, sizeof st, "%s", status);
	else
		field(msg, "status", st, sizeof st);
	if (asprintf(&f[n++], "MESSAGE=%s: %s", qid, msg) == -1 ||
	    asprintf(&f[n++], "PRIORITY=%d", prio) == -1 ||
	    asprintf(&f[n++], "SYSLOG_IDENTIFIER=mailrelayd") == -1 ||
	    asprintf(&f[n++], "SYSLOG_FACILITY=2") == -1 ||
	    asprintf(&f[n++], "MAILRELAY_QUEUE_ID=%s", qid) == -1 ||
	    (rcpt[0] && asprintf(&f[n++], "MAILRELAY_RECIPIENT=%s", rcpt) == -1) ||
	    (relay[0] && asprintf(&f[n++], "MAILRELAY_RELAY=%s", relay) == -1) ||
	    (dsn[0] && asprintf(&f[n++], "MAILRELAY_DSN=%s", dsn) == -1) ||
	    (st[0] && asprintf(&f[n++], "MAILRELAY_STATUS=%s", st) == -1)) {
		f[--n] = NULL;	/* the one that failed */
		for (i = 0; i < n; i++)
			free(f[i]);
		sd_journal_print(prio, "%s: %s", qid, msg);
		return;
	}
	for (i = 0; i < n; i++) {
		iov[i].iov_base = f[i];
		iov[i].iov_len = strlen(f[i]);
	}
	sd_journal_sendv(iov, n);
	for (i = 0; i < n; i++)
		free(f[i]);
}

void
sysd_log_init(void)
{
	log_set_sink(journal_sink);
}

int
sysd_journal_available(void)
{
	return access("/run/systemd/journal/socket", W_OK) == 0;
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
int sysd_journal_available(void) { return 0; }

#endif

int
sysd_stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	int used;

	if (e == NULL || sscanf(e, "%llu:%llu%n", &dev, &ino, &used) != 2 || e[used] != '\0')
		return 0;
	if (fstat(STDERR_FILENO, &st) == -1)
		return 0;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

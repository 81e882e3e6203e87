/*
 * sysd: see sysd.h.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "sysd.h"
#include "util.h"

/*
 * The service manager's protocols, spoken natively: notifications are
 * datagrams of "KEY=value" lines to $NOTIFY_SOCKET, passed sockets are
 * LISTEN_PID/LISTEN_FDS from descriptor 3 on, the watchdog is
 * WATCHDOG_USEC (and WATCHDOG_PID), and journald takes one datagram of
 * fields on its socket.  systemd documents all four as stable interfaces
 * and describes sd_notify(3) as one a service may implement itself.  Not
 * linking libsystemd keeps it and what Debian 12 builds it with
 * (liblzma, libzstd, liblz4, libgcrypt, libgpg-error, libcap) out of a
 * daemon started as root: about 1 MB of resident memory, and six
 * libraries less to load and to trust.
 */
#define JOURNAL_SOCKET "/run/systemd/journal/socket"

static struct event *watchdog_ev;
static int journal_fd = -1;

/*
 * One notification (lines of KEY=value) to $NOTIFY_SOCKET: a path, or
 * '@' for an abstract name.  -1 when there is no manager to tell or it
 * cannot be reached; callers have nothing to do about either.
 */
static int
notify(const char *text)
{
	const char *e = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sun;
	socklen_t len;
	size_t n;
	int fd;

	if (e == NULL || (e[0] != '/' && e[0] != '@') || (n = strlen(e)) < 2 || n >= sizeof sun.sun_path)
		return -1;	/* unset, a vsock address, or too long */
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, e, n);
	if (sun.sun_path[0] == '@')
		sun.sun_path[0] = '\0';
	/* An abstract name is exactly n bytes long; a path ends at its NUL. */
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (e[0] == '/'));
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	ssize_t r = sendto(fd, text, strlen(text), MSG_NOSIGNAL, (struct sockaddr *)&sun, len);
	close(fd);
	return r == -1 ? -1 : 0;
}

void sysd_ready(void) { notify("READY=1"); }
void
sysd_reloading(void)
{
	struct timespec ts;
	char buf[64];

	/* systemd 253+ wants the reload time with RELOADING=1 (Type=notify-reload). */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(buf, sizeof buf, "RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
	notify(buf);
}
void sysd_stopping(void) { notify("STOPPING=1"); }

/* The environment's number var (digits only, at most max); -1 when unset or anything else. */
static int
env_number(const char *var, unsigned long long max, unsigned long long *out)
{
	const char *v = getenv(var);

	return v == NULL ? -1 : parse_ull(v, max, out);
}

/* The variable names this process (pid equal to ours); 0 when unset or not ours. */
static int
for_us(const char *var)
{
	unsigned long long pid;

	return env_number(var, (unsigned long long)INT_MAX, &pid) == 0 &&
	    (pid_t)pid == getpid();
}

int
sysd_listen_fds(void)
{
	unsigned long long n = 0;
	int bad = 0, i;

	if (getenv("LISTEN_PID") != NULL || getenv("LISTEN_FDS") != NULL) {
		if (!for_us("LISTEN_PID"))
			n = 0;	/* meant for a parent that exec'd us: not ours */
		else if (env_number("LISTEN_FDS", (unsigned long long)(INT_MAX - SYSD_LISTEN_FDS_START), &n) == -1)
			bad = 1;
	}
	/* Children never see them (what sd_listen_fds(1) does). */
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (bad) {
		errno = EINVAL;
		log_warn("LISTEN_FDS: ignored");
		return 0;
	}
	for (i = 0; i < (int)n; i++) {
		int fd = SYSD_LISTEN_FDS_START + i, fl;

		if ((fl = fcntl(fd, F_GETFD)) == -1) {
			log_warn("LISTEN_FDS: descriptor %d", fd);
			return 0;
		}
		fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
	}
	return (int)n;
}

void
sysd_status(const char *fmt, ...)
{
	char buf[520];
	va_list ap;

	memcpy(buf, "STATUS=", 7);
	va_start(ap, fmt);
	vsnprintf(buf + 7, sizeof buf - 7, fmt, ap);
	va_end(ap);
	notify(buf);
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
	notify("WATCHDOG=1");
}

void
sysd_watchdog_start(struct event_base *base)
{
	unsigned long long usec;

	/* WATCHDOG_PID, when set, must be ours: the variable may be a parent's. */
	if (env_number("WATCHDOG_USEC", ULLONG_MAX, &usec) == -1 || usec == 0 ||
	    (getenv("WATCHDOG_PID") != NULL && !for_us("WATCHDOG_PID")))
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
/*
 * Append one field of a journald entry to buf (cap bytes, off used):
 * "NAME=value\n", or, when the value holds a newline, NAME, a newline,
 * the value's length as 64-bit little-endian, the value and a newline
 * (the native protocol).  A value that does not fit is cut; the new
 * offset is returned.
 */
static size_t
put(char *buf, size_t off, size_t cap, const char *name, const char *value)
{
	size_t nlen = strlen(name), vlen = strlen(value);
	int binary = memchr(value, '\n', vlen) != NULL;
	size_t need = nlen + 1 + (binary ? 8 : 0) + 1;

	if (off + need > cap)
		return off;
	if (vlen > cap - off - need)
		vlen = cap - off - need;
	memcpy(buf + off, name, nlen);
	off += nlen;
	if (binary) {
		uint64_t le = htole64((uint64_t)vlen);

		buf[off++] = '\n';
		memcpy(buf + off, &le, 8);
		off += 8;
	} else
		buf[off++] = '=';
	memcpy(buf + off, value, vlen);
	off += vlen;
	buf[off++] = '\n';
	return off;
}

size_t
sysd_journal_entry(char *buf, size_t cap, int prio, const char *qid, const char *status, const char *msg)
{
	char text[4600], num[16], rcpt[512], relay[300], dsn[16], st[32];
	size_t off = 0;

	if (qid != NULL)
		snprintf(text, sizeof text, "%s: %s", qid, msg);
	off = put(buf, off, cap, "MESSAGE", qid != NULL ? text : msg);
	snprintf(num, sizeof num, "%d", prio);
	off = put(buf, off, cap, "PRIORITY", num);
	off = put(buf, off, cap, "SYSLOG_IDENTIFIER", "mailrelayd");
	off = put(buf, off, cap, "SYSLOG_FACILITY", "2");
	if (qid == NULL)
		return off;
	field(msg, "to", rcpt, sizeof rcpt);
	field(msg, "relay", relay, sizeof relay);
	field(msg, "dsn", dsn, sizeof dsn);
	if (status != NULL)
		snprintf(st, sizeof st, "%s", status);
	else
		field(msg, "status", st, sizeof st);
	off = put(buf, off, cap, "MAILRELAY_QUEUE_ID", qid);
	const char *name[] = { "MAILRELAY_RECIPIENT", "MAILRELAY_RELAY", "MAILRELAY_DSN", "MAILRELAY_STATUS" };
	const char *value[] = { rcpt, relay, dsn, st };
	for (size_t i = 0; i < sizeof name / sizeof name[0]; i++)
		if (value[i][0] != '\0')
			off = put(buf, off, cap, name[i], value[i]);
	return off;
}

/*
 * One datagram on a socket kept open, built on the stack: the log's own
 * sink allocates nothing, so that running out of memory can be logged.
 * An entry journald cannot take is dropped, as sd_journal_send() would.
 */
static void
journal_sink(int prio, const char *qid, const char *status, const char *msg)
{
	static const struct sockaddr_un sun = { .sun_family = AF_UNIX, .sun_path = JOURNAL_SOCKET };
	char buf[8192];
	size_t n = sysd_journal_entry(buf, sizeof buf, prio, qid, status, msg);

	if (journal_fd == -1)
		journal_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (journal_fd != -1)
		(void)sendto(journal_fd, buf, n, MSG_NOSIGNAL, (const struct sockaddr *)&sun, sizeof sun);
}

void
sysd_log_init(void)
{
	log_set_sink(journal_sink);
}

int
sysd_journal_available(void)
{
	return access(JOURNAL_SOCKET, W_OK) == 0;
}


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

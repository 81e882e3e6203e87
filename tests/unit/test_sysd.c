/*
 * test_sysd: the service manager's protocols as sysd.c speaks them, read
 * back from real sockets: notifications on a NOTIFY_SOCKET (a path and an
 * abstract name), the watchdog's pings driven by a real event loop, the
 * sockets LISTEN_FDS passes, the parser of their numbers, and the
 * journald entries decoded as journald would.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <endian.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <event2/event.h>

#include "sysd.h"
#include "util.h"

/* A datagram socket bound to a fresh path (or abstract name); NOTIFY_SOCKET names it. */
static int
listen_notify(int abstract, char *path, size_t pathlen)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	socklen_t len;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	if (abstract) {
		snprintf(path, pathlen, "@mailrelay-test-sysd-%ld", (long)getpid());
		memcpy(sun.sun_path, path, strlen(path));
		sun.sun_path[0] = '\0';
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
	} else {
		snprintf(path, pathlen, "/tmp/mailrelay-test-sysd-%ld", (long)getpid());
		unlink(path);
		memcpy(sun.sun_path, path, strlen(path) + 1);
		len = sizeof sun;
	}
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, len), 0);
	assert_int_equal(setenv("NOTIFY_SOCKET", path, 1), 0);
	return fd;
}

/* The next datagram on fd, as a string; "" when none comes within a second. */
static void
next(int fd, char *buf, size_t len)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	ssize_t n;

	buf[0] = '\0';
	if (poll(&p, 1, 1000) != 1)
		return;
	n = recv(fd, buf, len - 1, 0);
	assert_true(n >= 0);
	buf[n] = '\0';
}

static int
nothing_waiting(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, 0) == 0;
}

static void
test_notify_reaches_path_and_abstract_sockets(void **state)
{
	char path[108], buf[600];
	(void)state;

	for (int abstract = 0; abstract <= 1; abstract++) {
		int fd = listen_notify(abstract, path, sizeof path);

		assert_true(sysd_notifying());
		sysd_ready();
		next(fd, buf, sizeof buf);
		assert_string_equal(buf, "READY=1");
		sysd_status("%u queued, %s", 3u, "smarthost up");
		next(fd, buf, sizeof buf);
		assert_string_equal(buf, "STATUS=3 queued, smarthost up");
		sysd_reloading();
		next(fd, buf, sizeof buf);
		assert_memory_equal(buf, "RELOADING=1\nMONOTONIC_USEC=", 27);
		assert_true(strlen(buf) > 27);
		sysd_stopping();
		next(fd, buf, sizeof buf);
		assert_string_equal(buf, "STOPPING=1");
		close(fd);
		if (!abstract)
			unlink(path);
	}
	unsetenv("NOTIFY_SOCKET");
	assert_false(sysd_notifying());
	sysd_ready();		/* no manager: nothing to do, no error */
}

static void
test_status_is_cut_not_overrun(void **state)
{
	char path[108], buf[2048], big[1500];
	int fd = listen_notify(0, path, sizeof path);
	(void)state;

	memset(big, 's', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	sysd_status("%s", big);
	next(fd, buf, sizeof buf);
	assert_memory_equal(buf, "STATUS=sss", 10);
	assert_true(strlen(buf) < 520);
	close(fd);
	unlink(path);
	unsetenv("NOTIFY_SOCKET");
}

static void
test_watchdog_pings_at_half_the_interval(void **state)
{
	char path[108], buf[64], pid[32];
	struct event_base *base = event_base_new();
	int fd = listen_notify(1, path, sizeof path);
	(void)state;

	/* Another process's watchdog (WATCHDOG_PID not ours): nothing armed. */
	setenv("WATCHDOG_USEC", "20000", 1);
	setenv("WATCHDOG_PID", "1", 1);
	sysd_watchdog_start(base);
	assert_int_equal(event_base_loop(base, EVLOOP_NONBLOCK), 1);	/* no events */
	sysd_watchdog_stop();

	/* Nonsense: nothing armed. */
	unsetenv("WATCHDOG_PID");
	setenv("WATCHDOG_USEC", "20ms", 1);
	sysd_watchdog_start(base);
	assert_int_equal(event_base_loop(base, EVLOOP_NONBLOCK), 1);
	sysd_watchdog_stop();
	assert_true(nothing_waiting(fd));

	/* Ours: pings every 10 ms; the loop runs until the first one is sent. */
	snprintf(pid, sizeof pid, "%ld", (long)getpid());
	setenv("WATCHDOG_PID", pid, 1);
	setenv("WATCHDOG_USEC", "20000", 1);
	sysd_watchdog_start(base);
	assert_int_equal(event_base_loop(base, EVLOOP_ONCE), 0);
	next(fd, buf, sizeof buf);
	assert_string_equal(buf, "WATCHDOG=1");
	sysd_watchdog_stop();
	assert_int_equal(event_base_loop(base, EVLOOP_NONBLOCK), 1);
	assert_true(nothing_waiting(fd));

	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	unsetenv("NOTIFY_SOCKET");
	close(fd);
	event_base_free(base);
}

static void
test_listen_fds(void **state)
{
	char pid[32];
	int a, b;
	(void)state;

	/* Nothing passed. */
	assert_int_equal(sysd_listen_fds(), 0);

	/*
	 * Two descriptors at 3 and 4, passed to this pid: taken, close-on-exec,
	 * variables gone.  Whatever the runner holds there is kept aside and
	 * put back, so that the test always runs.
	 */
	a = SYSD_LISTEN_FDS_START;
	b = SYSD_LISTEN_FDS_START + 1;
	int saved_a = fcntl(a, F_DUPFD_CLOEXEC, 100), saved_b = fcntl(b, F_DUPFD_CLOEXEC, 100);
	assert_int_equal(dup2(0, a), a);
	assert_int_equal(dup2(0, b), b);
	snprintf(pid, sizeof pid, "%ld", (long)getpid());
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "2", 1);
	setenv("LISTEN_FDNAMES", "submit:smtp", 1);
	assert_int_equal(sysd_listen_fds(), 2);
	assert_true(fcntl(a, F_GETFD) & FD_CLOEXEC);
	assert_true(fcntl(b, F_GETFD) & FD_CLOEXEC);
	assert_null(getenv("LISTEN_PID"));
	assert_null(getenv("LISTEN_FDS"));
	assert_null(getenv("LISTEN_FDNAMES"));

	/* Meant for another process: ignored, and still unset for children. */
	setenv("LISTEN_PID", "1", 1);
	setenv("LISTEN_FDS", "2", 1);
	assert_int_equal(sysd_listen_fds(), 0);
	assert_null(getenv("LISTEN_FDS"));

	/* Not a number: ignored with a warning. */
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "2x", 1);
	assert_int_equal(sysd_listen_fds(), 0);

	/* A count naming a descriptor that is not open: none taken. */
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "90", 1);
	assert_int_equal(sysd_listen_fds(), 0);
	close(a);
	close(b);
	if (saved_a != -1) {
		dup2(saved_a, a);
		close(saved_a);
	}
	if (saved_b != -1) {
		dup2(saved_b, b);
		close(saved_b);
	}
}

static void
test_parse_uint(void **state)
{
	unsigned long long v;
	(void)state;

	assert_int_equal(parse_ull("0", 10, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(parse_ull("18446744073709551615", ~0ULL, &v), 0);
	assert_true(v == ~0ULL);
	assert_int_equal(parse_ull("18446744073709551616", ~0ULL, &v), -1);
	assert_int_equal(parse_ull("11", 10, &v), -1);
	assert_int_equal(parse_ull("10", 10, &v), 0);
	const char *bad[] = { "", "-1", "+1", " 1", "1 ", "0x10", "1.5" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(parse_ull(bad[i], ~0ULL, &v), -1);
}

/* Field NAME of a native-protocol entry, decoded as journald does; NULL when absent. */
static const char *
jfield(const char *e, size_t len, const char *name, char *out, size_t outlen)
{
	const char *p = e, *end = e + len;
	size_t nlen = strlen(name);

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p)), *eq;
		const char *vstart;
		size_t vlen;

		assert_non_null(nl);
		eq = memchr(p, '=', (size_t)(nl - p));
		if (eq != NULL) {
			vstart = eq + 1;
			vlen = (size_t)(nl - vstart);
			if ((size_t)(eq - p) == nlen && memcmp(p, name, nlen) == 0)
				goto found;
			p = nl + 1;
			continue;
		}
		/* NAME\n, 64-bit little-endian length, value, \n */
		uint64_t le;
		assert_true(nl + 1 + 8 <= end);
		memcpy(&le, nl + 1, 8);
		vlen = (size_t)le64toh(le);
		vstart = nl + 9;
		assert_true(vstart + vlen + 1 <= end);
		assert_int_equal(vstart[vlen], '\n');
		if ((size_t)(nl - p) == nlen && memcmp(p, name, nlen) == 0)
			goto found;
		p = vstart + vlen + 1;
		continue;
found:
		assert_true(vlen < outlen);
		memcpy(out, vstart, vlen);
		out[vlen] = '\0';
		return out;
	}
	return NULL;
}

static void
test_journal_entry_fields(void **state)
{
	char e[8192], v[5000];
	size_t n;
	(void)state;

	n = sysd_journal_entry(e, sizeof e, 6, "4XyZ7", NULL,
	    "to=<rcpt@example.net>, relay=smtp.example.net[192.0.2.1]:587, dsn=2.0.0, status=sent (250 ok)");
	assert_string_equal(jfield(e, n, "MESSAGE", v, sizeof v),
	    "4XyZ7: to=<rcpt@example.net>, relay=smtp.example.net[192.0.2.1]:587, dsn=2.0.0, status=sent (250 ok)");
	assert_string_equal(jfield(e, n, "PRIORITY", v, sizeof v), "6");
	assert_string_equal(jfield(e, n, "SYSLOG_IDENTIFIER", v, sizeof v), "mailrelayd");
	assert_string_equal(jfield(e, n, "SYSLOG_FACILITY", v, sizeof v), "2");
	assert_string_equal(jfield(e, n, "MAILRELAY_QUEUE_ID", v, sizeof v), "4XyZ7");
	assert_string_equal(jfield(e, n, "MAILRELAY_RECIPIENT", v, sizeof v), "rcpt@example.net");
	assert_string_equal(jfield(e, n, "MAILRELAY_RELAY", v, sizeof v), "smtp.example.net[192.0.2.1]:587");
	assert_string_equal(jfield(e, n, "MAILRELAY_DSN", v, sizeof v), "2.0.0");
	assert_string_equal(jfield(e, n, "MAILRELAY_STATUS", v, sizeof v), "sent");

	/* The caller's status wins; fields the text lacks are left out. */
	n = sysd_journal_entry(e, sizeof e, 4, "4XyZ7", "expired", "from=<a@b>, size=10");
	assert_string_equal(jfield(e, n, "MAILRELAY_STATUS", v, sizeof v), "expired");
	assert_null(jfield(e, n, "MAILRELAY_RECIPIENT", v, sizeof v));
	assert_null(jfield(e, n, "MAILRELAY_DSN", v, sizeof v));

	/* No queue id: only the message's own fields. */
	n = sysd_journal_entry(e, sizeof e, 3, NULL, NULL, "starting");
	assert_string_equal(jfield(e, n, "MESSAGE", v, sizeof v), "starting");
	assert_null(jfield(e, n, "MAILRELAY_QUEUE_ID", v, sizeof v));

	/* A newline in a value: the binary form, read back whole. */
	n = sysd_journal_entry(e, sizeof e, 6, NULL, NULL, "two\nlines");
	assert_string_equal(jfield(e, n, "MESSAGE", v, sizeof v), "two\nlines");
	assert_string_equal(jfield(e, n, "PRIORITY", v, sizeof v), "6");

	/* A small buffer: values cut, the entry still well formed. */
	n = sysd_journal_entry(e, 40, 6, NULL, NULL, "a long message that does not fit in forty bytes");
	assert_true(n <= 40);
	assert_non_null(jfield(e, n, "MESSAGE", v, sizeof v));
	assert_memory_equal(v, "a long", 6);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_notify_reaches_path_and_abstract_sockets),
		cmocka_unit_test(test_status_is_cut_not_overrun),
		cmocka_unit_test(test_watchdog_pings_at_half_the_interval),
		cmocka_unit_test(test_listen_fds),
		cmocka_unit_test(test_parse_uint),
		cmocka_unit_test(test_journal_entry_fields),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

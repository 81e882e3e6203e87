/*
 * Unit tests for lib/received.c: the Received: field's clauses, folding
 * within 78 octets, what a client's text may not bring in, and the count
 * of Received: fields used for hop counting.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "received.h"

#define QID "6B036B6B9EB3B000"

/* Every line ends in CRLF, none over max octets, continuation lines start with a tab. */
static void
check_lines(const char *f, size_t max)
{
	const char *p = f;

	assert_true(strncmp(f, "Received: ", 10) == 0);
	while (*p) {
		const char *e = strstr(p, "\r\n");
		assert_non_null(e);
		assert_true((size_t)(e - p) <= max);
		assert_null(memchr(p, '\n', (size_t)(e - p)));
		assert_null(memchr(p, '\r', (size_t)(e - p)));
		p = e + 2;
		if (*p)
			assert_int_equal(*p, '\t');
	}
}

/* The field unfolded (CRLF TAB becomes a space), without the final CRLF. */
static char *
unfold(const char *f)
{
	char *u = strdup(f), *o = u;

	for (const char *p = f; *p; p++) {
		if (p[0] == '\r' && p[1] == '\n') {
			p++;
			if (p[1] == '\t') {
				*o++ = ' ';
				p++;
			}
			continue;
		}
		*o++ = *p;
	}
	*o = '\0';
	return u;
}

static void
test_local_one_recipient(void **state)
{
	struct received_from from = { .local = 1, .uid = 1000, .login = "www-data", .with = "ESMTP" };
	char *f, *u;

	(void)state;
	setenv("TZ", "UTC", 1);
	tzset();
	f = received_field(&from, "relay.example.com", "1.0", QID, "ops@example.com", 1795000000);
	check_lines(f, 78);
	u = unfold(f);
	assert_string_equal(u, "Received: from local (uid 1000 www-data) by relay.example.com "
	    "(mailrelay 1.0) with ESMTP id " QID " for <ops@example.com>; "
	    "Wed, 18 Nov 2026 11:06:40 +0000");
	free(u);
	free(f);
}

static void
test_tcp_many_recipients(void **state)
{
	struct received_from from = { .local = 0, .helo = "web1.example.org", .addr = "192.0.2.7", .with = "SMTP" };
	char *f, *u;

	(void)state;
	f = received_field(&from, "relay.example.com", "1.0", QID, NULL, 1795000000);
	check_lines(f, 78);
	u = unfold(f);
	assert_non_null(strstr(u, "Received: from web1.example.org ([192.0.2.7]) by relay.example.com "
	    "(mailrelay 1.0) with SMTP id " QID "; Wed, "));
	assert_null(strstr(u, " for "));
	free(u);
	free(f);
}

static void
test_ipv6_and_hostile_helo(void **state)
{
	struct received_from from = { .local = 0, .helo = "evil)\r\nBcc: x", .addr = "::1", .with = "ESMTP" };
	char *f, *u;

	(void)state;
	f = received_field(&from, "relay.example.com", "1.0", QID, "a@b\r\nX: y", 1795000000);
	check_lines(f, 78);
	u = unfold(f);
	assert_non_null(strstr(u, "Received: from [IPv6:::1] by relay.example.com"));
	assert_null(strstr(u, "evil"));
	assert_null(strstr(u, "for <"));
	free(u);
	free(f);
}

static void
test_long_names_never_over_998(void **state)
{
	char helo[400], host[200], rcpt[260];
	struct received_from from = { .local = 0, .helo = helo, .addr = "192.0.2.7", .with = "ESMTP" };
	char *f;

	(void)state;
	memset(helo, 'h', 299), helo[299] = '\0';
	memset(host, 'r', 189), host[189] = '\0';
	memset(rcpt, 'x', 250), rcpt[250] = '\0';
	rcpt[100] = '@';
	f = received_field(&from, host, "1.0", QID, rcpt, 1795000000);
	check_lines(f, 998);
	assert_non_null(strstr(f, helo));
	assert_non_null(strstr(f, rcpt));
	free(f);
	/* a HELO past the bound is left out, not cut */
	memset(helo, 'h', 399), helo[399] = '\0';
	f = received_field(&from, host, "1.0", QID, rcpt, 1795000000);
	check_lines(f, 998);
	assert_null(strstr(f, "hhhh"));
	free(f);
}

static void
test_unknown_uid(void **state)
{
	struct received_from from = { .local = 1, .uid = (uid_t)-1, .with = "ESMTP" };
	char *f = received_field(&from, "relay.example.com", "1.0", QID, NULL, 0);

	(void)state;
	assert_true(strncmp(f, "Received: from local by relay.example.com ", 42) == 0);
	free(f);
}

static void
test_count(void **state)
{
	const char *h = "Received: from a\r\n\tby b; x\r\nreceived:from c\r\nSubject: Received: no\r\n"
	    "X-Received: no\r\n Received: continuation\r\nRECEIVED: d\n";

	(void)state;
	assert_int_equal(received_count(h, strlen(h)), 3);
	assert_int_equal(received_count("", 0), 0);
	assert_int_equal(received_count("Received:", 9), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_local_one_recipient),
		cmocka_unit_test(test_tcp_many_recipients),
		cmocka_unit_test(test_ipv6_and_hostile_helo),
		cmocka_unit_test(test_long_names_never_over_998),
		cmocka_unit_test(test_unknown_uid),
		cmocka_unit_test(test_count),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

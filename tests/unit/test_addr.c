/*
 * Unit tests for lib/addr.c: header address lists (RFC 5322 3.4), in-place
 * rewriting, and the RFC 5321 mailbox check behind strict_addresses.
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

#include "addr.h"
#include "rewrite.h"
#include "xmalloc.h"

struct out {
	char a[8][ADDR_MAX + 1];
	size_t start[8], end[8];
	int angle[8], group[8];
	int n;
};

static void
collect(const struct addr_mbox *m, void *arg)
{
	struct out *o = arg;

	if (o->n >= 8)
		return;
	snprintf(o->a[o->n], sizeof o->a[0], "%s", m->addr);
	o->start[o->n] = m->start;
	o->end[o->n] = m->end;
	o->angle[o->n] = m->angle;
	o->group[o->n] = m->group;
	o->n++;
}

static int
walk(const char *v, struct out *o)
{
	memset(o, 0, sizeof *o);
	return addr_list_walk(v, strlen(v), collect, o);
}

static void
test_rfc5322_lists(void **state)
{
	struct out o;
	(void)state;

	/* display names, quoted display names with specials, comments */
	assert_int_equal(walk("\"Doe, John\" <john@example.com>, jane@example.com (Jane)", &o), 2);
	assert_string_equal(o.a[0], "john@example.com");
	assert_true(o.angle[0]);
	assert_string_equal(o.a[1], "jane@example.com");
	assert_false(o.angle[1]);

	/* cron's From: a local user and a comment */
	assert_int_equal(walk("root (Cron Daemon)", &o), 1);
	assert_string_equal(o.a[0], "root");
	assert_int_equal(o.start[0], 0);
	assert_int_equal(o.end[0], 4);

	/* quoted local part with a space and an escaped quote */
	assert_int_equal(walk("<\"john \\\"jd\\\" doe\"@example.com>", &o), 1);
	assert_string_equal(o.a[0], "\"john \\\"jd\\\" doe\"@example.com");

	/* groups: the empty one and a named one with members */
	assert_int_equal(walk("undisclosed-recipients:;", &o), 0);
	assert_int_equal(walk("team: a@x.org, B <b@x.org>;, c@y.org", &o), 3);
	assert_true(o.group[0]);
	assert_true(o.group[1]);
	assert_false(o.group[2]);

	/* folding white space and a comment inside the address (obsolete syntax) */
	assert_int_equal(walk("John\r\n <john@example.com>,\r\n\tjoe . bloggs @ example.org", &o), 2);
	assert_string_equal(o.a[1], "joe.bloggs@example.org");

	/* obsolete source route */
	assert_int_equal(walk("<@relay.example,@b.example:user@example.com>", &o), 1);
	assert_string_equal(o.a[0], "user@example.com");

	/* nested comments with parentheses and an escaped one */
	assert_int_equal(walk("a@b.c (x (y \\) z) w)", &o), 1);
	assert_string_equal(o.a[0], "a@b.c");

	/* UTF-8 display name and mailbox (RFC 6532) */
	assert_int_equal(walk("Jörg <jörg@bücher.example>", &o), 1);
	assert_string_equal(o.a[0], "jörg@bücher.example");

	/* empty elements are skipped */
	assert_int_equal(walk(" , a@b.c ,, ", &o), 1);
}

static void
test_malformed_lists(void **state)
{
	struct out o;
	(void)state;

	assert_int_equal(walk("\"unterminated <a@b.c>", &o), -1);
	assert_int_equal(walk("(open comment a@b.c", &o), -1);
	assert_int_equal(walk("<a@b.c", &o), -1);
	assert_int_equal(walk("a@b.c>", &o), -1);
	assert_int_equal(walk("<<a@b.c>>", &o), -1);
	assert_int_equal(walk("John Doe", &o), -1);	/* a phrase is not an address */
	assert_int_equal(walk("a@b.c\001", &o), -1);
	assert_int_equal(walk("g1: g2: a@b.c;;", &o), -1);	/* groups do not nest */
	char big[ADDR_MAX + 20];
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	assert_int_equal(walk(big, &o), -1);
}

static char *
to_example(const char *addr, void *arg)
{
	(void)arg;
	if (strchr(addr, '@') != NULL && strstr(addr, "@web1") == NULL)
		return NULL;
	char *at = strchr(addr, '@');
	return xasprintf("%.*s@example.com", at ? (int)(at - addr) : (int)strlen(addr), addr);
}

static void
test_rewrite_keeps_everything_else(void **state)
{
	size_t n;
	char *r;
	(void)state;

	r = addr_list_rewrite("root (Cron Daemon)", 18, to_example, NULL, &n);
	assert_non_null(r);
	assert_string_equal(r, "root@example.com (Cron Daemon)");
	assert_int_equal(n, strlen(r));
	free(r);

	const char *v = " \"Backup, Nightly\" <backup@web1>,\r\n other@example.org";
	r = addr_list_rewrite(v, strlen(v), to_example, NULL, &n);
	assert_string_equal(r, " \"Backup, Nightly\" <backup@example.com>,\r\n other@example.org");
	free(r);

	/* nothing to change, or malformed: NULL */
	assert_null(addr_list_rewrite("a@b.org", 7, to_example, NULL, &n));
	assert_null(addr_list_rewrite("<root", 5, to_example, NULL, &n));

	/* source route: only the address after the route is replaced */
	v = "<@hop.example:root@web1>";
	r = addr_list_rewrite(v, strlen(v), to_example, NULL, &n);
	assert_string_equal(r, "<@hop.example:root@example.com>");
	free(r);

	/*
	 * A route and an address each within ADDR_MAX, longer than it
	 * together: the address is what counts, before and after a rewrite
	 * that lengthens it (found by fuzz_addr: the rewritten value did not
	 * parse, its route and new address together over the limit).
	 */
	{
		char route[ADDR_MAX], val[2 * ADDR_MAX + 16];
		struct out o;
		memset(route, 'h', sizeof route);
		route[0] = '@';
		route[ADDR_MAX - 11] = '\0';	/* "@hhh...", 245 octets: 252 with ":u@web1", 259 rewritten */
		snprintf(val, sizeof val, "<%s:u@web1>", route);
		assert_int_equal(walk(val, &o), 1);
		assert_string_equal(o.a[0], "u@web1");
		r = addr_list_rewrite(val, strlen(val), to_example, NULL, &n);
		assert_non_null(r);
		assert_int_equal(walk(r, &o), 1);
		assert_string_equal(o.a[0], "u@example.com");
		free(r);
		/* a route over the limit by itself is still refused */
		char longroute[ADDR_MAX + 2];
		memset(longroute, 'h', ADDR_MAX + 1);
		longroute[0] = '@';
		longroute[ADDR_MAX + 1] = '\0';
		snprintf(val, sizeof val, "<%s:u@web1>", longroute);
		assert_int_equal(walk(val, &o), -1);
	}
}

static void
check_ok(const char *a, int flags)
{
	const char *why = NULL;
	if (addr_spec_check(a, flags, &why) != 0)
		fail_msg("%s refused: %s", a, why);
}

static void
check_bad(const char *a, int flags)
{
	const char *why = NULL;
	if (addr_spec_check(a, flags, &why) != -1)
		fail_msg("%s accepted", a);
	assert_non_null(why);
}

static void
test_spec_check(void **state)
{
	(void)state;
	check_ok("user@example.com", 0);
	check_ok("first.last+tag@sub.example.co.uk", 0);
	check_ok("\"john doe\"@example.com", 0);
	check_ok("\"a\\\"b\"@example.com", 0);
	check_ok("\"@\"@example.com", 0);
	check_ok("user@[192.0.2.1]", 0);
	check_ok("user@[IPv6:2001:db8::1]", 0);
	check_ok("jörg@bücher.example", 0);
	check_ok("user@xn--bcher-kva.example", 0);
	check_ok("root", ADDR_LOCAL_OK);
	check_ok("!#$%&'*+-/=?^_`{|}~@example.com", 0);

	check_bad("root", 0);
	check_bad("", ADDR_LOCAL_OK);
	check_bad("@example.com", 0);
	check_bad("user@", 0);
	check_bad(".user@example.com", 0);
	check_bad("us..er@example.com", 0);
	check_bad("user.@example.com", 0);
	check_bad("us er@example.com", 0);
	check_bad("user@exa mple.com", 0);
	check_bad("user@-example.com", 0);
	check_bad("user@example-.com", 0);
	check_bad("user@example..com", 0);
	check_bad("user@[300.1.1.1]", 0);
	check_bad("user@[IPv6:zz::1]", 0);
	check_bad("\"unterminated@example.com", 0);
	check_bad("a\"b@example.com", 0);
	check_bad("user@exam\xff" "ple.com", 0);	/* not UTF-8 */
	check_bad("us\xc0\xafr@example.com", 0);	/* overlong UTF-8 */
	check_bad("user\r@example.com", 0);

	char local[80];
	memset(local, 'a', 65);
	strcpy(local + 65, "@x.org");
	check_bad(local, 0);
	local[1] = '\0';
	check_ok(local, ADDR_LOCAL_OK);

	assert_string_equal(addr_domain("\"a@b\"@c.org"), "c.org");
	assert_null(addr_domain("\"a@b\""));
}

static char *
rw(const struct rewrite_policy *p, const char *hdr)
{
	size_t n;
	unsigned c;
	char *r = rewrite_header_block(p, hdr, strlen(hdr), &n, &c);
	if (r != NULL)
		assert_int_equal(n, strlen(r));
	return r;
}

static void
test_rewrite_policy(void **state)
{
	struct rewrite_policy never = { "web1.example.com", "alerts@example.com", REWRITE_NEVER };
	struct rewrite_policy local = { "web1.example.com", "alerts@example.com", REWRITE_LOCAL };
	struct rewrite_policy plain = { "web1.example.com", NULL, REWRITE_LOCAL };
	char *r;
	(void)state;

	/* envelope */
	r = rewrite_sender(&local, "root");
	assert_string_equal(r, "alerts@example.com");
	free(r);
	r = rewrite_sender(&plain, "root");
	assert_string_equal(r, "root@web1.example.com");
	free(r);
	r = rewrite_sender(&never, "root");
	assert_string_equal(r, "alerts@example.com");	/* SPEC: from_address, whatever rewrite_from */
	free(r);
	r = rewrite_sender(&local, "root@WEB1.example.com");
	assert_string_equal(r, "alerts@example.com");
	free(r);
	r = rewrite_sender(&never, "root@web1.example.com");
	assert_string_equal(r, "root@web1.example.com");
	free(r);
	r = rewrite_sender(&local, "app@shop.example");
	assert_string_equal(r, "app@shop.example");
	free(r);
	r = rewrite_sender(&local, "");
	assert_string_equal(r, "");
	free(r);

	/* cron's header, the display name and every other field kept */
	const char *cron = "From: root (Cron Daemon)\r\nTo: root\r\nSubject: Cron <root@web1> x\r\n"
	    "X-Cron-Env: <SHELL=/bin/sh>\r\n";
	r = rw(&plain, cron);
	assert_string_equal(r, "From: root@web1.example.com (Cron Daemon)\r\nTo: root@web1.example.com\r\n"
	    "Subject: Cron <root@web1> x\r\nX-Cron-Env: <SHELL=/bin/sh>\r\n");
	free(r);
	r = rw(&local, cron);
	assert_string_equal(r, "From: alerts@example.com (Cron Daemon)\r\nTo: root@web1.example.com\r\n"
	    "Subject: Cron <root@web1> x\r\nX-Cron-Env: <SHELL=/bin/sh>\r\n");
	free(r);
	r = rw(&never, "From: Backup <backup@web1.example.com>\r\nCc: ops\r\n");
	assert_string_equal(r, "From: Backup <backup@web1.example.com>\r\nCc: ops@web1.example.com\r\n");
	free(r);
	r = rw(&local, "From: \"Nightly, Backup\" <backup@web1.example.com>\r\n\tfolded\r\n");
	assert_string_equal(r, "From: \"Nightly, Backup\" <alerts@example.com>\r\n\tfolded\r\n");
	free(r);
	/* foreign addresses and fields that are not address fields: untouched */
	assert_null(rw(&local, "From: app@shop.example\r\nTo: a@b.example\r\nX-To: root\r\n"));
	/* a malformed value is left as it is */
	assert_null(rw(&local, "From: \"broken <root>\r\n"));
	/* Resent-* fields are originators and recipients too */
	r = rw(&plain, "Resent-From: root\r\nResent-To: admin\r\n");
	assert_string_equal(r, "Resent-From: root@web1.example.com\r\nResent-To: admin@web1.example.com\r\n");
	free(r);
}

static void
test_rewrite_identity(void **state)
{
	size_t n;
	char *r;
	const char *h;
	(void)state;

	h = "From: Cron Daemon <root@web1.example.com>\r\nSubject: x\r\n";
	r = rewrite_for_identity("relay@corp.example", h, strlen(h), &n);
	assert_string_equal(r, "From: Cron Daemon <relay@corp.example>\r\nSubject: x\r\n"
	    "Reply-To: Cron Daemon <root@web1.example.com>\r\n");
	free(r);
	/* an existing Reply-To is kept, not doubled */
	h = "Reply-To: ops@corp.example\r\nFrom: a@b.example\r\nSender: b@b.example\r\n";
	r = rewrite_for_identity("relay@corp.example", h, strlen(h), &n);
	assert_string_equal(r, "Reply-To: ops@corp.example\r\nFrom: relay@corp.example\r\n"
	    "Sender: relay@corp.example\r\n");
	free(r);
	/* already the identity: nothing to do */
	h = "From: Relay <relay@corp.example>\r\n";
	assert_null(rewrite_for_identity("relay@corp.example", h, strlen(h), &n));

	int complete;
	assert_int_equal(rewrite_header_len("A: b\r\n\r\nbody", 13, 1000, &complete), 6);
	assert_true(complete);
	assert_int_equal(rewrite_header_len("\r\nbody", 6, 1000, &complete), 0);
	assert_true(complete);
	assert_int_equal(rewrite_header_len("no header here\r\n", 16, 1000, &complete), 0);
	assert_false(complete);
	assert_int_equal(rewrite_header_len("A: b\r\nC: d\r\n", 12, 1000, &complete), 12);
	assert_false(complete);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc5322_lists),
		cmocka_unit_test(test_malformed_lists),
		cmocka_unit_test(test_rewrite_keeps_everything_else),
		cmocka_unit_test(test_spec_check),
		cmocka_unit_test(test_rewrite_policy),
		cmocka_unit_test(test_rewrite_identity),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

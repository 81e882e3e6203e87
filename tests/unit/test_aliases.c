/*
 * Unit tests for lib/aliases.c: the /etc/aliases format, expansion,
 * loops, refused targets.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "aliases.h"

struct out {
	char addrs[16][128];
	int n;
	char warns[8][256];
	int nwarn;
};

static void
collect(const char *addr, void *arg)
{
	struct out *o = arg;
	if (o->n < 16)
		snprintf(o->addrs[o->n++], 128, "%s", addr);
}

static void
warned(const char *file, unsigned line, const char *msg, void *arg)
{
	struct out *o = arg;
	(void)file;
	if (o->nwarn < 8)
		snprintf(o->warns[o->nwarn++], 256, "%u: %s", line, msg);
}

static const char text[] =
    "# comment\n"
    "\n"
    "Root: ops@example.com,\n"
    "  admin   \n"
    "admin: \"|/usr/bin/prog\", /var/mail/x, :include:/etc/list, <boss@example.com>\n"
    "a: b\n"
    "b: c\n"
    "c: a, c@example.com\n"
    "self: self, me@example.com\n"
    "broken line without colon\n"
    "root: again@example.com\n";

static void
test_parse_and_expand(void **state)
{
	struct aliases a;
	struct out o = { .n = 0 };
	(void)state;

	aliases_parse(&a, "aliases", text, sizeof text - 1, warned, &o);
	assert_int_equal(a.n, 6);
	/* three refused targets, a line without ':', a second definition of root */
	assert_int_equal(o.nwarn, 5);
	assert_non_null(strstr(o.warns[0], "|/usr/bin/prog"));
	assert_non_null(strstr(o.warns[3], "no ':'"));
	assert_non_null(strstr(o.warns[4], "defined again"));

	o.n = 0;
	assert_int_equal(aliases_expand(&a, "ROOT", "it@example.com", "h.test", collect, &o, NULL, NULL), 2);
	assert_string_equal(o.addrs[0], "ops@example.com");
	assert_string_equal(o.addrs[1], "boss@example.com");
	aliases_free(&a);
}

static void
test_loops_and_locals(void **state)
{
	struct aliases a;
	struct out o = { .n = 0 }, w = { .n = 0 };
	(void)state;

	aliases_parse(&a, "aliases", text, sizeof text - 1, NULL, NULL);
	/* a -> b -> c -> a: the cycle ends local, c@ is delivered */
	aliases_expand(&a, "a", "it@example.com", "h.test", collect, &o, NULL, NULL);
	assert_int_equal(o.n, 2);
	assert_string_equal(o.addrs[0], "it@example.com");
	assert_string_equal(o.addrs[1], "c@example.com");
	/* self-reference keeps the name local */
	o.n = 0;
	aliases_expand(&a, "self", NULL, "h.test", collect, &o, NULL, NULL);
	assert_int_equal(o.n, 2);
	assert_string_equal(o.addrs[0], "self@h.test");
	assert_string_equal(o.addrs[1], "me@example.com");
	/* unknown local user, address with a domain */
	o.n = 0;
	aliases_expand(&a, "www-data", NULL, "h.test", collect, &o, NULL, NULL);
	aliases_expand(&a, "x@y.test", NULL, "h.test", collect, &o, NULL, NULL);
	assert_int_equal(o.n, 2);
	assert_string_equal(o.addrs[0], "www-data@h.test");
	assert_string_equal(o.addrs[1], "x@y.test");
	/* the check finds the a/b/c cycle (three names) and not "self" */
	assert_int_equal(aliases_check(&a, "aliases", warned, &w), 3);
	aliases_free(&a);
}

static void
test_deep_chain_is_bounded(void **state)
{
	char buf[8192];
	size_t n = 0;
	struct aliases a;
	struct out o = { .n = 0 }, w = { .n = 0 };
	(void)state;

	for (int i = 0; i < 50; i++)
		n += (size_t)snprintf(buf + n, sizeof buf - n, "n%d: n%d\n", i, i + 1);
	aliases_parse(&a, "deep", buf, n, NULL, NULL);
	aliases_expand(&a, "n0", "admin@x.test", "h.test", collect, &o, warned, &w);
	assert_int_equal(o.n, 1);
	assert_string_equal(o.addrs[0], "admin@x.test");
	assert_int_equal(w.nwarn, 1);
	aliases_free(&a);
}

static void
test_missing_file_is_empty(void **state)
{
	struct aliases a;
	(void)state;
	assert_int_equal(aliases_load(&a, "/nonexistent/aliases", NULL, NULL), 0);
	assert_int_equal(a.n, 0);
}

struct refusals {
	char items[8][256];
	int n;
	struct out *o;
};

static void
verify_out(const char *addr, void *arg)
{
	collect(addr, ((struct refusals *)arg)->o);
}

static void
verify_refused(const char *alias, const struct alias_refused *r, void *arg)
{
	struct refusals *f = arg;
	if (f->n < 8)
		snprintf(f->items[f->n++], 256, "%s: %s (%s)", alias, r->target, r->why);
}

static void
test_verify_reports_refused_targets(void **state)
{
	struct aliases a;
	struct out o = { .n = 0 };
	struct refusals f = { .n = 0, .o = &o };
	(void)state;

	aliases_parse(&a, "aliases", text, sizeof text - 1, NULL, NULL);
	/* the line without ':' is the one malformed entry; refused targets are not errors */
	assert_int_equal(a.nerrors, 1);
	/* the same addresses as aliases_expand(), and the three refused targets of admin */
	assert_int_equal(aliases_verify(&a, "root", "it@example.com", "h.test", verify_out,
	    verify_refused, &f, NULL, NULL), 2);
	assert_int_equal(o.n, 2);
	assert_string_equal(o.addrs[0], "ops@example.com");
	assert_string_equal(o.addrs[1], "boss@example.com");
	assert_int_equal(f.n, 3);
	assert_non_null(strstr(f.items[0], "admin: |/usr/bin/prog (mailrelay relays mail"));
	assert_non_null(strstr(f.items[1], "/var/mail/x"));
	assert_non_null(strstr(f.items[2], ":include:/etc/list"));
	aliases_free(&a);
}

static void
test_verify_alias_left_empty_is_local(void **state)
{
	static const char t[] =
	    "cmd: |/bin/prog\n"
	    "both: cmd, cmd, bad target, x@example.com\n";
	struct aliases a;
	struct out o = { .n = 0 }, e = { .n = 0 };
	struct refusals f = { .n = 0, .o = &o };
	(void)state;

	aliases_parse(&a, "aliases", t, sizeof t - 1, NULL, NULL);
	assert_int_equal(a.nerrors, 1);		/* "bad target" */
	aliases_verify(&a, "both", NULL, "h.test", verify_out, verify_refused, &f, NULL, NULL);
	/* cmd has no usable target: local, as the daemon has it; its refusal reported once */
	assert_int_equal(o.n, 2);
	assert_string_equal(o.addrs[0], "cmd@h.test");
	assert_string_equal(o.addrs[1], "x@example.com");
	assert_int_equal(f.n, 2);
	assert_non_null(strstr(f.items[0], "both: bad target (not a valid address)"));
	assert_non_null(strstr(f.items[1], "cmd: |/bin/prog"));
	/* aliases_expand() gives the same addresses */
	aliases_expand(&a, "both", NULL, "h.test", collect, &e, NULL, NULL);
	assert_int_equal(e.n, 2);
	assert_string_equal(e.addrs[0], "cmd@h.test");
	assert_string_equal(e.addrs[1], "x@example.com");
	aliases_free(&a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_and_expand),
		cmocka_unit_test(test_loops_and_locals),
		cmocka_unit_test(test_deep_chain_is_bounded),
		cmocka_unit_test(test_missing_file_is_empty),
		cmocka_unit_test(test_verify_reports_refused_targets),
		cmocka_unit_test(test_verify_alias_left_empty_is_local),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

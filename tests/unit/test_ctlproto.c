/*
 * Unit tests for lib/ctlproto.c: the control protocol's request parser.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "ctlproto.h"

static int
parse(const char *line, struct ctl_req *req, char *err)
{
	return ctl_parse(line, strlen(line), req, err, 200);
}

static void
test_flush(void **state)
{
	static struct ctl_req req;
	char err[200];
	(void)state;

	assert_int_equal(parse("FLUSH", &req, err), 0);
	assert_int_equal(req.verb, CTL_FLUSH);
	assert_int_equal(req.nids, 0);
	assert_int_equal(parse("flush\r", &req, err), 0);
	assert_int_equal(parse("FLUSH 6B03923FBC3B7000 0000000000000001", &req, err), 0);
	assert_int_equal(req.nids, 2);
	assert_string_equal(req.ids[1], "0000000000000001");
	assert_int_equal(parse("hold 6B03923FBC3B7000", &req, err), 0);
	assert_int_equal(req.verb, CTL_HOLD);
	assert_int_equal(parse("RELEASE 6B03923FBC3B7000", &req, err), 0);
	assert_int_equal(req.verb, CTL_RELEASE);
	assert_int_equal(parse("DELETE ALL", &req, err), 0);
	assert_int_equal(req.verb, CTL_DELETE);
	assert_true(req.all);
	assert_int_equal(parse("DELETE all", &req, err), 0);
	assert_string_equal(ctl_verb_name(CTL_RELEASE), "RELEASE");
	assert_int_equal(parse("STATUS", &req, err), 0);
	assert_int_equal(req.verb, CTL_STATUS);
	assert_false(req.json);
	assert_int_equal(parse("status json", &req, err), 0);
	assert_true(req.json);
	assert_int_equal(parse("STATUS PROMETHEUS", &req, err), 0);
	assert_true(req.prometheus);
	assert_false(req.json);
	assert_int_equal(parse("status prometheus", &req, err), 0);
	assert_true(req.prometheus);
	assert_int_equal(parse("SHOW 6B03923FBC3B7000 BODY", &req, err), 0);
	assert_int_equal(req.verb, CTL_SHOW);
	assert_true(req.body);
	assert_int_equal(parse("LIST JSON", &req, err), 0);
	assert_int_equal(req.verb, CTL_LIST);
}

static void
test_refused(void **state)
{
	static struct ctl_req req;
	static char big[CTL_LINE_MAX + 10];
	char err[200];
	const char *bad[] = {
		"", "FLUSHX", "PURGE 6B03923FBC3B7000", "FLUSH ", "FLUSH  6B03923FBC3B7000",
		"FLUSH 6b03923fbc3b7000", "FLUSH ../../../etc/passwd", "FLUSH 6B03923FBC3B700",
		"FLUSH 6B03923FBC3B70000", "FLUSH\t6B03923FBC3B7000", "FLUSH 6B03923FBC3B7000\n",
		"FLUSH \xc3\xa9", "HOLD", "RELEASE", "DELETE", "HOLD ALL", "DELETE ALL 6B03923FBC3B7000",
		"FLUSH ALL", "STATUS 6B03923FBC3B7000", "STATUS JSONX", "STATUS PROMETHEUS JSON",
		"STATUS PROMETHEUSX", "LIST PROMETHEUS", "SHOW", "SHOW BODY",
		"SHOW 6B03923FBC3B7000 6B03923FBC3B7001", "LIST ALL",
	};
	(void)state;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = '\0';
		if (parse(bad[i], &req, err) != -1)
			fail_msg("accepted \"%s\"", bad[i]);
		assert_true(err[0] != '\0');
	}
	memset(big, 'A', sizeof big - 1);
	memcpy(big, "FLUSH ", 6);
	assert_int_equal(parse(big, &req, err), -1);
	assert_non_null(strstr(err, "longer than"));
	/* more ids than one request may carry */
	char many[CTL_LINE_MAX];
	size_t off = (size_t)snprintf(many, sizeof many, "FLUSH");
	for (int i = 0; i <= CTL_ARGS_MAX && off + 18 < sizeof many; i++)
		off += (size_t)snprintf(many + off, sizeof many - off, " %016X", i);
	assert_int_equal(parse(many, &req, err), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_flush),
		cmocka_unit_test(test_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

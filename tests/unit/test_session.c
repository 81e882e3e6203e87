/*
 * Unit tests of a delivery session, in-process (tests/unit/session_harness.h):
 * the real session, transaction, connection and dispatch code against a
 * scripted smarthost on 127.0.0.1, with a fake clock.
 *
 *   - each state's deadline is the one its row of DELIVERY_STATES names
 *     (timeout, data_timeout, connect_timeout), and when it passes the
 *     recipients are deferred with the state's phrase;
 *   - each failure kind the smarthost can cause gives the outcome and
 *     status its row of the trouble table says;
 *   - every run ends with each recipient decided exactly once, the
 *     message given back and the session freed (at the top of a callback:
 *     the sanitizer build checks the memory).
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "session_harness.h"

#define GREET   "220 hx.test ESMTP\r\n"
#define EHLO_OK "250-hx.test\r\n250-8BITMIME\r\n250 SIZE 1000000\r\n"
#define EHLO_PL "250-hx.test\r\n250-8BITMIME\r\n250-PIPELINING\r\n250 SIZE 1000000\r\n"
#define OK      "250 2.0.0 ok\r\n"
#define GO      "354 go ahead\r\n"
#define BYE     "221 2.0.0 bye\r\n"

static int
setup(void **state)
{
	(void)state;
	return hx_setup("    timeout = 60s\n    data_timeout = 10m\n    connect_timeout = 30s");
}

static void
run(size_t nrcpt, const char *const *script)
{
	hx_start(nrcpt, script);
	assert_int_equal(hx_run(), 0);
}

static void
test_delivered_with_each_state_deadline(void **state)
{
	static const char *const script[] = { GREET, EHLO_OK, OK, OK, OK, GO, OK, BYE, NULL };

	(void)state;
	run(2, script);
	assert_true(hx_all_decided());
	assert_int_equal(HX.out[0].o, OUTCOME_SENT);
	assert_int_equal(HX.out[1].o, OUTCOME_SENT);
	assert_string_equal(HX.commands[0], "EHLO relay.test");
	assert_true(strncmp(HX.commands[1], "MAIL FROM:<a@example.org>", 25) == 0);
	assert_string_equal(HX.commands[2], "RCPT TO:<r0@example.net>");
	assert_string_equal(HX.commands[3], "RCPT TO:<r1@example.net>");
	assert_string_equal(HX.commands[4], "DATA");
	assert_string_equal(HX.commands[5], "<body>");
	assert_string_equal(HX.commands[6], "QUIT");
	/* the deadlines, from the state table: none while resolving */
	assert_true(HX.armed_set[DS_RESOLVE] && HX.armed[DS_RESOLVE] == 0);
	assert_int_equal(HX.armed[DS_CONNECT], 30);        /* connect_timeout, the whole phase */
	assert_int_equal(HX.armed[DS_GREETING], 60);       /* timeout */
	assert_int_equal(HX.armed[DS_EHLO], 60);
	assert_int_equal(HX.armed[DS_ENVELOPE], 60);
	assert_int_equal(HX.armed[DS_BODY], 60);           /* timeout, per step of progress */
	assert_int_equal(HX.armed[DS_DOT], 600);           /* data_timeout */
	assert_int_equal(HX.armed[DS_QUIT], 60);
	hx_end();
}

/* The server stops answering at a state: its deadline passes, the recipients are deferred. */
static void
test_each_deadline_passes(void **state)
{
	static const struct {
		const char *script[10];
		enum dstate st;
		unsigned secs;
		const char *phrase;
	} cases[] = {
		{ { HX_STALL, NULL }, DS_GREETING, 60, "waiting for the greeting" },
		{ { GREET, HX_STALL, NULL }, DS_EHLO, 60, "sending EHLO" },
		{ { GREET, EHLO_OK, HX_STALL, NULL }, DS_ENVELOPE, 60, "sending MAIL/RCPT/DATA" },
		{ { GREET, EHLO_OK, OK, OK, HX_STALL, NULL }, DS_ENVELOPE, 60, "sending MAIL/RCPT/DATA" },
		{ { GREET, EHLO_OK, OK, OK, GO, HX_STALL, NULL }, DS_DOT, 600,
		    "waiting for the reply to the end of data" },
		/* a greeting that never ends: lines keep nothing alive past the deadline */
		{ { "220-a greeting\r\n220-that goes on\r\n220-and on\r\n", NULL }, DS_GREETING, 60,
		    "waiting for the greeting" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		run(1, cases[i].script);
		assert_true(HX.deadline_pending);
		assert_int_equal(HX.session->state, cases[i].st);
		assert_int_equal(HX.armed[cases[i].st], cases[i].secs);
		assert_int_equal(hx_fire(), 0);
		assert_true(hx_all_decided());
		assert_int_equal(HX.out[0].o, OUTCOME_DEFERRED);
		assert_string_equal(HX.out[0].dsn, "4.4.2");
		assert_non_null(strstr(HX.out[0].text, "timed out while"));
		assert_non_null(strstr(HX.out[0].text, cases[i].phrase));
		hx_end();
	}
}

/* Failure kinds caused by the smarthost: outcome and status per recipient. */
static void
test_failure_kinds(void **state)
{
	static const struct {
		const char *name;
		const char *script[16];
		size_t nrcpt;
		enum outcome o[2];
		const char *dsn[2];    /* what the session passes; "" = from the reply */
	} cases[] = {
		{ "GREETING_REFUSED", { "554 5.7.1 go away\r\n", NULL }, 1,
		    { OUTCOME_DEFERRED }, { "" } },
		{ "EHLO_REFUSED", { GREET, "550 no\r\n", "550 no HELO either\r\n", NULL }, 1,
		    { OUTCOME_DEFERRED }, { "" } },
		{ "PROTOCOL", { "hello there\r\n", NULL }, 1, { OUTCOME_DEFERRED }, { "4.5.0" } },
		{ "LOST", { GREET, EHLO_OK, OK, HX_CLOSE, NULL }, 2,
		    { OUTCOME_DEFERRED, OUTCOME_DEFERRED }, { "4.4.2", "4.4.2" } },
		{ "MAIL_REFUSED 5xx", { GREET, EHLO_OK, "553 5.1.8 bad sender\r\n", OK, BYE, NULL }, 2,
		    { OUTCOME_BOUNCED, OUTCOME_BOUNCED }, { "", "" } },
		{ "RCPT_REFUSED", { GREET, EHLO_OK, OK, OK, "550 5.1.1 no such user\r\n", GO, OK, BYE, NULL },
		    2, { OUTCOME_SENT, OUTCOME_BOUNCED }, { "", "" } },
		{ "RCPT 4xx", { GREET, EHLO_OK, OK, "450 4.2.0 later\r\n", OK, GO, OK, BYE, NULL },
		    2, { OUTCOME_DEFERRED, OUTCOME_SENT }, { "", "" } },
		{ "DATA_REFUSED", { GREET, EHLO_OK, OK, OK, OK, "554 5.7.0 no\r\n", OK, BYE, NULL }, 2,
		    { OUTCOME_BOUNCED, OUTCOME_BOUNCED }, { "", "" } },
		{ "DOT_REPLY 4xx", { GREET, EHLO_OK, OK, OK, GO, "451 4.3.0 try later\r\n", BYE, NULL }, 1,
		    { OUTCOME_DEFERRED }, { "" } },
		{ "CLOSING", { GREET, EHLO_OK, "421 4.3.2 closing\r\n", NULL }, 2,
		    { OUTCOME_DEFERRED, OUTCOME_DEFERRED }, { "", "" } },
		{ "RCPT_LIMIT carry", { GREET, EHLO_OK, OK, OK, "452 4.5.3 too many\r\n", GO, OK,
		    OK, OK, GO, OK, BYE, NULL }, 2, { OUTCOME_SENT, OUTCOME_SENT }, { "", "" } },
		{ "pipelined", { GREET, EHLO_PL, OK, OK, "550 5.1.1 no\r\n", GO, OK, BYE, NULL }, 2,
		    { OUTCOME_SENT, OUTCOME_BOUNCED }, { "", "" } },
		{ "QUIT answered by closing", { GREET, EHLO_OK, OK, OK, GO, OK, HX_CLOSE, NULL }, 1,
		    { OUTCOME_SENT }, { "" } },
	};
	size_t i, r;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		run(cases[i].nrcpt, cases[i].script);
		if (HX.deadline_pending)
			assert_int_equal(hx_fire(), 0);
		if (!hx_all_decided())
			fail_msg("%s: not every recipient decided once (released %d, n0 %d)", cases[i].name,
			    HX.released, HX.out[0].n);
		for (r = 0; r < cases[i].nrcpt; r++) {
			if (HX.out[r].o != cases[i].o[r])
				fail_msg("%s: recipient %zu: outcome %d, want %d (%s)", cases[i].name, r,
				    HX.out[r].o, cases[i].o[r], HX.out[r].text);
			assert_string_equal(HX.out[r].dsn, cases[i].dsn[r]);
		}
		hx_end();
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_delivered_with_each_state_deadline),
		cmocka_unit_test(test_each_deadline_passes),
		cmocka_unit_test(test_failure_kinds),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}

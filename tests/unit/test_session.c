/*
 * Unit tests of a delivery session, in-process (tests/unit/session_harness.h):
 * the real session, transaction, connection and dispatch code against a
 * scripted smarthost on 127.0.0.1, with a fake clock.
 *
 *   - each state's deadline is the one its row of DELIVERY_STATES names
 *     (timeout, data_timeout, connect_timeout), and when it passes the
 *     recipients are deferred with the state's phrase;
 *   - each failure kind gives the outcome, status and kind its row of
 *     the trouble table says, with the configuration and message each
 *     needs (TLS policies and a real STARTTLS, AUTH, a SOCKS5 proxy, a
 *     name that does not resolve, a closed port, 8-bit and non-ASCII
 *     mail, an old message), and every kind of lib/trouble.h has a case
 *     or a named reason why it is tested elsewhere;
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

#include "delivery.h"
#include "session_harness.h"
#include "trouble.h"

#define GREET   "220 hx.test ESMTP\r\n"
#define EHLO_OK "250-hx.test\r\n250-8BITMIME\r\n250 SIZE 1000000\r\n"
#define EHLO_PL "250-hx.test\r\n250-8BITMIME\r\n250-PIPELINING\r\n250 SIZE 1000000\r\n"
#define OK      "250 2.0.0 ok\r\n"
#define GO      "354 go ahead\r\n"
#define BYE     "221 2.0.0 bye\r\n"
#define EHLO_TLS  "250-hx.test\r\n250-8BITMIME\r\n250-STARTTLS\r\n250 SIZE 1000000\r\n"
#define EHLO_AUTH "250-hx.test\r\n250-8BITMIME\r\n250-AUTH PLAIN LOGIN\r\n250 SIZE 1000000\r\n"
#define EHLO_7BIT "250-hx.test\r\n250 SIZE 1000000\r\n"

/* The failure kinds the runs recorded, for test_every_kind_has_a_case(). */
static int seen[TK_COUNT];

/* Note the kinds of a run's outcomes. */
static void
note_kinds(size_t nrcpt)
{
	size_t r;

	for (r = 0; r < nrcpt; r++) {
		int k = trouble_by_name(HX.out[r].kind);
		if (k < 0)
			fail_msg("recipient %zu: no failure kind recorded (\"%s\")", r, HX.out[r].kind);
		seen[k]++;
	}
}

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

/*
 * Nothing more to send: the connection waits in IDLE (SESSION_IDLE_SECS,
 * the state table's deadline) for the next message, then QUITs; a server
 * that closes it meanwhile ends the session quietly, with no outcome.
 */
static void
test_idle_then_quit(void **state)
{
	static const char *const script[] = { GREET, EHLO_OK, OK, OK, GO, OK, BYE, NULL };

	(void)state;
	session_reuse = 1;
	run(1, script);
	assert_true(HX.deadline_pending);
	assert_int_equal(HX.session->state, DS_IDLE);
	assert_int_equal(HX.armed[DS_IDLE], 2);	/* reuse_time's default */
	assert_int_equal(HX.ncommands, 5);	/* EHLO MAIL RCPT DATA <body>: no QUIT yet */
	assert_int_equal(HX.out[0].n, 1);
	assert_int_equal(HX.out[0].o, OUTCOME_SENT);
	assert_int_equal(hx_fire(), 0);		/* no next message came */
	assert_string_equal(HX.commands[5], "QUIT");
	assert_true(hx_all_decided());
	hx_end();

	run(1, script);
	assert_int_equal(HX.session->state, DS_IDLE);
	hx_server_close();			/* the server's own idle timeout */
	assert_int_equal(hx_run(), 0);
	assert_int_equal(delivery_sessions(), 0);
	assert_int_equal(HX.ncommands, 5);
	assert_true(hx_all_decided());		/* one outcome each: the close decided nothing */
	assert_int_equal(HX.out[0].o, OUTCOME_SENT);
	hx_end();

	session_reuse = 0;
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
		assert_string_equal(HX.out[0].kind, "TIMEOUT");
		note_kinds(1);
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
		const char *kind[2];
	} cases[] = {
		{ "GREETING_REFUSED", { "554 5.7.1 go away\r\n", NULL }, 1,
		    { OUTCOME_DEFERRED }, { "" }, { "GREETING_REFUSED" } },
		{ "EHLO_REFUSED", { GREET, "550 no\r\n", "550 no HELO either\r\n", NULL }, 1,
		    { OUTCOME_DEFERRED }, { "" }, { "EHLO_REFUSED" } },
		{ "PROTOCOL", { "hello there\r\n", NULL }, 1, { OUTCOME_DEFERRED }, { "4.5.0" }, { "PROTOCOL" } },
		{ "LOST", { GREET, EHLO_OK, OK, HX_CLOSE, NULL }, 2,
		    { OUTCOME_DEFERRED, OUTCOME_DEFERRED }, { "4.4.2", "4.4.2" }, { "LOST", "LOST" } },
		{ "MAIL_REFUSED 5xx", { GREET, EHLO_OK, "553 5.1.8 bad sender\r\n", OK, BYE, NULL }, 2,
		    { OUTCOME_BOUNCED, OUTCOME_BOUNCED }, { "", "" }, { "MAIL_REFUSED", "MAIL_REFUSED" } },
		{ "RCPT_REFUSED", { GREET, EHLO_OK, OK, OK, "550 5.1.1 no such user\r\n", GO, OK, BYE, NULL },
		    2, { OUTCOME_SENT, OUTCOME_BOUNCED }, { "", "" }, { "DOT_REPLY", "RCPT_REFUSED" } },
		{ "RCPT 4xx", { GREET, EHLO_OK, OK, "450 4.2.0 later\r\n", OK, GO, OK, BYE, NULL },
		    2, { OUTCOME_DEFERRED, OUTCOME_SENT }, { "", "" }, { "RCPT_REFUSED", "DOT_REPLY" } },
		{ "DATA_REFUSED", { GREET, EHLO_OK, OK, OK, OK, "554 5.7.0 no\r\n", OK, BYE, NULL }, 2,
		    { OUTCOME_BOUNCED, OUTCOME_BOUNCED }, { "", "" }, { "DATA_REFUSED", "DATA_REFUSED" } },
		{ "DOT_REPLY 4xx", { GREET, EHLO_OK, OK, OK, GO, "451 4.3.0 try later\r\n", BYE, NULL }, 1,
		    { OUTCOME_DEFERRED }, { "" }, { "DOT_REPLY" } },
		{ "CLOSING", { GREET, EHLO_OK, "421 4.3.2 closing\r\n", NULL }, 2,
		    { OUTCOME_DEFERRED, OUTCOME_DEFERRED }, { "", "" }, { "CLOSING", "CLOSING" } },
		{ "RCPT_LIMIT carry", { GREET, EHLO_OK, OK, OK, "452 4.5.3 too many\r\n", GO, OK,
		    OK, OK, GO, OK, BYE, NULL }, 2, { OUTCOME_SENT, OUTCOME_SENT }, { "", "" }, { "DOT_REPLY", "DOT_REPLY" } },
		{ "pipelined", { GREET, EHLO_PL, OK, OK, "550 5.1.1 no\r\n", GO, OK, BYE, NULL }, 2,
		    { OUTCOME_SENT, OUTCOME_BOUNCED }, { "", "" }, { "DOT_REPLY", "RCPT_REFUSED" } },
		{ "QUIT answered by closing", { GREET, EHLO_OK, OK, OK, GO, OK, HX_CLOSE, NULL }, 1,
		    { OUTCOME_SENT }, { "" }, { "DOT_REPLY" } },
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
			if (strcmp(HX.out[r].kind, cases[i].kind[r]) != 0)
				fail_msg("%s: recipient %zu: kind %s, want %s", cases[i].name, r, HX.out[r].kind,
				    cases[i].kind[r]);
		}
		note_kinds(cases[i].nrcpt);
		hx_end();
	}
}

/*
 * Kinds that need another configuration (TLS policies, AUTH, a proxy,
 * another host) or another message: each case sets both, runs, and
 * checks what the kind's row says.
 */
static void
test_kinds_of_each_step(void **state)
{
	static char socks[200];
	enum { HOST_SCRIPTED, HOST_CLOSED, HOST_UNRESOLVABLE };
	static const struct {
		const char *kind;
		int where;
		const char *keys;               /* the smarthost's keys */
		struct hx_opts opt;
		const char *script[16];
		size_t nrcpt;
		enum outcome o[2];
		const char *dsn[2];
		const char *kinds[2];
	} cases[] = {
		{ "DNS", HOST_UNRESOLVABLE, "    tls = disabled", { 0 }, { NULL }, 1,
		    { OUTCOME_DEFERRED }, { "4.4.3" }, { "DNS" } },
		{ "CONNECT", HOST_CLOSED, "    tls = disabled", { 0 }, { NULL }, 1,
		    { OUTCOME_DEFERRED }, { "4.4.1" }, { "CONNECT" } },
		{ "SOCKS", HOST_SCRIPTED, NULL /* socks */, { 0 }, { "\005\377", NULL }, 1,
		    { OUTCOME_DEFERRED }, { "4.4.1" }, { "SOCKS" } },
		{ "TLS_NOT_OFFERED", HOST_SCRIPTED, "    tls = required", { 0 }, { GREET, EHLO_OK, NULL }, 1,
		    { OUTCOME_DEFERRED }, { "4.7.4" }, { "TLS_NOT_OFFERED" } },
		{ "TLS_REFUSED", HOST_SCRIPTED, "    tls = required", { 0 },
		    { GREET, EHLO_TLS, "454 4.7.0 TLS not available\r\n", NULL }, 1,
		    { OUTCOME_DEFERRED }, { "4.7.4" }, { "TLS_REFUSED" } },
		{ "TLS_INJECTION", HOST_SCRIPTED, "    tls = required", { 0 },
		    { GREET, EHLO_TLS, "220 2.0.0 go ahead\r\n250 injected\r\n", NULL }, 1,
		    { OUTCOME_DEFERRED }, { "4.7.0" }, { "TLS_INJECTION" } },
		{ "TLS_HANDSHAKE", HOST_SCRIPTED, "    tls = required", { 0 },
		    { GREET, EHLO_TLS, "220 2.0.0 go ahead\r\n", NULL }, 1,
		    { OUTCOME_DEFERRED }, { "4.7.5" }, { "TLS_HANDSHAKE" } },
		{ "TLS_UNTRUSTED", HOST_SCRIPTED, "    tls = required", { 0 },
		    { GREET, EHLO_TLS, "220 2.0.0 go ahead\r\n", HX_TLS, NULL }, 1,
		    { OUTCOME_DEFERRED }, { "4.7.5" }, { "TLS_UNTRUSTED" } },
		{ "STARTTLS then mail", HOST_SCRIPTED, "    tls = required\n    tls_verify = no", { 0 },
		    { GREET, EHLO_TLS, "220 2.0.0 go ahead\r\n", HX_TLS, EHLO_OK, OK, OK, GO, OK, BYE, NULL }, 1,
		    { OUTCOME_SENT }, { "" }, { "DOT_REPLY" } },
		{ "AUTH_NOT_OFFERED", HOST_SCRIPTED, "    tls = disabled\n    username = u\n    password = p\n"
		    "    auth_allow_plaintext = yes", { 0 }, { GREET, EHLO_OK, NULL }, 1,
		    { OUTCOME_DEFERRED }, { "4.7.0" }, { "AUTH_NOT_OFFERED" } },
		{ "AUTH_PLAINTEXT", HOST_SCRIPTED, "    tls = disabled\n    username = u\n    password = p", { 0 },
		    { GREET, EHLO_AUTH, NULL }, 1, { OUTCOME_DEFERRED }, { "4.7.0" }, { "AUTH_PLAINTEXT" } },
		{ "AUTH_REJECTED", HOST_SCRIPTED, "    tls = disabled\n    username = u\n    password = p\n"
		    "    auth_allow_plaintext = yes", { 0 },
		    { GREET, EHLO_AUTH, "535 5.7.8 authentication failed\r\n", NULL }, 1,
		    { OUTCOME_DEFERRED }, { "4.7.0" }, { "AUTH_REJECTED" } },
		{ "AUTH_EXCHANGE", HOST_SCRIPTED, "    tls = disabled\n    username = u\n    password = p\n"
		    "    auth = login\n    auth_allow_plaintext = yes", { 0 },
		    { GREET, EHLO_AUTH, "334 !!not base64!!\r\n", NULL }, 1,
		    { OUTCOME_DEFERRED }, { "4.7.0" }, { "AUTH_EXCHANGE" } },
		{ "AUTH_SECRET", HOST_SCRIPTED, "    tls = disabled\n    username = u\n"
		    "    password_command = \"exit 3\"\n    auth_allow_plaintext = yes", { 0 },
		    { GREET, EHLO_AUTH, NULL }, 1, { OUTCOME_DEFERRED }, { "4.7.0" }, { "AUTH_SECRET" } },
		{ "AUTH then mail", HOST_SCRIPTED, "    tls = disabled\n    username = u\n    password = p\n"
		    "    auth_allow_plaintext = yes", { 0 },
		    { GREET, EHLO_AUTH, "235 2.7.0 ok\r\n", OK, OK, GO, OK, BYE, NULL }, 1,
		    { OUTCOME_SENT }, { "" }, { "DOT_REPLY" } },
		{ "COMMAND_TOO_LONG", HOST_SCRIPTED, "    tls = disabled", { .long_rcpt = 1 },
		    { GREET, EHLO_OK, OK, NULL }, 1, { OUTCOME_DEFERRED }, { "4.3.0" }, { "COMMAND_TOO_LONG" } },
		{ "SPOOL_READ", HOST_SCRIPTED, "    tls = disabled", { .no_content = 1 },
		    { GREET, EHLO_OK, OK, OK, GO, OK, BYE, NULL }, 1,
		    { OUTCOME_DEFERRED }, { "4.3.0" }, { "SPOOL_READ" } },
		{ "TOO_BIG", HOST_SCRIPTED, "    tls = disabled", { 0 },
		    { GREET, "250-hx.test\r\n250 SIZE 10\r\n", BYE, NULL }, 1,
		    { OUTCOME_BOUNCED }, { "5.3.4" }, { "TOO_BIG" } },
		{ "NEEDS_SMTPUTF8", HOST_SCRIPTED, "    tls = disabled", { .utf8_rcpt = 1 },
		    { GREET, EHLO_OK, BYE, NULL }, 2,
		    { OUTCOME_BOUNCED, OUTCOME_BOUNCED }, { "5.6.7", "5.6.7" }, { "NEEDS_SMTPUTF8", "NEEDS_SMTPUTF8" } },
		{ "NOT_7BIT", HOST_SCRIPTED, "    tls = disabled", { .eightbit = 1 },
		    { GREET, EHLO_7BIT, BYE, NULL }, 1, { OUTCOME_BOUNCED }, { "5.6.3" }, { "NOT_7BIT" } },
		/* a reply while the body is still going out: the accepted get it, the carried are abandoned */
		{ "BODY_CUT", HOST_SCRIPTED, "    tls = disabled", { .big = 1 },
		    { GREET, EHLO_OK, OK, OK, "452 4.5.3 too many recipients\r\n",
		      "354 go ahead\r\n554 5.0.0 stop right there\r\n", NULL }, 2,
		    { OUTCOME_BOUNCED, OUTCOME_DEFERRED }, { "", "" }, { "BODY_CUT", "ABANDONED" } },
		/* DATA refused with a recipient carried: RSET before its transaction, refused */
		{ "RSET_REFUSED", HOST_SCRIPTED, "    tls = disabled", { 0 },
		    { GREET, EHLO_OK, OK, OK, "452 4.5.3 too many recipients\r\n", "554 5.7.0 no\r\n",
		      "500 5.5.1 no RSET here\r\n", BYE, NULL }, 2,
		    { OUTCOME_BOUNCED, OUTCOME_DEFERRED }, { "", "" }, { "DATA_REFUSED", "RSET_REFUSED" } },
		/* deferred once more after max_queue_time (1h in the harness): bounced instead */
		{ "EXPIRED", HOST_SCRIPTED, "    tls = disabled", { .age = 7200 },
		    { GREET, EHLO_OK, OK, "450 4.2.0 later\r\n", BYE, BYE, NULL }, 1,
		    { OUTCOME_BOUNCED }, { "4.4.7" }, { "EXPIRED" } },
	};
	size_t i, r;

	(void)state;
	snprintf(socks, sizeof socks, "    tls = disabled\n    proxy = \"socks5://127.0.0.1:%u\"", hx_port());
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *host = cases[i].where == HOST_UNRESOLVABLE ? "nowhere.invalid" :
		    cases[i].keys == NULL ? "smtp.example.net" : NULL;
		unsigned port = cases[i].where == HOST_CLOSED ? hx_closed_port() :
		    cases[i].keys == NULL ? 25 : 0;
		if (hx_config(host, port, cases[i].keys ? cases[i].keys : socks) == -1)
			fail_msg("%s: the configuration was refused", cases[i].kind);
		HX.opt = cases[i].opt;
		hx_start(cases[i].nrcpt, cases[i].script);
		assert_int_equal(hx_run(), 0);
		if (HX.deadline_pending)
			assert_int_equal(hx_fire(), 0);
		if (!hx_all_decided())
			fail_msg("%s: not every recipient decided once (released %d, n0 %d)", cases[i].kind,
			    HX.released, HX.out[0].n);
		for (r = 0; r < cases[i].nrcpt; r++) {
			if (HX.out[r].o != cases[i].o[r] || strcmp(HX.out[r].kind, cases[i].kinds[r]) != 0 ||
			    strcmp(HX.out[r].dsn, cases[i].dsn[r]) != 0)
				fail_msg("%s: recipient %zu: outcome %d kind %s dsn %s, want %d %s %s (%s)",
				    cases[i].kind, r, HX.out[r].o, HX.out[r].kind, HX.out[r].dsn, cases[i].o[r],
				    cases[i].kinds[r], cases[i].dsn[r], HX.out[r].text);
		}
		note_kinds(cases[i].nrcpt);
		hx_end();
	}
	assert_int_equal(hx_config(NULL, 0, NULL), 0);	/* back to the plain smarthost */
}

/*
 * Every failure kind of the table was recorded by some case above, but
 * those that cannot be recorded in-process, each with its reason.  A kind
 * added to lib/trouble.h without a case fails here.
 */
static void
test_every_kind_has_a_case(void **state)
{
	static const struct {
		const char *kind;
		const char *why;
	} elsewhere[] = {
		{ "TLS_SETUP", "our own TLS library failing to make a connection; not provoked here" },
		{ "AUTH_NO_SECRET", "a username without a secret is refused when the configuration loads "
		    "(the session's check is a second line of defence)" },
		{ "AUTH_TOKEN", "needs an OAuth2 token endpoint: tests/integration/test_oauth2.py" },
		{ "RCPT_LIMIT", "never recorded: the recipient goes in the next transaction "
		    "(the \"RCPT_LIMIT carry\" case)" },
	};
	int k, missing = 0;
	size_t j;

	(void)state;
	for (k = 0; k < TK_COUNT; k++) {
		const char *name = trouble_get((enum trouble_kind)k)->name;
		int exempt = 0;
		for (j = 0; j < sizeof elsewhere / sizeof elsewhere[0]; j++)
			exempt |= strcmp(elsewhere[j].kind, name) == 0;
		if (seen[k] == 0 && !exempt) {
			fprintf(stderr, "failure kind %s: no case records it\n", name);
			missing++;
		}
		if (seen[k] > 0 && exempt) {
			fprintf(stderr, "failure kind %s: recorded, so it needs no exemption\n", name);
			missing++;
		}
	}
	assert_int_equal(missing, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_delivered_with_each_state_deadline),
		cmocka_unit_test(test_each_deadline_passes),
		cmocka_unit_test(test_idle_then_quit),
		cmocka_unit_test(test_failure_kinds),
		cmocka_unit_test(test_kinds_of_each_step),
		cmocka_unit_test(test_every_kind_has_a_case),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}

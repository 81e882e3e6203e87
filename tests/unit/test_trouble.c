/*
 * Unit tests for daemon/delivery_trouble.c: the failure-kind table.
 *
 * The expected table below is written out by hand, row by row, from what
 * the delivery code did before the table existed (delivery.c,
 * delivery_conn.c, delivery_auth.c, queue.c's expiry): each kind's scope,
 * decision, enhanced status code (NULL: the smarthost's own, from its
 * reply), counter and sentence.  A change to any row must change this
 * file too, on purpose.  The outcome a kind gives for each reply class is
 * checked from the decision.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "daemon/delivery_trouble.h"

struct row {
	enum trouble_kind k;
	const char *name;
	enum trouble_scope scope;
	enum trouble_decision decision;
	const char *status;
	enum trouble_counter counter;
	const char *sentence;
};

static const struct row expected[] = {
	{ TK_DNS, "DNS", TS_SMARTHOST, TD_NEXT_SMARTHOST, "4.4.3", TC_NONE,
	    "the host name of the smarthost (or of its proxy) did not resolve" },
	{ TK_CONNECT, "CONNECT", TS_SMARTHOST, TD_NEXT_SMARTHOST, "4.4.1", TC_NONE,
	    "no address of the smarthost took the connection" },
	{ TK_SOCKS, "SOCKS", TS_SMARTHOST, TD_NEXT_SMARTHOST, "4.4.1", TC_NONE,
	    "the SOCKS5 proxy did not open the tunnel to the smarthost" },
	{ TK_GREETING_REFUSED, "GREETING_REFUSED", TS_SMARTHOST, TD_NEXT_SMARTHOST, NULL, TC_NONE,
	    "the smarthost refused to talk to us in its greeting" },
	{ TK_EHLO_REFUSED, "EHLO_REFUSED", TS_SMARTHOST, TD_NEXT_SMARTHOST, NULL, TC_NONE,
	    "the smarthost refused EHLO (or HELO)" },
	{ TK_TLS_NOT_OFFERED, "TLS_NOT_OFFERED", TS_SMARTHOST, TD_NEXT_SMARTHOST, "4.7.4", TC_TLS,
	    "TLS is required but the smarthost does not offer STARTTLS" },
	{ TK_TLS_REFUSED, "TLS_REFUSED", TS_SMARTHOST, TD_NEXT_SMARTHOST, "4.7.4", TC_TLS,
	    "TLS is required but the smarthost refused STARTTLS" },
	{ TK_TLS_INJECTION, "TLS_INJECTION", TS_SESSION, TD_NEXT_SMARTHOST, "4.7.0", TC_TLS,
	    "the smarthost sent data after its reply to STARTTLS" },
	{ TK_TLS_SETUP, "TLS_SETUP", TS_SESSION, TD_NEXT_SMARTHOST, "4.7.0", TC_TLS,
	    "TLS could not be set up on our side" },
	{ TK_TLS_HANDSHAKE, "TLS_HANDSHAKE", TS_SMARTHOST, TD_NEXT_SMARTHOST, "4.7.5", TC_TLS,
	    "the TLS handshake with the smarthost failed" },
	{ TK_TLS_UNTRUSTED, "TLS_UNTRUSTED", TS_SMARTHOST, TD_NEXT_SMARTHOST, "4.7.5", TC_TLS,
	    "the smarthost's certificate is not trusted" },
	{ TK_AUTH_NOT_OFFERED, "AUTH_NOT_OFFERED", TS_SMARTHOST, TD_NEXT_SMARTHOST, "4.7.0", TC_STEP,
	    "the smarthost offers no AUTH mechanism we may use" },
	{ TK_AUTH_PLAINTEXT, "AUTH_PLAINTEXT", TS_SMARTHOST, TD_NEXT_SMARTHOST, "4.7.0", TC_STEP,
	    "credentials would go over an unencrypted connection" },
	{ TK_AUTH_NO_SECRET, "AUTH_NO_SECRET", TS_SMARTHOST, TD_NEXT_SMARTHOST, "4.7.0", TC_STEP,
	    "the smarthost has a username but no secret" },
	{ TK_AUTH_SECRET, "AUTH_SECRET", TS_SMARTHOST, TD_NEXT_SMARTHOST, "4.7.0", TC_STEP,
	    "password_command gave no secret" },
	{ TK_AUTH_TOKEN, "AUTH_TOKEN", TS_SMARTHOST, TD_NEXT_SMARTHOST, "4.7.0", TC_STEP,
	    "no OAuth2 token could be had for the smarthost" },
	{ TK_AUTH_EXCHANGE, "AUTH_EXCHANGE", TS_SMARTHOST, TD_NEXT_SMARTHOST, "4.7.0", TC_STEP,
	    "the AUTH exchange with the smarthost broke down" },
	{ TK_AUTH_REJECTED, "AUTH_REJECTED", TS_SMARTHOST, TD_NEXT_SMARTHOST, "4.7.0", TC_STEP,
	    "the smarthost rejected our credentials" },
	{ TK_TIMEOUT, "TIMEOUT", TS_SESSION, TD_NEXT_SMARTHOST, "4.4.2", TC_STEP,
	    "the smarthost did not answer in time" },
	{ TK_LOST, "LOST", TS_SESSION, TD_NEXT_SMARTHOST, "4.4.2", TC_STEP,
	    "the connection to the smarthost was lost" },
	{ TK_PROTOCOL, "PROTOCOL", TS_SESSION, TD_NEXT_SMARTHOST, "4.5.0", TC_STEP,
	    "the smarthost's reply broke the SMTP protocol" },
	{ TK_COMMAND_TOO_LONG, "COMMAND_TOO_LONG", TS_SESSION, TD_NEXT_SMARTHOST, "4.3.0", TC_STEP,
	    "a command would be longer than this client sends" },
	{ TK_SPOOL_READ, "SPOOL_READ", TS_TRANSACTION, TD_RETRY, "4.3.0", TC_NONE,
	    "the queued content could not be read" },
	{ TK_TOO_BIG, "TOO_BIG", TS_MESSAGE, TD_BOUNCE, "5.3.4", TC_NONE,
	    "the message is larger than the smarthost's SIZE limit" },
	{ TK_NEEDS_SMTPUTF8, "NEEDS_SMTPUTF8", TS_MESSAGE, TD_BOUNCE, "5.6.7", TC_NONE,
	    "a non-ASCII address needs SMTPUTF8, which the smarthost does not offer" },
	{ TK_NOT_7BIT, "NOT_7BIT", TS_MESSAGE, TD_BOUNCE, "5.6.3", TC_NONE,
	    "8-bit content cannot be made 7-bit for a smarthost without 8BITMIME" },
	{ TK_MAIL_REFUSED, "MAIL_REFUSED", TS_TRANSACTION, TD_BY_REPLY, NULL, TC_NONE,
	    "the smarthost refused the sender (MAIL FROM)" },
	{ TK_RCPT_REFUSED, "RCPT_REFUSED", TS_RECIPIENT, TD_BY_REPLY, NULL, TC_NONE,
	    "the smarthost refused the recipient (RCPT TO)" },
	{ TK_RCPT_LIMIT, "RCPT_LIMIT", TS_RECIPIENT, TD_LATER, NULL, TC_NONE,
	    "the smarthost took no more recipients in this transaction (452)" },
	{ TK_DATA_REFUSED, "DATA_REFUSED", TS_TRANSACTION, TD_BY_REPLY, NULL, TC_NONE,
	    "the smarthost refused DATA" },
	{ TK_BODY_CUT, "BODY_CUT", TS_TRANSACTION, TD_BY_REPLY, NULL, TC_NONE,
	    "the smarthost replied while the body was being sent" },
	{ TK_DOT_REPLY, "DOT_REPLY", TS_TRANSACTION, TD_BY_REPLY, NULL, TC_NONE,
	    "the smarthost's reply to the end of data" },
	{ TK_CLOSING, "CLOSING", TS_TRANSACTION, TD_RETRY, NULL, TC_NONE,
	    "the smarthost is closing the connection (421)" },
	{ TK_ABANDONED, "ABANDONED", TS_TRANSACTION, TD_RETRY, NULL, TC_NONE,
	    "the connection ended before these recipients had their transaction" },
	{ TK_RSET_REFUSED, "RSET_REFUSED", TS_TRANSACTION, TD_RETRY, NULL, TC_NONE,
	    "the smarthost refused RSET between transactions" },
	{ TK_EXPIRED, "EXPIRED", TS_RECIPIENT, TD_BOUNCE, "4.4.7", TC_NONE,
	    "the message was queued longer than max_queue_time" },
};

#define NEXPECTED (sizeof expected / sizeof expected[0])

/* Every kind is pinned, in order, and nothing else. */
static void
test_every_kind_pinned(void **state)
{
	(void)state;
	assert_int_equal(NEXPECTED, TK_COUNT);
	for (size_t i = 0; i < NEXPECTED; i++)
		assert_int_equal(expected[i].k, i);
}

static void
test_rows(void **state)
{
	(void)state;
	for (size_t i = 0; i < NEXPECTED; i++) {
		const struct row *e = &expected[i];
		const struct trouble *t = trouble_get(e->k);
		assert_string_equal(t->name, e->name);
		assert_int_equal(t->scope, e->scope);
		assert_int_equal(t->decision, e->decision);
		if (e->status == NULL)
			assert_null(t->status);
		else
			assert_string_equal(t->status, e->status);
		assert_int_equal(t->counter, e->counter);
		assert_string_equal(t->sentence, e->sentence);
		/* a hint for every kind, one line, and a deferral never reports a 5.x.x */
		assert_non_null(t->hint);
		assert_true(strlen(t->hint) > 0 && strchr(t->hint, '\n') == NULL);
		if (t->status != NULL && t->decision != TD_BOUNCE)
			assert_int_equal(t->status[0], '4');
	}
}

/* What a recipient gets, for each reply class (0: no reply). */
static void
test_outcomes(void **state)
{
	static const int classes[] = { 0, 2, 3, 4, 5 };

	(void)state;
	for (size_t i = 0; i < NEXPECTED; i++) {
		for (size_t c = 0; c < sizeof classes / sizeof classes[0]; c++) {
			enum outcome want, got = trouble_outcome(expected[i].k, classes[c]);
			switch (expected[i].decision) {
			case TD_BOUNCE:
				want = OUTCOME_BOUNCED;
				break;
			case TD_BY_REPLY:
				want = classes[c] == 2 ? OUTCOME_SENT : classes[c] == 5 ? OUTCOME_BOUNCED :
				    OUTCOME_DEFERRED;
				break;
			default:
				want = OUTCOME_DEFERRED;
				break;
			}
			assert_int_equal(got, want);
		}
	}
	/* the rows the code relied on before the table, spelt out */
	assert_int_equal(trouble_outcome(TK_DOT_REPLY, 2), OUTCOME_SENT);
	assert_int_equal(trouble_outcome(TK_DOT_REPLY, 4), OUTCOME_DEFERRED);
	assert_int_equal(trouble_outcome(TK_RCPT_REFUSED, 5), OUTCOME_BOUNCED);
	assert_int_equal(trouble_outcome(TK_MAIL_REFUSED, 4), OUTCOME_DEFERRED);
	assert_int_equal(trouble_outcome(TK_TIMEOUT, 5), OUTCOME_DEFERRED);
	assert_int_equal(trouble_outcome(TK_EXPIRED, 0), OUTCOME_BOUNCED);
	assert_int_equal(trouble_outcome(TK_CLOSING, 4), OUTCOME_DEFERRED);
}

static void
test_names(void **state)
{
	(void)state;
	assert_string_equal(trouble_scope_name(TS_SMARTHOST), "smarthost");
	assert_string_equal(trouble_decision_name(TD_NEXT_SMARTHOST), "next smarthost");
	assert_string_equal(trouble_decision_name(TD_BY_REPLY), "by reply");
	/* out of range: a row, never a crash */
	assert_non_null(trouble_get((enum trouble_kind)TK_COUNT)->name);
	/* the name an envelope carries ("rkind") leads back to its row; others to none */
	for (int k = 0; k < TK_COUNT; k++)
		assert_int_equal(trouble_by_name(trouble_get((enum trouble_kind)k)->name), k);
	assert_int_equal(trouble_by_name("NO_SUCH_KIND"), -1);
	assert_int_equal(trouble_by_name(""), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_kind_pinned),
		cmocka_unit_test(test_rows),
		cmocka_unit_test(test_outcomes),
		cmocka_unit_test(test_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Unit tests for lib/smtp_reply.c: reply parsing, enhanced status codes,
 * the log summary and the EHLO capability list.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "smtp_reply.h"

/* Feed a NUL-terminated line; returns the status. */
static int
feed(struct smtp_reply *r, const char *line, char *err, size_t errlen)
{
	return smtp_reply_feed(r, line, strlen(line), err, errlen);
}

/* Feed lines until one does not return MORE; returns the last status. */
static int
feed_all(struct smtp_reply *r, const char *const *lines, size_t n)
{
	char err[128];
	size_t i;
	int st = SMTP_REPLY_ERROR;

	smtp_reply_init(r);
	for (i = 0; i < n; i++) {
		st = feed(r, lines[i], err, sizeof(err));
		if (st != SMTP_REPLY_MORE)
			break;
	}
	return st;
}

static void
test_init(void **state)
{
	struct smtp_reply r;

	(void)state;
	memset(&r, 0x5a, sizeof(r));
	smtp_reply_init(&r);
	assert_int_equal(r.code, 0);
	assert_int_equal(r.enh[0], -1);
	assert_int_equal(r.enh[1], -1);
	assert_int_equal(r.enh[2], -1);
	assert_int_equal(r.nlines, 0);
	assert_int_equal(r.complete, 0);
	assert_int_equal(r.textlen, 0);
	assert_string_equal(r.text, "");
}

static void
test_single_line(void **state)
{
	struct smtp_reply r;
	char err[128] = "";

	(void)state;
	smtp_reply_init(&r);
	assert_int_equal(feed(&r, "220 mx.example.com ESMTP ready", err,
	    sizeof(err)), SMTP_REPLY_DONE);
	assert_int_equal(r.code, 220);
	assert_int_equal(smtp_reply_class(&r), 2);
	assert_int_equal(r.complete, 1);
	assert_int_equal(r.nlines, 1);
	assert_string_equal(r.text, "mx.example.com ESMTP ready");
	assert_int_equal(r.textlen, strlen("mx.example.com ESMTP ready"));
	assert_int_equal(r.enh[0], -1);
}

static void
test_multiline(void **state)
{
	static const char *const lines[] = {
		"250-mx.example.com Hello",
		"250-PIPELINING",
		"250-SIZE 1000",
		"250 HELP",
	};
	struct smtp_reply r;
	char err[128];

	(void)state;
	smtp_reply_init(&r);
	assert_int_equal(feed(&r, lines[0], err, sizeof(err)), SMTP_REPLY_MORE);
	assert_int_equal(r.complete, 0);
	assert_int_equal(r.code, 250);
	assert_int_equal(feed(&r, lines[1], err, sizeof(err)), SMTP_REPLY_MORE);
	assert_int_equal(feed(&r, lines[2], err, sizeof(err)), SMTP_REPLY_MORE);
	assert_int_equal(feed(&r, lines[3], err, sizeof(err)), SMTP_REPLY_DONE);
	assert_int_equal(r.complete, 1);
	assert_int_equal(r.nlines, 4);
	assert_string_equal(r.text,
	    "mx.example.com Hello\nPIPELINING\nSIZE 1000\nHELP");
}

static void
test_bare_code(void **state)
{
	struct smtp_reply r;
	char err[128];

	(void)state;
	smtp_reply_init(&r);
	assert_int_equal(feed(&r, "250", err, sizeof(err)), SMTP_REPLY_DONE);
	assert_int_equal(r.code, 250);
	assert_string_equal(r.text, "");

	/* A bare code also ends a multiline reply. */
	smtp_reply_init(&r);
	assert_int_equal(feed(&r, "250-first", err, sizeof(err)),
	    SMTP_REPLY_MORE);
	assert_int_equal(feed(&r, "250", err, sizeof(err)), SMTP_REPLY_DONE);
	assert_string_equal(r.text, "first\n");

	/* "250 " with an empty text */
	smtp_reply_init(&r);
	assert_int_equal(feed(&r, "354 ", err, sizeof(err)), SMTP_REPLY_DONE);
	assert_int_equal(r.code, 354);
	assert_int_equal(smtp_reply_class(&r), 3);
	assert_string_equal(r.text, "");
}

static void
test_trailing_cr(void **state)
{
	struct smtp_reply r;
	char err[128];

	(void)state;
	smtp_reply_init(&r);
	assert_int_equal(feed(&r, "250-a\r", err, sizeof(err)),
	    SMTP_REPLY_MORE);
	assert_int_equal(feed(&r, "250 OK\r", err, sizeof(err)),
	    SMTP_REPLY_DONE);
	assert_string_equal(r.text, "a\nOK");

	smtp_reply_init(&r);
	assert_int_equal(feed(&r, "221\r", err, sizeof(err)), SMTP_REPLY_DONE);
	assert_int_equal(r.code, 221);
	assert_string_equal(r.text, "");
}

static void
test_enhanced(void **state)
{
	struct smtp_reply r;
	char err[128];

	(void)state;
	smtp_reply_init(&r);
	assert_int_equal(feed(&r, "250 2.1.5 Ok", err, sizeof(err)),
	    SMTP_REPLY_DONE);
	assert_int_equal(r.enh[0], 2);
	assert_int_equal(r.enh[1], 1);
	assert_int_equal(r.enh[2], 5);
	/* The code is kept in the text. */
	assert_string_equal(r.text, "2.1.5 Ok");

	smtp_reply_init(&r);
	feed(&r, "550 5.7.999", err, sizeof(err));
	assert_int_equal(r.enh[0], 5);
	assert_int_equal(r.enh[1], 7);
	assert_int_equal(r.enh[2], 999);

	smtp_reply_init(&r);
	feed(&r, "451-4.123.0 first line", err, sizeof(err));
	feed(&r, "451 5.0.0 ignored: only the first line counts", err,
	    sizeof(err));
	assert_int_equal(r.enh[0], 4);
	assert_int_equal(r.enh[1], 123);
	assert_int_equal(r.enh[2], 0);
}

static void
test_enhanced_invalid(void **state)
{
	static const char *const bad[] = {
		"250 5.0.0 class does not match",
		"550 2.0.0 class does not match",
		"354 3.0.0 no class 3 in RFC 3463",
		"250 2.1000.0 subject too long",
		"250 2.0.1000 detail too long",
		"250 2..0 empty subject",
		"250 2.0. empty detail",
		"250 2.0.0x glued",
		"250 2.0",
		"250 x2.0.0",
		"250 2-0-0",
		"250 -2.0.0",
	};
	struct smtp_reply r;
	char err[128];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		smtp_reply_init(&r);
		assert_int_equal(feed(&r, bad[i], err, sizeof(err)),
		    SMTP_REPLY_DONE);
		if (r.enh[0] != -1)
			fail_msg("enhanced code accepted in \"%s\"", bad[i]);
		assert_int_equal(r.enh[1], -1);
		assert_int_equal(r.enh[2], -1);
	}
	/* Only the first line is looked at. */
	smtp_reply_init(&r);
	feed(&r, "250-hello", err, sizeof(err));
	feed(&r, "250 2.0.0 second", err, sizeof(err));
	assert_int_equal(r.enh[0], -1);
}

static void
test_mismatched_codes(void **state)
{
	struct smtp_reply r;
	char err[128] = "";

	(void)state;
	smtp_reply_init(&r);
	assert_int_equal(feed(&r, "250-a", err, sizeof(err)), SMTP_REPLY_MORE);
	assert_int_equal(feed(&r, "251 b", err, sizeof(err)), SMTP_REPLY_ERROR);
	assert_string_equal(err, "reply code changed within a multiline reply");
	assert_int_equal(r.complete, 0);

	smtp_reply_init(&r);
	assert_int_equal(feed(&r, "250-a", err, sizeof(err)), SMTP_REPLY_MORE);
	assert_int_equal(feed(&r, "550 b", err, sizeof(err)), SMTP_REPLY_ERROR);
}

static void
test_bad_codes(void **state)
{
	static const char *const bad[] = {
		"", "2", "25", "220x", "2500", "2500 text", "150 intermediate",
		"199 x", "600 out of range", "099 x", "000", "1", "abc",
		"25a OK", "a50 OK", "260 second digit", "290 second digit",
		"2 0 OK", " 250 OK", "250\tOK", "250:OK", "-250 OK",
	};
	struct smtp_reply r;
	char err[128];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		smtp_reply_init(&r);
		err[0] = '\0';
		if (feed(&r, bad[i], err, sizeof(err)) != SMTP_REPLY_ERROR)
			fail_msg("accepted \"%s\"", bad[i]);
		assert_string_equal(err, "malformed reply code");
		assert_int_equal(r.code, 0);
		assert_int_equal(r.nlines, 0);
	}
	/* The extremes that are valid. */
	smtp_reply_init(&r);
	assert_int_equal(feed(&r, "200", err, sizeof(err)), SMTP_REPLY_DONE);
	smtp_reply_init(&r);
	assert_int_equal(feed(&r, "559 x", err, sizeof(err)), SMTP_REPLY_DONE);
	assert_int_equal(r.code, 559);
	assert_int_equal(smtp_reply_class(&r), 5);
}

static void
test_after_complete(void **state)
{
	struct smtp_reply r;
	char err[128];

	(void)state;
	smtp_reply_init(&r);
	assert_int_equal(feed(&r, "250 OK", err, sizeof(err)), SMTP_REPLY_DONE);
	assert_int_equal(feed(&r, "250 again", err, sizeof(err)),
	    SMTP_REPLY_ERROR);
	assert_string_equal(err, "reply line after the end of the reply");
	assert_string_equal(r.text, "OK");
	assert_int_equal(r.nlines, 1);
}

static void
test_too_many_lines(void **state)
{
	struct smtp_reply r;
	char err[128];
	size_t i;

	(void)state;
	smtp_reply_init(&r);
	for (i = 0; i < SMTP_REPLY_LINES_MAX - 1; i++)
		assert_int_equal(feed(&r, "250-x", err, sizeof(err)),
		    SMTP_REPLY_MORE);
	/* Line number SMTP_REPLY_LINES_MAX is still fine ... */
	assert_int_equal(feed(&r, "250 end", err, sizeof(err)),
	    SMTP_REPLY_DONE);
	assert_int_equal(r.nlines, SMTP_REPLY_LINES_MAX);

	/* ... one more is not. */
	smtp_reply_init(&r);
	for (i = 0; i < SMTP_REPLY_LINES_MAX; i++)
		assert_int_equal(feed(&r, "250-x", err, sizeof(err)),
		    SMTP_REPLY_MORE);
	assert_int_equal(feed(&r, "250 end", err, sizeof(err)),
	    SMTP_REPLY_ERROR);
	assert_string_equal(err, "too many lines in reply");
}

static void
test_overlong_line(void **state)
{
	struct smtp_reply r;
	char line[SMTP_REPLY_LINE_MAX + 3];
	char err[128];

	(void)state;
	memset(line, 'a', sizeof(line));
	memcpy(line, "250 ", 4);

	smtp_reply_init(&r);
	assert_int_equal(smtp_reply_feed(&r, line, SMTP_REPLY_LINE_MAX, err,
	    sizeof(err)), SMTP_REPLY_DONE);
	assert_int_equal(r.textlen, SMTP_REPLY_LINE_MAX - 4);

	/* The limit applies after dropping a trailing CR. */
	line[SMTP_REPLY_LINE_MAX] = '\r';
	smtp_reply_init(&r);
	assert_int_equal(smtp_reply_feed(&r, line, SMTP_REPLY_LINE_MAX + 1, err,
	    sizeof(err)), SMTP_REPLY_DONE);

	line[SMTP_REPLY_LINE_MAX] = 'a';
	smtp_reply_init(&r);
	assert_int_equal(smtp_reply_feed(&r, line, SMTP_REPLY_LINE_MAX + 1, err,
	    sizeof(err)), SMTP_REPLY_ERROR);
	assert_string_equal(err, "reply line too long");
}

static void
test_text_truncated(void **state)
{
	struct smtp_reply r;
	char line[904];
	char err[128];
	size_t i;

	(void)state;
	memset(line, 'b', sizeof(line));
	memcpy(line, "250-", 4);
	smtp_reply_init(&r);
	for (i = 0; i < 10; i++)
		assert_int_equal(smtp_reply_feed(&r, line, sizeof(line), err,
		    sizeof(err)), SMTP_REPLY_MORE);
	assert_int_equal(r.textlen, SMTP_REPLY_TEXT_MAX - 1);
	assert_int_equal(strlen(r.text), SMTP_REPLY_TEXT_MAX - 1);
	assert_int_equal(feed(&r, "250 end", err, sizeof(err)),
	    SMTP_REPLY_DONE);
	assert_int_equal(r.textlen, SMTP_REPLY_TEXT_MAX - 1);
}

static void
test_embedded_nul(void **state)
{
	struct smtp_reply r;
	char err[128];

	(void)state;
	smtp_reply_init(&r);
	assert_int_equal(smtp_reply_feed(&r, "250 a\0b\nc", 9, err,
	    sizeof(err)), SMTP_REPLY_DONE);
	assert_int_equal(r.textlen, 5);
	assert_string_equal(r.text, "a?b?c");
}

static void
test_null_errbuf(void **state)
{
	struct smtp_reply r;

	(void)state;
	smtp_reply_init(&r);
	assert_int_equal(smtp_reply_feed(&r, "xyz", 3, NULL, 0),
	    SMTP_REPLY_ERROR);
	assert_int_equal(smtp_reply_feed(&r, NULL, 0, NULL, 0),
	    SMTP_REPLY_ERROR);
}

static void
test_summary(void **state)
{
	static const char *const lines[] = {
		"250-2.0.0 first", "250-", "250 last",
	};
	struct smtp_reply r;
	char out[256];
	char err[128];

	(void)state;
	assert_int_equal(feed_all(&r, lines, 3), SMTP_REPLY_DONE);
	smtp_reply_summary(&r, out, sizeof(out));
	assert_string_equal(out, "250 2.0.0 first last");

	smtp_reply_init(&r);
	feed(&r, "250", err, sizeof(err));
	smtp_reply_summary(&r, out, sizeof(out));
	assert_string_equal(out, "250");

	smtp_reply_init(&r);
	feed(&r, "250 OK queued as 4F2A", err, sizeof(err));
	smtp_reply_summary(&r, out, sizeof(out));
	assert_string_equal(out, "250 OK queued as 4F2A");

	/* Nothing fed: nothing to say. */
	smtp_reply_init(&r);
	memset(out, 'x', sizeof(out));
	smtp_reply_summary(&r, out, sizeof(out));
	assert_string_equal(out, "");
}

static void
test_summary_escaping(void **state)
{
	struct smtp_reply r;
	char out[64];
	char err[128];
	const char line[] = "550 bad\x1b[31m\x7f\xc3\xa9\tend";

	(void)state;
	smtp_reply_init(&r);
	assert_int_equal(smtp_reply_feed(&r, line, sizeof(line) - 1, err,
	    sizeof(err)), SMTP_REPLY_DONE);
	smtp_reply_summary(&r, out, sizeof(out));
	assert_string_equal(out, "550 bad?[31m????end");
}

static void
test_summary_truncation(void **state)
{
	struct smtp_reply r;
	char out[16];
	char err[128];
	size_t k;

	(void)state;
	smtp_reply_init(&r);
	feed(&r, "421-4.3.2 Service shutting down", err, sizeof(err));
	feed(&r, "421 try later", err, sizeof(err));

	memset(out, 'x', sizeof(out));
	smtp_reply_summary(&r, out, sizeof(out));
	assert_string_equal(out, "421 4.3.2 Servi");

	/* Every small size is NUL-terminated and a prefix of the whole. */
	for (k = 1; k <= sizeof(out); k++) {
		memset(out, 'x', sizeof(out));
		smtp_reply_summary(&r, out, k);
		assert_int_equal(strlen(out), k - 1);
		assert_memory_equal(out, "421 4.3.2 Service", k - 1);
	}
	/* outlen 0 writes nothing. */
	out[0] = 'x';
	smtp_reply_summary(&r, out, 0);
	assert_int_equal(out[0], 'x');
}

static void
test_caps(void **state)
{
	static const char *const lines[] = {
		"250-mx.example.com Hello [192.0.2.1] PIPELINING",
		"250-pipelining",
		"250-SIZE 35882577",
		"250-8BITMIME",
		"250-SmtpUtf8",
		"250-DSN",
		"250-STARTTLS",
		"250-ENHANCEDSTATUSCODES",
		"250-CHUNKING",
		"250-X-UNKNOWN stuff",
		"250 AUTH PLAIN login CRAM-MD5",
	};
	struct smtp_reply r;
	struct smtp_caps c;

	(void)state;
	assert_int_equal(feed_all(&r, lines, 11), SMTP_REPLY_DONE);
	smtp_caps_parse(&r, &c);
	assert_int_equal(c.pipelining, 1);
	assert_int_equal(c.size_present, 1);
	assert_true(c.size == 35882577ULL);
	assert_int_equal(c.eightbitmime, 1);
	assert_int_equal(c.smtputf8, 1);
	assert_int_equal(c.dsn, 1);
	assert_int_equal(c.starttls, 1);
	assert_int_equal(c.enhancedstatuscodes, 1);
	assert_int_equal(c.chunking, 1);
	assert_int_equal(c.auth_present, 1);
	assert_int_equal(c.nauth, 3);
	assert_string_equal(c.auth[0], "PLAIN");
	assert_string_equal(c.auth[1], "LOGIN");
	assert_string_equal(c.auth[2], "CRAM-MD5");
}

static void
test_caps_greeting_skipped(void **state)
{
	static const char *const lines[] = {
		"250-STARTTLS AUTH PLAIN",	/* the greeting line */
		"250 DSN",
	};
	struct smtp_reply r;
	struct smtp_caps c;

	(void)state;
	feed_all(&r, lines, 2);
	smtp_caps_parse(&r, &c);
	assert_int_equal(c.starttls, 0);
	assert_int_equal(c.auth_present, 0);
	assert_int_equal(c.nauth, 0);
	assert_int_equal(c.dsn, 1);
}

static void
test_caps_auth_forms(void **state)
{
	static const char *const lines[] = {
		"250-hello",
		"250-AUTH=LOGIN PLAIN",
		"250-auth plain xoauth2 LOGIN",
		"250-AUTH THIS-MECHANISM-NAME-IS-TOO-LONG SCRAM-SHA-256 B@D",
		"250 AUTH",
	};
	struct smtp_reply r;
	struct smtp_caps c;

	(void)state;
	feed_all(&r, lines, 5);
	smtp_caps_parse(&r, &c);
	assert_int_equal(c.auth_present, 1);
	assert_int_equal(c.nauth, 4);
	assert_string_equal(c.auth[0], "LOGIN");
	assert_string_equal(c.auth[1], "PLAIN");
	assert_string_equal(c.auth[2], "XOAUTH2");
	assert_string_equal(c.auth[3], "SCRAM-SHA-256");
}

static void
test_caps_auth_limit(void **state)
{
	struct smtp_reply r;
	struct smtp_caps c;
	char err[128], line[512];
	size_t i, o;

	(void)state;
	smtp_reply_init(&r);
	feed(&r, "250-hello", err, sizeof(err));
	o = (size_t)snprintf(line, sizeof(line), "250 AUTH");
	for (i = 0; i < SMTP_AUTH_MECHS_MAX + 4; i++)
		o += (size_t)snprintf(line + o, sizeof(line) - o, " M%zu", i);
	/* a 23-character name still fits the 24-byte slot */
	snprintf(line + o, sizeof(line) - o, " ABCDEFGHIJKLMNOPQRSTUVW");
	assert_int_equal(feed(&r, line, err, sizeof(err)), SMTP_REPLY_DONE);
	smtp_caps_parse(&r, &c);
	assert_int_equal(c.nauth, SMTP_AUTH_MECHS_MAX);
	assert_string_equal(c.auth[0], "M0");
	assert_string_equal(c.auth[SMTP_AUTH_MECHS_MAX - 1], "M15");

	smtp_reply_init(&r);
	feed(&r, "250-hello", err, sizeof(err));
	feed(&r, "250 AUTH ABCDEFGHIJKLMNOPQRSTUVW ABCDEFGHIJKLMNOPQRSTUVWX",
	    err, sizeof(err));
	smtp_caps_parse(&r, &c);
	assert_int_equal(c.nauth, 1);
	assert_string_equal(c.auth[0], "ABCDEFGHIJKLMNOPQRSTUVW");
}

static void
test_caps_size(void **state)
{
	static const struct {
		const char *line;
		unsigned long long size;
	} cases[] = {
		{ "250 SIZE", 0 },
		{ "250 SIZE 0", 0 },
		{ "250 SIZE   1024  ", 1024 },
		{ "250 size 52428800", 52428800ULL },
		{ "250 SIZE 18446744073709551615", 18446744073709551615ULL },
		{ "250 SIZE 18446744073709551616", 0 },	/* overflow */
		{ "250 SIZE 99999999999999999999999", 0 },
		{ "250 SIZE 10M", 0 },
		{ "250 SIZE -5", 0 },
		{ "250 SIZE 5 6", 0 },
	};
	struct smtp_reply r;
	struct smtp_caps c;
	char err[128];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		smtp_reply_init(&r);
		feed(&r, "250-hello", err, sizeof(err));
		assert_int_equal(feed(&r, cases[i].line, err, sizeof(err)),
		    SMTP_REPLY_DONE);
		smtp_caps_parse(&r, &c);
		assert_int_equal(c.size_present, 1);
		if (c.size != cases[i].size)
			fail_msg("\"%s\": size %llu", cases[i].line, c.size);
	}
	/* "SIZEX" is another keyword. */
	smtp_reply_init(&r);
	feed(&r, "250-hello", err, sizeof(err));
	feed(&r, "250 SIZEX 5", err, sizeof(err));
	smtp_caps_parse(&r, &c);
	assert_int_equal(c.size_present, 0);
}

static void
test_caps_not_2xx(void **state)
{
	static const char *const lines[] = { "550-no", "550 PIPELINING" };
	static const char *const partial[] = { "250-hi", "250-PIPELINING" };
	struct smtp_reply r;
	struct smtp_caps c;

	(void)state;
	feed_all(&r, lines, 2);
	memset(&c, 0xff, sizeof(c));
	smtp_caps_parse(&r, &c);
	assert_int_equal(c.pipelining, 0);
	assert_int_equal(c.nauth, 0);

	assert_int_equal(feed_all(&r, partial, 2), SMTP_REPLY_MORE);
	smtp_caps_parse(&r, &c);
	assert_int_equal(c.pipelining, 0);

	/* A one-line EHLO reply offers nothing. */
	smtp_reply_init(&r);
	smtp_reply_feed(&r, "250 PIPELINING", 14, NULL, 0);
	smtp_caps_parse(&r, &c);
	assert_int_equal(c.pipelining, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init),
		cmocka_unit_test(test_single_line),
		cmocka_unit_test(test_multiline),
		cmocka_unit_test(test_bare_code),
		cmocka_unit_test(test_trailing_cr),
		cmocka_unit_test(test_enhanced),
		cmocka_unit_test(test_enhanced_invalid),
		cmocka_unit_test(test_mismatched_codes),
		cmocka_unit_test(test_bad_codes),
		cmocka_unit_test(test_after_complete),
		cmocka_unit_test(test_too_many_lines),
		cmocka_unit_test(test_overlong_line),
		cmocka_unit_test(test_text_truncated),
		cmocka_unit_test(test_embedded_nul),
		cmocka_unit_test(test_null_errbuf),
		cmocka_unit_test(test_summary),
		cmocka_unit_test(test_summary_escaping),
		cmocka_unit_test(test_summary_truncation),
		cmocka_unit_test(test_caps),
		cmocka_unit_test(test_caps_greeting_skipped),
		cmocka_unit_test(test_caps_auth_forms),
		cmocka_unit_test(test_caps_auth_limit),
		cmocka_unit_test(test_caps_size),
		cmocka_unit_test(test_caps_not_2xx),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

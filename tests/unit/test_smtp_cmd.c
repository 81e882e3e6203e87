/*
 * Unit tests for lib/smtp_cmd.c: verbs, MAIL/RCPT paths and their ESMTP
 * parameters, and the refusal of malformed lines.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "smtp_cmd.h"

static struct smtp_cmd cmd;
static char err[256];

/* Parse a NUL-terminated line into the globals; returns the result. */
static int
parse(const char *line)
{
	memset(err, 0, sizeof(err));
	return smtp_cmd_parse(line, strlen(line), &cmd, err, sizeof(err));
}

/* The line must be refused with exactly this reason. */
static void
refused(const char *line, const char *why)
{
	if (parse(line) != -1)
		fail_msg("accepted \"%s\"", line);
	if (strcmp(err, why) != 0)
		fail_msg("\"%s\": reason \"%s\", expected \"%s\"", line, err,
		    why);
}

static void
test_verbs(void **state)
{
	static const struct {
		const char *line;
		enum smtp_verb verb;
		const char *name;
	} cases[] = {
		{ "HELO mx.example.com", SMTP_CMD_HELO, "HELO" },
		{ "EHLO mx.example.com", SMTP_CMD_EHLO, "EHLO" },
		{ "MAIL FROM:<a@example.com>", SMTP_CMD_MAIL, "MAIL" },
		{ "RCPT TO:<b@example.com>", SMTP_CMD_RCPT, "RCPT" },
		{ "DATA", SMTP_CMD_DATA, "DATA" },
		{ "RSET", SMTP_CMD_RSET, "RSET" },
		{ "NOOP", SMTP_CMD_NOOP, "NOOP" },
		{ "QUIT", SMTP_CMD_QUIT, "QUIT" },
		{ "VRFY root", SMTP_CMD_VRFY, "VRFY" },
		{ "EXPN staff", SMTP_CMD_EXPN, "EXPN" },
		{ "HELP", SMTP_CMD_HELP, "HELP" },
		{ "STARTTLS", SMTP_CMD_STARTTLS, "STARTTLS" },
		{ "AUTH PLAIN", SMTP_CMD_AUTH, "AUTH" },
		{ "BDAT 100", SMTP_CMD_BDAT, "BDAT" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (parse(cases[i].line) != 0)
			fail_msg("\"%s\" refused: %s", cases[i].line, err);
		assert_int_equal(cmd.verb, cases[i].verb);
		assert_string_equal(smtp_verb_name(cmd.verb), cases[i].name);
		assert_string_equal(err, "");
	}
	assert_string_equal(smtp_verb_name(SMTP_CMD_UNKNOWN), "UNKNOWN");
	assert_string_equal(smtp_verb_name((enum smtp_verb)99), "UNKNOWN");
}

static void
test_case_insensitive(void **state)
{
	(void)state;
	assert_int_equal(parse("ehlo client.example"), 0);
	assert_int_equal(cmd.verb, SMTP_CMD_EHLO);
	assert_string_equal(cmd.arg, "client.example");
	assert_int_equal(parse("mail from:<A@Example.COM> size=10 body=8bitmime"),
	    0);
	assert_int_equal(cmd.verb, SMTP_CMD_MAIL);
	assert_string_equal(cmd.path, "A@Example.COM");	/* path case kept */
	assert_int_equal(cmd.size, 10);
	assert_int_equal(cmd.body, SMTP_BODY_8BITMIME);
	assert_int_equal(parse("RcPt To:<x@y> notify=success,Delay"), 0);
	assert_int_equal(cmd.verb, SMTP_CMD_RCPT);
	assert_string_equal(cmd.notify, "SUCCESS,DELAY");
	assert_int_equal(parse("StartTls"), 0);
	assert_int_equal(cmd.verb, SMTP_CMD_STARTTLS);
	assert_int_equal(parse("quit"), 0);
	assert_int_equal(cmd.verb, SMTP_CMD_QUIT);
}

static void
test_unknown(void **state)
{
	static const char *const lines[] = {
		"", " ", "XYZZY", "MAILFROM:<a@b>", "DATA:", "HELOX foo",
		"STARTTLSX", "MAI", " MAIL FROM:<a@b>", "\x01\x02", "TURN",
		"ÉHLO x",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		if (parse(lines[i]) != 0)
			fail_msg("\"%s\": -1", lines[i]);
		assert_int_equal(cmd.verb, SMTP_CMD_UNKNOWN);
	}
	assert_int_equal(smtp_cmd_parse(NULL, 0, &cmd, NULL, 0), 0);
	assert_int_equal(cmd.verb, SMTP_CMD_UNKNOWN);
}

static void
test_defaults(void **state)
{
	(void)state;
	memset(&cmd, 0x55, sizeof(cmd));
	assert_int_equal(parse("MAIL FROM:<a@b.example>"), 0);
	assert_int_equal(cmd.size, -1);
	assert_int_equal(cmd.body, SMTP_BODY_NONE);
	assert_int_equal(cmd.smtputf8, 0);
	assert_string_equal(cmd.ret, "");
	assert_string_equal(cmd.envid, "");
	assert_string_equal(cmd.notify, "");
	assert_string_equal(cmd.orcpt, "");
	assert_string_equal(cmd.arg, "");
}

static void
test_helo(void **state)
{
	(void)state;
	assert_int_equal(parse("HELO localhost"), 0);
	assert_string_equal(cmd.arg, "localhost");
	assert_int_equal(parse("EHLO [192.0.2.1]"), 0);
	assert_string_equal(cmd.arg, "[192.0.2.1]");
	assert_int_equal(parse("EHLO [IPv6:2001:db8::1]"), 0);
	assert_string_equal(cmd.arg, "[IPv6:2001:db8::1]");
	assert_int_equal(parse("EHLO my_pc.corp.example  "), 0);
	assert_string_equal(cmd.arg, "my_pc.corp.example");
	assert_int_equal(parse("EHLO  two-spaces.example"), 0);
	assert_string_equal(cmd.arg, "two-spaces.example");

	refused("EHLO", "Syntax: EHLO hostname");
	refused("EHLO ", "Syntax: EHLO hostname");
	refused("HELO", "Syntax: HELO hostname");
	refused("EHLO a b", "Syntax: EHLO hostname");
	refused("EHLO a..b", "Syntax: EHLO hostname");
	refused("EHLO .a", "Syntax: EHLO hostname");
	refused("EHLO a.", "Syntax: EHLO hostname");
	refused("EHLO a@b", "Syntax: EHLO hostname");
	refused("EHLO [1.2.3.4", "Syntax: EHLO hostname");
	refused("EHLO []", "Syntax: EHLO hostname");
	refused("EHLO [a]b]", "Syntax: EHLO hostname");
	refused("EHLO <x>", "Syntax: EHLO hostname");
	assert_string_equal(cmd.arg, "");
}

static void
test_helo_label_limits(void **state)
{
	char line[400];

	(void)state;
	/* 63-octet label: fine; 64: not */
	snprintf(line, sizeof(line), "EHLO %.63s.example",
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	assert_int_equal(parse(line), 0);
	snprintf(line, sizeof(line), "EHLO %.64s.example",
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	refused(line, "Syntax: EHLO hostname");
	/* a 300-octet name does not fit arg */
	memset(line, 'a', sizeof(line));
	memcpy(line, "EHLO ", 5);
	for (size_t i = 60; i < 305; i += 60)
		line[i] = '.';
	line[305] = '\0';
	refused(line, "Syntax: EHLO hostname");
}

static void
test_mail_basic(void **state)
{
	(void)state;
	assert_int_equal(parse("MAIL FROM:<user@example.com>"), 0);
	assert_int_equal(cmd.verb, SMTP_CMD_MAIL);
	assert_string_equal(cmd.path, "user@example.com");
	/* space after the colon, and trailing spaces */
	assert_int_equal(parse("MAIL FROM: <user@example.com>  "), 0);
	assert_string_equal(cmd.path, "user@example.com");
	/* local user, no domain */
	assert_int_equal(parse("MAIL FROM:<root>"), 0);
	assert_string_equal(cmd.path, "root");
	/* address literal domain */
	assert_int_equal(parse("MAIL FROM:<u@[192.0.2.7]>"), 0);
	assert_string_equal(cmd.path, "u@[192.0.2.7]");
	assert_int_equal(parse("MAIL FROM:<first.last+tag@sub.example.org>"),
	    0);
	assert_string_equal(cmd.path, "first.last+tag@sub.example.org");
}

static void
test_null_sender(void **state)
{
	(void)state;
	strcpy(cmd.path, "junk");
	assert_int_equal(parse("MAIL FROM:<>"), 0);
	assert_string_equal(cmd.path, "");
	assert_int_equal(parse("MAIL FROM:<> SIZE=1234"), 0);
	assert_string_equal(cmd.path, "");
	assert_int_equal(cmd.size, 1234);
	refused("RCPT TO:<>", "Null recipient address not allowed");
}

static void
test_rcpt_basic(void **state)
{
	(void)state;
	assert_int_equal(parse("RCPT TO:<ops@example.com>"), 0);
	assert_string_equal(cmd.path, "ops@example.com");
	assert_int_equal(parse("RCPT TO: <ops@example.com>"), 0);
	assert_string_equal(cmd.path, "ops@example.com");
	/* Postmaster is an ordinary path */
	assert_int_equal(parse("RCPT TO:<Postmaster>"), 0);
	assert_string_equal(cmd.path, "Postmaster");
	assert_int_equal(parse("RCPT TO:<postmaster@example.com>"), 0);
	assert_string_equal(cmd.path, "postmaster@example.com");
}

static void
test_source_route(void **state)
{
	(void)state;
	assert_int_equal(parse("RCPT TO:<@a.example,@b.example:user@d.example>"),
	    0);
	assert_string_equal(cmd.path, "user@d.example");
	assert_int_equal(parse("MAIL FROM:<@relay.example:u@x.example>"), 0);
	assert_string_equal(cmd.path, "u@x.example");
	refused("RCPT TO:<@a.example:>", "Bad address syntax");
	refused("RCPT TO:<@a.example,user@d.example>", "Bad address syntax");
	refused("RCPT TO:<@:user@d.example>", "Bad address syntax");
	refused("RCPT TO:<@a..b:user@d.example>", "Bad address syntax");
	refused("RCPT TO:<@a,b:user@d.example>", "Bad address syntax");
	refused("RCPT TO:<@example.com>", "Bad address syntax");
}

static void
test_quoted_local_part(void **state)
{
	(void)state;
	assert_int_equal(parse("MAIL FROM:<\"a b\"@example.com>"), 0);
	assert_string_equal(cmd.path, "\"a b\"@example.com");
	assert_int_equal(parse("RCPT TO:<\"x\\\"y\"@example.com>"), 0);
	assert_string_equal(cmd.path, "\"x\\\"y\"@example.com");
	assert_int_equal(parse("RCPT TO:<\"a@b\"@example.com>"), 0);
	assert_string_equal(cmd.path, "\"a@b\"@example.com");
	refused("RCPT TO:<\"unterminated@example.com>", "Syntax: RCPT TO:<address>");
	refused("RCPT TO:<\"a\"b@example.com>", "Bad address syntax");
	refused("RCPT TO:<\"a>b\"@example.com>", "Bad address syntax");
	refused("RCPT TO:<\"a<b\"@example.com>", "Bad address syntax");
	/* found by fuzz_smtp_cmd: an escaped '>' is refused as well */
	refused("RCPT TO:<\"n\\> \">", "Bad address syntax");
	refused("RCPT TO:<\"a\\<b\"@example.com>", "Bad address syntax");
	assert_int_equal(parse("RCPT TO:<\"a\\\\b\"@example.com>"), 0);
	assert_string_equal(cmd.path, "\"a\\\\b\"@example.com");
}

static void
test_utf8_path(void **state)
{
	(void)state;
	assert_int_equal(parse("RCPT TO:<j\xc3\xb6rg@b\xc3\xbc" "cher.example>"),
	    0);
	assert_string_equal(cmd.path, "j\xc3\xb6rg@b\xc3\xbc" "cher.example");
	assert_int_equal(parse("MAIL FROM:<\"\xc3\xa9 t\"@example.com> SMTPUTF8"),
	    0);
	assert_int_equal(cmd.smtputf8, 1);
}

static void
test_bad_paths(void **state)
{
	static const char *const syntax[] = {
		"MAIL FROM:a@b.example",
		"MAIL FROM:<a@b.example",
		"MAIL FROM:<a@b.example>>",
		"MAIL FROM <a@b.example>",
		"MAIL FROM :<a@b.example>",
		"MAIL TO:<a@b.example>",
		"MAIL",
		"MAIL ",
		"MAIL FROM:",
		"MAIL FROM:<a@b.example>SIZE=1",
		"RCPT FROM:<a@b.example>",
		"RCPT TO:",
		"RCPT TO:a@b.example",
	};
	static const char *const bad[] = {
		"MAIL FROM:<a@>",
		"MAIL FROM:<@>",
		"MAIL FROM:<a@b..c>",
		"MAIL FROM:<a b@c.example>",
		"MAIL FROM:<a@b.example@c.example>",
		"MAIL FROM:<a(comment)@b.example>",
		"MAIL FROM:<a,b@c.example>",
		"MAIL FROM:<a@[1.2.3.4>",
		"MAIL FROM:<a@b_c.ex ample>",
		"MAIL FROM:<<a@b.example>",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(syntax) / sizeof(syntax[0]); i++) {
		if (parse(syntax[i]) != -1)
			fail_msg("accepted \"%s\"", syntax[i]);
		if (strcmp(err, syntax[i][0] == 'M' ?
		    "Syntax: MAIL FROM:<address>" :
		    "Syntax: RCPT TO:<address>") != 0)
			fail_msg("\"%s\": %s", syntax[i], err);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		refused(bad[i], "Bad address syntax");
}

static void
test_path_length(void **state)
{
	char line[SMTP_PATH_MAX + 64];
	size_t n;

	(void)state;
	/* exactly SMTP_PATH_MAX octets between the brackets */
	n = (size_t)snprintf(line, sizeof(line), "RCPT TO:<");
	memset(line + n, 'a', SMTP_PATH_MAX - 12);
	n += SMTP_PATH_MAX - 12;
	n += (size_t)snprintf(line + n, sizeof(line) - n, "@example.com>");
	assert_int_equal(parse(line), 0);
	assert_int_equal(strlen(cmd.path), SMTP_PATH_MAX);

	n = (size_t)snprintf(line, sizeof(line), "RCPT TO:<");
	memset(line + n, 'a', SMTP_PATH_MAX - 11);
	n += SMTP_PATH_MAX - 11;
	snprintf(line + n, sizeof(line) - n, "@example.com>");
	refused(line, "Address too long");
}

static void
test_control_chars(void **state)
{
	static const char *const lines[] = {
		"MAIL FROM:<a\x01@b.example>",
		"RCPT TO:<a@b.example>\t",
		"EHLO foo\x7f",
		"NOOP \x1b[0m",
		"DATA\r",
		"QUIT\x0c",
		"RSET\x7f",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		refused(lines[i], "Invalid character in command");
	/* embedded NUL with an explicit length */
	assert_int_equal(smtp_cmd_parse("HELO a\0b", 8, &cmd, err,
	    sizeof(err)), -1);
	assert_string_equal(err, "Invalid character in command");
	assert_int_equal(smtp_cmd_parse("MAIL FROM:<a\0@b>", 16, &cmd, err,
	    sizeof(err)), -1);
}

static void
test_size(void **state)
{
	char line[128];

	(void)state;
	assert_int_equal(parse("MAIL FROM:<a@b> SIZE=0"), 0);
	assert_int_equal(cmd.size, 0);
	assert_int_equal(parse("MAIL FROM:<a@b> SIZE=35882577"), 0);
	assert_int_equal(cmd.size, 35882577);
	assert_int_equal(parse("MAIL FROM:<a@b> SIZE=9223372036854775807"), 0);
	assert_true(cmd.size == 9223372036854775807LL);
	refused("MAIL FROM:<a@b> SIZE=9223372036854775808",
	    "SIZE parameter out of range");
	refused("MAIL FROM:<a@b> SIZE=99999999999999999999999999",
	    "SIZE parameter out of range");
	refused("MAIL FROM:<a@b> SIZE=-1", "Bad SIZE parameter");
	refused("MAIL FROM:<a@b> SIZE=1k", "Bad SIZE parameter");
	refused("MAIL FROM:<a@b> SIZE=+5", "Bad SIZE parameter");
	refused("MAIL FROM:<a@b> SIZE=", "Bad parameter syntax");
	refused("MAIL FROM:<a@b> SIZE", "Parameter SIZE needs a value");
	refused("MAIL FROM:<a@b> SIZE=1 SIZE=2", "Parameter SIZE given twice");
	refused("RCPT TO:<a@b> SIZE=1", "Unsupported parameter SIZE");
	snprintf(line, sizeof(line), "MAIL FROM:<a@b> size=%d", 42);
	assert_int_equal(parse(line), 0);
	assert_int_equal(cmd.size, 42);
}

static void
test_body(void **state)
{
	(void)state;
	assert_int_equal(parse("MAIL FROM:<a@b> BODY=7BIT"), 0);
	assert_int_equal(cmd.body, SMTP_BODY_7BIT);
	assert_int_equal(parse("MAIL FROM:<a@b> body=8bitMIME"), 0);
	assert_int_equal(cmd.body, SMTP_BODY_8BITMIME);
	refused("MAIL FROM:<a@b> BODY=BINARYMIME",
	    "Bad BODY parameter (7BIT or 8BITMIME)");
	refused("MAIL FROM:<a@b> BODY=8BIT",
	    "Bad BODY parameter (7BIT or 8BITMIME)");
	refused("MAIL FROM:<a@b> BODY", "Parameter BODY needs a value");
}

static void
test_smtputf8(void **state)
{
	(void)state;
	assert_int_equal(parse("MAIL FROM:<a@b> SMTPUTF8"), 0);
	assert_int_equal(cmd.smtputf8, 1);
	assert_int_equal(parse("MAIL FROM:<a@b> smtputf8 BODY=8BITMIME"), 0);
	assert_int_equal(cmd.smtputf8, 1);
	assert_int_equal(cmd.body, SMTP_BODY_8BITMIME);
	refused("MAIL FROM:<a@b> SMTPUTF8=yes", "SMTPUTF8 takes no value");
	refused("RCPT TO:<a@b> SMTPUTF8", "Unsupported parameter SMTPUTF8");
}

static void
test_ret(void **state)
{
	(void)state;
	assert_int_equal(parse("MAIL FROM:<a@b> RET=FULL"), 0);
	assert_string_equal(cmd.ret, "FULL");
	assert_int_equal(parse("MAIL FROM:<a@b> ret=hdrs"), 0);
	assert_string_equal(cmd.ret, "HDRS");
	refused("MAIL FROM:<a@b> RET=BODY", "Bad RET parameter (FULL or HDRS)");
	refused("MAIL FROM:<a@b> RET=FULLX", "Bad RET parameter (FULL or HDRS)");
	refused("MAIL FROM:<a@b> RET", "Parameter RET needs a value");
}

static void
test_envid(void **state)
{
	char line[256];
	size_t n;

	(void)state;
	assert_int_equal(parse("MAIL FROM:<a@b> ENVID=QQ314159+2B+3Dx"), 0);
	assert_string_equal(cmd.envid, "QQ314159+2B+3Dx");
	/* the sendmail client's drop name: digits and dots, MAIL only */
	assert_int_equal(parse("MAIL FROM:<a@b> SIZE=10 X-MAILDROP=1733288000.123456789.4242"), 0);
	assert_string_equal(cmd.maildrop, "1733288000.123456789.4242");
	assert_int_equal(parse("MAIL FROM:<a@b>"), 0);
	assert_string_equal(cmd.maildrop, "");
	refused("MAIL FROM:<a@b> X-MAILDROP=../queue/x", "Bad X-MAILDROP parameter");
	refused("MAIL FROM:<a@b> X-MAILDROP=.tmp.1", "Bad X-MAILDROP parameter");
	refused("MAIL FROM:<a@b> X-MAILDROP=", "Bad parameter syntax");
	refused("MAIL FROM:<a@b> X-MAILDROP=1234567890123456789012345678901234567890123456789012345678901234",
	    "Bad X-MAILDROP parameter");
	refused("RCPT TO:<a@b> X-MAILDROP=1.2", "Unsupported parameter X-MAILDROP");
	refused("MAIL FROM:<a@b> ENVID=a+2b", "Bad ENVID parameter");
	refused("MAIL FROM:<a@b> ENVID=a+", "Bad ENVID parameter");
	refused("MAIL FROM:<a@b> ENVID=a+4", "Bad ENVID parameter");
	refused("MAIL FROM:<a@b> ENVID=a+XY", "Bad ENVID parameter");
	refused("MAIL FROM:<a@b> ENVID=\xc3\xa9", "Bad ENVID parameter");
	refused("MAIL FROM:<a@b> ENVID=a=b", "Bad parameter syntax");

	/* 100 octets: fine; 101: too long */
	n = (size_t)snprintf(line, sizeof(line), "MAIL FROM:<a@b> ENVID=");
	memset(line + n, 'e', 100);
	line[n + 100] = '\0';
	assert_int_equal(parse(line), 0);
	assert_int_equal(strlen(cmd.envid), 100);
	line[n + 100] = 'e';
	line[n + 101] = '\0';
	refused(line, "Bad ENVID parameter");
}

static void
test_notify(void **state)
{
	(void)state;
	assert_int_equal(parse("RCPT TO:<a@b> NOTIFY=NEVER"), 0);
	assert_string_equal(cmd.notify, "NEVER");
	assert_int_equal(parse("RCPT TO:<a@b> NOTIFY=failure"), 0);
	assert_string_equal(cmd.notify, "FAILURE");
	assert_int_equal(parse("RCPT TO:<a@b> NOTIFY=SUCCESS,FAILURE,DELAY"), 0);
	assert_string_equal(cmd.notify, "SUCCESS,FAILURE,DELAY");
	refused("RCPT TO:<a@b> NOTIFY=NEVER,SUCCESS",
	    "Bad NOTIFY parameter (NEVER or SUCCESS,FAILURE,DELAY)");
	refused("RCPT TO:<a@b> NOTIFY=SUCCESS,NEVER",
	    "Bad NOTIFY parameter (NEVER or SUCCESS,FAILURE,DELAY)");
	refused("RCPT TO:<a@b> NOTIFY=SUCCESS,SUCCESS",
	    "Bad NOTIFY parameter (NEVER or SUCCESS,FAILURE,DELAY)");
	refused("RCPT TO:<a@b> NOTIFY=SUCCESS,",
	    "Bad NOTIFY parameter (NEVER or SUCCESS,FAILURE,DELAY)");
	refused("RCPT TO:<a@b> NOTIFY=,DELAY",
	    "Bad NOTIFY parameter (NEVER or SUCCESS,FAILURE,DELAY)");
	refused("RCPT TO:<a@b> NOTIFY=ALWAYS",
	    "Bad NOTIFY parameter (NEVER or SUCCESS,FAILURE,DELAY)");
	refused("MAIL FROM:<a@b> NOTIFY=NEVER",
	    "Unsupported parameter NOTIFY");
}

static void
test_orcpt(void **state)
{
	char line[600];
	size_t n;

	(void)state;
	assert_int_equal(parse("RCPT TO:<a@b> ORCPT=rfc822;root+40host.example"),
	    0);
	assert_string_equal(cmd.orcpt, "rfc822;root+40host.example");
	assert_int_equal(parse(
	    "RCPT TO:<a@b> NOTIFY=DELAY ORCPT=utf-8;j\xc3\xb6rg@b.example"), 0);
	assert_string_equal(cmd.orcpt, "utf-8;j\xc3\xb6rg@b.example");
	assert_string_equal(cmd.notify, "DELAY");
	refused("RCPT TO:<a@b> ORCPT=rfc822", "Bad ORCPT parameter");
	refused("RCPT TO:<a@b> ORCPT=rfc822;", "Bad ORCPT parameter");
	refused("RCPT TO:<a@b> ORCPT=;a@b", "Bad ORCPT parameter");
	refused("RCPT TO:<a@b> ORCPT=rfc822;a+zz", "Bad ORCPT parameter");
	refused("RCPT TO:<a@b> ORCPT=rf.c;a", "Bad ORCPT parameter");
	refused("MAIL FROM:<a@b> ORCPT=rfc822;a", "Unsupported parameter ORCPT");

	/* the longest that fits the field, then one more */
	n = (size_t)snprintf(line, sizeof(line), "RCPT TO:<a@b> ORCPT=rfc822;");
	memset(line + n, 'o', sizeof(cmd.orcpt) - 1 - 7);
	line[n + sizeof(cmd.orcpt) - 1 - 7] = '\0';
	assert_int_equal(parse(line), 0);
	assert_int_equal(strlen(cmd.orcpt), sizeof(cmd.orcpt) - 1);
	line[n + sizeof(cmd.orcpt) - 1 - 7] = 'o';
	line[n + sizeof(cmd.orcpt) - 7] = '\0';
	refused(line, "Bad ORCPT parameter");
}

static void
test_params_misc(void **state)
{
	(void)state;
	assert_int_equal(parse(
	    "MAIL FROM:<a@b>  SIZE=5   BODY=7BIT RET=HDRS ENVID=x SMTPUTF8  "), 0);
	assert_int_equal(cmd.size, 5);
	assert_int_equal(cmd.body, SMTP_BODY_7BIT);
	assert_string_equal(cmd.ret, "HDRS");
	assert_string_equal(cmd.envid, "x");
	assert_int_equal(cmd.smtputf8, 1);
	refused("MAIL FROM:<a@b> AUTH=<>", "Unsupported parameter AUTH");
	refused("MAIL FROM:<a@b> X-FOO", "Unsupported parameter X-FOO");
	refused("MAIL FROM:<a@b> -X", "Bad parameter syntax");
	refused("MAIL FROM:<a@b> =1", "Bad parameter syntax");
	refused("MAIL FROM:<a@b> SIZE==1", "Bad parameter syntax");
	refused("MAIL FROM:<a@b> SIZE=1=2", "Bad parameter syntax");
	refused("MAIL FROM:<a@b> SI*ZE=1", "Bad parameter syntax");
	refused("MAIL FROM:<a@b> SIZE=1,BODY=7BIT", "Bad parameter syntax");
	refused("MAIL FROM:<a@b> SIZE=1,BODY", "Bad SIZE parameter");
	refused("RCPT TO:<a@b> NOTIFY=NEVER NOTIFY=NEVER",
	    "Parameter NOTIFY given twice");
	/* a long unknown keyword is cut in the message */
	refused("MAIL FROM:<a@b> AAAAAAAAAABBBBBBBBBBCCCCCCCCCCDDDDDDDDDD=1",
	    "Unsupported parameter AAAAAAAAAABBBBBBBBBBCCCCCCCCCCDD");
}

static void
test_no_argument_verbs(void **state)
{
	(void)state;
	assert_int_equal(parse("RSET   "), 0);
	assert_int_equal(cmd.verb, SMTP_CMD_RSET);
	assert_int_equal(parse("QUIT "), 0);
	assert_int_equal(cmd.verb, SMTP_CMD_QUIT);
	refused("DATA ", "Syntax: DATA");
	refused("DATA now", "Syntax: DATA");
	refused("STARTTLS ", "Syntax: STARTTLS");
	refused("STARTTLS x", "Syntax: STARTTLS");
	refused("RSET x", "Syntax: RSET");
	refused("QUIT now", "Syntax: QUIT");
	assert_int_equal(cmd.verb, SMTP_CMD_QUIT);
}

static void
test_free_text_verbs(void **state)
{
	char line[SMTP_PARAM_MAX + 16];

	(void)state;
	assert_int_equal(parse("NOOP"), 0);
	assert_string_equal(cmd.arg, "");
	assert_int_equal(parse("NOOP hello there  "), 0);
	assert_string_equal(cmd.arg, "hello there");
	assert_int_equal(parse("HELP MAIL"), 0);
	assert_string_equal(cmd.arg, "MAIL");
	assert_int_equal(parse("VRFY <root@host> \xc3\xa9"), 0);
	assert_string_equal(cmd.arg, "<root@host> \xc3\xa9");
	assert_int_equal(parse("EXPN staff"), 0);
	assert_string_equal(cmd.arg, "staff");
	refused("VRFY", "Syntax: VRFY address");
	refused("VRFY   ", "Syntax: VRFY address");
	refused("EXPN", "Syntax: EXPN list");

	/* SMTP_PARAM_MAX octets fit, one more does not */
	memset(line, 'n', sizeof(line));
	memcpy(line, "NOOP ", 5);
	line[5 + SMTP_PARAM_MAX] = '\0';
	assert_int_equal(parse(line), 0);
	assert_int_equal(strlen(cmd.arg), SMTP_PARAM_MAX);
	line[5 + SMTP_PARAM_MAX] = 'n';
	line[6 + SMTP_PARAM_MAX] = '\0';
	refused(line, "Argument too long");
	memcpy(line, "VRFY ", 5);
	refused(line, "Argument too long");
}

static void
test_auth(void **state)
{
	(void)state;
	assert_int_equal(parse("AUTH LOGIN"), 0);
	assert_string_equal(cmd.arg, "LOGIN");
	assert_int_equal(parse("auth plain AHVzZXIAcGFzcw=="), 0);
	assert_string_equal(cmd.arg, "plain AHVzZXIAcGFzcw==");
	assert_int_equal(parse("AUTH PLAIN ="), 0);
	assert_string_equal(cmd.arg, "PLAIN =");
	refused("AUTH", "Syntax: AUTH mechanism [initial-response]");
	refused("AUTH ", "Syntax: AUTH mechanism [initial-response]");
	refused("AUTH PLAIN a b", "Syntax: AUTH mechanism [initial-response]");
	refused("AUTH PL@IN", "Syntax: AUTH mechanism [initial-response]");
	refused("AUTH PLAIN a*b", "Syntax: AUTH mechanism [initial-response]");
	assert_string_equal(cmd.arg, "");
}

static void
test_bdat(void **state)
{
	(void)state;
	assert_int_equal(parse("BDAT 1000"), 0);
	assert_int_equal(cmd.size, 1000);
	assert_string_equal(cmd.arg, "1000");
	assert_int_equal(parse("BDAT 0 last"), 0);
	assert_int_equal(cmd.size, 0);
	assert_string_equal(cmd.arg, "0 last");
	refused("BDAT", "Syntax: BDAT size [LAST]");
	refused("BDAT x", "Syntax: BDAT size [LAST]");
	refused("BDAT 10 FIRST", "Syntax: BDAT size [LAST]");
	refused("BDAT 99999999999999999999", "Syntax: BDAT size [LAST]");
	assert_int_equal(cmd.size, -1);
}

static void
test_null_errbuf(void **state)
{
	(void)state;
	assert_int_equal(smtp_cmd_parse("MAIL FROM:x", 11, &cmd, NULL, 0), -1);
	assert_int_equal(smtp_cmd_parse("MAIL FROM:<a@b> FOO", 19, &cmd, NULL,
	    0), -1);
	/* a short errbuf is cut, still terminated */
	assert_int_equal(smtp_cmd_parse("MAIL FROM:x", 11, &cmd, err, 7), -1);
	assert_string_equal(err, "Syntax");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verbs),
		cmocka_unit_test(test_case_insensitive),
		cmocka_unit_test(test_unknown),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_helo),
		cmocka_unit_test(test_helo_label_limits),
		cmocka_unit_test(test_mail_basic),
		cmocka_unit_test(test_null_sender),
		cmocka_unit_test(test_rcpt_basic),
		cmocka_unit_test(test_source_route),
		cmocka_unit_test(test_quoted_local_part),
		cmocka_unit_test(test_utf8_path),
		cmocka_unit_test(test_bad_paths),
		cmocka_unit_test(test_path_length),
		cmocka_unit_test(test_control_chars),
		cmocka_unit_test(test_size),
		cmocka_unit_test(test_body),
		cmocka_unit_test(test_smtputf8),
		cmocka_unit_test(test_ret),
		cmocka_unit_test(test_envid),
		cmocka_unit_test(test_notify),
		cmocka_unit_test(test_orcpt),
		cmocka_unit_test(test_params_misc),
		cmocka_unit_test(test_no_argument_verbs),
		cmocka_unit_test(test_free_text_verbs),
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_bdat),
		cmocka_unit_test(test_null_errbuf),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

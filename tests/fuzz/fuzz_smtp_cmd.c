/*
 * Fuzz target for lib/smtp_cmd.c.
 * fuzz-sources: lib/smtp_cmd.c
 *
 * The whole input is one command line.  Whatever is accepted must respect
 * the bounds and the promises of smtp_cmd.h.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_cmd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* field is NUL-terminated inside its array and has no control character */
#define CHECK_FIELD(f) check_field((f), sizeof(f))

static size_t
check_field(const char *f, size_t sz)
{
	size_t n = strnlen(f, sz), i;

	if (n >= sz)
		abort();
	for (i = 0; i < n; i++)
		if ((unsigned char)f[i] < 0x20 || (unsigned char)f[i] == 0x7f)
			abort();
	return n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_cmd cmd;
	char err[128];
	size_t i, plen;
	int r;

	memset(err, 'E', sizeof(err));
	r = smtp_cmd_parse((const char *)data, size, &cmd, err, sizeof(err));
	if (r != 0 && r != -1)
		abort();
	if (smtp_verb_name(cmd.verb) == NULL)
		abort();
	if (r == -1) {
		if (cmd.verb == SMTP_CMD_UNKNOWN)
			abort();	/* unknown verbs are not errors */
		if (check_field(err, sizeof(err)) == 0)
			abort();	/* an error always says why */
		return 0;
	}
	CHECK_FIELD(cmd.arg);
	plen = CHECK_FIELD(cmd.path);
	CHECK_FIELD(cmd.ret);
	CHECK_FIELD(cmd.envid);
	CHECK_FIELD(cmd.notify);
	CHECK_FIELD(cmd.orcpt);
	if (plen > SMTP_PATH_MAX)
		abort();
	/* control characters anywhere are refused for a known verb */
	if (cmd.verb != SMTP_CMD_UNKNOWN)
		for (i = 0; i < size; i++)
			if (data[i] < 0x20 || data[i] == 0x7f)
				abort();
	switch (cmd.verb) {
	case SMTP_CMD_MAIL:
	case SMTP_CMD_RCPT:
		if (cmd.verb == SMTP_CMD_RCPT && plen == 0)
			abort();	/* "<>" is for MAIL only */
		if (memchr(cmd.path, '<', plen) != NULL ||
		    memchr(cmd.path, '>', plen) != NULL)
			abort();
		if (plen > 0 && cmd.path[0] == '@')
			abort();	/* source route left in */
		if (cmd.ret[0] != '\0' && strcmp(cmd.ret, "FULL") != 0 &&
		    strcmp(cmd.ret, "HDRS") != 0)
			abort();
		if (cmd.size < -1)
			abort();
		if (cmd.verb == SMTP_CMD_RCPT && (cmd.size != -1 ||
		    cmd.body != SMTP_BODY_NONE || cmd.smtputf8))
			abort();
		if (cmd.verb == SMTP_CMD_MAIL && (cmd.notify[0] != '\0' ||
		    cmd.orcpt[0] != '\0'))
			abort();
		break;
	case SMTP_CMD_HELO:
	case SMTP_CMD_EHLO:
		if (cmd.arg[0] == '\0' || strchr(cmd.arg, ' ') != NULL)
			abort();
		break;
	case SMTP_CMD_BDAT:
		if (cmd.size < 0)
			abort();
		break;
	default:
		break;
	}
	return 0;
}

/*
 * Fuzz target for lib/smtp_reply.c.
 * fuzz-sources: lib/smtp_reply.c
 *
 * The input is a server's reply as it arrives: lines split at LF (a CR
 * before it stays for the parser to drop).  Lines are fed until the reply
 * is done or refused, then the rest too (each must be refused once done).
 * The summary and the capability list are checked against the contract.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_reply(const struct smtp_reply *r, int status)
{
	if (r->textlen >= SMTP_REPLY_TEXT_MAX || r->text[r->textlen] != '\0' ||
	    strlen(r->text) != r->textlen)
		abort();
	if (r->nlines > SMTP_REPLY_LINES_MAX)
		abort();
	if (r->nlines > 0 && (r->code < 200 || r->code > 559 ||
	    r->code % 100 / 10 > 5))
		abort();
	if (status == SMTP_REPLY_DONE && !r->complete)
		abort();
	if (r->enh[0] != -1) {
		if (r->enh[0] != r->code / 100 || r->enh[0] == 3)
			abort();
		if (r->enh[1] < 0 || r->enh[1] > 999 ||
		    r->enh[2] < 0 || r->enh[2] > 999)
			abort();
	} else if (r->enh[1] != -1 || r->enh[2] != -1)
		abort();
}

static void
check_summary(const struct smtp_reply *r, size_t outlen)
{
	char out[5000];
	size_t i, n;

	memset(out, 'Z', sizeof(out));
	smtp_reply_summary(r, out, outlen);
	n = strnlen(out, outlen);
	if (n >= outlen)
		abort();		/* not terminated within outlen */
	if (outlen < sizeof(out) && out[outlen] != 'Z')
		abort();		/* wrote past outlen */
	for (i = 0; i < n; i++)
		if ((unsigned char)out[i] < 0x20 ||
		    (unsigned char)out[i] >= 0x7f)
			abort();
	if (r->nlines > 0 && outlen > 3 &&
	    (out[0] != '0' + r->code / 100 || out[2] != '0' + r->code % 10))
		abort();
}

static void
check_caps(const struct smtp_reply *r)
{
	struct smtp_caps c;
	size_t i, j, k, n;

	smtp_caps_parse(r, &c);
	if (c.nauth > SMTP_AUTH_MECHS_MAX)
		abort();
	if (c.nauth > 0 && !c.auth_present)
		abort();
	for (i = 0; i < c.nauth; i++) {
		n = strnlen(c.auth[i], sizeof(c.auth[i]));
		if (n == 0 || n >= sizeof(c.auth[i]))
			abort();
		for (k = 0; k < n; k++)
			if (c.auth[i][k] >= 'a' && c.auth[i][k] <= 'z')
				abort();
		for (j = 0; j < i; j++)
			if (strcmp(c.auth[i], c.auth[j]) == 0)
				abort();
	}
	if (!r->complete || r->code / 100 != 2) {
		if (c.pipelining || c.size_present || c.auth_present)
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_reply r;
	const char *p = (const char *)data, *nl;
	size_t left = size, len;
	char err[64];
	int st = SMTP_REPLY_MORE, was_complete;

	smtp_reply_init(&r);
	while (left > 0) {
		nl = memchr(p, '\n', left);
		len = nl != NULL ? (size_t)(nl - p) : left;
		was_complete = r.complete;
		err[0] = '\0';
		st = smtp_reply_feed(&r, p, len, err, sizeof(err));
		if (st != SMTP_REPLY_MORE && st != SMTP_REPLY_DONE &&
		    st != SMTP_REPLY_ERROR)
			abort();
		if (was_complete && st != SMTP_REPLY_ERROR)
			abort();
		if (st == SMTP_REPLY_ERROR && strnlen(err, sizeof(err)) == 0)
			abort();
		check_reply(&r, st);
		if (nl == NULL)
			break;
		p = nl + 1;
		left -= len + 1;
	}
	check_summary(&r, 1 + size % 300);
	check_summary(&r, 4500);
	check_caps(&r);
	return 0;
}

/*
 * smtp_cmd: parsing of SMTP commands received by our listeners (RFC 5321
 * section 4.1, with the ESMTP parameters of RFC 1870 SIZE, RFC 6152 8BITMIME,
 * RFC 6531 SMTPUTF8 and RFC 3461 DSN).
 *
 * Contract: pure, no I/O, no allocation, bounded.  The caller has already
 * split the input at CRLF (or bare LF) and enforced the line limit; `line`
 * excludes the line ending.  Verbs are case-insensitive.  The parser is
 * lenient where real clients deviate harmlessly (a space after "FROM:",
 * trailing spaces) and strict on everything else.
 */
#ifndef MAILRELAY_SMTP_CMD_H
#define MAILRELAY_SMTP_CMD_H

#include <stddef.h>

#define SMTP_CMD_LINE_MAX 512   /* RFC 5321 4.5.3.1.4, including CRLF; we allow up to 2048 for long ESMTP params */
#define SMTP_PATH_MAX     256   /* RFC 5321 4.5.3.1.3: a path without the angle brackets */
#define SMTP_PARAM_MAX    256

enum smtp_verb {
	SMTP_CMD_UNKNOWN = 0,
	SMTP_CMD_HELO, SMTP_CMD_EHLO, SMTP_CMD_MAIL, SMTP_CMD_RCPT, SMTP_CMD_DATA,
	SMTP_CMD_RSET, SMTP_CMD_NOOP, SMTP_CMD_QUIT, SMTP_CMD_VRFY, SMTP_CMD_EXPN,
	SMTP_CMD_HELP, SMTP_CMD_STARTTLS, SMTP_CMD_AUTH, SMTP_CMD_BDAT
};

enum smtp_body { SMTP_BODY_NONE = 0, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME };

struct smtp_cmd {
	enum smtp_verb verb;
	/* HELO/EHLO: the domain or address literal; other verbs: the raw argument (NOOP, HELP, VRFY,
	 * EXPN, AUTH, BDAT), leading and trailing spaces removed; "" for MAIL, RCPT and the others. */
	char arg[SMTP_PARAM_MAX + 1];
	/* MAIL/RCPT: the path without angle brackets, source route removed; "" for the null path <>. */
	char path[SMTP_PATH_MAX + 1];
	/* MAIL parameters */
	long long size;                 /* SIZE=, -1 when absent; BDAT: the chunk size */
	enum smtp_body body;            /* BODY= */
	int smtputf8;                   /* SMTPUTF8 given */
	char ret[8];                    /* RET=FULL|HDRS, "" when absent */
	char envid[101];                /* ENVID= (xtext kept encoded), "" when absent */
	char maildrop[64];              /* X-MAILDROP= (mailrelay's own: the sendmail client's drop name), "" */
	/* RCPT parameters */
	char notify[64];                /* NOTIFY= as given (upper-cased), "" when absent */
	char orcpt[SMTP_PATH_MAX + 16]; /* ORCPT= as given (xtext kept encoded), "" when absent */
};

/*
 * Parse one command line.  Returns 0 on success (cmd->verb may be
 * SMTP_CMD_UNKNOWN for an unrecognised verb: reply 500), or -1 on a syntax
 * error in a recognised command (reply 501 with errbuf, which is a short
 * human-readable reason such as "syntax: MAIL FROM:<address>").
 * Unknown ESMTP parameters on MAIL/RCPT are a syntax error (RFC 5321 says 555).
 * Control characters (< 0x20 except none, and 0x7f) anywhere are an error.
 * An unrecognised verb returns 0 with SMTP_CMD_UNKNOWN whatever follows it,
 * control characters included.  A path may lack a domain ("<root>": a
 * local user).  errbuf reads well after "501 5.5.4 ".
 */
int smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *cmd,
    char *errbuf, size_t errlen);

/* Name of a verb for logs ("MAIL"), "UNKNOWN" for SMTP_CMD_UNKNOWN. */
const char *smtp_verb_name(enum smtp_verb v);

#endif

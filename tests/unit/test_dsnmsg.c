/*
 * Unit tests for lib/dsnmsg.c: delivery status notifications.  Each test
 * composes a notification and takes it apart again with a small MIME
 * reader (below): top-level fields, the boundary, the three parts, the
 * report's per-message and per-recipient blocks.  Every message is also
 * checked for CRLF-only lines of at most 998 octets.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsnmsg.h"
#include "xmalloc.h"

/* ---- a small reader for what dsn_compose() writes ---- */

struct part {
	const char *hdr;        /* header section, without the empty line */
	size_t hdrlen;
	const char *body;
	size_t bodylen;
};

struct parsed {
	char *msg;
	size_t len;
	int eightbit;
	struct part top;
	char boundary[100];
	struct part parts[4];
	size_t nparts;
	int closed;             /* the closing delimiter was found */
};

static const char *
find(const char *hay, size_t n, const char *needle)
{
	size_t k = strlen(needle), i;

	for (i = 0; i + k <= n; i++)
		if (memcmp(hay + i, needle, k) == 0)
			return hay + i;
	return NULL;
}

/* Every line ends in CRLF, no bare CR or LF, none longer than 998 octets. */
static void
assert_lines_ok(const char *s, size_t n)
{
	size_t i, col = 0;

	assert_true(n >= 2 && s[n - 2] == '\r' && s[n - 1] == '\n');
	for (i = 0; i < n; i++) {
		if (s[i] == '\r') {
			assert_true(i + 1 < n && s[i + 1] == '\n');
			assert_true(col <= 998);
			col = 0;
			i++;
		} else {
			assert_true(s[i] != '\n');
			col++;
		}
	}
}

static void
split_part(const char *s, size_t n, struct part *p)
{
	const char *e;

	if (n >= 2 && s[0] == '\r' && s[1] == '\n') {
		p->hdr = s;
		p->hdrlen = 0;
		p->body = s + 2;
		p->bodylen = n - 2;
		return;
	}
	e = find(s, n, "\r\n\r\n");
	assert_non_null(e);
	p->hdr = s;
	p->hdrlen = (size_t)(e - s) + 2;
	p->body = e + 4;
	p->bodylen = n - (size_t)(p->body - s);
}

/*
 * The unfolded value of field name in a header section, white space at
 * the ends removed; NULL when absent.  Caller frees.
 */
static char *
field(const char *hdr, size_t len, const char *name)
{
	size_t i = 0, k = strlen(name);

	while (i < len) {
		const char *e = find(hdr + i, len - i, "\r\n");
		size_t end = e ? (size_t)(e - hdr) : len;
		if (end - i > k && strncasecmp(hdr + i, name, k) == 0 && hdr[i + k] == ':') {
			char *v = xmalloc(len + 1);
			size_t o = 0, j = i + k + 1;
			for (;;) {
				memcpy(v + o, hdr + j, end - j);
				o += end - j;
				j = end + 2;
				if (j >= len || (hdr[j] != ' ' && hdr[j] != '\t'))
					break;
				e = find(hdr + j, len - j, "\r\n");
				end = e ? (size_t)(e - hdr) : len;
			}
			v[o] = '\0';
			while (o > 0 && (v[o - 1] == ' ' || v[o - 1] == '\t'))
				v[--o] = '\0';
			j = strspn(v, " \t");
			memmove(v, v + j, o - j + 1);
			return v;
		}
		i = end + 2;
	}
	return NULL;
}

static void
assert_field(const char *hdr, size_t len, const char *name, const char *want)
{
	char *v = field(hdr, len, name);

	if (want == NULL) {
		if (v != NULL)
			fail_msg("%s: unexpected value \"%s\"", name, v);
		return;
	}
	if (v == NULL)
		fail_msg("%s: missing, wanted \"%s\"", name, want);
	assert_string_equal(v, want);
	free(v);
}

static void
parse(struct parsed *p, const struct dsn_msg *m)
{
	const char *b, *body, *end, *ct;
	char delim[110], *v;
	size_t dl;

	memset(p, 0, sizeof *p);
	p->msg = dsn_compose(m, &p->len, &p->eightbit);
	assert_non_null(p->msg);
	assert_int_equal(strlen(p->msg), p->len);
	assert_lines_ok(p->msg, p->len);
	split_part(p->msg, p->len, &p->top);

	v = field(p->top.hdr, p->top.hdrlen, "Content-Type");
	assert_non_null(v);
	assert_non_null(strstr(v, "multipart/report;"));
	assert_non_null(strstr(v, "report-type=delivery-status;"));
	ct = strstr(v, "boundary=\"");
	assert_non_null(ct);
	ct += 10;
	assert_true(strchr(ct, '"') - ct < 71);     /* RFC 2046: at most 70 characters */
	snprintf(p->boundary, sizeof p->boundary, "%.*s", (int)(strchr(ct, '"') - ct), ct);
	free(v);

	/* parts: "--B" CRLF ... CRLF "--B" ... CRLF "--B--" */
	dl = (size_t)snprintf(delim, sizeof delim, "\r\n--%s", p->boundary);
	body = p->top.body - 2;     /* the CRLF of the empty line starts the first delimiter */
	end = p->msg + p->len;
	b = find(body, (size_t)(end - body), delim);
	assert_non_null(b);
	for (;;) {
		const char *start = b + dl, *next;
		if (end - start >= 2 && start[0] == '-' && start[1] == '-') {
			p->closed = 1;
			assert_true(end - start == 4);  /* "--" CRLF */
			break;
		}
		assert_true(start[0] == '\r' && start[1] == '\n');
		start += 2;
		next = find(start - 2, (size_t)(end - start + 2), delim);
		assert_non_null(next);
		assert_true(p->nparts < 4);
		split_part(start, (size_t)(next - start), &p->parts[p->nparts++]);
		b = next;
	}
}

static void
parsed_free(struct parsed *p)
{
	free(p->msg);
}

static char *
part_field(const struct parsed *p, size_t i, const char *name)
{
	return field(p->parts[i].hdr, p->parts[i].hdrlen, name);
}

static void
assert_part_type(const struct parsed *p, size_t i, const char *type)
{
	char *v = part_field(p, i, "Content-Type");

	assert_non_null(v);
	assert_string_equal(v, type);
	free(v);
}

/* Block i (0: per-message, 1..: per-recipient) of the delivery-status part. */
static void
ds_block(const struct parsed *p, size_t i, const char **s, size_t *n)
{
	const char *b = p->parts[1].body, *end = b + p->parts[1].bodylen, *e;

	for (;;) {
		e = find(b, (size_t)(end - b), "\r\n\r\n");
		if (i == 0)
			break;
		assert_non_null(e);
		b = e + 4;
		i--;
	}
	*s = b;
	*n = e ? (size_t)(e - b) + 2 : (size_t)(end - b);
}

static size_t
ds_nblocks(const struct parsed *p)
{
	const char *b = p->parts[1].body, *end = b + p->parts[1].bodylen, *e;
	size_t n = 1;

	while ((e = find(b, (size_t)(end - b), "\r\n\r\n")) != NULL && e + 4 < end) {
		n++;
		b = e + 4;
	}
	return n;
}

/* Is s in the text part, once its wrapped lines are joined again (line break and indent: one space)? */
static int
text_has(const struct parsed *p, const char *s)
{
	const char *t = p->parts[0].body;
	size_t i, o = 0, n = p->parts[0].bodylen;
	char *u = xmalloc(n + 1);
	int found;

	for (i = 0; i < n; i++) {
		if (t[i] == '\r' && i + 1 < n && t[i + 1] == '\n') {
			i++;
			while (i + 1 < n && t[i + 1] == ' ')
				i++;
			u[o++] = ' ';
		} else
			u[o++] = t[i];
	}
	found = find(u, o, s) != NULL;
	free(u);
	return found;
}

/* ---- fixtures ---- */

static const char orig_msg[] =
    "Received: from web1 by web1.example.com\r\n"
    "From: Cron Daemon <root@web1.example.com>\r\n"
    "To: bob@example.org, carol@example.net\r\n"
    "Subject: nightly backup\r\n"
    " report\r\n"
    "Message-ID: <abc@web1.example.com>\r\n"
    "\r\n"
    "backup finished\r\n"
    "SECRET BODY LINE\r\n";
#define ORIG_HDR_LEN (sizeof orig_msg - 1 - strlen("\r\nbackup finished\r\nSECRET BODY LINE\r\n"))

static void
base_msg(struct dsn_msg *m, const struct dsn_rcpt *r, size_t n)
{
	memset(m, 0, sizeof *m);
	m->reporting_mta = "web1.example.com";
	m->queue_id = "67ADC2A00001F001";
	m->arrival = 1739440800;        /* Thu, 13 Feb 2025 10:00:00 UTC */
	m->now = 1739441100;
	m->tz_offset_minutes = 60;
	m->to = "root@web1.example.com";
	m->from_addr = "MAILER-DAEMON@web1.example.com";
	m->rcpts = r;
	m->nrcpt = n;
	m->orig_msg = orig_msg;
	m->orig_len = sizeof orig_msg - 1;
	m->boundary_seed = "67ADC2A00001F001.1739441100";
}

/* ---- tests ---- */

static void
test_failed_two_recipients(void **state)
{
	struct dsn_rcpt r[2] = {
		{ .final = "bob@example.org", .orig = "rfc822;robert@example.org", .action = DSN_FAILED,
		  .status = "5.1.1", .diagnostic = "550 5.1.1 <bob@example.org>: Recipient address rejected",
		  .remote_mta = "smtp.example.org", .last_attempt = 1739441000 },
		{ .final = "carol@example.net", .action = DSN_FAILED, .status = "5.7.1",
		  .diagnostic = "554 5.7.1 relay access denied", .remote_mta = "smtp.example.org",
		  .last_attempt = 1739441001 },
	};
	struct dsn_msg m;
	struct parsed p;
	const char *s;
	size_t n;
	(void)state;

	base_msg(&m, r, 2);
	m.envid = "job+2B42";
	parse(&p, &m);
	assert_false(p.eightbit);

	/* the header of the notification */
	assert_field(p.top.hdr, p.top.hdrlen, "From", "Mail Delivery System <MAILER-DAEMON@web1.example.com>");
	assert_field(p.top.hdr, p.top.hdrlen, "To", "root@web1.example.com");
	assert_field(p.top.hdr, p.top.hdrlen, "Subject", "Undelivered Mail Returned to Sender");
	assert_field(p.top.hdr, p.top.hdrlen, "Date", "Thu, 13 Feb 2025 11:05:00 +0100");
	assert_field(p.top.hdr, p.top.hdrlen, "Message-ID",
	    "<67ADC2A00001F001.1739441100.failed@web1.example.com>");
	assert_field(p.top.hdr, p.top.hdrlen, "Auto-Submitted", "auto-replied");
	assert_field(p.top.hdr, p.top.hdrlen, "MIME-Version", "1.0");
	assert_field(p.top.hdr, p.top.hdrlen, "Content-Transfer-Encoding", NULL);
	assert_true(p.closed);
	assert_int_equal(p.nparts, 3);

	/* 1: for people */
	assert_part_type(&p, 0, "text/plain; charset=us-ascii");
	assert_true(text_has(&p, "67ADC2A00001F001"));
	assert_true(text_has(&p, "bob@example.org"));
	assert_true(text_has(&p, "550 5.1.1 <bob@example.org>: Recipient address rejected"));
	assert_true(text_has(&p, "554 5.7.1 relay access denied"));
	assert_true(text_has(&p, "smtp.example.org"));
	assert_true(text_has(&p, "failed"));
	assert_true(text_has(&p, "header of the message"));
	assert_false(text_has(&p, "delayed"));

	/* 2: the report */
	assert_part_type(&p, 1, "message/delivery-status");
	assert_int_equal(ds_nblocks(&p), 3);
	ds_block(&p, 0, &s, &n);
	assert_field(s, n, "Reporting-MTA", "dns; web1.example.com");
	assert_field(s, n, "Original-Envelope-Id", "job+42");
	assert_field(s, n, "X-Mailrelay-Queue-ID", "67ADC2A00001F001");
	assert_field(s, n, "Arrival-Date", "Thu, 13 Feb 2025 11:00:00 +0100");
	assert_field(s, n, "Final-Recipient", NULL);
	ds_block(&p, 1, &s, &n);
	assert_field(s, n, "Original-Recipient", "rfc822;robert@example.org");
	assert_field(s, n, "Final-Recipient", "rfc822; bob@example.org");
	assert_field(s, n, "Action", "failed");
	assert_field(s, n, "Status", "5.1.1");
	assert_field(s, n, "Remote-MTA", "dns; smtp.example.org");
	assert_field(s, n, "Diagnostic-Code", "smtp; 550 5.1.1 <bob@example.org>: Recipient address rejected");
	assert_field(s, n, "Last-Attempt-Date", "Thu, 13 Feb 2025 11:03:20 +0100");
	assert_field(s, n, "Will-Retry-Until", NULL);
	ds_block(&p, 2, &s, &n);
	assert_field(s, n, "Original-Recipient", NULL);
	assert_field(s, n, "Final-Recipient", "rfc822; carol@example.net");
	assert_field(s, n, "Status", "5.7.1");
	assert_field(s, n, "Diagnostic-Code", "smtp; 554 5.7.1 relay access denied");
	assert_field(s, n, "Last-Attempt-Date", "Thu, 13 Feb 2025 11:03:21 +0100");

	/* 3: the original header section, byte for byte, and nothing of the body */
	assert_part_type(&p, 2, "text/rfc822-headers");
	assert_true(p.parts[2].bodylen >= ORIG_HDR_LEN);
	assert_memory_equal(p.parts[2].body, orig_msg, ORIG_HDR_LEN);
	assert_null(find(p.msg, p.len, "SECRET BODY LINE"));
	assert_false(text_has(&p, "still being attempted"));
	parsed_free(&p);

	/* reported while others of the message are still being tried: said so */
	m.still_pending = 2;
	parse(&p, &m);
	assert_true(text_has(&p, "2 other recipients"));
	assert_true(text_has(&p, "not part of this report"));
	parsed_free(&p);
}

static void
test_delayed(void **state)
{
	struct dsn_rcpt r[1] = {
		{ .final = "bob@example.org", .action = DSN_DELAYED, .status = "4.4.1",
		  .diagnostic = "connect to smtp.example.org[192.0.2.1]:587: Connection timed out",
		  .last_attempt = 1739441000, .will_retry_until = 1739872800 },
	};
	struct dsn_msg m;
	struct parsed p;
	const char *s;
	size_t n;
	(void)state;

	base_msg(&m, r, 1);
	m.tz_offset_minutes = 0;
	parse(&p, &m);
	assert_field(p.top.hdr, p.top.hdrlen, "Subject", "Delayed Mail (still being retried)");
	assert_field(p.top.hdr, p.top.hdrlen, "Message-ID",
	    "<67ADC2A00001F001.1739441100.delayed@web1.example.com>");
	assert_int_equal(p.nparts, 3);
	ds_block(&p, 1, &s, &n);
	assert_field(s, n, "Action", "delayed");
	assert_field(s, n, "Status", "4.4.1");
	assert_field(s, n, "Remote-MTA", NULL);
	/* our own text, not a server's reply */
	assert_field(s, n, "Diagnostic-Code",
	    "X-Mailrelay; connect to smtp.example.org[192.0.2.1]:587: Connection timed out");
	assert_field(s, n, "Will-Retry-Until", "Tue, 18 Feb 2025 10:00:00 +0000");
	assert_true(text_has(&p, "delayed"));
	assert_true(text_has(&p, "Reason:"));
	assert_true(text_has(&p, "Tue, 18 Feb 2025 10:00:00 +0000"));
	assert_false(text_has(&p, "could not be delivered"));
	parsed_free(&p);

	/* a status whose class does not fit the action is replaced */
	r[0].status = "5.1.1";
	parse(&p, &m);
	ds_block(&p, 1, &s, &n);
	assert_field(s, n, "Status", "4.0.0");
	parsed_free(&p);
}

static void
test_success_reports(void **state)
{
	struct dsn_rcpt r[3] = {
		{ .final = "bob@example.org", .action = DSN_DELIVERED, .status = "2.0.0",
		  .diagnostic = "250 2.0.0 Ok: queued as 4XyZ", .remote_mta = "smtp.example.org" },
		{ .final = "carol@example.net", .action = DSN_RELAYED, .status = NULL,
		  .diagnostic = "250 ok", .remote_mta = "smtp.example.org", .will_retry_until = 1 },
		{ .final = "dave@example.net", .action = DSN_EXPANDED, .status = "4.0.0" },
	};
	struct dsn_msg m;
	struct parsed p;
	const char *s;
	size_t n;
	(void)state;

	base_msg(&m, r, 3);
	parse(&p, &m);
	assert_field(p.top.hdr, p.top.hdrlen, "Subject", "Successful Mail Delivery Report");
	assert_int_equal(ds_nblocks(&p), 4);
	ds_block(&p, 1, &s, &n);
	assert_field(s, n, "Action", "delivered");
	assert_field(s, n, "Status", "2.0.0");
	assert_field(s, n, "Diagnostic-Code", "smtp; 250 2.0.0 Ok: queued as 4XyZ");
	ds_block(&p, 2, &s, &n);
	assert_field(s, n, "Action", "relayed");
	assert_field(s, n, "Status", "2.0.0");       /* derived from the action */
	assert_field(s, n, "Will-Retry-Until", NULL);
	ds_block(&p, 3, &s, &n);
	assert_field(s, n, "Action", "expanded");
	assert_field(s, n, "Status", "2.0.0");
	assert_field(s, n, "Diagnostic-Code", NULL);
	assert_true(text_has(&p, "does not send delivery reports"));
	assert_false(text_has(&p, "failed"));
	parsed_free(&p);

	/* one failure among successes makes it a bounce */
	r[2].action = DSN_FAILED;
	r[2].status = "5.1.1";
	parse(&p, &m);
	assert_field(p.top.hdr, p.top.hdrlen, "Subject", "Undelivered Mail Returned to Sender");
	ds_block(&p, 3, &s, &n);
	assert_field(s, n, "Action", "failed");
	parsed_free(&p);
}

static void
test_hostile_diagnostic(void **state)
{
	char *diag = xmalloc(6000);
	struct dsn_rcpt r[1] = {
		{ .final = "bob@example.org\r\nBcc: victim@example.com", .action = DSN_FAILED, .status = "5.1.1",
		  .remote_mta = "smtp.example.org\r\nX-Evil: 1" },
	};
	struct dsn_msg m;
	struct parsed p;
	const char *s;
	size_t n, i;
	char *v;
	(void)state;

	strcpy(diag, "550 5.1.1 <bob@example.org>\r\nInjected: yes\r\n\r\n--x\r\n\t");
	memset(diag + strlen(diag), 'A', 5000);
	diag[strlen("550 5.1.1 <bob@example.org>\r\nInjected: yes\r\n\r\n--x\r\n\t") + 5000] = '\0';
	r[0].diagnostic = diag;
	base_msg(&m, r, 1);
	m.to = "root@web1.example.com\r\nBcc: x@example.com";
	m.queue_id = "67ADC2A00001F001\r\nX-Queue: 2";
	parse(&p, &m);

	/* nothing injected starts a line anywhere */
	for (i = 0; i + 1 < p.len; i++)
		if (p.msg[i] == '\n') {
			assert_false(strncmp(p.msg + i + 1, "Injected", 8) == 0);
			assert_false(strncmp(p.msg + i + 1, "Bcc", 3) == 0);
			assert_false(strncmp(p.msg + i + 1, "X-Evil", 6) == 0);
			assert_false(strncmp(p.msg + i + 1, "X-Queue", 7) == 0);
			assert_false(strncmp(p.msg + i + 1, "--x", 3) == 0);
		}
	assert_int_equal(p.nparts, 3);
	assert_field(p.top.hdr, p.top.hdrlen, "To", "root@web1.example.com Bcc: x@example.com");
	assert_int_equal(ds_nblocks(&p), 2);
	ds_block(&p, 1, &s, &n);
	assert_field(s, n, "Final-Recipient", "rfc822; bob@example.org Bcc: victim@example.com");
	assert_field(s, n, "Remote-MTA", "dns; smtp.example.org X-Evil: 1");
	assert_field(s, n, "Injected", NULL);
	v = field(s, n, "Diagnostic-Code");
	assert_non_null(v);
	/* cleaned to one line, folded, and cut at DSN_TEXT_MAX octets */
	assert_true(strncmp(v, "smtp; 550 5.1.1 <bob@example.org> Injected: yes --x AAAA", 56) == 0);
	assert_true(strlen(v) <= DSN_TEXT_MAX + 16);
	assert_true(strlen(v) > DSN_TEXT_MAX - 100);
	assert_string_equal(v + strlen(v) - 3, "...");
	free(v);
	/* the text part has it too, cut the same way */
	assert_true(text_has(&p, "Injected: yes --x AAAA"));
	assert_true(p.len < 12000);
	parsed_free(&p);
	free(diag);
}

static void
test_folding(void **state)
{
	char diag[1200];
	struct dsn_rcpt r[1] = {
		{ .final = "bob@example.org", .action = DSN_FAILED, .status = "5.7.1",
		  .diagnostic = diag, .remote_mta = "smtp.example.org" },
	};
	struct dsn_msg m;
	struct parsed p;
	const char *s, *d;
	size_t n, i, col;
	char *v;
	(void)state;

	/* a long reply made of words: folded at spaces, unfolds to the same text */
	strcpy(diag, "550-5.7.1 This message was not accepted because it looks like unsolicited mail");
	for (i = 0; i < 12; i++)
		strcat(diag, " please see https://support.example.org/policy/item-12345 for details");
	base_msg(&m, r, 1);
	parse(&p, &m);
	ds_block(&p, 1, &s, &n);
	v = field(s, n, "Diagnostic-Code");
	assert_non_null(v);
	assert_true(strncmp(v, "smtp; ", 6) == 0);
	assert_string_equal(v + 6, diag);
	free(v);
	/* and every line of the field is within 78 octets, since no word is longer */
	d = find(s, n, "Diagnostic-Code:");
	assert_non_null(d);
	for (col = 0; d < s + n; d++) {
		if (*d == '\r') {
			assert_true(col <= 78);
			if (d[2] != ' ')
				break;
			col = 0;
			d++;
		} else
			col++;
	}
	/* the text part wraps at 76 */
	for (col = 0, d = p.parts[0].body; d < p.parts[0].body + p.parts[0].bodylen; d++) {
		if (*d == '\r') {
			assert_true(col <= 76);
			col = 0;
			d++;
		} else
			col++;
	}
	parsed_free(&p);
}

static void
test_ret_full_and_hdrs(void **state)
{
	struct dsn_rcpt r[1] = {
		{ .final = "bob@example.org", .action = DSN_FAILED, .status = "5.1.1",
		  .diagnostic = "550 5.1.1 unknown", .remote_mta = "smtp.example.org" },
	};
	static const char eight[] = "From: a@example.org\r\nSubject: caf\xc3\xa9\r\n\r\nna\xc3\xafve\r\n";
	struct dsn_msg m;
	struct parsed p;
	char *v;
	(void)state;

	base_msg(&m, r, 1);
	m.ret_full = 1;
	parse(&p, &m);
	assert_part_type(&p, 2, "message/rfc822");
	/* the whole original, byte for byte, its last CRLF kept */
	assert_int_equal(p.parts[2].bodylen, sizeof orig_msg - 1);
	assert_memory_equal(p.parts[2].body, orig_msg, sizeof orig_msg - 1);
	assert_true(text_has(&p, "then the message."));
	v = part_field(&p, 2, "Content-Description");
	assert_string_equal(v, "Returned message");
	free(v);
	parsed_free(&p);

	/* RET=FULL but larger than the limit: headers only, and the text says so */
	m.full_limit = 100;
	parse(&p, &m);
	assert_part_type(&p, 2, "text/rfc822-headers");
	assert_memory_equal(p.parts[2].body, orig_msg, ORIG_HDR_LEN);
	assert_null(find(p.msg, p.len, "SECRET BODY LINE"));
	assert_true(text_has(&p, "larger than 100 octets"));
	parsed_free(&p);

	/* 8-bit original: flagged, and declared on the part and the whole */
	m.full_limit = 0;
	m.orig_msg = eight;
	m.orig_len = sizeof eight - 1;
	parse(&p, &m);
	assert_true(p.eightbit);
	assert_field(p.top.hdr, p.top.hdrlen, "Content-Transfer-Encoding", "8bit");
	v = part_field(&p, 2, "Content-Transfer-Encoding");
	assert_string_equal(v, "8bit");
	free(v);
	v = part_field(&p, 0, "Content-Transfer-Encoding");
	assert_null(v);
	assert_memory_equal(p.parts[2].body, eight, sizeof eight - 1);
	parsed_free(&p);
	m.ret_full = 0;
	parse(&p, &m);
	assert_true(p.eightbit);        /* the Subject has 8-bit octets */
	assert_part_type(&p, 2, "text/rfc822-headers");
	parsed_free(&p);
}

static void
test_boundary_in_original(void **state)
{
	struct dsn_rcpt r[1] = {
		{ .final = "bob@example.org", .action = DSN_FAILED, .status = "5.1.1" },
	};
	struct dsn_msg m;
	struct parsed p;
	char first[100], *hostile;
	(void)state;

	base_msg(&m, r, 1);
	m.ret_full = 1;
	parse(&p, &m);
	snprintf(first, sizeof first, "%s", p.boundary);
	assert_true(strncmp(first, "=_67ADC2A00001F001.1739441100_", 30) == 0);
	parsed_free(&p);

	/* the same seed, and an original that carries that very boundary */
	hostile = xasprintf("Subject: %s\r\n\r\n--%s\r\nContent-Type: text/html\r\n\r\nfake\r\n--%s--\r\n",
	    first, first, first);
	m.orig_msg = hostile;
	m.orig_len = strlen(hostile);
	parse(&p, &m);
	assert_string_not_equal(p.boundary, first);
	assert_null(strstr(hostile, p.boundary));
	assert_int_equal(p.nparts, 3);
	assert_true(p.closed);
	assert_int_equal(p.parts[2].bodylen, strlen(hostile));
	assert_memory_equal(p.parts[2].body, hostile, strlen(hostile));
	parsed_free(&p);

	/* headers only: the boundary still must not occur */
	m.ret_full = 0;
	parse(&p, &m);
	assert_string_not_equal(p.boundary, first);
	parsed_free(&p);
	free(hostile);
}

static void
test_original_without_header(void **state)
{
	struct dsn_rcpt r[1] = {
		{ .final = "bob@example.org", .action = DSN_FAILED, .status = "5.1.1" },
	};
	static const char nohdr[] = "this is not a header line\r\nbody\r\n";
	static const char badline[] = "Subject: x\r\nnot a field\r\nmore\r\n";
	struct dsn_msg m;
	struct parsed p;
	(void)state;

	base_msg(&m, r, 1);
	m.orig_msg = nohdr;
	m.orig_len = sizeof nohdr - 1;
	parse(&p, &m);
	assert_part_type(&p, 2, "text/rfc822-headers");
	assert_int_equal(p.parts[2].bodylen, 0);
	assert_null(find(p.msg, p.len, "this is not a header"));
	parsed_free(&p);

	/* RET=FULL: returned as a message with an empty header section */
	m.ret_full = 1;
	parse(&p, &m);
	assert_part_type(&p, 2, "message/rfc822");
	assert_int_equal(p.parts[2].bodylen, sizeof nohdr - 1 + 2);
	assert_memory_equal(p.parts[2].body, "\r\n", 2);
	assert_memory_equal(p.parts[2].body + 2, nohdr, sizeof nohdr - 1);
	parsed_free(&p);

	/* a header section cut short by a line that is not a field */
	m.orig_msg = badline;
	m.orig_len = sizeof badline - 1;
	parse(&p, &m);
	assert_memory_equal(p.parts[2].body, "Subject: x\r\n\r\nnot a field\r\nmore\r\n",
	    sizeof badline - 1 + 2);
	parsed_free(&p);
	m.ret_full = 0;
	parse(&p, &m);
	assert_int_equal(p.parts[2].bodylen, strlen("Subject: x\r\n"));
	assert_memory_equal(p.parts[2].body, "Subject: x\r\n", strlen("Subject: x\r\n"));
	parsed_free(&p);

	/* no original at all */
	m.orig_msg = NULL;
	m.orig_len = 0;
	parse(&p, &m);
	assert_part_type(&p, 2, "text/rfc822-headers");
	assert_int_equal(p.parts[2].bodylen, 0);
	parsed_free(&p);
}

static void
test_original_repaired(void **state)
{
	struct dsn_rcpt r[1] = {
		{ .final = "bob@example.org", .action = DSN_FAILED, .status = "5.1.1" },
	};
	struct dsn_msg m;
	struct parsed p;
	char *orig = xmalloc(4000);
	char *v;
	size_t i;
	(void)state;

	/* an over-long header line and bare LFs: the returned copy is repaired */
	strcpy(orig, "X-Long: ");
	for (i = 0; i < 300; i++)
		strcat(orig, "word ");
	strcat(orig, "\nSubject: bare lf\n\nbody\n");
	base_msg(&m, r, 1);
	m.orig_msg = orig;
	m.orig_len = strlen(orig);
	parse(&p, &m);              /* checks every line */
	v = field(p.parts[2].body, p.parts[2].bodylen, "Subject");
	assert_string_equal(v, "bare lf");
	free(v);
	v = field(p.parts[2].body, p.parts[2].bodylen, "X-Long");
	assert_int_equal(strlen(v), 300 * 5 - 1);
	free(v);
	parsed_free(&p);
	m.ret_full = 1;
	parse(&p, &m);
	assert_part_type(&p, 2, "message/rfc822");
	assert_non_null(find(p.parts[2].body, p.parts[2].bodylen, "\r\n\r\nbody\r\n"));
	parsed_free(&p);
	free(orig);
}

static void
test_xtext_and_utf8(void **state)
{
	struct dsn_rcpt r[3] = {
		{ .final = "a+b@example.org", .orig = "rfc822;a+2Bb@example.org", .action = DSN_FAILED },
		{ .final = "j\xc3\xb6rg@example.org", .orig = "rfc822;x+0D+0AInjected:+20y",
		  .action = DSN_FAILED },
		{ .final = "bad\xff" "byte@example.org", .orig = "noseparator", .action = DSN_FAILED },
	};
	struct dsn_msg m;
	struct parsed p;
	const char *s;
	size_t n;
	(void)state;

	base_msg(&m, r, 3);
	m.envid = "QQ+0D+0A";
	parse(&p, &m);
	ds_block(&p, 0, &s, &n);
	/* decoding would give CR LF: kept as received */
	assert_field(s, n, "Original-Envelope-Id", "QQ+0D+0A");
	ds_block(&p, 1, &s, &n);
	assert_field(s, n, "Original-Recipient", "rfc822;a+b@example.org");
	assert_field(s, n, "Final-Recipient", "rfc822; a+b@example.org");
	assert_field(s, n, "Status", "5.0.0");
	ds_block(&p, 2, &s, &n);
	assert_field(s, n, "Original-Recipient", "rfc822;x+0D+0AInjected:+20y");
	assert_field(s, n, "Final-Recipient", "utf-8; j\\x{F6}rg@example.org");
	ds_block(&p, 3, &s, &n);
	assert_field(s, n, "Original-Recipient", "rfc822;noseparator");
	assert_field(s, n, "Final-Recipient", "utf-8; bad?byte@example.org");
	/* the text part is ASCII */
	for (n = 0; n < p.parts[0].bodylen; n++)
		assert_true((unsigned char)p.parts[0].body[n] < 0x80);
	parsed_free(&p);
}

static void
test_dates(void **state)
{
	char d[40];
	(void)state;

	dsn_date(d, sizeof d, 0, 0);
	assert_string_equal(d, "Thu, 01 Jan 1970 00:00:00 +0000");
	dsn_date(d, sizeof d, 1709208000, 0);
	assert_string_equal(d, "Thu, 29 Feb 2024 12:00:00 +0000");
	dsn_date(d, sizeof d, 1709208000, -330);
	assert_string_equal(d, "Thu, 29 Feb 2024 06:30:00 -0530");
	dsn_date(d, sizeof d, 1735689599, 60);
	assert_string_equal(d, "Wed, 01 Jan 2025 00:59:59 +0100");
	dsn_date(d, sizeof d, -1, 0);
	assert_string_equal(d, "Wed, 31 Dec 1969 23:59:59 +0000");
	assert_string_equal(dsn_action_name(DSN_RELAYED), "relayed");
}

static void
test_nothing_to_send(void **state)
{
	struct dsn_rcpt r[1] = { { .final = "bob@example.org", .action = DSN_FAILED } };
	struct dsn_msg m;
	size_t n = 99;
	int eb = 7;
	(void)state;

	base_msg(&m, r, 0);
	assert_null(dsn_compose(&m, &n, &eb));
	assert_int_equal(n, 0);
	assert_int_equal(eb, 0);
	base_msg(&m, r, 1);
	m.to = "";
	assert_null(dsn_compose(&m, &n, NULL));
	m.to = NULL;
	assert_null(dsn_compose(&m, &n, NULL));
}

static void
test_defaults(void **state)
{
	struct dsn_rcpt r[1] = { { .final = "bob@example.org", .action = DSN_FAILED } };
	struct dsn_msg m;
	struct parsed p;
	const char *s;
	size_t n;
	(void)state;

	base_msg(&m, r, 1);
	m.from_addr = NULL;
	m.from_display = "Mail System, web1";
	m.queue_id = NULL;
	m.boundary_seed = NULL;
	parse(&p, &m);
	assert_field(p.top.hdr, p.top.hdrlen, "From", "\"Mail System, web1\" <MAILER-DAEMON@web1.example.com>");
	assert_field(p.top.hdr, p.top.hdrlen, "Message-ID", "<dsn.1739441100.failed@web1.example.com>");
	assert_int_equal(p.nparts, 3);
	parsed_free(&p);

	/* an action outside the enum is a failure, never a success report */
	r[0].action = (enum dsn_action)42;
	m.from_display = "";
	parse(&p, &m);
	assert_field(p.top.hdr, p.top.hdrlen, "From", "<MAILER-DAEMON@web1.example.com>");
	assert_field(p.top.hdr, p.top.hdrlen, "Subject", "Undelivered Mail Returned to Sender");
	assert_true(text_has(&p, "<bob@example.org>"));
	ds_block(&p, 1, &s, &n);
	assert_field(s, n, "Action", "failed");
	assert_field(s, n, "Status", "5.0.0");
	parsed_free(&p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_failed_two_recipients),
		cmocka_unit_test(test_delayed),
		cmocka_unit_test(test_success_reports),
		cmocka_unit_test(test_hostile_diagnostic),
		cmocka_unit_test(test_folding),
		cmocka_unit_test(test_ret_full_and_hdrs),
		cmocka_unit_test(test_boundary_in_original),
		cmocka_unit_test(test_original_without_header),
		cmocka_unit_test(test_original_repaired),
		cmocka_unit_test(test_xtext_and_utf8),
		cmocka_unit_test(test_dates),
		cmocka_unit_test(test_nothing_to_send),
		cmocka_unit_test(test_defaults),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

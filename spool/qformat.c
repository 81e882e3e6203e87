/*
 * qformat: see qformat.h.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "qformat.h"
#include "explain.h"
#include "trouble.h"

void
qformat_begin(struct qformat *f, FILE *out, const struct qformat_json *json)
{
	memset(f, 0, sizeof *f);
	f->out = out;
	f->json = json;
	if (json != NULL)
		json->begin(f);
}

void
qformat_one(struct qformat *f, const struct spool_env *e)
{
	FILE *out = f->out;
	char when[64];
	size_t i;

	if (f->json != NULL)
		f->json->one(f, e);
	else {
		struct tm tm;
		localtime_r(&e->arrival, &tm);
		strftime(when, sizeof when, "%a %b %e %H:%M:%S", &tm);
		if (f->count == 0)
			fprintf(out, "-Queue ID-------  --Size-- ----Arrival Time---  -Sender/Recipient-------\n");
		fprintf(out, "%s%c %8llu %s  %s\n", e->id, e->damaged ? '#' : e->held ? '!' : ' ', e->size,
		    when, e->damaged && e->nrcpt == 0 ? "(envelope unreadable)" :
		    e->sender[0] ? e->sender : "MAILER-DAEMON");
		if (e->damaged)
			fprintf(out, "%18s(damaged: %s)\n", "", e->damaged);
		for (i = 0; i < e->nrcpt; i++) {
			const struct spool_rcpt *r = &e->rcpts[i];
			if (r->status == RCPT_SENT)
				continue;
			if (r->last_reply && r->last_reply[0] != '\0')
				fprintf(out, "%18s(%.60s)\n", "", r->last_reply);
			fprintf(out, "%48s%s%s\n", "", r->addr, r->status == RCPT_FAILED ? " (failed)" : "");
		}
		fputc('\n', out);
	}
	f->count++;
	f->bytes += e->size;
}

void
qformat_end(struct qformat *f)
{
	if (f->json != NULL)
		f->json->end(f);
	else if (f->count == 0)
		fprintf(f->out, "Mail queue is empty\n");
	else
		fprintf(f->out, "-- %llu Kbytes in %zu Request%s.\n", (f->bytes + 1023) / 1024, f->count,
		    f->count == 1 ? "" : "s");
}

static void
local_time(time_t t, char *buf, size_t len)
{
	struct tm tm;

	localtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S %z", &tm);
}

/* CRLF lines written with LF. */
static void
put_lines(FILE *out, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
			continue;
		fputc(p[i], out);
	}
	if (n > 0 && p[n - 1] != '\n')
		fputc('\n', out);
}

void
qformat_show(FILE *out, const struct spool_env *e, const char *content, size_t len, int body, time_t now)
{
	char when[64];
	size_t i, hl = len;

	local_time(e->arrival, when, sizeof when);
	fprintf(out, "Queue ID:    %s\n", e->id);
	fprintf(out, "Arrival:     %s (%llds ago)\n", when, (long long)(now - e->arrival));
	fprintf(out, "Size:        %llu\n", e->size);
	fprintf(out, "Sender:      <%s>\n", e->sender);
	fprintf(out, "Submitted:   uid %lu, via %s\n", (unsigned long)e->uid, e->via);
	fprintf(out, "Held:        %s\n", e->held || e->damaged ? "yes" : "no");
	if (e->damaged)
		fprintf(out, "Damaged:     %s (not delivered; delete it, or repair its files and restart)\n",
		    e->damaged);
	fprintf(out, "Encoding:    %s%s\n", e->eightbit ? "8BITMIME" : "7BIT", e->smtputf8 ? ", SMTPUTF8" : "");
	if (e->ret[0] || e->envid)
		fprintf(out, "DSN:         %s%s%s%s\n", e->ret[0] ? "RET=" : "", e->ret,
		    e->envid ? " ENVID=" : "", e->envid ? e->envid : "");
	fprintf(out, "Recipients:\n");
	for (i = 0; i < e->nrcpt; i++) {
		const struct spool_rcpt *r = &e->rcpts[i];
		fprintf(out, "  <%s>", r->addr);
		if (r->orig && strcmp(r->orig, r->addr) != 0)
			fprintf(out, " (submitted as <%s>)", r->orig);
		fprintf(out, ": %s, %u attempt%s", rcpt_status_name(r->status), r->attempts,
		    r->attempts == 1 ? "" : "s");
		if (r->status == RCPT_PENDING && r->next_attempt > 0) {
			local_time(r->next_attempt, when, sizeof when);
			fprintf(out, ", next %s", when);
		}
		if (r->notify[0])
			fprintf(out, ", NOTIFY=%s", r->notify);
		if (r->reported)
			fprintf(out, ", sender notified");
		fputc('\n', out);
		if (r->last_reply && r->last_reply[0])
			fprintf(out, "      last reply: %s\n", r->last_reply);
		/*
		 * Not yet delivered, or never: what it means and what to do,
		 * from the table of replies when a row fits the last reply,
		 * else from the failure kind's row.
		 */
		const char *why, *todo;
		if (r->kind[0] && r->status != RCPT_SENT && trouble_by_name(r->kind) >= 0) {
			explain_failure(r->kind, r->last_reply, &why, &todo);
			fprintf(out, "      why:        %s\n", why);
			fprintf(out, "      what to do: %s\n", todo);
		}
	}
	fprintf(out, "Attempts:%s\n", e->nhist ? "" : " none yet");
	for (i = 0; i < e->nhist; i++) {
		const struct spool_attempt *h = &e->hist[i];
		local_time(h->when, when, sizeof when);
		fprintf(out, "  %s  %-8s <%s> via %s: %s\n", when, h->outcome,
		    h->rcpt < e->nrcpt ? e->rcpts[h->rcpt].addr : "?", h->relay[0] ? h->relay : "none",
		    h->reply);
	}
	if (content == NULL) {
		fprintf(out, "Message:     cannot be read\n");
		return;
	}
	for (i = 0; i + 3 < len; i++)
		if (memcmp(content + i, "\r\n\r\n", 4) == 0) {
			hl = i + 2;
			break;
		}
	fprintf(out, "Header:\n");
	put_lines(out, content, hl);
	if (body) {
		fprintf(out, "Body:\n");
		if (hl + 2 <= len)
			put_lines(out, content + hl + 2, len - hl - 2);
	}
}

/*
 * qprint: see qprint.h.
 *
 * Text format (fits 80 columns; '!' after the id marks a held message):
 *   -Queue ID-------  --Size-- ----Arrival Time---  -Sender/Recipient-------
 *   6B036AE139D8A000       201 Sun Nov 22 22:21:21  cron@web1.example.com
 *                        (connect to smtp.example.com:587: Connection refused)
 *                                                ops@example.com
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include "qprint.h"
#include "spool/spool.h"
#include "xmalloc.h"

struct qp_state {
	int json;
	size_t count;
	unsigned long long bytes;
};

static void
json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void
rfc3339(time_t t, char *buf, size_t len)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int
print_one(struct spool_env *e, void *arg)
{
	struct qp_state *st = arg;
	char when[64];
	size_t i;

	if (st->json) {
		printf("%s\n  {\"id\": ", st->count ? "," : "");
		json_str(e->id);
		rfc3339(e->arrival, when, sizeof when);
		printf(", \"arrival\": \"%s\", \"size\": %llu, \"sender\": ", when, e->size);
		json_str(e->sender);
		printf(", \"held\": %s, \"recipients\": [", e->held ? "true" : "false");
		for (i = 0; i < e->nrcpt; i++) {
			const struct spool_rcpt *r = &e->rcpts[i];
			printf("%s\n    {\"address\": ", i ? "," : "");
			json_str(r->addr);
			printf(", \"orig\": ");
			json_str(r->orig);
			printf(", \"status\": \"%s\", \"attempts\": %u, \"last_reply\": ",
			    rcpt_status_name(r->status), r->attempts);
			json_str(r->last_reply);
			printf(", \"next_attempt\": ");
			if (r->status == RCPT_PENDING && r->next_attempt > 0) {
				rfc3339(r->next_attempt, when, sizeof when);
				printf("\"%s\"}", when);
			} else
				printf("null}");
		}
		printf("%s]}", e->nrcpt ? "\n  " : "");
	} else {
		struct tm tm;
		localtime_r(&e->arrival, &tm);
		strftime(when, sizeof when, "%a %b %e %H:%M:%S", &tm);
		if (st->count == 0)
			printf("-Queue ID-------  --Size-- ----Arrival Time---  -Sender/Recipient-------\n");
		printf("%s%c %8llu %s  %s\n", e->id, e->held ? '!' : ' ', e->size, when,
		    e->sender[0] ? e->sender : "MAILER-DAEMON");
		for (i = 0; i < e->nrcpt; i++) {
			const struct spool_rcpt *r = &e->rcpts[i];
			if (r->status == RCPT_SENT)
				continue;
			if (r->last_reply[0] != '\0')
				printf("%18s(%.60s)\n", "", r->last_reply);
			printf("%48s%s%s\n", "", r->addr, r->status == RCPT_FAILED ? " (failed)" : "");
		}
		printf("\n");
	}
	st->count++;
	st->bytes += e->size;
	return 0;
}

int
queue_print(const char *progname, const struct config *conf, int json)
{
	struct spool sp;
	struct qp_state st = { .json = json };
	char err[512];
	int n;

	if (spool_open(&sp, conf->spool_dir, 0, err, sizeof err) == -1) {
		fprintf(stderr, "%s: cannot read the queue: %s\n", progname, err);
		return EX_NOPERM;
	}
	if (json)
		printf("[");
	n = spool_scan(&sp, 0, print_one, &st);
	spool_close(&sp);
	if (n < 0) {
		fprintf(stderr, "%s: cannot read the queue in %s\n", progname, conf->spool_dir);
		return EX_IOERR;
	}
	if (json)
		printf("%s]\n", st.count ? "\n" : "");
	else if (st.count == 0)
		printf("Mail queue is empty\n");
	else
		printf("-- %llu Kbytes in %zu Request%s.\n", (st.bytes + 1023) / 1024, st.count,
		    st.count == 1 ? "" : "s");
	return 0;
}

static int
sum_one(struct spool_env *e, void *arg)
{
	struct queue_summary *q = arg;

	q->messages++;
	if (e->held)
		q->held++;
	if (q->oldest == 0 || e->arrival < q->oldest)
		q->oldest = e->arrival;
	return 0;
}

int
queue_summarize(const struct config *conf, struct queue_summary *q, char *err, size_t errlen)
{
	struct spool sp;

	memset(q, 0, sizeof *q);
	if (spool_open(&sp, conf->spool_dir, 0, err, errlen) == -1)
		return -1;
	int n = spool_scan(&sp, 0, sum_one, q);
	spool_close(&sp);
	if (n < 0) {
		snprintf(err, errlen, "cannot read the queue in %s", conf->spool_dir);
		return -1;
	}
	return 0;
}

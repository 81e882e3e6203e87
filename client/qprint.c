/*
 * qprint: see qprint.h.  The listing's format is spool/qformat.c's.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include "ctlclient.h"
#include "qprint.h"
#include "spool/qformat.h"
#include "spool/spool.h"
#include "spool/unreach.h"
#include "xmalloc.h"

struct qp_state {
	struct qformat f;
	struct unreach_cursor *kept;
};

static int
print_one(struct spool_env *e, void *arg)
{
	struct qp_state *st = arg;

	unreach_apply(st->kept, e);	/* spool_scan() goes in id order, as the file does */
	qformat_one(&st->f, e);
	return 0;
}

/*
 * The tries at unreached smarthosts the daemon kept as it stopped (not in
 * the envelopes: spool/unreach.h), so that the listing shows them too;
 * without them (unreadable), the envelopes as they are.
 */
static struct unreach_cursor *
kept_tries(const char *progname, struct spool *sp)
{
	struct unreach_cursor *kept = unreach_open(sp);

	if (kept == NULL)
		fprintf(stderr, "%s: %s/%s: cannot be read: the tries at unreached smarthosts it keeps "
		    "are not shown\n", progname, sp->dir, UNREACH_FILE);
	return kept;
}

int
queue_print(const char *progname, const struct config *conf, const struct qformat_json *json)
{
	struct spool sp;
	struct qp_state st;
	char err[512];
	int n;

	if (spool_open(&sp, conf->spool_dir, 0, err, sizeof err) == -1) {
		fprintf(stderr, "%s: cannot read the queue: %s\n", progname, err);
		return EX_NOPERM;
	}
	st.kept = kept_tries(progname, &sp);
	qformat_begin(&st.f, stdout, json);
	n = spool_scan(&sp, 0, print_one, &st);
	unreach_close(st.kept);
	spool_close(&sp);
	if (n < 0) {
		fprintf(stderr, "%s: cannot read the queue in %s\n", progname, conf->spool_dir);
		return EX_IOERR;
	}
	qformat_end(&st.f);
	return 0;
}

static int
sum_one(struct spool_env *e, void *arg)
{
	struct queue_summary *q = arg;

	q->messages++;
	if (e->damaged)
		q->damaged++;
	else if (e->held)
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

static void
print_line(const char *line, void *arg)
{
	(void)arg;
	printf("%s\n", line);
}

int
queue_list(const char *progname, const struct config *conf, const struct qformat_json *json)
{
	char final[512], err[1024];
	int rc;

	rc = ctl_request(conf->control_socket, json ? "LIST JSON" : "LIST", print_line, NULL,
	    final, sizeof final, err, sizeof err);
	if (rc == 0)
		return 0;
	if (rc > 0) {
		fprintf(stderr, "%s: %s\n", progname, final);
		return rc;
	}
	/* the daemon is down: the spool itself, for those allowed to read it */
	fprintf(stderr, "%s: mailrelayd is not running; the queue is read from %s\n", progname,
	    conf->spool_dir);
	return queue_print(progname, conf, json);
}

int
show_offline(const char *progname, const struct config *conf, const char *id, int body)
{
	struct spool sp;
	struct spool_env e;
	char err[512], *content;
	size_t len;

	if (spool_open(&sp, conf->spool_dir, 0, err, sizeof err) == -1) {
		fprintf(stderr, "%s: cannot read the queue: %s\n", progname, err);
		return EX_NOPERM;
	}
	/* a damaged message is shown too: its stand-in says what is wrong */
	if (spool_env_load(&sp, id, &e, err, sizeof err) == -1) {
		spool_close(&sp);
		fprintf(stderr, "%s: show: %s is not in the queue\n", progname, id);
		return EX_DATAERR;
	}
	struct unreach_cursor *kept = kept_tries(progname, &sp);
	unreach_apply(kept, &e);
	unreach_close(kept);
	content = spool_msg_read(&sp, &e, body ? SIZE_MAX : 256 * 1024, &len);
	qformat_show(stdout, &e, content, len, body, time(NULL));
	free(content);
	spool_env_free(&e);
	spool_close(&sp);
	return 0;
}

/*
 * delivery_trouble: the one place where the
 * delivery code records what a kind makes of a recipient (queue_outcome())
 * and of a smarthost (shstate: back-off), and bumps its counter.  See
 * delivery_trouble.h.
 */
#include "config.h"

#include <stddef.h>
#include <stdlib.h>
#include <time.h>

#include "daemon.h"
#include "delivery_int.h"
#include "delivery_trouble.h"
#include "metrics.h"
#include "oauth2.h"
#include "queue.h"
#include "shstate.h"
#include "xmalloc.h"

/*
 * The name of a smarthost that could carry mail from sender (its route's
 * smarthost, else any in the failover list) and that needs authorisation
 * (oauth2_status()), or NULL.  While there is one, the mail waits for a
 * person and is not expired at max_queue_time: it is not bounced for a
 * failure only a person can end.
 */
static const char *
oauth2_holds_expiry(const struct config *c, const char *sender)
{
	const struct route_conf *rt = conf_route_find(c, sender);
	size_t i;

	/* routes are strict (dispatch.c): the route's smarthost is the only one */
	for (i = rt ? rt->smarthost_index : 0; i < c->nsmarthosts; i++) {
		const struct smarthost_conf *sh = &c->smarthosts[i];
		if (sh->oauth2 != NULL && oauth2_status(sh->name) != NULL)
			return sh->name;
		if (rt != NULL)
			break;
	}
	return NULL;
}

/*
 * A recipient deferred once more after max_queue_time in the queue is
 * bounced instead (TK_EXPIRED, 4.4.7), with the last error in its reply;
 * except while a smarthost the message could go to needs authorisation
 * (OAuth2: a person must act, oauth2_holds_expiry()): then it stays
 * deferred, and its reply says why it was kept.
 */
void
trouble_record(struct dsession *s, struct qmsg *m, size_t idx, enum trouble_kind k, int cls,
    const char *text)
{
	struct relay_info ri;

	session_relay_info(s, &ri);
	trouble_record_ri(&ri, m, idx, k, cls, text);
}

void
trouble_record_ri(const struct relay_info *ri, struct qmsg *m, size_t idx, enum trouble_kind k,
    int cls, const char *text)
{
	char *expired = NULL;
	const char *held_by;
	time_t now = time(NULL);

	if (trouble_outcome(k, cls) == OUTCOME_DEFERRED && D->conf->max_queue_time > 0 &&
	    now - m->env.arrival >= (time_t)D->conf->max_queue_time &&
	    (held_by = oauth2_holds_expiry(D->conf, m->env.sender)) != NULL) {
		expired = xasprintf("%s; kept past max_queue_time: smarthost %s needs authorisation",
		    text ? text : "", held_by);
		text = expired;
	} else if (trouble_outcome(k, cls) == OUTCOME_DEFERRED && D->conf->max_queue_time > 0 &&
	    now - m->env.arrival >= (time_t)D->conf->max_queue_time) {
		expired = xasprintf("message expired after %us in the queue; last error: %s",
		    D->conf->max_queue_time, text ? text : "");
		k = TK_EXPIRED;
		cls = 0;
		text = expired;
	}
	queue_outcome(m, idx, trouble_outcome(k, cls), ri, trouble_get(k)->status,
	    trouble_get(k)->name, text);
	free(expired);
}

void
trouble_count(const struct dsession *s, enum trouble_kind k)
{
	const struct trouble *t = trouble_get(k);
	int auth_step = s->state == DS_AUTH || s->state == DS_SECRET;
	int tls_step = s->state == DS_HANDSHAKE || s->state == DS_STARTTLS;

	/* for `mailrelay status`: the kind's counter, or the step's */
	if (t->counter == TC_AUTH || (t->counter == TC_STEP && auth_step)) {
		D->stats.auth_failures++;
		metrics_auth_failure(s->sh->name);
	}
	else if (t->counter == TC_TLS || (t->counter == TC_STEP && tls_step))
		D->stats.tls_failures++;
}

void
trouble_smarthost_failed(const struct dsession *s, enum trouble_kind k, const char *why)
{
	struct shstate *st = shstate_get(s->sh->name);

	shstate_failure(s->sh->name, (int)k, why, queue_retry_delay(st->failures + 1));
}

void
trouble_smarthost_ok(const struct dsession *s)
{
	shstate_success(s->sh->name);
}

/*
 * delivery_trouble: the failure-kind table, and the one place where the
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

static const struct trouble table[TK_COUNT] = {
#define X(name, scope, decision, status, counter, sentence, hint) \
	[TK_##name] = { #name, scope, decision, status, counter, sentence, hint },
	TROUBLE_KINDS(X)
#undef X
};

const struct trouble *
trouble_get(enum trouble_kind k)
{
	return &table[(unsigned)k < TK_COUNT ? k : TK_PROTOCOL];
}

enum outcome
trouble_outcome(enum trouble_kind k, int reply_class)
{
	switch (trouble_get(k)->decision) {
	case TD_BOUNCE:
		return OUTCOME_BOUNCED;
	case TD_BY_REPLY:
		return reply_class == 2 ? OUTCOME_SENT : reply_class == 5 ? OUTCOME_BOUNCED :
		    OUTCOME_DEFERRED;
	case TD_RETRY:
	case TD_NEXT_SMARTHOST:
	case TD_LATER:
		break;
	}
	return OUTCOME_DEFERRED;
}

const char *
trouble_scope_name(enum trouble_scope sc)
{
	static const char *const names[] = {
		[TS_RECIPIENT] = "recipient", [TS_MESSAGE] = "message",
		[TS_TRANSACTION] = "transaction", [TS_SESSION] = "session",
		[TS_SMARTHOST] = "smarthost",
	};
	return (unsigned)sc < sizeof names / sizeof names[0] ? names[sc] : "?";
}

const char *
trouble_decision_name(enum trouble_decision d)
{
	static const char *const names[] = {
		[TD_RETRY] = "retry", [TD_BOUNCE] = "bounce", [TD_BY_REPLY] = "by reply",
		[TD_NEXT_SMARTHOST] = "next smarthost", [TD_LATER] = "next transaction",
	};
	return (unsigned)d < sizeof names / sizeof names[0] ? names[d] : "?";
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
	session_relay_info(s, &ri);
	queue_outcome(m, idx, trouble_outcome(k, cls), &ri, trouble_get(k)->status, text);
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
trouble_smarthost_failed(const struct dsession *s, const char *why)
{
	struct shstate *st = shstate_get(s->sh->name);

	shstate_failure(s->sh->name, why, queue_retry_delay(st->failures + 1));
}

void
trouble_smarthost_ok(const struct dsession *s)
{
	shstate_success(s->sh->name);
}

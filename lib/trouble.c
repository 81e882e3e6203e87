/*
 * trouble: the failure-kind table.  See trouble.h.
 */
#include "config.h"

#include <string.h>

#include "trouble.h"

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

int
trouble_by_name(const char *name)
{
	int k;

	for (k = 0; k < TK_COUNT; k++)
		if (strcmp(table[k].name, name) == 0)
			return k;
	return -1;
}

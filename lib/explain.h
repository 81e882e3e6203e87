/*
 * explain: what a smarthost's reply or a failure's reason means, in one
 * plain sentence, and what to try: one table, beside the failure kinds of
 * trouble.h, for `mailrelay test`, `show`, `status` and the log.
 *
 * A row matches a failure of its kind (NULL: any kind) whose text (the
 * reply, or the reason the session gave) holds each of its patterns
 * (case-insensitive; NULL: none).  Rows are tried in order, the more
 * particular first: Microsoft's 5.7.139 replies are told apart by the
 * sentence after the code, not by the code alone.
 *
 * Pure data, so tests/unit/test_explain.c pins what each provider's exact
 * reply text is matched to.
 */
#ifndef MAILRELAY_EXPLAIN_H
#define MAILRELAY_EXPLAIN_H

struct explanation {
	const char *name;               /* a short name of the case, for tests and JSON */
	const char *kind;               /* the failure kind's name (trouble.h); NULL: any */
	const char *pattern[2];         /* each must be in the text; NULL: no more */
	int person;                     /* to AUTH: a person must act; a new OAuth2 token cannot help */
	const char *sentence;
	const char *hint;
};

/* The first row for a failure of kind (name; NULL: unknown) with this text; NULL when none. */
const struct explanation *explain_find(const char *kind, const char *text);
/*
 * What a failure of `kind` (a trouble.h name) with this text means and
 * what to do: the first row of this table that fits, else the kind's own
 * sentence and hint.  The row, or NULL when the kind's were given; *sentence
 * and *hint are NULL when the kind is unknown and no row fits.
 */
const struct explanation *explain_failure(const char *kind, const char *text, const char **sentence,
    const char **hint);
/* Every row, for tests and documentation; n set to their number. */
const struct explanation *explain_rows(unsigned *n);

#endif

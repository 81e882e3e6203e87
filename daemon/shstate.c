/*
 * shstate: see shstate.h.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shstate.h"
#include "xmalloc.h"

static struct shstate *states;

struct shstate *
shstate_get(const char *name)
{
	struct shstate *s;

	for (s = states; s != NULL; s = s->next)
		if (strcmp(s->name, name) == 0)
			return s;
	s = xcalloc(1, sizeof *s);
	s->name = xstrdup(name);
	s->next = states;
	states = s;
	return s;
}

int
shstate_down(const char *name, time_t now)
{
	return shstate_get(name)->down_until > now;
}

void
shstate_success(const char *name)
{
	struct shstate *s = shstate_get(name);

	s->failures = 0;
	s->down_until = 0;
	s->last_success = time(NULL);
}

void
shstate_failure(const char *name, int kind, const char *why, unsigned backoff)
{
	struct shstate *s = shstate_get(name);

	s->failures++;
	s->last_failure = time(NULL);
	s->down_until = s->last_failure + backoff;
	snprintf(s->last_error, sizeof s->last_error, "%s", why);
	s->last_kind = kind;
}

long long
shstate_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Make the ring hold `cap` starts, keeping the newest ones, oldest first from index 0. */
static void
rate_resize(struct shstate *s, unsigned cap)
{
	long long *n = xreallocarray(NULL, cap, sizeof *n);
	unsigned keep = s->nstarts < cap ? s->nstarts : cap, skip = s->nstarts - keep, i;

	for (i = 0; i < keep; i++)
		n[i] = s->starts[(s->starts_head + skip + i) % s->starts_cap];
	free(s->starts);
	s->starts = n;
	s->starts_cap = cap;
	s->nstarts = keep;
	s->starts_head = 0;
}

long long
shstate_rate_wait(struct shstate *s, unsigned count, unsigned period, long long now_ms)
{
	long long span = (long long)period * 1000;

	if (count == 0)
		return 0;
	if (s->starts_cap > count)	/* lowered by a reload */
		rate_resize(s, count);
	while (s->nstarts > 0 && s->starts[s->starts_head] <= now_ms - span) {
		s->starts_head = (s->starts_head + 1) % s->starts_cap;
		s->nstarts--;
	}
	if (s->nstarts < count)
		return 0;
	/* full: the next one may start when the oldest leaves the window */
	return s->starts[s->starts_head] + span - now_ms;
}

void
shstate_rate_start(struct shstate *s, unsigned count, long long now_ms)
{
	if (count == 0)
		return;
	if (s->nstarts == s->starts_cap) {
		/* grows with use: a large daily limit costs memory only when reached */
		unsigned cap = s->starts_cap < 8 ? 8 : s->starts_cap;
		cap = cap > count / 2 ? count : cap * 2;
		if (cap <= s->nstarts) {
			/* full at count (a restored window): the oldest start makes room */
			s->starts_head = (s->starts_head + 1) % s->starts_cap;
			s->nstarts--;
		} else
			rate_resize(s, cap);
	}
	s->starts[(s->starts_head + s->nstarts) % s->starts_cap] = now_ms;
	s->nstarts++;
}

void
shstate_each_start(void (*fn)(const char *name, long long start_ms, void *arg), void *arg)
{
	struct shstate *s;
	unsigned i;

	for (s = states; s != NULL; s = s->next)
		for (i = 0; i < s->nstarts; i++)
			fn(s->name, s->starts[(s->starts_head + i) % s->starts_cap], arg);
}

void
shstate_free_all(void)
{
	struct shstate *s, *next;

	for (s = states; s != NULL; s = next) {
		next = s->next;
		free(s->name);
		free(s->starts);
		free(s);
	}
	states = NULL;
}

/*
 * shstate: see shstate.h.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
shstate_failure(const char *name, const char *why, unsigned backoff)
{
	struct shstate *s = shstate_get(name);

	s->failures++;
	s->last_failure = time(NULL);
	s->down_until = s->last_failure + backoff;
	snprintf(s->last_error, sizeof s->last_error, "%s", why);
}

void
shstate_free_all(void)
{
	struct shstate *s, *next;

	for (s = states; s != NULL; s = next) {
		next = s->next;
		free(s->name);
		free(s);
	}
	states = NULL;
}

/*
 * ratekeep: the rate_limit windows kept across restarts.  See ratekeep.h.
 *
 * The windows count on the monotonic clock, which starts again at boot;
 * the file holds wall-clock times.  Each start is saved as "now minus its
 * age" and restored the same way, so a start survives as long as it is
 * within its period.  A start that seems to lie in the future (the clock
 * was set back) counts as now: the error is on the safe side, one period
 * of waiting at most.
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "daemon.h"
#include "log.h"
#include "ratekeep.h"
#include "shstate.h"
#include "spool/ratewin.h"

#define SAVE_DELAY_MS 1000

static struct event *save_ev;
static int dirty;

static long long
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct clocks {
	long long wall, mono;
	struct ratewin_out *out;
	unsigned restored;
};

static void
restore_one(const char *name, long long when, void *arg)
{
	struct clocks *c = arg;
	const struct smarthost_conf *sh = conf_smarthost(D->conf, name);
	long long age = c->wall - when;

	if (sh == NULL || sh->rate_limit_count == 0)
		return;		/* no longer configured, or no longer limited */
	if (age < 0)
		age = 0;
	if (age >= (long long)sh->rate_limit_period * 1000)
		return;		/* out of the window by now */
	shstate_rate_start(shstate_get(name), sh->rate_limit_count, c->mono - age);
	c->restored++;
}

void
ratekeep_load(void)
{
	struct clocks c = { .wall = wall_ms(), .mono = shstate_now_ms() };

	if (ratewin_load(&D->spool, restore_one, &c) == -1)
		log_warnx("%s/%s: cannot read the rate_limit windows (%s); they start empty",
		    D->spool.dir, RATEWIN_FILE, strerror(errno));
	else if (c.restored > 0)
		log_info("rate_limit: %u message start(s) of the current window(s) restored", c.restored);
}

static void
save_one(const char *name, long long start, void *arg)
{
	struct clocks *c = arg;

	ratewin_add(c->out, name, c->wall - (c->mono - start));
}

static void
save(void)
{
	struct clocks c = { .wall = wall_ms(), .mono = shstate_now_ms() };

	dirty = 0;
	if ((c.out = ratewin_begin(&D->spool)) == NULL) {
		log_warnx("%s/tmp/%s: cannot save the rate_limit windows: %s", D->spool.dir, RATEWIN_FILE,
		    strerror(errno));
		return;
	}
	shstate_each_start(save_one, &c);
	if (ratewin_commit(c.out) == -1)
		log_warnx("%s/%s: cannot save the rate_limit windows: %s", D->spool.dir, RATEWIN_FILE,
		    strerror(errno));
}

static void
on_save(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	save();
}

void
ratekeep_touch(void)
{
	struct timeval tv = { .tv_sec = SAVE_DELAY_MS / 1000, .tv_usec = (SAVE_DELAY_MS % 1000) * 1000 };

	dirty = 1;
	if (save_ev == NULL)
		save_ev = evtimer_new(D->base, on_save, NULL);
	if (!evtimer_pending(save_ev, NULL))
		evtimer_add(save_ev, &tv);
}

void
ratekeep_flush(void)
{
	if (dirty)
		save();
	if (save_ev != NULL) {
		event_free(save_ev);
		save_ev = NULL;
	}
}

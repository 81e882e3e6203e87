/*
 * metrics: see metrics.h.
 *
 * Counters are plain integers in this process (one event loop: no
 * locking).  Per-smarthost series live in a list keyed by the configured
 * name; reply codes are counted in a fixed array indexed by code, which
 * the reply parser has bounded to 200..599, so no event can grow memory
 * beyond one entry per configured smarthost.
 *
 * The HTTP endpoint that serves metrics_render() is in metrics_listen.c.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "conf/conf.h"
#include "daemon.h"
#include "log.h"
#include "metrics.h"
#include "xmalloc.h"

#define METRICS_VIA_MAX     16          /* distinct via= words (they are literals in the code) */
#define CODE_MIN            200
#define CODE_MAX            599

static const char *const result_names[] = {
	[OUTCOME_SENT] = "sent",
	[OUTCOME_DEFERRED] = "deferred",
	[OUTCOME_BOUNCED] = "bounced",
};
static const char *const tls_names[] = {
	[METRICS_TLS_OK] = "ok",
	[METRICS_TLS_FAILED] = "failed",
	[METRICS_TLS_UNTRUSTED] = "untrusted",
};
static const char *const bounce_names[] = { "failed", "delayed", "relayed", "double" };
#define NBOUNCE (sizeof bounce_names / sizeof bounce_names[0])

/* Upper bounds of the delivery duration histogram, in seconds (+Inf implied). */
static const double buckets[] = { 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300 };
#define NBUCKETS (sizeof buckets / sizeof buckets[0])

struct relay_m {
	char *name;
	unsigned long long deliveries[3];
	unsigned long long tls[3];
	unsigned long long auth_failures;
	unsigned long long replies[CODE_MAX - CODE_MIN + 1];
	struct relay_m *next;
};

static struct relay_m *relays, **relays_tail = &relays;
/* deliveries before any smarthost was reached (no smarthost configured, expiry) */
static const char no_relay[] = "none";
static struct { char name[32]; unsigned long long n; } vias[METRICS_VIA_MAX];
static unsigned long long bounces[NBOUNCE];
static unsigned long long hist[NBUCKETS + 1];
static double hist_sum;
static unsigned long long hist_count;
static metrics_queue_fn queue_fn;

void
metrics_on_queue(metrics_queue_fn fn)
{
	queue_fn = fn;
}

/* The series of smarthost name (created at its first use, in configuration order). */
static struct relay_m *
relay_get(const char *name)
{
	struct relay_m *r;

	if (name == NULL)
		name = no_relay;
	for (r = relays; r != NULL; r = r->next)
		if (strcmp(r->name, name) == 0)
			return r;
	r = xcalloc(1, sizeof *r);
	r->name = xstrdup(name);
	*relays_tail = r;
	relays_tail = &r->next;
	return r;
}

void
metrics_config(const struct config *c)
{
	for (size_t i = 0; i < c->nsmarthosts; i++)
		relay_get(c->smarthosts[i].name);
}

void
metrics_submission(const char *via)
{
	size_t i;

	for (i = 0; i < METRICS_VIA_MAX && vias[i].name[0] != '\0'; i++)
		if (strcmp(vias[i].name, via) == 0)
			break;
	if (i == METRICS_VIA_MAX) {
		log_warnx("metrics: more than %d kinds of submission; via=%s not counted",
		    METRICS_VIA_MAX, via);
		return;
	}
	if (vias[i].name[0] == '\0')
		snprintf(vias[i].name, sizeof vias[i].name, "%s", via);
	vias[i].n++;
}

void
metrics_delivery(const char *relay, enum outcome o)
{
	relay_get(relay)->deliveries[o]++;
}

void
metrics_delivery_duration(double seconds)
{
	size_t i;

	if (!(seconds >= 0))
		seconds = 0;
	for (i = 0; i < NBUCKETS && seconds > buckets[i]; i++)
		;
	hist[i]++;
	hist_sum += seconds;
	hist_count++;
}

void
metrics_reply(const char *relay, int code)
{
	if (code >= CODE_MIN && code <= CODE_MAX)
		relay_get(relay)->replies[code - CODE_MIN]++;
}

void
metrics_tls(const char *relay, enum metrics_tls r)
{
	relay_get(relay)->tls[r]++;
}

void
metrics_auth_failure(const char *relay)
{
	relay_get(relay)->auth_failures++;
}

void
metrics_bounce(const char *kind)
{
	for (size_t i = 0; i < NBOUNCE; i++)
		if (strcmp(bounce_names[i], kind) == 0)
			bounces[i]++;
}

/* A label value, escaped as the text format wants (backslash, quote, newline). */
static void
label(struct evbuffer *b, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			evbuffer_add_printf(b, "\\%c", *v);
		else if (*v == '\n')
			evbuffer_add(b, "\\n", 2);
		else
			evbuffer_add(b, v, 1);
	}
}

static void
head(struct evbuffer *b, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void
metrics_render(struct evbuffer *b)
{
	struct metrics_queue q = { 0 };
	struct relay_m *r;
	unsigned long long cum = 0;
	size_t i;
	int code;

	if (queue_fn != NULL)
		queue_fn(&q);
	head(b, "mailrelay_build_info", "gauge", "The running mailrelayd's version (always 1).");
	evbuffer_add(b, "mailrelay_build_info{version=\"", 30);
	label(b, PACKAGE_VERSION);
	evbuffer_add(b, "\"} 1\n", 5);
	head(b, "mailrelay_start_time_seconds", "gauge", "When mailrelayd started, in seconds since the epoch.");
	evbuffer_add_printf(b, "mailrelay_start_time_seconds %lld\n", (long long)D->started);

	head(b, "mailrelay_queue_messages", "gauge", "Messages in the queue by state, as mailrelay status counts them.");
	evbuffer_add_printf(b, "mailrelay_queue_messages{state=\"active\"} %zu\n"
	    "mailrelay_queue_messages{state=\"deferred\"} %zu\n"
	    "mailrelay_queue_messages{state=\"held\"} %zu\n"
	    "mailrelay_queue_messages{state=\"waiting\"} %zu\n"
	    "mailrelay_queue_messages{state=\"damaged\"} %zu\n",
	    q.active, q.deferred, q.held, q.waiting, q.damaged);
	head(b, "mailrelay_queue_oldest_message_age_seconds", "gauge",
	    "Age of the oldest queued message (0 when the queue is empty).");
	evbuffer_add_printf(b, "mailrelay_queue_oldest_message_age_seconds %lld\n", q.oldest_age);

	head(b, "mailrelay_submissions_total", "counter", "Messages queued since start, by how they came (the log's via=).");
	for (i = 0; i < METRICS_VIA_MAX && vias[i].name[0] != '\0'; i++) {
		evbuffer_add(b, "mailrelay_submissions_total{via=\"", 33);
		label(b, vias[i].name);
		evbuffer_add_printf(b, "\"} %llu\n", vias[i].n);
	}

	head(b, "mailrelay_deliveries_total", "counter", "Recipient outcomes of delivery attempts since start, by smarthost.");
	for (r = relays; r != NULL; r = r->next)
		for (i = 0; i < 3; i++) {
			evbuffer_add(b, "mailrelay_deliveries_total{relay=\"", 34);
			label(b, r->name);
			evbuffer_add_printf(b, "\",result=\"%s\"} %llu\n", result_names[i], r->deliveries[i]);
		}

	head(b, "mailrelay_delivery_duration_seconds", "histogram",
	    "Time a delivery attempt of one message took, from taking it from the queue to its outcome.");
	for (i = 0; i < NBUCKETS; i++) {
		cum += hist[i];
		evbuffer_add_printf(b, "mailrelay_delivery_duration_seconds_bucket{le=\"%g\"} %llu\n",
		    buckets[i], cum);
	}
	evbuffer_add_printf(b, "mailrelay_delivery_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
	    "mailrelay_delivery_duration_seconds_sum %.6f\n"
	    "mailrelay_delivery_duration_seconds_count %llu\n", hist_count, hist_sum, hist_count);

	head(b, "mailrelay_smtp_replies_total", "counter", "SMTP replies received from each smarthost, by reply code.");
	for (r = relays; r != NULL; r = r->next)
		for (code = CODE_MIN; code <= CODE_MAX; code++)
			if (r->replies[code - CODE_MIN] != 0) {
				evbuffer_add(b, "mailrelay_smtp_replies_total{relay=\"", 36);
				label(b, r->name);
				evbuffer_add_printf(b, "\",code=\"%d\"} %llu\n", code,
				    r->replies[code - CODE_MIN]);
			}

	head(b, "mailrelay_tls_handshakes_total", "counter",
	    "TLS handshakes with each smarthost: ok, failed, or done with a certificate not trusted.");
	for (r = relays; r != NULL; r = r->next)
		for (i = 0; i < 3; i++) {
			evbuffer_add(b, "mailrelay_tls_handshakes_total{relay=\"", 38);
			label(b, r->name);
			evbuffer_add_printf(b, "\",result=\"%s\"} %llu\n", tls_names[i], r->tls[i]);
		}

	head(b, "mailrelay_auth_failures_total", "counter", "Sessions with each smarthost that failed in AUTH.");
	for (r = relays; r != NULL; r = r->next) {
		evbuffer_add(b, "mailrelay_auth_failures_total{relay=\"", 37);
		label(b, r->name);
		evbuffer_add_printf(b, "\"} %llu\n", r->auth_failures);
	}

	head(b, "mailrelay_bounces_total", "counter",
	    "Delivery status notifications queued: failed, delayed, relayed (success), double (to the administrator).");
	for (i = 0; i < NBOUNCE; i++)
		evbuffer_add_printf(b, "mailrelay_bounces_total{kind=\"%s\"} %llu\n", bounce_names[i], bounces[i]);
}

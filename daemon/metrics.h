/*
 * metrics: counters since start in the Prometheus text exposition format
 * (version 0.0.4), for `mailrelay status --prometheus` (node_exporter's
 * textfile collector) and for GET /metrics on metrics_listen.
 *
 * The modules report events through the metrics_*() calls below, where
 * they happen; nothing here reads the log.  Labels carry only what the
 * configuration names (smarthost names), fixed words (via, result,
 * kind) and SMTP reply codes the parser has already bounded to 200..599:
 * never an address, a host name from the network or a queue id, so the
 * number of series is bounded by the configuration.
 *
 * Metrics (all counters are since the daemon started):
 *   mailrelay_build_info{version}                       gauge, always 1
 *   mailrelay_start_time_seconds                         gauge
 *   mailrelay_queue_messages{state}                      gauge (as status)
 *   mailrelay_queue_oldest_message_age_seconds           gauge (0: empty)
 *   mailrelay_submissions_total{via}                     counter
 *   mailrelay_deliveries_total{relay,result}             counter, per recipient
 *   mailrelay_delivery_duration_seconds                  histogram, per attempt
 *   mailrelay_smtp_replies_total{relay,code}             counter
 *   mailrelay_tls_handshakes_total{relay,result}         counter
 *   mailrelay_auth_failures_total{relay}                 counter
 *   mailrelay_bounces_total{kind}                        counter
 */
#ifndef MAILRELAY_METRICS_H
#define MAILRELAY_METRICS_H

#include <stddef.h>

#include <event2/buffer.h>

#include "outcome.h"

struct config;

/* TLS handshake results (the label's values). */
enum metrics_tls { METRICS_TLS_OK, METRICS_TLS_FAILED, METRICS_TLS_UNTRUSTED };

/*
 * Make the configured smarthosts known, so their series show (at zero)
 * before their first event.  Called at start and after each reload;
 * series of smarthosts no longer configured are kept (counters never go
 * back).
 */
void metrics_config(const struct config *c);

/* A message was queued; via as its log line's via= (smtp, sendmail, maildrop, bounce, ...). */
void metrics_submission(const char *via);
/* One recipient's outcome at smarthost relay (its configured name; NULL: none was reached). */
void metrics_delivery(const char *relay, enum outcome o);
/* One delivery attempt of a message took this long (seconds). */
void metrics_delivery_duration(double seconds);
/* The smarthost relay answered with this reply code (200..599). */
void metrics_reply(const char *relay, int code);
void metrics_tls(const char *relay, enum metrics_tls r);
void metrics_auth_failure(const char *relay);
/* A notice was queued: "failed", "delayed", "relayed" or "double". */
void metrics_bounce(const char *kind);

/*
 * The queue's gauges, read at each render from a function main.c
 * registers (metrics does not include queue.h: the queue calls metrics,
 * and a module both calls and is called by would be a circle).
 */
struct metrics_queue {
	size_t active, deferred, held, waiting, damaged;
	long long oldest_age;       /* seconds; 0 when the queue is empty */
};
typedef void (*metrics_queue_fn)(struct metrics_queue *);
void metrics_on_queue(metrics_queue_fn fn);

/* Append the whole exposition (queue gauges read now) to b. */
void metrics_render(struct evbuffer *b);

/*
 * Serve GET /metrics on c->metrics_listen (if set), binding it now (so
 * before the privileges are dropped), and make c's smarthosts known
 * (metrics_config()).  Returns 0, or -1 with a one-line reason in err.
 * metrics_stop() closes the sockets and every connection.  Both are in
 * metrics_listen.c, with the bounds on what a client can make it hold.
 */
int  metrics_listen_start(const struct config *c, char *err, size_t errlen);
void metrics_stop(void);

#endif

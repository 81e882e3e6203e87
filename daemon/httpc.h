/*
 * httpc: HTTPS POST requests for the daemon's event loop, through
 * libcurl's multi-socket interface driven by libevent: curl tells us
 * which descriptors and which deadline it waits for, libevent watches
 * them, and nothing ever blocks the loop (name resolution runs in curl's
 * own resolver thread).
 *
 * Contract:
 *  - only https:// URLs (CURLOPT_PROTOCOLS_STR), never a redirect, the
 *    peer always verified: against the CA bundle given (a PEM blob read
 *    when the configuration was loaded), or a CA directory, or the system
 *    store;
 *  - the body is sent from the caller's buffer without a copy, so the
 *    caller can wipe it (it carries secrets): it must stay untouched until
 *    the callback has run or the request is cancelled;
 *  - the response body is bounded (HTTPC_BODY_MAX) and wiped when freed;
 *  - the callback runs from the event loop, never from inside
 *    httpc_post(), exactly once unless httpc_cancel() came first;
 *  - curl never logs (no CURLOPT_VERBOSE): a request body holds secrets.
 */
#ifndef MAILRELAY_HTTPC_H
#define MAILRELAY_HTTPC_H

#include <stddef.h>

#include <event2/event.h>

#define HTTPC_BODY_MAX	(64 * 1024)

struct httpc_opts {
	const char *ca_blob;        /* PEM CA certificates, or NULL */
	size_t      ca_len;
	const char *ca_path;        /* hashed CA directory, or NULL */
	const char *proxy_host;     /* SOCKS5 proxy (names resolved by the proxy), or NULL */
	const char *proxy_port;
	unsigned    timeout;        /* seconds for the whole request; 0: 60 */
	unsigned    connect_timeout;/* seconds; 0: 30 */
};

/*
 * status: the HTTP status, or 0 when there was no HTTP answer (err says
 * why: DNS, connection, TLS, timeout, body too big).  body is
 * NUL-terminated and wiped after the callback returns.
 */
typedef void (*httpc_cb)(int status, const char *body, size_t len, const char *err, void *arg);

struct httpc_req;

/*
 * Once, before the first request; 0.  libcurl is not loaded here but by
 * the first request (daemon/curlload.h), which fails like any request
 * that cannot start when the library cannot be loaded.
 */
int httpc_init(struct event_base *base);
void httpc_shutdown(void);

/* POST an application/x-www-form-urlencoded body; NULL (and errbuf) when it cannot start. */
struct httpc_req *httpc_post(const char *url, const char *form, const struct httpc_opts *o,
    httpc_cb cb, void *arg, char *errbuf, size_t errlen);
/* Abort a request: its callback will not run. */
void httpc_cancel(struct httpc_req *r);

#endif

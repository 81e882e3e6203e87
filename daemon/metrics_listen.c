/*
 * metrics_listen: the HTTP endpoint on metrics_listen that serves
 * metrics_render()'s exposition at GET /metrics (metrics_listen_start()
 * and metrics_stop() are declared in metrics.h).
 *
 * A small responder of our own on bufferevents, not evhttp: libevent
 * 2.1's evhttp has no limit on the connections it holds and no hook at
 * the end of one, so the connections a local process could make the
 * daemon hold were bounded only by its timeout.  Here every connection
 * is counted, and what one client can make us hold is bounded:
 *
 *   - at most METRICS_CONN_MAX connections at once; one beyond that is
 *     answered 503 straight on its socket and closed at accept, with one
 *     log line per LOG_GATE_SECS for all of them;
 *   - METRICS_DEADLINE seconds from accept to close, whatever the client
 *     does meanwhile (silent, a byte at a time, not reading the reply);
 *   - METRICS_HEAD_MAX octets of request line and header fields: reading
 *     stops there (the read high-water mark) and a head not ended by then
 *     is answered 431;
 *   - a descriptor shortage at accept pauses the socket (accept_guard).
 *
 * One request per connection: HTTP/1.0 and 1.1, GET or HEAD of /metrics
 * (a query string is ignored; the absolute form http://host/metrics is
 * taken too) answered 200 with the text format 0.0.4; any other path
 * 404, any other method 405, another HTTP version 505, a malformed
 * request line 400.  Every reply says Connection: close and carries a
 * Content-Length.  A request body is never read as such: once the reply
 * is queued, input is read and dropped, and after the reply is written
 * our side is shut down and the connection closed at the client's EOF
 * (or the deadline).  Closing at once with unread input would make the
 * kernel send a reset, and a client could lose the reply it was reading.
 */
#include "config.h"

#include <sys/queue.h>
#include <sys/socket.h>

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "conf/conf.h"
#include "daemon.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "xmalloc.h"

#define METRICS_DEADLINE   5            /* seconds from accept to close */
#define METRICS_HEAD_MAX   8192         /* octets of request line and header fields */
#define METRICS_CONN_MAX   16           /* connections held at once */
#define METRICS_SOCKS_MAX  4            /* bound addresses (localhost: ::1 and 127.0.0.1) */

struct mconn {
	struct bufferevent *bev;
	struct event *deadline;
	int replied;                /* the reply is queued: input is dropped from now on */
	int shut;                   /* the reply is written and our side shut down */
	int eof;                    /* the client closed its side before the reply was written */
	size_t scanned;             /* octets of input already searched for the end of the head */
	TAILQ_ENTRY(mconn) entry;
};

struct msock {
	struct evconnlistener *lev;
	struct accept_guard *guard;
};

static TAILQ_HEAD(, mconn) mconns = TAILQ_HEAD_INITIALIZER(mconns);
static unsigned nmconns;
static struct msock msocks[METRICS_SOCKS_MAX];
static size_t nmsocks;

static void
mc_free(struct mconn *c)
{
	TAILQ_REMOVE(&mconns, c, entry);
	nmconns--;
	event_free(c->deadline);
	bufferevent_free(c->bev);
	free(c);
}

static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	mc_free(arg);
}

/*
 * Queue the reply: status line, header fields, and the body unless
 * head_only (HEAD: the same header fields, Content-Length included).
 * extra is one more header field line with its CRLF, or "".
 */
static void
mc_reply(struct mconn *c, const char *status, const char *ctype, const char *extra,
    struct evbuffer *body, int head_only)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);

	evbuffer_add_printf(out, "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	    "%sConnection: close\r\n\r\n", status, ctype, evbuffer_get_length(body), extra);
	if (!head_only)
		evbuffer_add_buffer(out, body);
	c->replied = 1;
	/* from now on input is only dropped: no bound on what is read, none kept */
	bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
	evbuffer_drain(bufferevent_get_input(c->bev), evbuffer_get_length(bufferevent_get_input(c->bev)));
}

/* A reply with a one-line plain text body. */
static void
mc_error(struct mconn *c, const char *status, const char *extra, const char *text, int head_only)
{
	struct evbuffer *b = evbuffer_new();

	if (b == NULL)
		log_fatalx("metrics: out of memory");
	evbuffer_add_printf(b, "%s\n", text);
	mc_reply(c, status, "text/plain; charset=utf-8", extra, b, head_only);
	evbuffer_free(b);
}

/* Is target /metrics, with or without a query, in origin or absolute form? */
static int
is_metrics(const char *t)
{
	size_t n;

	if (strncasecmp(t, "http://", 7) == 0) {
		t += 7;
		t += strcspn(t, "/?");          /* the authority */
	}
	n = strlen("/metrics");
	return strncmp(t, "/metrics", n) == 0 && (t[n] == '\0' || t[n] == '?');
}

/* A method is an HTTP token (RFC 9110 5.6.2). */
static int
is_token(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s; s++)
		if (!(*s > 0x20 && *s < 0x7f && strchr("\"(),/:;<=>?@[\\]{}", *s) == NULL))
			return 0;
	return 1;
}

/*
 * Answer the request whose head is the first len octets of p (its end,
 * the empty line, included).  Only the request line is looked at: no
 * header field changes the answer.
 */
static void
mc_answer(struct mconn *c, const char *p, size_t len)
{
	char line[METRICS_HEAD_MAX + 1], *method, *target, *version, *sp;
	const char *nl = memchr(p, '\n', len);     /* there is one: the head ends in an empty line */
	size_t n = nl != NULL ? (size_t)(nl - p) : len;
	struct evbuffer *b;
	int head;

	if (memchr(p, '\0', len) != NULL || n >= sizeof line) {
		mc_error(c, "400 Bad Request", "", "bad request", 0);
		return;
	}
	memcpy(line, p, n);
	line[n] = '\0';
	if (n > 0 && line[n - 1] == '\r')
		line[n - 1] = '\0';
	/* method SP request-target SP HTTP-version, single spaces */
	method = line;
	if ((sp = strchr(method, ' ')) == NULL)
		goto bad;
	*sp = '\0';
	target = sp + 1;
	if ((sp = strchr(target, ' ')) == NULL)
		goto bad;
	*sp = '\0';
	version = sp + 1;
	if (!is_token(method) || *target == '\0' || strchr(version, ' ') != NULL)
		goto bad;
	if (strncmp(version, "HTTP/", 5) != 0)
		goto bad;
	if (strcmp(version, "HTTP/1.0") != 0 && strcmp(version, "HTTP/1.1") != 0) {
		mc_error(c, "505 HTTP Version Not Supported", "", "only HTTP/1.0 and 1.1", 0);
		return;
	}
	head = strcmp(method, "HEAD") == 0;
	if (!head && strcmp(method, "GET") != 0) {
		mc_error(c, "405 Method Not Allowed", "Allow: GET, HEAD\r\n",
		    "only GET and HEAD are answered here", 0);
		return;
	}
	if (!is_metrics(target)) {
		mc_error(c, "404 Not Found", "", "not found: only /metrics is served here", head);
		return;
	}
	if ((b = evbuffer_new()) == NULL)
		log_fatalx("metrics: out of memory");
	metrics_render(b);
	mc_reply(c, "200 OK", "text/plain; version=0.0.4; charset=utf-8", "", b, head);
	evbuffer_free(b);
	return;
bad:
	mc_error(c, "400 Bad Request", "", "bad request", 0);
}

/*
 * The length of the head (through its empty line) at p, or 0 when not
 * all there.  The search starts from where the last one stopped (less
 * the two octets a line end may straddle), so a client sending a byte at
 * a time costs a pass over its head, not one per byte.
 */
static size_t
head_length(const char *p, size_t len, size_t *scanned)
{
	size_t i = *scanned > 2 ? *scanned - 2 : 0;

	*scanned = len;
	for (; i < len; i++)
		if (p[i] == '\n') {
			if (i + 1 < len && p[i + 1] == '\n')
				return i + 2;
			if (i + 2 < len && p[i + 1] == '\r' && p[i + 2] == '\n')
				return i + 3;
		}
	return 0;
}

static void
on_read(struct bufferevent *bev, void *arg)
{
	struct mconn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len = evbuffer_get_length(in), hl;
	const char *p;

	if (c->replied) {
		evbuffer_drain(in, len);
		return;
	}
	/* at most METRICS_HEAD_MAX + 1 octets: the read high-water mark */
	if ((p = (const char *)evbuffer_pullup(in, -1)) == NULL)
		return;
	if ((hl = head_length(p, len, &c->scanned)) == 0) {
		if (len > METRICS_HEAD_MAX)
			mc_error(c, "431 Request Header Fields Too Large", "",
			    "request header larger than 8 KiB", 0);
		return;
	}
	if (hl > METRICS_HEAD_MAX) {
		mc_error(c, "431 Request Header Fields Too Large", "", "request header larger than 8 KiB", 0);
		return;
	}
	mc_answer(c, p, hl);
}

/* The reply is written: shut our side down and wait for the client's EOF. */
static void
on_write(struct bufferevent *bev, void *arg)
{
	struct mconn *c = arg;

	if (!c->replied || c->shut)
		return;
	c->shut = 1;
	if (c->eof || shutdown(bufferevent_getfd(bev), SHUT_WR) == -1)
		mc_free(c);
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
	struct mconn *c = arg;

	if ((what & BEV_EVENT_EOF) && c->replied && !c->shut &&
	    evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
		/* the client half-closed after its request: answer, then close */
		c->eof = 1;
		bufferevent_disable(bev, EV_READ);
		return;
	}
	/* EOF or an error: the client is gone or has said all it will */
	mc_free(c);
}

/*
 * Over METRICS_CONN_MAX: what was already sent is read (closing a socket
 * with unread input resets it, and the client might miss the 503), the
 * answer is sent without waiting, and the socket closed.
 */
static void
refuse(evutil_socket_t fd)
{
	static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 21\r\n"
	    "Retry-After: 1\r\nConnection: close\r\n\r\ntoo many connections\n";
	static struct log_gate gate;
	char sink[METRICS_HEAD_MAX];
	unsigned long n;

	(void)recv(fd, sink, sizeof sink, MSG_DONTWAIT);
	(void)send(fd, busy, sizeof busy - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
	evutil_closesocket(fd);
	if (log_gate_pass(&gate, &n))
		log_warnx("metrics: connection refused: too many connections (%d); "
		    "%lu refused since the last such line", METRICS_CONN_MAX, n);
}

static void
on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	struct timeval tv = { .tv_sec = METRICS_DEADLINE };
	struct mconn *c;

	(void)lev;
	(void)sa;
	(void)salen;
	(void)arg;
	if (D->shutting_down) {
		evutil_closesocket(fd);
		return;
	}
	if (nmconns >= METRICS_CONN_MAX) {
		refuse(fd);
		return;
	}
	c = xcalloc(1, sizeof *c);
	c->bev = bufferevent_socket_new(D->base, fd, BEV_OPT_CLOSE_ON_FREE);
	c->deadline = evtimer_new(D->base, on_deadline, c);
	if (c->bev == NULL || c->deadline == NULL)
		log_fatalx("metrics: cannot create the events of a connection");
	TAILQ_INSERT_TAIL(&mconns, c, entry);
	nmconns++;
	bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, METRICS_HEAD_MAX + 1);
	evtimer_add(c->deadline, &tv);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void
on_accept_error(struct evconnlistener *lev, void *arg)
{
	(void)lev;
	accept_guard_error(arg);
}

int
metrics_listen_start(const struct config *c, char *err, size_t errlen)
{
	const struct listen_conf *l = &c->metrics_listen;
	struct addrinfo hints, *res, *ai;
	char desc[300];
	int rc;

	metrics_config(c);
	if (l->host == NULL)
		return 0;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if ((rc = getaddrinfo(l->host, l->port, &hints, &res)) != 0) {
		snprintf(err, errlen, "metrics_listen %s:%s: %s", l->host, l->port, gai_strerror(rc));
		return -1;
	}
	snprintf(desc, sizeof desc, "metrics_listen %s:%s", l->host, l->port);
	/* every address the name has (as listen does), conf having checked each is loopback */
	for (ai = res; ai != NULL && nmsocks < METRICS_SOCKS_MAX; ai = ai->ai_next) {
		struct evconnlistener *lev = evconnlistener_new_bind(D->base, on_accept, NULL,
		    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE,
		    METRICS_CONN_MAX, ai->ai_addr, (int)ai->ai_addrlen);
		if (lev == NULL) {
			snprintf(err, errlen, "%s: cannot listen: %s", desc, strerror(errno));
			freeaddrinfo(res);
			metrics_stop();
			return -1;
		}
		msocks[nmsocks].lev = lev;
		msocks[nmsocks].guard = accept_guard_new(lev, desc);
		/* the guard is the callbacks' argument (on_accept has no use for it) */
		evconnlistener_set_cb(lev, on_accept, msocks[nmsocks].guard);
		evconnlistener_set_error_cb(lev, on_accept_error);
		nmsocks++;
	}
	freeaddrinfo(res);
	log_info("metrics on http://%s%s%s:%s/metrics", strchr(l->host, ':') ? "[" : "", l->host,
	    strchr(l->host, ':') ? "]" : "", l->port);
	return 0;
}

void
metrics_stop(void)
{
	struct mconn *c;

	for (size_t i = 0; i < nmsocks; i++) {
		accept_guard_free(msocks[i].guard);
		evconnlistener_free(msocks[i].lev);
	}
	nmsocks = 0;
	while ((c = TAILQ_FIRST(&mconns)) != NULL)
		mc_free(c);
}

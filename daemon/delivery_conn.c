/*
 * delivery_conn: how a delivery session gets a connection it may use.
 *
 *   RESOLVE   evdns_getaddrinfo, never blocking the loop (the proxy's name
 *             when `proxy = socks5://HOST:PORT` is set)
 *   CONNECT   the addresses raced, IPv6 and IPv4 interleaved, a head start
 *             each (Happy Eyeballs, see attempt_next()); the whole phase
 *             within connect_timeout; with tls = implicit the TLS
 *             handshake is part of connecting
 *   SOCKS     through a proxy: RFC 1928 CONNECT to the smarthost by name,
 *             then (implicit TLS) the handshake on a filter
 *   ...       GREETING and EHLO are handled in delivery_session.c, which then asks
 *             conn_after_ehlo() what the TLS policy says
 *   STARTTLS  the command, then HANDSHAKE on a bufferevent_openssl filter
 *             over the same connection, then EHLO again (RFC 3207 4.2:
 *             everything learnt before TLS is forgotten)
 *
 * The TLS policy (SPEC "TLS policy") lives here and nowhere else:
 *   disabled       never STARTTLS
 *   opportunistic  STARTTLS when offered, result logged, not enforced; if
 *                  the handshake fails, one retry of the delivery in
 *                  plaintext on a new connection
 *   required       STARTTLS must be offered and succeed and the peer must
 *                  verify (or be pinned, or tls_verify = no); otherwise a
 *                  temporary failure before anything but EHLO was sent
 *   implicit       TLS from the first byte, judged like required
 *
 * This file enters no state and fails no session itself: it reports where
 * the connection stands with session_conn() (CONN_CONNECTING, CONN_READY,
 * CONN_FAILED with a failure kind, ...), and the core picks the state or
 * hands the failure to the trouble table.  Its input (SOCKS5 replies) and
 * events (the connect phase, SOCKS5, a handshake) reach it through the
 * core's session_io(), like every other I/O of the session; only the
 * racing attempts, which are not yet the session's connection, have
 * callbacks of their own.
 */
#include "config.h"

#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>

#include "daemon.h"
#include "delivery_int.h"
#include "log.h"
#include "metrics.h"
#include "xmalloc.h"

static void attempt_next(struct dsession *s);
static void on_connected(struct dsession *s);
static struct evutil_addrinfo *interleave(struct evutil_addrinfo *res);
static int openssl_reason(struct bufferevent *bev, char *buf, size_t len);

/* Report a failure of kind k to the core. */
static void
conn_failed(struct dsession *s, enum trouble_kind k, const char *why)
{
	struct dfailure f;

	f.kind = k;
	snprintf(f.why, sizeof f.why, "%s", why);
	session_conn(s, CONN_FAILED, &f);
}

static SSL_CTX *
tls_ctx(struct dsession *s)
{
	return s->rc->tls[s->shidx];
}

static void
addr_string(const struct sockaddr *sa, char *buf, size_t len)
{
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, (socklen_t)len);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf, (socklen_t)len);
	else
		snprintf(buf, len, "?");
}

static void
on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
	struct dsession *s = arg;
	char why[400];

	if (result == EVUTIL_EAI_CANCEL)
		return;		/* the session is being freed: touch nothing */
	s->dnsreq = NULL;
	if (result != 0 || res == NULL) {
		if (s->sh->proxy_host != NULL)
			snprintf(why, sizeof why, "connect to SOCKS5 proxy %s:%s: host name lookup failed: %s",
			    s->sh->proxy_host, s->sh->proxy_port, evutil_gai_strerror(result));
		else
			snprintf(why, sizeof why, "connect to %s:%u: host name lookup failed: %s",
			    s->sh->host, s->sh->port, evutil_gai_strerror(result));
		conn_failed(s, TK_DNS, why);
		session_top(s);
		return;
	}
	s->addrs = s->addr = interleave(res);
	if (session_trace_hook != NULL) {
		char list[600] = "", a[INET6_ADDRSTRLEN];
		for (struct evutil_addrinfo *ai = s->addrs; ai != NULL; ai = ai->ai_next) {
			addr_string(ai->ai_addr, a, sizeof a);
			if (strlen(list) + strlen(a) + 2 < sizeof list)
				snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", list[0] ? " " : "", a);
		}
		session_trace(s, TR_RESOLVED, list);
	}
	session_conn(s, CONN_CONNECTING, NULL);	/* the connect phase's deadline starts now */
	attempt_next(s);
	session_top(s);
}

void
conn_start(struct dsession *s)
{
	struct evutil_addrinfo hints;
	char port[16];

	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	/*
	 * No EVUTIL_AI_ADDRCONFIG: libevent decides it by probing for a
	 * global IPv6 route and drops every AAAA answer without one, which
	 * leaves nothing to race.  Racing makes an IPv6 address we cannot
	 * reach cheap: refused or unreachable at once, or the head start.
	 */
	hints.ai_flags = 0;
	snprintf(port, sizeof port, "%u", s->sh->port);
	timerclear(&s->connect_until);	/* the connect phase starts with the first address */
	session_conn(s, CONN_RESOLVING, NULL);
	/* The callback may run before this returns (addresses, /etc/hosts). */
	if (s->sh->proxy_host != NULL)
		s->dnsreq = evdns_getaddrinfo(D->dns, s->sh->proxy_host, s->sh->proxy_port, &hints,
		    on_resolved, s);
	else
		s->dnsreq = evdns_getaddrinfo(D->dns, s->sh->host, port, &hints, on_resolved, s);
}

/*
 * Connecting: Happy Eyeballs (RFC 8305).  The addresses are tried IPv6
 * and IPv4 interleaved, in the resolver's order within each family, the
 * first one's family first (interleave()).  An attempt that has neither
 * connected nor failed after CONN_HEAD_START_MS does not hold up the
 * next: that one starts beside it, and so on; a failed attempt starts the
 * next at once.  The first to connect (with tls = implicit: to finish its
 * handshake) wins and the others are closed.  So a host whose IPv6 is
 * broken (AAAA records, no route: packets silently dropped) costs the
 * head start, not connect_timeout per address.  The whole phase, every
 * address together, is bounded by connect_timeout (DS_CONNECT's deadline).
 */
#define CONN_HEAD_START_MS 250

/* The resolver's list relinked: families alternating, the first address's family first. */
static struct evutil_addrinfo *
interleave(struct evutil_addrinfo *res)
{
	struct evutil_addrinfo *first[64], *other[64], *a, *head = NULL, **tail = &head;
	size_t nf = 0, no = 0, i = 0, j = 0;
	int fam = res->ai_family;

	for (a = res; a != NULL; a = a->ai_next) {
		if (nf + no == 64)
			return res;	/* more than we would ever try: left as it is */
		if (a->ai_family == fam)
			first[nf++] = a;
		else
			other[no++] = a;
	}
	while (i < nf || j < no) {
		if (i < nf) {
			*tail = first[i++];
			tail = &(*tail)->ai_next;
		}
		if (j < no) {
			*tail = other[j++];
			tail = &(*tail)->ai_next;
		}
	}
	*tail = NULL;
	return head;
}

static void
attempt_free(struct conn_attempt *a)
{
	struct dsession *s = a->s;
	size_t i;

	for (i = 0; i < s->nattempts; i++)
		if (s->attempts[i] == a) {
			s->attempts[i] = s->attempts[--s->nattempts];
			break;
		}
	if (a->bev != NULL)
		bufferevent_free(a->bev);	/* also frees an SSL it owns */
	free(a);
}

static void
attempts_drop(struct dsession *s)
{
	while (s->nattempts > 0)
		attempt_free(s->attempts[0]);
	if (s->attempt_ev != NULL)
		evtimer_del(s->attempt_ev);
}

/* a connected first: the session goes on over its connection. */
static void
attempt_won(struct conn_attempt *a)
{
	struct dsession *s = a->s;

	s->bev = a->bev;
	s->ssl = a->ssl;
	s->won = a->addr;
	a->bev = NULL;
	snprintf(s->relay, sizeof s->relay, "%s", a->relay);
	session_trace(s, TR_CONNECTED, s->relay);
	attempt_free(a);
	attempts_drop(s);
	bufferevent_setcb(s->bev, session_on_read, session_on_write, session_on_event, s);
	on_connected(s);
}

static void
attempt_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct conn_attempt *a = arg;
	struct dsession *s = a->s;
	char reason[256];

	if (what & BEV_EVENT_CONNECTED) {
		attempt_won(a);
		session_top(s);
		return;
	}
	/* the outcome line names the relay when the last failure was on a connection made */
	s->connected = 0;
	if (s->sh->tls == TLS_IMPLICIT && openssl_reason(bev, reason, sizeof reason)) {
		/* connected, but the handshake failed */
		s->connected = 1;
		snprintf(s->relay, sizeof s->relay, "%s", a->relay);
		snprintf(s->last_error, sizeof s->last_error, "TLS handshake with %s failed: %s",
		    a->relay, reason);
	} else
		snprintf(s->last_error, sizeof s->last_error, "connect to %s: %s", a->relay,
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	log_debug("%s", s->last_error);
	session_trace(s, TR_CONNECT_FAILED, s->last_error);
	attempt_free(a);
	attempt_next(s);
	session_top(s);
}

static void
on_head_start(evutil_socket_t fd, short what, void *arg)
{
	struct dsession *s = arg;

	(void)fd;
	(void)what;
	attempt_next(s);
	session_top(s);
}

/* Start an attempt for address ai; 0, or -1 with s->last_error set. */
static int
attempt_start(struct dsession *s, struct evutil_addrinfo *ai)
{
	struct conn_attempt *a;
	char addr[INET6_ADDRSTRLEN];
	int fd;

	a = xcalloc(1, sizeof *a);
	a->s = s;
	a->addr = ai;
	addr_string(ai->ai_addr, addr, sizeof addr);
	if (s->sh->proxy_host != NULL)
		snprintf(a->relay, sizeof a->relay, "%s[socks5:%s:%s]:%u", s->sh->host, addr,
		    s->sh->proxy_port, s->sh->port);
	else
		snprintf(a->relay, sizeof a->relay, "%s[%s]:%u", s->sh->host, addr, s->sh->port);
	/*
	 * The socket is made here rather than by bufferevent_socket_connect():
	 * libevent 2.1 makes it without close-on-exec, and a password_command
	 * started while it is open would hold the smarthost connection.
	 */
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		snprintf(s->last_error, sizeof s->last_error, "connect to %s: %s", a->relay,
		    strerror(errno));
		free(a);
		return -1;
	}
	if (s->sh->tls == TLS_IMPLICIT && s->sh->proxy_host == NULL) {
		a->ssl = tls_ssl_new(tls_ctx(s), s->sh->host);
		if (a->ssl == NULL)
			close(fd);	/* else the bufferevent owns it, made or not */
		else
			a->bev = bufferevent_openssl_socket_new(D->base, fd, a->ssl,
			    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
		if (a->bev == NULL)
			SSL_free(a->ssl);
	} else if ((a->bev = bufferevent_socket_new(D->base, fd, BEV_OPT_CLOSE_ON_FREE)) == NULL)
		close(fd);
	if (a->bev == NULL) {
		snprintf(s->last_error, sizeof s->last_error, "connect to %s: cannot create a connection",
		    a->relay);
		free(a);
		return -1;
	}
	bufferevent_setcb(a->bev, NULL, NULL, attempt_on_event, a);
	s->attempts[s->nattempts++] = a;
	log_debug("%s: connecting%s for %s", a->relay, s->sh->tls == TLS_IMPLICIT ? " with TLS" : "",
	    s->msg ? s->msg->env.id : "-");
	session_trace(s, TR_CONNECTING, a->relay);
	if (bufferevent_socket_connect(a->bev, ai->ai_addr, (int)ai->ai_addrlen) == 0)
		return 0;	/* the outcome arrives in attempt_on_event() */
	snprintf(s->last_error, sizeof s->last_error, "connect to %s: %s", a->relay,
	    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	attempt_free(a);
	return -1;
}

/*
 * Start the next address (at once: after an immediate failure, the next
 * after that), and arm the head start for the one after; when none is
 * left and no attempt is in flight, the connect phase has failed.
 */
static void
attempt_next(struct dsession *s)
{
	struct timeval tv = { 0, CONN_HEAD_START_MS * 1000 };

	if (s->attempt_ev == NULL)
		s->attempt_ev = evtimer_new(D->base, on_head_start, s);
	evtimer_del(s->attempt_ev);
	while (s->addr != NULL && s->nattempts < CONN_ATTEMPTS_MAX) {
		struct evutil_addrinfo *ai = s->addr;
		s->addr = s->addr->ai_next;
		if (attempt_start(s, ai) == 0) {
			if (s->addr != NULL)
				evtimer_add(s->attempt_ev, &tv);
			return;
		}
		session_trace(s, TR_CONNECT_FAILED, s->last_error);
	}
	if (s->nattempts == 0)
		conn_failed(s, TK_CONNECT, s->last_error[0] ? s->last_error : "no address to connect to");
}

/* The connect phase ran out of time (DS_CONNECT's deadline). */
static void
connect_timed_out(struct dsession *s)
{
	char why[500];

	snprintf(why, sizeof why, "connect to %s: timed out after %us", s->nattempts == 1 ?
	    s->attempts[0]->relay : s->relay, s->sh->connect_timeout);
	attempts_drop(s);
	conn_failed(s, TK_CONNECT, why);
}

/* The handshake is done: may mail go over this connection?  If not, reported. */
static int
tls_established(struct dsession *s)
{
	const struct smarthost_conf *sh = s->sh;
	int enforce = sh->tls == TLS_REQUIRED || sh->tls == TLS_IMPLICIT;
	char why[600];

	tls_judge(s->ssl, enforce, sh->tls_verify, sh->tls_fingerprint, &s->tlsv);
	s->tls_done = 1;
	session_trace(s, TR_TLS, s->tlsv.version);
	metrics_tls(sh->name, s->tlsv.trusted ? METRICS_TLS_OK : METRICS_TLS_UNTRUSTED);
	if (!s->tlsv.trusted) {
		snprintf(why, sizeof why, "TLS is required (tls = %s) but the certificate of %s "
		    "is not trusted: %s", conf_tls_mode_name(sh->tls), s->relay, s->tlsv.reason);
		conn_failed(s, TK_TLS_UNTRUSTED, why);
		return 0;
	}
	s->tls_active = 1;
	log_info("%s: TLS established: %s, cipher %s, verify=%s", s->relay,
	    s->tlsv.version, s->tlsv.cipher, s->tlsv.verify);
	return 1;
}

/*
 * The OpenSSL reason for a failure on bev ("wrong version number", "tlsv13
 * alert certificate required"); 0 when OpenSSL reported none.  The SSL
 * library's own errors are preferred over system ones queued with them.
 */
static int
openssl_reason(struct bufferevent *bev, char *buf, size_t len)
{
	unsigned long e, pick = 0;

	while ((e = bufferevent_get_openssl_error(bev)) != 0)
		if (pick == 0 || ERR_GET_LIB(e) == ERR_LIB_SSL)
			pick = e;
	if (pick == 0)
		return 0;
	const char *r = ERR_reason_error_string(pick);
	if (r != NULL)
		snprintf(buf, len, "%s", r);
	else
		snprintf(buf, len, "OpenSSL error %lx", pick);
	return 1;
}

void
conn_io_reason(struct bufferevent *bev, short what, char *buf, size_t len)
{
	int err = EVUTIL_SOCKET_ERROR();

	if (openssl_reason(bev, buf, len))
		return;
	if ((what & BEV_EVENT_EOF) || err == 0)
		snprintf(buf, len, "connection closed by the server");
	else
		snprintf(buf, len, "%s", evutil_socket_error_to_string(err));
}

enum conn_verdict
conn_after_ehlo(struct dsession *s, struct dfailure *f)
{
	if (s->tls_active || s->sh->tls == TLS_DISABLED || s->plaintext_retry)
		return CONN_GO_ON;
	if (s->caps.starttls)
		return CONN_STARTTLS;
	if (s->sh->tls == TLS_OPPORTUNISTIC)
		return CONN_GO_ON;
	f->kind = TK_TLS_NOT_OFFERED;
	snprintf(f->why, sizeof f->why, "TLS is required (tls = %s) but %s does not offer STARTTLS",
	    conf_tls_mode_name(s->sh->tls), s->relay);
	return CONN_REFUSE;
}

enum conn_verdict
conn_starttls_refused(struct dsession *s, const char *text, struct dfailure *f)
{
	if (s->sh->tls == TLS_OPPORTUNISTIC) {
		log_info("%s: STARTTLS refused (%s); going on without TLS (tls = opportunistic)", s->relay, text);
		s->plaintext_retry = 1;
		return CONN_GO_ON;
	}
	f->kind = TK_TLS_REFUSED;
	snprintf(f->why, sizeof f->why, "TLS is required (tls = %s) but %s refused STARTTLS: %s",
	    conf_tls_mode_name(s->sh->tls), s->relay, text);
	return CONN_REFUSE;
}

void
conn_starttls(struct dsession *s)
{
	struct bufferevent *tb;
	char why[500];

	/*
	 * Anything the server sent after its 220 was sent in plaintext and would
	 * be read as if it came over TLS (the STARTTLS command injection flaw).
	 */
	if (evbuffer_get_length(bufferevent_get_input(s->bev)) > 0) {
		snprintf(why, sizeof why, "%s sent data after its reply to STARTTLS; refusing to go on",
		    s->relay);
		conn_failed(s, TK_TLS_INJECTION, why);
		return;
	}
	s->ssl = tls_ssl_new(tls_ctx(s), s->sh->host);
	tb = s->ssl ? bufferevent_openssl_filter_new(D->base, s->bev, s->ssl,
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE) : NULL;
	if (tb == NULL) {
		SSL_free(s->ssl);
		s->ssl = NULL;
		snprintf(why, sizeof why, "%s: cannot set up TLS", s->relay);
		conn_failed(s, TK_TLS_SETUP, why);
		return;
	}
	s->bev = tb;	/* owns the socket bufferevent and the SSL from now on */
	bufferevent_setcb(tb, session_on_read, session_on_write, session_on_event, s);
	bufferevent_enable(tb, EV_READ | EV_WRITE);
	session_conn(s, CONN_HANDSHAKE, NULL);
}

/* Opportunistic TLS failed in the handshake: the same delivery once more, in plaintext. */
static void
retry_plaintext(struct dsession *s, const char *why)
{
	log_info("%s; retrying once without TLS (tls = opportunistic)", why);
	s->plaintext_retry = 1;
	timerclear(&s->connect_until);	/* a new connection: a new connect phase */
	memset(&s->caps, 0, sizeof s->caps);
	smtp_reply_init(&s->reply);
	/* the same address first, a new connection */
	bufferevent_free(s->bev);	/* also frees the SSL it owns */
	s->bev = NULL;
	s->ssl = NULL;
	s->tls_active = s->tls_done = 0;
	s->connected = 0;
	snprintf(s->relay, sizeof s->relay, "%s:%u", s->sh->host, s->sh->port);
	s->addr = s->won;
	session_conn(s, CONN_CONNECTING, NULL);
	attempt_next(s);
}

/* ---- SOCKS5 (RFC 1928), no authentication ---- */

static const char *
socks_reply_text(unsigned char rep)
{
	static const char *const text[] = {
		"succeeded", "general SOCKS server failure", "connection not allowed by ruleset",
		"network unreachable", "host unreachable", "connection refused", "TTL expired",
		"command not supported", "address type not supported",
	};
	return rep < sizeof text / sizeof text[0] ? text[rep] : "unknown reply";
}

static void start_greeting(struct dsession *s);

static void
socks_fail(struct dsession *s, const char *what)
{
	char why[500];

	snprintf(why, sizeof why, "connect to %s: SOCKS5 proxy: %s", s->relay, what);
	conn_failed(s, TK_SOCKS, why);
}

/* The proxy's replies (DS_SOCKS), as session_io() hands them over. */
void
conn_input(struct dsession *s)
{
	struct bufferevent *bev = s->bev;
	struct evbuffer *in = bufferevent_get_input(bev);
	unsigned char h[5];
	size_t need;

	if (s->socks_step == 0) {
		if (evbuffer_get_length(in) < 2)
			return;
		evbuffer_remove(in, h, 2);
		if (h[0] != 5 || h[1] != 0) {
			socks_fail(s, h[1] == 0xff ? "no acceptable authentication method" : "bad greeting");
			return;
		}
		/*
		 * CONNECT by name, so that the proxy resolves it (the point of a
		 * proxy on closed networks); an address literal as an address.
		 */
		unsigned char req[262 + 8], a[16];
		size_t hl = strlen(s->sh->host), n = 0;
		req[n++] = 5;
		req[n++] = 1;
		req[n++] = 0;
		if (inet_pton(AF_INET, s->sh->host, a) == 1) {
			req[n++] = 1;
			memcpy(req + n, a, 4);
			n += 4;
		} else if (inet_pton(AF_INET6, s->sh->host, a) == 1) {
			req[n++] = 4;
			memcpy(req + n, a, 16);
			n += 16;
		} else {
			if (hl > 255) {
				socks_fail(s, "host name too long for SOCKS5");
				return;
			}
			req[n++] = 3;
			req[n++] = (unsigned char)hl;
			memcpy(req + n, s->sh->host, hl);
			n += hl;
		}
		req[n++] = (unsigned char)(s->sh->port >> 8);
		req[n++] = (unsigned char)(s->sh->port & 0xff);
		bufferevent_write(bev, req, n);
		s->socks_step = 1;
		return;
	}
	if (evbuffer_get_length(in) < 5)
		return;
	evbuffer_copyout(in, h, 5);
	if (h[0] != 5 || h[1] != 0) {
		socks_fail(s, h[0] != 5 ? "bad reply" : socks_reply_text(h[1]));
		return;
	}
	/* the bound address: IPv4, IPv6 or a name */
	need = h[3] == 1 ? 4 + 6 : h[3] == 4 ? 4 + 18 : h[3] == 3 ? 5 + h[4] + 2 : 0;
	if (need == 0) {
		socks_fail(s, "bad address type in reply");
		return;
	}
	if (evbuffer_get_length(in) < need)
		return;
	evbuffer_drain(in, need);
	if (evbuffer_get_length(in) > 0) {
		socks_fail(s, "data before the tunnel was set up");
		return;
	}
	log_debug("%s: SOCKS5 tunnel established", s->relay);
	if (s->sh->tls == TLS_IMPLICIT) {
		/* TLS from the first byte of the tunnel */
		struct bufferevent *tb;
		s->ssl = tls_ssl_new(tls_ctx(s), s->sh->host);
		tb = s->ssl ? bufferevent_openssl_filter_new(D->base, bev, s->ssl,
		    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE) : NULL;
		if (tb == NULL) {
			SSL_free(s->ssl);
			s->ssl = NULL;
			socks_fail(s, "cannot set up TLS");
			return;
		}
		s->bev = tb;
		bufferevent_setcb(tb, session_on_read, session_on_write, session_on_event, s);
		bufferevent_enable(tb, EV_READ | EV_WRITE);
		session_conn(s, CONN_HANDSHAKE, NULL);
		return;
	}
	start_greeting(s);
}

static void
start_greeting(struct dsession *s)
{
	log_debug("%s: connected", s->relay);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	session_conn(s, CONN_READY, NULL);
}

static void
on_connected(struct dsession *s)
{
	s->connected = 1;
	if (s->sh->proxy_host != NULL) {
		static const unsigned char hello[3] = { 5, 1, 0 };
		s->socks_step = 0;
		session_conn(s, CONN_SOCKS, NULL);
		bufferevent_enable(s->bev, EV_READ | EV_WRITE);
		bufferevent_write(s->bev, hello, sizeof hello);
		return;
	}
	if (s->sh->tls == TLS_IMPLICIT && !tls_established(s))
		return;
	start_greeting(s);
}

void
conn_event(struct dsession *s, struct bufferevent *bev, short what)
{
	char why[700], reason[256];

	if (what & BEV_EVENT_CONNECTED) {
		if (s->state == DS_HANDSHAKE && tls_established(s)) {
			if (s->sh->tls == TLS_IMPLICIT)
				start_greeting(s);	/* implicit TLS through a proxy */
			else
				session_conn(s, CONN_SECURED, NULL);
		}
		return;
	}
	switch (s->state) {
	case DS_CONNECT:
		/* the attempts have their own callback: only the phase's deadline comes here */
		connect_timed_out(s);
		break;
	case DS_HANDSHAKE:
		if (what & BEV_EVENT_TIMEOUT)
			snprintf(why, sizeof why, "TLS handshake with %s timed out", s->relay);
		else {
			conn_io_reason(bev, what, reason, sizeof reason);
			snprintf(why, sizeof why, "TLS handshake with %s failed: %s", s->relay, reason);
		}
		metrics_tls(s->sh->name, METRICS_TLS_FAILED);
		if (s->sh->tls == TLS_OPPORTUNISTIC && !s->plaintext_retry)
			retry_plaintext(s, why);
		else
			conn_failed(s, TK_TLS_HANDSHAKE, why);
		break;
	case DS_SOCKS:
		if (what & BEV_EVENT_TIMEOUT)
			socks_fail(s, "no answer");
		else
			socks_fail(s, "connection closed");
		break;
	default:
		break;	/* not the connection code's: see session_io() */
	}
}

void
conn_free(struct dsession *s)
{
	attempts_drop(s);
	if (s->attempt_ev != NULL) {
		event_free(s->attempt_ev);
		s->attempt_ev = NULL;
	}
	if (s->dnsreq != NULL) {
		evdns_getaddrinfo_cancel(s->dnsreq);
		s->dnsreq = NULL;
	}
	if (s->addrs != NULL) {
		evutil_freeaddrinfo(s->addrs);
		s->addrs = s->addr = NULL;
	}
	if (s->bev != NULL) {
		bufferevent_free(s->bev);
		s->bev = NULL;
		s->ssl = NULL;
	}
}

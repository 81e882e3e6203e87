/*
 * httpc: see httpc.h.
 *
 * The glue follows libcurl's multi-socket model: socket_cb() keeps one
 * libevent event per descriptor curl wants watched (its event pointer
 * stored with curl_multi_assign()), timer_cb() keeps one timer for curl's
 * deadline, and both event handlers call curl_multi_socket_action() and
 * then collect finished transfers.  curl_multi_socket_action() is never
 * called from inside a curl callback.
 *
 * Descriptors: every one the daemon holds is close-on-exec (a
 * password_command must inherit none).  Connections are opened by
 * open_socket() with SOCK_CLOEXEC; the wake-up socket pair that
 * curl_multi_init() makes without it is marked right after, and the
 * multi handle is made only when the first request needs it, so a
 * daemon without OAuth2 smarthosts holds none of curl's descriptors.
 *
 * libcurl itself is loaded then too (daemon/curlload.h), and
 * curl_global_init() run once it is: a daemon that never asks for a
 * token never maps libcurl or its dependencies.  Every curl call goes
 * through the loaded table C, which is set before any request exists.
 * When the library cannot be loaded, httpc_post() fails with the loader's
 * one line, as for any request that cannot start, and the next request
 * tries to load it again.
 */
#include "config.h"

#include <sys/socket.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "curlload.h"
#include "httpc.h"
#include "log.h"
#include "xmalloc.h"

struct httpc_req {
	CURL *easy;
	httpc_cb cb;
	void *arg;
	char *body;                 /* response, NUL-terminated */
	size_t len;
	int too_big;
	char errbuf[CURL_ERROR_SIZE];
	char *proxy;
	struct curl_slist *headers;
};

static struct {
	struct event_base *base;
	int curl_ready;             /* curl_global_init() done */
	CURLM *multi;
	struct event *timer;
} H;

/* libcurl, once loaded (multi_start()) */
static const struct curlload *C;

static void check_done(void);

static void
req_free(struct httpc_req *r)
{
	if (r->body != NULL) {
		explicit_bzero(r->body, r->len);
		free(r->body);
	}
	C->slist_free_all(r->headers);
	free(r->proxy);
	free(r);
}

static void
on_socket_event(evutil_socket_t fd, short what, void *arg)
{
	int running, flags = 0;

	(void)arg;
	if (what & EV_READ)
		flags |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		flags |= CURL_CSELECT_OUT;
	C->multi_socket_action(H.multi, fd, flags, &running);
	check_done();
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	int running;

	(void)fd;
	(void)what;
	(void)arg;
	C->multi_socket_action(H.multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done();
}

static int
socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct event *ev = socketp;
	short kind;

	(void)easy;
	(void)userp;
	if (what == CURL_POLL_REMOVE) {
		if (ev != NULL) {
			event_free(ev);
			C->multi_assign(H.multi, s, NULL);
		}
		return 0;
	}
	kind = EV_PERSIST | (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0);
	if (ev != NULL)
		event_free(ev);
	ev = event_new(H.base, s, kind, on_socket_event, NULL);
	C->multi_assign(H.multi, s, ev);
	event_add(ev, NULL);
	return 0;
}

static int
timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	(void)multi;
	(void)userp;
	if (timeout_ms < 0) {
		evtimer_del(H.timer);
		return 0;
	}
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	evtimer_add(H.timer, &tv);
	return 0;
}

static size_t
write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
	struct httpc_req *r = userp;
	size_t n = size * nmemb;

	if (r->len + n > HTTPC_BODY_MAX) {
		r->too_big = 1;
		return 0;	/* aborts the transfer */
	}
	char *grown = xmalloc(r->len + n + 1);
	if (r->body != NULL) {
		memcpy(grown, r->body, r->len);
		explicit_bzero(r->body, r->len);
		free(r->body);
	}
	memcpy(grown + r->len, data, n);
	r->len += n;
	grown[r->len] = '\0';
	r->body = grown;
	return n;
}

static void
check_done(void)
{
	CURLMsg *m;
	int left;

	while ((m = C->multi_info_read(H.multi, &left)) != NULL) {
		struct httpc_req *r = NULL;
		long status = 0;
		char err[CURL_ERROR_SIZE + 64];

		if (m->msg != CURLMSG_DONE)
			continue;
		CURL *easy = m->easy_handle;
		CURLcode rc = m->data.result;
		C->easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
		C->easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
		C->multi_remove_handle(H.multi, easy);
		C->easy_cleanup(easy);
		r->easy = NULL;
		err[0] = '\0';
		if (r->too_big) {
			snprintf(err, sizeof err, "the answer is longer than %d bytes", HTTPC_BODY_MAX);
			status = 0;
		} else if (rc != CURLE_OK) {
			snprintf(err, sizeof err, "%s", r->errbuf[0] ? r->errbuf : C->easy_strerror(rc));
			status = 0;
		}
		r->cb((int)status, r->body ? r->body : "", r->len, err, r->arg);
		req_free(r);
	}
}

static curl_socket_t
open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
	(void)arg;
	(void)purpose;
	return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

#define FD_SCAN	1024

/* Mark close-on-exec the descriptors below FD_SCAN that were not open before (was[fd] == 0). */
static void
cloexec_new(const unsigned char *was)
{
	for (int fd = 3; fd < FD_SCAN; fd++) {
		int fl;
		if (was[fd] || (fl = fcntl(fd, F_GETFD)) == -1 || (fl & FD_CLOEXEC))
			continue;
		fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
	}
}

/* Load and start libcurl and the multi handle, once; -1 with errbuf when it cannot. */
static int
multi_start(char *errbuf, size_t errlen)
{
	unsigned char was[FD_SCAN];

	if (H.multi != NULL)
		return 0;
	if (C == NULL && (C = curlload_get(errbuf, errlen)) == NULL)
		return -1;
	if (!H.curl_ready) {
		if (C->global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
			snprintf(errbuf, errlen, "the HTTP client cannot start (curl_global_init failed)");
			return -1;
		}
		H.curl_ready = 1;
	}
	for (int fd = 0; fd < FD_SCAN; fd++)
		was[fd] = fcntl(fd, F_GETFD) != -1;
	H.multi = C->multi_init();
	cloexec_new(was);
	if (H.multi == NULL) {
		snprintf(errbuf, errlen, "the HTTP client cannot start");
		return -1;
	}
	H.timer = evtimer_new(H.base, on_timer, NULL);
	C->multi_setopt(H.multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	C->multi_setopt(H.multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	return 0;
}

/* Nothing of libcurl yet: it is loaded by the first request (multi_start()). */
int
httpc_init(struct event_base *base)
{
	if (H.base != NULL)
		return 0;
	H.base = base;
	return 0;
}

void
httpc_shutdown(void)
{
	if (H.base == NULL)
		return;
	if (H.multi != NULL) {
		C->multi_cleanup(H.multi);
		event_free(H.timer);
		H.multi = NULL;
	}
	H.base = NULL;
	if (H.curl_ready) {
		C->global_cleanup();
		H.curl_ready = 0;
	}
}

struct httpc_req *
httpc_post(const char *url, const char *form, const struct httpc_opts *o,
    httpc_cb cb, void *arg, char *errbuf, size_t errlen)
{
	struct httpc_req *r;
	CURL *e;

	if (H.base == NULL) {
		snprintf(errbuf, errlen, "the HTTP client cannot start");
		return NULL;
	}
	if (multi_start(errbuf, errlen) == -1)
		return NULL;
	if ((e = C->easy_init()) == NULL) {
		snprintf(errbuf, errlen, "cannot start an HTTP request");
		return NULL;
	}
	r = xcalloc(1, sizeof *r);
	r->easy = e;
	r->cb = cb;
	r->arg = arg;
	r->headers = C->slist_append(NULL, "Accept: application/json");
	C->easy_setopt(e, CURLOPT_PRIVATE, r);
	C->easy_setopt(e, CURLOPT_URL, url);
	C->easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
	C->easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	C->easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	C->easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket);
	C->easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
	C->easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	C->easy_setopt(e, CURLOPT_WRITEDATA, r);
	C->easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
	C->easy_setopt(e, CURLOPT_USERAGENT, "mailrelay/" PACKAGE_VERSION);
	/* the body is the caller's, not copied, so that it can be wiped */
	C->easy_setopt(e, CURLOPT_POSTFIELDS, form);
	C->easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(form));
	C->easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	C->easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	C->easy_setopt(e, CURLOPT_TIMEOUT, (long)(o->timeout ? o->timeout : 60));
	C->easy_setopt(e, CURLOPT_CONNECTTIMEOUT, (long)(o->connect_timeout ? o->connect_timeout : 30));
	if (o->ca_blob != NULL) {
		struct curl_blob blob = { (void *)(uintptr_t)o->ca_blob, o->ca_len, CURL_BLOB_COPY };
		C->easy_setopt(e, CURLOPT_CAINFO_BLOB, &blob);
	}
	if (o->ca_path != NULL)
		C->easy_setopt(e, CURLOPT_CAPATH, o->ca_path);
	if (o->proxy_host != NULL) {
		r->proxy = xasprintf("socks5h://%s:%s", o->proxy_host, o->proxy_port);
		C->easy_setopt(e, CURLOPT_PROXY, r->proxy);
	} else
		C->easy_setopt(e, CURLOPT_PROXY, "");	/* no proxy from the environment */
	if (C->multi_add_handle(H.multi, e) != CURLM_OK) {
		snprintf(errbuf, errlen, "cannot start an HTTP request");
		C->easy_cleanup(e);
		req_free(r);
		return NULL;
	}
	return r;
}

void
httpc_cancel(struct httpc_req *r)
{
	if (r == NULL)
		return;
	if (r->easy != NULL) {
		C->multi_remove_handle(H.multi, r->easy);
		C->easy_cleanup(r->easy);
	}
	req_free(r);
}

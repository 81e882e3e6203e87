/*
 * session_harness: see session_harness.h.
 *
 * The queue is daemon/queue_one.c's (one message; the run starts its
 * session itself): its outcomes are recorded here per recipient.  Nothing
 * is retried: a run is one session from connect to its end.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/stat.h>

#include <netinet/in.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "daemon/daemon.h"
#include "daemon/delivery.h"
#include "daemon/dispatch.h"
#include "daemon/queue.h"
#include "daemon/queue_one.h"
#include "daemon/runconf.h"
#include "log.h"
#include "session_harness.h"
#include "xmalloc.h"

struct hx HX;

static struct qmsg M;
static int listen_fd = -1, closed_fd = -1, dns_fd = -1;
static struct event *dns_ev;
static unsigned short listen_port, closed_port;
static struct event *accept_ev;
static struct event *tick;              /* hx_run()'s bound on a round's wait: 1 ms */
static struct bufferevent *server;
static SSL_CTX *server_tls;
static char confdir[64];
static const char *const content =
    "From: a@example.org\r\nTo: b@example.net\r\nSubject: harness\r\n\r\nbody line\r\n.dot line\r\n";
/* with an 8-bit header field, which no conversion makes 7-bit */
static const char *const content8 =
    "From: a@example.org\r\nTo: b@example.net\r\nSubject: caf\xc3\xa9\r\n\r\nbody line\r\n";

/* ---- the queue (daemon/queue_one.c): each outcome kept per recipient ---- */

static void
on_outcome(struct qmsg *m, size_t idx, enum outcome o, const char *dsn, const char *kind,
    const char *reply)
{
	struct hx_outcome *x = &HX.out[idx];

	(void)m;
	x->n++;
	x->o = o;
	snprintf(x->kind, sizeof x->kind, "%s", kind ? kind : "");
	snprintf(x->dsn, sizeof x->dsn, "%s", dsn ? dsn : "");
	snprintf(x->text, sizeof x->text, "%s", reply ? reply : "");
}

/* ---- the fake clock ---- */

static void
clock_hook(struct dsession *s, unsigned secs)
{
	HX.session = s;
	HX.armed[s->state] = secs;
	HX.armed_set[s->state] = 1;
	HX.deadline_pending = secs > 0;
}

/* ---- the scripted smarthost ---- */

static void
server_close(void)
{
	if (server != NULL) {
		bufferevent_free(server);
		server = NULL;
	}
	HX.server_closed = 1;
}

static void server_on_read(struct bufferevent *bev, void *arg);

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what, (void)arg;
}

static void server_on_event(struct bufferevent *bev, short what, void *arg);

/* Send the next scripted reply; none left: close. */
static void
server_reply(void)
{
	const char *r;

	if (server == NULL)
		return;
	if (HX.next >= HX.nreplies) {
		server_close();
		return;
	}
	r = HX.replies[HX.next++];
	if (strcmp(r, HX_STALL) == 0)
		return;
	if (strcmp(r, HX_CLOSE) == 0) {
		server_close();
		return;
	}
	if (strncmp(r, "354", 3) == 0)
		HX.in_data = 1;
	bufferevent_write(server, r, strlen(r));
	if (HX.next < HX.nreplies && strcmp(HX.replies[HX.next], HX_TLS) == 0) {
		/* the reply goes out in plaintext first: the filter writes behind it */
		SSL *ssl = SSL_new(server_tls);
		struct bufferevent *tb;
		HX.next++;
		tb = ssl ? bufferevent_openssl_filter_new(D->base, server, ssl, BUFFEREVENT_SSL_ACCEPTING,
		    BEV_OPT_CLOSE_ON_FREE) : NULL;
		if (tb == NULL) {
			SSL_free(ssl);
			server_close();
			return;
		}
		server = tb;
		bufferevent_setcb(server, server_on_read, NULL, server_on_event, NULL);
		bufferevent_enable(server, EV_READ | EV_WRITE);
	}
}

static void
server_on_read(struct bufferevent *bev, void *arg)
{
	char *line;
	size_t len;

	(void)arg;
	while (server == bev && (line = evbuffer_readln(bufferevent_get_input(bev), &len,
	    EVBUFFER_EOL_CRLF)) != NULL) {
		if (HX.in_data) {
			if (strcmp(line, ".") == 0) {
				HX.in_data = 0;
				snprintf(HX.commands[HX.ncommands++ % HX_STEPS_MAX], sizeof HX.commands[0],
				    "<body>");
				server_reply();
			}
		} else {
			snprintf(HX.commands[HX.ncommands++ % HX_STEPS_MAX], sizeof HX.commands[0], "%s", line);
			server_reply();
		}
		free(line);
	}
}

static void
server_on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	(void)arg;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		server_close();
}

static void
on_accept(evutil_socket_t fd, short what, void *arg)
{
	int c;

	(void)what;
	(void)arg;
	if ((c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) == -1)
		return;
	if (server != NULL) {
		close(c);	/* one connection per run */
		return;
	}
	server = bufferevent_socket_new(D->base, c, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(server, server_on_read, NULL, server_on_event, NULL);
	bufferevent_enable(server, EV_READ | EV_WRITE);
	server_reply();	/* the greeting */
}

/* ---- setup and runs ---- */

/* A self-signed certificate for the server's TLS, made in memory. */
static SSL_CTX *
make_server_tls(void)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *n;
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (key == NULL || x == NULL || ctx == NULL)
		goto fail;
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, key);
	n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"hx.test", -1, -1, 0);
	X509_set_issuer_name(x, n);
	if (X509_sign(x, key, EVP_sha256()) == 0 || SSL_CTX_use_certificate(ctx, x) != 1 ||
	    SSL_CTX_use_PrivateKey(ctx, key) != 1)
		goto fail;
	X509_free(x);
	EVP_PKEY_free(key);
	return ctx;
fail:
	X509_free(x);
	EVP_PKEY_free(key);
	SSL_CTX_free(ctx);
	return NULL;
}

/*
 * The resolver's name server: on 127.0.0.1, it answers every question
 * "no such name" (NXDOMAIN), so that a host name fails to resolve at once
 * and without the network.
 */
static void
dns_on_read(evutil_socket_t fd, short what, void *arg)
{
	unsigned char q[512];
	struct sockaddr_storage from;
	socklen_t fl = sizeof from;
	ssize_t n;

	(void)what;
	(void)arg;
	while ((n = recvfrom(fd, q, sizeof q, 0, (struct sockaddr *)&from, &fl)) >= 12) {
		q[2] = (unsigned char)(0x80 | (q[2] & 0x01));	/* a response; RD as asked */
		q[3] = 0x83;                                    /* RA, rcode 3: no such name */
		memset(q + 6, 0, 6);                            /* no answer, authority or additional */
		(void)sendto(fd, q, (size_t)n, 0, (struct sockaddr *)&from, fl);
		fl = sizeof from;
	}
}

/* A socket on 127.0.0.1 (listening or not); its port in *port. */
static int
loopback_socket(int do_listen, unsigned short *port)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof sin;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd == -1 || bind(fd, (struct sockaddr *)&sin, sizeof sin) == -1 ||
	    (do_listen && listen(fd, 8) == -1) || getsockname(fd, (struct sockaddr *)&sin, &sl) == -1) {
		perror("harness: socket");
		if (fd != -1)
			close(fd);
		return -1;
	}
	*port = ntohs(sin.sin_port);
	return fd;
}

int
hx_config(const char *host, unsigned port, const char *extra)
{
	char path[300], err[300];
	struct config *conf;
	struct runconf *rc;
	FILE *f;

	snprintf(path, sizeof path, "%s/mailrelay.conf", confdir);
	if ((f = fopen(path, "w")) == NULL)
		return -1;
	fprintf(f, "hostname = relay.test\nmax_queue_time = 1h\nspool_dir = \"%s/spool\"\n"
	    "smarthost main {\n    host = \"%s\"\n    port = %u\n%s\n}\n",
	    confdir, host ? host : "127.0.0.1", port ? port : listen_port,
	    extra ? extra : "    tls = disabled");
	fclose(f);
	if ((conf = conf_load(path, err, sizeof err)) == NULL) {
		fprintf(stderr, "harness: %s\n", err);
		return -1;
	}
	if ((rc = runconf_new(conf, err, sizeof err)) == NULL) {
		fprintf(stderr, "harness: %s\n", err);
		return -1;
	}
	if (D->rc != NULL)
		runconf_unref(D->rc);	/* sessions of earlier runs are gone */
	D->rc = rc;
	D->conf = D->rc->conf;
	return 0;
}

unsigned
hx_closed_port(void)
{
	return closed_port;
}

unsigned
hx_port(void)
{
	return listen_port;
}

int
hx_setup(const char *extra)
{
	char dir[] = "/tmp/mr-harness-XXXXXX", path[300], err[300], keys[1000];

	log_init("harness", LOG_TO_STDERR, getenv("HX_DEBUG") ? LOG_DEBUG : LOG_EMERG);
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(confdir, sizeof confdir, "%s", dir);
	if ((listen_fd = loopback_socket(1, &listen_port)) == -1 ||
	    (closed_fd = loopback_socket(0, &closed_port)) == -1)
		return -1;
	if ((server_tls = make_server_tls()) == NULL) {
		fprintf(stderr, "harness: cannot make the server's certificate\n");
		return -1;
	}
	D->base = event_base_new();
	tick = evtimer_new(D->base, on_tick, NULL);
	D->dns = evdns_base_new(D->base, 0);
	{
		struct sockaddr_in sin;
		socklen_t sl = sizeof sin;
		char ns[64];
		memset(&sin, 0, sizeof sin);
		sin.sin_family = AF_INET;
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		dns_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (dns_fd == -1 || bind(dns_fd, (struct sockaddr *)&sin, sizeof sin) == -1 ||
		    getsockname(dns_fd, (struct sockaddr *)&sin, &sl) == -1) {
			perror("harness: name server");
			return -1;
		}
		snprintf(ns, sizeof ns, "127.0.0.1:%u", ntohs(sin.sin_port));
		dns_ev = event_new(D->base, dns_fd, EV_READ | EV_PERSIST, dns_on_read, NULL);
		event_add(dns_ev, NULL);
		if (evdns_base_nameserver_ip_add(D->dns, ns) != 0)
			return -1;
	}
	snprintf(keys, sizeof keys, "    tls = disabled\n%s", extra ? extra : "");
	if (hx_config(NULL, 0, keys) == -1)
		return -1;
	snprintf(path, sizeof path, "%s/spool", dir);
	if (spool_open(&D->spool, path, 1, err, sizeof err) == -1) {
		fprintf(stderr, "harness: %s\n", err);
		return -1;
	}
	accept_ev = event_new(D->base, listen_fd, EV_READ | EV_PERSIST, on_accept, NULL);
	event_add(accept_ev, NULL);
	session_clock_hook = clock_hook;
	session_reuse = 0;	/* QUIT after the message; test_idle_then_quit turns it on */
	queue_one_outcome = on_outcome;
	delivery_init();
	return 0;
}

void
hx_start(size_t nrcpt, const char *const *replies)
{
	static const char *const addrs[HX_RCPTS_MAX] = {
		"r0@example.net", "r1@example.net", "r2@example.net", "r3@example.net",
		"r4@example.net", "r5@example.net", "r6@example.net", "r7@example.net",
	};
	struct timeval now;
	char name[64];
	int fd;

	unsigned quiet = HX.quiet_ms;
	struct hx_opts opt = HX.opt;
	const char *text = opt.eightbit ? content8 : content;
	static char longaddr[1100], *bigtext;
	size_t i;

	if (opt.big) {
		/* 512 KiB of 64-octet lines after the header */
		if (bigtext == NULL) {
			size_t hl = strlen(content), n = 512 * 1024 / 64;
			bigtext = xmalloc(hl + n * 64 + 1);
			memcpy(bigtext, content, hl);
			for (i = 0; i < n; i++)
				snprintf(bigtext + hl + i * 64, 65, "%062zu\r\n", i);
		}
		text = bigtext;
	}

	memset(&HX, 0, sizeof HX);
	HX.quiet_ms = quiet;
	HX.opt = opt;
	for (i = 0; replies[i] != NULL && i < HX_STEPS_MAX; i++)
		HX.replies[HX.nreplies++] = replies[i];
	server = NULL;
	if (nrcpt > HX_RCPTS_MAX)
		nrcpt = HX_RCPTS_MAX;
	if (nrcpt == 0)
		nrcpt = 1;
	HX.nrcpt = nrcpt;
	memset(&M, 0, sizeof M);
	gettimeofday(&now, NULL);
	spool_qid_new(&D->spool, M.env.id, &now);
	M.env.arrival = now.tv_sec - (time_t)opt.age;
	M.env.sender = (char *)"a@example.org";
	M.env.size = strlen(text);
	M.env.eightbit = opt.eightbit;
	M.env.nrcpt = nrcpt;
	M.env.rcpts = xcalloc(nrcpt, sizeof *M.env.rcpts);
	for (i = 0; i < nrcpt; i++) {
		M.env.rcpts[i].addr = (char *)addrs[i];
		M.env.rcpts[i].orig = (char *)addrs[i];
		M.env.rcpts[i].last_reply = (char *)"";
	}
	if (opt.utf8_rcpt)
		M.env.rcpts[0].addr = M.env.rcpts[0].orig = (char *)"r\xc3\xa9@example.net";
	if (opt.long_rcpt) {
		memset(longaddr, 'x', sizeof longaddr - 20);
		snprintf(longaddr + sizeof longaddr - 20, 20, "@example.net");
		M.env.rcpts[0].addr = M.env.rcpts[0].orig = longaddr;
	}
	snprintf(name, sizeof name, "%s.msg", M.env.id);
	fd = opt.no_content ? -1 : openat(D->spool.queuefd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0600);
	if (fd != -1) {
		if (write(fd, text, strlen(text)) < 0)
			perror("harness: write");
		close(fd);
	}
	queue_one_released = 0;
	queue_take(&M);
	session_start(0, &M);
}

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define HX_ROUNDS_MAX	10000

int
hx_run(void)
{
	long long quiet_since = now_ms();
	size_t seen = HX.ncommands;
	unsigned rounds = 0;

	/*
	 * A hung session is one still there after HX_ROUNDS_MAX rounds of the
	 * loop (about 5 s on an idle machine), counted in rounds and not in
	 * wall time: every round handles all that is ready, so a starved
	 * process (a fuzzer at nice 19 beside busy CPUs) is slow, not hung.
	 */
	const struct timeval ms = { 0, 1000 };

	while (delivery_sessions() > 0) {
		if (++rounds > HX_ROUNDS_MAX)
			return -1;
		long long before = now_ms();
		/*
		 * One round: whatever is ready, or, with nothing, a wait of at
		 * most 1 ms (the tick) for the other side.  Not a sleep after
		 * each round: the fuzz target that runs this spent nine tenths
		 * of its time asleep, and a CPU-hour of it took a day.
		 */
		evtimer_add(tick, &ms);
		event_base_loop(D->base, EVLOOP_ONCE);
		evtimer_del(tick);
		/*
		 * Quiet is a loop with nothing to do: a callback that ran long
		 * (the first connection loading the system's CA store, slow
		 * under the sanitizers) was work, as a command is.
		 */
		if (HX.ncommands != seen || now_ms() - before > 20) {
			seen = HX.ncommands;
			quiet_since = now_ms();
		} else if (HX.deadline_pending && now_ms() - quiet_since > (HX.quiet_ms ? HX.quiet_ms : 100))
			return 0;	/* nothing moves: the session waits on its deadline */
	}
	return 0;
}

void
hx_server_close(void)
{
	server_close();
}

int
hx_fire(void)
{
	if (delivery_sessions() > 0 && HX.deadline_pending) {
		HX.deadline_pending = 0;
		session_deadline_passed(HX.session);
	}
	return hx_run();
}

int
hx_all_decided(void)
{
	size_t i;

	HX.released = (int)queue_one_released;
	if (delivery_sessions() != 0 || M.inflight || HX.released != 1)
		return 0;
	for (i = 0; i < HX.nrcpt; i++)
		if (HX.out[i].n != 1)
			return 0;
	return 1;
}

void
hx_report(const char *why)
{
	size_t i;

	fprintf(stderr, "harness: %s: %zu recipient(s), sessions %u, inflight %d, released %u, "
	    "deadline pending %d, replies sent %zu of %zu, server closed %d\n", why, HX.nrcpt,
	    delivery_sessions(), M.inflight, queue_one_released, HX.deadline_pending, HX.next,
	    HX.nreplies, HX.server_closed);
	for (i = 0; i < HX.ncommands && i < HX_STEPS_MAX; i++)
		fprintf(stderr, "harness:   C: %s\n", HX.commands[i]);
	for (i = 0; i < HX.nrcpt; i++)
		fprintf(stderr, "harness:   r%zu: %d outcome(s), last %d %s %s: %s\n", i, HX.out[i].n,
		    (int)HX.out[i].o, HX.out[i].dsn, HX.out[i].kind, HX.out[i].text);
}

void
hx_end(void)
{
	char name[64];

	server_close();
	snprintf(name, sizeof name, "%s.msg", M.env.id);
	unlinkat(D->spool.queuefd, name, 0);
	free(M.env.rcpts);
	M.env.rcpts = NULL;
	memset(&HX.opt, 0, sizeof HX.opt);
}

/*
 * smtpd: ESMTP server sessions for submission (unix socket, loopback TCP).
 *
 * States: COMMAND (reading command lines), DATA (streaming the message
 * through the dot decoder into a spool transaction), COMMIT (the message is
 * with the committer; input is paused, pipelined commands wait in the
 * buffer), CLOSING (flush the last reply, then free).
 *
 * Every message is stored after a Received: field (lib/received.c) that
 * names the submitter; a message already 100 hops old is refused (554).
 *
 * The 250 after the final dot is sent from the committer's callback, i.e.
 * only once content and envelope are fsynced and renamed into the queue.
 * A session whose client vanished while its message was being committed
 * is kept until the commit returns, so the message is queued all the same.
 *
 * What a client can make us hold is bounded (ENGINEERING "The trust
 * boundary holds"):
 *  - sessions: max_connections in all, max_connections_per_client per uid
 *    (unix socket, SO_PEERCRED) or per address (TCP); beyond that a 421
 *    at connect, and one log line per LOG_GATE_SECS;
 *  - replies: a client that sends commands without reading the answers
 *    (pipelining NOOP) is not read from while more than OUT_HIGH octets
 *    of replies wait, until they drain below OUT_LOW;
 *  - time: idle_timeout without a complete command (or, in DATA, without
 *    a byte of the message) ends the session with a 421, and so does
 *    session_timeout, however busy the session; a reply the client does
 *    not read for idle_timeout drops the connection;
 *  - disk: DATA beyond max_message_size is read and dropped, never
 *    written, and the partial file is removed with its session.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <arpa/inet.h>
#include <errno.h>
#include <pwd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "commit.h"
#include "enqueue.h"
#include "daemon.h"
#include "addr.h"
#include "dotstuff.h"
#include "local.h"
#include "log.h"
#include "metrics.h"
#include "queue.h"
#include "smtp_cmd.h"
#include "smtpd.h"
#include "header.h"
#include "linefix.h"
#include "listener.h"
#include "received.h"
#include "util.h"
#include "xmalloc.h"

#define CMD_LINE_MAX     2048     /* RFC 5321 says 512; ESMTP parameters make lines longer */
#define MAX_RCPTS        1000
#define MAX_ERRORS       20
#define CMD_TIMEOUT      (D->conf->idle_timeout)	/* RFC 5321 4.5.3.2.7: 5 minutes by default */
#define DATA_TIMEOUT     (D->conf->idle_timeout)
#define OUT_HIGH         (64 * 1024)  /* unsent replies above this: stop reading commands */
#define OUT_LOW          (16 * 1024)  /* ... until they drain below this */
#define DATA_SLICE       (64 * 1024)
#define READ_SIZE        (16 * 1024)  /* one read() takes at most this */
#define HEADER_MAX       (256 * 1024) /* a header section longer than this is stored untouched */
#define MAX_HOPS         100          /* Received: fields a message may bring: more is a loop */
#define SENDMAIL_HELO    "mailrelay-sendmail"   /* how our sendmail client names itself */

enum sstate { SS_COMMAND, SS_DATA, SS_COMMIT, SS_CLOSING };

struct srcpt {
	char *addr;
	char notify[32];            /* DSN NOTIFY=, "" when absent */
	char *orcpt;                /* DSN ORCPT= (xtext), NULL when absent */
};

/*
 * The session does its own I/O on the socket, with an evbuffer each way
 * (no bufferevent): every reply of a turn of the loop goes out in one
 * writev as the turn ends (settle()), EPOLLOUT is asked for only while
 * the socket's buffer is full, and a read is one read(), without the
 * FIONREAD that evbuffer_read() adds.  The read event stays armed when
 * the session stops reading (while a message is committed, while its
 * replies are unread, while closing): it is dropped only if it fires
 * then, so a client that waits for its 250 costs no epoll_ctl.
 */
struct ssession {
	int fd;
	struct evbuffer *in, *out;
	struct event *rd_ev;        /* EV_READ|EV_PERSIST: added unless it fired while not reading */
	struct event *wr_ev;        /* EV_WRITE|EV_PERSIST, timeout idle_timeout: only while replies wait */
	unsigned rd_on:1, wr_on:1;
	struct event *idle_ev;      /* idle_timeout: no complete command (no data in DATA) */
	struct event *life_ev;      /* session_timeout */
	enum sstate state;
	int dead;
	int expired;                /* session_timeout passed while a commit was running */
	int out_paused;             /* not reading: too many replies unsent */
	int is_unix;
	uid_t uid;                  /* SO_PEERCRED, unix only */
	char peer[INET6_ADDRSTRLEN + 8];
	char helo[SMTP_PARAM_MAX + 1];
	int greeted, esmtp;

	/* transaction */
	int have_mail;
	char *sender;
	char *mail_path;            /* the sender as the client gave it */
	int eightbit;
	int smtputf8;
	char ret[5], envid[101];    /* DSN RET= and ENVID= */
	char maildrop[64];          /* X-MAILDROP=: the drop the sendmail client writes if the 250 is lost */
	struct srcpt *rcpts;
	size_t nrcpt;
	struct spool_txn txn;
	int txn_open;
	struct dot_decoder dec;
	unsigned long long size;
	int too_big;
	int hops;                   /* Received: fields the client's header section already has */
	int in_headers;             /* still collecting the header section in hbuf */
	char *hbuf;
	size_t hlen, hcap;
	struct timeval arrival;
	char id[QID_LEN + 1];

	unsigned errors;
	TAILQ_ENTRY(ssession) entry;
};

static TAILQ_HEAD(, ssession) ssessions = TAILQ_HEAD_INITIALIZER(ssessions);
static unsigned nssessions;

static void on_read(evutil_socket_t fd, short what, void *arg);
static void on_write(evutil_socket_t fd, short what, void *arg);
static void process_input(struct ssession *s);

unsigned
smtpd_sessions(void)
{
	return nssessions;
}

static void
reply(struct ssession *s, const char *fmt, ...) PRINTFLIKE(2, 3);

static void
reply(struct ssession *s, const char *fmt, ...)
{
	va_list ap;
	char buf[1024];
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof buf - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof buf - 3)
		n = (int)sizeof buf - 3;
	log_debug("smtpd %s: >>> %.*s", s->peer, n, buf);
	memcpy(buf + n, "\r\n", 2);
	evbuffer_add(s->out, buf, (size_t)n + 2);	/* sent as the turn ends: settle() */
}

static void
txn_reset(struct ssession *s)
{
	size_t i;

	if (s->txn_open) {
		spool_txn_abort(&s->txn);
		s->txn_open = 0;
	}
	for (i = 0; i < s->nrcpt; i++) {
		free(s->rcpts[i].addr);
		free(s->rcpts[i].orcpt);
	}
	free(s->rcpts);
	free(s->sender);
	free(s->mail_path);
	s->rcpts = NULL;
	s->sender = NULL;
	s->mail_path = NULL;
	s->nrcpt = 0;
	s->have_mail = 0;
	s->eightbit = 0;
	s->smtputf8 = 0;
	s->ret[0] = s->envid[0] = s->maildrop[0] = '\0';
	s->size = 0;
	s->too_big = 0;
	s->id[0] = '\0';
	free(s->hbuf);
	s->hbuf = NULL;
	s->hlen = s->hcap = 0;
	s->in_headers = 0;
}

static void
session_free(struct ssession *s)
{
	txn_reset(s);
	event_free(s->idle_ev);
	event_free(s->life_ev);
	event_free(s->rd_ev);
	event_free(s->wr_ev);
	evbuffer_free(s->in);
	evbuffer_free(s->out);
	close(s->fd);
	TAILQ_REMOVE(&ssessions, s, entry);
	nssessions--;
	free(s);
}

static void
read_stop(struct ssession *s)
{
	if (s->rd_on) {
		event_del(s->rd_ev);
		s->rd_on = 0;
	}
}

static void
read_resume(struct ssession *s)
{
	if (!s->rd_on && !s->dead) {
		if (event_add(s->rd_ev, NULL) != 0)
			log_fatalx("smtpd: cannot add a read event");
		s->rd_on = 1;
	}
}

/* Does the session take input now? */
static int
reading(const struct ssession *s)
{
	return (s->state == SS_COMMAND || s->state == SS_DATA) && !s->out_paused && !s->dead;
}

/*
 * The connection is gone (reset, a write refused, replies unread for
 * idle_timeout): no more I/O.  Freed by the caller, or, while its
 * message is with the committer, by on_committed().
 */
static void
session_lost(struct ssession *s)
{
	read_stop(s);
	if (s->wr_on) {
		event_del(s->wr_ev);
		s->wr_on = 0;
	}
	s->dead = 1;
}

/*
 * Send the replies waiting in s->out.  What the socket does not take
 * waits for EPOLLOUT (on_write()); a closing session whose last reply
 * is out is dead.
 */
static void
flush_out(struct ssession *s)
{
	size_t left;
	int n;

	if (s->dead)
		return;
	if (!s->wr_on && evbuffer_get_length(s->out) > 0) {
		/* one writev; what it leaves is more than the socket's buffer takes now */
		n = evbuffer_write(s->out, s->fd);
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			log_debug("smtpd %s: write: %s", s->peer, strerror(errno));
			session_lost(s);
			return;
		}
		if ((left = evbuffer_get_length(s->out)) > 0) {
			/* a reply left unread for idle_timeout drops the connection */
			struct timeval tv = { .tv_sec = D->conf->idle_timeout };

			if (event_add(s->wr_ev, &tv) != 0)
				log_fatalx("smtpd: cannot add a write event");
			s->wr_on = 1;
		}
	}
	if (s->state == SS_CLOSING && evbuffer_get_length(s->out) == 0)
		s->dead = 1;
}

/* The end of a callback's work on s: its replies go out; it is freed if it is over. */
static void
settle(struct ssession *s)
{
	flush_out(s);
	if (s->dead && s->state != SS_COMMIT)
		session_free(s);
}

/* Send what is buffered, then free (from settle()). */
static void
session_close_after_flush(struct ssession *s)
{
	s->state = SS_CLOSING;
	read_stop(s);
}

/* (Re)start the idle deadline: secs without a complete command, or in DATA without input. */
static void
set_timeout(struct ssession *s, unsigned secs)
{
	struct timeval tv = { .tv_sec = secs };

	evtimer_add(s->idle_ev, &tv);
}

static void
on_idle(evutil_socket_t fd, short what, void *arg)
{
	struct ssession *s = arg;

	(void)fd;
	(void)what;
	if (s->state == SS_COMMIT) {
		set_timeout(s, CMD_TIMEOUT);	/* our own delay, not the client's */
		return;
	}
	if (s->state == SS_CLOSING) {
		session_free(s);	/* the last reply was not taken in time */
		return;
	}
	log_info("smtpd %s: no %s for %us (idle_timeout); closing", s->peer,
	    s->state == SS_DATA ? "message data" : "complete command", D->conf->idle_timeout);
	reply(s, "421 4.4.2 %s Error: timeout exceeded", D->conf->hostname);
	session_close_after_flush(s);
	set_timeout(s, CMD_TIMEOUT);	/* to flush the 421; then it is dropped */
	settle(s);
}

static void
on_lifetime(evutil_socket_t fd, short what, void *arg)
{
	struct ssession *s = arg;

	(void)fd;
	(void)what;
	if (s->state == SS_COMMIT) {
		s->expired = 1;		/* closed once the message's reply is sent */
		return;
	}
	if (s->state == SS_CLOSING) {
		session_free(s);
		return;
	}
	log_info("smtpd %s: session open for %us (session_timeout); closing%s", s->peer,
	    D->conf->session_timeout, s->state == SS_DATA ? ", its message unfinished" : "");
	reply(s, "421 4.4.2 %s Error: session lasted too long; reconnect to go on", D->conf->hostname);
	session_close_after_flush(s);
	settle(s);
}

/* Sessions of this client (uid or address): max_connections_per_client. */
static unsigned
sessions_of(const char *peer)
{
	const struct ssession *s;
	unsigned n = 0;

	TAILQ_FOREACH(s, &ssessions, entry)
		if (strcmp(s->peer, peer) == 0)
			n++;
	return n;
}

/*
 * Over max_connections: a 421 straight on the socket (it fits the empty
 * send buffer) and close, without a session.  The log line is gated: a
 * client retrying in a loop writes one line per LOG_GATE_SECS.
 */
static void
refuse_connection(evutil_socket_t fd, const char *peer, int per_client)
{
	static struct log_gate gate;
	const char *key = per_client ? "max_connections_per_client" : "max_connections";
	unsigned limit = per_client ? D->conf->max_connections_per_client : D->conf->max_connections;
	char buf[512];
	unsigned long n;
	int len;

	len = snprintf(buf, sizeof buf, "421 4.7.0 %s Error: too many connections%s%s (%s %u); "
	    "try again later\r\n", D->conf->hostname, per_client ? " from " : "",
	    per_client ? peer : "", key, limit);
	if (len > 0 && (size_t)len < sizeof buf)
		(void)send(fd, buf, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL);
	evutil_closesocket(fd);
	if (log_gate_pass(&gate, &n))
		log_warnx("smtpd: connection from %s refused: too many connections (%s %u); "
		    "%lu refused since the last such line", peer, key, limit, n);
}

void
smtpd_accept(evutil_socket_t fd, const struct sockaddr *sa, socklen_t salen,
    int is_unix, int allowed)
{
	struct ssession *s;
	char peer[sizeof s->peer];
	uid_t uid = (uid_t)-1;

	(void)salen;
	if (D->shutting_down) {
		close(fd);
		return;
	}
	if (is_unix) {
		struct ucred cred;
		socklen_t len = sizeof cred;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
			uid = cred.uid;
		snprintf(peer, sizeof peer, "uid %ld", uid == (uid_t)-1 ? -1L : (long)uid);
	} else if (sa->sa_family == AF_INET) {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, peer, sizeof peer);
	} else if (sa->sa_family == AF_INET6) {
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, peer, sizeof peer);
	} else
		strlcpy_mr(peer, "unknown", sizeof peer);
	/* sessions still committing count: they hold a descriptor and a file */
	if (nssessions >= D->conf->max_connections) {
		refuse_connection(fd, peer, 0);
		return;
	}
	if (sessions_of(peer) >= D->conf->max_connections_per_client) {
		refuse_connection(fd, peer, 1);
		return;
	}

	s = xcalloc(1, sizeof *s);
	s->is_unix = is_unix;
	s->uid = uid;
	memcpy(s->peer, peer, sizeof s->peer);
	evutil_make_socket_nonblocking(fd);
	s->fd = fd;
	s->in = evbuffer_new();
	s->out = evbuffer_new();
	s->rd_ev = event_new(D->base, fd, EV_READ | EV_PERSIST, on_read, s);
	s->wr_ev = event_new(D->base, fd, EV_WRITE | EV_PERSIST, on_write, s);
	s->idle_ev = evtimer_new(D->base, on_idle, s);
	s->life_ev = evtimer_new(D->base, on_lifetime, s);
	if (s->in == NULL || s->out == NULL || s->rd_ev == NULL || s->wr_ev == NULL ||
	    s->idle_ev == NULL || s->life_ev == NULL)
		log_fatalx("smtpd: cannot create the events of a session");
	TAILQ_INSERT_TAIL(&ssessions, s, entry);
	nssessions++;
	set_timeout(s, CMD_TIMEOUT);
	{
		struct timeval life = { .tv_sec = D->conf->session_timeout };
		evtimer_add(s->life_ev, &life);
	}

	if (!allowed) {
		log_warnx("smtpd: connection from %s refused: not in allow", s->peer);
		reply(s, "554 5.7.1 %s: access denied", D->conf->hostname);
		session_close_after_flush(s);
		settle(s);
		return;
	}
	read_resume(s);
	log_debug("smtpd: connection from %s", s->peer);
	reply(s, "220 %s ESMTP mailrelay", D->conf->hostname);
	/*
	 * A client that sends from its connect (mailrelay-sendmail does, its
	 * EHLO, MAIL, RCPT and DATA in one write) has them here by now: read
	 * at once, and the greeting and their replies go out in one write, so
	 * that it wakes once for them instead of twice.  With nothing to read
	 * yet, the greeting goes out alone, as before.
	 */
	on_read(fd, EV_READ, s);
}

/* ------------------------------------------------------------------ */

/* The envelope sender as stored: local senders qualified or rewritten (SPEC "Addresses"). */
static char *
qualify(const char *path)
{
	struct rewrite_policy pol = conf_rewrite_policy(D->conf);

	return rewrite_sender(&pol, path);
}

static const char *
via_name(const struct ssession *s)
{
	if (!s->is_unix)
		return "smtp";
	return strcmp(s->helo, SENDMAIL_HELO) == 0 ? "sendmail" : "unix";
}

/*
 * A local user other than root who gave a sender that is not their own
 * (sendmail -f, or MAIL FROM on the socket): say who it really was.
 */
static void
note_foreign_sender(const char *id, uid_t uid, const char *path)
{
	struct rewrite_policy pol = conf_rewrite_policy(D->conf);
	struct passwd *pw;
	size_t ll;

	if (uid == 0 || uid == (uid_t)-1 || uid == getuid() || path == NULL)
		return;
	if ((pw = getpwuid(uid)) != NULL) {
		ll = strlen(pw->pw_name);
		if (rewrite_is_local(&pol, path) && strncmp(path, pw->pw_name, ll) == 0 &&
		    (path[ll] == '\0' || path[ll] == '@'))
			return;
	}
	log_qid(LOG_INFO, id, NULL, "sender <%s> set by uid=%lu (%s)", path, (unsigned long)uid,
	    pw ? pw->pw_name : "no user name");
}

/* Did the spool refuse the message for want of space (RFC 3463 X.3.1)? */
static int
spool_full(const struct commit_req *req)
{
	if (req->txn.failed && (req->txn.err == ENOSPC || req->txn.err == EDQUOT))
		return 1;
	return strstr(req->err, strerror(ENOSPC)) != NULL || strstr(req->err, strerror(EDQUOT)) != NULL;
}

static void
on_committed(struct commit_req *req, void *arg)
{
	struct ssession *s = arg;

	s->txn_open = 0;	/* the committer owns (and has finished) the transaction */
	if (req->rc == 0) {
		/* enqueue.c logged it queued, and queues it once this returns */
		if (s->is_unix)
			note_foreign_sender(req->env.id, s->uid, s->mail_path);
		D->stats.accepted++;
		if (!s->dead)
			reply(s, "250 2.0.0 Ok: queued as %s", req->env.id);
	} else {
		log_qid(LOG_ERR, req->env.id, NULL, "cannot queue message: %s", req->err);
		if (!s->dead && spool_full(req))
			reply(s, "452 4.3.1 Error: insufficient system storage: the spool file system is full; "
			    "try again later");
		else if (!s->dead)
			reply(s, "451 4.3.0 Error: cannot write the queue file; try again later");
	}
	txn_reset(s);
	if (s->dead) {
		session_free(s);
		return;
	}
	if (D->shutting_down || s->expired) {
		if (s->expired)
			log_info("smtpd %s: session open for %us (session_timeout); closing", s->peer,
			    D->conf->session_timeout);
		reply(s, s->expired ? "421 4.4.2 %s Error: session lasted too long; reconnect to go on" :
		    "421 4.3.2 %s shutting down", D->conf->hostname);
		session_close_after_flush(s);
		settle(s);
		return;
	}
	s->state = SS_COMMAND;
	set_timeout(s, CMD_TIMEOUT);
	read_resume(s);		/* a no-op unless input came while committing */
	process_input(s);	/* commands pipelined after the dot */
	settle(s);
}

/* Does the block start with a header field ("Name:")? */
static int
looks_like_header(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n && p[i] != ':'; i++)
		if ((unsigned char)p[i] <= ' ' || (unsigned char)p[i] >= 0x7f)
			return 0;
	return i > 0 && i < n;
}

/*
 * The header section is complete (hbuf[0..end), the rest of hbuf is the
 * empty line and the body so far): remove Bcc, add what locally
 * submitted mail must carry and lacks (SPEC "Message hygiene"), store.
 */
static void
headers_finish(struct ssession *s, size_t end)
{
	struct header_info hi = { 0 };
	char add[1024], date[64];
	size_t addlen = 0, hl = end;
	time_t now = time(NULL);
	struct tm tm;
	int is_header = looks_like_header(s->hbuf, end);

	if (is_header) {
		struct rewrite_policy pol = conf_rewrite_policy(D->conf);
		unsigned nrw = 0;
		size_t nl;
		char *nh;

		s->hops = (int)received_count(s->hbuf, end);
		hl = header_scrub(s->hbuf, end, &hi);
		/* local addresses in From/To/Cc/...: qualified or rewritten; the rest byte for byte */
		if ((nh = rewrite_header_block(&pol, s->hbuf, hl, &nl, &nrw)) != NULL) {
			spool_txn_write(&s->txn, nh, nl);
			free(nh);
			log_debug("smtpd %s: %u address field(s) rewritten", s->peer, nrw);
			hl = 0;	/* written */
		}
	}
	localtime_r(&now, &tm);
	strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S %z", &tm);
	if (!hi.has_date)
		addlen += (size_t)snprintf(add + addlen, sizeof add - addlen, "Date: %s\r\n", date);
	if (!hi.has_msgid)
		addlen += (size_t)snprintf(add + addlen, sizeof add - addlen, "Message-ID: <%s@%s>\r\n",
		    s->id, D->conf->hostname);
	if (!hi.has_from && addlen < sizeof add)
		addlen += (size_t)snprintf(add + addlen, sizeof add - addlen, "From: <%s>\r\n",
		    s->sender[0] ? s->sender : "MAILER-DAEMON");
	if (addlen >= sizeof add)
		addlen = 0;	/* a sender near the limit: leave the message as it is */
	if (is_header) {
		spool_txn_write(&s->txn, s->hbuf, hl);
		spool_txn_write(&s->txn, add, addlen);
		spool_txn_write(&s->txn, s->hbuf + end, s->hlen - end);
	} else {
		/* no header at all: ours, the empty line, then everything as body */
		spool_txn_write(&s->txn, add, addlen);
		if (!(s->hlen >= 2 && s->hbuf[0] == '\r' && s->hbuf[1] == '\n'))
			spool_txn_write(&s->txn, "\r\n", 2);
		spool_txn_write(&s->txn, s->hbuf, s->hlen);
	}
	if (hi.bcc_removed)
		log_debug("smtpd %s: %zu Bcc field(s) removed", s->peer, hi.bcc_removed);
	s->in_headers = 0;
	free(s->hbuf);
	s->hbuf = NULL;
	s->hlen = s->hcap = 0;
}

/* Decoded data: collected until the header section is complete, then straight to the spool. */
static void
store(struct ssession *s, const char *p, size_t n)
{
	size_t from, i;

	if (!s->in_headers) {
		spool_txn_write(&s->txn, p, n);
		return;
	}
	if (s->hlen + n > s->hcap) {
		s->hcap = (s->hlen + n) * 2;
		s->hbuf = xreallocarray(s->hbuf, s->hcap, 1);
	}
	memcpy(s->hbuf + s->hlen, p, n);
	from = s->hlen >= 3 ? s->hlen - 3 : 0;
	s->hlen += n;
	if (s->hlen >= 2 && s->hbuf[0] == '\r' && s->hbuf[1] == '\n') {
		headers_finish(s, 0);	/* starts with the empty line: no header */
		return;
	}
	for (i = from; i + 3 < s->hlen; i++) {
		if (memcmp(s->hbuf + i, "\r\n\r\n", 4) == 0) {
			headers_finish(s, i + 2);
			return;
		}
	}
	if (s->hlen > HEADER_MAX) {
		/* not a header section we can work on: store it as it came */
		spool_txn_write(&s->txn, s->hbuf, s->hlen);
		s->in_headers = 0;
		free(s->hbuf);
		s->hbuf = NULL;
		s->hlen = s->hcap = 0;
	}
}

char *
smtpd_linefix(const char *content, size_t len, size_t *outlen, void *arg)
{
	struct linefix_report rep;
	char *out;

	if (!linefix_needed(content, len))
		return NULL;
	out = linefix_message(content, len, outlen, &rep);
	if (out != NULL)
		log_qid(LOG_INFO, (const char *)arg, NULL,
		    "long lines repaired: %zu header line(s) folded, %zu part(s) re-encoded quoted-printable, "
		    "%zu re-wrapped, %zu line(s) broken, %zu bare CR/LF",
		    rep.header_lines_folded, rep.parts_qp_encoded, rep.parts_rewrapped, rep.lines_wrapped,
		    rep.bare_eol_fixed);
	return out;
}

static void
data_finished(struct ssession *s)
{
	struct commit_req *req;
	char who[96];
	size_t i;

	if (s->too_big) {
		log_warnx("smtpd %s: message from <%s> refused: larger than max_message_size (%llu)",
		    s->peer, s->sender, D->conf->max_message_size);
		reply(s, "552 5.3.4 Message size exceeds the limit of %llu bytes", D->conf->max_message_size);
		txn_reset(s);
		s->state = SS_COMMAND;
		set_timeout(s, CMD_TIMEOUT);
		return;
	}
	/*
	 * A message that has passed MAX_HOPS relays is in a loop (RFC 5321
	 * 6.3): refused where the client still hears it, as Postfix's
	 * hopcount_limit does, rather than relayed once more.
	 */
	if (s->hops >= MAX_HOPS) {
		log_warnx("smtpd %s: message from <%s> refused: %d Received: fields, a mail loop",
		    s->peer, s->sender, s->hops);
		reply(s, "554 5.4.6 Error: too many hops (%d Received: fields); not queued", s->hops);
		txn_reset(s);
		s->state = SS_COMMAND;
		set_timeout(s, CMD_TIMEOUT);
		return;
	}
	/*
	 * A NUL is not text (RFC 5321 2.3.8, 4.1.1.4): relays treat it
	 * differently (dropped, cut at, refused), so what the smarthost
	 * delivered would not be what was submitted.  Refused here, where
	 * the client still hears it, rather than bounced later.
	 */
	if (s->dec.nul) {
		log_warnx("smtpd %s: message from <%s> refused: it contains a NUL byte", s->peer, s->sender);
		reply(s, "554 5.6.0 Error: message content contains a NUL byte, which SMTP does not allow; "
		    "not queued");
		txn_reset(s);
		s->state = SS_COMMAND;
		set_timeout(s, CMD_TIMEOUT);
		return;
	}
	if (s->dec.dot_lines > 0)
		log_warnx("smtpd %s: message from <%s>: %zu line(s) \".\" with a bare CR or LF kept as text: "
		    "only <CR><LF>.<CR><LF> ends DATA", s->peer, s->sender, s->dec.dot_lines);
	if (s->dec.bare_lf + s->dec.bare_cr > 0)
		log_debug("smtpd %s: %zu bare LF and %zu bare CR written as CRLF", s->peer, s->dec.bare_lf,
		    s->dec.bare_cr);
	if (s->in_headers)
		headers_finish(s, s->hlen);	/* no empty line: it was all header, or no header at all */
	/*
	 * No line over 998 octets may leave (RFC 5322 2.1.1; relays refuse
	 * them since the SMTP smuggling fixes): repair the stored copy now,
	 * before it is acknowledged.  Rare, so done here, on the file just
	 * written, which is still in the page cache.
	 */
	if (s->dec.overlong)
		spool_txn_filter(&s->txn, smtpd_linefix, s->id);
	req = xcalloc(1, sizeof *req);
	req->txn = s->txn;
	memcpy(req->env.id, s->id, sizeof req->env.id);
	req->env.arrival = s->arrival.tv_sec;
	req->env.arrival_usec = s->arrival.tv_usec;
	req->env.sender = xstrdup(s->sender);
	req->env.uid = s->uid;
	strlcpy_mr(req->env.via, via_name(s), sizeof req->env.via);
	req->env.size = s->txn.size;
	/*
	 * The listener sees every byte: 8-bit content is recorded as such
	 * whatever BODY= said (or did not say), so that delivery declares it
	 * (BODY=8BITMIME) or converts it, never sends it as 7-bit.
	 */
	req->env.eightbit = s->eightbit || s->dec.eightbit;
	req->env.smtputf8 = s->smtputf8;
	strlcpy_mr(req->env.ret, s->ret, sizeof req->env.ret);
	req->env.envid = s->envid[0] ? xstrdup(s->envid) : NULL;
	/* the drop a lost 250 would make the client write: known at the next start (pickup.c) */
	req->env.drop = s->maildrop[0] ? xstrdup(s->maildrop) : NULL;
	for (i = 0; i < s->nrcpt; i++) {
		size_t first = req->env.nrcpt, j;
		local_add_rcpt(&req->env, s->rcpts[i].addr);
		/* the DSN request of a submitted recipient holds for every address it expanded to */
		for (j = first; j < req->env.nrcpt; j++) {
			strlcpy_mr(req->env.rcpts[j].notify, s->rcpts[i].notify, sizeof req->env.rcpts[j].notify);
			if (s->rcpts[i].orcpt)
				req->env.rcpts[j].orcpt = xstrdup(s->rcpts[i].orcpt);
		}
	}
	if (s->is_unix)
		snprintf(who, sizeof who, "uid=%ld", s->uid == (uid_t)-1 ? -1L : (long)s->uid);
	else
		snprintf(who, sizeof who, "client=%s", s->peer);
	s->state = SS_COMMIT;	/* not reading until on_committed(): reading() */
	enqueue_commit(req, who, ENQ_QUEUE, on_committed, s);
}

/* Feed buffered input through the dot decoder into the spool. */
static void
process_data(struct ssession *s)
{
	struct evbuffer *in = s->in;
	static char out[DATA_SLICE + 8];

	while (s->state == SS_DATA && evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v;
		size_t outlen, used, take;

		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		take = v.iov_len < DATA_SLICE ? v.iov_len : DATA_SLICE;
		used = dot_decode(&s->dec, v.iov_base, take, out, &outlen);
		if (!s->too_big) {
			s->size += outlen;
			if (D->conf->max_message_size > 0 && s->size > D->conf->max_message_size)
				s->too_big = 1;	/* keep reading to the dot, store nothing more */
			else
				store(s, out, outlen);
		}
		evbuffer_drain(in, used);
		if (s->dec.done)
			data_finished(s);
	}
}

static void
cmd_mail(struct ssession *s, const struct smtp_cmd *c)
{
	const char *why;

	if (!s->greeted) {
		reply(s, "503 5.5.1 Error: send HELO/EHLO first");
		return;
	}
	if (s->have_mail) {
		reply(s, "503 5.5.1 Error: nested MAIL command");
		return;
	}
	if (c->size >= 0 && D->conf->max_message_size > 0 &&
	    (unsigned long long)c->size > D->conf->max_message_size) {
		reply(s, "552 5.3.4 Message size exceeds the limit of %llu bytes", D->conf->max_message_size);
		return;
	}
	if (c->path[0] && D->conf->strict_addresses && addr_spec_check(c->path, ADDR_LOCAL_OK, &why) == -1) {
		reply(s, "553 5.1.7 Error: bad sender address syntax: %s (strict_addresses)", why);
		return;
	}
	if (c->maildrop[0] && !s->is_unix) {
		/* the sendmail client's own, on the local socket only */
		reply(s, "555 5.5.4 Unsupported parameter X-MAILDROP");
		return;
	}
	s->sender = c->path[0] ? qualify(c->path) : xstrdup("");
	free(s->mail_path);
	s->mail_path = xstrdup(c->path);
	s->eightbit = c->body == SMTP_BODY_8BITMIME;
	s->smtputf8 = c->smtputf8;
	strlcpy_mr(s->ret, c->ret, sizeof s->ret);
	strlcpy_mr(s->envid, c->envid, sizeof s->envid);
	strlcpy_mr(s->maildrop, c->maildrop, sizeof s->maildrop);
	s->have_mail = 1;
	reply(s, "250 2.1.0 Ok");
}

static void
cmd_rcpt(struct ssession *s, const struct smtp_cmd *c)
{
	const char *why;

	if (!s->have_mail) {
		reply(s, "503 5.5.1 Error: need MAIL command");
		return;
	}
	if (c->path[0] == '\0') {
		reply(s, "501 5.1.3 Error: empty recipient address");
		return;
	}
	if (D->conf->strict_addresses && addr_spec_check(c->path, ADDR_LOCAL_OK, &why) == -1) {
		reply(s, "553 5.1.3 Error: bad recipient address syntax: %s (strict_addresses)", why);
		return;
	}
	if (s->nrcpt >= MAX_RCPTS) {
		reply(s, "452 4.5.3 Error: too many recipients");
		return;
	}
	s->rcpts = xreallocarray(s->rcpts, s->nrcpt + 1, sizeof *s->rcpts);
	s->rcpts[s->nrcpt].addr = xstrdup(c->path);
	strlcpy_mr(s->rcpts[s->nrcpt].notify, c->notify, sizeof s->rcpts[s->nrcpt].notify);
	s->rcpts[s->nrcpt].orcpt = c->orcpt[0] ? xstrdup(c->orcpt) : NULL;
	s->nrcpt++;
	reply(s, "250 2.1.5 Ok");
}

/*
 * The Received: field, first in the stored message (RFC 5321 4.4): who
 * submitted (the uid and its login on the unix socket, the address and
 * HELO on TCP), this host, the queue id, the one recipient, the time.
 * Returns its length: it counts towards max_message_size as the rest of
 * the stored message does.
 */
static size_t
put_received(struct ssession *s)
{
	struct received_from from = { .local = s->is_unix, .uid = s->uid, .helo = s->helo,
	    .addr = s->peer, .with = s->esmtp ? "ESMTP" : "SMTP" };
	struct passwd *pw = NULL;
	char *f;
	size_t n;

	if (s->is_unix && s->uid != (uid_t)-1 && (pw = getpwuid(s->uid)) != NULL)
		from.login = pw->pw_name;
	f = received_field(&from, D->conf->hostname, PACKAGE_VERSION, s->id,
	    s->nrcpt == 1 ? s->rcpts[0].addr : NULL, s->arrival.tv_sec);
	n = strlen(f);
	spool_txn_write(&s->txn, f, n);
	free(f);
	return n;
}

static void
cmd_data(struct ssession *s)
{
	if (!s->have_mail) {
		reply(s, "503 5.5.1 Error: need MAIL command");
		return;
	}
	if (s->nrcpt == 0) {
		reply(s, "503 5.5.1 Error: need RCPT command");
		return;
	}
	/* no file yet (made when the content overflows its buffer, or at the commit) */
	if (enqueue_begin(s->id, &s->arrival, &s->txn) == -1) {
		log_err("smtpd: cannot begin a queue file");
		reply(s, "451 4.3.0 Error: cannot create a queue file; try again later");
		return;
	}
	s->txn_open = 1;
	s->too_big = 0;
	s->hops = 0;
	s->size = put_received(s);
	/* RFC 5322 line limit, tracked for a later fold/encode step; the data is kept as is. */
	dot_decoder_init(&s->dec, 998);
	s->in_headers = 1;
	s->hlen = 0;
	s->state = SS_DATA;
	set_timeout(s, DATA_TIMEOUT);
	reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

static void
cmd_ehlo(struct ssession *s, const struct smtp_cmd *c, int esmtp)
{
	txn_reset(s);
	strlcpy_mr(s->helo, c->arg, sizeof s->helo);
	s->greeted = 1;
	s->esmtp = esmtp;
	if (!esmtp) {
		reply(s, "250 %s", D->conf->hostname);
		return;
	}
	reply(s, "250-%s", D->conf->hostname);
	reply(s, "250-PIPELINING");
	if (D->conf->max_message_size > 0)
		reply(s, "250-SIZE %llu", D->conf->max_message_size);
	else
		reply(s, "250-SIZE");
	reply(s, "250-8BITMIME");
	reply(s, "250-SMTPUTF8");
	reply(s, "250-DSN");
	reply(s, "250 ENHANCEDSTATUSCODES");
}

static void
process_command(struct ssession *s, const char *line, size_t len)
{
	struct smtp_cmd c;
	char err[200];

	log_debug("smtpd %s: <<< %.*s", s->peer, (int)(len > 200 ? 200 : len), line);
	set_timeout(s, CMD_TIMEOUT);	/* a complete command: the idle deadline starts again */
	if (smtp_cmd_parse(line, len, &c, err, sizeof err) == -1) {
		s->errors++;
		reply(s, "501 5.5.4 %s", err);
		return;
	}
	switch (c.verb) {
	case SMTP_CMD_EHLO:
		cmd_ehlo(s, &c, 1);
		break;
	case SMTP_CMD_HELO:
		cmd_ehlo(s, &c, 0);
		break;
	case SMTP_CMD_MAIL:
		cmd_mail(s, &c);
		break;
	case SMTP_CMD_RCPT:
		cmd_rcpt(s, &c);
		break;
	case SMTP_CMD_DATA:
		cmd_data(s);
		break;
	case SMTP_CMD_RSET:
		txn_reset(s);
		reply(s, "250 2.0.0 Ok");
		break;
	case SMTP_CMD_NOOP:
		reply(s, "250 2.0.0 Ok");
		break;
	case SMTP_CMD_QUIT:
		reply(s, "221 2.0.0 Bye");
		session_close_after_flush(s);
		break;
	case SMTP_CMD_VRFY:
		reply(s, "252 2.0.0 Cannot VRFY; send some mail and we will try our best");
		break;
	case SMTP_CMD_HELP:
		reply(s, "214 2.0.0 See RFC 5321");
		break;
	case SMTP_CMD_BDAT:
	case SMTP_CMD_STARTTLS:
	case SMTP_CMD_AUTH:
	case SMTP_CMD_EXPN:
		reply(s, "502 5.5.1 Error: command not implemented");
		break;
	case SMTP_CMD_UNKNOWN:
	default:
		s->errors++;
		reply(s, "500 5.5.2 Error: command not recognized");
		break;
	}
	if (s->errors >= MAX_ERRORS && s->state != SS_CLOSING) {
		reply(s, "421 4.7.0 %s Error: too many errors", D->conf->hostname);
		session_close_after_flush(s);
	}
}

static void
process_input(struct ssession *s)
{
	struct evbuffer *in = s->in;
	char *line;
	size_t len;

	while (!s->dead) {
		if (s->state == SS_DATA) {
			process_data(s);
			if (s->state == SS_DATA)
				return;	/* need more input */
			continue;
		}
		if (s->state != SS_COMMAND)
			return;
		if (evbuffer_get_length(s->out) > OUT_HIGH) {
			flush_out(s);
			if (s->dead || evbuffer_get_length(s->out) > OUT_HIGH) {
				/*
				 * The client is not reading its replies: read
				 * no more commands (the kernel's buffers then
				 * stop the client) until on_write() sees them
				 * drain below OUT_LOW.
				 */
				s->out_paused = 1;
				return;
			}
		}
		line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
		if (line == NULL) {
			if (evbuffer_get_length(in) > CMD_LINE_MAX) {
				reply(s, "500 5.5.2 Error: line too long");
				session_close_after_flush(s);
			}
			return;
		}
		if (len > CMD_LINE_MAX) {
			free(line);
			s->errors++;
			reply(s, "500 5.5.2 Error: line too long");
			continue;
		}
		process_command(s, line, len);
		free(line);
	}
}

/*
 * The client closed its side.  One that half-closed (sendmail -bs at the
 * end of its input does) is still owed the replies not sent yet: they go
 * out, then the session closes.
 */
static void
on_eof(struct ssession *s)
{
	read_stop(s);
	if (s->state == SS_COMMAND && evbuffer_get_length(s->out) > 0) {
		session_close_after_flush(s);
		return;
	}
	if (s->state == SS_DATA)
		log_info("smtpd %s: connection lost during DATA; nothing queued", s->peer);
	session_lost(s);
}

static void
on_read(evutil_socket_t fd, short what, void *arg)
{
	struct ssession *s = arg;
	struct evbuffer_iovec v;
	ssize_t n;

	(void)what;
	if (!reading(s)) {
		read_stop(s);	/* on again with read_resume() */
		return;
	}
	if (evbuffer_reserve_space(s->in, READ_SIZE, &v, 1) != 1)
		log_fatalx("smtpd: out of memory for input");
	n = read(fd, v.iov_base, v.iov_len);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
			settle(s);	/* nothing yet: the greeting, when called from smtpd_accept() */
			return;
		}
		log_debug("smtpd %s: read: %s", s->peer, strerror(errno));
		session_lost(s);
		settle(s);
		return;
	}
	if (n == 0) {
		on_eof(s);
		settle(s);
		return;
	}
	v.iov_len = (size_t)n;
	evbuffer_commit_space(s->in, &v, 1);
	if (s->state == SS_DATA)
		set_timeout(s, DATA_TIMEOUT);	/* message data arriving: not idle */
	process_input(s);
	settle(s);
}

static void
on_write(evutil_socket_t fd, short what, void *arg)
{
	struct ssession *s = arg;

	(void)fd;
	if (what & EV_TIMEOUT) {
		log_info("smtpd %s: replies not read for %us (idle_timeout); connection dropped", s->peer,
		    D->conf->idle_timeout);
		session_lost(s);
		settle(s);
		return;
	}
	s->wr_on = 0;
	flush_out(s);		/* re-adds (a new deadline) if the socket is still full */
	if (!s->wr_on)
		event_del(s->wr_ev);
	if (!s->dead && s->out_paused && evbuffer_get_length(s->out) <= OUT_LOW) {
		s->out_paused = 0;
		if (s->state == SS_COMMAND) {
			read_resume(s);
			process_input(s);	/* the commands read before the pause */
		}
	}
	settle(s);
}

void
smtpd_shutdown(int force)
{
	struct ssession *s, *next;

	for (s = TAILQ_FIRST(&ssessions); s != NULL; s = next) {
		next = TAILQ_NEXT(s, entry);
		if (force) {
			session_free(s);
			continue;
		}
		if (s->state == SS_COMMIT)
			continue;	/* replies and closes from on_committed() */
		if (s->state == SS_CLOSING)
			continue;
		/* A message in DATA was never acknowledged: the client keeps it and retries. */
		reply(s, "421 4.3.2 %s shutting down", D->conf->hostname);
		session_close_after_flush(s);
		settle(s);
	}
}

/*
 * oauth2: see oauth2.h.
 *
 * One struct tok per smarthost name.  Waiters queue on it while a request
 * is in flight; a waiter answered at once (a cached token, a smarthost
 * that needs authorisation) still gets its callback from a zero timer, so
 * that no callback ever runs inside oauth2_get().  Callbacks run from a
 * list the tok no longer holds (`firing`), so a callback that asks again
 * (after a rejection) queues for the next answer, not this one.
 *
 * Renewal in the background: each tok that holds a token has one timer
 * (`renew`), armed for 80% of the token's lifetime, that asks the
 * endpoint for the next token while no session needs one, so that a
 * session finds a fresh token and never waits on the endpoint.  The timer
 * looks the smarthost up by name in the daemon's current configuration
 * (D->rc) when it fires: a smarthost removed by a reload, or left without
 * an oauth2 section, is not renewed, and a smarthost that never had a
 * token (no session asked, no cache) has no timer.  A renewal that fails
 * (no answer, 5xx) is tried again after a back-off (renew_step(): 2% of
 * the lifetime, at least 1 s, doubling, at most 5 min) only while the
 * token has not expired; after that the timer stops, and the next session
 * asks (the on-demand path): an endpoint that keeps failing gets a
 * handful of requests per token lifetime (4 for a 1-hour token), never a
 * storm, and none while the daemon is idle.  While it backs off, sessions
 * keep using the token while it is still good for RENEW_MARGIN
 * (tok_usable()) instead of each asking again.  A refusal a person must
 * fix stops the timer.
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "explain.h"
#include "httpc.h"
#include "log.h"
#include "oauth2.h"
#include "oauth2_state.h"
#include "runconf.h"
#include "xmalloc.h"

/*
 * A token is not handed to a session within this time of its expiry (it
 * could expire during the AUTH exchange): 10% of its lifetime, at most
 * 30 s.  In milliseconds.
 */
#define RENEW_MARGIN(lifetime_s) ((lifetime_s) * 100LL < 30000 ? (lifetime_s) * 100LL : 30000)
#define RENEW_STEP_MAX_MS (5 * 60 * 1000LL)
#define RENEW_MIN_MS 1000LL	/* the least time from one token to the renewal asking for the next */

struct oauth2_wait {
	struct tok *t;
	oauth2_cb cb;
	void *arg;
	unsigned long not_gen;
	struct event *now;          /* the zero timer of an answer known at once */
	char *err;                  /* that answer when it is a failure of its own */
	struct oauth2_wait *next;
	int firing;                 /* on the firing list */
};

/* What identifies the files a person fixes: a change means "try again". */
struct filesig {
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime;
};

struct tok {
	char *name;
	char *token;                /* NULL: none usable */
	unsigned long gen;          /* of token; grows with each new one */
	time_t obtained, expires;
	char *scope, *audience;
	char key[65];               /* oauth2_cache_key() of the section token is for */
	int cache_tried;

	struct event *renew;        /* the background renewal (see the top of the file) */
	long long renew_at;         /* wall-clock ms it is armed for; 0: not armed */
	unsigned renew_failures;    /* renewals failed in a row since the last token */

	struct httpc_req *req;      /* in flight */
	char *form;                 /* its body, wiped when it ends */
	char *used_refresh;         /* the refresh token it sends */
	char *refresh_file;         /* where a rotated one goes */
	enum oauth2_grant grant;
	unsigned long waiting_gen;  /* not_gen of the request's waiters */

	char req_key[65];           /* the key the request was made for */
	unsigned long req_creds;    /* serial of the credentials the request used */
	struct filesig req_sig[4];  /* and the files as they were */

	int person;                 /* needs authorisation */
	char why[900];
	unsigned long fail_creds;   /* as req_creds, when it was refused */
	struct filesig fail_sig[4];

	struct oauth2_wait *waiters, *firing;
	struct tok *next;
};

static struct {
	struct event_base *base;
	char *spool_dir;
	struct tok *toks;
	unsigned long gen;
} O;

static void on_renew(evutil_socket_t fd, short what, void *arg);
static void arm_cached(void);

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Arm t's renewal timer for wall-clock ms `at` (0: disarm). */
static void
renew_arm(struct tok *t, long long at)
{
	long long d;

	if (t->renew == NULL && at != 0 && O.base != NULL)
		t->renew = evtimer_new(O.base, on_renew, t);
	if (t->renew == NULL)
		return;
	t->renew_at = at;
	if (at == 0) {
		evtimer_del(t->renew);
		return;
	}
	d = at - now_ms();
	if (d < 0)
		d = 0;
	struct timeval tv = { (time_t)(d / 1000), (suseconds_t)(d % 1000) * 1000 };
	evtimer_add(t->renew, &tv);
}

static struct tok *
tok_get(const char *name)
{
	struct tok *t;

	for (t = O.toks; t; t = t->next)
		if (strcmp(t->name, name) == 0)
			return t;
	t = xcalloc(1, sizeof *t);
	t->name = xstrdup(name);
	t->next = O.toks;
	O.toks = t;
	return t;
}

static void
tok_drop_token(struct tok *t)
{
	renew_arm(t, 0);
	oauth2_wipe_free(t->token);
	t->token = NULL;
	free(t->scope);
	free(t->audience);
	t->scope = t->audience = NULL;
	t->obtained = t->expires = 0;
}

/*
 * The token t uses from now on, from the endpoint or the spool's cache:
 * the strings are taken over (the caller's pointers are set to NULL).
 * obtained_ms: when it was obtained (wall clock, ms); its renewal is
 * armed for 80% of its lifetime from then.
 */
static void
tok_adopt(struct tok *t, char **token, char **scope, char **audience, long long obtained_ms,
    time_t expires)
{
	time_t obtained = (time_t)(obtained_ms / 1000);

	tok_drop_token(t);
	t->token = *token;
	*token = NULL;
	t->scope = *scope;
	*scope = NULL;
	t->audience = *audience;
	*audience = NULL;
	t->obtained = obtained;
	t->expires = expires;
	t->gen = ++O.gen;
	t->renew_failures = 0;
	/* never sooner than RENEW_MIN_MS: an endpoint's 1-second tokens make no busy loop */
	long long after = (long long)(expires - obtained) * 800;
	renew_arm(t, obtained_ms + (after > RENEW_MIN_MS ? after : RENEW_MIN_MS));
}

/* The wait before renewal attempt failures+1 of a token of the given lifetime, in ms. */
static long long
renew_step(time_t lifetime, unsigned failures)
{
	long long step = (long long)lifetime * 20;

	if (step < 1000)
		step = 1000;
	while (failures-- > 0 && step < RENEW_STEP_MAX_MS)
		step *= 2;
	return step < RENEW_STEP_MAX_MS ? step : RENEW_STEP_MAX_MS;
}

/* May t's token be handed to a session now (more than RENEW_MARGIN before its expiry)? */
static int
tok_usable(const struct tok *t)
{
	return t->token != NULL &&
	    now_ms() < (long long)t->expires * 1000 - RENEW_MARGIN(t->expires - t->obtained);
}

/*
 * A request failed without a person's matter (no answer, 5xx, garbage):
 * the renewal is tried again after the back-off while the token in hand
 * has not expired (meanwhile sessions use it while tok_usable()); an
 * expired one is dropped, and the next session asks.
 */
static void
renew_failed(struct tok *t)
{
	long long at;

	if (t->token == NULL)
		return;
	if (now_ms() >= (long long)t->expires * 1000) {
		tok_drop_token(t);
		return;
	}
	at = now_ms() + renew_step(t->expires - t->obtained, t->renew_failures++);
	renew_arm(t, at < (long long)t->expires * 1000 ? at : 0);
}

static void
sig_of(const char *path, struct filesig *s)
{
	struct stat st;

	memset(s, 0, sizeof *s);
	if (path != NULL && stat(path, &st) == 0) {
		s->ino = st.st_ino;
		s->size = st.st_size;
		s->mtime = st.st_mtim;
		s->ctime = st.st_ctim;
	}
}

static void
sigs_of(const struct smarthost_conf *sh, struct filesig s[4])
{
	sig_of(sh->oauth2->refresh_token_file, &s[0]);
	sig_of(sh->oauth2->client_secret_file, &s[1]);
	sig_of(sh->oauth2->client_certificate, &s[2]);
	sig_of(sh->oauth2->client_key, &s[3]);
}

int
oauth2_init(struct event_base *base, const char *spool_dir)
{
	O.base = base;
	free(O.spool_dir);
	O.spool_dir = xstrdup(spool_dir);
	if (httpc_init(base) == -1)
		return -1;
	arm_cached();
	return 0;
}

static void wait_free(struct oauth2_wait *w);

void
oauth2_shutdown(void)
{
	struct tok *t, *n;

	for (t = O.toks; t; t = n) {
		n = t->next;
		httpc_cancel(t->req);
		oauth2_wipe_free(t->form);
		oauth2_wipe_free(t->used_refresh);
		free(t->refresh_file);
		while (t->waiters) {
			struct oauth2_wait *w = t->waiters;
			t->waiters = w->next;
			wait_free(w);
		}
		tok_drop_token(t);
		if (t->renew != NULL)
			event_free(t->renew);
		free(t->name);
		free(t);
	}
	O.toks = NULL;
	httpc_shutdown();
	free(O.spool_dir);
	O.spool_dir = NULL;
}

/* ---- waiters ---------------------------------------------------------------- */

static void
wait_free(struct oauth2_wait *w)
{
	if (w->now != NULL)
		event_free(w->now);
	free(w->err);
	free(w);
}

static void
unlink_wait(struct oauth2_wait **head, struct oauth2_wait *w)
{
	for (struct oauth2_wait **p = head; *p; p = &(*p)->next)
		if (*p == w) {
			*p = w->next;
			return;
		}
}

void
oauth2_cancel(struct oauth2_wait *w)
{
	if (w == NULL)
		return;
	unlink_wait(w->firing ? &w->t->firing : &w->t->waiters, w);
	wait_free(w);
}

/* Answer every waiter of t: the token when there is one, else err. */
static void
answer_all(struct tok *t, const char *err, int person)
{
	struct oauth2_wait *w;

	t->firing = t->waiters;
	t->waiters = NULL;
	for (w = t->firing; w; w = w->next)
		w->firing = 1;
	while ((w = t->firing) != NULL) {
		t->firing = w->next;
		if (tok_usable(t) && t->gen != w->not_gen)
			w->cb(t->token, t->gen, NULL, 0, w->arg);
		else
			w->cb(NULL, 0, err ? err : "no OAuth2 access token", person, w->arg);
		wait_free(w);
	}
}

static void
on_now(evutil_socket_t fd, short what, void *arg)
{
	struct oauth2_wait *w = arg;
	struct tok *t = w->t;

	(void)fd;
	(void)what;
	unlink_wait(&t->firing, w);
	if (w->err != NULL)
		w->cb(NULL, 0, w->err, 0, w->arg);
	else if (t->person)
		w->cb(NULL, 0, t->why, 1, w->arg);
	else if (t->token != NULL && t->gen != w->not_gen)
		w->cb(t->token, t->gen, NULL, 0, w->arg);
	else
		w->cb(NULL, 0, "no OAuth2 access token", 0, w->arg);
	wait_free(w);
}

static struct oauth2_wait *
answer_now(struct tok *t, struct oauth2_wait *w)
{
	static const struct timeval zero = { 0, 0 };

	w->firing = 1;
	w->next = t->firing;
	t->firing = w;
	w->now = evtimer_new(O.base, on_now, w);
	evtimer_add(w->now, &zero);
	return w;
}

/* ---- needing a person ------------------------------------------------------- */

/*
 * Mark t as needing a person, for the credentials and files the last
 * request used (a reload, which makes new credentials, or a change of the
 * files clears it at oauth2_get()); said once at error level, and kept in
 * the spool for `mailrelay status` while the daemon is down.
 */
static void
set_person(struct tok *t, const char *why)
{
	int was = t->person;
	char e[600];

	t->person = 1;
	snprintf(t->why, sizeof t->why, "%s", why);
	t->fail_creds = t->req_creds;
	memcpy(t->fail_sig, t->req_sig, sizeof t->fail_sig);
	tok_drop_token(t);
	if (was)
		return;
	log_errx("%s", t->why);
	if (O.spool_dir != NULL &&
	    oauth2_state_write(O.spool_dir, t->name, time(NULL), t->why, e, sizeof e) == -1)
		log_warnx("smarthost %s: cannot keep the needs-authorisation state in the spool: %s",
		    t->name, e);
}

/* A person acted (or may have): t asks again, and the state in the spool goes. */
static void
clear_person(struct tok *t)
{
	if (!t->person)
		return;
	t->person = 0;
	t->why[0] = '\0';
	if (O.spool_dir != NULL) {
		char *path = oauth2_state_path(O.spool_dir, t->name);
		if (unlink(path) == -1 && errno != ENOENT)
			log_warn("smarthost %s: cannot remove %s", t->name, path);
		free(path);
	}
}

void
oauth2_needs_person(const char *name, const char *why)
{
	struct tok *t = tok_get(name);

	if (!t->person)
		set_person(t, why);
}

int
oauth2_background(void)
{
	for (struct tok *t = O.toks; t; t = t->next)
		if (t->renew_at != 0 || t->req != NULL)
			return 1;
	return 0;
}

const char *
oauth2_status(const char *name)
{
	for (struct tok *t = O.toks; t; t = t->next)
		if (strcmp(t->name, name) == 0)
			return t->person ? t->why : NULL;
	return NULL;
}

/* What happened and what a person must do about it: the grant decides. */
static void
person_sentence(char *buf, size_t len, const char *name, enum oauth2_grant grant, const char *what)
{
	snprintf(buf, len, "smarthost %s needs authorisation: the token endpoint refused the %s (%s); "
	    "mail stays queued; %s %s", name,
	    grant == OAUTH2_REFRESH_TOKEN ? "refresh token" :
	    grant == OAUTH2_PASSWORD ? "user's password" : "client credentials", what,
	    grant == OAUTH2_REFRESH_TOKEN ? "run: mailrelay oauth2 authorize --smarthost" :
	    grant == OAUTH2_PASSWORD ? "check the user's password and the app's consent, then "
	    "reload mailrelayd; smarthost" :
	    "check client_id, the client secret or certificate and the admin consent of the app "
	    "registration, then reload mailrelayd; smarthost", name);
}

/* ---- the request ------------------------------------------------------------ */

static void
request_end(struct tok *t)
{
	oauth2_wipe_free(t->form);
	t->form = NULL;
	oauth2_wipe_free(t->used_refresh);
	t->used_refresh = NULL;
	free(t->refresh_file);
	t->refresh_file = NULL;
	t->req = NULL;
}

static void
on_answer(int status, const char *body, size_t len, const char *err, void *arg)
{
	struct tok *t = arg;
	struct oauth2_token a;
	char why[900], e[400];
	time_t now = time(NULL);
	enum oauth2_outcome out;

	t->req = NULL;
	if (status == 0) {
		snprintf(why, sizeof why, "smarthost %s: cannot reach the OAuth2 token endpoint: %s",
		    t->name, err);
		log_warnx("%s", why);
		request_end(t);
		/* an older token that is still valid does meanwhile */
		renew_failed(t);
		answer_all(t, why, 0);
		return;
	}
	out = oauth2_parse_answer(status, body, len, &a);
	if (strcmp(t->req_key, t->key) != 0 && (out == OAUTH2_OK || out == OAUTH2_PERSON)) {
		/* a reload changed the section meanwhile: this answer is for the old one */
		oauth2_token_clear(&a);
		request_end(t);
		snprintf(why, sizeof why, "smarthost %s: the oauth2 section changed while a token "
		    "was being obtained; the next attempt asks again", t->name);
		answer_all(t, why, 0);
		return;
	}
	if (out == OAUTH2_OK) {
		if (t->grant == OAUTH2_REFRESH_TOKEN && a.refresh_token != NULL && t->refresh_file != NULL &&
		    (t->used_refresh == NULL || strcmp(a.refresh_token, t->used_refresh) != 0)) {
			/* rotated: on disk before the new access token is used */
			if (oauth2_write_refresh_file(t->refresh_file, a.refresh_token, e, sizeof e) == 0)
				log_info("smarthost %s: the token endpoint rotated the refresh token; "
				    "%s rewritten", t->name, t->refresh_file);
			else
				log_errx("smarthost %s: cannot write the rotated refresh token: %s; "
				    "the old one may stop working soon", t->name, e);
		}
		tok_adopt(t, &a.access_token, &a.scope, &a.audience, now_ms(), now + a.expires_in);
		clear_person(t);
		log_info("smarthost %s: OAuth2 access token obtained, valid for %lds%s%s", t->name,
		    a.expires_in, t->scope ? ", scope " : "", t->scope ? t->scope : "");
		struct oauth2_cached c = { t->token, t->obtained, t->expires, t->scope, t->audience, "" };
		memcpy(c.key, t->key, sizeof c.key);
		if (oauth2_cache_write(O.spool_dir, t->name, &c, e, sizeof e) == -1)
			log_warnx("smarthost %s: cannot keep the OAuth2 token in the spool: %s", t->name, e);
		oauth2_token_clear(&a);
		request_end(t);
		answer_all(t, NULL, 0);
		return;
	}
	if (out == OAUTH2_PERSON) {
		person_sentence(why, sizeof why, t->name, t->grant, a.why);
		oauth2_token_clear(&a);
		request_end(t);
		set_person(t, why);
		answer_all(t, t->why, 1);
		return;
	}
	snprintf(why, sizeof why, "smarthost %s: the OAuth2 token endpoint failed: %s", t->name, a.why);
	oauth2_token_clear(&a);
	log_warnx("%s", why);
	request_end(t);
	renew_failed(t);
	answer_all(t, why, 0);
}

static int
start_request(struct tok *t, const struct smarthost_conf *sh, const struct oauth2_creds *c,
    const char *password, char *why, size_t len)
{
	const struct oauth2_conf *o = sh->oauth2;
	char e[600];
	char *refresh = NULL;

	memcpy(t->req_key, t->key, sizeof t->req_key);
	t->req_creds = c->serial;
	sigs_of(sh, t->req_sig);
	t->grant = o->grant;
	if (o->grant == OAUTH2_REFRESH_TOKEN &&
	    (refresh = oauth2_read_refresh_file(o->refresh_token_file, e, sizeof e)) == NULL) {
		person_sentence(why, len, sh->name, o->grant, e);
		set_person(t, why);
		return -1;
	}
	t->form = oauth2_token_form(sh, c, refresh, password, e, sizeof e);
	if (t->form == NULL) {
		oauth2_wipe_free(refresh);
		snprintf(why, len, "smarthost %s: %s", sh->name, e);
		return -1;
	}
	struct httpc_opts ho = {
		c->ca_blob, c->ca_len, sh->tls_ca_path, sh->proxy_host, sh->proxy_port,
		sh->timeout, sh->connect_timeout
	};
	t->req = httpc_post(o->token_url, t->form, &ho, on_answer, t, e, sizeof e);
	if (t->req == NULL) {
		oauth2_wipe_free(refresh);
		request_end(t);
		snprintf(why, len, "smarthost %s: %s", sh->name, e);
		return -1;
	}
	t->used_refresh = refresh;
	t->refresh_file = o->refresh_token_file ? xstrdup(o->refresh_token_file) : NULL;
	log_debug("smarthost %s: asking %s for an OAuth2 access token (grant %s)", sh->name,
	    o->token_url, conf_oauth2_grant_name(o->grant));
	return 0;
}

static void
load_cache(struct tok *t)
{
	struct oauth2_cached c;

	t->cache_tried = 1;
	if (oauth2_cache_read(O.spool_dir, t->name, &c) != 0)
		return;
	if (strcmp(c.key, t->key) == 0 && c.expires > time(NULL) + 30) {
		tok_adopt(t, &c.access_token, &c.scope, &c.audience, (long long)c.obtained * 1000,
		    c.expires);
		log_info("smarthost %s: using the OAuth2 access token kept in the spool, valid for %llds more",
		    t->name, (long long)(t->expires - time(NULL)));
	}
	oauth2_cached_clear(&c);
}

/* Smarthost `name` of the current configuration with its OAuth2 credentials, or -1. */
static int
current_smarthost(const char *name, size_t *idx)
{
	const struct runconf *rc = D != NULL ? D->rc : NULL;

	if (rc == NULL)
		return -1;
	for (size_t i = 0; i < rc->conf->nsmarthosts; i++)
		if (strcmp(rc->conf->smarthosts[i].name, name) == 0) {
			if (rc->conf->smarthosts[i].oauth2 == NULL || rc->oauth2[i] == NULL)
				return -1;
			*idx = i;
			return 0;
		}
	return -1;
}

/* The renewal timer: the next token while no session waits for one. */
static void
on_renew(evutil_socket_t fd, short what, void *arg)
{
	struct tok *t = arg;
	char key[65], why[900];
	size_t i;

	(void)fd;
	(void)what;
	t->renew_at = 0;
	if (t->req != NULL || t->person || t->token == NULL || current_smarthost(t->name, &i) == -1)
		return;
	const struct smarthost_conf *sh = &D->rc->conf->smarthosts[i];
	oauth2_cache_key(sh, key);
	if (strcmp(key, t->key) != 0)
		return;     /* the section changed: the next session asks for its own token */
	log_debug("smarthost %s: renewing the OAuth2 access token before it expires (%llds left)",
	    t->name, (long long)(t->expires - time(NULL)));
	if (start_request(t, sh, D->rc->oauth2[i], D->rc->secret[i], why, sizeof why) == -1 &&
	    !t->person) {
		log_warnx("%s", why);
		renew_failed(t);
	}
}

/*
 * At start: the tokens kept in the spool for the configured smarthosts
 * are taken now, so that their renewal runs even while no mail flows,
 * and so is a needs-authorisation state the daemon left there.
 */
static void
arm_cached(void)
{
	const struct runconf *rc = D != NULL ? D->rc : NULL;
	char key[65];

	if (rc == NULL)
		return;
	for (size_t i = 0; i < rc->conf->nsmarthosts; i++) {
		const struct smarthost_conf *sh = &rc->conf->smarthosts[i];
		if (sh->oauth2 == NULL || rc->oauth2[i] == NULL)
			continue;
		struct tok *t = tok_get(sh->name);
		oauth2_cache_key(sh, key);
		memcpy(t->key, key, sizeof key);
		load_cache(t);
		/*
		 * Needing authorisation when the daemon stopped: shown by status
		 * until the first session asks again (fail_creds 0 matches no
		 * credentials, so that first request is made).
		 */
		time_t since;
		char *why = oauth2_state_read(O.spool_dir, sh->name, &since);
		if (why != NULL) {
			t->person = 1;
			t->fail_creds = 0;
			snprintf(t->why, sizeof t->why, "%s", why);
			tok_drop_token(t);
			free(why);
		}
	}
}

struct oauth2_wait *
oauth2_get(const struct smarthost_conf *sh, const struct oauth2_creds *creds,
    const char *password, unsigned long not_gen, oauth2_cb cb, void *arg)
{
	struct tok *t = tok_get(sh->name);
	struct oauth2_wait *w = xcalloc(1, sizeof *w);
	time_t now = time(NULL);
	char key[65], why[900];

	w->t = t;
	w->cb = cb;
	w->arg = arg;
	w->not_gen = not_gen;

	oauth2_cache_key(sh, key);
	if (strcmp(key, t->key) != 0) {
		/* a new section (or the first use): a token for another one is no use */
		if (t->key[0] != '\0')
			tok_drop_token(t);
		memcpy(t->key, key, sizeof key);
		t->cache_tried = 0;
	}
	if (t->person) {
		struct filesig s[4];
		sigs_of(sh, s);
		if (t->fail_creds == creds->serial && memcmp(s, t->fail_sig, sizeof s) == 0)
			return answer_now(t, w);
		if (t->fail_creds == 0)
			log_info("smarthost %s needed authorisation when the daemon last ran; "
			    "asking for an OAuth2 token again", sh->name);
		else
			log_info("smarthost %s: credentials changed; asking for an OAuth2 token again",
			    sh->name);
		clear_person(t);
	}
	if (!t->cache_tried)
		load_cache(t);
	if (not_gen != 0 && t->gen == not_gen)
		tok_drop_token(t);
	/*
	 * Fresh enough: within 80% of its lifetime; or past it while the
	 * background renewal backs off after a failure and the token is still
	 * good (the timer asks again, not each session).
	 */
	if (t->token != NULL && (now < t->obtained + (t->expires - t->obtained) * 4 / 5 ||
	    (t->renew_failures > 0 && tok_usable(t))))
		return answer_now(t, w);
	w->next = t->waiters;
	t->waiters = w;
	if (t->req != NULL)
		return w;
	if (start_request(t, sh, creds, password, why, sizeof why) == -1) {
		t->waiters = w->next;
		w->next = NULL;
		if (!t->person) {
			/* not a person's matter (the assertion could not be signed): this waiter only */
			log_warnx("%s", why);
			w->err = xstrdup(why);
		}
		return answer_now(t, w);
	}
	return w;
}

void
oauth2_rejected(const char *name, unsigned long gen)
{
	struct tok *t = tok_get(name);

	if (t->token == NULL || t->gen != gen)
		return;
	tok_drop_token(t);
	char *path = oauth2_cache_path(O.spool_dir, name);
	unlink(path);
	free(path);
}


/* ---- what the smarthost's replies mean ------------------------------------------ */

/*
 * What a refusal means, from the one table of replies (lib/explain.h):
 * "SENTENCE: HINT", or "" when no row matches.
 */
static const struct explanation *
meaning_of(const struct smtp_reply *r)
{
	char text[1200];

	smtp_reply_summary(r, text, sizeof text);
	return explain_find(NULL, text);
}

const char *
oauth2_explain_reply(const struct smtp_reply *r)
{
	static char out[1200];
	const struct explanation *m = meaning_of(r);

	if (m == NULL)
		return "";
	snprintf(out, sizeof out, "%s: %s", m->sentence, m->hint);
	return out;
}

int
oauth2_reply_needs_person(const struct smtp_reply *r)
{
	const struct explanation *m = meaning_of(r);

	return m != NULL && m->person;
}

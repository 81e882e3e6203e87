/*
 * oauth2cli: see oauth2cli.h.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "conf/conf.h"
#include "daemon/oauth2_proto.h"
#include "log.h"
#include "oauth2cli.h"
#include "xmalloc.h"

/* How long authorize waits for the browser's redirect (authorization code). */
#define REDIRECT_WAIT	300

struct body {
	char  *buf;
	size_t len;
};

static size_t
collect(char *data, size_t size, size_t nmemb, void *arg)
{
	struct body *b = arg;
	size_t n = size * nmemb;

	if (b->len + n > 64 * 1024)
		return 0;
	b->buf = xreallocarray(b->buf, b->len + n + 1, 1);
	memcpy(b->buf + b->len, data, n);
	b->len += n;
	b->buf[b->len] = '\0';
	return n;
}

/* POST form to url with the smarthost's CA rules and proxy; the HTTP status, 0 (and err) without one. */
static int
post(const struct smarthost_conf *sh, const char *url, const char *form, struct body *b,
    char *err, size_t errlen)
{
	char ebuf[CURL_ERROR_SIZE] = "", *proxy = NULL;
	long status = 0;
	CURL *e = curl_easy_init();
	CURLcode rc;

	if (e == NULL) {
		snprintf(err, errlen, "cannot start an HTTP request");
		return 0;
	}
	memset(b, 0, sizeof *b);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, form);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, b);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, ebuf);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, 60L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "mailrelay/" PACKAGE_VERSION);
	if (sh->tls_ca_file != NULL)
		curl_easy_setopt(e, CURLOPT_CAINFO, sh->tls_ca_file);
	if (sh->tls_ca_path != NULL)
		curl_easy_setopt(e, CURLOPT_CAPATH, sh->tls_ca_path);
	if (sh->proxy_host != NULL) {
		proxy = xasprintf("socks5h://%s:%s", sh->proxy_host, sh->proxy_port);
		curl_easy_setopt(e, CURLOPT_PROXY, proxy);
	}
	rc = curl_easy_perform(e);
	if (rc == CURLE_OK)
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	else
		snprintf(err, errlen, "%s: %s", url, ebuf[0] ? ebuf : curl_easy_strerror(rc));
	curl_easy_cleanup(e);
	free(proxy);
	if (b->buf == NULL)
		b->buf = xstrdup("");
	return (int)status;
}

static void
body_free(struct body *b)
{
	if (b->buf != NULL) {
		explicit_bzero(b->buf, b->len);
		free(b->buf);
	}
	memset(b, 0, sizeof *b);
}

static const char *
jget(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static long
jnum(json_object *o, const char *key, long dflt, long max)
{
	json_object *v;
	long n;

	if (!json_object_object_get_ex(o, key, &v))
		return dflt;
	n = (long)json_object_get_int64(v);
	return n > 0 && n <= max ? n : dflt;
}

/* Write the refresh token file: atomically, 0600, owned by the daemon's user. */
static int
save_refresh(const struct config *c, const struct smarthost_conf *sh, const char *token)
{
	const char *path = sh->oauth2->refresh_token_file;
	struct passwd *pw = getpwnam(c->user);
	char err[600];

	if (oauth2_write_refresh_file(path, token, err, sizeof err) == -1) {
		fprintf(stderr, "mailrelay: oauth2 authorize: cannot write refresh_token_file: %s\n", err);
		return EX_CANTCREAT;
	}
	if (pw != NULL && geteuid() == 0 && chown(path, pw->pw_uid, pw->pw_gid) == -1) {
		fprintf(stderr, "mailrelay: oauth2 authorize: chown %s to %s: %s\n", path, c->user,
		    strerror(errno));
		return EX_CANTCREAT;
	}
	printf("Wrote the refresh token to %s (mode 0600, owner %s).\n"
	    "mailrelayd uses it at the next attempt; `mailrelay flush` tries now.\n", path, c->user);
	return 0;
}

/* An answer with a refresh token: keep it; anything else: say why. */
static int
finish(const struct config *c, const struct smarthost_conf *sh, int status, struct body *b)
{
	struct oauth2_token t;
	enum oauth2_outcome out = oauth2_parse_answer(status, b->buf, b->len, &t);
	int rc;

	if (out != OAUTH2_OK) {
		fprintf(stderr, "mailrelay: oauth2 authorize: the token endpoint refused: %s\n", t.why);
		oauth2_token_clear(&t);
		return EX_NOPERM;
	}
	if (t.refresh_token == NULL) {
		fprintf(stderr, "mailrelay: oauth2 authorize: the token endpoint sent no refresh token "
		    "(the scope needs offline_access, or for Google access_type=offline)\n");
		oauth2_token_clear(&t);
		return EX_PROTOCOL;
	}
	rc = save_refresh(c, sh, t.refresh_token);
	oauth2_token_clear(&t);
	return rc;
}

/* RFC 8628: the device code flow. */
static int
device_flow(const struct config *c, const struct smarthost_conf *sh, const struct oauth2_creds *cr)
{
	const struct oauth2_conf *o = sh->oauth2;
	char err[600], *form = NULL, *device_code;
	struct body b;
	json_object *j;
	int status;

	oauth2_form_add(&form, "client_id", o->client_id);
	if (o->scope != NULL)
		oauth2_form_add(&form, "scope", o->scope);
	status = post(sh, o->device_url, form, &b, err, sizeof err);
	oauth2_wipe_free(form);
	if (status == 0) {
		fprintf(stderr, "mailrelay: oauth2 authorize: %s\n", err);
		body_free(&b);
		return EX_UNAVAILABLE;
	}
	j = json_tokener_parse(b.buf);
	if (status != 200 || j == NULL || jget(j, "device_code") == NULL || jget(j, "user_code") == NULL ||
	    (jget(j, "verification_uri") == NULL && jget(j, "verification_url") == NULL)) {
		struct oauth2_token t;
		oauth2_parse_answer(status, b.buf, b.len, &t);
		fprintf(stderr, "mailrelay: oauth2 authorize: the device authorisation endpoint %s "
		    "refused: %s\n", o->device_url, t.why);
		oauth2_token_clear(&t);
		json_object_put(j);
		body_free(&b);
		return EX_NOPERM;
	}
	const char *uri = jget(j, "verification_uri") ? jget(j, "verification_uri") : jget(j, "verification_url");
	long interval = jnum(j, "interval", 5, 300), expires = jnum(j, "expires_in", 900, 3600);
	printf("To authorise mailrelay for %s (smarthost %s), open\n    %s\nand enter the code\n    %s\n"
	    "Waiting (up to %ld minutes)...\n", sh->username, sh->name, uri, jget(j, "user_code"),
	    expires / 60);
	fflush(stdout);
	device_code = xstrdup(jget(j, "device_code"));
	json_object_put(j);
	body_free(&b);

	time_t deadline = time(NULL) + expires;
	for (;;) {
		sleep((unsigned)interval);
		if (time(NULL) > deadline) {
			fprintf(stderr, "mailrelay: oauth2 authorize: the code expired; run the command again\n");
			oauth2_wipe_free(device_code);
			return EX_TEMPFAIL;
		}
		form = NULL;
		oauth2_form_add(&form, "grant_type", "urn:ietf:params:oauth:grant-type:device_code");
		oauth2_form_add(&form, "device_code", device_code);
		oauth2_form_add(&form, "client_id", o->client_id);
		if (cr != NULL && oauth2_form_client_auth(&form, sh, cr, err, sizeof err) == -1) {
			fprintf(stderr, "mailrelay: oauth2 authorize: %s\n", err);
			oauth2_wipe_free(form);
			oauth2_wipe_free(device_code);
			return EX_SOFTWARE;
		}
		status = post(sh, o->token_url, form, &b, err, sizeof err);
		oauth2_wipe_free(form);
		if (status == 0) {
			fprintf(stderr, "mailrelay: oauth2 authorize: %s\n", err);
			body_free(&b);
			oauth2_wipe_free(device_code);
			return EX_UNAVAILABLE;
		}
		struct oauth2_token t;
		enum oauth2_outcome out = oauth2_parse_answer(status, b.buf, b.len, &t);
		oauth2_token_clear(&t);
		if (out == OAUTH2_PENDING) {
			body_free(&b);
			continue;
		}
		if (out == OAUTH2_SLOW_DOWN) {
			interval += 5;	/* RFC 8628 3.5 */
			body_free(&b);
			continue;
		}
		oauth2_wipe_free(device_code);
		int rc = finish(c, sh, status, &b);
		body_free(&b);
		return rc;
	}
}

/* RFC 7636 with a loopback redirect (RFC 8252 7.3): Google's flow for installed applications. */
static int
code_flow(const struct config *c, const struct smarthost_conf *sh, const struct oauth2_creds *cr)
{
	const struct oauth2_conf *o = sh->oauth2;
	unsigned char raw[32], md[EVP_MAX_MD_SIZE], st[16];
	unsigned mdlen = 0;
	struct sockaddr_in sin;
	socklen_t slen = sizeof sin;
	char *verifier, *challenge, *state, *query = NULL, *redirect, err[600], req[8192];
	int ls, fd, rc;

	if (o->authorize_url == NULL) {
		fprintf(stderr, "mailrelay: oauth2 authorize: smarthost %s has no authorize_url\n", sh->name);
		return EX_CONFIG;
	}
	if (RAND_bytes(raw, sizeof raw) != 1 || RAND_bytes(st, sizeof st) != 1)
		return EX_SOFTWARE;
	verifier = oauth2_b64url(raw, sizeof raw);
	EVP_Digest(verifier, strlen(verifier), md, &mdlen, EVP_sha256(), NULL);
	challenge = oauth2_b64url(md, mdlen);
	state = oauth2_b64url(st, sizeof st);

	ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (ls == -1 || bind(ls, (struct sockaddr *)&sin, sizeof sin) == -1 || listen(ls, 4) == -1 ||
	    getsockname(ls, (struct sockaddr *)&sin, &slen) == -1) {
		fprintf(stderr, "mailrelay: oauth2 authorize: cannot listen on 127.0.0.1: %s\n", strerror(errno));
		return EX_OSERR;
	}
	redirect = xasprintf("http://127.0.0.1:%u/", (unsigned)ntohs(sin.sin_port));
	oauth2_form_add(&query, "response_type", "code");
	oauth2_form_add(&query, "client_id", o->client_id);
	oauth2_form_add(&query, "redirect_uri", redirect);
	if (o->scope != NULL)
		oauth2_form_add(&query, "scope", o->scope);
	oauth2_form_add(&query, "code_challenge", challenge);
	oauth2_form_add(&query, "code_challenge_method", "S256");
	oauth2_form_add(&query, "state", state);
	oauth2_form_add(&query, "access_type", "offline");
	oauth2_form_add(&query, "prompt", "consent");
	oauth2_form_add(&query, "login_hint", sh->username);
	printf("To authorise mailrelay for %s (smarthost %s), open this URL in a browser on this "
	    "machine (or forward port %u to it):\n    %s%s%s\nWaiting for the browser...\n",
	    sh->username, sh->name, (unsigned)ntohs(sin.sin_port), o->authorize_url,
	    strchr(o->authorize_url, '?') ? "&" : "?", query);
	fflush(stdout);
	free(query);

	/* the browser comes back with GET /?state=...&code=... */
	struct pollfd p = { ls, POLLIN, 0 };
	char *code = NULL;
	time_t deadline = time(NULL) + REDIRECT_WAIT;
	while (code == NULL && time(NULL) < deadline) {
		if (poll(&p, 1, 1000) <= 0)
			continue;
		if ((fd = accept(ls, NULL, NULL)) == -1)
			continue;
		struct timeval tv = { 10, 0 };
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
		ssize_t n = recv(fd, req, sizeof req - 1, 0);
		req[n > 0 ? n : 0] = '\0';
		const char *page = "HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\n\r\n"
		    "mailrelay: this is not the answer of the authorisation server.\n";
		char *q = strncmp(req, "GET /?", 6) == 0 ? req + 6 : NULL;
		if (q != NULL) {
			q[strcspn(q, " \r\n")] = '\0';
			char *got_state = NULL, *got_code = NULL, *save = NULL;
			for (char *kv = strtok_r(q, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
				if (strncmp(kv, "state=", 6) == 0)
					got_state = kv + 6;
				else if (strncmp(kv, "code=", 5) == 0)
					got_code = kv + 5;
			}
			if (got_state != NULL && got_code != NULL && strcmp(got_state, state) == 0) {
				/* percent-decode the code */
				char *d = got_code;
				for (char *s = got_code; *s; s++) {
					if (*s == '%' && s[1] && s[2]) {
						char hx[3] = { s[1], s[2], 0 };
						*d++ = (char)strtol(hx, NULL, 16);
						s += 2;
					} else
						*d++ = *s;
				}
				*d = '\0';
				code = xstrdup(got_code);
				page = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n"
				    "mailrelay: authorised; you may close this window.\n";
			}
		}
		(void)!write(fd, page, strlen(page));
		close(fd);
	}
	close(ls);
	explicit_bzero(req, sizeof req);
	if (code == NULL) {
		fprintf(stderr, "mailrelay: oauth2 authorize: no answer from the browser within %d "
		    "seconds\n", REDIRECT_WAIT);
		free(verifier);
		free(challenge);
		free(state);
		free(redirect);
		return EX_TEMPFAIL;
	}
	char *form = NULL;
	struct body b;
	oauth2_form_add(&form, "grant_type", "authorization_code");
	oauth2_form_add(&form, "code", code);
	oauth2_form_add(&form, "redirect_uri", redirect);
	oauth2_form_add(&form, "client_id", o->client_id);
	oauth2_form_add(&form, "code_verifier", verifier);
	if (cr != NULL && oauth2_form_client_auth(&form, sh, cr, err, sizeof err) == -1) {
		fprintf(stderr, "mailrelay: oauth2 authorize: %s\n", err);
		rc = EX_SOFTWARE;
	} else {
		int status = post(sh, o->token_url, form, &b, err, sizeof err);
		if (status == 0) {
			fprintf(stderr, "mailrelay: oauth2 authorize: %s\n", err);
			rc = EX_UNAVAILABLE;
		} else
			rc = finish(c, sh, status, &b);
		body_free(&b);
	}
	oauth2_wipe_free(form);
	oauth2_wipe_free(code);
	oauth2_wipe_free(verifier);
	free(challenge);
	free(state);
	free(redirect);
	return rc;
}

static int
cmd_token(const struct config *c, const struct smarthost_conf *sh)
{
	struct oauth2_cached k;
	char key[65], when[64], exp[64];
	time_t now = time(NULL);
	struct tm tm;

	if (oauth2_cache_read(c->spool_dir, sh->name, &k) != 0) {
		printf("smarthost %s: no access token kept in %s (mailrelayd asks for one when a "
		    "session needs it)\n", sh->name, c->spool_dir);
		return EX_UNAVAILABLE;
	}
	oauth2_cache_key(sh, key);
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&k.obtained, &tm));
	strftime(exp, sizeof exp, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&k.expires, &tm));
	printf("smarthost %s: access token for %s\n", sh->name, sh->username);
	printf("  obtained  %s\n", when);
	if (k.expires > now)
		printf("  expires   %s (in %llds; renewed after %s)\n", exp, (long long)(k.expires - now),
		    "80% of its lifetime");
	else
		printf("  expires   %s (expired %llds ago)\n", exp, (long long)(now - k.expires));
	printf("  scopes    %s\n", k.scope ? k.scope : "(not said)");
	printf("  audience  %s\n", k.audience ? k.audience : "(not a JWT)");
	if (strcmp(key, k.key) != 0)
		printf("  (obtained for an earlier oauth2 section: mailrelayd asks for a new one)\n");
	oauth2_cached_clear(&k);
	return 0;
}

int
cmd_oauth2(const char *config_path, int argc, char **argv)
{
	const char *name = NULL;
	char err[600];
	int rc;

	if (argc != 4 || strcmp(argv[2], "--smarthost") != 0 ||
	    (strcmp(argv[1], "token") != 0 && strcmp(argv[1], "authorize") != 0)) {
		fprintf(stderr, "usage: mailrelay oauth2 token|authorize --smarthost NAME\n");
		return EX_USAGE;
	}
	name = argv[3];
	struct config *c = conf_load(config_path, err, sizeof err);
	if (c == NULL) {
		fprintf(stderr, "mailrelay: %s\n", err);
		return EX_CONFIG;
	}
	const struct smarthost_conf *sh = conf_smarthost(c, name);
	if (sh == NULL || sh->oauth2 == NULL) {
		fprintf(stderr, "mailrelay: oauth2: %s smarthost named \"%.64s\" in %s\n",
		    sh ? "no oauth2 section in the" : "no", name, c->path ? c->path : "the configuration");
		conf_free(c);
		return EX_CONFIG;
	}
	if (strcmp(argv[1], "token") == 0) {
		rc = cmd_token(c, sh);
		conf_free(c);
		return rc;
	}
	if (sh->oauth2->refresh_token_file == NULL) {
		fprintf(stderr, "mailrelay: oauth2 authorize: smarthost %s has no refresh_token_file "
		    "(grant %s needs no authorisation by a user)\n", name,
		    conf_oauth2_grant_name(sh->oauth2->grant));
		conf_free(c);
		return EX_CONFIG;
	}
	struct passwd *pw = getpwnam(c->user);
	struct oauth2_creds *cr = NULL;
	if (sh->oauth2->client_secret_file != NULL || sh->oauth2->client_certificate != NULL) {
		cr = oauth2_creds_load(sh, pw ? pw->pw_gid : (gid_t)-1, err, sizeof err);
		if (cr == NULL) {
			fprintf(stderr, "mailrelay: oauth2 authorize: %s\n", err);
			conf_free(c);
			return EX_CONFIG;
		}
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (sh->oauth2->provider == OAUTH2_GOOGLE || sh->oauth2->device_url == NULL)
		rc = code_flow(c, sh, cr);
	else
		rc = device_flow(c, sh, cr);
	curl_global_cleanup();
	oauth2_creds_free(cr);
	conf_free(c);
	return rc;
}

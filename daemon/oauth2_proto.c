/*
 * oauth2_proto: see oauth2_proto.h.
 */
#include "config.h"

#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "oauth2_proto.h"
#include "oauth2_state.h"
#include "secret.h"
#include "util.h"
#include "xmalloc.h"

/* Nesting depth json-c may follow in an answer: token answers are flat. */
#define JSON_DEPTH	8
/* A token, a refresh token, a secret: longer than this is not one. */
#define TOKEN_MAX	16384

void
oauth2_wipe_free(char *s)
{
	if (s == NULL)
		return;
	explicit_bzero(s, strlen(s));
	free(s);
}

char *
oauth2_b64url(const unsigned char *in, size_t len)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	char *out = xmalloc(len / 3 * 4 + 5), *o = out;
	size_t i;

	for (i = 0; i + 2 < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		*o++ = tab[v >> 18 & 63];
		*o++ = tab[v >> 12 & 63];
		*o++ = tab[v >> 6 & 63];
		*o++ = tab[v & 63];
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;
		*o++ = tab[v >> 18 & 63];
		*o++ = tab[v >> 12 & 63];
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		*o++ = tab[v >> 18 & 63];
		*o++ = tab[v >> 12 & 63];
		*o++ = tab[v >> 6 & 63];
	}
	*o = '\0';
	return out;
}

/* base64url (padding optional) into out; -1 on a character outside the alphabet. */
static long
b64url_decode(const char *in, size_t n, unsigned char *out, size_t outlen)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)in[i], v;

		if (c >= 'A' && c <= 'Z') v = c - 'A';
		else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
		else if (c >= '0' && c <= '9') v = c - '0' + 52;
		else if (c == '-' || c == '+') v = 62;
		else if (c == '_' || c == '/') v = 63;
		else if (c == '=') break;
		else return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= outlen)
				return -1;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	return (long)o;
}

/* ---- credentials ---------------------------------------------------------- */

static int
load_certificate(struct oauth2_creds *c, const struct oauth2_conf *o, char *errbuf, size_t errlen)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	FILE *fp;
	X509 *x;

	if ((fp = fopen(o->client_certificate, "re")) == NULL) {
		snprintf(errbuf, errlen, "client_certificate: %s: %s", o->client_certificate, strerror(errno));
		return -1;
	}
	x = PEM_read_X509(fp, NULL, NULL, NULL);
	fclose(fp);
	if (x == NULL) {
		snprintf(errbuf, errlen, "client_certificate: %s: not a PEM certificate", o->client_certificate);
		return -1;
	}
	if ((fp = fopen(o->client_key, "re")) == NULL) {
		snprintf(errbuf, errlen, "client_key: %s: %s", o->client_key, strerror(errno));
		X509_free(x);
		return -1;
	}
	c->key = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
	fclose(fp);
	if (c->key == NULL || EVP_PKEY_get_base_id(c->key) != EVP_PKEY_RSA) {
		snprintf(errbuf, errlen, "client_key: %s: not an RSA private key in PEM "
		    "(a JWT client assertion is signed with RS256)", o->client_key);
		X509_free(x);
		return -1;
	}
	if (X509_check_private_key(x, c->key) != 1) {
		snprintf(errbuf, errlen, "client_key: %s does not belong to client_certificate %s",
		    o->client_key, o->client_certificate);
		X509_free(x);
		return -1;
	}
	X509_digest(x, EVP_sha256(), md, &mdlen);
	X509_free(x);
	c->x5t_s256 = oauth2_b64url(md, mdlen);
	return 0;
}

struct oauth2_creds *
oauth2_creds_load(const struct smarthost_conf *sh, gid_t daemon_gid, char *errbuf, size_t errlen)
{
	static unsigned long serial;
	struct oauth2_creds *c = xcalloc(1, sizeof *c);
	const struct oauth2_conf *o = sh->oauth2;

	/* from here on the process holds secrets: no core dump, no ptrace by the same user */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	c->serial = ++serial;
	errbuf[0] = '\0';
	if (o->client_secret_file != NULL) {
		c->client_secret = secret_read_file_key("client_secret_file", o->client_secret_file,
		    daemon_gid, errbuf, errlen);
		if (c->client_secret == NULL)
			goto fail;
	}
	if (o->client_certificate != NULL && load_certificate(c, o, errbuf, errlen) == -1)
		goto fail;
	if (sh->tls_ca_file != NULL &&
	    (c->ca_blob = oauth2_read_small(sh->tls_ca_file, 4 << 20, &c->ca_len, errbuf, errlen,
	    "tls_ca_file")) == NULL)
		goto fail;
	return c;
fail:
	oauth2_creds_free(c);
	return NULL;
}

void
oauth2_creds_free(struct oauth2_creds *c)
{
	if (c == NULL)
		return;
	oauth2_wipe_free(c->client_secret);
	EVP_PKEY_free(c->key);
	free(c->x5t_s256);
	free(c->ca_blob);
	free(c);
}

/* ---- the request ------------------------------------------------------------ */

void
oauth2_form_add(char **form, const char *name, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t old = *form ? strlen(*form) : 0, n = strlen(name), v = strlen(value);
	char *out = xmalloc(old + 1 + n + 1 + 3 * v + 1), *o = out;

	if (old) {
		memcpy(o, *form, old);
		o += old;
		*o++ = '&';
	}
	memcpy(o, name, n);
	o += n;
	*o++ = '=';
	for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		    *p == '-' || *p == '.' || *p == '_' || *p == '~')
			*o++ = (char)*p;
		else {
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		}
	}
	*o = '\0';
	oauth2_wipe_free(*form);
	*form = out;
}

/*
 * The JWT client assertion of RFC 7523 as Microsoft takes it: RS256, the
 * certificate's SHA-256 thumbprint in x5t#S256, issuer and subject the
 * client id, audience the token endpoint, valid for ten minutes, a random
 * jti so that it cannot be replayed.
 */
static char *
client_assertion(const struct smarthost_conf *sh, const struct oauth2_creds *c,
    char *errbuf, size_t errlen)
{
	const struct oauth2_conf *o = sh->oauth2;
	unsigned char jti[16], sig[1024];
	char jtihex[33];
	size_t siglen = sizeof sig;
	time_t now = time(NULL);
	json_object *h = json_object_new_object(), *p = json_object_new_object();
	char *hs, *ps, *input, *sigs, *jwt;
	EVP_MD_CTX *md;

	if (RAND_bytes(jti, sizeof jti) != 1) {
		snprintf(errbuf, errlen, "no random bytes for the client assertion");
		json_object_put(h);
		json_object_put(p);
		return NULL;
	}
	for (size_t i = 0; i < sizeof jti; i++)
		snprintf(jtihex + 2 * i, 3, "%02x", jti[i]);
	json_object_object_add(h, "alg", json_object_new_string("RS256"));
	json_object_object_add(h, "typ", json_object_new_string("JWT"));
	json_object_object_add(h, "x5t#S256", json_object_new_string(c->x5t_s256));
	json_object_object_add(p, "aud", json_object_new_string(o->token_url));
	json_object_object_add(p, "iss", json_object_new_string(o->client_id));
	json_object_object_add(p, "sub", json_object_new_string(o->client_id));
	json_object_object_add(p, "jti", json_object_new_string(jtihex));
	json_object_object_add(p, "nbf", json_object_new_int64(now));
	json_object_object_add(p, "iat", json_object_new_int64(now));
	json_object_object_add(p, "exp", json_object_new_int64(now + 600));
	const char *hj = json_object_to_json_string_ext(h, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	const char *pj = json_object_to_json_string_ext(p, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	hs = oauth2_b64url((const unsigned char *)hj, strlen(hj));
	ps = oauth2_b64url((const unsigned char *)pj, strlen(pj));
	json_object_put(h);
	json_object_put(p);
	input = xasprintf("%s.%s", hs, ps);
	free(hs);
	free(ps);
	md = EVP_MD_CTX_new();
	if (md == NULL || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, c->key) != 1 ||
	    EVP_DigestSign(md, sig, &siglen, (const unsigned char *)input, strlen(input)) != 1) {
		snprintf(errbuf, errlen, "cannot sign the client assertion with client_key");
		EVP_MD_CTX_free(md);
		free(input);
		return NULL;
	}
	EVP_MD_CTX_free(md);
	sigs = oauth2_b64url(sig, siglen);
	jwt = xasprintf("%s.%s", input, sigs);
	free(input);
	free(sigs);
	return jwt;
}

int
oauth2_form_client_auth(char **form, const struct smarthost_conf *sh,
    const struct oauth2_creds *c, char *errbuf, size_t errlen)
{
	if (c->client_secret != NULL)
		oauth2_form_add(form, "client_secret", c->client_secret);
	else if (c->key != NULL) {
		char *jwt = client_assertion(sh, c, errbuf, errlen);
		if (jwt == NULL)
			return -1;
		oauth2_form_add(form, "client_assertion_type",
		    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
		oauth2_form_add(form, "client_assertion", jwt);
		oauth2_wipe_free(jwt);
	}
	return 0;
}

char *
oauth2_token_form(const struct smarthost_conf *sh, const struct oauth2_creds *c,
    const char *refresh_token, const char *password, char *errbuf, size_t errlen)
{
	const struct oauth2_conf *o = sh->oauth2;
	char *form = NULL;

	switch (o->grant) {
	case OAUTH2_CLIENT_CREDENTIALS:
		oauth2_form_add(&form, "grant_type", "client_credentials");
		break;
	case OAUTH2_REFRESH_TOKEN:
		oauth2_form_add(&form, "grant_type", "refresh_token");
		oauth2_form_add(&form, "refresh_token", refresh_token ? refresh_token : "");
		break;
	case OAUTH2_PASSWORD:
		oauth2_form_add(&form, "grant_type", "password");
		oauth2_form_add(&form, "username", sh->username);
		oauth2_form_add(&form, "password", password ? password : "");
		break;
	}
	oauth2_form_add(&form, "client_id", o->client_id);
	if (o->scope != NULL)
		oauth2_form_add(&form, "scope", o->scope);
	if (oauth2_form_client_auth(&form, sh, c, errbuf, errlen) == -1) {
		oauth2_wipe_free(form);
		return NULL;
	}
	return form;
}

/* ---- the answer ------------------------------------------------------------- */

static char *
jstr(json_object *obj, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	const char *s = json_object_get_string(v);
	if (s == NULL || *s == '\0' || strlen(s) > TOKEN_MAX)
		return NULL;
	return xstrdup(s);
}

/* The aud claim of a JWT access token (Microsoft's are), for `mailrelay oauth2 token`. */
static char *
jwt_audience(const char *token)
{
	const char *p1 = strchr(token, '.'), *p2;
	unsigned char buf[8192];
	long n;
	char *aud = NULL;

	if (p1 == NULL || (p2 = strchr(p1 + 1, '.')) == NULL)
		return NULL;
	n = b64url_decode(p1 + 1, (size_t)(p2 - p1 - 1), buf, sizeof buf - 1);
	if (n <= 0)
		return NULL;
	json_tokener *tok = json_tokener_new_ex(JSON_DEPTH);
	json_object *o = json_tokener_parse_ex(tok, (const char *)buf, (int)n);
	json_tokener_free(tok);
	if (o != NULL) {
		json_object *v;
		if (json_object_object_get_ex(o, "aud", &v)) {
			if (json_object_is_type(v, json_type_array) && json_object_array_length(v) > 0)
				v = json_object_array_get_idx(v, 0);
			if (json_object_is_type(v, json_type_string))
				aud = xstrdup(json_object_get_string(v));
		}
		json_object_put(o);
	}
	explicit_bzero(buf, sizeof buf);
	return aud;
}

static int
person_error(const char *err, const char *desc)
{
	static const char *const codes[] = {
		"invalid_grant", "invalid_client", "unauthorized_client", "consent_required",
		"interaction_required", "login_required", "access_denied", "invalid_scope",
		"expired_token", "invalid_request", "unsupported_grant_type", NULL
	};

	for (size_t i = 0; codes[i]; i++)
		if (strcmp(err, codes[i]) == 0)
			return 1;
	return desc != NULL && strncmp(desc, "AADSTS", 6) == 0;
}

enum oauth2_outcome
oauth2_parse_answer(int status, const char *body, size_t len, struct oauth2_token *t)
{
	json_tokener *tok;
	json_object *o, *v;
	enum oauth2_outcome out;

	memset(t, 0, sizeof *t);
	if (len > INT32_MAX)
		len = 0;
	tok = json_tokener_new_ex(JSON_DEPTH);
	o = tok ? json_tokener_parse_ex(tok, body, (int)len) : NULL;
	if (tok)
		json_tokener_free(tok);
	if (o == NULL || !json_object_is_type(o, json_type_object)) {
		snprintf(t->why, sizeof t->why, "the token endpoint answered HTTP %d without a JSON object",
		    status);
		json_object_put(o);
		return OAUTH2_TRANSIENT;
	}
	if (status == 200 && (t->access_token = jstr(o, "access_token")) != NULL) {
		t->refresh_token = jstr(o, "refresh_token");
		t->scope = jstr(o, "scope");
		t->expires_in = 3600;
		if (json_object_object_get_ex(o, "expires_in", &v)) {
			long e = (long)json_object_get_int64(v);	/* strings such as "3599" too */
			if (e > 0 && e <= 366L * 86400)
				t->expires_in = e;
		}
		t->audience = jwt_audience(t->access_token);
		json_object_put(o);
		return OAUTH2_OK;
	}
	char *err = jstr(o, "error"), *desc = jstr(o, "error_description");
	char d[400] = "";
	if (desc)
		oauth2_printable(d, sizeof d, desc);
	oauth2_printable(t->error, sizeof t->error, err ? err : "");
	snprintf(t->why, sizeof t->why, "HTTP %d%s%s%s%s", status, err ? ", " : "", t->error,
	    desc ? ": " : "", d);
	if (err != NULL && strcmp(err, "authorization_pending") == 0)
		out = OAUTH2_PENDING;
	else if (err != NULL && strcmp(err, "slow_down") == 0)
		out = OAUTH2_SLOW_DOWN;
	else if (status >= 500 || status == 429 || status == 0 ||
	    (err != NULL && (strcmp(err, "temporarily_unavailable") == 0 || strcmp(err, "server_error") == 0)))
		out = OAUTH2_TRANSIENT;
	else if (status >= 400 && (err == NULL || person_error(err, desc) || status == 400 || status == 401))
		out = OAUTH2_PERSON;
	else
		out = OAUTH2_TRANSIENT;
	free(err);
	free(desc);
	json_object_put(o);
	return out;
}

void
oauth2_token_clear(struct oauth2_token *t)
{
	oauth2_wipe_free(t->access_token);
	oauth2_wipe_free(t->refresh_token);
	free(t->scope);
	free(t->audience);
	memset(t, 0, sizeof *t);
}

/* ---- files ------------------------------------------------------------------ */

char *
oauth2_read_refresh_file(const char *path, char *errbuf, size_t errlen)
{
	struct stat st;
	size_t len;
	char *buf;

	if (lstat(path, &st) == 0 && (st.st_mode & (S_IROTH | S_IWOTH | S_IRGRP | S_IWGRP))) {
		snprintf(errbuf, errlen, "refresh_token_file: %s may be read by others (mode %04o); "
		    "run chmod 0600 %s", path, (unsigned)(st.st_mode & 07777), path);
		return NULL;
	}
	if ((buf = oauth2_read_small(path, TOKEN_MAX, &len, errbuf, errlen, "refresh_token_file")) == NULL)
		return NULL;
	buf[strcspn(buf, "\r\n")] = '\0';
	if (buf[0] == '\0') {
		snprintf(errbuf, errlen, "refresh_token_file: %s: the first line is empty", path);
		free(buf);
		return NULL;
	}
	return buf;
}

int
oauth2_write_refresh_file(const char *path, const char *token, char *errbuf, size_t errlen)
{
	char *data = xasprintf("%s\n", token);
	int rc = oauth2_write_atomic(path, data, strlen(data), errbuf, errlen);

	oauth2_wipe_free(data);
	return rc;
}

void
oauth2_cache_key(const struct smarthost_conf *sh, char out[65])
{
	const struct oauth2_conf *o = sh->oauth2;
	char *s = xasprintf("%s\n%s\n%s\n%d\n%s", o->client_id, o->token_url, o->scope ? o->scope : "",
	    (int)o->grant, sh->username ? sh->username : "");
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned n = 0;

	EVP_Digest(s, strlen(s), md, &n, EVP_sha256(), NULL);
	for (unsigned i = 0; i < n && i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	out[64] = '\0';
	free(s);
}

char *
oauth2_cache_path(const char *spool_dir, const char *name)
{
	return xasprintf("%s/oauth2-%s.token", spool_dir, name);
}

int
oauth2_cache_write(const char *spool_dir, const char *name, const struct oauth2_cached *c,
    char *errbuf, size_t errlen)
{
	json_object *o = json_object_new_object();
	char *path = oauth2_cache_path(spool_dir, name);
	int rc;

	json_object_object_add(o, "version", json_object_new_int(1));
	json_object_object_add(o, "key", json_object_new_string(c->key));
	json_object_object_add(o, "obtained", json_object_new_int64(c->obtained));
	json_object_object_add(o, "expires", json_object_new_int64(c->expires));
	if (c->scope)
		json_object_object_add(o, "scope", json_object_new_string(c->scope));
	if (c->audience)
		json_object_object_add(o, "audience", json_object_new_string(c->audience));
	json_object_object_add(o, "access_token", json_object_new_string(c->access_token));
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	rc = oauth2_write_atomic(path, s, strlen(s), errbuf, errlen);
	explicit_bzero((char *)(uintptr_t)s, strlen(s));
	json_object_put(o);
	free(path);
	return rc;
}

int
oauth2_cache_read(const char *spool_dir, const char *name, struct oauth2_cached *c)
{
	char *path = oauth2_cache_path(spool_dir, name), err[300];
	size_t len = 0;
	char *buf = oauth2_read_small(path, 64 * 1024, &len, err, sizeof err, "cache");
	json_object *o = NULL, *v;
	int rc = -1;

	free(path);
	memset(c, 0, sizeof *c);
	if (buf == NULL)
		return -1;
	json_tokener *tok = json_tokener_new_ex(JSON_DEPTH);
	o = json_tokener_parse_ex(tok, buf, (int)len);
	json_tokener_free(tok);
	explicit_bzero(buf, len);
	free(buf);
	if (o == NULL || !json_object_is_type(o, json_type_object))
		goto out;
	char *key = jstr(o, "key");
	if (key == NULL || strlen(key) != 64) {
		free(key);
		goto out;
	}
	memcpy(c->key, key, 65);
	free(key);
	if ((c->access_token = jstr(o, "access_token")) == NULL)
		goto out;
	if (json_object_object_get_ex(o, "obtained", &v))
		c->obtained = (time_t)json_object_get_int64(v);
	if (json_object_object_get_ex(o, "expires", &v))
		c->expires = (time_t)json_object_get_int64(v);
	c->scope = jstr(o, "scope");
	c->audience = jstr(o, "audience");
	rc = c->expires > c->obtained ? 0 : -1;
out:
	json_object_put(o);
	if (rc != 0)
		oauth2_cached_clear(c);
	return rc;
}

void
oauth2_cached_clear(struct oauth2_cached *c)
{
	oauth2_wipe_free(c->access_token);
	free(c->scope);
	free(c->audience);
	memset(c, 0, sizeof *c);
}

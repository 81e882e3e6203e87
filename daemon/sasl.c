/*
 * sasl: see sasl.h.
 *
 * Hostile input: every challenge is bounded, base64-checked and parsed
 * without trusting lengths; SCRAM's iteration count is bounded so that a
 * server cannot make us spin.
 */
#include "config.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "sasl.h"
#include "xmalloc.h"

#define CHALLENGE_MAX 4096
#define SCRAM_ITER_MAX 1000000

static const struct {
	enum auth_mech mech;
	const char *name;
} mechs[] = {
	/* strongest first: the order `auto` prefers */
	{ AUTH_SCRAM_SHA_256, "SCRAM-SHA-256" },
	{ AUTH_CRAM_MD5, "CRAM-MD5" },
	{ AUTH_PLAIN, "PLAIN" },
	{ AUTH_LOGIN, "LOGIN" },
	{ AUTH_XOAUTH2, "XOAUTH2" },
	{ AUTH_OAUTHBEARER, "OAUTHBEARER" },
};

const char *
sasl_mech_name(enum auth_mech m)
{
	for (size_t i = 0; i < sizeof mechs / sizeof mechs[0]; i++)
		if (mechs[i].mech == m)
			return mechs[i].name;
	return "NONE";
}

int
sasl_offered(enum auth_mech m, const struct smtp_caps *caps)
{
	const char *name = sasl_mech_name(m);

	for (size_t i = 0; i < caps->nauth; i++)
		if (strcasecmp(caps->auth[i], name) == 0)
			return 1;
	return 0;
}

enum auth_mech
sasl_choose(enum auth_mech configured, const struct smtp_caps *caps)
{
	if (configured == AUTH_NONE)
		return AUTH_NONE;
	if (configured != AUTH_AUTO)
		return sasl_offered(configured, caps) ? configured : AUTH_NONE;
	/* auto: password mechanisms only; an OAuth token must be asked for explicitly */
	for (size_t i = 0; i < sizeof mechs / sizeof mechs[0]; i++) {
		if (mechs[i].mech == AUTH_XOAUTH2 || mechs[i].mech == AUTH_OAUTHBEARER)
			continue;
		if (sasl_offered(mechs[i].mech, caps))
			return mechs[i].mech;
	}
	return AUTH_NONE;
}

char *
b64_encode(const unsigned char *in, size_t len)
{
	char *out = xmalloc(4 * ((len + 2) / 3) + 1);

	EVP_EncodeBlock((unsigned char *)out, in, (int)len);
	return out;
}

long
b64_decode(const char *in, unsigned char *out, size_t outlen)
{
	size_t n = strlen(in), pad = 0, i;

	if (n % 4 != 0 || n / 4 * 3 > outlen)
		return -1;
	for (i = 0; i < n; i++) {
		char c = in[i];
		if (!(isalnum((unsigned char)c) || c == '+' || c == '/' || (c == '=' && i >= n - 2)))
			return -1;
		if (c == '=' && i == n - 2 && in[n - 1] != '=')
			return -1;
	}
	if (n == 0)
		return 0;
	if (in[n - 1] == '=')
		pad++;
	if (in[n - 2] == '=')
		pad++;
	int r = EVP_DecodeBlock(out, (const unsigned char *)in, (int)n);
	if (r < 0)
		return -1;
	return r - (long)pad;
}

void
sasl_free_str(char *p)
{
	if (p != NULL) {
		OPENSSL_cleanse(p, strlen(p));
		free(p);
	}
}

void
sasl_init(struct sasl *s, enum auth_mech mech, const char *user, const char *secret,
    const char *host, unsigned port)
{
	memset(s, 0, sizeof *s);
	s->mech = mech;
	s->user = xstrdup(user);
	s->secret = xstrdup(secret);
	s->host = xstrdup(host);
	s->port = port;
}

void
sasl_clear(struct sasl *s)
{
	sasl_free_str(s->user);
	sasl_free_str(s->secret);
	sasl_free_str(s->client_first_bare);
	free(s->host);
	OPENSSL_cleanse(s, sizeof *s);
}

/* "AUTH MECH base64(buf)" */
static char *
auth_line(const char *mech, const unsigned char *buf, size_t len)
{
	char *b = b64_encode(buf, len);
	char *line = xasprintf("AUTH %s %s", mech, b);

	sasl_free_str(b);
	return line;
}

/* SCRAM saslname: ',' and '=' escaped (RFC 5802 5.1). */
static char *
scram_name(const char *user)
{
	size_t n = 0;
	const char *p;
	char *out, *o;

	for (p = user; *p; p++)
		n += (*p == ',' || *p == '=') ? 3 : 1;
	o = out = xmalloc(n + 1);
	for (p = user; *p; p++) {
		if (*p == ',') {
			memcpy(o, "=2C", 3);
			o += 3;
		} else if (*p == '=') {
			memcpy(o, "=3D", 3);
			o += 3;
		} else
			*o++ = *p;
	}
	*o = '\0';
	return out;
}

/*
 * "AUTH MECH base64(formatted)"; the formatted text may hold NULs (PLAIN),
 * which is why the length comes from vsnprintf.  The buffer is wiped.
 */
static char *
auth_linef(const char *mech, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static char *
auth_linef(const char *mech, const char *fmt, ...)
{
	unsigned char buf[8192];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf((char *)buf, sizeof buf, fmt, ap);
	va_end(ap);
	char *line = n < 0 || (size_t)n >= sizeof buf ? NULL : auth_line(mech, buf, (size_t)n);
	OPENSSL_cleanse(buf, sizeof buf);
	return line;
}

char *
sasl_initial(struct sasl *s)
{
	char *name, *line;

	s->step = 0;
	switch (s->mech) {
	case AUTH_PLAIN:
		return auth_linef("PLAIN", "%c%s%c%s", 0, s->user, 0, s->secret);
	case AUTH_LOGIN:
		return xstrdup("AUTH LOGIN");
	case AUTH_CRAM_MD5:
		return xstrdup("AUTH CRAM-MD5");
	case AUTH_SCRAM_SHA_256: {
		unsigned char rnd[16];
		RAND_bytes(rnd, sizeof rnd);
		for (size_t i = 0; i < sizeof rnd; i++)
			snprintf(s->cnonce + 2 * i, 3, "%02x", rnd[i]);
		name = scram_name(s->user);
		s->client_first_bare = xasprintf("n=%s,r=%s", name, s->cnonce);
		free(name);
		return auth_linef("SCRAM-SHA-256", "n,,%s", s->client_first_bare);
	}
	case AUTH_XOAUTH2:
		return auth_linef("XOAUTH2", "user=%s\001auth=Bearer %s\001\001", s->user, s->secret);
	case AUTH_OAUTHBEARER:
		name = scram_name(s->user);	/* the same escaping (RFC 7628 3.1) */
		line = auth_linef("OAUTHBEARER", "n,a=%s,\001host=%s\001port=%u\001auth=Bearer %s\001\001",
		    name, s->host, s->port, s->secret);
		free(name);
		return line;
	case AUTH_NONE:
	case AUTH_AUTO:
		break;
	}
	return NULL;
}

static char *
b64_str(const char *s)
{
	return b64_encode((const unsigned char *)s, strlen(s));
}

/* Value of attribute `a` ("r", "s", "i", "v", "e") in a SCRAM message; NULL when absent. */
static const char *
scram_attr(const char *msg, char a, size_t *len)
{
	const char *p = msg;

	while (p != NULL && *p) {
		if (p[0] == a && p[1] == '=') {
			const char *end = strchr(p, ',');
			*len = end ? (size_t)(end - p - 2) : strlen(p + 2);
			return p + 2;
		}
		p = strchr(p, ',');
		if (p)
			p++;
	}
	return NULL;
}

static void
hmac256(const unsigned char *key, size_t klen, const void *data, size_t dlen, unsigned char out[32])
{
	unsigned int olen = 32;

	HMAC(EVP_sha256(), key, (int)klen, data, dlen, out, &olen);
}

static char *
scram_client_final(struct sasl *s, const char *server_first, char *errbuf, size_t errlen)
{
	size_t rlen, slen, ilen;
	const char *r = scram_attr(server_first, 'r', &rlen);
	const char *salt_b64 = scram_attr(server_first, 's', &slen);
	const char *it = scram_attr(server_first, 'i', &ilen);
	unsigned char salt[512], salted[32], ckey[32], skey[32], stored[32], csig[32], proof[32];
	char tmp[600], *without_proof, *authmsg, *proof_b64, *final, *out;
	long saltlen;
	unsigned long iter = 0;

	if (r == NULL || salt_b64 == NULL || it == NULL || rlen < strlen(s->cnonce) ||
	    strncmp(r, s->cnonce, strlen(s->cnonce)) != 0 || slen >= sizeof tmp || ilen == 0 || ilen > 7) {
		snprintf(errbuf, errlen, "SCRAM: malformed server-first-message");
		return NULL;
	}
	for (size_t i = 0; i < ilen; i++) {
		if (!isdigit((unsigned char)it[i])) {
			snprintf(errbuf, errlen, "SCRAM: bad iteration count");
			return NULL;
		}
		iter = iter * 10 + (unsigned long)(it[i] - '0');
	}
	if (iter == 0 || iter > SCRAM_ITER_MAX) {
		snprintf(errbuf, errlen, "SCRAM: iteration count %lu out of range", iter);
		return NULL;
	}
	memcpy(tmp, salt_b64, slen);
	tmp[slen] = '\0';
	if ((saltlen = b64_decode(tmp, salt, sizeof salt)) <= 0) {
		snprintf(errbuf, errlen, "SCRAM: bad salt");
		return NULL;
	}
	/* SaltedPassword := Hi(password, salt, i); the password is used as given (no SASLprep). */
	PKCS5_PBKDF2_HMAC(s->secret, (int)strlen(s->secret), salt, (int)saltlen, (int)iter,
	    EVP_sha256(), sizeof salted, salted);
	hmac256(salted, sizeof salted, "Client Key", 10, ckey);
	SHA256(ckey, sizeof ckey, stored);
	without_proof = xasprintf("c=biws,r=%.*s", (int)rlen, r);
	authmsg = xasprintf("%s,%s,%s", s->client_first_bare, server_first, without_proof);
	hmac256(stored, sizeof stored, authmsg, strlen(authmsg), csig);
	for (int i = 0; i < 32; i++)
		proof[i] = ckey[i] ^ csig[i];
	hmac256(salted, sizeof salted, "Server Key", 10, skey);
	hmac256(skey, sizeof skey, authmsg, strlen(authmsg), s->server_sig);
	proof_b64 = b64_encode(proof, sizeof proof);
	final = xasprintf("%s,p=%s", without_proof, proof_b64);
	out = b64_str(final);
	OPENSSL_cleanse(salted, sizeof salted);
	OPENSSL_cleanse(ckey, sizeof ckey);
	OPENSSL_cleanse(skey, sizeof skey);
	free(without_proof);
	free(authmsg);
	free(proof_b64);
	free(final);
	return out;
}

static int
scram_verify_server(struct sasl *s, const char *server_final, char *errbuf, size_t errlen)
{
	size_t vlen, elen;
	const char *v = scram_attr(server_final, 'v', &vlen);
	const char *e = scram_attr(server_final, 'e', &elen);
	unsigned char sig[64];
	char tmp[128];

	if (e != NULL) {
		snprintf(errbuf, errlen, "SCRAM: server error: %.*s", (int)(elen > 100 ? 100 : elen), e);
		return -1;
	}
	if (v == NULL || vlen >= sizeof tmp) {
		snprintf(errbuf, errlen, "SCRAM: malformed server-final-message");
		return -1;
	}
	memcpy(tmp, v, vlen);
	tmp[vlen] = '\0';
	if (b64_decode(tmp, sig, sizeof sig) != 32 || CRYPTO_memcmp(sig, s->server_sig, 32) != 0) {
		snprintf(errbuf, errlen, "SCRAM: the server signature does not match: not the server we share the password with");
		return -1;
	}
	s->server_verified = 1;
	return 0;
}

/* Keep a printable copy of an OAuth error JSON for the log. */
static void
keep_server_error(struct sasl *s, const unsigned char *buf, long n)
{
	long i, o = 0;

	for (i = 0; i < n && o + 1 < (long)sizeof s->server_error; i++)
		s->server_error[o++] = (buf[i] >= 0x20 && buf[i] < 0x7f) ? (char)buf[i] : ' ';
	s->server_error[o] = '\0';
}

char *
sasl_respond(struct sasl *s, const char *challenge, char *errbuf, size_t errlen)
{
	unsigned char buf[CHALLENGE_MAX + 1];
	long n;

	if (strlen(challenge) > CHALLENGE_MAX || (n = b64_decode(challenge, buf, CHALLENGE_MAX)) < 0) {
		snprintf(errbuf, errlen, "%s: the server's challenge is not base64", sasl_mech_name(s->mech));
		return NULL;
	}
	buf[n] = '\0';
	s->step++;
	switch (s->mech) {
	case AUTH_LOGIN:
		/* "Username:" then "Password:"; servers word them differently, the order is what counts */
		if (s->step == 1)
			return b64_str(s->user);
		if (s->step == 2)
			return b64_str(s->secret);
		break;
	case AUTH_CRAM_MD5: {
		unsigned char md[EVP_MAX_MD_SIZE];
		unsigned int mdlen = 0;
		char hex[2 * EVP_MAX_MD_SIZE + 1], *resp, *out;
		if (s->step != 1 || n == 0)
			break;
		HMAC(EVP_md5(), s->secret, (int)strlen(s->secret), buf, (size_t)n, md, &mdlen);
		for (unsigned i = 0; i < mdlen; i++)
			snprintf(hex + 2 * i, 3, "%02x", md[i]);
		resp = xasprintf("%s %s", s->user, hex);
		out = b64_str(resp);
		sasl_free_str(resp);
		return out;
	}
	case AUTH_SCRAM_SHA_256:
		if (memchr(buf, '\0', (size_t)n) != NULL)
			break;
		if (s->step == 1)
			return scram_client_final(s, (const char *)buf, errbuf, errlen);
		if (s->step == 2) {
			if (scram_verify_server(s, (const char *)buf, errbuf, errlen) == -1)
				return NULL;
			return xstrdup("");
		}
		break;
	case AUTH_XOAUTH2:
		/* an error report in JSON; answered with an empty line, then 535 follows */
		keep_server_error(s, buf, n);
		return xstrdup("");
	case AUTH_OAUTHBEARER:
		keep_server_error(s, buf, n);
		return b64_str("\001");
	case AUTH_PLAIN:
		/* PLAIN went with the command; an empty challenge asks for it again */
		if (s->step == 1 && n == 0) {
			char tmp[8192];
			int len = snprintf(tmp, sizeof tmp, "%c%s%c%s", 0, s->user, 0, s->secret);
			if (len < 0 || (size_t)len >= sizeof tmp)
				break;
			char *out = b64_encode((unsigned char *)tmp, (size_t)len);
			OPENSSL_cleanse(tmp, sizeof tmp);
			return out;
		}
		break;
	case AUTH_NONE:
	case AUTH_AUTO:
		break;
	}
	snprintf(errbuf, errlen, "%s: unexpected challenge from the server", sasl_mech_name(s->mech));
	return NULL;
}

int
sasl_finish(struct sasl *s, char *errbuf, size_t errlen)
{
	if (s->mech == AUTH_SCRAM_SHA_256 && !s->server_verified) {
		snprintf(errbuf, errlen, "SCRAM: the server accepted us without proving it knows the password");
		return -1;
	}
	return 0;
}

/*
 * tls: see tls.h.
 *
 * The system's CA store, for a smarthost that names neither tls_ca_file
 * nor tls_ca_path, is loaded into its context by the first connection
 * (tls_ssl_new()), not by tls_ctx_new(): a daemon that has not sent
 * through that smarthost yet, or through a backup it never uses, need
 * not hold it.  No check moves later: loading the store fails only when
 * it cannot allocate (a store missing or unreadable leaves it empty, then
 * as now, and the peer fails verification).  A context marked for it
 * carries the ex_data flag DEFAULT_CAS_PENDING; it is cleared once the
 * store is loaded.
 *
 * What is loaded is the store's hashed directory (OpenSSL's default,
 * /usr/lib/ssl/certs -> /etc/ssl/certs on Debian, or SSL_CERT_DIR), from
 * which a verification reads only the certificates its chain names, when
 * the directory holds any hashed name; only without one the bundle file
 * too (OpenSSL's default paths, SSL_CERT_FILE).  update-ca-certificates
 * keeps both with the same certificates, and the bundle parsed whole
 * stays on the heap of each context that read it: about 1.4 MB for
 * Debian's 140 authorities, against about 0.45 MB for a first
 * verification through the directory (code and one certificate), and
 * nothing for the contexts after it.  The parse also ran on the event
 * loop (about 25 ms).
 */
#include "config.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls.h"
#include "xmalloc.h"

/* ex_data index of the "system CA store still to load" flag (see the top of the file) */
static int pending_idx = -1;
static char DEFAULT_CAS_PENDING[] = "system CA store not loaded yet";

/* "KEY: what PATH: reason" — the caller prefixes FILE:LINE: */
static void
ssl_err(char *errbuf, size_t errlen, const char *key, const char *what, const char *path)
{
	/* the first queued error is the cause (a missing file), the later ones its consequences */
	unsigned long e = ERR_peek_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;
	char msg[64];

	/* a failed fopen() is queued as "error 80000002": say which errno it holds */
	if (e != 0 && ERR_SYSTEM_ERROR(e))
		r = strerror(ERR_GET_REASON(e));
	if (r == NULL) {
		snprintf(msg, sizeof msg, "OpenSSL error %lx", e);
		r = msg;
	}
	snprintf(errbuf, errlen, "%s: %s%s%s: %s", key, what, path ? " " : "", path ? path : "", r);
	ERR_clear_error();
}

SSL_CTX *
tls_ctx_new(const struct smarthost_conf *sh, char *errbuf, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL) {
		ssl_err(errbuf, errlen, "tls", "cannot create a TLS context", NULL);
		return NULL;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (SSL_CTX_set_min_proto_version(ctx, sh->tls_min_version ? sh->tls_min_version : TLS1_2_VERSION) != 1) {
		ssl_err(errbuf, errlen, "tls_min_version", "not supported by this OpenSSL", NULL);
		goto fail;
	}
	if (sh->tls_ciphers != NULL && SSL_CTX_set_cipher_list(ctx, sh->tls_ciphers) != 1) {
		ssl_err(errbuf, errlen, "tls_ciphers", "no usable cipher in the list", NULL);
		goto fail;
	}
	if (sh->tls_ca_file != NULL || sh->tls_ca_path != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, sh->tls_ca_file, sh->tls_ca_path) != 1) {
			ssl_err(errbuf, errlen, sh->tls_ca_file ? "tls_ca_file" : "tls_ca_path",
			    "cannot load CA certificates from", sh->tls_ca_file ? sh->tls_ca_file : sh->tls_ca_path);
			goto fail;
		}
	} else {
		if (pending_idx == -1 && (pending_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL)) == -1) {
			ssl_err(errbuf, errlen, "tls", "cannot create a TLS context", NULL);
			goto fail;
		}
		if (SSL_CTX_set_ex_data(ctx, pending_idx, DEFAULT_CAS_PENDING) != 1) {
			ssl_err(errbuf, errlen, "tls", "cannot create a TLS context", NULL);
			goto fail;
		}
	}
	if (sh->tls_client_cert != NULL) {
		const char *key = sh->tls_client_key ? sh->tls_client_key : sh->tls_client_cert;
		if (SSL_CTX_use_certificate_chain_file(ctx, sh->tls_client_cert) != 1) {
			ssl_err(errbuf, errlen, "tls_client_cert", "cannot load the certificate", sh->tls_client_cert);
			goto fail;
		}
		if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
			ssl_err(errbuf, errlen, sh->tls_client_key ? "tls_client_key" : "tls_client_cert", "cannot load the key", key);
			goto fail;
		}
		if (SSL_CTX_check_private_key(ctx) != 1) {
			ssl_err(errbuf, errlen, sh->tls_client_key ? "tls_client_key" : "tls_client_cert", "the key does not match the certificate in", key);
			goto fail;
		}
	}
	/* Sessions are not resumed across connections: each one is verified afresh. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

int
tls_file_first_expiry(const char *path, time_t *not_after, char *subject, size_t sublen,
    char *errbuf, size_t errlen)
{
	BIO *bio = BIO_new_file(path, "r");
	X509 *x;
	int n = 0;

	if (bio == NULL) {
		ssl_err(errbuf, errlen, path, "cannot open", NULL);
		return -1;
	}
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		struct tm tm;
		time_t t;

		if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1 &&
		    (t = timegm(&tm)) != (time_t)-1 && (n == 0 || t < *not_after)) {
			X509_NAME *name = X509_get_subject_name(x);
			*not_after = t;
			if (X509_NAME_get_text_by_NID(name, NID_commonName, subject, (int)sublen) < 0)
				X509_NAME_oneline(name, subject, (int)sublen);
			n++;
		}
		X509_free(x);
	}
	BIO_free(bio);
	ERR_clear_error();	/* the end of the file reads as an error */
	if (n == 0) {
		snprintf(errbuf, errlen, "%s: no certificate with a readable expiry date", path);
		return -1;
	}
	return 0;
}

static int
is_ip_literal(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* dir (one of a list separated by ':') holds a certificate by hash name: 8 hex digits, '.', digits. */
static int
has_hashed_names(const char *dirs)
{
	char *copy = xstrdup(dirs), *save = NULL, *d;
	int found = 0;

	for (d = strtok_r(copy, ":", &save); d != NULL && !found; d = strtok_r(NULL, ":", &save)) {
		DIR *dp = opendir(d);
		struct dirent *e;
		if (dp == NULL)
			continue;
		while (!found && (e = readdir(dp)) != NULL) {
			size_t n = strspn(e->d_name, "0123456789abcdef");
			found = n == 8 && e->d_name[8] == '.' && e->d_name[9] != '\0' &&
			    e->d_name[9 + strspn(e->d_name + 9, "0123456789")] == '\0';
		}
		closedir(dp);
	}
	free(copy);
	return found;
}

/* The system's store (see the top of the file): its hashed directory, else OpenSSL's default paths. */
static int
load_system_store(SSL_CTX *ctx)
{
	const char *dir = secure_getenv(X509_get_default_cert_dir_env());

	if (dir == NULL || *dir == '\0')
		dir = X509_get_default_cert_dir();
	if (has_hashed_names(dir))
		return SSL_CTX_load_verify_dir(ctx, dir);
	return SSL_CTX_set_default_verify_paths(ctx);
}

SSL *
tls_ssl_new(SSL_CTX *ctx, const char *host)
{
	SSL *ssl;

	if (pending_idx != -1 && SSL_CTX_get_ex_data(ctx, pending_idx) == DEFAULT_CAS_PENDING) {
		if (load_system_store(ctx) != 1)
			return NULL;
		SSL_CTX_set_ex_data(ctx, pending_idx, NULL);
	}
	if ((ssl = SSL_new(ctx)) == NULL)
		return NULL;
	if (is_ip_literal(host)) {
		/* RFC 6066 forbids SNI for addresses; verify against the IP SANs. */
		X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
	} else {
		SSL_set_tlsext_host_name(ssl, host);
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		SSL_set1_host(ssl, host);
	}
	return ssl;
}

/* "sha256:" + hex of the digest of the certificate, and of its public key (SPKI). */
static int
fingerprint_matches(X509 *cert, const char *want)
{
	unsigned char md[EVP_MAX_MD_SIZE], *der = NULL;
	unsigned int mdlen;
	char hex[2 * EVP_MAX_MD_SIZE + 8];
	int len, match = 0;

	if (strncmp(want, "sha256:", 7) != 0)
		return 0;
	want += 7;
	if (X509_digest(cert, EVP_sha256(), md, &mdlen) == 1) {
		for (unsigned i = 0; i < mdlen; i++)
			snprintf(hex + 2 * i, 3, "%02x", md[i]);
		match = strcasecmp(hex, want) == 0;
	}
	len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);
	if (!match && len > 0 && EVP_Digest(der, (size_t)len, md, &mdlen, EVP_sha256(), NULL) == 1) {
		for (unsigned i = 0; i < mdlen; i++)
			snprintf(hex + 2 * i, 3, "%02x", md[i]);
		match = strcasecmp(hex, want) == 0;
	}
	OPENSSL_free(der);
	return match;
}

void
tls_judge(SSL *ssl, int enforce, int verify, const char *fingerprint, struct tls_verdict *v)
{
	X509 *cert = SSL_get1_peer_certificate(ssl);
	long vr = SSL_get_verify_result(ssl);
	const char *c = SSL_get_cipher_name(ssl);

	memset(v, 0, sizeof *v);
	snprintf(v->version, sizeof v->version, "%s", SSL_get_version(ssl));
	snprintf(v->cipher, sizeof v->cipher, "%s", c ? c : "?");
	if (cert == NULL) {
		snprintf(v->reason, sizeof v->reason, "no certificate");
		snprintf(v->verify, sizeof v->verify, "fail (%s)", v->reason);
		v->trusted = !enforce;
		return;
	}
	if (fingerprint != NULL) {
		if (fingerprint_matches(cert, fingerprint)) {
			snprintf(v->verify, sizeof v->verify, "pinned");
			v->trusted = 1;
		} else {
			snprintf(v->reason, sizeof v->reason, "fingerprint mismatch");
			snprintf(v->verify, sizeof v->verify, "fail (%s)", v->reason);
			v->trusted = !enforce;
		}
	} else if (vr == X509_V_OK) {
		snprintf(v->verify, sizeof v->verify, "ok");
		v->trusted = 1;
	} else if (enforce && !verify) {
		snprintf(v->verify, sizeof v->verify, "off");
		v->trusted = 1;
	} else {
		snprintf(v->reason, sizeof v->reason, "%s", X509_verify_cert_error_string(vr));
		snprintf(v->verify, sizeof v->verify, "fail (%s)", v->reason);
		v->trusted = !enforce;
	}
	X509_free(cert);
}

void
tls_error_string(SSL *ssl, char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();
	char msg[256];

	(void)ssl;
	if (e == 0) {
		snprintf(buf, len, "TLS handshake failed");
		return;
	}
	ERR_error_string_n(e, msg, sizeof msg);
	ERR_clear_error();
	/* "error:0A000086:SSL routines::certificate verify failed" -> the reason part */
	const char *r = strrchr(msg, ':');
	snprintf(buf, len, "TLS handshake failed: %s", r && r[1] ? r + 1 : msg);
}

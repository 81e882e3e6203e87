/*
 * tls: the OpenSSL side of the delivery client — one SSL_CTX per
 * smarthost built from its tls_* keys, one SSL per connection with SNI and
 * the name (or IP) to verify, and the judgement of the peer after the
 * handshake: verify=ok | pinned | off | fail (REASON).
 *
 * Verification is never left to the handshake itself (SSL_VERIFY_NONE):
 * the handshake completes, then tls_judge() decides with the policy in
 * hand, so that opportunistic mode can log the result it does not enforce.
 */
#ifndef MAILRELAY_TLS_H
#define MAILRELAY_TLS_H

#include <stddef.h>
#include <time.h>

#include <openssl/ssl.h>

#include "conf/conf.h"

/* NULL with errbuf ("FILE: what") when a CA, certificate or key cannot be used. */
SSL_CTX *tls_ctx_new(const struct smarthost_conf *sh, char *errbuf, size_t errlen);

/*
 * The certificate of a PEM file (one, or a chain or CA bundle) that
 * expires first: its notAfter and subject CN (or whole subject).  -1 with
 * errbuf ("PATH: why") when the file holds no certificate.  For
 * check-config, which warns before a certificate lapses; the daemon itself
 * loads expired files as it always did, and the server judges them.
 */
int tls_file_first_expiry(const char *path, time_t *not_after, char *subject, size_t sublen,
    char *errbuf, size_t errlen);

/*
 * A new SSL for one connection to host (SNI for names; name or IP to
 * verify); NULL when it cannot be made.  The first one of a context that
 * uses the system's CA store loads that store (see tls.c).
 */
SSL *tls_ssl_new(SSL_CTX *ctx, const char *host);

struct tls_verdict {
	int trusted;            /* the policy may send mail over this connection */
	char version[16];       /* "TLSv1.3" */
	char cipher[64];
	char verify[160];       /* "ok", "pinned", "off", "fail (hostname mismatch)" */
	char reason[128];       /* for "fail": the reason alone */
};

/*
 * Judge the peer after the handshake.  enforce: tls = required/implicit
 * (verification failures make it untrusted unless tls_verify = no);
 * fingerprint: "sha256:HEX" or NULL (a match pins, a mismatch fails).
 */
void tls_judge(SSL *ssl, int enforce, int verify, const char *fingerprint, struct tls_verdict *v);

/* The last OpenSSL error (or the handshake's) as one short line. */
void tls_error_string(SSL *ssl, char *buf, size_t len);

#endif

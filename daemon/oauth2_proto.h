/*
 * oauth2_proto: the pieces of OAuth 2.0 that the daemon (daemon/oauth2.c)
 * and the CLI (mailrelay oauth2) share, without I/O policy: the form of a
 * token request, the judgement of a token endpoint's answer (RFC 6749
 * 5.1 and 5.2, parsed with json-c under a nesting bound), the JWT client
 * assertion of RFC 7523 signed with OpenSSL, and the two files a token
 * lives in (the refresh token file, the cache in the spool), both written
 * atomically: write, fsync, rename, fsync the directory.
 *
 * Secrets: every buffer that held one is wiped with explicit_bzero before
 * it is freed (oauth2_wipe_free()).  Nothing here logs.
 */
#ifndef MAILRELAY_OAUTH2_PROTO_H
#define MAILRELAY_OAUTH2_PROTO_H

#include <stddef.h>
#include <time.h>

#include <openssl/evp.h>

#include "conf/conf.h"

/* What the daemon holds for one smarthost's oauth2 section, read as root with the config. */
struct oauth2_creds {
	char     *client_secret;    /* client_secret_file's first line, or NULL */
	EVP_PKEY *key;              /* client_key (RSA), or NULL */
	char     *x5t_s256;         /* base64url SHA-256 of the certificate's DER */
	char     *ca_blob;          /* tls_ca_file's contents, or NULL: system store */
	size_t    ca_len;
	unsigned long serial;       /* unique per load: a reload makes new credentials */
};

/* Load them; NULL with "KEY: why" in errbuf. daemon_gid: as for password_file. */
struct oauth2_creds *oauth2_creds_load(const struct smarthost_conf *sh, gid_t daemon_gid,
    char *errbuf, size_t errlen);
void oauth2_creds_free(struct oauth2_creds *c);

/* A token endpoint's answer, judged. */
enum oauth2_outcome {
	OAUTH2_OK = 0,      /* access_token in hand */
	OAUTH2_PERSON,      /* a person must act: invalid_grant, invalid_client, consent, AADSTS... */
	OAUTH2_PENDING,     /* device code: authorization_pending */
	OAUTH2_SLOW_DOWN,   /* device code: slow_down */
	OAUTH2_TRANSIENT    /* 5xx, garbage, temporarily_unavailable: try again later */
};

struct oauth2_token {
	char  *access_token;
	char  *refresh_token;       /* NULL when none was sent */
	char  *scope;               /* as granted, or NULL */
	char  *audience;            /* the access token's aud when it is a JWT, or NULL */
	long   expires_in;          /* seconds; 3600 when the endpoint did not say */
	char   error[64];           /* error code of a refusal */
	char   why[512];            /* one line: what the endpoint said, printable, no secret */
};

/*
 * Judge an answer (HTTP status and body).  Fills t (free with
 * oauth2_token_clear()).  The text in t->why is the error code and
 * description, bounded and with control characters replaced.
 */
enum oauth2_outcome oauth2_parse_answer(int status, const char *body, size_t len,
    struct oauth2_token *t);
void oauth2_token_clear(struct oauth2_token *t);

/*
 * The form of a token request for sh's grant (refresh token and password
 * as given; either may be NULL when the grant does not use it).  NULL and
 * errbuf when it cannot be built (a signing failure).  Wipe and free it
 * with oauth2_wipe_free().
 */
char *oauth2_token_form(const struct smarthost_conf *sh, const struct oauth2_creds *c,
    const char *refresh_token, const char *password, char *errbuf, size_t errlen);

/* Append "&name=value" (value percent-encoded) to *form, growing it; wipes the old buffer. */
void oauth2_form_add(char **form, const char *name, const char *value);

/* The client credential part (secret or assertion) for extra requests such as device code polls. */
int oauth2_form_client_auth(char **form, const struct smarthost_conf *sh,
    const struct oauth2_creds *c, char *errbuf, size_t errlen);

void oauth2_wipe_free(char *s);

/* base64url without padding. */
char *oauth2_b64url(const unsigned char *in, size_t len);

/*
 * Read the refresh token file: the first line; refused when others may
 * read it or when it is not a regular file.  NULL with errbuf.
 */
char *oauth2_read_refresh_file(const char *path, char *errbuf, size_t errlen);
/*
 * Replace the refresh token file atomically (a temporary file beside it,
 * mode 0600, fsync, rename, fsync of the directory); -1 with errbuf.
 */
int oauth2_write_refresh_file(const char *path, const char *token, char *errbuf, size_t errlen);

/* The cache of an access token in the spool: spool_dir/oauth2-NAME.token. */
struct oauth2_cached {
	char  *access_token;
	time_t obtained, expires;
	char  *scope, *audience;
	char   key[65];             /* oauth2_cache_key() of the section it was obtained for */
};
/* A hash of what the token depends on (client, endpoint, scope, grant, user): a change voids the cache. */
void oauth2_cache_key(const struct smarthost_conf *sh, char out[65]);
char *oauth2_cache_path(const char *spool_dir, const char *name);
int oauth2_cache_write(const char *spool_dir, const char *name, const struct oauth2_cached *c,
    char *errbuf, size_t errlen);
/* 0 and c filled, -1 when there is none or it does not parse. */
int oauth2_cache_read(const char *spool_dir, const char *name, struct oauth2_cached *c);
void oauth2_cached_clear(struct oauth2_cached *c);

#endif

/*
 * sasl: the client side of the SMTP AUTH mechanisms (RFC 4954): PLAIN
 * (RFC 4616), LOGIN, CRAM-MD5 (RFC 2195), SCRAM-SHA-256 (RFC 5802, 7677,
 * with the server's signature verified), XOAUTH2 and OAUTHBEARER
 * (RFC 7628).  No I/O: the session sends what these functions return and
 * feeds back each 334 challenge.  Every string returned is heap memory the
 * caller frees with sasl_free_str() (which wipes it); secrets are wiped by
 * sasl_clear().
 */
#ifndef MAILRELAY_SASL_H
#define MAILRELAY_SASL_H

#include <stddef.h>

#include "conf/conf.h"
#include "smtp_reply.h"

struct sasl {
	enum auth_mech mech;
	int step;
	char *user, *secret;
	char *host;                     /* OAUTHBEARER */
	unsigned port;
	/* SCRAM */
	char cnonce[33];
	char *client_first_bare;
	unsigned char server_sig[32];
	int server_verified;
	/* XOAUTH2/OAUTHBEARER: the server's error, decoded */
	char server_error[512];
};

/* The mechanism to use: the configured one if offered, else for AUTH_AUTO the strongest offered.  AUTH_NONE when there is none. */
enum auth_mech sasl_choose(enum auth_mech configured, const struct smtp_caps *caps);
/* "SCRAM-SHA-256" */
const char *sasl_mech_name(enum auth_mech m);
/* Is mech in the server's AUTH list? */
int sasl_offered(enum auth_mech m, const struct smtp_caps *caps);

void sasl_init(struct sasl *s, enum auth_mech mech, const char *user, const char *secret,
    const char *host, unsigned port);
/* The AUTH command line, e.g. "AUTH PLAIN AHVzZXIAcGFzcw==". */
char *sasl_initial(struct sasl *s);
/* The response line to a 334 challenge (text after "334 "); NULL with errbuf on a protocol error. */
char *sasl_respond(struct sasl *s, const char *challenge, char *errbuf, size_t errlen);
/* After 235: 0 when the mechanism is satisfied (SCRAM: the server proved itself), -1 with errbuf. */
int sasl_finish(struct sasl *s, char *errbuf, size_t errlen);
void sasl_clear(struct sasl *s);
void sasl_free_str(char *p);

/* Base64 helpers (RFC 4648, no line breaks). Decoding rejects garbage; returns length or -1. */
char *b64_encode(const unsigned char *in, size_t len);
long b64_decode(const char *in, unsigned char *out, size_t outlen);

#endif

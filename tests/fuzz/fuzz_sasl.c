/*
 * Fuzz target for the SASL client's handling of server challenges
 * (daemon/sasl.c): base64 decoding and the SCRAM, CRAM-MD5, LOGIN, PLAIN,
 * XOAUTH2 and OAUTHBEARER steps.
 * fuzz-sources: daemon/sasl.c lib/xmalloc.c lib/log.c
 * fuzz-libs: -lcrypto
 *
 * The first byte picks the mechanism; the rest is split at '\n' into up
 * to four challenges (a challenge that decodes is also re-encoded and
 * decoded again, which must give the same bytes; non-canonical padding
 * bits are accepted, as most decoders do).
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/sasl.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const enum auth_mech pick[] = {
	AUTH_PLAIN, AUTH_LOGIN, AUTH_CRAM_MD5, AUTH_SCRAM_SHA_256, AUTH_XOAUTH2, AUTH_OAUTHBEARER,
};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sasl s;
	char err[256], *line, *copy, *p, *next;
	int steps = 0;

	log_init("fuzz", LOG_TO_STDERR, LOG_CRIT);
	if (size < 1 || size > 20000)
		return 0;
	sasl_init(&s, pick[data[0] % (sizeof pick / sizeof pick[0])], "user,=name", "secret",
	    "smtp.example.com", 587);
	line = sasl_initial(&s);
	if (line == NULL || strncmp(line, "AUTH ", 5) != 0)
		abort();
	sasl_free_str(line);

	copy = malloc(size);
	memcpy(copy, data + 1, size - 1);
	copy[size - 1] = '\0';
	for (p = copy; p != NULL && steps < 4; p = next, steps++) {
		next = strchr(p, '\n');
		if (next != NULL)
			*next++ = '\0';
		unsigned char dec[8192];
		long n = b64_decode(p, dec, sizeof dec);
		if (n > (long)sizeof dec)
			abort();
		if (n >= 0) {
			/* decoding what we encode gives the bytes back */
			unsigned char again[8192];
			char *re = b64_encode(dec, (size_t)n);
			if (b64_decode(re, again, sizeof again) != n || memcmp(again, dec, (size_t)n) != 0)
				abort();
			free(re);
		}
		err[0] = '\0';
		char *resp = sasl_respond(&s, p, err, sizeof err);
		if (resp == NULL) {
			if (err[0] == '\0')
				abort();	/* a refusal always says why */
			break;
		}
		sasl_free_str(resp);
	}
	err[0] = '\0';
	if (sasl_finish(&s, err, sizeof err) == -1 && err[0] == '\0')
		abort();
	free(copy);
	sasl_clear(&s);
	return 0;
}

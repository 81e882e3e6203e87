/*
 * Fuzz target for the judgement of a token endpoint's answer
 * (daemon/oauth2_proto.c, oauth2_parse_answer()): JSON from the network,
 * parsed with json-c under a depth bound, and the access token's JWT
 * payload decoded for its audience.
 * fuzz-sources: daemon/oauth2_proto.c daemon/oauth2_state.c daemon/secretfile.c lib/xmalloc.c lib/log.c lib/util.c
 * fuzz-libs: -ljson-c -lcrypto
 *
 * The first two bytes pick the HTTP status (200, 400, 401, 500...); the
 * rest is the body.  Whatever the outcome, the text kept for the log must
 * be one printable line.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/oauth2_proto.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int statuses[] = { 200, 400, 401, 403, 429, 500, 503, 0 };
	struct oauth2_token t;

	log_init("fuzz", LOG_TO_STDERR, LOG_CRIT);
	if (size < 1 || size > 65536)
		return 0;
	char *body = malloc(size);
	memcpy(body, data + 1, size - 1);
	body[size - 1] = '\0';
	oauth2_parse_answer(statuses[data[0] % 8], body, size - 1, &t);
	for (const char *p = t.why; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			abort();
	oauth2_token_clear(&t);
	free(body);
	return 0;
}

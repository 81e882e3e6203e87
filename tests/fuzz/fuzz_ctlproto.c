/*
 * Fuzz target for the control protocol parser (lib/ctlproto.c).
 * fuzz-sources: lib/ctlproto.c
 *
 * A request that parses has a known verb and only well-formed queue ids
 * (never anything that could become a path); a refused one always comes
 * with a reason.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctlproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ctl_req req;
	char err[200];

	err[0] = '\0';
	if (ctl_parse((const char *)data, size, &req, err, sizeof err) == 0) {
		if (req.verb < CTL_FLUSH || req.verb > CTL_SHOW || req.nids > CTL_ARGS_MAX)
			abort();
		for (size_t i = 0; i < req.nids; i++)
			if (!ctl_id_valid(req.ids[i], strlen(req.ids[i])) || strchr(req.ids[i], '/') != NULL)
				abort();
	} else if (err[0] == '\0' || memchr(err, '\n', strlen(err)) != NULL)
		abort();
	return 0;
}

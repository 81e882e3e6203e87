/*
 * Fuzz target for the maildrop header parser (spool/maildrop.c): any
 * group member can write a drop file, so the daemon reads it as hostile.
 * fuzz-sources: spool/maildrop.c lib/xmalloc.c lib/log.c lib/util.c
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spool/maildrop.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct maildrop_env e;
	char err[256];
	size_t off, i, j;

	err[0] = '\0';
	if (maildrop_parse((const char *)data, size, &e, &off, err, sizeof err) == -1) {
		if (err[0] == '\0')
			abort();
		return 0;
	}
	if (off > size || e.sender == NULL || e.nrcpt == 0)
		abort();
	for (i = 0; i < e.nrcpt; i++) {
		if (e.rcpts[i][0] == '\0' || strlen(e.rcpts[i]) > 256)
			abort();
		for (j = 0; e.rcpts[i][j]; j++)
			if ((unsigned char)e.rcpts[i][j] < 0x20)
				abort();
	}
	maildrop_env_free(&e);
	return 0;
}

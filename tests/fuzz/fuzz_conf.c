/* fuzz-sources: conf/conf.c lib/xmalloc.c lib/log.c */
/* fuzz-libs: -lconfuse */
/*
 * libFuzzer target for conf_load(): the input is a config file.  It goes
 * through a memfd (no disk traffic, nothing left behind) opened by its
 * /proc path, since conf_load() takes a path.
 *
 * Besides crashes and leaks, it checks the contract of the result: either
 * a config, or NULL with a non-empty one-line message naming the file.
 */
#include "config.h"

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <sys/mman.h>

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int memfd = -1;
static char path[64];

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512];
	struct config *conf;

	if (memfd == -1) {
		memfd = memfd_create("fuzz_conf", MFD_CLOEXEC);
		if (memfd == -1) {
			perror("memfd_create");
			abort();
		}
		snprintf(path, sizeof path, "/proc/self/fd/%d", memfd);
	}
	if (ftruncate(memfd, 0) != 0 ||
	    (size > 0 && pwrite(memfd, data, size, 0) != (ssize_t)size)) {
		perror("memfd write");
		abort();
	}

	conf = conf_load(path, err, sizeof err);
	if (conf == NULL) {
		if (err[0] == '\0' || strchr(err, '\n') != NULL ||
		    strncmp(err, path, strlen(path)) != 0) {
			fprintf(stderr, "bad error message: \"%s\"\n", err);
			abort();
		}
		return 0;
	}
	if (conf->hostname == NULL || conf->nlisten == 0 || conf->nretry == 0 ||
	    conf->concurrency < 1 || conf->concurrency > 256) {
		fprintf(stderr, "loaded an invalid config\n");
		abort();
	}
	for (size_t i = 0; i < conf->nsmarthosts; i++) {
		const struct smarthost_conf *sh = &conf->smarthosts[i];

		if (sh->host == NULL || sh->port < 1 || sh->port > 65535) {
			fprintf(stderr, "loaded an invalid smarthost\n");
			abort();
		}
	}
	for (size_t i = 0; i < conf->nroutes; i++)
		if (conf->routes[i].smarthost_index >= conf->nsmarthosts)
			abort();
	conf_free(conf);
	return 0;
}

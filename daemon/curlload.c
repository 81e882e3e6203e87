/*
 * curlload: see curlload.h.
 *
 * RTLD_NOW: every symbol the library needs is bound at load, so that an
 * unusable library fails here, with dlerror's reason, and never later in
 * the middle of a request.  RTLD_LOCAL: its symbols do not become
 * candidates for anything else the daemon loads.
 */
#include "config.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "curlload.h"

static struct curlload table;
static const struct curlload *loaded;

/* Fill t from handle h; -1 with errbuf naming the first missing symbol. */
static int
resolve(void *h, struct curlload *t, char *errbuf, size_t errlen)
{
	void *p;

	/*
	 * A data pointer converted to a function pointer: what POSIX requires
	 * of dlsym(), done through memcpy so that ISO C has nothing to say.
	 */
#define CURLLOAD_RESOLVE(name) \
	dlerror(); \
	if ((p = dlsym(h, "curl_" #name)) == NULL) { \
		const char *e = dlerror(); \
		snprintf(errbuf, errlen, "cannot load " CURLLOAD_SONAME ": %s", \
		    e ? e : "no symbol curl_" #name); \
		return -1; \
	} \
	memcpy(&t->name, &p, sizeof p);
	CURLLOAD_SYMBOLS(CURLLOAD_RESOLVE)
#undef CURLLOAD_RESOLVE
	return 0;
}

const struct curlload *
curlload_get(char *errbuf, size_t errlen)
{
	void *h;

	if (loaded != NULL)
		return loaded;
	dlerror();
	if ((h = dlopen(CURLLOAD_SONAME, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		const char *e = dlerror();
		snprintf(errbuf, errlen, "cannot load " CURLLOAD_SONAME ": %s", e ? e : "dlopen failed");
		return NULL;
	}
	if (resolve(h, &table, errbuf, errlen) == -1) {
		dlclose(h);
		return NULL;
	}
	const curl_version_info_data *v = table.version_info(CURLVERSION_NOW);
	if (v == NULL || v->version_num < CURLLOAD_VERSION_MIN) {
		snprintf(errbuf, errlen, "cannot load " CURLLOAD_SONAME ": version %s, older than %d.%d.%d",
		    v != NULL && v->version != NULL ? v->version : "unknown",
		    CURLLOAD_VERSION_MIN >> 16, (CURLLOAD_VERSION_MIN >> 8) & 0xff, CURLLOAD_VERSION_MIN & 0xff);
		dlclose(h);
		return NULL;
	}
	loaded = &table;
	return loaded;
}

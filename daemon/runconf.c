/*
 * runconf: see runconf.h.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runconf.h"
#include "tls.h"
#include "xmalloc.h"

struct runconf *
runconf_new(struct config *conf, char *errbuf, size_t errlen)
{
	struct runconf *rc = xcalloc(1, sizeof *rc);
	char err[512];
	size_t i;

	rc->conf = conf;
	rc->refs = 1;
	rc->tls = xcalloc(conf->nsmarthosts ? conf->nsmarthosts : 1, sizeof *rc->tls);
	for (i = 0; i < conf->nsmarthosts; i++) {
		const struct smarthost_conf *sh = &conf->smarthosts[i];
		if (sh->tls == TLS_DISABLED)
			continue;
		rc->tls[i] = tls_ctx_new(sh, err, sizeof err);
		if (rc->tls[i] == NULL) {
			/* err is "KEY: why"; name the line the key is on */
			char key[32];
			size_t n = strcspn(err, ":");
			snprintf(key, sizeof key, "%.*s", (int)n, err);
			unsigned line = conf_key_line(conf, sh, key);
			if (line == 0)
				line = conf_key_line(conf, sh, "tls");
			snprintf(errbuf, errlen, "%s:%u: %s (smarthost %s)",
			    conf->path ? conf->path : "(defaults)", line, err, sh->name);
			while (i-- > 0)
				SSL_CTX_free(rc->tls[i]);
			free(rc->tls);
			free(rc);
			return NULL;
		}
	}
	return rc;
}

struct runconf *
runconf_ref(struct runconf *rc)
{
	rc->refs++;
	return rc;
}

void
runconf_unref(struct runconf *rc)
{
	size_t i;

	if (rc == NULL || --rc->refs > 0)
		return;
	for (i = 0; i < rc->conf->nsmarthosts; i++)
		SSL_CTX_free(rc->tls[i]);
	conf_free(rc->conf);
	free(rc->tls);
	free(rc);
}

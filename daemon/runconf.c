/*
 * runconf: see runconf.h.
 */
#include "config.h"

#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "runconf.h"
#include "secret.h"
#include "tls.h"
#include "xmalloc.h"

static void
runconf_free_parts(struct runconf *rc, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		SSL_CTX_free(rc->tls[i]);
		if (rc->secret[i] != NULL) {
			OPENSSL_cleanse(rc->secret[i], strlen(rc->secret[i]));
			free(rc->secret[i]);
		}
		if (rc->cmd_secret[i] != NULL) {
			OPENSSL_cleanse(rc->cmd_secret[i], strlen(rc->cmd_secret[i]));
			free(rc->cmd_secret[i]);
		}
		oauth2_creds_free(rc->oauth2[i]);
	}
	free(rc->oauth2);
	free(rc->tls);
	free(rc->secret);
	free(rc->cmd_secret);
	free(rc);
}

struct runconf *
runconf_new(struct config *conf, char *errbuf, size_t errlen)
{
	struct runconf *rc = xcalloc(1, sizeof *rc);
	char err[512];
	size_t i;

	rc->conf = conf;
	rc->refs = 1;
	size_t n = conf->nsmarthosts ? conf->nsmarthosts : 1;
	rc->tls = xcalloc(n, sizeof *rc->tls);
	rc->secret = xcalloc(n, sizeof *rc->secret);
	rc->cmd_secret = xcalloc(n, sizeof *rc->cmd_secret);
	rc->oauth2 = xcalloc(n, sizeof *rc->oauth2);
	struct passwd *pw = getpwnam(conf->user);
	gid_t gid = pw ? pw->pw_gid : (gid_t)-1;
	for (i = 0; i < conf->nsmarthosts; i++) {
		const struct smarthost_conf *sh = &conf->smarthosts[i];
		err[0] = '\0';
		if (sh->password != NULL)
			rc->secret[i] = xstrdup(sh->password);
		else if (sh->password_file != NULL)
			rc->secret[i] = secret_read_file(sh->password_file, gid, err, sizeof err);
		/* OAuth2 credentials are read now too, as root, like password_file */
		if (err[0] == '\0' && sh->oauth2 != NULL)
			rc->oauth2[i] = oauth2_creds_load(sh, gid, err, sizeof err);
		if (err[0] == '\0' && sh->tls != TLS_DISABLED)
			rc->tls[i] = tls_ctx_new(sh, err, sizeof err);
		if (err[0] != '\0') {
			/* err is "KEY: why"; name the line the key is on */
			char key[32];
			snprintf(key, sizeof key, "%.*s", (int)strcspn(err, ":"), err);
			unsigned line = conf_key_line(conf, sh, key);
			if (line == 0)
				line = conf_key_line(conf, sh, "tls");
			if (line == 0)
				line = conf_key_line(conf, sh, "host");	/* required: the section's own line */
			snprintf(errbuf, errlen, "%s:%u: %s (smarthost %s)",
			    conf->path ? conf->path : "(defaults)", line, err, sh->name);
			rc->conf = conf;
			runconf_free_parts(rc, i + 1);
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
	if (rc == NULL || --rc->refs > 0)
		return;
	struct config *conf = rc->conf;
	runconf_free_parts(rc, conf->nsmarthosts);
	conf_free(conf);
}

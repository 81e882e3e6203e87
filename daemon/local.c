/*
 * local: see local.h.
 */
#include "config.h"

#include <sys/stat.h>

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "aliases.h"
#include "daemon.h"
#include "local.h"
#include "log.h"
#include "xmalloc.h"

static struct aliases table;
static char *loaded_path;
static struct stat loaded_st;
static int loaded;

static void
on_warn(const char *file, unsigned line, const char *msg, void *arg)
{
	(void)arg;
	if (file != NULL && line > 0)
		log_warnx("%s:%u: %s", file, line, msg);
	else
		log_warnx("aliases: %s", msg);
}

/* (Re)load when the configured file is new to us or changed on disk. */
static void
refresh(void)
{
	const char *path = D->conf->aliases_file;
	struct stat st;
	int exists;

	if (path == NULL || *path == '\0') {
		if (loaded) {
			aliases_free(&table);
			free(loaded_path);
			loaded_path = NULL;
			loaded = 0;
		}
		return;
	}
	exists = stat(path, &st) == 0;
	if (loaded && loaded_path != NULL && strcmp(loaded_path, path) == 0 &&
	    ((!exists && loaded_st.st_ino == 0) ||
	    (exists && st.st_ino == loaded_st.st_ino && st.st_size == loaded_st.st_size &&
	    st.st_mtim.tv_sec == loaded_st.st_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == loaded_st.st_mtim.tv_nsec)))
		return;
	aliases_free(&table);
	if (aliases_load(&table, path, on_warn, NULL) == -1)
		log_warn("%s: cannot read the aliases", path);
	else if (exists)
		aliases_check(&table, path, on_warn, NULL);
	free(loaded_path);
	loaded_path = xstrdup(path);
	memset(&loaded_st, 0, sizeof loaded_st);
	if (exists)
		loaded_st = st;
	loaded = 1;
	if (exists)
		log_info("%s: %zu aliases loaded", path, table.n);
}

struct add_ctx {
	struct spool_env *env;
	const char *orig;
};

static void
add_one(const char *addr, void *arg)
{
	struct add_ctx *c = arg;
	struct spool_env *env = c->env;
	size_t i;

	/* one copy per address, whatever the recipients it came from */
	for (i = 0; i < env->nrcpt; i++)
		if (strcasecmp(env->rcpts[i].addr, addr) == 0)
			return;
	env->rcpts = xreallocarray(env->rcpts, env->nrcpt + 1, sizeof *env->rcpts);
	struct spool_rcpt *r = &env->rcpts[env->nrcpt++];
	memset(r, 0, sizeof *r);
	r->addr = xstrdup(addr);
	r->orig = strcmp(c->orig, addr) != 0 ? xstrdup(c->orig) : NULL;	/* NULL: the same */
	r->status = RCPT_PENDING;
	r->last_reply = xstrdup("");
}

void
local_add_rcpt(struct spool_env *env, const char *rcpt)
{
	struct add_ctx c = { .env = env, .orig = rcpt };

	if (strchr(rcpt, '@') == NULL)
		refresh();
	aliases_expand(&table, rcpt, D->conf->admin_address, D->conf->hostname, add_one, &c,
	    on_warn, NULL);
}

void
local_load(void)
{
	refresh();
}

void
local_free(void)
{
	aliases_free(&table);
	free(loaded_path);
	loaded_path = NULL;
	loaded = 0;
}

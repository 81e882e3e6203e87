/*
 * aliases: see aliases.h.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "aliases.h"
#include "xmalloc.h"

#define ALIAS_DEPTH_MAX 20
#define ALIASES_FILE_MAX (16 * 1024 * 1024)
#define REFUSED_MAX 256		/* bytes of a refused target kept for sendmail -bv */

static const char why_refused[] = "mailrelay relays mail; it never runs commands or writes files";
static const char why_bad[] = "not a valid address";

static void
warnf(aliases_warn_fn warn, void *arg, const char *file, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void
warnf(aliases_warn_fn warn, void *arg, const char *file, unsigned line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (warn == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	warn(file, line, msg, arg);
}

static char *
trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

static void
add_refused(struct alias *al, const char *t, const char *why)
{
	al->refused = xreallocarray(al->refused, al->nrefused + 1, sizeof *al->refused);
	al->refused[al->nrefused].target = xstrndup(t, REFUSED_MAX);
	al->refused[al->nrefused++].why = why;
}

static void
alias_free(struct alias *al)
{
	for (size_t j = 0; j < al->ntargets; j++)
		free(al->targets[j]);
	free(al->targets);
	for (size_t j = 0; j < al->nrefused; j++)
		free(al->refused[j].target);
	free(al->refused);
	free(al->name);
}

/*
 * Split a target list at commas outside double quotes; strip quotes and <>.
 * Targets not kept are reported, counted (malformed ones) and remembered
 * with the reason, for sendmail -bv.
 */
static void
add_targets(struct aliases *a, struct alias *al, char *list, const char *file,
    aliases_warn_fn warn, void *arg)
{
	char *p = list, *start = list;
	int q = 0;

	for (;; p++) {
		if (*p == '"')
			q = !q;
		if ((*p == ',' && !q) || *p == '\0') {
			char end = *p;
			*p = '\0';
			char *t = trim(start);
			size_t n = strlen(t);
			if (n >= 2 && t[0] == '"' && t[n - 1] == '"') {
				t[n - 1] = '\0';
				t++;
			}
			n = strlen(t);
			if (n >= 2 && t[0] == '<' && t[n - 1] == '>') {
				t[n - 1] = '\0';
				t++;
			}
			if (*t == '|' || *t == '/' || strncasecmp(t, ":include:", 9) == 0) {
				warnf(warn, arg, file, al->line,
				    "alias %s: target \"%s\" refused (mailrelay relays mail; it never runs commands or writes files)",
				    al->name, t);
				add_refused(al, t, why_refused);
			} else if (*t != '\0') {
				int bad = 0;
				for (char *c = t; *c; c++)
					if ((unsigned char)*c < 0x20 || *c == ' ' || *c == '<' || *c == '>')
						bad = 1;
				if (bad || strlen(t) > 256) {
					warnf(warn, arg, file, al->line, "alias %s: bad target \"%.60s\" skipped", al->name, t);
					add_refused(al, t, why_bad);
					a->nerrors++;
				} else {
					al->targets = xreallocarray(al->targets, al->ntargets + 1, sizeof *al->targets);
					al->targets[al->ntargets++] = xstrdup(t);
				}
			}
			if (end == '\0')
				break;
			start = p + 1;
		}
	}
}

static void
add_alias(struct aliases *a, char *entry, unsigned line, const char *file, aliases_warn_fn warn, void *arg)
{
	char *colon = strchr(entry, ':');
	struct alias al;

	if (colon == NULL) {
		warnf(warn, arg, file, line, "no ':' in alias entry; skipped");
		a->nerrors++;
		return;
	}
	*colon = '\0';
	char *name = trim(entry);
	size_t n = strlen(name);
	if (n >= 2 && name[0] == '"' && name[n - 1] == '"') {
		name[n - 1] = '\0';
		name++;
	}
	int bad = *name == '\0' || strchr(name, '@') != NULL;
	for (char *c = name; *c; c++)
		if ((unsigned char)*c <= 0x20 || *c == 0x7f || *c == '<' || *c == '>' || *c == ',')
			bad = 1;
	if (bad) {
		warnf(warn, arg, file, line, "bad alias name \"%.60s\"; skipped", name);
		a->nerrors++;
		return;
	}
	memset(&al, 0, sizeof al);
	al.name = xstrdup(name);
	al.line = line;
	add_targets(a, &al, colon + 1, file, warn, arg);
	for (size_t i = 0; i < a->n; i++) {
		if (strcasecmp(a->v[i].name, al.name) == 0) {
			warnf(warn, arg, file, line, "alias %s defined again (first on line %u); the first one is used",
			    al.name, a->v[i].line);
			alias_free(&al);
			return;
		}
	}
	a->v = xreallocarray(a->v, a->n + 1, sizeof *a->v);
	a->v[a->n++] = al;
}

void
aliases_parse(struct aliases *a, const char *file, const char *text, size_t len,
    aliases_warn_fn warn, void *arg)
{
	char *entry = NULL;
	size_t elen = 0, i = 0;
	unsigned lineno = 0, entry_line = 0;

	memset(a, 0, sizeof *a);
	while (i < len) {
		const char *ls = text + i;
		const char *nl = memchr(ls, '\n', len - i);
		size_t ll = nl ? (size_t)(nl - ls) : len - i;
		i += ll + (nl ? 1 : 0);
		lineno++;
		if (memchr(ls, '\0', ll) != NULL) {
			warnf(warn, arg, file, lineno, "NUL byte; line skipped");
			a->nerrors++;
			continue;
		}
		char *line = xstrndup(ls, ll);
		int cont = line[0] == ' ' || line[0] == '\t';
		char *t = trim(line);
		if (*t == '#' || (*t == '\0' && !cont)) {
			free(line);
			continue;
		}
		if (cont && entry != NULL) {
			entry = xreallocarray(entry, elen + strlen(t) + 2, 1);
			entry[elen++] = ' ';
			strcpy(entry + elen, t);
			elen += strlen(t);
		} else {
			if (entry != NULL)
				add_alias(a, entry, entry_line, file, warn, arg);
			free(entry);
			entry = xstrdup(t);
			elen = strlen(entry);
			entry_line = lineno;
		}
		free(line);
	}
	if (entry != NULL)
		add_alias(a, entry, entry_line, file, warn, arg);
	free(entry);
}

int
aliases_load(struct aliases *a, const char *path, aliases_warn_fn warn, void *arg)
{
	FILE *f;
	char *buf;
	size_t n;

	memset(a, 0, sizeof *a);
	if ((f = fopen(path, "re")) == NULL)
		return errno == ENOENT ? 0 : -1;
	buf = xmalloc(ALIASES_FILE_MAX + 1);
	n = fread(buf, 1, ALIASES_FILE_MAX, f);
	fclose(f);
	aliases_parse(a, path, buf, n, warn, arg);
	free(buf);
	return 0;
}

void
aliases_free(struct aliases *a)
{
	for (size_t i = 0; i < a->n; i++)
		alias_free(&a->v[i]);
	free(a->v);
	memset(a, 0, sizeof *a);
}

static const struct alias *
find(const struct aliases *a, const char *name)
{
	for (size_t i = 0; i < a->n; i++)
		if (strcasecmp(a->v[i].name, name) == 0)
			return &a->v[i];
	return NULL;
}

struct expand {
	const struct aliases *a;
	const char *admin, *hostname;
	aliases_out_fn out;
	aliases_refused_fn refused;	/* NULL but for sendmail -bv */
	void *arg;
	aliases_warn_fn warn;
	void *warnarg;
	const char *path[ALIAS_DEPTH_MAX + 1];
	size_t depth;
	const struct alias **done;     /* aliases already expanded in this call */
	size_t ndone;
	char **seen;
	size_t nseen;
};

static void
emit(struct expand *x, const char *addr)
{
	for (size_t i = 0; i < x->nseen; i++)
		if (strcasecmp(x->seen[i], addr) == 0)
			return;
	x->seen = xreallocarray(x->seen, x->nseen + 1, sizeof *x->seen);
	x->seen[x->nseen++] = xstrdup(addr);
	x->out(addr, x->arg);
}

/* A name that stays local: admin_address, or name@hostname. */
static void
emit_local(struct expand *x, const char *name)
{
	if (x->admin != NULL && *x->admin != '\0') {
		emit(x, x->admin);
	} else {
		char *q = xasprintf("%s@%s", name, x->hostname);
		emit(x, q);
		free(q);
	}
}

static void
expand1(struct expand *x, const char *rcpt)
{
	const struct alias *al;

	if (strchr(rcpt, '@') != NULL) {
		emit(x, rcpt);
		return;
	}
	/* met again on the way down: it stays as it is */
	for (size_t i = 0; i < x->depth; i++) {
		if (strcasecmp(x->path[i], rcpt) == 0) {
			emit_local(x, rcpt);
			return;
		}
	}
	al = find(x->a, rcpt);
	/*
	 * Expanded once already in this call: everything it leads to has been
	 * reported.  Without this, "a: b, b / b: c, c / ..." would take time
	 * exponential in the depth.
	 */
	for (size_t i = 0; al != NULL && i < x->ndone; i++)
		if (x->done[i] == al)
			return;
	if (al != NULL && x->refused != NULL) {
		for (size_t i = 0; i < al->nrefused; i++)
			x->refused(al->name, &al->refused[i], x->arg);
		if (al->ntargets == 0) {
			x->done = xreallocarray(x->done, x->ndone + 1, sizeof *x->done);
			x->done[x->ndone++] = al;
		}
	}
	if (al == NULL || al->ntargets == 0) {
		emit_local(x, rcpt);
		return;
	}
	if (x->depth >= ALIAS_DEPTH_MAX) {
		warnf(x->warn, x->warnarg, NULL, 0, "alias %s: nested more than %d deep; delivered as local",
		    rcpt, ALIAS_DEPTH_MAX);
		emit_local(x, rcpt);
		return;
	}
	x->path[x->depth++] = al->name;
	for (size_t i = 0; i < al->ntargets; i++)
		expand1(x, al->targets[i]);
	x->depth--;
	x->done = xreallocarray(x->done, x->ndone + 1, sizeof *x->done);
	x->done[x->ndone++] = al;
}

size_t
aliases_expand(const struct aliases *a, const char *rcpt, const char *admin,
    const char *hostname, aliases_out_fn out, void *arg, aliases_warn_fn warn, void *warnarg)
{
	return aliases_verify(a, rcpt, admin, hostname, out, NULL, arg, warn, warnarg);
}

size_t
aliases_verify(const struct aliases *a, const char *rcpt, const char *admin,
    const char *hostname, aliases_out_fn out, aliases_refused_fn refused, void *arg,
    aliases_warn_fn warn, void *warnarg)
{
	struct expand x = {
		.a = a, .admin = admin, .hostname = hostname, .out = out, .refused = refused,
		.arg = arg, .warn = warn, .warnarg = warnarg,
	};
	size_t n;

	expand1(&x, rcpt);
	n = x.nseen;
	for (size_t i = 0; i < x.nseen; i++)
		free(x.seen[i]);
	free(x.seen);
	free(x.done);
	return n;
}

/* Can `from` reach `target`?  Depth-first, each alias visited once (linear, not exponential). */
static int
reaches(const struct aliases *a, const char *from, const char *target, size_t depth,
    unsigned char *visited)
{
	const struct alias *al = find(a, from);

	if (al == NULL || depth > ALIAS_DEPTH_MAX || visited[al - a->v])
		return 0;
	visited[al - a->v] = 1;
	for (size_t i = 0; i < al->ntargets; i++) {
		const char *t = al->targets[i];
		if (strchr(t, '@') != NULL)
			continue;
		if (strcasecmp(t, target) == 0)
			return 1;
		if (reaches(a, t, target, depth + 1, visited))
			return 1;
	}
	return 0;
}

size_t
aliases_check(const struct aliases *a, const char *file, aliases_warn_fn warn, void *arg)
{
	size_t loops = 0;

	unsigned char *visited = xcalloc(a->n ? a->n : 1, 1);

	for (size_t i = 0; i < a->n; i++) {
		/* a direct self-reference ("root: root, x@y") is the usual idiom, not a loop */
		const struct alias *al = &a->v[i];
		int self_only = 1;
		memset(visited, 0, a->n ? a->n : 1);
		for (size_t j = 0; j < al->ntargets && self_only; j++)
			if (strchr(al->targets[j], '@') == NULL && strcasecmp(al->targets[j], al->name) != 0 &&
			    reaches(a, al->targets[j], al->name, 0, visited))
				self_only = 0;
		if (!self_only) {
			warnf(warn, arg, file, al->line, "alias %s loops back to itself", al->name);
			loops++;
		}
	}
	free(visited);
	return loops;
}

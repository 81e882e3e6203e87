/*
 * maildrop: see maildrop.h.
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "maildrop.h"
#include "util.h"
#include "xmalloc.h"

void
maildrop_name(char out[64])
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(out, 64, "%lld.%09ld.%ld", (long long)ts.tv_sec, ts.tv_nsec, (long)getpid());
}

int
maildrop_write(const char *spool_dir, const struct maildrop_env *env,
    const struct iovec *parts, size_t nparts, char *errbuf, size_t errlen)
{
	char dir[4096], tmp[64], final[64];
	struct timespec ts;
	int dfd, fd, saved;
	size_t i;

	snprintf(dir, sizeof dir, "%s/maildrop", spool_dir);
	/*
	 * maildrop/ is 1730: the group may create files but not read the
	 * directory, so it is opened O_PATH and the rename is made durable
	 * with syncfs() on the file rather than an fsync of the directory.
	 */
	dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd == -1) {
		snprintf(errbuf, errlen, "%s: %s", dir, strerror(errno));
		return -1;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(tmp, sizeof tmp, ".tmp.%ld.%ld", (long)getpid(), (long)ts.tv_nsec);
	if (env->name[0] != '\0')
		snprintf(final, sizeof final, "%s", env->name);
	else
		maildrop_name(final);
	fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (fd == -1) {
		snprintf(errbuf, errlen, "%s/%s: %s", dir, tmp, strerror(errno));
		close(dfd);
		return -1;
	}
	/* the umask may have cut the group's read bit, which the daemon needs */
	if (fchmod(fd, 0640) == -1)
		goto fail;

	FILE *f = fdopen(fcntl(fd, F_DUPFD_CLOEXEC, 0), "w");
	if (f == NULL)
		goto fail;
	fprintf(f, "mailrelay-drop 1\nsender\t%s\n", env->sender);
	for (i = 0; i < env->nrcpt; i++)
		fprintf(f, "rcpt\t%s\n", env->rcpts[i]);
	fprintf(f, "body\t%s\n", env->eightbit ? "8BITMIME" : "7BIT");
	if (env->smtputf8)
		fprintf(f, "smtputf8\t1\n");
	if (env->notify[0])
		fprintf(f, "notify\t%s\n", env->notify);
	if (env->ret[0])
		fprintf(f, "ret\t%s\n", env->ret);
	if (env->envid[0])
		fprintf(f, "envid\t%s\n", env->envid);
	fputc('\n', f);
	for (i = 0; i < nparts; i++)
		if (parts[i].iov_len > 0 && fwrite(parts[i].iov_base, 1, parts[i].iov_len, f) != parts[i].iov_len)
			break;
	if (fclose(f) != 0 || i != nparts)
		goto fail;
	if (fsync(fd) == -1 || renameat(dfd, tmp, dfd, final) == -1)
		goto fail;
	if (syncfs(fd) == -1) {
		saved = errno;
		unlinkat(dfd, final, 0);
		errno = saved;
		goto fail;
	}
	if (close(fd) == -1) {
		fd = -1;
		goto fail;
	}
	close(dfd);
	return 0;
fail:
	saved = errno;
	snprintf(errbuf, errlen, "%s: cannot write the message: %s", dir, strerror(saved));
	if (fd != -1)
		close(fd);
	unlinkat(dfd, tmp, 0);
	close(dfd);
	errno = saved;
	return -1;
}

void
maildrop_env_free(struct maildrop_env *env)
{
	size_t i;

	for (i = 0; i < env->nrcpt; i++)
		free(env->rcpts[i]);
	free(env->rcpts);
	free(env->sender);
	memset(env, 0, sizeof *env);
}

static int
addr_ok(const char *s, size_t len)
{
	size_t i;

	if (len > MAILDROP_ADDR_MAX)
		return 0;
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f || s[i] == '<' || s[i] == '>')
			return 0;
	return 1;
}

/* A DSN value: printable ASCII without spaces and '=', limited to `allowed` when given. */
static int
dsn_value_ok(const char *v, size_t n, const char *allowed)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c < 33 || c > 126 || c == '=')
			return 0;
		if (allowed != NULL && strchr(allowed, c) == NULL)
			return 0;
	}
	return 1;
}

int
maildrop_parse(const char *buf, size_t len, struct maildrop_env *env, size_t *content_off,
    char *errbuf, size_t errlen)
{
	size_t off = 0, lineno = 0;
	int have_sender = 0, have_body = 0;

	memset(env, 0, sizeof *env);
	for (;;) {
		const char *nl = memchr(buf + off, '\n', len - off);
		if (nl == NULL) {
			snprintf(errbuf, errlen, "truncated header");
			goto fail;
		}
		const char *line = buf + off;
		size_t ll = (size_t)(nl - line);
		off += ll + 1;
		lineno++;
		if (lineno == 1) {
			if (ll != 16 || memcmp(line, "mailrelay-drop 1", 16) != 0) {
				snprintf(errbuf, errlen, "not a mailrelay drop file");
				goto fail;
			}
			continue;
		}
		if (ll == 0)
			break;	/* end of header */
		const char *tab = memchr(line, '\t', ll);
		if (tab == NULL) {
			snprintf(errbuf, errlen, "line %zu: no value", lineno);
			goto fail;
		}
		size_t kl = (size_t)(tab - line), vl = ll - kl - 1;
		const char *v = tab + 1;
		if (kl == 6 && memcmp(line, "sender", 6) == 0 && !have_sender) {
			if (!addr_ok(v, vl)) {
				snprintf(errbuf, errlen, "line %zu: bad sender", lineno);
				goto fail;
			}
			env->sender = xstrndup(v, vl);
			have_sender = 1;
		} else if (kl == 4 && memcmp(line, "rcpt", 4) == 0) {
			if (vl == 0 || !addr_ok(v, vl) || env->nrcpt >= MAILDROP_RCPT_MAX) {
				snprintf(errbuf, errlen, "line %zu: bad recipient", lineno);
				goto fail;
			}
			env->rcpts = xreallocarray(env->rcpts, env->nrcpt + 1, sizeof *env->rcpts);
			env->rcpts[env->nrcpt++] = xstrndup(v, vl);
		} else if (kl == 4 && memcmp(line, "body", 4) == 0 && !have_body) {
			if (vl == 8 && memcmp(v, "8BITMIME", 8) == 0)
				env->eightbit = 1;
			else if (!(vl == 4 && memcmp(v, "7BIT", 4) == 0)) {
				snprintf(errbuf, errlen, "line %zu: bad body type", lineno);
				goto fail;
			}
			have_body = 1;
		} else if (kl == 8 && memcmp(line, "smtputf8", 8) == 0 && vl == 1 && v[0] == '1') {
			env->smtputf8 = 1;
		} else if (kl == 6 && memcmp(line, "notify", 6) == 0 && vl > 0 && vl < sizeof env->notify &&
		    dsn_value_ok(v, vl, "ACDEFILNORSUVY,")) {
			memcpy(env->notify, v, vl);
			env->notify[vl] = '\0';
		} else if (kl == 3 && memcmp(line, "ret", 3) == 0 &&
		    vl == 4 && (memcmp(v, "FULL", 4) == 0 || memcmp(v, "HDRS", 4) == 0)) {
			memcpy(env->ret, v, 4);
			env->ret[4] = '\0';
		} else if (kl == 5 && memcmp(line, "envid", 5) == 0 && vl > 0 && vl < sizeof env->envid &&
		    dsn_value_ok(v, vl, NULL)) {
			memcpy(env->envid, v, vl);
			env->envid[vl] = '\0';
		} else {
			snprintf(errbuf, errlen, "line %zu: unknown or repeated record", lineno);
			goto fail;
		}
	}
	/* holds by construction (see maildrop.h); checked because readers size their buffers by it */
	if (off > MAILDROP_HEADER_MAX) {
		snprintf(errbuf, errlen, "header longer than %d octets", MAILDROP_HEADER_MAX);
		goto fail;
	}
	if (!have_sender || env->nrcpt == 0) {
		snprintf(errbuf, errlen, "no sender or no recipient");
		goto fail;
	}
	*content_off = off;
	return 0;
fail:
	maildrop_env_free(env);
	return -1;
}

size_t
maildrop_crlf_feed(struct maildrop_crlf *st, const char *p, size_t len, char *out)
{
	size_t i, o = 0;

	for (i = 0; i < len; i++) {
		char c = p[i];

		if (st->cr) {
			st->cr = 0;
			if (c == '\n')
				continue;	/* the LF of a CRLF: one line end */
		}
		if (c == '\r' || c == '\n') {
			out[o++] = '\r';
			out[o++] = '\n';
			st->cr = c == '\r';
			st->open = 0;
			continue;
		}
		if (c == '\0')
			st->nul = 1;
		else if ((unsigned char)c > 127)
			st->eightbit = 1;
		out[o++] = c;
		st->open = 1;
	}
	st->out += o;
	return o;
}

size_t
maildrop_crlf_end(struct maildrop_crlf *st, char *out)
{
	if (!st->open)
		return 0;
	out[0] = '\r';
	out[1] = '\n';
	st->open = 0;
	st->out += 2;
	return 2;
}

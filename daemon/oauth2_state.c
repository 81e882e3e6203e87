/*
 * oauth2_state: the files of OAuth2 that need no TLS library: the small
 * reads, the atomic writes, and the "needs authorisation" state (see
 * oauth2_proto.h).  Linked by mailrelayd, which keeps no token but tells
 * `mailrelay status` and max_queue_time about that state, by the
 * delivery process and by the CLI.  See oauth2_state.h.
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "oauth2_state.h"
#include "util.h"
#include "xmalloc.h"

#define JSON_DEPTH	8

static int
write_full(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

char *
oauth2_read_small(const char *path, size_t max, size_t *lenp, char *errbuf, size_t errlen,
    const char *key)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	char *buf;
	ssize_t n;

	if (fd == -1) {
		snprintf(errbuf, errlen, "%s: %s: %s", key, path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
		snprintf(errbuf, errlen, "%s: %s: not a regular file of at most %zu bytes", key, path, max);
		close(fd);
		return NULL;
	}
	buf = xmalloc((size_t)st.st_size + 1);
	n = read_full(fd, buf, (size_t)st.st_size);
	close(fd);
	if (n < 0) {
		snprintf(errbuf, errlen, "%s: %s: %s", key, path, strerror(errno));
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	*lenp = (size_t)n;
	return buf;
}

/* Printable ASCII, bounded: endpoint text in a log line. */
void
oauth2_printable(char *dst, size_t len, const char *src)
{
	size_t o = 0;

	for (const unsigned char *p = (const unsigned char *)src; *p && o + 1 < len; p++)
		dst[o++] = (*p >= 0x20 && *p < 0x7f) ? (char)*p : ' ';
	dst[o] = '\0';
}

int
oauth2_write_atomic(const char *path, const char *data, size_t len, char *errbuf, size_t errlen)
{
	char *tmp = xasprintf("%s.tmp", path), *dcopy = xstrdup(path);
	const char *dir = dirname(dcopy);
	int fd, dfd, rc = -1;

	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd == -1) {
		snprintf(errbuf, errlen, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	if (write_full(fd, data, len) != 0 || fsync(fd) != 0) {
		snprintf(errbuf, errlen, "%s: %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		goto out;
	}
	close(fd);
	if (rename(tmp, path) != 0) {
		snprintf(errbuf, errlen, "%s: %s", path, strerror(errno));
		unlink(tmp);
		goto out;
	}
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1 || fsync(dfd) != 0) {
		snprintf(errbuf, errlen, "%s: %s", dir, strerror(errno));
		if (dfd != -1)
			close(dfd);
		goto out;
	}
	close(dfd);
	rc = 0;
out:
	free(tmp);
	free(dcopy);
	return rc;
}

/* ---- the "needs authorisation" state ----------------------------------------------- */

char *
oauth2_state_path(const char *spool_dir, const char *name)
{
	return xasprintf("%s/oauth2-%s.state", spool_dir, name);
}

int
oauth2_state_write(const char *spool_dir, const char *name, time_t since, const char *why,
    char *errbuf, size_t errlen)
{
	json_object *o = json_object_new_object();
	char *path = oauth2_state_path(spool_dir, name);
	int rc;

	json_object_object_add(o, "version", json_object_new_int(1));
	json_object_object_add(o, "since", json_object_new_int64(since));
	json_object_object_add(o, "needs_authorisation", json_object_new_string(why));
	const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE);
	rc = oauth2_write_atomic(path, text, strlen(text), errbuf, errlen);
	json_object_put(o);
	free(path);
	return rc;
}

char *
oauth2_state_read(const char *spool_dir, const char *name, time_t *since)
{
	char *path = oauth2_state_path(spool_dir, name), err[300], *why = NULL;
	size_t len = 0;
	char *buf = oauth2_read_small(path, 8 * 1024, &len, err, sizeof err, "state");
	json_object *o, *v;

	free(path);
	*since = 0;
	if (buf == NULL)
		return NULL;
	json_tokener *tok = json_tokener_new_ex(JSON_DEPTH);
	o = json_tokener_parse_ex(tok, buf, (int)len);
	json_tokener_free(tok);
	free(buf);
	if (o != NULL && json_object_is_type(o, json_type_object) &&
	    json_object_object_get_ex(o, "needs_authorisation", &v) &&
	    json_object_is_type(v, json_type_string)) {
		/* one printable line, bounded: it goes to a terminal */
		char line[1024];
		oauth2_printable(line, sizeof line, json_object_get_string(v));
		if (line[0] != '\0')
			why = xstrdup(line);
		if (json_object_object_get_ex(o, "since", &v))
			*since = (time_t)json_object_get_int64(v);
	}
	json_object_put(o);
	return why;
}

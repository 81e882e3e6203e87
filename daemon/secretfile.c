/*
 * secretfile: reading a secret file (password_file, client_secret_file)
 * under the permission rules of secret.h.  A file of its own so that the
 * mailrelay CLI, which has no event loop, can use the same rules.
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "secret.h"
#include "util.h"
#include "xmalloc.h"

#define SECRET_MAX 8192

char *
secret_read_file(const char *path, gid_t daemon_gid, char *errbuf, size_t errlen)
{
	return secret_read_file_key("password_file", path, daemon_gid, errbuf, errlen);
}

char *
secret_read_file_key(const char *key, const char *path, gid_t daemon_gid, char *errbuf, size_t errlen)
{
	struct stat st;
	char buf[SECRET_MAX + 1];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd == -1) {
		snprintf(errbuf, errlen, "%s: %s: %s", key, path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		snprintf(errbuf, errlen, "%s: %s: not a regular file", key, path);
		close(fd);
		return NULL;
	}
	if (st.st_mode & (S_IROTH | S_IWOTH)) {
		snprintf(errbuf, errlen, "%s: %s is readable by others (mode %04o); "
		    "run chmod o-rw %s", key, path, (unsigned)(st.st_mode & 07777), path);
		close(fd);
		return NULL;
	}
	if ((st.st_mode & S_IRGRP) && !(st.st_uid == 0 && st.st_gid == daemon_gid)) {
		snprintf(errbuf, errlen, "%s: %s is readable by its group (mode %04o); "
		    "make it 0600, or root's with the daemon's group and 0640", key, path,
		    (unsigned)(st.st_mode & 07777));
		close(fd);
		return NULL;
	}
	n = read_full(fd, buf, SECRET_MAX);
	close(fd);
	if (n < 0) {
		snprintf(errbuf, errlen, "%s: %s: %s", key, path, strerror(errno));
		return NULL;
	}
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (buf[0] == '\0') {
		snprintf(errbuf, errlen, "%s: %s: the first line is empty", key, path);
		return NULL;
	}
	char *s = xstrdup(buf);
	OPENSSL_cleanse(buf, sizeof buf);
	return s;
}

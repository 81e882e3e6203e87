/*
 * ctlclient: one request on mailrelayd's control socket (lib/ctlproto.h),
 * for `mailrelay` and `sendmail -q`.  Blocking and bounded: the clients
 * run once and exit.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctlclient.h"
#include "ctlproto.h"

#define CTL_CLIENT_TIMEOUT 30   /* seconds */
/*
 * The longest answer line read: a request's line is short, but a data
 * line of LIST JSON holds a whole message, up to its 100,000 recipients.
 */
#define CTL_ANSWER_LINE_MAX (64 * 1024 * 1024)

int
ctl_request(const char *path, const char *request, ctl_data_fn on_data, void *arg,
    char *final, size_t finallen, char *err, size_t errlen)
{
	struct sockaddr_un sun;
	struct timeval tv = { .tv_sec = CTL_CLIENT_TIMEOUT, .tv_usec = 0 };
	char *buf = NULL;
	size_t have = 0, cap = 0, lines = 0;
	int fd, rc = -1;

	if (path == NULL || *path == '\0') {
		snprintf(err, errlen, "no control_socket is configured");
		return -1;
	}
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path) {
		snprintf(err, errlen, "control socket %s: path too long", path);
		return -1;
	}
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
		snprintf(err, errlen, "cannot reach mailrelayd at %s: %s", path, strerror(errno));
		goto out;
	}
	size_t rl = strlen(request);
	if (rl + 1 >= CTL_LINE_MAX || write(fd, request, rl) != (ssize_t)rl || write(fd, "\n", 1) != 1) {
		snprintf(err, errlen, "sending to mailrelayd at %s: %s", path, strerror(errno));
		goto out;
	}
	shutdown(fd, SHUT_WR);
	for (;;) {
		char *nl;
		while (have > 0 && (nl = memchr(buf, '\n', have)) != NULL) {
			*nl = '\0';
			if (strncmp(buf, "D ", 2) == 0) {
				if (on_data)
					on_data(buf + 2, arg);
				lines++;
			} else if (strncmp(buf, "OK", 2) == 0) {
				snprintf(final, finallen, "%s", buf[2] == ' ' ? buf + 3 : buf + 2);
				rc = 0;
				goto out;
			} else if (strncmp(buf, "ERR ", 4) == 0) {
				char *end;
				long code = strtol(buf + 4, &end, 10);
				if (end == buf + 4 || code < 64 || code > 78)
					code = 70;	/* EX_SOFTWARE: a reply we do not understand */
				snprintf(final, finallen, "%s", *end == ' ' ? end + 1 : end);
				rc = (int)code;
				goto out;
			}
			have -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, have);
		}
		if (cap - have < 4096) {
			char *nb;
			if (cap >= CTL_ANSWER_LINE_MAX) {
				snprintf(err, errlen, "mailrelayd sent a line longer than %d octets", CTL_ANSWER_LINE_MAX);
				goto broken;
			}
			cap = cap == 0 ? CTL_LINE_MAX + 2 : cap * 2;
			if ((nb = realloc(buf, cap)) == NULL) {
				snprintf(err, errlen, "reading mailrelayd's answer: %s", strerror(errno));
				goto broken;
			}
			buf = nb;
		}
		ssize_t n = read(fd, buf + have, cap - 1 - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(err, errlen, "mailrelayd at %s closed the connection without an answer%s%s",
			    path, n < 0 ? ": " : "", n < 0 ? strerror(errno) : "");
			goto broken;
		}
		have += (size_t)n;
	}
broken:
	/*
	 * Part of the answer was passed on: the caller must not answer
	 * again some other way (the spool read offline), only say it broke.
	 */
	if (lines > 0) {
		snprintf(final, finallen, "the answer of mailrelayd broke off after %zu lines: %s", lines, err);
		rc = 76;	/* EX_PROTOCOL */
	}
out:
	free(buf);
	close(fd);
	return rc;
}

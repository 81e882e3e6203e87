/*
 * submit: see submit.h.
 *
 * Queued output (a pipelined group of commands, the message with its
 * final dot and QUIT) goes out in writes of SUBMIT_OUT_MAX bytes as the
 * queue fills, the rest in one write at submit_flush(): a group, or a
 * message under SUBMIT_OUT_MAX with its dot and QUIT, is one write.  The
 * copy costs far less than the system calls it saves.  Nothing is ever
 * waited for while output is still queued: submit_reply() sends it first.
 *
 * Every wait is bounded by s->timeout: a reply by poll(), connect() and
 * each write by SO_SNDTIMEO (on a unix socket it also bounds the wait for
 * room in a full listen backlog, as when the daemon is stopped).  Writes
 * use MSG_NOSIGNAL: a daemon that dies under us is an error to report,
 * not a SIGPIPE that kills the client before it can save the message.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "submit.h"
#include "util.h"
#include "xmalloc.h"

void
submit_init(struct submit *s)
{
	s->fd = -1;
	s->verbose = 0;
	s->timeout = 0;
	s->inlen = 0;
	s->outlen = 0;
}

int
submit_connect(struct submit *s, const char *path, char *errbuf, size_t errlen)
{
	struct sockaddr_un sun;

	s->inlen = 0;
	s->outlen = 0;
	if (s->timeout == 0)
		s->timeout = 300;
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path) {
		snprintf(errbuf, errlen, "cannot connect to mailrelayd at %s: path too long", path);
		return -1;
	}
	strlcpy_mr(sun.sun_path, path, sizeof sun.sun_path);
	s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->fd != -1) {
		struct timeval tv = { .tv_sec = (time_t)s->timeout };
		if (setsockopt(s->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == -1) {
			snprintf(errbuf, errlen, "cannot connect to mailrelayd at %s: SO_SNDTIMEO: %s",
			    path, strerror(errno));
			close(s->fd);
			s->fd = -1;
			return -1;
		}
	}
	if (s->fd == -1 || connect(s->fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
		if (s->fd != -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			snprintf(errbuf, errlen, "cannot connect to mailrelayd at %s: "
			    "it accepted no connection within %us", path, s->timeout);
		else
			snprintf(errbuf, errlen, "cannot connect to mailrelayd at %s: %s", path, strerror(errno));
		if (s->fd != -1)
			close(s->fd);
		s->fd = -1;
		return -1;
	}
	return 0;
}

void
submit_close(struct submit *s)
{
	if (s->fd != -1)
		close(s->fd);
	s->fd = -1;
	s->outlen = 0;
}

int
submit_write(struct submit *s, const void *buf, size_t len, char *errbuf, size_t errlen)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = send(s->fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			snprintf(errbuf, errlen, "mailrelayd took nothing for %us", s->timeout);
			return -1;
		}
		if (n < 0) {
			snprintf(errbuf, errlen, "lost connection with mailrelayd: %s", strerror(errno));
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Next line from the socket into line (without CRLF). */
static int
read_line(struct submit *s, char *line, size_t linesz, size_t *lenp, char *errbuf, size_t errlen)
{
	for (;;) {
		char *nl = memchr(s->in, '\n', s->inlen);
		if (nl != NULL) {
			size_t n = (size_t)(nl - s->in);
			size_t keep = n;
			if (keep > 0 && s->in[keep - 1] == '\r')
				keep--;
			if (keep >= linesz)
				keep = linesz - 1;
			memcpy(line, s->in, keep);
			line[keep] = '\0';
			*lenp = keep;
			memmove(s->in, nl + 1, s->inlen - n - 1);
			s->inlen -= n + 1;
			return 0;
		}
		if (s->inlen == sizeof s->in) {
			snprintf(errbuf, errlen, "mailrelayd sent an overlong reply line");
			return -1;
		}
		struct pollfd pfd = { .fd = s->fd, .events = POLLIN };
		int pr = poll(&pfd, 1, (int)s->timeout * 1000);
		if (pr == 0) {
			snprintf(errbuf, errlen, "mailrelayd did not answer within %us", s->timeout);
			return -1;
		}
		if (pr < 0) {
			if (errno == EINTR)
				continue;
			snprintf(errbuf, errlen, "poll: %s", strerror(errno));
			return -1;
		}
		ssize_t n = read(s->fd, s->in + s->inlen, sizeof s->in - s->inlen);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(errbuf, errlen, "lost connection with mailrelayd%s%s",
			    n < 0 ? ": " : "", n < 0 ? strerror(errno) : "");
			return -1;
		}
		s->inlen += (size_t)n;
	}
}

int
submit_reply(struct submit *s, struct smtp_reply *r, char *errbuf, size_t errlen)
{
	char line[SMTP_REPLY_LINE_MAX + 8];
	size_t len;
	int rc;

	smtp_reply_init(r);
	if (submit_flush(s, errbuf, errlen) == -1)
		return -1;
	do {
		if (read_line(s, line, sizeof line, &len, errbuf, errlen) == -1)
			return -1;
		if (s->verbose)
			fprintf(stderr, "<<< %s\n", line);
		rc = smtp_reply_feed(r, line, len, errbuf, errlen);
		if (rc == SMTP_REPLY_ERROR)
			return -1;
	} while (rc != SMTP_REPLY_DONE);
	return 0;
}

int
submit_flush(struct submit *s, char *errbuf, size_t errlen)
{
	size_t n = s->outlen;

	s->outlen = 0;
	return n > 0 ? submit_write(s, s->out, n, errbuf, errlen) : 0;
}

int
submit_queue_raw(struct submit *s, const void *buf, size_t len, char *errbuf, size_t errlen)
{
	const char *p = buf;

	while (len > 0) {
		size_t n = sizeof s->out - s->outlen;
		if (n > len)
			n = len;
		memcpy(s->out + s->outlen, p, n);
		s->outlen += n;
		p += n;
		len -= n;
		if (s->outlen == sizeof s->out && submit_flush(s, errbuf, errlen) == -1)
			return -1;
	}
	return 0;
}

/* The command line formatted into line (CRLF added): its length, or -1 with errbuf. */
static int
format_cmd(struct submit *s, char *line, size_t linesz, char *errbuf, size_t errlen,
    const char *fmt, va_list ap)
{
	int n;

	n = vsnprintf(line, linesz - 2, fmt, ap);
	if (n < 0 || (size_t)n >= linesz - 2) {
		snprintf(errbuf, errlen, "command too long");
		return -1;
	}
	if (s->verbose)
		fprintf(stderr, ">>> %s\n", line);
	memcpy(line + n, "\r\n", 2);
	return n + 2;
}

int
submit_queue(struct submit *s, char *errbuf, size_t errlen, const char *fmt, ...)
{
	char line[2100];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = format_cmd(s, line, sizeof line, errbuf, errlen, fmt, ap);
	va_end(ap);
	if (n == -1)
		return -1;
	return submit_queue_raw(s, line, (size_t)n, errbuf, errlen);
}

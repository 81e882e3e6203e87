/*
 * submit: a small blocking SMTP client for the daemon's unix submit
 * socket, used by mailrelay-sendmail.  libc only (runs once per message).
 *
 * Commands may be pipelined (RFC 2920): submit_queue() puts a command in
 * the output queue, submit_flush() sends the whole queue in one write, and
 * the replies are then read one by one, in order, with submit_reply(),
 * which sends whatever is still queued before it waits.  The caller keeps
 * a group small enough that the replies it leaves unread fit in the
 * socket's buffers (the daemon stops reading a client that does not read
 * its replies: smtpd.c OUT_HIGH).
 */
#ifndef MAILRELAY_SUBMIT_H
#define MAILRELAY_SUBMIT_H

#include <stddef.h>

#include "smtp_reply.h"

#define SUBMIT_OUT_MAX	65536	/* bytes queued before they are sent anyway */

struct submit {
	int fd;
	int verbose;                /* print the dialogue on stderr (-v) */
	unsigned timeout;           /* seconds: the longest wait for a reply (may change between
	                               replies), and, as set at submit_connect(), for connect()
	                               and for each write to make progress; 0 means 300 */
	char in[4096];
	size_t inlen;
	char out[SUBMIT_OUT_MAX];   /* queued, not sent yet */
	size_t outlen;
};

/*
 * Ready s for submit_connect(): not connected, nothing queued, no -v,
 * the default timeout.  Only the scalars are set: an initializer such as
 * "= { .fd = -1 }" would zero the 68 KB of buffers, which are always
 * written before they are read, at the cost of a memset and 17 page
 * faults in every submission.
 */
void submit_init(struct submit *s);
/* 0, or -1 with errbuf ("cannot connect to mailrelayd at PATH: why"). */
int  submit_connect(struct submit *s, const char *path, char *errbuf, size_t errlen);
/* Send what is queued, then read one complete reply.  -1 with errbuf on I/O errors, timeouts or garbage. */
int  submit_reply(struct submit *s, struct smtp_reply *r, char *errbuf, size_t errlen);
/*
 * Queue one command line (CRLF added; shown at once with -v), to be sent
 * with those queued around it.  -1 with errbuf when it is too long, or
 * when a full queue had to be sent and that failed.
 */
int  submit_queue(struct submit *s, char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/*
 * Queue raw bytes (message content; not shown); each time the queue is
 * full it is sent.  -1 with errbuf when a send failed.
 */
int  submit_queue_raw(struct submit *s, const void *buf, size_t len, char *errbuf, size_t errlen);
/* Send everything queued, in one write where the socket takes it.  -1 with errbuf as submit_write(). */
int  submit_flush(struct submit *s, char *errbuf, size_t errlen);
/* Send raw bytes now.  -1 with errbuf when the daemon is gone or takes nothing for s->timeout. */
int  submit_write(struct submit *s, const void *buf, size_t len, char *errbuf, size_t errlen);
/* Close the connection; anything still queued is dropped. */
void submit_close(struct submit *s);

#endif

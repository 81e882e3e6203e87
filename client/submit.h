/*
 * submit: a small blocking SMTP client for the daemon's unix submit
 * socket, used by mailrelay-sendmail.  libc only (runs once per message).
 */
#ifndef MAILRELAY_SUBMIT_H
#define MAILRELAY_SUBMIT_H

#include <stddef.h>

#include "smtp_reply.h"

struct submit {
	int fd;
	int verbose;                /* print the dialogue on stderr (-v) */
	unsigned timeout;           /* seconds: the longest wait for a reply (may change between
	                               replies), and, as set at submit_connect(), for connect()
	                               and for each write to make progress; 0 means 300 */
	char in[4096];
	size_t inlen;
};

/* 0, or -1 with errbuf ("cannot connect to mailrelayd at PATH: why"). */
int  submit_connect(struct submit *s, const char *path, char *errbuf, size_t errlen);
/* Read one complete reply.  -1 with errbuf on I/O errors, timeouts or garbage. */
int  submit_reply(struct submit *s, struct smtp_reply *r, char *errbuf, size_t errlen);
/* Send one command line (CRLF added) and read its reply. */
int  submit_cmd(struct submit *s, struct smtp_reply *r, char *errbuf, size_t errlen,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Send raw bytes.  -1 with errbuf when the daemon is gone or takes nothing for s->timeout. */
int  submit_write(struct submit *s, const void *buf, size_t len, char *errbuf, size_t errlen);
void submit_close(struct submit *s);

#endif

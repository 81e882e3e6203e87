/*
 * util: small I/O helpers shared by the daemon and the clients.
 */
#ifndef MAILRELAY_UTIL_H
#define MAILRELAY_UTIL_H

#include <stddef.h>
#include <sys/types.h>

/* write() all of buf, retrying on EINTR and short writes.  0 or -1 (errno set). */
int write_all(int fd, const void *buf, size_t len);
struct iovec;
/* writev() until every vector is written (EINTR retried); the vectors are consumed. */
int writev_all(int fd, struct iovec *iov, int iovcnt);
/* read() until len bytes or EOF; returns bytes read or -1. */
ssize_t read_full(int fd, void *buf, size_t len);
/* fsync a directory by path or fd. */
int fsync_dir_fd(int dirfd);
/* Elapsed seconds between two timespecs, as a double. */
double timespec_diff(const struct timespec *a, const struct timespec *b);
/* Copy src to dst replacing bytes < 0x20, 0x7f and (if ascii_only) >= 0x80 by '?'; bounded, NUL-terminated. */
void sanitize_text(char *dst, size_t dstlen, const char *src, size_t srclen, int ascii_only);
/* RFC 3461 xtext: '+', '=' and octets outside 33..126 as +XX; cut to fit outlen. */
void xtext_encode(const char *in, char *out, size_t outlen);
/* Has s an octet above 127? */
int  has_8bit(const char *s);
/* A decimal number of digits only, at most max: 0, or -1 (empty, other characters, too large). */
int  parse_ull(const char *s, unsigned long long max, unsigned long long *out);

#endif

/*
 * xmalloc: allocation that cannot return NULL.  Out of memory is fatal
 * (logged, exit 71): a mail relay that limps on without memory loses mail.
 * Multiplications are overflow-checked.
 */
#ifndef MAILRELAY_XMALLOC_H
#define MAILRELAY_XMALLOC_H

#include <stddef.h>
#include <stdarg.h>

void *xmalloc(size_t size);
void *xcalloc(size_t nmemb, size_t size);
void *xreallocarray(void *ptr, size_t nmemb, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Bounded copy/append; return the length they tried to create (>= size means truncated). */
size_t strlcpy_mr(char *dst, const char *src, size_t size);
size_t strlcat_mr(char *dst, const char *src, size_t size);

#endif

/*
 * oauth2_state: the files of OAuth2 that need no TLS library (see
 * oauth2_state.c).
 */
#ifndef MAILRELAY_OAUTH2_STATE_H
#define MAILRELAY_OAUTH2_STATE_H

#include <stddef.h>
#include <time.h>

/*
 * The "needs authorisation" state of a smarthost, kept by the daemon in
 * spool_dir/oauth2-NAME.state (mode 0600, written atomically) while it
 * lasts and removed when it ends, so that `mailrelay status` shows it
 * with the daemon down: {"version": 1, "since": T, "needs_authorisation":
 * "sentence"}.  Read: the sentence (printable, one line, bounded) and
 * since, or NULL when there is none.
 */
char *oauth2_state_path(const char *spool_dir, const char *name);
int oauth2_state_write(const char *spool_dir, const char *name, time_t since, const char *why,
    char *errbuf, size_t errlen);
char *oauth2_state_read(const char *spool_dir, const char *name, time_t *since);

/* A regular file of at most max octets, NUL-terminated; NULL with "KEY: PATH: why" in errbuf. */
char *oauth2_read_small(const char *path, size_t max, size_t *lenp, char *errbuf, size_t errlen,
    const char *key);
/* Printable ASCII, bounded: endpoint text in a log line. */
void oauth2_printable(char *dst, size_t len, const char *src);
/* Write a file atomically: tmp beside it (0600), fsync, rename, fsync dir. */
int oauth2_write_atomic(const char *path, const char *data, size_t len, char *errbuf, size_t errlen);

#endif

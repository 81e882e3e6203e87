/*
 * secret: where a smarthost's AUTH secret comes from.
 *
 *   password          inline in the config
 *   password_file     first line of the file, read when the config is
 *                     loaded (as root at start, before privileges go);
 *                     refused when others may read it, or the group may
 *                     and it is not root's file with the daemon's group
 *   password_command  /bin/sh -c CMD, first line of stdout, run off the
 *                     event loop with a timeout (the smarthost's `timeout`,
 *                     its whole process group killed); its result is kept until
 *                     the server rejects it (OAuth2 access tokens expire);
 *                     it gets /dev/null, the pipe and the daemon's stderr as
 *                     descriptors 0, 1 and 2, and no other descriptor
 *
 * A smarthost with an oauth2 section gets its token from daemon/oauth2.c
 * instead; its client_secret_file is read under the password_file rules
 * (secret_read_file_key(), in secretfile.c, which the CLI shares).
 */
#ifndef MAILRELAY_SECRET_H
#define MAILRELAY_SECRET_H

#include <stddef.h>
#include <sys/types.h>

#include <event2/event.h>

/* Read a password_file; NULL with errbuf ("password_file: PATH: why"). daemon_gid: the group allowed to read. */
char *secret_read_file(const char *path, gid_t daemon_gid, char *errbuf, size_t errlen);
/* The same for another key with the same rules (client_secret_file); messages start with key. */
char *secret_read_file_key(const char *key, const char *path, gid_t daemon_gid, char *errbuf,
    size_t errlen);

struct secret_job;
/* secret is NULL on failure and err says why; the callback frees nothing. */
typedef void (*secret_cb)(const char *secret, const char *err, void *arg);

/* Start a password_command; the callback runs later, never from inside this call. */
struct secret_job *secret_run(struct event_base *base, const char *cmd, unsigned timeout,
    secret_cb cb, void *arg);
/* Forget a job: its callback will not run; the child is killed. */
void secret_cancel(struct secret_job *job);
/* Reap exited children (from the SIGCHLD handler). */
void secret_reap(void);

#endif

/*
 * maildrop: offline submission.  When mailrelayd cannot be reached, the
 * sendmail client (setgid to the daemon's group) leaves the message in
 * spool_dir/maildrop/ and the daemon imports it when it runs.
 *
 * A drop file:
 *   mailrelay-drop 1
 *   sender<TAB>ADDRESS          (empty for the null sender)
 *   rcpt<TAB>ADDRESS            (one line per recipient, at least one)
 *   body<TAB>7BIT|8BITMIME
 *   smtputf8<TAB>1              (optional: SMTPUTF8 requested)
 *   notify<TAB>NOTIFY           (optional, DSN, for every recipient: NEVER or SUCCESS,DELAY,FAILURE)
 *   ret<TAB>FULL|HDRS           (optional, DSN)
 *   envid<TAB>XTEXT             (optional, DSN)
 *   <empty line>
 *   the message, CRLF line endings, not dot-stuffed
 *
 * It is written as maildrop/.tmp.* (mode 0640, fsynced), renamed to its
 * final name (which does not start with '.'), and the directory fsynced:
 * the daemon only ever sees complete files.  The submitter is the file's
 * owner.
 */
#ifndef MAILRELAY_MAILDROP_H
#define MAILRELAY_MAILDROP_H

#include <stddef.h>
#include <sys/uio.h>

struct maildrop_env {
	char *sender;
	char **rcpts;
	size_t nrcpt;
	int eightbit;
	int smtputf8;
	char notify[32];        /* "" when not given */
	char ret[5];
	char envid[101];        /* xtext */
};

/* Write a drop durably; 0, or -1 with errbuf (nothing is left behind). */
int maildrop_write(const char *spool_dir, const struct maildrop_env *env,
    const struct iovec *parts, size_t nparts, char *errbuf, size_t errlen);

/*
 * Parse a drop's header.  On success fills env (free with
 * maildrop_env_free) and *content_off (where the message starts).
 * Addresses with control characters, or longer than 256, are refused.
 */
int maildrop_parse(const char *buf, size_t len, struct maildrop_env *env, size_t *content_off,
    char *errbuf, size_t errlen);
void maildrop_env_free(struct maildrop_env *env);

#endif

/*
 * smtpd: the server side of ESMTP for our listeners (submission from local
 * programs).  A message is answered 250 only after the committer reports it
 * durable.
 */
#ifndef MAILRELAY_SMTPD_H
#define MAILRELAY_SMTPD_H

#include <sys/socket.h>
#include <sys/types.h>

#include <event2/util.h>

/* A new connection; allowed is 0 for a TCP peer outside `allow`. */
void smtpd_accept(evutil_socket_t fd, const struct sockaddr *sa, socklen_t salen,
    int is_unix, int allowed);
/*
 * Answer 421 and close every session; sessions waiting for a commit close
 * after their reply.  With force, free everything now (after the loop ended).
 */
void smtpd_shutdown(int force);
/* Sessions still open. */
unsigned smtpd_sessions(void);

/*
 * spool_txn_filter() callback: the message repaired by linefix (lines
 * over 998 octets folded, wrapped or re-encoded), or NULL when it needs
 * nothing; arg is the queue id, for the log line that says what was done.
 */
char *smtpd_linefix(const char *content, size_t len, size_t *outlen, void *arg);

#endif

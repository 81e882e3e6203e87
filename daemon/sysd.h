/*
 * sysd: everything systemd behind one seam — readiness, status and
 * watchdog notifications, the sockets systemd passes (socket activation)
 * and the journald log sink with structured fields.  The protocols are
 * spoken natively (sysd.c says why); each is a no-op when the variable
 * or socket it needs is absent, so the daemon runs the same without
 * systemd, logging to syslog.
 */
#ifndef MAILRELAY_SYSD_H
#define MAILRELAY_SYSD_H

#include <stddef.h>

#include <event2/event.h>

void sysd_ready(void);
void sysd_reloading(void);
void sysd_stopping(void);
void sysd_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A service manager listens (NOTIFY_SOCKET set): worth computing a STATUS= line. */
int  sysd_notifying(void);
/*
 * The sockets a .socket unit passed (LISTEN_FDS for this pid), from
 * SYSD_LISTEN_FDS_START on; 0 when not socket-activated.  The variables
 * are unset, so that children never see them.
 */
#define SYSD_LISTEN_FDS_START 3	/* SD_LISTEN_FDS_START */
int  sysd_listen_fds(void);
/* Arm the watchdog ping if the service manager asked for one. */
void sysd_watchdog_start(struct event_base *base);
void sysd_watchdog_stop(void);
/* Send every log line to journald with structured fields (see sysd.c). */
void sysd_log_init(void);
/* journald takes native messages (its socket exists and is writable). */
int  sysd_journal_available(void);
/*
 * stderr is a stream to the journal: JOURNAL_STREAM names its device and
 * inode (the sd_journal_stream_fd semantics), so a child whose stderr was
 * redirected is not fooled by the inherited variable.
 */
int  sysd_stderr_is_journal(void);
/*
 * One journald entry (native protocol) into buf, its length returned: the
 * text as MESSAGE= (with "ID: " as on syslog), PRIORITY=, and for a queue
 * id's line MAILRELAY_QUEUE_ID= plus what its key=value text names:
 * MAILRELAY_RECIPIENT (to=, brackets dropped), MAILRELAY_RELAY,
 * MAILRELAY_DSN and MAILRELAY_STATUS (the caller's status, else status=).
 * Taking them from the text keeps one format for every destination; a
 * field the line lacks is left out, a value that does not fit is cut.
 */
size_t sysd_journal_entry(char *buf, size_t cap, int prio, const char *qid, const char *status,
    const char *msg);

#endif

/*
 * sysd: everything systemd behind one seam — readiness, status and
 * watchdog notifications, the sockets systemd passes (socket activation)
 * and the journald log sink with structured fields.
 * Without libsystemd (./configure --without-systemd) these are no-ops and
 * logging falls back to syslog.
 */
#ifndef MAILRELAY_SYSD_H
#define MAILRELAY_SYSD_H

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
#define SYSD_LISTEN_FDS_START 3	/* SD_LISTEN_FDS_START, for callers without libsystemd */
int  sysd_listen_fds(void);
/* Arm the watchdog ping if the service manager asked for one. */
void sysd_watchdog_start(struct event_base *base);
void sysd_watchdog_stop(void);
/* Send every log line to journald with structured fields (see sysd.c). */
void sysd_log_init(void);
/* journald takes native messages here (its socket exists); 0 without libsystemd. */
int  sysd_journal_available(void);
/*
 * stderr is a stream to the journal: JOURNAL_STREAM names its device and
 * inode (the sd_journal_stream_fd semantics), so a child whose stderr was
 * redirected is not fooled by the inherited variable.
 */
int  sysd_stderr_is_journal(void);

#endif

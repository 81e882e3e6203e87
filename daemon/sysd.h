/*
 * sysd: everything systemd behind one seam — readiness and watchdog
 * notifications and the journald log sink with structured fields.
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
/* Arm the watchdog ping if the service manager asked for one. */
void sysd_watchdog_start(struct event_base *base);
void sysd_watchdog_stop(void);
/* Install the journald sink when running under systemd (not in the foreground). */
void sysd_log_init(void);

#endif

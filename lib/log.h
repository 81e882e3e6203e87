/*
 * log: the severity ladder shared by every program.
 *
 *   log_debug / log_info / log_warnx / log_errx   message only
 *   log_warn / log_err                            message + ": strerror(errno)"
 *   log_fatal / log_fatalx(_code)                 log, then exit (config, OOM, broken invariants only)
 *
 * Where lines go: stderr when started in the foreground (or for the
 * clients), else syslog; the daemon may install a sink (journald with
 * structured fields).  log_qid() tags a line with a queue id so that the
 * sink can attach MAILRELAY_QUEUE_ID and the text starts with "ID: ".
 * The daemon in the foreground prefixes its stderr lines with an RFC 3339
 * timestamp (log_set_timestamps) unless stderr is the journal, which
 * stamps lines itself; the clients' one-line errors never carry one.
 * A log file (log_file), when open, gets every line too, stamped, whatever
 * the main destination.
 */
#ifndef MAILRELAY_LOG_H
#define MAILRELAY_LOG_H

#include <stdarg.h>
#include <syslog.h>

#define PRINTFLIKE(a, b) __attribute__((format(printf, a, b)))

enum log_dest { LOG_TO_STDERR = 0, LOG_TO_SYSLOG };

/* A sink gets every line that passes the level; qid may be NULL, status may be NULL. */
typedef void (*log_sink_fn)(int prio, const char *qid, const char *status, const char *msg);

void log_init(const char *ident, enum log_dest dest, int level /* LOG_ERR..LOG_DEBUG */);
void log_set_level(int level);
int  log_get_level(void);
void log_set_sink(log_sink_fn sink);
/* Prefix stderr lines with "YYYY-MM-DDTHH:MM:SS.mmm+HH:MM " (off by default). */
void log_set_timestamps(int on);
/*
 * Append every line to path too (O_APPEND; created 0640 less the umask:
 * 0600 in mailrelayd), replacing the
 * file open before; NULL closes it.  Reopening the same path is how a
 * rotated file is let go (SIGHUP).  -1 with errbuf filled when it cannot
 * be opened: the file open before, if any, stays.
 */
int  log_file_open(const char *path, char *errbuf, size_t errlen);

void log_debug(const char *fmt, ...) PRINTFLIKE(1, 2);
void log_info(const char *fmt, ...) PRINTFLIKE(1, 2);
void log_warn(const char *fmt, ...) PRINTFLIKE(1, 2);
void log_warnx(const char *fmt, ...) PRINTFLIKE(1, 2);
void log_err(const char *fmt, ...) PRINTFLIKE(1, 2);
void log_errx(const char *fmt, ...) PRINTFLIKE(1, 2);
void log_fatal(const char *fmt, ...) PRINTFLIKE(1, 2) __attribute__((noreturn));
void log_fatalx(const char *fmt, ...) PRINTFLIKE(1, 2) __attribute__((noreturn));
void log_fatalx_code(int code, const char *fmt, ...) PRINTFLIKE(2, 3) __attribute__((noreturn));

/* "QID: text" at the given priority; status (e.g. "sent") becomes MAILRELAY_STATUS in journald. */
void log_qid(int prio, const char *qid, const char *status, const char *fmt, ...) PRINTFLIKE(4, 5);

#endif

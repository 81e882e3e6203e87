/*
 * qprint: the queue listing shared by `mailrelay queue`, `mailq` and
 * `sendmail -bp`, read from the spool directly.
 */
#ifndef MAILRELAY_QPRINT_H
#define MAILRELAY_QPRINT_H

#include <time.h>

#include "conf/conf.h"
#include "spool/qformat.h"

/*
 * Print the queue: text like Postfix's mailq when json is NULL, else the
 * JSON of SPEC.md written by json (&qjson_list, which only mailrelay
 * links).  Returns an exit code.
 */
int queue_print(const char *progname, const struct config *conf, const struct qformat_json *json);
/*
 * The listing from mailrelayd (LIST on the control socket: other users see
 * only their own messages); when it is down, from the spool, saying so on
 * standard error.
 */
int queue_list(const char *progname, const struct config *conf, const struct qformat_json *json);
/* `mailrelay show` read from the spool (the daemon is down). */
int show_offline(const char *progname, const struct config *conf, const char *id, int body);

/* What the spool holds, read directly (the daemon may be down). */
struct queue_summary {
	size_t messages, held;
	size_t damaged;             /* counted apart from held, as mailrelayd's status does */
	time_t oldest;              /* arrival of the oldest, 0 when empty */
};
int queue_summarize(const struct config *conf, struct queue_summary *q, char *err, size_t errlen);

#endif

/*
 * ctlproto: the control protocol between `mailrelay` (and `sendmail -q`)
 * and mailrelayd, over the unix socket named by control_socket.
 *
 * A request is one line of printable ASCII, at most CTL_LINE_MAX octets
 * with its LF: a verb, then arguments separated by single spaces.
 *
 *   FLUSH                 make every waiting message due now
 *   FLUSH ID [ID ...]     the same for these messages
 *   HOLD ID [ID ...]      keep these messages from delivery (and expiry)
 *   RELEASE ID [ID ...]   let held messages go again, due now
 *   DELETE ID [ID ...]    remove these messages from the queue, unsent
 *   DELETE ALL            remove every message not being delivered
 *   LIST                  the queue listing (spool/qformat.h), as text lines
 *   LIST JSON             the same in JSON (the lines join into one array)
 *   SHOW ID [BODY]        one message: envelope, recipients, attempts, header (and body)
 *   STATUS                the daemon's state, as text lines
 *   STATUS JSON           the same as one JSON object (see mailrelay(8))
 *   STATUS PROMETHEUS     the counters and queue gauges in the Prometheus
 *                         text format (daemon/metrics.h), one line per line
 *
 * Queue ids are 16 upper-case hexadecimal digits; anything else is
 * refused before it can become a path.  Verbs are case-insensitive.
 *
 * The reply is zero or more data lines, each starting with "D ", then one
 * final line: "OK TEXT", or "ERR CODE TEXT" where CODE is the sysexits(3)
 * status the client exits with (64 bad request, 65 no such message, 75
 * being delivered right now, 77 not allowed) and TEXT a human-readable sentence.  The connection may
 * carry several requests, one after the other.
 *
 * Who may do what is decided per request from the peer's credentials
 * (SO_PEERCRED): FLUSH, like every request that changes the queue, needs
 * root, the daemon's own user, or membership of its group.  LIST shows
 * other users only the messages they submitted themselves (by uid).
 *
 * Pure: no I/O, no allocation.
 */
#ifndef MAILRELAY_CTLPROTO_H
#define MAILRELAY_CTLPROTO_H

#include <stddef.h>

#define CTL_LINE_MAX  4096
#define CTL_ARGS_MAX  200
#define CTL_ID_LEN    16

/* ERR codes (sysexits.h values) */
#define CTL_ERR_USAGE   64
#define CTL_ERR_DATA    65
#define CTL_ERR_TEMP    75
#define CTL_ERR_PERM    77

enum ctl_verb { CTL_FLUSH = 1, CTL_HOLD, CTL_RELEASE, CTL_DELETE, CTL_STATUS, CTL_LIST, CTL_SHOW };

struct ctl_req {
	enum ctl_verb verb;
	int all;                        /* DELETE ALL */
	int json;                       /* STATUS JSON, LIST JSON */
	int prometheus;                 /* STATUS PROMETHEUS */
	int body;                       /* SHOW ID BODY */
	size_t nids;
	char ids[CTL_ARGS_MAX][CTL_ID_LEN + 1];
};

/*
 * Parse one request line (without its LF; a trailing CR is allowed).
 * Returns 0, or -1 with a one-line reason in err.
 */
int ctl_parse(const char *line, size_t len, struct ctl_req *req, char *err, size_t errlen);

/* The verb's name ("FLUSH"). */
const char *ctl_verb_name(enum ctl_verb v);

/* Is s a well-formed queue id? */
int ctl_id_valid(const char *s, size_t len);

#endif

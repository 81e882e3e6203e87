/*
 * qformat: the queue listing, the same whoever prints it (mailq and
 * `mailrelay queue` reading the spool, or mailrelayd answering LIST).
 *
 * Text (fits 80 columns; '!' after the id marks a held message, '#' a
 * damaged one, followed by a "(damaged: why)" line; sent recipients are
 * left out, the others follow their last error; a damaged message whose
 * envelope cannot be read shows "(envelope unreadable)" as its sender):
 *   -Queue ID-------  --Size-- ----Arrival Time---  -Sender/Recipient-------
 *   6B036AE139D8A000       201 Sun Nov 22 22:21:21  cron@web1.example.com
 *                     (connect to smtp.example.com:587: Connection refused)
 *                                                   ops@example.com
 *
 *   -- 1 Kbytes in 1 Request.
 * ("Mail queue is empty" when there is nothing.)
 *
 * JSON: an array of {"id", "arrival" (RFC 3339, UTC), "size", "sender",
 * "held", "damaged" (why, or null), "recipients": [{"address", "orig",
 * "status": "pending" | "sent" | "failed", "attempts", "last_reply",
 * "next_attempt" (RFC 3339 or null)}]}.  A damaged message is held: "held"
 * is true.  Written by spool/qjson.c with json-c, one message a line; this
 * file holds no JSON code, so that the sendmail client, which prints the
 * text form as mailq, links neither it nor json-c: the JSON writer comes in
 * through struct qformat_json from the programs that link it.
 */
#ifndef MAILRELAY_QFORMAT_H
#define MAILRELAY_QFORMAT_H

#include <stdio.h>

#include "spool.h"

struct qformat;

/* A writer of the JSON form: qjson_list (spool/qjson.h). */
struct qformat_json {
	void (*begin)(struct qformat *f);
	void (*one)(struct qformat *f, const struct spool_env *e);
	void (*end)(struct qformat *f);
};

struct qformat {
	FILE *out;
	const struct qformat_json *json;    /* NULL: the text form */
	size_t count;
	unsigned long long bytes;
};

void qformat_begin(struct qformat *f, FILE *out, const struct qformat_json *json);
void qformat_one(struct qformat *f, const struct spool_env *e);
void qformat_end(struct qformat *f);

/*
 * `mailrelay show`: the envelope, each recipient's state, the attempt
 * history, then the message's header section (content[0..len), CRLF lines,
 * shown with LF) and, with body, the rest.  now is for ages.
 */
void qformat_show(FILE *out, const struct spool_env *e, const char *content, size_t len, int body,
    time_t now);

#endif

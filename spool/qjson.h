/*
 * qjson: the JSON the project prints (`mailrelay queue --json` and
 * mailrelayd's LIST JSON, mailrelayd's STATUS JSON, `mailrelay status
 * --json` with the daemon down), written with json-c.
 *
 * Only mailrelayd and mailrelay link it (Makefile.am): the sendmail client,
 * which also prints the queue as mailq, stays on libc and libconfuse, and
 * reaches the queue listing's JSON form only through struct qformat_json.
 *
 * Every JSON text is written with QJSON_FLAGS: one line, a space after each
 * ':' and ',' (as the output always looked), '/' not escaped (URLs in the
 * sentences stay as they are).  The listing is streamed one message (one
 * json-c object) at a time, so a long queue is never held twice in memory.
 */
#ifndef MAILRELAY_QJSON_H
#define MAILRELAY_QJSON_H

#include <time.h>

#include <json-c/json.h>

#include "qformat.h"
#include "spool.h"

#define QJSON_FLAGS (JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE)

/* The JSON form of the queue listing (qformat.h): qformat_begin(&f, out, &qjson_list). */
extern const struct qformat_json qjson_list;

/* One queued message, as the listing has it; the caller owns it (json_object_put()). */
json_object *qjson_msg(const struct spool_env *e);
/* A time as RFC 3339 in UTC; null for 0. */
json_object *qjson_time(time_t t);
/* A string, or null for NULL. */
json_object *qjson_str(const char *s);
/* Print o with QJSON_FLAGS and a newline, then put it. */
void qjson_print(FILE *out, json_object *o);

#endif

/*
 * qjson: the JSON the project prints (`mailrelay queue --json`, mailrelayd's
 * LIST JSON and STATUS JSON, `mailrelay status --json` with the daemon
 * down), written with json-c.
 *
 * Only mailrelayd and mailrelay link it (Makefile.am): the sendmail client,
 * which also prints the queue as mailq, stays on libc and libconfuse.
 *
 * Every JSON text is written with QJSON_FLAGS: one line, a space after each
 * ':' and ',' (as the output always looked), '/' not escaped (URLs in
 * sentences stay readable).
 */
#ifndef MAILRELAY_QJSON_H
#define MAILRELAY_QJSON_H

#include <json-c/json.h>

#define QJSON_FLAGS (JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE)

#endif

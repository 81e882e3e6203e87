/*
 * ctlclient: send one request on the control socket and read the answer.
 */
#ifndef MAILRELAY_CTLCLIENT_H
#define MAILRELAY_CTLCLIENT_H

#include <stddef.h>

typedef void (*ctl_data_fn)(const char *line, void *arg);

/*
 * Send request (one line, no LF) to the control socket at path; each data
 * line of the answer goes to on_data (may be NULL), the text of the final
 * line to final.  Returns 0 for OK, the ERR reply's exit code (64..78)
 * for ERR, -1 when the daemon could not be asked or gave no data line
 * before its answer broke (err says why), and 76 (EX_PROTOCOL, final
 * saying why) when its answer broke after data lines were passed on: the
 * caller then must not answer again another way.
 */
int ctl_request(const char *path, const char *request, ctl_data_fn on_data, void *arg,
    char *final, size_t finallen, char *err, size_t errlen);

#endif

/*
 * header: the message header section as the daemon stores it (CRLF
 * lines).  Pure functions: scrub a header block and say what is in it.
 */
#ifndef MAILRELAY_HEADER_H
#define MAILRELAY_HEADER_H

#include <stddef.h>

struct header_info {
	int has_date, has_msgid, has_from;
	size_t bcc_removed;         /* Bcc and Resent-Bcc fields dropped */
};

/*
 * hdr[0..len) is a header block: CRLF lines, without the empty line that
 * ends it.  Every Bcc and Resent-Bcc field (with its continuation lines) is removed in
 * place; returns the new length and fills info.
 */
size_t header_scrub(char *hdr, size_t len, struct header_info *info);

/* Is line (one field's first line) the field `name`?  Case-insensitive. */
int header_is(const char *line, size_t len, const char *name);

#endif

/*
 * addr: addresses in message headers (RFC 5322 section 3.4) — enough of
 * the grammar to take recipients from To/Cc/Bcc for `sendmail -t`:
 * display names, quoted strings, comments, angle addresses, groups and
 * obsolete source routes.  Pure, no allocation beyond the callback.
 */
#ifndef MAILRELAY_ADDR_H
#define MAILRELAY_ADDR_H

#include <stddef.h>

#define ADDR_MAX 256

typedef void (*addr_fn)(const char *addr, void *arg);

/*
 * Call fn for every address in an address-list header value (folding
 * CRLFs allowed).  Returns the number of addresses found, or -1 when the
 * value is malformed (unbalanced quotes, comments or brackets, a NUL or
 * control character, or an address longer than ADDR_MAX); addresses
 * before the error were reported.  Reported addresses contain no control
 * characters; a quoted local part keeps its quotes.
 */
int addr_list_parse(const char *val, size_t len, addr_fn fn, void *arg);

#endif

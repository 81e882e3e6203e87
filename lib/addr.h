/*
 * addr: mail addresses, shared by the daemon and the clients.
 *
 *  - addr_list_walk() / addr_list_parse(): the address lists of message
 *    headers (RFC 5322 section 3.4): display names, quoted strings,
 *    comments, angle addresses, groups and obsolete source routes.
 *  - addr_list_rewrite(): replace addresses in such a list in place,
 *    keeping display names, comments and everything else byte for byte.
 *  - addr_spec_check(): is one address a valid RFC 5321 mailbox?  Quoted
 *    local parts, dot-atoms, host names, address literals, and UTF-8 in
 *    both parts (RFC 6531: IDN domains stay as U-labels or A-labels, as
 *    given).  This is what `strict_addresses = yes` enforces.
 *
 * Pure: no I/O; allocation only in addr_list_rewrite().
 */
#ifndef MAILRELAY_ADDR_H
#define MAILRELAY_ADDR_H

#include <stddef.h>

#define ADDR_MAX 256

/* One mailbox found in a header value. */
struct addr_mbox {
	const char *addr;       /* the addr-spec without comments and white space */
	size_t start, end;      /* where the addr-spec lies in the value: [start, end) */
	int angle;              /* it was written <like@this> */
	int group;              /* inside a group ("undisclosed: a@b;") */
};

typedef void (*addr_fn)(const char *addr, void *arg);
typedef void (*addr_mbox_fn)(const struct addr_mbox *m, void *arg);

/*
 * Call fn for every mailbox in an address-list header value (folding
 * CRLFs allowed).  Returns the number of mailboxes found, or -1 when the
 * value is malformed (unbalanced quotes, comments or brackets, a NUL or
 * control character, or an address longer than ADDR_MAX); mailboxes
 * before the error were reported.  Reported addresses contain no control
 * characters; a quoted local part keeps its quotes.
 */
int addr_list_walk(const char *val, size_t len, addr_mbox_fn fn, void *arg);

/* The same, reporting only the address text. */
int addr_list_parse(const char *val, size_t len, addr_fn fn, void *arg);

/*
 * Rewrite an address-list value: fn returns a new addr-spec (allocated;
 * it is freed here) for an address to replace, or NULL to keep it.  A
 * bare address that had a comment ("root (Cron Daemon)") keeps the
 * comment after the new address.  Returns the new value (allocated,
 * *outlen set), or NULL when nothing changed or the value is malformed.
 */
char *addr_list_rewrite(const char *val, size_t len,
    char *(*fn)(const char *addr, void *arg), void *arg, size_t *outlen);

/* addr_spec_check() flags */
#define ADDR_LOCAL_OK   0x01    /* a local part alone ("root") is allowed */

/*
 * Is addr (no angle brackets) a valid RFC 5321 mailbox?  Returns 0, or
 * -1 with *why set to a short static reason ("empty local part").
 */
int addr_spec_check(const char *addr, int flags, const char **why);

/* The domain of addr (after the last '@' outside quotes), or NULL when it has none. */
const char *addr_domain(const char *addr);

#endif

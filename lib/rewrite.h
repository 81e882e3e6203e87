/*
 * rewrite: the address rewriting of SPEC "Addresses", as pure functions
 * of a policy (hostname, from_address, rewrite_from).
 *
 * A *local* address has no domain ("root") or our own host name as its
 * domain ("root@web1.example.com").
 *
 * Envelope sender (rewrite_sender):
 *   <>                      stays <>
 *   no domain               from_address, else user@hostname (every mode)
 *   user@hostname           from_address when set and rewrite_from is
 *                           local or always; else unchanged
 *   anything else           unchanged
 *
 * Header fields, at submission (rewrite_header_block):
 *   From, Sender, Resent-From, Resent-Sender (originators): like the
 *     envelope sender, except that with rewrite_from = never an address
 *     without a domain only gets @hostname and nothing else changes.
 *   To, Cc, Reply-To, Resent-To, Resent-Cc (recipients): an address
 *     without a domain gets @hostname.
 *   Only the address is replaced; display names, comments, folding and
 *   every other field are kept byte for byte.
 *
 * rewrite_from = always, at delivery, per smarthost (rewrite_for_identity):
 *   the envelope sender (unless <>) and every address in From: and
 *   Sender: become the identity (from_address, else the smarthost's
 *   username when it is an address); the display name stays.  When the
 *   message has no Reply-To:, the original From: value is kept as one,
 *   so replies still reach the author.
 */
#ifndef MAILRELAY_REWRITE_H
#define MAILRELAY_REWRITE_H

#include <stddef.h>

/* Same values as conf's enum rewrite_from_mode. */
#define REWRITE_NEVER  0
#define REWRITE_LOCAL  1
#define REWRITE_ALWAYS 2

struct rewrite_policy {
	const char *hostname;
	const char *from_address;       /* NULL when unset */
	int mode;                       /* REWRITE_* */
};

/* Is addr local under the policy (no domain, or the host name as domain)? */
int rewrite_is_local(const struct rewrite_policy *p, const char *addr);

/* The envelope sender to store for a locally submitted sender path.  Allocated. */
char *rewrite_sender(const struct rewrite_policy *p, const char *path);

/*
 * Rewrite the address fields of a header block (CRLF lines, without the
 * empty line).  Returns a new block (allocated, *outlen set), or NULL when
 * nothing changed.  *nchanged counts the fields rewritten.
 */
char *rewrite_header_block(const struct rewrite_policy *p, const char *hdr, size_t len,
    size_t *outlen, unsigned *nchanged);

/*
 * rewrite_from = always: From:/Sender: addresses become identity, the
 * original From: is added as Reply-To: when there is none.  Returns a new
 * block (allocated), or NULL when nothing changed.
 */
char *rewrite_for_identity(const char *identity, const char *hdr, size_t len, size_t *outlen);

/*
 * Length of the header section of a message (CRLF lines): the offset of
 * the empty line that ends it, or of the end of data when there is none
 * within max; 0 when the message starts with the empty line or with a
 * line that is not a header field.  *complete says whether the empty line
 * was found.
 */
size_t rewrite_header_len(const char *msg, size_t len, size_t max, int *complete);

#endif

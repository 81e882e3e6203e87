/*
 * linefix: repair a stored message so that every relay accepts it.
 *
 * Since the SMTP smuggling fixes, relays refuse messages with a bare CR,
 * a bare LF or a line longer than 998 octets (RFC 5322 section 2.1.1).
 * linefix_needed() says whether a message has any of these;
 * linefix_message() returns a repaired copy.  linefix_7bit() repairs the
 * same way and re-encodes 8-bit bodies too, for a smarthost that does not
 * offer 8BITMIME.  What the copy looks like:
 *
 *  1. Every line ends in CRLF.  A bare CR and a bare LF each become CRLF
 *     (so CR CR LF is two line breaks); an unterminated last line gets
 *     CRLF.
 *  2. No line is longer than LINEFIX_MAX octets, CRLF not counted.
 *  3. Header fields (of the message, of each MIME part, of a message
 *     embedded as message/rfc822) are folded: a field line over the limit
 *     gets CRLF inserted before the last space or tab that keeps the line
 *     within the limit, so the value is the same once unfolded.  Where no
 *     such white space exists, CRLF and one space are inserted at the
 *     limit (or up to a few octets before it, not to split a UTF-8
 *     sequence): each such fold adds one space to the unfolded value.
 *     Continuation lines are folded the same way.
 *  4. A body with an over-long line whose Content-Transfer-Encoding is
 *     absent, 7bit, 8bit or binary, and whose type is not multipart/... or
 *     message/..., is re-encoded as a whole as quoted-printable (RFC 2045
 *     section 6.7: lines of at most 76 characters, soft line breaks "="
 *     CRLF, "=", controls, 8-bit octets and white space before a line
 *     break written as =XX, the body's CRLFs kept as hard line breaks).
 *     Its Content-Transfer-Encoding field is replaced, where it is, by
 *     "Content-Transfer-Encoding: quoted-printable", or added.  A message
 *     (not a MIME part) without MIME-Version gets "MIME-Version: 1.0".
 *     Without a Content-Type and with 8-bit octets in the body,
 *     "Content-Type: text/plain; charset=utf-8" is added when the body is
 *     valid UTF-8, "...; charset=unknown-8bit" (RFC 1428) otherwise.
 *     Decoding gives back exactly the original body.
 *  5. multipart/... bodies are walked (boundary quoted or not, up to
 *     LINEFIX_MAX_DEPTH levels) and rule 4 applied to each leaf part with
 *     its own header; message/rfc822 and message/global parts with an
 *     identity encoding are repaired as messages.  Over-long lines of a
 *     base64 part are cut every 76 characters (decoders ignore line
 *     breaks); those of a quoted-printable part get soft line breaks that
 *     never split an =XX.
 *  6. Everything else falls back to a forced break: CRLF inserted at the
 *     limit, or up to a few octets before it so that neither a UTF-8
 *     sequence is split nor the new line starts with "--".  This covers
 *     other encodings and message/... types, a header section that does not
 *     parse (a line that is neither a field nor a continuation: the rest
 *     counts as body), a multipart without a usable boundary or closing
 *     delimiter or with a line that starts like a delimiter but is not
 *     one, duplicate Content-Type or Content-Transfer-Encoding fields,
 *     preamble and epilogue, and anything nested deeper than the limit.
 *  7. Nothing else changes: header fields within the limit are copied
 *     byte for byte (except a replaced Content-Transfer-Encoding), and so
 *     are lines within the limit in bodies that are not re-encoded.  Over-
 *     long transport padding after a boundary delimiter is dropped.
 *
 * The header section is the run of field and continuation lines up to the
 * first empty line.  A body part or an embedded message is parsed only
 * inside the range its parent gave it.  Any input is safe: NULs, no
 * header, no empty line, empty input.  Work and memory are linear in the
 * input size: the output is at most 3.25 times the input, plus a little.
 *
 * Pure functions, no I/O; allocation through xmalloc.
 */
#ifndef MAILRELAY_LINEFIX_H
#define MAILRELAY_LINEFIX_H

#include <stddef.h>

#define LINEFIX_MAX		998	/* octets per line, CRLF not counted */
#define LINEFIX_MAX_DEPTH	10	/* nested multipart or message levels */

struct linefix_report {
	size_t bare_eol_fixed;      /* bare CR or bare LF turned into CRLF */
	size_t header_lines_folded; /* header lines over the limit that were folded */
	size_t parts_qp_encoded;    /* bodies or leaf parts re-encoded quoted-printable */
	size_t parts_rewrapped;     /* base64 or quoted-printable bodies whose long lines were cut */
	size_t lines_wrapped;       /* body lines broken by force (rule 6) */
};

/*
 * Does msg[0..len) need repair: a bare CR, a bare LF, or a line longer than
 * LINEFIX_MAX octets?  An unterminated last line alone does not count
 * (the SMTP encoder terminates it).
 */
int linefix_needed(const char *msg, size_t len);

/*
 * A newly allocated repaired copy of msg[0..len), its length in *outlen;
 * NULL (and *outlen 0) when linefix_needed() is false.  rep, if not NULL,
 * is zeroed and then counts what was done.  The copy never needs repair.
 */
char *linefix_message(const char *msg, size_t len, size_t *outlen,
    struct linefix_report *rep);

/*
 * For a smarthost that does not offer 8BITMIME (RFC 6152 3): a newly
 * allocated copy of msg[0..len) with everything linefix_message() does,
 * and in addition every body or leaf part that holds an 8-bit octet and
 * has an identity encoding (none, 7bit, 8bit, binary) re-encoded as
 * quoted-printable by rule 4, even without an over-long line.  NULL (and
 * *outlen 0) when msg has no 8-bit octet.  8-bit octets in header fields,
 * and in bodies rule 6 leaves alone (a structure that does not parse, a
 * base64 or quoted-printable body), stay: the caller checks the copy.
 */
char *linefix_7bit(const char *msg, size_t len, size_t *outlen,
    struct linefix_report *rep);

#endif

/*
 * dotstuff: the SMTP DATA transparency procedure (RFC 5321 section 4.5.2)
 * in both directions, plus line-ending normalisation.
 *
 * Encoder (client side: spool or stdin -> wire): any of CRLF, bare LF or
 * bare CR-less input becomes CRLF lines; a line starting with '.' gets one
 * more '.'; finish() ends an unterminated last line and appends ".\r\n".
 *
 * Decoder (server side: wire -> spool): consumes dot-stuffed input up to
 * and including the terminating <CR><LF>.<CR><LF>, removes one leading
 * '.', writes CRLF-only text, and reports what a listener must judge: lines
 * longer than the limit, NUL bytes, 8-bit octets, bare CR and bare LF.
 * Both are streaming: input may be cut anywhere, even between CR and LF.
 *
 * The data ends only at a "." line that both starts after a real CRLF (or
 * at the start of the data) and ends with CRLF.  Any other "dot line" is
 * message text (no SMTP smuggling): "\n.\n", "\r\n.\n" and "\n.\r\n"
 * are kept as the line "."; a '.' followed by a bare CR ("\r\n.\rX") is
 * dropped as stuffing and the CR becomes CRLF; after a bare CR ("\r.\r\n")
 * nothing is a line start.  dot_lines counts them all.
 *
 * Pure functions, no I/O, no allocation.
 */
#ifndef MAILRELAY_DOTSTUFF_H
#define MAILRELAY_DOTSTUFF_H

#include <stddef.h>

struct dot_encoder {
	int at_line_start;   /* next byte begins a line */
	int pending_cr;      /* the previous chunk ended with CR */
};

void dot_encoder_init(struct dot_encoder *e);
/* Encode len bytes; out must hold at least 2*len + 2 bytes.  Returns bytes written. */
size_t dot_encode(struct dot_encoder *e, const char *in, size_t len, char *out);
/* Flush: CRLF if the last line is unterminated, then ".\r\n".  out holds >= 6 bytes.  Returns bytes written. */
size_t dot_encode_finish(struct dot_encoder *e, char *out);

struct dot_decoder {
	int    state;        /* internal */
	int    crlf_start;   /* internal: the current line began after a real CRLF */
	size_t linelen;      /* octets of the current line so far, without CRLF, after unstuffing */
	size_t max_line;     /* limit in octets without CRLF (998 per RFC 5322); 0 = no limit */
	int    overlong;     /* set once some line exceeded max_line (data is still passed through) */
	int    nul;          /* a NUL octet was seen (passed through; RFC 5321 2.3.8 forbids it) */
	int    eightbit;     /* an octet >= 0x80 was seen */
	size_t bare_lf;      /* bare LFs written as CRLF */
	size_t bare_cr;      /* bare CRs written as CRLF */
	size_t dot_lines;    /* "." lines kept as text: not a <CR><LF>.<CR><LF> */
	int    done;         /* the terminating "." line was consumed */
};

void dot_decoder_init(struct dot_decoder *d, size_t max_line);
/*
 * Decode from in[0..len) into out (capacity >= len + 2).  Returns the number
 * of input bytes consumed; *outlen receives the number of bytes written.
 * Stops right after the terminator (d->done set): bytes beyond it are not
 * consumed (with PIPELINING the next command may follow).
 * Each bare LF becomes CRLF, so input full of bare LFs would outgrow
 * len + 2: the decoder then stops early, without done set, and the caller
 * passes the unconsumed rest again.  At least one byte is consumed per call
 * when len > 0 and !done; CRLF input (or anything without bare LF/CR) is
 * always consumed up to len or the terminator.
 * Line starts: after CRLF and after a bare LF a leading '.' is removed; a
 * bare CR is written as CRLF but does not start a line, so no '.' is
 * removed after it.  Once done, calls consume nothing.
 */
size_t dot_decode(struct dot_decoder *d, const char *in, size_t len,
    char *out, size_t *outlen);

#endif

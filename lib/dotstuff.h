/*
 * dotstuff: the SMTP DATA transparency procedure (RFC 5321 section 4.5.2)
 * in both directions, plus line-ending normalisation.
 *
 * Encoder (client side: spool or stdin -> wire): any of CRLF, bare LF or
 * bare CR-less input becomes CRLF lines; a line starting with '.' gets one
 * more '.'; finish() ends an unterminated last line and appends ".\r\n".
 *
 * Decoder (server side: wire -> spool): consumes dot-stuffed CRLF input up to
 * and including the terminating "CRLF.CRLF" (a lone "." line), removes one
 * leading '.', turns bare LF into CRLF, and reports lines longer than the
 * limit.  Both are streaming: input may be cut anywhere, even between CR and LF.
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
	size_t linelen;      /* octets of the current line so far, without CRLF, after unstuffing */
	size_t max_line;     /* limit in octets without CRLF (998 per RFC 5322); 0 = no limit */
	int    overlong;     /* set once some line exceeded max_line (data is still passed through) */
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
 * always consumed up to len or the terminator.  A bare CR is written as
 * CRLF but does not start a line: no '.' is removed after it and it never
 * forms part of a terminator.  Once done, calls consume nothing.
 */
size_t dot_decode(struct dot_decoder *d, const char *in, size_t len,
    char *out, size_t *outlen);

#endif

/*
 * dlink: the frames between mailrelayd and its delivery process,
 * mailrelay-deliver (see dproxy.c and dchild.c).
 *
 * mailrelayd keeps the queue, dispatch, the failure table, the smarthost
 * back-off and the counters; mailrelay-deliver runs the delivery
 * sessions (connections, TLS, AUTH, OAuth2) and nothing else, so that the
 * daemon that stays maps no TLS library.  They talk over one stream
 * socket pair, in frames:
 *
 *   u32 length (big-endian) of what follows, u8 type, then the fields
 *
 * A field is a u32 (big-endian) or a string: u32 length, the octets, and
 * a NUL that is checked (a string never holds a NUL, so it is used in
 * place).  A NULL string is the length 0xffffffff and nothing else.
 *
 * A session is named by the id mailrelayd gave it (LK_START); a message
 * by the session that carries it, one at a time.  A session that goes on
 * from one message to the next on its connection gets the next ahead
 * (LK_AHEAD), so that it need not wait for mailrelayd between the two.
 * The process says when it takes that one (LK_TAKEN, after the
 * LK_RELEASE of the one before, and maybe much later: an RSET comes
 * between, or never: the session ends first), and mailrelayd gives the
 * next ahead only then.  Each side checks every
 * frame and every field: a frame that does not parse, or names a session
 * that does not exist where it must, ends the link (the other side is
 * broken, not hostile: it is our own program, but its bugs must not
 * become ours).
 */
#ifndef MAILRELAY_DLINK_H
#define MAILRELAY_DLINK_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>

/*
 * The largest frame each side accepts: from mailrelayd, an envelope of
 * 100,000 recipients fits; from the delivery process, whose longest is a
 * reply or a log line of a few KB, a megabyte.
 */
#define LK_FRAME_MAX (64u << 20)
#define LK_FRAME_UP_MAX (1u << 20)

enum lk_type {
	/* mailrelayd -> mailrelay-deliver */
	LK_CONFIG = 1,      /* path (NULL: the defaults), text: the configuration to run (the first frame) */
	LK_START,           /* sid, smarthost index, smarthost name, envelope: a new session for it */
	LK_RESUME,          /* sid, envelope: the next message for an idle session */
	LK_QUIT,            /* sid: end this idle session (nothing more for it) */
	LK_RELOAD,          /* log level, path, text: the configuration now (as LK_CONFIG) */
	LK_AHEAD,           /* sid, envelope: the message after the one it carries (one at most) */
	/* mailrelay-deliver -> mailrelayd */
	LK_LOG = 32,        /* prio, qid, status, text: a log line */
	LK_RECORD,          /* sid, rcpt, kind, class, text, relay info: trouble_record() */
	LK_COUNT,           /* sid, kind, state: trouble_count() */
	LK_SH_FAILED,       /* sid, kind, why: trouble_smarthost_failed() */
	LK_SH_OK,           /* sid: trouble_smarthost_ok() */
	LK_FAILOVER,        /* sid, kind, why, relay info: dispatch_smarthost_failed() */
	LK_RELEASE,         /* sid: queue_release() of its message */
	LK_CHECKPOINT,      /* sid: queue_checkpoint() */
	LK_DAMAGED,         /* sid, why: its message failed queue_verify() */
	LK_IDLE,            /* sid: waiting for a next message (DS_IDLE) */
	LK_REFUSED,         /* sid: a LK_RESUME or LK_AHEAD came after the session ended: back untried */
	LK_END,             /* sid: the session is over */
	LK_METRIC_REPLY,    /* smarthost name, reply code */
	LK_METRIC_TLS,      /* smarthost name, result (enum metrics_tls) */
	LK_BUSY,            /* 0 or 1: work of its own with no session (an OAuth2 token renewed) */
	LK_TAKEN            /* sid: it goes on to the message given ahead; reports name that one now */
};

/* Relay info travels as: relay, tls, verify (may be NULL), dsn (u32). */

/* A frame being built: dl_begin(), the fields, dl_end() appends it to out. */
struct dl_out {
	struct evbuffer *out;
	struct evbuffer *body;
};
void dl_begin(struct dl_out *f, struct evbuffer *out, enum lk_type t);
void dl_u32(struct dl_out *f, uint32_t v);
void dl_str(struct dl_out *f, const char *s);
void dl_bytes(struct dl_out *f, const char *p, size_t len);
void dl_end(struct dl_out *f);

/* A frame received: its type and fields, read in order. */
struct dl_in {
	enum lk_type type;
	unsigned char *buf;         /* the frame (owned; dl_in_free()) */
	size_t len, off;
	size_t last;                /* the length of the last string read */
	int bad;                    /* a field was missing or malformed */
};
/*
 * Take the next whole frame out of in: 1 (m filled), 0 (not complete
 * yet), -1 (longer than max or empty: the link is broken).
 */
int dl_next(struct evbuffer *in, size_t max, struct dl_in *m);
uint32_t dl_get_u32(struct dl_in *m);
/* NULL for a NULL string, or when bad (check m->bad at the end, or use dl_get_str_nn()). */
const char *dl_get_str(struct dl_in *m);
/* The length of the string dl_get_str() returned last (for envelopes). */
size_t dl_last_len(const struct dl_in *m);
/* Every field was read and none was bad. */
int dl_done(const struct dl_in *m);
void dl_in_free(struct dl_in *m);

#endif

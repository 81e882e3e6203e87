/*
 * Fuzz target for the frames between mailrelayd and its delivery process
 * (daemon/dlink.c): any octets as a stream of frames, each read field by
 * field as its receiver reads it (the table below follows dproxy.c's and
 * dchild.c's on_frame()).
 * fuzz-sources: daemon/dlink.c lib/log.c lib/xmalloc.c
 * fuzz-libs: -levent_core
 *
 * Nothing is read past a frame, a string read is NUL-terminated and holds
 * no NUL, and a frame read whole is written back the same by the writer.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "daemon/dlink.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The fields of each frame: u = u32, s = string. */
static const char *
schema(enum lk_type t)
{
	switch (t) {
	case LK_CONFIG: return "ss";
	case LK_START: return "uuss";
	case LK_RESUME: case LK_AHEAD: return "us";
	case LK_QUIT: return "u";
	case LK_RELOAD: return "uss";
	case LK_LOG: return "usss";
	case LK_RECORD: return "uuuusssu";
	case LK_COUNT: return "uuu";
	case LK_SH_FAILED: return "uus";
	case LK_SH_OK: return "u";
	case LK_FAILOVER: return "uussssu";
	case LK_RELEASE: case LK_CHECKPOINT: case LK_IDLE: case LK_REFUSED: case LK_END: return "u";
	case LK_DAMAGED: return "us";
	case LK_METRIC_REPLY: case LK_METRIC_TLS: return "su";
	case LK_BUSY: case LK_TAKEN: return "u";
	}
	return NULL;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
	struct dl_in m;
	int r;

	evbuffer_add(in, data, size);
	while ((r = dl_next(in, LK_FRAME_MAX, &m)) == 1) {
		const char *fields = schema(m.type), *f;
		struct dl_out w;
		size_t start = evbuffer_get_length(out);

		if (fields == NULL) {
			dl_in_free(&m);
			continue;
		}
		dl_begin(&w, out, m.type);
		for (f = fields; *f; f++) {
			if (*f == 'u') {
				dl_u32(&w, dl_get_u32(&m));
			} else {
				const char *s = dl_get_str(&m);
				if (s != NULL) {
					if (strlen(s) != dl_last_len(&m))
						abort();
					dl_bytes(&w, s, dl_last_len(&m));
				} else
					dl_str(&w, NULL);
			}
		}
		dl_end(&w);
		if (m.off > m.len)
			abort();
		if (dl_done(&m)) {
			/* written back, it is the frame read */
			size_t n = evbuffer_get_length(out) - start;
			unsigned char *again = evbuffer_pullup(out, -1) + start;
			if (n != 4 + m.len || memcmp(again + 4, m.buf, m.len) != 0)
				abort();
		}
		dl_in_free(&m);
	}
	evbuffer_free(in);
	evbuffer_free(out);
	return 0;
}

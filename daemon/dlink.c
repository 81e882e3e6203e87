/*
 * dlink: see dlink.h.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <sysexits.h>

#include "dlink.h"
#include "log.h"
#include "xmalloc.h"

#define NULL_STR 0xffffffffu

static void
put_u32(struct evbuffer *b, uint32_t v)
{
	unsigned char p[4] = { (unsigned char)(v >> 24), (unsigned char)(v >> 16),
	    (unsigned char)(v >> 8), (unsigned char)v };

	evbuffer_add(b, p, sizeof p);
}

void
dl_begin(struct dl_out *f, struct evbuffer *out, enum lk_type t)
{
	unsigned char type = (unsigned char)t;

	f->out = out;
	if ((f->body = evbuffer_new()) == NULL)
		log_fatalx_code(EX_OSERR, "out of memory making a frame");
	evbuffer_add(f->body, &type, 1);
}

void
dl_u32(struct dl_out *f, uint32_t v)
{
	put_u32(f->body, v);
}

void
dl_bytes(struct dl_out *f, const char *p, size_t len)
{
	static const char nul = '\0';

	put_u32(f->body, (uint32_t)len);
	evbuffer_add(f->body, p, len);
	evbuffer_add(f->body, &nul, 1);
}

void
dl_str(struct dl_out *f, const char *s)
{
	if (s == NULL)
		put_u32(f->body, NULL_STR);
	else
		dl_bytes(f, s, strlen(s));
}

void
dl_end(struct dl_out *f)
{
	put_u32(f->out, (uint32_t)evbuffer_get_length(f->body));
	evbuffer_add_buffer(f->out, f->body);
	evbuffer_free(f->body);
	f->body = NULL;
}

int
dl_next(struct evbuffer *in, size_t max, struct dl_in *m)
{
	unsigned char h[4];
	uint32_t len;

	memset(m, 0, sizeof *m);
	if (evbuffer_copyout(in, h, 4) < 4)
		return 0;
	len = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
	if (len == 0 || len > max)
		return -1;
	if (evbuffer_get_length(in) < 4 + (size_t)len)
		return 0;
	evbuffer_drain(in, 4);
	m->buf = xmalloc(len);
	evbuffer_remove(in, m->buf, len);
	m->type = (enum lk_type)m->buf[0];
	m->len = len;
	m->off = 1;
	return 1;
}

uint32_t
dl_get_u32(struct dl_in *m)
{
	const unsigned char *p;

	if (m->bad || m->len - m->off < 4) {
		m->bad = 1;
		return 0;
	}
	p = m->buf + m->off;
	m->off += 4;
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

const char *
dl_get_str(struct dl_in *m)
{
	uint32_t n = dl_get_u32(m);
	const char *s;

	m->last = 0;
	if (m->bad || n == NULL_STR)
		return NULL;
	/* the octets and the NUL, with no NUL among the octets */
	if (m->len - m->off < (size_t)n + 1 || m->buf[m->off + n] != '\0' ||
	    memchr(m->buf + m->off, '\0', n) != NULL) {
		m->bad = 1;
		return NULL;
	}
	s = (const char *)m->buf + m->off;
	m->off += (size_t)n + 1;
	m->last = n;
	return s;
}

size_t
dl_last_len(const struct dl_in *m)
{
	return m->last;
}

int
dl_done(const struct dl_in *m)
{
	return !m->bad && m->off == m->len;
}

void
dl_in_free(struct dl_in *m)
{
	free(m->buf);
	m->buf = NULL;
}

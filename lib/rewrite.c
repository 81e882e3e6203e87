/*
 * rewrite: see rewrite.h.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "addr.h"
#include "header.h"
#include "rewrite.h"
#include "util.h"
#include "xmalloc.h"

int
rewrite_is_local(const struct rewrite_policy *p, const char *addr)
{
	const char *d = addr_domain(addr);

	return d == NULL || strcasecmp(d, p->hostname) == 0;
}

char *
rewrite_sender(const struct rewrite_policy *p, const char *path)
{
	if (path[0] == '\0')
		return xstrdup("");
	if (addr_domain(path) == NULL)
		return p->from_address ? xstrdup(p->from_address) : xasprintf("%s@%s", path, p->hostname);
	if (p->from_address && p->mode != REWRITE_NEVER && rewrite_is_local(p, path))
		return xstrdup(p->from_address);
	return xstrdup(path);
}

/* addr_list_rewrite callbacks */
static char *
qualify_cb(const char *addr, void *arg)
{
	const struct rewrite_policy *p = arg;

	if (addr_domain(addr) != NULL)
		return NULL;
	return xasprintf("%s@%s", addr, p->hostname);
}

static char *
originator_cb(const char *addr, void *arg)
{
	const struct rewrite_policy *p = arg;

	if (p->mode == REWRITE_NEVER)
		return qualify_cb(addr, arg);
	if (!rewrite_is_local(p, addr))
		return NULL;
	if (p->from_address)
		return strcmp(addr, p->from_address) == 0 ? NULL : xstrdup(p->from_address);
	return qualify_cb(addr, arg);
}

static char *
identity_cb(const char *addr, void *arg)
{
	const char *id = arg;

	return strcmp(addr, id) == 0 ? NULL : xstrdup(id);
}

struct field {
	const char *p;          /* the field's first byte */
	size_t len;             /* with its continuation lines and the last CRLF */
	size_t namelen;         /* up to the ':' */
};

/* The field at hdr[off]; returns 0 at the end. */
static int
next_field(const char *hdr, size_t len, size_t off, struct field *f)
{
	size_t i = off;

	if (off >= len)
		return 0;
	do {
		const char *nl = memchr(hdr + i, '\n', len - i);
		i = nl ? (size_t)(nl - hdr) + 1 : len;
	} while (i < len && (hdr[i] == ' ' || hdr[i] == '\t'));
	f->p = hdr + off;
	f->len = i - off;
	const char *colon = memchr(f->p, ':', f->len);
	f->namelen = colon ? (size_t)(colon - f->p) : f->len;
	return 1;
}

static int
field_is(const struct field *f, const char *name)
{
	return header_is(f->p, f->len, name);
}

struct outbuf {
	char *p;
	size_t len, cap;
};

static void
out_add(struct outbuf *o, const char *p, size_t n)
{
	if (o->len + n + 1 > o->cap) {
		o->cap = (o->len + n + 1) * 2;
		o->p = xreallocarray(o->p, o->cap, 1);
	}
	memcpy(o->p + o->len, p, n);
	o->len += n;
	o->p[o->len] = '\0';
}

/* Rewrite one field's value with fn; 1 if it was written changed, 0 if copied. */
static int
field_rewrite(struct outbuf *o, const struct field *f, char *(*fn)(const char *, void *), void *arg)
{
	size_t vlen, nlen;
	const char *v;
	char *nv;

	if (f->namelen >= f->len) {
		out_add(o, f->p, f->len);
		return 0;
	}
	v = f->p + f->namelen + 1;
	vlen = f->len - f->namelen - 1;
	/* the value without its final line ending */
	size_t core = vlen;
	if (core > 0 && v[core - 1] == '\n')
		core--;
	if (core > 0 && v[core - 1] == '\r')
		core--;
	nv = addr_list_rewrite(v, core, fn, arg, &nlen);
	if (nv == NULL) {
		out_add(o, f->p, f->len);
		return 0;
	}
	out_add(o, f->p, f->namelen + 1);
	out_add(o, nv, nlen);
	out_add(o, v + core, vlen - core);
	free(nv);
	return 1;
}

static const char *const originators[] = { "From", "Sender", "Resent-From", "Resent-Sender", NULL };
static const char *const recipients[] = { "To", "Cc", "Reply-To", "Resent-To", "Resent-Cc", NULL };

static int
in_list(const struct field *f, const char *const *names)
{
	for (; *names; names++)
		if (field_is(f, *names))
			return 1;
	return 0;
}

char *
rewrite_header_block(const struct rewrite_policy *p, const char *hdr, size_t len,
    size_t *outlen, unsigned *nchanged)
{
	struct outbuf o = { NULL, 0, 0 };
	struct field f;
	size_t off = 0;
	unsigned changed = 0;

	while (next_field(hdr, len, off, &f)) {
		off += f.len;
		if (in_list(&f, originators))
			changed += (unsigned)field_rewrite(&o, &f, originator_cb, (void *)p);
		else if (in_list(&f, recipients))
			changed += (unsigned)field_rewrite(&o, &f, qualify_cb, (void *)p);
		else
			out_add(&o, f.p, f.len);
	}
	if (nchanged)
		*nchanged = changed;
	if (changed == 0) {
		free(o.p);
		return NULL;
	}
	*outlen = o.len;
	return o.p;
}

char *
rewrite_for_identity(const char *identity, const char *hdr, size_t len, size_t *outlen)
{
	struct outbuf o = { NULL, 0, 0 };
	struct field f;
	size_t off = 0;
	int changed = 0, has_reply_to = 0;
	const struct field *from = NULL;
	struct field fromf;

	while (next_field(hdr, len, off, &f)) {
		off += f.len;
		if (field_is(&f, "Reply-To"))
			has_reply_to = 1;
	}
	off = 0;
	while (next_field(hdr, len, off, &f)) {
		off += f.len;
		if (field_is(&f, "From") || field_is(&f, "Sender")) {
			int c = field_rewrite(&o, &f, identity_cb, (void *)identity);
			if (c && from == NULL && field_is(&f, "From")) {
				fromf = f;
				from = &fromf;
			}
			changed |= c;
		} else
			out_add(&o, f.p, f.len);
	}
	if (!changed) {
		free(o.p);
		return NULL;
	}
	if (from != NULL && !has_reply_to) {
		/* the author, for replies: the original value, folding and all */
		if (o.len > 0 && o.p[o.len - 1] != '\n')
			out_add(&o, "\r\n", 2);	/* a block whose last line was unterminated */
		out_add(&o, "Reply-To:", 9);
		out_add(&o, from->p + from->namelen + 1, from->len - from->namelen - 1);
		if (o.len < 2 || o.p[o.len - 1] != '\n')
			out_add(&o, "\r\n", 2);
	}
	*outlen = o.len;
	return o.p;
}

size_t
rewrite_header_len(const char *msg, size_t len, size_t max, int *complete)
{
	size_t i;

	*complete = 0;
	if (len >= 2 && msg[0] == '\r' && msg[1] == '\n') {
		*complete = 1;
		return 0;
	}
	/* the first line must be a field ("Name:") */
	for (i = 0; i < len && msg[i] != ':'; i++)
		if ((unsigned char)msg[i] <= ' ' || (unsigned char)msg[i] >= 0x7f)
			return 0;
	if (i == 0 || i >= len)
		return 0;
	if (len > max)
		len = max;
	for (i = 0; i + 3 < len; i++)
		if (msg[i] == '\r' && memcmp(msg + i, "\r\n\r\n", 4) == 0) {
			*complete = 1;
			return i + 2;
		}
	return len;
}

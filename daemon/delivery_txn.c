/*
 * delivery_txn: one SMTP transaction of a delivery session: MAIL, RCPT,
 * DATA (one by one, or all at once with PIPELINING), the 452 carry to a
 * next transaction, the body streamed from the write low-water mark, and
 * the outcome of each of its recipients (by the failure kinds of
 * delivery_trouble.h).  The session core (delivery_session.c) enters the states;
 * this file says what they send and judges the envelope replies.
 *
 * Replies are matched to commands by position (RFC 2920): index 0 is
 * MAIL, 1..n the RCPTs, n+1 DATA.  Without PIPELINING the next command is
 * sent when the previous reply arrives; with it, all are sent at once.
 * Either way the same handler judges each reply.
 *
 * Every recipient of a transaction ends with one outcome, decided where
 * the smarthost said so: at its RCPT (refused), at the end of DATA
 * (accepted: that reply decides), or when the transaction breaks off (421,
 * a lost connection, a timeout: deferred, since nothing of a transaction
 * without its final 2xx was delivered).  The exception is 452 after some
 * recipients were accepted: the smarthost's per-transaction limit (RFC
 * 5321 4.5.3.1.10).  Those recipients are not a failure; they go in the
 * next transaction on the same connection (see txn_end()).
 *
 * Nothing 8-bit goes to a smarthost without 8BITMIME: the transaction
 * sends a quoted-printable copy instead, or bounces what cannot be
 * converted (see txn_prepare_7bit()).
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "addr.h"
#include "daemon.h"
#include "delivery_int.h"
#include "delivery_trouble.h"
#include "dotstuff.h"
#include "linefix.h"
#include "log.h"
#include "queue.h"
#include "rewrite.h"
#include "smtp_reply.h"
#include "util.h"
#include "xmalloc.h"

#define BODY_CHUNK (64 * 1024)

static void send_added_headers(struct dsession *s);
static unsigned long long added_headers_size(const struct dsession *s);
static int send_envelope_cmd(struct dsession *s, size_t idx);

/* Drop the current transaction's bookkeeping (not the recipients carried to the next one). */
void
txn_clear(struct dsession *s)
{
	free(s->rc_idx);
	free(s->rc_st);
	s->rc_idx = NULL;
	s->rc_st = NULL;
	s->nrc = s->naccepted = s->reply_idx = s->sent_idx = 0;
	s->mail_failed = 0;
	if (s->body_fd != -1) {
		close(s->body_fd);
		s->body_fd = -1;
	}
	free(s->hdr_new);
	free(s->mail_from);
	s->hdr_new = s->mail_from = NULL;
	s->hdr_newlen = s->hdr_skip = 0;
	s->size_delta = 0;
	s->need_smtputf8 = 0;
}

/*
 * rewrite_from = always: the identity this smarthost sends as
 * (from_address, else its username when that is an address), or NULL.
 */
static const char *
send_identity(const struct dsession *s)
{
	const struct config *c = s->rc->conf;

	if (c->rewrite_from != REWRITE_FROM_ALWAYS)
		return NULL;
	if (c->from_address)
		return c->from_address;
	if (s->sh->username && strchr(s->sh->username, '@') != NULL)
		return s->sh->username;
	return NULL;
}

/*
 * Per-transaction changes to what is sent: the envelope sender and the
 * From:/Sender:/Reply-To: fields under rewrite_from = always.  The new
 * header section replaces the first hdr_skip octets of the content.
 */
static void
txn_prepare_rewrite(struct dsession *s)
{
	const struct spool_env *e = &s->msg->env;
	const char *id = send_identity(s);
	char buf[64 * 1024];
	ssize_t n;
	size_t hl;
	int fd, complete;

	if (id == NULL)
		return;
	if (e->sender[0] != '\0' && strcmp(e->sender, id) != 0)
		s->mail_from = xstrdup(id);	/* <> stays <>: a bounce is a bounce */
	if ((fd = spool_msg_open(&D->spool, e->id)) == -1)
		return;	/* DATA will find out and defer */
	n = pread(fd, buf, sizeof buf, 0);
	close(fd);
	if (n > 0 && (unsigned long long)n > e->size)
		n = (ssize_t)e->size;	/* the content only, not the spool's tail */
	if (n <= 0)
		return;
	hl = rewrite_header_len(buf, (size_t)n, (size_t)n, &complete);
	if (hl == 0 || !complete)
		return;	/* no header section we can work on within 64K: sent as it is */
	s->hdr_new = rewrite_for_identity(id, buf, hl, &s->hdr_newlen);
	if (s->hdr_new != NULL)
		s->hdr_skip = hl;
}

/*
 * 8-bit content for a smarthost that does not offer 8BITMIME: RFC 6152
 * section 3 allows converting it or bouncing it, never sending it as it
 * is.  The message as it would go out (hdr_new, then the stored content
 * after hdr_skip) is converted by linefix_7bit(): every 8-bit body or
 * leaf part becomes quoted-printable, MIME structure kept.  The copy then
 * takes the place of the whole stored content: hdr_new holds it and
 * hdr_skip is the stored size, so DS_BODY sends it and reads nothing more
 * from the file, and SIZE= follows from size_delta.
 *
 * Every message is checked, not only those recorded as 8BITMIME: the
 * check costs one read, only for such smarthosts, and no record can make
 * 8-bit octets go out unconverted.  Returns 0 (converted or nothing to
 * do), -1 when the content cannot be read (why: 4.3.0) or when 8-bit
 * octets would remain (in header fields, or in a body rule 6 of
 * linefix.h leaves alone; why: 5.6.3).
 */
static int
txn_prepare_7bit(struct dsession *s, char *why, size_t whylen, int *permanent)
{
	const struct spool_env *e = &s->msg->env;
	struct linefix_report rep;
	char *content, *out;
	size_t clen, olen, i;

	*permanent = 0;
	if (s->caps.eightbitmime)
		return 0;
	if ((content = spool_msg_read(&D->spool, e, (size_t)e->size, &clen)) == NULL) {
		snprintf(why, whylen, "cannot read queued content: %s", strerror(errno));
		return -1;
	}
	if (s->hdr_new != NULL && s->hdr_skip <= clen) {
		/* the rewritten header section in front of the stored body */
		char *full = xmalloc(s->hdr_newlen + clen - s->hdr_skip + 1);
		memcpy(full, s->hdr_new, s->hdr_newlen);
		memcpy(full + s->hdr_newlen, content + s->hdr_skip, clen - s->hdr_skip);
		out = linefix_7bit(full, s->hdr_newlen + clen - s->hdr_skip, &olen, &rep);
		free(full);
	} else
		out = linefix_7bit(content, clen, &olen, &rep);
	free(content);
	if (out == NULL)
		return 0;	/* all 7-bit */
	for (i = 0; i < olen; i++)
		if ((unsigned char)out[i] >= 0x80)
			break;
	if (i < olen) {
		free(out);
		snprintf(why, whylen, "554 5.6.3 the smarthost does not offer 8BITMIME, and the 8-bit content "
		    "cannot be converted to 7-bit (8-bit header fields or an unparsable MIME structure)");
		*permanent = 1;
		return -1;
	}
	log_qid(LOG_INFO, e->id, NULL, "%s does not offer 8BITMIME: %zu part(s) re-encoded quoted-printable",
	    s->relay, rep.parts_qp_encoded);
	free(s->hdr_new);
	s->hdr_new = out;
	s->hdr_newlen = olen;
	s->hdr_skip = clen;
	return 0;
}

void
txn_carry_clear(struct dsession *s)
{
	free(s->carry);
	s->carry = NULL;
	s->ncarry = 0;
}

/*
 * Give the message back to the queue.  Recipients still carried for a
 * next transaction stay pending untouched: callers that end the session
 * defer them first (txn_outcome_all()); only a shutdown leaves them as
 * they are, for the next start.
 */
void
txn_release(struct dsession *s)
{
	if (s->msg == NULL)
		return;
	txn_clear(s);
	txn_carry_clear(s);
	queue_release(s->msg);
	s->msg = NULL;
}

/*
 * Every recipient of the transaction not yet final gets the outcome kind
 * k says (cls: the class of the smarthost's reply, 0 when none): with
 * only_accepted, those the smarthost accepted (the reply to the end
 * of DATA decides for them; the ones a 452 left for later keep waiting);
 * else all of them, the ones left for later too (the session ends).
 */
void
txn_outcome_all(struct dsession *s, enum trouble_kind k, int cls, const char *reply,
    int only_accepted)
{
	size_t i;

	if (s->msg == NULL)
		return;
	if (s->rc_idx == NULL && s->carry != NULL) {
		/* Between two transactions (RSET): those waiting for the next one. */
		if (only_accepted)
			return;
		for (i = 0; i < s->ncarry; i++)
			if (s->msg->env.rcpts[s->carry[i]].status == RCPT_PENDING)
				trouble_record(s, s->msg, s->carry[i], k, cls, reply);
		txn_carry_clear(s);
		return;
	}
	if (s->rc_idx == NULL) {
		/* Not yet in a transaction: every pending recipient of the message. */
		for (i = 0; i < s->msg->env.nrcpt; i++)
			if (s->msg->env.rcpts[i].status == RCPT_PENDING)
				trouble_record(s, s->msg, i, k, cls, reply);
		return;
	}
	for (i = 0; i < s->nrc; i++) {
		if (s->rc_st[i] == RC_DECIDED)
			continue;	/* already decided at RCPT */
		if (only_accepted && s->rc_st[i] != RC_ACCEPTED)
			continue;
		trouble_record(s, s->msg, s->rc_idx[i], k, cls, reply);
		s->rc_st[i] = RC_DECIDED;
	}
}

/* add_header lines of the smarthost, prepended to every message it carries. */
static unsigned long long
added_headers_size(const struct dsession *s)
{
	unsigned long long n = 0;

	for (size_t i = 0; i < s->sh->nadd_header; i++)
		n += strlen(s->sh->add_header[i]) + 2;
	return n;
}

static void
send_added_headers(struct dsession *s)
{
	char out[2 * 1024 + 8];

	for (size_t i = 0; i < s->sh->nadd_header; i++) {
		const char *h = s->sh->add_header[i];
		size_t len = strlen(h);
		if (len > 1000)
			continue;	/* conf refuses these; belt and braces for the buffer */
		size_t n = dot_encode(&s->enc, h, len, out);
		n += dot_encode(&s->enc, "\r\n", 2, out + n);
		bufferevent_write(s->bev, out, n);
	}
}

/* Send MAIL (idx 0), RCPT (1..nrc) or DATA; -1 when the session failed (see session_send()). */
static int
send_envelope_cmd(struct dsession *s, size_t idx)
{
	const struct spool_env *e = &s->msg->env;
	char params[512] = "", tmp[400];

	if (idx == 0) {
		if (s->caps.size_present) {
			snprintf(tmp, sizeof tmp, " SIZE=%llu", e->size + s->size_delta);
			strlcat_mr(params, tmp, sizeof params);
		}
		if (e->eightbit && s->caps.eightbitmime)
			strlcat_mr(params, " BODY=8BITMIME", sizeof params);
		if (s->caps.smtputf8 && s->need_smtputf8)
			strlcat_mr(params, " SMTPUTF8", sizeof params);
		if (s->caps.dsn && e->ret[0]) {
			snprintf(tmp, sizeof tmp, " RET=%s", e->ret);
			strlcat_mr(params, tmp, sizeof params);
		}
		if (s->caps.dsn && e->envid) {
			snprintf(tmp, sizeof tmp, " ENVID=%s", e->envid);
			strlcat_mr(params, tmp, sizeof params);
		}
		if (session_send(s, "MAIL FROM:<%s>%s", s->mail_from ? s->mail_from : e->sender,
		    params) == -1)
			return -1;
	} else if (idx <= s->nrc) {
		const struct spool_rcpt *r = &e->rcpts[s->rc_idx[idx - 1]];
		if (s->caps.dsn && r->notify[0]) {
			snprintf(tmp, sizeof tmp, " NOTIFY=%s", r->notify);
			strlcat_mr(params, tmp, sizeof params);
		}
		if (s->caps.dsn && r->orcpt) {
			snprintf(tmp, sizeof tmp, " ORCPT=%s", r->orcpt);
			strlcat_mr(params, tmp, sizeof params);
		} else if (s->caps.dsn && r->orig && strcasecmp(r->orig, r->addr) != 0) {
			/* the address as submitted, before aliases and admin_address (RFC 3461 4.2) */
			char q[ADDR_MAX + 80], x[3 * (ADDR_MAX + 80)];
			if (strchr(r->orig, '@') != NULL)
				snprintf(q, sizeof q, "%s", r->orig);
			else
				snprintf(q, sizeof q, "%s@%s", r->orig, s->rc->conf->hostname);
			xtext_encode(q, x, sizeof x);
			if (!has_8bit(q) && strlen(x) < sizeof tmp - 20) {
				snprintf(tmp, sizeof tmp, " ORCPT=rfc822;%s", x);
				strlcat_mr(params, tmp, sizeof params);
			}
		}
		if (session_send(s, "RCPT TO:<%s>%s", r->addr, params) == -1)
			return -1;
	} else if (session_send(s, "DATA") == -1)
		return -1;
	s->sent_idx = idx + 1;
	return 0;
}

/*
 * Begin a transaction for s->msg: for the recipients a 452 left for it
 * when there are any (see txn_end()), else for every pending one.
 */
void
txn_begin(struct dsession *s)
{
	const struct spool_env *e = &s->msg->env;
	size_t i;

	txn_clear(s);
	s->rc_idx = xcalloc(e->nrcpt ? e->nrcpt : 1, sizeof *s->rc_idx);
	s->rc_st = xcalloc(e->nrcpt ? e->nrcpt : 1, sizeof *s->rc_st);
	if (s->carry != NULL) {
		for (i = 0; i < s->ncarry; i++)
			if (e->rcpts[s->carry[i]].status == RCPT_PENDING)
				s->rc_idx[s->nrc++] = s->carry[i];
		txn_carry_clear(s);
	} else {
		for (i = 0; i < e->nrcpt; i++)
			if (e->rcpts[i].status == RCPT_PENDING)
				s->rc_idx[s->nrc++] = i;
	}
	if (s->nrc == 0) {
		txn_release(s);
		session_next_message(s);
		return;
	}
	if (s->caps.size_present && s->caps.size > 0 && e->size + added_headers_size(s) > s->caps.size) {
		char why[200];
		snprintf(why, sizeof why, "552 5.3.4 message size %llu exceeds the smarthost's limit of %llu",
		    e->size, s->caps.size);
		txn_outcome_all(s, TK_TOO_BIG, 0, why, 0);
		txn_release(s);
		session_next_message(s);
		return;
	}
	int addr8 = has_8bit(e->sender);
	for (i = 0; i < s->nrc; i++)
		if (has_8bit(e->rcpts[s->rc_idx[i]].addr))
			addr8 = 1;
	s->need_smtputf8 = e->smtputf8 || addr8;
	if (addr8 && !s->caps.smtputf8) {
		/* a non-ASCII address cannot cross without SMTPUTF8 (RFC 6531 3.2) */
		txn_outcome_all(s, TK_NEEDS_SMTPUTF8, 0,
		    "553 5.6.7 the smarthost does not offer SMTPUTF8, needed for a non-ASCII address", 0);
		txn_release(s);
		session_next_message(s);
		return;
	}
	txn_prepare_rewrite(s);
	char why7[300];
	int perm7;
	if (txn_prepare_7bit(s, why7, sizeof why7, &perm7) == -1) {
		log_qid(LOG_ERR, e->id, NULL, "%s", why7);
		txn_outcome_all(s, perm7 ? TK_NOT_7BIT : TK_SPOOL_READ, 0, why7, 0);
		txn_release(s);
		session_next_message(s);
		return;
	}
	s->size_delta = added_headers_size(s) + s->hdr_newlen - s->hdr_skip;
	s->messages++;
	session_enter(s, DS_ENVELOPE);
}

/*
 * The transaction is over: each of its recipients has its outcome, except
 * those refused with 452 after others were accepted (RC_LATER).  A server
 * with a limit on recipients per transaction answers 452 past it and a
 * client sends the rest in further transactions (RFC 5321 4.5.3.1.10).  So
 * they are not a failed attempt: no attempt is counted, no retry delay
 * applies; they go in the next transaction on this connection, at once.
 * This ends: a transaction leaves recipients for later only when it took
 * at least one (a 452 before any acceptance is a temporary failure of
 * that recipient, judged at its RCPT), so each one takes some.
 *
 * What this transaction decided is written to the spool before the next
 * one starts, so that a crash in a later transaction does not send these
 * recipients again (only an in-flight transaction may be duplicated).
 *
 * rset: the server may still hold this transaction (DATA was refused, or
 * no RCPT was accepted): RSET first.
 */
void
txn_end(struct dsession *s, int rset)
{
	size_t i, n = 0;

	if (s->msg != NULL && s->rc_idx != NULL)
		for (i = 0; i < s->nrc; i++)
			if (s->rc_st[i] == RC_LATER)
				n++;
	if (n > 0 && !D->shutting_down) {
		s->carry = xcalloc(n, sizeof *s->carry);
		for (i = 0; i < s->nrc; i++)
			if (s->rc_st[i] == RC_LATER)
				s->carry[s->ncarry++] = s->rc_idx[i];
		log_qid(LOG_INFO, s->msg->env.id, NULL,
		    "%s took %zu recipient%s of %zu in one transaction; the other %zu go in the next",
		    s->relay, s->naccepted, s->naccepted == 1 ? "" : "s", s->nrc, n);
		txn_clear(s);
		queue_checkpoint(s->msg);
	} else
		txn_release(s);	/* a shutdown leaves RC_LATER ones untouched, for the next start */
	if (rset)
		session_enter(s, DS_RSET);
	else
		session_continue(s);
}

int
txn_body_refill(struct dsession *s)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	char in[BODY_CHUNK], enc[2 * BODY_CHUNK + 8];
	ssize_t n;
	size_t m;

	while (evbuffer_get_length(out) < BODY_CHUNK) {
		size_t want = s->body_left < sizeof in ? (size_t)s->body_left : sizeof in;
		n = want == 0 ? 0 : read(s->body_fd, in, want);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0) {
			/* the content's end, or the file cut short: queue_verify() tells */
			if (queue_verify(s->msg, s->body_fd) == -1) {
				/* changed while being read: no final dot, the server drops what it got */
				session_close(s);
				return 0;
			}
			m = dot_encode_finish(&s->enc, enc);
			evbuffer_add(out, enc, m);
			close(s->body_fd);
			s->body_fd = -1;
			session_enter(s, DS_DOT);
			return 0;
		}
		s->body_left -= (unsigned long long)n;
		m = dot_encode(&s->enc, in, (size_t)n, enc);
		evbuffer_add(out, enc, m);
	}
	return 0;
}

/* Judge one reply to the envelope commands. */
void
txn_on_reply(struct dsession *s, const char *text)
{
	int cls = smtp_reply_class(&s->reply);
	size_t idx = s->reply_idx++;
	struct relay_info ri;

	session_relay_info(s, &ri);
	if (idx == 0) {
		/* MAIL */
		if (cls != 2) {
			txn_outcome_all(s, TK_MAIL_REFUSED, cls, text, 0);
			s->mail_failed = 1;
		}
	} else if (idx <= s->nrc) {
		/* RCPT */
		if (!s->mail_failed) {
			size_t i = idx - 1;
			if (cls == 2) {
				s->rc_st[i] = RC_ACCEPTED;
				s->naccepted++;
			} else if (s->reply.code == 452 && s->naccepted > 0) {
				/*
				 * Too many recipients for this transaction: for the
				 * next one (txn_end()).  Before any acceptance a 452
				 * says the server has no room at all: deferred below.
				 */
				log_debug("%s: <%s> left for the next transaction: %s", s->relay,
				    s->msg->env.rcpts[s->rc_idx[i]].addr, text);
				s->rc_st[i] = RC_LATER;
			} else {
				trouble_record(s, s->msg, s->rc_idx[i], TK_RCPT_REFUSED, cls, text);
				s->rc_st[i] = RC_DECIDED;
			}
		}
	} else {
		/* DATA */
		if (s->reply.code == 354) {
			if (s->mail_failed || s->naccepted == 0) {
				/* A pipelining server let DATA through with nobody to deliver to. */
				bufferevent_write(s->bev, ".\r\n", 3);
				txn_release(s);
				session_enter(s, DS_DOT);
				return;
			}
			session_enter(s, DS_BODY);
			return;
		}
		if (!s->mail_failed && s->naccepted > 0)
			txn_outcome_all(s, TK_DATA_REFUSED, cls, text, 1);
		txn_end(s, 1);
		return;
	}

	if (s->caps.pipelining)
		return;
	/* Without PIPELINING: decide what to send next. */
	if (s->mail_failed || (idx == s->nrc && s->naccepted == 0)) {
		txn_end(s, 1);
		return;
	}
	(void)send_envelope_cmd(s, s->sent_idx);	/* on failure the session is closed */
}

/* DS_ENVELOPE entered: MAIL, and with PIPELINING every RCPT and DATA too. */
void
txn_send_envelope(struct dsession *s)
{
	size_t i;

	if (s->caps.pipelining) {
		for (i = 0; i <= s->nrc + 1; i++)
			if (send_envelope_cmd(s, i) == -1)
				break;
	} else
		send_envelope_cmd(s, 0);
}

/* DS_BODY entered (354 to DATA): start streaming the content. */
void
txn_body_start(struct dsession *s)
{
	s->body_fd = spool_msg_open(&D->spool, s->msg->env.id);
	if (s->body_fd == -1) {
		/* Our own spool failed us: abort the transaction, retry later. */
		char why[300];
		snprintf(why, sizeof why, "cannot read queued content: %s", strerror(errno));
		log_qid(LOG_ERR, s->msg->env.id, NULL, "%s", why);
		txn_outcome_all(s, TK_SPOOL_READ, 0, why, 0);
		session_close(s);	/* the server is inside DATA: drop the connection */
		return;
	}
	if (queue_verify(s->msg, s->body_fd) == -1) {
		/* damaged (held and logged by the queue): not a byte of it is sent */
		session_close(s);
		return;
	}
	dot_encoder_init(&s->enc);
	s->body_left = s->msg->env.size;
	send_added_headers(s);
	if (s->hdr_new != NULL) {
		char *enc = xmalloc(2 * s->hdr_newlen + 8);
		size_t m = dot_encode(&s->enc, s->hdr_new, s->hdr_newlen, enc);
		bufferevent_write(s->bev, enc, m);
		free(enc);
		s->body_left -= s->hdr_skip < s->body_left ? s->hdr_skip : s->body_left;
		if (lseek(s->body_fd, (off_t)s->hdr_skip, SEEK_SET) == -1) {
			txn_outcome_all(s, TK_SPOOL_READ, 0, "cannot read queued content", 0);
			session_close(s);
			return;
		}
	}
	bufferevent_setwatermark(s->bev, EV_WRITE, BODY_CHUNK / 2, 0);
	if (txn_body_refill(s) == -1) {
		txn_outcome_all(s, TK_SPOOL_READ, 0, "cannot read queued content", 0);
		session_close(s);
	}
}

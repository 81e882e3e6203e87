/*
 * delivery_auth: SMTP AUTH (RFC 4954) in a delivery session, after EHLO
 * (and after TLS, when there is TLS) and before the first MAIL.
 *
 * The rules of SPEC "AUTH": the configured mechanism, or for auto the
 * strongest offered; never credentials over an unencrypted connection
 * unless auth_allow_plaintext = yes; a rejection is a failure of the
 * smarthost, retried later, and a password_command's answer is dropped
 * when rejected so that the next attempt asks for a fresh token.  What
 * we send is logged masked, at every level.
 *
 * With an oauth2 section the token comes from daemon/oauth2.c.  When the
 * smarthost rejects it (535, or a 334 with an error report in JSON,
 * answered with an empty line, then 535) the session drops it, asks once
 * for a new one and sends AUTH again; replies that a new token cannot fix
 * (535 5.7.139: SMTP AUTH disabled) are explained and mark the smarthost
 * as needing a person instead.
 *
 * This file never fails the session itself: each step returns a named
 * result (enum auth_result), with the failure kind and the reason filled
 * in on AUTH_FAILED, and the session core decides (session_auth()).
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "daemon.h"
#include "delivery_int.h"
#include "log.h"
#include "oauth2.h"
#include "secret.h"
#include "xmalloc.h"

static enum auth_result
failed(struct dfailure *f, enum trouble_kind kind, const char *fmt, ...) PRINTFLIKE(3, 4);

/* Fill in f: AUTH_FAILED with kind and the reason. */
static enum auth_result
failed(struct dfailure *f, enum trouble_kind kind, const char *fmt, ...)
{
	va_list ap;

	f->kind = kind;
	va_start(ap, fmt);
	vsnprintf(f->why, sizeof f->why, fmt, ap);
	va_end(ap);
	return AUTH_FAILED;
}

static enum auth_result
auth_send(struct dsession *s, const char *secret, struct dfailure *f)
{
	char *line;
	char masked[64];

	sasl_clear(&s->sasl);
	sasl_init(&s->sasl, s->auth_mech, s->sh->username, secret, s->sh->host, s->sh->port);
	line = sasl_initial(&s->sasl);
	if (line == NULL)
		return failed(f, TK_AUTH_EXCHANGE, "cannot build the AUTH %s command for %s (secret too long?)",
		    sasl_mech_name(s->auth_mech), s->relay);
	snprintf(masked, sizeof masked, "AUTH %s%s", sasl_mech_name(s->auth_mech),
	    strchr(line + 5, ' ') ? " ****" : "");
	session_send_masked(s, line, masked);
	sasl_free_str(line);
	session_enter(s, DS_AUTH);
	return AUTH_WAIT;
}

static void
on_secret(const char *secret, const char *err, void *arg)
{
	struct dsession *s = arg;
	struct dfailure f;
	enum auth_result r;

	s->secret_job = NULL;
	if (secret == NULL)
		r = failed(&f, TK_AUTH_SECRET, "smarthost %s: %s", s->sh->name, err);
	else {
		char **slot = &s->rc->cmd_secret[s->shidx];
		if (*slot != NULL) {
			OPENSSL_cleanse(*slot, strlen(*slot));
			free(*slot);
		}
		*slot = xstrdup(secret);
		r = auth_send(s, secret, &f);
	}
	session_auth(s, r, &f);
	session_top(s);	/* a top-level callback */
}

static void
on_token(const char *token, unsigned long gen, const char *err, int person, void *arg)
{
	struct dsession *s = arg;
	struct dfailure f;
	enum auth_result r;

	(void)person;	/* oauth2.c said it at error level and marked the smarthost */
	s->oauth2_wait = NULL;
	if (token == NULL)
		/* the relay first: oauth2.c's own line (error level) starts with "smarthost" */
		r = failed(&f, TK_AUTH_TOKEN, "%s: %s", s->relay, err);
	else {
		s->oauth2_gen = gen;
		r = auth_send(s, token, &f);
	}
	session_auth(s, r, &f);
	session_top(s);	/* a top-level callback */
}

static enum auth_result
oauth2_ask(struct dsession *s, unsigned long not_gen)
{
	s->oauth2_wait = oauth2_get(s->sh, s->rc->oauth2[s->shidx], s->rc->secret[s->shidx], not_gen,
	    on_token, s);
	session_enter(s, DS_SECRET);
	return AUTH_WAIT;
}

enum auth_result
auth_start(struct dsession *s, struct dfailure *f)
{
	const struct smarthost_conf *sh = s->sh;
	char offered[300] = "";
	size_t i;

	if (sh->username == NULL || sh->auth == AUTH_NONE || s->authenticated)
		return AUTH_GO;
	s->auth_mech = sasl_choose(sh->auth, &s->caps);
	if (s->auth_mech == AUTH_NONE) {
		for (i = 0; i < s->caps.nauth; i++) {
			strlcat_mr(offered, i ? " " : "", sizeof offered);
			strlcat_mr(offered, s->caps.auth[i], sizeof offered);
		}
		if (s->caps.nauth == 0)
			return failed(f, TK_AUTH_NOT_OFFERED, "%s does not offer AUTH, but smarthost %s has a username",
			    s->relay, sh->name);
		if (sh->auth == AUTH_AUTO)
			return failed(f, TK_AUTH_NOT_OFFERED, "%s offers no AUTH mechanism we support (it offers: %s)",
			    s->relay, offered);
		return failed(f, TK_AUTH_NOT_OFFERED, "%s does not offer AUTH %s (it offers: %s)",
		    s->relay, sasl_mech_name(sh->auth), offered);
	}
	if (!s->tls_active && !sh->auth_allow_plaintext)
		return failed(f, TK_AUTH_PLAINTEXT, "refusing to send the credentials of smarthost %s over an "
		    "unencrypted connection to %s (use TLS, or set auth_allow_plaintext = yes)",
		    sh->name, s->relay);
	if (sh->oauth2 != NULL && s->rc->oauth2[s->shidx] != NULL)
		return oauth2_ask(s, 0);
	if (s->rc->secret[s->shidx] != NULL)
		return auth_send(s, s->rc->secret[s->shidx], f);
	if (s->rc->cmd_secret[s->shidx] != NULL)
		return auth_send(s, s->rc->cmd_secret[s->shidx], f);
	if (sh->password_command == NULL)
		return failed(f, TK_AUTH_NO_SECRET, "smarthost %s has a username but no secret", sh->name);
	/* the command gets the smarthost's own timeout */
	s->secret_job = secret_run(D->base, sh->password_command, sh->timeout ? sh->timeout : 60,
	    on_secret, s);
	if (s->secret_job == NULL)
		return failed(f, TK_AUTH_SECRET, "smarthost %s: cannot run password_command", sh->name);
	session_enter(s, DS_SECRET);
	return AUTH_WAIT;
}

enum auth_result
auth_on_reply(struct dsession *s, struct dfailure *f)
{
	char err[300], text[1200];
	int code = s->reply.code;

	if (code == 334) {
		/* the challenge: the text of the reply, base64 */
		char *resp = sasl_respond(&s->sasl, s->reply.text, err, sizeof err);
		if (resp == NULL)
			return failed(f, TK_AUTH_EXCHANGE, "authentication with %s failed: %s", s->relay, err);
		session_send_masked(s, resp, "****");
		sasl_free_str(resp);
		return AUTH_WAIT;
	}
	if (code == 235) {
		if (sasl_finish(&s->sasl, err, sizeof err) == -1)
			return failed(f, TK_AUTH_EXCHANGE, "authentication with %s failed: %s", s->relay, err);
		s->authenticated = 1;
		log_info("%s: authenticated as %s with %s", s->relay, s->sh->username,
		    sasl_mech_name(s->auth_mech));
		sasl_clear(&s->sasl);
		return AUTH_GO;
	}
	/* Rejected: a failure of this smarthost, retried later. */
	smtp_reply_summary(&s->reply, text, sizeof text);
	if (s->sh->oauth2 != NULL && s->rc->oauth2[s->shidx] != NULL) {
		const char *means = oauth2_explain_reply(&s->reply);
		oauth2_rejected(s->sh->name, s->oauth2_gen);
		if (oauth2_reply_needs_person(&s->reply)) {
			failed(f, TK_AUTH_REJECTED, "smarthost %s needs authorisation: %s answered AUTH %s "
			    "as %s with %s: %s; mail stays queued", s->sh->name, s->relay,
			    sasl_mech_name(s->auth_mech), s->sh->username, text, means);
			oauth2_needs_person(s->sh->name, f->why);
		} else if (!s->oauth2_retried && code == 535) {
			/* a stale or revoked token: one new one, in this session */
			log_info("%s: the OAuth2 token was rejected (%s%s%s); asking for a new one",
			    s->relay, text, s->sasl.server_error[0] ? "; server says: " : "",
			    s->sasl.server_error);
			s->oauth2_retried = 1;
			sasl_clear(&s->sasl);
			return oauth2_ask(s, s->oauth2_gen);
		} else
			failed(f, TK_AUTH_REJECTED, "authentication failed at %s with %s as %s: %s%s%s%s%s%s",
			    s->relay, sasl_mech_name(s->auth_mech), s->sh->username, text,
			    s->sasl.server_error[0] ? " (server says: " : "", s->sasl.server_error,
			    s->sasl.server_error[0] ? ")" : "", means[0] ? "; " : "", means);
		sasl_clear(&s->sasl);
		return AUTH_FAILED;
	}
	failed(f, TK_AUTH_REJECTED, "authentication failed at %s with %s as %s: %s%s%s%s",
	    s->relay, sasl_mech_name(s->auth_mech), s->sh->username, text,
	    s->sasl.server_error[0] ? " (server says: " : "", s->sasl.server_error,
	    s->sasl.server_error[0] ? ")" : "");
	if (s->rc->cmd_secret[s->shidx] != NULL && s->sh->password_command != NULL) {
		/* a rejected token is dropped: the next attempt runs the command again */
		OPENSSL_cleanse(s->rc->cmd_secret[s->shidx], strlen(s->rc->cmd_secret[s->shidx]));
		free(s->rc->cmd_secret[s->shidx]);
		s->rc->cmd_secret[s->shidx] = NULL;
	}
	sasl_clear(&s->sasl);
	/* deferred either way (a failure of the smarthost): the kind's status is 4.x.x */
	return AUTH_FAILED;
}

void
auth_free(struct dsession *s)
{
	if (s->secret_job != NULL) {
		secret_cancel(s->secret_job);
		s->secret_job = NULL;
	}
	if (s->oauth2_wait != NULL) {
		oauth2_cancel(s->oauth2_wait);
		s->oauth2_wait = NULL;
	}
	sasl_clear(&s->sasl);
}

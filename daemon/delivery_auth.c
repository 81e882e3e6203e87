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
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "daemon.h"
#include "delivery_int.h"
#include "log.h"
#include "secret.h"
#include "xmalloc.h"

static void
auth_send(struct dsession *s, const char *secret)
{
	char *line;
	char masked[64];

	sasl_clear(&s->sasl);
	sasl_init(&s->sasl, s->auth_mech, s->sh->username, secret, s->sh->host, s->sh->port);
	line = sasl_initial(&s->sasl);
	if (line == NULL) {
		char why[300];
		snprintf(why, sizeof why, "cannot build the AUTH %s command for %s (secret too long?)",
		    sasl_mech_name(s->auth_mech), s->relay);
		session_fail(s, TK_AUTH_EXCHANGE, why);
		return;
	}
	snprintf(masked, sizeof masked, "AUTH %s%s", sasl_mech_name(s->auth_mech),
	    strchr(line + 5, ' ') ? " ****" : "");
	session_send_masked(s, line, masked);
	sasl_free_str(line);
	session_enter(s, DS_AUTH);
}

static void
on_secret(const char *secret, const char *err, void *arg)
{
	struct dsession *s = arg;
	char why[400];

	s->secret_job = NULL;
	if (secret == NULL) {
		snprintf(why, sizeof why, "smarthost %s: %s", s->sh->name, err);
		session_fail(s, TK_AUTH_SECRET, why);
	} else {
		char **slot = &s->rc->cmd_secret[s->shidx];
		if (*slot != NULL) {
			OPENSSL_cleanse(*slot, strlen(*slot));
			free(*slot);
		}
		*slot = xstrdup(secret);
		auth_send(s, secret);
	}
	if (s->dead)
		session_free(s);
}

int
auth_start(struct dsession *s)
{
	const struct smarthost_conf *sh = s->sh;
	char why[600], offered[300] = "";
	size_t i;

	if (sh->username == NULL || sh->auth == AUTH_NONE || s->authenticated)
		return 1;
	s->auth_mech = sasl_choose(sh->auth, &s->caps);
	if (s->auth_mech == AUTH_NONE) {
		for (i = 0; i < s->caps.nauth; i++) {
			strlcat_mr(offered, i ? " " : "", sizeof offered);
			strlcat_mr(offered, s->caps.auth[i], sizeof offered);
		}
		if (s->caps.nauth == 0)
			snprintf(why, sizeof why, "%s does not offer AUTH, but smarthost %s has a username",
			    s->relay, sh->name);
		else if (sh->auth == AUTH_AUTO)
			snprintf(why, sizeof why, "%s offers no AUTH mechanism we support (it offers: %s)",
			    s->relay, offered);
		else
			snprintf(why, sizeof why, "%s does not offer AUTH %s (it offers: %s)",
			    s->relay, sasl_mech_name(sh->auth), offered);
		session_fail(s, TK_AUTH_NOT_OFFERED, why);
		return 0;
	}
	if (!s->tls_active && !sh->auth_allow_plaintext) {
		snprintf(why, sizeof why, "refusing to send the credentials of smarthost %s over an "
		    "unencrypted connection to %s (use TLS, or set auth_allow_plaintext = yes)",
		    sh->name, s->relay);
		session_fail(s, TK_AUTH_PLAINTEXT, why);
		return 0;
	}
	if (s->rc->secret[s->shidx] != NULL)
		auth_send(s, s->rc->secret[s->shidx]);
	else if (s->rc->cmd_secret[s->shidx] != NULL)
		auth_send(s, s->rc->cmd_secret[s->shidx]);
	else if (sh->password_command != NULL) {
		/* the command gets the smarthost's own timeout */
		s->secret_job = secret_run(D->base, sh->password_command, sh->timeout ? sh->timeout : 60,
		    on_secret, s);
		if (s->secret_job == NULL) {
			snprintf(why, sizeof why, "smarthost %s: cannot run password_command", sh->name);
			session_fail(s, TK_AUTH_SECRET, why);
			return 0;
		}
		session_enter(s, DS_SECRET);
	} else {
		snprintf(why, sizeof why, "smarthost %s has a username but no secret", sh->name);
		session_fail(s, TK_AUTH_NO_SECRET, why);
	}
	return 0;
}

void
auth_on_reply(struct dsession *s)
{
	char why[1600], err[300], text[1200];
	int code = s->reply.code;

	if (code == 334) {
		/* the challenge: the text of the reply, base64 */
		char *resp = sasl_respond(&s->sasl, s->reply.text, err, sizeof err);
		if (resp == NULL) {
			snprintf(why, sizeof why, "authentication with %s failed: %s", s->relay, err);
			session_fail(s, TK_AUTH_EXCHANGE, why);
			return;
		}
		session_send_masked(s, resp, "****");
		sasl_free_str(resp);
		return;
	}
	if (code == 235) {
		if (sasl_finish(&s->sasl, err, sizeof err) == -1) {
			snprintf(why, sizeof why, "authentication with %s failed: %s", s->relay, err);
			session_fail(s, TK_AUTH_EXCHANGE, why);
			return;
		}
		s->authenticated = 1;
		log_info("%s: authenticated as %s with %s", s->relay, s->sh->username,
		    sasl_mech_name(s->auth_mech));
		sasl_clear(&s->sasl);
		session_go(s);
		return;
	}
	/* Rejected: a failure of this smarthost, retried later. */
	smtp_reply_summary(&s->reply, text, sizeof text);
	snprintf(why, sizeof why, "authentication failed at %s with %s as %s: %s%s%s%s",
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
	/* deferred either way (a failure of the smarthost), so a 4.x.x code */
	session_fail(s, TK_AUTH_REJECTED, why);
}

void
auth_free(struct dsession *s)
{
	if (s->secret_job != NULL) {
		secret_cancel(s->secret_job);
		s->secret_job = NULL;
	}
	sasl_clear(&s->sasl);
}

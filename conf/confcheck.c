/*
 * confcheck: see confcheck.h.
 */
#include "config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "confcheck.h"

/* Does host end in .suffix, or is it suffix itself (case-insensitively)? */
static int
under(const char *host, const char *suffix)
{
	size_t h = strlen(host), s = strlen(suffix);

	if (h > 0 && host[h - 1] == '.')	/* a rooted name, "example.com." */
		h--;
	if (h == s)
		return strncasecmp(host, suffix, s) == 0;
	return h > s && host[h - s - 1] == '.' && strncasecmp(host + h - s, suffix, s) == 0;
}

int
confcheck_is_placeholder(const char *host)
{
	return under(host, "example.com") || under(host, "example.net") || under(host, "example.org");
}

int
confcheck_is_loopback(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (strcasecmp(host, "localhost") == 0 || under(host, "localhost"))
		return 1;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	return inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

static void
report(confcheck_fn *fn, void *arg, enum confcheck_level level, const struct config *c,
    const struct smarthost_conf *sh, const char *key, const char *why)
{
	char msg[1024];

	if (sh != NULL)
		snprintf(msg, sizeof msg, "%s (smarthost %s)", why, sh->name);
	else
		snprintf(msg, sizeof msg, "%s", why);
	fn(arg, level, conf_key_line(c, sh, key), key, msg);
}

static void
check_smarthost(const struct config *c, const struct smarthost_conf *sh, confcheck_fn *fn, void *arg)
{
	char why[768];
	int loopback = confcheck_is_loopback(sh->host);

	if (confcheck_is_placeholder(sh->host)) {
		snprintf(why, sizeof why, "\"%s\" is a placeholder: names under example.com, "
		    "example.net and example.org are reserved for documentation and accept no mail; "
		    "set the SMTP server your provider gives", sh->host);
		report(fn, arg, CONFCHECK_ERROR, c, sh, "host", why);
	} else if (strcasecmp(sh->host, "localhost") == 0 && sh->username != NULL) {
		/* an application's default; a local proxy with AUTH is possible, hence a warning */
		report(fn, arg, CONFCHECK_WARNING, c, sh, "host", "localhost with a username: is this "
		    "a placeholder? A server on this machine seldom asks for a password; "
		    "set the SMTP server your provider gives");
	}
	if (sh->username != NULL && !loopback &&
	    (sh->tls == TLS_DISABLED || sh->tls == TLS_OPPORTUNISTIC)) {
		snprintf(why, sizeof why, "%s towards %s with a username: %s; set tls = required "
		    "(port 587) or implicit (port 465)", conf_tls_mode_name(sh->tls), sh->host,
		    sh->tls == TLS_DISABLED ?
		    (sh->auth_allow_plaintext ? "the password crosses the network in clear" :
		    "the password is never sent in clear, so AUTH fails and mail waits") :
		    "anyone on the path can strip STARTTLS, and then the password is not sent "
		    "(mail waits) or, with auth_allow_plaintext, sent in clear");
		report(fn, arg, CONFCHECK_WARNING, c, sh, "tls", why);
	}
	if (!sh->tls_verify && sh->tls != TLS_DISABLED && sh->tls_fingerprint == NULL)
		report(fn, arg, CONFCHECK_WARNING, c, sh, "tls_verify", "no: the server's "
		    "certificate is not checked, so anyone on the path can read the mail and the "
		    "password; trust a private CA with tls_ca_file, or pin it with tls_fingerprint");
	if (sh->auth_allow_plaintext)
		report(fn, arg, CONFCHECK_WARNING, c, sh, "auth_allow_plaintext", "yes: the password "
		    "is sent unencrypted to a server that offers no TLS");
}

void
confcheck_config(const struct config *c, confcheck_fn *fn, void *arg)
{
	char why[512];

	if (conf_hostname_dotless(c)) {
		snprintf(why, sizeof why, "\"%s\" has no dot: smarthosts often refuse it in EHLO and "
		    "addresses such as root@%s do not route; set hostname in the configuration or "
		    "write the mail name to /etc/mailname", c->hostname, c->hostname);
		report(fn, arg, CONFCHECK_WARNING, c, NULL, "hostname", why);
	}
	if (c->admin_address == NULL) {
		snprintf(why, sizeof why, "not set: mail to root and other local users goes to "
		    "root@%s, which seldom reaches a person; set it to a mailbox someone reads",
		    c->hostname);
		report(fn, arg, CONFCHECK_WARNING, c, NULL, "admin_address", why);
	}
	if (c->nsmarthosts == 0)
		report(fn, arg, CONFCHECK_WARNING, c, NULL, "smarthost", "none is configured: mail "
		    "is accepted and kept in the queue");
	for (size_t i = 0; i < c->nsmarthosts; i++)
		check_smarthost(c, &c->smarthosts[i], fn, arg);
}

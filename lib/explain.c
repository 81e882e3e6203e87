/*
 * explain: the table of what replies and reasons mean.  See explain.h.
 */
#include "config.h"

#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "explain.h"
#include "trouble.h"

static const struct explanation rows[] = {
	/* ---- reaching the smarthost ---- */
	{ "refused", "CONNECT", { "refused", NULL }, 0,
	  "the host answered, but nothing takes connections on that port (or a firewall rejects them)",
	  "check `port`: 587 for STARTTLS submission, 465 for TLS from the first byte, 25 between servers" },
	{ "unreachable", "CONNECT", { "unreachable", NULL }, 0,
	  "there is no route to the smarthost from this machine",
	  "check the network and `host`; a host with IPv6 addresses needs IPv6 or a working IPv4 address too" },
	{ "connect-timeout", "CONNECT", { "timed out", NULL }, 0,
	  "nothing answered at all: a firewall drops the packets, or the host is down",
	  "check `host` and `port`, and that this machine may connect out to that port" },
	{ "plaintext-port", NULL, { "wrong version number", NULL }, 0,
	  "TLS was spoken to a port that answers in plaintext",
	  "with port 587 or 25 use tls = required (STARTTLS); tls = implicit is for port 465" },
	{ "tls-port", "TIMEOUT", { "waiting for the greeting", NULL }, 0,
	  "the server sent no greeting; a port that expects TLS from the first byte (465) waits like this",
	  "with port 465 use tls = implicit; otherwise the server is too slow or busy (see timeout)" },
	{ "tls-port-garbage", "PROTOCOL", { "waiting for the greeting", NULL }, 0,
	  "the server's first bytes are not an SMTP greeting; a port that expects TLS (465) or another "
	  "protocol answers like this",
	  "with port 465 use tls = implicit; check that `port` is an SMTP port" },

	/* ---- certificates ---- */
	{ "cert-name", "TLS_UNTRUSTED", { "mismatch", NULL }, 0,
	  "the certificate is not for the name in `host`",
	  "set `host` to a name the certificate lists (see its names above), not an address or an alias" },
	{ "cert-expired", "TLS_UNTRUSTED", { "expired", NULL }, 0,
	  "the smarthost's certificate has expired",
	  "its administrator must renew it; check this machine's clock too" },
	{ "cert-not-yet", "TLS_UNTRUSTED", { "not yet valid", NULL }, 0,
	  "the smarthost's certificate is not valid yet",
	  "check this machine's clock" },
	{ "cert-self-signed", "TLS_UNTRUSTED", { "self-signed", NULL }, 0,
	  "the certificate is signed by itself, not by a CA this machine trusts",
	  "trust it with tls_ca_file = FILE (the certificate), or pin it with tls_fingerprint" },
	{ "cert-unknown-ca", "TLS_UNTRUSTED", { "issuer", NULL }, 0,
	  "the certificate is signed by a CA this machine does not trust (a private CA)",
	  "put the CA's certificate in a file and set tls_ca_file = FILE, or pin the certificate "
	  "with tls_fingerprint" },

	/* ---- the conversation ---- */
	{ "starttls-first", NULL, { "STARTTLS", "530" }, 0,
	  "the smarthost wants TLS before this command",
	  "set tls = required (STARTTLS) for this smarthost" },
	{ "auth-after-tls", "AUTH_NOT_OFFERED", { "does not offer AUTH", NULL }, 0,
	  "the smarthost offered no AUTH; many offer it only after STARTTLS",
	  "set tls = required; check `port` (587 for submission)" },
	{ "mechanism", NULL, { "5.7.4", NULL }, 0,
	  "the smarthost does not support this AUTH mechanism",
	  "set auth = auto, or one of the mechanisms its EHLO reply lists" },

	/* ---- Microsoft 365 (Exchange Online) ---- */
	{ "ms-tenant-smtp-auth-off", NULL, { "5.7.139", "disabled for the Tenant" }, 1,
	  "SMTP AUTH is turned off for the whole Microsoft 365 tenant",
	  "an Exchange administrator enables it for this mailbox with Set-CASMailbox -Identity MAILBOX "
	  "-SmtpClientAuthenticationDisabled $false (for every mailbox: Set-TransportConfig "
	  "-SmtpClientAuthenticationDisabled $false), then reload mailrelayd" },
	{ "ms-mailbox-smtp-auth-off", NULL, { "5.7.139", "disabled for the Mailbox" }, 1,
	  "SMTP AUTH is turned off for this mailbox",
	  "an Exchange administrator runs Set-CASMailbox -Identity MAILBOX "
	  "-SmtpClientAuthenticationDisabled $false, then reload mailrelayd" },
	{ "ms-basic-auth-off", NULL, { "5.7.139", "basic authentication is disabled" }, 1,
	  "Microsoft 365 no longer takes a password (Basic authentication) from this tenant",
	  "use OAuth2: an oauth2 section with preset = microsoft365 (mailrelay.conf(5))" },
	{ "ms-security-defaults", NULL, { "5.7.139", "security defaults" }, 1,
	  "the tenant's security defaults block sign-in with a password over SMTP",
	  "use OAuth2 (preset = microsoft365), or an administrator turns security defaults off" },
	{ "ms-conditional-access", NULL, { "5.7.139", "conditional access" }, 1,
	  "a Conditional Access policy of the tenant blocks this sign-in",
	  "an administrator excludes this account or location from the policy, or use OAuth2" },
	{ "ms-5.7.139", NULL, { "5.7.139", NULL }, 1,
	  "Microsoft 365 refused the sign-in by policy (SMTP AUTH disabled, or Basic authentication off)",
	  "the sentence after 5.7.139 says which; an Exchange administrator enables SMTP AUTH with "
	  "Set-CASMailbox -Identity MAILBOX -SmtpClientAuthenticationDisabled $false, and OAuth2 "
	  "(preset = microsoft365) replaces the password" },
	{ "ms-basic-auth-removed", NULL, { "5.7.30", NULL }, 1,
	  "the server no longer takes a password (Basic authentication)",
	  "use OAuth2: an oauth2 section with preset = microsoft365" },
	{ "ms-not-authenticated", NULL, { "5.7.57", NULL }, 0,
	  "the smarthost takes mail only after AUTH, and this session did not authenticate",
	  "set username and a secret (password_file) or an oauth2 section, over tls = required on port 587" },
	{ "ms-send-as", NULL, { "5.7.60", NULL }, 0,
	  "the mailbox may not send as this sender",
	  "grant it Send As on the sender's address, or send as the mailbox (from_address = MAILBOX, "
	  "rewrite_from = always)" },
	{ "ms-send-as-denied", NULL, { "5.2.252", NULL }, 0,
	  "SendAsDenied: the mailbox may not send as this sender",
	  "grant it Send As on the sender's address, or send as the mailbox (from_address = MAILBOX, "
	  "rewrite_from = always)" },
	{ "ms-throttled", NULL, { "5.2.25", NULL }, 0,
	  "the mailbox is over a sending limit of Exchange Online (too many messages or recipients)",
	  "wait for the limit to reset; set rate_limit (Exchange Online takes 30 messages a minute)" },
	{ "ms-logon-failed", NULL, { "MapiExceptionLogonFailed", NULL }, 0,
	  "the app's service principal has no permission on the mailbox",
	  "Add-MailboxPermission -Identity MAILBOX -User SERVICE_PRINCIPAL_ID -AccessRights FullAccess" },
	{ "ms-bad-credentials", NULL, { "5.7.3", "535" }, 0,
	  "the user name or the secret was not accepted (with OAuth2: a token expired or revoked, or "
	  "for the wrong audience)",
	  "check `username` and the secret; an OAuth2 token needs the scope "
	  "https://outlook.office365.com/.default (client credentials) or "
	  "https://outlook.office.com/SMTP.Send (delegated), and the app's service principal must be "
	  "registered in Exchange Online (New-ServicePrincipal) with a right on the mailbox" },

	/* ---- Google ---- */
	{ "google-app-password", NULL, { "5.7.9", NULL }, 1,
	  "Google wants an app password (or OAuth2) for this account, not its normal password",
	  "create an app password (Google account, Security, 2-Step Verification, App passwords), "
	  "or use OAuth2 (preset = gmail)" },
	{ "google-web-login", NULL, { "5.7.14", NULL }, 1,
	  "Google wants this account to sign in through a web browser first",
	  "sign in at https://accounts.google.com from a browser, then try again; OAuth2 "
	  "(preset = gmail) avoids this" },
	{ "bad-credentials", NULL, { "5.7.8", NULL }, 0,
	  "the user name or the password was not accepted",
	  "check `username` and the secret (for Gmail: an app password, or OAuth2)" },

	/* ---- what the smarthost does with the mail ---- */
	{ "relay-denied", NULL, { "5.7.1", "relay" }, 0,
	  "the smarthost does not relay mail for this sender or this machine",
	  "authenticate (username and a secret), send as an address it accepts (from_address, "
	  "rewrite_from), or have its administrator allow this host" },
	{ "too-big", NULL, { "5.3.4", NULL }, 0,
	  "the message is larger than the smarthost takes",
	  "send it smaller; its EHLO reply gives the limit (SIZE)" },
};

static int
holds(const char *text, const char *pattern)
{
	size_t n = strlen(pattern);

	for (const char *p = text; *p != '\0'; p++)
		if (strncasecmp(p, pattern, n) == 0)
			return 1;
	return 0;
}

const struct explanation *
explain_find(const char *kind, const char *text)
{
	if (text == NULL)
		return NULL;
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		const struct explanation *r = &rows[i];
		if (r->kind != NULL && (kind == NULL || strcmp(r->kind, kind) != 0))
			continue;
		if ((r->pattern[0] == NULL || holds(text, r->pattern[0])) &&
		    (r->pattern[1] == NULL || holds(text, r->pattern[1])))
			return r;
	}
	return NULL;
}

const struct explanation *
explain_failure(const char *kind, const char *text, const char **sentence, const char **hint)
{
	const struct explanation *e = explain_find(kind, text);
	int k = kind != NULL && kind[0] != '\0' ? trouble_by_name(kind) : -1;

	*sentence = *hint = NULL;
	if (e != NULL) {
		*sentence = e->sentence;
		*hint = e->hint;
	} else if (k >= 0) {
		*sentence = trouble_get((enum trouble_kind)k)->sentence;
		*hint = trouble_get((enum trouble_kind)k)->hint;
	}
	return e;
}

const struct explanation *
explain_rows(unsigned *n)
{
	*n = (unsigned)(sizeof rows / sizeof rows[0]);
	return rows;
}

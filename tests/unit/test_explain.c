/*
 * Unit tests for lib/explain.c, the table of what replies and reasons
 * mean: each row is matched by the exact text a provider or the session
 * gives (below, one sample or more per row), the more particular rows win
 * (Microsoft's 5.7.139 by the sentence after the code), and a row without
 * a sample fails the test.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "explain.h"

static const struct {
	const char *kind;               /* the failure kind, or NULL */
	const char *text;
	const char *row;                /* the row it must find; NULL: none */
} samples[] = {
	{ "CONNECT", "connect to smtp.example.net[192.0.2.1]:587: Connection refused", "refused" },
	{ "CONNECT", "connect to smtp.example.net[2001:db8::1]:587: Network is unreachable", "unreachable" },
	{ "CONNECT", "connect to smtp.example.net[192.0.2.1]:587: timed out after 30s", "connect-timeout" },
	{ "TLS_HANDSHAKE", "TLS handshake with smtp.example.net[192.0.2.1]:587 failed: wrong version number",
	  "plaintext-port" },
	{ "CONNECT", "TLS handshake with smtp.example.net[192.0.2.1]:25 failed: wrong version number",
	  "plaintext-port" },
	{ "TIMEOUT", "conversation with smtp.example.net[192.0.2.1]:465 timed out while waiting for the "
	  "greeting", "tls-port" },
	{ "PROTOCOL", "protocol error from smtp.example.net[192.0.2.1]:465 while waiting for the greeting: "
	  "not a reply", "tls-port-garbage" },
	{ "TLS_UNTRUSTED", "TLS is required (tls = required) but the certificate of x is not trusted: "
	  "hostname mismatch", "cert-name" },
	{ "TLS_UNTRUSTED", "... is not trusted: IP address mismatch", "cert-name" },
	{ "TLS_UNTRUSTED", "... is not trusted: certificate has expired", "cert-expired" },
	{ "TLS_UNTRUSTED", "... is not trusted: certificate is not yet valid", "cert-not-yet" },
	{ "TLS_UNTRUSTED", "... is not trusted: self-signed certificate", "cert-self-signed" },
	{ "TLS_UNTRUSTED", "... is not trusted: unable to get local issuer certificate", "cert-unknown-ca" },
	{ "MAIL_REFUSED", "530 5.7.0 Must issue a STARTTLS command first", "starttls-first" },
	{ "AUTH_NOT_OFFERED", "smtp.example.net[192.0.2.1]:587 does not offer AUTH, but smarthost main has "
	  "a username", "auth-after-tls" },
	{ "AUTH_REJECTED", "504 5.7.4 Unrecognized authentication type", "mechanism" },
	{ "AUTH_REJECTED", "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled "
	  "for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.",
	  "ms-tenant-smtp-auth-off" },
	{ "AUTH_REJECTED", "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled "
	  "for the Mailbox. Visit https://aka.ms/smtp_auth_disabled for more information.",
	  "ms-mailbox-smtp-auth-off" },
	{ "AUTH_REJECTED", "535 5.7.139 Authentication unsuccessful, basic authentication is disabled.",
	  "ms-basic-auth-off" },
	{ "AUTH_REJECTED", "535 5.7.139 Authentication unsuccessful, user is locked by your organization's "
	  "security defaults policy. Contact your administrator.", "ms-security-defaults" },
	{ "AUTH_REJECTED", "535 5.7.139 Authentication unsuccessful, the user credentials were incorrect "
	  "or a Conditional Access policy blocked the request", "ms-conditional-access" },
	{ "AUTH_REJECTED", "535 5.7.139 Authentication unsuccessful, the request did not meet the criteria "
	  "to be authenticated successfully. Contact your administrator.", "ms-5.7.139" },
	{ "AUTH_REJECTED", "550 5.7.30 Basic authentication is not supported for Client Submission.",
	  "ms-basic-auth-removed" },
	{ "MAIL_REFUSED", "530 5.7.57 Client not authenticated to send mail. [AM0PR01CA0000]",
	  "ms-not-authenticated" },
	{ "DOT_REPLY", "550 5.7.60 SMTP; Client does not have permissions to send as this sender",
	  "ms-send-as" },
	{ "DOT_REPLY", "554 5.2.252 SendAsDenied; app@contoso.com not allowed to send as boss@contoso.com",
	  "ms-send-as-denied" },
	{ "RCPT_REFUSED", "550 5.2.254 Recipient rate limit exceeded", "ms-throttled" },
	{ "AUTH_REJECTED", "430 4.2.0 STOREDRV.Submission.Exception:MapiExceptionLogonFailed",
	  "ms-logon-failed" },
	{ "AUTH_REJECTED", "535 5.7.3 Authentication unsuccessful", "ms-bad-credentials" },
	{ "AUTH_REJECTED", "534-5.7.9 Application-specific password required. Learn more at 534 5.7.9 "
	  "https://support.google.com/mail/?p=InvalidSecondFactor", "google-app-password" },
	{ "AUTH_REJECTED", "534-5.7.14 <https://accounts.google.com/signin/continue> Please log in via "
	  "your web browser and 534 5.7.14 then try again.", "google-web-login" },
	{ "AUTH_REJECTED", "535-5.7.8 Username and Password not accepted. Learn more at 535 5.7.8 "
	  "https://support.google.com/mail/?p=BadCredentials", "bad-credentials" },
	{ "RCPT_REFUSED", "550 5.7.1 Unable to relay for someone@example.org", "relay-denied" },
	{ "RCPT_REFUSED", "554 5.7.1 <someone@example.org>: Relay access denied", "relay-denied" },
	{ "TOO_BIG", "552 5.3.4 message size 40000000 exceeds the smarthost's limit of 35882577",
	  "too-big" },
	/* nothing to add: the failure kind's own row is said */
	{ "RCPT_REFUSED", "550 5.1.1 <nobody@example.org>: Recipient address rejected", NULL },
	{ "CONNECT", "connect to smtp.example.net[192.0.2.1]:587: No such file or directory", NULL },
	/* a row for one kind is not taken for another */
	{ "TLS_HANDSHAKE", "... certificate has expired", NULL },
	{ NULL, NULL, NULL },
};

static void
test_samples(void **state)
{
	(void)state;
	for (size_t i = 0; samples[i].text != NULL; i++) {
		const struct explanation *e = explain_find(samples[i].kind, samples[i].text);
		const char *got = e ? e->name : "(none)";
		const char *want = samples[i].row ? samples[i].row : "(none)";
		if (strcmp(got, want) != 0)
			fail_msg("\"%s\": row %s, want %s", samples[i].text, got, want);
	}
	assert_null(explain_find("CONNECT", NULL));
}

/* Every row has a sample above; sentences and hints are said, and names are unique. */
static void
test_every_row_has_a_sample(void **state)
{
	unsigned n, i, j;
	const struct explanation *rows = explain_rows(&n);
	int missing = 0;

	(void)state;
	assert_true(n > 0);
	for (i = 0; i < n; i++) {
		int found = 0;
		for (j = 0; samples[j].text != NULL; j++)
			found |= samples[j].row != NULL && strcmp(samples[j].row, rows[i].name) == 0;
		if (!found) {
			fprintf(stderr, "explanation %s: no sample matches it\n", rows[i].name);
			missing++;
		}
		assert_true(rows[i].sentence[0] != '\0' && rows[i].hint[0] != '\0');
		assert_non_null(rows[i].pattern[0]);
		for (j = i + 1; j < n; j++)
			assert_string_not_equal(rows[i].name, rows[j].name);
	}
	assert_int_equal(missing, 0);
}

/* OAuth2: only what a new token cannot fix needs a person. */
static void
test_person(void **state)
{
	(void)state;
	assert_true(explain_find(NULL, "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication "
	    "is disabled for the Tenant.")->person);
	assert_true(explain_find(NULL, "550 5.7.30 Basic authentication is not supported")->person);
	assert_false(explain_find(NULL, "535 5.7.3 Authentication unsuccessful")->person);
	assert_false(explain_find(NULL, "535 5.7.8 Username and Password not accepted")->person);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_samples),
		cmocka_unit_test(test_every_row_has_a_sample),
		cmocka_unit_test(test_person),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

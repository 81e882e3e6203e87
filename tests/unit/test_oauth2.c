/*
 * Unit tests for daemon/oauth2_proto.c: how a token endpoint's answer is
 * judged (success, the errors a person must fix, the passing ones, the
 * device code answers, garbage and deep nesting), the form of each grant
 * (percent-encoding, the client credential), base64url, the atomic
 * refresh token file with its permission check, and the needs-authorisation
 * state file (printable when read back).
 */
#include "config.h"

#include <sys/stat.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf/conf.h"
#include "daemon/oauth2_proto.h"
#include "daemon/oauth2_state.h"

static enum oauth2_outcome
judge(int status, const char *body, struct oauth2_token *t)
{
	return oauth2_parse_answer(status, body, strlen(body), t);
}

static void
test_answer_success(void **state)
{
	struct oauth2_token t;

	(void)state;
	/* a JWT whose payload is {"aud":"https://outlook.office365.com"} */
	assert_int_equal(judge(200, "{\"access_token\":\"eyJhbGciOiJub25lIn0."
	    "eyJhdWQiOiJodHRwczovL291dGxvb2sub2ZmaWNlMzY1LmNvbSJ9.c2ln\",\"expires_in\":3599,"
	    "\"refresh_token\":\"rt-2\",\"scope\":\"SMTP.Send\",\"token_type\":\"Bearer\"}", &t), OAUTH2_OK);
	assert_int_equal(t.expires_in, 3599);
	assert_string_equal(t.refresh_token, "rt-2");
	assert_string_equal(t.scope, "SMTP.Send");
	assert_string_equal(t.audience, "https://outlook.office365.com");
	oauth2_token_clear(&t);
	/* expires_in as a string (some endpoints), or missing: an hour */
	assert_int_equal(judge(200, "{\"access_token\":\"opaque\",\"expires_in\":\"120\"}", &t), OAUTH2_OK);
	assert_int_equal(t.expires_in, 120);
	assert_null(t.audience);
	oauth2_token_clear(&t);
	assert_int_equal(judge(200, "{\"access_token\":\"opaque\"}", &t), OAUTH2_OK);
	assert_int_equal(t.expires_in, 3600);
	oauth2_token_clear(&t);
}

static void
test_answer_needs_person(void **state)
{
	struct oauth2_token t;

	(void)state;
	assert_int_equal(judge(400, "{\"error\":\"invalid_grant\",\"error_description\":"
	    "\"AADSTS70008: expired\\ndue to inactivity\"}", &t), OAUTH2_PERSON);
	assert_string_equal(t.error, "invalid_grant");
	/* the description is one printable line */
	assert_string_equal(t.why, "HTTP 400, invalid_grant: AADSTS70008: expired due to inactivity");
	oauth2_token_clear(&t);
	assert_int_equal(judge(401, "{\"error\":\"invalid_client\"}", &t), OAUTH2_PERSON);
	oauth2_token_clear(&t);
	assert_int_equal(judge(400, "{\"error\":\"consent_required\"}", &t), OAUTH2_PERSON);
	oauth2_token_clear(&t);
	assert_int_equal(judge(403, "{\"error\":\"something_new\",\"error_description\":"
	    "\"AADSTS65001: The user or administrator has not consented\"}", &t), OAUTH2_PERSON);
	oauth2_token_clear(&t);
}

static void
test_answer_passing(void **state)
{
	struct oauth2_token t;

	(void)state;
	assert_int_equal(judge(503, "{\"error\":\"temporarily_unavailable\"}", &t), OAUTH2_TRANSIENT);
	oauth2_token_clear(&t);
	assert_int_equal(judge(500, "<html>oops</html>", &t), OAUTH2_TRANSIENT);
	assert_string_equal(t.why, "the token endpoint answered HTTP 500 without a JSON object");
	oauth2_token_clear(&t);
	assert_int_equal(judge(429, "{\"error\":\"too_many\"}", &t), OAUTH2_TRANSIENT);
	oauth2_token_clear(&t);
	assert_int_equal(judge(400, "{\"error\":\"authorization_pending\"}", &t), OAUTH2_PENDING);
	oauth2_token_clear(&t);
	assert_int_equal(judge(400, "{\"error\":\"slow_down\"}", &t), OAUTH2_SLOW_DOWN);
	oauth2_token_clear(&t);
	/* a 200 without a token is no success */
	assert_int_equal(judge(200, "{\"token\":\"x\"}", &t), OAUTH2_TRANSIENT);
	oauth2_token_clear(&t);
	assert_int_equal(judge(200, "[1,2]", &t), OAUTH2_TRANSIENT);
	oauth2_token_clear(&t);
}

/* Hostile nesting is refused by the depth bound, not followed. */
static void
test_answer_deep_nesting(void **state)
{
	struct oauth2_token t;
	char deep[4000];
	size_t n = 0;

	(void)state;
	n += (size_t)snprintf(deep, sizeof deep, "{\"access_token\":\"x\",\"a\":");
	for (int i = 0; i < 1000; i++)
		deep[n++] = '[';
	for (int i = 0; i < 1000; i++)
		deep[n++] = ']';
	deep[n++] = '}';
	deep[n] = '\0';
	assert_int_equal(oauth2_parse_answer(200, deep, n, &t), OAUTH2_TRANSIENT);
	oauth2_token_clear(&t);
}

static void
test_b64url(void **state)
{
	char *s;

	(void)state;
	s = oauth2_b64url((const unsigned char *)"\xfb\xff", 2);
	assert_string_equal(s, "-_8");
	free(s);
	s = oauth2_b64url((const unsigned char *)"abc", 3);
	assert_string_equal(s, "YWJj");
	free(s);
	s = oauth2_b64url((const unsigned char *)"", 0);
	assert_string_equal(s, "");
	free(s);
}

static void
test_forms(void **state)
{
	struct smarthost_conf sh;
	struct oauth2_conf o;
	struct oauth2_creds c;
	char err[200], *form;

	(void)state;
	memset(&sh, 0, sizeof sh);
	memset(&o, 0, sizeof o);
	memset(&c, 0, sizeof c);
	sh.oauth2 = &o;
	sh.username = "ann@contoso.com";
	o.client_id = "cid";
	o.token_url = "https://login.example/token";
	o.scope = "https://outlook.office.com/SMTP.Send offline_access";
	c.client_secret = "s&cr=t +";

	o.grant = OAUTH2_CLIENT_CREDENTIALS;
	form = oauth2_token_form(&sh, &c, NULL, NULL, err, sizeof err);
	assert_string_equal(form, "grant_type=client_credentials&client_id=cid&scope=https%3A%2F%2F"
	    "outlook.office.com%2FSMTP.Send%20offline_access&client_secret=s%26cr%3Dt%20%2B");
	oauth2_wipe_free(form);

	o.grant = OAUTH2_REFRESH_TOKEN;
	o.scope = NULL;
	c.client_secret = NULL;
	form = oauth2_token_form(&sh, &c, "rt/1", NULL, err, sizeof err);
	assert_string_equal(form, "grant_type=refresh_token&refresh_token=rt%2F1&client_id=cid");
	oauth2_wipe_free(form);

	o.grant = OAUTH2_PASSWORD;
	form = oauth2_token_form(&sh, &c, NULL, "p@ss", err, sizeof err);
	assert_string_equal(form, "grant_type=password&username=ann%40contoso.com&password=p%40ss&client_id=cid");
	oauth2_wipe_free(form);
}

static void
test_refresh_file(void **state)
{
	char dir[] = "/tmp/test_oauth2.XXXXXX", path[128], err[300], *s;
	struct stat st;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/refresh", dir);
	assert_int_equal(oauth2_write_refresh_file(path, "rt-one", err, sizeof err), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	s = oauth2_read_refresh_file(path, err, sizeof err);
	assert_string_equal(s, "rt-one");
	free(s);
	assert_int_equal(oauth2_write_refresh_file(path, "rt-two", err, sizeof err), 0);
	s = oauth2_read_refresh_file(path, err, sizeof err);
	assert_string_equal(s, "rt-two");
	free(s);
	chmod(path, 0644);
	assert_null(oauth2_read_refresh_file(path, err, sizeof err));
	assert_non_null(strstr(err, "may be read by others (mode 0644); run chmod 0600"));
	unlink(path);
	rmdir(dir);
}

static void
test_state_file(void **state)
{
	char dir[] = "/tmp/test_oauth2.XXXXXX", path[160], err[300], *s;
	struct stat st;
	time_t since;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	assert_null(oauth2_state_read(dir, "m365", &since));
	assert_int_equal(oauth2_state_write(dir, "m365", 1700000000,
	    "smarthost m365 needs authorisation: \"x\" /y", err, sizeof err), 0);
	snprintf(path, sizeof path, "%s/oauth2-m365.state", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	s = oauth2_state_read(dir, "m365", &since);
	assert_string_equal(s, "smarthost m365 needs authorisation: \"x\" /y");
	assert_int_equal(since, 1700000000);
	free(s);
	/* what goes to a terminal is one printable line, whatever the file says */
	assert_non_null(f = fopen(path, "w"));
	fputs("{\"version\": 1, \"needs_authorisation\": \"a\\nb\\u001b[31mc\"}", f);
	fclose(f);
	s = oauth2_state_read(dir, "m365", &since);
	assert_string_equal(s, "a b [31mc");
	free(s);
	/* garbage is no state */
	assert_non_null(f = fopen(path, "w"));
	fputs("{\"needs_authorisation\": [", f);
	fclose(f);
	assert_null(oauth2_state_read(dir, "m365", &since));
	unlink(path);
	rmdir(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_answer_success),
		cmocka_unit_test(test_answer_needs_person),
		cmocka_unit_test(test_answer_passing),
		cmocka_unit_test(test_answer_deep_nesting),
		cmocka_unit_test(test_b64url),
		cmocka_unit_test(test_forms),
		cmocka_unit_test(test_refresh_file),
		cmocka_unit_test(test_state_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Fuzz target for a delivery session against a hostile smarthost: the
 * input is what the smarthost says, fed to the real session code through
 * tests/unit/session_harness (a scripted server on 127.0.0.1, a fake
 * clock, a stub queue holding one message).
 *
 * Input: the first octet picks the number of recipients (1..4, its low
 * bits) and the smarthost's configuration (its next bits: no TLS;
 * STARTTLS required, the certificate not checked; AUTH with a password,
 * any mechanism; AUTH LOGIN over STARTTLS); the rest is split at NUL
 * octets into replies, the first the greeting, each sent as it is when
 * the client sends its next command line (after a 354, at the end of the
 * body).  An empty reply sends nothing (the deadline then passes on the
 * fake clock); a reply of one 0x01 octet closes the connection; one 0x02
 * octet makes the server start TLS after the reply before it (so a
 * STARTTLS really happens, and what follows goes over TLS); when the
 * replies run out the server closes.
 *
 * Checked, with abort() on a violation: the session always ends; every
 * recipient has exactly one outcome; the message is given back once; the
 * session is freed (the sanitizers check the rest, leaks included).
 *
 * The harness's smarthost has no oauth2 section: the token client
 * (daemon/oauth2.c, over libcurl) is left out and its entry points are
 * stubs that are never reached.
 *
 * fuzz-sources: tests/unit/session_harness.c daemon/queue_one.c daemon/delivery_session.c daemon/delivery_txn.c daemon/delivery_conn.c daemon/delivery_auth.c daemon/dispatch.c daemon/delivery_trouble.c lib/trouble.c lib/explain.c daemon/shstate.c daemon/sasl.c daemon/secret.c daemon/tls.c daemon/runconf.c daemon/secretfile.c daemon/oauth2_proto.c daemon/oauth2_state.c daemon/metrics.c spool/spool.c conf/conf.c lib/log.c lib/xmalloc.c lib/util.c lib/smtp_reply.c lib/smtp_cmd.c lib/dotstuff.c lib/addr.c lib/rewrite.c lib/header.c lib/linefix.c
 * fuzz-libs: -levent_openssl -levent -lssl -lcrypto -lconfuse -ljson-c -lm
 * fuzz-flags: -max_len=4096
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/daemon.h"
#include "daemon/delivery.h"
#include "daemon/runconf.h"
#include "daemon/oauth2.h"
#include "tests/unit/session_harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* daemon/oauth2.c, never reached (no oauth2 section) */
struct oauth2_wait *
oauth2_get(const struct smarthost_conf *sh, const struct oauth2_creds *creds, const char *password,
    unsigned long not_gen, oauth2_cb cb, void *arg)
{
	(void)sh, (void)creds, (void)password, (void)not_gen, (void)cb, (void)arg;
	abort();
}

void
oauth2_cancel(struct oauth2_wait *w)
{
	(void)w;
}

void
oauth2_rejected(const char *name, unsigned long gen)
{
	(void)name, (void)gen;
}

void
oauth2_needs_person(const char *name, const char *why)
{
	(void)name, (void)why;
}

const char *
oauth2_explain_reply(const struct smtp_reply *r)
{
	(void)r;
	return "";
}

int
oauth2_reply_needs_person(const struct smtp_reply *r)
{
	(void)r;
	return 0;
}

const char *
oauth2_status(const char *name)
{
	(void)name;
	return NULL;
}

static char buf[4097];

/* The configurations an input may pick, loaded once (a load reads the CA store). */
static const char *const configs[] = {
	"    tls = disabled\n    timeout = 60s",
	"    tls = required\n    tls_verify = no\n    timeout = 60s",
	"    tls = disabled\n    timeout = 60s\n    username = u\n    password = p\n"
	"    auth_allow_plaintext = yes",
	"    tls = required\n    tls_verify = no\n    timeout = 60s\n    username = u\n"
	"    password = p\n    auth = login",
};
static struct runconf *loaded[sizeof configs / sizeof configs[0]];

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	const char *script[HX_STEPS_MAX + 1];
	size_t n = 0, i, start, nrcpt;
	int rounds;

	if (!ready) {
		if (hx_setup("    timeout = 60s") == -1)
			abort();
		for (i = 0; i < sizeof configs / sizeof configs[0]; i++) {
			if (hx_config(NULL, 0, configs[i]) == -1)
				abort();
			loaded[i] = runconf_ref(D->rc);
		}
		ready = 1;
	}
	if (size < 1 || size > sizeof buf - 1)
		return 0;
	nrcpt = (size_t)(data[0] % 4) + 1;
	/* the configuration, as a reload would switch it */
	runconf_unref(D->rc);
	D->rc = runconf_ref(loaded[(data[0] >> 2) % (sizeof configs / sizeof configs[0])]);
	D->conf = D->rc->conf;
	memcpy(buf, data + 1, size - 1);
	buf[size - 1] = '\0';
	for (start = 0, i = 0; i <= size - 1 && n < HX_STEPS_MAX; i++) {
		if (i == size - 1 || buf[i] == '\0') {
			buf[i] = '\0';
			if (buf[start] == '\0')
				script[n++] = HX_STALL;
			else if (buf[start] == '\001' && buf[start + 1] == '\0')
				script[n++] = HX_CLOSE;
			else if (buf[start] == '\002' && buf[start + 1] == '\0')
				script[n++] = HX_TLS;
			else
				script[n++] = buf + start;
			start = i + 1;
		}
	}
	script[n] = NULL;
	HX.quiet_ms = 2;
	hx_start(nrcpt, script);
	if (hx_run() == -1) {
		hx_report("the session hung on something other than its deadline");
		abort();
	}
	for (rounds = 0; delivery_sessions() > 0; rounds++) {
		if (rounds > HX_STEPS_MAX + 4 || hx_fire() == -1) {
			hx_report("the session outlived its deadlines");
			abort();
		}
	}
	if (!hx_all_decided()) {
		hx_report("not every recipient decided once, or the message not given back once");
		abort();
	}
	hx_end();
	return 0;
}

/*
 * mtest: `mailrelay test`.  See mtest.h.
 *
 *   mailrelay test --to ADDR [--from ADDR] [--smarthost NAME] [--json]
 *   mailrelay test --probe [--smarthost NAME] [--json]
 *
 * Each step is one line: the time since the start, the step, and what
 * happened (">>>" a command sent, "<<<" the smarthost's reply).  The last
 * line says OK or FAILED; a failure is followed by what it means and what
 * to do, from the table of replies (lib/explain.h) when one of its rows
 * matches, else from the failure kind's row (lib/trouble.h).  With --json
 * the same steps and result, as one JSON array of one object per
 * smarthost tried, written with json-c.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <time.h>

#include <json-c/json.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "conf/conf.h"
#include "explain.h"
#include "mtest.h"
#include "probe.h"
#include "trouble.h"

struct run {
	const struct smarthost_conf *sh;
	int json;
	json_object *steps;             /* --json: the steps so far */
	char fifo[16][8];               /* the verbs sent whose replies are still to come */
	unsigned fhead, ftail;
	char step[16];                  /* the step of the last line */
	char refused[16];               /* the step of the first refusal (4xx, 5xx) after the greeting */
	char decided[16];               /* the step when the recipient's outcome was recorded */
};

static void
put(struct run *r, double t, const char *step, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* One step: a line of text, or an element of the JSON array. */
static void
put(struct run *r, double t, const char *step, const char *fmt, ...)
{
	char text[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	snprintf(r->step, sizeof r->step, "%s", step);
	if (r->json) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "time", json_object_new_double(t));
		json_object_object_add(o, "step", json_object_new_string(step));
		json_object_object_add(o, "text", json_object_new_string(text));
		json_object_array_add(r->steps, o);
		return;
	}
	printf("%7.3fs  %-9s %s\n", t, step, text);
	fflush(stdout);
}

/* The verb of a command line, for the step its reply belongs to. */
static const char *
step_of_verb(const char *line)
{
	static const struct { const char *verb, *step; } v[] = {
		{ "EHLO", "ehlo" }, { "HELO", "ehlo" }, { "STARTTLS", "starttls" }, { "AUTH", "auth" },
		{ "MAIL", "mail" }, { "RCPT", "rcpt" }, { "DATA", "data" }, { "RSET", "rset" },
		{ "QUIT", "quit" },
	};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
		if (strncasecmp(line, v[i].verb, strlen(v[i].verb)) == 0)
			return v[i].step;
	return "auth";	/* a continuation of AUTH (masked) */
}

/* The step a failure in state st belongs to; NULL: the step of the last line. */
static const char *
step_of_state(enum dstate st)
{
	switch (st) {
	case DS_RESOLVE:
		return "dns";
	case DS_CONNECT:
		return "connect";
	case DS_SOCKS:
		return "proxy";
	case DS_GREETING:
		return "greeting";
	case DS_EHLO:
	case DS_HELO:
		return "ehlo";
	case DS_STARTTLS:
		return "starttls";
	case DS_HANDSHAKE:
		return "tls";
	case DS_SECRET:
	case DS_AUTH:
		return "auth";
	default:
		return NULL;
	}
}

static const char *
step_of_reply(struct run *r, const struct dsession *s)
{
	switch (s->state) {
	case DS_DOT:
		return "sent";
	case DS_RSET:
		return "rset";
	case DS_QUIT:
		return "quit";
	case DS_ENVELOPE:
		/* pipelined: the replies come in the order the commands went */
		if (r->fhead != r->ftail)
			return r->fifo[r->fhead++ % 16];
		return "mail";
	default:
		return step_of_state(s->state) ? step_of_state(s->state) : "reply";
	}
}

/* A certificate's names: its subject alternative names, else its subject's CN. */
static void
cert_names(X509 *x, char *out, size_t len)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	int i, n = gens ? sk_GENERAL_NAME_num(gens) : 0;

	out[0] = '\0';
	for (i = 0; i < n; i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		if (g->type == GEN_DNS) {
			const unsigned char *d = ASN1_STRING_get0_data(g->d.dNSName);
			snprintf(out + strlen(out), len - strlen(out), "%s%.*s", out[0] ? ", " : "",
			    ASN1_STRING_length(g->d.dNSName), (const char *)d);
		} else if (g->type == GEN_IPADD) {
			const unsigned char *a = ASN1_STRING_get0_data(g->d.iPAddress);
			if (ASN1_STRING_length(g->d.iPAddress) == 4)
				snprintf(out + strlen(out), len - strlen(out), "%s%u.%u.%u.%u",
				    out[0] ? ", " : "", a[0], a[1], a[2], a[3]);
		}
	}
	GENERAL_NAMES_free(gens);
	if (out[0] == '\0')
		X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, out, (int)len);
}

/* What the handshake gave: protocol, cipher, the certificate, the verdict. */
static void
put_tls(struct run *r, double t, struct dsession *s)
{
	X509 *x = s->ssl ? SSL_get1_peer_certificate(s->ssl) : NULL;
	char subject[300] = "", issuer[300] = "", names[600], until[64] = "?";

	put(r, t, "tls", "%s, cipher %s", s->tlsv.version, s->tlsv.cipher);
	if (x != NULL) {
		BIO *b = BIO_new(BIO_s_mem());
		char *p;
		long n;
		X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof subject);
		X509_NAME_oneline(X509_get_issuer_name(x), issuer, sizeof issuer);
		cert_names(x, names, sizeof names);
		if (b != NULL && ASN1_TIME_print(b, X509_get0_notAfter(x)) == 1 &&
		    (n = BIO_get_mem_data(b, &p)) > 0)
			snprintf(until, sizeof until, "%.*s", (int)n, p);
		BIO_free(b);
		put(r, t, "tls", "certificate %s, for %s", subject, names[0] ? names : "(no name)");
		put(r, t, "tls", "issued by %s, valid until %s", issuer, until);
		X509_free(x);
	}
	if (s->tlsv.trusted)
		put(r, t, "tls", "verification: %s", s->tlsv.verify);
	else
		put(r, t, "tls", "verification failed: %s", s->tlsv.reason);
}

/* The EHLO reply's extensions, as understood. */
static void
put_caps(struct run *r, double t, const struct smtp_caps *c)
{
	char out[600] = "";

	if (c->starttls)
		strcat(out, " STARTTLS");
	if (c->pipelining)
		strcat(out, " PIPELINING");
	if (c->eightbitmime)
		strcat(out, " 8BITMIME");
	if (c->smtputf8)
		strcat(out, " SMTPUTF8");
	if (c->dsn)
		strcat(out, " DSN");
	if (c->size_present)
		snprintf(out + strlen(out), sizeof out - strlen(out), " SIZE %llu", c->size);
	if (c->nauth > 0) {
		strcat(out, " AUTH");
		for (size_t i = 0; i < c->nauth; i++)
			snprintf(out + strlen(out), sizeof out - strlen(out), " %s", c->auth[i]);
	}
	put(r, t, "ehlo", "offers:%s", out[0] ? out : " nothing beyond plain SMTP");
}

static void
on_step(void *arg, struct dsession *s, enum trace_ev ev, const char *text, double t)
{
	struct run *r = arg;

	switch (ev) {
	case TR_RESOLVED:
		put(r, t, "dns", "%s: %s", s->sh->proxy_host ? s->sh->proxy_host : s->sh->host, text);
		break;
	case TR_CONNECTING:
		put(r, t, "connect", "%s ...", text);
		break;
	case TR_CONNECT_FAILED:
		put(r, t, "connect", "%s", text);
		break;
	case TR_CONNECTED:
		put(r, t, "connect", "connected to %s", text);
		break;
	case TR_TLS:
		put_tls(r, t, s);
		break;
	case TR_SENT: {
		const char *st = step_of_verb(text);
		if (strcmp(st, "auth") == 0 && strncasecmp(text, "AUTH ", 5) == 0)
			put(r, t, "auth", "using %s", sasl_mech_name(s->auth_mech));
		if (s->state == DS_ENVELOPE || strncasecmp(text, "MAIL", 4) == 0 ||
		    strncasecmp(text, "RCPT", 4) == 0 || strncasecmp(text, "DATA", 4) == 0)
			snprintf(r->fifo[r->ftail++ % 16], sizeof r->fifo[0], "%s", st);
		put(r, t, st, ">>> %s", text);
		break;
	}
	case TR_REPLY: {
		const char *st = step_of_reply(r, s);
		put(r, t, st, "<<< %s", text);
		if (s->reply.code >= 400 && r->refused[0] == '\0')
			snprintf(r->refused, sizeof r->refused, "%s", st);
		if ((s->state == DS_EHLO || s->state == DS_HELO) && s->reply.code / 100 == 2) {
			struct smtp_caps caps;
			smtp_caps_parse(&s->reply, &caps);	/* the session parses them after this step */
			put_caps(r, t, &caps);
		}
		break;
	}
	case TR_FAILED: {
		char step[sizeof r->step];
		snprintf(step, sizeof step, "%s", step_of_state(s->state) ? step_of_state(s->state) : r->step);
		put(r, t, step, "failed: %s", text);
		break;
	}
	case TR_OUTCOME:
		snprintf(r->decided, sizeof r->decided, "%s", r->step);
		break;
	case TR_NOTE:
		put(r, t, strstr(text, "ameserver") ? "dns" : "note", "%s", text);
		break;
	}
}

/*
 * The exit status of a failure: a name that does not resolve is
 * EX_NOHOST, credentials EX_NOPERM, a broken protocol EX_PROTOCOL, a
 * temporary refusal EX_TEMPFAIL; any other failure to get the message
 * through EX_UNAVAILABLE.
 */
static int
exit_of(const struct probe_result *res)
{
	const char *k = res->kind;

	if (strcmp(k, "DNS") == 0)
		return EX_NOHOST;
	if (strncmp(k, "AUTH_", 5) == 0)
		return EX_NOPERM;
	if (strcmp(k, "PROTOCOL") == 0)
		return EX_PROTOCOL;
	if (res->have_outcome && res->outcome == OUTCOME_DEFERRED && res->text[0] == '4')
		return EX_TEMPFAIL;
	return EX_UNAVAILABLE;
}

/* The JSON object of one smarthost's run: its name, its steps (taken over), ok. */
static json_object *
result_json(struct run *r, const char *shname, int ok)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "smarthost", json_object_new_string(shname));
	json_object_object_add(o, "steps", r->steps);
	json_object_object_add(o, "ok", json_object_new_boolean(ok));
	return o;
}

/* One smarthost: the run, its steps and its verdict; the exit status. */
static int
test_one(const char *path, size_t shidx, const char *from, const char *to, int send, int json,
    json_object *all)
{
	char err[1024];
	struct config *conf = conf_load(path, err, sizeof err);
	struct probe_result res;
	struct run r;
	int rc;

	if (conf == NULL) {
		fprintf(stderr, "mailrelay: %s\n", err);
		return EX_CONFIG;
	}
	memset(&r, 0, sizeof r);
	r.sh = &conf->smarthosts[shidx];
	r.json = json;
	r.steps = json ? json_object_new_array() : NULL;
	char shname[200];
	snprintf(shname, sizeof shname, "%s", r.sh->name);
	put(&r, 0, "config", "%s: smarthost %s, %s port %u, tls = %s%s%s",
	    path ? path : conf_default_path(), r.sh->name, r.sh->host, r.sh->port, conf_tls_mode_name(r.sh->tls), r.sh->username ? ", username " : "",
	    r.sh->username ? r.sh->username : "");
	if (send)
		put(&r, 0, "message", "from <%s> to <%s>", from, to);
	unsigned limit = r.sh->connect_timeout + 8 * (r.sh->timeout ? r.sh->timeout : 60) +
	    (r.sh->data_timeout ? r.sh->data_timeout : 600);
	/* conf is the run's from here */
	if (probe_run(conf, shidx, from, to, send, limit, on_step, &r, &res, err, sizeof err) == -1) {
		put(&r, 0, "config", "cannot run: %s", err);
		rc = EX_CONFIG;
		if (json) {
			json_object *o = result_json(&r, shname, 0);
			json_object_object_add(o, "error", json_object_new_string(err));
			json_object_object_add(o, "exit", json_object_new_int(rc));
			json_object_array_add(all, o);
		}
		return rc;
	}

	if (res.interrupted) {
		if (!json)
			printf("INTERRUPTED at %s (%.3fs): the test was stopped\n", r.step, res.elapsed);
		else
			json_object_put(r.steps);
		return 130;
	}
	int ok = send ? res.sent : res.ready && res.kind[0] == '\0';
	/* the step that decided: the refusal the recipient's outcome came from, else the last */
	if (!ok && res.have_outcome)
		snprintf(r.step, sizeof r.step, "%s", r.refused[0] ? r.refused : r.decided);
	const char *sentence = NULL, *hint = NULL;
	const struct explanation *ex = ok ? NULL : explain_failure(res.kind, res.text, &sentence, &hint);
	rc = ok ? 0 : exit_of(&res);
	if (json) {
		json_object *o = result_json(&r, shname, ok);
		json_object_object_add(o, "step", ok ? NULL : json_object_new_string(r.step));
		json_object_object_add(o, "kind", res.kind[0] && !ok ? json_object_new_string(res.kind) : NULL);
		json_object_object_add(o, "text", json_object_new_string(res.text));
		json_object_object_add(o, "meaning", sentence ? json_object_new_string(sentence) : NULL);
		json_object_object_add(o, "hint", hint ? json_object_new_string(hint) : NULL);
		json_object_object_add(o, "explanation", ex ? json_object_new_string(ex->name) : NULL);
		json_object_object_add(o, "seconds", json_object_new_double(res.elapsed));
		json_object_object_add(o, "exit", json_object_new_int(rc));
		json_object_array_add(all, o);
		return rc;
	}
	if (ok && send)
		printf("OK: %s accepted the message for <%s> in %.3fs: %s\n", shname, to, res.elapsed,
		    res.text);
	else if (ok)
		printf("OK: %s is ready for mail (greeting, EHLO, TLS and AUTH passed) in %.3fs; "
		    "nothing was sent\n", shname, res.elapsed);
	else {
		printf("FAILED at %s: %s\n", r.step, res.text[0] ? res.text : "the session ended early");
		if (sentence != NULL)
			printf("  what it means: %s\n", sentence);
		if (hint != NULL)
			printf("  what to do:    %s\n", hint);
	}
	return rc;
}

int
cmd_test(const char *path, int argc, char **argv)
{
	const char *to = NULL, *from = NULL, *name = NULL;
	char err[1024], fromb[600];
	int json = 0, probe = 0, i, rc = 0;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--to") == 0 && i + 1 < argc)
			to = argv[++i];
		else if (strcmp(argv[i], "--from") == 0 && i + 1 < argc)
			from = argv[++i];
		else if (strcmp(argv[i], "--smarthost") == 0 && i + 1 < argc)
			name = argv[++i];
		else if (strcmp(argv[i], "--json") == 0)
			json = 1;
		else if (strcmp(argv[i], "--probe") == 0)
			probe = 1;
		else {
			fprintf(stderr, "mailrelay: test: \"%.40s\": expected --to ADDR, --from ADDR, "
			    "--smarthost NAME, --probe or --json (mailrelay test --help)\n", argv[i]);
			return EX_USAGE;
		}
	}
	if (!probe && to == NULL) {
		fprintf(stderr, "mailrelay: test: --to ADDR is needed (or --probe, which sends nothing) "
		    "(mailrelay test --help)\n");
		return EX_USAGE;
	}
	/* which smarthosts, and the sender: from the configuration as the daemon reads it */
	struct config *conf = conf_load(path, err, sizeof err);
	if (conf == NULL) {
		fprintf(stderr, "mailrelay: %s\n", err);
		return EX_CONFIG;
	}
	if (conf->nsmarthosts == 0) {
		fprintf(stderr, "mailrelay: test: %s has no smarthost to test\n", (path ? path : conf_default_path()));
		conf_free(conf);
		return EX_CONFIG;
	}
	size_t first = 0, last = conf->nsmarthosts;
	if (name != NULL) {
		for (first = 0; first < conf->nsmarthosts; first++)
			if (strcmp(conf->smarthosts[first].name, name) == 0)
				break;
		if (first == conf->nsmarthosts) {
			fprintf(stderr, "mailrelay: test: no smarthost \"%.60s\" in %s\n", name, (path ? path : conf_default_path()));
			conf_free(conf);
			return EX_USAGE;
		}
		last = first + 1;
	} else if (!probe) {
		/* the one the daemon would use for this sender first */
		const struct route_conf *rt = from ? conf_route_find(conf, from) : NULL;
		first = rt ? rt->smarthost_index : 0;
		last = first + 1;
	}
	if (from == NULL) {
		const struct smarthost_conf *sh = &conf->smarthosts[first];
		if (conf->from_address != NULL)
			snprintf(fromb, sizeof fromb, "%s", conf->from_address);
		else if (sh->username != NULL && strchr(sh->username, '@') != NULL)
			snprintf(fromb, sizeof fromb, "%s", sh->username);
		else
			snprintf(fromb, sizeof fromb, "root@%s", conf->hostname);
		from = fromb;
	}
	conf_free(conf);

	json_object *all = json ? json_object_new_array() : NULL;
	for (size_t k = first; k < last; k++) {
		int one = test_one(path, k, from, to, !probe, json, all);
		if (one == 130) {
			rc = one;	/* interrupted: no further smarthost */
			break;
		}
		if (one != 0 && rc == 0)
			rc = one;
		if (!json && k + 1 < last)
			printf("\n");
	}
	if (json) {
		printf("%s\n", json_object_to_json_string_ext(all, JSON_C_TO_STRING_PRETTY |
		    JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(all);
	}
	return rc;
}

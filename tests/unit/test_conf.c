/*
 * Unit tests for conf/: value parsers, defaults, a full round trip, every
 * kind of error message (exact text, as the user sees it), and the sample
 * config shipped in conf/mailrelay.conf.  Config files are written to
 * mkstemp() files; the sample is found through $srcdir (set by automake).
 */
#include "config.h"

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <limits.h>
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
#include "conf/confcheck.h"

/* ---- helpers ------------------------------------------------------------- */

static char tmp_path[64];
static char err[1024];

static void
write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	assert_int_equal(fputs(text, fp) >= 0, 1);
	assert_int_equal(fclose(fp), 0);
}

/* Write text to a fresh temporary file and load it. */
static struct config *
load_text(const char *text)
{
	int fd;

	strcpy(tmp_path, "/tmp/test_conf.XXXXXX");
	fd = mkstemp(tmp_path);
	assert_true(fd >= 0);
	close(fd);
	write_file(tmp_path, text);
	memset(err, 'x', sizeof err);
	return conf_load(tmp_path, err, sizeof err);
}

static void
cleanup(struct config *c)
{
	conf_free(c);
	if (tmp_path[0] != '\0')
		unlink(tmp_path);
	tmp_path[0] = '\0';
}

/* text must fail with "TMPFILE" + suffix, exactly. */
static void
expect_error(const char *text, const char *suffix)
{
	char want[1200];
	struct config *c = load_text(text);

	if (c != NULL)
		fail_msg("loaded although it should fail with \"%s\":\n%s", suffix, text);
	snprintf(want, sizeof want, "%s%s", tmp_path, suffix);
	assert_string_equal(err, want);
	assert_null(strchr(err, '\n'));
	cleanup(NULL);
}

static struct config *
must_load(const char *text)
{
	struct config *c = load_text(text);

	if (c == NULL)
		fail_msg("load failed: %s\n%s", err, text);
	return c;
}

static struct sockaddr_storage ss;

static const struct sockaddr *
v4(const char *a)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

	memset(&ss, 0, sizeof ss);
	sin->sin_family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, a, &sin->sin_addr), 1);
	return (const struct sockaddr *)&ss;
}

static const struct sockaddr *
v6(const char *a)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof ss);
	sin6->sin6_family = AF_INET6;
	assert_int_equal(inet_pton(AF_INET6, a, &sin6->sin6_addr), 1);
	return (const struct sockaddr *)&ss;
}

/* ---- durations and sizes ------------------------------------------------- */

static void
test_duration_valid(void **state)
{
	static const struct { const char *s; unsigned v; } ok[] = {
		{ "90", 90 }, { "90s", 90 }, { "15m", 900 }, { "2h", 7200 },
		{ "5d", 432000 }, { "1w", 604800 }, { "1h30m", 5400 },
		{ "0", 0 }, { "5D", 432000 }, { "1d12h", 129600 },
		{ "4294967295", UINT_MAX }, { "4294967295s", UINT_MAX },
	};
	(void)state;

	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		unsigned v = 12345;

		if (conf_parse_duration(ok[i].s, &v) != 0)
			fail_msg("rejected \"%s\"", ok[i].s);
		assert_int_equal(v, ok[i].v);
	}
}

static void
test_duration_invalid(void **state)
{
	static const char *const bad[] = {
		"", "-5", "+5", "5x", "m", "1h30", " 5", "5 ", "1.5h", "5mm",
		"4294967296", "99999999999999999999999", "49711d", "7102w",
		"4294967295s1s", "0x10", "5 m",
	};
	unsigned v = 777;
	(void)state;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (conf_parse_duration(bad[i], &v) != -1)
			fail_msg("accepted \"%s\"", bad[i]);
	assert_int_equal(conf_parse_duration(NULL, &v), -1);
	assert_int_equal(v, 777);	/* untouched on failure */
}

static void
test_size_valid(void **state)
{
	static const struct { const char *s; unsigned long long v; } ok[] = {
		{ "1000", 1000 }, { "512K", 524288 }, { "512k", 524288 },
		{ "35M", 36700160 }, { "35m", 36700160 }, { "1G", 1073741824 },
		{ "0", 0 }, { "18446744073709551615", ULLONG_MAX },
		{ "17179869183G", 17179869183ULL << 30 },
	};
	(void)state;

	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		unsigned long long v = 1;

		if (conf_parse_size(ok[i].s, &v) != 0)
			fail_msg("rejected \"%s\"", ok[i].s);
		assert_true(v == ok[i].v);
	}
}

static void
test_size_invalid(void **state)
{
	static const char *const bad[] = {
		"", "lots", "-1", "+1", "35MB", "35 M", " 35M", "1.5M", "K",
		"18446744073709551616", "17179869184G", "99999999999999999999K",
		"35MM", "1T",
	};
	unsigned long long v = 42;
	(void)state;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (conf_parse_size(bad[i], &v) != -1)
			fail_msg("accepted \"%s\"", bad[i]);
	assert_int_equal(conf_parse_size(NULL, &v), -1);
	assert_true(v == 42);
}

/* ---- listen, cidr, allow ------------------------------------------------- */

static void
free_listen(struct listen_conf *l)
{
	free(l->path);
	free(l->host);
	free(l->port);
}

static void
test_listen_valid(void **state)
{
	struct listen_conf l;
	(void)state;

	assert_int_equal(conf_parse_listen("unix:/run/mailrelay/submit.sock", &l), 0);
	assert_int_equal(l.kind, LISTEN_UNIX);
	assert_string_equal(l.path, "/run/mailrelay/submit.sock");
	assert_null(l.host);
	free_listen(&l);

	assert_int_equal(conf_parse_listen("127.0.0.1:25", &l), 0);
	assert_int_equal(l.kind, LISTEN_TCP);
	assert_string_equal(l.host, "127.0.0.1");
	assert_string_equal(l.port, "25");
	assert_null(l.path);
	free_listen(&l);

	assert_int_equal(conf_parse_listen("[::1]:2525", &l), 0);
	assert_int_equal(l.kind, LISTEN_TCP);
	assert_string_equal(l.host, "::1");
	assert_string_equal(l.port, "2525");
	free_listen(&l);

	assert_int_equal(conf_parse_listen("localhost:25", &l), 0);
	assert_string_equal(l.host, "localhost");
	assert_string_equal(l.port, "25");
	free_listen(&l);

	assert_int_equal(conf_parse_listen("[::]:65535", &l), 0);
	assert_string_equal(l.host, "::");
	assert_string_equal(l.port, "65535");
	free_listen(&l);
}

static void
test_listen_invalid(void **state)
{
	char longpath[200];
	static const char *const bad[] = {
		"", "unix:", "unix:relative.sock", "127.0.0.1", "127.0.0.1:",
		"127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:2x", "127.0.0.1:-25",
		"::1:25", "[::1]25", "[::1]", "[127.0.0.1]:25", "[nonsense]:25",
		":25", "host name:25", "999.1.1.1:25", "localhost:+25",
	};
	struct listen_conf l;
	(void)state;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (conf_parse_listen(bad[i], &l) != -1)
			fail_msg("accepted \"%s\"", bad[i]);
	/* sun_path holds 108 bytes with the NUL */
	memset(longpath, 'a', sizeof longpath);
	memcpy(longpath, "unix:/", 6);
	longpath[5 + 108] = '\0';
	assert_int_equal(conf_parse_listen(longpath, &l), -1);
	longpath[5 + 107] = '\0';
	assert_int_equal(conf_parse_listen(longpath, &l), 0);
	free_listen(&l);
}

static void
test_cidr(void **state)
{
	struct cidr c;
	unsigned char want[16];
	(void)state;

	assert_int_equal(conf_parse_cidr("127.0.0.0/8", &c), 0);
	assert_int_equal(c.family, AF_INET);
	assert_int_equal(c.prefix, 8);
	inet_pton(AF_INET, "127.0.0.0", want);
	assert_memory_equal(c.addr, want, 4);

	assert_int_equal(conf_parse_cidr("10.1.2.3", &c), 0);
	assert_int_equal(c.prefix, 32);

	/* host bits are cleared */
	assert_int_equal(conf_parse_cidr("10.1.2.3/8", &c), 0);
	inet_pton(AF_INET, "10.0.0.0", want);
	assert_memory_equal(c.addr, want, 4);
	assert_int_equal(conf_parse_cidr("10.255.2.3/9", &c), 0);
	inet_pton(AF_INET, "10.128.0.0", want);
	assert_memory_equal(c.addr, want, 4);

	assert_int_equal(conf_parse_cidr("::1", &c), 0);
	assert_int_equal(c.family, AF_INET6);
	assert_int_equal(c.prefix, 128);
	inet_pton(AF_INET6, "::1", want);
	assert_memory_equal(c.addr, want, 16);

	assert_int_equal(conf_parse_cidr("fe80::/10", &c), 0);
	assert_int_equal(c.prefix, 10);
	assert_int_equal(conf_parse_cidr("0.0.0.0/0", &c), 0);
	assert_int_equal(c.prefix, 0);
	assert_int_equal(conf_parse_cidr("::/0", &c), 0);
	assert_int_equal(conf_parse_cidr("1.2.3.4/32", &c), 0);
	assert_int_equal(conf_parse_cidr("::1/128", &c), 0);

	assert_int_equal(conf_parse_cidr("1.2.3.4/33", &c), -1);
	assert_int_equal(conf_parse_cidr("::1/129", &c), -1);
	assert_int_equal(conf_parse_cidr("1.2.3.4/", &c), -1);
	assert_int_equal(conf_parse_cidr("1.2.3.4/-1", &c), -1);
	assert_int_equal(conf_parse_cidr("1.2.3.4/8x", &c), -1);
	assert_int_equal(conf_parse_cidr("/8", &c), -1);
	assert_int_equal(conf_parse_cidr("", &c), -1);
	assert_int_equal(conf_parse_cidr("localhost", &c), -1);
	assert_int_equal(conf_parse_cidr("1.2.3/24", &c), -1);
	assert_int_equal(conf_parse_cidr("1.2.3.4/00000000008", &c), -1);
	assert_int_equal(conf_parse_cidr(NULL, &c), -1);
}

static void
test_allow_match(void **state)
{
	struct cidr nets[4];
	struct config conf;
	struct sockaddr_un sun;
	(void)state;

	memset(&conf, 0, sizeof conf);
	assert_int_equal(conf_parse_cidr("127.0.0.0/8", &nets[0]), 0);
	assert_int_equal(conf_parse_cidr("::1/128", &nets[1]), 0);
	assert_int_equal(conf_parse_cidr("10.0.0.0/9", &nets[2]), 0);
	assert_int_equal(conf_parse_cidr("2001:db8::/32", &nets[3]), 0);
	conf.allow = nets;
	conf.nallow = 4;

	assert_int_equal(conf_allow_match(&conf, v4("127.0.0.1")), 1);
	assert_int_equal(conf_allow_match(&conf, v4("127.255.255.254")), 1);
	assert_int_equal(conf_allow_match(&conf, v4("128.0.0.1")), 0);
	assert_int_equal(conf_allow_match(&conf, v4("10.127.255.255")), 1);
	assert_int_equal(conf_allow_match(&conf, v4("10.128.0.0")), 0);
	assert_int_equal(conf_allow_match(&conf, v4("192.0.2.1")), 0);

	assert_int_equal(conf_allow_match(&conf, v6("::1")), 1);
	assert_int_equal(conf_allow_match(&conf, v6("::2")), 0);
	assert_int_equal(conf_allow_match(&conf, v6("2001:db8:ffff::1")), 1);
	assert_int_equal(conf_allow_match(&conf, v6("2001:db9::1")), 0);

	/* IPv4-mapped IPv6 (a dual-stack socket) matches the IPv4 networks */
	assert_int_equal(conf_allow_match(&conf, v6("::ffff:127.0.0.1")), 1);
	assert_int_equal(conf_allow_match(&conf, v6("::ffff:10.1.2.3")), 1);
	assert_int_equal(conf_allow_match(&conf, v6("::ffff:192.0.2.1")), 0);
	/* ... but ::127.0.0.1 (compatible, not mapped) does not */
	assert_int_equal(conf_allow_match(&conf, v6("::127.0.0.1")), 0);

	/* an empty list allows nobody; other families never match */
	conf.nallow = 0;
	assert_int_equal(conf_allow_match(&conf, v4("127.0.0.1")), 0);
	conf.nallow = 4;
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	assert_int_equal(conf_allow_match(&conf, (struct sockaddr *)&sun), 0);

	/* 0.0.0.0/0 is everyone (IPv4) */
	assert_int_equal(conf_parse_cidr("0.0.0.0/0", &nets[0]), 0);
	conf.nallow = 1;
	assert_int_equal(conf_allow_match(&conf, v4("203.0.113.9")), 1);
	assert_int_equal(conf_allow_match(&conf, v6("::ffff:203.0.113.9")), 1);
	assert_int_equal(conf_allow_match(&conf, v6("2001:db8::1")), 0);
}

/* ---- loading -------------------------------------------------------------- */

static void
assert_defaults(const struct config *c)
{
	static const unsigned retry[] = { 60, 300, 900, 1800, 3600, 7200, 14400 };

	assert_non_null(c->hostname);
	assert_true(c->hostname[0] != '\0');
	assert_string_equal(c->spool_dir, "/var/spool/mailrelay");
	assert_string_equal(c->user, "mailrelay");
	assert_int_equal(c->nlisten, 1);
	assert_int_equal(c->listen[0].kind, LISTEN_UNIX);
	assert_string_equal(c->listen[0].path, "/run/mailrelay/submit.sock");
	assert_int_equal(c->nallow, 2);
	assert_int_equal(c->allow[0].family, AF_INET);
	assert_int_equal(c->allow[0].prefix, 8);
	assert_int_equal(c->allow[0].addr[0], 127);
	assert_int_equal(c->allow[1].family, AF_INET6);
	assert_int_equal(c->allow[1].prefix, 128);
	assert_int_equal(c->allow[1].addr[15], 1);
	assert_string_equal(c->control_socket, "/run/mailrelay/control.sock");
	assert_true(c->max_message_size == 35ULL * 1024 * 1024);
	assert_int_equal(c->nretry, 7);
	for (size_t i = 0; i < 7; i++)
		assert_int_equal(c->retry_schedule[i], retry[i]);
	assert_int_equal(c->max_queue_time, 5 * 86400);
	assert_int_equal(c->concurrency, 4);
	assert_int_equal(c->log_level, CONF_LOG_INFO);
	assert_null(c->admin_address);
	assert_string_equal(c->aliases_file, "/etc/aliases");
	assert_null(c->from_address);
	assert_int_equal(c->rewrite_from, REWRITE_FROM_LOCAL);
	assert_false(c->strict_addresses);
	assert_int_equal(c->double_bounce, DOUBLE_BOUNCE_ADMIN);
	assert_int_equal(c->delay_warning, 4 * 3600);
	assert_int_equal(c->nsmarthosts, 0);
	assert_null(c->smarthosts);
	assert_int_equal(c->nroutes, 0);
}

static void
test_defaults_empty_file(void **state)
{
	struct config *c = must_load("");
	char name[256];
	(void)state;

	assert_defaults(c);
	assert_string_equal(c->path, tmp_path);
	assert_int_equal(c->nkeylines, 0);

	/* the system's name, or its fully qualified form */
	assert_int_equal(gethostname(name, sizeof name), 0);
	if (strchr(name, '.') != NULL)
		assert_string_equal(c->hostname, name);
	else if (strcmp(c->hostname, name) != 0) {
		assert_int_equal(strncmp(c->hostname, name, strlen(name)), 0);
		assert_int_equal(c->hostname[strlen(name)], '.');
	}
	cleanup(c);

	/* comments and blank lines only: the same */
	c = must_load("# nothing here\n\n   \n/* nor here */\n// nor here\n");
	assert_defaults(c);
	cleanup(c);
}

static void
test_default_path(void **state)
{
	struct config *c;
	struct stat st;
	(void)state;

	unsetenv("MAILRELAY_CONFIG");
	assert_string_equal(conf_default_path(), CONF_DEFAULT_PATH);
	if (stat(CONF_DEFAULT_PATH, &st) != 0) {
		/* a missing default file means the built-in defaults */
		c = conf_load(NULL, err, sizeof err);
		assert_non_null(c);
		assert_null(c->path);
		assert_defaults(c);
		conf_free(c);
	}

	/* $MAILRELAY_CONFIG names the file, and it must exist */
	c = must_load("concurrency = 9\n");
	conf_free(c);
	setenv("MAILRELAY_CONFIG", tmp_path, 1);
	assert_string_equal(conf_default_path(), tmp_path);
	c = conf_load(NULL, err, sizeof err);
	assert_non_null(c);
	assert_string_equal(c->path, tmp_path);
	assert_int_equal(c->concurrency, 9);
	conf_free(c);
	unlink(tmp_path);
	c = conf_load(NULL, err, sizeof err);
	assert_null(c);
	{
		char want[256];

		snprintf(want, sizeof want, "%s: cannot open: No such file or directory", tmp_path);
		assert_string_equal(err, want);
	}
	unsetenv("MAILRELAY_CONFIG");
	tmp_path[0] = '\0';
}

static const char full_config[] =
	"hostname = mx1.example.org\n"
	"spool_dir = /srv/spool\n"
	"user = relay\n"
	"listen = { \"unix:/tmp/submit.sock\", 127.0.0.1:2525, \"[::1]:2526\" }\n"
	"allow = { 192.0.2.0/24, \"2001:db8::/48\" }\n"
	"control_socket = /tmp/control.sock\n"
	"max_message_size = 10M\n"
	"retry_schedule = { 30s, \"2m\", 1h }\n"
	"max_queue_time = 2d\n"
	"concurrency = 16\n"
	"log_level = debug\n"
	"admin_address = ops@example.org\n"
	"aliases_file = /etc/mail/aliases\n"
	"from_address = \"mx1@example.org\"\n"
	"rewrite_from = always\n"
	"strict_addresses = yes\n"
	"double_bounce = drop\n"
	"delay_warning = 0\n"
	"smarthost primary {\n"
	"    host = smtp.example.org\n"
	"    port = 2587\n"
	"    tls = opportunistic\n"
	"    timeout = 2m\n"
	"    connect_timeout = 10s\n"
	"    reuse_time = 0\n"
	"    helo_name = out.example.org\n"
	"    helo_fallback = no\n"
	"    tls_verify = false\n"
	"    tls_ca_file = /etc/ssl/ca.pem\n"
	"    tls_ca_path = /etc/ssl/certs\n"
	"    tls_fingerprint = \"SHA256:AB:cd:EF:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89\"\n"
	"    tls_client_cert = /etc/mailrelay/c.pem\n"
	"    tls_client_key = /etc/mailrelay/c.key\n"
	"    tls_min_version = TLSv1.3\n"
	"    tls_ciphers = \"HIGH:!aNULL\"\n"
	"    auth = scram-sha-256\n"
	"    username = \"relay@example.org\"\n"
	"    password_file = /etc/mailrelay/primary.secret\n"
	"    auth_allow_plaintext = yes\n"
	"    proxy = \"socks5://[::1]:1080\"\n"
	"    add_header = { \"X-Mailer-Host: web1\", \"X-Env: prod\" }\n"
	"    rate_limit = 30/m\n"
	"}\n"
	"smarthost backup {\n"
	"    host = 2001:db8::25\n"
	"    tls = implicit\n"
	"    username = u\n"
	"    password = \"p a s s\"\n"
	"}\n"
	"route {\n"
	"    from = \"*@billing.example.org\"\n"
	"    smarthost = backup\n"
	"}\n"
	"route { from = @example.net; smarthost = primary }\n";

static void
test_full_round_trip(void **state)
{
	struct config *c = must_load(full_config);
	const struct smarthost_conf *p, *b;
	(void)state;

	assert_string_equal(c->hostname, "mx1.example.org");
	assert_string_equal(c->spool_dir, "/srv/spool");
	assert_string_equal(c->user, "relay");
	assert_int_equal(c->nlisten, 3);
	assert_int_equal(c->listen[0].kind, LISTEN_UNIX);
	assert_string_equal(c->listen[0].path, "/tmp/submit.sock");
	assert_int_equal(c->listen[1].kind, LISTEN_TCP);
	assert_string_equal(c->listen[1].host, "127.0.0.1");
	assert_string_equal(c->listen[1].port, "2525");
	assert_string_equal(c->listen[2].host, "::1");
	assert_string_equal(c->listen[2].port, "2526");
	assert_int_equal(c->nallow, 2);
	assert_int_equal(c->allow[0].prefix, 24);
	assert_int_equal(c->allow[1].prefix, 48);
	assert_int_equal(conf_allow_match(c, v4("192.0.2.200")), 1);
	assert_int_equal(conf_allow_match(c, v4("127.0.0.1")), 0);
	assert_int_equal(conf_allow_match(c, v6("2001:db8:0:1::1")), 1);
	assert_string_equal(c->control_socket, "/tmp/control.sock");
	assert_true(c->max_message_size == 10ULL << 20);
	assert_int_equal(c->nretry, 3);
	assert_int_equal(c->retry_schedule[0], 30);
	assert_int_equal(c->retry_schedule[1], 120);
	assert_int_equal(c->retry_schedule[2], 3600);
	assert_int_equal(c->max_queue_time, 2 * 86400);
	assert_int_equal(c->concurrency, 16);
	assert_int_equal(c->log_level, CONF_LOG_DEBUG);
	assert_string_equal(c->admin_address, "ops@example.org");
	assert_string_equal(c->aliases_file, "/etc/mail/aliases");
	assert_string_equal(c->from_address, "mx1@example.org");
	assert_int_equal(c->rewrite_from, REWRITE_FROM_ALWAYS);
	assert_true(c->strict_addresses);
	assert_int_equal(c->double_bounce, DOUBLE_BOUNCE_DROP);
	assert_int_equal(c->delay_warning, 0);

	assert_int_equal(c->nsmarthosts, 2);
	p = &c->smarthosts[0];
	assert_string_equal(p->name, "primary");
	assert_string_equal(p->host, "smtp.example.org");
	assert_int_equal(p->port, 2587);
	assert_int_equal(p->tls, TLS_OPPORTUNISTIC);
	assert_int_equal(p->timeout, 120);
	assert_int_equal(p->connect_timeout, 10);
	assert_int_equal(p->reuse_time, 0);	/* QUIT after the last message */
	assert_string_equal(p->helo_name, "out.example.org");
	assert_false(p->helo_fallback);
	assert_false(p->tls_verify);
	assert_string_equal(p->tls_ca_file, "/etc/ssl/ca.pem");
	assert_string_equal(p->tls_ca_path, "/etc/ssl/certs");
	assert_string_equal(p->tls_fingerprint,
	    "sha256:abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789");
	assert_string_equal(p->tls_client_cert, "/etc/mailrelay/c.pem");
	assert_string_equal(p->tls_client_key, "/etc/mailrelay/c.key");
	assert_int_equal(p->tls_min_version, 0x0304);
	assert_string_equal(p->tls_ciphers, "HIGH:!aNULL");
	assert_int_equal(p->auth, AUTH_SCRAM_SHA_256);
	assert_string_equal(conf_auth_name(p->auth), "scram-sha-256");
	assert_string_equal(p->username, "relay@example.org");
	assert_null(p->password);
	assert_string_equal(p->password_file, "/etc/mailrelay/primary.secret");
	assert_null(p->password_command);
	assert_true(p->auth_allow_plaintext);
	assert_string_equal(p->proxy_host, "::1");
	assert_string_equal(p->proxy_port, "1080");
	assert_int_equal(p->nadd_header, 2);
	assert_string_equal(p->add_header[0], "X-Mailer-Host: web1");
	assert_string_equal(p->add_header[1], "X-Env: prod");
	assert_int_equal(p->rate_limit_count, 30);
	assert_int_equal(p->rate_limit_period, 60);

	b = &c->smarthosts[1];
	assert_string_equal(b->name, "backup");
	assert_string_equal(b->host, "2001:db8::25");
	assert_int_equal(b->tls, TLS_IMPLICIT);
	assert_int_equal(b->port, 465);
	assert_int_equal(b->timeout, 60);
	assert_int_equal(b->connect_timeout, 30);
	assert_int_equal(b->data_timeout, 600);	/* RFC 5321 4.5.3.2.6 */
	assert_int_equal(b->reuse_time, 2);
	assert_null(b->helo_name);
	assert_true(b->helo_fallback);
	assert_true(b->tls_verify);
	assert_null(b->tls_fingerprint);
	assert_int_equal(b->tls_min_version, 0x0303);
	assert_int_equal(b->auth, AUTH_AUTO);
	assert_string_equal(b->password, "p a s s");
	assert_false(b->auth_allow_plaintext);
	assert_null(b->proxy_host);
	assert_int_equal(b->nadd_header, 0);
	assert_int_equal(b->rate_limit_count, 0);

	assert_int_equal(c->nroutes, 2);
	assert_string_equal(c->routes[0].from, "*@billing.example.org");
	assert_string_equal(c->routes[0].smarthost, "backup");
	assert_int_equal(c->routes[0].smarthost_index, 1);
	/* '@example.net' reads as '*@example.net' */
	assert_string_equal(c->routes[1].from, "*@example.net");
	assert_int_equal(c->routes[1].smarthost_index, 0);
	/* the first matching route wins, case-insensitively; no match: none */
	assert_ptr_equal(conf_route_find(c, "Invoices@BILLING.example.org"), &c->routes[0]);
	assert_ptr_equal(conf_route_find(c, "cron@example.net"), &c->routes[1]);
	assert_null(conf_route_find(c, "cron@web1.example.net"));
	assert_null(conf_route_find(c, ""));

	/* where keys were set, for later checks */
	assert_int_equal(conf_key_line(c, NULL, "hostname"), 1);
	assert_int_equal(conf_key_line(c, NULL, "retry_schedule"), 8);
	assert_int_equal(conf_key_line(c, NULL, "delay_warning"), 18);
	assert_int_equal(conf_key_line(c, p, "host"), 20);
	assert_int_equal(conf_key_line(c, p, "password_file"), 38);
	assert_int_equal(conf_key_line(c, b, "password"), 48);
	assert_int_equal(conf_key_line(c, b, "password_file"), 0);
	assert_int_equal(conf_key_line(c, NULL, "host"), 0);
	cleanup(c);
}

static void
test_failover_order(void **state)
{
	struct config *c = must_load(
	    "smarthost zulu { host = z.example.com }\n"
	    "smarthost alpha { host = a.example.com }\n"
	    "smarthost mike {\n  host = m.example.com\n}\n"
	    "smarthost 'bravo-2' { host = \"b.example.com\" }\n");
	(void)state;

	assert_int_equal(c->nsmarthosts, 4);
	assert_string_equal(c->smarthosts[0].name, "zulu");
	assert_string_equal(c->smarthosts[0].host, "z.example.com");
	assert_string_equal(c->smarthosts[1].name, "alpha");
	assert_string_equal(c->smarthosts[1].host, "a.example.com");
	assert_string_equal(c->smarthosts[2].name, "mike");
	assert_string_equal(c->smarthosts[3].name, "bravo-2");
	assert_string_equal(c->smarthosts[3].host, "b.example.com");
	for (size_t i = 0; i < 4; i++) {
		assert_int_equal(c->smarthosts[i].port, 587);
		assert_int_equal(c->smarthosts[i].tls, TLS_REQUIRED);
		assert_int_equal(c->smarthosts[i].auth, AUTH_NONE);
	}
	cleanup(c);
}

static void
test_port_defaults(void **state)
{
	struct config *c = must_load(
	    "smarthost a { host = a.example.com; tls = implicit }\n"
	    "smarthost b { host = b.example.com; tls = implicit; port = 2465 }\n"
	    "smarthost c { host = c.example.com; tls = disabled }\n"
	    "smarthost d { host = d.example.com; port = 25; tls = Opportunistic }\n");
	(void)state;

	assert_int_equal(c->smarthosts[0].port, 465);
	assert_int_equal(c->smarthosts[0].tls, TLS_IMPLICIT);
	assert_int_equal(c->smarthosts[1].port, 2465);
	assert_int_equal(c->smarthosts[2].port, 587);
	assert_int_equal(c->smarthosts[2].tls, TLS_DISABLED);
	assert_int_equal(c->smarthosts[3].port, 25);
	assert_int_equal(c->smarthosts[3].tls, TLS_OPPORTUNISTIC);
	assert_string_equal(conf_tls_mode_name(c->smarthosts[3].tls), "opportunistic");
	assert_string_equal(conf_tls_mode_name(TLS_IMPLICIT), "implicit");
	cleanup(c);
}

/* rate_limit = COUNT/PERIOD: a unit alone means one of it; /s is for tests and bursts. */
static void
test_rate_limit_units(void **state)
{
	struct config *c = must_load(
	    "smarthost a { host = a.example.com; rate_limit = 3/s }\n"
	    "smarthost b { host = b.example.com; rate_limit = 1000/1h }\n"
	    "smarthost c { host = c.example.com; rate_limit = 10000/d }\n"
	    "smarthost d { host = d.example.com; rate_limit = 100/90s }\n"
	    "smarthost e { host = e.example.com }\n");
	(void)state;

	assert_int_equal(c->smarthosts[0].rate_limit_count, 3);
	assert_int_equal(c->smarthosts[0].rate_limit_period, 1);
	assert_int_equal(c->smarthosts[1].rate_limit_count, 1000);
	assert_int_equal(c->smarthosts[1].rate_limit_period, 3600);
	assert_int_equal(c->smarthosts[2].rate_limit_count, 10000);
	assert_int_equal(c->smarthosts[2].rate_limit_period, 86400);
	assert_int_equal(c->smarthosts[3].rate_limit_count, 100);
	assert_int_equal(c->smarthosts[3].rate_limit_period, 90);
	assert_int_equal(c->smarthosts[4].rate_limit_count, 0);
	cleanup(c);
	expect_error("smarthost a { host = a.example.com; rate_limit = 0/m }\n",
	    ":1: rate_limit: expected messages per time such as 30/m or 1000/1h, got \"0/m\"");
	expect_error("smarthost a { host = a.example.com; rate_limit = 5/0s }\n",
	    ":1: rate_limit: expected messages per time such as 30/m or 1000/1h, got \"5/0s\"");
	expect_error("smarthost a { host = a.example.com; rate_limit = \"5/\" }\n",
	    ":1: rate_limit: expected messages per time such as 30/m or 1000/1h, got \"5/\"");
}

/* Comments anywhere, ';' separators, quoted and unquoted list values, line numbers. */
static void
test_syntax(void **state)
{
	struct config *c = must_load(
	    "# comment\n"
	    "## another\n"
	    "/* a block\n   comment */\n"
	    "retry_schedule = { 1m,   # first\n"
	    "                   \"5m\", // second\n"
	    "                   15m /* third */ }\n"
	    "concurrency = 2; log_level = warning\n"
	    "smarthost x { host = x.example.com; port = 26; }  # trailing\n"
	    "user = \"a-user\" ; spool_dir = '/var/spool/with # hash'\n");
	(void)state;

	assert_int_equal(c->nretry, 3);
	assert_int_equal(c->retry_schedule[0], 60);
	assert_int_equal(c->retry_schedule[1], 300);
	assert_int_equal(c->retry_schedule[2], 900);
	assert_int_equal(c->concurrency, 2);
	assert_int_equal(c->log_level, CONF_LOG_WARNING);
	assert_int_equal(c->smarthosts[0].port, 26);
	assert_string_equal(c->user, "a-user");
	assert_string_equal(c->spool_dir, "/var/spool/with # hash");
	assert_int_equal(conf_key_line(c, NULL, "retry_schedule"), 5);
	assert_int_equal(conf_key_line(c, NULL, "log_level"), 8);
	assert_int_equal(conf_key_line(c, &c->smarthosts[0], "port"), 9);
	assert_int_equal(conf_key_line(c, NULL, "user"), 10);
	cleanup(c);

	/* after many comments, errors still name the right line */
	expect_error("# one\n# two\n# three\n/* four\n */\nconcurrency = 0\n",
	    ":6: concurrency: expected a number from 1 to 256, got \"0\"");
}

/* ---- errors: exact text --------------------------------------------------- */

static void
test_error_missing_file(void **state)
{
	struct config *c;
	(void)state;

	c = conf_load("/nonexistent/mailrelay.conf", err, sizeof err);
	assert_null(c);
	assert_string_equal(err, "/nonexistent/mailrelay.conf: cannot open: No such file or directory");

	c = conf_load("/tmp", err, sizeof err);
	assert_null(c);
	assert_string_equal(err, "/tmp: cannot read: Is a directory");
}

static void
test_error_unknown_key(void **state)
{
	(void)state;

	expect_error("hostname = a.example.com\n\n\nhostnme = b.example.com\n",
	    ":4: no such option 'hostnme'");
	expect_error("smarthost a {\n  host = a.example.com\n  prot = 25\n}\n",
	    ":3: no such option 'prot'");
	expect_error("include(\"/etc/passwd\")\n", ":1: no such option 'include'");
}

static void
test_error_values(void **state)
{
	(void)state;

	expect_error("\n\nsmarthost a {\n  tls = yes\n}\n",
	    ":4: tls: expected one of disabled, opportunistic, required, implicit, got \"yes\"");
	expect_error("max_message_size = lots\n",
	    ":1: max_message_size: expected a size such as 35M, got \"lots\"");
	expect_error("max_message_size = -1\n",
	    ":1: max_message_size: expected a size such as 35M, got \"-1\"");
	expect_error("max_queue_time = soon\n",
	    ":1: max_queue_time: expected a duration such as 90s, 15m, 2h or 5d, got \"soon\"");
	expect_error("max_queue_time = 0\n",
	    ":1: max_queue_time: expected at least 1s, got \"0\"");
	expect_error("retry_schedule = { 1m,\n 5x }\n",
	    ":2: retry_schedule: expected a duration such as 90s, 15m, 2h or 5d, got \"5x\"");
	expect_error("concurrency = 257\n",
	    ":1: concurrency: expected a number from 1 to 256, got \"257\"");
	expect_error("log_level = verbose\n",
	    ":1: log_level: expected one of error, warning, info, debug, got \"verbose\"");
	expect_error("rewrite_from = sometimes\n",
	    ":1: rewrite_from: expected one of never, local, always, got \"sometimes\"");
	expect_error("double_bounce = postmaster\n",
	    ":1: double_bounce: expected one of admin, drop, got \"postmaster\"");
	expect_error("strict_addresses = maybe\n",
	    ":1: strict_addresses: expected yes or no, got \"maybe\"");
	expect_error("delay_warning = later\n",
	    ":1: delay_warning: expected a duration such as 90s, 15m, 2h or 5d (0 for never), got \"later\"");
	expect_error("listen = { \"unix:/ok.sock\", \"::1:25\" }\n",
	    ":1: listen: an IPv6 address goes in brackets, as in [::1]:25, got \"::1:25\"");
	expect_error("listen = { \"127.0.0.1:0\" }\n",
	    ":1: listen: expected a port number from 1 to 65535 after the colon, got \"127.0.0.1:0\"");
	expect_error("listen = { \"unix:/a.sock\", \"unix:/a.sock\" }\n",
	    ":1: listen: listed twice, got \"unix:/a.sock\"");
	expect_error("allow = { 10.0.0.0/33 }\n",
	    ":1: allow: expected an address or network such as 127.0.0.0/8 or ::1, got \"10.0.0.0/33\"");
	expect_error("spool_dir = spool\n",
	    ":1: spool_dir: expected an absolute path, got \"spool\"");
	expect_error("hostname = \"bad name\"\n",
	    ":1: hostname: expected a host name such as mail.example.com, got \"bad name\"");
	expect_error("admin_address = root\n",
	    ":1: admin_address: expected an address such as postmaster@example.com, got \"root\"");
	expect_error("user = \"\"\n", ":1: user: expected a user name, got \"\"");
	expect_error("smarthost a { host = a.example.com; port = 0 }\n",
	    ":1: port: expected a port number from 1 to 65535, got \"0\"");
	expect_error("smarthost a { host = a.example.com; auth = digest-md5 }\n",
	    ":1: auth: expected one of none, auto, plain, login, cram-md5, scram-sha-256, xoauth2, oauthbearer, got \"digest-md5\"");
	expect_error("smarthost a { host = a.example.com; tls_min_version = SSLv3 }\n",
	    ":1: tls_min_version: expected one of TLSv1.0, TLSv1.1, TLSv1.2, TLSv1.3, got \"SSLv3\"");
	expect_error("smarthost a { host = a.example.com; tls_fingerprint = \"sha1:abcd\" }\n",
	    ":1: tls_fingerprint: expected \"sha256:\" and 64 hex digits, got \"sha1:abcd\"");
	expect_error("smarthost a { host = a.example.com; proxy = \"http://p:8080\" }\n",
	    ":1: proxy: expected socks5://HOST:PORT, got \"http://p:8080\"");
	expect_error("smarthost a { host = a.example.com; add_header = { \"No colon\" } }\n",
	    ":1: add_header: expected a header line such as \"X-Mailer-Host: web1\", got \"No colon\"");
	expect_error("smarthost a { host = a.example.com; rate_limit = fast }\n",
	    ":1: rate_limit: expected messages per time such as 30/m or 1000/1h, got \"fast\"");
	expect_error("smarthost a { host = \"smtp example com\" }\n",
	    ":1: host: expected a host name or IP address such as smtp.example.com, got \"smtp example com\"");
}

/* Values are shown escaped and bounded: the message stays one line. */
static void
test_error_escaping(void **state)
{
	char text[400], want[300];
	(void)state;

	expect_error("hostname = \"a\\nb\"\n",
	    ":1: hostname: control characters are not allowed, got \"a\\x0ab\"");
	expect_error("smarthost a { host = a.example.com; add_header = { \"X-A: b\\r\\nBcc: x\" } }\n",
	    ":1: add_header: control characters are not allowed, got \"X-A: b\\x0d\\x0aBcc: x\"");
	expect_error("log_level = \"say \\\"hi\\\"\"\n",
	    ":1: log_level: expected one of error, warning, info, debug, got \"say \\\"hi\\\"\"");

	/* a long value is cut at 80 characters */
	memset(want, 'x', 80);
	want[80] = '\0';
	snprintf(text, sizeof text, "log_level = %s%s\n", want, "yyyyyyyyyy");
	snprintf(want + 80, sizeof want - 80, "...\"");
	{
		char suffix[400];

		snprintf(suffix, sizeof suffix,
		    ":1: log_level: expected one of error, warning, info, debug, got \"%s", want);
		expect_error(text, suffix);
	}
}

/* A string of n copies of c (n < 8192), in one of four static buffers used in turn. */
static const char *
run_of(char c, size_t n)
{
	static char buf[4][8192];
	static unsigned which;
	char *b = buf[which++ % 4];

	assert_true(n < sizeof buf[0]);
	memset(b, c, n);
	b[n] = '\0';
	return b;
}

/*
 * Values that go into SMTP commands are bounded: at the limit they load,
 * one octet over it is an error naming the length and the limit.
 */
static void
test_command_bounds(void **state)
{
	char text[10000], suffix[400];
	struct config *c;
	(void)state;

	/* an address of 254 octets (256 with its <>): 64 + '@' + 189 */
	snprintf(text, sizeof text, "from_address = \"%s@%s.%s.%s\"\n", run_of('l', 64),
	    run_of('a', 63), run_of('b', 63), run_of('c', 61));
	c = must_load(text);
	assert_int_equal(strlen(c->from_address), CONF_ADDRESS_MAX);
	cleanup(c);
	snprintf(text, sizeof text, "from_address = \"%s@%s.%s.%s\"\n", run_of('l', 64),
	    run_of('a', 63), run_of('b', 63), run_of('c', 62));
	{
		/* the quote shows the first 80 octets: 64 l, '@', 15 a */
		char shown[100];

		snprintf(shown, sizeof shown, "%s@%s", run_of('l', 64), run_of('a', 15));
		snprintf(suffix, sizeof suffix, ":1: from_address: too long (255 octets): an address "
		    "has at most 254 octets, 256 with its <> (RFC 5321 4.5.3.1.3), got \"%s...\"", shown);
	}
	expect_error(text, suffix);

	/* the 1,211-octet sender that used to load, then stop the daemon at MAIL FROM */
	snprintf(text, sizeof text, "\nadmin_address = \"%s@example.com\"\n", run_of('r', 1199));
	snprintf(suffix, sizeof suffix, ":2: admin_address: too long (1211 octets): an address has "
	    "at most 254 octets, 256 with its <> (RFC 5321 4.5.3.1.3), got \"%s...\"", run_of('r', 80));
	expect_error(text, suffix);

	/* the local part: at most 64 */
	snprintf(text, sizeof text, "admin_address = \"%s@example.com\"\n", run_of('r', 65));
	snprintf(suffix, sizeof suffix, ":1: admin_address: too long (65 octets): the part before "
	    "the @ has at most 64 octets (RFC 5321 4.5.3.1.1), got \"%s@example.com\"", run_of('r', 65));
	expect_error(text, suffix);

	/* the SASL user name: 255 */
	snprintf(text, sizeof text, "smarthost a {\n host = a.example.com\n username = \"%s\"\n"
	    " password = pw\n}\n", run_of('u', CONF_USERNAME_MAX));
	cleanup(must_load(text));
	snprintf(text, sizeof text, "smarthost a {\n host = a.example.com\n username = \"%s\"\n"
	    " password = pw\n}\n", run_of('u', CONF_USERNAME_MAX + 1));
	snprintf(suffix, sizeof suffix, ":3: username: too long (256 octets): a user name has at "
	    "most 255 octets (RFC 4616), got \"%s...\"", run_of('u', 80));
	expect_error(text, suffix);

	/* an inline password: 4096, and the message never shows it */
	snprintf(text, sizeof text, "smarthost a {\n host = a.example.com\n username = u\n"
	    " password = \"%s\"\n}\n", run_of('p', CONF_PASSWORD_MAX));
	c = must_load(text);
	assert_int_equal(strlen(c->smarthosts[0].password), CONF_PASSWORD_MAX);
	cleanup(c);
	snprintf(text, sizeof text, "smarthost a {\n host = a.example.com\n username = u\n"
	    " password = \"%s\"\n}\n", run_of('p', CONF_PASSWORD_MAX + 1));
	expect_error(text, ":4: password: too long (4097 octets): a password has at most 4096 "
	    "octets, to fit the AUTH command");
	expect_error("smarthost a {\n host = a.example.com\n username = u\n"
	    " password = \"se\\r\\ncret\"\n}\n", ":4: password: control characters are not allowed");

	/* a path open() cannot take */
	snprintf(text, sizeof text, "aliases_file = \"/%s\"\n", run_of('d', 4095));
	snprintf(suffix, sizeof suffix, ":1: aliases_file: too long (4096 octets): a path has at "
	    "most 4095 octets, got \"/%s...\"", run_of('d', 79));
	expect_error(text, suffix);

	/* the hostname qualifies local names: 189 octets, so that 64 + '@' + 189 = 254 */
	snprintf(text, sizeof text, "hostname = %s.%s.%s\n", run_of('a', 63), run_of('b', 63),
	    run_of('c', 61));
	c = must_load(text);
	assert_int_equal(strlen(c->hostname), 189);
	cleanup(c);
	snprintf(text, sizeof text, "\nhostname = %s.%s.%s\n", run_of('a', 63), run_of('b', 63),
	    run_of('c', 62));
	snprintf(suffix, sizeof suffix, ":2: hostname: too long (190 octets): the host name "
	    "qualifies local names, and with a local part of 64 octets an address has at most "
	    "254, so at most 189 octets, got \"%s.%s...\"", run_of('a', 63), run_of('b', 16));
	expect_error(text, suffix);
	/* helo_name does not qualify anything: a DNS name of up to 253 octets */
	snprintf(text, sizeof text, "smarthost a {\n host = a.example.com\n helo_name = %s.%s.%s.%s\n}\n",
	    run_of('a', 63), run_of('b', 63), run_of('c', 63), run_of('d', 61));
	cleanup(must_load(text));

	/* host names were bounded already: 253 octets, labels of 63 */
	snprintf(text, sizeof text, "hostname = %s.example\n", run_of('h', 64));
	snprintf(suffix, sizeof suffix, ":1: hostname: expected a host name such as "
	    "mail.example.com, got \"%s.example\"", run_of('h', 64));
	expect_error(text, suffix);
}

/* rewrite_from = always sends as a username with an '@': it must be an address. */
static void
test_username_as_identity(void **state)
{
	(void)state;

	cleanup(must_load("rewrite_from = always\nsmarthost a {\n host = a.example.com\n"
	    " username = relay@example.com\n password = pw\n}\n"));
	/* not sent as the sender: from_address is, or rewrite_from is not always */
	cleanup(must_load("rewrite_from = always\nfrom_address = a@example.com\nsmarthost a {\n"
	    " host = a.example.com\n username = \"a b@c\"\n password = pw\n}\n"));
	cleanup(must_load("smarthost a {\n host = a.example.com\n username = \"a b@c\"\n"
	    " password = pw\n}\n"));
	expect_error("rewrite_from = always\nsmarthost a {\n host = a.example.com\n"
	    " username = \"a b@c\"\n password = pw\n}\n",
	    ":4: username: with rewrite_from = always and no from_address, mail is sent as this "
	    "user name, so it must be an address: expected an address such as "
	    "postmaster@example.com, got \"a b@c\"");
}

static void
test_error_smarthosts(void **state)
{
	(void)state;

	expect_error("smarthost a {\n  host = a.example.com\n}\nsmarthost a {\n  host = b.example.com\n}\n",
	    ":4: smarthost: name \"a\" is used twice");
	expect_error("smarthost office {\n  port = 25\n}\n",
	    ":3: smarthost \"office\": host is required");
	expect_error("smarthost \"two words\" { host = a.example.com }\n",
	    ":1: smarthost: expected a name of letters, digits, '.', '_' and '-', got \"two words\"");
	expect_error("smarthost { host = a.example.com }\n",
	    ":1: missing title for section 'smarthost'");
	expect_error("smarthost a {\n  host = a.example.com\n  host = b.example.com\n}\n",
	    ":3: host: set twice (first on line 2)");
	expect_error("smarthost a {\n host = a.example.com\n username = u\n password = p\n password_file = /etc/p\n}\n",
	    ":5: password_file: only one of password, password_file and password_command may be set");
	expect_error("smarthost a {\n host = a.example.com\n auth = plain\n}\n",
	    ":3: auth: needs a username in smarthost \"a\"");
	expect_error("smarthost a {\n host = a.example.com\n username = u\n}\n",
	    ":3: username: needs a password, password_file or password_command in smarthost \"a\"");
	expect_error("smarthost a {\n host = a.example.com\n password_command = \"pass show smtp\"\n}\n",
	    ":3: password_command: set without a username in smarthost \"a\"");
	expect_error("smarthost a {\n host = a.example.com\n tls_client_key = /k.pem\n}\n",
	    ":3: tls_client_key: set without tls_client_cert in smarthost \"a\"");
}

static void
test_error_routes(void **state)
{
	struct config *c;
	(void)state;

	expect_error("smarthost a { host = a.example.com }\n"
	    "route {\n  from = \"*@x.example\"\n  smarthost = nope\n}\n",
	    ":4: smarthost: no smarthost named \"nope\" is defined");
	expect_error("route { smarthost = a }\nsmarthost a { host = a.example.com }\n",
	    ":1: route: from is required");
	expect_error("smarthost a { host = a.example.com }\nroute {\n  from = x@y\n}\n",
	    ":4: route: smarthost is required");

	/* a route may come before the smarthost it names */
	c = must_load("route { from = \"*@x.example\"; smarthost = b }\n"
	    "smarthost a { host = a.example.com }\nsmarthost b { host = b.example.com }\n");
	assert_int_equal(c->nroutes, 1);
	assert_int_equal(c->routes[0].smarthost_index, 1);
	cleanup(c);
}

static void
test_error_syntax(void **state)
{
	(void)state;

	expect_error("hostname a.example.com\n",
	    ":1: missing equal sign after option 'hostname'");
	expect_error("smarthost a {\n  host = a.example.com\n", ":1: '{' is never closed");
	expect_error("smarthost a {\n  host = a.example.com\n}\nlisten = { \"unix:/a\"\n\n", ":4: '{' is never closed");
	expect_error("smarthost a {\n host = \"a.example.com\n}\n", ":2: unterminated quoted string");
	expect_error("smarthost a {\n host = 'a.example.com\n}\n", ":2: unterminated quoted string");
	expect_error("concurrency = 4\nhostname =", ":2: premature end of file");
	expect_error("}\n", ":1: unexpected closing brace");
	expect_error("concurrency = 4\n/* not closed\n", ":2: unterminated comment");
	expect_error("concurrency = 4\nconcurrency = 5\n", ":2: concurrency: set twice (first on line 1)");
	expect_error("listen = {}\n", ": listen: expected at least one socket");
	expect_error("retry_schedule = {}\n", ": retry_schedule: expected at least one duration");

	/* a NUL byte would silently cut a value short in libconfuse */
	{
		static const char nul[] = "concurrency = 4\nhostname = a\0b\n";
		char want[128];
		FILE *fp;
		int fd;

		strcpy(tmp_path, "/tmp/test_conf.XXXXXX");
		fd = mkstemp(tmp_path);
		assert_true(fd >= 0);
		close(fd);
		fp = fopen(tmp_path, "w");
		assert_non_null(fp);
		assert_int_equal(fwrite(nul, 1, sizeof nul - 1, fp), sizeof nul - 1);
		fclose(fp);
		assert_null(conf_load(tmp_path, err, sizeof err));
		snprintf(want, sizeof want, "%s:2: a NUL byte: this is not a text file", tmp_path);
		assert_string_equal(err, want);
		cleanup(NULL);
	}
}

static void
test_error_small_buffer(void **state)
{
	char small[12];
	struct config *c;
	(void)state;

	memset(small, 'x', sizeof small);
	c = conf_load("/nonexistent/mailrelay.conf", small, sizeof small);
	assert_null(c);
	assert_string_equal(small, "/nonexisten");
	/* no buffer at all is allowed too */
	assert_null(conf_load("/nonexistent/mailrelay.conf", NULL, 0));
}

/* ---- the sample config ---------------------------------------------------- */

static char *
read_sample(void)
{
	const char *srcdir = getenv("srcdir");
	char path[PATH_MAX];
	FILE *fp;
	char *buf;
	long n;

	snprintf(path, sizeof path, "%s/conf/mailrelay.conf", srcdir ? srcdir : ".");
	fp = fopen(path, "r");
	if (fp == NULL)
		fail_msg("cannot open %s", path);
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	n = ftell(fp);
	assert_true(n > 0);
	rewind(fp);
	buf = calloc(1, (size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	return buf;
}

/* What clients may hold: max_connections (total, per client) and the session deadlines. */
static void
test_client_limits(void **state)
{
	struct config *c;

	(void)state;
	c = must_load("");
	assert_int_equal(c->max_connections, 100);
	assert_int_equal(c->max_connections_per_client, 20);
	assert_int_equal(c->idle_timeout, 300);
	assert_int_equal(c->session_timeout, 3600);
	conf_free(c);
	c = must_load("max_connections = 5\nmax_connections_per_client = 5\nidle_timeout = 2s\n"
	    "session_timeout = 10m\n");
	assert_int_equal(c->max_connections, 5);
	assert_int_equal(c->max_connections_per_client, 5);
	assert_int_equal(c->idle_timeout, 2);
	assert_int_equal(c->session_timeout, 600);
	conf_free(c);
	expect_error("max_connections = 0\n",
	    ":1: max_connections: expected a number from 1 to 10000, got \"0\"");
	expect_error("max_connections_per_client = 10001\n",
	    ":1: max_connections_per_client: expected a number from 1 to 10000, got \"10001\"");
	expect_error("max_connections = 10\n\nmax_connections_per_client = 11\n",
	    ":3: max_connections_per_client: expected at most max_connections (10), got 11");
	expect_error("max_connections_per_client = 101\n",
	    ":1: max_connections_per_client: expected at most max_connections (100), got 101");
	expect_error("idle_timeout = 0\n", ":1: idle_timeout: expected at least 1s, got \"0\"");
	expect_error("session_timeout = forever\n",
	    ":1: session_timeout: expected a duration such as 90s, 15m, 2h or 5d, got \"forever\"");
}

static void
test_sample_config(void **state)
{
	const char *srcdir = getenv("srcdir");
	char path[PATH_MAX], *text, *out, *o;
	struct config *c;
	(void)state;

	/* as shipped: every setting commented out, so the built-in defaults */
	snprintf(path, sizeof path, "%s/conf/mailrelay.conf", srcdir ? srcdir : ".");
	c = conf_load(path, err, sizeof err);
	if (c == NULL)
		fail_msg("%s", err);
	assert_string_equal(c->path, path);
	assert_defaults(c);
	conf_free(c);

	/*
	 * Every commented-out setting ('#' directly followed by the setting)
	 * uncommented at once must be valid too: the sample shows no value
	 * that would be refused.
	 */
	text = read_sample();
	out = o = calloc(1, strlen(text) + 1);
	assert_non_null(out);
	for (char *line = text; *line; ) {
		char *nl = strchr(line, '\n');
		size_t len = nl ? (size_t)(nl - line + 1) : strlen(line);

		if (line[0] == '#' && len > 1 && line[1] != ' ' && line[1] != '#' && line[1] != '\n') {
			line++;
			len--;
		}
		memcpy(o, line, len);
		o += len;
		line += len;
	}
	c = must_load(out);
	assert_string_equal(c->hostname, "mail.example.com");
	assert_int_equal(c->nlisten, 3);
	assert_string_equal(c->admin_address, "postmaster@example.com");
	assert_int_equal(c->nsmarthosts, 5);
	assert_string_equal(c->smarthosts[0].name, "example");
	assert_int_equal(c->smarthosts[0].nadd_header, 1);
	assert_string_equal(c->smarthosts[1].name, "office365");
	assert_string_equal(c->smarthosts[1].host, "smtp.office365.com");
	assert_int_equal(c->smarthosts[1].port, 587);
	assert_int_equal(c->smarthosts[1].tls, TLS_REQUIRED);
	assert_int_equal(c->smarthosts[1].auth, AUTH_AUTO);
	assert_string_equal(c->smarthosts[2].name, "gmail");
	assert_string_equal(c->smarthosts[2].host, "smtp.gmail.com");
	assert_int_equal(c->smarthosts[2].port, 587);
	assert_string_equal(c->smarthosts[3].name, "relay");
	assert_int_equal(c->smarthosts[3].port, 25);
	assert_int_equal(c->smarthosts[3].tls, TLS_OPPORTUNISTIC);
	assert_int_equal(c->smarthosts[3].auth, AUTH_NONE);
	assert_string_equal(c->smarthosts[4].name, "m365");
	assert_int_equal(c->smarthosts[4].preset, PRESET_MICROSOFT365);
	assert_string_equal(c->smarthosts[4].host, "smtp.office365.com");
	assert_int_equal(c->smarthosts[4].auth, AUTH_XOAUTH2);
	assert_non_null(c->smarthosts[4].oauth2);
	assert_int_equal(c->smarthosts[4].oauth2->grant, OAUTH2_CLIENT_CREDENTIALS);
	assert_int_equal(c->nroutes, 1);
	assert_int_equal(c->routes[0].smarthost_index, 3);
	cleanup(c);
	free(out);
	free(text);
}

/* A failed assertion leaves the test early: remove its file here. */
/* ---- OAuth2 and presets ---------------------------------------------------- */

/* A five-line Microsoft 365 smarthost: the preset and the provider fill the rest. */
static void
test_oauth2_preset_microsoft365(void **state)
{
	(void)state;
	struct config *c = must_load(
	    "smarthost m365 {\n"
	    "  preset = microsoft365\n"
	    "  username = \"relay@contoso.com\"\n"
	    "  oauth2 { tenant = \"contoso.onmicrosoft.com\"\n"
	    "    client_id = \"11111111-2222\"; client_secret_file = \"/etc/mailrelay/m365.secret\" }\n"
	    "}\n");
	const struct smarthost_conf *sh = &c->smarthosts[0];
	assert_int_equal(sh->preset, PRESET_MICROSOFT365);
	assert_string_equal(sh->host, "smtp.office365.com");
	assert_int_equal(sh->port, 587);
	assert_int_equal(sh->tls, TLS_REQUIRED);
	assert_int_equal(sh->auth, AUTH_XOAUTH2);
	assert_non_null(sh->oauth2);
	assert_int_equal(sh->oauth2->provider, OAUTH2_MICROSOFT);
	assert_int_equal(sh->oauth2->grant, OAUTH2_CLIENT_CREDENTIALS);
	assert_string_equal(sh->oauth2->scope, "https://outlook.office365.com/.default");
	assert_string_equal(sh->oauth2->token_url,
	    "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token");
	assert_string_equal(sh->oauth2->device_url,
	    "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/devicecode");
	/* the filled-in keys were not in the file; the written ones were */
	assert_int_equal(conf_key_line(c, sh, "host"), 0);
	assert_int_equal(conf_key_line(c, sh, "client_secret_file"), 5);
	assert_int_equal(conf_key_line(c, sh, "tenant"), 4);
	cleanup(c);
}

/* Delegated Microsoft and Gmail: grant and scope follow the refresh token file. */
static void
test_oauth2_delegated_and_gmail(void **state)
{
	(void)state;
	struct config *c = must_load(
	    "smarthost m365 {\n"
	    "  preset = microsoft365; username = \"ann@contoso.com\"\n"
	    "  oauth2 { tenant = \"organizations\"; client_id = \"abc\"\n"
	    "    refresh_token_file = \"/var/lib/mailrelay/m365.refresh\" }\n"
	    "}\n"
	    "smarthost gmail {\n"
	    "  preset = gmail; username = \"ann@gmail.com\"; auth = oauthbearer\n"
	    "  oauth2 { client_id = \"x.apps.googleusercontent.com\"; client_secret_file = \"/etc/g.secret\"\n"
	    "    refresh_token_file = \"/var/lib/mailrelay/g.refresh\" }\n"
	    "}\n"
	    "smarthost corp {\n"
	    "  host = \"smtp.corp.example\"; username = \"app\"; password_file = \"/etc/app.pw\"; auth = xoauth2\n"
	    "  oauth2 { token_url = \"https://idp.corp.example/token\"; client_id = \"app\"; grant = password\n"
	    "    client_secret_file = \"/etc/app.secret\"; scope = \"smtp\" }\n"
	    "}\n");
	const struct smarthost_conf *m = &c->smarthosts[0], *g = &c->smarthosts[1], *x = &c->smarthosts[2];
	assert_int_equal(m->oauth2->grant, OAUTH2_REFRESH_TOKEN);
	assert_string_equal(m->oauth2->scope, "https://outlook.office.com/SMTP.Send offline_access");
	assert_string_equal(g->host, "smtp.gmail.com");
	assert_int_equal(g->port, 465);
	assert_int_equal(g->tls, TLS_IMPLICIT);
	assert_int_equal(g->auth, AUTH_OAUTHBEARER);	/* a written key beats the preset */
	assert_int_equal(g->oauth2->provider, OAUTH2_GOOGLE);
	assert_int_equal(g->oauth2->grant, OAUTH2_REFRESH_TOKEN);
	assert_string_equal(g->oauth2->scope, "https://mail.google.com/");
	assert_string_equal(g->oauth2->token_url, "https://oauth2.googleapis.com/token");
	assert_int_equal(x->oauth2->provider, OAUTH2_GENERIC);
	assert_int_equal(x->oauth2->grant, OAUTH2_PASSWORD);
	assert_string_equal(x->oauth2->token_url, "https://idp.corp.example/token");
	assert_null(x->oauth2->device_url);
	cleanup(c);
}

/* A tls written in the section beats the preset, and then the port follows it. */
static void
test_oauth2_preset_overrides(void **state)
{
	(void)state;
	struct config *c = must_load(
	    "smarthost g { preset = gmail; tls = required; username = \"a@gmail.com\"\n"
	    "  oauth2 { client_id = \"c\"; refresh_token_file = \"/r\" } }\n"
	    "smarthost h { preset = gmail; host = \"gw.example.net\"; port = 2525; username = \"b\"\n"
	    "  auth = plain; password_file = \"/p\" }\n");
	assert_int_equal(c->smarthosts[0].tls, TLS_REQUIRED);
	assert_int_equal(c->smarthosts[0].port, 587);
	assert_string_equal(c->smarthosts[1].host, "gw.example.net");
	assert_int_equal(c->smarthosts[1].port, 2525);
	assert_int_equal(c->smarthosts[1].auth, AUTH_PLAIN);
	assert_null(c->smarthosts[1].oauth2);
	cleanup(c);
}

static void
test_oauth2_errors(void **state)
{
	(void)state;
	expect_error("smarthost a { host = \"h.example\"; username = \"u\"; auth = plain\n"
	    "  oauth2 { client_id = \"c\"; client_secret_file = \"/s\" }\n}\n",
	    ":2: oauth2: needs auth = xoauth2 or auth = oauthbearer in smarthost \"a\"");
	expect_error("smarthost a { preset = microsoft365; username = \"u\"\n"
	    "  oauth2 { tenant = \"t\"; client_secret_file = \"/s\" }\n}\n",
	    ":2: oauth2: client_id is required in smarthost \"a\"");
	expect_error("smarthost a { preset = microsoft365; username = \"u\"\n"
	    "  oauth2 { client_id = \"c\"; client_secret_file = \"/s\" }\n}\n",
	    ":2: oauth2: provider microsoft needs a tenant (the directory id or a domain such as "
	    "contoso.onmicrosoft.com) in smarthost \"a\"");
	expect_error("smarthost a { preset = microsoft365; username = \"u\"\n"
	    "  oauth2 { tenant = \"t\"; client_id = \"c\"\n"
	    "    client_secret_file = \"/s\"\n"
	    "    client_certificate = \"/c.pem\"; client_key = \"/k.pem\" }\n}\n",
	    ":4: client_certificate: only one of client_secret_file and client_certificate may be set");
	expect_error("smarthost a { preset = microsoft365; username = \"u\"\n"
	    "  oauth2 { tenant = \"t\"; client_id = \"c\"\n"
	    "    client_certificate = \"/c.pem\" }\n}\n",
	    ":3: client_certificate: client_certificate and client_key go together "
	    "(a certificate credential signs a JWT client assertion)");
	expect_error("smarthost a { preset = microsoft365; username = \"u\"\n"
	    "  oauth2 { tenant = \"t\"; client_id = \"c\" }\n}\n",
	    ":2: grant: client_credentials needs a client_secret_file, or a client_certificate "
	    "and client_key, in smarthost \"a\"");
	expect_error("smarthost a { preset = gmail; username = \"u\"\n"
	    "  oauth2 { client_id = \"c\"\n"
	    "    grant = refresh_token }\n}\n",
	    ":3: grant: refresh_token needs a refresh_token_file (mailrelay oauth2 authorize "
	    "--smarthost a writes it) in smarthost \"a\"");
	expect_error("smarthost a { host = \"h.example\"; username = \"u\"; auth = xoauth2\n"
	    "  oauth2 { client_id = \"c\"; token_url = \"https://idp.example/t\"\n"
	    "    grant = password }\n}\n",
	    ":3: grant: password needs the user's password or password_file on smarthost \"a\"");
	expect_error("smarthost a { host = \"h.example\"; username = \"u\"; auth = xoauth2\n"
	    "  oauth2 { client_id = \"c\"; client_secret_file = \"/s\" }\n}\n",
	    ":2: oauth2: provider generic needs a token_url in smarthost \"a\"");
	expect_error("smarthost a { preset = gmail; username = \"u\"\n"
	    "  password_command = \"get-token\"\n"
	    "  oauth2 { client_id = \"c\"; refresh_token_file = \"/r\" }\n}\n",
	    ":2: password_command: not used with an oauth2 section, which obtains the token "
	    "itself, in smarthost \"a\"");
	expect_error("smarthost a { preset = gmail\n"
	    "  oauth2 { client_id = \"c\"; refresh_token_file = \"/r\" }\n}\n",
	    ":3: username: required with oauth2 (the mailbox the token is for) in smarthost \"a\"");
	expect_error("smarthost a { preset = gmail; username = \"u\" }\n",
	    ":1: preset: gmail needs an oauth2 section (client_id and a credential) in smarthost \"a\"");
	expect_error("smarthost a { preset = gmail; username = \"u\"\n"
	    "  oauth2 { client_id = \"c\"; refresh_token_file = \"/r\"\n"
	    "    token_url = \"http://idp.example/token\" }\n}\n",
	    ":3: token_url: expected an https:// URL, got \"http://idp.example/token\"");
	expect_error("smarthost a { preset = microsoft365; username = \"u\"\n"
	    "  oauth2 { tenant = \"con toso\" }\n}\n",
	    ":2: tenant: expected a directory id or domain such as contoso.onmicrosoft.com, got \"con toso\"");
	expect_error("smarthost a { preset = office; username = \"u\" }\n",
	    ":1: preset: expected one of none, microsoft365, gmail, got \"office\"");
	expect_error("smarthost a { preset = gmail; username = \"u\"\n"
	    "  oauth2 { client_id = \"c\"; grant = implicit }\n}\n",
	    ":2: grant: expected one of client_credentials, refresh_token, password, got \"implicit\"");
}

/* confcheck's predicates: documentation names (RFC 2606) and hosts on this machine. */
static void
test_confcheck_placeholder_and_loopback(void **state)
{
	(void)state;
	assert_true(confcheck_is_placeholder("example.com"));
	assert_true(confcheck_is_placeholder("mail.example.com"));
	assert_true(confcheck_is_placeholder("smtp.EXAMPLE.net"));
	assert_true(confcheck_is_placeholder("a.b.example.org."));
	assert_false(confcheck_is_placeholder("myexample.com"));
	assert_false(confcheck_is_placeholder("example.com.au"));
	assert_false(confcheck_is_placeholder("smtp.example"));
	assert_false(confcheck_is_placeholder("smtp.gmail.com"));
	assert_true(confcheck_is_loopback("localhost"));
	assert_true(confcheck_is_loopback("127.0.0.1"));
	assert_true(confcheck_is_loopback("127.3.2.1"));
	assert_true(confcheck_is_loopback("::1"));
	assert_false(confcheck_is_loopback("128.0.0.1"));
	assert_false(confcheck_is_loopback("192.0.2.25"));
	assert_false(confcheck_is_loopback("::2"));
	assert_false(confcheck_is_loopback("localhost.example.com"));
}

/* The unquoted '#' or ';' of a value, and the separators that are meant. */
static void
test_cut_values(void **state)
{
	(void)state;
	expect_error("helo_name = x\nsmarthost a {\n host = relay#1.test\n}\n",
	    ":3: host: an unquoted '#' starts a comment, so the value would be cut to \"relay\"; "
	    "write host = \"relay#1.test\"");
	expect_error("smarthost a {\n host = h.test\n username = u\n password = se;cret\n}\n",
	    ":4: password: an unquoted ';' ends the value, so it would be cut there; put the whole "
	    "value in double quotes: password = \"...\"");
	cleanup(must_load("concurrency = 2;log_level = warning\nsmarthost a { host = h.test; port = 26; }\n"
	    "route { from = \"*@a.test\"; smarthost = a }\nmax_queue_time = 2d # two days\n"));
}

static int
remove_tmp(void **state)
{
	(void)state;
	if (tmp_path[0] != '\0')
		unlink(tmp_path);
	tmp_path[0] = '\0';
	return 0;
}

#define TEST(f) cmocka_unit_test_teardown(f, remove_tmp)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		TEST(test_duration_valid),
		TEST(test_duration_invalid),
		TEST(test_size_valid),
		TEST(test_size_invalid),
		TEST(test_listen_valid),
		TEST(test_listen_invalid),
		TEST(test_cidr),
		TEST(test_allow_match),
		TEST(test_defaults_empty_file),
		TEST(test_default_path),
		TEST(test_full_round_trip),
		TEST(test_failover_order),
		TEST(test_port_defaults),
		TEST(test_rate_limit_units),
		TEST(test_syntax),
		TEST(test_confcheck_placeholder_and_loopback),
		TEST(test_cut_values),
		TEST(test_error_missing_file),
		TEST(test_error_unknown_key),
		TEST(test_error_values),
		TEST(test_error_escaping),
		TEST(test_command_bounds),
		TEST(test_username_as_identity),
		TEST(test_error_smarthosts),
		TEST(test_error_routes),
		TEST(test_error_syntax),
		TEST(test_error_small_buffer),
		TEST(test_client_limits),
		TEST(test_sample_config),
		TEST(test_oauth2_preset_microsoft365),
		TEST(test_oauth2_delegated_and_gmail),
		TEST(test_oauth2_preset_overrides),
		TEST(test_oauth2_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

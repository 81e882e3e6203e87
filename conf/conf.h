/*
 * conf: the one place that defines every configuration key of mailrelay,
 * its type, default and validation (libconfuse schema), and the parsed,
 * immutable `struct config` the rest of the code reads.
 *
 * Errors are reported as one line naming file, line and key:
 *   "mailrelay.conf:12: tls: expected one of disabled, opportunistic, required, implicit, got \"yes\""
 * and the caller exits 78 (EX_CONFIG).
 *
 * Every value is validated when the file is loaded, so code holding a
 * struct config never meets an invalid one: no value holds a control
 * character, and those that go into SMTP commands or headers fit them
 * (the CONF_*_MAX bounds below).  Checks that need the outside
 * world (file permissions, DNS, certificates) are not done here: they use
 * conf_key_line() to point at the line that caused them (daemon/runconf.c,
 * client/cfgcheck.c), as do the judgements of conf/confcheck.h on values
 * that load but will not deliver.
 *
 * conf_load() is not reentrant (libconfuse's scanner has global state):
 * call it from one thread at a time.
 */
#ifndef MAILRELAY_CONF_H
#define MAILRELAY_CONF_H

#include "lib/rewrite.h"
#include <stdbool.h>
#include <stddef.h>
#include <netinet/in.h>

/* The build defines it from --sysconfdir (Makefile.am). */
#ifndef CONF_DEFAULT_PATH
#define CONF_DEFAULT_PATH "/etc/mailrelay/mailrelay.conf"
#endif
#define CONF_CONNECTIONS_MAX 10000      /* max_connections, max_connections_per_client (conf.c says the number) */

/*
 * Bounds on values that end up in SMTP commands, checked at load time so
 * that a command built from the configuration always fits (see conf.c):
 * an address with its <> is an SMTP path of at most 256 octets and its
 * local part has at most 64 (RFC 5321 4.5.3.1.3 and 4.5.3.1.1); a SASL
 * user name has at most 255 octets (RFC 4616); an inline password, sent
 * base64-encoded in the AUTH line (at most 12288 octets, RFC 4954 4),
 * at most CONF_PASSWORD_MAX.  Host names are DNS names: at most 253
 * octets, labels of at most 63; the top-level hostname, which qualifies
 * local names, at most 189 so that any local part of 64 octets @ it is
 * still an address of at most 254.  Header lines (add_header) have at
 * most 998 octets (RFC 5322 2.1.1).
 */
#define CONF_ADDRESS_MAX	254
#define CONF_LOCAL_PART_MAX	64
#define CONF_USERNAME_MAX	255
#define CONF_PASSWORD_MAX	4096

enum tls_mode { TLS_DISABLED = 0, TLS_OPPORTUNISTIC, TLS_REQUIRED, TLS_IMPLICIT };
enum log_level_conf { CONF_LOG_ERROR = 0, CONF_LOG_WARNING, CONF_LOG_INFO, CONF_LOG_DEBUG };
enum rewrite_from_mode { REWRITE_FROM_NEVER = 0, REWRITE_FROM_LOCAL, REWRITE_FROM_ALWAYS };
enum double_bounce_mode { DOUBLE_BOUNCE_ADMIN = 0, DOUBLE_BOUNCE_DROP };
enum auth_mech {
	AUTH_NONE = 0, AUTH_AUTO, AUTH_PLAIN, AUTH_LOGIN, AUTH_CRAM_MD5,
	AUTH_SCRAM_SHA_256, AUTH_XOAUTH2, AUTH_OAUTHBEARER
};

/*
 * OAuth2 (auth = xoauth2 | oauthbearer with an oauth2 { } section): the
 * daemon obtains the access token itself from token_url (daemon/oauth2.c).
 * Every field holds its effective value: provider defaults (scope,
 * token_url, device_url) are filled in at load time, so what
 * `mailrelay check-config --show` prints is what the daemon uses.
 */
enum oauth2_provider { OAUTH2_GENERIC = 0, OAUTH2_MICROSOFT, OAUTH2_GOOGLE };
enum oauth2_grant { OAUTH2_CLIENT_CREDENTIALS = 0, OAUTH2_REFRESH_TOKEN, OAUTH2_PASSWORD };
enum smarthost_preset { PRESET_NONE = 0, PRESET_MICROSOFT365, PRESET_GMAIL };

struct oauth2_conf {
	enum oauth2_provider provider;   /* default generic, or the preset's */
	char *tenant;                    /* microsoft: directory id or domain */
	char *client_id;                 /* required */
	char *client_secret_file;        /* at most one of it and client_certificate */
	char *client_certificate;        /* with client_key: an RFC 7523 JWT client assertion */
	char *client_key;
	char *refresh_token_file;        /* grant refresh_token: read, and rewritten on rotation */
	char *scope;                     /* provider default for the grant when not set */
	char *token_url;                 /* https://; provider default when not set */
	char *device_url;                /* device authorization endpoint (RFC 8628), or NULL */
	char *authorize_url;             /* authorization endpoint (code + PKCE), or NULL */
	enum oauth2_grant grant;         /* default: refresh_token with a refresh_token_file, else client_credentials */
};

/* Where a key was set in the file, for "FILE:LINE: KEY: why" from later checks. */
struct conf_keyline {
	char    *key;
	unsigned line;
};

struct smarthost_conf {
	char         *name;              /* section title */
	char         *host;              /* required */
	unsigned      port;              /* default 587, 465 for implicit */
	enum tls_mode tls;               /* default required */
	unsigned      timeout;           /* seconds for the greeting or a complete reply, default 60 */
	unsigned      connect_timeout;   /* seconds for the whole connect phase, default 30 */
	unsigned      data_timeout;      /* seconds for the reply to the final dot, default 600 */
	unsigned      reuse_time;        /* seconds a connection waits for the next message, default 2; 0: QUIT */
	char         *helo_name;         /* NULL: use config hostname */
	bool          helo_fallback;     /* HELO when EHLO is refused, default true */
	bool          tls_verify;        /* check chain and host name, default true */
	char         *tls_ca_file;       /* NULL: system trust store */
	char         *tls_ca_path;       /* NULL: system trust store */
	char         *tls_fingerprint;   /* NULL, or "sha256:" + 64 lower-case hex digits (normalised) */
	char         *tls_client_cert;   /* NULL: no client certificate */
	char         *tls_client_key;    /* NULL: the key is in tls_client_cert */
	int           tls_min_version;   /* protocol number as OpenSSL's TLS1_2_VERSION: 0x0301..0x0304, default 0x0303 */
	char         *tls_ciphers;       /* NULL: library default */
	enum auth_mech auth;             /* default AUTH_AUTO when username is set, else AUTH_NONE */
	char         *username;
	char         *password;          /* at most one of password, password_file, password_command */
	char         *password_file;
	char         *password_command;
	bool          auth_allow_plaintext; /* default false */
	char         *proxy_host;        /* proxy = socks5://HOST:PORT; NULL: connect directly */
	char         *proxy_port;
	char        **add_header;        /* "Name: value" lines, validated */
	size_t        nadd_header;
	unsigned      rate_limit_count;  /* rate_limit = COUNT/PERIOD, e.g. 30/m; 0: unlimited */
	unsigned      rate_limit_period; /* seconds */
	enum smarthost_preset preset;    /* filled host, port, tls, auth, oauth2 provider when not set */
	struct oauth2_conf *oauth2;      /* NULL: no oauth2 section */
	struct conf_keyline *keylines;   /* keys set inside this section */
	size_t        nkeylines;
};

/*
 * route { from = PATTERN; smarthost = NAME }: senders matching PATTERN go
 * through NAME and only NAME (no failover: see delivery.c).  PATTERN is a glob
 * ('*', '?') meant to be matched case-insensitively against the envelope
 * sender; "@a.example" is stored as "*@a.example".
 */
struct route_conf {
	char    *from;
	char    *smarthost;              /* name, known to exist */
	size_t   smarthost_index;        /* into config.smarthosts */
};

enum listen_kind { LISTEN_UNIX = 0, LISTEN_TCP };
struct listen_conf {
	enum listen_kind kind;
	char *path;                      /* unix */
	char *host;                      /* tcp: "127.0.0.1", "::1", "localhost" */
	char *port;                      /* tcp: "25" */
};

struct cidr {
	int family;                      /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	unsigned prefix;
};

struct config {
	char    *path;                   /* file it was read from, or NULL for built-in defaults */
	char    *text;                   /* the file's text as parsed (conf_load_text()), NULL with path */
	size_t   text_len;
	char    *hostname;               /* default: /etc/mailname, else the FQDN, else gethostname() */
	char    *spool_dir;              /* default /var/spool/mailrelay */
	char    *user;                   /* default mailrelay */
	struct listen_conf *listen;      /* default { "unix:/run/mailrelay/submit.sock" } */
	size_t   nlisten;
	struct cidr *allow;              /* default 127.0.0.0/8, ::1/128 */
	size_t   nallow;
	char    *control_socket;         /* default /run/mailrelay/control.sock */
	/* metrics_listen: HOST:PORT of the /metrics endpoint on loopback; host NULL when unset */
	struct listen_conf metrics_listen;
	unsigned long long max_message_size;  /* bytes, default 35M; 0 = unlimited */
	unsigned *retry_schedule;        /* seconds; default 1m 5m 15m 30m 1h 2h 4h; last repeats */
	size_t   nretry;
	unsigned max_queue_time;         /* seconds, default 5d */
	unsigned concurrency;            /* sessions per smarthost, default 4, 1..256 */
	enum log_level_conf log_level;   /* default info */
	char    *log_file;               /* every log line appended here too; NULL: none */
	char    *admin_address;          /* NULL: no default (local mail goes to user@hostname) */
	char    *aliases_file;           /* default /etc/aliases */
	char    *from_address;           /* NULL: user@hostname */
	enum rewrite_from_mode rewrite_from; /* default local */
	bool     strict_addresses;       /* default false */
	enum double_bounce_mode double_bounce; /* default admin */
	unsigned delay_warning;          /* seconds, default 4h; 0 = never warn */
	/*
	 * What one client can make the daemon hold (SPEC "Config file"):
	 * sessions on the listeners together, and those of one uid (unix
	 * socket) or one address (TCP); the control socket has the same two
	 * limits of its own.  A session's partial message in spool/tmp is
	 * bounded by max_message_size, so the spool's tmp/ holds at most
	 * max_connections * max_message_size.
	 */
	unsigned max_connections;        /* default 100, 1..CONF_CONNECTIONS_MAX */
	unsigned max_connections_per_client; /* default 20, at most max_connections */
	unsigned idle_timeout;           /* seconds without a complete command, default 5m */
	unsigned session_timeout;        /* seconds a session may last, default 1h */
	struct smarthost_conf *smarthosts; /* in file order: failover order */
	size_t   nsmarthosts;
	struct route_conf *routes;       /* in file order: first match wins */
	size_t   nroutes;
	struct conf_keyline *keylines;   /* top-level keys set in the file */
	size_t   nkeylines;
};

/* The address-rewriting policy of a configuration (lib/rewrite.h). */
static inline struct rewrite_policy
conf_rewrite_policy(const struct config *c)
{
	struct rewrite_policy p = { c->hostname, c->from_address, (int)c->rewrite_from };
	return p;
}

/*
 * Load and validate.  path NULL means: $MAILRELAY_CONFIG if set, else
 * CONF_DEFAULT_PATH, and a missing default file yields the built-in defaults
 * (a missing explicitly named file is an error).  On error returns NULL with
 * a one-line message in errbuf (no trailing newline).
 */
struct config *conf_load(const char *path, char *errbuf, size_t errlen);
/*
 * The same from a file's text already read (config->text of a conf_load()):
 * path names it in messages; path NULL: the built-in defaults (text
 * unused).  The delivery process runs on the configuration mailrelayd
 * runs, whatever the file holds by then.
 */
struct config *conf_load_text(const char *path, const char *text, size_t len, char *errbuf, size_t errlen);
void conf_free(struct config *conf);

/*
 * Whether the host name (configured or found) has no dot: such a name
 * qualifies addresses as root@vm and greets smarthosts with EHLO vm,
 * which many refuse.  check-config warns and the daemon logs it at start.
 */
int conf_hostname_dotless(const struct config *c);

/* The path conf_load(NULL) would read. */
const char *conf_default_path(void);

/* "90", "90s", "15m", "2h", "5d" (also "1w", "1h30m") -> seconds.  0 on success, -1 on garbage or overflow. */
int conf_parse_duration(const char *s, unsigned *out);
/* "1000", "512K", "35M", "1G" (binary multiples) -> bytes.  0 on success, -1 on garbage or overflow. */
int conf_parse_size(const char *s, unsigned long long *out);
/*
 * "unix:/path", "127.0.0.1:25", "[::1]:25", "localhost:2525".  On success the
 * strings in *out are allocated (free() them); on failure nothing is.
 */
int conf_parse_listen(const char *s, struct listen_conf *out);
/* "127.0.0.0/8", "::1", "10.1.2.3"; no prefix means the full length; host bits are cleared. */
int conf_parse_cidr(const char *s, struct cidr *out);
/* Is the address (struct sockaddr_in / sockaddr_in6, v4-mapped v6 handled) inside one of the networks? */
int conf_allow_match(const struct config *conf, const struct sockaddr *sa);

/*
 * The route an envelope sender takes: the first route whose from pattern
 * matches it (fnmatch, case-insensitive), or NULL.  The daemon's delivery
 * and sendmail -bv both ask this, so they cannot disagree.
 */
const struct route_conf *conf_route_find(const struct config *conf, const char *sender);

const char *conf_tls_mode_name(enum tls_mode m);
const char *conf_auth_name(enum auth_mech m);
const char *conf_preset_name(enum smarthost_preset p);
const char *conf_oauth2_provider_name(enum oauth2_provider p);
const char *conf_oauth2_grant_name(enum oauth2_grant g);

/*
 * The line on which KEY was set: inside smarthost section sh, or at top
 * level when sh is NULL.  0 when the key was not in the file (a default).
 */
unsigned conf_key_line(const struct config *conf, const struct smarthost_conf *sh, const char *key);

/* The smarthost section of that name, or NULL. */
const struct smarthost_conf *conf_smarthost(const struct config *conf, const char *name);

#endif

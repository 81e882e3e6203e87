/*
 * trouble: every way a delivery can fail, as one table (pure data).
 *
 * Each failure kind has its scope (what it is a failure of), its decision
 * (what happens to the recipients it touches), the enhanced status code
 * reported for them (NULL: the smarthost's own, from its reply), the
 * counter of `mailrelay status` it bumps, the sentence an admin reads and
 * a hint of what to do.  The daemon's recorder (daemon/delivery_trouble.c)
 * applies it; `mailrelay show` and `status` print a recorded kind's
 * sentence and hint from the same rows, so the words cannot drift apart.
 * The kind is carried with each recipient by name (spool.h "rkind").
 *
 * tests/unit/test_trouble.c pins every row.
 */
#ifndef MAILRELAY_TROUBLE_H
#define MAILRELAY_TROUBLE_H

#include <stddef.h>

#include "outcome.h"

/* What the failure is a failure of. */
enum trouble_scope {
	TS_RECIPIENT,           /* one recipient (its RCPT, its age) */
	TS_MESSAGE,             /* this message, whatever the smarthost */
	TS_TRANSACTION,         /* the current MAIL..end of data */
	TS_SESSION,             /* this connection */
	TS_SMARTHOST            /* the smarthost (or the way to it) */
};

/* What happens to the recipients it touches. */
enum trouble_decision {
	TD_RETRY,               /* deferred: retried per retry_schedule */
	TD_BOUNCE,              /* failed now: a DSN to the sender */
	TD_BY_REPLY,            /* as the reply says: 2xx sent, 5xx bounced, else deferred */
	/*
	 * Before the first transaction on the connection: the smarthost is
	 * backed off and its messages go to the next smarthost in order (or
	 * are deferred after the last); later in the session: deferred.
	 */
	TD_NEXT_SMARTHOST,
	TD_LATER                /* not a failure: in the next transaction on this connection */
};

/* The counter of `mailrelay status` a failure bumps. */
enum trouble_counter {
	TC_NONE,
	TC_TLS,                 /* tls_failures */
	TC_AUTH,                /* auth_failures */
	TC_STEP                 /* the step it happened in decides: TLS steps, AUTH steps, or none */
};

/*
 * name, scope, decision, enhanced status (NULL: from the reply), counter,
 * sentence, hint.  One list: the enum and the table are generated from it.
 */
#define TROUBLE_KINDS(X)							\
	X(DNS, TS_SMARTHOST, TD_NEXT_SMARTHOST, "4.4.3", TC_NONE,		\
	    "the host name of the smarthost (or of its proxy) did not resolve",	\
	    "check `host` (or `proxy`) and the resolver")			\
	X(CONNECT, TS_SMARTHOST, TD_NEXT_SMARTHOST, "4.4.1", TC_NONE,		\
	    "no address of the smarthost took the connection",		\
	    "check `host`, `port` and the firewall; see connect_timeout")	\
	X(SOCKS, TS_SMARTHOST, TD_NEXT_SMARTHOST, "4.4.1", TC_NONE,		\
	    "the SOCKS5 proxy did not open the tunnel to the smarthost",	\
	    "check `proxy` and that the proxy lets this host through")	\
	X(GREETING_REFUSED, TS_SMARTHOST, TD_NEXT_SMARTHOST, NULL, TC_NONE,	\
	    "the smarthost refused to talk to us in its greeting",		\
	    "the smarthost's reply says why (a block list, a busy server)")	\
	X(EHLO_REFUSED, TS_SMARTHOST, TD_NEXT_SMARTHOST, NULL, TC_NONE,	\
	    "the smarthost refused EHLO (or HELO)",				\
	    "check helo_name; set helo_fallback = yes for HELO-only servers")	\
	X(TLS_NOT_OFFERED, TS_SMARTHOST, TD_NEXT_SMARTHOST, "4.7.4", TC_TLS,	\
	    "TLS is required but the smarthost does not offer STARTTLS",	\
	    "use tls = implicit on port 465, or the port that offers STARTTLS")	\
	X(TLS_REFUSED, TS_SMARTHOST, TD_NEXT_SMARTHOST, "4.7.4", TC_TLS,	\
	    "TLS is required but the smarthost refused STARTTLS",		\
	    "the smarthost's reply says why")					\
	X(TLS_INJECTION, TS_SESSION, TD_NEXT_SMARTHOST, "4.7.0", TC_TLS,	\
	    "the smarthost sent data after its reply to STARTTLS",		\
	    "something between us and the smarthost tampers with the connection") \
	X(TLS_SETUP, TS_SESSION, TD_NEXT_SMARTHOST, "4.7.0", TC_TLS,		\
	    "TLS could not be set up on our side",				\
	    "check the TLS settings of the smarthost and the daemon's log")	\
	X(TLS_HANDSHAKE, TS_SMARTHOST, TD_NEXT_SMARTHOST, "4.7.5", TC_TLS,	\
	    "the TLS handshake with the smarthost failed",			\
	    "the reason names the side at fault (protocol version, certificate)") \
	X(TLS_UNTRUSTED, TS_SMARTHOST, TD_NEXT_SMARTHOST, "4.7.5", TC_TLS,	\
	    "the smarthost's certificate is not trusted",			\
	    "check tls_ca, tls_fingerprint or the host name in `host`")	\
	X(AUTH_NOT_OFFERED, TS_SMARTHOST, TD_NEXT_SMARTHOST, "4.7.0", TC_STEP,	\
	    "the smarthost offers no AUTH mechanism we may use",		\
	    "check `auth`; some servers offer AUTH only after STARTTLS")	\
	X(AUTH_PLAINTEXT, TS_SMARTHOST, TD_NEXT_SMARTHOST, "4.7.0", TC_STEP,	\
	    "credentials would go over an unencrypted connection",		\
	    "use TLS, or set auth_allow_plaintext = yes")			\
	X(AUTH_NO_SECRET, TS_SMARTHOST, TD_NEXT_SMARTHOST, "4.7.0", TC_STEP,	\
	    "the smarthost has a username but no secret",			\
	    "set password_file, password_command or password")		\
	X(AUTH_SECRET, TS_SMARTHOST, TD_NEXT_SMARTHOST, "4.7.0", TC_STEP,	\
	    "password_command gave no secret",					\
	    "run the command by hand as the daemon's user")			\
	X(AUTH_TOKEN, TS_SMARTHOST, TD_NEXT_SMARTHOST, "4.7.0", TC_STEP,	\
	    "no OAuth2 token could be had for the smarthost",			\
	    "the reason names the token endpoint's answer; see the oauth2 section") \
	X(AUTH_EXCHANGE, TS_SMARTHOST, TD_NEXT_SMARTHOST, "4.7.0", TC_STEP,	\
	    "the AUTH exchange with the smarthost broke down",			\
	    "the reason says which step; a secret may be too long")		\
	X(AUTH_REJECTED, TS_SMARTHOST, TD_NEXT_SMARTHOST, "4.7.0", TC_STEP,	\
	    "the smarthost rejected our credentials",				\
	    "check `username` and the secret; a token may have expired")	\
	X(TIMEOUT, TS_SESSION, TD_NEXT_SMARTHOST, "4.4.2", TC_STEP,		\
	    "the smarthost did not answer in time",				\
	    "see timeout, data_timeout and connect_timeout")			\
	X(LOST, TS_SESSION, TD_NEXT_SMARTHOST, "4.4.2", TC_STEP,		\
	    "the connection to the smarthost was lost",			\
	    "the reason says how (closed by the server, reset, a TLS alert)")	\
	X(PROTOCOL, TS_SESSION, TD_NEXT_SMARTHOST, "4.5.0", TC_STEP,		\
	    "the smarthost's reply broke the SMTP protocol",			\
	    "the reason quotes what was wrong; is this port an SMTP server?")	\
	X(COMMAND_TOO_LONG, TS_SESSION, TD_NEXT_SMARTHOST, "4.3.0", TC_STEP,	\
	    "a command would be longer than this client sends",		\
	    "an address or a configured name is too long")			\
	X(SPOOL_READ, TS_TRANSACTION, TD_RETRY, "4.3.0", TC_NONE,		\
	    "the queued content could not be read",				\
	    "check the spool directory (disk, permissions)")			\
	X(TOO_BIG, TS_MESSAGE, TD_BOUNCE, "5.3.4", TC_NONE,			\
	    "the message is larger than the smarthost's SIZE limit",		\
	    "the sender must send it smaller")				\
	X(NEEDS_SMTPUTF8, TS_MESSAGE, TD_BOUNCE, "5.6.7", TC_NONE,		\
	    "a non-ASCII address needs SMTPUTF8, which the smarthost does not offer", \
	    "use a smarthost that offers SMTPUTF8")				\
	X(NOT_7BIT, TS_MESSAGE, TD_BOUNCE, "5.6.3", TC_NONE,			\
	    "8-bit content cannot be made 7-bit for a smarthost without 8BITMIME", \
	    "use a smarthost that offers 8BITMIME")				\
	X(MAIL_REFUSED, TS_TRANSACTION, TD_BY_REPLY, NULL, TC_NONE,		\
	    "the smarthost refused the sender (MAIL FROM)",			\
	    "the smarthost's reply says why; see rewrite_from")		\
	X(RCPT_REFUSED, TS_RECIPIENT, TD_BY_REPLY, NULL, TC_NONE,		\
	    "the smarthost refused the recipient (RCPT TO)",			\
	    "the smarthost's reply says why")					\
	X(RCPT_LIMIT, TS_RECIPIENT, TD_LATER, NULL, TC_NONE,			\
	    "the smarthost took no more recipients in this transaction (452)",	\
	    "nothing to do: they go in the next transaction")			\
	X(DATA_REFUSED, TS_TRANSACTION, TD_BY_REPLY, NULL, TC_NONE,		\
	    "the smarthost refused DATA",					\
	    "the smarthost's reply says why")					\
	X(BODY_CUT, TS_TRANSACTION, TD_BY_REPLY, NULL, TC_NONE,		\
	    "the smarthost replied while the body was being sent",		\
	    "the smarthost's reply says why")					\
	X(DOT_REPLY, TS_TRANSACTION, TD_BY_REPLY, NULL, TC_NONE,		\
	    "the smarthost's reply to the end of data",			\
	    "a refusal's reply says why (content, size, policy)")		\
	X(CLOSING, TS_TRANSACTION, TD_RETRY, NULL, TC_NONE,			\
	    "the smarthost is closing the connection (421)",			\
	    "nothing to do unless it persists: retried")			\
	X(ABANDONED, TS_TRANSACTION, TD_RETRY, NULL, TC_NONE,			\
	    "the connection ended before these recipients had their transaction", \
	    "nothing to do: retried")						\
	X(RSET_REFUSED, TS_TRANSACTION, TD_RETRY, NULL, TC_NONE,		\
	    "the smarthost refused RSET between transactions",		\
	    "nothing to do: retried")						\
	X(EXPIRED, TS_RECIPIENT, TD_BOUNCE, "4.4.7", TC_NONE,			\
	    "the message was queued longer than max_queue_time",		\
	    "the last error says why it could not be delivered")

enum trouble_kind {
#define X(name, scope, decision, status, counter, sentence, hint) TK_##name,
	TROUBLE_KINDS(X)
#undef X
	TK_COUNT
};

struct trouble {
	const char *name;               /* "TIMEOUT" */
	enum trouble_scope scope;
	enum trouble_decision decision;
	const char *status;             /* "4.4.2"; NULL: the smarthost's, from its reply */
	enum trouble_counter counter;
	const char *sentence;
	const char *hint;
};

/* The row of kind k. */
const struct trouble *trouble_get(enum trouble_kind k);
/*
 * The outcome of a recipient touched by kind k; reply_class (2..5) is
 * that of the smarthost's reply, 0 when there is none.  TD_LATER and
 * TD_NEXT_SMARTHOST give OUTCOME_DEFERRED (their extra steps are the
 * caller's: the carry, the back-off).
 */
enum outcome trouble_outcome(enum trouble_kind k, int reply_class);
/* "recipient", "next smarthost", ...: for the table's readers. */
const char *trouble_scope_name(enum trouble_scope sc);
const char *trouble_decision_name(enum trouble_decision d);
/* The kind named `name` ("TIMEOUT"); -1 when there is none. */
int trouble_by_name(const char *name);

#endif

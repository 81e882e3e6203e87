/*
 * oauth2: the access tokens of the smarthosts that have an oauth2 section,
 * obtained, cached and renewed inside the daemon without blocking the
 * event loop (requests through daemon/httpc.c).
 *
 * For delivery it is one more asynchronous source of the AUTH secret,
 * like a password_command: oauth2_get() answers later through a callback
 * with a token, or with the reason there is none.
 *
 * Life cycle, per smarthost (kept by name across reloads):
 *  - at 80% of a token's lifetime a timer asks for the next one in the
 *    background, so that sessions find a fresh token; a renewal that
 *    fails is tried again with a back-off until the token expires, the
 *    old one serving meanwhile; after that the next session asks;
 *  - tokens are kept in memory and in spool_dir/oauth2-NAME.token (mode
 *    0600, replaced atomically), so that a restart needs no request; the
 *    file is used only while the section's client, endpoint, scope, grant
 *    and user are unchanged;
 *  - a refresh token that the endpoint rotates is written back to
 *    refresh_token_file atomically (write, fsync, rename, fsync the
 *    directory) before the new access token is used;
 *  - a token the smarthost rejects is dropped (oauth2_rejected()), and the
 *    session asks once for a new one;
 *  - a refusal a person must fix (invalid_grant, invalid_client, missing
 *    consent, AADSTS errors) marks the smarthost "needs authorisation":
 *    one error-level log line says what happened and what to run, no
 *    request is made until the credential files change or the
 *    configuration is reloaded, and oauth2_status() tells `mailrelay
 *    status`; the state is also kept in spool_dir/oauth2-NAME.state
 *    (oauth2_state_write()) while it lasts, for `mailrelay status` with
 *    the daemon down, and taken up again when the daemon starts.  Mail is never bounced for it: the session fails with a
 *    4.7.0 and the message waits or fails over, and max_queue_time does
 *    not expire it while a smarthost it could go to needs authorisation
 *    (oauth2_holds_expiry()).
 *
 * Secrets: no token, secret, refresh token or assertion is ever logged;
 * buffers are wiped with explicit_bzero; the daemon is made non-dumpable
 * (PR_SET_DUMPABLE 0) as soon as it loads an OAuth2 credential.
 */
#ifndef MAILRELAY_OAUTH2_H
#define MAILRELAY_OAUTH2_H

#include <event2/event.h>

#include "conf/conf.h"
#include "smtp_reply.h"
#include "oauth2_proto.h"

/* token NULL: err says why; person: a person must act (needs authorisation). gen identifies the token. */
typedef void (*oauth2_cb)(const char *token, unsigned long gen, const char *err, int person, void *arg);

struct oauth2_wait;

/* Also takes the tokens kept in the spool for D->rc's smarthosts and arms their renewal. */
int oauth2_init(struct event_base *base, const char *spool_dir);
void oauth2_shutdown(void);

/*
 * A token for smarthost sh; creds from the runconf; password for the
 * password grant.  Not_gen: a token the caller saw rejected (0: none),
 * never handed again.  The callback runs later, never from inside.
 */
struct oauth2_wait *oauth2_get(const struct smarthost_conf *sh, const struct oauth2_creds *creds,
    const char *password, unsigned long not_gen, oauth2_cb cb, void *arg);
void oauth2_cancel(struct oauth2_wait *w);

/* The smarthost rejected token gen: forget it (memory and cache). */
void oauth2_rejected(const char *name, unsigned long gen);
/*
 * A reply of the smarthost that no new token will fix (535 5.7.139: SMTP
 * AUTH disabled): mark it needing a person, as a refused grant does.
 */
void oauth2_needs_person(const char *name, const char *why);
/*
 * What a smarthost's reply means for OAuth2 users, in one clause for the
 * log ("" when we know nothing to add): the Microsoft 365 and Google
 * replies people meet (535 5.7.139, 535 5.7.3, 550 5.7.60, 554 5.2.252,
 * 430 4.2.0 MapiExceptionLogonFailed, 550 5.7.30, 535 5.7.8).
 */
const char *oauth2_explain_reply(const struct smtp_reply *r);
/* Is it a reply no new token can fix (so: needs a person, no retry loop)? */
int oauth2_reply_needs_person(const struct smtp_reply *r);

/* 1 while a token request is in flight or a renewal is armed: work with no session open. */
int oauth2_background(void);

/* The "needs authorisation" sentence of a smarthost, or NULL. */
const char *oauth2_status(const char *name);

#endif

/*
 * oauth2cli: `mailrelay oauth2 token|authorize --smarthost NAME`.
 *
 *   token      what the daemon keeps for the smarthost (its token cache in
 *              the spool): when the token was obtained, when it expires,
 *              its scopes and audience; never the token itself
 *   authorize  obtains the first refresh token interactively and writes
 *              refresh_token_file (mode 0600, owned by the daemon's user,
 *              replaced atomically): the device code flow of RFC 8628 for
 *              Microsoft and generic providers (the URL and code shown,
 *              the endpoint polled at its interval, slow_down adding five
 *              seconds), and for Google the authorization code flow with
 *              PKCE (RFC 7636) and a loopback redirect
 *
 * Requests are plain blocking libcurl calls: the CLI has no event loop.
 */
#ifndef MAILRELAY_OAUTH2CLI_H
#define MAILRELAY_OAUTH2CLI_H

int cmd_oauth2(const char *config_path, int argc, char **argv);

#endif

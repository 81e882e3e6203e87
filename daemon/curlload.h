/*
 * curlload: libcurl loaded at run time (dlopen) the first time the daemon
 * needs it, instead of linked into mailrelayd.
 *
 * Why: libcurl is used only to ask OAuth2 token endpoints for tokens
 * (daemon/httpc.c), yet linking it maps its whole chain of dependencies
 * (gnutls, p11-kit, krb5, ldap, ssh2, nettle, gcrypt, ...) into every
 * daemon, about 4 MB of resident pages, most of them touched by their
 * constructors at start.  A daemon without an `auth = oauth2` smarthost
 * now never maps any of it.
 *
 * Contract:
 *  - curlload_get() loads CURLLOAD_SONAME once and resolves every symbol
 *    of CURLLOAD_SYMBOLS through one table (struct curlload); a member is
 *    the libcurl function without its "curl_" prefix (C->easy_init), its
 *    type taken from <curl/curl.h> itself, so that the table cannot drift
 *    from the headers the code is compiled against;
 *  - it fails (NULL, and "cannot load libcurl.so.4: DLERROR" in errbuf)
 *    when the library is missing or unusable, lacks a symbol, or is older
 *    than the version configure checked for (CURLLOAD_VERSION_MIN); a
 *    failure is not remembered, so the next call tries again (a library
 *    installed meanwhile is found without a restart);
 *  - once loaded, the library stays loaded until the process ends (no
 *    dlclose: curl's threads and atexit state must not lose their code).
 */
#ifndef MAILRELAY_CURLLOAD_H
#define MAILRELAY_CURLLOAD_H

#include <stddef.h>

#include <curl/curl.h>

/* The library's soname: the ABI the headers describe (libcurl4 in Debian). */
#define CURLLOAD_SONAME		"libcurl.so.4"
/* 7.85.0, configure's check: CURLOPT_PROTOCOLS_STR */
#define CURLLOAD_VERSION_MIN	0x075500

/* X(name): curl_name, the libcurl functions the daemon calls. */
#define CURLLOAD_SYMBOLS(X) \
	X(global_init) X(global_cleanup) X(version_info) \
	X(multi_init) X(multi_cleanup) X(multi_setopt) X(multi_assign) \
	X(multi_add_handle) X(multi_remove_handle) X(multi_socket_action) \
	X(multi_info_read) \
	X(easy_init) X(easy_cleanup) X(easy_setopt) X(easy_getinfo) X(easy_strerror) \
	X(slist_append) X(slist_free_all)

struct curlload {
#define CURLLOAD_MEMBER(name) __typeof__(curl_##name) *name;
	CURLLOAD_SYMBOLS(CURLLOAD_MEMBER)
#undef CURLLOAD_MEMBER
};

/* The loaded table, or NULL with errbuf ("cannot load libcurl.so.4: why"). */
const struct curlload *curlload_get(char *errbuf, size_t errlen);

#endif

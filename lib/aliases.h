/*
 * aliases: the /etc/aliases format and the expansion of local recipients
 * (SPEC "Addresses").
 *
 *   # comment
 *   name: target, target, ...
 *       continuation lines start with white space
 *
 * A target is an address (user@domain), another local name (expanded in
 * turn), or one of the forms a relay does not execute: "|command",
 * "/file" and ":include:/file" are refused (reported, never run).  Names
 * are matched case-insensitively.  Expansion is recursive and loop-safe:
 * a name met again on the way down stays as it is (so "root: root,
 * ops@example.com" keeps root), and the depth is bounded.  What is still
 * local after expansion goes to admin_address when set, else to
 * name@hostname.
 */
#ifndef MAILRELAY_ALIASES_H
#define MAILRELAY_ALIASES_H

#include <stddef.h>

/* A target the parser did not keep, with why (a fixed string), for sendmail -bv. */
struct alias_refused {
	char *target;
	const char *why;
};

struct alias {
	char *name;
	char **targets;
	size_t ntargets;
	unsigned line;
	struct alias_refused *refused;  /* "|command", "/file", ":include:", malformed */
	size_t nrefused;
};

struct aliases {
	struct alias *v;
	size_t n;
	/*
	 * Malformed entries or targets skipped by the parser (no ':', a bad
	 * name, a bad target, a NUL byte): what newaliases calls an error.
	 * Refused targets, second definitions and loops are only warnings.
	 */
	size_t nerrors;
};

/* Report of a problem (refused target, syntax); line is 0 when not from the file. */
typedef void (*aliases_warn_fn)(const char *file, unsigned line, const char *msg, void *arg);

/* Parse a file's text.  Malformed lines are reported, counted in nerrors and skipped, never fatal. */
void aliases_parse(struct aliases *a, const char *file, const char *text, size_t len,
    aliases_warn_fn warn, void *arg);
/* Load from a path; a missing file is an empty table (returns 0); -1 on other errors. */
int  aliases_load(struct aliases *a, const char *path, aliases_warn_fn warn, void *arg);
void aliases_free(struct aliases *a);

typedef void (*aliases_out_fn)(const char *addr, void *arg);

/*
 * Expand one recipient.  An address with a domain is passed through.  A
 * local name is looked up recursively; every final address is reported
 * once (duplicates dropped).  admin may be NULL.  Returns the number of
 * addresses reported.
 */
size_t aliases_expand(const struct aliases *a, const char *rcpt, const char *admin,
    const char *hostname, aliases_out_fn out, void *arg, aliases_warn_fn warn, void *warnarg);

/* A refused target met by aliases_verify(): in alias `alias`, why it is not used. */
typedef void (*aliases_refused_fn)(const char *alias, const struct alias_refused *r, void *arg);

/*
 * aliases_expand() as sendmail -bv needs it: the same walk, the same final
 * addresses, and besides, each refused target of every alias the walk
 * expands (once per alias).  An alias left with no usable target is
 * local, as aliases_expand() has it.  refused may be NULL.
 */
size_t aliases_verify(const struct aliases *a, const char *rcpt, const char *admin,
    const char *hostname, aliases_out_fn out, aliases_refused_fn refused, void *arg,
    aliases_warn_fn warn, void *warnarg);

/* Find loops (a name that reaches itself); reported through warn; returns how many. */
size_t aliases_check(const struct aliases *a, const char *file, aliases_warn_fn warn, void *arg);

#endif

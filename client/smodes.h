/*
 * smodes: the modes of mailrelay-sendmail other than submitting one
 * message (SPEC "Submission"):
 *
 *   -bs   SMTP on stdin/stdout: the bytes are relayed, untranslated, to
 *         the daemon's submit socket, which records our uid (SO_PEERCRED)
 *   -bv   verify recipients: alias expansion (the daemon's code, in
 *         lib/aliases.c) and the smarthost or route that would carry each
 *         final address; nothing is submitted, nothing written
 *   -bi   (and the name newaliases) check aliases_file with the daemon's
 *         parser; mailrelay keeps no alias database, so nothing is built
 *
 * libc, libconfuse and the project's static libraries only, like the rest
 * of the client.
 */
#ifndef MAILRELAY_SMODES_H
#define MAILRELAY_SMODES_H

#include "conf/conf.h"

/*
 * Run mode 's' (-bs), 'v' (-bv) or 'i' (-bi, newaliases) and return the
 * exit status (sysexits).  conf is freed.  sender is -f/-r or NULL,
 * extract is -t, args are the arguments after the options.
 */
int smodes_run(int mode, struct config *conf, const char *sender, int extract,
    char **args, int nargs);

#endif

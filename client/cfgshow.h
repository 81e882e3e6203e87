/*
 * cfgshow: `mailrelay check-config --show`, the effective configuration in
 * the file's own syntax: every smarthost key with the value the daemon
 * uses, including those a preset or a provider default filled in (marked
 * with a comment naming where the value came from, so a preset never
 * hides a key).  Secrets are never printed: a password or token source is
 * shown by its kind and file name only.
 */
#ifndef MAILRELAY_CFGSHOW_H
#define MAILRELAY_CFGSHOW_H

#include <stdio.h>

#include "conf/conf.h"

void cfgshow_print(FILE *fp, const struct config *c);

#endif

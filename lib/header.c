/*
 * header: see header.h.
 */
#include "config.h"

#include <string.h>
#include <strings.h>

#include "header.h"

int
header_is(const char *line, size_t len, const char *name)
{
	size_t n = strlen(name), i = n;

	if (len <= n || strncasecmp(line, name, n) != 0)
		return 0;
	/* RFC 5322 allows white space before the colon (obsolete syntax) */
	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	return i < len && line[i] == ':';
}

size_t
header_scrub(char *hdr, size_t len, struct header_info *info)
{
	size_t i = 0, out = 0;
	int dropping = 0;

	memset(info, 0, sizeof *info);
	while (i < len) {
		size_t end = i;
		while (end < len && hdr[end] != '\n')
			end++;
		if (end < len)
			end++;
		const char *line = hdr + i;
		size_t ll = end - i;
		if (line[0] != ' ' && line[0] != '\t') {
			dropping = 0;
			if (header_is(line, ll, "Date"))
				info->has_date = 1;
			else if (header_is(line, ll, "Message-ID"))
				info->has_msgid = 1;
			else if (header_is(line, ll, "From"))
				info->has_from = 1;
			else if (header_is(line, ll, "Bcc") || header_is(line, ll, "Resent-Bcc")) {
				dropping = 1;
				info->bcc_removed++;
			}
		}
		if (!dropping) {
			memmove(hdr + out, line, ll);
			out += ll;
		}
		i = end;
	}
	return out;
}

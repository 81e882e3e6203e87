/*
 * ctlproto: see ctlproto.h.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "ctlproto.h"

static const char *const verbs[] = {
	[CTL_FLUSH] = "FLUSH", [CTL_HOLD] = "HOLD", [CTL_RELEASE] = "RELEASE", [CTL_DELETE] = "DELETE",
	[CTL_STATUS] = "STATUS", [CTL_LIST] = "LIST", [CTL_SHOW] = "SHOW",
};

const char *
ctl_verb_name(enum ctl_verb v)
{
	return (size_t)v < sizeof verbs / sizeof verbs[0] && verbs[v] ? verbs[v] : "UNKNOWN";
}

int
ctl_id_valid(const char *s, size_t len)
{
	size_t i;

	if (len != CTL_ID_LEN)
		return 0;
	for (i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'F')))
			return 0;
	return 1;
}

int
ctl_parse(const char *line, size_t len, struct ctl_req *req, char *err, size_t errlen)
{
	size_t i, start, wl;

	memset(req, 0, sizeof *req);
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len == 0) {
		snprintf(err, errlen, "empty request");
		return -1;
	}
	if (len >= CTL_LINE_MAX) {
		snprintf(err, errlen, "request longer than %d octets", CTL_LINE_MAX - 1);
		return -1;
	}
	for (i = 0; i < len; i++)
		if ((unsigned char)line[i] < 0x20 || (unsigned char)line[i] > 0x7e) {
			snprintf(err, errlen, "request holds a control or non-ASCII character");
			return -1;
		}
	for (wl = 0; wl < len && line[wl] != ' '; wl++)
		;
	for (i = 1; i < sizeof verbs / sizeof verbs[0]; i++)
		if (wl == strlen(verbs[i]) && strncasecmp(line, verbs[i], wl) == 0)
			req->verb = (enum ctl_verb)i;
	if (req->verb == 0) {
		snprintf(err, errlen, "unknown request \"%.*s\"", (int)(wl > 40 ? 40 : wl), line);
		return -1;
	}
	if (req->verb == CTL_DELETE && len - wl == 4 && strncasecmp(line + wl, " ALL", 4) == 0) {
		req->all = 1;
		return 0;
	}
	if (req->verb == CTL_SHOW && len >= 5 && strncasecmp(line + len - 5, " BODY", 5) == 0) {
		req->body = 1;
		len -= 5;
	}
	if (req->verb == CTL_STATUS || req->verb == CTL_LIST) {
		if (len == wl)
			return 0;
		if (len - wl == 5 && strncasecmp(line + wl, " JSON", 5) == 0) {
			req->json = 1;
			return 0;
		}
		if (req->verb == CTL_STATUS && len - wl == 11 &&
		    strncasecmp(line + wl, " PROMETHEUS", 11) == 0) {
			req->prometheus = 1;
			return 0;
		}
		snprintf(err, errlen, "%s takes no argument but JSON%s", verbs[req->verb],
		    req->verb == CTL_STATUS ? " or PROMETHEUS" : "");
		return -1;
	}
	for (i = wl; i < len; ) {
		if (line[i] != ' ' || i + 1 >= len || line[i + 1] == ' ') {
			snprintf(err, errlen, "arguments must be separated by single spaces");
			return -1;
		}
		start = ++i;
		while (i < len && line[i] != ' ')
			i++;
		if (!ctl_id_valid(line + start, i - start)) {
			snprintf(err, errlen, "\"%.*s\" is not a queue id (16 hexadecimal digits)",
			    (int)(i - start > 40 ? 40 : i - start), line + start);
			return -1;
		}
		if (req->nids >= CTL_ARGS_MAX) {
			snprintf(err, errlen, "more than %d queue ids in one request", CTL_ARGS_MAX);
			return -1;
		}
		memcpy(req->ids[req->nids], line + start, CTL_ID_LEN);
		req->ids[req->nids][CTL_ID_LEN] = '\0';
		req->nids++;
	}
	if (req->verb == CTL_SHOW && req->nids != 1) {
		snprintf(err, errlen, "SHOW takes one queue id (and BODY)");
		return -1;
	}
	if (req->verb != CTL_FLUSH && req->nids == 0) {
		snprintf(err, errlen, "%s needs at least one queue id%s", verbs[req->verb],
		    req->verb == CTL_DELETE ? " (or ALL)" : "");
		return -1;
	}
	return 0;
}

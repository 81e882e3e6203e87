/*
 * qjson: see qjson.h.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "qjson.h"

json_object *
qjson_time(time_t t)
{
	struct tm tm;
	char buf[64];

	if (t == 0)
		return NULL;
	gmtime_r(&t, &tm);
	strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_object_new_string(buf);
}

json_object *
qjson_str(const char *s)
{
	return s != NULL ? json_object_new_string(s) : NULL;
}

json_object *
qjson_msg(const struct spool_env *e)
{
	json_object *m = json_object_new_object(), *rs = json_object_new_array();

	json_object_object_add(m, "id", json_object_new_string(e->id));
	json_object_object_add(m, "arrival", qjson_time(e->arrival));
	json_object_object_add(m, "size", json_object_new_uint64(e->size));
	json_object_object_add(m, "sender", json_object_new_string(e->sender));
	/* a damaged message is held */
	json_object_object_add(m, "held", json_object_new_boolean(e->held || e->damaged));
	json_object_object_add(m, "damaged", e->damaged ? json_object_new_string(e->damaged) : NULL);
	for (size_t i = 0; i < e->nrcpt; i++) {
		const struct spool_rcpt *r = &e->rcpts[i];
		json_object *o = json_object_new_object();
		json_object_object_add(o, "address", json_object_new_string(r->addr));
		json_object_object_add(o, "orig", json_object_new_string(r->orig ? r->orig : r->addr));
		json_object_object_add(o, "status", json_object_new_string(rcpt_status_name(r->status)));
		json_object_object_add(o, "attempts", json_object_new_int64(r->attempts));
		json_object_object_add(o, "last_reply", json_object_new_string(r->last_reply ? r->last_reply : ""));
		json_object_object_add(o, "next_attempt",
		    r->status == RCPT_PENDING && r->next_attempt > 0 ? qjson_time(r->next_attempt) : NULL);
		json_object_array_add(rs, o);
	}
	json_object_object_add(m, "recipients", rs);
	return m;
}

void
qjson_print(FILE *out, json_object *o)
{
	fprintf(out, "%s\n", json_object_to_json_string_ext(o, QJSON_FLAGS));
	json_object_put(o);
}

/* The array is streamed: "[", one message a line, "]". */
static void
list_begin(struct qformat *f)
{
	fputc('[', f->out);
}

static void
list_one(struct qformat *f, const struct spool_env *e)
{
	json_object *m = qjson_msg(e);

	fprintf(f->out, "%s\n  %s", f->count ? "," : "", json_object_to_json_string_ext(m, QJSON_FLAGS));
	json_object_put(m);
}

static void
list_end(struct qformat *f)
{
	fprintf(f->out, "%s]\n", f->count ? "\n" : "");
}

const struct qformat_json qjson_list = { list_begin, list_one, list_end };

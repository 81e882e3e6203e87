/*
 * mailrelay: the admin CLI.  This release: check-config [--show], queue,
 * flush, hold, release, delete, status, show, oauth2 (oauth2cli.c), version.  Commands that change the queue talk to the daemon over the
 * control socket (lib/ctlproto.h); read-only ones read the spool directly.
 */
#include "config.h"

#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include "conf/conf.h"
#include "cfgshow.h"
#include "oauth2cli.h"
#include "ctlclient.h"
#include "ctlproto.h"
#include "log.h"
#include "qprint.h"
#include "daemon/oauth2_proto.h"
#include "spool/qjson.h"

static void
usage(void)
{
	fprintf(stderr,
	    "usage: mailrelay [-c FILE] COMMAND [ARGS]\n"
	    "commands:\n"
	    "  check-config [-c FILE] [--show]  parse and check the configuration\n"
	    "  queue [--json]           list the queue\n"
	    "  status [--json|--prometheus]  is the daemon up; queue, counters, smarthosts\n"
	    "  show ID [--body]         one message: envelope, attempts, header (body)\n"
	    "  flush [ID...]            retry every message (or these) now\n"
	    "  hold ID...               keep messages from delivery\n"
	    "  release ID...            let held messages go, now\n"
	    "  delete ID... | --all     remove messages unsent\n"
	    "  oauth2 token --smarthost NAME      the OAuth2 token's expiry, scopes, audience\n"
	    "  oauth2 authorize --smarthost NAME  obtain the first refresh token\n"
	    "  version                  print the version\n");
	exit(EX_USAGE);
}

static struct config *
load(const char *path)
{
	char err[1024];
	struct config *c = conf_load(path, err, sizeof err);

	if (c == NULL) {
		fprintf(stderr, "mailrelay: %s\n", err);
		exit(EX_CONFIG);
	}
	return c;
}

static int
cmd_check_config(const char *path, int argc, char **argv)
{
	struct config *c;
	int i, show = 0;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
			path = argv[++i];
		else if (strcmp(argv[i], "--show") == 0)
			show = 1;
		else
			usage();
	}
	c = load(path);
	if (show)
		cfgshow_print(stdout, c);
	printf("%s: OK", c->path ? c->path : "built-in defaults");
	if (c->nsmarthosts == 0)
		printf(" (warning: no smarthost: mail will be accepted and kept in the queue)");
	if (conf_hostname_dotless(c))
		printf(" (warning: hostname \"%s\" has no dot: set hostname in the configuration "
		    "or write the mail name to /etc/mailname)", c->hostname);
	printf("\n");
	conf_free(c);
	return 0;
}

static void
print_data(const char *line, void *arg)
{
	(void)arg;
	printf("%s\n", line);
}

/* A queue id from the command line, upper-cased into id; -1 (said on stderr) when it is not one. */
static int
parse_id(const char *cmd, const char *arg, char id[CTL_ID_LEN + 1])
{
	size_t n = strlen(arg);

	for (size_t k = 0; k < n && k < CTL_ID_LEN; k++)
		id[k] = (char)toupper((unsigned char)arg[k]);
	id[n < CTL_ID_LEN ? n : CTL_ID_LEN] = '\0';
	if (n != CTL_ID_LEN || !ctl_id_valid(id, n)) {
		fprintf(stderr, "mailrelay: %s: \"%.40s\" is not a queue id (16 hexadecimal digits)\n", cmd, arg);
		return -1;
	}
	return 0;
}

/*
 * mailrelay flush [ID...], hold ID..., release ID..., delete ID...|--all:
 * ids are checked here, so a bad one never reaches the daemon.
 */
static int
cmd_queue_change(const char *path, const char *verb, int argc, char **argv)
{
	char req[CTL_LINE_MAX], final[1024], err[1024];
	const char *cmd = argv[0];
	size_t off;
	int i, rc;

	off = (size_t)snprintf(req, sizeof req, "%s", verb);
	if (strcmp(verb, "DELETE") == 0 && argc == 2 && strcmp(argv[1], "--all") == 0) {
		snprintf(req + off, sizeof req - off, " ALL");
		argc = 1;
	} else if (strcmp(verb, "FLUSH") != 0 && argc < 2) {
		fprintf(stderr, "mailrelay: %s: give one or more queue ids%s\n", cmd,
		    strcmp(verb, "DELETE") == 0 ? ", or --all" : "");
		return EX_USAGE;
	}
	for (i = 1; i < argc; i++) {
		char id[CTL_ID_LEN + 1];
		if (parse_id(cmd, argv[i], id) == -1)
			return EX_USAGE;
		if (i > CTL_ARGS_MAX || off + 1 + CTL_ID_LEN >= sizeof req) {
			fprintf(stderr, "mailrelay: %s: at most %d ids at a time\n", cmd, CTL_ARGS_MAX);
			return EX_USAGE;
		}
		off += (size_t)snprintf(req + off, sizeof req - off, " %s", id);
	}
	struct config *c = load(path);
	rc = ctl_request(c->control_socket, req, print_data, NULL, final, sizeof final, err, sizeof err);
	conf_free(c);
	if (rc == -1) {
		fprintf(stderr, "mailrelay: %s: %s; is mailrelayd running?\n", cmd, err);
		return EX_UNAVAILABLE;
	}
	if (rc != 0) {
		fprintf(stderr, "mailrelay: %s: %s\n", cmd, final);
		return rc;
	}
	printf("%s\n", final);
	return 0;
}

/*
 * With the daemon down: the needs-authorisation sentence it left in the
 * spool for smarthost sh (daemon/oauth2.c), or NULL.
 */
static char *
offline_needs_authorisation(const struct config *c, const struct smarthost_conf *sh)
{
	time_t since;

	if (sh->oauth2 == NULL)
		return NULL;
	return oauth2_state_read(c->spool_dir, sh->name, &since);
}

/*
 * mailrelay status [--json|--prometheus]: the daemon's own account over the
 * control socket; when it cannot be reached, what the spool holds, saying
 * so, with any smarthost the daemon left needing authorisation, and exit
 * 69 (for monitoring).  --prometheus prints the daemon's
 * metrics (daemon/metrics.h) and, with the daemon down, nothing.
 */
static int
cmd_status(const char *path, int argc, char **argv)
{
	char final[1024], err[1024], qerr[512];
	struct queue_summary q;
	int json = 0, rc;

	if (argc == 2 && strcmp(argv[1], "--json") == 0)
		json = 1;
	else if (argc == 2 && strcmp(argv[1], "--prometheus") == 0)
		json = 2;
	else if (argc != 1)
		usage();
	struct config *c = load(path);
	rc = ctl_request(c->control_socket, json == 2 ? "STATUS PROMETHEUS" : json ? "STATUS JSON" : "STATUS",
	    print_data, NULL,
	    final, sizeof final, err, sizeof err);
	if (rc == 0 || rc > 0) {
		conf_free(c);
		if (rc > 0)
			fprintf(stderr, "mailrelay: status: %s\n", final);
		return rc;
	}
	int qrc = queue_summarize(c, &q, qerr, sizeof qerr);
	time_t now = time(NULL);
	if (json == 2) {
		/*
		 * The daemon is down: no counters, and nothing on stdout, so a
		 * textfile collector's `... > file.$$ && mv` keeps no stale
		 * figures and node_exporter's scrape error shows the outage.
		 */
		fprintf(stderr, "mailrelay: status: mailrelayd is not running (%s)\n", err);
		conf_free(c);
		return EX_UNAVAILABLE;
	}
	if (json) {
		json_object *o = json_object_new_object(), *sa = json_object_new_array();
		json_object_object_add(o, "running", json_object_new_boolean(0));
		json_object_object_add(o, "error", json_object_new_string(err));
		if (qrc == 0) {
			json_object *jq = json_object_new_object();
			json_object_object_add(jq, "messages", json_object_new_int64((int64_t)q.messages));
			json_object_object_add(jq, "held", json_object_new_int64((int64_t)q.held));
			json_object_object_add(jq, "damaged", json_object_new_int64((int64_t)q.damaged));
			json_object_object_add(jq, "oldest_age",
			    q.oldest ? json_object_new_int64((int64_t)(now - q.oldest)) : NULL);
			json_object_object_add(o, "queue", jq);
		}
		for (size_t i = 0; i < c->nsmarthosts; i++) {
			const struct smarthost_conf *sh = &c->smarthosts[i];
			json_object *js = json_object_new_object();
			char *why = offline_needs_authorisation(c, sh);
			json_object_object_add(js, "name", json_object_new_string(sh->name));
			json_object_object_add(js, "host", json_object_new_string(sh->host));
			json_object_object_add(js, "port", json_object_new_int(sh->port));
			json_object_object_add(js, "needs_authorisation", qjson_str(why));
			json_object_array_add(sa, js);
			free(why);
		}
		json_object_object_add(o, "smarthosts", sa);
		qjson_print(stdout, o);
	} else {
		printf("mailrelayd is not running (%s)\n", err);
		if (qrc == 0)
			printf("queue (read from %s): %zu message(s), %zu held, %zu damaged\n", c->spool_dir,
			    q.messages, q.held, q.damaged);
		else
			printf("queue: cannot be read: %s\n", qerr);
		for (size_t i = 0; i < c->nsmarthosts; i++) {
			char *why = offline_needs_authorisation(c, &c->smarthosts[i]);
			if (why != NULL)
				printf("%s\n", why);
			free(why);
		}
	}
	conf_free(c);
	return EX_UNAVAILABLE;
}

/* mailrelay show ID [--body]: from the daemon, or from the spool when it is down. */
static int
cmd_show(const char *path, int argc, char **argv)
{
	char req[128], final[1024], err[1024], id[CTL_ID_LEN + 1];
	int body = 0, rc;

	if (argc == 3 && strcmp(argv[2], "--body") == 0)
		body = 1;
	else if (argc != 2)
		usage();
	if (parse_id("show", argv[1], id) == -1)
		return EX_USAGE;
	struct config *c = load(path);
	snprintf(req, sizeof req, "SHOW %s%s", id, body ? " BODY" : "");
	rc = ctl_request(c->control_socket, req, print_data, NULL, final, sizeof final, err, sizeof err);
	if (rc >= 0) {
		conf_free(c);
		if (rc > 0)
			fprintf(stderr, "mailrelay: show: %s\n", final);
		return rc;
	}
	/* the daemon is down: the spool itself */
	fprintf(stderr, "mailrelay: mailrelayd is not running; %s is read from %s\n", id, c->spool_dir);
	rc = show_offline("mailrelay", c, id, body);
	conf_free(c);
	return rc;
}

int
main(int argc, char **argv)
{
	const char *path = NULL;
	int ch, rc;

	log_init("mailrelay", LOG_TO_STDERR, LOG_WARNING);
	while ((ch = getopt(argc, argv, "+c:h")) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		usage();
	if (strcmp(argv[0], "check-config") == 0)
		return cmd_check_config(path, argc, argv);
	if (strcmp(argv[0], "version") == 0 || strcmp(argv[0], "--version") == 0) {
		printf("mailrelay %s\n", PACKAGE_VERSION);
		return 0;
	}
	if (strcmp(argv[0], "status") == 0)
		return cmd_status(path, argc, argv);
	if (strcmp(argv[0], "oauth2") == 0)
		return cmd_oauth2(path, argc, argv);
	if (strcmp(argv[0], "show") == 0)
		return cmd_show(path, argc, argv);
	if (strcmp(argv[0], "flush") == 0)
		return cmd_queue_change(path, "FLUSH", argc, argv);
	if (strcmp(argv[0], "hold") == 0)
		return cmd_queue_change(path, "HOLD", argc, argv);
	if (strcmp(argv[0], "release") == 0)
		return cmd_queue_change(path, "RELEASE", argc, argv);
	if (strcmp(argv[0], "delete") == 0)
		return cmd_queue_change(path, "DELETE", argc, argv);
	if (strcmp(argv[0], "queue") == 0) {
		int json = 0;
		if (argc == 2 && strcmp(argv[1], "--json") == 0)
			json = 1;
		else if (argc != 1)
			usage();
		struct config *c = load(path);
		rc = queue_list("mailrelay", c, json ? &qjson_list : NULL);
		conf_free(c);
		return rc;
	}
	fprintf(stderr, "mailrelay: unknown command \"%s\"\n", argv[0]);
	usage();
	return EX_USAGE;
}

/*
 * mailrelay: the admin CLI.  This release: check-config [--show]
 * (cfgcheck.c), queue, flush, hold, release, delete, status, show, oauth2
 * (oauth2cli.c), version; --help before or after any command (the
 * `commands` table below).  Commands that change the queue talk to the
 * daemon over the control socket (lib/ctlproto.h); read-only ones read
 * the spool directly.
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
#include "cfgcheck.h"
#include "cfgshow.h"
#include "oauth2cli.h"
#include "ctlclient.h"
#include "ctlproto.h"
#include "log.h"
#include "mtest.h"
#include "qprint.h"
#include "daemon/oauth2_proto.h"
#include "daemon/oauth2_state.h"
#include "spool/qjson.h"

/*
 * The commands, their arguments and their help: `mailrelay --help` lists
 * them, `mailrelay COMMAND --help` prints one, and main() checks every
 * option given to a command against its list before the command runs, so
 * that a mistyped flag is one line saying what was expected (exit 64)
 * whatever the command.  IDs and names never start with '-'.
 */
struct command {
	const char *name;
	const char *args;	/* the synopsis after the command's name */
	const char *summary;	/* one line for the list */
	const char *flags;	/* accepted options, space-separated; "=" after one: takes a value */
	const char *help;	/* what COMMAND --help adds: the arguments, one per line */
};

static const struct command commands[] = {
	{ "check-config", "[-c FILE] [--show]", "check the configuration as the daemon loads it",
	  "-c= --show",
	  "  -c FILE   the configuration to check (also before the command)\n"
	  "  --show    first print the effective configuration, with where each value came from\n"
	  "Errors (FILE:LINE: KEY: why) go to stderr and exit 78; warnings go to stdout.\n"
	  "Checked without sending: every value, secret files and their modes, CA files,\n"
	  "certificates and keys (expiry, key matching), files the daemon's user must read,\n"
	  "placeholder hosts, DNS, weakened TLS or AUTH, unquoted '#' or ';' in values.\n" },
	{ "queue", "[--json]", "list the queue",
	  "--json",
	  "  --json    one JSON array, for programs\n" },
	{ "status", "[--json|--prometheus]", "is the daemon up; queue, counters, smarthosts",
	  "--json --prometheus",
	  "  --json        the same as one JSON object\n"
	  "  --prometheus  the daemon's metrics in the Prometheus text format\n"
	  "Exit 69 when mailrelayd is not running.\n" },
	{ "show", "ID [--body]", "one message: envelope, attempts, header (body)",
	  "--body",
	  "  ID        a queue id, 16 hexadecimal digits (mailrelay queue lists them)\n"
	  "  --body    print the body too\n" },
	{ "flush", "[ID...]", "retry every message (or these) now", "",
	  "  ID...     only these messages; without, every message\n" },
	{ "hold", "ID...", "keep messages from delivery", "",
	  "  ID...     queue ids; release lets them go again\n" },
	{ "release", "ID...", "let held messages go, now", "",
	  "  ID...     queue ids of held messages\n" },
	{ "delete", "ID... | --all", "remove messages unsent", "--all",
	  "  ID...     queue ids\n"
	  "  --all     every message in the queue\n" },
	{ "oauth2", "token|authorize --smarthost NAME", "the OAuth2 token; obtain the first refresh token",
	  "--smarthost=",
	  "  token      the current token's expiry, scopes and audience (never the token)\n"
	  "  authorize  obtain the first refresh token (device code, or a browser with PKCE)\n"
	  "  --smarthost NAME  the smarthost section with the oauth2 settings\n" },
	{ "test", "--to ADDR [--from ADDR] [--smarthost NAME] [--json] | --probe",
	  "send a test message now and show each step; or probe up to AUTH",
	  "--to= --from= --smarthost= --json --probe",
	  "  --to ADDR         the recipient of the test message\n"
	  "  --from ADDR       its sender (default: from_address, else the username if it is an\n"
	  "                    address, else root@hostname)\n"
	  "  --smarthost NAME  the smarthost to test (default: the one the sender is routed to;\n"
	  "                    with --probe: every one)\n"
	  "  --probe           greeting, EHLO, TLS and AUTH only: nothing is sent\n"
	  "  --json            the steps and the result as JSON\n"
	  "Exit 0 when the smarthost accepted the message (or, with --probe, is ready for mail);\n"
	  "otherwise 68 (no such host), 69 (refused or unreachable), 75 (try later),\n"
	  "76 (protocol), 77 (credentials), 78 (configuration).\n" },
	{ "version", "", "print the version", "", "" },
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

static const struct command *current;	/* the command being run, for usage() */

static const struct command *
command_find(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

/* mailrelay --help (stdout, exit 0), or the same list after a usage error (stderr, exit 64). */
static void
help_all(FILE *fp)
{
	fprintf(fp, "usage: mailrelay [-c FILE] COMMAND [ARGS]\n"
	    "       mailrelay COMMAND --help\n"
	    "  -c FILE    the configuration (default: $MAILRELAY_CONFIG, else %s)\n"
	    "commands:\n", CONF_DEFAULT_PATH);
	for (size_t i = 0; i < NCOMMANDS; i++) {
		char syn[96];
		snprintf(syn, sizeof syn, "%s %s", commands[i].name, commands[i].args);
		fprintf(fp, "  %-40s %s\n", syn, commands[i].summary);
	}
	fprintf(fp, "See mailrelay(8).\n");
}

static void
help_command(const struct command *cmd)
{
	printf("usage: mailrelay [-c FILE] %s%s%s\n%s.\n%s", cmd->name, *cmd->args ? " " : "",
	    cmd->args, cmd->summary, cmd->help);
	printf("See mailrelay(8).\n");
}

/*
 * A usage error: one line on stderr, exit 64.  Inside a command it gives
 * the command's synopsis; without one, the whole list.
 */
static void
usage(void)
{
	if (current == NULL) {
		help_all(stderr);
		exit(EX_USAGE);
	}
	fprintf(stderr, "mailrelay: %s: usage: mailrelay [-c FILE] %s%s%s (mailrelay %s --help)\n",
	    current->name, current->name, *current->args ? " " : "", current->args, current->name);
	exit(EX_USAGE);
}

/* Is opt in the space-separated list; *value set when it takes one. */
static int
flag_known(const char *flags, const char *opt, int *value)
{
	size_t n = strlen(opt);

	for (const char *p = flags; *p; ) {
		size_t len = strcspn(p, " ");
		int v = len > 0 && p[len - 1] == '=';
		if (len - (size_t)v == n && strncmp(p, opt, n) == 0) {
			*value = v;
			return 1;
		}
		p += len;
		p += strspn(p, " ");
	}
	return 0;
}

/*
 * Before a command runs: --help (or -h) anywhere prints its help and
 * exits 0; an option it does not take is one line naming what it takes.
 */
static void
command_options(const struct command *cmd, int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			help_command(cmd);
			exit(0);
		}
	}
	for (int i = 1; i < argc; i++) {
		int value = 0;

		if (argv[i][0] != '-')
			continue;
		if (flag_known(cmd->flags, argv[i], &value)) {
			i += value;
			continue;
		}
		char expected[128] = "";
		for (const char *p = cmd->flags; *p; ) {
			size_t len = strcspn(p, " ");
			size_t v = len > 0 && p[len - 1] == '=';
			snprintf(expected + strlen(expected), sizeof expected - strlen(expected), "%s%.*s",
			    expected[0] ? ", " : "", (int)(len - v), p);
			p += len;
			p += strspn(p, " ");
		}
		fprintf(stderr, "mailrelay: %s: unknown option \"%.40s\": %s%s (mailrelay %s --help)\n",
		    cmd->name, argv[i], expected[0] ? "expected " : "it takes no option",
		    expected, cmd->name);
		exit(EX_USAGE);
	}
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
	fflush(stdout);
	return cfgcheck_run(c);
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
	opterr = 0;	/* the one line below says what went wrong, and what was expected */
	while ((ch = getopt(argc, argv, "+c:h-:")) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'h':
			help_all(stdout);
			return 0;
		case '-':	/* --help, --version */
			if (strcmp(optarg, "help") == 0) {
				help_all(stdout);
				return 0;
			}
			if (strcmp(optarg, "version") == 0) {
				printf("mailrelay %s\n", PACKAGE_VERSION);
				return 0;
			}
			fprintf(stderr, "mailrelay: unknown option \"--%.40s\": expected -c FILE, --help "
			    "or --version before the command (mailrelay --help)\n", optarg);
			return EX_USAGE;
		default:
			if (optopt == 'c')
				fprintf(stderr, "mailrelay: -c needs a file name (mailrelay --help)\n");
			else
				fprintf(stderr, "mailrelay: unknown option \"-%c\": expected -c FILE, --help "
				    "or --version before the command (mailrelay --help)\n", optopt);
			return EX_USAGE;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		usage();
	if ((current = command_find(argv[0])) == NULL) {
		char names[256] = "";
		for (size_t i = 0; i < NCOMMANDS; i++)
			snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s",
			    i ? ", " : "", commands[i].name);
		fprintf(stderr, "mailrelay: unknown command \"%.40s\": expected one of %s "
		    "(mailrelay --help)\n", argv[0], names);
		return EX_USAGE;
	}
	command_options(current, argc, argv);
	if (strcmp(argv[0], "check-config") == 0)
		return cmd_check_config(path, argc, argv);
	if (strcmp(argv[0], "version") == 0) {
		if (argc != 1)
			usage();
		printf("mailrelay %s\n", PACKAGE_VERSION);
		return 0;
	}
	if (strcmp(argv[0], "status") == 0)
		return cmd_status(path, argc, argv);
	if (strcmp(argv[0], "test") == 0)
		return cmd_test(path, argc, argv);
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
	usage();	/* a command of the table without a branch above */
	return EX_USAGE;
}

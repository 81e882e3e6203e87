/*
 * cfgshow: see cfgshow.h.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "cfgshow.h"

/* Where a value came from: the file's line, the preset, or a default. */
static void
origin(FILE *fp, const struct config *c, const struct smarthost_conf *sh, const char *key,
    const char *filled_by)
{
	unsigned line = conf_key_line(c, sh, key);

	if (line > 0)
		fprintf(fp, "\t# line %u\n", line);
	else
		fprintf(fp, "\t# %s\n", filled_by);
}

static void
str(FILE *fp, const struct config *c, const struct smarthost_conf *sh, const char *indent,
    const char *key, const char *value, const char *filled_by)
{
	if (value == NULL)
		return;
	fprintf(fp, "%s%s = \"%s\"", indent, key, value);
	origin(fp, c, sh, key, filled_by);
}

static void
print_oauth2(FILE *fp, const struct config *c, const struct smarthost_conf *sh)
{
	const struct oauth2_conf *o = sh->oauth2;
	char prov[64];

	snprintf(prov, sizeof prov, "default of provider %s", conf_oauth2_provider_name(o->provider));
	fprintf(fp, "\toauth2 {\n");
	fprintf(fp, "\t\tprovider = %s", conf_oauth2_provider_name(o->provider));
	origin(fp, c, sh, "provider", sh->preset ? "from the preset" : "default");
	str(fp, c, sh, "\t\t", "tenant", o->tenant, "");
	str(fp, c, sh, "\t\t", "client_id", o->client_id, "");
	str(fp, c, sh, "\t\t", "client_secret_file", o->client_secret_file, "");
	str(fp, c, sh, "\t\t", "client_certificate", o->client_certificate, "");
	str(fp, c, sh, "\t\t", "client_key", o->client_key, "");
	str(fp, c, sh, "\t\t", "refresh_token_file", o->refresh_token_file, "");
	fprintf(fp, "\t\tgrant = %s", conf_oauth2_grant_name(o->grant));
	origin(fp, c, sh, "grant", "default");
	str(fp, c, sh, "\t\t", "scope", o->scope, prov);
	str(fp, c, sh, "\t\t", "token_url", o->token_url, prov);
	str(fp, c, sh, "\t\t", "device_url", o->device_url, prov);
	str(fp, c, sh, "\t\t", "authorize_url", o->authorize_url, prov);
	fprintf(fp, "\t}\n");
}

static void
print_smarthost(FILE *fp, const struct config *c, const struct smarthost_conf *sh)
{
	const char *filled = sh->preset ? "from the preset" : "default";
	char preset[64];

	snprintf(preset, sizeof preset, "from preset %s", conf_preset_name(sh->preset));
	if (sh->preset)
		filled = preset;
	fprintf(fp, "smarthost %s {\n", sh->name);
	if (sh->preset)
		fprintf(fp, "\tpreset = %s\t# line %u\n", conf_preset_name(sh->preset),
		    conf_key_line(c, sh, "preset"));
	str(fp, c, sh, "\t", "host", sh->host, filled);
	fprintf(fp, "\tport = %u", sh->port);
	origin(fp, c, sh, "port", filled);
	fprintf(fp, "\ttls = %s", conf_tls_mode_name(sh->tls));
	origin(fp, c, sh, "tls", filled);
	fprintf(fp, "\tauth = %s", conf_auth_name(sh->auth));
	origin(fp, c, sh, "auth", filled);
	str(fp, c, sh, "\t", "username", sh->username, "");
	if (sh->password != NULL)
		fprintf(fp, "\tpassword = (set, not shown)\t# line %u\n", conf_key_line(c, sh, "password"));
	str(fp, c, sh, "\t", "password_file", sh->password_file, "");
	if (sh->password_command != NULL)
		fprintf(fp, "\tpassword_command = (set, not shown)\t# line %u\n",
		    conf_key_line(c, sh, "password_command"));
	str(fp, c, sh, "\t", "tls_ca_file", sh->tls_ca_file, "");
	str(fp, c, sh, "\t", "tls_ca_path", sh->tls_ca_path, "");
	if (sh->proxy_host != NULL)
		fprintf(fp, "\tproxy = \"socks5://%s:%s\"\t# line %u\n", sh->proxy_host, sh->proxy_port,
		    conf_key_line(c, sh, "proxy"));
	if (sh->oauth2 != NULL)
		print_oauth2(fp, c, sh);
	fprintf(fp, "}\n");
}

void
cfgshow_print(FILE *fp, const struct config *c)
{
	fprintf(fp, "# effective configuration of %s\n", c->path ? c->path : "built-in defaults");
	fprintf(fp, "hostname = \"%s\"\n", c->hostname);
	fprintf(fp, "spool_dir = \"%s\"\n", c->spool_dir);
	fprintf(fp, "user = \"%s\"\n", c->user);
	fprintf(fp, "control_socket = \"%s\"\n", c->control_socket);
	for (size_t i = 0; i < c->nsmarthosts; i++)
		print_smarthost(fp, c, &c->smarthosts[i]);
	for (size_t i = 0; i < c->nroutes; i++)
		fprintf(fp, "route {\n\tfrom = \"%s\"\n\tsmarthost = %s\n}\n", c->routes[i].from,
		    c->routes[i].smarthost);
}

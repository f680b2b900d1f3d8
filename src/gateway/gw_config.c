/*
 * gw_config — reads lazaret-gw.conf into struct gw_config: the table of keys with
 * their types, defaults and limits, the [hat] policy.NAME family (through
 * confparse's extra-key handler, kept in file order), and the checks that span
 * keys (thresholds, TLS pairs, which quarantine spam goes to).
 *
 * Not for: applying a configuration to running services (lazaret_gw.c loads a new
 * struct on SIGHUP and swaps it in whole, or keeps the old one).
 */
#include "gateway/gw_config.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/confparse.h"
#include "common/xalloc.h"
#include "gateway/rat.h"
#include "store/store.h"
#include "http/http_config_keys.h"
#include "smtp/smtp_listener_keys.h"

#define KIB (UINT64_C(1024))
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)
#define SEC (UINT64_C(1000))

/* Pipeline threads: each holds one message while it is scanned and relayed. */
#define GW_MAX_WORKERS 1024
/* HAT policies in one file: matched linearly for every connection. */
#define GW_MAX_HAT_POLICIES 1000

#define OFF(field) offsetof(struct gw_config, field)

static const struct confparse_key gw_config_keys[] = {
    {.section = "gateway",
     .name = "name",
     .type = CONFPARSE_HOSTNAME,
     .offset = OFF(name),
     .default_text = "lazaret-gw"},
    {.section = "gateway",
     .name = "data_dir",
     .type = CONFPARSE_PATH,
     .offset = OFF(data_dir),
     .default_text = "var"},
    {.section = "gateway",
     .name = "user",
     .type = CONFPARSE_STRING,
     .offset = OFF(user),
     .default_text = "lazaret"},
    {.section = "gateway",
     .name = "log_level",
     .type = CONFPARSE_CHOICE,
     .offset = OFF(log_level),
     .default_text = "info",
     .choices = "error|warn|info|debug"},
    {.section = "gateway", .name = "hostname", .type = CONFPARSE_HOSTNAME, .offset = OFF(hostname)},
    {.section = "gateway",
     .name = "workers",
     .type = CONFPARSE_UINT,
     .offset = OFF(workers),
     .default_text = "64",
     .min = 1,
     .max = GW_MAX_WORKERS},
    {.section = "gateway",
     .name = "shutdown_grace",
     .type = CONFPARSE_DURATION,
     .offset = OFF(shutdown_grace_ms),
     .default_text = "30s"},
    /* what the gateway tells the manager it belongs to (its hello) */
    {.section = "gateway", .name = "group", .type = CONFPARSE_STRING, .offset = OFF(group)},
    {.section = "gateway", .name = "cluster", .type = CONFPARSE_STRING, .offset = OFF(cluster)},

    {.section = "listener",
     .name = "xforward_from",
     .type = CONFPARSE_ACL,
     .offset = OFF(xforward_from),
     .flags = CONFPARSE_KEEP_TEXT,
     .text_offset = OFF(xforward_from_text)},

    {.section = "hat",
     .name = "default",
     .type = CONFPARSE_STRING,
     .offset = OFF(hat_default),
     .default_text = "accept"},

    {.section = "rat",
     .name = "accept",
     .type = CONFPARSE_STRING,
     .offset = OFF(rat_accept),
     .flags = CONFPARSE_REQUIRED},

    {.section = "delivery",
     .name = "next_hop",
     .type = CONFPARSE_HOSTPORT,
     .offset = OFF(next_hop),
     .default_text = "127.0.0.1:10026"},
    {.section = "delivery",
     .name = "timeout",
     .type = CONFPARSE_DURATION,
     .offset = OFF(delivery_timeout_ms),
     .default_text = "60s",
     .min = SEC},
    {.section = "delivery",
     .name = "source_address",
     .type = CONFPARSE_ADDRESS,
     .offset = OFF(source_address)},

    {.section = "manager",
     .name = "addresses",
     .type = CONFPARSE_ACL,
     .offset = OFF(manager_addresses),
     .flags = CONFPARSE_KEEP_TEXT,
     .text_offset = OFF(manager_addresses_text)},
    {.section = "manager", .name = "api_url", .type = CONFPARSE_STRING, .offset = OFF(api_url)},
    {.section = "manager", .name = "api_token", .type = CONFPARSE_STRING, .offset = OFF(api_token)},
    {.section = "manager", .name = "api_ca", .type = CONFPARSE_PATH, .offset = OFF(api_ca)},
    {.section = "manager",
     .name = "hello_interval",
     .type = CONFPARSE_DURATION,
     .offset = OFF(hello_interval_ms),
     .default_text = "5m",
     .min = SEC},
    /* the manager's levels decide the centralization settings (gw_managed.c) */
    {.section = "manager",
     .name = "managed",
     .type = CONFPARSE_BOOL,
     .offset = OFF(managed),
     .default_text = "no"},
    {.section = "manager",
     .name = "sync_interval",
     .type = CONFPARSE_DURATION,
     .offset = OFF(managed_sync_interval_ms),
     .default_text = "5m",
     .min = SEC},

    /* [events] and [tracking]: the event spool and what is recorded (gw_events.c) */
    {.section = "events",
     .name = "spool_max",
     .type = CONFPARSE_SIZE,
     .offset = OFF(events_spool_max),
     .default_text = "2G",
     .min = MIB},
    {.section = "events",
     .name = "sync",
     .type = CONFPARSE_CHOICE,
     .offset = OFF(events_sync),
     .default_text = "group",
     .choices = "group|each"},
    {.section = "tracking",
     .name = "mode",
     .type = CONFPARSE_CHOICE,
     .offset = OFF(tracking_mode),
     .default_text = "local",
     .choices = "local|central|off"},
    {.section = "tracking",
     .name = "rejected_connections",
     .type = CONFPARSE_BOOL,
     .offset = OFF(tracking_rejected_connections),
     .default_text = "no"},
    {.section = "tracking",
     .name = "retention",
     .type = CONFPARSE_DURATION,
     .offset = OFF(tracking_retention_ms),
     .default_text = "30d",
     .min = 3600 * SEC},
    {.section = "reporting",
     .name = "mode",
     .type = CONFPARSE_CHOICE,
     .offset = OFF(reporting_mode),
     .default_text = "local",
     .choices = "local|central"},
    {.section = "reporting",
     .name = "backfill",
     .type = CONFPARSE_BOOL,
     .offset = OFF(reporting_backfill),
     .default_text = "no"},
    {.section = "reporting",
     .name = "capacity_interval",
     .type = CONFPARSE_DURATION,
     .offset = OFF(capacity_interval_ms),
     .default_text = "1m",
     .min = SEC},

    {.section = "antispam",
     .name = "engine",
     .type = CONFPARSE_CHOICE,
     .offset = OFF(antispam_engine),
     .default_text = "builtin",
     .choices = "builtin|spamd|rspamd|none"},
    {.section = "antispam",
     .name = "spamd",
     .type = CONFPARSE_STRING,
     .offset = OFF(spamd),
     .default_text = "127.0.0.1:783"},
    /*
     * A string as spamd and clamd are, not CONFPARSE_HOSTPORT: the rspamd client also
     * takes a unix socket path (rspamd's bind_socket = "/path"), and a host:port type
     * refused every path with "needs a port".
     */
    {.section = "antispam",
     .name = "rspamd",
     .type = CONFPARSE_STRING,
     .offset = OFF(rspamd),
     .default_text = "127.0.0.1:11333"},
    {.section = "antispam", .name = "rules", .type = CONFPARSE_PATH, .offset = OFF(antispam_rules)},
    {.section = "antispam",
     .name = "positive_threshold",
     .type = CONFPARSE_DOUBLE,
     .offset = OFF(positive_threshold),
     .default_text = "5.0"},
    {.section = "antispam",
     .name = "suspect_threshold",
     .type = CONFPARSE_DOUBLE,
     .offset = OFF(suspect_threshold),
     .default_text = "3.0"},
    {.section = "antispam",
     .name = "positive_action",
     .type = CONFPARSE_CHOICE,
     .offset = OFF(positive_action),
     .default_text = "quarantine",
     .choices = "deliver|tag|drop|bounce|quarantine"},
    {.section = "antispam",
     .name = "suspect_action",
     .type = CONFPARSE_CHOICE,
     .offset = OFF(suspect_action),
     .default_text = "tag",
     .choices = "deliver|tag|drop|bounce|quarantine"},
    {.section = "antispam",
     .name = "tag",
     .type = CONFPARSE_STRING,
     .offset = OFF(tag),
     .default_text = "[SUSPECTED SPAM]"},
    {.section = "antispam",
     .name = "alternate_host",
     .type = CONFPARSE_HOSTPORT,
     .offset = OFF(alternate_host)},
    {.section = "antispam",
     .name = "timeout",
     .type = CONFPARSE_DURATION,
     .offset = OFF(antispam_timeout_ms),
     .default_text = "30s",
     .min = SEC},
    {.section = "antispam",
     .name = "on_failure",
     .type = CONFPARSE_CHOICE,
     .offset = OFF(antispam_on_failure),
     .default_text = "tempfail",
     .choices = "tempfail|hold"},

    {.section = "antivirus",
     .name = "engine",
     .type = CONFPARSE_CHOICE,
     .offset = OFF(antivirus_engine),
     .default_text = "none",
     .choices = "none|clamd"},
    {.section = "antivirus",
     .name = "clamd",
     .type = CONFPARSE_STRING,
     .offset = OFF(clamd),
     .default_text = "127.0.0.1:3310"},
    {.section = "antivirus",
     .name = "action",
     .type = CONFPARSE_CHOICE,
     .offset = OFF(antivirus_action),
     .default_text = "quarantine",
     .choices = "quarantine|drop"},
    {.section = "antivirus",
     .name = "timeout",
     .type = CONFPARSE_DURATION,
     .offset = OFF(antivirus_timeout_ms),
     .default_text = "60s",
     .min = SEC},
    {.section = "antivirus",
     .name = "on_failure",
     .type = CONFPARSE_CHOICE,
     .offset = OFF(antivirus_on_failure),
     .default_text = "tempfail",
     .choices = "tempfail|hold"},

    {.section = "filters", .name = "file", .type = CONFPARSE_PATH, .offset = OFF(filters_file)},
    {.section = "filters",
     .name = "undecided",
     .type = CONFPARSE_CHOICE,
     .offset = OFF(filters_undecided),
     .default_text = "unclassified",
     .choices = "unclassified|tempfail"},

    {.section = "outbreak", .name = "rules", .type = CONFPARSE_PATH, .offset = OFF(outbreak_rules)},

    {.section = "centralized_pvo",
     .name = "enabled",
     .type = CONFPARSE_BOOL,
     .offset = OFF(central_pvo_enabled),
     .default_text = "no"},
    {.section = "centralized_pvo",
     .name = "host",
     .type = CONFPARSE_HOSTNAME,
     .offset = OFF(central_pvo_host),
     .default_text = "127.0.0.1"},
    {.section = "centralized_pvo",
     .name = "port",
     .type = CONFPARSE_UINT,
     .offset = OFF(central_pvo_port),
     .default_text = "7025",
     .min = 1,
     .max = 65535},
    {.section = "centralized_pvo",
     .name = "notify",
     .type = CONFPARSE_STRING,
     .offset = OFF(central_pvo_notify)},

    {.section = "spam_quarantine",
     .name = "enabled",
     .type = CONFPARSE_BOOL,
     .offset = OFF(local_spam_enabled),
     .default_text = "no"},
    {.section = "spam_quarantine",
     .name = "delete_after",
     .type = CONFPARSE_DURATION,
     .offset = OFF(local_spam_delete_after_ms),
     .default_text = "14d"},

    {.section = "quarantines",
     .name = "delete_after",
     .type = CONFPARSE_DURATION,
     .offset = OFF(quarantines_delete_after_ms),
     .default_text = "30d"},
    {.section = "quarantines",
     .name = "purge_interval",
     .type = CONFPARSE_DURATION,
     .offset = OFF(purge_interval_ms),
     .default_text = "1h",
     .min = SEC},

    {.section = "external_spam_quarantine",
     .name = "enabled",
     .type = CONFPARSE_BOOL,
     .offset = OFF(external_enabled),
     .default_text = "no"},
    {.section = "external_spam_quarantine",
     .name = "name",
     .type = CONFPARSE_STRING,
     .offset = OFF(external_name)},
    {.section = "external_spam_quarantine",
     .name = "host",
     .type = CONFPARSE_HOSTNAME,
     .offset = OFF(external_host),
     .default_text = "127.0.0.1"},
    {.section = "external_spam_quarantine",
     .name = "port",
     .type = CONFPARSE_UINT,
     .offset = OFF(external_port),
     .default_text = "6025",
     .min = 1,
     .max = 65535},
    {.section = "external_spam_quarantine",
     .name = "tls",
     .type = CONFPARSE_BOOL,
     .offset = OFF(external_tls),
     .default_text = "no"},
    {.section = "external_spam_quarantine",
     .name = "tls_ca",
     .type = CONFPARSE_PATH,
     .offset = OFF(external_tls_ca)},
    {.section = "external_spam_quarantine",
     .name = "tls_cert",
     .type = CONFPARSE_PATH,
     .offset = OFF(external_tls_cert)},
    {.section = "external_spam_quarantine",
     .name = "tls_key",
     .type = CONFPARSE_PATH,
     .offset = OFF(external_tls_key)},
    {.section = "external_spam_quarantine",
     .name = "safelist_blocklist",
     .type = CONFPARSE_BOOL,
     .offset = OFF(slbl_enabled),
     .default_text = "no"},
    {.section = "external_spam_quarantine",
     .name = "blocklist_action",
     .type = CONFPARSE_CHOICE,
     .offset = OFF(blocklist_action),
     .default_text = "quarantine",
     .choices = "quarantine|delete"},
    {.section = "external_spam_quarantine",
     .name = "sync_interval",
     .type = CONFPARSE_DURATION,
     .offset = OFF(sync_interval_ms),
     .default_text = "10m",
     .min = SEC},

    {.section = "http",
     .name = "admin_token",
     .type = CONFPARSE_STRING,
     .offset = OFF(admin_token)},
};

#define GW_CONFIG_NKEYS (sizeof(gw_config_keys) / sizeof(gw_config_keys[0]))

/* [listener]: the SMTP listener keys lazaretd's [spam_quarantine] has too. */
const struct smtp_listener_keys gw_config_listener = {
    .offset = SMTP_LISTENER_OFFSETS(struct gw_config, listen),
    .defaults = {[SMTP_LISTENER_LISTEN] = "127.0.0.1:2525"},
    .section = "listener",
};

/* [http]: the HTTP listener keys lazaretd's [http] has too; no default address. */
const struct http_config_keys gw_config_http = {
    .offset = HTTP_CONFIG_OFFSETS(struct gw_config),
    .section = "http",
};
#define GW_CONFIG_ALL_KEYS (GW_CONFIG_NKEYS + SMTP_LISTENER_NKEYS + HTTP_CONFIG_NKEYS)

/* The whole key table: the gateway's own rows, then the shared listener and HTTP rows. */
static void gw_config_all_keys(struct confparse_key *keys)
{
	smtp_listener_keys_join(gw_config_keys, GW_CONFIG_NKEYS, &gw_config_listener, keys);
	http_config_keys_rows(&gw_config_http, keys + GW_CONFIG_NKEYS + SMTP_LISTENER_NKEYS);
}

/* [hat] policy.NAME = ACTION: CIDR, ... in file order. */
static int gw_config_extra(void *target, const char *section, const char *key, const char *value,
			   char **msg, void *arg)
{
	struct gw_config *cfg = target;
	static const char prefix[] = "policy.";
	if (strcmp(section, "hat") != 0 || strncmp(key, prefix, sizeof(prefix) - 1) != 0)
		return -ENOENT;
	const char *name = key + sizeof(prefix) - 1;
	if (name[0] == '\0' || !confparse_hostname_ok(name)) {
		*msg = xstrdup("a policy name is letters, digits, '.', '-' and '_'");
		return -EINVAL;
	}
	if (cfg->nhat_policies == GW_MAX_HAT_POLICIES) {
		*msg = xasprintf("more than %d policies", GW_MAX_HAT_POLICIES);
		return -EINVAL;
	}
	struct hat_policy p;
	if (hat_parse_policy(name, value, &p, msg) < 0)
		return -EINVAL;
	cfg->hat_policies =
	    xreallocarray(cfg->hat_policies, cfg->nhat_policies + 1, sizeof(*cfg->hat_policies));
	cfg->hat_policies[cfg->nhat_policies++] = p;
	return 0;
}

static void gw_warn(char **warnings, const char *line)
{
	char *old = *warnings;
	*warnings = xasprintf("%s%s\n", old != NULL ? old : "", line);
	free(old);
}

/* [external_spam_quarantine] tls*: files readable, a client certificate whole, tls on. */
static void gw_config_external_tls(struct confparse *cp, struct gw_config *cfg)
{
	static const char sec[] = "external_spam_quarantine";
	confparse_check_tls_pair(cp, sec, cfg->external_tls_cert, cfg->external_tls_key);
	confparse_check_readable(cp, sec, "tls_ca", cfg->external_tls_ca);
	confparse_check_readable(cp, sec, "tls_cert", cfg->external_tls_cert);
	confparse_check_readable(cp, sec, "tls_key", cfg->external_tls_key);
	/* A CA or certificate without tls = yes would do nothing: say so, do not ignore it. */
	if (!cfg->external_tls) {
		const char *set = cfg->external_tls_ca != NULL	   ? "tls_ca"
				  : cfg->external_tls_cert != NULL ? "tls_cert"
				  : cfg->external_tls_key != NULL  ? "tls_key"
								   : NULL;
		if (set != NULL)
			confparse_error(cp, sec, set, "needs tls = yes");
	}
}

static void gw_config_validate(struct confparse *cp, void *target, void *arg)
{
	struct gw_config *cfg = target;
	char **warnings = arg;
	char *err = NULL;
	if (cfg->hat_default != NULL && hat_parse_action(cfg->hat_default, &cfg->hat_default_action,
							 &cfg->hat_default_limit, &err) < 0) {
		confparse_error(cp, "hat", "default", "%s", err);
		free(err);
		err = NULL;
	}
	for (size_t i = 0; i < cfg->nhat_policies; i++) {
		for (size_t j = 0; j < i; j++) {
			if (strcmp(cfg->hat_policies[i].name, cfg->hat_policies[j].name) == 0)
				confparse_error(cp, "hat", "default", "policy.%s is set twice",
						cfg->hat_policies[i].name);
		}
	}
	if (cfg->rat_accept != NULL) {
		struct rat *r = NULL;
		if (rat_parse(cfg->rat_accept, &r, &err) < 0) {
			confparse_error(cp, "rat", "accept", "%s", err);
			free(err);
			err = NULL;
		} else if (rat_count(r) == 0) {
			confparse_error(cp, "rat", "accept", "lists no domain or address");
		}
		rat_free(r);
	}

	if (cfg->suspect_threshold > cfg->positive_threshold)
		confparse_error(cp, "antispam", "suspect_threshold",
				"must not be above positive_threshold");
	if (cfg->tag == NULL)
		cfg->tag = xstrdup("");
	for (const char *p = cfg->tag; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f) {
			confparse_error(cp, "antispam", "tag",
					"must be printable ASCII (it goes before the encoded "
					"words of the Subject)");
			break;
		}
	}
	confparse_check_readable(cp, "antispam", "rules", cfg->antispam_rules);
	confparse_check_readable(cp, "filters", "file", cfg->filters_file);
	confparse_check_readable(cp, "outbreak", "rules", cfg->outbreak_rules);
	if (cfg->central_pvo_notify != NULL &&
	    (strchr(cfg->central_pvo_notify, '@') == NULL ||
	     strpbrk(cfg->central_pvo_notify, " \t<>,;") != NULL))
		confparse_error(cp, "centralized_pvo", "notify", "must be one mail address");

	confparse_check_tls_pair(cp, "listener", cfg->tls_cert, cfg->tls_key);
	confparse_check_readable(cp, "listener", "tls_cert", cfg->tls_cert);
	confparse_check_readable(cp, "listener", "tls_key", cfg->tls_key);

	if (cfg->http_listen != NULL) {
		if (cfg->admin_token == NULL)
			confparse_error(cp, "http", "admin_token",
					"is required when listen is set");
		else if (!confparse_token_ok(cfg->admin_token))
			confparse_error(cp, "http", "admin_token",
					"must be visible ASCII characters without spaces");
	}
	gw_config_external_tls(cp, cfg);
	confparse_check_readable(cp, "manager", "api_ca", cfg->api_ca);
	static const char *const level_keys[] = {"group", "cluster"};
	const char *levels[] = {cfg->group, cfg->cluster};
	for (size_t i = 0; i < 2; i++) {
		if (levels[i] != NULL && !store_gateway_name_ok(levels[i]))
			confparse_error(cp, "gateway", level_keys[i],
					"must be 1 to %d letters, digits, '.', '-' or '_'",
					STORE_GATEWAY_LEVEL_MAX);
	}
	if (cfg->api_url != NULL && strncmp(cfg->api_url, "http://", 7) != 0 &&
	    strncmp(cfg->api_url, "https://", 8) != 0)
		confparse_error(cp, "manager", "api_url", "must start with http:// or https://");
	if (cfg->slbl_enabled) {
		if (!cfg->external_enabled)
			confparse_error(cp, "external_spam_quarantine", "safelist_blocklist",
					"needs the external spam quarantine (enabled = yes)");
		if (cfg->api_url == NULL)
			confparse_error(cp, "manager", "api_url",
					"is required for safelist_blocklist = yes");
		if (cfg->api_token == NULL)
			confparse_error(cp, "manager", "api_token",
					"is required for safelist_blocklist = yes");
	}
	if (cfg->managed && (cfg->api_url == NULL || cfg->api_token == NULL))
		confparse_error(cp, "manager", "managed",
				"needs api_url and api_token (the settings are pulled from there)");
	if (cfg->tracking_mode != NULL && strcmp(cfg->tracking_mode, "central") == 0 &&
	    (cfg->api_url == NULL || cfg->api_token == NULL))
		confparse_error(cp, "tracking", "mode",
				"central needs [manager] api_url and api_token (events are "
				"pushed there)");
	if (cfg->reporting_mode != NULL && strcmp(cfg->reporting_mode, "central") == 0 &&
	    (cfg->api_url == NULL || cfg->api_token == NULL))
		confparse_error(cp, "reporting", "mode",
				"central needs [manager] api_url and api_token (events are "
				"pushed there)");
	bool track_local = cfg->tracking_mode == NULL || strcmp(cfg->tracking_mode, "local") == 0;
	if (track_local && cfg->name != NULL && !store_gateway_name_ok(cfg->name))
		confparse_error(cp, "gateway", "name",
				"must be 1 to %d letters, digits, '.', '-' or '_' with [tracking] "
				"mode = local (its events are kept under this name)",
				STORE_GATEWAY_NAME_MAX);
	if (track_local && cfg->http_listen == NULL && warnings != NULL) {
		char *w = xasprintf("%s: [tracking] mode = local keeps the events on the gateway, "
				    "but without [http] listen no one can search them",
				    cfg->path);
		gw_warn(warnings, w);
		free(w);
	}
	if (cfg->external_enabled && cfg->local_spam_enabled && warnings != NULL) {
		char *w = xasprintf("%s: both the local and the external spam quarantine are "
				    "enabled: spam goes to the local one",
				    cfg->path);
		gw_warn(warnings, w);
		free(w);
	}
	if (!cfg->external_enabled && !cfg->local_spam_enabled && warnings != NULL) {
		char *w = xasprintf("%s: no spam quarantine is enabled: the quarantine action "
				    "keeps spam in the gateway's local spam quarantine",
				    cfg->path);
		gw_warn(warnings, w);
		free(w);
	}

	if (cfg->hostname == NULL && cfg->name != NULL)
		cfg->hostname = xstrdup(cfg->name);
	if (cfg->external_name == NULL && cfg->external_host != NULL)
		cfg->external_name = xstrdup(cfg->external_host);
}

bool gw_config_reporting_central(const struct gw_config *cfg)
{
	return (cfg->reporting_mode != NULL && strcmp(cfg->reporting_mode, "central") == 0) ||
	       (cfg->tracking_mode != NULL && strcmp(cfg->tracking_mode, "central") == 0);
}

int gw_config_load(const char *path, struct gw_config *cfg, char **errors, char **warnings)
{
	struct confparse_key keys[GW_CONFIG_ALL_KEYS];
	gw_config_all_keys(keys);
	struct confparse *cp = confparse_new(path, keys, GW_CONFIG_ALL_KEYS);
	int rc;

	memset(cfg, 0, sizeof(*cfg));
	cfg->managed_reporting = -1;
	if (warnings != NULL)
		*warnings = NULL;
	cfg->path = xstrdup(path);
	confparse_set_extra(cp, gw_config_extra, NULL);
	rc = confparse_load(cp, cfg, gw_config_validate, warnings, errors);
	if (rc < 0) {
		gw_config_free(cfg);
		if (warnings != NULL) {
			free(*warnings);
			*warnings = NULL;
		}
	}
	return rc;
}

void gw_config_free(struct gw_config *cfg)
{
	if (cfg == NULL)
		return;
	struct confparse_key keys[GW_CONFIG_ALL_KEYS];
	gw_config_all_keys(keys);
	confparse_free_target(keys, GW_CONFIG_ALL_KEYS, cfg);
	for (size_t i = 0; i < cfg->nhat_policies; i++)
		hat_policy_clear(&cfg->hat_policies[i]);
	free(cfg->hat_policies);
	free(cfg->path);
	memset(cfg, 0, sizeof(*cfg));
}

char *gw_config_external_hostport(const struct gw_config *cfg)
{
	if (!cfg->external_enabled || cfg->external_host == NULL)
		return NULL;
	if (strchr(cfg->external_host, ':') != NULL)
		return xasprintf("[%s]:%u", cfg->external_host, cfg->external_port);
	return xasprintf("%s:%u", cfg->external_host, cfg->external_port);
}

char *gw_config_central_pvo_hostport(const struct gw_config *cfg)
{
	if (!cfg->central_pvo_enabled || cfg->central_pvo_host == NULL)
		return NULL;
	if (strchr(cfg->central_pvo_host, ':') != NULL)
		return xasprintf("[%s]:%u", cfg->central_pvo_host, cfg->central_pvo_port);
	return xasprintf("%s:%u", cfg->central_pvo_host, cfg->central_pvo_port);
}

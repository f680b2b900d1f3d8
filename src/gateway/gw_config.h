/*
 * gw_config — lazaret-gw.conf: the gateway's keys (docs/GATEWAY.md
 * "Configuration reference" is the prose form), their defaults and checks.
 * Unknown sections and keys are errors; each error names file, line and key.
 * The [hat] section holds a family of keys, "policy.NAME = ACTION: CIDR, ...",
 * kept in file order (first match wins). Relative paths are relative to the
 * folder of the config file.
 *
 * Not for: applying a configuration; the daemon loads a new struct and swaps.
 */
#ifndef LAZARET_GW_CONFIG_H
#define LAZARET_GW_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "common/acl.h"
#include "gateway/hat.h"
#include "http/http_config_keys.h"
#include "smtp/smtp_listener_keys.h"

struct gw_config {
	char *path;

	/* [gateway] */
	char *name;	  /* default "lazaret-gw"; X-Lazaret-Gateway, Received */
	char *data_dir;	  /* local quarantines' store, safelist cache */
	char *user;	  /* user to run as when started as root; default "lazaret" */
	char *log_level;  /* error | warn | info | debug */
	char *hostname;	  /* greeting and EHLO name; default: name */
	unsigned workers; /* pipeline threads (each holds one message while it is relayed) */
	int64_t shutdown_grace_ms;
	char *group;   /* said in the hello to the manager; NULL: none */
	char *cluster; /* likewise */

	/* [listener] */
	char *listen;
	uint64_t max_message_size;
	unsigned max_recipients;
	unsigned max_connections;
	int64_t idle_timeout_ms;
	unsigned max_connections_per_client; /* default 50, as Postfix's smtpd */
	int64_t command_timeout_ms;	     /* a command line, from its first octet; 1m */
	int64_t data_timeout_ms;	     /* message data, from the 354; default 10m */
	char *tls_cert, *tls_key;
	struct acl *xforward_from; /* peers allowed XFORWARD (a content filter's MTA); NULL: none */
	char *xforward_from_text;

	/* [hat] */
	struct hat_policy *hat_policies; /* file order */
	size_t nhat_policies;
	char *hat_default; /* "accept", "reject", "throttle N"; default accept */
	enum hat_action hat_default_action;
	unsigned hat_default_limit;

	/* [rat] */
	char *rat_accept; /* required: "example.com, .example.org, a@x, *" */

	/* [delivery] */
	char *next_hop;		     /* host:port; default 127.0.0.1:10026 */
	int64_t delivery_timeout_ms; /* per SMTP step; default 60s */
	char *source_address;	     /* bind for outbound SMTP, or NULL */

	/* [manager] */
	struct acl *manager_addresses; /* released mail comes from here */
	char *manager_addresses_text;
	char *api_url;
	char *api_token;
	char *api_ca;		   /* PEM CA for an https api_url; NULL: the system's store */
	int64_t hello_interval_ms; /* hello to the manager (with api_url); default 5m */
	bool managed;		   /* the manager's levels set pvo, tracking, filters */
	int64_t managed_sync_interval_ms; /* how often they are pulled; default 5m */
	/*
	 * Set by gw_managed_apply, not by the file: the manager's "reporting"
	 * (0, 1, or -1 when not managed or no level sets it).
	 */
	int managed_reporting;

	/* [events] and [tracking] (gw_events.c) */
	uint64_t events_spool_max;	    /* the spool's bound in bytes; default 2G */
	char *events_sync;		    /* group | each: when commits are fsynced */
	char *tracking_mode;		    /* local | central | off; default local */
	bool tracking_rejected_connections; /* record HAT-rejected connections (TR4) */
	int64_t tracking_retention_ms;	    /* local mode's retention; default 30d */
	/* [reporting] (RP3/RP4): local | central; default local. Central counts on
	 * the manager (gw_config_reporting_central says which applies). */
	char *reporting_mode;
	bool reporting_backfill;      /* [reporting] backfill: send the old rollups once */
	int64_t capacity_interval_ms; /* [reporting] capacity_interval: capacity events; 1m */

	/* [antispam] */
	char *antispam_engine; /* builtin | spamd | rspamd | none */
	char *spamd, *rspamd;
	char *antispam_rules; /* builtin rules file or NULL (GTUBE only) */
	double positive_threshold, suspect_threshold;
	char *positive_action, *suspect_action; /* deliver | tag | drop | bounce | quarantine */
	char *tag;
	char *alternate_host; /* "deliver" of spam goes here when set (a migration aid) */
	int64_t antispam_timeout_ms;
	char *antispam_on_failure; /* the engine could not be asked: tempfail | hold */

	/* [antivirus] */
	char *antivirus_engine; /* none | clamd */
	char *clamd;
	char *antivirus_action; /* quarantine | drop */
	int64_t antivirus_timeout_ms;
	/*
	 * clamd could not be asked: "tempfail" (451 to the client, the default) or
	 * "hold" (the Unclassified quarantine). Never delivered unscanned.
	 */
	char *antivirus_on_failure;

	/* [filters] */
	char *filters_file; /* NULL: no content filters */
	/*
	 * What a message the filters could not decide on gets: "unclassified" (the
	 * local Unclassified quarantine) or "tempfail" (451 to the client). Never
	 * delivered as clean.
	 */
	char *filters_undecided;

	/* [outbreak] */
	char *outbreak_rules; /* rules file (filter language + a version line), or NULL */

	/* [centralized_pvo]: every Policy/Virus/Outbreak/Unclassified quarantine on the manager */
	bool central_pvo_enabled;
	char *central_pvo_host;
	unsigned central_pvo_port;
	char *central_pvo_notify; /* told by the manager when the migration is done */

	/* [spam_quarantine] (local) */
	bool local_spam_enabled;
	int64_t local_spam_delete_after_ms;

	/* [quarantines] (local Policy/Virus/Outbreak/Unclassified) */
	int64_t quarantines_delete_after_ms;
	int64_t purge_interval_ms;

	/* [external_spam_quarantine] */
	bool external_enabled;
	char *external_name;
	char *external_host;
	unsigned external_port;
	bool external_tls;	 /* STARTTLS required, certificate and host verified */
	char *external_tls_ca;	 /* PEM CA of the manager's certificate; NULL: system store */
	char *external_tls_cert; /* PEM client certificate and key for the manager, or NULL */
	char *external_tls_key;
	bool slbl_enabled;
	char *blocklist_action; /* quarantine | delete */
	int64_t sync_interval_ms;

	/* [http] */
	char *http_listen; /* NULL: no admin API */
	char *admin_token;
	uint64_t http_max_body;
	unsigned http_max_connections;		  /* default 256 */
	unsigned http_max_connections_per_client; /* default 32 */
	int64_t http_request_timeout_ms;	  /* first octet to complete request; 30s */
	int64_t http_keepalive_timeout_ms;	  /* idle kept-alive connection; 15s */
};

/*
 * Reads and validates path into *cfg (zeroed first). 0, or -EINVAL with *errors
 * one line per error "FILE:LINE: [section] key: message" (caller frees) and cfg
 * freed; -ENOENT (with *errors) when the file cannot be read. *warnings (may be
 * NULL) gets lines for settings that work but deserve a note (caller frees).
 */
/*
 * Where [listener]'s SMTP listener keys and [http]'s shared keys sit in struct
 * gw_config: the daemon turns them into server settings with these.
 */
extern const struct smtp_listener_keys gw_config_listener;
extern const struct http_config_keys gw_config_http;

int gw_config_load(const char *path, struct gw_config *cfg, char **errors, char **warnings);
void gw_config_free(struct gw_config *cfg);

/* "host:port" of the external spam quarantine (caller frees); NULL when disabled. */
char *gw_config_external_hostport(const struct gw_config *cfg);
/* "host:port" of the manager's PVO listener (caller frees); NULL when not centralized. */
char *gw_config_central_pvo_hostport(const struct gw_config *cfg);

/*
 * True when the manager does this gateway's reporting: [reporting] mode =
 * central, or [tracking] mode = central (every event is the manager's then, and
 * the gateway has none of its own to roll up).
 */
bool gw_config_reporting_central(const struct gw_config *cfg);

#endif

/*
 * manager_config — lazaretd.conf: the keys of docs/CONFIG.md, their defaults, and
 * validation. Unknown sections and keys are errors (a typo must not pass silently);
 * each error names file, line and key. Relative paths are relative to the folder of
 * the config file. Durations and sizes use the forms of common/confparse.h.
 */
#ifndef LAZARET_MANAGER_CONFIG_H
#define LAZARET_MANAGER_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "common/acl.h"
#include "http/http_config_keys.h"
#include "smtp/smtp_listener_keys.h"

struct manager_config {
	char *path; /* the file it was read from */

	/* [manager] */
	char *name;	 /* default "lazaret"; appears in trace headers */
	char *data_dir;	 /* absolute after loading; default "<config dir>/var" */
	char *user;	 /* user to run as when started as root; default "lazaret" */
	char *log_level; /* error | warn | info | debug; default info */

	/* [http] */
	char *http_listen;			  /* host:port; default 127.0.0.1:8080 */
	char *admin_token;			  /* required, non-empty */
	uint64_t http_max_body;			  /* request body limit; default 1M */
	unsigned http_max_connections;		  /* default 256 */
	unsigned http_max_connections_per_client; /* default 32 */
	int64_t http_request_timeout_ms;	  /* first octet to complete request; 30s */
	int64_t http_keepalive_timeout_ms;	  /* idle kept-alive connection; 15s */
	char *web_root;				  /* the web application's folder, or NULL: none */
	char *http_tls_cert;			  /* PEM paths: HTTPS when both are set */
	char *http_tls_key;
	int64_t http_hsts_max_age_ms; /* Strict-Transport-Security with HTTPS; default 365d */
	bool http_tls;		      /* derived: both tls_cert and tls_key are set */

	/*
	 * [pvo_quarantine]: the policy, virus and outbreak quarantines' listener,
	 * with [spam_quarantine]'s SMTP limits (manager/ingest.c)
	 */
	char *pvo_listen;	     /* default 127.0.0.1:7025 */
	struct acl *pvo_accept_from; /* default 127.0.0.1/32, ::1/128 */
	char *pvo_accept_from_text;
	uint64_t pvo_max_size;		     /* all PVO quarantines together; default 10G */
	char *pvo_alternate_release_gateway; /* host:port or NULL */

	/* [backup]: scheduled archives (quarantine/backup.h); dir NULL: none */
	char *backup_dir;
	int64_t backup_every_ms; /* default 1d */
	unsigned backup_keep;	 /* newest archives kept; default 7 */

	/* [tracking] */
	int64_t tracking_retention_ms; /* gateway events kept; default 30d, 0 = forever */

	/* [reporting]: rollups kept per granularity (hour, day, month); 0 = forever */
	int64_t report_retention_ms[3];	     /* default 90d, 1098d, 0 */
	int64_t report_archive_retention_ms; /* [reporting] archive_retention, 400d */

	/* [spam_quarantine] */
	char *smtp_listen;	 /* default 127.0.0.1:6025 */
	struct acl *accept_from; /* default 127.0.0.1/32, ::1/128 */
	char *accept_from_text;
	int64_t delete_after_ms;   /* default 14d; 0 = never */
	int64_t purge_interval_ms; /* default 1h */
	uint64_t max_message_size; /* default 50M */
	unsigned max_recipients;   /* default 1000 */
	unsigned max_connections;  /* concurrent SMTP sessions; default 500 */
	int64_t idle_timeout_ms;   /* default 5m */
	/* Sessions from one gateway address; default 100 (a gateway's workers deliver
	 * in parallel, up to its 64 default workers at once). */
	unsigned max_connections_per_client;
	int64_t command_timeout_ms;	   /* a command line, from its first octet; default 1m */
	int64_t data_timeout_ms;	   /* message data, from the 354; default 10m */
	unsigned max_header_count;	   /* default 1000 */
	uint64_t max_header_size;	   /* default 64K */
	unsigned max_command_line;	   /* default 512 */
	uint64_t max_data_line;		   /* default 64K */
	unsigned max_commands_before_mail; /* default 50 */
	unsigned max_errors;		   /* default 20 */
	char *hostname;			   /* in the greeting; default: name */
	char *tls_cert;			   /* path or NULL: STARTTLS offered when both are set */
	char *tls_key;
	bool tls_require;    /* MAIL needs STARTTLS first (530 5.7.0); default no */
	char *tls_client_ca; /* PEM path or NULL: clients must present a cert chaining to it */
	int64_t shutdown_grace_ms;	 /* how long SIGTERM waits for sessions; default 30s */
	unsigned slbl_max_entries;	 /* per end user and list; default 100, at most 500 */
	bool hide_bodies_until_released; /* end users see no body before release; default no */

	/* [release] */
	char *primary_host;		  /* host:port; default 127.0.0.1:10025 */
	char *secondary_host;		  /* host:port or NULL */
	char *source_address;		  /* bind address for outbound SMTP or NULL */
	unsigned release_max_connections; /* default 10 */
	int64_t release_timeout_ms;	  /* per SMTP step; default 60s */
	int64_t retry_min_ms;		  /* first retry after; default 1m */
	int64_t retry_max_ms;		  /* backoff cap; default 1h */
	int64_t give_up_after_ms;	  /* then failed; default 5d */
	char *helo_name;		  /* EHLO name for outbound; default: hostname */

	/* Accounts and sessions */
	char *initial_admin;		   /* [manager]: first admin, created when no user exists */
	char *initial_admin_password_file; /* [manager]: its password (first line) */
	bool secure_cookies; /* [http]: Secure on the session cookie; default: yes with HTTPS */
	int64_t session_idle_timeout_ms;	 /* [http]; default 30m */
	int64_t session_max_age_ms;		 /* [http]; default 12h */
	unsigned login_max_failures;		 /* [http]; default 5 */
	int64_t login_failure_window_ms;	 /* [http]; default 5m */
	unsigned login_max_failures_per_address; /* [http]; default 30 */
	int64_t login_backoff_max_ms;		 /* [http]; default 1h */
	unsigned login_queue_max;		 /* [http]; default 16 */
	struct acl *trusted_proxies;		 /* [http]; default none */
	char *trusted_proxies_text;
	char *totp_required;	 /* [http]; roles that must have a second factor */
	char *allowed_origins;	 /* [http]; origins besides the Host's; default none */
	char *download_min_role; /* [spam_quarantine]: admin | operator | enduser; default admin */
	/* [http]: API reads off the event loop (quarantine/api_read.h) */
	unsigned read_threads;	  /* reader threads; default 4 (restart) */
	unsigned read_queue_max;  /* reads waiting for a thread; default 64 */
	int64_t query_timeout_ms; /* store budget of one read; default 5s */
	/* [auth_ldap]: LDAP end users (uri NULL: off) */
	char *ldap_uri;
	char *ldap_base_dn;
	char *ldap_bind_dn;
	char *ldap_bind_password;
	char *ldap_user_filter;	    /* default (uid=%s) */
	char *ldap_mail_attributes; /* default "mail, mailAlternateAddress" */
	int64_t ldap_timeout_ms;    /* default 10s */
	bool ldap_starttls;	    /* StartTLS on an ldap:// uri; default no */
	char *ldap_ca_file;	    /* PEM CA for the server's certificate; NULL: system store */
	/* [auth_imap]: IMAP end users (host NULL: off) */
	char *imap_host; /* host:port */
	char *imap_domain;
	int64_t imap_timeout_ms; /* default 10s */
	char *imap_tls;		 /* starttls | imaps | none; default starttls */
	char *imap_ca_file;	 /* PEM CA for the server's certificate; NULL: system store */
	/* [auth_saml]: SAML end users (idp_metadata NULL: off); see manager/auth_saml.h */
	char *saml_idp_metadata;
	char *saml_base_url;
	char *saml_entity_id; /* NULL: <base_url>/auth/saml/metadata */
	char *saml_sp_key_file;
	char *saml_sp_cert_file;
	char *saml_address_attribute; /* default mail; "NameID": the subject's NameID */
	char *saml_allowed_domains;

	/* [auth_oidc]: single sign-on through OpenID Connect (issuer NULL: off) */
	char *oidc_issuer;
	char *oidc_client_id;
	char *oidc_client_secret_file; /* its first line is the secret */
	char *oidc_scopes;	       /* default "openid email profile" */
	char *oidc_address_claim;      /* default "email" */
	char *oidc_role_claim;	       /* NULL: everyone is an end user */
	char *oidc_admin_values;
	char *oidc_operator_values;
	char *oidc_allowed_domains; /* NULL: any domain */
	char *oidc_ca_file;	    /* PEM CA for the provider; NULL: system store */
	char *oidc_redirect_uri;    /* default <[notifications] base_url>/auth/oidc/callback */
	int64_t oidc_timeout_ms;    /* one request to the provider; default 10s */
	int64_t oidc_clock_skew_ms; /* default 60s */

	/* [notifications]: end users' spam digests */
	bool notify_enabled;	     /* default no */
	char *notify_schedule;	     /* default "daily 09:00" (digest/notify.h forms) */
	char *notify_time_zone;	     /* tz database name; default Asia/Tokyo */
	char *notify_from;	     /* required when enabled */
	char *notify_base_url;	     /* default http://<[http] listen> */
	char *notify_language;	     /* ja | en; default ja */
	unsigned notify_max_entries; /* messages listed per digest; default 100 */

	/* [store] */
	char *store_backend;   /* sqlite | postgresql; default sqlite */
	char *store_dsn;       /* postgresql: libpq connection string; required there */
	char *store_node_name; /* this process's name on a shared database; NULL: host name */

	/* [store], PostgreSQL: a standby for the API's reads (optional), and how long
	 * start-up waits for a server that does not answer (default 60s) */
	char *store_read_dsn;
	int64_t store_connect_wait_ms;

	/* [gateways]: the registry's pending entries (api/api_gateways.h) */
	struct acl
	    *gateways_pending_from; /* unauthenticated hellos recorded from here; NULL: none */
	char *gateways_pending_from_text;
	unsigned gateways_max_pending;	      /* default 100 */
	int64_t gateways_pending_interval_ms; /* per address; default 1m */
};

/*
 * Reads and validates path into *cfg (zeroed first). Returns 0, or -EINVAL when
 * the file has errors: then *errors is a new string, one line per error in the
 * form "FILE:LINE: [section] key: message" (caller frees), and cfg is freed.
 * -ENOENT (with *errors set) when the file cannot be read.
 */
/*
 * Where [spam_quarantine]'s SMTP listener keys and [http]'s shared keys sit in
 * struct manager_config: the daemon turns them into server settings with these.
 */
extern const struct smtp_listener_keys manager_config_listener;
extern const struct http_config_keys manager_config_http;

int manager_config_load(const char *path, struct manager_config *cfg, char **errors);
/* Frees what cfg owns (not cfg itself). */
void manager_config_free(struct manager_config *cfg);
/*
 * The web/ folder installed with this lazaretd (<datadir>/lazaret/web, found from the
 * running program's folder), canonical, when it holds index.html: a new string, or
 * NULL (a binary run from the build tree).
 */
char *manager_config_installed_web(void);

#endif

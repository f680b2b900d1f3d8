/*
 * manager_config — reads lazaretd.conf into struct manager_config: the table of
 * keys with their types, defaults and limits (docs/CONFIG.md is its prose form),
 * and the checks that span keys (TLS certificate and key together, retry bounds,
 * defaults derived from other keys).
 *
 * Not for: applying a configuration to running services or deciding what a
 * SIGHUP may change; the daemon loads a new struct and compares.
 */
#include "manager/manager_config.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/confparse.h"
#include "common/tls.h"
#include "common/tz.h"
#include "common/xalloc.h"
#include "api/api_users.h"
#include "digest/notify_schedule.h"
#include "manager/auth_oidc.h"
#include "http/http_config_keys.h"
#include "smtp/smtp_listener_keys.h"
#include "store/store.h"

#define KIB (UINT64_C(1024))
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)
#define SEC (UINT64_C(1000))

/*
 * RFC 5321 4.5.3.1: a server must accept command lines of 512 octets and text
 * lines of 1000 octets, so the limits cannot go below those. Larger limits
 * bound the memory one session can pin.
 */
#define MANAGER_MIN_COMMAND_LINE 512
#define MANAGER_MIN_DATA_LINE	 1000
/* A message over 2G does not fit the store's size fields nor a sane quarantine. */
#define MANAGER_MAX_MESSAGE_SIZE (2 * GIB)
/* Safelist/blocklist entries per end user and list may be raised to 500, no further. */
#define MANAGER_MAX_SLBL_ENTRIES 500
/* A digest longer than this is not read; the rest is in the web console. */
#define MANAGER_MAX_DIGEST_ENTRIES 1000
/* Strict-Transport-Security max-age: two years is what browsers' preload lists ask for. */
#define MANAGER_MAX_HSTS_MAX_AGE (UINT64_C(2) * 366 * 24 * 3600 * SEC)
/* Start-up waits at most an hour for PostgreSQL: longer hides a broken setup. */
#define MANAGER_MAX_STORE_CONNECT_WAIT (UINT64_C(3600) * SEC)
/* Pending gateways are a to-do list for an admin, not a directory: 10000 is plenty. */
#define MANAGER_MAX_PENDING_GATEWAYS 10000

#define OFF(field) offsetof(struct manager_config, field)

static const struct confparse_key manager_config_keys[] = {
    {.section = "manager",
     .name = "name",
     .type = CONFPARSE_HOSTNAME,
     .offset = OFF(name),
     .default_text = "lazaret"},
    {.section = "manager",
     .name = "data_dir",
     .type = CONFPARSE_PATH,
     .offset = OFF(data_dir),
     .default_text = "var"},
    {.section = "manager",
     .name = "user",
     .type = CONFPARSE_STRING,
     .offset = OFF(user),
     .default_text = "lazaret"},
    {.section = "manager",
     .name = "log_level",
     .type = CONFPARSE_CHOICE,
     .offset = OFF(log_level),
     .default_text = "info",
     .choices = "error|warn|info|debug"},

    {.section = "http",
     .name = "admin_token",
     .type = CONFPARSE_STRING,
     .offset = OFF(admin_token),
     .flags = CONFPARSE_REQUIRED},
    {.section = "http", .name = "web_root", .type = CONFPARSE_PATH, .offset = OFF(web_root)},
    {.section = "http", .name = "tls_cert", .type = CONFPARSE_PATH, .offset = OFF(http_tls_cert)},
    {.section = "http", .name = "tls_key", .type = CONFPARSE_PATH, .offset = OFF(http_tls_key)},
    {.section = "http",
     .name = "hsts_max_age",
     .type = CONFPARSE_DURATION,
     .offset = OFF(http_hsts_max_age_ms),
     .default_text = "365d",
     .max = MANAGER_MAX_HSTS_MAX_AGE},

    {.section = "pvo_quarantine",
     .name = "listen",
     .type = CONFPARSE_HOSTPORT,
     .offset = OFF(pvo_listen),
     .default_text = "127.0.0.1:7025"},
    {.section = "pvo_quarantine",
     .name = "accept_from",
     .type = CONFPARSE_ACL,
     .offset = OFF(pvo_accept_from),
     .default_text = "127.0.0.1/32, ::1/128",
     .flags = CONFPARSE_KEEP_TEXT,
     .text_offset = OFF(pvo_accept_from_text)},
    {.section = "pvo_quarantine",
     .name = "max_size",
     .type = CONFPARSE_SIZE,
     .offset = OFF(pvo_max_size),
     .default_text = "10G",
     .min = MIB},
    {.section = "pvo_quarantine",
     .name = "alternate_release_gateway",
     .type = CONFPARSE_HOSTPORT,
     .offset = OFF(pvo_alternate_release_gateway)},

    {.section = "backup", .name = "dir", .type = CONFPARSE_PATH, .offset = OFF(backup_dir)},
    {.section = "backup",
     .name = "every",
     .type = CONFPARSE_DURATION,
     .offset = OFF(backup_every_ms),
     .default_text = "1d",
     .min = SEC},
    {.section = "backup",
     .name = "keep",
     .type = CONFPARSE_UINT,
     .offset = OFF(backup_keep),
     .default_text = "7",
     .min = 1,
     .max = 10000},

    {.section = "tracking",
     .name = "retention",
     .type = CONFPARSE_DURATION,
     .offset = OFF(tracking_retention_ms),
     .default_text = "30d"},

    {.section = "reporting",
     .name = "hourly_retention",
     .type = CONFPARSE_DURATION,
     .offset = OFF(report_retention_ms[0]),
     .default_text = "90d"},
    {.section = "reporting",
     .name = "daily_retention",
     .type = CONFPARSE_DURATION,
     .offset = OFF(report_retention_ms[1]),
     .default_text = "1098d"},
    {.section = "reporting",
     .name = "archive_retention",
     .type = CONFPARSE_DURATION,
     .offset = OFF(report_archive_retention_ms),
     .default_text = "400d"},
    {.section = "reporting",
     .name = "monthly_retention",
     .type = CONFPARSE_DURATION,
     .offset = OFF(report_retention_ms[2]),
     .default_text = "0"},

    {.section = "spam_quarantine",
     .name = "accept_from",
     .type = CONFPARSE_ACL,
     .offset = OFF(accept_from),
     .default_text = "127.0.0.1/32, ::1/128",
     .flags = CONFPARSE_KEEP_TEXT,
     .text_offset = OFF(accept_from_text)},
    {.section = "spam_quarantine",
     .name = "delete_after",
     .type = CONFPARSE_DURATION,
     .offset = OFF(delete_after_ms),
     .default_text = "14d"},
    {.section = "spam_quarantine",
     .name = "purge_interval",
     .type = CONFPARSE_DURATION,
     .offset = OFF(purge_interval_ms),
     .default_text = "1h",
     .min = SEC},
    {.section = "spam_quarantine",
     .name = "max_header_count",
     .type = CONFPARSE_UINT,
     .offset = OFF(max_header_count),
     .default_text = "1000",
     .min = 1,
     .max = 1000000},
    {.section = "spam_quarantine",
     .name = "max_header_size",
     .type = CONFPARSE_SIZE,
     .offset = OFF(max_header_size),
     .default_text = "64K",
     .min = KIB,
     .max = MANAGER_MAX_MESSAGE_SIZE},
    {.section = "spam_quarantine",
     .name = "max_command_line",
     .type = CONFPARSE_UINT,
     .offset = OFF(max_command_line),
     .default_text = "512",
     .min = MANAGER_MIN_COMMAND_LINE,
     .max = 64 * KIB},
    {.section = "spam_quarantine",
     .name = "max_data_line",
     .type = CONFPARSE_SIZE,
     .offset = OFF(max_data_line),
     .default_text = "64K",
     .min = MANAGER_MIN_DATA_LINE,
     .max = 16 * MIB},
    {.section = "spam_quarantine",
     .name = "max_commands_before_mail",
     .type = CONFPARSE_UINT,
     .offset = OFF(max_commands_before_mail),
     .default_text = "50",
     .min = 1,
     .max = 100000},
    {.section = "spam_quarantine",
     .name = "max_errors",
     .type = CONFPARSE_UINT,
     .offset = OFF(max_errors),
     .default_text = "20",
     .min = 1,
     .max = 100000},
    {.section = "spam_quarantine",
     .name = "hostname",
     .type = CONFPARSE_HOSTNAME,
     .offset = OFF(hostname)},
    {.section = "spam_quarantine",
     .name = "tls_require",
     .type = CONFPARSE_BOOL,
     .offset = OFF(tls_require),
     .default_text = "no"},
    {.section = "spam_quarantine",
     .name = "tls_client_ca",
     .type = CONFPARSE_PATH,
     .offset = OFF(tls_client_ca)},
    {.section = "spam_quarantine",
     .name = "shutdown_grace",
     .type = CONFPARSE_DURATION,
     .offset = OFF(shutdown_grace_ms),
     .default_text = "30s"},
    {.section = "spam_quarantine",
     .name = "slbl_max_entries",
     .type = CONFPARSE_UINT,
     .offset = OFF(slbl_max_entries),
     .default_text = "100",
     .min = 1,
     .max = MANAGER_MAX_SLBL_ENTRIES},
    {.section = "spam_quarantine",
     .name = "hide_bodies_until_released",
     .type = CONFPARSE_BOOL,
     .offset = OFF(hide_bodies_until_released),
     .default_text = "no"},
    {.section = "spam_quarantine",
     .name = "download_min_role",
     .type = CONFPARSE_CHOICE,
     .offset = OFF(download_min_role),
     .default_text = "admin",
     .choices = "admin|operator|enduser"},

    {.section = "release",
     .name = "primary_host",
     .type = CONFPARSE_HOSTPORT,
     .offset = OFF(primary_host),
     .default_text = "127.0.0.1:10025"},
    {.section = "release",
     .name = "secondary_host",
     .type = CONFPARSE_HOSTPORT,
     .offset = OFF(secondary_host)},
    {.section = "release",
     .name = "source_address",
     .type = CONFPARSE_ADDRESS,
     .offset = OFF(source_address)},
    {.section = "release",
     .name = "max_connections",
     .type = CONFPARSE_UINT,
     .offset = OFF(release_max_connections),
     .default_text = "10",
     .min = 1,
     .max = 10000},
    {.section = "release",
     .name = "timeout",
     .type = CONFPARSE_DURATION,
     .offset = OFF(release_timeout_ms),
     .default_text = "60s",
     .min = SEC},
    {.section = "release",
     .name = "retry_min",
     .type = CONFPARSE_DURATION,
     .offset = OFF(retry_min_ms),
     .default_text = "1m",
     .min = SEC},
    {.section = "release",
     .name = "retry_max",
     .type = CONFPARSE_DURATION,
     .offset = OFF(retry_max_ms),
     .default_text = "1h",
     .min = SEC},
    {.section = "release",
     .name = "give_up_after",
     .type = CONFPARSE_DURATION,
     .offset = OFF(give_up_after_ms),
     .default_text = "5d",
     .min = SEC},
    {.section = "release",
     .name = "helo_name",
     .type = CONFPARSE_HOSTNAME,
     .offset = OFF(helo_name)},

    {.section = "manager",
     .name = "initial_admin",
     .type = CONFPARSE_STRING,
     .offset = OFF(initial_admin)},
    {.section = "manager",
     .name = "initial_admin_password_file",
     .type = CONFPARSE_PATH,
     .offset = OFF(initial_admin_password_file)},
    {.section = "http",
     .name = "secure_cookies",
     .type = CONFPARSE_BOOL,
     .offset = OFF(secure_cookies),
     .default_text = "no"},
    {.section = "http",
     .name = "session_idle_timeout",
     .type = CONFPARSE_DURATION,
     .offset = OFF(session_idle_timeout_ms),
     .default_text = "30m",
     .min = 60 * SEC},
    {.section = "http",
     .name = "session_max_age",
     .type = CONFPARSE_DURATION,
     .offset = OFF(session_max_age_ms),
     .default_text = "12h",
     .min = 60 * SEC},
    {.section = "http",
     .name = "login_max_failures",
     .type = CONFPARSE_UINT,
     .offset = OFF(login_max_failures),
     .default_text = "5",
     .min = 1,
     .max = 1000},
    {.section = "http",
     .name = "login_failure_window",
     .type = CONFPARSE_DURATION,
     .offset = OFF(login_failure_window_ms),
     .default_text = "5m",
     .min = SEC},
    {.section = "http",
     .name = "login_max_failures_per_address",
     .type = CONFPARSE_UINT,
     .offset = OFF(login_max_failures_per_address),
     .default_text = "30",
     .min = 1,
     .max = 100000},
    {.section = "http",
     .name = "login_backoff_max",
     .type = CONFPARSE_DURATION,
     .offset = OFF(login_backoff_max_ms),
     .default_text = "1h",
     .min = SEC},
    /* Each queued login holds a deferred request; the workers run two at a time. */
    {.section = "http",
     .name = "login_queue_max",
     .type = CONFPARSE_UINT,
     .offset = OFF(login_queue_max),
     .default_text = "16",
     .min = 1,
     .max = 10000},
    {.section = "http",
     .name = "trusted_proxies",
     .type = CONFPARSE_ACL,
     .offset = OFF(trusted_proxies),
     .flags = CONFPARSE_KEEP_TEXT,
     .text_offset = OFF(trusted_proxies_text)},
    /* Roles that must log in with a second factor (api_users_roles_parse). */
    {.section = "http",
     .name = "totp_required",
     .type = CONFPARSE_STRING,
     .offset = OFF(totp_required)},
    {.section = "http",
     .name = "allowed_origins",
     .type = CONFPARSE_STRING,
     .offset = OFF(allowed_origins)},
    /* Reads off the event loop (quarantine/api_read.h): threads, their queue, budget. */
    {.section = "http",
     .name = "read_threads",
     .type = CONFPARSE_UINT,
     .offset = OFF(read_threads),
     .default_text = "4",
     .min = 1,
     .max = 64},
    {.section = "http",
     .name = "read_queue_max",
     .type = CONFPARSE_UINT,
     .offset = OFF(read_queue_max),
     .default_text = "64",
     .min = 1,
     .max = 10000},
    {.section = "http",
     .name = "query_timeout",
     .type = CONFPARSE_DURATION,
     .offset = OFF(query_timeout_ms),
     .default_text = "5s",
     .min = SEC,
     .max = 3600 * SEC},
    {.section = "auth_ldap", .name = "uri", .type = CONFPARSE_STRING, .offset = OFF(ldap_uri)},
    {.section = "auth_ldap",
     .name = "base_dn",
     .type = CONFPARSE_STRING,
     .offset = OFF(ldap_base_dn)},
    {.section = "auth_ldap",
     .name = "bind_dn",
     .type = CONFPARSE_STRING,
     .offset = OFF(ldap_bind_dn)},
    {.section = "auth_ldap",
     .name = "bind_password",
     .type = CONFPARSE_STRING,
     .offset = OFF(ldap_bind_password)},
    {.section = "auth_ldap",
     .name = "user_filter",
     .type = CONFPARSE_STRING,
     .offset = OFF(ldap_user_filter),
     .default_text = "(uid=%s)"},
    {.section = "auth_ldap",
     .name = "mail_attributes",
     .type = CONFPARSE_STRING,
     .offset = OFF(ldap_mail_attributes),
     .default_text = "mail, mailAlternateAddress"},
    {.section = "auth_ldap",
     .name = "starttls",
     .type = CONFPARSE_BOOL,
     .offset = OFF(ldap_starttls),
     .default_text = "no"},
    {.section = "auth_ldap",
     .name = "ca_file",
     .type = CONFPARSE_PATH,
     .offset = OFF(ldap_ca_file)},
    {.section = "auth_ldap",
     .name = "timeout",
     .type = CONFPARSE_DURATION,
     .offset = OFF(ldap_timeout_ms),
     .default_text = "10s",
     .min = SEC},
    {.section = "auth_imap", .name = "host", .type = CONFPARSE_HOSTPORT, .offset = OFF(imap_host)},
    {.section = "auth_imap",
     .name = "domain",
     .type = CONFPARSE_HOSTNAME,
     .offset = OFF(imap_domain)},
    {.section = "auth_imap",
     .name = "tls",
     .type = CONFPARSE_CHOICE,
     .offset = OFF(imap_tls),
     .default_text = "starttls",
     .choices = "starttls|imaps|none"},
    {.section = "auth_imap",
     .name = "ca_file",
     .type = CONFPARSE_PATH,
     .offset = OFF(imap_ca_file)},
    {.section = "auth_imap",
     .name = "timeout",
     .type = CONFPARSE_DURATION,
     .offset = OFF(imap_timeout_ms),
     .default_text = "10s",
     .min = SEC},
    {.section = "auth_saml",
     .name = "idp_metadata",
     .type = CONFPARSE_PATH,
     .offset = OFF(saml_idp_metadata)},
    {.section = "auth_saml",
     .name = "base_url",
     .type = CONFPARSE_STRING,
     .offset = OFF(saml_base_url)},
    {.section = "auth_saml",
     .name = "entity_id",
     .type = CONFPARSE_STRING,
     .offset = OFF(saml_entity_id)},
    {.section = "auth_saml",
     .name = "sp_key_file",
     .type = CONFPARSE_PATH,
     .offset = OFF(saml_sp_key_file)},
    {.section = "auth_saml",
     .name = "sp_cert_file",
     .type = CONFPARSE_PATH,
     .offset = OFF(saml_sp_cert_file)},
    {.section = "auth_saml",
     .name = "address_attribute",
     .type = CONFPARSE_STRING,
     .offset = OFF(saml_address_attribute),
     .default_text = "mail"},
    {.section = "auth_saml",
     .name = "allowed_domains",
     .type = CONFPARSE_STRING,
     .offset = OFF(saml_allowed_domains)},

    {.section = "auth_oidc",
     .name = "issuer",
     .type = CONFPARSE_STRING,
     .offset = OFF(oidc_issuer)},
    {.section = "auth_oidc",
     .name = "client_id",
     .type = CONFPARSE_STRING,
     .offset = OFF(oidc_client_id)},
    {.section = "auth_oidc",
     .name = "client_secret_file",
     .type = CONFPARSE_PATH,
     .offset = OFF(oidc_client_secret_file)},
    {.section = "auth_oidc",
     .name = "scopes",
     .type = CONFPARSE_STRING,
     .offset = OFF(oidc_scopes),
     .default_text = "openid email profile"},
    {.section = "auth_oidc",
     .name = "address_claim",
     .type = CONFPARSE_STRING,
     .offset = OFF(oidc_address_claim),
     .default_text = "email"},
    {.section = "auth_oidc",
     .name = "role_claim",
     .type = CONFPARSE_STRING,
     .offset = OFF(oidc_role_claim)},
    {.section = "auth_oidc",
     .name = "admin_values",
     .type = CONFPARSE_STRING,
     .offset = OFF(oidc_admin_values)},
    {.section = "auth_oidc",
     .name = "operator_values",
     .type = CONFPARSE_STRING,
     .offset = OFF(oidc_operator_values)},
    {.section = "auth_oidc",
     .name = "allowed_domains",
     .type = CONFPARSE_STRING,
     .offset = OFF(oidc_allowed_domains)},
    {.section = "auth_oidc",
     .name = "ca_file",
     .type = CONFPARSE_PATH,
     .offset = OFF(oidc_ca_file)},
    {.section = "auth_oidc",
     .name = "redirect_uri",
     .type = CONFPARSE_STRING,
     .offset = OFF(oidc_redirect_uri)},
    {.section = "auth_oidc",
     .name = "timeout",
     .type = CONFPARSE_DURATION,
     .offset = OFF(oidc_timeout_ms),
     .default_text = "10s",
     .min = SEC,
     .max = 120 * SEC},
    {.section = "auth_oidc",
     .name = "clock_skew",
     .type = CONFPARSE_DURATION,
     .offset = OFF(oidc_clock_skew_ms),
     .default_text = "60s",
     .max = 600 * SEC},

    {.section = "notifications",
     .name = "enabled",
     .type = CONFPARSE_BOOL,
     .offset = OFF(notify_enabled),
     .default_text = "no"},
    {.section = "notifications",
     .name = "schedule",
     .type = CONFPARSE_STRING,
     .offset = OFF(notify_schedule),
     .default_text = "daily 09:00"},
    {.section = "notifications",
     .name = "time_zone",
     .type = CONFPARSE_STRING,
     .offset = OFF(notify_time_zone),
     .default_text = "Asia/Tokyo"},
    {.section = "notifications",
     .name = "from",
     .type = CONFPARSE_STRING,
     .offset = OFF(notify_from)},
    {.section = "notifications",
     .name = "base_url",
     .type = CONFPARSE_STRING,
     .offset = OFF(notify_base_url)},
    {.section = "notifications",
     .name = "language",
     .type = CONFPARSE_CHOICE,
     .offset = OFF(notify_language),
     .default_text = "ja",
     .choices = "ja|en"},
    {.section = "notifications",
     .name = "max_entries",
     .type = CONFPARSE_UINT,
     .offset = OFF(notify_max_entries),
     .default_text = "100",
     .min = 1,
     .max = MANAGER_MAX_DIGEST_ENTRIES},

    /* where the store lives: SQLite under data_dir, or a PostgreSQL database */
    {.section = "store",
     .name = "backend",
     .type = CONFPARSE_CHOICE,
     .offset = OFF(store_backend),
     .default_text = "sqlite",
     .choices = "sqlite|postgresql"},
    {.section = "store", .name = "dsn", .type = CONFPARSE_STRING, .offset = OFF(store_dsn)},
    /* this process among those sharing one database (default: the host name) */
    {.section = "store",
     .name = "node_name",
     .type = CONFPARSE_STRING,
     .offset = OFF(store_node_name)},
    /* optional standby for the API's reads (lag tolerated there only) */
    {.section = "store",
     .name = "read_dsn",
     .type = CONFPARSE_STRING,
     .offset = OFF(store_read_dsn)},
    /* a PostgreSQL still starting (boot order, a failover) is waited for this long */
    {.section = "store",
     .name = "connect_wait",
     .type = CONFPARSE_DURATION,
     .offset = OFF(store_connect_wait_ms),
     .default_text = "60s",
     .max = MANAGER_MAX_STORE_CONNECT_WAIT},
    /* the gateway registry: who may be listed as pending without a token */
    {.section = "gateways",
     .name = "pending_from",
     .type = CONFPARSE_ACL,
     .offset = OFF(gateways_pending_from),
     .flags = CONFPARSE_KEEP_TEXT,
     .text_offset = OFF(gateways_pending_from_text)},
    {.section = "gateways",
     .name = "max_pending",
     .type = CONFPARSE_UINT,
     .offset = OFF(gateways_max_pending),
     .default_text = "100",
     .min = 1,
     .max = MANAGER_MAX_PENDING_GATEWAYS},
    {.section = "gateways",
     .name = "pending_interval",
     .type = CONFPARSE_DURATION,
     .offset = OFF(gateways_pending_interval_ms),
     .default_text = "1m",
     .min = SEC},
};

#define MANAGER_CONFIG_NKEYS (sizeof(manager_config_keys) / sizeof(manager_config_keys[0]))

/* [spam_quarantine]'s SMTP listener keys, the ones lazaret-gw's [listener] has too. */
const struct smtp_listener_keys manager_config_listener = {
    .offset = SMTP_LISTENER_OFFSETS(struct manager_config, smtp_listen),
    .defaults =
	{
	    [SMTP_LISTENER_LISTEN] = "127.0.0.1:6025",
	    [SMTP_LISTENER_MAX_CONNECTIONS_PER_CLIENT] = "100",
	},
    .section = "spam_quarantine",
};

/* [http]'s listener keys, the ones lazaret-gw's [http] has too. */
const struct http_config_keys manager_config_http = {
    .offset = HTTP_CONFIG_OFFSETS(struct manager_config),
    .defaults = {[HTTP_CONFIG_LISTEN] = "127.0.0.1:8080"},
    .section = "http",
};
#define MANAGER_CONFIG_ALL_KEYS (MANAGER_CONFIG_NKEYS + SMTP_LISTENER_NKEYS + HTTP_CONFIG_NKEYS)

/* The whole key table: the manager's own rows, then the shared listener and HTTP rows. */
static void manager_config_all_keys(struct confparse_key *keys)
{
	smtp_listener_keys_join(manager_config_keys, MANAGER_CONFIG_NKEYS, &manager_config_listener,
				keys);
	http_config_keys_rows(&manager_config_http,
			      keys + MANAGER_CONFIG_NKEYS + SMTP_LISTENER_NKEYS);
}

/* A certificate and its key go together; both must be readable. */
static void manager_config_check_pair(struct confparse *cp, const char *section, const char *cert,
				      const char *key)
{
	confparse_check_tls_pair(cp, section, cert, key);
	confparse_check_readable(cp, section, "tls_cert", cert);
	confparse_check_readable(cp, section, "tls_key", key);
}

/*
 * Transport security: [http] HTTPS (then session cookies are Secure unless
 * secure_cookies says otherwise), and the quarantine listener's STARTTLS policy.
 */
static void manager_config_tls(struct confparse *cp, struct manager_config *cfg)
{
	manager_config_check_pair(cp, "spam_quarantine", cfg->tls_cert, cfg->tls_key);
	manager_config_check_pair(cp, "http", cfg->http_tls_cert, cfg->http_tls_key);
	confparse_check_readable(cp, "spam_quarantine", "tls_client_ca", cfg->tls_client_ca);
	if ((cfg->tls_require || cfg->tls_client_ca != NULL) && cfg->tls_cert == NULL)
		confparse_error(cp, "spam_quarantine",
				cfg->tls_require ? "tls_require" : "tls_client_ca",
				"needs tls_cert and tls_key (STARTTLS)");
	cfg->http_tls = cfg->http_tls_cert != NULL && cfg->http_tls_key != NULL;
	if (cfg->http_tls && !confparse_has_value(cp, "http", "secure_cookies"))
		cfg->secure_cookies = true;
}

/*
 * The web application an installed lazaretd finds: LAZARET_WEB_FROM_BINDIR (from the
 * build: relative to the folder of the running program, or absolute), canonical, when
 * it holds a readable index.html. New string, or NULL.
 */
char *manager_config_installed_web(void)
{
	const char *from_bindir = LAZARET_WEB_FROM_BINDIR;
	char *guess = NULL;
	if (from_bindir[0] == '/') {
		guess = xstrdup(from_bindir);
	} else {
		char *exe = realpath("/proc/self/exe", NULL);
		char *slash = exe != NULL ? strrchr(exe, '/') : NULL;
		if (slash != NULL) {
			*slash = '\0';
			guess = xasprintf("%s/%s", exe, from_bindir);
		}
		free(exe);
	}
	char *web = guess != NULL ? realpath(guess, NULL) : NULL;
	free(guess);
	if (web == NULL)
		return NULL;
	char *index = xasprintf("%s/index.html", web);
	if (access(index, R_OK) != 0) {
		free(web);
		web = NULL;
	}
	free(index);
	return web;
}

/*
 * [http] web_root: a folder with index.html when set; when not set, the web/ folder
 * beside the config file's folder if it has one (a source tree: etc/ and web/ side by
 * side), else the one installed with lazaretd (<datadir>/lazaret/web), else no web
 * application. Set to nothing ("web_root =") it stays off.
 */
static void manager_config_web_root(struct confparse *cp, struct manager_config *cfg)
{
	if (cfg->web_root != NULL) {
		char *index = xasprintf("%s/index.html", cfg->web_root);
		if (access(index, R_OK) != 0)
			confparse_error(cp, "http", "web_root", "cannot read %s: %s", index,
					strerror(errno));
		free(index);
		return;
	}
	if (confparse_is_set(cp, "http", "web_root"))
		return;
	char *guess = confparse_resolve_path(cp, "../web");
	char *index = xasprintf("%s/index.html", guess);
	if (access(index, R_OK) == 0) {
		cfg->web_root = guess;
	} else {
		free(guess);
		cfg->web_root = manager_config_installed_web();
	}
	free(index);
}

/* [notifications]: a schedule and zone notify can use, a sender, links that resolve. */
static void manager_config_notifications(struct confparse *cp, struct manager_config *cfg)
{
	struct notify_schedule sched;
	struct tz_zone *tz = NULL;
	char *err = NULL;
	if (cfg->notify_schedule != NULL &&
	    notify_schedule_parse(cfg->notify_schedule, &sched, &err) < 0)
		confparse_error(cp, "notifications", "schedule", "%s", err);
	free(err);
	if (cfg->notify_time_zone != NULL) {
		int rc = tz_load(cfg->notify_time_zone, &tz);
		if (rc < 0)
			confparse_error(cp, "notifications", "time_zone",
					rc == -ENOENT ? "unknown time zone \"%s\" (tz database "
							"names such as Asia/Tokyo)"
						      : "\"%s\" is not a usable time zone",
					cfg->notify_time_zone);
		tz_free(tz);
	}
	if (cfg->notify_enabled &&
	    (cfg->notify_from == NULL || strchr(cfg->notify_from, '@') == NULL))
		confparse_error(cp, "notifications", "from",
				"an address (digests@example.jp) is required when enabled");
	if (cfg->notify_base_url != NULL && strncmp(cfg->notify_base_url, "http://", 7) != 0 &&
	    strncmp(cfg->notify_base_url, "https://", 8) != 0)
		confparse_error(cp, "notifications", "base_url",
				"must start with http:// or https://");
	if (cfg->notify_base_url == NULL && cfg->http_listen != NULL)
		cfg->notify_base_url =
		    xasprintf("%s://%s", cfg->http_tls ? "https" : "http", cfg->http_listen);
}

/* A CA file a directory client will trust: it must load, not merely exist. */
static void manager_config_check_ca(struct confparse *cp, const char *section, const char *path)
{
	if (path == NULL)
		return;
	char *err = NULL;
	SSL_CTX *ctx = tls_client_context(path, NULL, NULL, true, &err);
	if (ctx == NULL)
		confparse_error(cp, section, "ca_file", "%s", err);
	else
		SSL_CTX_free(ctx);
	free(err);
}

/* [auth_imap] / [auth_ldap] TLS: CA files that load; no CA without TLS to use it. */
static void manager_config_directory_tls(struct confparse *cp, struct manager_config *cfg)
{
	manager_config_check_ca(cp, "auth_imap", cfg->imap_ca_file);
	manager_config_check_ca(cp, "auth_ldap", cfg->ldap_ca_file);
	if (cfg->ldap_uri != NULL && strncasecmp(cfg->ldap_uri, "ldap://", 7) != 0 &&
	    strncasecmp(cfg->ldap_uri, "ldaps://", 8) != 0 &&
	    strncasecmp(cfg->ldap_uri, "ldapi://", 8) != 0)
		confparse_error(cp, "auth_ldap", "uri",
				"must start with ldap://, ldaps:// or ldapi://");
	if (cfg->ldap_starttls && cfg->ldap_uri != NULL &&
	    strncasecmp(cfg->ldap_uri, "ldaps://", 8) == 0)
		confparse_error(cp, "auth_ldap", "starttls",
				"is for ldap:// URIs (ldaps:// is TLS already)");
	if (cfg->imap_ca_file != NULL && cfg->imap_tls != NULL &&
	    strcmp(cfg->imap_tls, "none") == 0)
		confparse_error(cp, "auth_imap", "ca_file", "needs tls = starttls or imaps");
}

/* [auth_oidc]: what the provider needs, an https:// issuer (http:// on loopback only). */
static void manager_config_oidc(struct confparse *cp, struct manager_config *cfg)
{
	if (cfg->oidc_issuer == NULL) {
		if (cfg->oidc_client_id != NULL)
			confparse_error(cp, "auth_oidc", "issuer",
					"is required when client_id is set");
		return;
	}
	if (auth_oidc_url_ok(cfg->oidc_issuer, true) < 0)
		confparse_error(cp, "auth_oidc", "issuer",
				"must be an https:// URL (http:// only on a loopback address)");
	if (cfg->oidc_client_id == NULL)
		confparse_error(cp, "auth_oidc", "client_id", "is required when issuer is set");
	if (cfg->oidc_client_secret_file == NULL)
		confparse_error(cp, "auth_oidc", "client_secret_file",
				"is required when issuer is set");
	else if (access(cfg->oidc_client_secret_file, R_OK) != 0)
		confparse_error(cp, "auth_oidc", "client_secret_file", "cannot read %s: %s",
				cfg->oidc_client_secret_file, strerror(errno));
	if (cfg->oidc_scopes == NULL || !auth_oidc_word_in(cfg->oidc_scopes, "openid"))
		confparse_error(cp, "auth_oidc", "scopes", "must include openid");
	if ((cfg->oidc_admin_values != NULL || cfg->oidc_operator_values != NULL) &&
	    cfg->oidc_role_claim == NULL)
		confparse_error(cp, "auth_oidc", "role_claim",
				"is required with admin_values or operator_values");
	manager_config_check_ca(cp, "auth_oidc", cfg->oidc_ca_file);
	if (cfg->oidc_redirect_uri != NULL && strncmp(cfg->oidc_redirect_uri, "https://", 8) != 0 &&
	    strncmp(cfg->oidc_redirect_uri, "http://", 7) != 0)
		confparse_error(cp, "auth_oidc", "redirect_uri",
				"must start with http:// or https://");
	if (cfg->oidc_redirect_uri == NULL && cfg->notify_base_url != NULL) {
		size_t n = strlen(cfg->notify_base_url);
		while (n > 0 && cfg->notify_base_url[n - 1] == '/')
			n--;
		cfg->oidc_redirect_uri =
		    xasprintf("%.*s/auth/oidc/callback", (int)n, cfg->notify_base_url);
	}
}

/* [auth_saml]: on when idp_metadata is set; then the SP's keys, URL and domains too. */
static void manager_config_saml(struct confparse *cp, struct manager_config *cfg)
{
	if (cfg->saml_idp_metadata == NULL) {
		if (cfg->saml_base_url != NULL || cfg->saml_sp_key_file != NULL ||
		    cfg->saml_sp_cert_file != NULL || cfg->saml_allowed_domains != NULL)
			confparse_error(cp, "auth_saml", "idp_metadata",
					"is required to turn SAML sign-in on");
		return;
	}
	static const char *const needed[] = {"base_url", "sp_key_file", "sp_cert_file",
					     "allowed_domains"};
	const char *values[] = {cfg->saml_base_url, cfg->saml_sp_key_file, cfg->saml_sp_cert_file,
				cfg->saml_allowed_domains};
	for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++) {
		if (values[i] == NULL || values[i][strspn(values[i], ", \t")] == '\0')
			confparse_error(cp, "auth_saml", needed[i],
					"is required when idp_metadata is set");
	}
	if (cfg->saml_base_url != NULL && strncmp(cfg->saml_base_url, "https://", 8) != 0 &&
	    strncmp(cfg->saml_base_url, "http://", 7) != 0)
		confparse_error(cp, "auth_saml", "base_url",
				"must be the manager's http:// or https:// URL");
	confparse_check_readable(cp, "auth_saml", "idp_metadata", cfg->saml_idp_metadata);
	confparse_check_readable(cp, "auth_saml", "sp_key_file", cfg->saml_sp_key_file);
	confparse_check_readable(cp, "auth_saml", "sp_cert_file", cfg->saml_sp_cert_file);
}

/* [http] allowed_origins: each "http[s]://host[:port]", no path, no wildcard. */
static void manager_config_origins(struct confparse *cp, const char *list)
{
	for (const char *p = list != NULL ? list : ""; *p != '\0';) {
		p += strspn(p, ", \t");
		size_t len = strcspn(p, ", \t");
		if (len == 0)
			break;
		const char *host = NULL;
		if (len > 7 && strncmp(p, "http://", 7) == 0)
			host = p + 7;
		else if (len > 8 && strncmp(p, "https://", 8) == 0)
			host = p + 8;
		size_t hlen = host != NULL ? len - (size_t)(host - p) : 0;
		if (hlen > 0 && host[hlen - 1] == '/')
			hlen--;
		bool ok = hlen > 0;
		for (size_t i = 0; ok && i < hlen; i++) {
			char c = host[i];
			ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			     (c >= '0' && c <= '9') || c == '.' || c == '-' || c == ':' ||
			     c == '[' || c == ']';
		}
		if (!ok)
			confparse_error(cp, "http", "allowed_origins",
					"\"%.*s\" is not an origin (http[s]://host[:port])",
					(int)len, p);
		p += len;
	}
}

/* Checks across keys and fills defaults derived from other keys. */
static void manager_config_validate(struct confparse *cp, void *target, void *arg)
{
	struct manager_config *cfg = target;
	if (cfg->admin_token != NULL && !confparse_token_ok(cfg->admin_token))
		confparse_error(cp, "http", "admin_token",
				"must be visible ASCII characters without spaces");

	manager_config_tls(cp, cfg);

	manager_config_web_root(cp, cfg);

	if ((cfg->initial_admin == NULL) != (cfg->initial_admin_password_file == NULL))
		confparse_error(cp, "manager",
				cfg->initial_admin == NULL ? "initial_admin"
							   : "initial_admin_password_file",
				"initial_admin and initial_admin_password_file go together");
	if (cfg->initial_admin_password_file != NULL &&
	    access(cfg->initial_admin_password_file, R_OK) != 0)
		confparse_error(cp, "manager", "initial_admin_password_file", "cannot read %s: %s",
				cfg->initial_admin_password_file, strerror(errno));
	if (cfg->session_max_age_ms < cfg->session_idle_timeout_ms)
		confparse_error(cp, "http", "session_max_age",
				"must not be less than session_idle_timeout");
	if (cfg->login_backoff_max_ms < cfg->login_failure_window_ms)
		confparse_error(cp, "http", "login_backoff_max",
				"must not be less than login_failure_window");
	manager_config_origins(cp, cfg->allowed_origins);
	unsigned roles = 0;
	if (api_users_roles_parse(cfg->totp_required, &roles) < 0)
		confparse_error(cp, "http", "totp_required",
				"must list roles among admin, operator and enduser");
	if (cfg->imap_host != NULL && cfg->imap_domain == NULL)
		confparse_error(cp, "auth_imap", "domain",
				"is required when host is set (the users' mail domain)");
	if (cfg->ldap_uri != NULL && cfg->ldap_base_dn == NULL)
		confparse_error(cp, "auth_ldap", "base_dn", "is required when uri is set");
	if (cfg->ldap_user_filter != NULL) {
		const char *pct = strstr(cfg->ldap_user_filter, "%s");
		if (pct == NULL || strstr(pct + 2, "%s") != NULL ||
		    strchr(cfg->ldap_user_filter, '%') != pct)
			confparse_error(cp, "auth_ldap", "user_filter",
					"must contain %%s exactly once (and no other %%)");
	}

	manager_config_directory_tls(cp, cfg);
	manager_config_saml(cp, cfg);
	manager_config_notifications(cp, cfg);

	manager_config_oidc(cp, cfg);

	if (cfg->retry_max_ms < cfg->retry_min_ms)
		confparse_error(cp, "release", "retry_max", "must not be less than retry_min");

	/* Archives must not end up inside the next archive. */
	if (cfg->backup_dir != NULL && cfg->data_dir != NULL &&
	    strcmp(cfg->backup_dir, cfg->data_dir) == 0)
		confparse_error(cp, "backup", "dir", "must not be [manager] data_dir itself");

	bool pg = cfg->store_backend != NULL && strcmp(cfg->store_backend, "postgresql") == 0;
	if (pg && (cfg->store_dsn == NULL || cfg->store_dsn[0] == '\0'))
		confparse_error(cp, "store", "dsn", "is required when backend = postgresql");
	if (!pg && cfg->store_dsn != NULL && cfg->store_dsn[0] != '\0')
		confparse_error(cp, "store", "dsn", "is for backend = postgresql only");
	if (cfg->store_node_name != NULL && cfg->store_node_name[0] != '\0' &&
	    store_node_name_check(cfg->store_node_name) < 0)
		confparse_error(cp, "store", "node_name",
				"must be 1-253 printable ASCII characters without spaces");
	if (!pg && cfg->store_read_dsn != NULL && cfg->store_read_dsn[0] != '\0')
		confparse_error(cp, "store", "read_dsn", "is for backend = postgresql only");

	if (cfg->hostname == NULL && cfg->name != NULL)
		cfg->hostname = xstrdup(cfg->name);
	if (cfg->helo_name == NULL && cfg->hostname != NULL)
		cfg->helo_name = xstrdup(cfg->hostname);
}

int manager_config_load(const char *path, struct manager_config *cfg, char **errors)
{
	struct confparse_key keys[MANAGER_CONFIG_ALL_KEYS];
	manager_config_all_keys(keys);
	struct confparse *cp = confparse_new(path, keys, MANAGER_CONFIG_ALL_KEYS);

	memset(cfg, 0, sizeof(*cfg));
	cfg->path = xstrdup(path);
	int rc = confparse_load(cp, cfg, manager_config_validate, NULL, errors);
	if (rc < 0)
		manager_config_free(cfg);
	return rc;
}

void manager_config_free(struct manager_config *cfg)
{
	if (cfg == NULL)
		return;
	struct confparse_key keys[MANAGER_CONFIG_ALL_KEYS];
	manager_config_all_keys(keys);
	confparse_free_target(keys, MANAGER_CONFIG_ALL_KEYS, cfg);
	free(cfg->path);
	memset(cfg, 0, sizeof(*cfg));
}

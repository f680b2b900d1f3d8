/*
 * Tests for manager/manager_config: lazaretd.conf as the contract shows it, a
 * file setting every key, the defaults, and each validation error as the
 * operator sees it (file, line, key, message).
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/acl.h"
#include "common/xalloc.h"
#include "manager/auth_oidc.h"
#include "manager/manager_config.h"

#define SEC  INT64_C(1000)
#define MIN  (60 * SEC)
#define HOUR (60 * MIN)
#define DAY  (24 * HOUR)

static char test_dir[PATH_MAX];
static char conf_path[PATH_MAX + 32];
static char cert_path[PATH_MAX + 32];
static char key_path[PATH_MAX + 32];

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
	assert_int_equal(fclose(f), 0);
}

static int setup_dir(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/lazaret-test-mconf-XXXXXX";
	if (mkdtemp(tmpl) == NULL || realpath(tmpl, test_dir) == NULL)
		return -1;
	snprintf(conf_path, sizeof(conf_path), "%s/lazaretd.conf", test_dir);
	snprintf(cert_path, sizeof(cert_path), "%s/cert.pem", test_dir);
	snprintf(key_path, sizeof(key_path), "%s/key.pem", test_dir);
	FILE *f = fopen(cert_path, "w");
	if (f == NULL)
		return -1;
	fclose(f);
	f = fopen(key_path, "w");
	if (f == NULL)
		return -1;
	fclose(f);
	return 0;
}

static int teardown_dir(void **state)
{
	(void)state;
	unlink(conf_path);
	unlink(cert_path);
	unlink(key_path);
	rmdir(test_dir);
	return 0;
}

/* Replaces every occurrence of the config file's path in s with "F" (in place). */
static char *with_short_path(char *s)
{
	if (s == NULL)
		return NULL;
	size_t plen = strlen(conf_path);
	char *out = s, *in = s;
	while (*in != '\0') {
		if (strncmp(in, conf_path, plen) == 0) {
			*out++ = 'F';
			in += plen;
		} else {
			*out++ = *in++;
		}
	}
	*out = '\0';
	return s;
}

static int load(const char *text, struct manager_config *cfg, char **errors)
{
	write_file(conf_path, text);
	int rc = manager_config_load(conf_path, cfg, errors);
	with_short_path(*errors);
	return rc;
}

static char *in_dir(const char *rel)
{
	return xasprintf("%s/%s", test_dir, rel);
}

/* The example configuration of the manager, byte for byte. */
static const char contract_example[] =
    "[manager]\n"
    "name = lazaret1              ; appears in trace headers\n"
    "data_dir = ../var/lazaret    ; store lives here\n"
    "\n"
    "[http]\n"
    "listen = 127.0.0.1:8080\n"
    "admin_token = change-me      ; Bearer token for /api/v1 (admin rights)\n"
    "\n"
    "[spam_quarantine]\n"
    "listen = 127.0.0.1:6025\n"
    "accept_from = 127.0.0.1/32, ::1/128   ; CIDRs; others: 554 at connect\n"
    "delete_after = 14d                    ; 0 = never delete automatically\n"
    "purge_interval = 1h                   ; how often expiry runs\n"
    "max_message_size = 50M\n"
    "\n"
    "[release]\n"
    "primary_host = 127.0.0.1:10025\n"
    "secondary_host =                      ; optional host:port\n"
    "source_address = 127.0.0.1            ; outgoing SMTP binds here\n";

static void test_contract_example(void **state)
{
	struct manager_config cfg;
	char *errors = NULL;
	(void)state;
	int rc = load(contract_example, &cfg, &errors);
	if (rc != 0)
		fail_msg("rc %d: %s", rc, errors ? errors : "");
	assert_null(errors);
	assert_string_equal(cfg.path, conf_path);
	assert_string_equal(cfg.name, "lazaret1");
	char *dd = in_dir("../var/lazaret");
	assert_string_equal(cfg.data_dir, dd);
	free(dd);
	assert_string_equal(cfg.http_listen, "127.0.0.1:8080");
	assert_string_equal(cfg.admin_token, "change-me");
	assert_string_equal(cfg.smtp_listen, "127.0.0.1:6025");
	assert_string_equal(cfg.accept_from_text, "127.0.0.1/32, ::1/128");
	assert_true(acl_match_text(cfg.accept_from, "127.0.0.1"));
	assert_true(acl_match_text(cfg.accept_from, "::1"));
	assert_false(acl_match_text(cfg.accept_from, "127.0.0.2"));
	assert_int_equal(cfg.delete_after_ms, 14 * DAY);
	assert_int_equal(cfg.purge_interval_ms, HOUR);
	assert_int_equal(cfg.max_message_size, 50 * 1024 * 1024);
	assert_string_equal(cfg.primary_host, "127.0.0.1:10025");
	assert_null(cfg.secondary_host);
	assert_string_equal(cfg.source_address, "127.0.0.1");
	/* Derived defaults: the greeting and EHLO use the manager's name. */
	assert_string_equal(cfg.hostname, "lazaret1");
	assert_string_equal(cfg.helo_name, "lazaret1");
	manager_config_free(&cfg);
	assert_null(cfg.name);
	assert_null(cfg.accept_from);
	manager_config_free(&cfg); /* freeing twice is harmless after zeroing */
}

static void test_defaults(void **state)
{
	struct manager_config cfg;
	char *errors = NULL;
	(void)state;
	assert_int_equal(load("[http]\nadmin_token = s3cret\n", &cfg, &errors), 0);
	assert_null(errors);
	assert_string_equal(cfg.name, "lazaret");
	char *dd = in_dir("var");
	assert_string_equal(cfg.data_dir, dd);
	free(dd);
	assert_string_equal(cfg.user, "lazaret");
	assert_string_equal(cfg.log_level, "info");
	assert_string_equal(cfg.store_backend, "sqlite");
	assert_null(cfg.store_dsn);
	assert_string_equal(cfg.http_listen, "127.0.0.1:8080");
	assert_string_equal(cfg.admin_token, "s3cret");
	assert_int_equal(cfg.http_max_body, 1024 * 1024);
	assert_string_equal(cfg.smtp_listen, "127.0.0.1:6025");
	assert_string_equal(cfg.accept_from_text, "127.0.0.1/32, ::1/128");
	assert_int_equal(acl_count(cfg.accept_from), 2);
	assert_true(acl_match_text(cfg.accept_from, "::ffff:127.0.0.1"));
	assert_false(acl_match_text(cfg.accept_from, "192.0.2.1"));
	assert_int_equal(cfg.delete_after_ms, 14 * DAY);
	assert_int_equal(cfg.purge_interval_ms, HOUR);
	assert_int_equal(cfg.max_message_size, 50 * 1024 * 1024);
	assert_int_equal(cfg.max_recipients, 1000);
	assert_int_equal(cfg.max_connections, 500);
	assert_int_equal(cfg.idle_timeout_ms, 5 * MIN);
	assert_int_equal(cfg.max_connections_per_client, 100);
	assert_int_equal(cfg.command_timeout_ms, 1 * MIN);
	assert_int_equal(cfg.data_timeout_ms, 10 * MIN);
	assert_int_equal(cfg.http_max_connections, 256);
	assert_int_equal(cfg.http_max_connections_per_client, 32);
	assert_int_equal(cfg.http_request_timeout_ms, 30 * SEC);
	assert_int_equal(cfg.http_keepalive_timeout_ms, 15 * SEC);
	assert_int_equal(cfg.max_header_count, 1000);
	assert_int_equal(cfg.max_header_size, 64 * 1024);
	assert_int_equal(cfg.max_command_line, 512);
	assert_int_equal(cfg.max_data_line, 64 * 1024);
	assert_int_equal(cfg.max_commands_before_mail, 50);
	assert_int_equal(cfg.max_errors, 20);
	assert_string_equal(cfg.hostname, "lazaret");
	assert_null(cfg.tls_cert);
	assert_null(cfg.tls_key);
	assert_int_equal(cfg.shutdown_grace_ms, 30 * SEC);
	assert_string_equal(cfg.primary_host, "127.0.0.1:10025");
	assert_null(cfg.secondary_host);
	assert_null(cfg.source_address);
	assert_int_equal(cfg.release_max_connections, 10);
	assert_int_equal(cfg.release_timeout_ms, 60 * SEC);
	assert_int_equal(cfg.retry_min_ms, MIN);
	assert_int_equal(cfg.retry_max_ms, HOUR);
	assert_int_equal(cfg.give_up_after_ms, 5 * DAY);
	assert_string_equal(cfg.helo_name, "lazaret");
	manager_config_free(&cfg);
}

static void test_every_key(void **state)
{
	struct manager_config cfg;
	char *errors = NULL;
	(void)state;
	char *text = xasprintf("[manager]\n"
			       "name = qm-tokyo\n"
			       "data_dir = /srv/lazaret\n"
			       "user = _lazaret\n"
			       "log_level = debug\n"
			       "[http]\n"
			       "listen = [::1]:8443\n"
			       "admin_token = \"tok;en#1\"\n"
			       "max_body = 4M\n"
			       "[spam_quarantine]\n"
			       "listen = 127.0.0.5:2526\n"
			       "accept_from = 192.0.2.0/24 2001:db8::/32\n"
			       "delete_after = 0\n"
			       "purge_interval = 10m\n"
			       "max_message_size = 2G\n"
			       "max_recipients = 50\n"
			       "max_connections = 20\n"
			       "idle_timeout = 30s\n"
			       "max_header_count = 300\n"
			       "max_header_size = 256K\n"
			       "max_command_line = 2048\n"
			       "max_data_line = 1000\n"
			       "max_commands_before_mail = 5\n"
			       "max_errors = 3\n"
			       "hostname = mx1.example.jp\n"
			       "tls_cert = cert.pem\n"
			       "tls_key = %s\n"
			       "shutdown_grace = 0\n"
			       "[release]\n"
			       "primary_host = mx.example.jp:25\n"
			       "secondary_host = [2001:db8::25]:2525\n"
			       "source_address = ::1\n"
			       "max_connections = 3\n"
			       "timeout = 2m\n"
			       "retry_min = 30s\n"
			       "retry_max = 2h\n"
			       "give_up_after = 3d\n"
			       "helo_name = out.example.jp\n"
			       "[store]\n"
			       "backend = postgresql\n"
			       "dsn = \"host=db.example.jp dbname=lazaret user=lazaret\"\n"
			       "node_name = qm-tokyo-2\n",
			       key_path);
	int rc = load(text, &cfg, &errors);
	free(text);
	if (rc != 0)
		fail_msg("rc %d: %s", rc, errors ? errors : "");
	assert_string_equal(cfg.name, "qm-tokyo");
	assert_string_equal(cfg.data_dir, "/srv/lazaret");
	assert_string_equal(cfg.user, "_lazaret");
	assert_string_equal(cfg.log_level, "debug");
	assert_string_equal(cfg.store_backend, "postgresql");
	assert_string_equal(cfg.store_dsn, "host=db.example.jp dbname=lazaret user=lazaret");
	assert_string_equal(cfg.store_node_name, "qm-tokyo-2");
	assert_string_equal(cfg.http_listen, "[::1]:8443");
	assert_string_equal(cfg.admin_token, "tok;en#1");
	assert_int_equal(cfg.http_max_body, 4 * 1024 * 1024);
	assert_string_equal(cfg.smtp_listen, "127.0.0.5:2526");
	assert_true(acl_match_text(cfg.accept_from, "192.0.2.9"));
	assert_true(acl_match_text(cfg.accept_from, "2001:db8::9"));
	assert_false(acl_match_text(cfg.accept_from, "127.0.0.1"));
	assert_int_equal(cfg.delete_after_ms, 0);
	assert_int_equal(cfg.purge_interval_ms, 10 * MIN);
	assert_int_equal(cfg.max_message_size, UINT64_C(2) * 1024 * 1024 * 1024);
	assert_int_equal(cfg.max_recipients, 50);
	assert_int_equal(cfg.max_connections, 20);
	assert_int_equal(cfg.idle_timeout_ms, 30 * SEC);
	assert_int_equal(cfg.max_header_count, 300);
	assert_int_equal(cfg.max_header_size, 256 * 1024);
	assert_int_equal(cfg.max_command_line, 2048);
	assert_int_equal(cfg.max_data_line, 1000);
	assert_int_equal(cfg.max_commands_before_mail, 5);
	assert_int_equal(cfg.max_errors, 3);
	assert_string_equal(cfg.hostname, "mx1.example.jp");
	assert_string_equal(cfg.tls_cert, cert_path);
	assert_string_equal(cfg.tls_key, key_path);
	assert_int_equal(cfg.shutdown_grace_ms, 0);
	assert_string_equal(cfg.primary_host, "mx.example.jp:25");
	assert_string_equal(cfg.secondary_host, "[2001:db8::25]:2525");
	assert_string_equal(cfg.source_address, "::1");
	assert_int_equal(cfg.release_max_connections, 3);
	assert_int_equal(cfg.release_timeout_ms, 2 * MIN);
	assert_int_equal(cfg.retry_min_ms, 30 * SEC);
	assert_int_equal(cfg.retry_max_ms, 2 * HOUR);
	assert_int_equal(cfg.give_up_after_ms, 3 * DAY);
	assert_string_equal(cfg.helo_name, "out.example.jp");
	manager_config_free(&cfg);
}

static void test_helo_defaults_to_hostname(void **state)
{
	struct manager_config cfg;
	char *errors = NULL;
	(void)state;
	assert_int_equal(load("[http]\nadmin_token = t\n[spam_quarantine]\nhostname = mx.example\n",
			      &cfg, &errors),
			 0);
	assert_string_equal(cfg.name, "lazaret");
	assert_string_equal(cfg.hostname, "mx.example");
	assert_string_equal(cfg.helo_name, "mx.example");
	manager_config_free(&cfg);
}

/* Each file has one mistake; the operator sees exactly this. */
static void test_validation_errors(void **state)
{
	static const struct {
		const char *text;
		const char *errors;
	} cases[] = {
	    {"[manager]\nname = x\n", "F:2: [http] admin_token: is required but missing\n"},
	    {"[manager]\nname = x\n[http]\nlisten = 127.0.0.1:8080\n",
	     "F:3: [http] admin_token: is required but missing\n"},
	    {"[http]\nadmin_token =\n", "F:2: [http] admin_token: must not be empty\n"},
	    {"[http]\nadmin_token = two words\n",
	     "F:2: [http] admin_token: must be visible ASCII characters without spaces\n"},
	    {"[http]\nadmin_token = t\n[manager]\nlog_level = verbose\n",
	     "F:4: [manager] log_level: \"verbose\" is not one of error|warn|info|debug\n"},
	    {"[http]\nadmin_token = t\n[manager]\nname = two words\n",
	     "F:4: [manager] name: \"two words\" is not a host name or address\n"},
	    {"[http]\nadmin_token = t\n[manager]\nnmae = x\n",
	     "F:4: [manager] nmae: unknown key\n"},
	    {"[http]\nadmin_token = t\n[smtp]\nlisten = 127.0.0.1:25\n",
	     "F:3: [smtp] unknown section\n"},
	    {"[http]\nadmin_token = t\nlisten = localhost\n",
	     "F:3: [http] listen: \"localhost\" needs a port: host:port\n"},
	    {"[http]\nadmin_token = t\n[release]\nprimary_host = ::1:25\n",
	     "F:4: [release] primary_host: \"::1:25\" IPv6 addresses need brackets: "
	     "[2001:db8::1]:25\n"},
	    {"[http]\nadmin_token = t\n[release]\nsecondary_host = 127.0.0.1:0\n",
	     "F:4: [release] secondary_host: \"127.0.0.1:0\" port must be a number 1-65535\n"},
	    {"[http]\nadmin_token = t\n[release]\nsource_address = 127.0.0.1:25\n",
	     "F:4: [release] source_address: \"127.0.0.1:25\" is not an IPv4 or IPv6 address\n"},
	    {"[http]\nadmin_token = t\n[spam_quarantine]\naccept_from = 127.0.0.1/32, 10.0.0.1/8\n",
	     "F:4: [spam_quarantine] accept_from: bad entry \"10.0.0.1/8\": host bits are set "
	     "after /8 (did you mean 10.0.0.0/8?)\n"},
	    {"[http]\nadmin_token = t\n[spam_quarantine]\npurge_interval = 0\n",
	     "F:4: [spam_quarantine] purge_interval: must be at least 1s\n"},
	    {"[http]\nadmin_token = t\n[spam_quarantine]\ndelete_after = 14\n",
	     "F:4: [spam_quarantine] delete_after: \"14\" needs a unit: s, m, h or d (e.g. 30s, "
	     "14d)\n"},
	    {"[http]\nadmin_token = t\n[spam_quarantine]\nmax_message_size = 0\n",
	     "F:4: [spam_quarantine] max_message_size: must be at least 1 bytes\n"},
	    {"[http]\nadmin_token = t\n[spam_quarantine]\nmax_message_size = 3G\n",
	     "F:4: [spam_quarantine] max_message_size: must be at most 2147483648 bytes\n"},
	    {"[http]\nadmin_token = t\n[spam_quarantine]\nmax_recipients = 0\n",
	     "F:4: [spam_quarantine] max_recipients: must be at least 1\n"},
	    {"[http]\nadmin_token = t\n[spam_quarantine]\nmax_command_line = 100\n",
	     "F:4: [spam_quarantine] max_command_line: must be at least 512\n"},
	    {"[http]\nadmin_token = t\n[spam_quarantine]\nmax_data_line = 998\n",
	     "F:4: [spam_quarantine] max_data_line: must be at least 1000 bytes\n"},
	    {"[http]\nadmin_token = t\n[spam_quarantine]\nidle_timeout = 0\n",
	     "F:4: [spam_quarantine] idle_timeout: must be at least 1s\n"},
	    {"[http]\nadmin_token = t\n[spam_quarantine]\ntls_cert = cert.pem\n",
	     "F:3: [spam_quarantine] tls_key: is required when tls_cert is set\n"},
	    {"[http]\nadmin_token = t\n[spam_quarantine]\n\ntls_key = key.pem\n",
	     "F:3: [spam_quarantine] tls_cert: is required when tls_key is set\n"},
	    {"[http]\nadmin_token = t\n[release]\nretry_min = 10m\nretry_max = 5m\n",
	     "F:5: [release] retry_max: must not be less than retry_min\n"},
	    {"[http]\nadmin_token = t\n[release]\ntimeout = 0\n",
	     "F:4: [release] timeout: must be at least 1s\n"},
	    {"[http]\nadmin_token = t\n[release]\nmax_connections = 0\n",
	     "F:4: [release] max_connections: must be at least 1\n"},
	    {"[http]\nadmin_token = t\n[release]\nhelo_name = bad_name!\n",
	     "F:4: [release] helo_name: \"bad_name!\" is not a host name or address\n"},
	    {"[http]\nadmin_token = t\ntotp_required = admin, root\n",
	     "F:3: [http] totp_required: must list roles among admin, operator and enduser\n"},
	    {"[http]\nadmin_token = t\ntotp_required = administrator\n",
	     "F:3: [http] totp_required: must list roles among admin, operator and enduser\n"},
	    {"[http]\nadmin_token = t\n[http]\nadmin_token = u\n",
	     "F:4: [http] admin_token: set twice (first at line 2)\n"},
	    /* Transport security */
	    {"[http]\nadmin_token = t\ntls_cert = cert.pem\n",
	     "F:1: [http] tls_key: is required when tls_cert is set\n"},
	    {"[http]\nadmin_token = t\ntls_key = key.pem\n",
	     "F:1: [http] tls_cert: is required when tls_key is set\n"},
	    {"[http]\nadmin_token = t\n[spam_quarantine]\ntls_require = yes\n",
	     "F:4: [spam_quarantine] tls_require: needs tls_cert and tls_key (STARTTLS)\n"},
	    {"[http]\nadmin_token = t\n[spam_quarantine]\ntls_client_ca = cert.pem\n",
	     "F:4: [spam_quarantine] tls_client_ca: needs tls_cert and tls_key (STARTTLS)\n"},
	    {"[http]\nadmin_token = t\n[auth_imap]\nhost = 127.0.0.1:143\ndomain = x.test\ntls = "
	     "yes\n",
	     "F:6: [auth_imap] tls: \"yes\" is not one of starttls|imaps|none\n"},
	    {"[http]\nadmin_token = t\n[auth_ldap]\nuri = ldaps://x.test/\nbase_dn = dc=x\n"
	     "starttls = yes\n",
	     "F:6: [auth_ldap] starttls: is for ldap:// URIs (ldaps:// is TLS already)\n"},
	    {"[http]\nadmin_token = t\n[auth_ldap]\nuri = http://x.test/\nbase_dn = dc=x\n",
	     "F:4: [auth_ldap] uri: must start with ldap://, ldaps:// or ldapi://\n"},
	    {"[http]\nadmin_token = t\n[store]\nbackend = postgresql\n",
	     "F:3: [store] dsn: is required when backend = postgresql\n"},
	    {"[http]\nadmin_token = t\n[store]\nbackend = postgresql\ndsn =\n",
	     "F:5: [store] dsn: is required when backend = postgresql\n"},
	    {"[http]\nadmin_token = t\n[store]\ndsn = host=db dbname=lazaret\n",
	     "F:4: [store] dsn: is for backend = postgresql only\n"},
	    {"[http]\nadmin_token = t\n[store]\nbackend = mysql\n",
	     "F:4: [store] backend: \"mysql\" is not one of sqlite|postgresql\n"},
	    {"[http]\nadmin_token = t\n[store]\nnode_name = bad name\n",
	     "F:4: [store] node_name: must be 1-253 printable ASCII characters without spaces\n"},
	    {"[http]\nadmin_token = t\n[store]\nnode_name = n\xc3\xb6"
	     "de\n",
	     "F:4: [store] node_name: must be 1-253 printable ASCII characters without spaces\n"},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct manager_config cfg;
		char *errors = NULL;
		int rc = load(cases[i].text, &cfg, &errors);
		if (rc != -EINVAL)
			fail_msg("case %zu: rc %d, want -EINVAL", i, rc);
		if (errors == NULL || strcmp(errors, cases[i].errors) != 0)
			fail_msg("case %zu: errors\n%s\nwant\n%s", i, errors ? errors : "(none)",
				 cases[i].errors);
		/* On failure the config holds nothing. */
		assert_null(cfg.path);
		assert_null(cfg.name);
		assert_null(cfg.accept_from);
		free(errors);
	}
}

/* [auth_oidc]: defaults, the redirect URI from the base URL, and what is refused. */
static void test_oidc(void **state)
{
	(void)state;
	char *secret = in_dir("oidc.secret");
	write_file(secret, "s3cret\n");
	struct manager_config cfg;
	char *errors = NULL;
	char *text = xasprintf("[http]\nadmin_token = t\nlisten = 127.0.0.1:8080\n"
			       "[auth_oidc]\nissuer = https://idp.example.com/realms/mail\n"
			       "client_id = lazaret\nclient_secret_file = %s\n",
			       secret);
	assert_int_equal(load(text, &cfg, &errors), 0);
	free(text);
	assert_string_equal(cfg.oidc_issuer, "https://idp.example.com/realms/mail");
	assert_string_equal(cfg.oidc_scopes, "openid email profile");
	assert_string_equal(cfg.oidc_address_claim, "email");
	assert_null(cfg.oidc_role_claim);
	assert_null(cfg.oidc_allowed_domains);
	assert_string_equal(cfg.oidc_redirect_uri, "http://127.0.0.1:8080/auth/oidc/callback");
	assert_int_equal(cfg.oidc_timeout_ms, 10 * SEC);
	assert_int_equal(cfg.oidc_clock_skew_ms, 60 * SEC);
	manager_config_free(&cfg);

	static const struct {
		const char *body;
		const char *error;
	} bad[] = {
	    {"issuer = http://idp.example.com/\nclient_id = c\n",
	     "[auth_oidc] issuer: must be an https:// URL (http:// only on a loopback address)"},
	    {"issuer = http://127.0.0.1.evil.test/\nclient_id = c\n",
	     "[auth_oidc] issuer: must be an https:// URL"},
	    {"issuer = https://user@idp.example.com/\nclient_id = c\n",
	     "[auth_oidc] issuer: must be an https:// URL"},
	    {"issuer = https://idp.example.com/\n", "[auth_oidc] client_id: is required"},
	    {"issuer = https://idp.example.com/\nclient_id = c\nscopes = email profile\n",
	     "[auth_oidc] scopes: must include openid"},
	    {"issuer = https://idp.example.com/\nclient_id = c\nadmin_values = admins\n",
	     "[auth_oidc] role_claim: is required with admin_values or operator_values"},
	    {"client_id = c\n", "[auth_oidc] issuer: is required when client_id is set"},
	    {"issuer = https://idp.example.com/\nclient_id = c\nclock_skew = 1h\n",
	     "[auth_oidc] clock_skew: must be at most"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		text =
		    xasprintf("[http]\nadmin_token = t\n[auth_oidc]\nclient_secret_file = %s\n%s",
			      secret, bad[i].body);
		int rc = load(text, &cfg, &errors);
		free(text);
		if (rc != -EINVAL || errors == NULL || strstr(errors, bad[i].error) == NULL)
			fail_msg("case %zu: rc %d, errors %s", i, rc, errors ? errors : "(none)");
		free(errors);
		errors = NULL;
	}
	free(secret);

	assert_int_equal(auth_oidc_url_ok("https://idp.example.com", false), 0);
	assert_int_equal(auth_oidc_url_ok("http://127.0.0.1:8080/x", true), 0);
	assert_int_equal(auth_oidc_url_ok("http://[::1]:8080/x", true), 0);
	assert_int_equal(auth_oidc_url_ok("http://localhost/x", true), 0);
	assert_int_equal(auth_oidc_url_ok("http://127.0.0.1:8080/x", false), -EINVAL);
	assert_int_equal(auth_oidc_url_ok("http://10.0.0.1/x", true), -EINVAL);
	assert_int_equal(auth_oidc_url_ok("http://localhost.evil.test/", true), -EINVAL);
	assert_int_equal(auth_oidc_url_ok("http://[::1].evil/", true), -EINVAL);
	assert_int_equal(auth_oidc_url_ok("https://", true), -EINVAL);
	assert_int_equal(auth_oidc_url_ok("https://a b/", true), -EINVAL);
	assert_int_equal(auth_oidc_url_ok("javascript:alert(1)", true), -EINVAL);
	assert_true(auth_oidc_word_in("mail-admins, ops", "ops"));
	assert_false(auth_oidc_word_in("mail-admins, ops", "mail"));
	assert_false(auth_oidc_word_in(NULL, "ops"));
}

/* HTTPS turns Secure cookies on unless secure_cookies says no; an empty value is the default. */
static void test_https_defaults(void **state)
{
	static const struct {
		const char *extra;
		bool secure;
	} cases[] = {
	    {"", true},
	    {"secure_cookies = no\n", false},
	    {"secure_cookies =\n", true},
	    {"secure_cookies = yes\n", true},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct manager_config cfg;
		char *errors = NULL;
		char *text = xasprintf("[http]\nadmin_token = t\nlisten = 127.0.0.1:8443\n"
				       "tls_cert = cert.pem\ntls_key = key.pem\n%s",
				       cases[i].extra);
		assert_int_equal(load(text, &cfg, &errors), 0);
		assert_null(errors);
		assert_true(cfg.http_tls);
		assert_string_equal(cfg.http_tls_cert, cert_path);
		assert_int_equal(cfg.http_hsts_max_age_ms, 365 * DAY);
		if (cfg.secure_cookies != cases[i].secure)
			fail_msg("case %zu: secure_cookies %d", i, cfg.secure_cookies);
		assert_string_equal(cfg.notify_base_url, "https://127.0.0.1:8443");
		assert_string_equal(cfg.imap_tls, "starttls");
		assert_false(cfg.ldap_starttls);
		assert_false(cfg.tls_require);
		manager_config_free(&cfg);
		free(text);
	}
	/* Without HTTPS nothing changes. */
	struct manager_config cfg;
	char *errors = NULL;
	assert_int_equal(load("[http]\nadmin_token = t\n", &cfg, &errors), 0);
	assert_false(cfg.http_tls);
	assert_false(cfg.secure_cookies);
	assert_string_equal(cfg.notify_base_url, "http://127.0.0.1:8080");
	manager_config_free(&cfg);
}

static void test_tls_unreadable_and_many_errors(void **state)
{
	struct manager_config cfg;
	char *errors = NULL;
	(void)state;
	int rc = load("[spam_quarantine]\n"
		      "tls_cert = missing-cert.pem\n"
		      "tls_key = key.pem\n"
		      "max_errors = many\n"
		      "[release]\n"
		      "give_up_after = 5x\n",
		      &cfg, &errors);
	assert_int_equal(rc, -EINVAL);
	char *want = xasprintf(
	    "F:4: [spam_quarantine] max_errors: \"many\" is not a whole number\n"
	    "F:6: [release] give_up_after: \"5x\" must be a whole number with a unit s, m, h or d "
	    "(e.g. 30s, 14d)\n"
	    "F:6: [http] admin_token: is required but missing\n"
	    "F:2: [spam_quarantine] tls_cert: cannot read %s/missing-cert.pem: No such file or "
	    "directory\n",
	    test_dir);
	assert_string_equal(errors, want);
	free(want);
	free(errors);
}

static void test_missing_file(void **state)
{
	struct manager_config cfg;
	char *errors = NULL;
	(void)state;
	int rc = manager_config_load("/nonexistent-lazaret/lazaretd.conf", &cfg, &errors);
	assert_int_equal(rc, -ENOENT);
	assert_string_equal(errors, "/nonexistent-lazaret/lazaretd.conf: cannot open: No such file "
				    "or directory\n");
	assert_null(cfg.path);
	free(errors);
}

/* The shipped configuration files load as they are. */
static void test_shipped_files(void **state)
{
	static const char *const files[] = {"lazaretd.dev.conf", "lazaretd.conf.example"};
	const char *data = getenv("LAZARET_TEST_DATA");
	(void)state;
	if (data == NULL)
		skip();
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		/* LAZARET_TEST_DATA is SRC/tests/unit/data; the files are in SRC/etc. */
		const char *suffix = "/tests/unit/data";
		size_t dlen = strlen(data), slen = strlen(suffix);
		assert_true(dlen > slen && strcmp(data + dlen - slen, suffix) == 0);
		char *path = xasprintf("%.*s/etc/%s", (int)(dlen - slen), data, files[i]);
		struct manager_config cfg;
		char *errors = NULL;
		int rc = manager_config_load(path, &cfg, &errors);
		if (rc != 0)
			fail_msg("%s: rc %d: %s", path, rc, errors ? errors : "");
		assert_string_equal(cfg.smtp_listen, "127.0.0.1:6025");
		assert_string_equal(cfg.http_listen, "127.0.0.1:8080");
		assert_int_equal(cfg.delete_after_ms, 14 * DAY);
		assert_true(acl_match_text(cfg.accept_from, "127.0.0.1"));
		assert_true(acl_match_text(cfg.accept_from, "::1"));
		assert_false(acl_match_text(cfg.accept_from, "192.0.2.1"));
		if (i == 0) {
			assert_string_equal(cfg.admin_token, "dev-token");
			const char *tail = "/var/lazaret";
			size_t dl = strlen(cfg.data_dir), tl = strlen(tail);
			assert_true(dl > tl && strcmp(cfg.data_dir + dl - tl, tail) == 0);
		}
		manager_config_free(&cfg);
		free(path);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_contract_example),
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_every_key),
	    cmocka_unit_test(test_helo_defaults_to_hostname),
	    cmocka_unit_test(test_validation_errors),
	    cmocka_unit_test(test_tls_unreadable_and_many_errors),
	    cmocka_unit_test(test_https_defaults),
	    cmocka_unit_test(test_oidc),
	    cmocka_unit_test(test_missing_file),
	    cmocka_unit_test(test_shipped_files),
	};
	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}

/*
 * Tests for gateway/gw_config: lazaret-gw.conf as docs/GATEWAY.md shows it, the
 * defaults, the [hat] policy.NAME family in file order, and each error as the
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

#include <cmocka.h>

#include "common/acl.h"
#include "gateway/gw_config.h"

#define DAY (INT64_C(86400) * 1000)

static char test_dir[PATH_MAX];
static char conf_path[PATH_MAX + 32];

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
	char tmpl[] = "/tmp/lazaret-test-gwconf-XXXXXX";
	if (mkdtemp(tmpl) == NULL || realpath(tmpl, test_dir) == NULL)
		return -1;
	snprintf(conf_path, sizeof(conf_path), "%s/lazaret-gw.conf", test_dir);
	return 0;
}

static int teardown_dir(void **state)
{
	(void)state;
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", test_dir);
	return system(cmd) == 0 ? 0 : -1;
}

static const char contract_conf[] =
    "[gateway]\nname = gw1\ndata_dir = ../var/gw1\n\n"
    "[listener]\nlisten = 127.0.0.1:2525\nmax_message_size = 50M\n\n"
    "[hat]                        ; sender groups by client address; first match wins\n"
    "policy.blocked = reject: 198.51.100.0/24\n"
    "policy.trusted = accept: 192.0.2.0/24\n"
    "policy.slow = throttle 20: 203.0.113.0/24, 2001:db8::/32\n"
    "default = accept\n\n"
    "[rat]\naccept = example.com, .example.org, postmaster@example.net  ; others: 550 5.7.1\n\n"
    "[delivery]\nnext_hop = 127.0.0.1:10026\n\n"
    "[manager]\naddresses = 127.0.0.2\napi_url = http://127.0.0.1:8080\napi_token = change-me\n\n"
    "[antispam]\nengine = builtin\nspamd = 127.0.0.1:783\nrspamd = 127.0.0.1:11333\n"
    "positive_threshold = 5.0\nsuspect_threshold = 3.0\npositive_action = quarantine\n"
    "suspect_action = tag\ntag = [SUSPECTED SPAM]\n\n"
    "[antivirus]\nengine = none\nclamd = 127.0.0.1:3310\naction = quarantine\n\n"
    "[spam_quarantine]\nenabled = no\ndelete_after = 14d\n\n"
    "[external_spam_quarantine]\nenabled = yes\nname = lazaret1\nhost = 127.0.0.1\nport = 6025\n"
    "safelist_blocklist = yes\nblocklist_action = quarantine\nsync_interval = 10m\n\n"
    "[http]\nlisten = 127.0.0.1:8081\nadmin_token = change-me\n";

static void test_contract_example_loads(void **state)
{
	(void)state;
	write_file(conf_path, contract_conf);
	struct gw_config cfg;
	char *errors = NULL, *warnings = NULL;
	int rc = gw_config_load(conf_path, &cfg, &errors, &warnings);
	if (rc != 0)
		fail_msg("errors: %s", errors);
	assert_string_equal(cfg.name, "gw1");
	assert_string_equal(cfg.hostname, "gw1");
	assert_non_null(strstr(cfg.data_dir, "/var/gw1"));
	assert_true(cfg.data_dir[0] == '/');
	assert_int_equal(cfg.nhat_policies, 3);
	assert_string_equal(cfg.hat_policies[0].name, "blocked");
	assert_int_equal(cfg.hat_policies[0].action, HAT_REJECT);
	assert_string_equal(cfg.hat_policies[1].name, "trusted");
	assert_int_equal(cfg.hat_policies[1].action, HAT_ACCEPT);
	assert_int_equal(cfg.hat_policies[2].action, HAT_THROTTLE);
	assert_int_equal(cfg.hat_policies[2].limit, 20);
	assert_true(acl_match_text(cfg.hat_policies[2].nets, "2001:db8::5"));
	assert_int_equal(cfg.hat_default_action, HAT_ACCEPT);
	assert_true(acl_match_text(cfg.manager_addresses, "127.0.0.2"));
	assert_false(acl_match_text(cfg.manager_addresses, "127.0.0.1"));
	assert_true(cfg.positive_threshold == 5.0);
	assert_string_equal(cfg.tag, "[SUSPECTED SPAM]");
	assert_true(cfg.external_enabled);
	assert_true(cfg.slbl_enabled);
	assert_int_equal(cfg.sync_interval_ms, 10 * 60 * 1000);
	/* the hello: every 5 minutes by default, no group or cluster unless given */
	assert_int_equal(cfg.hello_interval_ms, 5 * 60 * 1000);
	assert_null(cfg.group);
	assert_null(cfg.cluster);
	assert_int_equal(cfg.local_spam_delete_after_ms, 14 * DAY);
	assert_int_equal(cfg.quarantines_delete_after_ms, 30 * DAY);
	/* Undecided content filters fail closed by default: the Unclassified quarantine. */
	assert_string_equal(cfg.filters_undecided, "unclassified");
	/* PVO quarantines stay local unless asked; engines that fail still give 451 */
	assert_false(cfg.central_pvo_enabled);
	assert_null(gw_config_central_pvo_hostport(&cfg));
	assert_int_equal(cfg.central_pvo_port, 7025);
	assert_null(cfg.central_pvo_notify);
	assert_null(cfg.outbreak_rules);
	assert_string_equal(cfg.antispam_on_failure, "tempfail");
	assert_string_equal(cfg.antivirus_on_failure, "tempfail");
	char *hp = gw_config_external_hostport(&cfg);
	assert_string_equal(hp, "127.0.0.1:6025");
	free(hp);
	assert_null(warnings);
	gw_config_free(&cfg);
}

static void test_centralized_pvo(void **state)
{
	(void)state;
	write_file(conf_path, "[rat]\naccept = example.com\n[centralized_pvo]\nenabled = yes\n"
			      "host = ::1\nport = 17025\nnotify = admin@example.com\n"
			      "[antivirus]\non_failure = hold\n");
	struct gw_config cfg;
	char *errors = NULL, *warnings = NULL;
	if (gw_config_load(conf_path, &cfg, &errors, &warnings) != 0)
		fail_msg("errors: %s", errors);
	char *hp = gw_config_central_pvo_hostport(&cfg);
	assert_string_equal(hp, "[::1]:17025");
	free(hp);
	assert_string_equal(cfg.central_pvo_notify, "admin@example.com");
	assert_string_equal(cfg.antivirus_on_failure, "hold");
	free(warnings);
	gw_config_free(&cfg);
}

static void test_both_spam_quarantines_warn(void **state)
{
	(void)state;
	write_file(conf_path, "[rat]\naccept = example.com\n[spam_quarantine]\nenabled = yes\n"
			      "[external_spam_quarantine]\nenabled = yes\n");
	struct gw_config cfg;
	char *errors = NULL, *warnings = NULL;
	assert_int_equal(gw_config_load(conf_path, &cfg, &errors, &warnings), 0);
	assert_non_null(warnings);
	assert_non_null(strstr(warnings, "the local one"));
	free(warnings);
	gw_config_free(&cfg);
}

static void test_local_tracking_without_http_warns(void **state)
{
	(void)state;
	write_file(conf_path, "[rat]\naccept = example.com\n");
	struct gw_config cfg;
	char *errors = NULL, *warnings = NULL;
	assert_int_equal(gw_config_load(conf_path, &cfg, &errors, &warnings), 0);
	assert_string_equal(cfg.tracking_mode, "local");
	assert_string_equal(cfg.reporting_mode, "local");
	assert_false(gw_config_reporting_central(&cfg));
	assert_non_null(warnings);
	assert_non_null(strstr(warnings, "[tracking] mode = local keeps the events on the "
					 "gateway, but without [http] listen no one can search "
					 "them"));
	free(warnings);
	gw_config_free(&cfg);
	/* off: nothing to search, nothing said; a long name is fine there */
	write_file(conf_path,
		   "[rat]\naccept = example.com\n[tracking]\nmode = off\n"
		   "[gateway]\nname = "
		   "a12345678.b12345678.c12345678.d12345678.e12345678.f12345678.g1234\n");
	warnings = NULL;
	if (gw_config_load(conf_path, &cfg, &errors, &warnings) != 0)
		fail_msg("errors: %s", errors);
	assert_true(warnings == NULL || strstr(warnings, "[tracking]") == NULL);
	free(warnings);
	gw_config_free(&cfg);
}

struct error_case {
	const char *text;
	const char *expect; /* substring of the errors, after "FILE:" */
};

static const struct error_case error_cases[] = {
    {"[rat]\naccept = example.com\n[hat]\npolicy.x = maybe: 10.0.0.0/8\n",
     ":4: [hat] policy.x: unknown action \"maybe\""},
    {"[rat]\naccept = example.com\n[hat]\npolicy.x = reject 10.0.0.0/8\n",
     ":4: [hat] policy.x: must be \"ACTION: CIDR"},
    {"[rat]\naccept = example.com\n[hat]\npolicy.x = reject: 10.0.0.300/8\n",
     ":4: [hat] policy.x:"},
    {"[rat]\naccept = example.com\n[hat]\npolicy.x = throttle 0: 10.0.0.0/8\n",
     ":4: [hat] policy.x: throttle needs a number"},
    {"[rat]\naccept = example.com\n[hat]\npolicy.x = reject:\n",
     ":4: [hat] policy.x: lists no network"},
    {"[rat]\naccept = example.com\n[hat]\nrules = accept\n", ":4: [hat] rules: unknown key"},
    {"[rat]\naccept = example.com\n[hat]\ndefault = sometimes\n",
     ":4: [hat] default: unknown action"},
    {"[rat]\naccept = example.com\n[listener]\ncolour = blue\n",
     ":4: [listener] colour: unknown key"},
    {"[gateway]\nname = gw1\n", "[rat] accept:"},
    {"[rat]\naccept = exa mple@@x\n", ":2: [rat] accept:"},
    {"[rat]\naccept = example.com\n[antispam]\nengine = magic\n", ":4: [antispam] engine:"},
    {"[rat]\naccept = example.com\n[antispam]\npositive_threshold = 2\nsuspect_threshold = 3\n",
     "[antispam] suspect_threshold: must not be above positive_threshold"},
    {"[rat]\naccept = example.com\n[antispam]\npositive_action = shred\n",
     ":4: [antispam] positive_action:"},
    {"[rat]\naccept = example.com\n[antispam]\nrules = /nonexistent/rules\n",
     ":4: [antispam] rules: cannot read /nonexistent/rules"},
    {"[rat]\naccept = example.com\n[filters]\nfile = /nonexistent/f\n",
     ":4: [filters] file: cannot read"},
    {"[rat]\naccept = example.com\n[filters]\nundecided = deliver\n", ":4: [filters] undecided:"},
    {"[rat]\naccept = example.com\n[http]\nlisten = 127.0.0.1:8081\n",
     "[http] admin_token: is required when listen is set"},
    {"[rat]\naccept = example.com\n[external_spam_quarantine]\nsafelist_blocklist = yes\n",
     "safelist_blocklist: needs the external spam quarantine"},
    {"[rat]\naccept = example.com\n[external_spam_quarantine]\nenabled = yes\nport = 70000\n",
     ":5: [external_spam_quarantine] port:"},
    {"[rat]\naccept = example.com\n[quarantines]\ndelete_after = 30\n",
     ":4: [quarantines] delete_after: \"30\" needs a unit"},
    {"[rat]\naccept = example.com\n[delivery]\nnext_hop = nowhere\n", ":4: [delivery] next_hop:"},
    /* TLS to the manager */
    {"[rat]\naccept = example.com\n[external_spam_quarantine]\nenabled = yes\n"
     "tls_ca = /etc/hostname\n",
     ":5: [external_spam_quarantine] tls_ca: needs tls = yes"},
    {"[rat]\naccept = example.com\n[external_spam_quarantine]\nenabled = yes\ntls = yes\n"
     "tls_cert = /etc/hostname\n",
     "[external_spam_quarantine] tls_key: is required when tls_cert is set"},
    {"[rat]\naccept = example.com\n[external_spam_quarantine]\nenabled = yes\ntls = yes\n"
     "tls_ca = /nonexistent/ca.pem\n",
     ":6: [external_spam_quarantine] tls_ca: cannot read /nonexistent/ca.pem"},
    {"[rat]\naccept = example.com\n[external_spam_quarantine]\ntls = maybe\n",
     ":4: [external_spam_quarantine] tls:"},
    {"[rat]\naccept = example.com\n[manager]\napi_ca = /nonexistent/ca.pem\n",
     ":4: [manager] api_ca: cannot read /nonexistent/ca.pem"},
    /* the hello to the manager's gateway registry */
    {"[rat]\naccept = example.com\n[gateway]\ngroup = tokyo east\n",
     "[gateway] group: must be 1 to 64 letters, digits, '.', '-' or '_'"},
    {"[rat]\naccept = example.com\n[gateway]\ncluster = 東\n",
     "[gateway] cluster: must be 1 to 64 letters, digits, '.', '-' or '_'"},
    {"[rat]\naccept = example.com\n[manager]\napi_url = ftp://manager\n",
     "[manager] api_url: must start with http:// or https://"},
    {"[rat]\naccept = example.com\n[manager]\nhello_interval = 500ms\n",
     ":4: [manager] hello_interval:"},
    {"[rat]\naccept = example.com\n[reporting]\nmode = central\n",
     "[reporting] mode: central needs [manager] api_url and api_token"},
    {"[rat]\naccept = example.com\n[reporting]\nmode = both\n", ":4: [reporting] mode:"},
    /* centralized PVO, outbreak rules, scan failures */
    {"[rat]\naccept = example.com\n[centralized_pvo]\nenabled = sometimes\n",
     ":4: [centralized_pvo] enabled:"},
    {"[rat]\naccept = example.com\n[centralized_pvo]\nport = 0\n", ":4: [centralized_pvo] port:"},
    {"[rat]\naccept = example.com\n[centralized_pvo]\nnotify = admin\n",
     ":4: [centralized_pvo] notify: must be one mail address"},
    {"[rat]\naccept = example.com\n[centralized_pvo]\nnotify = a@x.example, b@x.example\n",
     ":4: [centralized_pvo] notify: must be one mail address"},
    {"[rat]\naccept = example.com\n[centralized_pvo]\nmigrate = yes\n",
     ":4: [centralized_pvo] migrate: unknown key"},
    {"[rat]\naccept = example.com\n[outbreak]\nrules = /nonexistent/outbreak\n",
     ":4: [outbreak] rules: cannot read /nonexistent/outbreak"},
    {"[rat]\naccept = example.com\n[antivirus]\non_failure = accept\n",
     ":4: [antivirus] on_failure:"},
    {"[rat]\naccept = example.com\n[antispam]\non_failure = ignore\n",
     ":4: [antispam] on_failure:"},
    /* local tracking keeps the events under the gateway's name */
    {"[rat]\naccept = example.com\n[gateway]\nname = "
     "a12345678.b12345678.c12345678.d12345678.e12345678.f12345678.g1234\n",
     "[gateway] name: must be 1 to 64 letters, digits, '.', '-' or '_' with [tracking] "
     "mode = local"},
    {"[rat]\naccept = example.com\n[tracking]\nmode = sometimes\n", ":4: [tracking] mode:"},
};

static void test_errors_name_file_line_and_key(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]); i++) {
		write_file(conf_path, error_cases[i].text);
		struct gw_config cfg;
		char *errors = NULL;
		int rc = gw_config_load(conf_path, &cfg, &errors, NULL);
		if (rc != -EINVAL)
			fail_msg("case %zu: rc %d, want -EINVAL", i, rc);
		assert_non_null(errors);
		if (strncmp(errors, conf_path, strlen(conf_path)) != 0 ||
		    strstr(errors, error_cases[i].expect) == NULL)
			fail_msg("case %zu: errors %s, want %s", i, errors, error_cases[i].expect);
		free(errors);
	}
}

static void test_missing_file(void **state)
{
	(void)state;
	struct gw_config cfg;
	char *errors = NULL;
	assert_int_equal(gw_config_load("/nonexistent/lazaret-gw.conf", &cfg, &errors, NULL),
			 -ENOENT);
	assert_non_null(errors);
	free(errors);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_contract_example_loads),
	    cmocka_unit_test(test_both_spam_quarantines_warn),
	    cmocka_unit_test(test_centralized_pvo),
	    cmocka_unit_test(test_local_tracking_without_http_warns),
	    cmocka_unit_test(test_errors_name_file_line_and_key),
	    cmocka_unit_test(test_missing_file),
	};
	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}

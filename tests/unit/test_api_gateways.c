/*
 * test_api_gateways — the bodies of the gateway registry's endpoints
 * (api_gateways_parse_new for POST /api/v1/gateways, api_gateways_parse_hello for
 * POST /api/v1/gateway/hello), one table row per body: what is accepted, and the
 * exact 422 message of what is not; what a registry entry looks like as JSON; and
 * the levels' resolution and 409 rules (api_levels_resolve, api_levels_conflict).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "api/api_gateways.h"
#include "api/api_levels.h"
#include "store/store.h"

struct new_case {
	const char *body;
	const char *error; /* NULL: accepted */
	const char *name, *address, *group, *cluster;
	unsigned port;
};

static const struct new_case new_cases[] = {
    {"{\"name\":\"gw1\",\"address\":\"192.0.2.1\"}", NULL, "gw1", "192.0.2.1", NULL, NULL, 25},
    {"{\"name\":\"gw-1.a_b\",\"address\":\"2001:db8::1\",\"group\":\"tokyo\","
     "\"cluster\":\"east\",\"release_port\":2525}",
     NULL, "gw-1.a_b", "2001:db8::1", "tokyo", "east", 2525},
    {"{\"name\":\"gw1\",\"address\":\"192.0.2.1\",\"group\":null,\"cluster\":null}", NULL, "gw1",
     "192.0.2.1", NULL, NULL, 25},
    {.body = "{\"address\":\"192.0.2.1\"}", .error = "\"name\" is required"},
    {.body = "{\"name\":\"gw1\"}", .error = "\"address\" is required"},
    {.body = "{\"name\":\"\",\"address\":\"192.0.2.1\"}",
     .error = "\"name\" must be 1 to 64 letters, digits, '.', '-' or '_'"},
    {.body = "{\"name\":\"gw 1\",\"address\":\"192.0.2.1\"}",
     .error = "\"name\" must be 1 to 64 letters, digits, '.', '-' or '_'"},
    {.body = "{\"name\":\"gw/1\",\"address\":\"192.0.2.1\"}",
     .error = "\"name\" must be 1 to 64 letters, digits, '.', '-' or '_'"},
    {.body = "{\"name\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","
	     "\"address\":\"192.0.2.1\"}",
     .error = "\"name\" must be 1 to 64 letters, digits, '.', '-' or '_'"},
    {.body = "{\"name\":1,\"address\":\"192.0.2.1\"}", .error = "field \"name\" must be a string"},
    {.body = "{\"name\":\"gw1\",\"address\":\"gw1.example\"}",
     .error = "\"address\" must be an IPv4 or IPv6 address"},
    {.body = "{\"name\":\"gw1\",\"address\":\"192.0.2.0/24\"}",
     .error = "\"address\" must be an IPv4 or IPv6 address"},
    {.body = "{\"name\":\"gw1\",\"address\":\"192.0.2.256\"}",
     .error = "\"address\" must be an IPv4 or IPv6 address"},
    {.body = "{\"name\":\"gw1\",\"address\":\"192.0.2.1\",\"group\":\"a b\"}",
     .error = "\"group\" must be 1 to 64 letters, digits, '.', '-' or '_'"},
    {.body = "{\"name\":\"gw1\",\"address\":\"192.0.2.1\",\"cluster\":\"\"}",
     .error = "\"cluster\" must be 1 to 64 letters, digits, '.', '-' or '_'"},
    {.body = "{\"name\":\"gw1\",\"address\":\"192.0.2.1\",\"release_port\":0}",
     .error = "\"release_port\" must be a port number (1 to 65535)"},
    {.body = "{\"name\":\"gw1\",\"address\":\"192.0.2.1\",\"release_port\":65536}",
     .error = "\"release_port\" must be a port number (1 to 65535)"},
    {.body = "{\"name\":\"gw1\",\"address\":\"192.0.2.1\",\"release_port\":\"25\"}",
     .error = "\"release_port\" must be a port number (1 to 65535)"},
    {.body = "{\"name\":\"gw1\",\"address\":\"192.0.2.1\",\"token\":\"x\"}",
     .error = "unknown field \"token\""},
};

static void test_parse_new(void **state)
{
	for (size_t i = 0; i < sizeof(new_cases) / sizeof(new_cases[0]); i++) {
		const struct new_case *c = &new_cases[i];
		json_error_t jerr;
		json_t *body = json_loads(c->body, 0, &jerr);
		assert_non_null(body);
		struct api_gateways_new n;
		char *err = NULL;
		int rc = api_gateways_parse_new(body, &n, &err);
		if (c->error == NULL) {
			assert_int_equal(rc, 0);
			assert_null(err);
			assert_string_equal(n.name, c->name);
			assert_string_equal(n.address, c->address);
			if (c->group == NULL)
				assert_null(n.group);
			else
				assert_string_equal(n.group, c->group);
			if (c->cluster == NULL)
				assert_null(n.cluster);
			else
				assert_string_equal(n.cluster, c->cluster);
			assert_int_equal(n.release_port, c->port);
		} else {
			assert_int_equal(rc, -EINVAL);
			assert_non_null(err);
			if (strcmp(err, c->error) != 0)
				fail_msg("case %zu: %s: got \"%s\", want \"%s\"", i, c->body, err,
					 c->error);
		}
		free(err);
		json_decref(body);
	}
}

struct hello_case {
	const char *body;
	const char *error;
	const char *name, *version, *group, *cluster;
	int central1; /* "centralized" as bits, plus 1 (0: not said) */
	const char *outbreak;
};

static const struct hello_case hello_cases[] = {
    {"{\"name\":\"gw1\"}", NULL, "gw1", NULL, NULL, NULL, 0, NULL},
    {"{\"name\":\"gw1\",\"version\":\"0.1.0\",\"group\":\"tokyo\",\"cluster\":\"east\"}", NULL,
     "gw1", "0.1.0", "tokyo", "east", 0, NULL},
    {.body = "{\"version\":\"0.1.0\"}", .error = "\"name\" is required"},
    {.body = "{\"name\":\"gw:1\"}",
     .error = "\"name\" must be 1 to 64 letters, digits, '.', '-' or '_'"},
    {.body = "{\"name\":\"gw1\",\"version\":\"\"}",
     .error = "\"version\" must be 1 to 64 printable ASCII characters"},
    {.body = "{\"name\":\"gw1\",\"version\":\"0.1\\n\"}",
     .error = "\"version\" must be 1 to 64 printable ASCII characters"},
    {.body = "{\"name\":\"gw1\",\"version\":7}", .error = "field \"version\" must be a string"},
    {.body = "{\"name\":\"gw1\",\"group\":\"\\u00e9\"}",
     .error = "\"group\" must be 1 to 64 letters, digits, '.', '-' or '_'"},
    {.body = "{\"name\":\"gw1\",\"address\":\"192.0.2.1\"}", .error = "unknown field \"address\""},
    /* what the gateway runs with */
    {.body = "{\"name\":\"gw1\",\"centralized\":{\"pvo\":true,\"reporting\":false,"
	     "\"tracking\":true}}",
     .name = "gw1",
     .central1 = 1 + (int)(STORE_CENTRAL_PVO | STORE_CENTRAL_TRACKING)},
    {.body = "{\"name\":\"gw1\",\"centralized\":{}}", .name = "gw1", .central1 = 1},
    {.body = "{\"name\":\"gw1\",\"centralized\":null}", .name = "gw1"},
    {.body = "{\"name\":\"gw1\",\"centralized\":{\"pvo\":1}}",
     .error = "\"centralized\" must be an object of booleans {\"pvo\", \"reporting\", "
	      "\"tracking\"}"},
    {.body = "{\"name\":\"gw1\",\"centralized\":true}",
     .error = "\"centralized\" must be an object of booleans {\"pvo\", \"reporting\", "
	      "\"tracking\"}"},
    {.body = "{\"name\":\"gw1\",\"centralized\":{\"dlp\":true}}", .error = "unknown field \"dlp\""},
    /* the version line of its outbreak rules */
    {.body = "{\"name\":\"gw1\",\"outbreak_rules_version\":\"2026120501\"}",
     .name = "gw1",
     .outbreak = "2026120501"},
    {.body = "{\"name\":\"gw1\",\"outbreak_rules_version\":\"\"}",
     .error = "\"outbreak_rules_version\" must be 1 to 64 printable ASCII characters"},
    {.body = "{\"name\":\"gw1\",\"outbreak_rules_version\":\"a b\\u0001\"}",
     .error = "\"outbreak_rules_version\" must be 1 to 64 printable ASCII characters"},
    {.body = "{\"name\":\"gw1\",\"outbreak_rules_version\":2}",
     .error = "field \"outbreak_rules_version\" must be a string"},
};

static void test_parse_hello(void **state)
{
	for (size_t i = 0; i < sizeof(hello_cases) / sizeof(hello_cases[0]); i++) {
		const struct hello_case *c = &hello_cases[i];
		json_error_t jerr;
		json_t *body = json_loads(c->body, 0, &jerr);
		assert_non_null(body);
		struct api_gateways_hello h;
		char *err = NULL;
		int rc = api_gateways_parse_hello(body, &h, &err);
		if (c->error == NULL) {
			assert_int_equal(rc, 0);
			assert_string_equal(h.name, c->name);
			const char *got[] = {h.version, h.group, h.cluster, h.outbreak_version};
			const char *want[] = {c->version, c->group, c->cluster, c->outbreak};
			for (size_t k = 0; k < 4; k++) {
				if (want[k] == NULL)
					assert_null(got[k]);
				else
					assert_string_equal(got[k], want[k]);
			}
			assert_int_equal(h.central, c->central1 - 1);
		} else {
			assert_int_equal(rc, -EINVAL);
			if (err == NULL || strcmp(err, c->error) != 0)
				fail_msg("case %zu: %s: got \"%s\", want \"%s\"", i, c->body,
					 err != NULL ? err : "(none)", c->error);
		}
		free(err);
		json_decref(body);
	}
}

/* Resolution (machine over group over cluster) and the 409 rules, without I/O. */
static void test_levels_rules(void **state)
{
	struct store_gateway a = {.name = "gw-a", .group = "g1", .cluster = "c1"};
	struct store_gateway b = {.name = "gw-b", .group = "G1", .cluster = "c1"};
	struct store_gateway p = {.name = "gw-p", .state = STORE_GATEWAY_PENDING, .group = "g2"};
	struct store_gateway *gw[] = {&a, &b, &p};
	enum { U = STORE_LEVEL_UNSET };
	struct store_level v[] = {
	    {.level = "cluster", .name = "c1", .pvo = 1, .reporting = 1, .tracking = U},
	    {.level = "group",
	     .name = "g1",
	     .pvo = U,
	     .reporting = 0,
	     .tracking = 1,
	     .filters = "f"},
	    {.level = "machine", .name = "gw-b", .pvo = U, .reporting = 1, .tracking = U},
	};
	struct api_levels_effective e;
	api_levels_resolve(v, 3, &a, &e);
	assert_int_equal(e.pvo, 1);
	assert_ptr_equal(e.from[0], &v[0]);
	assert_int_equal(e.reporting, 0); /* the group's, over the cluster's */
	assert_ptr_equal(e.from[1], &v[1]);
	assert_int_equal(e.tracking, 1);
	assert_string_equal(e.filters, "f");
	api_levels_resolve(v, 3, &b, &e); /* group names match in any case */
	assert_int_equal(e.reporting, 1);
	assert_ptr_equal(e.from[1], &v[2]);
	assert_ptr_equal(e.from[3], &v[1]);

	/* pvo below the cluster that sets it */
	struct store_level next = {
	    .level = "machine", .name = "gw-a", .pvo = 0, .reporting = U, .tracking = U};
	char *msg = api_levels_conflict(v, 3, gw, 3, &next, 1, 0);
	assert_string_equal(msg,
			    "\"pvo\" is set at cluster \"c1\", which gateway \"gw-a\" "
			    "belongs to; it may not be set again below it (at machine \"gw-a\")");
	free(msg);
	/* reporting may be overridden; pvo left as it is is not checked */
	assert_null(api_levels_conflict(v, 3, gw, 3, &next, 0, 0));
	/* filters at the cluster above the group that sets them */
	struct store_level c = {.level = "cluster",
				.name = "c1",
				.pvo = 1,
				.reporting = 1,
				.tracking = U,
				.filters = "g"};
	msg = api_levels_conflict(v, 3, gw, 3, &c, 0, 1);
	assert_string_equal(msg, "\"filters\" is set at group \"g1\" (gateway \"gw-a\"), below "
				 "cluster \"c1\"; remove it there before setting it here");
	free(msg);
	/* enabling pvo where a pending gateway names the group; disabling is fine */
	struct store_level g2 = {
	    .level = "group", .name = "g2", .pvo = 1, .reporting = U, .tracking = U};
	msg = api_levels_conflict(v, 3, gw, 3, &g2, 1, 0);
	assert_string_equal(msg, "gateway \"gw-p\" names group \"g2\" but is not registered "
				 "(pending); register it before enabling \"pvo\" at this level");
	free(msg);
	g2.pvo = 0;
	assert_null(api_levels_conflict(v, 3, gw, 3, &g2, 1, 0));
}

static void test_entry_json(void **state)
{
	struct store_gateway g = {.name = "gw1",
				  .state = STORE_GATEWAY_PENDING,
				  .address = "192.0.2.1",
				  .release_port = 25,
				  .token_hash = "secret-hash",
				  .created_at = 1764892800000,
				  .version = "0.1.0"};
	json_t *o = api_gateways_json(&g);
	char *text = json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT);
	assert_string_equal(
	    text,
	    "{\"address\":\"192.0.2.1\",\"centralized\":{\"pvo\":false,\"reporting\":false,"
	    "\"tracking\":false},\"cluster\":null,\"created_at\":\"2025-12-05T00:00:00Z\","
	    "\"event_backlog\":null,\"group\":null,\"last_event_at\":null,\"last_rescan\":null,"
	    "\"last_seen\":null,\"migration\":null,\"name\":\"gw1\",\"outbreak_rules_version\":"
	    "null,"
	    "\"release_port\":25,\"state\":\"pending\",\"version\":\"0.1.0\"}");
	free(text);
	json_decref(o);
	/* the last rescan of its Outbreak messages */
	g.outbreak_version = "2026120502";
	g.last_rescan_at = 1764892860000;
	g.last_rescan_messages = 5;
	g.last_rescan_clean = 2;
	g.last_rescan_kept = 1;
	g.last_rescan_requarantined = 1;
	o = api_gateways_json(&g);
	assert_string_equal(json_string_value(json_object_get(o, "outbreak_rules_version")),
			    "2026120502");
	text = json_dumps(json_object_get(o, "last_rescan"), JSON_SORT_KEYS | JSON_COMPACT);
	/* one of the five not answered yet */
	assert_string_equal(text, "{\"at\":\"2025-12-05T00:01:00Z\",\"clean\":2,\"kept\":1,"
				  "\"messages\":5,\"pending\":1,\"requarantined\":1}");
	free(text);
	json_decref(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_new),
	    cmocka_unit_test(test_parse_hello),
	    cmocka_unit_test(test_entry_json),
	    cmocka_unit_test(test_levels_rules),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

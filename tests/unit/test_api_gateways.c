/*
 * test_api_gateways — the bodies of the gateway registry's endpoints
 * (api_gateways_parse_new for POST /api/v1/gateways, api_gateways_parse_hello for
 * POST /api/v1/gateway/hello), one table row per body: what is accepted, and the
 * exact 422 message of what is not; and what a registry entry looks like as JSON.
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
};

static const struct hello_case hello_cases[] = {
    {"{\"name\":\"gw1\"}", NULL, "gw1", NULL, NULL, NULL},
    {"{\"name\":\"gw1\",\"version\":\"0.1.0\",\"group\":\"tokyo\",\"cluster\":\"east\"}", NULL,
     "gw1", "0.1.0", "tokyo", "east"},
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
			const char *got[] = {h.version, h.group, h.cluster};
			const char *want[] = {c->version, c->group, c->cluster};
			for (size_t k = 0; k < 3; k++) {
				if (want[k] == NULL)
					assert_null(got[k]);
				else
					assert_string_equal(got[k], want[k]);
			}
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
	    "\"event_backlog\":null,\"group\":null,\"last_event_at\":null,\"last_seen\":null,"
	    "\"migration\":null,"
	    "\"name\":\"gw1\",\"release_port\":25,\"state\":\"pending\",\"version\":\"0.1.0\"}");
	free(text);
	json_decref(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_new),
	    cmocka_unit_test(test_parse_hello),
	    cmocka_unit_test(test_entry_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

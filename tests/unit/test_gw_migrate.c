/*
 * Tests for gateway/gw_migrate's reading of the manager's mapping: what
 * GET /api/v1/gateway/mapping may answer (and what is refused), and where each
 * local quarantine's messages go (automatic: the same name, the system ones in
 * lowercase; custom: the named one, an absent name the same, null deleted).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/gw_migrate.h"
#include "store/store.h"

static const struct {
	const char *body;
	const char *why; /* NULL: accepted */
} parse_cases[] = {
    {"{\"mode\":\"automatic\",\"mapping\":{}}", NULL},
    {"{\"mode\":\"automatic\"}", NULL},
    {"{\"mode\":\"custom\",\"mapping\":{\"A\":\"B\",\"Old\":null}}", NULL},
    {"", "the answer is not JSON"},
    {"[1]", "no \"mode\""},
    {"{\"mode\":\"manual\",\"mapping\":{}}", "\"mode\" is neither automatic nor custom"},
    {"{\"mode\":\"custom\",\"mapping\":[]}", "\"mapping\" is not an object"},
    {"{\"mode\":\"custom\",\"mapping\":{\"A\":3}}", "a mapping's value is neither a name nor null"},
    {"{\"mode\":\"custom\",\"mapping\":{\"A\":\"a;b\"}}",
     "a mapping names a quarantine the manager cannot hold"},
    {"{\"mode\":\"custom\",\"mapping\":{\"A\":\" x\"}}",
     "a mapping names a quarantine the manager cannot hold"},
};

static void test_parse(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
		struct gw_mapping m;
		const char *why = NULL;
		int rc =
		    gw_mapping_parse(parse_cases[i].body, strlen(parse_cases[i].body), &m, &why);
		print_message("case: %s\n", parse_cases[i].body);
		if (parse_cases[i].why == NULL) {
			assert_int_equal(rc, 0);
		} else {
			assert_int_equal(rc, -EPROTO);
			assert_string_equal(why, parse_cases[i].why);
			assert_int_equal(m.n, 0);
		}
		gw_mapping_clear(&m);
	}
}

static const struct {
	const char *mapping; /* the answer */
	const char *local;
	const char *central; /* NULL: deleted */
} resolve_cases[] = {
    {"{\"mode\":\"automatic\",\"mapping\":{}}", "Policy", "Policy"},
    {"{\"mode\":\"automatic\",\"mapping\":{}}", "Virus", "virus"},
    {"{\"mode\":\"automatic\",\"mapping\":{}}", "OUTBREAK", "outbreak"},
    {"{\"mode\":\"automatic\",\"mapping\":{}}", "unclassified", "unclassified"},
    {"{\"mode\":\"automatic\",\"mapping\":{}}", "添付ファイル", "添付ファイル"},
    /* automatic ignores entries it might carry */
    {"{\"mode\":\"automatic\",\"mapping\":{\"Policy\":null}}", "Policy", "Policy"},
    {"{\"mode\":\"custom\",\"mapping\":{\"Policy\":\"Compliance\"}}", "Policy", "Compliance"},
    {"{\"mode\":\"custom\",\"mapping\":{\"Policy\":\"Compliance\"}}", "Legal", "Legal"},
    {"{\"mode\":\"custom\",\"mapping\":{\"Policy\":\"Compliance\"}}", "policy", "policy"},
    {"{\"mode\":\"custom\",\"mapping\":{\"Old\":null}}", "Old", NULL},
    {"{\"mode\":\"custom\",\"mapping\":{\"junk\":\"Unclassified\"}}", "junk", "unclassified"},
    {"{\"mode\":\"custom\",\"mapping\":{\"Old\":null}}", "Virus", "virus"},
};

static void test_resolve(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(resolve_cases) / sizeof(resolve_cases[0]); i++) {
		struct gw_mapping m;
		const char *why = NULL;
		print_message("case: %s %s\n", resolve_cases[i].mapping, resolve_cases[i].local);
		assert_int_equal(gw_mapping_parse(resolve_cases[i].mapping,
						  strlen(resolve_cases[i].mapping), &m, &why),
				 0);
		char out[STORE_QUARANTINE_NAME_MAX + 1];
		int rc = gw_mapping_resolve(&m, resolve_cases[i].local, out, sizeof(out));
		if (resolve_cases[i].central == NULL) {
			assert_int_equal(rc, 0);
		} else {
			assert_int_equal(rc, 1);
			assert_string_equal(out, resolve_cases[i].central);
		}
		gw_mapping_clear(&m);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_resolve),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

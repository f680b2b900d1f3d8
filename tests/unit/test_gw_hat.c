/*
 * Tests for gateway/hat: action and policy parsing, first-match-wins lookup by
 * client address, and the hourly throttle window.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/hat.h"

static const struct {
	const char *text;
	int rc;
	enum hat_action action;
	unsigned limit;
} action_cases[] = {
    {"accept", 0, HAT_ACCEPT, 0},
    {" REJECT ", 0, HAT_REJECT, 0},
    {"throttle 10", 0, HAT_THROTTLE, 10},
    {"throttle\t1", 0, HAT_THROTTLE, 1},
    {"throttle 100000", 0, HAT_THROTTLE, 100000},
    {"throttle 100001", -EINVAL, 0, 0},
    {"throttle 0", -EINVAL, 0, 0},
    {"throttle", -EINVAL, 0, 0},
    {"throttle x", -EINVAL, 0, 0},
    {"throttle 5x", -EINVAL, 0, 0},
    {"allow", -EINVAL, 0, 0},
    {"", -EINVAL, 0, 0},
};

static void test_parse_action(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(action_cases) / sizeof(action_cases[0]); i++) {
		enum hat_action a = HAT_ACCEPT;
		unsigned limit = 0;
		char *err = NULL;
		int rc = hat_parse_action(action_cases[i].text, &a, &limit, &err);
		if (rc != action_cases[i].rc)
			fail_msg("\"%s\": rc %d", action_cases[i].text, rc);
		if (rc == 0) {
			assert_int_equal(a, action_cases[i].action);
			assert_int_equal(limit, action_cases[i].limit);
			assert_null(err);
		} else {
			assert_non_null(err);
			free(err);
		}
	}
}

static struct sockaddr_storage addr(const char *ip)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	if (strchr(ip, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
	}
	return ss;
}

static void test_first_match_wins(void **state)
{
	(void)state;
	const char *defs[][2] = {
	    {"mine", "accept: 192.0.2.7"},
	    {"blocked", "reject: 192.0.2.0/24, 2001:db8::/32"},
	    {"slow", "throttle 3: 0.0.0.0/0"},
	};
	struct hat_policy p[3];
	for (size_t i = 0; i < 3; i++) {
		char *err = NULL;
		assert_int_equal(hat_parse_policy(defs[i][0], defs[i][1], &p[i], &err), 0);
	}
	static const struct {
		const char *ip;
		const char *policy; /* NULL: default */
	} cases[] = {
	    {"192.0.2.7", "mine"},    {"192.0.2.8", "blocked"},	       {"2001:db8::1", "blocked"},
	    {"198.51.100.1", "slow"}, {"::ffff:192.0.2.9", "blocked"}, {"2001:db9::1", NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_storage ss = addr(cases[i].ip);
		const struct hat_policy *m = hat_match(p, 3, (struct sockaddr *)&ss);
		if (cases[i].policy == NULL) {
			if (m != NULL)
				fail_msg("%s matched %s", cases[i].ip, m->name);
		} else {
			if (m == NULL || strcmp(m->name, cases[i].policy) != 0)
				fail_msg("%s: got %s want %s", cases[i].ip, m ? m->name : "none",
					 cases[i].policy);
		}
	}
	for (size_t i = 0; i < 3; i++)
		hat_policy_clear(&p[i]);
}

static void test_policy_errors(void **state)
{
	(void)state;
	const char *bad[] = {"reject", "reject:", "reject: nonsense", "shred: 10.0.0.0/8",
			     "throttle: 10.0.0.0/8"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct hat_policy p;
		char *err = NULL;
		if (hat_parse_policy("x", bad[i], &p, &err) != -EINVAL)
			fail_msg("\"%s\" accepted", bad[i]);
		assert_non_null(err);
		free(err);
	}
}

#define HOUR_MS (3600 * INT64_C(1000))

static void test_throttle_window(void **state)
{
	(void)state;
	struct hat_throttle *t = hat_throttle_new();
	int64_t t0 = 1000 * HOUR_MS;
	/* Two messages allowed, the third refused, for this client only. */
	assert_true(hat_throttle_allows(t, "192.0.2.1", 2, t0));
	hat_throttle_count(t, "192.0.2.1", t0);
	assert_true(hat_throttle_allows(t, "192.0.2.1", 2, t0 + 1));
	hat_throttle_count(t, "192.0.2.1", t0 + 10 * 60 * 1000);
	assert_false(hat_throttle_allows(t, "192.0.2.1", 2, t0 + 20 * 60 * 1000));
	assert_true(hat_throttle_allows(t, "192.0.2.2", 2, t0 + 20 * 60 * 1000));
	/* A larger limit (after a reload) lets it on. */
	assert_true(hat_throttle_allows(t, "192.0.2.1", 3, t0 + 20 * 60 * 1000));
	/* An hour after the first message one slot is free again, not before. */
	assert_false(hat_throttle_allows(t, "192.0.2.1", 2, t0 + HOUR_MS - 1));
	assert_true(hat_throttle_allows(t, "192.0.2.1", 2, t0 + HOUR_MS));
	assert_int_equal(hat_throttle_clients(t), 1);
	hat_throttle_free(t);
}

static void test_throttle_table_is_bounded(void **state)
{
	(void)state;
	struct hat_throttle *t = hat_throttle_new();
	char ip[64];
	for (unsigned i = 0; i < HAT_THROTTLE_MAX_CLIENTS + 100; i++) {
		snprintf(ip, sizeof(ip), "10.%u.%u.%u", (i >> 16) & 255, (i >> 8) & 255, i & 255);
		hat_throttle_count(t, ip, (int64_t)i);
	}
	assert_true(hat_throttle_clients(t) <= HAT_THROTTLE_MAX_CLIENTS);
	/* The most recent client is still counted. */
	assert_false(hat_throttle_allows(t, ip, 1, HAT_THROTTLE_MAX_CLIENTS + 100));
	hat_throttle_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_action),
	    cmocka_unit_test(test_first_match_wins),
	    cmocka_unit_test(test_policy_errors),
	    cmocka_unit_test(test_throttle_window),
	    cmocka_unit_test(test_throttle_table_is_bounded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

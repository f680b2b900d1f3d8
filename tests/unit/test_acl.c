/*
 * Tests for common/acl: which peers a list admits (IPv4, IPv6, IPv4-mapped,
 * /0, host routes), socket-address matching, and the errors for bad entries.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/acl.h"

struct match_case {
	const char *list;
	const char *peer;
	bool match;
};

static const struct match_case match_cases[] = {
    {"127.0.0.1/32, ::1/128", "127.0.0.1", true},
    {"127.0.0.1/32, ::1/128", "127.0.0.2", false},
    {"127.0.0.1/32, ::1/128", "::1", true},
    {"127.0.0.1/32, ::1/128", "::2", false},
    {"127.0.0.1/32, ::1/128", "::ffff:127.0.0.1", true},
    {"127.0.0.1/32, ::1/128", "::ffff:127.0.0.2", false},
    {"127.0.0.1", "127.0.0.1", true},
    {"127.0.0.1", "127.0.0.0", false},
    {"::1", "::1", true},
    {"10.0.0.0/8", "10.255.255.255", true},
    {"10.0.0.0/8", "11.0.0.0", false},
    {"10.0.0.0/8", "9.255.255.255", false},
    {"10.0.0.0/8", "::ffff:10.1.2.3", true},
    {"192.0.2.128/25", "192.0.2.128", true},
    {"192.0.2.128/25", "192.0.2.255", true},
    {"192.0.2.128/25", "192.0.2.127", false},
    {"198.51.100.6/31", "198.51.100.8", false},
    {"198.51.100.6/31", "198.51.100.7", true},
    {"0.0.0.0/0", "203.0.113.9", true},
    {"0.0.0.0/0", "::ffff:203.0.113.9", true},
    {"0.0.0.0/0", "2001:db8::1", false},
    {"::/0", "2001:db8::1", true},
    {"::/0", "::ffff:203.0.113.9", false}, /* mapped peers match IPv4 entries only */
    {"::/0", "203.0.113.9", false},
    {"2001:db8::/32", "2001:db8:ffff::1", true},
    {"2001:db8::/32", "2001:db9::1", false},
    {"2001:db8::/33", "2001:db8:7fff::1", true},
    {"2001:db8::/33", "2001:db8:8000::1", false},
    {"2001:db8::1/128", "2001:db8::1", true},
    {"2001:db8::1/128", "2001:db8::2", false},
    {"::ffff:10.0.0.0/104", "10.9.8.7", true}, /* a mapped entry is its IPv4 network */
    {"::ffff:10.0.0.0/104", "11.0.0.1", false},
    {"::ffff:192.0.2.1", "192.0.2.1", true},
    {"10.0.0.0/8 192.168.0.0/16\t172.16.0.0/12", "172.31.0.1", true},
    {"10.0.0.0/8,,192.168.0.0/16", "192.168.1.1", true},
    {"", "127.0.0.1", false},
    {"127.0.0.1/32", "not-an-address", false},
    {"127.0.0.1/32", "", false},
    {"127.0.0.1/32", "127.0.0.1/32", false},
};

static void test_match_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
		const struct match_case *c = &match_cases[i];
		struct acl *a = NULL;
		char *err = NULL;
		int rc = acl_parse(c->list, &a, &err);
		if (rc != 0)
			fail_msg("\"%s\": rc %d: %s", c->list, rc, err ? err : "");
		if (acl_match_text(a, c->peer) != c->match)
			fail_msg("\"%s\" vs %s: want %s", c->list, c->peer,
				 c->match ? "match" : "no match");
		acl_free(a);
	}
}

static void test_count(void **state)
{
	struct acl *a = NULL;
	(void)state;
	assert_int_equal(acl_parse(" 127.0.0.1/32, ::1/128 ,10.0.0.0/8 ", &a, NULL), 0);
	assert_int_equal(acl_count(a), 3);
	acl_free(a);
	assert_int_equal(acl_parse("", &a, NULL), 0);
	assert_int_equal(acl_count(a), 0);
	acl_free(a);
	assert_int_equal(acl_parse(NULL, &a, NULL), 0);
	assert_int_equal(acl_count(a), 0);
	assert_false(acl_match_text(a, "127.0.0.1"));
	acl_free(a);
	assert_int_equal(acl_count(NULL), 0);
	acl_free(NULL);
}

static void test_match_sockaddr(void **state)
{
	struct acl *a = NULL;
	(void)state;
	assert_int_equal(acl_parse("192.0.2.0/24, 2001:db8::/32", &a, NULL), 0);

	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(25)};
	inet_pton(AF_INET, "192.0.2.77", &sin.sin_addr);
	assert_true(acl_match(a, (struct sockaddr *)&sin));
	inet_pton(AF_INET, "192.0.3.1", &sin.sin_addr);
	assert_false(acl_match(a, (struct sockaddr *)&sin));

	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons(25)};
	inet_pton(AF_INET6, "2001:db8:1::5", &sin6.sin6_addr);
	assert_true(acl_match(a, (struct sockaddr *)&sin6));
	inet_pton(AF_INET6, "::ffff:192.0.2.1", &sin6.sin6_addr);
	assert_true(acl_match(a, (struct sockaddr *)&sin6));
	inet_pton(AF_INET6, "::ffff:198.51.100.1", &sin6.sin6_addr);
	assert_false(acl_match(a, (struct sockaddr *)&sin6));

	struct sockaddr other = {.sa_family = AF_UNIX};
	assert_false(acl_match(a, &other));
	assert_false(acl_match(a, NULL));
	acl_free(a);
}

struct bad_case {
	const char *list;
	const char *error;
};

static const struct bad_case bad_cases[] = {
    {"10.0.0.1/8",
     "bad entry \"10.0.0.1/8\": host bits are set after /8 (did you mean 10.0.0.0/8?)"},
    {"2001:db8::1/32", "bad entry \"2001:db8::1/32\": host bits are set after /32 (did you mean "
		       "2001:db8::/32?)"},
    {"127.0.0.1/33", "bad entry \"127.0.0.1/33\": IPv4 prefix length must be 0-32"},
    {"::1/129", "bad entry \"::1/129\": IPv6 prefix length must be 0-128"},
    {"127.0.0.1/", "bad entry \"127.0.0.1/\": prefix length must be a decimal number"},
    {"127.0.0.1/-1", "bad entry \"127.0.0.1/-1\": prefix length must be a decimal number"},
    {"127.0.0.1/0x8", "bad entry \"127.0.0.1/0x8\": prefix length must be a decimal number"},
    {"127.0.0.1/1000", "bad entry \"127.0.0.1/1000\": prefix length must be a decimal number"},
    {"127.0.0.1/32, localhost", "bad entry \"localhost\": not an IPv4 or IPv6 address"},
    {"10.0.0.0/8; 192.168.0.0/16",
     "bad entry \"10.0.0.0/8;\": prefix length must be a decimal number"},
    {"256.0.0.1", "bad entry \"256.0.0.1\": not an IPv4 or IPv6 address"},
    {"10.1", "bad entry \"10.1\": not an IPv4 or IPv6 address"},
    {"fe80::1%eth0", "bad entry \"fe80::1%eth0\": not an IPv4 or IPv6 address"},
    {"/8", "bad entry \"/8\": not an IPv4 or IPv6 address"},
    {"1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb:cccc:dddd:eeee:ffff:0000",
     "bad entry \"1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb:cccc:d...\": "
     "too long for an address"},
};

static void test_bad_entries(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		struct acl *a = (struct acl *)&a; /* must stay untouched */
		char *err = NULL;
		int rc = acl_parse(bad_cases[i].list, &a, &err);
		if (rc != -EINVAL)
			fail_msg("\"%s\": rc %d, want -EINVAL", bad_cases[i].list, rc);
		assert_ptr_equal(a, (struct acl *)&a);
		if (err == NULL || strcmp(err, bad_cases[i].error) != 0)
			fail_msg("\"%s\": error \"%s\", want \"%s\"", bad_cases[i].list,
				 err ? err : "(none)", bad_cases[i].error);
		free(err);
		/* Without an err pointer the call still fails, and leaks nothing. */
		assert_int_equal(acl_parse(bad_cases[i].list, &a, NULL), -EINVAL);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_match_table),
	    cmocka_unit_test(test_count),
	    cmocka_unit_test(test_match_sockaddr),
	    cmocka_unit_test(test_bad_entries),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

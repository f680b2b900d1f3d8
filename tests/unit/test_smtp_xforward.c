/*
 * test_smtp_xforward — the XFORWARD attribute parser and the state it keeps.
 *
 * One table row per XFORWARD argument: the return code, which attributes it
 * names and their decoded values. Then what applying commands one after another
 * leaves in the envelope, and the once-per-session permission. The conversation
 * around the command (sequence, replies) is in test_smtp_proto.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smtp/smtp_xforward.h"

enum {
	NAME = SMTP_XFORWARD_NAME,
	ADDR = SMTP_XFORWARD_ADDR,
	PROTO = SMTP_XFORWARD_PROTO,
	HELO = SMTP_XFORWARD_HELO,
	SOURCE = SMTP_XFORWARD_SOURCE,
};

struct parse_case {
	const char *arg;
	int ret;				/* 0, -EINVAL or -ENODATA */
	unsigned given;				/* checked when ret == 0 */
	const char *addr, *name, *helo, *proto; /* NULL: expected NULL */
};

static const struct parse_case parse_cases[] = {
    /* good attributes */
    {.arg = "NAME=mail.example.org ADDR=192.0.2.7 PROTO=esmtp HELO=mail.example.org SOURCE=REMOTE",
     .ret = 0,
     .given = NAME | ADDR | PROTO | HELO | SOURCE,
     .addr = "192.0.2.7",
     .name = "mail.example.org",
     .helo = "mail.example.org",
     .proto = "ESMTP"},
    {.arg = "addr=192.0.2.7", .ret = 0, .given = ADDR, .addr = "192.0.2.7"},
    {.arg = "Helo=h.example", .ret = 0, .given = HELO, .helo = "h.example"},
    {.arg = "ADDR=IPv6:2001:DB8:0::1 HELO=[a+20b+2Bc]",
     .ret = 0,
     .given = ADDR | HELO,
     .addr = "2001:db8::1",
     .helo = "[a b+c]"},
    {.arg = "ADDR=2001:db8::1", .ret = 0, .given = ADDR, .addr = "2001:db8::1"},
    {.arg = "ADDR=192.0.2.7\tNAME=n.example",
     .ret = 0,
     .given = ADDR | NAME,
     .addr = "192.0.2.7",
     .name = "n.example"},
    {.arg = "NAME=a_b-c:d.e PROTO=SMTP",
     .ret = 0,
     .given = NAME | PROTO,
     .name = "a_b-c:d.e",
     .proto = "SMTP"},
    {.arg = "ADDR=192.0.2.1 ADDR=192.0.2.2", .ret = 0, .given = ADDR, .addr = "192.0.2.2"},
    {.arg = "SOURCE=local", .ret = 0, .given = SOURCE},
    /* unavailable: named, value cleared */
    {.arg = "ADDR=[UNAVAILABLE] NAME=[TEMPUNAVAIL] HELO=h",
     .ret = 0,
     .given = ADDR | NAME | HELO,
     .helo = "h"},
    {.arg = "PROTO=[unavailable] SOURCE=[TEMPUNAVAIL]", .ret = 0, .given = PROTO | SOURCE},
    {.arg = "HELO=", .ret = 0, .given = HELO},
    /* bad attributes */
    {.arg = "", .ret = -ENODATA},
    {.arg = "ADDR=192.0.2.7 FOO=1", .ret = -EINVAL},
    {.arg = "ADDR=999.0.0.1", .ret = -EINVAL},
    {.arg = "ADDR=mx.example", .ret = -EINVAL},
    {.arg = "ADDR=", .ret = -EINVAL},
    {.arg = "ADDR=IPv6:192.0.2.1", .ret = -EINVAL},
    {.arg = "ADDR", .ret = -EINVAL},
    {.arg = "=x", .ret = -EINVAL},
    {.arg = "HELO=a+2", .ret = -EINVAL},
    {.arg = "HELO=a+ZZ", .ret = -EINVAL},
    {.arg = "HELO=a+0Ab", .ret = -EINVAL},
    {.arg = "HELO=a+7F", .ret = -EINVAL},
    {.arg = "HELO=a=b", .ret = -EINVAL},
    {.arg = "HELO=a\x01", .ret = -EINVAL},
    {.arg = "HELO=\xc3\xa9", .ret = -EINVAL},
    {.arg = "NAME=bad/name", .ret = -EINVAL},
    {.arg = "NAME=", .ret = -EINVAL},
    {.arg = "SOURCE=ELSEWHERE", .ret = -EINVAL},
    {.arg = "PROTO=E-SMTP", .ret = -EINVAL},
    {.arg = "PROTO=", .ret = -EINVAL},
    {.arg = "HELO=ok NAME=bad/name", .ret = -EINVAL},
};

static void check_value(const char *arg, const char *what, const char *got, const char *want)
{
	if (want == NULL && got == NULL)
		return;
	if (want == NULL || got == NULL || strcmp(got, want) != 0)
		fail_msg("\"%s\": %s is \"%s\", expected \"%s\"", arg, what, got ? got : "(null)",
			 want ? want : "(null)");
}

static void test_parse_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
		const struct parse_case *c = &parse_cases[i];
		struct smtp_xforward_attrs a;
		memset(&a, 0x5a, sizeof(a)); /* parse must initialise it, on failure too */
		int r = smtp_xforward_parse(c->arg, &a);
		if (r != c->ret)
			fail_msg("\"%s\": returned %d, expected %d", c->arg, r, c->ret);
		if (r < 0) {
			/* Nothing to free after a failure. */
			if (a.given != 0 || a.addr || a.name || a.helo || a.proto)
				fail_msg("\"%s\": attributes left after failure", c->arg);
			continue;
		}
		if (a.given != c->given)
			fail_msg("\"%s\": given %#x, expected %#x", c->arg, a.given, c->given);
		check_value(c->arg, "addr", a.addr, c->addr);
		check_value(c->arg, "name", a.name, c->name);
		check_value(c->arg, "helo", a.helo, c->helo);
		check_value(c->arg, "proto", a.proto, c->proto);
		smtp_xforward_attrs_free(&a);
		assert_int_equal(a.given, 0);
		assert_null(a.addr);
	}
}

/* Applies one command's arguments to env; the command must parse. */
static void apply(struct smtp_envelope *env, const char *arg)
{
	struct smtp_xforward_attrs a;
	assert_int_equal(smtp_xforward_parse(arg, &a), 0);
	smtp_xforward_apply(env, &a);
	assert_int_equal(a.given, 0);
	assert_null(a.addr);
	assert_null(a.name);
	assert_null(a.helo);
	assert_null(a.proto);
}

static void assert_env(const struct smtp_envelope *e, const char *addr, const char *name,
		       const char *helo, const char *proto)
{
	check_value("env", "addr", e->xforward_addr, addr);
	check_value("env", "name", e->xforward_name, name);
	check_value("env", "helo", e->xforward_helo, helo);
	check_value("env", "proto", e->xforward_proto, proto);
}

/* Commands accumulate; a named attribute replaces, an unavailable one clears. */
static void test_apply_accumulates(void **state)
{
	(void)state;
	struct smtp_envelope env = {0};
	apply(&env, "ADDR=192.0.2.7 NAME=n.example");
	assert_env(&env, "192.0.2.7", "n.example", NULL, NULL);
	apply(&env, "HELO=h.example PROTO=smtp");
	assert_env(&env, "192.0.2.7", "n.example", "h.example", "SMTP");
	apply(&env, "ADDR=[UNAVAILABLE] NAME=[TEMPUNAVAIL] HELO=h");
	assert_env(&env, NULL, NULL, "h", "SMTP");
	apply(&env, "SOURCE=REMOTE");
	assert_env(&env, NULL, NULL, "h", "SMTP");
	apply(&env, "ADDR=IPv6:2001:DB8::2");
	assert_env(&env, "2001:db8::2", NULL, "h", "SMTP");
	smtp_xforward_reset(&env);
	assert_env(&env, NULL, NULL, NULL, NULL);
	smtp_xforward_reset(&env); /* twice: no double free */
}

/* A bad command leaves the envelope as it was. */
static void test_bad_command_changes_nothing(void **state)
{
	(void)state;
	struct smtp_envelope env = {0};
	apply(&env, "ADDR=192.0.2.7");
	struct smtp_xforward_attrs a;
	assert_int_equal(smtp_xforward_parse("ADDR=192.0.2.8 HELO=x FOO=1", &a), -EINVAL);
	assert_env(&env, "192.0.2.7", NULL, NULL, NULL);
	smtp_xforward_reset(&env);
}

struct hook_count {
	unsigned asked;
	bool answer;
};

static bool hook(void *ctx)
{
	struct hook_count *h = ctx;
	h->asked++;
	return h->answer;
}

/* The hook is asked once; its answer stands for the session. */
static void test_permitted_asked_once(void **state)
{
	(void)state;
	struct hook_count yes = {.answer = true}, no = {.answer = false};
	enum smtp_xforward_permit p = SMTP_XFORWARD_NOT_ASKED;
	assert_true(smtp_xforward_permitted(&p, hook, &yes));
	assert_true(smtp_xforward_permitted(&p, hook, &yes));
	assert_int_equal(yes.asked, 1);
	assert_int_equal(p, SMTP_XFORWARD_PERMITTED);
	p = SMTP_XFORWARD_NOT_ASKED;
	assert_false(smtp_xforward_permitted(&p, hook, &no));
	assert_false(smtp_xforward_permitted(&p, hook, &no));
	assert_int_equal(no.asked, 1);
	p = SMTP_XFORWARD_NOT_ASKED;
	assert_false(smtp_xforward_permitted(&p, NULL, NULL));
	assert_int_equal(p, SMTP_XFORWARD_DENIED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_table),
	    cmocka_unit_test(test_apply_accumulates),
	    cmocka_unit_test(test_bad_command_changes_nothing),
	    cmocka_unit_test(test_permitted_asked_once),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

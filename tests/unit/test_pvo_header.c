/*
 * test_pvo_header — the parser of X-Lazaret-Quarantine / X-Lazaret-Origin-Id:
 * tables of good and malformed values, with the exact reason each is refused.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/xalloc.h"
#include "quarantine/pvo_header.h"

/* 2026-12-05T07:00:00Z */
#define T 1796454000000LL

static void test_times(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		int rc;
		int64_t ms;
	} cases[] = {
	    {"2026-12-05T07:00:00Z", 0, T},
	    {"2026-12-05t07:00:00z", 0, T},
	    {"2026-12-05T16:00:00+09:00", 0, T},
	    {"2026-12-05T02:30:00-04:30", 0, T},
	    {"2026-12-05T07:00:00.25Z", 0, T + 250},
	    {"2026-12-05T07:00:00.123456789Z", 0, T + 123},
	    {"2024-02-29T00:00:00Z", 0, 1709164800000LL},
	    {"1970-01-01T00:00:01Z", 0, 1000},
	    {"2026-12-05T07:00:60Z", 0, T + 60000}, /* a leap second */
	    {"2026-12-05 07:00:00Z", -EINVAL, 0},   /* the space form is not taken */
	    {"2026-12-05T07:00:00", -EINVAL, 0},    /* no offset */
	    {"2026-12-05T07:00Z", -EINVAL, 0},
	    {"2026-13-05T07:00:00Z", -EINVAL, 0},
	    {"2025-02-29T07:00:00Z", -EINVAL, 0},
	    {"2026-12-32T07:00:00Z", -EINVAL, 0},
	    {"2026-12-05T24:00:00Z", -EINVAL, 0},
	    {"2026-12-05T07:60:00Z", -EINVAL, 0},
	    {"2026-12-05T07:00:00+24:00", -EINVAL, 0},
	    {"2026-12-05T07:00:00+0900", -EINVAL, 0},
	    {"2026-12-05T07:00:00.Z", -EINVAL, 0},
	    {"2026-12-05T07:00:00.1234567890Z", -EINVAL, 0},
	    {"2026-12-05T07:00:00Zjunk", -EINVAL, 0},
	    {"1970-01-01T00:00:00Z", -EINVAL, 0}, /* not after the epoch */
	    {"２026-12-05T07:00:00Z", -EINVAL, 0},
	    {"", -EINVAL, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int64_t ms = 0;
		int rc = pvo_header_parse_time(cases[i].in, strlen(cases[i].in), &ms);
		if (rc != cases[i].rc || (rc == 0 && ms != cases[i].ms))
			fail_msg("%s: rc %d ms %lld", cases[i].in, rc, (long long)ms);
	}
}

static void test_quarantine_values(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		const char *name;   /* NULL: refused */
		const char *reason; /* or the error when refused */
		int64_t entered, expires;
	} cases[] = {
	    {"Adult; reason=\"Adult filter\"; expires=2026-12-05T07:00:00Z;"
	     " entered=2026-12-04T07:00:00Z",
	     "Adult", "Adult filter", T - 86400000, T},
	    {"  virus  ;reason=Eicar-Test-Signature", "virus", "Eicar-Test-Signature", 0, 0},
	    {"File Analysis", "File Analysis", "", 0, 0},
	    {"Finance;", "Finance", "", 0, 0},
	    {"Finance; REASON=\"a \\\"quoted\\\" \\\\ name\"", "Finance", "a \"quoted\" \\ name", 0,
	     0},
	    {"Finance; reason=\"; not a separator\"", "Finance", "; not a separator", 0, 0},
	    {"Finance; reason=\"\"", "Finance", "", 0, 0},
	    {"経理; reason=\"社外秘\"", "経理", "社外秘", 0, 0},
	    {"Finance; colour=blue; reason=x", "Finance", "x", 0, 0},
	    {"Finance; expires = 2026-12-05T16:00:00+09:00", "Finance", "", 0, T},
	    /* refused */
	    {"", NULL, "no quarantine name", 0, 0},
	    {"   ; reason=x", NULL, "no quarantine name", 0, 0},
	    {"Fin\"ance", NULL, "the quarantine name has '\"'", 0, 0},
	    {"Fin=ance", NULL, "the quarantine name has '='", 0, 0},
	    {"*pvo", NULL, "the quarantine name begins with '*'", 0, 0},
	    {"Fin\x01"
	     "ance",
	     NULL, "the quarantine name is not UTF-8 text", 0, 0},
	    {"Fin\xff"
	     "ance",
	     NULL, "the quarantine name is not UTF-8 text", 0, 0},
	    {"\xc0\xaf", NULL, "the quarantine name is not UTF-8 text", 0, 0},
	    {"\xed\xa0\x80", NULL, "the quarantine name is not UTF-8 text", 0, 0},
	    {"\xe7\xb5", NULL, "the quarantine name is not UTF-8 text", 0, 0},
	    {"A234567890123456789012345678901234567890123456789012345678901234X", NULL,
	     "the quarantine name is longer than 64 bytes", 0, 0},
	    {"Finance; reason", NULL, "a parameter without '=' value", 0, 0},
	    {"Finance; =x", NULL, "a parameter without '=' value", 0, 0},
	    {"Finance; reason=\"open", NULL, "reason: an unterminated quoted string", 0, 0},
	    {"Finance; reason=\"ends \\", NULL, "reason: a backslash ends the value", 0, 0},
	    {"Finance; reason=\"a\" b", NULL, "reason: text after the value", 0, 0},
	    {"Finance; reason=a\"b", NULL, "reason: a quote or control character in a token", 0, 0},
	    {"Finance; reason=x; reason=y", NULL, "reason given twice", 0, 0},
	    {"Finance; reason=\"\x1b[31m\"", NULL, "reason: not UTF-8 text", 0, 0},
	    {"Finance; expires=tomorrow", NULL, "expires: not an RFC 3339 date-time", 0, 0},
	    {"Finance; entered=2026-12-05T07:00:00", NULL, "entered: not an RFC 3339 date-time", 0,
	     0},
	    {"Finance; expires=2026-12-05T07:00:00Z; expires=2026-12-06T07:00:00Z", NULL,
	     "expires given twice", 0, 0},
	    {"Finance; entered=2026-12-05T07:00:00Z; expires=2026-12-04T07:00:00Z", NULL,
	     "expires is before entered", 0, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct pvo_header_quarantine q;
		char err[PVO_HEADER_ERR_MAX] = "";
		int rc = pvo_header_parse_quarantine(cases[i].in, strlen(cases[i].in), &q, err,
						     sizeof(err));
		if (cases[i].name == NULL) {
			if (rc != -EINVAL || strcmp(err, cases[i].reason) != 0)
				fail_msg("case %zu: rc %d err \"%s\"", i, rc, err);
			continue;
		}
		if (rc != 0)
			fail_msg("case %zu: refused: %s", i, err);
		assert_string_equal(q.name, cases[i].name);
		assert_string_equal(q.reason, cases[i].reason);
		assert_int_equal(q.entered_ms, cases[i].entered);
		assert_int_equal(q.expires_ms, cases[i].expires);
		pvo_header_quarantine_clear(&q);
	}
	/* a reason over its limit */
	char *big = xasprintf("F; reason=\"%0*d\"", 513, 0);
	struct pvo_header_quarantine q;
	char err[PVO_HEADER_ERR_MAX];
	assert_int_equal(pvo_header_parse_quarantine(big, strlen(big), &q, err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "reason: longer than 512 bytes");
	free(big);
}

static void test_header_sections(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		int rc;
		const char *err_or_names; /* names joined by '|' then ' origin=' */
	} cases[] = {
	    /* folded over three lines, CRLF, a second header, the origin */
	    {"From: a@x.jp\r\nX-Lazaret-Quarantine: Adult;\r\n\treason=\"Adult\r\n  filter\";\r\n"
	     " expires=2026-12-05T07:00:00Z\r\nx-lazaret-quarantine: virus; reason=EICAR\r\n"
	     "X-Lazaret-Origin-Id:  q-123 \r\nSubject: s\r\n\r\nX-Lazaret-Quarantine: Body\r\n",
	     0, "Adult:Adult  filter|virus:EICAR| origin=q-123"},
	    /* bare LF, the obsolete "Name :" form, no origin */
	    {"X-Lazaret-Quarantine : Finance\nSubject: x\n\nbody", 0, "Finance:| origin="},
	    /* none at all */
	    {"Subject: x\r\n\r\n", 0, " origin="},
	    /* the last header with no body after it */
	    {"X-Lazaret-Quarantine: Finance", 0, "Finance:| origin="},
	    /* a similar name is not ours */
	    {"X-Lazaret-Quarantined: nope\r\n\r\n", 0, " origin="},
	    /* malformed */
	    {"X-Lazaret-Quarantine: Adult; reason=\"x\r\n\r\n", -EINVAL,
	     "X-Lazaret-Quarantine: reason: an unterminated quoted string"},
	    {"X-Lazaret-Quarantine: virus\r\nX-Lazaret-Quarantine: VIRUS\r\n\r\n", -EINVAL,
	     "X-Lazaret-Quarantine: quarantine \"VIRUS\" named twice"},
	    {"X-Lazaret-Origin-Id: a\r\nX-Lazaret-Origin-Id: b\r\n\r\n", -EINVAL,
	     "X-Lazaret-Origin-Id: given twice"},
	    {"X-Lazaret-Origin-Id: a b\r\n\r\n", -EINVAL,
	     "X-Lazaret-Origin-Id: not printable ASCII without blanks"},
	    {"X-Lazaret-Origin-Id:\r\n\r\n", -EINVAL, "X-Lazaret-Origin-Id: empty"},
	    {"X-Lazaret-Quarantine:\r\n\r\n", -EINVAL, "X-Lazaret-Quarantine: no quarantine name"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct pvo_headers h;
		char err[PVO_HEADER_ERR_MAX] = "";
		int rc = pvo_headers_parse((const unsigned char *)cases[i].in, strlen(cases[i].in),
					   &h, err, sizeof(err));
		if (rc != cases[i].rc)
			fail_msg("case %zu: rc %d err \"%s\"", i, rc, err);
		if (rc < 0) {
			if (strcmp(err, cases[i].err_or_names) != 0)
				fail_msg("case %zu: err \"%s\"", i, err);
			continue;
		}
		char got[512] = "";
		for (size_t k = 0; k < h.nq; k++)
			snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s:%s|",
				 h.q[k].name, h.q[k].reason);
		snprintf(got + strlen(got), sizeof(got) - strlen(got), " origin=%s",
			 h.origin_id != NULL ? h.origin_id : "");
		if (strcmp(got, cases[i].err_or_names) != 0)
			fail_msg("case %zu: got \"%s\"", i, got);
		pvo_headers_clear(&h);
	}
}

static void test_header_limits(void **state)
{
	(void)state;
	char err[PVO_HEADER_ERR_MAX];
	struct pvo_headers h;
	/* 33 quarantines */
	char *msg = xstrdup("");
	for (int i = 0; i < 33; i++) {
		char *n = xasprintf("%sX-Lazaret-Quarantine: q%d\r\n", msg, i);
		free(msg);
		msg = n;
	}
	assert_int_equal(pvo_headers_parse((unsigned char *)msg, strlen(msg), &h, err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "more than 32 X-Lazaret-Quarantine headers");
	free(msg);
	/* a field folded past its limit */
	msg = xstrdup("X-Lazaret-Quarantine: F; reason=\"");
	for (int i = 0; i < 60; i++) {
		char *n = xasprintf("%s\r\n %050d", msg, i);
		free(msg);
		msg = n;
	}
	char *n = xasprintf("%s\"\r\n\r\n", msg);
	free(msg);
	msg = n;
	assert_int_equal(pvo_headers_parse((unsigned char *)msg, strlen(msg), &h, err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "X-Lazaret-Quarantine: longer than 2048 bytes");
	free(msg);
	/* origin id over its limit */
	msg = xasprintf("X-Lazaret-Origin-Id: %0129d\r\n\r\n", 1);
	assert_int_equal(pvo_headers_parse((unsigned char *)msg, strlen(msg), &h, err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "X-Lazaret-Origin-Id: longer than 128 bytes");
	free(msg);
}

static void test_names(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		bool ok;
	} cases[] = {
	    {"Finance", true},
	    {"File Analysis", true},
	    {"経理", true},
	    {"a", true},
	    {"", false},
	    {" Finance", false},
	    {"Finance ", false},
	    {"*pvo", false},
	    {"Fin;ance", false},
	    {"Fin\"ance", false},
	    {"Fin\\ance", false},
	    {"Fin=ance", false},
	    {"Fin\tance", false},
	    {"Fin\xff"
	     "ance",
	     false},
	    {"A234567890123456789012345678901234567890123456789012345678901234", true},
	    {"A234567890123456789012345678901234567890123456789012345678901234X", false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (pvo_header_name_ok(cases[i].name) != cases[i].ok)
			fail_msg("\"%s\": expected %s", cases[i].name,
				 cases[i].ok ? "ok" : "refused");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_times),
	    cmocka_unit_test(test_names),
	    cmocka_unit_test(test_quarantine_values),
	    cmocka_unit_test(test_header_sections),
	    cmocka_unit_test(test_header_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

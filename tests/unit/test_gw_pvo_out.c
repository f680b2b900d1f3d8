/*
 * Tests for gateway/pvo_out: every X-Lazaret-Quarantine line it writes parses
 * back with the manager's parser (quarantine/pvo_header) to the same name and
 * reason (quotes, backslashes, Japanese, control characters, over-long reasons),
 * the origin id is stable and depends on what it should, and the rescan flag of
 * X-Lazaret-Released is read from the latest release only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/pvo_out.h"
#include "quarantine/pvo_header.h"

/* 2026-12-05T10:00:00Z */
#define ENTERED INT64_C(1796464800000)

static const struct {
	const char *name;
	const char *reason;   /* as the gateway has it */
	const char *expected; /* as the manager reads it */
} header_cases[] = {
    {"Policy", "block_exe", "block_exe"},
    {"Virus", "Eicar-Test-Signature", "Eicar-Test-Signature"},
    {"Policy", "say \"hi\"", "say \"hi\""},
    {"Policy", "back\\slash", "back\\slash"},
    {"ポリシー", "添付ファイル遮断", "添付ファイル遮断"},
    {"Policy", "tab\there\r\nnewline", "tab?here??newline"},
    {"Policy", "bad \xff\xfe utf-8", "bad ?? utf-8"},
    {"Policy", "half \xe6\x97", "half ??"},
    {"Policy", "", ""},
    {"Outbreak", "a; b=c", "a; b=c"},
};

static void test_header_round_trip(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(header_cases) / sizeof(header_cases[0]); i++) {
		char *line = pvo_out_quarantine_header(header_cases[i].name, header_cases[i].reason,
						       ENTERED, 0);
		/* a message of this one header, then a body */
		size_t n = strlen(line);
		char *msg = malloc(n + 8);
		memcpy(msg, line, n);
		memcpy(msg + n, "\r\nbody", 7);
		struct pvo_headers h;
		char err[PVO_HEADER_ERR_MAX] = "";
		int rc = pvo_headers_parse((const unsigned char *)msg, n + 6, &h, err, sizeof(err));
		if (rc != 0)
			fail_msg("case %zu: %s: %s", i, line, err);
		assert_int_equal(h.nq, 1);
		assert_string_equal(h.q[0].name, header_cases[i].name);
		assert_string_equal(h.q[0].reason, header_cases[i].expected);
		assert_int_equal(h.q[0].entered_ms, ENTERED);
		assert_int_equal(h.q[0].expires_ms, 0);
		pvo_headers_clear(&h);
		free(msg);
		free(line);
	}
}

static void test_header_expires_and_long_reason(void **state)
{
	(void)state;
	/* 600 quotes: cut to PVO_HEADER_REASON_MAX unescaped bytes, still parsed */
	char reason[601];
	memset(reason, '"', 600);
	reason[600] = '\0';
	char *line = pvo_out_quarantine_header("Policy", reason, ENTERED, ENTERED + 86400000);
	struct pvo_headers h;
	char err[PVO_HEADER_ERR_MAX] = "";
	assert_int_equal(
	    pvo_headers_parse((const unsigned char *)line, strlen(line), &h, err, sizeof(err)), 0);
	assert_int_equal(strlen(h.q[0].reason), PVO_HEADER_REASON_MAX);
	assert_int_equal(h.q[0].expires_ms, ENTERED + 86400000);
	pvo_headers_clear(&h);
	free(line);
	/* a Japanese reason is cut at a character boundary (3 bytes each) */
	char jp[3 * 200 + 1] = "";
	for (int i = 0; i < 200; i++)
		strcat(jp, "遮");
	line = pvo_out_quarantine_header("Policy", jp, ENTERED, 0);
	assert_int_equal(
	    pvo_headers_parse((const unsigned char *)line, strlen(line), &h, err, sizeof(err)), 0);
	assert_int_equal(strlen(h.q[0].reason), 510);
	pvo_headers_clear(&h);
	free(line);
}

static void test_names(void **state)
{
	(void)state;
	assert_true(pvo_out_name_ok("Policy"));
	assert_true(pvo_out_name_ok("ポリシー"));
	assert_false(pvo_out_name_ok("a;b"));
	assert_false(pvo_out_name_ok("say \"x\""));
	assert_false(pvo_out_name_ok(" lead"));
	assert_false(pvo_out_name_ok(""));
	assert_false(pvo_out_name_ok(NULL));
	char longname[70];
	memset(longname, 'a', 69);
	longname[69] = '\0';
	assert_false(pvo_out_name_ok(longname));
}

static void test_origin_id(void **state)
{
	(void)state;
	const char *r1[] = {"a@example.com", "b@example.com"};
	const char *r2[] = {"a@example.com"};
	const char *q1[] = {"Virus", "Policy"};
	const char *q2[] = {"Virus"};
	const unsigned char m[] = "Subject: x\r\n\r\nbody\r\n";
	char a[PVO_OUT_ORIGIN_LEN], b[PVO_OUT_ORIGIN_LEN];
	pvo_out_origin_id("gw1", "s@x", r1, 2, q1, 2, m, sizeof(m) - 1, a);
	assert_int_equal(strlen(a), 64);
	pvo_out_origin_id("gw1", "s@x", r1, 2, q1, 2, m, sizeof(m) - 1, b);
	assert_string_equal(a, b); /* a retry */
	pvo_out_origin_id("gw1", "s@x", r2, 1, q1, 2, m, sizeof(m) - 1, b);
	assert_string_not_equal(a, b); /* another group of recipients */
	pvo_out_origin_id("gw1", "s@x", r1, 2, q2, 1, m, sizeof(m) - 1, b);
	assert_string_not_equal(a, b); /* other quarantines */
	pvo_out_origin_id("gw2", "s@x", r1, 2, q1, 2, m, sizeof(m) - 1, b);
	assert_string_not_equal(a, b);
	pvo_out_origin_id("gw1", "s@x", r1, 2, q1, 2, m, sizeof(m) - 2, b);
	assert_string_not_equal(a, b); /* another message */
	pvo_out_origin_id("gw1", NULL, r1, 2, q1, 2, m, sizeof(m) - 1, b);
	assert_string_not_equal(a, b);
}

static const struct {
	const char *msg;
	int rescan;
} released_cases[] = {
    {"X-Lazaret-Released: lazaret1; 2026-12-05T10:00:00Z; rescan=yes\r\n\r\nbody", 1},
    {"X-Lazaret-Released: lazaret1; 2026-12-05T10:00:00Z\r\n\r\nbody", 0},
    {"x-lazaret-released : m;rescan = \"YES\"\r\n\r\n", 1},
    {"X-Lazaret-Released: m; 2026-12-05T10:00:00Z;\r\n\trescan=yes\r\nSubject: a\r\n\r\n", 1},
    {"X-Lazaret-Released: m; rescan=no\r\n\r\n", 0},
    {"X-Lazaret-Released: m; rescan=yess\r\n\r\n", 0},
    {"X-Lazaret-Released: m; norescan=yes\r\n\r\n", 0},
    {"X-Lazaret-Released: m; note=\"rescan=yes\"\r\n\r\n", 0},
    /* only the latest release (on top) counts */
    {"X-Lazaret-Released: m; 2026-12-06T10:00:00Z\r\n"
     "X-Lazaret-Released: m; 2026-12-05T10:00:00Z; rescan=yes\r\n\r\n",
     0},
    {"Subject: x\r\nX-Lazaret-Released: m; rescan=yes\r\n\r\n", 1},
    /* in the body: not a header */
    {"Subject: x\r\n\r\nX-Lazaret-Released: m; rescan=yes\r\n", 0},
    {"X-Lazaret-Released-Not: m; rescan=yes\r\n\r\n", 0},
    {"X-Lazaret-Released: m; rescan=yes", 1},
    {"X-Lazaret-Released: m; rescan=yes\n\nbody", 1},
    {"", 0},
};

static void test_released_rescan(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(released_cases) / sizeof(released_cases[0]); i++) {
		const char *m = released_cases[i].msg;
		bool got = pvo_out_released_rescan((const unsigned char *)m, strlen(m));
		if (got != (released_cases[i].rescan != 0))
			fail_msg("case %zu: %s: got %d", i, m, got);
	}
}

/* The id= of the first X-Lazaret-Released field: a token of letters, digits, '-'. */
static const struct {
	const char *msg;
	const char *id; /* NULL: none */
} rescan_id_cases[] = {
    {"X-Lazaret-Released: m; 2026-12-05T10:00:00Z; rescan=yes;"
     " id=019ae9a0-1c2b-7d3e-8f40-123456789abc\r\n\r\n",
     "019ae9a0-1c2b-7d3e-8f40-123456789abc"},
    {"X-Lazaret-Released: m; rescan=yes;\r\n\tID = \"abc-1\"\r\n\r\n", "abc-1"},
    {"X-Lazaret-Released: m; rescan=yes\r\n\r\n", NULL},
    {"X-Lazaret-Released: m; rescan=yes; id=\r\n\r\n", NULL},
    {"X-Lazaret-Released: m; rescan=yes; id=\"x rescan=clean\"\r\n\r\n", NULL},
    {"X-Lazaret-Released: m; rescan=yes; id=a\"b\r\n\r\n", NULL},
    {"X-Lazaret-Released: m; rescan=yes; id=a_b\r\n\r\n", NULL},
    {"X-Lazaret-Released: m; rescan=yes; id="
     "0123456789012345678901234567890123456789012345678901234567890123\r\n\r\n",
     "0123456789012345678901234567890123456789012345678901234567890123"},
    {"X-Lazaret-Released: m; rescan=yes; id="
     "01234567890123456789012345678901234567890123456789012345678901234\r\n\r\n",
     NULL},
    /* only the first field counts, and only the header section */
    {"X-Lazaret-Released: m2\r\nX-Lazaret-Released: m; rescan=yes; id=a1\r\n\r\n", NULL},
    {"Subject: x\r\n\r\nX-Lazaret-Released: m; rescan=yes; id=a1\r\n", NULL},
    {"X-Lazaret-Released: m; note=\"id=a1\"\r\n\r\n", NULL},
};

static void test_released_rescan_id(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(rescan_id_cases) / sizeof(rescan_id_cases[0]); i++) {
		const char *m = rescan_id_cases[i].msg;
		char id[PVO_OUT_RESCAN_ID_MAX + 1];
		memset(id, 'x', sizeof(id));
		bool got = pvo_out_released_rescan_id((const unsigned char *)m, strlen(m), id);
		const char *want = rescan_id_cases[i].id;
		if (got != (want != NULL) || strcmp(id, want != NULL ? want : "") != 0)
			fail_msg("case %zu: %s: got %d \"%s\"", i, m, got, id);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_header_round_trip),
	    cmocka_unit_test(test_header_expires_and_long_reason),
	    cmocka_unit_test(test_names),
	    cmocka_unit_test(test_origin_id),
	    cmocka_unit_test(test_released_rescan),
	    cmocka_unit_test(test_released_rescan_id),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

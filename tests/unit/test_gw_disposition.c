/*
 * Tests for gateway/disposition: grouping recipients by outcome (one copy per
 * group), and the edits of a copy: the spam tag before an encoded Subject, and
 * header removal with folded lines.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/disposition.h"

#define NEXT                                                                                       \
	{                                                                                          \
		.route = DISPOSITION_NEXT_HOP                                                      \
	}
#define TAGGED                                                                                     \
	{                                                                                          \
		.route = DISPOSITION_NEXT_HOP, .edits = DISPOSITION_EDIT_TAG, .verdict = "suspect" \
	}
#define EXT                                                                                        \
	{                                                                                          \
		.route = DISPOSITION_EXTERNAL_SPAM, .verdict = "spam"                              \
	}
#define DROP                                                                                       \
	{                                                                                          \
		.route = DISPOSITION_DROP                                                          \
	}

static void test_grouping(void **state)
{
	(void)state;
	/* rcpt:            0     1    2     3       4                              5 */
	struct disposition d[] = {
	    NEXT,
	    EXT,
	    NEXT,
	    TAGGED,
	    {.route = DISPOSITION_QUARANTINE, .target = "Policy"},
	    {.route = DISPOSITION_QUARANTINE, .target = "policy"},
	    {.route = DISPOSITION_QUARANTINE, .target = "Virus"},
	    DROP,
	    {.route = DISPOSITION_DROP, .verdict = "spam", .reason = "blocklist"},
	    {.route = DISPOSITION_ALT_HOST, .target = "127.0.0.1:25"},
	    {.route = DISPOSITION_ALT_HOST, .target = "127.0.0.1:26"},
	    {.route = DISPOSITION_EXTERNAL_SPAM, .verdict = "suspect"},
	    /* central PVO: one transfer per set of quarantines (12, 14 | 13) */
	    {.route = DISPOSITION_CENTRAL_PVO, .pvo = 0x3, .reason = "virus"},
	    {.route = DISPOSITION_CENTRAL_PVO, .pvo = 0x1},
	    {.route = DISPOSITION_CENTRAL_PVO, .pvo = 0x3, .reason = "other"},
	};
	size_t n = sizeof(d) / sizeof(d[0]);
	struct disposition_group *g = NULL;
	size_t ng = 0;
	disposition_group(d, n, &g, &ng);
	static const size_t want[][3] = {
	    {0, 2, SIZE_MAX}, {1, SIZE_MAX},	  {3, SIZE_MAX},  {4, 5, SIZE_MAX},
	    {6, SIZE_MAX},    {7, 8, SIZE_MAX},	  {9, SIZE_MAX},  {10, SIZE_MAX},
	    {11, SIZE_MAX},   {12, 14, SIZE_MAX}, {13, SIZE_MAX},
	};
	assert_int_equal(ng, sizeof(want) / sizeof(want[0]));
	for (size_t k = 0; k < ng; k++) {
		size_t m = 0;
		while (want[k][m] != SIZE_MAX)
			m++;
		if (g[k].n != m)
			fail_msg("group %zu has %zu recipients, want %zu", k, g[k].n, m);
		for (size_t j = 0; j < m; j++)
			assert_int_equal(g[k].rcpts[j], want[k][j]);
	}
	disposition_groups_free(g, ng);

	disposition_group(d, 0, &g, &ng);
	assert_int_equal(ng, 0);
	disposition_groups_free(g, ng);
}

static char *tag(const char *msg, const char *t)
{
	size_t len = 0;
	unsigned char *out =
	    disposition_tag_subject((const unsigned char *)msg, strlen(msg), t, &len);
	char *s = malloc(len + 1);
	memcpy(s, out, len);
	s[len] = '\0';
	free(out);
	return s;
}

static void test_tag_subject(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		const char *out;
	} cases[] = {
	    {"From: a\r\nSubject: hello\r\n\r\nbody\r\n",
	     "From: a\r\nSubject: [SPAM] hello\r\n\r\nbody\r\n"},
	    /* The encoded words stay byte for byte. */
	    {"subject:  =?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=\r\n\r\nx",
	     "subject:  [SPAM] =?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=\r\n\r\nx"},
	    /* Folded subject: the tag goes on the first line. */
	    {"Subject: =?UTF-8?B?44GC?=\r\n =?UTF-8?B?44GE?=\r\n\r\n",
	     "Subject: [SPAM] =?UTF-8?B?44GC?=\r\n =?UTF-8?B?44GE?=\r\n\r\n"},
	    /* Already tagged: unchanged. */
	    {"Subject: [SPAM] hello\r\n\r\n", "Subject: [SPAM] hello\r\n\r\n"},
	    /* Empty subject. */
	    {"Subject:\r\n\r\nb", "Subject:[SPAM]\r\n\r\nb"},
	    /* No subject: one is added at the end of the header. */
	    {"From: a\r\nTo: b\r\n\r\nSubject: in body\r\n",
	     "From: a\r\nTo: b\r\nSubject: [SPAM]\r\n\r\nSubject: in body\r\n"},
	    {"From: a\nTo: b\n\nbody\n", "From: a\nTo: b\nSubject: [SPAM]\n\nbody\n"},
	    /* A Subject in the body is not the header. */
	    {"From: a\r\n\r\nSubject: x\r\n", "From: a\r\nSubject: [SPAM]\r\n\r\nSubject: x\r\n"},
	    /* "Subject-Extra" is another field. */
	    {"Subject-Extra: x\r\nSubject: y\r\n\r\n",
	     "Subject-Extra: x\r\nSubject: [SPAM] y\r\n\r\n"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *got = tag(cases[i].in, "[SPAM]");
		if (strcmp(got, cases[i].out) != 0)
			fail_msg("case %zu: got\n%s\nwant\n%s", i, got, cases[i].out);
		free(got);
	}
}

static void test_strip_header(void **state)
{
	(void)state;
	const char *in = "Received: a\r\nX-Secret: one\r\n\tfolded\r\nSubject: s\r\n"
			 "x-secret : two\r\nX-Secretive: keep\r\n\r\nX-Secret: in body\r\n";
	const char *want = "Received: a\r\nSubject: s\r\nX-Secretive: keep\r\n\r\n"
			   "X-Secret: in body\r\n";
	size_t len = 0;
	unsigned char *out =
	    disposition_strip_header((const unsigned char *)in, strlen(in), "X-Secret", &len);
	assert_int_equal(len, strlen(want));
	assert_memory_equal(out, want, len);
	free(out);
}

static void test_header_end(void **state)
{
	(void)state;
	const char *a = "A: 1\r\nB: 2\r\n\r\nbody";
	assert_int_equal(disposition_header_end((const unsigned char *)a, strlen(a)), 12);
	const char *b = "A: 1\nB: 2\n";
	assert_int_equal(disposition_header_end((const unsigned char *)b, strlen(b)), strlen(b));
	const char *c = "\r\nbody";
	assert_int_equal(disposition_header_end((const unsigned char *)c, strlen(c)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_grouping),
	    cmocka_unit_test(test_tag_subject),
	    cmocka_unit_test(test_strip_header),
	    cmocka_unit_test(test_header_end),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Tests of api_static's path checks and content types, and of the body text the
 * message detail shows (msgmeta_text_body): what reaches the file system, and what
 * a reader of a quarantined HTML message gets to see.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mime/msgmeta.h"
#include "api/api_static.h"

static void test_classify(void **state)
{
	(void)state;
	static const struct {
		const char *path;
		const char *rel; /* NULL: refused */
	} cases[] = {
	    {"/", "index.html"},
	    {"/messages", "index.html"},
	    {"/m/0190a0b0-0000-7000-8000-000000000000", "index.html"},
	    {"/login", "index.html"},
	    {"/app.css", "app.css"},
	    {"/js/app.js", "js/app.js"},
	    {"/favicon.svg", "favicon.svg"},
	    {"/api/v1/messages", NULL},
	    {"/api", NULL},
	    {"/healthz", NULL},
	    {"/metrics", NULL},
	    {"/auth/saml/metadata", NULL},
	    {"/auth", NULL},
	    {"/authors", "index.html"},
	    {"/apixyz", "index.html"},
	    {"/..", NULL},
	    {"/../etc/passwd", NULL},
	    {"/js/../app.js", NULL},
	    {"/%2e%2e/etc/passwd", NULL},
	    {"/js/%2fapp.js", NULL},
	    {"/js\\app.js", NULL},
	    {"/.git", NULL},
	    {"/js/.hidden.js", NULL},
	    {"//etc/passwd", NULL},
	    {"/js/", NULL},
	    {"/js//app.js", NULL},
	    {"/a b", NULL},
	    {"/\xe3\x81\x82", NULL},
	    {"", NULL},
	    {"relative", NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *rel = NULL;
		int rc = api_static_classify(cases[i].path, &rel);
		if (cases[i].rel == NULL) {
			if (rc == 0)
				fail_msg("%s was accepted as %s", cases[i].path, rel);
		} else {
			if (rc != 0)
				fail_msg("%s was refused", cases[i].path);
			assert_string_equal(rel, cases[i].rel);
		}
	}
	assert_int_not_equal(api_static_classify(NULL, &(const char *){NULL}), 0);
}

static void test_content_types(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		const char *type;
	} cases[] = {
	    {"index.html", "text/html; charset=utf-8"},
	    {"js/app.js", "text/javascript; charset=utf-8"},
	    {"app.css", "text/css; charset=utf-8"},
	    {"logo.svg", "image/svg+xml"},
	    {"logo.png", "image/png"},
	    {"font.woff2", "font/woff2"},
	    {"strings.json", "application/json"},
	    {"app.css.bak", NULL},
	    {"app.js~", NULL},
	    {"README", NULL},
	    {"js.d/noext", NULL},
	    {"x.HTML", NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *got = api_static_content_type(cases[i].name);
		if (cases[i].type == NULL)
			assert_null(got);
		else
			assert_string_equal(got, cases[i].type);
	}
}

static void test_text_body(void **state)
{
	(void)state;
	static const struct {
		const char *message;
		size_t max;
		const char *text;
		bool from_html;
		bool truncated;
	} cases[] = {
	    {"Subject: a\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nline 1\r\nline 2\r\n", 0,
	     "line 1\nline 2", false, false},
	    /* ISO-2022-JP: "日本語" */
	    {"Subject: a\r\nContent-Type: text/plain; charset=iso-2022-jp\r\n\r\n"
	     "\x1b$BF|K\\8l\x1b(B\r\n",
	     0, "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", false, false},
	    {"Subject: a\r\nContent-Type: text/plain; charset=utf-8\r\n"
	     "Content-Transfer-Encoding: base64\r\n\r\naGVsbG8gd29ybGQ=\r\n",
	     0, "hello world", false, false},
	    {"Subject: a\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
	     "<html><head><title>T</title><style>p{}</style></head><body>"
	     "<script>alert(1)</script><p>A &lt;b&gt; &amp; c</p><p>x < y</p>"
	     "<!-- <p>hidden</p> --><ul><li>one<li>two</ul></body></html>",
	     0, "A <b> & c\nx < y\n\xe2\x80\xa2 one\n\xe2\x80\xa2 two", true, false},
	    /* text/plain wins over text/html in an alternative. */
	    {"Subject: a\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; "
	     "boundary=B\r\n\r\n"
	     "--B\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n"
	     "--B\r\nContent-Type: text/plain\r\n\r\nplain\r\n--B--\r\n",
	     0, "plain", false, false},
	    /* An attached text file is not the body. */
	    {"Subject: a\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
	     "--B\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; "
	     "filename=a.txt\r\n\r\nfile\r\n--B--\r\n",
	     0, "", false, false},
	    /* Cut on a character boundary: "あい" is 6 bytes; 4 leaves "あ". */
	    {"Subject: a\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
	     "\xe3\x81\x82\xe3\x81\x84\r\n",
	     4, "\xe3\x81\x82", false, true},
	    {"Subject: no body\r\n\r\n", 0, "", false, false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct msgmeta_text t;
		assert_int_equal(
		    msgmeta_text_body(cases[i].message, strlen(cases[i].message), cases[i].max, &t),
		    0);
		if (strcmp(t.text, cases[i].text) != 0)
			fail_msg("case %zu: got \"%s\", want \"%s\"", i, t.text, cases[i].text);
		assert_int_equal(t.from_html, cases[i].from_html);
		assert_int_equal(t.truncated, cases[i].truncated);
		free(t.text);
	}
	struct msgmeta_text t;
	assert_int_equal(msgmeta_text_body(NULL, 0, 0, &t), -22);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_classify),
	    cmocka_unit_test(test_content_types),
	    cmocka_unit_test(test_text_body),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

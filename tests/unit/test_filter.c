/*
 * Tests for the content-filter language (gateway/filter.c): parse errors with their
 * exact FILE:LINE:COLUMN messages, every condition true and false on messages built
 * from text (Japanese ISO-2022-JP subjects and bodies included), precedence and
 * parentheses, else branches, final and non-final actions, the nesting limit, long
 * chains, hostile message content, loading files, and the shipped sample file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gateway/filter.h"
#include "mime/msgmeta.h"

/* ---- helpers ------------------------------------------------------------------- */

static struct filter_set *parse_ok(const char *text)
{
	struct filter_set *fs = NULL;
	char *err = NULL;
	int rc = filter_parse("t.filters", text, strlen(text), &fs, &err);
	if (rc != 0)
		fail_msg("unexpected parse error for <%s>: %s", text, err ? err : "(none)");
	assert_null(err);
	assert_non_null(fs);
	return fs;
}

/* An envelope and a message given as text. */
struct sample {
	const char *message;
	const char *mail_from;
	const char *rcpts[3];
	const char *remote_ip;
};

static const struct sample default_sample = {
    .message = "From: Alice <alice@example.com>\r\n"
	       "To: bob@example.jp\r\n"
	       "Subject: Quarterly report\r\n"
	       "X-Mailer: TestMailer 1.0\r\n"
	       "X-Spam-Flag: NO\r\n"
	       "MIME-Version: 1.0\r\n"
	       "Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
	       "\r\n"
	       "--b1\r\n"
	       "Content-Type: text/plain; charset=us-ascii\r\n"
	       "\r\n"
	       "Please find the Invoice attached.\r\n"
	       "--b1\r\n"
	       "Content-Type: application/x-msdownload; name=\"setup.EXE\"\r\n"
	       "Content-Disposition: attachment; filename=\"setup.EXE\"\r\n"
	       "Content-Transfer-Encoding: base64\r\n"
	       "\r\n"
	       "TVqQAAMAAAAEAAAA\r\n"
	       "--b1--\r\n",
    .mail_from = "alice@example.com",
    .rcpts = {"bob@example.jp", "carol@example.org", NULL},
    .remote_ip = "192.0.2.17",
};

/* Evaluates filters against a sample; the caller clears the result. */
static void eval_sample(const struct filter_set *fs, const struct sample *s,
			struct filter_result *r)
{
	struct msgmeta *meta = NULL;
	assert_int_equal(msgmeta_parse(s->message, strlen(s->message), &meta), 0);
	size_t n = 0;
	while (n < 3 && s->rcpts[n])
		n++;
	struct filter_input in = {
	    .meta = meta,
	    .data = (const unsigned char *)s->message,
	    .len = strlen(s->message),
	    .mail_from = s->mail_from,
	    .rcpts = s->rcpts,
	    .nrcpts = n,
	    .remote_ip = s->remote_ip,
	};
	assert_int_equal(filter_eval(fs, &in, r), 0);
	msgmeta_free(meta);
}

/* A condition's value: 'T' (true), 'F' (false) or 'U' (undecided). */
static char cond_value(const char *cond, const struct sample *s)
{
	char *text = NULL;
	assert_true(asprintf(&text, "f: if %s { drop; } else { deliver; }", cond) > 0);
	struct filter_set *fs = parse_ok(text);
	struct filter_result r;
	eval_sample(fs, s, &r);
	char v;
	if (r.undecided) {
		assert_int_equal(r.nactions, 0);
		assert_string_equal(r.undecided_filter, "f");
		assert_non_null(r.undecided_reason);
		v = 'U';
	} else {
		assert_int_equal(r.nactions, 1);
		v = r.actions[0].kind == FILTER_ACTION_DROP ? 'T' : 'F';
	}
	filter_result_clear(&r);
	filter_set_free(fs);
	free(text);
	return v;
}

/* True when the condition holds for the sample; an undecided condition fails the test. */
static bool cond_holds(const char *cond, const struct sample *s)
{
	char v = cond_value(cond, s);
	if (v == 'U')
		fail_msg("condition <%s> undecided", cond);
	return v == 'T';
}

/* ---- parse errors -------------------------------------------------------------- */

struct parse_error_case {
	const char *text;
	const char *error;
};

static const struct parse_error_case parse_errors[] = {
    {"f: if subject == \"x\" { drop }", "t.filters:1:29: expected ';' after 'drop', got '}'"},
    {"f: if subject == \"x { drop; }", "t.filters:1:18: unterminated string"},
    {"f: if subject == \"a\nb\" { drop; }", "t.filters:1:18: unterminated string"},
    {"f: if subjekt == \"x\" { drop; }", "t.filters:1:7: unknown condition 'subjekt'"},
    {"f: if subject == \"(ab\" { drop; }",
     "t.filters:1:18: bad regular expression: Unmatched ( or \\("},
    {"f: if subject == \"a{1\" { drop; }", "t.filters:1:18: bad regular expression: Unmatched \\{"},
    {"f: if subject == \"(a)\\1\" { drop; }",
     "t.filters:1:18: bad regular expression: back-references (\\1 ... \\9) are not supported"},
    {"f: if subject == \"((a{100}){100})\" { drop; }",
     "t.filters:1:18: bad regular expression: pattern too large once its repetitions are "
     "expanded (at most 5000 elements)"},
    {"f: if subject == \"x++++++++++++++++++++++++++++++++++++++++\" { drop; }",
     "t.filters:1:18: bad regular expression: pattern too large once its repetitions are "
     "expanded (at most 5000 elements)"},
    {"f: if subject == \"((((((((((((((a+)+)+)+)+)+)+)+)+)+)+)+)+)+)\" { drop; }",
     "t.filters:1:18: bad regular expression: pattern too large once its repetitions are "
     "expanded (at most 5000 elements)"},
    {"f: if subject == \"(?i)a{5001}\" { drop; }",
     "t.filters:1:18: bad regular expression: pattern too large once its repetitions are "
     "expanded (at most 5000 elements)"},
    /* "(?i)" is a flag only at the very start of a pattern. */
    {"f: if subject == \"a(?i)b\" { drop; }",
     "t.filters:1:18: bad regular expression: Invalid preceding regular expression"},
    {"f: if header(\"X Bad\") == \"x\" { drop; }", "t.filters:1:14: bad header name \"X Bad\""},
    {"f: if header(\"X:\") == \"x\" { drop; }", "t.filters:1:14: bad header name \"X:\""},
    {"f: if header(\"\") == \"x\" { drop; }", "t.filters:1:14: bad header name \"\""},
    {"f: if size > 10X { drop; }", "t.filters:1:14: bad size suffix 'X' (use K, M or G)"},
    {"f: if size > 10MB { drop; }", "t.filters:1:14: bad size suffix 'MB' (use K, M or G)"},
    {"f: if size > 99999999999999999999 { drop; }", "t.filters:1:14: size too large"},
    {"f: if size > 17179869184G { drop; }", "t.filters:1:14: size too large"},
    {"f: if size > \"10M\" { drop; }",
     "t.filters:1:14: expected a size (e.g. 512K, 10M) after the comparison, got string "
     "\"10M\""},
    {"f: if size ~ 1 { drop; }", "t.filters:1:12: unexpected character '~'"},
    {"f: if size > 1 { quarantine(\"Q\"~); }", "t.filters:1:32: unexpected character '~'"},
    {"f~: if size > 1 { drop; }", "t.filters:1:2: unexpected character '~'"},
    {"f: if size = 1 { drop; }",
     "t.filters:1:12: unexpected '=' (comparisons are written '==' or '!=')"},
    {"f: if subject < \"x\" { drop; }",
     "t.filters:1:15: expected '==' or '!=' after 'subject', got '<'"},
    {"f: if subject == x { drop; }",
     "t.filters:1:18: expected a string (a regular expression), got 'x'"},
    {"f: if subject == \"x\" { reject; }", "t.filters:1:24: unknown action 'reject'"},
    {"f: if subject == \"x\" { quarantine; }",
     "t.filters:1:24: 'quarantine' takes 1 argument, got 0"},
    {"f: if subject == \"x\" { quarantine(\"a\", \"b\"); }",
     "t.filters:1:24: 'quarantine' takes 1 argument, got 2"},
    {"f: if subject == \"x\" { drop(\"now\"); }",
     "t.filters:1:24: 'drop' takes 0 arguments, got 1"},
    {"f: if subject == \"x\" { insert-header(\"X-A\"); }",
     "t.filters:1:24: 'insert-header' takes 2 arguments, got 1"},
    {"f: if subject == \"x\" { insert-header(\"X A\", \"v\"); }",
     "t.filters:1:38: bad header name \"X A\""},
    {"f: if subject == \"x\" { insert-header(\"X-A\", \"v\\\\\"); strip-header(\"a b\"); }",
     "t.filters:1:66: bad header name \"a b\""},
    {"f: if subject == \"x\" { alt-mailhost(\"mx.example\"); }",
     "t.filters:1:37: bad mail host \"mx.example\" (expected host:port or [v6]:port)"},
    {"f: if subject == \"x\" { alt-mailhost(\"mx:99999\"); }",
     "t.filters:1:37: bad mail host \"mx:99999\" (expected host:port or [v6]:port)"},
    {"f: if subject == \"x\" { quarantine(\"\"); }",
     "t.filters:1:35: quarantine name must be 1 to 128 bytes long"},
    {"f: if subject == \"x\" { quarantine(\"A\"); drop; }",
     "t.filters:1:41: a block takes only one final action ('quarantine' already ends it)"},
    {"a: if size > 1 { drop; }\nb: if size > 2 { drop; }\na: if size > 3 { drop; }",
     "t.filters:3:1: duplicate filter name 'a' (first defined on line 1)"},
    {"f if size > 1 { drop; }", "t.filters:1:3: expected ':' after the filter name 'f', got 'if'"},
    {"f: size > 1 { drop; }", "t.filters:1:4: expected 'if' after 'f:', got 'size'"},
    {"f: if size > 1 drop; }", "t.filters:1:16: expected '{' after the condition, got 'drop'"},
    {"f: if size > 1 { drop; } else drop;",
     "t.filters:1:31: expected '{' after 'else', got 'drop'"},
    {"f: if size > 1 { drop;", "t.filters:1:23: expected an action or '}', got end of file"},
    {"f: if (size > 1 { drop; }", "t.filters:1:17: expected ')' or 'and'/'or', got '{'"},
    {"f: if size > 1 and { drop; }", "t.filters:1:20: expected a condition, got '{'"},
    {"if: if size > 1 { drop; }", "t.filters:1:1: 'if' is a reserved word, not a filter name"},
    {"\"f\": if size > 1 { drop; }", "t.filters:1:1: expected a filter name, got string \"f\""},
    {"f: if body-contains(\"\") { drop; }",
     "t.filters:1:21: body-contains needs a non-empty string"},
    {"f: if body-contains \"x\" { drop; }",
     "t.filters:1:21: expected '(' after 'body-contains', got string \"x\""},
    {"f: if header(\"X-A\" == \"x\" { drop; }",
     "t.filters:1:20: expected ')' after the argument of 'header', got '=='"},
    {"f: if remote-ip in \"10.0.0.1/8\" { drop; }",
     "t.filters:1:20: bad network list: bad entry \"10.0.0.1/8\": host bits are set after /8 "
     "(did you mean 10.0.0.0/8?)"},
    {"f: if remote-ip in \"\" { drop; }", "t.filters:1:20: empty network list"},
    /* Columns count characters, not bytes: "件名" is two columns. */
    {"# 件名\nf: if subject == \"件名\" { dorp; }", "t.filters:2:25: unknown action 'dorp'"},
    /* Ranges need ASCII end points: the UTF-8 locale has no collation order for others. */
    {"f: if subject == \"[ぁ-ん]\" { drop; }",
     "t.filters:1:18: bad regular expression: Invalid collation character"},
    {"f: if subject == \"\xff\" { drop; }", "t.filters:1:19: invalid UTF-8 in string"},
    {"f: if subject == \"a\x01\" { drop; }", "t.filters:1:20: control character \\x01 in string"},
    {"f: if size > 1 { drop; }\n\x01", "t.filters:2:1: unexpected byte \\x01"},
    {"f: if size > 1 { drop; }\n\xe3\x81\x82", "t.filters:2:1: unexpected character 'あ'"},
    {"\n\n   f: if size > 1 { drop; } # ok\n  g: if size > 1 { drop; } else { drop; deliver; }",
     "t.filters:4:41: a block takes only one final action ('drop' already ends it)"},
};

static void test_parse_errors(void **state)
{
	(void)state;
	int failures = 0;
	for (size_t i = 0; i < sizeof(parse_errors) / sizeof(parse_errors[0]); i++) {
		const struct parse_error_case *c = &parse_errors[i];
		struct filter_set *fs = (struct filter_set *)(uintptr_t)1;
		char *err = NULL;
		int rc = filter_parse("t.filters", c->text, strlen(c->text), &fs, &err);
		if (rc != -EINVAL || err == NULL || strcmp(err, c->error) != 0) {
			print_error("case %zu <%s>:\n  want %s\n  got  %s (rc %d)\n", i, c->text,
				    c->error, err ? err : "(none)", rc);
			failures++;
		}
		assert_null(fs); /* nothing half-loaded */
		free(err);
	}
	assert_int_equal(failures, 0);
}

/* Strings: \" and \\ are escapes, other backslashes stay for the pattern. */
static void test_strings_and_comments(void **state)
{
	(void)state;
	struct sample s = default_sample;
	s.message = "Subject: say \"hi\" \\o/ a.b\r\n\r\nbody\r\n";
	assert_true(cond_holds("subject == \"say \\\"hi\\\"\"", &s));
	assert_true(cond_holds("subject == \"\\\\o/\"", &s));
	assert_true(cond_holds("subject == \"a\\.b\"", &s));
	s.message = "Subject: axb\r\n\r\nbody\r\n";
	assert_false(cond_holds("subject == \"a\\.b\"", &s));
	assert_true(cond_holds("subject == \"a.b\"", &s));

	struct filter_set *fs = parse_ok("\xEF\xBB\xBF# a comment\n"
					 "one: if size > 1 { drop; } # trailing\n"
					 "# two: if size > 1 { drop; }\n"
					 "two_2-x: if size>1{drop;}else{deliver;}\r\n");
	assert_int_equal(filter_set_count(fs), 2);
	filter_set_free(fs);
	fs = parse_ok("");
	assert_int_equal(filter_set_count(fs), 0);
	filter_set_free(fs);
	fs = parse_ok("f: if size > 1 { } else { }");
	assert_int_equal(filter_set_count(fs), 1);
	filter_set_free(fs);
}

/* Ordinary patterns pass the size estimate, including many sequential repetitions. */
static void test_pattern_sizes(void **state)
{
	(void)state;
	static const char *const ok[] = {
	    "f: if subject == \"^[a-z]+@[a-z]+(\\.[a-z]+)+$\" { drop; }",
	    "f: if subject == \"[0-9]{1,3}(\\.[0-9]{1,3}){3}\" { drop; }",
	    "f: if subject == \"a+b+c+d+e+f+g+h+i+j+k+l+m+n+o+p+q+r+s+t+u+v+w+x+y+z+\" { drop; }",
	    "f: if subject == \"a{5000}\" { drop; }",
	    "f: if subject == \"(a|b|c)+(d|e)*[+{]\\+\\{\" { drop; }",
	    "f: if subject == \"(x{10}){10}|(y{10}){10}\" { drop; }",
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		filter_set_free(parse_ok(ok[i]));
	struct sample s = default_sample;
	s.message = "Subject: ab+{\r\n\r\nx\r\n";
	assert_true(cond_holds("subject == \"^(a|b|c)+[+{]\\+?\\{$\"", &s));
}

/* ---- conditions ---------------------------------------------------------------- */

static const char japanese_message[] =
    "From: =?ISO-2022-JP?B?GyRCOzNFRBsoQg==?= <yamada@example.jp>\r\n"
    "To: sales@example.jp\r\n"
    "Subject: =?ISO-2022-JP?B?GyRCQEE1YT1xJE4kKkNOJGkkOxsoQg==?=\r\n"
    "X-Department: =?ISO-2022-JP?B?GyRCMUQ2SEl0GyhC?=\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"zz\"\r\n"
    "\r\n"
    "--zz\r\n"
    "Content-Type: text/plain; charset=ISO-2022-JP\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "GyRCS1xGfCRPQDJFNyRKJGohIztqNV4kNDNORyckLyRAJDUkJCEjGyhC\r\n"
    "--zz\r\n"
    "Content-Type: application/octet-stream\r\n"
    "Content-Disposition: attachment;\r\n"
    " filename=\"=?ISO-2022-JP?B?GyRCOCtAUT1xGyhCLmV4ZQ==?=\"\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "TVqQAAMAAAAEAAAA\r\n"
    "--zz--\r\n";

struct cond_case {
	const char *cond;
	bool want;
};

/* Each condition against default_sample. */
static const struct cond_case cond_cases[] = {
    {"subject == \"Quarterly\"", true},
    {"subject == \"^report\"", false},
    {"subject == \"(?i)^QUARTERLY REPORT$\"", true},
    {"subject == \"^QUARTERLY\"", false},
    {"subject != \"Quarterly\"", false},
    {"subject != \"weekly\"", true},
    {"header(\"X-Mailer\") == \"^TestMailer [0-9]+\\.[0-9]+$\"", true},
    {"header(\"x-mailer\") == \"TestMailer\"", true}, /* names compare without case */
    {"header(\"X-Mailer\") == \"Outlook\"", false},
    {"header(\"X-Mailer\") != \"Outlook\"", true},
    {"header(\"X-Absent\") == \"\"", false}, /* a missing header never matches == */
    {"header(\"X-Absent\") == \".*\"", false},
    {"header(\"X-Absent\") != \"anything\"", true},
    {"header(\"X-Spam-Flag\") == \"^YES$\"", false},
    {"body-contains(\"invoice attached\")", true}, /* case-insensitive */
    {"body-contains(\"INVOICE\")", true},
    {"body-contains(\"Quarterly\")", false}, /* the header block is not the body */
    {"body-contains(\"refund\")", false},
    {"attachment-filename == \"(?i)\\.exe$\"", true},
    {"attachment-filename == \"\\.exe$\"", false},
    {"attachment-filename != \"\\.pdf$\"", true},
    {"attachment-filename != \"(?i)\\.exe$\"", false},
    {"attachment-type == \"^application/x-msdownload$\"", true},
    {"attachment-type == \"^image/\"", false},
    {"size > 100", true},
    {"size < 100", false},
    {"size >= 1K", false},
    {"size <= 1k", true},
    {"size < 1M", true},
    {"size > 1G", false},
    {"size != 0", true},
    {"size == 0", false},
    {"mail-from == \"@example\\.com$\"", true},
    {"mail-from == \"@example\\.net$\"", false},
    {"mail-from != \"^alice@\"", false},
    {"rcpt-to == \"^carol@\"", true}, /* any recipient */
    {"rcpt-to == \"^dave@\"", false},
    {"rcpt-to != \"^dave@\"", true},
    {"rcpt-to != \"^carol@\"", false},
    {"remote-ip == \"^192\\.0\\.2\\.\"", true},
    {"remote-ip == \"^198\\.51\\.\"", false},
    {"remote-ip != \"^10\\.\"", true},
    {"remote-ip in \"192.0.2.0/24\"", true},
    {"remote-ip in \"198.51.100.0/24, 2001:db8::/32\"", false},
    {"remote-ip in \"10.0.0.0/8 192.0.2.17\"", true},
    {"not remote-ip in \"192.0.2.0/24\"", false},
};

static void test_conditions(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cond_cases) / sizeof(cond_cases[0]); i++) {
		bool got = cond_holds(cond_cases[i].cond, &default_sample);
		if (got != cond_cases[i].want)
			fail_msg("case %zu <%s>: want %d, got %d", i, cond_cases[i].cond,
				 cond_cases[i].want, got);
	}
}

static const struct cond_case japanese_cases[] = {
    {"subject == \"請求書\"", true},
    {"subject == \"^請求書のお知らせ$\"", true},
    {"subject == \"^請求.のお知らせ$\"", true}, /* "." is one character, not one byte */
    {"subject == \"^請求書.{5}$\"", true},
    {"subject == \"見積\"", false},
    {"subject == \"[請見]求書\"", true},
    {"subject == \"^[[:alpha:]]{8}$\"", true},
    {"subject == \"^[[:alpha:]]{9}$\"", false},
    {"header(\"X-Department\") == \"^営業部$\"", true},
    {"body-contains(\"至急ご確認\")", true}, /* decoded from base64 ISO-2022-JP */
    {"body-contains(\"本日は雨\")", false},
    {"attachment-filename == \"^見積書\\.exe$\"", true},
    {"attachment-filename == \"^請求書\"", false},
};

static void test_japanese(void **state)
{
	(void)state;
	struct sample s = default_sample;
	s.message = japanese_message;
	for (size_t i = 0; i < sizeof(japanese_cases) / sizeof(japanese_cases[0]); i++) {
		bool got = cond_holds(japanese_cases[i].cond, &s);
		if (got != japanese_cases[i].want)
			fail_msg("case %zu <%s>: want %d, got %d", i, japanese_cases[i].cond,
				 japanese_cases[i].want, got);
	}
}

/* A message without Subject, attachments or envelope: each condition's empty case. */
static void test_missing_values(void **state)
{
	(void)state;
	struct sample s = {.message = "From: a@example.com\r\n\r\nhello\r\n"};
	assert_false(cond_holds("subject == \"\"", &s));
	assert_true(cond_holds("subject != \"x\"", &s));
	assert_false(cond_holds("attachment-filename == \"\"", &s));
	assert_true(cond_holds("attachment-filename != \"\"", &s));
	assert_false(cond_holds("attachment-type == \"\"", &s));
	assert_false(cond_holds("rcpt-to == \"\"", &s));
	assert_true(cond_holds("mail-from == \"^$\"", &s)); /* the null sender <> */
	assert_false(cond_holds("remote-ip in \"0.0.0.0/0\"", &s));
	assert_true(cond_holds("body-contains(\"HELLO\")", &s));

	/* No message at all: conditions are false, nothing crashes. */
	struct filter_set *fs = parse_ok("f: if subject == \"\" or body-contains(\"x\") or "
					 "size > 0 or header(\"A\") == \"\" { drop; }");
	struct filter_input in = {0};
	struct filter_result r;
	assert_int_equal(filter_eval(fs, &in, &r), 0);
	assert_int_equal(r.nactions, 0);
	filter_result_clear(&r);
	assert_int_equal(filter_eval(fs, NULL, &r), 0);
	assert_int_equal(r.nactions, 0);
	filter_result_clear(&r);
	filter_set_free(fs);
}

/* ---- boolean structure --------------------------------------------------------- */

static const struct cond_case logic_cases[] = {
    /* T = size > 1, F = size < 1 on default_sample */
    {"size > 1 or size < 1 and size < 1", true}, /* and binds tighter than or */
    {"(size > 1 or size < 1) and size < 1", false},
    {"size < 1 and size < 1 or size > 1", true},
    {"size < 1 and (size < 1 or size > 1)", false},
    {"not size < 1 and size > 1", true}, /* not binds tighter than and */
    {"not (size > 1 and size < 1)", true},
    {"not size > 1 or size > 1", true},
    {"not (size > 1 or size < 1)", false},
    {"not not size > 1", true},
    {"not not not size > 1", false},
    {"((((size > 1))))", true},
    {"size > 1 and size > 2 and size > 3 and size < 1", false},
    {"size < 1 or size < 2 or size < 3 or size > 1", true},
};

static void test_precedence(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(logic_cases) / sizeof(logic_cases[0]); i++) {
		bool got = cond_holds(logic_cases[i].cond, &default_sample);
		if (got != logic_cases[i].want)
			fail_msg("case %zu <%s>: want %d, got %d", i, logic_cases[i].cond,
				 logic_cases[i].want, got);
	}
}

static void assert_action(const struct filter_action *a, enum filter_action_kind kind,
			  const char *arg, const char *arg2, const char *filter)
{
	assert_int_equal(a->kind, kind);
	if (arg)
		assert_string_equal(a->arg, arg);
	else
		assert_null(a->arg);
	if (arg2)
		assert_string_equal(a->arg2, arg2);
	else
		assert_null(a->arg2);
	assert_string_equal(a->filter_name, filter);
}

static void test_actions_final_and_else(void **state)
{
	(void)state;
	struct filter_set *fs = parse_ok(
	    "tag: if subject == \"report\" { insert-header(\"X-Tag\", \"report 報告\"); }\n"
	    "strip: if size < 1 { drop; } else { strip-header(\"X-Mailer\"); }\n"
	    "route: if rcpt-to == \"example\\.jp$\" { alt-mailhost(\"[::1]:2526\"); }\n"
	    "exe: if attachment-filename == \"(?i)\\.exe$\" {\n"
	    "    insert-header(\"X-Exe\", \"1\"); quarantine(\"Policy\"); "
	    "insert-header(\"X-After\", "
	    "\"2\");\n"
	    "}\n"
	    "later: if size > 0 { insert-header(\"X-Later\", \"never\"); }\n");
	assert_int_equal(filter_set_count(fs), 5);
	struct filter_result r;
	eval_sample(fs, &default_sample, &r);
	assert_int_equal(r.nactions, 6);
	assert_action(&r.actions[0], FILTER_ACTION_INSERT_HEADER, "X-Tag", "report 報告", "tag");
	assert_action(&r.actions[1], FILTER_ACTION_STRIP_HEADER, "X-Mailer", NULL, "strip");
	assert_action(&r.actions[2], FILTER_ACTION_ALT_MAILHOST, "[::1]:2526", NULL, "route");
	assert_action(&r.actions[3], FILTER_ACTION_INSERT_HEADER, "X-Exe", "1", "exe");
	assert_action(&r.actions[4], FILTER_ACTION_QUARANTINE, "Policy", NULL, "exe");
	assert_action(&r.actions[5], FILTER_ACTION_INSERT_HEADER, "X-After", "2", "exe");
	filter_result_clear(&r);
	assert_int_equal(r.nactions, 0);
	assert_null(r.actions);

	/* Without the exe attachment the quarantine is not taken and "later" runs. */
	struct sample s = default_sample;
	s.message = "Subject: weekly\r\n\r\nbody\r\n";
	s.rcpts[0] = "x@example.org";
	s.rcpts[1] = NULL;
	eval_sample(fs, &s, &r);
	assert_int_equal(r.nactions, 2);
	assert_action(&r.actions[0], FILTER_ACTION_STRIP_HEADER, "X-Mailer", NULL, "strip");
	assert_action(&r.actions[1], FILTER_ACTION_INSERT_HEADER, "X-Later", "never", "later");
	filter_result_clear(&r);
	filter_set_free(fs);

	/* Every final action ends the evaluation, also from an else branch. */
	static const struct {
		const char *text;
		enum filter_action_kind kind;
	} finals[] = {
	    {"f: if size < 1 { } else { drop; }\ng: if size > 0 { bounce; }", FILTER_ACTION_DROP},
	    {"f: if size > 0 { bounce(); }\ng: if size > 0 { drop; }", FILTER_ACTION_BOUNCE},
	    {"f: if size > 0 { deliver; }\ng: if size > 0 { drop; }", FILTER_ACTION_DELIVER},
	    {"f: if size > 0 { quarantine(\"Q\"); }\ng: if size > 0 { drop; }",
	     FILTER_ACTION_QUARANTINE},
	};
	for (size_t i = 0; i < sizeof(finals) / sizeof(finals[0]); i++) {
		fs = parse_ok(finals[i].text);
		eval_sample(fs, &default_sample, &r);
		assert_int_equal(r.nactions, 1);
		assert_int_equal(r.actions[0].kind, finals[i].kind);
		assert_string_equal(r.actions[0].filter_name, "f");
		assert_true(filter_action_is_final(r.actions[0].kind));
		filter_result_clear(&r);
		filter_set_free(fs);
	}
	assert_false(filter_action_is_final(FILTER_ACTION_INSERT_HEADER));
	assert_string_equal(filter_action_name(FILTER_ACTION_ALT_MAILHOST), "alt-mailhost");
}

/* ---- limits and hostile input -------------------------------------------------- */

static char *repeat(const char *prefix, const char *unit, size_t n, const char *mid,
		    const char *unit2, size_t n2, const char *suffix)
{
	size_t lp = strlen(prefix), lu = strlen(unit), lm = strlen(mid), lu2 = strlen(unit2),
	       ls = strlen(suffix);
	char *s = malloc(lp + lu * n + lm + lu2 * n2 + ls + 1);
	assert_non_null(s);
	char *o = s;
	memcpy(o, prefix, lp);
	o += lp;
	for (size_t i = 0; i < n; i++, o += lu)
		memcpy(o, unit, lu);
	memcpy(o, mid, lm);
	o += lm;
	for (size_t i = 0; i < n2; i++, o += lu2)
		memcpy(o, unit2, lu2);
	memcpy(o, suffix, ls + 1);
	return s;
}

static void test_nesting_limit(void **state)
{
	(void)state;
	/* 64 levels are fine. */
	char *t = repeat("f: if ", "(", 64, "size > 1", ")", 64, " { drop; }");
	struct filter_set *fs = parse_ok(t);
	filter_set_free(fs);
	free(t);
	t = repeat("f: if ", "not ", 64, "size > 1", "", 0, " { drop; }");
	fs = parse_ok(t);
	filter_set_free(fs);
	free(t);

	/* The 65th is refused at its token. */
	char *err = NULL;
	t = repeat("f: if ", "(", 65, "size > 1", ")", 65, " { drop; }");
	assert_int_equal(filter_parse("t.filters", t, strlen(t), &fs, &err), -EINVAL);
	assert_null(fs);
	assert_string_equal(err, "t.filters:1:71: conditions nested deeper than 64 levels");
	free(err);
	free(t);

	/* Hostile depth: refused quickly and cleanly, the stack untouched. */
	const char *units[] = {"(", "not ", "not (", "(not "};
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		t = repeat("f: if ", units[i], 200000, "size > 1", "", 0, "");
		err = NULL;
		assert_int_equal(filter_parse("t.filters", t, strlen(t), &fs, &err), -EINVAL);
		assert_null(fs);
		assert_non_null(strstr(err, "conditions nested deeper than 64 levels"));
		free(err);
		free(t);
	}
}

static void test_long_chains(void **state)
{
	(void)state;
	/* A 20000-term chain is a flat node: evaluating and freeing it does not recurse. */
	char *t =
	    repeat("f: if size < 1", " or size < 1", 20000, " or size > 1", "", 0, " { drop; }");
	struct filter_set *fs = parse_ok(t);
	struct filter_result r;
	eval_sample(fs, &default_sample, &r);
	assert_int_equal(r.nactions, 1);
	filter_result_clear(&r);
	filter_set_free(fs);
	free(t);
}

static void test_file_limits(void **state)
{
	(void)state;
	struct filter_set *fs = NULL;
	char *err = NULL;
	/* More filters than allowed. */
	size_t cap = 1100 * 40;
	char *t = malloc(cap);
	assert_non_null(t);
	size_t n = 0;
	for (int i = 0; i < 1001; i++)
		n += (size_t)snprintf(t + n, cap - n, "f%d: if size > 1 { drop; }\n", i);
	assert_int_equal(filter_parse("t.filters", t, n, &fs, &err), -EINVAL);
	assert_string_equal(err, "t.filters:1001:1: more than 1000 filters");
	assert_null(fs);
	free(err);
	free(t);

	/* A string literal over the limit. */
	t = repeat("f: if subject == \"", "a", 1025, "\" { drop; }", "", 0, "");
	err = NULL;
	assert_int_equal(filter_parse("t.filters", t, strlen(t), &fs, &err), -EINVAL);
	assert_string_equal(err, "t.filters:1:18: string longer than 1024 bytes");
	free(err);
	free(t);

	/* A text over the file size limit. */
	t = repeat("", " ", 1024 * 1024 + 1, "", "", 0, "");
	err = NULL;
	assert_int_equal(filter_parse("t.filters", t, strlen(t), &fs, &err), -EINVAL);
	assert_string_equal(err, "t.filters:1:1: file larger than 1048576 bytes");
	free(err);
	free(t);

	/* Too many regular expressions. */
	cap = 1100 * 200;
	t = malloc(cap);
	assert_non_null(t);
	n = 0;
	for (int i = 0; i < 1000; i++)
		n +=
		    (size_t)snprintf(t + n, cap - n,
				     "f%d: if subject == \"a\" or subject == \"b\" or subject "
				     "== \"c\" or subject == \"d\" or subject == \"e\" { drop; }\n",
				     i);
	err = NULL;
	assert_int_equal(filter_parse("t.filters", t, n, &fs, &err), -EINVAL);
	assert_string_equal(err, "t.filters:801:21: too many regular expressions (at most "
				 "4000 per file)");
	free(err);
	free(t);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_hostile_messages(void **state)
{
	(void)state;
	/* A body with NUL bytes: body-contains searches past them. */
	static const char msg[] = "Subject: x\r\n\r\nabc\0\0def SECRET\0tail\r\n";
	struct filter_set *fs = parse_ok("f: if body-contains(\"secret\") { drop; }");
	struct filter_input in = {.data = (const unsigned char *)msg, .len = sizeof(msg) - 1};
	struct filter_result r;
	assert_int_equal(filter_eval(fs, &in, &r), 0);
	assert_int_equal(r.nactions, 1);
	filter_result_clear(&r);
	filter_set_free(fs);

	/* A needle across the folding chunk boundary (64 KiB) is still found. */
	size_t big = 3 * 65536;
	char *body = malloc(big + 64);
	assert_non_null(body);
	memcpy(body, "Subject: x\n\n", 12);
	memset(body + 12, 'a', big);
	memcpy(body + 65536 - 3, "NEEDLE", 6);
	fs = parse_ok("f: if body-contains(\"needle\") { drop; }");
	in = (struct filter_input){.data = (const unsigned char *)body, .len = big};
	assert_int_equal(filter_eval(fs, &in, &r), 0);
	assert_int_equal(r.nactions, 1);
	filter_result_clear(&r);
	filter_set_free(fs);
	free(body);

	/* A megabyte-long header with a costly pattern finishes quickly. */
	size_t hlen = 1024 * 1024;
	char *m = malloc(hlen + 64);
	assert_non_null(m);
	memcpy(m, "Subject: ", 9);
	memset(m + 9, 'a', hlen);
	memcpy(m + 9 + hlen, "\r\n\r\nbody\r\n", 11);
	struct sample s = default_sample;
	s.message = m;
	double t0 = now_s();
	/* Too long to match whole within the budget: undecided, never "no match". */
	assert_int_equal(cond_value("subject == \"(a|aa|aaa)*b\"", &s), 'U');
	assert_int_equal(cond_value("subject == \"^a+$\"", &s), 'U');
	assert_int_equal(cond_value("subject != \"^a+$\"", &s), 'U');
	/* A match in the first windows is a match all the same. */
	assert_true(cond_holds("subject == \"^aaa\"", &s));
	double took = now_s() - t0;
	if (took > 5.0)
		fail_msg("a hostile header took %.1f s", took);
	free(m);

	/* Many long headers against a costly pattern: the match budget ends the work. */
	size_t nh = 200, vlen = 4000;
	m = malloc(nh * (vlen + 16) + 64);
	assert_non_null(m);
	char *o = m;
	for (size_t i = 0; i < nh; i++) {
		memcpy(o, "X-Junk: ", 8);
		memset(o + 8, 'a', vlen);
		memcpy(o + 8 + vlen, "\r\n", 2);
		o += 10 + vlen;
	}
	strcpy(o, "\r\nbody\r\n");
	s.message = m;
	t0 = now_s();
	assert_int_equal(cond_value("header(\"X-Junk\") == \"a.*a.*a.*b\"", &s), 'U');
	took = now_s() - t0;
	if (took > 10.0)
		fail_msg("200 hostile headers took %.1f s", took);
	/* Ordinary patterns on the same message still match: the budget is per evaluation. */
	assert_true(cond_holds("header(\"X-Junk\") == \"^a\"", &s));
	free(m);
}

/* ---- evasion: what a sender may try so that a name is never matched ------------ */

/* A message of one text part and one attachment part with the given header lines. */
static char *attachment_message(const char *part_headers)
{
	char *m = NULL;
	assert_true(asprintf(&m,
			     "From: a@example.com\r\nSubject: invoice\r\nMIME-Version: 1.0\r\n"
			     "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
			     "--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
			     "--b\r\n%s\r\n\r\nTVqQAAMAAAAEAAAA\r\n--b--\r\n",
			     part_headers) > 0);
	return m;
}

struct name_case {
	const char *part_headers;
	char want; /* of attachment-filename == "(?i)\.exe$" */
};

/* Every way of writing a file name that mail clients show as "請求書.exe" or "invoice.exe". */
static const struct name_case name_cases[] = {
    /* RFC 2231 continuations, plain and percent-encoded with a charset. */
    {"Content-Type: application/octet-stream\r\n"
     "Content-Disposition: attachment; filename*0=\"invoice\"; filename*1=\".exe\"",
     'T'},
    {"Content-Type: application/octet-stream\r\n"
     "Content-Disposition: attachment; filename*0*=UTF-8''invoice; filename*1*=%2E%45xe",
     'T'},
    {"Content-Type: application/octet-stream\r\n"
     "Content-Disposition: attachment;\r\n filename*0*=ISO-2022-JP''%1B%24B%40A5a%3Dq;\r\n"
     " filename*1*=%1B%28B.exe",
     'T'},
    /* RFC 2231 sections out of order are put in order. */
    {"Content-Type: application/octet-stream\r\n"
     "Content-Disposition: attachment; filename*1=\".exe\"; filename*0=\"invoice\"",
     'T'},
    /* RFC 2047 encoded words (not allowed there, written by common mailers anyway). */
    {"Content-Type: application/octet-stream\r\n"
     "Content-Disposition: attachment; filename=\"=?ISO-2022-JP?B?GyRCQEE1YT1xGyhCLmV4ZQ==?=\"",
     'T'},
    {"Content-Type: application/octet-stream\r\n"
     "Content-Disposition: attachment; filename=\"=?UTF-8?B?6KuL5rGC5pu4LmV4ZQ==?=\"",
     'T'},
    {"Content-Type: application/octet-stream\r\n"
     "Content-Disposition: attachment; filename=\"=?UTF-8?Q?invoice=2Eexe?=\"",
     'T'},
    {"Content-Type: application/octet-stream\r\n"
     "Content-Disposition: attachment; filename=\"=?utf-8?q?invoice?= =?utf-8?q?=2EEXE?=\"",
     'T'},
    /* The name only in Content-Type's name=, with and without a disposition. */
    {"Content-Type: application/octet-stream; name=\"invoice.exe\"", 'T'},
    {"Content-Type: application/x-msdownload; name=invoice.exe\r\n"
     "Content-Disposition: inline",
     'T'},
    /* A text part with a name is shown inline, but a client may save it as the file. */
    {"Content-Type: text/plain; name=\"invoice.exe\"", 'T'},
    {"Content-Type: text/html; name*=UTF-8''invoice%2Eexe", 'T'},
    /* Two names for one part: whichever a client shows, the filter sees it. */
    {"Content-Type: application/octet-stream; name=\"invoice.exe\"\r\n"
     "Content-Disposition: attachment; filename=\"invoice.pdf\"",
     'T'},
    {"Content-Type: application/octet-stream\r\n"
     "Content-Disposition: attachment; filename=\"invoice.exe\"; filename*=UTF-8''invoice.pdf",
     'T'},
    {"Content-Type: application/octet-stream\r\n"
     "Content-Disposition: attachment; filename=\"invoice.pdf\"; filename=\"invoice.exe\"",
     'T'},
    {"Content-Type: application/octet-stream; name=\"invoice.exe\"\r\n"
     "Content-Disposition: attachment; filename=\"\"",
     'T'},
    /* The controls: names that are not executables. */
    {"Content-Type: application/pdf; name=\"invoice.pdf\"", 'F'},
    {"Content-Type: application/octet-stream\r\n"
     "Content-Disposition: attachment; filename*0=\"invoice.exe\"; filename*1=\".pdf\"",
     'F'},
};

static void test_evasion_names(void **state)
{
	(void)state;
	struct sample s = default_sample;
	for (size_t i = 0; i < sizeof(name_cases) / sizeof(name_cases[0]); i++) {
		char *m = attachment_message(name_cases[i].part_headers);
		s.message = m;
		char got = cond_value("attachment-filename == \"(?i)\\.exe$\"", &s);
		if (got != name_cases[i].want)
			fail_msg("case %zu <%s>: %c, want %c", i, name_cases[i].part_headers, got,
				 name_cases[i].want);
		free(m);
	}
}

/* A long value: "a" * len with tail appended (and head before it). */
static char *long_name_message(const char *head, size_t len, const char *tail)
{
	char *name = malloc(len + 1);
	assert_non_null(name);
	memset(name, 'a', len);
	name[len] = '\0';
	char *hdr = NULL;
	assert_true(asprintf(&hdr,
			     "Content-Type: application/octet-stream\r\n"
			     "Content-Disposition: attachment; filename=\"%s%s%s\"",
			     head, name, tail) > 0);
	char *m = attachment_message(hdr);
	free(hdr);
	free(name);
	return m;
}

struct long_case {
	const char *head;
	size_t len;
	const char *tail;
	const char *cond;
	char want;
};

static const struct long_case long_cases[] = {
    /* The end of a long name is seen by end-anchored patterns. */
    {"", 4200, ".exe", "attachment-filename == \"(?i)\\.exe$\"", 'T'},
    {"", 100000, ".exe", "attachment-filename == \"(?i)\\.exe$\"", 'U'}, /* past the budget */
    {"", 20000, ".exe", "attachment-filename == \"(?i)\\.exe$\"", 'T'},
    {"", 20000, ".EXE", "attachment-filename == \"(?i)\\.(exe|scr|js)$\"", 'T'},
    /* No match: certain for a pattern whose matches are short... */
    {"", 4200, ".pdf", "attachment-filename == \"(?i)\\.exe$\"", 'F'},
    {"", 4200, ".pdf", "attachment-filename != \"(?i)\\.exe$\"", 'T'},
    {"", 4200, ".pdf", "attachment-filename == \"^b\"", 'F'}, /* "^" is the real start */
    {"x", 4200, ".pdf", "attachment-filename == \"^x\"", 'T'},
    {"", 4200, ".exe.pdf", "attachment-filename == \"\\.exe$\"", 'F'}, /* "$": the real end */
    {"", 4200, "", "attachment-filename == \"b{3000}\"", 'U'},	       /* longer than the overlap */
    {"", 4200, "", "attachment-filename == \"a{3000}\"", 'T'},
    {"", 4200, "", "attachment-filename == \"(ab|ba){1,10}c\"", 'F'},
    /* The longest match is computed from the pattern: every character as 4 bytes. */
    {"", 4200, ".pdf", "attachment-filename == \"x{0,500}y\"", 'F'},
    {"", 4200, ".pdf", "attachment-filename == \"x{0,600}y\"", 'U'},
    {"", 4200, ".pdf", "attachment-filename == \"(x|yy|zzz)?q[0-9]\"", 'F'},
    {"", 4200, ".pdf", "attachment-filename == \"((x)|(y)){2,3}\"", 'F'},
    {"", 4200, ".pdf", "attachment-filename == \"([xyz]{2}|q)+w\"", 'U'},
    {"", 4200, ".pdf", "attachment-filename == \"x|y*z\"", 'U'},
    {"", 4200, ".pdf", "attachment-filename == \"[[:digit:]]{1,}\"", 'U'},
    {"", 4200, ".pdf", "attachment-filename == \"[[:alpha:]]{3}$\"", 'T'},
    /* ...undecided for one that may span a window's edge. */
    {"", 4200, ".exe", "attachment-filename == \"(?i)^.*\\.exe$\"", 'U'},
    {"", 4200, ".pdf", "attachment-filename == \"(?i)^.*\\.exe$\"", 'U'},
    {"", 4200, ".pdf", "attachment-filename == \"a+b\"", 'U'},
    /* Anywhere in the middle. */
    {"", 5000, "evil.js", "attachment-filename == \"evil\"", 'T'},
    {"evil", 9000, "", "attachment-filename == \"evil\\.?a\"", 'T'},
    /* Undecided parts only count where they change the result. */
    {"", 4200, ".pdf", "attachment-filename == \"a+b\" or size > 1", 'T'},
    {"", 4200, ".pdf", "attachment-filename == \"a+b\" and size < 1", 'F'},
    {"", 4200, ".pdf", "not attachment-filename == \"a+b\"", 'U'},
};

static void test_evasion_long_values(void **state)
{
	(void)state;
	struct sample s = default_sample;
	for (size_t i = 0; i < sizeof(long_cases) / sizeof(long_cases[0]); i++) {
		const struct long_case *c = &long_cases[i];
		char *m = long_name_message(c->head, c->len, c->tail);
		s.message = m;
		char got = cond_value(c->cond, &s);
		if (got != c->want)
			fail_msg("case %zu (%zu bytes, %s): %c, want %c", i, c->len, c->cond, got,
				 c->want);
		free(m);
	}
	/* A long UTF-8 value: windows cut at characters; the match is found across a cut. */
	size_t n = 3000;
	char *name = malloc(n * 3 + 16);
	assert_non_null(name);
	for (size_t i = 0; i < n; i++)
		memcpy(name + 3 * i, "\xe3\x81\x82", 3); /* あ */
	strcpy(name + 3 * n, "請求書.exe");
	char *hdr = NULL;
	assert_true(asprintf(&hdr, "Content-Type: application/octet-stream; name=\"%s\"", name) >
		    0);
	char *msg = attachment_message(hdr);
	s.message = msg;
	assert_int_equal(cond_value("attachment-filename == \"あ請求.\\.exe$\"", &s), 'T');
	assert_int_equal(cond_value("attachment-filename == \"^あ\"", &s), 'T');
	assert_int_equal(cond_value("attachment-filename == \"^請求\"", &s), 'F');
	free(msg);
	free(hdr);
	free(name);
}

/* Spending the budget with earlier parts or filters does not walk a name through. */
static void test_evasion_budget(void **state)
{
	(void)state;
	/* Twenty long headers, then an executable. */
	char *m = NULL;
	size_t cap = 20 * 4200 + 4096, off = 0;
	m = malloc(cap);
	assert_non_null(m);
	for (int i = 0; i < 20; i++) {
		off += (size_t)snprintf(m + off, cap - off, "X-Junk: ");
		memset(m + off, 'a', 4000);
		off += 4000;
		off += (size_t)snprintf(m + off, cap - off, "\r\n");
	}
	snprintf(m + off, cap - off,
		 "Subject: invoice\r\nMIME-Version: 1.0\r\n"
		 "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
		 "--b\r\nContent-Type: application/octet-stream; name=\"invoice.exe\"\r\n\r\nMZ\r\n"
		 "--b--\r\n");
	struct sample s = default_sample;
	s.message = m;
	struct filter_set *fs =
	    parse_ok("spend: if header(\"X-Junk\") == \"zzz\" { insert-header(\"X-A\", \"1\"); }\n"
		     "block_exe: if attachment-filename == \"(?i)\\.exe$\" { "
		     "quarantine(\"Policy\"); }\n");
	struct filter_result r;
	eval_sample(fs, &s, &r);
	assert_true(r.undecided);
	assert_string_equal(r.undecided_filter, "spend");
	assert_string_equal(r.undecided_reason, "match budget spent");
	assert_int_equal(r.nactions, 0);
	filter_result_clear(&r);
	assert_false(r.undecided);
	assert_null(r.undecided_filter);
	filter_set_free(fs);

	/* In one condition: a true part decides an "or" whatever the other says... */
	assert_int_equal(
	    cond_value("attachment-filename == \"\\.exe$\" or header(\"X-Junk\") == \"zzz\"", &s),
	    'T');
	/* ...but once the budget is spent, nothing later is matched any more. */
	assert_int_equal(
	    cond_value("header(\"X-Junk\") == \"zzz\" or attachment-filename == \"\\.exe$\"", &s),
	    'U');
	assert_int_equal(
	    cond_value("header(\"X-Junk\") == \"zzz\" and attachment-filename == \"\\.exe$\"", &s),
	    'U');
	assert_int_equal(cond_value("header(\"X-Junk\") == \"zzz\" and size < 10", &s), 'F');
	/* The header alone, without a spent budget, is decided. */
	assert_int_equal(cond_value("header(\"X-Junk\") == \"^a{10}\"", &s), 'T');
	free(m);
}

/* More parts, deeper nesting or more header fields than inspected: undecided. */
static void test_evasion_structure(void **state)
{
	(void)state;
	struct sample s = default_sample;
	const char *exe = "attachment-filename == \"(?i)\\.exe$\"";
	const char *type = "attachment-type == \"msdownload\"";

	/* Many parts, the executable last: past the listing limit. */
	size_t cap = 1100 * 120 + 512, off = 0;
	char *m = malloc(cap);
	assert_non_null(m);
	off += (size_t)snprintf(m, cap,
				"Subject: many\r\nContent-Type: multipart/mixed; "
				"boundary=b\r\n\r\n");
	for (int i = 0; i < 1100; i++)
		off += (size_t)snprintf(m + off, cap - off,
					"--b\r\nContent-Type: application/pdf; name=p%d.pdf\r\n\r\n"
					"x\r\n",
					i);
	snprintf(m + off, cap - off,
		 "--b\r\nContent-Type: application/x-msdownload; name=invoice.exe\r\n\r\nMZ\r\n"
		 "--b--\r\n");
	s.message = m;
	assert_int_equal(cond_value(exe, &s), 'U');
	assert_int_equal(cond_value(type, &s), 'U');
	assert_int_equal(cond_value("attachment-filename == \"^p7\\.pdf$\"", &s), 'T');
	free(m);

	/* Deep nesting of multiparts and of attached messages. */
	for (int kind = 0; kind < 2; kind++) {
		for (int levels = 5; levels <= 60; levels += 55) {
			cap = 64 * 200 + 512;
			m = malloc(cap);
			assert_non_null(m);
			off = (size_t)snprintf(m, cap, "Subject: deep\r\n");
			for (int i = 0; i < levels; i++)
				off += (size_t)snprintf(
				    m + off, cap - off,
				    kind == 0
					? "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n"
					  "--b%d\r\n"
					: "Content-Type: message/rfc822\r\n\r\nSubject: l%d\r\n",
				    i, i);
			snprintf(m + off, cap - off,
				 "Content-Type: application/x-msdownload; "
				 "name=invoice.exe\r\n\r\nMZ\r\n");
			s.message = m;
			char want = levels > 32 ? 'U' : 'T';
			if (cond_value(exe, &s) != want)
				fail_msg("kind %d, %d levels: want %c", kind, levels, want);
			free(m);
		}
	}

	/* More header fields than recorded: a header condition cannot say "absent". */
	cap = 1100 * 20 + 512;
	m = malloc(cap);
	assert_non_null(m);
	off = 0;
	for (int i = 0; i < 1100; i++)
		off += (size_t)snprintf(m + off, cap - off, "X-H%d: v\r\n", i);
	snprintf(m + off, cap - off, "X-Evil: yes\r\n\r\nbody\r\n");
	s.message = m;
	assert_int_equal(cond_value("header(\"X-Evil\") == \"yes\"", &s), 'U');
	assert_int_equal(cond_value("subject == \"x\"", &s), 'U');
	assert_int_equal(cond_value("header(\"X-H3\") == \"v\"", &s), 'T');
	free(m);

	/* More text parts than body-contains reads: found is found, else undecided. */
	cap = 80 * 200 + 512;
	m = malloc(cap);
	assert_non_null(m);
	off = (size_t)snprintf(m, cap,
			       "Subject: texts\r\nContent-Type: multipart/mixed; "
			       "boundary=b\r\n\r\n");
	for (int i = 0; i < 80; i++)
		off += (size_t)snprintf(m + off, cap - off,
					"--b\r\nContent-Type: text/plain; charset=utf-8\r\n"
					"Content-Transfer-Encoding: base64\r\n\r\n%s\r\n",
					i == 79 ? "c2VjcmV0" : "cGxhaW4="); /* "secret", "plain" */
	snprintf(m + off, cap - off, "--b--\r\n");
	s.message = m;
	assert_int_equal(cond_value("body-contains(\"secret\")", &s), 'U');
	assert_int_equal(cond_value("body-contains(\"plain\")", &s), 'T');
	assert_int_equal(cond_value("body-contains(\"c2VjcmV0\")", &s), 'T'); /* raw body */
	free(m);
}

/* ---- files --------------------------------------------------------------------- */

static void test_load_files(void **state)
{
	(void)state;
	char path[] = "/tmp/test_filter_XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *bad = "ok: if size > 1 { drop; }\nbad: if size > 1 { drop; }\n"
			  "worse: if header(\"X\") == \"[\" { drop; }\n";
	assert_int_equal(write(fd, bad, strlen(bad)), (ssize_t)strlen(bad));
	close(fd);
	struct filter_set *fs = NULL;
	char *err = NULL;
	assert_int_equal(filter_load(path, &fs, &err), -EINVAL);
	assert_null(fs);
	char *want = NULL;
	/* The rest is regerror()'s text, which the C library words. */
	assert_true(asprintf(&want, "%s:3:26: bad regular expression: ", path) > 0);
	assert_memory_equal(err, want, strlen(want));
	assert_true(strlen(err) > strlen(want));
	free(want);
	free(err);
	unlink(path);

	err = NULL;
	assert_int_equal(filter_load("/nonexistent/x.filters", &fs, &err), -ENOENT);
	assert_null(fs);
	assert_string_equal(err, "/nonexistent/x.filters: cannot read: No such file or directory");
	free(err);
}

/* The shipped sample parses, and its rules do what its comments say. */
static void test_sample_file(void **state)
{
	(void)state;
	const char *data = getenv("LAZARET_TEST_DATA");
	char *path = NULL;
	assert_true(asprintf(&path, "%s/../../../etc/lazaret-gw.filters",
			     data ? data : "tests/unit/data") > 0);
	struct filter_set *fs = NULL;
	char *err = NULL;
	if (filter_load(path, &fs, &err) != 0)
		fail_msg("%s", err ? err : "load failed");
	assert_true(filter_set_count(fs) >= 5);
	struct filter_result r;
	eval_sample(fs, &default_sample, &r);
	bool quarantined = false;
	for (size_t i = 0; i < r.nactions; i++)
		if (r.actions[i].kind == FILTER_ACTION_QUARANTINE &&
		    strcmp(r.actions[i].filter_name, "block_executables") == 0)
			quarantined = true;
	assert_true(quarantined);
	filter_result_clear(&r);
	filter_set_free(fs);
	free(path);
}

/* filter_set_each_quarantine: every quarantine("Name"), then and else, in order. */
struct names {
	char text[256];
};

static void add_name(const char *name, void *arg)
{
	struct names *n = arg;
	size_t len = strlen(n->text);
	snprintf(n->text + len, sizeof(n->text) - len, "%s|", name);
}

static void test_each_quarantine(void **state)
{
	(void)state;
	struct filter_set *fs =
	    parse_ok("a: if subject == \"x\" { insert-header(\"X-A\", \"1\"); quarantine(\"Q1\"); "
		     "} else { quarantine(\"請求書\"); }\n"
		     "b: if size > 1 { drop; }\n"
		     "c: if size < 1 { } else { quarantine(\"Q1\"); }\n");
	struct names n = {{0}};
	filter_set_each_quarantine(fs, add_name, &n);
	assert_string_equal(n.text, "Q1|請求書|Q1|");
	filter_set_free(fs);
	fs = parse_ok("b: if size > 1 { drop; }\n");
	n.text[0] = '\0';
	filter_set_each_quarantine(fs, add_name, &n);
	assert_string_equal(n.text, "");
	filter_set_free(fs);
}

int main(void)
{
	msgmeta_init();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_errors),    cmocka_unit_test(test_strings_and_comments),
	    cmocka_unit_test(test_pattern_sizes),   cmocka_unit_test(test_conditions),
	    cmocka_unit_test(test_japanese),	    cmocka_unit_test(test_missing_values),
	    cmocka_unit_test(test_precedence),	    cmocka_unit_test(test_actions_final_and_else),
	    cmocka_unit_test(test_nesting_limit),   cmocka_unit_test(test_long_chains),
	    cmocka_unit_test(test_file_limits),	    cmocka_unit_test(test_hostile_messages),
	    cmocka_unit_test(test_evasion_names),   cmocka_unit_test(test_evasion_long_values),
	    cmocka_unit_test(test_evasion_budget),  cmocka_unit_test(test_evasion_structure),
	    cmocka_unit_test(test_load_files),	    cmocka_unit_test(test_sample_file),
	    cmocka_unit_test(test_each_quarantine),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

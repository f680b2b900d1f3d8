/*
 * Tests for common/confparse: each value form with good and bad input, and
 * whole files against a schema with every type — errors with exact lines,
 * inline comments, quoting, relative paths, defaults, and error collection.
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/acl.h"
#include "common/confparse.h"
#include "common/xalloc.h"

/* ---- value forms ---- */

struct duration_case {
	const char *text;
	bool bare_days;
	int rc;
	int64_t ms;
};

static const struct duration_case duration_cases[] = {
    {"14d", false, 0, 14LL * 86400 * 1000},
    {"30s", false, 0, 30 * 1000},
    {"1h", false, 0, 3600 * 1000},
    {"5m", false, 0, 5 * 60 * 1000},
    {"0", false, 0, 0},
    {"0s", false, 0, 0},
    {"007s", false, 0, 7000},
    {"14", true, 0, 14LL * 86400 * 1000},
    {"3d", true, 0, 3LL * 86400 * 1000},
    {"0", true, 0, 0},
    {"14", false, -EINVAL, 0},
    {"14 x", false, -EINVAL, 0},
    {"14 d", false, -EINVAL, 0},
    {"14x", false, -EINVAL, 0},
    {"-1d", false, -EINVAL, 0},
    {"+1d", false, -EINVAL, 0},
    {"14dd", false, -EINVAL, 0},
    {"14D", false, -EINVAL, 0},
    {"1.5h", false, -EINVAL, 0},
    {"d", false, -EINVAL, 0},
    {"", false, -EINVAL, 0},
    {"", true, -EINVAL, 0},
    {" 1s", false, -EINVAL, 0},
    {"14days", true, -EINVAL, 0},
    {"99999999999999999999s", false, -ERANGE, 0},
    {"9223372036854775807s", false, -ERANGE, 0},
    {"106751991168d", false, -ERANGE, 0},
    {"106751991167d", false, 0, 106751991167LL * 86400 * 1000},
};

static void test_duration_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(duration_cases) / sizeof(duration_cases[0]); i++) {
		const struct duration_case *c = &duration_cases[i];
		int64_t ms = -42;
		int rc = confparse_duration_ms(c->text, c->bare_days, &ms);
		if (rc != c->rc)
			fail_msg("\"%s\" (bare_days=%d): rc %d, want %d", c->text, c->bare_days, rc,
				 c->rc);
		if (rc == 0 && ms != c->ms)
			fail_msg("\"%s\": %lld ms, want %lld", c->text, (long long)ms,
				 (long long)c->ms);
		if (rc != 0 && ms != -42)
			fail_msg("\"%s\": output changed on failure", c->text);
	}
}

struct size_case {
	const char *text;
	int rc;
	uint64_t bytes;
};

static const struct size_case size_cases[] = {
    {"50M", 0, 50ULL * 1024 * 1024},
    {"1G", 0, 1024ULL * 1024 * 1024},
    {"512K", 0, 512 * 1024},
    {"512k", 0, 512 * 1024},
    {"2g", 0, 2ULL * 1024 * 1024 * 1024},
    {"100", 0, 100},
    {"0", 0, 0},
    {"", -EINVAL, 0},
    {"-1", -EINVAL, 0},
    {"1.5M", -EINVAL, 0},
    {"10MB", -EINVAL, 0},
    {"10 M", -EINVAL, 0},
    {"M", -EINVAL, 0},
    {"10T", -EINVAL, 0},
    {"0x10", -EINVAL, 0},
    {"18446744073709551615", 0, UINT64_MAX},
    {"18446744073709551616", -ERANGE, 0},
    {"17179869184G", -ERANGE, 0},
};

static void test_size_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(size_cases) / sizeof(size_cases[0]); i++) {
		const struct size_case *c = &size_cases[i];
		uint64_t n = 42;
		int rc = confparse_size(c->text, &n);
		if (rc != c->rc)
			fail_msg("\"%s\": rc %d, want %d", c->text, rc, c->rc);
		if (rc == 0 && n != c->bytes)
			fail_msg("\"%s\": %llu, want %llu", c->text, (unsigned long long)n,
				 (unsigned long long)c->bytes);
		if (rc != 0 && n != 42)
			fail_msg("\"%s\": output changed on failure", c->text);
	}
}

static void test_bool_table(void **state)
{
	static const struct {
		const char *text;
		int rc;
		bool value;
	} cases[] = {
	    {"yes", 0, true},
	    {"YES", 0, true},
	    {"true", 0, true},
	    {"on", 0, true},
	    {"1", 0, true},
	    {"no", 0, false},
	    {"False", 0, false},
	    {"off", 0, false},
	    {"0", 0, false},
	    {"", -EINVAL, false},
	    {"y", -EINVAL, false},
	    {"2", -EINVAL, false},
	    {"yes please", -EINVAL, false},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool b = !cases[i].value;
		int rc = confparse_bool(cases[i].text, &b);
		if (rc != cases[i].rc)
			fail_msg("\"%s\": rc %d, want %d", cases[i].text, rc, cases[i].rc);
		if (rc == 0 && b != cases[i].value)
			fail_msg("\"%s\": wrong value", cases[i].text);
	}
}

static void test_uint_table(void **state)
{
	static const struct {
		const char *text;
		int rc;
		unsigned value;
	} cases[] = {
	    {"0", 0, 0},
	    {"1000", 0, 1000},
	    {"4294967295", 0, UINT_MAX},
	    {"4294967296", -ERANGE, 0},
	    {"-1", -EINVAL, 0},
	    {"1k", -EINVAL, 0},
	    {"", -EINVAL, 0},
	    {"12 ", -EINVAL, 0},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unsigned n = 7;
		int rc = confparse_uint(cases[i].text, &n);
		if (rc != cases[i].rc)
			fail_msg("\"%s\": rc %d, want %d", cases[i].text, rc, cases[i].rc);
		if (rc == 0 && n != cases[i].value)
			fail_msg("\"%s\": %u, want %u", cases[i].text, n, cases[i].value);
	}
}

static void test_hostport_table(void **state)
{
	static const struct {
		const char *text;
		const char *host; /* NULL: must fail */
		const char *port;
	} cases[] = {
	    {"127.0.0.1:25", "127.0.0.1", "25"},
	    {"[::1]:6025", "::1", "6025"},
	    {"[2001:db8::1]:65535", "2001:db8::1", "65535"},
	    {"mx.example.com:25", "mx.example.com", "25"},
	    {"localhost:1", "localhost", "1"},
	    {"::1:25", NULL, NULL},
	    {"127.0.0.1", NULL, NULL},
	    {"127.0.0.1:0", NULL, NULL},
	    {"127.0.0.1:65536", NULL, NULL},
	    {"127.0.0.1:-1", NULL, NULL},
	    {"127.0.0.1:smtp", NULL, NULL},
	    {"127.0.0.1:25x", NULL, NULL},
	    {"[::1]25", NULL, NULL},
	    {"[::1]", NULL, NULL},
	    {"[zz]:25", NULL, NULL},
	    {"[127.0.0.1]:25", NULL, NULL},
	    {":25", NULL, NULL},
	    {"host:", NULL, NULL},
	    {"bad host:25", NULL, NULL},
	    {"999.1.1.1:25", NULL, NULL},
	    {"a..b:25", NULL, NULL},
	    {"", NULL, NULL},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *host = NULL, *port = NULL;
		int rc = confparse_hostport(cases[i].text, &host, &port);
		if (cases[i].host == NULL) {
			if (rc != -EINVAL)
				fail_msg("\"%s\": accepted, want -EINVAL", cases[i].text);
			assert_null(host);
			assert_null(port);
			continue;
		}
		if (rc != 0)
			fail_msg("\"%s\": rc %d, want 0", cases[i].text, rc);
		assert_string_equal(host, cases[i].host);
		assert_string_equal(port, cases[i].port);
		free(host);
		free(port);
	}
}

static void test_hostname_ok(void **state)
{
	(void)state;
	assert_true(confparse_hostname_ok("lazaret1"));
	assert_true(confparse_hostname_ok("mx-1.example.co.jp"));
	assert_true(confparse_hostname_ok("192.0.2.1"));
	assert_true(confparse_hostname_ok("::1"));
	assert_false(confparse_hostname_ok(""));
	assert_false(confparse_hostname_ok("my host"));
	assert_false(confparse_hostname_ok("a..b"));
	assert_false(confparse_hostname_ok(".a"));
	assert_false(confparse_hostname_ok("a."));
	assert_false(confparse_hostname_ok("1.2.3.256"));
	assert_false(confparse_hostname_ok("a\r\nb"));
}

/* ---- whole files ---- */

struct sample {
	char *str;
	char *path;
	char *choice;
	char *host;
	char *addr;
	char *hostport;
	bool flag;
	unsigned count;
	uint64_t size;
	int64_t wait_ms;
	int64_t keep_days_ms;
	double ratio;
	struct acl *acl;
	char *acl_text;
	char *required;
	char *extra_seen;
};

#define SOFF(f) offsetof(struct sample, f)

static const struct confparse_key sample_keys[] = {
    {.section = "s",
     .name = "str",
     .type = CONFPARSE_STRING,
     .offset = SOFF(str),
     .default_text = "dflt"},
    {.section = "s",
     .name = "path",
     .type = CONFPARSE_PATH,
     .offset = SOFF(path),
     .default_text = "var"},
    {.section = "s",
     .name = "choice",
     .type = CONFPARSE_CHOICE,
     .offset = SOFF(choice),
     .default_text = "b",
     .choices = "a|b|c"},
    {.section = "s", .name = "host", .type = CONFPARSE_HOSTNAME, .offset = SOFF(host)},
    {.section = "s", .name = "addr", .type = CONFPARSE_ADDRESS, .offset = SOFF(addr)},
    {.section = "s",
     .name = "hostport",
     .type = CONFPARSE_HOSTPORT,
     .offset = SOFF(hostport),
     .default_text = "127.0.0.1:25"},
    {.section = "s",
     .name = "flag",
     .type = CONFPARSE_BOOL,
     .offset = SOFF(flag),
     .default_text = "yes"},
    {.section = "n",
     .name = "count",
     .type = CONFPARSE_UINT,
     .offset = SOFF(count),
     .default_text = "10",
     .min = 1,
     .max = 100},
    {.section = "n",
     .name = "size",
     .type = CONFPARSE_SIZE,
     .offset = SOFF(size),
     .default_text = "1M",
     .min = 1024,
     .max = 1024 * 1024 * 1024},
    {.section = "n",
     .name = "wait",
     .type = CONFPARSE_DURATION,
     .offset = SOFF(wait_ms),
     .default_text = "5m",
     .min = 1000},
    {.section = "n",
     .name = "keep_days",
     .type = CONFPARSE_DURATION,
     .offset = SOFF(keep_days_ms),
     .default_text = "7"},
    {.section = "n",
     .name = "ratio",
     .type = CONFPARSE_DOUBLE,
     .offset = SOFF(ratio),
     .default_text = "0.5"},
    {.section = "n",
     .name = "acl",
     .type = CONFPARSE_ACL,
     .offset = SOFF(acl),
     .default_text = "127.0.0.1/32",
     .flags = CONFPARSE_KEEP_TEXT,
     .text_offset = SOFF(acl_text)},
    {.section = "r",
     .name = "required",
     .type = CONFPARSE_STRING,
     .offset = SOFF(required),
     .flags = CONFPARSE_REQUIRED},
};

#define SAMPLE_NKEYS (sizeof(sample_keys) / sizeof(sample_keys[0]))

static char test_dir[PATH_MAX];
static char test_file[PATH_MAX + 16];

static int setup_dir(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/lazaret-test-config-XXXXXX";
	char *d = mkdtemp(tmpl);
	if (d == NULL)
		return -1;
	/* The loader resolves the folder, so compare against the resolved name. */
	if (realpath(d, test_dir) == NULL)
		return -1;
	snprintf(test_file, sizeof(test_file), "%s/test.conf", test_dir);
	return 0;
}

static int teardown_dir(void **state)
{
	(void)state;
	unlink(test_file);
	rmdir(test_dir);
	return 0;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
	assert_int_equal(fclose(f), 0);
}

/* Replaces every occurrence of the test file's path in s with "F" (in place). */
static char *with_short_path(char *s)
{
	if (s == NULL)
		return NULL;
	size_t plen = strlen(test_file);
	char *out = s, *in = s;
	while (*in != '\0') {
		if (strncmp(in, test_file, plen) == 0) {
			*out++ = 'F';
			in += plen;
		} else {
			*out++ = *in++;
		}
	}
	*out = '\0';
	return s;
}

static int extra_handler(void *target, const char *section, const char *key, const char *value,
			 char **msg, void *arg)
{
	struct sample *s = target;
	(void)arg;
	if (strcmp(section, "x") != 0 || strncmp(key, "policy.", 7) != 0)
		return -ENOENT;
	if (strcmp(value, "bad") == 0) {
		*msg = xstrdup("policy value is bad");
		return -EINVAL;
	}
	free(s->extra_seen);
	s->extra_seen = xasprintf("%s=%s", key, value);
	return 0;
}

/* Loads text as the test file; *errors gets the errors with the path shown as "F". */
static int load(const char *text, struct sample *s, char **errors, bool with_extra)
{
	write_file(test_file, text);
	memset(s, 0, sizeof(*s));
	struct confparse *cp = confparse_new(test_file, sample_keys, SAMPLE_NKEYS);
	if (with_extra)
		confparse_set_extra(cp, extra_handler, NULL);
	int rc = confparse_read(cp, s);
	*errors = with_short_path(confparse_take_errors(cp));
	confparse_free(cp);
	return rc;
}

static void free_sample(struct sample *s)
{
	confparse_free_target(sample_keys, SAMPLE_NKEYS, s);
	free(s->extra_seen);
}

static void test_file_all_types(void **state)
{
	struct sample s;
	char *errors;
	(void)state;
	int rc = load("; a comment\n"
		      "# another\n"
		      "[s]\n"
		      "str = hello world   ; trailing comment\n"
		      "path = sub/dir\n"
		      "choice = c\n"
		      "host = mx.example.com\n"
		      "addr = ::1\n"
		      "hostport = [::1]:6025\n"
		      "flag = off\n"
		      "\n"
		      "  [ n ]  \n"
		      "count=100\n"
		      "size = 512K\n"
		      "wait = 30s\n"
		      "keep_days = 14\n"
		      "ratio = 3.25\n"
		      "acl = 10.0.0.0/8, ::1/128  # inline hash comment\n"
		      "[r]\n"
		      "required = x\n",
		      &s, &errors, false);
	if (rc != 0)
		fail_msg("rc %d: %s", rc, errors ? errors : "(no errors)");
	assert_null(errors);
	assert_string_equal(s.str, "hello world");
	char *want_path = xasprintf("%s/sub/dir", test_dir);
	assert_string_equal(s.path, want_path);
	free(want_path);
	assert_string_equal(s.choice, "c");
	assert_string_equal(s.host, "mx.example.com");
	assert_string_equal(s.addr, "::1");
	assert_string_equal(s.hostport, "[::1]:6025");
	assert_false(s.flag);
	assert_int_equal(s.count, 100);
	assert_int_equal(s.size, 512 * 1024);
	assert_int_equal(s.wait_ms, 30000);
	assert_int_equal(s.keep_days_ms, 14LL * 86400 * 1000);
	assert_true(s.ratio == 3.25);
	assert_int_equal(acl_count(s.acl), 2);
	assert_true(acl_match_text(s.acl, "10.1.2.3"));
	assert_false(acl_match_text(s.acl, "127.0.0.1"));
	assert_string_equal(s.acl_text, "10.0.0.0/8, ::1/128");
	assert_string_equal(s.required, "x");
	free_sample(&s);
}

static void test_file_defaults(void **state)
{
	struct sample s;
	char *errors;
	(void)state;
	/* An empty value is the same as leaving the key out. */
	int rc = load("[r]\nrequired = y\n[s]\nstr =\nchoice = ; nothing\n", &s, &errors, false);
	assert_int_equal(rc, 0);
	assert_null(errors);
	assert_string_equal(s.str, "dflt");
	char *want_path = xasprintf("%s/var", test_dir);
	assert_string_equal(s.path, want_path);
	free(want_path);
	assert_string_equal(s.choice, "b");
	assert_null(s.host);
	assert_null(s.addr);
	assert_string_equal(s.hostport, "127.0.0.1:25");
	assert_true(s.flag);
	assert_int_equal(s.count, 10);
	assert_int_equal(s.size, 1024 * 1024);
	assert_int_equal(s.wait_ms, 300000);
	assert_int_equal(s.keep_days_ms, 7LL * 86400 * 1000);
	assert_true(s.ratio == 0.5);
	assert_true(acl_match_text(s.acl, "127.0.0.1"));
	assert_string_equal(s.acl_text, "127.0.0.1/32");
	free_sample(&s);
}

static void test_file_values(void **state)
{
	static const struct {
		const char *line;   /* in section [s], on line 2 */
		const char *field;  /* "str" or "path" */
		const char *expect; /* NULL: the expected value is test_dir + expect_rel */
		const char *expect_rel;
	} cases[] = {
	    {"str = a;b", "str", "a;b", NULL},
	    {"str = a#b", "str", "a#b", NULL},
	    {"str = a ;b", "str", "a", NULL},
	    {"str = a\t#b", "str", "a", NULL},
	    {"str = \"x ; y \"  ; comment", "str", "x ; y ", NULL},
	    {"str = \"say \\\"hi\\\" \\\\o/\"", "str", "say \"hi\" \\o/", NULL},
	    {"str = [SUSPECTED SPAM]", "str", "[SUSPECTED SPAM]", NULL},
	    {"str = a = b", "str", "a = b", NULL},
	    {"str = ISO-2022-JP \xe8\xbf\xb7\xe6\x83\x91", "str",
	     "ISO-2022-JP \xe8\xbf\xb7\xe6\x83\x91", NULL},
	    {"str = crlf\r", "str", "crlf", NULL},
	    {"path = /abs/file", "path", "/abs/file", NULL},
	    {"path = ../up", "path", NULL, "/../up"},
	    {"path = ./here", "path", NULL, "/here"},
	    {"path = .", "path", NULL, ""},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sample s;
		char *errors;
		char *text = xasprintf("[s]\n%s\n[r]\nrequired = 1\n", cases[i].line);
		int rc = load(text, &s, &errors, false);
		free(text);
		if (rc != 0)
			fail_msg("%s: rc %d: %s", cases[i].line, rc, errors);
		const char *got = strcmp(cases[i].field, "str") == 0 ? s.str : s.path;
		char *want = cases[i].expect ? xstrdup(cases[i].expect)
					     : xasprintf("%s%s", test_dir, cases[i].expect_rel);
		if (strcmp(got, want) != 0)
			fail_msg("%s: got \"%s\", want \"%s\"", cases[i].line, got, want);
		free(want);
		free_sample(&s);
	}
}

/* A file with one bad line gives exactly one error, naming line and key. */
static void test_file_errors(void **state)
{
	static const struct {
		const char *text;
		const char *errors;
	} cases[] = {
	    {"[r]\nrequired = 1\n[s]\nbogus = 1\n", "F:4: [s] bogus: unknown key\n"},
	    {"[r]\nrequired = 1\n\n[nope]\na = 1\nb = 2\n", "F:4: [nope] unknown section\n"},
	    {"[r]\nrequired = 1\nrequired = 2\n",
	     "F:3: [r] required: set twice (first at line 2)\n"},
	    {"x = 1\n[r]\nrequired = 1\n", "F:1: x: key before the first [section]\n"},
	    {"[r]\nrequired = 1\njust words\n", "F:3: [r] expected \"key = value\"\n"},
	    {"[r]\nrequired = 1\n[s\n", "F:3: bad section header: expected [name]\n"},
	    {"[r]\nrequired = 1\n[a b]\n", "F:3: bad section header: expected [name]\n"},
	    {"[r]\nrequired = 1\nbad key = 1\n",
	     "F:3: [r] bad key name: letters, digits, '_', '-', '.' only\n"},
	    {"[r]\nrequired = \"open\n", "F:2: [r] required: quoted value has no closing \"\n"},
	    {"[r]\nrequired = \"a\" b\n",
	     "F:2: [r] required: text after the closing \" of a quoted value\n"},
	    {"[s]\nstr = 1\n", "F:2: [r] required: is required but missing\n"},
	    {"[s]\nstr = 1\n[r]\n\n", "F:3: [r] required: is required but missing\n"},
	    {"[r]\nrequired =   ; empty\n", "F:2: [r] required: must not be empty\n"},
	    {"[r]\nrequired = 1\n[s]\nchoice = d\n",
	     "F:4: [s] choice: \"d\" is not one of a|b|c\n"},
	    {"[r]\nrequired = 1\n[s]\nhost = my host\n",
	     "F:4: [s] host: \"my host\" is not a host name or address\n"},
	    {"[r]\nrequired = 1\n[s]\naddr = localhost\n",
	     "F:4: [s] addr: \"localhost\" is not an IPv4 or IPv6 address\n"},
	    {"[r]\nrequired = 1\n[s]\nhostport = ::1:25\n",
	     "F:4: [s] hostport: \"::1:25\" IPv6 addresses need brackets: [2001:db8::1]:25\n"},
	    {"[r]\nrequired = 1\n[s]\nhostport = 127.0.0.1:70000\n",
	     "F:4: [s] hostport: \"127.0.0.1:70000\" port must be a number 1-65535\n"},
	    {"[r]\nrequired = 1\n[s]\nflag = maybe\n",
	     "F:4: [s] flag: \"maybe\" is not yes or no\n"},
	    {"[r]\nrequired = 1\n[n]\ncount = ten\n",
	     "F:4: [n] count: \"ten\" is not a whole number\n"},
	    {"[r]\nrequired = 1\n[n]\ncount = 0\n", "F:4: [n] count: must be at least 1\n"},
	    {"[r]\nrequired = 1\n[n]\ncount = 101\n", "F:4: [n] count: must be at most 100\n"},
	    {"[r]\nrequired = 1\n[n]\ncount = 99999999999\n",
	     "F:4: [n] count: \"99999999999\" is too large\n"},
	    {"[r]\nrequired = 1\n[n]\nsize = 10MB\n",
	     "F:4: [n] size: \"10MB\" must be a number of bytes, optionally with K, M or G (e.g. "
	     "512K, 50M)\n"},
	    {"[r]\nrequired = 1\n[n]\nsize = 2G\n",
	     "F:4: [n] size: must be at most 1073741824 bytes\n"},
	    {"[r]\nrequired = 1\n[n]\nsize = 100\n",
	     "F:4: [n] size: must be at least 1024 bytes\n"},
	    {"[r]\nrequired = 1\n[n]\nwait = 14\n",
	     "F:4: [n] wait: \"14\" needs a unit: s, m, h or d (e.g. 30s, 14d)\n"},
	    {"[r]\nrequired = 1\n[n]\nwait = 0\n", "F:4: [n] wait: must be at least 1s\n"},
	    {"[r]\nrequired = 1\n[n]\nwait = -1d\n",
	     "F:4: [n] wait: \"-1d\" must be a whole number with a unit s, m, h or d (e.g. 30s, "
	     "14d)\n"},
	    {"[r]\nrequired = 1\n[n]\nwait = 99999999999999d\n",
	     "F:4: [n] wait: \"99999999999999d\" is too large\n"},
	    {"[r]\nrequired = 1\n[n]\nkeep_days = 14x\n",
	     "F:4: [n] keep_days: \"14x\" must be a whole number with a unit s, m, h or d (e.g. "
	     "30s, 14d)\n"},
	    {"[r]\nrequired = 1\n[n]\nratio = 1.5x\n",
	     "F:4: [n] ratio: \"1.5x\" is not a number\n"},
	    {"[r]\nrequired = 1\n[n]\nratio = nan\n", "F:4: [n] ratio: \"nan\" is not a number\n"},
	    {"[r]\nrequired = 1\n[n]\nacl = 10.0.0.1/8\n",
	     "F:4: [n] acl: bad entry \"10.0.0.1/8\": host bits are set after /8 (did you mean "
	     "10.0.0.0/8?)\n"},
	    {"[r]\nrequired = 1\n[x]\npolicy.a = 1\n", "F:3: [x] unknown section\n"},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sample s;
		char *errors;
		int rc = load(cases[i].text, &s, &errors, false);
		if (rc != -EINVAL)
			fail_msg("case %zu: rc %d, want -EINVAL", i, rc);
		if (errors == NULL || strcmp(errors, cases[i].errors) != 0)
			fail_msg("case %zu: errors\n%s\nwant\n%s", i, errors ? errors : "(none)",
				 cases[i].errors);
		free(errors);
		free_sample(&s);
	}
}

static void test_file_collects_all_errors(void **state)
{
	struct sample s;
	char *errors;
	(void)state;
	int rc = load("[s]\n"
		      "flag = perhaps\n"
		      "typo = 1\n"
		      "[n]\n"
		      "size = 1X\n"
		      "wait = 1d\n"
		      "wait = 2d\n"
		      "[bogus]\n"
		      "whatever = 1\n",
		      &s, &errors, false);
	assert_int_equal(rc, -EINVAL);
	assert_non_null(errors);
	assert_string_equal(errors, "F:2: [s] flag: \"perhaps\" is not yes or no\n"
				    "F:3: [s] typo: unknown key\n"
				    "F:5: [n] size: \"1X\" must be a number of bytes, optionally "
				    "with K, M or G (e.g. 512K, 50M)\n"
				    "F:7: [n] wait: set twice (first at line 6)\n"
				    "F:8: [bogus] unknown section\n"
				    "F:9: [r] required: is required but missing\n");
	free(errors);
	free_sample(&s);
}

static void test_file_extra_keys(void **state)
{
	struct sample s;
	char *errors;
	(void)state;
	int rc = load("[r]\nrequired = 1\n[x]\npolicy.blocked = reject: 198.51.100.0/24 ; c\n", &s,
		      &errors, true);
	assert_int_equal(rc, 0);
	assert_string_equal(s.extra_seen, "policy.blocked=reject: 198.51.100.0/24");
	free_sample(&s);

	rc = load("[r]\nrequired = 1\n[x]\npolicy.a = bad\nother = 1\n", &s, &errors, true);
	assert_int_equal(rc, -EINVAL);
	assert_string_equal(errors, "F:4: [x] policy.a: policy value is bad\n"
				    "F:5: [x] other: unknown key\n");
	free(errors);
	free_sample(&s);
}

static void test_file_lines_and_context(void **state)
{
	struct sample s;
	char *errors;
	(void)state;
	write_file(test_file,
		   "[s]\r\nstr = one\r\n\r\n[n]\r\ncount = 5\r\n[r]\r\nrequired = 1\r\n");
	memset(&s, 0, sizeof(s));
	struct confparse *cp = confparse_new(test_file, sample_keys, SAMPLE_NKEYS);
	assert_int_equal(confparse_read(cp, &s), 0);
	assert_int_equal(confparse_line(cp, "n", "count"), 5);
	assert_int_equal(confparse_line(cp, "s", "str"), 2);
	assert_int_equal(confparse_line(cp, "s", "flag"), 0);
	assert_true(confparse_is_set(cp, "r", "required"));
	assert_false(confparse_is_set(cp, "n", "size"));
	assert_string_equal(confparse_dir(cp), test_dir);
	assert_int_equal(confparse_error_count(cp), 0);
	assert_null(confparse_take_errors(cp));

	/* Checks across keys blame the key's line, its section, or the end. */
	confparse_error(cp, "n", "count", "too many (%d)", 5);
	confparse_error(cp, "s", "flag", "not with %s", "str");
	confparse_error(cp, "zz", "k", "nowhere");
	assert_int_equal(confparse_error_count(cp), 3);
	errors = with_short_path(confparse_take_errors(cp));
	assert_string_equal(errors, "F:5: [n] count: too many (5)\n"
				    "F:1: [s] flag: not with str\n"
				    "F:7: [zz] k: nowhere\n");
	free(errors);
	confparse_free(cp);
	free_sample(&s);
}

static void test_file_nul_and_bom(void **state)
{
	struct sample s;
	char *errors;
	(void)state;
	static const char text[] = "\xef\xbb\xbf[r]\nrequired = a\0b\nrequired = c\n";
	memset(&s, 0, sizeof(s));
	struct confparse *cp = confparse_new("mem.conf", sample_keys, SAMPLE_NKEYS);
	assert_int_equal(confparse_read_buffer(cp, text, sizeof(text) - 1, &s), -EINVAL);
	errors = confparse_take_errors(cp);
	assert_string_equal(errors, "mem.conf:2: [r] line contains a NUL byte\n");
	assert_string_equal(s.required, "c");
	free(errors);
	confparse_free(cp);
	free_sample(&s);
}

static void test_file_missing(void **state)
{
	struct sample s;
	(void)state;
	memset(&s, 0, sizeof(s));
	struct confparse *cp =
	    confparse_new("/nonexistent-lazaret/x.conf", sample_keys, SAMPLE_NKEYS);
	assert_int_equal(confparse_read(cp, &s), -ENOENT);
	char *errors = confparse_take_errors(cp);
	assert_string_equal(
	    errors, "/nonexistent-lazaret/x.conf: cannot open: No such file or directory\n");
	free(errors);
	assert_string_equal(confparse_dir(cp), "/nonexistent-lazaret");
	char *p = confparse_resolve_path(cp, "a/b");
	assert_string_equal(p, "/nonexistent-lazaret/a/b");
	free(p);
	confparse_free(cp);
	free_sample(&s);
}

/* confparse_canonical: the existing part through realpath, the rest by name. */
static void test_canonical_table(void **state)
{
	(void)state;
	char *link = xasprintf("%s/link", test_dir);
	char *real = xasprintf("%s/real", test_dir);
	assert_int_equal(mkdir(real, 0700), 0);
	assert_int_equal(symlink("real", link), 0);
	static const struct {
		const char *in;	  /* after test_dir, or absolute when it starts with "!" */
		const char *want; /* after test_dir, or absolute when it starts with "!" */
	} cases[] = {
	    {"", ""},
	    {"/.", ""},
	    {"/link", "/real"},
	    {"/link/", "/real"},
	    {"/link/../link/./x", "/real/x"},
	    {"/real/../var/lazaret", "/var/lazaret"},
	    {"/nope/../var", "/var"},
	    {"/nope/./a/../b/", "/nope/b"},
	    {"/link/nope/../../real//y", "/real/y"},
	    {"!/", "!/"},
	    {"!/..", "!/"},
	    {"!/../nonexistent-lazaret/../x", "!/x"},
	    {"!/nonexistent-lazaret/a/..", "!/nonexistent-lazaret"},
	    {"!relative/../x", "!relative/../x"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *in = cases[i].in, *w = cases[i].want;
		char *path = in[0] == '!' ? xstrdup(in + 1) : xasprintf("%s%s", test_dir, in);
		char *want = w[0] == '!' ? xstrdup(w + 1) : xasprintf("%s%s", test_dir, w);
		char *got = confparse_canonical(path);
		if (strcmp(got, want) != 0)
			fail_msg("%s: got \"%s\", want \"%s\"", path, got, want);
		free(path);
		free(want);
		free(got);
	}
	unlink(link);
	rmdir(real);
	free(link);
	free(real);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_duration_table),
	    cmocka_unit_test(test_size_table),
	    cmocka_unit_test(test_bool_table),
	    cmocka_unit_test(test_uint_table),
	    cmocka_unit_test(test_hostport_table),
	    cmocka_unit_test(test_hostname_ok),
	    cmocka_unit_test(test_file_all_types),
	    cmocka_unit_test(test_file_defaults),
	    cmocka_unit_test(test_file_values),
	    cmocka_unit_test(test_file_errors),
	    cmocka_unit_test(test_file_collects_all_errors),
	    cmocka_unit_test(test_file_extra_keys),
	    cmocka_unit_test(test_file_lines_and_context),
	    cmocka_unit_test(test_file_nul_and_bom),
	    cmocka_unit_test(test_file_missing),
	    cmocka_unit_test(test_canonical_table),
	};
	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}

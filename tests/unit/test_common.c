/*
 * Unit tests for the small common modules: ids (UUIDv7), clock (RFC 3339),
 * log_quote (field values in log lines), log repeat folding, privdrop (data folder
 * creation).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/privdrop.h"
#include "common/readfile.h"
#include "common/strbuf.h"
#include "common/xalloc.h"
#include "test_util.h"

static void test_uuidv7_shape_and_time(void **state)
{
	char a[IDS_UUID_LEN + 1], b[IDS_UUID_LEN + 1];
	int64_t t = 1795000000123;
	ids_uuidv7(t, a);
	ids_uuidv7(t, b);
	assert_true(ids_valid(a));
	assert_int_equal(a[14], '7');		    /* version */
	assert_true(strchr("89ab", a[19]) != NULL); /* variant */
	assert_int_equal(ids_uuidv7_time_ms(a), t);
	assert_string_not_equal(a, b); /* random part differs */
	char later[IDS_UUID_LEN + 1];
	ids_uuidv7(t + 1, later);
	assert_true(strcmp(later, a) > 0 && strcmp(later, b) > 0); /* sorts by time */
}

/* Ids of one millisecond sort in the order they were made, up to 2048 at least;
 * an id for an earlier time keeps that time. */
static void test_uuidv7_same_millisecond_in_order(void **state)
{
	(void)state;
	int64_t t = 1796000000456;
	char prev[IDS_UUID_LEN + 1], id[IDS_UUID_LEN + 1];
	ids_uuidv7(t, prev);
	for (int i = 0; i < 2048; i++) {
		ids_uuidv7(t, id);
		assert_int_equal(ids_uuidv7_time_ms(id), t);
		assert_true(ids_valid(id) && id[14] == '7');
		assert_true(strcmp(id, prev) > 0);
		memcpy(prev, id, sizeof(id));
	}
	ids_uuidv7(t - 5000, id);
	assert_int_equal(ids_uuidv7_time_ms(id), t - 5000);
	ids_uuidv7(t, id); /* the counter of t goes on */
	assert_true(strcmp(id, prev) > 0);
}

static void test_ids_valid_rejects(void **state)
{
	static const char *const bad[] = {
	    "",
	    "01a21e76-56d8-7529-84ea-c52b208e1f8",   /* short */
	    "01a21e76-56d8-7529-84ea-c52b208e1f844", /* long */
	    "01A21E76-56D8-7529-84EA-C52B208E1F84",  /* upper case */
	    "01a21e76_56d8-7529-84ea-c52b208e1f84",  /* separator */
	    "01a21e76-56d8-7529-84ea-c52b208e1g84",  /* not hex */
	    "../../../../etc/passwd-aaaaaaaaaaaaa",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(ids_valid(bad[i]));
	assert_false(ids_valid(NULL));
	assert_true(ids_valid("01a21e76-56d8-7529-84ea-c52b208e1f84"));
}

static void test_rfc3339(void **state)
{
	static const struct {
		const char *in;
		int rc;
		int64_t ms;
	} cases[] = {
	    {"2026-11-27T19:30:00Z", 0, 1795807800000},
	    {"2026-11-27T19:30:00.250Z", 0, 1795807800250},
	    {"2026-11-28T04:30:00+09:00", 0, 1795807800000},
	    {"2026-11-27T14:30:00-05:00", 0, 1795807800000},
	    {"2026-11-27", 0, 1795737600000},
	    {"2026-11-27 19:30:00Z", 0, 1795807800000},
	    {"2026-13-01T00:00:00Z", -1, 0},
	    {"2026-11-27T19:30:00", -1, 0}, /* no zone */
	    {"2026-11-27T19:30Z", -1, 0},
	    {"yesterday", -1, 0},
	    {"2026-11-27T19:30:00Zjunk", -1, 0},
	    {"", -1, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int64_t ms = 0;
		int rc = clock_parse_rfc3339(cases[i].in, &ms);
		if (cases[i].rc == 0) {
			assert_int_equal(rc, 0);
			assert_int_equal(ms, cases[i].ms);
		} else {
			assert_true(rc < 0);
		}
	}
	char out[CLOCK_RFC3339_LEN];
	clock_format_rfc3339(1795807800250, out);
	assert_string_equal(out, "2026-11-27T19:30:00Z");
}

static void test_log_quote(void **state)
{
	static const struct {
		const char *in;
		const char *out;
	} cases[] = {
	    {"plain", "plain"},
	    {"", "\"\""},
	    {"two words", "\"two words\""},
	    {"a=b", "\"a=b\""},
	    {"say \"hi\"", "\"say \\\"hi\\\"\""},
	    {"line\r\nbreak", "\"line\\r\\nbreak\""},
	    {"bell\a", "\"bell\\x07\""},
	    {"件名", "件名"},
	};
	char buf[64];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_string_equal(log_quote(buf, sizeof(buf), cases[i].in), cases[i].out);
	char small[12];
	const char *q = log_quote(small, sizeof(small), "a long value with spaces");
	assert_true(strlen(q) < sizeof(small));
	assert_non_null(strstr(q, "..."));
	assert_int_equal(q[strlen(q) - 1], '"');
}

/* Mode bits of path, or -1 when it is missing or not a folder. */
static int dir_mode(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
		return -1;
	return (int)(st.st_mode & 07777);
}

/* Runs fn with stderr sent to a file; returns what was written (caller frees). */
static char *capture_stderr(void (*fn)(void))
{
	char path[] = "/tmp/lazaret-log-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	int saved = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	fn();
	dup2(saved, STDERR_FILENO);
	close(saved);
	off_t n = lseek(fd, 0, SEEK_END);
	char *text = calloc(1, (size_t)n + 1);
	assert_int_equal(pread(fd, text, (size_t)n, 0), n);
	close(fd);
	unlink(path);
	return text;
}

static void log_a_flood(void)
{
	/* Start at the beginning of a second, so the flood falls in one. */
	time_t t0 = time(NULL);
	while (time(NULL) == t0)
		usleep(1000);
	for (int i = 0; i < 1000; i++)
		log_warn("test.flood", "error=%s", "Too many open files");
	log_warn("test.other", "n=%d", 1);
	for (int i = 0; i < 3; i++)
		log_warn("test.flood", "error=%s", "another text");
	t0 = time(NULL);
	while (time(NULL) == t0)
		usleep(1000);
	log_warn("test.flood", "error=%s", "Too many open files");
}

static void test_log_folds_repeated_lines(void **state)
{
	char *text = capture_stderr(log_a_flood);
	/* Five of the thousand, then the report and one more in the next second. */
	assert_int_equal(test_count_of(text, "test.flood error=Too many open files"), 6);
	assert_int_equal(test_count_of(text, "log.suppressed count=995 event=test.flood "), 1);
	assert_int_equal(test_count_of(text, "log.suppressed"), 1);
	/* Other lines, even of the same event, are not held back. */
	assert_int_equal(test_count_of(text, "test.other n=1"), 1);
	assert_int_equal(test_count_of(text, "test.flood error=another text"), 3);
	const char *report = strstr(text, "log.suppressed");
	const char *last = strstr(report, "test.flood error=Too many open files");
	assert_non_null(last);
	free(text);
}

static void test_privdrop_make_dirs(void **state)
{
	/* Paths are relative to a fresh folder; "file" is a regular file in it. */
	static const struct {
		const char *make;
		int rc;
		const char *check; /* a folder that must then exist ... */
		int mode;	   /* ... with this mode (0: not checked) */
	} cases[] = {
	    {"var", 0, "var", 0700},
	    {"a/b/c", 0, "a/b/c", 0700},
	    {"a/b/c", 0, "a/b", 0755},	 /* parents are readable by all */
	    {"a/b/c", 0, "a/b/c", 0700}, /* again: nothing changes, no error */
	    {"d//e", 0, "d/e", 0700},
	    {"f/g/", 0, "f/g", 0700}, /* a trailing slash names the same folder */
	    {"file", -ENOTDIR, NULL, 0},
	    {"file/x", -ENOTDIR, NULL, 0},
	    {"", -EINVAL, NULL, 0},
	};
	char tmpl[] = "/tmp/lazaret-test-privdrop-XXXXXX";
	assert_non_null(mkdtemp(tmpl));
	mode_t old = umask(022);
	char path[512];
	snprintf(path, sizeof(path), "%s/file", tmpl);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fclose(f);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (cases[i].make[0] != '\0')
			snprintf(path, sizeof(path), "%s/%s", tmpl, cases[i].make);
		else
			path[0] = '\0';
		int rc = privdrop_make_dirs(path);
		if (rc != cases[i].rc)
			fail_msg("make_dirs(%s) = %d, expected %d", cases[i].make, rc, cases[i].rc);
		if (cases[i].check != NULL) {
			snprintf(path, sizeof(path), "%s/%s", tmpl, cases[i].check);
			assert_int_equal(dir_mode(path), cases[i].mode);
		}
	}
	/* An absolute path whose parents all exist already. */
	assert_int_equal(privdrop_make_dirs(tmpl), 0);
	umask(old);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpl);
	assert_int_equal(system(cmd), 0);
}

static void test_privdrop_unknown_user_keeps_running(void **state)
{
	/* A development machine: no service user. The identity stays, start-up goes on. */
	uid_t before = geteuid();
	assert_int_equal(privdrop_to_user("test", "lazaret-no-such-user-x", "/tmp"), 0);
	assert_int_equal(geteuid(), before);
}

static void test_strbuf_grows_and_formats(void **state)
{
	(void)state;
	struct strbuf b = STRBUF_INIT;
	assert_string_equal(strbuf_str(&b), "");
	for (int i = 0; i < 1000; i++)
		strbuf_printf(&b, "%03d,", i);
	assert_int_equal(b.len, 4000);
	assert_memory_equal(b.p, "000,001,", 8);
	assert_string_equal(b.p + 3996, "999,");
	strbuf_truncate(&b, 3);
	strbuf_addc(&b, '|');
	strbuf_add(&b, "ab\0c", 4); /* bytes past a NUL are kept; len says so */
	assert_int_equal(b.len, 8);
	assert_memory_equal(b.p, "000|ab\0c", 9);
	char *s = strbuf_take(&b);
	assert_null(b.p);
	assert_int_equal(b.len, 0);
	free(s);
	s = strbuf_take(&b); /* empty buffer: "" not NULL */
	assert_string_equal(s, "");
	free(s);
	strbuf_puts(&b, "x");
	strbuf_free(&b);
	assert_null(b.p);
	/* integers as printf writes them, the extremes included */
	const long long ints[] = {0, 7, -7, 10, 1234567890123LL, LLONG_MAX, LLONG_MIN};
	for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
		char want[32];
		snprintf(want, sizeof(want), "<%lld>", ints[i]);
		strbuf_addc(&b, '<');
		strbuf_add_int(&b, ints[i]);
		strbuf_addc(&b, '>');
		assert_string_equal(strbuf_str(&b), want);
		strbuf_truncate(&b, 0);
	}
	strbuf_free(&b);
	assert_null(xstrdup_or_null(NULL));
	s = xstrdup_or_null("y");
	assert_string_equal(s, "y");
	free(s);
}

static void test_read_file_limits(void **state)
{
	(void)state;
	char dir[] = "/tmp/lazaret-readfile-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char *path = xasprintf("%s/f", dir);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	for (int i = 0; i < 100000; i++)
		fputc('a' + i % 26, f);
	fclose(f);
	char *data;
	size_t len;
	assert_int_equal(read_file(path, 100000, &data, &len), 0);
	assert_int_equal(len, 100000);
	assert_int_equal(data[len], '\0');
	assert_int_equal(data[99999], 'a' + 99999 % 26);
	free(data);
	assert_int_equal(read_file(path, 99999, &data, &len), -EFBIG);
	assert_null(data);
	assert_int_equal(read_file(dir, 10, &data, &len), -EISDIR);
	char *missing = xasprintf("%s/none", dir);
	assert_int_equal(read_file(missing, 10, &data, &len), -ENOENT);
	f = fopen(path, "wb"); /* empty file */
	fclose(f);
	assert_int_equal(read_file(path, 10, &data, &len), 0);
	assert_int_equal(len, 0);
	assert_string_equal(data, "");
	free(data);
	unlink(path);
	rmdir(dir);
	free(missing);
	free(path);
}

/* write_file_atomic replaces a file whole, 0600, and leaves no temporary file. */
static void test_write_file_atomic(void **state)
{
	(void)state;
	char dir[] = "/tmp/lazaret-writefile-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char *path = xasprintf("%s/kept.json", dir);
	char *tmp = xasprintf("%s.tmp", path);
	assert_int_equal(write_file_atomic(path, "first", 5), 0);
	assert_int_equal(write_file_atomic(path, "二番目", strlen("二番目")), 0);
	char *data;
	size_t len;
	assert_int_equal(read_file(path, 100, &data, &len), 0);
	assert_string_equal(data, "二番目");
	free(data);
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(access(tmp, F_OK), -1);
	/* a folder that does not exist: the error, nothing written */
	char *lost = xasprintf("%s/none/kept.json", dir);
	assert_int_equal(write_file_atomic(lost, "x", 1), -ENOENT);
	/* path names a folder: rename fails, the file before stays, no temporary left */
	char *sub = xasprintf("%s/sub", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	assert_int_equal(write_file_atomic(sub, "x", 1), -EISDIR);
	char *subtmp = xasprintf("%s/sub.tmp", dir);
	assert_int_equal(access(subtmp, F_OK), -1);
	rmdir(sub);
	unlink(path);
	rmdir(dir);
	free(subtmp);
	free(sub);
	free(lost);
	free(tmp);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_uuidv7_shape_and_time),
	    cmocka_unit_test(test_uuidv7_same_millisecond_in_order),
	    cmocka_unit_test(test_ids_valid_rejects),
	    cmocka_unit_test(test_rfc3339),
	    cmocka_unit_test(test_log_quote),
	    cmocka_unit_test(test_log_folds_repeated_lines),
	    cmocka_unit_test(test_privdrop_make_dirs),
	    cmocka_unit_test(test_privdrop_unknown_user_keeps_running),
	    cmocka_unit_test(test_strbuf_grows_and_formats),
	    cmocka_unit_test(test_read_file_limits),
	    cmocka_unit_test(test_write_file_atomic),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

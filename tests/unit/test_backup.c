/*
 * Tests for quarantine/backup: member names, a write and restore round trip over a
 * real SQLite store, and every damaged archive refused with data_dir untouched: each
 * prefix of the header and the end cut off, and one byte flipped at positions across
 * the whole file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/ids.h"
#include "common/xalloc.h"
#include "quarantine/backup.h"
#include "store/store.h"

static const char raw_text[] = "Subject: backup\r\n\r\nbody\r\n";

struct waiter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	int rc;
};

static void waiter_done(void *arg, int rc)
{
	struct waiter *w = arg;
	pthread_mutex_lock(&w->lock);
	w->done = true;
	w->rc = rc;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static void add_message(struct store *st, char id[37])
{
	struct store_new_message *m = xcalloc(1, sizeof(*m));
	int64_t at = clock_now_ms();
	ids_uuidv7(at, m->id);
	memcpy(id, m->id, 37);
	m->quarantine = xstrdup("spam");
	m->received_at = at;
	m->sender = xstrdup("s@x.test");
	m->recipients = xcalloc(1, sizeof(char *));
	m->recipients[0] = xstrdup("r@y.test");
	m->nrecipients = 1;
	m->gateway = xstrdup("gw1");
	m->verdict = xstrdup("spam");
	m->raw = (unsigned char *)xstrdup(raw_text);
	m->raw_len = strlen(raw_text);
	struct waiter w = {.done = false};
	pthread_mutex_init(&w.lock, NULL);
	pthread_cond_init(&w.cond, NULL);
	assert_int_equal(store_submit_message(st, m, waiter_done, &w), 0);
	pthread_mutex_lock(&w.lock);
	while (!w.done)
		pthread_cond_wait(&w.cond, &w.lock);
	pthread_mutex_unlock(&w.lock);
	pthread_mutex_destroy(&w.lock);
	pthread_cond_destroy(&w.cond);
	assert_int_equal(w.rc, 0);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void rm_tree(const char *dir)
{
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static size_t entries(const char *dir)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return 0;
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
	closedir(d);
	return n;
}

static void write_file(const char *path, const void *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, p, n), (ssize_t)n);
	close(fd);
}

static void read_all(const char *path, unsigned char **out, size_t *n)
{
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	*n = (size_t)sb.st_size;
	*out = xmalloc(*n + 1);
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, *out, *n), (ssize_t)*n);
	close(fd);
}

static void test_member_names(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		bool ok;
	} cases[] = {
	    {"lazaret.db", true},
	    {"digest.key", true},
	    {"a", true},
	    {"A-b_c.9", true},
	    {"", false},
	    {".", false},
	    {"..", false},
	    {"../x", false},
	    {"a/b", false},
	    {"/etc/passwd", false},
	    {".hidden", false},
	    {"-rf", false},
	    {"a b", false},
	    {"a\\b", false},
	    {"ü", false},
	    {"1234567890123456789012345678901234567890123456789012345678901234", true},
	    {"12345678901234567890123456789012345678901234567890123456789012345", false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (backup_member_name_ok(cases[i].name) != cases[i].ok)
			fail_msg("%s: want %d", cases[i].name, cases[i].ok);
}

/* A store with one message and a digest.key, backed up into *archive (new). */
struct fixture {
	char src[64], dst[80], archive[96];
	char id[37];
	unsigned char *bytes;
	size_t len;
};

static void fixture_make(struct fixture *f)
{
	snprintf(f->src, sizeof(f->src), "/tmp/lazaret-test-backup-XXXXXX");
	assert_non_null(mkdtemp(f->src));
	snprintf(f->dst, sizeof(f->dst), "%s/restored", f->src);
	snprintf(f->archive, sizeof(f->archive), "%s/archive.lzb", f->src);
	char *data = xasprintf("%s/data", f->src);
	assert_int_equal(mkdir(data, 0700), 0);
	struct store_options opt = {.dir = data};
	struct store *st = NULL;
	assert_int_equal(store_open(&opt, &st), 0);
	add_message(st, f->id);
	char *key = xasprintf("%s/digest.key", data);
	write_file(key, "0123456789abcdef0123456789abcdef", 32);
	int fd = open(f->archive, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	struct backup_info info;
	char *err = NULL;
	assert_int_equal(backup_write(st, "sqlite", data, "m1", fd, &info, &err), 0);
	assert_null(err);
	close(fd);
	assert_true(info.database);
	assert_int_equal(info.files, 2);
	store_close(st);
	read_all(f->archive, &f->bytes, &f->len);
	assert_int_equal(info.bytes, f->len);
	/* Only the archive's own file is left besides the store: no temporary copy. */
	assert_int_equal(entries(data), 2); /* lazaret.db, digest.key (closed: no WAL) */
	free(key);
	free(data);
}

static void fixture_free(struct fixture *f)
{
	free(f->bytes);
	rm_tree(f->src);
}

static void test_roundtrip(void **state)
{
	(void)state;
	struct fixture f;
	fixture_make(&f);
	struct backup_info info;
	char *err = NULL;
	assert_int_equal(backup_restore(f.archive, f.dst, "sqlite", &info, &err), 0);
	assert_null(err);
	assert_true(info.database);
	assert_int_equal(info.files, 2);
	assert_string_equal(info.backend, "sqlite");
	assert_int_equal(entries(f.dst), 2);
	struct store_options opt = {.dir = f.dst};
	struct store *st = NULL;
	assert_int_equal(store_open(&opt, &st), 0);
	unsigned char *raw = NULL;
	size_t n = 0;
	assert_int_equal(store_get_raw(st, f.id, &raw, &n), 0);
	assert_int_equal(n, strlen(raw_text));
	assert_memory_equal(raw, raw_text, n);
	free(raw);
	store_close(st);
	unsigned char *key = NULL;
	size_t kn = 0;
	char *kp = xasprintf("%s/digest.key", f.dst);
	read_all(kp, &key, &kn);
	assert_int_equal(kn, 32);
	assert_memory_equal(key, "0123456789abcdef0123456789abcdef", 32);
	struct stat sb;
	assert_int_equal(stat(kp, &sb), 0);
	assert_int_equal(sb.st_mode & 077, 0);
	free(key);
	free(kp);

	/* Again into the now full folder: refused, nothing changed. */
	assert_int_equal(backup_restore(f.archive, f.dst, "sqlite", &info, &err),
			 -BACKUP_ERR_NOT_EMPTY);
	assert_non_null(err);
	free(err);
	/* Into a PostgreSQL configuration: refused. */
	char *other = xasprintf("%s/other", f.src);
	assert_int_equal(backup_restore(f.archive, other, "postgresql", &info, &err),
			 -BACKUP_ERR_MISMATCH);
	assert_non_null(strstr(err, "is a backup of a sqlite store"));
	free(err);
	assert_int_equal(entries(other), 0);
	free(other);
	fixture_free(&f);
}

/* The archive's first n bytes, with byte flip (if < n) xor-ed: refused, dst empty. */
static int try_damaged(struct fixture *f, size_t n, size_t flip, const char *what)
{
	unsigned char *b = xmalloc(f->len + 1);
	memcpy(b, f->bytes, n);
	if (flip < n)
		b[flip] ^= 0x41;
	char *p = xasprintf("%s/damaged.lzb", f->src);
	write_file(p, b, n);
	struct backup_info info;
	char *err = NULL;
	int rc = backup_restore(p, f->dst, "sqlite", &info, &err);
	if (rc >= 0)
		fail_msg("%s (n %zu, flip %zu): accepted", what, n, flip);
	if (err == NULL || entries(f->dst) != 0)
		fail_msg("%s (n %zu, flip %zu): no message or data_dir not empty", what, n, flip);
	free(err);
	free(p);
	free(b);
	return -rc;
}

static void test_damaged_archives(void **state)
{
	(void)state;
	struct fixture f;
	fixture_make(&f);
	assert_int_equal(try_damaged(&f, 0, SIZE_MAX, "empty"), BACKUP_ERR_FOREIGN);
	for (size_t n = 1; n < 64; n++) {
		int code = try_damaged(&f, n, SIZE_MAX, "cut in the head");
		if (code != BACKUP_ERR_TRUNCATED)
			fail_msg("cut at %zu: code %d", n, code);
	}
	for (size_t n = f.len - 40; n < f.len; n++) {
		int code = try_damaged(&f, n, SIZE_MAX, "cut in the end");
		if (code != BACKUP_ERR_TRUNCATED)
			fail_msg("cut at %zu: code %d", n, code);
	}
	assert_int_equal(try_damaged(&f, f.len / 2, SIZE_MAX, "half"), BACKUP_ERR_TRUNCATED);
	/* The magic itself: not ours. */
	for (size_t i = 0; i < 8; i++)
		assert_int_equal(try_damaged(&f, f.len, i, "magic"), BACKUP_ERR_FOREIGN);
	/* Any other byte: refused, whatever the reason it is found for. */
	for (size_t i = 8; i < f.len; i += (i < 300 || i > f.len - 300) ? 1 : 997)
		try_damaged(&f, f.len, i, "flipped");
	/* The data of the database member: the checksum finds it. */
	assert_int_equal(try_damaged(&f, f.len, f.len / 2, "flipped in the middle"),
			 BACKUP_ERR_CORRUPT);
	/* Anything after the checksum. */
	unsigned char *longer = xmalloc(f.len + 1);
	memcpy(longer, f.bytes, f.len);
	longer[f.len] = 0;
	free(f.bytes);
	f.bytes = longer;
	assert_int_equal(try_damaged(&f, f.len + 1, SIZE_MAX, "trailing byte"), BACKUP_ERR_CORRUPT);
	fixture_free(&f);
}

/* A header of our own (no members): what a crafted file may claim is shown tamed. */
static void test_crafted_header_text(void **state)
{
	(void)state;
	const char *h = "{\"format\":1,\"backend\":\"sqlite\",\"created_at\":1,"
			"\"lazaret_version\":\"\\u001b[2J9.9\",\"database\":false}";
	size_t hl = strlen(h), n = 0;
	unsigned char b[512];
	memcpy(b, "LZBACKUP\0\0\0\1", 12);
	b[12] = 0;
	b[13] = 0;
	b[14] = (unsigned char)(hl >> 8);
	b[15] = (unsigned char)hl;
	memcpy(b + 16, h, hl);
	n = 16 + hl;
	b[n++] = 'E';
	crypto_hash_sha256(b + n, b, n);
	n += 32;
	char dir[] = "/tmp/lazaret-test-backup-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char *p = xasprintf("%s/crafted.lzb", dir), *dst = xasprintf("%s/data", dir);
	write_file(p, b, n);
	struct backup_info info;
	char *err = NULL;
	assert_int_equal(backup_restore(p, dst, "sqlite", &info, &err), 0);
	assert_string_equal(info.version, "?[2J9.9");
	assert_false(info.database);
	assert_int_equal(info.files, 0);
	free(p);
	free(dst);
	rm_tree(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_member_names),
	    cmocka_unit_test(test_roundtrip),
	    cmocka_unit_test(test_damaged_archives),
	    cmocka_unit_test(test_crafted_header_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

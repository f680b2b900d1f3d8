/*
 * Tests for store/store_users: accounts keep their addresses in order and
 * lower-cased, a taken username is -EEXIST, deleting an account ends its
 * sessions; sessions are found by token hash, moved, purged; the audit log pages
 * newest first. Against a real store: SQLite in a temporary folder, or (with
 * LAZARET_TEST_PG_DSN, test_pg.h) a new PostgreSQL database per test.
 */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/store.h"
#include "test_pg.h"

struct fixture {
	char dir[64];
	char db[64]; /* PostgreSQL: this test's database */
	struct store *st;
};

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/lazaret-test-users-XXXXXX");
	if (mkdtemp(fx->dir) == NULL)
		return -1;
	struct store_options opt = {.dir = fx->dir};
	char *dsn = NULL;
	if (test_pg_dsn() != NULL) {
		if (test_pg_create(fx->db, sizeof(fx->db)) < 0)
			return -1;
		dsn = test_pg_dsn_of(fx->db);
		opt = (struct store_options){.backend = "postgresql", .dsn = dsn};
	}
	int rc = store_open(&opt, &fx->st);
	free(dsn);
	*state = fx;
	return rc == 0 ? 0 : -1;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	store_close(fx->st);
	nftw(fx->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	if (fx->db[0] != '\0')
		test_pg_drop(fx->db);
	free(fx);
	return 0;
}

static void test_accounts(void **state)
{
	struct fixture *fx = *state;
	char *addrs[] = {"Zed@Corp.test", "alice@corp.test", "b@corp.test"};
	struct store_user u = {.username = "alice",
			       .password_hash = "$argon2id$x",
			       .role = "enduser",
			       .created_at = 1000,
			       .addresses = addrs,
			       .naddresses = 3};
	assert_int_equal(store_user_add(fx->st, &u), 0);
	assert_int_equal(store_user_add(fx->st, &u), -EEXIST);
	struct store_user op = {.username = "bob", .role = "operator", .created_at = 2000};
	assert_int_equal(store_user_add(fx->st, &op), 0);
	struct store_user bad = {.username = "eve", .role = "root", .created_at = 1};
	assert_int_not_equal(store_user_add(fx->st, &bad), 0);

	struct store_user *got = NULL;
	assert_int_equal(store_user_get(fx->st, "alice", &got), 0);
	assert_string_equal(got->role, "enduser");
	assert_string_equal(got->source, "local");
	assert_string_equal(got->password_hash, "$argon2id$x");
	/* Order as given (the first is the primary address), lower-cased. */
	assert_int_equal(got->naddresses, 3);
	assert_string_equal(got->addresses[0], "zed@corp.test");
	assert_string_equal(got->addresses[1], "alice@corp.test");
	assert_string_equal(got->addresses[2], "b@corp.test");
	assert_int_equal(got->last_login_at, 0);
	store_user_free(got);
	assert_int_equal(store_user_get(fx->st, "nobody", &got), -ENOENT);
	assert_null(got);

	assert_int_equal(store_user_set_prefs(fx->st, "alice", "ja", NULL), 0);
	assert_int_equal(store_user_set_prefs(fx->st, "alice", NULL, "Asia/Tokyo"), 0);
	assert_int_equal(store_user_set_last_login(fx->st, "alice", 5000), 0);
	assert_int_equal(store_user_set_prefs(fx->st, "nobody", "ja", NULL), -ENOENT);
	struct store_user **all = NULL;
	size_t n = 0;
	assert_int_equal(store_user_list(fx->st, &all, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(all[0]->username, "alice");
	assert_string_equal(all[0]->language, "ja");
	assert_string_equal(all[0]->time_zone, "Asia/Tokyo");
	assert_int_equal(all[0]->last_login_at, 5000);
	assert_string_equal(all[1]->username, "bob");
	assert_null(all[1]->password_hash);
	assert_int_equal(all[1]->naddresses, 0);
	store_user_array_free(all, n);
	uint64_t count = 0;
	assert_int_equal(store_user_count(fx->st, &count), 0);
	assert_int_equal(count, 2);
}

static void test_sessions(void **state)
{
	struct fixture *fx = *state;
	struct store_user u = {.username = "carol", .role = "operator", .created_at = 1};
	assert_int_equal(store_user_add(fx->st, &u), 0);
	char *addrs[] = {"c@corp.test", "c2@corp.test"};
	struct store_session s = {.username = "carol",
				  .role = "operator",
				  .addresses = addrs,
				  .naddresses = 2,
				  .csrf_token = "csrf1",
				  .created_at = 100,
				  .expires_at = 200};
	assert_int_equal(store_session_add(fx->st, "hash1", &s), 0);
	assert_int_equal(store_session_add(fx->st, "hash1", &s), -EEXIST);
	struct store_session none = {.username = "x", .role = "enduser", .csrf_token = "c"};
	assert_int_equal(store_session_add(fx->st, "hash2", &none), 0);
	char *nl[] = {"a@b\nc@d"};
	struct store_session bad = s;
	bad.addresses = nl;
	bad.naddresses = 1;
	assert_int_equal(store_session_add(fx->st, "hash3", &bad), -EINVAL);

	struct store_session *got = NULL;
	assert_int_equal(store_session_get(fx->st, "hash1", &got), 0);
	assert_string_equal(got->username, "carol");
	assert_string_equal(got->csrf_token, "csrf1");
	assert_int_equal(got->naddresses, 2);
	assert_string_equal(got->addresses[1], "c2@corp.test");
	assert_int_equal(got->expires_at, 200);
	store_session_free(got);
	assert_int_equal(store_session_get(fx->st, "hash2", &got), 0);
	assert_int_equal(got->naddresses, 0);
	store_session_free(got);
	assert_int_equal(store_session_get(fx->st, "nope", &got), -ENOENT);

	assert_int_equal(store_session_touch(fx->st, "hash1", 900), 0);
	assert_int_equal(store_session_get(fx->st, "hash1", &got), 0);
	assert_int_equal(got->expires_at, 900);
	store_session_free(got);
	assert_int_equal(store_session_touch(fx->st, "nope", 900), -ENOENT);

	/* hash2 expired at 0; hash1 lives until 900. */
	uint64_t purged = 0;
	assert_int_equal(store_session_purge(fx->st, 500, 0, &purged), 0);
	assert_int_equal(purged, 1);
	assert_int_equal(store_session_get(fx->st, "hash2", &got), -ENOENT);
	/* Deleting the account ends its sessions. */
	assert_int_equal(store_user_delete(fx->st, "carol"), 0);
	assert_int_equal(store_session_get(fx->st, "hash1", &got), -ENOENT);
	assert_int_equal(store_user_delete(fx->st, "carol"), -ENOENT);
	assert_int_equal(store_session_delete(fx->st, "hash1"), -ENOENT);
}

static void test_audit_paging(void **state)
{
	struct fixture *fx = *state;
	for (int i = 0; i < 5; i++) {
		char target[16];
		snprintf(target, sizeof(target), "t%d", i);
		struct store_audit a = {.at = 1000 + i,
					.actor = "token",
					.action = "release",
					.target = target,
					.detail = i == 0 ? "{\"changed\":1}" : NULL,
					.peer = "127.0.0.1"};
		assert_int_equal(store_audit_add(fx->st, &a), 0);
	}
	struct store_audit bad = {.at = 1, .action = "x"};
	assert_int_equal(store_audit_add(fx->st, &bad), -EINVAL);
	struct store_audit **v = NULL;
	size_t n = 0;
	assert_int_equal(store_audit_list(fx->st, 2, 0, &v, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0]->target, "t4");
	assert_string_equal(v[1]->target, "t3");
	int64_t before = v[1]->seq;
	store_audit_array_free(v, n);
	assert_int_equal(store_audit_list(fx->st, 10, before, &v, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(v[0]->target, "t2");
	assert_string_equal(v[2]->target, "t0");
	assert_string_equal(v[2]->detail, "{\"changed\":1}");
	assert_null(v[1]->detail);
	assert_int_equal(v[2]->at, 1000);
	store_audit_array_free(v, n);
	assert_int_equal(store_audit_list(fx->st, 0, 0, &v, &n), -EINVAL);
	assert_int_equal(store_audit_list(fx->st, 1001, 0, &v, &n), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_accounts, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sessions, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_audit_paging, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

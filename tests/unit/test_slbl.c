/*
 * test_slbl — safelists/blocklists in the store (store_slbl_*): normalization and
 * deduplication, what entries are refused, the per-list limit, the change feed
 * and its versions (emptied lists included), reopening, and that the entry check
 * callers use (store_slbl_normalize) agrees with what a put accepts.
 * Each test works in its own temporary directory under /tmp, removed afterwards,
 * or (with LAZARET_TEST_PG_DSN, test_pg.h) in its own PostgreSQL database.
 */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/xalloc.h"
#include "api/api_slbl.h"
#include "store/store.h"
#include "test_pg.h"

static int setup(void **state)
{
	return test_store_setup(state, "slbl");
}

/* A char * copy of a NULL-terminated list (NULL stays NULL), *n its length. */
static char **copy_list(const char *const *v, size_t *n)
{
	for (*n = 0; v != NULL && v[*n] != NULL; (*n)++)
		;
	if (v == NULL)
		return NULL;
	char **c = calloc(*n + 1, sizeof(*c));
	assert_non_null(c);
	for (size_t i = 0; i < *n; i++)
		assert_non_null(c[i] = strdup(v[i]));
	return c;
}

static void free_list(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* Puts the NULL-terminated lists; returns the store's result, *version when not NULL. */
static int put(struct store *st, const char *rcpt, const char *const *safe,
	       const char *const *block, size_t max, int64_t *version)
{
	struct store_slbl l = {.recipient = strdup(rcpt)};
	assert_non_null(l.recipient);
	l.safelist = copy_list(safe, &l.nsafelist);
	l.blocklist = copy_list(block, &l.nblocklist);
	int rc = store_slbl_put(st, &l, max, version);
	free(l.recipient);
	free_list(l.safelist, l.nsafelist);
	free_list(l.blocklist, l.nblocklist);
	return rc;
}

static void assert_list(char **got, size_t n, const char *const *want)
{
	size_t nw = 0;
	while (want[nw] != NULL)
		nw++;
	assert_int_equal(n, nw);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(got[i], want[i]);
}

static void test_put_get_normalizes(void **state)
{
	struct test_store_fixture *fx = *state;
	static const char *const safe[] = {" Boss@Partner.EXAMPLE ", "partner.example",
					   "boss@partner.example", ".Sub.Example", NULL};
	static const char *const block[] = {"spam.example", "x@spam.example", "spam.example", NULL};
	int64_t v = 0;
	assert_int_equal(put(fx->st, "User@Corp.Example", safe, block, 100, &v), 0);
	assert_int_equal(v, 1);

	struct store_slbl *l = NULL;
	assert_int_equal(store_slbl_get(fx->st, "USER@corp.example", &l), 0);
	assert_string_equal(l->recipient, "user@corp.example");
	static const char *const want_safe[] = {"boss@partner.example", "partner.example",
						".sub.example", NULL};
	static const char *const want_block[] = {"spam.example", "x@spam.example", NULL};
	assert_list(l->safelist, l->nsafelist, want_safe);
	assert_list(l->blocklist, l->nblocklist, want_block);
	assert_int_equal(l->version, 1);
	store_slbl_free(l);

	/* A second put replaces both lists. */
	static const char *const safe2[] = {"only.example", NULL};
	assert_int_equal(put(fx->st, "user@corp.example", safe2, NULL, 100, &v), 0);
	assert_int_equal(v, 2);
	assert_int_equal(store_slbl_get(fx->st, "user@corp.example", &l), 0);
	static const char *const none[] = {NULL};
	assert_list(l->safelist, l->nsafelist, safe2);
	assert_list(l->blocklist, l->nblocklist, none);
	store_slbl_free(l);

	/* Unknown recipient: empty lists, version 0. */
	assert_int_equal(store_slbl_get(fx->st, "nobody@corp.example", &l), 0);
	assert_int_equal(l->nsafelist + l->nblocklist, 0);
	assert_int_equal(l->version, 0);
	store_slbl_free(l);
	assert_int_equal(store_slbl_get(fx->st, "not an address", &l), -EINVAL);
}

/* Entries: accepted (normalized form) or refused (NULL). */
static const struct {
	const char *in;
	const char *want;
} entry_cases[] = {
    {"a@x.com", "a@x.com"},
    {"A.B+tag@Mail.X.COM", "a.b+tag@mail.x.com"},
    {"x.com", "x.com"},
    {".x.com", ".x.com"},
    {".com", ".com"},
    {"postmaster@localhost", "postmaster@localhost"},
    {"o'brien@x.co.jp", "o'brien@x.co.jp"},
    {"a,b@x.com", "a,b@x.com"},
    {"\"quoted\"@x.com", "\"quoted\"@x.com"},
    {"\tx.com  ", "x.com"},
    {"user@\xe4\xbe\x8b\xe3\x81\x88.jp", "user@\xe4\xbe\x8b\xe3\x81\x88.jp"},
    {"my_host.x-y.com", "my_host.x-y.com"},
    {"localhost", NULL},
    {"", NULL},
    {"   ", NULL},
    {"a b@x.com", NULL},
    {"a@b@x.com", NULL},
    {"@x.com", NULL},
    {"a@", NULL},
    {"a@.x.com", NULL},
    {"x..com", NULL},
    {"x.com.", NULL},
    {"-x.com", NULL},
    {"x-.com", NULL},
    {"x.com\n", NULL},
    {"a@x.com\x01", NULL},
    {"a@[192.0.2.1]", NULL},
    {"x!.com", NULL},
    {".", NULL},
    {"..x.com", NULL},
};

static void test_entries(void **state)
{
	struct test_store_fixture *fx = *state;
	for (size_t i = 0; i < sizeof(entry_cases) / sizeof(entry_cases[0]); i++) {
		const char *const safe[] = {entry_cases[i].in, NULL};
		int rc = put(fx->st, "u@corp.example", safe, NULL, 100, NULL);
		char *api = NULL;
		int arc = store_slbl_normalize(entry_cases[i].in, false, &api);
		if (entry_cases[i].want == NULL) {
			if (rc != -EINVAL || arc != -EINVAL)
				fail_msg("case %zu (%s): store %d api %d, want refused", i,
					 entry_cases[i].in, rc, arc);
			continue;
		}
		if (rc != 0 || arc != 0)
			fail_msg("case %zu (%s): store %d api %d, want accepted", i,
				 entry_cases[i].in, rc, arc);
		assert_string_equal(api, entry_cases[i].want);
		free(api);
		struct store_slbl *l = NULL;
		assert_int_equal(store_slbl_get(fx->st, "u@corp.example", &l), 0);
		assert_int_equal(l->nsafelist, 1);
		assert_string_equal(l->safelist[0], entry_cases[i].want);
		store_slbl_free(l);
	}
	/* Length: 254 bytes pass, 255 do not. */
	char ok[255], too_long[256];
	memset(ok, 'a', sizeof(ok));
	memcpy(ok + 254 - 6, "@x.com", 7);
	memset(too_long, 'a', sizeof(too_long));
	memcpy(too_long + 255 - 6, "@x.com", 7);
	const char *const s1[] = {ok, NULL}, *const s2[] = {too_long, NULL};
	assert_int_equal(put(fx->st, "u@corp.example", s1, NULL, 100, NULL), 0);
	assert_int_equal(put(fx->st, "u@corp.example", s2, NULL, 100, NULL), -EINVAL);

	/* Recipients must be addresses. */
	static const char *const bad_rcpts[] = {"corp.example", ".corp.example", "", "a b@c.d"};
	for (size_t i = 0; i < sizeof(bad_rcpts) / sizeof(bad_rcpts[0]); i++) {
		assert_int_equal(put(fx->st, bad_rcpts[i], NULL, NULL, 100, NULL), -EINVAL);
		char *r = NULL;
		assert_int_equal(store_slbl_normalize(bad_rcpts[i], true, &r), -EINVAL);
	}
	/* A refused put changes nothing. */
	struct store_slbl *l = NULL;
	assert_int_equal(store_slbl_get(fx->st, "u@corp.example", &l), 0);
	assert_int_equal(l->nsafelist, 1);
	assert_string_equal(l->safelist[0], ok);
	store_slbl_free(l);
}

static void test_limits(void **state)
{
	struct test_store_fixture *fx = *state;
	char *names[502];
	const char *list[503];
	for (size_t i = 0; i < 502; i++) {
		names[i] = xasprintf("sender%zu@x.example", i);
		list[i] = names[i];
	}
	list[101] = NULL;
	int64_t v = -1;
	/* 101 entries with a limit of 100: refused, nothing stored, no version used. */
	assert_int_equal(put(fx->st, "u@corp.example", list, NULL, 100, &v), -E2BIG);
	assert_int_equal(v, -1);
	assert_int_equal(put(fx->st, "u@corp.example", NULL, list, 100, NULL), -E2BIG);
	/* Duplicates do not count. */
	const char *dup = list[100];
	list[100] = list[0];
	assert_int_equal(put(fx->st, "u@corp.example", list, list, 100, &v), 0);
	assert_int_equal(v, 1);
	list[100] = dup;
	list[101] = names[101];
	/* 500 with a limit of 500, in both lists. */
	list[500] = NULL;
	assert_int_equal(put(fx->st, "u@corp.example", list, list, 500, &v), 0);
	struct store_slbl *l = NULL;
	assert_int_equal(store_slbl_get(fx->st, "u@corp.example", &l), 0);
	assert_int_equal(l->nsafelist, 500);
	assert_int_equal(l->nblocklist, 500);
	assert_string_equal(l->safelist[499], "sender499@x.example");
	store_slbl_free(l);
	list[500] = names[500];
	list[501] = NULL;
	assert_int_equal(put(fx->st, "u@corp.example", list, NULL, 500, NULL), -E2BIG);
	for (size_t i = 0; i < 502; i++)
		free(names[i]);
}

static void test_changes(void **state)
{
	struct test_store_fixture *fx = *state;
	struct store_slbl **v = NULL;
	size_t n = 99;
	int64_t version = -1;
	assert_int_equal(store_slbl_changes(fx->st, 0, 0, &v, &n, &version), 0);
	assert_int_equal(n, 0);
	assert_int_equal(version, 0);
	store_slbl_array_free(v, n);

	static const char *const a[] = {"a.example", NULL}, *const b[] = {"b@b.example", NULL};
	int64_t va, vb, vc, va2;
	assert_int_equal(put(fx->st, "a@corp.example", a, NULL, 100, &va), 0);
	assert_int_equal(put(fx->st, "b@corp.example", NULL, b, 100, &vb), 0);
	assert_int_equal(put(fx->st, "c@corp.example", a, b, 100, &vc), 0);
	assert_true(va < vb && vb < vc);

	/* Everything, in version order. */
	assert_int_equal(store_slbl_changes(fx->st, 0, 0, &v, &n, &version), 0);
	assert_int_equal(n, 3);
	assert_int_equal(version, vc);
	assert_string_equal(v[0]->recipient, "a@corp.example");
	assert_string_equal(v[1]->recipient, "b@corp.example");
	assert_string_equal(v[2]->recipient, "c@corp.example");
	assert_list(v[1]->blocklist, v[1]->nblocklist, b);
	assert_int_equal(v[1]->nsafelist, 0);
	assert_int_equal(v[2]->version, vc);
	store_slbl_array_free(v, n);

	/* Only after vb; a limit cuts the page but the newest version is still told. */
	assert_int_equal(store_slbl_changes(fx->st, vb, 0, &v, &n, &version), 0);
	assert_int_equal(n, 1);
	assert_string_equal(v[0]->recipient, "c@corp.example");
	store_slbl_array_free(v, n);
	assert_int_equal(store_slbl_changes(fx->st, 0, 2, &v, &n, &version), 0);
	assert_int_equal(n, 2);
	assert_int_equal(version, vc);
	assert_int_equal(v[1]->version, vb);
	store_slbl_array_free(v, n);

	/* Emptying a's lists moves it to the end, with empty lists. */
	assert_int_equal(put(fx->st, "a@corp.example", NULL, NULL, 100, &va2), 0);
	assert_true(va2 > vc);
	assert_int_equal(store_slbl_changes(fx->st, vc, 0, &v, &n, &version), 0);
	assert_int_equal(n, 1);
	assert_int_equal(version, va2);
	assert_string_equal(v[0]->recipient, "a@corp.example");
	assert_int_equal(v[0]->nsafelist + v[0]->nblocklist, 0);
	store_slbl_array_free(v, n);

	/* Nothing after the newest. */
	assert_int_equal(store_slbl_changes(fx->st, va2, 0, &v, &n, &version), 0);
	assert_int_equal(n, 0);
	assert_int_equal(version, va2);
	store_slbl_array_free(v, n);
	assert_int_equal(store_slbl_changes(fx->st, -1, 0, &v, &n, &version), -EINVAL);
}

static void test_reopen_keeps_lists(void **state)
{
	struct test_store_fixture *fx = *state;
	static const char *const s[] = {"z.example", "a.example", "m@m.example", NULL};
	int64_t v;
	assert_int_equal(put(fx->st, "u@corp.example", s, s, 100, &v), 0);
	assert_int_equal(put(fx->st, "w@corp.example", s, NULL, 100, &v), 0);
	store_close(fx->st);
	fx->st = NULL;
	assert_int_equal(test_store_open(fx), 0);
	struct store_slbl *l = NULL;
	assert_int_equal(store_slbl_get(fx->st, "u@corp.example", &l), 0);
	assert_list(l->safelist, l->nsafelist, s); /* order kept, not sorted */
	assert_list(l->blocklist, l->nblocklist, s);
	store_slbl_free(l);
	/* The counter continues after reopening. */
	int64_t v2;
	assert_int_equal(put(fx->st, "x@corp.example", s, NULL, 100, &v2), 0);
	assert_int_equal(v2, v + 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_put_get_normalizes, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_entries, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_limits, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_changes, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_reopen_keeps_lists, setup, test_store_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Tests for store/store_users: accounts keep their addresses in order and
 * lower-cased, a taken username is -EEXIST, deleting an account ends its
 * sessions; sessions are found by token hash, moved, purged; the audit log pages
 * newest first; what the digests read and record (store_digest_*); the gateway
 * registry (store_gateway_*). Against a real store: SQLite in
 * a temporary folder, or (with LAZARET_TEST_PG_DSN, test_pg.h) a new PostgreSQL database per test.
 */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/ids.h"
#include "common/xalloc.h"
#include "store/store.h"
#include "test_pg.h"

static int setup(void **state)
{
	return test_store_setup(state, "users");
}

static void test_accounts(void **state)
{
	struct test_store_fixture *fx = *state;
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
	struct test_store_fixture *fx = *state;
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
	struct test_store_fixture *fx = *state;
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

/* ---- digests ---- */

static void digest_done(void *arg, int rc)
{
	atomic_store((atomic_int *)arg, rc == 0 ? 1 : -1);
}

/* Stores a message of quarantine q to rcpts (NULL-terminated); its id in id. */
static void digest_add(struct store *st, int64_t at, const char *q, const char *const *rcpts,
		       char id[37])
{
	struct store_new_message *m = xcalloc(1, sizeof(*m));
	ids_uuidv7(at, m->id);
	memcpy(id, m->id, 37);
	m->quarantine = xstrdup(q);
	m->received_at = at;
	m->sender = xstrdup("news@spam.test");
	while (rcpts[m->nrecipients] != NULL)
		m->nrecipients++;
	m->recipients = xcalloc(m->nrecipients, sizeof(char *));
	for (size_t i = 0; i < m->nrecipients; i++)
		m->recipients[i] = xstrdup(rcpts[i]);
	m->subject = xstrdup("Sale");
	m->has_score = true;
	m->score = 9.5;
	m->raw = (unsigned char *)xstrdup("Subject: Sale\r\n\r\nx\r\n");
	m->raw_len = strlen((char *)m->raw);
	atomic_int done = 0;
	assert_int_equal(store_submit_message(st, m, digest_done, &done), 0);
	while (atomic_load(&done) == 0)
		usleep(1000);
	assert_int_equal(atomic_load(&done), 1);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_digest_store(void **state)
{
	struct test_store_fixture *fx = *state;
	char *alice_addrs[] = {"Zed@Corp.test", "alice@corp.test"};
	struct store_user alice = {.username = "alice",
				   .role = "enduser",
				   .language = "en",
				   .created_at = 1,
				   .addresses = alice_addrs,
				   .naddresses = 2};
	char *bob_addrs[] = {"b@corp.test"};
	struct store_user bob = {.username = "bob",
				 .role = "operator",
				 .created_at = 1,
				 .addresses = bob_addrs,
				 .naddresses = 1};
	assert_int_equal(store_user_add(fx->st, &alice), 0);
	assert_int_equal(store_user_add(fx->st, &bob), 0);

	struct store_digest_user *u = NULL;
	assert_int_equal(store_digest_user_by_address(fx->st, "ALICE@corp.test", &u), 0);
	assert_string_equal(u->username, "alice");
	assert_string_equal(u->language, "en");
	assert_null(u->time_zone);
	assert_int_equal(u->naddresses, 2); /* sorted */
	assert_string_equal(u->addresses[0], "alice@corp.test");
	assert_string_equal(u->addresses[1], "zed@corp.test");
	store_digest_user_free(u);
	assert_int_equal(store_digest_user_by_name(fx->st, "alice", &u), 0);
	assert_int_equal(u->naddresses, 2);
	store_digest_user_free(u);
	/* only end users get digests */
	assert_int_equal(store_digest_user_by_address(fx->st, "b@corp.test", &u), -ENOENT);
	assert_int_equal(store_digest_user_by_name(fx->st, "bob", &u), -ENOENT);
	assert_int_equal(store_digest_user_by_name(fx->st, "nobody", &u), -ENOENT);
	assert_int_equal(store_digest_user_by_address(fx->st, "", &u), -EINVAL);

	int64_t max = -1;
	assert_int_equal(store_digest_max_seq(fx->st, &max), 0);
	assert_int_equal(max, 0);
	char m1[37], m2[37], m3[37], m4[37];
	digest_add(fx->st, 1000, "spam", (const char *[]){"Alice@Corp.test", "other@x.test", NULL},
		   m1);
	digest_add(fx->st, 2000, "spam", (const char *[]){"zed@corp.test", NULL}, m2);
	digest_add(fx->st, 3000, "policy1", (const char *[]){"alice@corp.test", NULL}, m3);
	digest_add(fx->st, 4000, "spam", (const char *[]){"alice@corp.test", NULL}, m4);
	assert_int_equal(store_digest_max_seq(fx->st, &max), 0);
	assert_true(max > 0);

	char **cand = NULL;
	size_t ncand = 0;
	assert_int_equal(store_digest_candidates(fx->st, "spam", 0, max, &cand, &ncand), 0);
	assert_int_equal(ncand, 3);
	qsort(cand, ncand, sizeof(char *), cmp_str);
	assert_string_equal(cand[0], "alice@corp.test");
	assert_string_equal(cand[1], "other@x.test");
	assert_string_equal(cand[2], "zed@corp.test");
	for (size_t i = 0; i < ncand; i++)
		free(cand[i]);
	free(cand);

	/* oldest first; the limit, and the total without it */
	struct store_digest_entry *e = NULL;
	size_t n = 0, total = 0;
	assert_int_equal(
	    store_digest_entries(fx->st, "spam", "ALICE@corp.test", 0, max, 1, &e, &n, &total), 0);
	assert_int_equal(n, 1);
	assert_int_equal(total, 2);
	assert_string_equal(e[0].id, m1);
	assert_string_equal(e[0].recipient, "Alice@Corp.test"); /* as in the envelope */
	assert_string_equal(e[0].sender, "news@spam.test");
	assert_string_equal(e[0].subject, "Sale");
	assert_true(e[0].has_score && e[0].score == 9.5);
	assert_int_equal(e[0].received_at, 1000);
	int64_t seq1 = e[0].seq;
	store_digest_entries_free(e, n);
	/* after m1's seq: m4 only */
	assert_int_equal(
	    store_digest_entries(fx->st, "spam", "alice@corp.test", seq1, max, 10, &e, &n, &total),
	    0);
	assert_int_equal(n, 1);
	assert_int_equal(total, 1);
	assert_string_equal(e[0].id, m4);
	assert_true(e[0].seq > seq1);
	store_digest_entries_free(e, n);
	/* a released recipient is no longer new mail */
	const char *rel[] = {"alice@corp.test"};
	assert_int_equal(store_release(fx->st, m1, rel, 1, 5000, NULL), 0);
	assert_int_equal(
	    store_digest_entries(fx->st, "spam", "alice@corp.test", 0, max, 10, &e, &n, &total), 0);
	assert_int_equal(n, 1);
	assert_string_equal(e[0].id, m4);
	store_digest_entries_free(e, n);
	assert_int_equal(
	    store_digest_entries(fx->st, "policy1", "alice@corp.test", 0, max, 10, &e, &n, NULL),
	    0);
	assert_int_equal(n, 1);
	assert_string_equal(e[0].id, m3);
	store_digest_entries_free(e, n);
	assert_int_equal(
	    store_digest_entries(fx->st, "spam", "nobody@corp.test", 0, max, 10, &e, &n, &total),
	    0);
	assert_int_equal(n, 0);
	assert_int_equal(total, 0);
	free(e);
	assert_int_equal(store_digest_entries(fx->st, "spam", "a@b", 0, max, 0, &e, &n, NULL),
			 -EINVAL);
	(void)m2;

	/* what was sent: an address's last_seq never goes down; "*" is set as given */
	int64_t last = 0, at = 0;
	assert_int_equal(store_digest_state_get(fx->st, "alice@corp.test", &last, &at), -ENOENT);
	const char *addrs[] = {"Alice@corp.test", "*"};
	assert_int_equal(store_digest_state_put(fx->st, addrs, 2, 5, 1000), 0);
	assert_int_equal(store_digest_state_get(fx->st, "alice@corp.test", &last, &at), 0);
	assert_int_equal(last, 5);
	assert_int_equal(at, 1000);
	assert_int_equal(store_digest_state_put(fx->st, addrs, 2, 3, 2000), 0);
	assert_int_equal(store_digest_state_get(fx->st, "ALICE@corp.test", &last, &at), 0);
	assert_int_equal(last, 5);
	assert_int_equal(at, 2000);
	assert_int_equal(store_digest_state_get(fx->st, "*", &last, NULL), 0);
	assert_int_equal(last, 3);
	assert_int_equal(store_digest_state_put(fx->st, addrs, 0, 9, 9), 0);

	/* single-use tokens */
	bool used = true;
	assert_int_equal(store_digest_token_used(fx->st, "n1", &used), 0);
	assert_false(used);
	assert_int_equal(store_digest_token_use(fx->st, "n1", 10, 20), 0);
	assert_int_equal(store_digest_token_use(fx->st, "n1", 11, 20), -EEXIST);
	assert_int_equal(store_digest_token_used(fx->st, "n1", &used), 0);
	assert_true(used);
	assert_int_equal(store_digest_token_use(fx->st, "", 10, 20), -EINVAL);
	/* a later use forgets nonces whose tokens expired */
	assert_int_equal(store_digest_token_use(fx->st, "n2", 100, 200), 0);
	assert_int_equal(store_digest_token_used(fx->st, "n1", &used), 0);
	assert_false(used);
	assert_int_equal(store_digest_token_used(fx->st, "n2", &used), 0);
	assert_true(used);
}

/* The gateway registry: add, the unique name (any case) and address, lookups,
 * touch, pending entries with their bound, replacing a pending entry, remove. */
static void test_gateways(void **state)
{
	struct test_store_fixture *fx = *state;
	struct store_gateway g = {.name = "gw1",
				  .address = "192.0.2.10",
				  .group = "tokyo",
				  .cluster = "east",
				  .token_hash = "hash-1",
				  .created_at = 1000};
	assert_int_equal(store_gateway_add(fx->st, &g), 0);
	/* the name in any case, the address in another spelling */
	struct store_gateway dup = g;
	dup.name = "GW1";
	dup.address = "192.0.2.11";
	dup.token_hash = "hash-x";
	assert_int_equal(store_gateway_add(fx->st, &dup), -EEXIST);
	dup.name = "gw2";
	dup.address = "::ffff:192.0.2.10";
	assert_int_equal(store_gateway_add(fx->st, &dup), -EADDRINUSE);
	dup.token_hash = "hash-1";
	dup.address = "192.0.2.12";
	assert_int_equal(store_gateway_add(fx->st, &dup), -EEXIST);
	/* bad fields */
	static char *const bad_names[] = {"", "a b", "gw/1", "gw\"", "é", NULL};
	for (char *const *b = bad_names; *b != NULL; b++) {
		dup.name = *b;
		assert_int_equal(store_gateway_add(fx->st, &dup), -EINVAL);
	}
	dup.name = "gw2";
	static char *const bad_addrs[] = {
	    "",	 "host.example", "192.0.2.0/24", "1.2.3", "fe80::1%eth0", " 192.0.2.1", "1.2.3.4.5",
	    NULL};
	for (char *const *b = bad_addrs; *b != NULL; b++) {
		dup.address = *b;
		assert_int_equal(store_gateway_add(fx->st, &dup), -EINVAL);
	}
	dup.address = "2001:DB8:0:0::1";
	dup.token_hash = NULL;
	assert_int_equal(store_gateway_add(fx->st, &dup), -EINVAL);
	dup.token_hash = "hash-2";
	dup.group = NULL;
	dup.cluster = NULL;
	dup.release_port = 2525;
	assert_int_equal(store_gateway_add(fx->st, &dup), 0);

	struct store_gateway *got = NULL;
	assert_int_equal(store_gateway_get(fx->st, "Gw1", &got), 0);
	assert_string_equal(got->name, "gw1");
	assert_int_equal(got->state, STORE_GATEWAY_REGISTERED);
	assert_string_equal(got->address, "192.0.2.10");
	assert_string_equal(got->group, "tokyo");
	assert_string_equal(got->cluster, "east");
	assert_int_equal(got->release_port, 25);
	assert_string_equal(got->token_hash, "hash-1");
	assert_int_equal(got->created_at, 1000);
	assert_int_equal(got->last_seen, 0);
	assert_null(got->version);
	store_gateway_free(got);
	assert_int_equal(store_gateway_get_by_address(fx->st, "2001:db8::1", &got), 0);
	assert_string_equal(got->name, "gw2");
	assert_string_equal(got->address, "2001:db8::1");
	assert_int_equal(got->release_port, 2525);
	assert_null(got->group);
	store_gateway_free(got);
	assert_int_equal(store_gateway_get_by_address(fx->st, "::ffff:192.0.2.10", &got), 0);
	assert_string_equal(got->name, "gw1");
	store_gateway_free(got);
	assert_int_equal(store_gateway_get_by_address(fx->st, "192.0.2.99", &got), -ENOENT);
	assert_int_equal(store_gateway_get_by_address(fx->st, "nonsense", &got), -EINVAL);
	assert_int_equal(store_gateway_get_by_token_hash(fx->st, "hash-2", &got), 0);
	assert_string_equal(got->name, "gw2");
	store_gateway_free(got);
	assert_int_equal(store_gateway_get_by_token_hash(fx->st, "hash-9", &got), -ENOENT);
	assert_null(got);

	assert_int_equal(store_gateway_touch(fx->st, "gw1", 5000, "0.1.0"), 0);
	assert_int_equal(store_gateway_touch(fx->st, "gw1", 4000, NULL), 0); /* never back */
	assert_int_equal(store_gateway_touch(fx->st, "nobody", 5000, NULL), -ENOENT);
	assert_int_equal(store_gateway_touch(fx->st, "gw1", 5000, "bad\nversion"), -EINVAL);
	assert_int_equal(store_gateway_get(fx->st, "gw1", &got), 0);
	assert_int_equal(got->last_seen, 5000);
	assert_string_equal(got->version, "0.1.0");
	store_gateway_free(got);

	/* pending: recorded, refreshed, bounded, never over a registered name */
	struct store_gateway p = {.name = "new1", .address = "198.51.100.1", .version = "0.1.0"};
	assert_int_equal(store_gateway_pending_put(fx->st, &p, 2, 7000), 0);
	p.group = "osaka";
	p.address = "198.51.100.2";
	assert_int_equal(store_gateway_pending_put(fx->st, &p, 2, 8000), 0);
	p.name = "GW1";
	assert_int_equal(store_gateway_pending_put(fx->st, &p, 2, 8000), -EEXIST);
	p.name = "new2";
	assert_int_equal(store_gateway_pending_put(fx->st, &p, 2, 8000), 0);
	p.name = "new3";
	assert_int_equal(store_gateway_pending_put(fx->st, &p, 2, 8000), -ENOSPC);
	p.name = "new2"; /* an existing one is refreshed at the bound */
	assert_int_equal(store_gateway_pending_put(fx->st, &p, 2, 9000), 0);
	assert_int_equal(store_gateway_get(fx->st, "new1", &got), 0);
	assert_int_equal(got->state, STORE_GATEWAY_PENDING);
	assert_string_equal(got->address, "198.51.100.2");
	assert_string_equal(got->group, "osaka");
	assert_null(got->token_hash);
	assert_int_equal(got->created_at, 7000);
	assert_int_equal(got->last_seen, 8000);
	store_gateway_free(got);
	/* a pending entry is neither found by address nor touched */
	assert_int_equal(store_gateway_get_by_address(fx->st, "198.51.100.2", &got), -ENOENT);
	assert_int_equal(store_gateway_touch(fx->st, "new1", 9000, NULL), -ENOENT);

	/* registering a pending name replaces the pending entry */
	struct store_gateway reg = {
	    .name = "NEW1", .address = "198.51.100.2", .token_hash = "hash-3", .created_at = 10000};
	assert_int_equal(store_gateway_add(fx->st, &reg), 0);
	struct store_gateway **all = NULL;
	size_t n = 0;
	assert_int_equal(store_gateway_list(fx->st, &all, &n), 0);
	assert_int_equal(n, 4);
	assert_string_equal(all[0]->name, "NEW1");
	assert_int_equal(all[0]->state, STORE_GATEWAY_REGISTERED);
	assert_null(all[0]->group);
	assert_int_equal(all[0]->created_at, 10000);
	assert_string_equal(all[1]->name, "gw1");
	assert_string_equal(all[2]->name, "gw2");
	assert_string_equal(all[3]->name, "new2");
	assert_int_equal(all[3]->state, STORE_GATEWAY_PENDING);
	assert_int_equal(all[3]->last_seen, 9000);
	store_gateway_array_free(all, n);

	assert_int_equal(store_gateway_remove(fx->st, "GW2"), 0);
	assert_int_equal(store_gateway_remove(fx->st, "gw2"), -ENOENT);
	assert_int_equal(store_gateway_remove(fx->st, "new2"), 0);
	assert_int_equal(store_gateway_remove(fx->st, "no/such"), -ENOENT);
	/* its address and token are free again */
	dup.name = "gw3";
	assert_int_equal(store_gateway_add(fx->st, &dup), 0);
	assert_int_equal(store_gateway_list(fx->st, &all, &n), 0);
	assert_int_equal(n, 3);
	store_gateway_array_free(all, n);
}

/* Levels: put, list, replace, unset, remove; the central bits of a gateway. */
static void test_levels(void **state)
{
	struct test_store_fixture *fx = *state;
	struct store_level *v = NULL;
	size_t n = 0;
	assert_int_equal(store_level_list(fx->st, &v, &n), 0);
	assert_int_equal(n, 0);
	free(v);

	struct store_level c1 = {.level = "cluster",
				 .name = "c1",
				 .pvo = 1,
				 .reporting = STORE_LEVEL_UNSET,
				 .tracking = 0,
				 .filters = "f: if true then drop",
				 .updated_at = 100};
	struct store_level g1 = {.level = "group",
				 .name = "g1",
				 .pvo = STORE_LEVEL_UNSET,
				 .reporting = 1,
				 .tracking = STORE_LEVEL_UNSET,
				 .updated_at = 200};
	struct store_level m1 = {.level = "machine",
				 .name = "gw1",
				 .pvo = 0,
				 .reporting = STORE_LEVEL_UNSET,
				 .tracking = STORE_LEVEL_UNSET,
				 .updated_at = 300};
	assert_int_equal(store_level_put(fx->st, &m1), 0);
	assert_int_equal(store_level_put(fx->st, &g1), 0);
	assert_int_equal(store_level_put(fx->st, &c1), 0);
	struct store_level bad = m1;
	bad.level = "site";
	assert_int_equal(store_level_put(fx->st, &bad), -EINVAL);
	bad = m1;
	bad.name = "a b";
	assert_int_equal(store_level_put(fx->st, &bad), -EINVAL);
	bad = m1;
	bad.pvo = 2;
	assert_int_equal(store_level_put(fx->st, &bad), -EINVAL);

	assert_int_equal(store_level_list(fx->st, &v, &n), 0);
	assert_int_equal(n, 3);
	/* cluster, group, machine */
	assert_string_equal(v[0].level, "cluster");
	assert_string_equal(v[0].name, "c1");
	assert_int_equal(v[0].pvo, 1);
	assert_int_equal(v[0].reporting, STORE_LEVEL_UNSET);
	assert_int_equal(v[0].tracking, 0);
	assert_string_equal(v[0].filters, "f: if true then drop");
	assert_int_equal(v[0].updated_at, 100);
	assert_string_equal(v[1].level, "group");
	assert_int_equal(v[1].reporting, 1);
	assert_null(v[1].filters);
	assert_string_equal(v[2].level, "machine");
	assert_int_equal(v[2].pvo, 0);
	store_level_array_free(v, n);

	/* a name in another case is the same level; the row is replaced whole */
	struct store_level c1b = {.level = "cluster",
				  .name = "C1",
				  .pvo = STORE_LEVEL_UNSET,
				  .reporting = 1,
				  .tracking = STORE_LEVEL_UNSET,
				  .updated_at = 400};
	assert_int_equal(store_level_put(fx->st, &c1b), 0);
	/* nothing set: the row goes */
	struct store_level m1none = {.level = "machine",
				     .name = "gw1",
				     .pvo = STORE_LEVEL_UNSET,
				     .reporting = STORE_LEVEL_UNSET,
				     .tracking = STORE_LEVEL_UNSET,
				     .updated_at = 500};
	assert_int_equal(store_level_put(fx->st, &m1none), 0);
	assert_int_equal(store_level_list(fx->st, &v, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].level, "cluster");
	assert_int_equal(v[0].pvo, STORE_LEVEL_UNSET);
	assert_int_equal(v[0].reporting, 1);
	assert_null(v[0].filters);
	assert_int_equal(v[0].updated_at, 400);
	assert_string_equal(v[1].level, "group");
	store_level_array_free(v, n);

	/* what a gateway says it runs with */
	struct store_gateway g = {
	    .name = "gw1", .address = "192.0.2.1", .token_hash = "h1", .created_at = 1};
	assert_int_equal(store_gateway_add(fx->st, &g), 0);
	struct store_gateway *got = NULL;
	assert_int_equal(store_gateway_get(fx->st, "gw1", &got), 0);
	assert_int_equal(got->central, 0);
	store_gateway_free(got);
	assert_int_equal(
	    store_gateway_set_central(fx->st, "GW1", STORE_CENTRAL_PVO | STORE_CENTRAL_TRACKING),
	    0);
	assert_int_equal(store_gateway_set_central(fx->st, "nobody", STORE_CENTRAL_PVO), -ENOENT);
	assert_int_equal(store_gateway_get(fx->st, "gw1", &got), 0);
	assert_int_equal(got->central, STORE_CENTRAL_PVO | STORE_CENTRAL_TRACKING);
	store_gateway_free(got);

	/* the version of its outbreak rules: the first one said is only recorded */
	bool changed = true;
	assert_int_equal(store_gateway_outbreak_version(fx->st, "GW1", "2026120501", 1, &changed),
			 0);
	assert_false(changed);
	assert_int_equal(store_gateway_outbreak_version(fx->st, "gw1", "2026120501", 1, &changed),
			 0);
	assert_false(changed);
	/* another one is a change, once */
	assert_int_equal(store_gateway_outbreak_version(fx->st, "gw1", "2026120502", 1, &changed),
			 0);
	assert_true(changed);
	assert_int_equal(store_gateway_outbreak_version(fx->st, "Gw1", "2026120502", 1, &changed),
			 0);
	assert_false(changed);
	assert_int_equal(store_gateway_outbreak_version(fx->st, "nobody", "1", 1, &changed),
			 -ENOENT);
	assert_false(changed);
	assert_int_equal(store_gateway_outbreak_version(fx->st, "gw1", "", 1, &changed), -EINVAL);
	assert_int_equal(store_gateway_outbreak_version(fx->st, "gw1", "a\nb", 1, &changed),
			 -EINVAL);
	assert_int_equal(store_gateway_outbreak_version(fx->st, "gw1", "2026120501", 1, &changed),
			 0);
	assert_true(changed);

	/* its group and cluster change; NULL is none */
	assert_int_equal(store_gateway_set_levels(fx->st, "Gw1", "g1", "c1"), 0);
	assert_int_equal(store_gateway_get(fx->st, "gw1", &got), 0);
	assert_string_equal(got->group, "g1");
	assert_string_equal(got->cluster, "c1");
	store_gateway_free(got);
	assert_int_equal(store_gateway_set_levels(fx->st, "gw1", NULL, "c2"), 0);
	assert_int_equal(store_gateway_get(fx->st, "gw1", &got), 0);
	assert_null(got->group);
	assert_string_equal(got->cluster, "c2");
	store_gateway_free(got);
	assert_int_equal(store_gateway_set_levels(fx->st, "gw1", "a b", NULL), -EINVAL);
	assert_int_equal(store_gateway_set_levels(fx->st, "nobody", "g1", NULL), -ENOENT);
}

static void test_gateway_address_canonical(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"127.0.0.1", "127.0.0.1"},
	    {"::1", "::1"},
	    {"0:0:0:0:0:0:0:1", "::1"},
	    {"2001:DB8::A", "2001:db8::a"},
	    {"::ffff:10.0.0.1", "10.0.0.1"},
	    {"::FFFF:a00:1", "10.0.0.1"},
	    {"010.0.0.1", NULL},
	    {"10.0.0.1 ", NULL},
	    {"localhost", NULL},
	    {"", NULL},
	    {"::1/128", NULL},
	    {"1:2:3:4:5:6:7:8:9", NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[STORE_GATEWAY_ADDRESS_MAX + 1];
		int rc = store_gateway_address_canonical(cases[i].in, out);
		if (cases[i].out == NULL) {
			assert_int_equal(rc, -EINVAL);
		} else {
			assert_int_equal(rc, 0);
			assert_string_equal(out, cases[i].out);
		}
	}
	assert_true(store_gateway_name_ok("gw-1.tokyo_a"));
	assert_false(store_gateway_name_ok(""));
	char long_name[STORE_GATEWAY_NAME_MAX + 2];
	memset(long_name, 'a', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	assert_false(store_gateway_name_ok(long_name));
	long_name[STORE_GATEWAY_NAME_MAX] = '\0';
	assert_true(store_gateway_name_ok(long_name));
	assert_true(store_gateway_version_ok("0.1.0 (debian)"));
	assert_false(store_gateway_version_ok("0.1\t"));
	assert_false(store_gateway_version_ok(""));
}

/*
 * Second factors: begun, confirmed once, a time step accepted once and only
 * forward, a recovery code consumed once, gone with the account.
 */
static void test_totp(void **state)
{
	struct test_store_fixture *fx = *state;
	struct store_user u = {.username = "tina", .role = "admin", .created_at = 1};
	assert_int_equal(store_user_add(fx->st, &u), 0);
	struct store_totp *t = NULL;
	assert_int_equal(store_totp_get(fx->st, "tina", &t), -ENOENT);
	assert_null(t);
	assert_int_equal(store_totp_begin(fx->st, "nobody", "sealed", 5), -ENOENT);
	assert_int_equal(store_totp_get(fx->st, "nobody", &t), -ENOENT);
	assert_int_equal(store_totp_begin(fx->st, "tina", "", 5), -EINVAL);
	assert_int_equal(store_totp_confirm(fx->st, "tina", 7, 10, NULL, 0), -ENOENT);
	assert_int_equal(store_totp_use_step(fx->st, "tina", 7), -ENOENT);

	assert_int_equal(store_totp_begin(fx->st, "tina", "sealed-1", 5), 0);
	/* begun again: the newer secret stands */
	assert_int_equal(store_totp_begin(fx->st, "tina", "sealed-2", 6), 0);
	assert_int_equal(store_totp_get(fx->st, "tina", &t), 0);
	assert_string_equal(t->secret, "sealed-2");
	assert_int_equal(t->created_at, 6);
	assert_int_equal(t->enrolled_at, 0);
	store_totp_free(t);
	/* not confirmed: no step, no recovery code is any good */
	assert_int_equal(store_totp_use_step(fx->st, "tina", 100), -ENOENT);

	const char *hashes[] = {"h1", "h2", "h3", "h2"};
	const char *eleven[11] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"};
	assert_int_equal(store_totp_confirm(fx->st, "tina", 100, 50, eleven, 11), -EINVAL);
	assert_int_equal(store_totp_confirm(fx->st, "tina", 100, 50, hashes, 4), 0);
	assert_int_equal(store_totp_confirm(fx->st, "tina", 100, 50, hashes, 4), -EEXIST);
	assert_int_equal(store_totp_begin(fx->st, "tina", "sealed-3", 60), -EEXIST);
	assert_int_equal(store_totp_get(fx->st, "tina", &t), 0);
	assert_string_equal(t->secret, "sealed-2");
	assert_int_equal(t->enrolled_at, 50);
	assert_int_equal(t->last_step, 100);
	assert_int_equal(t->recovery_left, 3); /* h2 once */
	store_totp_free(t);

	/* the confirming step was used; earlier ones are never good again */
	assert_int_equal(store_totp_use_step(fx->st, "tina", 100), -EALREADY);
	assert_int_equal(store_totp_use_step(fx->st, "tina", 99), -EALREADY);
	assert_int_equal(store_totp_use_step(fx->st, "tina", 101), 0);
	assert_int_equal(store_totp_use_step(fx->st, "tina", 101), -EALREADY);
	assert_int_equal(store_totp_use_step(fx->st, "tina", 103), 0);
	assert_int_equal(store_totp_use_step(fx->st, "tina", 102), -EALREADY);

	assert_int_equal(store_totp_use_recovery(fx->st, "tina", "h9", 70), -ENOENT);
	assert_int_equal(store_totp_use_recovery(fx->st, "tina", "h1", 70), 0);
	assert_int_equal(store_totp_use_recovery(fx->st, "tina", "h1", 71), -ENOENT);
	assert_int_equal(store_totp_use_recovery(fx->st, "other", "h2", 71), -ENOENT);
	assert_int_equal(store_totp_get(fx->st, "tina", &t), 0);
	assert_int_equal(t->recovery_left, 2);
	assert_int_equal(t->last_step, 103);
	store_totp_free(t);

	/* removed, then enrolled anew from scratch */
	assert_int_equal(store_totp_delete(fx->st, "tina"), 0);
	assert_int_equal(store_totp_delete(fx->st, "tina"), -ENOENT);
	assert_int_equal(store_totp_get(fx->st, "tina", &t), -ENOENT);
	assert_int_equal(store_totp_use_recovery(fx->st, "tina", "h2", 72), -ENOENT);
	assert_int_equal(store_totp_begin(fx->st, "tina", "sealed-4", 80), 0);
	assert_int_equal(store_totp_confirm(fx->st, "tina", 5, 81, hashes, 1), 0);
	assert_int_equal(store_totp_get(fx->st, "tina", &t), 0);
	assert_int_equal(t->recovery_left, 1);
	assert_int_equal(t->last_step, 5);
	store_totp_free(t);

	/* the account goes, and its second factor with it */
	assert_int_equal(store_user_delete(fx->st, "tina"), 0);
	assert_int_equal(store_totp_get(fx->st, "tina", &t), -ENOENT);
	assert_int_equal(store_user_add(fx->st, &u), 0);
	assert_int_equal(store_totp_get(fx->st, "tina", &t), -ENOENT);
	assert_int_equal(store_totp_use_recovery(fx->st, "tina", "h1", 90), -ENOENT);
}

/* Report schedules: add, list, a claim only one caller wins, delete; the archive. */
static void test_report_schedules(void **state)
{
	struct test_store_fixture *fx = *state;
	struct store_report_schedule s = {.report = "summary",
					  .period = "day",
					  .every = "daily",
					  .format = "pdf",
					  .recipients = "a@example.jp\nb@example.jp",
					  .created_by = "admin",
					  .created_at = 1000,
					  .next_run = 5000};
	int64_t id = 0, id2 = 0;
	assert_int_equal(store_report_schedule_add(fx->st, &s, &id), 0);
	assert_true(id > 0);
	struct store_report_schedule bad = s;
	bad.every = "hourly";
	assert_int_equal(store_report_schedule_add(fx->st, &bad, &id2), -EINVAL);
	bad = s;
	bad.format = "xls";
	assert_int_equal(store_report_schedule_add(fx->st, &bad, &id2), -EINVAL);
	bad = s;
	bad.report = "a'b";
	assert_int_equal(store_report_schedule_add(fx->st, &bad, &id2), -EINVAL);
	s.every = "monthly";
	s.format = "csv";
	assert_int_equal(store_report_schedule_add(fx->st, &s, &id2), 0);
	assert_true(id2 > id);

	struct store_report_schedule *v = NULL;
	size_t n = 0;
	assert_int_equal(store_report_schedule_list(fx->st, &v, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(v[0].id, id);
	assert_string_equal(v[0].every, "daily");
	assert_string_equal(v[0].format, "pdf");
	assert_string_equal(v[0].recipients, "a@example.jp\nb@example.jp");
	assert_string_equal(v[0].created_by, "admin");
	assert_int_equal(v[0].next_run, 5000);
	assert_int_equal(v[0].last_run, 0);
	assert_string_equal(v[1].every, "monthly");
	store_report_schedule_array_free(v, n);

	/* two managers find it due: the first claim wins, the second sees it moved */
	assert_int_equal(store_report_schedule_claim(fx->st, id, 5000, 8600, 5001), 0);
	assert_int_equal(store_report_schedule_claim(fx->st, id, 5000, 8600, 5002), -EALREADY);
	assert_int_equal(store_report_schedule_claim(fx->st, 9999, 5000, 8600, 5002), -ENOENT);
	assert_int_equal(store_report_schedule_list(fx->st, &v, &n), 0);
	assert_int_equal(v[0].next_run, 8600);
	assert_int_equal(v[0].last_run, 5001);
	store_report_schedule_array_free(v, n);

	assert_int_equal(store_report_schedule_delete(fx->st, id2), 0);
	assert_int_equal(store_report_schedule_delete(fx->st, id2), -ENOENT);
	assert_int_equal(store_report_schedule_list(fx->st, &v, &n), 0);
	assert_int_equal(n, 1);
	store_report_schedule_array_free(v, n);

	/* the archive keeps the document byte for byte, NULs included */
	unsigned char doc[] = {'%', 'P', 'D', 'F', 0, 1, 0xff, '\\', 'x', 0};
	struct store_report_archived a = {.schedule_id = id,
					  .report = "summary",
					  .period = "day",
					  .format = "pdf",
					  .from = 100,
					  .to = 200,
					  .created_at = 5001,
					  .data = doc,
					  .size = sizeof(doc)};
	int64_t aid = 0, aid2 = 0;
	assert_int_equal(store_report_archive_add(fx->st, &a, &aid), 0);
	a.format = "csv";
	a.schedule_id = 0;
	a.data = (unsigned char *)"x,y\n";
	a.size = 4;
	assert_int_equal(store_report_archive_add(fx->st, &a, &aid2), 0);
	a.format = "doc";
	assert_int_equal(store_report_archive_add(fx->st, &a, NULL), -EINVAL);

	struct store_report_archived *l = NULL;
	assert_int_equal(store_report_archive_list(fx->st, 10, &l, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(l[0].id, aid2); /* newest first */
	assert_string_equal(l[0].format, "csv");
	assert_int_equal(l[0].size, 4);
	assert_null(l[0].data);
	assert_int_equal(l[1].id, aid);
	assert_int_equal(l[1].schedule_id, id);
	assert_int_equal(l[1].from, 100);
	assert_int_equal(l[1].to, 200);
	assert_int_equal(l[1].size, sizeof(doc));
	store_report_archived_array_free(l, n);
	assert_int_equal(store_report_archive_list(fx->st, 1, &l, &n), 0);
	assert_int_equal(n, 1);
	store_report_archived_array_free(l, n);

	struct store_report_archived got;
	assert_int_equal(store_report_archive_get(fx->st, aid, &got), 0);
	assert_int_equal(got.size, sizeof(doc));
	assert_memory_equal(got.data, doc, sizeof(doc));
	assert_string_equal(got.report, "summary");
	store_report_archived_clear(&got);
	assert_int_equal(store_report_archive_get(fx->st, 9999, &got), -ENOENT);
	assert_int_equal(got.mail_tries, 0);

	/* an update: the send time and its zone, read back; a bad zone is refused */
	assert_int_equal(store_report_schedule_list(fx->st, &v, &n), 0);
	assert_string_equal(v[0].time_zone, "UTC");
	assert_int_equal(v[0].at_minute, 0);
	struct store_report_schedule u = v[0];
	u.at_minute = 18 * 60 + 30;
	u.time_zone = "Asia/Tokyo";
	u.recipients = "c@example.jp";
	u.next_run = 9000;
	assert_int_equal(store_report_schedule_update(fx->st, &u), 0);
	u.time_zone = "../etc/passwd";
	assert_int_equal(store_report_schedule_update(fx->st, &u), -EINVAL);
	u.time_zone = "UTC";
	u.at_minute = 1440;
	assert_int_equal(store_report_schedule_update(fx->st, &u), -EINVAL);
	u.at_minute = 0;
	u.id = 9999;
	assert_int_equal(store_report_schedule_update(fx->st, &u), -ENOENT);
	store_report_schedule_array_free(v, n);
	assert_int_equal(store_report_schedule_list(fx->st, &v, &n), 0);
	assert_int_equal(v[0].at_minute, 18 * 60 + 30);
	assert_string_equal(v[0].time_zone, "Asia/Tokyo");
	assert_string_equal(v[0].recipients, "c@example.jp");
	assert_int_equal(v[0].next_run, 9000);
	assert_int_equal(v[0].last_run, 5001);
	assert_string_equal(v[0].created_by, "admin");
	store_report_schedule_array_free(v, n);

	/* a copy's mail: due, claimed once, moved on; given up is not due */
	a.format = "pdf";
	a.created_at = 6000;
	a.mail_pending = "x@example.jp\ny@example.jp";
	a.mail_next = 7000;
	int64_t aid3 = 0;
	assert_int_equal(store_report_archive_add(fx->st, &a, &aid3), 0);
	assert_int_equal(store_report_archive_mail_due(fx->st, 6999, 10, &l, &n), 0);
	assert_int_equal(n, 0);
	free(l);
	assert_int_equal(store_report_archive_mail_due(fx->st, 7000, 10, &l, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(l[0].id, aid3);
	assert_string_equal(l[0].mail_pending, "x@example.jp\ny@example.jp");
	store_report_archived_array_free(l, n);
	assert_int_equal(store_report_archive_mail_set(fx->st, aid3, 7000, "y@example.jp", 1, 7060),
			 0);
	assert_int_equal(store_report_archive_mail_set(fx->st, aid3, 7000, "", 1, 0), -EALREADY);
	assert_int_equal(store_report_archive_mail_set(fx->st, 9999, 7000, "", 1, 0), -ENOENT);
	assert_int_equal(store_report_archive_get(fx->st, aid3, &got), 0);
	assert_string_equal(got.mail_pending, "y@example.jp");
	assert_int_equal(got.mail_tries, 1);
	assert_int_equal(got.mail_next, 7060);
	store_report_archived_clear(&got);
	assert_int_equal(store_report_archive_mail_set(fx->st, aid3, -1, "y@example.jp", 8, 0), 0);
	assert_int_equal(store_report_archive_mail_due(fx->st, 99999, 10, &l, &n), 0);
	assert_int_equal(n, 0);
	free(l);

	/* retention: copies made before 6000 go, in batches of one */
	size_t removed = 9;
	assert_int_equal(store_report_archive_purge(fx->st, 6000, 1, &removed), 0);
	assert_int_equal(removed, 1);
	assert_int_equal(store_report_archive_purge(fx->st, 6000, 1, &removed), 0);
	assert_int_equal(removed, 1);
	assert_int_equal(store_report_archive_purge(fx->st, 6000, 1, &removed), 0);
	assert_int_equal(removed, 0);
	assert_int_equal(store_report_archive_list(fx->st, 10, &l, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(l[0].id, aid3);
	store_report_archived_array_free(l, n);
	assert_int_equal(store_report_archive_purge(fx->st, 6000, 0, &removed), -EINVAL);
}

/* A gateway's old rollups: each key taken once, added to its rows only; done once. */
static void test_report_backfill(void **state)
{
	struct test_store_fixture *fx = *state;
	const int64_t hour = 1796083200000LL; /* 2026-12-01T00:00Z */
	/* the switch: every row's day and month ended before it */
	const int64_t cutoff = 1798761600000LL; /* 2027-01-01T00:00Z */
	struct store_rollup_in v[] = {
	    {.report = STORE_REPORT_OVERVIEW,
	     .gran = STORE_REPORT_HOUR,
	     .bucket = hour,
	     .key = "",
	     .c = {5, 4, 1, 0, 0, 0, 0}},
	    {.report = STORE_REPORT_INCOMING_DOMAINS,
	     .gran = STORE_REPORT_DAY,
	     .bucket = hour,
	     .key = "old.test",
	     .c = {5, 4, 1, 0, 0, 0, 0}},
	};
	size_t stored = 9;
	assert_int_equal(store_report_backfill(fx->st, "gw-a", cutoff, v, 2, false, 1000, &stored),
			 0);
	assert_int_equal(stored, 2);
	assert_int_equal(store_report_backfill(fx->st, "gw-a", cutoff, v, 2, false, 1000, &stored),
			 0);
	assert_int_equal(stored, 0);
	/* the same keys for another gateway are its own */
	assert_int_equal(store_report_backfill(fx->st, "gw-b", cutoff, v, 1, false, 1000, &stored),
			 0);
	assert_int_equal(stored, 1);
	struct store_rollup_in bad = v[0];
	bad.bucket = hour + 1;
	assert_int_equal(
	    store_report_backfill(fx->st, "gw-a", cutoff, &bad, 1, false, 1000, &stored), -EINVAL);
	/* a bucket that ends after the switch, or no switch */
	bad = v[1];
	bad.bucket = cutoff - 86400000LL;
	assert_int_equal(
	    store_report_backfill(fx->st, "gw-a", cutoff - 1, &bad, 1, false, 1000, &stored),
	    -EINVAL);
	assert_int_equal(store_report_backfill(fx->st, "gw-a", 0, v, 1, false, 1000, &stored),
			 -EINVAL);
	bad = v[0];
	bad.c[2] = -1;
	assert_int_equal(
	    store_report_backfill(fx->st, "gw-a", cutoff, &bad, 1, false, 1000, &stored), -EINVAL);

	struct store_report_query q = {.report = STORE_REPORT_OVERVIEW,
				       .gran = STORE_REPORT_HOUR,
				       .since = hour,
				       .until = hour + 3600000,
				       .gateway = "gw-a",
				       .limit = 10};
	struct store_report_row *rows = NULL;
	size_t n = 0;
	assert_int_equal(store_report_read(fx->st, &q, &rows, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(rows[0].c[STORE_REPORT_INCOMING], 5);
	assert_int_equal(rows[0].c[STORE_REPORT_SPAM], 1);
	store_report_rows_free(rows, n);
	q.gateway = NULL;
	assert_int_equal(store_report_read(fx->st, &q, &rows, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(rows[0].c[STORE_REPORT_INCOMING], 10);
	store_report_rows_free(rows, n);

	int64_t at = -1;
	assert_int_equal(store_report_backfill_state(fx->st, "gw-a", &at), 0);
	assert_int_equal(at, 0);
	assert_int_equal(
	    store_report_backfill(fx->st, "gw-a", cutoff, NULL, 0, true, 2000, &stored), 0);
	assert_int_equal(store_report_backfill_state(fx->st, "gw-a", &at), 0);
	assert_int_equal(at, 2000);
	struct store_rollup_in late = v[0];
	late.bucket = hour + 3600000;
	assert_int_equal(
	    store_report_backfill(fx->st, "gw-a", cutoff, &late, 1, false, 3000, &stored),
	    -EALREADY);
	assert_int_equal(stored, 0);
	assert_int_equal(
	    store_report_backfill(fx->st, "gw-a", cutoff, NULL, 0, true, 3000, &stored), -EALREADY);
	assert_int_equal(store_report_backfill_state(fx->st, "gw-b", &at), 0);
	assert_int_equal(at, 0);

	/* the export: summed over gateways, before a bucket, paged in order */
	struct store_rollup_row after = {0}, *e = NULL;
	size_t k = 0;
	assert_int_equal(
	    store_report_export(fx->st, STORE_REPORT_HOUR, hour + 3600000, &after, 10, &e, &k), 0);
	assert_int_equal(k, 1);
	assert_int_equal(e[0].report, STORE_REPORT_OVERVIEW);
	assert_int_equal(e[0].bucket, hour);
	assert_string_equal(e[0].key, "");
	assert_int_equal(e[0].c[STORE_REPORT_INCOMING], 10);
	store_rollup_rows_free(e, k);
	assert_int_equal(store_report_export(fx->st, STORE_REPORT_HOUR, hour, &after, 10, &e, &k),
			 0);
	assert_int_equal(k, 0);
	free(e);
	struct store_rollup_in more[] = {
	    {.report = STORE_REPORT_INCOMING_DOMAINS,
	     .gran = STORE_REPORT_DAY,
	     .bucket = hour,
	     .key = "a.test",
	     .c = {1}},
	    {.report = STORE_REPORT_INCOMING_DOMAINS,
	     .gran = STORE_REPORT_DAY,
	     .bucket = hour,
	     .key = "z.test",
	     .c = {2}},
	};
	assert_int_equal(
	    store_report_backfill(fx->st, "gw-c", cutoff, more, 2, false, 1000, &stored), 0);
	const char *want[] = {"a.test", "old.test", "z.test"};
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(store_report_export(fx->st, STORE_REPORT_DAY, hour + 86400000,
						     &after, 1, &e, &k),
				 0);
		assert_int_equal(k, 1);
		assert_string_equal(e[0].key, want[i]);
		free((char *)after.key);
		after = e[0];
		after.key = e[0].key;
		free(e);
	}
	assert_int_equal(
	    store_report_export(fx->st, STORE_REPORT_DAY, hour + 86400000, &after, 1, &e, &k), 0);
	assert_int_equal(k, 0);
	free(e);
	free((char *)after.key);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_accounts, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_sessions, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_totp, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_audit_paging, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_digest_store, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_gateways, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_levels, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_report_schedules, setup, test_store_teardown),
	    cmocka_unit_test_setup_teardown(test_report_backfill, setup, test_store_teardown),
	    cmocka_unit_test(test_gateway_address_canonical),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

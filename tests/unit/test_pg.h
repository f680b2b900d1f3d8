/*
 * test_pg — what the store tests need to run on PostgreSQL as well: the server to
 * use (LAZARET_TEST_PG_DSN, set by scripts/with-postgresql; meson runs those test
 * programs once with it and once without), and a new database per test.
 */
#ifndef LAZARET_TEST_PG_H
#define LAZARET_TEST_PG_H

#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/xalloc.h"

/* The server's DSN, or NULL: the run is on SQLite. */
static inline const char *test_pg_dsn(void)
{
	const char *dsn = getenv("LAZARET_TEST_PG_DSN");
	return dsn != NULL && dsn[0] != '\0' ? dsn : NULL;
}

/* Runs sql on the server's maintenance database (CREATE/DROP DATABASE); 0 or -1. */
static inline int test_pg_admin(const char *sql)
{
	PGconn *c = PQconnectdb(test_pg_dsn());
	int rc = -1;
	if (PQstatus(c) == CONNECTION_OK) {
		PGresult *r = PQexec(c, sql);
		rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;
		PQclear(r);
	}
	if (rc < 0)
		fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
	PQfinish(c);
	return rc;
}

/* Creates a new database, its name in db (at least 64 bytes). 0 or -1. */
static inline int test_pg_create(char *db, size_t size)
{
	static unsigned serial;
	snprintf(db, size, "lazaret_test_%d_%u", (int)getpid(), serial++);
	char *sql = xasprintf("CREATE DATABASE %s", db);
	int rc = test_pg_admin(sql);
	free(sql);
	return rc;
}

static inline void test_pg_drop(const char *db)
{
	char *sql = xasprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", db);
	test_pg_admin(sql);
	free(sql);
}

/* The DSN of database db (a new string). */
static inline char *test_pg_dsn_of(const char *db)
{
	return xasprintf("%s dbname=%s", test_pg_dsn(), db);
}

#ifdef LAZARET_STORE_H
#include <ftw.h>
#include <string.h>

/* One test's store: in a new directory, on PostgreSQL in a new database. */
struct test_store_fixture {
	char dir[64];
	char db[64]; /* PostgreSQL: this test's database ("" on SQLite) */
	struct store *st;
};

static inline int test_store_rm_entry(const char *path, const struct stat *sb, int flag,
				      struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* (Re)opens fx's store; on PostgreSQL its database is made the first time. 0 or -1. */
static inline int test_store_open(struct test_store_fixture *fx)
{
	struct store_options opt = {.dir = fx->dir};
	if (test_pg_dsn() == NULL)
		return store_open(&opt, &fx->st) == 0 ? 0 : -1;
	if (fx->db[0] == '\0' && test_pg_create(fx->db, sizeof(fx->db)) < 0)
		return -1;
	char *dsn = test_pg_dsn_of(fx->db);
	opt = (struct store_options){.backend = "postgresql", .dsn = dsn};
	int rc = store_open(&opt, &fx->st);
	free(dsn);
	return rc == 0 ? 0 : -1;
}

/* cmocka setup: a fixture for test program name (its directory
 * /tmp/lazaret-test-<name>-XXXXXX) with its store open, into *state. */
static inline int test_store_setup(void **state, const char *name)
{
	struct test_store_fixture *fx = xcalloc(1, sizeof(*fx));
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/lazaret-test-%s-XXXXXX", name);
	*state = fx;
	if (mkdtemp(fx->dir) == NULL)
		return -1;
	return test_store_open(fx);
}

/* cmocka teardown of test_store_setup: the store closed, its files and database gone. */
static inline int test_store_teardown(void **state)
{
	struct test_store_fixture *fx = *state;
	store_close(fx->st);
	nftw(fx->dir, test_store_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	if (fx->db[0] != '\0')
		test_pg_drop(fx->db);
	free(fx);
	return 0;
}
#endif

#endif

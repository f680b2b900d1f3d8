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

#endif

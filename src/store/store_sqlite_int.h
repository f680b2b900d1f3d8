/*
 * store_sqlite_int — what the SQLite backend's own files share: the connection,
 * cached statements and the writer-job mechanism. Only store_sqlite*.c include it;
 * everyone else goes through store.h.
 *
 * Rules for a backend file (store_slbl.c, store_users.c ...): its tables come from
 * the migrations list in store_sqlite.c (append only); every change runs as a
 * writer job (store_int_run_job: one transaction, committed before the caller
 * returns); reads take a reader connection and give it back.
 */
#ifndef LAZARET_STORE_SQLITE_INT_H
#define LAZARET_STORE_SQLITE_INT_H

#include <sqlite3.h>

struct store;
struct store_conn;

typedef int (*store_int_job_fn)(struct store *st, struct store_conn *c, void *arg);

sqlite3 *store_int_db(struct store_conn *c);
/* A prepared statement cached per connection; sql must be a string constant. */
sqlite3_stmt *store_int_stmt(struct store_conn *c, const char *sql);
/* Steps s to SQLITE_DONE and resets it: 0 or -EIO (logged with what). */
int store_int_step_done(struct store_conn *c, sqlite3_stmt *s, const char *what);
/*
 * Runs fn(st, conn, arg) on the writer thread in one transaction (committed when fn
 * returns >= 0, rolled back otherwise) and waits. fn's result, -EIO, -ESHUTDOWN.
 */
int store_int_run_job(struct store *st, store_int_job_fn fn, void *arg);
/* A read connection for this call (give it back with store_int_reader_put). */
int store_int_reader_get(struct store *st, struct store_conn **out);
void store_int_reader_put(struct store *st, struct store_conn *c);
/* What a read call returns for rc: -ETIMEDOUT when the thread's deadline cut it off. */
int store_int_read_result(int rc);
/* A new copy of a text column, or NULL for SQL NULL. */
char *store_int_col_dup(sqlite3_stmt *s, int col);
void store_int_log_sqlite(const char *what, sqlite3 *db);

#endif

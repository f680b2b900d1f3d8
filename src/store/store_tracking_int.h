/*
 * store_tracking_int — what store_tracking.c hands a backend for a tracking
 * search: the SQL, its values and the page size, built once for both backends so
 * that they answer the same query alike; and the keys a backend returns.
 */
#ifndef LAZARET_STORE_TRACKING_INT_H
#define LAZARET_STORE_TRACKING_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* STORE_TRACK_SESSION_EVENTS as SQL text (the backends' fixed statements). */
#define STORE_TRACK_SESSION_EVENTS_SQL "16"

/* Values of one search at most (every filter, the cursor's three, the limit). */
#define STORE_TRACK_SQL_PARAMS 16

enum store_track_dialect {
	STORE_TRACK_SQLITE, /* ?N placeholders, LIKE (ASCII case folded) */
	STORE_TRACK_PG,	    /* $N placeholders, ILIKE */
};

/* One value: text (owned) or an integer. */
struct store_track_param {
	char *text; /* NULL: is_int */
	int64_t i;
	bool is_int;
};

struct store_track_sql {
	char *sql; /* SELECT gateway, msg_id, received_at ... (owned) */
	struct store_track_param v[STORE_TRACK_SQL_PARAMS];
	size_t n;
};

/* A tracked message's key as a search returns it. */
struct store_track_key {
	char *gateway;
	char *msg_id;
	int64_t received_at;
};

struct store_track_query;

/*
 * The SQL of q's page in dialect d into *out: the keys of at most limit + 1 rows
 * (the extra one says that a next page exists), after the cursor's row
 * (cur_gateway NULL: no cursor). q is checked already. Clear *out with
 * store_tracking_sql_clear. Exposed for the tests of the query plans.
 */
void store_tracking_sql_build(const struct store_track_query *q, size_t limit, int64_t cur_at,
			      const char *cur_gateway, const char *cur_msg_id,
			      enum store_track_dialect d, struct store_track_sql *out);
void store_tracking_sql_clear(struct store_track_sql *q);

#endif

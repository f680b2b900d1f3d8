/*
 * store_sqlite_tracking — the SQLite backend's tracking search: runs the
 * statement store_tracking.c built (store_tracking_int.h) on a reader
 * connection and returns the keys of its rows.
 *
 * Not for: building the SQL or loading the messages (store_tracking.c).
 */
#include "store/store.h"
#include "store/store_sqlite_int.h"
#include "store/store_tracking_int.h"

#include <errno.h>
#include <stdlib.h>

#include "common/xalloc.h"

int store_sqlite_tracked_search(struct store *st, const struct store_track_sql *q,
				struct store_track_key **out, size_t *n)
{
	struct store_conn *c = NULL;
	*out = NULL;
	*n = 0;
	int rc = store_int_reader_get(st, &c);
	if (rc < 0)
		return rc;
	/* Not cached: the statement's text differs with the filters given. */
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(store_int_db(c), q->sql, -1, &s, NULL) != SQLITE_OK) {
		store_int_log_sqlite("tracked_search", store_int_db(c));
		store_int_reader_put(st, c);
		return -EIO;
	}
	for (size_t i = 0; i < q->n; i++) {
		if (q->v[i].is_int)
			sqlite3_bind_int64(s, (int)i + 1, q->v[i].i);
		else
			sqlite3_bind_text(s, (int)i + 1, q->v[i].text, -1, SQLITE_STATIC);
	}
	struct store_track_key *v = NULL;
	size_t k = 0;
	int step;
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		v = xreallocarray(v, k + 1, sizeof(*v));
		v[k].gateway = store_int_col_dup(s, 0);
		v[k].msg_id = store_int_col_dup(s, 1);
		v[k].received_at = sqlite3_column_int64(s, 2);
		k++;
	}
	if (step != SQLITE_DONE)
		store_int_log_sqlite("tracked_search", store_int_db(c));
	sqlite3_finalize(s);
	store_int_reader_put(st, c);
	if (step != SQLITE_DONE) {
		for (size_t i = 0; i < k; i++) {
			free(v[i].gateway);
			free(v[i].msg_id);
		}
		free(v);
		return store_int_read_result(-EIO);
	}
	*out = v;
	*n = k;
	return 0;
}

int store_sqlite_tracked_session_events(struct store *st, const char *gateway, const char *msg_id,
					int64_t from, int64_t to, struct store_event_row **out,
					size_t *n)
{
	struct store_conn *c = NULL;
	*out = NULL;
	*n = 0;
	int rc = store_int_reader_get(st, &c);
	if (rc < 0)
		return rc;
	/* events_type_at answers; the details are JSON objects (checked at intake) */
	sqlite3_stmt *s = store_int_stmt(
	    c, "SELECT c.gateway, c.seq, c.at, c.type, c.msg_id, c.detail FROM events c,"
	       " (SELECT e.seq, json_extract(e.detail, '$.session') AS session FROM events e"
	       "  WHERE e.gateway = ?1 AND e.msg_id = ?2 AND e.type = 'received' LIMIT 1) r"
	       " WHERE c.type IN ('connection', 'rcpt_refused') AND c.at BETWEEN ?3 AND ?4"
	       " AND c.gateway = ?1 AND c.msg_id IS NULL"
	       " AND json_extract(c.detail, '$.session') = r.session"
	       " AND (c.type = 'connection' OR (c.seq < r.seq AND c.seq > coalesce("
	       "  (SELECT max(p.seq) FROM events p WHERE p.type = 'received'"
	       "   AND p.at BETWEEN ?3 AND ?4 AND p.gateway = ?1 AND p.seq < r.seq"
	       "   AND json_extract(p.detail, '$.session') = r.session), 0)))"
	       " ORDER BY c.at, c.seq LIMIT " STORE_TRACK_SESSION_EVENTS_SQL);
	if (s == NULL) {
		store_int_reader_put(st, c);
		return -EIO;
	}
	sqlite3_bind_text(s, 1, gateway, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, msg_id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 3, from);
	sqlite3_bind_int64(s, 4, to);
	return store_sqlite_event_rows(st, c, s, out, n);
}

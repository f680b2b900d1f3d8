/*
 * store_pg_tracking — the PostgreSQL backend's tracking search: runs the
 * statement store_tracking.c built (store_tracking_int.h) on a pooled
 * connection and returns the keys of its rows.
 *
 * Not for: building the SQL or loading the messages (store_tracking.c).
 */
#include "store/store.h"
#include "store/store_pg_int.h"
#include "store/store_tracking_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "common/xalloc.h"

int store_pg_tracked_search(struct store *st, const struct store_track_sql *q,
			    struct store_track_key **out, size_t *n)
{
	struct store_pg_params p = {0};
	PGresult *r = NULL;
	*out = NULL;
	*n = 0;
	for (size_t i = 0; i < q->n; i++) {
		if (q->v[i].is_int)
			store_pg_int(&p, q->v[i].i);
		else
			store_pg_text(&p, q->v[i].text);
	}
	int rc = store_pg_query(store_pg_of(st), "tracked_search", q->sql, &p, &r);
	if (rc < 0)
		return rc;
	size_t rows = (size_t)PQntuples(r);
	struct store_track_key *v = xcalloc(rows + 1, sizeof(*v));
	for (size_t k = 0; k < rows; k++) {
		v[k].gateway = store_pg_dup(r, (int)k, 0);
		v[k].msg_id = store_pg_dup(r, (int)k, 1);
		v[k].received_at = store_pg_i64(r, (int)k, 2);
	}
	PQclear(r);
	*out = v;
	*n = rows;
	return 0;
}

int store_pg_tracked_session_events(struct store *st, const char *gateway, const char *msg_id,
				    int64_t from, int64_t to, struct store_event_row **out,
				    size_t *n)
{
	struct store_pg_params p = {0};
	PGresult *r = NULL;
	*out = NULL;
	*n = 0;
	store_pg_text(&p, gateway);
	store_pg_text(&p, msg_id);
	store_pg_int(&p, from);
	store_pg_int(&p, to);
	/* events_type_at answers; the details are JSON objects (checked at intake) */
	int rc = store_pg_query(
	    store_pg_of(st), "tracked_session_events",
	    "SELECT c.gateway, c.seq, c.at, c.type, c.msg_id, c.detail FROM events c,"
	    " (SELECT e.seq, e.detail::jsonb ->> 'session' AS session FROM events e"
	    "  WHERE e.gateway = $1 AND e.msg_id = $2 AND e.type = 'received' LIMIT 1) r"
	    " WHERE c.type IN ('connection', 'rcpt_refused') AND c.at BETWEEN $3 AND $4"
	    " AND c.gateway = $1 AND c.msg_id IS NULL"
	    " AND (c.detail::jsonb ->> 'session') = r.session"
	    " AND (c.type = 'connection' OR (c.seq < r.seq AND c.seq > coalesce("
	    "  (SELECT max(p.seq) FROM events p WHERE p.type = 'received'"
	    "   AND p.at BETWEEN $3 AND $4 AND p.gateway = $1 AND p.seq < r.seq"
	    "   AND (p.detail::jsonb ->> 'session') = r.session), 0)))"
	    " ORDER BY c.at, c.seq LIMIT " STORE_TRACK_SESSION_EVENTS_SQL,
	    &p, &r);
	if (rc < 0)
		return rc;
	store_pg_event_rows(r, out, n);
	return 0;
}

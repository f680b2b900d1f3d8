/*
 * store_pg_events — the PostgreSQL backend's gateway events and tracked messages
 * (the tables of its tracking migration), with the semantics of
 * store_sqlite_events.c.
 *
 * A batch is one transaction. (gateway, seq) is unique by the writer, not by an
 * index (the events are partitioned by time, and a partitioned table's unique
 * key must hold the partition key): the transaction first takes a per-gateway
 * advisory lock, so that two managers sharing the database cannot both store a
 * replay, then inserts each event only when no row of that (gateway, seq)
 * exists. The primary key (gateway, seq, at) backs it for identical replays. An
 * event at or below the gateway's last seq (gateway_event_state) is skipped
 * without a look: retention may have purged it.
 *
 * Retention drops the tracking tables' whole days (as store_pg_partition.c does
 * the messages'), then deletes what is left before the cutoff (rows in the
 * DEFAULT partitions, the cutoff's own day) in small transactions.
 *
 * Not for: checking fields (store_events.c), partitions (store_pg_partition.c and
 * lazaret_tracking_partitions of the tracking migration).
 */
#include "store/store.h"
#include "store/store_pg_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/strbuf.h"
#include "common/unconst.h"
#include "common/xalloc.h"

/* The first key of the per-gateway event locks ("lazarete" >> 32). */
#define STORE_PG_EVENTS_LOCK "1818327666"

static int store_pg_events_put_list(PGconn *c, const char *del_sql, const char *ins_sql,
				    const char *gateway, const char *msg_id, const char *const *v,
				    size_t n)
{
	struct store_pg_params p = {0};
	store_pg_text(&p, msg_id);
	store_pg_text(&p, gateway);
	int rc = store_pg_do(c, "events_list_delete", del_sql, &p, NULL);
	store_pg_params_clear(&p);
	if (rc < 0 || n == 0)
		return rc;
	char **lc = xcalloc(n, sizeof(*lc));
	for (size_t i = 0; i < n; i++)
		lc[i] = store_pg_lc(v[i]);
	store_pg_text(&p, msg_id);
	store_pg_text(&p, gateway);
	store_pg_array(&p, v, n);
	store_pg_array(&p, (const char *const *)lc, n);
	rc = store_pg_do(c, "events_list_insert", ins_sql, &p, NULL);
	store_pg_params_clear(&p);
	for (size_t i = 0; i < n; i++)
		free(lc[i]);
	free(lc);
	return rc;
}

static int store_pg_events_track(PGconn *c, const char *gateway, const struct store_event *e)
{
	struct store_pg_params p = {0};
	store_pg_text(&p, gateway);
	store_pg_text(&p, e->msg_id);
	store_pg_int(&p, e->at);
	store_pg_text(&p, e->state);
	store_pg_int(&p, e->flags);
	int rc = store_pg_do(
	    c, "events_track",
	    "INSERT INTO tracked_messages (gateway, msg_id, received_at, last_state, flags,"
	    " updated_at) VALUES ($1, $2, $3, $4, $5, $3)"
	    " ON CONFLICT (msg_id, gateway) DO UPDATE SET"
	    " last_state = coalesce(excluded.last_state, tracked_messages.last_state),"
	    " flags = tracked_messages.flags | excluded.flags,"
	    " updated_at = greatest(tracked_messages.updated_at, excluded.updated_at)",
	    &p, NULL);
	store_pg_params_clear(&p);
	const struct store_event_message *m = e->message;
	if (rc < 0 || m == NULL)
		return rc;
	store_pg_text(&p, gateway);
	store_pg_text(&p, e->msg_id);
	store_pg_int(&p, e->at);
	store_pg_text(&p, m->sender);
	store_pg_owned(&p, store_pg_lc(m->sender));
	store_pg_text(&p, m->subject);
	store_pg_text(&p, m->message_id);
	store_pg_text(&p, m->client_ip);
	store_pg_int(&p, m->size);
	rc = store_pg_do(c, "events_track_fields",
			 "UPDATE tracked_messages SET received_at = $3, sender = $4,"
			 " sender_lc = $5, subject = $6, message_id = $7, client_ip = $8,"
			 " size = $9 WHERE gateway = $1 AND msg_id = $2",
			 &p, NULL);
	store_pg_params_clear(&p);
	if (rc == 0)
		rc = store_pg_events_put_list(
		    c, "DELETE FROM tracked_recipients WHERE msg_id = $1 AND gateway = $2",
		    "INSERT INTO tracked_recipients (msg_id, gateway, idx, address, address_lc)"
		    " SELECT $1, $2, (o - 1)::integer, a, l"
		    " FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS u(a, l, o)",
		    gateway, e->msg_id, m->recipients, m->nrecipients);
	if (rc == 0)
		rc = store_pg_events_put_list(
		    c, "DELETE FROM tracked_attachments WHERE msg_id = $1 AND gateway = $2",
		    "INSERT INTO tracked_attachments (msg_id, gateway, idx, name, name_lc)"
		    " SELECT $1, $2, (o - 1)::integer, a, l"
		    " FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS u(a, l, o)",
		    gateway, e->msg_id, m->attachments, m->nattachments);
	return rc;
}

struct store_pg_events_put_args {
	const char *gateway;
	const struct store_event *v;
	size_t n;
	int64_t backlog, now;
	bool own; /* numbered here, from stored_seq + 1 */
	uint64_t stored;
};

static int store_pg_events_put_tx(struct store_pg *st, PGconn *c, void *arg)
{
	struct store_pg_events_put_args *a = arg;
	struct store_pg_params p = {0};
	a->stored = 0;
	store_pg_text(&p, a->gateway);
	int rc = store_pg_do(c, "events_lock",
			     "SELECT pg_advisory_xact_lock(" STORE_PG_EVENTS_LOCK ", hashtext($1))",
			     &p, NULL);
	store_pg_params_clear(&p);
	if (rc < 0)
		return rc;
	store_pg_text(&p, a->gateway);
	PGresult *r =
	    store_pg_exec(c, "events_last_seq",
			  "SELECT last_seq FROM gateway_event_state WHERE gateway = $1", &p, false);
	store_pg_params_clear(&p);
	if (r == NULL)
		return -EIO;
	int64_t stored_seq = PQntuples(r) > 0 ? store_pg_i64(r, 0, 0) : 0;
	PQclear(r);
	int64_t last_seq = 0, last_at = 0;
	for (size_t i = 0; i < a->n; i++) {
		struct store_event own;
		const struct store_event *e = &a->v[i];
		if (a->own) {
			own = *e;
			own.seq = stored_seq + 1 + (int64_t)i;
			e = &own;
		} else if (e->seq <= stored_seq) {
			continue; /* stored before (maybe purged since): a replay */
		}
		last_seq = e->seq > last_seq ? e->seq : last_seq;
		last_at = e->at > last_at ? e->at : last_at;
		store_pg_text(&p, a->gateway);
		store_pg_int(&p, e->seq);
		store_pg_int(&p, e->at);
		store_pg_text(&p, e->type);
		store_pg_text(&p, e->msg_id);
		store_pg_text(&p, e->detail);
		uint64_t rows = 0;
		rc = store_pg_do(c, "events_insert",
				 "INSERT INTO events (gateway, seq, at, type, msg_id, detail)"
				 " SELECT $1, $2, $3, $4, $5, $6 WHERE NOT EXISTS"
				 " (SELECT 1 FROM events WHERE gateway = $1 AND seq = $2)"
				 " ON CONFLICT DO NOTHING",
				 &p, &rows);
		store_pg_params_clear(&p);
		if (rc < 0)
			return rc;
		if (rows == 0)
			continue; /* stored by an earlier push of the same batch */
		a->stored++;
		if (e->msg_id != NULL && (rc = store_pg_events_track(c, a->gateway, e)) < 0)
			return rc;
	}
	store_pg_text(&p, a->gateway);
	store_pg_int(&p, last_seq);
	store_pg_int(&p, last_at);
	store_pg_int(&p, a->backlog);
	store_pg_int(&p, (int64_t)a->stored);
	store_pg_int(&p, a->now);
	rc = store_pg_do(c, "events_state",
			 "INSERT INTO gateway_event_state (gateway, last_seq, last_event_at,"
			 " backlog, received, pushed_at) VALUES ($1, $2, $3, $4, $5, $6)"
			 " ON CONFLICT (gateway) DO UPDATE SET"
			 " last_seq = greatest(gateway_event_state.last_seq, excluded.last_seq),"
			 " last_event_at = greatest(gateway_event_state.last_event_at,"
			 " excluded.last_event_at),"
			 " backlog = excluded.backlog,"
			 " received = gateway_event_state.received + excluded.received,"
			 " pushed_at = excluded.pushed_at",
			 &p, NULL);
	store_pg_params_clear(&p);
	return rc;
}

int store_pg_events_put(struct store *st, const char *gateway, const struct store_event *v,
			size_t n, int64_t backlog, int64_t now, bool own, uint64_t *stored)
{
	struct store_pg_events_put_args a = {gateway, v, n, backlog, now, own, 0};
	int rc = store_pg_tx(store_pg_of(st), store_pg_events_put_tx, &a);
	if (rc >= 0 && stored != NULL)
		*stored = a.stored;
	return rc < 0 ? rc : 0;
}

int store_pg_event_states(struct store *st, struct store_event_state **out, size_t *n)
{
	PGresult *r = NULL;
	int rc = store_pg_query(store_pg_of(st), "event_states",
				"SELECT gateway, last_seq, last_event_at, backlog, received,"
				" pushed_at FROM gateway_event_state ORDER BY gateway",
				NULL, &r);
	if (rc < 0)
		return rc;
	size_t rows = (size_t)PQntuples(r);
	struct store_event_state *v = xcalloc(rows + 1, sizeof(*v));
	for (size_t k = 0; k < rows; k++) {
		v[k].gateway = store_pg_dup(r, (int)k, 0);
		v[k].last_seq = store_pg_i64(r, (int)k, 1);
		v[k].last_event_at = store_pg_i64(r, (int)k, 2);
		v[k].backlog = store_pg_i64(r, (int)k, 3);
		v[k].received = store_pg_i64(r, (int)k, 4);
		v[k].pushed_at = store_pg_i64(r, (int)k, 5);
	}
	PQclear(r);
	*out = v;
	*n = rows;
	return 0;
}

int store_pg_events_list(struct store *st, const char *gateway, const char *msg_id,
			 int64_t after_seq, size_t limit, struct store_event_row **out, size_t *n)
{
	struct store_pg_params p = {0};
	PGresult *r = NULL;
	store_pg_text(&p, gateway);
	store_pg_int(&p, after_seq);
	store_pg_int(&p, (int64_t)limit);
	store_pg_text(&p, msg_id);
	int rc = store_pg_query(store_pg_of(st), "events_list",
				"SELECT gateway, seq, at, type, msg_id, detail FROM events"
				" WHERE gateway = $1 AND seq > $2"
				" AND ($4::text IS NULL OR msg_id = $4)"
				" ORDER BY seq LIMIT $3",
				&p, &r);
	if (rc < 0)
		return rc;
	size_t rows = (size_t)PQntuples(r);
	struct store_event_row *v = xcalloc(rows + 1, sizeof(*v));
	for (size_t k = 0; k < rows; k++) {
		v[k].gateway = store_pg_dup(r, (int)k, 0);
		v[k].seq = store_pg_i64(r, (int)k, 1);
		v[k].at = store_pg_i64(r, (int)k, 2);
		v[k].type = store_pg_dup(r, (int)k, 3);
		v[k].msg_id = store_pg_dup(r, (int)k, 4);
		v[k].detail = store_pg_dup(r, (int)k, 5);
	}
	PQclear(r);
	*out = v;
	*n = rows;
	return 0;
}

/* The first column of sql's rows for (msg_id, gateway) into *v. */
static int store_pg_events_read_list(struct store *st, const char *sql, const char *gateway,
				     const char *msg_id, char ***v, size_t *n)
{
	struct store_pg_params p = {0};
	PGresult *r = NULL;
	store_pg_text(&p, msg_id);
	store_pg_text(&p, gateway);
	int rc = store_pg_query(store_pg_of(st), "tracked_list", sql, &p, &r);
	if (rc < 0)
		return rc;
	store_pg_collect(r, v, n);
	PQclear(r);
	return 0;
}

int store_pg_tracked_message_get(struct store *st, const char *gateway, const char *msg_id,
				 struct store_tracked_message **out)
{
	struct store_pg_params p = {0};
	PGresult *r = NULL;
	store_pg_text(&p, msg_id);
	store_pg_text(&p, gateway);
	int rc = store_pg_query(store_pg_of(st), "tracked_get",
				"SELECT gateway, msg_id, received_at, sender, subject, message_id,"
				" client_ip, size, last_state, flags, updated_at"
				" FROM tracked_messages WHERE msg_id = $1 AND gateway = $2",
				&p, &r);
	if (rc < 0)
		return rc;
	if (PQntuples(r) == 0) {
		PQclear(r);
		return -ENOENT;
	}
	struct store_tracked_message *m = xcalloc(1, sizeof(*m));
	m->gateway = store_pg_dup(r, 0, 0);
	m->msg_id = store_pg_dup(r, 0, 1);
	m->received_at = store_pg_i64(r, 0, 2);
	m->sender = store_pg_dup(r, 0, 3);
	m->subject = store_pg_dup(r, 0, 4);
	m->message_id = store_pg_dup(r, 0, 5);
	m->client_ip = store_pg_dup(r, 0, 6);
	m->size = store_pg_i64(r, 0, 7);
	m->last_state = store_pg_dup(r, 0, 8);
	m->flags = (unsigned)store_pg_i64(r, 0, 9);
	m->updated_at = store_pg_i64(r, 0, 10);
	PQclear(r);
	rc = store_pg_events_read_list(st,
				       "SELECT address FROM tracked_recipients"
				       " WHERE msg_id = $1 AND gateway = $2 ORDER BY idx",
				       gateway, msg_id, &m->recipients, &m->nrecipients);
	if (rc == 0)
		rc = store_pg_events_read_list(st,
					       "SELECT name FROM tracked_attachments"
					       " WHERE msg_id = $1 AND gateway = $2 ORDER BY idx",
					       gateway, msg_id, &m->attachments, &m->nattachments);
	if (rc < 0) {
		store_tracked_message_free(m);
		return rc;
	}
	*out = m;
	return 0;
}

/* --- retention ----------------------------------------------------------- */

/*
 * How long a day's drop waits for its tables' locks: ingest queues behind a
 * waiting ACCESS EXCLUSIVE request, so this is the longest it can be held up; a
 * day not had in time is tried again at the next run.
 */
#define STORE_PG_TRACKING_LOCK_TIMEOUT "1s"

/* The tracked_* tables, children of a message first. */
static const char *const store_pg_tracked_tables[] = {"tracked_recipients", "tracked_attachments",
						      "tracked_messages"};

struct store_pg_tracking_day {
	const char *parent; /* "events" or "tracked_messages" (with its lists) */
	const char *suffix; /* "p20261105" */
	uint64_t rows;
	bool dropped;
};

static int store_pg_tracking_drop_tx(struct store_pg *st, PGconn *c, void *arg)
{
	(void)st;
	struct store_pg_tracking_day *d = arg;
	bool events = strcmp(d->parent, "events") == 0;
	d->dropped = false;
	char *sql = xasprintf("SELECT count(*) FROM %s_%s", d->parent, d->suffix);
	PGresult *r = store_pg_exec(c, "tracking_day_count", sql, NULL, false);
	free(sql);
	if (r == NULL)
		return -EIO;
	d->rows = (uint64_t)store_pg_i64(r, 0, 0);
	PQclear(r);
	struct strbuf q = STRBUF_INIT;
	strbuf_puts(&q, "SET LOCAL lock_timeout = '" STORE_PG_TRACKING_LOCK_TIMEOUT "';");
	if (events) {
		strbuf_printf(&q,
			      "ALTER TABLE events DETACH PARTITION events_%1$s;"
			      " DROP TABLE events_%1$s;",
			      d->suffix);
	} else {
		strbuf_puts(&q, "LOCK TABLE ONLY tracked_messages, ONLY tracked_recipients,"
				" ONLY tracked_attachments IN ACCESS EXCLUSIVE MODE;");
		for (size_t i = 0; i < 3; i++)
			strbuf_printf(&q,
				      "ALTER TABLE %1$s DETACH PARTITION %1$s_%2$s;"
				      " DROP TABLE %1$s_%2$s;",
				      store_pg_tracked_tables[i], d->suffix);
	}
	int rc = store_pg_script(c, "tracking_day_drop", strbuf_str(&q));
	strbuf_free(&q);
	d->dropped = rc == 0;
	return rc;
}

int store_pg_tracking_drop_days(struct store *s, int64_t before, uint64_t *events,
				uint64_t *messages)
{
	struct store_pg *st = store_pg_of(s);
	*events = 0;
	*messages = 0;
	/* the days that ended at or before the cutoff, oldest first */
	struct store_pg_params p = {0};
	store_pg_int(&p, before);
	PGresult *r = NULL;
	int rc = store_pg_query(
	    st, "tracking_days_old",
	    "SELECT p.relname, substr(c.relname, length(p.relname) + 2)"
	    " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
	    " JOIN pg_class p ON p.oid = i.inhparent"
	    " WHERE p.relname IN ('events', 'tracked_messages')"
	    /* CASE: the name is checked before it is read as a date */
	    " AND CASE WHEN c.relname ~ ('^' || p.relname || '_p[0-9]{8}$')"
	    " THEN extract(epoch FROM to_date(right(c.relname, 8), 'YYYYMMDD'))::bigint * 1000"
	    " + 86400000 <= $1 ELSE false END ORDER BY right(c.relname, 8), p.relname",
	    &p, &r);
	store_pg_params_clear(&p);
	if (rc < 0)
		return rc;
	int n = PQntuples(r);
	for (int i = 0; i < n; i++) {
		char *parent = store_pg_dup(r, i, 0), *suffix = store_pg_dup(r, i, 1);
		struct store_pg_tracking_day d = {.parent = parent, .suffix = suffix};
		if (store_pg_tx(st, store_pg_tracking_drop_tx, &d) < 0 || !d.dropped) {
			log_info("store.partition_kept", "partition=%s_%s reason=\"locks not had\"",
				 parent, suffix);
		} else {
			log_info("store.partition_dropped", "partition=%s_%s rows=%llu", parent,
				 suffix, (unsigned long long)d.rows);
			if (strcmp(parent, "events") == 0)
				*events += d.rows;
			else
				*messages += d.rows;
		}
		free(parent);
		free(suffix);
	}
	PQclear(r);
	return 0;
}

struct store_pg_tracking_purge_args {
	int64_t before;
	size_t batch;
	uint64_t events, messages;
};

static int store_pg_tracking_purge_tx(struct store_pg *st, PGconn *c, void *arg)
{
	(void)st;
	struct store_pg_tracking_purge_args *a = arg;
	struct store_pg_params p = {0};
	store_pg_int(&p, a->before);
	store_pg_int(&p, (int64_t)a->batch);
	int rc = store_pg_do(c, "tracking_purge",
			     "DELETE FROM events WHERE (gateway, seq, at) IN"
			     " (SELECT gateway, seq, at FROM events WHERE at < $1 LIMIT $2)",
			     &p, &a->events);
	if (rc == 0) {
		PGresult *r = store_pg_exec(
		    c, "tracking_purge_msgs",
		    "WITH m AS (DELETE FROM tracked_messages WHERE (msg_id, gateway) IN"
		    " (SELECT msg_id, gateway FROM tracked_messages WHERE received_at < $1"
		    " LIMIT $2) RETURNING msg_id, gateway),"
		    " r AS (DELETE FROM tracked_recipients t USING m"
		    " WHERE t.msg_id = m.msg_id AND t.gateway = m.gateway),"
		    " x AS (DELETE FROM tracked_attachments t USING m"
		    " WHERE t.msg_id = m.msg_id AND t.gateway = m.gateway)"
		    " SELECT count(*) FROM m",
		    &p, false);
		if (r == NULL)
			rc = -EIO;
		else
			a->messages = (uint64_t)store_pg_i64(r, 0, 0);
		PQclear(r);
	}
	store_pg_params_clear(&p);
	return rc;
}

int store_pg_tracking_purge(struct store *st, int64_t before, size_t batch, uint64_t *events,
			    uint64_t *messages)
{
	struct store_pg_tracking_purge_args a = {before, batch, 0, 0};
	int rc = store_pg_tx(store_pg_of(st), store_pg_tracking_purge_tx, &a);
	if (rc < 0)
		return rc;
	*events = a.events;
	*messages = a.messages;
	return 0;
}

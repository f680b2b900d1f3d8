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
#include "store/store_backend.h"
#include "store/store_pg_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/strbuf.h"
#include "common/unconst.h"
#include "common/xalloc.h"

/* The first key of the per-gateway event locks ("lazarete" >> 32). */
#define STORE_PG_EVENTS_LOCK "1818327666"

/*
 * A batch's rows as columns: one statement writes them all (unnest of arrays),
 * so a batch of 500 events costs a handful of round trips, not thousands.
 * Numbers are kept as their text; owned strings are freed with the columns.
 */
#define STORE_PG_EVENTS_COLS 8

struct store_pg_events_cols {
	const char **col[STORE_PG_EVENTS_COLS];
	size_t n, cap;
	char **owned;
	size_t nowned, capowned;
};

static const char *store_pg_events_keep(struct store_pg_events_cols *c, char *s)
{
	if (c->nowned == c->capowned) {
		c->capowned = c->capowned ? 2 * c->capowned : 64;
		c->owned = xreallocarray(c->owned, c->capowned, sizeof(*c->owned));
	}
	return c->owned[c->nowned++] = s;
}

static const char *store_pg_events_num(struct store_pg_events_cols *c, int64_t v)
{
	return store_pg_events_keep(c, xasprintf("%lld", (long long)v));
}

/* Appends one row of ncol values (borrowed, or kept with store_pg_events_keep). */
static void store_pg_events_row(struct store_pg_events_cols *c, size_t ncol, ...)
{
	if (c->n == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 64;
		for (size_t k = 0; k < STORE_PG_EVENTS_COLS; k++)
			c->col[k] = xreallocarray(c->col[k], c->cap, sizeof(*c->col[k]));
	}
	va_list ap;
	va_start(ap, ncol);
	for (size_t k = 0; k < ncol; k++)
		c->col[k][c->n] = va_arg(ap, const char *);
	va_end(ap);
	c->n++;
}

static void store_pg_events_cols_free(struct store_pg_events_cols *c)
{
	for (size_t k = 0; k < STORE_PG_EVENTS_COLS; k++)
		free(c->col[k]);
	for (size_t i = 0; i < c->nowned; i++)
		free(c->owned[i]);
	free(c->owned);
	*c = (struct store_pg_events_cols){0};
}

/* Runs sql with $1 the gateway and $2.. the first ncol columns of c as arrays. */
static int store_pg_events_write(PGconn *pg, const char *what, const char *sql, const char *gateway,
				 const struct store_pg_events_cols *c, size_t ncol)
{
	if (c->n == 0)
		return 0;
	struct store_pg_params p = {0};
	store_pg_text(&p, gateway);
	for (size_t k = 0; k < ncol; k++)
		store_pg_array(&p, c->col[k], c->n);
	int rc = store_pg_do(pg, what, sql, &p, NULL);
	store_pg_params_clear(&p);
	return rc;
}

static int store_pg_i64_cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/*
 * The tracked messages of the stored events e[0..n) (seq order): per message one
 * upsert row (the first event's time as received_at of a new row, the last
 * state said, the flags of all, the newest time), the fields of its last
 * "received" event, and that event's recipients and attachments in place of
 * the ones stored, then the recipients of "recipients" events added at their
 * indexes.
 */
static int store_pg_events_track(PGconn *pg, const char *gateway,
				 const struct store_event *const *e, size_t n)
{
	struct store_pg_events_cols up = {0}, fields = {0}, rcpt = {0}, att = {0}, more = {0};
	/* the messages seen, in order, and for each its last "received" event */
	const char **ids = xcalloc(n + 1, sizeof(*ids));
	const struct store_event **recv = xcalloc(n + 1, sizeof(*recv));
	size_t nids = 0;
	for (size_t i = 0; i < n; i++) {
		if (e[i]->msg_id == NULL)
			continue;
		const struct store_event_recipients *x = e[i]->recipients;
		for (size_t j = 0; x != NULL && j < x->n; j++)
			store_pg_events_row(&more, 4, e[i]->msg_id,
					    store_pg_events_num(&more, x->first + (int64_t)j),
					    x->names[j],
					    store_pg_events_keep(&more, store_pg_lc(x->names[j])));
		size_t k = 0;
		while (k < nids && strcmp(ids[k], e[i]->msg_id) != 0)
			k++;
		if (k < nids)
			continue;
		ids[nids++] = e[i]->msg_id;
		int64_t first = e[i]->at, newest = e[i]->at;
		const char *state = NULL;
		unsigned flags = 0;
		for (size_t j = i; j < n; j++) {
			if (e[j]->msg_id == NULL || strcmp(e[j]->msg_id, e[i]->msg_id) != 0)
				continue;
			newest = e[j]->at > newest ? e[j]->at : newest;
			state = e[j]->state != NULL ? e[j]->state : state;
			flags |= e[j]->flags;
			if (e[j]->message != NULL)
				recv[k] = e[j];
		}
		store_pg_events_row(&up, 5, e[i]->msg_id, store_pg_events_num(&up, first), state,
				    store_pg_events_num(&up, flags),
				    store_pg_events_num(&up, newest));
	}
	/* one message's rows in one statement: at most 2 * n */
	for (size_t k = 0; k < nids; k++) {
		const struct store_event *r = recv[k];
		if (r == NULL)
			continue;
		const struct store_event_message *m = r->message;
		store_pg_events_row(
		    &fields, 8, r->msg_id, store_pg_events_num(&fields, r->at), m->sender,
		    store_pg_events_keep(&fields, store_pg_lc(m->sender)), m->subject,
		    m->message_id, m->client_ip, store_pg_events_num(&fields, m->size));
		for (size_t i = 0; i < m->nrecipients; i++)
			store_pg_events_row(
			    &rcpt, 4, r->msg_id, store_pg_events_num(&rcpt, (int64_t)i),
			    m->recipients[i],
			    store_pg_events_keep(&rcpt, store_pg_lc(m->recipients[i])));
		for (size_t i = 0; i < m->nattachments; i++)
			store_pg_events_row(
			    &att, 4, r->msg_id, store_pg_events_num(&att, (int64_t)i),
			    m->attachments[i],
			    store_pg_events_keep(&att, store_pg_lc(m->attachments[i])));
	}
	int rc = store_pg_events_write(
	    pg, "events_track",
	    "INSERT INTO tracked_messages (gateway, msg_id, received_at, last_state, flags,"
	    " updated_at) SELECT $1, m, a::bigint, s, f::integer, u::bigint"
	    " FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[])"
	    " AS x(m, a, s, f, u)"
	    " ON CONFLICT (msg_id, gateway) DO UPDATE SET"
	    " last_state = coalesce(excluded.last_state, tracked_messages.last_state),"
	    " flags = tracked_messages.flags | excluded.flags,"
	    " updated_at = greatest(tracked_messages.updated_at, excluded.updated_at)",
	    gateway, &up, 5);
	if (rc == 0)
		rc = store_pg_events_write(
		    pg, "events_track_fields",
		    "UPDATE tracked_messages t SET received_at = x.a::bigint, sender = x.s,"
		    " sender_lc = x.sl, subject = x.subj, message_id = x.mid, client_ip = x.ip,"
		    " size = x.z::bigint FROM unnest($2::text[], $3::text[], $4::text[],"
		    " $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])"
		    " AS x(m, a, s, sl, subj, mid, ip, z)"
		    " WHERE t.gateway = $1 AND t.msg_id = x.m",
		    gateway, &fields, 8);
	/* a message received again (a replayed spool) lists what it says now */
	if (rc == 0)
		rc = store_pg_events_write(pg, "events_recipients_delete",
					   "DELETE FROM tracked_recipients"
					   " WHERE gateway = $1 AND msg_id = ANY($2::text[])",
					   gateway, &fields, 1);
	if (rc == 0)
		rc = store_pg_events_write(
		    pg, "events_recipients_insert",
		    "INSERT INTO tracked_recipients (msg_id, gateway, idx, address, address_lc)"
		    " SELECT m, $1, i::integer, a, l"
		    " FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS x(m, i, a, l)",
		    gateway, &rcpt, 4);
	/* "recipients" events' after them: an index stored already (a replay) is kept */
	if (rc == 0)
		rc = store_pg_events_write(
		    pg, "events_recipients_more",
		    "INSERT INTO tracked_recipients (msg_id, gateway, idx, address, address_lc)"
		    " SELECT m, $1, i::integer, a, l"
		    " FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS x(m, i, a, l)"
		    " ON CONFLICT DO NOTHING",
		    gateway, &more, 4);
	if (rc == 0)
		rc = store_pg_events_write(pg, "events_attachments_delete",
					   "DELETE FROM tracked_attachments"
					   " WHERE gateway = $1 AND msg_id = ANY($2::text[])",
					   gateway, &fields, 1);
	if (rc == 0)
		rc = store_pg_events_write(
		    pg, "events_attachments_insert",
		    "INSERT INTO tracked_attachments (msg_id, gateway, idx, name, name_lc)"
		    " SELECT m, $1, i::integer, a, l"
		    " FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS x(m, i, a, l)",
		    gateway, &att, 4);
	store_pg_events_cols_free(&up);
	store_pg_events_cols_free(&fields);
	store_pg_events_cols_free(&rcpt);
	store_pg_events_cols_free(&att);
	store_pg_events_cols_free(&more);
	free(ids);
	free(recv);
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

/*
 * The events of a batch to store (in seq order: store_events_put sorts a
 * gateway's): the manager's own numbered on from stored_seq (into own[]); a
 * gateway's above stored_seq (at or below it: stored before, maybe purged
 * since: a replay), one of equal seqs (the first).
 */
static size_t store_pg_events_new(const struct store_pg_events_put_args *a, int64_t stored_seq,
				  struct store_event *own, const struct store_event **out)
{
	size_t n = 0;
	for (size_t i = 0; i < a->n; i++) {
		if (a->own) {
			own[i] = a->v[i];
			own[i].seq = stored_seq + 1 + (int64_t)i;
			out[n++] = &own[i];
		} else if (a->v[i].seq > stored_seq) {
			out[n++] = &a->v[i];
		}
	}
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (k == 0 || out[i]->seq != out[k - 1]->seq)
			out[k++] = out[i];
	return k;
}

static int store_pg_events_put_tx(struct store_pg *st, PGconn *c, void *arg)
{
	(void)st;
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
	struct store_event *own = a->own ? xcalloc(a->n, sizeof(*own)) : NULL;
	const struct store_event **ev = xcalloc(a->n + 1, sizeof(*ev));
	size_t n = store_pg_events_new(a, stored_seq, own, ev);
	int64_t last_seq = n > 0 ? ev[n - 1]->seq : 0, last_at = 0;
	struct store_pg_events_cols cols = {0};
	for (size_t i = 0; i < n; i++) {
		last_at = ev[i]->at > last_at ? ev[i]->at : last_at;
		store_pg_events_row(&cols, 5, store_pg_events_num(&cols, ev[i]->seq),
				    store_pg_events_num(&cols, ev[i]->at), ev[i]->type,
				    ev[i]->msg_id, ev[i]->detail);
	}
	/*
	 * Every seq here is above the gateway's last stored one, so none can be
	 * stored (the counters commit with the rows); the conflict clause keeps an
	 * identical row of a damaged counter from failing the batch, and RETURNING
	 * says which rows are new.
	 */
	const struct store_event **fresh = xcalloc(n + 1, sizeof(*fresh));
	size_t nfresh = 0;
	if (n > 0) {
		store_pg_text(&p, a->gateway);
		for (size_t k = 0; k < 5; k++)
			store_pg_array(&p, cols.col[k], cols.n);
		r = store_pg_exec(
		    c, "events_insert",
		    "INSERT INTO events (gateway, seq, at, type, msg_id, detail)"
		    " SELECT $1, s::bigint, a::bigint, t, m, d FROM unnest($2::text[],"
		    " $3::text[], $4::text[], $5::text[], $6::text[]) AS x(s, a, t, m, d)"
		    " ON CONFLICT DO NOTHING RETURNING seq",
		    &p, false);
		store_pg_params_clear(&p);
		if (r == NULL) {
			rc = -EIO;
		} else {
			/* RETURNING's order is not the input's: match seqs (both sorted) */
			int nr = PQntuples(r);
			int64_t *seqs = xcalloc((size_t)nr + 1, sizeof(*seqs));
			for (int k = 0; k < nr; k++)
				seqs[k] = store_pg_i64(r, k, 0);
			PQclear(r);
			qsort(seqs, (size_t)nr, sizeof(*seqs), store_pg_i64_cmp);
			for (size_t i = 0, k = 0; i < n && k < (size_t)nr; i++)
				if (ev[i]->seq == seqs[k]) {
					fresh[nfresh++] = ev[i];
					k++;
				}
			free(seqs);
		}
	}
	store_pg_events_cols_free(&cols);
	a->stored = nfresh;
	if (rc == 0 && nfresh > 0)
		rc = store_pg_events_track(c, a->gateway, fresh, nfresh);
	if (rc == 0 && nfresh > 0 && !a->own)
		rc = store_report_ingest(a->gateway, fresh, nfresh, store_pg_report_fetch,
					 store_pg_report_write, c);
	if (rc == 0 && nfresh > 0 && !a->own)
		rc = store_pg_capacity_write(c, a->gateway, fresh, nfresh);
	free(fresh);
	free(ev);
	free(own);
	if (rc < 0)
		return rc;
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

void store_pg_event_rows(PGresult *r, struct store_event_row **out, size_t *n)
{
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
				" AND ($4::text IS NULL OR (msg_id = $4 AND type <> 'recipients'))"
				" ORDER BY seq LIMIT $3",
				&p, &r);
	if (rc < 0)
		return rc;
	store_pg_event_rows(r, out, n);
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

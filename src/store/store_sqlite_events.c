/*
 * store_sqlite_events — the SQLite backend's gateway events and tracked messages
 * (the tables of its tracking migration), with the contract of store.h "gateway events
 * and message tracking".
 *
 * A batch is one writer job (one transaction): each event is inserted unless its
 * (gateway, seq) is there already (INSERT OR IGNORE on the primary key); only a
 * new event touches its tracked message, so a replayed batch changes nothing but
 * the gateway's push time and backlog. Events come in the gateway's seq order, so
 * the last event with a state sets the message's last_state. An event at or below
 * the gateway's last seq (gateway_event_state) is skipped too: retention may have
 * purged it, and a replay must not store it again. A "recipients" event adds
 * its names at their indexes, keeping an index stored already.
 *
 * Not for: checking fields (store_events.c does), reading the gateway's JSON.
 */
#include "store/store.h"
#include "store/store_backend.h"
#include "store/store_sqlite_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

/* An ASCII lower-case copy (addresses and names are searched without case). */
static char *store_events_lc(const char *s)
{
	char *o = xstrdup(s);
	for (char *p = o; *p != '\0'; p++) {
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	}
	return o;
}

static void store_events_bind_text(sqlite3_stmt *s, int i, const char *v)
{
	if (v == NULL)
		sqlite3_bind_null(s, i);
	else
		sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
}

static const char store_events_insert_sql[] =
    "INSERT OR IGNORE INTO events (gateway, seq, at, type, msg_id, detail)"
    " VALUES (?, ?, ?, ?, ?, ?)";
/* A message's tracked row; ?13: the batch holds its "received" event, whose
 * fields (?7..?12, and its time as received_at) replace the stored ones */
static const char store_events_track_sql[] =
    "INSERT INTO tracked_messages (gateway, msg_id, received_at, last_state, flags, updated_at,"
    " sender, sender_lc, subject, message_id, client_ip, size)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    " ON CONFLICT (gateway, msg_id) DO UPDATE SET"
    " last_state = coalesce(excluded.last_state, tracked_messages.last_state),"
    " flags = tracked_messages.flags | excluded.flags,"
    " updated_at = max(tracked_messages.updated_at, excluded.updated_at),"
    " received_at = iif(?13, excluded.received_at, tracked_messages.received_at),"
    " sender = iif(?13, excluded.sender, tracked_messages.sender),"
    " sender_lc = iif(?13, excluded.sender_lc, tracked_messages.sender_lc),"
    " subject = iif(?13, excluded.subject, tracked_messages.subject),"
    " message_id = iif(?13, excluded.message_id, tracked_messages.message_id),"
    " client_ip = iif(?13, excluded.client_ip, tracked_messages.client_ip),"
    " size = iif(?13, excluded.size, tracked_messages.size)";
static const char store_events_rcpt_del_sql[] =
    "DELETE FROM tracked_recipients WHERE gateway = ? AND msg_id = ?";
static const char store_events_rcpt_sql[] =
    "INSERT INTO tracked_recipients (gateway, msg_id, idx, address, address_lc)"
    " VALUES (?, ?, ?, ?, ?)";
/* a "recipients" event's: an index stored already (a replay) is kept */
static const char store_events_rcpt_more_sql[] =
    "INSERT INTO tracked_recipients (gateway, msg_id, idx, address, address_lc)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (gateway, msg_id, idx) DO NOTHING";
static const char store_events_att_del_sql[] =
    "DELETE FROM tracked_attachments WHERE gateway = ? AND msg_id = ?";
static const char store_events_att_sql[] =
    "INSERT INTO tracked_attachments (gateway, msg_id, idx, name, name_lc)"
    " VALUES (?, ?, ?, ?, ?)";
static const char store_events_last_seq_sql[] =
    "SELECT last_seq FROM gateway_event_state WHERE gateway = ?";
static const char store_events_state_sql[] =
    "INSERT INTO gateway_event_state (gateway, last_seq, last_event_at, backlog, received,"
    " pushed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
    " ON CONFLICT (gateway) DO UPDATE SET"
    " last_seq = max(gateway_event_state.last_seq, excluded.last_seq),"
    " last_event_at = max(gateway_event_state.last_event_at, excluded.last_event_at),"
    " backlog = excluded.backlog,"
    " received = gateway_event_state.received + excluded.received,"
    " pushed_at = excluded.pushed_at";

/* Inserts v[0..n) into a list table (recipients or attachments) of one message
 * at indexes first.. . */
static int store_events_add_list(struct store_conn *c, const char *ins_sql, const char *gateway,
				 const char *msg_id, int64_t first, const char *const *v, size_t n)
{
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		sqlite3_stmt *s = store_int_stmt(c, ins_sql);
		if (s == NULL)
			return -EIO;
		char *lc = store_events_lc(v[i]);
		store_events_bind_text(s, 1, gateway);
		store_events_bind_text(s, 2, msg_id);
		sqlite3_bind_int64(s, 3, (sqlite3_int64)(first + (int64_t)i));
		store_events_bind_text(s, 4, v[i]);
		store_events_bind_text(s, 5, lc);
		free(lc);
		rc = store_int_step_done(c, s, "events_list_insert");
	}
	return rc;
}

/* Replaces the rows of a list table (recipients or attachments) of one message. */
static int store_events_put_list(struct store_conn *c, const char *del_sql, const char *ins_sql,
				 const char *gateway, const char *msg_id, const char *const *v,
				 size_t n)
{
	sqlite3_stmt *s = store_int_stmt(c, del_sql);
	if (s == NULL)
		return -EIO;
	store_events_bind_text(s, 1, gateway);
	store_events_bind_text(s, 2, msg_id);
	int rc = store_int_step_done(c, s, "events_list_delete");
	if (rc == 0)
		rc = store_events_add_list(c, ins_sql, gateway, msg_id, 0, v, n);
	return rc;
}

/*
 * One message's tracked row from its newly stored events e[0..n) (seq order),
 * in one upsert: the first event's time as received_at of a new row, the last
 * state said, the flags of all, the newest time; with a "received" event among
 * them, the last one's fields, time and its recipients and attachments in place
 * of the ones stored. The same as an upsert an event and an update a "received"
 * event, with one statement a message (each index written once).
 */
static int store_events_track(struct store_conn *c, const char *gateway,
			      const struct store_event *const *e, size_t n)
{
	int64_t newest = e[0]->at;
	const char *state = NULL;
	unsigned flags = 0;
	const struct store_event *recv = NULL;
	for (size_t i = 0; i < n; i++) {
		newest = e[i]->at > newest ? e[i]->at : newest;
		state = e[i]->state != NULL ? e[i]->state : state;
		flags |= e[i]->flags;
		if (e[i]->message != NULL)
			recv = e[i];
	}
	const struct store_event_message *m = recv != NULL ? recv->message : NULL;
	sqlite3_stmt *s = store_int_stmt(c, store_events_track_sql);
	if (s == NULL)
		return -EIO;
	char *sender_lc = m != NULL ? store_events_lc(m->sender) : NULL;
	store_events_bind_text(s, 1, gateway);
	store_events_bind_text(s, 2, e[0]->msg_id);
	sqlite3_bind_int64(s, 3, recv != NULL ? recv->at : e[0]->at);
	store_events_bind_text(s, 4, state);
	sqlite3_bind_int64(s, 5, flags);
	sqlite3_bind_int64(s, 6, newest);
	store_events_bind_text(s, 7, m != NULL ? m->sender : NULL);
	store_events_bind_text(s, 8, sender_lc);
	store_events_bind_text(s, 9, m != NULL ? m->subject : NULL);
	store_events_bind_text(s, 10, m != NULL ? m->message_id : NULL);
	store_events_bind_text(s, 11, m != NULL ? m->client_ip : NULL);
	sqlite3_bind_int64(s, 12, m != NULL ? m->size : 0);
	sqlite3_bind_int(s, 13, m != NULL);
	free(sender_lc);
	int rc = store_int_step_done(c, s, "events_track");
	if (rc == 0 && m != NULL)
		rc = store_events_put_list(c, store_events_rcpt_del_sql, store_events_rcpt_sql,
					   gateway, recv->msg_id, m->recipients, m->nrecipients);
	if (rc == 0 && m != NULL)
		rc = store_events_put_list(c, store_events_att_del_sql, store_events_att_sql,
					   gateway, recv->msg_id, m->attachments, m->nattachments);
	/* the names a cut "received" list left out, at their indexes */
	for (size_t i = 0; rc == 0 && i < n; i++) {
		const struct store_event_recipients *r = e[i]->recipients;
		if (r != NULL)
			rc = store_events_add_list(c, store_events_rcpt_more_sql, gateway,
						   e[i]->msg_id, r->first, r->names, r->n);
	}
	return rc;
}

/* qsort order of tracked events: by message, then in seq order. */
static int store_events_by_message(const void *a, const void *b)
{
	const struct store_event *x = *(const struct store_event *const *)a,
				 *y = *(const struct store_event *const *)b;
	int c = strcmp(x->msg_id, y->msg_id);
	return c != 0 ? c : (x->seq > y->seq) - (x->seq < y->seq);
}

/* The tracked rows of the newly stored events e[0..n) that have a msg_id. */
static int store_events_track_all(struct store_conn *c, const char *gateway,
				  const struct store_event **e, size_t n)
{
	qsort(e, n, sizeof(*e), store_events_by_message);
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < n;) {
		size_t j = i + 1;
		while (j < n && strcmp(e[j]->msg_id, e[i]->msg_id) == 0)
			j++;
		rc = store_events_track(c, gateway, e + i, j - i);
		i = j;
	}
	return rc;
}

struct store_events_put_args {
	const char *gateway;
	const struct store_event *v;
	size_t n;
	int64_t backlog, now;
	bool own; /* numbered here, from stored_seq + 1 */
	uint64_t stored;
};

static int store_events_put_job(struct store *st, struct store_conn *c, void *arg)
{
	struct store_events_put_args *a = arg;
	int64_t last_seq = 0, last_at = 0, stored_seq = 0;
	a->stored = 0;
	sqlite3_stmt *s = store_int_stmt(c, store_events_last_seq_sql);
	if (s == NULL)
		return -EIO;
	store_events_bind_text(s, 1, a->gateway);
	int src = sqlite3_step(s);
	if (src == SQLITE_ROW)
		stored_seq = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (src != SQLITE_ROW && src != SQLITE_DONE)
		return -EIO;
	/* the gateway's new events, for the reporting rollups */
	const struct store_event **fresh = a->own ? NULL : xcalloc(a->n + 1, sizeof(*fresh));
	size_t nfresh = 0;
	/* the new events of a message, for its tracked row (own events numbered here
	 * are copies) */
	const struct store_event **tracked = xcalloc(a->n + 1, sizeof(*tracked));
	struct store_event *owned = a->own ? xcalloc(a->n + 1, sizeof(*owned)) : NULL;
	size_t ntracked = 0;
	int rc = 0;
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
		s = store_int_stmt(c, store_events_insert_sql);
		if (s == NULL) {
			rc = -EIO;
			break;
		}
		store_events_bind_text(s, 1, a->gateway);
		sqlite3_bind_int64(s, 2, e->seq);
		sqlite3_bind_int64(s, 3, e->at);
		store_events_bind_text(s, 4, e->type);
		store_events_bind_text(s, 5, e->msg_id);
		store_events_bind_text(s, 6, e->detail);
		rc = store_int_step_done(c, s, "events_insert");
		if (rc < 0)
			break;
		if (sqlite3_changes(store_int_db(c)) == 0)
			continue; /* stored by an earlier push of the same batch */
		a->stored++;
		if (fresh != NULL)
			fresh[nfresh++] = e;
		if (e->msg_id != NULL) {
			if (owned != NULL) {
				owned[ntracked] = *e;
				e = &owned[ntracked];
			}
			tracked[ntracked++] = e;
		}
		if (!a->own && e->capacity != NULL &&
		    (rc = store_sqlite_capacity_write(c, a->gateway, e->at, e->capacity)) < 0)
			break;
	}
	if (rc == 0 && ntracked > 0)
		rc = store_events_track_all(c, a->gateway, tracked, ntracked);
	if (rc == 0 && nfresh > 0)
		rc = store_report_ingest(a->gateway, fresh, nfresh, store_sqlite_report_fetch,
					 store_sqlite_report_write, c);
	free(fresh);
	free(tracked);
	free(owned);
	if (rc < 0)
		return rc;
	s = store_int_stmt(c, store_events_state_sql);
	if (s == NULL)
		return -EIO;
	store_events_bind_text(s, 1, a->gateway);
	sqlite3_bind_int64(s, 2, last_seq);
	sqlite3_bind_int64(s, 3, last_at);
	sqlite3_bind_int64(s, 4, a->backlog);
	sqlite3_bind_int64(s, 5, (sqlite3_int64)a->stored);
	sqlite3_bind_int64(s, 6, a->now);
	return store_int_step_done(c, s, "events_state");
}

int store_sqlite_events_put(struct store *st, const char *gateway, const struct store_event *v,
			    size_t n, int64_t backlog, int64_t now, bool own, uint64_t *stored)
{
	struct store_events_put_args a = {gateway, v, n, backlog, now, own, 0};
	int rc = store_int_run_job(st, store_events_put_job, &a);
	if (rc == 0 && stored != NULL)
		*stored = a.stored;
	return rc;
}

int store_sqlite_event_states(struct store *st, struct store_event_state **out, size_t *n)
{
	struct store_conn *c = NULL;
	int rc = store_int_reader_get(st, &c);
	if (rc < 0)
		return rc;
	sqlite3_stmt *s = store_int_stmt(
	    c, "SELECT gateway, last_seq, last_event_at, backlog, received, pushed_at"
	       " FROM gateway_event_state ORDER BY gateway");
	if (s == NULL) {
		store_int_reader_put(st, c);
		return -EIO;
	}
	struct store_event_state *v = NULL;
	size_t k = 0;
	int step;
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		v = xreallocarray(v, k + 1, sizeof(*v));
		v[k].gateway = store_int_col_dup(s, 0);
		v[k].last_seq = sqlite3_column_int64(s, 1);
		v[k].last_event_at = sqlite3_column_int64(s, 2);
		v[k].backlog = sqlite3_column_int64(s, 3);
		v[k].received = sqlite3_column_int64(s, 4);
		v[k].pushed_at = sqlite3_column_int64(s, 5);
		k++;
	}
	sqlite3_reset(s);
	store_int_reader_put(st, c);
	if (step != SQLITE_DONE) {
		store_event_states_free(v, k);
		return store_int_read_result(-EIO);
	}
	*out = v;
	*n = k;
	return 0;
}

int store_sqlite_event_rows_append(sqlite3_stmt *s, struct store_event_row **v, size_t *k)
{
	int step;
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		*v = xreallocarray(*v, *k + 1, sizeof(**v));
		struct store_event_row *r = &(*v)[(*k)++];
		r->gateway = store_int_col_dup(s, 0);
		r->seq = sqlite3_column_int64(s, 1);
		r->at = sqlite3_column_int64(s, 2);
		r->type = store_int_col_dup(s, 3);
		r->msg_id = store_int_col_dup(s, 4);
		r->detail = store_int_col_dup(s, 5);
	}
	sqlite3_reset(s);
	return step == SQLITE_DONE ? 0 : -EIO;
}

int store_sqlite_event_rows(struct store *st, struct store_conn *c, sqlite3_stmt *s,
			    struct store_event_row **out, size_t *n)
{
	struct store_event_row *v = NULL;
	size_t k = 0;
	int rc = store_sqlite_event_rows_append(s, &v, &k);
	store_int_reader_put(st, c);
	if (rc < 0) {
		store_event_rows_free(v, k);
		return store_int_read_result(rc);
	}
	*out = v;
	*n = k;
	return 0;
}

int store_sqlite_events_list(struct store *st, const char *gateway, const char *msg_id,
			     int64_t after_seq, size_t limit, struct store_event_row **out,
			     size_t *n)
{
	struct store_conn *c = NULL;
	int rc = store_int_reader_get(st, &c);
	if (rc < 0)
		return rc;
	sqlite3_stmt *s =
	    msg_id != NULL
		? store_int_stmt(c, "SELECT gateway, seq, at, type, msg_id, detail FROM events"
				    " WHERE gateway = ?1 AND msg_id = ?4 AND seq > ?2"
				    " AND type <> 'recipients'"
				    " ORDER BY seq LIMIT ?3")
		: store_int_stmt(c, "SELECT gateway, seq, at, type, msg_id, detail FROM events"
				    " WHERE gateway = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3");
	if (s == NULL) {
		store_int_reader_put(st, c);
		return -EIO;
	}
	store_events_bind_text(s, 1, gateway);
	sqlite3_bind_int64(s, 2, after_seq);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)limit);
	if (msg_id != NULL)
		store_events_bind_text(s, 4, msg_id);
	return store_sqlite_event_rows(st, c, s, out, n);
}

/* The first column of every row of sql for (gateway, msg_id) into *v. */
static int store_events_read_list(struct store_conn *c, const char *sql, const char *gateway,
				  const char *msg_id, char ***v, size_t *n)
{
	sqlite3_stmt *s = store_int_stmt(c, sql);
	if (s == NULL)
		return -EIO;
	store_events_bind_text(s, 1, gateway);
	store_events_bind_text(s, 2, msg_id);
	int step;
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		*v = xreallocarray(*v, *n + 1, sizeof(**v));
		(*v)[(*n)++] = store_int_col_dup(s, 0);
	}
	sqlite3_reset(s);
	return step == SQLITE_DONE ? 0 : -EIO;
}

int store_sqlite_tracked_message_get(struct store *st, const char *gateway, const char *msg_id,
				     struct store_tracked_message **out)
{
	struct store_conn *c = NULL;
	int rc = store_int_reader_get(st, &c);
	if (rc < 0)
		return rc;
	sqlite3_stmt *s = store_int_stmt(
	    c, "SELECT gateway, msg_id, received_at, sender, subject, message_id, client_ip, size,"
	       " last_state, flags, updated_at FROM tracked_messages"
	       " WHERE gateway = ? AND msg_id = ?");
	if (s == NULL) {
		store_int_reader_put(st, c);
		return -EIO;
	}
	store_events_bind_text(s, 1, gateway);
	store_events_bind_text(s, 2, msg_id);
	int step = sqlite3_step(s);
	struct store_tracked_message *m = NULL;
	if (step == SQLITE_ROW) {
		m = xcalloc(1, sizeof(*m));
		m->gateway = store_int_col_dup(s, 0);
		m->msg_id = store_int_col_dup(s, 1);
		m->received_at = sqlite3_column_int64(s, 2);
		m->sender = store_int_col_dup(s, 3);
		m->subject = store_int_col_dup(s, 4);
		m->message_id = store_int_col_dup(s, 5);
		m->client_ip = store_int_col_dup(s, 6);
		m->size = sqlite3_column_int64(s, 7);
		m->last_state = store_int_col_dup(s, 8);
		m->flags = (unsigned)sqlite3_column_int64(s, 9);
		m->updated_at = sqlite3_column_int64(s, 10);
	}
	sqlite3_reset(s);
	rc = step == SQLITE_ROW ? 0 : step == SQLITE_DONE ? -ENOENT : -EIO;
	if (rc == 0)
		rc = store_events_read_list(c,
					    "SELECT address FROM tracked_recipients"
					    " WHERE gateway = ? AND msg_id = ? ORDER BY idx",
					    gateway, msg_id, &m->recipients, &m->nrecipients);
	if (rc == 0)
		rc = store_events_read_list(c,
					    "SELECT name FROM tracked_attachments"
					    " WHERE gateway = ? AND msg_id = ? ORDER BY idx",
					    gateway, msg_id, &m->attachments, &m->nattachments);
	store_int_reader_put(st, c);
	if (rc < 0) {
		store_tracked_message_free(m);
		return rc == -ENOENT ? rc : store_int_read_result(rc);
	}
	*out = m;
	return 0;
}

/* --- retention ----------------------------------------------------------- */

static const char store_tracking_purge_events_sql[] =
    "DELETE FROM events WHERE id IN"
    " (SELECT id FROM events WHERE at < ?1 ORDER BY at LIMIT ?2)";
/* the same messages three times in one transaction: the lists first */
static const char store_tracking_purge_rcpts_sql[] =
    "DELETE FROM tracked_recipients WHERE (gateway, msg_id) IN"
    " (SELECT gateway, msg_id FROM tracked_messages WHERE received_at < ?1"
    " ORDER BY received_at LIMIT ?2)";
static const char store_tracking_purge_atts_sql[] =
    "DELETE FROM tracked_attachments WHERE (gateway, msg_id) IN"
    " (SELECT gateway, msg_id FROM tracked_messages WHERE received_at < ?1"
    " ORDER BY received_at LIMIT ?2)";
static const char store_tracking_purge_msgs_sql[] =
    "DELETE FROM tracked_messages WHERE (gateway, msg_id) IN"
    " (SELECT gateway, msg_id FROM tracked_messages WHERE received_at < ?1"
    " ORDER BY received_at LIMIT ?2)";

struct store_tracking_purge_args {
	int64_t before;
	size_t batch;
	uint64_t events, messages;
};

static int store_tracking_purge_step(struct store_conn *c, const char *sql, const char *what,
				     const struct store_tracking_purge_args *a, uint64_t *rows)
{
	sqlite3_stmt *s = store_int_stmt(c, sql);
	if (s == NULL)
		return -EIO;
	sqlite3_bind_int64(s, 1, a->before);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)a->batch);
	int rc = store_int_step_done(c, s, what);
	if (rc == 0 && rows != NULL)
		*rows = (uint64_t)sqlite3_changes(store_int_db(c));
	return rc;
}

static int store_tracking_purge_job(struct store *st, struct store_conn *c, void *arg)
{
	(void)st;
	struct store_tracking_purge_args *a = arg;
	int rc = store_tracking_purge_step(c, store_tracking_purge_events_sql, "tracking_purge", a,
					   &a->events);
	if (rc == 0)
		rc = store_tracking_purge_step(c, store_tracking_purge_rcpts_sql,
					       "tracking_purge_rcpts", a, NULL);
	if (rc == 0)
		rc = store_tracking_purge_step(c, store_tracking_purge_atts_sql,
					       "tracking_purge_atts", a, NULL);
	if (rc == 0)
		rc = store_tracking_purge_step(c, store_tracking_purge_msgs_sql,
					       "tracking_purge_msgs", a, &a->messages);
	return rc;
}

int store_sqlite_tracking_purge(struct store *st, int64_t before, size_t batch, uint64_t *events,
				uint64_t *messages)
{
	struct store_tracking_purge_args a = {before, batch, 0, 0};
	int rc = store_int_run_job(st, store_tracking_purge_job, &a);
	if (rc < 0)
		return rc;
	*events = a.events;
	*messages = a.messages;
	return 0;
}

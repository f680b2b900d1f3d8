/*
 * store_tracking — the backend-independent half of message tracking searches
 * (store.h "message tracking searches"): checking a query, reading and writing
 * the keyset cursor, building the one SQL statement both backends run (so that
 * they match the same rows), loading the matched messages, and merging a
 * message's story from the events of every tracked message that is the same
 * mail.
 *
 * The cursor is "<received_at>~<gateway>~<msg_id>" of the last row of a page:
 * gateway names never hold '~' (store_gateway_name_ok), msg_id is the rest.
 *
 * Not for: SQL execution (store_sqlite_tracking.c, store_pg_tracking.c), the
 * HTTP parameters (api_tracking.c).
 */
#include "store/store.h"
#include "store/store_backend.h"
#include "store/store_tracking_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/strbuf.h"
#include "common/xalloc.h"

_Static_assert(STORE_TRACK_SESSION_EVENTS == 16, "STORE_TRACK_SESSION_EVENTS_SQL says 16");

static const struct store_ops *store_tracking_ops(struct store *st)
{
	return ((const struct store_head *)(void *)st)->ops;
}

void store_tracked_messages_free(struct store_tracked_message **v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		store_tracked_message_free(v[i]);
	free(v);
}

static char *store_tracking_lc(const char *s)
{
	char *o = xstrdup(s);
	for (char *p = o; *p != '\0'; p++) {
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	}
	return o;
}

/* A cursor's fields; the strings point into the caller's copy buf. -EINVAL when bad. */
static int store_tracking_cursor_parse(char *buf, int64_t *at, const char **gateway,
				       const char **msg_id)
{
	char *t1 = strchr(buf, '~');
	if (t1 == NULL || t1 == buf)
		return -EINVAL;
	*t1 = '\0';
	char *t2 = strchr(t1 + 1, '~');
	if (t2 == NULL)
		return -EINVAL;
	*t2 = '\0';
	int64_t v = 0;
	for (const char *p = buf; *p != '\0'; p++) {
		if (*p < '0' || *p > '9' || v > (INT64_MAX - 9) / 10)
			return -EINVAL;
		v = v * 10 + (*p - '0');
	}
	if (!store_gateway_name_ok(t1 + 1) || !store_event_msg_id_ok(t2 + 1))
		return -EINVAL;
	*at = v;
	*gateway = t1 + 1;
	*msg_id = t2 + 1;
	return 0;
}

/* Appends the placeholder of a new text value (taken) to q's SQL. */
static void store_tracking_text(struct store_track_sql *q, struct strbuf *b,
				enum store_track_dialect d, char *v)
{
	if (q->n >= STORE_TRACK_SQL_PARAMS)
		panic("store_tracking: more than %d values", STORE_TRACK_SQL_PARAMS);
	q->v[q->n].text = v;
	q->n++;
	strbuf_printf(b, d == STORE_TRACK_PG ? "$%zu" : "?%zu", q->n);
}

static void store_tracking_int(struct store_track_sql *q, struct strbuf *b,
			       enum store_track_dialect d, int64_t v)
{
	if (q->n >= STORE_TRACK_SQL_PARAMS)
		panic("store_tracking: more than %d values", STORE_TRACK_SQL_PARAMS);
	q->v[q->n].i = v;
	q->v[q->n].is_int = true;
	q->n++;
	strbuf_printf(b, d == STORE_TRACK_PG ? "$%zu" : "?%zu", q->n);
	if (d == STORE_TRACK_PG)
		strbuf_puts(b, "::bigint");
}

/* A LIKE pattern matching s literally (\ escapes %, _ and itself), with pre/post. */
static char *store_tracking_like(const char *s, bool pre, bool post)
{
	struct strbuf b = {0};
	if (pre)
		strbuf_addc(&b, '%');
	for (const char *p = s; *p != '\0'; p++) {
		if (*p == '%' || *p == '_' || *p == '\\')
			strbuf_addc(&b, '\\');
		strbuf_addc(&b, *p);
	}
	if (post)
		strbuf_addc(&b, '%');
	return strbuf_take(&b);
}

void store_tracking_sql_clear(struct store_track_sql *q)
{
	free(q->sql);
	for (size_t i = 0; i < q->n; i++)
		free(q->v[i].text);
	memset(q, 0, sizeof(*q));
}

void store_tracking_sql_build(const struct store_track_query *q, size_t limit, int64_t cur_at,
			      const char *cur_gateway, const char *cur_msg_id,
			      enum store_track_dialect d, struct store_track_sql *out)
{
	struct strbuf b = {0};
	memset(out, 0, sizeof(*out));
	strbuf_puts(&b, "SELECT m.gateway, m.msg_id, m.received_at FROM tracked_messages m"
			" WHERE true");
	if (q->since != 0) {
		strbuf_puts(&b, " AND m.received_at >= ");
		store_tracking_int(out, &b, d, q->since);
	}
	if (q->until != 0) {
		strbuf_puts(&b, " AND m.received_at < ");
		store_tracking_int(out, &b, d, q->until);
	}
	if (q->sender != NULL) {
		strbuf_puts(&b, " AND m.sender_lc = ");
		store_tracking_text(out, &b, d, store_tracking_lc(q->sender));
	}
	if (q->recipient != NULL && q->recipient[0] == '@') {
		/* a whole domain: tracked_recipients_domain (migration 12) */
		strbuf_puts(&b, d == STORE_TRACK_PG
				    ? " AND (m.gateway, m.msg_id) IN (SELECT r.gateway, r.msg_id"
				      " FROM tracked_recipients r"
				      " WHERE substr(r.address_lc, strpos(r.address_lc, '@')) = "
				    : " AND (m.gateway, m.msg_id) IN (SELECT r.gateway, r.msg_id"
				      " FROM tracked_recipients r"
				      " WHERE substr(r.address_lc, instr(r.address_lc, '@')) = ");
		store_tracking_text(out, &b, d, store_tracking_lc(q->recipient));
		strbuf_puts(&b, ")");
	} else if (q->recipient != NULL) {
		/* tracked_recipients_address answers the inner query */
		strbuf_puts(&b, " AND (m.gateway, m.msg_id) IN (SELECT r.gateway, r.msg_id"
				" FROM tracked_recipients r WHERE r.address_lc = ");
		store_tracking_text(out, &b, d, store_tracking_lc(q->recipient));
		strbuf_puts(&b, ")");
	}
	if (q->subject != NULL) {
		/*
		 * SQLite: tracked_subject is COLLATE NOCASE, which answers "=" under
		 * NOCASE and a LIKE prefix (LIKE folds ASCII case like NOCASE does);
		 * "contains" reads the rows the other filters leave. PostgreSQL: the
		 * trigram index answers ILIKE in all three forms.
		 */
		bool pre = q->subject_op == STORE_TRACK_SUBJECT_CONTAINS;
		bool post = q->subject_op != STORE_TRACK_SUBJECT_IS;
		if (d == STORE_TRACK_SQLITE && q->subject_op == STORE_TRACK_SUBJECT_IS) {
			strbuf_puts(&b, " AND m.subject = ");
			store_tracking_text(out, &b, d, xstrdup(q->subject));
			strbuf_puts(&b, " COLLATE NOCASE");
		} else {
			strbuf_puts(&b, d == STORE_TRACK_PG ? " AND m.subject ILIKE "
							    : " AND m.subject LIKE ");
			store_tracking_text(out, &b, d, store_tracking_like(q->subject, pre, post));
			strbuf_puts(&b, " ESCAPE '\\'");
		}
	}
	if (q->message_id != NULL) {
		strbuf_puts(&b, " AND m.message_id = ");
		/* as a header gives it or as the gateway stores it (without <>) */
		const char *id = q->message_id;
		size_t len = strlen(id);
		if (len >= 2 && id[0] == '<' && id[len - 1] == '>')
			store_tracking_text(out, &b, d, xstrndup(id + 1, len - 2));
		else
			store_tracking_text(out, &b, d, xstrdup(id));
	}
	if (q->gateway != NULL) {
		strbuf_puts(&b, " AND m.gateway = ");
		store_tracking_text(out, &b, d, xstrdup(q->gateway));
	}
	if (q->client_ip != NULL) {
		strbuf_puts(&b, " AND m.client_ip = ");
		store_tracking_text(out, &b, d, xstrdup(q->client_ip));
	}
	if (q->attachment != NULL) {
		strbuf_puts(&b, " AND (m.gateway, m.msg_id) IN (SELECT a.gateway, a.msg_id"
				" FROM tracked_attachments a WHERE a.name_lc = ");
		store_tracking_text(out, &b, d, store_tracking_lc(q->attachment));
		strbuf_puts(&b, ")");
	}
	if (q->flags != 0) {
		strbuf_puts(&b, " AND (m.flags & ");
		store_tracking_int(out, &b, d, q->flags);
		strbuf_puts(&b, ") <> 0");
		/*
		 * Rare flags only: the partial index tracked_flagged (migration 12)
		 * answers, newest first. Both planners take a partial index only
		 * when the query holds its condition as written, with the literal.
		 */
		if ((q->flags & ~(unsigned)STORE_TRACK_RARE_FLAGS) == 0)
			strbuf_printf(&b, " AND (m.flags & %u) <> 0",
				      (unsigned)STORE_TRACK_RARE_FLAGS);
	}
	if (cur_gateway != NULL) {
		strbuf_puts(&b, " AND (m.received_at, m.gateway, m.msg_id) < (");
		store_tracking_int(out, &b, d, cur_at);
		strbuf_puts(&b, ", ");
		store_tracking_text(out, &b, d, xstrdup(cur_gateway));
		strbuf_puts(&b, ", ");
		store_tracking_text(out, &b, d, xstrdup(cur_msg_id));
		strbuf_puts(&b, ")");
	}
	strbuf_puts(&b, " ORDER BY m.received_at DESC, m.gateway DESC, m.msg_id DESC LIMIT ");
	store_tracking_int(out, &b, d, (int64_t)limit + 1);
	out->sql = strbuf_take(&b);
}

static bool store_tracking_text_ok(const char *s)
{
	return s == NULL || strlen(s) <= STORE_EVENT_TEXT_MAX;
}

static void store_tracking_keys_free(struct store_track_key *v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		free(v[i].gateway);
		free(v[i].msg_id);
	}
	free(v);
}

int store_tracked_search(struct store *st, const struct store_track_query *q, size_t limit,
			 const char *cursor, struct store_tracked_message ***out, size_t *n,
			 char **next)
{
	const struct store_ops *ops = store_tracking_ops(st);
	*out = NULL;
	*n = 0;
	*next = NULL;
	if (ops->tracked_search == NULL || ops->tracked_message_get == NULL)
		return -ENOSYS;
	if (limit < 1 || limit > STORE_TRACK_LIMIT_MAX || q->since < 0 || q->until < 0 ||
	    q->subject_op > STORE_TRACK_SUBJECT_IS || !store_tracking_text_ok(q->sender) ||
	    !store_tracking_text_ok(q->recipient) || !store_tracking_text_ok(q->subject) ||
	    !store_tracking_text_ok(q->message_id) || !store_tracking_text_ok(q->client_ip) ||
	    !store_tracking_text_ok(q->attachment) || !store_tracking_text_ok(q->gateway))
		return -EINVAL;
	if (q->gateway != NULL && !store_gateway_name_ok(q->gateway)) {
		/* no gateway has that name: nothing matches */
		*out = xcalloc(1, sizeof(**out));
		return 0;
	}
	char *cbuf = NULL;
	int64_t cur_at = 0;
	const char *cur_gw = NULL, *cur_id = NULL;
	if (cursor != NULL) {
		cbuf = xstrdup(cursor);
		if (store_tracking_cursor_parse(cbuf, &cur_at, &cur_gw, &cur_id) < 0) {
			free(cbuf);
			return -EINVAL;
		}
	}
	enum store_track_dialect d = ops == &store_pg_ops ? STORE_TRACK_PG : STORE_TRACK_SQLITE;
	struct store_track_sql sql;
	store_tracking_sql_build(q, limit, cur_at, cur_gw, cur_id, d, &sql);
	free(cbuf);
	struct store_track_key *keys = NULL;
	size_t nkeys = 0;
	int rc = ops->tracked_search(st, &sql, &keys, &nkeys);
	store_tracking_sql_clear(&sql);
	if (rc < 0)
		return rc;
	size_t take = nkeys > limit ? limit : nkeys;
	struct store_tracked_message **v = xcalloc(take + 1, sizeof(*v));
	size_t k = 0;
	for (size_t i = 0; i < take; i++) {
		rc = ops->tracked_message_get(st, keys[i].gateway, keys[i].msg_id, &v[k]);
		if (rc == -ENOENT)
			continue; /* purged since the search: not part of the page */
		if (rc < 0)
			break;
		k++;
	}
	if (rc < 0 && rc != -ENOENT) {
		store_tracked_messages_free(v, k);
		store_tracking_keys_free(keys, nkeys);
		return rc;
	}
	if (nkeys > limit) {
		const struct store_track_key *last = &keys[limit - 1];
		*next = xasprintf("%lld~%s~%s", (long long)last->received_at, last->gateway,
				  last->msg_id);
	}
	store_tracking_keys_free(keys, nkeys);
	*out = v;
	*n = k;
	return 0;
}

static int store_tracking_event_cmp(const void *a, const void *b)
{
	const struct store_event_row *x = a, *y = b;
	if (x->at != y->at)
		return x->at < y->at ? -1 : 1;
	int c = strcmp(x->gateway, y->gateway);
	if (c != 0)
		return c;
	return x->seq < y->seq ? -1 : x->seq > y->seq ? 1 : 0;
}

/* Frees the strings of v[0..n), not v (a part of a larger array). */
static void store_tracking_rows_free_strings(struct store_event_row *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].gateway);
		free(v[i].type);
		free(v[i].msg_id);
		free(v[i].detail);
	}
}

/* Moves rows[0..k) to the end of *v (n rows). */
static void store_tracking_rows_append(struct store_event_row **v, size_t *n,
				       struct store_event_row *rows, size_t k)
{
	*v = xreallocarray(*v, *n + k + 1, sizeof(**v));
	if (k > 0) /* rows may be NULL then */
		memcpy(*v + *n, rows, k * sizeof(*rows));
	*n += k;
	free(rows); /* the strings moved to *v */
}

/*
 * Appends the events of (gateway, msg_id), received at received_at, and its
 * session's connection and refused-recipient events to *v (at most
 * STORE_TRACK_STORY_EVENTS in all).
 */
static int store_tracking_story_add(struct store *st, const char *gateway, const char *msg_id,
				    int64_t received_at, struct store_event_row **v, size_t *n)
{
	const struct store_ops *ops = store_tracking_ops(st);
	if (*n >= STORE_TRACK_STORY_EVENTS)
		return 0;
	struct store_event_row *rows = NULL;
	size_t k = 0;
	int rc =
	    store_events_list(st, gateway, msg_id, 0, STORE_TRACK_STORY_EVENTS - *n, &rows, &k);
	if (rc < 0)
		return rc;
	store_tracking_rows_append(v, n, rows, k);
	if (ops->tracked_session_events == NULL || *n >= STORE_TRACK_STORY_EVENTS)
		return 0;
	rows = NULL;
	k = 0;
	int64_t from = received_at > STORE_TRACK_SESSION_WINDOW_MS
			   ? received_at - STORE_TRACK_SESSION_WINDOW_MS
			   : 0;
	rc = ops->tracked_session_events(st, gateway, msg_id, from, received_at, &rows, &k);
	if (rc < 0)
		return rc;
	size_t room = STORE_TRACK_STORY_EVENTS - *n;
	if (k > room) {
		store_tracking_rows_free_strings(rows + room, k - room);
		k = room;
	}
	store_tracking_rows_append(v, n, rows, k);
	return 0;
}

int store_tracked_story(struct store *st, const char *gateway, const char *msg_id,
			struct store_tracked_message **msg, struct store_event_row **ev,
			size_t *nev)
{
	*msg = NULL;
	*ev = NULL;
	*nev = 0;
	struct store_tracked_message *m = NULL;
	int rc = store_tracked_message_get(st, gateway, msg_id, &m);
	if (rc < 0)
		return rc;
	struct store_event_row *v = NULL;
	size_t n = 0;
	rc = store_tracking_story_add(st, gateway, msg_id, m->received_at, &v, &n);
	if (rc == 0 && m->message_id != NULL && m->message_id[0] != '\0') {
		struct store_track_query q = {
		    .since = m->received_at > STORE_TRACK_STORY_WINDOW_MS
				 ? m->received_at - STORE_TRACK_STORY_WINDOW_MS
				 : 0,
		    .until = m->received_at + STORE_TRACK_STORY_WINDOW_MS + 1,
		    .message_id = m->message_id,
		};
		struct store_tracked_message **same = NULL;
		size_t nsame = 0;
		char *next = NULL;
		rc = store_tracked_search(st, &q, STORE_TRACK_STORY_MESSAGES, NULL, &same, &nsame,
					  &next);
		free(next);
		for (size_t i = 0; rc == 0 && i < nsame; i++) {
			if (strcmp(same[i]->gateway, gateway) == 0 &&
			    strcmp(same[i]->msg_id, msg_id) == 0)
				continue;
			rc = store_tracking_story_add(st, same[i]->gateway, same[i]->msg_id,
						      same[i]->received_at, &v, &n);
		}
		store_tracked_messages_free(same, nsame);
	}
	if (rc < 0) {
		store_tracked_message_free(m);
		store_event_rows_free(v, n);
		return rc;
	}
	if (n > 1)
		qsort(v, n, sizeof(*v), store_tracking_event_cmp);
	*msg = m;
	*ev = v;
	*nev = n;
	return 0;
}

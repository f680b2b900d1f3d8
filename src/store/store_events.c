/*
 * store_events — the backend-independent half of gateway events and message
 * tracking (store.h "gateway events and message tracking"): the checks every
 * batch passes before a backend sees it, so that both backends refuse the same
 * input the same way, the dispatch to the backend, and freeing what the reads
 * return.
 *
 * Not for: SQL (store_sqlite_events.c, store_pg_events.c), reading the JSON a
 * gateway sent (api_events.c).
 */
#include "store/store.h"
#include "store/store_backend.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/xalloc.h"

/* The event types a gateway reports (docs/GATEWAY.md "Events"). */
static const char *const store_event_types[] = {
    "connection", "rcpt_accepted", "rcpt_refused", "rate_limit", "received",   "released",
    "slbl",	  "verdict",	   "virus",	   "filter",	 "quarantine", "delivery",
    "bounce",	  "release",	   "reply",	   "capacity",	 "recipients",
};

static const struct store_ops *store_events_ops(struct store *st)
{
	return ((const struct store_head *)(void *)st)->ops;
}

bool store_event_type_ok(const char *type)
{
	if (type == NULL)
		return false;
	for (size_t i = 0; i < sizeof(store_event_types) / sizeof(store_event_types[0]); i++) {
		if (strcmp(type, store_event_types[i]) == 0)
			return true;
	}
	return false;
}

bool store_event_msg_id_ok(const char *id)
{
	if (id == NULL || id[0] == '\0')
		return false;
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)id; *p != '\0'; p++, n++) {
		if (*p <= 0x20 || *p >= 0x7f || n >= STORE_EVENT_MSG_ID_MAX)
			return false;
	}
	return true;
}

static bool store_events_text_ok(const char *s, bool required)
{
	if (s == NULL)
		return !required;
	return strlen(s) <= STORE_EVENT_TEXT_MAX;
}

static bool store_events_list_ok(const char *const *v, size_t n)
{
	if (n > 0 && v == NULL)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (v[i] == NULL || !store_events_text_ok(v[i], true))
			return false;
	}
	return true;
}

/* The manager's own event types besides a gateway's. */
static const char *const store_event_own_types[] = {"delete", "expire"};

static bool store_event_own_type_ok(const char *type)
{
	if (store_event_type_ok(type))
		return true;
	for (size_t i = 0; i < sizeof(store_event_own_types) / sizeof(store_event_own_types[0]);
	     i++) {
		if (strcmp(type, store_event_own_types[i]) == 0)
			return true;
	}
	return false;
}

bool store_gateway_reserved(const char *name)
{
	return name != NULL && strcasecmp(name, STORE_EVENTS_OWN_GATEWAY) == 0;
}

/* True when e can be stored as it is (own: the manager's, seq not its own). */
static bool store_event_ok(const struct store_event *e, bool own)
{
	if ((!own && e->seq < 1) || e->at < 0 || e->type == NULL ||
	    !(own ? store_event_own_type_ok(e->type) : store_event_type_ok(e->type)) ||
	    e->detail == NULL || strlen(e->detail) > STORE_EVENT_DETAIL_MAX)
		return false;
	if (e->msg_id != NULL && !store_event_msg_id_ok(e->msg_id))
		return false;
	if ((e->message != NULL || e->recipients != NULL || e->state != NULL || e->flags != 0) &&
	    e->msg_id == NULL)
		return false;
	const struct store_event_recipients *r = e->recipients;
	if (r != NULL && (r->n < 1 || r->first < 0 || r->n > STORE_EVENT_RCPTS_MAX ||
			  r->first > STORE_EVENT_RCPTS_MAX - (int64_t)r->n ||
			  !store_events_list_ok(r->names, r->n)))
		return false;
	if (e->state != NULL && (e->state[0] == '\0' || strlen(e->state) > STORE_EVENT_TYPE_MAX))
		return false;
	const struct store_event_message *m = e->message;
	if (m == NULL)
		return true;
	return store_events_text_ok(m->sender, true) && store_events_text_ok(m->subject, false) &&
	       store_events_text_ok(m->message_id, false) &&
	       store_events_text_ok(m->client_ip, false) &&
	       store_events_list_ok(m->recipients, m->nrecipients) &&
	       store_events_list_ok(m->attachments, m->nattachments) && m->size >= 0;
}

/* Sorts v by seq, equal seqs kept in their order (a merge sort: qsort is not
 * stable, and the first of equal seqs is the one stored). */
static void store_events_sort(struct store_event *v, size_t n)
{
	if (n < 2)
		return;
	size_t h = n / 2;
	store_events_sort(v, h);
	store_events_sort(v + h, n - h);
	struct store_event *t = xcalloc(n, sizeof(*t));
	size_t i = 0, j = h, k = 0;
	while (i < h && j < n)
		t[k++] = v[j].seq < v[i].seq ? v[j++] : v[i++];
	while (i < h)
		t[k++] = v[i++];
	while (j < n)
		t[k++] = v[j++];
	memcpy(v, t, n * sizeof(*t));
	free(t);
}

int store_events_put(struct store *st, const char *gateway, const struct store_event *v, size_t n,
		     int64_t backlog, int64_t now, uint64_t *stored)
{
	const struct store_ops *ops = store_events_ops(st);
	if (stored != NULL)
		*stored = 0;
	if (ops->events_put == NULL)
		return -ENOSYS;
	if (!store_gateway_name_ok(gateway) || (n > 0 && v == NULL) || backlog < -1)
		return -EINVAL;
	bool sorted = true;
	for (size_t i = 0; i < n; i++) {
		if (!store_event_ok(&v[i], false))
			return -EINVAL;
		sorted = sorted && (i == 0 || v[i - 1].seq <= v[i].seq);
	}
	if (sorted)
		return ops->events_put(st, gateway, v, n, backlog, now, false, stored);
	/* the backends store a batch in seq order, the order things happened in */
	struct store_event *w = xcalloc(n, sizeof(*w));
	memcpy(w, v, n * sizeof(*w));
	store_events_sort(w, n);
	int rc = ops->events_put(st, gateway, w, n, backlog, now, false, stored);
	free(w);
	return rc;
}

int store_events_put_own(struct store *st, const struct store_event *v, size_t n, int64_t now,
			 uint64_t *stored)
{
	const struct store_ops *ops = store_events_ops(st);
	if (stored != NULL)
		*stored = 0;
	if (ops->events_put == NULL)
		return -ENOSYS;
	if (n > 0 && v == NULL)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (!store_event_ok(&v[i], true))
			return -EINVAL;
	}
	return ops->events_put(st, STORE_EVENTS_OWN_GATEWAY, v, n, -1, now, true, stored);
}

void store_event_states_free(struct store_event_state *v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(v[i].gateway);
	free(v);
}

int store_event_states(struct store *st, struct store_event_state **out, size_t *n)
{
	const struct store_ops *ops = store_events_ops(st);
	*out = NULL;
	*n = 0;
	if (ops->event_states == NULL)
		return -ENOSYS;
	return ops->event_states(st, out, n);
}

void store_event_rows_free(struct store_event_row *v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		free(v[i].gateway);
		free(v[i].type);
		free(v[i].msg_id);
		free(v[i].detail);
	}
	free(v);
}

int store_events_list(struct store *st, const char *gateway, const char *msg_id, int64_t after_seq,
		      size_t limit, struct store_event_row **out, size_t *n)
{
	const struct store_ops *ops = store_events_ops(st);
	*out = NULL;
	*n = 0;
	if (ops->events_list == NULL)
		return -ENOSYS;
	if (!store_gateway_name_ok(gateway) || limit < 1 || limit > 10000 ||
	    (msg_id != NULL && !store_event_msg_id_ok(msg_id)))
		return -EINVAL;
	return ops->events_list(st, gateway, msg_id, after_seq, limit, out, n);
}

void store_tracked_message_free(struct store_tracked_message *m)
{
	if (m == NULL)
		return;
	free(m->gateway);
	free(m->msg_id);
	free(m->sender);
	for (size_t i = 0; i < m->nrecipients; i++)
		free(m->recipients[i]);
	free(m->recipients);
	free(m->subject);
	free(m->message_id);
	free(m->client_ip);
	for (size_t i = 0; i < m->nattachments; i++)
		free(m->attachments[i]);
	free(m->attachments);
	free(m->last_state);
	free(m);
}

int store_tracked_message_get(struct store *st, const char *gateway, const char *msg_id,
			      struct store_tracked_message **out)
{
	const struct store_ops *ops = store_events_ops(st);
	*out = NULL;
	if (ops->tracked_message_get == NULL)
		return -ENOSYS;
	if (!store_gateway_name_ok(gateway) || !store_event_msg_id_ok(msg_id))
		return -ENOENT;
	return ops->tracked_message_get(st, gateway, msg_id, out);
}

int store_tracking_drop_days(struct store *st, int64_t before, uint64_t *events, uint64_t *messages)
{
	const struct store_ops *ops = store_events_ops(st);
	*events = 0;
	*messages = 0;
	if (ops->tracking_drop_days == NULL)
		return 0; /* no daily partitions: the row path does it all */
	return ops->tracking_drop_days(st, before, events, messages);
}

int store_tracking_purge(struct store *st, int64_t before, size_t batch, uint64_t *events,
			 uint64_t *messages)
{
	const struct store_ops *ops = store_events_ops(st);
	*events = 0;
	*messages = 0;
	if (ops->tracking_purge == NULL)
		return -ENOSYS;
	if (batch < 1 || batch > 100000)
		return -EINVAL;
	return ops->tracking_purge(st, before, batch, events, messages);
}

/*
 * api_events — POST /api/v1/gateway/events (api_events.h).
 *
 * Order of checks, each answered as the hello answers it, nothing stored before
 * the last: the browser guard; the gateway's token (none, the admin token, a
 * session, a pending or removed gateway: 401; the store cannot say: 503); the
 * body (too large 413, not JSON 400, not an object 422); the batch (a bad event:
 * 400 naming it; more than API_EVENTS_MAX_BATCH events: 413); the name the body
 * says, when it says one (another gateway's: 403). Then one store transaction,
 * and 200 {"acked": <highest seq of the batch>, "stored": <new events>}.
 *
 * What an event does to its tracked message (last_state, flags for TR1's event
 * searches) is decided here from its type and detail, so that the store keeps
 * no knowledge of the detail's JSON.
 */
#include "api/api_events.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "http/http_json.h"
#include "http/http_server.h"
#include "api/api.h"
#include "api/api_gateways.h"
#include "api/api_read.h"
#include "quarantine/metrics.h"

void api_events_batch_clear(struct api_events_batch *b)
{
	for (size_t i = 0; i < b->nevents; i++) {
		if (b->details != NULL)
			free(b->details[i]);
		if (b->lists != NULL) {
			free(b->lists[2 * i]);
			free(b->lists[2 * i + 1]);
		}
	}
	free(b->details);
	free(b->lists);
	free(b->samples);
	free(b->more);
	free(b->events);
	free(b->messages);
	memset(b, 0, sizeof(*b));
}

/* A string member that may be absent or null: 0 (*out NULL when absent), or -EINVAL. */
static int api_events_opt_string(const json_t *o, const char *key, const char **out)
{
	const json_t *v = json_object_get(o, key);
	*out = NULL;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v) || strlen(json_string_value(v)) > STORE_EVENT_TEXT_MAX)
		return -EINVAL;
	*out = json_string_value(v);
	return 0;
}

/* An array of strings member (absent: none); -EINVAL for anything else. */
static int api_events_opt_list(const json_t *o, const char *key, const char ***out, size_t *n)
{
	const json_t *v = json_object_get(o, key);
	*out = NULL;
	*n = 0;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_array(v) || json_array_size(v) > API_EVENTS_MAX_LIST)
		return -EINVAL;
	size_t k = json_array_size(v);
	const char **l = xcalloc(k + 1, sizeof(*l));
	for (size_t i = 0; i < k; i++) {
		const json_t *s = json_array_get(v, i);
		if (!json_is_string(s) || strlen(json_string_value(s)) > STORE_EVENT_TEXT_MAX) {
			free(l);
			return -EINVAL;
		}
		l[i] = json_string_value(s);
	}
	*out = l;
	*n = k;
	return 0;
}

/* The fields of a "received" event's detail into m. NULL, or the bad field's name. */
static const char *api_events_message(const json_t *d, struct store_event_message *m,
				      const char ***rcpts, const char ***atts)
{
	if (api_events_opt_string(d, "sender", &m->sender) < 0)
		return "sender";
	if (m->sender == NULL)
		return "sender";
	if (api_events_opt_string(d, "subject", &m->subject) < 0)
		return "subject";
	if (api_events_opt_string(d, "message_id", &m->message_id) < 0)
		return "message_id";
	if (api_events_opt_string(d, "client_ip", &m->client_ip) < 0)
		return "client_ip";
	if (api_events_opt_list(d, "recipients", rcpts, &m->nrecipients) < 0)
		return "recipients";
	m->recipients = *rcpts;
	if (api_events_opt_list(d, "attachments", atts, &m->nattachments) < 0)
		return "attachments";
	m->attachments = *atts;
	const json_t *size = json_object_get(d, "size");
	if (size != NULL && (!json_is_integer(size) || json_integer_value(size) < 0))
		return "size";
	m->size = size != NULL ? json_integer_value(size) : 0;
	return NULL;
}

/*
 * The fields of a "recipients" event's detail into r: "first", the index of its
 * first name, and "recipients", 1 to API_EVENTS_MAX_LIST names (list holds them).
 * NULL, or the bad field's name.
 */
static const char *api_events_recipients(const json_t *d, struct store_event_recipients *r,
					 const char ***list)
{
	const json_t *first = json_object_get(d, "first");
	if (!json_is_integer(first) || json_integer_value(first) < 0 ||
	    json_integer_value(first) >= STORE_EVENT_RCPTS_MAX)
		return "first";
	r->first = json_integer_value(first);
	if (api_events_opt_list(d, "recipients", list, &r->n) < 0 || r->n < 1 ||
	    r->first > STORE_EVENT_RCPTS_MAX - (int64_t)r->n)
		return "recipients";
	r->names = *list;
	return NULL;
}

/*
 * The fields of a "capacity" event's detail into v (docs/GATEWAY.md "Events").
 * NULL, or the bad field's name.
 */
static const char *api_events_capacity(const json_t *d, struct store_capacity_sample *v)
{
	static const char *const names[] = {"received", "relayed", "connections",
					    "current",	"backlog", "memory"};
	int64_t *f[] = {&v->received, &v->relayed, &v->connections,
			&v->current,  &v->backlog, &v->memory};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const json_t *x = json_object_get(d, names[i]);
		/* bounded, so that an hour's sums of them cannot overflow */
		if (!json_is_integer(x) || json_integer_value(x) < 0 ||
		    json_integer_value(x) > 1000000000000LL)
			return names[i];
		*f[i] = json_integer_value(x);
	}
	/* a load average: a number from 0 to a million (hundredths kept) */
	const json_t *l = json_object_get(d, "load");
	if (!json_is_number(l) || json_number_value(l) < 0 || json_number_value(l) > 1e6)
		return "load";
	v->load = (int64_t)(json_number_value(l) * 100.0 + 0.5);
	return NULL;
}

/* A string member of the detail, "" when absent or not a string. */
static const char *api_events_detail_str(const json_t *d, const char *key)
{
	const char *s = json_string_value(json_object_get(d, key));
	return s != NULL ? s : "";
}

/*
 * What event e (type, detail d) does to its tracked message: the new last_state
 * (NULL: unchanged) and the TR1 flags it sets.
 */
static void api_events_effect(struct store_event *e, const json_t *d)
{
	const char *t = e->type;
	if (strcmp(t, "received") == 0) {
		e->state = "received";
	} else if (strcmp(t, "released") == 0) {
		e->state = "released";
	} else if (strcmp(t, "verdict") == 0) {
		const char *level = api_events_detail_str(d, "level");
		if (strcmp(level, "spam") == 0)
			e->flags |= STORE_TRACK_SPAM;
		else if (strcmp(level, "suspect") == 0)
			e->flags |= STORE_TRACK_SUSPECT;
	} else if (strcmp(t, "virus") == 0) {
		e->flags |= STORE_TRACK_VIRUS;
	} else if (strcmp(t, "filter") == 0) {
		if (strcasecmp(api_events_detail_str(d, "class"), "dlp") == 0)
			e->flags |= STORE_TRACK_DLP;
	} else if (strcmp(t, "quarantine") == 0) {
		e->state = "quarantined";
		e->flags |= STORE_TRACK_QUARANTINED;
		if (strcasecmp(api_events_detail_str(d, "quarantine"), "outbreak") == 0)
			e->flags |= STORE_TRACK_OUTBREAK;
	} else if (strcmp(t, "delivery") == 0) {
		const char *status = api_events_detail_str(d, "status");
		if (strcmp(status, "sent") == 0) {
			e->state = "delivered";
			e->flags |= STORE_TRACK_DELIVERED;
		} else if (strcmp(status, "deferred") == 0) {
			e->state = "soft_bounce";
			e->flags |= STORE_TRACK_SOFT_BOUNCE;
		} else if (strcmp(status, "refused") == 0) {
			e->state = "hard_bounce";
			e->flags |= STORE_TRACK_HARD_BOUNCE;
		} else if (strcmp(status, "partly_refused") == 0) {
			e->state = "delivered";
			e->flags |= STORE_TRACK_DELIVERED | STORE_TRACK_HARD_BOUNCE;
		} else if (strcmp(status, "dropped") == 0) {
			e->state = "dropped";
		}
	} else if (strcmp(t, "bounce") == 0) {
		e->state = "bounced";
		e->flags |= STORE_TRACK_HARD_BOUNCE;
	} else if (strcmp(t, "reply") == 0) {
		/* the client was refused or told to retry: nothing went on from here */
		const char *r = api_events_detail_str(d, "reply");
		if (r[0] == '4')
			e->state = "tempfailed";
		else if (r[0] == '5')
			e->state = "refused";
	}
}

/* Checks events[i] = o into b. 0, or -EINVAL with *err. */
static int api_events_parse_one(const json_t *o, size_t i, struct api_events_batch *b, char **err)
{
	static const char *const allowed[] = {"seq", "at", "type", "msg_id", "detail", NULL};
	struct store_event *e = &b->events[i];
	char *why = NULL;
	if (!json_is_object(o)) {
		*err = xasprintf("events[%zu]: must be an object", i);
		return -EINVAL;
	}
	if (http_json_check_keys(o, allowed, &why) < 0) {
		*err = xasprintf("events[%zu]: %s", i, why);
		free(why);
		return -EINVAL;
	}
	const json_t *seq = json_object_get(o, "seq");
	if (!json_is_integer(seq) || json_integer_value(seq) < 1) {
		*err = xasprintf("events[%zu]: \"seq\" must be an integer of at least 1", i);
		return -EINVAL;
	}
	e->seq = json_integer_value(seq);
	if (i > 0 && e->seq <= b->events[i - 1].seq) {
		*err = xasprintf("events[%zu]: \"seq\" %lld is not above the one before it", i,
				 (long long)e->seq);
		return -EINVAL;
	}
	const json_t *at = json_object_get(o, "at");
	if (!json_is_integer(at) || json_integer_value(at) < 0) {
		*err = xasprintf("events[%zu]: \"at\" must be a time in Unix milliseconds", i);
		return -EINVAL;
	}
	e->at = json_integer_value(at);
	const json_t *type = json_object_get(o, "type");
	if (!json_is_string(type) || !store_event_type_ok(json_string_value(type))) {
		*err = json_is_string(type)
			   ? xasprintf("events[%zu]: \"type\" \"%.32s\" is not an event type", i,
				       json_string_value(type))
			   : xasprintf("events[%zu]: \"type\" is required (a string)", i);
		return -EINVAL;
	}
	e->type = json_string_value(type);
	const json_t *id = json_object_get(o, "msg_id");
	if (id != NULL && !json_is_null(id)) {
		if (!json_is_string(id) || !store_event_msg_id_ok(json_string_value(id))) {
			*err = xasprintf("events[%zu]: \"msg_id\" must be 1 to %d printable "
					 "characters without blanks",
					 i, STORE_EVENT_MSG_ID_MAX);
			return -EINVAL;
		}
		e->msg_id = json_string_value(id);
	}
	const json_t *d = json_object_get(o, "detail");
	if (d != NULL && !json_is_object(d)) {
		*err = xasprintf("events[%zu]: \"detail\" must be an object", i);
		return -EINVAL;
	}
	b->details[i] = d != NULL ? json_dumps(d, JSON_COMPACT) : xstrdup("{}");
	if (b->details[i] == NULL || strlen(b->details[i]) > STORE_EVENT_DETAIL_MAX) {
		*err = xasprintf("events[%zu]: \"detail\" is larger than %d bytes", i,
				 STORE_EVENT_DETAIL_MAX);
		return -EINVAL;
	}
	e->detail = b->details[i];
	e->parsed = d;
	if (strcmp(e->type, "received") == 0) {
		if (e->msg_id == NULL) {
			*err = xasprintf("events[%zu]: a \"received\" event needs \"msg_id\"", i);
			return -EINVAL;
		}
		const char *bad =
		    api_events_message(d, &b->messages[i], &b->lists[2 * i], &b->lists[2 * i + 1]);
		if (bad != NULL) {
			*err = xasprintf("events[%zu]: \"detail\".\"%s\" is missing or malformed",
					 i, bad);
			return -EINVAL;
		}
		e->message = &b->messages[i];
	}
	if (strcmp(e->type, "recipients") == 0) {
		if (e->msg_id == NULL) {
			*err = xasprintf("events[%zu]: a \"recipients\" event needs \"msg_id\"", i);
			return -EINVAL;
		}
		const char *bad =
		    d != NULL ? api_events_recipients(d, &b->more[i], &b->lists[2 * i]) : "first";
		if (bad != NULL) {
			*err = xasprintf("events[%zu]: \"detail\".\"%s\" is missing or malformed",
					 i, bad);
			return -EINVAL;
		}
		e->recipients = &b->more[i];
	}
	if (strcmp(e->type, "capacity") == 0) {
		if (e->msg_id != NULL) {
			*err = xasprintf("events[%zu]: a \"capacity\" event has no \"msg_id\"", i);
			return -EINVAL;
		}
		const char *bad = d != NULL ? api_events_capacity(d, &b->samples[i]) : "received";
		if (bad != NULL) {
			*err = xasprintf("events[%zu]: \"detail\".\"%s\" is missing or malformed",
					 i, bad);
			return -EINVAL;
		}
		e->capacity = &b->samples[i];
	}
	if (e->msg_id != NULL)
		api_events_effect(e, d);
	return 0;
}

int api_events_parse(const json_t *body, struct api_events_batch *out, char **err)
{
	static const char *const allowed[] = {"gateway", "backlog", "events", NULL};
	memset(out, 0, sizeof(*out));
	out->backlog = -1;
	*err = NULL;
	if (http_json_check_keys(body, allowed, err) < 0)
		return -EINVAL;
	const json_t *g = json_object_get(body, "gateway");
	if (g != NULL && !json_is_null(g)) {
		if (!json_is_string(g)) {
			*err = xstrdup("\"gateway\" must be a string");
			return -EINVAL;
		}
		out->gateway = json_string_value(g);
	}
	const json_t *bl = json_object_get(body, "backlog");
	if (bl != NULL && !json_is_null(bl)) {
		if (!json_is_integer(bl) || json_integer_value(bl) < 0) {
			*err = xstrdup("\"backlog\" must be a count of events (0 or more)");
			return -EINVAL;
		}
		out->backlog = json_integer_value(bl);
	}
	const json_t *ev = json_object_get(body, "events");
	if (!json_is_array(ev)) {
		*err = xstrdup("\"events\" is required (an array)");
		return -EINVAL;
	}
	size_t n = json_array_size(ev);
	if (n > API_EVENTS_MAX_BATCH) {
		*err =
		    xasprintf("a batch holds at most %d events, not %zu", API_EVENTS_MAX_BATCH, n);
		return -E2BIG;
	}
	out->events = xcalloc(n + 1, sizeof(*out->events));
	out->messages = xcalloc(n + 1, sizeof(*out->messages));
	out->details = xcalloc(n + 1, sizeof(*out->details));
	out->lists = xcalloc(2 * n + 2, sizeof(*out->lists));
	out->samples = xcalloc(n + 1, sizeof(*out->samples));
	out->more = xcalloc(n + 1, sizeof(*out->more));
	out->nevents = n;
	for (size_t i = 0; i < n; i++) {
		int rc = api_events_parse_one(json_array_get(ev, i), i, out, err);
		if (rc < 0) {
			api_events_batch_clear(out);
			return rc;
		}
	}
	return 0;
}

/* One batch on its way to the store (a reader thread commits it). */
struct api_events_commit {
	struct store *st;
	char *gateway; /* the registry's spelling */
	json_t *body;  /* b points into it */
	struct api_events_batch b;
};

static void api_events_commit_free(void *arg)
{
	struct api_events_commit *c = arg;
	api_events_batch_clear(&c->b);
	json_decref(c->body);
	free(c->gateway);
	free(c);
}

/*
 * Reader thread: commits the batch. A write, not a read: without the readers'
 * time budget (a batch cut off half way would only be sent again) and never on a
 * replica.
 */
static void api_events_commit(void *arg, struct api_read_reply *out)
{
	struct api_events_commit *c = arg;
	store_read_deadline_clear();
	store_read_replica_set(false);
	uint64_t stored = 0;
	int64_t now = clock_now_ms();
	char q[300];
	int rc = store_events_put(c->st, c->gateway, c->b.events, c->b.nevents, c->b.backlog, now,
				  &stored);
	if (rc < 0) {
		/* nothing was committed: the gateway keeps the batch and sends it again */
		log_error("api.events_failed", "gateway=%s events=%zu error=%s",
			  log_quote(q, sizeof(q), c->gateway), c->b.nevents, strerror(-rc));
		out->store_rc = rc;
		if (store_error_unavailable(rc))
			api_read_reply_error(out, 503, "%s", API_STORE_UNAVAILABLE_TEXT);
		else
			api_read_reply_error(out, rc == -EINVAL ? 400 : 500,
					     "the events could not be stored (%s)", strerror(-rc));
		return;
	}
	/* a push is a contact too: last_seen, as a hello */
	(void)store_gateway_touch(c->st, c->gateway, now, NULL);
	int64_t acked = c->b.nevents > 0 ? c->b.events[c->b.nevents - 1].seq : 0;
	log_debug("api.events", "gateway=%s events=%zu stored=%llu acked=%lld backlog=%lld",
		  log_quote(q, sizeof(q), c->gateway), c->b.nevents, (unsigned long long)stored,
		  (long long)acked, (long long)c->b.backlog);
	api_read_reply_json(
	    out, 200,
	    json_pack("{s:I,s:I}", "acked", (json_int_t)acked, "stored", (json_int_t)stored));
}

static void api_events_post(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	json_t *body = NULL;
	char *err = NULL;
	struct store_gateway *g = NULL;
	struct api_events_batch b = {0};
	if (!api_request_guard(a, req))
		return;
	int auth = api_gateways_authenticate(a, req, &g);
	if (auth == -ENOENT) {
		http_server_reply_error(req, 401, "a valid gateway token is required");
		return;
	}
	if (auth < 0) {
		if (store_error_unavailable(auth)) {
			http_server_add_header(req, "Retry-After", API_STORE_UNAVAILABLE_RETRY);
			http_server_reply_error(req, 503, API_STORE_UNAVAILABLE_TEXT);
		} else {
			http_server_reply_error(req, 500, "the store failed (%s)", strerror(-auth));
		}
		return;
	}
	if (http_server_request_json_object(req, api_current_config(a)->max_body, &body) < 0)
		goto done;
	int rc = api_events_parse(body, &b, &err);
	if (rc < 0) {
		http_server_reply_error(req, rc == -E2BIG ? 413 : 400, "%s", err);
		goto done;
	}
	char q[300], q2[300];
	if (b.gateway != NULL && strcasecmp(b.gateway, g->name) != 0) {
		log_warn("api.gateway_name_mismatch", "gateway=%s said=%s peer=%s",
			 log_quote(q, sizeof(q), g->name), log_quote(q2, sizeof(q2), b.gateway),
			 http_server_request_peer(req));
		http_server_reply_error(req, 403,
					"this token belongs to gateway \"%s\", not \"%s\"", g->name,
					b.gateway);
		goto done;
	}
	/* the commit waits for the disk (or PostgreSQL): off the event loop */
	struct api_events_commit *c = xcalloc(1, sizeof(*c));
	c->st = api_store(a);
	c->gateway = xstrdup(g->name);
	c->body = body;
	c->b = b;
	body = NULL;
	memset(&b, 0, sizeof(b));
	api_read_submit(api_reads(a), req, "events", api_events_commit, NULL, c,
			api_events_commit_free);
done:
	api_events_batch_clear(&b);
	store_gateway_free(g);
	free(err);
	json_decref(body);
}

void api_events_metrics(FILE *f, void *arg)
{
	struct store *st = arg;
	struct store_event_state *v = NULL;
	size_t n = 0;
	if (st == NULL || store_event_states(st, &v, &n) < 0)
		return;
	fprintf(f, "# HELP lazaret_gateway_events_received_total Events stored from each "
		   "gateway.\n# TYPE lazaret_gateway_events_received_total counter\n");
	for (size_t i = 0; i < n; i++)
		fprintf(f, "lazaret_gateway_events_received_total{gateway=\"%s\"} %lld\n",
			v[i].gateway, (long long)v[i].received);
	fprintf(f, "# HELP lazaret_gateway_event_backlog Events waiting on each gateway at "
		   "its last push.\n# TYPE lazaret_gateway_event_backlog gauge\n");
	for (size_t i = 0; i < n; i++) {
		if (v[i].backlog >= 0)
			fprintf(f, "lazaret_gateway_event_backlog{gateway=\"%s\"} %lld\n",
				v[i].gateway, (long long)v[i].backlog);
	}
	/* lag: how old the newest event of a gateway is (grows while it cannot push) */
	int64_t now = clock_now_ms();
	fprintf(f, "# HELP lazaret_gateway_event_lag_seconds Age of the newest event stored from "
		   "each gateway.\n# TYPE lazaret_gateway_event_lag_seconds gauge\n");
	for (size_t i = 0; i < n; i++) {
		if (v[i].last_event_at > 0)
			fprintf(f, "lazaret_gateway_event_lag_seconds{gateway=\"%s\"} %.3f\n",
				v[i].gateway,
				(double)(now > v[i].last_event_at ? now - v[i].last_event_at : 0) /
				    1000.0);
	}
	fprintf(f, "# HELP lazaret_gateway_event_push_timestamp_seconds When each gateway last "
		   "pushed events.\n# TYPE lazaret_gateway_event_push_timestamp_seconds gauge\n");
	for (size_t i = 0; i < n; i++) {
		if (v[i].pushed_at > 0)
			fprintf(
			    f,
			    "lazaret_gateway_event_push_timestamp_seconds{gateway=\"%s\"} %.3f\n",
			    v[i].gateway, (double)v[i].pushed_at / 1000.0);
	}
	store_event_states_free(v, n);
}

void api_events_register(struct api *a)
{
	static const struct http_server_route_row routes[] = {
	    /* Public to the router: the gateway's token is checked by the handler. */
	    {"POST", "/api/v1/gateway/events", HTTP_SERVER_ROUTE_PUBLIC, api_events_post},
	};
	http_server_route_table(api_http(a), routes, sizeof(routes) / sizeof(routes[0]), a);
	metrics_add_section(api_events_metrics, api_store(a));
}

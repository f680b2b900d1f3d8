/*
 * api_tracking — the message tracking routes (api_tracking.h): the query
 * parser, the JSON of tracked messages and of a story, and the handlers, which
 * check the caller's role on the loop thread and read the store on a reader
 * thread (api_read.h).
 *
 * Only administrators track: a search crosses every gateway and every
 * recipient, which neither an end user's nor a scoped operator's view allows.
 *
 * Not for: the SQL (store_tracking.c), the gateways' event intake (api_events.c).
 */
#include "api/api_tracking.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "http/http_json.h"
#include "http/http_server.h"
#include "api/api.h"
#include "api/api_read.h"

/* The event flags a search names, in enum store_track_flag's order. */
static const struct {
	const char *name;
	unsigned flag;
} api_tracking_flags[] = {
    {"spam", STORE_TRACK_SPAM},
    {"suspect", STORE_TRACK_SUSPECT},
    {"virus", STORE_TRACK_VIRUS},
    {"delivered", STORE_TRACK_DELIVERED},
    {"hard_bounce", STORE_TRACK_HARD_BOUNCE},
    {"soft_bounce", STORE_TRACK_SOFT_BOUNCE},
    {"quarantined", STORE_TRACK_QUARANTINED},
    {"outbreak", STORE_TRACK_OUTBREAK},
    {"dlp", STORE_TRACK_DLP},
};
#define API_TRACKING_NFLAGS (sizeof(api_tracking_flags) / sizeof(api_tracking_flags[0]))

/* The query parameters a search reads. */
static const char *const api_tracking_keys[] = {
    "since",   "until",	    "sender",	  "recipient", "subject", "subject_op", "message_id",
    "gateway", "client_ip", "attachment", "event",     "limit",	  "cursor",
};

/* Flags of a comma-separated list of flag names into *out. 0 or -EINVAL. */
static int api_tracking_flags_parse(const char *s, unsigned *out)
{
	unsigned v = 0;
	const char *p = s;
	for (;;) {
		size_t len = strcspn(p, ",");
		size_t i;
		for (i = 0; i < API_TRACKING_NFLAGS; i++) {
			if (strlen(api_tracking_flags[i].name) == len &&
			    strncmp(api_tracking_flags[i].name, p, len) == 0)
				break;
		}
		if (i == API_TRACKING_NFLAGS)
			return -EINVAL;
		v |= api_tracking_flags[i].flag;
		if (p[len] == '\0')
			break;
		p += len + 1;
	}
	*out = v;
	return 0;
}

static int api_tracking_time(const char *name, const char *value, int64_t *out, char **err)
{
	int64_t ms;
	if (clock_parse_rfc3339(value, &ms) < 0 || ms < 0) {
		*err = xasprintf("\"%s\" must be an RFC 3339 date-time (e.g. 2026-11-27T19:30:00Z)",
				 name);
		return -EINVAL;
	}
	/* The store reads 0 as "unbounded": the epoch itself is 1 ms later, harmlessly. */
	*out = ms != 0 ? ms : 1;
	return 0;
}

int api_tracking_parse(api_tracking_query_fn get, void *arg, struct api_tracking_params *out,
		       char **err)
{
	const char *v[sizeof(api_tracking_keys) / sizeof(api_tracking_keys[0])];
	memset(out, 0, sizeof(*out));
	*err = NULL;
	out->limit = API_TRACKING_DEFAULT_LIMIT;
	for (size_t i = 0; i < sizeof(api_tracking_keys) / sizeof(api_tracking_keys[0]); i++) {
		size_t count = 0;
		v[i] = get(arg, api_tracking_keys[i], &count);
		if (count > 1) {
			*err = xasprintf("query parameter \"%s\" given more than once",
					 api_tracking_keys[i]);
			return -EINVAL;
		}
		if (v[i] != NULL && v[i][0] == '\0')
			v[i] = NULL; /* empty: not given, as the message listing reads it */
		if (v[i] != NULL && strlen(v[i]) > STORE_EVENT_TEXT_MAX) {
			*err = xasprintf("\"%s\" must be at most %d bytes", api_tracking_keys[i],
					 STORE_EVENT_TEXT_MAX);
			return -EINVAL;
		}
	}
	struct store_track_query *q = &out->q;
	if (v[0] != NULL && api_tracking_time("since", v[0], &q->since, err) < 0)
		return -EINVAL;
	if (v[1] != NULL && api_tracking_time("until", v[1], &q->until, err) < 0)
		return -EINVAL;
	/* "<>": the null sender (bounces), which an empty parameter cannot say */
	q->sender = v[2] != NULL && strcmp(v[2], "<>") == 0 ? "" : v[2];
	q->recipient = v[3];
	q->subject = v[4];
	q->subject_op = STORE_TRACK_SUBJECT_CONTAINS;
	if (v[5] != NULL) {
		if (strcmp(v[5], "begins") == 0)
			q->subject_op = STORE_TRACK_SUBJECT_BEGINS;
		else if (strcmp(v[5], "is") == 0)
			q->subject_op = STORE_TRACK_SUBJECT_IS;
		else if (strcmp(v[5], "contains") != 0) {
			*err = xasprintf("\"subject_op\" must be one of begins, is, contains");
			return -EINVAL;
		}
	}
	q->message_id = v[6];
	q->gateway = v[7];
	q->client_ip = v[8];
	q->attachment = v[9];
	if (v[10] != NULL && api_tracking_flags_parse(v[10], &q->flags) < 0) {
		*err = xasprintf("\"event\" must be a comma-separated list of spam, suspect, "
				 "virus, delivered, hard_bounce, soft_bounce, quarantined, "
				 "outbreak, dlp");
		return -EINVAL;
	}
	if (v[11] != NULL) {
		size_t n = 0;
		const char *p = v[11];
		for (; *p >= '0' && *p <= '9' && n <= STORE_TRACK_LIMIT_MAX; p++)
			n = n * 10 + (size_t)(*p - '0');
		if (*p != '\0' || n < 1 || n > STORE_TRACK_LIMIT_MAX) {
			*err = xasprintf("\"limit\" must be a number from 1 to %d",
					 STORE_TRACK_LIMIT_MAX);
			return -EINVAL;
		}
		out->limit = n;
	}
	out->cursor = v[12];
	return 0;
}

int api_tracking_id_parse(const char *id, char **gateway, char **msg_id)
{
	*gateway = NULL;
	*msg_id = NULL;
	const char *t = id != NULL ? strchr(id, '~') : NULL;
	if (t == NULL)
		return -EINVAL;
	char *g = xstrndup(id, (size_t)(t - id));
	if (!store_gateway_name_ok(g) || !store_event_msg_id_ok(t + 1)) {
		free(g);
		return -EINVAL;
	}
	*gateway = g;
	*msg_id = xstrdup(t + 1);
	return 0;
}

/* ---- JSON ---- */

static void api_tracking_set(json_t *o, const char *key, json_t *v)
{
	if (v == NULL || json_object_set_new(o, key, v) != 0)
		panic("api_tracking: cannot build JSON for \"%s\"", key);
}

static json_t *api_tracking_time_json(int64_t ms)
{
	char buf[CLOCK_RFC3339_LEN];
	clock_format_rfc3339(ms, buf);
	return json_string(buf);
}

static json_t *api_tracking_strings(char *const *v, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

static json_t *api_tracking_message_json(const struct store_tracked_message *m)
{
	json_t *o = json_object();
	char *id = xasprintf("%s~%s", m->gateway, m->msg_id);
	api_tracking_set(o, "id", json_string(id));
	free(id);
	api_tracking_set(o, "gateway", json_string(m->gateway));
	api_tracking_set(o, "received_at", api_tracking_time_json(m->received_at));
	api_tracking_set(o, "sender", http_json_string_or_null(m->sender));
	api_tracking_set(o, "recipients", api_tracking_strings(m->recipients, m->nrecipients));
	api_tracking_set(o, "subject", http_json_string_or_null(m->subject));
	api_tracking_set(o, "message_id", http_json_string_or_null(m->message_id));
	api_tracking_set(o, "client_ip", http_json_string_or_null(m->client_ip));
	api_tracking_set(o, "last_state", http_json_string_or_null(m->last_state));
	return o;
}

/* ---- GET /api/v1/tracking/messages ---- */

struct api_tracking_search {
	struct store *st;
	char *values[sizeof(api_tracking_keys) / sizeof(api_tracking_keys[0])];
	struct api_tracking_params p; /* points into values */
};

static void api_tracking_search_free(void *arg)
{
	struct api_tracking_search *s = arg;
	for (size_t i = 0; i < sizeof(s->values) / sizeof(s->values[0]); i++)
		free(s->values[i]);
	free(s);
}

/* api_tracking_query_fn over a request, keeping a copy of each value in s. */
struct api_tracking_req_query {
	struct http_server_request *req;
	struct api_tracking_search *s;
};

static const char *api_tracking_req_get(void *arg, const char *key, size_t *count)
{
	struct api_tracking_req_query *rq = arg;
	*count = http_server_request_query_count(rq->req, key);
	const char *v = http_server_request_query(rq->req, key);
	size_t i = 0;
	while (i < sizeof(api_tracking_keys) / sizeof(api_tracking_keys[0]) &&
	       strcmp(api_tracking_keys[i], key) != 0)
		i++;
	if (i == sizeof(api_tracking_keys) / sizeof(api_tracking_keys[0]))
		panic("api_tracking: query key %s not in api_tracking_keys", key);
	if (v == NULL)
		return NULL;
	free(rq->s->values[i]);
	rq->s->values[i] = xstrdup(v);
	return rq->s->values[i];
}

/* Reader thread: one page. */
static void api_tracking_search_work(void *arg, struct api_read_reply *out)
{
	struct api_tracking_search *s = arg;
	struct store_tracked_message **v = NULL;
	size_t n = 0;
	char *next = NULL;
	int rc = store_tracked_search(s->st, &s->p.q, s->p.limit, s->p.cursor, &v, &n, &next);
	if (rc == -EINVAL) {
		api_read_reply_error(out, 400, s->p.cursor != NULL ? "bad cursor" : "bad filter");
		return;
	}
	if (rc < 0) {
		api_read_reply_store_error(out, "store_tracked_search", rc);
		return;
	}
	json_t *list = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(list, api_tracking_message_json(v[i]));
	store_tracked_messages_free(v, n);
	api_read_reply_page(out, list, next);
}

static void api_tracking_search(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	if (!api_require_role(a, req, API_ROLE_ADMIN))
		return;
	struct api_tracking_search *s = xcalloc(1, sizeof(*s));
	s->st = api_store(a);
	struct api_tracking_req_query rq = {req, s};
	char *err = NULL;
	if (api_tracking_parse(api_tracking_req_get, &rq, &s->p, &err) < 0) {
		http_server_reply_error(req, 400, "%s", err);
		free(err);
		api_tracking_search_free(s);
		return;
	}
	api_read_submit(api_reads(a), req, "tracking", api_tracking_search_work, NULL, s,
			api_tracking_search_free);
}

/* ---- GET /api/v1/tracking/messages/{id} ---- */

struct api_tracking_show {
	struct store *st;
	char *gateway, *msg_id;
};

static void api_tracking_show_free(void *arg)
{
	struct api_tracking_show *s = arg;
	free(s->gateway);
	free(s->msg_id);
	free(s);
}

/* The headers a "received" event's detail carries, or null. */
static json_t *api_tracking_headers(const json_t *detail)
{
	json_t *h = json_object_get(detail, "headers");
	if (json_is_object(h))
		return json_incref(h);
	return NULL;
}

/* Reader thread: the story. */
static void api_tracking_show_work(void *arg, struct api_read_reply *out)
{
	struct api_tracking_show *s = arg;
	struct store_tracked_message *m = NULL;
	struct store_event_row *ev = NULL;
	size_t n = 0;
	int rc = store_tracked_story(s->st, s->gateway, s->msg_id, &m, &ev, &n);
	if (rc == -ENOENT) {
		api_read_reply_error(out, 404, "no such tracked message");
		return;
	}
	if (rc < 0) {
		api_read_reply_store_error(out, "store_tracked_story", rc);
		return;
	}
	json_t *body = api_tracking_message_json(m);
	api_tracking_set(body, "attachments",
			 api_tracking_strings(m->attachments, m->nattachments));
	api_tracking_set(body, "size", json_integer((json_int_t)m->size));
	json_t *headers = NULL, *helo = NULL;
	json_t *list = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *o = json_object();
		api_tracking_set(o, "at", api_tracking_time_json(ev[i].at));
		api_tracking_set(o, "type", json_string(ev[i].type));
		json_t *d = json_loads(ev[i].detail, 0, NULL);
		if (d == NULL)
			d = json_object(); /* stored checked; never expected */
		if (headers == NULL && strcmp(ev[i].type, "received") == 0 &&
		    strcmp(ev[i].gateway, m->gateway) == 0 && ev[i].msg_id != NULL &&
		    strcmp(ev[i].msg_id, m->msg_id) == 0) {
			headers = api_tracking_headers(d);
			json_t *h = json_object_get(d, "helo");
			if (json_is_string(h))
				helo = json_incref(h);
		}
		api_tracking_set(o, "detail", d);
		api_tracking_set(o, "gateway", json_string(ev[i].gateway));
		char *id =
		    ev[i].msg_id != NULL ? xasprintf("%s~%s", ev[i].gateway, ev[i].msg_id) : NULL;
		api_tracking_set(o, "message", http_json_string_or_null(id));
		free(id);
		json_array_append_new(list, o);
	}
	api_tracking_set(body, "events", list);
	api_tracking_set(body, "headers", headers != NULL ? headers : json_null());
	api_tracking_set(body, "helo", helo != NULL ? helo : json_null());
	store_event_rows_free(ev, n);
	store_tracked_message_free(m);
	api_read_reply_json(out, 200, body);
}

static void api_tracking_show(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	if (!api_require_role(a, req, API_ROLE_ADMIN))
		return;
	struct api_tracking_show *s = xcalloc(1, sizeof(*s));
	s->st = api_store(a);
	if (api_tracking_id_parse(http_server_request_param(req, "id"), &s->gateway, &s->msg_id) <
	    0) {
		http_server_reply_error(req, 404, "no such tracked message");
		api_tracking_show_free(s);
		return;
	}
	api_read_submit(api_reads(a), req, "tracking_show", api_tracking_show_work, NULL, s,
			api_tracking_show_free);
}

void api_tracking_register(struct api *a)
{
	static const struct http_server_route_row routes[] = {
	    {"GET", "/api/v1/tracking/messages", HTTP_SERVER_ROUTE_AUTH, api_tracking_search},
	    {"GET", "/api/v1/tracking/messages/{id}", HTTP_SERVER_ROUTE_AUTH, api_tracking_show},
	};
	http_server_route_table(api_http(a), routes, sizeof(routes) / sizeof(routes[0]), a);
}

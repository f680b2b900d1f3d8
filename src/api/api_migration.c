/*
 * api_migration — the mapping and the progress of a gateway's migration to
 * centralized PVO quarantines (api_migration.h).
 *
 * A gateway's token reads and reports only for its own registry entry: the
 * routes under /api/v1/gateway/ take the gateway from the token, never from the
 * request. The notify address of a report is checked like a scheduled report's
 * recipient (one address, no blanks, commas or line breaks) before anything is
 * stored, so it can go into a header as it is.
 */
#include "api/api_migration.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/unconst.h"
#include "common/xalloc.h"
#include "http/http_json.h"
#include "http/http_server.h"
#include "api/api.h"
#include "api/api_gateways.h"
#include "api/api_read.h"
#include "api/api_report_sched.h"
#include "quarantine/pvo_header.h"
#include "store/store.h"

static api_migration_kick_fn api_migration_kick;
static void *api_migration_kick_arg;

/* The longest mapping accepted, in pairs. */
#define API_MIGRATION_MAX_PAIRS 1000

static json_t *api_migration_time(int64_t ms)
{
	char buf[CLOCK_RFC3339_LEN];
	if (ms <= 0)
		return json_null();
	clock_format_rfc3339(ms, buf);
	return json_string(buf);
}

static const char *api_migration_state_name(enum store_migration_state s)
{
	return s == STORE_MIGRATION_DONE ? "done" : "running";
}

/* "pending" (tried again at next), "sent" or "failed" (refused for good, or given up). */
static const char *api_migration_notice_state(const struct store_migration_notice *n)
{
	return n->next > 0 ? "pending" : n->sent ? "sent" : "failed";
}

static json_t *api_migration_notice_json(const struct store_migration_notice *n)
{
	if (n->to == NULL)
		return json_null();
	bool pending = n->next > 0;
	json_t *reply = n->reply != NULL ? json_string(n->reply) : NULL;
	if (reply == NULL) /* none, or not UTF-8 */
		reply = json_null();
	json_t *o = json_pack("{s:s,s:s,s:i,s:o,s:o,s:o}", "to", n->to, "state",
			      api_migration_notice_state(n), "tries", n->tries, "next_try",
			      pending ? api_migration_time(n->next * 1000) : json_null(),
			      "last_try", api_migration_time(n->last_try * 1000), "reply", reply);
	if (o == NULL)
		panic("api_migration: out of memory");
	return o;
}

json_t *api_migration_json(const struct store_migration *m,
			   const struct store_migration_notice *notice)
{
	if (m == NULL || m->state == STORE_MIGRATION_NONE)
		return json_null();
	json_t *o =
	    json_pack("{s:s,s:I,s:I,s:I,s:o,s:o}", "state", api_migration_state_name(m->state),
		      "total", (json_int_t)m->total, "done", (json_int_t)m->done, "failed",
		      (json_int_t)m->failed, "started_at", api_migration_time(m->run),
		      "finished_at", api_migration_time(m->finished_at));
	if (o == NULL)
		panic("api_migration: out of memory");
	if (notice != NULL)
		json_object_set_new(o, "notice", api_migration_notice_json(notice));
	return o;
}

int64_t api_migration_notice_next(int tries, int64_t now)
{
	if (tries >= API_MIGRATION_NOTICE_TRIES)
		return 0;
	return now + api_sched_mail_backoff(tries);
}

/* A local name: 1..STORE_QUARANTINE_NAME_MAX bytes without control characters. */
static bool api_migration_local_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > STORE_QUARANTINE_NAME_MAX)
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
		if (*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

int api_migration_parse_mapping(const json_t *body, json_t **out, char **err)
{
	static const char *const sys[] = {"virus", "outbreak", "unclassified"};
	*out = NULL;
	*err = NULL;
	if (!json_is_object(body)) {
		*err = xstrdup("the mapping must be an object {\"Local\": \"Central\" | null}");
		return -EINVAL;
	}
	if (json_object_size(body) > API_MIGRATION_MAX_PAIRS) {
		*err =
		    xasprintf("the mapping has more than %d quarantines", API_MIGRATION_MAX_PAIRS);
		return -EINVAL;
	}
	if (json_object_size(body) == 0)
		return 0;
	json_t *clean = json_object();
	const char *key;
	json_t *v;
	json_t *each = unconst(body);
	json_object_foreach(each, key, v)
	{
		if (!api_migration_local_ok(key)) {
			*err = xasprintf("local quarantine name \"%.80s\" must be 1 to %d bytes "
					 "without control characters",
					 key, STORE_QUARANTINE_NAME_MAX);
			goto bad;
		}
		if (strcasecmp(key, "spam") == 0) {
			*err = xstrdup("local quarantine \"spam\" is not migrated: only policy, "
				       "virus and outbreak quarantines are");
			goto bad;
		}
		if (json_is_null(v)) {
			json_object_set_new(clean, key, json_null());
			continue;
		}
		const char *c = json_string_value(v);
		if (c == NULL || !pvo_header_name_ok(c)) {
			*err = xasprintf("\"%s\": the central quarantine must be null or 1 to %d "
					 "bytes of UTF-8 text without ; \" \\ = or control "
					 "characters, blanks at either end or a leading *",
					 key, STORE_QUARANTINE_NAME_MAX);
			goto bad;
		}
		if (strcasecmp(c, "spam") == 0) {
			*err = xasprintf("\"%s\": the central quarantine cannot be spam", key);
			goto bad;
		}
		const char *name = c;
		for (size_t i = 0; i < sizeof(sys) / sizeof(sys[0]); i++)
			if (strcasecmp(c, sys[i]) == 0)
				name = sys[i];
		json_object_set_new(clean, key, json_string(name));
	}
	*out = clean;
	return 0;
bad:
	json_decref(clean);
	return -EINVAL;
}

/* {"mode", "mapping"} of a stored mapping text (NULL: automatic). */
static json_t *api_migration_mapping_json(const char *text)
{
	json_t *m = NULL;
	if (text != NULL) {
		m = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
		if (!json_is_object(m)) {
			log_warn("api.mapping_unreadable", "length=%zu", strlen(text));
			json_decref(m);
			m = NULL;
		}
	}
	bool custom = m != NULL && json_object_size(m) > 0;
	return json_pack("{s:s,s:o}", "mode", custom ? "custom" : "automatic", "mapping",
			 m != NULL ? m : json_object());
}

static void api_migration_store_error(struct http_server_request *req, int rc)
{
	if (store_error_unavailable(rc)) {
		http_server_add_header(req, "Retry-After", API_STORE_UNAVAILABLE_RETRY);
		http_server_reply_error(req, 503, API_STORE_UNAVAILABLE_TEXT);
	} else {
		http_server_reply_error(req, 500, "the store failed (%s)", strerror(-rc));
	}
}

/* ---- admin: GET/PUT /api/v1/gateways/{name}/mapping ---- */

/* The registered gateway of req's {name}; answers 404 (or the store's error) when none. */
static struct store_gateway *api_migration_gateway(struct api *a, struct http_server_request *req)
{
	const char *name = http_server_request_param(req, "name");
	struct store_gateway *g = NULL;
	int rc = name != NULL ? store_gateway_get(api_store(a), name, &g) : -ENOENT;
	if (rc == 0 && g->state == STORE_GATEWAY_PENDING) {
		http_server_reply_error(req, 409, "gateway \"%s\" is pending: register it first",
					g->name);
		store_gateway_free(g);
		return NULL;
	}
	if (rc == -ENOENT)
		http_server_reply_error(req, 404, "no such gateway");
	else if (rc < 0)
		api_migration_store_error(req, rc);
	return rc == 0 ? g : NULL;
}

static json_t *api_migration_mapping_reply(const struct store_gateway *g, const char *text)
{
	json_t *o = api_migration_mapping_json(text);
	json_object_set_new(o, "gateway", json_string(g->name));
	return o;
}

static void api_migration_mapping_get(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	if (!api_require_role(a, req, API_ROLE_ADMIN))
		return;
	struct store_gateway *g = api_migration_gateway(a, req);
	if (g == NULL)
		return;
	http_server_reply_json(req, 200, api_migration_mapping_reply(g, g->mapping));
	store_gateway_free(g);
}

static void api_migration_mapping_put(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	json_t *body = NULL, *clean = NULL;
	char *err = NULL, *text = NULL;
	struct store_gateway *g = NULL;
	if (!api_require_role(a, req, API_ROLE_ADMIN))
		return;
	if (http_server_request_json_object(req, api_current_config(a)->max_body, &body) < 0)
		return;
	if (api_migration_parse_mapping(body, &clean, &err) < 0) {
		http_server_reply_error(req, 400, "%s", err);
		goto done;
	}
	if (clean != NULL) {
		text = json_dumps(clean, JSON_COMPACT | JSON_SORT_KEYS);
		if (text == NULL || strlen(text) > STORE_GATEWAY_MAPPING_MAX) {
			http_server_reply_error(req, 400, "the mapping is longer than %d bytes",
						STORE_GATEWAY_MAPPING_MAX);
			goto done;
		}
	}
	g = api_migration_gateway(a, req);
	if (g == NULL)
		goto done;
	struct store_migration busy = {0};
	int rc = store_gateway_set_mapping(api_store(a), g->name, text, &busy);
	if (rc == -EBUSY) {
		http_server_reply_error(req, 409,
					"gateway %s is migrating (%lld/%lld); change the mapping "
					"when it has finished",
					g->name, (long long)busy.done, (long long)busy.total);
		goto done;
	}
	if (rc == -ENOENT) {
		http_server_reply_error(req, 404, "no such gateway");
		goto done;
	}
	if (rc < 0) {
		api_migration_store_error(req, rc);
		goto done;
	}
	char q[300];
	log_info("api.gateway_mapping", "gateway=%s mode=%s pairs=%zu by=%s",
		 log_quote(q, sizeof(q), g->name), clean != NULL ? "custom" : "automatic",
		 clean != NULL ? json_object_size(clean) : 0, api_actor(a, req)->username);
	json_t *reply = api_migration_mapping_reply(g, text);
	api_audit(a, req, "gateway_mapping", g->name,
		  json_pack("{s:O,s:O}", "mode", json_object_get(reply, "mode"), "mapping",
			    json_object_get(reply, "mapping")));
	http_server_reply_json(req, 200, reply);
done:
	store_gateway_free(g);
	free(text);
	free(err);
	json_decref(clean);
	json_decref(body);
}

/* ---- the gateway's own: GET /api/v1/gateway/mapping, POST /api/v1/gateway/migration ---- */

/* The gateway of req's token; answers 401 or the store's error when none. */
static struct store_gateway *api_migration_token(struct api *a, struct http_server_request *req)
{
	struct store_gateway *g = NULL;
	int rc = api_gateways_authenticate(a, req, &g);
	if (rc == -ENOENT)
		http_server_reply_error(req, 401, "a valid gateway token is required");
	else if (rc < 0)
		api_migration_store_error(req, rc);
	return rc == 0 ? g : NULL;
}

static void api_migration_gateway_mapping(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	struct store_gateway *g = api_migration_token(a, req);
	if (g == NULL)
		return;
	http_server_reply_json(req, 200, api_migration_mapping_json(g->mapping));
	store_gateway_free(g);
}

/* A count of the report: a JSON integer 0..2^53. */
static int api_migration_count(const json_t *body, const char *key, int64_t *out, char **err)
{
	const json_t *v = json_object_get(body, key);
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) > (1LL << 53)) {
		*err = xasprintf("\"%s\" is required: a number of messages (0 or more)", key);
		return -EINVAL;
	}
	*out = json_integer_value(v);
	return 0;
}

/* Checks a progress report; *notify points into body (NULL: none). 0 or -EINVAL with *err. */
static int api_migration_parse_report(const json_t *body, struct store_migration *r,
				      const char **notify, char **err)
{
	static const char *const allowed[] = {"run",	"state",  "total", "done",
					      "failed", "notify", NULL};
	memset(r, 0, sizeof(*r));
	*notify = NULL;
	*err = NULL;
	if (http_json_check_keys(body, allowed, err) < 0)
		return -EINVAL;
	const char *run = json_string_value(json_object_get(body, "run"));
	if (run == NULL || clock_parse_rfc3339(run, &r->run) < 0 || r->run <= 0) {
		*err = xstrdup("\"run\" is required: the RFC 3339 time the run started");
		return -EINVAL;
	}
	const char *state = json_string_value(json_object_get(body, "state"));
	if (state != NULL && strcmp(state, "running") == 0) {
		r->state = STORE_MIGRATION_RUNNING;
	} else if (state != NULL && strcmp(state, "done") == 0) {
		r->state = STORE_MIGRATION_DONE;
	} else {
		*err = xstrdup("\"state\" is required: \"running\" or \"done\"");
		return -EINVAL;
	}
	if (api_migration_count(body, "total", &r->total, err) < 0 ||
	    api_migration_count(body, "done", &r->done, err) < 0 ||
	    api_migration_count(body, "failed", &r->failed, err) < 0)
		return -EINVAL;
	if (r->done + r->failed > r->total) {
		*err = xstrdup("\"done\" and \"failed\" together cannot be more than \"total\"");
		return -EINVAL;
	}
	const json_t *n = json_object_get(body, "notify");
	if (n != NULL && !json_is_null(n)) {
		*notify = json_string_value(n);
		if (*notify == NULL || !api_sched_address_ok(*notify)) {
			*err = xstrdup("\"notify\" must be null or one mail address (no blanks, "
				       "commas or line breaks)");
			return -EINVAL;
		}
	}
	return 0;
}

void api_migration_notice_mail(const struct store_migration_notice *n, char **subject, char **text)
{
	char start[CLOCK_RFC3339_LEN], end[CLOCK_RFC3339_LEN];
	const char *gateway = n->gateway != NULL ? n->gateway : "-";
	const struct store_migration *m = &n->m;
	clock_format_rfc3339(m->run, start);
	clock_format_rfc3339(m->finished_at, end);
	*subject = xasprintf("[Lazaret] 移行完了 / Migration finished: %s", gateway);
	*text = xasprintf("ゲートウェイ %s の隔離メッセージの移行が終わりました。\n"
			  "\n"
			  "  対象:     %lld 通\n"
			  "  移行済み: %lld 通\n"
			  "  失敗:     %lld 通\n"
			  "  開始:     %s\n"
			  "  終了:     %s\n"
			  "\n"
			  "The gateway %s has finished migrating its quarantined "
			  "messages to the manager.\n"
			  "\n"
			  "  Total:    %lld\n"
			  "  Moved:    %lld\n"
			  "  Failed:   %lld\n"
			  "  Started:  %s\n"
			  "  Finished: %s\n",
			  gateway, (long long)m->total, (long long)m->done, (long long)m->failed,
			  start, end, gateway, (long long)m->total, (long long)m->done,
			  (long long)m->failed, start, end);
}

static void api_migration_report(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	json_t *body = NULL;
	char *err = NULL;
	if (!api_request_guard(a, req))
		return;
	struct store_gateway *g = api_migration_token(a, req);
	if (g == NULL)
		return;
	if (http_server_request_json_object(req, api_current_config(a)->max_body, &body) < 0)
		goto done;
	struct store_migration r, out;
	const char *notify = NULL;
	if (api_migration_parse_report(body, &r, &notify, &err) < 0) {
		http_server_reply_error(req, 400, "%s", err);
		goto done;
	}
	bool first_done = false;
	int rc = store_gateway_migration_report(api_store(a), g->name, &r, notify, clock_now_ms(),
						&out, &first_done);
	if (rc == -ENOENT) {
		/* removed since its token was read */
		http_server_reply_error(req, 401, "a valid gateway token is required");
		goto done;
	}
	if (rc < 0) {
		api_migration_store_error(req, rc);
		goto done;
	}
	char q[300];
	log_info("api.migration_progress", "gateway=%s state=%s total=%lld done=%lld failed=%lld",
		 log_quote(q, sizeof(q), g->name), api_migration_state_name(out.state),
		 (long long)out.total, (long long)out.done, (long long)out.failed);
	if (first_done && notify != NULL) {
		/* recorded with the state: the sender mails it, now or after a restart */
		log_info("api.migration_notice", "gateway=%s to=%s",
			 log_quote(q, sizeof(q), g->name), notify);
		if (api_migration_kick != NULL)
			api_migration_kick(api_migration_kick_arg);
	}
	http_server_reply_json(req, 200,
			       json_pack("{s:o}", "migration", api_migration_json(&out, NULL)));
done:
	store_gateway_free(g);
	free(err);
	json_decref(body);
}

void api_migration_register(struct api *a, api_migration_kick_fn kick, void *kick_arg)
{
	api_migration_kick = kick;
	api_migration_kick_arg = kick_arg;
	static const struct http_server_route_row routes[] = {
	    {"GET", "/api/v1/gateways/{name}/mapping", HTTP_SERVER_ROUTE_AUTH,
	     api_migration_mapping_get},
	    {"PUT", "/api/v1/gateways/{name}/mapping", HTTP_SERVER_ROUTE_AUTH,
	     api_migration_mapping_put},
	    /* Public to the router: the gateway's token is checked by the handler. */
	    {"GET", "/api/v1/gateway/mapping", HTTP_SERVER_ROUTE_PUBLIC,
	     api_migration_gateway_mapping},
	    {"POST", "/api/v1/gateway/migration", HTTP_SERVER_ROUTE_PUBLIC, api_migration_report},
	};
	http_server_route_table(api_http(a), routes, sizeof(routes) / sizeof(routes[0]), a);
}

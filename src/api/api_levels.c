/*
 * api_levels — centralization levels and the managed gateway's settings
 * (api_levels.h).
 *
 * A change is checked and written under one lock (also held by a registration,
 * api_levels_hold), so that two admins cannot both pass the check with settings
 * that conflict once both are written. The lock is this process's: managers
 * sharing a PostgreSQL database each hold their own.
 */
#include "api/api_levels.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
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
#include "store/store.h"

static pthread_mutex_t api_levels_lock = PTHREAD_MUTEX_INITIALIZER;

void api_levels_hold(void)
{
	pthread_mutex_lock(&api_levels_lock);
}

void api_levels_release(void)
{
	pthread_mutex_unlock(&api_levels_lock);
}

/* cluster 0, group 1, machine 2: the higher, the closer to the gateway */
static int api_levels_rank(const char *level)
{
	return strcmp(level, "cluster") == 0 ? 0 : strcmp(level, "group") == 0 ? 1 : 2;
}

/* The name g has at level (its cluster, group or own name), or NULL. */
static const char *api_levels_name_of(const struct store_gateway *g, int rank)
{
	return rank == 0 ? g->cluster : rank == 1 ? g->group : g->name;
}

static const struct store_level *api_levels_find(const struct store_level *v, size_t n, int rank,
						 const char *name)
{
	if (name == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (api_levels_rank(v[i].level) == rank && strcasecmp(v[i].name, name) == 0)
			return &v[i];
	return NULL;
}

void api_levels_resolve(const struct store_level *v, size_t n, const struct store_gateway *g,
			struct api_levels_effective *out)
{
	memset(out, 0, sizeof(*out));
	out->pvo = out->reporting = out->tracking = STORE_LEVEL_UNSET;
	/* cluster first, each closer level overriding */
	for (int rank = 0; rank <= 2; rank++) {
		const struct store_level *l =
		    api_levels_find(v, n, rank, api_levels_name_of(g, rank));
		if (l == NULL)
			continue;
		if (l->pvo != STORE_LEVEL_UNSET) {
			out->pvo = l->pvo;
			out->from[0] = l;
		}
		if (l->reporting != STORE_LEVEL_UNSET) {
			out->reporting = l->reporting;
			out->from[1] = l;
		}
		if (l->tracking != STORE_LEVEL_UNSET) {
			out->tracking = l->tracking;
			out->from[2] = l;
		}
		if (l->filters != NULL) {
			out->filters = l->filters;
			out->from[3] = l;
		}
	}
}

static bool api_levels_member(const struct store_gateway *g, int rank, const char *name)
{
	const char *mine = api_levels_name_of(g, rank);
	return mine != NULL && strcasecmp(mine, name) == 0;
}

/* The conflict of key (0 pvo, 3 filters) set at next with another level of member g. */
static char *api_levels_key_conflict(const struct store_level *v, size_t n,
				     const struct store_gateway *g, const struct store_level *next,
				     int key)
{
	static const char *const names[] = {"pvo", NULL, NULL, "filters"};
	int rank = api_levels_rank(next->level);
	for (int other = 0; other <= 2; other++) {
		if (other == rank)
			continue;
		const struct store_level *l =
		    api_levels_find(v, n, other, api_levels_name_of(g, other));
		if (l == NULL)
			continue;
		bool set = key == 0 ? l->pvo != STORE_LEVEL_UNSET : l->filters != NULL;
		if (!set)
			continue;
		if (other < rank)
			return xasprintf("\"%s\" is set at %s \"%s\", which gateway \"%s\" belongs "
					 "to; it may not be set again below it (at %s \"%s\")",
					 names[key], l->level, l->name, g->name, next->level,
					 next->name);
		return xasprintf("\"%s\" is set at %s \"%s\" (gateway \"%s\"), below %s \"%s\"; "
				 "remove it there before setting it here",
				 names[key], l->level, l->name, g->name, next->level, next->name);
	}
	return NULL;
}

char *api_levels_conflict(const struct store_level *v, size_t n, struct store_gateway *const *gw,
			  size_t ngw, const struct store_level *next, int set_pvo, int set_filters)
{
	int rank = api_levels_rank(next->level);
	for (size_t i = 0; i < ngw; i++) {
		const struct store_gateway *g = gw[i];
		if (g->state != STORE_GATEWAY_REGISTERED || !api_levels_member(g, rank, next->name))
			continue;
		char *msg = NULL;
		if (set_pvo)
			msg = api_levels_key_conflict(v, n, g, next, 0);
		if (msg == NULL && set_filters)
			msg = api_levels_key_conflict(v, n, g, next, 3);
		if (msg != NULL)
			return msg;
	}
	if (set_pvo && next->pvo == 1 && rank < 2) {
		for (size_t i = 0; i < ngw; i++) {
			const struct store_gateway *g = gw[i];
			if (g->state == STORE_GATEWAY_PENDING &&
			    api_levels_member(g, rank, next->name))
				return xasprintf(
				    "gateway \"%s\" names %s \"%s\" but is not registered "
				    "(pending); "
				    "register it before enabling \"pvo\" at this level",
				    g->name, next->level, next->name);
		}
	}
	return NULL;
}

char *api_levels_joining(const struct store_level *v, size_t n, const struct store_gateway *g)
{
	static const char *const names[] = {"pvo", "filters"};
	for (int key = 0; key < 2; key++) {
		const struct store_level *first = NULL;
		for (int rank = 0; rank <= 2; rank++) {
			const struct store_level *l =
			    api_levels_find(v, n, rank, api_levels_name_of(g, rank));
			bool set = l != NULL &&
				   (key == 0 ? l->pvo != STORE_LEVEL_UNSET : l->filters != NULL);
			if (!set)
				continue;
			if (first != NULL)
				return xasprintf(
				    "\"%s\" is set at %s \"%s\" and again below it at %s "
				    "\"%s\"; gateway \"%s\" cannot be in both",
				    names[key], first->level, first->name, l->level, l->name,
				    g->name);
			first = l;
		}
	}
	return NULL;
}

/* ---- JSON ---- */

static json_t *api_levels_flag(int v)
{
	return v == STORE_LEVEL_UNSET ? json_null() : json_boolean(v);
}

static json_t *api_levels_from(const struct store_level *l)
{
	if (l == NULL)
		return json_null();
	return json_pack("{s:s,s:s}", "level", l->level, "name", l->name);
}

static json_t *api_levels_settings(int pvo, int reporting, int tracking, const char *filters)
{
	return json_pack("{s:o,s:o,s:o,s:o}", "pvo", api_levels_flag(pvo), "reporting",
			 api_levels_flag(reporting), "tracking", api_levels_flag(tracking),
			 "filters", http_json_string_or_null(filters));
}

static json_t *api_levels_effective_json(const struct store_level *v, size_t n,
					 const struct store_gateway *g)
{
	struct api_levels_effective e;
	api_levels_resolve(v, n, g, &e);
	return json_pack("{s:o,s:{s:o,s:o,s:o,s:o}}", "settings",
			 api_levels_settings(e.pvo, e.reporting, e.tracking, e.filters), "from",
			 "pvo", api_levels_from(e.from[0]), "reporting", api_levels_from(e.from[1]),
			 "tracking", api_levels_from(e.from[2]), "filters",
			 api_levels_from(e.from[3]));
}

static void api_levels_store_error(struct http_server_request *req, int rc)
{
	http_server_reply_error(req, store_error_unavailable(rc) ? 503 : 500,
				"the store failed (%s)", strerror(-rc));
}

/* One entry of GET /api/v1/levels: its settings (all null when none), members. */
static json_t *api_levels_entry(const char *level, const char *name, const struct store_level *l,
				struct store_gateway *const *gw, size_t ngw)
{
	json_t *members = json_array(), *pending = json_array();
	int rank = api_levels_rank(level);
	for (size_t i = 0; i < ngw; i++) {
		if (!api_levels_member(gw[i], rank, name))
			continue;
		json_array_append_new(gw[i]->state == STORE_GATEWAY_PENDING ? pending : members,
				      json_string(gw[i]->name));
	}
	json_t *o =
	    json_pack("{s:s,s:s,s:o,s:o,s:o}", "level", level, "name", name, "settings",
		      l != NULL ? api_levels_settings(l->pvo, l->reporting, l->tracking, l->filters)
				: api_levels_settings(STORE_LEVEL_UNSET, STORE_LEVEL_UNSET,
						      STORE_LEVEL_UNSET, NULL),
		      "members", members, "pending", pending);
	char buf[CLOCK_RFC3339_LEN];
	if (l != NULL && l->updated_at > 0) {
		clock_format_rfc3339(l->updated_at, buf);
		json_object_set_new(o, "updated_at", json_string(buf));
	} else {
		json_object_set_new(o, "updated_at", json_null());
	}
	return o;
}

/* Whether list already has an entry for (level, name). */
static bool api_levels_listed(json_t *list, const char *level, const char *name)
{
	size_t i;
	json_t *e;
	json_array_foreach(list, i, e)
	{
		if (strcmp(json_string_value(json_object_get(e, "level")), level) == 0 &&
		    strcasecmp(json_string_value(json_object_get(e, "name")), name) == 0)
			return true;
	}
	return false;
}

static void api_levels_list(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	if (!api_require_role(a, req, API_ROLE_ADMIN))
		return;
	struct store_level *v = NULL;
	size_t n = 0;
	struct store_gateway **gw = NULL;
	size_t ngw = 0;
	int rc = store_level_list(api_store(a), &v, &n);
	if (rc == 0)
		rc = store_gateway_list(api_store(a), &gw, &ngw);
	if (rc < 0) {
		api_levels_store_error(req, rc);
		goto done;
	}
	json_t *levels = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(levels,
				      api_levels_entry(v[i].level, v[i].name, &v[i], gw, ngw));
	/* the groups and clusters gateways name, with nothing set at them yet */
	for (int rank = 0; rank <= 1; rank++) {
		const char *level = rank == 0 ? "cluster" : "group";
		for (size_t i = 0; i < ngw; i++) {
			const char *name = api_levels_name_of(gw[i], rank);
			if (name != NULL && !api_levels_listed(levels, level, name))
				json_array_append_new(levels,
						      api_levels_entry(level, name, NULL, gw, ngw));
		}
	}
	json_t *gateways = json_array();
	for (size_t i = 0; i < ngw; i++) {
		json_t *o = api_gateways_json(gw[i]);
		json_t *eff = gw[i]->state == STORE_GATEWAY_REGISTERED
				  ? api_levels_effective_json(v, n, gw[i])
				  : NULL;
		json_object_set_new(o, "effective", eff != NULL ? eff : json_null());
		json_array_append_new(gateways, o);
	}
	http_server_reply_json(req, 200,
			       json_pack("{s:o,s:o}", "levels", levels, "gateways", gateways));
done:
	store_level_array_free(v, n);
	store_gateway_array_free(gw, ngw);
}

/*
 * One key of a PUT body into *out: absent leaves it, null unsets it, a boolean
 * sets it. *given says whether the body had the key with a value.
 */
static int api_levels_body_flag(const json_t *body, const char *key, int *out, bool *given,
				char **err)
{
	const json_t *v = json_object_get(body, key);
	*given = false;
	if (v == NULL)
		return 0;
	if (json_is_null(v)) {
		*out = STORE_LEVEL_UNSET;
		return 0;
	}
	if (!json_is_boolean(v)) {
		*err = xasprintf("\"%s\" must be true, false or null", key);
		return -EINVAL;
	}
	*out = json_is_true(v) ? 1 : 0;
	*given = true;
	return 0;
}

static void api_levels_put(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	json_t *body = NULL;
	char *err = NULL, *conflict = NULL;
	struct store_level *v = NULL;
	size_t n = 0;
	struct store_gateway **gw = NULL;
	size_t ngw = 0;
	bool locked = false;
	if (!api_require_role(a, req, API_ROLE_ADMIN))
		return;
	const char *level = http_server_request_param(req, "level");
	const char *name = http_server_request_param(req, "name");
	if (!store_level_kind_ok(level)) {
		http_server_reply_error(req, 404, "no such level (cluster, group or machine)");
		return;
	}
	if (name == NULL || !store_gateway_name_ok(name)) {
		http_server_reply_error(req, 422,
					"the name must be 1 to %d letters, digits, '.', '-' or '_'",
					STORE_GATEWAY_LEVEL_MAX);
		return;
	}
	if (http_server_request_json_object(req, api_current_config(a)->max_body, &body) < 0)
		return;
	static const char *const allowed[] = {"pvo", "reporting", "tracking", "filters", NULL};
	if (http_json_check_keys(body, allowed, &err) < 0) {
		http_server_reply_error(req, 422, "%s", err);
		goto done;
	}
	const json_t *fv = json_object_get(body, "filters");
	if (fv != NULL && !json_is_null(fv) && !json_is_string(fv)) {
		http_server_reply_error(req, 422, "\"filters\" must be rule text or null");
		goto done;
	}
	if (json_is_string(fv) && json_string_length(fv) > STORE_LEVEL_FILTERS_MAX) {
		http_server_reply_error(req, 422, "\"filters\" is longer than %d bytes",
					STORE_LEVEL_FILTERS_MAX);
		goto done;
	}
	pthread_mutex_lock(&api_levels_lock);
	locked = true;
	int rc = store_level_list(api_store(a), &v, &n);
	if (rc == 0)
		rc = store_gateway_list(api_store(a), &gw, &ngw);
	if (rc < 0) {
		api_levels_store_error(req, rc);
		goto done;
	}
	struct store_gateway *self = NULL;
	if (strcmp(level, "machine") == 0) {
		for (size_t i = 0; i < ngw; i++)
			if (gw[i]->state == STORE_GATEWAY_REGISTERED &&
			    strcasecmp(gw[i]->name, name) == 0)
				self = gw[i];
		if (self == NULL) {
			http_server_reply_error(req, 404, "no registered gateway \"%s\"", name);
			goto done;
		}
		name = self->name;
	}
	const struct store_level *cur = api_levels_find(v, n, api_levels_rank(level), name);
	struct store_level next = {
	    .level = unconst(level),
	    .name = unconst(cur != NULL ? cur->name : name),
	    .pvo = cur != NULL ? cur->pvo : STORE_LEVEL_UNSET,
	    .reporting = cur != NULL ? cur->reporting : STORE_LEVEL_UNSET,
	    .tracking = cur != NULL ? cur->tracking : STORE_LEVEL_UNSET,
	    .filters = cur != NULL ? cur->filters : NULL,
	    .updated_at = clock_now_ms(),
	};
	bool set_pvo, set_reporting, set_tracking;
	if (api_levels_body_flag(body, "pvo", &next.pvo, &set_pvo, &err) < 0 ||
	    api_levels_body_flag(body, "reporting", &next.reporting, &set_reporting, &err) < 0 ||
	    api_levels_body_flag(body, "tracking", &next.tracking, &set_tracking, &err) < 0) {
		http_server_reply_error(req, 422, "%s", err);
		goto done;
	}
	bool set_filters = json_is_string(fv);
	if (fv != NULL)
		next.filters = json_is_string(fv) ? unconst(json_string_value(fv)) : NULL;
	conflict = api_levels_conflict(v, n, gw, ngw, &next, set_pvo, set_filters);
	if (conflict != NULL) {
		http_server_reply_error(req, 409, "%s", conflict);
		goto done;
	}
	rc = store_level_put(api_store(a), &next);
	if (rc < 0) {
		if (rc == -EINVAL)
			http_server_reply_error(req, 422, "the settings cannot be stored");
		else
			api_levels_store_error(req, rc);
		goto done;
	}
	pthread_mutex_unlock(&api_levels_lock);
	locked = false;
	char q[300];
	log_info("api.level_set", "level=%s name=%s by=%s", level, log_quote(q, sizeof(q), name),
		 api_actor(a, req)->username);
	json_t *detail = json_deep_copy(body);
	api_audit(a, req, "level_set", name,
		  json_pack("{s:s,s:o}", "level", level, "settings",
			    detail != NULL ? detail : json_object()));
	/* the written row: the whole entry, as GET lists it */
	json_t *entry = api_levels_entry(level, next.name, &next, gw, ngw);
	http_server_reply_json(req, 200, json_pack("{s:o}", "level", entry));
done:
	if (locked)
		pthread_mutex_unlock(&api_levels_lock);
	store_level_array_free(v, n);
	store_gateway_array_free(gw, ngw);
	free(conflict);
	free(err);
	json_decref(body);
}

static void api_levels_delete(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	struct store_level *v = NULL;
	size_t n = 0;
	if (!api_require_role(a, req, API_ROLE_ADMIN))
		return;
	const char *level = http_server_request_param(req, "level");
	const char *name = http_server_request_param(req, "name");
	if (!store_level_kind_ok(level) || name == NULL || !store_gateway_name_ok(name)) {
		http_server_reply_error(req, 404, "nothing is set at this level");
		return;
	}
	pthread_mutex_lock(&api_levels_lock);
	int rc = store_level_list(api_store(a), &v, &n);
	const struct store_level *cur =
	    rc == 0 ? api_levels_find(v, n, api_levels_rank(level), name) : NULL;
	if (rc == 0 && cur == NULL) {
		http_server_reply_error(req, 404, "nothing is set at this level");
	} else if (rc == 0) {
		struct store_level none = {.level = cur->level,
					   .name = cur->name,
					   .pvo = STORE_LEVEL_UNSET,
					   .reporting = STORE_LEVEL_UNSET,
					   .tracking = STORE_LEVEL_UNSET,
					   .updated_at = clock_now_ms()};
		rc = store_level_put(api_store(a), &none);
		if (rc == 0) {
			api_audit(a, req, "level_remove", cur->name,
				  json_pack("{s:s}", "level", cur->level));
			http_server_reply_json(req, 200, json_object());
		}
	}
	pthread_mutex_unlock(&api_levels_lock);
	if (rc < 0)
		api_levels_store_error(req, rc);
	store_level_array_free(v, n);
}

/* GET /api/v1/gateway/config: a registered gateway's own settings, with its token. */
static void api_levels_gateway_config(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	struct store_gateway *g = NULL;
	struct store_level *v = NULL;
	size_t n = 0;
	int rc = api_gateways_authenticate(a, req, &g);
	if (rc == -ENOENT) {
		http_server_reply_error(req, 401, "a valid gateway token is required");
		return;
	}
	if (rc == 0)
		rc = store_level_list(api_store(a), &v, &n);
	if (rc < 0) {
		if (store_error_unavailable(rc))
			http_server_add_header(req, "Retry-After", API_STORE_UNAVAILABLE_RETRY);
		api_levels_store_error(req, rc);
		goto done;
	}
	json_t *o = api_levels_effective_json(v, n, g);
	json_object_set_new(o, "gateway", json_string(g->name));
	json_object_set_new(o, "group", http_json_string_or_null(g->group));
	json_object_set_new(o, "cluster", http_json_string_or_null(g->cluster));
	http_server_reply_json(req, 200, o);
done:
	store_level_array_free(v, n);
	store_gateway_free(g);
}

void api_levels_register(struct api *a)
{
	static const struct http_server_route_row routes[] = {
	    {"GET", "/api/v1/levels", HTTP_SERVER_ROUTE_AUTH, api_levels_list},
	    {"PUT", "/api/v1/levels/{level}/{name}", HTTP_SERVER_ROUTE_AUTH, api_levels_put},
	    {"DELETE", "/api/v1/levels/{level}/{name}", HTTP_SERVER_ROUTE_AUTH, api_levels_delete},
	    /* Public to the router: the gateway's token is checked by the handler. */
	    {"GET", "/api/v1/gateway/config", HTTP_SERVER_ROUTE_PUBLIC, api_levels_gateway_config},
	};
	http_server_route_table(api_http(a), routes, sizeof(routes) / sizeof(routes[0]), a);
}

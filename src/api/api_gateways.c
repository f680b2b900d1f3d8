/*
 * api_gateways — the gateway registry's endpoints (api_gateways.h): admins add,
 * list and remove gateways; gateways say hello with their own token.
 *
 * Tokens: a registration makes a random token (auth_token_new), answers it once
 * and keeps only its hash (auth_token_hash). A request's Bearer token is hashed,
 * the entry with that hash is looked up, and the hashes are compared again in
 * constant time (auth_token_equal), so that the lookup's index is not the only
 * check. The admin token is never a gateway's token.
 *
 * A hello without a valid token is 401, always. When it comes from an address in
 * pending_from, its name, address, group, cluster and version are recorded as a
 * pending entry first, for an admin to see and register; at most max_pending such
 * entries exist, and one address records or refreshes one at most once per
 * pending_interval (auth_ratelimit as a plain table), so callers without a token
 * cannot fill the store or keep its writer busy.
 *
 * Not for: storage (store_gateways.c), the gateway's side of the hello
 * (gateway/gw_hello.c), what the registry is used for (the PVO listener).
 */
#include "api/api_gateways.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/acl.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/unconst.h"
#include "common/xalloc.h"
#include "http/http_json.h"
#include "http/http_server.h"
#include "api/api.h"
#include "api/api_levels.h"
#include "api/api_migration.h"
#include "api/api_read.h"
#include "api/auth.h"
#include "quarantine/release.h"
#include "store/store.h"

struct api_gateways {
	struct api *api;
	struct acl *pending_from; /* NULL: no pending entries */
	size_t max_pending;
	int64_t pending_interval_ms;
	struct auth_ratelimit *pending_limit; /* per client address */
	void (*changed)(void *arg);	      /* see api_gateways_config */
	void *changed_arg;
};

static void api_gateways_changed(struct api_gateways *gw)
{
	if (gw->changed != NULL)
		gw->changed(gw->changed_arg);
}

static void api_gateways_set(json_t *obj, const char *key, json_t *v)
{
	if (v == NULL || json_object_set_new(obj, key, v) != 0)
		panic("api_gateways: cannot build JSON for \"%s\"", key);
}

static json_t *api_gateways_time(int64_t ms)
{
	char buf[CLOCK_RFC3339_LEN];
	if (ms <= 0)
		return json_null();
	clock_format_rfc3339(ms, buf);
	return json_string(buf);
}

/*
 * The last rescan: when, how many messages went back, and the gateway's verdicts
 * on them so far (pending: those it has not answered yet).
 */
static json_t *api_gateways_last_rescan(const struct store_gateway *g)
{
	uint64_t answered =
	    g->last_rescan_clean + g->last_rescan_kept + g->last_rescan_requarantined;
	uint64_t pending =
	    g->last_rescan_messages > answered ? g->last_rescan_messages - answered : 0;
	return json_pack("{s:o,s:I,s:I,s:I,s:I,s:I}", "at", api_gateways_time(g->last_rescan_at),
			 "messages", (json_int_t)g->last_rescan_messages, "clean",
			 (json_int_t)g->last_rescan_clean, "kept", (json_int_t)g->last_rescan_kept,
			 "requarantined", (json_int_t)g->last_rescan_requarantined, "pending",
			 (json_int_t)pending);
}

json_t *api_gateways_json(const struct store_gateway *g)
{
	json_t *o = json_object();
	if (o == NULL)
		panic("api_gateways: out of memory");
	api_gateways_set(o, "name", http_json_string_or_null(g->name));
	api_gateways_set(o, "state",
			 json_string(g->state == STORE_GATEWAY_PENDING ? "pending" : "registered"));
	api_gateways_set(o, "address", http_json_string_or_null(g->address));
	api_gateways_set(o, "group", http_json_string_or_null(g->group));
	api_gateways_set(o, "cluster", http_json_string_or_null(g->cluster));
	api_gateways_set(o, "release_port", json_integer(g->release_port));
	api_gateways_set(o, "created_at", api_gateways_time(g->created_at));
	api_gateways_set(o, "last_seen", api_gateways_time(g->last_seen));
	api_gateways_set(o, "version", http_json_string_or_null(g->version));
	/* what the gateway said in its last hello it runs with */
	api_gateways_set(o, "centralized",
			 json_pack("{s:b,s:b,s:b}", "pvo", (g->central & STORE_CENTRAL_PVO) != 0,
				   "reporting", (g->central & STORE_CENTRAL_REPORTING) != 0,
				   "tracking", (g->central & STORE_CENTRAL_TRACKING) != 0));
	/* its outbreak rules and their last change's rescan (docs/GATEWAY.md) */
	api_gateways_set(o, "outbreak_rules_version",
			 http_json_string_or_null(g->outbreak_version));
	api_gateways_set(o, "last_rescan",
			 g->last_rescan_at > 0 ? api_gateways_last_rescan(g) : json_null());
	api_gateways_set(o, "migration", api_migration_json(&g->migration, &g->notice));
	/* api_gateways_list fills these from the gateway's last event push */
	api_gateways_set(o, "event_backlog", json_null());
	api_gateways_set(o, "last_event_at", json_null());
	return o;
}

/* The event counters of the listed gateways into their JSON (list[i] is v[i]'s). */
static void api_gateways_event_states(struct api *a, struct store_gateway **v, size_t n,
				      json_t *list)
{
	struct store_event_state *es = NULL;
	size_t nes = 0;
	if (store_event_states(api_store(a), &es, &nes) < 0)
		return; /* the registry still lists; the counters stay null */
	for (size_t i = 0; i < n; i++) {
		for (size_t k = 0; k < nes; k++) {
			if (strcasecmp(v[i]->name, es[k].gateway) != 0)
				continue;
			json_t *o = json_array_get(list, i);
			if (es[k].backlog >= 0)
				api_gateways_set(o, "event_backlog", json_integer(es[k].backlog));
			api_gateways_set(o, "last_event_at",
					 api_gateways_time(es[k].last_event_at));
		}
	}
	store_event_states_free(es, nes);
}

/* ---- parsing bodies (no I/O) ---- */

#define API_GATEWAYS_CHARS "letters, digits, '.', '-' or '_'"

/* An optional group or cluster: absent or null is none. */
static int api_gateways_level(const json_t *body, const char *key, const char **out, char **err)
{
	*out = NULL;
	int rc = http_json_get_string(body, key, out, err);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	if (!store_gateway_name_ok(*out)) {
		*err = xasprintf("\"%s\" must be 1 to %d " API_GATEWAYS_CHARS, key,
				 STORE_GATEWAY_LEVEL_MAX);
		return -EINVAL;
	}
	return 0;
}

static int api_gateways_name(const json_t *body, const char **out, char **err)
{
	int rc = http_json_get_string(body, "name", out, err);
	if (rc == -ENOENT) {
		*err = xstrdup("\"name\" is required");
		return -EINVAL;
	}
	if (rc < 0)
		return rc;
	if (!store_gateway_name_ok(*out)) {
		*err = xasprintf("\"name\" must be 1 to %d " API_GATEWAYS_CHARS,
				 STORE_GATEWAY_NAME_MAX);
		return -EINVAL;
	}
	if (store_gateway_reserved(*out)) {
		*err = xasprintf("\"name\" \"%s\" is reserved for the manager's own events",
				 STORE_EVENTS_OWN_GATEWAY);
		return -EINVAL;
	}
	return 0;
}

int api_gateways_parse_new(const json_t *body, struct api_gateways_new *out, char **err)
{
	static const char *const allowed[] = {"name",	 "address",	 "group",
					      "cluster", "release_port", NULL};
	memset(out, 0, sizeof(*out));
	*err = NULL;
	int rc = http_json_check_keys(body, allowed, err);
	if (rc == 0)
		rc = api_gateways_name(body, &out->name, err);
	if (rc == 0) {
		rc = http_json_get_string(body, "address", &out->address, err);
		if (rc == -ENOENT)
			*err = xstrdup("\"address\" is required");
		char canon[STORE_GATEWAY_ADDRESS_MAX + 1];
		if (rc == 0 && store_gateway_address_canonical(out->address, canon) < 0) {
			*err = xstrdup("\"address\" must be an IPv4 or IPv6 address");
			rc = -EINVAL;
		}
	}
	if (rc == 0)
		rc = api_gateways_level(body, "group", &out->group, err);
	if (rc == 0)
		rc = api_gateways_level(body, "cluster", &out->cluster, err);
	if (rc == 0) {
		int64_t port = STORE_GATEWAY_DEFAULT_RELEASE_PORT;
		rc = http_json_get_int(body, "release_port", &port, NULL);
		if (rc == -ENOENT) {
			rc = 0;
		} else if (rc < 0 || port < 1 || port > 65535) {
			*err = xstrdup("\"release_port\" must be a port number (1 to 65535)");
			rc = -EINVAL;
		}
		out->release_port = (unsigned)port;
	}
	return rc < 0 ? -EINVAL : 0;
}

int api_gateways_parse_hello(const json_t *body, struct api_gateways_hello *out, char **err)
{
	static const char *const allowed[] = {
	    "name", "version", "group", "cluster", "centralized", "outbreak_rules_version", NULL};
	memset(out, 0, sizeof(*out));
	out->central = -1;
	*err = NULL;
	int rc = http_json_check_keys(body, allowed, err);
	const json_t *cz = json_object_get(body, "centralized");
	if (rc == 0 && cz != NULL && !json_is_null(cz)) {
		static const char *const keys[] = {"pvo", "reporting", "tracking", NULL};
		static const unsigned bits[] = {STORE_CENTRAL_PVO, STORE_CENTRAL_REPORTING,
						STORE_CENTRAL_TRACKING};
		rc = json_is_object(cz) ? http_json_check_keys(cz, keys, err) : -EINVAL;
		out->central = 0;
		for (size_t i = 0; rc == 0 && keys[i] != NULL; i++) {
			const json_t *b = json_object_get(cz, keys[i]);
			if (b != NULL && !json_is_boolean(b))
				rc = -EINVAL;
			else if (json_is_true(b))
				out->central |= (int)bits[i];
		}
		if (rc < 0 && *err == NULL)
			*err = xstrdup("\"centralized\" must be an object of booleans "
				       "{\"pvo\", \"reporting\", \"tracking\"}");
	}
	if (rc == 0)
		rc = api_gateways_name(body, &out->name, err);
	if (rc == 0) {
		rc = http_json_get_string(body, "version", &out->version, err);
		if (rc == -ENOENT) {
			out->version = NULL;
			rc = 0;
		} else if (rc == 0 && !store_gateway_version_ok(out->version)) {
			*err = xasprintf("\"version\" must be 1 to %d printable ASCII characters",
					 STORE_GATEWAY_VERSION_MAX);
			rc = -EINVAL;
		}
	}
	if (rc == 0)
		rc = api_gateways_level(body, "group", &out->group, err);
	if (rc == 0) {
		rc = http_json_get_string(body, "outbreak_rules_version", &out->outbreak_version,
					  err);
		if (rc == -ENOENT) {
			out->outbreak_version = NULL;
			rc = 0;
		} else if (rc == 0 && !store_gateway_version_ok(out->outbreak_version)) {
			*err = xasprintf("\"outbreak_rules_version\" must be 1 to %d printable "
					 "ASCII characters",
					 STORE_GATEWAY_VERSION_MAX);
			rc = -EINVAL;
		}
	}
	if (rc == 0)
		rc = api_gateways_level(body, "cluster", &out->cluster, err);
	return rc < 0 ? -EINVAL : 0;
}

/* ---- the gateway's token ---- */

/* The token of "Bearer <token>" when it can be a gateway's (AUTH_TOKEN_TEXT_LEN hex). */
static bool api_gateways_bearer(const char *authz, char out[AUTH_TOKEN_TEXT_LEN + 1])
{
	static const char scheme[] = "Bearer";
	if (authz == NULL || strncasecmp(authz, scheme, sizeof(scheme) - 1) != 0)
		return false;
	const char *p = authz + sizeof(scheme) - 1;
	if (*p != ' ' && *p != '\t')
		return false;
	p += strspn(p, " \t");
	size_t len = strspn(p, "0123456789abcdef");
	if (len != AUTH_TOKEN_TEXT_LEN || strspn(p + len, " \t") != strlen(p + len))
		return false;
	memcpy(out, p, AUTH_TOKEN_TEXT_LEN);
	out[AUTH_TOKEN_TEXT_LEN] = '\0';
	return true;
}

int api_gateways_authenticate(struct api *a, struct http_server_request *req,
			      struct store_gateway **out)
{
	if (out != NULL)
		*out = NULL;
	const char *authz = http_server_request_header(req, "Authorization");
	char token[AUTH_TOKEN_TEXT_LEN + 1];
	if (!api_gateways_bearer(authz, token))
		return -ENOENT;
	/* the admin token may look like one; it is still not a gateway's */
	if (http_server_bearer_ok(authz, api_current_config(a)->admin_token))
		return -ENOENT;
	char hash[AUTH_HASH_TEXT_LEN + 1];
	auth_token_hash(token, hash);
	struct store_gateway *g = NULL;
	int rc = store_gateway_get_by_token_hash(api_store(a), hash, &g);
	if (rc < 0) {
		if (rc != -ENOENT)
			log_error("api.gateway_lookup_failed", "error=%s", strerror(-rc));
		return rc;
	}
	if (!auth_token_equal(g->token_hash, hash)) {
		store_gateway_free(g);
		return -ENOENT;
	}
	if (out != NULL)
		*out = g;
	else
		store_gateway_free(g);
	return 0;
}

bool api_gateways_token_ok(struct api *a, struct http_server_request *req,
			   struct store_gateway **out)
{
	return api_gateways_authenticate(a, req, out) == 0;
}

/* ---- admin endpoints ---- */

static void api_gateways_add(struct http_server_request *req, void *arg)
{
	struct api_gateways *gw = arg;
	struct api *a = gw->api;
	json_t *body = NULL;
	char *err = NULL;
	struct store_gateway *made = NULL;
	if (!api_require_role(a, req, API_ROLE_ADMIN))
		return;
	if (http_server_request_json_object(req, api_current_config(a)->max_body, &body) < 0)
		return;
	struct api_gateways_new n;
	if (api_gateways_parse_new(body, &n, &err) < 0) {
		http_server_reply_error(req, 422, "%s", err);
		goto done;
	}
	char token[AUTH_TOKEN_TEXT_LEN + 1], hash[AUTH_HASH_TEXT_LEN + 1];
	auth_token_new(token);
	auth_token_hash(token, hash);
	struct store_gateway g = {
	    .name = unconst(n.name),
	    .address = unconst(n.address),
	    .group = unconst(n.group),
	    .cluster = unconst(n.cluster),
	    .release_port = n.release_port,
	    .token_hash = hash,
	    .created_at = clock_now_ms(),
	};
	/* its group and cluster may not both set what may be set at one level only */
	struct store_level *lv = NULL;
	size_t nlv = 0;
	char *why = NULL;
	api_levels_hold();
	int rc = store_level_list(api_store(a), &lv, &nlv);
	if (rc == 0) {
		why = api_levels_joining(lv, nlv, &g);
		store_level_array_free(lv, nlv);
		if (why == NULL)
			rc = store_gateway_add(api_store(a), &g);
	}
	api_levels_release();
	if (why != NULL) {
		http_server_reply_error(req, 409, "%s", why);
		free(why);
		goto done;
	}
	if (rc == -EEXIST) {
		http_server_reply_error(req, 409, "gateway \"%s\" exists already", n.name);
		goto done;
	}
	if (rc == -EADDRINUSE) {
		struct store_gateway *other = NULL;
		if (store_gateway_get_by_address(api_store(a), n.address, &other) == 0)
			http_server_reply_error(req, 409,
						"address %s is registered already (gateway \"%s\")",
						other->address, other->name);
		else
			http_server_reply_error(req, 409, "address %s is registered already",
						n.address);
		store_gateway_free(other);
		goto done;
	}
	if (rc < 0) {
		http_server_reply_error(req, store_error_unavailable(rc) ? 503 : 500,
					"the store failed (%s)", strerror(-rc));
		goto done;
	}
	rc = store_gateway_get(api_store(a), n.name, &made);
	if (rc < 0) {
		http_server_reply_error(req, 500, "the store failed (%s)", strerror(-rc));
		goto done;
	}
	char q[300];
	log_info("api.gateway_added", "gateway=%s address=%s by=%s",
		 log_quote(q, sizeof(q), made->name), made->address, api_actor(a, req)->username);
	api_audit(a, req, "gateway_add", made->name,
		  json_pack("{s:s,s:o,s:o,s:i}", "address", made->address, "group",
			    http_json_string_or_null(made->group), "cluster",
			    http_json_string_or_null(made->cluster), "release_port",
			    (int)made->release_port));
	api_gateways_changed(gw);
	/* the only time the token is shown: the store keeps its hash */
	http_server_reply_json(
	    req, 201, json_pack("{s:o,s:s}", "gateway", api_gateways_json(made), "token", token));
done:
	store_gateway_free(made);
	free(err);
	json_decref(body);
}

static void api_gateways_list(struct http_server_request *req, void *arg)
{
	struct api_gateways *gw = arg;
	struct api *a = gw->api;
	if (!api_require_role(a, req, API_ROLE_ADMIN))
		return;
	struct store_gateway **v = NULL;
	size_t n = 0;
	int rc = store_gateway_list(api_store(a), &v, &n);
	if (rc < 0) {
		http_server_reply_error(req, store_error_unavailable(rc) ? 503 : 500,
					"the store failed (%s)", strerror(-rc));
		return;
	}
	json_t *list = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(list, api_gateways_json(v[i]));
	api_gateways_event_states(a, v, n, list);
	store_gateway_array_free(v, n);
	http_server_reply_json(req, 200, json_pack("{s:o}", "gateways", list));
}

static void api_gateways_remove(struct http_server_request *req, void *arg)
{
	struct api_gateways *gw = arg;
	struct api *a = gw->api;
	if (!api_require_role(a, req, API_ROLE_ADMIN))
		return;
	const char *name = http_server_request_param(req, "name");
	struct store_gateway *g = NULL;
	int rc = name != NULL ? store_gateway_get(api_store(a), name, &g) : -ENOENT;
	if (rc == 0)
		rc = store_gateway_remove(api_store(a), g->name);
	if (rc == 0 && g->state == STORE_GATEWAY_REGISTERED) {
		/* its machine level goes with it */
		struct store_level none = {.level = "machine",
					   .name = g->name,
					   .pvo = STORE_LEVEL_UNSET,
					   .reporting = STORE_LEVEL_UNSET,
					   .tracking = STORE_LEVEL_UNSET,
					   .updated_at = clock_now_ms()};
		int lrc = store_level_put(api_store(a), &none);
		if (lrc < 0)
			log_warn("api.gateway_level_left", "gateway=%s error=%s", g->name,
				 strerror(-lrc));
	}
	if (rc == -ENOENT) {
		http_server_reply_error(req, 404, "no such gateway");
		goto done;
	}
	if (rc < 0) {
		http_server_reply_error(req, store_error_unavailable(rc) ? 503 : 500,
					"the store failed (%s)", strerror(-rc));
		goto done;
	}
	char q[300];
	log_info("api.gateway_removed", "gateway=%s state=%s by=%s",
		 log_quote(q, sizeof(q), g->name),
		 g->state == STORE_GATEWAY_PENDING ? "pending" : "registered",
		 api_actor(a, req)->username);
	api_gateways_changed(gw);
	api_audit(a, req, "gateway_remove", g->name,
		  json_pack("{s:s,s:s}", "address", g->address, "state",
			    g->state == STORE_GATEWAY_PENDING ? "pending" : "registered"));
	http_server_reply_json(req, 200, json_object());
done:
	store_gateway_free(g);
}

/* An optional group or cluster of a PATCH: absent leaves *out, null clears it. */
static int api_gateways_patch_level(const json_t *body, const char *key, const char **out,
				    char **err)
{
	const json_t *v = json_object_get(body, key);
	if (v == NULL)
		return 0;
	if (json_is_null(v)) {
		*out = NULL;
		return 0;
	}
	return api_gateways_level(body, key, out, err);
}

/* PATCH /api/v1/gateways/{name} {"group", "cluster"}: a gateway's membership. */
static void api_gateways_update(struct http_server_request *req, void *arg)
{
	struct api_gateways *gw = arg;
	struct api *a = gw->api;
	json_t *body = NULL;
	char *err = NULL, *why = NULL;
	struct store_gateway *g = NULL;
	struct store_level *lv = NULL;
	size_t nlv = 0;
	bool held = false;
	if (!api_require_role(a, req, API_ROLE_ADMIN))
		return;
	if (http_server_request_json_object(req, api_current_config(a)->max_body, &body) < 0)
		return;
	static const char *const allowed[] = {"group", "cluster", NULL};
	if (http_json_check_keys(body, allowed, &err) < 0) {
		http_server_reply_error(req, 422, "%s", err);
		goto done;
	}
	const char *name = http_server_request_param(req, "name");
	api_levels_hold();
	held = true;
	int rc = name != NULL ? store_gateway_get(api_store(a), name, &g) : -ENOENT;
	if (rc == -ENOENT) {
		http_server_reply_error(req, 404, "no such gateway");
		goto done;
	}
	if (rc < 0) {
		http_server_reply_error(req, store_error_unavailable(rc) ? 503 : 500,
					"the store failed (%s)", strerror(-rc));
		goto done;
	}
	if (g->state == STORE_GATEWAY_PENDING) {
		http_server_reply_error(req, 409, "gateway \"%s\" is pending: register it first",
					g->name);
		goto done;
	}
	const char *group = g->group, *cluster = g->cluster;
	if (api_gateways_patch_level(body, "group", &group, &err) < 0 ||
	    api_gateways_patch_level(body, "cluster", &cluster, &err) < 0) {
		http_server_reply_error(req, 422, "%s", err);
		goto done;
	}
	struct store_gateway next = *g;
	next.group = unconst(group);
	next.cluster = unconst(cluster);
	rc = store_level_list(api_store(a), &lv, &nlv);
	if (rc == 0) {
		why = api_levels_joining(lv, nlv, &next);
		if (why != NULL) {
			http_server_reply_error(req, 409, "%s", why);
			goto done;
		}
		rc = store_gateway_set_levels(api_store(a), g->name, group, cluster);
	}
	if (rc < 0) {
		http_server_reply_error(req,
					rc == -ENOENT		      ? 404
					: store_error_unavailable(rc) ? 503
								      : 500,
					"%s",
					rc == -ENOENT ? "no such gateway" : "the store failed");
		goto done;
	}
	api_levels_release();
	held = false;
	char q[300];
	log_info("api.gateway_updated", "gateway=%s group=%s cluster=%s by=%s",
		 log_quote(q, sizeof(q), g->name), group != NULL ? group : "-",
		 cluster != NULL ? cluster : "-", api_actor(a, req)->username);
	api_audit(a, req, "gateway_update", g->name,
		  json_pack("{s:o,s:o}", "group", http_json_string_or_null(group), "cluster",
			    http_json_string_or_null(cluster)));
	char *ng = group != NULL ? xstrdup(group) : NULL;
	char *nc = cluster != NULL ? xstrdup(cluster) : NULL;
	free(g->group);
	free(g->cluster);
	g->group = ng;
	g->cluster = nc;
	http_server_reply_json(req, 200, json_pack("{s:o}", "gateway", api_gateways_json(g)));
done:
	if (held)
		api_levels_release();
	store_level_array_free(lv, nlv);
	store_gateway_free(g);
	free(why);
	free(err);
	json_decref(body);
}

/* ---- the gateway-facing hello ---- */

/*
 * An unauthenticated hello from peer: records or refreshes its pending entry when
 * peer may (pending_from, the rate limit, the bound), and answers 401 saying what
 * happened.
 */
static void api_gateways_hello_pending(struct api_gateways *gw, struct http_server_request *req,
				       const struct api_gateways_hello *h)
{
	const char *peer = http_server_request_peer(req);
	int64_t now = clock_now_ms();
	char q[300];
	log_quote(q, sizeof(q), h->name);
	if (auth_ratelimit_check(gw->pending_limit, peer, NULL, now) > 0) {
		log_info("api.gateway_pending_limited", "gateway=%s peer=%s", q, peer);
		http_server_reply_error(
		    req, 401,
		    "gateway \"%s\" is not registered (hellos from this address "
		    "are recorded at most every %llds)",
		    h->name, (long long)(gw->pending_interval_ms / 1000));
		return;
	}
	auth_ratelimit_begin(gw->pending_limit, peer, now);
	auth_ratelimit_done(gw->pending_limit, peer, AUTH_ATTEMPT_FAILED, NULL, now);
	struct store_gateway g = {
	    .name = unconst(h->name),
	    .address = unconst(peer),
	    .group = unconst(h->group),
	    .cluster = unconst(h->cluster),
	    .version = unconst(h->version),
	};
	int rc = store_gateway_pending_put(api_store(gw->api), &g, gw->max_pending, now);
	if (rc == 0) {
		log_info("api.gateway_pending", "gateway=%s peer=%s", q, peer);
		http_server_reply_error(req, 401,
					"gateway \"%s\" is not registered: listed as pending until "
					"an administrator registers it",
					h->name);
	} else if (rc == -ENOSPC) {
		log_warn("api.gateway_pending_full", "gateway=%s peer=%s max=%zu", q, peer,
			 gw->max_pending);
		http_server_reply_error(req, 401,
					"gateway \"%s\" is not registered, and the list of pending "
					"gateways is full",
					h->name);
	} else if (rc == -EEXIST) {
		/* a registered name without its token: nothing to record */
		log_warn("api.gateway_token_refused", "gateway=%s peer=%s", q, peer);
		http_server_reply_error(req, 401, "a valid gateway token is required");
	} else {
		log_error("api.gateway_pending_failed", "gateway=%s peer=%s error=%s", q, peer,
			  strerror(-rc));
		http_server_reply_error(req, store_error_unavailable(rc) ? 503 : 500,
					"the store failed (%s)", strerror(-rc));
	}
}

/*
 * PV4, PV10: the manager has no scanning engine. When a gateway says another
 * version of its outbreak rules than it said before, every message still held in
 * the Outbreak quarantine that this gateway put there is released back to it
 * marked rescan=yes with its id: it scans it again with its new rules, delivers
 * what comes back clean, and says its verdict in its reply (release.c records
 * it); what still matches stays held here.
 */
static void api_gateways_outbreak_rescan(struct api *a, const struct store_gateway *g,
					 const char *version)
{
	char q[300], v[300];
	bool changed = false;
	/* the version the token's look-up read: a hello that says it again writes nothing */
	if (g->outbreak_version != NULL && strcmp(g->outbreak_version, version) == 0)
		return;
	int rc = store_gateway_outbreak_version(api_store(a), g->name, version, clock_now_ms(),
						&changed);
	if (rc < 0) {
		log_warn("api.outbreak_version_failed", "gateway=%s error=%s",
			 log_quote(q, sizeof(q), g->name), strerror(-rc));
		return;
	}
	if (!changed)
		return;
	struct store_filter f = {.quarantine = "outbreak", .gateway = g->name};
	struct store_pvo_request r = {.action = STORE_PVO_RELEASE, .quarantine = "outbreak"};
	uint64_t released = 0, queued = 0;
	rc = store_pvo_act_matching(api_store(a), &f, &r, clock_now_ms(), &released, &queued);
	if (queued > 0)
		release_kick(api_release(a));
	if (rc < 0)
		log_warn("api.outbreak_rescan_failed",
			 "gateway=%s rules_version=%s released=%llu error=%s",
			 log_quote(q, sizeof(q), g->name), log_quote(v, sizeof(v), version),
			 (unsigned long long)released, strerror(-rc));
	else
		log_info("api.outbreak_rescan",
			 "gateway=%s rules_version=%s released=%llu queued=%llu",
			 log_quote(q, sizeof(q), g->name), log_quote(v, sizeof(v), version),
			 (unsigned long long)released, (unsigned long long)queued);
}

static void api_gateways_hello(struct http_server_request *req, void *arg)
{
	struct api_gateways *gw = arg;
	struct api *a = gw->api;
	json_t *body = NULL;
	char *err = NULL;
	struct store_gateway *g = NULL;
	/* a browser's cross-site post is refused like on every state change */
	if (!api_request_guard(a, req))
		return;
	int auth = api_gateways_authenticate(a, req, &g);
	if (auth < 0 && auth != -ENOENT) {
		/* the store could not say: the gateway tries again, nothing is recorded */
		if (store_error_unavailable(auth)) {
			http_server_add_header(req, "Retry-After", API_STORE_UNAVAILABLE_RETRY);
			http_server_reply_error(req, 503, API_STORE_UNAVAILABLE_TEXT);
		} else {
			http_server_reply_error(req, 500, "the store failed (%s)", strerror(-auth));
		}
		return;
	}
	bool authenticated = auth == 0;
	const char *peer = http_server_request_peer(req);
	if (!authenticated &&
	    (gw->pending_from == NULL || !acl_match_text(gw->pending_from, peer))) {
		http_server_reply_error(req, 401, "a valid gateway token is required");
		return;
	}
	if (http_server_request_json_object(req, api_current_config(a)->max_body, &body) < 0)
		goto done;
	struct api_gateways_hello h;
	if (api_gateways_parse_hello(body, &h, &err) < 0) {
		http_server_reply_error(req, 422, "%s", err);
		goto done;
	}
	if (!authenticated) {
		api_gateways_hello_pending(gw, req, &h);
		goto done;
	}
	char q[300], q2[300];
	if (strcasecmp(h.name, g->name) != 0) {
		log_warn("api.gateway_name_mismatch", "gateway=%s said=%s peer=%s",
			 log_quote(q, sizeof(q), g->name), log_quote(q2, sizeof(q2), h.name), peer);
		http_server_reply_error(
		    req, 403, "this token belongs to gateway \"%s\", not \"%s\"", g->name, h.name);
		goto done;
	}
	int64_t now = clock_now_ms();
	int rc = store_gateway_touch(api_store(a), g->name, now, h.version);
	if (rc < 0) {
		/* removed meanwhile, or the store is down: the gateway tries again later */
		http_server_reply_error(
		    req,
		    rc == -ENOENT		  ? 401
		    : store_error_unavailable(rc) ? 503
						  : 500,
		    "%s", rc == -ENOENT ? "a valid gateway token is required" : "the store failed");
		goto done;
	}
	if ((h.group != NULL && (g->group == NULL || strcmp(h.group, g->group) != 0)) ||
	    (h.cluster != NULL && (g->cluster == NULL || strcmp(h.cluster, g->cluster) != 0)))
		log_warn("api.gateway_level_differs",
			 "gateway=%s said_group=%s said_cluster=%s group=%s cluster=%s",
			 log_quote(q, sizeof(q), g->name), h.group != NULL ? h.group : "-",
			 h.cluster != NULL ? h.cluster : "-", g->group != NULL ? g->group : "-",
			 g->cluster != NULL ? g->cluster : "-");
	log_debug("api.gateway_hello", "gateway=%s version=%s peer=%s",
		  log_quote(q, sizeof(q), g->name), h.version != NULL ? h.version : "-", peer);
	if (h.central >= 0 && (unsigned)h.central != g->central) {
		rc = store_gateway_set_central(api_store(a), g->name, (unsigned)h.central);
		if (rc < 0 && rc != -ENOENT)
			log_warn("api.gateway_central_failed", "gateway=%s error=%s",
				 log_quote(q, sizeof(q), g->name), strerror(-rc));
		if (rc == 0) {
			log_info("api.gateway_centralized",
				 "gateway=%s pvo=%s reporting=%s tracking=%s",
				 log_quote(q, sizeof(q), g->name),
				 h.central & STORE_CENTRAL_PVO ? "yes" : "no",
				 h.central & STORE_CENTRAL_REPORTING ? "yes" : "no",
				 h.central & STORE_CENTRAL_TRACKING ? "yes" : "no");
			g->central = (unsigned)h.central;
		}
	}
	if (h.outbreak_version != NULL)
		api_gateways_outbreak_rescan(a, g, h.outbreak_version);
	g->last_seen = now > g->last_seen ? now : g->last_seen;
	if (h.version != NULL) {
		free(g->version);
		g->version = xstrdup(h.version);
	}
	http_server_reply_json(req, 200, json_pack("{s:o}", "gateway", api_gateways_json(g)));
done:
	store_gateway_free(g);
	free(err);
	json_decref(body);
}

/* ---- life ---- */

void api_gateways_configure(struct api_gateways *g, const struct api_gateways_config *cfg)
{
	acl_free(g->pending_from);
	g->pending_from = NULL;
	if (cfg->pending_from != NULL && cfg->pending_from[0] != '\0') {
		char *err = NULL;
		/* lazaretd checked the list when it read its configuration */
		if (acl_parse(cfg->pending_from, &g->pending_from, &err) < 0)
			panic("api_gateways: pending_from does not parse: %s", err);
	}
	g->max_pending =
	    cfg->max_pending != 0 ? cfg->max_pending : API_GATEWAYS_DEFAULT_MAX_PENDING;
	g->pending_interval_ms = cfg->pending_interval_ms > 0
				     ? cfg->pending_interval_ms
				     : API_GATEWAYS_DEFAULT_PENDING_INTERVAL_MS;
	auth_ratelimit_configure(g->pending_limit, 1, g->pending_interval_ms, 0);
	g->changed = cfg->changed;
	g->changed_arg = cfg->changed_arg;
}

struct api_gateways *api_gateways_attach(struct api *a, const struct api_gateways_config *cfg)
{
	static const struct http_server_route_row routes[] = {
	    {"POST", "/api/v1/gateways", HTTP_SERVER_ROUTE_AUTH, api_gateways_add},
	    {"GET", "/api/v1/gateways", HTTP_SERVER_ROUTE_AUTH, api_gateways_list},
	    {"DELETE", "/api/v1/gateways/{name}", HTTP_SERVER_ROUTE_AUTH, api_gateways_remove},
	    {"PATCH", "/api/v1/gateways/{name}", HTTP_SERVER_ROUTE_AUTH, api_gateways_update},
	    /* Public to the router: the gateway's token is checked by the handler. */
	    {"POST", "/api/v1/gateway/hello", HTTP_SERVER_ROUTE_PUBLIC, api_gateways_hello},
	};
	struct api_gateways *g = xcalloc(1, sizeof(*g));
	g->api = a;
	g->pending_limit = auth_ratelimit_new(1, API_GATEWAYS_DEFAULT_PENDING_INTERVAL_MS,
					      API_GATEWAYS_PENDING_ADDRESSES);
	api_gateways_configure(g, cfg);
	http_server_route_table(api_http(a), routes, sizeof(routes) / sizeof(routes[0]), g);
	return g;
}

void api_gateways_free(struct api_gateways *g)
{
	if (g == NULL)
		return;
	acl_free(g->pending_from);
	auth_ratelimit_free(g->pending_limit);
	free(g);
}

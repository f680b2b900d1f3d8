/*
 * api_quarantines — admins create, change and delete PVO quarantines (see the
 * header). Every change is audited (quarantine_create, quarantine_update,
 * quarantine_delete) and logged. Not for: the listing (api.c), the quarantines'
 * messages, the actions on them.
 *
 * Replies: 201/200 with {"quarantine": Quarantine}, 200 {} for a delete; 404 for an
 * unknown name; 409 for a name taken, a change of spam's settings (they are
 * [spam_quarantine]'s), the deletion of spam or a system quarantine, or of a
 * quarantine that still holds messages; 422 for a malformed body.
 */
#include "api/api_quarantines.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "common/clock.h"
#include "common/confparse.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "http/http_json.h"
#include "http/http_server.h"
#include "quarantine/pvo_header.h"
#include "store/store.h"

/* Operators per quarantine: a team, not a directory. */
#define API_QUARANTINE_OPERATORS_MAX 100

/* ms as the largest unit that divides it ("14d", "36h", "90s"); "0" for 0. */
static json_t *api_duration_json(int64_t ms)
{
	static const struct {
		int64_t ms;
		char unit;
	} units[] = {{86400000, 'd'}, {3600000, 'h'}, {60000, 'm'}, {1000, 's'}};
	if (ms <= 0)
		return json_string("0");
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (ms % units[i].ms == 0) {
			char buf[32];
			snprintf(buf, sizeof(buf), "%" PRId64 "%c", ms / units[i].ms,
				 units[i].unit);
			return json_string(buf);
		}
	}
	char buf[32];
	snprintf(buf, sizeof(buf), "%" PRId64 "s", (ms + 999) / 1000);
	return json_string(buf);
}

static void api_q_set(json_t *o, const char *key, json_t *v)
{
	if (v == NULL || json_object_set_new(o, key, v) < 0)
		panic("api: out of memory");
}

json_t *api_quarantine_json(const struct store_quarantine_stats *q)
{
	json_t *o = json_object();
	if (o == NULL)
		panic("api: out of memory");
	api_q_set(o, "name", http_json_string_or_null(q->name));
	api_q_set(o, "type", http_json_string_or_null(q->type));
	api_q_set(o, "messages", json_integer((json_int_t)q->messages));
	api_q_set(o, "bytes", json_integer((json_int_t)q->bytes));
	char when[CLOCK_RFC3339_LEN];
	if (q->oldest > 0)
		clock_format_rfc3339(q->oldest, when);
	api_q_set(o, "oldest", q->oldest > 0 ? json_string(when) : json_null());
	api_q_set(o, "system", json_boolean(q->system));
	if (q->type != NULL && strcmp(q->type, "spam") == 0)
		return o; /* its settings are [spam_quarantine]'s */
	api_q_set(o, "delete_after",
		  api_duration_json(q->delete_after_ms > 0 ? q->delete_after_ms
							   : STORE_PVO_DELETE_AFTER_DEFAULT_MS));
	api_q_set(o, "default_action", http_json_string_or_null(q->default_action));
	api_q_set(o, "overflow_exempt", json_boolean(q->overflow_exempt));
	json_t *ops = json_array();
	for (size_t i = 0; i < q->noperators; i++)
		json_array_append_new(ops, http_json_string_or_null(q->operators[i]));
	api_q_set(o, "operators", ops);
	return o;
}

/* The quarantine named name as the store has it now: *out (free with
 * store_quarantine_stats_free(*out, 1)), or -ENOENT. */
static int api_quarantine_find(struct store *st, const char *name,
			       struct store_quarantine_stats **out)
{
	struct store_quarantine_stats *v = NULL;
	size_t n = 0;
	int rc = store_quarantines(st, &v, &n);
	if (rc < 0)
		return rc;
	rc = -ENOENT;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(v[i].name, name) != 0)
			continue;
		*out = xcalloc(1, sizeof(**out));
		**out = v[i];
		memset(&v[i], 0, sizeof(v[i]));
		rc = 0;
		break;
	}
	store_quarantine_stats_free(v, n);
	return rc;
}

static void api_quarantine_reply(struct api *a, struct http_server_request *req, int status,
				 const char *name)
{
	struct store_quarantine_stats *q = NULL;
	if (api_quarantine_find(api_store(a), name, &q) < 0) {
		http_server_reply_json(req, status, json_object());
		return;
	}
	http_server_reply_json(req, status,
			       json_pack("{s:o}", "quarantine", api_quarantine_json(q)));
	store_quarantine_stats_free(q, 1);
}

/*
 * The settings in body onto s (fields absent from body keep s's values). Operators
 * must be operator accounts. 0, or -EINVAL with *err (the caller frees) for a 422.
 * *ops is a new array of borrowed strings (the caller frees the array).
 */
static int api_quarantine_fields(struct api *a, const json_t *body,
				 struct store_quarantine_settings *s, const char ***ops, char **err)
{
	const char *text = NULL;
	int rc = http_json_get_string(body, "delete_after", &text, err);
	if (rc == 0) {
		int64_t ms = 0;
		if (confparse_duration_ms(text, false, &ms) < 0 || ms < 0) {
			*err = xstrdup("\"delete_after\" must be a duration such as 14d, 36h or 0 "
				       "(the default)");
			return -EINVAL;
		}
		s->delete_after_ms = ms;
	} else if (rc != -ENOENT) {
		return -EINVAL;
	}
	rc = http_json_get_string(body, "default_action", &text, err);
	if (rc == 0) {
		if (strcmp(text, "release") != 0 && strcmp(text, "delete") != 0) {
			*err = xstrdup("\"default_action\" must be release or delete");
			return -EINVAL;
		}
		s->default_action = text;
	} else if (rc != -ENOENT) {
		return -EINVAL;
	}
	bool b = false;
	rc = http_json_get_bool(body, "overflow_exempt", &b, err);
	if (rc == 0)
		s->overflow_exempt = b;
	else if (rc != -ENOENT)
		return -EINVAL;
	size_t n = 0;
	rc = http_json_get_string_array(body, "operators", API_QUARANTINE_OPERATORS_MAX, ops, &n,
					err);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		struct store_user *u = NULL;
		int r = store_user_get(api_store(a), (*ops)[i], &u);
		bool is_operator = r == 0 && u->role != NULL && strcmp(u->role, "operator") == 0;
		store_user_free(u);
		if (!is_operator) {
			*err = xasprintf("\"operators\": %s is not an operator account", (*ops)[i]);
			return -EINVAL;
		}
	}
	s->operators = *ops;
	s->noperators = n;
	return 0;
}

static void api_quarantine_store_error(struct http_server_request *req, int rc)
{
	http_server_reply_error(req, store_error_unavailable(rc) ? 503 : 500,
				"the quarantine store failed (%s)", strerror(-rc));
}

/* POST /api/v1/quarantines: a new policy quarantine. */
static void api_quarantines_create(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	json_t *body = NULL;
	char *err = NULL;
	const char **ops = NULL;
	if (!api_require_role(a, req, API_ROLE_ADMIN))
		return;
	if (http_server_request_json_object(req, api_current_config(a)->max_body, &body) < 0)
		return;
	static const char *const allowed[] = {
	    "name", "type", "delete_after", "default_action", "overflow_exempt", "operators", NULL};
	const char *name = NULL, *type = NULL;
	struct store_quarantine_settings s = {.default_action = "delete"};
	int rc = http_json_check_keys(body, allowed, &err);
	if (rc == 0 && (rc = http_json_get_string(body, "name", &name, &err)) == -ENOENT)
		err = xstrdup("\"name\" is required");
	if (rc == 0 && !pvo_header_name_ok(name)) {
		err = xstrdup("\"name\" must be 1-64 bytes of UTF-8 text without ; \" \\ = or "
			      "control characters, blanks at either end or a leading *");
		rc = -EINVAL;
	}
	if (rc == 0) {
		rc = http_json_get_string(body, "type", &type, &err);
		if (rc == 0 && strcmp(type, "policy") != 0) {
			err = xstrdup("\"type\" must be policy: the other types are the system "
				      "quarantines");
			rc = -EINVAL;
		} else if (rc == -ENOENT) {
			rc = 0;
		}
	}
	if (rc == 0)
		rc = api_quarantine_fields(a, body, &s, &ops, &err);
	if (rc < 0) {
		http_server_reply_error(req, 422, "%s", err != NULL ? err : "malformed body");
		goto done;
	}
	/* the system names in any case: "Virus" is the virus quarantine */
	static const char *const reserved[] = {"spam", "virus", "outbreak", "unclassified"};
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
		if (strcasecmp(name, reserved[i]) == 0) {
			http_server_reply_error(req, 409, "\"%s\" is a system quarantine",
						reserved[i]);
			goto done;
		}
	}
	s.name = name;
	rc = store_quarantine_put(api_store(a), &s, true, clock_now_ms());
	if (rc == -EEXIST) {
		http_server_reply_error(req, 409, "a quarantine with this name exists");
		goto done;
	}
	if (rc < 0) {
		api_quarantine_store_error(req, rc);
		goto done;
	}
	char q[256];
	log_info("api.quarantine_created", "quarantine=%s by=%s", log_quote(q, sizeof(q), name),
		 api_actor(a, req)->username);
	api_audit(a, req, "quarantine_create", name, json_incref(body));
	api_quarantine_reply(a, req, 201, name);
done:
	free(err);
	free(ops);
	json_decref(body);
}

/* PATCH /api/v1/quarantines/{name}: the settings of a PVO quarantine. */
static void api_quarantines_update(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	json_t *body = NULL;
	char *err = NULL;
	const char **ops = NULL;
	struct store_quarantine_stats *cur = NULL;
	if (!api_require_role(a, req, API_ROLE_ADMIN))
		return;
	const char *name = http_server_request_param(req, "name");
	int rc = name != NULL ? api_quarantine_find(api_store(a), name, &cur) : -ENOENT;
	if (rc == -ENOENT) {
		http_server_reply_error(req, 404, "no such quarantine");
		return;
	}
	if (rc < 0) {
		api_quarantine_store_error(req, rc);
		return;
	}
	if (strcmp(cur->type, "spam") == 0) {
		http_server_reply_error(req, 409,
					"the spam quarantine's settings are [spam_quarantine]'s");
		goto done;
	}
	if (http_server_request_json_object(req, api_current_config(a)->max_body, &body) < 0)
		goto done;
	static const char *const allowed[] = {"delete_after", "default_action", "overflow_exempt",
					      "operators", NULL};
	struct store_quarantine_settings s = {
	    .name = name,
	    .delete_after_ms = cur->delete_after_ms,
	    .default_action = cur->default_action,
	    .overflow_exempt = cur->overflow_exempt,
	    .operators = (const char *const *)cur->operators,
	    .noperators = cur->noperators,
	};
	rc = http_json_check_keys(body, allowed, &err);
	if (rc == 0)
		rc = api_quarantine_fields(a, body, &s, &ops, &err);
	if (rc < 0) {
		http_server_reply_error(req, 422, "%s", err != NULL ? err : "malformed body");
		goto done;
	}
	rc = store_quarantine_put(api_store(a), &s, false, clock_now_ms());
	if (rc == -ENOENT) {
		http_server_reply_error(req, 404, "no such quarantine");
		goto done;
	}
	if (rc < 0) {
		api_quarantine_store_error(req, rc);
		goto done;
	}
	char q[256];
	log_info("api.quarantine_updated", "quarantine=%s by=%s", log_quote(q, sizeof(q), name),
		 api_actor(a, req)->username);
	api_audit(a, req, "quarantine_update", name, json_incref(body));
	api_quarantine_reply(a, req, 200, name);
done:
	free(err);
	free(ops);
	store_quarantine_stats_free(cur, cur != NULL ? 1 : 0);
	json_decref(body);
}

/* DELETE /api/v1/quarantines/{name}: a policy quarantine that holds nothing. */
static void api_quarantines_delete(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	if (!api_require_role(a, req, API_ROLE_ADMIN))
		return;
	const char *name = http_server_request_param(req, "name");
	int rc = name != NULL ? store_quarantine_delete(api_store(a), name) : -ENOENT;
	if (rc == -ENOENT) {
		http_server_reply_error(req, 404, "no such quarantine");
		return;
	}
	if (rc == -EPERM) {
		http_server_reply_error(req, 409, "only policy quarantines can be deleted");
		return;
	}
	if (rc == -EBUSY) {
		http_server_reply_error(req, 409, "the quarantine still holds messages");
		return;
	}
	if (rc < 0) {
		api_quarantine_store_error(req, rc);
		return;
	}
	char q[256];
	log_info("api.quarantine_deleted", "quarantine=%s by=%s", log_quote(q, sizeof(q), name),
		 api_actor(a, req)->username);
	api_audit(a, req, "quarantine_delete", name, NULL);
	http_server_reply_json(req, 200, json_object());
}

void api_quarantines_register(struct api *a)
{
	static const struct http_server_route_row routes[] = {
	    {"POST", "/api/v1/quarantines", HTTP_SERVER_ROUTE_AUTH, api_quarantines_create},
	    {"PATCH", "/api/v1/quarantines/{name}", HTTP_SERVER_ROUTE_AUTH, api_quarantines_update},
	    {"DELETE", "/api/v1/quarantines/{name}", HTTP_SERVER_ROUTE_AUTH,
	     api_quarantines_delete},
	};
	http_server_route_table(api_http(a), routes, sizeof(routes) / sizeof(routes[0]), a);
}

/*
 * api_pvo_actions — what admins and operators do with policy, virus and outbreak
 * (PVO) messages (PV9, docs/OPERATIONS.md "PVO quarantines"): release, delete,
 * delay exit, move (policy to policy) for one message or every message of a
 * filter, and send a copy (admins only). Each acts on one membership through
 * store_pvo_act / store_pvo_act_matching, whose transaction makes a second click
 * or a racing manager change nothing; the store queues the delivery when the
 * last membership is released, and this module wakes the release engine.
 *
 * Not for: the spam quarantine's release and delete (api.c), deciding routes
 * (the store and quarantine/release.c), the quarantines' settings
 * (api_quarantines.c).
 *
 * Who: admins everywhere; operators only in the quarantines assigned to them
 * (another quarantine, or a message in none of theirs, is 404 as if it did not
 * exist, as in listings); end users have no PVO access (404). Every action is
 * audited as pvo_release, pvo_delete, pvo_delay, pvo_move, pvo_copy (one message)
 * or pvo_bulk_<action> (a filter), with the quarantine in the detail.
 *
 * A release takes "rescan": false (admins only; an operator's is 403): its
 * delivery is not marked rescan=yes, so the gateway delivers an Outbreak message
 * that an outbreak rule still matches instead of keeping it (docs/GATEWAY.md
 * "Rescans when the rules change"). It applies to the delivery that release
 * queues, whichever quarantine it names; the memberships' rescan stays as it
 * was. The audit detail says "rescan": false.
 *
 * Replies: a missing required field 400 naming it; a field of the wrong type or
 * value 422; an unknown message, quarantine or membership 404; a membership that
 * is not held, a move to or from a non-policy quarantine, or into one that has
 * the message already 409. Nothing changes on any refusal.
 */
#include "api/api_pvo_actions.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/api_read.h"
#include "common/clock.h"
#include "common/confparse.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "http/http_json.h"
#include "http/http_server.h"
#include "quarantine/metrics.h"
#include "quarantine/release.h"
#include "store/store.h"

/* The longest delay of one request: more than a year is a mistake, not a hold. */
#define API_PVO_DELAY_MAX_MS (366LL * 86400 * 1000)

/* What one request does: an action on a membership, or a copy. */
enum api_pvo_verb {
	API_PVO_RELEASE = STORE_PVO_RELEASE,
	API_PVO_DELETE = STORE_PVO_DELETE,
	API_PVO_DELAY = STORE_PVO_DELAY,
	API_PVO_MOVE = STORE_PVO_MOVE,
	API_PVO_COPY,
};

static const char *api_pvo_verb_name(enum api_pvo_verb v)
{
	return v == API_PVO_COPY ? "copy" : store_pvo_action_name((enum store_pvo_action)v);
}

/* The type of quarantine name into *type (new; NULL when there is none). 0 or the store's. */
static int api_pvo_type(struct api *a, const char *name, char **type)
{
	struct store_quarantine_stats *v = NULL;
	size_t n = 0;
	*type = NULL;
	int rc = store_quarantines(api_store(a), &v, &n);
	for (size_t i = 0; rc == 0 && i < n && *type == NULL; i++) {
		if (strcmp(v[i].name, name) == 0)
			*type = xstrdup(v[i].type);
	}
	store_quarantine_stats_free(v, n);
	return rc;
}

static bool api_pvo_type_is_pvo(const char *type)
{
	return type != NULL && strcmp(type, "spam") != 0 && strcmp(type, "pvo") != 0;
}

bool api_pvo_is_quarantine(struct api *a, const char *name)
{
	char *type = NULL;
	bool pvo = api_pvo_type(a, name, &type) == 0 && api_pvo_type_is_pvo(type);
	free(type);
	return pvo;
}

/* An operator's (or an admin's: scoped false) quarantines. */
struct api_pvo_who {
	const struct api_actor *who;
	bool scoped;
	char **names;
	size_t n;
};

static bool api_pvo_may(const struct api_pvo_who *w, const char *quarantine)
{
	if (!w->scoped)
		return true;
	for (size_t i = 0; quarantine != NULL && i < w->n; i++) {
		if (strcmp(w->names[i], quarantine) == 0)
			return true;
	}
	return false;
}

/* True when one of m's memberships is in a quarantine w may act in. */
static bool api_pvo_may_see(const struct api_pvo_who *w, const struct store_message *m)
{
	for (size_t i = 0; i < m->nmemberships; i++) {
		if (api_pvo_may(w, m->memberships[i].quarantine))
			return true;
	}
	return false;
}

/*
 * A required string field: 0 with *out, or answers (400 missing, 422 wrong type)
 * and returns -1.
 */
static int api_pvo_required(struct http_server_request *req, const json_t *body, const char *key,
			    const char *what, const char **out)
{
	char *err = NULL;
	int rc = body != NULL ? http_json_get_string(body, key, out, &err) : -ENOENT;
	if (rc == -ENOENT) {
		http_server_reply_error(req, 400, "\"%s\" is required: %s", key, what);
		return -1;
	}
	if (rc < 0) {
		http_server_reply_error(req, 422, "%s", err);
		free(err);
		return -1;
	}
	if ((*out)[0] == '\0') {
		http_server_reply_error(req, 422, "\"%s\" must not be empty", key);
		return -1;
	}
	return 0;
}

/* "by": a duration > 0 and at most API_PVO_DELAY_MAX_MS. 0, or answered and -1. */
static int api_pvo_by(struct http_server_request *req, const json_t *body, int64_t *by)
{
	const char *text = NULL;
	if (api_pvo_required(req, body, "by", "how much later the message leaves, e.g. \"3d\"",
			     &text) < 0)
		return -1;
	int64_t ms = 0;
	if (confparse_duration_ms(text, false, &ms) < 0 || ms <= 0 || ms > API_PVO_DELAY_MAX_MS) {
		http_server_reply_error(req, 422,
					"\"by\" must be a positive duration of at most 366d, such "
					"as 3d, 12h or 30m");
		return -1;
	}
	*by = ms;
	return 0;
}

/*
 * A release's "rescan" (default true): *no_rescan when false, which only admins
 * may ask. 0, or answered (422 not a boolean, 403 not an admin) and -1.
 */
static int api_pvo_rescan(struct http_server_request *req, const json_t *body,
			  const struct api_pvo_who *w, bool *no_rescan)
{
	bool rescan = true;
	char *err = NULL;
	int rc = body != NULL ? http_json_get_bool(body, "rescan", &rescan, &err) : -ENOENT;
	if (rc == -EINVAL) {
		http_server_reply_error(req, 422, "%s", err);
		free(err);
		return -1;
	}
	if (!rescan && w->who->role != API_ROLE_ADMIN) {
		http_server_reply_error(
		    req, 403,
		    "a release without a rescan is for admins: an operator's "
		    "release of an Outbreak message is rescanned by its gateway");
		return -1;
	}
	*no_rescan = !rescan;
	return 0;
}

/* Answers a refused action (nothing changed). */
static void api_pvo_refused(struct http_server_request *req, int rc,
			    const struct store_pvo_request *r, const struct store_pvo_outcome *out)
{
	switch (rc) {
	case -ENOENT:
		http_server_reply_error(req, 404, "no such message");
		return;
	case -ENODEV:
		http_server_reply_error(req, 404, "no quarantine named \"%s\"",
					out->to_unknown ? r->to : r->quarantine);
		return;
	case -ENXIO:
		http_server_reply_error(req, 404, "this message is not in quarantine \"%s\"",
					r->quarantine);
		return;
	case -EALREADY:
		http_server_reply_error(
		    req, 409, "this message is not held in quarantine \"%s\" any more (%s)",
		    r->quarantine, store_membership_state_name(out->was));
		return;
	case -EPERM:
		http_server_reply_error(req, 409,
					"messages move only from one policy quarantine to another");
		return;
	case -EEXIST:
		http_server_reply_error(req, 409, "quarantine \"%s\" has this message already",
					r->to);
		return;
	case -EINVAL:
		http_server_reply_error(req, 422, "the request was refused");
		return;
	default:
		api_reply_store_error(req, "store_pvo_act", rc);
	}
}

/* The copy's addresses, checked and normalized: 0, or answered (422) and -1. */
static int api_pvo_copy_to(struct http_server_request *req, const json_t *body, char ***out,
			   size_t *n)
{
	const char **to = NULL;
	size_t nto = 0;
	char *err = NULL;
	int rc = body != NULL
		     ? http_json_get_string_array(body, "to", STORE_PVO_COPY_MAX, &to, &nto, &err)
		     : -ENOENT;
	if (rc == -ENOENT) {
		http_server_reply_error(req, 400,
					"\"to\" is required: the addresses the copy goes to");
		return -1;
	}
	if (rc < 0) {
		http_server_reply_error(req, 422, "%s", err);
		free(err);
		return -1;
	}
	if (nto == 0) {
		http_server_reply_error(req, 422, "\"to\" must name at least one address");
		return -1;
	}
	char **v = xcalloc(nto, sizeof(*v));
	for (size_t i = 0; i < nto; i++) {
		if (store_slbl_normalize(to[i], true, &v[i]) < 0) {
			http_server_reply_error(req, 422, "\"to\": \"%s\" is not an email address",
						to[i]);
			store_string_array_free(v, nto);
			free(to);
			return -1;
		}
	}
	free(to);
	*out = v;
	*n = nto;
	return 0;
}

/* The one-message action verb on m; see the top of the file. */
static void api_pvo_do(struct api *a, struct http_server_request *req,
		       const struct store_message *m, const json_t *body, enum api_pvo_verb verb)
{
	struct api_pvo_who w = {.who = api_actor(a, req)};
	char **to = NULL;
	size_t nto = 0;
	char *err = NULL;
	if (w.who->role == API_ROLE_ENDUSER || w.who->role == API_ROLE_NONE) {
		http_server_reply_error(req, 404, "no such message");
		return;
	}
	int rc = api_pvo_scope_of(a, w.who, &w.scoped, &w.names, &w.n);
	if (rc < 0) {
		api_reply_store_error(req, "store_operator_quarantines", rc);
		return;
	}
	if (!api_pvo_may_see(&w, m)) {
		http_server_reply_error(req, 404, "no such message");
		goto done;
	}
	if (verb == API_PVO_COPY && w.who->role != API_ROLE_ADMIN) {
		http_server_reply_error(req, 403, "copies of quarantined messages are for admins");
		goto done;
	}
	static const char *const keys_one[] = {"quarantine", NULL};
	static const char *const keys_release[] = {"quarantine", "rescan", NULL};
	static const char *const keys_delay[] = {"quarantine", "by", NULL};
	static const char *const keys_move[] = {"from", "to", NULL};
	static const char *const keys_copy[] = {"to", NULL};
	const char *const *keys = verb == API_PVO_DELAY	    ? keys_delay
				  : verb == API_PVO_MOVE    ? keys_move
				  : verb == API_PVO_COPY    ? keys_copy
				  : verb == API_PVO_RELEASE ? keys_release
							    : keys_one;
	if (body != NULL && http_json_check_keys(body, keys, &err) < 0) {
		http_server_reply_error(req, 422, "%s", err);
		goto done;
	}
	const char *detail_q = NULL;
	json_t *detail = NULL;
	struct store_pvo_outcome out = {0};
	int64_t now = clock_now_ms();
	if (verb == API_PVO_COPY) {
		if (api_pvo_copy_to(req, body, &to, &nto) < 0)
			goto done;
		rc = store_pvo_copy(api_store(a), m->id, (const char *const *)to, nto, now);
		if (rc < 0) {
			if (rc == -ENOENT)
				http_server_reply_error(req, 404, "no such message");
			else
				api_reply_store_error(req, "store_pvo_copy", rc);
			goto done;
		}
		json_t *list = json_array();
		for (size_t i = 0; i < nto; i++)
			json_array_append_new(list, json_string(to[i]));
		detail = json_pack("{s:o}", "to", list);
		out.queued = true;
	} else {
		struct store_pvo_request r = {.action = (enum store_pvo_action)verb};
		const char *q = NULL;
		if (verb == API_PVO_MOVE) {
			if (api_pvo_required(req, body, "from", "the policy quarantine it leaves",
					     &q) < 0 ||
			    api_pvo_required(req, body, "to", "the policy quarantine it goes to",
					     &r.to) < 0)
				goto done;
		} else if (api_pvo_required(req, body, "quarantine",
					    "the quarantine of this message to act in", &q) < 0) {
			goto done;
		}
		if (verb == API_PVO_DELAY && api_pvo_by(req, body, &r.by_ms) < 0)
			goto done;
		r.quarantine = q;
		/* another operator's quarantine does not exist for this one */
		if (!api_pvo_may(&w, q) || (r.to != NULL && !api_pvo_may(&w, r.to))) {
			http_server_reply_error(req, 404, "no quarantine named \"%s\"",
						api_pvo_may(&w, q) ? r.to : q);
			goto done;
		}
		if (verb == API_PVO_RELEASE && api_pvo_rescan(req, body, &w, &r.no_rescan) < 0)
			goto done;
		rc = store_pvo_act(api_store(a), m->id, &r, now, &out);
		if (rc < 0) {
			api_pvo_refused(req, rc, &r, &out);
			goto done;
		}
		detail_q = q;
		detail = json_pack("{s:s,s:b}", "quarantine", q, "delivery_queued", out.queued);
		if (verb == API_PVO_DELAY)
			json_object_set_new(detail, "by_ms", json_integer(r.by_ms));
		if (verb == API_PVO_MOVE)
			json_object_set_new(detail, "to", json_string(r.to));
		if (r.no_rescan)
			json_object_set_new(detail, "rescan", json_false());
	}
	if (out.queued)
		release_kick(api_release(a));
	char qq[256];
	log_info("api.pvo_action", "action=%s id=%s quarantine=%s queued=%s by=%s peer=%s",
		 api_pvo_verb_name(verb), m->id,
		 detail_q != NULL ? log_quote(qq, sizeof(qq), detail_q) : "-",
		 out.queued ? "yes" : "no", w.who->username, http_server_request_peer(req));
	char action[32];
	snprintf(action, sizeof(action), "pvo_%s", api_pvo_verb_name(verb));
	api_audit(a, req, action, m->id, detail);
	api_reply_message(a, req, m->id,
			  verb == API_PVO_RELEASE || verb == API_PVO_COPY ? 202 : 200);
done:
	free(err);
	store_string_array_free(to, nto);
	store_string_array_free(w.names, w.n);
}

void api_pvo_message_action(struct api *a, struct http_server_request *req,
			    const struct store_message *m, const json_t *body,
			    enum store_pvo_action act)
{
	api_pvo_do(a, req, m, body, (enum api_pvo_verb)act);
}

/* POST /api/v1/messages/{id}/delay, .../move, .../copy: PVO messages only. */
static void api_pvo_route(struct api *a, struct http_server_request *req, enum api_pvo_verb verb)
{
	const char *id = http_server_request_param(req, "id");
	const struct api_actor *who = api_actor(a, req);
	json_t *body = NULL;
	struct store_message *m = NULL;
	if (api_body_object(a, req, &body) < 0)
		return; /* answered: malformed, too large */
	int rc = id != NULL && ids_valid(id) ? store_get(api_store(a), id, &m) : -ENOENT;
	if (rc == 0 && who->role == API_ROLE_ENDUSER)
		rc = -ENOENT; /* end users have no PVO access */
	if (rc == -ENOENT || rc == -EINVAL) {
		http_server_reply_error(req, 404, "no such message");
	} else if (rc < 0) {
		api_reply_store_error(req, "store_get", rc);
	} else if (m->nmemberships == 0 && strcmp(m->quarantine, STORE_PVO_MARKER) != 0) {
		http_server_reply_error(req, 409,
					"only messages of policy, virus and outbreak quarantines "
					"can be %s",
					verb == API_PVO_DELAY  ? "delayed"
					: verb == API_PVO_MOVE ? "moved"
							       : "copied");
	} else {
		api_pvo_do(a, req, m, body, verb);
	}
	store_message_free(m);
	json_decref(body);
}

static void api_pvo_delay(struct http_server_request *req, void *arg)
{
	api_pvo_route(arg, req, API_PVO_DELAY);
}

static void api_pvo_move(struct http_server_request *req, void *arg)
{
	api_pvo_route(arg, req, API_PVO_MOVE);
}

static void api_pvo_copy(struct http_server_request *req, void *arg)
{
	api_pvo_route(arg, req, API_PVO_COPY);
}

void api_pvo_bulk_action(struct api *a, struct http_server_request *req, const json_t *body,
			 struct store_filter *f, bool have_ids, enum store_pvo_action act)
{
	struct api_pvo_who w = {.who = api_actor(a, req)};
	struct store_pvo_request r = {.action = act, .quarantine = f->quarantine};
	char *type = NULL, *to_type = NULL;
	uint64_t changed = 0, queued = 0;
	if (w.who->role == API_ROLE_ENDUSER || w.who->role == API_ROLE_NONE) {
		http_server_reply_error(req, 404, "no quarantine named \"%s\"",
					f->quarantine != NULL ? f->quarantine : "");
		return;
	}
	int rc = api_pvo_scope_of(a, w.who, &w.scoped, &w.names, &w.n);
	if (rc < 0) {
		api_reply_store_error(req, "store_operator_quarantines", rc);
		return;
	}
	if (f->quarantine == NULL) {
		http_server_reply_error(req, 400, "\"%s\" is required: the quarantine to act in",
					act == STORE_PVO_MOVE ? "from" : "quarantine");
		goto done;
	}
	if (f->state != NULL) {
		http_server_reply_error(req, 422,
					"\"state\" does not apply to policy, virus and outbreak "
					"quarantines: the action takes the messages held there");
		goto done;
	}
	if (act == STORE_PVO_DELAY && api_pvo_by(req, body, &r.by_ms) < 0)
		goto done;
	if (act == STORE_PVO_RELEASE && api_pvo_rescan(req, body, &w, &r.no_rescan) < 0)
		goto done;
	if (act == STORE_PVO_MOVE &&
	    api_pvo_required(req, body, "to", "the policy quarantine they go to", &r.to) < 0)
		goto done;
	if ((rc = api_pvo_type(a, f->quarantine, &type)) < 0 ||
	    (r.to != NULL && (rc = api_pvo_type(a, r.to, &to_type)) < 0)) {
		api_reply_store_error(req, "store_quarantines", rc);
		goto done;
	}
	if (!api_pvo_type_is_pvo(type) || !api_pvo_may(&w, f->quarantine)) {
		http_server_reply_error(req, 404, "no quarantine named \"%s\"", f->quarantine);
		goto done;
	}
	if (r.to != NULL && (!api_pvo_type_is_pvo(to_type) || !api_pvo_may(&w, r.to))) {
		http_server_reply_error(req, 404, "no quarantine named \"%s\"", r.to);
		goto done;
	}
	if (act == STORE_PVO_MOVE &&
	    (strcmp(type, "policy") != 0 || strcmp(to_type, "policy") != 0)) {
		http_server_reply_error(req, 409,
					"messages move only from one policy quarantine to another");
		goto done;
	}
	if (w.scoped) {
		f->scope_pvo = true;
		f->pvo_quarantines = (const char *const *)w.names;
		f->npvo_quarantines = w.n;
	}
	if (!have_ids || f->nids > 0) {
		rc = store_pvo_act_matching(api_store(a), f, &r, clock_now_ms(), &changed, &queued);
		if (rc == -EINVAL) {
			http_server_reply_error(req, 422, "the filter was refused");
			goto done;
		}
		if (rc < 0) {
			api_reply_store_error(req, "store_pvo_act_matching", rc);
			goto done;
		}
	}
	if (queued > 0)
		release_kick(api_release(a));
	char action[32], qq[256];
	snprintf(action, sizeof(action), "pvo_bulk_%s", store_pvo_action_name(act));
	json_t *detail =
	    json_pack("{s:s,s:O,s:I,s:I}", "quarantine", f->quarantine, "request", body, "changed",
		      (json_int_t)changed, "delivery_queued", (json_int_t)queued);
	if (r.no_rescan)
		json_object_set_new(detail, "rescan", json_false());
	api_audit(a, req, action, NULL, detail);
	log_info("api.pvo_bulk", "action=%s quarantine=%s changed=%llu queued=%llu by=%s peer=%s",
		 store_pvo_action_name(act), log_quote(qq, sizeof(qq), f->quarantine),
		 (unsigned long long)changed, (unsigned long long)queued, w.who->username,
		 http_server_request_peer(req));
	http_server_reply_json(
	    req, 200,
	    json_pack("{s:I,s:I}", "changed", (json_int_t)changed, "queued", (json_int_t)queued));
done:
	free(type);
	free(to_type);
	store_string_array_free(w.names, w.n);
}

void api_pvo_actions_register(struct api *a)
{
	static const struct http_server_route_row routes[] = {
	    {"POST", "/api/v1/messages/{id}/delay", HTTP_SERVER_ROUTE_AUTH, api_pvo_delay},
	    {"POST", "/api/v1/messages/{id}/move", HTTP_SERVER_ROUTE_AUTH, api_pvo_move},
	    {"POST", "/api/v1/messages/{id}/copy", HTTP_SERVER_ROUTE_AUTH, api_pvo_copy},
	};
	http_server_route_table(api_http(a), routes, sizeof(routes) / sizeof(routes[0]), a);
}

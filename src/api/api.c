/*
 * api — the manager's HTTP endpoints: /healthz and /metrics (open, for probes and
 * Prometheus; the listener is on loopback by default) and the REST API under
 * /api/v1 (Bearer admin token), whose shapes docs/openapi.yaml describes.
 *
 * Handlers run on the event loop thread, which also serves the SMTP quarantine
 * listener, so nothing slow may run there. Reads that query the store for more
 * than a row or two (quarantine totals, listings and searches, a message's
 * detail, its raw bytes and attachments; the audit log in api_users.c) are
 * split: the handler checks the request on the loop (authentication, CSRF,
 * roles, parameters) and copies what the read needs; a reader thread
 * (api_read.h, [http] read_threads) runs the store query under the [http]
 * query_timeout budget and builds the reply body; the loop writes it. A full
 * reader queue answers 503 with Retry-After: 1, a query over budget 503
 * "query_timeout". Changes use the store's synchronous calls on the loop, so a
 * 2xx is only sent once the change is committed.
 * Input is validated here (ids, dates, limits, filters) so that nothing a client
 * sends reaches the store unchecked or turns into a 500: an unknown or malformed id
 * is 404, a malformed query 400, a well-formed body with wrong content 422.
 * Bulk actions refuse an empty filter unless "all": true says it is meant.
 * Who may do what (api_actor): the Bearer admin token and admin/operator sessions
 * see everything; an end user's session sees only the spam quarantine and only
 * messages addressed to one of its addresses, acts only for those recipients, and
 * gets 404 for any other id — exactly as for an unknown one. With
 * hide_bodies_until_released an end user sees of a message it has not released
 * only its summary and From/To/Subject/Date: no text, no other header, no raw
 * bytes. A message's bytes, raw or as an attachment, are downloads: one policy
 * (api_download_allowed) says who may have them, by the role of
 * download_min_role (admins by default), and each download leaves one audit row.
 * Attachments go out as opaque bytes (application/octet-stream,
 * Content-Disposition: attachment) so that no browser renders them. Cookie
 * sessions must send their CSRF token with every state change (api_authorize),
 * and every state change from a browser must be same-origin and JSON
 * (api_request_guard). Releases, deletions and downloads leave a row in the audit
 * log (api_audit, written by the sessions extension) when sessions are on.
 * Extensions add routes and hooks; this file knows none of them.
 * Not for: logins and accounts (api_users.c), safelists (api_slbl.c), digest links
 * (digest_pages.c), the web application (api_static.c), HTTP plumbing
 * (http_server), delivering released mail (release).
 */
#include "api/api.h"
#include "api/api_read.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/clock.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "http/http_json.h"
#include "http/http_server.h"
#include "api/api_pvo_actions.h"
#include "api/api_quarantines.h"
#include "quarantine/own_events.h"
#include "quarantine/metrics.h"
#include "quarantine/release.h"
#include "mime/msgmeta.h"
#include "store/store.h"

/* Page size of GET /api/v1/messages when the client gives none, and its cap. */
#define API_LIST_DEFAULT_LIMIT 50
#define API_LIST_MAX_LIMIT     1000
/* Addresses in one release/delete body: more than any message may have recipients. */
#define API_MAX_BODY_RECIPIENTS 10000
/* Body text in a message's detail: enough to judge a message, small enough to send. */
#define API_TEXT_BODY_MAX (256 * 1024)
/* Message ids copied into the audit row of one bulk action. */
#define API_AUDIT_MAX_IDS 100
/* Default request body limit when the config gives none. */
#define API_DEFAULT_MAX_BODY (1024 * 1024)
/* Bytes of an attachment's file name kept in a download's Content-Disposition. */
#define API_ATTACHMENT_NAME_MAX 200
/* Digits of an attachment index in a path: more than any message has attachments. */
#define API_ATTACHMENT_INDEX_DIGITS 9

struct api {
	struct http_server *http;
	struct store *st;
	struct release *rel;
	char *token;
	char *manager_name;
	uint64_t max_body;
	int64_t delete_after_ms;
	struct api_config cfg; /* a copy; its strings point at the fields above or web_root */
	char *web_root;
	char *allowed_origins;
	struct api_session_hooks session; /* all NULL: no sessions extension */
	struct api_read *reads;		  /* reader threads (api_read.h) */
};

static const struct api_actor api_token_actor = {.role = API_ROLE_ADMIN, .username = "token"};
static const struct api_actor api_nobody = {.role = API_ROLE_NONE, .username = ""};

/* The filter names shared by the listing query and the bulk bodies. */
static const char *const api_filter_fields[] = {
    "quarantine", "recipient", "sender",  "subject", "since",
    "until",	  "verdict",   "gateway", "state",   NULL,
};

/* ---- JSON of stored messages ---- */

static json_t *api_time_or_null(int64_t ms)
{
	char buf[CLOCK_RFC3339_LEN];
	if (ms == 0)
		return json_null();
	clock_format_rfc3339(ms, buf);
	return json_string(buf);
}

static void api_set(json_t *obj, const char *key, json_t *v)
{
	if (v == NULL || json_object_set_new(obj, key, v) != 0)
		panic("api: cannot build JSON for \"%s\"", key);
}

static bool api_is_enduser(const struct api_actor *who)
{
	return who->role == API_ROLE_ENDUSER;
}

/* True when address is one of the actor's own (end users). */
static bool api_owns(const struct api_actor *who, const char *address)
{
	for (size_t i = 0; i < who->naddresses; i++) {
		if (strcasecmp(who->addresses[i], address) == 0)
			return true;
	}
	return false;
}

/* The quarantine end users may see. */
#define API_ENDUSER_QUARANTINE "spam"

/* Whether who may see m at all: everyone but end users; they need a recipient of theirs. */
static bool api_visible(const struct api_actor *who, const struct store_message *m)
{
	if (!api_is_enduser(who))
		return true;
	if (m->quarantine == NULL || strcmp(m->quarantine, API_ENDUSER_QUARANTINE) != 0)
		return false;
	for (size_t i = 0; i < m->nrecipients; i++) {
		if (api_owns(who, m->recipients[i].address))
			return true;
	}
	return false;
}

/*
 * What an operator may see of the PVO quarantines: those assigned to them, read
 * from the store for each request, so that a reassignment holds from the next
 * one. Admins (and end users, who see no PVO message at all) are not scoped.
 */
struct api_pvo_scope {
	bool scoped;
	char **names; /* sorted */
	size_t n;
};

/* Fills s for who. 0, or the store's error. */
static int api_pvo_scope_load(struct store *st, const struct api_actor *who,
			      struct api_pvo_scope *s)
{
	memset(s, 0, sizeof(*s));
	if (who->role != API_ROLE_OPERATOR)
		return 0;
	s->scoped = true;
	return store_operator_quarantines(st, who->username, &s->names, &s->n);
}

static void api_pvo_scope_free(struct api_pvo_scope *s)
{
	store_string_array_free(s->names, s->n);
	memset(s, 0, sizeof(*s));
}

/* Narrows a listing's f to the scope: the store query leaves the rest out. */
static void api_pvo_scope_filter(const struct api_pvo_scope *s, struct store_filter *f)
{
	if (!s->scoped)
		return;
	f->scope_pvo = true;
	f->pvo_quarantines = (const char *const *)s->names;
	f->npvo_quarantines = s->n;
}

static bool api_pvo_assigned(const struct api_pvo_scope *s, const char *name)
{
	for (size_t i = 0; name != NULL && i < s->n; i++) {
		if (strcmp(s->names[i], name) == 0)
			return true;
	}
	return false;
}

/*
 * Narrows a PVO message m to the memberships the scope shows. False when it
 * shows none of them: then the message does not exist for this actor.
 */
static bool api_pvo_narrow(const struct api_pvo_scope *s, struct store_message *m)
{
	bool pvo = m->nmemberships > 0 ||
		   (m->quarantine != NULL && strcmp(m->quarantine, STORE_PVO_MARKER) == 0);
	if (!s->scoped || !pvo)
		return true;
	size_t kept = 0;
	for (size_t i = 0; i < m->nmemberships; i++) {
		struct store_membership *x = &m->memberships[i];
		if (api_pvo_assigned(s, x->quarantine)) {
			m->memberships[kept++] = *x;
			continue;
		}
		free(x->quarantine);
		free(x->type);
		free(x->reason);
	}
	m->nmemberships = kept;
	return kept > 0;
}

/*
 * Whether who may see m, m narrowed to what they may see of it (an operator's
 * PVO scope). 0, -ENOENT (as for an unknown id), or the store's error.
 */
static int api_scope_message(struct store *st, const struct api_actor *who, struct store_message *m)
{
	if (!api_visible(who, m))
		return -ENOENT;
	struct api_pvo_scope s;
	int rc = api_pvo_scope_load(st, who, &s);
	if (rc == 0 && !api_pvo_narrow(&s, m))
		rc = -ENOENT;
	api_pvo_scope_free(&s);
	return rc;
}

int api_pvo_scope_of(struct api *a, const struct api_actor *who, bool *scoped, char ***names,
		     size_t *n)
{
	struct api_pvo_scope s;
	*scoped = who->role != API_ROLE_ADMIN;
	*names = NULL;
	*n = 0;
	if (who->role != API_ROLE_OPERATOR)
		return 0;
	int rc = api_pvo_scope_load(a->st, who, &s);
	if (rc < 0)
		return rc;
	*names = s.names;
	*n = s.n;
	return 0;
}

/* True when one of the end user's own recipients of m has been released. */
static bool api_released_for(const struct api_actor *who, const struct store_message *m)
{
	for (size_t i = 0; i < m->nrecipients; i++) {
		if (m->recipients[i].state == STORE_RCPT_RELEASED &&
		    api_owns(who, m->recipients[i].address))
			return true;
	}
	return false;
}

/* Whether m's body (text, headers beyond the summary, raw bytes) is kept from who. */
static bool api_body_hidden(bool hide_bodies_until_released, const struct api_actor *who,
			    const struct store_message *m)
{
	return hide_bodies_until_released && api_is_enduser(who) && !api_released_for(who, m);
}

/* The header fields shown while the body is hidden. */
static bool api_summary_header(const char *name)
{
	static const char *const shown[] = {"From", "To", "Subject", "Date", NULL};
	for (const char *const *n = shown; *n != NULL; n++) {
		if (strcasecmp(name, *n) == 0)
			return true;
	}
	return false;
}

/*
 * Narrows f to what who may see or act on. False when nothing can match (an end
 * user asking for another quarantine, or one without addresses).
 */
static bool api_scope_filter(const struct api_actor *who, struct store_filter *f)
{
	if (!api_is_enduser(who))
		return true;
	if (f->quarantine != NULL && strcmp(f->quarantine, API_ENDUSER_QUARANTINE) != 0)
		return false;
	f->quarantine = API_ENDUSER_QUARANTINE;
	f->addresses = who->addresses;
	f->naddresses = who->naddresses;
	return who->naddresses > 0;
}

/* A Message (docs/openapi.yaml); an end user sees only its own recipients. */
static json_t *api_message_json(int64_t delete_after_ms, const struct api_actor *who,
				const struct store_message *m)
{
	json_t *o = json_object();
	if (o == NULL)
		panic("api: out of memory");
	api_set(o, "id", json_string(m->id));
	/*
	 * A PVO message (store.h): "quarantine" is the first quarantine it is still
	 * held in (else its first), "quarantines" all of them, and it expires at the
	 * latest expiry of those it is held in.
	 */
	const char *quarantine = m->quarantine;
	int64_t pvo_expires = 0;
	json_t *members = NULL;
	if (m->nmemberships > 0) {
		members = json_array();
		quarantine = m->memberships[0].quarantine;
		bool held_seen = false;
		for (size_t i = 0; i < m->nmemberships; i++) {
			const struct store_membership *x = &m->memberships[i];
			if (x->state == STORE_MEMBER_HELD) {
				if (!held_seen)
					quarantine = x->quarantine;
				held_seen = true;
				if (x->expires_at > pvo_expires)
					pvo_expires = x->expires_at;
			}
			json_t *xo = json_object();
			api_set(xo, "name", http_json_string_or_null(x->quarantine));
			api_set(xo, "type", http_json_string_or_null(x->type));
			api_set(xo, "reason", http_json_string_or_null(x->reason));
			api_set(xo, "entered_at", api_time_or_null(x->entered_at));
			api_set(xo, "expires_at", api_time_or_null(x->expires_at));
			api_set(xo, "state", json_string(store_membership_state_name(x->state)));
			api_set(xo, "rescan", json_string(store_rescan_state_name(x->rescan)));
			api_set(xo, "rescanned_at", api_time_or_null(x->rescanned_at));
			api_set(xo, "rescan_rule", http_json_string_or_null(x->rescan_rule));
			json_array_append_new(members, xo);
		}
	}
	api_set(o, "quarantine", http_json_string_or_null(quarantine));
	api_set(o, "received_at", api_time_or_null(m->received_at));
	api_set(o, "sender", http_json_string_or_null(m->sender != NULL ? m->sender : ""));
	json_t *rcpts = json_array();
	for (size_t i = 0; i < m->nrecipients; i++) {
		const struct store_recipient *r = &m->recipients[i];
		if (api_is_enduser(who) && !api_owns(who, r->address))
			continue;
		json_t *ro = json_object();
		api_set(ro, "address", http_json_string_or_null(r->address));
		api_set(ro, "state", json_string(store_rcpt_state_name(r->state)));
		if (r->reply != NULL)
			api_set(ro, "reply", http_json_string_or_null(r->reply));
		json_array_append_new(rcpts, ro);
	}
	api_set(o, "recipients", rcpts);
	api_set(o, "from", http_json_string_or_null(m->from));
	api_set(o, "subject", http_json_string_or_null(m->subject));
	api_set(o, "size", json_integer((json_int_t)m->size));
	/* The spam quarantine's verdict defaults to spam; others have none. */
	const char *verdict = m->verdict != NULL && *m->verdict != '\0' ? m->verdict : NULL;
	if (verdict == NULL && m->quarantine != NULL && strcmp(m->quarantine, "spam") == 0)
		verdict = "spam";
	api_set(o, "verdict", http_json_string_or_null(verdict));
	api_set(o, "score", m->has_score ? json_real(m->score) : json_null());
	api_set(o, "gateway", http_json_string_or_null(m->gateway));
	if (members != NULL) {
		api_set(o, "expires_at",
			pvo_expires > 0 ? api_time_or_null(pvo_expires) : json_null());
		api_set(o, "quarantines", members);
		return o;
	}
	api_set(o, "expires_at",
		delete_after_ms > 0 && m->received_at != 0
		    ? api_time_or_null(m->received_at + delete_after_ms)
		    : json_null());
	return o;
}

/* ---- shared validation ---- */

/*
 * Sets one filter field of f from its text (pointers into value are kept). 0, or
 * -EINVAL with *err naming the field when the value is malformed.
 */
static int api_filter_set(struct store_filter *f, const char *name, const char *value, char **err)
{
	if (strcmp(name, "since") == 0 || strcmp(name, "until") == 0) {
		int64_t ms;
		if (clock_parse_rfc3339(value, &ms) < 0) {
			*err = xasprintf("\"%s\" must be an RFC 3339 date-time "
					 "(e.g. 2026-11-27T19:30:00Z)",
					 name);
			return -EINVAL;
		}
		if (name[0] == 's') {
			f->since = ms;
		} else {
			/* The store reads 0 as "unbounded"; before 1970 means "nothing". */
			f->until = ms != 0 ? ms : -1;
		}
		return 0;
	}
	if (strcmp(name, "state") == 0) {
		enum store_rcpt_state st;
		if (store_rcpt_state_parse(value, &st) < 0) {
			*err =
			    xasprintf("\"state\" must be one of quarantined, releasing, released, "
				      "deleted, expired, failed");
			return -EINVAL;
		}
		f->state = value;
		return 0;
	}
	if (strcmp(name, "quarantine") == 0)
		f->quarantine = value;
	else if (strcmp(name, "recipient") == 0)
		f->recipient = value;
	else if (strcmp(name, "sender") == 0)
		f->sender = value;
	else if (strcmp(name, "subject") == 0)
		f->subject = value;
	else if (strcmp(name, "verdict") == 0)
		f->verdict = value;
	else if (strcmp(name, "gateway") == 0)
		f->gateway = value;
	else
		panic("api: unknown filter field %s", name);
	return 0;
}

/* Strictly a decimal number in lo..hi. */
static int api_parse_uint(const char *s, unsigned long lo, unsigned long hi, unsigned long *out)
{
	unsigned long v = 0;
	if (s == NULL || *s == '\0' || strlen(s) > 9)
		return -EINVAL;
	for (const char *p = s; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(*p - '0');
	}
	if (v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

/*
 * Parses an optional JSON object body. *out is NULL for an empty body. Answers the
 * request and returns -1 when the body is unusable (413, 400, 422).
 */
int api_body_object(struct api *a, struct http_server_request *req, json_t **out)
{
	const char *data;
	size_t len;
	*out = NULL;
	http_server_request_body(req, &data, &len);
	if (strspn(data, " \t\r\n") == len)
		return 0;
	return http_server_request_json_object(req, a->max_body, out) < 0 ? -1 : 0;
}

void api_reply_store_error(struct http_server_request *req, const char *what, int rc)
{
	if (store_error_unavailable(rc)) {
		log_warn("api.store_unavailable", "call=%s", what);
		http_server_add_header(req, "Retry-After", API_STORE_UNAVAILABLE_RETRY);
		http_server_reply_error(req, 503, API_STORE_UNAVAILABLE_TEXT);
		return;
	}
	log_error("api.store_error", "call=%s error=%s", what, strerror(-rc));
	http_server_reply_error(req, 500, "the quarantine store failed (%s)", strerror(-rc));
}

/* ---- endpoints ---- */

/*
 * Liveness: 200 while the process serves, whatever its database does (restarting
 * the manager would not bring PostgreSQL back). The body says whether the store
 * can be reached: {"status": "ok"|"degraded", "store": "up"|"down"}, and with a
 * read replica "replica": "up"|"down" (down: its reads go to the primary).
 */
static void api_healthz(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	struct store_status ss;
	store_status(a->st, &ss);
	json_t *o = json_pack("{s:s, s:s}", "status", ss.available ? "ok" : "degraded", "store",
			      ss.available ? "up" : "down");
	if (ss.replica)
		json_object_set_new(o, "replica",
				    json_string(ss.replica_available ? "up" : "down"));
	http_server_reply_json(req, 200, o);
}

static void api_metrics(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	char *text = metrics_render(a->st);
	http_server_reply_bytes(req, 200, "text/plain; version=0.0.4; charset=utf-8", text,
				strlen(text));
	free(text);
}

/*
 * The reads below (quarantine totals, listings, a message's detail, its raw bytes
 * and attachments) run in two halves: the handler, on the loop thread, checks the
 * request and copies what the read needs into a context; the read function, on a
 * reader thread (api_read.h), queries the store and builds the reply from that
 * context alone: never from the request, the api or its configuration.
 */

/* What every message read needs from the api and the actor (a copy per read). */
struct api_read_view {
	struct store *st;
	struct api_actor *who; /* api_read_actor_copy */
	int64_t delete_after_ms;
	bool hide_bodies_until_released;
};

static void api_view_init(struct api *a, struct http_server_request *req, struct api_read_view *v)
{
	v->st = a->st;
	v->who = api_read_actor_copy(api_actor(a, req));
	v->delete_after_ms = a->delete_after_ms;
	v->hide_bodies_until_released = a->cfg.hide_bodies_until_released;
}

struct api_quarantines_read {
	struct api_read_view v;
};

static void api_quarantines_read_free(void *arg)
{
	struct api_quarantines_read *q = arg;
	free(q->v.who);
	free(q);
}

/* Reader thread: GET /api/v1/quarantines. */
static void api_quarantines_work(void *arg, struct api_read_reply *out)
{
	struct api_quarantines_read *ctx = arg;
	const struct api_actor *who = ctx->v.who;
	struct store_quarantine_stats *v = NULL;
	size_t n = 0;
	int rc = store_quarantines(ctx->v.st, &v, &n);
	if (rc < 0) {
		api_read_reply_store_error(out, "store_quarantines", rc);
		return;
	}
	json_t *list = json_array();
	for (size_t i = 0; i < n; i++) {
		/* End users: only their quarantine, and no totals over other people's mail. */
		if (api_is_enduser(who)) {
			if (v[i].name == NULL || strcmp(v[i].name, API_ENDUSER_QUARANTINE) != 0)
				continue;
			json_array_append_new(list,
					      json_pack("{s:s,s:s}", "name", v[i].name, "type",
							v[i].type != NULL ? v[i].type : "spam"));
			continue;
		}
		/* Operators: spam (and a gateway's local ones) and their PVO quarantines. */
		if (who->role == API_ROLE_OPERATOR &&
		    (v[i].type == NULL || strcmp(v[i].type, "spam") != 0)) {
			bool assigned = false;
			for (size_t k = 0; k < v[i].noperators && !assigned; k++)
				assigned = strcmp(v[i].operators[k], who->username) == 0;
			if (!assigned)
				continue;
		}
		json_array_append_new(list, api_quarantine_json(&v[i]));
	}
	store_quarantine_stats_free(v, n);
	json_t *body = json_object();
	api_set(body, "quarantines", list);
	api_read_reply_json(out, 200, body);
}

static void api_quarantines(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	struct api_quarantines_read *ctx = xcalloc(1, sizeof(*ctx));
	api_view_init(a, req, &ctx->v);
	api_read_submit(a->reads, req, "quarantines", api_quarantines_work, NULL, ctx,
			api_quarantines_read_free);
}

/* GET /api/v1/messages: the filter's strings are copies owned here. */
struct api_list_read {
	struct api_read_view v;
	char *values[sizeof(api_filter_fields) / sizeof(api_filter_fields[0])];
	char *cursor;
	unsigned long limit;
	struct store_filter f; /* points into values and v.who */
};

static void api_list_read_free(void *arg)
{
	struct api_list_read *l = arg;
	for (size_t i = 0; i < sizeof(l->values) / sizeof(l->values[0]); i++)
		free(l->values[i]);
	free(l->cursor);
	free(l->v.who);
	free(l);
}

/* Reader thread: the page of the listing. */
static void api_list_work(void *arg, struct api_read_reply *out)
{
	struct api_list_read *l = arg;
	struct store_message **msgs = NULL;
	size_t n = 0;
	char *next = NULL;
	struct api_pvo_scope scope;
	int rc = api_pvo_scope_load(l->v.st, l->v.who, &scope);
	if (rc < 0) {
		api_read_reply_store_error(out, "store_operator_quarantines", rc);
		return;
	}
	api_pvo_scope_filter(&scope, &l->f);
	rc = store_list(l->v.st, &l->f, l->limit, l->cursor, &msgs, &n, &next);
	if (rc == 0) {
		for (size_t i = 0; i < n; i++)
			api_pvo_narrow(&scope, msgs[i]);
	}
	api_pvo_scope_free(&scope);
	l->f.pvo_quarantines = NULL;
	if (rc == -EINVAL) {
		api_read_reply_error(out, 400, l->cursor != NULL ? "bad cursor" : "bad filter");
		return;
	}
	if (rc < 0) {
		api_read_reply_store_error(out, "store_list", rc);
		return;
	}
	json_t *list = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(list,
				      api_message_json(l->v.delete_after_ms, l->v.who, msgs[i]));
	store_message_array_free(msgs, n);
	api_read_reply_page(out, list, next);
}

static void api_list_messages(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	struct api_list_read *l = xcalloc(1, sizeof(*l));
	char *err = NULL;
	static const char *const single[] = {"limit", "cursor"};
	for (size_t i = 0; i < 2; i++) {
		if (http_server_request_query_count(req, single[i]) > 1) {
			http_server_reply_error(
			    req, 400, "query parameter \"%s\" given more than once", single[i]);
			goto refused;
		}
	}
	for (size_t i = 0; api_filter_fields[i] != NULL; i++) {
		const char *name = api_filter_fields[i];
		if (http_server_request_query_count(req, name) > 1) {
			http_server_reply_error(
			    req, 400, "query parameter \"%s\" given more than once", name);
			goto refused;
		}
		const char *v = http_server_request_query(req, name);
		if (v == NULL || *v == '\0')
			continue;
		l->values[i] = xstrdup(v);
		if (api_filter_set(&l->f, name, l->values[i], &err) < 0) {
			http_server_reply_error(req, 400, "%s", err);
			free(err);
			goto refused;
		}
	}
	l->limit = API_LIST_DEFAULT_LIMIT;
	const char *limit_text = http_server_request_query(req, "limit");
	if (limit_text != NULL &&
	    api_parse_uint(limit_text, 1, API_LIST_MAX_LIMIT, &l->limit) < 0) {
		http_server_reply_error(req, 400, "\"limit\" must be a number from 1 to %d",
					API_LIST_MAX_LIMIT);
		goto refused;
	}
	const char *cursor = http_server_request_query(req, "cursor");
	if (cursor != NULL && *cursor != '\0')
		l->cursor = xstrdup(cursor);
	api_view_init(a, req, &l->v);
	if (!api_scope_filter(l->v.who, &l->f)) {
		http_server_reply_json(req, 200,
				       json_pack("{s:[],s:n}", "messages", "next_cursor"));
		goto refused;
	}
	api_read_submit(a->reads, req, "list", api_list_work, NULL, l, api_list_read_free);
	return;

refused:
	api_list_read_free(l);
}

/*
 * Reader thread: the original bytes of message id into *raw (caller frees). On
 * failure fills out (404 when it was purged meanwhile, 500 or 503 otherwise)
 * and returns false.
 */
static bool api_load_raw(struct store *st, const char *id, struct api_read_reply *out,
			 unsigned char **raw, size_t *len)
{
	int rc = store_get_raw(st, id, raw, len);
	if (rc == -ENOENT) {
		api_read_reply_error(out, 404, "no such message");
		return false;
	}
	if (rc < 0) {
		api_read_reply_store_error(out, "store_get_raw", rc);
		return false;
	}
	return true;
}

/*
 * Reader thread: message id as who may see it. Fills out and returns NULL when
 * not (404 for an unknown, malformed or someone else's id, alike).
 */
static struct store_message *api_read_lookup(const struct api_read_view *v, const char *id,
					     struct api_read_reply *out)
{
	struct store_message *m = NULL;
	/* A malformed id cannot name a message: same answer as an unknown one. */
	int rc = id != NULL && ids_valid(id) ? store_get(v->st, id, &m) : -ENOENT;
	if (rc == 0 && (rc = api_scope_message(v->st, v->who, m)) < 0) {
		/* Someone else's message looks exactly like an unknown one. */
		store_message_free(m);
		m = NULL;
	}
	if (rc == -ENOENT || rc == -EINVAL) {
		api_read_reply_error(out, 404, "no such message");
		return NULL;
	}
	if (rc < 0) {
		api_read_reply_store_error(out, "store_get", rc);
		return NULL;
	}
	return m;
}

/* Loop thread: the message named by the path's {id}; answers 404/500 and returns NULL otherwise. */
static struct store_message *api_lookup(struct api *a, struct http_server_request *req)
{
	const char *id = http_server_request_param(req, "id");
	struct store_message *m = NULL;
	/* A malformed id cannot name a message: same answer as an unknown one. */
	int rc = id != NULL && ids_valid(id) ? store_get(a->st, id, &m) : -ENOENT;
	if (rc == 0 && (rc = api_scope_message(a->st, api_actor(a, req), m)) < 0) {
		/* Someone else's message looks exactly like an unknown one. */
		store_message_free(m);
		m = NULL;
	}
	if (rc == -ENOENT || rc == -EINVAL) {
		http_server_reply_error(req, 404, "no such message");
		return NULL;
	}
	if (rc < 0) {
		api_reply_store_error(req, "store_get", rc);
		return NULL;
	}
	return m;
}

void api_reply_message(struct api *a, struct http_server_request *req, const char *id, int status)
{
	const struct api_actor *who = api_actor(a, req);
	struct store_message *m = NULL;
	int rc = id != NULL && ids_valid(id) ? store_get(a->st, id, &m) : -ENOENT;
	if (rc == 0)
		rc = api_scope_message(a->st, who, m);
	if (rc == -ENOENT || rc == -EINVAL)
		http_server_reply_error(req, 404, "no such message");
	else if (rc < 0)
		api_reply_store_error(req, "store_get", rc);
	else
		http_server_reply_json(req, status, api_message_json(a->delete_after_ms, who, m));
	store_message_free(m);
}

/*
 * One message's read: the detail, the raw bytes or an attachment. For downloads
 * the reader thread leaves what the audit row needs; the row is written on the
 * loop thread when the bytes go out (api_download_finish), exactly once.
 */
struct api_message_read {
	struct api_read_view v;
	struct api *a; /* for the audit row, on the loop thread only */
	char id[IDS_UUID_LEN + 1];
	bool id_ok;	  /* the path's {id} fits in id */
	char *index_text; /* attachments: the path's {index} */
	char *peer;
	/* a download that went out: filled by the reader thread */
	const char *what;   /* "raw" | "attachment"; NULL: nothing to audit */
	json_t *audit;	    /* the audit row's detail */
	size_t audit_bytes; /* what the client gets */
};

static void api_message_read_free(void *arg)
{
	struct api_message_read *r = arg;
	json_decref(r->audit);
	free(r->index_text);
	free(r->peer);
	free(r->v.who);
	free(r);
}

static struct api_message_read *api_message_read_new(struct api *a, struct http_server_request *req)
{
	struct api_message_read *r = xcalloc(1, sizeof(*r));
	const char *id = http_server_request_param(req, "id");
	r->id_ok = id != NULL && strlen(id) < sizeof(r->id);
	if (r->id_ok)
		memcpy(r->id, id, strlen(id) + 1);
	r->a = a;
	r->peer = xstrdup(http_server_request_peer(req));
	api_view_init(a, req, &r->v);
	return r;
}

/* Reader thread: GET /api/v1/messages/{id}. */
static void api_get_message_work(void *arg, struct api_read_reply *out)
{
	struct api_message_read *r = arg;
	struct store_message *m = api_read_lookup(&r->v, r->id_ok ? r->id : NULL, out);
	if (m == NULL)
		return;
	unsigned char *raw = NULL;
	size_t len = 0;
	struct msgmeta *meta = NULL;
	if (!api_load_raw(r->v.st, m->id, out, &raw, &len))
		goto done;
	msgmeta_parse(raw, len, &meta);
	const struct api_actor *who = r->v.who;
	bool hidden = api_body_hidden(r->v.hide_bodies_until_released, who, m);
	json_t *o = api_message_json(r->v.delete_after_ms, who, m);
	json_t *headers = json_array();
	for (size_t i = 0; meta != NULL && i < meta->nheaders; i++) {
		if (hidden && !api_summary_header(meta->headers[i].name))
			continue;
		json_t *h = json_object();
		api_set(h, "name", http_json_string_or_null(meta->headers[i].name));
		api_set(h, "value",
			http_json_string_or_null(
			    meta->headers[i].value != NULL ? meta->headers[i].value : ""));
		json_array_append_new(headers, h);
	}
	api_set(o, "headers", headers);
	json_t *atts = json_array();
	for (size_t i = 0; i < m->nattachments; i++) {
		json_t *at = json_object();
		api_set(at, "filename", http_json_string_or_null(m->attachments[i].filename));
		api_set(at, "content_type",
			http_json_string_or_null(m->attachments[i].content_type));
		api_set(at, "size", json_integer((json_int_t)m->attachments[i].size));
		json_array_append_new(atts, at);
	}
	api_set(o, "attachments", atts);
	api_set(o, "body_hidden", json_boolean(hidden));
	if (!hidden) {
		struct msgmeta_text body;
		msgmeta_text_body(raw, len, API_TEXT_BODY_MAX, &body);
		api_set(o, "text_body", http_json_string_or_null(body.text));
		api_set(o, "text_body_truncated", json_boolean(body.truncated));
		api_set(o, "text_body_from_html", json_boolean(body.from_html));
		free(body.text);
	}
	api_read_reply_json(out, 200, o);

done:
	msgmeta_free(meta);
	free(raw);
	store_message_free(m);
}

static void api_get_message(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	api_read_submit(a->reads, req, "message", api_get_message_work, NULL,
			api_message_read_new(a, req), api_message_read_free);
}

/*
 * The download policy, for the raw message and for attachments alike: whether
 * who may have the bytes of the message named by req's {id}. The role part, on
 * the loop thread: 403 below download_min_role for any id, known or not, so
 * that the answer tells nothing about it (answers and returns false).
 */
static bool api_download_role_ok(struct api *a, struct http_server_request *req)
{
	enum api_role min = a->cfg.download_min_role != API_ROLE_NONE
				? (enum api_role)a->cfg.download_min_role
				: API_ROLE_ADMIN;
	return api_require_role(a, req, min);
}

/*
 * The message part, on the reader thread: 404 for an id who cannot see (an end
 * user's scope), 403 for an end user while hide_bodies_until_released hides the
 * body. Otherwise the message (caller frees).
 */
static struct store_message *api_download_allowed(const struct api_message_read *r,
						  struct api_read_reply *out)
{
	struct store_message *m = api_read_lookup(&r->v, r->id_ok ? r->id : NULL, out);
	if (m == NULL)
		return NULL;
	if (api_body_hidden(r->v.hide_bodies_until_released, r->v.who, m)) {
		store_message_free(m);
		api_read_reply_error(out, 403, "message bodies are hidden until released");
		return NULL;
	}
	return m;
}

/* Reader thread: notes the download for its audit row; detail is taken. */
static void api_download_note(struct api_message_read *r, const char *what, size_t bytes,
			      json_t *detail)
{
	if (json_object_set_new(detail, "what", json_string(what)) != 0 ||
	    json_object_set_new(detail, "size", json_integer((json_int_t)bytes)) != 0)
		panic("api: cannot build JSON for a download");
	json_decref(r->audit);
	r->what = what;
	r->audit = detail;
	r->audit_bytes = bytes;
}

/*
 * Loop thread, just before the reply: the one audit row (and log line) of a
 * download whose bytes go out now, in the name of the actor that asked for them.
 */
static void api_download_finish(struct http_server_request *req, void *arg,
				const struct api_read_reply *out)
{
	struct api_message_read *r = arg;
	if (out->status != 200 || r->what == NULL)
		return;
	log_info("api.download", "id=%s what=%s bytes=%zu by=%s peer=%s", r->id, r->what,
		 r->audit_bytes, r->v.who->username, r->peer);
	api_audit(r->a, req, "download", r->id, json_incref(r->audit));
}

/* Reader thread: GET /api/v1/messages/{id}/raw. */
static void api_get_raw_work(void *arg, struct api_read_reply *out)
{
	struct api_message_read *r = arg;
	struct store_message *m = api_download_allowed(r, out);
	if (m == NULL)
		return;
	unsigned char *raw = NULL;
	size_t len = 0;
	if (api_load_raw(r->v.st, m->id, out, &raw, &len)) {
		api_download_note(r, "raw", len, json_object());
		out->disposition = xasprintf("attachment; filename=\"%s.eml\"", m->id);
		api_read_reply_bytes(out, 200, "message/rfc822", raw, len);
	}
	store_message_free(m);
}

/* GET /api/v1/messages/{id}/raw: the message as received, under the download policy. */
static void api_get_raw(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	if (!api_download_role_ok(a, req))
		return;
	api_read_submit(a->reads, req, "raw", api_get_raw_work, api_download_finish,
			api_message_read_new(a, req), api_message_read_free);
}
/* Characters RFC 5987 lets stand in an ext-value; every other byte is written %XX. */
static bool api_attr_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       (c != '\0' && strchr("!#$&+-.^_`|~", c) != NULL);
}

/*
 * The Content-Disposition of a download (RFC 6266). The name is cut to its last
 * path segment and API_ATTACHMENT_NAME_MAX bytes (on a character boundary),
 * control characters become '_', leading dots and spaces and trailing ones go;
 * fallback stands in when nothing is left. filename*=UTF-8''... carries it
 * percent-encoded (RFC 5987); filename="..." is an ASCII fallback for old
 * clients in which every run of non-ASCII bytes, quotes, backslashes and '%' is
 * one '_'. The value never holds a CR, LF or unescaped quote. Caller frees.
 */
static char *api_content_disposition(const char *name, const char *fallback)
{
	const char *base = name != NULL ? name : "";
	for (const char *p = base; *p != '\0'; p++) {
		if (*p == '/' || *p == '\\')
			base = p + 1;
	}
	while (*base == '.' || *base == ' ')
		base++;
	size_t n = strlen(base);
	if (n > API_ATTACHMENT_NAME_MAX) {
		n = API_ATTACHMENT_NAME_MAX;
		while (n > 0 && ((unsigned char)base[n] & 0xC0) == 0x80)
			n--;
	}
	while (n > 0 && (base[n - 1] == '.' || base[n - 1] == ' '))
		n--;
	if (n == 0) {
		base = fallback;
		n = strlen(fallback);
	}
	char *clean = xmalloc(n + 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)base[i];
		clean[i] = c < 0x20 || c == 0x7F ? '_' : (char)c;
	}
	clean[n] = '\0';

	char *ascii = xmalloc(n + 1);
	char *ext = xmalloc(3 * n + 1);
	size_t na = 0, ne = 0;
	bool in_run = false; /* the last byte was replaced in the fallback */
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)clean[i];
		bool plain = c >= 0x20 && c < 0x7F && c != '"' && c != '\\' && c != '%';
		if (plain)
			ascii[na++] = (char)c;
		else if (!in_run)
			ascii[na++] = '_';
		in_run = !plain;
		if (api_attr_char(c)) {
			ext[ne++] = (char)c;
		} else {
			snprintf(ext + ne, 4, "%%%02X", c);
			ne += 3;
		}
	}
	ascii[na] = '\0';
	ext[ne] = '\0';
	char *v = xasprintf("attachment; filename=\"%s\"; filename*=UTF-8''%s", ascii, ext);
	free(clean);
	free(ascii);
	free(ext);
	return v;
}

/* The {index} of an attachment path: plain decimal digits, no sign, no leading zero. */
static bool api_parse_index(const char *text, size_t *out)
{
	size_t len = text != NULL ? strlen(text) : 0;
	if (len == 0 || len > API_ATTACHMENT_INDEX_DIGITS || (len > 1 && text[0] == '0'))
		return false;
	size_t v = 0;
	for (size_t i = 0; i < len; i++) {
		if (text[i] < '0' || text[i] > '9')
			return false;
		v = v * 10 + (size_t)(text[i] - '0');
	}
	*out = v;
	return true;
}

/* Reader thread: GET /api/v1/messages/{id}/attachments/{index}. */
static void api_get_attachment_work(void *arg, struct api_read_reply *out)
{
	struct api_message_read *r = arg;
	struct store_message *m = api_download_allowed(r, out);
	if (m == NULL)
		return;
	size_t index;
	unsigned char *raw = NULL, *data = NULL;
	size_t len = 0, n = 0;
	char *fallback = NULL;
	if (!api_parse_index(r->index_text, &index) || index >= m->nattachments) {
		api_read_reply_error(out, 404, "no such attachment");
		goto done;
	}
	if (!api_load_raw(r->v.st, m->id, out, &raw, &len))
		goto done;
	int rc = msgmeta_attachment_data(raw, len, index, &data, &n);
	if (rc < 0) {
		/* The listing was made when the message arrived; the bytes say otherwise. */
		log_warn("api.attachment_missing", "id=%s attachment=%zu", m->id, index);
		api_read_reply_error(out, 404, "no such attachment");
		goto done;
	}
	const char *name = m->attachments[index].filename;
	fallback = xasprintf("attachment-%zu", index);
	api_download_note(
	    r, "attachment", n,
	    json_pack("{s:I,s:s?}", "attachment", (json_int_t)index, "filename", name));
	out->disposition = api_content_disposition(name, fallback);
	/* Not the attachment's own type: a browser must save it, never show or run it. */
	api_read_reply_bytes(out, 200, "application/octet-stream", data, n);
	data = NULL;

done:
	free(fallback);
	free(data);
	free(raw);
	store_message_free(m);
}

/*
 * GET /api/v1/messages/{id}/attachments/{index}: under the download policy (as
 * .../raw), the attachment's decoded bytes as an opaque download. {index} is the
 * position in the detail's "attachments".
 */
static void api_get_attachment(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	if (!api_download_role_ok(a, req))
		return;
	struct api_message_read *r = api_message_read_new(a, req);
	const char *index = http_server_request_param(req, "index");
	r->index_text = index != NULL ? xstrdup(index) : NULL;
	api_read_submit(a->reads, req, "attachment", api_get_attachment_work, api_download_finish,
			r, api_message_read_free);
}
/* After an -EINVAL from the store: the first address in rcpts that m does not have. */
static const char *api_first_stranger(const struct store_message *m, const char *const *rcpts,
				      size_t n)
{
	for (size_t i = 0; i < n; i++) {
		bool found = false;
		for (size_t j = 0; j < m->nrecipients && !found; j++)
			found = strcasecmp(m->recipients[j].address, rcpts[i]) == 0;
		if (!found)
			return rcpts[i];
	}
	return NULL;
}

/*
 * POST /api/v1/messages/{id}/release and .../delete. A PVO message leaves its
 * quarantines one by one (its memberships): api_pvo_actions.c takes it, with its
 * own body ({"quarantine": name}).
 */
static void api_message_action(struct api *a, struct http_server_request *req, bool release)
{
	const char *id = http_server_request_param(req, "id");
	json_t *body = NULL;
	const char **rcpts = NULL;
	size_t nrcpts = 0;
	char *err = NULL;
	struct store_message *m = NULL;
	if (id == NULL || !ids_valid(id)) {
		http_server_reply_error(req, 404, "no such message");
		return;
	}
	if (api_body_object(a, req, &body) < 0)
		return;
	int found = store_get(a->st, id, &m);
	if (found == -ENOENT) {
		/* whatever the body: neither a spam nor a PVO action can name it */
		http_server_reply_error(req, 404, "no such message");
		goto done;
	}
	if (found == 0 && (m->nmemberships > 0 || strcmp(m->quarantine, STORE_PVO_MARKER) == 0)) {
		api_pvo_message_action(a, req, m, body,
				       release ? STORE_PVO_RELEASE : STORE_PVO_DELETE);
		goto done;
	}
	store_message_free(m);
	m = NULL;
	if (body != NULL) {
		static const char *const allowed[] = {"recipients", NULL};
		int rc = http_json_check_keys(body, allowed, &err);
		if (rc == 0) {
			rc = http_json_get_string_array(body, "recipients", API_MAX_BODY_RECIPIENTS,
							&rcpts, &nrcpts, &err);
			if (rc == 0 && nrcpts == 0) {
				err = xstrdup("\"recipients\" must not be empty (leave it out to "
					      "act on every recipient)");
				rc = -EINVAL;
			}
		}
		if (rc < 0 && rc != -ENOENT) {
			http_server_reply_error(req, 422, "%s", err);
			goto done;
		}
	}
	const struct api_actor *who = api_actor(a, req);
	if (api_is_enduser(who)) {
		/* Only a message of theirs, and only for their own recipients. */
		m = api_lookup(a, req);
		if (m == NULL)
			goto done;
		for (size_t i = 0; i < nrcpts; i++) {
			if (!api_owns(who, rcpts[i])) {
				http_server_reply_error(
				    req, 422, "%s is not a recipient of this message", rcpts[i]);
				goto done;
			}
		}
		if (nrcpts == 0) {
			for (size_t i = 0; i < m->nrecipients; i++) {
				if (!api_owns(who, m->recipients[i].address))
					continue;
				rcpts = xreallocarray(rcpts, nrcpts + 1, sizeof(*rcpts));
				rcpts[nrcpts++] = m->recipients[i].address;
			}
		}
	}
	int changed = 0;
	int64_t now = clock_now_ms();
	int rc = release ? store_release(a->st, id, rcpts, nrcpts, now, &changed)
			 : store_delete(a->st, id, rcpts, nrcpts, now, &changed);
	if (rc == -ENOENT) {
		http_server_reply_error(req, 404, "no such message");
		goto done;
	}
	if (rc == -EINVAL) {
		const char *stranger = NULL;
		if (m != NULL || store_get(a->st, id, &m) == 0)
			stranger = api_first_stranger(m, rcpts, nrcpts);
		if (stranger != NULL)
			http_server_reply_error(req, 422, "%s is not a recipient of this message",
						stranger);
		else
			http_server_reply_error(req, 422, "not a recipient of this message");
		goto done;
	}
	if (rc < 0) {
		api_reply_store_error(req, release ? "store_release" : "store_delete", rc);
		goto done;
	}
	if (release && a->rel != NULL)
		release_kick(a->rel);
	if (!release && changed > 0)
		metrics_add(METRICS_DELETED, (uint64_t)changed);
	log_info(release ? "api.release" : "api.delete", "id=%s changed=%d by=%s peer=%s", id,
		 changed, who->username, http_server_request_peer(req));
	/* "all" when the request named no recipients. */
	json_t *audit_rcpts = nrcpts > 0 ? json_array() : json_string("all");
	for (size_t i = 0; i < nrcpts; i++)
		json_array_append_new(audit_rcpts, http_json_string_or_null(rcpts[i]));
	if (changed > 0)
		/* the manager's tracking story of the message (own_events.h) */
		own_events_add(now, release ? "release" : "delete", id,
			       release ? "releasing" : "deleted", 0,
			       json_pack("{s:O,s:i,s:s?}", "recipients", audit_rcpts, "changed",
					 changed, "by", who->username),
			       NULL);
	api_audit(a, req, release ? "release" : "delete", id,
		  json_pack("{s:o,s:i}", "recipients", audit_rcpts, "changed", changed));
	struct store_message *after = api_lookup(a, req);
	if (after != NULL) {
		http_server_reply_json(req, release ? 202 : 200,
				       api_message_json(a->delete_after_ms, who, after));
		store_message_free(after);
	}

done:
	store_message_free(m);
	free(err);
	free(rcpts);
	json_decref(body);
}

static void api_release_message(struct http_server_request *req, void *arg)
{
	api_message_action(arg, req, true);
}

static void api_delete_message(struct http_server_request *req, void *arg)
{
	api_message_action(arg, req, false);
}

/*
 * Reads the filter fields of src into f (pointers into src). 0, or -EINVAL with *err.
 * *any is set when at least one field was given.
 */
static int api_filter_from_json(const json_t *src, struct store_filter *f, bool *any, char **err)
{
	for (const char *const *name = api_filter_fields; *name != NULL; name++) {
		const char *v = NULL;
		int rc = http_json_get_string(src, *name, &v, err);
		if (rc == -ENOENT)
			continue;
		if (rc < 0)
			return rc;
		if (*v == '\0') {
			/* An empty value would widen the filter to everything. */
			*err = xasprintf("filter field \"%s\" must not be empty", *name);
			return -EINVAL;
		}
		if (api_filter_set(f, *name, v, err) < 0)
			return -EINVAL;
		*any = true;
	}
	return 0;
}

static bool api_has_filter_field(const json_t *obj)
{
	for (const char *const *name = api_filter_fields; *name != NULL; name++) {
		if (json_object_get(obj, *name) != NULL)
			return true;
	}
	return false;
}

/* Keeps the well-formed ids of ids[0..n) at its front, in order: how many. */
static size_t api_ids_keep_valid(const char **ids, size_t n)
{
	size_t kept = 0;
	for (size_t i = 0; i < n; i++) {
		if (ids_valid(ids[i]))
			ids[kept++] = ids[i];
	}
	return kept;
}

/*
 * POST /api/v1/messages/release, .../delete, .../delay and .../move. A filter whose
 * "quarantine" names a PVO quarantine (delay and move: always) acts on the
 * messages' memberships in it (api_pvo_actions.c); otherwise on spam recipients.
 */
static void api_bulk_action(struct api *a, struct http_server_request *req,
			    enum store_pvo_action verb)
{
	bool release = verb == STORE_PVO_RELEASE;
	json_t *body = NULL;
	const char **ids = NULL;
	size_t nids = 0;
	char *err = NULL;
	bool all = false, any = false, have_ids = false;
	struct store_filter f;
	memset(&f, 0, sizeof(f));
	if (api_body_object(a, req, &body) < 0)
		return;
	if (body == NULL) {
		http_server_reply_error(req, 422, "give \"ids\", a filter, or \"all\": true");
		return;
	}
	static const char *const allowed_spam[] = {
	    "ids",   "filter", "all",	  "quarantine", "recipient", "sender", "subject",
	    "since", "until",  "verdict", "gateway",	"state",     NULL};
	static const char *const allowed_release[] = {
	    "ids",   "filter", "all",	  "quarantine", "recipient", "sender", "subject",
	    "since", "until",  "verdict", "gateway",	"state",     "rescan", NULL};
	static const char *const allowed_delay[] = {
	    "ids",   "filter", "all",	  "quarantine", "recipient", "sender", "subject",
	    "since", "until",  "verdict", "gateway",	"by",	     NULL};
	static const char *const allowed_move[] = {
	    "ids",     "filter", "all",	  "from",    "to",	"recipient", "sender",
	    "subject", "since",	 "until", "verdict", "gateway", NULL};
	const char *const *allowed = verb == STORE_PVO_DELAY	 ? allowed_delay
				     : verb == STORE_PVO_MOVE	 ? allowed_move
				     : verb == STORE_PVO_RELEASE ? allowed_release
								 : allowed_spam;
	int rc = http_json_check_keys(body, allowed, &err);
	if (rc == 0)
		rc = http_json_get_bool(body, "all", &all, &err);
	if (rc == 0 || rc == -ENOENT) {
		rc = http_json_get_string_array(body, "ids", STORE_BULK_MAX_IDS, &ids, &nids, &err);
		have_ids = rc == 0;
	}
	if (rc == 0 || rc == -ENOENT) {
		json_t *filter = json_object_get(body, "filter");
		rc = 0;
		if (filter != NULL && !json_is_null(filter)) {
			static const char *const fields_only[] = {
			    "quarantine", "recipient", "sender",  "subject", "since",
			    "until",	  "verdict",   "gateway", "state",   NULL};
			if (!json_is_object(filter)) {
				err = xstrdup("field \"filter\" must be an object");
				rc = -EINVAL;
			} else if (api_has_filter_field(body)) {
				err =
				    xstrdup("give the filter fields either in \"filter\" or at the "
					    "top level, not both");
				rc = -EINVAL;
			} else {
				rc = http_json_check_keys(filter, fields_only, &err);
				if (rc == 0)
					rc = api_filter_from_json(filter, &f, &any, &err);
			}
		} else {
			rc = api_filter_from_json(body, &f, &any, &err);
		}
	}
	if (rc < 0) {
		http_server_reply_error(req, 422, "%s", err);
		goto done;
	}
	if (verb == STORE_PVO_MOVE) {
		/* the quarantine the messages leave is "from" */
		const char *from = NULL;
		if (f.quarantine != NULL) {
			http_server_reply_error(req, 422,
						"give the quarantine to move from as \"from\"");
			goto done;
		}
		rc = http_json_get_string(body, "from", &from, &err);
		if (rc == -EINVAL) {
			http_server_reply_error(req, 422, "%s", err);
			goto done;
		}
		if (rc == 0) {
			f.quarantine = from;
			any = true;
		}
	}
	if (verb == STORE_PVO_DELAY || verb == STORE_PVO_MOVE ||
	    (f.quarantine != NULL && api_pvo_is_quarantine(a, f.quarantine))) {
		/* ids already checked by the filter parser; malformed ones name nothing */
		f.ids = have_ids ? ids : NULL;
		f.nids = api_ids_keep_valid(ids, nids);
		api_pvo_bulk_action(a, req, body, &f, have_ids, verb);
		goto done;
	}
	if (json_object_get(body, "rescan") != NULL &&
	    !json_is_null(json_object_get(body, "rescan"))) {
		http_server_reply_error(req, 422,
					"\"rescan\" applies to policy, virus and outbreak "
					"quarantines only");
		goto done;
	}
	if (!have_ids && !any && !all) {
		http_server_reply_error(req, 422,
					"refusing to act on every message: give \"ids\", a filter, "
					"or \"all\": true");
		goto done;
	}
	int changed = 0;
	if (have_ids) {
		/* Malformed ids name nothing; an empty list must not become "no id filter". */
		size_t kept = api_ids_keep_valid(ids, nids);
		if (kept == 0)
			goto reply;
		f.ids = ids;
		f.nids = kept;
	}
	if (!api_scope_filter(api_actor(a, req), &f))
		goto reply;
	f.exclude_pvo = true; /* as for one message: PVO messages leave per quarantine */
	int64_t now = clock_now_ms();
	rc = release ? store_release_matching(a->st, &f, now, &changed)
		     : store_delete_matching(a->st, &f, now, &changed);
	if (rc == -EINVAL) {
		http_server_reply_error(req, 422, "the filter was refused");
		goto done;
	}
	if (rc < 0) {
		api_reply_store_error(
		    req, release ? "store_release_matching" : "store_delete_matching", rc);
		goto done;
	}
	if (release && a->rel != NULL)
		release_kick(a->rel);
	if (!release && changed > 0)
		metrics_add(METRICS_DELETED, (uint64_t)changed);

reply:
	if (nids > API_AUDIT_MAX_IDS) {
		/* Keep the audit row bounded: the first ids and how many there were. */
		json_t *few = json_array();
		for (size_t i = 0; i < API_AUDIT_MAX_IDS; i++)
			json_array_append_new(few, http_json_string_or_null(ids[i]));
		json_object_set_new(body, "ids", few);
		json_object_set_new(body, "ids_total", json_integer((json_int_t)nids));
	}
	api_audit(a, req, release ? "bulk_release" : "bulk_delete", NULL,
		  json_pack("{s:O,s:i}", "request", body, "changed", changed));
	log_info(release ? "api.bulk_release" : "api.bulk_delete",
		 "changed=%d ids=%zu filter=%s all=%s peer=%s", changed, nids, any ? "yes" : "no",
		 all ? "yes" : "no", http_server_request_peer(req));
	http_server_reply_json(req, 200, json_pack("{s:i}", "changed", changed));

done:
	free(err);
	free(ids);
	json_decref(body);
}

static void api_bulk_release(struct http_server_request *req, void *arg)
{
	api_bulk_action(arg, req, STORE_PVO_RELEASE);
}

static void api_bulk_delete(struct http_server_request *req, void *arg)
{
	api_bulk_action(arg, req, STORE_PVO_DELETE);
}

static void api_bulk_delay(struct http_server_request *req, void *arg)
{
	api_bulk_action(arg, req, STORE_PVO_DELAY);
}

static void api_bulk_move(struct http_server_request *req, void *arg)
{
	api_bulk_action(arg, req, STORE_PVO_MOVE);
}

/* ---- lifecycle ---- */

static bool api_state_changing(const char *method)
{
	return strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
	       strcmp(method, "DELETE") == 0 || strcmp(method, "PATCH") == 0;
}

/* True when origin's "host[:port]" is the request's Host (scheme aside). */
static bool api_origin_is_host(const char *origin, const char *host)
{
	const char *sep = strstr(origin, "://");
	if (sep == NULL || host == NULL || *host == '\0')
		return false;
	const char *scheme_end = sep;
	if (!((scheme_end - origin == 4 && strncasecmp(origin, "http", 4) == 0) ||
	      (scheme_end - origin == 5 && strncasecmp(origin, "https", 5) == 0)))
		return false;
	return strcasecmp(sep + 3, host) == 0;
}

/* True when origin is one of the comma- or space-separated allowed origins. */
static bool api_origin_listed(const char *origin, const char *list)
{
	size_t olen = strlen(origin);
	for (const char *p = list != NULL ? list : ""; *p != '\0';) {
		p += strspn(p, ", \t");
		size_t len = strcspn(p, ", \t");
		/* A configured trailing "/" is the same origin. */
		size_t cmp = len > 0 && p[len - 1] == '/' ? len - 1 : len;
		if (cmp > 0 && cmp == olen && strncasecmp(p, origin, olen) == 0)
			return true;
		p += len;
	}
	return false;
}

/* True when the Content-Type's media type (parameters aside) is type. */
static bool api_media_type_is(const char *content_type, const char *type)
{
	if (content_type == NULL)
		return false;
	size_t tl = strlen(type);
	const char *p = content_type + strspn(content_type, " \t");
	if (strncasecmp(p, type, tl) != 0)
		return false;
	p += tl;
	p += strspn(p, " \t");
	return *p == '\0' || *p == ';';
}

bool api_request_guard(struct api *a, struct http_server_request *req)
{
	if (!api_state_changing(http_server_request_method(req)))
		return true;
	if (http_server_bearer_ok(http_server_request_header(req, "Authorization"), a->token))
		return true;
	const char *site = http_server_request_header(req, "Sec-Fetch-Site");
	const char *origin = http_server_request_header(req, "Origin");
	bool cross = site != NULL && strcasecmp(site, "cross-site") == 0;
	if (!cross && origin != NULL)
		cross = !api_origin_is_host(origin, http_server_request_header(req, "Host")) &&
			!api_origin_listed(origin, a->allowed_origins);
	if (cross) {
		char q[300];
		log_warn("api.cross_site_refused", "method=%s path=%s origin=%s site=%s peer=%s",
			 http_server_request_method(req), http_server_request_path(req),
			 log_quote(q, sizeof(q), origin != NULL ? origin : "-"),
			 site != NULL ? "given" : "-", http_server_request_peer(req));
		http_server_reply_error(req, 403, "cross-site request refused");
		return false;
	}
	const char *data;
	size_t len;
	http_server_request_body(req, &data, &len);
	if (len == 0)
		return true;
	const char *path = http_server_request_path(req);
	size_t plen = strlen(path);
	bool csv = plen >= 4 && strcmp(path + plen - 4, ".csv") == 0;
	const char *type = http_server_request_header(req, "Content-Type");
	if (api_media_type_is(type, "application/json") ||
	    (csv && api_media_type_is(type, "text/csv")))
		return true;
	http_server_reply_error(req, 415, "the request body must be %s",
				csv ? "text/csv" : "application/json");
	return false;
}

/*
 * A request without a valid credential: 401, unless it came with a cookie while
 * the store cannot be reached; its session could not be looked up then, and a 401
 * would send a signed-in user to the login page: 503, try again.
 */
static void api_reply_unauthenticated(struct api *a, struct http_server_request *req)
{
	struct store_status ss;
	store_status(a->st, &ss);
	if (!ss.available && http_server_request_header(req, "Cookie") != NULL) {
		http_server_add_header(req, "Retry-After", API_STORE_UNAVAILABLE_RETRY);
		http_server_reply_error(req, 503, API_STORE_UNAVAILABLE_TEXT);
		return;
	}
	http_server_reply_error(req, 401, "authentication required");
}

/*
 * Guards HTTP_SERVER_ROUTE_AUTH routes: the Bearer token, or a session whose CSRF
 * token comes with every state change; and api_request_guard for every state
 * change. Handlers check roles themselves.
 */
static bool api_authorize(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	if (a->session.actor == NULL) /* no sessions: the Bearer token only */
		return http_server_bearer_ok(http_server_request_header(req, "Authorization"),
					     a->token);
	if (!api_request_guard(a, req))
		return false;
	const struct api_actor *who = api_actor(a, req);
	if (who->role == API_ROLE_NONE) {
		api_reply_unauthenticated(a, req);
		return false;
	}
	if (who->session && api_state_changing(http_server_request_method(req)) &&
	    !a->session.csrf_ok(a->session.arg, req)) {
		log_warn("api.csrf_refused", "user=%s method=%s peer=%s", who->username,
			 http_server_request_method(req), http_server_request_peer(req));
		http_server_reply_error(req, 403, "missing or wrong CSRF token");
		return false;
	}
	return true;
}

void api_set_session_hooks(struct api *a, const struct api_session_hooks *h)
{
	if (a->session.actor != NULL || h->actor == NULL || h->csrf_ok == NULL || h->audit == NULL)
		panic("api: session hooks installed twice or incomplete");
	a->session = *h;
}

const struct api_session_hooks *api_session_hooks(struct api *a)
{
	return a->session.actor != NULL ? &a->session : NULL;
}

void api_audit(struct api *a, struct http_server_request *req, const char *action,
	       const char *target, json_t *detail)
{
	if (a->session.audit == NULL) {
		json_decref(detail);
		return;
	}
	a->session.audit(a->session.arg, req, action, target, detail);
}

static void api_apply(struct api *a, const struct api_config *cfg)
{
	free(a->token);
	free(a->manager_name);
	free(a->web_root);
	free(a->allowed_origins);
	a->allowed_origins = xstrdup_or_null(cfg->allowed_origins);
	a->token = xstrdup(cfg->admin_token != NULL ? cfg->admin_token : "");
	a->manager_name = xstrdup(cfg->manager_name != NULL ? cfg->manager_name : "");
	a->web_root = xstrdup_or_null(cfg->web_root);
	a->max_body = cfg->max_body != 0 ? cfg->max_body : API_DEFAULT_MAX_BODY;
	a->delete_after_ms = cfg->delete_after_ms;
	a->cfg = *cfg;
	a->cfg.listen = NULL; /* not kept: the listener does not move */
	a->cfg.tls_ctx = NULL;
	a->cfg.admin_token = a->token;
	a->cfg.manager_name = a->manager_name;
	a->cfg.max_body = a->max_body;
	a->cfg.web_root = a->web_root;
	a->cfg.allowed_origins = a->allowed_origins;
	if (a->cfg.slbl_max_entries == 0)
		a->cfg.slbl_max_entries = 100;
	if (a->reads != NULL)
		api_read_configure(a->reads, cfg->read_queue_max, cfg->query_timeout_ms);
}

struct http_server *api_http(struct api *a)
{
	return a->http;
}

struct store *api_store(struct api *a)
{
	return a->st;
}

struct release *api_release(struct api *a)
{
	return a->rel;
}

struct api_read *api_reads(struct api *a)
{
	return a->reads;
}

const struct api_config *api_current_config(struct api *a)
{
	return &a->cfg;
}

const struct api_actor *api_actor(struct api *a, struct http_server_request *req)
{
	const char *authz = http_server_request_header(req, "Authorization");
	if (authz != NULL && http_server_bearer_ok(authz, a->token))
		return &api_token_actor;
	if (a->session.actor != NULL) {
		const struct api_actor *who = a->session.actor(a->session.arg, req);
		if (who != NULL)
			return who;
	}
	return &api_nobody;
}

bool api_require_role(struct api *a, struct http_server_request *req, enum api_role min)
{
	const struct api_actor *who = api_actor(a, req);
	/* Routes registered public reach here without api_authorize: check these too. */
	if (!api_request_guard(a, req))
		return false;
	if (who->role >= min && who->session &&
	    api_state_changing(http_server_request_method(req)) &&
	    !a->session.csrf_ok(a->session.arg, req)) {
		http_server_reply_error(req, 403, "missing or wrong CSRF token");
		return false;
	}
	if (who->role >= min)
		return true;
	if (who->role == API_ROLE_NONE)
		api_reply_unauthenticated(a, req);
	else
		http_server_reply_error(req, 403, "not allowed for role of %s", who->username);
	return false;
}

int api_start(struct event_base *base, const struct api_config *cfg, struct store *st,
	      struct release *rel, struct api **out)
{
	static const struct http_server_route_row routes[] = {
	    {"GET", "/healthz", HTTP_SERVER_ROUTE_PUBLIC, api_healthz},
	    {"GET", "/metrics", HTTP_SERVER_ROUTE_PUBLIC, api_metrics},
	    {"GET", "/api/v1/quarantines", HTTP_SERVER_ROUTE_AUTH, api_quarantines},
	    {"GET", "/api/v1/messages", HTTP_SERVER_ROUTE_AUTH, api_list_messages},
	    /* Literal paths before "{id}" so that "release" is never read as an id. */
	    {"POST", "/api/v1/messages/release", HTTP_SERVER_ROUTE_AUTH, api_bulk_release},
	    {"POST", "/api/v1/messages/delete", HTTP_SERVER_ROUTE_AUTH, api_bulk_delete},
	    {"POST", "/api/v1/messages/delay", HTTP_SERVER_ROUTE_AUTH, api_bulk_delay},
	    {"POST", "/api/v1/messages/move", HTTP_SERVER_ROUTE_AUTH, api_bulk_move},
	    {"GET", "/api/v1/messages/{id}", HTTP_SERVER_ROUTE_AUTH, api_get_message},
	    {"GET", "/api/v1/messages/{id}/raw", HTTP_SERVER_ROUTE_AUTH, api_get_raw},
	    {"GET", "/api/v1/messages/{id}/attachments/{index}", HTTP_SERVER_ROUTE_AUTH,
	     api_get_attachment},
	    {"POST", "/api/v1/messages/{id}/release", HTTP_SERVER_ROUTE_AUTH, api_release_message},
	    {"POST", "/api/v1/messages/{id}/delete", HTTP_SERVER_ROUTE_AUTH, api_delete_message},
	};
	struct api *a = xcalloc(1, sizeof(*a));
	*out = NULL;
	a->st = st;
	a->rel = rel;
	a->reads = api_read_new(base, cfg->read_threads);
	api_apply(a, cfg);
	msgmeta_init();
	struct http_server_limits lim = {.max_body_size = a->max_body};
	int rc = http_server_new(base, cfg->listen, &lim, &a->http);
	if (rc < 0)
		goto fail;
	if (cfg->tls_ctx != NULL)
		http_server_use_tls(a->http, cfg->tls_ctx, cfg->hsts_max_age_s);
	http_server_set_auth(a->http, api_authorize, a);
	http_server_route_table(a->http, routes, sizeof(routes) / sizeof(routes[0]), a);
	/* Extensions (sessions, safelists, the web application ...) are the daemon's to add. */
	*out = a;
	return 0;

fail:
	api_stop(a);
	return rc;
}

void api_reconfigure(struct api *a, const struct api_config *cfg)
{
	api_apply(a, cfg);
	struct http_server_limits lim = {.max_body_size = a->max_body};
	http_server_set_limits(a->http, &lim);
}

void api_stop(struct api *a)
{
	if (a == NULL)
		return;
	/* Before the server: reads still waiting get their 503 while it can send it. */
	api_read_free(a->reads);
	if (a->session.stop != NULL)
		a->session.stop(a->session.arg);
	http_server_free(a->http);
	free(a->token);
	free(a->manager_name);
	free(a->web_root);
	free(a->allowed_origins);
	free(a);
}

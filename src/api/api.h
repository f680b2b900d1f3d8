/*
 * api — the core of the HTTP interface: /healthz, /metrics and the message
 * endpoints of the REST API under /api/v1 (docs/openapi.yaml), the actor model
 * and the guards every route passes. Handlers run on the event loop thread; slow
 * reads are handed to reader threads (api_read.h), changes go through the
 * store's synchronous calls.
 *
 * Extensions (api_users, api_slbl, digest_pages, api_static) add their routes to
 * a started api, and sessions plug into the core through api_session_hooks: they
 * depend on this header, never the reverse. Each daemon registers the extensions
 * it serves after api_start, before its event loop runs.
 */
#ifndef LAZARET_API_H
#define LAZARET_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct event_base;
struct store;
struct release;
struct http_server;
struct http_server_request;
struct api_read;
struct ssl_ctx_st; /* OpenSSL's SSL_CTX */

struct api_config {
	const char *listen;	 /* "host:port" */
	const char *admin_token; /* Bearer token with admin rights */
	const char *manager_name;
	uint64_t max_body;	   /* request body limit in bytes */
	int64_t delete_after_ms;   /* for expires_at: received_at + this; 0 = never */
	unsigned slbl_max_entries; /* per recipient and list; 0 = 100 */
	const char *web_root;	   /* folder of the web application (api_static) */
	/* End users see a message's body (text, all headers, raw) only once released. */
	bool hide_bodies_until_released;
	/*
	 * HTTPS: a server context (borrowed; the listener takes its own reference), or
	 * NULL for plain HTTP. Read by api_start only: the listener does not change.
	 */
	struct ssl_ctx_st *tls_ctx;
	unsigned hsts_max_age_s; /* with tls_ctx: Strict-Transport-Security; 0: none */
	/*
	 * The lowest role that may download a message's bytes (raw or an attachment);
	 * API_ROLE_NONE means API_ROLE_ADMIN. End users only ever their own messages.
	 */
	int download_min_role;
	/*
	 * Origins ("https://quarantine.example.jp", comma- or space-separated) a
	 * browser's state change may come from besides the request's own Host: the
	 * console's public address behind a proxy. NULL: the Host only.
	 */
	const char *allowed_origins;
	/*
	 * Reads off the loop (api_read.h): reader threads (read by api_start only),
	 * reads waiting beyond them before 503, and the store budget of one read in ms
	 * (< 0: none). 0: the API_READ_DEFAULT_* values.
	 */
	unsigned read_threads;
	unsigned read_queue_max;
	int64_t query_timeout_ms;
};

/* Who is asking. Roles are ordered: a higher role may do what a lower one may. */
enum api_role {
	API_ROLE_NONE = 0,
	API_ROLE_ENDUSER,  /* only the spam quarantine, only mail to its own addresses */
	API_ROLE_OPERATOR, /* acts on messages; no settings */
	API_ROLE_ADMIN,	   /* everything; the Bearer admin token is an admin */
};

struct api_actor {
	enum api_role role;
	const char *username;	      /* "token" for the Bearer admin token */
	const char *const *addresses; /* end users: every address they own; else NULL */
	size_t naddresses;
	bool session; /* authenticated by a session cookie */
};

struct api;

/*
 * Binds cfg->listen and serves on base. st and rel (may be NULL) are borrowed and
 * must outlive the api. Strings in cfg are copied. 0 or a negative errno.
 */
int api_start(struct event_base *base, const struct api_config *cfg, struct store *st,
	      struct release *rel, struct api **out);
/* New token, name, body limit, expiry (SIGHUP). The listener stays. */
void api_reconfigure(struct api *a, const struct api_config *cfg);
/* Closes the listener and frees. NULL is a no-op. */
void api_stop(struct api *a);

/* For modules that add endpoints: the server, the store, the release engine. */
struct http_server *api_http(struct api *a);
struct store *api_store(struct api *a);
struct release *api_release(struct api *a);
/* The reader-thread pool, for modules whose reads may be slow (api_read.h). */
struct api_read *api_reads(struct api *a);
/* The current configuration (valid until the next api_reconfigure). */
const struct api_config *api_current_config(struct api *a);

/*
 * req's body as a JSON object into *out (new), or *out NULL when the body is
 * empty or white space. -1 when it answered (malformed, not an object, too
 * large): the handler returns. Else 0.
 */
int api_body_object(struct api *a, struct http_server_request *req, json_t **out);
/*
 * Answers a store failure of call what (rc: its -errno): 503 with Retry-After
 * when the store is unreachable, else 500 (logged).
 */
void api_reply_store_error(struct http_server_request *req, const char *what, int rc);

/*
 * The actor of req: the Bearer admin token, else a valid session (when session
 * hooks are installed), else role NONE. Valid until the handler returns.
 */
const struct api_actor *api_actor(struct api *a, struct http_server_request *req);
/*
 * The checks a state change (POST, PUT, PATCH, DELETE) from a browser must pass,
 * whatever its route: not cross-site (Sec-Fetch-Site: cross-site, or an Origin
 * other than the Host's or an allowed one: 403), and a body, if any, of type
 * application/json (text/csv for a path ending in ".csv"; else 415). A request
 * with the Bearer admin token passes: no browser sends it on its own. Other
 * methods pass. False when it answered: the handler returns.
 */
bool api_request_guard(struct api *a, struct http_server_request *req);
/*
 * True when req's actor has at least role min. Otherwise answers (401 without
 * credentials, 403 for a too low role) and returns false: the handler returns.
 */
bool api_require_role(struct api *a, struct http_server_request *req, enum api_role min);

/*
 * What the core asks of a sessions extension (api_users). Without hooks the Bearer
 * admin token is the only credential and nothing is audited.
 */
struct api_session_hooks {
	/* The actor of req's session cookie, or NULL when it has none that is valid. */
	const struct api_actor *(*actor)(void *arg, struct http_server_request *req);
	/* True when req carries the CSRF token of its (valid) session. */
	bool (*csrf_ok)(void *arg, struct http_server_request *req);
	/* Appends an audit row for req's actor; detail may be NULL (reference taken). */
	void (*audit)(void *arg, struct http_server_request *req, const char *action,
		      const char *target, json_t *detail);
	/* Called first by api_stop, before the server goes: finish and free. */
	void (*stop)(void *arg);
	void *arg;
};

/*
 * Installs the session hooks (copied; all but stop required). Once, after
 * api_start and before the loop runs; installing twice is a broken invariant.
 */
void api_set_session_hooks(struct api *a, const struct api_session_hooks *h);
/* The installed hooks, or NULL. */
const struct api_session_hooks *api_session_hooks(struct api *a);
/*
 * An audit row for req's actor: action, target (may be NULL), detail (may be
 * NULL; the reference is taken). Without session hooks only the detail is released.
 */
void api_audit(struct api *a, struct http_server_request *req, const char *action,
	       const char *target, json_t *detail);

/*
 * Answers req with status and message id as req's actor may see it (a Message of
 * docs/openapi.yaml; 404 when it is gone or not theirs; 503/500 on a store error).
 */
void api_reply_message(struct api *a, struct http_server_request *req, const char *id, int status);
/*
 * The PVO quarantines who may act in: *scoped false for admins (all of them);
 * for operators *names gets the assigned ones (free with store_string_array_free).
 * End users have none (scoped, empty). 0 or the store's error.
 */
int api_pvo_scope_of(struct api *a, const struct api_actor *who, bool *scoped, char ***names,
		     size_t *n);

#endif

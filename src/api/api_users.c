/*
 * api_users — the REST endpoints for logging in and out, accounts, the caller's
 * own settings and safelist, and the audit log; and the session side of the
 * actor model (which session a cookie names, whether its CSRF token came along).
 * Not for: hashing and token primitives (auth.c), storage (store_users.c),
 * directories (the daemon hands in an api_users_directory_fn).
 *
 * A login is checked off the loop thread (argon2id takes tens of milliseconds and
 * a directory may take seconds), so POST /api/v1/session defers its reply:
 *
 *   handler (loop)        browser checks (api_request_guard); limiter says no ->
 *                         429; the queue holds login_queue_max jobs -> 503;
 *                         else the attempt is counted for the account and the
 *                         client address (auth_ratelimit_begin), defer, queue
 *   api_users_login_work  (worker) local account, else the directory; on success
 *                         the session row is written; posts api_users_login_done
 *   api_users_login_done  (loop) settles the counts, audit row, cookie, reply
 *   api_users_free        pending jobs get 503 (the daemon is stopping)
 *
 * Counting at admission, on the loop thread, is what bounds the password checks a
 * parallel burst can get: the checks themselves end later, on the workers. The
 * account table backs off (login_failure_window doubling up to login_backoff_max)
 * and is cleared by a success; an address that logged in to an account is let
 * through its block, so guessing one account cannot keep its owner out for long.
 * The address table has its own, higher ceiling so that one account being guessed
 * does not lock out the other users behind the same proxy. The client address is
 * the TCP peer, or the X-Forwarded-For entry written by a [http] trusted_proxies
 * proxy (auth_client_address).
 *
 * Sessions: the cookie holds a random token; the store holds its hash. A session
 * is valid while now < expires_at (the idle deadline, moved forward on use at most
 * once per API_USERS_TOUCH_INTERVAL_MS) and now < created_at + session_max.
 */
#include "api/api_users.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/acl.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/loopq.h"
#include "common/workpool.h"
#include "common/xalloc.h"
#include "http/http_json.h"
#include "http/http_server.h"
#include "api/api.h"
#include "api/api_read.h"
#include "api/api_slbl.h"
#include "api/auth.h"
#include "quarantine/metrics.h"
#include "store/store.h"

/* Audit rows in one page of GET /api/v1/audit when the client gives no limit, and the cap. */
#define API_USERS_AUDIT_DEFAULT_LIMIT 100
#define API_USERS_AUDIT_MAX_LIMIT     1000
/* Longest IANA time zone name we accept ("America/Argentina/ComodRivadavia" is 32). */
#define API_USERS_TIME_ZONE_MAX 64
/* Longest address we accept for an account. */
#define API_USERS_ADDRESS_MAX 320

struct api_users_login;

struct api_users {
	struct api *api;
	struct workpool *pool;
	struct loopq *loopq;
	struct auth_ratelimit *limiter;	     /* per account, with backoff */
	struct auth_ratelimit *addr_limiter; /* per client address */
	struct acl *trusted_proxies;	     /* NULL: X-Forwarded-For is never read */
	struct api_users_config cfg;
	bool have_directory;
	struct api_users_login *pending; /* logins between defer and reply */
	size_t npending;
	/* The session actor of the request being handled (see api_users_session_actor). */
	uint64_t cached_serial;
	bool cached_valid;
	struct store_session *cached;
	char *cached_hash;
	struct api_actor actor;
};

struct api_users_login {
	struct api_users *u;
	struct http_server_request *req; /* deferred */
	char *username;
	char *password;
	char *peer;
	/* results, filled by the worker */
	int rc; /* 0 ok, -EACCES refused, other: could not check */
	const char *method;
	char token[AUTH_TOKEN_TEXT_LEN + 1];
	struct store_session session;
	struct api_users_login *prev, *next;
};

static struct api_users *api_users_of(struct api *a);

static void api_users_set(json_t *obj, const char *key, json_t *v)
{
	if (v == NULL || json_object_set_new(obj, key, v) != 0)
		panic("api_users: cannot build JSON for \"%s\"", key);
}

static enum api_role api_users_role_parse(const char *s)
{
	if (s == NULL)
		return API_ROLE_NONE;
	if (strcmp(s, "admin") == 0)
		return API_ROLE_ADMIN;
	if (strcmp(s, "operator") == 0)
		return API_ROLE_OPERATOR;
	if (strcmp(s, "enduser") == 0)
		return API_ROLE_ENDUSER;
	return API_ROLE_NONE;
}

static const char *api_users_role_name(enum api_role r)
{
	switch (r) {
	case API_ROLE_ADMIN:
		return "admin";
	case API_ROLE_OPERATOR:
		return "operator";
	case API_ROLE_ENDUSER:
		return "enduser";
	case API_ROLE_NONE:
		break;
	}
	return "none";
}

static json_t *api_users_strings(const char *const *v, size_t n)
{
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, http_json_string_or_null(v[i]));
	return arr;
}

/* Parses the JSON object body of req; answers (400/413/422) and returns -1 otherwise. */
static int api_users_body(struct api *a, struct http_server_request *req, json_t **out)
{
	int rc = http_server_request_json_object(req, api_current_config(a)->max_body, out);
	return rc < 0 ? -1 : 0;
}

/* Usernames appear in paths and logs: printable ASCII without '/', spaces or quotes. */
static bool api_users_username_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 64)
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p <= 0x20 || *p >= 0x7f || *p == '/' || *p == '"' || *p == '\\' || *p == '%')
			return false;
	}
	return true;
}

static bool api_users_address_ok(const char *s)
{
	const char *at = strrchr(s, '@');
	size_t n = strlen(s);
	if (n == 0 || n > API_USERS_ADDRESS_MAX || at == NULL || at == s || at[1] == '\0')
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p <= 0x20 || *p == 0x7f || *p == '<' || *p == '>' || *p == ',')
			return false;
	}
	return true;
}

/* ---- sessions and the actor ---- */

static void api_users_cache_clear(struct api_users *u)
{
	store_session_free(u->cached);
	u->cached = NULL;
	free(u->cached_hash);
	u->cached_hash = NULL;
	u->cached_valid = false;
}

/*
 * The actor of req's session cookie, or NULL when it has none that is valid.
 * Valid until the next call for another request.
 */
static const struct api_actor *api_users_session_actor(struct api_users *u,
						       struct http_server_request *req)
{
	uint64_t serial = http_server_request_serial(req);
	if (u->cached_serial == serial && u->cached_hash != NULL)
		return u->cached_valid ? &u->actor : NULL;
	api_users_cache_clear(u);
	u->cached_serial = serial;
	char *token = auth_cookie_get(http_server_request_header(req, "Cookie"), AUTH_COOKIE_NAME);
	if (token == NULL || strlen(token) != AUTH_TOKEN_TEXT_LEN) {
		free(token);
		u->cached_hash = xstrdup("");
		return NULL;
	}
	char hash[AUTH_HASH_TEXT_LEN + 1];
	auth_token_hash(token, hash);
	free(token);
	u->cached_hash = xstrdup(hash);
	struct store *st = api_store(u->api);
	struct store_session *s = NULL;
	int rc = store_session_get(st, hash, &s);
	if (rc < 0) {
		if (rc != -ENOENT)
			log_error("api.session_lookup_failed", "error=%s", strerror(-rc));
		return NULL;
	}
	int64_t now = clock_now_ms();
	enum api_role role = api_users_role_parse(s->role);
	if (now >= s->expires_at || now >= s->created_at + u->cfg.session_max_ms ||
	    role == API_ROLE_NONE) {
		log_info("api.session_expired", "user=%s", s->username);
		store_session_delete(st, hash);
		store_session_free(s);
		return NULL;
	}
	int64_t next = now + u->cfg.session_idle_ms;
	if (next > s->created_at + u->cfg.session_max_ms)
		next = s->created_at + u->cfg.session_max_ms;
	if (next - s->expires_at >= API_USERS_TOUCH_INTERVAL_MS) {
		if (store_session_touch(st, hash, next) == 0)
			s->expires_at = next;
	}
	u->cached = s;
	u->cached_valid = true;
	u->actor.role = role;
	u->actor.username = s->username;
	u->actor.addresses = (const char *const *)s->addresses;
	u->actor.naddresses = s->naddresses;
	u->actor.session = true;
	return &u->actor;
}

/* True when req carries the X-CSRF-Token of its (valid) session. */
static bool api_users_csrf_ok(struct api_users *u, struct http_server_request *req)
{
	if (api_users_session_actor(u, req) == NULL)
		return false;
	return auth_token_equal(u->cached->csrf_token,
				http_server_request_header(req, "X-CSRF-Token"));
}

/* ---- audit ---- */

/*
 * Appends an audit row for req's actor: action, target (may be NULL) and detail
 * (may be NULL; the reference is taken). A failure to write is logged.
 * Without the users part only the detail is released.
 */
static void api_users_audit(struct api *a, struct http_server_request *req, const char *action,
			    const char *target, json_t *detail)
{
	if (api_users_of(a) == NULL) {
		json_decref(detail);
		return;
	}
	const struct api_actor *who = api_actor(a, req);
	char *text = detail != NULL ? json_dumps(detail, JSON_COMPACT) : NULL;
	json_decref(detail);
	struct store_audit row = {
	    .at = clock_now_ms(),
	    .actor = who->username != NULL && *who->username != '\0' ? who->username : "-",
	    .action = action,
	    .target = target,
	    .detail = text,
	    .peer = http_server_request_peer(req),
	};
	int rc = store_audit_add(api_store(a), &row);
	if (rc < 0)
		log_error("api.audit_failed", "action=%s error=%s", action, strerror(-rc));
	free(text);
}

/* An audit row whose actor is given (the login endpoints, before a session exists). */
static void api_users_audit_as(struct api *a, const char *actor, const char *action,
			       const char *peer, json_t *detail)
{
	char *text = detail != NULL ? json_dumps(detail, JSON_COMPACT) : NULL;
	json_decref(detail);
	struct store_audit row = {
	    .at = clock_now_ms(),
	    .actor = actor,
	    .action = action,
	    .detail = text,
	    .peer = peer,
	};
	int rc = store_audit_add(api_store(a), &row);
	if (rc < 0)
		log_error("api.audit_failed", "action=%s error=%s", action, strerror(-rc));
	free(text);
}

/* ---- login ---- */

static json_t *api_users_user_json(const char *username, const char *role,
				   const char *const *addresses, size_t n)
{
	json_t *o = json_object();
	api_users_set(o, "username", http_json_string_or_null(username));
	api_users_set(o, "role", http_json_string_or_null(role));
	api_users_set(o, "addresses", api_users_strings(addresses, n));
	return o;
}

static void api_users_login_free(struct api_users_login *l)
{
	if (l == NULL)
		return;
	free(l->username);
	if (l->password != NULL) {
		explicit_bzero(l->password, strlen(l->password));
		free(l->password);
	}
	free(l->peer);
	free(l->session.username);
	free(l->session.role);
	for (size_t i = 0; i < l->session.naddresses; i++)
		free(l->session.addresses[i]);
	free(l->session.addresses);
	free(l->session.csrf_token);
	free(l);
}

static void api_users_login_unlink(struct api_users_login *l)
{
	struct api_users *u = l->u;
	if (l->prev != NULL)
		l->prev->next = l->next;
	else
		u->pending = l->next;
	if (l->next != NULL)
		l->next->prev = l->prev;
	l->prev = l->next = NULL;
	u->npending--;
}

/* The client address of req for limits and the audit log (see auth_client_address). */
static void api_users_client_address(struct api_users *u, struct http_server_request *req,
				     char out[AUTH_ADDRESS_MAX + 1])
{
	char *xff = u->trusted_proxies != NULL
			? http_server_request_header_all(req, "X-Forwarded-For")
			: NULL;
	auth_client_address(http_server_request_peer(req), xff, u->trusted_proxies, out);
	free(xff);
}

/* Worker thread: checks the credentials and, when right, writes the session. */
static void api_users_login_check(struct api_users_login *l)
{
	struct api_users *u = l->u;
	struct store *st = api_store(u->api);
	struct store_user *user = NULL;
	int rc = store_user_get(st, l->username, &user);
	if (rc < 0 && rc != -ENOENT) {
		l->rc = rc;
		return;
	}
	metrics_add(METRICS_LOGIN_CHECKS, 1);
	const char *hash = user != NULL ? user->password_hash : NULL;
	bool ok = auth_password_verify(hash, l->password);
	if (ok) {
		l->method = "local";
		l->session.role = xstrdup(user->role);
		l->session.addresses = user->addresses;
		l->session.naddresses = user->naddresses;
		user->addresses = NULL;
		user->naddresses = 0;
	} else if (hash == NULL && u->have_directory) {
		/* Not a local account (or one without a password): ask the directories. */
		char **addrs = NULL;
		size_t n = 0;
		const char *method = NULL;
		rc = u->cfg.directory(u->cfg.directory_arg, l->username, l->password, &addrs, &n,
				      &method);
		l->method = method;
		if (rc < 0) {
			l->rc = rc;
			store_user_free(user);
			return;
		}
		ok = true;
		l->session.role = xstrdup("enduser");
		l->session.addresses = addrs;
		l->session.naddresses = n;
		/* Addresses go to a '\n'-separated column: drop anything odd. */
		size_t kept = 0;
		for (size_t i = 0; i < n; i++) {
			if (api_users_address_ok(addrs[i]))
				addrs[kept++] = addrs[i];
			else
				free(addrs[i]);
		}
		l->session.naddresses = kept;
	}
	store_user_free(user);
	if (!ok) {
		l->rc = -EACCES;
		return;
	}
	char csrf[AUTH_TOKEN_TEXT_LEN + 1], hash_text[AUTH_HASH_TEXT_LEN + 1];
	auth_token_new(l->token);
	auth_token_new(csrf);
	auth_token_hash(l->token, hash_text);
	int64_t now = clock_now_ms();
	l->session.username = xstrdup(l->username);
	l->session.csrf_token = xstrdup(csrf);
	l->session.created_at = now;
	l->session.expires_at = now + u->cfg.session_idle_ms;
	if (l->session.expires_at > now + u->cfg.session_max_ms)
		l->session.expires_at = now + u->cfg.session_max_ms;
	l->rc = store_session_add(st, hash_text, &l->session);
	if (l->rc == 0 && strcmp(l->method, "local") == 0)
		store_user_set_last_login(st, l->username, now);
}

static void api_users_login_done(void *arg);

static void api_users_login_work(void *arg)
{
	struct api_users_login *l = arg;
	api_users_login_check(l);
	loopq_post(l->u->loopq, api_users_login_done, l);
}

static char *api_users_key(const char *kind, const char *value)
{
	char *k = xasprintf("%s:%s", kind, value);
	for (char *p = k; *p != '\0'; p++) {
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	}
	return k;
}

/* Loop thread: answers the deferred login. */
static void api_users_login_done(void *arg)
{
	struct api_users_login *l = arg;
	struct api_users *u = l->u;
	struct api *a = u->api;
	struct http_server_request *req = l->req;
	api_users_login_unlink(l);
	char *ukey = api_users_key("user", l->username);
	char *pkey = api_users_key("peer", l->peer);
	char q[300];
	log_quote(q, sizeof(q), l->username);
	int64_t now = clock_now_ms();
	enum auth_attempt result = l->rc == 0	      ? AUTH_ATTEMPT_OK
				   : l->rc == -EACCES ? AUTH_ATTEMPT_FAILED
						      : AUTH_ATTEMPT_ERROR;
	auth_ratelimit_done(u->limiter, ukey, result, l->peer, now);
	auth_ratelimit_done(u->addr_limiter, pkey, result, l->peer, now);
	if (l->rc == 0) {
		log_info("api.login", "user=%s role=%s method=%s peer=%s", q, l->session.role,
			 l->method, l->peer);
		api_users_audit_as(a, l->username, "login", l->peer,
				   json_pack("{s:s}", "method", l->method));
		char *cookie =
		    auth_cookie_set(l->token, u->cfg.session_max_ms / 1000, u->cfg.secure_cookies);
		http_server_add_header(req, "Set-Cookie", cookie);
		free(cookie);
		json_t *body = json_object();
		api_users_set(body, "user",
			      api_users_user_json(l->username, l->session.role,
						  (const char *const *)l->session.addresses,
						  l->session.naddresses));
		api_users_set(body, "csrf_token", json_string(l->session.csrf_token));
		http_server_reply_json(req, 200, body);
	} else if (l->rc == -EACCES) {
		log_warn("api.login_failed", "user=%s peer=%s", q, l->peer);
		api_users_audit_as(a, l->username, "login_failed", l->peer, NULL);
		http_server_reply_error(req, 401, "wrong username or password");
	} else {
		log_error("api.login_error", "user=%s method=%s error=%s peer=%s", q,
			  l->method != NULL ? l->method : "local", strerror(-l->rc), l->peer);
		http_server_reply_error(req, 503, "login is not possible right now");
	}
	free(ukey);
	free(pkey);
	api_users_login_free(l);
}

/* Answers status with Retry-After: wait_ms rounded up to whole seconds (at least 1). */
static void api_users_reply_retry(struct http_server_request *req, int status, int64_t wait_ms,
				  const char *message)
{
	char retry[32];
	long long s = (long long)(wait_ms + 999) / 1000;
	snprintf(retry, sizeof(retry), "%lld", s > 0 ? s : 1);
	http_server_add_header(req, "Retry-After", retry);
	http_server_reply_error(req, status, "%s", message);
}

static void api_users_login(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	struct api_users *u = api_users_of(a);
	json_t *body = NULL;
	char *err = NULL;
	const char *username = NULL, *password = NULL;
	if (!api_request_guard(a, req))
		return;
	if (api_users_body(a, req, &body) < 0)
		return;
	static const char *const allowed[] = {"username", "password", NULL};
	int rc = http_json_check_keys(body, allowed, &err);
	if (rc == 0)
		rc = http_json_get_string(body, "username", &username, &err);
	if (rc == 0)
		rc = http_json_get_string(body, "password", &password, &err);
	if (rc == -ENOENT)
		err = xstrdup("\"username\" and \"password\" are required");
	if (rc < 0) {
		http_server_reply_error(req, 422, "%s", err);
		goto done;
	}
	if (*username == '\0' || strlen(username) > AUTH_USERNAME_MAX_LEN ||
	    strlen(password) > AUTH_PASSWORD_MAX_LEN || *password == '\0') {
		http_server_reply_error(req, 401, "wrong username or password");
		goto done;
	}
	int64_t now = clock_now_ms();
	char peer[AUTH_ADDRESS_MAX + 1];
	api_users_client_address(u, req, peer);
	char *ukey = api_users_key("user", username);
	char *pkey = api_users_key("peer", peer);
	int64_t wait_u = auth_ratelimit_check(u->limiter, ukey, peer, now);
	int64_t wait_p = auth_ratelimit_check(u->addr_limiter, pkey, NULL, now);
	int64_t wait = wait_u > wait_p ? wait_u : wait_p;
	char q[300];
	log_quote(q, sizeof(q), username);
	if (wait > 0) {
		metrics_add(METRICS_LOGIN_LIMITED, 1);
		log_warn("api.login_limited", "user=%s peer=%s by=%s retry_after_s=%lld", q, peer,
			 wait_u >= wait_p ? "account" : "address", (long long)(wait + 999) / 1000);
		api_users_reply_retry(req, 429, wait, "too many failed logins; try again later");
		goto keys;
	}
	if (u->npending >= u->cfg.login_queue_max) {
		/* Every worker is busy and the queue is full: refuse now rather than pile up. */
		metrics_add(METRICS_LOGIN_BUSY, 1);
		log_warn("api.login_busy", "user=%s peer=%s queued=%zu", q, peer, u->npending);
		api_users_reply_retry(req, 503, AUTH_RATELIMIT_BUSY_WAIT_MS,
				      "too many logins in progress; try again shortly");
		goto keys;
	}
	auth_ratelimit_begin(u->limiter, ukey, now);
	auth_ratelimit_begin(u->addr_limiter, pkey, now);
	struct api_users_login *l = xcalloc(1, sizeof(*l));
	l->u = u;
	l->username = xstrdup(username);
	l->password = xstrdup(password);
	l->peer = xstrdup(peer);
	l->req = http_server_request_defer(req);
	l->next = u->pending;
	if (l->next != NULL)
		l->next->prev = l;
	u->pending = l;
	u->npending++;
	workpool_submit(u->pool, api_users_login_work, l);

keys:
	free(ukey);
	free(pkey);
done:
	free(err);
	json_decref(body);
}

static void api_users_session_get(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	struct api_users *u = api_users_of(a);
	const struct api_actor *who = api_users_session_actor(u, req);
	if (who == NULL) {
		http_server_reply_error(req, 401, "not logged in");
		return;
	}
	json_t *body = json_object();
	api_users_set(body, "user",
		      api_users_user_json(u->cached->username, u->cached->role,
					  (const char *const *)u->cached->addresses,
					  u->cached->naddresses));
	api_users_set(body, "csrf_token", json_string(u->cached->csrf_token));
	http_server_reply_json(req, 200, body);
}

static void api_users_logout(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	struct api_users *u = api_users_of(a);
	if (!api_request_guard(a, req))
		return;
	const struct api_actor *who = api_users_session_actor(u, req);
	if (who != NULL) {
		if (!api_users_csrf_ok(u, req)) {
			http_server_reply_error(req, 403, "missing or wrong CSRF token");
			return;
		}
		store_session_delete(api_store(a), u->cached_hash);
		char q[300];
		log_info("api.logout", "user=%s peer=%s", log_quote(q, sizeof(q), who->username),
			 http_server_request_peer(req));
		api_users_audit(a, req, "logout", NULL, NULL);
		api_users_cache_clear(u);
	}
	char *cookie = auth_cookie_set(NULL, 0, u->cfg.secure_cookies);
	http_server_add_header(req, "Set-Cookie", cookie);
	free(cookie);
	http_server_reply_json(req, 200, json_object());
}

/* ---- accounts ---- */

static json_t *api_users_account_json(const struct store_user *s)
{
	json_t *o = api_users_user_json(s->username, s->role, (const char *const *)s->addresses,
					s->naddresses);
	char t[CLOCK_RFC3339_LEN];
	api_users_set(o, "source", http_json_string_or_null(s->source));
	api_users_set(o, "language", http_json_string_or_null(s->language));
	api_users_set(o, "time_zone", http_json_string_or_null(s->time_zone));
	clock_format_rfc3339(s->created_at, t);
	api_users_set(o, "created_at", json_string(t));
	if (s->last_login_at != 0) {
		clock_format_rfc3339(s->last_login_at, t);
		api_users_set(o, "last_login_at", json_string(t));
	} else {
		api_users_set(o, "last_login_at", json_null());
	}
	return o;
}

/* Creates a local account; 0, or -errno with *msg (new) saying why. */
static int api_users_create(struct api *a, const char *username, const char *password,
			    const char *role, const char *const *addresses, size_t naddresses,
			    char **msg)
{
	*msg = NULL;
	if (!api_users_username_ok(username)) {
		*msg = xstrdup("\"username\" must be 1 to 64 visible ASCII characters without "
			       "'/', '%', '\\\\' or quotes");
		return -EINVAL;
	}
	if (strlen(password) < AUTH_PASSWORD_MIN_LEN) {
		*msg = xasprintf("the password is too weak: use at least %d characters",
				 AUTH_PASSWORD_MIN_LEN);
		return -EINVAL;
	}
	if (strlen(password) > AUTH_PASSWORD_MAX_LEN) {
		*msg = xasprintf("the password is longer than %d bytes", AUTH_PASSWORD_MAX_LEN);
		return -EINVAL;
	}
	if (api_users_role_parse(role) == API_ROLE_NONE) {
		*msg = xstrdup("\"role\" must be admin, operator or enduser");
		return -EINVAL;
	}
	for (size_t i = 0; i < naddresses; i++) {
		if (!api_users_address_ok(addresses[i])) {
			*msg = xasprintf("\"%s\" is not a mail address", addresses[i]);
			return -EINVAL;
		}
	}
	struct store_user user = {
	    .username = username,
	    .role = role,
	    .source = "local",
	    .created_at = clock_now_ms(),
	    .naddresses = naddresses,
	};
	int rc = auth_password_hash(password, &user.password_hash);
	if (rc < 0) {
		*msg = xstrdup("cannot hash the password");
		return rc;
	}
	/* The account's addresses are char *: lend it copies of the request's (const). */
	user.addresses = xcalloc(naddresses + 1, sizeof(*user.addresses));
	for (size_t i = 0; i < naddresses; i++)
		user.addresses[i] = xstrdup(addresses[i]);
	rc = store_user_add(api_store(a), &user);
	free(user.password_hash);
	for (size_t i = 0; i < naddresses; i++)
		free(user.addresses[i]);
	free(user.addresses);
	if (rc == -EEXIST)
		*msg = xasprintf("user %s exists already", username);
	else if (rc < 0)
		*msg = xasprintf("the store failed (%s)", strerror(-rc));
	return rc;
}

static void api_users_add(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	json_t *body = NULL;
	char *err = NULL;
	const char *username = NULL, *password = NULL, *role = NULL;
	const char **addresses = NULL;
	size_t naddresses = 0;
	if (!api_require_role(a, req, API_ROLE_ADMIN))
		return;
	if (api_users_body(a, req, &body) < 0)
		return;
	static const char *const allowed[] = {"username", "password", "role", "addresses", NULL};
	int rc = http_json_check_keys(body, allowed, &err);
	if (rc == 0)
		rc = http_json_get_string(body, "username", &username, &err);
	if (rc == 0)
		rc = http_json_get_string(body, "password", &password, &err);
	if (rc == 0)
		rc = http_json_get_string(body, "role", &role, &err);
	if (rc == -ENOENT)
		err = xstrdup("\"username\", \"password\" and \"role\" are required");
	if (rc == 0) {
		rc = http_json_get_string_array(body, "addresses", STORE_USER_MAX_ADDRESSES,
						&addresses, &naddresses, &err);
		if (rc == -ENOENT)
			rc = 0;
	}
	if (rc < 0) {
		http_server_reply_error(req, 422, "%s", err);
		goto done;
	}
	rc = api_users_create(a, username, password, role, addresses, naddresses, &err);
	if (rc < 0) {
		http_server_reply_error(req,
					rc == -EEXIST	? 409
					: rc == -EINVAL ? 422
							: 500,
					"%s", err);
		goto done;
	}
	char q[300];
	log_info("api.user_created", "user=%s role=%s by=%s", log_quote(q, sizeof(q), username),
		 role, api_actor(a, req)->username);
	api_users_audit(a, req, "user_create", username, json_pack("{s:s}", "role", role));
	struct store_user *created = NULL;
	if (store_user_get(api_store(a), username, &created) == 0) {
		http_server_reply_json(req, 201,
				       json_pack("{s:o}", "user", api_users_account_json(created)));
		store_user_free(created);
	} else {
		http_server_reply_json(req, 201, json_object());
	}

done:
	free(err);
	free(addresses);
	json_decref(body);
}

static void api_users_list(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	if (!api_require_role(a, req, API_ROLE_ADMIN))
		return;
	struct store_user **v = NULL;
	size_t n = 0;
	int rc = store_user_list(api_store(a), &v, &n);
	if (rc < 0) {
		http_server_reply_error(req, 500, "the store failed (%s)", strerror(-rc));
		return;
	}
	json_t *list = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(list, api_users_account_json(v[i]));
	store_user_array_free(v, n);
	http_server_reply_json(req, 200, json_pack("{s:o}", "users", list));
}

static void api_users_delete(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	if (!api_require_role(a, req, API_ROLE_ADMIN))
		return;
	const char *username = http_server_request_param(req, "username");
	int rc = username != NULL ? store_user_delete(api_store(a), username) : -ENOENT;
	if (rc == -ENOENT) {
		http_server_reply_error(req, 404, "no such user");
		return;
	}
	if (rc < 0) {
		http_server_reply_error(req, 500, "the store failed (%s)", strerror(-rc));
		return;
	}
	char q[300];
	log_info("api.user_deleted", "user=%s by=%s", log_quote(q, sizeof(q), username),
		 api_actor(a, req)->username);
	api_users_audit(a, req, "user_delete", username, NULL);
	http_server_reply_json(req, 200, json_object());
}

/* ---- the caller's own account ---- */

static void api_users_me(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	if (!api_require_role(a, req, API_ROLE_ENDUSER))
		return;
	const struct api_actor *who = api_actor(a, req);
	json_t *user = api_users_user_json(who->username, api_users_role_name(who->role),
					   who->addresses, who->naddresses);
	struct store_user *stored = NULL;
	if (who->session && store_user_get(api_store(a), who->username, &stored) == 0) {
		api_users_set(user, "language", http_json_string_or_null(stored->language));
		api_users_set(user, "time_zone", http_json_string_or_null(stored->time_zone));
		api_users_set(user, "source", http_json_string_or_null(stored->source));
		store_user_free(stored);
	} else {
		api_users_set(user, "language", json_null());
		api_users_set(user, "time_zone", json_null());
		api_users_set(user, "source", json_string(who->session ? "directory" : "token"));
	}
	http_server_reply_json(req, 200, json_pack("{s:o}", "user", user));
}

static bool api_users_time_zone_ok(const char *tz)
{
	size_t n = strlen(tz);
	if (n == 0 || n > API_USERS_TIME_ZONE_MAX || tz[0] == '/' || strstr(tz, "..") != NULL)
		return false;
	for (const char *p = tz; *p != '\0'; p++) {
		char c = *p;
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '/' || c == '_' || c == '-' || c == '+'))
			return false;
	}
	return true;
}

static void api_users_me_put(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	json_t *body = NULL;
	char *err = NULL;
	const char *language = NULL, *time_zone = NULL;
	if (!api_require_role(a, req, API_ROLE_ENDUSER))
		return;
	const struct api_actor *who = api_actor(a, req);
	if (!who->session) {
		http_server_reply_error(req, 422, "only a logged-in user has preferences");
		return;
	}
	if (api_users_body(a, req, &body) < 0)
		return;
	static const char *const allowed[] = {"language", "time_zone", NULL};
	int rc = http_json_check_keys(body, allowed, &err);
	if (rc == 0) {
		rc = http_json_get_string(body, "language", &language, &err);
		if (rc == -ENOENT)
			rc = 0;
	}
	if (rc == 0) {
		rc = http_json_get_string(body, "time_zone", &time_zone, &err);
		if (rc == -ENOENT)
			rc = 0;
	}
	if (rc == 0 && language != NULL && strcmp(language, "ja") != 0 &&
	    strcmp(language, "en") != 0) {
		err = xstrdup("\"language\" must be ja or en");
		rc = -EINVAL;
	}
	if (rc == 0 && time_zone != NULL && !api_users_time_zone_ok(time_zone)) {
		err = xstrdup("\"time_zone\" must be an IANA time zone name such as Asia/Tokyo");
		rc = -EINVAL;
	}
	if (rc < 0) {
		http_server_reply_error(req, 422, "%s", err);
		goto done;
	}
	struct store *st = api_store(a);
	rc = store_user_set_prefs(st, who->username, language, time_zone);
	if (rc == -ENOENT) {
		/* A directory user: keep its preferences in an account without a password. */
		struct store_user user = {
		    .username = who->username,
		    .role = "enduser",
		    .source = "directory",
		    .language = language,
		    .time_zone = time_zone,
		    .created_at = clock_now_ms(),
		};
		rc = store_user_add(st, &user);
	}
	if (rc < 0) {
		http_server_reply_error(req, 500, "the store failed (%s)", strerror(-rc));
		goto done;
	}
	api_users_me(req, arg);

done:
	free(err);
	json_decref(body);
}

/* The caller's primary address (its first); answers 404 and returns NULL without one. */
static const char *api_users_primary(struct api *a, struct http_server_request *req)
{
	if (!api_require_role(a, req, API_ROLE_ENDUSER))
		return NULL;
	const struct api_actor *who = api_actor(a, req);
	if (who->naddresses == 0) {
		http_server_reply_error(req, 404, "%s has no mail address", who->username);
		return NULL;
	}
	return who->addresses[0];
}

static void api_users_me_slbl_get(struct http_server_request *req, void *arg)
{
	const char *rcpt = api_users_primary(arg, req);
	if (rcpt != NULL)
		api_slbl_reply_lists(arg, req, rcpt);
}

static void api_users_me_slbl_put(struct http_server_request *req, void *arg)
{
	const char *rcpt = api_users_primary(arg, req);
	if (rcpt != NULL && api_slbl_put_lists(arg, req, rcpt) == 0)
		api_users_audit(arg, req, "slbl_update", rcpt, NULL);
}

/* ---- audit log ---- */

/* GET /api/v1/audit, for a reader thread (api_read.h). */
struct api_users_audit_read {
	struct store *st;
	size_t limit;
	int64_t before;
};

/* Reader thread: one page of the audit log, newest first. */
static void api_users_audit_work(void *arg, struct api_read_reply *out)
{
	struct api_users_audit_read *r = arg;
	struct store_audit **v = NULL;
	size_t n = 0;
	int rc = store_audit_list(r->st, r->limit, r->before, &v, &n);
	if (rc < 0) {
		api_read_reply_store_error(out, "store_audit_list", rc);
		return;
	}
	json_t *list = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *o = json_object();
		char t[CLOCK_RFC3339_LEN];
		clock_format_rfc3339(v[i]->at, t);
		api_users_set(o, "seq", json_integer(v[i]->seq));
		api_users_set(o, "at", json_string(t));
		api_users_set(o, "actor", http_json_string_or_null(v[i]->actor));
		api_users_set(o, "action", http_json_string_or_null(v[i]->action));
		api_users_set(o, "target", http_json_string_or_null(v[i]->target));
		json_t *detail = v[i]->detail != NULL ? json_loads(v[i]->detail, 0, NULL) : NULL;
		api_users_set(o, "detail", detail != NULL ? detail : json_null());
		api_users_set(o, "peer", http_json_string_or_null(v[i]->peer));
		json_array_append_new(list, o);
	}
	json_t *next = json_null();
	if (n == r->limit && n > 0) {
		char c[32];
		snprintf(c, sizeof(c), "%lld", (long long)v[n - 1]->seq);
		json_decref(next);
		next = json_string(c);
	}
	store_audit_array_free(v, n);
	api_read_reply_json(out, 200, json_pack("{s:o,s:o}", "entries", list, "next_cursor", next));
}

static void api_users_audit_list(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	if (!api_require_role(a, req, API_ROLE_ADMIN))
		return;
	long limit = API_USERS_AUDIT_DEFAULT_LIMIT;
	long long before = 0;
	const char *lt = http_server_request_query(req, "limit");
	const char *ct = http_server_request_query(req, "cursor");
	char *end = NULL;
	if (lt != NULL) {
		limit = strtol(lt, &end, 10);
		if (*lt == '\0' || *end != '\0' || limit < 1 || limit > API_USERS_AUDIT_MAX_LIMIT) {
			http_server_reply_error(req, 400, "\"limit\" must be a number from 1 to %d",
						API_USERS_AUDIT_MAX_LIMIT);
			return;
		}
	}
	if (ct != NULL && *ct != '\0') {
		before = strtoll(ct, &end, 10);
		if (*end != '\0' || before < 1 || ct[0] == '+' || ct[0] == ' ') {
			http_server_reply_error(req, 400, "bad cursor");
			return;
		}
	}
	struct api_users_audit_read *r = xcalloc(1, sizeof(*r));
	r->st = api_store(a);
	r->limit = (size_t)limit;
	r->before = before;
	api_read_submit(api_reads(a), req, "audit", api_users_audit_work, NULL, r, free);
}

/* ---- lifecycle ---- */

/* Creates the users part (threads, limiter) for a served on base. Never NULL. */
static struct api_users *api_users_new(struct api *a, struct event_base *base)
{
	auth_init();
	struct api_users *u = xcalloc(1, sizeof(*u));
	u->api = a;
	u->pool = workpool_new(API_USERS_LOGIN_THREADS);
	u->loopq = loopq_new(base);
	u->cfg.session_idle_ms = API_USERS_SESSION_IDLE_MS;
	u->cfg.session_max_ms = API_USERS_SESSION_MAX_MS;
	u->cfg.login_max_failures = API_USERS_LOGIN_MAX_FAILS;
	u->cfg.login_window_ms = API_USERS_LOGIN_WINDOW_MS;
	u->cfg.login_max_failures_per_address = API_USERS_LOGIN_ADDR_FAILS;
	u->cfg.login_backoff_max_ms = API_USERS_LOGIN_BACKOFF_MS;
	u->cfg.login_queue_max = API_USERS_LOGIN_QUEUE_MAX;
	u->limiter = auth_ratelimit_new(u->cfg.login_max_failures, u->cfg.login_window_ms,
					API_USERS_RATELIMIT_KEYS);
	auth_ratelimit_configure(u->limiter, u->cfg.login_max_failures, u->cfg.login_window_ms,
				 u->cfg.login_backoff_max_ms);
	u->addr_limiter = auth_ratelimit_new(u->cfg.login_max_failures_per_address,
					     u->cfg.login_window_ms, API_USERS_RATELIMIT_KEYS);
	return u;
}

/*
 * Waits for the logins in flight, answers them 503 (the client sees it only if its
 * connection outlives the server, which api_stop frees next), stops the threads
 * and frees. NULL is a no-op.
 */
static void api_users_free(struct api_users *u)
{
	if (u == NULL)
		return;
	/* Every accepted job finishes; their continuations are dropped with the queue. */
	workpool_free(u->pool);
	loopq_free(u->loopq);
	while (u->pending != NULL) {
		struct api_users_login *l = u->pending;
		api_users_login_unlink(l);
		http_server_reply_error(l->req, 503, "the server is stopping");
		api_users_login_free(l);
	}
	auth_ratelimit_free(u->limiter);
	auth_ratelimit_free(u->addr_limiter);
	acl_free(u->trusted_proxies);
	api_users_cache_clear(u);
	free(u);
}

void api_users_configure(struct api *a, const struct api_users_config *cfg)
{
	struct api_users *u = api_users_of(a);
	if (u == NULL)
		return;
	api_users_directory_fn dir = u->cfg.directory;
	void *dir_arg = u->cfg.directory_arg;
	u->cfg = *cfg;
	if (u->cfg.session_idle_ms <= 0)
		u->cfg.session_idle_ms = API_USERS_SESSION_IDLE_MS;
	if (u->cfg.session_max_ms <= 0)
		u->cfg.session_max_ms = API_USERS_SESSION_MAX_MS;
	if (u->cfg.login_max_failures == 0)
		u->cfg.login_max_failures = API_USERS_LOGIN_MAX_FAILS;
	if (u->cfg.login_window_ms <= 0)
		u->cfg.login_window_ms = API_USERS_LOGIN_WINDOW_MS;
	if (u->cfg.login_max_failures_per_address == 0)
		u->cfg.login_max_failures_per_address = API_USERS_LOGIN_ADDR_FAILS;
	if (u->cfg.login_backoff_max_ms <= 0)
		u->cfg.login_backoff_max_ms = API_USERS_LOGIN_BACKOFF_MS;
	if (u->cfg.login_queue_max == 0)
		u->cfg.login_queue_max = API_USERS_LOGIN_QUEUE_MAX;
	/* Parsed here, into our own copy: the config's text goes with the next reload. */
	acl_free(u->trusted_proxies);
	u->trusted_proxies = NULL;
	if (cfg->trusted_proxies != NULL && *cfg->trusted_proxies != '\0') {
		char *why = NULL;
		if (acl_parse(cfg->trusted_proxies, &u->trusted_proxies, &why) < 0) {
			/* The config loader checked it; a bad list trusts nobody. */
			log_error("api.trusted_proxies_invalid", "error=%s",
				  why != NULL ? why : "?");
			free(why);
			u->trusted_proxies = NULL;
		} else if (acl_count(u->trusted_proxies) == 0) {
			acl_free(u->trusted_proxies);
			u->trusted_proxies = NULL;
		}
	}
	u->cfg.trusted_proxies = NULL; /* not kept: the acl above is */
	/* Workers may be calling the directory: it is fixed once set. */
	if (u->have_directory) {
		u->cfg.directory = dir;
		u->cfg.directory_arg = dir_arg;
	} else {
		u->have_directory = cfg->directory != NULL;
	}
	auth_ratelimit_configure(u->limiter, u->cfg.login_max_failures, u->cfg.login_window_ms,
				 u->cfg.login_backoff_max_ms);
	auth_ratelimit_configure(u->addr_limiter, u->cfg.login_max_failures_per_address,
				 u->cfg.login_window_ms, 0);
	int64_t now = clock_now_ms();
	uint64_t purged = 0;
	/* once for every lazaretd sharing the store: a node that finds another one at it
	 * leaves it to that one */
	bool held = false;
	if (store_job_try(api_store(a), "session_purge", &held) < 0 || !held)
		return;
	if (store_session_purge(api_store(a), now, now - u->cfg.session_max_ms, &purged) == 0 &&
	    purged > 0)
		log_info("api.sessions_purged", "count=%llu", (unsigned long long)purged);
	store_job_done(api_store(a), "session_purge");
}

int api_users_initial_admin(struct api *a, const char *username, const char *password_file)
{
	struct store *st = api_store(a);
	uint64_t count = 0;
	char *msg = NULL;
	int rc = store_user_count(st, &count);
	if (rc < 0 || count > 0)
		return rc;
	FILE *f = fopen(password_file, "r");
	if (f == NULL) {
		rc = -errno;
		log_error("manager.initial_admin_failed", "file=%s error=%s", password_file,
			  strerror(-rc));
		return rc;
	}
	char line[AUTH_PASSWORD_MAX_LEN + 2];
	if (fgets(line, sizeof(line), f) == NULL)
		line[0] = '\0';
	fclose(f);
	line[strcspn(line, "\r\n")] = '\0';
	rc = api_users_create(a, username, line, "admin", NULL, 0, &msg);
	explicit_bzero(line, sizeof(line));
	if (rc < 0) {
		log_error("manager.initial_admin_failed", "user=%s error=%s", username,
			  msg != NULL ? msg : strerror(-rc));
		free(msg);
		return rc;
	}
	log_info("manager.initial_admin", "user=%s", username);
	struct store_audit row = {.at = clock_now_ms(),
				  .actor = "lazaretd",
				  .action = "user_create",
				  .target = username,
				  .detail = "{\"role\":\"admin\",\"initial\":true}"};
	store_audit_add(st, &row);
	return 0;
}

/* Adds the endpoints of this module to a's server. */
static void api_users_register(struct api *a)
{
	static const struct http_server_route_row routes[] = {
	    /* Public: each answers by the session cookie itself. */
	    {"POST", "/api/v1/session", HTTP_SERVER_ROUTE_PUBLIC, api_users_login},
	    {"GET", "/api/v1/session", HTTP_SERVER_ROUTE_PUBLIC, api_users_session_get},
	    {"DELETE", "/api/v1/session", HTTP_SERVER_ROUTE_PUBLIC, api_users_logout},
	    {"POST", "/api/v1/users", HTTP_SERVER_ROUTE_AUTH, api_users_add},
	    {"GET", "/api/v1/users", HTTP_SERVER_ROUTE_AUTH, api_users_list},
	    {"DELETE", "/api/v1/users/{username}", HTTP_SERVER_ROUTE_AUTH, api_users_delete},
	    {"GET", "/api/v1/me", HTTP_SERVER_ROUTE_AUTH, api_users_me},
	    {"PUT", "/api/v1/me", HTTP_SERVER_ROUTE_AUTH, api_users_me_put},
	    {"GET", "/api/v1/me/slbl", HTTP_SERVER_ROUTE_AUTH, api_users_me_slbl_get},
	    {"PUT", "/api/v1/me/slbl", HTTP_SERVER_ROUTE_AUTH, api_users_me_slbl_put},
	    {"GET", "/api/v1/audit", HTTP_SERVER_ROUTE_AUTH, api_users_audit_list},
	};
	http_server_route_table(api_http(a), routes, sizeof(routes) / sizeof(routes[0]), a);
}

/* ---- the core's session hooks ---- */

static const struct api_actor *api_users_hook_actor(void *arg, struct http_server_request *req)
{
	return api_users_session_actor(arg, req);
}

static bool api_users_hook_csrf_ok(void *arg, struct http_server_request *req)
{
	return api_users_csrf_ok(arg, req);
}

static void api_users_hook_audit(void *arg, struct http_server_request *req, const char *action,
				 const char *target, json_t *detail)
{
	struct api_users *u = arg;
	api_users_audit(u->api, req, action, target, detail);
}

static void api_users_hook_stop(void *arg)
{
	api_users_free(arg);
}

/* a's users part, or NULL when sessions are not on (the hooks are someone else's). */
static struct api_users *api_users_of(struct api *a)
{
	const struct api_session_hooks *h = api_session_hooks(a);
	return h != NULL && h->actor == api_users_hook_actor ? h->arg : NULL;
}

void api_users_attach(struct api *a, struct event_base *base)
{
	struct api_users *u = api_users_new(a, base);
	struct api_session_hooks h = {
	    .actor = api_users_hook_actor,
	    .csrf_ok = api_users_hook_csrf_ok,
	    .audit = api_users_hook_audit,
	    .stop = api_users_hook_stop,
	    .arg = u,
	};
	api_set_session_hooks(a, &h);
	api_users_register(a);
}

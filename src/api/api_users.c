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
#include "common/unconst.h"
#include "common/workpool.h"
#include "common/xalloc.h"
#include "http/http_json.h"
#include "http/http_server.h"
#include "api/api.h"
#include "api/api_read.h"
#include "api/api_slbl.h"
#include "api/auth.h"
#include "api/auth_totp.h"
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
	unsigned totp_roles; /* 1 << api_role of the roles that must have a second factor */
	bool totp_key_loaded;
	unsigned char totp_key[AUTH_TOTP_KEY_BYTES]; /* seals secrets (the store's "totp_key") */
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
	unsigned totp_roles; /* u->totp_roles when the login was admitted */
	/* results, filled by the worker */
	const char *second; /* NULL, or the second factor the login waits for (api_users_pending) */
	int rc;		    /* 0 ok, -EACCES refused, other: could not check */
	const char *method;
	char token[AUTH_TOKEN_TEXT_LEN + 1];
	struct store_session session;
	struct api_users_login *prev, *next;
};

static struct api_users *api_users_of(struct api *a);
static void api_users_reply_second(struct http_server_request *req, const char *kind);
static const char *api_users_pending_get(struct api_users *u, struct http_server_request *req,
					 struct store_session **out,
					 char hash[AUTH_HASH_TEXT_LEN + 1]);

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

/* The bit of role (a name) in a mask of roles; 0 for none. */
static unsigned api_users_role_bit(const char *role)
{
	enum api_role r = api_users_role_parse(role);
	return r == API_ROLE_NONE ? 0 : 1u << r;
}

int api_users_roles_parse(const char *text, unsigned *mask)
{
	*mask = 0;
	if (text == NULL)
		return 0;
	const char *p = text;
	while (*p != '\0') {
		p += strspn(p, ", \t");
		size_t n = strcspn(p, ", \t");
		if (n == 0)
			break;
		char word[16];
		if (n >= sizeof(word))
			return -EINVAL;
		memcpy(word, p, n);
		word[n] = '\0';
		unsigned bit = api_users_role_bit(word);
		if (bit == 0)
			return -EINVAL;
		*mask |= bit;
		p += n;
	}
	return 0;
}

/*
 * Half a login (the password was right, the second factor is still to come) is a
 * session whose role is "totp:ROLE" (a code is wanted) or "enrol:ROLE" (the role
 * must enrol one first), with a short deadline: never an actor. These give which
 * (the string that api_users_login.second holds) and the role behind it.
 */
#define API_USERS_PENDING_TOTP	"totp"
#define API_USERS_PENDING_ENROL "enrol"
static const char *api_users_pending_kind(const char *role)
{
	if (role == NULL)
		return NULL;
	if (strncmp(role, API_USERS_PENDING_TOTP ":", 5) == 0)
		return API_USERS_PENDING_TOTP;
	if (strncmp(role, API_USERS_PENDING_ENROL ":", 6) == 0)
		return API_USERS_PENDING_ENROL;
	return NULL;
}

static const char *api_users_pending_role(const char *role)
{
	const char *colon = strchr(role, ':');
	return colon != NULL ? colon + 1 : role;
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
	if (api_users_pending_kind(s->role) != NULL && now < s->expires_at) {
		/* half a login: only the second-factor endpoints read it */
		store_session_free(s);
		return NULL;
	}
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
	if (strcmp(l->method, "local") == 0) {
		/* a local account with a second factor, or in a role that must have one */
		struct store_totp *t = NULL;
		rc = store_totp_get(st, l->username, &t);
		if (rc < 0 && rc != -ENOENT) {
			l->rc = rc;
			return;
		}
		if (rc == 0 && t->enrolled_at != 0)
			l->second = API_USERS_PENDING_TOTP;
		else if ((l->totp_roles & api_users_role_bit(l->session.role)) != 0)
			l->second = API_USERS_PENDING_ENROL;
		store_totp_free(t);
	}
	if (l->second != NULL) {
		char *pending = xasprintf("%s:%s", l->second, l->session.role);
		free(l->session.role);
		l->session.role = pending;
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
	if (l->second != NULL)
		l->session.expires_at = now + API_USERS_TOTP_PENDING_MS;
	l->rc = store_session_add(st, hash_text, &l->session);
	if (l->rc == 0 && strcmp(l->method, "local") == 0 && l->second == NULL)
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
	/* The password alone clears nothing while a code is still owed: the code's
	 * attempts count on from here. */
	if (l->rc == 0 && l->second != NULL)
		result = AUTH_ATTEMPT_ERROR;
	auth_ratelimit_done(u->limiter, ukey, result, l->peer, now);
	auth_ratelimit_done(u->addr_limiter, pkey, result, l->peer, now);
	if (l->rc == 0 && l->second != NULL) {
		log_info("api.login_second_factor", "user=%s role=%s wants=%s peer=%s", q,
			 api_users_pending_role(l->session.role), l->second, l->peer);
		char *cookie = auth_cookie_set(l->token, API_USERS_TOTP_PENDING_MS / 1000,
					       u->cfg.secure_cookies);
		http_server_add_header(req, "Set-Cookie", cookie);
		free(cookie);
		api_users_reply_second(req, l->second);
	} else if (l->rc == 0) {
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

void api_users_client_address_of(struct api *a, struct http_server_request *req,
				 char out[AUTH_ADDRESS_MAX + 1])
{
	struct api_users *u = api_users_of(a);
	if (u == NULL)
		auth_client_address(http_server_request_peer(req), NULL, NULL, out);
	else
		api_users_client_address(u, req, out);
}

int api_users_session_open(struct api *a, struct http_server_request *req, const char *username,
			   const char *role, const char *const *addresses, size_t naddresses,
			   const char *method)
{
	struct api_users *u = api_users_of(a);
	if (u == NULL)
		return -ENOTSUP;
	for (size_t i = 0; i < naddresses; i++) {
		if (!api_users_address_ok(addresses[i]))
			return -EINVAL;
	}
	char token[AUTH_TOKEN_TEXT_LEN + 1], csrf[AUTH_TOKEN_TEXT_LEN + 1];
	char hash_text[AUTH_HASH_TEXT_LEN + 1], peer[AUTH_ADDRESS_MAX + 1];
	auth_token_new(token);
	auth_token_new(csrf);
	auth_token_hash(token, hash_text);
	api_users_client_address(u, req, peer);
	int64_t now = clock_now_ms();
	struct store_session s = {
	    .username = unconst(username),
	    .role = unconst(role),
	    .addresses = unconst(addresses),
	    .naddresses = naddresses,
	    .csrf_token = csrf,
	    .created_at = now,
	    .expires_at = now + u->cfg.session_idle_ms,
	};
	if (s.expires_at > now + u->cfg.session_max_ms)
		s.expires_at = now + u->cfg.session_max_ms;
	int rc = store_session_add(api_store(a), hash_text, &s);
	explicit_bzero(csrf, sizeof(csrf));
	if (rc < 0) {
		explicit_bzero(token, sizeof(token));
		return rc;
	}
	char q[300];
	log_info("api.login", "user=%s role=%s method=%s peer=%s",
		 log_quote(q, sizeof(q), username), role, method, peer);
	api_users_audit_as(a, username, "login", peer, json_pack("{s:s}", "method", method));
	char *cookie = auth_cookie_set(token, u->cfg.session_max_ms / 1000, u->cfg.secure_cookies);
	explicit_bzero(token, sizeof(token));
	http_server_add_header(req, "Set-Cookie", cookie);
	free(cookie);
	return 0;
}

/* Answers 401: the login waits for a second factor of this kind (api_users_pending_kind). */
static void api_users_reply_second(struct http_server_request *req, const char *kind)
{
	bool enrol = strcmp(kind, API_USERS_PENDING_ENROL) == 0;
	json_t *err = json_pack(
	    "{s:s,s:s}", "code",
	    enrol ? "second_factor_enrolment_required" : "second_factor_required", "message",
	    enrol ? "your role requires a second factor: enrol one to log in"
		  : "a second factor is required: send the code of your authenticator app");
	http_server_reply_json(req, 401,
			       json_pack("{s:o,s:s}", "error", err, "second_factor", kind));
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
	l->totp_roles = u->totp_roles;
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
		/* half a login: say what it waits for, so that a reloaded page can go on */
		struct store_session *pending = NULL;
		char hash[AUTH_HASH_TEXT_LEN + 1];
		const char *kind = api_users_pending_get(u, req, &pending, hash);
		if (kind != NULL)
			api_users_reply_second(req, kind);
		else
			http_server_reply_error(req, 401, "not logged in");
		store_session_free(pending);
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

/* ---- the second factor (TOTP) ---- */

/*
 * The half login of req's session cookie (api_users_pending_kind): its kind, with
 * *out (caller frees with store_session_free) and its token hash into hash; NULL
 * (and *out NULL) when there is none, or it expired (then it is removed).
 */
static const char *api_users_pending_get(struct api_users *u, struct http_server_request *req,
					 struct store_session **out,
					 char hash[AUTH_HASH_TEXT_LEN + 1])
{
	*out = NULL;
	char *token = auth_cookie_get(http_server_request_header(req, "Cookie"), AUTH_COOKIE_NAME);
	if (token == NULL || strlen(token) != AUTH_TOKEN_TEXT_LEN) {
		free(token);
		return NULL;
	}
	auth_token_hash(token, hash);
	free(token);
	struct store_session *s = NULL;
	struct store *st = api_store(u->api);
	if (store_session_get(st, hash, &s) < 0)
		return NULL;
	const char *kind = api_users_pending_kind(s->role);
	if (kind == NULL) {
		store_session_free(s);
		return NULL;
	}
	if (clock_now_ms() >= s->expires_at) {
		store_session_delete(st, hash);
		store_session_free(s);
		return NULL;
	}
	*out = s;
	return kind;
}

/* The key that seals secrets: the store's, made by the first manager that needs one. */
static int api_users_totp_key(struct api_users *u)
{
	if (u->totp_key_loaded)
		return 0;
	struct store *st = api_store(u->api);
	int rc = store_secret_get(st, "totp_key", u->totp_key, AUTH_TOTP_KEY_BYTES);
	if (rc == -ENOENT) {
		unsigned char fresh[AUTH_TOTP_KEY_BYTES];
		auth_totp_key_new(fresh);
		rc = store_secret_add(st, "totp_key", fresh, AUTH_TOTP_KEY_BYTES, u->totp_key);
		explicit_bzero(fresh, sizeof(fresh));
	}
	if (rc < 0) {
		log_error("api.totp_key_failed", "error=%s", strerror(-rc));
		return rc;
	}
	u->totp_key_loaded = true;
	return 0;
}

/* Reads the one string key of req's JSON body (*body, the caller's to free); answers
 * 422 (or 400/413) and returns -1 otherwise, with *body NULL. */
static int api_users_body_string(struct api *a, struct http_server_request *req,
				 const char *const *allowed, const char **value, const char **key,
				 json_t **body)
{
	char *err = NULL;
	*value = NULL;
	if (api_users_body(a, req, body) < 0)
		return -1;
	int rc = http_json_check_keys(*body, allowed, &err);
	for (size_t i = 0; rc == 0 && allowed[i] != NULL && *value == NULL; i++) {
		rc = http_json_get_string(*body, allowed[i], value, &err);
		if (rc == 0)
			*key = allowed[i];
		else if (rc == -ENOENT)
			rc = 0;
	}
	if (rc == 0 && *value == NULL) {
		err = allowed[1] != NULL
			  ? xasprintf("\"%s\" or \"%s\" is required", allowed[0], allowed[1])
			  : xasprintf("\"%s\" is required", allowed[0]);
		rc = -EINVAL;
	}
	if (rc < 0) {
		http_server_reply_error(req, 422, "%s", err);
		free(err);
		json_decref(*body);
		*body = NULL;
		return -1;
	}
	return 0;
}

/*
 * Begins username's enrolment and answers 200 {secret, uri, qr_svg}: the one time
 * the secret leaves the manager. Else answers the error.
 */
static void api_users_totp_begin(struct api_users *u, struct http_server_request *req,
				 const char *username)
{
	struct store *st = api_store(u->api);
	if (api_users_totp_key(u) < 0) {
		http_server_reply_error(req, 500, "the key for second factors is not available");
		return;
	}
	unsigned char secret[AUTH_TOTP_SECRET_BYTES];
	auth_totp_secret_new(secret);
	char *sealed = auth_totp_seal(u->totp_key, username, secret);
	int rc = store_totp_begin(st, username, sealed, clock_now_ms());
	free(sealed);
	if (rc < 0) {
		explicit_bzero(secret, sizeof(secret));
		if (rc == -EEXIST)
			http_server_reply_error(
			    req, 409, "a second factor is enrolled already; disable it first");
		else if (rc == -ENOENT)
			http_server_reply_error(req, 422,
						"only local accounts can have a second factor");
		else
			http_server_reply_error(req, 500, "the store failed (%s)", strerror(-rc));
		return;
	}
	char b32[AUTH_TOTP_BASE32_LEN + 1];
	auth_totp_base32(secret, b32);
	explicit_bzero(secret, sizeof(secret));
	char *uri = auth_totp_uri(API_USERS_TOTP_ISSUER, username, b32);
	char *svg = auth_totp_qr_svg(uri);
	json_t *body = json_object();
	api_users_set(body, "secret", json_string(b32));
	api_users_set(body, "uri", json_string(uri));
	api_users_set(body, "qr_svg", http_json_string_or_null(svg));
	api_users_set(body, "digits", json_integer(AUTH_TOTP_DIGITS));
	api_users_set(body, "period", json_integer(AUTH_TOTP_STEP_S));
	explicit_bzero(b32, sizeof(b32));
	explicit_bzero(uri, strlen(uri));
	free(uri);
	free(svg);
	char q[300];
	log_info("api.totp_enrolment_begun", "user=%s", log_quote(q, sizeof(q), username));
	http_server_reply_json(req, 200, body);
}

/* What checking a code against an account's second factor gave. */
enum api_users_code {
	API_USERS_CODE_TOTP,	 /* a right TOTP code, its step now used */
	API_USERS_CODE_RECOVERY, /* a right recovery code, now used */
	API_USERS_CODE_WRONG,
	API_USERS_CODE_REPLAYED,  /* a right code of a step used already */
	API_USERS_CODE_MALFORMED, /* neither a code nor a recovery code */
	API_USERS_CODE_ERROR,	  /* the store or the key failed */
};

static const char *api_users_code_reason(enum api_users_code c)
{
	switch (c) {
	case API_USERS_CODE_REPLAYED:
		return "replayed";
	case API_USERS_CODE_MALFORMED:
		return "malformed";
	default:
		return "wrong";
	}
}

/* Checks input against username's confirmed second factor, using what matched. */
static enum api_users_code api_users_totp_check(struct api_users *u, const char *username,
						const char *input, size_t *left)
{
	struct store *st = api_store(u->api);
	char code[AUTH_RECOVERY_CHARS + 1];
	enum auth_code_kind kind = auth_code_parse(input, code);
	if (kind == AUTH_CODE_INVALID)
		return API_USERS_CODE_MALFORMED;
	struct store_totp *t = NULL;
	int rc = store_totp_get(st, username, &t);
	if (rc == -ENOENT || (rc == 0 && t->enrolled_at == 0)) {
		store_totp_free(t);
		return API_USERS_CODE_WRONG;
	}
	if (rc < 0)
		return API_USERS_CODE_ERROR;
	enum api_users_code out = API_USERS_CODE_ERROR;
	int64_t now = clock_now_ms();
	if (kind == AUTH_CODE_RECOVERY) {
		char hash[AUTH_HASH_TEXT_LEN + 1];
		auth_token_hash(code, hash);
		rc = store_totp_use_recovery(st, username, hash, now);
		out = rc == 0	      ? API_USERS_CODE_RECOVERY
		      : rc == -ENOENT ? API_USERS_CODE_WRONG
				      : API_USERS_CODE_ERROR;
		if (rc == 0 && left != NULL)
			*left = t->recovery_left > 0 ? t->recovery_left - 1 : 0;
		goto done;
	}
	unsigned char secret[AUTH_TOTP_SECRET_BYTES];
	if (api_users_totp_key(u) < 0 ||
	    auth_totp_open(u->totp_key, username, t->secret, secret) < 0) {
		log_error("api.totp_unreadable", "user=%s", username);
		goto done;
	}
	int64_t step = 0;
	rc = auth_totp_verify(secret, now, code, &step);
	explicit_bzero(secret, sizeof(secret));
	if (rc < 0) {
		out = API_USERS_CODE_WRONG;
		goto done;
	}
	rc = store_totp_use_step(st, username, step);
	out = rc == 0		? API_USERS_CODE_TOTP
	      : rc == -EALREADY ? API_USERS_CODE_REPLAYED
	      : rc == -ENOENT	? API_USERS_CODE_WRONG
				: API_USERS_CODE_ERROR;
done:
	store_totp_free(t);
	return out;
}

/*
 * Confirms username's begun enrolment with input (a TOTP code): 0 with the new
 * recovery codes in codes (shown once; the store keeps their hashes). -EACCES
 * for a wrong or malformed code, -ENOENT when none was begun, -EEXIST when one is
 * enrolled already, else the store's error.
 */
static int api_users_totp_confirm(struct api_users *u, const char *username, const char *input,
				  char codes[STORE_TOTP_RECOVERY_CODES][AUTH_RECOVERY_TEXT_LEN + 1])
{
	struct store *st = api_store(u->api);
	char code[AUTH_RECOVERY_CHARS + 1];
	struct store_totp *t = NULL;
	int rc = store_totp_get(st, username, &t);
	if (rc < 0)
		return rc;
	if (t->enrolled_at != 0) {
		store_totp_free(t);
		return -EEXIST;
	}
	unsigned char secret[AUTH_TOTP_SECRET_BYTES];
	int64_t step = 0;
	if (auth_code_parse(input, code) != AUTH_CODE_TOTP) {
		rc = -EACCES;
	} else if (api_users_totp_key(u) < 0 ||
		   auth_totp_open(u->totp_key, username, t->secret, secret) < 0) {
		log_error("api.totp_unreadable", "user=%s", username);
		rc = -EIO;
	} else {
		rc = auth_totp_verify(secret, clock_now_ms(), code, &step);
		explicit_bzero(secret, sizeof(secret));
	}
	store_totp_free(t);
	if (rc < 0)
		return rc;
	char hashes[STORE_TOTP_RECOVERY_CODES][AUTH_HASH_TEXT_LEN + 1];
	const char *hv[STORE_TOTP_RECOVERY_CODES];
	for (size_t i = 0; i < STORE_TOTP_RECOVERY_CODES; i++) {
		auth_recovery_code_new(codes[i]);
		auth_code_parse(codes[i], code);
		auth_token_hash(code, hashes[i]);
		hv[i] = hashes[i];
	}
	return store_totp_confirm(st, username, step, clock_now_ms(), hv,
				  STORE_TOTP_RECOVERY_CODES);
}

static json_t *
api_users_codes_json(char codes[STORE_TOTP_RECOVERY_CODES][AUTH_RECOVERY_TEXT_LEN + 1])
{
	json_t *arr = json_array();
	for (size_t i = 0; i < STORE_TOTP_RECOVERY_CODES; i++)
		json_array_append_new(arr, json_string(codes[i]));
	return arr;
}

/*
 * The second factor completed a half login (pending, of token hash): it becomes a
 * session of the role behind it; answers 200 as a login does, with extra (may be
 * NULL; the reference is taken) merged in. 0, or the store's error (answered).
 */
static int api_users_pending_complete(struct api_users *u, struct http_server_request *req,
				      const struct store_session *pending, const char *hash,
				      json_t *extra)
{
	struct store *st = api_store(u->api);
	char token[AUTH_TOKEN_TEXT_LEN + 1], csrf[AUTH_TOKEN_TEXT_LEN + 1];
	char hash_text[AUTH_HASH_TEXT_LEN + 1];
	auth_token_new(token);
	auth_token_new(csrf);
	auth_token_hash(token, hash_text);
	int64_t now = clock_now_ms();
	struct store_session s = {
	    .username = pending->username,
	    .role = unconst(api_users_pending_role(pending->role)),
	    .addresses = pending->addresses,
	    .naddresses = pending->naddresses,
	    .csrf_token = csrf,
	    .created_at = now,
	    .expires_at = now + u->cfg.session_idle_ms,
	};
	if (s.expires_at > now + u->cfg.session_max_ms)
		s.expires_at = now + u->cfg.session_max_ms;
	int rc = store_session_add(st, hash_text, &s);
	if (rc < 0) {
		json_decref(extra);
		http_server_reply_error(req, 500, "the store failed (%s)", strerror(-rc));
		return rc;
	}
	store_session_delete(st, hash);
	store_user_set_last_login(st, pending->username, now);
	api_users_cache_clear(u);
	char *cookie = auth_cookie_set(token, u->cfg.session_max_ms / 1000, u->cfg.secure_cookies);
	http_server_add_header(req, "Set-Cookie", cookie);
	free(cookie);
	json_t *body = json_object();
	api_users_set(body, "user",
		      api_users_user_json(s.username, s.role, (const char *const *)s.addresses,
					  s.naddresses));
	api_users_set(body, "csrf_token", json_string(csrf));
	if (extra != NULL) {
		json_object_update(body, extra);
		json_decref(extra);
	}
	http_server_reply_json(req, 200, body);
	return 0;
}

/* POST /api/v1/session/totp: the second half of a login, {"code": ...}. */
static void api_users_session_totp(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	struct api_users *u = api_users_of(a);
	json_t *body = NULL;
	struct store_session *pending = NULL;
	char hash[AUTH_HASH_TEXT_LEN + 1];
	if (!api_request_guard(a, req))
		return;
	const char *kind = api_users_pending_get(u, req, &pending, hash);
	if (kind == NULL) {
		http_server_reply_error(req, 401, "no login is waiting for a second factor");
		return;
	}
	static const char *const allowed[] = {"code", NULL};
	const char *code = NULL, *key = NULL;
	if (api_users_body_string(a, req, allowed, &code, &key, &body) < 0)
		goto done;
	const char *username = pending->username;
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
	auth_ratelimit_begin(u->limiter, ukey, now);
	auth_ratelimit_begin(u->addr_limiter, pkey, now);
	enum auth_attempt result = AUTH_ATTEMPT_FAILED;
	const char *reason = "wrong";
	if (strcmp(kind, API_USERS_PENDING_TOTP) == 0) {
		size_t left = 0;
		enum api_users_code c = api_users_totp_check(u, username, code, &left);
		if (c == API_USERS_CODE_ERROR) {
			result = AUTH_ATTEMPT_ERROR;
			http_server_reply_error(req, 503, "login is not possible right now");
		} else if (c == API_USERS_CODE_TOTP || c == API_USERS_CODE_RECOVERY) {
			bool rec = c == API_USERS_CODE_RECOVERY;
			if (rec)
				api_users_audit_as(a, username, "recovery_code_used", peer,
						   json_pack("{s:I}", "left", (json_int_t)left));
			if (api_users_pending_complete(u, req, pending, hash, NULL) == 0) {
				result = AUTH_ATTEMPT_OK;
				log_info("api.login",
					 "user=%s role=%s method=local second_factor=%s peer=%s", q,
					 api_users_pending_role(pending->role),
					 rec ? "recovery_code" : "totp", peer);
				api_users_audit_as(
				    a, username, "totp_login", peer,
				    json_pack("{s:s}", "method", rec ? "recovery_code" : "totp"));
			} else {
				result = AUTH_ATTEMPT_ERROR;
			}
		} else {
			reason = api_users_code_reason(c);
		}
	} else {
		char codes[STORE_TOTP_RECOVERY_CODES][AUTH_RECOVERY_TEXT_LEN + 1];
		int rc = api_users_totp_confirm(u, username, code, codes);
		if (rc == 0) {
			api_users_audit_as(a, username, "totp_enrolled", peer, NULL);
			if (api_users_pending_complete(u, req, pending, hash,
						       json_pack("{s:o}", "recovery_codes",
								 api_users_codes_json(codes))) ==
			    0) {
				result = AUTH_ATTEMPT_OK;
				log_info(
				    "api.login",
				    "user=%s role=%s method=local second_factor=enrolled peer=%s",
				    q, api_users_pending_role(pending->role), peer);
				api_users_audit_as(a, username, "totp_login", peer,
						   json_pack("{s:s}", "method", "enrolment"));
			} else {
				result = AUTH_ATTEMPT_ERROR;
			}
			explicit_bzero(codes, sizeof(codes));
		} else if (rc == -ENOENT || rc == -EEXIST) {
			result = AUTH_ATTEMPT_ERROR;
			http_server_reply_error(
			    req, 409, "begin the enrolment first: POST /api/v1/session/totp/enrol");
		} else if (rc != -EACCES) {
			result = AUTH_ATTEMPT_ERROR;
			http_server_reply_error(req, 503, "login is not possible right now");
		}
	}
	auth_ratelimit_done(u->limiter, ukey, result, peer, clock_now_ms());
	auth_ratelimit_done(u->addr_limiter, pkey, result, peer, clock_now_ms());
	if (result == AUTH_ATTEMPT_FAILED) {
		log_warn("api.totp_failed", "user=%s reason=%s peer=%s", q, reason, peer);
		api_users_audit_as(a, username, "totp_failed", peer,
				   json_pack("{s:s}", "reason", reason));
		http_server_reply_error(req, 401, "wrong code");
	}
keys:
	free(ukey);
	free(pkey);
done:
	store_session_free(pending);
	json_decref(body);
}

/* POST /api/v1/session/totp/enrol: a half login whose role must enrol begins it. */
static void api_users_session_totp_enrol(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	struct api_users *u = api_users_of(a);
	struct store_session *pending = NULL;
	char hash[AUTH_HASH_TEXT_LEN + 1];
	if (!api_request_guard(a, req))
		return;
	const char *kind = api_users_pending_get(u, req, &pending, hash);
	if (kind == NULL)
		http_server_reply_error(req, 401, "no login is waiting for a second factor");
	else if (strcmp(kind, API_USERS_PENDING_ENROL) != 0)
		http_server_reply_error(req, 409,
					"a second factor is enrolled already: send its code");
	else
		api_users_totp_begin(u, req, pending->username);
	store_session_free(pending);
}

/* The session user behind req, or NULL having answered (a token is no account). */
static const struct api_actor *api_users_me_session(struct api *a, struct http_server_request *req)
{
	if (!api_require_role(a, req, API_ROLE_ENDUSER))
		return NULL;
	const struct api_actor *who = api_actor(a, req);
	if (!who->session) {
		http_server_reply_error(req, 422, "only a logged-in user has a second factor");
		return NULL;
	}
	return who;
}

/* GET /api/v1/me/totp */
static void api_users_me_totp_get(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	struct api_users *u = api_users_of(a);
	const struct api_actor *who = api_users_me_session(a, req);
	if (who == NULL)
		return;
	struct store_totp *t = NULL;
	int rc = store_totp_get(api_store(a), who->username, &t);
	if (rc < 0 && rc != -ENOENT) {
		http_server_reply_error(req, 500, "the store failed (%s)", strerror(-rc));
		return;
	}
	bool enrolled = t != NULL && t->enrolled_at != 0;
	json_t *body = json_object();
	api_users_set(body, "enrolled", json_boolean(enrolled));
	if (enrolled) {
		char at[CLOCK_RFC3339_LEN];
		clock_format_rfc3339(t->enrolled_at, at);
		api_users_set(body, "enrolled_at", json_string(at));
	} else {
		api_users_set(body, "enrolled_at", json_null());
	}
	api_users_set(body, "recovery_codes_left",
		      json_integer(enrolled ? (json_int_t)t->recovery_left : 0));
	api_users_set(body, "required", json_boolean((u->totp_roles & (1u << who->role)) != 0));
	store_totp_free(t);
	http_server_reply_json(req, 200, body);
}

/* POST /api/v1/me/totp: begins (again) an enrolment. */
static void api_users_me_totp_post(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	const struct api_actor *who = api_users_me_session(a, req);
	if (who != NULL)
		api_users_totp_begin(api_users_of(a), req, who->username);
}

/* POST /api/v1/me/totp/confirm {"code"}: the enrolment begun is confirmed. */
static void api_users_me_totp_confirm(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	json_t *body = NULL;
	const struct api_actor *who = api_users_me_session(a, req);
	if (who == NULL)
		return;
	static const char *const allowed[] = {"code", NULL};
	const char *code = NULL, *key = NULL;
	if (api_users_body_string(a, req, allowed, &code, &key, &body) < 0)
		return;
	char codes[STORE_TOTP_RECOVERY_CODES][AUTH_RECOVERY_TEXT_LEN + 1];
	int rc = api_users_totp_confirm(api_users_of(a), who->username, code, codes);
	if (rc == 0) {
		char q[300];
		log_info("api.totp_enrolled", "user=%s", log_quote(q, sizeof(q), who->username));
		api_users_audit(a, req, "totp_enrolled", who->username, NULL);
		http_server_reply_json(
		    req, 200, json_pack("{s:o}", "recovery_codes", api_users_codes_json(codes)));
		explicit_bzero(codes, sizeof(codes));
	} else if (rc == -EACCES) {
		api_users_audit(a, req, "totp_failed", who->username,
				json_pack("{s:s,s:s}", "reason", "wrong", "during", "enrolment"));
		http_server_reply_error(req, 422, "wrong code");
	} else if (rc == -ENOENT) {
		http_server_reply_error(req, 409, "no enrolment was begun: POST /api/v1/me/totp");
	} else if (rc == -EEXIST) {
		http_server_reply_error(req, 409, "a second factor is enrolled already");
	} else {
		http_server_reply_error(req, 500, "the store failed (%s)", strerror(-rc));
	}
	json_decref(body);
}

/*
 * DELETE /api/v1/me/totp {"code"} or {"password"}: the user turns the second
 * factor off, proving it with either; wrong ones count as failed logins.
 */
static void api_users_me_totp_delete(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	struct api_users *u = api_users_of(a);
	json_t *body = NULL;
	const struct api_actor *who = api_users_me_session(a, req);
	if (who == NULL)
		return;
	static const char *const allowed[] = {"code", "password", NULL};
	const char *value = NULL, *key = NULL;
	if (api_users_body_string(a, req, allowed, &value, &key, &body) < 0)
		return;
	char *username = xstrdup(who->username);
	struct store *st = api_store(a);
	struct store_totp *t = NULL;
	int rc = store_totp_get(st, username, &t);
	bool enrolled = rc == 0 && t->enrolled_at != 0;
	store_totp_free(t);
	if (rc < 0 && rc != -ENOENT) {
		http_server_reply_error(req, 500, "the store failed (%s)", strerror(-rc));
		goto done;
	}
	if (!enrolled) {
		http_server_reply_error(req, 404, "no second factor is enrolled");
		goto done;
	}
	char peer[AUTH_ADDRESS_MAX + 1];
	api_users_client_address(u, req, peer);
	char *ukey = api_users_key("user", username);
	int64_t now = clock_now_ms();
	int64_t wait = auth_ratelimit_check(u->limiter, ukey, peer, now);
	if (wait > 0) {
		api_users_reply_retry(req, 429, wait, "too many failed logins; try again later");
		free(ukey);
		goto done;
	}
	auth_ratelimit_begin(u->limiter, ukey, now);
	bool ok = false;
	const char *reason = "wrong";
	if (strcmp(key, "password") == 0) {
		struct store_user *user = NULL;
		/* argon2id on the loop thread: rare, and bounded by the limiter */
		ok = store_user_get(st, username, &user) == 0 &&
		     auth_password_verify(user->password_hash, value);
		store_user_free(user);
	} else {
		enum api_users_code c = api_users_totp_check(u, username, value, NULL);
		ok = c == API_USERS_CODE_TOTP || c == API_USERS_CODE_RECOVERY;
		reason = api_users_code_reason(c);
	}
	auth_ratelimit_done(u->limiter, ukey, ok ? AUTH_ATTEMPT_OK : AUTH_ATTEMPT_FAILED, peer,
			    clock_now_ms());
	free(ukey);
	char q[300];
	log_quote(q, sizeof(q), username);
	if (!ok) {
		log_warn("api.totp_failed", "user=%s reason=%s during=disable peer=%s", q, reason,
			 peer);
		api_users_audit(a, req, "totp_failed", username,
				json_pack("{s:s,s:s}", "reason", reason, "during", "disable"));
		http_server_reply_error(req, 403, "wrong %s",
					strcmp(key, "password") == 0 ? "password" : "code");
		goto done;
	}
	rc = store_totp_delete(st, username);
	if (rc < 0 && rc != -ENOENT) {
		http_server_reply_error(req, 500, "the store failed (%s)", strerror(-rc));
		goto done;
	}
	log_info("api.totp_disabled", "user=%s by=self", q);
	api_users_audit(a, req, "totp_disabled", username, json_pack("{s:s}", "with", key));
	http_server_reply_json(req, 200, json_object());
done:
	free(username);
	json_decref(body);
}

/* DELETE /api/v1/users/{username}/totp: an admin removes a user's second factor. */
static void api_users_totp_reset(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	if (!api_require_role(a, req, API_ROLE_ADMIN))
		return;
	const char *username = http_server_request_param(req, "username");
	int rc = username != NULL ? store_totp_delete(api_store(a), username) : -ENOENT;
	if (rc == -ENOENT) {
		http_server_reply_error(req, 404, "no second factor for this user");
		return;
	}
	if (rc < 0) {
		http_server_reply_error(req, 500, "the store failed (%s)", strerror(-rc));
		return;
	}
	char q[300];
	log_info("api.totp_reset", "user=%s by=%s", log_quote(q, sizeof(q), username),
		 api_actor(a, req)->username);
	api_users_audit(a, req, "totp_disabled", username, json_pack("{s:s}", "with", "reset"));
	http_server_reply_json(req, 200, json_object());
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
	if (api_users_roles_parse(cfg->totp_required, &u->totp_roles) < 0) {
		/* The config loader checked it: a bad list requires it of every role. */
		log_error("api.totp_required_invalid", "value=%s", cfg->totp_required);
		u->totp_roles =
		    (1u << API_ROLE_ADMIN) | (1u << API_ROLE_OPERATOR) | (1u << API_ROLE_ENDUSER);
	}
	u->cfg.totp_required = NULL; /* not kept: the mask is */
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
	    /* Public too: the half login's cookie is checked by each. */
	    {"POST", "/api/v1/session/totp", HTTP_SERVER_ROUTE_PUBLIC, api_users_session_totp},
	    {"POST", "/api/v1/session/totp/enrol", HTTP_SERVER_ROUTE_PUBLIC,
	     api_users_session_totp_enrol},
	    {"POST", "/api/v1/users", HTTP_SERVER_ROUTE_AUTH, api_users_add},
	    {"GET", "/api/v1/users", HTTP_SERVER_ROUTE_AUTH, api_users_list},
	    {"DELETE", "/api/v1/users/{username}", HTTP_SERVER_ROUTE_AUTH, api_users_delete},
	    {"DELETE", "/api/v1/users/{username}/totp", HTTP_SERVER_ROUTE_AUTH,
	     api_users_totp_reset},
	    {"GET", "/api/v1/me", HTTP_SERVER_ROUTE_AUTH, api_users_me},
	    {"PUT", "/api/v1/me", HTTP_SERVER_ROUTE_AUTH, api_users_me_put},
	    {"GET", "/api/v1/me/totp", HTTP_SERVER_ROUTE_AUTH, api_users_me_totp_get},
	    {"POST", "/api/v1/me/totp", HTTP_SERVER_ROUTE_AUTH, api_users_me_totp_post},
	    {"DELETE", "/api/v1/me/totp", HTTP_SERVER_ROUTE_AUTH, api_users_me_totp_delete},
	    {"POST", "/api/v1/me/totp/confirm", HTTP_SERVER_ROUTE_AUTH, api_users_me_totp_confirm},
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

/*
 * api_users — logins, sessions, accounts and the audit log of the REST API
 * (docs/openapi.yaml, tags sessions, users, me, audit). Turned on by
 * API_FEATURE_USERS: api.c creates it in api_start, asks it for the actor behind a
 * session cookie, and writes audit rows through it.
 */
#ifndef LAZARET_API_USERS_H
#define LAZARET_API_USERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct api;
struct api_actor;
struct event_base;
struct http_server_request;

/* Defaults of the named settings ([http] in docs/CONFIG.md). */
#define API_USERS_SESSION_IDLE_MS  (30 * 60 * 1000LL)	   /* session_idle_timeout */
#define API_USERS_SESSION_MAX_MS   (12 * 60 * 60 * 1000LL) /* session_max_age */
#define API_USERS_LOGIN_MAX_FAILS  5			   /* login_max_failures */
#define API_USERS_LOGIN_WINDOW_MS  (5 * 60 * 1000LL)	   /* login_failure_window */
#define API_USERS_LOGIN_ADDR_FAILS 30			   /* login_max_failures_per_address */
#define API_USERS_LOGIN_BACKOFF_MS (60 * 60 * 1000LL)	   /* login_backoff_max */
#define API_USERS_LOGIN_QUEUE_MAX  16			   /* login_queue_max */
/* Accounts and client addresses the login limiter remembers at once. */
#define API_USERS_RATELIMIT_KEYS 10000
/* Threads for password checks and directory logins (blocking work). */
#define API_USERS_LOGIN_THREADS 2
/* A session's idle deadline is written back at most this often. */
#define API_USERS_TOUCH_INTERVAL_MS (60 * 1000LL)
/*
 * A directory login (LDAP, IMAP), called off the loop thread and allowed to block.
 * 0 when username/password are right: *addresses is a new array of new strings
 * (the caller frees). -EACCES when the directory refuses them (wrong password,
 * unknown user), another negative errno when no directory could answer.
 * *method (may stay NULL) names the one that answered ("ldap", "imap").
 */
typedef int (*api_users_directory_fn)(void *arg, const char *username, const char *password,
				      char ***addresses, size_t *naddresses, const char **method);

struct api_users_config {
	int64_t session_idle_ms;		 /* 0: API_USERS_SESSION_IDLE_MS */
	int64_t session_max_ms;			 /* 0: API_USERS_SESSION_MAX_MS */
	bool secure_cookies;			 /* add Secure to the session cookie */
	unsigned login_max_failures;		 /* 0: API_USERS_LOGIN_MAX_FAILS */
	int64_t login_window_ms;		 /* 0: API_USERS_LOGIN_WINDOW_MS */
	unsigned login_max_failures_per_address; /* 0: API_USERS_LOGIN_ADDR_FAILS */
	int64_t login_backoff_max_ms;		 /* 0: API_USERS_LOGIN_BACKOFF_MS */
	unsigned login_queue_max;		 /* 0: API_USERS_LOGIN_QUEUE_MAX */
	/* Proxies whose X-Forwarded-For names the client (CIDR list; NULL: none). */
	const char *trusted_proxies;
	api_users_directory_fn directory; /* NULL: local accounts only */
	void *directory_arg;		  /* must outlive the api */
};

struct api_users;

/* --- for api.c ---------------------------------------------------------- */

/* a's users part, or NULL without API_FEATURE_USERS (implemented in api.c). */
struct api_users *api_users_of(struct api *a);
/* Creates the users part (threads, limiter) for a served on base. Never NULL. */
struct api_users *api_users_new(struct api *a, struct event_base *base);
/*
 * Waits for the logins in flight (bounded by the directories' timeouts), answers
 * them 503 (the client sees it only if its connection outlives the server, which
 * api_stop frees next), stops the threads and frees. NULL is a no-op.
 */
void api_users_free(struct api_users *u);
/* Adds the endpoints of this module to a's server. */
void api_users_register(struct api *a);
/*
 * The actor of req's session cookie, or NULL when it has none that is valid.
 * Valid until the next call for another request.
 */
const struct api_actor *api_users_session_actor(struct api_users *u,
						struct http_server_request *req);
/* True when req carries the X-CSRF-Token of its (valid) session. */
bool api_users_csrf_ok(struct api_users *u, struct http_server_request *req);
/*
 * Appends an audit row for req's actor: action, target (may be NULL) and detail
 * (may be NULL; the reference is taken). A failure to write is logged.
 * Without API_FEATURE_USERS only the detail is released.
 */
void api_users_audit(struct api *a, struct http_server_request *req, const char *action,
		     const char *target, json_t *detail);

/* --- for the daemon ----------------------------------------------------- */

/* Session and login settings; the directory function is taken on the first call only. */
void api_users_configure(struct api *a, const struct api_users_config *cfg);
/*
 * Creates the admin account username with the password in password_file (its
 * first line) when no account exists yet. 0 (also when accounts exist), or a
 * negative errno with the reason logged.
 */
int api_users_initial_admin(struct api *a, const char *username, const char *password_file);

#endif

/*
 * api_users — logins, sessions, accounts and the audit log of the REST API
 * (docs/openapi.yaml, tags sessions, users, me, audit). An extension of the API
 * core: api_users_attach adds its routes and installs it as the core's session
 * hooks (the actor behind a session cookie, the CSRF check, the audit log).
 */
#ifndef LAZARET_API_USERS_H
#define LAZARET_API_USERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "api/auth.h"

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
/* How long a login waits for its second factor (a code, or the enrolment of one). */
#define API_USERS_TOTP_PENDING_MS (5 * 60 * 1000LL)
/* The issuer an authenticator app shows next to the account. */
#define API_USERS_TOTP_ISSUER "Lazaret"
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
	/* Roles that must have a second factor: "admin,operator" (NULL: none). */
	const char *totp_required;
	api_users_directory_fn directory; /* NULL: local accounts only */
	void *directory_arg;		  /* must outlive the api */
};

struct api_users;

/*
 * The roles in text (admin, operator, enduser; separated by commas and/or spaces)
 * as a mask of 1 << enum api_role into *mask. 0, or -EINVAL at an unknown word.
 */
int api_users_roles_parse(const char *text, unsigned *mask);

/* --- for the daemon ----------------------------------------------------- */

/*
 * Turns sessions on for a served on base: creates the users part (login threads,
 * limiters), adds its endpoints to a's server and installs it as a's session
 * hooks. Once, after api_start, before the loop runs. api_stop then waits for the
 * logins in flight (bounded by the directories' timeouts), answers them 503, stops
 * the threads and frees it.
 */
void api_users_attach(struct api *a, struct event_base *base);

/*
 * Session and login settings; the directory function is taken on the first call
 * only. No-op when a has no users part.
 */
void api_users_configure(struct api *a, const struct api_users_config *cfg);
/*
 * Creates the admin account username with the password in password_file (its
 * first line) when no account exists yet. 0 (also when accounts exist), or a
 * negative errno with the reason logged.
 */
int api_users_initial_admin(struct api *a, const char *username, const char *password_file);

/*
 * The client address of req as the login limits see it (the peer, or the
 * X-Forwarded-For entry of a [http] trusted_proxies proxy), into out.
 */
void api_users_client_address_of(struct api *a, struct http_server_request *req,
				 char out[AUTH_ADDRESS_MAX + 1]);
/*
 * Opens a session for a login checked elsewhere (single sign-on): writes the
 * session row (username, role, the addresses it may see), the audit row and log
 * line of a login by method ("oidc", "saml"), and adds its Set-Cookie to req, as a
 * password login would. Loop thread. 0, -ENOTSUP when a has no users part, or
 * -EINVAL for an address that cannot be stored, or the store's negative errno (no
 * cookie then).
 */
int api_users_session_open(struct api *a, struct http_server_request *req, const char *username,
			   const char *role, const char *const *addresses, size_t naddresses,
			   const char *method);

#endif

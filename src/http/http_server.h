/*
 * http_server — a small HTTP server on libevent's evhttp for the JSON APIs of the
 * manager and the gateway: a listener on "host:port", a router of method + path
 * patterns with parameters ("/api/v1/messages/{id}/raw"), request limits, query
 * strings, Bearer tokens, JSON replies and errors, security headers on every reply
 * and one access-log line per request.
 *
 * Handlers run on the event loop thread and must answer before they return (exactly
 * one http_server_reply_* call), or defer the answer (http_server_request_defer);
 * the request context is freed when the handler returns, or after a deferred reply. Errors always
 * have the body {"error": {"code": "...", "message": "..."}}. HTTPS is optional
 * (http_server_use_tls). A reply may come from a file (http_server_reply_file), sent
 * as the connection drains. Not for: sessions or cookies, streaming request bodies,
 * anything API-specific.
 */
#ifndef LAZARET_HTTP_SERVER_H
#define LAZARET_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct event_base;
struct ssl_ctx_st; /* OpenSSL's SSL_CTX */

/* Request line + headers; bigger requests are refused unread. */
#define HTTP_SERVER_DEFAULT_MAX_HEADERS_SIZE (32 * 1024)
/* Request body; bigger bodies are answered 413. */
#define HTTP_SERVER_DEFAULT_MAX_BODY_SIZE (1024 * 1024)
/*
 * A request must be complete (headers and body) this long after its first octet,
 * however slowly it trickles; else the connection is closed. 1 MiB in 30 s is
 * 35 KB/s, slower than any client that is not trying to hold a connection.
 */
#define HTTP_SERVER_DEFAULT_REQUEST_TIMEOUT_S 30
/* A kept-alive connection without a new request for this long is closed. */
#define HTTP_SERVER_DEFAULT_KEEPALIVE_TIMEOUT_S 15
/* Connections at once; one more is closed at once. Browsers open about six. */
#define HTTP_SERVER_DEFAULT_MAX_CONNECTIONS 256
/* Connections from one client address (behind a reverse proxy: the proxy). */
#define HTTP_SERVER_DEFAULT_MAX_CONNECTIONS_PER_CLIENT 32
/*
 * Descriptors left to the rest of the process (SMTP listener, store, outgoing
 * connections): a connection whose descriptor lies among the top this many of
 * RLIMIT_NOFILE is closed at once (see fdlimit_in_reserve; at most half the limit).
 */
#define HTTP_SERVER_DEFAULT_FD_RESERVE 64
/*
 * libevent 2.1 cannot hand a body-too-large condition to us, it answers with its own
 * HTML page. So libevent's own limit is this many times ours: a body a little over
 * the limit (the usual mistake) is read and gets our JSON 413; a body beyond
 * max_body_size * this factor is refused by libevent unread (status 413 all the
 * same), which keeps the memory a request can take bounded.
 */
#define HTTP_SERVER_BODY_READ_FACTOR 2
/* Path parameters in one pattern, and segments in one path. */
#define HTTP_SERVER_MAX_PARAMS	 8
#define HTTP_SERVER_MAX_SEGMENTS 32
/* Distinct query parameters (counting repeats) in one request. */
#define HTTP_SERVER_MAX_QUERY_PARAMS 64

struct http_server_limits {
	size_t max_headers_size;    /* 0: HTTP_SERVER_DEFAULT_MAX_HEADERS_SIZE */
	size_t max_body_size;	    /* 0: HTTP_SERVER_DEFAULT_MAX_BODY_SIZE */
	unsigned request_timeout_s; /* 0: HTTP_SERVER_DEFAULT_REQUEST_TIMEOUT_S */
};

/* Connection caps and deadlines (see "connections" in http_server.c). */
struct http_server_conn_limits {
	unsigned max_connections;	     /* 0: HTTP_SERVER_DEFAULT_MAX_CONNECTIONS */
	unsigned max_connections_per_client; /* 0: ..._MAX_CONNECTIONS_PER_CLIENT */
	unsigned request_timeout_s;	     /* first octet to complete request; 0: default */
	unsigned keepalive_timeout_s;	     /* idle between requests; 0: default */
	unsigned fd_reserve;		     /* 0: HTTP_SERVER_DEFAULT_FD_RESERVE */
};

struct http_server;
struct http_server_request;

/*
 * Told of every connection closed by a cap or a deadline, with the reason:
 * "connection_limit", "client_connection_limit", "descriptors", "request_timeout".
 */
typedef void (*http_server_refused_fn)(void *arg, const char *reason);

/* A route's handler. It answers req with one http_server_reply_* call before returning. */
typedef void (*http_server_handler_fn)(struct http_server_request *req, void *arg);
/* Decides whether req may reach a route flagged HTTP_SERVER_ROUTE_AUTH; false answers 401. */
typedef bool (*http_server_auth_fn)(struct http_server_request *req, void *arg);

#define HTTP_SERVER_ROUTE_PUBLIC 0u
#define HTTP_SERVER_ROUTE_AUTH	 1u /* the server's auth function must accept the request */

/*
 * Binds listen ("127.0.0.1:8080", "[::1]:8080", "localhost:8080"; port 0 picks a free
 * one) and serves on base. lim may be NULL (defaults). 0, -EINVAL for a malformed
 * address, or a negative errno from binding.
 */
int http_server_new(struct event_base *base, const char *listen,
		    const struct http_server_limits *lim, struct http_server **out);
/* Stops listening, closes connections and frees. NULL is a no-op. */
void http_server_free(struct http_server *s);
/*
 * Serves HTTPS instead of HTTP from now on: ctx is a server context
 * (tls_server_context; the server takes its own reference). hsts_max_age_s > 0
 * adds "Strict-Transport-Security: max-age=N" to every reply. Call once, before
 * the loop runs. A client that does not complete the handshake (plain HTTP, a
 * certificate it does not trust) loses its connection; the server keeps serving.
 */
void http_server_use_tls(struct http_server *s, struct ssl_ctx_st *ctx, unsigned hsts_max_age_s);
/* The bound port (useful after binding port 0). */
unsigned http_server_port(const struct http_server *s);
/* New limits; connections accepted from now on get them. */
void http_server_set_limits(struct http_server *s, const struct http_server_limits *lim);
/* New connection caps and deadlines (lim NULL: the defaults); live connections too. */
void http_server_set_connection_limits(struct http_server *s,
				       const struct http_server_conn_limits *lim);
/* The function told of refused and timed-out connections (for metrics); NULL: none. */
void http_server_set_on_refused(struct http_server *s, http_server_refused_fn fn, void *arg);
/* Connections open now (counted ones). */
unsigned http_server_connections(const struct http_server *s);
/* The function guarding HTTP_SERVER_ROUTE_AUTH routes. Without one, they answer 401. */
void http_server_set_auth(struct http_server *s, http_server_auth_fn fn, void *arg);

/*
 * Adds a route: method ("GET", "POST", ...) and pattern, an absolute path whose
 * segments are literal or "{name}" (matches one non-empty segment, percent-decoded).
 * The first route (in the order added) matching method and path wins; HEAD is served
 * by GET routes. A path that matches only other methods' routes answers 405 with
 * Allow; no match at all answers 404. 0, or -EINVAL for a malformed pattern.
 */
int http_server_route(struct http_server *s, const char *method, const char *pattern,
		      unsigned flags, http_server_handler_fn fn, void *arg);

/* One route of a module's table; see http_server_route. */
struct http_server_route_row {
	const char *method;
	const char *pattern;
	unsigned flags;
	http_server_handler_fn fn;
};

/*
 * Adds the n routes of a static table in order, each handler called with arg. The
 * patterns are the program's own: a malformed one is a bug, and panics.
 */
void http_server_route_table(struct http_server *s, const struct http_server_route_row *routes,
			     size_t n, void *arg);

/* Request accessors; strings are valid until the handler returns. */
const char *http_server_request_method(const struct http_server_request *req);
/* The path as sent (still percent-encoded), without the query string. */
const char *http_server_request_path(const struct http_server_request *req);
/* A "{name}" parameter of the matched pattern, decoded; NULL when no such name. */
const char *http_server_request_param(const struct http_server_request *req, const char *name);
/* The first value of a query parameter, decoded; NULL when absent. */
const char *http_server_request_query(const struct http_server_request *req, const char *key);
/* How many times key appears in the query string. */
size_t http_server_request_query_count(const struct http_server_request *req, const char *key);
/* A request header (case-insensitive name) or NULL. */
const char *http_server_request_header(const struct http_server_request *req, const char *name);
/*
 * Every value of a header that may come more than once, joined with ", " in the
 * order received (RFC 9110 5.3), new (caller frees); NULL when absent.
 */
char *http_server_request_header_all(const struct http_server_request *req, const char *name);
/* The request body: *data (NUL-terminated) and *len; an empty body gives "" and 0. */
void http_server_request_body(struct http_server_request *req, const char **data, size_t *len);
/*
 * The request body as one JSON object (http_json_parse_object) of at most max_size
 * bytes (0: HTTP_JSON_DEFAULT_MAX_SIZE). 0 with *out a new reference the caller
 * json_decref()s. Otherwise the request is answered with the reason (413 too large,
 * 400 not JSON or nested too deep, 422 not an object), *out is NULL and the
 * negative errno of http_json_parse_object is returned.
 */
int http_server_request_json_object(struct http_server_request *req, size_t max_size, json_t **out);
/* The client's address, as text. */
const char *http_server_request_peer(const struct http_server_request *req);

/* A number unique to this request among all requests the server has seen. */
uint64_t http_server_request_serial(const struct http_server_request *req);

/*
 * Deferred replies, for handlers that must wait for work off the loop thread (a
 * directory login): called by the handler instead of replying, it returns a handle
 * that outlives the handler. The handler then returns without replying; later, on
 * the loop thread, exactly one http_server_reply_* call on the handle answers the
 * request and frees the handle (accessors and http_server_add_header work on it
 * until then). If the client has gone meanwhile the reply is dropped quietly. A
 * handle still unanswered when the server is freed becomes inert: replying to it
 * only frees it.
 */
struct http_server_request *http_server_request_defer(struct http_server_request *req);

/* Adds a header to the reply still to be sent. */
void http_server_add_header(struct http_server_request *req, const char *name, const char *value);
/* Answers with body as JSON (the reply takes the reference; NULL sends "{}"). */
void http_server_reply_json(struct http_server_request *req, int status, json_t *body);
/*
 * Answers with the first len bytes of the open file fd (the server takes fd and
 * closes it after sending), read as the connection drains: a large file never
 * sits in memory whole.
 */
void http_server_reply_file(struct http_server_request *req, int status, const char *content_type,
			    int fd, uint64_t len);
/* Answers with len bytes of data and the given Content-Type. */
void http_server_reply_bytes(struct http_server_request *req, int status, const char *content_type,
			     const void *data, size_t len);
/*
 * Answers an error: {"error": {"code": http_server_status_code(status), "message": ...}}
 * with message formatted from fmt. A 401 also carries "WWW-Authenticate: Bearer".
 */
void http_server_reply_error(struct http_server_request *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * The error code for a status: 400 bad_request, 401 unauthorized, 403 forbidden,
 * 404 not_found, 405 method_not_allowed, 409 conflict, 413 payload_too_large,
 * 415 unsupported_media_type, 422 unprocessable, 429 too_many_requests, 503 unavailable; any other
 * status "internal".
 */
const char *http_server_status_code(int status);

/*
 * True only when authorization is "Bearer <token>" (scheme case-insensitive) with
 * exactly the configured token. The comparison takes the same time whatever the
 * presented value: both sides are hashed with a per-process random key and the
 * digests compared with sodium_memcmp, so neither content nor length leaks. An
 * empty or NULL configured token accepts nothing.
 */
bool http_server_bearer_ok(const char *authorization, const char *token);

/* A parsed query string: keys and values percent-decoded ('+' is a space), in order. */
struct http_server_query {
	size_t n;
	char **keys;
	char **values;
};

/*
 * Parses a query string ("a=1&b=x%20y&a=2"; NULL or "" is an empty query). A key
 * without "=" has the value ""; a "%" not followed by two hex digits stays as it is.
 * *out is new (http_server_query_free). -EINVAL for an empty key, a "%00" (our
 * strings are C strings), or more than HTTP_SERVER_MAX_QUERY_PARAMS parameters.
 */
int http_server_query_parse(const char *qs, struct http_server_query **out);
void http_server_query_free(struct http_server_query *q);
/* The first value for key, or NULL. */
const char *http_server_query_get(const struct http_server_query *q, const char *key);
size_t http_server_query_count(const struct http_server_query *q, const char *key);

#endif

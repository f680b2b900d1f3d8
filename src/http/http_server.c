/*
 * http_server — evhttp plus what our APIs need on top of it: routing with path
 * parameters, limits, query parsing, Bearer checks, JSON errors, security headers
 * and access logging. Shared by the manager and the gateway; knows nothing of
 * either.
 *
 * One request goes through http_server_dispatch() on the loop thread:
 *   body over the limit -> 413; malformed query -> 400; no route -> 404;
 *   route for other methods only -> 405; guarded route refused -> 401;
 *   else the handler, which must answer (if it does not, 500 and an error log).
 * Every answer goes through http_server_send(), which adds the security headers and
 * writes the access-log line. The request context lives on dispatch's stack, unless
 * the handler defers: then a heap copy takes over the query and parameters, sits on
 * the server's deferred list, and http_server_send() frees it after the reply.
 *
 * Connections are counted apart from requests (the "connections" section below):
 * libevent 2.1 has no accept hook, so the bufferevent callback registers each new
 * connection and http_server_conn_adopt(), run right after libevent set it up,
 * applies the caps (total, per client address, descriptor reserve), sets
 * TCP_NODELAY and takes libevent's close callback. A connection then moves
 *   idle    --first octet of a request (http_server_conn_input)--> request
 *   request --request complete (dispatch: http_server_conn_busy)--> handling
 *   handling --reply queued (http_server_send: http_server_conn_replied)--> idle
 *                                                  (or request, if input waits)
 *   request --request_timeout since its first octet--> closed
 *   idle    --keepalive_timeout without an octet (reply written)--> closed
 * TLS (http_server_use_tls) lives in http_tls.c: http_server_conn_new asks it for
 * each connection's bufferevent, and replies get its headers. Not for: streaming.
 */
#include "http/http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <sodium.h>

#include "common/clock.h"
#include "common/fdlimit.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "http/http_json.h"
#include "http/http_tls.h"

/* Longest "host:port" we accept in the listen setting. */
#define HTTP_SERVER_LISTEN_MAX 300

struct http_server_route_entry {
	char *method;
	char **segments; /* "{name}" segments are parameters */
	size_t nsegments;
	unsigned flags;
	http_server_handler_fn fn;
	void *arg;
};

enum http_server_conn_phase {
	HTTP_CONN_NEW,	    /* libevent is setting it up; adopted on the next turn */
	HTTP_CONN_IDLE,	    /* waiting for a request's first octet */
	HTTP_CONN_REQUEST,  /* a request is arriving: the request deadline runs */
	HTTP_CONN_HANDLING, /* a complete request is with its handler */
};

/* One accepted connection, as counted for the caps and timed for the deadlines. */
struct http_server_conn {
	struct http_server *srv;
	struct bufferevent *bev;	 /* referenced by us until adopted */
	struct evhttp_connection *evcon; /* NULL until adopted */
	struct evbuffer_cb_entry *input_cb;
	struct event *timer; /* adoption, then the request deadline or the idle timer */
	enum http_server_conn_phase phase;
	char peer[INET6_ADDRSTRLEN];
	struct http_server_conn *prev, *next;
};

struct http_server {
	struct evhttp *http;
	struct evhttp_bound_socket *bound;
	struct event_base *base;
	struct fdlimit_guard *accept_guard;
	struct http_server_conn_limits conn_limits;
	struct http_server_conn *conns; /* every connection libevent has open */
	unsigned nconns;		/* adopted ones among them */
	http_server_refused_fn on_refused;
	void *on_refused_arg;
	unsigned port;
	struct http_server_limits limits;
	struct http_server_route_entry *routes;
	size_t nroutes;
	http_server_auth_fn auth;
	void *auth_arg;
	uint64_t serial;			   /* requests dispatched so far */
	struct http_server_request *deferred_head; /* deferred, not yet answered */
	struct http_tls *tls;			   /* NULL: plain HTTP */
};

struct http_server_request {
	struct http_server *srv;
	struct evhttp_request *ev;
	const char *method;
	const char *path;
	struct http_server_query *query;
	const char *param_names[HTTP_SERVER_MAX_PARAMS];
	char *param_values[HTTP_SERVER_MAX_PARAMS];
	size_t nparams;
	char peer[64];
	int64_t started;
	bool replied;
	const char *body; /* contiguous input, once asked for */
	size_t body_len;
	uint64_t serial;
	bool deferred;	 /* on dispatch's stack: handed over to a heap copy */
	bool heap;	 /* a deferred handle: freed after its reply */
	char *path_copy; /* a deferred handle's path: libevent may free its own first */
	struct http_server_request *prev, *next; /* the server's deferred list */
};

static const struct {
	int status;
	const char *code;
	const char *reason;
} http_server_statuses[] = {
    {200, NULL, "OK"},
    {201, NULL, "Created"},
    {202, NULL, "Accepted"},
    {204, NULL, "No Content"},
    {302, NULL, "Found"},
    {303, NULL, "See Other"},
    {304, NULL, "Not Modified"},
    {400, "bad_request", "Bad Request"},
    {401, "unauthorized", "Unauthorized"},
    {403, "forbidden", "Forbidden"},
    {404, "not_found", "Not Found"},
    {405, "method_not_allowed", "Method Not Allowed"},
    {409, "conflict", "Conflict"},
    {413, "payload_too_large", "Payload Too Large"},
    {415, "unsupported_media_type", "Unsupported Media Type"},
    {422, "unprocessable", "Unprocessable Entity"},
    {429, "too_many_requests", "Too Many Requests"},
    {500, "internal", "Internal Server Error"},
    {503, "unavailable", "Service Unavailable"},
};

const char *http_server_status_code(int status)
{
	for (size_t i = 0; i < sizeof(http_server_statuses) / sizeof(http_server_statuses[0]);
	     i++) {
		if (http_server_statuses[i].status == status &&
		    http_server_statuses[i].code != NULL)
			return http_server_statuses[i].code;
	}
	return "internal";
}

static const char *http_server_reason(int status)
{
	for (size_t i = 0; i < sizeof(http_server_statuses) / sizeof(http_server_statuses[0]);
	     i++) {
		if (http_server_statuses[i].status == status)
			return http_server_statuses[i].reason;
	}
	return status < 400 ? "OK" : "Error";
}

/* ---- query strings ---- */

static void http_server_query_add(struct http_server_query *q, char *key, char *value)
{
	q->keys = xreallocarray(q->keys, q->n + 1, sizeof(*q->keys));
	q->values = xreallocarray(q->values, q->n + 1, sizeof(*q->values));
	q->keys[q->n] = key;
	q->values[q->n] = value;
	q->n++;
}

/* Percent-decodes n bytes of s ('+' is a space); NULL when it would contain NUL. */
static char *http_server_decode(const char *s, size_t n, bool plus)
{
	char *raw = xstrndup(s, n);
	size_t len = 0;
	char *dec = evhttp_uridecode(raw, plus ? 1 : 0, &len);
	free(raw);
	if (dec == NULL)
		panic("http_server: out of memory");
	if (strlen(dec) != len) {
		free(dec);
		return NULL;
	}
	/* libevent allocates with its own allocator; hand out memory free() can take. */
	char *copy = xstrdup(dec);
	free(dec);
	return copy;
}

int http_server_query_parse(const char *qs, struct http_server_query **out)
{
	struct http_server_query *q = xcalloc(1, sizeof(*q));
	const char *p = qs != NULL ? qs : "";
	while (*p != '\0') {
		size_t plen = strcspn(p, "&");
		if (plen > 0) {
			const char *eq = memchr(p, '=', plen);
			size_t klen = eq != NULL ? (size_t)(eq - p) : plen;
			if (klen == 0 || q->n >= HTTP_SERVER_MAX_QUERY_PARAMS)
				goto fail;
			char *key = http_server_decode(p, klen, true);
			char *value = eq != NULL ? http_server_decode(eq + 1, plen - klen - 1, true)
						 : xstrdup("");
			if (key == NULL || value == NULL || *key == '\0') {
				free(key);
				free(value);
				goto fail;
			}
			http_server_query_add(q, key, value);
		}
		p += plen;
		if (*p == '&')
			p++;
	}
	*out = q;
	return 0;

fail:
	http_server_query_free(q);
	*out = NULL;
	return -EINVAL;
}

void http_server_query_free(struct http_server_query *q)
{
	if (q == NULL)
		return;
	for (size_t i = 0; i < q->n; i++) {
		free(q->keys[i]);
		free(q->values[i]);
	}
	free(q->keys);
	free(q->values);
	free(q);
}

const char *http_server_query_get(const struct http_server_query *q, const char *key)
{
	for (size_t i = 0; q != NULL && i < q->n; i++) {
		if (strcmp(q->keys[i], key) == 0)
			return q->values[i];
	}
	return NULL;
}

size_t http_server_query_count(const struct http_server_query *q, const char *key)
{
	size_t n = 0;
	for (size_t i = 0; q != NULL && i < q->n; i++)
		n += strcmp(q->keys[i], key) == 0;
	return n;
}

/* ---- Bearer tokens ---- */

static unsigned char http_server_hash_key[crypto_generichash_KEYBYTES];
static pthread_once_t http_server_hash_once = PTHREAD_ONCE_INIT;

static void http_server_hash_init(void)
{
	if (sodium_init() < 0)
		panic("http_server: libsodium cannot initialise");
	randombytes_buf(http_server_hash_key, sizeof(http_server_hash_key));
}

static void http_server_token_digest(const char *s, size_t len,
				     unsigned char out[crypto_generichash_BYTES])
{
	crypto_generichash(out, crypto_generichash_BYTES, (const unsigned char *)s, len,
			   http_server_hash_key, sizeof(http_server_hash_key));
}

bool http_server_bearer_ok(const char *authorization, const char *token)
{
	if (authorization == NULL || token == NULL || *token == '\0')
		return false;
	pthread_once(&http_server_hash_once, http_server_hash_init);
	static const char scheme[] = "Bearer";
	if (strncasecmp(authorization, scheme, sizeof(scheme) - 1) != 0)
		return false;
	const char *p = authorization + sizeof(scheme) - 1;
	if (*p != ' ' && *p != '\t')
		return false;
	while (*p == ' ' || *p == '\t')
		p++;
	size_t len = strlen(p);
	while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
		len--;
	/*
	 * Keyed hashes of both sides have a fixed length, so comparing them takes the
	 * same time whatever the presented token's length or content.
	 */
	unsigned char got[crypto_generichash_BYTES], want[crypto_generichash_BYTES];
	http_server_token_digest(p, len, got);
	http_server_token_digest(token, strlen(token), want);
	return sodium_memcmp(got, want, sizeof(got)) == 0;
}

/* ---- connections: caps, deadlines, TCP_NODELAY ---- */

static unsigned http_server_read_timeout_s(const struct http_server *s);

static void http_server_conn_arm(struct http_server_conn *c, unsigned seconds)
{
	struct timeval tv = {(time_t)seconds, 0};
	evtimer_add(c->timer, &tv);
}

/* Forgets c and frees it; the connection itself is libevent's to close. */
static void http_server_conn_untrack(struct http_server_conn *c)
{
	struct http_server *s = c->srv;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	if (c->evcon != NULL) {
		s->nconns--;
		evhttp_connection_set_closecb(c->evcon, NULL, NULL);
	}
	if (c->input_cb != NULL)
		evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->input_cb);
	if (c->evcon == NULL)
		bufferevent_decref(c->bev);
	event_free(c->timer);
	free(c);
}

static void http_server_conn_refused(struct http_server *s, const char *reason, const char *peer)
{
	/* No connection id in the line: a flood of them folds into one report. */
	log_info("http.refused", "reason=%s client=%s", reason, peer);
	if (s->on_refused != NULL)
		s->on_refused(s->on_refused_arg, reason);
}

/* libevent is closing the connection (any reason): stop counting it. */
static void http_server_conn_closed(struct evhttp_connection *evcon, void *arg)
{
	http_server_conn_untrack(arg);
}

static struct http_server_conn *http_server_conn_find(struct http_server *s,
						      struct evhttp_request *ev)
{
	struct evhttp_connection *evcon = ev != NULL ? evhttp_request_get_connection(ev) : NULL;
	for (struct http_server_conn *c = s->conns; evcon != NULL && c != NULL; c = c->next) {
		if (c->evcon == evcon)
			return c;
	}
	return NULL;
}

static unsigned http_server_conn_count_peer(const struct http_server *s, const char *peer)
{
	unsigned n = 0;
	for (const struct http_server_conn *c = s->conns; c != NULL; c = c->next)
		n += c->evcon != NULL && strcmp(c->peer, peer) == 0;
	return n;
}

/*
 * Applies the caps to a connection libevent has just set up. Returns false when
 * it was refused (and closed; c is gone).
 */
static bool http_server_conn_adopt(struct http_server_conn *c)
{
	struct http_server *s = c->srv;
	bufferevent_data_cb readcb = NULL;
	void *cbarg = NULL;
	bufferevent_getcb(c->bev, &readcb, NULL, NULL, &cbarg);
	if (readcb == NULL || cbarg == NULL) {
		/* libevent gave up on it already (bufferevent_free clears the callbacks). */
		http_server_conn_untrack(c);
		return false;
	}
	struct evhttp_connection *evcon = cbarg; /* evhttp's argument to its own callbacks */
	int fd = (int)bufferevent_getfd(c->bev);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (fd >= 0 && getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
		const void *a = ss.ss_family == AF_INET6
				    ? (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
				    : (const void *)&((struct sockaddr_in *)&ss)->sin_addr;
		inet_ntop(ss.ss_family, a, c->peer, sizeof(c->peer));
	}
	const struct http_server_conn_limits *l = &s->conn_limits;
	const char *refuse = NULL;
	if (s->nconns >= l->max_connections)
		refuse = "connection_limit";
	else if (http_server_conn_count_peer(s, c->peer) >= l->max_connections_per_client)
		refuse = "client_connection_limit";
	else if (fdlimit_in_reserve(fd, l->fd_reserve))
		refuse = "descriptors";
	if (refuse != NULL) {
		http_server_conn_refused(s, refuse, c->peer);
		http_server_conn_untrack(c);
		evhttp_connection_free(evcon);
		return false;
	}
	c->evcon = evcon;
	s->nconns++;
	bufferevent_decref(c->bev);
	evhttp_connection_set_closecb(evcon, http_server_conn_closed, c);
	/*
	 * A reply larger than the first TCP segments would otherwise wait for the
	 * client's delayed ACK (Nagle): some 40 ms per reply on a kept-alive connection.
	 */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
		c->phase = HTTP_CONN_REQUEST;
		http_server_conn_arm(c, l->request_timeout_s);
	} else {
		c->phase = HTTP_CONN_IDLE;
		http_server_conn_arm(c, l->keepalive_timeout_s);
	}
	return true;
}

static void http_server_conn_timer(evutil_socket_t fd, short what, void *arg)
{
	struct http_server_conn *c = arg;
	switch (c->phase) {
	case HTTP_CONN_NEW:
		http_server_conn_adopt(c);
		return;
	case HTTP_CONN_REQUEST:
		log_info("http.timeout", "client=%s limit_s=%u", c->peer,
			 c->srv->conn_limits.request_timeout_s);
		if (c->srv->on_refused != NULL)
			c->srv->on_refused(c->srv->on_refused_arg, "request_timeout");
		evhttp_connection_free(c->evcon); /* its close callback frees c */
		return;
	case HTTP_CONN_IDLE:
		/* A reply still being written is no idleness of the client's. */
		if (evbuffer_get_length(bufferevent_get_output(c->bev)) > 0) {
			http_server_conn_arm(c, c->srv->conn_limits.keepalive_timeout_s);
			return;
		}
		evhttp_connection_free(c->evcon);
		return;
	case HTTP_CONN_HANDLING:
		return;
	}
}

/* Octets came in or were taken out: the first of a request starts its deadline. */
static void http_server_conn_input(struct evbuffer *buf, const struct evbuffer_cb_info *info,
				   void *arg)
{
	struct http_server_conn *c = arg;
	if (info->n_added == 0 || c->phase != HTTP_CONN_IDLE)
		return;
	c->phase = HTTP_CONN_REQUEST;
	http_server_conn_arm(c, c->srv->conn_limits.request_timeout_s);
}

/*
 * libevent's bufferevent callback: makes the socket bufferevent of a new
 * connection (the fd is set after we return) and registers the connection,
 * adopted on the next turn of the loop. An extra reference keeps the bufferevent
 * readable until then even if libevent frees it first.
 */
static struct bufferevent *http_server_conn_new(struct event_base *base, void *arg)
{
	struct http_server *s = arg;
	struct bufferevent *bev = s->tls != NULL
				      ? http_tls_bev_new(s->tls, base)
				      : bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		panic("http_server: out of memory");
	struct http_server_conn *c = xcalloc(1, sizeof(*c));
	c->srv = s;
	c->bev = bev;
	c->phase = HTTP_CONN_NEW;
	snprintf(c->peer, sizeof(c->peer), "unknown");
	bufferevent_incref(bev);
	c->input_cb = evbuffer_add_cb(bufferevent_get_input(bev), http_server_conn_input, c);
	c->timer = evtimer_new(s->base, http_server_conn_timer, c);
	if (c->input_cb == NULL || c->timer == NULL)
		panic("http_server: out of memory");
	c->next = s->conns;
	if (s->conns != NULL)
		s->conns->prev = c;
	s->conns = c;
	/* Runs after libevent's accept handling, before any read on the new socket. */
	event_active(c->timer, EV_TIMEOUT, 1);
	return bev;
}

/* dispatch: a complete request is with its handler; no deadline while it is. */
static void http_server_conn_busy(struct http_server *s, struct evhttp_request *ev)
{
	struct http_server_conn *c = http_server_conn_find(s, ev);
	if (c == NULL)
		return;
	c->phase = HTTP_CONN_HANDLING;
	evtimer_del(c->timer);
}

/* A reply was queued: the connection waits for the next request (kept alive). */
static void http_server_conn_replied(struct http_server *s, struct evhttp_request *ev)
{
	struct http_server_conn *c = http_server_conn_find(s, ev);
	if (c == NULL)
		return;
	if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
		c->phase = HTTP_CONN_REQUEST;
		http_server_conn_arm(c, s->conn_limits.request_timeout_s);
	} else {
		c->phase = HTTP_CONN_IDLE;
		http_server_conn_arm(c, s->conn_limits.keepalive_timeout_s);
	}
}

static void http_server_apply_conn_limits(struct http_server *s,
					  const struct http_server_conn_limits *lim)
{
	struct http_server_conn_limits *l = &s->conn_limits;
	l->max_connections = lim != NULL && lim->max_connections != 0
				 ? lim->max_connections
				 : HTTP_SERVER_DEFAULT_MAX_CONNECTIONS;
	l->max_connections_per_client = lim != NULL && lim->max_connections_per_client != 0
					    ? lim->max_connections_per_client
					    : HTTP_SERVER_DEFAULT_MAX_CONNECTIONS_PER_CLIENT;
	l->request_timeout_s = lim != NULL && lim->request_timeout_s != 0
				   ? lim->request_timeout_s
				   : HTTP_SERVER_DEFAULT_REQUEST_TIMEOUT_S;
	l->keepalive_timeout_s = lim != NULL && lim->keepalive_timeout_s != 0
				     ? lim->keepalive_timeout_s
				     : HTTP_SERVER_DEFAULT_KEEPALIVE_TIMEOUT_S;
	l->fd_reserve =
	    lim != NULL && lim->fd_reserve != 0 ? lim->fd_reserve : HTTP_SERVER_DEFAULT_FD_RESERVE;
}

void http_server_set_connection_limits(struct http_server *s,
				       const struct http_server_conn_limits *lim)
{
	http_server_apply_conn_limits(s, lim);
	evhttp_set_timeout(s->http, (int)http_server_read_timeout_s(s));
}

void http_server_set_on_refused(struct http_server *s, http_server_refused_fn fn, void *arg)
{
	s->on_refused = fn;
	s->on_refused_arg = arg;
}

unsigned http_server_connections(const struct http_server *s)
{
	return s->nconns;
}

/* ---- replies ---- */

static void http_server_clear_params(struct http_server_request *req);

/* Frees a deferred handle after its reply (or when it was orphaned). */
static void http_server_deferred_done(struct http_server_request *req)
{
	if (req->srv != NULL) {
		if (req->prev != NULL)
			req->prev->next = req->next;
		else
			req->srv->deferred_head = req->next;
		if (req->next != NULL)
			req->next->prev = req->prev;
	}
	http_server_clear_params(req);
	http_server_query_free(req->query);
	free(req->path_copy);
	free(req);
}

/* Sends data (len bytes), or when fd >= 0 the len bytes of the file fd (taken). */
static void http_server_send_any(struct http_server_request *req, int status,
				 const char *content_type, const void *data, int fd, size_t len)
{
	if (req->replied || req->deferred)
		panic("http_server: second reply to %s %s", req->method, req->path);
	req->replied = true;
	if (req->ev == NULL) {
		/* The server was freed while the reply was pending. */
		if (fd >= 0)
			close(fd);
		http_server_deferred_done(req);
		return;
	}
	struct evkeyvalq *h = evhttp_request_get_output_headers(req->ev);
	evhttp_remove_header(h, "Content-Type");
	evhttp_add_header(h, "Content-Type", content_type);
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	/* API answers must not be cached; a handler serving files sets its own policy. */
	if (evhttp_find_header(h, "Cache-Control") == NULL)
		evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_add_header(h, "Content-Security-Policy", "default-src 'self'");
	http_tls_add_headers(req->srv->tls, h);
	struct evbuffer *buf = evbuffer_new();
	if (buf == NULL)
		panic("http_server: out of memory");
	if (fd >= 0) {
		if (evbuffer_add_file(buf, fd, 0, (ev_off_t)len) != 0)
			panic("http_server: cannot send a file");
	} else if (len > 0 && evbuffer_add(buf, data, len) != 0)
		panic("http_server: out of memory");
	if (req->srv != NULL)
		http_server_conn_replied(req->srv, req->ev);
	evhttp_send_reply(req->ev, status, http_server_reason(status), buf);
	evbuffer_free(buf);

	char qpath[256];
	log_info("http.access", "method=%s path=%s status=%d bytes=%zu ms=%lld peer=%s",
		 req->method, log_quote(qpath, sizeof(qpath), req->path), status, len,
		 (long long)(clock_mono_ms() - req->started), req->peer);
	if (req->heap)
		http_server_deferred_done(req);
}

static void http_server_send(struct http_server_request *req, int status, const char *content_type,
			     const void *data, size_t len)
{
	http_server_send_any(req, status, content_type, data, -1, len);
}

void http_server_reply_file(struct http_server_request *req, int status, const char *content_type,
			    int fd, uint64_t len)
{
	http_server_send_any(req, status, content_type, NULL, fd, (size_t)len);
}

void http_server_add_header(struct http_server_request *req, const char *name, const char *value)
{
	if (req->ev == NULL)
		return;
	evhttp_add_header(evhttp_request_get_output_headers(req->ev), name, value);
}

void http_server_reply_bytes(struct http_server_request *req, int status, const char *content_type,
			     const void *data, size_t len)
{
	http_server_send(req, status, content_type, data, len);
}

void http_server_reply_json(struct http_server_request *req, int status, json_t *body)
{
	char *text = json_dumps(body != NULL ? body : json_object(), JSON_COMPACT);
	json_decref(body);
	if (text == NULL)
		panic("http_server: cannot serialise a reply");
	http_server_send(req, status, "application/json", text, strlen(text));
	free(text);
}

static void http_server_reply_error_msg(struct http_server_request *req, int status,
					const char *message)
{
	if (status == 401)
		http_server_add_header(req, "WWW-Authenticate", "Bearer");
	http_server_reply_json(req, status,
			       http_json_error_body(http_server_status_code(status), message));
}

void http_server_reply_error(struct http_server_request *req, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = NULL;
	if (vasprintf(&msg, fmt, ap) < 0)
		panic("http_server: out of memory");
	va_end(ap);
	http_server_reply_error_msg(req, status, msg);
	free(msg);
}

/* ---- request accessors ---- */

const char *http_server_request_method(const struct http_server_request *req)
{
	return req->method;
}

const char *http_server_request_path(const struct http_server_request *req)
{
	return req->path;
}

const char *http_server_request_param(const struct http_server_request *req, const char *name)
{
	size_t n = strlen(name);
	for (size_t i = 0; i < req->nparams; i++) {
		/* param_names are the pattern's segments: "{name}". */
		const char *p = req->param_names[i];
		if (strncmp(p + 1, name, n) == 0 && p[n + 1] == '}' && p[n + 2] == '\0')
			return req->param_values[i];
	}
	return NULL;
}

const char *http_server_request_query(const struct http_server_request *req, const char *key)
{
	return http_server_query_get(req->query, key);
}

size_t http_server_request_query_count(const struct http_server_request *req, const char *key)
{
	return http_server_query_count(req->query, key);
}

const char *http_server_request_header(const struct http_server_request *req, const char *name)
{
	if (req->ev == NULL)
		return NULL;
	return evhttp_find_header(evhttp_request_get_input_headers(req->ev), name);
}

char *http_server_request_header_all(const struct http_server_request *req, const char *name)
{
	if (req->ev == NULL)
		return NULL;
	char *out = NULL;
	struct evkeyvalq *h = evhttp_request_get_input_headers(req->ev);
	for (struct evkeyval *kv = h->tqh_first; kv != NULL; kv = kv->next.tqe_next) {
		if (strcasecmp(kv->key, name) != 0)
			continue;
		char *joined =
		    out != NULL ? xasprintf("%s, %s", out, kv->value) : xstrdup(kv->value);
		free(out);
		out = joined;
	}
	return out;
}

void http_server_request_body(struct http_server_request *req, const char **data, size_t *len)
{
	if (req->body == NULL) {
		struct evbuffer *in = evhttp_request_get_input_buffer(req->ev);
		req->body_len = evbuffer_get_length(in);
		/* A terminating NUL so text parsers may rely on one; not counted in *len. */
		if (evbuffer_add(in, "", 1) != 0)
			panic("http_server: out of memory");
		req->body = (const char *)evbuffer_pullup(in, -1);
	}
	*data = req->body;
	*len = req->body_len;
}

int http_server_request_json_object(struct http_server_request *req, size_t max_size, json_t **out)
{
	const char *data;
	size_t len;
	char *err = NULL;
	http_server_request_body(req, &data, &len);
	struct http_json_limits lim = {.max_size = max_size};
	int rc = http_json_parse_object(data, len, &lim, out, &err);
	if (rc < 0)
		http_server_reply_error(req, http_json_error_status(rc), "%s", err);
	free(err);
	return rc;
}

const char *http_server_request_peer(const struct http_server_request *req)
{
	return req->peer;
}

uint64_t http_server_request_serial(const struct http_server_request *req)
{
	return req->serial;
}

struct http_server_request *http_server_request_defer(struct http_server_request *req)
{
	if (req->replied || req->deferred || req->heap)
		panic("http_server: cannot defer %s %s", req->method, req->path);
	struct http_server_request *h = xmalloc(sizeof(*h));
	*h = *req;
	h->heap = true;
	h->path_copy = xstrdup(req->path);
	h->path = h->path_copy;
	h->prev = NULL;
	h->next = req->srv->deferred_head;
	if (h->next != NULL)
		h->next->prev = h;
	req->srv->deferred_head = h;
	/* The handle owns the parameters and the query now. */
	req->nparams = 0;
	req->query = NULL;
	req->deferred = true;
	return h;
}

/* ---- routing ---- */

static const char *http_server_method_name(enum evhttp_cmd_type cmd)
{
	switch (cmd) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_HEAD:
		return "HEAD";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	case EVHTTP_REQ_OPTIONS:
		return "OPTIONS";
	case EVHTTP_REQ_TRACE:
		return "TRACE";
	case EVHTTP_REQ_CONNECT:
		return "CONNECT";
	case EVHTTP_REQ_PATCH:
		return "PATCH";
	}
	return "OTHER";
}

/* Splits an absolute path into its raw segments (pointers into a copy kept in *buf). */
static int http_server_split(const char *path, char **buf, char **segs, size_t *n)
{
	*n = 0;
	*buf = NULL;
	if (path == NULL || path[0] != '/')
		return -EINVAL;
	if (path[1] == '\0')
		return 0;
	char *copy = xstrdup(path + 1);
	*buf = copy;
	/* strsep keeps empty segments, so "/a//b" and "/a/" never match "/a/b" or "/a". */
	size_t count = 0;
	char *rest = copy;
	while (rest != NULL) {
		char *seg = strsep(&rest, "/");
		if (count >= HTTP_SERVER_MAX_SEGMENTS)
			return -E2BIG;
		segs[count++] = seg;
	}
	*n = count;
	return 0;
}

static bool http_server_is_param(const char *seg)
{
	size_t n = strlen(seg);
	return n > 2 && seg[0] == '{' && seg[n - 1] == '}';
}

int http_server_route(struct http_server *s, const char *method, const char *pattern,
		      unsigned flags, http_server_handler_fn fn, void *arg)
{
	char *buf = NULL;
	char *segs[HTTP_SERVER_MAX_SEGMENTS];
	size_t n = 0, nparams = 0;
	if (method == NULL || fn == NULL || http_server_split(pattern, &buf, segs, &n) < 0)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		if (segs[i][0] == '\0' ||
		    (strchr(segs[i], '{') != NULL && !http_server_is_param(segs[i])))
			goto fail;
		nparams += http_server_is_param(segs[i]);
	}
	if (nparams > HTTP_SERVER_MAX_PARAMS)
		goto fail;
	s->routes = xreallocarray(s->routes, s->nroutes + 1, sizeof(*s->routes));
	struct http_server_route_entry *r = &s->routes[s->nroutes++];
	r->method = xstrdup(method);
	r->segments = n > 0 ? xcalloc(n, sizeof(*r->segments)) : NULL;
	for (size_t i = 0; i < n; i++)
		r->segments[i] = xstrdup(segs[i]);
	r->nsegments = n;
	r->flags = flags;
	r->fn = fn;
	r->arg = arg;
	free(buf);
	return 0;

fail:
	free(buf);
	return -EINVAL;
}

void http_server_route_table(struct http_server *s, const struct http_server_route_row *routes,
			     size_t n, void *arg)
{
	for (size_t i = 0; i < n; i++) {
		if (http_server_route(s, routes[i].method, routes[i].pattern, routes[i].flags,
				      routes[i].fn, arg) < 0)
			panic("http_server: bad route %s %s", routes[i].method, routes[i].pattern);
	}
}

static void http_server_clear_params(struct http_server_request *req)
{
	for (size_t i = 0; i < req->nparams; i++)
		free(req->param_values[i]);
	req->nparams = 0;
}

/* True when route r's pattern matches segs; its parameters are then in req. */
static bool http_server_match(const struct http_server_route_entry *r, char **segs, size_t n,
			      struct http_server_request *req)
{
	http_server_clear_params(req);
	if (r->nsegments != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (http_server_is_param(r->segments[i])) {
			char *v = segs[i][0] != '\0'
				      ? http_server_decode(segs[i], strlen(segs[i]), false)
				      : NULL;
			if (v == NULL || *v == '\0') {
				free(v);
				http_server_clear_params(req);
				return false;
			}
			req->param_names[req->nparams] = r->segments[i];
			req->param_values[req->nparams++] = v;
		} else if (strcmp(r->segments[i], segs[i]) != 0) {
			http_server_clear_params(req);
			return false;
		}
	}
	return true;
}

static bool http_server_method_matches(const char *route_method, const char *method)
{
	return strcmp(route_method, method) == 0 ||
	       (strcmp(method, "HEAD") == 0 && strcmp(route_method, "GET") == 0);
}

static void http_server_peer(struct evhttp_request *ev, char *out, size_t size)
{
	snprintf(out, size, "-");
	struct evhttp_connection *conn = evhttp_request_get_connection(ev);
	if (conn == NULL)
		return;
	char *addr = NULL; /* points into conn: read only */
	ev_uint16_t port = 0;
	evhttp_connection_get_peer(conn, &addr, &port);
	if (addr != NULL)
		snprintf(out, size, "%s", addr);
}

static void http_server_route_request(struct http_server_request *req, const char *query)
{
	struct http_server *s = req->srv;
	size_t body = evbuffer_get_length(evhttp_request_get_input_buffer(req->ev));
	if (body > s->limits.max_body_size) {
		http_server_add_header(req, "Connection", "close");
		http_server_reply_error(req, 413, "request body is larger than %zu bytes",
					s->limits.max_body_size);
		return;
	}
	if (http_server_query_parse(query, &req->query) < 0) {
		http_server_reply_error(req, 400, "malformed query string");
		return;
	}
	char *buf = NULL;
	char *segs[HTTP_SERVER_MAX_SEGMENTS];
	size_t n = 0;
	if (http_server_split(req->path, &buf, segs, &n) < 0) {
		free(buf);
		http_server_reply_error(req, 404, "no such resource");
		return;
	}
	const struct http_server_route_entry *found = NULL;
	char allow[128] = "";
	for (size_t i = 0; i < s->nroutes && found == NULL; i++) {
		const struct http_server_route_entry *r = &s->routes[i];
		if (!http_server_match(r, segs, n, req))
			continue;
		if (http_server_method_matches(r->method, req->method)) {
			found = r;
		} else if (strstr(allow, r->method) == NULL) {
			size_t used = strlen(allow);
			snprintf(allow + used, sizeof(allow) - used, "%s%s", used > 0 ? ", " : "",
				 r->method);
		}
	}
	free(buf);
	if (found == NULL) {
		if (allow[0] != '\0') {
			http_server_add_header(req, "Allow", allow);
			http_server_reply_error(req, 405, "%s is not allowed here", req->method);
		} else {
			http_server_reply_error(req, 404, "no such resource");
		}
		return;
	}
	if ((found->flags & HTTP_SERVER_ROUTE_AUTH) != 0 &&
	    (s->auth == NULL || !s->auth(req, s->auth_arg))) {
		if (!req->replied)
			http_server_reply_error(req, 401, "a valid Bearer token is required");
		return;
	}
	found->fn(req, found->arg);
	if (!req->replied && !req->deferred) {
		log_error("http.no_reply", "method=%s route_method=%s", req->method, found->method);
		http_server_reply_error(req, 500, "internal error");
	}
}

static void http_server_dispatch(struct evhttp_request *ev, void *arg)
{
	struct http_server_request req;
	memset(&req, 0, sizeof(req));
	req.srv = arg;
	req.ev = ev;
	http_server_conn_busy(req.srv, ev);
	req.started = clock_mono_ms();
	req.serial = ++req.srv->serial;
	req.method = http_server_method_name(evhttp_request_get_command(ev));
	http_server_peer(ev, req.peer, sizeof(req.peer));
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(ev);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	req.path = path != NULL && path[0] != '\0' ? path : "/";
	http_server_route_request(&req, uri != NULL ? evhttp_uri_get_query(uri) : NULL);
	http_server_clear_params(&req);
	http_server_query_free(req.query);
}

/* ---- lifecycle ---- */

/*
 * libevent's own timeout (between two reads or writes) is only a backstop behind
 * our deadlines: the longest of them, so it never cuts what they allow.
 */
static unsigned http_server_read_timeout_s(const struct http_server *s)
{
	unsigned t = s->limits.request_timeout_s;
	if (s->conn_limits.request_timeout_s > t)
		t = s->conn_limits.request_timeout_s;
	if (s->conn_limits.keepalive_timeout_s > t)
		t = s->conn_limits.keepalive_timeout_s;
	return t;
}

static void http_server_apply_limits(struct http_server *s, const struct http_server_limits *lim)
{
	s->limits.max_headers_size = lim != NULL && lim->max_headers_size != 0
					 ? lim->max_headers_size
					 : HTTP_SERVER_DEFAULT_MAX_HEADERS_SIZE;
	s->limits.max_body_size = lim != NULL && lim->max_body_size != 0
				      ? lim->max_body_size
				      : HTTP_SERVER_DEFAULT_MAX_BODY_SIZE;
	s->limits.request_timeout_s = lim != NULL && lim->request_timeout_s != 0
					  ? lim->request_timeout_s
					  : HTTP_SERVER_DEFAULT_REQUEST_TIMEOUT_S;
	size_t transport = s->limits.max_body_size;
	if (transport <= SIZE_MAX / HTTP_SERVER_BODY_READ_FACTOR)
		transport *= HTTP_SERVER_BODY_READ_FACTOR;
	evhttp_set_max_headers_size(s->http, (ev_ssize_t)s->limits.max_headers_size);
	evhttp_set_max_body_size(s->http, (ev_ssize_t)transport);
	evhttp_set_timeout(s->http, (int)http_server_read_timeout_s(s));
}

void http_server_set_limits(struct http_server *s, const struct http_server_limits *lim)
{
	http_server_apply_limits(s, lim);
}

void http_server_set_auth(struct http_server *s, http_server_auth_fn fn, void *arg)
{
	s->auth = fn;
	s->auth_arg = arg;
}

/* Splits "host:port" / "[v6]:port" into host and port; -EINVAL when malformed. */
static int http_server_parse_listen(const char *listen, char *host, size_t hsize, unsigned *port)
{
	if (listen == NULL || strlen(listen) >= HTTP_SERVER_LISTEN_MAX)
		return -EINVAL;
	const char *colon;
	size_t hlen;
	if (listen[0] == '[') {
		const char *close = strchr(listen, ']');
		if (close == NULL || close[1] != ':')
			return -EINVAL;
		hlen = (size_t)(close - listen - 1);
		memcpy(host, listen + 1, hlen < hsize ? hlen : 0);
		colon = close + 1;
	} else {
		colon = strrchr(listen, ':');
		if (colon == NULL || memchr(listen, ':', (size_t)(colon - listen)) != NULL)
			return -EINVAL;
		hlen = (size_t)(colon - listen);
		memcpy(host, listen, hlen < hsize ? hlen : 0);
	}
	if (hlen == 0 || hlen >= hsize)
		return -EINVAL;
	host[hlen] = '\0';
	char *end = NULL;
	errno = 0;
	unsigned long p = strtoul(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || errno != 0 || p > 65535 || colon[1] == '-' ||
	    colon[1] == '+')
		return -EINVAL;
	*port = (unsigned)p;
	return 0;
}

int http_server_new(struct event_base *base, const char *listen,
		    const struct http_server_limits *lim, struct http_server **out)
{
	char host[HTTP_SERVER_LISTEN_MAX];
	unsigned port = 0;
	int rc = http_server_parse_listen(listen, host, sizeof(host), &port);
	struct http_server *s = NULL;
	*out = NULL;
	if (rc < 0)
		goto fail;
	s = xcalloc(1, sizeof(*s));
	s->base = base;
	s->http = evhttp_new(base);
	if (s->http == NULL)
		panic("http_server: evhttp_new failed");
	http_server_apply_conn_limits(s, NULL);
	http_server_apply_limits(s, lim);
	evhttp_set_bevcb(s->http, http_server_conn_new, s);
	/* Every method reaches the router, so unknown ones get our 405, not libevent's 501. */
	evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
						EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
						EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
						EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(s->http, http_server_dispatch, s);
	s->bound = evhttp_bind_socket_with_handle(s->http, host, (ev_uint16_t)port);
	if (s->bound == NULL) {
		rc = errno != 0 ? -errno : -EADDRNOTAVAIL;
		log_error("http.bind_failed", "listen=%s error=%s", listen, strerror(-rc));
		goto fail;
	}
	s->accept_guard =
	    fdlimit_guard_listener(base, evhttp_bound_socket_get_listener(s->bound), "http");
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(evhttp_bound_socket_get_fd(s->bound), (struct sockaddr *)&ss, &sl) == 0)
		s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
							 : ((struct sockaddr_in *)&ss)->sin_port);
	log_info("http.listen", "listen=%s port=%u", listen, s->port);
	*out = s;
	return 0;

fail:
	http_server_free(s);
	return rc;
}

void http_server_use_tls(struct http_server *s, struct ssl_ctx_st *ctx, unsigned hsts_max_age_s)
{
	if (s->tls != NULL)
		panic("http_server: TLS turned on twice");
	s->tls = http_tls_new(ctx, hsts_max_age_s);
	log_info("http.tls", "port=%u hsts_max_age=%u", s->port, hsts_max_age_s);
}

unsigned http_server_port(const struct http_server *s)
{
	return s->port;
}

void http_server_free(struct http_server *s)
{
	if (s == NULL)
		return;
	/* Unanswered deferred handles outlive the server: make them inert. */
	for (struct http_server_request *r = s->deferred_head; r != NULL;) {
		struct http_server_request *next = r->next;
		r->srv = NULL;
		r->ev = NULL;
		r->prev = r->next = NULL;
		r = next;
	}
	fdlimit_guard_stop(s->accept_guard);
	if (s->http != NULL)
		evhttp_free(s->http); /* each adopted connection's close callback untracks it */
	fdlimit_guard_free(s->accept_guard);
	/* Connections not adopted yet: libevent freed them; drop our references. */
	while (s->conns != NULL)
		http_server_conn_untrack(s->conns);
	/* After evhttp: its connections used the TLS state. */
	http_tls_free(s->tls);
	for (size_t i = 0; i < s->nroutes; i++) {
		for (size_t j = 0; j < s->routes[i].nsegments; j++)
			free(s->routes[i].segments[j]);
		free(s->routes[i].segments);
		free(s->routes[i].method);
	}
	free(s->routes);
	free(s);
}

/*
 * http_tls — HTTPS for http_server: every connection evhttp accepts gets an
 * OpenSSL bufferevent doing the server side of the handshake, and every reply
 * gets Strict-Transport-Security. Internal to src/http (http_server.c calls it);
 * users turn TLS on with http_server_use_tls().
 *
 * Not for: building the SSL_CTX (common/tls.c), client certificates, SNI.
 */
#ifndef LAZARET_HTTP_TLS_H
#define LAZARET_HTTP_TLS_H

#include <openssl/ssl.h>

struct bufferevent;
struct event_base;
struct evkeyvalq;
struct http_tls;

/*
 * The TLS state of a server that serves TLS with ctx (a reference is taken).
 * hsts_max_age_s > 0: replies carry "Strict-Transport-Security: max-age=N".
 * Returns the state http_server keeps (http_tls_free).
 */
struct http_tls *http_tls_new(SSL_CTX *ctx, unsigned hsts_max_age_s);
/*
 * The bufferevent of a newly accepted connection (the socket is set later by
 * evhttp): the server side of a TLS handshake. Panics when out of memory.
 */
struct bufferevent *http_tls_bev_new(struct http_tls *t, struct event_base *base);
/* Adds the TLS-only reply headers; t NULL (plain HTTP) adds nothing. */
void http_tls_add_headers(const struct http_tls *t, struct evkeyvalq *headers);
/* Drops the context reference. NULL is a no-op. */
void http_tls_free(struct http_tls *t);

#endif

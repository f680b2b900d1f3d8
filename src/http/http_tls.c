/*
 * http_tls — the TLS side of http_server (see http_tls.h).
 *
 * http_server's bufferevent callback asks http_tls_bev_new() for the bufferevent
 * of each accepted connection, and evhttp gives it the socket afterwards; it starts
 * in the accepting state, so the first bytes it reads are the ClientHello. A peer
 * speaking plain HTTP or an untrusting client fails the handshake: OpenSSL
 * reports an error, evhttp drops that connection and the listener keeps going.
 * Not for: anything after the handshake — requests are evhttp's as usual.
 */
#include "http/http_tls.h"

#include <stdio.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>

#include "common/log.h"
#include "common/xalloc.h"

struct http_tls {
	SSL_CTX *ctx;
	char hsts[64]; /* the header's value, "" when none */
};

/* A new server-side TLS bufferevent; it must never fall back to plain. */
struct bufferevent *http_tls_bev_new(struct http_tls *t, struct event_base *base)
{
	SSL *ssl = SSL_new(t->ctx);
	if (ssl == NULL)
		panic("http_tls: out of memory");
	struct bufferevent *bev = bufferevent_openssl_socket_new(
	    base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		panic("http_tls: cannot create a TLS bufferevent");
	/* Browsers close without close_notify; that is the end of a connection, not an attack. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

struct http_tls *http_tls_new(SSL_CTX *ctx, unsigned hsts_max_age_s)
{
	struct http_tls *t = xcalloc(1, sizeof(*t));
	SSL_CTX_up_ref(ctx);
	t->ctx = ctx;
	if (hsts_max_age_s > 0)
		snprintf(t->hsts, sizeof(t->hsts), "max-age=%u", hsts_max_age_s);
	return t;
}

void http_tls_add_headers(const struct http_tls *t, struct evkeyvalq *headers)
{
	if (t == NULL || t->hsts[0] == '\0')
		return;
	evhttp_add_header(headers, "Strict-Transport-Security", t->hsts);
}

void http_tls_free(struct http_tls *t)
{
	if (t == NULL)
		return;
	SSL_CTX_free(t->ctx);
	free(t);
}

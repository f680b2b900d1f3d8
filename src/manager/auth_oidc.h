/*
 * auth_oidc — single sign-on through OpenID Connect ([auth_oidc]): the routes
 * GET /auth/oidc/login (a redirect to the provider: authorization code flow with
 * PKCE S256, state and nonce) and GET /auth/oidc/callback (the code exchanged at
 * the token endpoint, the ID token's signature checked against the provider's
 * JWKS and its claims verified, then a session as a password login opens it).
 * Not for: sessions themselves (api_users), the provider's user interface.
 */
#ifndef LAZARET_AUTH_OIDC_H
#define LAZARET_AUTH_OIDC_H

#include <stdbool.h>

struct api;
struct event_base;
struct manager_config;
struct auth_oidc;

/*
 * 0 when url is an https:// URL with a host, or (loopback_http) an http:// URL
 * whose host is a loopback address (127.0.0.0/8, [::1], localhost); -EINVAL
 * otherwise.
 */
int auth_oidc_url_ok(const char *url, bool loopback_http);

/* True when word is one of list's words (separated by commas and/or spaces). */
bool auth_oidc_word_in(const char *list, const char *word);

/*
 * Adds the two routes to a's server when cfg has [auth_oidc] (a snapshot of it is
 * kept: it changes on restart only), else does nothing and answers NULL. Call
 * after api_users_attach and before api_static_register.
 */
struct auth_oidc *auth_oidc_attach(struct api *a, struct event_base *base,
				   const struct manager_config *cfg);
/* Waits for the requests to the provider in flight and answers their logins 503. */
void auth_oidc_free(struct auth_oidc *o);

#endif

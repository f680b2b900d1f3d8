/*
 * auth_saml — SAML 2.0 single sign-on for end users ([auth_saml]): the service
 * provider's metadata, the SP-initiated login (HTTP-Redirect AuthnRequest) and the
 * assertion consumer (HTTP-POST Response), on liblasso.
 * Not for: sessions themselves (api_users_session_open), admins (never via SAML).
 */
#ifndef LAZARET_MANAGER_AUTH_SAML_H
#define LAZARET_MANAGER_AUTH_SAML_H

#include <stdbool.h>

struct api;

struct auth_saml_config {
	const char *idp_metadata;      /* the identity provider's metadata file */
	const char *base_url;	       /* the manager as browsers reach it, no trailing '/' */
	const char *entity_id;	       /* NULL: <base_url>/auth/saml/metadata */
	const char *sp_key_file;       /* PEM private key that signs our requests */
	const char *sp_cert_file;      /* its certificate, published in our metadata */
	const char *address_attribute; /* NULL: the NameID (emailAddress format) */
	const char *allowed_domains;   /* commas and/or spaces; required */
	bool secure_cookies;	       /* [http] secure_cookies: HTTPS, the browser is bound */
};

struct auth_saml;

/*
 * Loads the keys and the provider's metadata and adds the /auth/saml/ routes to
 * a's server (before the web application's). NULL with *err (to free) when the
 * configuration cannot be used.
 */
struct auth_saml *auth_saml_attach(struct api *a, const struct auth_saml_config *cfg, char **err);
/* After the api is stopped. NULL is fine. */
void auth_saml_free(struct auth_saml *s);

#endif

/*
 * auth_directory — chains the directory logins (see auth_directory.h). Holds its
 * own copies of the settings so that a reload cannot free them under a login that
 * runs on a worker thread. Not for: local accounts (api_users.c checks those first).
 */
#include "manager/auth_directory.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <strings.h>

#include "common/log.h"
#include "common/tls.h"
#include "common/xalloc.h"
#include "manager/auth_imap.h"
#include "manager/auth_ldap.h"
#include "manager/manager_config.h"

struct auth_directory {
	bool have_ldap, have_imap;
	struct auth_ldap_config ldap;
	struct auth_imap_config imap;
};

struct auth_directory *auth_directory_new(const struct manager_config *cfg)
{
	if (cfg->ldap_uri == NULL && cfg->imap_host == NULL)
		return NULL;
	struct auth_directory *d = xcalloc(1, sizeof(*d));
	if (cfg->ldap_uri != NULL) {
		d->have_ldap = true;
		d->ldap.uri = xstrdup_or_null(cfg->ldap_uri);
		d->ldap.base_dn = xstrdup_or_null(cfg->ldap_base_dn);
		d->ldap.bind_dn = xstrdup_or_null(cfg->ldap_bind_dn);
		d->ldap.bind_password = xstrdup_or_null(cfg->ldap_bind_password);
		d->ldap.user_filter = xstrdup_or_null(cfg->ldap_user_filter);
		d->ldap.mail_attributes = xstrdup_or_null(cfg->ldap_mail_attributes);
		d->ldap.timeout_ms = cfg->ldap_timeout_ms;
		d->ldap.starttls = cfg->ldap_starttls;
		d->ldap.ca_file = xstrdup_or_null(cfg->ldap_ca_file);
		if (!cfg->ldap_starttls && strncasecmp(cfg->ldap_uri, "ldap://", 7) == 0)
			log_warn(
			    "auth.ldap_plaintext",
			    "uri=%s reason=\"passwords go in clear: use ldaps:// or starttls = "
			    "yes unless the directory is on loopback\"",
			    cfg->ldap_uri);
	}
	if (cfg->imap_host != NULL) {
		d->have_imap = true;
		d->imap.host = xstrdup_or_null(cfg->imap_host);
		d->imap.domain = xstrdup_or_null(cfg->imap_domain);
		d->imap.timeout_ms = cfg->imap_timeout_ms;
		(void)auth_imap_tls_parse(cfg->imap_tls, &d->imap.tls); /* checked by the config */
		if (d->imap.tls != AUTH_IMAP_TLS_NONE) {
			char *err = NULL;
			d->imap.tls_ctx =
			    tls_client_context(cfg->imap_ca_file, NULL, NULL, true, &err);
			if (d->imap.tls_ctx == NULL)
				panic("[auth_imap] %s", err); /* the config load tried the same */
		}
	}
	return d;
}

void auth_directory_free(struct auth_directory *d)
{
	if (d == NULL)
		return;
	free((char *)d->ldap.uri);
	free((char *)d->ldap.base_dn);
	free((char *)d->ldap.bind_dn);
	free((char *)d->ldap.bind_password);
	free((char *)d->ldap.user_filter);
	free((char *)d->ldap.mail_attributes);
	free((char *)d->ldap.ca_file);
	free((char *)d->imap.host);
	free((char *)d->imap.domain);
	if (d->imap.tls_ctx != NULL)
		SSL_CTX_free(d->imap.tls_ctx);
	free(d);
}

int auth_directory_login(void *arg, const char *username, const char *password, char ***addresses,
			 size_t *naddresses, const char **method)
{
	struct auth_directory *d = arg;
	int rc = -EACCES;
	bool refused = false;
	if (d->have_ldap) {
		*method = "ldap";
		rc = auth_ldap_login(&d->ldap, username, password, addresses, naddresses);
		if (rc == 0)
			return 0;
		refused = rc == -EACCES;
	}
	if (d->have_imap) {
		*method = "imap";
		rc = auth_imap_login(&d->imap, username, password, addresses, naddresses);
		if (rc == 0)
			return 0;
		refused = refused || rc == -EACCES;
	}
	/* A refusal from any directory counts as a failed login, not an outage. */
	return refused ? -EACCES : rc;
}

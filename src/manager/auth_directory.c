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
	char *copies[9]; /* the strings ldap and imap point at, owned here */
	size_t ncopies;
};

/* A copy of s (NULL stays NULL) that d owns and frees. */
static const char *auth_directory_dup(struct auth_directory *d, const char *s)
{
	if (s == NULL)
		return NULL;
	if (d->ncopies == sizeof(d->copies) / sizeof(d->copies[0]))
		panic("auth_directory: more settings than copies");
	return d->copies[d->ncopies++] = xstrdup(s);
}

struct auth_directory *auth_directory_new(const struct manager_config *cfg)
{
	if (cfg->ldap_uri == NULL && cfg->imap_host == NULL)
		return NULL;
	struct auth_directory *d = xcalloc(1, sizeof(*d));
	if (cfg->ldap_uri != NULL) {
		d->have_ldap = true;
		d->ldap.uri = auth_directory_dup(d, cfg->ldap_uri);
		d->ldap.base_dn = auth_directory_dup(d, cfg->ldap_base_dn);
		d->ldap.bind_dn = auth_directory_dup(d, cfg->ldap_bind_dn);
		d->ldap.bind_password = auth_directory_dup(d, cfg->ldap_bind_password);
		d->ldap.user_filter = auth_directory_dup(d, cfg->ldap_user_filter);
		d->ldap.mail_attributes = auth_directory_dup(d, cfg->ldap_mail_attributes);
		d->ldap.timeout_ms = cfg->ldap_timeout_ms;
		d->ldap.starttls = cfg->ldap_starttls;
		d->ldap.ca_file = auth_directory_dup(d, cfg->ldap_ca_file);
		if (!cfg->ldap_starttls && strncasecmp(cfg->ldap_uri, "ldap://", 7) == 0)
			log_warn(
			    "auth.ldap_plaintext",
			    "uri=%s reason=\"passwords go in clear: use ldaps:// or starttls = "
			    "yes unless the directory is on loopback\"",
			    cfg->ldap_uri);
	}
	if (cfg->imap_host != NULL) {
		d->have_imap = true;
		d->imap.host = auth_directory_dup(d, cfg->imap_host);
		d->imap.domain = auth_directory_dup(d, cfg->imap_domain);
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
	for (size_t i = 0; i < d->ncopies; i++)
		free(d->copies[i]);
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

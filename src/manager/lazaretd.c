/*
 * lazaretd — the manager: the external spam quarantine's SMTP listener (and the
 * policy, virus and outbreak quarantines' one, [pvo_quarantine]), the store,
 * the release engine, expiry and the HTTP API, on one libevent loop.
 *
 * Life of the process:
 *   start     read config, bind SMTP, drop root, open store, start ingest, release,
 *             API and expiry, then run the loop
 *   SIGHUP    reload: access list, release hosts, expiry, token, log level
 *   SIGTERM   stop accepting; idle sessions get 421; sessions in a transaction
 *             finish it (bounded by shutdown_grace); every accepted message is
 *             committed; exit 0
 * Not for: any policy decision about mail (gateways scan; the manager keeps).
 */
#include <errno.h>
#include <limits.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/acl.h"
#include "common/clock.h"
#include "common/confparse.h"
#include "common/daemon_args.h"
#include "common/fdlimit.h"
#include "common/fault.h"
#include "common/log.h"
#include "common/privdrop.h"
#include "common/tls.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "api/api.h"
#include "api/api_backup.h"
#include "api/api_events.h"
#include "api/api_migration.h"
#include "api/api_backfill.h"
#include "api/api_report_sched.h"
#include "manager/report_sched.h"
#include "api/api_reports.h"
#include "api/api_tracking.h"
#include "api/api_gateways.h"
#include "api/api_levels.h"
#include "api/api_pvo_actions.h"
#include "api/api_quarantines.h"
#include "api/api_slbl.h"
#include "api/api_static.h"
#include "api/api_users.h"
#include "digest/digest_mail.h"
#include "digest/digest_pages.h"
#include "quarantine/backup.h"
#include "quarantine/capacity.h"
#include "quarantine/expiry.h"
#include "quarantine/own_events.h"
#include "quarantine/track_retention.h"
#include "manager/auth_directory.h"
#include "manager/auth_oidc.h"
#include "manager/auth_saml.h"
#include "manager/ingest.h"
#include "manager/manager_config.h"
#include "digest/notify.h"
#include "quarantine/metrics.h"
#include "http/http_server.h"
#include "quarantine/release.h"
#include "smtp/smtp_session.h"
#include "store/store.h"

/* Parse/compress threads for ingest: the writer thread and the loop take the rest. */
#define LAZARETD_INGEST_THREADS 2
/* How often shutdown checks whether the last sessions and commits are done. */
#define LAZARETD_SHUTDOWN_POLL_MS 50
/* After the grace period, how long to wait for commits of messages already in flight. */
#define LAZARETD_COMMIT_WAIT_MS 10000
/* Descriptors kept from HTTP for the store (reader pool, WAL), the log, the digest mailer. */
#define LAZARETD_FD_RESERVE_BASE 64

struct lazaretd {
	struct manager_config cfg;
	struct event_base *base;
	struct smtp_server *smtp;
	struct smtp_server *pvo_smtp; /* [pvo_quarantine]'s listener, or NULL when off */
	struct store *st;
	struct ingest *ingest;
	struct release *release;
	struct api *api;
	struct api_gateways *gateways;	/* the registry's routes; freed after the api */
	struct api_backup *backup_api;	/* POST /api/v1/backup; freed after the api */
	struct backup_schedule *backup; /* [backup], or NULL */
	struct expiry *expiry;
	struct track_retention *track_retention; /* [tracking] retention */
	struct capacity *capacity;		 /* the PVO quarantines' max_size */
	struct notify *notify;
	struct report_sched *report_sched; /* scheduled reports' timer */
	struct auth_directory *directory;  /* LDAP/IMAP end users, or NULL */
	struct auth_oidc *oidc;		   /* [auth_oidc] single sign-on, or NULL */
	struct auth_saml *saml;		   /* [auth_saml] end users, or NULL */
	SSL_CTX *http_tls;		   /* [http] HTTPS context, or NULL */
	struct event *sig_term, *sig_int, *sig_hup, *shutdown_timer;
	int64_t shutdown_started;
	bool forced;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: lazaretd -c FILE [--check-config | --restore ARCHIVE]\n"
		   "       lazaretd --version | --help\n"
		   "\n"
		   "  -c, --config FILE   configuration file (see docs/CONFIG.md)\n"
		   "      --check-config  validate the configuration and exit (0 ok, 1 errors)\n"
		   "      --restore ARCHIVE  restore a backup (lazaretctl backup) into the empty\n"
		   "                      data_dir, then run (see docs/OPERATIONS.md)\n"
		   "  -V, --version       print the version and exit\n"
		   "  -h, --help          this text\n"
		   "\n"
		   "Runs in the foreground and logs to stderr. SIGTERM stops gracefully,\n"
		   "SIGHUP reloads the configuration.\n");
}

static void on_refused(void *ctx, const char *reason, const char *peer)
{
	metrics_refused(reason);
}

static void smtp_config_from(const struct manager_config *cfg, struct ingest *ing,
			     struct smtp_server_config *sc)
{
	smtp_listener_keys_server_config(&manager_config_listener, cfg, sc);
	sc->proto.hostname = cfg->hostname;
	sc->proto.limits.max_command_line = cfg->max_command_line;
	sc->proto.limits.max_data_line = (size_t)cfg->max_data_line;
	sc->proto.limits.max_header_count = cfg->max_header_count;
	sc->proto.limits.max_header_size = (size_t)cfg->max_header_size;
	sc->proto.limits.max_commands_before_mail = cfg->max_commands_before_mail;
	sc->proto.limits.max_errors = cfg->max_errors;
	sc->accept_from = cfg->accept_from;
	sc->tls_client_ca = cfg->tls_client_ca;
	sc->proto.tls_required = cfg->tls_require;
	sc->on_message = ingest_message;
	sc->ctx = ing;
	sc->on_refused = on_refused;
}

/*
 * The PVO quarantines' listener: the spam listener's engine and limits (one
 * ingest, one store, one group commit), its own address and access list, and the
 * registered-gateway check at connect.
 */
static void pvo_smtp_config_from(const struct manager_config *cfg, struct ingest *ing,
				 struct smtp_server_config *sc)
{
	smtp_config_from(cfg, ing, sc);
	sc->listen = cfg->pvo_listen;
	sc->accept_from = cfg->pvo_accept_from;
	sc->on_message = ingest_pvo_message;
	sc->check_connect = ingest_pvo_check_connect;
	sc->proto.check_mail = ingest_pvo_check_mail;
}

static void release_config_from(const struct manager_config *cfg, struct release_config *rc)
{
	memset(rc, 0, sizeof(*rc));
	rc->manager_name = cfg->name;
	rc->primary_host = cfg->primary_host;
	rc->secondary_host = cfg->secondary_host;
	rc->alternate_release_gateway = cfg->pvo_alternate_release_gateway;
	rc->source_address = cfg->source_address;
	rc->helo_name = cfg->helo_name;
	rc->max_connections = cfg->release_max_connections;
	rc->timeout_ms = cfg->release_timeout_ms;
	rc->retry_min_ms = cfg->retry_min_ms;
	rc->retry_max_ms = cfg->retry_max_ms;
	rc->give_up_after_ms = cfg->give_up_after_ms;
}

static void on_http_refused(void *arg, const char *reason)
{
	metrics_http_refused(reason);
}

/*
 * The HTTP side's caps. Its descriptor reserve covers the SMTP listener's own cap
 * plus LAZARETD_FD_RESERVE_BASE for the store, the log and release connections, so
 * a flood of HTTP connections never starves the SMTP listener.
 */
static void http_limits_from(const struct manager_config *cfg, struct http_server_conn_limits *l)
{
	http_config_keys_conn_limits(
	    &manager_config_http, cfg,
	    cfg->max_connections + cfg->release_max_connections + LAZARETD_FD_RESERVE_BASE, l);
}

static void api_config_from(const struct manager_config *cfg, struct api_config *ac)
{
	memset(ac, 0, sizeof(*ac));
	ac->listen = cfg->http_listen;
	ac->admin_token = cfg->admin_token;
	ac->manager_name = cfg->name;
	ac->max_body = cfg->http_max_body;
	ac->delete_after_ms = cfg->delete_after_ms;
	ac->slbl_max_entries = cfg->slbl_max_entries;
	ac->web_root = cfg->web_root;
	ac->hide_bodies_until_released = cfg->hide_bodies_until_released;
	ac->hsts_max_age_s = (unsigned)(cfg->http_hsts_max_age_ms / 1000);
	ac->allowed_origins = cfg->allowed_origins;
	ac->read_threads = cfg->read_threads;
	ac->read_queue_max = cfg->read_queue_max;
	ac->query_timeout_ms = cfg->query_timeout_ms;
	ac->download_min_role = API_ROLE_ADMIN;
	if (cfg->download_min_role != NULL && strcmp(cfg->download_min_role, "operator") == 0)
		ac->download_min_role = API_ROLE_OPERATOR;
	else if (cfg->download_min_role != NULL && strcmp(cfg->download_min_role, "enduser") == 0)
		ac->download_min_role = API_ROLE_ENDUSER;
}

static void gateways_config_from(const struct manager_config *cfg, struct ingest *ing,
				 struct api_gateways_config *gc)
{
	memset(gc, 0, sizeof(*gc));
	gc->changed = ingest_gateways_changed; /* the PVO listener lets them in at once */
	gc->changed_arg = ing;
	gc->pending_from = cfg->gateways_pending_from_text;
	gc->max_pending = cfg->gateways_max_pending;
	gc->pending_interval_ms = cfg->gateways_pending_interval_ms;
}

/* Sessions, login limits and directories for the API (api_users). */
static void users_config_from(const struct manager_config *cfg, struct auth_directory *dir,
			      struct api_users_config *uc)
{
	memset(uc, 0, sizeof(*uc));
	uc->session_idle_ms = cfg->session_idle_timeout_ms;
	uc->session_max_ms = cfg->session_max_age_ms;
	uc->secure_cookies = cfg->secure_cookies;
	uc->login_max_failures = cfg->login_max_failures;
	uc->login_window_ms = cfg->login_failure_window_ms;
	uc->login_max_failures_per_address = cfg->login_max_failures_per_address;
	uc->login_backoff_max_ms = cfg->login_backoff_max_ms;
	uc->login_queue_max = cfg->login_queue_max;
	uc->trusted_proxies = cfg->trusted_proxies_text;
	uc->totp_required = cfg->totp_required;
	if (dir != NULL) {
		uc->directory = auth_directory_login;
		uc->directory_arg = dir;
	}
}

/* [notifications]; digests go out through the release path ([release] hosts). */
static void notify_config_from(const struct manager_config *cfg, struct notify_config *nc)
{
	memset(nc, 0, sizeof(*nc));
	nc->enabled = cfg->notify_enabled;
	nc->schedule = cfg->notify_schedule;
	nc->time_zone = cfg->notify_time_zone;
	nc->from = cfg->notify_from;
	nc->base_url = cfg->notify_base_url;
	nc->language = cfg->notify_language;
	nc->max_entries = cfg->notify_max_entries;
	nc->data_dir = cfg->data_dir;
	nc->hostname = cfg->hostname;
	nc->delete_after_ms = cfg->delete_after_ms;
	nc->primary_host = cfg->primary_host;
	nc->secondary_host = cfg->secondary_host;
	nc->source_address = cfg->source_address;
	nc->helo_name = cfg->helo_name;
	nc->timeout_ms = cfg->release_timeout_ms;
}

/* Scheduled reports go out through the release path, From [notifications] from. */
static void report_sched_config_from(const struct manager_config *cfg,
				     struct report_sched_config *rc)
{
	*rc =
	    (struct report_sched_config){.from = cfg->notify_from,
					 .hostname = cfg->hostname,
					 .primary_host = cfg->primary_host,
					 .secondary_host = cfg->secondary_host,
					 .source_address = cfg->source_address,
					 .helo_name = cfg->helo_name,
					 .timeout_ms = cfg->release_timeout_ms,
					 .archive_retention_ms = cfg->report_archive_retention_ms};
}

static void on_shutdown_poll(evutil_socket_t fd, short what, void *arg)
{
	struct lazaretd *d = arg;
	int64_t elapsed = clock_mono_ms() - d->shutdown_started;
	unsigned sessions = smtp_server_sessions(d->smtp) +
			    (d->pvo_smtp != NULL ? smtp_server_sessions(d->pvo_smtp) : 0);
	unsigned inflight = ingest_inflight(d->ingest);
	if (!d->forced && elapsed > d->cfg.shutdown_grace_ms) {
		log_warn("manager.shutdown_forced", "sessions=%u inflight=%u", sessions, inflight);
		smtp_server_close_all(d->smtp);
		if (d->pvo_smtp != NULL)
			smtp_server_close_all(d->pvo_smtp);
		d->forced = true;
	}
	if ((sessions == 0 && inflight == 0) ||
	    elapsed > d->cfg.shutdown_grace_ms + LAZARETD_COMMIT_WAIT_MS)
		event_base_loopexit(d->base, NULL);
}

static void on_terminate(evutil_socket_t sig, short what, void *arg)
{
	struct lazaretd *d = arg;
	if (d->shutdown_timer != NULL)
		return;
	log_info("manager.stopping", "signal=%d sessions=%u", (int)sig,
		 smtp_server_sessions(d->smtp));
	d->shutdown_started = clock_mono_ms();
	smtp_server_shutdown(d->smtp);
	if (d->pvo_smtp != NULL)
		smtp_server_shutdown(d->pvo_smtp);
	api_stop(d->api);
	d->api = NULL;
	d->shutdown_timer = event_new(d->base, -1, EV_PERSIST, on_shutdown_poll, d);
	struct timeval tv = {0, LAZARETD_SHUTDOWN_POLL_MS * 1000};
	event_add(d->shutdown_timer, &tv);
}

static void on_reload(evutil_socket_t sig, short what, void *arg)
{
	struct lazaretd *d = arg;
	struct manager_config next;
	char *errors = NULL;
	if (manager_config_load(d->cfg.path, &next, &errors) < 0) {
		char q[1024];
		log_error("manager.reload_failed", "errors=%s",
			  log_quote(q, sizeof(q), errors != NULL ? errors : ""));
		free(errors);
		return;
	}
	if (!str_same(next.smtp_listen, d->cfg.smtp_listen) ||
	    !str_same(next.pvo_listen, d->cfg.pvo_listen) ||
	    !str_same(next.http_listen, d->cfg.http_listen) ||
	    !str_same(next.data_dir, d->cfg.data_dir) ||
	    !str_same(next.store_backend, d->cfg.store_backend) ||
	    !str_same(next.store_dsn, d->cfg.store_dsn) ||
	    !str_same(next.store_node_name, d->cfg.store_node_name) ||
	    !str_same(next.store_read_dsn, d->cfg.store_read_dsn) ||
	    !str_same(next.tls_cert, d->cfg.tls_cert) || !str_same(next.tls_key, d->cfg.tls_key) ||
	    !str_same(next.tls_client_ca, d->cfg.tls_client_ca) ||
	    next.tls_require != d->cfg.tls_require ||
	    !str_same(next.http_tls_cert, d->cfg.http_tls_cert) ||
	    !str_same(next.http_tls_key, d->cfg.http_tls_key))
		log_warn("manager.reload_partial", "reason=\"listen addresses, data_dir, [store] "
						   "and TLS files change on restart only\"");
	if (!str_same(next.oidc_issuer, d->cfg.oidc_issuer) ||
	    !str_same(next.oidc_client_id, d->cfg.oidc_client_id) ||
	    !str_same(next.oidc_client_secret_file, d->cfg.oidc_client_secret_file) ||
	    !str_same(next.oidc_scopes, d->cfg.oidc_scopes) ||
	    !str_same(next.oidc_address_claim, d->cfg.oidc_address_claim) ||
	    !str_same(next.oidc_role_claim, d->cfg.oidc_role_claim) ||
	    !str_same(next.oidc_admin_values, d->cfg.oidc_admin_values) ||
	    !str_same(next.oidc_operator_values, d->cfg.oidc_operator_values) ||
	    !str_same(next.oidc_allowed_domains, d->cfg.oidc_allowed_domains) ||
	    !str_same(next.oidc_ca_file, d->cfg.oidc_ca_file) ||
	    !str_same(next.oidc_redirect_uri, d->cfg.oidc_redirect_uri) ||
	    next.oidc_timeout_ms != d->cfg.oidc_timeout_ms ||
	    next.oidc_clock_skew_ms != d->cfg.oidc_clock_skew_ms)
		log_warn("manager.reload_partial",
			 "reason=\"[auth_oidc] changes on restart only\"");
	if (!str_same(next.backup_dir, d->cfg.backup_dir) ||
	    next.backup_every_ms != d->cfg.backup_every_ms ||
	    next.backup_keep != d->cfg.backup_keep)
		log_warn("manager.reload_partial", "reason=\"[backup] changes on restart only\"");
	if (next.read_threads != d->cfg.read_threads)
		log_warn("manager.reload_partial",
			 "reason=\"[http] read_threads changes on restart only\"");
	smtp_server_set_acl(d->smtp, next.accept_from);
	if (d->pvo_smtp != NULL)
		smtp_server_set_acl(d->pvo_smtp, next.pvo_accept_from);
	struct release_config rc;
	release_config_from(&next, &rc);
	release_reconfigure(d->release, &rc);
	if (d->api != NULL) {
		struct api_config ac;
		api_config_from(&next, &ac);
		api_reconfigure(d->api, &ac);
		struct http_server_conn_limits hl;
		http_limits_from(&next, &hl);
		http_server_set_connection_limits(api_http(d->api), &hl);
		struct api_users_config uc;
		users_config_from(&next, d->directory, &uc);
		api_users_configure(d->api, &uc);
		struct api_gateways_config gc;
		gateways_config_from(&next, d->ingest, &gc);
		api_gateways_configure(d->gateways, &gc);
	}
	expiry_reconfigure(d->expiry, next.delete_after_ms, next.purge_interval_ms);
	track_retention_reconfigure(d->track_retention, next.tracking_retention_ms,
				    next.purge_interval_ms);
	track_retention_reports(d->track_retention, next.report_retention_ms);
	if (d->capacity != NULL)
		capacity_reconfigure(d->capacity, next.pvo_max_size);
	struct notify_config nc;
	notify_config_from(&next, &nc);
	if (notify_reconfigure(d->notify, &nc) < 0)
		log_warn("manager.reload_notifications", "reason=\"kept the previous settings\"");
	struct report_sched_config rsc;
	report_sched_config_from(&next, &rsc);
	report_sched_reconfigure(d->report_sched, &rsc);
	log_set_level_name(next.log_level);
	/* Keep the listen-related settings the process actually runs with. */
	char *keep_smtp = d->cfg.smtp_listen, *keep_http = d->cfg.http_listen;
	d->cfg.smtp_listen = next.smtp_listen;
	d->cfg.http_listen = next.http_listen;
	next.smtp_listen = keep_smtp;
	next.http_listen = keep_http;
	char *keep_pvo = d->cfg.pvo_listen;
	d->cfg.pvo_listen = next.pvo_listen;
	next.pvo_listen = keep_pvo;
	manager_config_free(&d->cfg);
	d->cfg = next;
	char q[256];
	log_info("manager.reloaded", "accept_from=%s primary=%s",
		 log_quote(q, sizeof(q), d->cfg.accept_from_text), d->cfg.primary_host);
}

/*
 * Reads the digest's texts and page templates (web/digest) once: from the web/ folder
 * installed with this lazaretd, else from LAZARET_WEB_DIR (the source tree's, or
 * where a package put it: -Dweb_dir). A missing or broken file stops the start with
 * the file named: mails and pages must never have holes.
 */
static int load_digest_files(void)
{
	char *err = NULL;
	char *installed = manager_config_installed_web();
	char *dir = xasprintf("%s/digest", installed != NULL ? installed : LAZARET_WEB_DIR);
	char *texts = xasprintf("%s/%s", dir, DIGEST_TEXTS_FILE);
	int rc = digest_texts_load(texts, &err);
	if (rc == 0)
		rc = digest_pages_load(dir, &err);
	if (rc < 0) {
		fprintf(stderr, "lazaretd: %s\n", err);
		free(err);
	}
	free(texts);
	free(dir);
	free(installed);
	return rc;
}

static int start(struct lazaretd *d)
{
	char *err = NULL;
	int rc;
	struct smtp_server_config sc;

	/* A backend that lacks part of store.h would fail at the first request that
	 * needs that part: refuse it now, naming what is missing. */
	char *missing = store_backend_missing(d->cfg.store_backend);
	if (missing != NULL) {
		fprintf(stderr,
			"lazaretd: [store] backend = %s is not available yet: it lacks %s\n",
			d->cfg.store_backend, missing);
		free(missing);
		return -ENOTSUP;
	}

	/* Before binding anything: a broken install fails at once, with the file named. */
	if ((rc = load_digest_files()) < 0)
		return rc;
	fdlimit_raise();
	d->base = event_base_new();
	if (d->base == NULL)
		panic("cannot create the event loop");
	/* Bind first (the port may be privileged); the store opens as the service user. */
	d->ingest = ingest_new(d->base, NULL, LAZARETD_INGEST_THREADS);
	smtp_config_from(&d->cfg, d->ingest, &sc);
	if ((rc = smtp_server_start(d->base, &sc, &d->smtp, &err)) < 0) {
		fprintf(stderr, "lazaretd: %s\n", err);
		free(err);
		return rc;
	}
	if (d->cfg.pvo_listen != NULL && d->cfg.pvo_listen[0] != '\0') {
		struct smtp_server_config pc;
		pvo_smtp_config_from(&d->cfg, d->ingest, &pc);
		if ((rc = smtp_server_start(d->base, &pc, &d->pvo_smtp, &err)) < 0) {
			fprintf(stderr, "lazaretd: [pvo_quarantine] %s\n", err);
			free(err);
			return rc;
		}
	}
	/* Before dropping root: the key may be readable by root only. */
	if (d->cfg.http_tls) {
		d->http_tls =
		    tls_server_context(d->cfg.http_tls_cert, d->cfg.http_tls_key, NULL, &err);
		if (d->http_tls == NULL) {
			fprintf(stderr, "lazaretd: [http] %s\n", err);
			free(err);
			return -EINVAL;
		}
	}
	if ((rc = privdrop_make_dirs(d->cfg.data_dir)) < 0) {
		fprintf(stderr, "lazaretd: cannot create %s: %s\n", d->cfg.data_dir, strerror(-rc));
		return rc;
	}
	if ((rc = privdrop_to_user("manager", d->cfg.user, d->cfg.data_dir)) < 0) {
		fprintf(stderr, "lazaretd: cannot drop privileges to %s: %s\n", d->cfg.user,
			strerror(-rc));
		return rc;
	}
	struct store_options so = {.backend = d->cfg.store_backend,
				   .dsn = d->cfg.store_dsn,
				   .dir = d->cfg.data_dir,
				   .node_name = d->cfg.store_node_name,
				   .read_dsn = d->cfg.store_read_dsn,
				   .connect_wait_ms = d->cfg.store_connect_wait_ms};
	if ((rc = store_open(&so, &d->st)) < 0) {
		if (strcmp(d->cfg.store_backend, "postgresql") == 0)
			fprintf(stderr, "lazaretd: cannot open the store on PostgreSQL: %s\n",
				rc == -ENOTCONN
				    ? "the server did not answer within [store] "
				      "connect_wait (see the store.open_failed log line)"
				: rc == -EACCES ? "the server refused the connection (see the "
						  "store.open_failed log line)"
						: strerror(-rc));
		else
			fprintf(stderr, "lazaretd: cannot open the store in %s: %s\n",
				d->cfg.data_dir, strerror(-rc));
		return rc;
	}
	/* Nothing is read from sockets before the loop runs, so this is in time. */
	ingest_set_store(d->ingest, d->st);
	own_events_start(d->st);
	if (d->pvo_smtp != NULL) {
		ingest_gateways_start(d->ingest);
		d->capacity = capacity_new(d->base, d->st, d->cfg.pvo_max_size);
		ingest_set_capacity(d->ingest, d->capacity);
	}

	struct release_config relc;
	release_config_from(&d->cfg, &relc);
	if ((rc = release_start(d->st, &relc, &d->release)) < 0) {
		fprintf(stderr, "lazaretd: cannot start the release engine: %s\n", strerror(-rc));
		return rc;
	}
	/* Before the API: the digest links and "send now" need its key and service. */
	struct notify_config nc;
	notify_config_from(&d->cfg, &nc);
	if ((rc = notify_new(d->base, d->st, &nc, &d->notify)) < 0) {
		fprintf(stderr, "lazaretd: cannot start notifications: %s\n", strerror(-rc));
		return rc;
	}
	struct api_config ac;
	api_config_from(&d->cfg, &ac);
	ac.tls_ctx = d->http_tls;
	if ((rc = api_start(d->base, &ac, d->st, d->release, &d->api)) < 0) {
		fprintf(stderr, "lazaretd: cannot listen for HTTP on %s: %s\n", d->cfg.http_listen,
			strerror(-rc));
		return rc;
	}
	/*
	 * The manager serves every extension. Order matters: the first matching route
	 * answers, and the web application takes the GET paths no route above took
	 * (always routed, so a reload can turn it on or off).
	 */
	api_users_attach(d->api, d->base);
	if (d->cfg.saml_idp_metadata != NULL) {
		/* [auth_saml] is read once (restart to change it). */
		struct auth_saml_config samlc = {
		    .idp_metadata = d->cfg.saml_idp_metadata,
		    .base_url = d->cfg.saml_base_url,
		    .entity_id = d->cfg.saml_entity_id,
		    .sp_key_file = d->cfg.saml_sp_key_file,
		    .sp_cert_file = d->cfg.saml_sp_cert_file,
		    .address_attribute = d->cfg.saml_address_attribute,
		    .allowed_domains = d->cfg.saml_allowed_domains,
		    .secure_cookies = d->cfg.secure_cookies,
		};
		char *saml_err = NULL;
		if ((d->saml = auth_saml_attach(d->api, &samlc, &saml_err)) == NULL) {
			fprintf(stderr, "lazaretd: %s\n", saml_err);
			free(saml_err);
			return -EINVAL;
		}
	}
	api_slbl_register(d->api);
	struct api_gateways_config gc;
	gateways_config_from(&d->cfg, d->ingest, &gc);
	d->gateways = api_gateways_attach(d->api, &gc);
	api_events_register(d->api);
	api_backfill_register(d->api);
	api_tracking_register(d->api);
	api_reports_register(d->api);
	struct report_sched_config rsc;
	report_sched_config_from(&d->cfg, &rsc);
	if ((rc = report_sched_new(d->base, d->st, &rsc, &d->report_sched)) < 0) {
		fprintf(stderr, "lazaretd: cannot start scheduled reports: %s\n", strerror(-rc));
		return rc;
	}
	api_report_sched_register(d->api, report_sched_mail_later, d->report_sched);
	api_quarantines_register(d->api);
	api_levels_register(d->api);
	api_migration_register(d->api, report_sched_notices_now, d->report_sched);
	api_pvo_actions_register(d->api);
	digest_pages_register(d->api);
	/* [auth_oidc] is read once: logins in flight hold it. */
	d->oidc = auth_oidc_attach(d->api, d->base, &d->cfg);
	if (d->cfg.oidc_issuer != NULL && d->oidc == NULL) {
		fprintf(stderr,
			"lazaretd: cannot read [auth_oidc] client_secret_file (see the log)\n");
		return -EIO;
	}
	api_static_register(d->api);
	struct http_server_conn_limits hl;
	http_limits_from(&d->cfg, &hl);
	http_server_set_connection_limits(api_http(d->api), &hl);
	http_server_set_on_refused(api_http(d->api), on_http_refused, NULL);
	/* [auth_ldap] and [auth_imap] are read once: logins in flight hold them. */
	d->directory = auth_directory_new(&d->cfg);
	struct api_users_config uc;
	users_config_from(&d->cfg, d->directory, &uc);
	api_users_configure(d->api, &uc);
	if (d->cfg.initial_admin != NULL &&
	    (rc = api_users_initial_admin(d->api, d->cfg.initial_admin,
					  d->cfg.initial_admin_password_file)) < 0) {
		fprintf(stderr, "lazaretd: cannot create the initial admin %s (see the log)\n",
			d->cfg.initial_admin);
		return rc;
	}
	struct api_backup_config bc = {.backend = d->cfg.store_backend,
				       .data_dir = d->cfg.data_dir,
				       .manager_name = d->cfg.name};
	d->backup_api = api_backup_attach(d->api, &bc);
	d->backup =
	    backup_schedule_new(d->base, d->st, d->cfg.store_backend, d->cfg.data_dir, d->cfg.name,
				d->cfg.backup_dir, d->cfg.backup_every_ms, d->cfg.backup_keep);
	d->expiry = expiry_new(d->base, d->st, d->cfg.delete_after_ms, d->cfg.purge_interval_ms);
	d->track_retention = track_retention_new(d->base, d->st, d->cfg.tracking_retention_ms,
						 d->cfg.purge_interval_ms);
	track_retention_reports(d->track_retention, d->cfg.report_retention_ms);

	d->sig_term = evsignal_new(d->base, SIGTERM, on_terminate, d);
	d->sig_int = evsignal_new(d->base, SIGINT, on_terminate, d);
	d->sig_hup = evsignal_new(d->base, SIGHUP, on_reload, d);
	event_add(d->sig_term, NULL);
	event_add(d->sig_int, NULL);
	event_add(d->sig_hup, NULL);
	char q[256], web[PATH_MAX + 3];
	log_info("manager.start",
		 "version=%s name=%s smtp=%s pvo_smtp=%s http=%s https=%s data_dir=%s "
		 "web_root=%s accept_from=%s",
		 LAZARET_VERSION, d->cfg.name, d->cfg.smtp_listen,
		 d->pvo_smtp != NULL ? d->cfg.pvo_listen : "-", d->cfg.http_listen,
		 d->http_tls != NULL ? "yes" : "no", d->cfg.data_dir,
		 d->cfg.web_root != NULL ? log_quote(web, sizeof(web), d->cfg.web_root) : "-",
		 log_quote(q, sizeof(q), d->cfg.accept_from_text));
	if (fault_armed() != NULL)
		log_warn("manager.fault_armed", "point=%s reason=\"%s is for tests only\"",
			 log_quote(q, sizeof(q), fault_armed()), FAULT_ENV);
	return 0;
}

/* Tears down in dependency order; safe after a partial start. */
static void stop(struct lazaretd *d)
{
	if (d->expiry != NULL)
		expiry_free(d->expiry);
	track_retention_free(d->track_retention);
	if (d->ingest != NULL)
		ingest_set_capacity(d->ingest, NULL);
	capacity_free(d->capacity);
	auth_oidc_free(d->oidc);
	backup_schedule_free(d->backup); /* waits for a backup in progress */
	if (d->api != NULL)
		api_stop(d->api);
	/* after the API: a run made on demand may queue its mail until then */
	report_sched_free(d->report_sched); /* waits for reports being made or mailed */
	api_gateways_free(d->gateways);
	api_backup_free(d->backup_api);
	notify_free(d->notify);
	if (d->release != NULL)
		release_stop(d->release);
	if (d->ingest != NULL)
		ingest_stop(d->ingest);
	own_events_stop(); /* what ingest, release and the API queued */
	if (d->st != NULL)
		store_close(d->st);
	/* Deliver the answers of the last commits to sessions still waiting for them. */
	if (d->base != NULL)
		event_base_loop(d->base, EVLOOP_NONBLOCK);
	ingest_free(d->ingest);
	smtp_server_free(d->smtp);
	smtp_server_free(d->pvo_smtp);
	if (d->shutdown_timer != NULL)
		event_free(d->shutdown_timer);
	if (d->sig_term != NULL) {
		event_free(d->sig_term);
		event_free(d->sig_int);
		event_free(d->sig_hup);
	}
	if (d->base != NULL)
		event_base_free(d->base);
	auth_directory_free(d->directory);
	auth_saml_free(d->saml);
	digest_pages_unload();
	digest_texts_unload();
	if (d->http_tls != NULL)
		SSL_CTX_free(d->http_tls);
	manager_config_free(&d->cfg);
}

/*
 * --restore: the archive into the empty data_dir, before anything starts; the
 * manager then starts on it as on any data_dir (privdrop hands the files to the
 * service user). 0, or the exit status of docs/OPERATIONS.md with the reason on
 * stderr.
 */
static int restore(const struct manager_config *cfg, const char *archive)
{
	struct backup_info info;
	char *err = NULL;
	/* data_dir's parents as start() would make them; data_dir itself must be empty. */
	int rc = privdrop_make_dirs(cfg->data_dir);
	if (rc < 0) {
		fprintf(stderr, "lazaretd: restore refused: cannot create %s: %s\n", cfg->data_dir,
			strerror(-rc));
		return BACKUP_ERR_IO;
	}
	rc = backup_restore(archive, cfg->data_dir, cfg->store_backend, &info, &err);
	if (rc < 0) {
		fprintf(stderr, "lazaretd: restore refused: %s\n", err != NULL ? err : "?");
		free(err);
		return -rc;
	}
	char when[40];
	time_t t = (time_t)(info.created_at / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	fprintf(stderr,
		"lazaretd: restored %s (%s, taken %s by lazaret %s, %u files, sha256 %s) into "
		"%s\n",
		archive, info.backend, when, info.version, info.files, info.sha256, cfg->data_dir);
	if (!info.database)
		fprintf(stderr, "lazaretd: the archive has no database: restore PostgreSQL's own "
				"backup (pg_restore, pgBackRest) before the manager serves\n");
	log_info("manager.restored", "file=%s backend=%s created=%s files=%u sha256=%s", archive,
		 info.backend, when, info.files, info.sha256);
	return 0;
}

int main(int argc, char **argv)
{
	struct daemon_args args;
	int exit_now = daemon_args_parse_restore(argc, argv, "lazaretd", usage, &args);
	if (exit_now >= 0)
		return exit_now;
	const char *path = args.config;
	bool check_only = args.check_only;
	log_init("lazaretd", LOG_LEVEL_INFO);
	confparse_canonical_paths(true); /* paths used and logged as /srv/var, not etc/.. */

	struct lazaretd d;
	memset(&d, 0, sizeof(d));
	char *errors = NULL;
	int rc;
	/* SIGHUP reads the file again: keep a path that survives a change of directory. */
	char *abs_path = realpath(path, NULL);
	if (abs_path != NULL)
		path = abs_path;
	if (manager_config_load(path, &d.cfg, &errors) < 0) {
		fprintf(stderr, "%s",
			errors != NULL ? errors : "lazaretd: cannot read configuration\n");
		if (errors != NULL && errors[0] != '\0' && errors[strlen(errors) - 1] != '\n')
			fputc('\n', stderr);
		free(errors);
		free(abs_path);
		return 1;
	}
	if (check_only) {
		printf("%s: configuration ok\n", path);
		manager_config_free(&d.cfg);
		free(abs_path);
		return 0;
	}
	log_set_level_name(d.cfg.log_level);
	if (args.restore != NULL && (rc = restore(&d.cfg, args.restore)) != 0) {
		manager_config_free(&d.cfg);
		free(abs_path);
		return rc;
	}
	signal(SIGPIPE, SIG_IGN);
	if (evthread_use_pthreads() < 0)
		panic("libevent has no pthreads support");

	rc = start(&d);
	if (rc == 0) {
		event_base_dispatch(d.base);
		log_info("manager.stopped", "forced=%s", d.forced ? "yes" : "no");
	}
	stop(&d);
	free(abs_path);
	return rc == 0 ? 0 : 1;
}

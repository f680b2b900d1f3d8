/*
 * lazaret-gw — the gateway: an SMTP filtering relay. It accepts mail, judges each
 * message on a worker thread (pipeline.c) and answers the client only once every
 * destination of the message took its copy (250), or 451 when one could not: it
 * keeps no queue of its own and loses nothing. It runs in front of groupware on
 * its own, or as a Postfix content filter.
 *
 * Life of the process:
 *   start     read config and compile the rules (a bad filter file: refuse to
 *             start, naming FILE:LINE:COLUMN), bind SMTP, drop root for
 *             [gateway] user (privdrop.c), open the local store,
 *             start the release engine (local quarantines → next hop), the admin
 *             API, expiry, the safelist sync and the hello to the manager's
 *             registry (gw_hello.c, every hello_interval), then run the loop
 *   SIGHUP    reload config and rules whole, or keep the old ones and log why;
 *             sync the safelists and say hello now
 *   SIGTERM   stop accepting; idle sessions get 421; messages being judged are
 *             finished and answered (bounded by shutdown_grace); exit 0
 * Session hooks on the loop thread: check_connect (released-mail addresses, HAT
 * reject), check_mail (HAT throttle), check_rcpt (RAT), xforward_allowed
 * ([listener] xforward_from). HAT and the released-mail check judge the connecting
 * client; a forwarded (XFORWARD) client address stands for the original sender in
 * filters, X-Lazaret-Client-Address and the Received line.
 * Not for: the decisions about a message (pipeline.c) or keeping mail.
 */
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/acl.h"
#include "common/clock.h"
#include "common/confparse.h"
#include "common/daemon_args.h"
#include "common/fdlimit.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/loopq.h"
#include "common/privdrop.h"
#include "common/workpool.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "gateway/engine_net.h"
#include "gateway/gw_backfill.h"
#include "gateway/gw_config.h"
#include "gateway/gw_events.h"
#include "gateway/gw_hello.h"
#include "gateway/gw_managed.h"
#include "gateway/gw_migrate.h"
#include "gateway/hat.h"
#include "gateway/pipeline.h"
#include "gateway/rat.h"
#include "gateway/slbl_cache.h"
#include "http/http_server.h"
#include "mime/msgmeta.h"
#include "api/api.h"
#include "api/api_reports.h"
#include "api/api_tracking.h"
#include "quarantine/expiry.h"
#include "quarantine/metrics.h"
#include "quarantine/release.h"
#include "quarantine/track_retention.h"
#include "smtp/smtp_session.h"
#include "store/store.h"

/* How often shutdown checks whether the last sessions and messages are done. */
#define GW_SHUTDOWN_POLL_MS 50
/* After the grace period, how long to wait for messages already being relayed. */
#define GW_RELAY_WAIT_MS 10000
/* Release engine threads for the local quarantines (the next hop must not be flooded). */
#define GW_RELEASE_CONNECTIONS 2
/* Descriptors kept from HTTP for the store, the log, the safelist sync, releases. */
#define GW_FD_RESERVE_BASE 64
/* A safelist sync may take this long before it gives up (the next one retries). */
#define GW_SYNC_TIMEOUT_MS 30000
#define GW_SLBL_CACHE_FILE "slbl.cache"
/* A hello waits this long for the manager; the next one comes at hello_interval. */
#define GW_HELLO_TIMEOUT_MS 10000
/* The start-up check of the manager's PVO listener: a connect, no longer than this. */
#define GW_CENTRAL_PROBE_TIMEOUT_MS 5000

/* Rollups kept on the gateway with central reporting, per granularity (RP3). */
#define GW_REPORTING_CENTRAL_KEEP_MS (7 * 86400000LL)

struct gw {
	const char *conf_path;
	struct pipeline_rules *rules; /* current; loop thread */
	struct event_base *base;
	struct smtp_server *smtp;
	struct store *st;
	struct slbl_cache *slbl;
	struct gw_events *events;		 /* message tracking; NULL: off */
	struct track_retention *track_retention; /* the local tracking store's retention */
	struct release *release;
	struct gw_migrate *migrate; /* the local PVO quarantines' move to the manager */
	bool reload_refused;	    /* a reload waited for the migration's end */
	struct api *api;
	struct workpool *wp;	/* pipeline */
	struct workpool *maint; /* safelist sync, expiry */
	struct loopq *q;
	struct hat_throttle *throttle;
	atomic_uint inflight;
	atomic_bool sync_running, expiry_running, hello_running, managed_running;
	struct event *sig_term, *sig_int, *sig_hup, *shutdown_timer, *sync_timer, *expiry_timer,
	    *hello_timer, *managed_timer, *capacity_timer;
	uint64_t opened;	      /* connections since the last capacity event (loop thread) */
	bool tracking_central;	      /* events go to the manager (the mode at start) */
	bool reporting_central;	      /* the manager reports on them (the mode at start) */
	struct gw_backfill *backfill; /* [reporting] backfill under way, or NULL */
	int64_t shutdown_started;
	bool forced;
};

/* What check_connect decided for a session. */
struct gw_session {
	bool released;
	enum hat_action action;
	unsigned limit;
	char policy[64];
	bool connection_recorded; /* its "connection" event (gw_events.h) */
};

struct gw_job {
	struct gw *gw;
	struct smtp_session *session;
	struct smtp_message *msg;
	struct pipeline_rules *rules;
	bool released;
	char id[IDS_UUID_LEN + 1];
	char session_id[16];
	char client_ip[64];
	char reply[1024];
};

static void usage(FILE *f)
{
	fprintf(f, "usage: lazaret-gw -c FILE [--check-config | --migration-plan]\n"
		   "       lazaret-gw --version | --help\n"
		   "\n"
		   "  -c, --config FILE   configuration file (see docs/GATEWAY.md)\n"
		   "      --check-config  validate the configuration and the rules it names, and\n"
		   "                      exit (0 ok, 1 errors)\n"
		   "      --migration-plan  print what enabling [centralized_pvo] moves where\n"
		   "                      (the manager's mapping, the local store read only)\n"
		   "  -V, --version       print the version and exit\n"
		   "  -h, --help          this text\n"
		   "\n"
		   "Runs in the foreground and logs to stderr. SIGTERM stops gracefully,\n"
		   "SIGHUP reloads the configuration and the content filters.\n");
}

static void log_lines(enum log_level lvl, const char *event, const char *text)
{
	if (text == NULL)
		return;
	char *copy = xstrdup(text);
	char q[1024];
	for (char *save = NULL, *l = strtok_r(copy, "\n", &save); l != NULL;
	     l = strtok_r(NULL, "\n", &save))
		log_event(lvl, event, "message=%s", log_quote(q, sizeof(q), l));
	free(copy);
}

/*
 * Loads the configuration and compiles its rules. 0 with *out, else -errno with
 * *err the lines to show (caller frees). *warnings as gw_config_load.
 */
static int gw_load(const char *path, struct pipeline_rules **out, char **err, char **warnings)
{
	struct gw_config cfg;
	int rc = gw_config_load(path, &cfg, err, warnings);
	if (rc < 0)
		return rc;
	if (cfg.managed) {
		/* the manager's settings as last pulled, over the file's */
		struct gw_managed m;
		int mrc = gw_managed_load(cfg.data_dir, &m);
		if (mrc == 0)
			gw_managed_apply(&cfg, &m);
		else if (mrc != -ENOENT)
			log_warn("gw.managed_cache_unreadable", "dir=%s error=\"%s\"", cfg.data_dir,
				 strerror(-mrc));
		gw_managed_clear(&m);
	}
	rc = pipeline_rules_build(&cfg, out, err);
	if (rc < 0 && warnings != NULL) {
		free(*warnings);
		*warnings = NULL;
	}
	return rc;
}

/* ---- SMTP session hooks (loop thread) ---- */

static int gw_check_connect(void *ctx, struct smtp_session *s, char *reply, size_t replylen)
{
	struct gw *gw = ctx;
	const struct gw_config *cfg = &gw->rules->cfg;
	const struct sockaddr *sa = smtp_session_peer_addr(s);
	struct gw_session *gs = xcalloc(1, sizeof(*gs));
	gw->opened++;
	if (cfg->manager_addresses != NULL && acl_match(cfg->manager_addresses, sa)) {
		/* Released mail from the manager skips HAT, RAT and every scan. */
		gs->released = true;
		snprintf(gs->policy, sizeof(gs->policy), "released");
		smtp_session_set_data(s, gs);
		log_info("gw.connect", "session=%s client=%s policy=released", smtp_session_id(s),
			 smtp_session_peer(s));
		return 0;
	}
	const struct hat_policy *pol = hat_match(cfg->hat_policies, cfg->nhat_policies, sa);
	gs->action = pol != NULL ? pol->action : cfg->hat_default_action;
	gs->limit = pol != NULL ? pol->limit : cfg->hat_default_limit;
	snprintf(gs->policy, sizeof(gs->policy), "%s", pol != NULL ? pol->name : "default");
	if (gs->action == HAT_REJECT) {
		log_info("gw.hat_reject", "session=%s client=%s policy=%s", smtp_session_id(s),
			 smtp_session_peer(s), gs->policy);
		snprintf(reply, replylen, "554 5.7.1 %s: Access denied", cfg->hostname);
		if (gw_events_rejected_connections(gw->events))
			gw_events_refused(gw->events, smtp_session_id(s), smtp_session_peer(s),
					  gs->policy, "hat", reply);
		free(gs);
		return -1;
	}
	smtp_session_set_data(s, gs);
	log_debug("gw.connect", "session=%s client=%s policy=%s", smtp_session_id(s),
		  smtp_session_peer(s), gs->policy);
	return 0;
}

/*
 * A connection the listener refused before HAT (its connection limits): recorded
 * as HAT's rejects are, when asked. "policy" is HAT's own reject (gw_check_connect
 * records it with its policy name).
 */
static void gw_on_refused(void *ctx, const char *reason, const char *peer)
{
	struct gw *gw = ctx;
	if (strcmp(reason, "policy") != 0 && gw_events_rejected_connections(gw->events))
		gw_events_refused(gw->events, NULL, peer, NULL, reason, NULL);
}

static void gw_on_close(void *ctx, struct smtp_session *s)
{
	free(smtp_session_data(s));
	smtp_session_set_data(s, NULL);
}

/* The session's "connection" event, once, at its first MAIL (HELO and TLS are known). */
static void gw_record_connection(struct gw *gw, struct smtp_session *s, struct gw_session *gs)
{
	if (gw->events == NULL || gs == NULL || gs->connection_recorded)
		return;
	gs->connection_recorded = true;
	const char *version = NULL, *cipher = NULL;
	smtp_session_tls_info(s, &version, &cipher);
	gw_events_connection(gw->events, smtp_session_id(s), smtp_session_peer(s),
			     smtp_session_helo(s), version, cipher, gs->policy,
			     gs->released		  ? "released"
			     : gs->action == HAT_THROTTLE ? "throttle"
							  : "accept");
}

static int gw_check_mail(void *ctx, const char *sender, char *reply, size_t replylen)
{
	struct smtp_session *s = ctx;
	struct gw *gw = smtp_session_server_ctx(s);
	struct gw_session *gs = smtp_session_data(s);
	gw_record_connection(gw, s, gs);
	if (gs == NULL || gs->released || gs->action != HAT_THROTTLE)
		return 0;
	const char *ip = smtp_session_peer(s);
	if (hat_throttle_allows(gw->throttle, ip, gs->limit, clock_now_ms()))
		return 0;
	log_info("gw.hat_throttle", "session=%s client=%s policy=%s limit=%u", smtp_session_id(s),
		 ip, gs->policy, gs->limit);
	gw_events_rate_limit(gw->events, smtp_session_id(s), ip, gs->policy, gs->limit);
	snprintf(reply, replylen, "452 4.7.0 Error: too many messages from %s, try again later",
		 ip);
	return -1;
}

static int gw_check_rcpt(void *ctx, const char *rcpt, char *reply, size_t replylen)
{
	struct smtp_session *s = ctx;
	struct gw *gw = smtp_session_server_ctx(s);
	struct gw_session *gs = smtp_session_data(s);
	if (gs != NULL && gs->released) {
		gw_events_rcpt(gw->events, smtp_session_id(s), smtp_session_peer(s), rcpt, true,
			       NULL);
		return 0;
	}
	if (rat_check_reply(gw->rules->rat, rcpt, reply, replylen)) {
		gw_events_rcpt(gw->events, smtp_session_id(s), smtp_session_peer(s), rcpt, true,
			       NULL);
		return 0;
	}
	log_info("gw.rat_reject", "session=%s client=%s rcpt=<%s>", smtp_session_id(s),
		 smtp_session_peer(s), rcpt);
	gw_events_rcpt(gw->events, smtp_session_id(s), smtp_session_peer(s), rcpt, false, reply);
	return -1;
}

/* XFORWARD only from the MTA in front of us (a Postfix content_filter transport). */
static bool gw_xforward_allowed(void *ctx)
{
	struct smtp_session *s = ctx;
	struct gw *gw = smtp_session_server_ctx(s);
	const struct acl *from = gw->rules->cfg.xforward_from;
	return from != NULL && acl_match(from, smtp_session_peer_addr(s));
}

/*
 * The original client as the forwarding MTA reported it (XFORWARD) takes the place
 * of the connecting one for everything about the message: its address for filters,
 * X-Lazaret-Client-Address and Received, its HELO and protocol for Received and
 * the anti-spam engines.
 */
static void gw_apply_xforward(struct gw_job *job, struct smtp_session *s)
{
	struct smtp_envelope *env = &job->msg->env;
	if (env->xforward_addr == NULL && env->xforward_helo == NULL && env->xforward_proto == NULL)
		return;
	if (env->xforward_addr != NULL)
		snprintf(job->client_ip, sizeof(job->client_ip), "%s", env->xforward_addr);
	if (env->xforward_helo != NULL) {
		free(env->helo);
		env->helo = xstrdup(env->xforward_helo);
	}
	if (env->xforward_proto != NULL)
		env->esmtp = strncmp(env->xforward_proto, "ESMTP", 5) == 0;
	char q[256];
	log_info("gw.xforward", "id=%s session=%s client=%s addr=%s name=%s helo=%s", job->id,
		 job->session_id, smtp_session_peer(s), job->client_ip,
		 env->xforward_name != NULL ? env->xforward_name : "-",
		 log_quote(q, sizeof(q), env->helo != NULL ? env->helo : "-"));
}

/* ---- messages ---- */

static void gw_answer(void *arg)
{
	struct gw_job *job = arg;
	smtp_session_message_done(job->session, job->reply);
	log_info("gw.reply", "id=%s session=%s reply=\"%s\"", job->id, job->session_id, job->reply);
	atomic_fetch_sub(&job->gw->inflight, 1);
	pipeline_rules_unref(job->rules);
	smtp_message_free(job->msg);
	free(job);
}

/* The reply may go out (its events are on disk): to the loop's thread. */
static void gw_settled(void *arg)
{
	struct gw_job *job = arg;
	loopq_post(job->gw->q, gw_answer, job);
}

static void gw_run(void *arg)
{
	struct gw_job *job = arg;
	struct pipeline_job pj = {
	    .rules = job->rules,
	    .st = job->gw->st,
	    .slbl = job->gw->slbl,
	    .id = job->id,
	    .session_id = job->session_id,
	    .client_ip = job->client_ip,
	    .released = job->released,
	    .msg = job->msg,
	    .events = job->gw->events,
	};
	pipeline_run(&pj, job->reply, sizeof(job->reply));
	/* a 250 only once the message's events are on disk */
	gw_events_settle(job->gw->events, job->id, job->reply, gw_settled, job);
}

static void gw_on_message(void *ctx, struct smtp_session *s, struct smtp_message *m)
{
	struct gw *gw = ctx;
	struct gw_session *gs = smtp_session_data(s);
	struct gw_job *job = xcalloc(1, sizeof(*job));
	job->gw = gw;
	job->session = s;
	job->msg = m;
	job->rules = pipeline_rules_ref(gw->rules);
	job->released = gs != NULL && gs->released;
	ids_uuidv7(clock_now_ms(), job->id);
	snprintf(job->session_id, sizeof(job->session_id), "%s", smtp_session_id(s));
	snprintf(job->client_ip, sizeof(job->client_ip), "%s", smtp_session_peer(s));
	/* HAT counts the connecting client, whatever it forwards. */
	if (gs != NULL && !gs->released && gs->action == HAT_THROTTLE)
		hat_throttle_count(gw->throttle, job->client_ip, clock_now_ms());
	if (!job->released)
		gw_apply_xforward(job, s);
	atomic_fetch_add(&gw->inflight, 1);
	workpool_submit(gw->wp, gw_run, job);
}

/* ---- maintenance: safelist sync and expiry (one thread) ---- */

struct gw_maint_job {
	struct gw *gw;
	struct pipeline_rules *rules;
};

static void gw_sync_run(void *arg)
{
	struct gw_maint_job *mj = arg;
	const struct gw_config *cfg = &mj->rules->cfg;
	int64_t before = slbl_cache_version(mj->gw->slbl);
	int rc = slbl_cache_sync_ca(mj->gw->slbl, cfg->api_url, cfg->api_token, cfg->api_ca,
				    GW_SYNC_TIMEOUT_MS);
	if (rc < 0)
		log_warn("gw.slbl_sync_failed", "url=%s error=\"%s\"", cfg->api_url, strerror(-rc));
	else
		log_info("gw.slbl_synced", "version=%lld previous=%lld",
			 (long long)slbl_cache_version(mj->gw->slbl), (long long)before);
	atomic_store(&mj->gw->sync_running, false);
	pipeline_rules_unref(mj->rules);
	free(mj);
}

static void gw_sync_now(struct gw *gw)
{
	if (gw->slbl == NULL || !gw->rules->cfg.slbl_enabled)
		return;
	bool expected = false;
	if (!atomic_compare_exchange_strong(&gw->sync_running, &expected, true))
		return;
	struct gw_maint_job *mj = xcalloc(1, sizeof(*mj));
	mj->gw = gw;
	mj->rules = pipeline_rules_ref(gw->rules);
	workpool_submit(gw->maint, gw_sync_run, mj);
}

static void gw_expiry_run(void *arg)
{
	struct gw_maint_job *mj = arg;
	const struct gw_config *cfg = &mj->rules->cfg;
	/* The local spam quarantine keeps its own period; Policy, Virus ... share one. */
	const struct expiry_retention keep[] = {
	    {"spam", cfg->local_spam_delete_after_ms},
	    {NULL, cfg->quarantines_delete_after_ms},
	};
	uint64_t expired_total = 0, purged_total = 0;
	(void)expiry_run_once(mj->gw->st, keep, 2, clock_now_ms(), &expired_total, &purged_total);
	if (expired_total > 0 || purged_total > 0)
		log_info("gw.expiry", "expired=%llu purged=%llu", (unsigned long long)expired_total,
			 (unsigned long long)purged_total);
	atomic_store(&mj->gw->expiry_running, false);
	pipeline_rules_unref(mj->rules);
	free(mj);
}

static void gw_expiry_tick(evutil_socket_t fd, short what, void *arg)
{
	struct gw *gw = arg;
	bool expected = false;
	if (!atomic_compare_exchange_strong(&gw->expiry_running, &expected, true))
		return;
	struct gw_maint_job *mj = xcalloc(1, sizeof(*mj));
	mj->gw = gw;
	mj->rules = pipeline_rules_ref(gw->rules);
	workpool_submit(gw->maint, gw_expiry_run, mj);
}

static void gw_sync_tick(evutil_socket_t fd, short what, void *arg)
{
	gw_sync_now(arg);
}

/* The hello to the manager's gateway registry: logged either way, never fatal. */
static void gw_hello_run(void *arg)
{
	struct gw_maint_job *mj = arg;
	const struct gw_config *cfg = &mj->rules->cfg;
	unsigned central = 0;
	if (cfg->central_pvo_enabled)
		central |= STORE_CENTRAL_PVO;
	if (mj->gw->tracking_central)
		central |= STORE_CENTRAL_TRACKING;
	/* the manager reports on what it gets, unless a level turned that off */
	if (mj->gw->reporting_central && cfg->managed_reporting != 0)
		central |= STORE_CENTRAL_REPORTING;
	char *body =
	    gw_hello_body(cfg->name, LAZARET_VERSION, cfg->group, cfg->cluster, (int)central,
			  mj->rules->outbreak != NULL ? mj->rules->outbreak_version : NULL);
	struct gw_hello_answer ans;
	int rc = gw_hello_send(cfg->api_url, cfg->api_token, cfg->api_ca, body, GW_HELLO_TIMEOUT_MS,
			       &ans);
	char q[512];
	if (rc == 0) {
		log_info("gw.hello", "url=%s state=%s group=%s cluster=%s", cfg->api_url, ans.state,
			 ans.group != NULL ? ans.group : "-",
			 ans.cluster != NULL ? ans.cluster : "-");
	} else {
		log_warn(
		    "gw.hello_failed", "url=%s status=%ld error=%s", cfg->api_url, ans.status,
		    log_quote(q, sizeof(q), ans.message != NULL ? ans.message : strerror(-rc)));
	}
	gw_hello_answer_clear(&ans);
	free(body);
	atomic_store(&mj->gw->hello_running, false);
	pipeline_rules_unref(mj->rules);
	free(mj);
}

static void gw_hello_now(struct gw *gw)
{
	if (gw->rules->cfg.api_url == NULL)
		return;
	bool expected = false;
	if (!atomic_compare_exchange_strong(&gw->hello_running, &expected, true))
		return;
	struct gw_maint_job *mj = xcalloc(1, sizeof(*mj));
	mj->gw = gw;
	mj->rules = pipeline_rules_ref(gw->rules);
	workpool_submit(gw->maint, gw_hello_run, mj);
}

/* ---- a managed gateway's settings (gw_managed.c) ---- */

static void gw_reload_now(struct gw *gw, bool pull);

/*
 * Pulls the settings and keeps them when they changed and their rules compile:
 * 1 when they changed, 0 when not (or the manager could not be asked: the
 * gateway runs on what it has), -1 when they were refused. Any thread.
 */
static int gw_managed_sync(const struct gw_config *cfg)
{
	struct gw_managed got, have;
	char *why = NULL;
	int rc = gw_managed_fetch(cfg, GW_HELLO_TIMEOUT_MS, &got, &why);
	char q[512];
	if (rc < 0) {
		log_warn("gw.managed_sync_failed",
			 "url=%s error=%s reason=\"running on the settings kept in %s\"",
			 cfg->api_url, log_quote(q, sizeof(q), why != NULL ? why : strerror(-rc)),
			 cfg->data_dir);
		free(why);
		gw_managed_clear(&got);
		return 0;
	}
	int changed = 0;
	int lrc = gw_managed_load(cfg->data_dir, &have);
	if (lrc < 0 || !gw_managed_equal(&got, &have)) {
		char *err = NULL;
		if (gw_managed_check(cfg->path, &got, &err) < 0 ||
		    gw_managed_save(cfg->data_dir, &got, &err) < 0) {
			log_error("gw.managed_refused",
				  "error=%s reason=\"the settings in use stay\"",
				  log_quote(q, sizeof(q), err != NULL ? err : "?"));
			changed = -1;
		} else {
			log_info("gw.managed_changed", "pvo=%d reporting=%d tracking=%d filters=%s",
				 got.pvo, got.reporting, got.tracking,
				 got.filters == NULL	  ? "unset"
				 : got.filters[0] == '\0' ? "none"
							  : "set");
			changed = 1;
		}
		free(err);
	}
	gw_managed_clear(&got);
	gw_managed_clear(&have);
	return changed;
}

static void gw_managed_changed(void *arg)
{
	struct gw *gw = arg;
	if (gw->shutdown_timer == NULL)
		gw_reload_now(gw, false);
}

static void gw_managed_run(void *arg)
{
	struct gw_maint_job *mj = arg;
	if (gw_managed_sync(&mj->rules->cfg) > 0)
		loopq_post(mj->gw->q, gw_managed_changed, mj->gw);
	atomic_store(&mj->gw->managed_running, false);
	pipeline_rules_unref(mj->rules);
	free(mj);
}

static void gw_managed_now(struct gw *gw)
{
	if (!gw->rules->cfg.managed)
		return;
	bool expected = false;
	if (!atomic_compare_exchange_strong(&gw->managed_running, &expected, true))
		return;
	struct gw_maint_job *mj = xcalloc(1, sizeof(*mj));
	mj->gw = gw;
	mj->rules = pipeline_rules_ref(gw->rules);
	workpool_submit(gw->maint, gw_managed_run, mj);
}

static void gw_managed_tick(evutil_socket_t fd, short what, void *arg)
{
	gw_managed_now(arg);
}

/*
 * Whether the manager's PVO listener takes connections, said in the log at start
 * and on SIGHUP. Only a hint for the operator: the gateway runs either way, and
 * each message to be quarantined while the manager cannot take it is answered 451.
 */
static void gw_central_probe_run(void *arg)
{
	struct gw_maint_job *mj = arg;
	const char *hp = mj->rules->central_hostport;
	int fd = -1;
	int rc = engine_net_connect(hp, engine_net_deadline(GW_CENTRAL_PROBE_TIMEOUT_MS), &fd);
	if (rc < 0) {
		log_warn("gw.central_pvo_unreachable",
			 "host=%s error=\"%s\" reason=\"messages to be quarantined are answered "
			 "451 until the manager takes them\"",
			 hp, strerror(-rc));
	} else {
		close(fd);
		log_info("gw.central_pvo", "host=%s reachable=yes", hp);
	}
	pipeline_rules_unref(mj->rules);
	free(mj);
}

/*
 * PV8: with [centralized_pvo] off, the local Virus, Outbreak and Unclassified
 * quarantines and every one a content filter or outbreak rule names exist (with
 * their default settings: the expiry is [quarantines] delete_after), also before
 * they take their first message — after centralization is turned off too.
 */
static void gw_local_quarantine_ensure(const char *name, void *arg)
{
	struct gw *gw = arg;
	struct store_quarantine_settings q = {.name = name, .default_action = "delete"};
	int rc = store_quarantine_put(gw->st, &q, true, clock_now_ms());
	char quoted[160];
	if (rc == 0)
		log_info("gw.local_quarantine_created", "name=%s",
			 log_quote(quoted, sizeof(quoted), name));
	else if (rc != -EEXIST)
		log_error("gw.local_quarantine_failed", "name=%s error=\"%s\"",
			  log_quote(quoted, sizeof(quoted), name), strerror(-rc));
}

static void gw_local_quarantines_ensure(struct gw *gw)
{
	if (gw->rules->central_hostport == NULL)
		pipeline_rules_each_pvo_quarantine(gw->rules, gw_local_quarantine_ensure, gw);
}

static void gw_central_probe_now(struct gw *gw)
{
	if (gw->rules->central_hostport == NULL)
		return;
	struct gw_maint_job *mj = xcalloc(1, sizeof(*mj));
	mj->gw = gw;
	mj->rules = pipeline_rules_ref(gw->rules);
	workpool_submit(gw->maint, gw_central_probe_run, mj);
}

static void gw_hello_tick(evutil_socket_t fd, short what, void *arg)
{
	gw_hello_now(arg);
}

static void gw_arm(struct event *ev, int64_t ms)
{
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	event_del(ev);
	event_add(ev, &tv);
}

/* [reporting] capacity_interval: the "capacity" event (loop thread). */
static void gw_capacity_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct gw *gw = arg;
	gw_events_capacity(gw->events, gw->opened, smtp_server_sessions(gw->smtp));
	gw->opened = 0;
}

/* ---- admin API additions ---- */

/*
 * GET /api/v1/reports/{report} with central reporting (RP3): the manager has
 * the reports; the gateway's own rollups stay (a week of them) but are not
 * shown until [reporting] mode = local again.
 */
static void gw_reports_central(struct http_server_request *req, void *arg)
{
	struct gw *gw = arg;
	if (!api_require_role(gw->api, req, API_ROLE_ADMIN))
		return;
	http_server_reply_error(req, 409,
				"reporting is central: this gateway's reports are on the manager "
				"([reporting] mode = central)");
}

/*
 * POST /api/v1/quarantines/spam/delete-all — "Delete All" of the local spam
 * quarantine, offered only while it is disabled and still holds messages.
 */
static void gw_delete_all(struct http_server_request *req, void *arg)
{
	struct gw *gw = arg;
	if (!api_require_role(gw->api, req, API_ROLE_ADMIN))
		return;
	if (gw->rules->cfg.local_spam_enabled) {
		http_server_reply_error(req, 409,
					"the local spam quarantine is enabled: Delete All is "
					"offered only while it is disabled");
		return;
	}
	struct store_quarantine_stats *v = NULL;
	size_t n = 0;
	uint64_t held = 0;
	int rc = store_quarantines(gw->st, &v, &n);
	if (rc < 0) {
		http_server_reply_error(req, 500, "the quarantine store failed (%s)",
					strerror(-rc));
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (strcmp(v[i].name, "spam") == 0)
			held = v[i].messages;
	}
	store_quarantine_stats_free(v, n);
	if (held == 0) {
		http_server_reply_error(req, 409,
					"the local spam quarantine holds no messages: there is "
					"nothing to delete");
		return;
	}
	struct store_filter f = {.quarantine = "spam"};
	int changed = 0;
	rc = store_delete_matching(gw->st, &f, clock_now_ms(), &changed);
	if (rc < 0) {
		http_server_reply_error(req, 500, "the quarantine store failed (%s)",
					strerror(-rc));
		return;
	}
	log_info("gw.spam_delete_all", "recipients=%d peer=%s", changed,
		 http_server_request_peer(req));
	json_t *body = json_object();
	json_object_set_new(body, "quarantine", json_string("spam"));
	json_object_set_new(body, "deleted", json_integer(changed));
	http_server_reply_json(req, 200, body);
}

static void gw_http_refused(void *arg, const char *reason)
{
	metrics_http_refused(reason);
}

/*
 * The admin API's caps. Its descriptor reserve covers the SMTP listener's cap, a
 * relay and a scanner connection per worker, and GW_FD_RESERVE_BASE for the rest,
 * so a flood of HTTP connections never starves the SMTP listener.
 */
static void gw_http_limits_from(const struct gw_config *cfg, struct http_server_conn_limits *l)
{
	http_config_keys_conn_limits(
	    &gw_config_http, cfg, cfg->max_connections + 2 * cfg->workers + GW_FD_RESERVE_BASE, l);
}

static void api_config_from(const struct gw_config *cfg, struct api_config *ac)
{
	memset(ac, 0, sizeof(*ac));
	ac->listen = cfg->http_listen;
	ac->admin_token = cfg->admin_token;
	ac->manager_name = cfg->name;
	ac->max_body = cfg->http_max_body;
	ac->delete_after_ms = cfg->local_spam_delete_after_ms;
}

static void release_config_from(const struct gw_config *cfg, struct release_config *rc)
{
	memset(rc, 0, sizeof(*rc));
	rc->manager_name = cfg->name;
	rc->primary_host = cfg->next_hop;
	rc->source_address = cfg->source_address;
	rc->helo_name = cfg->hostname;
	rc->max_connections = GW_RELEASE_CONNECTIONS;
	rc->timeout_ms = cfg->delivery_timeout_ms;
	rc->retry_min_ms = 60 * 1000;
	rc->retry_max_ms = 3600 * 1000;
	rc->give_up_after_ms = 5LL * 86400 * 1000;
}

/* ---- signals ---- */

static void gw_shutdown_poll(evutil_socket_t fd, short what, void *arg)
{
	struct gw *gw = arg;
	int64_t elapsed = clock_mono_ms() - gw->shutdown_started;
	unsigned sessions = smtp_server_sessions(gw->smtp);
	unsigned inflight = atomic_load(&gw->inflight);
	int64_t grace = gw->rules->cfg.shutdown_grace_ms;
	if (!gw->forced && elapsed > grace) {
		log_warn("gw.shutdown_forced", "sessions=%u inflight=%u", sessions, inflight);
		smtp_server_close_all(gw->smtp);
		gw->forced = true;
	}
	if ((sessions == 0 && inflight == 0) || elapsed > grace + GW_RELAY_WAIT_MS)
		event_base_loopexit(gw->base, NULL);
}

static void gw_terminate(evutil_socket_t sig, short what, void *arg)
{
	struct gw *gw = arg;
	if (gw->shutdown_timer != NULL)
		return;
	log_info("gw.stopping", "signal=%d sessions=%u inflight=%u", (int)sig,
		 smtp_server_sessions(gw->smtp), atomic_load(&gw->inflight));
	gw->shutdown_started = clock_mono_ms();
	smtp_server_shutdown(gw->smtp);
	api_stop(gw->api);
	gw->api = NULL;
	event_del(gw->sync_timer);
	event_del(gw->expiry_timer);
	event_del(gw->hello_timer);
	event_del(gw->managed_timer);
	event_del(gw->capacity_timer);
	gw->shutdown_timer = event_new(gw->base, -1, EV_PERSIST, gw_shutdown_poll, gw);
	struct timeval tv = {0, GW_SHUTDOWN_POLL_MS * 1000};
	event_add(gw->shutdown_timer, &tv);
}

/*
 * Whether next changes the quarantine or filter settings of cur: [quarantines],
 * [filters] (the file's text too), [outbreak], [centralized_pvo].
 */
static bool gw_pvo_settings_differ(const struct pipeline_rules *cur,
				   const struct pipeline_rules *next)
{
	const struct gw_config *o = &cur->cfg, *c = &next->cfg;
	return o->quarantines_delete_after_ms != c->quarantines_delete_after_ms ||
	       o->purge_interval_ms != c->purge_interval_ms ||
	       !str_same(o->filters_file, c->filters_file) ||
	       strcmp(cur->filters_digest, next->filters_digest) != 0 ||
	       !str_same(o->filters_undecided, c->filters_undecided) ||
	       !str_same(o->outbreak_rules, c->outbreak_rules) ||
	       !str_same(cur->outbreak_version, next->outbreak_version) ||
	       o->central_pvo_enabled != c->central_pvo_enabled ||
	       !str_same(o->central_pvo_host, c->central_pvo_host) ||
	       o->central_pvo_port != c->central_pvo_port ||
	       !str_same(o->central_pvo_notify, c->central_pvo_notify);
}

/*
 * Reloads the configuration (with the managed settings kept on disk); pull: then
 * pulls the manager's settings, and reloads again when they changed.
 */
static void gw_reload_now(struct gw *gw, bool pull)
{
	struct pipeline_rules *next = NULL;
	char *err = NULL, *warnings = NULL;
	if (gw_load(gw->conf_path, &next, &err, &warnings) < 0) {
		/* The old configuration and rules stay in force. */
		log_lines(LOG_LEVEL_ERROR, "gw.reload_failed", err);
		free(err);
		gw_sync_now(gw);
		if (pull)
			gw_managed_now(gw);
		return;
	}
	log_lines(LOG_LEVEL_WARN, "gw.config_warning", warnings);
	free(warnings);
	const struct gw_config *o = &gw->rules->cfg, *c = &next->cfg;
	uint64_t mdone = 0, mtotal = 0;
	bool refused = false;
	if (gw_migrate_running(gw->migrate, &mdone, &mtotal) &&
	    gw_pvo_settings_differ(gw->rules, next)) {
		/* PV6: the quarantine and filter settings stay while messages move */
		log_warn("gw.reload_refused", "reason=\"migration running (%llu/%llu)\"",
			 (unsigned long long)mdone, (unsigned long long)mtotal);
		gw->reload_refused = true;
		refused = true;
	}
	if (!str_same(o->listen, c->listen) || !str_same(o->http_listen, c->http_listen) ||
	    !str_same(o->data_dir, c->data_dir) || !str_same(o->tls_cert, c->tls_cert) ||
	    o->workers != c->workers || o->slbl_enabled != c->slbl_enabled ||
	    !str_same(o->user, c->user))
		log_warn("gw.reload_partial",
			 "reason=\"listen addresses, data_dir, TLS files, workers, user and "
			 "safelist_blocklist change on restart only\"");
	log_set_level_name(c->log_level);
	struct release_config rc;
	release_config_from(c, &rc);
	release_reconfigure(gw->release, &rc);
	gw_events_reconfigure(gw->events, c);
	track_retention_reconfigure(gw->track_retention, c->tracking_retention_ms,
				    c->purge_interval_ms);
	if (!str_same(o->tracking_mode, c->tracking_mode) ||
	    !str_same(o->reporting_mode, c->reporting_mode) ||
	    o->events_spool_max != c->events_spool_max ||
	    !str_same(o->events_sync, c->events_sync) ||
	    o->tracking_rejected_connections != c->tracking_rejected_connections)
		log_warn("gw.reload_partial",
			 "reason=\"[tracking], [reporting] and [events] change on restart "
			 "only\"");
	if (gw->api != NULL) {
		struct api_config ac;
		api_config_from(c, &ac);
		/* The listener keeps its address. */
		ac.listen = o->http_listen;
		api_reconfigure(gw->api, &ac);
		struct http_server_conn_limits hl;
		gw_http_limits_from(c, &hl);
		http_server_set_connection_limits(api_http(gw->api), &hl);
	}
	gw_arm(gw->expiry_timer, c->purge_interval_ms);
	gw_arm(gw->sync_timer, c->sync_interval_ms);
	gw_arm(gw->hello_timer, c->hello_interval_ms);
	if (gw->events != NULL)
		gw_arm(gw->capacity_timer, c->capacity_interval_ms);
	if (c->managed)
		gw_arm(gw->managed_timer, c->managed_sync_interval_ms);
	else
		event_del(gw->managed_timer);
	if (refused) {
		/* the rest applied above; the rules messages are judged by stay */
		pipeline_rules_unref(next);
		gw_sync_now(gw);
		gw_hello_now(gw);
		if (pull)
			gw_managed_now(gw);
		return;
	}
	gw->reload_refused = false;
	struct pipeline_rules *old = gw->rules;
	gw->rules = next;
	pipeline_rules_unref(old);
	c = &next->cfg;
	log_info("gw.reloaded", "next_hop=%s filters=%s outbreak=%s central_pvo=%s", c->next_hop,
		 c->filters_file != NULL ? c->filters_file : "none",
		 next->outbreak_version != NULL ? next->outbreak_version : "none",
		 next->central_hostport != NULL ? next->central_hostport : "no");
	gw_sync_now(gw);
	/* the name, group, cluster or what is centralized may have changed: say so now */
	gw_hello_now(gw);
	gw_central_probe_now(gw);
	gw_local_quarantines_ensure(gw);
	gw_migrate_start(gw->migrate, c, next->central_hostport);
	if (pull)
		gw_managed_now(gw);
}

/* A reload refused while the migration ran is done now that it has finished. */
static void gw_migration_finished_loop(void *arg)
{
	struct gw *gw = arg;
	if (gw->reload_refused && gw->shutdown_timer == NULL) {
		log_info("gw.reload_after_migration",
			 "reason=\"a reload waited for the migration\"");
		gw_reload_now(gw, false);
	}
}

static void gw_migration_finished(void *arg)
{
	struct gw *gw = arg;
	loopq_post(gw->q, gw_migration_finished_loop, gw);
}

static void gw_reload(evutil_socket_t sig, short what, void *arg)
{
	gw_reload_now(arg, true);
}

/* The backfill's thread: the manager has the old rollups; a week of them is kept now. */
static void gw_backfill_finished(void *arg)
{
	static const int64_t keep[STORE_REPORT_NGRANS] = {GW_REPORTING_CENTRAL_KEEP_MS,
							  GW_REPORTING_CENTRAL_KEEP_MS,
							  GW_REPORTING_CENTRAL_KEEP_MS};
	struct gw *gw = arg;
	track_retention_reports(gw->track_retention, keep);
}

static int gw_start(struct gw *gw)
{
	const struct gw_config *cfg = &gw->rules->cfg;
	char *err = NULL;
	int rc;

	fdlimit_raise();
	gw->base = event_base_new();
	if (gw->base == NULL)
		panic("cannot create the event loop");
	gw->q = loopq_new(gw->base);
	gw->throttle = hat_throttle_new();
	msgmeta_init();

	struct smtp_server_config sc;
	smtp_listener_keys_server_config(&gw_config_listener, cfg, &sc);
	sc.proto.hostname = cfg->hostname;
	sc.proto.check_mail = gw_check_mail;
	sc.proto.check_rcpt = gw_check_rcpt;
	sc.proto.xforward_allowed = gw_xforward_allowed;
	sc.on_message = gw_on_message;
	sc.ctx = gw;
	sc.check_connect = gw_check_connect;
	sc.on_close = gw_on_close;
	sc.on_refused = gw_on_refused;
	if ((rc = smtp_server_start(gw->base, &sc, &gw->smtp, &err)) < 0) {
		fprintf(stderr, "lazaret-gw: %s\n", err);
		free(err);
		return rc;
	}
	/* Bound first (the port may be privileged); the rest runs as the service user. */
	if ((rc = privdrop_make_dirs(cfg->data_dir)) < 0) {
		fprintf(stderr, "lazaret-gw: cannot create %s: %s\n", cfg->data_dir, strerror(-rc));
		return rc;
	}
	if ((rc = privdrop_to_user("gw", cfg->user, cfg->data_dir)) < 0) {
		fprintf(stderr, "lazaret-gw: cannot drop privileges to %s: %s\n", cfg->user,
			strerror(-rc));
		return rc;
	}
	/* A managed gateway starts on the manager's current settings when it can. */
	if (cfg->managed && gw_managed_sync(cfg) > 0) {
		struct pipeline_rules *next = NULL;
		char *warnings = NULL;
		if (gw_load(gw->conf_path, &next, &err, &warnings) < 0) {
			log_lines(LOG_LEVEL_ERROR, "gw.reload_failed", err);
			free(err);
			err = NULL;
		} else {
			free(warnings);
			pipeline_rules_unref(gw->rules);
			gw->rules = next;
			cfg = &gw->rules->cfg;
		}
	}
	/* Threads start after the drop, so none of them ever runs as root. */
	gw->wp = workpool_new(cfg->workers);
	gw->maint = workpool_new(1);
	struct store_options so = {.dir = cfg->data_dir};
	if ((rc = store_open(&so, &gw->st)) < 0) {
		fprintf(stderr, "lazaret-gw: cannot open the store in %s: %s\n", cfg->data_dir,
			strerror(-rc));
		return rc;
	}
	if (cfg->slbl_enabled) {
		char *path = xasprintf("%s/%s", cfg->data_dir, GW_SLBL_CACHE_FILE);
		rc = slbl_cache_open(path, &gw->slbl);
		if (rc < 0)
			fprintf(stderr, "lazaret-gw: cannot open the safelist cache %s: %s\n", path,
				strerror(-rc));
		free(path);
		if (rc < 0)
			return rc;
	}
	if ((rc = gw_events_start(cfg, gw->st, &gw->events)) < 0) {
		fprintf(stderr, "lazaret-gw: cannot open the event spool in %s: %s\n",
			cfg->data_dir, strerror(-rc));
		return rc;
	}
	if (gw->events != NULL)
		metrics_add_section(gw_events_metrics, gw->events);
	bool track_local = strcmp(cfg->tracking_mode, "local") == 0;
	gw->tracking_central = strcmp(cfg->tracking_mode, "central") == 0;
	gw->reporting_central = gw_config_reporting_central(cfg);
	/* in every mode: what local mode stored before a switch ages out too */
	gw->track_retention = track_retention_new(gw->base, gw->st, cfg->tracking_retention_ms,
						  cfg->purge_interval_ms);
	/* the rollups local tracking fills: with local reporting the manager's default
	 * retention (months kept), with central reporting a week of each (RP3) */
	static const int64_t report_retention_ms[STORE_REPORT_NGRANS] = {90 * 86400000LL,
									 1098 * 86400000LL, 0};
	static const int64_t report_central_retention_ms[STORE_REPORT_NGRANS] = {
	    GW_REPORTING_CENTRAL_KEEP_MS, GW_REPORTING_CENTRAL_KEEP_MS,
	    GW_REPORTING_CENTRAL_KEEP_MS};
	/* the switch to central, and the old rollups sent once: kept until then */
	int64_t since = 0;
	if ((rc = gw_backfill_switch(cfg, clock_now_ms(), &since)) < 0) {
		fprintf(stderr, "lazaret-gw: cannot record the reporting mode in %s: %s\n",
			cfg->data_dir, strerror(-rc));
		return rc;
	}
	bool backfill =
	    gw->reporting_central && cfg->reporting_backfill && !gw_backfill_is_done(cfg);
	if (backfill && since <= 0) {
		log_warn("gw.backfill_unknown_switch",
			 "reason=\"this gateway was not seen with [reporting] mode = local before: "
			 "when it switched is unknown, nothing is sent\"");
		backfill = false;
	}
	track_retention_reports(gw->track_retention, gw->reporting_central && !backfill
							 ? report_central_retention_ms
							 : report_retention_ms);
	if (backfill && (rc = gw_backfill_start(gw->st, cfg, since, gw_backfill_finished, gw,
						&gw->backfill)) < 0) {
		fprintf(stderr, "lazaret-gw: cannot start the backfill: %s\n", strerror(-rc));
		return rc;
	}
	struct release_config relc;
	release_config_from(cfg, &relc);
	if ((rc = release_start(gw->st, &relc, &gw->release)) < 0) {
		fprintf(stderr, "lazaret-gw: cannot start the release engine: %s\n", strerror(-rc));
		return rc;
	}
	if (cfg->http_listen != NULL) {
		struct api_config ac;
		api_config_from(cfg, &ac);
		if ((rc = api_start(gw->base, &ac, gw->st, gw->release, &gw->api)) < 0) {
			fprintf(stderr, "lazaret-gw: cannot listen for HTTP on %s: %s\n",
				cfg->http_listen, strerror(-rc));
			return rc;
		}
		struct http_server_conn_limits hl;
		gw_http_limits_from(cfg, &hl);
		http_server_set_connection_limits(api_http(gw->api), &hl);
		http_server_set_on_refused(api_http(gw->api), gw_http_refused, NULL);
		if (http_server_route(api_http(gw->api), "POST",
				      "/api/v1/quarantines/spam/delete-all", HTTP_SERVER_ROUTE_AUTH,
				      gw_delete_all, gw) < 0)
			panic("gateway: bad route");
		/* local tracking: the manager's search and story, and its reports, over
		 * the gateway's store, for the admin token only (both ask for an admin) */
		if (track_local)
			api_tracking_register(gw->api);
		if (track_local && !gw->reporting_central)
			api_reports_register(gw->api);
		else if (gw->reporting_central &&
			 http_server_route(api_http(gw->api), "GET", "/api/v1/reports/{report}",
					   HTTP_SERVER_ROUTE_AUTH, gw_reports_central, gw) < 0)
			panic("gateway: bad route");
	}
	gw->expiry_timer = event_new(gw->base, -1, EV_PERSIST, gw_expiry_tick, gw);
	gw_arm(gw->expiry_timer, cfg->purge_interval_ms);
	gw->sync_timer = event_new(gw->base, -1, EV_PERSIST, gw_sync_tick, gw);
	gw_arm(gw->sync_timer, cfg->sync_interval_ms);
	gw_sync_now(gw);
	gw->hello_timer = event_new(gw->base, -1, EV_PERSIST, gw_hello_tick, gw);
	gw_arm(gw->hello_timer, cfg->hello_interval_ms);
	gw_hello_now(gw);
	gw_central_probe_now(gw);
	gw_local_quarantines_ensure(gw);
	gw->migrate = gw_migrate_new(gw->st, gw_migration_finished, gw);
	gw_migrate_start(gw->migrate, cfg, gw->rules->central_hostport);
	gw->capacity_timer = event_new(gw->base, -1, EV_PERSIST, gw_capacity_tick, gw);
	if (gw->events != NULL)
		gw_arm(gw->capacity_timer, cfg->capacity_interval_ms);
	gw->managed_timer = event_new(gw->base, -1, EV_PERSIST, gw_managed_tick, gw);
	if (cfg->managed)
		gw_arm(gw->managed_timer, cfg->managed_sync_interval_ms);

	gw->sig_term = evsignal_new(gw->base, SIGTERM, gw_terminate, gw);
	gw->sig_int = evsignal_new(gw->base, SIGINT, gw_terminate, gw);
	gw->sig_hup = evsignal_new(gw->base, SIGHUP, gw_reload, gw);
	event_add(gw->sig_term, NULL);
	event_add(gw->sig_int, NULL);
	event_add(gw->sig_hup, NULL);
	char q[256];
	log_info("gw.start",
		 "version=%s name=%s data_dir=%s smtp=%s next_hop=%s antispam=%s antivirus=%s "
		 "filters=%s outbreak=%s central_pvo=%s spam_quarantine=%s http=%s "
		 "manager_addresses=%s",
		 LAZARET_VERSION, cfg->name, cfg->data_dir, cfg->listen, cfg->next_hop,
		 cfg->antispam_engine, cfg->antivirus_engine,
		 cfg->filters_file != NULL ? cfg->filters_file : "none",
		 gw->rules->outbreak_version != NULL ? gw->rules->outbreak_version : "none",
		 gw->rules->central_hostport != NULL ? gw->rules->central_hostport : "no",
		 cfg->local_spam_enabled		? "local"
		 : gw->rules->external_hostport != NULL ? gw->rules->external_hostport
							: "local",
		 cfg->http_listen != NULL ? cfg->http_listen : "none",
		 log_quote(q, sizeof(q),
			   cfg->manager_addresses_text != NULL ? cfg->manager_addresses_text : ""));
	return 0;
}

/* Tears down in dependency order; safe after a partial start. */
static void gw_stop(struct gw *gw)
{
	if (gw->api != NULL)
		api_stop(gw->api);
	/* Messages still being judged finish (their answers wait in the loop queue). */
	workpool_free(gw->wp);
	workpool_free(gw->maint);
	gw_migrate_free(gw->migrate); /* a transfer under way finishes */
	gw->migrate = NULL;
	/* after the workers: their last events are committed before the spool closes */
	gw_events_stop(gw->events);
	gw->events = NULL;
	gw_backfill_stop(gw->backfill);
	gw->backfill = NULL;
	track_retention_free(gw->track_retention);
	gw->track_retention = NULL;
	if (gw->release != NULL)
		release_stop(gw->release);
	if (gw->st != NULL)
		store_close(gw->st);
	/* Deliver the last answers to sessions still waiting for them. */
	if (gw->base != NULL)
		event_base_loop(gw->base, EVLOOP_NONBLOCK);
	smtp_server_free(gw->smtp);
	loopq_free(gw->q);
	if (gw->slbl != NULL)
		slbl_cache_free(gw->slbl);
	hat_throttle_free(gw->throttle);
	if (gw->shutdown_timer != NULL)
		event_free(gw->shutdown_timer);
	if (gw->sync_timer != NULL)
		event_free(gw->sync_timer);
	if (gw->expiry_timer != NULL)
		event_free(gw->expiry_timer);
	if (gw->hello_timer != NULL)
		event_free(gw->hello_timer);
	if (gw->managed_timer != NULL)
		event_free(gw->managed_timer);
	if (gw->capacity_timer != NULL)
		event_free(gw->capacity_timer);
	if (gw->sig_term != NULL) {
		event_free(gw->sig_term);
		event_free(gw->sig_int);
		event_free(gw->sig_hup);
	}
	if (gw->base != NULL)
		event_base_free(gw->base);
	pipeline_rules_unref(gw->rules);
}

int main(int argc, char **argv)
{
	/* --migration-plan: this program's own option, taken out before the common ones */
	bool plan = false;
	int nargc = 0;
	for (int i = 0; i < argc; i++) {
		if (i > 0 && strcmp(argv[i], "--migration-plan") == 0)
			plan = true;
		else
			argv[nargc++] = argv[i];
	}
	argc = nargc;
	struct daemon_args args;
	int exit_now = daemon_args_parse(argc, argv, "lazaret-gw", usage, &args);
	if (exit_now >= 0)
		return exit_now;
	const char *path = args.config;
	bool check_only = args.check_only;
	log_init("lazaret-gw", LOG_LEVEL_INFO);
	confparse_canonical_paths(true); /* paths used and logged as /srv/var, not etc/.. */

	struct gw gw;
	memset(&gw, 0, sizeof(gw));
	atomic_init(&gw.inflight, 0);
	atomic_init(&gw.sync_running, false);
	atomic_init(&gw.hello_running, false);
	atomic_init(&gw.managed_running, false);
	atomic_init(&gw.expiry_running, false);
	char *abs_path = realpath(path, NULL);
	if (abs_path != NULL)
		path = abs_path;
	gw.conf_path = path;
	char *err = NULL, *warnings = NULL;
	if (gw_load(path, &gw.rules, &err, &warnings) < 0) {
		fprintf(stderr, "%s", err != NULL ? err : "lazaret-gw: cannot read configuration");
		if (err == NULL || err[0] == '\0' || err[strlen(err) - 1] != '\n')
			fputc('\n', stderr);
		free(err);
		free(abs_path);
		return 1;
	}
	if (plan) {
		free(warnings);
		int prc = gw_migrate_plan(gw.rules);
		pipeline_rules_unref(gw.rules);
		free(abs_path);
		return prc;
	}
	if (check_only) {
		if (warnings != NULL)
			fprintf(stderr, "%s", warnings);
		printf("%s: configuration ok\n", path);
		free(warnings);
		pipeline_rules_unref(gw.rules);
		free(abs_path);
		return 0;
	}
	log_set_level_name(gw.rules->cfg.log_level);
	log_lines(LOG_LEVEL_WARN, "gw.config_warning", warnings);
	free(warnings);
	signal(SIGPIPE, SIG_IGN);
	if (evthread_use_pthreads() < 0)
		panic("libevent has no pthreads support");

	int rc = gw_start(&gw);
	if (rc == 0) {
		event_base_dispatch(gw.base);
		log_info("gw.stopped", "forced=%s", gw.forced ? "yes" : "no");
	}
	gw_stop(&gw);
	free(abs_path);
	return rc == 0 ? 0 : 1;
}

/*
 * pipeline — the gateway's per-message decisions and the relay of their result,
 * run on a worker thread (it blocks on engines, the store and outbound SMTP).
 *
 * Order (docs/GATEWAY.md "Pipeline", docs/ARCHITECTURE.md): HAT and RAT ran in the SMTP
 * session already; then
 *   0 released mail (from [manager] addresses): straight to the next hop,
 *     unless its latest X-Lazaret-Released says rescan=yes (then judged whole;
 *     with id=, the manager's message id, the reply says the verdict: an
 *     outbreak rule that still matches keeps it on the manager, neither
 *     delivered nor transferred again — docs/GATEWAY.md "Rescans when the
 *     rules change")
 *   1 safelist/blocklist per recipient: SAFE skips spam handling, BLOCK
 *     goes to the spam quarantine or is deleted
 *   2 anti-spam (one scan for the recipients still in question) → positive /
 *     suspect / clean and the action configured for the verdict
 *   3 anti-virus for the recipients still headed for delivery
 *   4 outbreak rules, then content filters, for those recipients
 *   5 recipients grouped by outcome; one copy per group: local quarantines first
 *     (store commit), then the manager's PVO and spam quarantines, then the next
 *     hop and alternate hosts
 * PVO quarantines (Policy, Virus, Outbreak, Unclassified) are local, or with
 * [centralized_pvo] all the manager's (pl_hold decides): a recipient held
 * centrally stays open to steps 3 and 4, whose quarantines join its transfer
 * (one message, one X-Lazaret-Quarantine header per quarantine).
 * An engine error makes the reply 451 unless [...] on_failure = hold (then the
 * Unclassified quarantine). Any copy not accepted makes the reply 451 (the client
 * keeps the message and retries; nothing is lost, a retry may duplicate copies
 * that had been accepted). Every recipient bounced makes it 554; some bounced
 * among others are dropped and logged.
 * Not for: SMTP session policy (lazaret_gw.c, hat.c, rat.c) or keeping mail.
 */
#include "gateway/pipeline.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/clock.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/readfile.h"
#include "common/strbuf.h"
#include "common/tls.h"
#include "common/xalloc.h"
#include "gateway/antispam.h"
#include "gateway/antivirus.h"
#include "gateway/delivery.h"
#include "gateway/disposition.h"
#include "gateway/filter.h"
#include "gateway/gw_migrate.h"
#include "gateway/pvo_out.h"
#include "gateway/gw_events.h"
#include "gateway/rat.h"
#include "gateway/slbl_cache.h"
#include "mime/msgmeta.h"
#include "mime/msgmeta_store.h"
#include "smtp/smtp_proto.h"
#include "store/store.h"

/* The spam quarantine's name (the store maps it to its type). */
#define PIPELINE_Q_SPAM "spam"

/* The quarantines one message can be in at once, centrally: far more than it can get. */
#define PIPELINE_PVO_MAX 8

/* ---- rules ---- */

const char *pipeline_quarantine_name(const char *name)
{
	static const char *const sys[] = {PIPELINE_Q_VIRUS, PIPELINE_Q_OUTBREAK,
					  PIPELINE_Q_UNCLASSIFIED};
	for (size_t i = 0; i < sizeof(sys) / sizeof(sys[0]); i++) {
		if (strcasecmp(name, sys[i]) == 0)
			return sys[i];
	}
	return name;
}

/* fn for the name a rule's quarantine is filed under (pipeline_quarantine_name). */
struct pipeline_each_arg {
	void (*fn)(const char *name, void *arg);
	void *arg;
};

static void pipeline_each_one(const char *name, void *arg)
{
	struct pipeline_each_arg *a = arg;
	a->fn(pipeline_quarantine_name(name), a->arg);
}

/* A filter's quarantine the manager can take: a PVO name, and not its spam quarantine. */
static bool pipeline_central_name_ok(const char *name)
{
	return pvo_out_name_ok(name) && strcasecmp(name, PIPELINE_Q_SPAM) != 0;
}

int pipeline_rules_build(struct gw_config *cfg, struct pipeline_rules **out, char **err)
{
	struct pipeline_rules *r = xcalloc(1, sizeof(*r));
	int rc;
	*err = NULL;
	*out = NULL;
	r->cfg = *cfg;
	memset(cfg, 0, sizeof(*cfg));
	atomic_init(&r->refs, 1);
	if ((rc = rat_parse(r->cfg.rat_accept, &r->rat, err)) < 0)
		goto fail;
	if (r->cfg.filters_file != NULL) {
		/* read before compiling: a change in between shows as a change later */
		char *text = NULL;
		size_t tlen = 0;
		if (read_file(r->cfg.filters_file, 64 * 1024 * 1024, &text, &tlen) == 0)
			pvo_out_origin_id("filters", "", NULL, 0, NULL, 0,
					  (const unsigned char *)text, tlen, r->filters_digest);
		free(text);
		if ((rc = filter_load(r->cfg.filters_file, &r->filters, err)) < 0)
			goto fail;
	}
	if (strcmp(r->cfg.antispam_engine, "builtin") == 0 &&
	    (rc = antispam_rules_load(r->cfg.antispam_rules, &r->spam, err)) < 0)
		goto fail;
	if (r->cfg.outbreak_rules != NULL &&
	    (rc = filter_load_outbreak(r->cfg.outbreak_rules, &r->outbreak, &r->outbreak_version,
				       err)) < 0)
		goto fail;
	r->central_hostport = gw_config_central_pvo_hostport(&r->cfg);
	if (r->central_hostport != NULL && r->filters != NULL) {
		/* Every quarantine a filter names must be one the manager can hold (PV3). */
		const char *bad = NULL, *fname = NULL;
		int line = 0;
		if (filter_set_check_quarantines(r->filters, pipeline_central_name_ok, &bad, &fname,
						 &line) < 0) {
			*err = xasprintf(
			    "%s:%d: filter '%s': quarantine(\"%s\") cannot be a central "
			    "quarantine ([centralized_pvo] enabled): 1 to %d bytes, "
			    "no ';', '\"', '\\' or '=', no blank at either end, "
			    "not \"spam\"",
			    r->cfg.filters_file, line, fname, bad, STORE_QUARANTINE_NAME_MAX);
			rc = -EINVAL;
			goto fail;
		}
	}
	r->external_hostport = gw_config_external_hostport(&r->cfg);
	if (r->external_hostport != NULL && r->cfg.external_tls) {
		char *why = NULL;
		r->external_tls =
		    tls_client_context(r->cfg.external_tls_ca, r->cfg.external_tls_cert,
				       r->cfg.external_tls_key, true, &why);
		if (r->external_tls == NULL) {
			*err = xasprintf("[external_spam_quarantine] %s", why);
			free(why);
			rc = -EINVAL;
			goto fail;
		}
	}
	*out = r;
	return 0;
fail:
	if (*err == NULL)
		*err = xasprintf("cannot compile the rules: %s", strerror(-rc));
	pipeline_rules_unref(r);
	return rc < 0 ? rc : -EINVAL;
}

struct pipeline_rules *pipeline_rules_ref(struct pipeline_rules *r)
{
	atomic_fetch_add(&r->refs, 1);
	return r;
}

void pipeline_rules_unref(struct pipeline_rules *r)
{
	if (r == NULL || atomic_fetch_sub(&r->refs, 1) != 1)
		return;
	rat_free(r->rat);
	if (r->filters != NULL)
		filter_set_free(r->filters);
	if (r->spam != NULL)
		antispam_rules_free(r->spam);
	free(r->external_hostport);
	if (r->outbreak != NULL)
		filter_set_free(r->outbreak);
	free(r->outbreak_version);
	free(r->central_hostport);
	if (r->external_tls != NULL)
		SSL_CTX_free(r->external_tls);
	gw_config_free(&r->cfg);
	free(r);
}

void pipeline_rules_each_pvo_quarantine(const struct pipeline_rules *r,
					void (*fn)(const char *name, void *arg), void *arg)
{
	fn(PIPELINE_Q_VIRUS, arg);
	fn(PIPELINE_Q_OUTBREAK, arg);
	fn(PIPELINE_Q_UNCLASSIFIED, arg);
	struct pipeline_each_arg a = {fn, arg};
	if (r->filters != NULL)
		filter_set_each_quarantine(r->filters, pipeline_each_one, &a);
	if (r->outbreak != NULL)
		filter_set_each_quarantine(r->outbreak, pipeline_each_one, &a);
}

/* ---- one message ---- */

struct pl {
	const struct pipeline_job *job;
	const struct gw_config *cfg;
	const struct smtp_message *m;
	size_t n;
	const char *const *rcpts;
	struct disposition *disp;
	bool *safe;	 /* safelisted: no spam handling */
	bool *undecided; /* still open to the next step */
	bool scanned;
	double score;
	const char *verdict; /* "spam" / "suspect" / NULL (clean or not scanned) */
	char *spam_detail;
	char *virus;
	struct msgmeta *meta;
	struct filter_result fres;
	bool have_fres;
	char *filter_header; /* insert-header lines */
	const char **strip;  /* strip-header names (borrowed from fres) */
	size_t nstrip;
	bool tempfail; /* the filters could not decide and [filters] undecided = tempfail */
	/*
	 * Centralized PVO: the message's quarantines (a bit each in disposition.pvo),
	 * and per recipient whether it is held centrally and still open to more of
	 * them (a virus and a filter's quarantine make one transfer with two headers).
	 */
	struct {
		const char *name;
		const char *reason;
	} pvo[PIPELINE_PVO_MAX];
	size_t npvo;
	bool *more_pvo;
	int64_t entered;     /* when the gateway took the message: "entered" of its quarantines */
	char *outbreak_rule; /* the outbreak rule that matched, or NULL */
	bool requarantined;  /* a copy went to a quarantine (local, central or spam) */
	char *failed[2]; /* why an engine could not scan ([...] on_failure = hold): spam, virus */
};

static bool pl_delivery_bound(const struct disposition *d)
{
	return d->route == DISPOSITION_NEXT_HOP || d->route == DISPOSITION_ALT_HOST;
}

/*
 * Holds recipient i in quarantine name: centrally (one more quarantine of its
 * transfer, reason as the manager shows it) when [centralized_pvo] is on, else
 * in the local quarantine (local_reason: "virus" makes the verdict virus). A
 * recipient held centrally stays open to the later steps' quarantines.
 */
static void pl_hold(struct pl *p, size_t i, const char *name, const char *reason,
		    const char *local_reason)
{
	struct disposition *d = &p->disp[i];
	p->undecided[i] = false;
	name = pipeline_quarantine_name(name);
	if (p->job->rules->central_hostport == NULL) {
		memset(d, 0, sizeof(*d));
		d->route = DISPOSITION_QUARANTINE;
		d->target = name;
		d->reason = local_reason;
		return;
	}
	size_t k = 0;
	while (k < p->npvo && strcasecmp(p->pvo[k].name, name) != 0)
		k++;
	if (k == p->npvo) {
		if (p->npvo == PIPELINE_PVO_MAX)
			panic("pipeline: more than %d quarantines for one message",
			      PIPELINE_PVO_MAX);
		p->pvo[k].name = name;
		p->pvo[k].reason = reason;
		p->npvo++;
	}
	if (d->route != DISPOSITION_CENTRAL_PVO) {
		memset(d, 0, sizeof(*d));
		d->route = DISPOSITION_CENTRAL_PVO;
		d->reason = local_reason;
	}
	d->pvo |= 1u << k;
	p->more_pvo[i] = true;
}

/* Whether recipient i is still to be scanned: headed for delivery, or held centrally. */
static bool pl_open(const struct pl *p, size_t i)
{
	return p->undecided[i] || p->more_pvo[i];
}

/* The message's meta, parsed once; the parse is kept for the anti-spam rules'
 * text parts (p->m outlives p->meta). */
static void pl_parse_meta(struct pl *p)
{
	if (p->meta == NULL)
		msgmeta_parse_kept(p->m->data, p->m->len, &p->meta);
}

/* The spam quarantine a recipient goes to: the local one wins when both are on. */
static void pl_to_spam_quarantine(struct pl *p, size_t i, const char *verdict, const char *reason)
{
	struct disposition *d = &p->disp[i];
	memset(d, 0, sizeof(*d));
	if (p->cfg->local_spam_enabled || p->job->rules->external_hostport == NULL) {
		d->route = DISPOSITION_QUARANTINE;
		d->target = PIPELINE_Q_SPAM;
	} else {
		d->route = DISPOSITION_EXTERNAL_SPAM;
	}
	d->verdict = verdict;
	d->reason = reason;
}

static void pl_action(struct pl *p, size_t i, const char *action, const char *verdict)
{
	struct disposition *d = &p->disp[i];
	const char *reason = verdict;
	if (strcmp(action, "quarantine") == 0) {
		pl_to_spam_quarantine(p, i, verdict, reason);
		return;
	}
	memset(d, 0, sizeof(*d));
	d->reason = reason;
	d->verdict = verdict;
	if (strcmp(action, "drop") == 0) {
		d->route = DISPOSITION_DROP;
	} else if (strcmp(action, "bounce") == 0) {
		d->route = DISPOSITION_BOUNCE;
	} else {
		/* deliver or tag: to the alternate host when one is set (a migration aid). */
		d->route = DISPOSITION_NEXT_HOP;
		if (p->cfg->alternate_host != NULL) {
			d->route = DISPOSITION_ALT_HOST;
			d->target = p->cfg->alternate_host;
		}
		if (strcmp(action, "tag") == 0)
			d->edits |= DISPOSITION_EDIT_TAG;
	}
}

static void pl_slbl(struct pl *p)
{
	if (p->job->slbl == NULL || !p->cfg->slbl_enabled)
		return;
	const char *sender = p->m->env.sender != NULL ? p->m->env.sender : "";
	if (sender[0] == '\0')
		return;
	for (size_t i = 0; i < p->n; i++) {
		enum slbl_verdict v = slbl_cache_check(p->job->slbl, p->rcpts[i], sender);
		if (v == SLBL_SAFE) {
			p->safe[i] = true;
			p->disp[i].reason = "safelist";
		} else if (v == SLBL_BLOCK) {
			p->undecided[i] = false;
			if (strcmp(p->cfg->blocklist_action, "delete") == 0) {
				memset(&p->disp[i], 0, sizeof(p->disp[i]));
				p->disp[i].route = DISPOSITION_DROP;
				p->disp[i].reason = "blocklist";
			} else {
				pl_to_spam_quarantine(p, i, "spam", "blocklist");
			}
		}
	}
}

/* 0, or -errno when the engine could not say (the message must not pass as clean). */
static int pl_antispam(struct pl *p)
{
	const char *engine = p->cfg->antispam_engine;
	if (strcmp(engine, "none") == 0)
		return 0;
	size_t want = 0;
	for (size_t i = 0; i < p->n; i++)
		want += p->undecided[i] && !p->safe[i];
	if (want == 0)
		return 0;
	struct antispam_result res = {0};
	int rc;
	if (strcmp(engine, "builtin") == 0) {
		/* Rules read decoded headers, as the filters do later: parse once for both. */
		if (antispam_rules_count(p->job->rules->spam) > 0)
			pl_parse_meta(p);
		rc = antispam_builtin_scan_meta(p->job->rules->spam, p->m->data, p->m->len, p->meta,
						&res);
	} else if (strcmp(engine, "spamd") == 0) {
		rc = antispam_spamd_scan(p->cfg->spamd, p->cfg->antispam_timeout_ms, p->m->data,
					 p->m->len, &res);
	} else {
		struct antispam_envelope env = {
		    .client_ip = p->job->client_ip,
		    .helo = p->m->env.helo,
		    .mail_from = p->m->env.sender,
		    .rcpts = p->rcpts,
		    .nrcpts = p->n,
		};
		rc = antispam_rspamd_scan(p->cfg->rspamd, p->cfg->antispam_timeout_ms, &env,
					  p->m->data, p->m->len, &res);
	}
	if (rc < 0) {
		log_error("gw.antispam_failed", "id=%s engine=%s error=\"%s\"", p->job->id, engine,
			  strerror(-rc));
		p->failed[0] = xasprintf("%s could not scan: %s", engine, strerror(-rc));
		antispam_result_clear(&res);
		return rc;
	}
	p->scanned = true;
	p->score = res.score;
	p->spam_detail = res.detail;
	res.detail = NULL;
	antispam_result_clear(&res);
	const char *action = NULL;
	if (p->score >= p->cfg->positive_threshold) {
		p->verdict = "spam";
		action = p->cfg->positive_action;
	} else if (p->score >= p->cfg->suspect_threshold) {
		p->verdict = "suspect";
		action = p->cfg->suspect_action;
	}
	if (action == NULL)
		return 0;
	for (size_t i = 0; i < p->n; i++) {
		if (!p->undecided[i] || p->safe[i])
			continue;
		pl_action(p, i, action, p->verdict);
		/* Spam that goes on is still open to the virus scan and the filters. */
		p->undecided[i] = pl_delivery_bound(&p->disp[i]);
	}
	return 0;
}

static int pl_antivirus(struct pl *p)
{
	if (strcmp(p->cfg->antivirus_engine, "clamd") != 0)
		return 0;
	size_t want = 0;
	for (size_t i = 0; i < p->n; i++)
		want += pl_open(p, i);
	if (want == 0)
		return 0;
	bool infected = false;
	int rc = antivirus_clamd_scan(p->cfg->clamd, p->cfg->antivirus_timeout_ms, p->m->data,
				      p->m->len, &infected, &p->virus);
	if (rc < 0) {
		log_error("gw.antivirus_failed", "id=%s engine=clamd error=\"%s\"", p->job->id,
			  strerror(-rc));
		p->failed[1] = xasprintf("clamd could not scan: %s", strerror(-rc));
		return rc;
	}
	if (!infected)
		return 0;
	bool drop = strcmp(p->cfg->antivirus_action, "drop") == 0;
	for (size_t i = 0; i < p->n; i++) {
		if (!pl_open(p, i))
			continue;
		if (!drop) {
			/* The virus's name is the reason the manager shows (clamd's text). */
			pl_hold(p, i, PIPELINE_Q_VIRUS, p->virus != NULL ? p->virus : "virus",
				"virus");
			continue;
		}
		if (!p->undecided[i])
			continue; /* held centrally already: quarantined mail is never dropped */
		struct disposition *d = &p->disp[i];
		memset(d, 0, sizeof(*d));
		d->reason = "virus";
		d->route = DISPOSITION_DROP;
		p->undecided[i] = false;
	}
	return 0;
}

/*
 * An engine could not scan and its [...] on_failure is "hold": the recipients it
 * was to judge go to the Unclassified quarantine (central or local), never on
 * unscanned. True when the message was held that way, false when the client is to
 * be answered 451 (on_failure = tempfail).
 */
static bool pl_scan_failed(struct pl *p, bool antispam)
{
	const char *policy = antispam ? p->cfg->antispam_on_failure : p->cfg->antivirus_on_failure;
	if (policy == NULL || strcmp(policy, "hold") != 0)
		return false;
	const char *why = p->failed[antispam ? 0 : 1];
	char q[256];
	log_warn("gw.scan_failed_held", "id=%s engine=%s quarantine=%s reason=%s", p->job->id,
		 antispam ? p->cfg->antispam_engine : "clamd", PIPELINE_Q_UNCLASSIFIED,
		 log_quote(q, sizeof(q), why != NULL ? why : "-"));
	for (size_t i = 0; i < p->n; i++) {
		bool take = antispam ? p->undecided[i] && !p->safe[i] : pl_open(p, i);
		if (take)
			pl_hold(p, i, PIPELINE_Q_UNCLASSIFIED, why != NULL ? why : "scan failed",
				"scan-failed");
	}
	return true;
}

/*
 * The fail-closed outcome of a message the filters could not decide on (a value
 * too long, the matching budget spent, parts beyond the walk's limits): the
 * recipients still open go to the local Unclassified quarantine, or the whole
 * message is refused with a 451, as [filters] undecided says. Never delivered.
 */
static void pl_filters_undecided(struct pl *p, const char *filter, const char *why)
{
	bool tempfail =
	    p->cfg->filters_undecided != NULL && strcmp(p->cfg->filters_undecided, "tempfail") == 0;
	char q[256];
	log_warn("gw.filter_undecided", "id=%s filter=%s reason=%s outcome=%s", p->job->id, filter,
		 log_quote(q, sizeof(q), why), tempfail ? "tempfail" : "unclassified");
	if (tempfail) {
		p->tempfail = true;
		return;
	}
	for (size_t i = 0; i < p->n; i++) {
		if (p->undecided[i])
			pl_hold(p, i, PIPELINE_Q_UNCLASSIFIED, "filter-undecided",
				"filter-undecided");
	}
}

/*
 * Evaluates fs (the content filters or the outbreak rules) on the message for the
 * recipients still open, into *res. false when there is nothing to apply: no
 * rules, no recipient open, or no decision (then handled as [filters] undecided
 * says). *evaluated becomes true when res holds a result to clear.
 */
static bool pl_eval_open(struct pl *p, const struct filter_set *fs, struct filter_result *res,
			 bool *evaluated)
{
	if (fs == NULL || filter_set_count(fs) == 0)
		return false;
	const char **rc = xcalloc(p->n + 1, sizeof(*rc));
	size_t nrc = 0;
	for (size_t i = 0; i < p->n; i++) {
		if (pl_open(p, i))
			rc[nrc++] = p->rcpts[i];
	}
	if (nrc == 0) {
		free(rc);
		return false;
	}
	pl_parse_meta(p);
	struct filter_input in = {
	    .meta = p->meta,
	    .data = p->m->data,
	    .len = p->m->len,
	    .mail_from = p->m->env.sender != NULL ? p->m->env.sender : "",
	    .rcpts = rc,
	    .nrcpts = nrc,
	    .remote_ip = p->job->client_ip,
	};
	int r = filter_eval(fs, &in, res);
	free(rc);
	*evaluated = r == 0;
	if (r < 0 || res->undecided) {
		pl_filters_undecided(p, r < 0 ? "-" : res->undecided_filter,
				     r < 0 ? strerror(-r) : res->undecided_reason);
		return false;
	}
	return true;
}

/*
 * The outbreak rules ([outbreak] rules): a rule whose taken block quarantines
 * puts the recipients still open into the Outbreak quarantine, the rule's name as
 * the reason (the name written in quarantine("...") does not matter; other
 * actions are not applied). Undecided: as the content filters' undecided.
 */
static void pl_outbreak(struct pl *p)
{
	struct filter_result res = {0};
	bool evaluated = false;
	if (pl_eval_open(p, p->job->rules->outbreak, &res, &evaluated)) {
		const char *rule = NULL;
		for (size_t k = 0; k < res.nactions && rule == NULL; k++) {
			if (res.actions[k].kind == FILTER_ACTION_QUARANTINE)
				rule = res.actions[k].filter_name;
		}
		if (rule != NULL) {
			char q[256];
			log_info("gw.outbreak", "id=%s rule=%s version=%s", p->job->id,
				 log_quote(q, sizeof(q), rule), p->job->rules->outbreak_version);
			/* the reason outlives res: one of the message's strings */
			p->outbreak_rule = xstrdup(rule);
			for (size_t i = 0; i < p->n; i++) {
				if (pl_open(p, i))
					pl_hold(p, i, PIPELINE_Q_OUTBREAK, p->outbreak_rule,
						p->outbreak_rule);
			}
		}
	}
	if (evaluated)
		filter_result_clear(&res);
}

static void pl_filters(struct pl *p)
{
	if (!pl_eval_open(p, p->job->rules->filters, &p->fres, &p->have_fres))
		return;
	/* What the filters decided, applied to every recipient still open. */
	struct disposition fd = {.route = DISPOSITION_NEXT_HOP};
	bool route_set = false;
	bool final_taken = false; /* a final action's route is never overridden */
	for (size_t k = 0; k < p->fres.nactions; k++) {
		const struct filter_action *a = &p->fres.actions[k];
		if (final_taken && a->kind == FILTER_ACTION_ALT_MAILHOST)
			continue;
		if (filter_action_is_final(a->kind))
			final_taken = true;
		switch (a->kind) {
		case FILTER_ACTION_INSERT_HEADER: {
			char *old = p->filter_header;
			p->filter_header = xasprintf("%s%s: %s\r\n", old != NULL ? old : "", a->arg,
						     a->arg2 != NULL ? a->arg2 : "");
			free(old);
			fd.edits |= DISPOSITION_EDIT_FILTER;
			break;
		}
		case FILTER_ACTION_STRIP_HEADER:
			p->strip = xreallocarray(p->strip, p->nstrip + 1, sizeof(*p->strip));
			p->strip[p->nstrip++] = a->arg;
			fd.edits |= DISPOSITION_EDIT_FILTER;
			break;
		case FILTER_ACTION_ALT_MAILHOST:
			fd.route = DISPOSITION_ALT_HOST;
			fd.target = a->arg;
			route_set = true;
			break;
		case FILTER_ACTION_QUARANTINE:
			fd.route = DISPOSITION_QUARANTINE;
			fd.target = pipeline_quarantine_name(a->arg);
			route_set = true;
			break;
		case FILTER_ACTION_DROP:
			fd.route = DISPOSITION_DROP;
			route_set = true;
			break;
		case FILTER_ACTION_BOUNCE:
			fd.route = DISPOSITION_BOUNCE;
			route_set = true;
			break;
		case FILTER_ACTION_DELIVER:
			break;
		}
		char q[256];
		log_info("gw.filter", "id=%s filter=%s action=%s arg=%s", p->job->id,
			 a->filter_name != NULL ? a->filter_name : "-", filter_action_name(a->kind),
			 log_quote(q, sizeof(q), a->arg != NULL ? a->arg : "-"));
		gw_events_filter(p->job->events, p->job->id, a->filter_name,
				 filter_action_name(a->kind), a->arg);
		fd.reason = a->filter_name;
	}
	if (!route_set && fd.edits == 0)
		return;
	bool central = p->job->rules->central_hostport != NULL;
	for (size_t i = 0; i < p->n; i++) {
		if (central && route_set && fd.route == DISPOSITION_QUARANTINE && pl_open(p, i)) {
			/* one more quarantine of the transfer, the filter's name as the reason */
			pl_hold(p, i, fd.target, fd.reason != NULL ? fd.reason : fd.target,
				fd.reason);
			continue;
		}
		if (!p->undecided[i])
			continue;
		struct disposition *d = &p->disp[i];
		unsigned keep_tag = d->edits & DISPOSITION_EDIT_TAG;
		if (route_set) {
			d->route = fd.route;
			d->target = fd.target;
		}
		d->edits = keep_tag | fd.edits;
		if (d->route == DISPOSITION_QUARANTINE) {
			d->edits = 0;
			d->verdict = NULL;
		}
		d->reason = fd.reason != NULL ? fd.reason : d->reason;
	}
}

/* RFC 5322 date in UTC for the Received header. */
static void pl_date(char *buf, size_t size)
{
	time_t now = (time_t)(clock_now_ms() / 1000);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(buf, size, "%a, %d %b %Y %H:%M:%S +0000", &tm);
}

static char *pl_received(const struct pl *p)
{
	char date[64];
	pl_date(date, sizeof(date));
	const char *helo = p->m->env.helo != NULL ? p->m->env.helo : "unknown";
	/* HELO text is the client's: keep only characters that cannot break the header. */
	char safe_helo[128];
	size_t k = 0;
	for (const char *s = helo; *s != '\0' && k + 1 < sizeof(safe_helo); s++) {
		unsigned char c = (unsigned char)*s;
		safe_helo[k++] = (c > 0x20 && c < 0x7f && c != '(' && c != ')') ? (char)c : '?';
	}
	safe_helo[k] = '\0';
	return xasprintf(
	    "Received: from %s ([%s])\r\n\tby %s (lazaret-gw) with %s id %s;\r\n\t%s\r\n",
	    safe_helo, p->job->client_ip, p->cfg->hostname, p->m->env.esmtp ? "ESMTP" : "SMTP",
	    p->job->id, date);
}

/* The copy for a group: the original, or with the filters' removals and the tag. */
static unsigned char *pl_edit(const struct pl *p, const struct disposition *d, size_t *len)
{
	unsigned char *cur = NULL;
	size_t curlen = 0;
	const unsigned char *src = p->m->data;
	size_t srclen = p->m->len;
	if (d->edits & DISPOSITION_EDIT_FILTER) {
		for (size_t k = 0; k < p->nstrip; k++) {
			unsigned char *next =
			    disposition_strip_header(src, srclen, p->strip[k], &curlen);
			free(cur);
			cur = next;
			src = cur;
			srclen = curlen;
		}
	}
	if (d->edits & DISPOSITION_EDIT_TAG) {
		unsigned char *next = disposition_tag_subject(src, srclen, p->cfg->tag, &curlen);
		free(cur);
		cur = next;
		src = cur;
		srclen = curlen;
	}
	*len = srclen;
	return cur; /* NULL: send the original */
}

struct pl_commit {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	int rc;
};

static void pl_committed(void *arg, int rc)
{
	struct pl_commit *c = arg;
	pthread_mutex_lock(&c->lock);
	c->rc = rc;
	c->done = true;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

/* Stores a copy in a local quarantine and waits for the commit. 0 or -errno. */
static int pl_store(struct pl *p, const struct disposition_group *g)
{
	if (p->job->st == NULL)
		return -ENODEV;
	pl_parse_meta(p);
	int64_t now = clock_now_ms();
	struct store_new_message *nm = xcalloc(1, sizeof(*nm));
	/* Each stored copy is its own quarantined message with its own id. */
	ids_uuidv7(now, nm->id);
	nm->quarantine = xstrdup(g->d.target);
	nm->received_at = now;
	nm->sender = xstrdup(p->m->env.sender != NULL ? p->m->env.sender : "");
	nm->recipients = xcalloc(g->n, sizeof(*nm->recipients));
	nm->nrecipients = g->n;
	for (size_t k = 0; k < g->n; k++)
		nm->recipients[k] = xstrdup(p->rcpts[g->rcpts[k]]);
	nm->gateway = xstrdup(p->cfg->name);
	nm->client_address = xstrdup(p->job->client_ip);
	/*
	 * The verdict says why the message is here: the spam verdict, else "virus" for
	 * the anti-virus route, else "policy" (a content filter chose the quarantine).
	 * The spam score is kept whenever the message was scanned.
	 */
	if (g->d.verdict != NULL)
		nm->verdict = xstrdup(g->d.verdict);
	else if (g->d.reason != NULL && strcmp(g->d.reason, "virus") == 0)
		nm->verdict = xstrdup("virus");
	else
		nm->verdict = xstrdup("policy");
	nm->has_score = p->scanned;
	nm->score = p->score;
	msgmeta_store_copy(p->meta, nm);
	nm->raw = xmalloc(p->m->len + 1);
	memcpy(nm->raw, p->m->data, p->m->len);
	nm->raw_len = p->m->len;
	int rc = store_new_message_prepare(nm);
	if (rc < 0) {
		store_new_message_free(nm);
		return rc;
	}
	struct pl_commit c = {.done = false, .rc = 0};
	pthread_mutex_init(&c.lock, NULL);
	pthread_cond_init(&c.cond, NULL);
	rc = store_submit_message(p->job->st, nm, pl_committed, &c);
	if (rc == 0) {
		pthread_mutex_lock(&c.lock);
		while (!c.done)
			pthread_cond_wait(&c.cond, &c.lock);
		rc = c.rc;
		pthread_mutex_unlock(&c.lock);
	}
	pthread_mutex_destroy(&c.lock);
	pthread_cond_destroy(&c.cond);
	return rc;
}

/*
 * The X-Lazaret-* fields the manager trusts. Copies of them that arrived with the
 * message are removed before the gateway adds its own, so a sender cannot set its
 * own verdict, score or client address.
 */
static const char *const pl_lazaret_fields[] = {
    "X-Lazaret-Gateway",	"X-Lazaret-Verdict",	"X-Lazaret-Score",
    "X-Lazaret-Client-Address", "X-Lazaret-Quarantine", "X-Lazaret-Origin-Id",
};

/*
 * src without the fields of pl_lazaret_fields (a new buffer, *len its length).
 * Also for mail the manager released: the fields a gateway wrote for the manager
 * (the quarantine, its reason, the client's address) are not for the recipient.
 */
static unsigned char *pl_strip_lazaret_fields(const unsigned char *src, size_t srclen, size_t *len)
{
	unsigned char *cur = NULL;
	for (size_t k = 0; k < sizeof(pl_lazaret_fields) / sizeof(pl_lazaret_fields[0]); k++) {
		size_t n = 0;
		unsigned char *next =
		    disposition_strip_header(src, srclen, pl_lazaret_fields[k], &n);
		free(cur);
		cur = next;
		src = cur;
		srclen = n;
	}
	*len = srclen;
	return cur;
}

/* The header lines X-Lazaret-* the manager reads (docs/GATEWAY.md "Pipeline"). */
static char *pl_spam_headers(const struct pl *p, const struct disposition *d)
{
	char score[64] = "";
	if (p->scanned)
		snprintf(score, sizeof(score), "X-Lazaret-Score: %.2f\r\n", p->score);
	return xasprintf("X-Lazaret-Gateway: %s\r\nX-Lazaret-Verdict: %s\r\n%s"
			 "X-Lazaret-Client-Address: %s\r\n",
			 p->cfg->name, d->verdict != NULL ? d->verdict : "spam", score,
			 p->job->client_ip);
}

/*
 * The header lines of a transfer to the manager's PVO listener: the gateway,
 * verdict and client lines the spam quarantine reads too, one X-Lazaret-Quarantine
 * per quarantine of the group, and the origin id (the same for a client's retry).
 */
static char *pl_central_headers(const struct pl *p, const struct disposition_group *g)
{
	struct strbuf b = STRBUF_INIT;
	strbuf_printf(&b, "X-Lazaret-Gateway: %s\r\n", p->cfg->name);
	if (g->d.verdict != NULL)
		strbuf_printf(&b, "X-Lazaret-Verdict: %s\r\n", g->d.verdict);
	if (p->scanned)
		strbuf_printf(&b, "X-Lazaret-Score: %.2f\r\n", p->score);
	strbuf_printf(&b, "X-Lazaret-Client-Address: %s\r\n", p->job->client_ip);
	const char *names[PIPELINE_PVO_MAX];
	char mapped[PIPELINE_PVO_MAX][STORE_QUARANTINE_NAME_MAX + 1];
	size_t nn = 0;
	for (size_t k = 0; k < p->npvo; k++) {
		if (!(g->d.pvo & (1u << k)))
			continue;
		/* the manager's mapping renames a local quarantine (gw_migrate.h) */
		gw_migrate_map_name(p->pvo[k].name, mapped[nn], sizeof(mapped[nn]));
		char *line = pvo_out_quarantine_header(mapped[nn], p->pvo[k].reason, p->entered, 0);
		strbuf_add(&b, line, strlen(line));
		free(line);
		names[nn] = mapped[nn];
		nn++;
	}
	const char **rc = xcalloc(g->n + 1, sizeof(*rc));
	for (size_t k = 0; k < g->n; k++)
		rc[k] = p->rcpts[g->rcpts[k]];
	char origin[PVO_OUT_ORIGIN_LEN];
	pvo_out_origin_id(p->cfg->name, p->m->env.sender, rc, g->n, names, nn, p->m->data,
			  p->m->len, origin);
	free(rc);
	strbuf_printf(&b, "X-Lazaret-Origin-Id: %s\r\n", origin);
	return strbuf_take(&b);
}

enum pl_result {
	PL_OK,	     /* the copy was taken */
	PL_DEFERRED, /* a destination could not take it: 451 */
	PL_REFUSED,  /* the destination refused every recipient for good */
};

static enum pl_result pl_send(struct pl *p, const struct disposition_group *g, const char *host,
			      char **refusal)
{
	const char **rc = xcalloc(g->n, sizeof(*rc));
	for (size_t k = 0; k < g->n; k++)
		rc[k] = p->rcpts[g->rcpts[k]];
	char *header = NULL;
	bool manager =
	    g->d.route == DISPOSITION_EXTERNAL_SPAM || g->d.route == DISPOSITION_CENTRAL_PVO;
	if (g->d.route == DISPOSITION_EXTERNAL_SPAM) {
		header = pl_spam_headers(p, &g->d);
	} else if (g->d.route == DISPOSITION_CENTRAL_PVO) {
		header = pl_central_headers(p, g);
	} else {
		char *received = pl_received(p);
		header =
		    xasprintf("%s%s", received,
			      (g->d.edits & DISPOSITION_EDIT_FILTER) && p->filter_header != NULL
				  ? p->filter_header
				  : "");
		free(received);
	}
	size_t len = 0;
	unsigned char *copy = manager ? pl_strip_lazaret_fields(p->m->data, p->m->len, &len)
				      : pl_edit(p, &g->d, &len);
	if (!manager && p->job->released) {
		unsigned char *clean = pl_strip_lazaret_fields(
		    copy != NULL ? copy : p->m->data, copy != NULL ? len : p->m->len, &len);
		free(copy);
		copy = clean;
	}
	struct delivery_options o = {
	    .helo_name = p->cfg->hostname,
	    .source_address = p->cfg->source_address,
	    .timeout_ms = p->cfg->delivery_timeout_ms,
	    .log_id = p->job->id,
	    /* The manager's channel may be TLS; the next hop and alternate hosts are not. */
	    .tls_ctx = g->d.route == DISPOSITION_EXTERNAL_SPAM ? p->job->rules->external_tls : NULL,
	};
	struct delivery_outcome out;
	delivery_send(host, &o, p->m->env.sender != NULL ? p->m->env.sender : "", rc, g->n, header,
		      copy != NULL ? copy : p->m->data, copy != NULL ? len : p->m->len, &out);
	char q[512];
	log_info("gw.sent", "id=%s route=%s host=%s rcpts=%zu status=%s reply=%s", p->job->id,
		 disposition_route_name(g->d.route), host, g->n, delivery_status_name(out.status),
		 log_quote(q, sizeof(q), out.reply != NULL ? out.reply : "ok"));
	if (out.status == DELIVERY_PARTLY_REFUSED && out.refusals != NULL)
		gw_events_delivery_partly(p->job->events, p->job->id,
					  disposition_route_name(g->d.route), host, p->rcpts,
					  g->rcpts, g->n, out.accepted, out.refusals);
	else
		gw_events_delivery(p->job->events, p->job->id, disposition_route_name(g->d.route),
				   host, p->rcpts, g->rcpts, g->n, delivery_status_name(out.status),
				   out.reply != NULL ? out.reply : out.accepted);
	enum pl_result r = PL_OK;
	if (out.status == DELIVERY_DEFERRED) {
		r = PL_DEFERRED;
	} else if (out.status == DELIVERY_REFUSED) {
		r = PL_REFUSED;
		if (refusal != NULL && *refusal == NULL && out.reply != NULL)
			*refusal = xstrdup(out.reply);
	}
	delivery_outcome_clear(&out);
	free(copy);
	free(header);
	free(rc);
	return r;
}

static void pl_log_decision(const struct pl *p, const struct disposition_group *g)
{
	char q[1024];
	size_t off = 0;
	q[0] = '\0';
	for (size_t k = 0; k < g->n && off + 2 < sizeof(q); k++) {
		int w = snprintf(q + off, sizeof(q) - off, "%s%s", k > 0 ? "," : "",
				 p->rcpts[g->rcpts[k]]);
		if (w < 0)
			break;
		off += (size_t)w;
	}
	char t[128];
	log_info("gw.decision", "id=%s route=%s target=%s reason=%s tag=%s rcpts=%s", p->job->id,
		 disposition_route_name(g->d.route),
		 log_quote(t, sizeof(t), g->d.target != NULL ? g->d.target : "-"),
		 g->d.reason != NULL ? g->d.reason : "clean",
		 (g->d.edits & DISPOSITION_EDIT_TAG) ? "yes" : "no", q);
}

/* Sends every group's copy; writes the client's reply. */
static void pl_execute(struct pl *p, char *reply, size_t replylen)
{
	struct disposition_group *g = NULL;
	size_t ng = 0;
	disposition_group(p->disp, p->n, &g, &ng);
	size_t bounced = 0, refused_groups = 0, sent_groups = 0;
	bool deferred = false;
	char *refusal = NULL;
	const char *bounce_reply = PIPELINE_REPLY_SPAM_BOUNCE;
	for (size_t k = 0; k < ng; k++) {
		pl_log_decision(p, &g[k]);
		if (g[k].d.route == DISPOSITION_DROP)
			gw_events_delivery(p->job->events, p->job->id, "drop", NULL, p->rcpts,
					   g[k].rcpts, g[k].n, "dropped", g[k].d.reason);
		if (g[k].d.route == DISPOSITION_BOUNCE) {
			bounced += g[k].n;
			if (g[k].d.reason != NULL && strcmp(g[k].d.reason, "spam") != 0 &&
			    strcmp(g[k].d.reason, "suspect") != 0)
				bounce_reply = PIPELINE_REPLY_FILTER_BOUNCE;
		}
	}
	if (bounced == p->n) {
		snprintf(reply, replylen, "%s", bounce_reply);
		gw_events_bounce(p->job->events, p->job->id, bounced, reply);
		goto out;
	}
	if (bounced > 0)
		log_warn("gw.bounce_dropped",
			 "id=%s rcpts=%zu reason=\"other recipients accepted the message: the "
			 "bounced ones are dropped\"",
			 p->job->id, bounced);
	/* Local quarantines first, then the manager, then the next hop and alternate hosts. */
	for (int pass = 0; pass < 3 && !deferred; pass++) {
		for (size_t k = 0; k < ng && !deferred; k++) {
			const struct disposition_group *gr = &g[k];
			if (pass == 0 && gr->d.route == DISPOSITION_QUARANTINE) {
				int rc = pl_store(p, gr);
				if (rc < 0) {
					log_error("gw.quarantine_failed",
						  "id=%s quarantine=%s error=\"%s\"", p->job->id,
						  gr->d.target, strerror(-rc));
					deferred = true;
				} else {
					log_info("gw.quarantined", "id=%s quarantine=%s rcpts=%zu",
						 p->job->id, gr->d.target, gr->n);
					gw_events_quarantine(p->job->events, p->job->id,
							     gr->d.target, "local", gr->d.reason,
							     p->rcpts, gr->rcpts, gr->n);
					p->requarantined = true;
					sent_groups++;
				}
			} else if (pass == 1 && gr->d.route == DISPOSITION_CENTRAL_PVO) {
				enum pl_result r =
				    pl_send(p, gr, p->job->rules->central_hostport, NULL);
				/* Unreachable, 4xx or 5xx: nothing kept here, the client retries.
				 */
				if (r != PL_OK) {
					deferred = true;
				} else {
					log_info("gw.quarantined",
						 "id=%s quarantine=central rcpts=%zu host=%s",
						 p->job->id, gr->n,
						 p->job->rules->central_hostport);
					p->requarantined = true;
					sent_groups++;
				}
			} else if (pass == 1 && gr->d.route == DISPOSITION_EXTERNAL_SPAM) {
				enum pl_result r =
				    pl_send(p, gr, p->job->rules->external_hostport, NULL);
				/* The manager must take it: anything else is retried upstream. */
				if (r != PL_OK) {
					deferred = true;
				} else {
					p->requarantined = true;
					sent_groups++;
				}
			} else if (pass == 2 && pl_delivery_bound(&gr->d)) {
				const char *host = gr->d.route == DISPOSITION_ALT_HOST
						       ? gr->d.target
						       : p->cfg->next_hop;
				enum pl_result r = pl_send(p, gr, host, &refusal);
				if (r == PL_DEFERRED)
					deferred = true;
				else if (r == PL_REFUSED)
					refused_groups++;
				else
					sent_groups++;
			}
		}
	}
	if (deferred) {
		snprintf(reply, replylen,
			 "451 4.3.0 Error: could not relay the message, try again "
			 "later");
	} else if (refused_groups > 0 && sent_groups == 0 && refusal != NULL && refusal[0] == '5') {
		/* Every destination refused it for good: say so with the next hop's words. */
		snprintf(reply, replylen, "%.*s", (int)(replylen > 1 ? replylen - 1 : 0), refusal);
	} else if (refused_groups > 0 && sent_groups == 0) {
		snprintf(reply, replylen, "554 5.0.0 Error: the next hop refused the message");
	} else {
		snprintf(reply, replylen, "250 2.0.0 Ok: %s", p->job->id);
	}
out:
	free(refusal);
	disposition_groups_free(g, ng);
}

static void pl_released(struct pl *p, char *reply, size_t replylen)
{
	log_info("gw.released", "id=%s session=%s client=%s sender=<%s> rcpts=%zu size=%zu",
		 p->job->id, p->job->session_id, p->job->client_ip,
		 p->m->env.sender != NULL ? p->m->env.sender : "", p->n, p->m->len);
	gw_events_released(p->job->events, p->job->id);
	for (size_t i = 0; i < p->n; i++) {
		memset(&p->disp[i], 0, sizeof(p->disp[i]));
		p->disp[i].reason = "released";
	}
	pl_execute(p, reply, replylen);
}

/* A rule's name as one word of a reply: printable, no blanks, at most 100 bytes. */
static void pl_reply_word(const char *s, char *out, size_t cap)
{
	size_t n = 0;
	for (; s != NULL && s[n] != '\0' && n + 1 < cap && n < 100; n++)
		out[n] = s[n] > ' ' && s[n] < 127 && s[n] != '"' ? s[n] : '_';
	out[n] = '\0';
}

/*
 * The reply to a rescan's release (the manager's message id rescan_id) once the
 * message went its way: clean (delivered, or dropped by a filter) or
 * requarantined (a copy went to a quarantine), with the rule that put it there.
 * Any other reply (451, 554) stays as it is: the manager retries or fails it.
 */
static void pl_rescan_reply(const struct pl *p, const char *rescan_id, char *reply, size_t replylen)
{
	if (reply[0] != '2')
		return;
	const char *rule = NULL;
	if (p->requarantined)
		rule = p->npvo > 0 ? p->pvo[0].reason : p->virus != NULL ? p->virus : p->verdict;
	char word[128];
	pl_reply_word(rule, word, sizeof(word));
	snprintf(reply, replylen, "250 2.0.0 Ok: %s rescan=%s id=%s%s%s", p->job->id,
		 p->requarantined ? "requarantined" : "clean", rescan_id,
		 word[0] != '\0' ? " rule=" : "", word);
}

void pipeline_run(const struct pipeline_job *job, char *reply, size_t replylen)
{
	struct pl p;
	char rescan_id[PVO_OUT_RESCAN_ID_MAX + 1] = "";
	memset(&p, 0, sizeof(p));
	p.job = job;
	p.cfg = &job->rules->cfg;
	p.m = job->msg;
	p.n = job->msg->env.nrcpts;
	p.rcpts = (const char *const *)job->msg->env.rcpts;
	p.disp = xcalloc(p.n + 1, sizeof(*p.disp));
	p.safe = xcalloc(p.n + 1, sizeof(*p.safe));
	p.undecided = xcalloc(p.n + 1, sizeof(*p.undecided));
	for (size_t i = 0; i < p.n; i++)
		p.undecided[i] = true;

	p.more_pvo = xcalloc(p.n + 1, sizeof(*p.more_pvo));
	p.entered = clock_now_ms();

	if (job->events != NULL) {
		pl_parse_meta(&p); /* the subject, Message-ID and attachments of the event */
		gw_events_received(job->events, job, p.meta);
	}
	if (job->released) {
		/* Released outbreak mail comes back marked rescan=yes: judged again, whole. */
		if (!pvo_out_released_rescan(p.m->data, p.m->len)) {
			pl_released(&p, reply, replylen);
			goto out;
		}
		(void)pvo_out_released_rescan_id(p.m->data, p.m->len, rescan_id);
		log_info("gw.released_rescan", "id=%s session=%s client=%s manager_id=%s", job->id,
			 job->session_id, job->client_ip, rescan_id[0] != '\0' ? rescan_id : "-");
	}
	pl_slbl(&p);
	if ((pl_antispam(&p) < 0 && !pl_scan_failed(&p, true)) ||
	    (pl_antivirus(&p) < 0 && !pl_scan_failed(&p, false))) {
		snprintf(reply, replylen, "%s", PIPELINE_REPLY_ENGINE);
		goto out;
	}
	pl_outbreak(&p);
	if (!p.tempfail)
		pl_filters(&p);
	if (p.tempfail) {
		snprintf(reply, replylen, "%s", PIPELINE_REPLY_UNDECIDED);
		goto out;
	}
	char score[32] = "none";
	if (p.scanned)
		snprintf(score, sizeof(score), "%.2f", p.score);
	char q[256];
	log_info("gw.scanned",
		 "id=%s session=%s client=%s sender=<%s> rcpts=%zu size=%zu "
		 "verdict=%s score=%s rules=%s virus=%s",
		 job->id, job->session_id, job->client_ip,
		 p.m->env.sender != NULL ? p.m->env.sender : "", p.n, p.m->len,
		 p.verdict != NULL ? p.verdict : (p.scanned ? "clean" : "none"), score,
		 log_quote(q, sizeof(q), p.spam_detail != NULL ? p.spam_detail : "-"),
		 p.virus != NULL ? p.virus : "-");
	gw_events_verdict(job->events, job->id, p.cfg->antispam_engine, p.scanned, p.score,
			  p.verdict, p.spam_detail, p.virus);
	if (rescan_id[0] != '\0' && p.outbreak_rule != NULL) {
		/* still an outbreak: it stays held on the manager, nothing is sent */
		char word[128];
		pl_reply_word(p.outbreak_rule, word, sizeof(word));
		log_info("gw.rescan_kept", "id=%s manager_id=%s rule=%s", job->id, rescan_id, word);
		snprintf(reply, replylen, "250 2.0.0 Ok: %s rescan=kept id=%s rule=%s", job->id,
			 rescan_id, word);
		goto out;
	}
	pl_execute(&p, reply, replylen);
	if (rescan_id[0] != '\0') {
		pl_rescan_reply(&p, rescan_id, reply, replylen);
		char qr[600];
		log_info("gw.rescan", "id=%s manager_id=%s reply=%s", job->id, rescan_id,
			 log_quote(qr, sizeof(qr), reply));
	}
out:
	if (p.have_fres)
		filter_result_clear(&p.fres);
	if (p.meta != NULL)
		msgmeta_free(p.meta);
	free(p.filter_header);
	free(p.strip);
	free(p.spam_detail);
	free(p.virus);
	free(p.outbreak_rule);
	free(p.failed[0]);
	free(p.failed[1]);
	free(p.more_pvo);
	free(p.disp);
	free(p.safe);
	free(p.undecided);
}

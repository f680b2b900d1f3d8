/*
 * notify — sends the end users' spam-quarantine digests on a schedule, and
 * one digest at once when asked ("send my digest now").
 *
 * Who gets one. Every end-user account (role enduser) with a new quarantined
 * message addressed to any of its addresses gets ONE digest covering all of its
 * addresses (aliases consolidated), in its own language and time zone (else the
 * configured ones). A recipient address that belongs to no account (LDAP and IMAP
 * users exist only once they log in, and many never do) gets a digest of its own,
 * addressed to it, in the configured language. No new message: no mail.
 *
 * What is new. Messages are numbered in the store (seq). digest_state keeps, per
 * address, the highest seq already listed, and under the key "*" the scheduler's
 * low-water mark: every still-quarantined message above it has not been listed to
 * someone yet. A scheduled run:
 *
 *   mark W, top M = max seq    (store_digest_state_get "*", store_digest_max_seq)
 *   addresses with quarantined mail in (W, M]   (store_digest_candidates)
 *   group them by account; per group list (last_seq(address) or W, M]
 *   sent     -> last_seq(address) = M for each address in the group
 *   failed   -> the new mark stays at or below the group's oldest floor, so the
 *               next run (the next scheduled time) offers it again
 *   mark "*" = min(M, floors of failed groups)
 *
 * "Send now" lists (last_seq(address) or 0, M]: everything still quarantined and
 * not yet listed, and records like a scheduled run.
 *
 * How it is sent. Through the release path: SMTP to [release] primary_host, to the
 * secondary on no connection or 4xx, from [notifications] from. A digest that
 * cannot be delivered is not queued: it is built again, with whatever is new by
 * then, at the next scheduled time. (The store's delivery queue holds quarantined
 * messages only, and a day-old digest is worth less than a fresh one.)
 *
 * Threads and time zones. The schedule runs on the event loop as a timer; each
 * digest is built and sent on one worker thread (so runs never overlap and
 * digest_state has one writer). Zones come from common/tz: loaded once, immutable,
 * usable from any thread; the process environment's TZ and localtime() are never
 * touched.
 *
 * Not for: the mail's format and links (digest/digest_mail, digest_token), accounts (store).
 */
#include "digest/notify.h"

#include <ctype.h>
#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/tz.h"
#include "common/workpool.h"
#include "common/xalloc.h"
#include "digest/notify_schedule.h"
#include "digest/digest_mail.h"
#include "digest/digest_pages.h"
#include "digest/digest_token.h"
#include "smtp/smtp_client.h"
#include "smtp/smtp_failover.h"
#include "store/store.h"

/* The external spam quarantine: the only one end users see. */
#define NOTIFY_QUARANTINE "spam"
/* The link key's name among the store's secrets (store_secret_get). */
#define NOTIFY_KEY_SECRET "digest_key"
/* The scheduled run's name among the cluster-wide jobs (store_job_try). */
#define NOTIFY_JOB "digest_schedule"
/* SMTP steps one digest session may take in all (see smtp_client session_timeout). */
#define NOTIFY_SESSION_STEPS 10

/* --- the service ------------------------------------------------------------ */

/* One immutable copy of the settings, shared by the loop and running jobs. */
struct notify_settings {
	unsigned refs; /* under notify.lock */
	bool enabled;
	struct notify_schedule sched;
	struct tz_zone *tz;
	char *from, *base_url, *hostname;
	enum digest_lang lang;
	unsigned max_entries;
	int64_t delete_after_ms;
	char *primary, *secondary, *source, *helo;
	int64_t timeout_ms;
	unsigned char key[DIGEST_KEY_LEN];
};

struct notify {
	struct event_base *base;
	struct store *st;
	struct event *timer;
	struct workpool *wp;
	pthread_mutex_t lock;
	struct notify_settings *cur; /* under lock */
	unsigned queued;	     /* jobs waiting or running; under lock */
	bool scheduled_busy;	     /* a scheduled run is queued or running; under lock */
	bool stopping;		     /* under lock */
	int64_t next_run;	     /* loop thread */
};

/* One digest to build: to an account, or to a bare address. */
struct notify_job {
	struct notify *n;
	struct notify_settings *s;
	bool scheduled;
	char *username;
	char **addresses;
	size_t naddresses;
	char *address;
};

static void notify_settings_free(struct notify_settings *s)
{
	if (s == NULL)
		return;
	tz_free(s->tz);
	free(s->from);
	free(s->base_url);
	free(s->hostname);
	free(s->primary);
	free(s->secondary);
	free(s->source);
	free(s->helo);
	sodium_memzero(s->key, sizeof(s->key));
	free(s);
}

static struct notify_settings *notify_settings_ref(struct notify *n)
{
	pthread_mutex_lock(&n->lock);
	struct notify_settings *s = n->cur;
	s->refs++;
	pthread_mutex_unlock(&n->lock);
	return s;
}

static void notify_settings_unref(struct notify *n, struct notify_settings *s)
{
	pthread_mutex_lock(&n->lock);
	bool last = --s->refs == 0;
	pthread_mutex_unlock(&n->lock);
	if (last)
		notify_settings_free(s);
}

static char *notify_dup_or_null(const char *s)
{
	return s != NULL && *s != '\0' ? xstrdup(s) : NULL;
}

static int notify_settings_make(const struct notify_config *cfg, const unsigned char *key,
				struct notify_settings **out)
{
	struct notify_settings *s = xcalloc(1, sizeof(*s));
	char *err = NULL;
	int rc;
	char q[256];
	*out = NULL;
	s->refs = 1;
	s->enabled = cfg->enabled;
	if ((rc = notify_schedule_parse(cfg->schedule, &s->sched, &err)) < 0) {
		log_error("notify.bad_schedule", "schedule=%s error=%s",
			  log_quote(q, sizeof(q), cfg->schedule), err);
		free(err);
		goto fail;
	}
	const char *zone = cfg->time_zone != NULL ? cfg->time_zone : "UTC";
	if ((rc = tz_load(zone, &s->tz)) < 0) {
		log_error("notify.bad_time_zone", "time_zone=%s rc=%d",
			  log_quote(q, sizeof(q), zone), rc);
		goto fail;
	}
	if (digest_lang_parse(cfg->language, &s->lang) < 0)
		s->lang = DIGEST_LANG_JA;
	s->from = notify_dup_or_null(cfg->from);
	s->base_url = xstrdup(cfg->base_url != NULL ? cfg->base_url : "");
	size_t blen = strlen(s->base_url);
	while (blen > 0 && s->base_url[blen - 1] == '/')
		s->base_url[--blen] = '\0';
	s->hostname = xstrdup(cfg->hostname != NULL ? cfg->hostname : "lazaret");
	s->max_entries = cfg->max_entries != 0 ? cfg->max_entries : 100;
	s->delete_after_ms = cfg->delete_after_ms;
	s->primary = notify_dup_or_null(cfg->primary_host);
	s->secondary = notify_dup_or_null(cfg->secondary_host);
	s->source = notify_dup_or_null(cfg->source_address);
	s->helo = notify_dup_or_null(cfg->helo_name);
	s->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 60000;
	memcpy(s->key, key, DIGEST_KEY_LEN);
	*out = s;
	return 0;

fail:
	notify_settings_free(s);
	return -EINVAL;
}

/* smtp_failover: every attempt that did not deliver is logged with its reason. */
static void notify_attempted(void *arg, const struct smtp_failover_session *ss,
			     const struct smtp_client_result *res, bool failing_over)
{
	const char *rcpt = *(const char *const *)arg;
	char q[512];
	enum smtp_client_outcome o = res->nrcpts > 0 ? res->rcpts[0].outcome : SMTP_CLIENT_DEFERRED;
	const char *why = res->nrcpts > 0 && res->rcpts[0].reply != NULL ? res->rcpts[0].reply
			  : res->error != NULL				 ? res->error
									 : "";
	if (o != SMTP_CLIENT_DELIVERED)
		log_warn("notify.send_attempt", "host=%s rcpt=%s outcome=%s reply=%s", ss->host,
			 rcpt, smtp_client_outcome_name(o), log_quote(q, sizeof(q), why));
}

/* Tries primary, then secondary on no connection or 4xx. 0 delivered, else negative. */
static int notify_deliver(const struct notify_settings *s, const char *rcpt, const char *data,
			  size_t len)
{
	const char *rcpts[] = {rcpt};
	struct smtp_client_options opt = {
	    .helo_name = s->helo,
	    .source_address = s->source,
	    .timeout_ms = s->timeout_ms,
	    .session_timeout_ms = s->timeout_ms * NOTIFY_SESSION_STEPS,
	};
	struct smtp_client_message msg = {
	    .sender = s->from,
	    .rcpts = rcpts,
	    .nrcpts = 1,
	    .body = (const unsigned char *)data,
	    .body_len = len,
	};
	const char *logged = rcpt; /* the hook's arg points at it: named in its log lines */
	struct smtp_failover_hooks hooks = {.attempted = notify_attempted, .arg = &logged};
	struct smtp_failover_rcpt out[1];
	int rc = smtp_failover_send(s->primary, s->secondary, &opt, &msg, &hooks, out);
	smtp_failover_rcpts_free(out, 1);
	return rc;
}

/* The link for one action on one entry, or NULL when it would be dead already. */
static char *notify_link(const struct notify_settings *s, const struct store_digest_entry *e,
			 enum digest_action action, enum digest_lang lang, int64_t now)
{
	struct digest_token t = {.action = action, .lang = lang};
	t.expires_ms = s->delete_after_ms > 0 ? e->received_at + s->delete_after_ms
					      : now + DIGEST_LINK_DEFAULT_TTL_MS;
	if (t.expires_ms <= now)
		return NULL;
	snprintf(t.msg_id, sizeof(t.msg_id), "%s", e->id);
	if (snprintf(t.rcpt, sizeof(t.rcpt), "%s", e->recipient) >= (int)sizeof(t.rcpt))
		return NULL;
	char *tok = digest_token_sign(s->key, &t);
	if (tok == NULL)
		return NULL;
	char *url = xasprintf("%s/d/%s", s->base_url, tok);
	free(tok);
	return url;
}

static int notify_entry_newest_first(const void *pa, const void *pb)
{
	const struct store_digest_entry *a = pa, *b = pb;
	if (a->received_at != b->received_at)
		return a->received_at > b->received_at ? -1 : 1;
	return a->seq > b->seq ? -1 : a->seq < b->seq;
}

/* Who one digest is for. */
struct notify_target {
	const char *const *addresses; /* lower-case */
	size_t naddresses;
	const char *to;
	enum digest_lang lang;
	const struct tz_zone *tz;
};

/*
 * Builds and sends one digest covering tg's addresses: for each, what is
 * quarantined in (its last_seq, or floor when it has none, upto]. *sent tells
 * whether a mail went out. 0 (also when there was nothing new), or negative when it
 * could not be built or delivered (nothing is recorded then).
 */
static int notify_digest(struct store *st, const struct notify_settings *s,
			 const struct notify_target *tg, int64_t floor, int64_t upto, int64_t now,
			 bool *sent)
{
	struct store_digest_entry *all = NULL;
	size_t nall = 0, total = 0;
	struct digest_entry *entries = NULL;
	char **times = NULL, **links = NULL, *mail = NULL; /* own what entries borrow */
	size_t mail_len = 0;
	int rc = 0;
	*sent = false;
	for (size_t i = 0; i < tg->naddresses; i++) {
		int64_t last = floor;
		int r = store_digest_state_get(st, tg->addresses[i], &last, NULL);
		if (r < 0 && r != -ENOENT) {
			rc = r;
			goto done;
		}
		if (r == -ENOENT)
			last = floor;
		struct store_digest_entry *v = NULL;
		size_t k = 0, tot = 0;
		if ((rc = store_digest_entries(st, NOTIFY_QUARANTINE, tg->addresses[i], last, upto,
					       s->max_entries, &v, &k, &tot)) < 0)
			goto done;
		all = xreallocarray(all, nall + k + 1, sizeof(*all));
		if (k > 0) /* v may be NULL when nothing is new */
			memcpy(all + nall, v, k * sizeof(*v));
		nall += k;
		total += tot;
		free(v); /* the strings moved into all */
	}
	if (total == 0)
		goto done;
	qsort(all, nall, sizeof(*all), notify_entry_newest_first);
	size_t listed = nall < s->max_entries ? nall : s->max_entries;
	entries = xcalloc(listed + 1, sizeof(*entries));
	times = xcalloc(listed + 1, sizeof(*times));
	links = xcalloc(2 * listed + 1, sizeof(*links));
	for (size_t i = 0; i < listed; i++) {
		const struct store_digest_entry *e = &all[i];
		char when[64];
		tz_format(tg->tz, e->received_at, when, sizeof(when));
		times[i] = xstrdup(when);
		links[2 * i] = notify_link(s, e, DIGEST_ACTION_RELEASE, tg->lang, now);
		links[2 * i + 1] = notify_link(s, e, DIGEST_ACTION_SAFELIST, tg->lang, now);
		entries[i] = (struct digest_entry){
		    .recipient = e->recipient,
		    .sender = e->sender,
		    .from = e->from,
		    .subject = e->subject,
		    .received = times[i],
		    .has_score = e->has_score,
		    .score = e->score,
		    .release_url = links[2 * i],
		    .safelist_url = links[2 * i + 1],
		};
	}
	struct digest_mail m = {
	    .lang = tg->lang,
	    .from = s->from,
	    .to = tg->to,
	    .addresses = tg->addresses,
	    .naddresses = tg->naddresses,
	    .entries = entries,
	    .nentries = listed,
	    .not_listed = total - listed,
	    .portal_url = *s->base_url != '\0' ? s->base_url : NULL,
	    .now_ms = now,
	    .utc_offset_s = tz_offset(tg->tz, now / 1000),
	    .hostname = s->hostname,
	};
	if ((rc = digest_build_mail(&m, &mail, &mail_len)) < 0)
		goto done;
	if ((rc = notify_deliver(s, tg->to, mail, mail_len)) < 0) {
		log_warn("notify.digest_failed", "to=%s entries=%zu rc=%d", tg->to, total, rc);
		goto done;
	}
	*sent = true;
	log_info("notify.digest_sent", "to=%s addresses=%zu entries=%zu listed=%zu lang=%s", tg->to,
		 tg->naddresses, total, listed, digest_lang_name(tg->lang));
	rc = store_digest_state_put(st, tg->addresses, tg->naddresses, upto, now);
	if (rc < 0)
		log_error("notify.state_failed", "to=%s rc=%d", tg->to, rc);

done:
	for (size_t i = 0; entries != NULL && times != NULL && times[i] != NULL; i++) {
		free(links[2 * i]);
		free(links[2 * i + 1]);
		free(times[i]);
	}
	free(entries);
	free(times);
	free(links);
	free(mail);
	store_digest_entries_free(all, nall);
	return rc;
}

/* Target of an account (or of a bare address when u is NULL). */
static void notify_target_of(const struct notify_settings *s, const struct store_digest_user *u,
			     const char *const *addresses, size_t n, struct tz_zone **own_tz,
			     struct notify_target *tg)
{
	memset(tg, 0, sizeof(*tg));
	tg->addresses = addresses;
	tg->naddresses = n;
	tg->to = addresses[0];
	tg->lang = s->lang;
	tg->tz = s->tz;
	*own_tz = NULL;
	if (u == NULL)
		return;
	/* A username that is one of the account's addresses is the natural inbox. */
	for (size_t i = 0; i < n; i++) {
		if (strcasecmp(addresses[i], u->username) == 0)
			tg->to = addresses[i];
	}
	enum digest_lang l;
	if (digest_lang_parse(u->language, &l) == 0)
		tg->lang = l;
	if (u->time_zone != NULL && tz_load(u->time_zone, own_tz) == 0)
		tg->tz = *own_tz;
}

static void notify_lower(char *s)
{
	for (; *s != '\0'; s++)
		*s = (char)tolower((unsigned char)*s);
}

static bool notify_has(char **v, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(v[i], s) == 0)
			return true;
	}
	return false;
}

static void notify_run_scheduled(struct notify *n, const struct notify_settings *s, int64_t now)
{
	int64_t mark = 0, top = 0;
	char **cands = NULL, **covered = NULL;
	size_t ncands = 0, ncovered = 0, sent = 0, failed = 0;
	int rc = store_digest_state_get(n->st, "*", &mark, NULL);
	if (rc < 0 && rc != -ENOENT)
		return;
	if (rc == -ENOENT)
		mark = 0;
	if (store_digest_max_seq(n->st, &top) < 0 || top <= mark)
		return;
	if (store_digest_candidates(n->st, NOTIFY_QUARANTINE, mark, top, &cands, &ncands) < 0)
		return;
	int64_t next_mark = top;
	for (size_t i = 0; i < ncands; i++) {
		/* "*" is the mark's own key in digest_state, never a mailbox to write to. */
		if (strcmp(cands[i], "*") == 0 || notify_has(covered, ncovered, cands[i]))
			continue;
		struct store_digest_user *u = NULL;
		const char *const *addrs = (const char *const *)&cands[i];
		size_t naddrs = 1;
		if (store_digest_user_by_address(n->st, cands[i], &u) == 0 && u->naddresses > 0) {
			addrs = (const char *const *)u->addresses;
			naddrs = u->naddresses;
		}
		for (size_t k = 0; k < naddrs; k++) {
			covered = xreallocarray(covered, ncovered + 1, sizeof(*covered));
			covered[ncovered++] = xstrdup(addrs[k]);
		}
		struct tz_zone *own = NULL;
		struct notify_target tg;
		notify_target_of(s, u, addrs, naddrs, &own, &tg);
		bool was_sent = false;
		if (notify_digest(n->st, s, &tg, mark, top, now, &was_sent) < 0) {
			failed++;
			/* Offer this group again next time: keep the mark at its oldest floor. */
			for (size_t k = 0; k < naddrs; k++) {
				int64_t last = mark;
				if (store_digest_state_get(n->st, addrs[k], &last, NULL) < 0)
					last = mark;
				if (last < next_mark)
					next_mark = last;
			}
		} else if (was_sent) {
			sent++;
		}
		tz_free(own);
		store_digest_user_free(u);
	}
	const char *key[] = {"*"};
	if (store_digest_state_put(n->st, key, 1, next_mark, now) < 0)
		log_error("notify.mark_failed", "mark=%lld", (long long)next_mark);
	log_info("notify.run", "candidates=%zu sent=%zu failed=%zu from_seq=%lld to_seq=%lld",
		 ncands, sent, failed, (long long)mark, (long long)top);
	for (size_t i = 0; i < ncands; i++)
		free(cands[i]);
	free(cands);
	for (size_t i = 0; i < ncovered; i++)
		free(covered[i]);
	free(covered);
}

static void notify_run_now(struct notify *n, const struct notify_settings *s,
			   const struct notify_job *j, int64_t now)
{
	struct store_digest_user *u = NULL;
	char **addrs = NULL;
	size_t naddrs = 0;
	int64_t top = 0;
	if (j->username != NULL)
		(void)store_digest_user_by_name(n->st, j->username, &u);
	else if (store_digest_user_by_address(n->st, j->address, &u) < 0)
		u = NULL;
	/* The account's addresses, and those the session brought (LDAP, IMAP). */
	if (u != NULL) {
		for (size_t i = 0; i < u->naddresses; i++) {
			addrs = xreallocarray(addrs, naddrs + 1, sizeof(*addrs));
			addrs[naddrs++] = xstrdup(u->addresses[i]);
		}
	}
	for (size_t i = 0; i < j->naddresses + (j->address != NULL ? 1 : 0); i++) {
		char *a = xstrdup(i < j->naddresses ? j->addresses[i] : j->address);
		notify_lower(a);
		if (notify_has(addrs, naddrs, a)) {
			free(a);
			continue;
		}
		addrs = xreallocarray(addrs, naddrs + 1, sizeof(*addrs));
		addrs[naddrs++] = a;
	}
	if (naddrs > 0 && store_digest_max_seq(n->st, &top) == 0) {
		struct tz_zone *own = NULL;
		struct notify_target tg;
		bool sent = false;
		notify_target_of(s, u, (const char *const *)addrs, naddrs, &own, &tg);
		int rc = notify_digest(n->st, s, &tg, 0, top, now, &sent);
		if (rc == 0 && !sent)
			log_info("notify.nothing_new", "to=%s", tg.to);
		tz_free(own);
	}
	for (size_t i = 0; i < naddrs; i++)
		free(addrs[i]);
	free(addrs);
	store_digest_user_free(u);
}

static void notify_job_free(struct notify_job *j)
{
	free(j->username);
	for (size_t i = 0; i < j->naddresses; i++)
		free(j->addresses[i]);
	free(j->addresses);
	free(j->address);
	free(j);
}

/*
 * The scheduled run, once for every lazaretd sharing the store: a process that
 * finds another one running it skips this time. One that starts after the other
 * finished sends nothing twice: the mark and each address's last_seq say what
 * was listed already.
 */
static void notify_run_scheduled_once(struct notify *n, const struct notify_settings *s)
{
	bool held = false;
	int rc = store_job_try(n->st, NOTIFY_JOB, &held);
	if (rc < 0) {
		log_error("notify.run_failed", "op=job_try rc=%d", rc);
		return;
	}
	if (!held) {
		log_info("notify.run_skipped", "reason=\"another node is running it\"");
		return;
	}
	notify_run_scheduled(n, s, clock_now_ms());
	store_job_done(n->st, NOTIFY_JOB);
}

/* Worker thread. */
static void notify_job_run(void *arg)
{
	struct notify_job *j = arg;
	struct notify *n = j->n;
	pthread_mutex_lock(&n->lock);
	bool stopping = n->stopping;
	pthread_mutex_unlock(&n->lock);
	if (!stopping) {
		if (j->s->from == NULL)
			log_warn("notify.no_from", "reason=\"[notifications] from is not set\"");
		else if (j->scheduled)
			notify_run_scheduled_once(n, j->s);
		else
			notify_run_now(n, j->s, j, clock_now_ms());
	}
	notify_settings_unref(n, j->s);
	pthread_mutex_lock(&n->lock);
	n->queued--;
	if (j->scheduled)
		n->scheduled_busy = false;
	pthread_mutex_unlock(&n->lock);
	notify_job_free(j);
}

/* Queues j unless too many are waiting; takes j either way. */
static int notify_submit(struct notify *n, struct notify_job *j)
{
	pthread_mutex_lock(&n->lock);
	int rc = 0;
	if (n->stopping)
		rc = -ESHUTDOWN;
	else if (n->queued >= NOTIFY_MAX_QUEUED || (j->scheduled && n->scheduled_busy))
		rc = -EAGAIN;
	if (rc == 0) {
		n->queued++;
		if (j->scheduled)
			n->scheduled_busy = true;
	}
	pthread_mutex_unlock(&n->lock);
	if (rc < 0) {
		notify_job_free(j);
		return rc;
	}
	j->s = notify_settings_ref(n);
	workpool_submit(n->wp, notify_job_run, j);
	return 0;
}

int notify_send_now(struct notify *n, const char *username, const char *const *addresses,
		    size_t naddresses, const char *address)
{
	if (username == NULL && address == NULL)
		return -EINVAL;
	struct notify_job *j = xcalloc(1, sizeof(*j));
	j->n = n;
	j->username = username != NULL ? xstrdup(username) : NULL;
	j->address = address != NULL ? xstrdup(address) : NULL;
	if (naddresses > 0) {
		j->addresses = xcalloc(naddresses, sizeof(char *));
		for (size_t i = 0; i < naddresses; i++)
			j->addresses[i] = xstrdup(addresses[i]);
		j->naddresses = naddresses;
	}
	return notify_submit(n, j);
}

static int notify_send_now_hook(void *arg, const char *username, const char *const *addresses,
				size_t naddresses, const char *address)
{
	return notify_send_now(arg, username, addresses, naddresses, address);
}

static void notify_arm(struct notify *n)
{
	struct notify_settings *s = n->cur; /* loop thread: the only writer of cur */
	if (!s->enabled) {
		evtimer_del(n->timer);
		return;
	}
	int64_t now = clock_now_ms();
	n->next_run = notify_schedule_next(&s->sched, s->tz, now);
	int64_t wait = n->next_run - now;
	struct timeval tv = {(time_t)(wait / 1000), (suseconds_t)(wait % 1000 * 1000)};
	evtimer_add(n->timer, &tv);
	char when[64];
	tz_format(s->tz, n->next_run, when, sizeof(when));
	log_debug("notify.next_run", "at=%s", log_quote((char[80]){0}, 80, when));
}

static void notify_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct notify *n = arg;
	struct notify_job *j = xcalloc(1, sizeof(*j));
	j->n = n;
	j->scheduled = true;
	int rc = notify_submit(n, j);
	if (rc == -EAGAIN)
		log_warn("notify.run_skipped", "reason=\"the previous run is still going\"");
	notify_arm(n);
}

/*
 * The link key: the store's (NOTIFY_KEY_SECRET), so that a link minted by one
 * lazaretd works on every other sharing the store. The first start with none there
 * puts data_dir's key file in (created when missing): links mailed before the key
 * moved into the store stay valid. Two processes starting together agree
 * (store_secret_add keeps the first). 0 or a negative errno (logged).
 */
static int notify_key_load(struct store *st, const char *dir, unsigned char key[DIGEST_KEY_LEN])
{
	int rc = store_secret_get(st, NOTIFY_KEY_SECRET, key, DIGEST_KEY_LEN);
	if (rc != -ENOENT) {
		if (rc < 0)
			log_error("notify.key_failed", "source=store rc=%d", rc);
		return rc;
	}
	unsigned char file[DIGEST_KEY_LEN];
	rc = digest_key_load(dir, file);
	if (rc < 0) {
		log_error("notify.key_failed", "dir=%s rc=%d", dir, rc);
		return rc;
	}
	rc = store_secret_add(st, NOTIFY_KEY_SECRET, file, DIGEST_KEY_LEN, key);
	if (rc < 0)
		log_error("notify.key_failed", "source=store rc=%d", rc);
	else
		log_info("notify.key_stored", "from=%s",
			 sodium_memcmp(file, key, DIGEST_KEY_LEN) == 0 ? "data_dir"
								       : "another_node");
	sodium_memzero(file, sizeof(file));
	return rc;
}

int notify_new(struct event_base *base, struct store *st, const struct notify_config *cfg,
	       struct notify **out)
{
	unsigned char key[DIGEST_KEY_LEN];
	struct notify_settings *s = NULL;
	*out = NULL;
	int rc = notify_key_load(st, cfg->data_dir, key);
	if (rc < 0)
		return rc;
	rc = notify_settings_make(cfg, key, &s);
	sodium_memzero(key, sizeof(key));
	if (rc < 0)
		return rc;
	struct notify *n = xcalloc(1, sizeof(*n));
	n->base = base;
	n->st = st;
	n->cur = s;
	pthread_mutex_init(&n->lock, NULL);
	/* One thread: runs never overlap, and digest_state has a single writer. */
	n->wp = workpool_new(1);
	n->timer = evtimer_new(base, notify_on_timer, n);
	struct digest_service svc = {.send_now = notify_send_now_hook, .arg = n};
	memcpy(svc.key, s->key, DIGEST_KEY_LEN);
	digest_service_install(&svc);
	sodium_memzero(&svc, sizeof(svc));
	notify_arm(n);
	log_info("notify.start", "enabled=%s schedule=%s lang=%s", s->enabled ? "yes" : "no",
		 cfg->schedule != NULL ? log_quote((char[128]){0}, 128, cfg->schedule) : "-",
		 digest_lang_name(s->lang));
	*out = n;
	return 0;
}

int notify_reconfigure(struct notify *n, const struct notify_config *cfg)
{
	struct notify_settings *s = NULL;
	int rc = notify_settings_make(cfg, n->cur->key, &s);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&n->lock);
	struct notify_settings *old = n->cur;
	n->cur = s;
	pthread_mutex_unlock(&n->lock);
	notify_settings_unref(n, old);
	notify_arm(n);
	return 0;
}

void notify_free(struct notify *n)
{
	if (n == NULL)
		return;
	digest_service_install(NULL);
	event_free(n->timer);
	pthread_mutex_lock(&n->lock);
	n->stopping = true;
	pthread_mutex_unlock(&n->lock);
	workpool_free(n->wp); /* queued jobs see stopping; one being sent finishes */
	notify_settings_unref(n, n->cur);
	pthread_mutex_destroy(&n->lock);
	free(n);
}

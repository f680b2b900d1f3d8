/*
 * ingest — the path of a quarantined message from end of DATA to its 250, for
 * both quarantine listeners: the spam quarantine's ([spam_quarantine], every
 * message into "spam") and the PVO quarantines' ([pvo_quarantine], the
 * quarantines the gateway names in X-Lazaret-Quarantine headers).
 *
 *   loop thread:   ingest_message /     takes the message, counts it in flight
 *                  ingest_pvo_message
 *   worker thread: ingest_prepare       msgmeta, (PVO: the X-Lazaret-* headers,
 *                                       or a refusal), store_new_message,
 *                                       compression, store_submit_message
 *   writer thread: ingest_stored        the group commit returned (or failed)
 *   loop thread:   ingest_answer        250 "stored as <id>", the refusal, or 451;
 *                                       logs; metrics
 *
 * A message is never acknowledged before its transaction is durable, and a
 * message that cannot be stored gets a 451 so that the gateway keeps and retries it.
 *
 * PVO messages (docs/OPERATIONS.md "PVO quarantines"):
 *   no X-Lazaret-Quarantine         stored in "unclassified", logged (pvo.unclassified)
 *   a malformed X-Lazaret-* header  550 5.6.0, nothing stored (pvo.refused)
 *   a header naming "spam"          550 5.7.1, nothing stored (pvo.refused)
 *   an expiry already past          550 5.7.0, nothing stored (pvo.refused)
 *   an unknown policy name          that quarantine is created (store.quarantine_created)
 *   a retry (same origin id and     nothing stored twice: 250 with the first one's id
 *     gateway address)
 * Not for: deciding the quarantine from content (gateways do that).
 */
#include "manager/ingest.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

#include "common/clock.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/loopq.h"
#include "common/strbuf.h"
#include "common/workpool.h"
#include "common/xalloc.h"
#include "quarantine/metrics.h"
#include "mime/msgmeta.h"
#include "mime/msgmeta_store.h"
#include "quarantine/capacity.h"
#include "quarantine/own_events.h"
#include "quarantine/pvo_header.h"
#include "smtp/smtp_proto.h"
#include "smtp/smtp_session.h"
#include "store/store.h"

#define INGEST_QUARANTINE "spam"

struct ingest {
	struct store *st;
	struct loopq *q;
	struct workpool *wp;
	atomic_uint inflight;
	/*
	 * The registered gateways' addresses (canonical, sorted), which the PVO
	 * listener lets in: read at connect under gw_lock, loaded by a worker
	 * (ingest_gateways_load) so that the loop never waits for the store.
	 */
	pthread_mutex_t gw_lock;
	char **gw_addrs;
	size_t ngw;
	bool gw_loaded;		/* one load succeeded */
	atomic_bool gw_loading; /* a load is queued or running */
	struct event *gw_timer; /* every INGEST_GATEWAYS_REFRESH_MS */
	struct event_base *base;
	const struct capacity *capacity; /* NULL: no limit */
};

struct ingest_job {
	struct ingest *ing;
	struct smtp_session *session;
	struct smtp_message *msg;
	char peer[64];
	char id[IDS_UUID_LEN + 1];
	bool pvo;			  /* from the PVO listener */
	char stored_as[IDS_UUID_LEN + 1]; /* the id in the store (a retry: the first one's) */
	char refusal[256];		  /* PVO: the reply when the message is refused */
	char *quarantines;		  /* PVO, for the log: "a,b" */
	char *origin_id;
	int rc;
	/* for the log line */
	size_t size;
	size_t nrcpts;
	char *sender;
	char *verdict;
	char *gateway;
	bool has_score;
	double score;
	/* the manager's own "quarantine" event, queued once the message is stored */
	struct own_events_message *own;
	json_t *own_detail;
	unsigned own_flags;
	int64_t received_at;
};

struct ingest *ingest_new(struct event_base *base, struct store *st, unsigned nthreads)
{
	struct ingest *ing = xcalloc(1, sizeof(*ing));
	ing->st = st;
	ing->q = loopq_new(base);
	ing->wp = workpool_new(nthreads);
	ing->base = base;
	atomic_init(&ing->inflight, 0);
	atomic_init(&ing->gw_loading, false);
	pthread_mutex_init(&ing->gw_lock, NULL);
	msgmeta_init();
	return ing;
}

void ingest_set_store(struct ingest *ing, struct store *st)
{
	ing->st = st;
}

unsigned ingest_inflight(const struct ingest *ing)
{
	return atomic_load(&ing->inflight);
}

static void ingest_answer(void *arg)
{
	struct ingest_job *job = arg;
	char reply[300];
	char q[256];
	if (job->refusal[0] != '\0') {
		snprintf(reply, sizeof(reply), "%s", job->refusal);
		metrics_refused("policy");
		log_warn("pvo.refused", "session=%s client=%s size=%zu reply=%s",
			 smtp_session_id(job->session), job->peer, job->size,
			 log_quote(q, sizeof(q), job->refusal));
	} else if (job->rc == 0 && job->pvo) {
		snprintf(reply, sizeof(reply), "250 2.0.0 Ok: stored as %s", job->stored_as);
		metrics_add(METRICS_MESSAGES_RECEIVED, 1);
		metrics_add(METRICS_BYTES_RECEIVED, job->size);
		metrics_add(METRICS_RECIPIENTS_RECEIVED, job->nrcpts);
		char o[192];
		log_info("pvo.stored",
			 "session=%s client=%s id=%s sender=<%s> rcpts=%zu size=%zu quarantines=%s "
			 "origin_id=%s duplicate=%s",
			 smtp_session_id(job->session), job->peer, job->stored_as, job->sender,
			 job->nrcpts, job->size, log_quote(q, sizeof(q), job->quarantines),
			 log_quote(o, sizeof(o), job->origin_id != NULL ? job->origin_id : "-"),
			 strcmp(job->stored_as, job->id) != 0 ? "yes" : "no");
	} else if (job->rc == 0) {
		snprintf(reply, sizeof(reply), "250 2.0.0 Ok: stored as %s", job->id);
		metrics_add(METRICS_MESSAGES_RECEIVED, 1);
		metrics_add(METRICS_BYTES_RECEIVED, job->size);
		metrics_add(METRICS_RECIPIENTS_RECEIVED, job->nrcpts);
		char score[32] = "none";
		if (job->has_score)
			snprintf(score, sizeof(score), "%.2f", job->score);
		log_info("smtp.stored",
			 "session=%s client=%s id=%s sender=<%s> rcpts=%zu size=%zu verdict=%s "
			 "score=%s gateway=%s",
			 smtp_session_id(job->session), job->peer, job->id, job->sender,
			 job->nrcpts, job->size, job->verdict, score,
			 log_quote(q, sizeof(q), job->gateway));
	} else if (job->rc == -ENOTCONN) {
		/* the database is down or restarting: the gateway keeps it and retries */
		snprintf(reply, sizeof(reply),
			 "451 4.3.0 Error: quarantine store unavailable, try again later");
		metrics_add(METRICS_STORE_ERRORS, 1);
		log_error("smtp.store_unavailable", "session=%s client=%s id=%s size=%zu",
			  smtp_session_id(job->session), job->peer, job->id, job->size);
	} else {
		snprintf(reply, sizeof(reply),
			 "451 4.3.0 Error: could not store the message, try again later");
		metrics_add(METRICS_STORE_ERRORS, 1);
		log_error("smtp.store_failed", "session=%s client=%s id=%s size=%zu error=%s",
			  smtp_session_id(job->session), job->peer, job->id, job->size,
			  log_quote(q, sizeof(q), strerror(-job->rc)));
	}
	own_events_message_free(job->own);
	json_decref(job->own_detail);
	smtp_session_message_done(job->session, reply);
	atomic_fetch_sub(&job->ing->inflight, 1);
	free(job->sender);
	free(job->verdict);
	free(job->gateway);
	free(job->quarantines);
	free(job->origin_id);
	free(job);
}

static void ingest_stored(void *arg, int rc)
{
	struct ingest_job *job = arg;
	job->rc = store_error_unavailable(rc) ? -ENOTCONN : rc;
	if (rc == 0 && job->own != NULL) {
		/* committed: its tracking event, queued before the client hears of it */
		own_events_add(job->received_at, "quarantine", job->pvo ? job->stored_as : job->id,
			       "quarantined", job->own_flags, job->own_detail, job->own);
		job->own = NULL;
		job->own_detail = NULL;
	}
	loopq_post(job->ing->q, ingest_answer, job);
}

/* Builds the store's record from the SMTP envelope and the parsed headers. */
static struct store_new_message *ingest_build(struct ingest_job *job, int64_t now)
{
	struct smtp_message *m = job->msg;
	struct msgmeta *meta = NULL;
	msgmeta_parse(m->data, m->len, &meta);

	struct store_new_message *nm = xcalloc(1, sizeof(*nm));
	memcpy(nm->id, job->id, sizeof(nm->id));
	nm->quarantine = xstrdup(INGEST_QUARANTINE);
	nm->received_at = now;
	nm->sender = xstrdup(m->env.sender != NULL ? m->env.sender : "");
	nm->recipients = m->env.rcpts;
	nm->nrecipients = m->env.nrcpts;
	m->env.rcpts = NULL;
	m->env.nrcpts = 0;
	nm->raw = m->data;
	nm->raw_len = m->len;
	m->data = NULL;
	m->len = 0;
	if (meta != NULL) {
		nm->gateway = xstrdup_or_null(meta->gateway);
		nm->client_address = xstrdup_or_null(meta->client_address);
		nm->verdict = xstrdup_or_null(meta->verdict);
		nm->has_score = meta->has_score;
		nm->score = meta->score;
		msgmeta_store_copy(meta, nm);
		msgmeta_free(meta);
	}
	/* Defaults: the verdict spam (spam quarantine only); the gateway, the client address. */
	if (nm->verdict == NULL && !job->pvo)
		nm->verdict = xstrdup("spam");
	if (nm->gateway == NULL || nm->gateway[0] == '\0') {
		free(nm->gateway);
		nm->gateway = xstrdup(job->peer);
	}
	return nm;
}

/* The system quarantines a gateway may name in any case ("Virus"). */
static const char *const ingest_pvo_system[] = {"virus", "outbreak", "unclassified"};

/* s made fit for an SMTP reply: printable ASCII, anything else as '?'. */
static void ingest_reply_text(char *s)
{
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			*s = '?';
	}
}

/* Unix ms as RFC 3339 UTC, for a reply. */
static void ingest_rfc3339(int64_t ms, char *buf, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/*
 * The PVO part of nm from the message's X-Lazaret-* headers (nm->raw), or a
 * refusal in job->refusal (then nm is to be dropped). See the top of the file.
 */
static void ingest_pvo_headers(struct ingest_job *job, struct store_new_message *nm, int64_t now)
{
	struct pvo_headers h;
	char err[PVO_HEADER_ERR_MAX];
	if (pvo_headers_parse(nm->raw, nm->raw_len, &h, err, sizeof(err)) < 0) {
		ingest_reply_text(err);
		snprintf(job->refusal, sizeof(job->refusal), "550 5.6.0 Error: malformed %s", err);
		return;
	}
	struct strbuf names = STRBUF_INIT;
	if (h.nq == 0) {
		/* the gateway said nothing: hold it where an admin looks, never lose it */
		h.q[0].name = xstrdup("unclassified");
		h.q[0].reason = xstrdup("no X-Lazaret-Quarantine header");
		h.nq = 1;
		log_warn("pvo.unclassified",
			 "session=%s client=%s reason=\"no X-Lazaret-Quarantine "
			 "header\"",
			 smtp_session_id(job->session), job->peer);
	}
	for (size_t i = 0; i < h.nq; i++) {
		struct pvo_header_quarantine *q = &h.q[i];
		if (strcasecmp(q->name, "spam") == 0) {
			snprintf(job->refusal, sizeof(job->refusal),
				 "550 5.7.1 Error: the spam quarantine takes mail on the spam "
				 "quarantine listener, not here");
			goto done;
		}
		for (size_t k = 0; k < sizeof(ingest_pvo_system) / sizeof(ingest_pvo_system[0]);
		     k++) {
			if (strcasecmp(q->name, ingest_pvo_system[k]) == 0) {
				free(q->name);
				q->name = xstrdup(ingest_pvo_system[k]);
			}
		}
		if (q->expires_ms != 0 && q->expires_ms <= now) {
			char when[32], name[STORE_QUARANTINE_NAME_MAX + 1];
			ingest_rfc3339(q->expires_ms, when, sizeof(when));
			snprintf(name, sizeof(name), "%s", q->name);
			ingest_reply_text(name);
			snprintf(job->refusal, sizeof(job->refusal),
				 "550 5.7.0 Error: quarantine \"%s\" expired at %s, not stored",
				 name, when);
			goto done;
		}
		strbuf_printf(&names, "%s%s", i > 0 ? "," : "", q->name);
	}
	nm->memberships = xcalloc(h.nq, sizeof(*nm->memberships));
	for (size_t i = 0; i < h.nq; i++) {
		struct store_new_membership *w = &nm->memberships[nm->nmemberships++];
		w->quarantine = h.q[i].name;
		w->reason = h.q[i].reason;
		w->entered_at = h.q[i].entered_ms;
		w->expires_at = h.q[i].expires_ms;
		h.q[i].name = NULL;
		h.q[i].reason = NULL;
	}
	free(nm->quarantine);
	nm->quarantine = xstrdup(STORE_PVO_MARKER);
	nm->origin_gateway = xstrdup(job->peer);
	nm->origin_id = h.origin_id;
	h.origin_id = NULL;
	job->origin_id = xstrdup_or_null(nm->origin_id);
	nm->stored_as = job->stored_as;
	job->quarantines = strbuf_take(&names);
done:
	strbuf_free(&names);
	pvo_headers_clear(&h);
}

/*
 * The manager's own "quarantine" event of nm (own_events.h): the message's fields
 * for tracking (its Message-ID links it to the gateway's events), flags from the
 * verdict and the PVO quarantines.
 */
static void ingest_own_event(struct ingest_job *job, const struct store_new_message *nm)
{
	struct own_events_message *m = xcalloc(1, sizeof(*m));
	m->sender = xstrdup(nm->sender != NULL ? nm->sender : "");
	m->recipients = xcalloc(nm->nrecipients + 1, sizeof(*m->recipients));
	for (size_t i = 0; i < nm->nrecipients; i++)
		m->recipients[m->nrecipients++] = xstrdup(nm->recipients[i]);
	m->subject = xstrdup_or_null(nm->subject);
	m->message_id = xstrdup_or_null(nm->message_id);
	m->client_ip = xstrdup_or_null(nm->client_address);
	m->attachments = xcalloc(nm->nattachments + 1, sizeof(*m->attachments));
	for (size_t i = 0; i < nm->nattachments; i++) {
		if (nm->attachments[i].filename != NULL)
			m->attachments[m->nattachments++] = xstrdup(nm->attachments[i].filename);
	}
	m->size = (int64_t)nm->raw_len;
	unsigned flags = STORE_TRACK_QUARANTINED;
	json_t *d = json_object();
	json_object_set_new(d, "gateway", json_string(nm->gateway != NULL ? nm->gateway : ""));
	json_object_set_new(d, "size", json_integer((json_int_t)nm->raw_len));
	if (nm->nmemberships > 0) {
		json_t *qs = json_array();
		for (size_t i = 0; i < nm->nmemberships; i++) {
			const struct store_new_membership *w = &nm->memberships[i];
			json_t *q = json_object();
			json_object_set_new(q, "name", json_string(w->quarantine));
			if (w->reason != NULL)
				json_object_set_new(q, "reason", json_string(w->reason));
			json_array_append_new(qs, q);
			if (strcmp(w->quarantine, "virus") == 0)
				flags |= STORE_TRACK_VIRUS;
			else if (strcmp(w->quarantine, "outbreak") == 0)
				flags |= STORE_TRACK_OUTBREAK;
		}
		json_object_set_new(d, "quarantines", qs);
	} else {
		json_object_set_new(d, "quarantine", json_string(nm->quarantine));
	}
	if (nm->verdict != NULL) {
		json_object_set_new(d, "verdict", json_string(nm->verdict));
		if (strcmp(nm->verdict, "spam") == 0)
			flags |= STORE_TRACK_SPAM;
		else if (strcmp(nm->verdict, "suspect") == 0)
			flags |= STORE_TRACK_SUSPECT;
	}
	if (nm->has_score)
		json_object_set_new(d, "score", json_real(nm->score));
	job->own = m;
	job->own_detail = d;
	job->own_flags = flags;
	job->received_at = nm->received_at;
}

static void ingest_prepare(void *arg)
{
	struct ingest_job *job = arg;
	int64_t now = clock_now_ms();
	ids_uuidv7(now, job->id);
	struct store_new_message *nm = ingest_build(job, now);
	if (job->pvo) {
		ingest_pvo_headers(job, nm, now);
		if (job->refusal[0] != '\0') {
			job->size = nm->raw_len;
			store_new_message_free(nm);
			smtp_message_free(job->msg);
			job->msg = NULL;
			loopq_post(job->ing->q, ingest_answer, job);
			return;
		}
	}
	smtp_message_free(job->msg);
	job->msg = NULL;
	job->size = nm->raw_len;
	job->nrcpts = nm->nrecipients;
	job->sender = xstrdup(nm->sender);
	job->verdict = xstrdup(nm->verdict != NULL ? nm->verdict : "-");
	job->gateway = xstrdup(nm->gateway);
	job->has_score = nm->has_score;
	job->score = nm->score;
	ingest_own_event(job, nm);
	int rc = store_new_message_prepare(nm);
	if (rc < 0) {
		store_new_message_free(nm);
		ingest_stored(job, rc);
		return;
	}
	rc = store_submit_message(job->ing->st, nm, ingest_stored, job);
	if (rc < 0)
		ingest_stored(job, rc);
}

static void ingest_submit(struct ingest *ing, struct smtp_session *s, struct smtp_message *m,
			  bool pvo)
{
	struct ingest_job *job = xcalloc(1, sizeof(*job));
	job->ing = ing;
	job->session = s;
	job->msg = m;
	job->pvo = pvo;
	snprintf(job->peer, sizeof(job->peer), "%s", smtp_session_peer(s));
	atomic_fetch_add(&ing->inflight, 1);
	workpool_submit(ing->wp, ingest_prepare, job);
}

void ingest_message(void *ctx, struct smtp_session *s, struct smtp_message *m)
{
	ingest_submit(ctx, s, m, false);
}

void ingest_pvo_message(void *ctx, struct smtp_session *s, struct smtp_message *m)
{
	ingest_submit(ctx, s, m, true);
}

static int ingest_addr_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads the registry into ing's address list; keeps the old one on failure. */
static void ingest_gateways_read(struct ingest *ing)
{
	struct store_gateway **v = NULL;
	size_t n = 0;
	int rc = ing->st != NULL ? store_gateway_list(ing->st, &v, &n) : -ENOTCONN;
	if (rc < 0) {
		log_debug("pvo.gateways_unread", "error=%s", strerror(-rc));
		return;
	}
	char **addrs = xcalloc(n + 1, sizeof(*addrs));
	size_t na = 0;
	for (size_t i = 0; i < n; i++)
		if (v[i]->state == STORE_GATEWAY_REGISTERED)
			addrs[na++] = xstrdup(v[i]->address);
	store_gateway_array_free(v, n);
	qsort(addrs, na, sizeof(*addrs), ingest_addr_cmp);
	pthread_mutex_lock(&ing->gw_lock);
	char **old = ing->gw_addrs;
	size_t nold = ing->ngw;
	ing->gw_addrs = addrs;
	ing->ngw = na;
	ing->gw_loaded = true;
	pthread_mutex_unlock(&ing->gw_lock);
	for (size_t i = 0; i < nold; i++)
		free(old[i]);
	free(old);
}

static void ingest_gateways_load(void *arg)
{
	struct ingest *ing = arg;
	ingest_gateways_read(ing);
	atomic_store(&ing->gw_loading, false);
}

static void ingest_gateways_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct ingest *ing = arg;
	if (!atomic_exchange(&ing->gw_loading, true))
		workpool_submit(ing->wp, ingest_gateways_load, ing);
}

void ingest_gateways_start(struct ingest *ing)
{
	if (ing->gw_timer != NULL)
		return;
	ingest_gateways_read(ing);
	ing->gw_timer = event_new(ing->base, -1, EV_PERSIST, ingest_gateways_tick, ing);
	struct timeval tv = {.tv_sec = INGEST_GATEWAYS_REFRESH_MS / 1000,
			     .tv_usec = (INGEST_GATEWAYS_REFRESH_MS % 1000) * 1000};
	event_add(ing->gw_timer, &tv);
}

void ingest_gateways_changed(void *ctx)
{
	ingest_gateways_read(ctx);
}

/* 1: peer is a registered gateway; 0: it is not; -1: the registry was never read. */
static int ingest_pvo_gateway_registered(struct ingest *ing, const char *peer)
{
	char canon[STORE_GATEWAY_ADDRESS_MAX + 1];
	if (peer == NULL || store_gateway_address_canonical(peer, canon) < 0)
		return 0;
	const char *key = canon;
	pthread_mutex_lock(&ing->gw_lock);
	int rc = !ing->gw_loaded ? -1
				 : bsearch(&key, ing->gw_addrs, ing->ngw, sizeof(*ing->gw_addrs),
					   ingest_addr_cmp) != NULL;
	pthread_mutex_unlock(&ing->gw_lock);
	return rc;
}

int ingest_pvo_check_connect(void *ctx, struct smtp_session *s, char *reply, size_t replylen)
{
	int rc = ingest_pvo_gateway_registered(ctx, smtp_session_peer(s));
	if (rc > 0)
		return 0;
	if (rc < 0) {
		log_warn("pvo.gateways_unknown", "session=%s client=%s", smtp_session_id(s),
			 smtp_session_peer(s));
		snprintf(reply, replylen, "%s", INGEST_PVO_REGISTRY_UNKNOWN_REPLY);
		return -1;
	}
	log_warn("pvo.unregistered_gateway", "session=%s client=%s", smtp_session_id(s),
		 smtp_session_peer(s));
	snprintf(reply, replylen, "%s", INGEST_PVO_UNREGISTERED_REPLY);
	return -1;
}

void ingest_set_capacity(struct ingest *ing, const struct capacity *cap)
{
	ing->capacity = cap;
}

int ingest_pvo_check_mail(void *ctx, const char *sender, char *reply, size_t replylen)
{
	struct smtp_session *s = ctx;
	struct ingest *ing = smtp_session_server_ctx(s);
	if (!capacity_full(ing->capacity))
		return 0;
	metrics_add(METRICS_PVO_FULL_REFUSED, 1);
	log_warn("pvo.full", "session=%s client=%s reply=\"%s\"", smtp_session_id(s),
		 smtp_session_peer(s), INGEST_PVO_FULL_REPLY);
	snprintf(reply, replylen, "%s", INGEST_PVO_FULL_REPLY);
	return -1;
}

void ingest_stop(struct ingest *ing)
{
	if (ing->gw_timer != NULL)
		event_free(ing->gw_timer);
	ing->gw_timer = NULL;
	workpool_free(ing->wp);
	ing->wp = NULL;
}

void ingest_free(struct ingest *ing)
{
	if (ing == NULL)
		return;
	if (ing->gw_timer != NULL)
		event_free(ing->gw_timer);
	workpool_free(ing->wp);
	loopq_free(ing->q);
	for (size_t i = 0; i < ing->ngw; i++)
		free(ing->gw_addrs[i]);
	free(ing->gw_addrs);
	pthread_mutex_destroy(&ing->gw_lock);
	free(ing);
}

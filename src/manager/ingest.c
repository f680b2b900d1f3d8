/*
 * ingest — the path of a quarantined message from end of DATA to its 250.
 *
 *   loop thread:   ingest_message       takes the message, counts it in flight
 *   worker thread: ingest_prepare       msgmeta, store_new_message, compression,
 *                                       store_submit_message
 *   writer thread: ingest_stored        the group commit returned (or failed)
 *   loop thread:   ingest_answer        250 "stored as <id>" or 451; logs; metrics
 *
 * A message is never acknowledged before its transaction is durable, and a
 * message that cannot be stored gets a 451 so that the gateway keeps and retries it.
 * Not for: deciding the quarantine from content (gateways do that).
 */
#include "manager/ingest.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/loopq.h"
#include "common/workpool.h"
#include "common/xalloc.h"
#include "quarantine/metrics.h"
#include "mime/msgmeta.h"
#include "mime/msgmeta_store.h"
#include "smtp/smtp_proto.h"
#include "smtp/smtp_session.h"
#include "store/store.h"

#define INGEST_QUARANTINE "spam"

struct ingest {
	struct store *st;
	struct loopq *q;
	struct workpool *wp;
	atomic_uint inflight;
};

struct ingest_job {
	struct ingest *ing;
	struct smtp_session *session;
	struct smtp_message *msg;
	char peer[64];
	char id[IDS_UUID_LEN + 1];
	int rc;
	/* for the log line */
	size_t size;
	size_t nrcpts;
	char *sender;
	char *verdict;
	char *gateway;
	bool has_score;
	double score;
};

struct ingest *ingest_new(struct event_base *base, struct store *st, unsigned nthreads)
{
	struct ingest *ing = xcalloc(1, sizeof(*ing));
	ing->st = st;
	ing->q = loopq_new(base);
	ing->wp = workpool_new(nthreads);
	atomic_init(&ing->inflight, 0);
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
	char reply[128];
	char q[256];
	if (job->rc == 0) {
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
	smtp_session_message_done(job->session, reply);
	atomic_fetch_sub(&job->ing->inflight, 1);
	free(job->sender);
	free(job->verdict);
	free(job->gateway);
	free(job);
}

static void ingest_stored(void *arg, int rc)
{
	struct ingest_job *job = arg;
	job->rc = store_error_unavailable(rc) ? -ENOTCONN : rc;
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
	/* Defaults: the verdict spam; the gateway, the client address. */
	if (nm->verdict == NULL)
		nm->verdict = xstrdup("spam");
	if (nm->gateway == NULL || nm->gateway[0] == '\0') {
		free(nm->gateway);
		nm->gateway = xstrdup(job->peer);
	}
	return nm;
}

static void ingest_prepare(void *arg)
{
	struct ingest_job *job = arg;
	int64_t now = clock_now_ms();
	ids_uuidv7(now, job->id);
	struct store_new_message *nm = ingest_build(job, now);
	smtp_message_free(job->msg);
	job->msg = NULL;
	job->size = nm->raw_len;
	job->nrcpts = nm->nrecipients;
	job->sender = xstrdup(nm->sender);
	job->verdict = xstrdup(nm->verdict);
	job->gateway = xstrdup(nm->gateway);
	job->has_score = nm->has_score;
	job->score = nm->score;
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

void ingest_message(void *ctx, struct smtp_session *s, struct smtp_message *m)
{
	struct ingest *ing = ctx;
	struct ingest_job *job = xcalloc(1, sizeof(*job));
	job->ing = ing;
	job->session = s;
	job->msg = m;
	snprintf(job->peer, sizeof(job->peer), "%s", smtp_session_peer(s));
	atomic_fetch_add(&ing->inflight, 1);
	workpool_submit(ing->wp, ingest_prepare, job);
}

void ingest_stop(struct ingest *ing)
{
	workpool_free(ing->wp);
	ing->wp = NULL;
}

void ingest_free(struct ingest *ing)
{
	if (ing == NULL)
		return;
	workpool_free(ing->wp);
	loopq_free(ing->q);
	free(ing);
}

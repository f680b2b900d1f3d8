/*
 * report_sched — the minute timer, the claim, the run and the mail of
 * scheduled reports (report_sched.h). The timer fires on the loop thread; a run
 * (list, claim, render, archive, send) goes to a worker thread, one at a time.
 */
#include "manager/report_sched.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <sodium.h>

#include "api/api_migration.h"
#include "api/api_report_sched.h"
#include "common/clock.h"
#include "common/fault.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "common/workpool.h"
#include "common/xalloc.h"
#include "digest/digest_mail.h"
#include "smtp/smtp_client.h"
#include "smtp/smtp_failover.h"
#include "store/store.h"

#define REPORT_SCHED_TICK_S	   60
#define REPORT_SCHED_FAULT	   "report_sched_ahead"
#define REPORT_SCHED_NOTICE_FAULT  "migration_notice_fast"
#define REPORT_SCHED_AHEAD_S	   (32 * 86400)
#define REPORT_SCHED_SESSION_STEPS 10
#define REPORT_SCHED_RETRY_BATCH   20
#define REPORT_SCHED_PURGE_BATCH   100

/* One copy of the settings; a run takes its own. */
struct report_sched_settings {
	char *from, *hostname, *primary, *secondary, *source, *helo;
	int64_t timeout_ms;
	int64_t archive_retention_ms;
};

static char *report_sched_dup(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

static struct report_sched_settings *report_sched_settings_new(const struct report_sched_config *c)
{
	struct report_sched_settings *t = xcalloc(1, sizeof(*t));
	t->from = xstrdup(c->from != NULL ? c->from : "lazaret@localhost");
	t->hostname = report_sched_dup(c->hostname);
	t->primary = report_sched_dup(c->primary_host);
	t->secondary = report_sched_dup(c->secondary_host);
	t->source = report_sched_dup(c->source_address);
	t->helo = report_sched_dup(c->helo_name);
	t->timeout_ms = c->timeout_ms > 0 ? c->timeout_ms : 60000;
	t->archive_retention_ms = c->archive_retention_ms;
	return t;
}

static void report_sched_settings_free(struct report_sched_settings *t)
{
	if (t == NULL)
		return;
	free(t->from);
	free(t->hostname);
	free(t->primary);
	free(t->secondary);
	free(t->source);
	free(t->helo);
	free(t);
}

struct report_sched {
	struct event_base *base;
	struct store *st;
	struct event *timer;
	struct workpool *wp;
	pthread_mutex_t lock;
	bool busy;			   /* a run is queued or going; under lock */
	struct report_sched_settings *cur; /* under lock */
	bool ahead;			   /* the test clock (report_sched.h) */
	bool fast;			   /* notices retried every second (report_sched.h) */
	bool notices_queued;		   /* a look for due notices is queued; under lock */
};

/* A header value on one line: CR and LF dropped. */
static char *report_sched_one_line(const char *s)
{
	char *o = xstrdup(s != NULL ? s : "");
	size_t k = 0;
	for (size_t i = 0; o[i] != '\0'; i++)
		if (o[i] != '\r' && o[i] != '\n')
			o[k++] = o[i];
	o[k] = '\0';
	return o;
}

int report_sched_build_mail(const struct report_sched_mail *m, char **out, size_t *len)
{
	*out = NULL;
	*len = 0;
	if (m->from == NULL || m->nto == 0 || m->report == NULL || m->period == NULL ||
	    m->format == NULL || m->data == NULL)
		return -EINVAL;
	bool csv = strcmp(m->format, "csv") == 0;
	char since[CLOCK_RFC3339_LEN], until[CLOCK_RFC3339_LEN], date[64], boundary[64];
	char id[IDS_UUID_LEN + 1], rnd[17];
	unsigned char r[8];
	randombytes_buf(r, sizeof(r));
	sodium_bin2hex(rnd, sizeof(rnd), r, sizeof(r));
	/* "=_" cannot occur in base64 text, so the boundary never appears in a part. */
	snprintf(boundary, sizeof(boundary), "=_lazaret_%s", rnd);
	clock_format_rfc3339(m->since, since);
	clock_format_rfc3339(m->until, until);
	digest_mail_date(m->now_ms, 0, date, sizeof(date));
	ids_uuidv7(m->now_ms, id);

	char *subject_text = xasprintf("[Lazaret] レポート %s (%s) %.10s – %.10s", m->report,
				       m->period, since, until);
	char *subject = digest_encode_header(subject_text, strlen("Subject"));
	char *from = report_sched_one_line(m->from);
	struct strbuf b = STRBUF_INIT, text = STRBUF_INIT;
	strbuf_printf(&b, "From: %s\r\nTo: ", from);
	for (size_t i = 0; i < m->nto; i++) {
		char *to = report_sched_one_line(m->to[i]);
		strbuf_printf(&b, "%s%s", i > 0 ? ",\r\n " : "", to);
		free(to);
	}
	strbuf_printf(&b,
		      "\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s@%s>\r\n"
		      "MIME-Version: 1.0\r\nAuto-Submitted: auto-generated\r\n"
		      "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n"
		      "This is a multi-part message in MIME format.\r\n",
		      subject, date, id, m->hostname != NULL ? m->hostname : "lazaret", boundary);
	strbuf_printf(&text,
		      "レポート %s (%s) を添付します。\r\n"
		      "The report %s (%s) is attached.\r\n\r\n"
		      "%s – %s (UTC)\r\n",
		      m->report, m->period, m->report, m->period, since, until);
	strbuf_printf(&b,
		      "\r\n--%s\r\nContent-Type: text/plain; charset=UTF-8\r\n"
		      "Content-Transfer-Encoding: base64\r\n\r\n",
		      boundary);
	digest_base64_lines(&b, strbuf_str(&text), text.len);
	/* report and period are [A-Za-z0-9_-] (store.c): safe as a file name */
	char *name = xasprintf("%s-%s-%lld.%s", m->report, m->period, (long long)m->archive_id,
			       csv ? "csv" : "pdf");
	strbuf_printf(&b,
		      "\r\n--%s\r\nContent-Type: %s; name=\"%s\"\r\n"
		      "Content-Disposition: attachment; filename=\"%s\"\r\n"
		      "Content-Transfer-Encoding: base64\r\n\r\n",
		      boundary, csv ? "text/csv; charset=UTF-8" : "application/pdf", name, name);
	digest_base64_lines(&b, (const char *)m->data, m->size);
	strbuf_printf(&b, "\r\n--%s--\r\n", boundary);
	free(name);
	free(subject_text);
	free(subject);
	free(from);
	strbuf_free(&text);
	*len = b.len;
	*out = strbuf_take(&b);
	return 0;
}

/* Splits the recipients' text (one a line) into a new array. */
static size_t report_sched_split(const char *s, char ***out)
{
	char **v = NULL;
	size_t n = 0;
	while (s != NULL && *s != '\0') {
		const char *nl = strchr(s, '\n');
		size_t k = nl != NULL ? (size_t)(nl - s) : strlen(s);
		if (k > 0) {
			v = xreallocarray(v, n + 1, sizeof(*v));
			v[n++] = xstrndup(s, k);
		}
		s = nl != NULL ? nl + 1 : NULL;
	}
	*out = v;
	return n;
}

/*
 * Mails copy a to its recipients still pending. The ones refused for a while
 * (4xx, no answer) stay: its mail state moves on from old_next to the next
 * attempt after a backoff, or to given up after API_SCHED_MAIL_TRIES; the ones
 * taken or refused for good (5xx) go. now is the real clock (unix seconds).
 */
static void report_sched_send(struct store *st, const struct report_sched_settings *r,
			      const struct store_report_archived *a, int64_t old_next,
			      int64_t now_ms)
{
	char **to = NULL;
	size_t nto = report_sched_split(a->mail_pending, &to);
	if (nto == 0) {
		free(to);
		return;
	}
	struct report_sched_mail m = {.from = r->from,
				      .to = (const char *const *)to,
				      .nto = nto,
				      .hostname = r->hostname,
				      .report = a->report,
				      .period = a->period,
				      .format = a->format,
				      .since = a->from,
				      .until = a->to,
				      .now_ms = now_ms,
				      .archive_id = a->id,
				      .data = a->data,
				      .size = a->size};
	char *data = NULL;
	size_t len = 0;
	struct strbuf left = STRBUF_INIT;
	if (report_sched_build_mail(&m, &data, &len) == 0) {
		struct smtp_client_options opt = {
		    .helo_name = r->helo,
		    .source_address = r->source,
		    .timeout_ms = r->timeout_ms,
		    .session_timeout_ms = r->timeout_ms * REPORT_SCHED_SESSION_STEPS,
		};
		struct smtp_client_message msg = {
		    .sender = r->from,
		    .rcpts = (const char *const *)to,
		    .nrcpts = nto,
		    .body = (const unsigned char *)data,
		    .body_len = len,
		};
		struct smtp_failover_rcpt *res = xcalloc(nto, sizeof(*res));
		int rc = smtp_failover_send(r->primary, r->secondary, &opt, &msg, NULL, res);
		for (size_t i = 0; i < nto; i++) {
			enum smtp_client_outcome o =
			    rc == 0 ? res[i].outcome : SMTP_CLIENT_DEFERRED;
			if (o == SMTP_CLIENT_DELIVERED)
				log_info("report_sched.sent", "schedule=%lld archive=%lld rcpt=%s",
					 (long long)a->schedule_id, (long long)a->id, to[i]);
			else
				log_warn("report_sched.send_failed",
					 "schedule=%lld archive=%lld rcpt=%s outcome=%s try=%d",
					 (long long)a->schedule_id, (long long)a->id, to[i],
					 smtp_client_outcome_name(o), a->mail_tries + 1);
			if (o == SMTP_CLIENT_DEFERRED)
				strbuf_printf(&left, "%s%s", left.len > 0 ? "\n" : "", to[i]);
		}
		smtp_failover_rcpts_free(res, nto);
		free(res);
	} else {
		strbuf_printf(&left, "%s", a->mail_pending);
	}
	int tries = a->mail_tries + 1;
	int64_t next = 0;
	if (left.len > 0 && tries < API_SCHED_MAIL_TRIES) {
		next = now_ms / 1000 + api_sched_mail_backoff(tries);
		log_warn("report_sched.retry", "schedule=%lld archive=%lld try=%d next_in=%llds",
			 (long long)a->schedule_id, (long long)a->id, tries + 1,
			 (long long)api_sched_mail_backoff(tries));
	} else if (left.len > 0) {
		log_error("report_sched.given_up", "schedule=%lld archive=%lld tries=%d",
			  (long long)a->schedule_id, (long long)a->id, tries);
	}
	int rc = store_report_archive_mail_set(st, a->id, old_next, strbuf_str(&left), tries, next);
	if (rc < 0 && rc != -ENOENT)
		log_warn("report_sched.mail_state_failed", "archive=%lld error=%s",
			 (long long)a->id, strerror(-rc));
	strbuf_free(&left);
	free(data);
	for (size_t i = 0; i < nto; i++)
		free(to[i]);
	free(to);
}

/*
 * Claims copy a's mail for this manager until a lease from real (unix seconds):
 * the lease, or -1 when another manager or run has it or it is gone.
 */
static int64_t report_sched_claim_mail(struct store *st, const struct store_report_archived *a,
				       int64_t real)
{
	int64_t lease = real + API_SCHED_MAIL_LEASE;
	if (lease == a->mail_next)
		lease++;
	int rc = store_report_archive_mail_set(st, a->id, a->mail_next, a->mail_pending,
					       a->mail_tries, lease);
	return rc == 0 ? lease : -1;
}

/* A copy of the settings of now. */
static struct report_sched_settings *report_sched_settings_now(struct report_sched *r)
{
	pthread_mutex_lock(&r->lock);
	struct report_sched_config c = {.from = r->cur->from,
					.hostname = r->cur->hostname,
					.primary_host = r->cur->primary,
					.secondary_host = r->cur->secondary,
					.source_address = r->cur->source,
					.helo_name = r->cur->helo,
					.timeout_ms = r->cur->timeout_ms,
					.archive_retention_ms = r->cur->archive_retention_ms};
	struct report_sched_settings *set = report_sched_settings_new(&c);
	pthread_mutex_unlock(&r->lock);
	return set;
}

struct report_sched_later {
	struct report_sched *r;
	struct store_report_schedule s;
	struct store_report_archived a;
};

static void report_sched_later_run(void *arg)
{
	struct report_sched_later *l = arg;
	struct report_sched_settings *set = report_sched_settings_now(l->r);
	int64_t lease = report_sched_claim_mail(l->r->st, &l->a, clock_now_ms() / 1000);
	if (lease > 0)
		report_sched_send(l->r->st, set, &l->a, lease, clock_now_ms());
	report_sched_settings_free(set);
	store_report_schedule_clear(&l->s);
	store_report_archived_clear(&l->a);
	free(l);
}

void report_sched_mail_later(void *arg, const struct store_report_schedule *s,
			     const struct store_report_archived *a)
{
	struct report_sched *r = arg;
	struct report_sched_later *l = xcalloc(1, sizeof(*l));
	l->r = r;
	l->s.id = s->id;
	l->s.report = xstrdup(s->report);
	l->s.period = xstrdup(s->period);
	l->s.format = xstrdup(s->format);
	l->s.recipients = xstrdup(s->recipients);
	l->a = *a;
	l->a.report = xstrdup(a->report);
	l->a.period = xstrdup(a->period);
	l->a.format = xstrdup(a->format);
	l->a.mail_pending = xstrdup(a->mail_pending != NULL ? a->mail_pending : "");
	l->a.data = xmalloc(a->size + 1);
	memcpy(l->a.data, a->data, a->size);
	workpool_submit(r->wp, report_sched_later_run, l);
}

int report_sched_build_notice(const char *from, const char *to, const char *hostname,
			      const char *subject, const char *text, int64_t now_ms, char **out,
			      size_t *len)
{
	*out = NULL;
	*len = 0;
	if (from == NULL || to == NULL || subject == NULL || text == NULL)
		return -EINVAL;
	char date[64], id[IDS_UUID_LEN + 1];
	digest_mail_date(now_ms, 0, date, sizeof(date));
	ids_uuidv7(now_ms, id);
	char *subj = digest_encode_header(subject, strlen("Subject"));
	char *f = report_sched_one_line(from), *t = report_sched_one_line(to);
	struct strbuf b = STRBUF_INIT, body = STRBUF_INIT;
	strbuf_printf(&b,
		      "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\n"
		      "Message-ID: <%s@%s>\r\nMIME-Version: 1.0\r\n"
		      "Auto-Submitted: auto-generated\r\n"
		      "Content-Type: text/plain; charset=UTF-8\r\n"
		      "Content-Transfer-Encoding: base64\r\n\r\n",
		      f, t, subj, date, id, hostname != NULL ? hostname : "lazaret");
	/* the text's lines end in CRLF */
	for (const char *p = text; *p != '\0'; p++) {
		if (*p == '\n' && (p == text || p[-1] != '\r'))
			strbuf_printf(&body, "\r");
		strbuf_printf(&body, "%c", *p);
	}
	digest_base64_lines(&b, strbuf_str(&body), body.len);
	free(subj);
	free(f);
	free(t);
	strbuf_free(&body);
	*len = b.len;
	*out = strbuf_take(&b);
	return 0;
}

/*
 * Sends notice n (claimed by this manager until n->next) and settles it or
 * plans its next attempt, where its next is still the claim's.
 */
static void report_sched_notice_send(struct store *st, const struct report_sched_settings *set,
				     const struct store_migration_notice *n, bool fast)
{
	char *subject = NULL, *text = NULL, *data = NULL;
	size_t len = 0;
	api_migration_notice_mail(n, &subject, &text);
	int64_t now_ms = clock_now_ms();
	enum smtp_client_outcome o = SMTP_CLIENT_DEFERRED;
	char *reply = NULL;
	const char *host = NULL;
	if (report_sched_build_notice(set->from, n->to, set->hostname, subject, text, now_ms, &data,
				      &len) == 0) {
		struct smtp_client_options opt = {
		    .helo_name = set->helo,
		    .source_address = set->source,
		    .timeout_ms = set->timeout_ms,
		    .session_timeout_ms = set->timeout_ms * REPORT_SCHED_SESSION_STEPS,
		};
		const char *rcpts[1] = {n->to};
		struct smtp_client_message msg = {
		    .sender = set->from,
		    .rcpts = rcpts,
		    .nrcpts = 1,
		    .body = (const unsigned char *)data,
		    .body_len = len,
		};
		struct smtp_failover_rcpt res[1];
		memset(res, 0, sizeof(res));
		int rc = smtp_failover_send(set->primary, set->secondary, &opt, &msg, NULL, res);
		o = res[0].outcome;
		if (rc == -EINVAL || rc == -EHOSTUNREACH)
			o = SMTP_CLIENT_DEFERRED;
		host = res[0].host != NULL
			   ? (res[0].host == set->secondary ? "secondary" : "primary")
			   : NULL;
		reply = res[0].reply != NULL ? xstrdup(res[0].reply)
			: rc == -EHOSTUNREACH
			    ? xstrdup("no relay: [release] primary_host is not set")
			    : NULL;
		smtp_failover_rcpts_free(res, 1);
	}
	int tries = n->tries + 1;
	int64_t real = now_ms / 1000;
	int64_t next = 0;
	char q[300], rq[600];
	log_quote(q, sizeof(q), n->gateway);
	log_quote(rq, sizeof(rq), reply != NULL ? reply : "");
	if (o == SMTP_CLIENT_DELIVERED) {
		log_info("migration_notice.sent", "gateway=%s to=%s tries=%d relay=%s", q, n->to,
			 tries, host != NULL ? host : "-");
	} else if (o == SMTP_CLIENT_REJECTED) {
		log_error("migration_notice.failed",
			  "gateway=%s to=%s tries=%d reason=rejected relay=%s reply=%s retry=no", q,
			  n->to, tries, host != NULL ? host : "-", rq);
	} else if ((next = api_migration_notice_next(tries, real)) > 0) {
		if (fast)
			next = real + 1;
		log_warn("migration_notice.deferred",
			 "gateway=%s to=%s try=%d next_in=%llds reply=%s", q, n->to, tries,
			 (long long)(next - real), rq);
	} else {
		log_error("migration_notice.failed",
			  "gateway=%s to=%s tries=%d reason=given_up reply=%s retry=no", q, n->to,
			  tries, rq);
	}
	int rc =
	    store_migration_notice_set(st, n->id, n->next, tries, next, o == SMTP_CLIENT_DELIVERED,
				       real, o == SMTP_CLIENT_DELIVERED ? NULL : reply);
	if (rc < 0)
		log_warn("migration_notice.state_failed", "gateway=%s id=%lld error=%s", q,
			 (long long)n->id, strerror(-rc));
	free(reply);
	free(data);
	free(subject);
	free(text);
}

/* Worker thread: the notices due, each claimed (of several managers, one has it), then sent. */
static void report_sched_notices(struct report_sched *r, const struct report_sched_settings *set)
{
	int64_t real = clock_now_ms() / 1000;
	struct store_migration_notice *v = NULL;
	size_t n = 0;
	int rc = store_migration_notice_due(r->st, real, REPORT_SCHED_RETRY_BATCH, &v, &n);
	if (rc < 0)
		log_warn("migration_notice.list_failed", "error=%s", strerror(-rc));
	for (size_t i = 0; i < n; i++) {
		int64_t lease = real + API_SCHED_MAIL_LEASE;
		if (store_migration_notice_set(r->st, v[i].id, v[i].next, v[i].tries, lease, false,
					       v[i].last_try, v[i].reply) < 0)
			continue; /* another manager has it, or it is gone */
		v[i].next = lease;
		report_sched_notice_send(r->st, set, &v[i], r->fast);
	}
	store_migration_notice_array_free(v, n);
}

static void report_sched_notices_run(void *arg)
{
	struct report_sched *r = arg;
	pthread_mutex_lock(&r->lock);
	r->notices_queued = false;
	pthread_mutex_unlock(&r->lock);
	struct report_sched_settings *set = report_sched_settings_now(r);
	report_sched_notices(r, set);
	report_sched_settings_free(set);
}

void report_sched_notices_now(void *arg)
{
	struct report_sched *r = arg;
	pthread_mutex_lock(&r->lock);
	bool start = !r->notices_queued;
	r->notices_queued = true;
	pthread_mutex_unlock(&r->lock);
	if (start)
		workpool_submit(r->wp, report_sched_notices_run, r);
}

/* Worker thread: the copies whose mail is due again, each claimed, then sent. */
static void report_sched_retry(struct report_sched *r, const struct report_sched_settings *set)
{
	int64_t real = clock_now_ms() / 1000;
	int64_t now = real + (r->ahead ? REPORT_SCHED_AHEAD_S : 0);
	struct store_report_archived *v = NULL;
	size_t n = 0;
	int rc = store_report_archive_mail_due(r->st, now, REPORT_SCHED_RETRY_BATCH, &v, &n);
	if (rc < 0)
		log_warn("report_sched.retry_list_failed", "error=%s", strerror(-rc));
	for (size_t i = 0; i < n; i++) {
		int64_t lease = report_sched_claim_mail(r->st, &v[i], real);
		if (lease < 0)
			continue; /* another manager has it, or it is gone */
		struct store_report_archived a;
		rc = store_report_archive_get(r->st, v[i].id, &a);
		if (rc < 0)
			continue;
		report_sched_send(r->st, set, &a, lease, clock_now_ms());
		store_report_archived_clear(&a);
	}
	store_report_archived_array_free(v, n);
}

/* Worker thread: archived copies older than retention_ms go, in batches. */
static void report_sched_purge(struct report_sched *r, int64_t retention_ms)
{
	if (retention_ms <= 0)
		return;
	int64_t before = (clock_now_ms() - retention_ms) / 1000;
	size_t total = 0, got = 0;
	int rc;
	do {
		rc = store_report_archive_purge(r->st, before, REPORT_SCHED_PURGE_BATCH, &got);
		total += got;
	} while (rc == 0 && got == REPORT_SCHED_PURGE_BATCH);
	if (rc < 0)
		log_warn("report_sched.purge_failed", "error=%s", strerror(-rc));
	if (total > 0)
		log_info("report_sched.purged", "copies=%zu before=%lld", total, (long long)before);
}

/* Worker thread: every due schedule this manager claims is made and mailed. */
static void report_sched_run(void *arg)
{
	struct report_sched *r = arg;
	struct report_sched_settings *set = report_sched_settings_now(r);
	struct store_report_schedule *v = NULL;
	size_t n = 0;
	int rc = store_report_schedule_list(r->st, &v, &n);
	if (rc < 0)
		log_warn("report_sched.list_failed", "error=%s", strerror(-rc));
	for (size_t i = 0; i < n; i++) {
		int64_t now_ms = clock_now_ms();
		int64_t now = now_ms / 1000 + (r->ahead ? REPORT_SCHED_AHEAD_S : 0);
		if (v[i].next_run > now)
			continue;
		int64_t next = api_sched_next_for(&v[i], now);
		if (next < 0)
			continue;
		rc = store_report_schedule_claim(r->st, v[i].id, v[i].next_run, next, now);
		if (rc == -EALREADY || rc == -ENOENT)
			continue; /* another manager has it, or it is gone */
		if (rc < 0) {
			log_warn("report_sched.claim_failed", "schedule=%lld error=%s",
				 (long long)v[i].id, strerror(-rc));
			continue;
		}
		struct store_report_archived a;
		rc = api_sched_make(r->st, &v[i], now_ms, now_ms / 1000 + API_SCHED_MAIL_LEASE, &a);
		if (rc < 0) {
			log_error("report_sched.make_failed", "schedule=%lld error=%s",
				  (long long)v[i].id, strerror(-rc));
			continue;
		}
		log_info("report_sched.made", "schedule=%lld archive=%lld report=%s period=%s",
			 (long long)v[i].id, (long long)a.id, v[i].report, v[i].period);
		report_sched_send(r->st, set, &a, a.mail_next, now_ms);
		store_report_archived_clear(&a);
	}
	store_report_schedule_array_free(v, n);
	report_sched_retry(r, set);
	report_sched_notices(r, set);
	report_sched_purge(r, set->archive_retention_ms);
	report_sched_settings_free(set);
	pthread_mutex_lock(&r->lock);
	r->busy = false;
	pthread_mutex_unlock(&r->lock);
}

static void report_sched_on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct report_sched *r = arg;
	pthread_mutex_lock(&r->lock);
	bool start = !r->busy;
	r->busy = true;
	pthread_mutex_unlock(&r->lock);
	if (start)
		workpool_submit(r->wp, report_sched_run, r);
}

int report_sched_new(struct event_base *base, struct store *st,
		     const struct report_sched_config *cfg, struct report_sched **out)
{
	struct report_sched *r = xcalloc(1, sizeof(*r));
	r->base = base;
	r->st = st;
	pthread_mutex_init(&r->lock, NULL);
	r->cur = report_sched_settings_new(cfg);
	r->ahead = fault_is_armed(REPORT_SCHED_FAULT);
	r->fast = fault_is_armed(REPORT_SCHED_NOTICE_FAULT);
	r->wp = workpool_new(1);
	r->timer = event_new(base, -1, EV_PERSIST, report_sched_on_timer, r);
	struct timeval tv = {.tv_sec = r->ahead || r->fast ? 1 : REPORT_SCHED_TICK_S};
	event_add(r->timer, &tv);
	/* notices left pending by an earlier run (a restart) go out now */
	report_sched_notices_now(r);
	*out = r;
	return 0;
}

void report_sched_free(struct report_sched *r)
{
	if (r == NULL)
		return;
	event_free(r->timer);
	workpool_free(r->wp);
	pthread_mutex_destroy(&r->lock);
	report_sched_settings_free(r->cur);
	free(r);
}

void report_sched_reconfigure(struct report_sched *r, const struct report_sched_config *cfg)
{
	struct report_sched_settings *t = report_sched_settings_new(cfg);
	pthread_mutex_lock(&r->lock);
	struct report_sched_settings *old = r->cur;
	r->cur = t;
	pthread_mutex_unlock(&r->lock);
	report_sched_settings_free(old);
}

/*
 * store_report — the backend-independent half of the reporting rollups (store.h
 * "reporting rollups"): what a batch of newly stored events adds to which
 * rollup rows (the counting rules), the checks of a read, and the dispatch to
 * the backend. A top-N read is answered here: its range split into spans
 * (whole months by the month, the days at either end by the day), scanned by
 * the backend, merged by key in a hash table and the best kept in a heap.
 *
 * A message is counted once, when its "reply" event (the last of a message) is
 * stored: its events are read back (this batch's and earlier ones'), and the
 * message counts in the buckets of its "received" event's time. Only newly
 * stored events count, so a replayed batch adds nothing. A message answered
 * 4xx (the client retries, as a new message) or released by the manager (it was
 * counted when it first came in) is not counted.
 *
 * Counting rules: per recipient (recipients_total when the list was cut, the
 * names of its "recipients" events for the per-recipient reports); the
 * message's class is the first of spam, suspect, virus, content_filter (a
 * filter whose action quarantined, dropped or bounced it), clean.
 *
 * Not for: SQL (store_sqlite_report.c, store_pg_report.c).
 */
#include "store/store.h"
#include "store/store_backend.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

#include "common/xalloc.h"

const char *const store_report_names[STORE_REPORT_NREPORTS] = {
    "overview",
    "incoming_domains",
    "incoming_ips",
    "sender_groups",
    "outgoing_destinations",
    "outgoing_senders",
    "internal_users",
    "content_filters",
    "virus_types",
    "outbreak",
    "tls",
    "rate_limits",
};

int store_report_by_name(const char *name)
{
	for (int i = 0; name != NULL && i < STORE_REPORT_NREPORTS; i++) {
		if (strcmp(store_report_names[i], name) == 0)
			return i;
	}
	return -1;
}

int64_t store_report_bucket(int gran, int64_t at)
{
	if (at < 0)
		at = 0;
	if (gran == STORE_REPORT_HOUR)
		return at - at % 3600000;
	if (gran == STORE_REPORT_DAY)
		return at - at % 86400000;
	time_t t = (time_t)(at / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	tm.tm_mday = 1;
	tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
	return (int64_t)timegm(&tm) * 1000;
}

/* ---- the accumulator ---- */

static void store_report_add(struct store_report_acc *a, int report, int64_t at, const char *key,
			     const int64_t c[STORE_REPORT_NCOUNTERS])
{
	for (int g = 0; g < STORE_REPORT_NGRANS; g++) {
		if (a->n == a->cap) {
			a->cap = a->cap ? 2 * a->cap : 64;
			a->v = xreallocarray(a->v, a->cap, sizeof(*a->v));
		}
		struct store_report_delta *d = &a->v[a->n++];
		d->report = report;
		d->gran = g;
		d->bucket = store_report_bucket(g, at);
		d->key = xstrdup(key);
		memcpy(d->c, c, sizeof(d->c));
	}
}

static int store_report_delta_cmp(const void *x, const void *y)
{
	const struct store_report_delta *a = x, *b = y;
	if (a->report != b->report)
		return a->report < b->report ? -1 : 1;
	if (a->gran != b->gran)
		return a->gran < b->gran ? -1 : 1;
	if (a->bucket != b->bucket)
		return a->bucket < b->bucket ? -1 : 1;
	return strcmp(a->key, b->key);
}

/* Sorts the deltas (one lock order for every writer) and merges equal rows. */
static void store_report_acc_finish(struct store_report_acc *a)
{
	if (a->n < 2)
		return;
	qsort(a->v, a->n, sizeof(*a->v), store_report_delta_cmp);
	size_t k = 0;
	for (size_t i = 0; i < a->n; i++) {
		if (k > 0 && store_report_delta_cmp(&a->v[k - 1], &a->v[i]) == 0) {
			for (int j = 0; j < STORE_REPORT_NCOUNTERS; j++)
				a->v[k - 1].c[j] += a->v[i].c[j];
			free(a->v[i].key);
		} else {
			a->v[k++] = a->v[i];
		}
	}
	a->n = k;
}

void store_report_acc_free(struct store_report_acc *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->v[i].key);
	free(a->v);
	memset(a, 0, sizeof(*a));
}

/* ---- counting ---- */

static const char *store_report_str(const json_t *d, const char *key)
{
	return json_string_value(json_object_get(d, key));
}

/* An ASCII lower-case copy. */
static char *store_report_lc(const char *s)
{
	char *o = xstrdup(s != NULL ? s : "");
	for (char *p = o; *p != '\0'; p++) {
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	}
	return o;
}

/* The domain of an address, lower case ("" without an '@'). */
static char *store_report_domain(const char *addr)
{
	const char *at = addr != NULL ? strrchr(addr, '@') : NULL;
	return store_report_lc(at != NULL ? at + 1 : "");
}

/* One event that counts by itself (no message): connections and rate limits. */
static void store_report_single(struct store_report_acc *a, const char *type, int64_t at,
				const char *detail)
{
	if (strcmp(type, "connection") != 0 && strcmp(type, "rate_limit") != 0)
		return;
	json_t *d = json_loads(detail, 0, NULL);
	if (!json_is_object(d)) {
		json_decref(d);
		return;
	}
	int64_t one[STORE_REPORT_NCOUNTERS] = {0};
	one[STORE_REPORT_COUNT] = 1;
	const char *policy = store_report_str(d, "hat_policy");
	if (strcmp(type, "rate_limit") == 0) {
		const char *ip = store_report_str(d, "client_ip");
		store_report_add(a, STORE_REPORT_RATE_LIMITS, at, ip != NULL ? ip : "", one);
	} else {
		/* a refused connection: rejected, in its HAT policy's sessions (none when
		 * a listener's limit refused it before HAT), never a TLS session */
		const char *decision = store_report_str(d, "hat_decision");
		bool rejected = decision != NULL && strcmp(decision, "reject") == 0;
		if (rejected)
			store_report_add(a, STORE_REPORT_OVERVIEW, at, "", one);
		const char *tls = store_report_str(d, "tls_version");
		if (!rejected)
			store_report_add(a, STORE_REPORT_TLS, at, tls != NULL ? tls : "none", one);
		if (policy != NULL)
			store_report_add(a, STORE_REPORT_SENDER_GROUPS, at, policy, one);
	}
	json_decref(d);
}

/* Adds key to a list of distinct keys. */
static void store_report_key_add(char ***v, size_t *n, const char *key)
{
	for (size_t i = 0; i < *n; i++) {
		if (strcmp((*v)[i], key) == 0)
			return;
	}
	*v = xreallocarray(*v, *n + 1, sizeof(**v));
	(*v)[(*n)++] = xstrdup(key);
}

static void store_report_keys_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/*
 * Adds a "recipients" event's names (detail d) to more, the names from index
 * *first on (-1: none yet) that the events before listed: those that continue
 * it, from its end (a name listed twice counts once).
 */
static void store_report_more(json_t *more, int64_t *first, const json_t *d)
{
	const json_t *f = json_object_get(d, "first");
	const json_t *l = json_object_get(d, "recipients");
	if (!json_is_integer(f) || json_integer_value(f) < 0 || !json_is_array(l))
		return;
	int64_t at = json_integer_value(f);
	if (*first < 0)
		*first = at;
	int64_t end = *first + (int64_t)json_array_size(more);
	if (at > end)
		return; /* a gap: what follows it cannot be placed */
	for (size_t i = (size_t)(end - at); i < json_array_size(l); i++)
		json_array_append(more, json_array_get(l, i));
}

/* The events ev[0..n) of one message, in seq order. */
/* The event of fresh[0..n) (in seq order) numbered seq, or NULL. */
static const struct store_event *store_report_fresh(const struct store_event *const *fresh,
						    size_t n, int64_t seq)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (fresh[mid]->seq < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && fresh[lo]->seq == seq ? fresh[lo] : NULL;
}

/*
 * Row ev's detail as a new reference: the object the caller of this batch
 * parsed when the row is one of its fresh events, else parsed from the text.
 */
static json_t *store_report_detail(const struct store_event_row *ev,
				   const struct store_event *const *fresh, size_t nfresh)
{
	const struct store_event *e = store_report_fresh(fresh, nfresh, ev->seq);
	if (e != NULL && e->parsed != NULL)
		return json_incref((json_t *)(uintptr_t)e->parsed);
	return json_loads(ev->detail, 0, NULL);
}

static void store_report_message(struct store_report_acc *a, const struct store_event_row *ev,
				 size_t n, const struct store_event *const *fresh, size_t nfresh)
{
	json_t *recv = NULL;
	json_t *more = json_array(); /* "recipients" events' names, from the index of its first */
	int64_t more_first = -1;
	int64_t at = 0;
	bool spam = false, suspect = false, virus = false, stopped = false, skip = false;
	char **viruses = NULL, **filters = NULL, **outbreaks = NULL;
	size_t nviruses = 0, nfilters = 0, noutbreaks = 0;
	for (size_t i = 0; i < n && !skip; i++) {
		const char *t = ev[i].type;
		json_t *d = store_report_detail(&ev[i], fresh, nfresh);
		if (!json_is_object(d)) {
			json_decref(d);
			continue;
		}
		const char *s;
		if (strcmp(t, "received") == 0) {
			json_decref(recv);
			recv = json_incref(d);
			at = ev[i].at;
		} else if (strcmp(t, "recipients") == 0) {
			store_report_more(more, &more_first, d);
		} else if (strcmp(t, "released") == 0) {
			skip = true;
		} else if (strcmp(t, "verdict") == 0) {
			s = store_report_str(d, "level");
			spam = spam || (s != NULL && strcmp(s, "spam") == 0);
			suspect = suspect || (s != NULL && strcmp(s, "suspect") == 0);
		} else if (strcmp(t, "virus") == 0) {
			virus = true;
			s = store_report_str(d, "name");
			store_report_key_add(&viruses, &nviruses, s != NULL ? s : "");
		} else if (strcmp(t, "filter") == 0) {
			s = store_report_str(d, "action");
			if (s != NULL && (strcmp(s, "quarantine") == 0 || strcmp(s, "drop") == 0 ||
					  strcmp(s, "bounce") == 0))
				stopped = true;
			s = store_report_str(d, "filter");
			store_report_key_add(&filters, &nfilters, s != NULL ? s : "");
		} else if (strcmp(t, "quarantine") == 0) {
			s = store_report_str(d, "quarantine");
			if (s != NULL && strcasecmp(s, "outbreak") == 0) {
				const char *r = store_report_str(d, "reason");
				store_report_key_add(&outbreaks, &noutbreaks, r != NULL ? r : "");
			}
		} else if (strcmp(t, "reply") == 0) {
			s = store_report_str(d, "reply");
			skip = s != NULL && s[0] == '4';
		}
		json_decref(d);
	}
	if (recv == NULL || skip)
		goto out;
	const json_t *rl = json_object_get(recv, "recipients");
	const json_t *tot = json_object_get(recv, "recipients_total");
	int64_t nrcpt =
	    json_is_integer(tot) ? (int64_t)json_integer_value(tot) : (int64_t)json_array_size(rl);
	if (nrcpt <= 0)
		goto out;
	int cls = spam	    ? STORE_REPORT_SPAM
		  : suspect ? STORE_REPORT_SUSPECT
		  : virus   ? STORE_REPORT_VIRUS
		  : stopped ? STORE_REPORT_CONTENT_FILTER
			    : STORE_REPORT_CLEAN;
	int64_t c[STORE_REPORT_NCOUNTERS] = {0};
	c[STORE_REPORT_INCOMING] = nrcpt;
	c[cls] = nrcpt;
	const char *sender = store_report_str(recv, "sender");
	const char *ip = store_report_str(recv, "client_ip");
	char *sender_lc = store_report_lc(sender != NULL && sender[0] != '\0' ? sender : "<>");
	char *sdom =
	    sender != NULL && sender[0] != '\0' ? store_report_domain(sender) : xstrdup("<>");
	store_report_add(a, STORE_REPORT_OVERVIEW, at, "", c);
	store_report_add(a, STORE_REPORT_INCOMING_DOMAINS, at, sdom, c);
	store_report_add(a, STORE_REPORT_INCOMING_IPS, at, ip != NULL ? ip : "", c);
	store_report_add(a, STORE_REPORT_OUTGOING_SENDERS, at, sender_lc, c);
	for (size_t i = 0; i < nviruses; i++)
		store_report_add(a, STORE_REPORT_VIRUS_TYPES, at, viruses[i], c);
	for (size_t i = 0; i < nfilters; i++)
		store_report_add(a, STORE_REPORT_CONTENT_FILTERS, at, filters[i], c);
	for (size_t i = 0; i < noutbreaks; i++)
		store_report_add(a, STORE_REPORT_OUTBREAK, at, outbreaks[i], c);
	free(sender_lc);
	free(sdom);
	/* per recipient: one recipient's share of each counter */
	int64_t one[STORE_REPORT_NCOUNTERS] = {0};
	one[STORE_REPORT_INCOMING] = 1;
	one[cls] = 1;
	/* those the received event listed, then those the "recipients" events did
	 * beyond them (within the count) */
	size_t nrl = json_array_size(rl), end = nrl;
	if (more_first >= 0 && (size_t)more_first + json_array_size(more) > end)
		end = (size_t)more_first + json_array_size(more);
	if (end > (size_t)nrcpt)
		end = (size_t)nrcpt;
	for (size_t i = 0; i < end; i++) {
		const json_t *v = NULL;
		if (i < nrl)
			v = json_array_get(rl, i);
		else if (more_first >= 0 && (int64_t)i >= more_first)
			v = json_array_get(more, i - (size_t)more_first);
		const char *r = json_string_value(v);
		if (r == NULL)
			continue;
		char *lc = store_report_lc(r);
		char *dom = store_report_domain(r);
		store_report_add(a, STORE_REPORT_INTERNAL_USERS, at, lc, one);
		store_report_add(a, STORE_REPORT_OUTGOING_DESTINATIONS, at, dom, one);
		free(lc);
		free(dom);
	}
out:
	json_decref(recv);
	json_decref(more);
	store_report_keys_free(viruses, nviruses);
	store_report_keys_free(filters, nfilters);
	store_report_keys_free(outbreaks, noutbreaks);
}

int store_report_ingest(const char *gateway, const struct store_event *const *fresh, size_t n,
			store_report_fetch_fn fetch, store_report_write_fn write, void *ctx)
{
	struct store_report_acc a = {0};
	const char **ids = xcalloc(n + 1, sizeof(*ids));
	size_t nids = 0;
	int64_t since = INT64_MAX;
	for (size_t i = 0; i < n; i++) {
		const struct store_event *e = fresh[i];
		if (e->msg_id == NULL) {
			store_report_single(&a, e->type, e->at, e->detail);
		} else if (strcmp(e->type, "reply") == 0) {
			ids[nids++] = e->msg_id;
			since = e->at < since ? e->at : since;
		}
	}
	int rc = 0;
	if (nids > 0) {
		struct store_event_row *rows = NULL;
		size_t nrows = 0;
		/* a message's events are minutes apart, a day is a wide margin */
		rc = fetch(ctx, gateway, ids, nids, since - 86400000, &rows, &nrows);
		for (size_t i = 0; rc == 0 && i < nrows;) {
			size_t j = i;
			while (j < nrows && strcmp(rows[j].msg_id, rows[i].msg_id) == 0)
				j++;
			store_report_message(&a, &rows[i], j - i, fresh, n);
			i = j;
		}
		store_event_rows_free(rows, nrows);
	}
	free(ids);
	store_report_acc_finish(&a);
	if (rc == 0 && a.n > 0)
		rc = write(ctx, gateway, &a);
	store_report_acc_free(&a);
	return rc;
}

/* ---- reads and retention ---- */

static const struct store_ops *store_report_ops(struct store *st)
{
	return ((const struct store_head *)(void *)st)->ops;
}

/* ---- top-N reads: the range in whole months and days, merged by key ---- */

#define STORE_REPORT_DAY_MS 86400000LL

/* The start of the month after the one starting at m. */
static int64_t store_report_next_month(int64_t m)
{
	return store_report_bucket(STORE_REPORT_MONTH, m + 32 * STORE_REPORT_DAY_MS);
}

int64_t store_report_bucket_end(int gran, int64_t bucket)
{
	if (gran == STORE_REPORT_HOUR)
		return bucket + 3600000LL;
	if (gran == STORE_REPORT_DAY)
		return bucket + STORE_REPORT_DAY_MS;
	return store_report_next_month(store_report_bucket(STORE_REPORT_MONTH, bucket));
}

size_t store_report_backfill_buckets(int gran, int64_t bucket, int64_t cutoff,
				     int gv[STORE_REPORT_NGRANS], int64_t bv[STORE_REPORT_NGRANS])
{
	size_t k = 0;
	gv[k] = gran;
	bv[k++] = bucket;
	/* a coarser bucket that ended by cutoff comes whole from the gateway */
	for (int g = gran + 1; g < STORE_REPORT_NGRANS; g++) {
		int64_t b = store_report_bucket(g, bucket);
		if (store_report_bucket_end(g, b) <= cutoff)
			break;
		gv[k] = g;
		bv[k++] = b;
	}
	return k;
}

size_t store_report_spans(const struct store_report_query *q, struct store_report_span v[3])
{
	if (q->since >= q->until)
		return 0;
	if (q->gran != STORE_REPORT_DAY) {
		v[0] = (struct store_report_span){q->gran, q->since, q->until};
		return 1;
	}
	/* the daily buckets starting in [since, until) cover [lo, hi) */
	int64_t lo = store_report_bucket(STORE_REPORT_DAY, q->since);
	if (lo < q->since)
		lo += STORE_REPORT_DAY_MS;
	int64_t hi = store_report_bucket(STORE_REPORT_DAY, q->until - 1) + STORE_REPORT_DAY_MS;
	if (lo >= hi)
		return 0;
	int64_t m0 = store_report_bucket(STORE_REPORT_MONTH, lo);
	if (m0 < lo)
		m0 = store_report_next_month(m0);
	int64_t m1 = m0;
	while (store_report_next_month(m1) <= hi)
		m1 = store_report_next_month(m1);
	if (m1 == m0 || m0 >= hi) {
		v[0] = (struct store_report_span){STORE_REPORT_DAY, lo, hi};
		return 1;
	}
	/* a month's row holds the sum of its days' rows: they are written together */
	size_t k = 0;
	if (lo < m0)
		v[k++] = (struct store_report_span){STORE_REPORT_DAY, lo, m0};
	v[k++] = (struct store_report_span){STORE_REPORT_MONTH, m0, m1};
	if (m1 < hi)
		v[k++] = (struct store_report_span){STORE_REPORT_DAY, m1, hi};
	return k;
}

struct store_report_slot {
	char *key;
	uint64_t hash;
	int64_t c[STORE_REPORT_NCOUNTERS];
};

struct store_report_merge {
	struct store_report_slot *v; /* open addressing, cap a power of 2 */
	size_t n, cap;
};

static uint64_t store_report_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

static void store_report_merge_grow(struct store_report_merge *m)
{
	size_t cap = m->cap ? 2 * m->cap : 1024;
	struct store_report_slot *v = xcalloc(cap, sizeof(*v));
	for (size_t i = 0; i < m->cap; i++) {
		if (m->v[i].key == NULL)
			continue;
		size_t j = m->v[i].hash & (cap - 1);
		while (v[j].key != NULL)
			j = (j + 1) & (cap - 1);
		v[j] = m->v[i];
	}
	free(m->v);
	m->v = v;
	m->cap = cap;
}

/* store_report_row_fn: adds a row's counters to its key's. */
static void store_report_merge_row(void *arg, const char *key,
				   const int64_t c[STORE_REPORT_NCOUNTERS])
{
	struct store_report_merge *m = arg;
	if (2 * (m->n + 1) > m->cap)
		store_report_merge_grow(m);
	uint64_t h = store_report_hash(key);
	size_t j = h & (m->cap - 1);
	while (m->v[j].key != NULL && (m->v[j].hash != h || strcmp(m->v[j].key, key) != 0))
		j = (j + 1) & (m->cap - 1);
	struct store_report_slot *s = &m->v[j];
	if (s->key == NULL) {
		s->key = xstrdup(key);
		s->hash = h;
		m->n++;
	}
	for (int i = 0; i < STORE_REPORT_NCOUNTERS; i++)
		s->c[i] += c[i];
}

/* The order of a top-N: most incoming, then most count, then key (bytes). */
static int store_report_rank_cmp(const void *x, const void *y)
{
	const struct store_report_slot *a = *(const struct store_report_slot *const *)x;
	const struct store_report_slot *b = *(const struct store_report_slot *const *)y;
	if (a->c[STORE_REPORT_INCOMING] != b->c[STORE_REPORT_INCOMING])
		return a->c[STORE_REPORT_INCOMING] > b->c[STORE_REPORT_INCOMING] ? -1 : 1;
	if (a->c[STORE_REPORT_COUNT] != b->c[STORE_REPORT_COUNT])
		return a->c[STORE_REPORT_COUNT] > b->c[STORE_REPORT_COUNT] ? -1 : 1;
	return strcmp(a->key, b->key);
}

/* Restores the heap order (the worst of the kept at the root) below i. */
static void store_report_heap_down(struct store_report_slot **h, size_t n, size_t i)
{
	for (;;) {
		size_t w = i, l = 2 * i + 1, r = l + 1;
		if (l < n && store_report_rank_cmp(&h[l], &h[w]) > 0)
			w = l;
		if (r < n && store_report_rank_cmp(&h[r], &h[w]) > 0)
			w = r;
		if (w == i)
			return;
		struct store_report_slot *t = h[i];
		h[i] = h[w];
		h[w] = t;
		i = w;
	}
}

static int store_report_top(struct store *st, const struct store_report_query *q,
			    struct store_report_row **out, size_t *n)
{
	const struct store_ops *ops = store_report_ops(st);
	struct store_report_span spans[3];
	size_t nspans = store_report_spans(q, spans);
	struct store_report_merge m = {0};
	int rc = nspans == 0 ? 0
			     : ops->report_scan(st, q->report, q->gateway, spans, nspans,
						store_report_merge_row, &m);
	/* the best limit keys: a heap of them with the worst at the root, then sorted */
	size_t k = 0, limit = q->limit;
	struct store_report_slot **h = xcalloc(limit + 1, sizeof(*h));
	for (size_t i = 0; rc == 0 && i < m.cap; i++) {
		struct store_report_slot *s = &m.v[i];
		if (s->key == NULL)
			continue;
		if (k < limit) {
			h[k++] = s;
			for (size_t j = k - 1;
			     j > 0 && store_report_rank_cmp(&h[(j - 1) / 2], &h[j]) < 0;
			     j = (j - 1) / 2) {
				struct store_report_slot *t = h[j];
				h[j] = h[(j - 1) / 2];
				h[(j - 1) / 2] = t;
			}
		} else if (store_report_rank_cmp(&s, &h[0]) < 0) {
			h[0] = s;
			store_report_heap_down(h, k, 0);
		}
	}
	if (rc == 0) {
		qsort(h, k, sizeof(*h), store_report_rank_cmp);
		struct store_report_row *v = xcalloc(k + 1, sizeof(*v));
		for (size_t i = 0; i < k; i++) {
			v[i].key = h[i]->key;
			h[i]->key = NULL;
			memcpy(v[i].c, h[i]->c, sizeof(v[i].c));
		}
		*out = v;
		*n = k;
	}
	free(h);
	for (size_t i = 0; i < m.cap; i++)
		free(m.v[i].key);
	free(m.v);
	return rc;
}

int store_report_read(struct store *st, const struct store_report_query *q,
		      struct store_report_row **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	const struct store_ops *ops = store_report_ops(st);
	if (ops->report_read == NULL)
		return -ENOSYS;
	if (q->report < 0 || q->report >= STORE_REPORT_NREPORTS || q->gran < 0 ||
	    q->gran >= STORE_REPORT_NGRANS || q->since > q->until ||
	    (!q->series && (q->limit < 1 || q->limit > STORE_REPORT_LIMIT_MAX)) ||
	    (q->gateway != NULL && !store_gateway_name_ok(q->gateway)))
		return -EINVAL;
	if (!q->series && ops->report_scan != NULL)
		return store_report_top(st, q, out, n);
	return ops->report_read(st, q, out, n);
}

void store_report_rows_free(struct store_report_row *v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(v[i].key);
	free(v);
}

int store_report_purge(struct store *st, int gran, int64_t before, size_t batch, uint64_t *rows)
{
	*rows = 0;
	const struct store_ops *ops = store_report_ops(st);
	if (ops->report_purge == NULL)
		return -ENOSYS;
	if (gran < 0 || gran >= STORE_REPORT_NGRANS || batch < 1 || batch > 100000)
		return -EINVAL;
	return ops->report_purge(st, gran, before, batch, rows);
}

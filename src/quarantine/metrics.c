/*
 * metrics — atomic counters and the /metrics text (Prometheus exposition 0.0.4).
 * Not for: per-gateway or per-user breakdowns (reporting does those).
 */
#include "quarantine/metrics.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "store/store.h"

/* A node seen within three of its refreshes counts as alive. */
#define METRICS_NODE_ALIVE_MS (3 * STORE_NODE_BEAT_MS)

static _Atomic uint64_t metrics_counters[METRICS_COUNTER_COUNT];

static const char *const metrics_refused_reasons[] = {
    "acl",
    "connection_limit",
    "client_connection_limit",
    "line_too_long",
    "message_too_large",
    "too_many_recipients",
    "header_limit",
    "too_many_commands",
    "too_many_errors",
    "http_request",
    "syntax",
    "bad_sequence",
    "unknown_command",
    "policy",
    "timeout",
    "shutdown",
    "other",
};
#define METRICS_REFUSED_COUNT (sizeof(metrics_refused_reasons) / sizeof(metrics_refused_reasons[0]))
static _Atomic uint64_t metrics_refused_counts[METRICS_REFUSED_COUNT];

static const struct {
	const char *name;
	const char *help;
} metrics_counter_info[METRICS_COUNTER_COUNT] = {
    [METRICS_MESSAGES_RECEIVED] = {"lazaret_messages_received_total",
				   "Messages stored by the quarantine listener."},
    [METRICS_BYTES_RECEIVED] = {"lazaret_bytes_received_total",
				"Bytes of messages stored by the quarantine listener."},
    [METRICS_RECIPIENTS_RECEIVED] = {"lazaret_recipients_received_total",
				     "Recipients quarantined."},
    [METRICS_SMTP_CONNECTIONS] = {"lazaret_smtp_connections_total", "SMTP connections accepted."},
    [METRICS_RELEASED] = {"lazaret_released_total", "Recipients delivered after release."},
    [METRICS_RELEASE_FAILED] = {"lazaret_release_failed_total",
				"Recipients whose released delivery failed permanently."},
    [METRICS_RELEASE_RETRIED] = {"lazaret_release_retried_total",
				 "Release delivery attempts deferred for a retry."},
    [METRICS_EXPIRED] = {"lazaret_expired_total", "Recipients expired."},
    [METRICS_PURGED] = {"lazaret_purged_total", "Messages purged from the store."},
    [METRICS_DELETED] = {"lazaret_deleted_total", "Recipients deleted by users."},
    [METRICS_STORE_ERRORS] = {"lazaret_store_errors_total",
			      "Messages refused with 451 because they could not be stored."},
    [METRICS_LOGIN_CHECKS] = {"lazaret_login_checks_total",
			      "Login credential checks run (password hash or directory)."},
    [METRICS_LOGIN_LIMITED] = {"lazaret_login_limited_total",
			       "Logins refused with 429 by the limiter, unchecked."},
    [METRICS_LOGIN_BUSY] = {"lazaret_login_busy_total",
			    "Logins refused with 503 because the check queue was full."},
    [METRICS_API_READ_BUSY] = {"lazaret_api_read_busy_total",
			       "API reads refused with 503 because every reader thread was busy "
			       "and the queue full."},
    [METRICS_API_QUERY_TIMEOUTS] = {"lazaret_api_query_timeouts_total",
				    "API reads stopped with 503 query_timeout after [http] "
				    "query_timeout."},
    [METRICS_PVO_OVERFLOW_RELEASED] = {"lazaret_pvo_overflow_released_total",
				       "PVO memberships released early because the PVO quarantines "
				       "were over [pvo_quarantine] max_size."},
    [METRICS_PVO_OVERFLOW_DELETED] = {"lazaret_pvo_overflow_deleted_total",
				      "PVO memberships deleted early because the PVO quarantines "
				      "were over [pvo_quarantine] max_size."},
    [METRICS_PVO_FULL_REFUSED] = {"lazaret_pvo_full_refused_total",
				  "PVO transfers refused with 452 4.3.1: over max_size with every "
				  "held message in an overflow-exempt quarantine."},
    [METRICS_BACKUPS] = {"lazaret_backups_total",
			 "Backup archives written (lazaretctl backup and [backup])."},
    [METRICS_BACKUP_FAILURES] = {"lazaret_backup_failures_total", "Backups that failed."},
};

void metrics_add(enum metrics_counter c, uint64_t n)
{
	atomic_fetch_add_explicit(&metrics_counters[c], n, memory_order_relaxed);
}

uint64_t metrics_get(enum metrics_counter c)
{
	return atomic_load_explicit(&metrics_counters[c], memory_order_relaxed);
}

void metrics_refused(const char *reason)
{
	size_t i;
	for (i = 0; i < METRICS_REFUSED_COUNT - 1; i++) {
		if (strcmp(metrics_refused_reasons[i], reason) == 0)
			break;
	}
	atomic_fetch_add_explicit(&metrics_refused_counts[i], 1, memory_order_relaxed);
}

static const char *const metrics_http_refused_reasons[] = {
    "connection_limit", "client_connection_limit", "descriptors", "request_timeout", "other",
};
#define METRICS_HTTP_REFUSED_COUNT                                                                 \
	(sizeof(metrics_http_refused_reasons) / sizeof(metrics_http_refused_reasons[0]))
static _Atomic uint64_t metrics_http_refused_counts[METRICS_HTTP_REFUSED_COUNT];

void metrics_http_refused(const char *reason)
{
	size_t i;
	for (i = 0; i < METRICS_HTTP_REFUSED_COUNT - 1; i++) {
		if (strcmp(metrics_http_refused_reasons[i], reason) == 0)
			break;
	}
	atomic_fetch_add_explicit(&metrics_http_refused_counts[i], 1, memory_order_relaxed);
}

/*
 * The lazaretd processes sharing the store (store_nodes): how many were seen
 * within METRICS_NODE_ALIVE_MS, and when each was last seen.
 */
static void metrics_render_nodes(FILE *f, struct store *st)
{
	struct store_node *v = NULL;
	size_t n = 0;
	int64_t now = clock_now_ms();
	if (st == NULL || store_nodes(st, 0, &v, &n) < 0)
		return;
	size_t alive = 0;
	for (size_t i = 0; i < n; i++)
		alive += v[i].last_seen >= now - METRICS_NODE_ALIVE_MS ? 1 : 0;
	fprintf(f,
		"# HELP lazaret_store_nodes lazaretd processes sharing the store, seen lately.\n"
		"# TYPE lazaret_store_nodes gauge\nlazaret_store_nodes %zu\n"
		"# HELP lazaret_store_node_last_seen_seconds When each node sharing the store was "
		"last seen (Unix time).\n# TYPE lazaret_store_node_last_seen_seconds gauge\n",
		alive);
	for (size_t i = 0; i < n; i++) {
		fputs("lazaret_store_node_last_seen_seconds{node=\"", f);
		for (const char *p = v[i].name; *p != '\0'; p++) {
			if (*p == '"' || *p == '\\')
				fputc('\\', f);
			fputc(*p, f);
		}
		fprintf(f, "\"} %lld\n", (long long)(v[i].last_seen / 1000));
	}
	store_node_array_free(v, n);
}

static struct {
	metrics_section_fn fn;
	void *arg;
} metrics_sections[METRICS_SECTIONS_MAX];
static atomic_size_t metrics_nsections;

void metrics_add_section(metrics_section_fn fn, void *arg)
{
	size_t i = atomic_load(&metrics_nsections);
	if (i >= METRICS_SECTIONS_MAX)
		panic("metrics: more than %d sections", METRICS_SECTIONS_MAX);
	metrics_sections[i].fn = fn;
	metrics_sections[i].arg = arg;
	atomic_store(&metrics_nsections, i + 1);
}

char *metrics_render(struct store *st)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	if (f == NULL)
		return xstrdup("");
	for (int c = 0; c < METRICS_COUNTER_COUNT; c++) {
		fprintf(f, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n",
			metrics_counter_info[c].name, metrics_counter_info[c].help,
			metrics_counter_info[c].name, metrics_counter_info[c].name,
			(unsigned long long)metrics_get(c));
	}
	fprintf(f, "# HELP lazaret_smtp_refused_total SMTP connections and commands refused, "
		   "by reason.\n# TYPE lazaret_smtp_refused_total counter\n");
	for (size_t i = 0; i < METRICS_REFUSED_COUNT; i++) {
		fprintf(f, "lazaret_smtp_refused_total{reason=\"%s\"} %llu\n",
			metrics_refused_reasons[i],
			(unsigned long long)atomic_load(&metrics_refused_counts[i]));
	}
	fprintf(f, "# HELP lazaret_http_refused_total HTTP connections closed by a cap or the "
		   "request deadline, by reason.\n# TYPE lazaret_http_refused_total counter\n");
	for (size_t i = 0; i < METRICS_HTTP_REFUSED_COUNT; i++) {
		fprintf(f, "lazaret_http_refused_total{reason=\"%s\"} %llu\n",
			metrics_http_refused_reasons[i],
			(unsigned long long)atomic_load(&metrics_http_refused_counts[i]));
	}
	if (st != NULL) {
		/* before the stats: those need the database, these say whether it answers */
		struct store_status ss;
		store_status(st, &ss);
		fprintf(f,
			"# HELP lazaret_store_up 1 while the store's database can be reached.\n"
			"# TYPE lazaret_store_up gauge\nlazaret_store_up %d\n"
			"# HELP lazaret_store_connect_failures_total Failed connection attempts "
			"to the store's database.\n"
			"# TYPE lazaret_store_connect_failures_total counter\n"
			"lazaret_store_connect_failures_total %llu\n",
			ss.available ? 1 : 0, (unsigned long long)ss.connect_failures);
		if (ss.replica)
			fprintf(
			    f,
			    "# HELP lazaret_store_replica_up 1 while [store] read_dsn answers.\n"
			    "# TYPE lazaret_store_replica_up gauge\nlazaret_store_replica_up "
			    "%d\n"
			    "# HELP lazaret_store_replica_fallbacks_total Reads for the replica "
			    "that the primary served.\n"
			    "# TYPE lazaret_store_replica_fallbacks_total counter\n"
			    "lazaret_store_replica_fallbacks_total %llu\n",
			    ss.replica_available ? 1 : 0, (unsigned long long)ss.replica_fallbacks);
	}
	struct store_stats s;
	if (st != NULL && store_stats(st, &s) == 0) {
		fprintf(
		    f,
		    "# HELP lazaret_store_messages Messages in the store.\n"
		    "# TYPE lazaret_store_messages gauge\nlazaret_store_messages %llu\n"
		    "# HELP lazaret_store_bytes Compressed bytes of stored messages.\n"
		    "# TYPE lazaret_store_bytes gauge\nlazaret_store_bytes %llu\n"
		    "# HELP lazaret_store_original_bytes Original bytes of stored messages.\n"
		    "# TYPE lazaret_store_original_bytes gauge\nlazaret_store_original_bytes "
		    "%llu\n"
		    "# HELP lazaret_store_file_bytes Size of the store files on disk.\n"
		    "# TYPE lazaret_store_file_bytes gauge\nlazaret_store_file_bytes %llu\n"
		    "# HELP lazaret_release_queue_depth Deliveries waiting in the release "
		    "queue.\n"
		    "# TYPE lazaret_release_queue_depth gauge\nlazaret_release_queue_depth %llu\n",
		    (unsigned long long)s.messages, (unsigned long long)s.bytes_stored,
		    (unsigned long long)s.bytes_original, (unsigned long long)s.file_bytes,
		    (unsigned long long)s.deliveries_pending);
	}
	metrics_render_nodes(f, st);
	size_t nsections = atomic_load(&metrics_nsections);
	for (size_t i = 0; i < nsections; i++)
		metrics_sections[i].fn(f, metrics_sections[i].arg);
	fclose(f);
	return out;
}

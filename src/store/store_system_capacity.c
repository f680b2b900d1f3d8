/*
 * store_system_capacity — the backend-independent half of the system_capacity
 * report (store.h "store_capacity_read"): the checks, and days and months made
 * of the hourly rows the backends keep (table capacity_hours, migration 23).
 *
 * Not for: the SQL (store_sqlite_report.c, store_pg_report.c), reading a
 * capacity event's JSON (api_events.c).
 */
#include "store/store.h"
#include "store/store_backend.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

static const struct store_ops *store_capacity_ops(struct store *st)
{
	return ((const struct store_head *)(void *)st)->ops;
}

/* Adds hour h to bucket row b: sums add, maxima take the higher. */
static void store_capacity_fold(struct store_capacity_row *b, const struct store_capacity_row *h)
{
	b->samples += h->samples;
	b->received += h->received;
	b->relayed += h->relayed;
	b->connections += h->connections;
	b->current_sum += h->current_sum;
	b->load_sum += h->load_sum;
	if (h->current_max > b->current_max)
		b->current_max = h->current_max;
	if (h->load_max > b->load_max)
		b->load_max = h->load_max;
	if (h->memory_max > b->memory_max)
		b->memory_max = h->memory_max;
	if (h->backlog_max > b->backlog_max)
		b->backlog_max = h->backlog_max;
}

int store_capacity_read(struct store *st, const char *gateway, int gran, int64_t since,
			int64_t until, struct store_capacity_row **out, size_t *n)
{
	const struct store_ops *ops = store_capacity_ops(st);
	*out = NULL;
	*n = 0;
	if (ops->capacity_read == NULL)
		return -ENOSYS;
	if (gran < 0 || gran >= STORE_REPORT_NGRANS || since > until ||
	    (gateway != NULL && !store_gateway_name_ok(gateway)))
		return -EINVAL;
	struct store_capacity_row *v = NULL;
	size_t k = 0;
	int rc = ops->capacity_read(st, gateway, since, until, &v, &k);
	if (rc < 0 || gran == STORE_REPORT_HOUR) {
		*out = v;
		*n = rc < 0 ? 0 : k;
		if (rc < 0)
			free(v);
		return rc;
	}
	/* the hours come in time order: fold each into its day or month */
	size_t m = 0;
	for (size_t i = 0; i < k; i++) {
		struct store_capacity_row h = v[i];
		int64_t b = store_report_bucket(gran, h.at);
		if (m == 0 || v[m - 1].at != b) {
			memset(&v[m], 0, sizeof(v[m]));
			v[m++].at = b;
		}
		store_capacity_fold(&v[m - 1], &h);
	}
	*out = v;
	*n = m;
	return 0;
}

int store_capacity_purge(struct store *st, int64_t before, size_t batch, uint64_t *rows)
{
	const struct store_ops *ops = store_capacity_ops(st);
	*rows = 0;
	if (ops->capacity_purge == NULL)
		return -ENOSYS;
	if (batch < 1 || batch > 100000)
		return -EINVAL;
	return ops->capacity_purge(st, before, batch, rows);
}

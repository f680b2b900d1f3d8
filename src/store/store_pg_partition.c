/*
 * store_pg_partition — the daily partitions of the PostgreSQL message tables:
 * creating them ahead of time, and retention by dropping a whole day instead of
 * deleting its rows. Not for: the schema (migration 5 in store_pg.c makes the
 * partitioned tables and the SQL functions used here), the expiry of single
 * messages (store_pg_expire's row path).
 *
 * Layout: messages, bodies, recipients, attachments and (migration 8) the PVO
 * memberships are partitioned by RANGE
 * of the message id. A UUIDv7 id begins with its millisecond time in hex, so the
 * UTC day D is the ids from lazaret_uuidv7_floor(D) to lazaret_uuidv7_floor(D +
 * 1 day); each table has one partition per day, named <table>_pYYYYMMDD, and a
 * DEFAULT partition <table>_default for ids outside every day (which should stay
 * empty: store_pg_maintain counts its rows).
 *
 * Life of a day:
 *
 *   state            to               by
 *   (none)           created          store_pg_partitions_ensure: at open and by
 *                                     store_pg_maintain, STORE_PG_PARTITION_AHEAD_DAYS
 *                                     ahead; by lazaret-migrate-store for its range
 *   created          filled           ingest (tuple routing through the parents)
 *   filled           dropped          store_pg_partitions_expire, when the day ended
 *                                     before the cutoff and nothing in it is still
 *                                     needed (every message it keeps is in the
 *                                     quarantine being expired and older than the
 *                                     cutoff, no recipient is releasing, no delivery
 *                                     refers to it)
 *   filled           (rows deleted)   the row path of store_pg_expire / store_pg_purge
 *                                     for a day that cannot be dropped yet
 *
 * Triggers do not fire on DROP: the counters they keep (totals, quarantines) are
 * lowered by the day's sums in the same transaction, so they stay exact.
 */
#include "store/store.h"
#include "store/store_backend.h"
#include "store/store_pg_int.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/strbuf.h"
#include "common/xalloc.h"

#define STORE_PG_DAY_MS (86400LL * 1000)
/*
 * How long a drop waits for the tables' locks (it needs every reader and writer of
 * the message tables out of the way for a moment): longer, and ingest would queue
 * behind it; a drop that does not get them is left for the next expiry run.
 */
#define STORE_PG_DROP_LOCK_TIMEOUT "5s"
/* Rows of a DEFAULT partition counted at most (the count is for a warning). */
#define STORE_PG_STRAY_COUNT_MAX 100000

/* The tables partitioned by day, children first (their foreign keys go first). */
static const char *const store_pg_partitioned[] = {"bodies", "attachments", "recipients",
						   "memberships", "messages"};
#define STORE_PG_NPARTITIONED (sizeof(store_pg_partitioned) / sizeof(store_pg_partitioned[0]))

int store_pg_partitions_ensure(PGconn *c, int64_t from_ms, int64_t to_ms, int *created)
{
	struct store_pg_params p = {0};
	store_pg_int(&p, from_ms);
	store_pg_int(&p, to_ms);
	PGresult *r = store_pg_exec(c, "partitions_ensure",
				    "SELECT lazaret_message_partitions($1, $2)", &p, false);
	store_pg_params_clear(&p);
	if (r == NULL)
		return -EIO;
	int n = (int)store_pg_i64(r, 0, 0);
	PQclear(r);
	/* the tracking tables' days (the tracking migration), with the messages' */
	store_pg_int(&p, from_ms);
	store_pg_int(&p, to_ms);
	r = store_pg_exec(c, "partitions_ensure_tracking",
			  "SELECT lazaret_tracking_partitions($1, $2)", &p, false);
	store_pg_params_clear(&p);
	if (r == NULL)
		return -EIO;
	n += (int)store_pg_i64(r, 0, 0);
	PQclear(r);
	if (n > 0)
		log_info("store.partitions_created", "tables=%d from=%" PRId64 " to=%" PRId64, n,
			 from_ms, to_ms);
	if (created != NULL)
		*created = n;
	return 0;
}

int store_pg_maintain(struct store *s, int64_t now, uint64_t *stray)
{
	struct store_pg *st = store_pg_of(s);
	struct store_pg_conn *c = NULL;
	int rc = store_pg_conn_get(st, &c);
	if (rc < 0)
		return rc;
	/* a day that cannot be made (its ids already sit in DEFAULT) is logged by
	 * store_pg_exec; the count below says why */
	rc = store_pg_partitions_ensure(
	    c->pg, now, now + STORE_PG_PARTITION_AHEAD_DAYS * STORE_PG_DAY_MS, NULL);
	struct strbuf q = STRBUF_INIT;
	strbuf_puts(&q, "SELECT 0");
	for (size_t i = 0; i < STORE_PG_NPARTITIONED; i++)
		strbuf_printf(&q, " + (SELECT count(*) FROM (SELECT 1 FROM %s_default LIMIT %d) d)",
			      store_pg_partitioned[i], STORE_PG_STRAY_COUNT_MAX);
	PGresult *r = store_pg_exec(c->pg, "partitions_default", strbuf_str(&q), NULL, false);
	strbuf_free(&q);
	store_pg_conn_put(st, c);
	if (r == NULL)
		return -EIO;
	uint64_t n = (uint64_t)store_pg_i64(r, 0, 0);
	PQclear(r);
	if (n > 0)
		log_warn("store.partition_default_rows",
			 "rows=%" PRIu64 " reason=\"rows outside every daily partition:"
			 " they are expired row by row, not dropped with a day\"",
			 n);
	if (stray != NULL)
		*stray = n;
	return rc;
}

/* What a day holds, as store_pg_partition_check reads it. */
struct store_pg_day {
	const char *suffix; /* "p20251009" */
	const char *quarantine;
	int64_t cutoff;
	bool droppable;
	bool dropped;
	uint64_t messages;    /* rows of messages */
	uint64_t quarantined; /* recipients still quarantined (they expire with the day) */
};

/*
 * Reads day d's sums on c: droppable when nothing in it is needed any more (see
 * the top of the file). 0 or -EIO.
 */
static int store_pg_partition_check(PGconn *c, struct store_pg_day *d)
{
	char *sql = xasprintf(
	    "SELECT (SELECT count(*) FROM messages_%1$s),"
	    " (SELECT count(*) FROM messages_%1$s WHERE active > 0"
	    "  AND NOT (quarantine = $1 AND received_at < $2)),"
	    " (SELECT count(*) FROM recipients_%1$s WHERE state = 0),"
	    " (SELECT count(*) FROM recipients_%1$s WHERE state = 1),"
	    " (SELECT count(*) FROM deliveries x JOIN messages_%1$s m ON m.id = x.msg_id)",
	    d->suffix);
	struct store_pg_params p = {0};
	store_pg_text(&p, d->quarantine);
	store_pg_int(&p, d->cutoff);
	PGresult *r = store_pg_exec(c, "partition_check", sql, &p, false);
	store_pg_params_clear(&p);
	free(sql);
	if (r == NULL)
		return -EIO;
	d->messages = (uint64_t)store_pg_i64(r, 0, 0);
	d->quarantined = (uint64_t)store_pg_i64(r, 0, 2);
	d->droppable =
	    store_pg_i64(r, 0, 1) == 0 && store_pg_i64(r, 0, 3) == 0 && store_pg_i64(r, 0, 4) == 0;
	PQclear(r);
	return 0;
}

/*
 * One day in one transaction: the tables locked (in ingest's order: messages
 * first), the check made again under the lock, the counters lowered by the day's
 * sums, then every table's partition detached and dropped, children first.
 */
static int store_pg_partition_drop_tx(struct store_pg *st, PGconn *c, void *arg)
{
	(void)st;
	struct store_pg_day *d = arg;
	d->dropped = false;
	int rc = store_pg_script(c, "partition_lock",
				 "SET LOCAL lock_timeout = '" STORE_PG_DROP_LOCK_TIMEOUT "';"
				 " LOCK TABLE ONLY messages, ONLY bodies, ONLY recipients,"
				 " ONLY attachments, ONLY memberships IN ACCESS EXCLUSIVE MODE");
	if (rc < 0 || (rc = store_pg_partition_check(c, d)) < 0 || !d->droppable)
		return rc;
	struct strbuf q = STRBUF_INIT;
	strbuf_printf(&q,
		      "UPDATE totals SET messages = totals.messages - d.n,"
		      " bytes_original = bytes_original - d.s, bytes_stored = bytes_stored - d.ss"
		      " FROM (SELECT count(*) AS n, coalesce(sum(size), 0) AS s,"
		      " coalesce(sum(stored_size), 0) AS ss FROM messages_%1$s) AS d;"
		      "UPDATE quarantines q SET messages = q.messages - d.n, bytes = q.bytes - d.b"
		      " FROM (SELECT quarantine, count(*) AS n, sum(size) AS b FROM messages_%1$s"
		      " WHERE held > 0 GROUP BY quarantine) AS d WHERE q.name = d.quarantine;",
		      d->suffix);
	for (size_t i = 0; i < STORE_PG_NPARTITIONED; i++)
		strbuf_printf(&q,
			      "ALTER TABLE %1$s DETACH PARTITION %1$s_%2$s; DROP TABLE %1$s_%2$s;",
			      store_pg_partitioned[i], d->suffix);
	rc = store_pg_script(c, "partition_drop", strbuf_str(&q));
	strbuf_free(&q);
	d->dropped = rc == 0;
	return rc;
}

int store_pg_partitions_expire(struct store_pg *st, const char *quarantine, int64_t cutoff,
			       uint64_t *expired, uint64_t *purged)
{
	*expired = 0;
	*purged = 0;
	struct store_pg_conn *c = NULL;
	int rc = store_pg_conn_get(st, &c);
	if (rc < 0)
		return rc;
	/* the days that ended before the cutoff, oldest first */
	struct store_pg_params p = {0};
	store_pg_int(&p, cutoff);
	PGresult *r = store_pg_exec(
	    c->pg, "partitions_old",
	    "SELECT substr(c.relname, 10) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
	    " WHERE i.inhparent = 'messages'::regclass AND c.relname ~ '^messages_p[0-9]{8}$'"
	    " AND extract(epoch FROM to_date(substr(c.relname, 11), 'YYYYMMDD'))::bigint * 1000"
	    " + 86400000 <= $1 ORDER BY c.relname",
	    &p, false);
	store_pg_params_clear(&p);
	if (r == NULL) {
		store_pg_conn_put(st, c);
		return -EIO;
	}
	char **days = NULL;
	size_t ndays = 0;
	store_pg_collect(r, &days, &ndays);
	PQclear(r);
	for (size_t i = 0; i < ndays && rc == 0; i++) {
		struct store_pg_day d = {
		    .suffix = days[i], .quarantine = quarantine, .cutoff = cutoff};
		/* first without locks: most days that cannot go are seen so cheaply */
		rc = store_pg_read_begin(c->pg);
		if (rc == 0)
			rc = store_pg_partition_check(c->pg, &d);
		PQclear(PQexec(c->pg, "ROLLBACK"));
		if (rc < 0 || !d.droppable)
			continue;
		if (store_pg_tx(st, store_pg_partition_drop_tx, &d) < 0 || !d.dropped) {
			/* locks not had in time, or it changed: the row path does it now */
			log_info("store.partition_kept", "partition=%s quarantine=%s", d.suffix,
				 quarantine);
			continue;
		}
		*expired += d.quarantined;
		*purged += d.messages;
		log_info("store.partition_dropped",
			 "partition=%s quarantine=%s messages=%" PRIu64 " recipients=%" PRIu64,
			 d.suffix, quarantine, d.messages, d.quarantined);
	}
	store_pg_conn_put(st, c);
	for (size_t i = 0; i < ndays; i++)
		free(days[i]);
	free(days);
	return rc;
}

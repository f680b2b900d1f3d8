/*
 * lazaret-migrate-store — copies a SQLite store (data_dir/lazaret.db) into an
 * empty PostgreSQL database, so that an installation can move to
 * [store] backend = postgresql. Run it with lazaretd stopped.
 *
 * Not for: copying while mail flows, merging two stores, or the way back. It is
 * a separate program (not a lazaretctl command: lazaretctl is a client of the REST
 * API and links no store; not a lazaretd mode: the daemon's start-up, privilege
 * drop and listeners have no part in a one-shot copy).
 *
 * Every row keeps its identity: message seq and id (digest state refers to seq,
 * so it stays valid as is), audit seq, delivery job ids, safelist versions and the
 * change counter. Bodies are copied as stored (zstd frames), never recompressed.
 * Second factors, the reports' rollups, the centralization levels and the
 * scheduled reports with their archive are copied;
 * the tracking events are not (they age out under [tracking] retention).
 * Delivery leases are cleared; sessions are copied (users stay logged in), and so
 * is the gateway registry (gateways keep their tokens).
 *
 * Steps and what makes each:
 *   1. connect      PQconnectdb; a bad DSN ends here (exit 1).
 *   2. lock         the SQLite file is taken in exclusive locking mode
 *                   (sqlite_lock): a running lazaretd holds it open, and the probe
 *                   answers "in use"; the PostgreSQL store is opened through
 *                   store_open, which creates the schema and holds the owner lock
 *                   of store_pg for the whole copy (a lazaretd on the database
 *                   makes it fail).
 *   3. check empty  pg_check_empty: any account, message, audit row, safelist,
 *                   digest state or used token refuses the copy.
 *   4. copy         one PostgreSQL transaction: first the daily partitions of
 *                   every day the source's message ids fall on (copy_partitions;
 *                   lazaretd made only today and the week ahead), then one COPY
 *                   per table (copy_table), from one SQLite read transaction; an
 *                   interrupted run rolls back whole and leaves an empty database
 *                   to run again.
 *   5. verify       counts per table, per quarantine and state (recipients and PVO
 *                   memberships), quarantine settings, counters, no row
 *                   outside the daily partitions (verify_counts), then a sample of bodies through
 * store_get_raw on both stores (verify_bodies).
 *   6. analyze      ANALYZE: the planner's statistics of the copied rows.
 *
 * Exit status: 0 copied and verified, 1 refused or failed (the reason is
 * printed), 2 the command line is wrong.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/clock.h"
#include "common/fault.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "common/xalloc.h"
#include "store/store.h"

#define MIG_EXIT_OK    0
#define MIG_EXIT_FAIL  1
#define MIG_EXIT_USAGE 2

#define MIG_NAME "lazaret-migrate-store"
/* COPY data is sent in pieces of about this size: big enough to keep the
 * connection busy, small enough not to hold a large body set in memory. */
#define MIG_CHUNK (1024 * 1024)
/* A progress line at most this often. */
#define MIG_PROGRESS_MS 3000
/* Bodies compared byte for byte after the copy, spread over the whole store. */
#define MIG_SAMPLE_DEFAULT 1000
/* How long the SQLite probe waits for the file: a lazaretd that is stopping. */
#define MIG_SQLITE_BUSY_MS 2000

/*
 * One table copied: the SELECT on SQLite (columns in the order of cols), the
 * PostgreSQL columns COPY fills. Parents before children (foreign keys).
 */
struct mig_table {
	const char *name;
	const char *select;
	const char *cols;
	/* COPY's binary format: integers go as bigint, text and blobs as they are
	 * (no hex text for bodies: half the bytes, no decoding on the server) */
	bool binary;
};

/* clang-format off */
static const struct mig_table mig_tables[] = {
    {"messages",
     "SELECT seq, id, quarantine, received_at, sender, sender_lc, sender_domain, from_text,"
     " from_addr, from_addr_lc, from_domain, to_text, subject, message_id, date_ms, size,"
     " stored_size, verdict, score, gateway, client_address, held, active"
     " FROM messages ORDER BY seq",
     "seq, id, quarantine, received_at, sender, sender_lc, sender_domain, from_text,"
     " from_addr, from_addr_lc, from_domain, to_text, subject, message_id, date_ms, size,"
     " stored_size, verdict, score, gateway, client_address, held, active", false},
    /* PostgreSQL's bodies are keyed by the message id (its partition key) */
    {"bodies", "SELECT m.id, b.codec, b.data FROM bodies b JOIN messages m ON m.seq = b.msg_seq"
     " ORDER BY b.msg_seq",
     "msg_id, codec, data", true},
    {"recipients",
     "SELECT msg_id, address, address_lc, pos, state, reply, updated_at FROM recipients",
     "msg_id, address, address_lc, pos, state, reply, updated_at", false},
    {"attachments", "SELECT msg_id, idx, filename, content_type, size FROM attachments",
     "msg_id, idx, filename, content_type, size", false},
    /* the PVO quarantines' memberships (schema 8) */
    {"memberships",
     "SELECT msg_id, quarantine, reason, entered_at, expires_at, state, updated_at,"
     /* an Outbreak membership's rescan (schema 17) */
     " origin_gateway, origin_id, rescan, rescanned_at,"
     /* and the rule of its verdict (schema 20) */
     " rescan_rule, rescan_sent_at FROM memberships",
     "msg_id, quarantine, reason, entered_at, expires_at, state, updated_at, origin_gateway,"
     " origin_id, rescan, rescanned_at, rescan_rule, rescan_sent_at", false},
    /* rcpts: a JSON array in SQLite, text[] in PostgreSQL (an array literal of
     * double-quoted elements); the lease is cleared */
    {"deliveries",
     "SELECT job_id, msg_id, next_attempt_at, attempts, first_attempt_at, 0,"
     " '{' || coalesce((SELECT group_concat('\"' || replace(replace(value, '\\', '\\\\'),"
     " '\"', '\\\"') || '\"', ',') FROM json_each(rcpts)), '') || '}',"
     /* the route of a delivery (schema 9): gateway, rescan, copy */
     " gateway, rescan, copy FROM deliveries ORDER BY job_id",
     "job_id, msg_id, next_attempt_at, attempts, first_attempt_at, leased, rcpts, gateway,"
     " rescan, copy", false},
    {"users",
     "SELECT username, password_hash, role, source, language, time_zone, created_at,"
     " last_login_at FROM users",
     "username, password_hash, role, source, language, time_zone, created_at, last_login_at", false},
    {"user_addresses", "SELECT username, address_lc, pos FROM user_addresses",
     "username, address_lc, pos", false},
    {"sessions",
     "SELECT token_hash, username, role, addresses, csrf_token, created_at, expires_at"
     " FROM sessions",
     "token_hash, username, role, addresses, csrf_token, created_at, expires_at", false},
    {"audit", "SELECT seq, at, actor, action, target, detail, peer FROM audit ORDER BY seq",
     "seq, at, actor, action, target, detail, peer", false},
    {"slbl_entries", "SELECT recipient_lc, list, sender_lc, pos FROM slbl_entries",
     "recipient_lc, list, sender_lc, pos", false},
    {"slbl_recipients", "SELECT recipient_lc, version FROM slbl_recipients",
     "recipient_lc, version", false},
    {"digest_state", "SELECT address_lc, last_sent_at, last_seq FROM digest_state",
     "address_lc, last_sent_at, last_seq", false},
    {"used_tokens", "SELECT nonce, used_at, expires_at FROM used_tokens",
     "nonce, used_at, expires_at", false},
    /* the registry: gateways keep their tokens (hashes) and need no new ones, and
     * their mapping and migration (schema 19) */
    {"gateways",
     "SELECT name, state, address, group_name, cluster, release_port, token_hash, created_at,"
     " last_seen, version, central, outbreak_version, mapping, mig_state, mig_run, mig_total,"
     " mig_done, mig_failed, mig_finished_at, mig_notified_at FROM gateways",
     "name, state, address, group_name, cluster, release_port, token_hash, created_at,"
     " last_seen, version, central, outbreak_version, mapping, mig_state, mig_run, mig_total,"
     " mig_done, mig_failed, mig_finished_at, mig_notified_at", false},
    /* second factors (schema 13), after their accounts */
    {"user_totp", "SELECT username, secret, created_at, enrolled_at, last_step FROM user_totp",
     "username, secret, created_at, enrolled_at, last_step", false},
    {"user_recovery_codes", "SELECT username, code_hash, used_at FROM user_recovery_codes",
     "username, code_hash, used_at", false},
    /* the reports' rollups (schema 14) and the centralization levels (15) */
    {"report_rollups",
     "SELECT report, gran, bucket, gateway, key, incoming, clean, spam, suspect, virus,"
     " content_filter, count FROM report_rollups",
     "report, gran, bucket, gateway, key, incoming, clean, spam, suspect, virus,"
     " content_filter, count", false},
    /* the all-gateway rollups (schema 21) */
    {"report_totals",
     "SELECT report, gran, bucket, key, incoming, clean, spam, suspect, virus, content_filter,"
     " count FROM report_totals",
     "report, gran, bucket, key, incoming, clean, spam, suspect, virus, content_filter, count",
     false},
    {"levels", "SELECT level, name, pvo, reporting, tracking, filters, updated_at FROM levels",
     "level, name, pvo, reporting, tracking, filters, updated_at", false},
    /*
     * scheduled reports and the archive (schema 18), keeping their ids, with their
     * send times and the copies' mail (22)
     */
    {"report_schedules",
     "SELECT id, report, period, every, format, recipients, created_by, created_at, next_run,"
     " last_run, at_minute, time_zone FROM report_schedules ORDER BY id",
     "id, report, period, every, format, recipients, created_by, created_at, next_run,"
     " last_run, at_minute, time_zone", false},
    {"report_archive",
     "SELECT id, schedule_id, report, period, format, range_from, range_to, created_at, data,"
     " mail_pending, mail_tries, mail_next FROM report_archive ORDER BY id",
     "id, schedule_id, report, period, format, range_from, range_to, created_at, data,"
     " mail_pending, mail_tries, mail_next", true},
    /* the rollup rows gateways sent once, and whose sending is done (22) */
    {"report_backfill", "SELECT gateway, report, gran, bucket, key FROM report_backfill",
     "gateway, report, gran, bucket, key", false},
    {"report_backfill_done", "SELECT gateway, done_at FROM report_backfill_done",
     "gateway, done_at", false},
    /* the system_capacity report's hours (23) */
    {"capacity_hours",
     "SELECT gateway, bucket, samples, received, relayed, connections, current_sum,"
     " current_max, load_sum, load_max, memory_max, backlog_max FROM capacity_hours",
     "gateway, bucket, samples, received, relayed, connections, current_sum, current_max,"
     " load_sum, load_max, memory_max, backlog_max", false},
    /* the "done" mails of migration runs, keeping their ids (24) */
    {"migration_notices",
     "SELECT id, gateway, run, rcpt, total, moved, failed, finished_at, tries, next_try, sent,"
     " last_try, reply FROM migration_notices ORDER BY id",
     "id, gateway, run, rcpt, total, moved, failed, finished_at, tries, next_try, sent,"
     " last_try, reply", false},
};

/*
 * What must be equal on both sides after the copy: each query runs on SQLite and
 * on PostgreSQL; its rows, as text and sorted, must be the same.
 */
static const struct {
	const char *what;
	const char *sql;
} mig_checks[] = {
    {"messages", "SELECT count(*), coalesce(sum(size), 0), coalesce(sum(stored_size), 0),"
		 " coalesce(max(seq), 0), coalesce(sum(held), 0), coalesce(sum(active), 0)"
		 " FROM messages"},
    {"messages per quarantine", "SELECT quarantine, count(*), sum(size) FROM messages"
				" GROUP BY quarantine"},
    {"bodies", "SELECT count(*), coalesce(sum(length(data)), 0) FROM bodies"},
    {"recipients per quarantine and state",
     "SELECT m.quarantine, r.state, count(*), count(r.reply) FROM recipients r"
     " JOIN messages m ON m.id = r.msg_id GROUP BY m.quarantine, r.state"},
    {"attachments", "SELECT count(*), coalesce(sum(size), 0) FROM attachments"},
    {"deliveries", "SELECT count(*), coalesce(max(job_id), 0), coalesce(sum(attempts), 0)"
		   " FROM deliveries"},
    {"delivery routes", "SELECT coalesce(gateway, '-'), CASE WHEN rescan THEN 1 ELSE 0 END,"
			" CASE WHEN copy THEN 1 ELSE 0 END, count(*) FROM deliveries"
			" GROUP BY 1, 2, 3"},
    {"quarantines", "SELECT name, type, messages, bytes FROM quarantines"},
    {"quarantine settings", "SELECT name, coalesce(delete_after, 0), default_action,"
			    " CASE WHEN overflow_exempt THEN 1 ELSE 0 END, created_at"
			    " FROM quarantines"},
    {"quarantine_operators", "SELECT quarantine, username FROM quarantine_operators"},
    {"memberships", "SELECT quarantine, state, count(*), coalesce(sum(expires_at), 0),"
		    " count(origin_id) FROM memberships GROUP BY quarantine, state"},
    {"held per quarantine", "SELECT quarantine, count(*), sum(size) FROM messages"
			    " WHERE held > 0 GROUP BY quarantine"},
    {"totals", "SELECT messages, bytes_original, bytes_stored FROM totals"},
    {"users", "SELECT count(*), count(password_hash) FROM users"},
    {"user_addresses", "SELECT count(*) FROM user_addresses"},
    {"sessions", "SELECT count(*) FROM sessions"},
    {"audit", "SELECT count(*), coalesce(max(seq), 0) FROM audit"},
    {"slbl_entries", "SELECT list, count(*) FROM slbl_entries GROUP BY list"},
    {"slbl_recipients", "SELECT count(*), coalesce(max(version), 0) FROM slbl_recipients"},
    {"slbl_counter", "SELECT version FROM slbl_counter"},
    {"digest_state", "SELECT count(*), coalesce(sum(last_seq), 0) FROM digest_state"},
    {"used_tokens", "SELECT count(*) FROM used_tokens"},
    {"gateways", "SELECT state, count(*), count(token_hash), coalesce(max(last_seen), 0)"
		 " FROM gateways GROUP BY state"},
    {"gateway states", "SELECT name, central, coalesce(outbreak_version, '-'),"
		       " coalesce(mapping, '-'), mig_state, mig_run, mig_total, mig_done, mig_failed,"
		       " mig_finished_at, mig_notified_at FROM gateways"},
    {"user_totp", "SELECT username, enrolled_at, last_step FROM user_totp"},
    {"user_recovery_codes", "SELECT username, count(*), count(NULLIF(used_at, 0))"
			    " FROM user_recovery_codes GROUP BY username"},
    {"report_rollups", "SELECT report, gran, gateway, count(*), sum(incoming), sum(clean),"
		       " sum(spam), sum(suspect), sum(virus), sum(content_filter), sum(count)"
		       " FROM report_rollups GROUP BY report, gran, gateway"},
    {"report_totals", "SELECT report, gran, count(*), sum(incoming), sum(clean), sum(spam),"
		      " sum(suspect), sum(virus), sum(content_filter), sum(count)"
		      " FROM report_totals GROUP BY report, gran"},
    {"levels", "SELECT level, name, CASE WHEN pvo THEN 1 WHEN NOT pvo THEN 0 END,"
	       " CASE WHEN reporting THEN 1 WHEN NOT reporting THEN 0 END,"
	       " CASE WHEN tracking THEN 1 WHEN NOT tracking THEN 0 END,"
	       " coalesce(length(filters), -1) FROM levels"},
    {"report_schedules", "SELECT id, every, format, next_run, last_run, length(recipients),"
			 " at_minute, time_zone FROM report_schedules"},
    {"report_archive", "SELECT id, schedule_id, format, range_from, length(data),"
		       " length(mail_pending), mail_tries, mail_next FROM report_archive"},
    {"report_backfill", "SELECT gateway, report, gran, count(*), sum(bucket)"
			" FROM report_backfill GROUP BY gateway, report, gran"},
    {"report_backfill_done", "SELECT gateway, done_at FROM report_backfill_done"},
    {"capacity_hours", "SELECT gateway, count(*), sum(samples), sum(received), sum(relayed),"
		       " sum(connections), max(current_max), sum(load_sum), max(memory_max)"
		       " FROM capacity_hours GROUP BY gateway"},
    {"migration_notices", "SELECT id, gateway, run, rcpt, total, moved, failed, finished_at,"
			  " tries, next_try, CASE WHEN sent THEN 1 ELSE 0 END, last_try,"
			  " coalesce(reply, '-') FROM migration_notices"},
};
/* clang-format on */

/* On PostgreSQL only: what must be 0 after the copy. */
static const struct {
	const char *what;
	const char *sql;
} mig_pg_zero[] = {
    {"rows outside the daily partitions",
     "SELECT (SELECT count(*) FROM messages_default) + (SELECT count(*) FROM bodies_default)"
     " + (SELECT count(*) FROM recipients_default) + (SELECT count(*) FROM attachments_default)"
     " + (SELECT count(*) FROM memberships_default)"},
};

#define MIG_NTABLES (sizeof(mig_tables) / sizeof(mig_tables[0]))
#define MIG_NCHECKS (sizeof(mig_checks) / sizeof(mig_checks[0]))

struct mig {
	const char *data_dir;
	const char *dsn;
	unsigned sample;
	char *db_path;
	sqlite3 *lite; /* exclusive locking mode for the whole copy */
	PGconn *pg;    /* the copy's own session */
	struct store *pg_store;
};

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	va_list ap;
	fputs(MIG_NAME ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Runs sql on the copy's session; 0, or -EIO with the server's message printed. */
static int pg_run(struct mig *g, const char *sql)
{
	PGresult *r = PQexec(g->pg, sql);
	ExecStatusType s = PQresultStatus(r);
	int rc = (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) ? 0 : -EIO;
	if (rc < 0)
		fail("PostgreSQL: %s: %s", sql, PQresultErrorMessage(r));
	PQclear(r);
	return rc;
}

/*
 * Takes the SQLite file in exclusive locking mode and opens a read transaction
 * on it: a running lazaretd keeps its connections open, so the lock is refused
 * then. 0, or -EBUSY (printed), -EIO.
 */
static int sqlite_lock(struct mig *g)
{
	if (sqlite3_open_v2(g->db_path, &g->lite, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
		fail("cannot open %s: %s", g->db_path, sqlite3_errmsg(g->lite));
		return -EIO;
	}
	sqlite3_busy_timeout(g->lite, MIG_SQLITE_BUSY_MS);
	char *err = NULL;
	int rc = sqlite3_exec(g->lite,
			      "PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE;"
			      "SELECT count(*) FROM messages;",
			      NULL, NULL, &err);
	if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
		fail("the SQLite store %s is in use (is lazaretd running?): stop lazaretd first",
		     g->db_path);
		sqlite3_free(err);
		return -EBUSY;
	}
	if (rc != SQLITE_OK) {
		fail("cannot read %s: %s", g->db_path, err != NULL ? err : "?");
		sqlite3_free(err);
		return -EIO;
	}
	return 0;
}

static void sqlite_unlock(struct mig *g)
{
	if (g->lite != NULL) {
		sqlite3_exec(g->lite, "COMMIT", NULL, NULL, NULL);
		sqlite3_close(g->lite);
		g->lite = NULL;
	}
}

/* count(*) of table on SQLite into *n: 0 or -EIO. */
static int sqlite_count(struct mig *g, const char *table, int64_t *n)
{
	char sql[128];
	snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(g->lite, sql, -1, &s, NULL) != SQLITE_OK ||
	    sqlite3_step(s) != SQLITE_ROW) {
		fail("SQLite: %s: %s", sql, sqlite3_errmsg(g->lite));
		sqlite3_finalize(s);
		return -EIO;
	}
	*n = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return 0;
}

/*
 * Refuses a database that holds Lazaret data: 0 when empty, -EEXIST (the counts
 * printed), -EIO.
 */
static int pg_check_empty(struct mig *g)
{
	PGresult *r = PQexec(
	    g->pg, "SELECT (SELECT count(*) FROM messages), (SELECT count(*) FROM users),"
		   " (SELECT count(*) FROM audit), (SELECT count(*) FROM slbl_recipients),"
		   " (SELECT count(*) FROM sessions) + (SELECT count(*) FROM digest_state)"
		   " + (SELECT count(*) FROM used_tokens) + (SELECT count(*) FROM deliveries)"
		   " + (SELECT count(*) FROM slbl_entries) + (SELECT version FROM slbl_counter)"
		   " + (SELECT count(*) FROM gateways)");
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
		fail("PostgreSQL: cannot count the target's rows: %s", PQresultErrorMessage(r));
		PQclear(r);
		return -EIO;
	}
	long long v[5];
	bool empty = true;
	for (int i = 0; i < 5; i++) {
		v[i] = strtoll(PQgetvalue(r, 0, i), NULL, 10);
		empty = empty && v[i] == 0;
	}
	PQclear(r);
	if (!empty) {
		fail("the PostgreSQL database already holds Lazaret data (%lld messages, %lld "
		     "accounts, %lld audit entries, %lld safelists, %lld other rows): refusing "
		     "to copy into it; give an empty database",
		     v[0], v[1], v[2], v[3], v[4]);
		return -EEXIST;
	}
	return 0;
}

/* Appends s to b escaped for COPY's text format. */
static void copy_text(struct strbuf *b, const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		switch (s[i]) {
		case '\\':
			strbuf_add(b, "\\\\", 2);
			break;
		case '\n':
			strbuf_add(b, "\\n", 2);
			break;
		case '\r':
			strbuf_add(b, "\\r", 2);
			break;
		case '\t':
			strbuf_add(b, "\\t", 2);
			break;
		default:
			strbuf_addc(b, (char)s[i]);
		}
	}
}

/* Appends a blob as bytea hex input (\x...), its backslash escaped for COPY. */
static void copy_blob(struct strbuf *b, const unsigned char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	strbuf_reserve(b, 3 + 2 * n);
	strbuf_add(b, "\\\\x", 3);
	for (size_t i = 0; i < n; i++) {
		char two[2] = {hex[s[i] >> 4], hex[s[i] & 15]};
		strbuf_add(b, two, 2);
	}
}

static void copy_be(struct strbuf *b, uint64_t v, int bytes)
{
	char o[8];
	for (int i = 0; i < bytes; i++)
		o[i] = (char)(v >> (8 * (bytes - 1 - i)));
	strbuf_add(b, o, (size_t)bytes);
}

/* Appends column i of the current row in COPY's binary format. */
static void copy_binary_field(struct strbuf *b, sqlite3_stmt *s, int i)
{
	switch (sqlite3_column_type(s, i)) {
	case SQLITE_NULL:
		copy_be(b, 0xffffffffu, 4);
		break;
	case SQLITE_INTEGER:
		copy_be(b, 8, 4);
		copy_be(b, (uint64_t)sqlite3_column_int64(s, i), 8);
		break;
	default: {
		/* text or blob: the bytes (text and bytea have the same binary form) */
		const void *p = sqlite3_column_type(s, i) == SQLITE_BLOB
				    ? sqlite3_column_blob(s, i)
				    : (const void *)sqlite3_column_text(s, i);
		size_t n = (size_t)sqlite3_column_bytes(s, i);
		copy_be(b, n, 4);
		strbuf_add(b, p, n);
	}
	}
}

static int copy_flush(struct mig *g, struct strbuf *b, const char *table)
{
	if (b->len == 0)
		return 0;
	if (PQputCopyData(g->pg, b->p, (int)b->len) != 1) {
		fail("PostgreSQL: COPY %s: %s", table, PQerrorMessage(g->pg));
		return -EIO;
	}
	strbuf_truncate(b, 0);
	return 0;
}

/*
 * Copies one table with COPY, printing progress every few seconds. Runs inside
 * the caller's PostgreSQL transaction. 0 or -EIO (printed).
 */
static int copy_table(struct mig *g, const struct mig_table *t)
{
	int64_t total = 0, done = 0;
	if (sqlite_count(g, t->name, &total) < 0)
		return -EIO;
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(g->lite, t->select, -1, &s, NULL) != SQLITE_OK) {
		fail("SQLite: %s: %s", t->name, sqlite3_errmsg(g->lite));
		return -EIO;
	}
	struct strbuf sql = STRBUF_INIT, b = STRBUF_INIT;
	strbuf_printf(&sql, "COPY %s (%s) FROM STDIN%s", t->name, t->cols,
		      t->binary ? " (FORMAT binary)" : "");
	if (t->binary) /* signature, flags, header extension length */
		strbuf_add(&b, "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0", 19);
	PGresult *r = PQexec(g->pg, strbuf_str(&sql));
	int rc = -EIO;
	if (PQresultStatus(r) != PGRES_COPY_IN) {
		fail("PostgreSQL: %s: %s", strbuf_str(&sql), PQresultErrorMessage(r));
		PQclear(r);
		goto out;
	}
	PQclear(r);
	int64_t start = clock_mono_ms(), last = start;
	int ncol = sqlite3_column_count(s), step;
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		if (t->binary)
			copy_be(&b, (uint64_t)ncol, 2);
		for (int i = 0; i < ncol && t->binary; i++)
			copy_binary_field(&b, s, i);
		for (int i = 0; i < ncol && !t->binary; i++) {
			if (i > 0)
				strbuf_addc(&b, '\t');
			switch (sqlite3_column_type(s, i)) {
			case SQLITE_NULL:
				strbuf_add(&b, "\\N", 2);
				break;
			case SQLITE_INTEGER:
				strbuf_printf(&b, "%lld", (long long)sqlite3_column_int64(s, i));
				break;
			case SQLITE_FLOAT:
				strbuf_printf(&b, "%.17g", sqlite3_column_double(s, i));
				break;
			case SQLITE_BLOB: {
				const void *p = sqlite3_column_blob(s, i);
				copy_blob(&b, p, (size_t)sqlite3_column_bytes(s, i));
				break;
			}
			default: {
				const unsigned char *p = sqlite3_column_text(s, i);
				copy_text(&b, p, (size_t)sqlite3_column_bytes(s, i));
			}
			}
		}
		if (!t->binary)
			strbuf_addc(&b, '\n');
		done++;
		if (b.len >= MIG_CHUNK && copy_flush(g, &b, t->name) < 0)
			goto abort;
		int64_t now = clock_mono_ms();
		if (now - last >= MIG_PROGRESS_MS) {
			printf("%s: %" PRId64 "/%" PRId64 " rows (%.0f rows/s)\n", t->name, done,
			       total, (double)done * 1000.0 / (double)(now - start));
			fflush(stdout);
			last = now;
		}
	}
	if (step != SQLITE_DONE) {
		fail("SQLite: reading %s: %s", t->name, sqlite3_errmsg(g->lite));
		goto abort;
	}
	if (t->binary) /* the trailer */
		copy_be(&b, 0xffff, 2);
	if (copy_flush(g, &b, t->name) < 0)
		goto abort;
	if (PQputCopyEnd(g->pg, NULL) != 1) {
		fail("PostgreSQL: COPY %s: %s", t->name, PQerrorMessage(g->pg));
		goto out;
	}
	bool ok = true;
	while ((r = PQgetResult(g->pg)) != NULL) {
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			fail("PostgreSQL: COPY %s: %s", t->name, PQresultErrorMessage(r));
			ok = false;
		}
		PQclear(r);
	}
	if (!ok)
		goto out;
	int64_t ms = clock_mono_ms() - start;
	printf("%s: %" PRId64 "/%" PRId64 " rows copied in %.1f s (%.0f rows/s)\n", t->name, done,
	       total, (double)ms / 1000.0,
	       ms > 0 ? (double)done * 1000.0 / (double)ms : (double)done);
	fflush(stdout);
	rc = 0;
	goto out;
abort:
	PQputCopyEnd(g->pg, "lazaret-migrate-store: aborted");
	while ((r = PQgetResult(g->pg)) != NULL)
		PQclear(r);
out:
	sqlite3_finalize(s);
	strbuf_free(&sql);
	strbuf_free(&b);
	return rc;
}

/*
 * The quarantines (their types and counters) and the totals, as SQLite has them,
 * and the PostgreSQL sequences and change counter moved past every copied value.
 * 0 or -EIO.
 */
static int copy_counters(struct mig *g)
{
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(g->lite,
			       "SELECT name, type, messages, bytes, delete_after, default_action,"
			       " overflow_exempt, created_at FROM quarantines",
			       -1, &s, NULL) != SQLITE_OK) {
		fail("SQLite: quarantines: %s", sqlite3_errmsg(g->lite));
		return -EIO;
	}
	int rc = 0, step;
	while (rc == 0 && (step = sqlite3_step(s)) == SQLITE_ROW) {
		const char *v[8];
		for (int i = 0; i < 8; i++)
			v[i] = (const char *)sqlite3_column_text(s, i);
		PGresult *r = PQexecParams(
		    g->pg,
		    "INSERT INTO quarantines (name, type, messages, bytes, delete_after,"
		    " default_action, overflow_exempt, created_at)"
		    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (name) DO UPDATE "
		    "SET type = excluded.type, messages = excluded.messages, bytes = "
		    "excluded.bytes,"
		    " delete_after = excluded.delete_after, default_action = "
		    "excluded.default_action,"
		    " overflow_exempt = excluded.overflow_exempt, created_at = excluded.created_at",
		    8, NULL, v, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			fail("PostgreSQL: quarantine %s: %s", v[0], PQresultErrorMessage(r));
			rc = -EIO;
		}
		PQclear(r);
	}
	sqlite3_finalize(s);
	if (rc < 0)
		return rc;
	/* the operators after their quarantines (they refer to them) */
	if (sqlite3_prepare_v2(g->lite, "SELECT quarantine, username FROM quarantine_operators", -1,
			       &s, NULL) != SQLITE_OK) {
		fail("SQLite: quarantine_operators: %s", sqlite3_errmsg(g->lite));
		return -EIO;
	}
	while (rc == 0 && (step = sqlite3_step(s)) == SQLITE_ROW) {
		const char *v[2];
		for (int i = 0; i < 2; i++)
			v[i] = (const char *)sqlite3_column_text(s, i);
		PGresult *r = PQexecParams(g->pg,
					   "INSERT INTO quarantine_operators (quarantine, username)"
					   " VALUES ($1, $2)",
					   2, NULL, v, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			fail("PostgreSQL: operator %s of %s: %s", v[1], v[0],
			     PQresultErrorMessage(r));
			rc = -EIO;
		}
		PQclear(r);
	}
	sqlite3_finalize(s);
	if (rc < 0)
		return rc;
	struct {
		const char *sqlite, *pg;
	} one[] = {
	    {"SELECT messages || ',' || bytes_original || ',' || bytes_stored FROM totals",
	     "UPDATE totals SET messages = split_part($1, ',', 1)::bigint,"
	     " bytes_original = split_part($1, ',', 2)::bigint,"
	     " bytes_stored = split_part($1, ',', 3)::bigint"},
	    {"SELECT version FROM slbl_counter", "UPDATE slbl_counter SET version = $1::bigint"},
	};
	for (size_t k = 0; k < sizeof one / sizeof one[0]; k++) {
		if (sqlite3_prepare_v2(g->lite, one[k].sqlite, -1, &s, NULL) != SQLITE_OK ||
		    sqlite3_step(s) != SQLITE_ROW) {
			fail("SQLite: %s: %s", one[k].sqlite, sqlite3_errmsg(g->lite));
			sqlite3_finalize(s);
			return -EIO;
		}
		const char *v = (const char *)sqlite3_column_text(s, 0);
		PGresult *r = PQexecParams(g->pg, one[k].pg, 1, NULL, &v, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			fail("PostgreSQL: %s: %s", one[k].pg, PQresultErrorMessage(r));
			rc = -EIO;
		}
		PQclear(r);
		sqlite3_finalize(s);
		if (rc < 0)
			return rc;
	}
	/* identity columns: the next value above every copied one (setval with
	 * is_called false when the table is empty: the next value is 1) */
	static const char *const seqs[] = {
	    "SELECT setval(pg_get_serial_sequence('messages', 'seq'),"
	    " coalesce(max(seq), 1), max(seq) IS NOT NULL) FROM messages",
	    "SELECT setval(pg_get_serial_sequence('audit', 'seq'),"
	    " coalesce(max(seq), 1), max(seq) IS NOT NULL) FROM audit",
	    "SELECT setval(pg_get_serial_sequence('deliveries', 'job_id'),"
	    " coalesce(max(job_id), 1), max(job_id) IS NOT NULL) FROM deliveries",
	    "SELECT setval(pg_get_serial_sequence('report_schedules', 'id'),"
	    " coalesce(max(id), 1), max(id) IS NOT NULL) FROM report_schedules",
	    "SELECT setval(pg_get_serial_sequence('report_archive', 'id'),"
	    " coalesce(max(id), 1), max(id) IS NOT NULL) FROM report_archive",
	    "SELECT setval(pg_get_serial_sequence('migration_notices', 'id'),"
	    " coalesce(max(id), 1), max(id) IS NOT NULL) FROM migration_notices",
	};
	for (size_t k = 0; k < sizeof seqs / sizeof seqs[0]; k++)
		if (pg_run(g, seqs[k]) < 0)
			return -EIO;
	return 0;
}

#define MIG_DAY_MS (86400LL * 1000)

/*
 * Creates, in the copy's transaction, the daily partitions of the message tables
 * for every day that has messages in the source: one seek on SQLite's id index
 * per day (an id starts with its time: the first id at or after a day's first
 * millisecond is the next day's first message). 0 or -EIO.
 */
static int copy_partitions(struct mig *g)
{
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(g->lite,
			       "SELECT id FROM messages WHERE id >= ?1 ORDER BY id LIMIT 1", -1, &s,
			       NULL) != SQLITE_OK) {
		fail("SQLite: days: %s", sqlite3_errmsg(g->lite));
		return -EIO;
	}
	char from[32] = "";
	int rc = 0;
	unsigned days = 0;
	for (;;) {
		sqlite3_reset(s);
		sqlite3_bind_text(s, 1, from, -1, SQLITE_STATIC);
		if (sqlite3_step(s) != SQLITE_ROW)
			break;
		const char *id = (const char *)sqlite3_column_text(s, 0);
		int64_t ms = ids_valid(id) ? ids_uuidv7_time_ms(id) : -1;
		if (ms < 0) {
			/* not a UUIDv7: it lands in the DEFAULT partition, verify_counts says */
			break;
		}
		int64_t day = ms - ms % MIG_DAY_MS;
		char sql[128];
		snprintf(sql, sizeof sql,
			 "SELECT lazaret_message_partitions(%" PRId64 ", %" PRId64 ")", day, day);
		if ((rc = pg_run(g, sql)) < 0)
			break;
		days++;
		int64_t next = day + MIG_DAY_MS;
		snprintf(from, sizeof from, "%08" PRIx64 "-%04" PRIx64, (uint64_t)next >> 16,
			 (uint64_t)next & 0xffff);
	}
	sqlite3_finalize(s);
	if (rc == 0) {
		printf("partitions: %u days with messages\n", days);
		fflush(stdout);
	}
	return rc;
}

/* The copy in one PostgreSQL transaction: 0 committed, -EIO rolled back. */
static int copy_all(struct mig *g)
{
	if (pg_run(g, "BEGIN") < 0)
		return -EIO;
	/*
	 * messages' insert trigger keeps totals and the quarantine counters; for a
	 * copy they are taken as SQLite has them (copy_counters) and verified, and
	 * millions of updates of the one totals row in one transaction would be slow.
	 */
	if (pg_run(g, "ALTER TABLE messages DISABLE TRIGGER messages_ai") < 0 ||
	    copy_partitions(g) < 0)
		goto fail;
	for (size_t i = 0; i < MIG_NTABLES; i++) {
		if (copy_table(g, &mig_tables[i]) < 0)
			goto fail;
		/* tests: a copy killed half-way must leave an empty database */
		if (strcmp(mig_tables[i].name, "recipients") == 0)
			fault_point("migrate_mid_copy");
	}
	if (copy_counters(g) < 0)
		goto fail;
	if (pg_run(g, "ALTER TABLE messages ENABLE TRIGGER messages_ai") < 0)
		goto fail;
	printf("committing\n");
	fflush(stdout);
	if (pg_run(g, "COMMIT") < 0)
		return -EIO;
	return 0;
fail:
	pg_run(g, "ROLLBACK");
	return -EIO;
}

static int line_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The rows of a check's result as sorted "a|b|c" lines joined by '\n' (new). */
static char *rows_text(char **rows, size_t n)
{
	if (n > 1)
		qsort(rows, n, sizeof *rows, line_cmp);
	struct strbuf b = STRBUF_INIT;
	for (size_t i = 0; i < n; i++) {
		strbuf_puts(&b, rows[i]);
		strbuf_addc(&b, '\n');
		free(rows[i]);
	}
	free(rows);
	return strbuf_take(&b);
}

static char *sqlite_rows(struct mig *g, const char *sql)
{
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(g->lite, sql, -1, &s, NULL) != SQLITE_OK) {
		fail("SQLite: %s: %s", sql, sqlite3_errmsg(g->lite));
		return NULL;
	}
	char **rows = NULL;
	size_t n = 0;
	while (sqlite3_step(s) == SQLITE_ROW) {
		struct strbuf b = STRBUF_INIT;
		for (int i = 0; i < sqlite3_column_count(s); i++) {
			const char *v = (const char *)sqlite3_column_text(s, i);
			strbuf_printf(&b, "%s%s", i > 0 ? "|" : "", v != NULL ? v : "NULL");
		}
		rows = xreallocarray(rows, n + 1, sizeof *rows);
		rows[n++] = strbuf_take(&b);
	}
	sqlite3_finalize(s);
	return rows_text(rows, n);
}

static char *pg_rows(struct mig *g, const char *sql)
{
	PGresult *r = PQexec(g->pg, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		fail("PostgreSQL: %s: %s", sql, PQresultErrorMessage(r));
		PQclear(r);
		return NULL;
	}
	size_t n = (size_t)PQntuples(r);
	char **rows = xcalloc(n + 1, sizeof *rows);
	for (size_t k = 0; k < n; k++) {
		struct strbuf b = STRBUF_INIT;
		for (int i = 0; i < PQnfields(r); i++)
			strbuf_printf(&b, "%s%s", i > 0 ? "|" : "",
				      PQgetisnull(r, (int)k, i) ? "NULL"
								: PQgetvalue(r, (int)k, i));
		rows[k] = strbuf_take(&b);
	}
	PQclear(r);
	return rows_text(rows, n);
}

/* Every check equal on both sides: 0, or -EIO (each difference printed). */
static int verify_counts(struct mig *g)
{
	int rc = 0;
	for (size_t i = 0; i < MIG_NCHECKS; i++) {
		char *a = sqlite_rows(g, mig_checks[i].sql);
		char *b = pg_rows(g, mig_checks[i].sql);
		if (a == NULL || b == NULL) {
			rc = -EIO;
		} else if (strcmp(a, b) != 0) {
			fail("verification failed: %s differ:\nSQLite:\n%sPostgreSQL:\n%s",
			     mig_checks[i].what, a, b);
			rc = -EIO;
		} else {
			char *nl = strchr(a, '\n');
			if (nl != NULL && nl[1] == '\0')
				*nl = '\0';
			else
				for (char *p = a; (p = strchr(p, '\n')) != NULL && p[1] != '\0';)
					*p = ';';
			printf("verified %s: %s\n", mig_checks[i].what, a);
		}
		free(a);
		free(b);
	}
	for (size_t i = 0; i < sizeof mig_pg_zero / sizeof mig_pg_zero[0]; i++) {
		char *v = pg_rows(g, mig_pg_zero[i].sql);
		if (v == NULL) {
			rc = -EIO;
		} else if (strcmp(v, "0\n") != 0) {
			fail("verification failed: %s: %s", mig_pg_zero[i].what, v);
			rc = -EIO;
		} else {
			printf("verified %s: 0\n", mig_pg_zero[i].what);
		}
		free(v);
	}
	fflush(stdout);
	return rc;
}

/*
 * Up to g->sample message ids spread evenly over seq, read on SQLite (the
 * exclusive connection): a new array of new strings in *out.
 */
static int sample_ids(struct mig *g, char ***out, size_t *n)
{
	int64_t total = 0;
	if (sqlite_count(g, "messages", &total) < 0)
		return -EIO;
	int64_t every = total / (g->sample > 0 ? g->sample : 1);
	if (every < 1)
		every = 1;
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(g->lite,
			       "SELECT id FROM (SELECT id, row_number() OVER (ORDER BY seq) AS k"
			       " FROM messages) WHERE (k - 1) % ?1 = 0 LIMIT ?2",
			       -1, &s, NULL) != SQLITE_OK) {
		fail("SQLite: sample: %s", sqlite3_errmsg(g->lite));
		return -EIO;
	}
	sqlite3_bind_int64(s, 1, every);
	sqlite3_bind_int64(s, 2, g->sample);
	char **v = xcalloc(g->sample + 1, sizeof *v);
	size_t k = 0;
	while (k < g->sample && sqlite3_step(s) == SQLITE_ROW)
		v[k++] = xstrdup((const char *)sqlite3_column_text(s, 0));
	sqlite3_finalize(s);
	*out = v;
	*n = k;
	return 0;
}

/*
 * Bodies of the sampled messages through store_get_raw on both stores, byte for
 * byte. The SQLite lock is given up here: store_open needs its own connections.
 */
static int verify_bodies(struct mig *g, char **ids, size_t n)
{
	struct store_options so = {.backend = "sqlite", .dir = g->data_dir};
	struct store *lite = NULL;
	int rc = store_open(&so, &lite);
	if (rc < 0) {
		fail("cannot open the SQLite store in %s: %s", g->data_dir, strerror(-rc));
		return rc;
	}
	size_t bad = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char *a = NULL, *b = NULL;
		size_t alen = 0, blen = 0;
		int ra = store_get_raw(lite, ids[i], &a, &alen);
		int rb = store_get_raw(g->pg_store, ids[i], &b, &blen);
		if (ra < 0 || rb < 0 || alen != blen || memcmp(a, b, alen) != 0) {
			if (bad++ < 10)
				fail("verification failed: the body of message %s differs (SQLite "
				     "%zu bytes%s, PostgreSQL %zu bytes%s)",
				     ids[i], alen, ra < 0 ? ", unreadable" : "", blen,
				     rb < 0 ? ", unreadable" : "");
		}
		free(a);
		free(b);
	}
	store_close(lite);
	if (bad > 0) {
		fail("verification failed: %zu of %zu sampled bodies differ", bad, n);
		return -EIO;
	}
	printf("verified bodies: %zu sampled messages equal byte for byte\n", n);
	fflush(stdout);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: " MIG_NAME " --data-dir DIR --dsn DSN [--sample N]\n"
		"\n"
		"Copies the SQLite store DIR/lazaret.db (lazaretd's data_dir) into the empty\n"
		"PostgreSQL database DSN (a libpq connection string, as [store] dsn), then\n"
		"verifies the copy. Stop lazaretd first: a store in use is refused.\n"
		"\n"
		"Everything keeps its identity: messages (ids, sequence numbers, times,\n"
		"recipients' states and replies, attachments, bodies as stored), the delivery\n"
		"queue (leases cleared), accounts and their password hashes, sessions, the\n"
		"audit log, safelists with their versions and change counter, digest state,\n"
		"used digest links and the gateway registry (gateways keep their tokens).\n"
		"The copy is one transaction: an interrupted run\n"
		"leaves the database empty, and can be run again.\n"
		"\n"
		"A database that already holds Lazaret data is refused.\n"
		"\n"
		"Progress goes to stdout every few seconds; at the end the rows of every table,\n"
		"per quarantine and recipient state, the counters, and N bodies (default %d)\n"
		"read back through the store on both sides must be equal.\n"
		"\n"
		"  --data-dir DIR  the SQLite store's directory (lazaretd's data_dir)\n"
		"  --dsn DSN       the PostgreSQL database, e.g. \"host=db dbname=lazaret\"\n"
		"  --sample N      bodies compared byte for byte (0: none)\n"
		"  -h, --help      this text\n"
		"  --version       the version\n"
		"\n"
		"Exit status: 0 copied and verified, 1 refused or failed, 2 usage.\n",
		MIG_SAMPLE_DEFAULT);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"data-dir", required_argument, NULL, 'd'}, {"dsn", required_argument, NULL, 'D'},
	    {"sample", required_argument, NULL, 's'},	{"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},	{NULL, 0, NULL, 0}};
	struct mig g = {.sample = MIG_SAMPLE_DEFAULT};
	int c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			g.data_dir = optarg;
			break;
		case 'D':
			g.dsn = optarg;
			break;
		case 's': {
			char *end = NULL;
			unsigned long v = strtoul(optarg, &end, 10);
			if (end == optarg || *end != '\0' || v > 1000000) {
				fprintf(stderr, MIG_NAME ": --sample: a number up to 1000000\n");
				return MIG_EXIT_USAGE;
			}
			g.sample = (unsigned)v;
			break;
		}
		case 'h':
			usage(stdout);
			return MIG_EXIT_OK;
		case 'V':
			printf(MIG_NAME " %s\n", LAZARET_VERSION);
			return MIG_EXIT_OK;
		default:
			usage(stderr);
			return MIG_EXIT_USAGE;
		}
	}
	if (optind != argc || g.data_dir == NULL || g.dsn == NULL || g.dsn[0] == '\0') {
		usage(stderr);
		return MIG_EXIT_USAGE;
	}
	log_init(MIG_NAME, LOG_LEVEL_WARN);
	int rc = MIG_EXIT_FAIL;
	char **ids = NULL;
	size_t nids = 0;
	struct strbuf path = STRBUF_INIT;
	strbuf_printf(&path, "%s/lazaret.db", g.data_dir);
	g.db_path = strbuf_take(&path);
	struct stat sb;
	if (stat(g.db_path, &sb) != 0) {
		fail("no SQLite store at %s: %s", g.db_path, strerror(errno));
		goto out;
	}

	g.pg = PQconnectdb(g.dsn);
	if (PQstatus(g.pg) != CONNECTION_OK) {
		char *m = xstrdup(PQerrorMessage(g.pg));
		size_t l = strlen(m);
		while (l > 0 && m[l - 1] == '\n')
			m[--l] = '\0';
		fail("cannot connect to PostgreSQL: %s", m);
		free(m);
		goto out;
	}
	/* a role's or database's default timeouts must not cut off a long copy */
	if (pg_run(&g, "SET statement_timeout = 0; SET lock_timeout = 0;"
		       " SET idle_in_transaction_session_timeout = 0") < 0)
		goto out;
	/* first a probe: lazaretd running on the SQLite store is refused before
	 * anything is written anywhere */
	if (sqlite_lock(&g) < 0)
		goto out;
	sqlite_unlock(&g);
	/* the SQLite store at this program's schema version (its migrations run) */
	struct store_options lo = {.backend = "sqlite", .dir = g.data_dir};
	struct store *lite = NULL;
	int e = store_open(&lo, &lite);
	if (e < 0) {
		fail("cannot open the SQLite store in %s: %s", g.data_dir, strerror(-e));
		goto out;
	}
	store_close(lite);
	/* exclusive: no lazaretd may use the database while it is filled */
	struct store_options po = {.backend = "postgresql", .dsn = g.dsn, .exclusive = true};
	e = store_open(&po, &g.pg_store);
	if (e == -EBUSY) {
		fail("the PostgreSQL database is in use (another lazaretd has it open): stop "
		     "it first");
		goto out;
	}
	if (e < 0) {
		fail("cannot open the PostgreSQL store: %s", strerror(-e));
		goto out;
	}
	if (sqlite_lock(&g) < 0 || pg_check_empty(&g) < 0)
		goto out;
	int64_t t0 = clock_mono_ms();
	printf("copying %s into PostgreSQL\n", g.db_path);
	fflush(stdout);
	if (copy_all(&g) < 0) {
		fail("the copy failed and was rolled back: the database is as it was");
		goto out;
	}
	printf("copied in %.1f s; verifying\n", (double)(clock_mono_ms() - t0) / 1000.0);
	fflush(stdout);
	if (verify_counts(&g) < 0 || sample_ids(&g, &ids, &nids) < 0)
		goto out;
	sqlite_unlock(&g);
	if (verify_bodies(&g, ids, nids) < 0)
		goto out;
	/*
	 * the planner's statistics of the copied rows now, not when autovacuum gets
	 * to them: without those of the index expressions (the 1-2 character
	 * subject index) it would read every match of a frequent term
	 */
	if (pg_run(&g, "ANALYZE") < 0)
		goto out;
	printf("done: the PostgreSQL store is a verified copy of %s\n", g.db_path);
	rc = MIG_EXIT_OK;
out:
	for (size_t i = 0; i < nids; i++)
		free(ids[i]);
	free(ids);
	sqlite_unlock(&g);
	store_close(g.pg_store);
	PQfinish(g.pg);
	free(g.db_path);
	return rc;
}

/*
 * store_pg — the quarantine store on PostgreSQL (libpq), behind store.h like
 * store_sqlite.c and with the same semantics. It is the only code that knows this
 * backend's schema (store_pg_users.c, store_pg_slbl.c and store_pg_digest.c add
 * their parts of store.h through store_pg_int.h). Not for: policy (callers pass
 * filters and cut-offs).
 *
 * Threads and connections:
 *   - One writer thread owns one connection and writes submitted messages in group
 *     commits (up to batch_max messages in one transaction); each done callback
 *     runs after COMMIT returned. A batch that fails is retried message by message
 *     so that one bad message cannot take the others down.
 *   - Every other mutation runs on the calling thread, on a connection borrowed
 *     from a pool, in its own transaction (store_pg_tx), and returns once it has
 *     committed. PostgreSQL's row locks order concurrent changes: a recipient
 *     moves out of "quarantined" once (UPDATE ... WHERE state = 0), a delivery is
 *     claimed by one caller (FOR UPDATE SKIP LOCKED). A transaction that loses a
 *     deadlock or a serialization conflict is run again. So several threads, and
 *     several lazaretd processes (store_pg_cluster.c), can share one database.
 *   - Reads borrow a pooled connection too; a read of several statements runs in
 *     one REPEATABLE READ READ ONLY transaction so that it sees one snapshot.
 *     With [store] read_dsn, the reads of a thread that allows it
 *     (store_read_replica_set: the API's reader threads) borrow from a second
 *     pool connected to that standby instead.
 *
 * When the database goes away (a crash, a restart, a failover):
 *
 *   state  event                                         next   by
 *   up     a connection attempt fails                    down   store_pg_primary_open,
 *                                                               store_pg_writer_begin
 *   down   any call but the writer's: -ENOTCONN at once,  down   store_pg_conn_take
 *          idle pooled connections closed
 *   down   retry_at reached: the writer tries again       up or down (retry_at + 1 s)
 *          (also with nothing to write)                          store_pg_writer_probe
 *
 *   Only the writer thread connects while the database is down: the others
 *   include the event loop (sessions, /metrics, API changes), which must not wait
 *   for connect_timeout while a server does not answer.
 *
 *   A pooled or writer connection whose server went away is found before use
 *   (store_pg_conn_alive) and replaced by a new one, never reused; one that broke
 *   during a call makes that call fail with store_conn_lost set (the caller answers
 *   "unavailable") and is dropped by store_pg_conn_put. A message is acknowledged
 *   only after its COMMIT returned; a COMMIT whose answer was lost counts as failed
 *   (the gateway sends it again: at worst a duplicate, never a loss).
 *   The replica has the same states of its own (replica_down, replica_retry_at):
 *   while it is down, its reads go to the primary (counted, warned once a minute).
 *
 * Recipient states (store.h) and the function that makes each transition:
 *
 *   from         to          by
 *   quarantined  releasing   store_pg_release, store_pg_release_matching (queues a delivery)
 *   quarantined  deleted     store_pg_delete, store_pg_delete_matching
 *   quarantined  expired     store_pg_expire
 *   releasing    released    store_pg_delivery_finish, store_pg_delivery_confirm (DELIVERED)
 *   releasing    failed      store_pg_delivery_finish, store_pg_delivery_confirm (FAILED)
 *   releasing    releasing   store_pg_delivery_finish (RETRY, due again)
 *
 * Invariants kept by triggers inside the database (as in the SQLite schema):
 * messages.held = recipients still quarantined and messages.active = recipients
 * quarantined or releasing (set on insert, moved by a trigger on recipients);
 * quarantines.messages/bytes count messages with held > 0; totals holds the row
 * count and byte sums.
 *
 * Text: PostgreSQL stores only valid UTF-8, so invalid sequences in what we store
 * or search for become U+FFFD (SQLite keeps the bytes; ingest gives both UTF-8).
 * Ids and other keys compared with < use COLLATE "C" (byte order, as SQLite).
 */
#include "store/store.h"
#include "store/store_backend.h"
#include "store/store_pg_int.h"

#include <errno.h>
#include <limits.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/ids.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "common/xalloc.h"

/* Default and ceiling of one group commit (as the SQLite backend). */
#define STORE_PG_BATCH_MAX_DEFAULT 256
#define STORE_PG_BATCH_MAX_LIMIT   4096
/* Idle connections kept for readers and mutations; more are opened on demand. */
#define STORE_PG_POOL_MAX 8
/* Listing page size bounds (CONTRACT.md: max 1000). */
#define STORE_PG_LIST_LIMIT_MAX 1000
/* Messages per transaction for expiry, purge and bulk actions (as SQLite). */
#define STORE_PG_MAINT_BATCH_DEFAULT 500
#define STORE_PG_MAINT_BATCH_MAX     10000
/* Values bound to one statement: lists travel as one array value each. */
/* How often a transaction that lost a deadlock or serialization conflict is run
 * again before the caller gets -EIO. */
#define STORE_PG_TX_TRIES 5
/* Key of the advisory lock that serializes schema migrations across processes. */
#define STORE_PG_MIGRATE_LOCK 0x6c617a6172657431LL /* "lazaret1" */
/*
 * Key of the advisory lock the writer's session holds while a store is open:
 * shared by the lazaretd processes sharing the database (each also holds the lock
 * of its node name: store_pg_cluster.c), exclusive for a store opened with
 * store_options.exclusive (lazaret-migrate-store), which must be alone.
 */
#define STORE_PG_OWNER_LOCK 0x6c617a6172657432LL /* "lazaret2" */
/*
 * How long store_open waits for those locks: a lazaretd restarted right after a
 * crash finds the old session still ending for some milliseconds. (A session
 * whose host died is ended by the server's TCP keepalives, which this backend
 * sets to notice within about a minute: STORE_PG_SESSION_SQL.)
 */
#define STORE_PG_OWNER_WAIT_MS 10000
/* How long a new writer session waits for the lock its predecessor, just closed,
 * still holds for the moment its server takes to end it. */
#define STORE_PG_RELOCK_WAIT_MS 2000
/*
 * libpq's connect_timeout unless the DSN sets one (seconds, per host of a
 * multi-host DSN): a server that does not answer must not hold a request, or the
 * writer, for libpq's default of "forever".
 */
#define STORE_PG_CONNECT_TIMEOUT "5"
/*
 * Client-side TCP settings unless the DSN sets them: a server host that vanished
 * (a power loss, a partition) is noticed on an idle connection after about a
 * minute (keepalives), and on one waiting for an answer to data it sent after
 * 30 s unacknowledged (tcp_user_timeout; a commit waiting for a synchronous
 * standby is not cut off: its bytes were acknowledged). Unix sockets ignore them.
 */
#define STORE_PG_KEEPALIVES_IDLE     "30"
#define STORE_PG_KEEPALIVES_INTERVAL "10"
#define STORE_PG_KEEPALIVES_COUNT    "3"
#define STORE_PG_TCP_USER_TIMEOUT    "30000"
/* While the primary is down, one connection attempt per this many ms; every other
 * call fails at once with -ENOTCONN (SMTP 451, HTTP 503) instead of waiting. */
#define STORE_PG_RETRY_MS 1000
/* While the replica is down, reads go to the primary and the replica is tried
 * again after this many ms. */
#define STORE_PG_REPLICA_RETRY_MS 5000
/* At most one warning per this many ms while reads fall back to the primary. */
#define STORE_PG_REPLICA_WARN_MS 60000
/* At start-up, how often a server that does not answer is tried again. */
#define STORE_PG_WAIT_STEP_MS 2000

/* --- schema ------------------------------------------------------------- */

/*
 * Migration N (index N-1) turns schema version N-1 into N; store_migrations lists
 * what was applied. Append only: never edit a migration that has shipped. Each
 * runs in its own transaction, under an advisory lock so that processes starting
 * together migrate once.
 */
/* clang-format off */
static const char *const store_pg_migrations[] = {
    /* 1: messages, recipients, bodies, deliveries, quarantine counters */
    "CREATE EXTENSION IF NOT EXISTS pg_trgm;"
    "CREATE TABLE messages ("
    "  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  id text COLLATE \"C\" NOT NULL UNIQUE,"
    "  quarantine text NOT NULL,"
    "  received_at bigint NOT NULL,"
    "  sender text NOT NULL,"
    "  sender_lc text NOT NULL,"
    "  sender_domain text NOT NULL,"
    "  from_text text,"
    "  from_addr text,"
    "  from_addr_lc text,"
    "  from_domain text,"
    "  to_text text,"
    "  subject text,"
    "  message_id text,"
    "  date_ms bigint NOT NULL DEFAULT 0,"
    "  size bigint NOT NULL,"
    "  stored_size bigint NOT NULL,"
    "  verdict text,"
    "  score double precision,"
    "  gateway text,"
    "  client_address text,"
    "  held integer NOT NULL DEFAULT 0,"
    "  active integer NOT NULL DEFAULT 0);"
    "CREATE INDEX messages_quarantine ON messages(quarantine, id);"
    "CREATE INDEX messages_received ON messages(received_at);"
    "CREATE INDEX messages_sender ON messages(sender_lc, id);"
    "CREATE INDEX messages_sender_domain ON messages(sender_domain, id);"
    "CREATE INDEX messages_from ON messages(from_addr_lc, id);"
    "CREATE INDEX messages_from_domain ON messages(from_domain, id);"
    "CREATE INDEX messages_held ON messages(quarantine, received_at) WHERE held > 0;"
    "CREATE INDEX messages_purgeable ON messages(id) WHERE active = 0;"
    /* substring search on the decoded subject: trigrams answer 3+ characters
     * from the index; shorter terms are checked row by row (correct, slower) */
    "CREATE INDEX messages_subject ON messages USING gin (subject gin_trgm_ops);"
    "CREATE TABLE bodies ("
    "  msg_seq bigint PRIMARY KEY REFERENCES messages(seq) ON DELETE CASCADE,"
    "  codec text NOT NULL,"
    "  data bytea NOT NULL);"
    /* already zstd-compressed: no second compression attempt by TOAST */
    "ALTER TABLE bodies ALTER COLUMN data SET STORAGE EXTERNAL;"
    "CREATE TABLE recipients ("
    "  msg_id text COLLATE \"C\" NOT NULL REFERENCES messages(id) ON DELETE CASCADE,"
    "  address text NOT NULL,"
    "  address_lc text NOT NULL,"
    "  pos integer NOT NULL,"
    "  state smallint NOT NULL,"
    "  reply text,"
    "  updated_at bigint NOT NULL,"
    "  PRIMARY KEY (msg_id, address_lc));"
    "CREATE INDEX recipients_address ON recipients(address_lc, msg_id, state);"
    "CREATE TABLE attachments ("
    "  msg_id text COLLATE \"C\" NOT NULL REFERENCES messages(id) ON DELETE CASCADE,"
    "  idx integer NOT NULL,"
    "  filename text,"
    "  content_type text,"
    "  size bigint NOT NULL,"
    "  PRIMARY KEY (msg_id, idx));"
    "CREATE TABLE deliveries ("
    "  job_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  msg_id text COLLATE \"C\" NOT NULL REFERENCES messages(id) ON DELETE CASCADE,"
    "  next_attempt_at bigint NOT NULL,"
    "  attempts integer NOT NULL DEFAULT 0,"
    "  first_attempt_at bigint,"
    "  leased boolean NOT NULL DEFAULT false,"
    "  rcpts text[] NOT NULL);"
    "CREATE INDEX deliveries_due ON deliveries(next_attempt_at, job_id);"
    "CREATE INDEX deliveries_msg ON deliveries(msg_id);"
    "CREATE TABLE quarantines ("
    "  name text PRIMARY KEY,"
    "  type text NOT NULL,"
    "  messages bigint NOT NULL DEFAULT 0,"
    "  bytes bigint NOT NULL DEFAULT 0);"
    "INSERT INTO quarantines(name, type) VALUES ('spam', 'spam');"
    "CREATE TABLE totals ("
    "  one integer PRIMARY KEY CHECK (one = 1),"
    "  messages bigint NOT NULL,"
    "  bytes_original bigint NOT NULL,"
    "  bytes_stored bigint NOT NULL);"
    "INSERT INTO totals VALUES (1, 0, 0, 0);"
    "CREATE FUNCTION messages_ai() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    "  INSERT INTO quarantines(name, type) VALUES (new.quarantine,"
    "    CASE WHEN new.quarantine = 'spam' THEN 'spam'"
    "      WHEN lower(new.quarantine) IN ('virus', 'outbreak', 'unclassified',"
    "        'file analysis') THEN replace(lower(new.quarantine), ' ', '_')"
    "      ELSE 'policy' END) ON CONFLICT (name) DO NOTHING;"
    "  UPDATE totals SET messages = messages + 1,"
    "    bytes_original = bytes_original + new.size,"
    "    bytes_stored = bytes_stored + new.stored_size;"
    "  IF new.held > 0 THEN"
    "    UPDATE quarantines SET messages = messages + 1, bytes = bytes + new.size"
    "      WHERE name = new.quarantine;"
    "  END IF;"
    "  RETURN NULL; END $$;"
    "CREATE TRIGGER messages_ai AFTER INSERT ON messages"
    "  FOR EACH ROW EXECUTE FUNCTION messages_ai();"
    "CREATE FUNCTION messages_ad() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    "  UPDATE totals SET messages = messages - 1,"
    "    bytes_original = bytes_original - old.size,"
    "    bytes_stored = bytes_stored - old.stored_size;"
    "  IF old.held > 0 THEN"
    "    UPDATE quarantines SET messages = messages - 1, bytes = bytes - old.size"
    "      WHERE name = old.quarantine;"
    "  END IF;"
    "  RETURN NULL; END $$;"
    "CREATE TRIGGER messages_ad AFTER DELETE ON messages"
    "  FOR EACH ROW EXECUTE FUNCTION messages_ad();"
    "CREATE FUNCTION messages_au_held() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    "  UPDATE quarantines SET"
    "    messages = messages + CASE WHEN new.held > 0 THEN 1 ELSE -1 END,"
    "    bytes = bytes + CASE WHEN new.held > 0 THEN new.size ELSE -new.size END"
    "    WHERE name = new.quarantine;"
    "  RETURN NULL; END $$;"
    "CREATE TRIGGER messages_au_held AFTER UPDATE OF held ON messages"
    "  FOR EACH ROW WHEN ((old.held > 0) <> (new.held > 0))"
    "  EXECUTE FUNCTION messages_au_held();"
    "CREATE FUNCTION recipients_au() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    "  UPDATE messages SET"
    "    held = held + (new.state = 0)::int - (old.state = 0)::int,"
    "    active = active + (new.state IN (0, 1))::int - (old.state IN (0, 1))::int"
    "    WHERE id = new.msg_id;"
    "  RETURN NULL; END $$;"
    "CREATE TRIGGER recipients_au AFTER UPDATE OF state ON recipients"
    "  FOR EACH ROW WHEN (old.state <> new.state) EXECUTE FUNCTION recipients_au();",
    /* 2: accounts, sessions, audit log (store_pg_users.c) */
    "CREATE TABLE users ("
    "  username text PRIMARY KEY,"
    "  password_hash text,"
    "  role text NOT NULL CHECK (role IN ('admin', 'operator', 'enduser')),"
    "  source text NOT NULL DEFAULT 'local',"
    "  language text,"
    "  time_zone text,"
    "  created_at bigint NOT NULL,"
    "  last_login_at bigint);"
    "CREATE TABLE user_addresses ("
    "  username text NOT NULL REFERENCES users(username) ON DELETE CASCADE,"
    "  address_lc text NOT NULL,"
    "  pos integer NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (username, address_lc));"
    "CREATE INDEX user_addresses_address ON user_addresses(address_lc);"
    "CREATE TABLE sessions ("
    "  token_hash text PRIMARY KEY,"
    "  username text NOT NULL,"
    "  role text NOT NULL,"
    "  addresses text NOT NULL,"
    "  csrf_token text NOT NULL,"
    "  created_at bigint NOT NULL,"
    "  expires_at bigint NOT NULL);"
    "CREATE INDEX sessions_expires ON sessions(expires_at);"
    "CREATE INDEX sessions_username ON sessions(username);"
    "CREATE TABLE audit ("
    "  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  at bigint NOT NULL,"
    "  actor text NOT NULL,"
    "  action text NOT NULL,"
    "  target text,"
    "  detail text,"
    "  peer text);"
    "CREATE INDEX audit_at ON audit(at);",
    /* 3: safelists/blocklists (store_pg_slbl.c), digest bookkeeping (store_pg_digest.c) */
    "CREATE TABLE slbl_entries ("
    "  recipient_lc text NOT NULL,"
    "  list text NOT NULL CHECK (list IN ('safelist', 'blocklist')),"
    "  sender_lc text NOT NULL,"
    "  pos integer NOT NULL,"
    "  PRIMARY KEY (recipient_lc, list, sender_lc));"
    "CREATE TABLE slbl_recipients ("
    "  recipient_lc text PRIMARY KEY,"
    "  version bigint NOT NULL);"
    "CREATE INDEX slbl_recipients_version ON slbl_recipients(version);"
    "CREATE TABLE slbl_counter ("
    "  one integer PRIMARY KEY CHECK (one = 1),"
    "  version bigint NOT NULL);"
    "INSERT INTO slbl_counter VALUES (1, 0);"
    "CREATE TABLE digest_state ("
    "  address_lc text PRIMARY KEY,"
    "  last_sent_at bigint NOT NULL,"
    "  last_seq bigint NOT NULL);"
    "CREATE TABLE used_tokens ("
    "  nonce text PRIMARY KEY,"
    "  used_at bigint NOT NULL,"
    "  expires_at bigint NOT NULL);"
    "CREATE INDEX used_tokens_expires ON used_tokens(expires_at);",
    /* 4: several lazaretd on one database (store_pg_cluster.c): who holds a
     * delivery's lease, the nodes, the secrets they share */
    "ALTER TABLE deliveries ADD COLUMN leased_by text;"
    "CREATE TABLE nodes ("
    "  name text PRIMARY KEY,"
    "  started_at bigint NOT NULL,"
    "  last_seen bigint NOT NULL,"
    "  version text NOT NULL);"
    "CREATE TABLE secrets ("
    "  name text PRIMARY KEY,"
    "  value bytea NOT NULL,"
    "  created_at bigint NOT NULL);",
    /*
     * 5: messages and what hangs off a message (bodies, recipients, attachments)
     * in daily RANGE partitions of the message id (store_pg_partition.c). A UUIDv7
     * id starts with its millisecond time in hex, so the day from ms a to b is the
     * ids from the text of a's first 48 bits to b's. The id is the key of every
     * one of these tables (unique constraints must hold the partition key), bodies
     * now refer to it instead of seq. Rewrites the four tables once: the existing
     * rows are copied into the partitions of the days they have, the counters stay
     * as they were (the triggers are attached after the copy).
     */
    "CREATE FUNCTION lazaret_uuidv7_floor(ms bigint) RETURNS text"
    "  LANGUAGE sql IMMUTABLE AS $$"
    "  SELECT substr(h, 1, 8) || '-' || substr(h, 9, 4)"
    "  FROM lpad(to_hex(greatest(ms, 0)), 12, '0') AS h $$;"
    "CREATE FUNCTION lazaret_day_partition(parent text, at_ms bigint) RETURNS boolean"
    "  LANGUAGE plpgsql AS $$ DECLARE"
    "  day bigint := at_ms - at_ms % 86400000;"
    "  name text := parent || '_p' || to_char(to_timestamp(day / 1000) AT TIME ZONE 'UTC',"
    "    'YYYYMMDD');"
    "  BEGIN"
    "  IF to_regclass(quote_ident(name)) IS NOT NULL THEN RETURN false; END IF;"
    "  EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',"
    "    name, parent, lazaret_uuidv7_floor(day), lazaret_uuidv7_floor(day + 86400000));"
    "  RETURN true; END $$;"
    "CREATE FUNCTION lazaret_message_partitions(from_ms bigint, to_ms bigint)"
    "  RETURNS integer LANGUAGE plpgsql AS $$ DECLARE"
    "  day bigint := greatest(from_ms, 0) - greatest(from_ms, 0) % 86400000;"
    "  t text; n integer := 0;"
    "  BEGIN"
    "  PERFORM pg_advisory_xact_lock(7809657787786818612);" /* "lazaret4" */
    "  WHILE day <= to_ms LOOP"
    /* a day whose ids sit in DEFAULT already cannot be made: the others can */
    "    BEGIN"
    "      FOREACH t IN ARRAY ARRAY['messages', 'bodies', 'recipients', 'attachments'] LOOP"
    "        IF lazaret_day_partition(t, day) THEN n := n + 1; END IF;"
    "      END LOOP;"
    "    EXCEPTION WHEN check_violation THEN"
    "      RAISE WARNING 'day % not partitioned: %',"
    "        to_char(to_timestamp(day / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD'), SQLERRM;"
    "    END;"
    "    day := day + 86400000;"
    "  END LOOP;"
    "  RETURN n; END $$;"
    "CREATE SCHEMA lazaret_v3;"
    "ALTER TABLE attachments SET SCHEMA lazaret_v3;"
    "ALTER TABLE recipients SET SCHEMA lazaret_v3;"
    "ALTER TABLE bodies SET SCHEMA lazaret_v3;"
    "ALTER TABLE messages SET SCHEMA lazaret_v3;"
    "ALTER TABLE deliveries DROP CONSTRAINT deliveries_msg_id_fkey;"
    /* the columns as they are (LIKE): whatever earlier migrations added stays */
    "CREATE TABLE messages (LIKE lazaret_v3.messages INCLUDING DEFAULTS INCLUDING IDENTITY,"
    "  PRIMARY KEY (id)) PARTITION BY RANGE (id);"
    "CREATE TABLE bodies ("
    "  msg_id text COLLATE \"C\" NOT NULL PRIMARY KEY"
    "    REFERENCES messages(id) ON DELETE CASCADE,"
    "  codec text NOT NULL,"
    "  data bytea NOT NULL) PARTITION BY RANGE (msg_id);"
    "ALTER TABLE bodies ALTER COLUMN data SET STORAGE EXTERNAL;"
    "CREATE TABLE recipients (LIKE lazaret_v3.recipients INCLUDING DEFAULTS,"
    "  PRIMARY KEY (msg_id, address_lc),"
    "  FOREIGN KEY (msg_id) REFERENCES messages(id) ON DELETE CASCADE)"
    "  PARTITION BY RANGE (msg_id);"
    "CREATE TABLE attachments (LIKE lazaret_v3.attachments INCLUDING DEFAULTS,"
    "  PRIMARY KEY (msg_id, idx),"
    "  FOREIGN KEY (msg_id) REFERENCES messages(id) ON DELETE CASCADE)"
    "  PARTITION BY RANGE (msg_id);"
    /* what no daily partition takes: should stay empty (store_pg_maintain says) */
    "CREATE TABLE messages_default PARTITION OF messages DEFAULT;"
    "CREATE TABLE bodies_default PARTITION OF bodies DEFAULT;"
    "CREATE TABLE recipients_default PARTITION OF recipients DEFAULT;"
    "CREATE TABLE attachments_default PARTITION OF attachments DEFAULT;"
    /* the days that have messages (not every day between the oldest and now) */
    "SELECT lazaret_message_partitions(d, d) FROM (SELECT DISTINCT t - t % 86400000 AS d"
    "  FROM (SELECT ('x' || replace(substr(id, 1, 13), '-', ''))::bit(48)::bigint AS t"
    "  FROM lazaret_v3.messages) AS ids) AS days;"
    "INSERT INTO messages OVERRIDING SYSTEM VALUE"
    "  SELECT * FROM lazaret_v3.messages ORDER BY id;"
    "SELECT setval(pg_get_serial_sequence('messages', 'seq'), max(seq))"
    "  FROM lazaret_v3.messages HAVING count(*) > 0;"
    "INSERT INTO bodies (msg_id, codec, data) SELECT m.id, b.codec, b.data"
    "  FROM lazaret_v3.bodies b JOIN lazaret_v3.messages m ON m.seq = b.msg_seq ORDER BY m.id;"
    "INSERT INTO recipients SELECT * FROM lazaret_v3.recipients ORDER BY msg_id;"
    "INSERT INTO attachments SELECT * FROM lazaret_v3.attachments ORDER BY msg_id;"
    "ALTER TABLE deliveries ADD FOREIGN KEY (msg_id) REFERENCES messages(id) ON DELETE CASCADE;"
    "DROP SCHEMA lazaret_v3 CASCADE;"
    "CREATE INDEX messages_seq ON messages(seq);"
    "CREATE INDEX messages_quarantine ON messages(quarantine, id);"
    "CREATE INDEX messages_received ON messages(received_at);"
    "CREATE INDEX messages_sender ON messages(sender_lc, id);"
    "CREATE INDEX messages_sender_domain ON messages(sender_domain, id);"
    "CREATE INDEX messages_from ON messages(from_addr_lc, id);"
    "CREATE INDEX messages_from_domain ON messages(from_domain, id);"
    "CREATE INDEX messages_held ON messages(quarantine, received_at) WHERE held > 0;"
    "CREATE INDEX messages_purgeable ON messages(id) WHERE active = 0;"
    "CREATE INDEX messages_subject ON messages USING gin (subject gin_trgm_ops);"
    "CREATE INDEX recipients_address ON recipients(address_lc, msg_id, state);"
    /* the trigger functions of migration 1 are kept; the triggers go on the new tables */
    "CREATE TRIGGER messages_ai AFTER INSERT ON messages"
    "  FOR EACH ROW EXECUTE FUNCTION messages_ai();"
    "CREATE TRIGGER messages_ad AFTER DELETE ON messages"
    "  FOR EACH ROW EXECUTE FUNCTION messages_ad();"
    "CREATE TRIGGER messages_au_held AFTER UPDATE OF held ON messages"
    "  FOR EACH ROW WHEN ((old.held > 0) <> (new.held > 0))"
    "  EXECUTE FUNCTION messages_au_held();"
    "CREATE TRIGGER recipients_au AFTER UPDATE OF state ON recipients"
    "  FOR EACH ROW WHEN (old.state <> new.state) EXECUTE FUNCTION recipients_au();",
    /*
     * 6: searches that scale with their matches, not with the messages.
     * lazaret_short_grams: every character and every pair of neighbouring
     * characters of lower(subject), so that a GIN index answers subject terms of
     * 1-2 characters (Japanese words are often two kanji), which the trigram
     * index cannot; case is folded by lower(), as ILIKE folds it (beyond ASCII
     * too). GIN drops repeated keys itself.
     * list_order bounds how far received_at strays from the time in the id, so
     * that a time range becomes a range of ids (partitions pruned, the id order
     * walked): id_ahead = max(time in the id - received_at), id_behind =
     * max(received_at - time in the id), both at least 0; an id that is not a
     * UUIDv7 makes both 2^48 - 1 (no bound). They only grow. Ingest stamps both
     * from one clock reading, so the trigger fires only for copied or odd rows.
     */
    /* (plpgsql: a seventh of the time of the same in one SQL query) */
    "CREATE FUNCTION lazaret_short_grams(s text) RETURNS text[]"
    "  LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$ DECLARE"
    "  c text[] := string_to_array(lower(s), NULL);"
    "  g text[] := c;"
    "  BEGIN"
    "  FOR i IN 1 .. cardinality(c) - 1 LOOP g := array_append(g, c[i] || c[i + 1]); END LOOP;"
    "  RETURN g; END $$;"
    "CREATE INDEX messages_subject_short ON messages"
    "  USING gin (lazaret_short_grams(subject));"
    "CREATE FUNCTION lazaret_uuidv7_ms(id text) RETURNS bigint"
    "  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$"
    "  SELECT CASE WHEN id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-'"
    "    THEN ('x' || substr(id, 1, 8) || substr(id, 10, 4))::bit(48)::bigint END $$;"
    "CREATE TABLE list_order ("
    "  one integer PRIMARY KEY CHECK (one = 1),"
    "  id_ahead bigint NOT NULL,"
    "  id_behind bigint NOT NULL);"
    "INSERT INTO list_order SELECT 1,"
    "  greatest(0, coalesce(max(coalesce(t - received_at, 281474976710655)), 0)),"
    "  greatest(0, coalesce(max(coalesce(received_at - t, 281474976710655)), 0))"
    "  FROM (SELECT lazaret_uuidv7_ms(id) AS t, received_at FROM messages) AS m;"
    "CREATE FUNCTION messages_ai_order() RETURNS trigger LANGUAGE plpgsql AS $$ DECLARE"
    "  t bigint := lazaret_uuidv7_ms(new.id);"
    "  ahead bigint := coalesce(t - new.received_at, 281474976710655);"
    "  behind bigint := coalesce(new.received_at - t, 281474976710655);"
    "  BEGIN"
    "  UPDATE list_order SET id_ahead = greatest(id_ahead, ahead),"
    "    id_behind = greatest(id_behind, behind)"
    "    WHERE id_ahead < ahead OR id_behind < behind;"
    "  RETURN NULL; END $$;"
    "CREATE TRIGGER messages_ai_order AFTER INSERT ON messages FOR EACH ROW"
    "  WHEN (lazaret_uuidv7_ms(new.id) IS DISTINCT FROM new.received_at)"
    "  EXECUTE FUNCTION messages_ai_order();"
    /* the new index expression's statistics: without them the planner takes a
     * frequent short term for a rare one and reads every match */
    "ANALYZE messages;",
    /* 7: the gateway registry (store_pg_gateways.c): names unique in any case,
     * addresses unique among registered gateways, tokens kept as hashes */
    "CREATE TABLE gateways ("
    "  name text NOT NULL PRIMARY KEY,"
    "  state text NOT NULL CHECK (state IN ('registered', 'pending')),"
    "  address text NOT NULL,"
    "  group_name text,"
    "  cluster text,"
    "  release_port integer NOT NULL DEFAULT 25,"
    "  token_hash text UNIQUE,"
    "  created_at bigint NOT NULL,"
    "  last_seen bigint NOT NULL DEFAULT 0,"
    "  version text);"
    "CREATE UNIQUE INDEX gateways_name_lc ON gateways(lower(name));"
    "CREATE UNIQUE INDEX gateways_address ON gateways(address) WHERE state = 'registered';"
    "CREATE INDEX gateways_state ON gateways(state);",
    /*
     * 8: policy, virus and outbreak (PVO) quarantines (store_pg_pvo.c, store.h).
     * Settings per quarantine, its operators, the system quarantines, and one
     * membership per (message, quarantine) with its own reason, times and state
     * (0 held, 1 released, 2 deleted, 3 expired), partitioned by day of the
     * message id as the other message tables (store_pg_partition.c), so that a
     * day's memberships are dropped with it. A PVO message has quarantine '*pvo'
     * (STORE_PVO_MARKER, type 'pvo', never listed): its counters are the held
     * PVO messages of all quarantines together (the capacity, PV7).
     */
    "ALTER TABLE quarantines ADD COLUMN delete_after bigint;"
    "ALTER TABLE quarantines ADD COLUMN default_action text NOT NULL DEFAULT 'delete'"
    "  CHECK (default_action IN ('release', 'delete'));"
    "ALTER TABLE quarantines ADD COLUMN overflow_exempt boolean NOT NULL DEFAULT false;"
    "ALTER TABLE quarantines ADD COLUMN created_at bigint NOT NULL DEFAULT 0;"
    "INSERT INTO quarantines (name, type) VALUES ('virus', 'virus'),"
    "  ('outbreak', 'outbreak'), ('unclassified', 'unclassified'), ('*pvo', 'pvo')"
    "  ON CONFLICT (name) DO NOTHING;"
    "CREATE TABLE quarantine_operators ("
    "  quarantine text NOT NULL REFERENCES quarantines(name)"
    "    ON DELETE CASCADE ON UPDATE CASCADE,"
    "  username text NOT NULL,"
    "  PRIMARY KEY (quarantine, username));"
    "CREATE TABLE memberships ("
    "  msg_id text COLLATE \"C\" NOT NULL REFERENCES messages(id) ON DELETE CASCADE,"
    "  quarantine text NOT NULL,"
    "  reason text NOT NULL DEFAULT '',"
    "  entered_at bigint NOT NULL,"
    "  expires_at bigint NOT NULL,"
    "  state smallint NOT NULL DEFAULT 0,"
    "  updated_at bigint NOT NULL,"
    "  origin_gateway text,"
    "  origin_id text,"
    "  PRIMARY KEY (msg_id, quarantine)) PARTITION BY RANGE (msg_id);"
    "CREATE TABLE memberships_default PARTITION OF memberships DEFAULT;"
    "CREATE INDEX memberships_quarantine ON memberships(quarantine, msg_id);"
    "CREATE INDEX memberships_due ON memberships(expires_at) WHERE state = 0;"
    "CREATE INDEX memberships_oldest ON memberships(quarantine, entered_at) WHERE state = 0;"
    "CREATE INDEX memberships_origin ON memberships(origin_gateway, origin_id)"
    "  WHERE origin_id IS NOT NULL;"
    /* migration 5's function, with memberships among the daily tables */
    "CREATE OR REPLACE FUNCTION lazaret_message_partitions(from_ms bigint, to_ms bigint)"
    "  RETURNS integer LANGUAGE plpgsql AS $$ DECLARE"
    "  day bigint := greatest(from_ms, 0) - greatest(from_ms, 0) % 86400000;"
    "  t text; n integer := 0;"
    "  BEGIN"
    "  PERFORM pg_advisory_xact_lock(7809657787786818612);" /* "lazaret4" */
    "  WHILE day <= to_ms LOOP"
    "    BEGIN"
    "      FOREACH t IN ARRAY ARRAY['messages', 'bodies', 'recipients', 'attachments',"
    "          'memberships'] LOOP"
    "        IF lazaret_day_partition(t, day) THEN n := n + 1; END IF;"
    "      END LOOP;"
    "    EXCEPTION WHEN check_violation THEN"
    "      RAISE WARNING 'day % not partitioned: %',"
    "        to_char(to_timestamp(day / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD'), SQLERRM;"
    "    END;"
    "    day := day + 86400000;"
    "  END LOOP;"
    "  RETURN n; END $$;"
    /* the days that exist already get their memberships partition */
    "SELECT lazaret_day_partition('memberships',"
    "  extract(epoch FROM to_date(substr(c.relname, 11), 'YYYYMMDD'))::bigint * 1000)"
    "  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
    "  WHERE i.inhparent = 'messages'::regclass AND c.relname ~ '^messages_p[0-9]{8}$';",
    /*
     * 9: the route of a delivery (store_delivery): a PVO release goes back through
     * the gateway that quarantined it (its registry name; '' none known), rescan
     * when an outbreak membership was released, and copies (store_pvo_copy) that
     * change no recipient.
     */
    "ALTER TABLE deliveries ADD COLUMN gateway text,"
    "  ADD COLUMN rescan boolean NOT NULL DEFAULT false,"
    "  ADD COLUMN copy boolean NOT NULL DEFAULT false;",
    /*
     * 10: gateway events and message tracking (store_pg_events.c, store.h), the
     * same tables as SQLite's. Daily partitions, as the message
     * tables: events by RANGE of their time (at), the tracked_* tables by the
     * gateway's message id (a UUIDv7, as lazaret_day_partition's days), so that
     * retention drops whole days. (gateway, seq) is kept unique by the writer
     * under a per-gateway lock (a partitioned table's unique key must hold at).
     * lazaret_tracking_partitions makes the days (store_pg_partitions_ensure).
     */
    "CREATE TABLE events ("
    "  gateway text NOT NULL,"
    "  seq bigint NOT NULL,"
    "  at bigint NOT NULL,"
    "  type text NOT NULL,"
    "  msg_id text COLLATE \"C\","
    "  detail text NOT NULL,"
    "  PRIMARY KEY (gateway, seq, at)) PARTITION BY RANGE (at);"
    "CREATE TABLE events_default PARTITION OF events DEFAULT;"
    "CREATE INDEX events_message ON events(gateway, msg_id, seq) WHERE msg_id IS NOT NULL;"
    "CREATE INDEX events_type_at ON events(type, at);"
    "CREATE INDEX events_at ON events(at);"
    "CREATE TABLE tracked_messages ("
    "  msg_id text COLLATE \"C\" NOT NULL,"
    "  gateway text NOT NULL,"
    "  received_at bigint NOT NULL,"
    "  sender text,"
    "  sender_lc text,"
    "  subject text,"
    "  message_id text,"
    "  client_ip text,"
    "  size bigint NOT NULL DEFAULT 0,"
    "  last_state text,"
    "  flags integer NOT NULL DEFAULT 0,"
    "  updated_at bigint NOT NULL,"
    "  PRIMARY KEY (msg_id, gateway)) PARTITION BY RANGE (msg_id);"
    "CREATE TABLE tracked_messages_default PARTITION OF tracked_messages DEFAULT;"
    "CREATE INDEX tracked_received ON tracked_messages(received_at);"
    "CREATE INDEX tracked_gateway ON tracked_messages(gateway, received_at);"
    "CREATE INDEX tracked_sender ON tracked_messages(sender_lc, received_at);"
    "CREATE INDEX tracked_subject ON tracked_messages USING gin (subject gin_trgm_ops);"
    "CREATE INDEX tracked_message_id ON tracked_messages(message_id);"
    "CREATE INDEX tracked_client ON tracked_messages(client_ip, received_at);"
    "CREATE TABLE tracked_recipients ("
    "  msg_id text COLLATE \"C\" NOT NULL,"
    "  gateway text NOT NULL,"
    "  idx integer NOT NULL,"
    "  address text NOT NULL,"
    "  address_lc text NOT NULL,"
    "  PRIMARY KEY (msg_id, gateway, idx)) PARTITION BY RANGE (msg_id);"
    "CREATE TABLE tracked_recipients_default PARTITION OF tracked_recipients DEFAULT;"
    "CREATE INDEX tracked_recipients_address ON tracked_recipients(address_lc);"
    "CREATE TABLE tracked_attachments ("
    "  msg_id text COLLATE \"C\" NOT NULL,"
    "  gateway text NOT NULL,"
    "  idx integer NOT NULL,"
    "  name text NOT NULL,"
    "  name_lc text NOT NULL,"
    "  PRIMARY KEY (msg_id, gateway, idx)) PARTITION BY RANGE (msg_id);"
    "CREATE TABLE tracked_attachments_default PARTITION OF tracked_attachments DEFAULT;"
    "CREATE INDEX tracked_attachments_name ON tracked_attachments(name_lc);"
    "CREATE TABLE gateway_event_state ("
    "  gateway text NOT NULL PRIMARY KEY,"
    "  last_seq bigint NOT NULL DEFAULT 0,"
    "  last_event_at bigint NOT NULL DEFAULT 0,"
    "  backlog bigint NOT NULL DEFAULT -1,"
    "  received bigint NOT NULL DEFAULT 0,"
    "  pushed_at bigint NOT NULL DEFAULT 0);"
    "CREATE FUNCTION lazaret_tracking_partitions(from_ms bigint, to_ms bigint)"
    "  RETURNS integer LANGUAGE plpgsql AS $$ DECLARE"
    "  day bigint := greatest(from_ms, 0) - greatest(from_ms, 0) % 86400000;"
    "  t text; name text; n integer := 0;"
    "  BEGIN"
    "  PERFORM pg_advisory_xact_lock(7809657787786818612);" /* "lazaret4" */
    "  WHILE day <= to_ms LOOP"
    "    BEGIN"
    "      FOREACH t IN ARRAY ARRAY['tracked_messages', 'tracked_recipients',"
    "          'tracked_attachments'] LOOP"
    "        IF lazaret_day_partition(t, day) THEN n := n + 1; END IF;"
    "      END LOOP;"
    "      name := 'events_p' || to_char(to_timestamp(day / 1000) AT TIME ZONE 'UTC',"
    "        'YYYYMMDD');"
    "      IF to_regclass(quote_ident(name)) IS NULL THEN"
    "        EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%s) TO (%s)',"
    "          name, day, day + 86400000);"
    "        n := n + 1;"
    "      END IF;"
    "    EXCEPTION WHEN check_violation THEN"
    "      RAISE WARNING 'day % not partitioned: %',"
    "        to_char(to_timestamp(day / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD'), SQLERRM;"
    "    END;"
    "    day := day + 86400000;"
    "  END LOOP;"
    "  RETURN n; END $$;",
    /*
     * 11: memberships lose their foreign key to messages. Its check took a row
     * lock on the message for every membership written, which cost PVO ingest a
     * quarter of its rate; the rows it guarded are written only beside their
     * message, in its transaction or under its row lock (store_pg_pvo_existing),
     * and the purge deletes them with their message (store_pg_purge_tx).
     */
    "DO $$ DECLARE c text; BEGIN"
    "  FOR c IN SELECT conname FROM pg_constraint WHERE conrelid = 'memberships'::regclass"
    "      AND contype = 'f' AND conparentid = 0 LOOP"
    "    EXECUTE format('ALTER TABLE memberships DROP CONSTRAINT %I', c);"
    "  END LOOP;"
    "END $$;",
    /*
     * 12: the indexes of the tracking searches (store_tracking.c) that 10 lacks:
     * the messages something rarer than delivery happened to (flags but
     * STORE_TRACK_DELIVERED, the same mask as STORE_TRACK_RARE_FLAGS), newest
     * first, and recipients by domain (the part from the '@').
     */
    "CREATE INDEX tracked_flagged ON tracked_messages(received_at) WHERE (flags & 503) <> 0;"
    "CREATE INDEX tracked_recipients_domain ON tracked_recipients"
    "  (substr(address_lc, strpos(address_lc, '@')));",
    /*
     * 13: second factors (TOTP) of local accounts and their single-use recovery
     * codes (store_pg_users.c), removed with their account.
     */
    "CREATE TABLE user_totp ("
    "  username text PRIMARY KEY REFERENCES users(username) ON DELETE CASCADE,"
    "  secret text NOT NULL,"
    "  created_at bigint NOT NULL,"
    "  enrolled_at bigint NOT NULL DEFAULT 0,"
    "  last_step bigint NOT NULL DEFAULT 0);"
    "CREATE TABLE user_recovery_codes ("
    "  username text NOT NULL REFERENCES users(username) ON DELETE CASCADE,"
    "  code_hash text NOT NULL,"
    "  used_at bigint NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (username, code_hash));",
    /*
     * 14: the reporting rollups (store_pg_report.c): counters per report,
     * granularity (0 hour, 1 day, 2 month), bucket start (Unix ms), gateway and
     * key; the retention deletes by (gran, bucket).
     */
    "CREATE TABLE report_rollups ("
    "  report text NOT NULL,"
    "  gran smallint NOT NULL,"
    "  bucket bigint NOT NULL,"
    "  gateway text NOT NULL,"
    "  key text NOT NULL,"
    "  incoming bigint NOT NULL DEFAULT 0,"
    "  clean bigint NOT NULL DEFAULT 0,"
    "  spam bigint NOT NULL DEFAULT 0,"
    "  suspect bigint NOT NULL DEFAULT 0,"
    "  virus bigint NOT NULL DEFAULT 0,"
    "  content_filter bigint NOT NULL DEFAULT 0,"
    "  count bigint NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (report, gran, bucket, gateway, key));"
    "CREATE INDEX report_rollups_age ON report_rollups(gran, bucket);",
    /*
     * 15: centralization levels (store_pg_levels.c): the settings set at a
     * cluster, a group or a machine (one gateway), names unique whatever their
     * case; NULL is "not set at this level". And what each gateway says it runs
     * with (central: 1 pvo, 2 reporting, 4 tracking).
     */
    "CREATE TABLE levels ("
    "  level text NOT NULL CHECK (level IN ('cluster', 'group', 'machine')),"
    "  name text NOT NULL,"
    "  pvo boolean,"
    "  reporting boolean,"
    "  tracking boolean,"
    "  filters text,"
    "  updated_at bigint NOT NULL);"
    "CREATE UNIQUE INDEX levels_key ON levels(level, lower(name));"
    "ALTER TABLE gateways ADD COLUMN central integer NOT NULL DEFAULT 0;",
    /*
     * the version of its outbreak rules a gateway last said in its hello (NULL:
     * none said yet); a change sends its Outbreak messages back for rescanning
     */
    "ALTER TABLE gateways ADD COLUMN outbreak_version text;",
    /*
     * 17: an Outbreak membership's rescan (store_rescan_state: 0 none, 1 pending) and
     * when it last changed (NULL: never)
     */
    "ALTER TABLE memberships ADD COLUMN rescan smallint NOT NULL DEFAULT 0,"
    "  ADD COLUMN rescanned_at bigint;",
    /*
     * 18: scheduled reports (store_pg_sched.c): what to mail, to whom and when;
     * and the archive of the copies made, with their documents
     */
    "CREATE TABLE report_schedules ("
    "  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  report text NOT NULL,"
    "  period text NOT NULL,"
    "  every text NOT NULL CHECK (every IN ('daily', 'weekly', 'monthly')),"
    "  format text NOT NULL CHECK (format IN ('pdf', 'csv')),"
    "  recipients text NOT NULL,"
    "  created_by text NOT NULL,"
    "  created_at bigint NOT NULL,"
    "  next_run bigint NOT NULL,"
    "  last_run bigint NOT NULL DEFAULT 0);"
    "CREATE TABLE report_archive ("
    "  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  schedule_id bigint NOT NULL DEFAULT 0,"
    "  report text NOT NULL,"
    "  period text NOT NULL,"
    "  format text NOT NULL,"
    "  range_from bigint NOT NULL,"
    "  range_to bigint NOT NULL,"
    "  created_at bigint NOT NULL,"
    "  data bytea NOT NULL);",
    /*
     * 19: migration on enabling centralized PVO (store_pg_gateways.c): a gateway's
     * quarantine mapping (NULL: automatic) and its last migration's progress
     */
    "ALTER TABLE gateways ADD COLUMN mapping text,"
    "  ADD COLUMN mig_state smallint NOT NULL DEFAULT 0,"
    "  ADD COLUMN mig_run bigint NOT NULL DEFAULT 0,"
    "  ADD COLUMN mig_total bigint NOT NULL DEFAULT 0,"
    "  ADD COLUMN mig_done bigint NOT NULL DEFAULT 0,"
    "  ADD COLUMN mig_failed bigint NOT NULL DEFAULT 0,"
    "  ADD COLUMN mig_finished_at bigint NOT NULL DEFAULT 0,"
    "  ADD COLUMN mig_notified_at bigint NOT NULL DEFAULT 0;",
    /*
     * 20: the verdict of an Outbreak membership's rescan (store_rescan_state:
     * 2 clean, 3 kept, 4 requarantined) names the rule that decided it; and when
     * a rules change last sent it back (NULL: never), which rescanned_at, the
     * time of the verdict, no longer tells
     */
    "ALTER TABLE memberships ADD COLUMN rescan_rule text,"
    "  ADD COLUMN rescan_sent_at bigint;"
    "UPDATE memberships SET rescan_sent_at = rescanned_at WHERE rescan = 1;",
    /*
     * 21: a schedule's send time (minutes after midnight in its time zone), and a
     * copy's mail: the recipients still to reach, attempts made, next attempt
     */
    "ALTER TABLE report_schedules ADD COLUMN at_minute bigint NOT NULL DEFAULT 360,"
    "  ADD COLUMN time_zone text NOT NULL DEFAULT 'UTC';"
    "ALTER TABLE report_archive ADD COLUMN mail_pending text NOT NULL DEFAULT '',"
    "  ADD COLUMN mail_tries bigint NOT NULL DEFAULT 0,"
    "  ADD COLUMN mail_next bigint NOT NULL DEFAULT 0;"
    "CREATE INDEX report_archive_created ON report_archive(created_at);"
    "CREATE INDEX report_archive_mail ON report_archive(mail_next) WHERE mail_next > 0;"
    /*
     * and the rollup rows gateways sent once (store_pg_backfill.c): what was
     * taken, and when each gateway's backfill finished
     */
    "CREATE TABLE report_backfill ("
    "  gateway text NOT NULL,"
    "  report text NOT NULL,"
    "  gran smallint NOT NULL,"
    "  bucket bigint NOT NULL,"
    "  key text NOT NULL,"
    "  PRIMARY KEY (gateway, report, gran, bucket, key));"
    "CREATE TABLE report_backfill_done ("
    "  gateway text PRIMARY KEY,"
    "  done_at bigint NOT NULL);",
    /*
     * 22: the reporting rollups summed over all gateways (store_pg_report.c),
     * written with the per-gateway rows, so that a report over all gateways reads
     * one row per bucket and key (the retention deletes by report, gran and
     * bucket: no index of their own); filled here from the per-gateway rows. And
     * an index by gateway, so that a report of one gateway reads its rows only.
     */
    "CREATE TABLE report_totals ("
    "  report text NOT NULL,"
    "  gran smallint NOT NULL,"
    "  bucket bigint NOT NULL,"
    "  key text NOT NULL,"
    "  incoming bigint NOT NULL DEFAULT 0,"
    "  clean bigint NOT NULL DEFAULT 0,"
    "  spam bigint NOT NULL DEFAULT 0,"
    "  suspect bigint NOT NULL DEFAULT 0,"
    "  virus bigint NOT NULL DEFAULT 0,"
    "  content_filter bigint NOT NULL DEFAULT 0,"
    "  count bigint NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (report, gran, bucket, key));"
    "CREATE INDEX report_rollups_gateway ON report_rollups(report, gateway, gran, bucket);"
    "INSERT INTO report_totals (report, gran, bucket, key, incoming, clean, spam, suspect,"
    "  virus, content_filter, count)"
    "  SELECT report, gran, bucket, key, sum(incoming), sum(clean), sum(spam), sum(suspect),"
    "  sum(virus), sum(content_filter), sum(count) FROM report_rollups"
    "  GROUP BY report, gran, bucket, key;",
    /*
     * 23: the system_capacity report (store_pg_report.c): the gateways'
     * capacity samples added up per gateway and hour (sums, the sample count
     * and maxima; load in hundredths, memory in bytes)
     */
    "CREATE TABLE capacity_hours ("
    "  gateway text NOT NULL,"
    "  bucket bigint NOT NULL,"
    "  samples bigint NOT NULL,"
    "  received bigint NOT NULL,"
    "  relayed bigint NOT NULL,"
    "  connections bigint NOT NULL,"
    "  current_sum bigint NOT NULL,"
    "  current_max bigint NOT NULL,"
    "  load_sum bigint NOT NULL,"
    "  load_max bigint NOT NULL,"
    "  memory_max bigint NOT NULL,"
    "  backlog_max bigint NOT NULL,"
    "  PRIMARY KEY (gateway, bucket));"
    "CREATE INDEX capacity_hours_bucket ON capacity_hours(bucket);",
    /*
     * 24: the "done" mail of a gateway's migration run (store_pg_gateways.c): one
     * per gateway and run, recorded with the run's state and kept until the
     * relay takes it or refuses it for good; next_try > 0 while it is pending
     */
    "CREATE TABLE migration_notices ("
    "  id bigserial PRIMARY KEY,"
    "  gateway text NOT NULL,"
    "  run bigint NOT NULL,"
    "  rcpt text NOT NULL,"
    "  total bigint NOT NULL,"
    "  moved bigint NOT NULL,"
    "  failed bigint NOT NULL,"
    "  finished_at bigint NOT NULL,"
    "  tries bigint NOT NULL DEFAULT 0,"
    "  next_try bigint NOT NULL,"
    "  sent boolean NOT NULL DEFAULT false,"
    "  last_try bigint NOT NULL DEFAULT 0,"
    "  reply text,"
    "  UNIQUE (gateway, run));"
    "CREATE INDEX migration_notices_due ON migration_notices(next_try) WHERE next_try > 0;",
    /*
     * 25: the Outbreak memberships ever sent back for rescanning, with their
     * verdict, so that the gateway list (store_pg_gateways.c) reads each gateway's
     * last rescan from these alone
     */
    "CREATE INDEX memberships_rescan ON memberships(rescan_sent_at, rescan)"
    "  WHERE quarantine = 'outbreak' AND rescan_sent_at IS NOT NULL;",
};
/* clang-format on */
#define STORE_PG_SCHEMA_VERSION                                                                    \
	((int)(sizeof(store_pg_migrations) / sizeof(store_pg_migrations[0])))

/* --- types -------------------------------------------------------------- */

struct store_pg_pending {
	struct store_new_message *m;
	store_done_fn done;
	void *arg;
	struct store_pg_pending *next;
};

struct store_pg {
	struct store_head head; /* first: store.c dispatches on it */
	char *dsn;
	char *node;	/* store_options.node_name: names this process's leases */
	bool exclusive; /* store_options.exclusive */
	struct store_pg_cluster *cluster;
	unsigned batch_max;
	unsigned batch_wait_us;

	pthread_mutex_t lock; /* guards the queue and stopping */
	pthread_cond_t wake;  /* writer: work arrived or stopping */
	struct store_pg_pending *pending_head, *pending_tail;
	size_t npending;
	bool stopping;
	pthread_t writer;
	bool writer_started;
	struct store_pg_conn *wconn;

	pthread_mutex_t pool_lock; /* guards both pools */
	struct store_pg_conn *pool;
	size_t npool;
	char *read_dsn;		     /* NULL: no replica */
	struct store_pg_conn *rpool; /* idle connections to read_dsn */
	size_t nrpool;
	int64_t connect_wait_ms;

	/* The primary's reachability (see the state table at the top). */
	atomic_int_fast64_t down_since; /* Unix ms; 0 while up */
	atomic_int_fast64_t retry_at;	/* clock_mono_ms of the next attempt while down */
	atomic_uint_fast64_t connect_failures;
	/* The replica's, and the reads it could not serve. */
	atomic_bool replica_down;
	atomic_int_fast64_t replica_retry_at;
	atomic_int_fast64_t replica_warned_at;
	atomic_uint_fast64_t replica_fallbacks;

	atomic_uint_fast64_t commits;
	atomic_uint_fast64_t batches;
	atomic_uint_fast64_t batched_messages;
};

struct store_pg *store_pg_of(struct store *st)
{
	return (struct store_pg *)(void *)st;
}

struct store_pg_cluster *store_pg_cluster_of(struct store_pg *st)
{
	return st->cluster;
}

/* --- text and values ---------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p (1-4), or 0 when it is not one. */
static size_t store_pg_utf8_len(const unsigned char *p)
{
	if (p[0] < 0x80)
		return 1;
	size_t n = p[0] >= 0xc2 && p[0] <= 0xdf	  ? 2
		   : p[0] >= 0xe0 && p[0] <= 0xef ? 3
		   : p[0] >= 0xf0 && p[0] <= 0xf4 ? 4
						  : 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	}
	/* overlong forms, surrogates, beyond U+10FFFF */
	if ((n == 3 && p[0] == 0xe0 && p[1] < 0xa0) || (n == 3 && p[0] == 0xed && p[1] >= 0xa0) ||
	    (n == 4 && p[0] == 0xf0 && p[1] < 0x90) || (n == 4 && p[0] == 0xf4 && p[1] >= 0x90))
		return 0;
	return n;
}

/* NULL when s is valid UTF-8; else a new copy with U+FFFD for each bad byte. */
static char *store_pg_utf8_fix(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p != '\0') {
		size_t n = store_pg_utf8_len(p);
		if (n == 0)
			break;
		p += n;
	}
	if (*p == '\0')
		return NULL;
	struct strbuf b = STRBUF_INIT;
	strbuf_add(&b, s, (size_t)((const char *)p - s));
	while (*p != '\0') {
		size_t n = store_pg_utf8_len(p);
		if (n == 0) {
			strbuf_puts(&b, "\xef\xbf\xbd");
			p++;
		} else {
			strbuf_add(&b, p, n);
			p += n;
		}
	}
	return strbuf_take(&b);
}

/* Lower-cases ASCII only: the local part of UTF-8 addresses is left as is. */
char *store_pg_lc(const char *s)
{
	char *r = xstrdup(s != NULL ? s : "");
	for (char *p = r; *p != '\0'; p++) {
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	}
	return r;
}

/* The lower-cased domain of an address (after the last '@'), "" without one. */
static char *store_pg_domain_lc(const char *addr)
{
	const char *at = addr != NULL ? strrchr(addr, '@') : NULL;
	return store_pg_lc(at != NULL ? at + 1 : "");
}

static int store_pg_add_value(struct store_pg_params *p, const char *v, int len, int fmt)
{
	if (p->n == STORE_PG_PARAMS_MAX)
		panic("store_pg: more than %d values in one statement", STORE_PG_PARAMS_MAX);
	p->v[p->n] = v;
	p->len[p->n] = len;
	p->fmt[p->n] = fmt;
	return ++p->n;
}

/* Binds text s (NULL: SQL NULL), borrowed; returns its number ($n). */
int store_pg_text(struct store_pg_params *p, const char *s)
{
	char *fixed = s != NULL ? store_pg_utf8_fix(s) : NULL;
	if (fixed != NULL) {
		p->owned[p->nowned++] = fixed;
		s = fixed;
	}
	return store_pg_add_value(p, s, 0, 0);
}

/* Binds s and frees it with the params. */
int store_pg_owned(struct store_pg_params *p, char *s)
{
	p->owned[p->nowned++] = s;
	return store_pg_text(p, s);
}

int store_pg_int(struct store_pg_params *p, int64_t v)
{
	return store_pg_owned(p, xasprintf("%lld", (long long)v));
}

int store_pg_bytes(struct store_pg_params *p, const void *data, size_t len)
{
	return store_pg_add_value(p, data != NULL ? data : "", (int)len, 1);
}

/*
 * A text[] literal of v ("{"a","b\"c"}"), each element UTF-8-fixed; NULL elements
 * are SQL NULLs. Binds it and returns its number.
 */
int store_pg_array(struct store_pg_params *p, const char *const *v, size_t n)
{
	struct strbuf b = STRBUF_INIT;
	strbuf_addc(&b, '{');
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			strbuf_addc(&b, ',');
		if (v[i] == NULL) {
			strbuf_puts(&b, "NULL");
			continue;
		}
		char *fixed = store_pg_utf8_fix(v[i]);
		strbuf_addc(&b, '"');
		for (const char *s = fixed != NULL ? fixed : v[i]; *s != '\0'; s++) {
			if (*s == '"' || *s == '\\')
				strbuf_addc(&b, '\\');
			strbuf_addc(&b, *s);
		}
		strbuf_addc(&b, '"');
		free(fixed);
	}
	strbuf_addc(&b, '}');
	p->owned[p->nowned++] = strbuf_take(&b);
	return store_pg_add_value(p, p->owned[p->nowned - 1], 0, 0);
}

void store_pg_params_clear(struct store_pg_params *p)
{
	for (int i = 0; i < p->nowned; i++)
		free(p->owned[i]);
	p->nowned = 0;
	p->n = 0;
}

__thread char store_pg_sqlstate[6];

/*
 * True when the statement that just failed was cancelled by the statement_timeout
 * of the thread's read deadline (SQLSTATE 57014, query_canceled): a read over its
 * budget, not a storage failure; store.c answers -ETIMEDOUT for the call.
 */
static bool store_pg_read_cut_off(const char *what)
{
	if (store_read_deadline_ms == 0 || strcmp(store_pg_sqlstate, "57014") != 0)
		return false;
	store_read_timed_out = true;
	log_debug("store.pg_read_timeout", "op=%s", what);
	return true;
}

/*
 * Runs sql with p's values. The result when it succeeded (PGRES_COMMAND_OK or
 * PGRES_TUPLES_OK; the caller PQclear()s it), NULL when not (logged with what;
 * store_pg_sqlstate says why). binary: results in binary format.
 */
static PGresult *store_pg_result(PGconn *c, const char *what, PGresult *r);

PGresult *store_pg_exec(PGconn *c, const char *what, const char *sql,
			const struct store_pg_params *p, bool binary)
{
	PGresult *r =
	    PQexecParams(c, sql, p != NULL ? p->n : 0, NULL, p != NULL ? p->v : NULL,
			 p != NULL ? p->len : NULL, p != NULL ? p->fmt : NULL, binary ? 1 : 0);
	return store_pg_result(c, what, r);
}

PGresult *store_pg_exec_prepared(struct store_pg_conn *c, const char *what, const char *sql,
				 const struct store_pg_params *p)
{
	unsigned k = 0;
	while (k < c->nprepared && strcmp(c->prepared[k], sql) != 0)
		k++;
	char name[32];
	snprintf(name, sizeof(name), "lazaret_q%u", k);
	if (k == c->nprepared) {
		if (k == STORE_PG_PREPARED_MAX)
			return store_pg_exec(c->pg, what, sql, p, false);
		PGresult *pr = PQprepare(c->pg, name, sql, 0, NULL);
		if (PQresultStatus(pr) != PGRES_COMMAND_OK)
			return store_pg_result(c->pg, what, pr);
		PQclear(pr);
		c->prepared[c->nprepared++] = xstrdup(sql);
	}
	PGresult *r = PQexecPrepared(c->pg, name, p != NULL ? p->n : 0, p != NULL ? p->v : NULL,
				     p != NULL ? p->len : NULL, p != NULL ? p->fmt : NULL, 0);
	return store_pg_result(c->pg, what, r);
}

/* r when it succeeded; else NULL, r cleared and the failure logged (unless a read
 * was cut off by its deadline). */
static PGresult *store_pg_result(PGconn *c, const char *what, PGresult *r)
{
	ExecStatusType s = PQresultStatus(r);
	if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) {
		store_pg_sqlstate[0] = '\0';
		return r;
	}
	const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	snprintf(store_pg_sqlstate, sizeof(store_pg_sqlstate), "%s", state != NULL ? state : "");
	if (store_pg_read_cut_off(what)) {
		PQclear(r);
		return NULL;
	}
	char buf[256];
	log_error(
	    "store.pg_error", "op=%s sqlstate=%s error=%s", what, state != NULL ? state : "-",
	    log_quote(buf, sizeof(buf), r != NULL ? PQresultErrorMessage(r) : PQerrorMessage(c)));
	PQclear(r);
	return NULL;
}

/* Runs sql for its effect only; *rows (may be NULL) gets the rows it touched. */
int store_pg_do(PGconn *c, const char *what, const char *sql, const struct store_pg_params *p,
		uint64_t *rows)
{
	PGresult *r = store_pg_exec(c, what, sql, p, false);
	if (r == NULL)
		return -EIO;
	if (rows != NULL)
		*rows = strtoull(PQcmdTuples(r), NULL, 10);
	PQclear(r);
	return 0;
}

/* Runs a script of several statements without values (PQexec). 0 or -EIO. */
int store_pg_script(PGconn *c, const char *what, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType s = PQresultStatus(r);
	if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) {
		PQclear(r);
		return 0;
	}
	const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	snprintf(store_pg_sqlstate, sizeof(store_pg_sqlstate), "%s", state != NULL ? state : "");
	char buf[256];
	log_error(
	    "store.pg_error", "op=%s sqlstate=%s error=%s", what, state != NULL ? state : "-",
	    log_quote(buf, sizeof(buf), r != NULL ? PQresultErrorMessage(r) : PQerrorMessage(c)));
	PQclear(r);
	return -EIO;
}

/* A new copy of a text value, NULL for SQL NULL. */
char *store_pg_dup(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL : xstrdup(PQgetvalue(r, row, col));
}

int64_t store_pg_i64(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

/* --- connections -------------------------------------------------------- */

/* Every commit durable before its 250 whatever the server's default; numbers print
 * exactly; backslashes in literals are plain characters; over TCP, the server
 * notices a dead client within about a minute (and frees its locks). */
#define STORE_PG_SESSION_SQL                                                                       \
	"SET synchronous_commit = on; SET extra_float_digits = 3;"                                 \
	" SET standard_conforming_strings = on; SET tcp_keepalives_idle = 30;"                     \
	" SET tcp_keepalives_interval = 10; SET tcp_keepalives_count = 3"

/* Server notices ("relation ... already exists, skipping") are not errors. */
static void store_pg_notice(void *arg, const char *message)
{
	(void)arg;
	char buf[256];
	log_debug("store.pg_notice", "message=%s", log_quote(buf, sizeof(buf), message));
}

static void store_pg_conn_close(struct store_pg_conn *c)
{
	if (c == NULL)
		return;
	PQfinish(c->pg);
	for (unsigned k = 0; k < c->nprepared; k++)
		free(c->prepared[k]);
	free(c);
}

/*
 * A new connection to dsn with our session settings, or -ENOTCONN with libpq's
 * reason in err. Our connect_timeout and application name come before the DSN,
 * so that the DSN's own values win (libpq applies the expanded DSN over them).
 */
static int store_pg_connect_once(const char *dsn, char *err, size_t errlen,
				 struct store_pg_conn **out, bool *ended)
{
	const char *keys[] = {"connect_timeout",
			      "keepalives_idle",
			      "keepalives_interval",
			      "keepalives_count",
			      "tcp_user_timeout",
			      "fallback_application_name",
			      "dbname",
			      NULL};
	const char *vals[] = {STORE_PG_CONNECT_TIMEOUT,
			      STORE_PG_KEEPALIVES_IDLE,
			      STORE_PG_KEEPALIVES_INTERVAL,
			      STORE_PG_KEEPALIVES_COUNT,
			      STORE_PG_TCP_USER_TIMEOUT,
			      "lazaretd",
			      dsn,
			      NULL};
	struct store_pg_conn *c = xcalloc(1, sizeof(*c));
	c->pg = PQconnectdbParams(keys, vals, 1);
	if (c->pg == NULL || PQstatus(c->pg) != CONNECTION_OK) {
		snprintf(err, errlen, "%s",
			 c->pg != NULL ? PQerrorMessage(c->pg) : "out of memory");
		err[strcspn(err, "\n")] = '\0'; /* libpq's message ends in a newline */
		store_pg_conn_close(c);
		return -ENOTCONN;
	}
	PQsetNoticeProcessor(c->pg, store_pg_notice, NULL);
	/* text travels as UTF-8 */
	if (PQsetClientEncoding(c->pg, "UTF8") != 0 ||
	    store_pg_script(c->pg, "session", STORE_PG_SESSION_SQL) < 0) {
		snprintf(err, errlen, "%s", PQerrorMessage(c->pg));
		err[strcspn(err, "\n")] = '\0';
		*ended = PQstatus(c->pg) == CONNECTION_BAD;
		store_pg_conn_close(c);
		return -ENOTCONN;
	}
	*out = c;
	return 0;
}

/*
 * A new connection, its session set up. One that the server ends while it is set
 * up (pg_terminate_backend of every session, as a restart does, reaching it just
 * after it was accepted) is tried once more at once: the server is there, and the
 * store need not be called unavailable for a second.
 */
static int store_pg_connect(const char *dsn, char *err, size_t errlen, struct store_pg_conn **out)
{
	bool ended = false;
	int rc = store_pg_connect_once(dsn, err, errlen, out, &ended);
	if (rc < 0 && ended) {
		char q[256];
		log_warn("store.pg_reconnect", "reason=\"the server ended a new session\" error=%s",
			 log_quote(q, sizeof(q), err));
		rc = store_pg_connect_once(dsn, err, errlen, out, &ended);
	}
	return rc;
}

/* The primary could not be reached: every call but the writer's fails at once
 * until a connection works again. Never called with st->lock held. */
static void store_pg_mark_down(struct store_pg *st, const char *err)
{
	atomic_fetch_add(&st->connect_failures, 1);
	atomic_store(&st->retry_at, clock_mono_ms() + STORE_PG_RETRY_MS);
	int_fast64_t up = 0;
	if (atomic_compare_exchange_strong(&st->down_since, &up, clock_now_ms())) {
		/* the writer, maybe idle, is the one who tries again (store_pg_writer_probe) */
		pthread_mutex_lock(&st->lock);
		pthread_cond_signal(&st->wake);
		pthread_mutex_unlock(&st->lock);
		char buf[256];
		log_error("store.unavailable",
			  "backend=postgresql error=%s retry_ms=%d"
			  " reason=\"messages get 451 and the API 503 until the database is back\"",
			  log_quote(buf, sizeof(buf), err), STORE_PG_RETRY_MS);
	}
}

/* A connection to the primary worked: the outage, if any, is over. */
static void store_pg_mark_up(struct store_pg *st)
{
	int_fast64_t since = atomic_load(&st->down_since);
	if (since != 0 && atomic_compare_exchange_strong(&st->down_since, &since, 0))
		log_info("store.available", "backend=postgresql down_ms=%lld",
			 (long long)(clock_now_ms() - since));
}

/* Set on the writer thread: the one that tries to reconnect while the database is down. */
static _Thread_local bool store_pg_on_writer;

/*
 * May this thread try to connect to the primary now? Always while it is up; while
 * it is down, only the writer, once retry_at is reached (and retry_at moves on).
 */
static bool store_pg_attempt_due(struct store_pg *st)
{
	if (atomic_load(&st->down_since) == 0)
		return true;
	if (!store_pg_on_writer)
		return false;
	int64_t now = clock_mono_ms();
	int_fast64_t at = atomic_load(&st->retry_at);
	return now >= at &&
	       atomic_compare_exchange_strong(&st->retry_at, &at, now + STORE_PG_RETRY_MS);
}

/* A new connection to the primary, or -ENOTCONN (at once while it is down). */
static int store_pg_primary_open(struct store_pg *st, struct store_pg_conn **out)
{
	if (!store_pg_attempt_due(st)) {
		store_conn_lost = true;
		return -ENOTCONN;
	}
	char err[256];
	if (store_pg_connect(st->dsn, err, sizeof(err), out) < 0) {
		store_pg_mark_down(st, err);
		store_conn_lost = true;
		return -ENOTCONN;
	}
	store_pg_mark_up(st);
	return 0;
}

/*
 * False when an idle connection is gone or going: when the server ends a session
 * (a restart, pg_terminate_backend) it says so and closes the socket. We use no
 * LISTEN/NOTIFY, so an idle connection with anything to read is such a one and is
 * replaced before it fails a request. Costs one poll(), no round trip.
 */
static bool store_pg_conn_alive(PGconn *c)
{
	if (PQstatus(c) != CONNECTION_OK)
		return false;
	struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
	return poll(&pfd, 1, 0) == 0;
}

/*
 * Sets c's statement_timeout to what is left of the calling thread's read deadline
 * (store_read_deadline_set), or back to none when it has none and c had one. A
 * session setting, outside any transaction, so it holds for every statement of
 * the call; store_pg_conn_put clears it.
 */
static void store_pg_conn_timeout(struct store_pg_conn *c, bool reading)
{
	int64_t left = 0;
	if (reading && store_read_deadline_ms != 0) {
		left = store_read_deadline_ms - clock_mono_ms();
		if (left < 1)
			left = 1; /* spent meanwhile: the first statement ends at once */
	}
	if (left == 0 && !c->timed)
		return;
	char sql[64];
	snprintf(sql, sizeof(sql), "SET statement_timeout = %lld", (long long)left);
	PQclear(PQexec(c->pg, sql));
	c->timed = left != 0;
}

static int store_pg_conn_take(struct store_pg *st, struct store_pg_conn **out);
static int store_pg_replica_take(struct store_pg *st, struct store_pg_conn **out);

/*
 * A connection for this read call (give it back with store_pg_conn_put), with the
 * thread's read deadline as its statement_timeout: to the replica when the thread
 * allows it and the replica answers, else to the primary.
 */
int store_pg_conn_get(struct store_pg *st, struct store_pg_conn **out)
{
	if (store_read_deadline_ms != 0 && clock_mono_ms() >= store_read_deadline_ms) {
		store_read_timed_out = true; /* spent before it began */
		return -ETIMEDOUT;
	}
	int rc = -ENOENT;
	if (store_read_replica_ok && st->read_dsn != NULL)
		rc = store_pg_replica_take(st, out);
	if (rc < 0)
		rc = store_pg_conn_take(st, out);
	if (rc == 0)
		store_pg_conn_timeout(*out, true);
	return rc;
}

/* An idle connection of a pool that is still alive, or NULL (the dead are closed). */
static struct store_pg_conn *store_pg_pool_pop(struct store_pg *st, bool replica)
{
	for (;;) {
		pthread_mutex_lock(&st->pool_lock);
		struct store_pg_conn **pool = replica ? &st->rpool : &st->pool;
		struct store_pg_conn *c = *pool;
		if (c != NULL) {
			*pool = c->next;
			if (replica)
				st->nrpool--;
			else
				st->npool--;
		}
		pthread_mutex_unlock(&st->pool_lock);
		if (c == NULL)
			return NULL;
		c->next = NULL;
		/* the server ended it (a crash, a restart): never reuse it */
		if (store_pg_conn_alive(c->pg))
			return c;
		store_pg_conn_close(c);
	}
}

/* Closes every idle connection of a pool. */
static void store_pg_pool_drain(struct store_pg *st, bool replica)
{
	pthread_mutex_lock(&st->pool_lock);
	struct store_pg_conn **pool = replica ? &st->rpool : &st->pool;
	struct store_pg_conn *c = *pool;
	*pool = NULL;
	if (replica)
		st->nrpool = 0;
	else
		st->npool = 0;
	pthread_mutex_unlock(&st->pool_lock);
	while (c != NULL) {
		struct store_pg_conn *next = c->next;
		store_pg_conn_close(c);
		c = next;
	}
}

static int store_pg_conn_take(struct store_pg *st, struct store_pg_conn **out)
{
	store_conn_lost = false;
	if (atomic_load(&st->down_since) != 0) {
		/* what is pooled is from before the outage: a statement on a connection
		 * to a host that vanished could hang; fail at once instead */
		store_pg_pool_drain(st, false);
		store_conn_lost = true;
		return -ENOTCONN;
	}
	struct store_pg_conn *c = store_pg_pool_pop(st, false);
	if (c != NULL) {
		*out = c;
		return 0;
	}
	return store_pg_primary_open(st, out);
}

/* A read goes to the primary: the replica did not answer or is not tried yet. */
static int store_pg_replica_fallback(struct store_pg *st, const char *err)
{
	uint64_t n = atomic_fetch_add(&st->replica_fallbacks, 1) + 1;
	int64_t now = clock_mono_ms();
	int_fast64_t warned = atomic_load(&st->replica_warned_at);
	if ((warned == 0 || now - warned >= STORE_PG_REPLICA_WARN_MS) &&
	    atomic_compare_exchange_strong(&st->replica_warned_at, &warned, now)) {
		char buf[256];
		log_warn("store.replica_unavailable",
			 "backend=postgresql fallbacks=%llu error=%s"
			 " reason=\"reads go to the primary until the replica answers\"",
			 (unsigned long long)n, log_quote(buf, sizeof(buf), err));
	}
	return -ENOTCONN;
}

/*
 * A connection to the replica for a read, or -ENOTCONN when the read must go to
 * the primary (counted and warned).
 */
static int store_pg_replica_take(struct store_pg *st, struct store_pg_conn **out)
{
	store_conn_lost = false;
	struct store_pg_conn *c = store_pg_pool_pop(st, true);
	if (c != NULL) {
		*out = c;
		return 0;
	}
	if (atomic_load(&st->replica_down)) {
		int64_t now = clock_mono_ms();
		int_fast64_t at = atomic_load(&st->replica_retry_at);
		if (now < at || !atomic_compare_exchange_strong(&st->replica_retry_at, &at,
								now + STORE_PG_REPLICA_RETRY_MS))
			return store_pg_replica_fallback(st, "still unreachable");
	}
	char err[256];
	if (store_pg_connect(st->read_dsn, err, sizeof(err), &c) < 0) {
		atomic_store(&st->replica_retry_at, clock_mono_ms() + STORE_PG_REPLICA_RETRY_MS);
		atomic_store(&st->replica_down, true);
		return store_pg_replica_fallback(st, err);
	}
	c->replica = true;
	bool down = true;
	if (atomic_compare_exchange_strong(&st->replica_down, &down, false)) {
		atomic_store(&st->replica_warned_at, 0);
		log_info("store.replica_available", "backend=postgresql host=%s fallbacks=%llu",
			 PQhost(c->pg), (unsigned long long)atomic_load(&st->replica_fallbacks));
	}
	*out = c;
	return 0;
}

/*
 * True when the statement that just failed was refused because the server accepts
 * no writes (SQLSTATE 25006 read_only_sql_transaction; our reads never write): a
 * demoted or fenced primary. Its session is replaced, so that the next one, with
 * target_session_attrs=read-write in the DSN, finds the primary.
 */
static bool store_pg_read_only_error(void)
{
	return strcmp(store_pg_sqlstate, "25006") == 0;
}

/* Returns c to its pool (ending any transaction left open); a broken one is closed. */
void store_pg_conn_put(struct store_pg *st, struct store_pg_conn *c)
{
	if (c == NULL)
		return;
	if (PQstatus(c->pg) != CONNECTION_OK || store_pg_read_only_error()) {
		/* it broke during the call, or its server takes no writes: the call's
		 * error means "unavailable"; the pooled sessions of the same server are
		 * as old, and are opened anew when next needed */
		store_conn_lost = true;
		bool replica = c->replica;
		store_pg_conn_close(c);
		store_pg_pool_drain(st, replica);
		return;
	}
	if (PQtransactionStatus(c->pg) != PQTRANS_IDLE)
		PQclear(PQexec(c->pg, "ROLLBACK"));
	store_pg_conn_timeout(c, false);
	pthread_mutex_lock(&st->pool_lock);
	size_t *n = c->replica ? &st->nrpool : &st->npool;
	if (*n < STORE_PG_POOL_MAX && PQstatus(c->pg) == CONNECTION_OK) {
		struct store_pg_conn **pool = c->replica ? &st->rpool : &st->pool;
		c->next = *pool;
		*pool = c;
		(*n)++;
		c = NULL;
	}
	pthread_mutex_unlock(&st->pool_lock);
	store_pg_conn_close(c);
}

/* True when the last failure was a deadlock or serialization conflict. */
static bool store_pg_retryable(void)
{
	return strcmp(store_pg_sqlstate, "40001") == 0 || strcmp(store_pg_sqlstate, "40P01") == 0;
}

/*
 * Runs fn(st, conn, arg) in one transaction on a pooled connection: committed
 * when fn returns >= 0 (and then fn's result is returned), rolled back otherwise.
 * A transaction that lost a deadlock or serialization conflict runs again (fn
 * must start from its arguments each time). -EIO when the commit failed.
 */
int store_pg_tx(struct store_pg *st, store_pg_tx_fn fn, void *arg)
{
	struct store_pg_conn *c = NULL;
	int rc = store_pg_conn_take(st, &c); /* a change has no deadline: never cut off */
	if (rc < 0)
		return rc;
	for (int attempt = 0; attempt < STORE_PG_TX_TRIES; attempt++) {
		rc = store_pg_do(c->pg, "begin", "BEGIN", NULL, NULL);
		if (rc == 0) {
			rc = fn(st, c->pg, arg);
			if (rc >= 0) {
				int r = store_pg_do(c->pg, "commit", "COMMIT", NULL, NULL);
				if (r < 0)
					rc = r;
				else
					atomic_fetch_add(&st->commits, 1);
			} else {
				PQclear(PQexec(c->pg, "ROLLBACK"));
			}
		}
		if (rc != -EIO || !store_pg_retryable())
			break;
		if (PQtransactionStatus(c->pg) != PQTRANS_IDLE)
			PQclear(PQexec(c->pg, "ROLLBACK"));
		log_info("store.pg_retry", "attempt=%d sqlstate=%s", attempt + 1,
			 store_pg_sqlstate);
	}
	store_pg_conn_put(st, c);
	return rc;
}

/* --- writing messages --------------------------------------------------- */

static bool store_pg_new_message_valid(const struct store_new_message *m)
{
	if (!ids_valid(m->id) || m->quarantine == NULL || m->quarantine[0] == '\0' ||
	    m->sender == NULL || m->nrecipients == 0 || (m->raw == NULL && m->raw_len > 0))
		return false;
	for (size_t i = 0; i < m->nrecipients; i++) {
		if (m->recipients[i] == NULL || m->recipients[i][0] == '\0')
			return false;
	}
	return true;
}

/*
 * One statement per message: the row, its body, its recipients (a repeated
 * address, in any case, is stored once) and attachments. held and active start
 * at the number of distinct recipients, all quarantined.
 */
static const char sql_pg_insert_message[] =
    "WITH m AS (INSERT INTO messages (id, quarantine, received_at, sender, sender_lc,"
    " sender_domain, from_text, from_addr, from_addr_lc, from_domain, to_text, subject,"
    " message_id, date_ms, size, stored_size, verdict, score, gateway, client_address, held,"
    " active) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,"
    " $17, $18, $19, $20, $21, $21) RETURNING seq),"
    " b AS (INSERT INTO bodies (msg_id, codec, data) SELECT $1, 'zstd', $22 FROM m),"
    " r AS (INSERT INTO recipients (msg_id, address, address_lc, pos, state, updated_at)"
    " SELECT $1, a.address, a.lc, a.pos - 1, 0, $3"
    " FROM unnest($23::text[], $24::text[]) WITH ORDINALITY AS a(address, lc, pos)"
    " ON CONFLICT DO NOTHING),"
    " t AS (INSERT INTO attachments (msg_id, idx, filename, content_type, size)"
    " SELECT $1, a.idx - 1, a.filename, a.content_type, a.size"
    " FROM unnest($25::text[], $26::text[], $27::bigint[]) WITH ORDINALITY"
    " AS a(filename, content_type, size, idx))"
    " SELECT seq FROM m";

/*
 * Writes one message inside the caller's transaction; its memberships go to rows,
 * which the caller writes before it commits. 0, -EINVAL or -EIO.
 */
static int store_pg_insert_message(struct store_pg_conn *wc, struct store_new_message *m,
				   struct store_pg_pvo_rows *rows)
{
	PGconn *c = wc->pg;
	if (!store_pg_new_message_valid(m))
		return -EINVAL;
	/*
	 * A retried PVO transfer: its memberships join the message it repeats,
	 * earlier in this transaction or stored before.
	 */
	char existing[37] = "";
	const char *in_batch = m->nmemberships > 0 ? store_pg_pvo_rows_origin(rows, m) : NULL;
	int rc = 0;
	if (in_batch != NULL)
		snprintf(existing, sizeof(existing), "%s", in_batch);
	else
		rc = store_pg_pvo_existing(c, m, existing);
	if (rc < 0)
		return rc;
	if (existing[0] != '\0') {
		if (m->stored_as != NULL)
			snprintf(m->stored_as, 37, "%s", existing);
		return store_pg_pvo_add(rows, m, existing);
	}
	if (m->stored_as != NULL)
		snprintf(m->stored_as, 37, "%s", m->id);
	rc = store_new_message_prepare(m);
	if (rc < 0)
		return rc;
	/* libpq takes a value's length as an int */
	if (m->packed_len > INT_MAX)
		return -EINVAL;
	struct store_pg_params p = {0};
	char **lcs = xcalloc(m->nrecipients, sizeof(*lcs));
	size_t distinct = 0;
	for (size_t i = 0; i < m->nrecipients; i++) {
		lcs[i] = store_pg_lc(m->recipients[i]);
		bool seen = false;
		for (size_t j = 0; j < i && !seen; j++)
			seen = strcmp(lcs[i], lcs[j]) == 0;
		distinct += seen ? 0 : 1;
	}
	const char **names = xcalloc(m->nattachments + 1, sizeof(*names));
	const char **types = xcalloc(m->nattachments + 1, sizeof(*types));
	char **sizes = xcalloc(m->nattachments + 1, sizeof(*sizes));
	for (size_t i = 0; i < m->nattachments; i++) {
		names[i] = m->attachments[i].filename;
		types[i] = m->attachments[i].content_type;
		sizes[i] = xasprintf("%llu", (unsigned long long)m->attachments[i].size);
	}
	store_pg_text(&p, m->id);
	store_pg_text(&p, m->quarantine);
	store_pg_int(&p, m->received_at);
	store_pg_text(&p, m->sender);
	store_pg_owned(&p, store_pg_lc(m->sender));
	store_pg_owned(&p, store_pg_domain_lc(m->sender));
	store_pg_text(&p, m->from);
	store_pg_text(&p, m->from_addr);
	store_pg_owned(&p, m->from_addr != NULL ? store_pg_lc(m->from_addr) : NULL);
	store_pg_owned(&p, m->from_addr != NULL ? store_pg_domain_lc(m->from_addr) : NULL);
	store_pg_text(&p, m->to);
	store_pg_text(&p, m->subject);
	store_pg_text(&p, m->message_id);
	store_pg_int(&p, m->date_ms);
	store_pg_int(&p, (int64_t)m->raw_len);
	store_pg_int(&p, (int64_t)m->packed_len);
	store_pg_text(&p, m->verdict);
	store_pg_owned(&p, m->has_score ? xasprintf("%.17g", m->score) : NULL);
	store_pg_text(&p, m->gateway);
	store_pg_text(&p, m->client_address);
	store_pg_int(&p, (int64_t)distinct);
	store_pg_bytes(&p, m->packed, m->packed_len);
	store_pg_array(&p, (const char *const *)m->recipients, m->nrecipients);
	store_pg_array(&p, (const char *const *)lcs, m->nrecipients);
	store_pg_array(&p, names, m->nattachments);
	store_pg_array(&p, types, m->nattachments);
	store_pg_array(&p, (const char *const *)sizes, m->nattachments);
	/* prepared once per session: the server plans the statement once, not per message */
	if (!wc->insert_prepared) {
		PGresult *pr =
		    PQprepare(c, "lazaret_insert_message", sql_pg_insert_message, 0, NULL);
		wc->insert_prepared = PQresultStatus(pr) == PGRES_COMMAND_OK;
		if (!wc->insert_prepared) {
			char buf[256];
			log_error("store.pg_error", "op=prepare_insert error=%s",
				  log_quote(buf, sizeof(buf), PQerrorMessage(c)));
		}
		PQclear(pr);
	}
	PGresult *r = NULL;
	if (wc->insert_prepared) {
		r = PQexecPrepared(c, "lazaret_insert_message", p.n, p.v, p.len, p.fmt, 0);
		if (PQresultStatus(r) != PGRES_TUPLES_OK) {
			const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
			snprintf(store_pg_sqlstate, sizeof(store_pg_sqlstate), "%s",
				 state != NULL ? state : "");
			char buf[256];
			log_error("store.pg_error", "op=insert_message sqlstate=%s error=%s",
				  state != NULL ? state : "-",
				  log_quote(buf, sizeof(buf), PQerrorMessage(c)));
			PQclear(r);
			r = NULL;
		}
	}
	rc = r != NULL && PQntuples(r) == 1 ? 0 : -EIO;
	PQclear(r);
	store_pg_params_clear(&p);
	if (rc == 0)
		rc = store_pg_pvo_add(rows, m, m->id);
	for (size_t i = 0; i < m->nrecipients; i++)
		free(lcs[i]);
	free(lcs);
	for (size_t i = 0; i < m->nattachments; i++)
		free(sizes[i]);
	free(sizes);
	free(names);
	free(types);
	return rc;
}

static void store_pg_finish_pending(struct store_pg_pending *p, int rc)
{
	if (rc < 0)
		log_error("store.message_failed", "id=%s error=%d", p->m->id, rc);
	p->done(p->arg, rc);
	store_new_message_free(p->m);
	free(p);
}

/*
 * Takes the owner lock (exclusive: alone on the database, else shared with the
 * other nodes) and, for a node, the lock of its name, for the writer's session,
 * waiting up to wait_ms for a session that is ending: 0, -EBUSY (another store
 * has the database alone, or has this node name), -EIO.
 */
static int store_pg_take_owner(struct store_pg *st, PGconn *c, int64_t wait_ms)
{
	bool got = false;
	struct store_pg_params p = {0};
	store_pg_int(&p, STORE_PG_OWNER_LOCK);
	int rc = store_pg_lock_wait(c, "owner_lock",
				    st->exclusive ? "SELECT pg_try_advisory_lock($1)"
						  : "SELECT pg_try_advisory_lock_shared($1)",
				    &p, wait_ms, &got);
	if (rc < 0)
		return rc;
	if (!got) {
		log_error("store.pg_in_use",
			  "backend=postgresql database=%s"
			  " reason=\"another lazaretd has this database open\"",
			  PQdb(c));
		return -EBUSY;
	}
	return st->exclusive ? 0 : store_pg_node_lock(c, st->node, wait_ms);
}

/*
 * BEGIN, on a connection that works: one whose server went away (a restart, a
 * failover) or refused a write (stale) is replaced by a new session, which takes
 * the owner lock again.
 * -ENOTCONN when the primary cannot be reached (at once while it is down).
 */
static int store_pg_writer_begin(struct store_pg *st)
{
	if (st->wconn->stale || !store_pg_conn_alive(st->wconn->pg)) {
		if (!store_pg_attempt_due(st))
			return -ENOTCONN;
		struct store_pg_conn *c = NULL;
		char err[256];
		if (store_pg_connect(st->dsn, err, sizeof(err), &c) < 0) {
			store_pg_mark_down(st, err);
			return -ENOTCONN;
		}
		store_pg_mark_up(st);
		/* the old session goes first: a stale one is alive and holds the owner
		 * lock, which the new session takes (or, failing that, is replaced in turn:
		 * nothing is written on a session without it) */
		store_pg_conn_close(st->wconn);
		st->wconn = c;
		if (store_pg_take_owner(st, c->pg, STORE_PG_RELOCK_WAIT_MS) < 0) {
			c->stale = true;
			return -EIO;
		}
		log_info("store.writer_reconnected", "backend=postgresql host=%s",
			 PQhost(st->wconn->pg));
	}
	/* held until COMMIT: the digest's upper bound waits for this batch's numbers
	 * (store_pg_digest_max_seq) */
	return store_pg_script(st->wconn->pg, "begin",
			       "BEGIN; SELECT pg_advisory_xact_lock_shared(" STORE_PG_INGEST_LOCK
			       ")");
}

/* A failed write's code: -ENOTCONN when the writer's connection broke under it or
 * its server takes no writes. */
static int store_pg_writer_error(struct store_pg *st, int rc)
{
	if (rc < 0 && rc != -EINVAL && store_pg_read_only_error()) {
		st->wconn->stale = true; /* store_pg_writer_begin replaces it */
		return -ENOTCONN;
	}
	if (rc < 0 && rc != -EINVAL && PQstatus(st->wconn->pg) != CONNECTION_OK)
		return -ENOTCONN;
	return rc;
}

static int store_pg_writer_commit(struct store_pg *st)
{
	if (store_pg_do(st->wconn->pg, "commit", "COMMIT", NULL, NULL) < 0)
		return -EIO;
	atomic_fetch_add(&st->commits, 1);
	return 0;
}

static void store_pg_writer_rollback(struct store_pg *st)
{
	if (PQtransactionStatus(st->wconn->pg) != PQTRANS_IDLE)
		PQclear(PQexec(st->wconn->pg, "ROLLBACK"));
}

/*
 * One group commit: all messages in one transaction, the callbacks only after
 * COMMIT returned. When the batch fails, every message is tried again in its own
 * transaction.
 */
static void store_pg_write_batch(struct store_pg *st, struct store_pg_pending *list, size_t n)
{
	struct store_pg_pvo_rows rows = {0};
	int rc = store_pg_writer_begin(st);
	for (struct store_pg_pending *p = list; rc == 0 && p != NULL; p = p->next)
		rc = store_pg_insert_message(st->wconn, p->m, &rows);
	if (rc == 0)
		rc = store_pg_pvo_flush(st->wconn, &rows);
	if (rc == 0)
		rc = store_pg_writer_commit(st);
	else
		store_pg_writer_rollback(st);
	store_pg_pvo_rows_clear(&rows);
	if (rc == 0) {
		atomic_fetch_add(&st->batches, 1);
		atomic_fetch_add(&st->batched_messages, n);
		while (list != NULL) {
			struct store_pg_pending *next = list->next;
			store_pg_finish_pending(list, 0);
			list = next;
		}
		return;
	}
	if (n > 1)
		log_warn("store.batch_failed", "messages=%zu error=%d retry=single", n, rc);
	while (list != NULL) {
		struct store_pg_pending *next = list->next;
		int r = store_pg_new_message_valid(list->m) ? store_pg_writer_begin(st) : -EINVAL;
		if (r == 0) {
			r = store_pg_insert_message(st->wconn, list->m, &rows);
			if (r == 0)
				r = store_pg_pvo_flush(st->wconn, &rows);
			if (r == 0)
				r = store_pg_writer_commit(st);
			else
				store_pg_writer_rollback(st);
			store_pg_pvo_rows_clear(&rows);
			r = store_pg_writer_error(st, r);
		}
		if (r < 0 && r != -EINVAL && r != -ENOTCONN)
			r = -EIO;
		store_pg_finish_pending(list, r);
		list = next;
	}
}

/*
 * While the database is down and nothing is to be written, the writer still
 * tries once per STORE_PG_RETRY_MS, so that the others (who fail at once) learn
 * it is back: a new connection goes to the pool. Called without st->lock.
 */
static void store_pg_writer_probe(struct store_pg *st)
{
	if (atomic_load(&st->down_since) == 0 || !store_pg_attempt_due(st))
		return;
	struct store_pg_conn *c = NULL;
	char err[256];
	if (store_pg_connect(st->dsn, err, sizeof(err), &c) < 0) {
		store_pg_mark_down(st, err);
		return;
	}
	store_pg_mark_up(st);
	store_pg_conn_put(st, c);
}

/* Waits on st->wake (st->lock held) until work arrives, for at most ms. */
static void store_pg_writer_wait(struct store_pg *st, int64_t ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	long ns = ts.tv_nsec + (long)(ms % 1000) * 1000000L;
	ts.tv_sec += ms / 1000 + ns / 1000000000L;
	ts.tv_nsec = ns % 1000000000L;
	pthread_cond_timedwait(&st->wake, &st->lock, &ts);
}

static void *store_pg_writer_main(void *arg)
{
	struct store_pg *st = arg;
	store_pg_on_writer = true;
	pthread_mutex_lock(&st->lock);
	for (;;) {
		while (!st->stopping && st->pending_head == NULL) {
			if (atomic_load(&st->down_since) == 0) {
				pthread_cond_wait(&st->wake, &st->lock);
				continue;
			}
			store_pg_writer_wait(st, STORE_PG_RETRY_MS);
			if (st->pending_head != NULL || st->stopping)
				break;
			pthread_mutex_unlock(&st->lock);
			store_pg_writer_probe(st);
			pthread_mutex_lock(&st->lock);
		}
		if (st->stopping && st->pending_head == NULL)
			break;
		if (st->batch_wait_us > 0 && !st->stopping && st->npending < st->batch_max) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			long ns = ts.tv_nsec + (long)st->batch_wait_us * 1000L;
			ts.tv_sec += ns / 1000000000L;
			ts.tv_nsec = ns % 1000000000L;
			pthread_cond_timedwait(&st->wake, &st->lock, &ts);
		}
		struct store_pg_pending *batch = st->pending_head, *last = NULL;
		size_t n = 0;
		for (struct store_pg_pending *p = batch; p != NULL && n < st->batch_max;
		     p = p->next) {
			last = p;
			n++;
		}
		st->pending_head = last->next;
		if (st->pending_head == NULL)
			st->pending_tail = NULL;
		last->next = NULL;
		st->npending -= n;
		pthread_mutex_unlock(&st->lock);
		store_pg_write_batch(st, batch, n);
		pthread_mutex_lock(&st->lock);
	}
	pthread_mutex_unlock(&st->lock);
	return NULL;
}

static int store_pg_submit_message(struct store *s, struct store_new_message *m, store_done_fn done,
				   void *arg)
{
	struct store_pg *st = store_pg_of(s);
	struct store_pg_pending *p = xcalloc(1, sizeof(*p));
	p->m = m;
	p->done = done;
	p->arg = arg;
	pthread_mutex_lock(&st->lock);
	if (st->stopping) {
		pthread_mutex_unlock(&st->lock);
		store_new_message_free(m);
		free(p);
		return -ESHUTDOWN;
	}
	if (st->pending_tail != NULL)
		st->pending_tail->next = p;
	else
		st->pending_head = p;
	st->pending_tail = p;
	st->npending++;
	pthread_cond_signal(&st->wake);
	pthread_mutex_unlock(&st->lock);
	return 0;
}

/* --- open / close ------------------------------------------------------- */

/* Tests only: the version store_pg_migrate stops at (0: the newest). */
static int store_pg_migrate_target;

void store_pg_debug_migrate_to(int version)
{
	store_pg_migrate_target = version;
}

/* The version store_pg_migrate brings the schema to. */
static int store_pg_schema_target(void)
{
	int t = store_pg_migrate_target;
	return t > 0 && t < STORE_PG_SCHEMA_VERSION ? t : STORE_PG_SCHEMA_VERSION;
}

/* Brings the schema to STORE_PG_SCHEMA_VERSION, one transaction per migration. */
static int store_pg_migrate(PGconn *c)
{
	for (;;) {
		if (store_pg_do(c, "begin", "BEGIN", NULL, NULL) < 0)
			return -EIO;
		/* one process migrates at a time; the others then find it done */
		struct store_pg_params p = {0};
		store_pg_int(&p, STORE_PG_MIGRATE_LOCK);
		int rc =
		    store_pg_do(c, "migrate_lock", "SELECT pg_advisory_xact_lock($1)", &p, NULL);
		store_pg_params_clear(&p);
		if (rc == 0)
			rc = store_pg_do(c, "migrations_table",
					 "CREATE TABLE IF NOT EXISTS store_migrations ("
					 " version integer PRIMARY KEY,"
					 " applied_at timestamptz NOT NULL DEFAULT now())",
					 NULL, NULL);
		PGresult *r = NULL;
		if (rc == 0 &&
		    (r = store_pg_exec(c, "schema_version",
				       "SELECT coalesce(max(version), 0) FROM store_migrations",
				       NULL, false)) == NULL)
			rc = -EIO;
		int version = r != NULL ? (int)store_pg_i64(r, 0, 0) : 0;
		PQclear(r);
		if (rc == 0 && version > STORE_PG_SCHEMA_VERSION) {
			log_error("store.schema_too_new",
				  "backend=postgresql version=%d supported=%d", version,
				  STORE_PG_SCHEMA_VERSION);
			rc = -EPROTO;
		}
		if (rc == 0 && version >= store_pg_schema_target())
			return store_pg_do(c, "commit", "COMMIT", NULL, NULL);
		if (rc == 0)
			rc = store_pg_script(c, "migrate", store_pg_migrations[version]);
		if (rc == 0) {
			store_pg_int(&p, version + 1);
			rc = store_pg_do(c, "migrated",
					 "INSERT INTO store_migrations (version) VALUES ($1)", &p,
					 NULL);
			store_pg_params_clear(&p);
		}
		if (rc == 0)
			rc = store_pg_do(c, "commit", "COMMIT", NULL, NULL);
		if (rc < 0) {
			PQclear(PQexec(c, "ROLLBACK"));
			return rc;
		}
		log_info("store.migrated", "backend=postgresql version=%d", version + 1);
	}
}

static void store_pg_close(struct store *s)
{
	struct store_pg *st = store_pg_of(s);
	pthread_mutex_lock(&st->lock);
	st->stopping = true;
	pthread_cond_signal(&st->wake);
	pthread_mutex_unlock(&st->lock);
	if (st->writer_started)
		pthread_join(st->writer, NULL);
	store_pg_cluster_close(st->cluster);
	while (st->pool != NULL) {
		struct store_pg_conn *c = st->pool;
		st->pool = c->next;
		store_pg_conn_close(c);
	}
	while (st->rpool != NULL) {
		struct store_pg_conn *c = st->rpool;
		st->rpool = c->next;
		store_pg_conn_close(c);
	}
	store_pg_conn_close(st->wconn);
	pthread_mutex_destroy(&st->lock);
	pthread_cond_destroy(&st->wake);
	pthread_mutex_destroy(&st->pool_lock);
	free(st->dsn);
	free(st->node);
	free(st->read_dsn);
	free(st);
}

/*
 * The writer's first connection. A server that does not answer (PQping: no
 * response, or rejecting while it starts or recovers) is waited for up to
 * connect_wait_ms, logging store.waiting; one that answers but refuses us (role,
 * password, database, pg_hba.conf) fails at once: waiting would not help.
 * 0, -ENOTCONN (not up in time) or -EACCES (refused).
 */
static int store_pg_connect_first(struct store_pg *st)
{
	int64_t start = clock_mono_ms();
	for (unsigned attempt = 1;; attempt++) {
		char err[256], buf[256];
		if (store_pg_connect(st->dsn, err, sizeof(err), &st->wconn) == 0)
			return 0;
		const char *keys[] = {"connect_timeout", "dbname", NULL};
		const char *vals[] = {STORE_PG_CONNECT_TIMEOUT, st->dsn, NULL};
		PGPing ping = PQpingParams(keys, vals, 1);
		bool down = ping == PQPING_NO_RESPONSE || ping == PQPING_REJECT;
		int64_t waited = clock_mono_ms() - start;
		if (!down || waited >= st->connect_wait_ms) {
			log_error("store.open_failed",
				  "backend=postgresql error=%s waited_ms=%lld reason=\"%s\"",
				  log_quote(buf, sizeof(buf), err), (long long)waited,
				  down ? "the server did not answer within [store] connect_wait"
				       : "the server refused the connection: check the role, its "
					 "password, the database name and pg_hba.conf");
			return down ? -ENOTCONN : -EACCES;
		}
		log_warn(
		    "store.waiting",
		    "backend=postgresql attempt=%u waited_ms=%lld connect_wait_ms=%lld error=%s",
		    attempt, (long long)waited, (long long)st->connect_wait_ms,
		    log_quote(buf, sizeof(buf), err));
		int64_t step = st->connect_wait_ms - waited;
		if (step > STORE_PG_WAIT_STEP_MS)
			step = STORE_PG_WAIT_STEP_MS;
		struct timespec ts = {step / 1000, (step % 1000) * 1000000L};
		nanosleep(&ts, NULL);
	}
}

int store_pg_open(const struct store_options *opt, struct store **out)
{
	char node[STORE_NODE_NAME_MAX + 1];
	if (opt->dsn == NULL || opt->dsn[0] == '\0' || opt->batch_max > STORE_PG_BATCH_MAX_LIMIT ||
	    store_node_name_of(opt, node) < 0)
		return -EINVAL;
	struct store_pg *st = xcalloc(1, sizeof(*st));
	st->head.ops = &store_pg_ops;
	st->dsn = xstrdup(opt->dsn);
	st->node = xstrdup(node);
	st->exclusive = opt->exclusive;
	st->read_dsn =
	    opt->read_dsn != NULL && opt->read_dsn[0] != '\0' ? xstrdup(opt->read_dsn) : NULL;
	st->connect_wait_ms = opt->connect_wait_ms > 0 ? opt->connect_wait_ms : 0;
	st->batch_max = opt->batch_max > 0 ? opt->batch_max : STORE_PG_BATCH_MAX_DEFAULT;
	st->batch_wait_us = opt->batch_wait_us;
	pthread_mutex_init(&st->lock, NULL);
	pthread_cond_init(&st->wake, NULL);
	pthread_mutex_init(&st->pool_lock, NULL);
	int rc = store_pg_connect_first(st);
	if (rc < 0)
		goto fail;
	if ((rc = store_pg_take_owner(st, st->wconn->pg, STORE_PG_OWNER_WAIT_MS)) < 0 ||
	    (rc = store_pg_migrate(st->wconn->pg)) < 0)
		goto fail;
	/* (a test's older schema, store_pg_debug_migrate_to, has no nodes table: such
	 * a store is only opened, written with SQL and closed) */
	if (store_pg_schema_target() == STORE_PG_SCHEMA_VERSION &&
	    (rc = store_pg_cluster_open(st, st->node, st->exclusive, &st->cluster)) < 0)
		goto fail;
	/*
	 * Today and the days ahead exist before the first message arrives. Not
	 * fatal: a day that cannot be made (its ids already in DEFAULT) is logged,
	 * and its messages are stored in DEFAULT meanwhile.
	 */
	int64_t now = clock_now_ms();
	if (store_pg_schema_target() == STORE_PG_SCHEMA_VERSION &&
	    store_pg_partitions_ensure(st->wconn->pg, now,
				       now + STORE_PG_PARTITION_AHEAD_DAYS * 86400000LL, NULL) < 0)
		log_error("store.partitions_failed",
			  "backend=postgresql"
			  " reason=\"days ahead not created: see store_maintain\"");
	if (pthread_create(&st->writer, NULL, store_pg_writer_main, st) != 0) {
		rc = -EAGAIN;
		goto fail;
	}
	st->writer_started = true;
	char q[STORE_NODE_NAME_MAX + 8];
	log_info("store.open",
		 "backend=postgresql database=%s host=%s schema=%d batch_max=%u node=%s"
		 " read_replica=%s",
		 PQdb(st->wconn->pg), PQhost(st->wconn->pg), STORE_PG_SCHEMA_VERSION, st->batch_max,
		 log_quote(q, sizeof(q), st->node), st->read_dsn != NULL ? "yes" : "no");
	*out = (struct store *)(void *)st;
	return 0;
fail:
	store_pg_close((struct store *)(void *)st);
	return rc;
}

static void store_pg_debug_counters(struct store *s, struct store_debug_counters *out)
{
	struct store_pg *st = store_pg_of(s);
	out->commits = atomic_load(&st->commits);
	out->batches = atomic_load(&st->batches);
	out->batched_messages = atomic_load(&st->batched_messages);
}

/* What /healthz and /metrics show: the state kept above, no I/O. */
static void store_pg_status(struct store *s, struct store_status *out)
{
	struct store_pg *st = store_pg_of(s);
	out->down_since_ms = atomic_load(&st->down_since);
	out->available = out->down_since_ms == 0;
	out->connect_failures = atomic_load(&st->connect_failures);
	out->replica = st->read_dsn != NULL;
	out->replica_available = out->replica && !atomic_load(&st->replica_down);
	out->replica_fallbacks = atomic_load(&st->replica_fallbacks);
}

/* --- reading messages --------------------------------------------------- */

#define STORE_PG_MSG_COLS                                                                          \
	"m.id, m.quarantine, m.received_at, m.sender, m.from_text, m.from_addr, m.to_text,"        \
	" m.subject, m.message_id, m.date_ms, m.size, m.verdict, m.score, m.gateway,"              \
	" m.client_address"

static struct store_message *store_pg_row_message(const PGresult *r, int row)
{
	struct store_message *m = xcalloc(1, sizeof(*m));
	snprintf(m->id, sizeof(m->id), "%s", PQgetvalue(r, row, 0));
	m->quarantine = store_pg_dup(r, row, 1);
	m->received_at = store_pg_i64(r, row, 2);
	m->sender = store_pg_dup(r, row, 3);
	m->from = store_pg_dup(r, row, 4);
	m->from_addr = store_pg_dup(r, row, 5);
	m->to = store_pg_dup(r, row, 6);
	m->subject = store_pg_dup(r, row, 7);
	m->message_id = store_pg_dup(r, row, 8);
	m->date_ms = store_pg_i64(r, row, 9);
	m->size = (uint64_t)store_pg_i64(r, row, 10);
	m->verdict = store_pg_dup(r, row, 11);
	m->has_score = !PQgetisnull(r, row, 12);
	m->score = m->has_score ? strtod(PQgetvalue(r, row, 12), NULL) : 0;
	m->gateway = store_pg_dup(r, row, 13);
	m->client_address = store_pg_dup(r, row, 14);
	return m;
}

int store_pg_read_begin(PGconn *c)
{
	return store_pg_do(c, "begin_read", "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", NULL,
			   NULL);
}

void store_pg_rows_to_messages(PGresult *r, struct store_message **v, size_t n,
			       void (*add)(struct store_message *m, PGresult *r, int k))
{
	int rows = PQntuples(r);
	for (size_t i = 0; i < n; i++) {
		for (int k = 0; k < rows; k++) {
			if (strcmp(PQgetvalue(r, k, 0), v[i]->id) == 0)
				add(v[i], r, k);
		}
	}
}

/* Row k of load_recipients' result, appended to m's recipients. */
static void store_pg_add_recipient(struct store_message *m, PGresult *r, int k)
{
	m->recipients = xreallocarray(m->recipients, m->nrecipients + 1, sizeof(*m->recipients));
	struct store_recipient *rc = &m->recipients[m->nrecipients++];
	rc->address = store_pg_dup(r, k, 1);
	rc->state = (enum store_rcpt_state)store_pg_i64(r, k, 2);
	rc->reply = store_pg_dup(r, k, 3);
	rc->updated_at = store_pg_i64(r, k, 4);
}

/* The recipients of the messages v[0..n), in their envelope order. */
static int store_pg_load_recipients(PGconn *c, struct store_message **v, size_t n)
{
	if (n == 0)
		return 0;
	struct store_pg_params p = {0};
	const char **ids = xcalloc(n, sizeof(*ids));
	for (size_t i = 0; i < n; i++)
		ids[i] = v[i]->id;
	store_pg_array(&p, ids, n);
	free(ids);
	PGresult *r =
	    store_pg_exec(c, "load_recipients",
			  "SELECT msg_id, address, state, reply, updated_at FROM recipients"
			  " WHERE msg_id = ANY($1::text[]) ORDER BY msg_id, pos",
			  &p, false);
	store_pg_params_clear(&p);
	if (r == NULL)
		return -EIO;
	store_pg_rows_to_messages(r, v, n, store_pg_add_recipient);
	PQclear(r);
	return 0;
}

static int store_pg_load_attachments(PGconn *c, struct store_message *m)
{
	struct store_pg_params p = {0};
	store_pg_text(&p, m->id);
	PGresult *r = store_pg_exec(c, "load_attachments",
				    "SELECT filename, content_type, size FROM attachments"
				    " WHERE msg_id = $1 ORDER BY idx",
				    &p, false);
	store_pg_params_clear(&p);
	if (r == NULL)
		return -EIO;
	int rows = PQntuples(r);
	m->attachments = rows > 0 ? xcalloc((size_t)rows, sizeof(*m->attachments)) : NULL;
	for (int k = 0; k < rows; k++) {
		m->attachments[k].filename = store_pg_dup(r, k, 0);
		m->attachments[k].content_type = store_pg_dup(r, k, 1);
		m->attachments[k].size = (uint64_t)store_pg_i64(r, k, 2);
	}
	m->nattachments = (size_t)rows;
	PQclear(r);
	return 0;
}

static int store_pg_get(struct store *s, const char *id, struct store_message **out)
{
	struct store_pg *st = store_pg_of(s);
	if (!ids_valid(id))
		return -ENOENT;
	struct store_pg_conn *c = NULL;
	struct store_message *m = NULL;
	int rc = store_pg_conn_get(st, &c);
	if (rc < 0)
		return rc;
	if ((rc = store_pg_read_begin(c->pg)) < 0)
		goto fail;
	struct store_pg_params p = {0};
	store_pg_text(&p, id);
	PGresult *r = store_pg_exec(c->pg, "get",
				    "SELECT " STORE_PG_MSG_COLS " FROM messages m WHERE m.id = $1",
				    &p, false);
	store_pg_params_clear(&p);
	rc = -EIO;
	if (r == NULL)
		goto fail;
	if (PQntuples(r) == 1)
		m = store_pg_row_message(r, 0);
	PQclear(r);
	rc = -ENOENT;
	if (m == NULL)
		goto fail;
	if ((rc = store_pg_load_recipients(c->pg, &m, 1)) < 0 ||
	    (rc = store_pg_load_attachments(c->pg, m)) < 0 ||
	    (rc = store_pg_pvo_load(c->pg, &m, 1)) < 0)
		goto fail;
	*out = m;
	m = NULL;
	rc = 0;
fail:
	store_message_free(m);
	store_pg_conn_put(st, c);
	return rc;
}

/* A big-endian 64-bit integer from a binary result. */
static int64_t store_pg_be64(const char *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | (unsigned char)p[i];
	return (int64_t)v;
}

static int store_pg_get_raw(struct store *s, const char *id, unsigned char **raw, size_t *len)
{
	struct store_pg *st = store_pg_of(s);
	if (!ids_valid(id))
		return -ENOENT;
	struct store_pg_conn *c = NULL;
	int rc = store_pg_conn_get(st, &c);
	if (rc < 0)
		return rc;
	struct store_pg_params p = {0};
	store_pg_text(&p, id);
	/* binary results: the body arrives as its bytes, not as hex text */
	PGresult *r = store_pg_exec(c->pg, "get_raw",
				    "SELECT b.codec, b.data, m.size FROM messages m"
				    " JOIN bodies b ON b.msg_id = m.id WHERE m.id = $1",
				    &p, true);
	store_pg_params_clear(&p);
	rc = -EIO;
	if (r == NULL)
		goto fail;
	if (PQntuples(r) != 1) {
		rc = -ENOENT;
		goto fail;
	}
	if (PQgetlength(r, 0, 2) != 8) {
		log_error("store.body_corrupt", "id=%s size=?", id);
		goto fail;
	}
	char *codec = xstrndup(PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
	int64_t size = store_pg_be64(PQgetvalue(r, 0, 2));
	unsigned char *buf = NULL;
	rc = store_body_unpack(id, codec, PQgetvalue(r, 0, 1), (size_t)PQgetlength(r, 0, 1),
			       (uint64_t)(size < 0 ? 0 : size), &buf);
	free(codec);
	if (rc == 0) {
		*raw = buf;
		*len = (size_t)size;
	}
fail:
	PQclear(r);
	store_pg_conn_put(st, c);
	return rc;
}

/* --- listing ------------------------------------------------------------ */

/* A LIKE pattern matching s anywhere (backslash escapes, LIKE's default). */
static char *store_pg_like_pattern(const char *s)
{
	struct strbuf b = STRBUF_INIT;
	strbuf_addc(&b, '%');
	for (; *s != '\0'; s++) {
		if (*s == '%' || *s == '_' || *s == '\\')
			strbuf_addc(&b, '\\');
		strbuf_addc(&b, *s);
	}
	strbuf_addc(&b, '%');
	return strbuf_take(&b);
}

/* The greatest millisecond time a UUIDv7 holds (48 bits). */
#define STORE_PG_ID_MS_MAX (((int64_t)1 << 48) - 1)
/* Subject terms of fewer characters go to messages_subject_short (migration 6). */
#define STORE_PG_TRGM_MIN_CHARS 3

/* How far received_at strays from the time in the id (list_order, migration 6). */
struct store_pg_order {
	int64_t id_ahead;  /* max(time in the id - received_at), >= 0 */
	int64_t id_behind; /* max(received_at - time in the id), >= 0 */
};

/*
 * Reads list_order into *o on c, inside the caller's transaction so that the
 * query after it sees the rows the bounds were taken for. 0 or -EIO.
 */
static int store_pg_order_read(PGconn *c, struct store_pg_order *o)
{
	PGresult *r = store_pg_exec(c, "list_order", "SELECT id_ahead, id_behind FROM list_order",
				    NULL, false);
	if (r == NULL)
		return -EIO;
	/* no row (cannot happen after migration 6): no bound at all */
	o->id_ahead = PQntuples(r) == 1 ? store_pg_i64(r, 0, 0) : STORE_PG_ID_MS_MAX;
	o->id_behind = PQntuples(r) == 1 ? store_pg_i64(r, 0, 1) : STORE_PG_ID_MS_MAX;
	PQclear(r);
	return 0;
}

/*
 * The smallest id text whose time is ms ("0190f5c2-8b1e", what
 * lazaret_uuidv7_floor gives): id >= prefix exactly when the id's time >= ms.
 */
static char *store_pg_id_prefix(int64_t ms)
{
	uint64_t t = (uint64_t)(ms < 0 ? 0 : ms > STORE_PG_ID_MS_MAX ? STORE_PG_ID_MS_MAX : ms);
	return xasprintf("%08llx-%04llx", (unsigned long long)(t >> 16),
			 (unsigned long long)(t & 0xffff));
}

/* Characters of the UTF-8 text s, as PostgreSQL's length() counts them. */
static size_t store_pg_chars(const char *s)
{
	size_t n = 0;
	for (; *s != '\0'; s++)
		n += ((unsigned char)*s & 0xc0) != 0x80;
	return n;
}

/* Whether f names recipients: such a listing is driven by their index. */
static bool store_pg_by_recipient(const struct store_filter *f)
{
	return f != NULL &&
	       ((f->recipient != NULL && f->recipient[0] != '\0') || f->addresses != NULL);
}

/*
 * Appends " AND ..." terms bounding the ids in col (m.id or r.msg_id) to q and
 * their values to p: the keyset cursor, and with o (NULL: not read) the range
 * of ids a time range of f means. received_at in [since, until) means the id's
 * time is in [since - id_behind, until + id_ahead): a range of ids, which
 * prunes the daily partitions and lets the id order be walked; received_at is
 * still checked on each row.
 */
static void store_pg_id_bounds_sql(const struct store_filter *f, const char *cursor,
				   const struct store_pg_order *o, const char *col,
				   struct strbuf *q, struct store_pg_params *p)
{
	if (o != NULL && f->since != 0 && f->since > o->id_behind)
		strbuf_printf(q, " AND %s >= $%d", col,
			      store_pg_owned(p, store_pg_id_prefix(f->since - o->id_behind)));
	if (o != NULL && f->until != 0 && f->until <= STORE_PG_ID_MS_MAX - o->id_ahead)
		strbuf_printf(q, " AND %s < $%d", col,
			      store_pg_owned(p, store_pg_id_prefix(f->until + o->id_ahead)));
	if (cursor != NULL)
		strbuf_printf(q, " AND %s < $%d", col, store_pg_text(p, cursor));
}

/* Appends the terms of f on recipients r (recipient, addresses, state). */
static void store_pg_rcpt_sql(const struct store_filter *f, int state, struct strbuf *q,
			      struct store_pg_params *p)
{
	if (f->recipient != NULL && f->recipient[0] != '\0')
		strbuf_printf(q, " AND r.address_lc = $%d",
			      store_pg_owned(p, store_pg_lc(f->recipient)));
	if (f->addresses != NULL && f->naddresses == 1) {
		/* one address walks its index rows in id order, across the days, and
		 * stops at the page however many messages it has; ANY sorts them all */
		strbuf_printf(q, " AND r.address_lc = $%d",
			      store_pg_owned(p, store_pg_lc(f->addresses[0])));
	} else if (f->addresses != NULL) {
		char **lcs = xcalloc(f->naddresses + 1, sizeof(*lcs));
		for (size_t i = 0; i < f->naddresses; i++)
			lcs[i] = store_pg_lc(f->addresses[i]);
		strbuf_printf(q, " AND r.address_lc = ANY($%d::text[])",
			      store_pg_array(p, (const char *const *)lcs, f->naddresses));
		for (size_t i = 0; i < f->naddresses; i++)
			free(lcs[i]);
		free(lcs);
	}
	if (state >= 0)
		strbuf_printf(q, " AND r.state = $%d", store_pg_int(p, state));
}

/*
 * Appends the terms of f on messages m, but for its recipients when by_rcpt
 * (store_pg_rcpt_sql has them): the meaning of store_filter, as store_sqlite.c
 * gives it.
 */
static void store_pg_msg_sql(const struct store_filter *f, int state, bool by_rcpt,
			     struct strbuf *q, struct store_pg_params *p)
{
	if (f->ids != NULL) {
		const char **ids = xcalloc(f->nids + 1, sizeof(*ids));
		for (size_t i = 0; i < f->nids; i++)
			ids[i] = f->ids[i] != NULL ? f->ids[i] : "";
		strbuf_printf(q, " AND m.id = ANY($%d::text[])", store_pg_array(p, ids, f->nids));
		free(ids);
	}
	/* by recipient, store_pg_rcpt_sql has the state */
	if (!by_rcpt && state == STORE_RCPT_QUARANTINED)
		strbuf_puts(q, " AND m.held > 0");
	else if (!by_rcpt && state >= 0)
		strbuf_printf(q,
			      " AND EXISTS (SELECT 1 FROM recipients r"
			      " WHERE r.msg_id = m.id AND r.state = $%d)",
			      store_pg_int(p, state));
	if (f->sender != NULL && f->sender[0] != '\0') {
		const char *at = strchr(f->sender, '@');
		if (at != NULL && at != f->sender) {
			/* an address: the envelope sender or the From: address */
			int k = store_pg_owned(p, store_pg_lc(f->sender));
			strbuf_printf(q, " AND (m.sender_lc = $%d OR m.from_addr_lc = $%d)", k, k);
		} else {
			/* a domain, "x.jp" or "@x.jp" */
			int k = store_pg_owned(p, store_pg_lc(at != NULL ? at + 1 : f->sender));
			strbuf_printf(q, " AND (m.sender_domain = $%d OR m.from_domain = $%d)", k,
				      k);
		}
	}
	if (f->subject != NULL && f->subject[0] != '\0') {
		/* the trigram index answers ILIKE for 3+ characters; shorter terms
		 * have their grams' index (migration 6), ILIKE checks its rows */
		if (store_pg_chars(f->subject) < STORE_PG_TRGM_MIN_CHARS)
			strbuf_printf(
			    q, " AND lazaret_short_grams(m.subject) @> ARRAY[lower($%d::text)]",
			    store_pg_text(p, f->subject));
		strbuf_printf(q, " AND m.subject ILIKE $%d",
			      store_pg_owned(p, store_pg_like_pattern(f->subject)));
	}
	if (f->since != 0)
		strbuf_printf(q, " AND m.received_at >= $%d", store_pg_int(p, f->since));
	if (f->until != 0)
		strbuf_printf(q, " AND m.received_at < $%d", store_pg_int(p, f->until));
	if (f->quarantine != NULL && strcmp(f->quarantine, "spam") == 0) {
		strbuf_printf(q, " AND m.quarantine = $%d", store_pg_text(p, f->quarantine));
	} else if (f->quarantine != NULL) {
		/* a gateway's local quarantine, or a PVO one through its memberships */
		int k = store_pg_text(p, f->quarantine);
		strbuf_printf(q,
			      " AND (m.quarantine = $%d OR m.id IN (SELECT w.msg_id"
			      " FROM memberships w WHERE w.quarantine = $%d))",
			      k, k);
	}
	if (f->verdict != NULL)
		strbuf_printf(q, " AND m.verdict = $%d", store_pg_text(p, f->verdict));
	if (f->gateway != NULL)
		strbuf_printf(q, " AND m.gateway = $%d", store_pg_text(p, f->gateway));
	if (f->exclude_pvo)
		strbuf_puts(q, " AND m.quarantine <> '" STORE_PVO_MARKER "'");
	if (f->scope_pvo && !f->exclude_pvo) {
		/*
		 * An operator's: PVO messages only through a membership in theirs,
		 * looked up by the row's own key (msg_id, quarantine) for the PVO rows
		 * a page walks, not every membership of their quarantines. One array
		 * value whatever their number (none: '{}'), so that the shape, and the
		 * prepared statement, is the same for every operator.
		 */
		const char **names = xcalloc(f->npvo_quarantines + 1, sizeof(*names));
		for (size_t i = 0; i < f->npvo_quarantines; i++)
			names[i] = f->pvo_quarantines[i] != NULL ? f->pvo_quarantines[i] : "";
		strbuf_printf(q,
			      " AND (m.quarantine <> '" STORE_PVO_MARKER "' OR EXISTS"
			      " (SELECT 1 FROM memberships w WHERE w.msg_id = m.id"
			      " AND w.quarantine = ANY($%d::text[])))",
			      store_pg_array(p, names, f->npvo_quarantines));
		free(names);
	}
}

/*
 * "<head> FROM ... ORDER BY <id> DESC LIMIT n" with its values: the messages
 * matching f after the keyset cursor, newest first. 0, or -EINVAL for a filter
 * outside its limits.
 *
 * A listing by recipient (an end user's) walks that recipient's index rows,
 * then looks each message up by id, one day's partition at a time. The plan is
 * fixed by the statement's shape, not left to the statistics: given an ordered
 * walk of every message joined to the recipient's rows, the planner expects
 * the matches spread evenly and stops early, while one user's rows are a
 * thousandth of them, and a second page took 190 ms. The OFFSET 0 keeps the
 * lookup a subquery run per recipient row (PostgreSQL does not flatten it),
 * and the walk stops at the page.
 */
static int store_pg_build_list(const char *head, const struct store_filter *f, const char *cursor,
			       const struct store_pg_order *o, size_t limit, struct strbuf *q,
			       struct store_pg_params *p)
{
	static const struct store_filter none;
	if (f == NULL)
		f = &none;
	int state;
	if (store_filter_check(f, &state) < 0)
		return -EINVAL;
	strbuf_puts(q, head);
	if (!store_pg_by_recipient(f)) {
		strbuf_puts(q, " FROM messages m WHERE true");
		store_pg_msg_sql(f, state, false, q, p);
		store_pg_id_bounds_sql(f, cursor, o, "m.id", q, p);
		strbuf_printf(q, " ORDER BY m.id DESC LIMIT $%d", store_pg_int(p, (int64_t)limit));
		return 0;
	}
	strbuf_puts(q, " FROM (SELECT DISTINCT r.msg_id FROM recipients r WHERE true");
	store_pg_rcpt_sql(f, state, q, p);
	store_pg_id_bounds_sql(f, cursor, o, "r.msg_id", q, p);
	strbuf_puts(q, " ORDER BY r.msg_id DESC) ids CROSS JOIN LATERAL (SELECT * FROM messages m"
		       " WHERE m.id = ids.msg_id");
	store_pg_msg_sql(f, state, true, q, p);
	strbuf_printf(q, " OFFSET 0) m ORDER BY ids.msg_id DESC LIMIT $%d",
		      store_pg_int(p, (int64_t)limit));
	return 0;
}

/*
 * store_pg_build_list on c, inside the caller's read transaction: a time range
 * first reads list_order, so that its bounds hold for the rows the query sees.
 */
static int store_pg_build_list_on(PGconn *c, const char *head, const struct store_filter *f,
				  const char *cursor, size_t limit, struct strbuf *q,
				  struct store_pg_params *p)
{
	struct store_pg_order o;
	bool ranged = f != NULL && (f->since != 0 || f->until != 0);
	if (ranged && store_pg_order_read(c, &o) < 0)
		return -EIO;
	return store_pg_build_list(head, f, cursor, ranged ? &o : NULL, limit, q, p);
}

/*
 * Whether a listing's statement is prepared per session (the plan over every
 * day's partition is made once per shape): all but those with a subject term.
 * A generic plan cannot tell a 1-2 character term from a longer one, and then
 * takes the trigram index for a term it cannot answer (every row of every day:
 * 370 ms at a million messages, against 2 ms planned for the term).
 */
static bool store_pg_list_prepared(const struct store_filter *f)
{
	return f == NULL || f->subject == NULL || f->subject[0] == '\0';
}

static PGresult *store_pg_exec_list(struct store_pg_conn *c, const char *what, const char *sql,
				    const struct store_pg_params *p, const struct store_filter *f)
{
	if (!store_pg_list_prepared(f))
		return store_pg_exec(c->pg, what, sql, p, false);
	return store_pg_exec_prepared(c, what, sql, p);
}

static int store_pg_list(struct store *s, const struct store_filter *f, size_t limit,
			 const char *cursor, struct store_message ***out, size_t *n,
			 char **next_cursor)
{
	struct store_pg *st = store_pg_of(s);
	if (limit < 1 || limit > STORE_PG_LIST_LIMIT_MAX)
		return -EINVAL;
	if (cursor != NULL && !ids_valid(cursor))
		return -EINVAL;
	struct strbuf q = STRBUF_INIT;
	struct store_pg_params p = {0};
	struct store_pg_conn *c = NULL;
	struct store_message **v = NULL;
	PGresult *r = NULL;
	size_t nv = 0;
	int rc;
	if ((rc = store_pg_conn_get(st, &c)) < 0 || (rc = store_pg_read_begin(c->pg)) < 0)
		goto fail;
	/* one row more than asked tells whether there is a next page */
	rc = store_pg_build_list_on(c->pg, "SELECT " STORE_PG_MSG_COLS, f, cursor, limit + 1, &q,
				    &p);
	if (rc < 0)
		goto fail;
	rc = -EIO;
	if ((r = store_pg_exec_list(c, "list", strbuf_str(&q), &p, f)) == NULL)
		goto fail;
	v = xcalloc(limit + 1, sizeof(*v));
	for (int k = 0; k < PQntuples(r); k++)
		v[nv++] = store_pg_row_message(r, k);
	char *next = NULL;
	if (nv > limit) {
		store_message_free(v[limit]);
		v[limit] = NULL;
		nv = limit;
		next = xstrdup(v[limit - 1]->id);
	}
	if ((rc = store_pg_load_recipients(c->pg, v, nv)) < 0 ||
	    (rc = store_pg_pvo_load(c->pg, v, nv)) < 0) {
		free(next);
		goto fail;
	}
	*out = v;
	*n = nv;
	*next_cursor = next;
	v = NULL;
	rc = 0;
fail:
	PQclear(r);
	store_message_array_free(v, nv);
	store_pg_conn_put(st, c);
	store_pg_params_clear(&p);
	strbuf_free(&q);
	return rc;
}

/*
 * The plan a listing runs with: for a prepared one the generic plan (what a
 * session's statement settles on), else the plan for its values.
 */
static int store_pg_debug_list_plan(struct store *s, const struct store_filter *f,
				    const char *cursor, char **plan)
{
	struct store_pg *st = store_pg_of(s);
	struct strbuf q = STRBUF_INIT, e = STRBUF_INIT;
	struct store_pg_params p = {0};
	struct store_pg_conn *c = NULL;
	PGresult *r = NULL;
	bool prepared = store_pg_list_prepared(f), made = false;
	int rc;
	if ((rc = store_pg_conn_get(st, &c)) < 0 || (rc = store_pg_read_begin(c->pg)) < 0 ||
	    (rc = store_pg_build_list_on(c->pg, "SELECT " STORE_PG_MSG_COLS, f, cursor, 51, &q,
					 &p)) < 0)
		goto fail;
	rc = -EIO;
	if (prepared) {
		if (store_pg_do(c->pg, "list_plan",
				"SET LOCAL plan_cache_mode = force_generic_plan", NULL, NULL) < 0)
			goto fail;
		PGresult *pr = PQprepare(c->pg, "lazaret_explain", strbuf_str(&q), 0, NULL);
		if ((pr = store_pg_result(c->pg, "list_plan", pr)) == NULL)
			goto fail;
		PQclear(pr);
		made = true;
		/* EXECUTE's arguments are literals: they are not a statement's $n */
		strbuf_puts(&e, "EXPLAIN EXECUTE lazaret_explain(");
		for (int k = 0; k < p.n; k++) {
			char *lit =
			    p.v[k] == NULL ? NULL : PQescapeLiteral(c->pg, p.v[k], strlen(p.v[k]));
			strbuf_printf(&e, "%s%s", k > 0 ? ", " : "", lit != NULL ? lit : "NULL");
			PQfreemem(lit);
		}
		strbuf_puts(&e, ")");
	} else {
		strbuf_printf(&e, "EXPLAIN %s", strbuf_str(&q));
	}
	if ((r = store_pg_exec(c->pg, "list_plan", strbuf_str(&e), prepared ? NULL : &p, false)) ==
	    NULL)
		goto fail;
	struct strbuf b = STRBUF_INIT;
	strbuf_puts(&b, "");
	for (int k = 0; k < PQntuples(r); k++) {
		strbuf_puts(&b, PQgetvalue(r, k, 0));
		strbuf_addc(&b, '\n');
	}
	*plan = strbuf_take(&b);
	rc = 0;
fail:
	PQclear(r);
	if (made)
		store_pg_do(c->pg, "list_plan", "DEALLOCATE lazaret_explain", NULL, NULL);
	store_pg_conn_put(st, c);
	store_pg_params_clear(&p);
	strbuf_free(&q);
	strbuf_free(&e);
	return rc;
}

/* Up to limit ids matching f after cursor, newest first (bulk actions page with it). */
int store_pg_list_ids(struct store *s, const struct store_filter *f, const char *cursor,
		      size_t limit, char ***out, size_t *n)
{
	struct store_pg *st = store_pg_of(s);
	struct strbuf q = STRBUF_INIT;
	struct store_pg_params p = {0};
	struct store_pg_conn *c = NULL;
	PGresult *r = NULL;
	int rc;
	if ((rc = store_pg_conn_get(st, &c)) < 0 || (rc = store_pg_read_begin(c->pg)) < 0 ||
	    (rc = store_pg_build_list_on(c->pg, "SELECT m.id", f, cursor, limit, &q, &p)) < 0)
		goto fail;
	rc = -EIO;
	if ((r = store_pg_exec_list(c, "list_ids", strbuf_str(&q), &p, f)) == NULL)
		goto fail;
	size_t rows = (size_t)PQntuples(r);
	char **v = xcalloc(rows + 1, sizeof(*v));
	for (size_t k = 0; k < rows; k++)
		v[k] = xstrdup(PQgetvalue(r, (int)k, 0));
	*out = v;
	*n = rows;
	rc = 0;
fail:
	PQclear(r);
	store_pg_conn_put(st, c);
	store_pg_params_clear(&p);
	strbuf_free(&q);
	return rc;
}

static int store_pg_quarantines(struct store *s, struct store_quarantine_stats **out, size_t *n)
{
	struct store_pg *st = store_pg_of(s);
	struct store_pg_conn *c = NULL;
	int rc = store_pg_conn_get(st, &c);
	if (rc < 0)
		return rc;
	/* the counters count messages stored into a quarantine (spam, a gateway's
	 * local ones); PVO messages count in theirs through held memberships */
	PGresult *r = store_pg_exec(
	    c->pg, "quarantines",
	    "SELECT q.name, q.type, q.messages + coalesce(x.n, 0), q.bytes + coalesce(x.b, 0),"
	    " least((SELECT min(received_at) FROM messages"
	    "  WHERE quarantine = q.name AND held > 0), x.oldest),"
	    " coalesce(q.delete_after, 0), q.default_action, q.overflow_exempt::int,"
	    " (q.name = q.type)::int"
	    " FROM quarantines q LEFT JOIN (SELECT w.quarantine, count(*) AS n, sum(m.size) AS b,"
	    "  min(w.entered_at) AS oldest FROM memberships w JOIN messages m ON m.id = w.msg_id"
	    "  WHERE w.state = 0 GROUP BY w.quarantine) x ON x.quarantine = q.name"
	    " WHERE q.type <> 'pvo' ORDER BY q.name COLLATE \"C\"",
	    NULL, false);
	if (r == NULL) {
		store_pg_conn_put(st, c);
		return -EIO;
	}
	size_t rows = (size_t)PQntuples(r);
	struct store_quarantine_stats *v = xcalloc(rows + 1, sizeof(*v));
	for (size_t k = 0; k < rows; k++) {
		v[k].name = store_pg_dup(r, (int)k, 0);
		v[k].type = store_pg_dup(r, (int)k, 1);
		v[k].messages = (uint64_t)store_pg_i64(r, (int)k, 2);
		v[k].bytes = (uint64_t)store_pg_i64(r, (int)k, 3);
		v[k].oldest = store_pg_i64(r, (int)k, 4); /* NULL reads as 0 */
		v[k].delete_after_ms = store_pg_i64(r, (int)k, 5);
		v[k].default_action = store_pg_dup(r, (int)k, 6);
		v[k].overflow_exempt = store_pg_i64(r, (int)k, 7) != 0;
		v[k].system = store_pg_i64(r, (int)k, 8) != 0;
	}
	PQclear(r);
	int rc2 = store_pg_pvo_operators(c->pg, v, rows);
	store_pg_conn_put(st, c);
	if (rc2 < 0) {
		store_quarantine_stats_free(v, rows);
		return rc2;
	}
	*out = v;
	*n = rows;
	return 0;
}

/* --- recipient state changes -------------------------------------------- */

/* Collects the first column of r into *v (appending). */
void store_pg_collect(const PGresult *r, char ***v, size_t *n)
{
	for (int k = 0; k < PQntuples(r); k++) {
		*v = xreallocarray(*v, *n + 1, sizeof(**v));
		(*v)[(*n)++] = store_pg_dup(r, k, 0);
	}
}

/*
 * Moves the quarantined recipients of message id in rcpts (NULL: all) to state
 * to; a release queues one delivery for the moved ones. strict: an address that is
 * not a recipient is -EINVAL (and nothing changes, as the transaction is rolled
 * back); otherwise it is skipped. Adds the number moved to *changed.
 */
static int store_pg_change_one(PGconn *c, const char *id, const char *const *rcpts, size_t nrcpts,
			       bool strict, enum store_rcpt_state to, int64_t now, int *changed)
{
	char **moved = NULL;
	size_t nmoved = 0;
	struct store_pg_params p = {0};
	int rc = -EIO;
	store_pg_text(&p, id);
	PGresult *r =
	    store_pg_exec(c, "msg_exists", "SELECT 1 FROM messages WHERE id = $1", &p, false);
	store_pg_params_clear(&p);
	if (r == NULL)
		goto fail;
	bool exists = PQntuples(r) == 1;
	PQclear(r);
	if (!exists) {
		rc = -ENOENT;
		goto fail;
	}
	if (rcpts == NULL) {
		store_pg_text(&p, id);
		store_pg_int(&p, (int64_t)to);
		store_pg_int(&p, now);
		r = store_pg_exec(c, "change_all",
				  "WITH u AS (UPDATE recipients SET state = $2, updated_at = $3"
				  " WHERE msg_id = $1 AND state = 0 RETURNING address, pos)"
				  " SELECT address FROM u ORDER BY pos",
				  &p, false);
		store_pg_params_clear(&p);
		if (r == NULL)
			goto fail;
		store_pg_collect(r, &moved, &nmoved);
		PQclear(r);
	}
	for (size_t i = 0; rcpts != NULL && i < nrcpts; i++) {
		store_pg_text(&p, id);
		store_pg_owned(&p, store_pg_lc(rcpts[i]));
		store_pg_int(&p, (int64_t)to);
		store_pg_int(&p, now);
		/* one row: whether the address is a recipient, and whether it moved */
		r = store_pg_exec(c, "change_one",
				  "WITH u AS (UPDATE recipients SET state = $3, updated_at = $4"
				  " WHERE msg_id = $1 AND address_lc = $2 AND state = 0"
				  " RETURNING address)"
				  " SELECT (SELECT address FROM u),"
				  " EXISTS (SELECT 1 FROM recipients WHERE msg_id = $1"
				  " AND address_lc = $2)",
				  &p, false);
		store_pg_params_clear(&p);
		if (r == NULL)
			goto fail;
		bool is_rcpt = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
		if (!PQgetisnull(r, 0, 0)) {
			moved = xreallocarray(moved, nmoved + 1, sizeof(*moved));
			moved[nmoved++] = store_pg_dup(r, 0, 0);
		}
		PQclear(r);
		if (strict && !is_rcpt) {
			rc = -EINVAL;
			goto fail;
		}
	}
	if (to == STORE_RCPT_RELEASING && nmoved > 0) {
		store_pg_text(&p, id);
		store_pg_int(&p, now);
		store_pg_array(&p, (const char *const *)moved, nmoved);
		rc = store_pg_do(c, "insert_delivery",
				 "INSERT INTO deliveries (msg_id, next_attempt_at, rcpts)"
				 " VALUES ($1, $2, $3::text[])",
				 &p, NULL);
		store_pg_params_clear(&p);
		if (rc < 0)
			goto fail;
	}
	*changed += (int)nmoved;
	rc = 0;
fail:
	for (size_t i = 0; i < nmoved; i++)
		free(moved[i]);
	free(moved);
	return rc;
}

struct store_pg_change_args {
	const char *const *ids;
	size_t nids;
	const char *const *rcpts;
	size_t nrcpts;
	bool strict;
	enum store_rcpt_state to;
	int64_t now;
	int changed; /* this transaction's */
	int total;   /* the pages' so far (bulk) */
};

static int store_pg_change_tx(struct store_pg *st, PGconn *c, void *arg)
{
	struct store_pg_change_args *a = arg;
	a->changed = 0;
	for (size_t i = 0; i < a->nids; i++) {
		int rc = store_pg_change_one(c, a->ids[i], a->rcpts, a->nrcpts, a->strict, a->to,
					     a->now, &a->changed);
		/* a message purged between listing and this change is no error in bulk */
		if (rc == -ENOENT && !a->strict)
			continue;
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int store_pg_change(struct store_pg *st, const char *id, const char *const *rcpts,
			   size_t nrcpts, enum store_rcpt_state to, int64_t now, int *changed)
{
	if (!ids_valid(id))
		return -ENOENT;
	struct store_pg_change_args a = {
	    .ids = &id,
	    .nids = 1,
	    .rcpts = rcpts,
	    .nrcpts = nrcpts,
	    .strict = true,
	    .to = to,
	    .now = now,
	};
	int rc = store_pg_tx(st, store_pg_change_tx, &a);
	if (changed != NULL)
		*changed = rc == 0 ? a.changed : 0;
	return rc;
}

static int store_pg_release(struct store *s, const char *id, const char *const *rcpts,
			    size_t nrcpts, int64_t now, int *changed)
{
	return store_pg_change(store_pg_of(s), id, rcpts, nrcpts, STORE_RCPT_RELEASING, now,
			       changed);
}

static int store_pg_delete(struct store *s, const char *id, const char *const *rcpts, size_t nrcpts,
			   int64_t now, int *changed)
{
	return store_pg_change(store_pg_of(s), id, rcpts, nrcpts, STORE_RCPT_DELETED, now, changed);
}

/* One page of a bulk change: its own transaction. */
static int store_pg_change_page(struct store *s, const char *const *ids, size_t n, void *arg)
{
	struct store_pg_change_args *a = arg;
	a->ids = ids;
	a->nids = n;
	int rc = store_pg_tx(store_pg_of(s), store_pg_change_tx, a);
	a->total += a->changed;
	return rc;
}

/*
 * Bulk change: pages through the matching messages that still have a quarantined
 * recipient in scope, one transaction per page (as the SQLite backend).
 */
static int store_pg_change_matching(struct store *s, const struct store_filter *f,
				    enum store_rcpt_state to, int64_t now, int *changed)
{
	static const struct store_filter none;
	if (f == NULL)
		f = &none;
	if (changed != NULL)
		*changed = 0;
	if (f->state != NULL && f->state[0] != '\0' && strcmp(f->state, "quarantined") != 0) {
		enum store_rcpt_state state;
		return store_rcpt_state_parse(f->state, &state); /* nothing else can change */
	}
	struct store_filter q = *f;
	q.state = "quarantined";
	const char *one[1];
	struct store_pg_change_args a = {.strict = false, .to = to, .now = now};
	if (!store_change_scope(f, one, &a.rcpts, &a.nrcpts))
		return 0;
	int rc = store_each_id_page(s, &q, STORE_PG_MAINT_BATCH_DEFAULT, store_pg_list_ids,
				    store_pg_change_page, &a);
	if (changed != NULL)
		*changed = a.total;
	return rc;
}

static int store_pg_release_matching(struct store *s, const struct store_filter *f, int64_t now,
				     int *changed)
{
	return store_pg_change_matching(s, f, STORE_RCPT_RELEASING, now, changed);
}

static int store_pg_delete_matching(struct store *s, const struct store_filter *f, int64_t now,
				    int *changed)
{
	return store_pg_change_matching(s, f, STORE_RCPT_DELETED, now, changed);
}

/* --- deliveries --------------------------------------------------------- */

/* The recipients of delivery job_id, in their order, into *out. */
static int store_pg_job_rcpts(PGconn *c, int64_t job_id, char ***out, size_t *n)
{
	struct store_pg_params p = {0};
	store_pg_int(&p, job_id);
	PGresult *r = store_pg_exec(c, "job_rcpts",
				    "SELECT a.r FROM deliveries d, unnest(d.rcpts)"
				    " WITH ORDINALITY AS a(r, k) WHERE d.job_id = $1 ORDER BY a.k",
				    &p, false);
	store_pg_params_clear(&p);
	if (r == NULL)
		return -EIO;
	*out = NULL;
	*n = 0;
	store_pg_collect(r, out, n);
	PQclear(r);
	return 0;
}

struct store_pg_claim_args {
	int64_t now;
	int64_t lease_ms;
	struct store_delivery *d;
};

/*
 * The delivery due first, leased in the same statement. SKIP LOCKED: a job
 * another transaction is claiming or finishing right now is not waited for; the
 * next one due is taken instead (several claimers, or several lazaretd, never
 * get the same job).
 */
static int store_pg_claim_tx(struct store_pg *st, PGconn *c, void *arg)
{
	struct store_pg_claim_args *a = arg;
	struct store_pg_params p = {0};
	store_pg_int(&p, a->now);
	store_pg_int(&p, a->now + a->lease_ms);
	store_pg_text(&p, st->node);
	/* due again when the lease runs out: the claimer died (a node that restarts
	 * takes back its own leases at once: store_pg_delivery_reset_leases) */
	PGresult *r =
	    store_pg_exec(c, "claim",
			  "WITH pick AS (SELECT job_id FROM deliveries WHERE next_attempt_at <= $1"
			  " ORDER BY next_attempt_at, job_id LIMIT 1 FOR UPDATE SKIP LOCKED)"
			  " UPDATE deliveries d SET next_attempt_at = $2, leased = true,"
			  " leased_by = $3,"
			  " first_attempt_at = coalesce(d.first_attempt_at, $1) FROM pick"
			  " WHERE d.job_id = pick.job_id"
			  " RETURNING d.job_id, d.msg_id, d.attempts, d.first_attempt_at,"
			  " (SELECT sender FROM messages m WHERE m.id = d.msg_id),"
			  " d.gateway, d.rescan, d.copy",
			  &p, false);
	store_pg_params_clear(&p);
	if (r == NULL)
		return -EIO;
	if (PQntuples(r) == 0) {
		PQclear(r);
		return -EAGAIN;
	}
	struct store_delivery *d = xcalloc(1, sizeof(*d));
	d->job_id = store_pg_i64(r, 0, 0);
	snprintf(d->msg_id, sizeof(d->msg_id), "%s", PQgetvalue(r, 0, 1));
	d->attempts = (unsigned)store_pg_i64(r, 0, 2);
	d->first_attempt_at = store_pg_i64(r, 0, 3);
	d->sender = store_pg_dup(r, 0, 4);
	d->gateway = store_pg_dup(r, 0, 5);
	d->rescan = strcmp(PQgetvalue(r, 0, 6), "t") == 0;
	d->copy = strcmp(PQgetvalue(r, 0, 7), "t") == 0;
	PQclear(r);
	int rc = store_pg_job_rcpts(c, d->job_id, &d->rcpts, &d->nrcpts);
	if (rc < 0) {
		store_delivery_free(d);
		return rc;
	}
	a->d = d;
	return 0;
}

static int store_pg_delivery_claim(struct store *s, int64_t now, int64_t lease_ms,
				   struct store_delivery **out)
{
	if (lease_ms < 0)
		return -EINVAL;
	struct store_pg_claim_args a = {.now = now, .lease_ms = lease_ms};
	int rc = store_pg_tx(store_pg_of(s), store_pg_claim_tx, &a);
	if (rc == 0)
		*out = a.d;
	return rc;
}

struct store_pg_finish_args {
	int64_t job_id;
	const struct store_delivery_result *results;
	size_t nresults;
	int64_t now;
	int64_t retry_at;
	bool confirm; /* store_delivery_confirm: final outcomes only, the attempt goes on */
	const struct store_rescan_verdict *rescan; /* the gateway's verdict, or NULL */
};

static int store_pg_finish_tx(struct store_pg *st, PGconn *c, void *arg)
{
	struct store_pg_finish_args *a = arg;
	struct store_pg_params p = {0};
	char *msg_id = NULL;
	char **rcpts = NULL;
	const char **left = NULL;
	size_t nrcpts = 0, nleft = 0, ndelivered = 0;
	/* kept: the recipients the gateway took are held again, not released */
	bool kept = a->rescan != NULL && a->rescan->state == STORE_RESCAN_KEPT;
	int rc = -EIO;
	/* the job's row lock: a concurrent finish of the same job waits for this one */
	store_pg_int(&p, a->job_id);
	PGresult *r = store_pg_exec(
	    c, "finish_job", "SELECT msg_id, copy FROM deliveries WHERE job_id = $1 FOR UPDATE", &p,
	    false);
	store_pg_params_clear(&p);
	if (r == NULL)
		return -EIO;
	if (PQntuples(r) == 0) {
		PQclear(r);
		return -ENOENT;
	}
	msg_id = store_pg_dup(r, 0, 0);
	/* a copy's addresses are no recipients: no state to record */
	bool copy = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
	PQclear(r);
	if ((rc = store_pg_job_rcpts(c, a->job_id, &rcpts, &nrcpts)) < 0)
		goto fail;
	left = xcalloc(nrcpts + 1, sizeof(*left));
	for (size_t i = 0; i < nrcpts; i++) {
		const struct store_delivery_result *res = NULL;
		for (size_t j = 0; j < a->nresults && res == NULL; j++) {
			if (a->results[j].rcpt != NULL &&
			    strcasecmp(a->results[j].rcpt, rcpts[i]) == 0)
				res = &a->results[j];
		}
		/* no word about a recipient: it was not tried, so it stays queued; a
		 * confirmation records final outcomes only */
		if (res != NULL && a->confirm && res->outcome == STORE_DELIVERY_RETRY)
			res = NULL;
		int to = STORE_RCPT_RELEASING;
		if (res != NULL && res->outcome == STORE_DELIVERY_DELIVERED) {
			to = kept ? STORE_RCPT_QUARANTINED : STORE_RCPT_RELEASED;
			ndelivered++;
		} else if (res != NULL && res->outcome == STORE_DELIVERY_FAILED) {
			to = STORE_RCPT_FAILED;
		}
		if (to == STORE_RCPT_RELEASING)
			left[nleft++] = rcpts[i];
		if (res == NULL || copy)
			continue;
		store_pg_text(&p, msg_id);
		store_pg_owned(&p, store_pg_lc(rcpts[i]));
		store_pg_int(&p, to);
		store_pg_text(&p, to == STORE_RCPT_QUARANTINED ? NULL : res->reply);
		store_pg_int(&p, a->now);
		rc = store_pg_do(c, "finish_rcpt",
				 "UPDATE recipients SET state = $3, reply = coalesce($4, reply),"
				 " updated_at = $5 WHERE msg_id = $1 AND address_lc = $2"
				 " AND state = 1",
				 &p, NULL);
		store_pg_params_clear(&p);
		if (rc < 0)
			goto fail;
	}
	store_pg_int(&p, a->job_id);
	if (nleft == 0) {
		rc = store_pg_do(c, "finish_delete", "DELETE FROM deliveries WHERE job_id = $1", &p,
				 NULL);
	} else if (a->confirm) {
		/* the job keeps its lease and its attempt count */
		store_pg_array(&p, left, nleft);
		rc = store_pg_do(c, "confirm_left",
				 "UPDATE deliveries SET rcpts = $2::text[] WHERE job_id = $1", &p,
				 NULL);
	} else {
		store_pg_array(&p, left, nleft);
		store_pg_int(&p, a->retry_at);
		rc =
		    store_pg_do(c, "finish_retry",
				"UPDATE deliveries SET rcpts = $2::text[], attempts = attempts + 1,"
				" next_attempt_at = $3, leased = false, leased_by = NULL"
				" WHERE job_id = $1",
				&p, NULL);
	}
	store_pg_params_clear(&p);
	if (rc == 0 && a->rescan != NULL && ndelivered > 0 && !copy) {
		/* the verdict on the message's released Outbreak memberships: kept makes
		 * them held again, expiry unchanged */
		store_pg_text(&p, msg_id);
		store_pg_int(&p, a->now);
		store_pg_text(&p, a->rescan->rule);
		store_pg_int(&p, (int64_t)a->rescan->state);
		rc = store_pg_do(c, "confirm_rescan",
				 "UPDATE memberships SET rescan = $4::smallint,"
				 " rescanned_at = $2::bigint, rescan_rule = $3,"
				 " state = CASE WHEN $4::smallint = 3 THEN 0 ELSE state END,"
				 " updated_at = CASE WHEN $4::smallint = 3 THEN $2::bigint"
				 " ELSE updated_at END"
				 " WHERE msg_id = $1 AND state = 1 AND quarantine IN"
				 " (SELECT name FROM quarantines WHERE type = 'outbreak')",
				 &p, NULL);
		store_pg_params_clear(&p);
	}
fail:
	for (size_t i = 0; i < nrcpts; i++)
		free(rcpts[i]);
	free(rcpts);
	free(left);
	free(msg_id);
	return rc;
}

static int store_pg_delivery_record(struct store *s, const struct store_delivery *d,
				    const struct store_delivery_result *results, size_t nresults,
				    int64_t now, int64_t retry_at, bool confirm,
				    const struct store_rescan_verdict *rescan)
{
	if (d == NULL || (nresults > 0 && results == NULL))
		return -EINVAL;
	struct store_pg_finish_args a = {
	    .job_id = d->job_id,
	    .results = results,
	    .nresults = nresults,
	    .now = now,
	    .retry_at = retry_at,
	    .confirm = confirm,
	    .rescan = rescan,
	};
	return store_pg_tx(store_pg_of(s), store_pg_finish_tx, &a);
}

static int store_pg_delivery_finish(struct store *s, const struct store_delivery *d,
				    const struct store_delivery_result *results, size_t nresults,
				    int64_t now, int64_t retry_at)
{
	return store_pg_delivery_record(s, d, results, nresults, now, retry_at, false, NULL);
}

static int store_pg_delivery_confirm(struct store *s, const struct store_delivery *d,
				     const struct store_delivery_result *results, size_t nresults,
				     int64_t now, const struct store_rescan_verdict *rescan)
{
	return store_pg_delivery_record(s, d, results, nresults, now, 0, true, rescan);
}

/*
 * This node's leases only (and those from before leases named their node): the
 * node lock says no other process of this name is alive, so none of them is in
 * flight; another node's may be.
 */
static int store_pg_reset_leases_tx(struct store_pg *st, PGconn *c, void *arg)
{
	struct store_pg_params p = {0};
	store_pg_int(&p, *(int64_t *)arg);
	store_pg_text(&p, st->node);
	int rc =
	    store_pg_do(c, "reset_leases",
			"UPDATE deliveries SET next_attempt_at = $1, leased = false,"
			" leased_by = NULL WHERE leased AND (leased_by = $2 OR leased_by IS NULL)",
			&p, NULL);
	store_pg_params_clear(&p);
	return rc;
}

static int store_pg_delivery_reset_leases(struct store *s, int64_t now)
{
	return store_pg_tx(store_pg_of(s), store_pg_reset_leases_tx, &now);
}

int store_pg_lock_wait(PGconn *c, const char *what, const char *sql, struct store_pg_params *p,
		       int64_t wait_ms, bool *got)
{
	int rc = 0;
	*got = false;
	for (int64_t waited = 0;; waited += 100) {
		PGresult *r = store_pg_exec(c, what, sql, p, false);
		if (r == NULL) {
			rc = -EIO;
			break;
		}
		*got = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
		PQclear(r);
		if (*got || waited >= wait_ms)
			break;
		struct timespec ts = {0, 100 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	store_pg_params_clear(p);
	return rc;
}

int store_pg_query(struct store_pg *st, const char *what, const char *sql,
		   struct store_pg_params *p, PGresult **out)
{
	struct store_pg_conn *c = NULL;
	*out = NULL;
	int rc = store_pg_conn_get(st, &c);
	if (rc == 0) {
		*out = store_pg_exec(c->pg, what, sql, p, false);
		store_pg_conn_put(st, c);
	}
	if (p != NULL)
		store_pg_params_clear(p);
	return rc < 0 ? rc : *out == NULL ? -EIO : 0;
}

/* One single-value query on a pooled connection; *null says whether it was NULL. */
static int store_pg_read_int(struct store_pg *st, const char *what, const char *sql, int64_t *out,
			     bool *null)
{
	PGresult *r = NULL;
	int rc = store_pg_query(st, what, sql, NULL, &r);
	if (rc < 0)
		return rc;
	if (PQntuples(r) != 1) {
		PQclear(r);
		return -EIO;
	}
	if (null != NULL)
		*null = PQgetisnull(r, 0, 0);
	*out = store_pg_i64(r, 0, 0);
	PQclear(r);
	return 0;
}

static int store_pg_delivery_pending(struct store *s, uint64_t *count)
{
	int64_t v = 0;
	int rc = store_pg_read_int(store_pg_of(s), "deliveries_count",
				   "SELECT count(*) FROM deliveries", &v, NULL);
	if (rc == 0)
		*count = (uint64_t)v;
	return rc;
}

static int store_pg_delivery_next_due(struct store *s, int64_t *when)
{
	int64_t v = 0;
	bool null = true;
	int rc = store_pg_read_int(store_pg_of(s), "deliveries_next",
				   "SELECT min(next_attempt_at) FROM deliveries", &v, &null);
	if (rc == 0 && null)
		return -EAGAIN;
	if (rc == 0)
		*when = v;
	return rc;
}

/* --- expiry and purge --------------------------------------------------- */

struct store_pg_batch_args {
	const char *quarantine;
	int64_t cutoff;
	int64_t now;
	size_t batch;
	size_t done;   /* messages handled by this transaction */
	uint64_t rows; /* recipients expired so far */
};

/*
 * One batch of expiry: messages picked and their recipients changed in one
 * statement. SKIP LOCKED: a message being released right now is left for the
 * next run rather than waited for.
 */
static int store_pg_expire_tx(struct store_pg *st, PGconn *c, void *arg)
{
	struct store_pg_batch_args *a = arg;
	struct store_pg_params p = {0};
	store_pg_text(&p, a->quarantine);
	store_pg_int(&p, a->cutoff);
	store_pg_int(&p, (int64_t)a->batch);
	store_pg_int(&p, a->now);
	PGresult *r =
	    store_pg_exec(c, "expire",
			  "WITH pick AS (SELECT id FROM messages WHERE quarantine = $1 AND held > 0"
			  " AND received_at < $2 LIMIT $3 FOR UPDATE SKIP LOCKED),"
			  " u AS (UPDATE recipients r SET state = 4, updated_at = $4 FROM pick"
			  " WHERE r.msg_id = pick.id AND r.state = 0 RETURNING 1)"
			  " SELECT (SELECT count(*) FROM pick), (SELECT count(*) FROM u)",
			  &p, false);
	store_pg_params_clear(&p);
	if (r == NULL)
		return -EIO;
	a->done = (size_t)store_pg_i64(r, 0, 0);
	a->rows += (uint64_t)store_pg_i64(r, 0, 1);
	PQclear(r);
	return 0;
}

static int store_pg_purge_tx(struct store_pg *st, PGconn *c, void *arg)
{
	struct store_pg_batch_args *a = arg;
	struct store_pg_params p = {0};
	store_pg_int(&p, (int64_t)a->batch);
	uint64_t rows = 0;
	/* memberships have no foreign key to cascade (migration 11) */
	int rc = store_pg_do(c, "purge",
			     "WITH pick AS (SELECT id FROM messages WHERE active = 0 LIMIT $1"
			     " FOR UPDATE SKIP LOCKED),"
			     " w AS (DELETE FROM memberships x USING pick WHERE x.msg_id = pick.id)"
			     " DELETE FROM messages WHERE id IN (SELECT id FROM pick)",
			     &p, &rows);
	store_pg_params_clear(&p);
	a->done = rc == 0 ? (size_t)rows : 0;
	return rc;
}

static size_t store_pg_maint_batch(size_t batch)
{
	if (batch == 0)
		return STORE_PG_MAINT_BATCH_DEFAULT;
	return batch > STORE_PG_MAINT_BATCH_MAX ? STORE_PG_MAINT_BATCH_MAX : batch;
}

/* Space is given back by PostgreSQL's autovacuum, not here. */
static int store_pg_purge(struct store *s, size_t batch, uint64_t *purged)
{
	struct store_pg_batch_args a = {.batch = store_pg_maint_batch(batch)};
	uint64_t total = 0;
	int rc;
	do {
		rc = store_pg_tx(store_pg_of(s), store_pg_purge_tx, &a);
		total += a.done;
	} while (rc == 0 && a.done == a.batch);
	if (purged != NULL)
		*purged = total;
	if (total > 0)
		log_info("store.purged", "messages=%llu", (unsigned long long)total);
	return rc;
}

static int store_pg_expire(struct store *s, const char *quarantine, int64_t cutoff, int64_t now,
			   size_t batch, uint64_t *expired, uint64_t *purged)
{
	if (quarantine == NULL)
		return -EINVAL;
	/* whole days first: a dropped partition costs no row deletes */
	uint64_t day_expired = 0, day_purged = 0;
	int day_rc = store_pg_partitions_expire(store_pg_of(s), quarantine, cutoff, &day_expired,
						&day_purged);
	struct store_pg_batch_args a = {
	    .quarantine = quarantine,
	    .cutoff = cutoff,
	    .now = now,
	    .batch = store_pg_maint_batch(batch),
	};
	uint64_t total = 0;
	int rc;
	/* each batch its own transaction: ingest is never held up for long */
	do {
		rc = store_pg_tx(store_pg_of(s), store_pg_expire_tx, &a);
		total += a.done;
	} while (rc == 0 && a.done == a.batch);
	if (expired != NULL)
		*expired = day_expired + a.rows;
	if (total > 0)
		log_info("store.expired", "quarantine=%s messages=%llu recipients=%llu", quarantine,
			 (unsigned long long)total, (unsigned long long)a.rows);
	if (rc < 0)
		return rc;
	uint64_t rows_purged = 0;
	rc = store_pg_purge(s, batch, &rows_purged);
	if (purged != NULL)
		*purged = day_purged + rows_purged;
	return rc < 0 ? rc : day_rc;
}

/* --- statistics --------------------------------------------------------- */

static int store_pg_stats(struct store *s, struct store_stats *out)
{
	struct store_pg *st = store_pg_of(s);
	struct store_pg_conn *c = NULL;
	int rc = store_pg_conn_get(st, &c);
	if (rc < 0)
		return rc;
	PGresult *r = store_pg_exec(c->pg, "stats",
				    "SELECT messages, bytes_original, bytes_stored,"
				    " (SELECT count(*) FROM deliveries),"
				    " pg_database_size(current_database()) FROM totals",
				    NULL, false);
	store_pg_conn_put(st, c);
	if (r == NULL || PQntuples(r) != 1) {
		PQclear(r);
		return -EIO;
	}
	memset(out, 0, sizeof(*out));
	out->messages = (uint64_t)store_pg_i64(r, 0, 0);
	out->bytes_original = (uint64_t)store_pg_i64(r, 0, 1);
	out->bytes_stored = (uint64_t)store_pg_i64(r, 0, 2);
	out->deliveries_pending = (uint64_t)store_pg_i64(r, 0, 3);
	out->file_bytes = (uint64_t)store_pg_i64(r, 0, 4);
	PQclear(r);
	return 0;
}

/* Every entry set: a NULL one would make lazaretd refuse the backend. */
const struct store_ops store_pg_ops = {
    .close = store_pg_close,
    .submit_message = store_pg_submit_message,
    .list = store_pg_list,
    .get = store_pg_get,
    .get_raw = store_pg_get_raw,
    .quarantines = store_pg_quarantines,
    .release = store_pg_release,
    .delete = store_pg_delete,
    .release_matching = store_pg_release_matching,
    .delete_matching = store_pg_delete_matching,
    .delivery_claim = store_pg_delivery_claim,
    .delivery_finish = store_pg_delivery_finish,
    .delivery_confirm = store_pg_delivery_confirm,
    .delivery_reset_leases = store_pg_delivery_reset_leases,
    .delivery_pending = store_pg_delivery_pending,
    .delivery_next_due = store_pg_delivery_next_due,
    .expire = store_pg_expire,
    .maintain = store_pg_maintain,
    .expire_memberships = store_pg_expire_memberships,
    .quarantine_put = store_pg_quarantine_put,
    .quarantine_delete = store_pg_quarantine_delete,
    .operator_quarantines = store_pg_operator_quarantines,
    .pvo_usage = store_pg_pvo_usage,
    .pvo_overflow = store_pg_pvo_overflow,
    .pvo_act_batch = store_pg_pvo_act_batch,
    .list_ids = store_pg_list_ids,
    .pvo_copy = store_pg_pvo_copy,
    .purge = store_pg_purge,
    .stats = store_pg_stats,
    .debug_counters = store_pg_debug_counters,
    .status = store_pg_status,
    .debug_list_plan = store_pg_debug_list_plan,
    .user_add = store_pg_user_add,
    .user_get = store_pg_user_get,
    .user_list = store_pg_user_list,
    .user_count = store_pg_user_count,
    .user_delete = store_pg_user_delete,
    .user_set_prefs = store_pg_user_set_prefs,
    .user_set_last_login = store_pg_user_set_last_login,
    .session_add = store_pg_session_add,
    .session_get = store_pg_session_get,
    .session_touch = store_pg_session_touch,
    .session_delete = store_pg_session_delete,
    .session_purge = store_pg_session_purge,
    .totp_get = store_pg_totp_get,
    .totp_change = store_pg_totp_change,
    .audit_add = store_pg_audit_add,
    .audit_list = store_pg_audit_list,
    .slbl_get = store_pg_slbl_get,
    .slbl_put = store_pg_slbl_put,
    .slbl_changes = store_pg_slbl_changes,
    .digest_user_by_address = store_pg_digest_user_by_address,
    .digest_user_by_name = store_pg_digest_user_by_name,
    .digest_max_seq = store_pg_digest_max_seq,
    .digest_candidates = store_pg_digest_candidates,
    .digest_entries = store_pg_digest_entries,
    .digest_state_get = store_pg_digest_state_get,
    .digest_state_put = store_pg_digest_state_put,
    .digest_token_used = store_pg_digest_token_used,
    .digest_token_use = store_pg_digest_token_use,
    .nodes = store_pg_nodes,
    .node_name = store_pg_node_name,
    .job_try = store_pg_job_try,
    .job_done = store_pg_job_done,
    .secret_get = store_pg_secret_get,
    .secret_add = store_pg_secret_add,
    .gateway_add = store_pg_gateway_add,
    .gateway_list = store_pg_gateway_list,
    .gateway_get = store_pg_gateway_get,
    .gateway_get_by_address = store_pg_gateway_get_by_address,
    .gateway_get_by_token_hash = store_pg_gateway_get_by_token_hash,
    .gateway_remove = store_pg_gateway_remove,
    .gateway_touch = store_pg_gateway_touch,
    .gateway_set_central = store_pg_gateway_set_central,
    .gateway_outbreak_version = store_pg_gateway_outbreak_version,
    .gateway_set_mapping = store_pg_gateway_set_mapping,
    .gateway_migration_report = store_pg_gateway_migration_report,
    .notice_due = store_pg_notice_due,
    .notice_set = store_pg_notice_set,
    .gateway_set_levels = store_pg_gateway_set_levels,
    .level_list = store_pg_level_list,
    .level_put = store_pg_level_put,
    .sched_add = store_pg_sched_add,
    .sched_list = store_pg_sched_list,
    .sched_delete = store_pg_sched_delete,
    .sched_claim = store_pg_sched_claim,
    .archive_add = store_pg_archive_add,
    .archive_list = store_pg_archive_list,
    .archive_get = store_pg_archive_get,
    .sched_update = store_pg_sched_update,
    .report_backfill = store_pg_report_backfill,
    .report_backfill_state = store_pg_report_backfill_state,
    .report_export = store_pg_report_export,
    .archive_purge = store_pg_archive_purge,
    .archive_mail_due = store_pg_archive_mail_due,
    .archive_mail_set = store_pg_archive_mail_set,
    .gateway_pending_put = store_pg_gateway_pending_put,
    .events_put = store_pg_events_put,
    .event_states = store_pg_event_states,
    .events_list = store_pg_events_list,
    .tracked_message_get = store_pg_tracked_message_get,
    .tracked_search = store_pg_tracked_search,
    .tracked_session_events = store_pg_tracked_session_events,
    .tracking_drop_days = store_pg_tracking_drop_days,
    .tracking_purge = store_pg_tracking_purge,
    .report_read = store_pg_report_read,
    .report_purge = store_pg_report_purge,
    .capacity_read = store_pg_capacity_read,
    .capacity_purge = store_pg_capacity_purge,
    .report_scan = store_pg_report_scan,
};

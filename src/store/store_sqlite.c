/*
 * store_sqlite — the default quarantine store: one SQLite database (WAL,
 * synchronous=FULL) under the data directory. It is the only code that knows the
 * schema; everything else goes through store.h. Not for: policy (what expires
 * when, who may see what) — callers decide and pass filters and cut-offs.
 *
 * Threads and connections:
 *   - One writer thread owns the only read-write connection. Submitted messages
 *     are queued and written in group commits (up to batch_max messages in one
 *     transaction); each done callback runs after COMMIT returned. Every other
 *     mutation is a job run by the writer in its own transaction while the caller
 *     waits on a condition variable.
 *   - Readers borrow a read-only connection from a small pool; WAL lets them read
 *     while the writer writes. A read that needs several statements runs in one
 *     read transaction so it sees one snapshot.
 *
 * Recipient states (store.h) and the function that makes each transition:
 *
 *   from         to          by
 *   quarantined  releasing   store_release, store_release_matching (queues a delivery)
 *   quarantined  deleted     store_delete, store_delete_matching
 *   quarantined  expired     store_expire
 *   releasing    released    store_delivery_finish, store_delivery_confirm (DELIVERED)
 *   releasing    failed      store_delivery_finish, store_delivery_confirm (FAILED)
 *   releasing    releasing   store_delivery_finish (STORE_DELIVERY_RETRY, due again)
 *
 * Invariants kept by triggers inside the database, so that no code path can
 * forget them: messages.held = recipients still quarantined, messages.active =
 * recipients quarantined or releasing (a message with active = 0 is purgeable);
 * quarantines.messages/bytes count messages with held > 0; totals holds the row
 * count and byte sums; subject_fts and subject_short mirror messages.subject;
 * list_order bounds how far ids stray from insertion order and received_at.
 */
#include "store/store.h"
#include "store/store_backend.h"
#include "store/store_short.h"
#include "store/store_sqlite_int.h"

#include <fcntl.h>
#include <unistd.h>
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <zstd.h>

#include "common/clock.h"
#include "common/fault.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/xalloc.h"

/* Default and ceiling of one group commit: big enough to amortise the fsync,
 * small enough that one batch does not hold the write lock for long. */
#define STORE_BATCH_MAX_DEFAULT 256
#define STORE_BATCH_MAX_LIMIT	4096
/* A writer or reader waits this long for a lock held by another process (backup
 * tools, sqlite3 shell) before reporting -EIO. */
#define STORE_BUSY_TIMEOUT_MS 10000
/* Page cache per connection (KiB): the writer keeps index pages hot for ingest. */
#define STORE_WRITER_CACHE_KIB 65536
#define STORE_READER_CACHE_KIB 16384
/* Idle read connections kept open; more are opened on demand and closed after use. */
#define STORE_READER_POOL_MAX 8
/*
 * A reader's progress handler runs every this many SQLite virtual-machine steps to
 * check the thread's read deadline: a few microseconds of work between checks, so a
 * query overshoots its budget by far less than a millisecond, and the clock read
 * costs well under 1% of the query.
 */
#define STORE_PROGRESS_STEPS 1000
/*
 * The test-only delay point "store_slow_read" (LAZARET_FAULT): every progress
 * check of a reader also sleeps this long, so that a read over a small store
 * takes as long as one over a large store would. Checks come every
 * STORE_PROGRESS_SLOW_STEPS steps then, so that short reads slow down too.
 */
#define STORE_FAULT_SLOW_READ_US  1000
#define STORE_PROGRESS_SLOW_STEPS 10
/* Prepared statements cached per connection (fixed SQL only). */
#define STORE_STMT_CACHE 48
/* Listing page size bounds (docs/openapi.yaml: max 1000). */
#define STORE_LIST_LIMIT_MAX 1000
/* Messages per transaction for store_expire/store_purge/bulk actions when the
 * caller passes 0, and the most a caller may ask for. */
#define STORE_MAINT_BATCH_DEFAULT 500
#define STORE_MAINT_BATCH_MAX	  10000
/* The trigram index only answers substrings of at least this many characters. */
#define STORE_FTS_MIN_CHARS 3

#define STORE_DB_NAME "lazaret.db"

/* --- schema ------------------------------------------------------------- */

/*
 * SQL for the Unix milliseconds in the first 48 bits of a UUIDv7 text x (hex
 * digits 1-8 and 10-13); 0 for ''. ids_uuidv7_time_ms() in SQL, for triggers.
 */
/* clang-format off */
#define STORE_SQL_HEX(x, k, shift) \
	"((instr('0123456789abcdef', substr(" x ", " #k ", 1)) - 1) << " #shift ")"
#define STORE_SQL_ID_MS(x) \
	"(" STORE_SQL_HEX(x, 1, 44) " + " STORE_SQL_HEX(x, 2, 40) " + " \
	STORE_SQL_HEX(x, 3, 36) " + " STORE_SQL_HEX(x, 4, 32) " + " \
	STORE_SQL_HEX(x, 5, 28) " + " STORE_SQL_HEX(x, 6, 24) " + " \
	STORE_SQL_HEX(x, 7, 20) " + " STORE_SQL_HEX(x, 8, 16) " + " \
	STORE_SQL_HEX(x, 10, 12) " + " STORE_SQL_HEX(x, 11, 8) " + " \
	STORE_SQL_HEX(x, 12, 4) " + " STORE_SQL_HEX(x, 13, 0) ")"
/* clang-format on */

/*
 * Migration N (index N-1) turns schema version N-1 into N. Append only: never
 * edit a migration that has shipped. Each runs in its own transaction together
 * with the new PRAGMA user_version.
 *
 * messages has an explicit INTEGER PRIMARY KEY (seq) besides the UUID: the
 * subject index refers to rows by rowid, and VACUUM may renumber implicit rowids.
 * Bodies live in their own table so that scans over messages never page through
 * blobs.
 */
/* clang-format off */
static const char *const store_migrations[] = {
    /* 1: initial schema */
    "CREATE TABLE messages ("
    "  seq INTEGER PRIMARY KEY,"
    "  id TEXT NOT NULL UNIQUE,"
    "  quarantine TEXT NOT NULL,"
    "  received_at INTEGER NOT NULL,"
    "  sender TEXT NOT NULL,"
    "  sender_lc TEXT NOT NULL,"
    "  sender_domain TEXT NOT NULL,"
    "  from_text TEXT,"
    "  from_addr TEXT,"
    "  from_addr_lc TEXT,"
    "  from_domain TEXT,"
    "  to_text TEXT,"
    "  subject TEXT,"
    "  message_id TEXT,"
    "  date_ms INTEGER NOT NULL DEFAULT 0,"
    "  size INTEGER NOT NULL,"
    "  stored_size INTEGER NOT NULL,"
    "  verdict TEXT,"
    "  score REAL,"
    "  gateway TEXT,"
    "  client_address TEXT,"
    "  held INTEGER NOT NULL DEFAULT 0,"
    "  active INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX messages_quarantine ON messages(quarantine, id);"
    "CREATE INDEX messages_received ON messages(received_at);"
    "CREATE INDEX messages_sender ON messages(sender_lc, id);"
    "CREATE INDEX messages_sender_domain ON messages(sender_domain, id);"
    "CREATE INDEX messages_from ON messages(from_addr_lc, id);"
    "CREATE INDEX messages_from_domain ON messages(from_domain, id);"
    "CREATE INDEX messages_held ON messages(quarantine, received_at) WHERE held > 0;"
    "CREATE INDEX messages_purgeable ON messages(id) WHERE active = 0;"
    /* Keyed by messages.seq in a rowid table: a rowid leaf keeps a ~4 KB
     * record on its page, where a WITHOUT ROWID b-tree would spill anything
     * over ~1 KB into a whole overflow page. */
    "CREATE TABLE bodies ("
    "  msg_seq INTEGER PRIMARY KEY REFERENCES messages(seq) ON DELETE CASCADE,"
    "  codec TEXT NOT NULL,"
    "  data BLOB NOT NULL);"
    "CREATE TABLE recipients ("
    "  msg_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,"
    "  address TEXT NOT NULL,"
    "  address_lc TEXT NOT NULL,"
    "  pos INTEGER NOT NULL,"
    "  state INTEGER NOT NULL,"
    "  reply TEXT,"
    "  updated_at INTEGER NOT NULL,"
    "  PRIMARY KEY (msg_id, address_lc)) WITHOUT ROWID;"
    "CREATE INDEX recipients_address ON recipients(address_lc, msg_id, state);"
    "CREATE TABLE attachments ("
    "  msg_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,"
    "  idx INTEGER NOT NULL,"
    "  filename TEXT,"
    "  content_type TEXT,"
    "  size INTEGER NOT NULL,"
    "  PRIMARY KEY (msg_id, idx)) WITHOUT ROWID;"
    "CREATE TABLE deliveries ("
    "  job_id INTEGER PRIMARY KEY,"
    "  msg_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,"
    "  next_attempt_at INTEGER NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  first_attempt_at INTEGER,"
    "  leased INTEGER NOT NULL DEFAULT 0,"
    "  rcpts TEXT NOT NULL);" /* JSON array of addresses */
    "CREATE INDEX deliveries_due ON deliveries(next_attempt_at);"
    "CREATE INDEX deliveries_msg ON deliveries(msg_id);"
    "CREATE TABLE quarantines ("
    "  name TEXT PRIMARY KEY,"
    "  type TEXT NOT NULL,"
    "  messages INTEGER NOT NULL DEFAULT 0,"
    "  bytes INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
    "INSERT INTO quarantines(name, type) VALUES ('spam', 'spam');"
    "CREATE TABLE totals ("
    "  one INTEGER PRIMARY KEY CHECK (one = 1),"
    "  messages INTEGER NOT NULL,"
    "  bytes_original INTEGER NOT NULL,"
    "  bytes_stored INTEGER NOT NULL);"
    "INSERT INTO totals VALUES (1, 0, 0, 0);"
    /* Trigram index on the decoded subject: substring search of 3+ characters
     * without a scan. External content: the text itself stays in messages. */
    "CREATE VIRTUAL TABLE subject_fts USING fts5(subject, content='messages',"
    "  content_rowid='seq', tokenize='trigram');"
    "CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN"
    "  INSERT OR IGNORE INTO quarantines(name, type) VALUES (new.quarantine,"
    "    CASE new.quarantine WHEN 'spam' THEN 'spam' ELSE 'policy' END);"
    "  UPDATE totals SET messages = messages + 1,"
    "    bytes_original = bytes_original + new.size,"
    "    bytes_stored = bytes_stored + new.stored_size;"
    "  INSERT INTO subject_fts(rowid, subject) VALUES (new.seq, new.subject);"
    "END;"
    "CREATE TRIGGER messages_ad AFTER DELETE ON messages BEGIN"
    "  UPDATE totals SET messages = messages - 1,"
    "    bytes_original = bytes_original - old.size,"
    "    bytes_stored = bytes_stored - old.stored_size;"
    "  UPDATE quarantines SET messages = messages - 1, bytes = bytes - old.size"
    "    WHERE old.held > 0 AND name = old.quarantine;"
    "  INSERT INTO subject_fts(subject_fts, rowid, subject)"
    "    VALUES ('delete', old.seq, old.subject);"
    "END;"
    "CREATE TRIGGER messages_au_held AFTER UPDATE OF held ON messages"
    "  WHEN (old.held > 0) <> (new.held > 0) BEGIN"
    "  UPDATE quarantines SET"
    "    messages = messages + CASE WHEN new.held > 0 THEN 1 ELSE -1 END,"
    "    bytes = bytes + CASE WHEN new.held > 0 THEN new.size ELSE -new.size END"
    "    WHERE name = new.quarantine;"
    "END;"
    "CREATE TRIGGER recipients_ai AFTER INSERT ON recipients BEGIN"
    "  UPDATE messages SET held = held + (new.state = 0),"
    "    active = active + (new.state IN (0, 1)) WHERE id = new.msg_id;"
    "END;"
    "CREATE TRIGGER recipients_au AFTER UPDATE OF state ON recipients"
    "  WHEN old.state <> new.state BEGIN"
    "  UPDATE messages SET held = held + (new.state = 0) - (old.state = 0),"
    "    active = active + (new.state IN (0, 1)) - (old.state IN (0, 1))"
    "    WHERE id = new.msg_id;"
    "END;",
    /* 2: safelists/blocklists, kept per recipient with a change version */
    "CREATE TABLE slbl_entries ("
    "  recipient_lc TEXT NOT NULL,"
    "  list TEXT NOT NULL CHECK (list IN ('safelist', 'blocklist')),"
    "  sender_lc TEXT NOT NULL,"
    "  pos INTEGER NOT NULL,"
    "  PRIMARY KEY (recipient_lc, list, sender_lc)) WITHOUT ROWID;"
    "CREATE TABLE slbl_recipients ("
    "  recipient_lc TEXT PRIMARY KEY,"
    "  version INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX slbl_recipients_version ON slbl_recipients(version);"
    "CREATE TABLE slbl_counter ("
    "  one INTEGER PRIMARY KEY CHECK (one = 1),"
    "  version INTEGER NOT NULL);"
    "INSERT INTO slbl_counter VALUES (1, 0);"
    /* quarantine types beyond spam and policy: the system quarantines */
    "CREATE TRIGGER quarantines_ai_type AFTER INSERT ON quarantines"
    "  WHEN new.type = 'policy' AND lower(new.name) IN"
    "    ('virus', 'outbreak', 'unclassified', 'file analysis') BEGIN"
    "  UPDATE quarantines SET type = replace(lower(new.name), ' ', '_')"
    "    WHERE name = new.name;"
    "END;",
    /* 3: accounts, sessions, audit log, digest bookkeeping */
    "CREATE TABLE users ("
    "  username TEXT PRIMARY KEY,"
    "  password_hash TEXT,"
    "  role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'enduser')),"
    "  source TEXT NOT NULL DEFAULT 'local',"
    "  language TEXT,"
    "  time_zone TEXT,"
    "  created_at INTEGER NOT NULL,"
    "  last_login_at INTEGER) WITHOUT ROWID;"
    "CREATE TABLE user_addresses ("
    "  username TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,"
    "  address_lc TEXT NOT NULL,"
    "  PRIMARY KEY (username, address_lc)) WITHOUT ROWID;"
    "CREATE INDEX user_addresses_address ON user_addresses(address_lc);"
    "CREATE TABLE sessions ("
    "  token_hash TEXT PRIMARY KEY,"
    "  username TEXT NOT NULL,"
    "  role TEXT NOT NULL,"
    "  addresses TEXT NOT NULL,"
    "  csrf_token TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  expires_at INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX sessions_expires ON sessions(expires_at);"
    "CREATE TABLE audit ("
    "  seq INTEGER PRIMARY KEY,"
    "  at INTEGER NOT NULL,"
    "  actor TEXT NOT NULL,"
    "  action TEXT NOT NULL,"
    "  target TEXT,"
    "  detail TEXT,"
    "  peer TEXT);"
    "CREATE INDEX audit_at ON audit(at);"
    "CREATE TABLE digest_state ("
    "  address_lc TEXT PRIMARY KEY,"
    "  last_sent_at INTEGER NOT NULL,"
    "  last_seq INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE used_tokens ("
    "  nonce TEXT PRIMARY KEY,"
    "  used_at INTEGER NOT NULL,"
    "  expires_at INTEGER NOT NULL) WITHOUT ROWID;",
    /* 4: an account's addresses keep their order (the first is the primary one) */
    "ALTER TABLE user_addresses ADD COLUMN pos INTEGER NOT NULL DEFAULT 0;",
    /*
     * 5: searches that stop early (see "listing" below).
     * subject_short answers subject terms of 1-2 characters (store_short.c), which
     * the trigram index cannot; filled from the messages already there.
     * list_order keeps what bounds how far seq (insertion) order and id order
     * drift apart, and how far received_at strays from the time in the id:
     *   max_id    the greatest id inserted so far;
     *   max_late  the most milliseconds any message's id was older than max_id
     *             when it was inserted (0 when ids arrive in order);
     *   id_ahead  max(time in the id - received_at), at least 0;
     *   id_behind max(received_at - time in the id), at least 0.
     * They only grow (a purge does not shrink them): upper bounds, never too small.
     */
    "CREATE VIRTUAL TABLE subject_short USING fts5(subject, content='messages',"
    "  content_rowid='seq', tokenize='" STORE_SHORT_TOKENIZER "', detail=none,"
    "  columnsize=0);"
    "INSERT INTO subject_short(subject_short) VALUES ('rebuild');"
    "CREATE TRIGGER messages_ai_short AFTER INSERT ON messages BEGIN"
    "  INSERT INTO subject_short(rowid, subject) VALUES (new.seq, new.subject);"
    "END;"
    "CREATE TRIGGER messages_ad_short AFTER DELETE ON messages BEGIN"
    "  INSERT INTO subject_short(subject_short, rowid, subject)"
    "    VALUES ('delete', old.seq, old.subject);"
    "END;"
    "CREATE TABLE list_order ("
    "  one INTEGER PRIMARY KEY CHECK (one = 1),"
    "  max_id TEXT NOT NULL,"
    "  max_late INTEGER NOT NULL,"
    "  id_ahead INTEGER NOT NULL,"
    "  id_behind INTEGER NOT NULL);"
    "INSERT INTO list_order"
    "  SELECT 1, coalesce((SELECT max(id) FROM messages), ''),"
    "    max(0, coalesce(max(" STORE_SQL_ID_MS("prev") " - " STORE_SQL_ID_MS("id") "), 0)),"
    "    max(0, coalesce(max(" STORE_SQL_ID_MS("id") " - received_at), 0)),"
    "    max(0, coalesce(max(received_at - " STORE_SQL_ID_MS("id") "), 0))"
    "  FROM (SELECT id, received_at, max(id) OVER (ORDER BY seq ROWS BETWEEN"
    "    UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev FROM messages);"
    "CREATE TRIGGER messages_ai_order AFTER INSERT ON messages BEGIN"
    "  UPDATE list_order SET"
    "    max_late = max(max_late,"
    "      " STORE_SQL_ID_MS("max_id") " - " STORE_SQL_ID_MS("new.id") "),"
    "    id_ahead = max(id_ahead, " STORE_SQL_ID_MS("new.id") " - new.received_at),"
    "    id_behind = max(id_behind, new.received_at - " STORE_SQL_ID_MS("new.id") "),"
    "    max_id = max(max_id, new.id);"
    "END;",
    /* 6: secrets every process of the store agrees on (store_secret_add) */
    "CREATE TABLE secrets ("
    "  name TEXT PRIMARY KEY,"
    "  value BLOB NOT NULL,"
    "  created_at INTEGER NOT NULL) WITHOUT ROWID;",
    /* 7: the gateway registry (store_gateways.c): names unique in any case,
     * addresses unique among registered gateways, tokens kept as hashes */
    "CREATE TABLE gateways ("
    "  name TEXT NOT NULL COLLATE NOCASE PRIMARY KEY,"
    "  state TEXT NOT NULL CHECK (state IN ('registered', 'pending')),"
    "  address TEXT NOT NULL,"
    "  group_name TEXT,"
    "  cluster TEXT,"
    "  release_port INTEGER NOT NULL DEFAULT 25,"
    "  token_hash TEXT UNIQUE,"
    "  created_at INTEGER NOT NULL,"
    "  last_seen INTEGER NOT NULL DEFAULT 0,"
    "  version TEXT) WITHOUT ROWID;"
    "CREATE UNIQUE INDEX gateways_address ON gateways(address) WHERE state = 'registered';"
    "CREATE INDEX gateways_state ON gateways(state);",
    /*
     * 8: policy, virus and outbreak (PVO) quarantines (store_pvo.c, store.h).
     * Settings per quarantine, its operators, the system quarantines, and one
     * membership per (message, quarantine) with its own reason, times and state
     * (0 held, 1 released, 2 deleted, 3 expired). A PVO message has quarantine
     * '*pvo' (STORE_PVO_MARKER, type 'pvo', never listed): its counters are the
     * held PVO messages of all quarantines together (the capacity, PV7).
     */
    "ALTER TABLE quarantines ADD COLUMN delete_after INTEGER;"
    "ALTER TABLE quarantines ADD COLUMN default_action TEXT NOT NULL DEFAULT 'delete'"
    "  CHECK (default_action IN ('release', 'delete'));"
    "ALTER TABLE quarantines ADD COLUMN overflow_exempt INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE quarantines ADD COLUMN created_at INTEGER NOT NULL DEFAULT 0;"
    "INSERT OR IGNORE INTO quarantines (name, type) VALUES ('virus', 'virus'),"
    "  ('outbreak', 'outbreak'), ('unclassified', 'unclassified'), ('*pvo', 'pvo');"
    "CREATE TABLE quarantine_operators ("
    "  quarantine TEXT NOT NULL REFERENCES quarantines(name)"
    "    ON DELETE CASCADE ON UPDATE CASCADE,"
    "  username TEXT NOT NULL,"
    "  PRIMARY KEY (quarantine, username)) WITHOUT ROWID;"
    "CREATE TABLE memberships ("
    "  msg_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,"
    "  quarantine TEXT NOT NULL,"
    "  reason TEXT NOT NULL DEFAULT '',"
    "  entered_at INTEGER NOT NULL,"
    "  expires_at INTEGER NOT NULL,"
    "  state INTEGER NOT NULL DEFAULT 0,"
    "  updated_at INTEGER NOT NULL,"
    "  origin_gateway TEXT,"
    "  origin_id TEXT,"
    "  PRIMARY KEY (msg_id, quarantine)) WITHOUT ROWID;"
    "CREATE INDEX memberships_quarantine ON memberships(quarantine, msg_id);"
    "CREATE INDEX memberships_due ON memberships(expires_at) WHERE state = 0;"
    "CREATE INDEX memberships_oldest ON memberships(quarantine, entered_at) WHERE state = 0;"
    "CREATE INDEX memberships_origin ON memberships(origin_gateway, origin_id)"
    "  WHERE origin_id IS NOT NULL;",
    /*
     * 9: the route of a delivery (store_delivery): a PVO release goes back through
     * the gateway that quarantined it (its registry name; '' none known), rescan
     * when an outbreak membership was released, and copies (store_pvo_copy) that
     * change no recipient.
     */
    "ALTER TABLE deliveries ADD COLUMN gateway TEXT;"
    "ALTER TABLE deliveries ADD COLUMN rescan INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE deliveries ADD COLUMN copy INTEGER NOT NULL DEFAULT 0;",
    /*
     * 10: gateway events and message tracking (store_sqlite_events.c, store.h).
     * events: every event as the gateway sent it, one per (gateway, seq).
     * tracked_*: one row per message a gateway received, with what the tracking
     * searches read (time, sender, recipients, subject, Message-ID, client
     * address, attachment names, flags). gateway_event_state: each gateway's
     * counters (last seq, backlog it reported, events received).
     */
    /* a rowid table: details of a few hundred bytes would crowd a WITHOUT ROWID
     * b-tree's pages; (gateway, seq) is its unique key all the same */
    "CREATE TABLE events ("
    "  id INTEGER PRIMARY KEY,"
    "  gateway TEXT NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  at INTEGER NOT NULL,"
    "  type TEXT NOT NULL,"
    "  msg_id TEXT,"
    "  detail TEXT NOT NULL,"
    "  UNIQUE (gateway, seq));"
    "CREATE INDEX events_message ON events(gateway, msg_id, seq) WHERE msg_id IS NOT NULL;"
    "CREATE INDEX events_type_at ON events(type, at);"
    "CREATE INDEX events_at ON events(at);"
    "CREATE TABLE tracked_messages ("
    "  gateway TEXT NOT NULL,"
    "  msg_id TEXT NOT NULL,"
    "  received_at INTEGER NOT NULL,"
    "  sender TEXT,"
    "  sender_lc TEXT,"
    "  subject TEXT,"
    "  message_id TEXT,"
    "  client_ip TEXT,"
    "  size INTEGER NOT NULL DEFAULT 0,"
    "  last_state TEXT,"
    "  flags INTEGER NOT NULL DEFAULT 0,"
    "  updated_at INTEGER NOT NULL,"
    "  PRIMARY KEY (gateway, msg_id)) WITHOUT ROWID;"
    "CREATE INDEX tracked_received ON tracked_messages(received_at);"
    "CREATE INDEX tracked_gateway ON tracked_messages(gateway, received_at);"
    "CREATE INDEX tracked_sender ON tracked_messages(sender_lc, received_at);"
    "CREATE INDEX tracked_subject ON tracked_messages(subject COLLATE NOCASE);"
    "CREATE INDEX tracked_message_id ON tracked_messages(message_id);"
    "CREATE INDEX tracked_client ON tracked_messages(client_ip, received_at);"
    "CREATE TABLE tracked_recipients ("
    "  gateway TEXT NOT NULL,"
    "  msg_id TEXT NOT NULL,"
    "  idx INTEGER NOT NULL,"
    "  address TEXT NOT NULL,"
    "  address_lc TEXT NOT NULL,"
    "  PRIMARY KEY (gateway, msg_id, idx)) WITHOUT ROWID;"
    "CREATE INDEX tracked_recipients_address ON tracked_recipients(address_lc);"
    "CREATE TABLE tracked_attachments ("
    "  gateway TEXT NOT NULL,"
    "  msg_id TEXT NOT NULL,"
    "  idx INTEGER NOT NULL,"
    "  name TEXT NOT NULL,"
    "  name_lc TEXT NOT NULL,"
    "  PRIMARY KEY (gateway, msg_id, idx)) WITHOUT ROWID;"
    "CREATE INDEX tracked_attachments_name ON tracked_attachments(name_lc);"
    "CREATE TABLE gateway_event_state ("
    "  gateway TEXT NOT NULL PRIMARY KEY,"
    "  last_seq INTEGER NOT NULL DEFAULT 0,"
    "  last_event_at INTEGER NOT NULL DEFAULT 0,"
    "  backlog INTEGER NOT NULL DEFAULT -1,"
    "  received INTEGER NOT NULL DEFAULT 0,"
    "  pushed_at INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;",
    /*
     * 11: nothing here; PostgreSQL's 11 drops the foreign key of memberships,
     * whose check locks the message row there. SQLite's check is an index probe
     * and its ON DELETE CASCADE stays. Kept so both backends count alike.
     */
    "SELECT 1;",
    /*
     * 12: the indexes of the tracking searches (store_tracking.c) that 10 lacks:
     * the messages something rarer than delivery happened to (flags but
     * STORE_TRACK_DELIVERED, the same mask as STORE_TRACK_RARE_FLAGS), newest
     * first, and recipients by domain (the part from the '@').
     */
    "CREATE INDEX tracked_flagged ON tracked_messages(received_at) WHERE (flags & 503) <> 0;"
    "CREATE INDEX tracked_recipients_domain ON tracked_recipients"
    "  (substr(address_lc, instr(address_lc, '@')));",
    /*
     * 13: second factors (TOTP) of local accounts and their single-use recovery
     * codes (store_users.c). The secret is the API's encrypted text; last_step is
     * the newest time step accepted, so that a code is accepted once.
     */
    "CREATE TABLE user_totp ("
    "  username TEXT NOT NULL PRIMARY KEY,"
    "  secret TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  enrolled_at INTEGER NOT NULL DEFAULT 0,"
    "  last_step INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
    "CREATE TABLE user_recovery_codes ("
    "  username TEXT NOT NULL,"
    "  code_hash TEXT NOT NULL,"
    "  used_at INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (username, code_hash)) WITHOUT ROWID;",
    /*
     * 14: the reporting rollups (store_sqlite_report.c): counters per report,
     * granularity (0 hour, 1 day, 2 month), bucket start (Unix ms), gateway and
     * key; the retention deletes by (gran, bucket).
     */
    "CREATE TABLE report_rollups ("
    "  report TEXT NOT NULL,"
    "  gran INTEGER NOT NULL,"
    "  bucket INTEGER NOT NULL,"
    "  gateway TEXT NOT NULL,"
    "  key TEXT NOT NULL,"
    "  incoming INTEGER NOT NULL DEFAULT 0,"
    "  clean INTEGER NOT NULL DEFAULT 0,"
    "  spam INTEGER NOT NULL DEFAULT 0,"
    "  suspect INTEGER NOT NULL DEFAULT 0,"
    "  virus INTEGER NOT NULL DEFAULT 0,"
    "  content_filter INTEGER NOT NULL DEFAULT 0,"
    "  count INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (report, gran, bucket, gateway, key));"
    "CREATE INDEX report_rollups_age ON report_rollups(gran, bucket);",
    /*
     * 15: centralization levels (store_levels.c): the settings set at a cluster,
     * a group or a machine (one gateway); NULL is "not set at this level". And
     * what each gateway says it runs with (central: 1 pvo, 2 reporting, 4 tracking).
     */
    "CREATE TABLE levels ("
    "  level TEXT NOT NULL CHECK (level IN ('cluster', 'group', 'machine')),"
    "  name TEXT NOT NULL COLLATE NOCASE,"
    "  pvo INTEGER,"
    "  reporting INTEGER,"
    "  tracking INTEGER,"
    "  filters TEXT,"
    "  updated_at INTEGER NOT NULL,"
    "  PRIMARY KEY (level, name)) WITHOUT ROWID;"
    "ALTER TABLE gateways ADD COLUMN central INTEGER NOT NULL DEFAULT 0;",
    /*
     * the version of its outbreak rules a gateway last said in its hello (NULL:
     * none said yet); a change sends its Outbreak messages back for rescanning
     */
    "ALTER TABLE gateways ADD COLUMN outbreak_version TEXT;",
    /*
     * 17: an Outbreak membership's rescan (store_rescan_state: 0 none, 1 pending) and
     * when it last changed (NULL: never)
     */
    "ALTER TABLE memberships ADD COLUMN rescan INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE memberships ADD COLUMN rescanned_at INTEGER;",
    /*
     * 18: scheduled reports (store_sched.c): what to mail, to whom and when; and
     * the archive of the copies made, with their documents
     */
    "CREATE TABLE report_schedules ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  report TEXT NOT NULL,"
    "  period TEXT NOT NULL,"
    "  every TEXT NOT NULL CHECK (every IN ('daily', 'weekly', 'monthly')),"
    "  format TEXT NOT NULL CHECK (format IN ('pdf', 'csv')),"
    "  recipients TEXT NOT NULL,"
    "  created_by TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  next_run INTEGER NOT NULL,"
    "  last_run INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE report_archive ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  schedule_id INTEGER NOT NULL DEFAULT 0,"
    "  report TEXT NOT NULL,"
    "  period TEXT NOT NULL,"
    "  format TEXT NOT NULL,"
    "  range_from INTEGER NOT NULL,"
    "  range_to INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  data BLOB NOT NULL);",
    /*
     * 19: migration on enabling centralized PVO (store_gateways.c): a gateway's
     * quarantine mapping (NULL: automatic) and its last migration's progress
     */
    "ALTER TABLE gateways ADD COLUMN mapping TEXT;"
    "ALTER TABLE gateways ADD COLUMN mig_state INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE gateways ADD COLUMN mig_run INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE gateways ADD COLUMN mig_total INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE gateways ADD COLUMN mig_done INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE gateways ADD COLUMN mig_failed INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE gateways ADD COLUMN mig_finished_at INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE gateways ADD COLUMN mig_notified_at INTEGER NOT NULL DEFAULT 0;",
    /*
     * 20: the verdict of an Outbreak membership's rescan (store_rescan_state:
     * 2 clean, 3 kept, 4 requarantined) names the rule that decided it; and when
     * a rules change last sent it back (NULL: never), which rescanned_at, the
     * time of the verdict, no longer tells
     */
    "ALTER TABLE memberships ADD COLUMN rescan_rule TEXT;"
    "ALTER TABLE memberships ADD COLUMN rescan_sent_at INTEGER;"
    "UPDATE memberships SET rescan_sent_at = rescanned_at WHERE rescan = 1;",
    /*
     * 21: a schedule's send time (minutes after midnight in its time zone), and a
     * copy's mail: the recipients still to reach, attempts made, next attempt
     */
    "ALTER TABLE report_schedules ADD COLUMN at_minute INTEGER NOT NULL DEFAULT 360;"
    "ALTER TABLE report_schedules ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC';"
    "ALTER TABLE report_archive ADD COLUMN mail_pending TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE report_archive ADD COLUMN mail_tries INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE report_archive ADD COLUMN mail_next INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX report_archive_created ON report_archive(created_at);"
    "CREATE INDEX report_archive_mail ON report_archive(mail_next) WHERE mail_next > 0;"
    /*
     * and the rollup rows gateways sent once (store_backfill.c): what was taken,
     * and when each gateway's backfill finished
     */
    "CREATE TABLE report_backfill ("
    "  gateway TEXT NOT NULL,"
    "  report TEXT NOT NULL,"
    "  gran INTEGER NOT NULL,"
    "  bucket INTEGER NOT NULL,"
    "  key TEXT NOT NULL,"
    "  PRIMARY KEY (gateway, report, gran, bucket, key)) WITHOUT ROWID;"
    "CREATE TABLE report_backfill_done ("
    "  gateway TEXT PRIMARY KEY,"
    "  done_at INTEGER NOT NULL) WITHOUT ROWID;",
    /*
     * 22: the reporting rollups summed over all gateways (store_sqlite_report.c),
     * written with the per-gateway rows, so that a report over all gateways reads
     * one row per bucket and key (the retention deletes by report, gran and
     * bucket: no index of their own); filled here from the per-gateway rows. And
     * an index by gateway, so that a report of one gateway reads its rows only.
     */
    "CREATE TABLE report_totals ("
    "  report TEXT NOT NULL,"
    "  gran INTEGER NOT NULL,"
    "  bucket INTEGER NOT NULL,"
    "  key TEXT NOT NULL,"
    "  incoming INTEGER NOT NULL DEFAULT 0,"
    "  clean INTEGER NOT NULL DEFAULT 0,"
    "  spam INTEGER NOT NULL DEFAULT 0,"
    "  suspect INTEGER NOT NULL DEFAULT 0,"
    "  virus INTEGER NOT NULL DEFAULT 0,"
    "  content_filter INTEGER NOT NULL DEFAULT 0,"
    "  count INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (report, gran, bucket, key)) WITHOUT ROWID;"
    "CREATE INDEX report_rollups_gateway ON report_rollups(report, gateway, gran, bucket);"
    "INSERT INTO report_totals (report, gran, bucket, key, incoming, clean, spam, suspect,"
    "  virus, content_filter, count)"
    "  SELECT report, gran, bucket, key, sum(incoming), sum(clean), sum(spam), sum(suspect),"
    "  sum(virus), sum(content_filter), sum(count) FROM report_rollups"
    "  GROUP BY report, gran, bucket, key;",
    /*
     * 23: the system_capacity report (store_sqlite_report.c): the gateways'
     * capacity samples added up per gateway and hour (sums, the sample count
     * and maxima; load in hundredths, memory in bytes)
     */
    "CREATE TABLE capacity_hours ("
    "  gateway TEXT NOT NULL,"
    "  bucket INTEGER NOT NULL,"
    "  samples INTEGER NOT NULL,"
    "  received INTEGER NOT NULL,"
    "  relayed INTEGER NOT NULL,"
    "  connections INTEGER NOT NULL,"
    "  current_sum INTEGER NOT NULL,"
    "  current_max INTEGER NOT NULL,"
    "  load_sum INTEGER NOT NULL,"
    "  load_max INTEGER NOT NULL,"
    "  memory_max INTEGER NOT NULL,"
    "  backlog_max INTEGER NOT NULL,"
    "  PRIMARY KEY (gateway, bucket)) WITHOUT ROWID;"
    "CREATE INDEX capacity_hours_bucket ON capacity_hours(bucket);",
    /*
     * 24: the "done" mail of a gateway's migration run (store_gateways.c): one
     * per gateway and run, recorded with the run's state and kept until the
     * relay takes it or refuses it for good; next > 0 while it is pending
     */
    "CREATE TABLE migration_notices ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  gateway TEXT NOT NULL COLLATE NOCASE,"
    "  run INTEGER NOT NULL,"
    "  rcpt TEXT NOT NULL,"
    "  total INTEGER NOT NULL,"
    "  moved INTEGER NOT NULL,"
    "  failed INTEGER NOT NULL,"
    "  finished_at INTEGER NOT NULL,"
    "  tries INTEGER NOT NULL DEFAULT 0,"
    "  next_try INTEGER NOT NULL,"
    "  sent INTEGER NOT NULL DEFAULT 0,"
    "  last_try INTEGER NOT NULL DEFAULT 0,"
    "  reply TEXT,"
    "  UNIQUE (gateway, run));"
    "CREATE INDEX migration_notices_due ON migration_notices(next_try) WHERE next_try > 0;",
    /*
     * 25: the Outbreak memberships ever sent back for rescanning, with their
     * verdict, so that the gateway list (store_gateways.c) reads each gateway's
     * last rescan from these alone
     */
    "CREATE INDEX memberships_rescan ON memberships(rescan_sent_at, rescan)"
    "  WHERE quarantine = 'outbreak' AND rescan_sent_at IS NOT NULL;",
};
/* clang-format on */
#define STORE_SCHEMA_VERSION ((int)(sizeof(store_migrations) / sizeof(store_migrations[0])))

/* --- types -------------------------------------------------------------- */

struct store_conn {
	sqlite3 *db;
	struct {
		const char *sql; /* a string constant: compared by address */
		sqlite3_stmt *stmt;
	} cache[STORE_STMT_CACHE];
	size_t ncache;
	struct store_conn *next;
	int synchronous; /* the writer: PRAGMA synchronous as read back */
};

struct store_pending {
	struct store_new_message *m;
	store_done_fn done;
	void *arg;
	struct store_pending *next;
};

/* A mutation run by the writer thread inside one transaction. */
struct store_job {
	int (*fn)(struct store *st, struct store_conn *c, void *arg);
	void *arg;
	int rc;
	bool finished;
	struct store_job *next;
};

struct store {
	const struct store_ops *ops; /* first: store.c dispatches on it */
	char *dir;
	char *db_path;
	char *node;	    /* store_options.node_name (one process: for store_nodes) */
	int64_t started_at; /* when it was opened */
	unsigned batch_max;
	unsigned batch_wait_us;

	pthread_mutex_t lock; /* guards the queues, stopping, finished flags */
	pthread_cond_t wake;  /* writer: work arrived or stopping */
	pthread_cond_t done;  /* callers: a job finished */
	struct store_pending *pending_head, *pending_tail;
	size_t npending;
	struct store_job *jobs_head, *jobs_tail;
	bool stopping;
	pthread_t writer;
	bool writer_started;
	struct store_conn *wconn;

	pthread_mutex_t pool_lock;
	struct store_conn *pool;
	size_t npool;

	atomic_uint_fast64_t commits;
	atomic_uint_fast64_t batches;
	atomic_uint_fast64_t batched_messages;
};

/* --- read deadlines ----------------------------------------------------- */

/*
 * Whether the progress handler cut off a statement of the current read call
 * (the deadline itself is store_read_deadline_ms, store_backend.h). Thread-local:
 * every thread reads through its own connection, so a deadline never touches
 * another thread's query.
 */
static _Thread_local bool store_read_expired;
/* The "store_slow_read" delay point is armed (set once, before any reader opens). */
static atomic_bool store_slow_reads;

/* SQLite's progress handler on reader connections: non-zero interrupts the statement. */
static int store_read_progress(void *arg)
{
	(void)arg;
	if (atomic_load_explicit(&store_slow_reads, memory_order_relaxed)) {
		struct timespec ts = {0, STORE_FAULT_SLOW_READ_US * 1000L};
		nanosleep(&ts, NULL);
	}
	if (store_read_deadline_ms != 0 && clock_mono_ms() >= store_read_deadline_ms) {
		store_read_expired = true;
		store_read_timed_out = true; /* for calls store.c maps (store_backend.h) */
		return 1;
	}
	return 0;
}

/*
 * The result of a read call: rc, or -ETIMEDOUT when it failed because the
 * deadline interrupted one of its statements (which reported SQLITE_INTERRUPT
 * and so became -EIO on the way up).
 */
static int store_read_result(int rc)
{
	return rc < 0 && store_read_expired ? -ETIMEDOUT : rc;
}

/* --- small helpers ------------------------------------------------------ */

/* Entry points for the backend's other files (store_sqlite_int.h). */
static sqlite3_stmt *store_stmt(struct store_conn *c, const char *sql);
static int store_step_done(struct store_conn *c, sqlite3_stmt *s, const char *what);
static int store_run_job(struct store *st, int (*fn)(struct store *, struct store_conn *, void *),
			 void *arg);
static int store_reader_get(struct store *st, struct store_conn **out);
static void store_reader_put(struct store *st, struct store_conn *c);
static char *store_col_dup(sqlite3_stmt *s, int col);
static void store_log_sqlite(const char *what, sqlite3 *db);

sqlite3 *store_int_db(struct store_conn *c)
{
	return c->db;
}

sqlite3_stmt *store_int_stmt(struct store_conn *c, const char *sql)
{
	return store_stmt(c, sql);
}

int store_int_step_done(struct store_conn *c, sqlite3_stmt *s, const char *what)
{
	return store_step_done(c, s, what);
}

int store_int_run_job(struct store *st, store_int_job_fn fn, void *arg)
{
	return store_run_job(st, fn, arg);
}

int store_int_reader_get(struct store *st, struct store_conn **out)
{
	return store_reader_get(st, out);
}

void store_int_reader_put(struct store *st, struct store_conn *c)
{
	store_reader_put(st, c);
}

int store_int_read_result(int rc)
{
	return store_read_result(rc);
}

char *store_int_col_dup(sqlite3_stmt *s, int col)
{
	return store_col_dup(s, col);
}

void store_int_log_sqlite(const char *what, sqlite3 *db)
{
	store_log_sqlite(what, db);
}

/* Lower-cases ASCII only: the local part of UTF-8 addresses is left as is. */
static char *store_lc(const char *s)
{
	char *r = xstrdup(s != NULL ? s : "");
	for (char *p = r; *p != '\0'; p++) {
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	}
	return r;
}

/* The lower-cased domain of an address (after the last '@'), "" without one. */
static char *store_domain_lc(const char *addr)
{
	const char *at = addr != NULL ? strrchr(addr, '@') : NULL;
	return store_lc(at != NULL ? at + 1 : "");
}

static void store_strbuf_add(char **buf, size_t *len, size_t *cap, const char *s)
{
	size_t n = strlen(s);
	if (*len + n + 1 > *cap) {
		*cap = (*len + n + 1) * 2;
		*buf = xrealloc(*buf, *cap);
	}
	memcpy(*buf + *len, s, n + 1);
	*len += n;
}

/* A JSON array of strings (escaping per RFC 8259). The caller frees it. */
static char *store_json_array(const char *const *v, size_t n)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;
	store_strbuf_add(&buf, &len, &cap, "[");
	for (size_t i = 0; i < n; i++) {
		store_strbuf_add(&buf, &len, &cap, i > 0 ? ",\"" : "\"");
		for (const unsigned char *p = (const unsigned char *)v[i]; *p != '\0'; p++) {
			char esc[8];
			if (*p == '"' || *p == '\\')
				snprintf(esc, sizeof(esc), "\\%c", *p);
			else if (*p < 0x20)
				snprintf(esc, sizeof(esc), "\\u%04x", *p);
			else
				snprintf(esc, sizeof(esc), "%c", *p);
			store_strbuf_add(&buf, &len, &cap, esc);
		}
		store_strbuf_add(&buf, &len, &cap, "\"");
	}
	store_strbuf_add(&buf, &len, &cap, "]");
	return buf;
}

static char *store_col_dup(sqlite3_stmt *s, int col)
{
	const unsigned char *t = sqlite3_column_text(s, col);
	return xstrdup_or_null((const char *)t);
}

static void store_log_sqlite(const char *what, sqlite3 *db)
{
	/* A read cut off by its deadline is not a storage failure; the caller reports it. */
	if (store_read_expired && sqlite3_errcode(db) == SQLITE_INTERRUPT)
		return;
	char buf[256];
	log_error("store.sqlite_error", "op=%s error=%s", what,
		  log_quote(buf, sizeof(buf), sqlite3_errmsg(db)));
}

/* Runs SQL that returns no rows we need. 0 or -EIO. */
static int store_exec(sqlite3 *db, const char *sql)
{
	char *err = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
		char buf[256];
		log_error("store.sqlite_error", "op=exec error=%s",
			  log_quote(buf, sizeof(buf), err != NULL ? err : "?"));
		sqlite3_free(err);
		return -EIO;
	}
	return 0;
}

/*
 * A cached prepared statement for a fixed SQL string, reset and with bindings
 * cleared; NULL (logged) when it does not prepare.
 */
static sqlite3_stmt *store_stmt(struct store_conn *c, const char *sql)
{
	for (size_t i = 0; i < c->ncache; i++) {
		if (c->cache[i].sql == sql) {
			sqlite3_reset(c->cache[i].stmt);
			sqlite3_clear_bindings(c->cache[i].stmt);
			return c->cache[i].stmt;
		}
	}
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL) != SQLITE_OK) {
		store_log_sqlite("prepare", c->db);
		return NULL;
	}
	if (c->ncache == STORE_STMT_CACHE)
		panic("store statement cache too small (%d)", STORE_STMT_CACHE);
	c->cache[c->ncache].sql = sql;
	c->cache[c->ncache].stmt = s;
	c->ncache++;
	return s;
}

static void store_conn_close(struct store_conn *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->ncache; i++)
		sqlite3_finalize(c->cache[i].stmt);
	sqlite3_close_v2(c->db);
	free(c);
}

static int store_conn_open(const char *path, bool writer, struct store_conn **out)
{
	struct store_conn *c = xcalloc(1, sizeof(*c));
	int flags = SQLITE_OPEN_NOMUTEX |
		    (writer ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE : SQLITE_OPEN_READONLY);
	if (sqlite3_open_v2(path, &c->db, flags, NULL) != SQLITE_OK) {
		char buf[256];
		log_error("store.open_failed", "path=%s error=%s", path,
			  log_quote(buf, sizeof(buf), c->db != NULL ? sqlite3_errmsg(c->db) : "?"));
		goto fail;
	}
	sqlite3_extended_result_codes(c->db, 1);
	sqlite3_busy_timeout(c->db, STORE_BUSY_TIMEOUT_MS);
	/* before anything touches subject_short (its triggers fire on every insert) */
	if (store_short_register(c->db) < 0) {
		log_error("store.open_failed", "path=%s error=no_fts5_tokenizer", path);
		goto fail;
	}
	char sql[256];
	if (writer) {
		/* auto_vacuum only takes effect before the first table exists, so it
		 * comes before anything else touches a new file. */
		snprintf(sql, sizeof(sql),
			 "PRAGMA auto_vacuum=INCREMENTAL; PRAGMA journal_mode=WAL;"
			 "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
			 "PRAGMA temp_store=MEMORY; PRAGMA cache_size=-%d;",
			 STORE_WRITER_CACHE_KIB);
	} else {
		snprintf(sql, sizeof(sql),
			 "PRAGMA query_only=ON; PRAGMA temp_store=MEMORY; PRAGMA cache_size=-%d;",
			 STORE_READER_CACHE_KIB);
	}
	if (store_exec(c->db, sql) < 0)
		goto fail;
	if (!writer) {
		bool slow = atomic_load(&store_slow_reads);
		sqlite3_progress_handler(c->db,
					 slow ? STORE_PROGRESS_SLOW_STEPS : STORE_PROGRESS_STEPS,
					 store_read_progress, NULL);
	}
	if (writer) {
		/* journal_mode answers with the mode it got; insist on WAL. */
		sqlite3_stmt *s = NULL;
		bool wal = false;
		if (sqlite3_prepare_v2(c->db, "PRAGMA journal_mode", -1, &s, NULL) == SQLITE_OK &&
		    sqlite3_step(s) == SQLITE_ROW)
			wal = strcmp((const char *)sqlite3_column_text(s, 0), "wal") == 0;
		sqlite3_finalize(s);
		if (!wal) {
			log_error("store.open_failed", "path=%s error=no_wal", path);
			goto fail;
		}
		/* Every commit must reach the disk before its 250: read back what the
		 * connection really does (2 = FULL, 3 = EXTRA) rather than trust the SET. */
		int sync = -1;
		s = NULL;
		if (sqlite3_prepare_v2(c->db, "PRAGMA synchronous", -1, &s, NULL) == SQLITE_OK &&
		    sqlite3_step(s) == SQLITE_ROW)
			sync = sqlite3_column_int(s, 0);
		sqlite3_finalize(s);
		if (sync < 2) {
			log_error("store.open_failed", "path=%s error=synchronous_%d", path, sync);
			goto fail;
		}
		c->synchronous = sync;
	}
	*out = c;
	return 0;
fail:
	store_conn_close(c);
	return -EIO;
}

/* --- read connection pool ----------------------------------------------- */

static int store_reader_get(struct store *st, struct store_conn **out)
{
	/* A new read call: only its own statements can make it time out. */
	store_read_expired = false;
	pthread_mutex_lock(&st->pool_lock);
	struct store_conn *c = st->pool;
	if (c != NULL) {
		st->pool = c->next;
		st->npool--;
	}
	pthread_mutex_unlock(&st->pool_lock);
	if (c != NULL) {
		c->next = NULL;
		*out = c;
		return 0;
	}
	return store_conn_open(st->db_path, false, out);
}

/*
 * Returns c to the pool ready for any next call: every statement left half-run (one
 * interrupted by the deadline, or a caller's early exit) is reset, and a read
 * transaction left open is ended, so that the connection holds no snapshot.
 */
static void store_reader_put(struct store *st, struct store_conn *c)
{
	for (sqlite3_stmt *s = sqlite3_next_stmt(c->db, NULL); s != NULL;
	     s = sqlite3_next_stmt(c->db, s)) {
		if (sqlite3_stmt_busy(s))
			sqlite3_reset(s);
	}
	if (!sqlite3_get_autocommit(c->db)) {
		/* The deadline may have passed: the ROLLBACK itself must not be cut off. */
		int64_t deadline = store_read_deadline_ms;
		store_read_deadline_ms = 0;
		sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
		store_read_deadline_ms = deadline;
	}
	pthread_mutex_lock(&st->pool_lock);
	if (st->npool < STORE_READER_POOL_MAX) {
		c->next = st->pool;
		st->pool = c;
		st->npool++;
		c = NULL;
	}
	pthread_mutex_unlock(&st->pool_lock);
	store_conn_close(c);
}

/* --- messages in and out ------------------------------------------------ */

static bool store_new_message_valid(const struct store_new_message *m)
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

static const char sql_insert_message[] =
    "INSERT INTO messages (id, quarantine, received_at, sender, sender_lc, sender_domain,"
    " from_text, from_addr, from_addr_lc, from_domain, to_text, subject, message_id, date_ms,"
    " size, stored_size, verdict, score, gateway, client_address)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,"
    " ?18, ?19, ?20)";
static const char sql_insert_body[] =
    "INSERT INTO bodies (msg_seq, codec, data) VALUES (?1, ?2, ?3)";
/* A repeated recipient (any case) is stored once. */
static const char sql_insert_rcpt[] =
    "INSERT OR IGNORE INTO recipients (msg_id, address, address_lc, pos, state, updated_at)"
    " VALUES (?1, ?2, ?3, ?4, 0, ?5)";
static const char sql_insert_attachment[] =
    "INSERT INTO attachments (msg_id, idx, filename, content_type, size)"
    " VALUES (?1, ?2, ?3, ?4, ?5)";

static int store_step_done(struct store_conn *c, sqlite3_stmt *s, const char *what)
{
	int rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		store_log_sqlite(what, c->db);
		return -EIO;
	}
	return 0;
}

/* Writes one message (inside the caller's transaction). 0, -EINVAL or -EIO. */
static int store_insert_message(struct store_conn *c, struct store_new_message *m)
{
	if (!store_new_message_valid(m))
		return -EINVAL;
	/* a retried PVO transfer: its memberships join the message it repeats */
	char existing[37];
	int rc = store_sqlite_pvo_existing(c, m, existing);
	if (rc < 0)
		return rc;
	if (existing[0] != '\0') {
		if (m->stored_as != NULL)
			snprintf(m->stored_as, 37, "%s", existing);
		return store_sqlite_pvo_insert(c, m, existing);
	}
	if (m->stored_as != NULL)
		snprintf(m->stored_as, 37, "%s", m->id);
	rc = store_new_message_prepare(m);
	if (rc < 0)
		return rc;
	char *sender_lc = store_lc(m->sender);
	char *sender_domain = store_domain_lc(m->sender);
	char *from_lc = m->from_addr != NULL ? store_lc(m->from_addr) : NULL;
	char *from_domain = m->from_addr != NULL ? store_domain_lc(m->from_addr) : NULL;
	rc = -EIO;
	sqlite3_stmt *s = store_stmt(c, sql_insert_message);
	if (s == NULL)
		goto fail;
	sqlite3_bind_text(s, 1, m->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, m->quarantine, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, m->received_at);
	sqlite3_bind_text(s, 4, m->sender, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 5, sender_lc, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 6, sender_domain, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 7, m->from, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 8, m->from_addr, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 9, from_lc, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 10, from_domain, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 11, m->to, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 12, m->subject, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 13, m->message_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 14, m->date_ms);
	sqlite3_bind_int64(s, 15, (sqlite3_int64)m->raw_len);
	sqlite3_bind_int64(s, 16, (sqlite3_int64)m->packed_len);
	sqlite3_bind_text(s, 17, m->verdict, -1, SQLITE_STATIC);
	if (m->has_score)
		sqlite3_bind_double(s, 18, m->score);
	sqlite3_bind_text(s, 19, m->gateway, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 20, m->client_address, -1, SQLITE_STATIC);
	if (store_step_done(c, s, "insert_message") < 0)
		goto fail;

	/* the row just inserted (rows written by triggers do not count) */
	sqlite3_int64 seq = sqlite3_last_insert_rowid(c->db);
	if ((s = store_stmt(c, sql_insert_body)) == NULL)
		goto fail;
	sqlite3_bind_int64(s, 1, seq);
	sqlite3_bind_text(s, 2, "zstd", -1, SQLITE_STATIC);
	sqlite3_bind_blob64(s, 3, m->packed, m->packed_len, SQLITE_STATIC);
	if (store_step_done(c, s, "insert_body") < 0)
		goto fail;

	for (size_t i = 0; i < m->nrecipients; i++) {
		if ((s = store_stmt(c, sql_insert_rcpt)) == NULL)
			goto fail;
		char *lc = store_lc(m->recipients[i]);
		sqlite3_bind_text(s, 1, m->id, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, m->recipients[i], -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 3, lc, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 4, (sqlite3_int64)i);
		sqlite3_bind_int64(s, 5, m->received_at);
		int r = store_step_done(c, s, "insert_recipient");
		free(lc);
		if (r < 0)
			goto fail;
	}
	for (size_t i = 0; i < m->nattachments; i++) {
		if ((s = store_stmt(c, sql_insert_attachment)) == NULL)
			goto fail;
		sqlite3_bind_text(s, 1, m->id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, (sqlite3_int64)i);
		sqlite3_bind_text(s, 3, m->attachments[i].filename, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 4, m->attachments[i].content_type, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 5, (sqlite3_int64)m->attachments[i].size);
		if (store_step_done(c, s, "insert_attachment") < 0)
			goto fail;
	}
	if ((rc = store_sqlite_pvo_insert(c, m, m->id)) < 0)
		goto fail;
	rc = 0;
fail:
	free(sender_lc);
	free(sender_domain);
	free(from_lc);
	free(from_domain);
	return rc;
}

/* --- writer thread ------------------------------------------------------ */

static int store_begin(struct store *st)
{
	return store_exec(st->wconn->db, "BEGIN IMMEDIATE");
}

static int store_commit(struct store *st)
{
	if (store_exec(st->wconn->db, "COMMIT") < 0) {
		if (!sqlite3_get_autocommit(st->wconn->db))
			sqlite3_exec(st->wconn->db, "ROLLBACK", NULL, NULL, NULL);
		return -EIO;
	}
	atomic_fetch_add(&st->commits, 1);
	return 0;
}

static void store_rollback(struct store *st)
{
	if (!sqlite3_get_autocommit(st->wconn->db))
		sqlite3_exec(st->wconn->db, "ROLLBACK", NULL, NULL, NULL);
}

static void store_finish_pending(struct store_pending *p, int rc)
{
	if (rc < 0) {
		log_error("store.message_failed", "id=%s error=%d", p->m->id, rc);
	}
	p->done(p->arg, rc);
	store_new_message_free(p->m);
	free(p);
}

/*
 * One group commit. All messages in one transaction; the callbacks run only
 * after COMMIT returned. When the batch fails, every message is tried again in
 * its own transaction so one bad message cannot take the others down with it.
 */
static void store_write_batch(struct store *st, struct store_pending *list, size_t n)
{
	int rc = store_begin(st);
	for (struct store_pending *p = list; rc == 0 && p != NULL; p = p->next)
		rc = store_insert_message(st->wconn, p->m);
	if (rc == 0)
		rc = store_commit(st);
	else
		store_rollback(st);
	if (rc == 0) {
		atomic_fetch_add(&st->batches, 1);
		atomic_fetch_add(&st->batched_messages, n);
		while (list != NULL) {
			struct store_pending *next = list->next;
			store_finish_pending(list, 0);
			list = next;
		}
		return;
	}
	if (n > 1)
		log_warn("store.batch_failed", "messages=%zu error=%d retry=single", n, rc);
	while (list != NULL) {
		struct store_pending *next = list->next;
		int r = store_new_message_valid(list->m) ? store_begin(st) : -EINVAL;
		if (r == 0) {
			r = store_insert_message(st->wconn, list->m);
			if (r == 0)
				r = store_commit(st);
			else
				store_rollback(st);
		}
		/* Only an invalid message is the caller's fault; the rest is storage. */
		store_finish_pending(list, r == -EINVAL ? -EINVAL : (r < 0 ? -EIO : 0));
		list = next;
	}
}

static void store_run_job_tx(struct store *st, struct store_job *job)
{
	int rc = store_begin(st);
	if (rc == 0) {
		rc = job->fn(st, st->wconn, job->arg);
		if (rc >= 0)
			rc = store_commit(st);
		else
			store_rollback(st);
	}
	pthread_mutex_lock(&st->lock);
	job->rc = rc;
	job->finished = true;
	pthread_cond_broadcast(&st->done);
	pthread_mutex_unlock(&st->lock);
}

static void *store_writer_main(void *arg)
{
	struct store *st = arg;
	pthread_mutex_lock(&st->lock);
	for (;;) {
		while (!st->stopping && st->pending_head == NULL && st->jobs_head == NULL)
			pthread_cond_wait(&st->wake, &st->lock);
		if (st->stopping && st->pending_head == NULL && st->jobs_head == NULL)
			break;
		if (st->batch_wait_us > 0 && st->jobs_head == NULL && !st->stopping &&
		    st->npending < st->batch_max) {
			/* Let the batch fill a little: fewer fsyncs under moderate load. */
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			long ns = ts.tv_nsec + (long)st->batch_wait_us * 1000L;
			ts.tv_sec += ns / 1000000000L;
			ts.tv_nsec = ns % 1000000000L;
			pthread_cond_timedwait(&st->wake, &st->lock, &ts);
		}
		/* Take up to batch_max messages and at most one job, so that neither
		 * ingest nor maintenance can starve the other. */
		struct store_pending *batch = st->pending_head, *last = NULL;
		size_t n = 0;
		for (struct store_pending *p = batch; p != NULL && n < st->batch_max; p = p->next) {
			last = p;
			n++;
		}
		if (last != NULL) {
			st->pending_head = last->next;
			if (st->pending_head == NULL)
				st->pending_tail = NULL;
			last->next = NULL;
			st->npending -= n;
		}
		struct store_job *job = st->jobs_head;
		if (job != NULL) {
			st->jobs_head = job->next;
			if (st->jobs_head == NULL)
				st->jobs_tail = NULL;
			job->next = NULL;
		}
		pthread_mutex_unlock(&st->lock);
		if (n > 0)
			store_write_batch(st, batch, n);
		if (job != NULL)
			store_run_job_tx(st, job);
		pthread_mutex_lock(&st->lock);
	}
	pthread_mutex_unlock(&st->lock);
	return NULL;
}

/*
 * Runs fn on the writer thread inside one transaction (committed when fn returns
 * >= 0, rolled back otherwise) and waits for it. Returns fn's result, -EIO when
 * the commit failed, -ESHUTDOWN when closing, -EDEADLK from the writer itself
 * (e.g. a done callback calling back into the store).
 */
static int store_run_job(struct store *st, int (*fn)(struct store *, struct store_conn *, void *),
			 void *arg)
{
	if (st->writer_started && pthread_equal(pthread_self(), st->writer))
		return -EDEADLK;
	struct store_job job = {.fn = fn, .arg = arg};
	pthread_mutex_lock(&st->lock);
	if (st->stopping) {
		pthread_mutex_unlock(&st->lock);
		return -ESHUTDOWN;
	}
	if (st->jobs_tail != NULL)
		st->jobs_tail->next = &job;
	else
		st->jobs_head = &job;
	st->jobs_tail = &job;
	pthread_cond_signal(&st->wake);
	while (!job.finished)
		pthread_cond_wait(&st->done, &st->lock);
	pthread_mutex_unlock(&st->lock);
	return job.rc;
}

int store_sqlite_submit_message(struct store *st, struct store_new_message *m, store_done_fn done,
				void *arg)
{
	struct store_pending *p = xcalloc(1, sizeof(*p));
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

static int store_mkdirs(const char *dir)
{
	char *p = xstrdup(dir);
	int rc = 0;
	for (char *s = p + 1;; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		char c = *s;
		*s = '\0';
		if (mkdir(p, 0700) < 0 && errno != EEXIST) {
			rc = -errno;
			log_error("store.mkdir_failed", "dir=%s error=%s", p, strerror(errno));
			break;
		}
		*s = c;
		if (c == '\0')
			break;
	}
	free(p);
	return rc;
}

static int store_migrate(struct store_conn *c)
{
	sqlite3_stmt *s = NULL;
	int version = -1;
	if (sqlite3_prepare_v2(c->db, "PRAGMA user_version", -1, &s, NULL) == SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW)
		version = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	if (version < 0) {
		store_log_sqlite("user_version", c->db);
		return -EIO;
	}
	if (version > STORE_SCHEMA_VERSION) {
		log_error("store.schema_too_new", "version=%d supported=%d", version,
			  STORE_SCHEMA_VERSION);
		return -EPROTO;
	}
	for (int v = version; v < STORE_SCHEMA_VERSION; v++) {
		char sql[64];
		snprintf(sql, sizeof(sql), "PRAGMA user_version=%d", v + 1);
		if (store_exec(c->db, "BEGIN IMMEDIATE") < 0)
			return -EIO;
		if (store_exec(c->db, store_migrations[v]) < 0 || store_exec(c->db, sql) < 0 ||
		    store_exec(c->db, "COMMIT") < 0) {
			sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
			return -EIO;
		}
		log_info("store.migrated", "version=%d", v + 1);
	}
	return 0;
}

int store_sqlite_open(const struct store_options *opt, struct store **out)
{
	if (opt == NULL || opt->dir == NULL || opt->dir[0] == '\0' ||
	    opt->batch_max > STORE_BATCH_MAX_LIMIT)
		return -EINVAL;
	int rc = store_mkdirs(opt->dir);
	if (rc < 0)
		return rc;
	char node[STORE_NODE_NAME_MAX + 1];
	if (store_node_name_of(opt, node) < 0)
		return -EINVAL;
	struct store *st = xcalloc(1, sizeof(*st));
	st->ops = &store_sqlite_ops;
	st->dir = xstrdup(opt->dir);
	st->node = xstrdup(node);
	st->started_at = clock_now_ms();
	st->db_path = xasprintf("%s/%s", opt->dir, STORE_DB_NAME);
	st->batch_max = opt->batch_max > 0 ? opt->batch_max : STORE_BATCH_MAX_DEFAULT;
	st->batch_wait_us = opt->batch_wait_us;
	pthread_mutex_init(&st->lock, NULL);
	pthread_cond_init(&st->wake, NULL);
	pthread_cond_init(&st->done, NULL);
	pthread_mutex_init(&st->pool_lock, NULL);
	if (fault_is_armed("store_slow_read"))
		atomic_store(&store_slow_reads, true);
	rc = store_conn_open(st->db_path, true, &st->wconn);
	if (rc < 0)
		goto fail;
	rc = store_migrate(st->wconn);
	if (rc < 0)
		goto fail;
	if (pthread_create(&st->writer, NULL, store_writer_main, st) != 0) {
		rc = -EAGAIN;
		goto fail;
	}
	st->writer_started = true;
	log_info("store.open", "path=%s schema=%d batch_max=%u journal_mode=wal synchronous=%s",
		 st->db_path, STORE_SCHEMA_VERSION, st->batch_max,
		 st->wconn->synchronous == 3 ? "extra" : "full");
	*out = st;
	return 0;
fail:
	store_sqlite_close(st);
	return rc;
}

void store_sqlite_close(struct store *st)
{
	if (st == NULL)
		return;
	pthread_mutex_lock(&st->lock);
	st->stopping = true;
	pthread_cond_signal(&st->wake);
	pthread_mutex_unlock(&st->lock);
	if (st->writer_started)
		pthread_join(st->writer, NULL);
	if (st->wconn != NULL) {
		/* Fold the WAL back into the database so a closed store is one file. */
		sqlite3_wal_checkpoint_v2(st->wconn->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL,
					  NULL);
	}
	while (st->pool != NULL) {
		struct store_conn *c = st->pool;
		st->pool = c->next;
		store_conn_close(c);
	}
	store_conn_close(st->wconn);
	pthread_mutex_destroy(&st->lock);
	pthread_cond_destroy(&st->wake);
	pthread_cond_destroy(&st->done);
	pthread_mutex_destroy(&st->pool_lock);
	free(st->dir);
	free(st->db_path);
	free(st->node);
	free(st);
}

void store_sqlite_debug_counters(struct store *st, struct store_debug_counters *out)
{
	out->commits = atomic_load(&st->commits);
	out->batches = atomic_load(&st->batches);
	out->batched_messages = atomic_load(&st->batched_messages);
}

/* --- reading messages --------------------------------------------------- */

#define STORE_MSG_COLS                                                                             \
	"m.id, m.quarantine, m.received_at, m.sender, m.from_text, m.from_addr, m.to_text,"        \
	" m.subject, m.message_id, m.date_ms, m.size, m.verdict, m.score, m.gateway,"              \
	" m.client_address"

static struct store_message *store_row_message(sqlite3_stmt *s)
{
	struct store_message *m = xcalloc(1, sizeof(*m));
	snprintf(m->id, sizeof(m->id), "%s", (const char *)sqlite3_column_text(s, 0));
	m->quarantine = store_col_dup(s, 1);
	m->received_at = sqlite3_column_int64(s, 2);
	m->sender = store_col_dup(s, 3);
	m->from = store_col_dup(s, 4);
	m->from_addr = store_col_dup(s, 5);
	m->to = store_col_dup(s, 6);
	m->subject = store_col_dup(s, 7);
	m->message_id = store_col_dup(s, 8);
	m->date_ms = sqlite3_column_int64(s, 9);
	m->size = (uint64_t)sqlite3_column_int64(s, 10);
	m->verdict = store_col_dup(s, 11);
	m->has_score = sqlite3_column_type(s, 12) != SQLITE_NULL;
	m->score = m->has_score ? sqlite3_column_double(s, 12) : 0;
	m->gateway = store_col_dup(s, 13);
	m->client_address = store_col_dup(s, 14);
	return m;
}

static const char sql_get_rcpts[] = "SELECT address, state, reply, updated_at FROM recipients"
				    " WHERE msg_id = ?1 ORDER BY pos";
static const char sql_get_attachments[] =
    "SELECT filename, content_type, size FROM attachments WHERE msg_id = ?1 ORDER BY idx";
static const char sql_get_message[] = "SELECT " STORE_MSG_COLS " FROM messages m WHERE m.id = ?1";

static int store_load_recipients(struct store_conn *c, struct store_message *m)
{
	sqlite3_stmt *s = store_stmt(c, sql_get_rcpts);
	if (s == NULL)
		return -EIO;
	sqlite3_bind_text(s, 1, m->id, -1, SQLITE_STATIC);
	size_t cap = 0;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (m->nrecipients == cap) {
			cap = cap > 0 ? cap * 2 : 4;
			m->recipients = xreallocarray(m->recipients, cap, sizeof(*m->recipients));
		}
		struct store_recipient *r = &m->recipients[m->nrecipients++];
		r->address = store_col_dup(s, 0);
		r->state = (enum store_rcpt_state)sqlite3_column_int(s, 1);
		r->reply = store_col_dup(s, 2);
		r->updated_at = sqlite3_column_int64(s, 3);
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		store_log_sqlite("load_recipients", c->db);
		return -EIO;
	}
	return 0;
}

static int store_load_attachments(struct store_conn *c, struct store_message *m)
{
	sqlite3_stmt *s = store_stmt(c, sql_get_attachments);
	if (s == NULL)
		return -EIO;
	sqlite3_bind_text(s, 1, m->id, -1, SQLITE_STATIC);
	size_t cap = 0;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (m->nattachments == cap) {
			cap = cap > 0 ? cap * 2 : 4;
			m->attachments =
			    xreallocarray(m->attachments, cap, sizeof(*m->attachments));
		}
		struct store_attachment *a = &m->attachments[m->nattachments++];
		a->filename = store_col_dup(s, 0);
		a->content_type = store_col_dup(s, 1);
		a->size = (uint64_t)sqlite3_column_int64(s, 2);
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		store_log_sqlite("load_attachments", c->db);
		return -EIO;
	}
	return 0;
}

int store_sqlite_get(struct store *st, const char *id, struct store_message **out)
{
	if (!ids_valid(id))
		return -ENOENT;
	struct store_conn *c = NULL;
	struct store_message *m = NULL;
	int rc = store_reader_get(st, &c);
	if (rc < 0)
		return rc;
	rc = -EIO;
	if (store_exec(c->db, "BEGIN") < 0)
		goto fail;
	sqlite3_stmt *s = store_stmt(c, sql_get_message);
	if (s == NULL)
		goto fail;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	int r = sqlite3_step(s);
	if (r == SQLITE_ROW)
		m = store_row_message(s);
	sqlite3_reset(s);
	if (r == SQLITE_DONE) {
		rc = -ENOENT;
		goto fail;
	}
	if (r != SQLITE_ROW) {
		store_log_sqlite("get", c->db);
		goto fail;
	}
	if ((rc = store_load_recipients(c, m)) < 0 || (rc = store_load_attachments(c, m)) < 0 ||
	    (rc = store_sqlite_pvo_load(c, m)) < 0)
		goto fail;
	*out = m;
	m = NULL;
	rc = 0;
fail:
	store_message_free(m);
	store_reader_put(st, c);
	return store_read_result(rc);
}

static const char sql_get_body[] = "SELECT b.codec, b.data, m.size FROM messages m"
				   " JOIN bodies b ON b.msg_seq = m.seq WHERE m.id = ?1";

int store_sqlite_get_raw(struct store *st, const char *id, unsigned char **raw, size_t *len)
{
	if (!ids_valid(id))
		return -ENOENT;
	struct store_conn *c = NULL;
	int rc = store_reader_get(st, &c);
	if (rc < 0)
		return rc;
	rc = -EIO;
	sqlite3_stmt *s = store_stmt(c, sql_get_body);
	if (s == NULL)
		goto fail;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	int r = sqlite3_step(s);
	if (r == SQLITE_DONE) {
		rc = -ENOENT;
		goto fail;
	}
	if (r != SQLITE_ROW) {
		store_log_sqlite("get_raw", c->db);
		goto fail;
	}
	const char *codec = (const char *)sqlite3_column_text(s, 0);
	const void *data = sqlite3_column_blob(s, 1);
	size_t dlen = (size_t)sqlite3_column_bytes(s, 1);
	uint64_t size = (uint64_t)sqlite3_column_int64(s, 2);
	unsigned char *buf = NULL;
	if (store_body_unpack(id, codec, data, dlen, size, &buf) < 0)
		goto fail;
	*raw = buf;
	*len = size;
	rc = 0;
fail:
	if (s != NULL)
		sqlite3_reset(s);
	store_reader_put(st, c);
	return store_read_result(rc);
}

/* --- listing ------------------------------------------------------------ */

/*
 * Values bound to a statement built at run time. Text is borrowed or owned. At most
 * about 3000 variables (ids, addresses twice): SQLite allows 32766.
 */
struct store_binds {
	struct {
		bool is_text;
		const char *text;
		int64_t num;
	} v[STORE_BULK_MAX_IDS + 2 * STORE_USER_MAX_ADDRESSES + 32];
	int n;
	char *owned[STORE_USER_MAX_ADDRESSES + 16];
	int nowned;
};

static void store_bind_text(struct store_binds *b, const char *t)
{
	b->v[b->n].is_text = true;
	b->v[b->n].text = t;
	b->n++;
}

/* Binds t and frees it with the binds. */
static void store_bind_owned(struct store_binds *b, char *t)
{
	b->owned[b->nowned++] = t;
	store_bind_text(b, t);
}

static void store_bind_int(struct store_binds *b, int64_t v)
{
	b->v[b->n].is_text = false;
	b->v[b->n].num = v;
	b->n++;
}

static void store_binds_apply(const struct store_binds *b, sqlite3_stmt *s)
{
	for (int i = 0; i < b->n; i++) {
		if (b->v[i].is_text)
			sqlite3_bind_text(s, i + 1, b->v[i].text, -1, SQLITE_TRANSIENT);
		else
			sqlite3_bind_int64(s, i + 1, b->v[i].num);
	}
}

static void store_binds_clear(struct store_binds *b)
{
	for (int i = 0; i < b->nowned; i++)
		free(b->owned[i]);
	b->nowned = 0;
	b->n = 0;
}

/* An FTS5 phrase: the text in double quotes, inner quotes doubled. */
static char *store_fts_phrase(const char *s)
{
	char *r = xmalloc(2 * strlen(s) + 3);
	char *p = r;
	*p++ = '"';
	for (; *s != '\0'; s++) {
		if (*s == '"')
			*p++ = '"';
		*p++ = *s;
	}
	*p++ = '"';
	*p = '\0';
	return r;
}

/* A LIKE pattern matching s anywhere, with \ as the escape character. */
static char *store_like_pattern(const char *s)
{
	char *r = xmalloc(2 * strlen(s) + 3);
	char *p = r;
	*p++ = '%';
	for (; *s != '\0'; s++) {
		if (*s == '%' || *s == '_' || *s == '\\')
			*p++ = '\\';
		*p++ = *s;
	}
	*p++ = '%';
	*p = '\0';
	return r;
}

/*
 * Appends " AND ..." terms for f and the keyset cursor to the SQL in sb and their
 * values to b. 0, or -EINVAL for a filter outside its limits.
 *
 * Index choice: without statistics SQLite may prefer an index that returns rows
 * already in id order (quarantine, id) over a far more selective one and then
 * scan a million rows for one user's fifty. So only the most selective kind of
 * term present may drive the query (ids > recipients > sender > subject > time >
 * quarantine); the others are written with a unary "+", which keeps them as
 * plain filters.
 */
struct store_sql {
	char *s;
	size_t len, cap;
};

static void store_sql_add(struct store_sql *q, const char *s)
{
	store_strbuf_add(&q->s, &q->len, &q->cap, s);
}

/*
 * Prepares the statement built in q with the values in b, and frees q and b
 * (both heap-owned by the caller until now). what names the step in the log.
 * 0 with *out set, -EIO when SQLite refuses the statement.
 */
static int store_prepare_built(struct store_conn *c, struct store_sql *q, struct store_binds *b,
			       const char *what, sqlite3_stmt **out)
{
	int rc = -EIO;
	if (sqlite3_prepare_v2(c->db, q->s, -1, out, NULL) != SQLITE_OK)
		store_log_sqlite(what, c->db);
	else {
		store_binds_apply(b, *out);
		rc = 0;
	}
	store_binds_clear(b);
	free(b);
	free(q->s);
	return rc;
}

enum store_driver {
	STORE_DRIVE_NONE = 0,
	STORE_DRIVE_QUARANTINE,
	STORE_DRIVE_TIME,
	STORE_DRIVE_SUBJECT,
	STORE_DRIVE_SENDER,
	STORE_DRIVE_RECIPIENT,
	STORE_DRIVE_IDS,
};

/* Which kind of term drives a query for f (the most selective one present). */
static enum store_driver store_filter_driver(const struct store_filter *f)
{
	if (f == NULL)
		return STORE_DRIVE_NONE;
	bool scoped = (f->recipient != NULL && f->recipient[0] != '\0') || f->addresses != NULL;
	return f->ids != NULL				     ? STORE_DRIVE_IDS
	       : scoped					     ? STORE_DRIVE_RECIPIENT
	       : f->sender != NULL && f->sender[0] != '\0'   ? STORE_DRIVE_SENDER
	       : f->subject != NULL && f->subject[0] != '\0' ? STORE_DRIVE_SUBJECT
	       : f->since != 0 || f->until != 0		     ? STORE_DRIVE_TIME
	       : f->quarantine != NULL			     ? STORE_DRIVE_QUARANTINE
							     : STORE_DRIVE_NONE;
}

/* list_order (migration 5): how far id order may stray from seq order and received_at. */
struct store_order {
	int64_t max_late;
	int64_t id_ahead;
	int64_t id_behind;
};

static const char sql_list_order[] = "SELECT max_late, id_ahead, id_behind FROM list_order";

/* Reads list_order inside the caller's read transaction. 0 or -EIO. */
static int store_read_order(struct store_conn *c, struct store_order *o)
{
	sqlite3_stmt *s = store_stmt(c, sql_list_order);
	if (s == NULL)
		return -EIO;
	int r = sqlite3_step(s);
	if (r == SQLITE_ROW) {
		o->max_late = sqlite3_column_int64(s, 0);
		o->id_ahead = sqlite3_column_int64(s, 1);
		o->id_behind = sqlite3_column_int64(s, 2);
	}
	sqlite3_reset(s);
	if (r != SQLITE_ROW) {
		store_log_sqlite("list_order", c->db);
		return -EIO;
	}
	return 0;
}

/* The greatest time a UUIDv7 can hold (48 bits of milliseconds). */
#define STORE_ID_MS_MAX (((int64_t)1 << 48) - 1)

/*
 * The smallest id text whose time is ms ("0190f5c2-8b1e"): id >= prefix exactly
 * when the id's time >= ms. A new string.
 */
static char *store_id_prefix(int64_t ms)
{
	uint64_t t = (uint64_t)(ms < 0 ? 0 : ms > STORE_ID_MS_MAX ? STORE_ID_MS_MAX : ms);
	return xasprintf("%08llx-%04llx", (unsigned long long)(t >> 16),
			 (unsigned long long)(t & 0xffff));
}

/*
 * walk: the query is driven by a subject index walked in seq order
 * (store_walk), which binds the subject term itself; leave it out here.
 */
static int store_filter_sql(const struct store_filter *f, const char *cursor,
			    const struct store_order *o, bool walk, struct store_sql *q,
			    struct store_binds *b)
{
	static const struct store_filter none;
	if (f == NULL)
		f = &none;
	int state;
	if (store_filter_check(f, &state) < 0)
		return -EINVAL;
	bool scoped = (f->recipient != NULL && f->recipient[0] != '\0') || f->addresses != NULL;
	bool has_sender = f->sender != NULL && f->sender[0] != '\0';
	bool has_subject = f->subject != NULL && f->subject[0] != '\0';
	enum store_driver drive = store_filter_driver(f);
#define STORE_IX(d) (drive == (d) ? " AND " : " AND +")

	if (f->ids != NULL) {
		store_sql_add(q, " AND m.id IN (");
		for (size_t i = 0; i < f->nids; i++) {
			store_sql_add(q, i > 0 ? ",?" : "?");
			store_bind_text(b, f->ids[i] != NULL ? f->ids[i] : "");
		}
		store_sql_add(q, ")");
	}
	if (scoped) {
		/* Driven by recipients(address_lc, msg_id): one user's mail only. */
		store_sql_add(q, drive == STORE_DRIVE_RECIPIENT ? " AND m.id IN" : " AND +m.id IN");
		store_sql_add(q, " (SELECT r.msg_id FROM recipients r WHERE 1");
		if (f->recipient != NULL && f->recipient[0] != '\0') {
			store_sql_add(q, " AND r.address_lc = ?");
			store_bind_owned(b, store_lc(f->recipient));
		}
		if (f->addresses != NULL) {
			store_sql_add(q, " AND r.address_lc IN (''");
			for (size_t i = 0; i < f->naddresses; i++) {
				store_sql_add(q, ",?");
				store_bind_owned(b, store_lc(f->addresses[i]));
			}
			store_sql_add(q, ")");
		}
		if (state >= 0) {
			store_sql_add(q, " AND r.state = ?");
			store_bind_int(b, state);
		}
		if (cursor != NULL) {
			store_sql_add(q, " AND r.msg_id < ?");
			store_bind_text(b, cursor);
		}
		store_sql_add(q, ")");
	} else if (state == STORE_RCPT_QUARANTINED) {
		store_sql_add(q, " AND m.held > 0");
	} else if (state >= 0) {
		store_sql_add(q, " AND EXISTS (SELECT 1 FROM recipients r"
				 " WHERE r.msg_id = m.id AND r.state = ?)");
		store_bind_int(b, state);
	}
	if (has_sender) {
		const char *at = strchr(f->sender, '@');
		const char *ix = STORE_IX(STORE_DRIVE_SENDER);
		char *lc;
		if (at != NULL && at != f->sender) {
			/* an address: the envelope sender or the From: address */
			lc = store_lc(f->sender);
			store_sql_add(q, ix);
			store_sql_add(q, "(m.sender_lc = ? OR m.from_addr_lc = ?)");
		} else {
			/* a domain, "x.jp" or "@x.jp" */
			lc = store_lc(at != NULL ? at + 1 : f->sender);
			store_sql_add(q, ix);
			store_sql_add(q, "(m.sender_domain = ? OR m.from_domain = ?)");
		}
		store_bind_owned(b, lc);
		store_bind_text(b, lc);
	}
	if (has_subject && !walk) {
		if (store_short_chars(f->subject) >= STORE_FTS_MIN_CHARS) {
			/* The trigram index folds case (also beyond ASCII) and matches
			 * the phrase as a substring. */
			store_sql_add(q, STORE_IX(STORE_DRIVE_SUBJECT));
			store_sql_add(q, "m.seq IN (SELECT rowid FROM subject_fts"
					 " WHERE subject_fts MATCH ?)");
			store_bind_owned(b, store_fts_phrase(f->subject));
		} else if (drive == STORE_DRIVE_SUBJECT) {
			/* 1-2 characters: their own index (store_short.c), which folds
			 * ASCII case as LIKE does. */
			store_sql_add(q, " AND m.seq IN (SELECT rowid FROM subject_short"
					 " WHERE subject_short MATCH ?)");
			store_bind_owned(b, store_fts_phrase(f->subject));
		} else {
			/* a filter over the few rows another index picked */
			store_sql_add(q, " AND m.subject LIKE ? ESCAPE '\\'");
			store_bind_owned(b, store_like_pattern(f->subject));
		}
	}
	bool cursor_done = false;
	if (drive == STORE_DRIVE_TIME) {
		/*
		 * A range of the id index, walked newest first and stopped at the
		 * page: the id carries its time, which differs from received_at by at
		 * most id_ahead/id_behind (0 when ingest stamps both from one clock
		 * reading). received_at itself is then checked on each row.
		 */
		if (f->since != 0) {
			store_sql_add(q, " AND m.id >= ?");
			store_bind_owned(b, store_id_prefix(f->since - o->id_behind));
		}
		char *hi = NULL;
		if (f->until != 0 && f->until <= STORE_ID_MS_MAX - o->id_ahead)
			hi = store_id_prefix(f->until + o->id_ahead);
		if (cursor != NULL && (hi == NULL || strcmp(cursor, hi) < 0)) {
			free(hi);
			hi = xstrdup(cursor);
		}
		if (hi != NULL) {
			store_sql_add(q, " AND m.id < ?");
			store_bind_owned(b, hi);
		}
		cursor_done = true;
	}
	if (f->since != 0) {
		store_sql_add(q, " AND +m.received_at >= ?");
		store_bind_int(b, f->since);
	}
	if (f->until != 0) {
		store_sql_add(q, " AND +m.received_at < ?");
		store_bind_int(b, f->until);
	}
	if (f->quarantine != NULL && strcmp(f->quarantine, "spam") == 0) {
		store_sql_add(q, STORE_IX(STORE_DRIVE_QUARANTINE));
		store_sql_add(q, "m.quarantine = ?");
		store_bind_text(b, f->quarantine);
	} else if (f->quarantine != NULL) {
		/* a gateway's local quarantine, or a PVO one through its memberships */
		store_sql_add(q, " AND (m.quarantine = ? OR m.id IN"
				 " (SELECT w.msg_id FROM memberships w WHERE w.quarantine = ?))");
		store_bind_text(b, f->quarantine);
		store_bind_text(b, f->quarantine);
	}
	if (f->verdict != NULL) {
		store_sql_add(q, " AND +m.verdict = ?");
		store_bind_text(b, f->verdict);
	}
	if (f->gateway != NULL) {
		store_sql_add(q, " AND +m.gateway = ?");
		store_bind_text(b, f->gateway);
	}
	if (f->exclude_pvo || (f->scope_pvo && f->npvo_quarantines == 0))
		store_sql_add(q, " AND +m.quarantine <> '" STORE_PVO_MARKER "'");
	else if (f->scope_pvo) {
		/*
		 * An operator's: PVO messages only through a membership in theirs,
		 * looked up by the row's own key (msg_id, quarantine) for the PVO
		 * rows a page walks, not every membership of their quarantines.
		 */
		store_sql_add(q, " AND (+m.quarantine <> '" STORE_PVO_MARKER "' OR EXISTS"
				 " (SELECT 1 FROM memberships w WHERE w.msg_id = m.id"
				 " AND w.quarantine IN (");
		for (size_t i = 0; i < f->npvo_quarantines; i++) {
			store_sql_add(q, i > 0 ? ",?" : "?");
			store_bind_text(b,
					f->pvo_quarantines[i] != NULL ? f->pvo_quarantines[i] : "");
		}
		store_sql_add(q, ")))");
	}
	if (cursor != NULL && !cursor_done) {
		/* The keyset: usable in (quarantine, id), (sender_lc, id), ... and the
		 * id index itself; a plain filter after the other drivers. */
		bool ix = drive == STORE_DRIVE_NONE || drive == STORE_DRIVE_QUARANTINE ||
			  drive == STORE_DRIVE_SENDER;
		store_sql_add(q, ix ? " AND m.id < ?" : " AND +m.id < ?");
		store_bind_text(b, cursor);
	}
#undef STORE_IX
	return 0;
}

/*
 * Prepares "<head> FROM messages m WHERE <f> ORDER BY m.id DESC LIMIT n" on c,
 * with its values bound (copied). 0, -EINVAL or -EIO.
 */
static int store_prepare_filtered(struct store_conn *c, const char *head,
				  const struct store_filter *f, const char *cursor, size_t limit,
				  sqlite3_stmt **out)
{
	struct store_sql q = {0};
	struct store_binds *b = xcalloc(1, sizeof(*b));
	struct store_order o = {0};
	int rc = 0;
	if (store_filter_driver(f) == STORE_DRIVE_TIME && (rc = store_read_order(c, &o)) < 0)
		goto fail;
	store_sql_add(&q, head);
	store_sql_add(&q, " FROM messages m WHERE 1");
	rc = store_filter_sql(f, cursor, &o, false, &q, b);
	if (rc < 0)
		goto fail;
	store_sql_add(&q, " ORDER BY m.id DESC LIMIT ?");
	store_bind_int(b, (int64_t)limit);
	return store_prepare_built(c, &q, b, "prepare_list", out);
fail:
	store_binds_clear(b);
	free(b);
	free(q.s);
	return rc;
}

/*
 * A subject search that stops early (store_list when the subject drives).
 *
 * The subject indexes (subject_fts, subject_short) know rows by seq, and FTS5
 * hands out a term's rows in seq order, newest first, lazily: walking them and
 * stopping once the page is full costs the page, however many rows match. The
 * page is in id order, though, and seq (insertion) order is id order only up to
 * messages whose id is older than one inserted before them; list_order.max_late
 * bounds by how much. So the walk keeps the best limit+1 ids seen and stops at a
 * row whose id time t satisfies t + max_late < time of the worst id kept: every
 * row not yet walked was inserted before it, when the greatest id so far was at
 * most max_late newer than t, so none of them can still make the page.
 *
 * With a cursor the walk starts late enough to skip the earlier pages: a row
 * inserted after any message x with time(x) > time(cursor) + max_late is itself
 * newer than the cursor, so the walk starts at the seq of such an x. A time
 * range bounds the walk the same way at both ends (store_walk_range).
 */
struct store_walk_hit {
	int64_t seq;
	char id[37];
};

/* The subject index that answers f's term: trigrams from 3 characters on. */
static const char *store_subject_index(const struct store_filter *f)
{
	return store_short_chars(f->subject) >= STORE_FTS_MIN_CHARS ? "subject_fts"
								    : "subject_short";
}

/* Prepares the walk of f's subject index over seqs (low, high], newest first. */
static int store_prepare_walk(struct store_conn *c, const char *head, const struct store_filter *f,
			      const char *cursor, int64_t low, int64_t high, sqlite3_stmt **out)
{
	struct store_sql q = {0};
	struct store_binds *b = xcalloc(1, sizeof(*b));
	const char *ix = store_subject_index(f);
	char *sql = xasprintf("%s FROM %s CROSS JOIN messages m ON m.seq = %s.rowid"
			      " WHERE %s MATCH ? AND %s.rowid > ? AND %s.rowid <= ?",
			      head, ix, ix, ix, ix, ix);
	store_sql_add(&q, sql);
	free(sql);
	store_bind_owned(b, store_fts_phrase(f->subject));
	store_bind_int(b, low);
	store_bind_int(b, high);
	int rc = store_filter_sql(f, cursor, NULL, true, &q, b);
	if (rc < 0)
		goto fail;
	store_sql_add(&q, " ORDER BY ");
	store_sql_add(&q, ix);
	store_sql_add(&q, ".rowid DESC");
	return store_prepare_built(c, &q, b, "prepare_walk", out);
fail:
	store_binds_clear(b);
	free(b);
	free(q.s);
	return rc;
}

static const char sql_seq_from_id[] = "SELECT seq FROM messages WHERE id >= ?1 ORDER BY id LIMIT 1";
static const char sql_seq_before_id[] =
    "SELECT seq FROM messages WHERE id < ?1 ORDER BY id DESC LIMIT 1";

/*
 * The seqs the walk goes through (see above): (*low, *high]. Rows whose id time
 * is at least newer (the cursor's time + 1, or until + id_ahead) cannot be on
 * the page; every row inserted after a message x with time(x) >= newer +
 * max_late is such a row, so the walk starts at x. At the other end, rows whose
 * id time is below since - id_behind were received before since; every row
 * inserted before a message y with time(y) < since - id_behind - max_late
 * (older) is such a row, so the walk ends after y.
 */
static int store_walk_range(struct store_conn *c, const struct store_filter *f,
			    const struct store_order *o, const char *cursor, int64_t *low,
			    int64_t *high)
{
	*low = 0;
	*high = INT64_MAX;
	int64_t newer = STORE_ID_MS_MAX;
	if (cursor != NULL)
		newer = ids_uuidv7_time_ms(cursor) + 1;
	if (f->until != 0 && f->until < newer - o->id_ahead)
		newer = f->until + o->id_ahead;
	int64_t older = f->since != 0 ? f->since - o->id_behind - o->max_late : 0;
	for (int end = 0; end < 2; end++) {
		if (end == 0 ? newer >= STORE_ID_MS_MAX - o->max_late : older <= 0)
			continue;
		sqlite3_stmt *s = store_stmt(c, end == 0 ? sql_seq_from_id : sql_seq_before_id);
		if (s == NULL)
			return -EIO;
		char *prefix = store_id_prefix(end == 0 ? newer + o->max_late : older);
		sqlite3_bind_text(s, 1, prefix, -1, SQLITE_TRANSIENT);
		free(prefix);
		int r = sqlite3_step(s);
		if (r == SQLITE_ROW)
			*(end == 0 ? high : low) = sqlite3_column_int64(s, 0);
		sqlite3_reset(s);
		if (r != SQLITE_ROW && r != SQLITE_DONE) {
			store_log_sqlite("walk_range", c->db);
			return -EIO;
		}
	}
	return 0;
}

static const char sql_get_by_seq[] = "SELECT " STORE_MSG_COLS " FROM messages m WHERE m.seq = ?1";

/*
 * The newest keep (<= limit + 1) ids matching f after cursor, in *hits (new,
 * newest first), by walking the subject index. Inside the caller's read
 * transaction. 0, -EINVAL or -EIO.
 */
static int store_walk(struct store_conn *c, const struct store_filter *f, const char *cursor,
		      size_t keep, struct store_walk_hit **hits, size_t *nhits)
{
	struct store_order o;
	int64_t low, high;
	sqlite3_stmt *s = NULL;
	int rc = store_read_order(c, &o);
	if (rc < 0 || (rc = store_walk_range(c, f, &o, cursor, &low, &high)) < 0)
		return rc;
	if ((rc = store_prepare_walk(c, "SELECT m.seq, m.id", f, cursor, low, high, &s)) < 0)
		return rc;
	struct store_walk_hit *v = xcalloc(keep, sizeof(*v));
	size_t n = 0;
	int r;
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		const char *id = (const char *)sqlite3_column_text(s, 1);
		if (id == NULL)
			continue;
		if (n < keep || strcmp(id, v[n - 1].id) > 0) {
			/* insert in id order, newest first, dropping the oldest when full */
			size_t i = n < keep ? n : keep - 1;
			while (i > 0 && strcmp(id, v[i - 1].id) > 0) {
				v[i] = v[i - 1];
				i--;
			}
			v[i].seq = sqlite3_column_int64(s, 0);
			snprintf(v[i].id, sizeof(v[i].id), "%s", id);
			if (n < keep)
				n++;
		}
		/* no row left is newer than t + max_late */
		int64_t t = ids_uuidv7_time_ms(id);
		if (n == keep && ids_uuidv7_time_ms(v[keep - 1].id) > t + o.max_late)
			break;
	}
	if (r != SQLITE_ROW && r != SQLITE_DONE) {
		store_log_sqlite("walk", c->db);
		free(v);
		sqlite3_finalize(s);
		return -EIO;
	}
	sqlite3_finalize(s);
	*hits = v;
	*nhits = n;
	return 0;
}

/* True when store_list answers f by walking a subject index. */
static bool store_list_walks(const struct store_filter *f)
{
	return store_filter_driver(f) == STORE_DRIVE_SUBJECT;
}

int store_sqlite_debug_list_plan(struct store *st, const struct store_filter *f, const char *cursor,
				 char **plan)
{
	struct store_conn *c = NULL;
	sqlite3_stmt *s = NULL;
	int rc = store_reader_get(st, &c);
	if (rc < 0)
		return rc;
	if (store_list_walks(f))
		rc = store_prepare_walk(c, "EXPLAIN QUERY PLAN SELECT m.seq, m.id", f, cursor, 0,
					INT64_MAX, &s);
	else
		rc = store_prepare_filtered(c, "EXPLAIN QUERY PLAN SELECT " STORE_MSG_COLS, f,
					    cursor, 50, &s);
	if (rc < 0)
		goto fail;
	char *buf = NULL;
	size_t len = 0, cap = 0;
	store_strbuf_add(&buf, &len, &cap, "");
	while (sqlite3_step(s) == SQLITE_ROW) {
		store_strbuf_add(&buf, &len, &cap, (const char *)sqlite3_column_text(s, 3));
		store_strbuf_add(&buf, &len, &cap, "\n");
	}
	*plan = buf;
fail:
	sqlite3_finalize(s);
	store_reader_put(st, c);
	return store_read_result(rc);
}

/* The rows of hits, in their order, appended to v (room for n more). 0 or -EIO. */
static int store_load_hits(struct store_conn *c, const struct store_walk_hit *hits, size_t n,
			   struct store_message **v, size_t *nv)
{
	for (size_t i = 0; i < n; i++) {
		sqlite3_stmt *s = store_stmt(c, sql_get_by_seq);
		if (s == NULL)
			return -EIO;
		sqlite3_bind_int64(s, 1, hits[i].seq);
		int r = sqlite3_step(s);
		if (r == SQLITE_ROW)
			v[(*nv)++] = store_row_message(s);
		sqlite3_reset(s);
		if (r != SQLITE_ROW) {
			/* the walk saw it in this same read transaction */
			store_log_sqlite("list_hit", c->db);
			return -EIO;
		}
	}
	return 0;
}

int store_sqlite_list(struct store *st, const struct store_filter *f, size_t limit,
		      const char *cursor, struct store_message ***out, size_t *n,
		      char **next_cursor)
{
	if (limit < 1 || limit > STORE_LIST_LIMIT_MAX)
		return -EINVAL;
	if (cursor != NULL && !ids_valid(cursor))
		return -EINVAL;
	struct store_conn *c = NULL;
	sqlite3_stmt *s = NULL;
	struct store_message **v = NULL;
	struct store_walk_hit *hits = NULL;
	size_t nv = 0;
	int rc = store_reader_get(st, &c);
	if (rc < 0)
		return rc;
	if ((rc = store_exec(c->db, "BEGIN")) < 0)
		goto fail;
	v = xcalloc(limit + 1, sizeof(*v));
	if (store_list_walks(f)) {
		size_t nhits = 0;
		if ((rc = store_walk(c, f, cursor, limit + 1, &hits, &nhits)) < 0 ||
		    (rc = store_load_hits(c, hits, nhits, v, &nv)) < 0)
			goto fail;
	} else {
		/* One row more than asked tells whether there is a next page. */
		if ((rc = store_prepare_filtered(c, "SELECT " STORE_MSG_COLS, f, cursor, limit + 1,
						 &s)) < 0)
			goto fail;
		int r;
		while ((r = sqlite3_step(s)) == SQLITE_ROW)
			v[nv++] = store_row_message(s);
		if (r != SQLITE_DONE) {
			store_log_sqlite("list", c->db);
			rc = -EIO;
			goto fail;
		}
	}
	char *next = NULL;
	if (nv > limit) {
		store_message_free(v[limit]);
		v[limit] = NULL;
		nv = limit;
		next = xstrdup(v[limit - 1]->id);
	}
	for (size_t i = 0; i < nv; i++) {
		if ((rc = store_load_recipients(c, v[i])) < 0 ||
		    (rc = store_sqlite_pvo_load(c, v[i])) < 0) {
			free(next);
			goto fail;
		}
	}
	*out = v;
	*n = nv;
	*next_cursor = next;
	v = NULL;
	rc = 0;
fail:
	store_message_array_free(v, nv);
	free(hits);
	sqlite3_finalize(s);
	store_reader_put(st, c);
	return store_read_result(rc);
}

/* Up to limit ids matching f after cursor, newest first (bulk actions page with it). */
int store_sqlite_list_ids(struct store *st, const struct store_filter *f, const char *cursor,
			  size_t limit, char ***out, size_t *n)
{
	struct store_conn *c = NULL;
	sqlite3_stmt *s = NULL;
	char **v = NULL;
	size_t nv = 0;
	int rc = store_reader_get(st, &c);
	if (rc < 0)
		return rc;
	v = xcalloc(limit, sizeof(*v));
	if (store_list_walks(f)) {
		/* a subject: each batch costs a page, not every match (as store_list) */
		struct store_walk_hit *hits = NULL;
		size_t nhits = 0;
		if ((rc = store_exec(c->db, "BEGIN")) < 0 ||
		    (rc = store_walk(c, f, cursor, limit, &hits, &nhits)) < 0)
			goto fail;
		for (size_t i = 0; i < nhits; i++)
			v[nv++] = xstrdup(hits[i].id);
		free(hits);
	} else {
		if ((rc = store_prepare_filtered(c, "SELECT m.id", f, cursor, limit, &s)) < 0)
			goto fail;
		int r;
		while ((r = sqlite3_step(s)) == SQLITE_ROW)
			v[nv++] = store_col_dup(s, 0);
		if (r != SQLITE_DONE) {
			store_log_sqlite("list_ids", c->db);
			rc = -EIO;
			goto fail;
		}
	}
	*out = v;
	*n = nv;
	v = NULL;
	rc = 0;
fail:
	if (v != NULL) {
		for (size_t i = 0; i < nv; i++)
			free(v[i]);
		free(v);
	}
	sqlite3_finalize(s);
	store_reader_put(st, c);
	return store_read_result(rc);
}

/*
 * The counters count messages stored into a quarantine (spam, a gateway's local
 * ones); PVO messages count in their quarantines through held memberships.
 */
static const char sql_quarantines[] =
    "SELECT q.name, q.type, q.messages + coalesce(x.n, 0), q.bytes + coalesce(x.b, 0),"
    " coalesce(min((SELECT min(received_at) FROM messages WHERE quarantine = q.name"
    "  AND held > 0), x.oldest), (SELECT min(received_at) FROM messages"
    "  WHERE quarantine = q.name AND held > 0), x.oldest),"
    " coalesce(q.delete_after, 0), q.default_action, q.overflow_exempt, q.name = q.type"
    " FROM quarantines q LEFT JOIN (SELECT w.quarantine, count(*) AS n, sum(m.size) AS b,"
    "  min(w.entered_at) AS oldest FROM memberships w JOIN messages m ON m.id = w.msg_id"
    "  WHERE w.state = 0 GROUP BY w.quarantine) x ON x.quarantine = q.name"
    " WHERE q.type <> 'pvo' ORDER BY q.name";

int store_sqlite_quarantines(struct store *st, struct store_quarantine_stats **out, size_t *n)
{
	struct store_conn *c = NULL;
	struct store_quarantine_stats *v = NULL;
	size_t nv = 0, cap = 0;
	int rc = store_reader_get(st, &c);
	if (rc < 0)
		return rc;
	rc = -EIO;
	sqlite3_stmt *s = store_stmt(c, sql_quarantines);
	if (s == NULL)
		goto fail;
	int r;
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		if (nv == cap) {
			cap = cap > 0 ? cap * 2 : 4;
			v = xreallocarray(v, cap, sizeof(*v));
		}
		struct store_quarantine_stats *q = &v[nv++];
		memset(q, 0, sizeof(*q));
		q->name = store_col_dup(s, 0);
		q->type = store_col_dup(s, 1);
		q->messages = (uint64_t)sqlite3_column_int64(s, 2);
		q->bytes = (uint64_t)sqlite3_column_int64(s, 3);
		q->oldest = sqlite3_column_int64(s, 4); /* NULL reads as 0 */
		q->delete_after_ms = sqlite3_column_int64(s, 5);
		q->default_action = store_col_dup(s, 6);
		q->overflow_exempt = sqlite3_column_int(s, 7) != 0;
		q->system = sqlite3_column_int(s, 8) != 0;
	}
	sqlite3_reset(s);
	if (r != SQLITE_DONE) {
		store_log_sqlite("quarantines", c->db);
		goto fail;
	}
	for (size_t i = 0; i < nv; i++) {
		if (store_sqlite_pvo_operators(c, &v[i]) < 0)
			goto fail;
	}
	*out = v;
	*n = nv;
	v = NULL;
	rc = 0;
fail:
	store_quarantine_stats_free(v, nv);
	store_reader_put(st, c);
	return store_read_result(rc);
}

/* --- recipient state changes (writer jobs) ------------------------------ */

static const char sql_msg_exists[] = "SELECT 1 FROM messages WHERE id = ?1";
static const char sql_rcpt_exists[] =
    "SELECT 1 FROM recipients WHERE msg_id = ?1 AND address_lc = ?2";
static const char sql_rcpt_change_one[] =
    "UPDATE recipients SET state = ?3, updated_at = ?4"
    " WHERE msg_id = ?1 AND address_lc = ?2 AND state = 0 RETURNING address";
static const char sql_rcpt_change_all[] = "UPDATE recipients SET state = ?2, updated_at = ?3"
					  " WHERE msg_id = ?1 AND state = 0 RETURNING address";
static const char sql_insert_delivery[] =
    "INSERT INTO deliveries (msg_id, next_attempt_at, rcpts, gateway, rescan, copy)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

int store_sqlite_delivery_queue(struct store_conn *c, const char *id, const char *const *rcpts,
				size_t n, int64_t now, const char *gateway, bool rescan, bool copy)
{
	sqlite3_stmt *s = store_stmt(c, sql_insert_delivery);
	if (s == NULL)
		return -EIO;
	char *json = store_json_array(rcpts, n);
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, now);
	sqlite3_bind_text(s, 3, json, -1, SQLITE_STATIC);
	if (gateway != NULL)
		sqlite3_bind_text(s, 4, gateway, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 4);
	sqlite3_bind_int(s, 5, rescan ? 1 : 0);
	sqlite3_bind_int(s, 6, copy ? 1 : 0);
	int rc = store_step_done(c, s, "insert_delivery");
	free(json);
	return rc;
}

/* 1 when the statement yields a row, 0 when not, -EIO on error. */
static int store_step_exists(struct store_conn *c, sqlite3_stmt *s)
{
	int r = sqlite3_step(s);
	sqlite3_reset(s);
	if (r == SQLITE_ROW)
		return 1;
	if (r == SQLITE_DONE)
		return 0;
	store_log_sqlite("exists", c->db);
	return -EIO;
}

/* Steps an UPDATE ... RETURNING address, adding each address to *v. */
static int store_collect_returning(struct store_conn *c, sqlite3_stmt *s, char ***v, size_t *n)
{
	int r;
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		*v = xreallocarray(*v, *n + 1, sizeof(**v));
		(*v)[(*n)++] = store_col_dup(s, 0);
	}
	sqlite3_reset(s);
	if (r != SQLITE_DONE) {
		store_log_sqlite("change_state", c->db);
		return -EIO;
	}
	return 0;
}

/*
 * Moves the quarantined recipients of message id in rcpts (NULL: all) to state
 * to; a release queues one delivery for the moved ones. strict: an address that
 * is not a recipient is -EINVAL (and nothing changes, as the caller rolls back);
 * otherwise it is skipped. Adds the number moved to *changed.
 */
static int store_change_one(struct store_conn *c, const char *id, const char *const *rcpts,
			    size_t nrcpts, bool strict, enum store_rcpt_state to, int64_t now,
			    int *changed)
{
	char **moved = NULL;
	size_t nmoved = 0;
	int rc = -EIO;
	sqlite3_stmt *s = store_stmt(c, sql_msg_exists);
	if (s == NULL)
		goto fail;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	if ((rc = store_step_exists(c, s)) <= 0) {
		rc = rc == 0 ? -ENOENT : rc;
		goto fail;
	}
	if (rcpts == NULL) {
		rc = -EIO;
		if ((s = store_stmt(c, sql_rcpt_change_all)) == NULL)
			goto fail;
		sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
		sqlite3_bind_int(s, 2, (int)to);
		sqlite3_bind_int64(s, 3, now);
		if ((rc = store_collect_returning(c, s, &moved, &nmoved)) < 0)
			goto fail;
	}
	for (size_t i = 0; rcpts != NULL && i < nrcpts; i++) {
		char *lc = store_lc(rcpts[i]);
		rc = -EIO;
		if (strict && (s = store_stmt(c, sql_rcpt_exists)) != NULL) {
			sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
			sqlite3_bind_text(s, 2, lc, -1, SQLITE_STATIC);
			rc = store_step_exists(c, s);
			if (rc == 0)
				rc = -EINVAL;
		} else if (!strict) {
			rc = 1;
		}
		if (rc > 0 && (s = store_stmt(c, sql_rcpt_change_one)) != NULL) {
			sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
			sqlite3_bind_text(s, 2, lc, -1, SQLITE_STATIC);
			sqlite3_bind_int(s, 3, (int)to);
			sqlite3_bind_int64(s, 4, now);
			rc = store_collect_returning(c, s, &moved, &nmoved);
		} else if (rc > 0) {
			rc = -EIO;
		}
		free(lc);
		if (rc < 0)
			goto fail;
	}
	if (to == STORE_RCPT_RELEASING && nmoved > 0) {
		rc = store_sqlite_delivery_queue(c, id, (const char *const *)moved, nmoved, now,
						 NULL, false, false);
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

struct store_change_args {
	const char *const *ids;
	size_t nids;
	const char *const *rcpts;
	size_t nrcpts;
	bool strict;
	enum store_rcpt_state to;
	int64_t now;
	int changed; /* this job's */
	int total;   /* the pages' so far (bulk) */
};

static int store_change_job(struct store *st, struct store_conn *c, void *arg)
{
	struct store_change_args *a = arg;
	a->changed = 0;
	for (size_t i = 0; i < a->nids; i++) {
		int rc = store_change_one(c, a->ids[i], a->rcpts, a->nrcpts, a->strict, a->to,
					  a->now, &a->changed);
		/* A message purged between listing and this job is no error in bulk. */
		if (rc == -ENOENT && !a->strict)
			continue;
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int store_change(struct store *st, const char *id, const char *const *rcpts, size_t nrcpts,
			enum store_rcpt_state to, int64_t now, int *changed)
{
	if (!ids_valid(id))
		return -ENOENT;
	struct store_change_args a = {
	    .ids = &id,
	    .nids = 1,
	    .rcpts = rcpts,
	    .nrcpts = nrcpts,
	    .strict = true,
	    .to = to,
	    .now = now,
	};
	int rc = store_run_job(st, store_change_job, &a);
	if (changed != NULL)
		*changed = rc == 0 ? a.changed : 0;
	return rc;
}

int store_sqlite_release(struct store *st, const char *id, const char *const *rcpts, size_t nrcpts,
			 int64_t now, int *changed)
{
	return store_change(st, id, rcpts, nrcpts, STORE_RCPT_RELEASING, now, changed);
}

int store_sqlite_delete(struct store *st, const char *id, const char *const *rcpts, size_t nrcpts,
			int64_t now, int *changed)
{
	return store_change(st, id, rcpts, nrcpts, STORE_RCPT_DELETED, now, changed);
}

/* One page of a bulk change: its own writer job. */
static int store_change_page(struct store *st, const char *const *ids, size_t n, void *arg)
{
	struct store_change_args *a = arg;
	a->ids = ids;
	a->nids = n;
	int rc = store_run_job(st, store_change_job, a);
	a->total += a->changed;
	return rc;
}

/*
 * Bulk change: pages through the matching messages that still have a
 * quarantined recipient in scope, one writer transaction per page.
 */
static int store_change_matching(struct store *st, const struct store_filter *f,
				 enum store_rcpt_state to, int64_t now, int *changed)
{
	static const struct store_filter none;
	if (f == NULL)
		f = &none;
	if (changed != NULL)
		*changed = 0;
	if (f->state != NULL && f->state[0] != '\0' && strcmp(f->state, "quarantined") != 0) {
		enum store_rcpt_state s;
		return store_rcpt_state_parse(f->state, &s); /* nothing else can change */
	}
	struct store_filter q = *f;
	q.state = "quarantined";
	const char *one[1];
	struct store_change_args a = {.strict = false, .to = to, .now = now};
	if (!store_change_scope(f, one, &a.rcpts, &a.nrcpts))
		return 0;
	int rc = store_each_id_page(st, &q, STORE_MAINT_BATCH_DEFAULT, store_sqlite_list_ids,
				    store_change_page, &a);
	if (changed != NULL)
		*changed = a.total;
	return rc;
}

int store_sqlite_release_matching(struct store *st, const struct store_filter *f, int64_t now,
				  int *changed)
{
	return store_change_matching(st, f, STORE_RCPT_RELEASING, now, changed);
}

int store_sqlite_delete_matching(struct store *st, const struct store_filter *f, int64_t now,
				 int *changed)
{
	return store_change_matching(st, f, STORE_RCPT_DELETED, now, changed);
}

/* --- deliveries --------------------------------------------------------- */

static const char sql_claim_pick[] =
    "SELECT d.job_id, d.msg_id, d.attempts, d.rcpts, m.sender,"
    " coalesce(d.first_attempt_at, ?1), d.gateway, d.rescan, d.copy FROM deliveries d"
    " JOIN messages m ON m.id = d.msg_id WHERE d.next_attempt_at <= ?1"
    " ORDER BY d.next_attempt_at, d.job_id LIMIT 1";
static const char sql_claim_lease[] =
    "UPDATE deliveries SET next_attempt_at = ?2, leased = 1,"
    " first_attempt_at = coalesce(first_attempt_at, ?3) WHERE job_id = ?1";
static const char sql_json_each[] = "SELECT value FROM json_each(?1)";

/* The strings of a JSON array (as written by store_json_array). */
static int store_collect_column(struct store_conn *c, sqlite3_stmt *s, char ***out, size_t *n);

static int store_json_strings(struct store_conn *c, const char *json, char ***out, size_t *n)
{
	sqlite3_stmt *s = store_stmt(c, sql_json_each);
	if (s == NULL)
		return -EIO;
	sqlite3_bind_text(s, 1, json, -1, SQLITE_STATIC);
	return store_collect_column(c, s, out, n);
}

struct store_claim_args {
	int64_t now;
	int64_t lease_ms;
	struct store_delivery *d;
};

static int store_claim_job(struct store *st, struct store_conn *c, void *arg)
{
	struct store_claim_args *a = arg;
	struct store_delivery *d = NULL;
	sqlite3_stmt *s = store_stmt(c, sql_claim_pick);
	if (s == NULL)
		return -EIO;
	sqlite3_bind_int64(s, 1, a->now);
	int r = sqlite3_step(s);
	if (r == SQLITE_DONE) {
		sqlite3_reset(s);
		return -EAGAIN;
	}
	if (r != SQLITE_ROW) {
		sqlite3_reset(s);
		store_log_sqlite("claim", c->db);
		return -EIO;
	}
	d = xcalloc(1, sizeof(*d));
	d->job_id = sqlite3_column_int64(s, 0);
	snprintf(d->msg_id, sizeof(d->msg_id), "%s", (const char *)sqlite3_column_text(s, 1));
	d->attempts = (unsigned)sqlite3_column_int(s, 2);
	char *json = store_col_dup(s, 3);
	d->sender = store_col_dup(s, 4);
	d->first_attempt_at = sqlite3_column_int64(s, 5);
	d->gateway = store_col_dup(s, 6);
	d->rescan = sqlite3_column_int(s, 7) != 0;
	d->copy = sqlite3_column_int(s, 8) != 0;
	sqlite3_reset(s);
	int rc = store_json_strings(c, json, &d->rcpts, &d->nrcpts);
	free(json);
	if (rc < 0)
		goto fail;
	rc = -EIO;
	if ((s = store_stmt(c, sql_claim_lease)) == NULL)
		goto fail;
	sqlite3_bind_int64(s, 1, d->job_id);
	sqlite3_bind_int64(s, 2, a->now + a->lease_ms);
	sqlite3_bind_int64(s, 3, a->now);
	if ((rc = store_step_done(c, s, "lease")) < 0)
		goto fail;
	a->d = d;
	return 0;
fail:
	store_delivery_free(d);
	return rc;
}

int store_sqlite_delivery_claim(struct store *st, int64_t now, int64_t lease_ms,
				struct store_delivery **out)
{
	if (lease_ms < 0)
		return -EINVAL;
	struct store_claim_args a = {.now = now, .lease_ms = lease_ms};
	int rc = store_run_job(st, store_claim_job, &a);
	if (rc == 0)
		*out = a.d;
	return rc;
}

static const char sql_finish_job[] = "SELECT msg_id, rcpts, copy FROM deliveries WHERE job_id = ?1";
static const char sql_finish_rcpt[] =
    "UPDATE recipients SET state = ?3, reply = coalesce(?4, reply), updated_at = ?5"
    " WHERE msg_id = ?1 AND address_lc = ?2 AND state = 1";
static const char sql_finish_delete[] = "DELETE FROM deliveries WHERE job_id = ?1";
static const char sql_finish_retry[] =
    "UPDATE deliveries SET rcpts = ?2, attempts = attempts + 1, next_attempt_at = ?3,"
    " leased = 0 WHERE job_id = ?1";
/* Confirming part of an attempt: the job keeps its lease and its attempt count. */
static const char sql_confirm_left[] = "UPDATE deliveries SET rcpts = ?2 WHERE job_id = ?1";
/*
 * A rescan's verdict (?4 the store_rescan_state) on the message's released
 * Outbreak memberships: kept makes them held again, expiry unchanged.
 */
static const char sql_confirm_rescan[] =
    "UPDATE memberships SET rescan = ?4, rescanned_at = ?2, rescan_rule = ?3,"
    " state = CASE WHEN ?4 = 3 THEN 0 ELSE state END,"
    " updated_at = CASE WHEN ?4 = 3 THEN ?2 ELSE updated_at END"
    " WHERE msg_id = ?1 AND state = 1"
    " AND quarantine IN (SELECT name FROM quarantines WHERE type = 'outbreak')";

struct store_finish_args {
	int64_t job_id;
	const struct store_delivery_result *results;
	size_t nresults;
	int64_t now;
	int64_t retry_at;
	bool confirm; /* store_delivery_confirm: final outcomes only, the attempt goes on */
	const struct store_rescan_verdict *rescan; /* the gateway's verdict, or NULL */
};

static int store_finish_job(struct store *st, struct store_conn *c, void *arg)
{
	struct store_finish_args *a = arg;
	char *msg_id = NULL;
	char **rcpts = NULL, **left = NULL;
	size_t nrcpts = 0, nleft = 0, ndelivered = 0;
	/* kept: the recipients the gateway took are held again, not released */
	bool kept = a->rescan != NULL && a->rescan->state == STORE_RESCAN_KEPT;
	bool copy = false; /* a copy's addresses are no recipients: no state to record */
	int rc = -EIO;
	sqlite3_stmt *s = store_stmt(c, sql_finish_job);
	if (s == NULL)
		return -EIO;
	sqlite3_bind_int64(s, 1, a->job_id);
	int r = sqlite3_step(s);
	if (r == SQLITE_ROW) {
		msg_id = store_col_dup(s, 0);
		char *json = store_col_dup(s, 1);
		copy = sqlite3_column_int(s, 2) != 0;
		sqlite3_reset(s);
		rc = store_json_strings(c, json, &rcpts, &nrcpts);
		free(json);
		if (rc < 0)
			goto fail;
	} else {
		sqlite3_reset(s);
		rc = r == SQLITE_DONE ? -ENOENT : -EIO;
		goto fail;
	}
	left = xcalloc(nrcpts > 0 ? nrcpts : 1, sizeof(*left));
	for (size_t i = 0; i < nrcpts; i++) {
		const struct store_delivery_result *res = NULL;
		for (size_t j = 0; j < a->nresults && res == NULL; j++) {
			if (a->results[j].rcpt != NULL &&
			    strcasecmp(a->results[j].rcpt, rcpts[i]) == 0)
				res = &a->results[j];
		}
		/* No word about a recipient: it was not tried, so it stays queued. A
		 * confirmation records final outcomes only. */
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
		rc = -EIO;
		if ((s = store_stmt(c, sql_finish_rcpt)) == NULL)
			goto fail;
		char *lc = store_lc(rcpts[i]);
		sqlite3_bind_text(s, 1, msg_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, lc, -1, SQLITE_STATIC);
		sqlite3_bind_int(s, 3, to);
		sqlite3_bind_text(s, 4, to == STORE_RCPT_QUARANTINED ? NULL : res->reply, -1,
				  SQLITE_STATIC);
		sqlite3_bind_int64(s, 5, a->now);
		rc = store_step_done(c, s, "finish_rcpt");
		free(lc);
		if (rc < 0)
			goto fail;
	}
	rc = -EIO;
	if (nleft == 0) {
		if ((s = store_stmt(c, sql_finish_delete)) == NULL)
			goto fail;
		sqlite3_bind_int64(s, 1, a->job_id);
		rc = store_step_done(c, s, "finish_delete");
	} else if (a->confirm) {
		if ((s = store_stmt(c, sql_confirm_left)) == NULL)
			goto fail;
		char *json = store_json_array((const char *const *)left, nleft);
		sqlite3_bind_int64(s, 1, a->job_id);
		sqlite3_bind_text(s, 2, json, -1, SQLITE_STATIC);
		rc = store_step_done(c, s, "confirm_left");
		free(json);
	} else {
		if ((s = store_stmt(c, sql_finish_retry)) == NULL)
			goto fail;
		char *json = store_json_array((const char *const *)left, nleft);
		sqlite3_bind_int64(s, 1, a->job_id);
		sqlite3_bind_text(s, 2, json, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 3, a->retry_at);
		rc = store_step_done(c, s, "finish_retry");
		free(json);
	}
	if (rc == 0 && a->rescan != NULL && ndelivered > 0 && !copy) {
		rc = -EIO;
		if ((s = store_stmt(c, sql_confirm_rescan)) == NULL)
			goto fail;
		sqlite3_bind_text(s, 1, msg_id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, a->now);
		sqlite3_bind_text(s, 3, a->rescan->rule, -1, SQLITE_STATIC);
		sqlite3_bind_int(s, 4, (int)a->rescan->state);
		rc = store_step_done(c, s, "confirm_rescan");
	}
fail:
	for (size_t i = 0; i < nrcpts; i++)
		free(rcpts[i]);
	free(rcpts);
	free(left);
	free(msg_id);
	return rc;
}

/* store_delivery_finish and store_delivery_confirm: one job, confirm or not. */
static int store_delivery_record(struct store *st, const struct store_delivery *d,
				 const struct store_delivery_result *results, size_t nresults,
				 int64_t now, int64_t retry_at, bool confirm,
				 const struct store_rescan_verdict *rescan)
{
	if (d == NULL || (nresults > 0 && results == NULL))
		return -EINVAL;
	struct store_finish_args a = {
	    .job_id = d->job_id,
	    .results = results,
	    .nresults = nresults,
	    .now = now,
	    .retry_at = retry_at,
	    .confirm = confirm,
	    .rescan = rescan,
	};
	return store_run_job(st, store_finish_job, &a);
}

int store_sqlite_delivery_finish(struct store *st, const struct store_delivery *d,
				 const struct store_delivery_result *results, size_t nresults,
				 int64_t now, int64_t retry_at)
{
	return store_delivery_record(st, d, results, nresults, now, retry_at, false, NULL);
}

int store_sqlite_delivery_confirm(struct store *st, const struct store_delivery *d,
				  const struct store_delivery_result *results, size_t nresults,
				  int64_t now, const struct store_rescan_verdict *rescan)
{
	return store_delivery_record(st, d, results, nresults, now, 0, true, rescan);
}

static const char sql_reset_leases[] =
    "UPDATE deliveries SET next_attempt_at = ?1, leased = 0 WHERE leased = 1";

static int store_reset_leases_job(struct store *st, struct store_conn *c, void *arg)
{
	sqlite3_stmt *s = store_stmt(c, sql_reset_leases);
	if (s == NULL)
		return -EIO;
	sqlite3_bind_int64(s, 1, *(int64_t *)arg);
	return store_step_done(c, s, "reset_leases");
}

int store_sqlite_delivery_reset_leases(struct store *st, int64_t now)
{
	return store_run_job(st, store_reset_leases_job, &now);
}

/* Runs one single-value query on a read connection; *out is NULL-as-0. */
static int store_read_int(struct store *st, const char *sql, int64_t *out, bool *null)
{
	struct store_conn *c = NULL;
	int rc = store_reader_get(st, &c);
	if (rc < 0)
		return rc;
	rc = -EIO;
	sqlite3_stmt *s = store_stmt(c, sql);
	if (s != NULL) {
		if (sqlite3_step(s) == SQLITE_ROW) {
			if (null != NULL)
				*null = sqlite3_column_type(s, 0) == SQLITE_NULL;
			*out = sqlite3_column_int64(s, 0);
			rc = 0;
		} else {
			store_log_sqlite("read_int", c->db);
		}
		sqlite3_reset(s);
	}
	store_reader_put(st, c);
	return store_read_result(rc);
}

static const char sql_deliveries_count[] = "SELECT count(*) FROM deliveries";
static const char sql_deliveries_next[] = "SELECT min(next_attempt_at) FROM deliveries";

int store_sqlite_delivery_pending(struct store *st, uint64_t *count)
{
	int64_t v = 0;
	int rc = store_read_int(st, sql_deliveries_count, &v, NULL);
	if (rc == 0)
		*count = (uint64_t)v;
	return rc;
}

int store_sqlite_delivery_next_due(struct store *st, int64_t *when)
{
	int64_t v = 0;
	bool null = true;
	int rc = store_read_int(st, sql_deliveries_next, &v, &null);
	if (rc == 0 && null)
		return -EAGAIN;
	if (rc == 0)
		*when = v;
	return rc;
}

/* --- expiry and purge --------------------------------------------------- */

static const char sql_expire_pick[] = "SELECT id FROM messages WHERE quarantine = ?1 AND held > 0"
				      " AND received_at < ?2 LIMIT ?3";
static const char sql_expire_rcpts[] =
    "UPDATE recipients SET state = 4, updated_at = ?2 WHERE msg_id = ?1 AND state = 0";
static const char sql_purge_pick[] = "SELECT id FROM messages WHERE active = 0 LIMIT ?1";
static const char sql_purge_delete[] = "DELETE FROM messages WHERE id = ?1";

struct store_batch_args {
	const char *quarantine;
	int64_t cutoff;
	int64_t now;
	size_t batch;
	size_t done;   /* messages handled by this job */
	uint64_t rows; /* rows the change statements touched (recipients when expiring) */
};

/* The first column of every row of a bound statement (ids, JSON array items). */
static int store_collect_column(struct store_conn *c, sqlite3_stmt *s, char ***out, size_t *n)
{
	char **v = NULL;
	size_t nv = 0;
	int r;
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		v = xreallocarray(v, nv + 1, sizeof(*v));
		v[nv++] = store_col_dup(s, 0);
	}
	sqlite3_reset(s);
	if (r != SQLITE_DONE) {
		store_log_sqlite("collect", c->db);
		for (size_t i = 0; i < nv; i++)
			free(v[i]);
		free(v);
		return -EIO;
	}
	*out = v;
	*n = nv;
	return 0;
}

/* One writer job per batch: ids are picked and changed in the same transaction. */
static int store_batch_job(struct store_conn *c, struct store_batch_args *a, const char *pick,
			   const char *change)
{
	sqlite3_stmt *s = store_stmt(c, pick);
	if (s == NULL)
		return -EIO;
	if (a->quarantine != NULL) {
		sqlite3_bind_text(s, 1, a->quarantine, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, a->cutoff);
		sqlite3_bind_int64(s, 3, (sqlite3_int64)a->batch);
	} else {
		sqlite3_bind_int64(s, 1, (sqlite3_int64)a->batch);
	}
	char **ids = NULL;
	size_t n = 0;
	int rc = store_collect_column(c, s, &ids, &n);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		rc = -EIO;
		if ((s = store_stmt(c, change)) == NULL)
			break;
		sqlite3_bind_text(s, 1, ids[i], -1, SQLITE_STATIC);
		if (a->quarantine != NULL)
			sqlite3_bind_int64(s, 2, a->now);
		rc = store_step_done(c, s, "batch_change");
		if (rc == 0)
			a->rows += (uint64_t)sqlite3_changes(c->db);
	}
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
	a->done = rc == 0 ? n : 0;
	return rc;
}

static int store_expire_job(struct store *st, struct store_conn *c, void *arg)
{
	return store_batch_job(c, arg, sql_expire_pick, sql_expire_rcpts);
}

static int store_purge_job(struct store *st, struct store_conn *c, void *arg)
{
	return store_batch_job(c, arg, sql_purge_pick, sql_purge_delete);
}

/*
 * Gives back at most 256 free pages (1 MiB of 4 KiB pages) per transaction:
 * moving pages and truncating the file is the writer's slowest work, and ingest
 * waits for it. *arg (int64_t) = the free pages left.
 */
static const char sql_vacuum_chunk[] = "PRAGMA incremental_vacuum(256)";

static int store_vacuum_job(struct store *st, struct store_conn *c, void *arg)
{
	int64_t *left = arg;
	sqlite3_stmt *s = store_stmt(c, sql_vacuum_chunk);
	if (s == NULL)
		return -EIO;
	int r;
	while ((r = sqlite3_step(s)) == SQLITE_ROW)
		;
	sqlite3_reset(s);
	if (r != SQLITE_DONE) {
		store_log_sqlite("incremental_vacuum", c->db);
		return -EIO;
	}
	if ((s = store_stmt(c, "PRAGMA freelist_count")) == NULL)
		return -EIO;
	r = sqlite3_step(s);
	*left = r == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
	sqlite3_reset(s);
	return r == SQLITE_ROW ? 0 : -EIO;
}

static size_t store_maint_batch(size_t batch)
{
	if (batch == 0)
		return STORE_MAINT_BATCH_DEFAULT;
	return batch > STORE_MAINT_BATCH_MAX ? STORE_MAINT_BATCH_MAX : batch;
}

int store_sqlite_purge(struct store *st, size_t batch, uint64_t *purged)
{
	struct store_batch_args a = {.batch = store_maint_batch(batch)};
	uint64_t total = 0;
	int rc;
	do {
		rc = store_run_job(st, store_purge_job, &a);
		total += a.done;
	} while (rc == 0 && a.done == a.batch);
	/* a transaction per chunk of pages, ingest commits in between; until none is
	 * left, or a chunk frees nothing (a store without incremental auto_vacuum) */
	int64_t left = 0, before;
	if (rc == 0 && total > 0) {
		do {
			before = left;
			rc = store_run_job(st, store_vacuum_job, &left);
		} while (rc == 0 && left > 0 && (before == 0 || left < before));
	}
	if (purged != NULL)
		*purged = total;
	if (total > 0)
		log_info("store.purged", "messages=%llu", (unsigned long long)total);
	return rc;
}

int store_sqlite_expire(struct store *st, const char *quarantine, int64_t cutoff, int64_t now,
			size_t batch, uint64_t *expired, uint64_t *purged)
{
	if (quarantine == NULL)
		return -EINVAL;
	struct store_batch_args a = {
	    .quarantine = quarantine,
	    .cutoff = cutoff,
	    .now = now,
	    .batch = store_maint_batch(batch),
	};
	uint64_t total = 0;
	int rc;
	/* Each batch is its own writer job: queued ingest commits in between. */
	do {
		rc = store_run_job(st, store_expire_job, &a);
		total += a.done;
	} while (rc == 0 && a.done == a.batch);
	if (expired != NULL)
		*expired = a.rows;
	if (total > 0)
		log_info("store.expired", "quarantine=%s messages=%llu recipients=%llu", quarantine,
			 (unsigned long long)total, (unsigned long long)a.rows);
	if (rc < 0)
		return rc;
	return store_sqlite_purge(st, batch, purged);
}

/* --- statistics --------------------------------------------------------- */

static const char sql_totals[] = "SELECT messages, bytes_original, bytes_stored,"
				 " (SELECT count(*) FROM deliveries) FROM totals";

static uint64_t store_file_size(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

int store_sqlite_stats(struct store *st, struct store_stats *out)
{
	struct store_conn *c = NULL;
	int rc = store_reader_get(st, &c);
	if (rc < 0)
		return rc;
	rc = -EIO;
	sqlite3_stmt *s = store_stmt(c, sql_totals);
	if (s != NULL) {
		if (sqlite3_step(s) == SQLITE_ROW) {
			memset(out, 0, sizeof(*out));
			out->messages = (uint64_t)sqlite3_column_int64(s, 0);
			out->bytes_original = (uint64_t)sqlite3_column_int64(s, 1);
			out->bytes_stored = (uint64_t)sqlite3_column_int64(s, 2);
			out->deliveries_pending = (uint64_t)sqlite3_column_int64(s, 3);
			rc = 0;
		} else {
			store_log_sqlite("stats", c->db);
		}
		sqlite3_reset(s);
	}
	store_reader_put(st, c);
	if (rc == 0) {
		char *wal = xasprintf("%s-wal", st->db_path);
		out->file_bytes = store_file_size(st->db_path) + store_file_size(wal);
		free(wal);
	}
	return rc;
}

/* --- one process: nodes, jobs and secrets ------------------------------------ */

/* SQLite has one process on the store: itself, seen now. */
static int store_sqlite_nodes(struct store *st, int64_t since, struct store_node **out, size_t *n)
{
	int64_t now = clock_now_ms();
	*out = xcalloc(1, sizeof(**out));
	*n = 0;
	if (now < since)
		return 0;
	(*out)[0].name = xstrdup(st->node);
	(*out)[0].version = xstrdup(LAZARET_VERSION);
	(*out)[0].started_at = st->started_at;
	(*out)[0].last_seen = now;
	*n = 1;
	return 0;
}

static const char *store_sqlite_node_name(struct store *st)
{
	return st->node;
}

/* One process: every job is its own to run. */
static int store_sqlite_job_try(struct store *st, const char *name, bool *held)
{
	(void)st;
	(void)name;
	*held = true;
	return 0;
}

static void store_sqlite_job_done(struct store *st, const char *name)
{
	(void)st;
	(void)name;
}

static const char sql_secret_get[] = "SELECT value FROM secrets WHERE name = ?1";

/* The value of name from c into out (len bytes): 0, -ENOENT, -EINVAL (other length), -EIO. */
static int store_sqlite_secret_read(struct store_conn *c, const char *name, unsigned char *out,
				    size_t len)
{
	sqlite3_stmt *s = store_stmt(c, sql_secret_get);
	if (s == NULL)
		return -EIO;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	int rc, step = sqlite3_step(s);
	if (step == SQLITE_ROW) {
		rc = (size_t)sqlite3_column_bytes(s, 0) == len ? 0 : -EINVAL;
		if (rc == 0)
			memcpy(out, sqlite3_column_blob(s, 0), len);
	} else if (step == SQLITE_DONE) {
		rc = -ENOENT;
	} else {
		store_log_sqlite("secret_get", c->db);
		rc = -EIO;
	}
	sqlite3_reset(s);
	return rc;
}

static int store_sqlite_secret_get(struct store *st, const char *name, unsigned char *out,
				   size_t len)
{
	struct store_conn *c;
	int rc = store_int_reader_get(st, &c);
	if (rc < 0)
		return rc;
	rc = store_sqlite_secret_read(c, name, out, len);
	store_int_reader_put(st, c);
	return store_int_read_result(rc);
}

struct store_sqlite_secret_args {
	const char *name;
	const unsigned char *value;
	size_t len;
	unsigned char *out;
};

static const char sql_secret_add[] = "INSERT INTO secrets (name, value, created_at)"
				     " VALUES (?1, ?2, ?3) ON CONFLICT (name) DO NOTHING";

static int store_sqlite_secret_add_job(struct store *st, struct store_conn *c, void *arg)
{
	(void)st;
	struct store_sqlite_secret_args *a = arg;
	sqlite3_stmt *s = store_stmt(c, sql_secret_add);
	if (s == NULL)
		return -EIO;
	sqlite3_bind_text(s, 1, a->name, -1, SQLITE_STATIC);
	sqlite3_bind_blob(s, 2, a->value, (int)a->len, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, clock_now_ms());
	int rc = store_step_done(c, s, "secret_add");
	return rc < 0 ? rc : store_sqlite_secret_read(c, a->name, a->out, a->len);
}

static int store_sqlite_secret_add(struct store *st, const char *name, const unsigned char *value,
				   size_t len, unsigned char *out)
{
	struct store_sqlite_secret_args a = {.name = name, .value = value, .len = len, .out = out};
	return store_run_job(st, store_sqlite_secret_add_job, &a);
}

/*
 * VACUUM INTO on a read-only connection of its own: one read transaction, so
 * the copy is the database as of its start while the writer thread commits on.
 * The copy is written without a journal and synced by us (it is a backup).
 */
static int store_sqlite_snapshot(struct store *st, const char *path)
{
	/* Created here, empty and for the owner only: the copy holds the store's secrets. */
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	close(fd);
	sqlite3 *db = NULL;
	int rc = 0;
	if (sqlite3_open_v2(st->db_path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
	    SQLITE_OK) {
		log_error("store.snapshot_failed", "path=%s error=open", st->db_path);
		rc = -EIO;
		goto done;
	}
	sqlite3_busy_timeout(db, STORE_BUSY_TIMEOUT_MS);
	/* The subject index's tokenizer, as on every connection of the store. */
	if (store_short_register(db) < 0) {
		log_error("store.snapshot_failed", "path=%s error=no_fts5_tokenizer", path);
		rc = -EIO;
		goto done;
	}
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(db, "VACUUM INTO ?1", -1, &s, NULL) != SQLITE_OK) {
		rc = -EIO;
		goto done;
	}
	sqlite3_bind_text(s, 1, path, -1, SQLITE_STATIC);
	int step = sqlite3_step(s);
	sqlite3_finalize(s);
	if (step != SQLITE_DONE) {
		rc = step == SQLITE_FULL ? -ENOSPC : -EIO;
		char buf[256];
		log_error("store.snapshot_failed", "path=%s error=%s", path,
			  log_quote(buf, sizeof(buf), sqlite3_errmsg(db)));
	}
done:
	sqlite3_close(db);
	if (rc < 0)
		unlink(path);
	else
		log_info("store.snapshot", "path=%s", path);
	return rc;
}

const struct store_ops store_sqlite_ops = {
    .close = store_sqlite_close,
    .submit_message = store_sqlite_submit_message,
    .list = store_sqlite_list,
    .get = store_sqlite_get,
    .get_raw = store_sqlite_get_raw,
    .quarantines = store_sqlite_quarantines,
    .release = store_sqlite_release,
    .delete = store_sqlite_delete,
    .release_matching = store_sqlite_release_matching,
    .delete_matching = store_sqlite_delete_matching,
    .delivery_claim = store_sqlite_delivery_claim,
    .delivery_finish = store_sqlite_delivery_finish,
    .delivery_confirm = store_sqlite_delivery_confirm,
    .delivery_reset_leases = store_sqlite_delivery_reset_leases,
    .delivery_pending = store_sqlite_delivery_pending,
    .delivery_next_due = store_sqlite_delivery_next_due,
    .expire = store_sqlite_expire,
    .expire_memberships = store_sqlite_expire_memberships,
    .quarantine_put = store_sqlite_quarantine_put,
    .quarantine_delete = store_sqlite_quarantine_delete,
    .operator_quarantines = store_sqlite_operator_quarantines,
    .pvo_usage = store_sqlite_pvo_usage,
    .pvo_overflow = store_sqlite_pvo_overflow,
    .pvo_act_batch = store_sqlite_pvo_act_batch,
    .list_ids = store_sqlite_list_ids,
    .pvo_copy = store_sqlite_pvo_copy,
    .purge = store_sqlite_purge,
    .stats = store_sqlite_stats,
    .debug_counters = store_sqlite_debug_counters,
    .debug_list_plan = store_sqlite_debug_list_plan,
    .slbl_get = store_sqlite_slbl_get,
    .slbl_put = store_sqlite_slbl_put,
    .slbl_changes = store_sqlite_slbl_changes,
    .user_add = store_sqlite_user_add,
    .user_get = store_sqlite_user_get,
    .user_list = store_sqlite_user_list,
    .user_count = store_sqlite_user_count,
    .user_delete = store_sqlite_user_delete,
    .user_set_prefs = store_sqlite_user_set_prefs,
    .user_set_last_login = store_sqlite_user_set_last_login,
    .session_add = store_sqlite_session_add,
    .session_get = store_sqlite_session_get,
    .session_touch = store_sqlite_session_touch,
    .session_delete = store_sqlite_session_delete,
    .session_purge = store_sqlite_session_purge,
    .totp_get = store_sqlite_totp_get,
    .totp_change = store_sqlite_totp_change,
    .audit_add = store_sqlite_audit_add,
    .audit_list = store_sqlite_audit_list,
    .digest_user_by_address = store_sqlite_digest_user_by_address,
    .digest_user_by_name = store_sqlite_digest_user_by_name,
    .digest_max_seq = store_sqlite_digest_max_seq,
    .digest_candidates = store_sqlite_digest_candidates,
    .digest_entries = store_sqlite_digest_entries,
    .digest_state_get = store_sqlite_digest_state_get,
    .digest_state_put = store_sqlite_digest_state_put,
    .digest_token_used = store_sqlite_digest_token_used,
    .digest_token_use = store_sqlite_digest_token_use,
    .nodes = store_sqlite_nodes,
    .node_name = store_sqlite_node_name,
    .job_try = store_sqlite_job_try,
    .job_done = store_sqlite_job_done,
    .secret_get = store_sqlite_secret_get,
    .secret_add = store_sqlite_secret_add,
    .snapshot = store_sqlite_snapshot,
    .gateway_add = store_sqlite_gateway_add,
    .gateway_list = store_sqlite_gateway_list,
    .gateway_get = store_sqlite_gateway_get,
    .gateway_get_by_address = store_sqlite_gateway_get_by_address,
    .gateway_get_by_token_hash = store_sqlite_gateway_get_by_token_hash,
    .gateway_remove = store_sqlite_gateway_remove,
    .gateway_touch = store_sqlite_gateway_touch,
    .gateway_pending_put = store_sqlite_gateway_pending_put,
    .gateway_set_central = store_sqlite_gateway_set_central,
    .gateway_outbreak_version = store_sqlite_gateway_outbreak_version,
    .gateway_set_mapping = store_sqlite_gateway_set_mapping,
    .gateway_migration_report = store_sqlite_gateway_migration_report,
    .notice_due = store_sqlite_notice_due,
    .notice_set = store_sqlite_notice_set,
    .gateway_set_levels = store_sqlite_gateway_set_levels,
    .level_list = store_sqlite_level_list,
    .level_put = store_sqlite_level_put,
    .sched_add = store_sqlite_sched_add,
    .sched_list = store_sqlite_sched_list,
    .sched_delete = store_sqlite_sched_delete,
    .sched_claim = store_sqlite_sched_claim,
    .archive_add = store_sqlite_archive_add,
    .archive_list = store_sqlite_archive_list,
    .archive_get = store_sqlite_archive_get,
    .sched_update = store_sqlite_sched_update,
    .report_backfill = store_sqlite_report_backfill,
    .report_backfill_state = store_sqlite_report_backfill_state,
    .report_export = store_sqlite_report_export,
    .archive_purge = store_sqlite_archive_purge,
    .archive_mail_due = store_sqlite_archive_mail_due,
    .archive_mail_set = store_sqlite_archive_mail_set,
    .events_put = store_sqlite_events_put,
    .event_states = store_sqlite_event_states,
    .events_list = store_sqlite_events_list,
    .tracked_message_get = store_sqlite_tracked_message_get,
    .tracked_search = store_sqlite_tracked_search,
    .tracked_session_events = store_sqlite_tracked_session_events,
    .tracking_purge = store_sqlite_tracking_purge,
    .report_read = store_sqlite_report_read,
    .report_purge = store_sqlite_report_purge,
    .capacity_read = store_sqlite_capacity_read,
    .capacity_purge = store_sqlite_capacity_purge,
    .report_scan = store_sqlite_report_scan,
};

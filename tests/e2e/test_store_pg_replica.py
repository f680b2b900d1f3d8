"""[store] read_dsn with a real streaming replica: a primary (wal_level=replica) and a
hot standby made by pg_basebackup -R, both private clusters of the test
(pg_cluster.py). The API's reads come from the standby (its pg_stat_activity shows
the reader connections; with replay paused the API lacks what the primary has),
changes and the gateways' safelist feed go to the primary, and when the standby
stops reads fall back to the primary (warned once, counted) and return to the
standby when it is back."""

import re
import time

from e2e_helpers import STORED_RE, make_message, wait_for
from pg_cluster import pg_clusters, psql  # noqa: F401 (pg_clusters is a fixture)
from test_store_pg_outage import UNAVAILABLE, Senders

READER = "lazaret-replica-reader"


def listed_ids(m):
    st, doc = m.api("GET", "/api/v1/messages?limit=1000")
    assert st == 200, (st, doc)
    return {x["id"] for x in doc["messages"]}


def healthz(m):
    st, doc = m.api("GET", "/healthz", token=None)
    assert st == 200, (st, doc)
    return doc


def pause_replay(standby):
    psql(standby.dsn(), "SELECT pg_wal_replay_pause()")
    wait_for(lambda: psql(standby.dsn(), "SELECT pg_get_wal_replay_pause_state()") == "paused",
             30, "replay paused")


def replicated(primary, standby, mid):
    """True once the standby has replayed message mid."""
    sql = "SELECT count(*) FROM messages WHERE id = '%s'" % mid
    return psql(standby.dsn("lazaret"), sql) == "1"


def test_reads_from_a_streaming_replica(start_manager, pg_clusters):
    primary = pg_clusters.new("primary")
    psql(primary.dsn(), "CREATE DATABASE lazaret")
    standby = pg_clusters.new("standby", init=False, start=False)
    standby.basebackup_from(primary)
    standby.start()
    assert psql(standby.dsn(), "SELECT pg_is_in_recovery()") == "t"

    m = start_manager(store__backend="postgresql", store__dsn=primary.dsn("lazaret"),
                      store__read_dsn=standby.dsn("lazaret", application_name=READER))
    assert healthz(m) == {"status": "ok", "store": "up", "replica": "up"}
    a = m.send("a@example.jp", ["ua@corp.test"], make_message("replica a"))
    wait_for(lambda: replicated(primary, standby, a), 30, "message a on the standby")
    assert a in listed_ids(m)
    # the reader connections are on the standby, none of them on the primary
    who = "SELECT count(*) FROM pg_stat_activity WHERE application_name = '%s'" % READER
    assert int(psql(standby.dsn(), who)) >= 1
    assert int(psql(primary.dsn(), who)) == 0

    # Replay paused: the primary has b, the API (reading the standby) does not yet.
    pause_replay(standby)
    b = m.send("b@example.jp", ["ub@corp.test"], make_message("replica b"))
    assert psql(primary.dsn("lazaret"), "SELECT count(*) FROM messages WHERE id = '%s'" % b) \
        == "1"
    assert b not in listed_ids(m)
    st, doc = m.api("GET", "/api/v1/messages/%s" % b)
    assert st == 404, (st, doc)
    st, _, _ = m.http("GET", "/api/v1/messages/%s/raw" % b)
    assert st == 404
    # A change goes to the primary (it reads its own state there): a's delete is
    # done there at once, the paused standby still shows a quarantined.
    st, doc = m.api("POST", "/api/v1/messages/%s/delete" % a, json={"recipients": ["ua@corp.test"]})
    assert st == 200, (st, doc)
    state_sql = "SELECT state FROM recipients WHERE msg_id = '%s'" % a
    assert psql(primary.dsn("lazaret"), state_sql) == "3"  # deleted
    assert psql(standby.dsn("lazaret"), state_sql) == "0"  # quarantined, not replayed
    assert m.get_message(a)["recipients"][0]["state"] == "quarantined"  # the lag, seen
    # A safelist change: the gateways' feed (GET /api/v1/slbl, on the primary) has
    # it at once, the admin's CSV export (a reader-thread read) not yet.
    st, doc = m.api("PUT", "/api/v1/slbl/ua@corp.test",
                    json={"safelist": ["partner.example"], "blocklist": []})
    assert st == 200, (st, doc)
    st, doc = m.api("GET", "/api/v1/slbl?since=0")
    assert st == 200 and any(c["recipient"] == "ua@corp.test" for c in doc["changes"]), doc
    st, _, raw = m.http("GET", "/api/v1/slbl/export.csv")
    assert st == 200 and b"partner.example" not in raw, (st, raw)
    psql(standby.dsn(), "SELECT pg_wal_replay_resume()")
    wait_for(lambda: b in listed_ids(m), 30, "b listed once replay resumed")
    wait_for(lambda: b"ua@corp.test,safelist,partner.example" in
             m.http("GET", "/api/v1/slbl/export.csv")[2], 30, "the export from the standby")
    wait_for(lambda: m.get_message(a)["recipients"][0]["state"] == "deleted", 30,
             "a's delete seen on the standby")

    # The standby stops: reads fall back to the primary, warned once, counted.
    standby.stop()
    for _ in range(5):
        assert {a, b} <= listed_ids(m)
    assert m.get_message(b)["subject"] == "replica b"
    doc = healthz(m)
    assert doc == {"status": "ok", "store": "up", "replica": "down"}, doc
    metrics = m.metrics()
    assert metrics["lazaret_store_replica_up"] == 0
    assert metrics["lazaret_store_replica_fallbacks_total"] >= 5
    log = m.log_text()
    assert len(re.findall(r"store\.replica_unavailable", log)) == 1, log[-3000:]
    # SMTP and changes never depended on the standby
    c = m.send("c@example.jp", ["uc@corp.test"], make_message("replica c"))
    assert c in listed_ids(m)

    # It comes back: reads return to it (tried again every 5 s).
    standby.start()
    wait_for(lambda: listed_ids(m) and healthz(m).get("replica") == "up", 60,
             "reads back on the standby")
    assert "store.replica_available" in m.log_text()
    wait_for(lambda: replicated(primary, standby, c), 30, "message c on the standby")
    pause_replay(standby)
    d = m.send("d@example.jp", ["ud@corp.test"], make_message("replica d"))
    time.sleep(0.5)
    assert d not in listed_ids(m), "a read after the standby came back came from the primary"
    psql(standby.dsn(), "SELECT pg_wal_replay_resume()")
    wait_for(lambda: d in listed_ids(m), 30, "d listed once replay resumed")
    assert metric_value(m, "lazaret_store_replica_up") == 1


def metric_value(m, name):
    return m.metrics().get(name)


def test_failover_to_a_promoted_standby_loses_no_acknowledged_message(start_manager,
                                                                      pg_clusters):
    """Synchronous replication and a multi-host dsn with target_session_attrs=read-write:
    the primary crashes while clients send, the standby is promoted, lazaretd finds
    it by itself, and every message that got a 250 is on the new primary."""
    primary = pg_clusters.new("primary")
    psql(primary.dsn(), "CREATE DATABASE lazaret")
    standby = pg_clusters.new("standby", init=False, start=False)
    standby.basebackup_from(primary)
    standby.start()
    # from now on a commit on the primary waits until the standby has flushed it
    psql(primary.dsn(), "ALTER SYSTEM SET synchronous_standby_names = '*'")
    psql(primary.dsn(), "SELECT pg_reload_conf()")
    wait_for(lambda: psql(primary.dsn(), "SELECT sync_state FROM pg_stat_replication")
             == "sync", 30, "the standby synchronous")
    dsn = "host=%s,%s port=5432,5432 user=postgres dbname=lazaret " \
          "target_session_attrs=read-write" % (primary.dir, standby.dir)
    m = start_manager(store__backend="postgresql", store__dsn=dsn)
    with Senders(m, 3) as senders:
        wait_for(lambda: len(senders.stored_ids()) >= 15, 60, "messages before the crash")
        primary.crash()
        crashed_at = time.monotonic()
        # the standby is read-only until promoted: libpq refuses it, gateways get 451s
        wait_for(lambda: any(r[2] == UNAVAILABLE for r in senders.since(crashed_at)), 60,
                 "451s while there is no primary")
        standby.promote()
        promoted_at = time.monotonic()
        wait_for(lambda: any(STORED_RE.match(r[2]) for r in senders.since(promoted_at)), 60,
                 "250s from the promoted standby")
        time.sleep(1)
    assert not senders.errors, senders.errors[:5]
    ids = senders.stored_ids()
    stored = set(psql(standby.dsn("lazaret"), "SELECT id FROM messages").split())
    missing = [i for i in ids if i not in stored]
    assert not missing, "%d of %d acknowledged messages lost in the failover: %r" % (
        len(missing), len(ids), missing[:5])
    replies = [r[2] for r in senders.replies]
    assert all(STORED_RE.match(x) or x == UNAVAILABLE for x in replies), \
        sorted(set(x for x in replies if not STORED_RE.match(x)))
    # the API reads from the new primary too
    assert set(ids) <= {x["id"] for x in m.list_all()}
    assert healthz(m) == {"status": "ok", "store": "up"}
    assert "store.writer_reconnected" in m.log_text()

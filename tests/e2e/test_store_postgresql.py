"""lazaretd on the PostgreSQL store ([store] backend = postgresql): quarantine, listing,
release, expiry bookkeeping, accounts and a restart, all with the store in a real
PostgreSQL 15 started for this module (scripts/with-postgresql), and nothing under
data_dir but the digest key. Without a PostgreSQL server the module is skipped, and
under CI=true that is a failure."""

import json
import os
import subprocess
import time
import uuid

import pytest

from e2e_helpers import make_message, wait_for

# Its own cluster: the run of the suite on PostgreSQL would only run it again.
pytestmark = pytest.mark.own_postgresql

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def postgresql():
    """The DSN of a throw-away PostgreSQL cluster, removed when the module is done.

    scripts/with-postgresql runs a command that prints the DSN and reads its stdin:
    closing stdin ends it, and with it the cluster (also if pytest dies)."""
    p = subprocess.Popen([os.path.join(REPO, "scripts", "with-postgresql"),
                          "sh", "-c", 'echo "$LAZARET_TEST_PG_DSN"; read x'],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    dsn = p.stdout.readline().strip()
    if not dsn:
        p.stdin.close()
        err = p.stderr.read()
        rc = p.wait(timeout=60)
        if rc == 77:
            pytest.skip("no PostgreSQL server: " + err.strip())
        pytest.fail("scripts/with-postgresql failed (%s): %s" % (rc, err))
    yield dsn
    p.stdin.close()
    p.wait(timeout=120)


def psql(dsn, sql):
    r = subprocess.run(["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d", dsn,
                        "-c", sql], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.fixture
def database(postgresql):
    """A new database for one test: its DSN."""
    name = "lazaret_e2e_" + uuid.uuid4().hex[:12]
    psql(postgresql, "CREATE DATABASE %s" % name)
    yield "%s dbname=%s" % (postgresql, name)
    psql(postgresql, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)


def on_pg(start_manager, dsn, **overrides):
    return start_manager(store__backend="postgresql", store__dsn=dsn, **overrides)


def states(m, mid):
    return {r["address"]: r["state"] for r in m.get_message(mid)["recipients"]}


def test_quarantine_list_release_and_restart(start_manager, aio_sink, database):
    m = on_pg(start_manager, database, primary_host=aio_sink.host)
    raw = make_message("請求書のお知らせ", body="on postgresql\r\n")
    mid = m.send("billing@example.jp", ["u1@corp.test", "U2@corp.test"], raw)
    # stored in PostgreSQL, not under data_dir
    assert psql(database, "SELECT count(*) FROM messages WHERE id = '%s'" % mid) == "1"
    assert not os.path.exists(os.path.join(m.data_dir, "lazaret.db"))
    doc = m.get_message(mid)
    assert doc["subject"] == "請求書のお知らせ"
    assert m.http("GET", "/api/v1/messages/%s/raw" % mid)[2] == raw
    # listing: a subject substring (2 characters and more), a sender, a recipient
    for query in ("subject=%E8%AB%8B%E6%B1%82", "subject=%E3%81%8A%E7%9F%A5",
                  "sender=example.jp", "recipient=u2@corp.test"):
        ids = [x["id"] for x in m.list_all(query)]
        assert ids == [mid], (query, ids)
    assert m.list_all("subject=nothing-like-this") == []
    st, doc = m.api("POST", "/api/v1/messages/%s/release" % mid,
                    json={"recipients": ["u1@corp.test"]})
    assert st == 202, doc
    d = aio_sink.wait_count(1)[0]
    assert d["rcpts"] == ["u1@corp.test"]
    assert d["data"].endswith(raw)
    wait_for(lambda: states(m, mid) == {"u1@corp.test": "released",
                                        "U2@corp.test": "quarantined"},
             20, "u1 released on postgresql")
    # a second release of the same recipient is a no-op
    st, doc = m.api("POST", "/api/v1/messages/%s/release" % mid,
                    json={"recipients": ["u1@corp.test"]})
    assert st in (200, 202), doc
    m.restart()
    assert states(m, mid) == {"u1@corp.test": "released", "U2@corp.test": "quarantined"}
    assert aio_sink.count() == 1
    st, doc = m.api("GET", "/api/v1/quarantines")
    assert st == 200, doc
    spam = [q for q in doc["quarantines"] if q["name"] == "spam"]
    assert spam and spam[0]["messages"] == 1, doc
    # the audit log is in PostgreSQL too
    assert int(psql(database, "SELECT count(*) FROM audit WHERE action = 'release'")) >= 1


def test_bulk_delete_and_expiry_on_postgresql(start_manager, database):
    m = on_pg(start_manager, database, delete_after="2s", purge_interval="1s")
    ids = [m.send("s%d@example.jp" % i, ["a@corp.test"], make_message("bulk %d" % i))
           for i in range(5)]
    st, doc = m.api("POST", "/api/v1/messages/delete", json={"ids": ids[:2]})
    assert st in (200, 202), doc
    assert sorted(x["id"] for x in m.list_all("state=deleted")) == sorted(ids[:2])
    # expiry moves the rest to expired, then purge removes every message
    wait_for(lambda: psql(database, "SELECT count(*) FROM messages") == "0", 30,
             "expiry and purge on postgresql")
    assert m.list_all() == []


def test_unreachable_database_is_a_clear_start_failure(start_manager, workdir):
    m = start_manager(start=False, store__backend="postgresql",
                      store__dsn="host=%s port=1 dbname=lazaret connect_timeout=2" % workdir,
                      store__connect_wait="2s")
    m.start(wait=False)
    m.wait_exit(1, timeout=30)
    log = m.log_text()
    assert "cannot open the store on PostgreSQL" in log, log
    assert "store.open_failed" in log and "backend=postgresql" in log, log


def test_a_second_manager_with_the_same_node_name_is_refused(start_manager, database):
    # both are named after this host ([store] node_name unset)
    first = on_pg(start_manager, database)
    second = on_pg(start_manager, database, start=False)
    second.start(wait=False)
    second.wait_exit(1, timeout=30)
    log = second.log_text()
    assert "store.node_in_use" in log and \
        "another lazaretd with this node name has the database open" in log, log
    # the first one goes on serving
    mid = first.send("s@example.jp", ["a@corp.test"], make_message("still here"))
    assert first.get_message(mid)["subject"] == "still here"


def test_lost_database_sessions_give_451_then_recover(start_manager, database):
    """The server ends every session of lazaretd (as a restart of PostgreSQL does):
    mail is answered 451 or stored, never lost, and the next message is stored."""
    m = on_pg(start_manager, database)
    before = m.send("s@example.jp", ["a@corp.test"], make_message("before"))
    psql(database, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                   " WHERE datname = current_database() AND pid <> pg_backend_pid()")
    ids = [before]
    for i in range(3):
        s = m.smtp()
        s.ehlo("client.e2e.test")
        assert s.mail("s@example.jp")[0] == 250
        assert s.rcpt("a@corp.test")[0] == 250
        code, resp = s.data(make_message("after %d" % i))
        s.quit()
        assert code in (250, 451), (code, resp)
        if code == 451:
            assert b"4.3.0" in resp, resp
        else:
            ids.append(resp.decode().rsplit(" ", 1)[-1])
    assert len(ids) >= 3, ids  # at most the first one after the cut is refused
    wait_for(lambda: sorted(x["id"] for x in m.list_all()) == sorted(ids), 20,
             "every stored message listed")
    # the writer holds the owner lock (shared, "lazaret2") and its node name's lock
    # (class "lznd") again: a second manager with the same node name is still refused.
    # Only those two are counted: a periodic job ("lzjb") or an event batch being
    # stored ("lazr", the manager's own capacity samples) may hold a lock meanwhile.
    assert psql(database, "SELECT string_agg(mode || '/' || objsubid, ',' ORDER BY objsubid)"
                          " FROM pg_locks WHERE locktype = 'advisory' AND granted"
                          " AND ((objsubid = 1 AND classid::bigint = %d AND objid::bigint = %d)"
                          " OR (objsubid = 2 AND classid::bigint = %d))"
                          % (0x6c617a61, 0x72657432, 0x6c7a6e64)) == \
        "ShareLock/1,ExclusiveLock/2"


def test_read_over_budget_is_cancelled_on_the_server(start_manager, database):
    """[http] query_timeout on PostgreSQL: a read held up on the server (behind another
    session's lock) is cancelled by its statement_timeout and answered 503
    query_timeout when the budget ends; the reader's connection then answers in full."""
    m = on_pg(start_manager, database, http__read_threads="1", http__query_timeout="1s")
    mid = m.send("s@example.jp", ["a@corp.test"], make_message("held up"))
    locker = subprocess.Popen(
        ["psql", "-X", "-q", "-d", database, "-c",
         "BEGIN; LOCK TABLE messages IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(6); COMMIT;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: psql(database, "SELECT count(*) FROM pg_locks"
                                        " WHERE relation = 'messages'::regclass"
                                        " AND mode = 'AccessExclusiveLock' AND granted") == "1",
                 10, "the lock taken")
        t0 = time.monotonic()
        st, _, body = m.http("GET", "/api/v1/messages?limit=5")
        secs = time.monotonic() - t0
        doc = json.loads(body)
        assert st == 503, (st, doc)
        assert doc["error"]["code"] == "query_timeout", doc
        assert "ran longer than 1000 ms" in doc["error"]["message"], doc
        assert 0.9 <= secs < 5.0, secs
        st, _, body = m.http("GET", "/api/v1/messages/%s" % mid)
        assert st == 503 and json.loads(body)["error"]["code"] == "query_timeout"
    finally:
        locker.wait(timeout=30)
    assert m.metric("lazaret_api_query_timeouts_total") == 2
    log = m.log_text()
    assert "api.query_timeout what=list budget_ms=1000" in log, log
    assert "store.pg_error" not in log and "api.store_error" not in log, log
    # the lock is gone: the same reader thread and connection answer in full
    assert [x["id"] for x in m.list_all()] == [mid]
    assert m.get_message(mid)["subject"] == "held up"

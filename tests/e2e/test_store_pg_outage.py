"""lazaretd when its PostgreSQL goes away: a crash (kill -9 of every server process)
while several SMTP clients send, a restart, and a server that is not there at
start-up. Each test starts its own cluster (pg_cluster.py), never a shared one.

What must hold: no 250 without a commit (every 250'd id is in the database
afterwards); while the database is down a quick 451 4.3.0 "quarantine store
unavailable", the API 503 with a clear error, /healthz and /metrics say so; the
manager reconnects by itself (writer and pooled connections) and the release
engine resumes."""

import re
import smtplib
import time

from e2e_helpers import STORED_RE, Workers, make_message, t, wait_for
from pg_cluster import pg_clusters, psql  # noqa: F401 (pg_clusters is a fixture)

UNAVAILABLE = "451 4.3.0 Error: quarantine store unavailable, try again later"


class Senders(Workers):
    """n threads, each sending one message per SMTP session until stopped; every reply
    to the end of data is recorded as (monotonic time, seconds it took, reply line)."""

    def __init__(self, m, n):
        super().__init__(n, join_timeout=120)
        self.m = m
        self.replies = []
        self.errors = []
        self.sent = [0] * n

    def step(self, i):
        self.sent[i] += 1
        k = self.sent[i]
        raw = make_message("outage %d-%d" % (i, k), body="sender %d message %d\r\n" % (i, k))
        start = time.monotonic()
        try:
            s = smtplib.SMTP("127.0.0.1", self.m.smtp_port, timeout=t(60))
            s.ehlo("client.e2e.test")
            assert s.mail("s%d@example.jp" % i)[0] == 250
            assert s.rcpt("u%d@corp.test" % i)[0] == 250
            code, resp = s.data(raw)
            line = "%d %s" % (code, resp.decode("utf-8", "replace"))
            s.quit()
        except (OSError, smtplib.SMTPException, AssertionError) as e:
            with self.lock:
                self.errors.append(repr(e))
            time.sleep(0.05)
            return
        with self.lock:
            self.replies.append((start, time.monotonic() - start, line))

    def since(self, when):
        with self.lock:
            return [r for r in self.replies if r[0] >= when]

    def stored_ids(self):
        with self.lock:
            return [STORED_RE.match(r[2]).group(1) for r in self.replies
                    if STORED_RE.match(r[2])]


def metric(m, name):
    return m.metrics().get(name)


def rcpt_state(m, mid):
    """The first recipient's state, or None while the API cannot say (503)."""
    st, doc = m.api("GET", "/api/v1/messages/%s" % mid)
    return doc["recipients"][0]["state"] if st == 200 else None


def test_crash_of_postgresql_while_clients_send(start_manager, pg_clusters, aio_sink):
    pg = pg_clusters.new("primary")
    psql(pg.dsn(), "CREATE DATABASE lazaret")
    dsn = pg.dsn("lazaret")
    m = start_manager(store__backend="postgresql", store__dsn=dsn,
                      primary_host=aio_sink.host, retry_min="1s")
    before = m.send("a@example.jp", ["before@corp.test"], make_message("before the crash"))
    # a signed-in operator (session cookie), to see what the web application gets
    st, doc = m.api("POST", "/api/v1/users", json={"username": "op", "password": "op-secret-12",
                                                   "role": "operator"})
    assert st == 201, (st, doc)
    st, hdrs, raw = m.http("POST", "/api/v1/session", token=None,
                           body={"username": "op", "password": "op-secret-12"})
    assert st == 200, (st, raw)
    cookie = {"Cookie": hdrs["Set-Cookie"].split(";", 1)[0]}
    assert m.http("GET", "/api/v1/messages?limit=1", token=None, headers=cookie)[0] == 200
    st, doc = m.api("GET", "/healthz", token=None)
    assert (st, doc) == (200, {"status": "ok", "store": "up"}), (st, doc)
    assert metric(m, "lazaret_store_up") == 1
    # the session survived the outage (it is in the database)
    assert m.http("GET", "/api/v1/messages?limit=1", token=None, headers=cookie)[0] == 200

    with Senders(m, 4) as senders:
        wait_for(lambda: len(senders.stored_ids()) >= 20, 60, "messages stored before the crash")
        pg.crash()
        crashed_at = time.monotonic()

        # While the database is down: quick 451s naming the store, never a 250.
        wait_for(lambda: sum(1 for r in senders.since(crashed_at + 0.5)
                             if r[2] == UNAVAILABLE) >= 20, 60, "451s while the database is down")
        down = senders.since(crashed_at + 0.5)
        assert all(r[2] == UNAVAILABLE for r in down), [r[2] for r in down
                                                       if r[2] != UNAVAILABLE][:5]
        slow = [r for r in down if r[1] > t(5)]
        assert not slow, slow[:5]

        # The API: 503 with a clear error and a Retry-After; the gateway-facing
        # safelist feed too; /healthz and /metrics say the store is down.
        st, hdrs, raw = m.http("GET", "/api/v1/messages?limit=10")
        assert st == 503, (st, raw)
        assert b'"code": "unavailable"' in raw or b'"code":"unavailable"' in raw, raw
        assert b"the quarantine store is unavailable" in raw, raw
        assert hdrs.get("Retry-After") == "5", hdrs
        st, doc = m.api("GET", "/api/v1/messages/%s" % before)
        assert st == 503, (st, doc)
        st, doc = m.api("GET", "/api/v1/quarantines")
        assert st == 503, (st, doc)
        st, doc = m.api("GET", "/api/v1/slbl?since=0")
        assert st == 503, (st, doc)
        st, doc = m.api("POST", "/api/v1/messages/%s/release" % before,
                        json={"recipients": ["before@corp.test"]})
        assert st == 503, (st, doc)
        assert "the quarantine store is unavailable" in doc["error"]["message"], doc
        # the session cannot be looked up: 503, not a 401 that would sign the user out
        st, hdrs, raw = m.http("GET", "/api/v1/messages?limit=1", token=None, headers=cookie)
        assert st == 503 and b"the quarantine store is unavailable" in raw, (st, raw)
        st, _, raw = m.http("POST", "/api/v1/session", token=None,
                            body={"username": "op", "password": "op-secret-12"})
        assert st == 503, (st, raw)
        assert m.http("GET", "/api/v1/messages?limit=1", token=None)[0] == 401
        st, doc = m.api("GET", "/healthz", token=None)
        assert (st, doc) == (200, {"status": "degraded", "store": "down"}), (st, doc)
        metrics = m.metrics()
        assert metrics["lazaret_store_up"] == 0
        assert metrics["lazaret_store_connect_failures_total"] >= 1

        # Back: the manager reconnects by itself and stores again.
        pg.start()
        restarted_at = time.monotonic()
        wait_for(lambda: any(STORED_RE.match(r[2]) for r in senders.since(restarted_at)),
                 60, "250s again after the restart")
        time.sleep(1)
    assert not senders.errors, senders.errors[:5]

    # Every message that got a 250 is in the database, with its recipient.
    ids = senders.stored_ids()
    assert len(ids) >= 21
    stored = set(psql(dsn, "SELECT id FROM messages").split())
    missing = [i for i in ids if i not in stored]
    assert not missing, "%d of %d acknowledged messages lost: %r" % (
        len(missing), len(ids), missing[:5])
    assert int(psql(dsn, "SELECT count(*) FROM recipients WHERE msg_id = ANY('{%s}')"
                    % ",".join(ids))) == len(ids)
    # ... and the API finds every one of them (pooled connections were replaced)
    listed = {x["id"] for x in m.list_all()}
    assert set(ids) <= listed
    replies = [r[2] for r in senders.replies]
    assert all(STORED_RE.match(x) or x == UNAVAILABLE for x in replies), \
        sorted(set(x for x in replies if not STORED_RE.match(x)))

    st, doc = m.api("GET", "/healthz", token=None)
    assert (st, doc) == (200, {"status": "ok", "store": "up"}), (st, doc)
    assert metric(m, "lazaret_store_up") == 1
    # the session survived the outage (it is in the database)
    assert m.http("GET", "/api/v1/messages?limit=1", token=None, headers=cookie)[0] == 200
    log = m.log_text()
    assert "store.unavailable" in log and "store.available" in log, log[-3000:]
    assert "store.writer_reconnected" in log, log[-3000:]
    # one line per outage, not one per failed call
    assert len(re.findall(r"store\.unavailable", log)) == 1, log[-3000:]

    # The release engine resumes: a release now is delivered.
    st, doc = m.api("POST", "/api/v1/messages/%s/release" % before,
                    json={"recipients": ["before@corp.test"]})
    assert st == 202, doc
    d = aio_sink.wait_count(1)[0]
    assert d["rcpts"] == ["before@corp.test"]
    wait_for(lambda: rcpt_state(m, before) == "released", 30,
             "the release recorded after the outage")


def test_release_workers_back_off_while_the_database_is_down(start_manager, pg_clusters,
                                                               aio_sink):
    """A release queued before the crash is delivered after the restart; meanwhile the
    workers poll at their normal pace (about one failed claim per second each), and
    an idle manager notices the outage and its end by itself."""
    pg = pg_clusters.new("primary")
    psql(pg.dsn(), "CREATE DATABASE lazaret")
    dsn = pg.dsn("lazaret")
    aio_sink.handler.data_reply = "451 4.3.0 try later"
    m = start_manager(store__backend="postgresql", store__dsn=dsn,
                      primary_host=aio_sink.host, retry_min="5s", retry_max="5s",
                      release__max_connections=2)
    mid = m.send("a@example.jp", ["r@corp.test"], make_message("queued release"))
    st, doc = m.api("POST", "/api/v1/messages/%s/release" % mid,
                    json={"recipients": ["r@corp.test"]})
    assert st == 202, doc
    # the first attempt deferred and recorded (crashing while it is being recorded
    # would leave the delivery to its lease, minutes away: at least once, slowly)
    wait_for(lambda: psql(dsn, "SELECT count(*) FROM deliveries WHERE attempts >= 1"
                               " AND NOT leased") == "1", 30, "a first, deferred attempt")
    pg.crash()
    time.sleep(5)
    log = m.log_text()
    claims = len(re.findall(r"release\.store_error op=claim", log))
    assert claims <= 40, "the workers spin on a dead database: %d claim errors in 5 s" % claims
    # nothing is sent meanwhile: the manager still notices the outage and its end
    st, doc = m.api("GET", "/healthz", token=None)
    assert (st, doc) == (200, {"status": "degraded", "store": "down"}), (st, doc)
    aio_sink.handler.data_reply = None
    pg.start()
    wait_for(lambda: m.api("GET", "/healthz", token=None)[1] == {"status": "ok", "store": "up"},
             30, "the store up again without any traffic")
    wait_for(lambda: rcpt_state(m, mid) == "released", 60,
             "the queued release delivered after the restart")


def test_postgresql_unreachable_at_start_up(start_manager, pg_clusters):
    """No server: lazaretd waits [store] connect_wait with store.waiting lines, then
    exits 1 with a precise message; a server that comes up meanwhile is used."""
    pg = pg_clusters.new("late", start=False)
    m = start_manager(start=False, store__backend="postgresql",
                      store__dsn=pg.dsn("postgres"), store__connect_wait="3s")
    began = time.monotonic()
    m.start(wait=False)
    m.wait_exit(1, timeout=60)
    took = time.monotonic() - began
    assert took >= 2.5, took
    log = m.log_text()
    assert "store.waiting" in log and "connect_wait_ms=3000" in log, log
    assert "store.open_failed" in log and "did not answer within [store] connect_wait" in log
    assert ("lazaretd: cannot open the store on PostgreSQL: the server did not answer "
            "within [store] connect_wait") in log, log

    # The server starts while lazaretd waits: it comes up on it.
    m2 = start_manager(start=False, store__backend="postgresql",
                       store__dsn=pg.dsn("postgres"), store__connect_wait="120s")
    m2.start(wait=False)
    wait_for(lambda: "store.waiting" in m2.log_text(), 30, "lazaretd waiting")
    pg.start()
    m2.wait_ready(timeout=90)
    mid = m2.send("a@example.jp", ["u@corp.test"], make_message("after the wait"))
    assert m2.get_message(mid)["subject"] == "after the wait"


def test_refused_connection_at_start_up_fails_at_once(start_manager, pg_clusters):
    """A server that answers but refuses (an unknown database): waiting would not help."""
    pg = pg_clusters.new("primary")
    m = start_manager(start=False, store__backend="postgresql",
                      store__dsn=pg.dsn("no_such_database"), store__connect_wait="60s")
    began = time.monotonic()
    m.start(wait=False)
    m.wait_exit(1, timeout=30)
    assert time.monotonic() - began < t(20)
    log = m.log_text()
    assert "store.waiting" not in log, log
    assert "the server refused the connection" in log and "no_such_database" in log, log
    assert "lazaretd: cannot open the store on PostgreSQL: the server refused" in log, log


def test_a_database_that_takes_no_writes_is_unavailable(start_manager, pg_clusters):
    """A primary fenced read-only (as a demoted one would be): its refusals are
    "store unavailable", 451 and 503, and its sessions are replaced, not reused; once
    it takes writes again messages are stored."""
    pg = pg_clusters.new("primary")
    psql(pg.dsn(), "CREATE DATABASE lazaret")
    dsn = pg.dsn("lazaret")
    m = start_manager(store__backend="postgresql", store__dsn=dsn)
    mid = m.send("a@example.jp", ["u@corp.test"], make_message("before the fence"))
    psql(pg.dsn(), "ALTER SYSTEM SET default_transaction_read_only = on")
    psql(pg.dsn(), "SELECT pg_reload_conf()")
    s = smtplib.SMTP("127.0.0.1", m.smtp_port, timeout=t(30))
    s.ehlo("client.e2e.test")
    assert s.mail("a@example.jp")[0] == 250
    assert s.rcpt("u@corp.test")[0] == 250
    code, resp = s.data(make_message("while fenced"))
    s.quit()
    assert "%d %s" % (code, resp.decode()) == UNAVAILABLE
    st, doc = m.api("POST", "/api/v1/messages/%s/release" % mid,
                    json={"recipients": ["u@corp.test"]})
    assert st == 503, (st, doc)
    # reads still work on it
    assert m.get_message(mid)["recipients"][0]["state"] == "quarantined"
    psql(pg.dsn(), "ALTER SYSTEM RESET default_transaction_read_only")
    psql(pg.dsn(), "SELECT pg_reload_conf()")
    wait_for(lambda: psql(dsn, "SHOW default_transaction_read_only") == "off", 30, "unfenced")
    after = m.send("a@example.jp", ["u@corp.test"], make_message("after the fence"))
    assert psql(dsn, "SELECT count(*) FROM messages WHERE id = '%s'" % after) == "1"
    # the session that was refused was replaced: the writer reconnected
    assert "store.writer_reconnected" in m.log_text()

"""Two lazaretd processes ("nodes") sharing one PostgreSQL database, each with its own
SMTP and HTTP listeners: ingest from both at once, a node killed during a burst of
releases, the digest schedule on both, a login used across them, and node names.
The database is a throw-away PostgreSQL cluster started for this module
(scripts/with-postgresql); without a server the module is skipped, and under CI=true
that is a failure. It starts its own cluster, so the PostgreSQL pass of the suite
(LAZARET_E2E_BACKEND=postgresql) leaves it out (marker own_postgresql)."""

import asyncio
import threading
import time

import pytest

from conftest import AioSink, SinkHandler
from e2e_helpers import make_message, stays, t, wait_for
from test_digest import (DIGEST_FROM, LINK_RE, Session, add_enduser, digests, page, parse,
                         parts, session_call)
from test_store_postgresql import database, postgresql, psql  # noqa: F401 (fixtures)

pytestmark = pytest.mark.own_postgresql


def node(start_manager, dsn, name, **overrides):
    return start_manager(store__backend="postgresql", store__dsn=dsn, store__node_name=name,
                         **overrides)


def states(m, mid):
    return {r["address"]: r["state"] for r in m.get_message(mid)["recipients"]}


def test_two_nodes_ingest_at_once(start_manager, database):  # noqa: F811
    a = node(start_manager, database, "node-a")
    b = node(start_manager, database, "node-b")
    per_sender, senders = 25, 3
    acked = {}  # subject -> id from "250 ... stored as <id>"
    lock = threading.Lock()
    errors = []

    def sender(m, tag):
        try:
            s = m.smtp()
            s.ehlo("client.e2e.test")
            for i in range(per_sender):
                subject = "%s-%d" % (tag, i)
                mid = m.send("s@example.jp", ["u%d@corp.test" % (i % 5)],
                             make_message(subject), conn=s)
                with lock:
                    acked[subject] = mid
            s.quit()
        except Exception as e:  # reported below with the failing thread's tag
            errors.append((tag, repr(e)))

    threads = [threading.Thread(target=sender, args=(m, "%s%d" % (name, k)))
               for m, name in ((a, "a"), (b, "b")) for k in range(senders)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=t(120))
    assert not errors, errors
    total = 2 * senders * per_sender
    assert len(acked) == total and len(set(acked.values())) == total
    # every acknowledged message is there once, with its own subject
    assert psql(database, "SELECT count(*), count(DISTINCT id) FROM messages") == \
        "%d|%d" % (total, total)
    rows = psql(database, "SELECT id, subject FROM messages").splitlines()
    assert dict(r.split("|")[::-1] for r in rows) == acked
    assert psql(database, "SELECT messages FROM totals") == str(total)
    # and both nodes list all of them
    for m in (a, b):
        assert sorted(x["id"] for x in m.list_all()) == sorted(acked.values())
    # both nodes are seen
    wait_for(lambda: a.metric("lazaret_store_nodes") == 2, 10, "two nodes in the metrics")
    text = b.metrics_text()
    assert 'lazaret_store_node_last_seen_seconds{node="node-a"} ' in text, text
    assert 'lazaret_store_node_last_seen_seconds{node="node-b"} ' in text, text
    assert psql(database, "SELECT string_agg(name, ',' ORDER BY name) FROM nodes") == \
        "node-a,node-b"


class HoldingHandler:
    """An aiosmtpd handler that counts deliveries per recipient. The first DATA from
    hold_peer is held (no reply) until release_held is set, then answered 451 and
    not counted: the node that sent it is killed meanwhile, so the transaction never
    completed."""

    def __init__(self, hold_peer, held_reply="451 4.3.0 not completed"):
        self.held_reply = held_reply
        self.lock = threading.Lock()
        self.deliveries = {}  # rcpt -> number of completed transactions
        self.delivered_at = {}
        self.hold_peer = hold_peer
        self.held = threading.Event()
        self.held_rcpts = None
        self.release_held = threading.Event()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        peer = session.peer[0] if session.peer else None
        hold = False
        with self.lock:
            if peer == self.hold_peer and not self.held.is_set():
                hold = True
                self.held_rcpts = list(envelope.rcpt_tos)
                self.held.set()
        if hold:
            while not self.release_held.is_set():
                await asyncio.sleep(0.05)
            if not self.held_reply.startswith("250"):
                return self.held_reply
        else:
            await asyncio.sleep(0.05)  # a next hop that takes a moment: the burst overlaps
        with self.lock:
            for r in envelope.rcpt_tos:
                self.deliveries[r] = self.deliveries.get(r, 0) + 1
                self.delivered_at.setdefault(r, time.monotonic())
        return "250 2.0.0 Ok: queued"


def holding_sink(handler):
    from aiosmtpd.controller import Controller
    sink = AioSink()
    sink.controller = Controller(handler, hostname="127.0.0.1", port=sink.port,
                                 ready_timeout=t(10), decode_data=False)
    return sink.start()


def test_a_restarting_node_leaves_the_other_nodes_deliveries_alone(start_manager,
                                                                     database):  # noqa: F811
    handler = HoldingHandler("127.0.0.3", held_reply="250 2.0.0 Ok: queued")
    sink = holding_sink(handler)
    try:
        a = node(start_manager, database, "node-a", primary_host=sink.host,
                 source_address="127.0.0.2")
        b = node(start_manager, database, "node-b", primary_host=sink.host,
                 source_address="127.0.0.3")
        mid = b.send("s@example.jp", ["held@corp.test"], make_message("in flight on b"))
        st, doc = b.api("POST", "/api/v1/messages/%s/release" % mid, json={})
        assert st == 202, doc
        assert handler.held.wait(t(20)), "node-b never delivered"
        # node-a restarts while node-b's delivery is in flight: it takes back its own
        # leases only, so it does not send this one too
        a.restart()
        assert stays(lambda: handler.deliveries == {}, t(4)), handler.deliveries
        handler.release_held.set()
        wait_for(lambda: states(a, mid) == {"held@corp.test": "released"}, 20, "released")
        assert stays(lambda: handler.deliveries == {"held@corp.test": 1}, t(2)), \
            handler.deliveries
    finally:
        sink.stop()


def test_kill_9_during_releases_delivers_each_once(start_manager, database):  # noqa: F811
    handler = HoldingHandler("127.0.0.2")
    sink = holding_sink(handler)
    try:
        # lease = 24 x [release] timeout = 24 s: the survivor waits that long for the
        # delivery the killed node had in flight
        a = node(start_manager, database, "node-a", primary_host=sink.host,
                 source_address="127.0.0.2", timeout="1s", release__max_connections=1)
        b = node(start_manager, database, "node-b", primary_host=sink.host,
                 source_address="127.0.0.3", timeout="1s", release__max_connections=2)
        n = 40
        rcpts = ["r%02d@corp.test" % i for i in range(n)]
        ids = [a.send("s@example.jp", [r], make_message("burst %d" % i))
               for i, r in enumerate(rcpts)]
        st, doc = a.api("POST", "/api/v1/messages/release", json={"ids": ids})
        assert st in (200, 202), doc
        assert handler.held.wait(t(20)), "node-a never delivered"
        a.kill9()
        killed_at = time.monotonic()
        handler.release_held.set()
        held = handler.held_rcpts
        assert held and len(held) == 1, held
        # the survivor delivers everything else, but not the killed node's delivery
        # before its lease runs out
        wait_for(lambda: len(handler.deliveries) >= n - 1, 60, "the others delivered")
        assert held[0] not in handler.deliveries or \
            handler.delivered_at[held[0]] - killed_at > 10
        wait_for(lambda: len(handler.deliveries) == n, 60, "the killed node's delivery")
        assert handler.delivered_at[held[0]] - killed_at > 15, "taken over before the lease"
        with handler.lock:
            assert handler.deliveries == {r: 1 for r in rcpts}, handler.deliveries
        wait_for(lambda: all(states(b, mid) == {r: "released"} for mid, r in zip(ids, rcpts)),
                 20, "every recipient released")
        assert psql(database, "SELECT count(*) FROM deliveries") == "0"
        # node-a comes back: nothing is sent again
        a.restart()
        assert stays(lambda: sum(handler.deliveries.values()) == n, t(3))
    finally:
        sink.stop()


class SlowSinkHandler(SinkHandler):
    """Takes a second and a half to accept each message: a digest run lasts longer
    than the schedule's interval, so the two nodes' runs overlap."""

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(1.5)
        return await super().handle_DATA(server, session, envelope)


def test_digest_schedule_on_two_nodes_sends_one_digest_per_user(start_manager,
                                                                   database):  # noqa: F811
    from aiosmtpd.controller import Controller
    sink = AioSink()
    sink.handler = SlowSinkHandler()
    sink.controller = Controller(sink.handler, hostname="127.0.0.1", port=sink.port,
                                 ready_timeout=t(10), decode_data=False)
    sink.start()
    try:
        conf = dict(primary_host=sink.host, notifications__enabled="yes",
                    notifications__from=DIGEST_FROM, notifications__schedule="every 2s",
                    notifications__time_zone="Asia/Tokyo")
        a = node(start_manager, database, "node-a", **conf)
        b = node(start_manager, database, "node-b", **conf)
        add_enduser(a, "taro", ["taro@corp.test", "yamada@corp.test"])
        ids = []
        for i, (m, rcpt) in enumerate(((a, "taro@corp.test"), (b, "yamada@corp.test"),
                                       (a, "hanako@corp.test"), (b, "jiro@corp.test"))):
            ids.append(m.send("x@bad.example", [rcpt], make_message("digest %d" % i)))
        wait_for(lambda: len(digests(sink)) >= 3, 40, "the scheduled digests")
        # several runs of both nodes later: still one digest per user; the runs
        # overlapped, and a node found the other one running it
        assert stays(lambda: len(digests(sink)) == 3, t(7))
        assert "another node is running it" in a.log_text() + b.log_text()
        got = sorted(tuple(d["rcpts"]) for d in digests(sink))
        assert got == [("hanako@corp.test",), ("jiro@corp.test",), ("taro@corp.test",)]
        taro = [d for d in digests(sink) if d["rcpts"] == ["taro@corp.test"]][0]
        text, _ = parts(parse(taro["data"]))
        assert "digest 0" in text and "digest 1" in text, text
        # a link works whichever node it is used on: the key is the cluster's
        link = [u for u in LINK_RE.findall(text)][0]
        token = link.rsplit("/", 1)[1]
        for m in (a, b):
            st, _, body = page(m.http_url + "/d/" + token)
            assert st == 200, (m.http_url, st, body)
        st, _, body = page(b.http_url + "/d/" + token, "POST")
        assert st == 200, body
        st, _, body = page(a.http_url + "/d/" + token, "POST")
        assert st == 410, body  # used: on the other node too
        assert psql(database, "SELECT count(*) FROM secrets") == "1"
        # a message arriving now is listed once, in one more digest
        b.send("x@bad.example", ["jiro@corp.test"], make_message("digest late"))
        wait_for(lambda: len(digests(sink)) == 4, 40, "the digest of the late message")
        assert stays(lambda: len(digests(sink)) == 4, t(5))
    finally:
        sink.stop()


def test_login_on_one_node_works_on_the_other(start_manager, database):  # noqa: F811
    a = node(start_manager, database, "node-a")
    b = node(start_manager, database, "node-b")
    pw = add_enduser(a, "taro", ["taro@corp.test"])
    mid = a.send("x@bad.example", ["taro@corp.test"], make_message("for taro"))
    s = Session(a, "taro", pw)
    st, doc = session_call(b, s, "GET", "/api/v1/messages")
    assert st == 200, doc
    assert [x["id"] for x in doc["messages"]] == [mid]
    # a change with the CSRF token of the session made on node-a
    st, doc = session_call(b, s, "POST", "/api/v1/messages/%s/delete" % mid, body={})
    assert st == 200, doc
    assert states(a, mid) == {"taro@corp.test": "deleted"}
    # without the token: refused on node-b as on node-a
    st, _, _ = b.http("POST", "/api/v1/messages/%s/delete" % mid, body={}, token=None,
                      headers={"Cookie": s.cookie})
    assert st == 403
    # logout on node-b ends the session on node-a
    st, _ = session_call(b, s, "DELETE", "/api/v1/session")
    assert st in (200, 204)
    for m in (a, b):
        st, _ = session_call(m, s, "GET", "/api/v1/messages")
        assert st == 401, m.http_url


def test_a_second_process_with_the_same_node_name_is_refused(start_manager,
                                                               database):  # noqa: F811
    a = node(start_manager, database, "node-a")
    again = node(start_manager, database, "node-a", start=False)
    again.start(wait=False)
    again.wait_exit(1, timeout=40)
    log = again.log_text()
    assert "store.node_in_use" in log and 'node=node-a' in log, log
    assert "cannot open the store on PostgreSQL: Device or resource busy" in log, log
    # node-a goes on serving; another name is welcome
    mid = a.send("s@example.jp", ["u@corp.test"], make_message("still here"))
    b = node(start_manager, database, "node-b")
    assert b.get_message(mid)["subject"] == "still here"
    # a bad name is refused by the configuration check
    bad = node(start_manager, database, "bad name", start=False)
    bad.start(wait=False)
    bad.wait_exit(1, timeout=20)
    assert "node_name" in bad.log_text(), bad.log_text()


def test_a_due_report_schedule_is_mailed_by_one_node_only(start_manager,
                                                          database):  # noqa: F811
    sink = AioSink().start()
    try:
        nodes = []
        for name in ("node-a", "node-b"):
            # the schedules' clock 32 days ahead (common/fault.h): due at once, looked at
            # every second by both nodes
            m = node(start_manager, database, name, start=False, primary_host=sink.host,
                     notifications__from="reports@corp.test")
            m.next_env = {"LAZARET_FAULT": "report_sched_ahead"}
            m.start()
            nodes.append(m)
        a, b = nodes
        ids = []
        for i, every in enumerate(("daily", "weekly", "monthly", "daily")):
            st, s = (a, b)[i % 2].api("POST", "/api/v1/report-schedules", {
                "report": "overview", "period": "day", "every": every, "format": "csv",
                "recipients": ["r%d@corp.test" % i]})
            assert st == 201, s
            ids.append(s["id"])
        wait_for(lambda: sink.count() >= 4, 30, "the four reports")
        assert stays(lambda: sink.count() == 4, t(4))
        assert sorted(tuple(x["rcpts"]) for x in sink.messages) == [
            ("r%d@corp.test" % i,) for i in range(4)]
        st, doc = b.api("GET", "/api/v1/report-archive")
        assert sorted(x["schedule_id"] for x in doc["reports"]) == sorted(ids)
    finally:
        sink.stop()


def test_a_migration_done_on_two_nodes_is_mailed_once(start_manager, database):  # noqa: F811
    sink = AioSink().start()
    try:
        a, b = (node(start_manager, database, name, primary_host=sink.host,
                     notifications__from="lazaret@corp.test") for name in ("node-a", "node-b"))
        st, doc = a.api("POST", "/api/v1/gateways", {"name": "gw1", "address": "192.0.2.10"})
        assert st == 201, doc
        token = doc["token"]
        body = {"run": "2026-12-06T01:00:00Z", "state": "done", "total": 5, "done": 5,
                "failed": 0, "notify": "ops@corp.test"}
        replies = []

        def post(m):
            for _ in range(5):
                replies.append(m.api("POST", "/api/v1/gateway/migration", body, token=token))

        threads = [threading.Thread(target=post, args=(m,)) for m in (a, b, a, b)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=t(60))
        assert len(replies) == 20 and all(st == 200 for st, _ in replies), replies
        assert len({json_key(doc["migration"]) for _, doc in replies}) == 1, replies
        wait_for(lambda: sink.count() >= 1, 20, "the mail")
        assert stays(lambda: sink.count() == 1, t(3))
        assert sink.messages[0]["rcpts"] == ["ops@corp.test"]
        for m in (a, b):
            wait_for(lambda: gateway_notice(m, "gw1")["state"] == "sent", 10, "sent")
    finally:
        sink.stop()


def gateway_notice(m, name):
    st, doc = m.api("GET", "/api/v1/gateways")
    assert st == 200, doc
    (g,) = [g for g in doc["gateways"] if g["name"] == name]
    return g["migration"]["notice"]


def test_a_migration_done_while_the_relay_is_down_is_mailed_once(start_manager,
                                                                  database):  # noqa: F811
    sink = AioSink()  # its port is closed until it starts
    try:
        nodes = []
        for name in ("node-a", "node-b"):
            # a deferred notice is tried again every second, by both nodes
            m = node(start_manager, database, name, start=False, primary_host=sink.host,
                     notifications__from="lazaret@corp.test")
            m.next_env = {"LAZARET_FAULT": "migration_notice_fast"}
            m.start()
            nodes.append(m)
        a, b = nodes
        tokens = []
        for i in range(2):
            st, doc = a.api("POST", "/api/v1/gateways",
                            {"name": "gw%d" % i, "address": "192.0.2.%d" % (10 + i)})
            assert st == 201, doc
            tokens.append(doc["token"])
        replies = []

        def post(m, token, i):
            body = {"run": "2026-12-06T01:00:00Z", "state": "done", "total": 5, "done": 5,
                    "failed": 0, "notify": "ops%d@corp.test" % i}
            for _ in range(5):
                replies.append(m.api("POST", "/api/v1/gateway/migration", body, token=token))

        threads = [threading.Thread(target=post, args=(m, tokens[i], i))
                   for m in (a, b) for i in range(2) for _ in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=t(60))
        assert len(replies) == 40 and all(st == 200 for st, _ in replies), replies
        wait_for(lambda: "migration_notice.deferred" in a.log_text() + b.log_text(), 20,
                 "a deferred attempt")
        wait_for(lambda: all(gateway_notice(a, "gw%d" % i)["tries"] >= 3 for i in range(2)),
                 20, "attempts by the ticks of both nodes")
        sink.start()
        wait_for(lambda: sink.count() >= 2, 20, "the mails")
        assert stays(lambda: sink.count() == 2, t(4))
        assert sorted(x["rcpts"][0] for x in sink.messages) == ["ops0@corp.test",
                                                                 "ops1@corp.test"]
        for m in (a, b):
            for i in range(2):
                wait_for(lambda: gateway_notice(m, "gw%d" % i)["state"] == "sent", 10, "sent")
        # each was sent by one node, once
        sent = [ln for m in (a, b) for ln in m.log_text().splitlines()
                if "migration_notice.sent" in ln]
        assert len(sent) == 2, sent
    finally:
        sink.stop()


def json_key(d):
    return tuple(sorted(d.items()))

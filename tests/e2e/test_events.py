"""Gateway events to the manager (docs/GATEWAY.md "Events", docs/openapi.yaml
POST /api/v1/gateway/events): a real lazaret-gw with [tracking] mode = central
pushes its events to a real lazaretd; the events are counted in the manager's
store (SQLite or PostgreSQL, as the suite runs). Mail through the gateway gives
every expected event in order; the manager down, then back: every event arrives
exactly once; kill -9 of the gateway in a burst: no event of a message that got
its 250 is lost; bad pushes get exact answers and change nothing."""

import json
import time
import os
import re
import signal
import smtplib
import socket
import sqlite3
import subprocess
import threading
import urllib.parse
import urllib.request

import pytest

from e2e_helpers import t, wait_for
from gw_fixtures import GTUBE, make_message  # noqa: F401
from gw_fixtures import start_gateway  # noqa: F401 (a fixture)

GW = "gw-e2e"


# ---- helpers ---------------------------------------------------------------------

def store_rows(mgr, sql):
    """The rows of sql on the manager's store, as lists of text."""
    store = mgr.sections.get("store", {})
    if store.get("backend") == "postgresql":
        # a unit separator: details and replies may hold "|"
        r = subprocess.run(["psql", "-X", "-q", "-t", "-A", "-F", "\x1f", "-v",
                            "ON_ERROR_STOP=1", "-d", store["dsn"], "-c", sql],
                           capture_output=True, text=True, timeout=t(60))
        assert r.returncode == 0, r.stderr
        out = r.stdout.strip("\n")
        return [line.split("\x1f") for line in out.splitlines()] if out else []
    path = os.path.join(mgr.data_dir, "lazaret.db")
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)
    try:
        return [["" if v is None else str(v) for v in row] for row in con.execute(sql)]
    finally:
        con.close()


def events(mgr):
    """Every stored event of the gateway: (seq, type, msg_id, detail dict), by seq."""
    rows = store_rows(mgr, "SELECT seq, type, coalesce(msg_id, ''), detail FROM events"
                           " WHERE gateway = '%s' ORDER BY seq" % GW)
    return [(int(r[0]), r[1], r[2], json.loads(r[3])) for r in rows]


def event_count(mgr):
    return int(store_rows(mgr, "SELECT count(*) FROM events")[0][0])


def error(doc):
    return (doc or {}).get("error", {}).get("message")


def register(mgr, name=GW, address="127.0.0.1"):
    st, doc = mgr.api("POST", "/api/v1/gateways", json={"name": name, "address": address})
    assert st == 201, doc
    return doc["token"]


def registry_entry(mgr):
    st, doc = mgr.api("GET", "/api/v1/gateways")
    assert st == 200, doc
    (g,) = [g for g in doc["gateways"] if g["name"] == GW]
    return g


def tracking_gateway(start_gateway, mgr, token, next_hop, **sections):
    sections.setdefault("manager", {}).update({"api_url": mgr.http_url, "api_token": token})
    sections.setdefault("tracking", {"mode": "central"})
    return start_gateway(next_hop, **sections)


def gw_metrics(gw):
    req = urllib.request.Request(gw.http_url + "/metrics",
                                 headers={"Authorization": "Bearer %s" % gw.token})
    with urllib.request.urlopen(req, timeout=t(10)) as r:
        text = r.read().decode("utf-8")
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(lazaret_gw_events_\w+)\s+(\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def queue_id(reply):
    m = re.search(r"Ok: ([0-9a-f-]{36})", reply)
    assert m, reply
    return m.group(1)


# ---- mail through a real gateway ---------------------------------------------------

def test_mail_gives_every_event_in_order(start_manager, start_gateway, aio_sink):
    mgr = start_manager()
    token = register(mgr)
    gw = tracking_gateway(
        start_gateway, mgr, token, aio_sink.host,
        external_spam_quarantine={"enabled": "yes", "host": "127.0.0.1",
                                  "port": str(mgr.smtp_port)})
    # a clean message to the sink
    code, text = gw.send("alice@sender.test", ["bob@example.com", "carol@example.com"],
                         make_message(subject="Quarterly report", extra_headers=(
                             "MIME-Version: 1.0\r\n"
                             "Content-Type: multipart/mixed; boundary=b\r\n"),
                             body="--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
                                  "--b\r\nContent-Type: application/pdf\r\n"
                                  "Content-Disposition: attachment; filename=q3.pdf\r\n\r\n"
                                  "JVBERi0=\r\n--b--\r\n"))
    assert code == 250, text
    clean = queue_id(text)
    # a recipient refused at RCPT (the RAT)
    code, text = gw.send("alice@sender.test", "mallory@elsewhere.test", make_message())
    assert code == 550, text
    # spam, to the manager's spam quarantine
    code, text = gw.send("spammer@sender.test", "bob@example.com",
                         make_message(subject="Win", body="Buy now.\r\n%s\r\n" % GTUBE))
    assert code == 250, text
    spam = queue_id(text)

    wait_for(lambda: any(e[1] == "quarantine" and e[2] == spam for e in events(mgr)), 30,
             "the spam message's events on the manager")
    ev = events(mgr)
    seqs = [e[0] for e in ev]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs  # none lost, in order
    types = [e[1] for e in ev]
    # three sessions: each recorded at its first MAIL, with HELO and its HAT decision
    conns = [e for e in ev if e[1] == "connection"]
    assert len(conns) == 3, types
    assert conns[0][3]["helo"] == "client.e2e.test"
    assert conns[0][3]["client_ip"] == "127.0.0.1"
    assert conns[0][3]["hat_decision"] == "accept"
    assert conns[0][3]["tls_version"] is None
    accepted = [e[3]["rcpt"] for e in ev if e[1] == "rcpt_accepted"]
    assert accepted == ["bob@example.com", "carol@example.com", "bob@example.com"]
    (refused,) = [e for e in ev if e[1] == "rcpt_refused"]
    assert refused[3]["rcpt"] == "mallory@elsewhere.test"
    assert refused[3]["reply"].startswith("550 5.7.1"), refused

    mine = [(e[1], e[3]) for e in ev if e[2] == clean]
    assert [m[0] for m in mine] == ["received", "verdict", "delivery", "reply"], mine
    rec = mine[0][1]
    assert rec["sender"] == "alice@sender.test"
    assert rec["recipients"] == ["bob@example.com", "carol@example.com"]
    assert rec["subject"] == "Quarterly report"
    assert rec["attachments"] == ["q3.pdf"]
    assert rec["message_id"].endswith("@e2e.test")
    assert rec["client_ip"] == "127.0.0.1"
    assert rec["helo"] == "client.e2e.test"
    assert mine[1][1]["level"] == "clean"
    assert mine[2][1]["status"] == "sent"
    assert mine[2][1]["host"] == aio_sink.host
    assert mine[2][1]["reply"].startswith("250"), mine[2]
    assert mine[3][1]["reply"] == "250 2.0.0 Ok: %s" % clean
    # the session's events come before its message's
    first_clean = min(e[0] for e in ev if e[2] == clean)
    assert conns[0][0] < first_clean

    theirs = [(e[1], e[3]) for e in ev if e[2] == spam]
    assert [m[0] for m in theirs] == ["received", "verdict", "quarantine", "reply"], theirs
    assert theirs[1][1]["level"] == "spam" and theirs[1][1]["score"] >= 5
    assert theirs[2][1]["where"] == "external"
    assert theirs[2][1]["rcpts"] == ["bob@example.com"]

    # the tracked messages
    row = store_rows(mgr, "SELECT sender, subject, client_ip, last_state, flags, message_id"
                          " FROM tracked_messages WHERE msg_id = '%s'" % clean)
    assert row[0][:5] == ["alice@sender.test", "Quarterly report", "127.0.0.1", "delivered",
                          "8"], row
    rcpts = store_rows(mgr, "SELECT address_lc FROM tracked_recipients WHERE msg_id = '%s'"
                            " ORDER BY idx" % clean)
    assert rcpts == [["bob@example.com"], ["carol@example.com"]]
    atts = store_rows(mgr, "SELECT name_lc FROM tracked_attachments WHERE msg_id = '%s'"
                           % clean)
    assert atts == [["q3.pdf"]]
    row = store_rows(mgr, "SELECT last_state, flags FROM tracked_messages"
                          " WHERE msg_id = '%s'" % spam)
    assert row == [["quarantined", str(1 | 64)]], row

    # the registry and both sides' metrics
    wait_for(lambda: registry_entry(mgr)["event_backlog"] == 0, 15, "the backlog reported 0")
    g = registry_entry(mgr)
    assert g["last_event_at"] is not None
    n = len(ev)
    assert mgr.metric('lazaret_gateway_events_received_total{gateway="%s"}' % GW) == n
    m = gw_metrics(gw)
    assert m["lazaret_gw_events_backlog"] == 0
    assert m["lazaret_gw_events_dropped_total"] == 0
    assert m["lazaret_gw_events_pushed_total"] >= n


def test_long_recipient_lists_are_cut_and_counted(start_manager, start_gateway, aio_sink):
    """A message to 400 recipients of 60-byte local parts: its received and delivery
    events list the first ones within the detail's bound (24,000 bytes of names) and
    say how many there were, and a Japanese subject with a tab and quotes arrives
    decoded and intact."""
    mgr = start_manager()
    gw = tracking_gateway(start_gateway, mgr, register(mgr), aio_sink.host)
    rcpts = ["%s%03d@example.com" % ("r" * 57, i) for i in range(400)]
    subject = "=?UTF-8?B?%s?=" % __import__("base64").b64encode(
        "見積\t\"書\"".encode()).decode()
    code, text = gw.send("alice@sender.test", rcpts, make_message(subject=subject))
    assert code == 250, text
    qid = queue_id(text)
    wait_for(lambda: any(e[1] == "reply" and e[2] == qid for e in events(mgr)), 30,
             "the message's events on the manager")
    mine = {e[1]: e[3] for e in events(mgr) if e[2] == qid}
    rec = mine["received"]
    # 73 bytes a name (with quotes and comma): 24,000 / 75 -> 320 listed
    assert rec["recipients"] == rcpts[:len(rec["recipients"])]
    assert 300 <= len(rec["recipients"]) < 400, len(rec["recipients"])
    assert rec["recipients_total"] == 400
    # the delivery too: the same cut, the rest in a second delivery event
    dlv, dlv2 = [e[3] for e in events(mgr) if e[2] == qid and e[1] == "delivery"]
    assert dlv["rcpts"] == rcpts[:len(rec["recipients"])] and dlv["rcpts_total"] == 400
    assert "first" not in dlv and dlv["status"] == dlv2["status"] == "sent"
    assert dlv2 == dict(dlv, first=len(dlv["rcpts"]), rcpts=rcpts[len(dlv["rcpts"]):]), dlv2
    assert "truncated" not in rec
    assert rec["subject"] == "見積\t\"書\"", rec["subject"]
    assert mine["reply"]["reply"] == "250 2.0.0 Ok: %s" % qid
    # the names left out follow in a "recipients" event, before the reply
    (more,) = [(e[0], e[3]) for e in events(mgr) if e[2] == qid and e[1] == "recipients"]
    assert more[1] == {"first": len(rec["recipients"]),
                       "recipients": rcpts[len(rec["recipients"]):]}, more
    (reply_seq,) = [e[0] for e in events(mgr) if e[2] == qid and e[1] == "reply"]
    assert more[0] < reply_seq


def recipient_search(mgr, rcpt):
    """The ids of the tracked messages a search by recipient rcpt finds."""
    st, doc = mgr.api("GET", "/api/v1/tracking/messages?" +
                      urllib.parse.urlencode({"recipient": rcpt}))
    assert st == 200, doc
    return [m["id"] for m in doc["messages"]]


def recipient_rows(mgr, msg_id):
    """(rows, distinct indexes) of msg_id in tracked_recipients."""
    (row,) = store_rows(mgr, "SELECT count(*), count(DISTINCT idx) FROM tracked_recipients"
                             " WHERE gateway = '%s' AND msg_id = '%s'" % (GW, msg_id))
    return int(row[0]), int(row[1])


def test_every_recipient_of_a_long_list_is_tracked(start_manager, start_gateway, aio_sink):
    """A message to 400 recipients of 70-byte addresses: the received event lists
    the first ~320, a "recipients" event the rest, and a search by the 1st, the
    350th or the 400th finds it; its story lists all 400 and leaves the
    "recipients" event out of its timeline; the gateway's events pushed again,
    and its "recipients" event again under a new seq, add no recipient row."""
    mgr = start_manager()
    token = register(mgr)
    gw = tracking_gateway(start_gateway, mgr, token, aio_sink.host)
    rcpts = ["%s%03d@example.com" % ("r" * 55, i) for i in range(400)]
    assert {len(r) for r in rcpts} == {70}
    code, text = gw.send("alice@sender.test", rcpts, make_message(subject="To many"))
    assert code == 250, text
    qid = queue_id(text)
    wait_for(lambda: any(e[1] == "reply" and e[2] == qid for e in events(mgr)), 30,
             "the message's events on the manager")
    mid = "%s~%s" % (GW, qid)
    for i in (0, 349, 399):
        assert recipient_search(mgr, rcpts[i]) == [mid], i
    assert recipient_search(mgr, rcpts[349].upper()) == [mid]  # without case
    st, story = mgr.api("GET", "/api/v1/tracking/messages/" + mid)
    assert st == 200, story
    assert story["recipients"] == rcpts
    types = [e["type"] for e in story["events"]]
    assert "recipients" not in types, types
    assert types[-4:] == ["verdict", "delivery", "delivery", "reply"], types
    assert recipient_rows(mgr, qid) == (400, 400)

    # the gateway's push again (its answer lost): nothing stored, no row doubled
    rows = store_rows(mgr, "SELECT seq, at, type, msg_id, detail FROM events"
                           " WHERE gateway = '%s' AND msg_id = '%s' ORDER BY seq" % (GW, qid))
    batch = [{"seq": int(r[0]), "at": int(r[1]), "type": r[2], "msg_id": r[3],
              "detail": json.loads(r[4])} for r in rows]
    assert [b["type"] for b in batch] == ["received", "recipients", "verdict", "delivery",
                                          "delivery", "reply"]
    st, doc = push(mgr, token, {"events": batch})
    assert (st, doc["stored"]) == (200, 0), doc
    # the same names under a new seq (a new event): stored, no row added or changed
    again = dict(batch[1], seq=batch[-1]["seq"] + 1000)
    st, doc = push(mgr, token, {"events": [again]})
    assert (st, doc["stored"]) == (200, 1), doc
    assert recipient_rows(mgr, qid) == (400, 400)
    st, story = mgr.api("GET", "/api/v1/tracking/messages/" + mid)
    assert story["recipients"] == rcpts


def tracked(mgr, **params):
    """The tracked messages a search finds."""
    st, doc = mgr.api("GET", "/api/v1/tracking/messages?" + urllib.parse.urlencode(params))
    assert st == 200, doc
    return doc["messages"]


def test_every_recipient_of_a_big_copy_has_its_delivery_or_quarantine(
        start_manager, start_gateway, aio_sink):
    """A message to 1,500 recipients relayed, one to 1,500 others a filter
    quarantines, and one to 60 recipients of 464-byte addresses relayed: each
    copy's recipients are listed in order across as many delivery (quarantine)
    events as their lists take, the same but for their names, so the story of
    each shows every recipient's delivery (quarantine), the last one's too, and
    a search by the last recipient finds the message delivered (quarantined).
    The events of one copy count once: 3,060 recipients in the reports, three
    messages in and two out in the capacity report."""
    mgr = start_manager()
    gw = tracking_gateway(start_gateway, mgr, register(mgr), aio_sink.host, start=False,
                          listener={"max_recipients": "2000"},
                          reporting={"capacity_interval": "1s"})
    gw.apply({"filters": {"file": gw.write_file(
        "gw.filters", 'hold: if subject == "^Hold" { quarantine("Policy"); }\n')}})
    gw.start()
    sent = {"many": ["user%04d@example.com" % i for i in range(1500)],
            "held": ["held%04d@example.com" % i for i in range(1500)],
            # within SMTP's 512-byte command line: 51 fit in 24 KB of names
            "long": ["%s%02d@example.com" % ("l" * 450, i) for i in range(60)]}
    subjects = {"many": "To many", "held": "Hold for many", "long": "Long names"}
    qids = {}
    for key, rcpts in sent.items():
        code, text = gw.send("alice@sender.test", rcpts, make_message(subject=subjects[key]))
        assert code == 250, (key, text)
        qids[key] = queue_id(text)
    # the next hop got the two relayed copies whole
    got = aio_sink.wait_count(2)
    assert sorted(m["rcpts"] for m in got) == sorted([sent["many"], sent["long"]])

    def capacity():
        st, doc = mgr.api("GET", "/api/v1/reports/system_capacity?period=day&gateway=" + GW)
        assert st == 200, doc
        return doc["totals"]
    wait_for(lambda: capacity()["messages_in"] == 3, 60, "the messages in the capacity samples")
    wait_for(lambda: all(any(e[1] == "reply" and e[2] == q for e in events(mgr))
                         for q in qids.values()), 30, "every message's events on the manager")

    mine = {key: [(e[1], e[3]) for e in events(mgr) if e[2] == q] for key, q in qids.items()}
    want = {"many": ("delivery", [1000, 500]), "held": ("quarantine", [1000, 500]),
            "long": ("delivery", [51, 9])}
    for key, (type_, sizes) in want.items():
        copy = [d for t, d in mine[key] if t == type_]
        assert [len(d["rcpts"]) for d in copy] == sizes, (key, [d.get("first") for d in copy])
        assert [r for d in copy for r in d["rcpts"]] == sent[key], key
        # one after the other, the same but for their names
        assert "first" not in copy[0] and copy[1]["first"] == sizes[0], key
        assert {d["rcpts_total"] for d in copy} == {len(sent[key])}, key
        assert copy[1] == dict(copy[0], first=sizes[0], rcpts=copy[1]["rcpts"]), key
        types = [t for t, _ in mine[key]]
        assert types[-3:] == [type_, type_, "reply"], (key, types)
        assert type_ == "quarantine" or copy[0]["status"] == "sent", copy[0]
    held = [d for t, d in mine["held"] if t == "quarantine"][0]
    assert held["where"] == "local" and held["quarantine"].lower() == "policy", held

    # the story: every recipient's delivery (quarantine), in its timeline
    for key, (type_, sizes) in want.items():
        mid = "%s~%s" % (GW, qids[key])
        st, story = mgr.api("GET", "/api/v1/tracking/messages/" + mid)
        assert st == 200, story
        assert story["recipients"] == sent[key]
        listed = [r for e in story["events"] if e["type"] == type_ for r in e["detail"]["rcpts"]]
        assert listed == sent[key], key
        # found by its last recipient, once, in the state its copy left it in
        state = "quarantined" if type_ == "quarantine" else "delivered"
        last = sent[key][-1]
        found = tracked(mgr, recipient=last, event=state)
        assert [(m["id"], m["last_state"]) for m in found] == [(mid, state)], key
        assert [m["id"] for m in tracked(mgr, recipient=last)] == [mid]

    # counted once: per recipient in the reports, per message in the capacity's
    def overview():
        st, doc = mgr.api("GET", "/api/v1/reports/overview?period=day")
        assert st == 200, doc
        return doc["totals"]
    wait_for(lambda: overview()["incoming"] == 3060, 30, "the messages in the reports")
    totals = overview()
    assert (totals["clean"], totals["content_filter"], totals["spam"]) == (1560, 1500, 0), totals
    st, doc = mgr.api("GET", "/api/v1/reports/outgoing_destinations?period=day")
    assert st == 200, doc
    assert [(r["key"], r["incoming"]) for r in doc["rows"]] == [("example.com", 3060)]
    wait_for(lambda: capacity()["messages_out"] == 2, 30, "the relayed copies sampled")
    assert capacity()["messages_in"] == 3
    time.sleep(1.5)  # a later sample adds nothing
    assert (capacity()["messages_in"], capacity()["messages_out"]) == (3, 2)


def test_recipients_in_a_later_push_are_added_once(manager):
    """A "recipients" event pushed after its received event's push adds its names
    at their indexes; both pushes replayed add nothing."""
    token = register(manager)
    now = int(time.time() * 1000)
    first = [{"seq": 1, "at": now, "type": "received", "msg_id": "m-long",
              "detail": {"sender": "a@x.test", "recipients": ["r0@y.test", "r1@y.test"],
                         "recipients_total": 4}}]
    later = [{"seq": 2, "at": now + 1, "type": "recipients", "msg_id": "m-long",
              "detail": {"first": 2, "recipients": ["r2@y.test", "R3@y.test"]}},
             {"seq": 3, "at": now + 2, "type": "reply", "msg_id": "m-long",
              "detail": {"reply": "250 2.0.0 Ok: m-long"}}]
    st, doc = push(manager, token, {"events": first})
    assert (st, doc) == (200, {"acked": 1, "stored": 1})
    assert recipient_search(manager, "r3@y.test") == []
    st, doc = push(manager, token, {"events": later})
    assert (st, doc) == (200, {"acked": 3, "stored": 2})
    for r in ("r0@y.test", "r2@y.test", "r3@y.test"):
        assert recipient_search(manager, r) == ["%s~m-long" % GW], r
    for batch in (first, later, first + later):
        st, doc = push(manager, token, {"events": batch})
        assert (st, doc["stored"]) == (200, 0), doc
    assert recipient_rows(manager, "m-long") == (4, 4)
    st, story = manager.api("GET", "/api/v1/tracking/messages/%s~m-long" % GW)
    assert story["recipients"] == ["r0@y.test", "r1@y.test", "r2@y.test", "R3@y.test"]
    assert [e["type"] for e in story["events"]] == ["received", "reply"]


def test_manager_down_then_back_every_event_once(start_manager, start_gateway, aio_sink):
    mgr = start_manager()
    token = register(mgr)
    gw = tracking_gateway(start_gateway, mgr, token, aio_sink.host)
    code, text = gw.send("alice@sender.test", "bob@example.com", make_message())
    assert code == 250, text
    wait_for(lambda: event_count(mgr) >= 6, 20, "the first message's events")
    before = event_count(mgr)
    mgr.stop()
    ids = []
    for i in range(6):
        code, text = gw.send("alice@sender.test", "bob@example.com",
                             make_message(subject="while down %d" % i))
        assert code == 250, text  # mail flows while the manager is down
        ids.append(queue_id(text))
    gw.wait_log("events.push_failed", timeout=20)
    m = gw_metrics(gw)
    assert m["lazaret_gw_events_backlog"] == 6 * 6, m  # connection, rcpt, 4 of the message
    assert m["lazaret_gw_events_oldest_unacked_seconds"] > 0
    assert m["lazaret_gw_events_push_failures_total"] >= 1
    mgr.start()
    wait_for(lambda: event_count(mgr) == before + 36, 90, "the backlog on the manager")
    gw.wait_log("events.push_resumed", timeout=20)
    ev = events(mgr)
    assert len(ev) == before + 36
    assert len({e[0] for e in ev}) == len(ev)  # exactly once
    for i in ids:
        assert [e[1] for e in ev if e[2] == i] == ["received", "verdict", "delivery", "reply"], i
    wait_for(lambda: gw_metrics(gw)["lazaret_gw_events_backlog"] == 0, 15, "an empty spool")
    wait_for(lambda: registry_entry(mgr)["event_backlog"] == 0, 15, "backlog 0 reported")
    assert event_count(mgr) == before + 36


def spool_sql(gw, sql):
    """Runs sql on the gateway's spool file (events.spool) through a connection of
    the test's own, as another program on the host would."""
    con = sqlite3.connect(os.path.join(gw.data_dir, "events.spool"), timeout=10)
    try:
        con.executescript(sql)
    finally:
        con.close()


def test_a_spool_file_refusing_writes_drops_events_past_the_cap(start_manager, start_gateway,
                                                                aio_sink):
    """The gateway's spool file refuses writes (here: triggers that abort them)
    while the manager takes every push: the events held in memory meanwhile
    stop at their cap ([events] spool_max, 1 MB, far before the spool is
    full); mail flows, later events are dropped and counted, and the log says
    why once (events.spool_unmovable, not spool_full). Once the file takes
    writes again, events flow again, each stored once."""
    mgr = start_manager()
    gw = tracking_gateway(start_gateway, mgr, register(mgr), aio_sink.host,
                          events={"spool_max": "1M"})
    code, text = gw.send("alice@sender.test", "bob@example.com", make_message())
    assert code == 250, text
    wait_for(lambda: event_count(mgr) >= 6, 20, "the first message's events")
    spool_sql(gw, "CREATE TRIGGER refuse_chunks BEFORE INSERT ON chunks"
                  " BEGIN SELECT RAISE(ABORT, 'refused'); END;"
                  "CREATE TRIGGER refuse_meta BEFORE UPDATE ON meta"
                  " BEGIN SELECT RAISE(ABORT, 'refused'); END;")
    gw.wait_log('events.spool_write_failed path=%s error="refused"'
                % os.path.join(gw.data_dir, "events.spool"), timeout=20)
    # ~50 KB of events a message (its recipients listed): the cap within ~20
    rcpts = ["%s%03d@example.com" % ("r" * 57, i) for i in range(400)]
    sent = 0
    while gw_metrics(gw)["lazaret_gw_events_dropped_total"] == 0:
        assert sent < 60, gw.log_text()[-3000:]
        code, text = gw.send("alice@sender.test", rcpts,
                             make_message(subject="while refused %d" % sent))
        assert code == 250, text  # mail flows
        sent += 1
        wait_for(lambda: gw_metrics(gw)["lazaret_gw_events_backlog"] == 0, 20,
                 "the manager taking the events")
    gw.wait_log("events.spool_unmovable", timeout=20)
    log = gw.log_text()
    assert re.search(r"error events\.spool_unmovable dropped=\d+ dropped_total=\d+ .*"
                     r"reason=\"the spool file \(events\.spool\) refuses writes", log), log[-3000:]
    assert "events.spool_full" not in log
    m = gw_metrics(gw)
    assert m["lazaret_gw_events_spool_bytes"] < 512 * 1024, m  # the manager took them

    spool_sql(gw, "DROP TRIGGER refuse_chunks; DROP TRIGGER refuse_meta;")

    def taken():
        before = gw_metrics(gw)["lazaret_gw_events_dropped_total"]
        code, text = gw.send("alice@sender.test", "bob@example.com",
                             make_message(subject="after"))
        assert code == 250, text
        return gw_metrics(gw)["lazaret_gw_events_dropped_total"] == before and queue_id(text)
    qid = wait_for(taken, 20, "events taken again", interval=0.5)
    wait_for(lambda: any(e[1] == "reply" and e[2] == qid for e in events(mgr)), 30,
             "the last message's events on the manager")
    ev = events(mgr)
    assert len({e[0] for e in ev}) == len(ev)  # each once


def burst_then_kill9(gw):
    """Four sessions send to gw until 20 messages got 250, then kill -9 of gw in the
    burst; the queue ids of every message that got 250 (at least 20)."""
    acked, lock = [], threading.Lock()
    stop = threading.Event()

    def sender(k):
        i = 0
        while not stop.is_set():
            try:
                code, text = gw.send("alice@sender.test", "bob@example.com",
                                     make_message(subject="burst %d-%d" % (k, i)))
            except Exception:  # the gateway was killed under this session
                return
            if code == 250:
                with lock:
                    acked.append(queue_id(text))
            i += 1

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    wait_for(lambda: len(acked) >= 20, 60, "20 messages accepted")
    gw.proc.send_signal(signal.SIGKILL)
    gw.proc.wait()
    stop.set()
    for th in threads:
        th.join(timeout=t(30))
    with lock:
        got = list(acked)
    assert len(got) >= 20
    return got


@pytest.mark.parametrize("sync", ["group", "each"])
def test_kill9_in_a_burst_loses_no_acknowledged_event(start_manager, start_gateway, aio_sink,
                                                      sync):
    mgr = start_manager()
    token = register(mgr)
    # group (the default): a 250 waits for the commit, not for its fsync; each: both
    gw = tracking_gateway(start_gateway, mgr, token, aio_sink.host, events={"sync": sync})
    assert re.search(r"events\.start .*sync=%s " % sync, gw.log_text()), gw.log_text()[-3000:]
    got = burst_then_kill9(gw)
    gw.start()  # the same data_dir: its spool is pushed
    want = set(got)

    def arrived():
        have = {e[2] for e in events(mgr) if e[1] == "delivery"}
        return want <= have
    wait_for(arrived, 90, "the delivery event of every message that got 250")
    ev = events(mgr)
    assert len({e[0] for e in ev}) == len(ev)
    for i in got:
        assert [e[1] for e in ev if e[2] == i] == ["received", "verdict", "delivery", "reply"], i


def test_a_spool_of_the_older_format_is_converted_and_pushed(start_manager, start_gateway,
                                                              aio_sink):
    """A gateway upgraded with a backlog in the older spool format (a row an
    event): the backlog reaches the manager once, with its numbers and texts,
    and the numbering goes on above it."""
    mgr = start_manager()
    token = register(mgr)
    gw = tracking_gateway(start_gateway, mgr, token, aio_sink.host, start=False)
    os.makedirs(gw.data_dir, exist_ok=True)
    old = [(5000, 1764892800000, "received", "m-old-1",
            {"sender": "a@x.test", "recipients": ["b@y.test"], "subject": "見積の件"}),
           (5001, 1764892800001, "delivery", "m-old-1", {"status": "sent", "reply": "250 ok"}),
           (5003, 1764892800003, "bounce", "m-old-2", {"rcpts": 1, "reply": "554 no"})]
    con = sqlite3.connect(os.path.join(gw.data_dir, "events.spool"))
    con.executescript(
        "PRAGMA journal_mode = WAL;"
        "CREATE TABLE events (seq INTEGER PRIMARY KEY, at INTEGER NOT NULL,"
        " type TEXT NOT NULL, msg_id TEXT, detail TEXT NOT NULL, size INTEGER NOT NULL);"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
        "INSERT INTO meta VALUES ('next_seq', 5000), ('mode', 1);")
    con.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, 100)",
                    [(q, a, ty, m, json.dumps(d, ensure_ascii=False)) for q, a, ty, m, d in old])
    con.commit()
    con.close()
    gw.start()
    assert re.search(r"events\.spool_converted events=3", gw.log_text()), gw.log_text()[-3000:]
    wait_for(lambda: event_count(mgr) >= 3, 30, "the converted backlog on the manager")
    ev = events(mgr)
    assert [(e[0], e[1], e[2], e[3]) for e in ev[:3]] == [(q, ty, m, d) for q, _, ty, m, d in old]
    code, text = gw.send("alice@sender.test", "bob@example.com", make_message())
    assert code == 250, text
    mine = queue_id(text)
    wait_for(lambda: any(e[2] == mine and e[1] == "reply" for e in events(mgr)), 30,
             "the new message's events")
    ev = events(mgr)
    assert len({e[0] for e in ev}) == len(ev)  # once each
    assert min(e[0] for e in ev if e[0] not in (5000, 5001, 5003)) > 5003
    con = sqlite3.connect("file:%s?mode=ro" % os.path.join(gw.data_dir, "events.spool"),
                          uri=True)
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        con.close()
    assert "events" not in tables and "chunks" in tables, tables


def test_connection_events_say_tls_and_throttling(start_manager, start_gateway, aio_sink,
                                                 workdir):
    import smtplib
    import ssl
    from tls_fixtures import TestPKI
    pki = TestPKI(workdir)
    cert, key = pki.good.server
    mgr = start_manager()
    token = register(mgr)
    gw = tracking_gateway(start_gateway, mgr, token, aio_sink.host,
                          listener={"tls_cert": cert, "tls_key": key},
                          hat={"policy.slow": "throttle 1: 127.0.0.0/8"})
    s = smtplib.SMTP("127.0.0.1", gw.smtp_port, timeout=t(30))
    s.ehlo("tls.e2e.test")
    ctx = ssl.create_default_context(cafile=pki.good.ca)
    ctx.check_hostname = False
    s.starttls(context=ctx)
    s.ehlo("tls.e2e.test")
    s.sendmail("alice@sender.test", ["bob@example.com"], make_message())
    code, _ = s.mail("alice@sender.test")  # the second message this hour: throttled
    assert code == 452
    s.quit()
    wait_for(lambda: any(e[1] == "rate_limit" for e in events(mgr)), 30, "the rate limit")
    ev = events(mgr)
    (conn,) = [e[3] for e in ev if e[1] == "connection"]
    assert conn["helo"] == "tls.e2e.test"
    assert conn["tls_version"] in ("TLSv1.2", "TLSv1.3"), conn
    assert conn["tls_cipher"], conn
    assert (conn["hat_policy"], conn["hat_decision"]) == ("slow", "throttle")
    (limited,) = [e[3] for e in ev if e[1] == "rate_limit"]
    assert (limited["hat_policy"], limited["limit"]) == ("slow", 1)
    (rec,) = [e[3] for e in ev if e[1] == "received"]
    assert rec["tls"] is True


def test_a_silent_manager_does_not_hold_the_shutdown(start_manager, start_gateway, aio_sink):
    """A manager that takes the connection and never answers: SIGTERM stops the push
    in progress (the events stay in the spool) instead of waiting out its 30 s."""
    import socket
    import time
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        url = "http://127.0.0.1:%d" % silent.getsockname()[1]
        gw = start_gateway(aio_sink.host, manager={"api_url": url, "api_token": "0" * 64},
                           tracking={"mode": "central"})
        code, text = gw.send("alice@sender.test", "bob@example.com", make_message())
        assert code == 250, text
        time.sleep(1.5)  # the pusher is waiting for an answer now
        assert gw_metrics(gw)["lazaret_gw_events_backlog"] == 6
        started = time.monotonic()
        assert gw.stop() == 0
        # the hello to the same manager may wait its own 10 s; a push would wait 30 s
        assert time.monotonic() - started < 25, time.monotonic() - started
        gw.start()
        assert gw_metrics(gw)["lazaret_gw_events_backlog"] == 6  # kept for later
    finally:
        silent.close()


def test_a_message_the_next_hop_defers_is_tracked_as_tempfailed(start_manager,
                                                                start_gateway):
    from e2e_helpers import free_port
    mgr = start_manager()
    token = register(mgr)
    gw = tracking_gateway(start_gateway, mgr, token, "127.0.0.1:%d" % free_port())
    code, text = gw.send("alice@sender.test", "bob@example.com", make_message())
    assert code == 451, text
    wait_for(lambda: any(e[1] == "reply" for e in events(mgr)), 30, "the reply event")
    ev = [e for e in events(mgr) if e[2]]
    assert [e[1] for e in ev] == ["received", "verdict", "delivery", "reply"], ev
    assert ev[2][3]["status"] == "deferred" and ev[2][3]["reply"], ev[2]
    assert ev[3][3]["reply"].startswith("451 4.3.0"), ev[3]
    row = store_rows(mgr, "SELECT last_state, flags FROM tracked_messages"
                          " WHERE msg_id = '%s'" % ev[0][2])
    assert row == [["tempfailed", str(32)]], row  # soft bounce


def test_a_copy_refused_for_some_recipients_tells_each_its_reply(start_manager,
                                                                  start_gateway, aio_sink):
    """The next hop takes a copy for two recipients and refuses three, one with a
    reply of its own and two with the same: each recipient's delivery says its own
    outcome and reply, the two with one reply in one event."""
    mgr = start_manager()
    token = register(mgr)
    aio_sink.handler.rcpt_replies["nobody@example.com"] = \
        "550 5.1.1 <nobody@example.com>: user unknown"
    aio_sink.handler.rcpt_replies["full@example.com"] = "552 5.2.2 mailbox full"
    aio_sink.handler.rcpt_replies["full2@example.com"] = "552 5.2.2 mailbox full"
    gw = tracking_gateway(start_gateway, mgr, token, aio_sink.host)
    rcpts = ["bob@example.com", "nobody@example.com", "carol@example.com",
             "full@example.com", "full2@example.com"]
    code, text = gw.send("alice@sender.test", rcpts, make_message())
    assert code == 250, text
    (d,) = aio_sink.wait_count(1)
    assert d["rcpts"] == ["bob@example.com", "carol@example.com"]
    wait_for(lambda: any(e[1] == "reply" for e in events(mgr)), 30, "the reply event")
    ev = [e for e in events(mgr) if e[2] == queue_id(text)]
    told = [(e[3]["status"], e[3]["rcpts"], e[3]["reply"]) for e in ev if e[1] == "delivery"]
    assert told[:2] == [
        ("refused", ["nobody@example.com"], "550 5.1.1 <nobody@example.com>: user unknown"),
        ("refused", ["full@example.com", "full2@example.com"], "552 5.2.2 mailbox full")], told
    assert len(told) == 3 and told[2][:2] == ("sent", ["bob@example.com",
                                                        "carol@example.com"]), told
    assert told[2][2].startswith("250"), told
    assert all(e[3]["route"] == "next_hop" for e in ev if e[1] == "delivery"), ev
    # the message ends delivered, with the hard bounce flag
    row = store_rows(mgr, "SELECT last_state, flags FROM tracked_messages"
                          " WHERE msg_id = '%s'" % queue_id(text))
    assert row == [["delivered", str(8 | 16)]], row
    # and the story says each recipient's outcome
    st, doc = mgr.api("GET", "/api/v1/tracking/messages/%s~%s" % (GW, queue_id(text)))
    assert st == 200, doc
    shown = [(x["detail"]["status"], x["detail"]["rcpts"]) for x in doc["events"]
             if x["type"] == "delivery"]
    assert shown == [(s, r) for s, r, _ in told], shown


def test_tracking_off_records_nothing(start_manager, start_gateway, aio_sink):
    mgr = start_manager()
    token = register(mgr)
    gw = tracking_gateway(start_gateway, mgr, token, aio_sink.host, tracking={"mode": "off"})
    code, text = gw.send("alice@sender.test", "bob@example.com", make_message())
    assert code == 250, text
    assert not os.path.exists(os.path.join(gw.data_dir, "events.spool"))
    assert "lazaret_gw_events_backlog" not in gw_metrics(gw)
    assert event_count(mgr) == 0


def test_central_needs_the_manager_url_and_token(start_gateway, aio_sink):
    gw = start_gateway(aio_sink.host, start=False, tracking={"mode": "central"})
    gw.write_config()
    from gw_fixtures import lazaret_gw_path
    r = subprocess.run([lazaret_gw_path(), "--check-config", "-c", gw.conf_path],
                       capture_output=True, text=True, timeout=t(30))
    assert r.returncode == 1
    assert ("[tracking] mode: central needs [manager] api_url and api_token (events are "
            "pushed there)") in r.stderr, r.stderr


def test_rejected_connections_are_recorded_only_when_asked(start_manager, start_gateway,
                                                           aio_sink):
    mgr = start_manager()
    token = register(mgr)
    gw = tracking_gateway(start_gateway, mgr, token, aio_sink.host,
                          hat={"default": "reject"})
    with pytest.raises(Exception):
        gw.send("alice@sender.test", "bob@example.com", make_message())
    m = gw_metrics(gw)
    assert (m["lazaret_gw_events_backlog"], m["lazaret_gw_events_pushed_total"]) == (0, 0)
    gw.stop()
    assert event_count(mgr) == 0
    gw.apply({"tracking": {"rejected_connections": "yes"}})
    gw.start()  # its readiness probe is refused too: one more rejected connection
    with pytest.raises(Exception):
        gw.send("alice@sender.test", "bob@example.com", make_message())
    wait_for(lambda: event_count(mgr) == 2, 20, "the rejected connections' events")
    for _, type_, msg_id, detail in events(mgr):
        assert (type_, msg_id) == ("connection", "")
        assert detail["hat_decision"] == "reject" and detail["hat_policy"] == "default"
        assert detail["client_ip"] == "127.0.0.1" and detail["helo"] is None


def refused_at_connect(gw):
    """A second connection while one is held: the listener's 421 line."""
    held = gw.smtp()
    try:
        with socket.create_connection(("127.0.0.1", gw.smtp_port), timeout=t(10)) as c:
            line = c.makefile("rb").readline().decode("ascii").rstrip("\r\n")
    finally:
        held.quit()
    return line


def connection_events(mgr):
    return [d for _, type_, _, d in events(mgr) if type_ == "connection"]


@pytest.mark.parametrize("limit,reason,reply", [
    ("max_connections", "connection_limit", "421 4.7.0 %s Error: too many connections"),
    ("max_connections_per_client", "client_connection_limit",
     "421 4.7.0 %s Error: too many connections from 127.0.0.1")],
    ids=["connections", "per_client"])
def test_connections_over_the_listeners_limits_are_recorded_only_when_asked(
        start_manager, start_gateway, aio_sink, limit, reason, reply):
    mgr = start_manager()
    token = register(mgr)
    gw = tracking_gateway(start_gateway, mgr, token, aio_sink.host, listener={limit: "1"})
    assert refused_at_connect(gw) == reply % gw.name
    code, text = gw.send("alice@sender.test", "bob@example.com", make_message())
    assert code == 250, text
    # the message's events arrive; no event says anything of the refused connection
    wait_for(lambda: any(e[1] == "delivery" for e in events(mgr)), 30, "the message's events")
    assert [d["hat_decision"] for d in connection_events(mgr)] == ["accept"]
    gw.stop()
    gw.apply({"tracking": {"rejected_connections": "yes"}})
    gw.start()
    assert refused_at_connect(gw) == reply % gw.name
    wait_for(lambda: len(connection_events(mgr)) == 2, 30, "the refused connection's event")
    d = connection_events(mgr)[1]
    assert (d["hat_decision"], d["reason"], d["client_ip"]) == ("reject", reason, "127.0.0.1")
    assert d["hat_policy"] is None and d["helo"] is None and d["session"] is None


def test_a_hat_reject_says_its_reason_and_reply(start_manager, start_gateway, aio_sink):
    mgr = start_manager()
    token = register(mgr)
    gw = tracking_gateway(start_gateway, mgr, token, aio_sink.host,
                          hat={"policy.bad": "reject: 127.0.0.0/8"},
                          tracking={"mode": "central", "rejected_connections": "yes"})
    with pytest.raises(smtplib.SMTPConnectError) as e:
        gw.smtp()
    assert e.value.smtp_code == 554
    wait_for(lambda: len(connection_events(mgr)) >= 2, 30, "the rejects' events")  # + probe
    for d in connection_events(mgr):
        assert (d["hat_decision"], d["reason"], d["hat_policy"]) == ("reject", "hat", "bad")
        assert d["reply"] == "554 5.7.1 %s: Access denied" % gw.name
        assert d["client_ip"] == "127.0.0.1" and d["session"]


@pytest.mark.parametrize("rejected", ["no", "yes"])
def test_a_throttled_mail_is_recorded_either_way(start_manager, start_gateway, aio_sink,
                                                  rejected):
    """A throttle refuses messages, not connections: the session's connection event
    (hat_decision throttle) and the rate_limit event come whatever
    rejected_connections says."""
    mgr = start_manager()
    token = register(mgr)
    gw = tracking_gateway(start_gateway, mgr, token, aio_sink.host,
                          hat={"policy.slow": "throttle 1: 127.0.0.0/8"},
                          tracking={"mode": "central", "rejected_connections": rejected})
    code, text = gw.send("alice@sender.test", "bob@example.com", make_message())
    assert code == 250, text
    code, text = gw.send("alice@sender.test", "bob@example.com", make_message())
    assert (code, text) == (452, "4.7.0 Error: too many messages from 127.0.0.1, try again later")
    wait_for(lambda: any(e[1] == "rate_limit" for e in events(mgr)), 30, "the rate_limit event")
    (rl,) = [d for _, type_, _, d in events(mgr) if type_ == "rate_limit"]
    assert (rl["client_ip"], rl["hat_policy"], rl["limit"]) == ("127.0.0.1", "slow", 1)
    assert [d["hat_decision"] for d in connection_events(mgr)] == ["throttle", "throttle"]


def test_a_new_token_on_reload_is_used_for_the_next_push(start_manager, start_gateway,
                                                         aio_sink):
    mgr = start_manager()
    token = register(mgr)
    gw = tracking_gateway(start_gateway, mgr, "0" * 64, aio_sink.host)
    code, text = gw.send("alice@sender.test", "bob@example.com", make_message())
    assert code == 250, text
    gw.wait_log("events.push_failed", timeout=20)
    assert "status=401" in gw.log_text()
    assert event_count(mgr) == 0
    gw.reload(manager={"api_token": token})
    wait_for(lambda: event_count(mgr) == 6, 90, "the events pushed with the new token")


# ---- bad pushes: exact answers, nothing stored ------------------------------------

def push(mgr, token, body, headers=None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
    st, _, reply = mgr.http("POST", "/api/v1/gateway/events", body=raw, token=token,
                            headers=headers)
    try:
        doc = json.loads(reply.decode("utf-8")) if reply else None
    except ValueError:
        doc = None
    return st, doc


def ev(seq, type_="delivery", msg_id="m-1", **detail):
    e = {"seq": seq, "at": 1764892800000 + seq, "type": type_, "detail": detail}
    if msg_id is not None:
        e["msg_id"] = msg_id
    return e


GOOD = [ev(1, "received", sender="a@x.test", recipients=["b@y.test"], subject="s"),
        ev(2, "delivery", status="sent", reply="250 ok")]


def test_a_push_is_stored_once_and_replays_store_nothing(manager):
    token = register(manager)
    before = time.time()
    st, doc = push(manager, token, {"gateway": GW, "backlog": 4, "events": GOOD})
    assert (st, doc) == (200, {"acked": 2, "stored": 2})
    # backlog and lag per gateway: the newest event (2 ms past 2025-12-05) is that old
    metrics = manager.metrics()
    assert metrics['lazaret_gateway_event_backlog{gateway="%s"}' % GW] == 4
    lag = metrics['lazaret_gateway_event_lag_seconds{gateway="%s"}' % GW]
    assert abs(lag - (time.time() - 1764892800.002)) < 60, lag
    pushed = metrics['lazaret_gateway_event_push_timestamp_seconds{gateway="%s"}' % GW]
    assert before - 1 <= pushed <= time.time() + 1, pushed
    st, doc = push(manager, token, {"events": GOOD})  # the answer was lost: again
    assert (st, doc) == (200, {"acked": 2, "stored": 0})
    st, doc = push(manager, token, {"events": GOOD[1:] + [ev(3, "bounce", reply="554")]})
    assert (st, doc) == (200, {"acked": 3, "stored": 1})
    assert event_count(manager) == 3
    assert [e[0] for e in events(manager)] == [1, 2, 3]
    g = registry_entry(manager)
    assert g["event_backlog"] is None  # the last push did not say
    assert g["last_event_at"] == "2025-12-05T00:00:00Z"
    assert g["last_seen"] is not None


BAD = [
    (b"{not json", 400, "invalid JSON at line 1 column 4: string or '}' expected near 'not'"),
    (b"[]", 422, "the request body must be a JSON object"),
    ({"events": {}}, 400, '"events" is required (an array)'),
    ({"events": [{"at": 1, "type": "delivery"}]}, 400,
     'events[0]: "seq" must be an integer of at least 1'),
    ({"events": [ev(1, "exploded")]}, 400, 'events[0]: "type" "exploded" is not an event type'),
    ({"events": [ev(1), ev(1)]}, 400, 'events[1]: "seq" 1 is not above the one before it'),
    ({"events": [ev(1, "received")]}, 400,
     'events[0]: "detail"."sender" is missing or malformed'),
    ({"events": [ev(1, msg_id="a b")]}, 400,
     'events[0]: "msg_id" must be 1 to 64 printable characters without blanks'),
    ({"events": [ev(i + 1) for i in range(1001)]}, 413,
     "a batch holds at most 1000 events, not 1001"),
    ({"gateway": "other-gw", "events": GOOD}, 403,
     'this token belongs to gateway "gw-e2e", not "other-gw"'),
    ({"events": [ev(1, "recipients", first=-1, recipients=["b@y.test"])]}, 400,
     'events[0]: "detail"."first" is missing or malformed'),
    ({"events": [ev(1, "recipients", first=320, recipients=[])]}, 400,
     'events[0]: "detail"."recipients" is missing or malformed'),
    ({"events": [ev(1, "recipients", msg_id=None, first=320, recipients=["b@y.test"])]}, 400,
     'events[0]: a "recipients" event needs "msg_id"'),
]


@pytest.mark.parametrize("body,status,message", BAD,
                         ids=["json", "array", "events", "seq", "type", "order", "received",
                              "msg_id", "batch", "name", "recipients_first",
                              "recipients_none", "recipients_msg_id"])
def test_bad_pushes_are_refused_and_store_nothing(manager, body, status, message):
    token = register(manager)
    st, doc = push(manager, token, {"events": [ev(100, "connection", msg_id=None)]})
    assert st == 200, doc
    st, doc = push(manager, token, body)
    assert st == status, doc
    assert error(doc) == message
    assert event_count(manager) == 1
    assert store_rows(manager, "SELECT count(*) FROM tracked_messages") == [["0"]]


def test_a_push_over_the_body_limit_is_413(manager):
    token = register(manager)
    big = {"events": [ev(1, "connection", msg_id=None, pad="x" * (1100 * 1024))]}
    st, doc = push(manager, token, big)
    assert (st, error(doc)) == (413, "request body is larger than 1048576 bytes"), doc
    assert event_count(manager) == 0


def test_pushes_need_a_registered_gateways_token(manager):
    token = register(manager)
    other = register(manager, "gw-gone", "192.0.2.9")
    st, doc = manager.api("DELETE", "/api/v1/gateways/gw-gone")
    assert st == 200, doc
    body = {"events": GOOD}
    for tok in (None, manager.token, "0" * 64, other, token[:-1] + "x"):
        st, doc = push(manager, tok, body)
        assert (st, error(doc)) == (401, "a valid gateway token is required"), tok
    # a session of an admin is no gateway token either
    st, doc = manager.api("POST", "/api/v1/users", json={
        "username": "root2", "password": "correct horse battery", "role": "admin"})
    assert st in (200, 201), doc
    st, hdrs, raw = manager.http("POST", "/api/v1/session", token=None,
                                 body={"username": "root2", "password": "correct horse battery"})
    assert st == 200, raw
    cookie = hdrs.get("Set-Cookie").split(";")[0]
    csrf = json.loads(raw)["csrf_token"]
    st, doc = push(manager, None, body, headers={"Cookie": cookie, "X-CSRF-Token": csrf})
    assert (st, error(doc)) == (401, "a valid gateway token is required")
    assert event_count(manager) == 0

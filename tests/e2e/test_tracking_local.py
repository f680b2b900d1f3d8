"""Message tracking kept on the gateway ([tracking] mode = local, docs/GATEWAY.md
"Events"): a real lazaret-gw records its events into its own store and its [http]
listener answers GET /api/v1/tracking/messages and /{id} for the admin token
only; no event reaches the manager; a restart in another mode is logged and
moves only the spool's backlog, so no event is in both places or stored twice;
kill -9 in a burst loses no event of a message that got its 250; [tracking]
retention removes what is older from the gateway's store. The gateway's
store is SQLite whatever the suite's backend (the manager's is the suite's)."""

import os
import sqlite3
import urllib.parse

from e2e_helpers import wait_for
from gw_fixtures import GTUBE, make_message  # noqa: F401
from gw_fixtures import start_gateway  # noqa: F401 (a fixture)
from test_events import (GW, burst_then_kill9, event_count, events, gw_metrics, queue_id,
                         register)

MSG_TYPES = ["received", "verdict", "delivery", "reply"]


def local_rows(gw, sql):
    """The rows of sql on the gateway's own store (read-only)."""
    path = os.path.join(gw.data_dir, "lazaret.db")
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)
    try:
        return [list(r) for r in con.execute(sql)]
    finally:
        con.close()


def local_events(gw):
    """(seq, type, msg_id) of every event in the gateway's own store, by seq."""
    return [tuple(r) for r in local_rows(
        gw, "SELECT seq, type, coalesce(msg_id, '') FROM events WHERE gateway = '%s'"
            " ORDER BY seq" % GW)]


def search(gw, token=None, **params):
    q = urllib.parse.urlencode(params)
    path = "/api/v1/tracking/messages" + ("?" + q if q else "")
    if token is None:
        return gw.api("GET", path)
    return gw.api("GET", path, token=token)


def tracked_ids(gw, **params):
    st, doc = search(gw, **params)
    assert st == 200, doc
    return {m["id"].split("~", 1)[1] for m in doc["messages"]}


def local_gateway(start_gateway, next_hop, mgr=None, token=None, **sections):  # noqa: F811
    if mgr is not None:
        # the manager is known (hello), so a push could go there: none may
        sections.setdefault("manager", {}).update({"api_url": mgr.http_url,
                                                   "api_token": token})
    sections.setdefault("tracking", {"mode": "local"})
    return start_gateway(next_hop, **sections)


def test_local_mode_tracks_on_the_gateway(start_manager, start_gateway, aio_sink):  # noqa: F811
    mgr = start_manager()
    token = register(mgr)
    gw = local_gateway(start_gateway, aio_sink.host, mgr, token,
                       spam_quarantine={"enabled": "yes"})
    code, text = gw.send("alice@sender.test", ["bob@example.com", "carol@example.com"],
                         make_message(subject="Quarterly report"))
    assert code == 250, text
    clean = queue_id(text)
    code, text = gw.send("alice@sender.test", "mallory@elsewhere.test", make_message())
    assert code == 550, text
    code, text = gw.send("spammer@sender.test", "bob@example.com",
                         make_message(subject="Win", body="Buy now.\r\n%s\r\n" % GTUBE))
    assert code == 250, text
    spam = queue_id(text)

    wait_for(lambda: tracked_ids(gw) == {clean, spam}, 30, "both messages tracked")
    st, doc = search(gw)
    by_id = {m["id"]: m for m in doc["messages"]}
    m = by_id["%s~%s" % (GW, clean)]
    assert (m["gateway"], m["sender"], m["subject"]) == (GW, "alice@sender.test",
                                                         "Quarterly report")
    assert m["recipients"] == ["bob@example.com", "carol@example.com"]
    assert m["last_state"] == "delivered"
    assert by_id["%s~%s" % (GW, spam)]["last_state"] == "quarantined"
    # the searches are the manager's: by event, sender, subject
    assert tracked_ids(gw, event="spam") == {spam}
    assert tracked_ids(gw, event="delivered") == {clean}
    assert tracked_ids(gw, sender="spammer@sender.test") == {spam}
    assert tracked_ids(gw, subject="quarterly", subject_op="begins") == {clean}
    st, doc = search(gw, limit="0")
    assert st == 400 and "limit" in doc["error"]["message"], doc

    # the story of each, with its session's connection event
    st, doc = gw.api("GET", "/api/v1/tracking/messages/%s~%s" % (GW, clean))
    assert st == 200, doc
    types = [e["type"] for e in doc["events"]]
    assert types == ["connection"] + MSG_TYPES, types
    (delivery,) = [e for e in doc["events"] if e["type"] == "delivery"]
    assert delivery["detail"]["status"] == "sent"
    assert delivery["detail"]["host"] == aio_sink.host
    assert doc["helo"] == "client.e2e.test"
    st, doc = gw.api("GET", "/api/v1/tracking/messages/%s~%s" % (GW, spam))
    assert st == 200, doc
    story = [(e["type"], e["detail"]) for e in doc["events"]]
    assert [s[0] for s in story] == ["connection", "received", "verdict", "quarantine",
                                     "reply"], story
    assert story[2][1]["level"] == "spam"
    assert (story[3][1]["quarantine"], story[3][1]["where"]) == ("spam", "local")
    st, doc = gw.api("GET", "/api/v1/tracking/messages/%s~%s" % (GW, "0" * 36))
    assert st == 404, doc

    # the recipient refused at RCPT is in the gateway's events, not a tracked message
    ev = local_events(gw)
    assert [e[1] for e in ev].count("rcpt_refused") == 1, ev
    assert len({e[0] for e in ev}) == len(ev)

    # only the admin token
    for tok in (None, "wrong-" + gw.token):
        st, doc = gw.api("GET", "/api/v1/tracking/messages", token=tok)
        assert st == 401, (tok, doc)
        st, doc = gw.api("GET", "/api/v1/tracking/messages/%s~%s" % (GW, clean), token=tok)
        assert st == 401, (tok, doc)

    m = gw_metrics(gw)
    assert m["lazaret_gw_events_applied_total"] == len(ev)
    assert m["lazaret_gw_events_pushed_total"] == 0
    assert m["lazaret_gw_events_backlog"] == 0
    # nothing of this gateway's reached the manager
    assert events(mgr) == []
    assert event_count(mgr) == 0
    st, doc = mgr.api("GET", "/api/v1/tracking/messages")
    assert st == 200 and doc["messages"] == [], doc


def test_local_mode_tracks_every_recipient_of_a_long_list(start_gateway,  # noqa: F811
                                                         aio_sink):
    """400 recipients of 70-byte addresses: the gateway's own store gets the names
    its received event could not list from its "recipients" event, so a search
    on the gateway by the 350th finds the message, which lists all 400."""
    gw = local_gateway(start_gateway, aio_sink.host)
    rcpts = ["%s%03d@example.com" % ("r" * 55, i) for i in range(400)]
    code, text = gw.send("alice@sender.test", rcpts, make_message(subject="To many"))
    assert code == 250, text
    qid = queue_id(text)
    wait_for(lambda: tracked_ids(gw) == {qid}, 30, "the message tracked")
    # the delivery's recipients in two events too
    assert [e[1] for e in local_events(gw) if e[2] == qid] == \
        ["received", "recipients", "verdict", "delivery", "delivery", "reply"]
    for i in (0, 349, 399):
        assert tracked_ids(gw, recipient=rcpts[i]) == {qid}, i
    st, doc = gw.api("GET", "/api/v1/tracking/messages/%s~%s" % (GW, qid))
    assert st == 200, doc
    assert doc["recipients"] == rcpts
    assert [e["type"] for e in doc["events"]] == \
        ["connection", "received", "verdict", "delivery", "delivery", "reply"]
    listed = [r for e in doc["events"] if e["type"] == "delivery" for r in e["detail"]["rcpts"]]
    assert listed == rcpts


def test_central_mode_serves_no_tracking(start_manager, start_gateway, aio_sink):  # noqa: F811
    """The gateway's tracking routes are local mode's: central answers 404 there."""
    mgr = start_manager()
    gw = start_gateway(aio_sink.host, manager={"api_url": mgr.http_url,
                                               "api_token": register(mgr)},
                       tracking={"mode": "central"})
    st, doc = gw.api("GET", "/api/v1/tracking/messages")
    assert st == 404, doc


def test_switching_modes_moves_only_the_backlog(start_manager, start_gateway,  # noqa: F811
                                                aio_sink):
    mgr = start_manager()
    token = register(mgr)
    gw = local_gateway(start_gateway, aio_sink.host, mgr, token)
    code, text = gw.send("alice@sender.test", "bob@example.com", make_message(subject="one"))
    assert code == 250, text
    m1 = queue_id(text)
    wait_for(lambda: tracked_ids(gw) == {m1}, 30, "m1 tracked on the gateway")
    wait_for(lambda: gw_metrics(gw)["lazaret_gw_events_backlog"] == 0, 15, "an empty spool")
    assert gw.stop() == 0
    n_local = len(local_events(gw))
    assert "events.mode_switched" not in gw.log_text()

    # local -> central: what the gateway stored stays there, nothing of it is pushed
    gw.apply({"tracking": {"mode": "central"}})
    gw.start()
    gw.wait_log("events.mode_switched from=local to=central backlog=0")
    code, text = gw.send("alice@sender.test", "bob@example.com", make_message(subject="two"))
    assert code == 250, text
    m2 = queue_id(text)
    wait_for(lambda: any(e[2] == m2 and e[1] == "reply" for e in events(mgr)), 30,
             "m2 on the manager")
    ev = events(mgr)
    assert len(ev) == 6, ev  # connection, rcpt_accepted and m2's four
    assert {e[2] for e in ev} == {"", m2}
    assert [e[1] for e in ev if e[2] == m2] == MSG_TYPES
    assert len(local_events(gw)) == n_local
    st, doc = gw.api("GET", "/api/v1/tracking/messages")
    assert st == 404, doc

    # the manager goes away: m3's events wait in the spool
    mgr.stop()
    code, text = gw.send("alice@sender.test", "bob@example.com", make_message(subject="three"))
    assert code == 250, text
    m3 = queue_id(text)
    wait_for(lambda: gw_metrics(gw)["lazaret_gw_events_backlog"] == 6, 15, "m3 spooled")
    assert gw.stop() == 0

    # central -> local: the backlog goes to the gateway's own store, once
    gw.apply({"tracking": {"mode": "local"}})
    gw.start()
    gw.wait_log("events.mode_switched from=central to=local backlog=6")
    wait_for(lambda: tracked_ids(gw) == {m1, m3}, 30, "m3 applied locally")
    mine = local_events(gw)
    assert len(mine) == n_local + 6, mine
    assert len({e[0] for e in mine}) == len(mine)
    assert not any(e[2] == m2 for e in mine)
    assert [e[1] for e in mine if e[2] == m3] == MSG_TYPES
    wait_for(lambda: gw_metrics(gw)["lazaret_gw_events_backlog"] == 0, 15, "an empty spool")
    # and when the manager is back, m3 never reaches it
    mgr.start()
    assert gw.stop() == 0
    gw.apply({"tracking": {"mode": "central"}})
    gw.start()
    gw.wait_log("events.mode_switched from=local to=central backlog=0")
    code, text = gw.send("alice@sender.test", "bob@example.com", make_message(subject="four"))
    assert code == 250, text
    m4 = queue_id(text)
    wait_for(lambda: any(e[2] == m4 and e[1] == "reply" for e in events(mgr)), 30,
             "m4 on the manager")
    ev = events(mgr)
    assert {e[2] for e in ev} == {"", m2, m4}, ev
    assert len(ev) == 12 and len({e[0] for e in ev}) == 12


def test_kill9_in_a_burst_loses_and_doubles_nothing(start_gateway, aio_sink):  # noqa: F811
    gw = local_gateway(start_gateway, aio_sink.host)
    got = burst_then_kill9(gw)
    gw.start()  # the same data_dir: the spool's rest is applied
    want = set(got)

    def arrived():
        return want <= {e[2] for e in local_events(gw) if e[1] == "reply"}
    wait_for(arrived, 60, "every message that got 250 in the gateway's store")
    wait_for(lambda: gw_metrics(gw)["lazaret_gw_events_backlog"] == 0, 15, "an empty spool")
    ev = local_events(gw)
    assert len({e[0] for e in ev}) == len(ev)  # none twice
    for i in got:
        assert [e[1] for e in ev if e[2] == i] == MSG_TYPES, i
    # and the API finds each of them
    found = set()
    cursor = None
    while True:
        params = {"limit": "500"}
        if cursor:
            params["cursor"] = cursor
        st, doc = search(gw, **params)
        assert st == 200, doc
        found |= {m["id"].split("~", 1)[1] for m in doc["messages"]}
        cursor = doc["next_cursor"]
        if not cursor:
            break
    assert want <= found


def test_retention_removes_old_tracking_on_the_gateway(start_gateway, aio_sink):  # noqa: F811
    gw = local_gateway(start_gateway, aio_sink.host)
    sent = []
    for subject in ("old", "fresh"):
        code, text = gw.send("alice@sender.test", "bob@example.com",
                             make_message(subject=subject))
        assert code == 250, text
        sent.append(queue_id(text))
    old, fresh = sent
    wait_for(lambda: tracked_ids(gw) == {old, fresh}, 30, "both tracked")
    wait_for(lambda: gw_metrics(gw)["lazaret_gw_events_backlog"] == 0, 15, "an empty spool")
    assert gw.stop() == 0
    # the first message and its events as if 40 days old (the gateway's clock)
    forty = 40 * 86400 * 1000
    path = os.path.join(gw.data_dir, "lazaret.db")
    con = sqlite3.connect(path, timeout=10)
    with con:
        con.execute("UPDATE events SET at = at - ? WHERE msg_id = ?", (forty, old))
        con.execute("UPDATE tracked_messages SET received_at = received_at - ?"
                    " WHERE msg_id = ?", (forty, old))
    con.close()
    gw.apply({"tracking": {"mode": "local", "retention": "30d"},
              "quarantines": {"purge_interval": "1s"}})
    gw.start()
    wait_for(lambda: tracked_ids(gw) == {fresh}, 30, "the old message purged")
    st, doc = gw.api("GET", "/api/v1/tracking/messages/%s~%s" % (GW, old))
    assert st == 404, doc
    st, doc = gw.api("GET", "/api/v1/tracking/messages/%s~%s" % (GW, fresh))
    assert st == 200 and [e["type"] for e in doc["events"]][-4:] == MSG_TYPES, doc
    assert not any(e[2] == old for e in local_events(gw))
    gw.wait_log("tracking.purged events=4 messages=1")

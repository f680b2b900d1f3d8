"""Every story complete and in order (docs/GATEWAY.md "Events", docs/openapi.yaml
GET /api/v1/tracking/messages and /{id}): mail through two real lazaret-gw
gateways (gw-b relays to gw-a, which delivers to a sink), both pushing their
events to a real lazaretd, and a real clamd: a clean message, a spam quarantined
on the manager and released through the API, an EICAR virus quarantined on gw-a,
a message the next hop refuses with 550, and a recipient gw-b refuses at RCPT.
Read through the tracking API, each message's story is the exact ordered
list of events on gw-b, gw-a and the manager, with what each says. Runs on the
suite's backend (SQLite or PostgreSQL)."""

import base64
import urllib.parse

from e2e_helpers import wait_for
from engine_fixtures import EICAR, EICAR_SIG, clamd  # noqa: F401 (a fixture)
from gw_fixtures import GTUBE, make_message
from gw_fixtures import start_gateway  # noqa: F401 (a fixture)
from test_events import queue_id, register, tracking_gateway

GONE = "gone@example.com"


def search(mgr, **params):
    st, doc = mgr.api("GET", "/api/v1/tracking/messages?" + urllib.parse.urlencode(params))
    assert st == 200, (params, doc)
    return doc["messages"]


def story(mgr, id_):
    st, doc = mgr.api("GET", "/api/v1/tracking/messages/%s" % urllib.parse.quote(id_))
    assert st == 200, (id_, doc)
    return doc


def message_id(raw):
    for line in raw.split(b"\r\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().strip(b"<>").decode()
    raise AssertionError("no Message-ID in %r" % raw[:200])


def test_five_stories_through_two_gateways(start_manager, start_gateway, aio_sink,
                                           clamd):  # noqa: F811
    aio_sink.handler.rcpt_replies[GONE] = "550 5.1.1 <%s>: Recipient unknown" % GONE
    mgr = start_manager(primary_host=aio_sink.host)
    gwa = tracking_gateway(
        start_gateway, mgr, register(mgr, "gw-a"), aio_sink.host,
        gateway={"name": "gw-a"},
        antivirus={"engine": "clamd", "clamd": clamd.addr},
        external_spam_quarantine={"enabled": "yes", "host": "127.0.0.1",
                                  "port": str(mgr.smtp_port)})
    # gw-b scores and passes spam on; gw-a decides
    gwb = tracking_gateway(start_gateway, mgr, register(mgr, "gw-b", "127.0.0.3"),
                           "127.0.0.1:%d" % gwa.smtp_port, gateway={"name": "gw-b"},
                           antispam={"positive_action": "deliver"})

    mails = {
        "clean": make_message(subject="Story clean"),
        "spam": make_message(subject="Story spam", body="Buy now.\r\n%s\r\n" % GTUBE),
        "virus": make_message(
            subject="Story virus",
            extra_headers="MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n",
            body="--b\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n"
                 "--b\r\nContent-Type: application/octet-stream\r\n"
                 "Content-Transfer-Encoding: base64\r\n"
                 "Content-Disposition: attachment; filename=eicar.com\r\n\r\n"
                 "%s\r\n--b--\r\n" % base64.b64encode(EICAR).decode()),
        "bounced": make_message(subject="Story bounced", to=GONE),
        "refused": make_message(subject="Story refused rcpt"),
    }
    replies = {}
    for key in ("clean", "spam", "virus"):
        code, text = gwb.send("alice@sender.test", "bob@example.com", mails[key])
        assert code == 250, (key, text)
        replies[key] = text
    code, text = gwb.send("alice@sender.test", GONE, mails["bounced"])
    assert code == 550, text
    replies["bounced"] = text
    s = gwb.smtp()
    try:
        assert s.mail("alice@sender.test")[0] == 250
        assert s.rcpt("bob@example.com")[0] == 250
        code, resp = s.rcpt("mallory@elsewhere.test")
        assert code == 550, resp
        refused_reply = "%d %s" % (code, resp.decode())
        code, resp = s.data(mails["refused"])
        assert code == 250, resp
        replies["refused"] = resp.decode()
    finally:
        s.quit()

    mids = {k: message_id(v) for k, v in mails.items()}
    ids = {"gw-b": {k: queue_id(replies[k]) for k in ("clean", "spam", "virus", "refused")}}

    # every message settled on the manager: one row per gateway (and the manager's
    # own for the spam), none still in flight
    want_rows = {"clean": {"gw-b": "delivered", "gw-a": "delivered"},
                 "spam": {"gw-b": "delivered", "gw-a": "quarantined",
                          "manager": "quarantined"},
                 "virus": {"gw-b": "delivered", "gw-a": "quarantined"},
                 "bounced": {"gw-b": "refused", "gw-a": "refused"},
                 "refused": {"gw-b": "delivered", "gw-a": "delivered"}}

    def states(key):
        return {r["gateway"]: r["last_state"] for r in search(mgr, message_id=mids[key])}
    for key, want in want_rows.items():
        wait_for(lambda: states(key) == want, 30, "the story of %s settled" % key)
    rows = {key: {r["gateway"]: r for r in search(mgr, message_id="<%s>" % mids[key])}
            for key in mails}
    for key, by_gw in rows.items():
        for gw, r in by_gw.items():
            assert r["id"].startswith(gw + "~") and r["message_id"] == mids[key], r
            assert r["sender"] == "alice@sender.test", r
            assert r["subject"] == "Story " + ("refused rcpt" if key == "refused" else key)
            assert r["recipients"] == [GONE if key == "bounced" else "bob@example.com"], r
    for key in ids["gw-b"]:
        assert rows[key]["gw-b"]["id"] == "gw-b~" + ids["gw-b"][key]
    gwa_id = {key: rows[key]["gw-a"]["id"].split("~", 1)[1] for key in mails}

    # the spam: released from the manager's quarantine through the API
    mgr_msg = rows["spam"]["manager"]["id"].split("~", 1)[1]
    st, doc = mgr.api("POST", "/api/v1/messages/%s/release" % mgr_msg)
    assert st == 202, doc
    wait_for(lambda: states("spam").get("manager") == "released", 30, "the release delivered")
    released = [m for m in aio_sink.wait_count(3)
                if mids["spam"].encode() in m["data"]]
    assert [m["rcpts"] for m in released] == [["bob@example.com"]]
    assert len(aio_sink.messages) == 3  # clean, the refused one's bob, the released spam

    def events(key):
        """The story of key's message (asked from each of its rows: the same),
        checked for time order; [(gateway, type, detail)] per gateway."""
        stories = [story(mgr, r["id"]) for r in rows[key].values()]
        ev = stories[0]["events"]
        for s in stories[1:]:
            assert s["events"] == ev, key
        ats = [e["at"] for e in ev]
        assert ats == sorted(ats), (key, ats)
        for e in ev:
            # session events belong to no message
            session = e["type"] in ("connection", "rcpt_refused")
            want = None if session else rows[key][e["gateway"]]["id"]
            assert e["message"] == want, (key, e)
        per_gw = {}
        for e in ev:
            per_gw.setdefault(e["gateway"], []).append((e["type"], e["detail"], e["at"]))
        return ev, per_gw

    def types(per_gw):
        return {gw: [x[0] for x in v] for gw, v in per_gw.items()}

    def one(per_gw, gw, type_):
        (d,) = [x[1] for x in per_gw[gw] if x[0] == type_]
        return d

    def at(per_gw, gw, type_):
        (a,) = [x[2] for x in per_gw[gw] if x[0] == type_]
        return a

    def relayed(per_gw, key):
        """gw-b relayed to gw-a: the sessions, the hop and its causal order."""
        cb, ca = one(per_gw, "gw-b", "connection"), one(per_gw, "gw-a", "connection")
        assert cb["helo"] == "client.e2e.test" and ca["helo"] == "gw-b", (cb, ca)
        assert cb["hat_decision"] == ca["hat_decision"] == "accept"
        assert one(per_gw, "gw-b", "received")["session"] == cb["session"]
        assert one(per_gw, "gw-a", "received")["session"] == ca["session"]
        for gw in ("gw-a", "gw-b"):
            r = one(per_gw, gw, "received")
            assert r["message_id"] == mids[key] and r["sender"] == "alice@sender.test"
        d = one(per_gw, "gw-b", "delivery")
        assert d["host"] == "127.0.0.1:%d" % gwa.smtp_port and d["route"] == "next_hop"
        # gw-b's verdict before gw-a's session; gw-a's answer before gw-b's delivery
        assert at(per_gw, "gw-b", "verdict") <= at(per_gw, "gw-a", "connection")
        assert at(per_gw, "gw-a", "reply") <= at(per_gw, "gw-b", "delivery")
        return d

    through = ["connection", "received", "verdict", "delivery", "reply"]

    # 1. clean: delivered by gw-b to gw-a, by gw-a to the sink
    ev, per_gw = events("clean")
    assert types(per_gw) == {"gw-b": through, "gw-a": through}, ev
    d = relayed(per_gw, "clean")
    assert (d["status"], d["reply"]) == ("sent", "250 2.0.0 Ok: %s" % gwa_id["clean"])
    for gw in ("gw-a", "gw-b"):
        assert one(per_gw, gw, "verdict")["level"] == "clean"
    d = one(per_gw, "gw-a", "delivery")
    assert (d["status"], d["host"], d["rcpts"]) == ("sent", aio_sink.host, ["bob@example.com"])
    assert d["reply"].startswith("250")
    assert one(per_gw, "gw-b", "reply")["reply"] == "250 2.0.0 Ok: %s" % ids["gw-b"]["clean"]
    assert one(per_gw, "gw-a", "reply")["reply"] == "250 2.0.0 Ok: %s" % gwa_id["clean"]

    # 2. spam: scored by gw-b and passed on, quarantined by gw-a on the manager,
    # released there and delivered
    ev, per_gw = events("spam")
    assert types(per_gw) == {
        "gw-b": through,
        "gw-a": ["connection", "received", "verdict", "quarantine", "reply"],
        "manager": ["quarantine", "release", "delivery"]}, ev
    d = relayed(per_gw, "spam")
    assert (d["status"], d["reply"]) == ("sent", "250 2.0.0 Ok: %s" % gwa_id["spam"])
    for gw in ("gw-a", "gw-b"):
        v = one(per_gw, gw, "verdict")
        assert (v["level"], v["rules"], v["engine"]) == ("spam", "GTUBE", "builtin"), v
        assert v["score"] >= 5
    q = one(per_gw, "gw-a", "quarantine")
    assert (q["where"], q["quarantine"], q["rcpts"]) == ("external", "spam", ["bob@example.com"])
    assert q["host"] == "127.0.0.1:%d" % mgr.smtp_port
    assert q["reply"] == "250 2.0.0 Ok: stored as %s" % mgr_msg
    mq = one(per_gw, "manager", "quarantine")
    assert (mq["gateway"], mq["quarantine"], mq["verdict"]) == ("gw-a", "spam", "spam"), mq
    rel = one(per_gw, "manager", "release")
    assert (rel["recipients"], rel["changed"]) == ("all", 1), rel
    md = one(per_gw, "manager", "delivery")
    assert (md["rcpt"], md["status"], md["host"], md["released"]) == \
        ("bob@example.com", "sent", aio_sink.host, True), md
    assert md["reply"].startswith("250"), md
    # the manager stored it before gw-a heard so; released after both
    assert at(per_gw, "manager", "quarantine") <= at(per_gw, "gw-a", "quarantine")
    assert at(per_gw, "gw-b", "reply") <= at(per_gw, "manager", "release")
    assert [e["gateway"] for e in ev[-2:]] == ["manager", "manager"]

    # 3. virus: clean for gw-b (no anti-virus there), quarantined on gw-a
    ev, per_gw = events("virus")
    assert types(per_gw) == {
        "gw-b": through,
        "gw-a": ["connection", "received", "verdict", "virus", "quarantine", "reply"]}, ev
    d = relayed(per_gw, "virus")
    assert (d["status"], d["reply"]) == ("sent", "250 2.0.0 Ok: %s" % gwa_id["virus"])
    for gw in ("gw-a", "gw-b"):
        assert one(per_gw, gw, "received")["attachments"] == ["eicar.com"]
        assert one(per_gw, gw, "verdict")["level"] == "clean"
    assert one(per_gw, "gw-a", "virus")["name"].startswith(EICAR_SIG)
    q = one(per_gw, "gw-a", "quarantine")
    assert (q["where"], q["quarantine"], q["reason"], q["rcpts"]) == \
        ("local", "virus", "virus", ["bob@example.com"]), q
    assert one(per_gw, "gw-a", "reply")["reply"] == "250 2.0.0 Ok: %s" % gwa_id["virus"]

    # 4. refused by the next hop: the sink's 550 goes back through both gateways
    ev, per_gw = events("bounced")
    assert types(per_gw) == {"gw-b": through, "gw-a": through}, ev
    refusal = "550 5.1.1 <%s>: Recipient unknown" % GONE
    assert replies["bounced"] == refusal[4:]
    d = relayed(per_gw, "bounced")
    assert (d["status"], d["reply"], d["rcpts"]) == ("refused", refusal, [GONE])
    d = one(per_gw, "gw-a", "delivery")
    assert (d["status"], d["reply"], d["host"]) == ("refused", refusal, aio_sink.host)
    for gw in ("gw-a", "gw-b"):
        assert one(per_gw, gw, "reply")["reply"] == refusal
    assert (GONE, refusal) in aio_sink.handler.rcpt_log
    assert not [m for m in aio_sink.messages if mids["bounced"].encode() in m["data"]]

    # 5. a recipient refused at RCPT by gw-b: the message goes on to the one it
    # accepted; the refusal is in its story, an event of gw-b's session
    ev, per_gw = events("refused")
    assert types(per_gw) == {"gw-b": ["connection", "rcpt_refused"] + through[1:],
                             "gw-a": through}, ev
    relayed(per_gw, "refused")
    session = one(per_gw, "gw-b", "connection")["session"]
    assert one(per_gw, "gw-b", "rcpt_refused") == {
        "session": session, "client_ip": "127.0.0.1", "rcpt": "mallory@elsewhere.test",
        "reply": "550 5.7.1 Recipient address rejected: relay not permitted"}
    assert refused_reply == "550 5.7.1 Recipient address rejected: relay not permitted"
    (refusal_event,) = [e for e in ev if e["type"] == "rcpt_refused"]
    assert refusal_event["message"] is None and refusal_event["gateway"] == "gw-b"
    assert one(per_gw, "gw-b", "received")["recipients"] == ["bob@example.com"]
    assert one(per_gw, "gw-b", "delivery")["rcpts"] == ["bob@example.com"]
    # a refusal belongs to its own message only
    for key in ("clean", "spam", "virus", "bounced"):
        assert "rcpt_refused" not in [e["type"] for e in events(key)[0]], key
    # the recipient was never taken: no message to find by it
    assert not search(mgr, recipient="mallory@elsewhere.test")

    # the searches by what happened find these rows and no others
    def found(**params):
        return sorted((r["subject"], r["gateway"]) for r in search(mgr, **params))
    assert found(event="virus") == [("Story virus", "gw-a")]
    assert found(event="spam") == [("Story spam", "gw-a"), ("Story spam", "gw-b"),
                                   ("Story spam", "manager")]
    assert found(event="hard_bounce") == [("Story bounced", "gw-a"), ("Story bounced", "gw-b")]
    assert found(event="quarantined") == [("Story spam", "gw-a"), ("Story spam", "manager"),
                                          ("Story virus", "gw-a")]


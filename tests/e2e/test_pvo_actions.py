"""Actions on policy, virus and outbreak (PVO) messages (PV9) as admins, operators
and the gateway behind the release see them: a message in several quarantines is
delivered once, back through the gateway that quarantined it, only when released
from all of them; deleted from any, never; outbreak mail comes back for a rescan;
delay, move and copy; the alternate release gateway; operators act only in their
quarantines; every refusal answers exactly and changes nothing."""

import http.client
import json
import re
import time

import pytest

from conftest import MANAGER_NAME
from e2e_helpers import free_port, parse_rfc3339, stays, t, wait_for
from test_pvo import pvo_message, pvo_send, stored_id
from test_sessions import Client, add_user

# a release for a rescan names the manager's message id (docs/GATEWAY.md)
RELEASED_RE = re.compile(rb"^X-Lazaret-Released: ([^;\r\n]+); ([^;\r\n]+)"
                         rb"(; rescan=yes; id=[0-9a-f-]{36})?\r\n")
UNKNOWN = "01900000-0000-7000-8000-000000000000"


def err(status, code, message):
    return (status, {"error": {"code": code, "message": message}})


def gateway_at(m, sink_port, name="gw-e2e"):
    """Registers the gateway at 127.0.0.1 taking released mail on sink_port."""
    st, doc = m.api("POST", "/api/v1/gateways",
                    json={"name": name, "address": "127.0.0.1", "release_port": sink_port})
    assert st == 201, doc


def ingest(m, quarantines, subject="pvo action", rcpts=("user@corp.test",)):
    """A PVO message in the given quarantines; (id, raw bytes as sent)."""
    raw = pvo_message(["X-Lazaret-Quarantine: %s; reason=\"rule %s\"" % (q, q)
                       for q in quarantines], subject=subject)
    return stored_id(*pvo_send(m, raw, rcpts=rcpts)), raw


def act(m, mid, action, body, token=None):
    kw = {} if token is None else {"token": token}
    return m.api("POST", "/api/v1/messages/%s/%s" % (mid, action), json=body, **kw)


def memberships(m, mid):
    return {q["name"]: q for q in m.get_message(mid)["quarantines"]}


def check_released(data, raw, rescan):
    mm = RELEASED_RE.match(data)
    assert mm, data[:200]
    assert mm.group(1).decode() == MANAGER_NAME
    assert abs(parse_rfc3339(mm.group(2).decode()) - time.time()) < 300
    assert (mm.group(3) is not None) == rescan, data[:200]
    assert data[mm.end():] == raw


def audit_rows(m, action):
    st, doc = m.api("GET", "/api/v1/audit?limit=200")
    assert st == 200, doc
    return [e for e in doc["entries"] if e["action"] == action]


# ---------------------------------------------------------------------------


def test_released_from_all_is_delivered_once_through_its_gateway(start_manager,
                                                                  aio_sink_factory):
    gw = aio_sink_factory()
    spam_host = aio_sink_factory()
    m = start_manager(primary_host=spam_host.host)
    gateway_at(m, gw.port)
    mid, raw = ingest(m, ["Adult", "virus"])

    st, doc = act(m, mid, "release", {"quarantine": "Adult"})
    assert st == 202, doc
    assert doc["id"] == mid
    states = {q["name"]: q["state"] for q in doc["quarantines"]}
    assert states == {"Adult": "released", "virus": "held"}
    assert [r["state"] for r in doc["recipients"]] == ["quarantined"]
    assert stays(lambda: gw.count() == 0 and spam_host.count() == 0, t(1.5))

    # the second click, and a racing click on the other quarantine
    assert act(m, mid, "release", {"quarantine": "Adult"}) == err(
        409, "conflict", "this message is not held in quarantine \"Adult\" any more (released)")
    st, doc = act(m, mid, "release", {"quarantine": "virus"})
    assert st == 202, doc
    assert act(m, mid, "release", {"quarantine": "virus"})[0] == 409
    got = gw.wait_count(1)
    assert stays(lambda: gw.count() == 1, t(1.5))
    assert spam_host.count() == 0
    assert got[0]["rcpts"] == ["user@corp.test"]
    assert got[0]["sender"] == "gw@example.jp"
    assert got[0]["peer"] == "127.0.0.1"  # [release] source_address (SQ5)
    check_released(got[0]["data"], raw, rescan=False)
    wait_for(lambda: m.get_message(mid)["recipients"][0]["state"] == "released", t(10),
             "the recipient released")
    rows = audit_rows(m, "pvo_release")
    assert [(r["target"], r["detail"]["quarantine"], r["detail"]["delivery_queued"])
            for r in rows] == [(mid, "virus", True), (mid, "Adult", False)]


def test_deleted_from_one_is_never_delivered(start_manager, aio_sink_factory):
    gw = aio_sink_factory()
    m = start_manager()
    gateway_at(m, gw.port)
    mid, _ = ingest(m, ["Adult", "virus"])
    assert act(m, mid, "release", {"quarantine": "virus"})[0] == 202
    st, doc = act(m, mid, "delete", {"quarantine": "Adult"})
    assert st == 200, doc
    assert {q["name"]: q["state"] for q in doc["quarantines"]} == \
        {"Adult": "deleted", "virus": "released"}
    assert [r["state"] for r in doc["recipients"]] == ["deleted"]
    assert act(m, mid, "delete", {"quarantine": "Adult"}) == err(
        409, "conflict", "this message is not held in quarantine \"Adult\" any more (deleted)")
    assert stays(lambda: gw.count() == 0, t(1.5))
    assert audit_rows(m, "pvo_delete")[0]["detail"]["quarantine"] == "Adult"


def test_outbreak_release_asks_for_a_rescan(start_manager, aio_sink_factory):
    gw = aio_sink_factory()
    m = start_manager()
    gateway_at(m, gw.port)
    mid, raw = ingest(m, ["outbreak"])
    assert act(m, mid, "release", {"quarantine": "outbreak"})[0] == 202
    got = gw.wait_count(1)
    check_released(got[0]["data"], raw, rescan=True)


def test_unreachable_gateway_goes_to_the_alternate(start_manager, aio_sink_factory):
    alternate = aio_sink_factory()
    m = start_manager(pvo_quarantine__alternate_release_gateway=alternate.host,
                      retry_min="1s")
    dead = free_port()
    gateway_at(m, dead)  # nothing listens there
    mid, raw = ingest(m, ["Adult"])
    mid2, raw2 = ingest(m, ["virus"], subject="second")
    assert act(m, mid, "release", {"quarantine": "Adult"})[0] == 202
    got = alternate.wait_count(1, timeout=t(20))
    check_released(got[0]["data"], raw, rescan=False)
    assert "host=127.0.0.1:%d" % dead in m.log_text()  # the gateway was tried first
    # the gateway unregistered: straight to the alternate
    assert m.api("DELETE", "/api/v1/gateways/gw-e2e")[0] == 200
    assert act(m, mid2, "release", {"quarantine": "virus"})[0] == 202
    got = alternate.wait_count(2, timeout=t(20))
    check_released(got[1]["data"], raw2, rescan=False)


def test_delay_move_and_copy(start_manager, aio_sink_factory):
    gw = aio_sink_factory()
    primary = aio_sink_factory()
    m = start_manager(primary_host=primary.host)
    gateway_at(m, gw.port)
    for name in ("Finance", "Legal"):
        assert m.api("POST", "/api/v1/quarantines", json={"name": name})[0] == 201
    mid, raw = ingest(m, ["Adult", "virus"])
    before = memberships(m, mid)

    st, doc = act(m, mid, "delay", {"quarantine": "Adult", "by": "3d"})
    assert st == 200, doc
    after = memberships(m, mid)
    assert parse_rfc3339(after["Adult"]["expires_at"]) - \
        parse_rfc3339(before["Adult"]["expires_at"]) == 3 * 86400
    assert after["virus"] == before["virus"]
    assert audit_rows(m, "pvo_delay")[0]["detail"] == {
        "quarantine": "Adult", "by_ms": 3 * 86400000, "delivery_queued": False}

    st, doc = act(m, mid, "move", {"from": "Adult", "to": "Finance"})
    assert st == 200, doc
    moved = memberships(m, mid)
    assert set(moved) == {"Finance", "virus"}
    for k in ("reason", "entered_at", "expires_at", "state"):
        assert moved["Finance"][k] == after["Adult"][k], k
    assert moved["Finance"]["type"] == "policy"

    # a copy: to the primary host, the message stays held everywhere
    st, doc = act(m, mid, "copy", {"to": ["Auditor@Example.JP", "boss@corp.test"]})
    assert st == 202, doc
    got = primary.wait_count(1)
    assert sorted(got[0]["rcpts"]) == ["auditor@example.jp", "boss@corp.test"]
    check_released(got[0]["data"], raw, rescan=False)
    assert stays(lambda: gw.count() == 0, t(1))
    assert memberships(m, mid) == moved
    assert [r["state"] for r in m.get_message(mid)["recipients"]] == ["quarantined"]
    assert audit_rows(m, "pvo_copy")[0]["detail"] == {
        "to": ["auditor@example.jp", "boss@corp.test"]}


def test_bad_requests_answer_exactly_and_change_nothing(start_manager, aio_sink_factory):
    gw = aio_sink_factory()
    m = start_manager()
    gateway_at(m, gw.port)
    assert m.api("POST", "/api/v1/quarantines", json={"name": "Legal"})[0] == 201
    mid, _ = ingest(m, ["Adult", "virus"])
    other, _ = ingest(m, ["Legal", "Adult"], subject="other")
    assert act(m, other, "release", {"quarantine": "Legal"})[0] == 202
    spam = m.send("s@example.jp", ["user@corp.test"], b"Subject: spam\r\n\r\nspam\r\n")
    before = {x: m.get_message(x) for x in (mid, other, spam)}
    cases = [
        ("release", mid, None,
         err(400, "bad_request", "\"quarantine\" is required: the quarantine of this "
             "message to act in")),
        ("release", mid, {"recipients": ["user@corp.test"]},
         err(422, "unprocessable", "unknown field \"recipients\"")),
        ("release", mid, {"quarantine": 7},
         err(422, "unprocessable", "field \"quarantine\" must be a string")),
        ("release", mid, {"quarantine": "Nope"},
         err(404, "not_found", "no quarantine named \"Nope\"")),
        ("delete", mid, {"quarantine": "outbreak"},
         err(404, "not_found", "this message is not in quarantine \"outbreak\"")),
        ("release", other, {"quarantine": "Legal"},
         err(409, "conflict", "this message is not held in quarantine \"Legal\" any more "
             "(released)")),
        ("release", UNKNOWN, {"quarantine": "Adult"}, err(404, "not_found", "no such message")),
        ("delay", mid, {"quarantine": "Adult"},
         err(400, "bad_request", "\"by\" is required: how much later the message leaves, "
             "e.g. \"3d\"")),
        ("delay", mid, {"quarantine": "Adult", "by": "soon"},
         err(422, "unprocessable", "\"by\" must be a positive duration of at most 366d, "
             "such as 3d, 12h or 30m")),
        ("delay", mid, {"quarantine": "Adult", "by": "-3d"},
         err(422, "unprocessable", "\"by\" must be a positive duration of at most 366d, "
             "such as 3d, 12h or 30m")),
        ("delay", mid, {"quarantine": "Adult", "by": "0"},
         err(422, "unprocessable", "\"by\" must be a positive duration of at most 366d, "
             "such as 3d, 12h or 30m")),
        ("move", mid, {"from": "Adult", "to": "virus"},
         err(409, "conflict", "messages move only from one policy quarantine to another")),
        ("move", mid, {"from": "virus", "to": "Legal"},
         err(409, "conflict", "messages move only from one policy quarantine to another")),
        ("move", mid, {"from": "Adult", "to": "Nowhere"},
         err(404, "not_found", "no quarantine named \"Nowhere\"")),
        ("move", other, {"from": "Adult", "to": "Legal"},
         err(409, "conflict", "quarantine \"Legal\" has this message already")),
        ("move", mid, {"from": "Adult"},
         err(400, "bad_request", "\"to\" is required: the policy quarantine it goes to")),
        ("copy", mid, {"to": ["not an address"]},
         err(422, "unprocessable", "\"to\": \"not an address\" is not an email address")),
        ("copy", mid, {"to": []},
         err(422, "unprocessable", "\"to\" must name at least one address")),
        ("copy", mid, {},
         err(400, "bad_request", "\"to\" is required: the addresses the copy goes to")),
        ("delay", spam, {"quarantine": "spam", "by": "1d"},
         err(409, "conflict", "only messages of policy, virus and outbreak quarantines can "
             "be delayed")),
    ]
    for action, target, body, expected in cases:
        assert act(m, target, action, body) == expected, (action, body)
    # malformed JSON
    malformed = [
        ("release", b"{\"quarantine\":", err(400, "bad_request", "invalid JSON at line 1 "
                                              "column 14: unexpected token near end of file")),
        ("move", b"[1]", err(422, "unprocessable", "the request body must be a JSON object")),
    ]
    for action, body, expected in malformed:
        st, _, text = m.http("POST", "/api/v1/messages/%s/%s" % (mid, action), body=body,
                             headers={"Content-Type": "application/json"})
        assert (st, json.loads(text)) == expected, action
    assert {x: m.get_message(x) for x in (mid, other, spam)} == before
    assert stays(lambda: gw.count() == 0, t(1))  # `other` is still held in Adult


def test_bulk_release_by_filter(start_manager, aio_sink_factory):
    gw = aio_sink_factory()
    m = start_manager()
    gateway_at(m, gw.port)
    both, _ = ingest(m, ["Adult", "virus"], subject="both")
    ones = [ingest(m, ["Adult"], subject="one %d" % i)[0] for i in range(3)]
    spam = m.send("s@example.jp", ["user@corp.test"], b"Subject: spam\r\n\r\nspam\r\n")
    st, doc = m.api("POST", "/api/v1/messages/release", json={"quarantine": "Adult"})
    assert (st, doc) == (200, {"changed": 4, "queued": 3}), doc
    gw.wait_count(3)
    st, doc = m.api("POST", "/api/v1/messages/release",
                    json={"filter": {"quarantine": "Adult"}})
    assert (st, doc) == (200, {"changed": 0, "queued": 0}), doc
    assert m.get_message(spam)["recipients"][0]["state"] == "quarantined"
    assert memberships(m, both)["virus"]["state"] == "held"
    # bulk delay, and the refusals
    st, doc = m.api("POST", "/api/v1/messages/delay", json={"quarantine": "virus", "by": "1d"})
    assert (st, doc) == (200, {"changed": 1, "queued": 0}), doc
    assert m.api("POST", "/api/v1/messages/delay", json={"quarantine": "virus"}) == err(
        400, "bad_request", "\"by\" is required: how much later the message leaves, "
        "e.g. \"3d\"")
    assert m.api("POST", "/api/v1/messages/delay", json={"by": "1d", "sender": "x@y.jp"}) == \
        err(400, "bad_request", "\"quarantine\" is required: the quarantine to act in")
    assert m.api("POST", "/api/v1/messages/release",
                 json={"quarantine": "virus", "state": "quarantined"}) == err(
        422, "unprocessable", "\"state\" does not apply to policy, virus and outbreak "
        "quarantines: the action takes the messages held there")
    assert m.api("POST", "/api/v1/messages/move",
                 json={"from": "Adult", "to": "Nowhere"}) == err(
        404, "not_found", "no quarantine named \"Nowhere\"")
    rows = audit_rows(m, "pvo_bulk_release")
    assert [(r["detail"]["quarantine"], r["detail"]["changed"]) for r in rows] == \
        [("Adult", 0), ("Adult", 4)]
    assert stays(lambda: gw.count() == 3, t(1))


def test_operators_act_only_in_their_quarantines(start_manager, aio_sink_factory):
    gw = aio_sink_factory()
    m = start_manager()
    gateway_at(m, gw.port)
    add_user(m, "opa", "operator-a-pw-1", "operator")
    add_user(m, "hana", "hana-password-1", "enduser", ["user@corp.test"])
    for name, ops in (("Alpha", ["opa"]), ("Beta", ["opa"]), ("Gamma", [])):
        assert m.api("POST", "/api/v1/quarantines", json={"name": name, "operators": ops})[0] \
            == 201
    ag, _ = ingest(m, ["Alpha", "Gamma"], subject="alpha gamma")
    g, _ = ingest(m, ["Gamma"], subject="gamma")
    before = {x: m.get_message(x) for x in (ag, g)}
    opa = Client(m)
    assert opa.login("opa", "operator-a-pw-1")[0] == 200
    hana = Client(m)
    assert hana.login("hana", "hana-password-1")[0] == 200
    no_msg = err(404, "not_found", "no such message")
    # a message in none of their quarantines does not exist for them
    assert opa.call("POST", "/api/v1/messages/%s/release" % g, body={"quarantine": "Gamma"}) \
        == no_msg
    # another quarantine of a message of theirs does not exist either
    assert opa.call("POST", "/api/v1/messages/%s/release" % ag,
                    body={"quarantine": "Gamma"}) == \
        err(404, "not_found", "no quarantine named \"Gamma\"")
    assert opa.call("POST", "/api/v1/messages/%s/move" % ag,
                    body={"from": "Alpha", "to": "Gamma"}) == \
        err(404, "not_found", "no quarantine named \"Gamma\"")
    assert opa.call("POST", "/api/v1/messages/%s/copy" % ag, body={"to": ["a@corp.test"]}) == \
        err(403, "forbidden", "copies of quarantined messages are for admins")
    assert opa.call("POST", "/api/v1/messages/release", body={"quarantine": "Gamma"}) == \
        err(404, "not_found", "no quarantine named \"Gamma\"")
    # end users: no PVO access at all
    for action, body in (("release", {"quarantine": "Alpha"}), ("delete", None),
                         ("delay", {"quarantine": "Alpha", "by": "1d"}),
                         ("copy", {"to": ["user@corp.test"]})):
        assert hana.call("POST", "/api/v1/messages/%s/%s" % (ag, action), body=body) == \
            no_msg, action
    assert {x: m.get_message(x) for x in (ag, g)} == before
    # in their own quarantines they act
    st, doc = opa.call("POST", "/api/v1/messages/%s/move" % ag,
                       body={"from": "Alpha", "to": "Beta"})
    assert st == 200, doc
    assert [q["name"] for q in doc["quarantines"]] == ["Beta"]  # Gamma is not theirs
    st, doc = opa.call("POST", "/api/v1/messages/%s/release" % ag, body={"quarantine": "Beta"})
    assert st == 202, doc
    assert stays(lambda: gw.count() == 0, t(1))  # still held in Gamma
    rows = audit_rows(m, "pvo_move")
    assert [(r["actor"], r["target"], r["detail"]["quarantine"], r["detail"]["to"])
            for r in rows] == [("opa", ag, "Alpha", "Beta")]
    assert m.api("POST", "/api/v1/messages/%s/release" % ag,
                 json={"quarantine": "Gamma"})[0] == 202
    gw.wait_count(1)


# ---- exactly once across a crash (LAZARET_FAULT crash points, as test_release.py) -------

@pytest.mark.parametrize("point,copies", [("release_before_connect", 1),
                                          ("release_after_commit", 1),
                                          ("release_after_250", 2)])
def test_a_crash_during_the_release_delivers_once(start_manager, aio_sink_factory, point,
                                                  copies):
    """The PVO release rides the spam release's queue: a crash before the data or
    after the commit delivers once after the restart; only between the gateway's 250
    and the commit is it sent again (a duplicate, never a loss)."""
    gw = aio_sink_factory()
    m = start_manager(start=False, retry_min="1s", retry_max="2s")
    m.next_env = {"LAZARET_FAULT": point}
    m.start()
    gateway_at(m, gw.port)
    mid, raw = ingest(m, ["Adult", "virus"], subject="crash at " + point)
    assert act(m, mid, "release", {"quarantine": "Adult"})[0] == 202
    assert stays(lambda: m.running(), t(1)), "nothing was due yet"
    try:
        act(m, mid, "release", {"quarantine": "virus"})
    except (OSError, http.client.HTTPException):
        pass  # the worker may reach the crash point before the reply is written
    m.wait_exit(137)
    assert "fault.crash point=%s status=137" % point in m.log_text()
    m.restart()
    got = gw.wait_count(copies, timeout=t(20))
    for d in got:
        check_released(d["data"], raw, rescan=False)
    wait_for(lambda: {r["state"] for r in m.get_message(mid)["recipients"]} == {"released"},
             t(20), "the recipient released")
    assert stays(lambda: gw.count() == copies, t(3)), "sent again"
    assert {q: w["state"] for q, w in memberships(m, mid).items()} == {
        "Adult": "released", "virus": "released"}

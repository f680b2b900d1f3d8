"""The manager's own tracking events (under the reserved gateway name "manager"):
a message quarantined on the manager (spam listener, PVO listener), then
released (with the delivery's reply) or deleted, is one story with the
gateway's events, linked by its Message-ID. No gateway may take the name.
Runs on the suite's backend."""

import json

import pytest

from e2e_helpers import make_message, wait_for
from test_events import store_rows
from test_pvo import pvo_message, pvo_send, register_gateway, stored_id

OWN = "manager"
SPAM, QUARANTINED, VIRUS, DELIVERED, OUTBREAK = 1, 1 << 6, 1 << 2, 1 << 3, 1 << 7


def own_events(mgr, msg_id):
    rows = store_rows(mgr, "SELECT seq, type, coalesce(msg_id, ''), detail FROM events"
                           " WHERE gateway = '%s' AND msg_id = '%s' ORDER BY seq" % (OWN, msg_id))
    return [(int(r[0]), r[1], json.loads(r[3])) for r in rows]


def tracked(mgr, msg_id):
    rows = store_rows(mgr, "SELECT sender, coalesce(subject, ''), coalesce(message_id, ''),"
                           " coalesce(client_ip, ''), size, coalesce(last_state, ''), flags"
                           " FROM tracked_messages WHERE gateway = '%s' AND msg_id = '%s'"
                      % (OWN, msg_id))
    if not rows:
        return None
    r = rows[0]
    return {"sender": r[0], "subject": r[1], "message_id": r[2], "client_ip": r[3],
            "size": int(r[4]), "last_state": r[5], "flags": int(r[6])}


def recipients(mgr, msg_id):
    return [r[0] for r in store_rows(mgr, "SELECT address FROM tracked_recipients"
                                          " WHERE gateway = '%s' AND msg_id = '%s' ORDER BY idx"
                                     % (OWN, msg_id))]


def test_spam_quarantined_then_released_is_one_story(start_manager, aio_sink):
    m = start_manager(primary_host=aio_sink.host)
    raw = make_message("隔離された件名", message_id="<story-1@example.jp>",
                       extra_headers=[("X-Lazaret-Client-Address", "192.0.2.44")])
    mid = m.send("orig@example.jp", ["u1@corp.test", "u2@corp.test"], raw)
    wait_for(lambda: tracked(m, mid) is not None, 10, "the quarantine event")
    t = tracked(m, mid)
    assert t["sender"] == "orig@example.jp"
    assert t["subject"] == "隔離された件名"
    assert t["message_id"] == "story-1@example.jp"  # as the gateway's events say it
    assert t["size"] == len(raw)
    assert t["last_state"] == "quarantined"
    assert t["flags"] == QUARANTINED | SPAM
    assert recipients(m, mid) == ["u1@corp.test", "u2@corp.test"]
    ((seq, type_, d),) = own_events(m, mid)
    assert type_ == "quarantine" and d["quarantine"] == "spam" and d["verdict"] == "spam"

    st, doc = m.api("POST", "/api/v1/messages/%s/release" % mid)
    assert st == 202, doc
    aio_sink.wait_count(1)
    wait_for(lambda: tracked(m, mid)["last_state"] == "released", 20, "the delivery events")
    ev = own_events(m, mid)
    assert [e[1] for e in ev] == ["quarantine", "release", "delivery", "delivery"], ev
    assert [e[0] for e in ev] == sorted(e[0] for e in ev)
    assert ev[1][2]["recipients"] == "all" and ev[1][2]["changed"] == 2
    for _, _, d in ev[2:]:
        assert d["status"] == "sent" and d["reply"].startswith("250"), d
        assert d["host"] == aio_sink.host and d["attempt"] == 1
    assert sorted(d["rcpt"] for _, _, d in ev[2:]) == ["u1@corp.test", "u2@corp.test"]
    assert tracked(m, mid)["flags"] == QUARANTINED | SPAM | DELIVERED
    # the manager's own counter: one seq per event, never a gateway's
    assert store_rows(m, "SELECT last_seq FROM gateway_event_state WHERE gateway = '%s'"
                      % OWN) == [[str(ev[-1][0])]]


def test_a_deleted_message_says_so(start_manager):
    m = start_manager()
    mid = m.send("orig@example.jp", ["u1@corp.test"], make_message("to delete"))
    wait_for(lambda: tracked(m, mid) is not None, 10, "the quarantine event")
    st, doc = m.api("POST", "/api/v1/messages/%s/delete" % mid, json={"recipients": ["u1@corp.test"]})
    assert st == 200, doc
    wait_for(lambda: tracked(m, mid)["last_state"] == "deleted", 10, "the delete event")
    ev = own_events(m, mid)
    assert [e[1] for e in ev] == ["quarantine", "delete"]
    assert ev[1][2] == {"recipients": ["u1@corp.test"], "changed": 1, "by": "token"}  # the admin token
    # deleting again changes nothing, and records nothing
    st, doc = m.api("POST", "/api/v1/messages/%s/delete" % mid)
    assert len(own_events(m, mid)) == 2


def test_pvo_ingest_gives_its_flags(start_manager):
    m = start_manager()
    register_gateway(m)
    raw = pvo_message(["X-Lazaret-Quarantine: Virus; reason=Eicar-Test-Signature",
                       "X-Lazaret-Quarantine: Outbreak; reason=vof-1",
                       "X-Lazaret-Origin-Id: gw1-0042"], subject="pvo story")
    mid = stored_id(*pvo_send(m, raw, rcpts=("user@corp.test",)))
    wait_for(lambda: tracked(m, mid) is not None, 10, "the quarantine event")
    t = tracked(m, mid)
    assert t["flags"] == QUARANTINED | VIRUS | OUTBREAK
    assert t["subject"] == "pvo story" and t["last_state"] == "quarantined"
    ((_, type_, d),) = own_events(m, mid)
    assert type_ == "quarantine"
    assert d["quarantines"] == [{"name": "virus", "reason": "Eicar-Test-Signature"},
                                {"name": "outbreak", "reason": "vof-1"}]
    assert "verdict" not in d


@pytest.mark.parametrize("name", ["manager", "Manager", "MANAGER"])
def test_no_gateway_may_be_named_manager(start_manager, name):
    m = start_manager()
    st, doc = m.api("POST", "/api/v1/gateways", json={"name": name, "address": "192.0.2.1"})
    assert st == 422, doc
    assert doc["error"]["message"] == '"name" "manager" is reserved for the manager\'s own events'
    st, doc = m.api("GET", "/api/v1/gateways")
    assert st == 200 and doc["gateways"] == [], doc


def test_an_expired_message_says_so(start_manager):
    m = start_manager(delete_after="2s", purge_interval="1s")
    mid = m.send("orig@example.jp", ["u1@corp.test", "u2@corp.test"], make_message("expires"))
    keep = m.send("orig@example.jp", ["u3@corp.test"], make_message("released first"))
    st, doc = m.api("POST", "/api/v1/messages/%s/delete" % keep)
    assert st == 200, doc
    wait_for(lambda: m.api("GET", "/api/v1/messages/%s" % mid)[0] == 404, 15, "the expiry")
    wait_for(lambda: tracked(m, mid)["last_state"] == "expired", 10, "the expire event")
    ev = own_events(m, mid)
    assert [e[1] for e in ev] == ["quarantine", "expire"]
    assert ev[1][2] == {"quarantine": "spam", "recipients": ["u1@corp.test", "u2@corp.test"]}
    # a message with nothing left to expire gets no expire event; the tracking stays
    # after the message itself is gone
    assert [e[1] for e in own_events(m, keep)] == ["quarantine", "delete"]
    assert tracked(m, mid)["subject"] == "expires"

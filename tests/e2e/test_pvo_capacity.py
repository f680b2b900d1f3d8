"""Capacity of the PVO quarantines together (PV7, [pvo_quarantine] max_size): over
it the oldest messages of quarantines that are not overflow-exempt get their
quarantine's default action early, audited and counted; with every quarantine
exempt the listener answers 452 4.3.1 at MAIL FROM and nothing is lost."""

import base64
import os
import re
import smtplib

from e2e_helpers import stays, t, wait_for
from gw_fixtures import make_message as make_gw_message
from gw_fixtures import start_gateway  # noqa: F401
from test_gateway_pvo import RCPT, SENDER, start_central_gw
from test_pvo import pvo_send, quarantines, register_gateway, rfc3339_in, stored_id
from test_pvo_actions import gateway_at

# max_size may not be under 1M: messages of ~200 KB (that do not compress much,
# so that sizes mean what they say) overflow it in a few transfers.
MAX = 1024 * 1024
BODY_BYTES = 200 * 1024


def big_message(quarantine_headers, subject, size=BODY_BYTES):
    """A message of about size bytes with the given X-Lazaret-Quarantine lines."""
    body = base64.encodebytes(os.urandom(size * 3 // 4)).decode()
    head = "".join(h + "\r\n" for h in quarantine_headers)
    return (head + "From: a@example.jp\r\nTo: user@corp.test\r\nSubject: %s\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n%s" % (subject, body)
            ).replace("\r\n", "\n").replace("\n", "\r\n").encode()


def qheader(name, minutes_ago):
    """X-Lazaret-Quarantine for name, entered minutes_ago, expiring in a day."""
    return ('X-Lazaret-Quarantine: %s; reason="rule"; entered=%s; expires=%s'
            % (name, rfc3339_in(-60 * minutes_ago), rfc3339_in(86400)))


def mail_from_reply(m):
    """(code, text) of MAIL FROM on a new :7025 session."""
    s = smtplib.SMTP("127.0.0.1", m.pvo_port, timeout=t(15))
    try:
        s.ehlo("gw.e2e.test")
        code, resp = s.mail("gw@example.jp")
        return code, resp.decode()
    finally:
        s.quit()


def audit_rows(m, action):
    st, doc = m.api("GET", "/api/v1/audit?limit=500")
    assert st == 200, doc
    return [e for e in doc["entries"] if e["action"] == action]


def test_overflow_deletes_the_oldest_of_a_non_exempt_quarantine(start_manager):
    m = start_manager(pvo_quarantine__max_size="1M")
    register_gateway(m)
    # Legal is exempt: its old message stays whatever the size
    st, doc = m.api("POST", "/api/v1/quarantines",
                    json={"name": "Legal", "type": "policy", "overflow_exempt": True})
    assert st == 201, doc
    legal = stored_id(*pvo_send(m, big_message([qheader("Legal", 120)], "legal")))
    ids = []
    for i in range(8):  # oldest first, about 1.6 MB in all
        ids.append(stored_id(*pvo_send(
            m, big_message([qheader("Bulk", 60 - i)], "bulk %d" % i))))

    wait_for(lambda: "pvo.overflow_done" in m.log_text(), t(20), "the sweep ran")
    wait_for(lambda: quarantines(m)["Bulk"]["bytes"] + quarantines(m)["Legal"]["bytes"]
             <= MAX, t(20), "back within max_size")
    q = quarantines(m)
    assert q["Legal"]["messages"] == 1 and q["Bulk"]["messages"] >= 1, q
    left = [x["id"] for x in m.list_all("quarantine=Bulk")]
    # the oldest went first: what is left is the newest ones
    assert sorted(left, key=ids.index) == ids[len(ids) - len(left):], (left, ids)
    assert m.get_message(legal) is not None
    gone = ids[:len(ids) - len(left)]
    for i in gone:
        st, _, _ = m.http("GET", "/api/v1/messages/%s/raw" % i)
        assert st == 404, i
    rows = audit_rows(m, "pvo_overflow_delete")
    assert sorted(r["target"] for r in rows) == sorted(gone), rows
    assert all(r["detail"] == {"quarantine": "Bulk"} for r in rows), rows
    assert all(r["actor"] == "system" for r in rows), rows
    assert m.metric("lazaret_pvo_overflow_deleted_total") == len(gone)
    # summed up per sweep (the messages may have come in over more than one)
    done = re.findall(r" pvo\.overflow_done acted=(\d+) released=0 deleted=(\d+) ",
                      m.log_text())
    assert sum(int(a) for a, _ in done) == len(gone), done


def test_every_quarantine_exempt_answers_452_and_keeps_everything(start_manager):
    m = start_manager(pvo_quarantine__max_size="1M")
    register_gateway(m)
    for name in ("virus", "outbreak", "unclassified"):
        st, doc = m.api("PATCH", "/api/v1/quarantines/" + name, json={"overflow_exempt": True})
        assert st == 200, doc
    st, doc = m.api("POST", "/api/v1/quarantines",
                    json={"name": "Legal", "type": "policy", "overflow_exempt": True})
    assert st == 201, doc
    ids = [stored_id(*pvo_send(m, big_message([qheader("Legal", 10 - i)], "legal %d" % i,
                                              size=300 * 1024)))
           for i in range(4)]
    raws = {i: m.http("GET", "/api/v1/messages/%s/raw" % i)[2] for i in ids}

    wait_for(lambda: mail_from_reply(m)[0] == 452, t(20), "452 at MAIL FROM")
    assert mail_from_reply(m) == (452, "4.3.1 Error: quarantine storage full, try again later")
    assert "pvo.capacity_full" in m.log_text()
    assert m.metric("lazaret_pvo_full_refused_total") >= 2
    # nothing was acted on, nothing lost
    assert sorted(x["id"] for x in m.list_all("quarantine=Legal")) == sorted(ids)
    for i in ids:
        assert m.http("GET", "/api/v1/messages/%s/raw" % i)[2] == raws[i]
    assert audit_rows(m, "pvo_overflow_delete") == []
    assert m.metric("lazaret_pvo_overflow_deleted_total") == 0
    # the spam listener is not concerned
    s = smtplib.SMTP("127.0.0.1", m.smtp_port, timeout=t(15))
    try:
        s.ehlo("gw.e2e.test")
        assert s.mail("gw@example.jp")[0] == 250
    finally:
        s.quit()

    # once Legal may overflow, the oldest go and the listener takes mail again
    st, doc = m.api("PATCH", "/api/v1/quarantines/Legal", json={"overflow_exempt": False})
    assert st == 200, doc
    wait_for(lambda: mail_from_reply(m)[0] == 250, t(20), "MAIL FROM accepted again")
    assert "pvo.capacity_ok" in m.log_text()
    left = [x["id"] for x in m.list_all("quarantine=Legal")]
    assert left and sorted(left, key=ids.index) == ids[len(ids) - len(left):], (left, ids)


def test_overflow_releases_where_the_default_action_is_release(start_manager,
                                                               aio_sink_factory):
    gw = aio_sink_factory()
    m = start_manager(pvo_quarantine__max_size="1M")
    gateway_at(m, gw.port)
    st, doc = m.api("POST", "/api/v1/quarantines",
                    json={"name": "Hold", "type": "policy", "default_action": "release"})
    assert st == 201, doc
    ids = [stored_id(*pvo_send(m, big_message([qheader("Hold", 60 - i)], "hold %d" % i)))
           for i in range(7)]  # about 1.4 MB

    wait_for(lambda: "pvo.overflow_done" in m.log_text(), t(20), "the sweep ran")
    state = {i: {q["name"]: q["state"] for q in m.get_message(i)["quarantines"]}["Hold"]
             for i in ids}
    left = [i for i in ids if state[i] == "held"]
    released = [i for i in ids if state[i] == "released"]
    assert len(left) + len(released) == len(ids), state
    assert released and quarantines(m)["Hold"]["bytes"] <= MAX
    assert sorted(left, key=ids.index) == ids[len(released):], (left, ids)
    # the oldest went back through the gateway that quarantined them, once each
    got = gw.wait_count(len(released), timeout=t(20))
    subjects = sorted(d["data"].split(b"\r\nSubject: ", 1)[1].split(b"\r\n", 1)[0]
                      for d in got)
    assert subjects == sorted(b"hold %d" % ids.index(i) for i in released)
    assert all(d["data"].startswith(b"X-Lazaret-Released: ") for d in got)
    assert stays(lambda: gw.count() == len(released), t(1))
    rows = audit_rows(m, "pvo_overflow_release")
    assert sorted(r["target"] for r in rows) == sorted(released), rows
    assert m.metric("lazaret_pvo_overflow_released_total") == len(released)


def test_a_full_manager_makes_the_gateway_answer_451(start_manager, start_gateway, aio_sink):
    """A real gateway in front: the manager's 452 becomes the gateway's 451 upstream,
    the gateway keeps nothing, and the client's retry is taken once there is room."""
    m = start_manager(pvo_quarantine__max_size="1M")
    register_gateway(m)
    for name in ("virus", "outbreak", "unclassified"):
        assert m.api("PATCH", "/api/v1/quarantines/" + name,
                     json={"overflow_exempt": True})[0] == 200
    assert m.api("POST", "/api/v1/quarantines",
                 json={"name": "Legal", "type": "policy", "overflow_exempt": True})[0] == 201
    for i in range(4):
        stored_id(*pvo_send(m, big_message([qheader("Legal", 10 - i)], "legal %d" % i,
                                           size=300 * 1024)))
    wait_for(lambda: mail_from_reply(m)[0] == 452, t(20), "452 at MAIL FROM")
    before = sorted(x["id"] for x in m.list_all())

    gw = start_central_gw(start_gateway, aio_sink, m)
    msg = make_gw_message(subject="Invoice 452")
    code, text = gw.send(SENDER, RCPT, msg)
    assert (code, text) == (451, "4.3.0 Error: could not relay the message, try again later")
    assert "route=central_pvo" in gw.log_text() and "status=deferred" in gw.log_text()
    assert gw.messages() == [] and aio_sink.count() == 0
    assert sorted(x["id"] for x in m.list_all()) == before

    # room again: the retry lands in the filter's quarantine, once
    assert m.api("PATCH", "/api/v1/quarantines/Legal",
                 json={"overflow_exempt": False})[0] == 200
    wait_for(lambda: mail_from_reply(m)[0] == 250, t(20), "MAIL FROM accepted again")
    code, text = gw.send(SENDER, RCPT, msg)
    assert code == 250, text
    new = [x for x in m.list_all() if x["id"] not in before]
    assert len(new) == 1
    assert [q["name"] for q in m.get_message(new[0]["id"])["quarantines"]] == ["添付ファイル"]

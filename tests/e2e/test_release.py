"""Release delivery as the end user and the mail server behind it see it."""

import http.client
import re
import time

import pytest

from conftest import MANAGER_NAME
from e2e_helpers import free_port, make_message, parse_rfc3339, stays, t, wait_for

RELEASED_RE = re.compile(rb"^X-Lazaret-Released: ([^;\r\n]+); (\S+)\r\n")


def states(m, mid):
    return {r["address"]: r["state"] for r in m.get_message(mid)["recipients"]}


def wait_states(m, mid, expected, timeout=20):
    wait_for(lambda: states(m, mid) == expected, timeout,
             "recipient states %r" % (expected,))


def check_released_copy(data, raw, name=MANAGER_NAME):
    """data = 'X-Lazaret-Released: <name>; <RFC 3339>' CRLF + the original bytes."""
    mm = RELEASED_RE.match(data)
    assert mm, data[:200]
    assert mm.group(1).decode() == name
    when = parse_rfc3339(mm.group(2).decode())
    assert abs(when - time.time()) < 300, mm.group(2)
    assert data[mm.end():] == raw, "the released body differs from the original bytes"


def release(m, mid, body=None, expect=202):
    st, doc = m.api("POST", "/api/v1/messages/%s/release" % mid, json=body)
    assert st == expect, (st, doc)
    return doc


# ---------------------------------------------------------------------------

def test_release_to_primary(start_manager, aio_sink):
    m = start_manager(primary_host=aio_sink.host)
    raw = make_message("リリース対象", body="release me\r\n.dot line\r\n")
    mid = m.send("orig-sender@example.jp", ["u1@corp.test", "u2@corp.test"], raw)
    doc = release(m, mid)
    assert doc["id"] == mid
    assert {r["state"] for r in doc["recipients"]} <= {"releasing", "released"}, doc
    got = aio_sink.wait_count(1)
    assert len(got) == 1
    d = got[0]
    assert d["sender"] == "orig-sender@example.jp"
    assert sorted(d["rcpts"]) == ["u1@corp.test", "u2@corp.test"]
    assert d["peer"] == "127.0.0.1"
    check_released_copy(d["data"], raw)
    wait_states(m, mid, {"u1@corp.test": "released", "u2@corp.test": "released"})
    # The states are recorded at the DATA reply, the counters when the session ends.
    wait_for(lambda: m.metric("lazaret_released_total") == 2, 10, "the released counter")
    assert m.metric("lazaret_release_queue_depth") == 0
    # Released mail stays visible (and its raw bytes unchanged).
    assert m.http("GET", "/api/v1/messages/%s/raw" % mid)[2] == raw


def test_release_null_sender_keeps_null_sender(start_manager, aio_sink):
    m = start_manager(primary_host=aio_sink.host)
    raw = make_message("bounce")
    mid = m.send("", ["u1@corp.test"], raw)
    release(m, mid)
    d = aio_sink.wait_count(1)[0]
    assert d["sender"] in ("", "<>"), d["sender"]  # aiosmtpd shows the null sender as "<>"
    check_released_copy(d["data"], raw)


def test_release_binds_the_source_address(start_manager, aio_sink):
    m = start_manager(primary_host=aio_sink.host, source_address="127.0.0.3")
    mid = m.send("a@example.jp", ["u1@corp.test"], make_message("from where"))
    release(m, mid)
    assert aio_sink.wait_count(1)[0]["peer"] == "127.0.0.3"


def test_release_per_recipient(start_manager, aio_sink):
    m = start_manager(primary_host=aio_sink.host)
    raw = make_message("per recipient")
    rc = ["u1@corp.test", "u2@corp.test", "u3@corp.test"]
    mid = m.send("a@example.jp", rc, raw)
    release(m, mid, {"recipients": ["u2@corp.test"]})
    d = aio_sink.wait_count(1)[0]
    assert d["rcpts"] == ["u2@corp.test"]
    check_released_copy(d["data"], raw)
    wait_states(m, mid, {"u1@corp.test": "quarantined", "u2@corp.test": "released",
                         "u3@corp.test": "quarantined"})
    # Without a body: the ones still quarantined, and u2 is not sent again.
    release(m, mid)
    got = aio_sink.wait_count(2)
    assert sorted(got[1]["rcpts"]) == ["u1@corp.test", "u3@corp.test"]
    wait_states(m, mid, {a: "released" for a in rc})
    assert stays(lambda: aio_sink.count() == 2, t(1.5))


def test_release_twice_delivers_once(start_manager, aio_sink):
    m = start_manager(primary_host=aio_sink.host)
    mid = m.send("a@example.jp", ["u1@corp.test", "u2@corp.test"], make_message("twice"))
    st1, _ = m.api("POST", "/api/v1/messages/%s/release" % mid)
    st2, doc2 = m.api("POST", "/api/v1/messages/%s/release" % mid)
    assert st1 == 202
    assert 200 <= st2 < 300, (st2, doc2)
    wait_states(m, mid, {"u1@corp.test": "released", "u2@corp.test": "released"})
    st3, doc3 = m.api("POST", "/api/v1/messages/%s/release" % mid,
                      json={"recipients": ["u1@corp.test"]})
    assert 200 <= st3 < 300, (st3, doc3)
    assert {r["state"] for r in doc3["recipients"]} == {"released"}
    assert stays(lambda: aio_sink.count() <= 1, t(2))
    got = aio_sink.messages
    assert len(got) == 1
    assert sorted(got[0]["rcpts"]) == ["u1@corp.test", "u2@corp.test"]
    wait_for(lambda: m.metric("lazaret_released_total") == 2, 10, "the released counter")


def test_release_unknown_recipient_is_a_client_error(start_manager, aio_sink):
    m = start_manager(primary_host=aio_sink.host)
    mid = m.send("a@example.jp", ["u1@corp.test"], make_message("unknown rcpt"))
    st, doc = m.api("POST", "/api/v1/messages/%s/release" % mid,
                    json={"recipients": ["stranger@evil.test"]})
    assert 400 <= st < 500, (st, doc)
    assert "error" in doc
    assert stays(lambda: aio_sink.count() == 0, t(1))
    assert states(m, mid) == {"u1@corp.test": "quarantined"}


def test_deleted_recipient_is_never_released(start_manager, aio_sink):
    m = start_manager(primary_host=aio_sink.host)
    mid = m.send("a@example.jp", ["u1@corp.test", "u2@corp.test"], make_message("deleted"))
    st, _ = m.api("POST", "/api/v1/messages/%s/delete" % mid,
                  json={"recipients": ["u1@corp.test"]})
    assert st == 200
    m.api("POST", "/api/v1/messages/%s/release" % mid, json={"recipients": ["u1@corp.test"]})
    release(m, mid)
    d = aio_sink.wait_count(1)[0]
    assert d["rcpts"] == ["u2@corp.test"]
    wait_states(m, mid, {"u1@corp.test": "deleted", "u2@corp.test": "released"})
    assert stays(lambda: aio_sink.count() == 1, t(1))


def test_failover_to_secondary_when_primary_is_down(start_manager, aio_sink):
    closed = "127.0.0.1:%d" % free_port()
    m = start_manager(primary_host=closed, secondary_host=aio_sink.host)
    raw = make_message("failover")
    mid = m.send("a@example.jp", ["u1@corp.test"], raw)
    release(m, mid)
    d = aio_sink.wait_count(1)[0]
    check_released_copy(d["data"], raw)
    wait_states(m, mid, {"u1@corp.test": "released"})


def test_failover_to_secondary_on_4xx(start_manager, aio_sink_factory):
    primary = aio_sink_factory()
    secondary = aio_sink_factory()
    primary.handler.default_rcpt_reply = "451 4.3.0 Try again later"
    m = start_manager(primary_host=primary.host, secondary_host=secondary.host)
    raw = make_message("4xx failover")
    mid = m.send("a@example.jp", ["u1@corp.test"], raw)
    release(m, mid)
    d = secondary.wait_count(1)[0]
    check_released_copy(d["data"], raw)
    assert primary.count() == 0
    assert any(a == "u1@corp.test" for a, _ in primary.handler.rcpt_log), \
        "the primary was not tried first"
    wait_states(m, mid, {"u1@corp.test": "released"})


def test_5xx_for_one_recipient_fails_only_that_one(start_manager, aio_sink):
    aio_sink.handler.rcpt_replies["bad@corp.test"] = \
        "550 5.1.1 <bad@corp.test>: Recipient address rejected: User unknown"
    m = start_manager(primary_host=aio_sink.host)
    raw = make_message("one bad")
    mid = m.send("a@example.jp", ["good@corp.test", "bad@corp.test"], raw)
    release(m, mid)
    d = aio_sink.wait_count(1)[0]
    assert d["rcpts"] == ["good@corp.test"]
    check_released_copy(d["data"], raw)
    wait_states(m, mid, {"good@corp.test": "released", "bad@corp.test": "failed"})
    detail = m.get_message(mid)
    bad = [r for r in detail["recipients"] if r["address"] == "bad@corp.test"][0]
    shown = " ".join(str(v) for v in bad.values())
    assert "550" in shown and "User unknown" in shown, bad
    wait_for(lambda: m.metric("lazaret_release_failed_total") == 1, 10, "the failed counter")
    assert m.metric("lazaret_released_total") == 1
    # A failed recipient is final: releasing it again sends nothing.
    m.api("POST", "/api/v1/messages/%s/release" % mid, json={"recipients": ["bad@corp.test"]})
    assert stays(lambda: aio_sink.count() == 1, t(1.5))
    assert states(m, mid)["bad@corp.test"] == "failed"


def test_4xx_is_retried_until_accepted(start_manager, aio_sink):
    h = aio_sink.handler
    h.rcpt_replies["later@corp.test"] = "451 4.2.0 Mailbox busy, try later"
    m = start_manager(primary_host=aio_sink.host, retry_min="1s", retry_max="2s")
    raw = make_message("retry me")
    mid = m.send("a@example.jp", ["later@corp.test"], raw)
    release(m, mid)
    # The first attempt is refused; the recipient stays releasing and is queued.
    wait_for(lambda: len(h.rcpt_log) >= 1, 10, "the first attempt")
    assert states(m, mid) == {"later@corp.test": "releasing"}
    wait_for(lambda: m.metric("lazaret_release_queue_depth") >= 1, 5, "a queued retry")
    # A second attempt comes after the backoff, still refused.
    wait_for(lambda: len(h.rcpt_log) >= 2, 10, "a retry")
    assert states(m, mid) == {"later@corp.test": "releasing"}
    assert aio_sink.count() == 0
    with h.lock:
        h.rcpt_replies.clear()
    d = aio_sink.wait_count(1, timeout=15)[0]
    check_released_copy(d["data"], raw)
    wait_states(m, mid, {"later@corp.test": "released"})
    assert stays(lambda: aio_sink.count() == 1, t(2.5))
    assert m.metric("lazaret_release_queue_depth") == 0
    assert m.metric("lazaret_release_retried_total") >= 2


def test_primary_down_without_secondary_keeps_releasing(start_manager, aio_sink_factory):
    port = free_port()
    m = start_manager(primary_host="127.0.0.1:%d" % port, retry_min="1s", retry_max="1s")
    raw = make_message("later primary")
    mid = m.send("a@example.jp", ["u1@corp.test"], raw)
    release(m, mid)
    time.sleep(t(1.5))
    assert states(m, mid) == {"u1@corp.test": "releasing"}
    assert m.metric("lazaret_release_queue_depth") == 1
    sink = aio_sink_factory(port=port)
    d = sink.wait_count(1, timeout=15)[0]
    check_released_copy(d["data"], raw)
    wait_states(m, mid, {"u1@corp.test": "released"})


def test_release_through_postfix_smtp_sink(start_manager, postfix_sink):
    m = start_manager(primary_host=postfix_sink.host)
    raw = make_message("smtp-sink 経由", body="body line 1\r\nbody line 2\r\n")
    mid = m.send("orig@example.jp", ["u1@corp.test", "u2@corp.test"], raw)
    release(m, mid)
    wait_states(m, mid, {"u1@corp.test": "released", "u2@corp.test": "released"})
    dumps = postfix_sink.dumps()
    assert len(dumps) == 1, [d["path"] for d in dumps]
    d = dumps[0]
    def addr(args):  # "<a@x> SIZE=..." (older smtp-sink: "FROM:<a@x> ...")
        return re.sub(r"^(?i:from:|to:)", "", args.split()[0]).lower()
    assert addr(d["mail_args"]) == "<orig@example.jp>", d["mail_args"]
    assert sorted(addr(a) for a in d["rcpt_args"]) == ["<u1@corp.test>", "<u2@corp.test>"]
    msg = d["message"]
    first, rest = msg.split(b"\n", 1)
    assert re.match(rb"^X-Lazaret-Released: %s; \S+$" % MANAGER_NAME.encode(), first), first
    assert rest.rstrip(b"\n") == raw.replace(b"\r\n", b"\n").rstrip(b"\n")


# ---------------------------------------------------------------------------
# Bulk

def test_bulk_release_by_filter(start_manager, aio_sink):
    m = start_manager(primary_host=aio_sink.host)
    bulk = [m.send("spammer@bulk.test", ["u%d@corp.test" % i], make_message("bulk %d" % i))
            for i in range(3)]
    other = m.send("friend@example.jp", ["u9@corp.test"], make_message("keep"))
    st, doc = m.api("POST", "/api/v1/messages/release",
                    json={"filter": {"sender": "spammer@bulk.test"}})
    assert st in (200, 202), (st, doc)
    assert doc["changed"] == 3
    got = aio_sink.wait_count(3)
    assert sorted(g["rcpts"][0] for g in got) == ["u0@corp.test", "u1@corp.test", "u2@corp.test"]
    for mid in bulk:
        wait_states(m, mid, {r: "released" for r in states(m, mid)})
    assert states(m, other) == {"u9@corp.test": "quarantined"}
    # Again: nothing left to change, nothing sent.
    st, doc = m.api("POST", "/api/v1/messages/release",
                    json={"filter": {"sender": "spammer@bulk.test"}})
    assert st in (200, 202) and doc["changed"] == 0, (st, doc)
    assert stays(lambda: aio_sink.count() == 3, t(1.5))


def test_bulk_release_by_subject_filter(start_manager, aio_sink):
    m = start_manager(primary_host=aio_sink.host)
    a = m.send("x@example.jp", ["u1@corp.test"], make_message("【広告】セール開催"))
    b = m.send("y@example.jp", ["u2@corp.test"], make_message("議事録"))
    st, doc = m.api("POST", "/api/v1/messages/release", json={"filter": {"subject": "セール"}})
    assert st in (200, 202) and doc["changed"] == 1, (st, doc)
    assert aio_sink.wait_count(1)[0]["rcpts"] == ["u1@corp.test"]
    wait_states(m, a, {"u1@corp.test": "released"})
    assert states(m, b) == {"u2@corp.test": "quarantined"}


def test_bulk_release_by_ids(start_manager, aio_sink):
    m = start_manager(primary_host=aio_sink.host)
    ids = [m.send("a@example.jp", ["u%d@corp.test" % i], make_message("ids %d" % i))
           for i in range(3)]
    st, doc = m.api("POST", "/api/v1/messages/release", json={"ids": ids[:2]})
    assert st in (200, 202), (st, doc)
    assert doc["changed"] == 2
    got = aio_sink.wait_count(2)
    assert sorted(g["rcpts"][0] for g in got) == ["u0@corp.test", "u1@corp.test"]
    assert states(m, ids[2]) == {"u2@corp.test": "quarantined"}
    assert stays(lambda: aio_sink.count() == 2, t(1))


@pytest.mark.parametrize("body", [{"filter": {}}, {}, None])
def test_bulk_release_refuses_an_empty_filter(start_manager, aio_sink, body):
    m = start_manager(primary_host=aio_sink.host)
    mid = m.send("a@example.jp", ["u1@corp.test"], make_message("not everything"))
    st, doc = m.api("POST", "/api/v1/messages/release", json=body)
    if body == {"filter": {}}:
        assert st == 422, (st, doc)
    else:
        assert 400 <= st < 500, (st, doc)
    assert isinstance(doc, dict) and "error" in doc, doc
    assert stays(lambda: aio_sink.count() == 0, t(1))
    assert states(m, mid) == {"u1@corp.test": "quarantined"}


# ---------------------------------------------------------------------------
# Crashes during a release (LAZARET_FAULT crash points, docs/OPERATIONS.md):
# at least once, and a second copy only for a crash between the next hop's 250
# and the commit that records it.

def crash_during_release(start_manager, sink, point):
    """Releases a two-recipient message with the crash point armed; returns
    (manager, message id, raw) once lazaretd died there (exit 137)."""
    m = start_manager(start=False, primary_host=sink.host, retry_min="1s", retry_max="2s")
    m.next_env = {"LAZARET_FAULT": point}
    m.start()
    assert "manager.fault_armed point=%s" % point in m.log_text()
    raw = make_message("crash at " + point)
    mid = m.send("a@example.jp", ["u1@corp.test", "u2@corp.test"], raw)
    release_racing_the_crash(m, mid)
    m.wait_exit(137)
    assert "fault.crash point=%s status=137" % point in m.log_text()
    return m, mid, raw


def release_racing_the_crash(m, mid):
    """POST release: the worker may reach the crash point before the 202 is written
    (the release is committed before the worker is woken), so no answer is fine."""
    try:
        st, doc = m.api("POST", "/api/v1/messages/%s/release" % mid)
    except (OSError, http.client.HTTPException):
        return
    assert st == 202, (st, doc)


BOTH_RELEASED = {"u1@corp.test": "released", "u2@corp.test": "released"}


@pytest.mark.parametrize("point", ["release_before_connect", "release_after_rcpt"])
def test_crash_before_the_data_delivers_once_after_restart(start_manager, aio_sink, point):
    m, mid, raw = crash_during_release(start_manager, aio_sink, point)
    assert aio_sink.count() == 0
    if point == "release_before_connect":
        assert aio_sink.handler.connections == 0
    else:
        assert [a for a, _ in aio_sink.handler.rcpt_log] == ["u1@corp.test", "u2@corp.test"]
    m.restart()
    (d,) = aio_sink.wait_count(1)
    assert sorted(d["rcpts"]) == ["u1@corp.test", "u2@corp.test"]
    check_released_copy(d["data"], raw)
    wait_states(m, mid, BOTH_RELEASED)
    assert stays(lambda: aio_sink.count() == 1, t(3)), "sent twice"


def test_crash_after_the_250_before_the_commit_sends_again(start_manager, aio_sink):
    """The one window of the guarantee: the next hop has the message, the store does
    not know yet. After the restart it is sent again (a duplicate, never a loss)."""
    m, mid, raw = crash_during_release(start_manager, aio_sink, "release_after_250")
    assert aio_sink.count() == 1
    m.restart()
    first, second = aio_sink.wait_count(2)
    for d in (first, second):
        assert sorted(d["rcpts"]) == ["u1@corp.test", "u2@corp.test"]
        check_released_copy(d["data"], raw)
    wait_states(m, mid, BOTH_RELEASED)
    assert stays(lambda: aio_sink.count() == 2, t(3)), "sent a third time"


def test_crash_after_the_commit_is_never_sent_again(start_manager, aio_sink):
    m, mid, raw = crash_during_release(start_manager, aio_sink, "release_after_commit")
    assert aio_sink.count() == 1
    m.restart()
    wait_states(m, mid, BOTH_RELEASED)
    assert m.metric("lazaret_release_queue_depth") == 0
    assert stays(lambda: aio_sink.count() == 1, t(3)), "sent again after the commit"
    check_released_copy(aio_sink.messages[0]["data"], raw)


def test_recorded_at_the_data_reply_before_the_secondary(start_manager, aio_sink_factory):
    """u1 is taken by the primary, u2 deferred there (451) and left for the secondary.
    u1 is committed at the primary's reply to the data, before QUIT and before the
    secondary is tried: a crash right after that commit does not send u1 again."""
    primary, secondary = aio_sink_factory(), aio_sink_factory()
    primary.handler.rcpt_replies["u2@corp.test"] = "451 4.2.0 try the other one"
    m = start_manager(start=False, primary_host=primary.host,
                      secondary_host=secondary.host, retry_min="1s", retry_max="2s")
    m.next_env = {"LAZARET_FAULT": "release_after_commit"}
    m.start()
    raw = make_message("primary then secondary")
    mid = m.send("a@example.jp", ["u1@corp.test", "u2@corp.test"], raw)
    release_racing_the_crash(m, mid)
    m.wait_exit(137)
    assert [d["rcpts"] for d in primary.messages] == [["u1@corp.test"]]
    assert secondary.count() == 0
    m.restart()
    wait_states(m, mid, BOTH_RELEASED, timeout=30)
    assert [d["rcpts"] for d in secondary.messages] == [["u2@corp.test"]]
    assert stays(lambda: primary.count() == 1 and secondary.count() == 1, t(3))
    assert [d["rcpts"] for d in primary.messages] == [["u1@corp.test"]]
    for d in primary.messages + secondary.messages:
        check_released_copy(d["data"], raw)

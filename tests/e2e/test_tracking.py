"""Message tracking (docs/openapi.yaml GET /api/v1/tracking/messages and /{id}, docs/
OPERATIONS.md "Message tracking"): real lazaret-gw gateways push their events to a
real lazaretd; every search field finds its message and none of the others (a
Japanese ISO-2022-JP subject searched by a Japanese substring with begins, is and
contains), cursor pages have no duplicates and no gaps, a message relayed by two
gateways is one story, bad parameters get exact answers, only admins may track,
and lazaretctl track prints the table and the timeline. Runs on the suite's
backend (SQLite or PostgreSQL)."""

import base64
import os
import subprocess
import urllib.parse

import pytest

from e2e_helpers import t, wait_for
from gw_fixtures import GTUBE, make_message  # noqa: F401
from gw_fixtures import start_gateway  # noqa: F401 (a fixture)
from test_attachments import login
from test_events import queue_id, register, tracking_gateway

JP_SUBJECT = "見積書のご送付"


def jp_header(text):
    return "=?ISO-2022-JP?B?%s?=" % base64.b64encode(text.encode("iso2022_jp")).decode()


def search(mgr, **params):
    """(status, body) of a search with params (URL-encoded)."""
    q = urllib.parse.urlencode(params)
    return mgr.api("GET", "/api/v1/tracking/messages" + ("?" + q if q else ""))


def subjects(mgr, **params):
    st, doc = search(mgr, **params)
    assert st == 200, (params, doc)
    return sorted(m["subject"] for m in doc["messages"])


def error(doc):
    return (doc or {}).get("error", {}).get("message")


def send_tracked_mail(start_manager, start_gateway, aio_sink,  # noqa: F811
                      extra=(), **manager_config):
    """A manager (with manager_config), gateway gw-a delivering to a sink and gw-b
    relaying to gw-a, and the mail of the searches plus extra ((key, sender, rcpt,
    message bytes) sent through gw-a), every message in its final state on the
    manager. Returns (manager, {key: gateway queue id})."""
    mgr = start_manager(**manager_config)
    gwa = tracking_gateway(
        start_gateway, mgr, register(mgr, "gw-a"), aio_sink.host,
        gateway={"name": "gw-a"},
        external_spam_quarantine={"enabled": "yes", "host": "127.0.0.1",
                                  "port": str(mgr.smtp_port)})
    gwb = tracking_gateway(start_gateway, mgr, register(mgr, "gw-b", "127.0.0.3"),
                           "127.0.0.1:%d" % gwa.smtp_port, gateway={"name": "gw-b"})
    ids = {}

    def send(gw, key, sender, rcpt, msg, **kw):
        code, text = gw.send(sender, rcpt, msg, **kw)
        assert code == 250, text
        ids[key] = queue_id(text)

    send(gwa, "report", "Alice@Sender.test", "bob@example.com",
         make_message(subject="Quarterly report", extra_headers=(
             "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n"),
             body="--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
                  "--b\r\nContent-Type: application/pdf\r\n"
                  "Content-Disposition: attachment; filename=Q3.pdf\r\n\r\n"
                  "JVBERi0=\r\n--b--\r\n"))
    send(gwa, "jp", "carol@sender.test", "dave@example.com",
         make_message(subject=jp_header(JP_SUBJECT)), source_address="127.0.0.2")
    send(gwa, "spam", "spammer@sender.test", "bob@example.com",
         make_message(subject="Win", body="Buy now.\r\n%s\r\n" % GTUBE))
    send(gwb, "relayed", "erin@sender.test", "frank@example.com",
         make_message(subject="Relayed note"))
    for i in range(7):
        send(gwa, "page%d" % i, "paul@sender.test", "bob@example.com",
             make_message(subject="page %d" % i))
    for key, sender, rcpt, msg in extra:
        send(gwa, key, sender, rcpt, msg)

    def settled():
        st, doc = search(mgr, limit=1000)
        assert st == 200, doc
        states = [m["last_state"] for m in doc["messages"]]
        # 11 messages (and the extra ones), the relayed one tracked by both
        # gateways, the spam one by the manager that quarantined it too (its own
        # events, gateway "manager")
        return len(states) == 13 + len(extra) and \
            all(s in ("delivered", "quarantined") for s in states)
    wait_for(settled, 60, "every tracked message in its final state")
    return mgr, ids


@pytest.fixture
def tracked(start_manager, start_gateway, aio_sink):  # noqa: F811
    """send_tracked_mail's manager and ids."""
    return send_tracked_mail(start_manager, start_gateway, aio_sink)


def test_every_search_field_finds_its_message_only(tracked):
    mgr, ids = tracked
    pages = ["page %d" % i for i in range(7)]
    cases = [
        ({"sender": "alice@SENDER.test"}, ["Quarterly report"]),
        ({"sender": "nobody@sender.test"}, []),
        ({"sender": "<>"}, []),
        ({"recipient": "DAVE@example.com"}, [JP_SUBJECT]),
        ({"recipient": "frank@example.com"}, ["Relayed note", "Relayed note"]),
        ({"recipient": "@EXAMPLE.com", "sender": "carol@sender.test"}, [JP_SUBJECT]),
        ({"recipient": "@example.jp"}, []),
        ({"subject": "積書のご"}, [JP_SUBJECT]),
        ({"subject": "積書のご", "subject_op": "contains"}, [JP_SUBJECT]),
        ({"subject": "見積書", "subject_op": "begins"}, [JP_SUBJECT]),
        ({"subject": "積書", "subject_op": "begins"}, []),
        ({"subject": JP_SUBJECT, "subject_op": "is"}, [JP_SUBJECT]),
        ({"subject": "見積書", "subject_op": "is"}, []),
        ({"subject": "QUARTERLY"}, ["Quarterly report"]),
        ({"subject": "quarterly REPORT", "subject_op": "is"}, ["Quarterly report"]),
        ({"subject": "page ", "subject_op": "begins"}, pages),
        ({"subject": "50%"}, []),  # % is a character, not a wildcard
        ({"attachment": "q3.PDF"}, ["Quarterly report"]),
        ({"attachment": "q3"}, []),
        # the spam is tracked by gw-a and by the manager that quarantined it
        ({"event": "spam"}, ["Win", "Win"]),
        ({"event": "quarantined"}, ["Win", "Win"]),
        ({"event": "spam,virus"}, ["Win", "Win"]),
        ({"gateway": "manager"}, ["Win"]),
        ({"event": "virus"}, []),
        ({"gateway": "gw-b"}, ["Relayed note"]),
        ({"gateway": "gw-c"}, []),
        ({"client_ip": "127.0.0.2"}, [JP_SUBJECT]),
        ({"client_ip": "127.0.0.9"}, []),
        ({"sender": "alice@sender.test", "subject": "report"}, ["Quarterly report"]),
        ({"sender": "alice@sender.test", "subject": "Win"}, []),
        ({"since": "2100-01-01T00:00:00Z"}, []),
        ({"until": "2000-01-01T00:00:00Z"}, []),
        ({"since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z",
          "recipient": "dave@example.com"}, [JP_SUBJECT]),
    ]
    for params, want in cases:
        assert subjects(mgr, **params) == sorted(want), params
    # Message-ID, with or without <>
    st, doc = mgr.api("GET", "/api/v1/tracking/messages/gw-a~%s" % ids["report"])
    assert st == 200, doc
    mid = doc["message_id"]
    assert mid.endswith("@e2e.test") and not mid.startswith("<")
    assert subjects(mgr, message_id=mid) == ["Quarterly report"]
    assert subjects(mgr, message_id="<%s>" % mid) == ["Quarterly report"]
    # the fields of a row
    (row,) = search(mgr, recipient="dave@example.com")[1]["messages"]
    assert row == {"id": "gw-a~%s" % ids["jp"], "gateway": "gw-a",
                   "received_at": row["received_at"], "sender": "carol@sender.test",
                   "recipients": ["dave@example.com"], "subject": JP_SUBJECT,
                   "message_id": row["message_id"], "client_ip": "127.0.0.2",
                   "last_state": "delivered"}
    assert row["received_at"].endswith("Z")


def test_cursor_pages_have_no_duplicates_or_gaps(tracked):
    mgr, _ = tracked
    _, whole = search(mgr, limit=1000)
    want = [m["id"] for m in whole["messages"]]
    assert len(want) == 13 and whole["next_cursor"] is None
    times = [m["received_at"] for m in whole["messages"]]
    assert times == sorted(times, reverse=True)
    for limit in (1, 3, 5):
        got, cursor = [], None
        while True:
            params = {"limit": limit}
            if cursor:
                params["cursor"] = cursor
            st, doc = search(mgr, **params)
            assert st == 200, doc
            assert len(doc["messages"]) <= limit
            got += [m["id"] for m in doc["messages"]]
            cursor = doc["next_cursor"]
            if cursor is None:
                break
        assert got == want, limit
    # a filtered search pages the same way
    got, cursor = [], None
    while True:
        params = {"limit": 2, "subject": "page ", "subject_op": "begins"}
        if cursor:
            params["cursor"] = cursor
        doc = search(mgr, **params)[1]
        got += [m["subject"] for m in doc["messages"]]
        cursor = doc["next_cursor"]
        if cursor is None:
            break
    assert sorted(got) == ["page %d" % i for i in range(7)] and len(set(got)) == 7


def test_a_relayed_message_is_one_story(tracked):
    mgr, ids = tracked
    st, doc = search(mgr, subject="Relayed note", subject_op="is")
    assert st == 200
    rows = {m["gateway"]: m for m in doc["messages"]}
    assert set(rows) == {"gw-a", "gw-b"}
    assert rows["gw-b"]["id"] == "gw-b~%s" % ids["relayed"]
    assert rows["gw-a"]["message_id"] == rows["gw-b"]["message_id"]
    stories = []
    for gw in ("gw-a", "gw-b"):
        st, story = mgr.api("GET", "/api/v1/tracking/messages/%s" % rows[gw]["id"])
        assert st == 200, story
        assert story["id"] == rows[gw]["id"] and story["gateway"] == gw
        ev = story["events"]
        assert [e["at"] for e in ev] == sorted(e["at"] for e in ev)
        assert {e["gateway"] for e in ev} == {"gw-a", "gw-b"}
        received = {e["gateway"]: e["at"] for e in ev if e["type"] == "received"}
        # gw-b received it first (the same millisecond is possible on loopback)
        assert set(received) == {"gw-a", "gw-b"} and received["gw-b"] <= received["gw-a"]
        # gw-b delivered to gw-a, which delivered to the sink
        deliveries = sorted((e["gateway"], e["detail"]["status"]) for e in ev
                            if e["type"] == "delivery")
        assert deliveries == [("gw-a", "sent"), ("gw-b", "sent")], deliveries
        h = story["headers"]
        assert h["subject"] == "Relayed note" and h["to"] == "bob@example.com"
        assert h["from"] == "alice@sender.test"
        assert h["message_id"] == rows[gw]["message_id"]
        stories.append([(e["gateway"], e["type"], e["at"]) for e in ev])
    assert stories[0] == stories[1]
    # the spam quarantined on the manager: gw-a's events and the manager's
    st, story = mgr.api("GET", "/api/v1/tracking/messages/gw-a~%s" % ids["spam"])
    assert st == 200, story
    mine = [e["type"] for e in story["events"] if e["gateway"] == "manager"]
    assert mine and mine[0] == "quarantine", story["events"]
    assert {e["gateway"] for e in story["events"]} == {"gw-a", "manager"}
    # a Japanese subject decoded in the headers, an attachment listed
    st, story = mgr.api("GET", "/api/v1/tracking/messages/gw-a~%s" % ids["jp"])
    assert story["headers"]["subject"] == JP_SUBJECT
    assert {e["gateway"] for e in story["events"]} == {"gw-a"}
    st, story = mgr.api("GET", "/api/v1/tracking/messages/gw-a~%s" % ids["report"])
    assert story["attachments"] == ["Q3.pdf"]
    assert [e["type"] for e in story["events"]] == \
        ["connection", "received", "verdict", "delivery", "reply"]
    conn = story["events"][0]
    assert conn["message"] is None and conn["gateway"] == "gw-a"
    assert story["helo"] == "client.e2e.test" and story["client_ip"] == "127.0.0.1"
    assert conn["detail"]["helo"] == "client.e2e.test"
    assert conn["detail"]["hat_decision"] == "accept"
    assert conn["detail"]["session"] == story["events"][1]["detail"]["session"]


def test_bad_parameters_and_auth(tracked, start_manager):
    mgr, ids = tracked
    time_msg = '"%s" must be an RFC 3339 date-time (e.g. 2026-11-27T19:30:00Z)'
    events_msg = ('"event" must be a comma-separated list of spam, suspect, virus, '
                  'delivered, hard_bounce, soft_bounce, quarantined, outbreak, dlp')
    cases = [
        ("since=yesterday", time_msg % "since"),
        ("until=2026-13-01T00:00:00Z", time_msg % "until"),
        ("subject=x&subject_op=starts", '"subject_op" must be one of begins, is, contains'),
        ("event=spammy", events_msg),
        ("event=spam,", events_msg),
        ("limit=0", '"limit" must be a number from 1 to 1000'),
        ("limit=1001", '"limit" must be a number from 1 to 1000'),
        ("limit=ten", '"limit" must be a number from 1 to 1000'),
        ("limit=-1", '"limit" must be a number from 1 to 1000'),
        ("cursor=garbage", "bad cursor"),
        ("cursor=12~gw-a~", "bad cursor"),
        ("cursor=x~gw-a~abc", "bad cursor"),
        ("sender=a&sender=b", 'query parameter "sender" given more than once'),
        ("sender=" + "a" * 999, '"sender" must be at most 998 bytes'),
    ]
    for query, want in cases:
        st, doc = mgr.api("GET", "/api/v1/tracking/messages?" + query)
        assert (st, error(doc)) == (400, want), query
    for path in ("gw-a~00000000-0000-7000-8000-000000000000", "nosuchid",
                 "gw-c~%s" % ids["report"], "bad!gw~x"):
        st, doc = mgr.api("GET", "/api/v1/tracking/messages/" + path)
        assert (st, error(doc)) == (404, "no such tracked message"), path
    # the store is intact after them
    assert len(search(mgr, limit=1000)[1]["messages"]) == 13
    # no credentials, an end user, an operator
    for path in ("/api/v1/tracking/messages",
                 "/api/v1/tracking/messages/gw-a~%s" % ids["report"]):
        st, _ = mgr.api("GET", path, token=None)
        assert st == 401, path
    for name, role in (("eve", "enduser"), ("opal", "operator")):
        c = login(mgr, name, "%s-password-1" % name, role,
                  ["bob@example.com"] if role == "enduser" else ())
        for path in ("/api/v1/tracking/messages",
                     "/api/v1/tracking/messages/gw-a~%s" % ids["report"]):
            st, doc = c.call("GET", path)
            assert (st, error(doc)) == (403, "not allowed for role of %s" % name), path


def lazaretctl(mgr, *args):
    exe = os.path.join(os.environ["LAZARET_BUILD"], "lazaretctl")
    env = dict(os.environ, LAZARET_URL=mgr.http_url, LAZARET_TOKEN=mgr.token)
    return subprocess.run([exe] + list(args), capture_output=True, text=True, env=env,
                          timeout=t(30))


def test_lazaretctl_track(tracked):
    mgr, ids = tracked
    r = lazaretctl(mgr, "track", "--recipient", "dave@example.com")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["RECEIVED", "ID", "SENDER", "RECIPIENTS", "STATE", "SUBJECT"]
    assert len(lines) == 2, r.stdout
    assert "gw-a~%s" % ids["jp"] in lines[1] and JP_SUBJECT in lines[1]
    assert "carol@sender.test" in lines[1] and "delivered" in lines[1]
    r = lazaretctl(mgr, "track", "--subject", "page ", "--subject-op", "begins",
                   "--limit", "3", "--all")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 1 + 7, r.stdout  # follows the cursor
    r = lazaretctl(mgr, "track", "--event", "nonsense")
    assert r.returncode != 0
    assert '"event" must be a comma-separated list' in r.stderr
    r = lazaretctl(mgr, "track", "show", "gw-b~%s" % ids["relayed"])
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "Relayed note" in out and "erin@sender.test" in out
    assert any(ln.split() == ["helo:", "client.e2e.test"] for ln in out.splitlines()), out
    timeline = [ln.split() for ln in out.splitlines() if ln.startswith("20")]
    got = {x[1]: x[0] for x in timeline if x[2] == "received"}
    assert set(got) == {"gw-a", "gw-b"} and got["gw-b"] <= got["gw-a"], out
    r = lazaretctl(mgr, "track", "show", "gw-a~nosuch")
    assert r.returncode != 0 and "no such tracked message" in r.stderr

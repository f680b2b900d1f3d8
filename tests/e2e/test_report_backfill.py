"""A gateway's rollups of the time before central reporting, sent once
(POST /api/v1/gateway/rollups, docs/GATEWAY.md "Reporting"): the manager's
reports show them added to what events brought, exactly once after a replay and a
manager restart; a gateway's token only ever adds to that gateway's rows; bad
bodies get exact 400s and change nothing; after "done" nothing more is taken.
Runs on the suite's backend (SQLite or PostgreSQL)."""

import json
import time
import urllib.parse

from test_events import error, push, register
from test_reports import message

HOUR = 3600 * 1000
DAY = 24 * HOUR


def rollups(mgr, token, body):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
    st, _, reply = mgr.http("POST", "/api/v1/gateway/rollups", body=raw, token=token)
    return st, (json.loads(reply.decode("utf-8")) if reply else None)


def report(mgr, name, **params):
    st, doc = mgr.api("GET", "/api/v1/reports/%s?%s" % (name, urllib.parse.urlencode(params)))
    assert st == 200, doc
    return doc


def rows_of(mgr, name, **params):
    return {r["key"]: (r["incoming"], r["clean"], r["spam"])
            for r in report(mgr, name, limit=20, **params)["rows"]}


def old_rows(cutoff):
    """Two days ago: 5 messages from old.test (4 clean, 1 spam), by hour and by day."""
    day = (cutoff // DAY - 2) * DAY
    hour = day + 10 * HOUR
    rows = []
    for gran, bucket in (("hour", hour), ("day", day)):
        rows += [
            {"report": "overview", "gran": gran, "bucket": bucket, "key": "",
             "incoming": 5, "clean": 4, "spam": 1},
            {"report": "incoming_domains", "gran": gran, "bucket": bucket, "key": "old.test",
             "incoming": 5, "clean": 4, "spam": 1},
        ]
    return rows


def test_old_rollups_are_added_once(start_manager):
    m = start_manager()
    token = register(m, "gw-a")
    other = register(m, "gw-b", "127.0.0.2")
    # what events brought since the switch: one clean message from new.test
    at = int(time.time() * 1000) - 1000
    st, doc = push(m, token, {"events": message(1, at, "m-1", "a@new.test",
                                                ["u1@example.com"], "clean")})
    assert st == 200, doc
    week = report(m, "overview", period="week")["totals"]
    assert (week["incoming"], week["clean"], week["spam"]) == (1, 1, 0), week

    cutoff = int(time.time() * 1000) - 60000
    body = {"cutoff": cutoff, "rows": old_rows(cutoff)}
    st, doc = rollups(m, token, body)
    assert (st, doc) == (200, {"stored": 4, "done": False}), doc
    # a replay (the gateway did not see the answer) stores nothing twice
    st, doc = rollups(m, token, body)
    assert (st, doc) == (200, {"stored": 0, "done": False}), doc

    def check():
        week = report(m, "overview", period="week")["totals"]
        assert (week["incoming"], week["clean"], week["spam"]) == (6, 5, 1), week
        assert rows_of(m, "incoming_domains", period="week") == {
            "old.test": (5, 4, 1), "new.test": (1, 1, 0)}
        series = [b for b in report(m, "overview", period="week")["series"] if b["incoming"]]
        assert sorted(b["incoming"] for b in series) == [1, 5], series
        assert report(m, "overview", period="week", gateway="gw-b")["totals"]["incoming"] == 0
    check()

    # bad bodies: exact 400s, nothing stored
    hour = old_rows(cutoff)[0]["bucket"]
    good = {"report": "overview", "gran": "hour", "bucket": hour - HOUR, "key": "", "incoming": 1}
    cases = [
        ({"cutoff": cutoff, "rows": [dict(good, gateway="gw-b")]}, 'row 1: unknown field "gateway"'),
        ({"cutoff": cutoff, "rows": [good], "gateway": "gw-b"}, 'unknown field "gateway"'),
        ({"cutoff": int(time.time() * 1000) + 3600000, "rows": [good]},
         '"cutoff" must be when the gateway turned central reporting on (Unix ms), '
         'not in the future'),
        ({"cutoff": "yesterday", "rows": [good]},
         '"cutoff" must be when the gateway turned central reporting on (Unix ms), '
         'not in the future'),
        ({"rows": [good]}, '"cutoff" must be when the gateway turned central reporting on '
         '(Unix ms), not in the future'),
        ({"cutoff": cutoff, "rows": [good, dict(good, report="nope")]}, "row 2: no such report"),
        ({"cutoff": cutoff, "rows": [dict(good, gran="week")]},
         'row 1: "gran" must be hour, day or month'),
        ({"cutoff": cutoff, "rows": [dict(good, bucket=hour + 1)]},
         'row 1: "bucket" must be the start of a UTC hour (Unix ms)'),
        ({"cutoff": cutoff, "rows": [dict(good, gran="day")]},
         'row 1: "bucket" must be the start of a UTC day (Unix ms)'),
        ({"cutoff": cutoff, "rows": [dict(good, bucket=cutoff // HOUR * HOUR)]},
         'row 1: the bucket ends after "cutoff"'),
        ({"cutoff": cutoff, "rows": [dict(good, gran="month", bucket=DAY)]},
         'row 1: "bucket" must be the start of a UTC month (Unix ms)'),
        ({"cutoff": cutoff, "rows": [dict(good, incoming=-1)]},
         'row 1: "incoming" must be an integer from 0 to 1000000000000'),
        ({"cutoff": cutoff, "rows": [dict(good, spam=1.5)]},
         'row 1: "spam" must be an integer from 0 to 1000000000000'),
        ({"cutoff": cutoff, "rows": [dict(good, key="x" * 513)]},
         'row 1: "key" must be a string of at most 512 bytes'),
        ({"cutoff": cutoff, "rows": [dict(good, key="a\u0000b")]},
         'invalid JSON at line 1 column 116: \\u0000 (NUL) is not allowed in strings'),
        ({"cutoff": cutoff, "rows": [good] * 1001}, '"rows" must be a list of at most 1000 rows'),
        ({"cutoff": cutoff, "rows": {}}, '"rows" must be a list of at most 1000 rows'),
        ({"cutoff": cutoff, "rows": [good], "done": "yes"}, '"done" must be true or false'),
        ({"cutoff": cutoff, "rows": ["x"]}, "row 1 is not an object"),
    ]
    for bad, msg in cases:
        st, doc = rollups(m, token, bad)
        assert (st, error(doc)) == (400, msg), (bad if len(json.dumps(bad)) < 300 else msg, doc)
    st, doc = rollups(m, token, b"[1]")
    assert st == 422, doc
    for tok in (None, "not-a-token"):
        st, doc = rollups(m, tok, {"cutoff": cutoff, "rows": [good]})
        assert (st, error(doc)) == (401, "a valid gateway token is required"), doc
    check()

    # gw-b's token adds to gw-b only
    st, doc = rollups(m, other, {"cutoff": cutoff, "rows": [good]})
    assert (st, doc) == (200, {"stored": 1, "done": False}), doc
    assert report(m, "overview", period="week", gateway="gw-b")["totals"]["incoming"] == 0
    assert report(m, "overview", period="day", gateway="gw-b")["totals"]["incoming"] in (0, 1)
    st, doc = m.api("GET", "/api/v1/reports/overview?period=custom&gateway=gw-a&since=%s&until=%s"
                    % (iso(hour - HOUR), iso(hour + HOUR)))
    assert st == 200 and doc["totals"]["incoming"] == 5, doc
    st, doc = m.api("GET", "/api/v1/reports/overview?period=custom&gateway=gw-b&since=%s&until=%s"
                    % (iso(hour - HOUR), iso(hour + HOUR)))
    assert st == 200 and doc["totals"]["incoming"] == 1, doc

    # done: recorded, then nothing more is taken, across a restart
    st, doc = rollups(m, token, {"cutoff": cutoff, "rows": [], "done": True})
    assert (st, doc) == (200, {"stored": 0, "done": True}), doc
    m.stop()
    m.start()
    st, doc = rollups(m, token, {"cutoff": cutoff, "rows": [good]})
    assert (st, error(doc)) == (409, 'the backfill of gateway "gw-a" is done already'), doc
    st, doc = rollups(m, token, body)
    assert st == 409, doc
    check()


def iso(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms // 1000))

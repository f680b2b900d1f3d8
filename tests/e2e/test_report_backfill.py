"""A gateway's rollups of the time before central reporting, sent once
(POST /api/v1/gateway/rollups, docs/GATEWAY.md "Reporting"): the manager's
reports show them added to what events brought, exactly once after a replay and a
manager restart; a gateway's token only ever adds to that gateway's rows; bad
bodies get exact 400s and change nothing; after "done" nothing more is taken.
The month of the switch, whose days and hours before the switch come by the
day and by the hour, reads the same whole (its monthly rows) as by the day.
Runs on the suite's backend (SQLite or PostgreSQL)."""

import calendar
import json
import os
import time
import urllib.parse

from e2e_helpers import wait_for
from gw_fixtures import start_gateway  # noqa: F401 (a fixture)
from test_events import GW, error, push, register
from test_reporting_mode import incoming, reporting_gateway, send_clean, send_spam
from test_reports import message
from test_tracking_local import local_gateway, local_rows

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


FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def test_a_gateway_sends_its_local_rollups_once(start_manager, start_gateway,  # noqa: F811
                                                aio_sink):
    """A real lazaret-gw counts mail locally two days ago (its clock set back with
    libfaketime), then restarts with central reporting and [reporting] backfill =
    yes: the manager's week shows those numbers once, plus what events bring from
    the switch on; a restart sends nothing again, and a push replayed after the
    gateway lost its marker is refused (409) and changes nothing."""
    assert os.path.exists(FAKETIME), "libfaketime missing: run scripts/bootstrap"
    mgr = start_manager()
    gw = reporting_gateway(start_gateway, aio_sink, mgr, register(mgr), "local")
    assert gw.stop() == 0
    gw.env = {"LD_PRELOAD": " ".join(p for p in (os.environ.get("LD_PRELOAD"), FAKETIME) if p),
              "FAKETIME": "-2d", "FAKETIME_DONT_FAKE_MONOTONIC": "1",
              "FAKETIME_DONT_RESET": "1"}
    if os.environ.get("LAZARET_SANITIZED"):
        # ASan wants its runtime first; the preload only wraps clock calls
        gw.env["ASAN_OPTIONS"] = ":".join(o for o in (os.environ.get("ASAN_OPTIONS"),
                                                      "verify_asan_link_order=0") if o)
    gw.start()
    send_clean(gw, "old one", ("bob@example.com", "carol@example.com"))
    send_spam(gw)
    wait_for(lambda: incoming(gw.api) == 3, 30, "the old mail counted on the gateway")
    assert gw.stop() == 0
    (day,) = local_rows(gw, "SELECT DISTINCT bucket FROM report_rollups WHERE gran = 1")
    assert time.time() * 1000 - day[0] > DAY, day  # counted two days back
    assert incoming(mgr.api) == 0

    gw.env = {}
    gw.apply({"reporting": {"mode": "central", "backfill": "yes"}})
    gw.start()
    gw.wait_log("gw.backfill_done")
    week = report(mgr, "overview", period="week")["totals"]
    assert (week["incoming"], week["clean"], week["spam"]) == (3, 2, 1), week
    assert rows_of(mgr, "internal_users", period="week") == {
        "bob@example.com": (2, 1, 1), "carol@example.com": (1, 1, 0)}
    # from the switch on, events: counted once on top
    send_clean(gw, "new one")
    wait_for(lambda: report(mgr, "overview", period="week")["totals"]["incoming"] == 4, 30,
             "the new mail counted from its events")
    assert incoming(mgr.api) == 1  # the last 24 hours: the new mail only

    # a restart sends nothing again
    assert gw.stop() == 0
    gw.start()
    time.sleep(2)
    assert gw.log_text().count("gw.backfill_started") == 1
    # the marker lost: the push goes again, the manager says done, nothing changes
    assert gw.stop() == 0
    os.unlink(os.path.join(gw.data_dir, "reporting.backfilled"))
    gw.start()
    wait_for(lambda: gw.log_text().count("gw.backfill_done") == 2, 30, "the second push")
    assert os.path.exists(os.path.join(gw.data_dir, "reporting.backfilled"))
    week = report(mgr, "overview", period="week")["totals"]
    assert (week["incoming"], week["clean"], week["spam"]) == (4, 3, 1), week


def test_a_switch_not_seen_sends_nothing(start_manager, start_gateway, aio_sink):  # noqa: F811
    """A gateway whose first start with this version is already central cannot
    know when it switched: it says so and sends nothing."""
    mgr = start_manager()
    gw = local_gateway(start_gateway, aio_sink.host, mgr, register(mgr),
                       reporting={"mode": "central", "backfill": "yes"},
                       antispam={"positive_action": "tag"})
    gw.wait_log("gw.backfill_unknown_switch")
    send_clean(gw, "new one")
    wait_for(lambda: incoming(mgr.api) == 1, 30, "the mail counted from its events")
    assert "gw.backfill_started" not in gw.log_text()
    with open(os.path.join(gw.data_dir, "reporting.state")) as f:
        assert f.read() == "central 0\n"


def month_start(ms, add=0):
    """The start of the UTC month of ms, add months on."""
    t = time.gmtime(ms // 1000)
    y, m = divmod(t.tm_year * 12 + t.tm_mon - 1 + add, 12)
    return calendar.timegm((y, m + 1, 1, 0, 0, 0)) * 1000


def custom(mgr, name, since, until, **params):
    return report(mgr, name, period="custom", since=iso(since), until=iso(until), **params)


def keyed(doc):
    return {r["key"]: (r["incoming"], r["clean"], r["spam"]) for r in doc["rows"]}


def added(*docs):
    out = {}
    for d in docs:
        for k, v in keyed(d).items():
            out[k] = tuple(a + b for a, b in zip(out.get(k, (0, 0, 0)), v))
    return out


def by_day(mgr, name, since, until, **params):
    """name over [since, until) in parts of 3 days or more that hold no whole month:
    every bucket read by the day."""
    mid = since + (until - since) // DAY // 2 * DAY
    return added(custom(mgr, name, since, mid, limit=20, **params),
                 custom(mgr, name, mid, until, limit=20, **params))


def test_the_switch_month_read_whole_equals_its_days(start_manager):
    """A gateway that switched to central on the 21st of last month sends that
    month's days before the switch by the day and that day's hours before it by the
    hour, while events bring the rest before and after: last month read whole (its
    monthly rows: prev_month, 90d, year) and by the day gives the same exact numbers,
    per gateway and over all; a replayed push adds nothing."""
    m = start_manager()
    token = register(m, "gw-a")
    other = register(m, "gw-b", "127.0.0.2")
    now = int(time.time() * 1000)
    first, nxt = month_start(now, -1), month_start(now)
    before = month_start(now, -2)
    switch = first + 20 * DAY + 10 * HOUR + 30 * 60000
    day = switch // DAY * DAY

    # events before the push: gw-a's first message after the switch, gw-b's own
    st, doc = push(m, token, {"events": message(1, switch + 60000, "a-1", "a@new.test",
                                                ["u1@example.com"], "clean")})
    assert st == 200, doc
    st, doc = push(m, other, {"events": message(1, first + 5 * DAY, "b-1", "b@other.test",
                                                ["u1@example.com"], "clean")})
    assert st == 200, doc

    def rows(gran, bucket, incoming, clean, spam, key="old.test"):
        return [{"report": "overview", "gran": gran, "bucket": bucket, "key": "",
                 "incoming": incoming, "clean": clean, "spam": spam},
                {"report": "incoming_domains", "gran": gran, "bucket": bucket, "key": key,
                 "incoming": incoming, "clean": clean, "spam": spam}]
    # the month before (whole), its day; last month's days and hours before the switch
    sent = (rows("month", before, 7, 7, 0) + rows("day", before + 9 * DAY, 7, 7, 0)
            + rows("hour", before + 9 * DAY + HOUR, 7, 7, 0)
            + rows("day", first + 2 * DAY, 3, 2, 1) + rows("hour", first + 2 * DAY + HOUR, 3, 2, 1)
            + rows("day", day - DAY, 2, 2, 0) + rows("hour", day - DAY + 23 * HOUR, 2, 2, 0)
            + rows("hour", day + 3 * HOUR, 1, 0, 1, "spam.test"))
    body = {"cutoff": switch, "rows": sent}
    st, doc = rollups(m, token, body)
    assert (st, doc) == (200, {"stored": len(sent), "done": False}), doc
    st, doc = rollups(m, token, body)  # the answer was lost: sent again
    assert (st, doc) == (200, {"stored": 0, "done": False}), doc
    # a month that had not ended by the switch is not taken whole
    st, doc = rollups(m, token, {"cutoff": switch, "rows": rows("month", first, 1, 1, 0)})
    assert (st, error(doc)) == (400, 'row 1: the bucket ends after "cutoff"'), doc
    # events after the push
    st, doc = push(m, token, {"events": message(4, switch + 2 * DAY, "a-2", "a@new.test",
                                                ["u1@example.com", "u2@example.com"], "clean")})
    assert st == 200, doc

    want_a = {"old.test": (5, 4, 1), "spam.test": (1, 0, 1), "new.test": (3, 3, 0)}
    want_b = {"other.test": (1, 1, 0)}
    cases = (("gw-a", want_a, 2), ("gw-b", want_b, 0), (None, dict(want_a, **want_b), 2))
    for gw, want, switch_day in cases:
        g = {"gateway": gw} if gw else {}
        # last month whole (its monthly rows), and the same by the day
        whole = report(m, "incoming_domains", period="prev_month", limit=20, **g)
        assert whole["granularity"] == "day", whole
        assert keyed(whole) == want, (gw, whole)
        assert by_day(m, "incoming_domains", first, nxt, **g) == want, gw
        # the overview's series is its days: they add up to the same
        ov = report(m, "overview", period="prev_month", **g)
        assert ov["totals"]["incoming"] == sum(v[0] for v in want.values()), (gw, ov)
        assert ov["totals"]["spam"] == sum(v[2] for v in want.values()), (gw, ov)
        # the 90 days and the year read last month whole, with the month before
        more = dict(want)
        if gw != "gw-b":
            more["old.test"] = tuple(a + b for a, b in zip(more["old.test"], (7, 7, 0)))
        assert keyed(report(m, "incoming_domains", period="90d", limit=20, **g)) == more, gw
        assert keyed(report(m, "incoming_domains", period="year", limit=20, **g)) == more, gw
        yov = report(m, "overview", period="year", **g)["totals"]
        assert yov["incoming"] == sum(v[0] for v in more.values()), (gw, yov)
        # the day of the switch: its hours add up to the day
        hours = custom(m, "overview", day, day + DAY, **g)
        assert hours["granularity"] == "hour", hours
        assert hours["totals"]["incoming"] == switch_day, (gw, hours)
        days = [b["incoming"] for b in ov["series"] if b["at"][:10] == iso(day)[:10]]
        assert days == [switch_day], (gw, days)

    # replayed, then done: nothing counted twice
    st, doc = rollups(m, token, body)
    assert (st, doc) == (200, {"stored": 0, "done": False}), doc
    st, doc = rollups(m, token, {"cutoff": switch, "rows": [], "done": True})
    assert (st, doc) == (200, {"stored": 0, "done": True}), doc
    for gw, want, _ in cases:
        g = {"gateway": gw} if gw else {}
        assert keyed(report(m, "incoming_domains", period="prev_month", limit=20, **g)) == want
        assert by_day(m, "incoming_domains", first, nxt, **g) == want, gw


def test_a_gateway_that_switched_last_month_counts_it_whole(start_manager,  # noqa: F811
                                                            start_gateway, aio_sink):
    """A real lazaret-gw (its clock set back with libfaketime) counts mail locally
    last month and the month before, switches to central reporting with backfill on
    the 21st, and more mail comes in after the switch: last month read whole (its
    monthly rows) and by the day give the same numbers, and so do its hours and
    days."""
    assert os.path.exists(FAKETIME), "libfaketime missing: run scripts/bootstrap"
    mgr = start_manager()
    gw = reporting_gateway(start_gateway, aio_sink, mgr, register(mgr), "local")
    assert gw.stop() == 0
    now = int(time.time() * 1000)
    first, nxt = month_start(now, -1), month_start(now)
    switch = first + 20 * DAY + 10 * HOUR + 30 * 60000
    day = switch // DAY * DAY

    def run_from(at):
        """Starts the gateway with its clock at at (Unix ms)."""
        back = (int(time.time() * 1000) - at) // 1000
        gw.env = {"LD_PRELOAD": " ".join(p for p in (os.environ.get("LD_PRELOAD"), FAKETIME)
                                         if p),
                  "FAKETIME": "-%d" % back, "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                  "FAKETIME_DONT_RESET": "1"}
        if os.environ.get("LAZARET_SANITIZED"):
            gw.env["ASAN_OPTIONS"] = ":".join(o for o in (os.environ.get("ASAN_OPTIONS"),
                                                          "verify_asan_link_order=0") if o)
        gw.start()

    # locally: the month before, the 6th, and the morning of the switch
    for at, send, n in ((switch - 30 * DAY, lambda: send_clean(gw, "older"), 1),
                        (switch - 15 * DAY,
                         lambda: send_clean(gw, "sixth", ("bob@example.com", "carol@example.com")),
                         2),
                        (switch - 3 * HOUR, lambda: send_spam(gw), 1)):
        run_from(at)
        send()
        wait_for(lambda: incoming(gw.api) == n, 30, "the mail counted on the gateway")
        assert gw.stop() == 0
    assert incoming(mgr.api) == 0

    # the switch, with backfill; a message right after it, and one two days on
    gw.apply({"reporting": {"mode": "central", "backfill": "yes"}})
    run_from(switch)
    gw.wait_log("gw.backfill_done")
    send_clean(gw, "after")
    wait_for(lambda: report(mgr, "overview", period="prev_month")["totals"]["incoming"] == 4, 30,
             "the mail after the switch counted")
    assert gw.stop() == 0
    run_from(switch + 2 * DAY)
    send_clean(gw, "later", ("bob@example.com", "carol@example.com"))
    wait_for(lambda: report(mgr, "overview", period="prev_month")["totals"]["incoming"] == 6, 30,
             "the later mail counted")
    assert gw.stop() == 0

    want = {"sender.test": (5, 5, 0), "spam.test": (1, 0, 1)}
    year = dict(want, **{"sender.test": (6, 6, 0)})
    for g in ({"gateway": GW}, {}):
        whole = report(mgr, "incoming_domains", period="prev_month", limit=20, **g)
        assert keyed(whole) == want, (g, whole)
        assert by_day(mgr, "incoming_domains", first, nxt, **g) == want, g
        ov = report(mgr, "overview", period="prev_month", **g)["totals"]
        assert (ov["incoming"], ov["clean"], ov["spam"]) == (6, 5, 1), (g, ov)
        assert keyed(report(mgr, "incoming_domains", period="90d", limit=20, **g)) == year, g
        assert keyed(report(mgr, "incoming_domains", period="year", limit=20, **g)) == year, g
        assert report(mgr, "overview", period="year", **g)["totals"]["incoming"] == 7, g
        hours = custom(mgr, "overview", day, day + DAY, **g)["totals"]
        assert (hours["incoming"], hours["spam"]) == (2, 1), (g, hours)

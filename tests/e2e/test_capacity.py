"""The system_capacity report (CONTRACT "Events, tracking and reporting", docs/GATEWAY.md
"Events" `capacity`, docs/openapi.yaml GET /api/v1/reports/{report}): a real lazaret-gw
sends a capacity event every [reporting] capacity_interval (1s here); mail through it
shows in the manager's report as messages in and out, with samples, a load average and
memory, the CSV saying the same numbers. A malformed capacity event is refused with a
400 naming the field and stores nothing; a replayed one counts once. A local gateway
reports its own capacity; it has a PDF and can be scheduled; the daily retention removes
its old hours. Runs on the suite's backend (SQLite or PostgreSQL)."""

import csv
import io
import re
import time
import urllib.parse

from e2e_helpers import wait_for
from gw_fixtures import make_message
from gw_fixtures import start_gateway  # noqa: F401 (a fixture)
from test_events import error, push, register, tracking_gateway
from test_reports_pdf import pdf
from test_tracking_local import local_gateway

T0 = 1764892800000  # 2025-12-05T00:00:00Z
SAMPLE = {"received": 5, "relayed": 4, "connections": 3, "current": 2, "backlog": 7,
          "load": 0.75, "memory": 123456}


def capacity(api, fmt=None, **params):
    if fmt is not None:
        params["format"] = fmt
    st, hdrs, body = api.http("GET", "/api/v1/reports/system_capacity?%s"
                              % urllib.parse.urlencode(params))
    assert st == 200, (params, body)
    return body.decode("utf-8")


def report(api, **params):
    st, doc = api.api("GET", "/api/v1/reports/system_capacity?%s"
                      % urllib.parse.urlencode(params))
    assert st == 200, (params, doc)
    return doc


def csv_rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def test_a_gateway_reports_its_capacity(start_manager, start_gateway, aio_sink):  # noqa: F811
    mgr = start_manager()
    gw = tracking_gateway(start_gateway, mgr, register(mgr, "gw-cap"), aio_sink.host,
                          gateway={"name": "gw-cap"}, reporting={"capacity_interval": "1s"})
    for i in range(3):
        code, text = gw.send("alice@sender.test", ["bob@example.com"],
                             make_message(subject="Hello %d" % i))
        assert code == 250, text
    aio_sink.wait_count(3)

    def totals():
        return report(mgr, period="day", gateway="gw-cap")["totals"]
    wait_for(lambda: totals()["messages_in"] == 3 and totals()["messages_out"] == 3, 60,
             "the messages in the capacity samples")
    doc = report(mgr, period="day", gateway="gw-cap")
    assert doc["report"] == "system_capacity" and doc["granularity"] == "hour"
    assert len(doc["series"]) == 24
    t = doc["totals"]
    assert t["samples"] >= 1 and t["connections"] >= 3
    assert isinstance(t["load_avg"], (int, float)) and t["load_avg"] >= 0
    assert isinstance(t["load_max"], (int, float)) and t["load_max"] >= t["load_avg"]
    assert t["memory_max"] > 1000000  # a real process's resident memory, in bytes
    assert t["backlog_max"] >= 0
    busy = [s for s in doc["series"] if s["samples"]]
    assert busy and sum(s["messages_in"] for s in doc["series"]) == 3
    quiet = [s for s in doc["series"] if not s["samples"]]
    assert all(s["load_avg"] is None and s["messages_in"] == 0 for s in quiet)
    # a connection held open is seen by a sample
    conn = gw.smtp()
    try:
        wait_for(lambda: totals()["connections_peak"] >= 1, 30, "the open connection sampled")
    finally:
        conn.quit()
    # all gateways: the same (there is one)
    assert report(mgr, period="day")["totals"]["messages_in"] == 3
    # the CSV says the same numbers, hour by hour
    text = capacity(mgr, "csv", period="day", gateway="gw-cap")
    rows = csv_rows(text)
    assert text.startswith("at,samples,messages_in,messages_out,connections,")
    assert len(rows) == 24
    by_at = {s["at"]: s for s in doc["series"]}
    for r in rows:
        s = by_at[r["at"]]
        if int(r["samples"]) == s["samples"]:  # a sample may have come in between
            assert int(r["messages_in"]) == s["messages_in"]
            assert int(r["messages_out"]) == s["messages_out"]
            assert r["load_max"] == ("" if s["load_max"] is None else "%.2f" % s["load_max"])
    assert sum(int(r["messages_in"]) for r in rows) == 3
    assert sum(int(r["messages_out"]) for r in rows) == 3
    # by the day: the same totals
    week = report(mgr, period="week", gateway="gw-cap")
    assert week["granularity"] == "day" and week["totals"]["messages_in"] == 3
    # bad parameters are 400
    st, doc = mgr.api("GET", "/api/v1/reports/system_capacity?period=soon")
    assert st == 400


def test_a_malformed_capacity_event_is_refused_and_stores_nothing(manager, tmp_path):
    token = register(manager, "gw-bad")
    good = {"seq": 1, "at": T0 + 60000, "type": "capacity", "detail": dict(SAMPLE)}
    cases = [
        (dict(SAMPLE, received=-1), 'events[1]: "detail"."received" is missing or malformed'),
        ({k: v for k, v in SAMPLE.items() if k != "memory"},
         'events[1]: "detail"."memory" is missing or malformed'),
        (dict(SAMPLE, load="high"), 'events[1]: "detail"."load" is missing or malformed'),
        (dict(SAMPLE, load=-0.5), 'events[1]: "detail"."load" is missing or malformed'),
        (dict(SAMPLE, current=1.5), 'events[1]: "detail"."current" is missing or malformed'),
        (dict(SAMPLE, memory=10 ** 12 + 1), 'events[1]: "detail"."memory" is missing or malformed'),
        (dict(SAMPLE, load=1e7), 'events[1]: "detail"."load" is missing or malformed'),
    ]
    for detail, message in cases:
        bad = {"seq": 2, "at": T0 + 120000, "type": "capacity", "detail": detail}
        st, doc = push(manager, token, {"events": [good, bad]})
        assert (st, error(doc)) == (400, message), detail
    st, doc = push(manager, token, {"events": [dict(good, msg_id="m-1")]})
    assert (st, error(doc)) == (400, 'events[0]: a "capacity" event has no "msg_id"')
    st, doc = push(manager, token, {"events": [{"seq": 1, "at": T0, "type": "capacity"}]})
    assert (st, error(doc)) == (400, 'events[0]: "detail"."received" is missing or malformed')
    params = {"period": "custom", "since": "2025-12-05T00:00:00Z",
              "until": "2025-12-05T02:00:00Z"}
    doc = report(manager, **params)
    assert doc["totals"]["samples"] == 0 and doc["totals"]["messages_in"] == 0
    # the good one alone is taken, and pushed again counts once
    for stored in (1, 0):
        st, doc = push(manager, token, {"events": [good]})
        assert (st, doc) == (200, {"acked": 1, "stored": stored})
    doc = report(manager, **params)
    assert doc["series"][0] == {
        "at": "2025-12-05T00:00:00Z", "samples": 1, "messages_in": 5, "messages_out": 4,
        "connections": 3, "connections_avg": 2, "connections_peak": 2, "load_avg": 0.75,
        "load_max": 0.75, "memory_max": 123456, "backlog_max": 7}
    assert doc["series"][1]["samples"] == 0 and doc["series"][1]["load_avg"] is None
    assert capacity(manager, "csv", **params).splitlines()[1] == \
        "2025-12-05T00:00:00Z,1,5,4,3,2.00,2,0.75,0.75,123456,7"
    # the PDF: its title, the totals and the hour's row, the same numbers
    pages, _, headers = pdf(manager, "system_capacity", tmp_path, **params)
    assert headers["Content-Disposition"] == ('attachment; filename="lazaret-system_capacity-'
                                              'custom-all-20251205.pdf"'), headers
    text = "\n".join(pages)
    assert "System capacity" in text and "Load avg" in text, text[:500]
    lines = [re.sub(r"\s+", " ", ln).strip() for ln in text.splitlines()]
    assert "Total 1 5 4 3 2.00 2 0.75 0.75 0.1 7" in lines, lines
    assert "2025-12-05 00:00 1 5 4 3 2.00 2 0.75 0.75 0.1 7" in lines, lines
    assert "2025-12-05 01:00 0 0 0 0 - - - - - -" in lines, lines


def test_a_local_gateway_reports_its_own_capacity(start_gateway, aio_sink):  # noqa: F811
    gw = local_gateway(start_gateway, aio_sink.host, reporting={"capacity_interval": "1s"})
    code, text = gw.send("alice@sender.test", ["bob@example.com"], make_message(subject="Hi"))
    assert code == 250, text
    wait_for(lambda: report(gw, period="hour")["totals"]["messages_in"] == 1, 60,
             "the message in the gateway's own capacity report")
    t = report(gw, period="hour")["totals"]
    assert t["samples"] >= 1 and t["load_avg"] >= 0 and t["memory_max"] > 0


def test_system_capacity_can_be_scheduled(manager):
    body = {"report": "system_capacity", "period": "day", "every": "daily",
            "recipients": ["boss@example.com"]}
    for fmt in ("pdf", "csv"):
        st, s = manager.api("POST", "/api/v1/report-schedules", dict(body, format=fmt))
        assert st == 201 and (s["report"], s["format"]) == ("system_capacity", fmt), s


def test_the_daily_retention_removes_old_capacity_hours(start_manager):
    mgr = start_manager(reporting__daily_retention="2d", tracking__retention="0",
                        purge_interval="1s")
    token = register(mgr, "gw-old")
    now = int(time.time() * 1000)
    st, doc = push(mgr, token, {"events": [
        {"seq": 1, "at": T0 + 60000, "type": "capacity", "detail": dict(SAMPLE)},
        {"seq": 2, "at": now - 60000, "type": "capacity", "detail": dict(SAMPLE, received=9)}]})
    assert (st, doc) == (200, {"acked": 2, "stored": 2})
    old = {"period": "custom", "since": "2025-12-05T00:00:00Z", "until": "2025-12-06T00:00:00Z"}
    wait_for(lambda: report(mgr, **old)["totals"]["samples"] == 0, 30,
             "the old hour removed")
    assert report(mgr, period="day")["totals"]["messages_in"] == 9
    assert mgr.metrics()["lazaret_reporting_purged_total"] >= 1

"""Reports from the gateways' events (CONTRACT "Events, tracking and reporting",
docs/openapi.yaml GET /api/v1/reports/{report}): mail with known numbers through
two real lazaret-gw gateways pushing their events to a real lazaretd, with a real
clamd — clean mail to several recipients and domains, spam (GTUBE, by the
gateway's spam check), a virus, a message that is spam and a virus (counted as
spam), a message a content filter drops — and every report shows exactly those
numbers per gateway and in total, as JSON and CSV. A batch pushed twice counts
once, a late batch lands in its own hours, mail that passed while the manager was
down is counted exactly once it is back, and bad parameters get 400s. Runs on
the suite's backend (SQLite or PostgreSQL)."""

import base64
import csv
import io
import smtplib
import time
import urllib.parse

import pytest

from e2e_helpers import wait_for
from engine_fixtures import EICAR, EICAR_SIG, clamd  # noqa: F401 (a fixture)
from gw_fixtures import GTUBE, make_message
from gw_fixtures import start_gateway  # noqa: F401 (a fixture)
from test_attachments import login
from test_events import (GW, connection_events, error, push, register, registry_entry,
                         tracking_gateway)
from test_tracking_local import local_gateway

FILTERS = 'no_invoice: if subject == "^Invoice" { drop; }\n'


def report(mgr, name, **params):
    st, doc = mgr.api("GET", "/api/v1/reports/%s?%s" % (name, urllib.parse.urlencode(params)))
    assert st == 200, (name, params, doc)
    return doc


def rows(mgr, name, **params):
    """{key: {counter: n}} of a top-N report, the counters that are not 0."""
    doc = report(mgr, name, **params)
    return {r["key"]: {k: v for k, v in r.items() if k != "key" and v}
            for r in doc["rows"]}


def virus_mail(subject, body="see attachment"):
    return make_message(
        subject=subject,
        extra_headers="MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n",
        body="--b\r\nContent-Type: text/plain\r\n\r\n%s\r\n"
             "--b\r\nContent-Type: application/octet-stream\r\n"
             "Content-Transfer-Encoding: base64\r\n"
             "Content-Disposition: attachment; filename=eicar.com\r\n\r\n"
             "%s\r\n--b--\r\n" % (body, base64.b64encode(EICAR).decode()))


@pytest.fixture
def traffic(start_manager, start_gateway, aio_sink, clamd):  # noqa: F811
    mgr = start_manager()
    gws = {}
    for name, addr in (("gw-a", "127.0.0.1"), ("gw-b", "127.0.0.3")):
        gw = tracking_gateway(start_gateway, mgr, register(mgr, name, addr), aio_sink.host,
                              start=False, gateway={"name": name},
                              antispam={"positive_action": "tag"},
                              antivirus={"engine": "clamd", "clamd": clamd.addr})
        gw.apply({"filters": {"file": gw.write_file("gw.filters", FILTERS)}})
        gw.start()
        gws[name] = gw
    a, b = gws["gw-a"], gws["gw-b"]
    sent = [
        (a, "alice@sender.test", ["bob@example.com", "carol@example.com"],
         make_message(subject="Clean one")),
        (a, "alice@sender.test", ["dave@sub.example.org"], make_message(subject="Clean two")),
        (a, "spammer@spam.test", ["bob@example.com", "erin@example.com"],
         make_message(subject="Win", body="Buy now.\r\n%s\r\n" % GTUBE)),
        (a, "alice@sender.test", ["bob@example.com"], virus_mail("Virus")),
        (a, "alice@sender.test", ["bob@example.com"], virus_mail("Both", "Buy\r\n%s" % GTUBE)),
        (a, "billing@invoices.test", ["carol@example.com"], make_message(subject="Invoice 42")),
        (b, "alice@sender.test", ["bob@example.com"], make_message(subject="Clean three")),
        (b, "spammer@spam.test", ["frank@example.com"],
         make_message(subject="Win", body="Buy now.\r\n%s\r\n" % GTUBE)),
    ]
    for gw, sender, rcpts, msg in sent:
        code, text = gw.send(sender, rcpts, msg)
        assert code == 250, (sender, rcpts, text)

    def total():
        return report(mgr, "overview", period="day")["totals"]["incoming"]
    wait_for(lambda: total() == 10, 60, "every message counted")
    return mgr


def test_every_report_counts_the_traffic_per_gateway_and_in_total(traffic):
    mgr = traffic
    zero = {"incoming": 0, "clean": 0, "spam": 0, "suspect": 0, "virus": 0,
            "content_filter": 0, "rejected_connections": 0}
    want = {
        "gw-a": dict(zero, incoming=8, clean=3, spam=3, virus=1, content_filter=1),
        "gw-b": dict(zero, incoming=2, clean=1, spam=1),
        None: dict(zero, incoming=10, clean=4, spam=4, virus=1, content_filter=1),
    }
    for period in ("hour", "day", "week", "30d", "90d", "year"):
        for gw, totals in want.items():
            params = {"period": period}
            if gw:
                params["gateway"] = gw
            doc = report(mgr, "overview", **params)
            assert doc["totals"] == totals, (period, gw, doc["totals"])
            assert doc["gateway"] == gw and doc["period"] == period
            # the series adds up to the totals, one entry per bucket
            for k in ("incoming", "clean", "spam", "virus"):
                assert sum(s[k] for s in doc["series"]) == totals[k], (period, k)
    doc = report(mgr, "overview", period="day")
    assert doc["granularity"] == "hour" and len(doc["series"]) == 24
    assert report(mgr, "overview", period="week")["granularity"] == "day"
    assert len(report(mgr, "overview", period="week")["series"]) == 7
    assert len(report(mgr, "overview", period="year")["series"]) == 12
    # nothing yesterday
    assert report(mgr, "overview", period="prev_day")["totals"] == zero

    assert rows(mgr, "incoming_domains", period="day") == {
        "sender.test": {"incoming": 6, "clean": 4, "spam": 1, "virus": 1},
        "spam.test": {"incoming": 3, "spam": 3},
        "invoices.test": {"incoming": 1, "content_filter": 1},
    }
    assert rows(mgr, "incoming_domains", period="day", gateway="gw-b") == {
        "sender.test": {"incoming": 1, "clean": 1},
        "spam.test": {"incoming": 1, "spam": 1},
    }
    # the most incoming first, at most limit rows
    doc = report(mgr, "incoming_domains", period="day", limit=1)
    assert [r["key"] for r in doc["rows"]] == ["sender.test"]
    assert rows(mgr, "incoming_ips", period="day", gateway="gw-a") == {
        "127.0.0.1": {"incoming": 8, "clean": 3, "spam": 3, "virus": 1, "content_filter": 1}}
    assert rows(mgr, "internal_users", period="day") == {
        "bob@example.com": {"incoming": 5, "clean": 2, "spam": 2, "virus": 1},
        "carol@example.com": {"incoming": 2, "clean": 1, "content_filter": 1},
        "erin@example.com": {"incoming": 1, "spam": 1},
        "frank@example.com": {"incoming": 1, "spam": 1},
        "dave@sub.example.org": {"incoming": 1, "clean": 1},
    }
    assert rows(mgr, "outgoing_destinations", period="day") == {
        "example.com": {"incoming": 9, "clean": 3, "spam": 4, "virus": 1, "content_filter": 1},
        "sub.example.org": {"incoming": 1, "clean": 1},
    }
    assert rows(mgr, "outgoing_senders", period="day", gateway="gw-a") == {
        "alice@sender.test": {"incoming": 5, "clean": 3, "spam": 1, "virus": 1},
        "spammer@spam.test": {"incoming": 2, "spam": 2},
        "billing@invoices.test": {"incoming": 1, "content_filter": 1},
    }
    # both messages with the virus, the one that is also spam counted as spam
    vt = rows(mgr, "virus_types", period="day")
    assert len(vt) == 1, vt
    ((name, counts),) = vt.items()
    assert name.startswith(EICAR_SIG) and counts == {"incoming": 2, "spam": 1, "virus": 1}
    assert rows(mgr, "content_filters", period="day") == {
        "no_invoice": {"incoming": 1, "content_filter": 1}}
    assert rows(mgr, "content_filters", period="day", gateway="gw-b") == {}
    # one session per message: its connection, without STARTTLS
    assert rows(mgr, "tls", period="day") == {"none": {"count": 8}}
    assert rows(mgr, "tls", period="day", gateway="gw-b") == {"none": {"count": 2}}
    groups = report(mgr, "sender_groups", period="day")["rows"]
    assert sum(r["count"] for r in groups) == 8, groups
    assert report(mgr, "rate_limits", period="day")["rows"] == []
    assert report(mgr, "outbreak", period="day")["rows"] == []

    # CSV: the same rows
    st, headers, body = mgr.http("GET", "/api/v1/reports/incoming_domains?period=day&format=csv")
    assert st == 200 and headers["Content-Type"].startswith("text/csv"), headers
    lines = list(csv.reader(io.StringIO(body.decode("utf-8"))))
    assert lines[0] == ["key", "incoming", "clean", "spam", "suspect", "virus",
                        "content_filter", "count"]
    assert lines[1] == ["sender.test", "6", "4", "1", "0", "1", "0", "0"]
    assert sorted(r[0] for r in lines[1:]) == ["invoices.test", "sender.test", "spam.test"]
    st, _, body = mgr.http("GET", "/api/v1/reports/overview?period=week&format=csv&gateway=gw-b")
    lines = list(csv.reader(io.StringIO(body.decode("utf-8"))))
    assert lines[0][:5] == ["at", "incoming", "clean", "spam", "suspect"]
    assert len(lines) == 8 and sum(int(r[1]) for r in lines[1:]) == 2


T0 = 1764892800000  # 2025-12-05T00:00:00Z


def ev(seq, at, type_, msg_id=None, **detail):
    e = {"seq": seq, "at": at, "type": type_, "detail": detail}
    if msg_id is not None:
        e["msg_id"] = msg_id
    return e


def message(seq, at, msg_id, sender, rcpts, level):
    return [ev(seq, at, "received", msg_id, sender=sender, recipients=rcpts,
               client_ip="192.0.2.1", subject="s"),
            ev(seq + 1, at + 1, "verdict", msg_id, level=level, score=1.0),
            ev(seq + 2, at + 2, "reply", msg_id, reply="250 2.0.0 Ok: %s" % msg_id)]


def test_a_replayed_or_late_batch_counts_once_in_its_own_hours(manager):
    token = register(manager, "gw-r")
    batch = (message(1, T0 + 3600000, "m-1", "a@x.test", ["u1@example.com", "u2@example.com"],
                     "spam")
             + message(4, T0 + 3600500, "m-2", "b@y.test", ["u1@example.com"], "suspect")
             + [ev(7, T0 + 3600600, "connection", client_ip="192.0.2.9",
                   hat_decision="reject", reason="hat", hat_policy="BLOCKED", reply="554")])
    for stored in (7, 0, 0):  # the answer was lost: pushed again, twice
        st, doc = push(manager, token, {"events": batch})
        assert (st, doc) == (200, {"acked": 7, "stored": stored})
    # a message whose reply comes in a later batch counts once it is there
    st, doc = push(manager, token, {"events": message(8, T0 + 7300000, "m-3", "c@z.test",
                                                     ["u3@example.com"], "clean")[:2]})
    assert (st, doc) == (200, {"acked": 9, "stored": 2})
    params = {"period": "custom", "since": "2025-12-05T00:00:00Z",
              "until": "2025-12-05T12:00:00Z"}
    doc = report(manager, "overview", **params)
    assert doc["granularity"] == "hour" and len(doc["series"]) == 12
    assert doc["totals"] == {"incoming": 3, "clean": 0, "spam": 2, "suspect": 1, "virus": 0,
                             "content_filter": 0, "rejected_connections": 1}
    st, doc2 = push(manager, token, {"events": message(8, T0 + 7300000, "m-3", "c@z.test",
                                                      ["u3@example.com"], "clean")})
    assert (st, doc2) == (200, {"acked": 10, "stored": 1})
    doc = report(manager, "overview", **params)
    assert doc["totals"]["incoming"] == 4 and doc["totals"]["clean"] == 1
    # each in the hour it happened (late, not now)
    by_hour = {s["at"]: s["incoming"] for s in doc["series"] if s["incoming"]}
    assert by_hour == {"2025-12-05T01:00:00Z": 3, "2025-12-05T02:00:00Z": 1}
    # a day's range by the day, a long one by the month
    doc = report(manager, "overview", period="custom", since="2025-11-01T00:00:00Z",
                 until="2025-12-31T00:00:00Z")
    assert doc["granularity"] == "day" and doc["totals"]["incoming"] == 4
    doc = report(manager, "overview", period="custom", since="2024-01-01T00:00:00Z",
                 until="2026-01-01T00:00:00Z")
    assert doc["granularity"] == "month" and doc["totals"]["incoming"] == 4
    assert [s["incoming"] for s in doc["series"] if s["incoming"]] == [4]
    assert rows(manager, "internal_users", **params) == {
        "u1@example.com": {"incoming": 2, "spam": 1, "suspect": 1},
        "u2@example.com": {"incoming": 1, "spam": 1},
        "u3@example.com": {"incoming": 1, "clean": 1}}
    assert rows(manager, "sender_groups", **params) == {"BLOCKED": {"count": 1}}


def test_a_top_n_over_months_and_days_is_the_sum_of_the_gateways(manager):
    """A top-N by the day reads whole months from their monthly rows and the days at
    either end from the daily ones; over all gateways it reads the all-gateway rows:
    the same numbers as the messages and as the gateways' rows summed, late ones too."""
    day = 86400000
    oct31, nov1, dec1 = T0 - 35 * day, T0 - 34 * day, T0 - 4 * day  # month edges
    times = [oct31 + 43200000, nov1 - 1, nov1, nov1 + 9 * day, dec1 - 1, dec1, T0 + 3600000]
    want = {}  # (gateway, domain): incoming
    for g, gw in enumerate(("gw-m1", "gw-m2")):
        token = register(manager, gw, "127.0.0.%d" % (g + 1))
        # the newer messages first, the older ones late, in a second batch
        order = [i for i in range(len(times)) if i % 2] + [i for i in range(len(times))
                                                             if i % 2 == 0]
        batches = [[], []]
        for n, i in enumerate(order):
            at = times[i]
            dom = "d%d.test" % ((i + g) % 3)
            rcpts = ["u%d@example.com" % k for k in range(1 + (i + g) % 2)]
            batches[i % 2 == 0].extend(message(1 + 3 * n, at, "%s-%d" % (gw, i), "s@" + dom,
                                                  rcpts, "clean"))
            want[(gw, dom, at)] = len(rcpts)
        for evs in batches:
            st, doc = push(manager, token, {"events": evs})
            assert st == 200 and doc["stored"] == len(evs), doc

    def expect(since, until, gw=None):
        out = {}
        for (g, dom, at), n in want.items():
            if since <= at // day * day < until and gw in (None, g):
                out[dom] = out.get(dom, 0) + n
        return out

    iso = lambda ms: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms // 1000))  # noqa
    for since, until in ((oct31, T0 + day), (nov1, dec1), (oct31 - 2 * day, nov1),
                         (nov1 + day, dec1), (oct31, dec1 + 1000)):
        params = {"period": "custom", "since": iso(since), "until": iso(until)}
        doc = report(manager, "incoming_domains", **params)
        assert doc["granularity"] == "day", doc
        total = {r["key"]: r["incoming"] for r in doc["rows"]}
        end = (until + day - 1) // day * day
        assert total == expect(since, end), (params, total)
        summed = {}
        for gw in ("gw-m1", "gw-m2"):
            for k, v in rows(manager, "incoming_domains", gateway=gw, **params).items():
                summed[k] = summed.get(k, 0) + v["incoming"]
            assert {k: v["incoming"] for k, v in
                    rows(manager, "incoming_domains", gateway=gw, **params).items()} == \
                expect(since, end, gw)
        assert summed == total, (params, summed, total)
        # ranked by incoming, then key
        order = [(-r["incoming"], r["key"]) for r in doc["rows"]]
        assert order == sorted(order)
        top = report(manager, "incoming_domains", limit=1, **params)["rows"]
        assert top == doc["rows"][:1]


BAD = [
    ("nope?period=day", "no such report: the reports are overview, incoming_domains, "
     "incoming_ips, sender_groups, outgoing_destinations, outgoing_senders, internal_users, "
     "content_filters, virus_types, outbreak, tls, rate_limits, system_capacity"),
    ("overview?period=fortnight", '"period" must be one of hour, day, week, 30d, 90d, '
     "prev_day, prev_month, year, custom"),
    ("overview?period=custom&since=2025-12-05T00:00:00Z", 'period=custom needs "until"'),
    ("overview?period=custom&since=yesterday&until=2025-12-05T00:00:00Z",
     '"since" must be an RFC 3339 date-time (e.g. 2026-11-27T19:30:00Z)'),
    ("overview?period=custom&since=2025-12-05T00:00:00Z&until=2025-12-04T00:00:00Z",
     '"until" must be after "since"'),
    ("overview?period=custom&since=2000-01-01T00:00:00Z&until=2025-12-04T00:00:00Z",
     "a custom range must be at most 3660 days"),
    ("overview?period=day&since=2025-12-05T00:00:00Z",
     '"since" and "until" go with period=custom only'),
    ("incoming_ips?period=day&limit=0", '"limit" must be a number from 1 to 1000'),
    ("incoming_ips?period=day&limit=1001", '"limit" must be a number from 1 to 1000'),
    ("overview?gateway=bad%20name", '"gateway" is not a gateway name'),
    ("overview?format=xlsx", '"format" must be json, csv or pdf'),
    ("overview?period=day&period=week", 'query parameter "period" given more than once'),
]


def test_bad_parameters_are_400_and_reports_are_for_admins(manager):
    for query, message in BAD:
        st, doc = manager.api("GET", "/api/v1/reports/" + query)
        assert (st, error(doc)) == (400, message), query
    st, _ = manager.api("GET", "/api/v1/reports/overview", token=None)
    assert st == 401
    for name, role in (("eve", "enduser"), ("opal", "operator")):
        c = login(manager, name, "%s-password-1" % name, role,
                  ["bob@example.com"] if role == "enduser" else ())
        st, doc = c.call("GET", "/api/v1/reports/overview?period=day")
        assert (st, error(doc)) == (403, "not allowed for role of %s" % name)
    # no period: the last day
    doc = report(manager, "overview")
    assert doc["period"] == "day" and doc["totals"]["incoming"] == 0


def test_retention_removes_old_hours_and_keeps_their_days(start_manager):
    # hours kept a day, days kept: the hours of 2025-12-05 go, the day stays
    mgr = start_manager(reporting__hourly_retention="1d", reporting__daily_retention="0",
                        tracking__retention="0", purge_interval="1s")
    token = register(mgr, "gw-r")
    st, doc = push(mgr, token, {"events": message(1, T0 + 3600000, "m-1", "a@x.test",
                                                   ["u1@example.com"], "clean")})
    assert (st, doc) == (200, {"acked": 3, "stored": 3})
    hours = {"period": "custom", "since": "2025-12-05T00:00:00Z",
             "until": "2025-12-05T12:00:00Z"}
    days = {"period": "custom", "since": "2025-12-01T00:00:00Z",
            "until": "2025-12-31T00:00:00Z"}
    wait_for(lambda: report(mgr, "overview", **hours)["totals"]["incoming"] == 0, 30,
             "the old hours removed")
    assert report(mgr, "overview", **days)["totals"]["incoming"] == 1
    assert rows(mgr, "internal_users", **days) == {"u1@example.com": {"incoming": 1, "clean": 1}}
    assert mgr.metrics()["lazaret_reporting_purged_total"] > 0


def test_a_local_gateway_reports_its_own_traffic(start_gateway, aio_sink):  # noqa: F811
    gw = local_gateway(start_gateway, aio_sink.host, antispam={"positive_action": "tag"})
    code, text = gw.send("alice@sender.test", ["bob@example.com", "carol@example.com"],
                         make_message(subject="Clean"))
    assert code == 250, text
    code, text = gw.send("spammer@spam.test", "bob@example.com",
                         make_message(subject="Win", body="Buy now.\r\n%s\r\n" % GTUBE))
    assert code == 250, text

    def totals():
        st, doc = gw.api("GET", "/api/v1/reports/overview?period=day")
        assert st == 200, doc
        return doc["totals"]
    wait_for(lambda: totals()["incoming"] == 3, 30, "both messages counted on the gateway")
    assert totals() == {"incoming": 3, "clean": 2, "spam": 1, "suspect": 0, "virus": 0,
                        "content_filter": 0, "rejected_connections": 0}
    st, doc = gw.api("GET", "/api/v1/reports/incoming_domains?period=hour")
    assert st == 200 and {r["key"]: r["incoming"] for r in doc["rows"]} == {
        "sender.test": 2, "spam.test": 1}, doc
    st, doc = gw.api("GET", "/api/v1/reports/overview?period=soon")
    assert st == 400, doc
    st, _ = gw.api("GET", "/api/v1/reports/overview", token="not-the-token")
    assert st == 401


def test_a_central_gateway_says_reporting_is_central(start_manager, start_gateway,  # noqa: F811
                                                      aio_sink):
    mgr = start_manager()
    gw = tracking_gateway(start_gateway, mgr, register(mgr, "gw-c"), aio_sink.host)
    st, doc = gw.api("GET", "/api/v1/reports/overview")
    assert st == 409 and "reporting is central" in doc["error"]["message"], doc


def test_connections_refused_by_hat_are_rejected_connections(start_manager, start_gateway,
                                                             aio_sink):  # noqa: F811
    mgr = start_manager()
    gw = tracking_gateway(start_gateway, mgr, register(mgr), aio_sink.host,
                          hat={"policy.bad": "reject: 127.0.0.0/8"},
                          tracking={"mode": "central", "rejected_connections": "yes"})
    for _ in range(3):
        with pytest.raises(smtplib.SMTPConnectError):
            gw.smtp()
    # ours and the readiness probe's, as many as the gateway reported
    wait_for(lambda: len(connection_events(mgr)) >= 4, 30, "the rejects' events")
    n = len(connection_events(mgr))
    wait_for(lambda: report(mgr, "overview", period="day")["totals"]["rejected_connections"]
             == n, 30, "the rejects counted")
    doc = report(mgr, "overview", period="hour", gateway=GW)
    assert doc["totals"]["rejected_connections"] == n and doc["totals"]["incoming"] == 0
    assert rows(mgr, "sender_groups", period="day") == {"bad": {"count": n}}
    assert rows(mgr, "tls", period="day") == {}


def test_the_manager_down_loses_no_count(start_manager, start_gateway, aio_sink):  # noqa: F811
    """Mail through a central gateway while the manager is down: its events wait in
    the gateway's spool, and once the manager is back every report counts them
    exactly, with what came before."""
    mgr = start_manager()
    gw = tracking_gateway(start_gateway, mgr, register(mgr), aio_sink.host, start=False,
                          antispam={"positive_action": "tag"})
    gw.apply({"filters": {"file": gw.write_file("gw.filters", FILTERS)}})
    gw.start()
    code, text = gw.send("alice@sender.test", ["bob@example.com"], make_message(subject="Up"))
    assert code == 250, text
    wait_for(lambda: report(mgr, "overview", period="day")["totals"]["incoming"] == 1, 60,
             "the first message counted")
    mgr.stop()
    sent = [
        ("alice@sender.test", ["bob@example.com", "carol@example.com"],
         make_message(subject="Clean one")),
        ("alice@sender.test", ["dave@sub.example.org"], make_message(subject="Clean two")),
        ("spammer@spam.test", ["bob@example.com", "erin@example.com"],
         make_message(subject="Win", body="Buy now.\r\n%s\r\n" % GTUBE)),
        ("billing@invoices.test", ["carol@example.com"], make_message(subject="Invoice 42")),
    ]
    for sender, rcpts, msg in sent:
        code, text = gw.send(sender, rcpts, msg)
        assert code == 250, (sender, rcpts, text)  # mail flows while the manager is down
    gw.wait_log("events.push_failed", timeout=20)
    mgr.start()
    wait_for(lambda: report(mgr, "overview", period="day")["totals"]["incoming"] == 7, 90,
             "the spooled messages counted")
    gw.wait_log("events.push_resumed", timeout=20)
    totals = {"incoming": 7, "clean": 4, "spam": 2, "suspect": 0, "virus": 0,
              "content_filter": 1, "rejected_connections": 0}
    for period in ("hour", "day", "week", "30d", "90d", "year"):
        for gw_name in (None, GW):
            params = {"period": period}
            if gw_name:
                params["gateway"] = gw_name
            assert report(mgr, "overview", **params)["totals"] == totals, (period, gw_name)
    assert rows(mgr, "incoming_domains", period="week") == {
        "sender.test": {"incoming": 4, "clean": 4},
        "spam.test": {"incoming": 2, "spam": 2},
        "invoices.test": {"incoming": 1, "content_filter": 1},
    }
    assert rows(mgr, "incoming_ips", period="week", gateway=GW) == {
        "127.0.0.1": {"incoming": 7, "clean": 4, "spam": 2, "content_filter": 1}}
    assert rows(mgr, "internal_users", period="week") == {
        "bob@example.com": {"incoming": 3, "clean": 2, "spam": 1},
        "carol@example.com": {"incoming": 2, "clean": 1, "content_filter": 1},
        "dave@sub.example.org": {"incoming": 1, "clean": 1},
        "erin@example.com": {"incoming": 1, "spam": 1},
    }
    assert rows(mgr, "outgoing_senders", period="week") == {
        "alice@sender.test": {"incoming": 4, "clean": 4},
        "spammer@spam.test": {"incoming": 2, "spam": 2},
        "billing@invoices.test": {"incoming": 1, "content_filter": 1},
    }
    assert rows(mgr, "outgoing_destinations", period="week") == {
        "example.com": {"incoming": 6, "clean": 3, "spam": 2, "content_filter": 1},
        "sub.example.org": {"incoming": 1, "clean": 1},
    }
    assert rows(mgr, "content_filters", period="week") == {
        "no_invoice": {"incoming": 1, "content_filter": 1}}
    assert rows(mgr, "tls", period="week") == {"none": {"count": 5}}
    assert sum(r["count"] for r in report(mgr, "sender_groups", period="week")["rows"]) == 5
    for name in ("virus_types", "outbreak", "rate_limits"):
        assert report(mgr, name, period="week")["rows"] == [], name
    # nothing counted twice: pushed again after the restart, the backlog adds nothing
    wait_for(lambda: registry_entry(mgr)["event_backlog"] == 0, 30, "backlog 0 reported")
    assert report(mgr, "overview", period="day")["totals"] == totals

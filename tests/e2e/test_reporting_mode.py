"""Where a gateway's reports are kept ([reporting] mode, docs/GATEWAY.md
"Reporting", REQUIREMENTS RP3/RP4): a real lazaret-gw with local reporting counts
its mail in its own rollups and serves GET /api/v1/reports/{report} on its [http]
listener, and the manager counts none of it; with central reporting its events go
to a real lazaretd, which counts them, while [tracking] mode = local keeps the
tracking on the gateway too, and the gateway's report API answers 409 "reporting
is central" without deleting its own rollups; a restart back to local shows them
again with what came in meanwhile; no message is counted twice on either side;
the hello's centralized.reporting says the mode. The manager runs on the suite's
backend (SQLite or PostgreSQL); the gateway's store is SQLite."""

import time

from e2e_helpers import wait_for
from gw_fixtures import GTUBE, make_message
from gw_fixtures import start_gateway  # noqa: F401 (a fixture)
from test_events import events, gw_metrics, queue_id, register, registry_entry
from test_tracking_local import local_gateway, local_rows, tracked_ids


def overview(api):
    """(status, totals or the error document) of the day's overview."""
    st, doc = api("GET", "/api/v1/reports/overview?period=day")
    return st, (doc["totals"] if st == 200 else doc)


def incoming(api):
    st, doc = overview(api)
    assert st == 200, doc
    return doc["incoming"]


def centralized(mgr):
    return registry_entry(mgr).get("centralized")


def send_clean(gw, subject, rcpts=("bob@example.com",)):
    code, text = gw.send("alice@sender.test", list(rcpts), make_message(subject=subject))
    assert code == 250, text
    return queue_id(text)


def send_spam(gw):
    code, text = gw.send("spammer@spam.test", "bob@example.com",
                         make_message(subject="Win", body="Buy now.\r\n%s\r\n" % GTUBE))
    assert code == 250, text
    return queue_id(text)


def gateway_rollup_incoming(gw):
    """The gateway's own day rollup of the overview, read from its store."""
    (r,) = local_rows(gw, "SELECT coalesce(sum(incoming), 0) FROM report_rollups"
                          " WHERE report = 'overview' AND gran = 1")
    return r[0]


def reporting_gateway(start_gateway, aio_sink, mgr, token, mode, **sections):  # noqa: F811
    sections.setdefault("antispam", {"positive_action": "tag"})
    return local_gateway(start_gateway, aio_sink.host, mgr, token,
                         reporting={"mode": mode}, **sections)


def test_local_reporting_counts_on_the_gateway_only(start_manager, start_gateway,  # noqa: F811
                                                    aio_sink):
    mgr = start_manager()
    gw = reporting_gateway(start_gateway, aio_sink, mgr, register(mgr), "local")
    send_clean(gw, "Clean", ("bob@example.com", "carol@example.com"))
    send_spam(gw)
    wait_for(lambda: incoming(gw.api) == 3, 30, "both messages counted on the gateway")
    st, totals = overview(gw.api)
    assert (totals["clean"], totals["spam"]) == (2, 1), totals
    wait_for(lambda: registry_entry(mgr)["last_seen"] is not None, 15, "the hello")
    assert centralized(mgr) == {"pvo": False, "reporting": False, "tracking": False}
    # nothing reached the manager, so it counts nothing
    assert events(mgr) == []
    assert incoming(mgr.api) == 0


def test_central_reporting_counts_on_the_manager(start_manager, start_gateway,  # noqa: F811
                                                 aio_sink):
    mgr = start_manager()
    gw = reporting_gateway(start_gateway, aio_sink, mgr, register(mgr), "central")
    clean = send_clean(gw, "Clean", ("bob@example.com", "carol@example.com"))
    spam = send_spam(gw)
    wait_for(lambda: incoming(mgr.api) == 3, 30, "both messages counted on the manager")
    st, totals = overview(mgr.api)
    assert (totals["clean"], totals["spam"]) == (2, 1), totals
    # the gateway's report API says where its reports are; admins only
    st, doc = gw.api("GET", "/api/v1/reports/overview?period=day")
    assert st == 409, doc
    assert "reporting is central" in doc["error"]["message"], doc
    st, _ = gw.api("GET", "/api/v1/reports/overview", token="not-the-token")
    assert st == 401
    # [tracking] mode = local still tracks on the gateway
    wait_for(lambda: tracked_ids(gw) == {clean, spam}, 30, "tracked on the gateway")
    # the gateway's own rollups are kept (hidden), counted once
    assert gateway_rollup_incoming(gw) == 3
    wait_for(lambda: centralized(mgr) == {"pvo": False, "reporting": True, "tracking": False},
             15, "the hello says reporting is central")
    # each event reached the manager once
    ev = events(mgr)
    assert len({e[0] for e in ev}) == len(ev)
    assert [e[1] for e in ev if e[2] == clean] == ["received", "verdict", "delivery", "reply"]


def test_central_reporting_without_tracking(start_manager, start_gateway,  # noqa: F811
                                            aio_sink):
    mgr = start_manager()
    gw = reporting_gateway(start_gateway, aio_sink, mgr, register(mgr), "central",
                           tracking={"mode": "off"})
    send_clean(gw, "Clean")
    wait_for(lambda: incoming(mgr.api) == 1, 30, "counted on the manager")
    st, doc = gw.api("GET", "/api/v1/reports/overview?period=day")
    assert st == 409 and "reporting is central" in doc["error"]["message"], doc
    st, doc = gw.api("GET", "/api/v1/tracking/messages")
    assert st == 404, doc


def test_switching_hides_and_shows_the_gateways_reports(start_manager,  # noqa: F811
                                                        start_gateway, aio_sink):
    mgr = start_manager()
    gw = reporting_gateway(start_gateway, aio_sink, mgr, register(mgr), "local")
    send_clean(gw, "one")
    wait_for(lambda: incoming(gw.api) == 1, 30, "m1 counted on the gateway")
    # SIGHUP says the mode waits for a restart, and changes nothing yet
    gw.reload(reporting={"mode": "central"})
    gw.wait_log("[reporting] and [events] change on restart only")
    assert incoming(gw.api) == 1
    assert gw.stop() == 0

    # local -> central: the manager counts from now on; earlier data is not sent
    gw.start()
    gw.wait_log("events.mode_switched from=local to=local+central backlog=0")
    send_clean(gw, "two", ("bob@example.com", "carol@example.com"))
    wait_for(lambda: incoming(mgr.api) == 2, 30, "m2 counted on the manager")
    st, doc = gw.api("GET", "/api/v1/reports/overview?period=day")
    assert st == 409, doc
    wait_for(lambda: centralized(mgr)["reporting"] is True, 15, "the hello: central")
    assert gw.stop() == 0
    # the gateway kept counting in its own (hidden) rollups
    assert gateway_rollup_incoming(gw) == 3

    # central -> local: the gateway shows what it has, m1 and m2 alike
    gw.apply({"reporting": {"mode": "local"}})
    gw.start()
    gw.wait_log("events.mode_switched from=local+central to=local backlog=0")
    assert incoming(gw.api) == 3
    send_clean(gw, "three")
    wait_for(lambda: incoming(gw.api) == 4, 30, "m3 counted on the gateway")
    wait_for(lambda: centralized(mgr)["reporting"] is False, 15, "the hello: local")
    # m3 never reaches the manager; nothing there counts twice
    time.sleep(1)
    assert incoming(mgr.api) == 2
    ev = events(mgr)
    assert len({e[0] for e in ev}) == len(ev)


def test_manager_down_tracking_stays_current_and_counts_once(start_manager,  # noqa: F811
                                                             start_gateway, aio_sink):
    """Tracking local, reporting central: while the manager is away the gateway
    tracks (and rolls up) at once and the spool keeps the batch for the manager;
    the batch committed again on every retry counts once on either side."""
    mgr = start_manager()
    gw = reporting_gateway(start_gateway, aio_sink, mgr, register(mgr), "central")
    mgr.stop()
    m1 = send_clean(gw, "while away", ("bob@example.com", "carol@example.com"))
    wait_for(lambda: tracked_ids(gw) == {m1}, 30, "m1 tracked on the gateway")
    assert gw_metrics(gw)["lazaret_gw_events_backlog"] > 0
    wait_for(lambda: gw_metrics(gw)["lazaret_gw_events_push_failures_total"] >= 2, 30,
             "the push retried")
    assert gateway_rollup_incoming(gw) == 2
    gw.wait_log("events.push_failed url=%s" % mgr.http_url)
    assert "events.apply_failed" not in gw.log_text()
    mgr.start()
    wait_for(lambda: gw_metrics(gw)["lazaret_gw_events_backlog"] == 0, 90,
             "the spool emptied to the manager")
    assert incoming(mgr.api) == 2
    assert gateway_rollup_incoming(gw) == 2
    ev = events(mgr)
    assert [e[1] for e in ev if e[2] == m1] == ["received", "verdict", "delivery", "reply"]
    assert len({e[0] for e in ev}) == len(ev)
    gw.wait_log("events.push_resumed url=%s" % mgr.http_url)

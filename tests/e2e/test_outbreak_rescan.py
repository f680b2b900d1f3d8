"""Outbreak rescans (PV4, PV10): the manager has no scanning engine, so when a
gateway's hello says a new version of its outbreak rules, the manager releases the
messages that gateway put into its Outbreak quarantine back to it marked
`rescan=yes`; the gateway scans them again with its new rules. What comes back
clean goes on to the recipients; what still matches comes back into the manager's
Outbreak quarantine.

  smtplib (127.0.0.1) -> lazaret-gw -> next hop (aiosmtpd sink, read by the test)
                              |  ^  \\-- hello {"outbreak_rules_version": ...} every 1s
            PVO transfer :7025 v  | release, from [release] source_address 127.0.0.2
                            lazaretd
"""

import datetime

from e2e_helpers import stays, t, wait_for
from gw_fixtures import make_message, start_gateway  # noqa: F401
from test_gateway_pvo import RCPT, SENDER, central
from test_pvo import pvo_send, stored_id
from test_pvo_actions import memberships
from test_pvo_chain import MANAGER_ADDR, gw_lines, quarantine_one, raw_of
from test_web import WEB_ROOT, add_user, run_browser

PARCEL = "Your parcel is waiting"
INVOICE = "Your invoice is overdue"

RULES_1 = """\
# outbreak rules, from the vendor
version 2026120501
wave_0042: if subject == "^Your parcel is waiting$" { quarantine("Outbreak"); }
wave_0043: if subject == "^Your invoice is overdue$" { quarantine("Outbreak"); }
"""

# the vendor withdraws wave_0042; wave_0043 stays
RULES_2 = """\
# outbreak rules, from the vendor
version 2026120502
wave_0043: if subject == "^Your invoice is overdue$" { quarantine("Outbreak"); }
"""


def gateways(m):
    """GET /api/v1/gateways: the registry, as an admin sees it."""
    st, doc = m.api("GET", "/api/v1/gateways")
    assert st == 200, doc
    return doc["gateways"]


def managed_chain(start_manager, start_gateway, sink, name="gw-e2e"):
    """A manager releasing from 127.0.0.2 and a central gateway that says hello to it
    every second with its token; (manager, gateway)."""
    m = start_manager(release__source_address=MANAGER_ADDR, http__web_root=WEB_ROOT)
    gw = start_gateway(sink.host, start=False)
    st, doc = m.api("POST", "/api/v1/gateways",
                    json={"name": name, "address": "127.0.0.1", "release_port": gw.smtp_port})
    assert st == 201, doc
    gw.apply({"centralized_pvo": central(m),
              "outbreak": {"rules": gw.write_file("outbreak.rules", RULES_1)},
              "manager": {"addresses": MANAGER_ADDR, "api_url": m.http_url,
                          "api_token": doc["token"], "hello_interval": "1s"}})
    gw.start()
    gw.wait_log("gw.central_pvo host=127.0.0.1:%d reachable=yes" % m.pvo_port)
    gw.wait_log("gw.hello ")
    return m, gw


def test_new_outbreak_rules_rescan_the_gateways_outbreak_quarantine(
        start_manager, start_gateway, aio_sink):
    m, gw = managed_chain(start_manager, start_gateway, aio_sink)
    parcel = quarantine_one(m, gw, make_message(subject=PARCEL), "parcel")
    invoice = quarantine_one(m, gw, make_message(subject=INVOICE), "invoice")
    assert memberships(m, parcel)["outbreak"]["reason"] == "wave_0042"
    assert memberships(m, invoice)["outbreak"]["reason"] == "wave_0043"
    # hellos with the same version change nothing
    n = len(gw_lines(gw, "gw.hello"))
    wait_for(lambda: len(gw_lines(gw, "gw.hello")) >= n + 2, t(10), "two more hellos")
    assert aio_sink.count() == 0
    assert "api.outbreak_rescan" not in m.log_text()
    assert memberships(m, parcel)["outbreak"]["state"] == "held"
    assert memberships(m, parcel)["outbreak"]["rescan"] == "none"
    assert memberships(m, parcel)["outbreak"]["rescanned_at"] is None
    (g,) = gateways(m)
    assert g["outbreak_rules_version"] == "2026120501" and g["last_rescan"] is None

    gw.write_file("outbreak.rules", RULES_2)
    gw.reload()
    gw.wait_log("outbreak=2026120502")

    # the parcel comes back clean: delivered to its recipient, once
    (got,) = aio_sink.wait_count(1, timeout=t(30))
    assert b"Subject: " + PARCEL.encode() in got["data"]
    assert got["rcpts"] == [RCPT]
    assert b"rescan=yes" in got["data"]
    assert "gateway=gw-e2e rules_version=2026120502 released=2" in m.log_text()
    # the invoice still matches: back in the Outbreak quarantine, held
    wait_for(lambda: len(m.list_all()) == 3, t(30), "the invoice quarantined again")
    (again,) = [x["id"] for x in m.list_all() if x["id"] not in (parcel, invoice)]
    q = memberships(m, again)
    assert list(q) == ["outbreak"]
    assert q["outbreak"]["state"] == "held" and q["outbreak"]["reason"] == "wave_0043"
    assert b"Subject: " + INVOICE.encode() in raw_of(m, again)
    assert memberships(m, parcel)["outbreak"]["state"] == "released"
    assert memberships(m, invoice)["outbreak"]["state"] == "released"
    # both were sent back for rescanning, at the same moment; the new copy was not
    for original in (parcel, invoice):
        assert memberships(m, original)["outbreak"]["rescan"] == "pending"
        assert memberships(m, original)["outbreak"]["rescanned_at"] is not None
    assert (memberships(m, parcel)["outbreak"]["rescanned_at"]
            == memberships(m, invoice)["outbreak"]["rescanned_at"])
    assert q["outbreak"]["rescan"] == "none" and q["outbreak"]["rescanned_at"] is None
    (g,) = gateways(m)
    assert g["outbreak_rules_version"] == "2026120502"
    assert g["last_rescan"] == {"at": memberships(m, parcel)["outbreak"]["rescanned_at"],
                                "messages": 2}
    (rescanned_parcel, rescanned_invoice) = gw_lines(gw, "gw.released_rescan")
    assert "client=%s" % MANAGER_ADDR in rescanned_parcel
    # the next hellos say the same version: nothing more is released, nothing more sent
    n = len(gw_lines(gw, "gw.hello"))
    assert stays(lambda: aio_sink.count() == 1 and len(m.list_all()) == 3, t(3))
    assert len(gw_lines(gw, "gw.hello")) > n
    assert m.log_text().count("api.outbreak_rescan ") == 1
    assert memberships(m, again)["outbreak"]["state"] == "held"


def test_other_gateways_outbreak_messages_are_not_rescanned(start_manager, start_gateway,
                                                            aio_sink):
    m, gw = managed_chain(start_manager, start_gateway, aio_sink)
    mine = quarantine_one(m, gw, make_message(subject=PARCEL), "parcel")
    # a message another registered gateway put into the Outbreak quarantine
    st, doc = m.api("POST", "/api/v1/gateways", json={"name": "gw-other",
                                                      "address": "192.0.2.7"})
    assert st == 201, doc
    raw = (b"X-Lazaret-Gateway: gw-other\r\n"
           b"X-Lazaret-Quarantine: outbreak; reason=\"wave_0042\"\r\n"
           + make_message(subject=PARCEL))
    other = stored_id(*pvo_send(m, raw, rcpts=(RCPT,)))
    assert m.get_message(other)["gateway"] == "gw-other"

    gw.write_file("outbreak.rules", RULES_2)
    gw.reload()
    (got,) = aio_sink.wait_count(1, timeout=t(30))
    assert b"Subject: " + PARCEL.encode() in got["data"]
    assert memberships(m, mine)["outbreak"]["state"] == "released"
    assert stays(lambda: aio_sink.count() == 1, t(3))
    assert memberships(m, other)["outbreak"]["state"] == "held"
    assert memberships(m, mine)["outbreak"]["rescan"] == "pending"
    assert memberships(m, other)["outbreak"]["rescan"] == "none"
    last = {g["name"]: g["last_rescan"] for g in gateways(m)}
    assert last["gw-other"] is None and last["gw-e2e"]["messages"] == 1
    assert "gateway=gw-e2e rules_version=2026120502 released=1" in m.log_text()


def test_console_shows_the_rescan(start_manager, start_gateway, aio_sink):
    m, gw = managed_chain(start_manager, start_gateway, aio_sink)
    invoice = quarantine_one(m, gw, make_message(subject=INVOICE), "invoice")
    gw.write_file("outbreak.rules", RULES_2)
    gw.reload()
    wait_for(lambda: len(m.list_all()) == 2, t(30), "the invoice quarantined again")
    (again,) = [x["id"] for x in m.list_all() if x["id"] != invoice]
    at = memberships(m, invoice)["outbreak"]["rescanned_at"]
    assert at is not None
    add_user(m, "admin1", "correct horse battery", "admin", [])
    res = run_browser("pvo-rescan", m.http_url, {
        "username": "admin1", "password": "correct horse battery", "ids": [invoice, again]})
    v = res["values"]
    (en,) = v["en:" + invoice]
    (ja,) = v["ja:" + invoice]
    assert en["name"] == "outbreak" and en["state"] == "released"
    assert en["rescan"].startswith("Sent back to its gateway for rescanning ")
    assert ja["rescan"].endswith(" 再スキャンのためゲートウェイへ返送")
    # the time shown is the API's, in the user's zone (Asia/Tokyo)
    hm = datetime.datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc).astimezone(
        datetime.timezone(datetime.timedelta(hours=9))).strftime("%H:%M:%S")
    assert hm in en["rescan"] and hm in ja["rescan"], (hm, en, ja)
    assert [r["rescan"] for r in v["en:" + again] + v["ja:" + again]] == [None, None]

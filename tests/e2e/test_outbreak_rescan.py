"""Outbreak rescans (PV4, PV10): the manager has no scanning engine, so when a
gateway's hello says a new version of its outbreak rules, the manager releases the
messages that gateway put into its Outbreak quarantine back to it marked
`rescan=yes; id=<message id>`; the gateway scans them again with its new rules
and says its verdict in its reply to the data. What comes back clean goes on to
the recipients and its original is released; what still matches is neither
delivered nor transferred again: the original stays held ("rescan": "kept").

  smtplib (127.0.0.1) -> lazaret-gw -> next hop (aiosmtpd sink, read by the test)
                              |  ^  \\-- hello {"outbreak_rules_version": ...} every 1s
            PVO transfer :7025 v  | release, from [release] source_address 127.0.0.2
                            lazaretd
"""

import datetime
import json

from e2e_helpers import stays, t, wait_for
from gw_fixtures import make_message, start_gateway  # noqa: F401
from test_gateway_pvo import RCPT, SENDER, central
from test_pvo import pvo_send, stored_id
from test_pvo_actions import audit_rows, err, memberships
from test_lazaretctl import ctl
from test_sessions import Client
from test_pvo_chain import MANAGER_ADDR, gw_lines, quarantine_one
from test_web import WEB_ROOT, add_user, run_browser

PARCEL = "Your parcel is waiting"
INVOICE = "Your invoice is overdue"
MINUTES = "Minutes of the meeting"  # no rule matches

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


def managed_chain(start_manager, start_gateway, sink, name="gw-e2e", **overrides):
    """A manager releasing from 127.0.0.2 and a central gateway that says hello to it
    every second with its token; (manager, gateway)."""
    m = start_manager(release__source_address=MANAGER_ADDR, http__web_root=WEB_ROOT,
                      **overrides)
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
    expires = memberships(m, invoice)["outbreak"]["expires_at"]
    # hellos with the same version change nothing
    n = len(gw_lines(gw, "gw.hello"))
    wait_for(lambda: len(gw_lines(gw, "gw.hello")) >= n + 2, t(10), "two more hellos")
    assert aio_sink.count() == 0
    assert "api.outbreak_rescan" not in m.log_text()
    assert memberships(m, parcel)["outbreak"]["state"] == "held"
    assert memberships(m, parcel)["outbreak"]["rescan"] == "none"
    assert memberships(m, parcel)["outbreak"]["rescanned_at"] is None
    assert memberships(m, parcel)["outbreak"]["rescan_rule"] is None
    (g,) = gateways(m)
    assert g["outbreak_rules_version"] == "2026120501" and g["last_rescan"] is None

    gw.write_file("outbreak.rules", RULES_2)
    gw.reload()
    gw.wait_log("outbreak=2026120502")

    # the parcel comes back clean: delivered to its recipient, once
    (got,) = aio_sink.wait_count(1, timeout=t(30))
    assert b"Subject: " + PARCEL.encode() in got["data"]
    assert got["rcpts"] == [RCPT]
    assert b"rescan=yes; id=%s" % parcel.encode() in got["data"]
    assert "gateway=gw-e2e rules_version=2026120502 released=2" in m.log_text()
    wait_for(lambda: memberships(m, parcel)["outbreak"]["rescan"] == "clean", t(15),
             "the parcel's verdict")
    wait_for(lambda: memberships(m, invoice)["outbreak"]["rescan"] == "kept", t(30),
             "the invoice's verdict")
    # the parcel's original is released, its recipient too
    p = memberships(m, parcel)["outbreak"]
    assert p["state"] == "released" and p["rescan_rule"] is None
    assert [r["state"] for r in m.get_message(parcel)["recipients"]] == ["released"]
    # the invoice still matches: held on the manager as it was, not delivered, no copy
    q = memberships(m, invoice)["outbreak"]
    assert q["state"] == "held" and q["reason"] == "wave_0043"
    assert q["rescan_rule"] == "wave_0043" and q["expires_at"] == expires
    assert [r["state"] for r in m.get_message(invoice)["recipients"]] == ["quarantined"]
    assert sorted(x["id"] for x in m.list_all()) == sorted([parcel, invoice])
    # each verdict has its time, no earlier than the change that sent it back
    (g,) = gateways(m)
    assert g["outbreak_rules_version"] == "2026120502"
    assert g["last_rescan"]["messages"] == 2
    assert (g["last_rescan"]["clean"], g["last_rescan"]["kept"],
            g["last_rescan"]["requarantined"], g["last_rescan"]["pending"]) == (1, 1, 0, 0)
    for original in (parcel, invoice):
        assert memberships(m, original)["outbreak"]["rescanned_at"] >= g["last_rescan"]["at"]
    rescanned = gw_lines(gw, "gw.released_rescan")
    assert all("client=%s" % MANAGER_ADDR in x for x in rescanned)
    assert sorted(x.rsplit(" manager_id=", 1)[1] for x in rescanned) == sorted([parcel, invoice])
    (kept,) = gw_lines(gw, "gw.rescan_kept")
    assert "manager_id=%s rule=wave_0043" % invoice in kept
    # the next hellos say the same version: nothing more is released, nothing more sent
    n = len(gw_lines(gw, "gw.hello"))
    assert stays(lambda: aio_sink.count() == 1 and len(m.list_all()) == 2, t(3))
    assert len(gw_lines(gw, "gw.hello")) > n
    assert m.log_text().count("api.outbreak_rescan ") == 1
    assert len(gw_lines(gw, "gw.released_rescan")) == 2
    assert memberships(m, invoice)["outbreak"]["state"] == "held"

    # the next version withdraws wave_0043 too: the kept invoice goes back, and now
    # comes back clean
    gw.write_file("outbreak.rules", RULES_2.replace("2026120502", "2026120503")
                  .replace("^Your invoice is overdue$", "^Nothing matches this$"))
    gw.reload()
    got = aio_sink.wait_count(2, timeout=t(30))
    assert b"Subject: " + INVOICE.encode() in got[1]["data"]
    wait_for(lambda: memberships(m, invoice)["outbreak"]["rescan"] == "clean", t(15),
             "the invoice's second verdict")
    assert memberships(m, invoice)["outbreak"]["state"] == "released"
    assert memberships(m, invoice)["outbreak"]["rescan_rule"] is None
    assert memberships(m, parcel)["outbreak"]["rescan"] == "clean"
    (g,) = gateways(m)
    assert (g["last_rescan"]["messages"], g["last_rescan"]["clean"],
            g["last_rescan"]["kept"]) == (1, 1, 0)
    assert len(m.list_all()) == 2


def released_for_rescan(msg, mid):
    """msg as the manager releases it for a rescan of its message mid."""
    return (b"X-Lazaret-Released: lazaret-e2e; 2026-12-05T10:00:00Z; rescan=yes; id=%s\r\n"
            % mid.encode() + msg)


def test_rescan_verdicts_only_for_the_managers_releases(start_manager, start_gateway,
                                                      aio_sink):
    m, gw = managed_chain(start_manager, start_gateway, aio_sink)
    invoice = quarantine_one(m, gw, make_message(subject=INVOICE), "invoice")
    before = memberships(m, invoice)["outbreak"]
    # the same fields from a client that is not the manager: new mail like any other,
    # quarantined as a new message, no verdict in the reply, the original untouched
    code, text = gw.send(SENDER, RCPT, released_for_rescan(make_message(subject=INVOICE),
                                                           invoice))
    assert code == 250 and "rescan=" not in text and invoice not in text, text
    wait_for(lambda: len(m.list_all()) == 2, t(15), "the forged copy quarantined")
    assert gw_lines(gw, "gw.released_rescan") == [] and gw_lines(gw, "gw.rescan_kept") == []
    code, text = gw.send(SENDER, RCPT, released_for_rescan(make_message(subject=MINUTES),
                                                           invoice))
    assert code == 250 and "rescan=" not in text, text
    (got,) = aio_sink.wait_count(1, timeout=t(15))
    assert b"Subject: " + MINUTES.encode() in got["data"]
    assert stays(lambda: memberships(m, invoice)["outbreak"] == before, t(2))
    assert len(m.list_all()) == 2

    # from the manager's address the gateway answers its verdict for that id, and an
    # id that is no token is not echoed back
    code, text = gw.send(SENDER, RCPT, released_for_rescan(make_message(subject=INVOICE),
                                                           invoice),
                         source_address=MANAGER_ADDR)
    assert (code, text.split(" ", 3)[3]) == (250, "rescan=kept id=%s rule=wave_0043"
                                             % invoice), text
    code, text = gw.send(SENDER, RCPT, released_for_rescan(make_message(subject=MINUTES),
                                                           invoice),
                         source_address=MANAGER_ADDR)
    assert (code, text.split(" ", 3)[3]) == (250, "rescan=clean id=%s" % invoice), text
    code, text = gw.send(SENDER, RCPT, released_for_rescan(make_message(subject=INVOICE),
                                                           "x rescan=clean"),
                         source_address=MANAGER_ADDR)
    assert code == 250 and "rescan=" not in text, text
    # (without a verdict to say, the message went its way as before: a new message)
    wait_for(lambda: len(m.list_all()) == 3, t(15), "the copy without an id")
    assert aio_sink.count() == 2
    # none of this changed the original on the manager
    assert memberships(m, invoice)["outbreak"] == before


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
    wait_for(lambda: memberships(m, mine)["outbreak"]["rescan"] == "clean", t(15), "verdict")
    assert memberships(m, other)["outbreak"]["rescan"] == "none"
    last = {g["name"]: g["last_rescan"] for g in gateways(m)}
    assert last["gw-other"] is None and last["gw-e2e"]["messages"] == 1
    assert "gateway=gw-e2e rules_version=2026120502 released=1" in m.log_text()


def in_tokyo(at):
    """An API time as the console shows it to a user in Asia/Tokyo (HH:MM:SS)."""
    return datetime.datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc).astimezone(
        datetime.timezone(datetime.timedelta(hours=9))).strftime("%H:%M:%S")


def test_unanswered_rescan_stays_pending_and_the_console_shows_each_status(
        start_manager, start_gateway, aio_sink, aio_sink_factory):
    m, gw = managed_chain(start_manager, start_gateway, aio_sink,
                          release__retry_min="1s", release__retry_max="1s")
    parcel = quarantine_one(m, gw, make_message(subject=PARCEL), "parcel")
    invoice = quarantine_one(m, gw, make_message(subject=INVOICE), "invoice")
    # the gateway's next hop is down: it cannot deliver the clean parcel and says 451
    aio_sink.stop()
    gw.write_file("outbreak.rules", RULES_2)
    gw.reload()
    wait_for(lambda: memberships(m, invoice)["outbreak"]["rescan"] == "kept", t(30),
             "the invoice's verdict")
    wait_for(lambda: m.log_text().count("release.deferred msg=%s" % parcel) >= 2, t(30),
             "the parcel's release retried")
    p = memberships(m, parcel)["outbreak"]
    assert p["rescan"] == "pending" and p["state"] == "released"
    assert [r["state"] for r in m.get_message(parcel)["recipients"]] == ["releasing"]
    (g,) = gateways(m)
    assert (g["last_rescan"]["messages"], g["last_rescan"]["clean"], g["last_rescan"]["kept"],
            g["last_rescan"]["pending"]) == (2, 0, 1, 1)

    add_user(m, "admin1", "correct horse battery", "admin", [])
    login = {"username": "admin1", "password": "correct horse battery"}
    v = run_browser("pvo-rescan", m.http_url, dict(login, ids=[parcel, invoice]))["values"]
    kept = memberships(m, invoice)["outbreak"]
    (en,) = v["en:" + invoice]
    (ja,) = v["ja:" + invoice]
    assert en["name"] == "outbreak" and en["state"] == "held"
    assert en["rescan"].startswith("Rescanned by its gateway: still matches wave_0043, kept ")
    assert ja["rescan"].endswith(" ゲートウェイの再スキャン: wave_0043 に一致、隔離を継続")
    hm = in_tokyo(kept["rescanned_at"])
    assert hm in en["rescan"] and hm in ja["rescan"], (hm, en, ja)
    (en,) = v["en:" + parcel]
    (ja,) = v["ja:" + parcel]
    assert en["rescan"].startswith("Sent back to its gateway for rescanning ")
    assert ja["rescan"].endswith(" 再スキャンのためゲートウェイへ返送")
    hm = in_tokyo(memberships(m, parcel)["outbreak"]["rescanned_at"])
    assert hm in en["rescan"] and hm in ja["rescan"], (hm, en, ja)

    # the next hop is back: the retry is delivered and the gateway says clean
    sink = aio_sink_factory(port=aio_sink.port)
    (got,) = sink.wait_count(1, timeout=t(30))
    assert b"Subject: " + PARCEL.encode() in got["data"]
    wait_for(lambda: memberships(m, parcel)["outbreak"]["rescan"] == "clean", t(15),
             "the parcel's verdict")
    v = run_browser("pvo-rescan", m.http_url, dict(login, ids=[parcel]))["values"]
    (en,) = v["en:" + parcel]
    (ja,) = v["ja:" + parcel]
    assert en["state"] == "released"
    assert en["rescan"].startswith("Rescanned by its gateway: clean, released ")
    assert ja["rescan"].endswith(" ゲートウェイの再スキャン: クリーン、リリース済み")
    hm = in_tokyo(memberships(m, parcel)["outbreak"]["rescanned_at"])
    assert hm in en["rescan"] and hm in ja["rescan"], (hm, en, ja)
    assert stays(lambda: sink.count() == 1 and len(m.list_all()) == 2, t(2))


def release(client, mid, body):
    """POST /api/v1/messages/{mid}/release as client (an admin's Manager or a Client)."""
    path = "/api/v1/messages/%s/release" % mid
    if isinstance(client, Client):
        return client.call("POST", path, body=body)
    return client.api("POST", path, json=body)


def test_admin_releases_a_still_matching_message_without_a_rescan(
        start_manager, start_gateway, aio_sink):
    m, gw = managed_chain(start_manager, start_gateway, aio_sink)
    invoice = quarantine_one(m, gw, make_message(subject=INVOICE), "invoice")
    other = quarantine_one(m, gw, make_message(subject=INVOICE), "other invoice")
    third = quarantine_one(m, gw, make_message(subject=INVOICE), "third invoice")
    fourth = quarantine_one(m, gw, make_message(subject=INVOICE), "fourth invoice")
    add_user(m, "opa", "operator-a-pw-1", "operator", [])
    st, doc = m.api("PATCH", "/api/v1/quarantines/outbreak", json={"operators": ["opa"]})
    assert st == 200, doc
    opa = Client(m)
    assert opa.login("opa", "operator-a-pw-1")[0] == 200
    before = m.get_message(invoice)

    # refusals change nothing: a "rescan" that is not a boolean, an operator's false
    for bad in ("no", 0, [], {"x": False}):
        assert release(m, invoice, {"quarantine": "outbreak", "rescan": bad}) == err(
            422, "unprocessable", 'field "rescan" must be true or false'), bad
    assert release(opa, invoice, {"quarantine": "outbreak", "rescan": False}) == err(
        403, "forbidden", "a release without a rescan is for admins: an operator's "
        "release of an Outbreak message is rescanned by its gateway")
    assert m.api("POST", "/api/v1/messages/release",
                 json={"quarantine": "outbreak", "rescan": "false"}) == err(
        422, "unprocessable", 'field "rescan" must be true or false')
    assert opa.call("POST", "/api/v1/messages/release",
                    body={"quarantine": "outbreak", "ids": [invoice], "rescan": False}) == err(
        403, "forbidden", "a release without a rescan is for admins: an operator's "
        "release of an Outbreak message is rescanned by its gateway")
    assert m.api("POST", "/api/v1/messages/release",
                 json={"quarantine": "spam", "all": True, "rescan": False}) == err(
        422, "unprocessable", '"rescan" applies to policy, virus and outbreak quarantines only')
    assert stays(lambda: m.get_message(invoice) == before and aio_sink.count() == 0, t(1))
    assert audit_rows(m, "pvo_release") == [] and audit_rows(m, "pvo_bulk_release") == []

    # the default release: the gateway rescans it, the rule still matches, kept
    st, doc = release(m, invoice, {"quarantine": "outbreak"})
    assert st == 202, doc
    wait_for(lambda: memberships(m, invoice)["outbreak"]["rescan"] == "kept", t(30),
             "the invoice's verdict")
    assert memberships(m, invoice)["outbreak"]["state"] == "held"
    assert stays(lambda: aio_sink.count() == 0, t(1))
    kept = memberships(m, invoice)["outbreak"]

    # an admin's release without a rescan: delivered although wave_0043 still matches
    st, doc = release(m, invoice, {"quarantine": "outbreak", "rescan": False})
    assert st == 202, doc
    (got,) = aio_sink.wait_count(1, timeout=t(30))
    assert b"Subject: " + INVOICE.encode() in got["data"]
    assert got["rcpts"] == [RCPT]
    assert b"rescan=" not in got["data"]
    wait_for(lambda: [r["state"] for r in m.get_message(invoice)["recipients"]]
             == ["released"], t(15), "the invoice released")
    x = memberships(m, invoice)["outbreak"]
    assert x["state"] == "released"
    # no rescan happened: the last verdict stays as it was
    assert (x["rescan"], x["rescanned_at"], x["rescan_rule"]) == \
        (kept["rescan"], kept["rescanned_at"], "wave_0043")
    assert len(gw_lines(gw, "gw.released_rescan")) == 1
    assert len(m.list_all()) == 4  # not quarantined again as a new message
    (row,) = [r for r in audit_rows(m, "pvo_release") if r["detail"].get("rescan") is False]
    assert row["detail"]["quarantine"] == "outbreak" and row["target"] == invoice
    assert len(audit_rows(m, "pvo_release")) == 2

    # the bulk release takes it too
    st, doc = m.api("POST", "/api/v1/messages/release",
                    json={"quarantine": "outbreak", "ids": [other], "rescan": False})
    assert (st, doc) == (200, {"changed": 1, "queued": 1})
    got = aio_sink.wait_count(2, timeout=t(30))
    assert b"rescan=" not in got[1]["data"]
    wait_for(lambda: [r["state"] for r in m.get_message(other)["recipients"]]
             == ["released"], t(15), "the other invoice released")
    assert memberships(m, other)["outbreak"]["rescan"] == "none"
    (row,) = audit_rows(m, "pvo_bulk_release")
    assert row["detail"]["rescan"] is False and row["detail"]["changed"] == 1

    # lazaretctl: release ID --quarantine outbreak --no-rescan
    rc, out, err_text = ctl(m, "release", third, "--quarantine", "outbreak", "--no-rescan")
    assert rc == 0, err_text
    got = aio_sink.wait_count(3, timeout=t(30))
    assert b"rescan=" not in got[2]["data"]
    wait_for(lambda: memberships(m, third)["outbreak"]["state"] == "released", t(15),
             "the third invoice released")
    assert [r["detail"].get("rescan") for r in audit_rows(m, "pvo_release")
            if r["target"] == third] == [False]
    # and over a filter: the one still held
    rc, out, err_text = ctl(m, "release", "--filter", "--quarantine", "outbreak", "--no-rescan",
                            "--json")
    assert rc == 0, err_text
    assert json.loads(out) == {"changed": 1, "queued": 1}
    got = aio_sink.wait_count(4, timeout=t(30))
    assert b"rescan=" not in got[3]["data"]
    wait_for(lambda: memberships(m, fourth)["outbreak"]["state"] == "released", t(15),
             "the fourth invoice released")
    assert [r["detail"]["rescan"] for r in audit_rows(m, "pvo_bulk_release")] == [False, False]
    assert len(m.list_all()) == 4


def test_console_offers_admins_release_without_rescan(start_manager, start_gateway, aio_sink):
    m, gw = managed_chain(start_manager, start_gateway, aio_sink)
    invoice = quarantine_one(m, gw, make_message(subject=INVOICE), "invoice")
    other = quarantine_one(m, gw, make_message(subject=INVOICE), "other invoice")
    add_user(m, "admin1", "correct horse battery", "admin", [])
    add_user(m, "opa", "operator-a-pw-1", "operator", [])
    st, doc = m.api("PATCH", "/api/v1/quarantines/outbreak", json={"operators": ["opa"]})
    assert st == 200, doc
    v = run_browser("pvo-norescan", m.http_url, {
        "admin": {"username": "admin1", "password": "correct horse battery"},
        "operator": {"username": "opa", "password": "operator-a-pw-1"},
        "id": invoice, "other": other})["values"]
    assert v["en_button"] == "Release without rescan"
    assert v["en_aria"] == "Release from outbreak without rescan"
    assert v["ja_button"] == v["ja_confirm"] == "再スキャンせずに解放"
    assert v["ja_dialog"] == ("このメッセージを隔離領域「outbreak」から再スキャンせずに解放しますか？"
                              "アウトブレイクルールにまだ一致していても、ゲートウェイはこのメッセージを"
                              "配信します。誤検知と判断したメッセージにだけ実行してください。")
    assert v["requests"] == [{"path": "/api/v1/messages/%s/release" % invoice,
                              "body": {"quarantine": "outbreak", "rescan": False},
                              "status": 202}]
    assert [x["state"] for x in v["after"]] == ["released"] and v["after_buttons"] == 0
    # operators release with a rescan only
    assert (v["operator_release"], v["operator_norescan"]) == (1, 0)
    # wave_0043 still matches the invoice, and it reached its recipient all the same
    (got,) = aio_sink.wait_count(1, timeout=t(30))
    assert b"Subject: " + INVOICE.encode() in got["data"] and b"rescan=" not in got["data"]
    wait_for(lambda: [r["state"] for r in m.get_message(invoice)["recipients"]]
             == ["released"], t(15), "the invoice released")
    assert memberships(m, other)["outbreak"]["state"] == "held"
    assert stays(lambda: aio_sink.count() == 1, t(1))

"""The policy, virus and outbreak (PVO) quarantines in the web application, driven in
headless Chromium (tests/browser/web_e2e.mjs): the Quarantines page against the API
after real transfers to the PVO listener (:7025), a quarantine's listing and a
message's memberships (reasons, expiry), the admins' settings (create, edit, delete
with the API's 409), an operator who sees only the quarantines assigned to them, and
an end user who has none.

The actions are clicked as a user would, and their effects checked in the store
through the API afterwards: released from one of two quarantines, a message stays
held in the other and nothing is sent; released from the last, it goes back through
its gateway (a registered gateway whose release_port is a sink); deleted, it leaves
the list; delayed 3 days, its expiry (shown in the user's zone) is 3 days later;
moved, it is in the other policy quarantine with its expiry; a copy reaches
[release] primary_host (another sink); "all matching" is one request to the bulk
route ("n changed"), the selection one per message ("n done, m failed"); refusals
(409, 422, 404) show the API's own text.

Screenshots (en and ja) land in tests/e2e/artifacts/ as for test_web.py.
"""

import datetime
import re

from e2e_helpers import jis_header, stays, t, wait_for
from test_pvo import pvo_send, rfc3339_in, stored_id
from test_sessions import Client
from test_web import add_user, run_browser, web_manager

ADMIN = ("admin1", "correct horse battery")
OPERATOR = ("opal", "opal-password-1")
ENDUSER = ("taro", "taro-password-1")
# 20 characters, 60 bytes of UTF-8: near the 64-byte limit, and long on screen.
LONG_NAME = "社外秘添付ファイル検査用ポリシー隔離領域"
TOKYO = datetime.timezone(datetime.timedelta(hours=9))


def pvo_raw(subject, memberships, origin, sender_name=None, sender="billing@vendor.test",
            to="taro@corp.test"):
    """A message with one X-Lazaret-Quarantine per (name, reason, expires or None)."""
    heads = []
    for name, reason, expires in memberships:
        h = 'X-Lazaret-Quarantine: %s; reason="%s"' % (name, reason)
        if expires:
            h += "; expires=%s" % expires
        heads.append(h)
    heads.append("X-Lazaret-Origin-Id: %s" % origin)
    subj = jis_header(subject) if not subject.isascii() else subject
    frm = "%s <%s>" % (jis_header(sender_name), sender) if sender_name else sender
    lines = heads + ["From: %s" % frm, "To: %s" % to, "Subject: %s" % subj,
                     "Date: Sat, 05 Dec 2026 10:00:00 +0900",
                     "Message-ID: <%s@pvo.web.test>" % origin, "MIME-Version: 1.0",
                     "Content-Type: text/plain; charset=us-ascii"]
    return ("\r\n".join(lines) + "\r\n\r\nHello.\r\n").encode("utf-8")


def tokyo(iso, lang, zone=TOKYO):
    """An API time as the page shows it (formatDate) for a user in zone."""
    d = datetime.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc).astimezone(zone)
    return d.strftime("%Y/%m/%d %H:%M") if lang == "ja" else d.strftime("%d %b %Y, %H:%M")


def api_quarantines(m):
    st, doc = m.api("GET", "/api/v1/quarantines")
    assert st == 200, doc
    return {q["name"]: q for q in doc["quarantines"]}


def memberships(m, mid):
    return {q["name"]: q for q in m.get_message(mid)["quarantines"]}


def plus(iso, seconds):
    d = datetime.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ") + datetime.timedelta(seconds=seconds)
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


def sent_ids(sink):
    """The origin ids (web-pvo-N) of the messages a sink received, in order."""
    out = []
    for msg in sink.messages:
        mm = re.search(rb"^X-Lazaret-Origin-Id: (\S+)\r?$", msg["data"], re.M)
        out.append(mm.group(1).decode() if mm else None)
    return out


def pvo_setup(start_manager, aio_sink_factory):
    """A manager with web root; a registered gateway at 127.0.0.1 whose release port is
    a sink (released PVO mail goes back there), another sink as [release]
    primary_host (copies go there); an admin, an operator, an end user and PVO
    messages in several quarantines. Returns (manager, ids, gateway sink, copy sink)."""
    gw = aio_sink_factory()
    copies = aio_sink_factory()
    m = web_manager(start_manager, primary_host=copies.host)
    st, doc = m.api("POST", "/api/v1/gateways",
                    json={"name": "gw-e2e", "address": "127.0.0.1", "release_port": gw.port})
    assert st == 201, doc
    add_user(m, ADMIN[0], ADMIN[1], "admin", [])
    add_user(m, OPERATOR[0], OPERATOR[1], "operator", [])
    add_user(m, ENDUSER[0], ENDUSER[1], "enduser", ["taro@corp.test"])
    week = rfc3339_in(7 * 86400)
    ids = {}

    def put(key, subject, mems, origin, **kw):
        rcpt = kw.pop("rcpt", "taro@corp.test")
        ids[key] = stored_id(*pvo_send(m, pvo_raw(subject, mems, origin, to=rcpt, **kw),
                                       rcpts=(rcpt,)))

    put("invoice", "請求書の送付について", [(LONG_NAME, "機密ファイル検査ルール", week),
                                        ("virus", "Eicar-Test-Signature", None)],
        "web-pvo-1", sender_name="経理部 山田")
    put("finance1", "支払い予定の確認", [("Finance", "Finance rule", week)], "web-pvo-2")
    put("finance2", "Quarterly numbers", [("Finance", "Finance rule", None)], "web-pvo-3",
        sender="cfo@partner.test", rcpt="hanako@corp.test")
    put("finance3", "Budget draft", [("Finance", "Finance rule", week)], "web-pvo-5")
    put("finance4", "経費精算のお願い", [("Finance", "Finance rule", week)], "web-pvo-6")
    put("outbreak", "Your parcel", [("outbreak", "rule 7", None)], "web-pvo-4",
        sender="x@spam.test")
    put("hr1", "人事評価の面談日程", [("HR", "HR rule", week)], "web-pvo-7")
    put("hr2", "Offer letter", [("HR", "HR rule", rfc3339_in(5 * 86400))], "web-pvo-8")
    st, doc = m.api("POST", "/api/v1/quarantines", json={"name": "Archive", "type": "policy"})
    assert st == 201, doc
    return m, ids, gw, copies


FINANCE = ("finance1", "finance2", "finance3", "finance4")
FINANCE_SUBJECTS = ["支払い予定の確認", "Quarterly numbers", "Budget draft", "経費精算のお願い"]
COPY_TO = ["audit@corp.test", "legal@corp.test"]


def test_browser_pvo_admin(start_manager, aio_sink_factory):
    m, ids, gw, copies = pvo_setup(start_manager, aio_sink_factory)
    origin = {k: "web-pvo-%s" % n for k, n in (("invoice", 1), ("finance1", 2), ("finance2", 3),
                                                ("finance3", 5), ("finance4", 6))}
    qs = api_quarantines(m)
    assert qs[LONG_NAME]["messages"] == 1 and qs["Finance"]["messages"] == 4
    assert qs["HR"]["messages"] == 2 and qs["Archive"]["messages"] == 0
    mem = memberships(m, ids["invoice"])
    assert set(mem) == {LONG_NAME, "virus"}
    before = {k: memberships(m, ids[k]) for k in ids}
    hr1_exp = before["hr1"]["HR"]["expires_at"]
    hr2_exp = before["hr2"]["HR"]["expires_at"]
    res = run_browser("pvo-admin", m.http_url, {
        "username": ADMIN[0], "password": ADMIN[1],
        "quarantines": {n: {"messages": q["messages"], "bytes": q["bytes"],
                            "oldest": q["oldest"], "type": q["type"]} for n, q in qs.items()},
        "long_name": LONG_NAME,
        "finance_subjects": FINANCE_SUBJECTS,
        "invoice_id": ids["invoice"], "invoice_subject": "請求書の送付について",
        "invoice_from": "経理部 山田 <billing@vendor.test>",
        "memberships": {n: {"reason": q["reason"], "expires": {l: tokyo(q["expires_at"], l)
                                                              for l in ("en", "ja")},
                            "entered_at": q["entered_at"], "type": q["type"]}
                        for n, q in mem.items()},
        "copy_to": COPY_TO,
        "hr1_id": ids["hr1"],
        "hr1_expires": {"before": {l: tokyo(hr1_exp, l) for l in ("en", "ja")},
                        "after": {l: tokyo(plus(hr1_exp, 3 * 86400), l) for l in ("en", "ja")}},
        "hr2_id": ids["hr2"], "hr2_expires": {"en": tokyo(hr2_exp, "en")},
        "move_targets": sorted(["Finance", LONG_NAME, "Archive"]),
        "operator": OPERATOR[0],
    }, timeout=300)
    v = res["values"]
    by_id = {mid: k for k, mid in ids.items()}

    # Finance: the keyboard released one (delivered through the gateway), the
    # selection deleted one, the other two were delayed 36 hours and then deleted.
    released = by_id[v["keyboard_released"]]
    deleted = by_id[v["selection_deleted"]]
    bulk = sorted(by_id[i] for i in v["bulk_ids"])
    assert sorted([released, deleted] + bulk) == sorted(FINANCE)
    assert memberships(m, ids[released])["Finance"]["state"] == "released"
    assert memberships(m, ids[deleted])["Finance"]["state"] == "deleted"
    assert [r["state"] for r in m.get_message(ids[deleted])["recipients"]] == ["deleted"]
    for k in bulk:
        got = memberships(m, ids[k])["Finance"]
        assert got["state"] == "deleted", (k, got)
        assert got["expires_at"] == plus(before[k]["Finance"]["expires_at"], 36 * 3600), (k, got)
        assert [r["state"] for r in m.get_message(ids[k])["recipients"]] == ["deleted"]
    assert api_quarantines(m)["Finance"]["messages"] == 0

    # The invoice: released from both, delivered once through its gateway; the copy
    # went to [release] primary_host, to the addresses typed.
    assert {n: q["state"] for n, q in memberships(m, ids["invoice"]).items()} == \
        {LONG_NAME: "released", "virus": "released"}
    assert v["second_release"] == ("Release failed: this message is not held in quarantine "
                                   "\"%s\" any more (released)" % LONG_NAME), v
    gw.wait_count(2, timeout=t(20))
    assert stays(lambda: gw.count() == 2, t(1.5))
    assert sorted(sent_ids(gw)) == sorted([origin["invoice"], origin[released]])
    rcpts = {sent_ids(gw)[i]: msg["rcpts"] for i, msg in enumerate(gw.messages)}
    assert rcpts[origin["invoice"]] == ["taro@corp.test"]
    wait_for(lambda: [r["state"] for r in m.get_message(ids["invoice"])["recipients"]] == ["released"],
             t(10), "the invoice's recipient released")
    copies.wait_count(1, timeout=t(20))
    assert stays(lambda: copies.count() == 1, t(1))
    assert sent_ids(copies) == [origin["invoice"]]
    assert sorted(copies.messages[0]["rcpts"]) == COPY_TO

    assert v["delay_422"] == ("Delay exit failed: \"by\" must be a positive duration of at "
                              "most 366d, such as 3d, 12h or 30m"), v
    # Delay: 3 days later exactly (the refused 400d changed nothing), still held. Move: in Archive, reason and expiry kept.
    assert memberships(m, ids["hr1"])["HR"]["state"] == "held"
    assert memberships(m, ids["hr1"])["HR"]["expires_at"] == plus(hr1_exp, 3 * 86400)
    moved = memberships(m, ids["hr2"])
    assert set(moved) == {"Archive"}, moved
    assert moved["Archive"]["state"] == "held"
    assert moved["Archive"]["reason"] == "HR rule"
    assert moved["Archive"]["expires_at"] == hr2_exp
    assert moved["Archive"]["entered_at"] == before["hr2"]["HR"]["entered_at"]
    # Untouched: the outbreak message.
    assert memberships(m, ids["outbreak"])["outbreak"]["state"] == "held"

    # The settings the page saved are the API's now.
    qs = api_quarantines(m)
    assert "Legal 法務" not in qs  # created, then deleted
    assert qs["Contracts"]["type"] == "policy"
    assert qs["Contracts"]["delete_after"] == "30d"
    assert qs["Contracts"]["default_action"] == "release"
    assert qs["Contracts"]["overflow_exempt"] is True
    assert qs["Contracts"]["operators"] == [OPERATOR[0]]
    assert qs["virus"]["delete_after"] == "21d"
    assert qs["virus"]["default_action"] == "delete"
    # The refused deletion left the quarantine and its message alone.
    assert qs["HR"]["messages"] == 1
    assert v["delete_409"].endswith("the quarantine still holds messages"), v
    assert "\"delete_after\" must be a duration" in v["create_422"], v
    st, doc = m.api("GET", "/api/v1/audit?limit=200")
    acts = [(e["actor"], e["action"], e["target"]) for e in doc["entries"]]
    assert (ADMIN[0], "quarantine_create", "Contracts") in acts
    assert (ADMIN[0], "quarantine_update", "virus") in acts
    assert (ADMIN[0], "quarantine_delete", "Legal 法務") in acts
    for action, target in (("pvo_copy", ids["invoice"]), ("pvo_release", ids["invoice"]),
                           ("pvo_release", ids[released]), ("pvo_delete", ids[deleted]),
                           ("pvo_delay", ids["hr1"]), ("pvo_move", ids["hr2"])):
        assert (ADMIN[0], action, target) in acts, (action, target)
    bulk_rows = [(e["action"], e["detail"]["changed"]) for e in doc["entries"]
                 if e["action"].startswith("pvo_bulk_")]
    assert sorted(bulk_rows) == [("pvo_bulk_delay", 2), ("pvo_bulk_delete", 2)], bulk_rows


def test_browser_pvo_operator_and_enduser(start_manager, aio_sink_factory):
    m, ids, gw, _ = pvo_setup(start_manager, aio_sink_factory)
    st, doc = m.api("PATCH", "/api/v1/quarantines/Finance", json={"operators": [OPERATOR[0]]})
    assert st == 200, doc
    qs = api_quarantines(m)
    # The operator's own time zone (UTC) wins over the browser's (Asia/Tokyo).
    c = Client(m)
    assert c.login(OPERATOR[0], OPERATOR[1])[0] == 200
    st, doc = c.call("PUT", "/api/v1/me", {"time_zone": "UTC"})
    assert st == 200, doc
    fin = memberships(m, ids["finance1"])["Finance"]
    res = run_browser("pvo-operator", m.http_url, {
        "username": OPERATOR[0], "password": OPERATOR[1],
        "visible": sorted(["spam", "Finance"]),
        "finance": {"messages": qs["Finance"]["messages"], "bytes": qs["Finance"]["bytes"]},
        "finance_id": ids["finance1"], "finance_subject": "支払い予定の確認",
        "hidden_id": ids["invoice"],
        "finance_expires_ja": tokyo(fin["expires_at"], "ja", datetime.timezone.utc),
        "enduser_pvo_ids": [ids["invoice"], ids["finance1"], ids["outbreak"]],
        "enduser": ENDUSER[0], "enduser_password": ENDUSER[1],
    })
    assert res["values"]["operator_overview"] == sorted(["spam", "Finance"])
    assert res["values"]["hidden_status"] == 404
    # The operator's release went through: released, delivered through the gateway.
    assert memberships(m, ids["finance1"])["Finance"]["state"] == "released"
    gw.wait_count(1, timeout=t(20))
    assert stays(lambda: gw.count() == 1, t(1.5))
    assert sent_ids(gw) == ["web-pvo-2"]
    st, doc = m.api("GET", "/api/v1/audit?limit=200")
    assert (OPERATOR[0], "pvo_release", ids["finance1"]) in [
        (e["actor"], e["action"], e["target"]) for e in doc["entries"]]
    # The other quarantine's message stayed as it was.
    assert {n: q["state"] for n, q in memberships(m, ids["invoice"]).items()} == \
        {LONG_NAME: "held", "virus": "held"}

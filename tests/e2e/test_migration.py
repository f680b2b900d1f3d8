"""Migration on enabling centralized PVO, the manager's side (REQUIREMENTS PV6):
a gateway's quarantine mapping (GET/PUT /api/v1/gateways/{name}/mapping), what the
gateway reads with its own token (GET /api/v1/gateway/mapping), its progress
reports (POST /api/v1/gateway/migration) with the one mail when a run is done, and
the progress in the registry.

Real lazaretd processes on loopback, a real store (SQLite, or PostgreSQL with
LAZARET_E2E_BACKEND=postgresql), real HTTP and SMTP clients, an aiosmtpd sink for
the mail. Every refusal is asserted exactly, and the store is checked unchanged
after it.
"""

import email
import email.policy
import json
import time

from e2e_helpers import stays, t, wait_for
from test_pvo import pvo_message, pvo_send, rfc3339_in, stored_id


def add(mgr, name, address):
    st, doc = mgr.api("POST", "/api/v1/gateways", json={"name": name, "address": address})
    assert st == 201, (st, doc)
    return doc["token"]


def error(doc):
    return doc["error"]["message"]


def gw_call(mgr, method, path, token, body=None):
    raw = None
    if body is not None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    st, _, out = mgr.http(method, path, body=raw, token=token,
                          headers={"Content-Type": "application/json"} if raw else None)
    return st, (json.loads(out) if out else None)


def report(mgr, token, **fields):
    body = {"run": "2026-12-06T01:00:00Z", "state": "running", "total": 10, "done": 0,
            "failed": 0, "notify": None}
    body.update(fields)
    return gw_call(mgr, "POST", "/api/v1/gateway/migration", token, body)


def migration_of(mgr, name):
    st, doc = mgr.api("GET", "/api/v1/gateways")
    assert st == 200, doc
    (g,) = [g for g in doc["gateways"] if g["name"] == name]
    return g["migration"]


def mapping_of(mgr, name):
    st, doc = mgr.api("GET", "/api/v1/gateways/%s/mapping" % name)
    assert st == 200, (st, doc)
    return doc


def audit_actions(mgr):
    st, doc = mgr.api("GET", "/api/v1/audit?limit=100")
    assert st == 200, (st, doc)
    return [(e["action"], e.get("target"), e.get("detail")) for e in doc["entries"]]


# ---- the mapping -----------------------------------------------------------------

def test_mapping_automatic_custom_and_what_the_gateway_reads(manager):
    tok1 = add(manager, "gw1", "192.0.2.10")
    tok2 = add(manager, "gw2", "192.0.2.11")
    assert mapping_of(manager, "gw1") == {"gateway": "gw1", "mode": "automatic",
                                          "mapping": {}}
    st, doc = gw_call(manager, "GET", "/api/v1/gateway/mapping", tok1)
    assert (st, doc) == (200, {"mode": "automatic", "mapping": {}})

    body = {"Confidential": "Legal", "Old Stuff": None, "VIRUS": "Virus",
            "Outbreak": "OUTBREAK", "junk": "Unclassified"}
    st, doc = manager.api("PUT", "/api/v1/gateways/GW1/mapping", json=body)
    want = {"Confidential": "Legal", "Old Stuff": None, "VIRUS": "virus",
            "Outbreak": "outbreak", "junk": "unclassified"}
    assert (st, doc) == (200, {"gateway": "gw1", "mode": "custom", "mapping": want})
    assert mapping_of(manager, "gw1")["mapping"] == want
    # each gateway's token reads its own mapping, never another's
    st, doc = gw_call(manager, "GET", "/api/v1/gateway/mapping", tok1)
    assert (st, doc) == (200, {"mode": "custom", "mapping": want})
    st, doc = gw_call(manager, "GET", "/api/v1/gateway/mapping", tok2)
    assert (st, doc) == (200, {"mode": "automatic", "mapping": {}})
    assert ("gateway_mapping", "gw1", {"mode": "custom", "mapping": want}) in \
        audit_actions(manager)

    # {} is automatic again
    st, doc = manager.api("PUT", "/api/v1/gateways/gw1/mapping", json={})
    assert (st, doc) == (200, {"gateway": "gw1", "mode": "automatic", "mapping": {}})
    st, doc = gw_call(manager, "GET", "/api/v1/gateway/mapping", tok1)
    assert (st, doc) == (200, {"mode": "automatic", "mapping": {}})


BAD_MAPPINGS = [
    ({"A": "spam"}, '"A": the central quarantine cannot be spam'),
    ({"A": "SPAM"}, '"A": the central quarantine cannot be spam'),
    ({"A": "a;b"}, '"A": the central quarantine must be null or 1 to 64 bytes of UTF-8 '
     'text without ; " \\ = or control characters, blanks at either end or a leading *'),
    ({"A": " x"}, '"A": the central quarantine must be null or 1 to 64 bytes of UTF-8 '
     'text without ; " \\ = or control characters, blanks at either end or a leading *'),
    ({"A": "x" * 65}, '"A": the central quarantine must be null or 1 to 64 bytes of UTF-8 '
     'text without ; " \\ = or control characters, blanks at either end or a leading *'),
    ({"A": 3}, '"A": the central quarantine must be null or 1 to 64 bytes of UTF-8 '
     'text without ; " \\ = or control characters, blanks at either end or a leading *'),
    ({"A": "q=1"}, '"A": the central quarantine must be null or 1 to 64 bytes of UTF-8 '
     'text without ; " \\ = or control characters, blanks at either end or a leading *'),
    ({"y" * 65: "x"}, 'local quarantine name "%s" must be 1 to 64 bytes without control '
     'characters' % ("y" * 65)),
    ({"": "x"}, 'local quarantine name "" must be 1 to 64 bytes without control characters'),
    ({"a\nb": "x"}, 'local quarantine name "a\nb" must be 1 to 64 bytes without control '
     'characters'),
    ({"Spam": "x"}, 'local quarantine "spam" is not migrated: only policy, virus and '
     'outbreak quarantines are'),
]


def test_mapping_refusals_leave_it_unchanged(manager):
    add(manager, "gw1", "192.0.2.10")
    st, doc = manager.api("PUT", "/api/v1/gateways/gw1/mapping", json={"A": "Keep"})
    assert st == 200, doc
    for body, message in BAD_MAPPINGS:
        st, doc = manager.api("PUT", "/api/v1/gateways/gw1/mapping", json=body)
        assert (st, error(doc)) == (400, message), body
    st, doc = manager.api("PUT", "/api/v1/gateways/nosuch/mapping", json={})
    assert (st, error(doc)) == (404, "no such gateway")
    st, doc = manager.api("GET", "/api/v1/gateways/nosuch/mapping")
    assert (st, error(doc)) == (404, "no such gateway")
    st, doc = manager.api("PUT", "/api/v1/gateways/gw1/mapping", json=["A"])
    assert st == 422, doc
    # no session or admin token: 401; a gateway's token is no admin
    tok = add(manager, "gw2", "192.0.2.11")
    for token in (None, tok):
        st, doc = manager.api("PUT", "/api/v1/gateways/gw1/mapping", json={}, token=token)
        assert st == 401, doc
        st, doc = manager.api("GET", "/api/v1/gateways/gw1/mapping", token=token)
        assert st == 401, doc
    assert mapping_of(manager, "gw1") == {"gateway": "gw1", "mode": "custom",
                                          "mapping": {"A": "Keep"}}


def test_gateway_routes_refuse_a_wrong_token(manager):
    add(manager, "gw1", "192.0.2.10")
    for token in (None, "0" * 64, manager.token):
        st, doc = gw_call(manager, "GET", "/api/v1/gateway/mapping", token)
        assert (st, error(doc)) == (401, "a valid gateway token is required"), token
        st, doc = report(manager, token)
        assert (st, error(doc)) == (401, "a valid gateway token is required"), token
    assert migration_of(manager, "gw1") is None


# ---- progress ----------------------------------------------------------------------

def test_progress_is_stored_per_gateway_and_blocks_the_mapping(manager):
    tok1 = add(manager, "gw1", "192.0.2.10")
    tok2 = add(manager, "gw2", "192.0.2.11")
    st, doc = report(manager, tok1, total=20000, done=1200, failed=3)
    want = {"state": "running", "total": 20000, "done": 1200, "failed": 3,
            "started_at": "2026-12-06T01:00:00Z", "finished_at": None}
    assert (st, doc) == (200, {"migration": want})
    # the registry adds the run's "done" mail: none asked for
    assert migration_of(manager, "gw1") == dict(want, notice=None)
    assert migration_of(manager, "gw2") is None  # the token named gw1 only

    st, doc = manager.api("PUT", "/api/v1/gateways/gw1/mapping", json={"A": "B"})
    assert (st, doc["error"]) == (409, {
        "code": "conflict",
        "message": "gateway gw1 is migrating (1200/20000); change the mapping when it "
                   "has finished"})
    assert mapping_of(manager, "gw1")["mode"] == "automatic"
    # another gateway's mapping is not held up
    st, doc = manager.api("PUT", "/api/v1/gateways/gw2/mapping", json={"A": "B"})
    assert st == 200, doc

    # a report of an older run changes nothing
    st, doc = report(manager, tok1, run="2026-12-05T01:00:00Z", state="done", done=10)
    assert (st, doc) == (200, {"migration": want})
    # the same run moves on; then done
    st, doc = report(manager, tok1, total=20000, done=19990, failed=10, state="done")
    assert st == 200 and doc["migration"]["state"] == "done", doc
    fin = doc["migration"]["finished_at"]
    assert fin is not None and fin >= "2026-12-06T0"
    # a late "running" of that run changes nothing
    st, doc = report(manager, tok1, total=20000, done=19000, failed=0)
    assert doc["migration"] == {"state": "done", "total": 20000, "done": 19990,
                                "failed": 10, "started_at": "2026-12-06T01:00:00Z",
                                "finished_at": fin}
    st, doc = manager.api("PUT", "/api/v1/gateways/gw1/mapping", json={"A": "B"})
    assert st == 200, doc
    # a newer run starts again
    st, doc = report(manager, tok1, run="2026-12-06T12:00:00+09:00", total=5, done=1)
    assert doc["migration"] == {"state": "running", "total": 5, "done": 1, "failed": 0,
                                "started_at": "2026-12-06T03:00:00Z", "finished_at": None}


BAD_REPORTS = [
    ({"run": None}, '"run" is required: the RFC 3339 time the run started'),
    ({"run": "yesterday"}, '"run" is required: the RFC 3339 time the run started'),
    ({"run": 1733450000}, '"run" is required: the RFC 3339 time the run started'),
    ({"state": "paused"}, '"state" is required: "running" or "done"'),
    ({"state": None}, '"state" is required: "running" or "done"'),
    ({"total": -1}, '"total" is required: a number of messages (0 or more)'),
    ({"total": "10"}, '"total" is required: a number of messages (0 or more)'),
    ({"done": 1.5}, '"done" is required: a number of messages (0 or more)'),
    ({"failed": None}, '"failed" is required: a number of messages (0 or more)'),
    ({"done": 8, "failed": 3}, '"done" and "failed" together cannot be more than "total"'),
    ({"notify": "a@x.test\r\nBcc: evil@x.test"},
     '"notify" must be null or one mail address (no blanks, commas or line breaks)'),
    ({"notify": "a@x.test,evil@x.test"},
     '"notify" must be null or one mail address (no blanks, commas or line breaks)'),
    ({"notify": "a@x.test evil@x.test"},
     '"notify" must be null or one mail address (no blanks, commas or line breaks)'),
    ({"notify": "<a@x.test>"},
     '"notify" must be null or one mail address (no blanks, commas or line breaks)'),
    ({"notify": "nobody"},
     '"notify" must be null or one mail address (no blanks, commas or line breaks)'),
    ({"notify": ["a@x.test"]},
     '"notify" must be null or one mail address (no blanks, commas or line breaks)'),
    ({"gateway": "gw2"}, 'unknown field "gateway"'),
]


def test_progress_refusals_leave_it_unchanged(manager):
    tok = add(manager, "gw1", "192.0.2.10")
    st, first = report(manager, tok, done=2)
    assert st == 200, first
    for fields, message in BAD_REPORTS:
        body = {"run": "2026-12-06T01:00:00Z", "state": "done", "total": 10, "done": 0,
                "failed": 0}
        body.update(fields)
        body = {k: v for k, v in body.items() if v is not None or k == "notify"}
        st, doc = gw_call(manager, "POST", "/api/v1/gateway/migration", tok, body)
        assert (st, error(doc)) == (400, message), fields
    st, doc = gw_call(manager, "POST", "/api/v1/gateway/migration", tok, b"not json")
    assert st == 400, doc
    assert migration_of(manager, "gw1") == dict(first["migration"], notice=None)


# ---- the mail when a run is done -------------------------------------------------------

def mails(sink):
    return [email.message_from_bytes(m["data"], policy=email.policy.default)
            for m in sink.messages]


def test_done_mails_notify_once_in_japanese_and_english(start_manager, aio_sink):
    m = start_manager(primary_host=aio_sink.host, notifications__from="lazaret@corp.test")
    tok = add(m, "gw1", "192.0.2.10")
    st, doc = report(m, tok, total=20000, done=1200, failed=3, notify="ops@corp.test")
    assert st == 200, doc
    assert stays(lambda: aio_sink.count() == 0, t(1))  # running: no mail
    for _ in range(2):  # the gateway posts "done" again (a retry): still one mail
        st, doc = report(m, tok, total=20000, done=19997, failed=3, state="done",
                         notify="ops@corp.test")
        assert st == 200 and doc["migration"]["state"] == "done", doc
    fin = doc["migration"]["finished_at"]
    aio_sink.wait_count(1)
    assert stays(lambda: aio_sink.count() == 1, t(2))
    (raw,) = aio_sink.messages
    assert raw["rcpts"] == ["ops@corp.test"] and raw["sender"] == "lazaret@corp.test"
    assert "notice" not in doc["migration"]  # the registry's, not the gateway's
    wait_for(lambda: notice_of(m, "gw1")["state"] == "sent", 10, "the notice marked sent")
    n = notice_of(m, "gw1")
    assert n == {"to": "ops@corp.test", "state": "sent", "tries": 1, "next_try": None,
                 "last_try": n["last_try"], "reply": None}, n
    assert n["last_try"] >= fin[:19]
    (mail,) = mails(aio_sink)
    assert mail["Subject"] == "[Lazaret] 移行完了 / Migration finished: gw1"
    assert mail["To"] == "ops@corp.test" and mail["From"] == "lazaret@corp.test"
    text = mail.get_content()
    assert "ゲートウェイ gw1 の隔離メッセージの移行が終わりました。" in text
    assert "The gateway gw1 has finished migrating its quarantined messages" in text
    for line in ("対象:     20000 通", "移行済み: 19997 通", "失敗:     3 通",
                 "Total:    20000", "Moved:    19997", "Failed:   3",
                 "Started:  2026-12-06T01:00:00Z", "Finished: %s" % fin,
                 "開始:     2026-12-06T01:00:00Z", "終了:     %s" % fin):
        assert line in text, (line, text)

    # a new run that is done mails again, once; a done without notify mails nobody
    st, doc = report(m, tok, run="2026-12-06T02:00:00Z", state="done", total=1, done=1,
                     notify="ops2@corp.test")
    assert st == 200, doc
    aio_sink.wait_count(2)
    assert aio_sink.messages[1]["rcpts"] == ["ops2@corp.test"]
    st, doc = report(m, tok, run="2026-12-06T03:00:00Z", state="done", total=0)
    assert st == 200, doc
    # its retry with an address comes too late: that run's mail was decided
    st, doc = report(m, tok, run="2026-12-06T03:00:00Z", state="done", total=0,
                     notify="ops3@corp.test")
    assert st == 200, doc
    assert stays(lambda: aio_sink.count() == 2, t(2))
    assert migration_of(m, "gw1")["notice"] is None


def ctl_migration_cell(mgr):
    """The MIGRATION cell of lazaretctl gateway list's first gateway."""
    from test_lazaretctl import ctl
    rc, out, err = ctl(mgr, "gateway", "list")
    assert rc == 0, err
    return out.decode().splitlines()[1].split(None, 7)[7]


def notice_of(mgr, name):
    return migration_of(mgr, name)["notice"]


def fast_manager(start_manager, relay, **overrides):
    """A manager that tries a deferred notice again after 1 s (report_sched.h)."""
    m = start_manager(start=False, primary_host=relay.host,
                      notifications__from="lazaret@corp.test", **overrides)
    m.next_env = {"LAZARET_FAULT": "migration_notice_fast"}
    m.start()
    return m


def log_lines(mgr, event):
    return [ln for ln in mgr.log_text().splitlines() if event in ln]


def test_done_mail_waits_for_the_relay_and_arrives_once(start_manager, aio_sink_factory):
    relay = aio_sink_factory(start=False)  # nothing listens on its port yet
    m = fast_manager(start_manager, relay)
    tok = add(m, "gw1", "192.0.2.10")
    st, doc = report(m, tok, state="done", total=3, done=3, notify="ops@corp.test")
    assert st == 200 and doc["migration"]["state"] == "done", doc
    wait_for(lambda: len(log_lines(m, "migration_notice.deferred")) >= 2, 20,
             "two deferred attempts")
    n = notice_of(m, "gw1")
    assert n["state"] == "pending" and n["tries"] >= 2 and n["next_try"] is not None, n
    assert "Connection refused" in n["reply"], n
    assert 'to=ops@corp.test' in log_lines(m, "migration_notice.deferred")[0]
    assert ctl_migration_cell(m).endswith(", mail pending"), ctl_migration_cell(m)

    # the relay comes up but answers 451 for a while: still pending, the reply kept
    relay.handler.default_rcpt_reply = "451 4.3.0 not now"
    relay.start()
    wait_for(lambda: len(relay.handler.rcpt_log) >= 2, 20, "two refused attempts")
    wait_for(lambda: notice_of(m, "gw1")["reply"] == "451 4.3.0 not now", 10, "the 451 kept")
    assert notice_of(m, "gw1")["state"] == "pending" and relay.count() == 0

    relay.handler.default_rcpt_reply = None
    relay.wait_count(1, timeout=20)
    assert stays(lambda: relay.count() == 1, t(4))
    (mail,) = mails(relay)
    assert mail["To"] == "ops@corp.test"
    assert mail["Subject"] == "[Lazaret] 移行完了 / Migration finished: gw1"
    assert "Total:    3" in mail.get_content()
    wait_for(lambda: notice_of(m, "gw1")["state"] == "sent", 10, "the notice marked sent")
    n = notice_of(m, "gw1")
    assert n["reply"] is None and n["next_try"] is None and n["tries"] >= 4, n
    assert len(log_lines(m, "migration_notice.sent")) == 1
    assert ctl_migration_cell(m).startswith("migrated ")
    assert "mail" not in ctl_migration_cell(m)
    # the gateway's retry of its "done" changes nothing
    st, doc = report(m, tok, state="done", total=3, done=3, notify="ops@corp.test")
    assert st == 200, doc
    assert stays(lambda: relay.count() == 1, t(2))


def test_done_mail_pending_over_a_restart_arrives_once(start_manager, aio_sink_factory):
    relay = aio_sink_factory(start=False)
    m = fast_manager(start_manager, relay)
    tok = add(m, "gw1", "192.0.2.10")
    st, doc = report(m, tok, state="done", total=7, done=6, failed=1, notify="ops@corp.test")
    assert st == 200, doc
    wait_for(lambda: log_lines(m, "migration_notice.deferred"), 20, "a deferred attempt")
    m.stop()
    relay.start()
    time.sleep(2)  # its next attempt (1 s after the last) is due
    # restarted without the fast retries: the notice left pending goes out at start
    m.start()
    relay.wait_count(1, timeout=20)
    assert stays(lambda: relay.count() == 1, t(4))
    assert relay.messages[0]["rcpts"] == ["ops@corp.test"]
    assert "Moved:    6" in mails(relay)[0].get_content()
    wait_for(lambda: notice_of(m, "gw1")["state"] == "sent", 10, "the notice marked sent")
    m.restart()
    assert stays(lambda: relay.count() == 1, t(3))
    assert notice_of(m, "gw1")["state"] == "sent"


def test_done_mail_refused_for_good_is_logged_and_not_retried(start_manager, aio_sink):
    aio_sink.handler.default_rcpt_reply = "554 5.7.1 relaying denied"
    m = fast_manager(start_manager, aio_sink)
    tok = add(m, "gw1", "192.0.2.10")
    st, doc = report(m, tok, state="done", total=1, done=1, notify="ops@corp.test")
    assert st == 200, doc
    wait_for(lambda: log_lines(m, "migration_notice.failed"), 20, "the failure logged")
    (line,) = log_lines(m, "migration_notice.failed")
    for part in ("error", "gateway=gw1", "to=ops@corp.test", "reason=rejected",
                 "relay=primary", 'reply="554 5.7.1 relaying denied"', "retry=no"):
        assert part in line, (part, line)
    n = notice_of(m, "gw1")
    assert n == {"to": "ops@corp.test", "state": "failed", "tries": 1, "next_try": None,
                 "last_try": n["last_try"], "reply": "554 5.7.1 relaying denied"}, n
    # ticks come every second: none of them tries it again
    assert stays(lambda: len(aio_sink.handler.rcpt_log) == 1, t(4))
    assert aio_sink.count() == 0 and not log_lines(m, "migration_notice.deferred")
    m.restart()
    assert stays(lambda: len(aio_sink.handler.rcpt_log) == 1, t(2))
    assert notice_of(m, "gw1")["state"] == "failed"
    assert ctl_migration_cell(m).endswith(", mail failed"), ctl_migration_cell(m)


def test_done_mail_goes_to_the_secondary_when_the_primary_is_down(start_manager,
                                                                   aio_sink_factory):
    primary = aio_sink_factory(start=False)
    secondary = aio_sink_factory()
    m = start_manager(primary_host=primary.host, secondary_host=secondary.host,
                      notifications__from="lazaret@corp.test")
    tok = add(m, "gw1", "192.0.2.10")
    st, doc = report(m, tok, state="done", total=1, done=1, notify="ops@corp.test")
    assert st == 200, doc
    secondary.wait_count(1)
    wait_for(lambda: notice_of(m, "gw1")["state"] == "sent", 10, "the notice marked sent")
    assert notice_of(m, "gw1")["tries"] == 1
    (line,) = log_lines(m, "migration_notice.sent")
    assert "relay=secondary" in line, line


# ---- remapping (PV6: remove from the central quarantine, commit again) ------------------

def test_remap_empties_and_deletes_the_migrated_quarantine_then_maps_again(manager):
    tok = add(manager, "gw-e2e", "127.0.0.1")  # the PVO listener lets its address in
    st, doc = manager.api("PUT", "/api/v1/gateways/gw-e2e/mapping", json={"A": "X"})
    assert st == 200, doc
    st, doc = report(manager, tok, total=2, done=0)
    assert st == 200, doc
    # the gateway's transfers of its local quarantine A, named X as mapped
    ids = []
    for i in range(2):
        raw = pvo_message(["X-Lazaret-Quarantine: X; reason=\"rule A\"; entered=%s; "
                           "expires=%s" % (rfc3339_in(-3600), rfc3339_in(86400)),
                           "X-Lazaret-Origin-Id: mig-%d" % i], subject="migrated %d" % i)
        ids.append(stored_id(*pvo_send(manager, raw)))
    st, doc = report(manager, tok, total=2, done=2, state="done")
    assert st == 200 and doc["migration"]["state"] == "done", doc
    st, doc = manager.api("GET", "/api/v1/quarantines")
    (x,) = [q for q in doc["quarantines"] if q["name"] == "X"]
    assert (x["type"], x["messages"]) == ("policy", 2), x
    st, doc = manager.api("GET", "/api/v1/messages?quarantine=X")
    assert sorted(m["id"] for m in doc["messages"]) == sorted(ids), doc

    # X holds messages: it stays
    st, doc = manager.api("DELETE", "/api/v1/quarantines/X")
    assert (st, error(doc)) == (409, "the quarantine still holds messages")
    for mid in ids:
        st, doc = manager.api("POST", "/api/v1/messages/%s/delete" % mid,
                              json={"quarantine": "X"})
        assert st == 200, doc
    st, doc = manager.api("DELETE", "/api/v1/quarantines/X")
    assert (st, doc) == (200, {}), doc
    st, doc = manager.api("GET", "/api/v1/quarantines")
    assert "X" not in [q["name"] for q in doc["quarantines"]]
    st, doc = manager.api("PUT", "/api/v1/gateways/gw-e2e/mapping", json={"A": "Y"})
    assert (st, doc) == (200, {"gateway": "gw-e2e", "mode": "custom", "mapping": {"A": "Y"}})
    st, doc = gw_call(manager, "GET", "/api/v1/gateway/mapping", tok)
    assert (st, doc) == (200, {"mode": "custom", "mapping": {"A": "Y"}})


# ---- lazaretctl ------------------------------------------------------------------------

def test_lazaretctl_gateway_mapping_and_list(manager):
    from test_lazaretctl import ctl
    tok = add(manager, "gw1", "192.0.2.10")
    rc, out, err = ctl(manager, "gateway", "mapping", "gw1")
    assert (rc, out.decode()) == (0, "gateway gw1: automatic mapping\n"), err
    rc, out, err = ctl(manager, "gateway", "mapping", "gw1", "Confidential=Legal",
                       "Old Stuff=", "Virus=VIRUS")
    assert rc == 0, err
    assert out.decode().splitlines() == [
        "gateway gw1: custom mapping", "  Confidential -> Legal",
        "  Old Stuff -> (not migrated: deleted on the gateway)", "  Virus -> virus"]
    assert mapping_of(manager, "gw1")["mapping"] == {
        "Confidential": "Legal", "Old Stuff": None, "Virus": "virus"}
    rc, out, err = ctl(manager, "gateway", "mapping", "gw1", "--json")
    assert rc == 0 and json.loads(out)["mode"] == "custom", err

    # refusals: the server's message (exit 1), the command line's (exit 2)
    rc, out, err = ctl(manager, "gateway", "mapping", "gw1", "A=spam")
    assert (rc, err.strip()) == (
        1, 'lazaretctl: "A": the central quarantine cannot be spam (bad_request, HTTP 400)')
    rc, out, err = ctl(manager, "gateway", "mapping", "gw1", "nopair")
    assert rc == 2 and 'a mapping pair is LOCAL=CENTRAL or LOCAL= (not "nopair")' in err, err
    rc, out, err = ctl(manager, "gateway", "mapping", "gw1", "A=B", "A=C")
    assert rc == 2 and '"A=C" is mapped twice' in err, err
    rc, out, err = ctl(manager, "gateway", "mapping", "gw1", "--automatic", "A=B")
    assert rc == 2 and "--automatic takes no LOCAL=CENTRAL pairs" in err, err
    rc, out, err = ctl(manager, "gateway", "list", "--automatic")
    assert rc == 2 and "--automatic is for gateway mapping" in err, err
    rc, out, err = ctl(manager, "gateway", "mapping", "nosuch")
    assert (rc, err.strip()) == (1, "lazaretctl: no such gateway (not_found, HTTP 404)")
    assert mapping_of(manager, "gw1")["mode"] == "custom"

    def migration_cell():
        rc, out, err = ctl(manager, "gateway", "list")
        assert rc == 0, err
        # NAME STATE ADDRESS GROUP CLUSTER LAST-SEEN(2) VERSION, then MIGRATION
        return out.decode().splitlines()[1].split(None, 7)[7]

    assert migration_cell() == "-"
    report(manager, tok, total=20000, done=1200, failed=3)
    assert migration_cell() == "migrating 1200/20000 (3 failed)"
    rc, out, err = ctl(manager, "gateway", "mapping", "gw1", "--automatic")
    assert (rc, err.strip()) == (
        1, "lazaretctl: gateway gw1 is migrating (1200/20000); change the mapping when it "
           "has finished (conflict, HTTP 409)")
    st, doc = report(manager, tok, total=20000, done=19997, failed=3, state="done")
    fin = doc["migration"]["finished_at"]
    assert migration_cell() == "migrated %s %s (3 failed)" % (fin[:10], fin[11:19])
    rc, out, err = ctl(manager, "gateway", "mapping", "gw1", "--automatic")
    assert (rc, out.decode()) == (0, "gateway gw1: automatic mapping\n"), err

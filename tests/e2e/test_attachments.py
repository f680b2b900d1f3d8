"""Attachments and message bodies as the REST API hands them out, against the real lazaretd.

Admins download an attachment's decoded bytes as an opaque file (never rendered
by a browser: application/octet-stream, Content-Disposition: attachment with the
Japanese name percent-encoded). The raw message and attachments are both
downloads under one policy (`[spam_quarantine] download_min_role`, admins by
default): whoever is refused one is refused the other with the same answer, and
each download leaves exactly one audit row. With
`[spam_quarantine] hide_bodies_until_released = yes` an end user sees no text,
no raw bytes and only the summary headers of a message until it is released for
them; admins and operators see everything; SIGHUP turns the setting on and off.
"""

import json
import os
import subprocess
import urllib.parse

from e2e_helpers import make_attachment_message, make_message, t, wait_for
from test_sessions import Client, add_user, audit

# RFC 5987 attr-chars besides letters and digits: everything else is %XX.
ATTR_CHARS = "!#$&+-.^_`|~"
NOT_FOUND_ATTACHMENT = {"error": {"code": "not_found", "message": "no such attachment"}}
HIDDEN_ERROR = {"error": {"code": "forbidden",
                          "message": "message bodies are hidden until released"}}
SUMMARY_HEADERS = {"from", "to", "subject", "date"}


def disposition(fallback, name):
    return "attachment; filename=\"%s\"; filename*=UTF-8''%s" % (
        fallback, urllib.parse.quote(name.encode("utf-8"), safe=ATTR_CHARS))


def attachment_path(msg_id, index):
    return "/api/v1/messages/%s/attachments/%s" % (msg_id, index)


def login(m, username, password, role, addresses=()):
    add_user(m, username, password, role, addresses)
    c = Client(m)
    st, doc = c.login(username, password)
    assert st == 200, doc
    return c


def get_bytes(m, path, client=None):
    """(status, headers, body) of a GET with the Bearer token, or client's session cookie."""
    if client is None:
        return m.http("GET", path)
    return m.http("GET", path, token=None, headers={"Cookie": client.cookie})


# ---- downloads -------------------------------------------------------------------------

PDF_NAME = "請求書 2026年11月.pdf"
PDF_BYTES = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\r\n\x00\xff<script>alert(1)</script>"
HTML_NAME = 'evil"name%.html'
HTML_BYTES = b"<html><script>window.pwned=1</script></html>\n"


def test_admin_downloads_the_decoded_attachment(manager):
    raw = make_attachment_message("添付ファイルのテスト", [
        (PDF_NAME, "application/pdf", PDF_BYTES),
        (HTML_NAME, "text/html", HTML_BYTES),
    ])
    assert b"Content-Transfer-Encoding: base64" in raw  # the PDF travels base64-encoded
    mid = manager.send("sender@example.jp", ["user@corp.test"], raw)
    detail = manager.get_message(mid)
    atts = detail["attachments"]
    assert [a["filename"] for a in atts] == [PDF_NAME, HTML_NAME]
    assert atts[0]["size"] == len(PDF_BYTES)

    st, hdrs, body = get_bytes(manager, attachment_path(mid, 0))
    assert st == 200, body[:300]
    assert body == PDF_BYTES  # base64 decoded, byte for byte
    assert hdrs["Content-Type"] == "application/octet-stream"
    assert hdrs["X-Content-Type-Options"] == "nosniff"
    assert hdrs["Content-Disposition"] == disposition("_ 2026_11_.pdf", PDF_NAME)
    assert int(hdrs["Content-Length"]) == len(PDF_BYTES)

    # An HTML attachment is a file to save, not a page: never its own type.
    st, hdrs, body = get_bytes(manager, attachment_path(mid, 1))
    assert st == 200 and body == HTML_BYTES
    assert hdrs["Content-Type"] == "application/octet-stream"
    assert hdrs["Content-Disposition"] == disposition("evil_name_.html", HTML_NAME)

    # An admin's session cookie (the web console's link) works the same way.
    boss = login(manager, "boss", "boss-password-1", "admin")
    st, hdrs, body = get_bytes(manager, attachment_path(mid, 0), client=boss)
    assert st == 200 and body == PDF_BYTES

    rows = [r for r in audit(manager) if r["action"] == "download"]
    assert [(r["actor"], r["target"]) for r in reversed(rows)] == \
        [("token", mid), ("token", mid), ("boss", mid)]
    assert rows[0]["detail"] == {"what": "attachment", "attachment": 0, "filename": PDF_NAME,
                                 "size": len(PDF_BYTES)}
    assert "api.download" in manager.log_text()


def test_each_download_is_audited_once(manager):
    raw = make_attachment_message("audited", [(PDF_NAME, "application/pdf", PDF_BYTES)])
    mid = manager.send("sender@example.jp", ["user@corp.test"], raw)
    boss = login(manager, "boss", "boss-password-1", "admin")
    before = len(audit(manager, 1000))

    st, _, body = get_bytes(manager, "/api/v1/messages/%s/raw" % mid, client=boss)
    assert st == 200 and body == raw
    rows = audit(manager, 1000)
    assert len(rows) == before + 1
    assert (rows[0]["actor"], rows[0]["action"], rows[0]["target"], rows[0]["detail"]) == \
        ("boss", "download", mid, {"what": "raw", "size": len(raw)})

    st, _, body = get_bytes(manager, attachment_path(mid, 0), client=boss)
    assert st == 200 and body == PDF_BYTES
    rows = audit(manager, 1000)
    assert len(rows) == before + 2
    assert (rows[0]["actor"], rows[0]["action"], rows[0]["target"], rows[0]["detail"]) == \
        ("boss", "download", mid, {"what": "attachment", "attachment": 0,
                                    "filename": PDF_NAME, "size": len(PDF_BYTES)})
    # The Bearer token (a script) downloads under the same rule and the same audit.
    st, _, body = get_bytes(manager, "/api/v1/messages/%s/raw" % mid)
    assert st == 200 and body == raw
    rows = audit(manager, 1000)
    assert len(rows) == before + 3 and rows[0]["actor"] == "token"
    assert rows[0]["detail"] == {"what": "raw", "size": len(raw)}
    # A refused download leaves no row.
    st, _, _ = get_bytes(manager, attachment_path(mid, 5), client=boss)
    assert st == 404
    assert len(audit(manager, 1000)) == before + 3


def test_raw_and_attachments_follow_one_policy(start_manager):
    """Whoever is refused an attachment is refused the raw message, with the same answer."""
    m = start_manager(spam_quarantine__download_min_role="enduser",
                      spam_quarantine__hide_bodies_until_released="yes")
    raw = make_attachment_message("for alice", [("見積書.xlsx", "application/octet-stream",
                                                 b"PK\x03\x04secret")], to="alice@corp.test")
    mine = m.send("sender@example.jp", ["alice@corp.test"], raw)
    bobs = m.send("sender@example.jp", ["bob@corp.test"], raw)
    alice = login(m, "alice", "alice-pw-123", "enduser", ["alice@corp.test"])
    operator = login(m, "opal", "operator-pw-1", "operator")
    # Hidden until released: both refused alike.
    for path in (attachment_path(mine, 0), "/api/v1/messages/%s/raw" % mine):
        assert alice.call("GET", path) == (403, HIDDEN_ERROR), path
    # Someone else's message: both look like an unknown one.
    for path in (attachment_path(bobs, 0), "/api/v1/messages/%s/raw" % bobs):
        assert alice.call("GET", path) == \
            (404, {"error": {"code": "not_found", "message": "no such message"}}), path
    # Operators are above end users: both allowed.
    for path, want in ((attachment_path(bobs, 0), b"PK\x03\x04secret"),
                       ("/api/v1/messages/%s/raw" % bobs, raw)):
        st, _, body = get_bytes(m, path, client=operator)
        assert (st, body) == (200, want), path
    assert [(r["actor"], r["detail"]["what"]) for r in audit(m) if r["action"] == "download"] \
        == [("opal", "raw"), ("opal", "attachment")]


def test_downloads_are_for_admins_only(manager):
    raw = make_attachment_message("for alice", [("見積書.xlsx", "application/octet-stream",
                                                 b"PK\x03\x04secret")], to="alice@corp.test")
    mid = manager.send("sender@example.jp", ["alice@corp.test"], raw)
    plain = manager.send("sender@example.jp", ["alice@corp.test"],
                         make_message(to="alice@corp.test"))
    operator = login(manager, "opal", "operator-pw-1", "operator")
    alice = login(manager, "alice", "alice-pw-123", "enduser", ["alice@corp.test"])
    # alice may read the message itself, attachments listed, but not download.
    st, doc = alice.call("GET", "/api/v1/messages/%s" % mid)
    assert st == 200 and [a["filename"] for a in doc["attachments"]] == ["見積書.xlsx"]
    unknown_id = "01930000-0000-7000-8000-0000000000ff"
    for who, name in ((operator, "opal"), (alice, "alice")):
        want = {"error": {"code": "forbidden", "message": "not allowed for role of %s" % name}}
        # The raw message holds the attachment: refused alike, for any id, known or not.
        for path in (attachment_path(mid, 0), "/api/v1/messages/%s/raw" % mid,
                     attachment_path(unknown_id, 0), "/api/v1/messages/%s/raw" % unknown_id):
            st, _, body = get_bytes(manager, path, client=who)
            assert st == 403 and json.loads(body) == want, (name, path, body)
            assert b"PK" not in body
    for path in (attachment_path(mid, 0), "/api/v1/messages/%s/raw" % mid):
        st, _, _ = manager.http("GET", path, token=None)
        assert st == 401

    cases = [
        (attachment_path(mid, 1), NOT_FOUND_ATTACHMENT),       # past the last one
        (attachment_path(mid, 999999999), NOT_FOUND_ATTACHMENT),
        (attachment_path(plain, 0), NOT_FOUND_ATTACHMENT),     # a message without any
        (attachment_path(mid, "01"), NOT_FOUND_ATTACHMENT),    # not the canonical number
        (attachment_path(mid, "-1"), NOT_FOUND_ATTACHMENT),
        (attachment_path(mid, "x"), NOT_FOUND_ATTACHMENT),
        (attachment_path(mid, "1234567890"), NOT_FOUND_ATTACHMENT),
        (attachment_path(unknown_id, 0), {"error": {"code": "not_found",
                                                    "message": "no such message"}}),
        (attachment_path("not-an-id", 0), {"error": {"code": "not_found",
                                                     "message": "no such message"}}),
    ]
    for path, want in cases:
        st, doc = manager.api("GET", path)
        assert (st, doc) == (404, want), path
    assert manager.api("GET", "/api/v1/messages/%s/raw" % unknown_id) == \
        (404, {"error": {"code": "not_found", "message": "no such message"}})
    # Nothing was handed out, so nothing was recorded.
    assert [r for r in audit(manager) if r["action"] == "download"] == []


# ---- hide bodies until released ----------------------------------------------------------


def secret_message(to):
    return make_message(subject="本文は秘密", to=to, body="the secret body text\r\n",
                        extra_headers=[("Received", "from relay.example.jp by mx"),
                                       ("X-Internal-Note", "do not show")])


def assert_hidden(doc):
    assert doc["body_hidden"] is True
    for key in ("text_body", "text_body_truncated", "text_body_from_html"):
        assert key not in doc, key
    names = {h["name"].lower() for h in doc["headers"]}
    assert names == SUMMARY_HEADERS, names
    assert "the secret body text" not in str(doc)
    assert doc["subject"] == "本文は秘密"


def assert_shown(doc):
    assert doc["body_hidden"] is False
    assert doc["text_body"] == "the secret body text"
    names = {h["name"].lower() for h in doc["headers"]}
    assert {"received", "x-internal-note"} <= names


def test_hidden_bodies_until_the_end_user_releases(start_manager, aio_sink):
    m = start_manager(spam_quarantine__hide_bodies_until_released="yes",
                      spam_quarantine__download_min_role="enduser",
                      primary_host=aio_sink.host)
    mine = m.send("spam@example.jp", ["alice@corp.test"], secret_message("alice@corp.test"))
    shared = m.send("spam@example.jp", ["alice@corp.test", "bob@corp.test"],
                    secret_message("alice@corp.test, bob@corp.test"))
    alice = login(m, "alice", "alice-pw-123", "enduser", ["alice@corp.test"])
    operator = login(m, "opal", "operator-pw-1", "operator")

    for mid in (mine, shared):
        st, doc = alice.call("GET", "/api/v1/messages/%s" % mid)
        assert st == 200
        assert_hidden(doc)
        st, doc = alice.call("GET", "/api/v1/messages/%s/raw" % mid)
        assert (st, doc) == (403, HIDDEN_ERROR)
        # Admins and operators are not affected.
        assert_shown(m.get_message(mid))
        st, doc = operator.call("GET", "/api/v1/messages/%s" % mid)
        assert st == 200
        assert_shown(doc)
        st, _, raw = get_bytes(m, "/api/v1/messages/%s/raw" % mid, client=operator)
        assert st == 200 and b"the secret body text" in raw

    # bob's copy of the shared message is released: alice's is not, so hers stays hidden.
    assert m.api("POST", "/api/v1/messages/%s/release" % shared,
                 json={"recipients": ["bob@corp.test"]})[0] == 202
    aio_sink.wait_count(1, timeout=30)
    wait_for(lambda: {r["address"]: r["state"] for r in m.get_message(shared)["recipients"]}
             ["bob@corp.test"] == "released", 15, "bob's release")
    st, doc = alice.call("GET", "/api/v1/messages/%s" % shared)
    assert st == 200
    assert_hidden(doc)

    # alice releases her own: once delivered, she may read it.
    st, doc = alice.call("POST", "/api/v1/messages/%s/release" % mine)
    assert st == 202, doc
    wait_for(lambda: m.get_message(mine)["recipients"][0]["state"] == "released", 15,
             "alice's release")
    st, doc = alice.call("GET", "/api/v1/messages/%s" % mine)
    assert st == 200
    assert_shown(doc)
    st, _, raw = get_bytes(m, "/api/v1/messages/%s/raw" % mine, client=alice)
    assert st == 200 and b"the secret body text" in raw and b"X-Internal-Note" in raw


def test_sighup_turns_hidden_bodies_on_and_off(start_manager):
    manager = start_manager(spam_quarantine__download_min_role="enduser")
    mid = manager.send("spam@example.jp", ["alice@corp.test"], secret_message("alice@corp.test"))
    alice = login(manager, "alice", "alice-pw-123", "enduser", ["alice@corp.test"])
    st, doc = alice.call("GET", "/api/v1/messages/%s" % mid)
    assert st == 200
    assert_shown(doc)  # off by default
    assert alice.call("GET", "/api/v1/messages/%s/raw" % mid)[0] == 200

    manager.reload(spam_quarantine__hide_bodies_until_released="yes")
    wait_for(lambda: alice.call("GET", "/api/v1/messages/%s" % mid)[1]["body_hidden"], 10,
             "the reload to hide bodies")
    assert_hidden(alice.call("GET", "/api/v1/messages/%s" % mid)[1])
    assert alice.call("GET", "/api/v1/messages/%s/raw" % mid) == (403, HIDDEN_ERROR)
    assert_shown(manager.get_message(mid))

    manager.reload(spam_quarantine__hide_bodies_until_released="no")
    wait_for(lambda: not alice.call("GET", "/api/v1/messages/%s" % mid)[1]["body_hidden"], 10,
             "the reload to show bodies again")
    assert_shown(alice.call("GET", "/api/v1/messages/%s" % mid)[1])
    assert alice.call("GET", "/api/v1/messages/%s/raw" % mid)[0] == 200


def test_hide_bodies_takes_yes_or_no_only(start_manager, build_dir):
    m = start_manager(start=False, spam_quarantine__hide_bodies_until_released="sometimes")
    m.write_config()
    r = subprocess.run([os.path.join(build_dir, "lazaretd"), "-c", m.conf_path,
                        "--check-config"], capture_output=True, text=True, timeout=t(20))
    assert r.returncode == 1
    assert "[spam_quarantine] hide_bodies_until_released" in r.stderr, r.stderr

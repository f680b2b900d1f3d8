"""The REST API as an admin or script sees it: listing, details, raw bytes, errors, paging."""

import base64
import json
import time
import urllib.parse

import pytest

from e2e_helpers import (RFC3339_RE, UUID_RE, make_attachment_message, make_message,
                         parse_rfc3339, rfc3339)

MESSAGE_KEYS = {"id", "quarantine", "received_at", "sender", "recipients", "from", "subject",
                "size", "verdict", "score", "gateway", "expires_at"}


def q(**kw):
    return urllib.parse.urlencode(kw)


def encoded_word(text, charset):
    """An RFC 2047 B-encoded word of text in charset (written by hand: Python's email
    package would convert Shift_JIS and EUC-JP to ISO-2022-JP)."""
    return "=?%s?B?%s?=" % (charset.upper(), base64.b64encode(text.encode(charset)).decode())


def ids_of(doc):
    return [m["id"] for m in doc["messages"]]


def listing(m, **kw):
    st, doc = m.api("GET", "/api/v1/messages?" + q(**kw))
    assert st == 200, (st, doc)
    assert set(doc) >= {"messages", "next_cursor"}, doc
    return doc


def assert_error(st, doc, status):
    assert st == status, (st, doc)
    assert isinstance(doc, dict) and isinstance(doc.get("error"), dict), doc
    assert isinstance(doc["error"].get("code"), str) and doc["error"]["code"], doc
    assert isinstance(doc["error"].get("message"), str) and doc["error"]["message"], doc


def header_value(detail, name):
    """The value of a header in the detail's "headers" (list of objects, pairs, or a map)."""
    hs = detail["headers"]
    vals = []
    if isinstance(hs, dict):
        for k, v in hs.items():
            if k.lower() == name.lower():
                vals += v if isinstance(v, list) else [v]
    else:
        for h in hs:
            if isinstance(h, dict):
                k, v = h.get("name"), h.get("value")
            else:
                k, v = h[0], h[1]
            if k.lower() == name.lower():
                vals.append(v)
    return vals


# ---------------------------------------------------------------------------

def test_healthz_and_metrics_names(manager):
    st, _, _ = manager.http("GET", "/healthz", token=None)
    assert st == 200
    text = manager.metrics_text()
    for name in ("lazaret_messages_received_total", "lazaret_released_total",
                 "lazaret_release_failed_total", "lazaret_expired_total",
                 "lazaret_purged_total", "lazaret_store_messages",
                 "lazaret_release_queue_depth"):
        assert "\n%s " % name in "\n" + text, name
        assert "# TYPE %s " % name in text, name
    assert 'lazaret_smtp_refused_total{reason="acl"} ' in text


def test_metrics_count_what_happened(start_manager):
    m = start_manager(accept_from="127.0.0.1/32")
    base = m.metrics()
    m.send("a@example.jp", ["u1@corp.test", "u2@corp.test"], make_message("metrics 1"))
    m.send("a@example.jp", ["u1@corp.test"], make_message("metrics 2"))
    try:
        m.smtp(source_address="127.0.0.2")
    except Exception:
        pass
    now = m.metrics()

    def delta(k):
        return now.get(k, 0) - base.get(k, 0)
    assert delta("lazaret_messages_received_total") == 2
    assert delta('lazaret_smtp_refused_total{reason="acl"}') == 1
    assert now["lazaret_store_messages"] == 2
    assert now["lazaret_release_queue_depth"] == 0


def test_auth_required(manager):
    manager.send("a@example.jp", ["u@corp.test"], make_message("auth"))
    for path in ("/api/v1/messages", "/api/v1/quarantines"):
        st, doc = manager.api("GET", path, token=None)
        assert_error(st, doc, 401)
        st, doc = manager.api("GET", path, token="wrong-" + manager.token)
        assert_error(st, doc, 401)
        st, doc = manager.api("GET", path, token=manager.token[:-1])
        assert_error(st, doc, 401)
    st, _, body = manager.http("GET", "/api/v1/messages",
                               token=None, headers={"Authorization": "Basic " +
                                                    base64.b64encode(b"admin:" + manager.token.encode()).decode()})
    assert st == 401
    # Changes are refused too, and nothing changes.
    mid = manager.list_all()[0]["id"]
    st, doc = manager.api("POST", "/api/v1/messages/%s/delete" % mid, json={}, token=None)
    assert_error(st, doc, 401)
    assert manager.get_message(mid)["recipients"][0]["state"] == "quarantined"


def test_stored_message_fields(manager):
    subject = "【重要】請求書のご案内 Invoice"
    raw = make_message(subject, sender="Yamada <yamada@example.jp>",
                       extra_headers=[("X-Lazaret-Gateway", "gw-tokyo-1"),
                                      ("X-Lazaret-Verdict", "suspect"),
                                      ("X-Lazaret-Score", "7.5"),
                                      ("X-Lazaret-Client-Address", "203.0.113.9")])
    assert b"=?iso-2022-jp?" in raw.lower()
    before = time.time()
    mid = manager.send("bounce@example.jp", ["taro@corp.test", "hanako@corp.test"], raw)
    after = time.time()
    doc = listing(manager)
    assert ids_of(doc) == [mid]
    assert doc["next_cursor"] is None
    msg = doc["messages"][0]
    assert MESSAGE_KEYS <= set(msg), MESSAGE_KEYS - set(msg)
    assert UUID_RE.match(msg["id"])
    assert msg["quarantine"] == "spam"
    assert RFC3339_RE.match(msg["received_at"]) and msg["received_at"].endswith("Z")
    assert before - 2 <= parse_rfc3339(msg["received_at"]) <= after + 2
    assert msg["sender"] == "bounce@example.jp"
    assert sorted((r["address"], r["state"]) for r in msg["recipients"]) == \
        [("hanako@corp.test", "quarantined"), ("taro@corp.test", "quarantined")]
    assert msg["subject"] == subject
    assert "yamada@example.jp" in msg["from"]
    assert msg["size"] == len(raw)
    assert msg["verdict"] == "suspect"
    assert msg["score"] == pytest.approx(7.5)
    assert msg["gateway"] == "gw-tokyo-1"
    # expires_at = received_at + delete_after (14d by default)
    exp = parse_rfc3339(msg["expires_at"]) - parse_rfc3339(msg["received_at"])
    assert abs(exp - 14 * 86400) <= 2, exp
    # The detail is the same message plus headers and attachments.
    detail = manager.get_message(mid)
    for k in MESSAGE_KEYS:
        assert detail[k] == msg[k], k
    assert isinstance(detail["attachments"], list) and detail["attachments"] == []
    assert header_value(detail, "Subject") == [subject]
    assert header_value(detail, "X-Lazaret-Gateway") == ["gw-tokyo-1"]


def test_raw_is_byte_exact(manager):
    body = (b"line one\r\n.starts with a dot\r\n..two dots\r\n"
            b"8bit: \xe6\x97\xa5\xe6\x9c\xac\r\nbare\nlf inside\r\ntrailing spaces   \r\n\r\n\r\n")
    raw = make_message("raw bytes", body=body)
    mid = manager.send("a@example.jp", ["u@corp.test"], raw)
    st, headers, got = manager.http("GET", "/api/v1/messages/%s/raw" % mid)
    assert st == 200
    ctype = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    assert ctype.split(";")[0].strip() == "message/rfc822", ctype
    assert got == raw
    assert manager.get_message(mid)["size"] == len(raw)


@pytest.mark.parametrize("charset", ["iso-2022-jp", "shift_jis", "euc-jp", "utf-8"])
def test_japanese_subjects_are_decoded(manager, charset):
    subject = "日本語の件名テスト"
    # Folded into two encoded words, as mailers do for long subjects.
    enc = encoded_word(subject[:4], charset) + "\r\n " + encoded_word(subject[4:], charset)
    mid = manager.send("a@example.jp", ["u@corp.test"],
                       make_message(subject_raw=enc,
                                    sender=encoded_word("差出人", charset) + " <a@example.jp>"))
    msg = manager.get_message(mid)
    assert msg["subject"] == subject
    assert msg["from"].startswith("差出人")


def test_raw_8bit_shift_jis_subject(manager):
    subject = "生のシフトJIS件名"
    raw = (b"From: a@example.jp\r\nTo: u@corp.test\r\nSubject: " + subject.encode("shift_jis") +
           b"\r\nContent-Type: text/plain; charset=Shift_JIS\r\n\r\nbody\r\n")
    mid = manager.send("a@example.jp", ["u@corp.test"], raw)
    assert manager.get_message(mid)["subject"] == subject


def test_iso2022jp_halfwidth_katakana(manager):
    """JIS X 0201 katakana (ESC ( I) inside ISO-2022-JP, as Windows mailers send it
    (CP50221), between kanji and ASCII: the subject and the body text are decoded to
    half-width katakana, with no escape bytes left, and the subject is searchable."""
    kanji, kana, ascii = b"\x1b$B@A5a=q", b"\x1b(I6]@^", b"\x1b(B"  # 請求書, ｶﾝﾀﾞ
    # The katakana follow ESC ( B here: glibc's ISO-2022-JP passes ESC ( I through
    # in ASCII mode without an error, the case that used to show raw escapes.
    words = (b"=?ISO-2022-JP?B?" + base64.b64encode(kanji + ascii + kana + ascii + b" OK") +
             b"?=\r\n =?ISO-2022-JP?B?" + base64.b64encode(b"\x1b(I1" + ascii) + b"?=")
    raw = (b"From: a@example.jp\r\nTo: u@corp.test\r\nSubject: " + words + b"\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n\r\n" +
           kana + ascii + b" No.1\r\n" + kanji + kana + ascii + b"\r\n")
    other = manager.send("b@example.jp", ["u@corp.test"], make_message("カンダ 請求書"))
    mid = manager.send("a@example.jp", ["u@corp.test"], raw)
    subject = "請求書ｶﾝﾀﾞ OKｱ"
    doc = listing(manager)
    listed = {m["id"]: m["subject"] for m in doc["messages"]}
    assert listed == {mid: subject, other: "カンダ 請求書"}, listed
    assert ids_of(listing(manager, subject="ｶﾝﾀﾞ")) == [mid]
    assert ids_of(listing(manager, subject="書ｶﾝ")) == [mid]
    assert ids_of(listing(manager, subject="請求書")) == [mid, other]
    detail = manager.get_message(mid)
    assert detail["subject"] == subject
    assert detail["text_body"] == "ｶﾝﾀﾞ No.1\n請求書ｶﾝﾀﾞ", detail["text_body"]
    assert header_value(detail, "Subject") == [subject]
    assert "\x1b" not in json.dumps(detail, ensure_ascii=False)


def test_verdict_from_spamassassin_headers(manager):
    raw = make_message("sa", extra_headers=[
        ("X-Spam-Flag", "YES"),
        ("X-Spam-Score", "12.3"),
        ("X-Spam-Status", "Yes, score=12.3 required=5.0 tests=BAYES_99,URIBL_BLACK\r\n\tautolearn=no")])
    mid = manager.send("a@example.jp", ["u@corp.test"], raw)
    msg = manager.get_message(mid)
    assert msg["verdict"] == "spam"
    assert msg["score"] == pytest.approx(12.3)
    assert msg["gateway"] == "127.0.0.1"


def test_verdict_from_rspamd_header(manager):
    raw = make_message("rspamd", extra_headers=[
        ("X-Spamd-Result", "default: True [15.20 / 15.00];\r\n\tBAYES_SPAM(5.10)[99.99%]")])
    mid = manager.send("a@example.jp", ["u@corp.test"], raw)
    msg = manager.get_message(mid)
    assert msg["verdict"] == "spam"
    assert msg["score"] == pytest.approx(15.2)


def test_defaults_without_any_verdict_header(manager):
    mid = manager.send("a@example.jp", ["u@corp.test"], make_message("no verdict"))
    msg = manager.get_message(mid)
    assert msg["verdict"] == "spam"
    assert msg["gateway"] == "127.0.0.1"


def test_x_lazaret_headers_win_over_spamassassin(manager):
    raw = make_message("both", extra_headers=[
        ("X-Lazaret-Verdict", "suspect"), ("X-Lazaret-Score", "3.5"),
        ("X-Spam-Status", "Yes, score=20.0 required=5.0")])
    msg = manager.get_message(manager.send("a@example.jp", ["u@corp.test"], raw))
    assert msg["verdict"] == "suspect"
    assert msg["score"] == pytest.approx(3.5)


def test_attachments_with_japanese_names(manager):
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 8
    raw = make_attachment_message("添付ファイル", [
        ("見積書.pdf", "application/pdf", pdf),
        ("report.csv", "text/csv", b"a,b\n1,2\n"),
    ])
    assert b"filename*=" in raw  # RFC 2231
    # Also the RFC 2047 form many Japanese mailers write.
    import email.header
    enc_name = email.header.Header("請求書.zip", "iso-2022-jp").encode()
    boundary = raw.split(b'boundary="', 1)[1].split(b'"', 1)[0]
    extra = (b"--" + boundary + b"\r\nContent-Type: application/zip; name=\"" +
             enc_name.encode() + b"\"\r\nContent-Transfer-Encoding: base64\r\n"
             b"Content-Disposition: attachment; filename=\"" + enc_name.encode() + b"\"\r\n\r\n" +
             base64.b64encode(b"PK\x03\x04zipdata") + b"\r\n")
    raw = raw.replace(b"--" + boundary + b"--", extra + b"--" + boundary + b"--")
    mid = manager.send("a@example.jp", ["u@corp.test"], raw)
    detail = manager.get_message(mid)
    atts = {a["filename"]: a for a in detail["attachments"]}
    assert set(atts) == {"見積書.pdf", "report.csv", "請求書.zip"}, detail["attachments"]
    assert atts["見積書.pdf"]["content_type"] == "application/pdf"
    assert atts["見積書.pdf"]["size"] == len(pdf)
    assert atts["report.csv"]["content_type"] == "text/csv"
    assert atts["請求書.zip"]["size"] == len(b"PK\x03\x04zipdata")
    assert detail["subject"] == "添付ファイル"
    assert manager.http("GET", "/api/v1/messages/%s/raw" % mid)[2] == raw


def test_unknown_ids(manager):
    manager.send("a@example.jp", ["u@corp.test"], make_message("exists"))
    unknown = "0190a0b0-0000-7000-8000-000000000000"
    for path in ("/api/v1/messages/%s" % unknown, "/api/v1/messages/%s/raw" % unknown,
                 "/api/v1/messages/not-an-id"):
        st, doc = manager.api("GET", path)
        assert_error(st, doc, 404)
    st, doc = manager.api("POST", "/api/v1/messages/%s/release" % unknown, json={})
    assert_error(st, doc, 404)
    st, doc = manager.api("POST", "/api/v1/messages/%s/delete" % unknown, json={})
    assert_error(st, doc, 404)


def test_quarantines(manager):
    r1 = make_message("q1")
    r2 = make_message("q2", body="x" * 500 + "\r\n")
    manager.send("a@example.jp", ["u@corp.test"], r1)
    manager.send("a@example.jp", ["u@corp.test"], r2)
    st, doc = manager.api("GET", "/api/v1/quarantines")
    assert st == 200, doc
    spam = [x for x in doc["quarantines"] if x["type"] == "spam"]
    assert len(spam) == 1, doc
    assert set(spam[0]) >= {"name", "type", "messages", "bytes"}
    assert spam[0]["messages"] == 2
    assert spam[0]["bytes"] == len(r1) + len(r2)


# ---------------------------------------------------------------------------
# Filters and paging

@pytest.fixture
def corpus(manager):
    """Three messages with different senders, recipients, subjects, verdicts, gateways."""
    m = manager
    ids = {}
    ids["m1"] = m.send("alice@example.jp", ["user1@corp.test"], make_message(
        "請求書のご案内 INVOICE-A", sender="alice@example.jp",
        extra_headers=[("X-Lazaret-Gateway", "gw1"), ("X-Lazaret-Verdict", "spam")]))
    ids["m2"] = m.send("bob@other.test", ["user2@corp.test"], make_message(
        "Meeting notes", sender="bob@other.test",
        extra_headers=[("X-Lazaret-Gateway", "gw2"), ("X-Lazaret-Verdict", "suspect")]))
    ids["m3"] = m.send("alice@example.jp", ["user1@corp.test", "user2@corp.test"], make_message(
        "お知らせ invoice-b", sender="alice@example.jp",
        extra_headers=[("X-Lazaret-Gateway", "gw1"), ("X-Lazaret-Verdict", "suspect")]))
    return m, ids


@pytest.mark.parametrize("query,expected", [
    ({}, ["m3", "m2", "m1"]),
    ({"recipient": "user1@corp.test"}, ["m3", "m1"]),
    ({"recipient": "USER1@Corp.Test"}, ["m3", "m1"]),
    ({"recipient": "user2@corp.test"}, ["m3", "m2"]),
    ({"recipient": "nobody@corp.test"}, []),
    ({"sender": "alice@example.jp"}, ["m3", "m1"]),
    ({"sender": "bob@other.test"}, ["m2"]),
    ({"subject": "invoice"}, ["m3", "m1"]),
    ({"subject": "INVOICE-b"}, ["m3"]),
    ({"subject": "請求書"}, ["m1"]),
    ({"subject": "お知らせ"}, ["m3"]),
    ({"subject": "meeting"}, ["m2"]),
    ({"subject": "存在しない"}, []),
    ({"verdict": "suspect"}, ["m3", "m2"]),
    ({"verdict": "spam"}, ["m1"]),
    ({"gateway": "gw1"}, ["m3", "m1"]),
    ({"gateway": "gw2"}, ["m2"]),
    ({"quarantine": "spam"}, ["m3", "m2", "m1"]),
    ({"recipient": "user2@corp.test", "verdict": "suspect", "gateway": "gw1"}, ["m3"]),
    ({"sender": "alice@example.jp", "subject": "請求"}, ["m1"]),
])
def test_filters(corpus, query, expected):
    m, ids = corpus
    doc = listing(m, **query)
    assert ids_of(doc) == [ids[k] for k in expected]


def test_since_until(manager):
    def next_second():
        now = time.time()
        time.sleep(int(now) + 1.05 - now)

    old = manager.send("a@example.jp", ["u@corp.test"], make_message("old one"))
    next_second()
    boundary = rfc3339(int(time.time()))
    next_second()
    new = manager.send("a@example.jp", ["u@corp.test"], make_message("new one"))
    assert ids_of(listing(manager, since=boundary)) == [new]
    assert ids_of(listing(manager, until=boundary)) == [old]
    assert ids_of(listing(manager, since="2000-01-01T00:00:00Z")) == [new, old]
    assert ids_of(listing(manager, since=rfc3339(time.time() + 3600))) == []
    assert ids_of(listing(manager, until="2000-01-01T00:00:00Z")) == []
    # Another offset means the same instant.
    t0 = parse_rfc3339(boundary)
    jst = time.strftime("%Y-%m-%dT%H:%M:%S+09:00", time.gmtime(t0 + 9 * 3600))
    assert ids_of(listing(manager, since=jst)) == [new]


def test_keyset_paging(manager):
    sent = [manager.send("p@example.jp", ["u@corp.test"], make_message("page %d" % i))
            for i in range(5)]
    seen = []
    cursor = None
    pages = 0
    while True:
        kw = {"limit": 2}
        if cursor:
            kw["cursor"] = cursor
        doc = listing(manager, **kw)
        pages += 1
        assert len(doc["messages"]) <= 2
        seen += ids_of(doc)
        cursor = doc["next_cursor"]
        if cursor is None:
            break
        assert pages < 10
    assert pages == 3
    assert seen == list(reversed(sent)), "newest first, no duplicates, nothing missing"
    # A message arriving between pages does not shift the rest of the listing.
    doc1 = listing(manager, limit=2)
    manager.send("p@example.jp", ["u@corp.test"], make_message("late arrival"))
    doc2 = listing(manager, limit=2, cursor=doc1["next_cursor"])
    assert ids_of(doc2) == list(reversed(sent))[2:4]


def test_paging_with_a_filter(manager):
    want = []
    for i in range(6):
        mid = manager.send("f@example.jp" if i % 2 else "g@example.jp", ["u@corp.test"],
                           make_message("filtered page %d" % i))
        if i % 2:
            want.append(mid)
    seen, cursor = [], None
    for _ in range(10):
        kw = {"limit": 1, "sender": "f@example.jp"}
        if cursor:
            kw["cursor"] = cursor
        doc = listing(manager, **kw)
        seen += ids_of(doc)
        cursor = doc["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(want))


def test_default_limit_is_50(manager):
    s = manager.smtp()
    s.ehlo("x")
    for i in range(55):
        manager.send("d@example.jp", ["u@corp.test"], make_message("default %d" % i), conn=s)
    s.quit()
    doc = listing(manager)
    assert len(doc["messages"]) == 50
    assert doc["next_cursor"]
    doc = listing(manager, cursor=doc["next_cursor"])
    assert len(doc["messages"]) == 5 and doc["next_cursor"] is None
    assert len(listing(manager, limit=1000)["messages"]) == 55


@pytest.mark.parametrize("query", [
    "limit=0", "limit=1001", "limit=-1", "limit=abc", "since=yesterday",
    "until=2026-13-45T00:00:00Z", "since=1700000000",
])
def test_bad_query_parameters(manager, query):
    st, doc = manager.api("GET", "/api/v1/messages?" + query)
    assert_error(st, doc, 400)


def test_limit_bounds_accepted(manager):
    manager.send("a@example.jp", ["u@corp.test"], make_message("bounds"))
    assert len(listing(manager, limit=1)["messages"]) == 1
    assert len(listing(manager, limit=1000)["messages"]) == 1


def test_delete_recipients_and_whole_message(manager):
    mid = manager.send("a@example.jp", ["u1@corp.test", "u2@corp.test", "u3@corp.test"],
                       make_message("to delete"))
    st, doc = manager.api("POST", "/api/v1/messages/%s/delete" % mid,
                          json={"recipients": ["u2@corp.test"]})
    assert st == 200, doc
    assert doc["id"] == mid
    states = {r["address"]: r["state"] for r in doc["recipients"]}
    assert states == {"u1@corp.test": "quarantined", "u2@corp.test": "deleted",
                      "u3@corp.test": "quarantined"}
    # Listing by the deleted recipient's state is visible to the admin as well.
    states = {r["address"]: r["state"] for r in manager.get_message(mid)["recipients"]}
    assert states["u2@corp.test"] == "deleted"
    # No body: every recipient still quarantined.
    st, doc = manager.api("POST", "/api/v1/messages/%s/delete" % mid)
    assert st == 200, doc
    assert {r["state"] for r in doc["recipients"]} == {"deleted"}
    assert manager.metric("lazaret_deleted_total") == 3


def test_delete_unknown_recipient_is_a_client_error(manager):
    mid = manager.send("a@example.jp", ["u1@corp.test"], make_message("x"))
    st, doc = manager.api("POST", "/api/v1/messages/%s/delete" % mid,
                          json={"recipients": ["stranger@corp.test"]})
    assert 400 <= st < 500, (st, doc)
    assert_error(st, doc, st)
    assert manager.get_message(mid)["recipients"][0]["state"] == "quarantined"


@pytest.mark.parametrize("body", [b"{not json", b'{"recipients": "u1@corp.test"}',
                                  b'{"recipients": [1, 2]}', b"[]"])
def test_bad_request_bodies(manager, body):
    mid = manager.send("a@example.jp", ["u1@corp.test"], make_message("bad body"))
    st, _, raw = manager.http("POST", "/api/v1/messages/%s/delete" % mid, body=body)
    assert 400 <= st < 500, (st, raw)
    doc = json.loads(raw)
    assert_error(st, doc, st)
    assert manager.get_message(mid)["recipients"][0]["state"] == "quarantined"


def test_request_body_limit(start_manager):
    m = start_manager(max_body="1K")
    mid = m.send("a@example.jp", ["u1@corp.test"], make_message("body limit"))
    body = json.dumps({"recipients": ["u1@corp.test"] * 200}).encode()
    assert len(body) > 1024
    st, _, raw = m.http("POST", "/api/v1/messages/%s/delete" % mid, body=body)
    assert st == 413, (st, raw)
    assert m.get_message(mid)["recipients"][0]["state"] == "quarantined"

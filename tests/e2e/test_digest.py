"""End users' spam digests as the end user sees them: the mail, its links, the schedule.

The digest goes out through the release path, so the aiosmtpd sink playing the
groupware (primary_host) receives both the digests and the mail released from them.
"""

import email
import email.policy
import json
import re
import time
import urllib.error
import urllib.request

from e2e_helpers import make_message, stays, t, wait_for

LINK_RE = re.compile(r"http://127\.0\.0\.1:\d+/d/[A-Za-z0-9_-]+")
DIGEST_FROM = "digest@corp.test"


def start(start_manager, sink, **overrides):
    conf = dict(primary_host=sink.host, notifications__enabled="yes",
                notifications__from=DIGEST_FROM, notifications__schedule="daily 09:00",
                notifications__time_zone="Asia/Tokyo")
    conf.update(overrides)
    return start_manager(**conf)


def add_enduser(m, username, addresses, password="pw-" + "x" * 12):
    st, doc = m.api("POST", "/api/v1/users", json={
        "username": username, "password": password, "role": "enduser",
        "addresses": addresses})
    assert st in (200, 201), (st, doc)
    return password


class Session:
    """A logged-in end user: session cookie and CSRF token."""

    def __init__(self, m, username, password):
        self.m = m
        req = urllib.request.Request(
            m.http_url + "/api/v1/session", method="POST",
            data=json.dumps({"username": username, "password": password}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=t(10)) as r:
            assert r.status == 200
            self.cookie = r.headers["Set-Cookie"].split(";", 1)[0]
            self.csrf = json.loads(r.read())["csrf_token"]


def session_call(m, s, method, path, body=None):
    st, _, raw = m.http(method, path, body=body, token=None,
                        headers={"Cookie": s.cookie, "X-CSRF-Token": s.csrf})
    return st, (json.loads(raw) if raw else None)


def send_now(m, address, expect=202):
    st, doc = m.api("POST", "/api/v1/digests/send", json={"address": address})
    assert st == expect, (st, doc)


def parse(data):
    return email.message_from_bytes(data, policy=email.policy.default)


def parts(msg):
    """(text, html) of a digest, decoded."""
    assert msg.get_content_type() == "multipart/alternative", msg.get_content_type()
    text = msg.get_body(preferencelist=("plain",)).get_content()
    html = msg.get_body(preferencelist=("html",)).get_content()
    return text, html


def entry_links(text, subject):
    """(release URL, safelist URL) of the entry with this subject in the text part."""
    for block in text.split("\n\n"):
        if subject in block:
            links = LINK_RE.findall(block)
            assert len(links) == 2, block
            return links[0], links[1]
    raise AssertionError("no entry for %r in:\n%s" % (subject, text))


def page(url, method="GET"):
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=t(10)) as r:
            return r.status, dict(r.headers.items()), r.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers.items()), e.read().decode("utf-8")


def states(m, mid):
    return {r["address"]: r["state"] for r in m.get_message(mid)["recipients"]}


def digests(sink):
    return [d for d in sink.messages if d["sender"] == DIGEST_FROM]


# ---------------------------------------------------------------------------

def test_digest_consolidates_aliases_and_links_work_once(start_manager, aio_sink):
    m = start(start_manager, aio_sink)
    add_enduser(m, "taro", ["taro@corp.test", "Yamada@corp.test"])
    m1 = m.send("news@ok.example", ["taro@corp.test"], make_message("週末のご案内"))
    m2 = m.send("spammer@bad.example", ["yamada@corp.test"],
                make_message("<script>alert(1)</script> WIN", sender="spammer@bad.example"))
    m3 = m.send("x@bad.example", ["other@corp.test"], make_message("not for taro"))

    send_now(m, "yamada@corp.test")  # an alias finds the account and all its addresses
    aio_sink.wait_count(1)
    time.sleep(t(0.5))
    assert len(digests(aio_sink)) == 1, "one digest per user, not one per alias"
    d = digests(aio_sink)[0]
    assert d["rcpts"] == ["taro@corp.test"]
    msg = parse(d["data"])
    assert msg["Subject"] == "[Lazaret] 隔離されたメッセージ: 2 件"
    assert "=?UTF-8?B?" in d["data"].decode("ascii")  # RFC 2047, 7-bit on the wire
    assert msg["Message-ID"] and msg["Date"] and msg["MIME-Version"] == "1.0"
    text, html = parts(msg)
    assert "週末のご案内" in text and "週末のご案内" in html
    assert "<script>alert(1)</script> WIN" in text
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; WIN" in html
    assert "not for taro" not in text
    assert "JST" in text

    release_url, _ = entry_links(text, "週末のご案内")
    _, safelist_url = entry_links(text, "<script>alert(1)</script> WIN")

    # GET only shows a confirmation form: mail scanners fetch links.
    st, hdrs, body = page(release_url)
    assert st == 200, body
    assert '<form method="post"' in body and "<script" not in body.lower()
    assert hdrs["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in hdrs["Content-Security-Policy"]
    assert states(m, m1) == {"taro@corp.test": "quarantined"}
    assert stays(lambda: len(aio_sink.messages) == 1, t(0.5))

    # A tampered token is refused, and changes nothing.
    tok = release_url.rsplit("/", 1)[1]
    mid = len(tok) // 2
    bad = release_url[:-len(tok)] + tok[:mid] + ("A" if tok[mid] != "A" else "B") + tok[mid + 1:]
    assert page(bad)[0] == 403
    st, _, body = page(bad, "POST")
    assert st == 403 and "無効" in body
    assert states(m, m1) == {"taro@corp.test": "quarantined"}

    # POST releases it, once.
    st, _, body = page(release_url, "POST")
    assert st == 200, body
    aio_sink.wait_count(2)
    released = [x for x in aio_sink.messages if x["sender"] == "news@ok.example"]
    assert len(released) == 1 and released[0]["rcpts"] == ["taro@corp.test"]
    wait_for(lambda: states(m, m1) == {"taro@corp.test": "released"}, 10, "released")
    st, _, body = page(release_url, "POST")
    assert st == 410, body
    assert page(release_url)[0] == 410
    assert stays(lambda: aio_sink.count() == 2, t(1.0)), "released twice"

    # Safelist link: the sender goes onto the recipient's safelist.
    assert page(safelist_url)[0] == 200
    st, _, body = page(safelist_url, "POST")
    assert st == 200, body
    st, doc = m.api("GET", "/api/v1/slbl/yamada@corp.test")
    assert st == 200, (st, doc)
    assert "spammer@bad.example" in doc["safelist"]
    assert states(m, m2) == {"yamada@corp.test": "quarantined"}  # safelisting releases nothing

    # Nothing new since the last digest: no mail. A later digest proves the queue ran.
    send_now(m, "taro@corp.test")
    m4 = m.send("later@ok.example", ["other@corp.test"], make_message("for the other one"))
    send_now(m, "other@corp.test")
    wait_for(lambda: len(digests(aio_sink)) >= 2, 15, "the second digest")
    assert stays(lambda: len(digests(aio_sink)) == 2, t(1.0))
    d2 = digests(aio_sink)[1]
    assert d2["rcpts"] == ["other@corp.test"]
    text2, _ = parts(parse(d2["data"]))
    assert "not for taro" in text2 and "for the other one" in text2
    assert m3 and m4


def test_digest_language_per_user(start_manager, aio_sink):
    m = start(start_manager, aio_sink, notifications__language="en",
              notifications__time_zone="Europe/Berlin")
    pw = add_enduser(m, "hanako", ["hanako@corp.test"])
    s = Session(m, "hanako", pw)
    st, doc = session_call(m, s, "PUT", "/api/v1/me", {"language": "ja", "time_zone": "Asia/Tokyo"})
    assert st == 200, (st, doc)
    m.send("a@bad.example", ["hanako@corp.test"], make_message("件名テスト"))
    m.send("b@bad.example", ["nobody@corp.test"], make_message("plain subject"))

    # The end user asks for her own digest (session + CSRF token).
    st, doc = session_call(m, s, "POST", "/api/v1/me/digest")
    assert st == 202, (st, doc)
    wait_for(lambda: len(digests(aio_sink)) == 1, 15, "hanako's digest")
    msg = parse(digests(aio_sink)[0]["data"])
    assert msg["Subject"] == "[Lazaret] 隔離されたメッセージ: 1 件"
    text, html = parts(msg)
    assert "件名テスト" in text and "JST" in text and 'lang="ja"' in html

    # No account: the configured language (en) and zone (Berlin).
    send_now(m, "nobody@corp.test")
    wait_for(lambda: len(digests(aio_sink)) == 2, 15, "nobody's digest")
    msg = parse(digests(aio_sink)[1]["data"])
    assert msg["Subject"] == "[Lazaret] Quarantine digest: 1 new message"
    text, html = parts(msg)
    assert "plain subject" in text and re.search(r"\d\d:\d\d CES?T", text), text
    release_url, _ = entry_links(text, "plain subject")
    st, _, body = page(release_url)
    assert st == 200 and "Deliver this message" in body

    # Without credentials, or with a session without CSRF token: refused.
    st, _, _ = m.http("POST", "/api/v1/digests/send", body={"address": "x@corp.test"}, token=None)
    assert st == 401
    st, _, _ = m.http("POST", "/api/v1/me/digest", token=None, headers={"Cookie": s.cookie})
    assert st == 403
    st, doc = m.api("POST", "/api/v1/digests/send", json={"address": "not an address"})
    assert st == 422, (st, doc)


def test_scheduled_digest_lists_each_message_once(start_manager, aio_sink):
    m = start(start_manager, aio_sink, notifications__schedule="every 2s")
    m.send("a@bad.example", ["sched@corp.test"], make_message("first run"))
    wait_for(lambda: len(digests(aio_sink)) == 1, 15, "the scheduled digest")
    text, _ = parts(parse(digests(aio_sink)[0]["data"]))
    assert "first run" in text
    # Two more runs go by: nothing new, no mail.
    assert stays(lambda: len(digests(aio_sink)) == 1, t(5.0))
    m.send("b@bad.example", ["sched@corp.test"], make_message("second run"))
    wait_for(lambda: len(digests(aio_sink)) == 2, 15, "the next scheduled digest")
    text, _ = parts(parse(digests(aio_sink)[1]["data"]))
    assert "second run" in text and "first run" not in text


def test_digest_waits_for_the_next_run_when_the_mail_server_is_down(start_manager,
                                                                    aio_sink_factory):
    from e2e_helpers import free_port
    port = free_port()
    m = start_manager(primary_host="127.0.0.1:%d" % port, notifications__enabled="yes",
                      notifications__from=DIGEST_FROM, notifications__schedule="every 2s")
    m.send("a@bad.example", ["down@corp.test"], make_message("kept for later"))
    wait_for(lambda: "notify.send_attempt" in m.log_text(), 15, "a failed attempt")
    sink = aio_sink_factory(port=port)
    wait_for(lambda: len(digests(sink)) == 1, 15, "the digest after the outage")
    text, _ = parts(parse(digests(sink)[0]["data"]))
    assert "kept for later" in text
    assert stays(lambda: len(digests(sink)) == 1, t(3.0))


# ---------------------------------------------------------------------------
# The single-use nonce table, on its own.

def decode_token(tok):
    """The fields of a link token (layout in src/digest/digest_token.c)."""
    import base64
    raw = base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4))
    rlen = raw[3 + 8 + 16 + 36]
    body_len = 3 + 8 + 16 + 36 + 1 + rlen
    assert len(raw) == body_len + 32, len(raw)
    return {"version": raw[0], "action": raw[1], "lang": raw[2], "expiry": raw[3:11],
            "nonce": raw[11:27], "msg_id": raw[27:63].decode(),
            "rcpt": raw[64:64 + rlen].decode()}


def mint_token(key, f):
    """A token signed with the manager's key as lazaretd signs them (libsodium
    crypto_auth: HMAC-SHA-512 truncated to 32 bytes)."""
    import base64
    import hashlib
    import hmac
    rcpt = f["rcpt"].encode()
    body = (bytes([f["version"], f["action"], f["lang"]]) + f["expiry"] + f["nonce"] +
            f["msg_id"].encode() + bytes([len(rcpt)]) + rcpt)
    mac = hmac.new(key, body, hashlib.sha512).digest()[:32]
    return base64.urlsafe_b64encode(body + mac).decode().rstrip("=")


def test_a_used_nonce_is_refused_whatever_the_link_names(start_manager, aio_sink):
    """A release link is single use through its nonce, not only because the recipient
    is no longer quarantined: a second token with the same nonce, correctly signed,
    for a recipient that IS still quarantined, is refused as used. Without the
    used_tokens check that token would release the message."""
    import os
    m = start(start_manager, aio_sink)
    add_enduser(m, "taro", ["taro@corp.test"])
    m1 = m.send("a@ok.example", ["taro@corp.test"], make_message("first one"))
    m2 = m.send("b@ok.example", ["taro@corp.test"], make_message("second one"))
    send_now(m, "taro@corp.test")
    aio_sink.wait_count(1)
    text, _ = parts(parse(digests(aio_sink)[0]["data"]))
    url1, _ = entry_links(text, "first one")
    url2, _ = entry_links(text, "second one")
    base = url1.rsplit("/", 1)[0] + "/"
    t1, t2 = decode_token(url1.rsplit("/", 1)[1]), decode_token(url2.rsplit("/", 1)[1])
    assert (t1["msg_id"], t1["rcpt"], t1["action"]) == (m1, "taro@corp.test", 1)
    assert (t2["msg_id"], t2["rcpt"], t2["action"]) == (m2, "taro@corp.test", 1)
    assert t1["nonce"] != t2["nonce"]
    with open(os.path.join(m.data_dir, "digest.key"), "rb") as f:
        key = f.read()
    assert len(key) == 32

    # The link works once; the second use is refused as used.
    st, _, body = page(url1, "POST")
    assert st == 200, body
    wait_for(lambda: states(m, m1) == {"taro@corp.test": "released"}, 10, "m1 released")
    st, _, body = page(url1, "POST")
    assert st == 410 and "このリンクはすでに使用されています。" in body, (st, body)

    # A token for m2 (still quarantined) that replays m1's used nonce: refused as
    # used, and m2 stays quarantined. Only the nonce table knows this nonce.
    replay = base + mint_token(key, dict(t2, nonce=t1["nonce"]))
    assert page(replay)[0] == 410
    st, _, body = page(replay, "POST")
    assert st == 410 and "このリンクはすでに使用されています。" in body, (st, body)
    assert states(m, m2) == {"taro@corp.test": "quarantined"}
    assert stays(lambda: len([x for x in aio_sink.messages
                              if x["sender"] == "b@ok.example"]) == 0, t(1.0))

    # Control: the same token with a nonce nobody used is accepted (the minting is
    # right, so the refusal above came from the nonce), and is then used in turn.
    fresh = base + mint_token(key, dict(t2, nonce=os.urandom(16)))
    st, _, body = page(fresh, "POST")
    assert st == 200, body
    wait_for(lambda: states(m, m2) == {"taro@corp.test": "released"}, 10, "m2 released")
    assert page(url2, "POST")[0] == 410

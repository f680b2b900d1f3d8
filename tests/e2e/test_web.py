"""The web application: static serving (types, caching, traversal, headers), the
message detail's text body, and the console and end-user portal driven in headless
Chromium (tests/browser/web_e2e.mjs, playwright-core with Debian's chromium): an
LDAP end user against a real slapd, and the release links of a digest mail.

The Tracking page runs against real lazaret-gw gateways pushing their events to the
manager (test_tracking.send_tracked_mail). Screenshots of every browser scenario land
in tests/e2e/artifacts/ (git-ignored).
"""

import email.policy
import html.parser
import json
import os
import shutil
import subprocess
import time
import urllib.parse

import pytest

import test_digest
import test_tracking
from conftest import REPO, ldap_manager
from e2e_helpers import jis_header, stays, t, wait_for
from gw_fixtures import make_message as gw_message
from gw_fixtures import start_gateway  # noqa: F401 (a fixture)
from test_events import push, register

WEB_ROOT = os.path.join(REPO, "web")
BROWSER_DIR = os.path.join(REPO, "tests", "browser")
ARTIFACTS = os.path.join(REPO, "tests", "e2e", "artifacts")
CHROMIUM = "/usr/bin/chromium"


def web_manager(start_manager, **overrides):
    return start_manager(http__web_root=WEB_ROOT, **overrides)


def message(subject, sender="sender@example.jp", to="user@corp.test", body="Hello.\r\n",
            content_type="text/plain; charset=us-ascii", from_header=None, cte=None):
    """A message as bytes; body (str) is encoded per content_type's charset."""
    try:
        subject.encode("ascii")
        subject_raw = subject
    except UnicodeEncodeError:
        subject_raw = jis_header(subject)
    charset = "us-ascii"
    if "charset=" in content_type:
        charset = content_type.split("charset=", 1)[1].strip()
    # Senders mean CP932 when they write Shift_JIS (①, ㈱); so does the manager.
    raw_body = body.encode("cp932" if charset.lower() == "shift_jis" else charset)
    head = [
        "From: %s" % (from_header or sender),
        "To: %s" % to,
        "Subject: %s" % subject_raw,
        "Date: Thu, 26 Nov 2026 10:00:00 +0900",
        "Message-ID: <%s@web.e2e.test>" % os.urandom(8).hex(),
        "MIME-Version: 1.0",
        "Content-Type: %s" % content_type,
    ]
    if cte:
        head.append("Content-Transfer-Encoding: %s" % cte)
    return "\r\n".join(head).encode("ascii") + b"\r\n\r\n" + raw_body


# ---- static files ------------------------------------------------------------------

def test_serves_the_application_with_types_and_security_headers(start_manager):
    m = web_manager(start_manager)
    cases = [
        ("/", "text/html; charset=utf-8", b"/js/app.js"),
        ("/messages", "text/html; charset=utf-8", b"/js/app.js"),
        ("/m/0190a0b0-0000-7000-8000-000000000000", "text/html; charset=utf-8", b"/app.css"),
        ("/login", "text/html; charset=utf-8", b"<div id=\"app\""),
        ("/tracking", "text/html; charset=utf-8", b"/js/app.js"),
        ("/tracking/message", "text/html; charset=utf-8", b"/js/app.js"),
        ("/reports", "text/html; charset=utf-8", b"/js/app.js"),
        ("/reports/incoming_domains", "text/html; charset=utf-8", b"/js/app.js"),
        ("/js/reports.js", "text/javascript; charset=utf-8", b"createElementNS"),
        ("/app.css", "text/css; charset=utf-8", b"--brand"),
        ("/js/app.js", "text/javascript; charset=utf-8", b"import"),
        ("/favicon.svg", "image/svg+xml", b"<svg"),
    ]
    for path, ctype, needle in cases:
        st, hdrs, body = m.http("GET", path, token=None)
        assert st == 200, (path, st, body[:200])
        assert hdrs["Content-Type"] == ctype, (path, hdrs)
        assert needle in body, path
        assert hdrs["Content-Security-Policy"] == "default-src 'self'"
        assert hdrs["X-Content-Type-Options"] == "nosniff"
        assert hdrs["X-Frame-Options"] == "DENY"
        assert hdrs.get("ETag") and hdrs.get("Last-Modified"), (path, hdrs)
    # The index never carries inline script or style (the CSP would block it).
    _, _, index = m.http("GET", "/", token=None)
    assert b"<script>" not in index and b"<style" not in index and b" style=" not in index
    # The API and the probes are untouched.
    assert m.http("GET", "/healthz", token=None)[0] == 200
    st, hdrs, body = m.http("GET", "/api/v1/quarantines", token=None)
    assert st == 401 and json.loads(body)["error"]["code"] == "unauthorized"
    st, _, body = m.http("GET", "/api/v1/nope", token=None)
    assert st in (401, 404) and json.loads(body)["error"]


def test_refuses_traversal_hidden_files_and_listings(start_manager):
    m = web_manager(start_manager)
    # Through a raw socket: urllib would normalise the dots away.
    import socket
    for path in ("/../etc/passwd", "/%2e%2e/etc/passwd", "/js/%2e%2e%2fapp.js", "/js/..%2F..%2Fetc",
                 "/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/js\\app.js", "/js/%5c..%5capp.js",
                 "/%00index.html", "/index.html%00.js", "/.git", "/js/.hidden.js", "/js/",
                 "//etc/passwd", "/api/v1", "/nope.js", "/app.css.bak", "/js/app.js~",
                 "/lazaretd.conf"):
        s = socket.create_connection(("127.0.0.1", m.http_port), timeout=t(10))
        s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        status = int(data.split(b" ", 2)[1])
        # libevent reads "//etc/passwd" as host "etc" and path "/passwd": a client route.
        index = status == 200 and path.startswith("//") and b'<div id="app"' in data
        assert status in (400, 404) or index, (path, data[:300])
        assert b"root:" not in data and b"import " not in data, path


def test_symlink_out_of_the_root_is_refused(start_manager, workdir):
    root = os.path.join(workdir, "web")
    shutil.copytree(WEB_ROOT, root)
    secret = os.path.join(workdir, "secret.txt")
    with open(secret, "w") as f:
        f.write("top secret\n")
    os.symlink(secret, os.path.join(root, "leak.txt"))
    m = start_manager(http__web_root=root)
    st, _, body = m.http("GET", "/leak.txt", token=None)
    assert st == 404 and b"top secret" not in body
    assert m.http("GET", "/app.css", token=None)[0] == 200


def raw_header_lines(m, path, name):
    """Every value of header name in the answer to GET path (urllib keeps only one)."""
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", m.http_port, timeout=t(10))
    c.request("GET", path)
    r = c.getresponse()
    r.read()
    c.close()
    return r.headers.get_all(name) or []


def test_conditional_requests_answer_304(start_manager):
    m = web_manager(start_manager)
    st, hdrs, body = m.http("GET", "/js/app.js", token=None)
    assert st == 200
    etag, modified = hdrs["ETag"], hdrs["Last-Modified"]
    assert raw_header_lines(m, "/js/app.js", "Cache-Control") == ["no-cache"]
    st, hdrs2, body2 = m.http("GET", "/js/app.js", token=None, headers={"If-None-Match": etag})
    assert st == 304 and body2 == b""
    st, _, _ = m.http("GET", "/js/app.js", token=None,
                      headers={"If-None-Match": '"other", ' + etag})
    assert st == 304
    st, _, _ = m.http("GET", "/js/app.js", token=None, headers={"If-Modified-Since": modified})
    assert st == 304
    st, _, body3 = m.http("GET", "/js/app.js", token=None, headers={"If-None-Match": '"stale"'})
    assert st == 200 and body3 == body


def test_without_web_root_nothing_is_served(start_manager):
    m = start_manager(http__web_root="")
    st, _, body = m.http("GET", "/", token=None)
    assert st == 404 and json.loads(body)["error"]["code"] == "not_found"
    assert m.http("GET", "/healthz", token=None)[0] == 200


def test_bad_web_root_is_a_config_error(start_manager, workdir, build_dir):
    m = start_manager(start=False, http__web_root=workdir)  # no index.html there
    m.write_config()
    r = subprocess.run([os.path.join(build_dir, "lazaretd"), "-c", m.conf_path, "--check-config"],
                       capture_output=True, text=True, timeout=t(20))
    assert r.returncode == 1
    assert "web_root" in r.stderr and "index.html" in r.stderr, r.stderr


# ---- text body ---------------------------------------------------------------------

def test_detail_has_the_decoded_text_body(start_manager):
    m = web_manager(start_manager)
    jp = m.send("a@example.jp", ["u@corp.test"],
                message("お見積もり", body="いつもお世話になっております。\r\n以上です。\r\n",
                        content_type="text/plain; charset=iso-2022-jp", cte="7bit"))
    sj = m.send("a@example.jp", ["u@corp.test"],
                message("sjis", body="ｶﾀｶﾅと表①㈱\r\n", content_type="text/plain; charset=shift_jis",
                        cte="8bit"))
    html = m.send("a@example.jp", ["u@corp.test"], message(
        "html only", content_type="text/html; charset=utf-8",
        body="<html><head><title>T</title><style>p{color:red}</style></head><body>"
             "<script>alert(1)</script><p>Hello &amp; <b>world</b></p>"
             "<img src=\"http://tracker.test/x.png\"><p>二行目&#x263A;</p></body></html>\r\n"))
    d = m.get_message(jp)
    assert d["text_body"] == "いつもお世話になっております。\n以上です。"
    assert d["text_body_from_html"] is False and d["text_body_truncated"] is False
    assert m.get_message(sj)["text_body"] == "ｶﾀｶﾅと表①㈱"
    h = m.get_message(html)
    assert h["text_body_from_html"] is True
    assert h["text_body"] == "Hello & world\n二行目\u263a", h["text_body"]
    for bad in ("alert", "color:red", "tracker.test", "<"):
        assert bad not in h["text_body"]


def test_text_body_is_capped_on_a_character_boundary(start_manager):
    m = web_manager(start_manager)
    body = ("あ" * 100 + "\r\n") * 1000  # 302,000 bytes of UTF-8
    mid = m.send("a@example.jp", ["u@corp.test"],
                 message("big", body=body, content_type="text/plain; charset=utf-8", cte="8bit"))
    d = m.get_message(mid)
    assert d["text_body_truncated"] is True
    text = d["text_body"]
    assert 200 * 1024 < len(text.encode("utf-8")) <= 256 * 1024
    assert set(text) == {"あ", "\n"} and text.endswith("あ")


# ---- module graph --------------------------------------------------------------------

def import_graph(directory):
    """(exit code, stdout lines) of tests/browser/import_graph.mjs over directory."""
    if shutil.which("node") is None:
        pytest.fail("node missing: run scripts/bootstrap (Debian package nodejs)")
    r = subprocess.run(["node", os.path.join(BROWSER_DIR, "import_graph.mjs"), directory],
                       capture_output=True, text=True, timeout=t(60), cwd=REPO)
    assert r.stderr == "", r.stderr
    return r.returncode, r.stdout.splitlines()


def test_web_modules_import_no_cycle():
    """The pages import session.js and badges.js, never app.js or each other back:
    modules in a cycle are evaluated in an order that depends on the entry point."""
    rc, lines = import_graph(os.path.join(WEB_ROOT, "js"))
    graph = {}
    for ln in lines:
        if " -> " in ln and not ln.startswith(("cycle:", "missing:")):
            name, deps = ln.split(" -> ", 1)
            graph[name] = [] if deps == "(none)" else deps.split(", ")
    assert rc == 0, "\n".join(lines)
    js = sorted(f for f in os.listdir(os.path.join(WEB_ROOT, "js")) if f.endswith(".js"))
    assert sorted(graph) == js
    assert {"session.js", "badges.js"} <= set(graph)
    # Only the shell imports the pages; nothing imports the shell.
    assert not [f for f, deps in graph.items() if "app.js" in deps]
    assert "messages.js" not in graph["message.js"] and "badges.js" in graph["message.js"]


def test_import_graph_check_fails_on_a_cycle(workdir):
    """The checker itself: a cycle (also through a re-export and a dynamic import)
    and a missing module are failures, named."""
    d = os.path.join(workdir, "js")
    os.makedirs(d)
    files = {
        "a.js": "// import { x } from './zzz.js';\nimport { b } from './b.js';\nexport const a = 1;\n",
        "b.js": "export { c } from './c.js';\nexport const b = 2;\n",
        "c.js": "export const c = () => import('./a.js');\n",
        "d.js": "import './gone.js';\n",
    }
    for name, src in files.items():
        with open(os.path.join(d, name), "w") as f:
            f.write(src)
    rc, lines = import_graph(d)
    assert rc == 1, lines
    assert "a.js -> b.js" in lines and "c.js -> a.js" in lines, lines
    assert "cycle: a.js -> b.js -> c.js -> a.js" in lines, lines
    assert "missing: d.js imports ./gone.js" in lines, lines
    assert not [ln for ln in lines if "zzz" in ln], lines  # comments are not imports
    os.remove(os.path.join(d, "c.js"))
    os.remove(os.path.join(d, "d.js"))
    with open(os.path.join(d, "b.js"), "w") as f:
        f.write("export const b = 2;\n")
    rc, lines = import_graph(d)
    assert rc == 0 and lines == ["a.js -> b.js", "b.js -> (none)"], lines


# ---- in the browser ----------------------------------------------------------------

def run_browser(scenario, url, params, timeout=180):
    if not os.path.exists(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")):
        pytest.fail("playwright-core missing: run scripts/bootstrap (npm ci in tests/browser)")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail("%s missing: run scripts/bootstrap (Debian package chromium)" % CHROMIUM)
    env = dict(os.environ, LAZARET_URL=url, LAZARET_ARTIFACTS=ARTIFACTS,
               LAZARET_PARAMS=json.dumps(params),
               LAZARET_TIMEOUT_MS=str(int(t(15) * 1000)))
    r = subprocess.run(["node", os.path.join(BROWSER_DIR, "web_e2e.mjs"), scenario],
                       capture_output=True, text=True, timeout=t(timeout), env=env, cwd=REPO)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert lines, "no result from the browser driver (exit %d):\n%s\n%s" % (
        r.returncode, r.stdout[-3000:], r.stderr[-3000:])
    res = json.loads(lines[-1])
    assert r.returncode == 0 and res["ok"], json.dumps(res, ensure_ascii=False, indent=1)[-6000:]
    assert res["dialogs"] == [] and res["console_errors"] == []
    for path in res["screenshots"]:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", path
    return res


def sessions_available(m):
    st, _ = m.api("GET", "/api/v1/session", token=None)
    return st == 401  # 404 means the server has no sessions


def add_user(m, username, password, role, addresses):
    st, doc = m.api("POST", "/api/v1/users", json={
        "username": username, "password": password, "role": role, "addresses": addresses})
    assert st in (200, 201), (st, doc)


def test_browser_login_page_in_both_languages(start_manager):
    m = web_manager(start_manager)
    params = {"username": "nobody", "bad_password": sessions_available(m)}
    res = run_browser("login-page", m.http_url, params)
    if params["bad_password"]:
        assert res["values"]["login_error_ja"] == "ユーザー名またはパスワードが正しくありません。"
        assert res["values"]["login_error_en"] == "The username or password is not correct."


PAYLOAD_SUBJECTS = ["<img src=x onerror=alert(1)>", "<script>window.__lazaretPwned=1</script>"]
PAYLOAD_FROM = "<script>alert(2)</script>"


def test_browser_admin_console(start_manager, aio_sink):
    m = web_manager(start_manager, primary_host=aio_sink.host)
    if not sessions_available(m):
        pytest.fail("the server has no sessions (POST /api/v1/session)")
    add_user(m, "admin1", "correct horse battery", "admin", [])
    taro = "taro@corp.test"
    target = m.send("billing@vendor.test", [taro], message(
        "請求書のご確認", sender="billing@vendor.test", to=taro,
        body="お支払い期限は月末です。\r\nよろしくお願いいたします。\r\n",
        content_type="text/plain; charset=iso-2022-jp", cte="7bit"))
    m.send("info@events.test", ["hanako@corp.test"], message("会議の案内", to="hanako@corp.test"))
    m.send("evil@spam.test", [taro], message(
        PAYLOAD_SUBJECTS[0], sender="evil@spam.test",
        from_header='"%s" <evil@spam.test>' % PAYLOAD_FROM,
        content_type="text/html; charset=utf-8",
        body="<script>window.__lazaretPwned=1</script><p>Click <a href=\"http://x.test/\">"
             "here</a> now</p><img src=x onerror=alert(3)>\r\n"))
    m.send("evil@spam.test", [taro], message(PAYLOAD_SUBJECTS[1], sender="evil@spam.test"))
    m.send("news@letters.test", [taro], message("Weekly newsletter", sender="news@letters.test"))
    res = run_browser("admin", m.http_url, {
        "username": "admin1", "password": "correct horse battery", "total": 5,
        "search": "請求書", "search_expect": ["請求書のご確認"],
        "release_subject": "請求書のご確認", "release_body_contains": "お支払い期限は月末です。",
        "payload_subjects": PAYLOAD_SUBJECTS, "payload_froms": [PAYLOAD_FROM],
        "payload_body_contains": "Click here now",
    })
    msgs = aio_sink.wait_count(1, timeout=30)
    assert len(msgs) == 1 and msgs[0]["rcpts"] == [taro]
    assert b"X-Lazaret-Released:" in msgs[0]["data"]
    wait_for(lambda: m.get_message(target)["recipients"][0]["state"] == "released", 15,
             "the release to be recorded")
    assert "配信" in res["values"]["release_status"]


def test_browser_enduser_portal(start_manager, aio_sink):
    m = web_manager(start_manager, primary_host=aio_sink.host)
    if not sessions_available(m):
        pytest.fail("the server has no sessions (POST /api/v1/session)")
    taro = "taro@corp.test"
    add_user(m, "taro", "taro-password-1", "enduser", [taro])
    m.send("sales@vendor.test", [taro], message(
        "見積もりのお願い", sender="sales@vendor.test", to=taro,
        body="添付の見積書をご確認ください。\r\n", content_type="text/plain; charset=iso-2022-jp",
        cte="7bit"))
    m.send("news@letters.test", [taro], message("Newsletter", sender="news@letters.test", to=taro))
    m.send("boss@corp.test", ["hanako@corp.test"], message("社外秘", to="hanako@corp.test"))
    res = run_browser("enduser", m.http_url, {
        "username": "taro", "password": "taro-password-1",
        "own_subjects": ["見積もりのお願い", "Newsletter"],
        "release_subject": "見積もりのお願い", "release_sender": "sales@vendor.test",
        "add_safe": "partner.example.jp", "add_block": ".spam.test",
    })
    msgs = aio_sink.wait_count(1, timeout=30)
    assert len(msgs) == 1 and msgs[0]["rcpts"] == [taro] and msgs[0]["sender"] == "sales@vendor.test"
    st, lists = m.api("GET", "/api/v1/slbl/%s" % taro)
    assert st == 200, (st, lists)
    assert "sales@vendor.test" in lists["safelist"] and "partner.example.jp" in lists["safelist"]
    assert lists["blocklist"] == [".spam.test"]
    assert "セーフリスト" in res["values"]["release_status"]


def test_browser_ldap_enduser(start_manager, slapd, aio_sink):
    """An end user from the directory (mail and mailAlternateAddress) in the portal."""
    m = ldap_manager(start_manager, slapd, http__web_root=WEB_ROOT, primary_host=aio_sink.host)
    # The directory has "Taro@corp.test" (mail) and "yamada@corp.test" (alternate).
    m.send("sales@vendor.test", ["taro@corp.test"], message(
        "見積書の送付", sender="sales@vendor.test", to="taro@corp.test",
        body="見積書を添付いたします。\r\n", content_type="text/plain; charset=iso-2022-jp",
        cte="7bit"))
    alias = m.send("partner@example.jp", ["yamada@corp.test"], message(
        "打ち合わせの件", sender="partner@example.jp", to="yamada@corp.test",
        body="来週の打ち合わせについてご連絡します。\r\n",
        content_type="text/plain; charset=iso-2022-jp", cte="7bit"))
    shared = m.send("all@corp.test", ["hanako@corp.test", "taro@corp.test"], message(
        "全社連絡", sender="all@corp.test", to="hanako@corp.test, taro@corp.test"))
    m.send("boss@corp.test", ["hanako@corp.test"], message("人事の件", to="hanako@corp.test"))
    res = run_browser("enduser-ldap", m.http_url, {
        "username": "taro", "password": "taro-ldap-pw",
        "own_subjects": ["見積書の送付", "打ち合わせの件", "全社連絡"],
        "own_addresses": ["taro@corp.test", "yamada@corp.test"],
        "release_subject": "打ち合わせの件", "release_body_contains": "来週の打ち合わせ",
        "add_safe": "partner.example.jp", "add_block": ".spam.test",
    })
    msgs = aio_sink.wait_count(1, timeout=30)
    assert len(msgs) == 1 and msgs[0]["rcpts"] == ["yamada@corp.test"], msgs
    assert msgs[0]["sender"] == "partner@example.jp" and b"X-Lazaret-Released:" in msgs[0]["data"]
    wait_for(lambda: test_digest.states(m, alias) == {"yamada@corp.test": "released"}, 15,
             "the release to be recorded")
    assert stays(lambda: aio_sink.count() == 1, t(1.0)), "delivered more than once"
    # The shared message stays whole: nobody released it, hanako's copy is untouched.
    assert test_digest.states(m, shared) == {"hanako@corp.test": "quarantined",
                                             "taro@corp.test": "quarantined"}
    assert "配信" in res["values"]["release_status"], res["values"]
    # The lists were saved under the account's primary address, the directory's mail.
    st, lists = m.api("GET", "/api/v1/slbl/taro@corp.test")
    assert st == 200, (st, lists)
    assert lists["safelist"] == ["partner.example.jp"] and lists["blocklist"] == [".spam.test"]


class DigestLinks(html.parser.HTMLParser):
    """The rows of a digest's HTML part: [(text of the row, [(href, link text)])]."""

    def __init__(self):
        super().__init__()
        self.rows = []
        self._href = None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append(["", []])
        elif tag == "a" and self.rows:
            self._href = dict(attrs).get("href")
            self.rows[-1][1].append([self._href, ""])

    def handle_endtag(self, tag):
        if tag == "a":
            self._href = None

    def handle_data(self, data):
        if not self.rows:
            return
        if self._href is not None:
            self.rows[-1][1][-1][1] += data
        else:
            self.rows[-1][0] += data


def digest_release_link(data, subject, label):
    """The HTML part of a digest (bytes as received): its content, and the href of the link
    labelled label in the row of subject."""
    msg = test_digest.parse(data)
    html_part = msg.get_body(preferencelist=("html",))
    assert html_part is not None and html_part.get_content_charset() == "utf-8"
    html = html_part.get_content()
    p = DigestLinks()
    p.feed(html)
    rows = [r for r in p.rows if subject in r[0]]
    assert len(rows) == 1, (subject, p.rows)
    hrefs = [href for href, text in rows[0][1] if text == label]
    assert len(hrefs) == 1, (label, rows[0])
    return html, hrefs[0]


def tamper(url):
    """The same link with one character in the middle of its token changed."""
    tok = url.rsplit("/", 1)[1]
    i = len(tok) // 2
    return url[:-len(tok)] + tok[:i] + ("A" if tok[i] != "A" else "B") + tok[i + 1:]


def test_browser_digest_release_links(start_manager, aio_sink):
    """A digest's release link opened in Chromium: confirm, release once, used, tampered."""
    m = test_digest.start(start_manager, aio_sink, notifications__language="en")
    users = {
        # hanako chose Japanese; john keeps the configured language (en).
        "ja": ("hanako", "hanako@corp.test", "請求書のご確認", "billing@vendor.test", "受信する（解放）"),
        "en": ("john", "john@corp.test", "Invoice 2026-11", "billing@vendor.test", "Release"),
    }
    pw = test_digest.add_enduser(m, "hanako", ["hanako@corp.test"])
    test_digest.add_enduser(m, "john", ["john@corp.test"])
    s = test_digest.Session(m, "hanako", pw)
    assert test_digest.session_call(m, s, "PUT", "/api/v1/me", {"language": "ja"})[0] == 200
    ids = {}
    for lang, (_, addr, subject, sender, _) in users.items():
        ids[lang] = m.send(sender, [addr], message(subject, sender=sender, to=addr))
        # A second message in each digest: only the one clicked is released.
        m.send("news@letters.test", [addr], message("Newsletter " + lang, to=addr,
                                                     sender="news@letters.test"))
    links = {}
    for lang, (_, addr, subject, sender, label) in users.items():
        test_digest.send_now(m, addr)
        wait_for(lambda: any(d["rcpts"] == [addr] for d in test_digest.digests(aio_sink)), 15,
                 "the digest for " + addr)
        d = [d for d in test_digest.digests(aio_sink) if d["rcpts"] == [addr]]
        assert len(d) == 1
        html, url = digest_release_link(d[0]["data"], subject, label)
        assert url.startswith(m.http_url + "/d/"), url
        links[lang] = {"lang": lang, "url": url, "tampered": tamper(url), "subject": subject,
                       "sender": sender, "html": html}
    assert aio_sink.count() == 2
    res = run_browser("digest-links", m.http_url, {"links": [links["ja"], links["en"]]})
    # Each click released its message once: two digests and two released messages.
    wait_for(lambda: aio_sink.count() >= 4, 30, "the released messages")
    assert stays(lambda: aio_sink.count() == 4, t(1.5)), "delivered more than once"
    released = [x for x in aio_sink.messages if x["sender"] != test_digest.DIGEST_FROM]
    assert sorted(x["rcpts"][0] for x in released) == ["hanako@corp.test", "john@corp.test"]
    for x in released:
        msg = email.message_from_bytes(x["data"], policy=email.policy.default)
        lang = "ja" if x["rcpts"] == ["hanako@corp.test"] else "en"
        assert msg["Subject"] == users[lang][2] and b"X-Lazaret-Released:" in x["data"]
    for lang, mid in ids.items():
        assert test_digest.states(m, mid) == {users[lang][1]: "released"}
    assert res["values"]["status"] == {
        "ja": {"confirm": 200, "release": 200, "second_post": 410, "reopen": 410, "tampered": 403},
        "en": {"confirm": 200, "release": 200, "second_post": 410, "reopen": 410, "tampered": 403},
    }, res["values"]


def test_browser_attachment_download_and_hidden_body(start_manager):
    """The admin saves an attachment from the detail; the end user gets a note, no body."""
    from e2e_helpers import make_attachment_message
    m = web_manager(start_manager, spam_quarantine__hide_bodies_until_released="yes")
    add_user(m, "admin1", "correct horse battery", "admin", [])
    add_user(m, "taro", "taro-password-1", "enduser", ["taro@corp.test"])
    data = b"%PDF-1.4\n" + os.urandom(5000)
    mid = m.send("sales@vendor.test", ["taro@corp.test"], make_attachment_message(
        "見積書の送付", [("見積書.pdf", "application/pdf", data)], sender="sales@vendor.test",
        to="taro@corp.test"))
    res = run_browser("attachments", m.http_url, {
        "admin": "admin1", "admin_password": "correct horse battery",
        "enduser": "taro", "enduser_password": "taro-password-1",
        "attach_id": mid, "hidden_id": mid, "attachments": 1,
    })
    assert res["values"]["download_name"] == "見積書.pdf"
    assert res["values"]["download_size"] == len(data)
    assert res["values"]["hidden_note_ja"] == \
        "このメッセージの本文は、配信されるまで表示されません。配信後にメールボックスでお読みください。"
    assert res["values"]["hidden_note_en"].startswith("The content of this message is hidden")


def test_browser_gateways_page(start_manager):
    """The admins' Gateways page: a pending gateway (a real unauthenticated hello),
    a registered one, registering the pending one from its row with the token shown
    once, a refused address, removal with confirmation; ja and en."""
    m = web_manager(start_manager, gateways__pending_from="127.0.0.1/32")
    add_user(m, "admin1", "correct horse battery", "admin", [])
    st, doc = m.api("POST", "/api/v1/gateways", json={"name": "gw-tokyo", "address": "192.0.2.10",
                                                       "group": "tokyo", "cluster": "east"})
    assert st == 201, doc
    # gw-tokyo pushed events and says 7 more wait: the page shows its backlog and newest event
    st, _, raw = m.http("POST", "/api/v1/gateway/events", token=doc["token"], body=json.dumps({
        "backlog": 7, "events": [{"seq": 1, "at": 1764892800000, "type": "connection",
                                  "detail": {"client": "198.51.100.7"}}]}).encode())
    assert st == 200, raw
    st, _, raw = m.http("POST", "/api/v1/gateway/hello", token=None,
                        body=b'{"name":"gw-osaka","version":"0.1.0","group":"osaka"}')
    assert st == 401 and b"listed as pending" in raw, raw
    res = run_browser("gateways", m.http_url, {
        "username": "admin1", "password": "correct horse battery",
        "pending": "gw-osaka", "pending_group": "osaka", "pending_version": "0.1.0",
        "pending_address": "127.0.0.1", "new_address": "192.0.2.20",
        "registered": "gw-tokyo", "registered_address": "192.0.2.10",
        "registered_backlog": "7", "registered_last_event": "2025",
    })
    st, doc = m.api("GET", "/api/v1/gateways")
    assert st == 200
    assert [(g["name"], g["state"], g["address"]) for g in doc["gateways"]] == [
        ("gw-osaka", "registered", "192.0.2.20")]
    # the token the page showed is the gateway's
    st, _, raw = m.http("POST", "/api/v1/gateway/hello", token=res["values"]["token"],
                        body=b'{"name":"gw-osaka"}')
    assert st == 200, raw
    st, doc = m.api("GET", "/api/v1/audit?limit=100")
    acts = [(e["actor"], e["action"], e["target"]) for e in doc["entries"]]
    assert ("admin1", "gateway_add", "gw-osaka") in acts
    assert ("admin1", "gateway_remove", "gw-tokyo") in acts


def test_browser_levels_page(start_manager):
    """The admins' Levels page: gateways in a cluster and groups (one pending), what
    each level sets, what each gateway ends up with and from where, what it says it
    runs with; an override refused with the 409's message, a change saved; ja, en."""
    m = web_manager(start_manager, gateways__pending_from="127.0.0.1/32")
    add_user(m, "admin1", "correct horse battery", "admin", [])
    tokens = {}
    for name, addr, group in (("gw-a", "192.0.2.1", "g1"), ("gw-b", "192.0.2.2", "g1"),
                              ("gw-c", "192.0.2.3", "g2")):
        st, doc = m.api("POST", "/api/v1/gateways", json={"name": name, "address": addr,
                                                           "group": group, "cluster": "c1"})
        assert st == 201, doc
        tokens[name] = doc["token"]
    for path, body in (("cluster/c1", {"pvo": True}),
                       ("group/g2", {"filters": 'x: if subject == "a" { drop(); }\n'})):
        st, doc = m.api("PUT", "/api/v1/levels/" + path, json=body)
        assert st == 200, doc
    st, _, raw = m.http("POST", "/api/v1/gateway/hello", token=tokens["gw-a"], body=json.dumps(
        {"name": "gw-a", "centralized": {"pvo": True, "reporting": False,
                                         "tracking": False}}).encode())
    assert st == 200, raw
    st, _, raw = m.http("POST", "/api/v1/gateway/hello", token=None,
                        body=b'{"name":"gw-p","group":"g1"}')
    assert st == 401 and b"listed as pending" in raw, raw
    res = run_browser("levels", m.http_url, {"username": "admin1",
                                              "password": "correct horse battery"})
    assert res["values"]["conflict"].endswith(
        'it may not be set again below it (at machine "gw-a")')
    st, doc = m.api("GET", "/api/v1/levels")
    (g1,) = [lv for lv in doc["levels"] if lv["name"] == "g1"]
    assert g1["settings"] == {"pvo": None, "reporting": None, "tracking": True, "filters": None}
    assert not [lv for lv in doc["levels"] if lv["level"] == "machine"]
    st, doc = m.api("GET", "/api/v1/audit?limit=100")
    acts = [(e["actor"], e["action"], e["target"]) for e in doc["entries"]]
    assert ("admin1", "level_set", "g1") in acts
    assert ("admin1", "gateway_update", "gw-c") in acts
    st, doc = m.api("GET", "/api/v1/gateways")
    assert [(g["name"], g["group"]) for g in doc["gateways"]
            if g["name"] == "gw-c"] == [("gw-c", "g1")]


def test_browser_second_factor(start_manager):
    # Enrol from the settings, sign out, sign in with password and code (ja), then in
    # English with a recovery code; the browser computes the codes (RFC 6238).
    m = web_manager(start_manager)
    add_user(m, "tomo", "tomo-password-1", "operator", [])
    res = run_browser("totp", m.http_url, {"username": "tomo", "password": "tomo-password-1"})
    v = res["values"]
    assert v["enrol_error_ja"] == "コードが正しくありません。"
    assert v["login_error_ja"] == ("コードが正しくありません。アプリに表示されている現在のコード、"
                                   "または未使用のリカバリーコードを入力してください。")
    assert v["login_error_en"] == ("The code is not correct. Use the current code from your "
                                   "app, or an unused recovery code.")
    assert v["state_ja"].startswith("有効（") and v["state_en"].startswith("On since ")
    rows = [(e["action"], e["detail"]) for e in
            m.api("GET", "/api/v1/audit?limit=100")[1]["entries"] if e["actor"] == "tomo"]
    assert [d["method"] for a, d in rows if a == "totp_login"] == ["recovery_code", "totp"]
    assert ("recovery_code_used", {"left": 9}) in rows
    assert [a for a, _ in rows].count("totp_enrolled") == 1
    assert sorted(d["reason"] for a, d in rows if a == "totp_failed") == ["wrong"] * 3
    # The recovery code the browser used is spent.
    st, _, _ = m.http("POST", "/api/v1/session", body={"username": "tomo",
                                                        "password": "tomo-password-1"},
                      token=None)
    assert st == 401


XSS_ATTACHMENT = "<img src=y onerror=alert(2)>.pdf"


def test_browser_tracking_page(start_manager, start_gateway, aio_sink):  # noqa: F811
    """The admins' Tracking page against gateways gw-a and gw-b (which relays to gw-a)
    pushing their real events: a Japanese subject searched (begins), event types
    ticked, "more" pages following the cursor, the API's 400s shown as it says them;
    a relayed message's story with both gateways' events in time order, its headers
    and sending host; a subject and an attachment name that are markup, shown as
    text; ja and en. An operator and an end user have no Tracking link and get the
    API's 403 when they go there."""
    xss = PAYLOAD_SUBJECTS[0]
    xss_msg = gw_message(subject=xss, extra_headers=(
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n"),
        body="--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
             "--b\r\nContent-Type: application/pdf\r\n"
             "Content-Disposition: attachment; filename=\"%s\"\r\n\r\n"
             "JVBERi0=\r\n--b--\r\n" % XSS_ATTACHMENT)
    m, ids = test_tracking.send_tracked_mail(
        start_manager, start_gateway, aio_sink,
        extra=[("xss", "mallory@sender.test", "bob@example.com", xss_msg)],
        http__web_root=WEB_ROOT)
    add_user(m, "admin1", "correct horse battery", "admin", [])
    add_user(m, "opal", "opal-password-1", "operator", [])
    add_user(m, "taro", "taro-password-1", "enduser", ["bob@example.com"])
    # what the page must show, as the API says it
    st, story = m.api("GET", "/api/v1/tracking/messages/gw-b~%s" % ids["relayed"])
    assert st == 200, story
    timeline = [[e["gateway"], e["type"]] for e in story["events"]]
    total = len(test_tracking.search(m, limit=1000)[1]["messages"])
    assert total == 14
    res = run_browser("tracking", m.http_url, {
        "admin": ["admin1", "correct horse battery"], "total": total,
        "others": [["opal", "opal-password-1"], ["taro", "taro-password-1"]],
        "jp_search": "見積書", "jp_subject": test_tracking.JP_SUBJECT,
        "jp_id": "gw-a~%s" % ids["jp"],
        "relayed_subject": "Relayed note", "relayed_id": "gw-b~%s" % ids["relayed"],
        "relayed_other_id": next(e["message"] for e in story["events"]
                                 if e["gateway"] == "gw-a" and e["message"]),
        "relayed_timeline": timeline, "helo": story["helo"], "client_ip": story["client_ip"],
        "spam_id": "gw-a~%s" % ids["spam"],
        "xss_subject": xss, "xss_attachment": XSS_ATTACHMENT, "xss_id": "gw-a~%s" % ids["xss"],
        "pages": ["page %d" % i for i in range(7)],
    }, timeout=300)
    v = res["values"]
    assert v["bad_sender_ja"] == ("サーバーが検索を受け付けませんでした: "
                                  "\"sender\" must be at most 998 bytes")
    assert v["bad_since_en"] == ("The server refused the search: \"since\" must be an RFC 3339 "
                                 "date-time (e.g. 2026-11-27T19:30:00Z)")
    assert v["forbidden"] == {
        "opal": "The server answered 403: not allowed for role of opal",
        "taro": "The server answered 403: not allowed for role of taro"}
    names = sorted(os.path.basename(p) for p in res["screenshots"])
    assert names == sorted(["tracking-search-ja.png", "tracking-detail-ja.png",
                            "tracking-detail-en.png", "tracking-xss-en.png",
                            "tracking-error-ja.png", "tracking-search-en.png",
                            "tracking-forbidden-opal.png", "tracking-forbidden-taro.png"]), names


REPORT_XSS = "<img src=x onerror=alert(1)>"


def report_events(seq, at, msg_id, sender, rcpts, level, virus=None, total=None):
    """One message's events as a gateway pushes them: received, verdict, reply."""
    received = {"sender": sender, "recipients": rcpts, "client_ip": "192.0.2.7",
                "subject": "s"}
    if total is not None:
        received["recipients_total"] = total
    evs = [{"seq": seq, "at": at, "type": "received", "msg_id": msg_id, "detail": received},
           {"seq": seq + 1, "at": at + 1, "type": "verdict", "msg_id": msg_id,
            "detail": {"level": level, "score": 1.0}}]
    if virus:
        evs.append({"seq": seq + 2, "at": at + 2, "type": "virus", "msg_id": msg_id,
                    "detail": {"name": virus}})
    evs.append({"seq": seq + 3, "at": at + 3, "type": "reply", "msg_id": msg_id,
                "detail": {"reply": "250 2.0.0 Ok: %s" % msg_id}})
    return evs


def test_browser_reports(start_manager):
    """The admins' Reports pages on events two registered gateways pushed with known
    numbers: the overview's totals, series and top domains exactly those, switching
    the gateway changes them, the CSV link downloads what the API gives as CSV, a
    report page's table and bar chart, the period picker (a period with nothing, a
    custom range), a sender domain that is markup shown as text; ja and en."""
    m = web_manager(start_manager)
    add_user(m, "admin1", "correct horse battery", "admin", [])
    add_user(m, "opal", "opal-password-1", "operator", [])
    at = int(time.time() * 1000) - 60000
    mail = {
        "gw-a": [("alice@sender.test", ["u1@example.com", "u2@example.com"], "clean", None, 1200),
                 ("spammer@spam.test", ["u1@example.com", "u3@example.com", "u4@example.com"],
                  "spam", None, None),
                 ("eve@evil.test", ["u1@example.com"], "clean", "Eicar-Test-Signature", None),
                 ("x@" + REPORT_XSS, ["u2@example.com"], "suspect", None, None)],
        "gw-b": [("alice@sender.test", ["u1@example.com"], "clean", None, None),
                 ("spammer@spam.test", ["u5@example.com", "u6@example.com"], "spam", None,
                  None)],
    }
    for i, (gw, msgs) in enumerate(sorted(mail.items())):
        token = register(m, gw, "192.0.2.%d" % (i + 1))
        events = []
        for j, (sender, rcpts, level, virus, total) in enumerate(msgs):
            events += report_events(j * 4 + 1, at + j * 10, "m-%d" % j, sender, rcpts, level,
                                    virus, total)
        if gw == "gw-a":  # and a capacity sample (system_capacity)
            events.append({"seq": 1000, "at": at + 500, "type": "capacity",
                           "detail": {"received": 7, "relayed": 6, "connections": 3,
                                      "current": 2, "backlog": 4, "load": 0.75,
                                      "memory": 52428800}})
        st, doc = push(m, token, {"events": events})
        assert st == 200 and doc["stored"] == len(events), doc

    def get(name, **params):
        st, doc = m.api("GET", "/api/v1/reports/%s?%s" % (name, urllib.parse.urlencode(params)))
        assert st == 200, doc
        return doc
    wait_for(lambda: get("overview")["totals"]["incoming"] == 1208, 30, "the events counted")
    zero = {"incoming": 0, "clean": 0, "spam": 0, "suspect": 0, "virus": 0,
            "content_filter": 0, "rejected_connections": 0}
    totals = {"": dict(zero, incoming=1208, clean=1201, spam=5, suspect=1, virus=1),
              "gw-b": dict(zero, incoming=3, clean=1, spam=2)}
    for gw, want in totals.items():
        assert get("overview", gateway=gw)["totals"] == want, gw
    domains = {"": [["sender.test", 1201, 1201, 0, 0, 0, 0], ["spam.test", 5, 0, 5, 0, 0, 0],
                    ["evil.test", 1, 0, 0, 0, 1, 0], [REPORT_XSS, 1, 0, 0, 1, 0, 0]],
               "gw-b": [["sender.test", 1, 1, 0, 0, 0, 0], ["spam.test", 2, 0, 2, 0, 0, 0]]}
    cols = ["incoming", "clean", "spam", "suspect", "virus", "content_filter"]
    for gw, want in domains.items():
        got = [[r["key"]] + [r[c] for c in cols] for r in get("incoming_domains", gateway=gw)["rows"]]
        assert sorted(got) == sorted(want), (gw, got)

    def csv_of(name, **params):
        st, _, body = m.http("GET", "/api/v1/reports/%s?%s" % (
            name, urllib.parse.urlencode(dict(params, format="csv"))))
        assert st == 200
        return body.decode("utf-8")
    series = {gw: {s["at"]: s["incoming"] for s in get("overview", gateway=gw)["series"]
                   if s["incoming"]} for gw in totals}
    res = run_browser("reports", m.http_url, {
        "admin": ["admin1", "correct horse battery"], "operator": ["opal", "opal-password-1"],
        "totals": totals, "domains": domains, "series": series, "xss": REPORT_XSS,
        "csv_overview_gwb": csv_of("overview", period="day", gateway="gw-b"),
        "csv_domains": csv_of("incoming_domains", period="day", limit=20),
        "users": sorted(r["key"] for r in get("internal_users", limit=20)["rows"]),
        "capacity": get("system_capacity")["totals"],
        "csv_capacity": csv_of("system_capacity", period="day"),
    })
    names = sorted(os.path.basename(p) for p in res["screenshots"])
    assert names == sorted(["reports-overview-ja.png", "reports-overview-gwb-ja.png",
                            "reports-domains-ja.png", "reports-custom-ja.png",
                            "reports-overview-en.png", "reports-users-en.png",
                            "reports-capacity-en.png"]), names


def test_browser_gateway_migration_and_mapping(start_manager):
    """The Gateways page's migration column and mapping editor: progress as the
    gateways reported it (the finished one's mail not sent: no relay answers),
    a change refused while one migrates, a custom mapping saved
    for one that has finished, a bad name refused with the server's message; ja, en."""
    m = web_manager(start_manager)
    add_user(m, "admin1", "correct horse battery", "admin", [])
    tokens = {}
    for name, addr in (("gw-idle", "192.0.2.9"), ("gw-kobe", "192.0.2.10"),
                       ("gw-nara", "192.0.2.11")):
        st, doc = m.api("POST", "/api/v1/gateways", json={"name": name, "address": addr})
        assert st == 201, doc
        tokens[name] = doc["token"]
    for name, state, done in (("gw-kobe", "running", 1200), ("gw-nara", "done", 19997)):
        st, _, raw = m.http("POST", "/api/v1/gateway/migration", token=tokens[name],
                            body=json.dumps({"run": "2026-12-06T01:00:00Z", "state": state,
                                             "total": 20000, "done": done, "failed": 3,
                                             "notify": "ops@corp.test"}).encode())
        assert st == 200, raw
    run_browser("gateway-mapping", m.http_url, {
        "username": "admin1", "password": "correct horse battery",
        "migrating": "gw-kobe", "migrated": "gw-nara", "idle": "gw-idle"})
    st, doc = m.api("GET", "/api/v1/gateways/gw-nara/mapping")
    assert (st, doc) == (200, {"gateway": "gw-nara", "mode": "custom", "mapping": {
        "Confidential": "Legal", "Old Stuff": None, "VIRUS": "virus"}})
    st, doc = m.api("GET", "/api/v1/gateways/gw-kobe/mapping")
    assert doc["mode"] == "automatic", doc
    st, doc = m.api("GET", "/api/v1/audit?limit=100")
    acts = [(e["actor"], e["action"], e["target"]) for e in doc["entries"]]
    assert acts.count(("admin1", "gateway_mapping", "gw-nara")) == 1, acts


def test_browser_report_schedules(start_manager, aio_sink):
    """The Reports section's scheduled reports: created from the form (a bad time
    zone refused with the server's message), edited, sent now (mailed once, listed
    in the archive with a download that is the archived CSV), deleted; ja and en."""
    m = web_manager(start_manager, primary_host=aio_sink.host,
                    notifications__from="reports@corp.test")
    add_user(m, "admin1", "correct horse battery", "admin", [])
    res = run_browser("schedules", m.http_url, {"username": "admin1",
                                                 "password": "correct horse battery"})
    names = sorted(os.path.basename(p) for p in res["screenshots"])
    assert names == ["schedules-archive-ja.png", "schedules-en.png", "schedules-ja.png"], names
    st, doc = m.api("GET", "/api/v1/report-schedules")
    assert doc["schedules"] == []
    st, doc = m.api("GET", "/api/v1/report-archive")
    (copy,) = doc["reports"]
    assert (copy["report"], copy["format"], copy["mail"]["state"]) == (
        "incoming_domains", "csv", "sent"), copy
    st, _, body = m.http("GET", "/api/v1/report-archive/%d" % copy["id"])
    assert body.decode("utf-8") == res["values"]["download"]
    msgs = aio_sink.wait_count(1)
    assert msgs[0]["rcpts"] == ["boss@example.com"]
    time.sleep(1)
    assert aio_sink.count() == 1
    audit = [e["action"] for e in m.api("GET", "/api/v1/audit?limit=50")[1]["entries"]]
    for action in ("report_schedule.create", "report_schedule.update", "report_schedule.run",
                   "report_schedule.delete"):
        assert action in audit, (action, audit)

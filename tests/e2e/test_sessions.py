"""Accounts, sessions and end-user access against the real lazaretd.

Logins with the session cookie and its CSRF token, the login limiter, what an end
user may see and do, roles, the audit log, the first admin from the config and
`lazaretctl user`, and end users from a real OpenLDAP slapd and a real Dovecot
IMAP server, each started by the test on loopback with its own temporary files.
"""

import http.client
import json
import os
import shutil
import socket
import subprocess
import time

import pytest

from conftest import find_binary, ldap_manager, listening_daemon
from e2e_helpers import free_port, make_message, t, wait_for

ADMIN_PW = "admin-secret-1"
CSRF_ERROR = {"error": {"code": "forbidden", "message": "missing or wrong CSRF token"}}


class Client:
    """A browser-like client of one manager: keeps the session cookie and CSRF token."""

    def __init__(self, manager):
        self.m = manager
        self.cookie = None
        self.csrf = None
        self.last_headers = {}

    def login(self, username, password):
        st, hdrs, raw = self.m.http("POST", "/api/v1/session",
                                    body={"username": username, "password": password},
                                    token=None)
        self.last_headers = hdrs
        doc = json.loads(raw) if raw else None
        if st == 200:
            set_cookie = hdrs.get("Set-Cookie", "")
            self.cookie = set_cookie.split(";", 1)[0]
            self.csrf = doc["csrf_token"]
        return st, doc

    def call(self, method, path, body=None, csrf=True):
        hdrs = {}
        if self.cookie:
            hdrs["Cookie"] = self.cookie
        if csrf and self.csrf:
            hdrs["X-CSRF-Token"] = self.csrf
        st, h, raw = self.m.http(method, path, body=body, token=None, headers=hdrs)
        self.last_headers = h
        try:
            doc = json.loads(raw) if raw else None
        except ValueError:
            doc = None
        return st, doc


def add_user(m, username, password, role, addresses=()):
    st, doc = m.api("POST", "/api/v1/users", json={
        "username": username, "password": password, "role": role,
        "addresses": list(addresses)})
    assert st == 201, (st, doc)
    return doc


def states(m, msg_id):
    doc = m.get_message(msg_id)
    return {r["address"]: r["state"] for r in doc["recipients"]}


def audit(m, limit=100):
    st, doc = m.api("GET", "/api/v1/audit?limit=%d" % limit)
    assert st == 200, (st, doc)
    return doc["entries"]


# ---- login, cookie, CSRF ----------------------------------------------------


def test_login_sets_a_strict_httponly_cookie_and_logout_ends_the_session(manager):
    add_user(manager, "opal", "operator-pw-1", "operator")
    c = Client(manager)
    st, doc = c.login("opal", "operator-pw-1")
    assert st == 200, doc
    assert doc["user"] == {"username": "opal", "role": "operator", "addresses": []}
    assert len(doc["csrf_token"]) >= 32
    set_cookie = c.last_headers["Set-Cookie"]
    attrs = [a.strip() for a in set_cookie.split(";")]
    assert attrs[0].startswith("lazaret_session=") and len(attrs[0]) > 40
    assert "HttpOnly" in attrs and "SameSite=Strict" in attrs and "Path=/" in attrs
    assert "Secure" not in attrs  # [http] secure_cookies is off by default

    # The web app after a reload: the same user and CSRF token.
    st, doc = c.call("GET", "/api/v1/session")
    assert st == 200 and doc["csrf_token"] == c.csrf and doc["user"]["username"] == "opal"
    st, doc = c.call("GET", "/api/v1/messages")
    assert st == 200 and doc["messages"] == []

    # Logging out is a state change: without the CSRF token it is refused.
    st, doc = c.call("DELETE", "/api/v1/session", csrf=False)
    assert st == 403 and doc == CSRF_ERROR
    st, _ = c.call("DELETE", "/api/v1/session")
    assert st == 200
    assert "Max-Age=0" in c.last_headers["Set-Cookie"]
    st, _ = c.call("GET", "/api/v1/messages")
    assert st == 401
    st, _ = c.call("GET", "/api/v1/session")
    assert st == 401


def test_secure_cookies_setting_adds_secure(start_manager):
    m = start_manager(http__secure_cookies="yes")
    add_user(m, "sec", "secure-pw-1", "admin")
    c = Client(m)
    assert c.login("sec", "secure-pw-1")[0] == 200
    assert "Secure" in [a.strip() for a in c.last_headers["Set-Cookie"].split(";")]


def test_unknown_user_and_wrong_password_look_the_same(manager):
    add_user(manager, "known", "known-pw-12", "operator")
    c = Client(manager)
    st1, doc1 = c.login("known", "not-the-password")
    st2, doc2 = c.login("nobody-here", "not-the-password")
    assert st1 == st2 == 401
    assert doc1 == doc2 == {"error": {"code": "unauthorized",
                                      "message": "wrong username or password"}}
    assert "Set-Cookie" not in c.last_headers


def test_cookie_state_changes_need_the_csrf_token_bearer_does_not(manager):
    add_user(manager, "op", "operator-pw-2", "operator")
    ids = [manager.send("s@example.jp", "u%d@corp.test" % i, make_message(to="u@corp.test"))
           for i in range(3)]
    c = Client(manager)
    assert c.login("op", "operator-pw-2")[0] == 200

    st, doc = c.call("POST", "/api/v1/messages/%s/delete" % ids[0], csrf=False)
    assert st == 403 and doc == CSRF_ERROR
    saved, c.csrf = c.csrf, "0" * 64
    st, doc = c.call("POST", "/api/v1/messages/%s/delete" % ids[0])
    assert st == 403 and doc == CSRF_ERROR
    st, doc = c.call("POST", "/api/v1/messages/delete", body={"ids": ids}, )
    assert st == 403
    c.csrf = saved
    assert states(manager, ids[0]) == {"u0@corp.test": "quarantined"}

    st, doc = c.call("POST", "/api/v1/messages/%s/delete" % ids[0])
    assert st == 200, doc
    assert states(manager, ids[0]) == {"u0@corp.test": "deleted"}
    st, doc = c.call("POST", "/api/v1/messages/%s/release" % ids[1])
    assert st == 202, doc

    # A script with the Bearer token needs no CSRF token.
    st, doc = manager.api("POST", "/api/v1/messages/%s/delete" % ids[2])
    assert st == 200 and states(manager, ids[2]) == {"u2@corp.test": "deleted"}


def metric(m, name):
    st, _, raw = m.http("GET", "/metrics", token=None)
    assert st == 200
    for line in raw.decode("utf-8").splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    raise AssertionError("no metric %s" % name)


def login_as(m, username, password, headers=None):
    """(status, headers, parsed body) of one login, with extra headers (X-Forwarded-For)."""
    st, hdrs, raw = m.http("POST", "/api/v1/session",
                           body={"username": username, "password": password},
                           token=None, headers=headers)
    return st, hdrs, json.loads(raw) if raw else None


LIMITED = {"error": {"code": "too_many_requests",
                     "message": "too many failed logins; try again later"}}
BUSY = {"error": {"code": "unavailable",
                  "message": "too many logins in progress; try again shortly"}}


def test_failed_logins_lock_the_account_not_the_others_behind_the_address(start_manager):
    m = start_manager(http__login_max_failures="3", http__login_failure_window="1m",
                      http__login_max_failures_per_address="6")
    add_user(m, "victim", "victim-pw-1", "operator")
    add_user(m, "other", "other-pw-12", "operator")
    c = Client(m)
    for _ in range(3):
        assert c.login("victim", "guess")[0] == 401
    checks = metric(m, "lazaret_login_checks_total")
    st, doc = c.login("victim", "victim-pw-1")
    assert (st, doc) == (429, LIMITED)
    retry = int(c.last_headers["Retry-After"])
    assert 1 <= retry <= 60
    # Refused before any password check.
    assert metric(m, "lazaret_login_checks_total") == checks
    # Another user behind the same address is not locked out by victim's guesser.
    st, doc = c.login("other", "other-pw-12")
    assert st == 200, doc
    assert "api.login_limited" in m.log_text() and "by=account" in m.log_text()
    # The address has its own, higher ceiling: 3 more failures (6 in all) and it is refused.
    for name in ("x1", "x2", "x3"):
        assert c.login(name, "guess")[0] == 401
    st, doc = Client(m).login("other", "other-pw-12")
    assert (st, doc) == (429, LIMITED)
    assert "by=address" in m.log_text()
    assert "api.login_failed" in m.log_text()


def test_parallel_login_burst_gets_at_most_max_failures_checks(start_manager):
    """40 concurrent guesses at one account: the limit is counted before the checks."""
    import threading
    # 40 connections at once from one address: above the default per-client cap.
    m = start_manager(http__login_max_failures="5", http__login_failure_window="1m",
                      http__login_max_failures_per_address="1000", http__login_queue_max="1000",
                      http__max_connections_per_client="100")
    add_user(m, "victim", "victim-pw-1", "operator")
    checks = metric(m, "lazaret_login_checks_total")
    n = 40
    barrier = threading.Barrier(n)
    results = [None] * n

    def guess(i):
        barrier.wait()
        st, hdrs, doc = login_as(m, "victim", "guess-%d" % i)
        results[i] = (st, hdrs.get("Retry-After"), doc)
    threads = [threading.Thread(target=guess, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=t(60))
    assert all(r is not None for r in results)
    statuses = [r[0] for r in results]
    assert set(statuses) <= {401, 429}, statuses
    checked = statuses.count(401)
    assert 1 <= checked <= 5, statuses
    assert metric(m, "lazaret_login_checks_total") - checks == checked
    for st, retry, doc in results:
        if st == 429:
            assert doc == LIMITED and retry is not None and int(retry) >= 1
    assert metric(m, "lazaret_login_limited_total") == n - checked
    # The right password now waits for the block too (no check run for it).
    st, hdrs, doc = login_as(m, "victim", "victim-pw-1")
    assert st == 429 and int(hdrs["Retry-After"]) >= 1
    assert metric(m, "lazaret_login_checks_total") - checks == checked


def test_login_queue_is_bounded(start_manager):
    """A burst of logins to many accounts: past login_queue_max they get 503 unchecked."""
    import threading
    m = start_manager(http__login_queue_max="2", http__login_max_failures_per_address="1000",
                      http__max_connections_per_client="100")
    checks = metric(m, "lazaret_login_checks_total")
    n = 40
    barrier = threading.Barrier(n)
    results = [None] * n

    def guess(i):
        barrier.wait()
        st, hdrs, doc = login_as(m, "user%d" % i, "guess")
        results[i] = (st, hdrs.get("Retry-After"), doc)
    threads = [threading.Thread(target=guess, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=t(60))
    statuses = [r[0] for r in results]
    assert set(statuses) <= {401, 503}, statuses
    busy = [r for r in results if r[0] == 503]
    assert busy, statuses
    for _, retry, doc in busy:
        assert doc == BUSY and retry == "1"
    assert metric(m, "lazaret_login_checks_total") - checks == statuses.count(401)
    assert metric(m, "lazaret_login_busy_total") == len(busy)
    assert "api.login_busy" in m.log_text()
    # The queue drains: logins work again.
    add_user(m, "after", "after-pw-123", "operator")
    wait_for(lambda: login_as(m, "after", "after-pw-123")[0] == 200, 10, "the queue to drain")


def test_forwarded_for_is_ignored_from_untrusted_peers(start_manager):
    m = start_manager(http__login_max_failures_per_address="2")
    add_user(m, "other", "other-pw-12", "operator")
    # Each guess names another client: the limiter sees the TCP peer all the same.
    assert login_as(m, "a", "x", {"X-Forwarded-For": "203.0.113.1"})[0] == 401
    assert login_as(m, "b", "x", {"X-Forwarded-For": "203.0.113.2"})[0] == 401
    st, _, doc = login_as(m, "other", "other-pw-12", {"X-Forwarded-For": "203.0.113.3"})
    assert (st, doc) == (429, LIMITED)
    rows = [r for r in audit(m) if r["action"] == "login_failed"]
    assert [r["peer"] for r in rows] == ["127.0.0.1", "127.0.0.1"]


def test_forwarded_for_from_a_trusted_proxy_names_the_client(start_manager):
    m = start_manager(http__trusted_proxies="127.0.0.1/32", http__login_max_failures="3",
                      http__login_max_failures_per_address="2")
    add_user(m, "other", "other-pw-12", "operator")
    add_user(m, "victim", "victim-pw-1", "operator")
    attacker = {"X-Forwarded-For": "203.0.113.9"}
    # What a client writes sits left of the proxy's own entry: the rightmost counts.
    spoofing = {"X-Forwarded-For": "198.51.100.1, 203.0.113.9"}
    assert login_as(m, "a", "x", attacker)[0] == 401
    assert login_as(m, "b", "x", spoofing)[0] == 401
    st, _, doc = login_as(m, "other", "other-pw-12", attacker)
    assert (st, doc) == (429, LIMITED)
    # Another client behind the same proxy is not affected.
    st, _, doc = login_as(m, "other", "other-pw-12", {"X-Forwarded-For": "198.51.100.1"})
    assert st == 200, doc
    rows = audit(m)
    assert [r["peer"] for r in rows if r["action"] in ("login", "login_failed")] == \
        ["198.51.100.1", "203.0.113.9", "203.0.113.9"]

    # An account under attack: its owner, from an address that logged in before, still gets in.
    owner = {"X-Forwarded-For": "192.0.2.10"}
    assert login_as(m, "victim", "victim-pw-1", owner)[0] == 200
    for i in range(3):
        assert login_as(m, "victim", "x", {"X-Forwarded-For": "203.0.113.%d" % (20 + i)})[0] \
            == 401
    assert login_as(m, "victim", "victim-pw-1", {"X-Forwarded-For": "203.0.113.30"})[0] == 429
    assert login_as(m, "victim", "victim-pw-1", owner)[0] == 200


def test_proxy_settings_are_checked(start_manager, build_dir):
    for key, value, words in [("trusted_proxies", "10.0.0.0/33", "trusted_proxies"),
                              ("allowed_origins", "https://x.example/path", "allowed_origins"),
                              ("allowed_origins", "*", "allowed_origins"),
                              ("login_backoff_max", "1s", "login_backoff_max"),
                              ("login_queue_max", "0", "login_queue_max")]:
        m = start_manager(start=False, **{"http__" + key: value})
        m.write_config()
        r = subprocess.run([find_binary("lazaretd"), "--check-config", "-c", m.conf_path],
                           capture_output=True, text=True, timeout=t(20))
        assert r.returncode == 1, (key, value, r.stderr)
        assert words in r.stderr, (key, value, r.stderr)


def test_failure_window_ends(start_manager):
    m = start_manager(http__login_max_failures="2", http__login_failure_window="2s")
    add_user(m, "slow", "slow-pw-123", "operator")
    c = Client(m)
    assert c.login("slow", "x")[0] == 401
    assert c.login("slow", "y")[0] == 401
    assert c.login("slow", "slow-pw-123")[0] == 429
    time.sleep(2.2)
    assert c.login("slow", "slow-pw-123")[0] == 200


# ---- cross-site requests and media types ------------------------------------------


CROSS_SITE = {"error": {"code": "forbidden", "message": "cross-site request refused"}}
NOT_JSON = {"error": {"code": "unsupported_media_type",
                      "message": "the request body must be application/json"}}


def raw_request(m, method, path, body, headers):
    """(status, headers, parsed body) with exactly the given headers (no Bearer token)."""
    conn = http.client.HTTPConnection("127.0.0.1", m.http_port, timeout=t(15))
    try:
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        st, hdrs, raw = r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()
    try:
        doc = json.loads(raw) if raw else None
    except ValueError:
        doc = None
    return st, hdrs, doc


def test_login_needs_json_and_the_same_origin(manager):
    add_user(manager, "opal", "operator-pw-1", "operator")
    add_user(manager, "mallory", "mallory-pw-1", "operator")
    c = Client(manager)
    assert c.login("opal", "operator-pw-1")[0] == 200
    checks = metric(manager, "lazaret_login_checks_total")
    rows = len(audit(manager, 1000))
    creds = json.dumps({"username": "mallory", "password": "mallory-pw-1"}).encode()
    origin = "http://127.0.0.1:%d" % manager.http_port
    for headers, body, want in [
        # What a cross-site form can send without a preflight: text/plain, form-encoded.
        ({"Content-Type": "text/plain"}, creds, (415, NOT_JSON)),
        ({"Content-Type": "text/plain", "Origin": origin}, creds, (415, NOT_JSON)),
        ({"Content-Type": "application/x-www-form-urlencoded"},
         b"username=mallory&password=mallory-pw-1", (415, NOT_JSON)),
        ({"Content-Type": "multipart/form-data; boundary=x"}, creds, (415, NOT_JSON)),
        ({"Content-Type": "application/jsonp"}, creds, (415, NOT_JSON)),
        ({}, creds, (415, NOT_JSON)),
        # JSON from another site (a fetch with CORS, or a rebinding page).
        ({"Content-Type": "application/json", "Origin": "http://evil.example"}, creds,
         (403, CROSS_SITE)),
        ({"Content-Type": "application/json", "Origin": "null"}, creds, (403, CROSS_SITE)),
        ({"Content-Type": "application/json", "Origin": "http://127.0.0.1:1"}, creds,
         (403, CROSS_SITE)),
        ({"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}, creds,
         (403, CROSS_SITE)),
        ({"Content-Type": "text/plain", "Origin": "http://evil.example"}, creds,
         (403, CROSS_SITE)),
    ]:
        hdrs = dict(headers, Cookie=c.cookie)
        st, reply_headers, doc = raw_request(manager, "POST", "/api/v1/session", body, hdrs)
        assert (st, doc) == want, (headers, st, doc)
        assert "Set-Cookie" not in reply_headers
        # The browser's session is still opal's.
        st, doc = c.call("GET", "/api/v1/session")
        assert st == 200 and doc["user"]["username"] == "opal"
    # Nothing was checked and nothing written.
    assert metric(manager, "lazaret_login_checks_total") == checks
    assert len(audit(manager, 1000)) == rows
    assert "api.cross_site_refused" in manager.log_text()
    # The console itself: JSON from its own origin, with a charset parameter.
    st, _, doc = raw_request(manager, "POST", "/api/v1/session", creds,
                             {"Content-Type": "Application/JSON; charset=utf-8",
                              "Origin": origin, "Sec-Fetch-Site": "same-origin"})
    assert st == 200 and doc["user"]["username"] == "mallory"


def test_state_changes_refuse_cross_site_requests(manager):
    add_user(manager, "op", "operator-pw-2", "operator")
    mid = manager.send("s@example.jp", "u@corp.test", make_message())
    c = Client(manager)
    assert c.login("op", "operator-pw-2")[0] == 200
    base = {"Cookie": c.cookie, "X-CSRF-Token": c.csrf}
    path = "/api/v1/messages/%s/delete" % mid
    for method, p, headers, body, want in [
        ("POST", path, {"Origin": "http://evil.example"}, None, (403, CROSS_SITE)),
        ("POST", path, {"Sec-Fetch-Site": "cross-site"}, None, (403, CROSS_SITE)),
        ("POST", path, {"Content-Type": "text/plain"}, b'{"recipients":["u@corp.test"]}',
         (415, NOT_JSON)),
        ("PUT", "/api/v1/me", {"Content-Type": "application/x-www-form-urlencoded"},
         b"language=en", (415, NOT_JSON)),
        ("DELETE", "/api/v1/session", {"Origin": "http://evil.example"}, None,
         (403, CROSS_SITE)),
    ]:
        st, _, doc = raw_request(manager, method, p, body, dict(base, **headers))
        assert (st, doc) == want, (method, p, headers, st, doc)
    assert states(manager, mid) == {"u@corp.test": "quarantined"}
    # Still logged in: the cross-site logout did nothing.
    assert c.call("GET", "/api/v1/session")[0] == 200
    # The same request from the console's own origin goes through.
    st, _, doc = raw_request(manager, "POST", path, None,
                             dict(base, Origin="http://127.0.0.1:%d" % manager.http_port))
    assert st == 200, doc
    assert states(manager, mid) == {"u@corp.test": "deleted"}


def test_bearer_token_requests_keep_working_without_origin_checks(manager):
    mid = manager.send("s@example.jp", "u@corp.test", make_message())
    # A script (curl -d, lazaretctl): no Origin rules for the Bearer token.
    st, _, _ = manager.http("POST", "/api/v1/messages/%s/release" % mid, body=b"",
                            headers={"Origin": "http://elsewhere.example"})
    assert st == 202
    st, _, _ = manager.http("POST", "/api/v1/users",
                            body=json.dumps({"username": "s", "password": "script-pw-1",
                                             "role": "operator"}).encode(),
                            headers={"Content-Type": "text/plain"})
    assert st == 201


def test_allowed_origins_for_a_console_behind_a_proxy(start_manager):
    m = start_manager(http__allowed_origins="https://quarantine.example.jp, "
                                            "https://q2.example.jp:8443/")
    add_user(m, "opal", "operator-pw-1", "operator")
    creds = {"username": "opal", "password": "operator-pw-1"}
    for origin, want in [("https://quarantine.example.jp", 200),
                         ("https://q2.example.jp:8443", 200),
                         ("http://quarantine.example.jp", 403),
                         ("https://quarantine.example.jp.evil.example", 403),
                         ("https://q2.example.jp", 403)]:
        st, _, doc = raw_request(m, "POST", "/api/v1/session", json.dumps(creds).encode(),
                                 {"Content-Type": "application/json", "Origin": origin})
        assert st == want, (origin, st, doc)


# ---- end users ----------------------------------------------------------------


@pytest.fixture
def mailbox(manager):
    """Messages for alice (two addresses), bob, and both; alice's end-user account."""
    def send(rcpts):
        rcpts = [rcpts] if isinstance(rcpts, str) else rcpts
        msg = make_message(subject="for " + ", ".join(rcpts), to=", ".join(rcpts))
        return manager.send("spam@example.jp", rcpts, msg)
    # The alias arrives in another case than the account lists it: still theirs.
    ids = {
        "alice": send("alice@corp.test"),
        "alias": send("Alice.Alias@corp.test"),
        "bob": send("bob@corp.test"),
        "both": send(["alice@corp.test", "bob@corp.test"]),
    }
    add_user(manager, "alice", "alice-pw-12", "enduser",
             ["alice@corp.test", "alice.alias@corp.test"])
    c = Client(manager)
    st, doc = c.login("alice", "alice-pw-12")
    assert st == 200
    assert doc["user"] == {"username": "alice", "role": "enduser",
                           "addresses": ["alice@corp.test", "alice.alias@corp.test"]}
    return manager, c, ids


def test_end_user_lists_only_mail_to_their_addresses(mailbox):
    m, c, ids = mailbox
    st, doc = c.call("GET", "/api/v1/messages?limit=100")
    assert st == 200
    seen = {x["id"]: x for x in doc["messages"]}
    assert set(seen) == {ids["alice"], ids["alias"], ids["both"]}
    # Other people's recipients of a shared message are not shown.
    assert [r["address"] for r in seen[ids["both"]]["recipients"]] == ["alice@corp.test"]
    # A filter cannot widen the scope: another person's address finds nothing.
    st, doc = c.call("GET", "/api/v1/messages?recipient=bob@corp.test")
    assert st == 200 and doc["messages"] == []
    st, doc = c.call("GET", "/api/v1/messages?recipient=alice.alias@corp.test")
    assert st == 200 and [x["id"] for x in doc["messages"]] == [ids["alias"]]
    st, doc = c.call("GET", "/api/v1/messages?quarantine=virus")
    assert st == 200 and doc["messages"] == []
    st, doc = c.call("GET", "/api/v1/quarantines")
    assert st == 200
    assert [q["name"] for q in doc["quarantines"]] == ["spam"]
    assert "messages" not in doc["quarantines"][0]


def test_end_user_gets_404_for_someone_elses_message(mailbox):
    m, c, ids = mailbox
    bob = ids["bob"]
    for method, path in [("GET", "/api/v1/messages/%s" % bob),
                         ("POST", "/api/v1/messages/%s/release" % bob),
                         ("POST", "/api/v1/messages/%s/delete" % bob)]:
        st, doc = c.call(method, path)
        assert st == 404, (method, path, st, doc)
        assert doc == {"error": {"code": "not_found", "message": "no such message"}}
    unknown = "019300000000700080000000000000ff"
    unknown = "%s-%s-%s-%s-%s" % (unknown[:8], unknown[8:12], unknown[12:16], unknown[16:20],
                                  unknown[20:])
    assert c.call("GET", "/api/v1/messages/%s" % unknown) == \
        (404, {"error": {"code": "not_found", "message": "no such message"}})
    assert states(m, bob) == {"bob@corp.test": "quarantined"}
    # Their own message reads fine.
    st, doc = c.call("GET", "/api/v1/messages/%s" % ids["alias"])
    assert st == 200 and doc["subject"] == "for Alice.Alias@corp.test"
    # Downloads (raw) are for admins by default: refused alike for any id.
    for mid in (bob, ids["alice"], unknown):
        assert c.call("GET", "/api/v1/messages/%s/raw" % mid) == \
            (403, {"error": {"code": "forbidden", "message": "not allowed for role of alice"}})


def test_end_user_releases_only_their_own_recipient(mailbox):
    m, c, ids = mailbox
    both = ids["both"]
    st, doc = c.call("POST", "/api/v1/messages/%s/release" % both,
                     body={"recipients": ["bob@corp.test"]})
    assert st == 422, doc
    assert states(m, both) == {"alice@corp.test": "quarantined", "bob@corp.test": "quarantined"}
    st, doc = c.call("POST", "/api/v1/messages/%s/release" % both)
    assert st == 202, doc
    assert [r["address"] for r in doc["recipients"]] == ["alice@corp.test"]
    assert states(m, both) == {"alice@corp.test": "releasing", "bob@corp.test": "quarantined"}

    # Bulk actions are scoped the same way, even "all".
    st, doc = c.call("POST", "/api/v1/messages/delete", body={"all": True})
    assert st == 200, doc
    assert doc["changed"] == 2  # alice's and the alias's; the released one is not quarantined
    assert states(m, ids["bob"]) == {"bob@corp.test": "quarantined"}
    assert states(m, ids["alice"]) == {"alice@corp.test": "deleted"}
    assert states(m, ids["alias"]) == {"Alice.Alias@corp.test": "deleted"}
    st, doc = c.call("POST", "/api/v1/messages/release", body={"ids": [ids["bob"]]})
    assert st == 200 and doc["changed"] == 0
    assert states(m, ids["bob"]) == {"bob@corp.test": "quarantined"}


def test_end_user_cannot_manage_accounts_or_read_the_audit_log(mailbox):
    m, c, _ = mailbox
    assert c.call("GET", "/api/v1/users")[0] == 403
    assert c.call("POST", "/api/v1/users", body={"username": "x", "password": "12345678",
                                                 "role": "admin"})[0] == 403
    assert c.call("GET", "/api/v1/audit")[0] == 403


def test_me_preferences_and_own_safelist(mailbox):
    m, c, _ = mailbox
    st, doc = c.call("PUT", "/api/v1/me", body={"language": "ja", "time_zone": "Asia/Tokyo"})
    assert st == 200, doc
    assert doc["user"]["language"] == "ja" and doc["user"]["time_zone"] == "Asia/Tokyo"
    st, doc = c.call("GET", "/api/v1/me")
    assert st == 200 and doc["user"]["time_zone"] == "Asia/Tokyo"
    assert c.call("PUT", "/api/v1/me", body={"language": "fr"})[0] == 422
    assert c.call("PUT", "/api/v1/me", body={"time_zone": "../etc/passwd"})[0] == 422
    assert c.call("PUT", "/api/v1/me", body={"language": "en"}, csrf=False)[0] == 403

    st, doc = c.call("PUT", "/api/v1/me/slbl",
                     body={"safelist": ["friend@example.jp"], "blocklist": ["spam.example"]})
    assert st == 200, doc
    st, doc = c.call("GET", "/api/v1/me/slbl")
    assert st == 200 and doc["recipient"] == "alice@corp.test"
    assert doc["safelist"] == ["friend@example.jp"] and doc["blocklist"] == ["spam.example"]
    # Stored under the primary address: the admin sees the same lists.
    st, doc = m.api("GET", "/api/v1/slbl/alice@corp.test")
    assert st == 200 and doc["safelist"] == ["friend@example.jp"]


# ---- roles and accounts ---------------------------------------------------------


def test_operator_acts_on_messages_but_cannot_manage_users(manager):
    add_user(manager, "op2", "operator-pw-3", "operator")
    mid = manager.send("s@example.jp", "someone@corp.test", make_message())
    c = Client(manager)
    assert c.login("op2", "operator-pw-3")[0] == 200
    st, doc = c.call("GET", "/api/v1/messages")
    assert st == 200 and [x["id"] for x in doc["messages"]] == [mid]
    st, doc = c.call("POST", "/api/v1/users", body={"username": "new", "password": "long-enough",
                                                    "role": "admin"})
    assert st == 403, doc
    assert c.call("GET", "/api/v1/users")[0] == 403
    assert c.call("DELETE", "/api/v1/users/op2")[0] == 403
    assert c.call("GET", "/api/v1/audit")[0] == 403
    assert c.call("GET", "/api/v1/slbl/someone@corp.test")[0] == 403


def test_account_validation(manager):
    body = {"username": "weak", "password": "short", "role": "enduser"}
    st, doc = manager.api("POST", "/api/v1/users", json=body)
    assert st == 422 and "password" in doc["error"]["message"]
    body = {"username": "badrole", "password": "long-enough", "role": "root"}
    assert manager.api("POST", "/api/v1/users", json=body)[0] == 422
    body = {"username": "addr", "password": "long-enough", "role": "enduser",
            "addresses": ["not an address"]}
    assert manager.api("POST", "/api/v1/users", json=body)[0] == 422
    add_user(manager, "dup", "long-enough", "enduser", ["dup@corp.test"])
    body = {"username": "dup", "password": "long-enough", "role": "enduser"}
    assert manager.api("POST", "/api/v1/users", json=body)[0] == 409
    st, doc = manager.api("GET", "/api/v1/users")
    assert st == 200 and [u["username"] for u in doc["users"]] == ["dup"]
    assert "password_hash" not in doc["users"][0]
    # Deleting an account ends its sessions.
    c = Client(manager)
    assert c.login("dup", "long-enough")[0] == 200
    assert manager.api("DELETE", "/api/v1/users/dup")[0] == 200
    assert manager.api("DELETE", "/api/v1/users/dup")[0] == 404
    assert c.call("GET", "/api/v1/messages")[0] == 401


def test_audit_log_records_actions_logins_and_accounts(manager):
    add_user(manager, "aud", "auditor-pw-1", "operator")
    ids = [manager.send("s@example.jp", ["a@corp.test", "b@corp.test"], make_message())
           for _ in range(2)]
    c = Client(manager)
    assert c.login("aud", "wrong-password")[0] == 401
    assert c.login("aud", "auditor-pw-1")[0] == 200
    assert c.call("POST", "/api/v1/messages/%s/release" % ids[0],
                  body={"recipients": ["a@corp.test"]})[0] == 202
    assert c.call("POST", "/api/v1/messages/%s/delete" % ids[1])[0] == 200
    assert c.call("POST", "/api/v1/messages/release", body={"ids": ids})[0] == 200
    assert c.call("DELETE", "/api/v1/session")[0] == 200
    assert manager.api("DELETE", "/api/v1/users/aud")[0] == 200

    rows = list(reversed(audit(manager)))
    got = [(r["actor"], r["action"], r["target"]) for r in rows]
    assert got == [
        ("token", "user_create", "aud"),
        ("aud", "login_failed", None),
        ("aud", "login", None),
        ("aud", "release", ids[0]),
        ("aud", "delete", ids[1]),
        ("aud", "bulk_release", None),
        ("aud", "logout", None),
        ("token", "user_delete", "aud"),
    ]
    assert rows[3]["detail"] == {"recipients": ["a@corp.test"], "changed": 1}
    assert rows[4]["detail"] == {"recipients": "all", "changed": 2}
    assert rows[5]["detail"]["request"]["ids"] == ids
    assert rows[5]["detail"]["changed"] == 1  # b@ of the first message
    assert all(r["peer"] == "127.0.0.1" for r in rows)

    # Paging goes backwards through the log.
    st, page = manager.api("GET", "/api/v1/audit?limit=3")
    assert st == 200 and len(page["entries"]) == 3 and page["next_cursor"]
    st, page2 = manager.api("GET", "/api/v1/audit?limit=10&cursor=" + page["next_cursor"])
    assert [r["seq"] for r in page["entries"] + page2["entries"]] == \
        [r["seq"] for r in reversed(rows)]


# ---- the first admin ----------------------------------------------------------------


def test_initial_admin_from_config_only_when_no_user_exists(start_manager, workdir):
    pw = os.path.join(workdir, "admin.pw")
    with open(pw, "w") as f:
        f.write(ADMIN_PW + "\n")
    m = start_manager(manager__initial_admin="boss", manager__initial_admin_password_file=pw)
    c = Client(m)
    st, doc = c.login("boss", ADMIN_PW)
    assert st == 200 and doc["user"]["role"] == "admin"
    # The admin session can create accounts (with its CSRF token).
    st, doc = c.call("POST", "/api/v1/users", body={"username": "second",
                                                     "password": "second-pw-1",
                                                     "role": "operator"})
    assert st == 201, doc
    # A new password in the file does not touch the existing account.
    with open(pw, "w") as f:
        f.write("another-password\n")
    m.restart()
    assert Client(m).login("boss", "another-password")[0] == 401
    assert Client(m).login("boss", ADMIN_PW)[0] == 200


def test_initial_admin_needs_its_password_file(start_manager, workdir):
    m = start_manager(start=False, manager__initial_admin="boss")
    m.write_config()
    r = subprocess.run([find_binary("lazaretd"), "--check-config", "-c", m.conf_path],
                       capture_output=True, text=True, timeout=t(20))
    assert r.returncode == 1
    assert "initial_admin_password_file" in r.stderr


def test_lazaretctl_user_add_list_delete(manager):
    ctl = find_binary("lazaretctl")
    base = [ctl, "--url", manager.http_url, "--token", manager.token]
    r = subprocess.run(base + ["user", "add", "chief", "--role", "admin", "--password-stdin"],
                       input="chief-pw-123\n", capture_output=True, text=True, timeout=t(20))
    assert r.returncode == 0, r.stderr
    r = subprocess.run(base + ["user", "add", "hana", "--role", "enduser",
                               "--address", "hana@corp.test", "--password-stdin"],
                       input="hana-pw-1234\n", capture_output=True, text=True, timeout=t(20))
    assert r.returncode == 0, r.stderr
    r = subprocess.run(base + ["user", "add", "weak", "--role", "admin", "--password-stdin"],
                       input="short\n", capture_output=True, text=True, timeout=t(20))
    assert r.returncode == 1 and "too weak" in r.stderr
    r = subprocess.run(base + ["user", "list"], capture_output=True, text=True, timeout=t(20))
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[1].split()[:2] == ["chief", "admin"]
    assert lines[2].split() == ["hana", "enduser", "hana@corp.test"]
    st, doc = Client(manager).login("chief", "chief-pw-123")
    assert st == 200 and doc["user"]["role"] == "admin"
    r = subprocess.run(base + ["user", "delete", "hana"], capture_output=True, text=True,
                       timeout=t(20))
    assert r.returncode == 0, r.stderr
    assert Client(manager).login("hana", "hana-pw-1234")[0] == 401
    r = subprocess.run(base + ["user", "add", "x", "--password-stdin"], input="12345678\n",
                       capture_output=True, text=True, timeout=t(20))
    assert r.returncode == 2


# ---- LDAP end users (a real slapd) ------------------------------------------------------

# The directory (LDAP_DATA) and the `slapd` fixture are in conftest.py.


def test_ldap_end_user_sees_mail_to_all_their_directory_addresses(start_manager, slapd):
    m = ldap_manager(start_manager, slapd)
    ids = [m.send("s@example.jp", "taro@corp.test", make_message(to="taro@corp.test")),
           m.send("s@example.jp", "yamada@corp.test", make_message(to="yamada@corp.test")),
           m.send("s@example.jp", "someone.else@corp.test", make_message())]
    c = Client(m)
    assert c.login("taro", "wrong")[0] == 401
    st, doc = c.login("taro", "taro-ldap-pw")
    assert st == 200, doc
    assert doc["user"] == {"username": "taro", "role": "enduser",
                           "addresses": ["taro@corp.test", "yamada@corp.test"]}
    st, doc = c.call("GET", "/api/v1/messages")
    assert st == 200
    assert {x["id"] for x in doc["messages"]} == {ids[0], ids[1]}
    assert c.call("GET", "/api/v1/messages/%s" % ids[2])[0] == 404
    st, doc = c.call("POST", "/api/v1/messages/%s/release" % ids[1])
    assert st == 202 and states(m, ids[1]) == {"yamada@corp.test": "releasing"}
    rows = audit(m)
    assert rows[0]["action"] == "release" and rows[0]["actor"] == "taro"
    assert any(r["action"] == "login" and r["detail"] == {"method": "ldap"} for r in rows)


def test_ldap_filter_escapes_the_username(start_manager, slapd):
    m = ldap_manager(start_manager, slapd)
    c = Client(m)
    # "*" must match only the entry whose uid really is "star*", never as a wildcard.
    assert c.login("t*", "taro-ldap-pw")[0] == 401
    assert c.login("*", "star-ldap-pw")[0] == 401
    st, doc = c.login("star*", "star-ldap-pw")
    assert st == 200 and doc["user"]["addresses"] == ["star@corp.test"]
    # An empty password would be an anonymous bind: never a login.
    assert c.login("taro", "")[0] == 401


def test_ldap_addresses_come_from_the_entry_not_the_typed_name(start_manager, slapd):
    m = ldap_manager(start_manager, slapd)
    c = Client(m)
    # A typed domain names no entry: refused, never an address.
    assert c.login("taro@other.test", "taro-ldap-pw")[0] == 401
    # However the name is typed, the addresses are the entry's.
    st, doc = c.login("TARO", "taro-ldap-pw")
    assert st == 200, doc
    assert doc["user"]["addresses"] == ["taro@corp.test", "yamada@corp.test"]


def test_local_account_comes_before_the_directory(start_manager, slapd):
    m = ldap_manager(start_manager, slapd)
    add_user(m, "taro", "local-taro-pw", "operator")
    c = Client(m)
    assert c.login("taro", "taro-ldap-pw")[0] == 401
    st, doc = c.login("taro", "local-taro-pw")
    assert st == 200 and doc["user"]["role"] == "operator"


def test_unreachable_directory_answers_503(start_manager):
    m = start_manager(auth_ldap__uri="ldap://127.0.0.1:%d/" % free_port(),
                      auth_ldap__base_dn="dc=example,dc=com", auth_ldap__timeout="2s")
    st, doc = Client(m).login("taro", "taro-ldap-pw")
    assert st == 503, doc
    assert "auth.ldap_failed" in m.log_text()


# ---- IMAP end users (a real Dovecot) ------------------------------------------------------


@pytest.fixture
def dovecot(workdir):
    """Dovecot's IMAP service in the foreground with a passwd-file; yields host:port."""
    if not os.access("/usr/sbin/dovecot", os.X_OK):
        pytest.fail("/usr/sbin/dovecot missing (Debian package dovecot-imapd)")
    d = os.path.join(workdir, "imap")
    for sub in ("run", "mail"):
        os.makedirs(os.path.join(d, sub))
    os.chmod(d, 0o755)
    uid, gid = os.getuid(), os.getgid()
    login_user = "nobody" if uid == 0 else None
    with open(os.path.join(d, "passwd"), "w") as f:
        f.write("hanako:{PLAIN}hanako-imap-pw:%d:%d::%s/mail/hanako\n" % (
            65534 if uid == 0 else uid, 65534 if uid == 0 else gid, d))
        f.write("jiro:{PLAIN}jiro \"quoted\" pw:%d:%d::%s/mail/jiro\n" % (
            65534 if uid == 0 else uid, 65534 if uid == 0 else gid, d))
    os.chmod(os.path.join(d, "mail"), 0o777)
    port = free_port()
    conf = os.path.join(d, "dovecot.conf")
    lines = [
        "base_dir = %s/run" % d,
        "state_dir = %s/run" % d,
        "instance_name = lazaret-e2e-%d" % port,
        "protocols = imap",
        "listen = 127.0.0.1",
        "ssl = no",
        "disable_plaintext_auth = no",
        "auth_failure_delay = 0",
        # Like many single-domain servers: the domain of a login name is dropped unread.
        "auth_username_format = %Ln",
        "log_path = %s/dovecot.log" % d,
        "mail_location = maildir:%s/mail/%%u" % d,
        "passdb {", "  driver = passwd-file", "  args = %s/passwd" % d, "}",
        "userdb {", "  driver = passwd-file", "  args = %s/passwd" % d, "}",
        "service imap-login {", "  chroot =",
        "  inet_listener imap {", "    address = 127.0.0.1", "    port = %d" % port, "  }",
        "  inet_listener imaps {", "    port = 0", "  }", "}",
        "service anvil {", "  chroot =", "}",
    ]
    if login_user:
        lines += ["default_login_user = nobody", "default_internal_user = nobody",
                  "default_internal_group = nogroup"]
    with open(conf, "w") as f:
        f.write("\n".join(lines) + "\n")
    with listening_daemon(["/usr/sbin/dovecot", "-F", "-c", conf], port, "dovecot"):
        yield "127.0.0.1:%d" % port
    shutil.rmtree(d, ignore_errors=True)


def test_imap_end_user_logs_in_and_sees_their_mail(start_manager, dovecot):
    # This Dovecot has no TLS (test_directory_tls.py has one with TLS): plain on loopback.
    m = start_manager(auth_imap__host=dovecot, auth_imap__domain="corp.test",
                      auth_imap__tls="none")
    mine = m.send("s@example.jp", "hanako@corp.test", make_message(to="hanako@corp.test"))
    theirs = m.send("s@example.jp", "jiro@corp.test", make_message(to="jiro@corp.test"))
    c = Client(m)
    assert c.login("hanako", "wrong-pw")[0] == 401
    st, doc = c.login("hanako", "hanako-imap-pw")
    assert st == 200, doc
    assert doc["user"] == {"username": "hanako", "role": "enduser",
                           "addresses": ["hanako@corp.test"]}
    st, doc = c.call("GET", "/api/v1/messages")
    assert st == 200 and [x["id"] for x in doc["messages"]] == [mine]
    assert c.call("GET", "/api/v1/messages/%s" % theirs)[0] == 404

    # A username with "@" is the address itself; quotes in the password are quoted for IMAP.
    c2 = Client(m)
    st, doc = c2.login("jiro@corp.test", 'jiro "quoted" pw')
    assert st == 200, doc
    assert doc["user"]["addresses"] == ["jiro@corp.test"]
    st, doc = c2.call("GET", "/api/v1/messages")
    assert [x["id"] for x in doc["messages"]] == [theirs]


def test_imap_login_is_bound_to_the_configured_domain(start_manager, dovecot):
    import imaplib
    host, port = dovecot.rsplit(":", 1)
    # The server ignores the domain: hanako's password opens "hanako@other.test" too.
    imap = imaplib.IMAP4(host, int(port), timeout=t(10))
    try:
        assert imap.login("hanako@other.test", "hanako-imap-pw")[0] == "OK"
    finally:
        imap.logout()
    m = start_manager(auth_imap__host=dovecot, auth_imap__domain="corp.test",
                      auth_imap__tls="none")
    other = m.send("s@example.jp", "hanako@other.test", make_message(to="hanako@other.test"))
    c = Client(m)
    for name in ("hanako@other.test", "hanako@corp.test.other.test", "@corp.test",
                 "hanako@corp.test@other.test"):
        st, doc = c.login(name, "hanako-imap-pw")
        assert (st, doc) == (401, {"error": {"code": "unauthorized",
                                             "message": "wrong username or password"}}), name
        assert c.cookie is None
    assert "auth.imap_refused" in m.log_text()
    # In the configured domain (any case), the address is local part @ that domain.
    st, doc = c.login("Hanako@CORP.test", "hanako-imap-pw")
    assert st == 200, doc
    assert doc["user"]["addresses"] == ["hanako@corp.test"]
    assert c.call("GET", "/api/v1/messages/%s" % other)[0] == 404


def test_imap_login_in_another_domain_does_not_reach_the_server(start_manager):
    silent = SilentServer()
    try:
        m = start_manager(auth_imap__host="127.0.0.1:%d" % silent.port,
                          auth_imap__domain="corp.test", auth_imap__timeout="5s")
        started = time.monotonic()
        st, doc = Client(m).login("alice@other-domain.test", "whatever")
        assert st == 401, doc
        assert time.monotonic() - started < t(2)
        time.sleep(0.3)
        assert silent.conns == []
    finally:
        silent.close()


def test_imap_needs_its_domain(start_manager):
    m = start_manager(start=False, auth_imap__host="127.0.0.1:143")
    m.write_config()
    r = subprocess.run([find_binary("lazaretd"), "--check-config", "-c", m.conf_path],
                       capture_output=True, text=True, timeout=t(20))
    assert r.returncode == 1
    assert "domain" in r.stderr and "auth_imap" in r.stderr


def test_ldap_refusal_falls_through_to_imap(start_manager, slapd, dovecot):
    m = ldap_manager(start_manager, slapd, auth_imap__host=dovecot,
                     auth_imap__domain="corp.test", auth_imap__tls="none")
    c = Client(m)
    st, doc = c.login("hanako", "hanako-imap-pw")
    assert st == 200 and doc["user"]["addresses"] == ["hanako@corp.test"]
    st, doc = c.login("taro", "taro-ldap-pw")
    assert st == 200 and doc["user"]["addresses"] == ["taro@corp.test", "yamada@corp.test"]


class ScriptedImapServer:
    """An IMAP server on loopback that answers LOGIN from a script (one per connection)."""

    def __init__(self, after_login):
        import threading
        self.after_login = after_login  # bytes sent after "a1 LOGIN ...", then it waits
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.logins = 0
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            with c:
                c.settimeout(5)
                try:
                    c.sendall(b"* OK [CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN] ready\r\n")
                    data = b""
                    while b"\n" not in data:
                        chunk = c.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    if data.startswith(b"a1 LOGIN "):
                        self.logins += 1
                        # In small pieces: literals and lines cut across reads.
                        for i in range(0, len(self.after_login), 5):
                            c.sendall(self.after_login[i:i + 5])
                            time.sleep(0.002)
                        c.recv(4096)  # a2 LOGOUT, or the client closing
                except OSError:
                    pass

    def close(self):
        self.stop = True
        self.thread.join(5)
        self.sock.close()


@pytest.mark.parametrize("after_login, want_status", [
    # A literal is data: the "a1 OK" inside it is not the reply, the NO after it is.
    (b'* ID ("name" {12}\r\na1 OK fake\r\n)\r\n'
     b"a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n", 401),
    # Untagged data with literals (Japanese text too) before an OK: the login works.
    (b'* LIST () "/" {9}\r\n' + "\u53d7\u4fe1\u7bb1".encode() + b"\r\n"
     b"* 1 FETCH (BINARY[1] ~{4}\r\n\x00a1 \r\n)\r\n"
     b"a1 OK [CAPABILITY IMAP4rev1] Logged in\r\n* BYE bye\r\na2 OK done\r\n", 200),
    # A literal over 64 KiB is not something a login needs: the server is broken.
    (b"* 1 FETCH (BODY[] {65537}\r\n" + b"a1 OK x\r\n" * 4, 503),
], ids=["literal-hides-a-tag", "literals-then-ok", "literal-too-large"])
def test_imap_literals_never_pass_for_the_tagged_reply(start_manager, after_login, want_status):
    srv = ScriptedImapServer(after_login)
    try:
        m = start_manager(auth_imap__host="127.0.0.1:%d" % srv.port,
                          auth_imap__domain="corp.test", auth_imap__timeout="3s",
                          auth_imap__tls="none")
        c = Client(m)
        st, doc = c.login("hanako", "hanako-imap-pw")
        assert st == want_status, doc
        assert srv.logins == 1
        if st == 200:
            assert doc["user"] == {"username": "hanako", "role": "enduser",
                                   "addresses": ["hanako@corp.test"]}
            assert c.call("GET", "/api/v1/messages")[0] == 200
        else:
            assert c.cookie is None
            assert c.call("GET", "/api/v1/messages")[0] == 401
        if st == 503:
            assert "auth.imap_failed" in m.log_text()
    finally:
        srv.close()


class SilentServer:
    """Accepts TCP connections on loopback and never answers: a hung directory."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stop = False
        import threading
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
                self.conns.append(c)
            except OSError:
                pass

    def close(self):
        self.stop = True
        self.thread.join()
        for c in self.conns:
            c.close()
        self.sock.close()


def test_slow_directory_does_not_block_the_server_and_shutdown_answers_503(start_manager):
    import threading
    silent = SilentServer()
    try:
        m = start_manager(auth_ldap__uri="ldap://127.0.0.1:%d/" % silent.port,
                          auth_ldap__base_dn="dc=example,dc=com", auth_ldap__timeout="4s")
        result = {}

        def login():
            try:
                result["answer"] = Client(m).login("taro", "taro-ldap-pw")
            except OSError as e:  # the listener closes as the daemon stops
                result["answer"] = (None, repr(e))
        th = threading.Thread(target=login)
        th.start()
        wait_for(lambda: len(silent.conns) >= 1, 10, "lazaretd to reach the directory")
        # The login waits off the loop: everything else still answers at once.
        started = time.monotonic()
        assert m.api("GET", "/healthz", token=None)[0] == 200
        assert m.api("GET", "/api/v1/messages")[0] == 200
        assert time.monotonic() - started < t(1.5)
        # SIGTERM with the login still waiting: the daemon waits for the directory's
        # timeout, answers 503 (or the connection closes with the listener), and exits 0.
        assert m.stop() == 0
        th.join(timeout=t(20))
        assert not th.is_alive()
        st, doc = result["answer"]
        assert st in (503, None), (st, doc)
        assert "method=POST path=/api/v1/session status=503" in m.log_text()
    finally:
        silent.close()


def test_admin_session_needs_csrf_on_every_state_change(start_manager, workdir):
    pw = os.path.join(workdir, "admin.pw")
    with open(pw, "w") as f:
        f.write(ADMIN_PW + "\n")
    m = start_manager(manager__initial_admin="boss", manager__initial_admin_password_file=pw)
    c = Client(m)
    assert c.login("boss", ADMIN_PW)[0] == 200
    body = {"safelist": ["a@example.jp"], "blocklist": []}
    for method, path, b in [("POST", "/api/v1/users", {"username": "n", "password": "12345678",
                                                        "role": "enduser"}),
                            ("DELETE", "/api/v1/users/boss", None),
                            ("PUT", "/api/v1/slbl/x@corp.test", body),
                            ("PUT", "/api/v1/me", {"language": "en"})]:
        st, doc = c.call(method, path, body=b, csrf=False)
        assert (st, doc) == (403, CSRF_ERROR), (method, path, st, doc)
    assert c.call("PUT", "/api/v1/slbl/x@corp.test", body=body)[0] == 200

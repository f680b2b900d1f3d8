"""Single sign-on through OpenID Connect ([auth_oidc]) against a real provider
process on loopback (tests/e2e/oidc_provider.py, python3-jwcrypto signing RS256
and ES256 ID tokens): the code flow with PKCE, state and nonce; the session it
opens; every way an ID token or a callback is refused (a 401 page that says why,
and no session cookie); key rotation; logout; the login button in Chromium.
"""

import http.client
import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request

import pytest

from conftest import REPO
from e2e_helpers import t
from test_web import WEB_ROOT, run_browser

PROVIDER = os.path.join(REPO, "tests", "e2e", "oidc_provider.py")
CLIENT_ID = "lazaret"
CLIENT_SECRET = "s3cret/with+odd=chars"


class Provider:
    """The provider process: it binds a free port itself and prints it."""

    def __init__(self):
        self.proc = subprocess.Popen(["/usr/bin/python3", PROVIDER, CLIENT_ID, CLIENT_SECRET],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.strip().isdigit(), "the provider did not start: %s" % self.proc.stderr.read()
        self.port = int(line)
        self.url = "http://127.0.0.1:%d" % self.port

    def control(self, **doc):
        req = urllib.request.Request(self.url + "/_control", data=json.dumps(doc).encode(),
                                     method="POST")
        urllib.request.urlopen(req, timeout=t(10)).read()

    def log(self):
        return json.loads(urllib.request.urlopen(self.url + "/_log", timeout=t(10)).read())

    def stop(self):
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()
        self.proc.stderr.close()


@pytest.fixture
def oidc(start_manager, workdir):
    """factory(**overrides) -> (manager, provider): a manager whose [auth_oidc] names a
    provider process started for it."""
    made = []

    def factory(**overrides):
        p = Provider()
        made.append(p)
        secret = os.path.join(workdir, "oidc-%d.secret" % p.port)
        with open(secret, "w") as f:
            f.write(CLIENT_SECRET + "\n")
        cfg = dict(auth_oidc__issuer=p.url,
                   auth_oidc__client_id=CLIENT_ID,
                   auth_oidc__client_secret_file=secret,
                   auth_oidc__allowed_domains="example.com, example.org",
                   auth_oidc__role_claim="groups",
                   auth_oidc__admin_values="mail-admins",
                   auth_oidc__operator_values="helpdesk",
                   http__web_root=WEB_ROOT)
        cfg.update(overrides)
        m = start_manager(start=False, **cfg)
        p.control(redirect_uri=m.http_url + "/auth/oidc/callback")
        m.start()
        return m, p

    yield factory
    for p in made:
        p.stop()


def get(url, cookie=None):
    """(status, headers as a list of pairs, body) of one GET, redirects not followed."""
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=t(20))
    path = u.path + ("?" + u.query if u.query else "")
    c.request("GET", path, headers={"Cookie": cookie} if cookie else {})
    r = c.getresponse()
    out = r.status, r.getheaders(), r.read()
    c.close()
    return out


def header(headers, name):
    return [v for k, v in headers if k.lower() == name.lower()]


def cookie_of(headers, name):
    for v in header(headers, "Set-Cookie"):
        first = v.split(";", 1)[0]
        if first.startswith(name + "="):
            return first, v
    return None, None


def start_login(m):
    """/auth/oidc/login, then the provider's /authorize: (callback URL, binding cookie)."""
    st, hdrs, _ = get(m.http_url + "/auth/oidc/login")
    assert st == 302, st
    binding, attrs = cookie_of(hdrs, "lazaret_oidc")
    assert binding is not None and "HttpOnly" in attrs and "SameSite=Lax" in attrs
    st, hdrs, body = get(header(hdrs, "Location")[0])
    assert st == 302, (st, body)
    callback = header(hdrs, "Location")[0]
    assert callback.startswith(m.http_url + "/auth/oidc/callback?")
    return callback, binding


def finish_login(m, callback, binding):
    """(status, headers, body, session cookie or None) of the callback."""
    st, hdrs, body = get(callback, binding)
    session, _ = cookie_of(hdrs, "lazaret_session")
    return st, hdrs, body, session


def login(m):
    callback, binding = start_login(m)
    return finish_login(m, callback, binding)


def me(m, session):
    st, _, body = get(m.http_url + "/api/v1/me", session)
    return st, json.loads(body) if body else None


def refused(m, reason):
    """The whole flow; asserts a 401 page with reason and no session cookie."""
    st, hdrs, body, session = login(m)
    assert st == 401, (st, body[:300])
    assert header(hdrs, "Content-Type")[0].startswith("text/html")
    text = body.decode()
    assert "Login failed" in text and reason in text, text
    assert session is None and not any("lazaret_session=" in v and "Max-Age=0" not in v
                                       for v in header(hdrs, "Set-Cookie"))
    return text


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_login_opens_a_session_with_role_and_addresses(oidc, alg):
    m, p = oidc()
    p.control(alg=alg, claims={"sub": "u-7", "email": "Alice@Example.com",
                               "email_verified": True, "groups": ["staff"]})
    st, hdrs, body, session = login(m)
    assert st == 302 and header(hdrs, "Location") == ["/"], (st, body)
    assert session is not None
    # the callback's URL (code, state) is not handed on as a Referer
    assert header(hdrs, "Referrer-Policy") == ["no-referrer"]
    _, attrs = cookie_of(hdrs, "lazaret_session")
    assert "HttpOnly" in attrs and "SameSite=Strict" in attrs
    st, doc = me(m, session)
    assert st == 200, doc
    assert doc["user"]["username"] == "alice@example.com"
    assert doc["user"]["role"] == "enduser"
    assert doc["user"]["addresses"] == ["alice@example.com"]
    # what went to the provider: code flow, PKCE S256, state and nonce; the verifier
    # and the client secret only on the back channel
    log = p.log()
    authz = [e["query"] for e in log if e["endpoint"] == "authorize"][-1]
    assert authz["response_type"] == "code" and authz["code_challenge_method"] == "S256"
    assert len(authz["state"]) >= 43 and len(authz["nonce"]) >= 43
    assert len(authz["code_challenge"]) == 43 and "code_verifier" not in authz
    token = [e for e in log if e["endpoint"] == "token"][-1]
    assert len(token["form"]["code_verifier"]) == 43
    assert token["authorization"].startswith("Basic ")
    # the audit log names the method
    st, audit = m.api("GET", "/api/v1/audit?limit=100")
    assert st == 200
    rows = [r for r in audit["entries"] if r["actor"] == "alice@example.com" and r["action"] == "login"]
    assert rows and rows[0]["detail"]["method"] == "oidc", audit


def test_role_claim_makes_admins_and_operators_and_aliases_count(oidc):
    m, p = oidc(auth_oidc__address_claim="mail_addresses")
    p.control(claims={"sub": "a-1", "mail_addresses": ["root@example.com", "postmaster@example.org",
                                                       "elsewhere@evil.test"],
                      "groups": ["helpdesk", "mail-admins"]})
    st, _, body, session = login(m)
    assert st == 302, body
    _, doc = me(m, session)
    assert doc["user"]["role"] == "admin"
    # an alias outside the allowed domains is dropped, the rest kept in order
    assert doc["user"]["addresses"] == ["root@example.com", "postmaster@example.org"]
    st, _, _ = get(m.http_url + "/api/v1/users", session)
    assert st == 200  # an admin's session may list accounts
    p.control(claims={"sub": "o-1", "mail_addresses": "desk@example.com", "groups": "helpdesk"})
    st, _, body, session = login(m)
    assert st == 302, body
    _, doc = me(m, session)
    assert doc["user"]["role"] == "operator" and doc["user"]["addresses"] == ["desk@example.com"]
    st, _, _ = get(m.http_url + "/api/v1/users", session)
    assert st == 403


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_forged_signature_is_refused(oidc, alg):
    m, p = oidc()
    p.control(alg=alg, mode="forged")
    refused(m, "signature does not verify")


def test_wrong_audience_is_refused(oidc):
    m, p = oidc()
    p.control(claims={"sub": "u-1", "email": "alice@example.com", "aud": "another-client"})
    refused(m, "meant for another client")


def test_expired_token_is_refused(oidc):
    import time
    m, p = oidc()
    now = int(time.time())
    p.control(claims={"sub": "u-1", "email": "alice@example.com", "iat": now - 400,
                      "exp": now - 300})
    refused(m, "has expired")


def test_wrong_issuer_is_refused(oidc):
    m, p = oidc()
    p.control(claims={"sub": "u-1", "email": "alice@example.com",
                      "iss": "http://127.0.0.1:1/evil"})
    refused(m, "comes from another issuer")


def test_unknown_key_id_is_refused(oidc):
    m, p = oidc()
    p.control(mode="unknown_kid")
    refused(m, "a key the provider does not publish")


def test_alg_none_is_refused(oidc):
    m, p = oidc()
    p.control(mode="alg_none")
    refused(m, "algorithm &quot;none&quot; is not accepted")


def test_hmac_keyed_with_the_public_key_is_refused(oidc):
    m, p = oidc()
    p.control(mode="hs256_pubkey")
    refused(m, "algorithm &quot;HS256&quot; is not accepted")


def test_wrong_client_secret_is_refused_by_the_provider(oidc, workdir):
    bad = os.path.join(workdir, "wrong.secret")
    with open(bad, "w") as f:
        f.write("not-the-secret\n")
    m, p = oidc(auth_oidc__client_secret_file=bad)
    refused(m, "the provider refused the code (invalid_client)")


def test_provider_down_answers_503_with_a_reason(oidc):
    m, p = oidc()
    p.stop()
    st, hdrs, body = get(m.http_url + "/auth/oidc/login")
    assert st == 503 and b"cannot be reached" in body, (st, body)
    assert not cookie_of(hdrs, "lazaret_oidc")[0]
    # password logins are not affected
    assert m.api("GET", "/api/v1/session", token=None)[0] == 401


def test_address_outside_allowed_domains_is_refused(oidc):
    m, p = oidc()
    p.control(claims={"sub": "u-1", "email": "mallory@evil.test", "email_verified": True})
    refused(m, "mallory@evil.test is outside the allowed domains")


def test_unverified_email_is_refused(oidc):
    m, p = oidc()
    p.control(claims={"sub": "u-1", "email": "alice@example.com", "email_verified": False})
    refused(m, "has not verified this address")


def test_local_account_of_the_same_name_is_not_opened(oidc):
    m, p = oidc()
    st, doc = m.api("POST", "/api/v1/users", json={
        "username": "boss@example.com", "password": "boss-password-1", "role": "admin",
        "addresses": ["boss@example.com"]})
    assert st in (200, 201), doc
    p.control(claims={"sub": "u-9", "email": "boss@example.com"})
    refused(m, "a local account has this name")


def test_replayed_state_is_refused(oidc):
    m, p = oidc()
    callback, binding = start_login(m)
    st, _, _, session = finish_login(m, callback, binding)
    assert st == 302 and session is not None
    st, hdrs, body, session = finish_login(m, callback, binding)
    assert st == 401 and session is None
    assert "already been used" in body.decode()


def test_replayed_nonce_is_refused(oidc):
    m, p = oidc()
    st, _, _, session = login(m)
    assert st == 302 and session is not None
    # the provider hands the first login's ID token (its nonce) to a second login
    p.control(mode="replay_last")
    refused(m, "nonce does not match this login")


def test_callback_without_the_browser_binding_is_refused(oidc):
    """Login CSRF: a callback URL planted in another browser has no binding cookie."""
    m, p = oidc()
    callback, binding = start_login(m)
    st, hdrs, body, session = finish_login(m, callback, None)
    assert st == 401 and session is None
    assert "not started in this browser" in body.decode()
    # and the state is spent: the victim's own browser cannot use it either
    st, _, body, session = finish_login(m, callback, binding)
    assert st == 401 and session is None


def test_provider_error_and_forged_state_are_refused(oidc):
    m, p = oidc()
    callback, binding = start_login(m)
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback).query))
    st, _, body = get(m.http_url + "/auth/oidc/callback?" + urllib.parse.urlencode(
        {"state": q["state"], "error": "access_denied<script>"}), binding)
    assert st == 401 and b"access_denied&lt;script&gt;" in body and b"<script>" not in body
    st, _, body = get(m.http_url + "/auth/oidc/callback?code=x&state=" + "A" * 43, binding)
    assert st == 401 and b"unknown, expired or has already been used" in body


def test_one_address_cannot_flood_the_pending_logins(oidc):
    """Starting logins costs a table entry each: one client address gets 120 a minute."""
    m, p = oidc()
    for i in range(120):
        st, _, _ = get(m.http_url + "/auth/oidc/login")
        assert st == 302, i
    st, hdrs, body = get(m.http_url + "/auth/oidc/login")
    assert st == 429 and b"too many logins" in body
    assert int(header(hdrs, "Retry-After")[0]) > 0
    assert "oidc.login_limited" in m.log_text()


def test_key_rotation_is_followed(oidc):
    m, p = oidc()
    st, _, _, session = login(m)
    assert st == 302 and session is not None
    p.control(rotate=True)
    st, _, body, session = login(m)
    assert st == 302 and session is not None, body
    assert me(m, session)[0] == 200
    assert "oidc.jwks_refresh" in m.log_text()


def test_logout_ends_the_session(oidc):
    m, p = oidc()
    st, _, _, session = login(m)
    assert st == 302
    st, _, body = get(m.http_url + "/api/v1/session", session)
    csrf = json.loads(body)["csrf_token"]
    u = urllib.parse.urlsplit(m.http_url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=t(10))
    c.request("DELETE", "/api/v1/session", headers={"Cookie": session, "X-CSRF-Token": csrf})
    assert c.getresponse().status == 200
    c.close()
    assert me(m, session)[0] == 401


def test_login_info_only_when_configured(oidc, start_manager):
    m, p = oidc()
    st, doc = m.api("GET", "/api/v1/session/oidc", token=None)
    assert st == 200 and doc == {"login_url": "/auth/oidc/login"}
    plain = start_manager()
    st, _ = plain.api("GET", "/api/v1/session/oidc", token=None)
    assert st == 404
    st, _, _ = get(plain.http_url + "/auth/oidc/login")
    assert st == 404


@pytest.mark.parametrize("issuer,error", [
    ("http://idp.example.com/realms/mail", "must be an https:// URL"),
    ("ftp://127.0.0.1/x", "must be an https:// URL"),
])
def test_config_refuses_an_issuer_not_https(start_manager, workdir, build_dir, issuer, error):
    secret = os.path.join(workdir, "s")
    with open(secret, "w") as f:
        f.write("x\n")
    m = start_manager(start=False, auth_oidc__issuer=issuer, auth_oidc__client_id="c",
                      auth_oidc__client_secret_file=secret)
    m.write_config()
    r = subprocess.run([os.path.join(build_dir, "lazaretd"), "-c", m.conf_path,
                        "--check-config"], capture_output=True, text=True, timeout=t(30))
    assert r.returncode == 1 and error in r.stderr, r.stderr


def test_browser_login_button_and_sso(oidc):
    m, p = oidc()
    p.control(claims={"sub": "u-1", "email": "alice@example.com", "email_verified": True})
    res = run_browser("oidc", m.http_url, {"address": "alice@example.com"})
    assert res["values"]["button_en"] == "Sign in with your organization account"
    assert res["values"]["button_ja"] == "組織のアカウントでサインイン"

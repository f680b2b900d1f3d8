"""The second factor (TOTP, RFC 6238) against the real lazaretd.

Enrolment from the settings (the secret, its otpauth URI and QR code, confirmed
by a code, 10 recovery codes shown once), the login that then wants a code (a
half login that reaches nothing else), wrong, replayed, out-of-window and
malformed codes, recovery codes that work once, the login limiter counting wrong
codes, roles that must enrol ([http] totp_required), disabling, the admin's
reset (API and lazaretctl) and the audit rows. Codes are computed here with
hmac/hashlib per RFC 6238 and checked against oathtool once.
"""

import base64
import hashlib
import hmac
import json
import re
import shutil
import struct
import subprocess
import time

from conftest import find_binary
from e2e_helpers import t
from test_sessions import Client, add_user, audit

WRONG_CODE = {"error": {"code": "unauthorized", "message": "wrong code"}}
SECOND_FACTOR = {"error": {"code": "second_factor_required",
                           "message": "a second factor is required: send the code of your "
                                      "authenticator app"},
                 "second_factor": "totp"}
ENROL_FIRST = {"error": {"code": "second_factor_enrolment_required",
                         "message": "your role requires a second factor: enrol one to log in"},
               "second_factor": "enrol"}
NO_HALF_LOGIN = {"error": {"code": "unauthorized",
                           "message": "no login is waiting for a second factor"}}
RECOVERY_RE = re.compile(r"^[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}$")


def totp(secret_b32, step):
    """RFC 6238 (HMAC-SHA1, 6 digits) of step."""
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    off = mac[-1] & 0x0F
    value = (struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF) % 1000000
    return "%06d" % value


def fresh_step():
    """The current 30 s step, waiting out a step's last seconds so the manager agrees."""
    if time.time() % 30 > 25:
        time.sleep(30 - time.time() % 30 + 0.3)
    return int(time.time()) // 30


def other_code(secret, near):
    """A 6-digit code that is none of the codes of steps near +- 3."""
    taken = {totp(secret, near + d) for d in range(-3, 4)}
    n = 0
    while "%06d" % n in taken:
        n += 1
    return "%06d" % n


class TotpClient(Client):
    """A Client that also goes through the half login, from forwarded_for when given."""

    def __init__(self, manager, forwarded_for=None):
        super().__init__(manager)
        self.extra = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}

    def login(self, username, password):
        st, hdrs, raw = self.m.http("POST", "/api/v1/session",
                                    body={"username": username, "password": password},
                                    token=None, headers=self.extra)
        self.last_headers = hdrs
        doc = json.loads(raw) if raw else None
        if st == 200:
            self.cookie = hdrs.get("Set-Cookie", "").split(";", 1)[0]
            self.csrf = doc["csrf_token"]
        return st, doc

    def call(self, method, path, body=None, csrf=True):
        hdrs = dict(self.extra)
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

    def login_password(self, username, password):
        """POST /api/v1/session; keeps the half-login cookie of a 401 that sets one."""
        st, doc = self.login(username, password)
        if st == 401 and "Set-Cookie" in self.last_headers:
            self.cookie = self.last_headers["Set-Cookie"].split(";", 1)[0]
            self.csrf = None
        return st, doc

    def code(self, code):
        st, doc = self.call("POST", "/api/v1/session/totp", body={"code": code}, csrf=False)
        if st == 200:
            self.cookie = self.last_headers["Set-Cookie"].split(";", 1)[0]
            self.csrf = doc["csrf_token"]
        return st, doc

    def logout(self):
        st, _ = self.call("DELETE", "/api/v1/session")
        assert st == 200
        self.cookie = self.csrf = None


def enrol(c, step):
    """Enrols c's (logged-in) user; returns (secret, recovery codes) confirmed at step."""
    st, doc = c.call("POST", "/api/v1/me/totp")
    assert st == 200, doc
    secret = doc["secret"]
    st, doc = c.call("POST", "/api/v1/me/totp/confirm", body={"code": totp(secret, step)})
    assert st == 200, doc
    return secret, doc["recovery_codes"]


def actions(m, user):
    return [(e["action"], e["detail"]) for e in audit(m) if e["actor"] == user]


def test_enrol_login_replay_window_recovery_disable(manager):
    add_user(manager, "tia", "tia-password-1", "admin")
    c = TotpClient(manager)
    assert c.login_password("tia", "tia-password-1")[0] == 200
    st, doc = c.call("GET", "/api/v1/me/totp")
    assert st == 200 and doc == {"enrolled": False, "enrolled_at": None,
                                 "recovery_codes_left": 0, "required": False}
    # Nothing begun: nothing to confirm.
    st, doc = c.call("POST", "/api/v1/me/totp/confirm", body={"code": "123456"})
    assert st == 409 and doc["error"]["message"] == \
        "no enrolment was begun: POST /api/v1/me/totp"

    st, doc = c.call("POST", "/api/v1/me/totp")
    assert st == 200, doc
    secret = doc["secret"]
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    assert doc["uri"] == ("otpauth://totp/Lazaret:tia?secret=%s&issuer=Lazaret"
                          "&algorithm=SHA1&digits=6&period=30" % secret)
    assert doc["qr_svg"].startswith("<svg xmlns=\"http://www.w3.org/2000/svg\"")
    assert doc["qr_svg"].endswith("</svg>") and "h1v1h-1z" in doc["qr_svg"]
    assert (doc["digits"], doc["period"]) == (6, 30)
    # Begun again: a new secret replaces the unconfirmed one.
    st, doc = c.call("POST", "/api/v1/me/totp")
    assert st == 200 and doc["secret"] != secret
    secret = doc["secret"]

    # An independent implementation agrees with ours (oath-toolkit).
    oathtool = shutil.which("oathtool")
    assert oathtool is not None, "oathtool is missing: run scripts/bootstrap"
    s = fresh_step()
    r = subprocess.run([oathtool, "--totp", "-b", "--now=@%d" % (s * 30), secret],
                       capture_output=True, text=True, timeout=t(10))
    assert r.returncode == 0 and r.stdout.strip() == totp(secret, s)

    # A wrong code does not confirm; the right one (a step back) does.
    st, doc = c.call("POST", "/api/v1/me/totp/confirm", body={"code": other_code(secret, s)})
    assert st == 422 and doc == {"error": {"code": "unprocessable", "message": "wrong code"}}
    st, doc = c.call("POST", "/api/v1/me/totp/confirm", body={"code": "12 34"})
    assert st == 422 and doc["error"]["message"] == "wrong code"
    st, doc = c.call("POST", "/api/v1/me/totp/confirm", body={})
    assert st == 422 and doc["error"]["message"] == "\"code\" is required"
    st, doc = c.call("POST", "/api/v1/me/totp/confirm", body={"code": totp(secret, s - 1)})
    assert st == 200, doc
    codes = doc["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(RECOVERY_RE.match(x) for x in codes), codes
    st, doc = c.call("GET", "/api/v1/me/totp")
    assert st == 200 and doc["enrolled"] is True and doc["recovery_codes_left"] == 10
    assert doc["enrolled_at"].endswith("Z") and "secret" not in doc
    st, doc = c.call("POST", "/api/v1/me/totp")
    assert st == 409 and doc["error"]["message"] == \
        "a second factor is enrolled already; disable it first"
    # The secret is never shown again, nor in the account list.
    st, doc = manager.api("GET", "/api/v1/users")
    assert st == 200 and secret not in json.dumps(doc)
    c.logout()

    # The password alone: 401 "second factor required" and a half login of 5 minutes.
    st, doc = c.login_password("tia", "tia-password-1")
    assert st == 401 and doc == SECOND_FACTOR
    assert "Max-Age=300" in c.last_headers["Set-Cookie"]
    # ... which reaches nothing else.
    for method, path in [("GET", "/api/v1/messages"), ("GET", "/api/v1/me"),
                         ("GET", "/api/v1/me/totp"), ("GET", "/api/v1/audit"),
                         ("POST", "/api/v1/me/totp")]:
        st, doc = c.call(method, path, csrf=False)
        assert st == 401, (method, path, st, doc)
    st, doc = c.call("GET", "/api/v1/session")
    assert st == 401 and doc == SECOND_FACTOR
    st, doc = c.call("POST", "/api/v1/session/totp/enrol", csrf=False)
    assert st == 409 and doc["error"]["message"] == \
        "a second factor is enrolled already: send its code"

    # Wrong, malformed, out of the window (two steps back, two ahead): refused alike.
    s = fresh_step()
    for bad in [other_code(secret, s), "12345", "abc", totp(secret, s - 2),
                totp(secret, s + 2)]:
        st, doc = c.code(bad)
        assert st == 401 and doc == WRONG_CODE, bad
    st, doc = c.call("POST", "/api/v1/session/totp", body={"code": 123456}, csrf=False)
    assert st == 422
    # The current code completes it, written "123 456" as apps show it.
    now = totp(secret, s)
    st, doc = c.code(now[:3] + " " + now[3:])
    assert st == 200, doc
    assert doc["user"] == {"username": "tia", "role": "admin", "addresses": []}
    assert "Max-Age=43200" in c.last_headers["Set-Cookie"]
    assert c.call("GET", "/api/v1/messages")[0] == 200
    c.logout()

    # The same code again: replayed, refused.
    assert c.login_password("tia", "tia-password-1")[0] == 401
    st, doc = c.code(now)
    assert st == 401 and doc == WRONG_CODE

    # A recovery code works once (any case, any grouping).
    st, doc = c.code(codes[0].upper().replace("-", " "))
    assert st == 200, doc
    c.logout()
    assert c.login_password("tia", "tia-password-1")[0] == 401
    st, doc = c.code(codes[0])
    assert st == 401 and doc == WRONG_CODE
    st, doc = c.code(totp(secret, s + 1))
    assert st == 200, doc
    st, doc = c.call("GET", "/api/v1/me/totp")
    assert doc["recovery_codes_left"] == 9

    rows = actions(manager, "tia")
    failed = [d["reason"] for a, d in rows if a == "totp_failed" and "during" not in d]
    assert sorted(failed) == sorted(["wrong", "malformed", "malformed", "wrong", "wrong",
                                     "replayed", "wrong"]), rows
    logins = [d["method"] for a, d in rows if a == "totp_login"]
    assert logins == ["totp", "recovery_code", "totp"], rows  # newest first
    assert ("recovery_code_used", {"left": 9}) in rows
    assert [a for a, _ in rows].count("totp_enrolled") == 1

    # Disabling needs the password or a code: a wrong one is refused and audited.
    st, doc = c.call("DELETE", "/api/v1/me/totp", body={"password": "not-it"})
    assert st == 403 and doc == {"error": {"code": "forbidden", "message": "wrong password"}}
    st, doc = c.call("DELETE", "/api/v1/me/totp", body={"code": other_code(secret, s)})
    assert st == 403 and doc == {"error": {"code": "forbidden", "message": "wrong code"}}
    st, doc = c.call("DELETE", "/api/v1/me/totp", body={})
    assert st == 422 and doc["error"]["message"] == "\"code\" or \"password\" is required"
    st, doc = c.call("GET", "/api/v1/me/totp")
    assert doc["enrolled"] is True
    st, doc = c.call("DELETE", "/api/v1/me/totp", body={"password": "tia-password-1"})
    assert st == 200 and doc == {}
    st, doc = c.call("DELETE", "/api/v1/me/totp", body={"password": "tia-password-1"})
    assert st == 404 and doc["error"]["message"] == "no second factor is enrolled"
    assert ("totp_disabled", {"with": "password"}) in actions(manager, "tia")
    c.logout()
    st, doc = c.login_password("tia", "tia-password-1")
    assert st == 200 and doc["user"]["username"] == "tia"


def test_wrong_codes_count_as_failed_logins(start_manager):
    m = start_manager(http__login_max_failures="3", http__login_failure_window="1m",
                      http__login_backoff_max="1m", http__trusted_proxies="127.0.0.1/32")
    add_user(m, "rex", "rex-password-1", "operator")
    owner = TotpClient(m)
    assert owner.login_password("rex", "rex-password-1")[0] == 200
    secret, _ = enrol(owner, fresh_step())
    owner.logout()
    # Someone elsewhere with the password: it neither counts as a failure nor
    # clears the wrong codes.
    c = TotpClient(m, forwarded_for="192.0.2.7")
    assert c.login_password("rex", "rex-password-1")[0] == 401
    s = fresh_step()
    for _ in range(2):
        assert c.code(other_code(secret, s)) == (401, WRONG_CODE)
    assert c.login_password("rex", "rex-password-1")[0] == 401
    assert c.code(other_code(secret, s)) == (401, WRONG_CODE)
    # Three failures: the right code is not even looked at, nor the password.
    st, doc = c.code(totp(secret, s + 1))
    assert st == 429 and doc["error"]["message"] == "too many failed logins; try again later"
    assert int(c.last_headers["Retry-After"]) >= 50
    st, doc = TotpClient(m, forwarded_for="192.0.2.7").login("rex", "rex-password-1")
    assert st == 429
    failed = [e for e in audit(m) if e["actor"] == "rex" and e["action"] == "totp_failed"]
    assert [(e["detail"]["reason"], e["peer"]) for e in failed] == [("wrong", "192.0.2.7")] * 3
    # The owner's address logged in before: let through the account's block (as for
    # passwords), and the code the guesser could not try is still good.
    assert owner.login_password("rex", "rex-password-1")[0] == 401
    st, doc = owner.code(totp(secret, s + 1))
    assert st == 200, doc


def test_roles_that_must_enrol_and_the_admin_reset(start_manager):
    m = start_manager(http__totp_required="admin, operator")
    add_user(m, "olaf", "olaf-password-1", "operator")
    add_user(m, "emma", "emma-password-1", "enduser", ["emma@corp.test"])
    # An end user is not required to.
    st, doc = TotpClient(m).login_password("emma", "emma-password-1")
    assert st == 200 and doc["user"]["role"] == "enduser"

    c = TotpClient(m)
    st, doc = c.login_password("olaf", "olaf-password-1")
    assert st == 401 and doc == ENROL_FIRST
    assert c.call("GET", "/api/v1/messages")[0] == 401
    st, doc = c.code("123456")
    assert st == 409 and doc["error"]["message"] == \
        "begin the enrolment first: POST /api/v1/session/totp/enrol"
    st, doc = c.call("POST", "/api/v1/session/totp/enrol", csrf=False)
    assert st == 200, doc
    secret = doc["secret"]
    assert doc["uri"].startswith("otpauth://totp/Lazaret:olaf?secret=" + secret)
    s = fresh_step()
    assert c.code(other_code(secret, s)) == (401, WRONG_CODE)
    st, doc = c.code(totp(secret, s))
    assert st == 200, doc
    assert doc["user"]["role"] == "operator" and len(doc["recovery_codes"]) == 10
    assert c.call("GET", "/api/v1/messages")[0] == 200
    st, doc = c.call("GET", "/api/v1/me/totp")
    assert doc["enrolled"] is True and doc["required"] is True
    rows = actions(m, "olaf")
    assert ("totp_login", {"method": "enrolment"}) in rows and ("totp_enrolled", None) in rows
    c.logout()
    st, doc = c.login_password("olaf", "olaf-password-1")
    assert st == 401 and doc == SECOND_FACTOR

    # The admin resets it (lost phone and codes): the next login enrols again.
    st, doc = m.api("DELETE", "/api/v1/users/olaf/totp")
    assert st == 200 and doc == {}
    st, doc = m.api("DELETE", "/api/v1/users/olaf/totp")
    assert st == 404 and doc == {"error": {"code": "not_found",
                                           "message": "no second factor for this user"}}
    st, doc = TotpClient(m).login_password("olaf", "olaf-password-1")
    assert st == 401 and doc == ENROL_FIRST
    resets = [e for e in audit(m) if e["action"] == "totp_disabled"]
    assert resets[0]["target"] == "olaf" and resets[0]["detail"] == {"with": "reset"}

    # lazaretctl user totp-reset does the same.
    c = TotpClient(m)
    assert c.login_password("olaf", "olaf-password-1")[0] == 401
    st, doc = c.call("POST", "/api/v1/session/totp/enrol", csrf=False)
    assert c.code(totp(doc["secret"], fresh_step()))[0] == 200
    ctl = find_binary("lazaretctl")
    base = [ctl, "--url", m.http_url, "--token", m.token]
    r = subprocess.run(base + ["user", "totp-reset", "olaf"], capture_output=True, text=True,
                       timeout=t(20))
    assert r.returncode == 0 and r.stdout == "second factor of olaf removed\n", r.stderr
    r = subprocess.run(base + ["user", "totp-reset", "olaf"], capture_output=True, text=True,
                       timeout=t(20))
    assert r.returncode != 0 and "no second factor for this user" in r.stderr
    # No half login at all: nothing to send a code to.
    assert TotpClient(m).code("123456") == (401, NO_HALF_LOGIN)


def test_totp_required_must_name_roles(start_manager):
    m = start_manager(start=False, http__totp_required="admin, root")
    m.start(wait=False)
    m.wait_exit(1, timeout=20)
    assert "totp_required" in m.log_text() and \
        "must list roles among admin, operator and enduser" in m.log_text()

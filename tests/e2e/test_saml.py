"""SAML 2.0 single sign-on for end users ([auth_saml]) against a real identity provider.

The provider (saml_idp.py) is python3-lasso acting as IdP on loopback, signing with a
key made here by openssl; it reads the manager's SP metadata from
/auth/saml/metadata. A login goes as a browser's would: GET /auth/saml/login (302
to the provider with a signed AuthnRequest), the provider's answer page, its form
POSTed to /auth/saml/acs, then the portal's API with the cookie it gave. Refused:
an unsigned or re-edited response, one signed by another key, another audience, an
expired assertion, a replayed or unsolicited response, addresses outside the
allowed domains; each a 401 page that says why, and no cookie.
"""

import base64
import http.client
import re
import subprocess
import time
import urllib.parse
import xml.etree.ElementTree as ET

import pytest

from e2e_helpers import make_message
from saml_idp import SamlIdp, cert_base64, form_body, make_key, parse_form
from test_sessions import Client, add_user, audit
from test_web import WEB_ROOT, run_browser


@pytest.fixture
def saml(start_manager, workdir):
    """(manager, idp): a manager with [auth_saml] trusting a running test IdP."""
    idp = SamlIdp(workdir)
    sp_key, sp_crt = make_key(workdir, "sp")
    m = start_manager(start=False)
    m.apply({"auth_saml__idp_metadata": idp.metadata_path,
             "auth_saml__base_url": m.http_url,
             "auth_saml__sp_key_file": sp_key,
             "auth_saml__sp_cert_file": sp_crt,
             "auth_saml__allowed_domains": "corp.test, corp2.test"})
    m.sp_crt = sp_crt
    m.start()
    idp.for_manager(m)
    idp.start()
    yield m, idp
    idp.stop()


def request(url, method="GET", body=None, headers=None):
    """(status, headers, text) of one request; redirects are not followed."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=15)
    path = u.path + ("?" + u.query if u.query else "")
    hdrs = dict(headers or {})
    if body is not None:
        hdrs.setdefault("Content-Type", "application/x-www-form-urlencoded")
    conn.request(method, path, body=body, headers=hdrs)
    r = conn.getresponse()
    text = r.read().decode("utf-8", "replace")
    out = (r.status, {k.lower(): v for k, v in r.getheaders()}, text)
    conn.close()
    return out


BROWSER = {}  # the lazaret_saml cookie of the last login started, as a browser keeps it


def start_login(m, idp):
    """The provider's answer to a login begun at the manager: (ACS URL, SAMLResponse)."""
    st, hdrs, _ = request(m.http_url + "/auth/saml/login")
    assert st == 302
    BROWSER["cookie"] = hdrs["set-cookie"].split(";", 1)[0]
    loc = hdrs["location"]
    assert loc.startswith(idp.url + "/sso?SAMLRequest=")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(loc).query)
    assert "Signature" in query and "SigAlg" in query  # the request is signed
    st, _, page = request(loc)
    assert st == 200, page
    return parse_form(page)


def post_acs(acs, saml_response, origin=None, cookie=True):
    """POSTs the form; cookie True: with the last login's lazaret_saml, else with cookie."""
    headers = {"Origin": origin} if origin else {}
    if cookie:
        headers["Cookie"] = BROWSER["cookie"] if cookie is True else cookie
    return request(acs, "POST", form_body(saml_response), headers)


def logged_in_client(m, set_cookie):
    c = Client(m)
    c.cookie = set_cookie.split(";", 1)[0]
    st, me = c.call("GET", "/api/v1/session")
    assert st == 200, me
    c.csrf = me["csrf_token"]
    return c, me


def assert_refused(st, hdrs, page, why):
    assert st == 401, (st, page)
    assert "set-cookie" not in hdrs
    assert hdrs["content-type"].startswith("text/html")
    reason = re.search(r'<p id="reason">(.*?)</p>', page).group(1)
    assert why in reason, reason


def test_metadata_names_the_sp_its_key_and_acs(saml):
    m, idp = saml
    st, hdrs, text = request(m.http_url + "/auth/saml/metadata")
    assert st == 200
    assert hdrs["content-type"] == "application/samlmetadata+xml"
    ns = {"md": "urn:oasis:names:tc:SAML:2.0:metadata",
          "ds": "http://www.w3.org/2000/09/xmldsig#"}
    root = ET.fromstring(text)
    assert root.get("entityID") == m.http_url + "/auth/saml/metadata"
    sp = root.find("md:SPSSODescriptor", ns)
    assert sp.get("AuthnRequestsSigned") == "true"
    assert sp.get("WantAssertionsSigned") == "true"
    acs = sp.find("md:AssertionConsumerService", ns)
    assert acs.get("Location") == m.http_url + "/auth/saml/acs"
    assert acs.get("Binding") == "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
    cert = sp.find("md:KeyDescriptor/ds:KeyInfo/ds:X509Data/ds:X509Certificate", ns)
    assert cert.text == cert_base64(m.sp_crt)


def test_login_opens_an_end_user_session_on_the_users_quarantine(saml):
    m, idp = saml
    mine = m.send("spam@example.jp", ["alice@corp.test"],
                  make_message(subject="for alice", to="alice@corp.test"))
    alias = m.send("spam@example.jp", ["alice.alias@corp2.test"],
                   make_message(subject="for the alias", to="alice.alias@corp2.test"))
    m.send("spam@example.jp", ["bob@corp.test"], make_message(subject="for bob", to="bob@corp.test"))
    # The outside address is dropped; the others are what the session may see.
    idp.user = {"nameid": "alice",
                "mail": ["alice@corp.test", "alice.alias@corp2.test", "alice@elsewhere.test"]}
    acs, resp = start_login(m, idp)
    assert acs == m.http_url + "/auth/saml/acs"
    assert idp.name_id_formats == ["urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"]
    # The provider's form posts from its own origin: the ACS takes it.
    st, hdrs, _ = post_acs(acs, resp, origin=idp.url)
    assert st == 302
    assert hdrs["location"] == "/"
    cookie = hdrs["set-cookie"]
    assert cookie.startswith("lazaret_session=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    c, me = logged_in_client(m, cookie)
    assert me["user"] == {"username": "alice@corp.test", "role": "enduser",
                          "addresses": ["alice@corp.test", "alice.alias@corp2.test"]}
    st, doc = c.call("GET", "/api/v1/messages?limit=100")
    assert st == 200
    assert sorted(x["id"] for x in doc["messages"]) == sorted([mine, alias])
    # An end user: no accounts, no audit log.
    st, _ = c.call("GET", "/api/v1/users")
    assert st == 403
    # ... and the session acts: releasing their own message works with the CSRF token.
    st, doc = c.call("POST", "/api/v1/messages/%s/release" % mine)
    assert st in (200, 202), doc
    assert any(r["action"] == "login" and r["actor"] == "alice@corp.test" and
               r["detail"] == {"method": "saml"} for r in audit(m))


def test_the_address_may_be_the_name_id(start_manager, workdir):
    """address_attribute = NameID: the request asks for an emailAddress NameID."""
    idp = SamlIdp(workdir)
    sp_key, sp_crt = make_key(workdir, "sp")
    m = start_manager(start=False)
    m.apply({"auth_saml__idp_metadata": idp.metadata_path,
             "auth_saml__base_url": m.http_url,
             "auth_saml__sp_key_file": sp_key,
             "auth_saml__sp_cert_file": sp_crt,
             "auth_saml__address_attribute": "NameID",
             "auth_saml__allowed_domains": "corp.test"})
    m.start()
    idp.for_manager(m)
    idp.start()
    try:
        idp.user = {"nameid": "hanako", "mail": ["hanako@corp.test", "other@corp.test"]}
        acs, resp = start_login(m, idp)
        assert idp.name_id_formats == [
            "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"]
        st, hdrs, _ = post_acs(acs, resp)
        assert st == 302
        _, me = logged_in_client(m, hdrs["set-cookie"])
        # the NameID only, not the mail attribute
        assert me["user"]["addresses"] == ["hanako@corp.test"]
    finally:
        idp.stop()


def test_an_admin_address_signs_in_as_an_end_user_only(saml):
    m, idp = saml
    add_user(m, "boss@corp.test", "boss-pw-1234", "admin", ["boss@corp.test"])
    idp.user = {"nameid": "boss", "mail": ["boss@corp.test"]}
    acs, resp = start_login(m, idp)
    st, hdrs, _ = post_acs(acs, resp)
    assert st == 302
    c, me = logged_in_client(m, hdrs["set-cookie"])
    assert me["user"]["role"] == "enduser"
    st, _ = c.call("GET", "/api/v1/users")
    assert st == 403
    st, _ = c.call("GET", "/api/v1/audit")
    assert st == 403


@pytest.mark.parametrize("tamper,why", [
    ("unsigned", "the response is not signed"),
    ("edited", "signature does not verify"),
    ("other_key", "signature does not verify"),
    ("assertion_only_other_key", "signature does not verify"),
    ("audience", "meant for another service (audience)"),
    ("expired", "has expired"),
])
def test_a_bad_response_is_refused_with_a_page_and_no_cookie(saml, tamper, why):
    m, idp = saml
    idp.tamper = tamper
    acs, resp = start_login(m, idp)
    st, hdrs, page = post_acs(acs, resp)
    assert_refused(st, hdrs, page, why)
    assert "Sign-in refused" in page


def test_a_signed_assertion_in_an_unsigned_response_is_enough(saml):
    """As providers that sign only the assertion (the default of some) send it."""
    m, idp = saml
    idp.tamper = "assertion_only"
    acs, resp = start_login(m, idp)
    xml = base64.b64decode(resp).decode("utf-8")
    assert xml.count("<Signature ") == 1
    assert xml.index("<saml:Assertion") < xml.index("<Signature ")
    st, hdrs, _ = post_acs(acs, resp)
    assert st == 302
    _, me = logged_in_client(m, hdrs["set-cookie"])
    assert me["user"]["addresses"] == ["alice@corp.test"]


def test_a_replayed_response_is_refused(saml):
    m, idp = saml
    acs, resp = start_login(m, idp)
    st, hdrs, _ = post_acs(acs, resp)
    assert st == 302 and "set-cookie" in hdrs
    st, hdrs, page = post_acs(acs, resp)
    assert_refused(st, hdrs, page, "answers no sign-in started here")


@pytest.mark.parametrize("tamper", ["in_response_to", "idp_initiated"])
def test_an_unsolicited_response_is_refused(saml, tamper):
    """Signed by the provider, but answering a request the manager never sent, or none."""
    m, idp = saml
    idp.tamper = tamper
    acs, resp = start_login(m, idp)
    xml = base64.b64decode(resp).decode("utf-8")
    assert ("InResponseTo=" in xml) == (tamper == "in_response_to")
    st, hdrs, page = post_acs(acs, resp)
    assert_refused(st, hdrs, page, "unsolicited")


def test_the_login_cookie_ties_the_response_to_its_browser(saml):
    """A response posted from another browser (login CSRF) is refused."""
    m, idp = saml
    st, hdrs, _ = request(m.http_url + "/auth/saml/login")
    assert st == 302
    cookie = hdrs["set-cookie"]
    assert re.match(r"lazaret_saml=[0-9a-f]{64}; Path=/auth/saml/; Max-Age=600; HttpOnly$",
                    cookie), cookie
    # The attacker starts a login and keeps the answer; the victim has a login of their own.
    acs, resp = start_login(m, idp)
    start_login(m, idp)
    st, hdrs, page = post_acs(acs, resp)  # the victim's cookie
    assert_refused(st, hdrs, page, "started in another browser")
    # Used up now, even from the right browser.
    st, hdrs, page = post_acs(acs, resp, cookie="lazaret_saml=x")
    assert_refused(st, hdrs, page, "answers no sign-in started here")


def test_with_secure_cookies_the_login_cookie_is_required(start_manager, workdir):
    idp = SamlIdp(workdir)
    sp_key, sp_crt = make_key(workdir, "sp")
    m = start_manager(start=False, http__secure_cookies="yes")
    m.apply({"auth_saml__idp_metadata": idp.metadata_path,
             "auth_saml__base_url": m.http_url,
             "auth_saml__sp_key_file": sp_key,
             "auth_saml__sp_cert_file": sp_crt,
             "auth_saml__allowed_domains": "corp.test"})
    m.start()
    idp.for_manager(m)
    idp.start()
    try:
        acs, resp = start_login(m, idp)
        # SameSite=None: the provider's cross-site POST brings it along.
        st, hdrs, _ = request(m.http_url + "/auth/saml/login")
        assert hdrs["set-cookie"].endswith("; HttpOnly; SameSite=None; Secure")
        st, hdrs, page = post_acs(acs, resp, cookie=False)
        assert_refused(st, hdrs, page, "started in another browser")
        acs, resp = start_login(m, idp)
        st, hdrs, _ = post_acs(acs, resp)
        assert st == 302
        assert "; Secure" in hdrs["set-cookie"] and hdrs["set-cookie"].startswith("lazaret_session=")
    finally:
        idp.stop()


def test_addresses_outside_the_allowed_domains_are_refused(saml):
    m, idp = saml
    idp.user = {"nameid": "mallory", "mail": ["mallory@elsewhere.test", "x@corp.test.evil"]}
    acs, resp = start_login(m, idp)
    st, hdrs, page = post_acs(acs, resp)
    assert_refused(st, hdrs, page, "not in a domain served here")


LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
<!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;"><!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">
<!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;"><!ENTITY h "&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;">
<!ENTITY x SYSTEM "file:///etc/passwd">]>
<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_1" Version="2.0"
 IssueInstant="2026-01-01T00:00:00Z">&h;&x;</samlp:Response>"""


def test_garbage_and_empty_posts_are_refused(saml):
    m, idp = saml
    acs = m.http_url + "/auth/saml/acs"
    laughs = base64.b64encode(LAUGHS.encode("ascii"))
    for body in [b"", b"SAMLResponse=", b"SAMLResponse=%%%", b"RelayState=x",
                 b"SAMLResponse=PHg%2BPC94Pg%3D%3D", b"SAMLResponse=a&SAMLResponse=b",
                 form_body(laughs.decode("ascii"))]:
        t0 = time.monotonic()
        st, hdrs, page = request(acs, "POST", body)
        assert st == 401, (body, page)
        assert "set-cookie" not in hdrs
        assert "root:" not in page
        assert time.monotonic() - t0 < 5  # entities are not expanded
    st, _, _ = request(m.http_url + "/healthz")
    assert st == 200
    # lasso's own complaints arrive as log lines of ours, quoted
    log = m.log_text()
    assert "CRITICAL" not in log and "Lasso-WARNING" not in log
    assert 'warn saml.lasso message="' in log


def test_saml_settings_are_checked(start_manager, workdir, build_dir):
    m = start_manager(start=False)
    m.apply({"auth_saml__idp_metadata": "/nonexistent/idp.xml",
             "auth_saml__base_url": "ftp://x"})
    m.write_config()
    r = subprocess.run([m.binary, "--check-config", "-c", m.conf_path],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    for key in ["idp_metadata", "base_url", "sp_key_file", "sp_cert_file", "allowed_domains"]:
        assert "[auth_saml] " + key in r.stderr or key in r.stderr, r.stderr


def test_an_unusable_key_or_metadata_stops_the_start(start_manager, workdir):
    idp = SamlIdp(workdir)
    sp_key, sp_crt = make_key(workdir, "sp")
    bad = workdir + "/garbage.pem"
    with open(bad, "w", encoding="ascii") as f:
        f.write("not a key\n")
    for override, says in [({"auth_saml__sp_key_file": bad}, "sp_key_file"),
                           ({"auth_saml__idp_metadata": bad}, "idp_metadata")]:
        m = start_manager(start=False)
        m.apply({"auth_saml__idp_metadata": idp.metadata_path,
                 "auth_saml__base_url": m.http_url,
                 "auth_saml__sp_key_file": sp_key,
                 "auth_saml__sp_cert_file": sp_crt,
                 "auth_saml__allowed_domains": "corp.test"})
        m.apply(override)
        m.start(wait=False)
        m.wait_exit(1)
        assert "[auth_saml] " + says in m.log_text()


def test_browser_signs_in_through_the_provider(start_manager, workdir):
    """Chromium: the SAML button, the provider on another site, the portal."""
    idp = SamlIdp(workdir, host="localhost")  # another site than the manager's 127.0.0.1
    sp_key, sp_crt = make_key(workdir, "sp")
    m = start_manager(start=False, http__web_root=WEB_ROOT)
    m.apply({"auth_saml__idp_metadata": idp.metadata_path,
             "auth_saml__base_url": m.http_url,
             "auth_saml__sp_key_file": sp_key,
             "auth_saml__sp_cert_file": sp_crt,
             "auth_saml__allowed_domains": "corp.test"})
    m.start()
    idp.for_manager(m)
    idp.start()
    try:
        idp.user = {"nameid": "taro", "mail": ["taro@corp.test"]}
        m.send("sales@vendor.test", ["taro@corp.test"],
               make_message(subject="Quote for taro", to="taro@corp.test"))
        m.send("boss@corp.test", ["hanako@corp.test"],
               make_message(subject="Not for taro", to="hanako@corp.test"))
        run_browser("saml", m.http_url, {"own_subjects": ["Quote for taro"]})
        assert idp.requests, "the provider saw no AuthnRequest"
        assert any(r["action"] == "login" and r["actor"] == "taro@corp.test" and
                   r["detail"] == {"method": "saml"} for r in audit(m))
    finally:
        idp.stop()


def test_without_auth_saml_its_paths_are_not_found(start_manager):
    """Not the web application's page either: the sign-in page offers no SAML button then."""
    m = start_manager(http__web_root=WEB_ROOT)
    for method, path in [("GET", "/auth/saml/metadata"), ("HEAD", "/auth/saml/metadata"),
                         ("GET", "/auth/saml/login"), ("POST", "/auth/saml/acs")]:
        st, _, _ = request(m.http_url + path, method, b"" if method == "POST" else None)
        assert st == 404, (method, path, st)
    st, _, page = request(m.http_url + "/login")
    assert st == 200 and "<html" in page.lower()

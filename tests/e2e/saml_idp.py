"""A SAML 2.0 identity provider on loopback for the tests, built on Debian's python3-lasso.

It serves GET /sso (HTTP-Redirect AuthnRequest, whose signature it checks against the
SP metadata it fetched from the manager's /auth/saml/metadata) and answers with the
HTTP-POST binding: an HTML form that posts SAMLResponse to the ACS the SP's metadata
names, and submits itself when a browser loads it. Who is signed in is `idp.user`
(the NameID and the "mail" values); `idp.tamper` changes what the next answers carry
(another signing key, audience, expiry, InResponseTo, stripped signatures).
"""

import base64
import html
import os
import re
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import lasso

from e2e_helpers import free_port

FORM_RE = re.compile(r'<form method="post" action="([^"]+)">.*?'
                     r'name="SAMLResponse" value="([^"]+)"', re.S)


def make_key(workdir, name):
    """A fresh RSA key and self-signed certificate: (key path, cert path)."""
    key = os.path.join(workdir, name + ".key")
    crt = os.path.join(workdir, name + ".crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", crt, "-days", "2", "-subj", "/CN=" + name],
                   check=True, capture_output=True, timeout=60)
    return key, crt


def cert_base64(path):
    with open(path, encoding="ascii") as f:
        return "".join(ln for ln in f.read().splitlines() if "CERTIFICATE" not in ln)


def read(path):
    with open(path, encoding="ascii") as f:
        return f.read()


def stamp(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def strip_signatures(xml):
    return re.sub(r"<Signature xmlns=\"http://www.w3.org/2000/09/xmldsig#\">.*?</Signature>",
                  "", xml, flags=re.S)


class SamlIdp:
    def __init__(self, workdir, host="127.0.0.1"):
        """host: the name browsers reach it by ("localhost": another site than 127.0.0.1)."""
        self.port = free_port()
        self.url = "http://%s:%d" % (host, self.port)
        self.entity_id = self.url + "/idp"
        self.key, self.crt = make_key(workdir, "idp")
        self.other_key, self.other_crt = make_key(workdir, "idp-other")
        self.metadata = """<?xml version="1.0"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata"
    xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="%s">
 <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"
     WantAuthnRequestsSigned="true">
  <md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>%s\
</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
  <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
      Location="%s/sso"/>
 </md:IDPSSODescriptor>
</md:EntityDescriptor>
""" % (self.entity_id, cert_base64(self.crt), self.url)
        self.metadata_path = os.path.join(workdir, "idp-metadata.xml")
        with open(self.metadata_path, "w", encoding="ascii") as f:
            f.write(self.metadata)
        self.sp_metadata_url = None
        self.user = {"nameid": "alice", "mail": ["alice@corp.test"]}
        # None, or one of: other_key, audience, expired, in_response_to, unsigned,
        # edited (the address changed after signing), idp_initiated, assertion_only (the Response
        # unsigned, its assertion signed), assertion_only_other_key
        self.tamper = None
        self.requests = []  # the AuthnRequest IDs it answered
        self.name_id_formats = []  # the NameIDPolicy Format each asked for
        self.server = None
        self.thread = None
        self.lock = threading.Lock()

    def for_manager(self, m):
        """Points at m's SP metadata (fetched at the first request)."""
        self.sp_metadata_url = m.http_url + "/auth/saml/metadata"

    def _server(self, key, crt):
        s = lasso.Server.newFromBuffers(self.metadata, read(key), None, read(crt))
        s.signatureMethod = lasso.SIGNATURE_METHOD_RSA_SHA256
        with urllib.request.urlopen(self.sp_metadata_url, timeout=10) as r:
            s.addProviderFromBuffer(lasso.PROVIDER_ROLE_SP, r.read().decode("utf-8"))
        return s

    def answer(self, query):
        """(ACS URL, SAMLResponse base64) for the query string of a /sso request."""
        with self.lock:
            tamper = self.tamper
            use_other = tamper in ("other_key", "assertion_only_other_key")
            server = self._server(self.other_key if use_other else self.key,
                                  self.other_crt if use_other else self.crt)
            login = lasso.Login(server)
            login.processAuthnRequestMsg(query)
            login.validateRequestMsg(True, True)
            self.requests.append(login.request.id)
            now = time.time()
            login.buildAssertion(lasso.SAML_AUTHENTICATION_METHOD_PASSWORD, stamp(now), None,
                                 stamp(now - 60), stamp(now + 300))
            a = login.response.assertion[0]
            policy = login.request.nameIdPolicy
            self.name_id_formats.append(policy.format if policy is not None else None)
            if policy is not None and policy.format == lasso.SAML2_NAME_IDENTIFIER_FORMAT_EMAIL:
                a.subject.nameID.content = self.user["mail"][0]
                a.subject.nameID.format = lasso.SAML2_NAME_IDENTIFIER_FORMAT_EMAIL
            else:
                a.subject.nameID.content = self.user["nameid"]
                a.subject.nameID.format = lasso.SAML2_NAME_IDENTIFIER_FORMAT_UNSPECIFIED
            values = []
            for addr in self.user["mail"]:
                v = lasso.Saml2AttributeValue()
                text = lasso.MiscTextNode.newWithString(addr)
                text.textChild = True  # <AttributeValue>addr</AttributeValue>
                v.any = [text]
                values.append(v)
            attr = lasso.Saml2Attribute()
            attr.name = "mail"
            attr.nameFormat = lasso.SAML2_ATTRIBUTE_NAME_FORMAT_BASIC
            attr.attributeValue = values
            st = lasso.Saml2AttributeStatement()
            st.attribute = [attr]
            a.attributeStatement = [st]
            if tamper == "audience":
                a.conditions.audienceRestriction[0].audience = "https://elsewhere.test/sp"
            if tamper == "expired":
                past = "2020-01-01T00:00:00Z"
                a.conditions.notBefore = "2019-12-31T23:55:00Z"
                a.conditions.notOnOrAfter = past
                a.subject.subjectConfirmation.subjectConfirmationData.notOnOrAfter = past
            if tamper == "idp_initiated":  # answers no request at all
                login.response.inResponseTo = None
                a.subject.subjectConfirmation.subjectConfirmationData.inResponseTo = None
            if tamper == "in_response_to":
                login.response.inResponseTo = "_0123456789abcdef0123456789abcdef"
                a.subject.subjectConfirmation.subjectConfirmationData.inResponseTo = \
                    "_0123456789abcdef0123456789abcdef"
            if tamper in ("assertion_only", "assertion_only_other_key"):
                login.setSignatureHint(lasso.PROFILE_SIGNATURE_HINT_FORBID)
            login.buildAuthnResponseMsg()
            body = login.msgBody
            if tamper in ("unsigned", "edited"):
                xml = base64.b64decode(body).decode("utf-8")
                if tamper == "unsigned":
                    xml = strip_signatures(xml)
                else:
                    xml = xml.replace(self.user["mail"][0], "mallory@corp.test")
                body = base64.b64encode(xml.encode("utf-8")).decode("ascii")
            return login.msgUrl, body

    def start(self):
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path, _, query = self.path.partition("?")
                if path != "/sso":
                    self.send_error(404)
                    return
                try:
                    acs, body = idp.answer(query)
                except Exception as e:  # the page says why, the test sees it
                    page = ("<p id=error>%s</p>" % html.escape(repr(e))).encode("utf-8")
                    self.send_response(400)
                else:
                    page = ("<!doctype html><html><body onload=\"document.forms[0].submit()\">"
                            "<form method=\"post\" action=\"%s\">"
                            "<input type=\"hidden\" name=\"SAMLResponse\" value=\"%s\">"
                            "<noscript><button>Continue</button></noscript></form>"
                            "</body></html>" % (html.escape(acs), html.escape(body))
                            ).encode("utf-8")
                    self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def parse_form(page):
    """(action, SAMLResponse) of the IdP's auto-posting form."""
    m = FORM_RE.search(page)
    assert m, page[:2000]
    return html.unescape(m.group(1)), html.unescape(m.group(2))


def form_body(saml_response):
    return urllib.parse.urlencode({"SAMLResponse": saml_response}).encode("ascii")

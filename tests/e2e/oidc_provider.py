#!/usr/bin/python3
"""A small OpenID Connect provider for the e2e tests, run as its own process on
loopback: discovery, authorization (code flow with PKCE S256, signing in the
configured user at once), token (client_secret_basic) and JWKS endpoints. ID
tokens are real JWS signatures made with python3-jwcrypto (RS256 or ES256).

    oidc_provider.py CLIENT_ID CLIENT_SECRET

It listens on a free port of 127.0.0.1 and prints it (one line) once listening.

POST /_control (JSON) sets "redirect_uri" (the one client's only one), and tells
it what the next tokens look like: "claims" (merged
into the ID token), "alg" (RS256/ES256), "mode" (normal, forged, unknown_kid,
alg_none, hs256_pubkey, replay_last), "rotate": true (a new signing key; the old one is no
longer published). GET /_log lists the requests to /authorize and /token.
"""

import base64
import hashlib
import json
import secrets
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from jwcrypto import jwk, jwt

CLIENT_ID, CLIENT_SECRET = sys.argv[1], sys.argv[2]
SERVER = ThreadingHTTPServer(("127.0.0.1", 0), None)
ISSUER = "http://127.0.0.1:%d" % SERVER.server_address[1]

lock = threading.Lock()
state = {
    "keys": {"RS256": jwk.JWK.generate(kty="RSA", size=2048, kid="rsa-1"),
             "ES256": jwk.JWK.generate(kty="EC", crv="P-256", kid="ec-1")},
    "generation": 1,
    "alg": "RS256",
    "mode": "normal",
    "claims": {"sub": "u-1", "email": "alice@example.com", "email_verified": True},
    "codes": {},
    "last_id_token": None,
    "log": [],
    "redirect_uri": None,
}


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def id_token(nonce):
    with lock:
        alg, mode = state["alg"], state["mode"]
        key = state["keys"][alg]
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": CLIENT_ID, "iat": now, "exp": now + 300,
                  "nonce": nonce}
        claims.update(state["claims"])
        claims = {k: v for k, v in claims.items() if v is not None}
        if mode == "replay_last" and state["last_id_token"]:
            return state["last_id_token"]
    header = {"alg": alg, "kid": key.key_id}
    if mode == "alg_none":
        return "%s.%s." % (b64url(json.dumps({"alg": "none", "kid": key.key_id}).encode()),
                           b64url(json.dumps(claims).encode()))
    sign_with = key
    if mode == "forged":
        # same key id, another key: the signature cannot verify
        sign_with = jwk.JWK.generate(kty="RSA", size=2048) if alg == "RS256" else \
            jwk.JWK.generate(kty="EC", crv="P-256")
    elif mode == "hs256_pubkey":
        # the classic confusion: HMAC keyed with the published RSA key's PEM
        pem = state["keys"]["RS256"].export_to_pem()
        sign_with = jwk.JWK(kty="oct", k=b64url(pem))
        header = {"alg": "HS256", "kid": state["keys"]["RS256"].key_id}
    elif mode == "unknown_kid":
        sign_with = jwk.JWK.generate(kty="RSA", size=2048, kid="ghost") if alg == "RS256" \
            else jwk.JWK.generate(kty="EC", crv="P-256", kid="ghost")
        header["kid"] = "ghost"
    tok = jwt.JWT(header=header, claims=claims)
    tok.make_signed_token(sign_with)
    text = tok.serialize()
    with lock:
        state["last_id_token"] = text
    return text


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, doc=None, headers=()):
        body = json.dumps(doc).encode() if doc is not None else b""
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        if doc is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/.well-known/openid-configuration":
            return self.reply(200, {
                "issuer": ISSUER,
                "authorization_endpoint": ISSUER + "/authorize",
                "token_endpoint": ISSUER + "/token",
                "jwks_uri": ISSUER + "/jwks",
                "response_types_supported": ["code"],
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                "code_challenge_methods_supported": ["S256"],
            })
        if url.path == "/jwks":
            with lock:
                keys = [k.export_public(as_dict=True) for k in state["keys"].values()]
            for k in keys:
                k["use"] = "sig"
            return self.reply(200, {"keys": keys})
        if url.path == "/_log":
            with lock:
                return self.reply(200, state["log"])
        if url.path == "/authorize":
            with lock:
                state["log"].append({"endpoint": "authorize", "query": q})
            if q.get("client_id") != CLIENT_ID or q.get("redirect_uri") != state["redirect_uri"]:
                return self.reply(400, {"error": "invalid_request"})
            if q.get("response_type") != "code" or q.get("code_challenge_method") != "S256" \
                    or "openid" not in q.get("scope", "").split():
                return self.reply(400, {"error": "invalid_request"})
            code = secrets.token_urlsafe(24)
            with lock:
                state["codes"][code] = {"nonce": q.get("nonce"),
                                        "challenge": q.get("code_challenge")}
            loc = state["redirect_uri"] + "?" + urllib.parse.urlencode(
                {"code": code, "state": q.get("state", "")})
            return self.reply(302, None, [("Location", loc)])
        return self.reply(404, {"error": "not_found"})

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n)
        if self.path == "/_control":
            doc = json.loads(raw)
            with lock:
                if "redirect_uri" in doc:
                    state["redirect_uri"] = doc["redirect_uri"]
                if "claims" in doc:
                    state["claims"] = doc["claims"]
                if "alg" in doc:
                    state["alg"] = doc["alg"]
                if "mode" in doc:
                    state["mode"] = doc["mode"]
                if doc.get("rotate"):
                    state["generation"] += 1
                    g = state["generation"]
                    state["keys"] = {
                        "RS256": jwk.JWK.generate(kty="RSA", size=2048, kid="rsa-%d" % g),
                        "ES256": jwk.JWK.generate(kty="EC", crv="P-256", kid="ec-%d" % g)}
            return self.reply(200, {})
        if self.path != "/token":
            return self.reply(404, {"error": "not_found"})
        form = dict(urllib.parse.parse_qsl(raw.decode()))
        with lock:
            state["log"].append({"endpoint": "token", "form": form,
                                 "authorization": self.headers.get("Authorization")})
        want = "Basic " + base64.b64encode(
            ("%s:%s" % (urllib.parse.quote(CLIENT_ID, safe=""),
                        urllib.parse.quote(CLIENT_SECRET, safe=""))).encode()).decode()
        if self.headers.get("Authorization") != want:
            return self.reply(401, {"error": "invalid_client"})
        with lock:
            grant = state["codes"].pop(form.get("code"), None)
        if grant is None or form.get("grant_type") != "authorization_code" or \
                form.get("redirect_uri") != state["redirect_uri"]:
            return self.reply(400, {"error": "invalid_grant"})
        verifier = form.get("code_verifier", "")
        if b64url(hashlib.sha256(verifier.encode()).digest()) != grant["challenge"]:
            return self.reply(400, {"error": "invalid_grant"})
        return self.reply(200, {"access_token": secrets.token_urlsafe(16), "token_type": "Bearer",
                                "expires_in": 300, "id_token": id_token(grant["nonce"])})


SERVER.RequestHandlerClass = Handler
print(SERVER.server_address[1], flush=True)
SERVER.serve_forever()

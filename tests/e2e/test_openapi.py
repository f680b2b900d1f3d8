"""docs/openapi.yaml against the routes lazaretd really registers.

The routes are read from the C sources of the manager (src/api/*.c,
src/digest/*.c, src/quarantine/*.c, src/manager/*.c): every route table entry `{"METHOD", "/path", ...}` and every
`http_server_route(..., "METHOD", "/path", ...)` call with literal arguments.
Each served method and path must be documented, and each documented one served,
so that the API and its description cannot drift apart. Also checks that the
file is valid YAML, that every local $ref resolves, and that the two ways to
authenticate (Bearer token, session cookie with X-CSRF-Token) are described.
"""

import glob
import os
import re

import yaml  # python3-yaml, installed by scripts/bootstrap

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OPENAPI = os.path.join(REPO, "docs", "openapi.yaml")
SOURCES = ["src/api/*.c", "src/digest/*.c", "src/quarantine/*.c", "src/manager/*.c"]
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")

# {"GET", "/api/v1/x", ...} in a route table.
TABLE_RE = re.compile(r'\{\s*"(%s)"\s*,\s*"(/[^"]*)"' % "|".join(METHODS))
# http_server_route(server, "GET", "/x", ...) with literal method and path.
CALL_RE = re.compile(
    r'http_server_route\s*\([^;"]*?,\s*"(%s)"\s*,\s*"(/[^"]*)"' % "|".join(METHODS), re.S)
# Patterns built at run time (the web application's "/{p1}", "/{p1}/{p2}"): not
# literal, so neither regex sees them; "/" documents them.


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def served_routes():
    routes = {}
    for pattern in SOURCES:
        for path in sorted(glob.glob(os.path.join(REPO, pattern))):
            text = strip_comments(open(path, encoding="utf-8").read())
            rel = os.path.relpath(path, REPO)
            for rx in (TABLE_RE, CALL_RE):
                for m in rx.finditer(text):
                    routes.setdefault((m.group(1), m.group(2)), rel)
    return routes


def load_openapi():
    with open(OPENAPI, encoding="utf-8") as f:
        return yaml.safe_load(f)


def documented_routes(doc):
    out = set()
    for path, item in doc["paths"].items():
        for method in item:
            if method.upper() in METHODS:
                out.add((method.upper(), path))
    return out


def test_route_collection_finds_the_known_tables():
    # A regex that silently matched nothing would make the comparison below
    # vacuous: these routes live in four different files and two forms.
    routes = served_routes()
    for r in [("GET", "/healthz"), ("POST", "/api/v1/messages/{id}/release"),
              ("PUT", "/api/v1/slbl/{recipient}"), ("POST", "/api/v1/session"),
              ("DELETE", "/api/v1/users/{username}"), ("GET", "/d/{token}"),
              ("GET", "/")]:
        assert r in routes, r
    assert len(routes) >= 30, sorted(routes)


def test_every_served_route_is_documented():
    doc = load_openapi()
    documented = documented_routes(doc)
    missing = sorted("%s %s (%s)" % (m, p, src)
                     for (m, p), src in served_routes().items() if (m, p) not in documented)
    assert not missing, "served but not in docs/openapi.yaml:\n" + "\n".join(missing)


def test_every_documented_route_is_served():
    served = served_routes()
    extra = sorted("%s %s" % r for r in documented_routes(load_openapi()) if r not in served)
    assert not extra, "in docs/openapi.yaml but not served:\n" + "\n".join(extra)


def test_path_parameters_are_declared():
    doc = load_openapi()
    for path, item in doc["paths"].items():
        names = set(re.findall(r"\{([^}]+)\}", path))
        if not names:
            continue
        common = item.get("parameters", [])
        for method, op in item.items():
            if method.upper() not in METHODS:
                continue
            declared = set()
            for p in common + op.get("parameters", []):
                p = resolve(doc, p)
                if p.get("in") == "path":
                    declared.add(p["name"])
            assert declared == names, (method, path, declared)


def resolve(doc, node):
    while isinstance(node, dict) and "$ref" in node:
        node = lookup(doc, node["$ref"])
    return node


def lookup(doc, ref):
    assert ref.startswith("#/"), ref
    node = doc
    for part in ref[2:].split("/"):
        assert isinstance(node, dict) and part in node, "unresolved $ref " + ref
        node = node[part]
    return node


def test_every_ref_resolves():
    doc = load_openapi()
    seen = []

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "$ref":
                    lookup(doc, v)
                    seen.append(v)
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    assert seen


def test_both_ways_to_authenticate_are_described():
    doc = load_openapi()
    schemes = doc["components"]["securitySchemes"]
    assert (schemes["bearerAuth"]["type"], schemes["bearerAuth"]["scheme"]) == ("http", "bearer")
    cookie = schemes["cookieAuth"]
    assert (cookie["type"], cookie["in"], cookie["name"]) == ("apiKey", "cookie",
                                                              "lazaret_session")
    assert {"bearerAuth": []} in doc["security"] and {"cookieAuth": []} in doc["security"]
    csrf = doc["components"]["parameters"]["csrfToken"]
    assert (csrf["in"], csrf["name"]) == ("header", "X-CSRF-Token")


def test_state_changes_under_api_v1_name_the_csrf_header_and_403():
    # Cookie-authenticated POST/PUT/DELETE need X-CSRF-Token (docs/openapi.yaml); the
    # login itself is an exception (there is no session yet; nor for its second
    # factor, which has only a half login), and so are a gateway's
    # hello and event push (only a gateway's token counts there, never a session).
    doc = load_openapi()
    lacking = []
    for path, item in doc["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        for method, op in item.items():
            if method.upper() not in ("POST", "PUT", "DELETE", "PATCH"):
                continue
            if (method, path) in (("post", "/api/v1/session"),
                                  ("post", "/api/v1/session/totp"),
                                  ("post", "/api/v1/session/totp/enrol"),
                                  ("post", "/api/v1/gateway/hello"),
                                  ("post", "/api/v1/gateway/events"),
                                  ("post", "/api/v1/gateway/migration"),
                                  ("post", "/api/v1/gateway/rollups")):
                continue
            params = [resolve(doc, p) for p in item.get("parameters", []) +
                      op.get("parameters", [])]
            has_header = any(p.get("name") == "X-CSRF-Token" for p in params)
            if not has_header or "403" not in op.get("responses", {}):
                lacking.append("%s %s" % (method.upper(), path))
    assert not lacking, lacking

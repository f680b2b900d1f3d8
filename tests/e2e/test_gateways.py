"""The gateway registry: POST/GET/DELETE /api/v1/gateways, the gateway's hello
(POST /api/v1/gateway/hello), pending entries, what a gateway's token opens, and a
real lazaret-gw saying hello with its token.

Real lazaretd (and lazaret-gw) processes on loopback, a real store (SQLite, or
PostgreSQL with LAZARET_E2E_BACKEND=postgresql), real HTTP clients. Every refused
input is answered with an exact, asserted reply, and the registry is checked to be
unchanged after it.
"""

import json
import re
import time

import pytest

from e2e_helpers import free_port, t, wait_for
from gw_fixtures import *  # noqa: F401,F403 (start_gateway)
from pg_cluster import pg_clusters  # noqa: F401 (a fixture)
from test_openapi import served_routes

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def registry(mgr):
    st, doc = mgr.api("GET", "/api/v1/gateways")
    assert st == 200, (st, doc)
    return doc["gateways"]


def add(mgr, name, address, expect=201, **fields):
    body = {"name": name, "address": address}
    body.update(fields)
    st, doc = mgr.api("POST", "/api/v1/gateways", json=body)
    assert st == expect, (st, doc)
    return doc


def error(doc):
    return doc["error"]["message"]


def hello(mgr, token, body, headers=None):
    hdrs = {"Content-Type": "application/json"}
    hdrs.update(headers or {})
    st, _, raw = mgr.http("POST", "/api/v1/gateway/hello",
                          body=json.dumps(body).encode() if not isinstance(body, bytes)
                          else body, token=token, headers=hdrs)
    return st, (json.loads(raw) if raw else None)


def audit_actions(mgr):
    st, doc = mgr.api("GET", "/api/v1/audit?limit=100")
    assert st == 200, (st, doc)
    return [(e["action"], e.get("target")) for e in doc["entries"]]


# ---- registering, listing, removing ----------------------------------------------

def test_add_list_remove(manager):
    doc = add(manager, "gw1", "192.0.2.10", group="tokyo", cluster="east")
    token = doc["token"]
    assert HEX64.match(token), token
    g = doc["gateway"]
    assert g == {
        "name": "gw1", "state": "registered", "address": "192.0.2.10", "group": "tokyo",
        "cluster": "east", "release_port": 25, "created_at": g["created_at"],
        "last_seen": None, "version": None,
        "centralized": {"pvo": False, "reporting": False, "tracking": False},
        "outbreak_rules_version": None, "last_rescan": None,
        "migration": None, "event_backlog": None, "last_event_at": None}
    assert token not in json.dumps(registry(manager))
    doc2 = add(manager, "gw2", "2001:DB8:0::1", release_port=2525)
    assert doc2["token"] != token
    assert doc2["gateway"]["address"] == "2001:db8::1"  # canonical text
    assert doc2["gateway"]["group"] is None
    names = [(g["name"], g["state"], g["release_port"]) for g in registry(manager)]
    assert names == [("gw1", "registered", 25), ("gw2", "registered", 2525)]

    st, doc = manager.api("DELETE", "/api/v1/gateways/GW1")  # names in any case
    assert st == 200, doc
    assert [g["name"] for g in registry(manager)] == ["gw2"]
    st, doc = manager.api("DELETE", "/api/v1/gateways/gw1")
    assert (st, error(doc)) == (404, "no such gateway")
    st, doc = manager.api("DELETE", "/api/v1/gateways/no%2Fsuch")
    assert (st, error(doc)) == (404, "no such gateway")
    # the removed gateway's token opens nothing any more
    st, doc = hello(manager, token, {"name": "gw1"})
    assert (st, error(doc)) == (401, "a valid gateway token is required")
    acts = audit_actions(manager)
    assert ("gateway_add", "gw1") in acts
    assert ("gateway_add", "gw2") in acts
    assert ("gateway_remove", "gw1") in acts


BAD_ADDS = [
    (b"{", 400, "invalid JSON at line 1 column 1: string or '}' expected near end of file"),
    (b"[]", 422, "the request body must be a JSON object"),
    (b"", 400, "request body is empty; expected a JSON object"),
    ({"address": "192.0.2.1"}, 422, '"name" is required'),
    ({"name": "gw9"}, 422, '"address" is required'),
    ({"name": "gw 9", "address": "192.0.2.1"}, 422,
     "\"name\" must be 1 to 64 letters, digits, '.', '-' or '_'"),
    ({"name": "g" * 65, "address": "192.0.2.1"}, 422,
     "\"name\" must be 1 to 64 letters, digits, '.', '-' or '_'"),
    ({"name": "ゲート", "address": "192.0.2.1"}, 422,
     "\"name\" must be 1 to 64 letters, digits, '.', '-' or '_'"),
    ({"name": "gw9", "address": "gw9.example.jp"}, 422,
     '"address" must be an IPv4 or IPv6 address'),
    ({"name": "gw9", "address": "192.0.2.0/24"}, 422,
     '"address" must be an IPv4 or IPv6 address'),
    ({"name": "gw9", "address": 3221225985}, 422, 'field "address" must be a string'),
    ({"name": "gw9", "address": "192.0.2.9", "group": "a/b"}, 422,
     "\"group\" must be 1 to 64 letters, digits, '.', '-' or '_'"),
    ({"name": "gw9", "address": "192.0.2.9", "release_port": 0}, 422,
     '"release_port" must be a port number (1 to 65535)'),
    ({"name": "gw9", "address": "192.0.2.9", "release_port": 70000}, 422,
     '"release_port" must be a port number (1 to 65535)'),
    ({"name": "gw9", "address": "192.0.2.9", "token": "mine"}, 422, 'unknown field "token"'),
    ({"name": "GW1", "address": "192.0.2.9"}, 409, 'gateway "GW1" exists already'),
    ({"name": "gw9", "address": "::ffff:192.0.2.10"}, 409,
     'address 192.0.2.10 is registered already (gateway "gw1")'),
]


@pytest.mark.parametrize("body,status,message", BAD_ADDS,
                         ids=["%d-%d" % (i, b[1]) for i, b in enumerate(BAD_ADDS)])
def test_bad_registrations_are_refused_and_change_nothing(manager, body, status, message):
    add(manager, "gw1", "192.0.2.10")
    before = registry(manager)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    st, _, reply = manager.http("POST", "/api/v1/gateways", body=raw,
                                headers={"Content-Type": "application/json"})
    assert (st, error(json.loads(reply))) == (status, message)
    assert registry(manager) == before
    assert [a for a in audit_actions(manager) if a[0] == "gateway_add"] == [
        ("gateway_add", "gw1")]


def test_registry_needs_an_admin(manager):
    doc = add(manager, "gw1", "192.0.2.10")
    gw_token = doc["token"]
    for token in (None, "wrong", gw_token):
        st, reply = manager.api("GET", "/api/v1/gateways", token=token)
        assert (st, error(reply)) == (401, "authentication required")
        st, reply = manager.api("POST", "/api/v1/gateways", token=token,
                                json={"name": "gw2", "address": "192.0.2.11"})
        assert (st, error(reply)) == (401, "authentication required")
        st, reply = manager.api("DELETE", "/api/v1/gateways/gw1", token=token)
        assert (st, error(reply)) == (401, "authentication required")
    assert [g["name"] for g in registry(manager)] == ["gw1"]


# ---- what a gateway's token opens ------------------------------------------------

def _fill(path):
    return re.sub(r"\{[^}]+\}", "x", path)


def test_gateway_token_opens_only_the_gateway_routes(manager):
    """Every route lazaretd serves (read from the sources, as test_openapi does),
    tried with a gateway's token: the hello, the events, its own settings and the
    safelist feed answer it; every other route answers exactly as it does without
    any token (401 where a credential is needed), so the token is no credential
    there."""
    token = add(manager, "gw1", "127.0.0.1")["token"]
    routes = sorted(served_routes())
    assert ("POST", "/api/v1/gateway/hello") in routes
    assert ("GET", "/api/v1/slbl") in routes
    opened = {("POST", "/api/v1/gateway/hello"): 200, ("GET", "/api/v1/slbl"): 200,
              ("POST", "/api/v1/gateway/events"): 200, ("GET", "/api/v1/gateway/config"): 200,
              ("GET", "/api/v1/gateway/mapping"): 200,
              # {} is not a progress report: the token was taken, the body refused
              ("POST", "/api/v1/gateway/migration"): 400,
              # nor a backfill push: taken, refused for its missing cutoff
              ("POST", "/api/v1/gateway/rollups"): 400}
    seen_401 = 0
    for method, path in routes:
        url = _fill(path)
        body = b"{}" if method in ("POST", "PUT", "PATCH") else None
        if (method, path) == ("POST", "/api/v1/gateway/hello"):
            body = b'{"name":"gw1"}'
        if (method, path) == ("POST", "/api/v1/gateway/events"):
            body = b'{"events":[]}'
        hdrs = {"Content-Type": "application/json"} if body is not None else {}
        st_gw, _, raw_gw = manager.http(method, url, body=body, token=token, headers=hdrs)
        if (method, path) in opened:
            assert st_gw == opened[(method, path)], (method, path, st_gw, raw_gw)
            continue
        st_none, _, raw_none = manager.http(method, url, body=body, token=None,
                                            headers=hdrs)
        assert st_gw == st_none, (method, path, st_gw, raw_gw, st_none)
        if st_gw == 401:
            seen_401 += 1
            assert raw_gw == raw_none, (method, path)
    # the sweep reached the authenticated routes (a sweep of 404s would prove nothing)
    assert seen_401 >= 20, seen_401
    # the admin token is unchanged, and is no gateway token
    st, doc = manager.api("GET", "/api/v1/messages")
    assert st == 200, doc
    st, doc = hello(manager, manager.token, {"name": "gw1"})
    assert (st, error(doc)) == (401, "a valid gateway token is required")
    st, doc = manager.api("GET", "/api/v1/slbl?since=0", token=token)
    assert st == 200 and doc["version"] == 0, doc


# ---- the hello -------------------------------------------------------------------

def test_hello_with_the_token_records_contact(manager):
    doc = add(manager, "gw1", "192.0.2.10", group="tokyo")
    token = doc["token"]
    st, doc = hello(manager, token, {"name": "gw1", "version": "0.1.0", "group": "tokyo",
                                     "cluster": "east"})
    assert st == 200, doc
    g = doc["gateway"]
    assert (g["name"], g["state"], g["version"], g["group"]) == (
        "gw1", "registered", "0.1.0", "tokyo")
    assert g["cluster"] is None  # the registry says, not the gateway
    assert g["last_seen"] is not None
    (listed,) = registry(manager)
    assert listed["version"] == "0.1.0"
    assert listed["last_seen"] == g["last_seen"]
    assert "api.gateway_level_differs" in manager.log_text()
    # without a version: the last one stays
    st, doc = hello(manager, token, {"name": "GW1"})
    assert st == 200 and doc["gateway"]["version"] == "0.1.0", doc
    # the safelist feed counts as contact too
    before = registry(manager)[0]["last_seen"]
    time.sleep(1.1)
    st, _ = manager.api("GET", "/api/v1/slbl?since=0", token=token)
    assert st == 200
    assert registry(manager)[0]["last_seen"] > before


BAD_HELLOS = [
    (b"{", 400, "invalid JSON at line 1 column 1: string or '}' expected near end of file"),
    (b"[1]", 422, "the request body must be a JSON object"),
    ({"version": "0.1.0"}, 422, '"name" is required'),
    ({"name": "gw1", "version": ""}, 422,
     '"version" must be 1 to 64 printable ASCII characters'),
    ({"name": "gw1", "version": "0.1\u0007"}, 422,
     '"version" must be 1 to 64 printable ASCII characters'),
    ({"name": "gw1", "cluster": "東"}, 422,
     "\"cluster\" must be 1 to 64 letters, digits, '.', '-' or '_'"),
    ({"name": "gw1", "address": "10.0.0.1"}, 422, 'unknown field "address"'),
    ({"name": "gw2"}, 403, 'this token belongs to gateway "gw1", not "gw2"'),
]


@pytest.mark.parametrize("body,status,message", BAD_HELLOS,
                         ids=["%d-%d" % (i, b[1]) for i, b in enumerate(BAD_HELLOS)])
def test_bad_hellos_are_refused_and_change_nothing(manager, body, status, message):
    token = add(manager, "gw1", "192.0.2.10")["token"]
    before = registry(manager)
    st, doc = hello(manager, token, body)
    assert (st, error(doc)) == (status, message)
    assert registry(manager) == before


def test_hello_refusals_without_a_token(manager):
    """No pending_from configured: an unauthenticated hello records nothing."""
    token = add(manager, "gw1", "192.0.2.10")["token"]
    before = registry(manager)
    for tok in (None, "wrong", token[:-1] + ("0" if token[-1] != "0" else "1"),
                token.upper()):
        st, doc = hello(manager, tok, {"name": "gw1"})
        assert (st, error(doc)) == (401, "a valid gateway token is required"), tok
    # a browser's cross-site post is refused before anything else
    st, doc = hello(manager, token, {"name": "gw1"}, headers={"Sec-Fetch-Site": "cross-site"})
    assert (st, error(doc)) == (403, "cross-site request refused")
    st, _, raw = manager.http("POST", "/api/v1/gateway/hello", body=b'{"name":"gw1"}',
                              token=token, headers={"Content-Type": "text/plain"})
    assert (st, json.loads(raw)["error"]["message"]) == (
        415, "the request body must be application/json")
    assert registry(manager) == before


# ---- pending entries -------------------------------------------------------------

def test_pending_entries_are_bounded_and_rate_limited(start_manager):
    mgr = start_manager(gateways__pending_from="127.0.0.0/8",
                        gateways__max_pending="2", gateways__pending_interval="1s")
    token = add(mgr, "gw1", "192.0.2.10")["token"]
    st, doc = hello(mgr, None, {"name": "new1", "version": "0.1.0", "group": "osaka",
                                "cluster": "west"})
    assert (st, error(doc)) == (
        401, 'gateway "new1" is not registered: listed as pending until an administrator'
        ' registers it')
    (p,) = [g for g in registry(mgr) if g["name"] == "new1"]
    assert (p["state"], p["address"], p["group"], p["cluster"], p["version"]) == (
        "pending", "127.0.0.1", "osaka", "west", "0.1.0")
    assert p["last_seen"] is not None
    # the same address again within pending_interval: not written
    st, doc = hello(mgr, None, {"name": "new2"})
    assert (st, error(doc)) == (
        401, 'gateway "new2" is not registered (hellos from this address are recorded at'
        ' most every 1s)')
    assert [g["name"] for g in registry(mgr)] == ["gw1", "new1"]
    time.sleep(t(1.2))
    st, doc = hello(mgr, None, {"name": "new2"})
    assert st == 401 and "listed as pending" in error(doc), doc
    time.sleep(t(1.2))
    st, doc = hello(mgr, None, {"name": "new3"})
    assert (st, error(doc)) == (
        401, 'gateway "new3" is not registered, and the list of pending gateways is full')
    assert [g["name"] for g in registry(mgr)] == ["gw1", "new1", "new2"]
    # a refresh of an existing entry passes the bound
    time.sleep(t(1.2))
    st, doc = hello(mgr, None, {"name": "new1", "version": "0.2.0"})
    assert st == 401 and "listed as pending" in error(doc), doc
    assert [g["version"] for g in registry(mgr) if g["name"] == "new1"] == ["0.2.0"]
    # a registered name without its token changes nothing
    time.sleep(t(1.2))
    before = registry(mgr)
    st, doc = hello(mgr, "0" * 64, {"name": "gw1", "version": "9.9"})
    assert (st, error(doc)) == (401, "a valid gateway token is required")
    assert registry(mgr) == before
    # bad bodies from an allowed address: refused, nothing recorded
    st, doc = hello(mgr, None, {"name": "bad name"})
    assert (st, error(doc)) == (422, "\"name\" must be 1 to 64 letters, digits, '.', '-' or"
                                " '_'")
    assert registry(mgr) == before
    # registering a pending name replaces the pending entry
    doc = add(mgr, "NEW1", "192.0.2.20", group="osaka")
    assert doc["gateway"]["state"] == "registered"
    entries = {g["name"]: g for g in registry(mgr)}
    assert set(entries) == {"gw1", "NEW1", "new2"}
    assert entries["NEW1"]["version"] is None
    st, doc = hello(mgr, doc["token"], {"name": "new1", "version": "0.2.0"})
    assert st == 200 and doc["gateway"]["name"] == "NEW1", doc
    st, doc = mgr.api("DELETE", "/api/v1/gateways/new2")
    assert st == 200, doc
    assert token  # gw1's token was never needed for the pending entries


def test_pending_needs_an_allowed_address(start_manager):
    mgr = start_manager(gateways__pending_from="10.0.0.0/8")
    st, doc = hello(mgr, None, {"name": "new1"})
    assert (st, error(doc)) == (401, "a valid gateway token is required")
    assert registry(mgr) == []


# ---- a real gateway --------------------------------------------------------------

def test_a_gateway_says_hello_and_syncs_with_its_own_token(start_manager, start_gateway,
                                                          aio_sink):
    mgr = start_manager()
    token = add(mgr, "gw-e2e", "127.0.0.1", group="tokyo", cluster="east")["token"]
    st, doc = mgr.api("PUT", "/api/v1/slbl/bob@example.com",
                      json={"recipient": "bob@example.com", "safelist": ["sender.test"],
                            "blocklist": []})
    assert st == 200, doc
    gw = start_gateway(aio_sink.host,
                       gateway={"group": "tokyo", "cluster": "east"},
                       manager={"api_url": mgr.http_url, "api_token": token,
                                "hello_interval": "1s"},
                       external_spam_quarantine={"enabled": "yes", "host": "127.0.0.1",
                                                 "port": str(mgr.smtp_port),
                                                 "safelist_blocklist": "yes"})
    gw.wait_log("gw.hello ")
    assert "state=registered group=tokyo cluster=east" in gw.log_text()
    gw.wait_log("gw.slbl_synced")
    assert "slbl_cache.fetch_failed" not in gw.log_text()
    (g,) = registry(mgr)
    assert g["version"] == "0.1.0"
    first = g["last_seen"]
    assert first is not None
    # every hello_interval
    wait_for(lambda: registry(mgr)[0]["last_seen"] != first, 10, "a second hello")


def test_an_unregistered_gateway_is_listed_pending(start_manager, start_gateway, aio_sink):
    mgr = start_manager(gateways__pending_from="127.0.0.1/32")
    gw = start_gateway(aio_sink.host, gateway={"group": "osaka"},
                       manager={"api_url": mgr.http_url})
    gw.wait_log("gw.hello_failed")
    assert ('status=401 error="gateway \\"gw-e2e\\" is not registered: listed as pending'
            in gw.log_text()), gw.log_text()[-2000:]
    (g,) = registry(mgr)
    assert (g["name"], g["state"], g["address"], g["group"], g["version"]) == (
        "gw-e2e", "pending", "127.0.0.1", "osaka", "0.1.0")
    # the gateway keeps working
    code, text = gw.send("alice@sender.test", "bob@example.com",
                         b"Subject: hi\r\n\r\nhello\r\n")
    assert code == 250, text


def test_hello_failure_is_not_fatal(start_gateway, aio_sink):
    port = free_port()
    gw = start_gateway(aio_sink.host, manager={"api_url": "http://127.0.0.1:%d" % port,
                                               "api_token": "0" * 64})
    gw.wait_log("gw.hello_failed")
    assert gw.running()
    code, text = gw.send("alice@sender.test", "bob@example.com",
                         b"Subject: hi\r\n\r\nhello\r\n")
    assert code == 250, text


# ---- lazaretctl gateway ----------------------------------------------------------

def test_lazaretctl_gateway_add_list_remove(manager):
    from test_lazaretctl import ctl
    rc, out, err = ctl(manager, "gateway", "add", "gw1", "--address", "192.0.2.10",
                       "--group", "tokyo", "--cluster", "east", "--release-port", "2525")
    assert rc == 0, err
    lines = out.decode().splitlines()
    assert lines[0] == "added gateway gw1 (192.0.2.10)"
    m = re.match(r"^token: ([0-9a-f]{64})$", lines[1])
    assert m, lines
    assert lines[2:] == ["The token is shown only now. Put it in the gateway's"
                         " lazaret-gw.conf as", "[manager] api_token."]
    token = m.group(1)
    st, doc = hello(manager, token, {"name": "gw1", "version": "0.1.0"})
    assert st == 200, doc
    (g,) = registry(manager)
    assert (g["group"], g["cluster"], g["release_port"]) == ("tokyo", "east", 2525)

    rc, out, err = ctl(manager, "gateway", "add", "gw2", "--address", "2001:db8::2", "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["gateway"]["name"] == "gw2" and HEX64.match(doc["token"])

    rc, out, err = ctl(manager, "gateway", "list")
    assert rc == 0, err
    rows = [line.split() for line in out.decode().splitlines()]
    assert rows[0] == ["NAME", "STATE", "ADDRESS", "GROUP", "CLUSTER", "LAST", "SEEN",
                       "VERSION", "MIGRATION"]
    assert rows[1][:5] == ["gw1", "registered", "192.0.2.10", "tokyo", "east"]
    assert rows[1][-2:] == ["0.1.0", "-"]
    assert re.match(r"^\d{4}-\d\d-\d\d$", rows[1][5]), rows[1]
    assert rows[2] == ["gw2", "registered", "2001:db8::2", "-", "-", "-", "-", "-"]
    assert token not in out.decode()
    rc, out, err = ctl(manager, "gateway", "list", "--json")
    assert rc == 0, err
    assert [g["name"] for g in json.loads(out)["gateways"]] == ["gw1", "gw2"]

    # refusals: the server's message, exit 1; the command line's, exit 2
    before = registry(manager)
    rc, out, err = ctl(manager, "gateway", "add", "gw1", "--address", "192.0.2.99")
    assert (rc, out, err.strip()) == (
        1, b"", 'lazaretctl: gateway "gw1" exists already (conflict, HTTP 409)')
    rc, out, err = ctl(manager, "gateway", "add", "gw3", "--address", "not-an-ip")
    assert (rc, err.strip()) == (
        1, 'lazaretctl: "address" must be an IPv4 or IPv6 address (unprocessable, HTTP 422)')
    rc, out, err = ctl(manager, "gateway", "add", "gw3")
    assert rc == 2 and "gateway add needs one --address" in err, err
    rc, out, err = ctl(manager, "gateway", "add", "gw3", "--address", "192.0.2.3",
                       "--release-port", "0")
    assert rc == 2 and "--release-port wants 1..65535" in err, err
    rc, out, err = ctl(manager, "gateway", "list", "--group", "x")
    assert rc == 2 and "are for gateway add" in err, err
    rc, out, err = ctl(manager, "search", "--cluster", "x")
    assert rc == 2 and "are for gateway add" in err, err
    rc, out, err = ctl(manager, "gateway", "remove", "nosuch")
    assert (rc, err.strip()) == (1, "lazaretctl: no such gateway (not_found, HTTP 404)")
    rc, out, err = ctl(manager, "gateway", "list", token=token)
    assert (rc, err.strip()) == (
        1, "lazaretctl: authentication required (unauthorized, HTTP 401)")
    assert registry(manager) == before

    rc, out, err = ctl(manager, "gateway", "remove", "gw2")
    assert (rc, out.decode()) == (0, "removed gateway gw2\n"), err
    assert [g["name"] for g in registry(manager)] == ["gw1"]


# ---- the store down (PostgreSQL, a cluster of this test's own) ------------------

@pytest.mark.own_postgresql
def test_gateway_routes_answer_503_while_the_database_is_down(start_manager, pg_clusters):
    """A gateway's hello and safelist sync while PostgreSQL is down: 503 with the
    store's message (try again), not a 401 that would read as a bad token; and the
    same token works again once the database is back."""
    from pg_cluster import psql
    pg = pg_clusters.new("primary")
    psql(pg.dsn(), "CREATE DATABASE lazaret")
    m = start_manager(store__backend="postgresql", store__dsn=pg.dsn("lazaret"),
                      gateways__pending_from="127.0.0.1/32")
    token = add(m, "gw1", "127.0.0.1")["token"]
    pg.crash()
    unavailable = ("the quarantine store is unavailable: its database cannot be reached;"
                   " try again shortly")
    for _ in range(2):  # the first call may be the one that finds the connection gone
        st, doc = hello(m, token, {"name": "gw1"})
    assert (st, error(doc)) == (503, unavailable)
    st, doc = m.api("GET", "/api/v1/slbl?since=0", token=token)
    assert (st, error(doc)) == (503, unavailable)
    pg.start()
    wait_for(lambda: hello(m, token, {"name": "gw1", "version": "0.1.0"})[0] == 200, 30,
             "the hello accepted again")
    (g,) = registry(m)
    assert (g["name"], g["version"]) == ("gw1", "0.1.0")

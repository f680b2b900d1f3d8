"""Centralization levels (cluster > group > machine) on the manager and managed
gateways that run on them.

/api/v1/levels: settings {pvo, reporting, tracking, filters} at each level, what
each gateway ends up with (machine over group over cluster), and the rules of
REQUIREMENTS PV5 answered with 409s naming the other level. A real lazaret-gw with
[manager] managed = yes pulls its settings (GET /api/v1/gateway/config with its
token) on start, on SIGHUP and every sync_interval, keeps them in its data folder
and runs on them while the manager is down; what it really runs with shows in the
registry's "centralized".

Real lazaretd and lazaret-gw processes on loopback, a real store (SQLite, or
PostgreSQL with LAZARET_E2E_BACKEND=postgresql), real HTTP and SMTP clients.
"""

import json
import os
import signal

from e2e_helpers import wait_for
from gw_fixtures import make_message, start_gateway  # noqa: F401 (a fixture)

FILTERS = 'invoice: if subject == "(?i)invoice" { quarantine("請求書"); }\n'
FILTERS2 = 'parcel: if subject == "(?i)parcel" { quarantine("荷物"); }\n'


def error(doc):
    return doc["error"]["message"]


def add(mgr, name, address, **fields):
    body = {"name": name, "address": address}
    body.update(fields)
    st, doc = mgr.api("POST", "/api/v1/gateways", json=body)
    assert st == 201, (st, doc)
    return doc["token"]


def put(mgr, level, name, expect=200, **settings):
    st, doc = mgr.api("PUT", "/api/v1/levels/%s/%s" % (level, name), json=settings)
    assert st == expect, (st, doc)
    return doc


def levels(mgr):
    st, doc = mgr.api("GET", "/api/v1/levels")
    assert st == 200, (st, doc)
    return doc


def effective(mgr, gateway):
    (g,) = [g for g in levels(mgr)["gateways"] if g["name"] == gateway]
    return g["effective"]


def gateway_config(mgr, token):
    st, _, raw = mgr.http("GET", "/api/v1/gateway/config", token=token)
    return st, json.loads(raw)


def registry_entry(mgr, name):
    st, doc = mgr.api("GET", "/api/v1/gateways")
    assert st == 200, doc
    (g,) = [g for g in doc["gateways"] if g["name"] == name]
    return g


# ---- the rules and what each gateway ends up with ---------------------------------

def test_levels_conflicts_and_resolution(start_manager):
    mgr = start_manager(gateways__pending_from="127.0.0.1/32")
    tok_a = add(mgr, "gw-a", "127.0.0.2", group="g1", cluster="c1")
    add(mgr, "gw-b", "127.0.0.3", group="g1", cluster="c1")
    add(mgr, "gw-c", "127.0.0.4", group="g2", cluster="c1")

    put(mgr, "cluster", "c1", reporting=True)
    put(mgr, "group", "g1", tracking=True)
    doc = put(mgr, "machine", "gw-a", pvo=False)
    assert doc["level"]["settings"] == {"pvo": False, "reporting": None, "tracking": None,
                                        "filters": None}
    assert doc["level"]["members"] == ["gw-a"]

    # enabling pvo at the cluster while a member overrides it below
    st, doc = mgr.api("PUT", "/api/v1/levels/cluster/c1", json={"pvo": True})
    assert (st, error(doc)) == (
        409, '"pvo" is set at machine "gw-a" (gateway "gw-a"), below cluster "c1"; '
        'remove it there before setting it here')
    st, doc = mgr.api("DELETE", "/api/v1/levels/machine/gw-a")
    assert st == 200, doc
    st, doc = mgr.api("DELETE", "/api/v1/levels/machine/gw-a")
    assert (st, error(doc)) == (404, "nothing is set at this level")
    put(mgr, "cluster", "c1", pvo=True)

    # set at the cluster: not again below it
    st, doc = mgr.api("PUT", "/api/v1/levels/group/g1", json={"pvo": False})
    assert (st, error(doc)) == (
        409, '"pvo" is set at cluster "c1", which gateway "gw-a" belongs to; '
        'it may not be set again below it (at group "g1")')
    st, doc = mgr.api("PUT", "/api/v1/levels/machine/gw-c", json={"pvo": True})
    assert (st, error(doc)) == (
        409, '"pvo" is set at cluster "c1", which gateway "gw-c" belongs to; '
        'it may not be set again below it (at machine "gw-c")')

    # filters: the same rule, both ways
    put(mgr, "group", "g2", filters=FILTERS)
    st, doc = mgr.api("PUT", "/api/v1/levels/cluster/c1", json={"filters": FILTERS2})
    assert (st, error(doc)) == (
        409, '"filters" is set at group "g2" (gateway "gw-c"), below cluster "c1"; '
        'remove it there before setting it here')
    st, doc = mgr.api("PUT", "/api/v1/levels/machine/gw-c", json={"filters": FILTERS2})
    assert (st, error(doc)) == (
        409, '"filters" is set at group "g2", which gateway "gw-c" belongs to; '
        'it may not be set again below it (at machine "gw-c")')

    # reporting and tracking may be overridden below
    put(mgr, "machine", "gw-b", reporting=False)

    # a pending gateway that names a group: pvo may not be enabled there yet
    st, _, raw = mgr.http("POST", "/api/v1/gateway/hello",
                          body=json.dumps({"name": "gw-p", "group": "g3"}).encode(),
                          token=None, headers={"Content-Type": "application/json"})
    assert st == 401, raw
    st, doc = mgr.api("PUT", "/api/v1/levels/group/g3", json={"pvo": True})
    assert (st, error(doc)) == (
        409, 'gateway "gw-p" names group "g3" but is not registered (pending); '
        'register it before enabling "pvo" at this level')
    put(mgr, "group", "g3", tracking=True)  # anything but enabling pvo is fine
    add(mgr, "gw-p", "127.0.0.5", group="g3")
    put(mgr, "group", "g3", pvo=True)

    doc = levels(mgr)
    got = {(lv["level"], lv["name"]): (lv["settings"], lv["members"]) for lv in doc["levels"]}
    assert got[("cluster", "c1")] == (
        {"pvo": True, "reporting": True, "tracking": None, "filters": None},
        ["gw-a", "gw-b", "gw-c"])
    assert got[("group", "g1")] == (
        {"pvo": None, "reporting": None, "tracking": True, "filters": None}, ["gw-a", "gw-b"])
    assert got[("group", "g2")][0]["filters"] == FILTERS
    assert got[("machine", "gw-b")][0]["reporting"] is False
    assert ("machine", "gw-a") not in got

    cluster = {"level": "cluster", "name": "c1"}
    assert effective(mgr, "gw-a") == {
        "settings": {"pvo": True, "reporting": True, "tracking": True, "filters": None},
        "from": {"pvo": cluster, "reporting": cluster,
                 "tracking": {"level": "group", "name": "g1"}, "filters": None}}
    assert effective(mgr, "gw-b")["settings"]["reporting"] is False
    assert effective(mgr, "gw-b")["from"]["reporting"] == {"level": "machine", "name": "gw-b"}
    assert effective(mgr, "gw-c")["settings"] == {"pvo": True, "reporting": True,
                                                  "tracking": None, "filters": FILTERS}

    # the gateway's own view, with its own token only
    st, doc = gateway_config(mgr, tok_a)
    assert st == 200, doc
    assert doc["gateway"] == "gw-a" and doc["group"] == "g1" and doc["cluster"] == "c1"
    assert doc["settings"] == {"pvo": True, "reporting": True, "tracking": True,
                               "filters": None}
    st, doc = gateway_config(mgr, "0" * 64)
    assert (st, error(doc)) == (401, "a valid gateway token is required")
    st, doc = gateway_config(mgr, mgr.token)
    assert (st, error(doc)) == (401, "a valid gateway token is required")

    st, doc = mgr.api("GET", "/api/v1/audit?limit=100")
    assert ("level_set", "c1") in [(e["action"], e.get("target")) for e in doc["entries"]]

    # a gateway may not join a group and a cluster that both set pvo
    put(mgr, "group", "g9", pvo=False)
    st, doc = mgr.api("POST", "/api/v1/gateways", json={"name": "gw-x", "address": "127.0.0.6",
                                                        "group": "g9", "cluster": "c1"})
    assert (st, error(doc)) == (
        409, '"pvo" is set at cluster "c1" and again below it at group "g9"; '
        'gateway "gw-x" cannot be in both')
    assert "gw-x" not in [g["name"] for g in levels(mgr)["gateways"]]
    # moving a gateway between groups and clusters: the same rule
    st, doc = mgr.api("PATCH", "/api/v1/gateways/gw-c", json={"group": "g9"})
    assert (st, error(doc)) == (
        409, '"pvo" is set at cluster "c1" and again below it at group "g9"; '
        'gateway "gw-c" cannot be in both')
    st, doc = mgr.api("PATCH", "/api/v1/gateways/GW-C", json={"group": "g1"})
    assert st == 200, doc
    assert (doc["gateway"]["group"], doc["gateway"]["cluster"]) == ("g1", "c1")
    assert effective(mgr, "gw-c")["settings"] == {"pvo": True, "reporting": True,
                                                  "tracking": True, "filters": None}
    st, doc = mgr.api("PATCH", "/api/v1/gateways/gw-c", json={"cluster": None})
    assert st == 200, doc
    assert effective(mgr, "gw-c")["settings"]["pvo"] is None
    for body, status, message in (({"group": "a/b"}, 422,
                                   "\"group\" must be 1 to 64 letters, digits, '.', '-' or '_'"),
                                  ({"address": "127.0.0.9"}, 422, 'unknown field "address"')):
        st, doc = mgr.api("PATCH", "/api/v1/gateways/gw-c", json=body)
        assert (st, error(doc)) == (status, message)
    st, doc = mgr.api("PATCH", "/api/v1/gateways/nobody", json={"group": "g1"})
    assert (st, error(doc)) == (404, "no such gateway")
    st, doc = mgr.api("GET", "/api/v1/audit?limit=100")
    assert ("gateway_update", "gw-c") in [(e["action"], e.get("target"))
                                          for e in doc["entries"]]

    # a removed gateway's machine level goes with it
    st, doc = mgr.api("DELETE", "/api/v1/gateways/gw-b")
    assert st == 200, doc
    assert ("machine", "gw-b") not in [(lv["level"], lv["name"]) for lv in levels(mgr)["levels"]]


def test_levels_refuse_bad_input(start_manager):
    mgr = start_manager()
    add(mgr, "gw-a", "127.0.0.2", group="g1")
    cases = [
        ("/api/v1/levels/site/x", {"pvo": True}, 404,
         "no such level (cluster, group or machine)"),
        ("/api/v1/levels/group/a%20b", {"pvo": True}, 422,
         "the name must be 1 to 64 letters, digits, '.', '-' or '_'"),
        ("/api/v1/levels/group/g1", {"pvo": "yes"}, 422, '"pvo" must be true, false or null'),
        ("/api/v1/levels/group/g1", {"filters": 3}, 422, '"filters" must be rule text or null'),
        ("/api/v1/levels/group/g1", {"color": 1}, 422, 'unknown field "color"'),
        ("/api/v1/levels/machine/nobody", {"pvo": True}, 404,
         'no registered gateway "nobody"'),
        ("/api/v1/levels/group/g1", {"filters": "x" * (256 * 1024 + 1)}, 422,
         '"filters" is longer than 262144 bytes'),
    ]
    for path, body, status, message in cases:
        st, doc = mgr.api("PUT", path, json=body)
        assert (st, error(doc)) == (status, message), path
    st, doc = mgr.api("PUT", "/api/v1/levels/group/g1", json={"pvo": True}, token=None)
    assert st == 401, doc
    assert levels(mgr)["levels"] == [{
        "level": "group", "name": "g1", "members": ["gw-a"], "pending": [],
        "updated_at": None,
        "settings": {"pvo": None, "reporting": None, "tracking": None, "filters": None}}]


# ---- a managed gateway --------------------------------------------------------------

def managed_gateway(start_gateway, aio_sink, mgr, token, sync_interval="1h"):
    gw = start_gateway(aio_sink.host, start=False,
                       gateway={"name": "gw-m", "group": "g1", "cluster": "c1"},
                       manager={"api_url": mgr.http_url, "api_token": token,
                                "managed": "yes", "sync_interval": sync_interval},
                       centralized_pvo={"enabled": "no", "host": "127.0.0.1",
                                        "port": str(mgr.pvo_port)})
    return gw.start()


def centralized(mgr):
    return registry_entry(mgr, "gw-m")["centralized"]


def count(gw, needle):
    return gw.log_text().count(needle)


def test_managed_gateway_follows_its_levels(start_manager, start_gateway, aio_sink):
    mgr = start_manager()
    token = add(mgr, "gw-m", "127.0.0.1", group="g1", cluster="c1")
    put(mgr, "cluster", "c1", pvo=True, filters=FILTERS, reporting=False)
    put(mgr, "group", "g1", tracking=True)
    gw = managed_gateway(start_gateway, aio_sink, mgr, token)

    # on start: the filters and the central PVO quarantines of its cluster
    assert "gw.managed_changed pvo=1 reporting=0 tracking=1 filters=set" in gw.log_text()
    assert "central_pvo=127.0.0.1:%d" % mgr.pvo_port in gw.log_text()
    wait_for(lambda: centralized(mgr) == {"pvo": True, "reporting": False, "tracking": True},
             10, "the gateway to say what it runs with")
    code, text = gw.send("alice@sender.test", "bob@example.com",
                         make_message(subject="Invoice 42"))
    assert code == 250, text
    (msg,) = mgr.list_all()
    assert [q["name"] for q in mgr.get_message(msg["id"])["quarantines"]] == ["請求書"]
    with open(os.path.join(gw.data_dir, "managed-filters.rules"), encoding="utf-8") as f:
        assert f.read() == FILTERS
    with open(os.path.join(gw.data_dir, "managed.json"), encoding="utf-8") as f:
        assert json.load(f)["settings"] == {"pvo": True, "reporting": False,
                                            "tracking": True, "filters": FILTERS}

    # a change is picked up on SIGHUP
    put(mgr, "cluster", "c1", pvo=False)
    before = count(gw, "gw.reloaded")
    gw.proc.send_signal(signal.SIGHUP)
    gw.wait_log("gw.managed_changed pvo=0 reporting=0 tracking=1 filters=set")
    wait_for(lambda: count(gw, "gw.reloaded") >= before + 2, 10, "the second reload")
    wait_for(lambda: centralized(mgr)["pvo"] is False, 10, "pvo off in the registry")
    code, text = gw.send("alice@sender.test", "bob@example.com",
                         make_message(subject="Invoice 43"))
    assert code == 250, text
    wait_for(lambda: len(gw.messages()) == 1, 10, "the message in the local quarantine")
    assert len(mgr.list_all()) == 1  # nothing more on the manager

    # rules that do not compile are refused; the gateway keeps the ones it has
    put(mgr, "cluster", "c1", filters='broken: if subject == { drop(); }\n')
    gw.proc.send_signal(signal.SIGHUP)
    gw.wait_log("gw.managed_refused")
    with open(os.path.join(gw.data_dir, "managed-filters.rules"), encoding="utf-8") as f:
        assert f.read() == FILTERS
    put(mgr, "cluster", "c1", filters=FILTERS)

    # the manager goes down: the gateway starts and runs on what it kept
    mgr.stop()
    assert gw.stop() == 0
    gw.start()
    gw.wait_log("gw.managed_sync_failed")
    code, text = gw.send("alice@sender.test", "bob@example.com",
                         make_message(subject="Invoice 44"))
    assert code == 250, text
    wait_for(lambda: len(gw.messages()) == 2, 10, "the cached filters to quarantine locally")
    assert {m["quarantine"] for m in gw.messages()} == {"請求書"}
    mgr.restart()


def test_managed_gateway_pulls_every_sync_interval(start_manager, start_gateway, aio_sink):
    mgr = start_manager()
    token = add(mgr, "gw-m", "127.0.0.1", group="g1", cluster="c1")
    put(mgr, "group", "g1", filters=FILTERS)
    gw = managed_gateway(start_gateway, aio_sink, mgr, token, sync_interval="1s")
    assert "gw.managed_changed pvo=-1 reporting=-1 tracking=-1 filters=set" in gw.log_text()
    # no level sets pvo: the file's enabled = no stays
    assert "central_pvo=no" in gw.log_text()
    wait_for(lambda: centralized(mgr) == {"pvo": False, "reporting": False, "tracking": False},
             10, "the registry to show the real state")

    put(mgr, "group", "g1", filters=FILTERS2, pvo=True)
    gw.wait_log("gw.managed_changed pvo=1 reporting=-1 tracking=-1 filters=set", timeout=15)
    wait_for(lambda: centralized(mgr)["pvo"] is True, 15, "pvo on in the registry")
    code, text = gw.send("alice@sender.test", "bob@example.com",
                         make_message(subject="Your parcel"))
    assert code == 250, text
    (msg,) = mgr.list_all()
    assert [q["name"] for q in mgr.get_message(msg["id"])["quarantines"]] == ["荷物"]
    # the earlier rules are gone with their level's change
    code, text = gw.send("alice@sender.test", "bob@example.com",
                         make_message(subject="Invoice 45"))
    assert code == 250, text
    assert len(mgr.list_all()) == 1

"""Turning centralized PVO quarantines off (REQUIREMENTS PV8): the gateway's local
Virus, Outbreak and Unclassified quarantines come back with their settings (those of
its own file, which centralization never touched), every quarantine a content filter
names is there again locally, new quarantined mail stays local at once, and the
messages already on the manager stay there until they are released: through the
gateway that quarantined them while it takes them, else through the manager's
[pvo_quarantine] alternate_release_gateway.

Real lazaretd (SQLite, or PostgreSQL with LAZARET_E2E_BACKEND=postgresql), a real
lazaret-gw with a real clamd that knows EICAR, aiosmtpd sinks as next hop and as the
alternate, and lazaretctl to remove the gateway from the registry.
"""

import time
import urllib.parse

from e2e_helpers import stays, t, wait_for
from engine_fixtures import clamd, eicar_mail  # noqa: F401
from gw_fixtures import make_message, start_gateway  # noqa: F401
from test_gateway_pvo import RCPT, SENDER, start_central_gw
from test_lazaretctl import ctl
from test_levels import add, managed_gateway, put
from test_pvo_actions import act, gateway_at, memberships
from test_pvo_chain import MANAGER_ADDR, POLICY, delivered_once, quarantine_one, \
    released_job_ids

# the local quarantines' own settings: they must hold again once centralization is off
LOCAL_DELETE_AFTER = 6  # seconds


def local_quarantines(gw):
    st, doc = gw.api("GET", "/api/v1/quarantines")
    assert st == 200, (st, doc)
    return {q["name"]: q for q in doc["quarantines"]}


def reloads(gw):
    return gw.log_text().count("gw.reloaded ")


def test_sighup_turns_centralization_off(start_manager, start_gateway, aio_sink,
                                        aio_sink_factory, clamd):
    alternate = aio_sink_factory()
    m = start_manager(release__source_address=MANAGER_ADDR, retry_min="1s", retry_max="2s",
                      pvo_quarantine__alternate_release_gateway=alternate.host)
    gw = start_central_gw(start_gateway, aio_sink, m, clamd,
                          manager={"addresses": MANAGER_ADDR},
                          quarantines={"delete_after": "%ds" % LOCAL_DELETE_AFTER,
                                       "purge_interval": "1s"})
    gateway_at(m, gw.smtp_port)
    gw.wait_log("gw.central_pvo host=127.0.0.1:%d reachable=yes" % m.pvo_port)
    # while centralized no local quarantine is made for the filter's
    assert POLICY not in local_quarantines(gw)

    virus = quarantine_one(m, gw, eicar_mail(to=RCPT.encode(), subject=b"hello"), "virus")
    policy = quarantine_one(m, gw, make_message(subject="Invoice 1", to=RCPT), "policy")
    assert list(memberships(m, virus)) == ["virus"]
    assert list(memberships(m, policy)) == [POLICY]
    assert gw.messages() == []

    # off: the file changes, SIGHUP
    before = reloads(gw)
    gw.reload(centralized_pvo={"enabled": "no"})
    wait_for(lambda: reloads(gw) > before, t(10), "the reload")
    assert "central_pvo=no" in gw.log_text().split("gw.reloaded ")[-1].splitlines()[0]
    gw.wait_log("gw.local_quarantine_created name=%s\n" % POLICY)
    q = local_quarantines(gw)
    assert q[POLICY]["type"] == "policy" and q[POLICY]["messages"] == 0, q
    # each system quarantine once, under its own (lowercase) name
    assert sorted(n for n in q if n.lower() in ("virus", "outbreak", "unclassified")) == \
        ["outbreak", "unclassified", "virus"], q

    # new virus mail stays local, in virus, and expires on the gateway's own period
    code, text = gw.send(SENDER, RCPT, eicar_mail(to=RCPT.encode(), subject=b"again"))
    assert code == 250, text
    sent_at = time.time()
    (local,) = gw.messages("quarantine=virus")
    assert local["subject"] == "again"
    assert local_quarantines(gw)["virus"]["messages"] == 1
    code, text = gw.send(SENDER, RCPT, make_message(subject="Invoice 2", to=RCPT))
    assert code == 250, text
    (lp,) = gw.messages("quarantine=" + urllib.parse.quote(POLICY))
    assert lp["subject"] == "Invoice 2"
    assert sorted(x["id"] for x in m.list_all()) == sorted([virus, policy])  # nothing new
    wait_for(lambda: gw.messages("quarantine=virus&state=quarantined") == [],
             t(LOCAL_DELETE_AFTER + 10), "the local virus message to expire")
    assert time.time() - sent_at >= LOCAL_DELETE_AFTER - 1
    assert aio_sink.count() == 0

    # the central messages stay on the manager, still held
    for mid in (virus, policy):
        assert [r["state"] for r in m.get_message(mid)["recipients"]] == ["quarantined"]
    # released: back through the gateway that quarantined them, which takes it unscanned
    assert act(m, virus, "release", {"quarantine": "virus"})[0] == 202
    (got,) = delivered_once(aio_sink, 1)
    (job,) = released_job_ids(gw)
    assert job[1] == MANAGER_ADDR
    assert b"X-Lazaret-Released: " in got["data"] and b"Subject: hello" in got["data"]
    assert gw.messages("quarantine=virus&state=quarantined") == []
    assert alternate.count() == 0

    # the gateway is gone (stopped and removed from the registry): the alternate
    assert gw.stop() == 0
    rc, out, err = ctl(m, "gateway", "remove", "gw-e2e")
    assert (rc, out.decode()) == (0, "removed gateway gw-e2e\n"), err
    assert act(m, policy, "release", {"quarantine": POLICY})[0] == 202
    (alt,) = delivered_once(alternate, 1, margin=3)
    assert alt["peer"] == MANAGER_ADDR and alt["rcpts"] == [RCPT]
    assert b"Subject: Invoice 1" in alt["data"]
    wait_for(lambda: [r["state"] for r in m.get_message(policy)["recipients"]] == ["released"],
             t(15), "the recipient released")
    assert aio_sink.count() == 1


def test_managed_level_turns_centralization_off(start_manager, start_gateway, aio_sink):
    filters = 'invoice: if subject == "(?i)invoice" { quarantine("請求書"); }\n'
    m = start_manager()
    token = add(m, "gw-m", "127.0.0.1", group="g1", cluster="c1")
    put(m, "machine", "gw-m", pvo=True, filters=filters)
    gw = managed_gateway(start_gateway, aio_sink, m, token)
    assert "gw.managed_changed pvo=1" in gw.log_text()
    assert "請求書" not in local_quarantines(gw)
    code, text = gw.send(SENDER, RCPT, make_message(subject="Invoice 1"))
    assert code == 250, text
    (central,) = m.list_all()
    assert [q["name"] for q in m.get_message(central["id"])["quarantines"]] == ["請求書"]

    # the level turns it off; the gateway's next sync (here: SIGHUP) follows
    put(m, "machine", "gw-m", pvo=False)
    before = reloads(gw)
    gw.reload()
    gw.wait_log("gw.managed_changed pvo=0")
    gw.wait_log("gw.local_quarantine_created name=請求書\n")
    wait_for(lambda: "請求書" in local_quarantines(gw), t(10), "the filter's local quarantine")
    assert reloads(gw) > before
    code, text = gw.send(SENDER, RCPT, make_message(subject="Invoice 2"))
    assert code == 250, text
    (local,) = gw.messages("quarantine=" + urllib.parse.quote("請求書"))
    assert local["subject"] == "Invoice 2"
    assert [x["id"] for x in m.list_all()] == [central["id"]]
    assert stays(lambda: aio_sink.count() == 0, t(1))
    assert [r["state"] for r in m.get_message(central["id"])["recipients"]] == ["quarantined"]

"""Migration on enabling centralized PVO, the gateway's side (REQUIREMENTS PV6): the
messages of the local PVO quarantines move to the manager's PVO listener, by the
mapping the manager gives (GET /api/v1/gateway/mapping), keep their entered and
expires times, and leave the gateway only after the manager's 250; progress is
reported (POST /api/v1/gateway/migration) and shown in the manager's registry;
the notify address gets one mail; a reload changing quarantine or filter settings
meanwhile is refused; `lazaret-gw --migration-plan` says beforehand what moves.

  smtplib -> lazaret-gw (centralization off: local quarantines) -> aiosmtpd next hop
  then SIGHUP with [centralized_pvo] on: lazaret-gw -> lazaretd :7025 (real manager,
  SQLite or PostgreSQL) and its API; the manager's mail -> an aiosmtpd sink
"""

import datetime
import os
import subprocess

import pytest

from e2e_helpers import stays, wait_for
from gw_fixtures import lazaret_gw_path, make_message, start_gateway  # noqa: F401

SENDER = "taro@sender.test"
NOTIFY = "admin@corp.test"

FILTERS = """\
to_policy: if rcpt-to == "^policy@" { quarantine("Policy"); }
to_legal: if rcpt-to == "^legal@" { quarantine("Legal"); }
to_old: if rcpt-to == "^old@" { quarantine("Old"); }
"""


def ms(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


@pytest.fixture
def mail_sink(aio_sink_factory):
    return aio_sink_factory()


@pytest.fixture
def setup(start_manager, start_gateway, aio_sink, mail_sink):
    """A manager with the gateway registered, and the gateway with local quarantines."""
    m = start_manager(primary_host=mail_sink.host, notifications__from="lazaret@corp.test")
    st, doc = m.api("POST", "/api/v1/gateways", json={"name": "gw-e2e",
                                                      "address": "127.0.0.1"})
    assert st == 201, doc
    gw = start_gateway(aio_sink.host, start=False)
    gw.apply({"manager": {"api_url": m.http_url, "api_token": doc["token"]},
              "filters": {"file": gw.write_file("gw.filters", FILTERS)},
              "quarantines": {"delete_after": "10d"}})
    gw.start()
    return m, gw


def central(m):
    return {"enabled": "yes", "host": "127.0.0.1", "port": str(m.pvo_port), "notify": NOTIFY}


def quarantine_local(gw, raw, rcpt):
    code, text = gw.send(SENDER, rcpt, raw)
    assert code == 250, text


def local_held(gw):
    return gw.messages("state=quarantined")


def local_quarantine_names(gw):
    st, doc = gw.api("GET", "/api/v1/quarantines")
    assert st == 200, doc
    return sorted(q["name"] for q in doc["quarantines"])


def central_by_quarantine(m):
    out = {}
    for msg in m.list_all():
        for q in m.get_message(msg["id"])["quarantines"]:
            out.setdefault(q["name"], []).append((msg, q))
    return out


def migration_of(m):
    st, doc = m.api("GET", "/api/v1/gateways")
    assert st == 200, doc
    (g,) = [g for g in doc["gateways"] if g["name"] == "gw-e2e"]
    return g["migration"]


def fill(gw):
    """One message in two local quarantines (a copy for each recipient's), one more."""
    both = make_message(subject="in two quarantines")
    quarantine_local(gw, both, "policy@example.com")
    quarantine_local(gw, both, "legal@example.com")
    quarantine_local(gw, make_message(subject="legal only"), "legal@example.com")
    held = local_held(gw)
    assert len(held) == 3
    return {msg["subject"] + "/" + msg["quarantine"]: msg for msg in held}


def test_automatic_migration_moves_everything_and_keeps_the_times(setup, mail_sink):
    m, gw = setup
    local = fill(gw)
    assert {"Legal", "Policy"} <= set(local_quarantine_names(gw))
    gw.reload(centralized_pvo=central(m))
    gw.wait_log("gw.migration_done total=3 moved=3 failed=0 deleted=0", timeout=30)
    assert "gw.migration_started total=3" in gw.log_text()
    by_q = central_by_quarantine(m)
    assert sorted(by_q) == ["Legal", "Policy"]
    assert sorted(msg["subject"] for msg, _ in by_q["Legal"]) == ["in two quarantines",
                                                                  "legal only"]
    assert [msg["subject"] for msg, _ in by_q["Policy"]] == ["in two quarantines"]
    for name, entries in by_q.items():
        for msg, q in entries:
            orig = local[msg["subject"] + "/" + name]
            # entered is the local received_at, expires its local expiry (10 days on)
            assert abs(ms(q["entered_at"]) - ms(orig["received_at"])) < 1000, (q, orig)
            assert abs(ms(q["expires_at"]) - ms(orig["received_at"]) - 10 * 86400000) < 1000
            assert [r["address"] for r in msg["recipients"]] == \
                [r["address"] for r in orig["recipients"]]
    assert local_held(gw) == []
    assert "Policy" not in local_quarantine_names(gw)
    assert "Legal" not in local_quarantine_names(gw)
    wait_for(lambda: (migration_of(m) or {}).get("state") == "done", 15, "migration done")
    mig = migration_of(m)
    assert (mig["total"], mig["done"], mig["failed"]) == (3, 3, 0)
    # the notify address gets one mail
    mail_sink.wait_count(1)
    assert stays(lambda: mail_sink.count() == 1, 3)
    (got,) = mail_sink.messages
    assert got["rcpts"] == [NOTIFY]
    # new quarantined mail goes straight to the manager
    quarantine_local(gw, make_message(subject="new one"), "policy@example.com")
    assert local_held(gw) == []
    assert sorted(msg["subject"] for msg, _ in central_by_quarantine(m)["Policy"]) == \
        ["in two quarantines", "new one"]


def test_custom_mapping_renames_and_null_deletes(setup):
    m, gw = setup
    st, doc = m.api("PUT", "/api/v1/gateways/gw-e2e/mapping",
                    json={"Policy": "Compliance", "Old": None})
    assert st == 200, doc
    fill(gw)
    quarantine_local(gw, make_message(subject="old stuff"), "old@example.com")
    gw.reload(centralized_pvo=central(m))
    gw.wait_log("gw.migration_done total=4 moved=3 failed=0 deleted=1", timeout=30)
    by_q = central_by_quarantine(m)
    assert sorted(by_q) == ["Compliance", "Legal"]
    assert [msg["subject"] for msg, _ in by_q["Compliance"]] == ["in two quarantines"]
    assert len(by_q["Legal"]) == 2
    assert local_held(gw) == []
    names = local_quarantine_names(gw)
    assert "Old" not in names and "Policy" not in names
    # a filter naming Policy now names Compliance; a null-mapped one keeps its name
    quarantine_local(gw, make_message(subject="after"), "policy@example.com")
    quarantine_local(gw, make_message(subject="old after"), "old@example.com")
    by_q = central_by_quarantine(m)
    assert sorted(msg["subject"] for msg, _ in by_q["Compliance"]) == ["after",
                                                                      "in two quarantines"]
    assert [msg["subject"] for msg, _ in by_q["Old"]] == ["old after"]


def plan(gw):
    return subprocess.run([lazaret_gw_path(), "--migration-plan", "-c", gw.conf_path],
                          capture_output=True, text=True, timeout=30)


def test_migration_plan_says_what_moves_and_changes_nothing(setup):
    m, gw = setup
    st, doc = m.api("PUT", "/api/v1/gateways/gw-e2e/mapping",
                    json={"Policy": "Compliance", "Old": None})
    assert st == 200, doc
    fill(gw)
    quarantine_local(gw, make_message(subject="old stuff"), "old@example.com")
    out = plan(gw)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "mapping: custom",
        "move: Legal: 2 messages -> Legal",
        "move: Policy: 1 messages -> Compliance",
        "move: outbreak: 0 messages -> outbreak",
        "move: unclassified: 0 messages -> unclassified",
        "move: virus: 0 messages -> virus",
        "delete: Old: 1 messages (not migrated)",
        'filter: quarantine("Policy") -> Compliance',
        'filter: quarantine("Legal") -> Legal',
        'filter: quarantine("Old") -> Old (null in the mapping: its own name)',
    ]
    assert len(local_held(gw)) == 4
    assert m.list_all() == []
    # without the manager: exit 1, said why
    m.stop()
    out = plan(gw)
    assert out.returncode == 1
    assert out.stdout == ""
    assert out.stderr.startswith("lazaret-gw: cannot get the quarantine mapping from the "
                                 "manager (%s): " % m.http_url), out.stderr
    assert len(local_held(gw)) == 4


def test_reload_changing_filters_is_refused_while_migration_runs(setup):
    m, gw = setup
    fill(gw)
    m.stop()
    gw.reload(centralized_pvo=central(m))
    gw.wait_log("gw.migration_mapping_failed", timeout=15)
    other = gw.write_file("gw2.filters", FILTERS.replace("Legal", "Legal2"))
    gw.reload(filters={"file": other})
    gw.wait_log('gw.reload_refused reason="migration running (0/3)"')
    # the old filters stay: nothing is judged by the new file yet
    m.start()
    gw.wait_log("gw.migration_done total=3 moved=3 failed=0 deleted=0", timeout=60)
    gw.wait_log("gw.reload_after_migration", timeout=15)
    gw.wait_log("gw.reloaded", timeout=15)
    quarantine_local(gw, make_message(subject="after"), "legal@example.com")
    assert "Legal2" in central_by_quarantine(m)


# ---- kill -9 on both sides in the middle of a big run ----------------------------

BIG_A = int(os.environ.get("MIG_A", "15000"))  # batch-a: Policy
BIG_B = int(os.environ.get("MIG_B", "5000"))  # batch-b: Legal (numbers 1..BIG_B again)
BIG_FILTERS = """\
batch_a: if subject == "^batch-a$" { quarantine("Policy"); }
batch_b: if subject == "^batch-b$" { quarantine("Legal"); }
"""


def smtp_source(gw, count, subject):
    """Postfix's smtp-source: count messages, each to its own numbered recipient."""
    r = subprocess.run(["/usr/sbin/smtp-source", "-s", "8", "-m", str(count), "-l", "2000",
                        "-N", "-f", "src@sender.test", "-t", "user@example.com",
                        "-S", subject, "127.0.0.1:%d" % gw.smtp_port],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


def numbers(m, quarantine):
    """The per-message numbers (smtp-source -N: in the recipient) in a central quarantine."""
    out = []
    for msg in m.list_all("quarantine=" + quarantine):
        (rcpt,) = msg["recipients"]
        out.append(int(rcpt["address"].split("user@")[0]))
    return out


def test_kill_9_on_both_sides_loses_nothing_and_stores_nothing_twice(start_manager,
                                                                     start_gateway, aio_sink,
                                                                     mail_sink):
    m = start_manager(primary_host=mail_sink.host, notifications__from="lazaret@corp.test")
    st, doc = m.api("POST", "/api/v1/gateways", json={"name": "gw-e2e",
                                                      "address": "127.0.0.1"})
    assert st == 201, doc
    st, mapped = m.api("PUT", "/api/v1/gateways/gw-e2e/mapping", json={"Legal": "Legal-HQ"})
    assert st == 200, mapped
    gw = start_gateway(aio_sink.host, start=False)
    gw.apply({"manager": {"api_url": m.http_url, "api_token": doc["token"]},
              "filters": {"file": gw.write_file("gw.filters", BIG_FILTERS)},
              "rat": {"accept": "*"}})
    gw.start()
    if not os.access("/usr/sbin/smtp-source", os.X_OK):
        pytest.fail("/usr/sbin/smtp-source missing (Debian package postfix)")
    smtp_source(gw, BIG_A, "batch-a")
    smtp_source(gw, BIG_B, "batch-b")
    st, doc = gw.api("GET", "/api/v1/quarantines")
    held = {q["name"]: q["messages"] for q in doc["quarantines"]}
    assert (held["Policy"], held["Legal"]) == (BIG_A, BIG_B)

    gw.reload(centralized_pvo=central(m))
    gw.wait_log("gw.migration_started total=%d" % (BIG_A + BIG_B), timeout=30)
    wait_for(lambda: "gw.migration_progress" in gw.log_text(), 60, "progress")
    gw.proc.kill()
    gw.proc.wait()
    gw.start()
    gw.wait_log("gw.migration_resumed", timeout=30)
    seen = gw.log_text().count("gw.migration_progress")
    wait_for(lambda: gw.log_text().count("gw.migration_progress") > seen, 60, "progress")
    assert "gw.migration_done" not in gw.log_text(), "the run ended before the kill"

    m.proc.kill()
    m.proc.wait()
    m.start()
    gw.wait_log("gw.migration_done total=%d" % (BIG_A + BIG_B), timeout=600)
    assert "failed=0" in gw.log_text().split("gw.migration_done")[1].splitlines()[0]

    a = numbers(m, "Policy")
    b = numbers(m, "Legal-HQ")
    assert sorted(a) == list(range(1, BIG_A + 1))
    assert sorted(b) == list(range(1, BIG_B + 1))
    assert len(m.list_all()) == BIG_A + BIG_B
    assert gw.messages("state=quarantined") == []
    names = local_quarantine_names(gw)
    assert "Policy" not in names and "Legal" not in names
    wait_for(lambda: (migration_of(m) or {}).get("state") == "done", 30, "migration done")
    mig = migration_of(m)
    assert (mig["total"], mig["done"], mig["failed"]) == (BIG_A + BIG_B, BIG_A + BIG_B, 0)
    mail_sink.wait_count(1)
    assert stays(lambda: mail_sink.count() == 1, 2)

"""lazaret-migrate-store: a lazaretd on SQLite gets mail over SMTP, accounts, sessions,
safelists, releases and deletions through the API; it is stopped, its store copied
into a throw-away PostgreSQL, and the same lazaretd started on PostgreSQL answers the
same for everything. A second copy into the filled database, a bad DSN and a store
in use are refused with their exact messages, the stores left as they were.
Without a PostgreSQL server the module is skipped, and under CI=true that is a failure."""

import os
import sqlite3
import subprocess
import time

import pytest

from conftest import find_binary
from e2e_helpers import make_attachment_message, make_message, stays, t, wait_for
from test_digest import add_enduser, digests, entry_links, page, parse, parts, send_now
from test_digest import start as start_digest
from test_digest import states
from test_sessions import Client, add_user
from test_store_postgresql import database, postgresql, psql  # noqa: F401 (fixtures)

PROG = "lazaret-migrate-store"

# The source of the copy is a lazaretd on SQLite by design: left out of the e2e run
# with every manager on PostgreSQL (LAZARET_E2E_BACKEND=postgresql).
pytestmark = pytest.mark.sqlite_only


def migrate(data_dir, dsn, *extra, env=None):
    return subprocess.run([find_binary(PROG), "--data-dir", data_dir, "--dsn", dsn, *extra],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, **(env or {})))


def sqlite_value(path, sql):
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)
    try:
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()


def audit(m):
    st, doc = m.api("GET", "/api/v1/audit?limit=1000")
    assert st == 200, (st, doc)
    return doc["entries"]


def snapshot(m):
    """Everything the API shows of the store, for comparison across backends (but the
    audit log: reading a raw message adds to it)."""
    msgs = sorted(m.list_all(), key=lambda x: x["id"])
    out = {"list": msgs, "messages": {}, "raw": {}}
    for x in msgs:
        out["messages"][x["id"]] = m.get_message(x["id"])
        st, _, raw = m.http("GET", "/api/v1/messages/%s/raw" % x["id"])
        assert st == 200
        out["raw"][x["id"]] = raw
    for name, path in (("quarantines", "/api/v1/quarantines"), ("users", "/api/v1/users"),
                       ("slbl", "/api/v1/slbl?since=0"),
                       ("alice", "/api/v1/slbl/alice@corp.test"),
                       ("bob", "/api/v1/slbl/bob@corp.test"),
                       ("gateways", "/api/v1/gateways")):
        st, doc = m.api("GET", path)
        assert st == 200, (path, st, doc)
        out[name] = doc
    for g in out["gateways"]["gateways"]:
        st, doc = m.api("GET", "/api/v1/gateways/%s/mapping" % g["name"])
        assert st == 200, (g["name"], st, doc)
        out["mapping " + g["name"]] = doc
    return out


def fill(m, aio_sink):
    """Mail, states, accounts, a session, safelists and audit rows on m."""
    a = m.send("billing@example.jp", ["alice@corp.test", "bob@corp.test"],
               make_message("請求書のお知らせ", body="line\r\n\ttab \\ back\r\n"))
    b = m.send("x@example.jp", ["alice@corp.test"],
               make_attachment_message("with a file", [("報告.pdf", "application/pdf",
                                                        bytes(range(256)) * 40)]))
    c = m.send("y@example.jp", ["carol@corp.test"], make_message("to be deleted"))
    ids = [a, b, c] + [m.send("n%d@example.jp" % i, ["dave@corp.test"],
                              make_message("filler %d" % i)) for i in range(20)]
    st, doc = m.api("POST", "/api/v1/messages/%s/release" % a,
                    json={"recipients": ["alice@corp.test"]})
    assert st == 202, doc
    aio_sink.wait_count(1)
    wait_for(lambda: {r["address"]: r["state"] for r in m.get_message(a)["recipients"]}
             == {"alice@corp.test": "released", "bob@corp.test": "quarantined"},
             20, "alice released")
    # a release whose delivery fails stays queued, with its attempt counted
    aio_sink.stop()
    st, doc = m.api("POST", "/api/v1/messages/%s/release" % b,
                    json={"recipients": ["alice@corp.test"]})
    assert st == 202, doc
    db = os.path.join(m.data_dir, "lazaret.db")
    wait_for(lambda: sqlite_value(db, "SELECT coalesce(sum(attempts), 0) FROM deliveries") >= 1,
             20, "a failed delivery attempt")
    st, doc = m.api("POST", "/api/v1/messages/%s/delete" % c, json={})
    assert st in (200, 202), doc
    add_user(m, "opal", "operator-pw-1", "operator")
    add_user(m, "alice", "alice-pw-1", "enduser", ["alice@corp.test"])
    for safe in (["friend@example.jp"], ["friend@example.jp", "partner.example"]):
        st, doc = m.api("PUT", "/api/v1/slbl/alice@corp.test",
                        json={"safelist": safe, "blocklist": ["spam.example"]})
        assert st == 200, doc
    st, doc = m.api("PUT", "/api/v1/slbl/bob@corp.test",
                    json={"safelist": [], "blocklist": ["junk.example"]})
    assert st == 200, doc
    session = Client(m)
    assert session.login("opal", "operator-pw-1")[0] == 200
    # the gateway registry: a registered gateway that said hello
    st, doc = m.api("POST", "/api/v1/gateways", json={"name": "gw1", "address": "192.0.2.10",
                                                       "group": "tokyo"})
    assert st == 201, doc
    m.gateway_token = doc["token"]
    st, _, raw = m.http("POST", "/api/v1/gateway/hello", token=m.gateway_token,
                        body=b'{"name":"gw1","version":"0.1.0"}')
    assert st == 200, raw
    # its quarantine mapping and a finished migration (schema 19)
    st, doc = m.api("PUT", "/api/v1/gateways/gw1/mapping", json={"Legal": "Law", "Old": None})
    assert st == 200, doc
    st, _, raw = m.http("POST", "/api/v1/gateway/migration", token=m.gateway_token,
                        body=b'{"run":"2026-12-06T01:00:00Z","state":"done","total":3,'
                             b'"done":2,"failed":1}')
    assert st == 200, raw
    return ids, session


DAY_MS = 86400 * 1000


def spread_over_days(db, ids, days):
    """Moves message ids[i] i % days days back in time (its id, which carries the
    time, and received_at), as if the store had been filled over several days: the
    copy must then create the partitions of each of those days."""
    con = sqlite3.connect(db, timeout=10)
    try:
        for i, old in enumerate(ids):
            back = (i % days) * DAY_MS
            ms = int(old[:8] + old[9:13], 16) - back
            new = "%08x-%04x" % (ms >> 16, ms & 0xffff) + old[13:]
            con.execute("UPDATE messages SET id = ?, received_at = received_at - ?"
                        " WHERE id = ?", (new, back, old))
            for table in ("recipients", "attachments", "deliveries"):
                con.execute("UPDATE %s SET msg_id = ? WHERE msg_id = ?" % table, (new, old))
            ids[i] = new
        con.commit()
    finally:
        con.close()


def test_sqlite_store_moves_to_postgresql(start_manager, aio_sink, aio_sink_factory,
                                          database):  # noqa: F811
    m = start_manager(store__backend="sqlite", primary_host=aio_sink.host, retry_min="1s",
                      retry_max="2s")
    ids, session = fill(m, aio_sink)
    # the fillers over five days (a, b and c, with a queued delivery, stay today)
    m.stop()
    fillers = ids[3:]
    spread_over_days(os.path.join(m.data_dir, "lazaret.db"), fillers, 5)
    ids[3:] = fillers
    # a PVO release routed back to its gateway, for a rescan (schema 9), due far ahead
    con = sqlite3.connect(os.path.join(m.data_dir, "lazaret.db"), timeout=10)
    con.execute("INSERT INTO deliveries (msg_id, next_attempt_at, rcpts, gateway, rescan,"
                " copy) VALUES (?, ?, '[\"bob@corp.test\"]', 'gw1', 1, 0)", (ids[0], 2 ** 50))
    con.commit()
    con.close()
    m.start()
    before = snapshot(m)
    assert len(before["list"]) == len(ids)
    audit_before = audit(m)
    assert len(audit_before) >= 6
    m.stop()

    # a copy killed half-way (after messages, bodies, recipients) leaves nothing
    r = migrate(m.data_dir, database, env={"LAZARET_FAULT": "migrate_mid_copy"})
    assert r.returncode == 137, r.stdout + r.stderr
    assert "recipients: 24/24 rows copied" in r.stdout, r.stdout
    assert psql(database, "SELECT (SELECT count(*) FROM messages)"
                          " + (SELECT count(*) FROM bodies)"
                          " + (SELECT count(*) FROM recipients)") == "0"
    # and the same command runs again from the start
    r = migrate(m.data_dir, database, "--sample", "10")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr == "", r.stderr
    out = r.stdout
    assert "partitions: 5 days with messages" in out, out
    assert "messages: 23/23 rows copied" in out, out
    assert "verified rows outside the daily partitions: 0" in out, out
    assert "bodies: 23/23 rows copied" in out, out
    assert "verified recipients per quarantine and state: " in out, out
    assert "verified bodies: 10 sampled messages equal byte for byte" in out, out
    assert "verified delivery routes: " in out, out
    assert psql(database, "SELECT gateway, rescan, copy, rcpts FROM deliveries"
                          " WHERE gateway IS NOT NULL") == "gw1|t|f|{bob@corp.test}"
    assert out.rstrip().endswith("done: the PostgreSQL store is a verified copy of %s"
                                 % os.path.join(m.data_dir, "lazaret.db")), out
    assert psql(database, "SELECT count(*) FROM messages") == "23"
    # each day's messages, bodies and recipients sit in that day's partitions
    for table in ("messages", "bodies", "recipients"):
        assert psql(database, "SELECT count(DISTINCT tableoid) FROM %s" % table) == "5", table
        assert psql(database, "SELECT count(*) FROM %s_default" % table) == "0", table
    assert psql(database, "SELECT count(*) FROM messages m JOIN bodies b ON b.msg_id = m.id"
                          " AND b.tableoid::regclass::text = 'bodies_' || substr("
                          "m.tableoid::regclass::text, 10)") == "23"
    # the attempts counted before the stop (a retry may have come after the first)
    attempts = sqlite_value(os.path.join(m.data_dir, "lazaret.db"),
                            "SELECT sum(attempts) FROM deliveries"
                            " WHERE rcpts LIKE '%\"alice@corp.test\"%'")
    assert attempts >= 1
    assert psql(database, "SELECT count(*), sum(attempts) FROM deliveries"
                          " WHERE NOT leased AND rcpts = '{alice@corp.test}'") == "1|%d" % attempts

    m.apply({"store__backend": "postgresql", "store__dsn": database})
    m.start()
    assert audit(m) == audit_before
    after = snapshot(m)
    for key in before:
        assert after[key] == before[key], key
    # the queued delivery goes out from PostgreSQL once the next hop is back
    sink = aio_sink_factory(port=aio_sink.port)
    d = sink.wait_count(1, timeout=30)[0]
    assert d["rcpts"] == ["alice@corp.test"] and b"with a file" in d["data"], d["rcpts"]
    wait_for(lambda: m.get_message(ids[1])["recipients"][0]["state"] == "released", 20,
             "the queued release delivered")
    # the gateway's token made on SQLite still opens its hello
    st, _, raw = m.http("POST", "/api/v1/gateway/hello", token=m.gateway_token,
                        body=b'{"name":"gw1"}')
    assert st == 200, raw
    # the same password logs in; the session made on SQLite is still valid
    assert Client(m).login("alice", "alice-pw-1")[0] == 200
    assert Client(m).login("opal", "wrong-password")[0] == 401
    st, doc = session.call("GET", "/api/v1/session")
    assert st == 200 and doc["user"]["username"] == "opal", (st, doc)
    # new rows continue above the copied ones: a new message is listed first in
    # seq order, the safelist change feed goes on from the copied version
    new = m.send("late@example.jp", ["alice@corp.test"], make_message("after the move"))
    assert m.get_message(new)["subject"] == "after the move"
    assert int(psql(database, "SELECT seq FROM messages WHERE id = '%s'" % new)) == 24
    st, doc = m.api("PUT", "/api/v1/slbl/bob@corp.test",
                    json={"safelist": ["ok.example"], "blocklist": []})
    assert st == 200, doc
    st, feed = m.api("GET", "/api/v1/slbl?since=%d" % before["slbl"]["version"])
    assert st == 200 and feed["version"] == before["slbl"]["version"] + 1, feed
    assert [c["recipient"] for c in feed["changes"]] == ["bob@corp.test"], feed
    m.stop()

    # a second copy into the now filled database is refused; it is left as it was
    r = migrate(m.data_dir, database)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr == (
        "lazaret-migrate-store: the PostgreSQL database already holds Lazaret data "
        "(24 messages, 2 accounts, %d audit entries, 2 safelists, %s other rows): "
        "refusing to copy into it; give an empty database\n"
        % (int(psql(database, "SELECT count(*) FROM audit")),
           psql(database, "SELECT (SELECT count(*) FROM sessions)"
                          " + (SELECT count(*) FROM slbl_entries)"
                          " + (SELECT version FROM slbl_counter)"
                          " + (SELECT count(*) FROM deliveries)"
                          " + (SELECT count(*) FROM gateways)"))), r.stderr
    assert psql(database, "SELECT count(*) FROM messages") == "24"


def test_bad_dsn_and_store_in_use_are_refused(start_manager, database):  # noqa: F811
    m = start_manager(store__backend="sqlite")
    mid = m.send("s@example.jp", ["a@corp.test"], make_message("stays put"))
    # lazaretd running on the SQLite store: refused before anything is written
    r = migrate(m.data_dir, database)
    assert r.returncode == 1
    assert r.stderr == ("lazaret-migrate-store: the SQLite store %s is in use (is lazaretd "
                        "running?): stop lazaretd first\n"
                        % os.path.join(m.data_dir, "lazaret.db")), r.stderr
    assert psql(database, "SELECT count(*) FROM pg_tables WHERE tablename = 'messages'") == "0"
    m.stop()
    # a lazaretd on the PostgreSQL database: refused after the store's 10 s wait
    # for the owner lock, nothing copied
    on_pg = start_manager(store__backend="postgresql", store__dsn=database)
    r = migrate(m.data_dir, database)
    assert r.returncode == 1
    assert "store.pg_in_use" in r.stderr, r.stderr
    assert r.stderr.endswith("lazaret-migrate-store: the PostgreSQL database is in use "
                             "(another lazaretd has it open): stop it first\n"), r.stderr
    assert psql(database, "SELECT count(*) FROM messages") == "0"
    on_pg.stop()
    bad = "host=%s port=1 dbname=nothing connect_timeout=2" % m.workdir
    r = migrate(m.data_dir, bad)
    assert r.returncode == 1
    assert r.stderr.startswith("lazaret-migrate-store: cannot connect to PostgreSQL: "
                               "connection to server on socket \"%s/.s.PGSQL.1\" failed"
                               % m.workdir), r.stderr
    assert r.stdout == ""
    r = migrate(os.path.join(m.workdir, "nowhere"), database)
    assert r.returncode == 1
    assert r.stderr == ("lazaret-migrate-store: no SQLite store at %s/nowhere/lazaret.db: "
                        "No such file or directory\n" % m.workdir), r.stderr
    # the command line
    r = subprocess.run([find_binary(PROG), "--data-dir", m.data_dir], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2 and r.stderr.startswith("usage: lazaret-migrate-store "), r.stderr
    r = subprocess.run([find_binary(PROG), "--help"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0 and "--data-dir DIR" in r.stdout and "--dsn DSN" in r.stdout
    r = subprocess.run([find_binary(PROG), "--sample", "x", "--data-dir", "d", "--dsn", "x"],
                       capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stderr) == (2, PROG + ": --sample: a number up to 1000000\n")
    # the SQLite store is intact: the same lazaretd serves the message
    m.start()
    assert m.get_message(mid)["subject"] == "stays put"


def test_digest_state_and_used_links_survive_the_move(start_manager, aio_sink,
                                                      database):  # noqa: F811
    """Digest state counts in message sequence numbers: after the move the next digest
    holds only what came after the last one, and a used link stays used."""
    m = start_digest(start_manager, aio_sink, store__backend="sqlite")
    add_enduser(m, "taro", ["taro@corp.test"])
    m.send("a@bad.example", ["taro@corp.test"], make_message("first one"))
    second = m.send("b@bad.example", ["taro@corp.test"], make_message("second one"))
    m.send("k@bad.example", ["taro@corp.test"], make_message("kept one"))
    send_now(m, "taro@corp.test")
    wait_for(lambda: len(digests(aio_sink)) == 1, 15, "the first digest")
    text, _ = parts(parse(digests(aio_sink)[0]["data"]))
    release_first, _ = entry_links(text, "first one")
    release_second, _ = entry_links(text, "second one")
    assert "kept one" in text
    assert page(release_first, "POST")[0] == 200
    wait_for(lambda: aio_sink.count() == 2, 15, "the released message")
    m.stop()

    r = migrate(m.data_dir, database)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "verified digest_state: 1|" in r.stdout and "verified used_tokens: 1" in r.stdout
    m.apply({"store__backend": "postgresql", "store__dsn": database})
    m.start()
    # the used link is still used; the other one works (digest.key stays in data_dir)
    assert page(release_first, "POST")[0] == 410
    assert page(release_second, "POST")[0] == 200
    wait_for(lambda: states(m, second) == {"taro@corp.test": "released"}, 15, "released")
    # nothing new since the last digest: none is sent
    send_now(m, "taro@corp.test")
    assert stays(lambda: len(digests(aio_sink)) == 1, t(1.0))
    m.send("c@bad.example", ["taro@corp.test"], make_message("third one"))
    send_now(m, "taro@corp.test")
    wait_for(lambda: len(digests(aio_sink)) == 2, 15, "the second digest")
    text, _ = parts(parse(digests(aio_sink)[1]["data"]))
    assert "third one" in text and "kept one" not in text, text


def test_pvo_quarantines_move_to_postgresql(start_manager, database):  # noqa: F811
    """PVO messages with their memberships, and the quarantines' settings and operators."""
    from test_pvo import pvo_message, pvo_send, register_gateway, stored_id
    m = start_manager(store__backend="sqlite")
    register_gateway(m)  # the registry moves too: the gateway is let in after the move
    add_user(m, "opal", "operator-pw-1", "operator")
    st, doc = m.api("POST", "/api/v1/quarantines",
                    json={"name": "Finance", "delete_after": "3d", "default_action": "release",
                          "overflow_exempt": True, "operators": ["opal"]})
    assert st == 201, doc
    st, doc = m.api("PATCH", "/api/v1/quarantines/virus", json={"delete_after": "30d"})
    assert st == 200, doc
    two = stored_id(*pvo_send(m, pvo_message([
        "X-Lazaret-Quarantine: Finance; reason=\"rule 1\"",
        "X-Lazaret-Quarantine: virus; reason=EICAR; expires=2099-01-01T00:00:00Z",
        "X-Lazaret-Origin-Id: gw-77"])))
    one = stored_id(*pvo_send(m, pvo_message(["X-Lazaret-Quarantine: Legal"])))
    spam = m.send("s@example.jp", ["user@corp.test"], make_message("spam too"))
    # a membership sent back for rescanning (schema 17)
    m.stop()
    con = sqlite3.connect(os.path.join(m.data_dir, "lazaret.db"), timeout=10)
    con.execute("UPDATE memberships SET rescan = 1, rescanned_at = 1764900000000"
                " WHERE msg_id = ?", (one,))
    con.commit()
    con.close()
    m.start()
    before = snapshot(m)
    (legal,) = before["messages"][one]["quarantines"]
    assert (legal["rescan"], legal["rescanned_at"]) == ("pending", "2025-12-05T02:00:00Z")
    m.stop()

    r = migrate(m.data_dir, database)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "memberships: 3/3 rows copied" in r.stdout, r.stdout
    for what in ("quarantine settings", "quarantine_operators", "memberships"):
        assert "verified %s: " % what in r.stdout, (what, r.stdout)
    assert psql(database, "SELECT count(*) FROM memberships_default") == "0"

    m.apply({"store__backend": "postgresql", "store__dsn": database})
    m.start()
    after = snapshot(m)
    for key in before:
        assert after[key] == before[key], key
    assert [q["name"] for q in m.get_message(two)["quarantines"]] == ["Finance", "virus"]
    assert {x["id"] for x in m.list_all("quarantine=Legal")} == {one}
    assert {x["id"] for x in m.list_all("quarantine=spam")} == {spam}
    # a retry of a transfer made before the move is still recognised
    again = pvo_message(["X-Lazaret-Quarantine: Finance; reason=\"rule 1\"",
                         "X-Lazaret-Quarantine: virus; reason=EICAR",
                         "X-Lazaret-Origin-Id: gw-77"])
    assert stored_id(*pvo_send(m, again)) == two
    assert len(m.list_all()) == 3


def test_second_factors_levels_and_rollups_move_to_postgresql(start_manager,
                                                              database):  # noqa: F811
    """What came after the PVO quarantines moves too: an enrolled second factor with
    its recovery codes, the centralization levels, a gateway's running state and the
    reports' rollups; the manager on PostgreSQL answers the same for each."""
    m = start_manager(store__backend="sqlite")
    add_user(m, "opal", "operator-pw-1", "operator")
    st, doc = m.api("POST", "/api/v1/gateways", json={"name": "gw1", "address": "192.0.2.10",
                                                       "group": "tokyo", "cluster": "jp"})
    assert st == 201, doc
    st, doc = m.api("PUT", "/api/v1/levels/cluster/jp",
                    json={"pvo": True, "filters": "# 請求書\n"})
    assert st == 200, doc
    st, doc = m.api("PUT", "/api/v1/levels/group/tokyo", json={"tracking": False})
    assert st == 200, doc
    st, levels_before = m.api("GET", "/api/v1/levels")
    assert st == 200, levels_before
    m.stop()
    hour = (int(time.time()) // 3600 - 1) * 3600 * 1000
    day = hour // DAY_MS * DAY_MS
    con = sqlite3.connect(os.path.join(m.data_dir, "lazaret.db"), timeout=10)
    con.execute("INSERT INTO user_totp (username, secret, created_at, enrolled_at, last_step)"
                " VALUES ('opal', 'JBSWY3DPEHPK3PXP', 1000, 2000, 7)")
    con.executemany("INSERT INTO user_recovery_codes (username, code_hash, used_at)"
                    " VALUES ('opal', ?, ?)", [("h1", 0), ("h2", 0), ("h3", 3000)])
    con.execute("UPDATE gateways SET central = 5, outbreak_version = '2026-12-01'")
    rows = [("overview", g, b, "gw1", "", 7, 4, 2, 0, 1, 0, 0)
            for g, b in ((0, hour), (1, day))]
    rows += [("incoming_domains", g, b, "gw1", "例え.jp", 3, 1, 2, 0, 0, 0, 0)
             for g, b in ((0, hour), (1, day))]
    con.executemany("INSERT INTO report_rollups (report, gran, bucket, gateway, key, incoming,"
                    " clean, spam, suspect, virus, content_filter, count)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    # the all-gateway rows the manager keeps beside them (one gateway: the same sums)
    con.executemany("INSERT INTO report_totals (report, gran, bucket, key, incoming,"
                    " clean, spam, suspect, virus, content_filter, count)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [r[:3] + r[4:] for r in rows])
    # the system_capacity report's hours
    con.executemany("INSERT INTO capacity_hours (gateway, bucket, samples, received, relayed,"
                    " connections, current_sum, current_max, load_sum, load_max, memory_max,"
                    " backlog_max) VALUES ('gw1', ?, 60, ?, 40, 30, 90, 5, 1500, 75, ?, 12)",
                    [(hour - 3600000, 50, 52428800), (hour, 45, 62914560)])
    con.commit()
    con.close()

    r = migrate(m.data_dir, database)
    assert r.returncode == 0, r.stdout + r.stderr
    for what, n in (("user_totp", 1), ("user_recovery_codes", 3), ("report_rollups", 4),
                    ("report_totals", 4), ("levels", 2), ("capacity_hours", 2)):
        assert "%s: %d/%d rows copied" % (what, n, n) in r.stdout, (what, r.stdout)
        assert "verified %s: " % what in r.stdout, (what, r.stdout)
    assert "verified gateway states: " in r.stdout, r.stdout
    assert psql(database, "SELECT secret, enrolled_at, last_step FROM user_totp") == \
        "JBSWY3DPEHPK3PXP|2000|7"
    assert psql(database, "SELECT central, outbreak_version FROM gateways") == "5|2026-12-01"
    assert psql(database, "SELECT sum(received), max(memory_max) FROM capacity_hours") == \
        "95|62914560"

    m.apply({"store__backend": "postgresql", "store__dsn": database})
    m.start()
    # the levels and what each gateway ends up with are the same; what the
    # gateway said it runs with (central = 5) is kept
    st, levels_after = m.api("GET", "/api/v1/levels")
    assert st == 200, levels_after
    gw = levels_after["gateways"][0]
    assert gw.pop("centralized") == {"pvo": True, "reporting": False, "tracking": True}, gw
    assert gw.pop("outbreak_rules_version") == "2026-12-01", gw
    was = levels_before["gateways"][0]
    was.pop("centralized")
    was.pop("outbreak_rules_version")
    assert {k for k in set(was) | set(gw) if was.get(k) != gw.get(k)} == set(), (was, gw)
    assert levels_after == levels_before, (levels_before, levels_after)
    # the enrolled operator is still asked for the second factor
    st, doc = Client(m).login("opal", "operator-pw-1")
    assert st == 401 and doc["second_factor"] == "totp", (st, doc)
    # the reports read the copied rollups
    st, doc = m.api("GET", "/api/v1/reports/overview?period=day&gateway=gw1")
    assert st == 200 and doc["totals"]["incoming"] == 7 and doc["totals"]["virus"] == 1, doc
    st, doc = m.api("GET", "/api/v1/reports/incoming_domains?period=week")
    assert st == 200 and [(x["key"], x["incoming"]) for x in doc["rows"]] == [("例え.jp", 3)], doc
    st, doc = m.api("GET", "/api/v1/reports/overview?period=day")
    assert st == 200 and doc["totals"]["incoming"] == 7, doc


def test_report_schedules_and_the_archive_move_to_postgresql(start_manager,
                                                             database):  # noqa: F811
    m = start_manager(store__backend="sqlite")
    ids = []
    for fmt in ("pdf", "csv"):
        st, doc = m.api("POST", "/api/v1/report-schedules", {
            "report": "overview", "period": "day", "every": "weekly", "format": fmt,
            "recipients": ["boss@example.com"], "at": "07:45", "time_zone": "Asia/Tokyo"})
        assert st == 201, doc
        ids.append(doc["id"])
    st, arch = m.api("POST", "/api/v1/report-schedules/%d/run" % ids[0], timeout=30)
    assert st == 201, arch
    st, _, pdf = m.http("GET", "/api/v1/report-archive/%d" % arch["id"])
    assert st == 200 and pdf.startswith(b"%PDF-")
    st, before = m.api("GET", "/api/v1/report-schedules")
    assert before["schedules"][0]["at"] == "07:45", before
    wait_for(lambda: m.api("GET", "/api/v1/report-archive")[1]["reports"][0]["mail"]["tries"]
             >= 1, 20, "the copy's mail tried")
    st, archive_before = m.api("GET", "/api/v1/report-archive")
    m.stop()

    r = migrate(m.data_dir, database)
    assert r.returncode == 0, r.stdout + r.stderr
    for what, n in (("report_schedules", 2), ("report_archive", 1)):
        assert "%s: %d/%d rows copied" % (what, n, n) in r.stdout, (what, r.stdout)
        assert "verified %s: " % what in r.stdout, (what, r.stdout)

    m.apply({"store__backend": "postgresql", "store__dsn": database})
    m.start()
    st, after = m.api("GET", "/api/v1/report-schedules")
    assert (st, after) == (200, before)
    # the copies' mail state too
    st, archive_after = m.api("GET", "/api/v1/report-archive")
    assert archive_after == archive_before
    st, _, body = m.http("GET", "/api/v1/report-archive/%d" % arch["id"])
    assert st == 200 and body == pdf
    # new ids go on after the copied ones
    st, doc = m.api("POST", "/api/v1/report-schedules", {
        "report": "tls", "period": "week", "every": "daily", "recipients": ["a@example.com"]})
    assert st == 201 and doc["id"] > max(ids), doc
    st, doc = m.api("POST", "/api/v1/report-schedules/%d/run" % ids[1], timeout=30)
    assert st == 201 and doc["id"] > arch["id"], doc


def test_a_pending_migration_notice_moves_and_is_sent_once(start_manager, aio_sink_factory,
                                                           database):  # noqa: F811
    """A gateway's "done" mail still pending (its relay down) moves with the store, and
    the manager started on PostgreSQL sends it, once."""
    relay = aio_sink_factory(start=False)
    m = start_manager(store__backend="sqlite", primary_host=relay.host,
                      notifications__from="lazaret@corp.test", start=False)
    # tried again every second (report_sched.h): due at once when it starts again
    m.next_env = {"LAZARET_FAULT": "migration_notice_fast"}
    m.start()
    st, doc = m.api("POST", "/api/v1/gateways", json={"name": "gw1", "address": "192.0.2.10"})
    assert st == 201, doc
    body = {"run": "2026-12-06T01:00:00Z", "state": "done", "total": 4, "done": 4,
            "failed": 0, "notify": "ops@corp.test"}
    st, doc = m.api("POST", "/api/v1/gateway/migration", body, token=doc["token"])
    assert st == 200, doc
    wait_for(lambda: "migration_notice.deferred" in m.log_text(), 20, "a deferred attempt")
    st, doc = m.api("GET", "/api/v1/gateways")
    before = doc["gateways"][0]["migration"]
    assert before["notice"]["state"] == "pending" and before["notice"]["tries"] >= 1, before
    m.stop()

    r = migrate(m.data_dir, database)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "migration_notices: 1/1 rows copied" in r.stdout, r.stdout
    assert "verified migration_notices: " in r.stdout, r.stdout

    relay.start()
    m.apply({"store__backend": "postgresql", "store__dsn": database})
    m.start()
    relay.wait_count(1, timeout=20)
    assert stays(lambda: relay.count() == 1, t(3))
    assert relay.messages[0]["rcpts"] == ["ops@corp.test"]
    wait_for(lambda: m.api("GET", "/api/v1/gateways")[1]["gateways"][0]["migration"]
             ["notice"]["state"] == "sent", 10, "the notice marked sent")
    st, doc = m.api("GET", "/api/v1/gateways")
    after = doc["gateways"][0]["migration"]
    assert after["notice"]["tries"] >= 2 and after["notice"]["reply"] is None, after
    assert {k: v for k, v in after.items() if k != "notice"} == \
        {k: v for k, v in before.items() if k != "notice"}

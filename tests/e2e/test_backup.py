"""Backup and restore: `lazaretctl backup FILE` from a running manager while mail keeps
arriving, `lazaretd --restore FILE` into an empty data_dir on a replacement manager,
and the [backup] schedule with its retention.

Real lazaretd processes on loopback, the real lazaretctl, real SMTP clients and a
real SMTP sink for releases. The replacement is compared with the original through
the API: every message byte for byte, every recipient's state, the safelists, the
accounts, the gateway registry (a gateway's token still opens its routes); a
message released before the backup is not delivered again. Refused archives
(corrupt, truncated, foreign, crafted) each give their exact message and exit
status, and leave data_dir empty.
"""

import hashlib
import json
import os
import stat
import struct
import subprocess
import threading
import time
import urllib.parse

import pytest

from conftest import _new_pg_database, find_binary
from e2e_helpers import make_message, stays, t, wait_for
from test_lazaretctl import ctl
from test_sessions import Client, add_user
from test_slbl import get_lists, put_lists

PG = os.environ.get("LAZARET_E2E_BACKEND") == "postgresql"
BACKEND = "postgresql" if PG else "sqlite"


def backup(m, path):
    rc, out, err = ctl(m, "backup", path)
    assert rc == 0, (rc, out, err)
    return out.decode("utf-8")


def run_restore(m, archive):
    """lazaretd -c CONF --restore ARCHIVE that must fail: (exit status, stderr)."""
    m.write_config()
    r = subprocess.run([m.binary, "-c", m.conf_path, "--restore", archive],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=t(60))
    return r.returncode, r.stderr.decode("utf-8", "replace")


def data_files(m):
    try:
        return sorted(os.listdir(m.data_dir))
    except FileNotFoundError:
        return []


def message_view(m, mid):
    """What the API shows of one message: its detail and its raw bytes."""
    doc = m.get_message(mid)
    st, _, raw = m.http("GET", "/api/v1/messages/%s/raw" % mid)
    assert st == 200, st
    return doc, raw


def gateways(m):
    st, doc = m.api("GET", "/api/v1/gateways")
    assert st == 200, (st, doc)
    return [{k: v for k, v in g.items() if k != "last_seen"} for g in doc["gateways"]]


def users(m):
    st, doc = m.api("GET", "/api/v1/users")
    assert st == 200, (st, doc)
    return doc


def archive_bytes(members, header=None, version=1, checksum=True, magic=b"LZBACKUP"):
    """An archive in the documented format, for crafted inputs."""
    h = {"format": version, "backend": BACKEND, "created_at": 1, "created": "x",
         "lazaret_version": "0.1.0", "manager": "x", "database": False}
    h.update(header or {})
    hb = json.dumps(h).encode()
    out = magic + struct.pack(">II", version, len(hb)) + hb
    for name, data in members:
        nb = name.encode()
        out += b"F" + struct.pack(">H", len(nb)) + nb + struct.pack(">Q", len(data)) + data
    out += b"E"
    return out + (hashlib.sha256(out).digest() if checksum else b"\0" * 32)


# ---- the replacement manager ---------------------------------------------------

def test_backup_during_ingest_restores_a_replacement(start_manager, aio_sink_factory,
                                                     tmp_path):
    """On PostgreSQL the database's part is pg_dump's, taken during the same burst and
    restored with pg_restore into a new database for the replacement."""
    sink1 = aio_sink_factory()
    m1 = start_manager(primary_host=sink1.host)
    sent = {}
    for i in range(30):
        raw = make_message("バックアップ %d" % i, body=("本文 %d\r\n" % i) * (i + 1),
                           extra_headers=[("X-Bin", "%08x" % (i * 7919))])
        rcpts = ["u%d@corp.test" % (i % 4), "shared@corp.test"]
        sent[m1.send("s%d@example.jp" % i, rcpts, raw)] = raw
    ids = sorted(sent)
    released, deleted = ids[:5], ids[5:10]
    for mid in released:
        st, doc = m1.api("POST", "/api/v1/messages/%s/release" % mid)
        assert st == 202, (st, doc)
    for mid in deleted:
        st, doc = m1.api("POST", "/api/v1/messages/%s/delete" % mid)
        assert st == 200, (st, doc)
    sink1.wait_count(5)
    wait_for(lambda: all({r["state"] for r in m1.get_message(mid)["recipients"]} ==
                         {"released"} for mid in released), 20, "the releases to end")
    put_lists(m1, "u1@corp.test", ["friend@example.jp"], ["spam@example.net"])
    put_lists(m1, "shared@corp.test", ["*@partner.example"], [])
    add_user(m1, "op1", "operator-pass-1", "operator")
    add_user(m1, "end1", "enduser-pass-1", "enduser", ["u2@corp.test"])
    st, doc = m1.api("POST", "/api/v1/gateways", json={"name": "gw1",
                                                        "address": "127.0.0.1",
                                                        "group": "tokyo"})
    assert st == 201, (st, doc)
    gw_token = doc["token"]
    # The gateway pushed tracking events; it says 4 more wait.
    batch = json.dumps({"backlog": 4, "events": [
        {"seq": n, "at": 1764892800000 + n, "type": "connection",
         "detail": {"client": "198.51.100.%d" % n}} for n in (1, 2, 3)]}).encode()
    st, _, raw = m1.http("POST", "/api/v1/gateway/events", token=gw_token, body=batch)
    assert (st, json.loads(raw)) == (200, {"acked": 3, "stored": 3}), raw

    # A burst of ingest while the backup runs.
    stop = threading.Event()
    burst = {}

    def ingest():
        n = 0
        while not stop.is_set():
            raw = make_message("burst %d" % n, body="burst body %d\r\n" % n)
            burst[m1.send("b%d@example.jp" % n, ["u3@corp.test"], raw)] = raw
            n += 1

    th = threading.Thread(target=ingest)
    th.start()
    wait_for(lambda: len(burst) >= 5, 20, "the burst to start")
    before = set(burst)
    archive = str(tmp_path / "lazaret.lzb")
    out = backup(m1, archive)
    if PG:
        dump = str(tmp_path / "lazaret.pgdump")
        r = subprocess.run(["pg_dump", "-Fc", "-f", dump, "-d", m1.sections["store"]["dsn"]],
                           capture_output=True, text=True, timeout=t(120))
        assert r.returncode == 0, r.stderr
    wait_for(lambda: len(burst) >= len(before) + 5, 20, "the burst to go on after the backup")
    stop.set()
    th.join(timeout=t(30))
    sent.update(burst)

    assert out.startswith("wrote %s: %d bytes, sha256 " % (archive, os.path.getsize(archive)))
    if PG:
        assert "covers: data_dir's files only." in out, out
    else:
        assert "covers: the store's database (sqlite: messages and bodies" in out, out
    assert stat.S_IMODE(os.stat(archive).st_mode) == 0o600
    with open(archive, "rb") as f:
        data = f.read()
    assert data[:8] == b"LZBACKUP"
    assert hashlib.sha256(data[:-32]).digest() == data[-32:]
    assert "backup.done" in m1.log_text()
    st, doc = m1.api("GET", "/api/v1/audit?limit=100")
    assert st == 200 and "backup" in [e["action"] for e in doc["entries"]], doc

    # The replacement: another data_dir, another release sink.
    sink2 = aio_sink_factory()
    overrides = {}
    if PG:
        dsn = _new_pg_database()
        r = subprocess.run(["pg_restore", "--exit-on-error", "-d", dsn, dump],
                           capture_output=True, text=True, timeout=t(120))
        assert r.returncode == 0, r.stderr
        overrides["store__dsn"] = dsn
    m2 = start_manager(start=False, primary_host=sink2.host, **overrides)
    m2.next_args = ["--restore", archive]
    m2.start()
    assert "lazaretd: restored %s (%s, taken " % (archive, BACKEND) in m2.log_text()
    # The audit log up to the backup.
    st, a1 = m1.api("GET", "/api/v1/audit?limit=1000")
    st2, a2 = m2.api("GET", "/api/v1/audit?limit=1000")
    assert (st, st2) == (200, 200)
    # (on PostgreSQL pg_dump came after the backup's own row, on SQLite before it)
    assert [e for e in a2["entries"] if e["action"] != "backup"] == \
        [e for e in a1["entries"] if e["action"] != "backup"]
    assert {"release", "delete", "user_create", "gateway_add"} <= \
        {e["action"] for e in a2["entries"]}, a2

    listed = {x["id"] for x in m2.list_all()}
    assert set(ids) <= listed, "a message from before the backup is missing"
    assert before <= listed, "a burst message acknowledged before the backup is missing"
    assert listed <= set(sent), "the replacement holds a message never sent"
    # Every message byte for byte and every state as the original shows them.
    for mid in sorted(listed):
        d1, raw1 = message_view(m1, mid)
        d2, raw2 = message_view(m2, mid)
        assert raw2 == raw1 == sent[mid], mid
        assert d2 == d1, mid
    assert {x["id"] for x in m2.list_all("state=deleted")} == \
        {x["id"] for x in m1.list_all("state=deleted")} & listed
    assert get_lists(m2, "u1@corp.test") == get_lists(m1, "u1@corp.test")
    assert get_lists(m2, "shared@corp.test") == get_lists(m1, "shared@corp.test")
    # The subject index came along: "バックアップ 1" and "バックアップ 10".."19".
    q = "subject=" + urllib.parse.quote("バックアップ 1")
    hits = {x["id"] for x in m2.list_all(q)}
    assert len(hits) == 11 and hits == {x["id"] for x in m1.list_all(q)}, hits
    assert users(m2) == users(m1)
    assert gateways(m2) == gateways(m1)
    c = Client(m2)
    assert c.login("op1", "operator-pass-1")[0] == 200
    # The gateway's events came along: a replay of its batch stores nothing twice.
    st, _, raw = m2.http("POST", "/api/v1/gateway/events", token=gw_token, body=batch)
    assert (st, json.loads(raw)) == (200, {"acked": 3, "stored": 0}), raw
    # The gateway's token opens its routes on the replacement.
    st, _, raw = m2.http("POST", "/api/v1/gateway/hello", body={"name": "gw1"},
                         token=gw_token)
    assert st == 200, (st, raw)

    # Released before the backup: not delivered again. A release now goes out once.
    assert stays(lambda: sink2.count() == 0, t(3))
    todo = ids[10]
    st, doc = m2.api("POST", "/api/v1/messages/%s/release" % todo)
    assert st == 202, (st, doc)
    got = sink2.wait_count(1)
    assert got[0]["data"].endswith(sent[todo])
    assert stays(lambda: sink2.count() == 1, t(2))
    assert sink1.count() == 5


# ---- refused archives ------------------------------------------------------------

def test_restore_refuses_bad_archives(start_manager, tmp_path):
    m1 = start_manager()
    m1.send("a@example.jp", ["u@corp.test"], make_message("one"))
    good = str(tmp_path / "good.lzb")
    backup(m1, good)
    with open(good, "rb") as f:
        data = f.read()

    def write(name, content):
        p = str(tmp_path / name)
        with open(p, "wb") as f:
            f.write(content)
        return p

    flipped = bytearray(data)
    flipped[len(data) - 34] ^= 0x55  # the last byte of the last member (digest.key)
    corrupt = write("corrupt.lzb", bytes(flipped))
    truncated = write("truncated.lzb", data[:len(data) // 2])
    foreign = write("foreign.tar", b"ustar\0" + b"\0" * 500)
    empty = write("empty.lzb", b"")
    traversal = write("traversal.lzb", archive_bytes([("../escaped", b"x")]))
    hidden = write("hidden.lzb", archive_bytes([(".restore-x", b"x")]))
    newer = write("newer.lzb", archive_bytes([], version=2))
    other = "postgresql" if not PG else "sqlite"
    wrong_backend = write("backend.lzb", archive_bytes([], header={"backend": other}))
    cases = [
        (corrupt, 4, "%s is corrupt: its SHA-256 checksum does not match its content"
         % corrupt),
        (truncated, 5, "%s is truncated: it ends at byte %d, before its checksum"
         % (truncated, len(data) // 2)),
        (foreign, 3, "%s is not a Lazaret backup (no LZBACKUP signature)" % foreign),
        (empty, 3, "%s is not a Lazaret backup (no LZBACKUP signature)" % empty),
        (traversal, 4, "%s is corrupt: a member's name is not a plain file name (refused: "
         "it could point outside data_dir)" % traversal),
        (hidden, 4, "%s is corrupt: a member's name is not a plain file name (refused: "
         "it could point outside data_dir)" % hidden),
        (newer, 6, "%s has backup format version 2; this lazaretd reads version 1" % newer),
        (wrong_backend, 6, "%s is a backup of a %s store; this configuration uses "
         "[store] backend = %s" % (wrong_backend, other, BACKEND)),
        (str(tmp_path / "missing.lzb"), 1, "cannot read %s: No such file or directory"
         % (tmp_path / "missing.lzb")),
    ]
    m2 = start_manager(start=False)
    # A data_dir whose parents do not exist yet is made, as a start would.
    m2.apply({"manager__data_dir": os.path.join(m2.workdir, "new", "parents", "data")})
    m2.data_dir = m2.sections["manager"]["data_dir"]
    for path, code, message in cases:
        rc, err = run_restore(m2, path)
        assert (rc, err) == (code, "lazaretd: restore refused: %s\n" % message), path
        assert data_files(m2) == [], (path, data_files(m2))
    assert not os.path.exists(str(tmp_path / "escaped"))
    assert not os.path.exists(os.path.join(m2.workdir, "escaped"))

    # A data_dir with anything in it is never overwritten.
    os.makedirs(m2.data_dir, exist_ok=True)
    write_into = os.path.join(m2.data_dir, "keep.txt")
    with open(write_into, "w") as f:
        f.write("mine")
    rc, err = run_restore(m2, good)
    assert (rc, err) == (7, "lazaretd: restore refused: data_dir %s is not empty: a "
                         "restore goes into an empty data_dir only\n" % m2.data_dir)
    assert data_files(m2) == ["keep.txt"]


def test_backup_route_is_for_admins_only(start_manager, tmp_path):
    m = start_manager()
    st, _, raw = m.http("POST", "/api/v1/backup", token=None)
    assert st == 401, raw
    st, _, raw = m.http("POST", "/api/v1/backup", token="wrong")
    assert st == 401, raw
    add_user(m, "op1", "operator-pass-1", "operator")
    c = Client(m)
    assert c.login("op1", "operator-pass-1")[0] == 200
    st, doc = c.call("POST", "/api/v1/backup")
    assert (st, doc["error"]["code"]) == (403, "forbidden"), doc
    # A cross-site form post with an admin's session is refused before anything runs.
    add_user(m, "adm1", "admin-pass-12", "admin")
    a = Client(m)
    assert a.login("adm1", "admin-pass-12")[0] == 200
    st, _, raw = m.http("POST", "/api/v1/backup", token=None,
                        headers={"Cookie": a.cookie, "X-CSRF-Token": a.csrf,
                                 "Origin": "https://evil.example"})
    assert st == 403, raw
    assert "backup.start" not in m.log_text()
    # lazaretctl never overwrites a file.
    p = tmp_path / "exists.lzb"
    p.write_bytes(b"keep")
    rc, out, err = ctl(m, "backup", str(p))
    assert rc == 1 and err == "lazaretctl: cannot create %s: File exists (a backup never " \
        "overwrites a file)\n" % p, err
    assert p.read_bytes() == b"keep"
    rc, out, err = ctl(m, "backup", str(tmp_path / "x.lzb"), token="wrong-token")
    assert rc == 1 and "HTTP 401" in err, err
    assert not (tmp_path / "x.lzb").exists()


def test_backup_says_what_it_covers(start_manager, tmp_path):
    """On PostgreSQL the archive holds data_dir's files; the database is the DBA's
    (pg_dump, pgBackRest). A restore on the same database gives a working manager."""
    m1 = start_manager()
    mid = m1.send("a@example.jp", ["u@corp.test"], make_message("covered"))
    # What a backup cut short by a crash left behind goes with the next one.
    stale = os.path.join(m1.data_dir, ".backup-0123456789abcdef.db")
    with open(stale, "wb") as f:
        f.write(b"half a copy")
    archive = str(tmp_path / "a.lzb")
    out = backup(m1, archive)
    assert not os.path.exists(stale)
    assert "backup.stale_removed file=%s" % stale in m1.log_text()
    if PG:
        assert "covers: data_dir's files only. The postgresql database is NOT in this " \
            "file: back it up with pg_dump or pgBackRest (docs/OPERATIONS.md)" in out, out
    else:
        assert "covers: the store's database (sqlite: " in out, out
    overrides = {}
    if PG:
        m1.stop()
        overrides = {"store__dsn": m1.sections["store"]["dsn"]}
    m2 = start_manager(start=False, **overrides)
    m2.next_args = ["--restore", archive]
    m2.start()
    assert data_files(m2) == (["digest.key"] if PG else
                              ["digest.key", "lazaret.db", "lazaret.db-shm", "lazaret.db-wal"])
    for n in data_files(m2):
        assert stat.S_IMODE(os.stat(os.path.join(m2.data_dir, n)).st_mode) & 0o077 == 0, n
    assert m2.get_message(mid)["id"] == mid
    if PG:
        assert "lazaretd: the archive has no database: restore PostgreSQL's own backup " \
            "(pg_restore, pgBackRest) before the manager serves" in m2.log_text()


# ---- the schedule ----------------------------------------------------------------

def test_scheduled_backups_keep_the_newest(start_manager, tmp_path):
    bdir = str(tmp_path / "backups")
    m = start_manager(backup__dir=bdir, backup__every="1s", backup__keep=2)
    mid = m.send("a@example.jp", ["u@corp.test"], make_message("scheduled"))
    seen = set()

    def archives():
        names = sorted(n for n in os.listdir(bdir) if n.endswith(".lzb")) \
            if os.path.isdir(bdir) else []
        seen.update(names)
        return names

    wait_for(lambda: len(archives()) >= 2 and len(seen) >= 4, t(30),
             "four scheduled archives")
    names = archives()
    assert len(names) == 2, names
    assert names == sorted(seen)[-len(names):], (names, sorted(seen))
    for n in names:
        assert n.startswith("lazaret-") and n.endswith("Z.lzb"), n
        p = os.path.join(bdir, n)
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(bdir).st_mode) == 0o700
    assert "backup.pruned" in m.log_text()
    assert m.metric("lazaret_backups_total") >= 4
    assert m.metric("lazaret_backup_failures_total") == 0
    m.stop()
    # The newest one restores. The replacement backs up hourly into the same folder:
    # the newest archive there is two hours old, so its first backup is due at once.
    newest = os.path.join(bdir, archives()[-1])
    overrides = {"store__dsn": m.sections["store"]["dsn"]} if PG else {}
    m2 = start_manager(start=False, backup__dir=bdir, backup__every="1h", backup__keep=10,
                       **overrides)
    m2.next_args = ["--restore", newest]
    for n in archives():
        old = time.time() - 2 * 3600
        os.utime(os.path.join(bdir, n), (old, old))
    m2.start()
    assert m2.get_message(mid)["id"] == mid
    wait_for(lambda: len(archives()) == 3, t(20), "the overdue backup")
    assert m2.metric("lazaret_backups_total") == 1
    # Restarted now, with a fresh archive: the next is an hour away.
    m2.restart()
    assert stays(lambda: len(archives()) == 3, t(3))
    assert m2.metric("lazaret_backups_total") == 0


def test_restore_is_lazaretd_s_only(workdir):
    gw = find_binary("lazaret-gw")
    r = subprocess.run([gw, "-c", os.path.join(workdir, "gw.conf"), "--restore", "x.lzb"],
                       capture_output=True, text=True, timeout=t(30))
    assert r.returncode == 2 and r.stderr.startswith("usage: lazaret-gw"), r.stderr


def test_backup_config_errors(start_manager):
    m = start_manager(start=False)
    m.apply({"backup__dir": m.data_dir, "backup__every": "0"})
    m.write_config()
    r = subprocess.run([m.binary, "-c", m.conf_path, "--check-config"],
                       capture_output=True, text=True, timeout=t(30))
    assert r.returncode == 1
    assert "[backup] dir: must not be [manager] data_dir itself" in r.stderr, r.stderr
    assert "[backup] every:" in r.stderr, r.stderr


def test_backup_over_https_restores(start_manager, tmp_path):
    """The archive goes out from a file as the TLS connection drains: several MB of
    hardly compressible bodies arrive whole and restore."""
    from test_https import https_manager
    m1 = https_manager(start_manager)
    sent = {}
    for i in range(6):
        raw = make_message("big %d" % i, body="".join(
            "%s\r\n" % os.urandom(38).hex() for _ in range(8000)))
        sent[m1.send("a@example.jp", ["u@corp.test"], raw)] = raw
    archive = str(tmp_path / "tls.lzb")
    rc, out, err = ctl(m1, "backup", archive, "--cacert", m1.pki.good.ca)
    assert rc == 0, err
    size = os.path.getsize(archive)
    assert out.decode().startswith("wrote %s: %d bytes" % (archive, size))
    if not PG:
        assert size > 2 * 1024 * 1024, size
    overrides = {}
    if PG:
        m1.stop()
        overrides = {"store__dsn": m1.sections["store"]["dsn"]}
    m2 = start_manager(start=False, **overrides)
    m2.next_args = ["--restore", archive]
    m2.start()
    for mid, raw in sent.items():
        assert message_view(m2, mid)[1] == raw


def test_backup_is_one_moment_and_one_at_a_time(start_manager, tmp_path):
    """While a backup is being written, mail is accepted at once and a second backup is
    refused; the archive is the store as of its moment: mail accepted after it is not
    in it."""
    m1 = start_manager(start=False)
    m1.next_env = {"LAZARET_FAULT": "backup_slow"}
    m1.start()
    early = m1.send("a@example.jp", ["u@corp.test"], make_message("early"))
    archive = str(tmp_path / "slow.lzb")
    result = {}

    def run():
        result["ctl"] = ctl(m1, "backup", archive)

    th = threading.Thread(target=run)
    th.start()
    wait_for(lambda: "backup.start" in m1.log_text(), t(20), "the backup to start")
    if not PG:
        wait_for(lambda: "store.snapshot " in m1.log_text(), t(20), "the snapshot")
    t0 = time.monotonic()
    late = [m1.send("b@example.jp", ["u@corp.test"], make_message("late %d" % i))
            for i in range(3)]
    assert time.monotonic() - t0 < 2, "ingest waited for the backup"
    st, _, raw = m1.http("POST", "/api/v1/backup")
    assert (st, json.loads(raw)) == (409, {"error": {
        "code": "conflict", "message": "another backup is running; try again when it ends"}})
    assert th.is_alive(), "the backup ended before the checks ran"
    th.join(timeout=t(60))
    rc, out, err = result["ctl"]
    assert rc == 0, err
    overrides = {}
    if PG:
        m1.stop()
        overrides = {"store__dsn": m1.sections["store"]["dsn"]}
    m2 = start_manager(start=False, **overrides)
    m2.next_args = ["--restore", archive]
    m2.start()
    got = {x["id"] for x in m2.list_all()}
    assert early in got
    if not PG:  # on PostgreSQL the database is the same one
        assert not got & set(late), "mail accepted after the backup's moment is in it"

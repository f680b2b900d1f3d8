"""A private PostgreSQL 15 cluster for one test, which the test may crash, stop, restart
or give a streaming replica: never the system's server, nor the shared one of
scripts/with-postgresql.

The cluster lives in a new directory under $TMPDIR, listens on a unix socket in that
directory only (no TCP port to collide with other runs), trusts local connections
(replication too) and runs with fsync=off (it is thrown away; kill -9 keeps what was
committed, as the OS page cache survives it). As root the server runs as the system
user postgres (runuser), which owns the directory. Without PostgreSQL 15 the test is
skipped, and under CI=true that is a failure."""

import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")


def require_postgresql():
    if not (os.access(os.path.join(PG_BIN, "initdb"), os.X_OK)
            and os.access(os.path.join(PG_BIN, "pg_basebackup"), os.X_OK)):
        msg = "no PostgreSQL 15 server in %s (apt-get install postgresql)" % PG_BIN
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)


def _as_pg(argv):
    return (["runuser", "-u", "postgres", "--"] + argv) if os.getuid() == 0 else argv


def psql(dsn, sql, check=True, timeout=60):
    """The rows of sql as text ('|'-separated columns), or raises when check."""
    r = subprocess.run(["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d", dsn,
                        "-c", sql], capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, r.stderr
    return r.stdout.strip() if r.returncode == 0 else None


class Cluster:
    """One server: start(), crash() (kill -9 of every process), stop(), remove()."""

    def __init__(self, base, name):
        self.dir = os.path.join(base, name)
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "server.log")
        os.mkdir(self.dir)
        os.chmod(self.dir, 0o755)  # the socket directory: lazaretd may run as another user
        if os.getuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self.dsn_base = "host=%s port=5432 user=postgres" % self.dir

    def dsn(self, dbname="postgres", **extra):
        return " ".join([self.dsn_base, "dbname=%s" % dbname] +
                        ["%s=%s" % kv for kv in extra.items()])

    def initdb(self):
        r = subprocess.run(_as_pg([os.path.join(PG_BIN, "initdb"), "-D", self.data,
                                   "-U", "postgres", "-A", "trust", "-E", "UTF8",
                                   "--locale=C.UTF-8", "--no-sync"]),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr

    def basebackup_from(self, primary):
        """Makes this a streaming standby of primary (pg_basebackup -R)."""
        r = subprocess.run(_as_pg([os.path.join(PG_BIN, "pg_basebackup"), "-D", self.data,
                                   "-d", primary.dsn(), "-R", "-X", "stream",
                                   "--no-sync", "-c", "fast"]),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr

    def start(self):
        opts = ("-c listen_addresses='' -k %s -c fsync=off -c full_page_writes=off "
                "-c max_connections=100 -c wal_level=replica -c hot_standby=on" % self.dir)
        r = subprocess.run(_as_pg([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-l",
                                   self.log, "-w", "-t", "120", "-o", opts, "start"]),
                           capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stdout + r.stderr + self.log_text()

    def promote(self):
        """A standby becomes a primary (pg_ctl promote, waiting until it is)."""
        r = subprocess.run(_as_pg([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-w",
                                   "-t", "60", "promote"]),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr + self.log_text()

    def stop(self, mode="fast"):
        subprocess.run(_as_pg([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-m", mode,
                               "-w", "-t", "60", "stop"]),
                       capture_output=True, text=True, timeout=120)

    def postmaster_pid(self):
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                return int(f.readline())
        except (FileNotFoundError, ValueError):
            return None

    def processes(self):
        """The postmaster and every process it started."""
        pm = self.postmaster_pid()
        if pm is None:
            return []
        out = [pm]
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % d) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pm:
                out.append(int(d))
        return out

    def crash(self):
        """kill -9 of the postmaster and all its children at once, as a crash does."""
        pids = self.processes()
        assert pids, "no server running in %s" % self.dir
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not any(os.path.exists("/proc/%d" % p) for p in pids):
                return
            time.sleep(0.05)
        raise AssertionError("server processes survived SIGKILL: %r" % pids)

    def log_text(self):
        try:
            with open(self.log, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""


class Clusters:
    """Factory of clusters under one temporary directory, all removed at the end."""

    def __init__(self):
        self.base = tempfile.mkdtemp(prefix="lazaret-pgc-", dir=os.environ.get("TMPDIR"))
        os.chmod(self.base, 0o755)
        self.made = []

    def new(self, name, init=True, start=True):
        c = Cluster(self.base, name)
        self.made.append(c)
        if init:
            c.initdb()
        if start:
            c.start()
        return c

    def remove(self):
        for c in reversed(self.made):
            if c.postmaster_pid() is not None:
                c.stop(mode="immediate")
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def pg_clusters():
    """clusters.new(name) -> a started private Cluster; all removed after the test."""
    require_postgresql()
    cs = Clusters()
    yield cs
    cs.remove()

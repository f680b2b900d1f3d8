"""Fixtures for the end-to-end tests: a real lazaretd per test, SMTP sinks, helpers.

LAZARET_BUILD names the build folder holding lazaretd and lazaretctl (default:
<repo>/build). LAZARET_SANITIZED=1 stretches every deadline for ASan/UBSan builds.
LAZARET_E2E_BACKEND=postgresql runs every manager on the PostgreSQL store, each in a
new database of the server at LAZARET_TEST_PG_DSN (run pytest under
scripts/with-postgresql); tests that look into SQLite's file itself then fail.

The `manager` fixture (and the `start_manager(**overrides)` factory) writes a
lazaretd.conf into a fresh folder, starts `lazaretd -c FILE`, waits until /healthz
answers and the SMTP port accepts, and at teardown stops it with SIGTERM and
requires exit status 0. Its stderr goes to a file that is attached to the report of
a failing test.
"""

import contextlib
import json as jsonlib
import os
import re
import secrets
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request

import pytest

from e2e_helpers import (STORED_RE, DaemonExits, free_port, sanitizer_report, t,
                         wait_for)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "sqlite_only: looks into SQLite's own file, uses its progress"
        " handler or needs a manager on SQLite (the source of a store copy); left out"
        " of the run on PostgreSQL (LAZARET_E2E_BACKEND=postgresql)")
    config.addinivalue_line(
        "markers", "own_postgresql: starts a PostgreSQL cluster of its own for every"
        " manager it runs; left out of the run on PostgreSQL"
        " (LAZARET_E2E_BACKEND=postgresql), which would only run it again")


def pytest_collection_modifyitems(config, items):
    """The run on PostgreSQL leaves out the modules that start their own cluster:
    deselected (not skipped: under CI=true a skip is a failure)."""
    if os.environ.get("LAZARET_E2E_BACKEND") != "postgresql":
        return
    kept = [i for i in items if i.get_closest_marker("own_postgresql") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(
            items=[i for i in items if i.get_closest_marker("own_postgresql") is not None])
        items[:] = kept


REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD_DIR = os.path.abspath(os.environ.get("LAZARET_BUILD") or os.path.join(REPO, "build"))

# Which section each flat override key belongs to. Keys that exist in two sections
# are given as "section__key" (e.g. release__max_connections=2, http__listen=...).
KEY_SECTION = {}
for _sec, _keys in {
    "manager": ["name", "data_dir", "user", "log_level"],
    "http": ["admin_token", "max_body"],
    "spam_quarantine": [
        "accept_from", "delete_after", "purge_interval", "max_message_size",
        "max_recipients", "max_connections", "idle_timeout", "max_header_count",
        "max_header_size", "max_command_line", "max_data_line",
        "max_commands_before_mail", "max_errors", "hostname", "tls_cert", "tls_key",
        "shutdown_grace", "max_connections_per_client", "command_timeout", "data_timeout"],
    "release": [
        "primary_host", "secondary_host", "source_address", "retry_min", "retry_max",
        "give_up_after", "helo_name", "timeout"],
}.items():
    for _k in _keys:
        KEY_SECTION[_k] = _sec

SECTION_ORDER = ["manager", "http", "spam_quarantine", "pvo_quarantine", "release"]
MANAGER_NAME = "lazaret-e2e"

_UNSET = object()


def find_binary(name):
    """$LAZARET_BUILD/<name> (top of the build folder), else where Meson puts it (src/<name>)."""
    for p in (os.path.join(BUILD_DIR, name), os.path.join(BUILD_DIR, "src", name)):
        if os.access(p, os.X_OK):
            return p
    return os.path.join(BUILD_DIR, name)


def lazaretd_path():
    return find_binary("lazaretd")


def bin_dir():
    """The folder that holds lazaretd and lazaretctl (what tests call build_dir)."""
    return os.path.dirname(lazaretd_path())


def make_workdir(prefix):
    """A fresh folder under /tmp that unprivileged helpers (smtp-sink as nobody) can use."""
    d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(d, 0o755)
    return d


def render_config(sections):
    """INI text of {section: {key: value}}; a value of None leaves the key out."""
    out = []
    names = [s for s in SECTION_ORDER if s in sections] + \
        [s for s in sections if s not in SECTION_ORDER]
    for sec in names:
        out.append("[%s]" % sec)
        for k, v in sections[sec].items():
            if v is None:
                continue
            out.append("%s = %s" % (k, v))
        out.append("")
    return "\n".join(out)


def _new_pg_database():
    """A new database on the server at LAZARET_TEST_PG_DSN: its DSN."""
    base = os.environ.get("LAZARET_TEST_PG_DSN")
    if not base:
        pytest.fail("LAZARET_E2E_BACKEND=postgresql needs LAZARET_TEST_PG_DSN"
                    " (run under scripts/with-postgresql)")
    name = "lazaret_e2e_" + secrets.token_hex(6)
    r = subprocess.run(["psql", "-X", "-q", "-d", base, "-c", "CREATE DATABASE " + name],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return "%s dbname=%s" % (base, name)


class Manager:
    """One lazaretd process with its own config, data folder, ports and log."""

    def __init__(self, workdir, overrides):
        self.build_dir = bin_dir()
        self.binary = lazaretd_path()  # a test may run another (an installed) lazaretd
        self.workdir = workdir
        self.name = MANAGER_NAME
        self.token = "e2e-" + secrets.token_hex(12)
        self.smtp_port = free_port()
        self.pvo_port = free_port()
        self.http_port = free_port()
        self.http_url = "http://127.0.0.1:%d" % self.http_port
        self.http_ssl = None  # an ssl.SSLContext when the test turns HTTPS on
        self.conf_path = os.path.join(workdir, "lazaretd.conf")
        self.log_path = os.path.join(workdir, "lazaretd.stderr")
        self.data_dir = os.path.join(workdir, "data")
        # Release goes nowhere unless a test says where: a port with no listener.
        self.sections = {
            "manager": {"name": self.name, "data_dir": self.data_dir},
            "http": {"listen": "127.0.0.1:%d" % self.http_port, "admin_token": self.token},
            "spam_quarantine": {"listen": "127.0.0.1:%d" % self.smtp_port,
                                "accept_from": "127.0.0.1/32, ::1/128"},
            # the PVO listener's default port is fixed: each manager gets its own
            "pvo_quarantine": {"listen": "127.0.0.1:%d" % self.pvo_port},
            "release": {"primary_host": "127.0.0.1:%d" % free_port(),
                        "source_address": "127.0.0.1"},
        }
        if os.environ.get("LAZARET_E2E_BACKEND") == "postgresql":
            self.sections["store"] = {"backend": "postgresql", "dsn": _new_pg_database()}
        self.apply(overrides)
        self.proc = None
        # Run in the child before exec (e.g. to lower its RLIMIT_NOFILE).
        self.preexec_fn = None
        self.exit_codes = []
        self.exits = DaemonExits()
        # Extra environment for the next start only (e.g. LAZARET_FAULT).
        self.next_env = {}
        # Extra command-line arguments for the next start only (e.g. --restore FILE).
        self.next_args = []
        self.hostname = self.sections["spam_quarantine"].get("hostname") or \
            self.sections["manager"].get("name") or "lazaret"

    # -- configuration -----------------------------------------------------

    def apply(self, overrides):
        for key, value in overrides.items():
            if "__" in key:
                sec, k = key.split("__", 1)
            else:
                sec, k = KEY_SECTION.get(key), key
                if sec is None:
                    raise KeyError("unknown config override %r: use section__key" % key)
            self.sections.setdefault(sec, {})[k] = value
        self.hostname = self.sections["spam_quarantine"].get("hostname") or \
            self.sections["manager"].get("name") or "lazaret"

    def write_config(self):
        with open(self.conf_path, "w", encoding="utf-8") as f:
            f.write(render_config(self.sections))

    def reload(self, **overrides):
        """Rewrites the config with the overrides and sends SIGHUP."""
        self.apply(overrides)
        self.write_config()
        self.proc.send_signal(signal.SIGHUP)

    # -- process -------------------------------------------------------------

    def start(self, wait=True):
        assert self.proc is None or self.proc.poll() is not None
        self.write_config()
        logf = open(self.log_path, "ab")
        env = dict(os.environ)
        env.pop("LAZARET_FAULT", None)
        env.update(self.next_env)
        self.next_env = {}
        args, self.next_args = self.next_args, []
        self.proc = subprocess.Popen([self.binary, "-c", self.conf_path] + args,
                                     stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                     env=env, cwd="/", preexec_fn=self.preexec_fn)
        self.exits.add(self.proc)
        logf.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=20):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("lazaretd exited with %s during start-up:\n%s"
                                     % (self.proc.returncode, self.log_text()))
            try:
                st, _ = self.api("GET", "/healthz", token=None, timeout=2)
            except OSError:
                return False
            if st != 200:
                return False
            try:
                socket.create_connection(("127.0.0.1", self.smtp_port), timeout=2).close()
            except OSError:
                return False
            return True
        wait_for(ready, timeout, "lazaretd to answer /healthz and SMTP")

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=30):
        """SIGTERM and wait; returns the exit status (None if it had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=t(timeout))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.exit_codes.append(("sigterm-timeout", None))
                return None
        rc = self.proc.returncode
        self.exit_codes.append(("sigterm", rc))
        return rc

    def kill9(self):
        self.exits.expect(self.proc, -signal.SIGKILL)
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=t(10))
        self.exit_codes.append(("sigkill", self.proc.returncode))

    def wait_exit(self, code, timeout=20):
        """Waits for the process to end by itself (an injected fault) with status code."""
        self.exits.expect(self.proc, code)
        try:
            rc = self.proc.wait(timeout=t(timeout))
        except subprocess.TimeoutExpired:
            raise AssertionError("lazaretd still running after %ss (expected exit %d)"
                                 % (t(timeout), code))
        assert rc == code, "lazaretd exit status %r, expected %d:\n%s" % (
            rc, code, self.log_text()[-5000:])
        self.exit_codes.append(("expected", rc))
        return rc

    def restart(self):
        """Starts again on the same config, ports and data (after kill9 or stop)."""
        if self.running():
            rc = self.stop()
            assert rc == 0, "lazaretd exit status %r on SIGTERM:\n%s" % (rc, self.log_text())
        return self.start()

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    # -- SMTP ----------------------------------------------------------------

    def smtp(self, source_address=None, timeout=15):
        src = (source_address, 0) if source_address else None
        return smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=t(timeout),
                            source_address=src)

    def send(self, sender, rcpts, msg_bytes, source_address=None, conn=None):
        """Sends one message with smtplib; returns the id from '250 2.0.0 Ok: stored as <id>'."""
        if isinstance(rcpts, str):
            rcpts = [rcpts]
        own = conn is None
        s = self.smtp(source_address) if own else conn
        try:
            if own:
                s.ehlo("client.e2e.test")
            code, resp = s.mail(sender)
            assert code == 250, (code, resp)
            for r in rcpts:
                code, resp = s.rcpt(r)
                assert code == 250, (r, code, resp)
            code, resp = s.data(msg_bytes)
            line = "%d %s" % (code, resp.decode("utf-8", "replace"))
            m = STORED_RE.match(line)
            assert m, "unexpected reply to end of data: %r" % line
            return m.group(1)
        finally:
            if own:
                try:
                    s.quit()
                except (smtplib.SMTPException, OSError):
                    s.close()

    # -- HTTP ----------------------------------------------------------------

    def http(self, method, path, body=None, token=_UNSET, headers=None, timeout=15):
        """(status, headers, bytes) of one request; token None sends no Authorization."""
        if token is _UNSET:
            token = self.token
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = "Bearer %s" % token
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else jsonlib.dumps(body).encode("utf-8")
            hdrs.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.http_url + path, data=data, method=method,
                                     headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=t(timeout), context=self.http_ssl) as r:
                return r.status, dict(r.headers.items()), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers.items()), e.read()

    def api(self, method, path, json=None, token=_UNSET, timeout=15):
        """(status, parsed JSON body or None)."""
        st, _, raw = self.http(method, path, body=json, token=token, timeout=timeout)
        try:
            doc = jsonlib.loads(raw.decode("utf-8")) if raw else None
        except ValueError:
            doc = None
        return st, doc

    def get_message(self, msg_id):
        st, doc = self.api("GET", "/api/v1/messages/%s" % msg_id)
        assert st == 200, (st, doc)
        return doc

    def list_all(self, query="", limit=1000):
        """Every message matching the query string, following next_cursor."""
        out = []
        cursor = None
        for _ in range(10000):
            q = "limit=%d" % limit + ("&" + query if query else "")
            if cursor:
                q += "&cursor=" + urllib.request.quote(cursor, safe="")
            st, doc = self.api("GET", "/api/v1/messages?" + q)
            assert st == 200, (st, doc)
            out += doc["messages"]
            cursor = doc.get("next_cursor")
            if not cursor:
                return out
        raise AssertionError("paging does not end")

    def metrics_text(self):
        st, _, raw = self.http("GET", "/metrics")
        assert st == 200, st
        return raw.decode("utf-8")

    def metrics(self):
        """{'name' or 'name{labels}': float} from /metrics."""
        out = {}
        for line in self.metrics_text().splitlines():
            if not line or line.startswith("#"):
                continue
            m = re.match(r"^(\S+?(?:\{[^}]*\})?)\s+(\S+)$", line)
            if m:
                out[m.group(1)] = float(m.group(2))
        return out

    def metric(self, name):
        return self.metrics().get(name)


class SinkHandler:
    """aiosmtpd handler: records every transaction; per-recipient replies on demand.

    rcpt_replies: {address: "550 5.1.1 ..."} answered to RCPT for that address;
    default_rcpt_reply: answered to any other address (None: accept).
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.messages = []   # dicts: sender, rcpts, data (bytes), peer
        self.rcpt_log = []   # (address, reply) for every RCPT seen
        self.rcpt_replies = {}
        self.default_rcpt_reply = None
        self.data_reply = None
        self.connections = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        with self.lock:
            self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            reply = self.rcpt_replies.get(address, self.default_rcpt_reply)
            self.rcpt_log.append((address, reply or "250 OK"))
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            if self.data_reply:
                return self.data_reply
            self.messages.append({
                "sender": envelope.mail_from,
                "rcpts": list(envelope.rcpt_tos),
                "data": bytes(envelope.original_content),
                "peer": session.peer[0] if session.peer else None,
            })
        return "250 2.0.0 Ok: queued"

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def count(self):
        with self.lock:
            return len(self.messages)


class AioSink:
    def __init__(self, port=None):
        from aiosmtpd.controller import Controller
        self.handler = SinkHandler()
        self.port = port or free_port()
        self.host = "127.0.0.1:%d" % self.port
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                     ready_timeout=t(10), decode_data=False)
        self.started = False

    def start(self):
        self.controller.start()
        self.started = True
        return self

    def stop(self):
        if self.started:
            self.controller.stop()
            self.started = False

    @property
    def messages(self):
        return self.handler.snapshot()

    def count(self):
        return self.handler.count()

    def wait_count(self, n, timeout=15):
        wait_for(lambda: self.count() >= n, timeout, "%d message(s) at the sink" % n)
        return self.messages


class PostfixSink:
    """Postfix's smtp-sink on a loopback port, dumping each transaction to a file."""

    def __init__(self, workdir):
        self.port = free_port()
        self.host = "127.0.0.1:%d" % self.port
        self.dir = os.path.join(workdir, "smtp-sink")
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o777)
        self.proc = None

    def start(self):
        args = ["/usr/sbin/smtp-sink", "-d", os.path.join(self.dir, "msg.")]
        if os.geteuid() == 0:
            args += ["-u", "nobody"]
        args += ["127.0.0.1:%d" % self.port, "64"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("smtp-sink exited: %s" % self.proc.stderr.read())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_for(up, 10, "smtp-sink to listen")
        # The probe connection above leaves no dump file (no transaction).
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def files(self):
        return sorted(os.path.join(self.dir, f) for f in os.listdir(self.dir))

    def dumps(self):
        """Parsed dumps: {'mail_args', 'rcpt_args': [...], 'message': bytes (LF line ends)}."""
        out = []
        for path in self.files():
            with open(path, "rb") as f:
                raw = f.read()
            lines = raw.split(b"\n")
            mail_args, rcpts, i = None, [], 0
            while i < len(lines):
                ln = lines[i]
                if ln.startswith(b"X-Mail-Args: "):
                    mail_args = ln[len(b"X-Mail-Args: "):].decode()
                elif ln.startswith(b"X-Rcpt-Args: "):
                    rcpts.append(ln[len(b"X-Rcpt-Args: "):].decode())
                elif ln.startswith(b"Received: "):
                    i += 3  # the three-line Received: header ends smtp-sink's part
                    break
                i += 1
            out.append({"path": path, "mail_args": mail_args, "rcpt_args": rcpts,
                        "message": b"\n".join(lines[i:]), "raw": raw})
        return out


# ---------------------------------------------------------------------------
# Reporting: attach the daemon's stderr to failing tests.

# Under CI=true a skipped test is a failed one: a missing peer (a tool not installed,
# a namespace refused, not root) must not pass as green. A skip that is right even in
# CI goes here with its node id and why; keep it empty unless there is a reason.
CI_ALLOWED_SKIPS = {}


def _ci_strict():
    return os.environ.get("CI", "").lower() == "true"


def _skip_reason(rep):
    lr = rep.longrepr
    if isinstance(lr, tuple) and len(lr) == 3:
        return str(lr[2])
    return str(lr)


def _skip_to_failure(rep):
    if not (_ci_strict() and rep.skipped and not hasattr(rep, "wasxfail")):
        return
    if rep.nodeid in CI_ALLOWED_SKIPS:
        return
    rep.outcome = "failed"
    rep.longrepr = "skipped under CI=true, which makes a skip a failure: %s" % _skip_reason(rep)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _skip_to_failure(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    _skip_to_failure(rep)
    if rep.failed:
        for i, m in enumerate(getattr(item, "_lazaret_managers", [])):
            text = m.log_text()
            if len(text) > 60000:
                text = "...\n" + text[-60000:]
            rep.sections.append(("lazaretd #%d stderr (%s)" % (i, m.log_path), text))


def daemon_teardown_problems(name, daemons):
    """What is wrong with daemons (objects with .exits, .log_text(), .workdir) at the end
    of a test: exits the test did not ask for, sanitizer reports in their stderr (also
    of processes the test killed on purpose)."""
    problems = []
    for d in daemons:
        problems += d.exits.problems("%s (%s)" % (name, d.workdir))
        rep = sanitizer_report(d.log_text())
        if rep is not None:
            problems.append("%s (%s): sanitizer report in its stderr:\n%s"
                            % (name, d.workdir, rep))
    return problems


def _require_daemon():
    if not os.access(lazaretd_path(), os.X_OK):
        pytest.fail("lazaretd not built at %s (set LAZARET_BUILD)" % lazaretd_path())


@pytest.fixture
def start_manager(request):
    """Factory: start_manager(**config_overrides) -> a running Manager (stopped at teardown).

    Override keys are config keys (delete_after="3s", accept_from="127.0.0.1/32",
    max_recipients=3, tls_cert=..., primary_host=..., retry_min="1s"), or
    "section__key" for keys present in two sections. A value of None removes the key.
    start=False returns it configured but not started.
    """
    _require_daemon()
    made = []
    item = request.node
    if not hasattr(item, "_lazaret_managers"):
        item._lazaret_managers = []

    def factory(start=True, **overrides):
        workdir = make_workdir("lazaret-e2e-")
        m = Manager(workdir, overrides)
        made.append(m)
        item._lazaret_managers.append(m)
        if start:
            m.start()
        return m

    yield factory

    problems = []
    for m in made:
        if m.running():
            rc = m.stop()
            if rc != 0:
                problems.append("lazaretd (%s) exit status on SIGTERM: %r" % (m.workdir, rc))
    problems += daemon_teardown_problems("lazaretd", made)
    for m in made:
        if not problems:
            shutil.rmtree(m.workdir, ignore_errors=True)
    if problems:
        pytest.fail("\n".join(problems) + "\n" +
                    "\n".join(m.log_text()[-20000:] for m in made), pytrace=False)


@pytest.fixture
def manager(start_manager):
    """A running lazaretd with the default test configuration."""
    return start_manager()


@pytest.fixture
def workdir():
    d = make_workdir("lazaret-e2e-work-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def aio_sink_factory():
    """Factory for aiosmtpd sinks: aio_sink_factory(port=None, start=True)."""
    sinks = []

    def factory(port=None, start=True):
        s = AioSink(port)
        sinks.append(s)
        if start:
            s.start()
        return s
    yield factory
    for s in sinks:
        s.stop()


@pytest.fixture
def aio_sink(aio_sink_factory):
    """A running aiosmtpd sink that accepts everything (see SinkHandler to refuse)."""
    return aio_sink_factory()


@pytest.fixture
def postfix_sink(workdir):
    """Postfix's smtp-sink dumping every transaction to a file."""
    if not os.access("/usr/sbin/smtp-sink", os.X_OK):
        pytest.fail("/usr/sbin/smtp-sink missing (Debian package postfix)")
    s = PostfixSink(workdir).start()
    yield s
    s.stop()


@pytest.fixture
def build_dir():
    return bin_dir()


# ---------------------------------------------------------------------------
# A real OpenLDAP slapd on loopback with a small test directory (end users from LDAP).

LDAP_SCHEMA = """\
attributetype ( 1.3.6.1.4.1.99999.1.1 NAME 'mailAlternateAddress'
\tDESC 'another address of the mailbox (test schema)'
\tEQUALITY caseIgnoreIA5Match
\tSUBSTR caseIgnoreIA5SubstringsMatch
\tSYNTAX 1.3.6.1.4.1.1466.115.121.1.26{256} )
objectclass ( 1.3.6.1.4.1.99999.2.1 NAME 'lazaretTestMailUser'
\tDESC 'a user with alternate mail addresses (test schema)'
\tSUP top AUXILIARY
\tMAY ( mailAlternateAddress ) )
"""

LDAP_DATA = """\
dn: dc=example,dc=com
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,dc=example,dc=com
objectClass: organizationalUnit
ou: people

dn: cn=reader,dc=example,dc=com
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: reader
userPassword: reader-secret

dn: uid=taro,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
objectClass: lazaretTestMailUser
uid: taro
cn: Taro Yamada
sn: Yamada
mail: Taro@corp.test
mailAlternateAddress: yamada@corp.test
userPassword: taro-ldap-pw

dn: uid=star*,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: star*
cn: Star
sn: Star
mail: star@corp.test
userPassword: star-ldap-pw
"""


def slapd_directory(d, extra_config=()):
    """Writes a slapd.conf and the test entries under d (a new folder) and loads them
    with slapadd; extra_config lines (e.g. TLS settings) go before the database.
    Returns the config file's path."""
    for tool in ("/usr/sbin/slapd", "/usr/sbin/slapadd"):
        if not os.access(tool, os.X_OK):
            pytest.fail("%s missing (Debian packages slapd, ldap-utils)" % tool)
    os.makedirs(os.path.join(d, "db"))
    with open(os.path.join(d, "test.schema"), "w") as f:
        f.write(LDAP_SCHEMA)
    with open(os.path.join(d, "data.ldif"), "w") as f:
        f.write(LDAP_DATA)
    conf = os.path.join(d, "slapd.conf")
    with open(conf, "w") as f:
        f.write("\n".join([
            "include /etc/ldap/schema/core.schema",
            "include /etc/ldap/schema/cosine.schema",
            "include /etc/ldap/schema/inetorgperson.schema",
            "include %s/test.schema" % d,
            "pidfile %s/slapd.pid" % d,
            "modulepath /usr/lib/ldap",
            "moduleload back_mdb"] + list(extra_config) + [
            "database mdb",
            "maxsize 10485760",
            'suffix "dc=example,dc=com"',
            'rootdn "cn=admin,dc=example,dc=com"',
            "rootpw admin-secret",
            "directory %s/db" % d,
            "access to attrs=userPassword by self write by anonymous auth by * none",
            "access to * by users read by anonymous read",
            ""]))
    r = subprocess.run(["/usr/sbin/slapadd", "-f", conf, "-l", os.path.join(d, "data.ldif")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return conf


@pytest.fixture
def slapd(workdir):
    """slapd on a loopback port with a mdb database under workdir; yields the URI."""
    conf = slapd_directory(os.path.join(workdir, "ldap"))
    port = free_port()
    uri = "ldap://127.0.0.1:%d/" % port
    # -d 0: stay in the foreground, so the test owns the process.
    with listening_daemon(["/usr/sbin/slapd", "-d", "0", "-h", uri, "-f", conf], port, "slapd"):
        yield uri


def ldap_manager(start_manager, uri, **extra):
    return start_manager(auth_ldap__uri=uri, auth_ldap__base_dn="dc=example,dc=com",
                         auth_ldap__bind_dn="cn=reader,dc=example,dc=com",
                         auth_ldap__bind_password="reader-secret",
                         auth_ldap__user_filter="(uid=%s)",
                         auth_ldap__mail_attributes="mail, mailAlternateAddress", **extra)


@contextlib.contextmanager
def listening_daemon(argv, port, name):
    """Runs a test peer (slapd, dovecot ...) in the foreground until it listens on
    127.0.0.1:port; stops it with SIGTERM (then SIGKILL) when the block ends."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def up():
        if proc.poll() is not None:
            raise AssertionError("%s exited: %s" % (name, proc.stderr.read()))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False
    try:
        wait_for(up, 15, "%s to listen" % name)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

"""Fixtures for the gateway's end-to-end tests: a real lazaret-gw per test.

`start_gateway(next_hop=..., **sections)` writes a lazaret-gw.conf into a fresh
folder, starts `lazaret-gw -c FILE`, waits until its SMTP port greets (and /healthz
answers when [http] is on), and at teardown stops it with SIGTERM and requires exit
status 0. Overrides are given per section: `start_gateway(antispam={"positive_action":
"tag"}, rat={"accept": "*"})`; a value of None removes a key. Import the fixtures into
a test module with `from gw_fixtures import *`.
"""

import json as jsonlib
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import urllib.error
import urllib.request

import pytest

from conftest import daemon_teardown_problems, find_binary, make_workdir, render_config
from e2e_helpers import DaemonExits, free_port, t, wait_for

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
GW_SECTION_ORDER = ["gateway", "listener", "hat", "rat", "delivery", "manager", "antispam",
                    "antivirus", "filters", "spam_quarantine", "quarantines",
                    "external_spam_quarantine", "http"]

_UNSET = object()


def lazaret_gw_path():
    return find_binary("lazaret-gw")


def make_message(subject="hello", body="Just a normal message.\r\n", sender="alice@sender.test",
                 to="bob@example.com", extra_headers=""):
    """A small RFC 5322 message as bytes (CRLF line ends)."""
    text = ("From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@e2e.test>\r\n%s\r\n%s"
            % (sender, to, subject, os.urandom(6).hex(), extra_headers, body))
    return text.encode("utf-8")


class Gateway:
    """One lazaret-gw process with its own config, data folder, ports and log."""

    def __init__(self, workdir, next_hop, sections):
        self.workdir = workdir
        self.name = "gw-e2e"
        self.token = "gw-" + os.urandom(8).hex()
        self.smtp_port = free_port()
        self.http_port = free_port()
        self.http_url = "http://127.0.0.1:%d" % self.http_port
        self.conf_path = os.path.join(workdir, "lazaret-gw.conf")
        self.log_path = os.path.join(workdir, "lazaret-gw.stderr")
        self.data_dir = os.path.join(workdir, "data")
        self.sections = {
            "gateway": {"name": self.name, "data_dir": self.data_dir, "workers": "8"},
            "listener": {"listen": "127.0.0.1:%d" % self.smtp_port},
            "rat": {"accept": "example.com, .example.org, postmaster@example.net"},
            "delivery": {"next_hop": next_hop, "timeout": "10s"},
            "http": {"listen": "127.0.0.1:%d" % self.http_port, "admin_token": self.token},
        }
        self.apply(sections)
        self.proc = None
        self.exits = DaemonExits()
        self.env = None  # the next start's environment (None: this one's)

    def apply(self, sections):
        for sec, keys in sections.items():
            if keys is None:
                self.sections.pop(sec, None)
                continue
            cur = self.sections.setdefault(sec, {})
            for k, v in keys.items():
                if v is None:
                    cur.pop(k, None)
                else:
                    cur[k] = v

    def write_config(self):
        ordered = {s: self.sections[s] for s in GW_SECTION_ORDER if s in self.sections}
        ordered.update({s: v for s, v in self.sections.items() if s not in ordered})
        text = render_config(ordered)
        with open(self.conf_path, "w", encoding="utf-8") as f:
            f.write(text)

    def write_file(self, name, text):
        path = os.path.join(self.workdir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    # -- process -------------------------------------------------------------

    def start(self, wait=True):
        self.write_config()
        logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([lazaret_gw_path(), "-c", self.conf_path],
                                     stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                     cwd="/", env=self.env)
        self.exits.add(self.proc)
        logf.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=20):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("lazaret-gw exited with %s during start-up:\n%s"
                                     % (self.proc.returncode, self.log_text()))
            try:
                with socket.create_connection(("127.0.0.1", self.smtp_port), timeout=2) as s:
                    # A HAT that refuses loopback answers 554: it is up all the same.
                    if not s.recv(512)[:3] in (b"220", b"554"):
                        return False
                    s.sendall(b"QUIT\r\n")
            except OSError:
                return False
            if "http" in self.sections:
                try:
                    st, _ = self.api("GET", "/healthz", token=None, timeout=2)
                except OSError:
                    return False
                return st == 200
            return True
        wait_for(ready, timeout, "lazaret-gw to greet")

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def reload(self, **sections):
        self.apply(sections)
        self.write_config()
        self.proc.send_signal(signal.SIGHUP)

    def stop(self, timeout=30):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=t(timeout))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, needle, timeout=10):
        wait_for(lambda: needle in self.log_text(), timeout, "%r in the gateway log" % needle)

    # -- SMTP ----------------------------------------------------------------

    def smtp(self, source_address=None, timeout=30):
        src = (source_address, 0) if source_address else None
        s = smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=t(timeout), source_address=src)
        s.ehlo("client.e2e.test")
        return s

    def send(self, sender, rcpts, msg_bytes, source_address=None):
        """One transaction; returns (code, text) of the reply to the end of data.

        Refused recipients raise smtplib.SMTPRecipientsRefused as with sendmail().
        """
        if isinstance(rcpts, str):
            rcpts = [rcpts]
        s = self.smtp(source_address)
        try:
            code, resp = s.mail(sender)
            if code != 250:
                return code, resp.decode("utf-8", "replace")
            for r in rcpts:
                code, resp = s.rcpt(r)
                if code != 250:
                    return code, resp.decode("utf-8", "replace")
            code, resp = s.data(msg_bytes)
            return code, resp.decode("utf-8", "replace")
        finally:
            try:
                s.quit()
            except (smtplib.SMTPException, OSError):
                s.close()

    # -- HTTP ----------------------------------------------------------------

    def api(self, method, path, json=None, token=_UNSET, timeout=15):
        if token is _UNSET:
            token = self.token
        hdrs = {}
        if token is not None:
            hdrs["Authorization"] = "Bearer %s" % token
        data = None
        if json is not None:
            data = jsonlib.dumps(json).encode("utf-8")
            hdrs["Content-Type"] = "application/json"
        req = urllib.request.Request(self.http_url + path, data=data, method=method,
                                     headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=t(timeout)) as r:
                raw = r.read()
                st = r.status
        except urllib.error.HTTPError as e:
            raw = e.read()
            st = e.code
        try:
            doc = jsonlib.loads(raw.decode("utf-8")) if raw else None
        except ValueError:
            doc = None
        return st, doc

    def messages(self, query=""):
        st, doc = self.api("GET", "/api/v1/messages" + ("?" + query if query else ""))
        assert st == 200, (st, doc)
        return doc["messages"]


def _require_gateway():
    if not os.access(lazaret_gw_path(), os.X_OK):
        pytest.fail("lazaret-gw not built at %s (set LAZARET_BUILD)" % lazaret_gw_path())


@pytest.fixture
def start_gateway(request):
    """Factory: start_gateway(next_hop, start=True, **sections) -> a running Gateway."""
    _require_gateway()
    made = []

    def factory(next_hop, start=True, **sections):
        g = Gateway(make_workdir("lazaret-gw-e2e-"), next_hop, sections)
        made.append(g)
        if start:
            g.start()
        return g

    yield factory

    problems = []
    for i, g in enumerate(made):
        # Shown by pytest only when the test failed (captured teardown output).
        print("---- lazaret-gw #%d stderr (%s) ----\n%s" % (i, g.log_path, g.log_text()[-30000:]))
        if g.running():
            rc = g.stop()
            if rc != 0:
                problems.append("lazaret-gw (%s) exit status on SIGTERM: %r\n%s"
                                % (g.workdir, rc, g.log_text()[-20000:]))
    problems += daemon_teardown_problems("lazaret-gw", made)
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)
    for g in made:
        shutil.rmtree(g.workdir, ignore_errors=True)


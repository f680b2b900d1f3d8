"""Resource limits of the real daemons on loopback: one limit per thing (bulk ids,
account addresses), HTTP connection caps and deadlines, descriptor reserve, SMTP
per-client caps and command deadlines, and endless lines.

Every test starts its own lazaretd (or lazaret-gw) and talks to it with raw sockets
or urllib; every refusal is asserted with its exact reply, and the store is checked
to be intact afterwards.
"""

import http.client
import json
import os
import resource
import socket
import time
import uuid

import pytest

from e2e_helpers import RawSMTP, SMTPClosed, free_port, make_message, t, wait_for
from gw_fixtures import start_gateway  # noqa: F401
from test_sessions import Client, add_user

BULK_MAX_IDS = 1000
USER_MAX_ADDRESSES = 1000


def quarantined(m, msg_id):
    doc = m.get_message(msg_id)
    return [r["state"] for r in doc["recipients"]]


# ---- one limit per thing ---------------------------------------------------


def test_bulk_ids_have_one_limit_in_api_and_store(manager):
    m = manager
    doomed = [m.send("spam@example.jp", "u%d@corp.test" % i,
                     make_message(subject="bulk %d" % i)) for i in range(2)]
    kept = m.send("spam@example.jp", "keep@corp.test", make_message(subject="keep"))
    # limit + 1: refused whole by the API, before the store sees it; nothing changes.
    over = doomed + [kept] + [str(uuid.uuid4()) for _ in range(BULK_MAX_IDS + 1 - 3)]
    st, doc = m.api("POST", "/api/v1/messages/delete", json={"ids": over})
    assert (st, doc) == (422, {"error": {
        "code": "unprocessable",
        "message": "field \"ids\" has more than %d items" % BULK_MAX_IDS}})
    for i in doomed + [kept]:
        assert quarantined(m, i) == ["quarantined"]
    # Exactly the limit: the store takes it too (it used to allow fewer than the API).
    at = doomed + [str(uuid.uuid4()) for _ in range(BULK_MAX_IDS - 2)]
    assert len(at) == BULK_MAX_IDS
    st, doc = m.api("POST", "/api/v1/messages/delete", json={"ids": at})
    assert (st, doc) == (200, {"changed": 2})
    for i in doomed:
        assert quarantined(m, i) == ["deleted"]
    assert quarantined(m, kept) == ["quarantined"]


def test_an_account_with_the_most_addresses_can_list_its_mail(manager):
    m = manager
    mine = m.send("spam@example.jp", "a999@corp.test", make_message(subject="mine"))
    other = m.send("spam@example.jp", "someone@corp.test", make_message(subject="other"))
    addrs = ["a%d@corp.test" % i for i in range(USER_MAX_ADDRESSES + 1)]
    st, doc = m.api("POST", "/api/v1/users", json={
        "username": "many", "password": "many-pw-123", "role": "enduser",
        "addresses": addrs})
    assert (st, doc) == (422, {"error": {
        "code": "unprocessable",
        "message": "field \"addresses\" has more than %d items" % USER_MAX_ADDRESSES}})
    st, doc = m.api("GET", "/api/v1/users")
    assert st == 200 and "many" not in [u["username"] for u in doc["users"]]

    add_user(m, "many", "many-pw-123", "enduser", addrs[:USER_MAX_ADDRESSES])
    c = Client(m)
    st, doc = c.login("many", "many-pw-123")
    assert st == 200 and len(doc["user"]["addresses"]) == USER_MAX_ADDRESSES
    # The listing scopes by every one of them (it used to refuse more than 100).
    st, doc = c.call("GET", "/api/v1/messages?limit=100")
    assert st == 200, (st, doc)
    assert [x["id"] for x in doc["messages"]] == [mine]
    st, doc = c.call("POST", "/api/v1/messages/delete", body={"all": True})
    assert (st, doc) == (200, {"changed": 1})
    assert quarantined(m, mine) == ["deleted"]
    assert quarantined(m, other) == ["quarantined"]


# ---- SMTP, both daemons ------------------------------------------------------


class SmtpDaemon:
    """The SMTP listener of a lazaretd or a lazaret-gw under test."""

    def __init__(self, kind, proc, port, hostname):
        self.kind, self.proc, self.port, self.hostname = kind, proc, port, hostname

    def log_text(self):
        return self.proc.log_text()


@pytest.fixture(params=["lazaretd", "lazaret-gw"])
def smtp_daemon(request, start_manager, start_gateway):  # noqa: F811
    """Factory: smtp_daemon(**listener_keys) -> SmtpDaemon, for each daemon in turn."""
    def start(**keys):
        if request.param == "lazaretd":
            over = {"spam_quarantine__" + k: v for k, v in keys.items()}
            m = start_manager(accept_from="127.0.0.0/8", **over)
            return SmtpDaemon("lazaretd", m, m.smtp_port, m.hostname)
        g = start_gateway("127.0.0.1:%d" % free_port(), listener=dict(keys))
        return SmtpDaemon("lazaret-gw", g, g.smtp_port, g.name)
    return start


def dribble_until_reply(c, data, interval=1.0, limit=30.0):
    """Sends data one octet per interval until the server answers; returns
    (seconds from the first octet to the reply line, the line)."""
    start = time.monotonic()
    c.sock.settimeout(interval)
    for i in range(len(data)):
        c.send(data[i:i + 1])
        try:
            chunk = c.sock.recv(4096)
        except socket.timeout:
            assert time.monotonic() - start < t(limit), "no reply while dribbling"
            continue
        assert chunk, "closed without a reply"
        c.buf += chunk
        c.sock.settimeout(t(5))
        return time.monotonic() - start, c.read_line()
    raise AssertionError("the whole input was sent without a reply")


def test_a_command_trickling_one_octet_a_second_is_cut_at_its_deadline(smtp_daemon):
    d = smtp_daemon(command_timeout="3s", idle_timeout="1m")
    with RawSMTP(d.port) as c:
        assert c.greeting().startswith("220 ")
        # Each octet would restart the idle timeout; the command deadline holds.
        took, line = dribble_until_reply(c, b"EHLO a-very-slow-client.example\r\n")
        assert line == "421 4.4.2 %s Error: timeout exceeded" % d.hostname
        assert 2.5 <= took < t(3 + 3), took
        assert c.closed()
    assert "deadline=command" in d.log_text()
    # A normal client is not affected.
    with RawSMTP(d.port) as c:
        assert c.greeting().startswith("220 ")
        assert c.cmd("NOOP") == "250 2.0.0 Ok"


def test_message_data_trickling_is_cut_at_the_data_deadline(smtp_daemon):
    d = smtp_daemon(data_timeout="3s", command_timeout="1m", idle_timeout="1m")
    rcpt = "user@corp.test" if d.kind == "lazaretd" else "user@example.com"
    with RawSMTP(d.port) as c:
        assert c.greeting().startswith("220 ")
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@example.jp>").startswith("250 ")
        assert c.cmd("RCPT TO:<%s>" % rcpt).startswith("250 ")
        assert c.cmd("DATA").startswith("354 ")
        took, line = dribble_until_reply(c, b"Subject: slow\r\n\r\n" + b"x\r\n" * 20)
        assert line == "421 4.4.2 %s Error: timeout exceeded" % d.hostname
        assert 2.0 <= took < t(3 + 3), took
        assert c.closed()
    assert "deadline=data" in d.log_text()
    if d.kind == "lazaretd":
        assert d.proc.list_all() == []


def test_connections_per_client_address(smtp_daemon):
    d = smtp_daemon(max_connections_per_client="2")
    held = []

    def hold_one():
        # The start-up probe's session may still count for a moment.
        c = RawSMTP(d.port)
        if c.greeting().startswith("220 "):
            held.append(c)
            return True
        c.close()
        return False
    try:
        wait_for(hold_one, 5, "a first session")
        wait_for(hold_one, 5, "a second session")
        with RawSMTP(d.port) as c:
            assert c.reply_line() == \
                "421 4.7.0 %s Error: too many connections from 127.0.0.1" % d.hostname
            assert c.closed()
        # Another client address is not held back by the first one's sessions.
        with RawSMTP(d.port, source="127.0.0.2") as c:
            assert c.greeting().startswith("220 ")
            assert c.cmd("NOOP") == "250 2.0.0 Ok"
        held[0].send("QUIT\r\n")
        assert held[0].reply_line().startswith("221 ")
        held[0].close()

        def slot_free():
            with RawSMTP(d.port) as c:
                return c.reply_line().startswith("220 ")
        wait_for(slot_free, 5, "a free per-client slot after QUIT")
    finally:
        for c in held:
            c.close()
    if d.kind == "lazaretd":
        assert d.proc.metrics().get(
            'lazaret_smtp_refused_total{reason="client_connection_limit"}', 0) >= 1


def test_an_endless_command_line_is_cut(smtp_daemon):
    d = smtp_daemon()
    with RawSMTP(d.port) as c:
        assert c.greeting().startswith("220 ")
        # No line end, ever. The server answers the first 512 octets with 500, counts
        # every further 512 as one more error and gives up after 20: at 21 * 512
        # octets. (Exactly that many, so that its close leaves nothing unread, which
        # would turn the close into a reset that can swallow the reply.)
        c.send(b"NOOP " + b"x" * (512 * 21 - 5))
        assert c.reply_line() == "500 5.5.2 Error: line too long"
        assert c.reply_line() == "421 4.7.0 %s Error: too many errors" % d.hostname
        assert c.closed()
        try:
            c.send(b"x" * 512)
            c.send(b"x" * 512)
            c.read_line()
            raise AssertionError("the server still reads")
        except (SMTPClosed, BrokenPipeError, ConnectionResetError):
            pass
    with RawSMTP(d.port) as c:
        assert c.greeting().startswith("220 ")


# ---- HTTP --------------------------------------------------------------------


def http_connect(port, source="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def closed_by_server(s, within):
    """True when the server closes s (EOF or reset) within `within` seconds."""
    s.settimeout(within)
    try:
        return s.recv(4096) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def get(port, path, source="127.0.0.1", timeout=10):
    """(status, seconds) of one GET on a fresh connection."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=t(timeout),
                                   source_address=(source, 0))
    try:
        start = time.monotonic()
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        return r.status, time.monotonic() - start
    finally:
        c.close()


class HttpDaemon:
    """The HTTP API of a lazaretd or a lazaret-gw under test."""

    def __init__(self, proc, port):
        self.proc, self.port = proc, port

    def log_text(self):
        return self.proc.log_text()

    def metric(self, name):
        st, _, raw = http_get_raw(self.port, "/metrics")
        assert st == 200
        for line in raw.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return None


def http_get_raw(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=t(10))
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.getheaders(), r.read()
    finally:
        c.close()


@pytest.fixture(params=["lazaretd", "lazaret-gw"])
def http_daemon(request, start_manager, start_gateway):  # noqa: F811
    """Factory: http_daemon(**http_keys) -> HttpDaemon, for each daemon in turn."""
    def start(**keys):
        if request.param == "lazaretd":
            m = start_manager(**{"http__" + k: v for k, v in keys.items()})
            return HttpDaemon(m, m.http_port)
        g = start_gateway("127.0.0.1:%d" % free_port(), http=dict(keys))
        return HttpDaemon(g, g.http_port)
    return start


def test_http_connection_caps_total_and_per_client(http_daemon):
    m = http_daemon(max_connections="5", max_connections_per_client="3")
    port = m.port
    held = []

    def hold(source):
        # The start-up probe's connection may still count for a moment.
        s = http_connect(port, source)
        if closed_by_server(s, 0.3):
            s.close()
            return False
        held.append(s)
        return True
    try:
        for _ in range(3):
            wait_for(lambda: hold("127.0.0.1"), 5, "a connection from 127.0.0.1")
        # The fourth from the same address is closed at once, unanswered.
        s = http_connect(port)
        assert closed_by_server(s, t(2))
        s.close()
        # Another address still gets in, up to the total.
        for _ in range(2):
            assert hold("127.0.0.2")
        s = http_connect(port, "127.0.0.3")
        assert closed_by_server(s, t(2))
        s.close()
    finally:
        for s in held:
            s.close()

    def served():
        try:
            return get(port, "/healthz", timeout=2)[0] == 200
        except OSError:
            return False
    wait_for(served, 5, "HTTP answering again once the connections are gone")
    assert m.metric('lazaret_http_refused_total{reason="client_connection_limit"}') >= 1
    assert m.metric('lazaret_http_refused_total{reason="connection_limit"}') >= 1
    assert "http.refused reason=client_connection_limit client=127.0.0.1" in m.log_text()


def test_http_caps_take_effect_on_reload(start_manager):
    m = start_manager(http__max_connections_per_client="1")
    held = []

    def hold():
        s = http_connect(m.http_port)
        if closed_by_server(s, 0.3):
            s.close()
            return False
        held.append(s)
        return True
    try:
        wait_for(hold, 5, "one connection")
        assert not hold()
        m.reload(http__max_connections_per_client="3")
        wait_for(lambda: "manager.reloaded" in m.log_text(), 10, "the reload")
        assert hold() and hold()
        assert not hold()
    finally:
        for s in held:
            s.close()


def test_slowloris_clients_are_cut_at_the_request_deadline(http_daemon):
    m = http_daemon(request_timeout="3s")
    port = m.port
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 64 + b"\r\n\r\n"
    slow = [http_connect(port) for _ in range(20)]
    closed_at = {}
    start = time.monotonic()
    fast = None
    try:
        for i in range(len(request)):
            for n, s in enumerate(slow):
                if n in closed_at:
                    continue
                try:
                    s.sendall(request[i:i + 1])
                except (BrokenPipeError, ConnectionResetError):
                    closed_at[n] = time.monotonic() - start
            if i == 1:
                # While they dribble, a normal request is answered at once.
                st, took = get(port, "/healthz")
                fast = (st, took)
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                for n, s in enumerate(slow):
                    if n not in closed_at and closed_by_server(s, 0.01):
                        closed_at[n] = time.monotonic() - start
            if len(closed_at) == len(slow) or time.monotonic() - start > t(15):
                break
    finally:
        for s in slow:
            s.close()
    assert fast is not None and fast[0] == 200 and fast[1] < t(1.0), fast
    assert len(closed_at) == len(slow), closed_at
    # Each octet would restart a per-read timeout; the deadline from the first holds.
    assert all(2.5 <= v < t(3 + 3) for v in closed_at.values()), closed_at
    assert m.metric('lazaret_http_refused_total{reason="request_timeout"}') >= len(slow)


def test_a_kept_alive_connection_idle_too_long_is_closed(start_manager):
    m = start_manager(http__keepalive_timeout="2s")
    c = http.client.HTTPConnection("127.0.0.1", m.http_port, timeout=t(10))
    try:
        c.request("GET", "/healthz")
        r = c.getresponse()
        assert r.status == 200 and r.getheader("Connection") != "close"
        r.read()
        start = time.monotonic()
        assert closed_by_server(c.sock, t(10))
        took = time.monotonic() - start
        assert 1.5 <= took < t(2 + 3), took
    finally:
        c.close()


def test_a_large_json_reply_on_a_reused_connection_is_not_held_back(manager):
    m = manager
    subject = "s" * 900
    for i in range(80):
        m.send("spam@example.jp", "u%d@corp.test" % i, make_message(subject="%d %s" % (i, subject)))
    c = http.client.HTTPConnection("127.0.0.1", m.http_port, timeout=t(10))
    took = []
    try:
        for _ in range(6):
            start = time.monotonic()
            c.request("GET", "/api/v1/messages?limit=1000",
                      headers={"Authorization": "Bearer %s" % m.token})
            r = c.getresponse()
            body = r.read()
            took.append(time.monotonic() - start)
            assert r.status == 200
            assert len(body) > 64 * 1024, len(body)
            assert len(json.loads(body)["messages"]) == 80
    finally:
        c.close()
    # Without TCP_NODELAY each reply after the first waits ~40 ms for the client's
    # delayed ACK; with it, a few ms.
    reused = sorted(took[1:])
    assert reused[len(reused) // 2] < t(0.030), took


# ---- descriptors ---------------------------------------------------------------


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_http_flood_at_the_descriptor_limit_leaves_smtp_working(start_manager):
    nofile = 256
    # Only the descriptor reserve limits HTTP here, not the connection caps.
    m = start_manager(start=False, http__max_connections="1000",
                      http__max_connections_per_client="1000")
    m.preexec_fn = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    m.start()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2000:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    lines_before = len(m.log_text().splitlines())
    flood = []
    try:
        for _ in range(400):
            flood.append(http_connect(m.http_port))
        time.sleep(t(1))
        open_ones = [s for s in flood if not closed_by_server(s, 0.01)]
        # The top half of the descriptors stays free for the rest of the daemon.
        assert 0 < len(open_ones) < nofile // 2, len(open_ones)
        # SMTP still greets, several sessions at once.
        sessions = [RawSMTP(m.smtp_port) for _ in range(20)]
        try:
            for c in sessions:
                assert c.greeting().startswith("220 ")
            assert sessions[0].cmd("NOOP") == "250 2.0.0 Ok"
        finally:
            for c in sessions:
                c.close()
    finally:
        for s in flood:
            s.close()
    refused = len(flood) - len(open_ones)
    log = m.log_text().splitlines()[lines_before:]
    refusal_lines = [ln for ln in log if "http.refused reason=descriptors" in ln]
    # Hundreds of refusals, a handful of lines: the repeats are folded.
    assert refused > 200
    assert 1 <= len(refusal_lines) <= 5 * 4, len(refusal_lines)
    assert len(log) < 150, len(log)

    def served():
        try:
            return get(m.http_port, "/healthz", timeout=2)[0] == 200
        except OSError:
            return False
    wait_for(served, 10, "HTTP answering again")
    assert m.metric('lazaret_http_refused_total{reason="descriptors"}') >= refused - 5


def test_smtp_at_the_descriptor_limit_pauses_instead_of_spinning(start_manager):
    nofile = 128
    m = start_manager(start=False, max_connections="1000",
                      max_connections_per_client="1000")
    m.preexec_fn = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    m.start()
    lines_before = len(m.log_text().splitlines())
    flood = []
    try:
        # More SMTP clients than the daemon has descriptors: accept() fails (EMFILE).
        for _ in range(nofile + 50):
            flood.append(socket.create_connection(("127.0.0.1", m.smtp_port)))
        time.sleep(t(1))
        cpu0 = cpu_seconds(m.pid)
        time.sleep(2)
        spent = cpu_seconds(m.pid) - cpu0
        # A listener spinning on accept() would burn a whole core.
        assert spent < 0.3, spent
        log = m.log_text().splitlines()[lines_before:]
        assert any("fdlimit.accept_paused listener=smtp" in ln for ln in log)
        assert len(log) < 400, len(log)
    finally:
        for s in flood:
            s.close()

    def greets():
        try:
            with RawSMTP(m.smtp_port, timeout=2) as c:
                return c.greeting().startswith("220 ")
        except (OSError, SMTPClosed):
            return False
    wait_for(greets, 10, "SMTP greeting again once descriptors are free")

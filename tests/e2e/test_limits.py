"""Resource limits of the real daemons on loopback: one limit per thing (bulk ids,
account addresses), HTTP connection caps and deadlines, descriptor reserve, SMTP
per-client caps and command deadlines, and endless lines.

Every test starts its own lazaretd (or lazaret-gw) and talks to it with raw sockets
or urllib; every refusal is asserted with its exact reply, and the store is checked
to be intact afterwards.
"""

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

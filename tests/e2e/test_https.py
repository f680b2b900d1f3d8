"""HTTPS on lazaretd's HTTP listener ([http] tls_cert / tls_key).

Certificates come from tls_fixtures (a test CA made with the openssl CLI). Clients
are curl and Python's ssl module, both verifying the chain and the host name.
"""

import json
import os
import socket
import ssl
import subprocess

import pytest

from conftest import lazaretd_path
from e2e_helpers import t, wait_for
from test_sessions import Client, add_user
from tls_fixtures import TestPKI

CURL = "/usr/bin/curl"


def https_manager(start_manager, pki=None, **overrides):
    m = start_manager(start=False, **overrides)
    pki = pki or TestPKI(m.workdir)
    cert, key = pki.good.server
    m.apply({"http__tls_cert": cert, "http__tls_key": key})
    m.http_url = "https://127.0.0.1:%d" % m.http_port
    m.http_ssl = pki.client_context()
    m.pki = pki
    return m.start()


def curl(m, *args):
    if not os.access(CURL, os.X_OK):
        pytest.fail("curl missing (Debian package curl)")
    return subprocess.run([CURL, "-sS", "--max-time", str(t(15))] + list(args),
                          capture_output=True, text=True, timeout=t(30))


def cookie_attrs(set_cookie):
    return [a.strip() for a in set_cookie.split(";")]


def test_login_and_api_over_https_with_python(start_manager):
    m = https_manager(start_manager)
    add_user(m, "tlsop", "tls-operator-pw1", "operator")
    c = Client(m)
    st, doc = c.login("tlsop", "tls-operator-pw1")
    assert st == 200, doc
    # With TLS on, the session cookie is Secure without being asked.
    assert "Secure" in cookie_attrs(c.last_headers["Set-Cookie"])
    assert c.last_headers["Strict-Transport-Security"] == "max-age=31536000"
    st, doc = c.call("GET", "/api/v1/messages")
    assert st == 200 and doc["messages"] == []
    assert c.last_headers["Strict-Transport-Security"] == "max-age=31536000"
    # Errors carry it too (every reply goes through the same path).
    st, hdrs, _ = m.http("GET", "/api/v1/nothing-here")
    assert st == 404 and hdrs["Strict-Transport-Security"] == "max-age=31536000"
    # The connection really is TLS 1.2 or newer, with the server name checked.
    with socket.create_connection(("127.0.0.1", m.http_port), timeout=t(10)) as raw:
        with m.http_ssl.wrap_socket(raw, server_hostname="localhost") as s:
            assert s.version() in ("TLSv1.2", "TLSv1.3")
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data[:200]
    assert b"\r\nStrict-Transport-Security: max-age=31536000\r\n" in data


def test_login_and_api_over_https_with_curl(start_manager):
    m = https_manager(start_manager)
    add_user(m, "curly", "curl-admin-pw-1", "admin")
    jar = os.path.join(m.workdir, "cookies.txt")
    base = "https://localhost:%d" % m.http_port
    r = curl(m, "--cacert", m.pki.good.ca, "-c", jar, "-D", "-", "-o", os.devnull,
             "-H", "Content-Type: application/json",
             "--data", json.dumps({"username": "curly", "password": "curl-admin-pw-1"}),
             base + "/api/v1/session")
    assert r.returncode == 0, r.stderr
    head = r.stdout.lower()
    assert head.startswith("http/1.1 200"), r.stdout
    assert "strict-transport-security: max-age=31536000" in head
    set_cookie = [ln for ln in r.stdout.splitlines() if ln.lower().startswith("set-cookie:")]
    assert len(set_cookie) == 1 and "; Secure" in set_cookie[0], set_cookie
    # curl's jar marks the cookie secure-only ("TRUE" in the fourth column).
    rows = [ln.split("\t") for ln in open(jar) if "lazaret_session" in ln]
    assert len(rows) == 1 and rows[0][3] == "TRUE", rows
    r = curl(m, "--cacert", m.pki.good.ca, "-b", jar, base + "/api/v1/session")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["user"]["username"] == "curly"
    # The Bearer token over HTTPS, by IP address (the certificate names 127.0.0.1 too).
    r = curl(m, "--cacert", m.pki.good.ca, "-H", "Authorization: Bearer %s" % m.token,
             "https://127.0.0.1:%d/api/v1/messages" % m.http_port)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["messages"] == []


def test_plain_http_to_the_tls_port_fails_and_the_daemon_keeps_serving(start_manager):
    m = https_manager(start_manager)
    r = curl(m, "http://127.0.0.1:%d/healthz" % m.http_port)
    assert r.returncode != 0, r.stdout  # no HTTP answer: the port speaks TLS only
    assert "HTTP/1" not in r.stdout
    with socket.create_connection(("127.0.0.1", m.http_port), timeout=t(10)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
    # At most a TLS alert record (content type 21), never an HTTP reply.
    assert not data.startswith(b"HTTP"), data[:100]
    assert data == b"" or data[0] == 21, data[:100]
    assert m.running()
    st, _ = m.api("GET", "/healthz", token=None)
    assert st == 200


def test_a_client_that_does_not_trust_the_ca_is_refused(start_manager):
    m = https_manager(start_manager)
    # curl with the system's trust store only: the test CA is unknown to it.
    r = curl(m, "https://localhost:%d/healthz" % m.http_port)
    assert r.returncode == 60, (r.returncode, r.stderr)  # CURLE_PEER_FAILED_VERIFICATION
    # Python trusting another CA.
    ctx = m.pki.client_context(ca=m.pki.wrong.ca)
    with socket.create_connection(("127.0.0.1", m.http_port), timeout=t(10)) as raw:
        with pytest.raises(ssl.SSLCertVerificationError) as e:
            ctx.wrap_socket(raw, server_hostname="localhost")
    assert e.value.verify_code == 20  # unable to get local issuer certificate
    # A name the certificate does not carry is refused as well.
    with socket.create_connection(("127.0.0.1", m.http_port), timeout=t(10)) as raw:
        with pytest.raises(ssl.SSLCertVerificationError) as e:
            m.http_ssl.wrap_socket(raw, server_hostname="other.example")
    assert e.value.verify_code == 62  # hostname mismatch
    assert m.api("GET", "/healthz", token=None)[0] == 200


def test_secure_cookies_no_and_hsts_off_are_honoured(start_manager):
    m = https_manager(start_manager, http__secure_cookies="no", http__hsts_max_age="0")
    add_user(m, "plainck", "plain-cookie-pw1", "admin")
    c = Client(m)
    assert c.login("plainck", "plain-cookie-pw1")[0] == 200
    assert "Secure" not in cookie_attrs(c.last_headers["Set-Cookie"])
    assert "Strict-Transport-Security" not in c.last_headers


def run_check(m):
    m.write_config()
    return subprocess.run([lazaretd_path(), "--check-config", "-c", m.conf_path],
                          capture_output=True, text=True, timeout=t(20))


def test_tls_config_errors(start_manager):
    m = start_manager(start=False)
    pki = TestPKI(m.workdir)
    cert, key = pki.good.server
    m.apply({"http__tls_cert": cert, "http__tls_key": None})
    r = run_check(m)
    assert r.returncode == 1
    assert r.stderr.strip().endswith(
        "[http] tls_key: is required when tls_cert is set"), r.stderr
    m.apply({"http__tls_cert": cert, "http__tls_key": os.path.join(m.workdir, "nokey.pem")})
    r = run_check(m)
    assert r.returncode == 1 and "[http] tls_key: cannot read " in r.stderr, r.stderr
    # A key that is not the certificate's: the daemon refuses to start.
    m.apply({"http__tls_cert": cert, "http__tls_key": pki.wrong.server[1]})
    m.write_config()
    p = subprocess.run([lazaretd_path(), "-c", m.conf_path], capture_output=True, text=True,
                       timeout=t(20), stdin=subprocess.DEVNULL)
    assert p.returncode != 0
    # The error is the last thing it says (the descriptor limit is logged before it).
    assert p.stderr.splitlines()[-1] == (
        "lazaretd: [http] cannot load TLS key %s: key values mismatch" % pki.wrong.server[1]), p.stderr


def test_lazaretctl_over_https_with_cacert(start_manager):
    from test_lazaretctl import ctl
    m = https_manager(start_manager)
    rc, out, err = ctl(m, "health", "--cacert", m.pki.good.ca)
    assert (rc, out) == (0, b"ok\n"), err
    rc, out, err = ctl(m, "search", env_extra={"LAZARET_CACERT": m.pki.good.ca})
    assert rc == 0, err
    # Without the CA (the system's store only) the certificate is refused.
    rc, out, err = ctl(m, "health")
    assert rc == 1 and out == b""
    assert err.startswith("lazaretctl: %s/healthz: " % m.http_url), err
    assert "certificate" in err.lower(), err
    # Another CA: refused too.
    rc, out, err = ctl(m, "health", "--cacert", m.pki.wrong.ca)
    assert rc == 1 and "certificate" in err.lower(), err


def test_connection_caps_and_deadlines_hold_for_https(start_manager):
    """The per-client cap, the request deadline and the idle timeout apply to TLS
    connections too: a client cannot hold slots with handshakes it never finishes
    or requests it never ends."""
    m = https_manager(start_manager, http__max_connections_per_client="2",
                      http__request_timeout="2s", http__keepalive_timeout="2s")
    held = []

    def hold():
        raw = socket.create_connection(("127.0.0.1", m.http_port), timeout=t(5))
        try:
            s = m.http_ssl.wrap_socket(raw, server_hostname="127.0.0.1")
        except (ssl.SSLError, OSError):
            raw.close()  # the start-up probe's connection may still count for a moment
            return False
        held.append(s)
        return True

    def closed_within(s, seconds):
        s.settimeout(seconds)
        try:
            return s.recv(4096) == b""
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            return True
        except socket.timeout:
            return False

    try:
        for _ in range(2):
            wait_for(hold, 5, "a TLS connection")
        # A third from the same address is closed before any handshake.
        s = socket.create_connection(("127.0.0.1", m.http_port), timeout=t(5))
        assert closed_within(s, t(2))
        s.close()
        # A TLS request that never ends is cut at the request deadline.
        held[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert closed_within(held[0], t(8))
    finally:
        for s in held:
            s.close()
    # A connection that never starts its handshake is closed at the idle timeout.
    s = socket.create_connection(("127.0.0.1", m.http_port), timeout=t(5))
    assert closed_within(s, t(8))
    s.close()
    log = m.log_text()
    assert "http.refused reason=client_connection_limit client=127.0.0.1" in log
    assert "http.timeout" in log
    # HTTPS still answers, and counted the refusal.
    assert m.metrics()['lazaret_http_refused_total{reason="client_connection_limit"}'] >= 1

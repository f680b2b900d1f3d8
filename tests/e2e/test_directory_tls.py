"""TLS to the end users' directories: a real Dovecot with STARTTLS and imaps, and a
real slapd with ldaps:// and StartTLS, each started by the test with certificates
from tls_fixtures (a test CA made with the openssl CLI).

The proof that no password went in clear is Dovecot's own log: its "Login:" line
says "TLS" for a login inside TLS, and with an untrusted certificate there is no
login attempt at all.
"""

import contextlib
import os
import re

import pytest

from conftest import ldap_manager, listening_daemon
from e2e_helpers import free_port, make_message, wait_for
from test_sessions import Client
from tls_fixtures import TestPKI


class Dovecot:
    def __init__(self, d, port, imaps_port):
        self.dir = d
        self.port = port
        self.imaps_port = imaps_port
        self.host = "127.0.0.1:%d" % port
        self.imaps_host = "127.0.0.1:%d" % imaps_port
        self.log_path = os.path.join(d, "dovecot.log")

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""


@pytest.fixture
def pki(workdir):
    return TestPKI(workdir)


@pytest.fixture
def start_dovecot(workdir, pki):
    """Factory: start_dovecot(authority) -> Dovecot with STARTTLS on one port and imaps on
    another, on 127.0.0.1 and 127.0.0.2, its certificate issued by authority."""
    with contextlib.ExitStack() as stack:
        yield lambda authority: _dovecot(stack, workdir, authority)


@pytest.fixture
def dovecot_tls(start_dovecot, pki):
    return start_dovecot(pki.good)


def _dovecot(stack, workdir, authority):
    if not os.access("/usr/sbin/dovecot", os.X_OK):
        pytest.fail("/usr/sbin/dovecot missing (Debian package dovecot-imapd)")
    cert, key = authority.server
    d = os.path.join(workdir, "imap")
    for sub in ("run", "mail"):
        os.makedirs(os.path.join(d, sub))
    os.chmod(d, 0o755)
    uid, gid = os.getuid(), os.getgid()
    with open(os.path.join(d, "passwd"), "w") as f:
        f.write("hanako:{PLAIN}hanako-imap-pw:%d:%d::%s/mail/hanako\n" % (
            65534 if uid == 0 else uid, 65534 if uid == 0 else gid, d))
    os.chmod(os.path.join(d, "mail"), 0o777)
    port, imaps_port = free_port(), free_port()
    lines = [
        "base_dir = %s/run" % d,
        "state_dir = %s/run" % d,
        "instance_name = lazaret-e2e-tls-%d" % port,
        "protocols = imap",
        "listen = 127.0.0.1, 127.0.0.2",
        "ssl = yes",
        "ssl_cert = <%s" % cert,
        "ssl_key = <%s" % key,
        "ssl_min_protocol = TLSv1.2",
        "disable_plaintext_auth = yes",
        "auth_failure_delay = 0",
        "auth_verbose = yes",
        "verbose_ssl = yes",
        "log_path = %s/dovecot.log" % d,
        "mail_location = maildir:%s/mail/%%u" % d,
        "passdb {", "  driver = passwd-file", "  args = %s/passwd" % d, "}",
        "userdb {", "  driver = passwd-file", "  args = %s/passwd" % d, "}",
        "service imap-login {", "  chroot =",
        "  inet_listener imap {", "    address = 127.0.0.1, 127.0.0.2", "    port = %d" % port, "  }",
        "  inet_listener imaps {", "    address = 127.0.0.1, 127.0.0.2",
        "    port = %d" % imaps_port,
        "    ssl = yes", "  }", "}",
        "service anvil {", "  chroot =", "}",
    ]
    if uid == 0:
        lines += ["default_login_user = nobody", "default_internal_user = nobody",
                  "default_internal_group = nogroup"]
    conf = os.path.join(d, "dovecot.conf")
    with open(conf, "w") as f:
        f.write("\n".join(lines) + "\n")
    stack.enter_context(listening_daemon(["/usr/sbin/dovecot", "-F", "-c", conf], port,
                                         "dovecot"))
    return Dovecot(d, port, imaps_port)


def tls_login_line(dv):
    """Dovecot's log line for hanako's successful login."""
    wait_for(lambda: "Login: user=<hanako>" in dv.log(), 10, "dovecot to log the login")
    (line,) = [ln for ln in dv.log().splitlines() if "Login: user=<hanako>" in ln]
    return line


def imap_manager(start_manager, pki, host, tls, ca=True):
    return start_manager(auth_imap__host=host, auth_imap__domain="corp.test",
                         auth_imap__tls=tls,
                         auth_imap__ca_file=pki.good.ca if ca else None)


def login_and_list(m):
    mine = m.send("s@example.jp", "hanako@corp.test", make_message(to="hanako@corp.test"))
    c = Client(m)
    assert c.login("hanako", "wrong-pw")[0] == 401
    st, doc = c.login("hanako", "hanako-imap-pw")
    assert st == 200, doc
    assert doc["user"]["addresses"] == ["hanako@corp.test"]
    st, doc = c.call("GET", "/api/v1/messages")
    assert st == 200 and [x["id"] for x in doc["messages"]] == [mine]


def test_imap_login_over_starttls(start_manager, pki, dovecot_tls):
    m = imap_manager(start_manager, pki, dovecot_tls.host, "starttls")
    login_and_list(m)
    # Dovecot saw the login inside TLS (its "secured" flag names TLS).
    line = tls_login_line(dovecot_tls)
    assert re.search(r"imap-login: Info: Login: user=<hanako>, method=PLAIN, rip=127\.0\.0\.1, "
                     r"lip=127\.0\.0\.1, mpid=\d+, TLS, ", line), line


def test_imap_login_over_imaps(start_manager, pki, dovecot_tls):
    m = imap_manager(start_manager, pki, dovecot_tls.imaps_host, "imaps")
    login_and_list(m)
    line = tls_login_line(dovecot_tls)
    assert ", TLS, " in line, line


@pytest.mark.parametrize("mode", ["starttls", "imaps"])
def test_imap_server_with_an_untrusted_certificate_never_sees_the_password(
        start_manager, pki, start_dovecot, mode):
    dovecot_tls = start_dovecot(pki.wrong)
    host = dovecot_tls.host if mode == "starttls" else dovecot_tls.imaps_host
    m = imap_manager(start_manager, pki, host, mode)
    c = Client(m)
    st, doc = c.login("hanako", "hanako-imap-pw")
    assert st == 503, doc
    assert doc == {"error": {"code": "unavailable",
                             "message": "login is not possible right now"}}
    assert ("auth.imap_failed step=tls host=%s error=\"certificate verify failed: unable to "
            "get local issuer certificate\"" % host) in m.log_text(), m.log_text()
    # No login attempt reached Dovecot: the password was never sent.
    # Dovecot words the line by its own state ("no auth attempts in N secs" as a
    # rule; "disconnected before auth was ready" when its auth process is still
    # starting, as on a loaded machine): what counts is a disconnection of user=<>
    # in the TLS handshake, with no auth attempt.
    refused = re.compile(r"imap-login: Info: Disconnected[^\n]*\((no auth attempts in \d+ "
                         r"secs|disconnected before auth was ready, waited \d+ secs)\): "
                         r"user=<>, rip=127\.0\.0\.1, lip=127\.0\.0\.1[^\n]*")
    try:
        wait_for(lambda: refused.search(dovecot_tls.log()), 10,
                 "dovecot to log the refused handshake")
    except AssertionError as e:
        raise AssertionError("%s\ndovecot.log:\n%s" % (e, dovecot_tls.log())) from None
    log = dovecot_tls.log()
    assert "Login: user=<hanako>" not in log
    assert "auth failed" not in log.lower()


def test_imap_without_the_ca_uses_the_system_store_and_refuses(start_manager, pki, dovecot_tls):
    m = imap_manager(start_manager, pki, dovecot_tls.host, "starttls", ca=False)
    st, _ = Client(m).login("hanako", "hanako-imap-pw")
    assert st == 503
    assert "auth.imap_failed step=tls" in m.log_text()
    assert "Login: user=<hanako>" not in dovecot_tls.log()


def test_imap_certificate_must_name_the_host(start_manager, pki, dovecot_tls):
    # The certificate names localhost and 127.0.0.1, not 127.0.0.2 (still loopback).
    m = start_manager(auth_imap__host="127.0.0.2:%d" % dovecot_tls.port,
                      auth_imap__domain="corp.test", auth_imap__tls="starttls", auth_imap__ca_file=pki.good.ca)
    st, _ = Client(m).login("hanako", "hanako-imap-pw")
    assert st == 503
    assert ("auth.imap_failed step=tls host=127.0.0.2:%d error=\"certificate verify failed: "
            "IP address mismatch\"" % dovecot_tls.port) in m.log_text(), m.log_text()


# ---- LDAP: slapd with ldaps:// and StartTLS ------------------------------------------


class Slapd:
    def __init__(self, port, ldaps_port):
        self.uri = "ldap://127.0.0.1:%d/" % port
        self.ldaps_uri = "ldaps://127.0.0.1:%d/" % ldaps_port


@pytest.fixture
def start_slapd(workdir):
    """Factory: start_slapd(authority) -> Slapd serving ldap:// (StartTLS) and ldaps://
    with a certificate from authority. `security tls=1`: nothing but TLS is served, so
    a login that works went over TLS."""
    with contextlib.ExitStack() as stack:
        yield lambda authority: _slapd(stack, workdir, authority)


def _slapd(stack, workdir, authority):
    from conftest import slapd_directory
    cert, key = authority.server
    conf = slapd_directory(os.path.join(workdir, "ldap-%s" % authority.name), [
        "TLSCACertificateFile %s" % authority.ca,
        "TLSCertificateFile %s" % cert,
        "TLSCertificateKeyFile %s" % key,
        "security tls=1"])
    port, ldaps_port = free_port(), free_port()
    urls = "ldap://127.0.0.1:%d/ ldaps://127.0.0.1:%d/" % (port, ldaps_port)
    stack.enter_context(listening_daemon(["/usr/sbin/slapd", "-d", "0", "-h", urls, "-f", conf],
                                         port, "slapd"))
    return Slapd(port, ldaps_port)


def ldap_login(m):
    c = Client(m)
    st, doc = c.login("taro", "taro-ldap-pw")
    return st, doc


@pytest.mark.parametrize("mode", ["starttls", "ldaps"])
def test_ldap_login_over_tls(start_manager, pki, start_slapd, mode):
    sd = start_slapd(pki.good)
    if mode == "starttls":
        m = ldap_manager(start_manager, sd.uri, auth_ldap__starttls="yes",
                         auth_ldap__ca_file=pki.good.ca)
    else:
        m = ldap_manager(start_manager, sd.ldaps_uri, auth_ldap__ca_file=pki.good.ca)
    st, doc = ldap_login(m)
    assert st == 200, (doc, m.log_text())
    assert doc["user"]["addresses"] == ["taro@corp.test", "yamada@corp.test"]
    st, _ = Client(m).login("taro", "wrong-password")
    assert st == 401
    assert "auth.ldap_plaintext" not in m.log_text()


def test_ldap_in_clear_is_refused_by_a_tls_only_directory(start_manager, pki, start_slapd):
    # The same directory without StartTLS: slapd refuses the bind (confidentiality required),
    # which shows the logins above really went over TLS.
    sd = start_slapd(pki.good)
    m = ldap_manager(start_manager, sd.uri)
    st, doc = ldap_login(m)
    assert st == 503, doc
    assert ("auth.ldap_failed step=service_bind uri=%s error=Confidentiality required"
            % sd.uri) in m.log_text(), m.log_text()
    assert ("auth.ldap_plaintext uri=%s reason=\"passwords go in clear: use ldaps:// or "
            "starttls = yes unless the directory is on loopback\"" % sd.uri) in m.log_text()


@pytest.mark.parametrize("mode", ["starttls", "ldaps"])
def test_ldap_server_with_an_untrusted_certificate_is_refused(start_manager, pki, start_slapd,
                                                               mode):
    sd = start_slapd(pki.wrong)
    if mode == "starttls":
        m = ldap_manager(start_manager, sd.uri, auth_ldap__starttls="yes",
                         auth_ldap__ca_file=pki.good.ca)
        step, uri = "starttls", sd.uri
    else:
        m = ldap_manager(start_manager, sd.ldaps_uri, auth_ldap__ca_file=pki.good.ca)
        step, uri = "tls", sd.ldaps_uri
    st, doc = ldap_login(m)
    assert st == 503, doc
    assert doc == {"error": {"code": "unavailable",
                             "message": "login is not possible right now"}}
    assert re.search(r"auth\.ldap_failed step=%s uri=%s error=\"(Connect error|Can't contact "
                     r"LDAP server)\" detail=" % (step, re.escape(uri)), m.log_text()), \
        m.log_text()
    # Nothing got as far as a bind.
    assert "step=service_bind" not in m.log_text()


def test_ldap_tls_config_errors(start_manager, pki):
    import subprocess
    from conftest import lazaretd_path
    m = start_manager(start=False, auth_ldap__uri="ldaps://127.0.0.1:636/",
                      auth_ldap__base_dn="dc=example,dc=com", auth_ldap__starttls="yes")
    m.write_config()
    r = subprocess.run([lazaretd_path(), "--check-config", "-c", m.conf_path],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "[auth_ldap] starttls: is for ldap:// URIs (ldaps:// is TLS already)" in r.stderr
    m.apply({"auth_ldap__starttls": None, "auth_ldap__ca_file": pki.good.server[1]})
    m.write_config()
    r = subprocess.run([lazaretd_path(), "--check-config", "-c", m.conf_path],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "[auth_ldap] ca_file: cannot load CA file %s: " % pki.good.server[1] in r.stderr, \
        r.stderr

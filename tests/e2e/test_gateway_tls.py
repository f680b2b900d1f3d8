"""TLS on the gateway -> manager channels, with the real lazaret-gw and lazaretd.

Spam goes from lazaret-gw to lazaretd's quarantine listener over STARTTLS
([external_spam_quarantine] tls = yes, tls_ca, tls_cert/tls_key), verified against
a test CA made with the openssl CLI (tls_fixtures.py); the manager can require
STARTTLS ([spam_quarantine] tls_require) and client certificates (tls_client_ca).
The safelist sync goes over HTTPS with [manager] api_ca.
"""

import os
import re
import smtplib
import subprocess

from e2e_helpers import t, wait_for
from gw_fixtures import GTUBE, lazaret_gw_path, make_message, start_gateway  # noqa: F401
from tls_fixtures import TestPKI

TLS_REQUIRED = "530 5.7.0 Must issue a STARTTLS command first"


def spam_message(subject="cheap pills"):
    return make_message(subject=subject, body="Buy now.\r\n%s\r\n" % GTUBE)


def tls_manager(start_manager, pki, server=None, **overrides):
    """A manager offering STARTTLS with the good CA's server certificate (or server)."""
    m = start_manager(start=False, **overrides)
    cert, key = server or pki.good.server
    m.apply({"spam_quarantine__tls_cert": cert, "spam_quarantine__tls_key": key})
    return m.start()


def tls_gateway(start_gateway, aio_sink, mgr, **tls):
    conf = {"enabled": "yes", "host": "127.0.0.1", "port": str(mgr.smtp_port), "tls": "yes"}
    conf.update(tls)
    return start_gateway(aio_sink.host, external_spam_quarantine=conf)


def subjects(mgr):
    return [m["subject"] for m in mgr.list_all()]


def test_spam_goes_to_the_manager_over_starttls_and_plain_mail_is_refused(
        start_gateway, start_manager, aio_sink, workdir):
    pki = TestPKI(workdir)
    mgr = tls_manager(start_manager, pki, spam_quarantine__tls_require="yes")
    gw = tls_gateway(start_gateway, aio_sink, mgr, tls_ca=pki.good.ca)
    code, text = gw.send("spammer@sender.test", "bob@example.com", spam_message("over tls"))
    assert code == 250, text
    assert subjects(mgr) == ["over tls"]
    assert aio_sink.count() == 0
    log = mgr.log_text()
    assert re.search(r"smtp\.tls_established session=\S+ client=127\.0\.0\.1 "
                     r"version=TLSv1\.[23] cipher=\S+ client_cert=-", log), log

    # A plain client cannot hand anything in: 530 until STARTTLS.
    s = mgr.smtp()
    s.ehlo("plain.e2e.test")
    assert s.has_extn("starttls")
    code, resp = s.mail("spammer@sender.test")
    assert "%d %s" % (code, resp.decode()) == TLS_REQUIRED
    code, resp = s.docmd("RCPT TO:<bob@example.com>")
    assert "%d %s" % (code, resp.decode()) == TLS_REQUIRED
    code, resp = s.docmd("DATA")
    assert "%d %s" % (code, resp.decode()) == TLS_REQUIRED
    s.quit()
    assert subjects(mgr) == ["over tls"]  # the store is as it was


def test_a_manager_certificate_from_another_ca_is_refused(start_gateway, start_manager,
                                                          aio_sink, workdir):
    pki = TestPKI(workdir)
    mgr = tls_manager(start_manager, pki, server=pki.wrong.server)
    gw = tls_gateway(start_gateway, aio_sink, mgr, tls_ca=pki.good.ca)
    code, text = gw.send("spammer@sender.test", "bob@example.com", spam_message())
    assert code == 451, text
    assert re.search(r"gw\.sent id=\S+ route=external_spam host=127\.0\.0\.1:%d rcpts=1 "
                     r"status=deferred reply=\"TLS with 127\.0\.0\.1:%d failed: certificate "
                     r"verify failed: unable to get local issuer certificate\""
                     % (mgr.smtp_port, mgr.smtp_port), gw.log_text()), gw.log_text()
    assert mgr.list_all() == []
    assert aio_sink.count() == 0


def test_a_manager_without_starttls_gets_nothing(start_gateway, start_manager, aio_sink,
                                                 workdir):
    pki = TestPKI(workdir)
    mgr = start_manager()  # no certificate: no STARTTLS
    gw = tls_gateway(start_gateway, aio_sink, mgr, tls_ca=pki.good.ca)
    code, text = gw.send("spammer@sender.test", "bob@example.com", spam_message())
    assert code == 451, text
    assert ("reply=\"TLS required but 127.0.0.1:%d does not offer STARTTLS\"" % mgr.smtp_port
            in gw.log_text()), gw.log_text()
    assert mgr.list_all() == []


def test_client_certificates_are_required_when_the_manager_has_a_client_ca(
        start_gateway, start_manager, aio_sink, workdir):
    pki = TestPKI(workdir)
    mgr = tls_manager(start_manager, pki, spam_quarantine__tls_require="yes",
                      spam_quarantine__tls_client_ca=pki.good.ca)
    # No client certificate: the handshake fails on the manager's side.
    gw = tls_gateway(start_gateway, aio_sink, mgr, tls_ca=pki.good.ca)
    code, text = gw.send("spammer@sender.test", "bob@example.com", spam_message("no cert"))
    assert code == 451, text
    wait_for(lambda: "smtp.tls_error" in mgr.log_text(), 10, "the manager to log the refusal")
    assert re.search(r"smtp\.tls_error session=\S+ client=127\.0\.0\.1 error=\"[^\n]*"
                     r"peer did not return a certificate", mgr.log_text()), mgr.log_text()
    # A certificate from another CA: refused too.
    gw_wrong = tls_gateway(start_gateway, aio_sink, mgr, tls_ca=pki.good.ca,
                           tls_cert=pki.wrong.client[0], tls_key=pki.wrong.client[1])
    code, text = gw_wrong.send("spammer@sender.test", "bob@example.com",
                               spam_message("wrong cert"))
    assert code == 451, text
    assert mgr.list_all() == []
    # The right certificate: accepted, stored exactly once.
    gw_ok = tls_gateway(start_gateway, aio_sink, mgr, tls_ca=pki.good.ca,
                        tls_cert=pki.good.client[0], tls_key=pki.good.client[1])
    code, text = gw_ok.send("spammer@sender.test", "bob@example.com", spam_message("good cert"))
    assert code == 250, text
    assert subjects(mgr) == ["good cert"]
    assert "client_cert=\"/CN=gateway.e2e.test\"" in mgr.log_text()
    # Python's smtplib with the right certificate gets through as well; without, it does not.
    s = mgr.smtp()
    s.ehlo("py.e2e.test")
    s.starttls(context=pki.client_context(cert=pki.good.client))
    s.ehlo("py.e2e.test")
    mid = mgr.send("py@sender.test", ["bob@example.com"], make_message(subject="py cert"),
                   conn=s)
    s.quit()
    assert mgr.get_message(mid)["subject"] == "py cert"
    s = mgr.smtp()
    s.ehlo("py.e2e.test")
    try:
        s.starttls(context=pki.client_context())
        # TLS 1.3: the server's refusal arrives with the first read after the handshake.
        s.ehlo("py.e2e.test")
        raise AssertionError("the manager accepted a client without a certificate")
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        s.close()
    assert sorted(subjects(mgr)) == ["good cert", "py cert"]
    assert mgr.running()


def run_gw_check(gw):
    gw.write_config()
    return subprocess.run([lazaret_gw_path(), "--check-config", "-c", gw.conf_path],
                          capture_output=True, text=True, timeout=t(20))


def test_gateway_tls_config_errors(start_gateway, aio_sink, workdir):
    pki = TestPKI(workdir)
    gw = start_gateway(aio_sink.host, start=False,
                       external_spam_quarantine={"enabled": "yes", "tls_ca": pki.good.ca})
    r = run_gw_check(gw)
    assert r.returncode == 1
    assert "[external_spam_quarantine] tls_ca: needs tls = yes" in r.stderr, r.stderr
    gw.apply({"external_spam_quarantine": {"tls": "yes", "tls_cert": pki.good.client[0]}})
    r = run_gw_check(gw)
    assert r.returncode == 1
    assert "[external_spam_quarantine] tls_key: is required when tls_cert is set" in r.stderr
    gw.apply({"external_spam_quarantine": {"tls_cert": None,
                                           "tls_ca": os.path.join(workdir, "none.pem")}})
    r = run_gw_check(gw)
    assert r.returncode == 1
    assert "[external_spam_quarantine] tls_ca: cannot read " in r.stderr, r.stderr


def test_safelist_sync_over_https_with_the_ca_file(start_gateway, start_manager, aio_sink,
                                                   workdir):
    pki = TestPKI(workdir)
    mgr = start_manager(start=False, http__tls_cert=pki.good.server[0],
                        http__tls_key=pki.good.server[1])
    mgr.http_url = "https://127.0.0.1:%d" % mgr.http_port
    mgr.http_ssl = pki.client_context()
    mgr.start()
    st, doc = mgr.api("PUT", "/api/v1/slbl/bob@example.com",
                      json={"recipient": "bob@example.com", "safelist": [],
                            "blocklist": ["alice@sender.test"]})
    assert st == 200, doc
    ext = {"enabled": "yes", "host": "127.0.0.1", "port": str(mgr.smtp_port),
           "safelist_blocklist": "yes", "blocklist_action": "delete"}
    # Without the CA the manager's certificate is not trusted: no sync.
    gw_bad = start_gateway(aio_sink.host, manager={"api_url": mgr.http_url,
                                                   "api_token": mgr.token},
                           external_spam_quarantine=dict(ext))
    gw_bad.wait_log("gw.slbl_sync_failed")
    assert "slbl_cache.fetch_failed url=https://127.0.0.1:%d/api/v1/slbl?since=0 error=" \
        % mgr.http_port in gw_bad.log_text()
    assert "gw.slbl_synced" not in gw_bad.log_text()
    # With it, the lists arrive and apply.
    gw = start_gateway(aio_sink.host, manager={"api_url": mgr.http_url, "api_token": mgr.token,
                                               "api_ca": pki.good.ca},
                       external_spam_quarantine=dict(ext))
    gw.wait_log("gw.slbl_synced")
    code, text = gw.send("alice@sender.test", ["bob@example.com", "carol@example.com"],
                         make_message())
    assert code == 250, text
    (d,) = aio_sink.wait_count(1)
    assert d["rcpts"] == ["carol@example.com"]

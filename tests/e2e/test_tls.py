"""STARTTLS on the quarantine listener."""

import os
import ssl

from e2e_helpers import RawSMTP, make_cert, make_message, t


def tls_manager(start_manager):
    m = start_manager(start=False)
    cert, key = make_cert(m.workdir)
    # Relative paths: relative to the config file's folder.
    m.apply({"tls_cert": os.path.basename(cert), "tls_key": os.path.basename(key)})
    return m.start()


def client_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def test_starttls_then_send(start_manager):
    m = tls_manager(start_manager)
    s = m.smtp()
    code, resp = s.ehlo("client.e2e.test")
    assert code == 250
    assert s.has_extn("starttls")
    code, resp = s.starttls(context=client_context())
    assert code == 220, resp
    assert isinstance(s.sock, ssl.SSLSocket)
    code, resp = s.ehlo("client.e2e.test")
    assert code == 250
    assert not s.has_extn("starttls"), "STARTTLS offered again inside TLS"
    raw = make_message("over TLS 暗号化")
    mid = m.send("tls@example.jp", ["u@corp.test"], raw, conn=s)
    s.quit()
    msg = m.get_message(mid)
    assert msg["subject"] == "over TLS 暗号化"
    assert m.http("GET", "/api/v1/messages/%s/raw" % mid)[2] == raw


def test_commands_sent_before_the_handshake_are_dropped(start_manager):
    m = tls_manager(start_manager)
    with RawSMTP(m.smtp_port) as c:
        c.greeting()
        c.ehlo()
        # Plaintext injected after STARTTLS must not be run inside the TLS session.
        c.send("STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n")
        line = c.reply_line()
        if not line.startswith("220 "):
            return  # refusing the pipelined STARTTLS is also safe
        c.starttls()
        c.send("EHLO again\r\n")
        code, lines = c.reply()
        assert code == 250 and lines[0].startswith("250"), lines
        assert not any("2.1.0" in ln for ln in lines), lines
        # No transaction is open: RCPT needs MAIL.
        assert c.cmd("RCPT TO:<u@corp.test>") == "503 5.5.1 Error: need MAIL command"


def test_no_starttls_without_a_certificate(manager):
    s = manager.smtp()
    s.ehlo("client.e2e.test")
    assert not s.has_extn("starttls")
    code, _ = s.docmd("STARTTLS")
    assert code >= 400
    # The session is still usable in plaintext.
    mid = manager.send("a@example.jp", ["u@corp.test"], make_message("plain"), conn=s)
    s.quit()
    assert manager.get_message(mid)["id"] == mid


def test_missing_certificate_file_is_a_config_error(start_manager):
    m = start_manager(start=False, tls_cert="missing-cert.pem", tls_key="missing-key.pem")
    m.write_config()
    import subprocess
    from conftest import lazaretd_path
    r = subprocess.run([lazaretd_path(), "-c", m.conf_path], capture_output=True,
                       timeout=t(20), stdin=subprocess.DEVNULL)
    out = (r.stdout + r.stderr).decode()
    assert r.returncode != 0
    assert "missing-cert.pem" in out or "tls_cert" in out, out

"""The gateway's engine clients against the real daemons: SpamAssassin's spamd,
ClamAV's clamd and rspamd, each started once per module by the test itself, on
loopback, with a private configuration (never the system services), driven through
build/lazaret-scan. The daemons' fixtures and how they are set up are in
engine_fixtures.py (shared with test_gateway_engines.py).
"""

import os
import subprocess

import pytest

from conftest import find_binary
from e2e_helpers import free_port, sanitizer_report, t
from engine_fixtures import (CLAMD_STREAM_MAX, EICAR, EICAR_SIG, HAM, clamd,  # noqa: F401
                             eicar_mail, rspamd, spam_message, spamd)

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def scan_binary():
    p = find_binary("lazaret-scan")
    if not os.access(p, os.X_OK):
        pytest.fail("lazaret-scan not built at %s" % p)
    return p


def scan(engine, message, *args, timeout=30):
    """Runs lazaret-scan on message bytes; returns (exit code, fields, stderr)."""
    proc = subprocess.run([scan_binary(), "-t", str(int(t(20) * 1000)), *args, engine, "-"],
                          input=message, capture_output=True, timeout=t(timeout))
    fields = {}
    for word in proc.stdout.decode().split():
        k, _, v = word.partition("=")
        fields[k] = v
    err = proc.stderr.decode(errors="replace")
    rep = sanitizer_report(err)
    assert rep is None, "lazaret-scan: sanitizer report:\n%s" % rep
    return proc.returncode, fields, err


# ---- spamd ----------------------------------------------------------------------------

def test_spamd_gtube_over_tcp(spamd):
    rc, f, err = scan("spamd", spam_message(), "-a", spamd.addr)
    assert rc == 1, err + spamd.log_text()
    assert float(f["score"]) >= 1000.0
    assert "GTUBE" in f["rules"].split(",")
    assert f["spam"] == "yes"


def test_spamd_gtube_over_unix_socket(spamd):
    rc, f, err = scan("spamd", spam_message(), "-a", spamd.sock)
    assert rc == 1, err
    assert float(f["score"]) >= 1000.0
    assert "GTUBE" in f["rules"].split(",")


def test_spamd_ham_scores_low(spamd):
    rc, f, err = scan("spamd", HAM, "-a", spamd.addr)
    assert rc == 0, err
    assert float(f["score"]) < 5.0
    assert "GTUBE" not in f.get("rules", "")


def test_spamd_unreachable_is_an_error():
    rc, f, err = scan("spamd", HAM, "-a", "127.0.0.1:%d" % free_port(), timeout=10)
    assert rc == 2
    assert "score" not in f
    assert "Connection refused" in err


# ---- clamd ----------------------------------------------------------------------------

def test_clamd_finds_eicar_over_tcp(clamd):
    rc, f, err = scan("clamd", EICAR, "-a", clamd.addr)
    assert rc == 1, err
    assert f["infected"] == "yes"
    assert f["virus"].startswith(EICAR_SIG)


def test_clamd_finds_eicar_attachment_over_unix_socket(clamd):
    rc, f, err = scan("clamd", eicar_mail(), "-a", clamd.sock)
    assert rc == 1, err
    assert f["infected"] == "yes"
    assert f["virus"].startswith(EICAR_SIG)


def test_clamd_clean_mail(clamd):
    rc, f, err = scan("clamd", HAM, "-a", clamd.addr)
    assert rc == 0, err
    assert f["infected"] == "no"
    assert "virus" not in f


def test_clamd_stream_limit_is_an_error_not_clean(clamd):
    # Larger than StreamMaxLength: clamd refuses; the client must not say clean.
    big = HAM + b"x" * (2 * CLAMD_STREAM_MAX)
    rc, f, err = scan("clamd", big, "-a", clamd.addr)
    assert rc == 2, (rc, f, err)
    assert "infected" not in f
    # Just under the limit still scans (chunking respects the limit).
    rc, f, err = scan("clamd", HAM + b"y" * (CLAMD_STREAM_MAX - len(HAM) - 16), "-a", clamd.addr)
    assert rc == 0, err
    assert f["infected"] == "no"


# ---- rspamd ---------------------------------------------------------------------------

def test_rspamd_gtube(rspamd):
    rc, f, err = scan("rspamd", spam_message(), "-a", rspamd.sock, "-i", "192.0.2.1",
                      "-H", "mail.example.com", "-f", "sender@example.com",
                      "-R", "user@example.jp")
    assert rc == 1, err + rspamd.log_text()
    assert float(f["score"]) == 1000.0
    assert "GTUBE" in f["rules"].split(",")


def test_rspamd_ordinary_mail_has_a_score(rspamd):
    rc, f, err = scan("rspamd", HAM, "-a", rspamd.sock, "-s", "15", "-i", "192.0.2.1",
                      "-f", "taro@example.jp", "-R", "hanako@example.jp")
    assert rc == 0, err + rspamd.log_text()
    score = float(f["score"])
    assert -50 < score < 15
    assert "GTUBE" not in f.get("rules", "")
    assert f.get("rules")  # rspamd always names some symbols (e.g. MIME_GOOD)


# ---- builtin through the command line -------------------------------------------------

def test_builtin_shipped_rules_japanese_subject():
    rules = os.path.join(REPO, "etc", "lazaret-gw.rules")
    msg = (b"From: shop@example.com\r\nTo: user@example.jp\r\n"
           b"Subject: =?ISO-2022-JP?B?GyRCTCQ+NUJ6OS05cCIoJTshPCVrMys6RUNmGyhC?=\r\n\r\nhello\r\n")
    rc, f, err = scan("builtin", msg, "-r", rules)
    assert rc == 1, err
    assert "JP_UNSOLICITED_AD_MARK" in f["rules"].split(",")
    rc, f, err = scan("builtin", HAM, "-r", rules)
    assert rc == 0, err
    assert float(f["score"]) == 0.0
    rc, f, err = scan("builtin", spam_message())
    assert rc == 1 and float(f["score"]) == 1000.0 and f["rules"] == "GTUBE"


def test_builtin_bad_rules_file_names_the_line(tmp_path):
    p = tmp_path / "bad.rules"
    p.write_text("# ok\nbody =~ /x/ score 1\nheader Subject =~ /(/ score 1\n")
    rc, f, err = scan("builtin", HAM, "-r", str(p))
    assert rc == 64
    assert "%s:3: bad regular expression" % p in err

"""lazaretd as a program: --version, --help, --check-config, logging, signals, paths."""

import os
import re
import signal
import subprocess
import time

import pytest

from conftest import MANAGER_NAME, lazaretd_path, render_config
from e2e_helpers import RawSMTP, make_message, t, wait_for

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def project_version():
    with open(os.path.join(REPO, "meson.build"), encoding="utf-8") as f:
        m = re.search(r"version\s*:\s*'([^']+)'", f.read())
    return m.group(1)


def run_daemon(*args, timeout=20):
    if not os.access(lazaretd_path(), os.X_OK):
        pytest.fail("lazaretd not built at %s" % lazaretd_path())
    return subprocess.run([lazaretd_path(), *args], stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=t(timeout), cwd="/")


def good_sections(workdir):
    return {
        "manager": {"name": "lazaret1", "data_dir": os.path.join(workdir, "data")},
        "http": {"listen": "127.0.0.1:18080", "admin_token": "change-me"},
        "spam_quarantine": {"listen": "127.0.0.1:16025",
                            "accept_from": "127.0.0.1/32, ::1/128",
                            "delete_after": "14d", "purge_interval": "1h",
                            "max_message_size": "50M"},
        "release": {"primary_host": "127.0.0.1:10025", "secondary_host": "",
                    "source_address": "127.0.0.1"},
    }


def write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def line_of(text, needle):
    for i, ln in enumerate(text.splitlines(), 1):
        if needle in ln:
            return i
    raise AssertionError(needle)


def test_version_prints_the_project_version():
    r = run_daemon("--version")
    assert r.returncode == 0, r
    out = (r.stdout + r.stderr).decode()
    assert project_version() in out
    assert "lazaretd" in out


def test_help_lists_the_options():
    r = run_daemon("--help")
    assert r.returncode == 0, r
    out = (r.stdout + r.stderr).decode()
    for opt in ("-c", "--check-config", "--version", "--help"):
        assert opt in out, (opt, out)


def test_unknown_option_is_an_error():
    r = run_daemon("--no-such-option")
    assert r.returncode != 0
    assert (r.stdout + r.stderr).strip(), "no message for a bad option"


def test_check_config_accepts_the_contract_example(workdir):
    conf = os.path.join(workdir, "lazaretd.conf")
    # The example configuration of the manager, comments included.
    write(conf, """[manager]
name = lazaret1              ; appears in trace headers
data_dir = ../var/lazaret    ; store lives here

[http]
listen = 127.0.0.1:8080
admin_token = change-me      ; Bearer token for /api/v1 (admin rights)

[spam_quarantine]
listen = 127.0.0.1:6025
accept_from = 127.0.0.1/32, ::1/128   ; CIDRs; others: 554 at connect
delete_after = 14d                    ; 0 = never delete automatically
purge_interval = 1h                   ; how often expiry runs
max_message_size = 50M

[release]
primary_host = 127.0.0.1:10025
secondary_host =                      ; optional host:port
source_address = 127.0.0.1            ; outgoing SMTP binds here
""")
    start = time.monotonic()
    r = run_daemon("--check-config", "-c", conf)
    assert r.returncode == 0, (r.stdout + r.stderr).decode()
    assert time.monotonic() - start < t(10)


def test_check_config_does_not_start_anything(workdir):
    conf = os.path.join(workdir, "lazaretd.conf")
    secs = good_sections(workdir)
    write(conf, render_config(secs))
    r = run_daemon("-c", conf, "--check-config")
    assert r.returncode == 0, (r.stdout + r.stderr).decode()
    assert not os.path.exists(os.path.join(workdir, "data")), \
        "--check-config created the data folder"


@pytest.mark.parametrize("section,key,bad_line", [
    ("spam_quarantine", "bogus_key", "bogus_key = 1"),
    ("spam_quarantine", "delete_after", "delete_after = 14x"),
    ("spam_quarantine", "purge_interval", "purge_interval = soon"),
    ("spam_quarantine", "max_message_size", "max_message_size = 50Q"),
    ("spam_quarantine", "accept_from", "accept_from = 127.0.0.1/99"),
    ("release", "primary_host", "primary_host = 127.0.0.1:99999"),
])
def test_check_config_names_file_line_and_key(workdir, section, key, bad_line):
    conf = os.path.join(workdir, "lazaretd.conf")
    secs = good_sections(workdir)
    secs[section].pop(key, None)
    text = render_config(secs)
    text = text.replace("[%s]\n" % section, "[%s]\n%s\n" % (section, bad_line))
    write(conf, text)
    lineno = line_of(text, bad_line)
    r = run_daemon("--check-config", "-c", conf)
    out = (r.stdout + r.stderr).decode()
    assert r.returncode == 1, (r.returncode, out)
    assert conf in out, out
    assert "%s:%d" % (conf, lineno) in out, out
    assert key in out, out


def test_check_config_missing_admin_token(workdir):
    conf = os.path.join(workdir, "lazaretd.conf")
    secs = good_sections(workdir)
    del secs["http"]["admin_token"]
    write(conf, render_config(secs))
    r = run_daemon("--check-config", "-c", conf)
    out = (r.stdout + r.stderr).decode()
    assert r.returncode == 1, out
    assert conf in out and "admin_token" in out, out
    assert re.search(re.escape(conf) + r":\d+", out), out


def test_check_config_reports_every_error_not_just_the_first(workdir):
    conf = os.path.join(workdir, "lazaretd.conf")
    secs = good_sections(workdir)
    secs["spam_quarantine"]["delete_after"] = "forever"
    secs["release"]["bogus_key"] = "1"
    write(conf, render_config(secs))
    r = run_daemon("--check-config", "-c", conf)
    out = (r.stdout + r.stderr).decode()
    assert r.returncode == 1
    assert "delete_after" in out and "bogus_key" in out, out


def test_missing_config_file(workdir):
    conf = os.path.join(workdir, "nope.conf")
    r = run_daemon("--check-config", "-c", conf)
    out = (r.stdout + r.stderr).decode()
    assert r.returncode == 1, out
    assert conf in out


def test_starting_with_a_bad_config_fails_with_the_message(workdir):
    conf = os.path.join(workdir, "lazaretd.conf")
    secs = good_sections(workdir)
    secs["spam_quarantine"]["delete_after"] = "3 weeks"
    write(conf, render_config(secs))
    r = run_daemon("-c", conf)
    out = (r.stdout + r.stderr).decode()
    assert r.returncode != 0
    assert "delete_after" in out and conf in out, out


def test_a_dsn_without_the_postgresql_backend_is_refused(workdir):
    conf = os.path.join(workdir, "lazaretd.conf")
    secs = good_sections(workdir)
    secs["store"] = {"dsn": "host=db dbname=lazaret"}
    write(conf, render_config(secs))
    r = run_daemon("--check-config", "-c", conf)
    out = (r.stdout + r.stderr).decode()
    assert r.returncode == 1, out
    assert "[store] dsn: is for backend = postgresql only" in out, out
    secs["store"] = {"backend": "postgresql"}
    write(conf, render_config(secs))
    r = run_daemon("-c", conf)
    out = (r.stdout + r.stderr).decode()
    assert r.returncode == 1, out
    assert "[store] dsn: is required when backend = postgresql" in out, out
    assert not os.path.exists(os.path.join(workdir, "data")), os.listdir(workdir)


def test_log_lines_have_the_documented_shape(manager):
    manager.send("a@example.jp", ["u@corp.test"], make_message("log shape"))
    text = manager.log_text()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert lines, "nothing logged"
    pat = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z lazaretd\[%d\] "
                     r"(error|warn|info|debug) [A-Za-z0-9_.\-]+( |$)" % manager.pid)
    bad = [ln for ln in lines if not pat.match(ln)]
    assert not bad, "log lines not in '<time> lazaretd[pid] <level> <event> k=v' form: %r" % bad[:5]


def test_relative_paths_are_relative_to_the_config_folder(start_manager):
    m = start_manager(data_dir="./rel-data")
    mid = m.send("a@example.jp", ["u@corp.test"], make_message("relative"))
    assert m.get_message(mid)["id"] == mid
    rel = os.path.join(m.workdir, "rel-data")
    assert os.path.isdir(rel), "data_dir not created relative to the config folder"
    assert os.listdir(rel), "the store is not in the relative data_dir"
    assert not os.path.exists("/rel-data")


def test_sigterm_is_a_graceful_stop(manager):
    mid = manager.send("a@example.jp", ["u@corp.test"], make_message("before stop"))
    start = time.monotonic()
    rc = manager.stop()
    assert rc == 0, manager.log_text()
    assert time.monotonic() - start < t(10)
    manager.restart()
    assert manager.get_message(mid)["id"] == mid


def test_sighup_reload_adds_an_address_without_restart(start_manager):
    m = start_manager(accept_from="127.0.0.1/32")
    pid = m.pid
    # A session already open from an allowed address.
    live = RawSMTP(m.smtp_port)
    assert live.greeting().startswith("220 ")
    live.ehlo()
    with RawSMTP(m.smtp_port, source="127.0.0.2") as c:
        assert c.reply_line() == "554 5.7.1 %s: Access denied" % m.hostname

    m.reload(accept_from="127.0.0.1/32, 127.0.0.2/32")

    def accepted():
        with RawSMTP(m.smtp_port, source="127.0.0.2") as c:
            line = c.reply_line()
            c.send("QUIT\r\n")
            return line.startswith("220 ")
    wait_for(accepted, 10, "127.0.0.2 to be accepted after SIGHUP")
    assert m.pid == pid and m.running()
    mid = m.send("a@example.jp", ["u@corp.test"], make_message("after reload"),
                 source_address="127.0.0.2")
    assert m.get_message(mid)["gateway"] == "127.0.0.2"
    # The session opened before the reload still works.
    data = make_message("old session") + b".\r\n"
    assert live.cmd("MAIL FROM:<a@example.jp>") == "250 2.1.0 Ok"
    assert live.cmd("RCPT TO:<u@corp.test>") == "250 2.1.5 Ok"
    assert live.cmd("DATA").startswith("354 ")
    live.send(data)
    assert live.reply_line().startswith("250 2.0.0 Ok: stored as ")
    live.close()


def test_sighup_reload_can_also_remove_an_address(start_manager):
    m = start_manager(accept_from="127.0.0.1/32, 127.0.0.2/32")
    with RawSMTP(m.smtp_port, source="127.0.0.2") as c:
        assert c.reply_line().startswith("220 ")
    m.reload(accept_from="127.0.0.1/32")

    def refused():
        with RawSMTP(m.smtp_port, source="127.0.0.2") as c:
            return c.reply_line() == "554 5.7.1 %s: Access denied" % m.hostname
    wait_for(refused, 10, "127.0.0.2 to be refused after SIGHUP")


def test_sighup_with_a_broken_config_keeps_the_old_one(start_manager):
    m = start_manager()
    pid = m.pid
    with open(m.conf_path, "a", encoding="utf-8") as f:
        f.write("\n[spam_quarantine]\nthis is not a key line\n")
    m.signal(signal.SIGHUP)
    time.sleep(t(1))
    assert m.running() and m.pid == pid, "a bad config on SIGHUP stopped the daemon"
    mid = m.send("a@example.jp", ["u@corp.test"], make_message("still running"))
    assert m.get_message(mid)["id"] == mid
    # Put the good file back so the teardown stop is clean.
    m.write_config()


def test_name_and_hostname_appear_in_the_greeting(start_manager):
    m = start_manager()
    with RawSMTP(m.smtp_port) as c:
        assert c.greeting() == "220 %s ESMTP Lazaret" % MANAGER_NAME
    m2 = start_manager(hostname="quarantine.corp.test")
    with RawSMTP(m2.smtp_port) as c:
        assert c.greeting() == "220 quarantine.corp.test ESMTP Lazaret"

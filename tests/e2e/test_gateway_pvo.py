"""lazaret-gw with [centralized_pvo]: every Policy, Virus, Outbreak and Unclassified
quarantine of the pipeline goes to the manager's PVO listener (:7025) instead of
the gateway's local quarantines, and the gateway answers its client only after the
manager's 250 (451 otherwise; nothing is kept locally).

The chain is
  smtplib client -> lazaret-gw -> next hop (aiosmtpd sink)
                              \\-> lazaretd's PVO listener (a real manager, which
                                  registers the gateway at 127.0.0.1 so :7025 lets it in)
with a real clamd that knows the EICAR test file (engine_fixtures.py).
"""

import os
import signal
import subprocess

import pytest

from conftest import make_workdir
from e2e_helpers import stays, t, wait_for
from engine_fixtures import EICAR_SIG, clamd, eicar_mail  # noqa: F401
from gw_fixtures import lazaret_gw_path, make_message, start_gateway  # noqa: F401
from test_pvo import register_gateway

SENDER = "taro@sender.test"
RCPT = "bob@example.com"

FILTERS = """\
block_invoice: if subject == "(?i)invoice" { quarantine("添付ファイル"); }
"""

OUTBREAK = """\
# outbreak rules, from the vendor
version 2026120501
wave_0042: if subject == "^Your parcel is waiting$" { quarantine("Outbreak"); }
"""


@pytest.fixture
def manager(start_manager):
    m = start_manager()
    register_gateway(m)
    return m


def central(m, **extra):
    sec = {"enabled": "yes", "host": "127.0.0.1", "port": str(m.pvo_port)}
    sec.update(extra)
    return sec


def memberships(m, msg):
    return {q["name"]: q for q in m.get_message(msg["id"])["quarantines"]}


def assert_nothing_local(gw):
    assert gw.messages() == []


def start_central_gw(start_gateway, aio_sink, m, clamd_daemon=None, **sections):
    gw = start_gateway(aio_sink.host, start=False)
    gw.apply({"centralized_pvo": central(m)})
    if clamd_daemon is not None:
        gw.apply({"antivirus": {"engine": "clamd", "clamd": clamd_daemon.addr}})
    gw.apply({"filters": {"file": gw.write_file("gw.filters", FILTERS)},
              "outbreak": {"rules": gw.write_file("outbreak.rules", OUTBREAK)}})
    gw.apply(sections)
    return gw.start()


# ---- each kind of quarantine lands on the manager --------------------------------------

def test_filter_quarantine_lands_in_the_managers_policy_quarantine(start_gateway, aio_sink,
                                                                   manager):
    gw = start_central_gw(start_gateway, aio_sink, manager)
    gw.wait_log("gw.central_pvo host=127.0.0.1:%d reachable=yes" % manager.pvo_port)
    code, text = gw.send(SENDER, [RCPT, "carol@example.com"],
                         make_message(subject="Invoice 42"))
    assert code == 250, text
    (msg,) = manager.list_all()
    q = memberships(manager, msg)
    assert list(q) == ["添付ファイル"]
    assert q["添付ファイル"]["reason"] == "block_invoice"
    assert q["添付ファイル"]["type"] == "policy"
    assert sorted(r["address"] for r in msg["recipients"]) == [RCPT, "carol@example.com"]
    assert msg["gateway"] == "gw-e2e"
    assert aio_sink.count() == 0
    assert_nothing_local(gw)
    gw.wait_log("gw.quarantined")
    # the clean message next to it is delivered as before
    code, text = gw.send(SENDER, RCPT, make_message(subject="hello"))
    assert code == 250, text
    aio_sink.wait_count(1)
    assert len(manager.list_all()) == 1


def test_eicar_goes_to_the_managers_virus_quarantine(start_gateway, aio_sink, manager, clamd):
    gw = start_central_gw(start_gateway, aio_sink, manager, clamd)
    code, text = gw.send(SENDER, RCPT, eicar_mail(to=RCPT.encode(), subject=b"hello"))
    assert code == 250, text
    (msg,) = manager.list_all()
    q = memberships(manager, msg)
    assert list(q) == ["virus"]
    assert q["virus"]["reason"].startswith(EICAR_SIG), q
    assert aio_sink.count() == 0
    assert_nothing_local(gw)


def test_filter_and_virus_make_one_message_in_two_quarantines(start_gateway, aio_sink, manager,
                                                              clamd):
    gw = start_central_gw(start_gateway, aio_sink, manager, clamd)
    code, text = gw.send(SENDER, RCPT, eicar_mail(to=RCPT.encode(), subject=b"invoice"))
    assert code == 250, text
    (msg,) = manager.list_all()
    q = memberships(manager, msg)
    assert sorted(q) == sorted(["virus", "添付ファイル"])
    assert q["添付ファイル"]["reason"] == "block_invoice"
    assert q["virus"]["reason"].startswith(EICAR_SIG)
    raw = manager.http("GET", "/api/v1/messages/%s/raw" % msg["id"])[2]
    assert raw.count(b"X-Lazaret-Quarantine:") == 2
    assert raw.count(b"X-Lazaret-Origin-Id:") == 1
    assert_nothing_local(gw)


def test_outbreak_rule_goes_to_the_outbreak_quarantine(start_gateway, aio_sink, manager):
    gw = start_central_gw(start_gateway, aio_sink, manager)
    code, text = gw.send(SENDER, RCPT, make_message(subject="Your parcel is waiting"))
    assert code == 250, text
    (msg,) = manager.list_all()
    q = memberships(manager, msg)
    assert list(q) == ["outbreak"]
    assert q["outbreak"]["reason"] == "wave_0042"
    assert q["outbreak"]["type"] == "outbreak"
    gw.wait_log("gw.outbreak")
    assert "version=2026120501" in gw.log_text()
    assert_nothing_local(gw)


def test_outbreak_rule_without_centralization_uses_the_local_quarantine(start_gateway,
                                                                        aio_sink):
    gw = start_gateway(aio_sink.host, start=False)
    gw.apply({"outbreak": {"rules": gw.write_file("outbreak.rules", OUTBREAK)}})
    gw.start()
    code, text = gw.send(SENDER, RCPT, make_message(subject="Your parcel is waiting"))
    assert code == 250, text
    (msg,) = gw.messages()
    assert msg["quarantine"] == "outbreak"
    assert aio_sink.count() == 0


@pytest.mark.parametrize("section,engine", [("antivirus", "clamd"), ("antispam", "spamd")])
def test_scan_failure_with_hold_goes_to_unclassified(start_gateway, aio_sink, manager, section,
                                                     engine):
    dead = "127.0.0.1:%d" % _closed_port()
    gw = start_central_gw(start_gateway, aio_sink, manager,
                          **{section: {"engine": engine, engine: dead, "on_failure": "hold",
                                       "timeout": "2s"}})
    code, text = gw.send(SENDER, RCPT, make_message(subject="hello"))
    assert code == 250, text
    (msg,) = manager.list_all()
    q = memberships(manager, msg)
    assert list(q) == ["unclassified"]
    assert q["unclassified"]["reason"].startswith("%s could not scan: " % engine), q
    assert aio_sink.count() == 0
    gw.wait_log("gw.scan_failed_held")
    assert "engine=%s" % engine in gw.log_text()
    assert_nothing_local(gw)


def test_scan_failure_with_hold_without_centralization_is_kept_locally(start_gateway,
                                                                       aio_sink):
    dead = "127.0.0.1:%d" % _closed_port()
    gw = start_gateway(aio_sink.host, antivirus={"engine": "clamd", "clamd": dead,
                                                 "on_failure": "hold", "timeout": "2s"})
    code, text = gw.send(SENDER, RCPT, make_message(subject="hello"))
    assert code == 250, text
    (msg,) = gw.messages()
    assert msg["quarantine"] == "unclassified"
    assert aio_sink.count() == 0


def test_scan_failure_default_is_still_451(start_gateway, aio_sink, manager):
    dead = "127.0.0.1:%d" % _closed_port()
    gw = start_central_gw(start_gateway, aio_sink, manager,
                          antivirus={"engine": "clamd", "clamd": dead, "timeout": "2s"})
    code, text = gw.send(SENDER, RCPT, make_message(subject="hello"))
    assert (code, text) == (451, "4.3.0 Error: message could not be scanned, try again later")
    assert manager.list_all() == []
    assert aio_sink.count() == 0


# ---- the manager cannot take it: 451 upstream, nothing kept --------------------------

def test_manager_down_gives_451_and_nothing_is_kept(start_gateway, aio_sink, start_manager):
    m = start_manager(start=False)
    gw = start_central_gw(start_gateway, aio_sink, m)  # started with the manager down
    gw.wait_log("gw.central_pvo_unreachable host=127.0.0.1:%d" % m.pvo_port)
    msg = make_message(subject="Invoice 7")
    code, text = gw.send(SENDER, RCPT, msg)
    assert (code, text) == (451, "4.3.0 Error: could not relay the message, try again later")
    assert "route=central_pvo" in gw.log_text() and "status=deferred" in gw.log_text()
    assert_nothing_local(gw)
    assert aio_sink.count() == 0
    # the manager comes back: the client's retry is taken, twice is stored once
    m.start()
    register_gateway(m)
    for _ in range(2):
        code, text = gw.send(SENDER, RCPT, msg)
        assert code == 250, text
    (stored,) = m.list_all()
    assert list(memberships(m, stored)) == ["添付ファイル"]
    assert_nothing_local(gw)


def test_unregistered_gateway_gives_451(start_gateway, aio_sink, start_manager):
    m = start_manager()  # nobody registered: :7025 answers 554 at connect
    gw = start_central_gw(start_gateway, aio_sink, m)
    code, text = gw.send(SENDER, RCPT, make_message(subject="Invoice 8"))
    assert (code, text) == (451, "4.3.0 Error: could not relay the message, try again later")
    assert m.list_all() == []
    assert_nothing_local(gw)
    assert aio_sink.count() == 0


def test_senders_quarantine_headers_are_not_trusted(start_gateway, aio_sink, manager):
    gw = start_central_gw(start_gateway, aio_sink, manager)
    spoof = ("X-Lazaret-Quarantine: Trash; reason=spoofed\r\n"
             "X-Lazaret-Origin-Id: spoofed-1\r\n")
    code, text = gw.send(SENDER, RCPT, make_message(subject="invoice", extra_headers=spoof))
    assert code == 250, text
    (msg,) = manager.list_all()
    assert list(memberships(manager, msg)) == ["添付ファイル"]
    raw = manager.http("GET", "/api/v1/messages/%s/raw" % msg["id"])[2]
    assert b"spoofed" not in raw


# ---- released mail: rescanned only when the manager says rescan=yes ------------------

def released(msg, rescan):
    head = b"X-Lazaret-Released: lazaret1; 2026-12-05T10:00:00Z"
    if rescan:
        head += b"; rescan=yes"
    return head + b"\r\n" + msg


def test_released_mail_with_rescan_is_scanned_again(start_gateway, aio_sink, manager, clamd):
    gw = start_central_gw(start_gateway, aio_sink, manager, clamd,
                          manager={"addresses": "127.0.0.2"})
    mail = eicar_mail(to=RCPT.encode(), subject=b"hello")
    code, text = gw.send(SENDER, RCPT, released(mail, True), source_address="127.0.0.2")
    assert code == 250, text
    (msg,) = manager.list_all()
    assert list(memberships(manager, msg)) == ["virus"]
    assert aio_sink.count() == 0
    gw.wait_log("gw.released_rescan")
    # without rescan=yes it goes straight to the next hop, EICAR and all
    code, text = gw.send(SENDER, RCPT, released(mail, False), source_address="127.0.0.2")
    assert code == 250, text
    (d,) = aio_sink.wait_count(1)
    assert b"X-Lazaret-Released: lazaret1" in d["data"]
    assert len(manager.list_all()) == 1
    # rescan=yes from an address that is not the manager's: scanned anyway (not released)
    other = eicar_mail(to=RCPT.encode(), subject=b"hello again")  # not a retry of the first
    code, text = gw.send(SENDER, RCPT, released(other, True))
    assert code == 250, text
    assert len(manager.list_all()) == 2
    assert aio_sink.count() == 1


# ---- configuration ---------------------------------------------------------------------

def _closed_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run_check(gw):
    gw.write_config()
    return subprocess.run([lazaret_gw_path(), "-c", gw.conf_path, "--check-config"],
                          capture_output=True, text=True, timeout=t(30))


BAD_OUTBREAK = [
    ("version 7\nwave: if subject == \"(\" { quarantine(\"Outbreak\"); }\n",
     "outbreak.rules:2:21: bad regular expression: Unmatched ( or \\(\n"),
    ("# no version\nwave: if size > 1M { quarantine(\"Outbreak\"); }\n",
     "outbreak.rules:2:1: expected 'version TEXT' before the first rule\n"),
    ("\n  version\n", "outbreak.rules:2:3: expected 'version TEXT' before the first rule\n"),
    ("version 1 2\n", "outbreak.rules:1:9: the version is 1 to 64 printable ASCII characters "
     "without blanks\n"),
    ("", "outbreak.rules:1:1: expected 'version TEXT' before the first rule\n"),
]


@pytest.mark.parametrize("text,error", BAD_OUTBREAK)
def test_bad_outbreak_rules_refuse_to_start(start_gateway, aio_sink, text, error):
    gw = start_gateway(aio_sink.host, start=False)
    path = gw.write_file("outbreak.rules", text)
    gw.apply({"outbreak": {"rules": path}})
    r = run_check(gw)
    assert r.returncode == 1
    assert r.stderr == os.path.join(gw.workdir, error), r.stderr  # the exact message
    gw.write_config()
    p = subprocess.run([lazaret_gw_path(), "-c", gw.conf_path], capture_output=True, text=True,
                       timeout=t(30))
    assert p.returncode == 1
    assert os.path.join(gw.workdir, error) in p.stderr


def test_bad_outbreak_rules_at_reload_keep_the_old_ones(start_gateway, aio_sink, manager):
    gw = start_central_gw(start_gateway, aio_sink, manager)
    gw.write_file("outbreak.rules", "version 8\nwave: if subject == \"(\" { drop; }\n")
    gw.proc.send_signal(signal.SIGHUP)
    gw.wait_log("gw.reload_failed")
    assert "outbreak.rules:2:21: bad regular expression: Unmatched ( or" in gw.log_text()
    code, text = gw.send(SENDER, RCPT, make_message(subject="Your parcel is waiting"))
    assert code == 250, text
    (msg,) = manager.list_all()
    assert list(memberships(manager, msg)) == ["outbreak"]
    # a good file is taken on the next SIGHUP
    gw.write_file("outbreak.rules", "version 9\nwave_2: if subject == \"^Tracking\" "
                  "{ quarantine(\"Outbreak\"); }\n")
    gw.proc.send_signal(signal.SIGHUP)
    gw.wait_log("gw.reloaded")
    assert "outbreak=9 central_pvo=127.0.0.1:%d" % manager.pvo_port in gw.log_text()
    code, text = gw.send(SENDER, RCPT, make_message(subject="Tracking 1"))
    assert code == 250, text
    wait_for(lambda: len(manager.list_all()) == 2, t(10), "the second outbreak message")


def test_filter_quarantine_name_the_manager_cannot_hold_is_refused(start_gateway, aio_sink):
    gw = start_gateway(aio_sink.host, start=False)
    gw.apply({"centralized_pvo": {"enabled": "yes", "port": "7025"},
              "filters": {"file": gw.write_file(
                  "gw.filters", "a: if size > 1M { drop; }\n"
                  "b: if size > 2M { quarantine(\"Q;1\"); }\n")}})
    r = run_check(gw)
    assert r.returncode == 1
    assert r.stderr.startswith(
        "%s:2: filter 'b': quarantine(\"Q;1\") cannot be a central quarantine"
        % os.path.join(gw.workdir, "gw.filters")), r.stderr
    # without centralization the same name is a local quarantine's
    gw.apply({"centralized_pvo": {"enabled": "no"}})
    assert run_check(gw).returncode == 0


def test_bad_centralized_pvo_keys(start_gateway, aio_sink):
    gw = start_gateway(aio_sink.host, start=False)
    gw.apply({"centralized_pvo": {"enabled": "yes", "port": "70250",
                                  "notify": "not an address"}})
    r = run_check(gw)
    assert r.returncode == 1
    assert "[centralized_pvo] port" in r.stderr, r.stderr
    assert "[centralized_pvo] notify: must be one mail address" in r.stderr, r.stderr
    gw.apply({"centralized_pvo": {"port": "7025", "notify": "admin@example.com"},
              "antivirus": {"on_failure": "accept"}})
    r = run_check(gw)
    assert r.returncode == 1
    assert "[antivirus] on_failure" in r.stderr, r.stderr

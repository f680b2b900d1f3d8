"""lazaret-gw end to end: real gateway, real manager, aiosmtpd sinks, smtplib clients.

Each test starts its own processes on loopback. The chain is
  smtplib client -> lazaret-gw -> next hop (aiosmtpd sink)
with the manager's spam quarantine (a real lazaretd) where a test needs it.
"""

import os
import signal
import smtplib
import subprocess

import pytest

from e2e_helpers import free_port, stays, t, wait_for
from gw_fixtures import GTUBE, lazaret_gw_path, make_message, start_gateway  # noqa: F401


def spam_message(subject="cheap pills", to="bob@example.com"):
    return make_message(subject=subject, body="Buy now.\r\n%s\r\n" % GTUBE, to=to)


# ---- relay ----------------------------------------------------------------

def test_clean_mail_is_relayed_to_the_next_hop(start_gateway, aio_sink):
    gw = start_gateway(aio_sink.host)
    code, text = gw.send("alice@sender.test", ["bob@example.com", "carol@example.com"],
                         make_message(subject="quarterly report"))
    assert code == 250, text
    (m,) = aio_sink.wait_count(1)
    assert m["sender"] == "alice@sender.test"
    assert sorted(m["rcpts"]) == ["bob@example.com", "carol@example.com"]
    assert b"Subject: quarterly report" in m["data"]
    assert m["data"].startswith(b"Received: from client.e2e.test ([127.0.0.1])")
    assert b"(lazaret-gw)" in m["data"]


def test_next_hop_down_answers_451_and_nothing_is_acknowledged(start_gateway):
    gw = start_gateway("127.0.0.1:%d" % free_port())
    code, text = gw.send("alice@sender.test", "bob@example.com", make_message())
    assert code == 451, text
    assert text.startswith("4.3.0")


def test_next_hop_refusing_every_recipient_is_passed_on(start_gateway, aio_sink):
    aio_sink.handler.default_rcpt_reply = "550 5.1.1 No such user"
    gw = start_gateway(aio_sink.host)
    code, text = gw.send("alice@sender.test", "nobody@example.com", make_message())
    assert code == 550, text
    assert "No such user" in text
    assert aio_sink.count() == 0


# ---- HAT and RAT --------------------------------------------------------------

def test_hat_reject_refuses_at_connect(start_gateway, aio_sink):
    gw = start_gateway(aio_sink.host, hat={"policy.trusted": "accept: 192.0.2.0/24",
                                           "policy.blocked": "reject: 127.0.0.0/8",
                                           "default": "accept"})
    with pytest.raises(smtplib.SMTPConnectError) as e:
        smtplib.SMTP("127.0.0.1", gw.smtp_port, timeout=t(10))
    assert e.value.smtp_code == 554
    assert b"Access denied" in e.value.smtp_error
    gw.wait_log("gw.hat_reject")
    assert "policy=blocked" in gw.log_text()


def test_hat_first_match_wins(start_gateway, aio_sink):
    # 127.0.0.1 is in both; the first policy (accept) decides.
    gw = start_gateway(aio_sink.host, hat={"policy.mine": "accept: 127.0.0.1/32",
                                           "policy.loopback": "reject: 127.0.0.0/8"})
    code, text = gw.send("alice@sender.test", "bob@example.com", make_message())
    assert code == 250, text
    with pytest.raises(smtplib.SMTPConnectError):
        smtplib.SMTP("127.0.0.1", gw.smtp_port, timeout=t(10), source_address=("127.0.0.3", 0))


def test_hat_throttle_refuses_mail_over_the_hourly_limit(start_gateway, aio_sink):
    gw = start_gateway(aio_sink.host, hat={"policy.slow": "throttle 2: 127.0.0.0/8"})
    for i in range(2):
        code, text = gw.send("alice@sender.test", "bob@example.com", make_message())
        assert code == 250, (i, text)
    code, text = gw.send("alice@sender.test", "bob@example.com", make_message())
    assert code == 452, text
    assert text == "4.7.0 Error: too many messages from 127.0.0.1, try again later"
    assert aio_sink.count() == 2


def test_rat_accepts_listed_domains_subdomains_and_addresses(start_gateway, aio_sink):
    gw = start_gateway(aio_sink.host)
    s = gw.smtp()
    try:
        assert s.mail("alice@sender.test")[0] == 250
        expected = {
            "bob@example.com": 250,
            "BOB@Example.COM": 250,
            "x@sales.example.org": 250,
            "x@example.org": 550,       # .example.org: subdomains only
            "postmaster@example.net": 250,
            "other@example.net": 550,
            "x@notexample.com": 550,
        }
        for rcpt, want in expected.items():
            code, text = s.rcpt(rcpt)
            assert code == want, (rcpt, code, text)
            if want == 550:
                assert text == b"5.7.1 Recipient address rejected: relay not permitted"
    finally:
        s.quit()


# ---- spam to the manager, release back without rescanning ----------------------

def test_spam_goes_to_the_manager_and_release_is_not_rescanned(start_gateway, start_manager,
                                                               aio_sink):
    gw = start_gateway(aio_sink.host, start=False)
    mgr = start_manager(primary_host="127.0.0.1:%d" % gw.smtp_port,
                        source_address="127.0.0.2", retry_min="1s")
    gw.apply({"manager": {"addresses": "127.0.0.2"},
              "external_spam_quarantine": {"enabled": "yes", "name": "lazaret1",
                                           "host": "127.0.0.1", "port": str(mgr.smtp_port)}})
    gw.start()

    code, text = gw.send("spammer@sender.test", "bob@example.com", spam_message())
    assert code == 250, text
    msgs = mgr.list_all()
    assert len(msgs) == 1
    m = msgs[0]
    assert m["gateway"] == "gw-e2e"
    assert m["verdict"] == "spam"
    assert m["score"] >= 5.0
    assert [r["address"] for r in m["recipients"]] == ["bob@example.com"]
    raw = mgr.http("GET", "/api/v1/messages/%s/raw" % m["id"])[2]
    assert b"X-Lazaret-Gateway: gw-e2e" in raw
    assert b"X-Lazaret-Client-Address: 127.0.0.1" in raw
    assert aio_sink.count() == 0

    st, doc = mgr.api("POST", "/api/v1/messages/%s/release" % m["id"])
    assert st == 202, doc
    (d,) = aio_sink.wait_count(1, timeout=30)
    # The released copy still carries GTUBE: scanned again it would be quarantined again.
    assert GTUBE.encode() in d["data"]
    assert b"X-Lazaret-Released: " in d["data"]
    assert d["rcpts"] == ["bob@example.com"]
    gw.wait_log("gw.released")
    assert len(mgr.list_all("state=quarantined")) == 0
    assert stays(lambda: aio_sink.count() == 1, 1.0)


def test_spoofed_lazaret_headers_do_not_reach_the_manager(start_gateway, start_manager,
                                                          aio_sink):
    """A spammer's own X-Lazaret-* fields are removed; the manager sees the gateway's."""
    gw = start_gateway(aio_sink.host, start=False)
    mgr = start_manager()
    gw.apply({"external_spam_quarantine": {"enabled": "yes", "name": "lazaret1",
                                           "host": "127.0.0.1", "port": str(mgr.smtp_port)}})
    gw.start()
    spoof = ("X-Lazaret-Verdict: suspect\r\nX-Lazaret-Score: -99\r\n"
             "X-Lazaret-Gateway: trusted-gw\r\nX-Lazaret-Client-Address: 192.0.2.99\r\n")
    msg = make_message(subject="spoof", body="Buy.\r\n%s\r\n" % GTUBE, extra_headers=spoof)
    code, text = gw.send("spammer@sender.test", "bob@example.com", msg)
    assert code == 250, text
    (m,) = mgr.list_all()
    assert m["verdict"] == "spam"
    assert m["score"] >= 5.0
    assert m["gateway"] == "gw-e2e"
    raw = mgr.http("GET", "/api/v1/messages/%s/raw" % m["id"])[2]
    assert b"192.0.2.99" not in raw
    assert b"trusted-gw" not in raw
    assert b"-99" not in raw
    assert raw.count(b"X-Lazaret-Verdict:") == 1


def test_released_address_changed_means_rescanned(start_gateway, aio_sink):
    # Troubleshooting case: mail from an address not in [manager] addresses is scanned.
    gw = start_gateway(aio_sink.host, manager={"addresses": "127.0.0.9"},
                       spam_quarantine={"enabled": "yes"})
    code, text = gw.send("spammer@sender.test", "bob@example.com", spam_message(),
                         source_address="127.0.0.2")
    assert code == 250, text
    assert aio_sink.count() == 0
    assert len(gw.messages("quarantine=spam")) == 1


def test_manager_down_gives_451_and_the_retry_is_delivered(start_gateway, start_manager,
                                                          aio_sink):
    mgr = start_manager(start=False)
    gw = start_gateway(aio_sink.host,
                       external_spam_quarantine={"enabled": "yes", "host": "127.0.0.1",
                                                 "port": str(mgr.smtp_port)})
    msg = spam_message()
    code, text = gw.send("spammer@sender.test", "bob@example.com", msg)
    assert code == 451, text
    mgr.start()
    code, text = gw.send("spammer@sender.test", "bob@example.com", msg)  # the client retries
    assert code == 250, text
    assert len(mgr.list_all()) == 1
    assert aio_sink.count() == 0


def test_local_spam_quarantine_wins_over_the_external_one(start_gateway, start_manager,
                                                          aio_sink):
    mgr = start_manager()
    gw = start_gateway(aio_sink.host, spam_quarantine={"enabled": "yes"},
                       external_spam_quarantine={"enabled": "yes", "host": "127.0.0.1",
                                                 "port": str(mgr.smtp_port)})
    assert "both the local and the external spam quarantine are enabled" in gw.log_text()
    code, text = gw.send("spammer@sender.test", "bob@example.com", spam_message())
    assert code == 250, text
    local = gw.messages()
    assert len(local) == 1 and local[0]["quarantine"] == "spam"
    assert local[0]["verdict"] == "spam"
    assert mgr.list_all() == []


# ---- anti-spam actions ------------------------------------------------------------

def test_tag_keeps_the_encoded_subject(start_gateway, aio_sink):
    gw = start_gateway(aio_sink.host, antispam={"positive_action": "tag"})
    enc = "=?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?="
    code, text = gw.send("spammer@sender.test", "bob@example.com", spam_message(subject=enc))
    assert code == 250, text
    (m,) = aio_sink.wait_count(1)
    assert ("Subject: [SUSPECTED SPAM] %s\r\n" % enc).encode() in m["data"]


def test_bounce_refuses_the_message(start_gateway, aio_sink):
    gw = start_gateway(aio_sink.host, antispam={"positive_action": "bounce"})
    code, text = gw.send("spammer@sender.test", "bob@example.com", spam_message())
    assert (code, text) == (554, "5.7.1 Message refused as spam")
    assert aio_sink.count() == 0


def test_drop_accepts_and_discards(start_gateway, aio_sink):
    gw = start_gateway(aio_sink.host, antispam={"positive_action": "drop"})
    code, text = gw.send("spammer@sender.test", "bob@example.com", spam_message())
    assert code == 250, text
    assert stays(lambda: aio_sink.count() == 0, 0.5)


def test_spamd_down_is_451_never_clean(start_gateway, aio_sink):
    gw = start_gateway(aio_sink.host, antispam={"engine": "spamd",
                                                "spamd": "127.0.0.1:%d" % free_port()})
    code, text = gw.send("alice@sender.test", "bob@example.com", make_message())
    assert code == 451, text
    assert aio_sink.count() == 0


def test_clamd_down_is_451_never_clean(start_gateway, aio_sink):
    gw = start_gateway(aio_sink.host, antivirus={"engine": "clamd",
                                                 "clamd": "127.0.0.1:%d" % free_port()})
    code, text = gw.send("alice@sender.test", "bob@example.com", make_message())
    assert code == 451, text
    assert aio_sink.count() == 0


# ---- per-recipient split (safelist) -------------------------------------------------

def test_recipients_are_split_by_outcome(start_gateway, start_manager, aio_sink):
    mgr = start_manager()
    st, doc = mgr.api("PUT", "/api/v1/slbl/bob@example.com",
                      json={"recipient": "bob@example.com", "safelist": ["sender.test"],
                            "blocklist": []})
    assert st == 200, (st, doc)  # the safelist API exists: a 404 is a failure
    gw = start_gateway(aio_sink.host,
                       manager={"api_url": mgr.http_url, "api_token": mgr.token},
                       external_spam_quarantine={"enabled": "yes", "host": "127.0.0.1",
                                                 "port": str(mgr.smtp_port),
                                                 "safelist_blocklist": "yes"})
    gw.wait_log("gw.slbl_synced")
    code, text = gw.send("spammer@sender.test", ["bob@example.com", "carol@example.com"],
                         spam_message())
    assert code == 250, text
    (d,) = aio_sink.wait_count(1)
    assert d["rcpts"] == ["bob@example.com"]          # safelisted: delivered
    q = mgr.list_all()
    assert len(q) == 1
    assert [r["address"] for r in q[0]["recipients"]] == ["carol@example.com"]


def test_blocklist_delete_drops_only_that_recipient(start_gateway, start_manager, aio_sink):
    mgr = start_manager()
    st, doc = mgr.api("PUT", "/api/v1/slbl/bob@example.com",
                      json={"recipient": "bob@example.com", "safelist": [],
                            "blocklist": ["alice@sender.test"]})
    assert st == 200, (st, doc)  # the safelist API exists: a 404 is a failure
    gw = start_gateway(aio_sink.host,
                       manager={"api_url": mgr.http_url, "api_token": mgr.token},
                       external_spam_quarantine={"enabled": "yes", "host": "127.0.0.1",
                                                 "port": str(mgr.smtp_port),
                                                 "safelist_blocklist": "yes",
                                                 "blocklist_action": "delete"})
    gw.wait_log("gw.slbl_synced")
    code, text = gw.send("alice@sender.test", ["bob@example.com", "carol@example.com"],
                         make_message())
    assert code == 250, text
    (d,) = aio_sink.wait_count(1)
    assert d["rcpts"] == ["carol@example.com"]
    assert mgr.list_all() == []


def slbl_gateway(start_gateway, aio_sink, mgr, sync_interval):
    """A gateway that sends spam to mgr and uses its lists (blocklist_action = delete)."""
    return start_gateway(aio_sink.host,
                         manager={"api_url": mgr.http_url, "api_token": mgr.token},
                         external_spam_quarantine={"enabled": "yes", "host": "127.0.0.1",
                                                   "port": str(mgr.smtp_port),
                                                   "safelist_blocklist": "yes",
                                                   "blocklist_action": "delete",
                                                   "sync_interval": sync_interval})


def put_lists(mgr, rcpt, safelist=(), blocklist=()):
    st, doc = mgr.api("PUT", "/api/v1/slbl/%s" % rcpt,
                      json={"recipient": rcpt, "safelist": list(safelist),
                            "blocklist": list(blocklist)})
    assert st == 200, doc


def test_lists_apply_from_the_disk_cache_while_the_manager_is_down(start_gateway,
                                                                   start_manager, aio_sink):
    mgr = start_manager()
    put_lists(mgr, "bob@example.com", safelist=["friend@sender.test"])
    put_lists(mgr, "carol@example.com", blocklist=["foe@sender.test"])
    # 1s is the shortest sync_interval the configuration accepts.
    gw = slbl_gateway(start_gateway, aio_sink, mgr, "1s")
    gw.wait_log("gw.slbl_synced")
    assert "version=0 " not in gw.log_text().split("gw.slbl_synced", 1)[1].split("\n", 1)[0]
    assert os.path.exists(os.path.join(gw.data_dir, "slbl.cache"))

    assert mgr.stop() == 0
    assert gw.stop() == 0
    before = len(gw.log_text())
    gw.start()  # nothing to sync from: only the file on disk has the lists
    wait_for(lambda: "gw.slbl_sync_failed" in gw.log_text()[before:], 15,
             "the gateway's first sync to fail")
    assert "gw.slbl_synced" not in gw.log_text()[before:]

    # Safelisted: spam handling is skipped, so the quarantine being down does not matter.
    code, text = gw.send("friend@sender.test", "bob@example.com",
                         spam_message(subject="from a friend"))
    assert code == 250, text
    (d,) = aio_sink.wait_count(1)
    assert d["rcpts"] == ["bob@example.com"] and d["sender"] == "friend@sender.test"
    assert GTUBE.encode() in d["data"]

    # Blocklisted with blocklist_action = delete: accepted and dropped.
    code, text = gw.send("foe@sender.test", "carol@example.com",
                         make_message(subject="from a foe"))
    assert code == 250, text

    # Neither list: spam is for the external quarantine, which is down.
    code, text = gw.send("spammer@sender.test", "dave@example.com", spam_message())
    assert code == 451, text
    assert stays(lambda: aio_sink.count() == 1, 1.0)


def test_sighup_syncs_the_lists_at_once(start_gateway, start_manager, aio_sink):
    mgr = start_manager()
    gw = slbl_gateway(start_gateway, aio_sink, mgr, "1h")
    gw.wait_log("gw.slbl_synced")
    code, text = gw.send("friend@sender.test", "bob@example.com", spam_message())
    assert code == 250, text
    assert [r["address"] for r in mgr.list_all()[0]["recipients"]] == ["bob@example.com"]

    put_lists(mgr, "bob@example.com", safelist=["friend@sender.test"])
    put_lists(mgr, "carol@example.com", blocklist=["foe@sender.test"])
    gw.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: gw.log_text().count("gw.slbl_synced") >= 2, 15,
             "the sync SIGHUP starts")
    code, text = gw.send("friend@sender.test", "bob@example.com", spam_message())
    assert code == 250, text
    (d,) = aio_sink.wait_count(1)
    assert d["rcpts"] == ["bob@example.com"]
    code, text = gw.send("foe@sender.test", "carol@example.com", make_message())
    assert code == 250, text
    assert stays(lambda: aio_sink.count() == 1, 0.5)
    assert len(mgr.list_all()) == 1  # only the message from before the sync


# ---- content filters ------------------------------------------------------------------

FILTERS = """\
to_policy: if subject == "^quarantine-me$" { quarantine("Policy"); }
to_drop: if subject == "^drop-me$" { drop; }
to_bounce: if subject == "^bounce-me$" { bounce; }
add_header: if subject == "^header-me$" { insert-header("X-Filtered", "yes"); }
strip: if subject == "^strip-me$" { strip-header("X-Secret"); }
to_alt: if subject == "^alt-me$" { alt-mailhost("%s"); }
final_wins: if subject == "^final-wins$" { quarantine("Policy"); alt-mailhost("%s"); }
"""


def test_each_filter_action(start_gateway, aio_sink_factory):
    sink = aio_sink_factory()
    alt = aio_sink_factory()
    gw = start_gateway(sink.host, start=False)
    path = gw.write_file("gw.filters", FILTERS % (alt.host, alt.host))
    gw.apply({"filters": {"file": path}})
    gw.start()
    send = lambda subj, extra="": gw.send("alice@sender.test", "bob@example.com",  # noqa: E731
                                          make_message(subject=subj, extra_headers=extra))

    assert send("quarantine-me")[0] == 250
    q = gw.messages()
    assert [(m["quarantine"], m["verdict"]) for m in q] == [("Policy", "policy")]
    st, doc = gw.api("GET", "/api/v1/quarantines")
    assert {"Policy": "policy"}.items() <= {x["name"]: x["type"] for x in doc["quarantines"]}.items()

    assert send("drop-me")[0] == 250
    assert send("bounce-me") == (554, "5.7.1 Message refused by content filter")

    assert send("header-me")[0] == 250
    (m,) = sink.wait_count(1)
    assert b"\r\nX-Filtered: yes\r\n" in m["data"]

    assert send("strip-me", "X-Secret: 42\r\n")[0] == 250
    m = sink.wait_count(2)[1]
    assert b"X-Secret" not in m["data"] and b"Subject: strip-me" in m["data"]

    assert send("alt-me")[0] == 250
    (a,) = alt.wait_count(1)
    assert b"Subject: alt-me" in a["data"]
    assert stays(lambda: sink.count() == 2, 0.5)

    # A final action's route is not overridden by an alt-mailhost written after it.
    assert send("final-wins")[0] == 250
    assert sorted(m["quarantine"] for m in gw.messages()) == ["Policy", "Policy"]
    assert stays(lambda: alt.count() == 1, 0.5)


def test_filter_syntax_error_refuses_to_start(start_gateway, aio_sink):
    gw = start_gateway(aio_sink.host, start=False)
    path = gw.write_file("bad.filters", 'ok: if subject == "x" { drop; }\n'
                                        'bad: if subject == "y" { drop }\n')
    gw.apply({"filters": {"file": path}})
    gw.write_config()
    r = subprocess.run([lazaret_gw_path(), "-c", gw.conf_path], capture_output=True,
                       timeout=t(20))
    assert r.returncode == 1
    assert ("%s:2:" % path).encode() in r.stderr, r.stderr
    r = subprocess.run([lazaret_gw_path(), "-c", gw.conf_path, "--check-config"],
                       capture_output=True, timeout=t(20))
    assert r.returncode == 1 and ("%s:2:" % path).encode() in r.stderr


def test_filter_syntax_error_on_sighup_keeps_the_old_rules(start_gateway, aio_sink):
    gw = start_gateway(aio_sink.host, start=False)
    path = gw.write_file("gw.filters", 'to_drop: if subject == "^drop-me$" { drop; }\n')
    gw.apply({"filters": {"file": path}})
    gw.start()
    gw.write_file("gw.filters", 'to_drop: if subject == "^drop-me$" { drop; \n')
    gw.proc.send_signal(signal.SIGHUP)
    gw.wait_log("gw.reload_failed")
    assert "gw.filters:" in gw.log_text().split("gw.reload_failed", 1)[1]
    assert gw.send("alice@sender.test", "bob@example.com",
                   make_message(subject="drop-me"))[0] == 250
    assert gw.send("alice@sender.test", "bob@example.com",
                   make_message(subject="keep-me"))[0] == 250
    (m,) = sink_wait(aio_sink, 1)
    assert b"keep-me" in m["data"]
    # A good file on the next SIGHUP takes effect.
    gw.write_file("gw.filters", 'to_drop: if subject == "^keep-me$" { drop; }\n')
    gw.proc.send_signal(signal.SIGHUP)
    gw.wait_log("gw.reloaded")
    assert gw.send("alice@sender.test", "bob@example.com",
                   make_message(subject="keep-me"))[0] == 250
    assert gw.send("alice@sender.test", "bob@example.com",
                   make_message(subject="drop-me"))[0] == 250
    msgs = sink_wait(aio_sink, 2)
    assert b"drop-me" in msgs[1]["data"]
    assert stays(lambda: aio_sink.count() == 2, 0.5)


def sink_wait(sink, n):
    return sink.wait_count(n)


# ---- local quarantines: API, release, delete-all --------------------------------------

def test_local_quarantine_listing_and_release_to_next_hop(start_gateway, aio_sink):
    gw = start_gateway(aio_sink.host, spam_quarantine={"enabled": "yes"})
    code, text = gw.send("spammer@sender.test", ["bob@example.com", "carol@example.com"],
                         spam_message(subject="local spam"))
    assert code == 250, text
    (m,) = gw.messages("quarantine=spam")
    assert m["subject"] == "local spam"
    assert m["gateway"] == "gw-e2e"
    assert sorted(r["address"] for r in m["recipients"]) == ["bob@example.com",
                                                             "carol@example.com"]
    st, doc = gw.api("POST", "/api/v1/messages/%s/release" % m["id"],
                     json={"recipients": ["carol@example.com"]})
    assert st == 202, doc
    (d,) = aio_sink.wait_count(1, timeout=30)
    assert d["rcpts"] == ["carol@example.com"]
    assert GTUBE.encode() in d["data"]
    assert b"X-Lazaret-Released: gw-e2e;" in d["data"]
    assert gw.api("GET", "/api/v1/messages", token="wrong")[0] == 401


def test_local_quarantine_lists_each_attachment_with_its_size(start_gateway, aio_sink):
    """The gateway reads attachment sizes only for a copy it stores: they must be there."""
    import email.message
    import email.policy
    pdf = os.urandom(70000)
    msg = email.message.EmailMessage(policy=email.policy.SMTP)
    msg["From"] = "spammer@sender.test"
    msg["To"] = "bob@example.com"
    msg["Subject"] = "見積書の送付"
    msg.set_content("Buy now.\n%s\n" % GTUBE)
    msg.add_attachment(pdf, maintype="application", subtype="pdf",
                       filename=("utf-8", "", "見積書.pdf"))
    msg.add_attachment(b"a,b\n1,2\n", maintype="text", subtype="csv", filename="report.csv")
    gw = start_gateway(aio_sink.host, spam_quarantine={"enabled": "yes"})
    code, text = gw.send("spammer@sender.test", ["bob@example.com"], msg.as_bytes())
    assert code == 250, text
    (m,) = gw.messages("quarantine=spam")
    st, doc = gw.api("GET", "/api/v1/messages/%s" % m["id"])
    assert st == 200, doc
    atts = {a["filename"]: a for a in doc["attachments"]}
    assert set(atts) == {"見積書.pdf", "report.csv"}, doc["attachments"]
    assert atts["見積書.pdf"]["size"] == len(pdf)
    assert atts["見積書.pdf"]["content_type"] == "application/pdf"
    assert atts["report.csv"]["size"] == len(b"a,b\n1,2\n")


def test_delete_all_only_while_disabled_and_not_empty(start_gateway, aio_sink):
    gw = start_gateway(aio_sink.host, spam_quarantine={"enabled": "yes"})
    for _ in range(2):
        assert gw.send("spammer@sender.test", "bob@example.com", spam_message())[0] == 250
    st, doc = gw.api("POST", "/api/v1/quarantines/spam/delete-all")
    assert st == 409 and doc["error"]["code"] == "conflict"
    assert "enabled" in doc["error"]["message"]

    gw.reload(spam_quarantine={"enabled": "no"})
    gw.wait_log("gw.reloaded")
    assert gw.api("POST", "/api/v1/quarantines/spam/delete-all", token=None)[0] == 401
    st, doc = gw.api("POST", "/api/v1/quarantines/spam/delete-all")
    assert st == 200, doc
    assert doc["deleted"] == 2
    assert gw.messages("state=quarantined") == []
    st, doc = gw.api("POST", "/api/v1/quarantines/spam/delete-all")
    assert st == 409 and "no messages" in doc["error"]["message"]


# ---- process --------------------------------------------------------------------------

def test_config_errors_name_file_and_line(start_gateway, aio_sink):
    gw = start_gateway(aio_sink.host, start=False,
                       hat={"policy.bad": "maybe: 10.0.0.0/8"}, listener={"colour": "blue"})
    gw.write_config()
    r = subprocess.run([lazaret_gw_path(), "-c", gw.conf_path, "--check-config"],
                       capture_output=True, timeout=t(20))
    assert r.returncode == 1
    err = r.stderr.decode()
    assert "%s:" % gw.conf_path in err
    assert "colour" in err and "policy.bad" in err


def test_version_and_help():
    r = subprocess.run([lazaret_gw_path(), "--version"], capture_output=True, timeout=t(10))
    assert r.returncode == 0 and r.stdout.startswith(b"lazaret-gw ")
    r = subprocess.run([lazaret_gw_path(), "--help"], capture_output=True, timeout=t(10))
    assert r.returncode == 0 and b"--check-config" in r.stdout


def proc_uids(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Uid:"):
                return [int(x) for x in line.split()[1:]]
    raise AssertionError("no Uid line")


def test_started_as_root_it_runs_as_the_service_user(start_gateway, aio_sink):
    if os.geteuid() != 0:
        pytest.skip("the privilege drop needs root")
    import pwd
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")
    gw = start_gateway(aio_sink.host, gateway={"user": "nobody"},
                       spam_quarantine={"enabled": "yes"})
    gw.wait_log("gw.privdrop ")
    assert proc_uids(gw.proc.pid) == [nobody.pw_uid] * 4  # real, effective, saved, fs
    st = os.stat(gw.data_dir)
    assert (st.st_uid, st.st_mode & 0o777) == (nobody.pw_uid, 0o700)
    # The store opened after the drop is the service user's and takes mail.
    code, text = gw.send("spammer@sender.test", "bob@example.com", spam_message())
    assert code == 250, text
    assert len(gw.messages("quarantine=spam")) == 1
    code, text = gw.send("alice@sender.test", "bob@example.com", make_message())
    assert code == 250, text
    aio_sink.wait_count(1)
    for name in os.listdir(gw.data_dir):
        assert os.stat(os.path.join(gw.data_dir, name)).st_uid == nobody.pw_uid, name


def test_missing_service_user_is_a_warning(start_gateway, aio_sink):
    gw = start_gateway(aio_sink.host, gateway={"user": "lazaret-no-such-user"})
    if os.geteuid() == 0:
        gw.wait_log("gw.privdrop_skipped user=lazaret-no-such-user")
    code, text = gw.send("alice@sender.test", "bob@example.com", make_message())
    assert code == 250, text


def test_sigterm_finishes_a_message_in_flight(start_gateway, aio_sink):
    gw = start_gateway(aio_sink.host)
    s = gw.smtp()
    s.mail("alice@sender.test")
    s.rcpt("bob@example.com")
    gw.proc.send_signal(signal.SIGTERM)
    code, text = s.data(make_message(subject="in flight"))
    assert code == 250, text
    try:
        s.quit()
    except (smtplib.SMTPException, OSError):
        pass
    assert gw.proc.wait(timeout=t(20)) == 0
    assert b"in flight" in aio_sink.wait_count(1)[0]["data"]


def test_local_quarantines_expire_per_quarantine(start_gateway, aio_sink):
    gw = start_gateway(aio_sink.host, start=False)
    path = gw.write_file("gw.filters", 'to_policy: if subject == "^policy$" { quarantine("Policy"); }\n')
    gw.apply({"filters": {"file": path},
              "spam_quarantine": {"enabled": "yes", "delete_after": "2s"},
              "quarantines": {"delete_after": "1h", "purge_interval": "1s"}})
    gw.start()
    assert gw.send("spammer@sender.test", "bob@example.com", spam_message())[0] == 250
    assert gw.send("alice@sender.test", "bob@example.com",
                   make_message(subject="policy"))[0] == 250
    wait_for(lambda: gw.messages("quarantine=spam&state=quarantined") == [], 15,
             "the spam quarantine's message to expire")
    # The Policy quarantine keeps its own, longer period.
    (p,) = gw.messages("quarantine=Policy&state=quarantined")
    assert p["subject"] == "policy"

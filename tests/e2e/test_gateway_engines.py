"""lazaret-gw's pipeline with the real scanning engines: spamd, rspamd and clamd.

The chain is
  smtplib client -> lazaret-gw -> next hop (aiosmtpd sink)
with the manager's spam quarantine (a real lazaretd) or the gateway's local
quarantines where a test keeps mail. The daemons come from engine_fixtures.py and
start once for this module; every test has its own gateway.

Scores are the ones Debian's rules give offline (spamd -L, no Bayes, no DNS). The
messages are fixed (no random Message-ID, whose look SpamAssassin scores with
MSGID_RANDY), and their Date is the current time or absent, so no date rule depends
on the day the test runs:
  spamd:  GTUBE >= 1000; CLEAN -0.0 (NO_RECEIVED, NO_RELAYS); UNDATED 2.7
          (MISSING_DATE, NO_RECEIVED, NO_RELAYS)
  rspamd: GTUBE 1000; CLEAN -0.1
The thresholds in the tagging tests (0.5 and 1.0) sit well between CLEAN and
UNDATED, so the outcome does not depend on small score changes or on timing.

Which engine wins when a message is both spam and infected: anti-spam runs first
(pipeline.c). A spam action that takes the message out of delivery (quarantine,
drop, bounce) ends its processing, so clamd is never asked; spam that goes on
(deliver, tag) is still scanned for viruses, and an infected one goes to the virus
quarantine instead.

Every copy is sent or stored before the gateway answers the end of data, so after
a 250 the sink, the manager and the local quarantines already show the outcome.
"""

import email.utils
import re

import pytest

from engine_fixtures import EICAR_SIG, GTUBE, clamd, eicar_mail, rspamd, spamd  # noqa: F401
from gw_fixtures import start_gateway  # noqa: F401

SENDER = "taro@sender.test"
RCPT = "bob@example.com"


def clean_message(subject=b"Meeting notes", date=True):
    """An ordinary message; date=False leaves out the Date header (MISSING_DATE)."""
    head = (b"From: Taro Yamada <taro@sender.test>\r\n"
            b"To: Bob <bob@example.com>\r\n"
            b"Subject: " + subject + b"\r\n")
    if date:
        head += b"Date: " + email.utils.formatdate().encode() + b"\r\n"
    return (head + b"Message-ID: <notes-1@sender.test>\r\n"
            b"MIME-Version: 1.0\r\n"
            b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
            b"Hello Bob,\r\n\r\nthe notes from today's meeting are below.\r\n\r\nTaro\r\n")


def gtube_message(subject=b"cheap pills", extra=b""):
    return (b"From: spammer@sender.test\r\nTo: bob@example.com\r\nSubject: " + subject +
            b"\r\nDate: " + email.utils.formatdate().encode() + b"\r\n"
            b"Message-ID: <gtube-1@sender.test>\r\n" + extra + b"\r\nBuy now.\r\n" +
            GTUBE + b"\r\n")


def gtube_and_eicar():
    """GTUBE in the text part, EICAR as the attachment."""
    return eicar_mail(to=b"bob@example.com", subject=b"pills and a virus",
                      text=b"Buy now.\r\n" + GTUBE)


def scanned(gw):
    """The fields of the gateway's gw.scanned log lines, oldest first."""
    out = []
    for line in gw.log_text().splitlines():
        if "gw.scanned" not in line:
            continue
        out.append(dict(re.findall(r"(\w+)=(\"(?:[^\"\\]|\\.)*\"|\S+)", line)))
    return out


def last_scan(gw):
    s = scanned(gw)
    assert s, gw.log_text()
    return s[-1]


def send(gw, msg, sender=SENDER, rcpts=RCPT):
    code, text = gw.send(sender, rcpts, msg)
    assert code == 250, (code, text, gw.log_text()[-4000:])
    return text


def quarantine_counts(gw):
    st, doc = gw.api("GET", "/api/v1/quarantines")
    assert st == 200, doc
    return {q["name"]: (q["type"], q["messages"]) for q in doc["quarantines"]}


# ---- spamd ----------------------------------------------------------------------------

def test_spamd_gtube_goes_to_the_manager_with_spamds_score(start_gateway, start_manager,
                                                          aio_sink, spamd):
    mgr = start_manager()
    gw = start_gateway(aio_sink.host, antispam={"engine": "spamd", "spamd": spamd.addr},
                       external_spam_quarantine={"enabled": "yes", "name": "lazaret1",
                                                 "host": "127.0.0.1",
                                                 "port": str(mgr.smtp_port)})
    send(gw, gtube_message(), sender="spammer@sender.test")
    s = last_scan(gw)
    assert s["verdict"] == "spam"
    assert "GTUBE" in s["rules"].strip('"').split(","), s
    assert float(s["score"]) >= 1000.0

    (m,) = mgr.list_all()
    assert m["verdict"] == "spam"
    assert m["gateway"] == "gw-e2e"
    assert m["score"] >= 1000.0
    assert [r["address"] for r in m["recipients"]] == [RCPT]
    raw = mgr.http("GET", "/api/v1/messages/%s/raw" % m["id"])[2]
    hdr = re.search(rb"^X-Lazaret-Score: ([0-9.]+)\r$", raw, re.M)
    assert hdr, raw[:600]
    # The header carries spamd's score as the gateway logged it.
    assert float(hdr.group(1)) == pytest.approx(float(s["score"]), abs=0.005)
    assert m["score"] == pytest.approx(float(hdr.group(1)), abs=0.005)
    assert b"X-Lazaret-Verdict: spam\r\n" in raw
    assert aio_sink.count() == 0


def test_spamd_clean_message_is_delivered_untagged(start_gateway, aio_sink, spamd):
    gw = start_gateway(aio_sink.host, antispam={"engine": "spamd", "spamd": spamd.addr})
    send(gw, clean_message())
    s = last_scan(gw)
    assert s["verdict"] == "clean", s
    assert float(s["score"]) < 0.5
    # Scored by spamd (the builtin engine has no such rule).
    assert "NO_RELAYS" in s["rules"].strip('"').split(","), s
    (d,) = aio_sink.messages
    assert d["rcpts"] == [RCPT]
    assert b"\r\nSubject: Meeting notes\r\n" in d["data"]
    assert b"[SUSPECTED SPAM]" not in d["data"]
    assert b"X-Lazaret-" not in d["data"]


@pytest.mark.parametrize("thresholds, verdict", [
    # Suspect: 1.0 <= 2.7 < 5.0 (positive stays at its default and would quarantine).
    ({"suspect_threshold": "1.0", "suspect_action": "tag"}, "suspect"),
    # Positive with the tag action: 2.7 >= 1.0.
    ({"positive_threshold": "1.0", "suspect_threshold": "0.5", "positive_action": "tag",
      "suspect_action": "quarantine"}, "spam"),
], ids=["suspect", "positive"])
def test_spamd_low_real_score_is_tagged(start_gateway, aio_sink, spamd, thresholds, verdict):
    gw = start_gateway(aio_sink.host,
                       antispam=dict({"engine": "spamd", "spamd": spamd.addr}, **thresholds))
    send(gw, clean_message(subject=b"undated", date=False))
    s = last_scan(gw)
    assert s["verdict"] == verdict, s
    assert 1.0 <= float(s["score"]) < 5.0, s
    assert "MISSING_DATE" in s["rules"].strip('"').split(","), s

    # The dated message scores below both thresholds: delivered as it is.
    send(gw, clean_message(subject=b"dated"))
    assert last_scan(gw)["verdict"] == "clean"

    undated, dated = aio_sink.wait_count(2)
    assert b"\r\nSubject: [SUSPECTED SPAM] undated\r\n" in undated["data"]
    assert b"\r\nSubject: dated\r\n" in dated["data"]
    assert b"[SUSPECTED SPAM]" not in dated["data"]
    assert gw.messages() == []


def test_spamd_over_its_unix_socket_to_the_local_spam_quarantine(start_gateway, aio_sink,
                                                                 spamd):
    gw = start_gateway(aio_sink.host, antispam={"engine": "spamd", "spamd": spamd.sock},
                       spam_quarantine={"enabled": "yes"})
    send(gw, gtube_message(subject=b"local"), sender="spammer@sender.test")
    (m,) = gw.messages("quarantine=spam")
    assert m["subject"] == "local"
    assert m["verdict"] == "spam"
    assert m["score"] >= 1000.0
    assert "GTUBE" in last_scan(gw)["rules"].strip('"').split(",")
    send(gw, clean_message())
    (d,) = aio_sink.messages
    assert b"\r\nSubject: Meeting notes\r\n" in d["data"]
    assert len(gw.messages()) == 1


# ---- rspamd ---------------------------------------------------------------------------

def test_rspamd_gtube_is_quarantined_and_clean_mail_delivered(start_gateway, aio_sink,
                                                              rspamd):
    gw = start_gateway(aio_sink.host, antispam={"engine": "rspamd", "rspamd": rspamd.sock},
                       spam_quarantine={"enabled": "yes"})
    send(gw, gtube_message(), sender="spammer@sender.test")
    s = last_scan(gw)
    assert s["verdict"] == "spam", (s, rspamd.log_text())
    assert "GTUBE" in s["rules"].strip('"').split(",")
    (m,) = gw.messages("quarantine=spam")
    assert m["verdict"] == "spam"
    assert m["score"] == 1000.0
    assert aio_sink.count() == 0

    send(gw, clean_message())
    s = last_scan(gw)
    assert s["verdict"] == "clean", s
    assert float(s["score"]) < 0.5
    assert "MIME_GOOD" in s["rules"].strip('"').split(","), s   # rspamd's symbol
    (d,) = aio_sink.messages
    assert b"[SUSPECTED SPAM]" not in d["data"]
    assert len(gw.messages()) == 1


# ---- clamd ----------------------------------------------------------------------------

def test_clamd_eicar_goes_to_the_virus_quarantine(start_gateway, aio_sink, clamd):
    gw = start_gateway(aio_sink.host, antivirus={"engine": "clamd", "clamd": clamd.addr})
    send(gw, eicar_mail(to=b"bob@example.com"), sender="a@sender.test")
    assert last_scan(gw)["virus"].startswith(EICAR_SIG)
    assert aio_sink.count() == 0
    (m,) = gw.messages()
    assert m["quarantine"] == "virus"
    assert m["verdict"] == "virus"
    assert m["subject"] == "invoice"
    assert [r["address"] for r in m["recipients"]] == [RCPT]
    assert gw.messages("quarantine=virus") == [m]
    st, detail = gw.api("GET", "/api/v1/messages/%s" % m["id"])
    assert st == 200, detail
    assert [a["filename"] for a in detail["attachments"]] == ["inv.com"]
    assert quarantine_counts(gw)["virus"] == ("virus", 1)

    send(gw, clean_message())
    assert last_scan(gw)["virus"] == "-"
    (d,) = aio_sink.messages
    assert b"\r\nSubject: Meeting notes\r\n" in d["data"]
    assert quarantine_counts(gw)["virus"] == ("virus", 1)


def test_each_system_quarantine_is_listed_once_under_its_own_name(start_gateway, aio_sink,
                                                                   clamd):
    # A filter names the system quarantines in another case: the same quarantines.
    gw = start_gateway(aio_sink.host, start=False,
                       antivirus={"engine": "clamd", "clamd": clamd.addr})
    gw.apply({"filters": {"file": gw.write_file("gw.filters", (
        'shout: if subject == "^loud$" { quarantine("VIRUS"); }\n'
        'wave: if subject == "^wave$" { quarantine("Outbreak"); }\n'))}})
    gw.start()
    send(gw, eicar_mail(to=b"bob@example.com"), sender="a@sender.test")
    send(gw, clean_message(subject=b"loud"))
    send(gw, clean_message(subject=b"wave"))
    assert aio_sink.count() == 0
    st, doc = gw.api("GET", "/api/v1/quarantines")
    assert st == 200, doc
    names = [q["name"] for q in doc["quarantines"]]
    system = [n for n in names if n.lower() in ("virus", "outbreak", "unclassified")]
    assert sorted(system) == ["outbreak", "unclassified", "virus"], names
    assert quarantine_counts(gw)["virus"] == ("virus", 2)
    assert quarantine_counts(gw)["outbreak"] == ("outbreak", 1)
    assert quarantine_counts(gw)["unclassified"] == ("unclassified", 0)
    assert sorted(m["subject"] for m in gw.messages("quarantine=virus")) == ["invoice", "loud"]


def test_clamd_drop_accepts_and_keeps_nothing(start_gateway, aio_sink, clamd):
    gw = start_gateway(aio_sink.host, antivirus={"engine": "clamd", "clamd": clamd.sock,
                                                 "action": "drop"})
    send(gw, eicar_mail(to=b"bob@example.com"), sender="a@sender.test")
    assert last_scan(gw)["virus"].startswith(EICAR_SIG)
    assert "route=drop" in gw.log_text() and "reason=virus" in gw.log_text()
    assert aio_sink.count() == 0
    assert gw.messages() == []
    assert quarantine_counts(gw).get("virus", ("virus", 0)) == ("virus", 0)


@pytest.mark.parametrize("positive_action, quarantine", [
    ("quarantine", "spam"),   # spam leaves delivery: clamd is not asked
    ("tag", "virus"),         # tagged spam goes on to the virus scan
])
def test_spam_and_virus_together(start_gateway, aio_sink, spamd, clamd, positive_action,
                                 quarantine):
    gw = start_gateway(aio_sink.host,
                       antispam={"engine": "spamd", "spamd": spamd.addr,
                                 "positive_action": positive_action},
                       antivirus={"engine": "clamd", "clamd": clamd.addr},
                       spam_quarantine={"enabled": "yes"})
    send(gw, gtube_and_eicar(), sender="spammer@sender.test")
    s = last_scan(gw)
    assert s["verdict"] == "spam" and float(s["score"]) >= 1000.0, s
    if quarantine == "spam":
        assert s["virus"] == "-", s
    else:
        assert s["virus"].startswith(EICAR_SIG), s
    (m,) = gw.messages()
    assert m["quarantine"] == quarantine
    counts = quarantine_counts(gw)
    assert counts[quarantine][1] == 1
    other = "virus" if quarantine == "spam" else "spam"
    assert counts.get(other, (None, 0))[1] == 0
    assert aio_sink.count() == 0

"""The whole PVO chain with real processes (PV9, SQ5): a client sends to a real
lazaret-gw (content filters, outbreak rules, a real clamd that knows EICAR) whose
quarantines are centralized on a real lazaretd; an admin acts on the manager, and
released mail comes back through the gateway to its next hop.

  smtplib (127.0.0.1) -> lazaret-gw -> next hop (aiosmtpd sink, read by the test)
                              |  ^
            PVO transfer :7025 v  | release, from [release] source_address 127.0.0.2
                            lazaretd

The manager releases from 127.0.0.2, which the gateway's [manager] addresses lists:
it takes such mail as released and does not scan it (SQ5) unless the manager marks it
`rescan=yes` (released outbreak mail). The test client sends from 127.0.0.1, so its
mail is scanned.
"""

import base64
import re

from conftest import MANAGER_NAME
from e2e_helpers import stays, t, wait_for
from engine_fixtures import EICAR, EICAR_SIG, clamd, eicar_mail  # noqa: F401
from gw_fixtures import make_message, start_gateway  # noqa: F401
from test_gateway_pvo import OUTBREAK, RCPT, SENDER, start_central_gw
from test_pvo_actions import act, check_released, gateway_at, memberships

CAROL = "carol@example.com"
MANAGER_ADDR = "127.0.0.2"  # the manager's [release] source_address
POLICY = "添付ファイル"  # test_gateway_pvo.FILTERS quarantines "invoice" subjects there
PARCEL = "Your parcel is waiting"  # test_gateway_pvo.OUTBREAK's wave_0042
EICAR_B64 = base64.encodebytes(EICAR).replace(b"\n", b"\r\n")  # as eicar_mail encodes it


def chain(start_manager, start_gateway, sink, clamd_daemon=None, **manager_overrides):
    """A manager releasing from 127.0.0.2 and a central gateway it has registered at
    127.0.0.1 with release_port = the gateway's SMTP port; (manager, gateway)."""
    m = start_manager(release__source_address=MANAGER_ADDR, **manager_overrides)
    gw = start_central_gw(start_gateway, sink, m, clamd_daemon,
                          manager={"addresses": MANAGER_ADDR})
    gateway_at(m, gw.smtp_port)
    gw.wait_log("gw.central_pvo host=127.0.0.1:%d reachable=yes" % m.pvo_port)
    return m, gw


# What a gateway writes for the manager, and drops when the manager releases the mail.
TRANSFER_FIELDS = (b"x-lazaret-gateway", b"x-lazaret-verdict", b"x-lazaret-score",
                   b"x-lazaret-client-address", b"x-lazaret-quarantine", b"x-lazaret-origin-id")


def for_recipient(raw):
    """raw without the gateway's X-Lazaret-* transfer fields (folded lines and all)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    out, skip = [], False
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if not skip:
                out.append(line)
            continue
        skip = line.split(b":", 1)[0].strip().lower() in TRANSFER_FIELDS
        if not skip:
            out.append(line)
    return b"\r\n".join(out) + sep + body


def raw_of(m, mid):
    st, _, body = m.http("GET", "/api/v1/messages/%s/raw" % mid)
    assert st == 200, mid
    return body


def quarantine_one(m, gw, msg, subject_hint, rcpts=RCPT):
    """Sends msg through the gateway; the one new manager message it became."""
    before = {x["id"] for x in m.list_all()}
    code, text = gw.send(SENDER, rcpts, msg)
    assert code == 250, text
    new = [x for x in m.list_all() if x["id"] not in before]
    assert len(new) == 1, (subject_hint, new)
    return new[0]["id"]


def gw_lines(gw, event, mid=None):
    """The gateway's log lines of one event (about one gateway job id when given)."""
    out = []
    for line in gw.log_text().splitlines():
        if " %s " % event not in line and not line.endswith(" " + event):
            continue
        if mid is None or "id=%s " % mid in line:
            out.append(line)
    return out


def released_job_ids(gw):
    """The gateway job ids of released mail (rescanned or not), with the client each
    came from."""
    pattern = r"gw\.released(?:_rescan)? id=(\S+) session=\S+ client=(\S+)"
    return [(mm.group(1), mm.group(2)) for mm in re.finditer(pattern, gw.log_text())]


def via_gateway(data, job_id):
    """data as the gateway passed it on: its Received field for the manager's
    connection on top of what the manager sent; what the manager sent."""
    mm = re.match(rb"Received: from %s \(\[%s\]\)\r\n\tby gw-e2e \(lazaret-gw\) with ESMTP "
                  rb"id %s;\r\n\t[^\r\n]+\r\n" % (MANAGER_NAME.encode(),
                                                 re.escape(MANAGER_ADDR.encode()),
                                                 job_id.encode()), data)
    assert mm, data[:300]
    return data[mm.end():]


def delivered_once(sink, n, margin=2.0):
    got = sink.wait_count(n, timeout=t(30))
    assert stays(lambda: sink.count() == n, t(margin)), sink.messages
    return got


# ---- 1. virus + policy: delivered once, when released from both, unscanned ------------

def test_virus_and_policy_release_goes_back_through_the_gateway_once(
        start_manager, start_gateway, aio_sink, clamd):
    m, gw = chain(start_manager, start_gateway, aio_sink, clamd)
    mail = eicar_mail(to=RCPT.encode(), subject=b"Invoice 2026-12")
    mid = quarantine_one(m, gw, mail, "eicar invoice", rcpts=[RCPT, CAROL])
    assert sorted(r["address"] for r in m.get_message(mid)["recipients"]) == [RCPT, CAROL]
    q = memberships(m, mid)
    assert sorted(q) == sorted(["virus", POLICY])
    assert q["virus"]["reason"].startswith(EICAR_SIG), q
    assert q[POLICY]["reason"] == "block_invoice"
    assert gw.messages() == []  # nothing kept on the gateway
    assert aio_sink.count() == 0
    stored = raw_of(m, mid)
    assert EICAR_B64 in stored

    st, doc = act(m, mid, "release", {"quarantine": "virus"})
    assert st == 202, doc
    assert stays(lambda: aio_sink.count() == 0, t(2))  # still held in the policy quarantine
    assert released_job_ids(gw) == []

    st, doc = act(m, mid, "release", {"quarantine": POLICY})
    assert st == 202, doc
    (got,) = delivered_once(aio_sink, 1)
    # through the gateway (its next hop is the sink), from the manager's address
    assert got["peer"] == "127.0.0.1"
    assert sorted(got["rcpts"]) == [RCPT, CAROL]  # one transaction for both
    (job,) = released_job_ids(gw)
    assert job[1] == MANAGER_ADDR, job
    # not scanned: no rescan, no scan result for that job; the EICAR body arrived whole
    assert gw_lines(gw, "gw.released_rescan") == []
    assert gw_lines(gw, "gw.scanned", job[0]) == []
    (decision,) = gw_lines(gw, "gw.decision", job[0])
    assert "route=next_hop" in decision and "reason=released" in decision, decision
    check_released(via_gateway(got["data"], job[0]), for_recipient(stored), rescan=False)
    assert EICAR_B64 in got["data"]
    sent = gw_lines(gw, "gw.sent", job[0])
    assert len(sent) == 1 and "route=next_hop" in sent[0] and "status=ok" in sent[0], sent
    wait_for(lambda: [r["state"] for r in m.get_message(mid)["recipients"]] ==
             ["released", "released"], t(15), "the recipients released")

    # the second click changes nothing and sends nothing
    assert act(m, mid, "release", {"quarantine": POLICY}) == (409, {"error": {
        "code": "conflict",
        "message": "this message is not held in quarantine \"%s\" any more (released)"
        % POLICY}})
    assert stays(lambda: aio_sink.count() == 1, t(2))
    assert len(released_job_ids(gw)) == 1
    assert len(m.list_all()) == 1


# ---- 2. released from one, deleted from the other: never delivered -----------------

def test_deleted_after_release_from_the_other_is_never_delivered(
        start_manager, start_gateway, aio_sink, clamd):
    m, gw = chain(start_manager, start_gateway, aio_sink, clamd)
    mid = quarantine_one(m, gw, eicar_mail(to=RCPT.encode(), subject=b"invoice again"), "2")
    assert sorted(memberships(m, mid)) == sorted(["virus", POLICY])
    assert act(m, mid, "release", {"quarantine": POLICY})[0] == 202
    st, doc = act(m, mid, "delete", {"quarantine": "virus"})
    assert st == 200, doc
    assert {q["name"]: q["state"] for q in doc["quarantines"]} == \
        {"virus": "deleted", POLICY: "released"}
    assert [r["state"] for r in doc["recipients"]] == ["deleted"]
    assert stays(lambda: aio_sink.count() == 0, t(4))
    assert released_job_ids(gw) == []
    assert [r["state"] for r in m.get_message(mid)["recipients"]] == ["deleted"]


# ---- 3. outbreak: released mail is rescanned --------------------------------------

def test_outbreak_released_after_the_rule_is_withdrawn_is_rescanned_and_delivered(
        start_manager, start_gateway, aio_sink):
    m, gw = chain(start_manager, start_gateway, aio_sink)
    mid = quarantine_one(m, gw, make_message(subject=PARCEL), "parcel")
    q = memberships(m, mid)
    assert list(q) == ["outbreak"] and q["outbreak"]["reason"] == "wave_0042"
    stored = raw_of(m, mid)

    # the vendor's next version withdraws the rule; the admin reloads the gateway
    gw.write_file("outbreak.rules", "# outbreak rules, from the vendor\n"
                  "version 2026120502\n"
                  "wave_0043: if subject == \"^Your invoice is overdue$\" "
                  "{ quarantine(\"Outbreak\"); }\n")
    gw.reload()
    gw.wait_log("outbreak=2026120502")
    assert gw_lines(gw, "gw.reload_failed") == []

    assert act(m, mid, "release", {"quarantine": "outbreak"})[0] == 202
    (got,) = delivered_once(aio_sink, 1)
    (job,) = released_job_ids(gw)
    assert job[1] == MANAGER_ADDR
    (rescan,) = gw_lines(gw, "gw.released_rescan")
    assert "id=%s " % job[0] in rescan and "client=%s" % MANAGER_ADDR in rescan
    assert gw_lines(gw, "gw.outbreak", job[0]) == []
    check_released(via_gateway(got["data"], job[0]), for_recipient(stored), rescan=True)
    assert b"Subject: " + PARCEL.encode() in got["data"]
    assert len(m.list_all()) == 1  # nothing came back to the manager


def test_outbreak_released_while_the_rule_matches_is_kept(
        start_manager, start_gateway, aio_sink):
    m, gw = chain(start_manager, start_gateway, aio_sink)
    first = quarantine_one(m, gw, make_message(subject=PARCEL), "parcel")
    expires = memberships(m, first)["outbreak"]["expires_at"]
    stored = raw_of(m, first)
    assert act(m, first, "release", {"quarantine": "outbreak"})[0] == 202
    # rescanned, the rule matches again: the gateway says so in its reply and sends
    # it nowhere; the manager holds it again, with the rule, its expiry unchanged
    wait_for(lambda: memberships(m, first)["outbreak"]["rescan"] == "kept", t(30),
             "the gateway's verdict")
    (job,) = released_job_ids(gw)
    assert gw_lines(gw, "gw.released_rescan", job[0])
    assert gw_lines(gw, "gw.outbreak", job[0])
    (kept,) = gw_lines(gw, "gw.rescan_kept", job[0])
    assert "manager_id=%s rule=wave_0042" % first in kept
    q = memberships(m, first)
    assert list(q) == ["outbreak"] and q["outbreak"]["state"] == "held"
    assert q["outbreak"]["reason"] == "wave_0042"
    assert q["outbreak"]["rescan_rule"] == "wave_0042"
    assert q["outbreak"]["expires_at"] == expires
    assert [r["state"] for r in m.get_message(first)["recipients"]] == ["quarantined"]
    assert "release.rescan msg=%s verdict=kept rule=wave_0042" % first in m.log_text()
    # nothing loops by itself, nothing is duplicated: no transfer, nothing at the next hop
    assert stays(lambda: len(m.list_all()) == 1 and aio_sink.count() == 0, t(4))
    assert len(released_job_ids(gw)) == 1

    # the rule withdrawn, the second release is delivered, once
    gw.write_file("outbreak.rules", OUTBREAK.replace("2026120501", "2026120503")
                  .replace("^Your parcel is waiting$", "^Nothing matches this$"))
    gw.reload()
    gw.wait_log("outbreak=2026120503")
    assert act(m, first, "release", {"quarantine": "outbreak"})[0] == 202
    (got,) = delivered_once(aio_sink, 1)
    jobs = released_job_ids(gw)
    assert len(jobs) == 2 and jobs[1][1] == MANAGER_ADDR, jobs
    assert gw_lines(gw, "gw.released_rescan", jobs[1][0])
    assert gw_lines(gw, "gw.outbreak", jobs[1][0]) == []
    check_released(via_gateway(got["data"], jobs[1][0]), for_recipient(stored), rescan=True)
    assert got["data"].count(b"X-Lazaret-Released: ") == 1
    assert b"Subject: " + PARCEL.encode() in got["data"]
    wait_for(lambda: memberships(m, first)["outbreak"]["rescan"] == "clean", t(15),
             "the clean verdict")
    assert memberships(m, first)["outbreak"]["state"] == "released"
    assert memberships(m, first)["outbreak"]["rescan_rule"] is None
    assert [r["state"] for r in m.get_message(first)["recipients"]] == ["released"]
    assert len(m.list_all()) == 1


def test_outbreak_release_rescan_finds_the_virus_a_new_signature_knows(
        start_manager, start_gateway, aio_sink, clamd):
    # the outbreak rule held it before the engines knew it: no antivirus yet
    m, gw = chain(start_manager, start_gateway, aio_sink)
    held = quarantine_one(m, gw, eicar_mail(to=RCPT.encode(), subject=PARCEL.encode()),
                          "parcel with eicar")
    assert list(memberships(m, held)) == ["outbreak"]
    # the signature is there now, the rule withdrawn
    gw.write_file("outbreak.rules", OUTBREAK.replace("2026120501", "2026120504")
                  .replace("^Your parcel is waiting$", "^Nothing matches this$"))
    gw.reload(antivirus={"engine": "clamd", "clamd": clamd.addr})
    gw.wait_log("outbreak=2026120504")
    assert act(m, held, "release", {"quarantine": "outbreak"})[0] == 202
    wait_for(lambda: len(m.list_all()) == 2, t(30), "the rescan's virus quarantine")
    (job,) = released_job_ids(gw)
    assert gw_lines(gw, "gw.released_rescan", job[0])
    (virus,) = [x["id"] for x in m.list_all() if x["id"] != held]
    q = memberships(m, virus)
    assert list(q) == ["virus"] and q["virus"]["reason"].startswith(EICAR_SIG), q
    assert stays(lambda: aio_sink.count() == 0, t(2))
    # the original is out of the Outbreak quarantine: its rescan found the virus
    wait_for(lambda: memberships(m, held)["outbreak"]["rescan"] == "requarantined", t(15),
             "the requarantined verdict")
    assert memberships(m, held)["outbreak"]["state"] == "released"
    assert memberships(m, held)["outbreak"]["rescan_rule"].startswith(EICAR_SIG)
    # released from virus (no rescan=yes on top): not scanned again, delivered once
    virus_raw = raw_of(m, virus)
    assert act(m, virus, "release", {"quarantine": "virus"})[0] == 202
    (got,) = delivered_once(aio_sink, 1)
    jobs = released_job_ids(gw)
    assert len(jobs) == 2
    assert gw_lines(gw, "gw.released_rescan", jobs[1][0]) == []
    assert gw_lines(gw, "gw.scanned", jobs[1][0]) == []
    check_released(via_gateway(got["data"], jobs[1][0]), for_recipient(virus_raw), rescan=False)
    assert EICAR_B64 in got["data"]
    assert len(m.list_all()) == 2


# ---- 4. the originating gateway is down: the alternate ----------------------------

def test_release_goes_to_the_alternate_when_the_gateway_is_down(
        start_manager, start_gateway, aio_sink, aio_sink_factory, clamd):
    alternate = aio_sink_factory()
    m, gw = chain(start_manager, start_gateway, aio_sink, clamd,
                  pvo_quarantine__alternate_release_gateway=alternate.host, retry_min="1s")
    mid = quarantine_one(m, gw, eicar_mail(to=RCPT.encode(), subject=b"hello"), "virus")
    stored = raw_of(m, mid)
    assert gw.stop() == 0
    assert act(m, mid, "release", {"quarantine": "virus"})[0] == 202
    (got,) = delivered_once(alternate, 1, margin=4)
    assert got["rcpts"] == [RCPT]
    assert got["peer"] == MANAGER_ADDR  # straight from the manager
    check_released(got["data"], stored, rescan=False)
    assert "host=127.0.0.1:%d" % gw.smtp_port in m.log_text()  # the gateway was tried
    wait_for(lambda: [r["state"] for r in m.get_message(mid)["recipients"]] == ["released"],
             t(15), "the recipient released")
    # the gateway back: nothing more comes through it
    gw.start()
    assert stays(lambda: aio_sink.count() == 0 and alternate.count() == 1, t(3))


def test_without_an_alternate_the_release_waits_for_the_gateway(
        start_manager, start_gateway, aio_sink, clamd):
    m, gw = chain(start_manager, start_gateway, aio_sink, clamd, retry_min="1s",
                  retry_max="2s")
    mid = quarantine_one(m, gw, eicar_mail(to=RCPT.encode(), subject=b"hello"), "virus")
    stored = raw_of(m, mid)
    assert gw.stop() == 0
    assert act(m, mid, "release", {"quarantine": "virus"})[0] == 202
    wait_for(lambda: "release.deferred" in m.log_text(), t(20), "a deferred attempt")
    assert [r["state"] for r in m.get_message(mid)["recipients"]] == ["releasing"]
    gw.start()
    (got,) = delivered_once(aio_sink, 1, margin=4)
    (job,) = released_job_ids(gw)
    check_released(via_gateway(got["data"], job[0]), for_recipient(stored), rescan=False)
    wait_for(lambda: [r["state"] for r in m.get_message(mid)["recipients"]] == ["released"],
             t(15), "the recipient released")


def test_next_hop_deferring_the_release_keeps_it_queued_on_the_manager(
        start_manager, start_gateway, aio_sink, clamd):
    # the gateway keeps no queue: its next hop's 4xx goes back to the manager
    m, gw = chain(start_manager, start_gateway, aio_sink, clamd, retry_min="1s",
                  retry_max="2s")
    mid = quarantine_one(m, gw, eicar_mail(to=RCPT.encode(), subject=b"hello"), "virus")
    aio_sink.handler.data_reply = "451 4.3.0 try again later"
    assert act(m, mid, "release", {"quarantine": "virus"})[0] == 202
    wait_for(lambda: "release.deferred" in m.log_text(), t(20), "a deferred attempt")
    assert aio_sink.count() == 0
    assert [r["state"] for r in m.get_message(mid)["recipients"]] == ["releasing"]
    aio_sink.handler.data_reply = None
    delivered_once(aio_sink, 1, margin=4)
    wait_for(lambda: [r["state"] for r in m.get_message(mid)["recipients"]] == ["released"],
             t(15), "the recipient released")
    assert gw.messages() == []


# ---- 5. the manager is down: 451, nothing stored; the retry is stored once -------------

def test_manager_down_gives_451_and_the_retry_is_stored_once(
        start_manager, start_gateway, aio_sink, clamd):
    m, gw = chain(start_manager, start_gateway, aio_sink, clamd)
    assert m.stop() == 0
    mail = eicar_mail(to=RCPT.encode(), subject=b"hello")
    code, text = gw.send(SENDER, RCPT, mail)
    assert (code, text) == (451, "4.3.0 Error: could not relay the message, try again later")
    (deferred,) = [x for x in gw_lines(gw, "gw.sent") if "route=central_pvo" in x]
    assert "status=deferred" in deferred, deferred
    assert gw.messages() == []
    assert aio_sink.count() == 0
    # clean mail flows on meanwhile
    code, text = gw.send(SENDER, RCPT, make_message(subject="hello, clean"))
    assert code == 250, text
    (clean,) = aio_sink.wait_count(1)
    assert b"Subject: hello, clean" in clean["data"]
    m.start()
    assert m.list_all() == []
    # the client's retry is stored; a retry of the retry (its 250 lost) is the same one
    for _ in range(2):
        code, text = gw.send(SENDER, RCPT, mail)
        assert code == 250, text
    (msg,) = m.list_all()
    assert list(memberships(m, msg["id"])) == ["virus"]
    assert m.log_text().count("duplicate=yes") == 1
    assert gw.messages() == []
    assert aio_sink.count() == 1

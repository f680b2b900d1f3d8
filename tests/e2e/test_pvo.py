"""The policy, virus and outbreak (PVO) quarantines' listener ([pvo_quarantine]) as a
gateway sees it: X-Lazaret-Quarantine memberships, a retried transfer stored once,
the refusals and fallbacks, expiry per membership, and what the API shows of it."""

import datetime
import smtplib
import subprocess
import time

import pytest

from e2e_helpers import RawSMTP, STORED_RE, dot_stuff, make_message, t, wait_for
from test_sessions import Client, add_user


def register_gateway(m, name="gw-e2e", address="127.0.0.1"):
    """Registers a gateway at address, which the PVO listener then lets in."""
    st, doc = m.api("POST", "/api/v1/gateways", json={"name": name, "address": address})
    assert st == 201, doc
    return doc


@pytest.fixture
def manager(start_manager):
    """A running lazaretd whose registry holds a gateway at 127.0.0.1."""
    m = start_manager()
    register_gateway(m)
    return m


def rfc3339_in(seconds):
    """An RFC 3339 time seconds from now, at +09:00 (offsets must be honoured)."""
    tz = datetime.timezone(datetime.timedelta(hours=9))
    when = datetime.datetime.now(tz) + datetime.timedelta(seconds=seconds)
    return when.isoformat(timespec="milliseconds")


def pvo_message(headers, subject="pvo test", to="user@corp.test"):
    """make_message with X-Lazaret-* header lines (already formatted) in front."""
    raw = make_message(subject, to=to)
    return "".join(h + "\r\n" for h in headers).encode("utf-8") + raw


def pvo_send(m, raw, rcpts=("user@corp.test",), sender="gw@example.jp"):
    """One transfer to :7025 with smtplib; (code, reply text) of the end of data."""
    s = smtplib.SMTP("127.0.0.1", m.pvo_port, timeout=t(15))
    try:
        s.ehlo("gw.e2e.test")
        code, resp = s.mail(sender)
        assert code == 250, (code, resp)
        for r in rcpts:
            code, resp = s.rcpt(r)
            assert code == 250, (code, resp)
        try:
            code, resp = s.data(raw)
        except smtplib.SMTPDataError as e:
            code, resp = e.smtp_code, e.smtp_error
        return code, resp.decode("utf-8", "replace")
    finally:
        s.quit()


def stored_id(code, resp):
    m = STORED_RE.match("%d %s" % (code, resp))
    assert m, (code, resp)
    return m.group(1)


def store_snapshot(m):
    """{id: (raw bytes, quarantines)} of everything in the store."""
    out = {}
    for x in m.list_all():
        st, _, body = m.http("GET", "/api/v1/messages/%s/raw" % x["id"])
        assert st == 200, x["id"]
        out[x["id"]] = (body, [q["name"] for q in m.get_message(x["id"]).get("quarantines", [])])
    return out


def quarantines(m):
    st, doc = m.api("GET", "/api/v1/quarantines")
    assert st == 200, doc
    return {q["name"]: q for q in doc["quarantines"]}


# ---------------------------------------------------------------------------


def test_headers_make_memberships(manager):
    m = manager
    expires = rfc3339_in(7 * 86400)
    raw = pvo_message([
        # folded over two lines, a quoted reason with an escaped quote
        'X-Lazaret-Quarantine: Adult; reason="Adult \\"strict\\" filter";\r\n'
        '\texpires=%s; entered=2026-01-02T03:04:05Z' % expires,
        "X-Lazaret-Quarantine: Virus; reason=Eicar-Test-Signature",
        "X-Lazaret-Origin-Id: gw1-0001",
    ])
    mid = stored_id(*pvo_send(m, raw, rcpts=("user@corp.test", "boss@corp.test")))
    doc = m.get_message(mid)
    assert doc["quarantine"] == "Adult"
    qs = doc["quarantines"]
    assert [q["name"] for q in qs] == ["Adult", "virus"]  # system names folded to lower case
    assert qs[0]["type"] == "policy"
    assert qs[0]["reason"] == 'Adult "strict" filter'
    assert qs[0]["entered_at"] == "2026-01-02T03:04:05Z"
    exp = datetime.datetime.fromisoformat(expires).astimezone(datetime.timezone.utc)
    assert qs[0]["expires_at"] == exp.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert qs[0]["state"] == "held"
    assert qs[1]["type"] == "virus"
    assert qs[1]["reason"] == "Eicar-Test-Signature"
    # the message expires at the latest of its quarantines' expiries (virus: 14 days default)
    assert doc["expires_at"] == qs[1]["expires_at"]
    st, _, body = m.http("GET", "/api/v1/messages/%s/raw" % mid)
    assert st == 200 and body == raw

    # the unknown policy quarantine was created, with its defaults, and logged
    q = quarantines(m)
    assert q["Adult"]["type"] == "policy" and q["Adult"]["messages"] == 1
    assert q["virus"]["type"] == "virus" and q["virus"]["messages"] == 1
    assert q["virus"]["bytes"] == len(raw)
    assert q["outbreak"]["messages"] == 0 and q["unclassified"]["messages"] == 0
    assert q["spam"]["messages"] == 0
    assert "*pvo" not in q
    wait_for(lambda: "store.quarantine_created quarantine=Adult" in m.log_text(), 5,
             "the creation logged")

    # the listing filter through memberships, for every type
    assert [x["id"] for x in m.list_all("quarantine=virus")] == [mid]
    assert [x["id"] for x in m.list_all("quarantine=Adult")] == [mid]
    assert m.list_all("quarantine=outbreak") == []
    assert m.list_all("quarantine=spam") == []
    spam = m.send("s@example.jp", ["user@corp.test"], make_message("plain spam"))
    assert [x["id"] for x in m.list_all("quarantine=spam")] == [spam]
    listed = {x["id"]: x for x in m.list_all()}
    assert set(listed) == {mid, spam}
    assert [x["name"] for x in listed[mid]["quarantines"]] == ["Adult", "virus"]
    assert "quarantines" not in listed[spam]


def test_swaks_and_one_transfer_for_several_quarantines(manager):
    m = manager
    r = subprocess.run(
        ["swaks", "--server", "127.0.0.1", "--port", str(m.pvo_port), "--from", "gw@example.jp",
         "--to", "user@corp.test", "--header", "Subject: from swaks",
         "--add-header", "X-Lazaret-Quarantine: Finance; reason=\"Finance rule\"",
         "--add-header", "X-Lazaret-Quarantine: outbreak; reason=\"rule 7\"",
         "--add-header", "X-Lazaret-Origin-Id: swaks-1"],
        capture_output=True, text=True, timeout=t(30))
    assert r.returncode == 0, r.stdout + r.stderr
    ids = [ln.split()[-1] for ln in r.stdout.splitlines() if "Ok: stored as" in ln]
    assert len(ids) == 1, r.stdout
    doc = m.get_message(ids[0])
    assert sorted(q["name"] for q in doc["quarantines"]) == ["Finance", "outbreak"]
    assert len(m.list_all()) == 1


def test_retry_after_the_dot_stores_nothing_twice(manager):
    """The connection drops after DATA's final dot, before the 250: the retry is one message."""
    m = manager
    raw = pvo_message(["X-Lazaret-Quarantine: Policy-A; reason=r1",
                       "X-Lazaret-Quarantine: virus; reason=r2",
                       "X-Lazaret-Origin-Id: gw1-retry-42"])
    c = RawSMTP(m.pvo_port)
    assert c.greeting().startswith("220 ")
    c.ehlo()
    assert c.cmd("MAIL FROM:<gw@example.jp>") == "250 2.1.0 Ok"
    assert c.cmd("RCPT TO:<user@corp.test>") == "250 2.1.5 Ok"
    assert c.cmd("DATA").startswith("354 ")
    c.send(dot_stuff(raw))  # ends with CRLF.CRLF
    c.close()  # the 250 is never read
    # the gateway retries the same transfer
    mid = stored_id(*pvo_send(m, raw))
    wait_for(lambda: len(m.list_all()) >= 1, 10, "the message stored")
    time.sleep(t(0.5))  # the first transfer's commit, if it was later, is in by now
    listed = m.list_all()
    assert [x["id"] for x in listed] == [mid], listed
    # both transfers reached the store: one stored it, the other was merged into it
    wait_for(lambda: m.log_text().count("origin_id=gw1-retry-42 duplicate=") == 2, 10,
             "both transfers logged")
    assert m.log_text().count("origin_id=gw1-retry-42 duplicate=yes") == 1
    doc = m.get_message(mid)
    assert sorted(q["name"] for q in doc["quarantines"]) == ["Policy-A", "virus"]
    st, _, body = m.http("GET", "/api/v1/messages/%s/raw" % mid)
    assert body == raw
    # and once more, from the start: the same id again
    assert stored_id(*pvo_send(m, raw)) == mid
    assert len(m.list_all()) == 1
    # a retry that names one more quarantine adds that membership only
    more = pvo_message(["X-Lazaret-Quarantine: Policy-A; reason=r1",
                        "X-Lazaret-Quarantine: virus; reason=r2",
                        "X-Lazaret-Quarantine: Policy-B; reason=r3",
                        "X-Lazaret-Origin-Id: gw1-retry-42"])
    assert stored_id(*pvo_send(m, more)) == mid
    assert sorted(q["name"] for q in m.get_message(mid)["quarantines"]) == \
        ["Policy-A", "Policy-B", "virus"]
    assert len(m.list_all()) == 1
    # another origin id is another message
    other = pvo_message(["X-Lazaret-Quarantine: virus", "X-Lazaret-Origin-Id: gw1-retry-43"])
    assert stored_id(*pvo_send(m, other)) != mid
    assert len(m.list_all()) == 2


BAD = [
    # (headers, exact reply to the end of data)
    (['X-Lazaret-Quarantine: Adult; reason="never closed'],
     "550 5.6.0 Error: malformed X-Lazaret-Quarantine: reason: an unterminated quoted string"),
    (["X-Lazaret-Quarantine: Adult; expires=next-week"],
     "550 5.6.0 Error: malformed X-Lazaret-Quarantine: expires: not an RFC 3339 date-time"),
    (["X-Lazaret-Quarantine: Adult; expires=2026-12-05T07:00:00"],
     "550 5.6.0 Error: malformed X-Lazaret-Quarantine: expires: not an RFC 3339 date-time"),
    (["X-Lazaret-Quarantine: ; reason=x"],
     "550 5.6.0 Error: malformed X-Lazaret-Quarantine: no quarantine name"),
    (["X-Lazaret-Quarantine: virus", "X-Lazaret-Quarantine: Virus"],
     '550 5.6.0 Error: malformed X-Lazaret-Quarantine: quarantine "Virus" named twice'),
    (["X-Lazaret-Quarantine: virus", "X-Lazaret-Origin-Id: has blanks"],
     "550 5.6.0 Error: malformed X-Lazaret-Origin-Id: not printable ASCII without blanks"),
    (["X-Lazaret-Quarantine: virus", "X-Lazaret-Origin-Id: a", "X-Lazaret-Origin-Id: b"],
     "550 5.6.0 Error: malformed X-Lazaret-Origin-Id: given twice"),
    (["X-Lazaret-Quarantine: *pvo"],
     "550 5.6.0 Error: malformed X-Lazaret-Quarantine: the quarantine name begins with '*'"),
    (["X-Lazaret-Quarantine: 経理\"x"],
     "550 5.6.0 Error: malformed X-Lazaret-Quarantine: the quarantine name has '\"'"),
    (["X-Lazaret-Quarantine: spam; reason=x"],
     "550 5.7.1 Error: the spam quarantine takes mail on the spam quarantine listener, "
     "not here"),
    (["X-Lazaret-Quarantine: virus", "X-Lazaret-Quarantine: SPAM"],
     "550 5.7.1 Error: the spam quarantine takes mail on the spam quarantine listener, "
     "not here"),
    (["X-Lazaret-Quarantine: Adult; expires=2020-01-01T09:00:00+09:00"],
     '550 5.7.0 Error: quarantine "Adult" expired at 2020-01-01T00:00:00Z, not stored'),
]


def test_bad_headers_get_exact_replies_and_the_store_is_intact(manager):
    m = manager
    base = pvo_message(["X-Lazaret-Quarantine: virus; reason=base",
                        "X-Lazaret-Origin-Id: base-1"], subject="baseline")
    stored_id(*pvo_send(m, base))
    before = store_snapshot(m)
    q_before = quarantines(m)
    with RawSMTP(m.pvo_port) as c:
        assert c.greeting().startswith("220 ")
        c.ehlo()
        for headers, reply in BAD:
            raw = pvo_message(headers, subject="bad")
            assert c.cmd("MAIL FROM:<gw@example.jp>") == "250 2.1.0 Ok"
            assert c.cmd("RCPT TO:<user@corp.test>") == "250 2.1.5 Ok"
            assert c.cmd("DATA").startswith("354 ")
            c.send(dot_stuff(raw))
            assert c.reply_line() == reply, headers
        # the session goes on after every refusal
        assert c.cmd("NOOP") == "250 2.0.0 Ok"
    assert store_snapshot(m) == before
    q_after = quarantines(m)
    assert set(q_after) == set(q_before)  # no quarantine was created by a refused message
    for name in q_before:
        assert q_after[name]["messages"] == q_before[name]["messages"], name
    log = m.log_text()
    assert log.count("pvo.refused") == len(BAD)


def test_no_quarantine_header_falls_back_to_unclassified(manager):
    m = manager
    raw = make_message("no header at all")
    mid = stored_id(*pvo_send(m, raw))
    doc = m.get_message(mid)
    assert [(q["name"], q["type"], q["reason"]) for q in doc["quarantines"]] == \
        [("unclassified", "unclassified", "no X-Lazaret-Quarantine header")]
    assert quarantines(m)["unclassified"]["messages"] == 1
    assert [x["id"] for x in m.list_all()] == [mid]
    wait_for(lambda: "pvo.unclassified" in m.log_text(), 5, "the fallback logged")


def test_same_limits_as_the_spam_listener(start_manager):
    m = start_manager(max_message_size="2K", max_recipients=2)
    register_gateway(m)
    with RawSMTP(m.pvo_port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<gw@example.jp> SIZE=4000") == \
            "552 5.3.4 Message size exceeds fixed limit"
        assert c.cmd("MAIL FROM:<gw@example.jp>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<a@corp.test>") == "250 2.1.5 Ok"
        assert c.cmd("RCPT TO:<b@corp.test>") == "250 2.1.5 Ok"
        assert c.cmd("RCPT TO:<c@corp.test>").startswith("452 4.5.3 ")
    assert m.list_all() == []


def test_accept_from_refuses_at_connect(start_manager):
    m = start_manager(pvo_quarantine__accept_from="127.0.0.1/32")
    register_gateway(m)
    register_gateway(m, "gw-outside", "127.0.0.2")  # registered, but outside accept_from
    with RawSMTP(m.pvo_port, source="127.0.0.2") as c:
        assert c.reply_line() == "554 5.7.1 %s: Access denied" % m.hostname
        assert c.closed(), "connection left open after 554"
    wait_for(lambda: "client=127.0.0.2" in m.log_text(), 5, "the refusal in the log")
    # the spam listener keeps its own list
    mid = stored_id(*pvo_send(m, pvo_message(["X-Lazaret-Quarantine: virus"])))
    assert [x["id"] for x in m.list_all()] == [mid]


def test_only_registered_gateways_may_send(start_manager):
    m = start_manager(pvo_quarantine__accept_from="127.0.0.0/8")
    register_gateway(m)

    def greeting_from(source):
        with RawSMTP(m.pvo_port, source=source) as c:
            line = c.reply_line()
            if not line.startswith("220 "):
                assert c.closed(), "connection left open after %r" % line
            return line

    refused = "554 5.7.1 Error: not a registered gateway"
    assert greeting_from("127.0.0.2") == refused
    wait_for(lambda: "pvo.unregistered_gateway" in m.log_text()
             and "client=127.0.0.2" in m.log_text(), 5, "the refusal in the log")
    # registered on this manager: let in at once; removed: refused at once
    register_gateway(m, "gw2", "127.0.0.2")
    assert greeting_from("127.0.0.2").startswith("220 ")
    st, doc = m.api("DELETE", "/api/v1/gateways/gw2")
    assert st == 200, doc
    assert greeting_from("127.0.0.2") == refused
    # a pending entry (a hello without a token) is not a registration
    assert greeting_from("127.0.0.3") == refused
    assert m.list_all() == []
    assert greeting_from("127.0.0.1").startswith("220 ")


def test_spam_actions_leave_pvo_messages_alone(manager):
    """The spam quarantine's release and delete would bypass a PVO message's
    memberships: one by id needs the quarantine to act in (test_pvo_actions.py),
    bulk ones without a PVO quarantine pass it by."""
    m = manager
    pvo = stored_id(*pvo_send(m, pvo_message(["X-Lazaret-Quarantine: virus; reason=EICAR",
                                              "X-Lazaret-Quarantine: Adult"])))
    spam = m.send("s@example.jp", ["user@corp.test"], make_message("plain spam"))
    before = m.get_message(pvo)
    required = ("\"quarantine\" is required: the quarantine of this message to act in")
    for action in ("release", "delete"):
        st, doc = m.api("POST", "/api/v1/messages/%s/%s" % (pvo, action))
        assert (st, doc) == (400, {"error": {"code": "bad_request", "message": required}}), \
            (action, st, doc)
        st, doc = m.api("POST", "/api/v1/messages/%s/%s" % (pvo, action),
                        json={"recipients": ["user@corp.test"]})
        assert (st, doc) == (422, {"error": {"code": "unprocessable",
                                             "message": "unknown field \"recipients\""}}), \
            (action, st, doc)
    st, doc = m.api("POST", "/api/v1/messages/release", json={"all": True})
    assert (st, doc) == (200, {"changed": 1}), doc
    st, doc = m.api("POST", "/api/v1/messages/delete", json={"ids": [pvo, spam]})
    assert (st, doc) == (200, {"changed": 0}), doc  # spam is releasing by now
    assert m.get_message(pvo) == before
    assert [r["state"] for r in m.get_message(spam)["recipients"]] != ["quarantined"]


def test_end_users_never_see_pvo_messages(manager):
    m = manager
    add_user(m, "hana", "hana-password-1", "enduser", ["user@corp.test"])
    pvo = stored_id(*pvo_send(m, pvo_message(["X-Lazaret-Quarantine: Adult"])))
    spam = m.send("s@example.jp", ["user@corp.test"], make_message("their spam"))
    c = Client(m)
    st, doc = c.login("hana", "hana-password-1")
    assert st == 200, doc
    st, doc = c.call("GET", "/api/v1/messages/%s" % pvo)
    assert st == 404, doc
    # downloads: the same answer as for an id that does not exist (nothing leaks)
    unknown = "01900000-0000-7000-8000-000000000000"
    assert c.call("GET", "/api/v1/messages/%s/raw" % pvo) == \
        c.call("GET", "/api/v1/messages/%s/raw" % unknown)
    assert c.call("GET", "/api/v1/messages/%s" % unknown)[0] == 404
    st, doc = c.call("GET", "/api/v1/messages")
    assert st == 200 and [x["id"] for x in doc["messages"]] == [spam]
    for name in ("Adult", "unclassified", "virus"):
        st, doc = c.call("GET", "/api/v1/messages?quarantine=%s" % name)
        assert st in (200, 403, 404), (st, doc)
        if st == 200:
            assert doc["messages"] == [], (name, doc)
    st, doc = c.call("GET", "/api/v1/quarantines")
    assert st == 200 and [q["name"] for q in doc["quarantines"]] == ["spam"]
    # the admin sees both
    assert {x["id"] for x in m.list_all()} == {pvo, spam}


def test_expiry_per_membership(start_manager):
    m = start_manager(purge_interval="1s")
    register_gateway(m)
    early, late = rfc3339_in(t(3)), rfc3339_in(t(10))
    raw = pvo_message(["X-Lazaret-Quarantine: virus; expires=%s" % early,
                       "X-Lazaret-Quarantine: Adult; expires=%s" % late])
    mid = stored_id(*pvo_send(m, raw))
    short = stored_id(*pvo_send(m, pvo_message(["X-Lazaret-Quarantine: outbreak; expires=%s"
                                                % early])))
    spam = m.send("s@example.jp", ["user@corp.test"], make_message("spam stays"))

    def virus_expired():
        doc = m.get_message(mid)
        return {q["name"]: q["state"] for q in doc["quarantines"]}.get("virus") == "expired"
    wait_for(virus_expired, t(20), "the first membership to expire")
    doc = m.get_message(mid)
    assert {q["name"]: q["state"] for q in doc["quarantines"]} == \
        {"virus": "expired", "Adult": "held"}
    assert all(r["state"] == "quarantined" for r in doc["recipients"])
    # a message in one quarantine is gone at its expiry
    wait_for(lambda: m.api("GET", "/api/v1/messages/%s" % short)[0] == 404, t(20),
             "the single-quarantine message to leave")
    q = quarantines(m)
    assert q["virus"]["messages"] == 0 and q["Adult"]["messages"] == 1
    # the latest expiry: the message leaves storage
    wait_for(lambda: m.api("GET", "/api/v1/messages/%s" % mid)[0] == 404, t(30),
             "the message to leave at its latest expiry")
    assert [x["id"] for x in m.list_all()] == [spam]
    assert quarantines(m)["Adult"]["messages"] == 0


def error_of(doc):
    return doc["error"]["message"] if doc and "error" in doc else doc


def test_admins_create_change_and_delete_policy_quarantines(manager):
    m = manager
    add_user(m, "opal", "operator-pw-1", "operator")
    add_user(m, "hana", "hana-password-1", "enduser", ["user@corp.test"])
    body = {"name": "Finance", "type": "policy", "delete_after": "36h",
            "default_action": "release", "overflow_exempt": True, "operators": ["opal"]}
    st, doc = m.api("POST", "/api/v1/quarantines", json=body)
    assert st == 201, doc
    assert doc["quarantine"] == {"name": "Finance", "type": "policy", "messages": 0, "bytes": 0,
                                 "oldest": None, "system": False, "delete_after": "36h",
                                 "default_action": "release", "overflow_exempt": True,
                                 "operators": ["opal"]}
    q = quarantines(m)
    assert q["Finance"]["operators"] == ["opal"]
    assert q["virus"]["system"] is True and q["virus"]["delete_after"] == "14d"
    assert q["virus"]["default_action"] == "delete" and q["virus"]["operators"] == []
    assert "delete_after" not in q["spam"]

    # refused creations: exact reasons, nothing created
    bad = [
        ({"name": "Finance"}, 409, "a quarantine with this name exists"),
        ({"name": "Virus"}, 409, "\"virus\" is a system quarantine"),
        ({"name": "SPAM"}, 409, "\"spam\" is a system quarantine"),
        ({}, 422, "\"name\" is required"),
        ({"name": "*pvo"}, 422, "\"name\" must be 1-64 bytes of UTF-8 text without ; \" \\ = "
         "or control characters, blanks at either end or a leading *"),
        ({"name": "a;b"}, 422, "\"name\" must be 1-64 bytes of UTF-8 text without ; \" \\ = "
         "or control characters, blanks at either end or a leading *"),
        ({"name": "Legal", "type": "virus"}, 422,
         "\"type\" must be policy: the other types are the system quarantines"),
        ({"name": "Legal", "default_action": "keep"}, 422,
         "\"default_action\" must be release or delete"),
        ({"name": "Legal", "delete_after": "soon"}, 422,
         "\"delete_after\" must be a duration such as 14d, 36h or 0 (the default)"),
        ({"name": "Legal", "operators": ["hana"]}, 422,
         "\"operators\": hana is not an operator account"),
        ({"name": "Legal", "operators": ["nobody"]}, 422,
         "\"operators\": nobody is not an operator account"),
    ]
    for b, status, message in bad:
        st, doc = m.api("POST", "/api/v1/quarantines", json=b)
        assert (st, error_of(doc)) == (status, message), b
    st, doc = m.api("POST", "/api/v1/quarantines", json={"name": "Legal", "colour": "red"})
    assert st == 422, doc
    assert set(quarantines(m)) == {"spam", "virus", "outbreak", "unclassified", "Finance"}

    # its delete_after makes the expiry of a message that gives none
    mid = stored_id(*pvo_send(m, pvo_message(["X-Lazaret-Quarantine: Finance; "
                                              "entered=2026-01-01T00:00:00Z"])))
    fin = m.get_message(mid)["quarantines"][0]
    assert (fin["entered_at"], fin["expires_at"]) == ("2026-01-01T00:00:00Z",
                                                      "2026-01-02T12:00:00Z")

    # changes: only the fields given; a system quarantine's too; spam's never
    st, doc = m.api("PATCH", "/api/v1/quarantines/Finance",
                    json={"default_action": "delete", "operators": []})
    assert st == 200, doc
    assert (doc["quarantine"]["default_action"], doc["quarantine"]["operators"],
            doc["quarantine"]["delete_after"], doc["quarantine"]["overflow_exempt"]) == \
        ("delete", [], "36h", True)
    st, doc = m.api("PATCH", "/api/v1/quarantines/virus", json={"delete_after": "30d"})
    assert st == 200 and doc["quarantine"]["delete_after"] == "30d", doc
    st, doc = m.api("PATCH", "/api/v1/quarantines/spam", json={"delete_after": "30d"})
    assert (st, error_of(doc)) == (409, "the spam quarantine's settings are [spam_quarantine]'s")
    st, doc = m.api("PATCH", "/api/v1/quarantines/Nope", json={"delete_after": "30d"})
    assert (st, error_of(doc)) == (404, "no such quarantine")
    st, doc = m.api("PATCH", "/api/v1/quarantines/Finance", json={"name": "Other"})
    assert st == 422, doc
    # a name in UTF-8, in the path
    st, doc = m.api("POST", "/api/v1/quarantines", json={"name": "経理"})
    assert st == 201, doc
    st, doc = m.api("PATCH", "/api/v1/quarantines/%E7%B5%8C%E7%90%86",
                    json={"overflow_exempt": True})
    assert st == 200 and doc["quarantine"]["overflow_exempt"] is True, doc

    # deletion: policy only, and not while it holds a message
    for name, status, message in [
            ("virus", 409, "only policy quarantines can be deleted"),
            ("spam", 409, "only policy quarantines can be deleted"),
            ("Finance", 409, "the quarantine still holds messages"),
            ("Nope", 404, "no such quarantine")]:
        st, doc = m.api("DELETE", "/api/v1/quarantines/%s" % name)
        assert (st, error_of(doc)) == (status, message), name
    st, doc = m.api("DELETE", "/api/v1/quarantines/%E7%B5%8C%E7%90%86")
    assert st == 200, doc
    assert set(quarantines(m)) == {"spam", "virus", "outbreak", "unclassified", "Finance"}
    assert m.get_message(mid)["quarantines"][0]["name"] == "Finance"

    # admins only
    for user, pw in (("opal", "operator-pw-1"), ("hana", "hana-password-1")):
        c = Client(m)
        assert c.login(user, pw)[0] == 200
        assert c.call("POST", "/api/v1/quarantines", body={"name": "Mine"})[0] == 403
        assert c.call("PATCH", "/api/v1/quarantines/Finance",
                      body={"default_action": "release"})[0] == 403
        assert c.call("DELETE", "/api/v1/quarantines/Finance")[0] == 403
    assert quarantines(m)["Finance"]["default_action"] == "delete"

    # audited
    st, doc = m.api("GET", "/api/v1/audit?limit=50")
    assert st == 200, doc
    actions = [(e["action"], e["target"]) for e in doc["entries"]]
    for row in [("quarantine_create", "Finance"), ("quarantine_update", "Finance"),
                ("quarantine_update", "virus"), ("quarantine_delete", "経理")]:
        assert row in actions, (row, actions)

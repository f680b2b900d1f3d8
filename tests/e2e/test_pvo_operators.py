"""Who sees which PVO quarantines: an operator only those assigned to them (and the
spam quarantine, as ever), an admin all of them. A PVO message none of whose
quarantines is an operator's does not exist for them: 404 as an unknown id, for the
detail, the downloads and the actions, and never in a listing, page by page."""

from e2e_helpers import make_attachment_message, make_message
from test_pvo import pvo_send, register_gateway, stored_id
from test_sessions import Client, add_user

UNKNOWN = "01900000-0000-7000-8000-000000000000"
NOT_FOUND = {"error": {"code": "not_found", "message": "no such message"}}
# a PVO message's release and delete name the quarantine (test_pvo_actions.py)
PVO_REFUSED = {"error": {"code": "bad_request", "message": (
    "\"quarantine\" is required: the quarantine of this message to act in")}}


def pvo_with_attachment(quarantines, subject):
    """A multipart message with one attachment, in the given quarantines."""
    raw = make_attachment_message(subject, [("note.txt", "text/plain", b"attached " +
                                             subject.encode())])
    head = "".join("X-Lazaret-Quarantine: %s; reason=\"rule %s\"\r\n" % (q, q)
                   for q in quarantines)
    return head.encode() + raw


def login(m, username, password):
    c = Client(m)
    st, doc = c.login(username, password)
    assert st == 200, doc
    return c


def raw_get(m, client, path):
    """(status, body bytes) of a GET with client's session cookie."""
    st, _, body = m.http("GET", path, token=None, headers={"Cookie": client.cookie})
    return st, body


def pages(client, query="", limit=2):
    """The ids of a listing, page by page, checking each page and its cursor."""
    ids, cursor = [], None
    for _ in range(100):
        q = "limit=%d" % limit + ("&" + query if query else "")
        if cursor:
            q += "&cursor=" + cursor
        st, doc = client.call("GET", "/api/v1/messages?" + q)
        assert st == 200, doc
        assert len(doc["messages"]) <= limit, doc
        ids += [x["id"] for x in doc["messages"]]
        cursor = doc["next_cursor"]
        if cursor is None:
            return ids
        # a cursor only after a full page: no page is left short by a filter
        assert len(doc["messages"]) == limit, doc
    raise AssertionError("the listing does not end")


def listed(client, query=""):
    """{id: listing entry} of every message the client lists."""
    st, doc = client.call("GET", "/api/v1/messages?limit=100" + ("&" + query if query else ""))
    assert st == 200 and doc["next_cursor"] is None, doc
    return {x["id"]: x for x in doc["messages"]}


def quarantine_names(client):
    st, doc = client.call("GET", "/api/v1/quarantines")
    assert st == 200, doc
    return sorted(q["name"] for q in doc["quarantines"])


def assert_absent(m, client, mid):
    """mid answers exactly as an unknown id does, everywhere."""
    for suffix in ("", "/raw", "/attachments/0"):
        got = raw_get(m, client, "/api/v1/messages/%s%s" % (mid, suffix))
        assert got == raw_get(m, client, "/api/v1/messages/%s%s" % (UNKNOWN, suffix)), suffix
        assert got[0] == 404, (suffix, got)
    assert client.call("GET", "/api/v1/messages/%s" % mid) == (404, NOT_FOUND)
    for action in ("release", "delete"):
        assert client.call("POST", "/api/v1/messages/%s/%s" % (mid, action)) == \
            (404, NOT_FOUND), action
        assert client.call("POST", "/api/v1/messages/%s/%s" % (mid, action),
                           body={"recipients": ["user@corp.test"]}) == (404, NOT_FOUND), action


def test_operators_see_only_their_pvo_quarantines(start_manager):
    m = start_manager(spam_quarantine__download_min_role="operator")
    register_gateway(m)
    add_user(m, "opa", "operator-a-pw-1", "operator")
    add_user(m, "opb", "operator-b-pw-1", "operator")
    for name, ops in (("Alpha", ["opa"]), ("Beta", [])):
        st, doc = m.api("POST", "/api/v1/quarantines", json={"name": name, "operators": ops})
        assert st == 201, doc

    # oldest first
    a1 = stored_id(*pvo_send(m, pvo_with_attachment(["Alpha"], "a1")))
    b1 = stored_id(*pvo_send(m, pvo_with_attachment(["Beta"], "b1")))
    ab_raw = pvo_with_attachment(["Beta", "Alpha"], "ab")
    ab = stored_id(*pvo_send(m, ab_raw))
    v1 = stored_id(*pvo_send(m, pvo_with_attachment(["virus"], "v1")))
    s1 = m.send("s@example.jp", ["user@corp.test"], make_message("plain spam"))
    a2 = stored_id(*pvo_send(m, pvo_with_attachment(["Alpha"], "a2")))
    b2 = stored_id(*pvo_send(m, pvo_with_attachment(["Beta"], "b2")))
    everything = [b2, a2, s1, v1, ab, b1, a1]
    assert [x["id"] for x in m.list_all()] == everything
    before = {x: m.get_message(x) for x in everything}
    admin_ab = before[ab]
    assert admin_ab["quarantine"] == "Alpha"
    assert [q["name"] for q in admin_ab["quarantines"]] == ["Alpha", "Beta"]

    opa = login(m, "opa", "operator-a-pw-1")
    opb = login(m, "opb", "operator-b-pw-1")

    # operator A: Alpha's messages and spam, page by page
    assert pages(opa) == [a2, s1, ab, a1]
    assert pages(opa, limit=1) == [a2, s1, ab, a1]
    assert pages(opa, "quarantine=Alpha") == [a2, ab, a1]
    assert pages(opa, "quarantine=Beta", limit=1) == [ab]
    assert pages(opa, "quarantine=virus") == []
    assert pages(opa, "quarantine=spam") == [s1]
    assert pages(opa, "recipient=user@corp.test") == [a2, s1, ab, a1]
    # ab shows A only its Alpha membership, in the listing and the detail
    alpha_of_ab = admin_ab["quarantines"][0]
    entry = listed(opa)[ab]
    assert entry["quarantine"] == "Alpha"
    assert entry["quarantines"] == [alpha_of_ab]
    assert entry["expires_at"] == alpha_of_ab["expires_at"]
    assert listed(opa, "quarantine=Beta")[ab]["quarantines"] == [alpha_of_ab]
    st, doc = opa.call("GET", "/api/v1/messages/%s" % ab)
    assert st == 200, doc
    assert (doc["quarantine"], doc["quarantines"]) == ("Alpha", [alpha_of_ab])
    assert doc["attachments"] == admin_ab["attachments"]
    assert raw_get(m, opa, "/api/v1/messages/%s/raw" % ab) == (200, ab_raw)
    assert raw_get(m, opa, "/api/v1/messages/%s/attachments/0" % ab) == (200, b"attached ab")
    # the others do not exist for A
    for mid in (b1, b2, v1):
        assert_absent(m, opa, mid)
    # on a message of theirs, the spam actions' bodies are refused as for an admin
    for action in ("release", "delete"):
        assert opa.call("POST", "/api/v1/messages/%s/%s" % (ab, action)) == \
            (400, PVO_REFUSED), action
    assert quarantine_names(opa) == ["Alpha", "spam"]
    # the spam quarantine as before
    st, doc = opa.call("GET", "/api/v1/messages/%s" % s1)
    assert st == 200 and doc["id"] == s1, doc

    # operator B has no PVO quarantine: no PVO message at all
    assert pages(opb) == [s1]
    assert pages(opb, "quarantine=Beta") == []
    assert pages(opb, "recipient=user@corp.test") == [s1]
    for mid in (a1, b1, ab, v1, a2, b2):
        assert_absent(m, opb, mid)
    assert quarantine_names(opb) == ["spam"]

    # nothing was changed by the refusals; the admin still sees everything
    assert {x: m.get_message(x) for x in everything} == before
    st, doc = m.api("GET", "/api/v1/quarantines")
    assert sorted(q["name"] for q in doc["quarantines"]) == \
        ["Alpha", "Beta", "outbreak", "spam", "unclassified", "virus"]

    # reassigned: from the next request on, with the same sessions
    st, doc = m.api("PATCH", "/api/v1/quarantines/Beta", json={"operators": ["opb"]})
    assert st == 200, doc
    st, doc = m.api("PATCH", "/api/v1/quarantines/Alpha", json={"operators": []})
    assert st == 200, doc
    assert pages(opb) == [b2, s1, ab, b1]
    assert pages(opb, "recipient=user@corp.test", limit=1) == [b2, s1, ab, b1]
    assert listed(opb)[ab]["quarantines"] == [admin_ab["quarantines"][1]]
    assert listed(opb)[ab]["quarantine"] == "Beta"
    assert raw_get(m, opb, "/api/v1/messages/%s/attachments/0" % b1) == (200, b"attached b1")
    assert quarantine_names(opb) == ["Beta", "spam"]
    for mid in (a1, a2, v1):
        assert_absent(m, opb, mid)
    assert pages(opa) == [s1]
    for mid in (a1, b1, ab, v1, a2, b2):
        assert_absent(m, opa, mid)
    assert quarantine_names(opa) == ["spam"]
    # one operator of several
    st, doc = m.api("PATCH", "/api/v1/quarantines/virus", json={"operators": ["opb", "opa"]})
    assert st == 200, doc
    assert pages(opa) == [s1, v1]
    assert pages(opb) == [b2, s1, v1, ab, b1]
    assert {x: m.get_message(x) for x in everything} == before

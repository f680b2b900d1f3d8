"""Resource limits of the real daemons on loopback: one limit per thing (bulk ids,
account addresses), HTTP connection caps and deadlines, descriptor reserve, SMTP
per-client caps and command deadlines, and endless lines.

Every test starts its own lazaretd (or lazaret-gw) and talks to it with raw sockets
or urllib; every refusal is asserted with its exact reply, and the store is checked
to be intact afterwards.
"""

import json
import uuid

from e2e_helpers import make_message
from test_sessions import Client, add_user

BULK_MAX_IDS = 1000
USER_MAX_ADDRESSES = 1000


def quarantined(m, msg_id):
    doc = m.get_message(msg_id)
    return [r["state"] for r in doc["recipients"]]


# ---- one limit per thing ---------------------------------------------------


def test_bulk_ids_have_one_limit_in_api_and_store(manager):
    m = manager
    doomed = [m.send("spam@example.jp", "u%d@corp.test" % i,
                     make_message(subject="bulk %d" % i)) for i in range(2)]
    kept = m.send("spam@example.jp", "keep@corp.test", make_message(subject="keep"))
    # limit + 1: refused whole by the API, before the store sees it; nothing changes.
    over = doomed + [kept] + [str(uuid.uuid4()) for _ in range(BULK_MAX_IDS + 1 - 3)]
    st, doc = m.api("POST", "/api/v1/messages/delete", json={"ids": over})
    assert (st, doc) == (422, {"error": {
        "code": "unprocessable",
        "message": "field \"ids\" has more than %d items" % BULK_MAX_IDS}})
    for i in doomed + [kept]:
        assert quarantined(m, i) == ["quarantined"]
    # Exactly the limit: the store takes it too (it used to allow fewer than the API).
    at = doomed + [str(uuid.uuid4()) for _ in range(BULK_MAX_IDS - 2)]
    assert len(at) == BULK_MAX_IDS
    st, doc = m.api("POST", "/api/v1/messages/delete", json={"ids": at})
    assert (st, doc) == (200, {"changed": 2})
    for i in doomed:
        assert quarantined(m, i) == ["deleted"]
    assert quarantined(m, kept) == ["quarantined"]


def test_an_account_with_the_most_addresses_can_list_its_mail(manager):
    m = manager
    mine = m.send("spam@example.jp", "a999@corp.test", make_message(subject="mine"))
    other = m.send("spam@example.jp", "someone@corp.test", make_message(subject="other"))
    addrs = ["a%d@corp.test" % i for i in range(USER_MAX_ADDRESSES + 1)]
    st, doc = m.api("POST", "/api/v1/users", json={
        "username": "many", "password": "many-pw-123", "role": "enduser",
        "addresses": addrs})
    assert (st, doc) == (422, {"error": {
        "code": "unprocessable",
        "message": "field \"addresses\" has more than %d items" % USER_MAX_ADDRESSES}})
    st, doc = m.api("GET", "/api/v1/users")
    assert st == 200 and "many" not in [u["username"] for u in doc["users"]]

    add_user(m, "many", "many-pw-123", "enduser", addrs[:USER_MAX_ADDRESSES])
    c = Client(m)
    st, doc = c.login("many", "many-pw-123")
    assert st == 200 and len(doc["user"]["addresses"]) == USER_MAX_ADDRESSES
    # The listing scopes by every one of them (it used to refuse more than 100).
    st, doc = c.call("GET", "/api/v1/messages?limit=100")
    assert st == 200, (st, doc)
    assert [x["id"] for x in doc["messages"]] == [mine]
    st, doc = c.call("POST", "/api/v1/messages/delete", body={"all": True})
    assert (st, doc) == (200, {"changed": 1})
    assert quarantined(m, mine) == ["deleted"]
    assert quarantined(m, other) == ["quarantined"]

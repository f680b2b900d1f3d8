"""Automatic deletion: delete_after and purge_interval as an admin sees them."""

import time

from e2e_helpers import make_message, parse_rfc3339, stays, wait_for


def test_message_expires_and_is_purged(start_manager):
    m = start_manager(delete_after="3s", purge_interval="1s")
    base = m.metrics()
    raw = make_message("expires soon")
    sent_at = time.monotonic()
    mid = m.send("a@example.jp", ["u1@corp.test", "u2@corp.test"], raw)
    msg = m.get_message(mid)
    assert abs(parse_rfc3339(msg["expires_at"]) - parse_rfc3339(msg["received_at"]) - 3) <= 1
    assert m.metric("lazaret_store_messages") == 1

    def gone():
        return m.api("GET", "/api/v1/messages/%s" % mid)[0] == 404
    wait_for(gone, 8, "the message to expire")
    took = time.monotonic() - sent_at
    assert took >= 2.5, "deleted before delete_after: %.1fs" % took
    assert m.api("GET", "/api/v1/messages/%s/raw" % mid)[0] == 404
    assert m.list_all() == []
    # the counters move when the expiry run ends, just after its commit
    wait_for(lambda: m.metrics().get("lazaret_purged_total", 0)
             > base.get("lazaret_purged_total", 0), 5, "the expiry run's counters")
    now = m.metrics()
    assert now["lazaret_expired_total"] - base.get("lazaret_expired_total", 0) == 2
    assert now["lazaret_purged_total"] - base.get("lazaret_purged_total", 0) == 1
    assert now["lazaret_store_messages"] == 0
    st, doc = m.api("GET", "/api/v1/quarantines")
    assert st == 200
    assert all(q["messages"] == 0 for q in doc["quarantines"]), doc


def test_newer_messages_outlive_older_ones(start_manager):
    m = start_manager(delete_after="4s", purge_interval="1s")
    old = m.send("a@example.jp", ["u@corp.test"], make_message("old"))
    time.sleep(2.5)
    new = m.send("a@example.jp", ["u@corp.test"], make_message("new"))
    wait_for(lambda: m.api("GET", "/api/v1/messages/%s" % old)[0] == 404, 8, "old to expire")
    assert m.api("GET", "/api/v1/messages/%s" % new)[0] == 200
    wait_for(lambda: m.api("GET", "/api/v1/messages/%s" % new)[0] == 404, 8, "new to expire")


def test_delete_after_zero_keeps_messages(start_manager):
    m = start_manager(delete_after="0", purge_interval="1s")
    mid = m.send("a@example.jp", ["u@corp.test"], make_message("kept forever"))
    msg = m.get_message(mid)
    assert msg["expires_at"] is None
    assert stays(lambda: m.api("GET", "/api/v1/messages/%s" % mid)[0] == 200, 4)
    assert m.metric("lazaret_expired_total") == 0
    assert m.metric("lazaret_store_messages") == 1


def test_expiry_setting_reloads_on_sighup(start_manager):
    m = start_manager(delete_after="0", purge_interval="1s")
    mid = m.send("a@example.jp", ["u@corp.test"], make_message("reload expiry"))
    time.sleep(1.5)
    m.reload(delete_after="1s")
    wait_for(lambda: m.api("GET", "/api/v1/messages/%s" % mid)[0] == 404, 8,
             "expiry after the reload")

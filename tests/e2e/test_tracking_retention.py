"""[tracking] retention on the manager (docs/CONFIG.md [tracking]): gateway events
and tracked messages older than the retention are removed, fresh ones are kept,
event pushes keep being answered while the purge runs, and a purged batch pushed
again is acknowledged but not stored twice (the gateway's seq counter stays).
Time is the events' own: a gateway's events carry the gateway's clock, so "40
days old" is an event pushed with that time. Runs on the suite's backend."""

import threading
import time

from e2e_helpers import t, wait_for
from test_events import push, register, store_rows

DAY_MS = 86400 * 1000
GW = "gw-e2e"


def old_batch(first, n, at):
    """n events from seq first, every other one a message's "received" event."""
    out = []
    for i in range(n):
        seq = first + i
        if i % 2 == 0:
            out.append({"seq": seq, "at": at + i, "type": "received", "msg_id": "old-%d" % seq,
                        "detail": {"sender": "a@x.test", "recipients": ["b@y.test", "c@y.test"],
                                   "subject": "old %d" % seq, "attachments": ["a.pdf"]}})
        else:
            out.append({"seq": seq, "at": at + i, "type": "delivery", "msg_id": "old-%d" % (seq - 1),
                        "detail": {"status": "sent", "reply": "250 ok"}})
    return out


def count(mgr, sql):
    return int(store_rows(mgr, sql)[0][0])


def purged(mgr, kind):
    return mgr.metrics().get('lazaret_tracking_purged_total{kind="%s"}' % kind)


def test_old_events_go_fresh_ones_stay_and_replays_are_not_stored(start_manager):
    mgr = start_manager(tracking__retention="0", purge_interval="1s")
    token = register(mgr)
    now = int(time.time() * 1000)
    old_at = now - 40 * DAY_MS
    batches = [old_batch(1 + k * 1000, 1000, old_at + k * 1000) for k in range(12)]
    for b in batches:
        st, doc = push(mgr, token, {"gateway": GW, "events": b})
        assert (st, doc) == (200, {"acked": b[-1]["seq"], "stored": 1000}), doc
    n_old = 12000
    fresh_seq = n_old + 1
    st, doc = push(mgr, token, {"events": [
        {"seq": fresh_seq, "at": now, "type": "received", "msg_id": "fresh-1",
         "detail": {"sender": "a@x.test", "recipients": ["d@y.test"], "subject": "fresh"}}]})
    assert (st, doc) == (200, {"acked": fresh_seq, "stored": 1}), doc
    time.sleep(2)  # retention 0: nothing goes
    assert count(mgr, "SELECT count(*) FROM events") == n_old + 1
    assert purged(mgr, "events") == 0

    # retention on: the purge runs while the gateway keeps pushing fresh events
    mgr.reload(tracking__retention="30d")
    answers, seen_midway = [], []
    seq = fresh_seq

    while True:
        left = count(mgr, "SELECT count(*) FROM events WHERE at < %d" % (now - 30 * DAY_MS))
        if 0 < left < n_old:
            seen_midway.append(left)
        if left == 0:
            break
        seq += 1
        t0 = time.monotonic()
        st, doc = push(mgr, token, {"events": [
            {"seq": seq, "at": int(time.time() * 1000), "type": "connection",
             "detail": {"client_ip": "192.0.2.1"}}]})
        answers.append(time.monotonic() - t0)
        assert (st, doc) == (200, {"acked": seq, "stored": 1}), doc
        assert len(answers) < 2000, "the old events were not purged"
    assert seen_midway, "the purge never seen in progress"
    # every push answered at once while it ran (batches of 500, 20 ms apart)
    assert max(answers) < t(3), answers

    wait_for(lambda: count(mgr, "SELECT count(*) FROM tracked_messages"
                                " WHERE msg_id LIKE 'old-%'") == 0, t(30), "old messages gone")
    assert count(mgr, "SELECT count(*) FROM tracked_recipients WHERE msg_id LIKE 'old-%'") == 0
    assert count(mgr, "SELECT count(*) FROM tracked_attachments WHERE msg_id LIKE 'old-%'") == 0
    # the fresh ones stay, with their recipients
    assert count(mgr, "SELECT count(*) FROM events") == 1 + (seq - fresh_seq)
    assert count(mgr, "SELECT count(*) FROM tracked_recipients WHERE msg_id = 'fresh-1'") == 1
    wait_for(lambda: purged(mgr, "events") == n_old, t(10), "the metric")
    assert purged(mgr, "messages") == n_old // 2
    wait_for(lambda: "tracking.purged events=%d" % n_old in mgr.log_text(), t(10), "the log")

    # the gateway's counter stays: an old batch pushed again is acknowledged, not stored
    assert store_rows(mgr, "SELECT last_seq FROM gateway_event_state WHERE gateway = '%s'"
                      % GW) == [[str(seq)]]
    st, doc = push(mgr, token, {"events": batches[3]})
    assert (st, doc) == (200, {"acked": batches[3][-1]["seq"], "stored": 0}), doc
    assert count(mgr, "SELECT count(*) FROM events WHERE at < %d" % (now - DAY_MS)) == 0
    assert count(mgr, "SELECT count(*) FROM tracked_messages WHERE msg_id LIKE 'old-%'") == 0


def test_a_stopping_manager_ends_the_purge_after_its_batch(start_manager):
    mgr = start_manager(tracking__retention="0", purge_interval="1s")
    token = register(mgr)
    old_at = int(time.time() * 1000) - 40 * DAY_MS
    for k in range(10):
        st, doc = push(mgr, token, {"events": old_batch(1 + k * 1000, 1000, old_at + k * 1000)})
        assert st == 200, doc
    mgr.reload(tracking__retention="30d")
    wait_for(lambda: count(mgr, "SELECT count(*) FROM events") < 10000, t(20), "the purge")
    t0 = time.monotonic()
    assert mgr.stop() == 0
    assert time.monotonic() - t0 < t(10)
    left = count(mgr, "SELECT count(*) FROM events")
    # what was left is purged after the restart
    mgr.start()
    wait_for(lambda: count(mgr, "SELECT count(*) FROM events") == 0, t(30),
             "the rest purged after the restart (%d left at the stop)" % left)

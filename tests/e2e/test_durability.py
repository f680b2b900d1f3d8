"""Nothing acknowledged is lost: kill -9 under load, graceful stop mid-session, release queue."""

import signal
import smtplib
import threading
import time

from e2e_helpers import (RawSMTP, STORED_RE, free_port, make_message, stays, t, wait_for)


def all_stored(m):
    """{id: raw bytes} of everything in the store."""
    out = {}
    for msg in m.list_all():
        st, _, raw = m.http("GET", "/api/v1/messages/%s/raw" % msg["id"])
        assert st == 200, msg["id"]
        assert msg["size"] == len(raw), msg["id"]
        out[msg["id"]] = raw
    return out


def burst(m, connections, per_connection, stop_event=None, on_ack=None):
    """Sends from several connections at once. Returns (acked {id: raw}, attempted [raw])."""
    acked = {}
    attempted = []
    lock = threading.Lock()

    def worker(n):
        try:
            s = m.smtp(timeout=30)
            s.ehlo("burst%d" % n)
            for i in range(per_connection):
                if stop_event is not None and stop_event.is_set():
                    break
                raw = make_message("burst %d-%d" % (n, i), sender="burst@example.jp",
                                   body=("payload %d %d\r\n" % (n, i)) * 20)
                with lock:
                    attempted.append(raw)
                mid = m.send("burst@example.jp", ["user%d@corp.test" % (i % 5)], raw, conn=s)
                with lock:
                    acked[mid] = raw
                    if on_ack:
                        on_ack(len(acked))
            s.quit()
        except (smtplib.SMTPException, OSError, AssertionError):
            pass  # the daemon went away mid-burst; what was acknowledged counts
    ths = [threading.Thread(target=worker, args=(n,)) for n in range(connections)]
    for th in ths:
        th.start()
    return ths, acked, attempted, lock


def test_kill9_after_a_burst_loses_nothing_acknowledged(manager):
    n_conn, per = 8, 25
    ths, acked, attempted, _ = burst(manager, n_conn, per)
    for th in ths:
        th.join(t(120))
    assert len(acked) == n_conn * per, "not every message got its 250"
    manager.kill9()
    manager.restart()
    stored = all_stored(manager)
    assert len(stored) == n_conn * per
    for mid, raw in acked.items():
        assert stored.get(mid) == raw, "acknowledged message %s lost or changed" % mid


def test_kill9_in_the_middle_of_a_burst(manager):
    stop = threading.Event()
    half = threading.Event()

    def on_ack(n):
        if n >= 100:
            half.set()
    ths, acked, attempted, lock = burst(manager, 8, 100, stop_event=stop, on_ack=on_ack)
    assert half.wait(t(120)), "the burst did not get going"
    manager.kill9()
    stop.set()
    for th in ths:
        th.join(t(60))
    with lock:
        acked = dict(acked)
        attempted = set(attempted)
    manager.restart()
    stored = all_stored(manager)
    missing = [mid for mid in acked if mid not in stored]
    assert not missing, "%d acknowledged messages lost" % len(missing)
    for mid, raw in acked.items():
        assert stored[mid] == raw
    # Whatever else is there was really sent and is complete (nothing half-stored).
    for mid, raw in stored.items():
        assert raw in attempted, "stored message %s is not one that was sent whole" % mid
    # The restarted daemon takes mail again.
    mid = manager.send("a@example.jp", ["u@corp.test"], make_message("after crash"))
    assert manager.get_message(mid)["id"] == mid


def test_sigterm_greets_idle_sessions_goodbye(start_manager):
    m = start_manager(shutdown_grace="5s")
    with RawSMTP(m.smtp_port) as c:
        c.greeting()
        c.ehlo()
        start = time.monotonic()
        m.signal(signal.SIGTERM)
        assert c.reply_line() == "421 4.3.2 %s Service shutting down" % m.hostname
        assert c.closed()
    m.proc.wait(timeout=t(10))
    assert m.proc.returncode == 0, m.log_text()
    assert time.monotonic() - start < t(5)


def test_sigterm_mid_data_lets_the_transaction_finish(start_manager):
    m = start_manager(shutdown_grace="10s")
    before = make_message("acked before the stop")
    id_before = m.send("a@example.jp", ["u@corp.test"], before)
    raw = make_message("finished during the grace period", body="part one\r\npart two\r\n")
    cut = len(raw) // 2
    with RawSMTP(m.smtp_port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@example.jp>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<u@corp.test>") == "250 2.1.5 Ok"
        assert c.cmd("DATA").startswith("354 ")
        c.send(raw[:cut])
        m.signal(signal.SIGTERM)
        time.sleep(0.5)
        assert m.running(), "stopped without waiting for the session in DATA"
        c.send(raw[cut:] + b".\r\n")
        line = c.reply_line()
        mm = STORED_RE.match(line)
        assert mm, line
        id_during = mm.group(1)
        assert c.reply_line() == "421 4.3.2 %s Service shutting down" % m.hostname
        assert c.closed()
    m.proc.wait(timeout=t(15))
    assert m.proc.returncode == 0, m.log_text()
    m.restart()
    stored = all_stored(m)
    assert stored == {id_before: before, id_during: raw}


def test_sigterm_mid_data_with_a_stalled_client_is_bounded(start_manager):
    m = start_manager(shutdown_grace="2s")
    before = make_message("acked before")
    id_before = m.send("a@example.jp", ["u@corp.test"], before)
    c = RawSMTP(m.smtp_port, timeout=30)
    try:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@example.jp>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<u@corp.test>") == "250 2.1.5 Ok"
        assert c.cmd("DATA").startswith("354 ")
        c.send(b"Subject: never finished\r\n\r\nhalf")
        start = time.monotonic()
        m.signal(signal.SIGTERM)
        m.proc.wait(timeout=t(15))
        took = time.monotonic() - start
        assert m.proc.returncode == 0, m.log_text()
        assert took < 2 + t(5), took
        assert c.closed(timeout=2)
    finally:
        c.close()
    m.restart()
    assert all_stored(m) == {id_before: before}


def test_release_queue_survives_kill9(start_manager, aio_sink_factory):
    port = free_port()
    m = start_manager(primary_host="127.0.0.1:%d" % port, retry_min="1s", retry_max="2s")
    raw = make_message("queued across a crash")
    mid = m.send("a@example.jp", ["u1@corp.test", "u2@corp.test"], raw)
    st, _ = m.api("POST", "/api/v1/messages/%s/release" % mid)
    assert st == 202
    wait_for(lambda: m.metric("lazaret_release_queue_depth") == 1, 5, "a queued delivery")
    m.kill9()
    sink = aio_sink_factory(port=port)
    m.restart()
    got = sink.wait_count(1, timeout=20)
    assert sorted(got[0]["rcpts"]) == ["u1@corp.test", "u2@corp.test"]
    assert got[0]["data"].endswith(raw)

    def released():
        return {r["state"] for r in m.get_message(mid)["recipients"]} == {"released"}
    wait_for(released, 10, "released after restart")
    assert stays(lambda: sink.count() == 1, t(2))


def test_states_survive_restart(start_manager, aio_sink):
    m = start_manager(primary_host=aio_sink.host)
    mid = m.send("a@example.jp", ["u1@corp.test", "u2@corp.test", "u3@corp.test"],
                 make_message("states"))
    assert m.api("POST", "/api/v1/messages/%s/release" % mid,
                 json={"recipients": ["u1@corp.test"]})[0] == 202
    assert m.api("POST", "/api/v1/messages/%s/delete" % mid,
                 json={"recipients": ["u2@corp.test"]})[0] == 200
    aio_sink.wait_count(1)
    want = {"u1@corp.test": "released", "u2@corp.test": "deleted",
            "u3@corp.test": "quarantined"}
    wait_for(lambda: {r["address"]: r["state"] for r in m.get_message(mid)["recipients"]}
             == want, 10, "states")
    m.restart()
    assert {r["address"]: r["state"] for r in m.get_message(mid)["recipients"]} == want
    assert stays(lambda: aio_sink.count() == 1, t(1))

"""The spam-quarantine SMTP listener as a gateway sees it: replies, limits, access, smuggling."""

import os
import re
import smtplib
import subprocess
import threading
import time

import pytest

from e2e_helpers import (RawSMTP, SMTPClosed, STORED_RE, UUID_RE, dot_stuff, make_message,
                         raw_transaction, t, wait_for)


def stored_ids(m):
    return [x["id"] for x in m.list_all()]


def assert_store_is(m, expected):
    """The store holds exactly the messages of expected {id: raw bytes}, intact."""
    ids = stored_ids(m)
    assert sorted(ids) == sorted(expected), (ids, list(expected))
    for mid, raw in expected.items():
        st, _, body = m.http("GET", "/api/v1/messages/%s/raw" % mid)
        assert st == 200 and body == raw, mid


def baseline(m):
    """One message stored before a test abuses the listener; returns {id: raw}."""
    raw = make_message("baseline before the abuse")
    mid = m.send("base@example.jp", ["user@corp.test"], raw)
    return {mid: raw}


# ---------------------------------------------------------------------------
# Replies of a normal session

def test_greeting_ehlo_and_transaction_replies(manager):
    with RawSMTP(manager.smtp_port) as c:
        assert c.greeting() == "220 %s ESMTP Lazaret" % manager.hostname
        c.send("EHLO client.e2e.test\r\n")
        code, lines = c.reply()
        assert code == 250
        assert lines[0].startswith("250-%s" % manager.hostname), lines
        kw = [ln[4:] for ln in lines[1:]]
        for k in ("PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"):
            assert k in kw, (k, kw)
        assert "SIZE 52428800" in kw, kw  # the 50M default
        assert not any(k.startswith("STARTTLS") for k in kw), kw
        raw = make_message("replies")
        assert c.cmd("MAIL FROM:<gw@example.jp>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<user@corp.test>") == "250 2.1.5 Ok"
        assert c.cmd("DATA") == "354 End data with <CR><LF>.<CR><LF>"
        c.send(dot_stuff(raw))
        line = c.reply_line()
        m = STORED_RE.match(line)
        assert m, line
        mid = m.group(1)
        assert UUID_RE.match(mid), mid
        c.send("QUIT\r\n")
        assert c.reply_line().startswith("221 ")
        assert c.closed()
    msg = manager.get_message(mid)
    assert msg["sender"] == "gw@example.jp"
    assert [r["address"] for r in msg["recipients"]] == ["user@corp.test"]


def test_size_keyword_shows_the_configured_limit(start_manager):
    m = start_manager(max_message_size="1M")
    with RawSMTP(m.smtp_port) as c:
        c.greeting()
        assert "SIZE 1048576" in c.ehlo()
    m2 = start_manager(max_message_size="200000")
    with RawSMTP(m2.smtp_port) as c:
        c.greeting()
        assert "SIZE 200000" in c.ehlo()


def test_sequence_errors(manager):
    with RawSMTP(manager.smtp_port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("RCPT TO:<user@corp.test>") == "503 5.5.1 Error: need MAIL command"
        assert c.cmd("DATA").startswith("503 5.5.1 "), "DATA before MAIL"
        assert c.cmd("MAIL FROM:<a@example.jp>") == "250 2.1.0 Ok"
        assert c.cmd("DATA").startswith("503 5.5.1 "), "DATA before RCPT"
        assert c.cmd("MAIL FROM:<b@example.jp>").startswith("503 5.5.1 "), "nested MAIL"
        assert c.cmd("RSET").startswith("250 ")
        assert c.cmd("RCPT TO:<user@corp.test>") == "503 5.5.1 Error: need MAIL command"
        assert c.cmd("NOOP").startswith("250 ")
        assert c.cmd("XYZZY").startswith("50"), "unknown command"
        # The session is still usable after the errors.
        reply = raw_transaction(c, "a@example.jp", ["user@corp.test"],
                                dot_stuff(make_message("after errors")))
        assert STORED_RE.match(reply), reply
    assert len(stored_ids(manager)) == 1


def test_null_sender_and_smtputf8(manager):
    raw = make_message("null sender")
    mid = manager.send("", ["user@corp.test"], raw)
    assert manager.get_message(mid)["sender"] == ""
    # SMTPUTF8 with an internationalised address and raw UTF-8 headers.
    raw8 = ("From: 山田 <yamada@例え.jp>\r\nTo: user@corp.test\r\n"
            "Subject: 生のUTF-8件名\r\n\r\n本文\r\n").encode("utf-8")
    with RawSMTP(manager.smtp_port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<yamada@例え.jp> SMTPUTF8 BODY=8BITMIME") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<user@corp.test>") == "250 2.1.5 Ok"
        assert c.cmd("DATA").startswith("354 ")
        c.send(dot_stuff(raw8))
        line = c.reply_line()
    mid8 = STORED_RE.match(line).group(1)
    msg = manager.get_message(mid8)
    assert msg["sender"] == "yamada@例え.jp"
    assert msg["subject"] == "生のUTF-8件名"
    st, _, body = manager.http("GET", "/api/v1/messages/%s/raw" % mid8)
    assert body == raw8


# ---------------------------------------------------------------------------
# Access list

def test_refused_address_gets_554_and_nothing_is_stored(start_manager):
    m = start_manager(accept_from="127.0.0.1/32")
    before = m.metrics().get('lazaret_smtp_refused_total{reason="acl"}', 0)
    with RawSMTP(m.smtp_port, source="127.0.0.2") as c:
        assert c.reply_line() == "554 5.7.1 %s: Access denied" % m.hostname
        assert c.closed(), "connection left open after 554"
    # smtplib sees the same.
    with pytest.raises(smtplib.SMTPConnectError) as ei:
        m.smtp(source_address="127.0.0.2")
    assert ei.value.smtp_code == 554
    # Accepted from 127.0.0.1.
    mid = m.send("a@example.jp", ["user@corp.test"], make_message("allowed"))
    assert stored_ids(m) == [mid]
    after = m.metrics().get('lazaret_smtp_refused_total{reason="acl"}', 0)
    assert after - before == 2
    wait_for(lambda: "127.0.0.2" in m.log_text(), 5, "the refusal in the log")
    refusal = [ln for ln in m.log_text().splitlines() if "127.0.0.2" in ln]
    assert any(" warn " in ln or " info " in ln for ln in refusal), refusal


def test_refused_client_cannot_sneak_commands_in(start_manager):
    m = start_manager(accept_from="127.0.0.1/32")
    with RawSMTP(m.smtp_port, source="127.0.0.2") as c:
        c.send(b"EHLO x\r\nMAIL FROM:<a@example.jp>\r\nRCPT TO:<u@corp.test>\r\nDATA\r\n"
               b"Subject: sneaky\r\n\r\nx\r\n.\r\nQUIT\r\n")
        try:
            lines = c.replies_until_close()
        except AssertionError:
            raise
    assert lines[0] == "554 5.7.1 %s: Access denied" % m.hostname
    assert not any(ln.startswith("250") or ln.startswith("354") for ln in lines), lines
    assert stored_ids(m) == []


# ---------------------------------------------------------------------------
# Limits: the exact reply, and the store is intact afterwards

def test_connection_limit(start_manager):
    m = start_manager(max_connections=2)
    before = baseline(m)
    a = RawSMTP(m.smtp_port)
    b = RawSMTP(m.smtp_port)
    try:
        assert a.greeting().startswith("220 ")
        assert b.greeting().startswith("220 ")
        with RawSMTP(m.smtp_port) as c:
            assert c.reply_line() == "421 4.7.0 %s Error: too many connections" % m.hostname
            assert c.closed()
        a.send("QUIT\r\n")
        a.reply_line()
        a.close()

        def third_ok():
            with RawSMTP(m.smtp_port) as c:
                return c.reply_line().startswith("220 ")
        wait_for(third_ok, 5, "a free slot after QUIT")
    finally:
        a.close()
        b.close()
    assert m.metrics().get('lazaret_smtp_refused_total{reason="connection_limit"}', 0) >= 1
    assert_store_is(m, before)


def test_command_line_too_long(manager):
    before = baseline(manager)
    with RawSMTP(manager.smtp_port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<%s@example.jp>" % ("x" * 600)) == \
            "500 5.5.2 Error: line too long"
        # Far over the limit in one go, without a line end for a while (but within
        # the error budget: every further 512 octets count as one error of 20).
        c.send("NOOP " + "y" * 5000 + "\r\n")
        assert c.reply_line() == "500 5.5.2 Error: line too long"
        # The session goes on.
        reply = raw_transaction(c, "a@example.jp", ["user@corp.test"],
                                dot_stuff(make_message("after long line")))
        mid = STORED_RE.match(reply).group(1)
    ids = stored_ids(manager)
    assert sorted(ids) == sorted(list(before) + [mid])


def test_too_many_recipients(start_manager):
    m = start_manager(max_recipients=3)
    before = baseline(m)
    with RawSMTP(m.smtp_port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@example.jp>") == "250 2.1.0 Ok"
        for i in range(3):
            assert c.cmd("RCPT TO:<u%d@corp.test>" % i) == "250 2.1.5 Ok"
        assert c.cmd("RCPT TO:<u3@corp.test>") == "452 4.5.3 Error: too many recipients"
        assert c.cmd("DATA").startswith("354 ")
        c.send(dot_stuff(make_message("three of four")))
        mid = STORED_RE.match(c.reply_line()).group(1)
    msg = m.get_message(mid)
    assert sorted(r["address"] for r in msg["recipients"]) == \
        ["u0@corp.test", "u1@corp.test", "u2@corp.test"]
    assert m.metrics().get('lazaret_smtp_refused_total{reason="too_many_recipients"}', 0) >= 1
    assert len(stored_ids(m)) == 2 and set(before) <= set(stored_ids(m))


def test_size_declared_at_mail_too_big(start_manager):
    m = start_manager(max_message_size="10000")
    before = baseline(m)
    with RawSMTP(m.smtp_port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@example.jp> SIZE=20000") == \
            "552 5.3.4 Message size exceeds fixed limit"
        assert c.cmd("MAIL FROM:<a@example.jp> SIZE=5000") == "250 2.1.0 Ok"
    assert_store_is(m, before)


def test_data_too_big(start_manager):
    m = start_manager(max_message_size="10000")
    before = baseline(m)
    big = make_message("too big", body=("0123456789" * 7 + "\r\n") * 300)
    assert len(big) > 20000
    with RawSMTP(m.smtp_port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@example.jp>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<user@corp.test>") == "250 2.1.5 Ok"
        assert c.cmd("DATA").startswith("354 ")
        c.send(dot_stuff(big))
        assert c.reply_line() == "552 5.3.4 Message size exceeds fixed limit"
        # The next transaction on the same connection works.
        small = make_message("small after big")
        reply = raw_transaction(c, "a@example.jp", ["user@corp.test"], dot_stuff(small))
        mid = STORED_RE.match(reply).group(1)
    before[mid] = small
    assert_store_is(m, before)
    assert m.metrics().get('lazaret_smtp_refused_total{reason="message_too_large"}', 0) >= 1


def test_data_line_too_long(start_manager):
    m = start_manager(max_data_line="1000")
    before = baseline(m)
    raw = make_message("long data line", body="a" * 3000 + "\r\n")
    with RawSMTP(m.smtp_port) as c:
        c.greeting()
        c.ehlo()
        reply = raw_transaction(c, "a@example.jp", ["user@corp.test"], dot_stuff(raw))
        # The text may say where the line was ("... in message data").
        assert reply.startswith("500 5.5.2 Error: line too long"), reply
    assert_store_is(m, before)


def test_too_many_header_fields(start_manager):
    m = start_manager(max_header_count=20)
    before = baseline(m)
    extra = [("X-Filler-%d" % i, "v") for i in range(30)]
    raw = make_message("many headers", extra_headers=extra)
    with RawSMTP(m.smtp_port) as c:
        c.greeting()
        c.ehlo()
        reply = raw_transaction(c, "a@example.jp", ["user@corp.test"], dot_stuff(raw))
        assert reply == "552 5.3.4 Error: too many header fields"
    assert_store_is(m, before)


def test_header_field_too_long(start_manager):
    m = start_manager(max_header_size="1K")
    before = baseline(m)
    folded = "\r\n\t".join(["word%03d" % i + "x" * 60 for i in range(40)])  # ~2.8K folded
    raw = make_message("long header", extra_headers=[("X-Long", folded)])
    with RawSMTP(m.smtp_port) as c:
        c.greeting()
        c.ehlo()
        reply = raw_transaction(c, "a@example.jp", ["user@corp.test"], dot_stuff(raw))
        assert reply == "552 5.3.4 Error: header field too long"
    assert_store_is(m, before)
    assert m.metrics().get('lazaret_smtp_refused_total{reason="header_limit"}', 0) >= 1


def test_too_many_commands_before_mail(start_manager):
    m = start_manager(max_commands_before_mail=5)
    before = baseline(m)
    with RawSMTP(m.smtp_port) as c:
        c.greeting()
        c.ehlo()
        got = None
        for _ in range(20):
            c.send("NOOP\r\n")
            try:
                line = c.reply_line()
            except SMTPClosed:
                break
            if not line.startswith("250"):
                got = line
                break
        assert got == "421 4.7.0 %s Error: too many commands" % m.hostname, got
        assert c.closed()
    assert_store_is(m, before)


def test_too_many_errors(start_manager):
    m = start_manager(max_errors=3)
    before = baseline(m)
    with RawSMTP(m.smtp_port) as c:
        c.greeting()
        c.ehlo()
        lines = []
        for _ in range(10):
            try:
                c.send("BOGUS\r\n")
                lines.append(c.reply_line())
            except (SMTPClosed, BrokenPipeError, ConnectionResetError):
                break
            if lines[-1].startswith("421"):
                break
        assert lines[-1].startswith("421 4.7.0 "), lines
        assert len(lines) <= 5, lines
        assert c.closed()
    assert_store_is(m, before)


def test_idle_timeout(start_manager):
    m = start_manager(idle_timeout="2s")
    before = baseline(m)
    with RawSMTP(m.smtp_port, timeout=30) as c:
        c.greeting()
        c.ehlo()
        start = time.monotonic()
        line = c.reply_line()
        waited = time.monotonic() - start
        assert line == "421 4.4.2 %s Error: timeout exceeded" % m.hostname
        assert 1.5 <= waited <= t(8), waited
        assert c.closed()
    # Also in the middle of DATA.
    with RawSMTP(m.smtp_port, timeout=30) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@example.jp>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<user@corp.test>") == "250 2.1.5 Ok"
        assert c.cmd("DATA").startswith("354 ")
        c.send(b"Subject: half\r\n\r\nhalf a message")
        assert c.reply_line() == "421 4.4.2 %s Error: timeout exceeded" % m.hostname
        assert c.closed()
    assert_store_is(m, before)


def test_http_request_on_the_smtp_port(manager):
    before = baseline(manager)
    for req in (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                b"POST /api/v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"):
        with RawSMTP(manager.smtp_port) as c:
            c.greeting()
            c.send(req)
            lines = c.replies_until_close()
            assert lines and lines[0] == "554 5.7.0 Error: HTTP requests are not accepted here", lines
            assert len(lines) == 1, lines
    assert manager.metrics().get('lazaret_smtp_refused_total{reason="http_request"}', 0) >= 2
    assert_store_is(manager, before)


# ---------------------------------------------------------------------------
# Pipelining and real clients

def test_pipelined_commands_and_messages(manager):
    raw1 = make_message("pipelined one", body="first\r\n.leading dot\r\n")
    raw2 = make_message("pipelined two", body="second\r\n")
    with RawSMTP(manager.smtp_port) as c:
        c.greeting()
        assert "PIPELINING" in c.ehlo()
        c.send("MAIL FROM:<p@example.jp>\r\nRCPT TO:<a@corp.test>\r\n"
               "RCPT TO:<b@corp.test>\r\nDATA\r\n")
        assert c.reply_line() == "250 2.1.0 Ok"
        assert c.reply_line() == "250 2.1.5 Ok"
        assert c.reply_line() == "250 2.1.5 Ok"
        assert c.reply_line().startswith("354 ")
        # The end of one message and the next transaction in one write.
        c.send(dot_stuff(raw1) + b"MAIL FROM:<q@example.jp>\r\nRCPT TO:<c@corp.test>\r\nDATA\r\n")
        id1 = STORED_RE.match(c.reply_line()).group(1)
        assert c.reply_line() == "250 2.1.0 Ok"
        assert c.reply_line() == "250 2.1.5 Ok"
        assert c.reply_line().startswith("354 ")
        c.send(dot_stuff(raw2) + b"QUIT\r\n")
        id2 = STORED_RE.match(c.reply_line()).group(1)
        assert c.reply_line().startswith("221 ")
        assert c.closed()
    assert id1 != id2
    m1, m2 = manager.get_message(id1), manager.get_message(id2)
    assert m1["sender"] == "p@example.jp"
    assert sorted(r["address"] for r in m1["recipients"]) == ["a@corp.test", "b@corp.test"]
    assert m2["sender"] == "q@example.jp"
    assert [r["address"] for r in m2["recipients"]] == ["c@corp.test"]
    assert manager.http("GET", "/api/v1/messages/%s/raw" % id1)[2] == raw1
    assert manager.http("GET", "/api/v1/messages/%s/raw" % id2)[2] == raw2


def test_everything_in_one_write(manager):
    raws = [make_message("burst %d" % i) for i in range(5)]
    blob = b"EHLO x\r\n"
    for r in raws:
        blob += b"MAIL FROM:<p@example.jp>\r\nRCPT TO:<a@corp.test>\r\nDATA\r\n" + dot_stuff(r)
    blob += b"QUIT\r\n"
    with RawSMTP(manager.smtp_port) as c:
        c.greeting()
        # DATA ends a pipelined group, but a server must cope with a client that
        # does not wait.
        c.send(blob)
        lines = c.replies_until_close(timeout=15)
    stored = [ln for ln in lines if STORED_RE.match(ln)]
    assert len(stored) == 5, lines
    assert lines[-1].startswith("221 ")
    assert len(stored_ids(manager)) == 5


def test_several_messages_in_one_smtplib_connection(manager):
    s = manager.smtp()
    s.ehlo("client.e2e.test")
    ids = []
    raws = {}
    for i in range(5):
        raw = make_message("same connection %d" % i)
        mid = manager.send("a@example.jp", ["u%d@corp.test" % i], raw, conn=s)
        ids.append(mid)
        raws[mid] = raw
    s.quit()
    assert len(set(ids)) == 5
    assert_store_is(manager, raws)


def test_swaks_as_a_second_client(manager):
    r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % manager.smtp_port,
                        "--to", "swaks-user@corp.test", "--from", "swaks@example.jp",
                        "--header", "Subject: swaks subject token",
                        "--body", "sent by swaks"],
                       capture_output=True, timeout=t(30))
    out = r.stdout.decode("utf-8", "replace")
    assert r.returncode == 0, out + r.stderr.decode()
    m = re.search(r"<[-~]  250 2\.0\.0 Ok: stored as (\S+)", out)
    assert m, out
    msg = manager.get_message(m.group(1))
    assert msg["subject"] == "swaks subject token"
    assert msg["sender"] == "swaks@example.jp"
    assert [x["address"] for x in msg["recipients"]] == ["swaks-user@corp.test"]


def test_smtp_source_burst(manager):
    """Postfix's smtp-source as a load client: every message it sends is stored."""
    if not os.access("/usr/sbin/smtp-source", os.X_OK):
        pytest.fail("/usr/sbin/smtp-source missing")
    r = subprocess.run(["/usr/sbin/smtp-source", "-s", "4", "-m", "40", "-f", "src@example.jp",
                        "-t", "sink@corp.test", "-S", "smtp-source burst",
                        "127.0.0.1:%d" % manager.smtp_port],
                       capture_output=True, timeout=t(60))
    assert r.returncode == 0, r.stderr.decode()
    msgs = manager.list_all("sender=src@example.jp")
    assert len(msgs) == 40


# ---------------------------------------------------------------------------
# SMTP smuggling: only CRLF.CRLF ends data

@pytest.mark.parametrize("fake_end", [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n"],
                         ids=["LF.LF", "CRLF.LF", "LF.CRLF", "CR.CRLF"])
def test_smuggling_stays_inside_the_message(manager, fake_end):
    smuggled = (b"MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@corp.test>\r\nDATA\r\n"
                b"From: ceo@corp.test\r\nSubject: smuggled\r\n\r\npay now\r\n")
    data = b"From: a@example.jp\r\nSubject: carrier\r\n\r\nhello" + fake_end + smuggled + b".\r\n"
    with RawSMTP(manager.smtp_port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@example.jp>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<user@corp.test>") == "250 2.1.5 Ok"
        assert c.cmd("DATA").startswith("354 ")
        c.send(data + b"QUIT\r\n")
        lines = c.replies_until_close()
    assert len(lines) == 2, lines
    assert STORED_RE.match(lines[0]), lines
    assert lines[1].startswith("221 "), lines
    msgs = manager.list_all()
    assert len(msgs) == 1, msgs
    assert msgs[0]["sender"] == "a@example.jp"
    assert [r["address"] for r in msgs[0]["recipients"]] == ["user@corp.test"]
    assert msgs[0]["subject"] == "carrier"
    raw = manager.http("GET", "/api/v1/messages/%s/raw" % msgs[0]["id"])[2]
    assert b"MAIL FROM:<evil@attacker.test>" in raw
    assert b"Subject: smuggled" in raw and b"pay now" in raw
    assert manager.list_all("sender=evil@attacker.test") == []


# ---------------------------------------------------------------------------
# Concurrency

def test_concurrent_sessions_all_stored(manager):
    results = []
    lock = threading.Lock()

    def worker(n):
        s = manager.smtp()
        s.ehlo("w%d" % n)
        for i in range(10):
            raw = make_message("conc %d-%d" % (n, i))
            mid = manager.send("w%d@example.jp" % n, ["u@corp.test"], raw, conn=s)
            with lock:
                results.append((mid, raw))
        s.quit()
    ths = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(t(60))
    assert len(results) == 80
    assert len({r[0] for r in results}) == 80
    assert len(stored_ids(manager)) == 80

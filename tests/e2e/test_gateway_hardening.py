"""lazaret-gw against a hostile sender: content-filter evasion, relay tricks, SMTP smuggling.

Every test runs the real lazaret-gw on loopback with a real next hop (aiosmtpd, or
Postfix's smtp-sink, which takes bare LF as a line end and so would show a
smuggled end of data that the gateway passed on) and real clients (smtplib, a raw
socket). Each evasion must end in a quarantine or a refusal, never in a copy at
the next hop; the controls show that ordinary mail still goes through.
"""

import base64
import re

import pytest

from e2e_helpers import RawSMTP, stays, t, wait_for
from gw_fixtures import *  # noqa: F401,F403  (start_gateway)

FILTERS = r"""
mailer: if header("X-Mailer") == "(?i)bulk-?mailer" { insert-header("X-Bulk", "yes"); }
block_exe: if attachment-filename == "(?i)\.(exe|scr|js)$" { quarantine("Policy"); }
"""

UNDECIDED_REPLY = (451, "4.7.0 Error: message could not be fully inspected, try again later")


def mime(subject, parts, extra_headers=b""):
    """A multipart/mixed message: parts are (header lines, body) byte pairs."""
    out = [b"From: alice@sender.test\r\nTo: bob@example.com\r\nSubject: " + subject.encode()
           + b"\r\nMIME-Version: 1.0\r\n" + extra_headers
           + b"Content-Type: multipart/mixed; boundary=\"XB\"\r\n\r\n"
           b"--XB\r\nContent-Type: text/plain\r\n\r\nPlease see the attachment.\r\n"]
    for hdrs, body in parts:
        out.append(b"--XB\r\n" + hdrs + b"\r\n\r\n" + body + b"\r\n")
    out.append(b"--XB--\r\n")
    return b"".join(out)


def exe_part(hdrs):
    return (hdrs, base64.b64encode(b"MZ\x90\x00 not really a program"))


def jis_b(text):
    return b"=?ISO-2022-JP?B?" + base64.b64encode(text.encode("iso-2022-jp")) + b"?="


def utf8_b(text):
    return b"=?UTF-8?B?" + base64.b64encode(text.encode("utf-8")) + b"?="


def many_parts_message(subject, n):
    parts = [(b"Content-Type: application/pdf; name=\"page%d.pdf\"" % i, b"JVBERi0=")
             for i in range(n)]
    parts.append(exe_part(b"Content-Type: application/octet-stream; name=\"invoice.exe\""))
    return mime(subject, parts)


def nested_message(subject, levels):
    """An executable inside `levels` attached messages, each inside the last."""
    inner = (b"Content-Type: application/octet-stream; name=\"invoice.exe\"\r\n"
             b"Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n")
    for i in range(levels):
        inner = (b"Content-Type: message/rfc822\r\n\r\nFrom: x@sender.test\r\nSubject: level %d\r\n"
                 % i) + inner
    return (b"From: alice@sender.test\r\nTo: bob@example.com\r\nSubject: " + subject.encode()
            + b"\r\nMIME-Version: 1.0\r\n" + inner)


# Each case: (id, message builder, the quarantine it must end in).
LONG = b"a" * 4200


def long_name_part(ext):
    """A 4,200-byte name in RFC 2231 sections, so that no line passes 1000 bytes."""
    secs = [LONG[i:i + 700] for i in range(0, len(LONG), 700)]
    secs[-1] += ext
    params = b";\r\n".join(b" filename*%d=\"%s\"" % (i, sec) for i, sec in enumerate(secs))
    return exe_part(b"Content-Type: application/octet-stream\r\n"
                    b"Content-Disposition: attachment;\r\n" + params)


EVASIONS = [
    # One line of 4,200 bytes (the gateway takes lines up to 64 KiB; the sink would not).
    ("long-name-one-line", lambda s: mime(s, [exe_part(
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Disposition: attachment; filename=\"" + LONG + b".exe\"")]), "Policy"),
    ("long-name", lambda s: mime(s, [long_name_part(b".exe")]), "Policy"),
    ("long-name-scr", lambda s: mime(s, [long_name_part(b".SCR")]), "Policy"),
    ("rfc2231-continuation", lambda s: mime(s, [exe_part(
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Disposition: attachment;\r\n filename*0*=UTF-8''invoice;\r\n"
        b" filename*1*=%2E%65xe")]), "Policy"),
    ("rfc2231-continuation-jis", lambda s: mime(s, [exe_part(
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Disposition: attachment;\r\n filename*0*=ISO-2022-JP''%1B%24B%40A5a%3Dq;\r\n"
        b" filename*1*=%1B%28B.exe")]), "Policy"),
    ("encoded-word-iso-2022-jp", lambda s: mime(s, [exe_part(
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Disposition: attachment; filename=\"" + jis_b("請求書.exe") + b"\"")]),
     "Policy"),
    ("encoded-word-utf8-b", lambda s: mime(s, [exe_part(
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Disposition: attachment; filename=\"" + utf8_b("請求書.exe") + b"\"")]),
     "Policy"),
    ("encoded-word-utf8-q", lambda s: mime(s, [exe_part(
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Disposition: attachment; filename=\"=?UTF-8?Q?invoice=2EeXe?=\"")]),
     "Policy"),
    ("content-type-name-only", lambda s: mime(s, [exe_part(
        b"Content-Type: application/x-msdownload; name=\"invoice.exe\"")]), "Policy"),
    ("text-part-with-name", lambda s: mime(s, [exe_part(
        b"Content-Type: text/plain; name=\"invoice.js\"")]), "Policy"),
    # Two names for one part, a harmless one where a filter may look first.
    ("content-type-name-beside-filename", lambda s: mime(s, [exe_part(
        b"Content-Type: application/octet-stream; name=\"invoice.exe\"\r\n"
        b"Content-Disposition: attachment; filename=\"invoice.doc\"")]), "Policy"),
    ("plain-filename-beside-rfc2231", lambda s: mime(s, [exe_part(
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Disposition: attachment; filename=\"invoice.exe\"; "
        b"filename*=UTF-8''invoice.doc")]), "Policy"),
    ("repeated-filename", lambda s: mime(s, [exe_part(
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Disposition: attachment; filename=\"invoice.doc\"; "
        b"filename=\"invoice.exe\"")]), "Policy"),
    ("nested-5", lambda s: nested_message(s, 5), "Policy"),
    # Beyond what the filters inspect: undecided, so the fail-closed quarantine.
    ("many-parts", lambda s: many_parts_message(s, 1100), "unclassified"),
    ("nested-40", lambda s: nested_message(s, 40), "unclassified"),
]


def filtered_gateway(start_gateway, sink, **sections):
    gw = start_gateway(sink.host, start=False, **sections)
    gw.apply({"filters": {"file": gw.write_file("gw.filters", FILTERS)}})
    return gw.start()


@pytest.mark.parametrize("case", EVASIONS, ids=[c[0] for c in EVASIONS])
def test_evasion_is_quarantined_not_relayed(start_gateway, aio_sink, case):
    name, build, quarantine = case
    gw = filtered_gateway(start_gateway, aio_sink)
    subject = "evasion " + name
    code, text = gw.send("alice@sender.test", "bob@example.com", build(subject))
    assert code == 250, text
    msgs = gw.messages()
    assert [(m["quarantine"], m["verdict"], m["subject"]) for m in msgs] == \
        [(quarantine, "policy", subject)], msgs
    assert [r["address"] for r in msgs[0]["recipients"]] == ["bob@example.com"]
    if quarantine == "unclassified":
        gw.wait_log("gw.filter_undecided")
        assert re.search(r"gw\.filter_undecided id=\S+ filter=block_exe reason=\"more "
                         r"attachments or deeper nesting than the filters inspect\" "
                         r"outcome=unclassified", gw.log_text()), gw.log_text()[-3000:]
    assert stays(lambda: aio_sink.count() == 0, 0.5)

    if name == "long-name-one-line":
        return  # no control: the sink refuses lines over 1000 bytes
    # The control: the same shape with a harmless name is relayed.
    control = build(subject + " control").replace(b".exe", b".pdf").replace(b".SCR", b".pdf") \
        .replace(b"invoice.js", b"invoice.txt").replace(b"%2E%65xe", b"%2Epdf") \
        .replace(b"=2EeXe", b"=2Epdf")
    if name in ("encoded-word-iso-2022-jp", "encoded-word-utf8-b"):
        control = mime(subject + " control", [exe_part(
            b"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; "
            b"filename=\"" + utf8_b("請求書.pdf") + b"\"")])
    code, text = gw.send("alice@sender.test", "bob@example.com", control)
    if quarantine == "unclassified":
        # Still beyond the limits: not decided, so not delivered either.
        assert code == 250, text
        assert len(gw.messages()) == 2
        assert stays(lambda: aio_sink.count() == 0, 0.5)
    else:
        assert code == 250, text
        (m,) = aio_sink.wait_count(1)
        assert m["rcpts"] == ["bob@example.com"]
        assert (subject + " control").encode() in m["data"]
        assert len(gw.messages()) == 1


def budget_spender(subject):
    """Seventeen 4000-byte X-Mailer fields spend the match budget before block_exe runs."""
    junk = b"".join(b"X-Mailer: " + b"m" * 4000 + b"\r\n" for _ in range(17))
    return mime(subject, [exe_part(b"Content-Type: application/octet-stream; "
                                   b"name=\"invoice.exe\"")], extra_headers=junk)


def test_spent_budget_is_quarantined_as_unclassified(start_gateway, aio_sink):
    gw = filtered_gateway(start_gateway, aio_sink)
    code, text = gw.send("alice@sender.test", "bob@example.com", budget_spender("budget"))
    assert code == 250, text
    msgs = gw.messages()
    assert [(m["quarantine"], m["subject"]) for m in msgs] == [("unclassified", "budget")]
    gw.wait_log("gw.filter_undecided")
    log = gw.log_text()
    assert re.search(r"gw\.filter_undecided id=\S+ filter=mailer reason=\"match budget spent\" "
                     r"outcome=unclassified", log), log[-3000:]
    assert "filter.match_budget" in log
    assert stays(lambda: aio_sink.count() == 0, 0.5)
    # Fewer long fields leave budget for the filters: decided (Policy), not Unclassified.
    junk = b"".join(b"X-Mailer: " + b"m" * 4000 + b"\r\n" for _ in range(3))
    msg = mime("decided", [exe_part(b"Content-Type: application/octet-stream; "
                                    b"name=\"invoice.exe\"")], extra_headers=junk)
    assert gw.send("alice@sender.test", "bob@example.com", msg)[0] == 250
    assert sorted((m["quarantine"], m["subject"]) for m in gw.messages()) == \
        [("Policy", "decided"), ("unclassified", "budget")]


def test_undecided_tempfail_refuses_and_keeps_nothing(start_gateway, aio_sink):
    gw = filtered_gateway(start_gateway, aio_sink,
                          filters={"undecided": "tempfail"})
    assert gw.send("alice@sender.test", "bob@example.com",
                   budget_spender("budget")) == UNDECIDED_REPLY
    assert gw.send("alice@sender.test", "bob@example.com",
                   nested_message("deep", 40)) == UNDECIDED_REPLY
    gw.wait_log("outcome=tempfail")
    assert gw.messages() == []
    # A decidable executable is still quarantined, a clean message still relayed.
    assert gw.send("alice@sender.test", "bob@example.com",
                   nested_message("shallow", 3))[0] == 250
    assert [m["quarantine"] for m in gw.messages()] == ["Policy"]
    assert gw.send("alice@sender.test", "bob@example.com",
                   mime("clean", [(b"Content-Type: application/pdf; name=a.pdf",
                                   b"JVBERi0=")]))[0] == 250
    (m,) = aio_sink.wait_count(1)
    assert b"Subject: clean" in m["data"]
    assert stays(lambda: aio_sink.count() == 1, 0.5)


# ---- relay safety ---------------------------------------------------------------------

ROUTING = [
    "x%evil@example.com",
    "x%evil.test@example.com",
    "evil!x@example.com",
    "x@evil@example.com",
    "x@evil.test@example.com",
    '"x@evil"@example.com',
    '"x%evil"@example.com',
    '"evil!x"@example.com',
    '"x"@evil.test@example.com',
    "user@[127.0.0.1]",
    "user@[IPv6:::1]",
    "user@a..example.org",
    "user@example.com..",
]


@pytest.mark.parametrize("accept", ["example.com, .example.org", "*"])
def test_routing_tricks_are_refused_and_nothing_is_relayed(start_gateway, aio_sink, accept):
    gw = start_gateway(aio_sink.host, rat={"accept": accept})
    s = gw.smtp()
    try:
        assert s.docmd("MAIL FROM:<alice@sender.test>")[0] == 250
        for addr in ROUTING:
            code, text = s.docmd("RCPT TO:<%s>" % addr)
            assert (code, text.decode()) == (554, "5.7.1 <%s>: Relay access denied" % addr), addr
        # An unlisted domain keeps its own reply (only with a list).
        code, text = s.docmd("RCPT TO:<user@evil.test>")
        if accept == "*":
            assert code == 250
        else:
            assert (code, text.decode()) == (
                550, "5.7.1 Recipient address rejected: relay not permitted")
        # Normal addresses, a quoted local part without operators, and a source route
        # (ignored: RFC 5321 4.1.2) are accepted. (A trailing dot is accepted too, see
        # test_gw_rat.c, but the aiosmtpd sink refuses such an address.)
        for addr in ["bob@example.com", "carol@example.com", '"first.last"@example.com',
                     "@hop.evil.test,@hop2.evil.test:dave@example.com"]:
            code, text = s.docmd("RCPT TO:<%s>" % addr)
            assert code == 250, (addr, code, text)
        code, text = s.data(b"From: alice@sender.test\r\nSubject: relay\r\n\r\nhello\r\n")
        assert code == 250, text
    finally:
        s.quit()
    (m,) = aio_sink.wait_count(1)
    # aiosmtpd hands over "first.last"@example.com without its needless quotes.
    want = ["bob@example.com", "carol@example.com", "first.last@example.com",
            "dave@example.com"]
    if accept == "*":
        want.insert(0, "user@evil.test")
    assert m["rcpts"] == want
    # No refused address was ever offered to the next hop.
    assert [a for a, _ in aio_sink.handler.rcpt_log] == want
    assert stays(lambda: aio_sink.count() == 1, 0.5)
    assert gw.log_text().count("gw.rat_reject") == len(ROUTING) + (accept != "*")


# ---- SMTP smuggling -------------------------------------------------------------------

SMUGGLED = (b"MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n"
            b"From: ceo@example.com\r\nSubject: smuggled\r\n\r\npay now\r\n")
FAKE_ENDS = [b"\n.\n", b"\r.\n", b"\n.\r\n", b"\r\n.\r", b"\r\n.\n", b"\r.\r\n", b"\r.\r",
             b"\n.\r", b"\r\n.\r\r\n", b"\r\n\x00.\r\n"]


@pytest.mark.parametrize("fake_end", FAKE_ENDS, ids=[repr(e)[2:-1] for e in FAKE_ENDS])
@pytest.mark.parametrize("hop", ["aiosmtpd", "smtp-sink"])
def test_smuggling_stays_inside_the_message(start_gateway, aio_sink_factory, postfix_sink, hop,
                                            fake_end):
    sink = aio_sink_factory() if hop == "aiosmtpd" else postfix_sink
    gw = start_gateway(sink.host)
    data = (b"From: alice@sender.test\r\nTo: bob@example.com\r\nSubject: carrier\r\n\r\nhello"
            + fake_end + SMUGGLED + b".\r\n")
    with RawSMTP(gw.smtp_port) as c:
        assert c.greeting().startswith("220 ")
        c.ehlo()
        assert c.cmd("MAIL FROM:<alice@sender.test>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<bob@example.com>") == "250 2.1.5 Ok"
        assert c.cmd("DATA").startswith("354 ")
        c.send(data + b"QUIT\r\n")
        lines = c.replies_until_close(timeout=30)
    assert len(lines) == 2, lines
    assert re.match(r"^250 2\.0\.0 Ok: \S+$", lines[0]), lines
    assert lines[1].startswith("221 "), lines
    if hop == "aiosmtpd":
        (m,) = sink.wait_count(1)
        assert m["sender"] == "alice@sender.test" and m["rcpts"] == ["bob@example.com"]
        body = m["data"]
        assert stays(lambda: sink.count() == 1, 0.5)
    else:
        wait_for(lambda: len(postfix_sink.files()) >= 1, t(15), "a dump from smtp-sink")
        assert stays(lambda: len(postfix_sink.files()) == 1, 0.5)
        (d,) = postfix_sink.dumps()
        assert [a.split()[0] for a in d["rcpt_args"]] == ["<bob@example.com>"], d["rcpt_args"]
        assert d["mail_args"].split()[0] == "<alice@sender.test>", d["mail_args"]
        body = d["message"]
    # The smuggled commands arrived as text of the one message.
    assert b"MAIL FROM:<evil@attacker.test>" in body, body
    assert b"RCPT TO:<victim@example.com>" in body and b"pay now" in body
    assert b"Subject: carrier" in body
    assert gw.log_text().count("gw.sent") <= 1

"""lazaretctl against a real lazaretd: what an administrator sees and relies on.

Each test runs the built lazaretctl (LAZARET_BUILD) as a subprocess with the
manager's URL and token in its environment, and checks its output, its exit status
(0 ok, 1 API error, 2 usage error) and the manager's state through the REST API.
"""

import json
import os
import subprocess
import unicodedata
import uuid

import pytest

from conftest import BUILD_DIR
from e2e_helpers import make_attachment_message, make_message, sanitizer_report, t
from test_pvo import pvo_message, pvo_send, register_gateway, stored_id

SUBJECT_JA = "【重要】請求書のご確認のお願い"


def ctl_path():
    for p in (os.path.join(BUILD_DIR, "lazaretctl"), os.path.join(BUILD_DIR, "src", "lazaretctl")):
        if os.access(p, os.X_OK):
            return p
    pytest.fail("lazaretctl not built in %s" % BUILD_DIR)


def ctl(manager, *args, token=None, url=None, env_extra=None):
    """Runs lazaretctl; returns (exit status, stdout bytes, stderr text)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("LAZARET_URL", "LAZARET_TOKEN", "COLUMNS")}
    env["LANG"] = "C"  # the tool sets a UTF-8 character type itself
    if manager is not None:
        env["LAZARET_URL"] = url or manager.http_url
        env["LAZARET_TOKEN"] = token or manager.token
    else:
        env["LAZARET_URL"] = "http://127.0.0.1:9"  # usage errors must not reach any server
        env["LAZARET_TOKEN"] = "unused"
    env.update(env_extra or {})
    r = subprocess.run([ctl_path(), *args], stdin=subprocess.DEVNULL, capture_output=True,
                       env=env, timeout=t(60))
    err = r.stderr.decode("utf-8", "replace")
    rep = sanitizer_report(err)
    assert rep is None, "lazaretctl: sanitizer report:\n%s" % rep
    return r.returncode, r.stdout, err


def cells(s):
    """Terminal width of s: East Asian wide and fullwidth characters take two cells."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in s)


def from_cell(line, col):
    """The part of line from terminal column col on."""
    used = 0
    for i, ch in enumerate(line):
        if used >= col:
            return line[i:]
        used += cells(ch)
    return ""


def table_rows(out):
    lines = out.decode("utf-8").rstrip("\n").split("\n")
    return lines[0], lines[1:]


def states(manager, msg_id):
    return {r["address"]: r["state"] for r in manager.get_message(msg_id)["recipients"]}


def test_search_table_shows_japanese_subject_aligned(manager):
    ja = manager.send("sender@example.jp", ["u1@corp.test", "u2@corp.test"],
                      make_message(subject=SUBJECT_JA, to="u1@corp.test"))
    en = manager.send("other@example.com", ["u3@corp.test"],
                      make_message(subject="plain ascii subject", sender="other@example.com"))
    rc, out, err = ctl(manager, "search")
    assert rc == 0, err
    header, rows = table_rows(out)
    assert header.startswith("ID")
    by_id = {r.split()[0]: r for r in rows}
    assert set(by_id) >= {ja, en}
    row = by_id[ja]
    assert SUBJECT_JA in row
    assert "sender@example.jp" in row
    assert "u1@corp.test (quarantined)" in row
    # Newest first.
    assert rows.index(by_id[en]) < rows.index(by_id[ja])
    # The subject column starts at the same terminal column on every line, although
    # the Japanese subject has twice as many cells as characters.
    col = header.index("SUBJECT")
    assert cells(row[:row.index(SUBJECT_JA)]) == col
    assert cells(by_id[en][:by_id[en].index("plain ascii subject")]) == col


def test_search_shortens_long_subject_by_display_width(manager):
    long_subject = "とても長い件名" * 20
    msg_id = manager.send("sender@example.jp", ["u1@corp.test"],
                          make_message(subject=long_subject))
    rc, out, err = ctl(manager, "search", env_extra={"COLUMNS": "140"})
    assert rc == 0, err
    header, rows = table_rows(out)
    row = [r for r in rows if r.startswith(msg_id)][0]
    shown = from_cell(row, header.index("SUBJECT"))
    assert shown.startswith("とても長い件名")
    assert shown.endswith("…")
    assert long_subject not in row
    assert cells(row) <= 140
    # --wide prints the subject whole.
    rc, out, err = ctl(manager, "search", "--wide")
    assert rc == 0, err
    assert long_subject in out.decode("utf-8")


def test_search_json_parses_and_filters(manager):
    ja = manager.send("sender@example.jp", ["u1@corp.test"], make_message(subject=SUBJECT_JA))
    manager.send("other@example.com", ["u2@corp.test"],
                 make_message(subject="something else", sender="other@example.com"))
    rc, out, err = ctl(manager, "search", "--json", "--subject", "請求書")
    assert rc == 0, err
    doc = json.loads(out.decode("utf-8"))
    assert [m["id"] for m in doc["messages"]] == [ja]
    assert doc["messages"][0]["subject"] == SUBJECT_JA
    assert doc["next_cursor"] is None
    # A value with characters that must be percent-encoded reaches the server intact.
    rc, out, err = ctl(manager, "search", "--json", "--subject", "a&b=c d%")
    assert rc == 0, err
    assert json.loads(out)["messages"] == []


def test_search_pages_and_all(manager):
    ids = [manager.send("sender@example.jp", ["u1@corp.test"],
                        make_message(subject="page %d" % i)) for i in range(5)]
    rc, out, err = ctl(manager, "search", "--limit", "2")
    assert rc == 0, err
    _, rows = table_rows(out)
    assert len(rows) == 2
    assert "--cursor" in err
    rc, out, err = ctl(manager, "search", "--all", "--limit", "2", "--json")
    assert rc == 0, err
    got = [m["id"] for m in json.loads(out)["messages"]]
    assert sorted(got) == sorted(ids)
    assert len(set(got)) == 5


def test_show_prints_headers_attachments_and_recipients(manager):
    raw = make_attachment_message(SUBJECT_JA, [("請求書.pdf", "application/pdf", b"%PDF-1.4 " * 50)])
    msg_id = manager.send("sender@example.jp", ["u1@corp.test", "u2@corp.test"], raw)
    rc, out, err = ctl(manager, "show", msg_id)
    assert rc == 0, err
    text = out.decode("utf-8")
    assert msg_id in text
    assert SUBJECT_JA in text
    assert "headers:" in text and "Message-ID:" in text
    assert "請求書.pdf" in text and "application/pdf" in text
    assert "u1@corp.test  quarantined" in text and "u2@corp.test  quarantined" in text
    rc, out, err = ctl(manager, "show", msg_id, "--json")
    assert rc == 0, err
    assert json.loads(out)["id"] == msg_id


def test_raw_is_byte_exact(manager):
    body = ("本文です。\r\n".encode("iso-2022-jp") + b"line\r\n") * 4000  # > 64 KiB, ESC bytes
    msg = make_message(subject=SUBJECT_JA, body=body)
    msg_id = manager.send("sender@example.jp", ["u1@corp.test"], msg)
    rc, out, err = ctl(manager, "raw", msg_id)
    assert rc == 0, err
    st, _, served = manager.http("GET", "/api/v1/messages/%s/raw" % msg_id)
    assert st == 200
    assert out == served, "lazaretctl raw differs from what the API serves"
    assert out == msg, "stored bytes differ from the bytes sent"


def test_release_some_recipients(manager):
    msg_id = manager.send("sender@example.jp", ["u1@corp.test", "u2@corp.test"],
                          make_message(subject=SUBJECT_JA))
    rc, out, err = ctl(manager, "release", msg_id, "--rcpt", "u1@corp.test")
    assert rc == 0, err
    st = states(manager, msg_id)
    assert st["u1@corp.test"] in ("releasing", "released")
    assert st["u2@corp.test"] == "quarantined"
    assert "u1@corp.test" in out.decode("utf-8")
    # A recipient the message does not have is an API error, and changes nothing.
    rc, out, err = ctl(manager, "release", msg_id, "--rcpt", "nobody@corp.test")
    assert rc == 1
    assert err.startswith("lazaretctl: ") and "HTTP 4" in err
    assert states(manager, msg_id)["u2@corp.test"] == "quarantined"


def test_delete_message(manager):
    msg_id = manager.send("sender@example.jp", ["u1@corp.test", "u2@corp.test"],
                          make_message(subject="to delete"))
    rc, out, err = ctl(manager, "delete", msg_id)
    assert rc == 0, err
    assert set(states(manager, msg_id).values()) == {"deleted"}


def test_bulk_delete_by_filter_counts_recipients(manager):
    bad = [manager.send("spam@bad.example", ["u1@corp.test", "u2@corp.test"],
                        make_message(subject="bad %d" % i, sender="spam@bad.example"))
           for i in range(3)]
    good = manager.send("friend@good.example", ["u1@corp.test"],
                        make_message(subject="good", sender="friend@good.example"))
    rc, out, err = ctl(manager, "delete", "--filter", "--sender", "bad.example")
    assert rc == 0, err
    assert out.decode("utf-8").strip() == "6 recipients deleted"
    for msg_id in bad:
        assert set(states(manager, msg_id).values()) == {"deleted"}
    assert states(manager, good) == {"u1@corp.test": "quarantined"}


def test_bulk_release_by_filter(manager):
    msg_id = manager.send("spam@bad.example", ["u1@corp.test"],
                          make_message(subject="release me", sender="spam@bad.example"))
    rc, out, err = ctl(manager, "release", "--filter", "--subject", "release me")
    assert rc == 0, err
    assert out.decode("utf-8").strip() == "1 recipient released"
    assert states(manager, msg_id)["u1@corp.test"] in ("releasing", "released")


def pvo_ingest(manager, quarantines, subject, rcpts):
    raw = pvo_message(["X-Lazaret-Quarantine: %s; reason=\"rule %s\"" % (q, q)
                       for q in quarantines], subject=subject)
    return stored_id(*pvo_send(manager, raw, rcpts=rcpts))


def test_bulk_release_in_pvo_quarantine_counts_messages(manager):
    """In a policy, virus or outbreak quarantine the filter's count is of messages
    (memberships), and of those the ones queued for delivery; in the spam
    quarantine, of recipients."""
    register_gateway(manager)  # PVO mail is taken from registered gateways only
    three = ("u1@corp.test", "u2@corp.test", "u3@corp.test")
    only = pvo_ingest(manager, ["Adult"], "ctl pvo only", three)
    both = pvo_ingest(manager, ["Adult", "virus"], "ctl pvo both", ("u1@corp.test",))
    virus = pvo_ingest(manager, ["virus"], "ctl pvo virus", three)
    pvo_ingest(manager, ["Adult"], "another subject", ("u1@corp.test",))

    rc, out, err = ctl(manager, "release", "--filter", "--quarantine", "Adult",
                       "--subject", "ctl pvo")
    assert rc == 0, err
    assert out.decode("utf-8") == \
        '2 messages released from quarantine "Adult" (1 queued for delivery)\n'
    assert {q["name"]: q["state"] for q in manager.get_message(both)["quarantines"]} == \
        {"Adult": "released", "virus": "held"}
    assert manager.get_message(only)["quarantines"][0]["state"] == "released"

    rc, out, err = ctl(manager, "delete", "--filter", "--quarantine", "virus",
                       "--subject", "ctl pvo")
    assert rc == 0, err
    assert out.decode("utf-8") == '2 messages deleted from quarantine "virus"\n'
    assert manager.get_message(virus)["quarantines"][0]["state"] == "deleted"
    rc, out, err = ctl(manager, "release", "--filter", "--quarantine", "virus",
                       "--subject", "ctl pvo")
    assert rc == 0, err
    assert out.decode("utf-8") == \
        '0 messages released from quarantine "virus" (0 queued for delivery)\n'

    spam = manager.send("spam@bad.example", ["u1@corp.test", "u2@corp.test"],
                        make_message(subject="ctl spam", sender="spam@bad.example"))
    rc, out, err = ctl(manager, "release", "--filter", "--quarantine", "spam",
                       "--subject", "ctl spam")
    assert rc == 0, err
    assert out.decode("utf-8") == "2 recipients released\n"
    assert set(states(manager, spam).values()) <= {"releasing", "released"}


def test_quarantines_and_health(manager):
    manager.send("sender@example.jp", ["u1@corp.test"], make_message(subject="q"))
    st, doc = manager.api("GET", "/api/v1/quarantines")
    assert st == 200
    rc, out, err = ctl(manager, "quarantines")
    assert rc == 0, err
    for q in doc["quarantines"]:
        assert q["name"] in out.decode("utf-8")
    rc, out, err = ctl(manager, "health")
    assert (rc, out) == (0, b"ok\n"), err


def test_bad_token_is_an_api_error_with_the_servers_message(manager):
    st, doc = manager.api("GET", "/api/v1/messages", token="wrong-token")
    assert st == 401
    rc, out, err = ctl(manager, "search", token="wrong-token")
    assert rc == 1
    assert out == b""
    assert err.strip() == "lazaretctl: %s (%s, HTTP 401)" % (doc["error"]["message"],
                                                             doc["error"]["code"])


def test_unknown_id_is_an_api_error(manager):
    unknown = str(uuid.uuid4())
    for cmd in ("show", "raw", "release", "delete"):
        rc, out, err = ctl(manager, cmd, unknown)
        assert rc == 1, (cmd, err)
        assert out == b"", cmd
        assert "HTTP 404" in err, (cmd, err)


def test_unreachable_manager_is_exit_1(manager):
    rc, out, err = ctl(manager, "search", url="http://127.0.0.1:9")
    assert rc == 1
    assert err.startswith("lazaretctl: ")


@pytest.mark.parametrize("args", [
    [],
    ["frobnicate"],
    ["show"],
    ["show", "a", "b"],
    ["search", "--limit", "0"],
    ["search", "--bogus"],
    ["search", "--since", "yesterday"],
    ["raw", "x", "--json"],
    ["release", "--filter"],
    ["delete", "x", "--sender", "a@b"],
    ["release", "x", "--no-rescan"],
    ["release", "--filter", "--sender", "a@b", "--no-rescan"],
    ["delete", "x", "--quarantine", "outbreak", "--no-rescan"],
    ["search", "--quarantine", "outbreak", "--no-rescan"],
    ["release", "x", "--quarantine", "outbreak", "--rcpt", "a@b"],
    ["release", "x", "--quarantine", "outbreak", "--sender", "a@b"],
    ["help", "frobnicate"],
])
def test_usage_errors_exit_2(args):
    rc, out, err = ctl(None, *args)
    assert rc == 2, (args, err)
    assert "usage: lazaretctl" in err
    assert out == b""


def test_help():
    rc, out, err = ctl(None, "--help")
    assert rc == 0
    assert out.decode().startswith("usage: lazaretctl")
    rc, out, err = ctl(None, "help", "search")
    assert rc == 0
    assert "--since" in out.decode() and "--all" in out.decode()
    rc, out2, err = ctl(None, "search", "--help")
    assert rc == 0 and out2 == out

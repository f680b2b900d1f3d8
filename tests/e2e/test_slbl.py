"""Safelists/blocklists on the real lazaretd: one recipient's lists, the per-user
limit (default and raised), the gateways' change feed, CSV export/import, auth."""

import csv
import io
import json
import subprocess
import urllib.parse

from conftest import lazaretd_path


def path(rcpt):
    return "/api/v1/slbl/" + urllib.parse.quote(rcpt, safe="@")


def get_lists(m, rcpt):
    st, doc = m.api("GET", path(rcpt))
    assert st == 200, (st, doc)
    return doc


def put_lists(m, rcpt, safe, block, **extra):
    body = {"safelist": safe, "blocklist": block}
    body.update(extra)
    return m.api("PUT", path(rcpt), json=body)


def error_message(st, doc, status):
    assert st == status, (st, doc)
    assert doc["error"]["code"] and doc["error"]["message"], doc
    return doc["error"]["message"]


def changes(m, since, **kw):
    q = {"since": since}
    q.update(kw)
    st, doc = m.api("GET", "/api/v1/slbl?" + urllib.parse.urlencode(q))
    assert st == 200, (st, doc)
    assert isinstance(doc["version"], int) and isinstance(doc["changes"], list), doc
    return doc


def export_rows(m):
    st, headers, raw = m.http("GET", "/api/v1/slbl/export.csv")
    assert st == 200, (st, raw)
    assert headers["Content-Type"].startswith("text/csv"), headers
    text = raw.decode("utf-8")
    assert text.startswith("recipient,list,sender\r\n"), text[:100]
    rows = list(csv.reader(io.StringIO(text, newline="")))
    return rows[0], rows[1:]


def import_csv(m, text):
    st, _, raw = m.http("POST", "/api/v1/slbl/import.csv", body=text.encode("utf-8"),
                        headers={"Content-Type": "text/csv"})
    return st, json.loads(raw.decode("utf-8")) if raw else None


def test_get_put_roundtrip(manager):
    m = manager
    doc = get_lists(m, "user@corp.example")
    assert doc == {"recipient": "user@corp.example", "safelist": [], "blocklist": []}

    st, doc = put_lists(m, "User@Corp.Example",
                        [" Boss@Partner.Example", "partner.example", "boss@partner.example"],
                        [".Spam.Example", "x@evil.example"])
    assert st == 200, (st, doc)
    want = {"recipient": "user@corp.example",
            "safelist": ["boss@partner.example", "partner.example"],
            "blocklist": [".spam.example", "x@evil.example"]}
    assert doc == want
    assert get_lists(m, "USER@corp.example") == want

    # A PUT replaces both lists; [] empties one.
    st, doc = put_lists(m, "user@corp.example", [], ["other.example"])
    assert st == 200, (st, doc)
    assert get_lists(m, "user@corp.example")["safelist"] == []
    assert get_lists(m, "user@corp.example")["blocklist"] == ["other.example"]

    # Survives a restart.
    m.restart()
    assert get_lists(m, "user@corp.example")["blocklist"] == ["other.example"]


def test_put_errors_name_the_problem(manager):
    m = manager
    put_lists(m, "user@corp.example", ["keep.example"], [])
    msg = error_message(*put_lists(m, "user@corp.example", ["ok.example", "not an entry"], []),
                        422)
    assert "not an entry" in msg and "safelist" in msg, msg
    msg = error_message(*put_lists(m, "user@corp.example", [], ["a@b@c.example"]), 422)
    assert "a@b@c.example" in msg and "blocklist" in msg, msg
    error_message(*m.api("PUT", path("user@corp.example"), json={"safelist": []}), 422)
    error_message(*m.api("PUT", path("user@corp.example"),
                         json={"safelist": [], "blocklist": [], "color": "red"}), 422)
    error_message(*m.api("PUT", path("user@corp.example"),
                         json={"safelist": [1], "blocklist": []}), 422)
    error_message(*put_lists(m, "user@corp.example", [], [], recipient="else@corp.example"), 422)
    st, _, raw = m.http("PUT", path("user@corp.example"), body=b'{"safelist": [')
    assert st == 400, (st, raw)
    error_message(*m.api("GET", path("not-an-address")), 400)
    error_message(*put_lists(m, "corp.example", [], []), 400)
    # Nothing of that reached the store.
    assert get_lists(m, "user@corp.example")["safelist"] == ["keep.example"]


def senders(n, domain="x.example"):
    return ["sender%d@%s" % (i, domain) for i in range(n)]


def test_default_limit_is_100(manager):
    m = manager
    st, doc = put_lists(m, "user@corp.example", senders(100), senders(100, "y.example"))
    assert st == 200, (st, doc)
    assert len(doc["safelist"]) == 100 and len(doc["blocklist"]) == 100
    msg = error_message(*put_lists(m, "user@corp.example", senders(101), []), 422)
    assert "safelist" in msg and "100" in msg, msg
    msg = error_message(*put_lists(m, "user@corp.example", [], senders(101)), 422)
    assert "blocklist" in msg and "100" in msg, msg
    # Duplicates do not count towards the limit.
    st, doc = put_lists(m, "user@corp.example", senders(100) + senders(50), [])
    assert st == 200 and len(doc["safelist"]) == 100, (st, doc)
    # The refused puts changed nothing.
    assert len(get_lists(m, "user@corp.example")["safelist"]) == 100


def test_limit_raised_to_500(start_manager):
    m = start_manager(spam_quarantine__slbl_max_entries=500)
    st, doc = put_lists(m, "user@corp.example", senders(500), senders(500, "y.example"))
    assert st == 200, (st, doc)
    assert len(get_lists(m, "user@corp.example")["blocklist"]) == 500
    msg = error_message(*put_lists(m, "user@corp.example", senders(501), []), 422)
    assert "500" in msg, msg


def test_limit_above_500_is_a_config_error(start_manager):
    m = start_manager(start=False, spam_quarantine__slbl_max_entries=501)
    m.write_config()
    r = subprocess.run([lazaretd_path(), "--check-config", "-c", m.conf_path], capture_output=True,
                       timeout=30)
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    assert r.returncode != 0, out
    assert "slbl_max_entries" in out, out


def test_changes_feed(manager):
    m = manager
    doc = changes(m, 0)
    assert doc["changes"] == [] and doc["version"] == 0 and doc["more"] is False

    put_lists(m, "a@corp.example", ["a.example"], [])
    put_lists(m, "b@corp.example", [], ["b.example"])
    v1 = changes(m, 0)["version"]
    doc = changes(m, 0)
    assert [c["recipient"] for c in doc["changes"]] == ["a@corp.example", "b@corp.example"]
    assert doc["changes"][1] == {"recipient": "b@corp.example", "safelist": [],
                                 "blocklist": ["b.example"]}
    assert changes(m, v1)["changes"] == []

    # Emptying a's lists is a change a gateway must see (so it drops a).
    put_lists(m, "a@corp.example", [], [])
    doc = changes(m, v1)
    assert doc["changes"] == [{"recipient": "a@corp.example", "safelist": [], "blocklist": []}]
    assert doc["version"] > v1

    # Paging: limit=1 hands out one recipient at a time, version continues.
    put_lists(m, "c@corp.example", ["c.example"], [])
    seen, since = [], 0
    for _ in range(10):
        doc = changes(m, since, limit=1)
        seen += [c["recipient"] for c in doc["changes"]]
        since = doc["version"]
        if not doc["more"]:
            break
    assert seen == ["b@corp.example", "a@corp.example", "c@corp.example"], seen
    assert since == changes(m, 0)["version"]

    st, doc = m.api("GET", "/api/v1/slbl?since=-1")
    assert st == 400, (st, doc)
    st, doc = m.api("GET", "/api/v1/slbl?since=abc")
    assert st == 400, (st, doc)


def test_csv_export_import_roundtrip(start_manager):
    m = start_manager()
    put_lists(m, "a@corp.example", ['"quoted,name"@partner.example', "o'brien@partner.example",
                                    "partner.example"], [".spam.example"])
    put_lists(m, "b@corp.example", [], ["x,y@evil.example"])
    header, rows = export_rows(m)
    assert header == ["recipient", "list", "sender"]
    assert rows == [
        ["a@corp.example", "safelist", '"quoted,name"@partner.example'],
        ["a@corp.example", "safelist", "o'brien@partner.example"],
        ["a@corp.example", "safelist", "partner.example"],
        ["a@corp.example", "blocklist", ".spam.example"],
        ["b@corp.example", "blocklist", "x,y@evil.example"],
    ]
    st, _, raw = m.http("GET", "/api/v1/slbl/export.csv")
    # RFC 4180 quoting: fields with commas or quotes are quoted, quotes doubled.
    assert b'a@corp.example,safelist,"""quoted,name""@partner.example"\r\n' in raw, raw
    assert b'b@corp.example,blocklist,"x,y@evil.example"\r\n' in raw, raw

    # Import the export into a fresh manager: the same lists come out.
    m2 = start_manager()
    st, doc = import_csv(m2, raw.decode("utf-8"))
    assert st == 200, (st, doc)
    assert doc == {"recipients": 2, "entries": 5}
    assert export_rows(m2)[1] == rows
    assert get_lists(m2, "a@corp.example")["safelist"][0] == '"quoted,name"@partner.example'


def test_csv_import_replaces_only_named_recipients(manager):
    m = manager
    put_lists(m, "a@corp.example", ["old.example"], ["old-spam.example"])
    put_lists(m, "untouched@corp.example", ["keep.example"], [])
    csv_text = ("\ufeffRecipient,List,Sender\n"          # BOM, header in any case, LF ends
                "A@Corp.Example,safelist,New.Example\n"
                "\n"                                       # blank lines are skipped
                "a@corp.example,safelist,new.example\n"    # duplicate
                'new@corp.example,"blocklist","spam.example"\n'  # quoted fields
                "new@corp.example,SAFELIST, friend.example \r\n")
    st, doc = import_csv(m, csv_text)
    assert st == 200, (st, doc)
    assert doc == {"recipients": 2, "entries": 3}
    assert get_lists(m, "a@corp.example") == {"recipient": "a@corp.example",
                                              "safelist": ["new.example"], "blocklist": []}
    assert get_lists(m, "new@corp.example")["blocklist"] == ["spam.example"]
    assert get_lists(m, "new@corp.example")["safelist"] == ["friend.example"]
    assert get_lists(m, "untouched@corp.example")["safelist"] == ["keep.example"]


def test_csv_import_bad_line_changes_nothing(manager):
    m = manager
    put_lists(m, "a@corp.example", ["old.example"], [])
    cases = [
        ("recipient,list,sender\r\na@corp.example,safelist,ok.example\r\n"
         "a@corp.example,greylist,x.example\r\n", "line 3"),
        ("a@corp.example,safelist,ok.example\nb@corp.example,blocklist,not valid\n", "line 2"),
        ("a@corp.example,safelist\n", "line 1"),
        ("a@corp.example,safelist,ok.example,extra\n", "line 1"),
        ("a@corp.example,safelist,ok.example\nbad-recipient,safelist,x.example\n", "line 2"),
        # a quoted field spanning lines counts them
        ('a@corp.example,safelist,"multi\nline"\nb@corp.example,safelist,bad entry\n', "line 1"),
        ('a@corp.example,safelist,ok.example\nb@corp.example,safelist,"open\n', "line 2"),
        ('a@corp.example,safelist,"x.example"junk\n', "line 1"),
    ]
    for text, where in cases:
        st, doc = import_csv(m, text)
        msg = error_message(st, doc, 422)
        assert msg.startswith(where), (text, msg)
    assert get_lists(m, "a@corp.example")["safelist"] == ["old.example"]
    assert get_lists(m, "b@corp.example")["blocklist"] == []

    # Over the limit in a file: named with the line where it went over.
    rows = "".join("a@corp.example,safelist,s%d@x.example\n" % i for i in range(101))
    msg = error_message(*import_csv(m, rows), 422)
    assert msg.startswith("line 101") and "100" in msg, msg
    assert get_lists(m, "a@corp.example")["safelist"] == ["old.example"]


def test_token_required(manager):
    m = manager
    for method, p, body in [("GET", "/api/v1/slbl?since=0", None),
                            ("GET", path("a@corp.example"), None),
                            ("PUT", path("a@corp.example"), {"safelist": [], "blocklist": []}),
                            ("GET", "/api/v1/slbl/export.csv", None),
                            ("POST", "/api/v1/slbl/import.csv", b"a@corp.example,safelist,x.com\n")]:
        for token in (None, "wrong-token"):
            st, headers, raw = m.http(method, p, body=body, token=token)
            assert st == 401, (method, p, st, raw)
            assert headers.get("WWW-Authenticate", "").startswith("Bearer"), headers
    assert get_lists(m, "a@corp.example")["safelist"] == []

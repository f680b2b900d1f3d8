"""Reports as PDF (docs/openapi.yaml GET /api/v1/reports/{report}?format=pdf): the
same known traffic as test_reports.py through two real gateways, and events with
Japanese keys pushed to a real lazaretd; each PDF is read back with poppler's
pdftotext (the numbers per gateway and in total, the period, the gateway and
"n / N" on every page, tables continuing over pages) and drawn with pdftoppm.
Runs on the suite's backend (SQLite or PostgreSQL)."""

import re
import subprocess
import time
import urllib.parse

from engine_fixtures import clamd  # noqa: F401 (a fixture)
from gw_fixtures import start_gateway  # noqa: F401 (a fixture)
from test_events import push, register
from test_reports import T0, message, traffic  # noqa: F401 (a fixture)

NUM = re.compile(r"^\s*(.+?)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$")


def pdf(mgr, name, tmp_path, **params):
    """(pages' text as pdftotext -layout reads them, the file, headers)."""
    params["format"] = "pdf"
    st, headers, body = mgr.http("GET", "/api/v1/reports/%s?%s"
                                 % (name, urllib.parse.urlencode(params)), timeout=30)
    assert st == 200, (name, params, body[:300])
    assert headers["Content-Type"] == "application/pdf", headers
    assert body.startswith(b"%PDF-"), body[:20]
    path = tmp_path / ("%s-%s-%s.pdf" % (name, params.get("period", "day"),
                                         params.get("gateway", "all")))
    path.write_bytes(body)
    text = subprocess.run(["pdftotext", "-layout", "-enc", "UTF-8", str(path), "-"],
                          check=True, capture_output=True).stdout.decode("utf-8")
    pages = text.split("\f")
    if pages and not pages[-1].strip():
        pages.pop()
    return pages, path, headers


def table(pages):
    """{first column: [7 numbers]} of every table row of every page."""
    out = {}
    for page in pages:
        for line in page.splitlines():
            m = NUM.match(line)
            if m:
                out[m.group(1)] = [int(x) for x in m.groups()[1:]]
    return out


def each_page_has(pages, period, gateway):
    n = len(pages)
    for i, page in enumerate(pages, 1):
        assert re.search(r"Period: \d{4}-\d\d-\d\d \d\d:\d\d – \d{4}-\d\d-\d\d \d\d:\d\d UTC "
                         r"\(%s\)" % period, page), (i, page[:400])
        assert "Gateway: %s" % gateway in page, (i, page[:400])
        # "n / N" at the foot (pdftotext may close up the spaces)
        assert re.search(r"\s%d ?/ ?%d\s*$" % (i, n), page), (i, page[-300:])


def test_pdf_reports_show_the_traffic_per_gateway_and_in_total(traffic, tmp_path):  # noqa: F811
    mgr = traffic
    want = {"gw-a": [8, 3, 3, 0, 1, 1, 0], "gw-b": [2, 1, 1, 0, 0, 0, 0],
            None: [10, 4, 4, 0, 1, 1, 0]}
    for period in ("day", "week", "year"):
        for gw, totals in want.items():
            params = {"period": period}
            if gw:
                params["gateway"] = gw
            pages, _, headers = pdf(mgr, "overview", tmp_path, **params)
            each_page_has(pages, period, gw or "all gateways")
            assert "Overview" in pages[0]
            rows = table(pages)
            assert rows["Total"] == totals, (period, gw, rows)
            # every bucket has its row, and they add up to the totals
            buckets = {k: v for k, v in rows.items() if k != "Total"}
            assert len(buckets) == {"day": 24, "week": 7, "year": 12}[period], buckets
            assert [sum(v[j] for v in buckets.values()) for j in range(7)] == totals
            disp = headers["Content-Disposition"]
            assert re.fullmatch(r'attachment; filename="lazaret-overview-%s-%s-\d{8}\.pdf"'
                                % (period, gw or "all"), disp), disp

    pages, _, _ = pdf(mgr, "internal_users", tmp_path, period="day")
    each_page_has(pages, "day", "all gateways")
    assert table(pages) == {
        "bob@example.com": [5, 2, 2, 0, 1, 0, 0],
        "carol@example.com": [2, 1, 0, 0, 0, 1, 0],
        "erin@example.com": [1, 0, 1, 0, 0, 0, 0],
        "frank@example.com": [1, 0, 1, 0, 0, 0, 0],
        "dave@sub.example.org": [1, 1, 0, 0, 0, 0, 0],
    }
    pages, _, _ = pdf(mgr, "incoming_domains", tmp_path, period="day", gateway="gw-b")
    each_page_has(pages, "day", "gw-b")
    assert table(pages) == {"sender.test": [1, 1, 0, 0, 0, 0, 0],
                            "spam.test": [1, 0, 1, 0, 0, 0, 0]}
    pages, _, _ = pdf(mgr, "content_filters", tmp_path, period="day", gateway="gw-a")
    assert table(pages) == {"no_invoice": [1, 0, 0, 0, 0, 1, 0]}
    pages, _, _ = pdf(mgr, "tls", tmp_path, period="day")
    assert table(pages) == {"none": [0, 0, 0, 0, 0, 0, 8]}
    # a report without rows still has its page
    pages, _, _ = pdf(mgr, "rate_limits", tmp_path, period="day")
    assert len(pages) == 1 and "No rows in this period." in pages[0] and table(pages) == {}


JA_RCPT = "山田太郎@例え.jp"
JA_SENDER = "請求係@請求書.example"


def test_pdf_shows_japanese_keys_and_tables_go_on_over_pages(manager, tmp_path):
    token = register(manager, "gw-ja")
    events = []
    seq = 1
    # 150 recipients with one clean message each, 50 messages of three
    for i in range(50):
        rcpts = ["u%03d@example.com" % (3 * i + k) for k in range(3)]
        events += message(seq, T0 + 3600000 + i, "m-%d" % i, "a@x.test", rcpts, "clean")
        seq += 3
    for i in range(2):
        events += message(seq, T0 + 7200000 + i, "m-ja-%d" % i, JA_SENDER, [JA_RCPT], "spam")
        seq += 3
    st, doc = push(manager, token, {"events": events})
    assert st == 200 and doc["stored"] == len(events), doc
    custom = {"period": "custom", "since": "2025-12-05T00:00:00Z",
              "until": "2025-12-05T12:00:00Z"}

    pages, path, _ = pdf(manager, "internal_users", tmp_path, limit=200, gateway="gw-ja",
                         **custom)
    assert len(pages) >= 3, len(pages)
    each_page_has(pages, "custom", "gw-ja")
    # the header on every page, every row once, the Japanese one first (most mail)
    for page in pages:
        assert re.search(r"^\s*Key\s+Incoming\s+Clean\s+Spam", page, re.M), page[:600]
    rows = table(pages)
    assert rows[JA_RCPT] == [2, 0, 2, 0, 0, 0, 0]
    assert {k: v for k, v in rows.items() if k != JA_RCPT} == {
        "u%03d@example.com" % i: [1, 1, 0, 0, 0, 0, 0] for i in range(150)}
    assert JA_RCPT in pages[0].split("Rows")[0], "the chart labels the Japanese key"
    subprocess.run(["pdftoppm", "-png", "-r", "60", str(path), str(tmp_path / "users")],
                   check=True)
    assert len(list(tmp_path.glob("users-*.png"))) == len(pages)

    pages, path, _ = pdf(manager, "incoming_domains", tmp_path, **custom)
    each_page_has(pages, "custom", "all gateways")
    assert table(pages) == {"x.test": [150, 150, 0, 0, 0, 0, 0],
                            "請求書.example": [2, 0, 2, 0, 0, 0, 0]}
    pages, path, _ = pdf(manager, "overview", tmp_path, **custom)
    assert table(pages)["Total"] == [152, 150, 2, 0, 0, 0, 0]
    rows = table(pages)
    assert rows["2025-12-05 01:00"] == [150, 150, 0, 0, 0, 0, 0]
    assert rows["2025-12-05 02:00"] == [2, 0, 2, 0, 0, 0, 0]
    subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", str(path),
                    str(tmp_path / "overview")], check=True)


def test_a_long_overview_pdf_renders_fast(manager, tmp_path):
    token = register(manager, "gw-y")
    events = []
    for i in range(12):  # a message a month through 2025
        at = T0 - (i * 30 + 1) * 86400000
        events += message(1 + 3 * i, at, "m-%d" % i, "a@x.test", ["u@example.com"], "clean")
    st, doc = push(manager, token, {"events": events})
    assert st == 200 and doc["stored"] == 36, doc
    for params, most in (({"period": "year"}, 2.0),
                         ({"period": "custom", "since": "2024-12-01T00:00:00Z",
                           "until": "2026-01-04T00:00:00Z"}, 2.0)):
        t = time.monotonic()
        pages, _, _ = pdf(manager, "overview", tmp_path, **params)
        took = time.monotonic() - t
        print("bench: overview %s: %d pages in %.3f s" % (params, len(pages), took))
        assert took < most, (params, took)
        each_page_has(pages, params["period"], "all gateways")
    # the custom range by the day: 399 days, every one a row, over several pages
    rows = table(pages)
    assert len(rows) == 400 and rows["Total"][0] == 12, len(rows)

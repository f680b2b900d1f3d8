"""Scheduled reports and their archive (CONTRACT "Events, tracking and reporting",
docs/openapi.yaml /api/v1/report-schedules, /api/v1/report-archive): an
administrator schedules a report, has it made now, and finds the copy in the
archive, whose PDF (read back with pdftotext) and CSV show the numbers of events
pushed to a real lazaretd; bad schedules get 400s, other roles 403s. Runs on the
suite's backend (SQLite or PostgreSQL)."""

import csv
import email
import email.policy
import io
import re
import subprocess
import time

from e2e_helpers import wait_for
from test_attachments import login
from test_events import error, push, register
from test_reports import message
from test_reports_pdf import table

GOOD = {"report": "overview", "period": "day", "every": "daily",
        "recipients": ["boss@example.com", "audit@example.jp"], "format": "pdf"}


def traffic(mgr):
    """Two clean messages (three recipients) and one spam, in the current hour."""
    token = register(mgr, "gw-s")
    at = int(time.time() * 1000) - 1000
    events = (message(1, at, "m-1", "a@x.test", ["u1@example.com", "u2@example.com"], "clean")
              + message(4, at, "m-2", "b@x.test", ["u1@example.com"], "clean")
              + message(7, at, "m-3", "c@spam.test", ["u3@example.com"], "spam"))
    st, doc = push(mgr, token, {"events": events})
    assert st == 200 and doc["stored"] == len(events), doc


def test_a_schedule_is_made_now_kept_in_the_archive_and_mailed(start_manager, aio_sink,
                                                                tmp_path):
    manager = start_manager(primary_host=aio_sink.host,
                            notifications__from="reports@corp.test")
    traffic(manager)
    st, s = manager.api("POST", "/api/v1/report-schedules", GOOD)
    assert st == 201, s
    assert (s["report"], s["period"], s["every"], s["format"]) == ("overview", "day", "daily",
                                                                   "pdf")
    assert s["recipients"] == GOOD["recipients"] and s["last_run"] is None
    # due tomorrow (or today) at 06:00 UTC
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT06:00:00Z", s["next_run"]), s
    st, csv_s = manager.api("POST", "/api/v1/report-schedules",
                            dict(GOOD, report="internal_users", every="monthly", format="csv"))
    assert st == 201, csv_s
    assert csv_s["next_run"][8:] == "01T06:00:00Z", csv_s
    st, doc = manager.api("GET", "/api/v1/report-schedules")
    assert st == 200 and [x["id"] for x in doc["schedules"]] == [s["id"], csv_s["id"]]

    st, a = manager.api("POST", "/api/v1/report-schedules/%d/run" % s["id"], timeout=30)
    assert st == 201, a
    assert (a["schedule_id"], a["report"], a["format"]) == (s["id"], "overview", "pdf")
    st, b = manager.api("POST", "/api/v1/report-schedules/%d/run" % csv_s["id"], timeout=30)
    assert st == 201, b
    st, doc = manager.api("GET", "/api/v1/report-archive")
    assert st == 200 and [x["id"] for x in doc["reports"]] == [b["id"], a["id"]], doc

    st, headers, body = manager.http("GET", "/api/v1/report-archive/%d" % a["id"])
    assert st == 200 and headers["Content-Type"] == "application/pdf"
    assert body.startswith(b"%PDF-") and len(body) == a["size"]
    assert headers["Content-Disposition"] == \
        'attachment; filename="overview-day-%d.pdf"' % a["id"]
    path = tmp_path / "a.pdf"
    path.write_bytes(body)
    text = subprocess.run(["pdftotext", "-layout", "-enc", "UTF-8", str(path), "-"],
                          check=True, capture_output=True).stdout.decode("utf-8")
    assert table(text.split("\f"))["Total"] == [4, 3, 1, 0, 0, 0, 0]

    # both runs were mailed, each with its archived document attached
    mails = {}
    for msg in aio_sink.wait_count(2):
        mail = email.message_from_bytes(msg["data"], policy=email.policy.default)
        (part,) = mail.iter_attachments()
        mails[part.get_filename()] = (sorted(msg["rcpts"]), part.get_content())
    assert mails["overview-day-%d.pdf" % a["id"]][1] == \
        manager.http("GET", "/api/v1/report-archive/%d" % a["id"])[2]
    assert mails["internal_users-day-%d.csv" % b["id"]][0] == sorted(GOOD["recipients"])

    st, headers, body = manager.http("GET", "/api/v1/report-archive/%d" % b["id"])
    assert st == 200 and headers["Content-Type"].startswith("text/csv")
    rows = {r["key"]: r for r in csv.DictReader(io.StringIO(body.decode("utf-8")))}
    assert rows["u1@example.com"]["incoming"] == "2", rows
    assert rows["u3@example.com"]["spam"] == "1", rows

    # deleted: gone from the list, cannot run; its archived copies stay
    st, _ = manager.api("DELETE", "/api/v1/report-schedules/%d" % csv_s["id"])
    assert st == 200
    st, doc = manager.api("DELETE", "/api/v1/report-schedules/%d" % csv_s["id"])
    assert st == 404, doc
    st, doc = manager.api("POST", "/api/v1/report-schedules/%d/run" % csv_s["id"])
    assert st == 404, doc
    st, doc = manager.api("GET", "/api/v1/report-schedules")
    assert [x["id"] for x in doc["schedules"]] == [s["id"]]
    st, headers, body = manager.http("GET", "/api/v1/report-archive/%d" % b["id"])
    assert st == 200
    for bad in ("999999", "0", "x", "1;2"):
        st, _, _ = manager.http("GET", "/api/v1/report-archive/" + bad)
        assert st == 404, bad


def test_bad_schedules_get_400_and_other_roles_403(manager):
    cases = [
        ({"report": "nope"}, "no such report"),
        ({"period": "fortnight"}, "\"period\" must be one of"),
        ({"period": "custom"}, "period=custom"),
        ({"every": "hourly"}, "\"every\" must be daily, weekly or monthly"),
        ({"format": "xls"}, "\"format\" must be pdf or csv"),
        ({"recipients": []}, "\"recipients\" must be a list"),
        ({"recipients": "a@b.c"}, "\"recipients\" must be a list"),
        ({"recipients": ["a@b.c", "x@y.z\r\nBcc: evil@x"]}, "recipient 2 is not"),
        ({"recipients": ["<a@b.c>"]}, "recipient 1 is not"),
        ({"extra": 1}, "extra"),
    ]
    for change, msg in cases:
        st, doc = manager.api("POST", "/api/v1/report-schedules", dict(GOOD, **change))
        assert st == 400 and msg in error(doc), (change, st, doc)
    st, doc = manager.api("POST", "/api/v1/report-schedules",
                          {k: v for k, v in GOOD.items() if k != "every"})
    assert st == 400, doc
    # the most recipients, each as long as an address may be
    longest = ["%s%02d@%s.example.jp" % ("u" * 60, i, "d" * 170) for i in range(50)]
    st, doc = manager.api("POST", "/api/v1/report-schedules", dict(GOOD, recipients=longest))
    assert st == 201 and doc["recipients"] == longest, doc
    st, _ = manager.api("DELETE", "/api/v1/report-schedules/%d" % doc["id"])
    assert st == 200
    st, doc = manager.api("POST", "/api/v1/report-schedules",
                          dict(GOOD, recipients=longest + ["x@example.jp"]))
    assert st == 400 and "1 to 50 addresses" in error(doc), doc
    st, doc = manager.api("GET", "/api/v1/report-schedules")
    assert doc["schedules"] == []

    st, s = manager.api("POST", "/api/v1/report-schedules", GOOD)
    assert st == 201
    st, _ = manager.api("GET", "/api/v1/report-schedules", token=None)
    assert st == 401
    for name, role in (("eve", "enduser"), ("opal", "operator")):
        c = login(manager, name, "%s-password-1" % name, role,
                  ["bob@example.com"] if role == "enduser" else ())
        for method, path, body in (
                ("GET", "/api/v1/report-schedules", None),
                ("POST", "/api/v1/report-schedules", GOOD),
                ("DELETE", "/api/v1/report-schedules/%d" % s["id"], None),
                ("POST", "/api/v1/report-schedules/%d/run" % s["id"], None),
                ("GET", "/api/v1/report-archive", None),
                ("GET", "/api/v1/report-archive/1", None)):
            st, doc = c.call(method, path, body)
            assert (st, error(doc)) == (403, "not allowed for role of %s" % name), (method,
                                                                                    path)
    st, doc = manager.api("GET", "/api/v1/report-schedules")
    assert [x["id"] for x in doc["schedules"]] == [s["id"]]


def test_a_due_schedule_is_mailed_once_with_its_report_attached(start_manager, aio_sink,
                                                                aio_sink_factory, tmp_path):
    # the schedules' clock runs 32 days ahead (common/fault.h): a new schedule is due at once
    m = start_manager(start=False, primary_host=aio_sink.host,
                      notifications__from="reports@corp.test")
    m.next_env = {"LAZARET_FAULT": "report_sched_ahead"}
    m.start()
    traffic(m)
    st, s = m.api("POST", "/api/v1/report-schedules", GOOD)
    assert st == 201, s
    msgs = aio_sink.wait_count(1, timeout=20)
    mail = email.message_from_bytes(msgs[0]["data"], policy=email.policy.default)
    assert msgs[0]["sender"] == "reports@corp.test"
    assert sorted(msgs[0]["rcpts"]) == sorted(GOOD["recipients"])
    # the Subject is encoded-words on the wire, and names the report and its period
    raw_subject = re.search(rb"^Subject: (.*(?:\r\n .*)*)", msgs[0]["data"], re.M).group(1)
    assert all(b < 0x80 for b in raw_subject), raw_subject
    assert re.fullmatch(r"\[Lazaret\] レポート overview \(day\) \d{4}-\d\d-\d\d – "
                        r"\d{4}-\d\d-\d\d", str(mail["Subject"])), mail["Subject"]
    assert mail["To"] == "boss@example.com, audit@example.jp"
    parts = list(mail.iter_attachments())
    assert len(parts) == 1 and parts[0].get_content_type() == "application/pdf"
    pdf = parts[0].get_content()
    (tmp_path / "m.pdf").write_bytes(pdf)
    text = subprocess.run(["pdftotext", "-layout", "-enc", "UTF-8", str(tmp_path / "m.pdf"),
                           "-"], check=True, capture_output=True).stdout.decode("utf-8")
    assert table(text.split("\f"))["Total"] == [4, 3, 1, 0, 0, 0, 0]
    assert "レポート overview" in mail.get_body(("plain",)).get_content()

    # archived as mailed, and claimed: not made again on the next ticks
    st, doc = m.api("GET", "/api/v1/report-archive")
    assert [(x["schedule_id"], x["size"]) for x in doc["reports"]] == [(s["id"], len(pdf))]
    st, headers, body = m.http("GET", "/api/v1/report-archive/%d" % doc["reports"][0]["id"])
    assert body == pdf
    st, doc = m.api("GET", "/api/v1/report-schedules")
    after = doc["schedules"][0]
    assert after["last_run"] is not None and after["next_run"] > s["next_run"], after
    time.sleep(3)
    assert aio_sink.count() == 1

    # new release hosts and From on SIGHUP: the next report goes there
    other = aio_sink_factory()
    m.reload(primary_host=other.host, notifications__from="other@corp.test")
    wait_for(lambda: "manager.reloaded" in m.log_text(), 10, "the reload")
    st, s2 = m.api("POST", "/api/v1/report-schedules",
                   dict(GOOD, format="csv", recipients=["x@example.com"]))
    assert st == 201, s2
    got = other.wait_count(1, timeout=20)
    assert (got[0]["sender"], got[0]["rcpts"]) == ("other@corp.test", ["x@example.com"])
    assert aio_sink.count() == 1

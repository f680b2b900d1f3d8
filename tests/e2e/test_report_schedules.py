"""Scheduled reports and their archive (CONTRACT "Events, tracking and reporting",
docs/openapi.yaml /api/v1/report-schedules, /api/v1/report-archive): an
administrator schedules a report, has it made now, and finds the copy in the
archive, whose PDF (read back with pdftotext) and CSV show the numbers of events
pushed to a real lazaretd; bad schedules get 400s, other roles 403s. Runs on the
suite's backend (SQLite or PostgreSQL)."""

import csv
import datetime
import email
import email.policy
import io
import re
import subprocess
import time
import zoneinfo

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


def next_local(now, every, hh, mm, zone):
    """When a schedule is next due after now (aware datetime), worked out in zone."""
    tz = zoneinfo.ZoneInfo(zone)
    day = now.astimezone(tz).date() - datetime.timedelta(days=1)
    for _ in range(40):
        at = datetime.datetime(day.year, day.month, day.day, hh, mm, tzinfo=tz)
        ok = (every == "daily" or (every == "weekly" and day.weekday() == 0)
              or (every == "monthly" and day.day == 1))
        if ok and at > now:
            return at.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        day += datetime.timedelta(days=1)
    raise AssertionError("no next run")


def test_a_schedule_is_sent_at_its_own_time_and_can_be_changed(manager):
    body = dict(GOOD, every="weekly", at="18:30", time_zone="Asia/Tokyo")
    before = datetime.datetime.now(datetime.timezone.utc)
    st, s = manager.api("POST", "/api/v1/report-schedules", body)
    after = datetime.datetime.now(datetime.timezone.utc)
    assert st == 201, s
    assert (s["at"], s["time_zone"]) == ("18:30", "Asia/Tokyo")
    assert s["next_run"] in (next_local(before, "weekly", 18, 30, "Asia/Tokyo"),
                             next_local(after, "weekly", 18, 30, "Asia/Tokyo")), s
    # Monday 18:30 in Tokyo is Monday 09:30 UTC
    when = datetime.datetime.strptime(s["next_run"], "%Y-%m-%dT%H:%M:%SZ")
    assert (when.weekday(), when.hour, when.minute) == (0, 9, 30), s
    # without at and time_zone: 06:00 UTC as before
    st, d = manager.api("POST", "/api/v1/report-schedules", GOOD)
    assert st == 201 and (d["at"], d["time_zone"]) == ("06:00", "UTC"), d

    # changed: a monthly CSV at 00:15 in Berlin
    change = dict(GOOD, every="monthly", format="csv", at="00:15", time_zone="Europe/Berlin",
                  recipients=["new@example.com"])
    now = datetime.datetime.now(datetime.timezone.utc)
    st, u = manager.api("PUT", "/api/v1/report-schedules/%d" % s["id"], change)
    assert st == 200, u
    assert (u["id"], u["every"], u["format"], u["at"], u["time_zone"], u["recipients"]) == (
        s["id"], "monthly", "csv", "00:15", "Europe/Berlin", ["new@example.com"])
    assert u["next_run"] == next_local(now, "monthly", 0, 15, "Europe/Berlin"), u
    assert u["created_by"] == s["created_by"] and u["created_at"] == s["created_at"]
    st, doc = manager.api("GET", "/api/v1/report-schedules")
    assert doc["schedules"][0] == u

    # bad times and zones: exact 400s, nothing changed
    cases = [
        ({"at": "24:00"}, "\"at\" must be a time of day as HH:MM (00:00 to 23:59)"),
        ({"at": "7:00"}, "\"at\" must be a time of day as HH:MM (00:00 to 23:59)"),
        ({"at": "07:60"}, "\"at\" must be a time of day as HH:MM (00:00 to 23:59)"),
        ({"at": "07:00:00"}, "\"at\" must be a time of day as HH:MM (00:00 to 23:59)"),
        ({"at": 700}, "\"at\" must be a time of day as HH:MM (00:00 to 23:59)"),
        ({"at": None}, "\"at\" must be a time of day as HH:MM (00:00 to 23:59)"),
        ({"time_zone": "Mars/Olympus"},
         "\"time_zone\" must be a zone of the tz database (\"UTC\", \"Asia/Tokyo\")"),
        ({"time_zone": "../../../etc/passwd"},
         "\"time_zone\" must be a zone of the tz database (\"UTC\", \"Asia/Tokyo\")"),
        ({"time_zone": ""},
         "\"time_zone\" must be a zone of the tz database (\"UTC\", \"Asia/Tokyo\")"),
        ({"time_zone": 9}, "\"time_zone\" must be a zone of the tz database (\"UTC\", "
         "\"Asia/Tokyo\")"),
        ({"format": None}, "\"format\" must be pdf or csv"),
        ({"every": "hourly"}, "\"every\" must be daily, weekly or monthly"),
    ]
    for bad, msg in cases:
        for method, path in (("POST", "/api/v1/report-schedules"),
                             ("PUT", "/api/v1/report-schedules/%d" % s["id"])):
            st, doc = manager.api(method, path, dict(GOOD, **bad))
            assert (st, error(doc)) == (400, msg), (method, bad, doc)
    st, doc = manager.api("PUT", "/api/v1/report-schedules/%d" % s["id"], ["x"])
    assert (st, error(doc)) == (422, "the request body must be a JSON object"), doc
    for missing in ("999999", "0", "x"):
        st, doc = manager.api("PUT", "/api/v1/report-schedules/" + missing, GOOD)
        assert (st, error(doc)) == (404, "no such schedule"), (missing, doc)
    st, doc = manager.api("GET", "/api/v1/report-schedules")
    assert doc["schedules"] == [u, d]


def test_a_refused_mail_is_tried_again_and_arrives_once(start_manager, aio_sink):
    m = start_manager(start=False, primary_host=aio_sink.host,
                      notifications__from="reports@corp.test")
    m.next_env = {"LAZARET_FAULT": "report_sched_ahead"}
    m.start()
    aio_sink.handler.default_rcpt_reply = "451 4.3.0 not now"
    st, s = m.api("POST", "/api/v1/report-schedules", dict(GOOD, format="csv"))
    assert st == 201, s
    wait_for(lambda: "report_sched.retry" in m.log_text(), 20, "a retry planned")
    assert aio_sink.count() == 0
    wait_for(lambda: len(aio_sink.handler.rcpt_log) >= 4, 20, "a second attempt")
    st, doc = m.api("GET", "/api/v1/report-archive")
    (copy,) = doc["reports"]
    assert copy["mail"]["state"] == "pending" and copy["mail"]["tries"] >= 1, copy
    assert copy["mail"]["pending"] == GOOD["recipients"]
    aio_sink.handler.default_rcpt_reply = None
    msgs = aio_sink.wait_count(1, timeout=20)
    assert sorted(msgs[0]["rcpts"]) == sorted(GOOD["recipients"])
    mail = email.message_from_bytes(msgs[0]["data"], policy=email.policy.default)
    (part,) = mail.iter_attachments()
    st, headers, body = m.http("GET", "/api/v1/report-archive/%d" % copy["id"])
    assert part.get_content().encode("utf-8") == body
    wait_for(lambda: m.api("GET", "/api/v1/report-archive")[1]["reports"][0]["mail"]["state"]
             == "sent", 10, "the copy marked sent")
    time.sleep(3)
    assert aio_sink.count() == 1
    st, doc = m.api("GET", "/api/v1/report-archive")
    assert [x["id"] for x in doc["reports"]] == [copy["id"]]
    assert doc["reports"][0]["mail"]["pending"] == []
    assert "report_sched.send_failed" in m.log_text()


def test_archived_copies_go_after_their_retention(start_manager, aio_sink):
    m = start_manager(start=False, primary_host=aio_sink.host,
                      notifications__from="reports@corp.test",
                      reporting__archive_retention="4s")
    m.next_env = {"LAZARET_FAULT": "report_sched_ahead"}
    m.start()
    st, s = m.api("POST", "/api/v1/report-schedules", dict(GOOD, format="csv"))
    assert st == 201, s
    st, b = m.api("POST", "/api/v1/report-schedules/%d/run" % s["id"], timeout=30)
    assert st == 201, b
    # the copy the timer made and the one made now, both mailed
    wait_for(lambda: len(m.api("GET", "/api/v1/report-archive")[1]["reports"]) == 2, 3,
             "two copies")
    aio_sink.wait_count(2)
    wait_for(lambda: m.api("GET", "/api/v1/report-archive")[1]["reports"] == [], 20,
             "the archive emptied")
    st, _, _ = m.http("GET", "/api/v1/report-archive/%d" % b["id"])
    assert st == 404
    assert "report_sched.purged" in m.log_text()
    # the schedule itself stays
    st, doc = m.api("GET", "/api/v1/report-schedules")
    assert [x["id"] for x in doc["schedules"]] == [s["id"]]

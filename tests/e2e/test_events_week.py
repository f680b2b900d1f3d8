"""The manager down for a week loses no event and no count (docs/GATEWAY.md
"Events", "Reporting"): a real lazaret-gw with [tracking] mode = central and
[reporting] mode = central, and a real lazaretd, both run under libfaketime
(Debian's faketime, installed by scripts/bootstrap) with a clock this test moves
through a time file. The manager stops; mail goes through the gateway on each of
7 simulated days; the manager starts again 8 days after the last. Every event is
on the manager exactly once, each at the time the gateway gave it, and the
manager's overview report shows, day by day and for the gateway, exactly the
messages sent that day.

Only the wall clock is moved (FAKETIME_DONT_FAKE_MONOTONIC=1): timers and
deadlines, which the programs keep on the monotonic clock, run in real time."""

import datetime
import glob
import os
import time

import pytest

from e2e_helpers import wait_for
from gw_fixtures import make_message  # noqa: F401
from gw_fixtures import start_gateway  # noqa: F401 (a fixture)
from test_events import GW, event_count, gw_metrics, queue_id, register, store_rows, \
    tracking_gateway
from test_reports import report

DAY = 86400
# the messages sent on simulated day 1, 2, ... 7: a different count each day
PER_DAY = [3, 1, 4, 1, 5, 2, 6]


def libfaketime():
    """The multi-threaded libfaketime (Debian's libfaketime, pulled by faketime)."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    if not found:
        pytest.fail("libfaketime is not installed (apt-get install faketime; "
                    "scripts/bootstrap installs it)")
    return found[0]


class FakeClock:
    """The wall clock of the processes started with env(): the offset to the real
    time in a file that libfaketime reads at every clock call."""

    def __init__(self, workdir):
        self.path = os.path.join(workdir, "faketime")
        self.set(time.time())

    def set(self, at):
        """The processes' clock reads at (epoch seconds) now, and runs on from it."""
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write("%+d\n" % round(at - time.time()))
        os.rename(tmp, self.path)  # never a half-written file for a reader

    def env(self):
        env = {"LD_PRELOAD": " ".join(p for p in (os.environ.get("LD_PRELOAD"),
                                                  libfaketime()) if p),
               "FAKETIME_TIMESTAMP_FILE": self.path,
               "FAKETIME_NO_CACHE": "1",
               "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
        if os.environ.get("LAZARET_SANITIZED"):
            # ASan wants its runtime first among the libraries; the preload is
            # before it, which is harmless here (libfaketime only wraps clock calls)
            env["ASAN_OPTIONS"] = ":".join(o for o in (os.environ.get("ASAN_OPTIONS"),
                                                       "verify_asan_link_order=0") if o)
        return env


def iso(at):
    return datetime.datetime.fromtimestamp(at, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def test_a_week_without_the_manager_loses_no_event_and_no_count(start_manager, start_gateway,
                                                                aio_sink, tmp_path):
    clock = FakeClock(str(tmp_path))
    # simulated day k is [base + k days, base + k + 1 days); mail goes at its noon
    base = (int(time.time()) // DAY + 30) * DAY

    def noon(k):
        return base + k * DAY + DAY // 2

    clock.set(noon(0))
    mgr = start_manager(start=False)
    mgr.next_env = clock.env()
    mgr.start()
    token = register(mgr)
    gw = tracking_gateway(start_gateway, mgr, token, aio_sink.host, start=False,
                          reporting={"mode": "central"})
    gw.env = clock.env()
    gw.start()
    # day 0: the channel works, then the manager goes away
    code, text = gw.send("alice@sender.test", "bob@example.com", make_message(subject="day 0"))
    assert code == 250, text
    wait_for(lambda: event_count(mgr) == 6, 30, "day 0's events on the manager")
    wait_for(lambda: gw_metrics(gw)["lazaret_gw_events_backlog"] == 0, 30,
             "day 0's events acknowledged")
    mgr.stop()

    sent = {}  # queue id -> simulated day
    for k, n in enumerate(PER_DAY, start=1):
        clock.set(noon(k))
        for i in range(n):
            code, text = gw.send("alice@sender.test", ["bob@example.com"],
                                 make_message(subject="day %d, message %d" % (k, i)))
            assert code == 250, text  # mail flows while the manager is down
            sent[queue_id(text)] = k
    total = len(sent)
    # connection, recipient, received, verdict, delivery, reply a message
    wait_for(lambda: gw_metrics(gw)["lazaret_gw_events_backlog"] == 6 * total, 20,
             "every event in the gateway's spool")
    # the gateway's lag is in simulated time: the oldest event is 6 days old
    assert gw_metrics(gw)["lazaret_gw_events_oldest_unacked_seconds"] >= 6 * DAY - 60

    # 8 days after the last day the manager comes back
    clock.set(noon(len(PER_DAY) + 8))
    mgr.next_env = clock.env()
    # weeks later, a manager on PostgreSQL first creates the partitions of the
    # weeks ahead (72 tables), which a busy machine makes slow
    mgr.start(wait=False)
    mgr.wait_ready(timeout=90)
    wait_for(lambda: event_count(mgr) == 6 + 6 * total, 120, "the week's events on the manager")
    wait_for(lambda: gw_metrics(gw)["lazaret_gw_events_backlog"] == 0, 30, "an empty spool")
    rows = store_rows(mgr, "SELECT seq, type, coalesce(msg_id, ''), at FROM events"
                           " WHERE gateway = '%s' ORDER BY seq" % GW)
    assert len(rows) == 6 + 6 * total
    assert len({r[0] for r in rows}) == len(rows)  # each event once
    for msg_id, k in sent.items():
        mine = [r for r in rows if r[2] == msg_id]
        assert [r[1] for r in mine] == ["received", "verdict", "delivery", "reply"], msg_id
        for r in mine:  # recorded at the gateway's (simulated) time of that day
            assert noon(k) - 60 <= int(r[3]) / 1000 < noon(k) + 600, (msg_id, k, r)

    # the reports: the week day by day, for the gateway and for all, in the manager's
    # own simulated time (its "week" ends on the day it came back)
    want = [1] + PER_DAY + [0]

    def per_day(**gateway):
        doc = report(mgr, "overview", period="custom", since=iso(base),
                     until=iso(base + len(want) * DAY), **gateway)
        assert doc["granularity"] == "day", doc
        assert [s["at"] for s in doc["series"]] == [iso(base + k * DAY)
                                                   for k in range(len(want))], doc
        return [s["incoming"] for s in doc["series"]]
    wait_for(lambda: per_day(gateway=GW) == want, 60, "the week's counts per day")
    assert per_day() == want
    doc = report(mgr, "overview", period="custom", since=iso(base),
                 until=iso(base + len(want) * DAY), gateway=GW)
    assert doc["totals"]["incoming"] == 1 + total
    assert doc["totals"]["clean"] == 1 + total
    for k, n in enumerate(PER_DAY, start=1):
        doc = report(mgr, "overview", period="custom", since=iso(base + k * DAY),
                     until=iso(base + (k + 1) * DAY), gateway=GW)
        assert doc["totals"]["incoming"] == n, (k, doc["totals"])
    week = report(mgr, "overview", period="week", gateway=GW)
    assert week["since"] == iso(base + (len(PER_DAY) + 2) * DAY), week
    assert week["totals"]["incoming"] == 0

"""The test harness's own guarantees: a daemon that dies or reports a sanitizer error
fails the test, and under CI=true a skip is a failure."""

import os
import signal
import subprocess
import sys
import textwrap

from conftest import daemon_teardown_problems
from e2e_helpers import sanitizer_report, t

HERE = os.path.dirname(os.path.abspath(__file__))

ASAN_REPORT = """\
=================================================================
==4242==ERROR: AddressSanitizer: heap-use-after-free on address 0x602000000010
READ of size 1 at 0x602000000010 thread T0
    #0 0x55d1 in smtp_session_free src/smtp/smtp_session.c:120
SUMMARY: AddressSanitizer: heap-use-after-free src/smtp/smtp_session.c:120
"""
UBSAN_REPORT = "../src/api/api.c:812:17: runtime error: signed integer overflow\n"
LSAN_REPORT = "==77==ERROR: LeakSanitizer: detected memory leaks\n"


def test_sanitizer_reports_are_recognised():
    for rep in (ASAN_REPORT, UBSAN_REPORT, LSAN_REPORT):
        text = "2026-12-04T10:00:00Z info smtp.stored id=x\n" + rep
        assert sanitizer_report(text) is not None, rep
    # Ordinary log lines that mention errors are not reports.
    assert sanitizer_report("2026-12-04T10:00:00Z error store.open_failed error=\"runtime "
                            "error: disk\"\nERROR: nothing\n") is None


def test_an_abort_after_the_last_request_fails_the_test(manager):
    mid = manager.send("a@example.jp", ["u@corp.test"],
                       b"Subject: x\r\n\r\nbody\r\n")
    assert manager.get_message(mid)["id"] == mid
    # The daemon dies on its own after the test's last request: the teardown check
    # must see it (the fixture would otherwise only stop what still runs).
    manager.proc.send_signal(signal.SIGABRT)
    manager.proc.wait(timeout=t(10))
    problems = daemon_teardown_problems("lazaretd", [manager])
    assert len(problems) == 1 and "exited with status -6" in problems[0], problems
    # This test expected it; the fixture's own check then passes.
    manager.exits.expect(manager.proc, -signal.SIGABRT)
    assert daemon_teardown_problems("lazaretd", [manager]) == []


def test_a_sanitizer_report_fails_the_test_even_after_kill9(manager):
    manager.kill9()
    assert daemon_teardown_problems("lazaretd", [manager]) == []
    with open(manager.log_path, "a") as f:
        f.write(ASAN_REPORT)
    problems = daemon_teardown_problems("lazaretd", [manager])
    assert len(problems) == 1 and "heap-use-after-free" in problems[0], problems
    with open(manager.log_path, "w") as f:
        f.write("")  # leave the fixture a clean log


def test_ci_true_turns_a_skip_into_a_failure(tmp_path):
    (tmp_path / "test_peer.py").write_text(textwrap.dedent("""\
        import pytest

        def test_needs_a_peer():
            pytest.skip("peer not installed")

        def test_fine():
            pass
    """))
    env = dict(os.environ, PYTHONPATH=HERE)

    def run(ci):
        env["CI"] = ci
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rfs", "-p",
                               "conftest", "-p", "no:cacheprovider", str(tmp_path)],
                              cwd=str(tmp_path), env=env, capture_output=True, text=True,
                              timeout=t(60))
    r = run("true")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "1 failed, 1 passed" in r.stdout, r.stdout
    assert "skipped under CI=true, which makes a skip a failure: " \
        "Skipped: peer not installed" in r.stdout, r.stdout
    r = run("")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed, 1 skipped" in r.stdout, r.stdout
    assert "SKIPPED [1]" in r.stdout and "peer not installed" in r.stdout, r.stdout


def test_sanitizer_options_have_one_source():
    """make test-asan and scripts/run-tests take ASAN/UBSAN/LSAN_OPTIONS from
    scripts/sanitizer-env, and nobody else sets them."""
    repo = os.path.abspath(os.path.join(HERE, "..", ".."))

    def read(rel):
        with open(os.path.join(repo, rel), encoding="utf-8") as f:
            return f.read()
    env = read("scripts/sanitizer-env")
    for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
        assert "%s=" % var in env, var
    assert '. "$top/scripts/sanitizer-env"' in read("scripts/run-tests")
    make = read("Makefile")
    recipe = make[make.index("\ntest-asan:"):]
    recipe = recipe[:recipe.index("\n\n")]
    assert ". ./scripts/sanitizer-env" in recipe and "LAZARET_SANITIZED=1" in recipe, recipe
    for rel in ("Makefile", "scripts/run-tests"):
        for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            assert "%s=" % var not in read(rel), "%s sets %s itself" % (rel, var)

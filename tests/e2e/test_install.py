"""`meson install`: the programs and the whole web/ tree land under the prefix
(<datadir>/lazaret/web), and an installed lazaretd whose config has no web_root
serves that web application, found from the program's own location.
"""

import os
import shutil
import subprocess

import pytest

from conftest import BUILD_DIR, REPO, make_workdir
from e2e_helpers import t

WEB = os.path.join(REPO, "web")


def web_files(root):
    """Relative paths of every file under root (node_modules left out)."""
    out = set()
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if x != "node_modules"]
        for f in files:
            out.add(os.path.relpath(os.path.join(d, f), root))
    return out


@pytest.fixture
def installed():
    """A `meson install --destdir` of the build under test: {bin, web} paths in it."""
    if shutil.which("meson") is None:
        pytest.fail("meson is needed to install the build")
    destdir = make_workdir("lazaret-e2e-install-")
    try:
        r = subprocess.run(["meson", "install", "-C", BUILD_DIR, "--no-rebuild", "--quiet",
                            "--destdir", destdir], capture_output=True, text=True,
                           timeout=t(300))
        assert r.returncode == 0, r.stdout + r.stderr
        found = {}
        for d, _, files in os.walk(destdir):
            if "lazaretd" in files and os.path.basename(d) == "bin":
                found["bin"] = d
            if os.path.basename(d) == "web" and os.path.basename(os.path.dirname(d)) == "lazaret":
                found["web"] = d
        assert set(found) == {"bin", "web"}, (found, r.stdout)
        yield found
    finally:
        shutil.rmtree(destdir, ignore_errors=True)


def test_install_puts_the_whole_web_tree_under_the_data_dir(installed):
    bindir, webdir = installed["bin"], installed["web"]
    # <prefix>/bin and <prefix>/share/lazaret/web: side by side under one prefix.
    assert os.path.relpath(webdir, os.path.dirname(bindir)) == os.path.join(
        "share", "lazaret", "web")
    for prog in ("lazaretd", "lazaretctl", "lazaret-gw", "lazaret-scan",
                 "lazaret-migrate-store"):
        assert os.access(os.path.join(bindir, prog), os.X_OK), prog
    want = web_files(WEB)
    assert "index.html" in want and any(f.startswith("js" + os.sep) for f in want)
    assert web_files(webdir) == want
    for f in want:
        with open(os.path.join(WEB, f), "rb") as a, open(os.path.join(webdir, f), "rb") as b:
            assert a.read() == b.read(), f


def test_installed_lazaretd_serves_its_web_application(installed, start_manager):
    webdir = installed["web"]
    # The build tree's lazaretd with a config without web_root: no web application.
    plain = start_manager()
    assert "web_root" not in plain.sections["http"]
    st, _, _ = plain.http("GET", "/", token=None)
    assert st == 404
    plain.stop()

    m = start_manager(start=False)
    m.binary = os.path.join(installed["bin"], "lazaretd")
    m.start()
    with open(os.path.join(webdir, "index.html"), "rb") as f:
        index = f.read()
    with open(os.path.join(webdir, "js", "app.js"), "rb") as f:
        app_js = f.read()
    st, hdrs, body = m.http("GET", "/", token=None)
    assert st == 200 and hdrs["Content-Type"] == "text/html; charset=utf-8"
    assert body == index
    st, hdrs, body = m.http("GET", "/js/app.js", token=None)
    assert st == 200 and hdrs["Content-Type"] == "text/javascript; charset=utf-8"
    assert body == app_js
    # A client-side route gets the index; a file that is not there does not.
    st, _, body = m.http("GET", "/messages", token=None)
    assert st == 200 and body == index
    assert m.http("GET", "/js/nope.js", token=None)[0] == 404
    # The log names the folder it serves, canonical.
    assert " web_root=%s " % os.path.realpath(webdir) in m.log_text(), m.log_text()[-3000:]

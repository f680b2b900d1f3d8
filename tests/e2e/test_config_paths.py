"""Paths in the config are resolved against the config file's folder and made
canonical (symbolic links of the existing part followed, "." and ".." gone), so
that lazaretd and lazaret-gw log and use /srv/var/x, never /srv/etc/../var/x.
"""

import os
import re
import subprocess

from e2e_helpers import make_message, t
from gw_fixtures import start_gateway  # noqa: F401


def etc_layout(workdir):
    """<workdir>/etc for the config, <workdir>/real with a link <workdir>/link to it."""
    os.makedirs(os.path.join(workdir, "etc"))
    os.makedirs(os.path.join(workdir, "real"))
    os.symlink("real", os.path.join(workdir, "link"))
    return os.path.realpath(workdir)


def logged(text, event, key):
    """The values of key= on the lines of event."""
    return re.findall(r" %s .*?\b%s=(\S+)" % (re.escape(event), re.escape(key)), text)


def test_lazaretd_logs_and_uses_canonical_paths(start_manager):
    m = start_manager(start=False)
    root = etc_layout(m.workdir)
    m.conf_path = os.path.join(m.workdir, "etc", "lazaretd.conf")
    # "../var" style, through a link, and a ".." under a folder that does not exist.
    m.apply({"data_dir": "../link/./spool/../var/lazaret"})
    m.start()
    want = os.path.join(root, "real", "var", "lazaret")
    assert logged(m.log_text(), "manager.start", "data_dir") == [want], m.log_text()[-3000:]
    assert "/../" not in m.log_text() and "/./" not in m.log_text()
    # The store is where the log says, and nothing went elsewhere.
    mid = m.send("a@example.jp", ["u@corp.test"], make_message("canonical"))
    assert m.get_message(mid)["id"] == mid
    assert os.path.isdir(want) and os.listdir(want)
    assert not os.path.exists(os.path.join(root, "real", "spool"))
    assert not os.path.exists(os.path.join(root, "var"))


def test_lazaretd_errors_name_the_canonical_path(start_manager):
    m = start_manager(start=False)
    root = etc_layout(m.workdir)
    m.conf_path = os.path.join(m.workdir, "etc", "lazaretd.conf")
    m.apply({"http__web_root": "../link/../etc/../nowhere"})
    m.write_config()
    r = subprocess.run([m.binary, "-c", m.conf_path, "--check-config"], capture_output=True,
                       text=True, timeout=t(30))
    assert r.returncode != 0
    want = os.path.join(root, "nowhere", "index.html")
    assert "cannot read %s:" % want in r.stderr, r.stderr


def test_gateway_logs_a_canonical_data_dir(start_gateway):
    gw = start_gateway("127.0.0.1:9", start=False)
    root = etc_layout(gw.workdir)
    gw.conf_path = os.path.join(gw.workdir, "etc", "lazaret-gw.conf")
    gw.apply({"gateway": {"data_dir": "../link/gw/../var/gw1"}})
    gw.start()
    want = os.path.join(root, "real", "var", "gw1")
    assert logged(gw.log_text(), "gw.start", "data_dir") == [want], gw.log_text()[-3000:]
    assert os.path.isdir(want)
    assert not os.path.exists(os.path.join(root, "real", "gw"))

"""The real scanning daemons for the end-to-end tests: SpamAssassin's spamd, ClamAV's
clamd and rspamd, each started by the test itself on loopback with a private
configuration (never the system services). The fixtures are module-scoped: a test
module that uses one starts that daemon once. Import them into a test module with
`from engine_fixtures import clamd, rspamd, spamd`.

- spamd runs with -L (local tests only: no DNS, no network rules) and a private
  site configuration; its rules are the ones Debian's spamassassin package ships.
  It listens on TCP (`spamd.addr`) and on a unix socket (`spamd.sock`).
- clamd reads a signature database the test writes: a hash signature of the EICAR
  test file, so no freshclam and no download. TCP (`clamd.addr`) and a unix socket
  (`clamd.sock`).
- rspamd runs in a private network namespace (unshare -n): it resolves names at
  start (fuzzy servers, maps) through the system resolver, which must not be
  reached. It listens on a unix socket (`rspamd.sock`), which crosses the namespace
  boundary. A short public-suffix list keeps its start near one second.

Every daemon object has `log_text()` (the tail of its log, for failure messages).
"""

import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import make_workdir
from e2e_helpers import free_port, t, wait_for

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
EICAR = (b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*")
EICAR_SIG = "Lazaret-Test-EICAR"
# clamd's StreamMaxLength in the test configuration.
CLAMD_STREAM_MAX = 1024 * 1024

HAM = (b"From: Taro Yamada <taro@example.jp>\r\n"
       b"To: Hanako <hanako@example.jp>\r\n"
       b"Subject: Meeting notes\r\n"
       b"Date: Fri, 27 Nov 2026 10:00:00 +0900\r\n"
       b"Message-ID: <notes-1@example.jp>\r\n"
       b"MIME-Version: 1.0\r\n"
       b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
       b"Hello Hanako,\r\n\r\nthe notes from today's meeting are below.\r\n\r\nTaro\r\n")


def spam_message(body_line=GTUBE):
    return (b"From: sender@example.com\r\nTo: user@example.jp\r\nSubject: test\r\n"
            b"Date: Fri, 27 Nov 2026 10:00:00 +0900\r\nMessage-ID: <gtube@example.com>\r\n"
            b"\r\n" + body_line + b"\r\n")


def eicar_mail(to=b"b@example.jp", subject=b"invoice", text=b"see attachment"):
    """A multipart message with the EICAR test file as a base64 attachment."""
    b64 = base64.encodebytes(EICAR).replace(b"\n", b"\r\n")
    return (b"From: a@example.com\r\nTo: " + to + b"\r\nSubject: " + subject + b"\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"BB\"\r\n\r\n"
            b"--BB\r\nContent-Type: text/plain\r\n\r\n" + text + b"\r\n"
            b"--BB\r\nContent-Type: application/octet-stream; name=\"inv.com\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; filename=\"inv.com\"\r\n\r\n"
            + b64 + b"--BB--\r\n")


def require_tool(name):
    path = shutil.which(name) or next(
        (p for p in ("/usr/sbin/" + name, "/usr/bin/" + name) if os.access(p, os.X_OK)), None)
    if path is None:
        pytest.fail("%s is not installed: run scripts/bootstrap" % name)
    return path


class Daemon:
    """A daemon process of the test's own, stopped with SIGTERM at teardown."""

    def __init__(self, name, argv, workdir, log_path):
        self.name = name
        self.workdir = workdir
        self.log_path = log_path
        self.log = open(log_path, "ab")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.started = t0
        self.startup_s = None

    def ready(self):
        self.startup_s = time.monotonic() - self.started

    def alive(self):
        return self.proc.poll() is None

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-6000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=t(15))
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        try:
            # Children (prefork workers) share the session; none may outlive the test.
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.log.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def wait_ready(daemon, probe, timeout, what):
    def ok():
        if not daemon.alive():
            raise AssertionError("%s exited (%s):\n%s" % (daemon.name, daemon.proc.returncode,
                                                          daemon.log_text()))
        try:
            return probe()
        except OSError:
            return False
    try:
        wait_for(ok, timeout, what, interval=0.1)
    except AssertionError:
        text = daemon.log_text()
        daemon.stop()
        raise AssertionError("%s did not become ready:\n%s" % (daemon.name, text))
    daemon.ready()


def exchange(family, addr, data, timeout=5):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(addr)
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return out
            out += chunk
    finally:
        s.close()


# ---- spamd ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def spamd():
    spamd_bin = require_tool("spamd")
    work = make_workdir("lz-spamd-")
    site = os.path.join(work, "site")
    home = os.path.join(work, "home")
    os.makedirs(site)
    os.makedirs(home)
    os.chmod(home, 0o777)
    # The plugin loaders (*.pre) come from the package; the site rules stay private.
    for name in os.listdir("/etc/spamassassin"):
        if name.endswith(".pre"):
            shutil.copy(os.path.join("/etc/spamassassin", name), site)
    with open(os.path.join(site, "local.cf"), "w") as f:
        f.write("use_bayes 0\nbayes_auto_learn 0\nskip_rbl_checks 1\n"
                "dns_available no\n")
    port = free_port()
    sock = os.path.join(work, "spamd.sock")
    argv = [spamd_bin, "--listen=127.0.0.1:%d" % port, "--listen=%s" % sock,
            "--allowed-ips=127.0.0.1", "--pidfile=%s" % os.path.join(work, "spamd.pid"),
            "-L", "--siteconfigpath=%s" % site, "-H", home, "--max-children=2",
            "--min-children=1", "--syslog=stderr"]
    if os.geteuid() == 0:
        argv += ["-u", "nobody"]
    d = Daemon("spamd", argv, work, os.path.join(work, "spamd.log"))
    d.addr = "127.0.0.1:%d" % port
    d.sock = sock
    wait_ready(d, lambda: exchange(socket.AF_INET, ("127.0.0.1", port),
                                   b"PING SPAMC/1.5\r\n\r\n").find(b"PONG") >= 0,
               30, "spamd PONG")
    yield d
    d.stop()


# ---- clamd ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clamd():
    clamd_bin = require_tool("clamd")
    work = make_workdir("lz-clamd-")
    db = os.path.join(work, "db")
    os.makedirs(db)
    with open(os.path.join(db, "lazaret-test.hdb"), "w") as f:
        f.write("%s:%d:%s\n" % (hashlib.md5(EICAR).hexdigest(), len(EICAR), EICAR_SIG))
    port = free_port()
    sock = os.path.join(work, "clamd.sock")
    conf = os.path.join(work, "clamd.conf")
    with open(conf, "w") as f:
        f.write("\n".join([
            "Foreground yes",
            "LogFile %s" % os.path.join(work, "clamd.log"),
            "PidFile %s" % os.path.join(work, "clamd.pid"),
            "TemporaryDirectory %s" % work,
            "DatabaseDirectory %s" % db,
            "LocalSocket %s" % sock,
            "TCPSocket %d" % port,
            "TCPAddr 127.0.0.1",
            "StreamMaxLength %d" % CLAMD_STREAM_MAX,
            "MaxThreads 4",
            "SelfCheck 3600",
            "",
        ]))
    argv = [clamd_bin, "-c", conf]
    d = Daemon("clamd", argv, work, os.path.join(work, "clamd.stderr"))
    d.addr = "127.0.0.1:%d" % port
    d.sock = sock
    wait_ready(d, lambda: exchange(socket.AF_INET, ("127.0.0.1", port),
                                   b"zPING\0").startswith(b"PONG"), 30, "clamd PONG")
    yield d
    d.stop()


# ---- rspamd ---------------------------------------------------------------------------

RSPAMD_CONF = """\
.include "$CONFDIR/common.conf"
options {
    pidfile = "$RUNDIR/rspamd.pid";
    filters = "chartable,regexp";
    cache_file = "$DBDIR/symbols.cache";
    url_tld = "$LOCAL_CONFDIR/tld.dat";
    hs_cache_dir = "$DBDIR/";
    history_file = "$DBDIR/rspamd.history";
    dynamic_conf = "$DBDIR/rspamd_dynamic";
    control_socket = "$DBDIR/rspamd.sock mode=0600";
    tempdir = "$DBDIR";
    task_timeout = 8s;
    dns {
        nameserver = ["127.0.0.1:53"];
        timeout = 0.1s;
        retransmits = 0;
    }
}
logging {
    type = "file";
    filename = "$LOGDIR/rspamd.log";
    level = "info";
}
worker "normal" {
    bind_socket = "%(sock)s mode=0666";
    .include "$CONFDIR/worker-normal.inc"
    count = 1;
}
"""


@pytest.fixture(scope="module")
def rspamd():
    rspamd_bin = require_tool("rspamd")
    unshare = require_tool("unshare")
    work = make_workdir("lz-rspamd-")
    db = os.path.join(work, "db")
    os.makedirs(db)
    sock = os.path.join(work, "rspamd.sock")
    with open(os.path.join(work, "tld.dat"), "w") as f:
        f.write("com\nnet\norg\njp\nco.jp\nne.jp\nexample\n")
    conf = os.path.join(work, "rspamd.conf")
    with open(conf, "w") as f:
        f.write(RSPAMD_CONF % {"sock": sock})
    # Root: a new network namespace; otherwise a user namespace that maps us to root.
    ns = [unshare, "-n"] if os.geteuid() == 0 else [unshare, "-rn"]
    probe = subprocess.run(ns + ["true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("rspamd needs a private network namespace (unshare -n) to stay off "
                    "the network, and this system refuses one: %s"
                    % probe.stderr.decode(errors="replace").strip())
    argv = ns + [rspamd_bin, "-f", "-i", "-c", conf,
                 "--var=CONFDIR=/etc/rspamd", "--var=LOCAL_CONFDIR=%s" % work,
                 "--var=DBDIR=%s" % db, "--var=RUNDIR=%s" % work, "--var=LOGDIR=%s" % work]
    if os.geteuid() == 0:
        argv[len(ns) + 1:len(ns) + 1] = ["-u", "root", "-g", "root"]
    d = Daemon("rspamd", argv, work, os.path.join(work, "rspamd.stderr"))
    d.sock = sock
    wait_ready(d, lambda: os.path.exists(sock) and b"pong" in exchange(
        socket.AF_UNIX, sock, b"GET /ping HTTP/1.0\r\n\r\n"), 30, "rspamd /ping")
    d.log_text = lambda: open(os.path.join(work, "rspamd.log"), "rb").read().decode(
        errors="replace")[-6000:] if os.path.exists(os.path.join(work, "rspamd.log")) else ""
    yield d
    d.stop()

"""The gateway's engine clients against the real daemons: SpamAssassin's spamd,
ClamAV's clamd and rspamd, each started once per module by the test itself, on
loopback, with a private configuration (never the system services), driven through
build/lazaret-scan.

- spamd runs with -L (local tests only: no DNS, no network rules) and a private
  site configuration; its rules are the ones Debian's spamassassin package ships.
- clamd reads a signature database the test writes: a hash signature of the EICAR
  test file, so no freshclam and no download.
- rspamd runs in a private network namespace (unshare -n): it resolves names at
  start (fuzzy servers, maps) through the system resolver, which must not be
  reached. It listens on a unix socket, which crosses the namespace boundary. A
  short public-suffix list keeps its start near one second.
"""

import base64
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import find_binary, make_workdir
from e2e_helpers import free_port, t, wait_for

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
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


def eicar_mail():
    b64 = base64.encodebytes(EICAR).replace(b"\n", b"\r\n")
    return (b"From: a@example.com\r\nTo: b@example.jp\r\nSubject: invoice\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"BB\"\r\n\r\n"
            b"--BB\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n"
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


def scan_binary():
    p = find_binary("lazaret-scan")
    if not os.access(p, os.X_OK):
        pytest.fail("lazaret-scan not built at %s" % p)
    return p


def scan(engine, message, *args, timeout=30):
    """Runs lazaret-scan on message bytes; returns (exit code, fields, stderr)."""
    proc = subprocess.run([scan_binary(), "-t", str(int(t(20) * 1000)), *args, engine, "-"],
                          input=message, capture_output=True, timeout=t(timeout))
    fields = {}
    for word in proc.stdout.decode().split():
        k, _, v = word.partition("=")
        fields[k] = v
    return proc.returncode, fields, proc.stderr.decode(errors="replace")


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


def test_spamd_gtube_over_tcp(spamd):
    rc, f, err = scan("spamd", spam_message(), "-a", spamd.addr)
    assert rc == 1, err + spamd.log_text()
    assert float(f["score"]) >= 1000.0
    assert "GTUBE" in f["rules"].split(",")
    assert f["spam"] == "yes"


def test_spamd_gtube_over_unix_socket(spamd):
    rc, f, err = scan("spamd", spam_message(), "-a", spamd.sock)
    assert rc == 1, err
    assert float(f["score"]) >= 1000.0
    assert "GTUBE" in f["rules"].split(",")


def test_spamd_ham_scores_low(spamd):
    rc, f, err = scan("spamd", HAM, "-a", spamd.addr)
    assert rc == 0, err
    assert float(f["score"]) < 5.0
    assert "GTUBE" not in f.get("rules", "")


def test_spamd_unreachable_is_an_error():
    rc, f, err = scan("spamd", HAM, "-a", "127.0.0.1:%d" % free_port(), timeout=10)
    assert rc == 2
    assert "score" not in f
    assert "Connection refused" in err


# ---- clamd ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clamd():
    clamd_bin = require_tool("clamd")
    work = make_workdir("lz-clamd-")
    db = os.path.join(work, "db")
    os.makedirs(db)
    import hashlib
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


def test_clamd_finds_eicar_over_tcp(clamd):
    rc, f, err = scan("clamd", EICAR, "-a", clamd.addr)
    assert rc == 1, err
    assert f["infected"] == "yes"
    assert f["virus"].startswith(EICAR_SIG)


def test_clamd_finds_eicar_attachment_over_unix_socket(clamd):
    rc, f, err = scan("clamd", eicar_mail(), "-a", clamd.sock)
    assert rc == 1, err
    assert f["infected"] == "yes"
    assert f["virus"].startswith(EICAR_SIG)


def test_clamd_clean_mail(clamd):
    rc, f, err = scan("clamd", HAM, "-a", clamd.addr)
    assert rc == 0, err
    assert f["infected"] == "no"
    assert "virus" not in f


def test_clamd_stream_limit_is_an_error_not_clean(clamd):
    # Larger than StreamMaxLength: clamd refuses; the client must not say clean.
    big = HAM + b"x" * (2 * CLAMD_STREAM_MAX)
    rc, f, err = scan("clamd", big, "-a", clamd.addr)
    assert rc == 2, (rc, f, err)
    assert "infected" not in f
    # Just under the limit still scans (chunking respects the limit).
    rc, f, err = scan("clamd", HAM + b"y" * (CLAMD_STREAM_MAX - len(HAM) - 16), "-a", clamd.addr)
    assert rc == 0, err
    assert f["infected"] == "no"


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


def test_rspamd_gtube(rspamd):
    rc, f, err = scan("rspamd", spam_message(), "-a", rspamd.sock, "-i", "192.0.2.1",
                      "-H", "mail.example.com", "-f", "sender@example.com",
                      "-R", "user@example.jp")
    assert rc == 1, err + rspamd.log_text()
    assert float(f["score"]) == 1000.0
    assert "GTUBE" in f["rules"].split(",")


def test_rspamd_ordinary_mail_has_a_score(rspamd):
    rc, f, err = scan("rspamd", HAM, "-a", rspamd.sock, "-s", "15", "-i", "192.0.2.1",
                      "-f", "taro@example.jp", "-R", "hanako@example.jp")
    assert rc == 0, err + rspamd.log_text()
    score = float(f["score"])
    assert -50 < score < 15
    assert "GTUBE" not in f.get("rules", "")
    assert f.get("rules")  # rspamd always names some symbols (e.g. MIME_GOOD)


# ---- builtin through the command line -------------------------------------------------

def test_builtin_shipped_rules_japanese_subject():
    rules = os.path.join(REPO, "etc", "lazaret-gw.rules")
    msg = (b"From: shop@example.com\r\nTo: user@example.jp\r\n"
           b"Subject: =?ISO-2022-JP?B?GyRCTCQ+NUJ6OS05cCIoJTshPCVrMys6RUNmGyhC?=\r\n\r\nhello\r\n")
    rc, f, err = scan("builtin", msg, "-r", rules)
    assert rc == 1, err
    assert "JP_UNSOLICITED_AD_MARK" in f["rules"].split(",")
    rc, f, err = scan("builtin", HAM, "-r", rules)
    assert rc == 0, err
    assert float(f["score"]) == 0.0
    rc, f, err = scan("builtin", spam_message())
    assert rc == 1 and float(f["score"]) == 1000.0 and f["rules"] == "GTUBE"


def test_builtin_bad_rules_file_names_the_line(tmp_path):
    p = tmp_path / "bad.rules"
    p.write_text("# ok\nbody =~ /x/ score 1\nheader Subject =~ /(/ score 1\n")
    rc, f, err = scan("builtin", HAM, "-r", str(p))
    assert rc == 64
    assert "%s:3: bad regular expression" % p in err

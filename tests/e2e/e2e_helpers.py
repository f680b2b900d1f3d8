"""Helpers shared by the end-to-end tests: timing, raw SMTP, message builders, sinks.

Everything here talks to real processes over loopback. Waits always have a deadline.
"""

import base64
import email.header
import email.message
import email.policy
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time

SANITIZED = os.environ.get("LAZARET_SANITIZED") == "1"
# Sanitizer builds run several times slower; every deadline scales with this.
TIME_FACTOR = 4.0 if SANITIZED else 1.0


def t(seconds):
    """A deadline in seconds, stretched for sanitizer builds."""
    return seconds * TIME_FACTOR


def wait_for(predicate, timeout, what="condition", interval=0.05):
    """Polls predicate until it returns a truthy value; returns it, or fails at the deadline."""
    deadline = time.monotonic() + t(timeout)
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s (last: %r)"
                                 % (t(timeout), what, last))
        time.sleep(interval)


def stays(predicate, duration, interval=0.1):
    """True when predicate stays truthy for the whole duration (for 'nothing happens' checks)."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        if not predicate():
            return False
        time.sleep(interval)
    return bool(predicate())


_ports_lock = threading.Lock()
_ports_given = set()
# Under pytest-xdist each worker hands out only ports p with (p >> 1) % workers == its
# number, so two workers never pick the same port between free_port and the bind
# (p >> 1: Linux gives bind(0) even ports, so p % 2 would not split them).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
_WORKER = int((os.environ.get("PYTEST_XDIST_WORKER") or "gw0")[2:] or 0)


def free_port(host="127.0.0.1"):
    """A TCP port nobody listens on right now, never handed out twice in this run
    (nor by another xdist worker of this run)."""
    with _ports_lock:
        for _ in range(200 * _WORKERS):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((host, 0))
                port = s.getsockname()[1]
            finally:
                s.close()
            if port not in _ports_given and (port >> 1) % _WORKERS == _WORKER:
                _ports_given.add(port)
                return port
    raise RuntimeError("no free port")


UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
STORED_RE = re.compile(r"^250 2\.0\.0 Ok: stored as (\S+)$")
RFC3339_RE = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def parse_rfc3339(s):
    """Unix seconds (float) of an RFC 3339 date-time."""
    import datetime
    m = RFC3339_RE.match(s)
    assert m, "not RFC 3339: %r" % (s,)
    txt = s.replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(txt).timestamp()


def rfc3339(ts):
    """RFC 3339 UTC text (seconds) of Unix seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


# ---------------------------------------------------------------------------
# Messages

def jis_header(text):
    """text as an RFC 2047 encoded word in ISO-2022-JP, as Japanese mail clients write it."""
    return email.header.Header(text, "iso-2022-jp").encode()


def make_message(subject="test", sender="sender@example.jp", to="user@corp.test",
                 body="Hello.\r\n", extra_headers=(), subject_raw=None, message_id=None):
    """A small RFC 5322 message as bytes with CRLF line ends.

    subject is encoded as ISO-2022-JP when it is not ASCII (subject_raw wins when given:
    the header value exactly as written). extra_headers: (name, value) pairs, put first.
    """
    if subject_raw is None:
        try:
            subject.encode("ascii")
            subject_raw = subject
        except UnicodeEncodeError:
            subject_raw = jis_header(subject)
    if message_id is None:
        message_id = "<%s@e2e.test>" % base64.b32encode(os.urandom(10)).decode().lower()
    lines = []
    for name, value in extra_headers:
        lines.append("%s: %s" % (name, value))
    lines += [
        "From: %s" % sender,
        "To: %s" % to,
        "Subject: %s" % subject_raw,
        "Date: Thu, 26 Nov 2026 10:00:00 +0900",
        "Message-ID: %s" % message_id,
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
    ]
    head = "\r\n".join(lines).encode("ascii") + b"\r\n\r\n"
    if isinstance(body, str):
        body = body.encode("utf-8")
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return head + body


def make_attachment_message(subject, attachments, sender="sender@example.jp",
                            to="user@corp.test"):
    """A multipart message; attachments: (filename, content_type, bytes).

    Non-ASCII file names are written the RFC 2231 way (filename*=UTF-8''...), as
    Python's email package does.
    """
    msg = email.message.EmailMessage(policy=email.policy.SMTP)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = "<%s@e2e.test>" % os.urandom(8).hex()
    msg.set_content("本文です。\n", charset="iso-2022-jp", cte="7bit")
    for filename, ctype, data in attachments:
        maintype, subtype = ctype.split("/", 1)
        try:
            filename.encode("ascii")
            fn = filename
        except UnicodeEncodeError:
            fn = ("utf-8", "", filename)
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=fn)
    raw = msg.as_bytes()
    assert b"\r\n" in raw
    return raw


# ---------------------------------------------------------------------------
# A raw SMTP client, for what smtplib will not do (bad input, pipelining, smuggling).

class SMTPClosed(Exception):
    pass


class RawSMTP:
    def __init__(self, port, host="127.0.0.1", source=None, timeout=10.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(t(timeout))
        if source is not None:
            self.sock.bind((source, 0))
        self.sock.connect((host, port))
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def _fill(self):
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise SMTPClosed("connection closed; unread: %r" % (self.buf,))
        self.buf += chunk

    def read_line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def reply(self):
        """One (possibly multi-line) reply: (code, [lines as text])."""
        lines = []
        while True:
            line = self.read_line()
            lines.append(line)
            assert re.match(r"^\d{3}[ -]", line) or re.match(r"^\d{3}$", line), \
                "not an SMTP reply line: %r" % (line,)
            if len(line) < 4 or line[3] == " ":
                return int(line[:3]), lines

    def reply_line(self):
        """A single-line reply as text (fails on multi-line)."""
        code, lines = self.reply()
        assert len(lines) == 1, lines
        return lines[0]

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply_line()

    def ehlo(self, name="client.e2e.test"):
        self.send("EHLO %s\r\n" % name)
        code, lines = self.reply()
        assert code == 250, lines
        return [l[4:] for l in lines]

    def greeting(self):
        return self.reply_line()

    def closed(self, timeout=5.0):
        """True when the server closes the connection (EOF or reset) within timeout."""
        self.sock.settimeout(t(timeout))
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def replies_until_close(self, timeout=5.0):
        """Every reply line the server sends until it closes."""
        out = []
        deadline = time.monotonic() + t(timeout)
        while time.monotonic() < deadline:
            try:
                out.append(self.read_line())
            except SMTPClosed:
                return out
            except socket.timeout:
                break
        raise AssertionError("connection not closed; got %r" % (out,))

    def starttls(self):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")


def raw_transaction(c, sender, rcpts, data):
    """MAIL/RCPT/DATA over a RawSMTP already greeted; data is sent as is (must end CRLF.CRLF).

    Returns the reply to the end of data.
    """
    assert c.cmd("MAIL FROM:<%s>" % sender) == "250 2.1.0 Ok"
    for r in rcpts:
        assert c.cmd("RCPT TO:<%s>" % r) == "250 2.1.5 Ok"
    assert c.cmd("DATA") == "354 End data with <CR><LF>.<CR><LF>"
    c.send(data)
    return c.reply_line()


def dot_stuff(msg):
    """msg (ending in CRLF) dot-stuffed and terminated, as sent after DATA."""
    out = re.sub(rb"(?m)^\.", b"..", msg)
    return out + b".\r\n"


# ---------------------------------------------------------------------------
# TLS material

def make_cert(directory, cn="localhost"):
    """A self-signed certificate and key made with the openssl CLI; returns (cert, key) paths."""
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-subj", "/CN=%s" % cn, "-days", "1", "-keyout", key, "-out", cert],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=60)
    return cert, key


# ---------------------------------------------------------------------------
# Daemon teardown checks: sanitizer reports and exits nobody asked for.

# What ASan, LSan and UBSan write when they find something. A report in a daemon's
# stderr fails the test even when every request of the test got its answer.
SANITIZER_RE = re.compile(
    r"^(?:==\d+==\s*)?ERROR: (?:AddressSanitizer|LeakSanitizer)\b.*$"
    r"|^AddressSanitizer:DEADLYSIGNAL$"
    r"|^\S+:\d+:\d+: runtime error: .*$"
    r"|^SUMMARY: (?:AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer)\b.*$",
    re.M)


def sanitizer_report(text, context=4000):
    """The excerpt of text from its first sanitizer report on, or None."""
    m = SANITIZER_RE.search(text)
    if m is None:
        return None
    start = text.rfind("\n", 0, max(m.start() - 200, 0)) + 1
    return text[start:start + context]


class Workers:
    """n threads, each calling self.step(i) over and over until the with-block ends;
    a subclass records what its steps saw under self.lock."""

    def __init__(self, n, join_timeout=60):
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.join_timeout = join_timeout
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(n)]

    def _run(self, i):
        while not self.stop.is_set():
            self.step(i)

    def step(self, i):
        raise NotImplementedError

    def __enter__(self):
        for th in self.threads:
            th.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for th in self.threads:
            th.join(timeout=t(self.join_timeout))


class DaemonExits:
    """Every process a daemon fixture started, and the exits a test asked for.

    At teardown a process still running is stopped with SIGTERM and must exit 0; a
    process that is gone must have exited 0, by SIGKILL, or with a status the test
    expected (exits.expect, Manager.wait_exit: an injected fault). Anything else
    (an abort, a sanitizer's exit, a crash after the test's last request) is a
    failure.
    """

    def __init__(self):
        self.procs = []       # Popen objects, oldest first
        self.expected = {}    # id(Popen) -> set of accepted return codes

    def add(self, proc):
        self.procs.append(proc)

    def expect(self, proc, *codes):
        self.expected.setdefault(id(proc), set()).update(codes)

    def problems(self, name):
        out = []
        for i, p in enumerate(self.procs):
            rc = p.poll()
            if rc is None:
                continue  # the fixture stops it and checks the status itself
            # SIGKILL comes only from a test (or the OOM killer), never from a
            # sanitizer or a crash: a test's own proc.kill() needs no bookkeeping.
            if rc in (0, -signal.SIGKILL) or rc in self.expected.get(id(p), ()):
                continue
            out.append("%s (pid %d, start #%d) exited with status %r that the test did not "
                       "expect" % (name, p.pid, i + 1, rc))
        return out

"""Shared pieces of the benchmarks (bench/*/run): the test message, the note on
the file system the servers write to, and the statistics over repeated runs.

The test message is what smtp-source -F sends to every peer: a MIME message like a
real one (Received and DKIM-Signature headers, a Japanese ISO-2022-JP Subject and
From, a text/plain part in ISO-2022-JP, a base64 PDF attachment of random bytes),
SIZE bytes on the wire, the same for a given seed on every machine. Random bytes
in base64 compress like real attachments (compressed PDF streams, JPEG, ZIP):
zstd gets about 1.3x out of them, where a body of repeated characters (smtp-source
-l) compresses a hundredfold and leaves the store almost nothing to write.

The PostgreSQL the benchmarks measure lazaretd's PostgreSQL store on is a
private PostgreSQL 15 cluster (BenchPostgres): initdb in a directory under the
benchmark's own work directory, a unix socket there only, the settings of
PG_SETTINGS (durable commits: fsync and synchronous_commit on), removed at the
end. The system's cluster is never used.

Run as a program it writes the message to a file and prints its size and zstd
ratio: bench/lib/benchlib.py [--size N] [--seed S] FILE
"""

import base64
import ctypes
import ctypes.util
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys

DEFAULT_SIZE = 10240
DEFAULT_SEED = 1
ZSTD_LEVEL = 3  # the store's level (STORE_ZSTD_LEVEL in src/store/store_sqlite.c)

# Sentences of an ordinary Japanese business mail; the text part is drawn from them.
JA_SENTENCES = [
    "いつもお世話になっております。",
    "株式会社サンプル商事、営業部の山田でございます。",
    "先日はお忙しいところ、打ち合わせのお時間をいただき誠にありがとうございました。",
    "ご依頼いただきました件につきまして、お見積書を添付にてお送りいたします。",
    "内容をご確認のうえ、ご不明な点がございましたらお気軽にお問い合わせください。",
    "納期につきましては、ご発注後およそ二週間を予定しております。",
    "なお、お支払い条件は月末締め翌月末払いとさせていただきます。",
    "来週の定例会議の資料も併せてお送りしますので、事前にお目通しください。",
    "システム更新に伴い、十二月十日の夜間にサービスを一時停止いたします。",
    "ご迷惑をおかけいたしますが、何卒ご理解のほどよろしくお願い申し上げます。",
    "添付ファイルのパスワードは別途お送りいたします。",
    "請求書の宛名に誤りがございましたので、訂正版をお送りいたします。",
    "年末年始の営業日につきまして、下記のとおりご案内申し上げます。",
    "引き続き、どうぞよろしくお願いいたします。",
    "ご査収のほど、よろしくお願い申し上げます。",
]
JA_NAMES = ["山田 太郎", "佐藤 花子", "鈴木 一郎", "高橋 美咲", "田中 健"]
JA_SUBJECTS = ["お見積書送付のご案内", "【重要】システム停止のお知らせ", "請求書（訂正版）の送付",
               "定例会議資料のご送付", "年末年始の営業日のご案内"]
JA_FILES = ["御見積書", "請求書", "会議資料", "発注書"]
WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def _random_bytes(seed, label, n):
    """n bytes that depend only on (seed, label): the same on every machine."""
    return hashlib.shake_256(("lazaret-bench:%d:%s" % (seed, label)).encode()).digest(n)


def _b64_lines(data, width=76):
    text = base64.b64encode(data).decode("ascii")
    return [text[i:i + width] for i in range(0, len(text), width)]


def _encoded_word(text):
    """An RFC 2047 encoded-word in ISO-2022-JP, as Japanese mail clients write them."""
    return "=?ISO-2022-JP?B?%s?=" % base64.b64encode(text.encode("iso2022_jp")).decode("ascii")


def _text_part(rng, budget):
    """Japanese text/plain lines (ISO-2022-JP, each line back in ASCII), about budget bytes."""
    lines, size = [], 0
    name = rng.choice(JA_NAMES)
    lines.append("%s様" % name.split()[0])
    lines.append("")
    while size < budget:
        s = rng.choice(JA_SENTENCES)
        # wrap at 30 characters, as mailers do for ISO-2022-JP
        for i in range(0, len(s), 30):
            line = s[i:i + 30]
            lines.append(line)
            size += len(line.encode("iso2022_jp")) + 2
        if rng.random() < 0.3:
            lines.append("")
            size += 2
    lines += ["", "-- ", "株式会社サンプル商事 営業部", "TEL: 03-1234-5678"]
    return [ln.encode("iso2022_jp").decode("ascii") for ln in lines]


def make_message(size=DEFAULT_SIZE, seed=DEFAULT_SEED):
    """The test message as a list of lines (ASCII, no line ends). Its size on the wire
    (CRLF after each line) is close to size: below it by less than one base64 line."""
    rng = random.Random(seed)
    hexid = _random_bytes(seed, "ids", 32).hex()
    day = 1 + rng.randrange(28)
    hh, mm, ss = rng.randrange(24), rng.randrange(60), rng.randrange(60)
    # 1 December 2026 is a Tuesday (WEEKDAYS[1])
    date = "%s, %d Dec 2026 %02d:%02d:%02d +0900" % (WEEKDAYS[day % 7], day, hh, mm, ss)
    sender_name = rng.choice(JA_NAMES)
    boundary = "----=_Part_%s" % hexid[:24]
    dkim_b = "".join(_b64_lines(_random_bytes(seed, "dkim", 256), 10000))
    dkim_bh = base64.b64encode(_random_bytes(seed, "bh", 32)).decode("ascii")
    headers = [
        "Received: from mail.sample-shoji.co.jp (mail.sample-shoji.co.jp [203.0.113.25])",
        "\tby mx.example.jp (Postfix) with ESMTPS id 4Q%s" % hexid[24:34].upper(),
        "\tfor <rcpt@example.jp>; %s" % date,
        "Received: from pc-yamada.sample-shoji.co.jp ([10.1.2.%d])" % (2 + rng.randrange(250)),
        "\tby mail.sample-shoji.co.jp with ESMTPSA id %s" % hexid[34:50],
        "\tfor <rcpt@example.jp>; %s" % date,
        "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=sample-shoji.co.jp;",
        "\ts=sel2026; t=17%08d; h=from:to:subject:date:message-id:mime-version;" %
        rng.randrange(10 ** 8),
        "\tbh=%s;" % dkim_bh,
    ]
    headers += ["\tb=" + dkim_b[:70]] + ["\t  " + dkim_b[i:i + 70] for i in range(70, len(dkim_b), 70)]
    headers += [
        "Date: %s" % date,
        "From: %s <sender@bench.example>" % _encoded_word(sender_name),
        "To: rcpt@example.jp",
        "Subject: %s" % _encoded_word(rng.choice(JA_SUBJECTS)),
        "Message-ID: <%s.%s@sample-shoji.co.jp>" % (hexid[:16], hexid[16:24]),
        "MIME-Version: 1.0",
        "Content-Type: multipart/mixed; boundary=\"%s\"" % boundary,
        "X-Mailer: Microsoft Outlook 16.0",
        "",
        "This is a multi-part message in MIME format.",
        "",
    ]
    text_budget = max(200, min(2000, size // 6))
    text = ["--" + boundary, "Content-Type: text/plain; charset=\"ISO-2022-JP\"",
            "Content-Transfer-Encoding: 7bit", ""] + _text_part(rng, text_budget) + [""]
    fname = _encoded_word("%s_%s.pdf" % (rng.choice(JA_FILES), hexid[:6]))
    att_head = ["--" + boundary,
                "Content-Type: application/pdf; name=\"%s\"" % fname,
                "Content-Disposition: attachment; filename=\"%s\"" % fname,
                "Content-Transfer-Encoding: base64", ""]
    tail = ["", "--" + boundary + "--"]
    fixed = sum(len(ln) + 2 for ln in headers + text + att_head + tail)
    room = size - fixed
    if room < 80:  # too small for an attachment: a text-only message
        lines = headers[:-3] + ["Content-Type: text/plain; charset=\"ISO-2022-JP\"",
                                "Content-Transfer-Encoding: 7bit", ""] + \
            _text_part(rng, max(100, size - sum(len(ln) + 2 for ln in headers)))
        return lines
    full, rest = divmod(room, 78)  # a base64 line: 76 characters + CRLF, 57 bytes
    nbytes = full * 57 + max(0, (rest - 2) // 4 * 3)
    # A PDF's header, then high-entropy streams: random bytes stand in for them.
    data = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + _random_bytes(seed, "attachment", max(0, nbytes - 15))
    return headers + text + att_head + _b64_lines(data) + tail


def wire_bytes(lines):
    """The message as the receiver sees it (CRLF line ends, no dot-stuffing)."""
    return "".join(ln + "\r\n" for ln in lines).encode("ascii")


def write_message(path, size=DEFAULT_SIZE, seed=DEFAULT_SEED):
    """Writes the message for smtp-source -F (LF line ends: smtp-source sends each
    line with CRLF, and one empty line more at the end, so the receiver counts 2
    bytes more); returns a dict describing it (size on the wire, zstd ratio)."""
    lines = make_message(size, seed)
    for ln in lines:
        if ln.startswith("."):
            raise ValueError("a line starting with a dot would be dot-stuffed")
    with open(path, "w", encoding="ascii", newline="\n") as f:
        for ln in lines:
            f.write(ln + "\n")
    wire = wire_bytes(lines)
    info = {"path": path, "size": len(wire), "seed": seed, "file_bytes": os.path.getsize(path)}
    compressed = zstd_size(wire, ZSTD_LEVEL)
    if compressed:
        info["zstd_level"] = ZSTD_LEVEL
        info["zstd_bytes"] = compressed
        info["zstd_ratio"] = round(len(wire) / compressed, 2)
    return info


_libzstd = None


def zstd_size(data, level=ZSTD_LEVEL):
    """Compressed size of data with zstd at level (libzstd, as the store uses it;
    else the zstd program); None when neither is there."""
    global _libzstd
    if _libzstd is None:
        name = ctypes.util.find_library("zstd") or "libzstd.so.1"
        try:
            lib = ctypes.CDLL(name)
            lib.ZSTD_compressBound.restype = ctypes.c_size_t
            lib.ZSTD_compressBound.argtypes = [ctypes.c_size_t]
            lib.ZSTD_compress.restype = ctypes.c_size_t
            lib.ZSTD_compress.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                                          ctypes.c_size_t, ctypes.c_int]
            lib.ZSTD_isError.restype = ctypes.c_uint
            lib.ZSTD_isError.argtypes = [ctypes.c_size_t]
            _libzstd = lib
        except OSError:
            _libzstd = False
    if _libzstd:
        bound = _libzstd.ZSTD_compressBound(len(data))
        dst = ctypes.create_string_buffer(bound)
        n = _libzstd.ZSTD_compress(dst, bound, data, len(data), level)
        if not _libzstd.ZSTD_isError(n):
            return n
    if shutil.which("zstd"):
        r = subprocess.run(["zstd", "-%d" % level, "-c", "-q"], input=data,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        if r.returncode == 0:
            return len(r.stdout)
    return None


# ---- the file system under BENCH_TMPDIR ----

def _unescape_mount(s):
    # /proc/mounts writes space, tab, newline and backslash as octal escapes
    out, i = "", 0
    while i < len(s):
        if s[i] == "\\" and i + 3 < len(s) and s[i + 1:i + 4].isdigit():
            out += chr(int(s[i + 1:i + 4], 8))
            i += 4
        else:
            out += s[i]
            i += 1
    return out


def fs_info(path):
    """What the servers' data is written to: the mount holding path (device, type,
    options from /proc/mounts), the statfs type name (stat -f), and whether the
    block device is rotational."""
    real = os.path.realpath(path)
    best = None
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 4:
                    continue
                dev, mnt, typ, opts = (_unescape_mount(p) for p in parts[:4])
                inside = real == mnt or real.startswith(mnt.rstrip("/") + "/")
                # the last of several mounts on one point is the visible one
                if inside and (best is None or len(mnt) >= len(best["mount"])):
                    best = {"device": dev, "mount": mnt, "type": typ, "options": opts}
    except OSError:
        pass
    info = {"path": real}
    if best:
        info.update(best)
    try:
        r = subprocess.run(["stat", "-f", "-c", "%T", real], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, timeout=10)
        info["statfs"] = r.stdout.decode().strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    dev = info.get("device", "")
    if dev.startswith("/dev/"):
        name = os.path.basename(os.path.realpath(dev))
        for cand in (name, name.rstrip("0123456789"), name.split("p")[0] if "nvme" in name else ""):
            try:
                with open("/sys/block/%s/queue/rotational" % cand) as f:
                    info["rotational"] = f.read().strip() == "1"
                break
            except OSError:
                continue
    return info


MEMORY_FS = ("tmpfs", "ramfs", "devtmpfs")


def is_memory_fs(info):
    return info.get("type") in MEMORY_FS or info.get("statfs") in MEMORY_FS


def fs_summary(info):
    s = "%s on %s (%s" % (info.get("path", "?"), info.get("device", "?"), info.get("type", "?"))
    if "rotational" in info:
        s += ", rotational=%d" % info["rotational"]
    return s + "; %s)" % info.get("options", "?")


def check_fs(prog, path):
    """The file system note for the results; refuses (returns None) a file system
    in memory, where fsync costs nothing, unless BENCH_ALLOW_TMPFS=1."""
    info = fs_info(path)
    if is_memory_fs(info):
        if os.environ.get("BENCH_ALLOW_TMPFS") != "1":
            print("%s: %s is on %s: fsync costs nothing there and the figures would mean "
                  "nothing. Set BENCH_TMPDIR to a directory on a disk (or BENCH_ALLOW_TMPFS=1 "
                  "to run anyway)." % (prog, path, info.get("type")), file=sys.stderr)
            return None
        print("%s: WARNING: %s is on %s; fsync costs nothing, the figures are not comparable "
              "to a disk" % (prog, path, info.get("type")), file=sys.stderr)
        info["warning"] = "memory file system: fsync costs nothing"
    return info


# ---- a private PostgreSQL cluster ----

PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")
# Every setting that differs from PostgreSQL 15's defaults, or that decides the
# durability of a commit (stated even where it is the default). Commits are
# durable as SQLite's (synchronous = FULL) and Postfix's (fsync'd queue file) are:
# COMMIT returns after the WAL is flushed to disk. shared_buffers is a modest
# production value for a shared 2-core machine; the rest are PostgreSQL's defaults.
PG_SETTINGS = (
    ("fsync", "on"),
    ("synchronous_commit", "on"),
    ("full_page_writes", "on"),
    ("wal_sync_method", "fdatasync"),
    ("shared_buffers", "256MB"),
    ("max_connections", "200"),
    ("max_wal_size", "1GB"),
    ("checkpoint_timeout", "5min"),
)


class PgError(Exception):
    pass


class BenchPostgres:
    """A PostgreSQL 15 cluster of the benchmark's own under workdir/pg: initdb (as
    the postgres user when run as root; PostgreSQL refuses root), listening on a unix
    socket in that directory only, trusting local connections, PG_SETTINGS. stop()
    stops it and removes the directory. Data and WAL are on the file system of
    workdir, as the other peers' data."""

    def __init__(self, workdir, name="pg", existing=False):
        """existing: workdir/name is a cluster an earlier run kept (BENCH_PG_DIR);
        start() starts it as it is, stop() keeps it."""
        self.dir = os.path.join(workdir, name)
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "server.log")
        self.started = False
        self.existing = existing
        self.as_pg = []
        for tool in ("initdb", "pg_ctl", "psql"):
            if not os.access(os.path.join(PG_BIN, tool), os.X_OK):
                raise PgError("no PostgreSQL 15 server in %s (apt-get install postgresql)" % PG_BIN)
        if existing and not os.path.isfile(os.path.join(self.data, "PG_VERSION")):
            raise PgError("%s holds no PostgreSQL cluster" % self.dir)
        os.makedirs(self.dir, exist_ok=existing)
        os.chmod(self.dir, 0o755)  # the socket is here; lazaretd runs as another user
        if os.geteuid() == 0:
            import pwd
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.as_pg = ["runuser", "-u", "postgres", "--"]

    def _run(self, argv, timeout=300):
        r = subprocess.run(self.as_pg + argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout)
        if r.returncode != 0:
            raise PgError("%s failed (status %d): %s" % (
                os.path.basename(argv[0]), r.returncode,
                " | ".join(r.stdout.decode(errors="replace").strip().splitlines()[-5:])))
        return r.stdout.decode(errors="replace")

    def start(self):
        if not self.existing:
            self._run([os.path.join(PG_BIN, "initdb"), "-D", self.data, "-U", "postgres", "-A",
                       "trust", "-E", "UTF8", "--locale=C.UTF-8"])
        elif os.path.exists(os.path.join(self.data, "postmaster.pid")):
            raise PgError("the cluster in %s is running: stop it first (pg_ctl -D %s stop), so "
                          "that it runs with PG_SETTINGS" % (self.dir, self.data))
        opts = "-c listen_addresses='' -k %s" % self.dir
        for k, v in PG_SETTINGS:
            opts += " -c %s=%s" % (k, v)
        try:
            self._run([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-l", self.log, "-w",
                       "-t", "60", "-o", opts, "start"])
        except PgError as e:
            raise PgError("%s; server log: %s" % (e, self.log_tail()))
        self.started = True

    def log_tail(self):
        try:
            with open(self.log, "rb") as f:
                return " | ".join(f.read().decode(errors="replace").strip().splitlines()[-5:])
        except OSError:
            return ""

    def dsn(self, dbname="postgres"):
        return "host=%s port=5432 user=postgres dbname=%s" % (self.dir, dbname)

    def psql(self, sql, dbname="postgres", timeout=600):
        """Runs sql; returns its output rows, each a list of fields."""
        r = subprocess.run([os.path.join(PG_BIN, "psql"), "-X", "-q", "-t", "-A", "-F", "\t",
                            "-v", "ON_ERROR_STOP=1", "-d", self.dsn(dbname), "-c", sql],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
        if r.returncode != 0:
            raise PgError("psql: %s: %s" % (sql[:80], r.stderr.decode(errors="replace").strip()))
        return [ln.split("\t") for ln in r.stdout.decode().splitlines() if ln]

    def create_db(self, name):
        self.psql("CREATE DATABASE %s" % name)
        return self.dsn(name)

    def drop_db(self, name):
        """Drops the database and checkpoints, so that the next run does not pay
        for this one's dirty pages."""
        self.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
        self.psql("CHECKPOINT")

    def settings(self):
        """The server's version and the values of PG_SETTINGS it runs with."""
        names = ",".join("'%s'" % k for k, _v in PG_SETTINGS)
        rows = self.psql("SELECT name, setting, coalesce(unit, '') FROM pg_settings "
                         "WHERE name IN (%s) ORDER BY name" % names)
        version = self.psql("SHOW server_version")[0][0]
        vals = {}
        for name, setting, unit in rows:
            if unit == "8kB":
                setting, unit = "%dMB" % (int(setting) * 8 // 1024), ""
            vals[name] = setting + unit
        return {"version": version, "settings": vals}

    def stop(self):
        # also a server that started although pg_ctl gave up waiting for it
        if self.started or os.path.exists(os.path.join(self.data, "postmaster.pid")):
            try:
                self._run([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-m", "fast", "-w",
                           "-t", "60", "stop"], timeout=120)
            except (PgError, subprocess.TimeoutExpired):
                subprocess.run(self.as_pg + [os.path.join(PG_BIN, "pg_ctl"), "-D", self.data,
                                             "-m", "immediate", "stop"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
            self.started = False
        if not self.existing:
            shutil.rmtree(self.dir, ignore_errors=True)


def pg_settings_line(info):
    """One line naming the PostgreSQL and its settings, for the results."""
    return "PostgreSQL %s (a private cluster; %s; unix socket)" % (
        info["version"], ", ".join("%s=%s" % kv for kv in sorted(info["settings"].items())))


# ---- repeated runs ----

def summary(values):
    """median, min, max of a list of numbers (None when empty)."""
    if not values:
        return None
    return {"median": round(statistics.median(values), 1), "min": round(min(values), 1),
            "max": round(max(values), 1), "n": len(values)}


def main(argv):
    size, seed, path = DEFAULT_SIZE, DEFAULT_SEED, None
    args = argv[1:]
    while args:
        if args[0] == "--size" and len(args) > 1:
            size, args = int(args[1]), args[2:]
        elif args[0] == "--seed" and len(args) > 1:
            seed, args = int(args[1]), args[2:]
        elif path is None and not args[0].startswith("-"):
            path, args = args[0], args[1:]
        else:
            path = None
            break
    if path is None:
        print("usage: bench/lib/benchlib.py [--size N] [--seed S] FILE", file=sys.stderr)
        return 2
    info = write_message(path, size, seed)
    print("%s: %d bytes on the wire, seed %d, zstd -%d ratio %s" % (
        path, info["size"], seed, ZSTD_LEVEL, info.get("zstd_ratio", "unknown")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

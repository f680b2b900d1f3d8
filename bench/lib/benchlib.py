"""Shared pieces of the benchmarks (bench/*/run): the test message, the note on
the file system the servers write to, and the statistics over repeated runs.

The test message is what smtp-source -F sends to every peer: a MIME message like a
real one (Received and DKIM-Signature headers, a Japanese ISO-2022-JP Subject and
From, a text/plain part in ISO-2022-JP, a base64 PDF attachment of random bytes),
SIZE bytes on the wire, the same for a given seed on every machine. Random bytes
in base64 compress like real attachments (compressed PDF streams, JPEG, ZIP):
zstd gets about 1.3x out of them, where a body of repeated characters (smtp-source
-l) compresses a hundredfold and leaves the store almost nothing to write.

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

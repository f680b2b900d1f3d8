#!/usr/bin/python3
"""Builds the Japanese header corpus for test_msgmeta and its expected values.

Each case below writes one .eml shaped like mail that Japanese senders really
produce (the encoded forms are assembled byte by byte here, including their
usual breakage), together with the text a Japanese reader should see. The
expected value is then read back from the written file with Python's own
`email` package (decode_header/make_header on the unfolded header,
policy.default for raw UTF-8, get_filename and RFC 2231 collapsing for file
names) and must match the intended text. Where Python's `email` cannot give the
right answer (raw 8-bit Shift_JIS/EUC-JP, the NEC extensions of CP50220, an
unknown charset label), the case says so in `python_differs` and the expected
value is the hand-written one.

Run:  /usr/bin/python3 tests/unit/data/ja/make_expected.py
It rewrites *.eml and expected.json in this folder and exits non-zero when
Python's reading and an intended value disagree without a stated reason.
"""

import base64
import email
import email.header
import email.policy
import json
import os
import sys
import urllib.parse
from email.header import decode_header, make_header
from email.utils import collapse_rfc2231_value

HERE = os.path.dirname(os.path.abspath(__file__))
CRLF = b"\r\n"


def bword(charset, data):
    return b"=?" + charset.encode() + b"?B?" + base64.b64encode(data) + b"?="


def qword(charset, data):
    out = []
    for c in data:
        if c == 0x20:
            out.append(b"_")
        elif 0x21 <= c <= 0x7E and c not in b"=?_":
            out.append(bytes([c]))
        else:
            out.append(b"=%02X" % c)
    return b"=?" + charset.encode() + b"?Q?" + b"".join(out) + b"?="


def jis(s):
    return s.encode("iso-2022-jp")


def jis_words(s, per_word):
    """ISO-2022-JP words the way Japanese mailers fold long subjects: each word
    holds whole characters and ends back in ASCII."""
    chunks = [s[i:i + per_word] for i in range(0, len(s), per_word)]
    return b"\r\n ".join(bword("ISO-2022-JP", jis(c)) for c in chunks)


def cp50220(s):
    """ISO-2022-JP as Windows writes it (CP50220): the NEC row 13 characters
    ride in ESC $ B like any other kanji. Built from the CP932 bytes."""
    out = bytearray()
    kanji = False
    for ch in s:
        b = ch.encode("cp932")
        if len(b) == 1:
            if kanji:
                out += b"\x1b(B"
                kanji = False
            out += b
            continue
        s1, s2 = b[0], b[1]
        # Shift_JIS -> JIS X 0208 row/cell
        adjust = s2 < 0x9F
        row = 0x70 if s1 < 0xA0 else 0xB0
        j1 = ((s1 - row) << 1) - (1 if adjust else 0)
        j2 = s2 - (0x1F if adjust else 0x7E)
        if adjust and s2 >= 0x80:
            j2 -= 1
        if not kanji:
            out += b"\x1b$B"
            kanji = True
        out += bytes([j1, j2])
    if kanji:
        out += b"\x1b(B"
    return bytes(out)


def b64body(data):
    enc = base64.b64encode(data)
    return CRLF.join(enc[i:i + 76] for i in range(0, len(enc), 76))


def headers(*lines):
    return CRLF.join(lines) + CRLF


def simple(subject, frm=b"sender@example.jp", to=b"user@example.co.jp", extra=b""):
    return (headers(b"From: " + frm, b"To: " + to, b"Subject: " + subject,
                    b"Date: Mon, 13 May 2024 09:30:00 +0900",
                    b"Message-ID: <case@example.jp>", b"MIME-Version: 1.0")
            + extra + b"Content-Type: text/plain; charset=ISO-2022-JP" + CRLF + CRLF
            + jis("本文です。") + CRLF)


def with_attachment(att_headers, payload, subject=b"attachment"):
    return (headers(b"From: sender@example.jp", b"To: user@example.co.jp",
                    b"Subject: " + subject, b"MIME-Version: 1.0",
                    b'Content-Type: multipart/mixed; boundary="----=_Part_01"')
            + CRLF + b"------=_Part_01" + CRLF
            + b"Content-Type: text/plain; charset=UTF-8" + CRLF + CRLF
            + "添付します。".encode() + CRLF
            + b"------=_Part_01" + CRLF + att_headers
            + b"Content-Transfer-Encoding: base64" + CRLF + CRLF
            + b64body(payload) + CRLF + b"------=_Part_01--" + CRLF)


PDF = b"%PDF-1.4\n" + bytes(range(256)) * 3 + b"%%EOF\n"
XLSX = b"PK\x03\x04" + b"\x00spreadsheet" * 40
ZIP = b"PK\x03\x04" + b"\x01\x02zipdata" * 25
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00IHDR" * 30

CASES = []


def case(name, data, subject=None, frm=None, to=None, attachments=None, python_differs=None):
    CASES.append(dict(name=name, data=data, subject=subject, frm=frm, to=to,
                      attachments=attachments or [], python_differs=python_differs))


# 1 ISO-2022-JP, B, display name in From
case("iso2022jp-b",
     simple(bword("ISO-2022-JP", jis("会議のお知らせ")),
            frm=bword("ISO-2022-JP", jis("山田 太郎")) + b" <taro@example.jp>"),
     subject="会議のお知らせ", frm="山田 太郎 <taro@example.jp>")

# 2 ISO-2022-JP, Q (escapes become =1B)
case("iso2022jp-q", simple(qword("ISO-2022-JP", jis("見積書の件について"))),
     subject="見積書の件について")

# 3 Shift_JIS, B
case("sjis-b", simple(bword("Shift_JIS", "【重要】パスワード変更のお願い".encode("shift_jis"))),
     subject="【重要】パスワード変更のお願い")

# 4 EUC-JP, B
case("eucjp-b", simple(bword("EUC-JP", "テスト送信です".encode("euc-jp")),
                       frm=bword("EUC-JP", "佐藤花子".encode("euc-jp")) + b" <hanako@example.jp>"),
     subject="テスト送信です", frm="佐藤花子 <hanako@example.jp>")

# 5 UTF-8, B, with a character outside the BMP
case("utf8-b", simple(bword("UTF-8", "ご注文ありがとうございます🎉".encode())),
     subject="ご注文ありがとうございます🎉")

# 6 UTF-8, Q
case("utf8-q", simple(qword("utf-8", "お問い合わせ (No. 123)".encode())),
     subject="お問い合わせ (No. 123)")

# 7 ASCII and encoded words mixed
case("mixed-ascii",
     simple(b"Re: [info:0042] " + bword("ISO-2022-JP", jis("請求書")) + b" (2024/05)"),
     subject="Re: [info:0042] 請求書 (2024/05)")

# 8 a long subject folded over several ISO-2022-JP words
LONG = "【株式会社サンプル】二〇二四年度 第一四半期 決算説明会のご案内と出欠確認のお願い"
case("folded-long", simple(jis_words(LONG, 9)), subject=LONG)

# 9 UTF-8 split in the middle of a character across two words
u = "文字化けしない件名".encode()
case("split-utf8", simple(bword("UTF-8", u[:7]) + b"\r\n " + bword("UTF-8", u[7:])),
     subject="文字化けしない件名")

# 10 Shift_JIS split in the middle of a character across two words
s = "送付状のご確認".encode("shift_jis")
case("split-sjis", simple(bword("SHIFT_JIS", s[:5]) + b" " + bword("SHIFT_JIS", s[5:])),
     subject="送付状のご確認")

# 11 raw 8-bit UTF-8 (no encoded words)
case("raw-utf8", simple("生のUTF-8件名".encode(),
                        frm="鈴木 一郎 <ichiro@example.jp>".encode()),
     subject="生のUTF-8件名", frm="鈴木 一郎 <ichiro@example.jp>")

# 12 raw 8-bit Shift_JIS
case("raw-sjis", simple("シフトJISの生ヘッダ".encode("shift_jis"),
                        frm="高橋 <takahashi@example.jp>".encode("shift_jis")),
     subject="シフトJISの生ヘッダ", frm="高橋 <takahashi@example.jp>",
     python_differs="Python's email has no charset guessing for raw 8-bit headers; "
                    "it yields surrogates/U+FFFD. Expected value written by hand.")

# 13 raw 8-bit EUC-JP, mostly hiragana (valid-looking half-width kana if misread as SJIS)
case("raw-eucjp", simple("おしらせ です".encode("euc-jp")),
     subject="おしらせ です",
     python_differs="Python's email cannot decode raw 8-bit EUC-JP headers. "
                    "Expected value written by hand.")

# 14 RFC 2231 file name in ISO-2022-JP
fn = "見積書.pdf"
case("rfc2231-iso2022jp",
     with_attachment(b"Content-Type: application/pdf" + CRLF
                     + b"Content-Disposition: attachment;" + CRLF + b" filename*=iso-2022-jp''"
                     + urllib.parse.quote_from_bytes(jis(fn)).encode() + CRLF, PDF),
     attachments=[dict(filename=fn, content_type="application/pdf", size=len(PDF))])

# 15 RFC 2231 continuations in UTF-8, mixing extended and plain sections
fn = "2024年度_営業報告書_最終版.xlsx"
enc = urllib.parse.quote_from_bytes(fn.encode()).encode()
cut1, cut2 = enc.index(b"%", 40), enc.index(b"%", 85)  # sections end between triplets
case("rfc2231-utf8-continuations",
     with_attachment(b"Content-Type: application/vnd.openxmlformats-officedocument."
                     b"spreadsheetml.sheet" + CRLF
                     + b"Content-Disposition: attachment;" + CRLF
                     + b" filename*0*=UTF-8''" + enc[:cut1] + b";" + CRLF
                     + b" filename*1*=" + enc[cut1:cut2] + b";" + CRLF
                     + b" filename*2*=" + enc[cut2:] + CRLF, XLSX),
     attachments=[dict(filename=fn, content_type="application/vnd.openxmlformats-"
                       "officedocument.spreadsheetml.sheet", size=len(XLSX))])

# 16 Outlook style: RFC 2047 words inside quoted name= and filename=, folded
fn = "契約書ドラフト（修正版）第二稿.docx"
w = jis_words(fn, 8)
case("rfc2047-filename-outlook",
     with_attachment(b"Content-Type: application/vnd.openxmlformats-officedocument."
                     b"wordprocessingml.document;" + CRLF + b' name="' + w + b'"' + CRLF
                     + b"Content-Disposition: attachment;" + CRLF + b' filename="' + w + b'"'
                     + CRLF, ZIP),
     attachments=[dict(filename=fn, content_type="application/vnd.openxmlformats-"
                       "officedocument.wordprocessingml.document", size=len(ZIP))])

# 17 RFC 2047 UTF-8 name= only (no Content-Disposition): non-text leaf with a name
fn = "請求書_5月分.pdf"
case("rfc2047-name-only",
     with_attachment(b'Content-Type: application/pdf; name="' + bword("UTF-8", fn.encode())
                     + b'"' + CRLF, PDF),
     attachments=[dict(filename=fn, content_type="application/pdf", size=len(PDF))])

# 18 nested multipart/mixed > multipart/alternative + attachments
fn_pdf, fn_png = "資料.pdf", "図1.png"
nested = (headers(b"From: " + bword("UTF-8", "営業部 田中".encode()) + b" <tanaka@example.jp>",
                  b"To: user@example.co.jp", b"Subject: " + bword("UTF-8", "資料送付".encode()),
                  b"MIME-Version: 1.0", b'Content-Type: multipart/mixed; boundary="outer"')
          + CRLF + b"--outer" + CRLF
          + b'Content-Type: multipart/alternative; boundary="inner"' + CRLF + CRLF
          + b"--inner" + CRLF + b"Content-Type: text/plain; charset=UTF-8" + CRLF + CRLF
          + "本文".encode() + CRLF + b"--inner" + CRLF
          + b"Content-Type: text/html; charset=UTF-8" + CRLF + CRLF
          + "<p>本文</p>".encode() + CRLF + b"--inner--" + CRLF
          + b"--outer" + CRLF + b"Content-Type: application/pdf" + CRLF
          + b"Content-Disposition: attachment; filename=\"" + bword("UTF-8", fn_pdf.encode())
          + b"\"" + CRLF + b"Content-Transfer-Encoding: base64" + CRLF + CRLF + b64body(PDF)
          + CRLF + b"--outer" + CRLF + b"Content-Type: image/png" + CRLF
          + b"Content-Disposition: inline; filename*=UTF-8''"
          + urllib.parse.quote_from_bytes(fn_png.encode()).encode() + CRLF
          + b"Content-ID: <fig1@example.jp>" + CRLF
          + b"Content-Transfer-Encoding: base64" + CRLF + CRLF + b64body(PNG) + CRLF
          + b"--outer--" + CRLF)
case("nested-multipart", nested, subject="資料送付", frm="営業部 田中 <tanaka@example.jp>",
     attachments=[dict(filename=fn_pdf, content_type="application/pdf", size=len(PDF)),
                  dict(filename=fn_png, content_type="image/png", size=len(PNG))])

# 19 forwarded message/rfc822 that carries an attachment of its own
fn = "設計図.zip"
inner = (headers(b"From: " + bword("ISO-2022-JP", jis("伊藤")) + b" <ito@example.jp>",
                 b"To: sender@example.jp", b"Subject: " + bword("ISO-2022-JP", jis("元のメール")),
                 b"MIME-Version: 1.0", b'Content-Type: multipart/mixed; boundary="fwd-in"')
         + CRLF + b"--fwd-in" + CRLF + b"Content-Type: text/plain; charset=ISO-2022-JP" + CRLF
         + CRLF + jis("元の本文") + CRLF + b"--fwd-in" + CRLF
         + b"Content-Type: application/zip; name=\"" + bword("ISO-2022-JP", jis(fn)) + b"\""
         + CRLF + b"Content-Transfer-Encoding: base64" + CRLF + CRLF + b64body(ZIP) + CRLF
         + b"--fwd-in--" + CRLF)
fwd = (headers(b"From: sender@example.jp", b"To: user@example.co.jp",
               b"Subject: " + bword("ISO-2022-JP", jis("転送：元のメール")), b"MIME-Version: 1.0",
               b'Content-Type: multipart/mixed; boundary="fwd-out"')
       + CRLF + b"--fwd-out" + CRLF + b"Content-Type: text/plain; charset=ISO-2022-JP" + CRLF
       + CRLF + jis("転送します") + CRLF + b"--fwd-out" + CRLF
       + b"Content-Type: message/rfc822" + CRLF + b"Content-Disposition: inline" + CRLF + CRLF
       + inner + CRLF + b"--fwd-out--" + CRLF)
case("forwarded-rfc822", fwd, subject="転送：元のメール",
     attachments=[dict(filename=fn, content_type="application/zip", size=len(ZIP))])

# 20 Japanese display names: several recipients, quoted encoded word (common breakage), Cc
case("display-names",
     simple(b"=?UTF-8?B?" + base64.b64encode("打ち合わせ".encode()) + b"?=",
            frm=b'"' + bword("UTF-8", "株式会社サンプル 総務部".encode()) + b'" <soumu@example.jp>',
            to=bword("ISO-2022-JP", jis("中村様")) + b" <nakamura@example.co.jp>," + CRLF + b" "
            + bword("ISO-2022-JP", jis("小林様")) + b" <kobayashi@example.co.jp>"),
     subject="打ち合わせ", frm='"株式会社サンプル 総務部" <soumu@example.jp>',
     to="中村様 <nakamura@example.co.jp>, 小林様 <kobayashi@example.co.jp>",
     python_differs="make_header puts spaces between the quote marks and the decoded "
                    "word inside them; the decoded text keeps the sender's quotes as they "
                    "stand. Expected value written by hand.")

# 21 ISO-2022-JP label on CP50220 text (NEC row 13: ①, ㈱)
case("cp50220-nec", simple(bword("ISO-2022-JP", cp50220("①ご案内 ㈱サンプル"))),
     subject="①ご案内 ㈱サンプル",
     python_differs="Python's iso-2022-jp codec rejects the NEC row 13 characters that "
                    "Windows puts in ISO-2022-JP (CP50220). Expected value written by hand.")

# 22 lower-case charset and encoding letters
case("lowercase-charset", simple(b"=?iso-2022-jp?b?" + base64.b64encode(jis("小文字の指定")) + b"?="),
     subject="小文字の指定")

# 23 no whitespace between an encoded word and the text around it
case("no-space",
     simple(b"[spam]" + bword("UTF-8", "未承諾広告".encode()) + "※ご確認ください".encode()),
     subject="[spam]未承諾広告※ご確認ください")

# 24 unknown charset label on UTF-8 bytes
case("unknown-charset", simple(bword("x-unknown-jp", "不明な文字コード".encode())),
     subject="不明な文字コード",
     python_differs="Python's make_header raises LookupError for an unknown charset; the "
                    "bytes are UTF-8, which is what a reader would see. Written by hand.")

# 25 raw 8-bit Shift_JIS file name in quotes (old Japanese mailers)
fn = "見積り.xls"
case("raw-sjis-filename",
     with_attachment(b"Content-Type: application/vnd.ms-excel; name=\"" + fn.encode("shift_jis")
                     + b"\"" + CRLF + b"Content-Disposition: attachment; filename=\""
                     + fn.encode("shift_jis") + b"\"" + CRLF, XLSX),
     attachments=[dict(filename=fn, content_type="application/vnd.ms-excel", size=len(XLSX))],
     python_differs="Python's email leaves raw Shift_JIS file names undecoded. Written by hand.")

# 26 LF line ends, EUC-JP Q subject, UTF-8 B From
case("lf-eucjp-q",
     simple(qword("euc-jp", "【定期】週報 第12号".encode("euc-jp")),
            frm=bword("utf-8", "渡辺".encode()) + b" <watanabe@example.jp>").replace(CRLF, b"\n"),
     subject="【定期】週報 第12号", frm="渡辺 <watanabe@example.jp>")


def unfold(v):
    return v.replace("\r\n", "").replace("\n", "")


def py_text(msg, name):
    raw = msg.get(name)
    if raw is None:
        return None
    return str(make_header(decode_header(unfold(str(raw)))))


def py_filename(part):
    fn = part.get_param("filename", header="content-disposition")
    if fn is None:
        fn = part.get_param("name")
    if fn is None:
        return None
    fn = collapse_rfc2231_value(fn)
    return str(make_header(decode_header(unfold(fn))))


def py_attachments(msg):
    out = []
    for part in msg.walk():
        if part.is_multipart() and part.get_content_type() != "message/rfc822":
            continue
        disp = str(part.get("Content-Disposition") or "").split(";")[0].strip().lower()
        fn = py_filename(part)
        has_disp_fn = part.get_param("filename", header="content-disposition") is not None
        is_text = part.get_content_maintype() == "text"
        if disp == "attachment" or has_disp_fn or (fn is not None and not is_text):
            payload = part.get_payload(decode=True)
            out.append(dict(filename=fn, content_type=part.get_content_type(),
                            size=len(payload) if payload is not None else -1))
    return out


def main():
    for f in os.listdir(HERE):
        if f.endswith(".eml"):
            os.unlink(os.path.join(HERE, f))
    expected = []
    bad = 0
    for i, c in enumerate(CASES, 1):
        fname = "%02d-%s.eml" % (i, c["name"])
        with open(os.path.join(HERE, fname), "wb") as fh:
            fh.write(c["data"])
        with open(os.path.join(HERE, fname), "rb") as fh:
            raw = fh.read()
        msg = email.message_from_bytes(raw)  # compat32: raw header text kept
        modern = email.message_from_bytes(raw, policy=email.policy.default)
        got = {}
        for key, hdr in (("subject", "Subject"), ("from", "From"), ("to", "To")):
            try:
                got[key] = py_text(msg, hdr)
                if isinstance(msg.get(hdr), email.header.Header):
                    # raw 8-bit: policy.default decodes UTF-8 bytes
                    got[key] = unfold(str(modern[hdr]))
            except (LookupError, UnicodeError) as e:
                got[key] = "<python: %s>" % type(e).__name__
        try:
            got["attachments"] = py_attachments(msg)
        except (LookupError, UnicodeError, AttributeError, TypeError) as e:
            got["attachments"] = "<python: %s>" % type(e).__name__
        want = {"subject": c["subject"], "from": c["frm"], "to": c["to"],
                "attachments": c["attachments"]}
        entry = {"file": fname}
        for key in ("subject", "from", "to", "attachments"):
            if want[key] is None or want[key] == []:
                if key == "attachments":
                    entry[key] = got[key] if isinstance(got[key], list) else []
                    if entry[key]:
                        print("%s: unexpected attachments %r" % (fname, got[key]))
                        bad += 1
                else:
                    entry[key] = got[key]
                continue
            entry[key] = want[key]
            if got[key] != want[key]:
                if c["python_differs"]:
                    print("%s: %s: python gives %r; hand-written %r" % (fname, key, got[key],
                                                                        want[key]))
                else:
                    print("%s: %s: python gives %r, intended %r" % (fname, key, got[key],
                                                                    want[key]))
                    bad += 1
        if c["python_differs"]:
            entry["python_differs"] = c["python_differs"]
        expected.append(entry)
    with open(os.path.join(HERE, "expected.json"), "w", encoding="utf-8") as fh:
        json.dump({"cases": expected}, fh, ensure_ascii=False, indent=1)
        fh.write("\n")
    print("%d cases, %d disagreements" % (len(CASES), bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

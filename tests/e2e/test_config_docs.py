"""The configuration references against the key tables the daemons really read.

The keys come from the confparse tables in src/manager/manager_config.c (lazaretd)
and src/gateway/gw_config.c (lazaret-gw): every `{.section = ..., .name = ...}`
entry with its type, default and flags, plus the SMTP listener and HTTP rows both
share (src/smtp/smtp_listener_keys.c, src/http/http_config_keys.c) under the
section and with the defaults each daemon's `struct smtp_listener_keys` and
`struct http_config_keys` give. Then:

- docs/CONFIG.md has a row for every lazaretd key under its `## [section]`
  heading, with a type that fits the parser's and the parser's default; and no
  row for a key the parser does not know;
- docs/GATEWAY.md's reference table has every lazaret-gw key with its section and
  default, and no key the parser does not know;
- etc/lazaretd.conf.example names every key in its section, and
  `lazaretd --check-config` accepts it as shipped.
"""

import os
import re
import subprocess

import pytest

from conftest import lazaretd_path

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def read(rel):
    with open(os.path.join(REPO, rel), encoding="utf-8") as f:
        return f.read()


ENTRY_RE = re.compile(r"\{\s*\.section\s*=\s*\"([^\"]+)\"\s*,(.*?)\}", re.S)


def field(body, name):
    m = re.search(r"\.%s\s*=\s*\"((?:[^\"\\]|\\.)*)\"" % name, body)
    return m.group(1) if m else None


# The rows both daemons share, each table with the struct that places it in a daemon.
SHARED_TABLES = [
    # (source of the rows, enum prefix, struct type, at least this many rows)
    ("src/smtp/smtp_listener_keys.c", "SMTP_LISTENER", "smtp_listener_keys", 10),
    ("src/http/http_config_keys.c", "HTTP_CONFIG", "http_config_keys", 6),
]


def shared_keys(text, src, prefix, struct):
    """The shared rows of src under the section (and defaults) a daemon's file names."""
    spec_re = re.compile(r"(?:static )?const struct %s \w+ = \{(.*?)\n\};" % struct, re.S)
    m = spec_re.search(text)
    if m is None:
        return []
    spec = m.group(1)
    own = dict(re.findall(r"\[%s_(\w+)\]\s*=\s*\"((?:[^\"\\]|\\.)*)\"" % prefix, spec))
    keys = []
    row_re = re.compile(r"\[%s_(\w+)\]\s*=\s*\{(\s*\.name.*?)\}" % prefix, re.S)
    for key, body in row_re.findall(read(src)):
        typ = re.search(r"\.type\s*=\s*CONFPARSE_(\w+)", body)
        keys.append({
            "section": field(spec, "section"),
            "name": field(body, "name"),
            "type": typ.group(1) if typ else None,
            "default": own.get(key, field(body, "default_text")),
            "choices": field(body, "choices"),
            "required": "CONFPARSE_REQUIRED" in body,
        })
    return keys


def listener_keys(text):
    """The shared listener and HTTP rows under the sections a daemon's file names."""
    keys = []
    for src, prefix, struct, least in SHARED_TABLES:
        found = shared_keys(text, src, prefix, struct)
        assert len(found) >= least, (src, found)
        keys += found
    return keys


def key_table(rel):
    """[(section, name, type, default or None, choices or None, required)] in file order."""
    keys = []
    for m in ENTRY_RE.finditer(read(rel)):
        body = m.group(2)
        typ = re.search(r"\.type\s*=\s*CONFPARSE_(\w+)", body)
        keys.append({
            "section": m.group(1),
            "name": field(body, "name"),
            "type": typ.group(1) if typ else None,
            "default": field(body, "default_text"),
            "choices": field(body, "choices"),
            "required": "CONFPARSE_REQUIRED" in body,
        })
    keys += listener_keys(read(rel))
    assert all(k["name"] and k["type"] for k in keys), keys
    return keys


def cells(line):
    """The cells of a Markdown table row; `\\|` inside a cell is not a border."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def ticked(text):
    return re.findall(r"`([^`]*)`", text)


# ---- lazaretd: docs/CONFIG.md ----

def config_md_rows():
    """{(section, key): (type cell, default cell)} of the tables under `## [section]`."""
    rows = {}
    section = None
    for line in read("docs/CONFIG.md").splitlines():
        h = re.match(r"^## \[([A-Za-z0-9_.-]+)\]\s*$", line)
        if h:
            section = h.group(1)
            continue
        if line.startswith("## "):
            section = None
            continue
        if section is None or not line.startswith("| `"):
            continue
        c = cells(line)
        (key,) = ticked(c[0])
        assert (section, key) not in rows, "documented twice: [%s] %s" % (section, key)
        rows[(section, key)] = (c[1], c[2])
    return rows


# Words the type column must contain for each parser type (STRING: free text such
# as "string", "address", "URL": whatever says more).
TYPE_WORDS = {
    "HOSTNAME": ["name"],
    "PATH": ["path"],
    "HOSTPORT": ["host:port"],
    "SIZE": ["size"],
    "DURATION": ["duration"],
    "UINT": ["count"],
    "ACL": ["CIDR list"],
    "ADDRESS": ["address"],
    "BOOL": ["boolean"],
    "DOUBLE": ["number"],
}


def test_manager_key_table_is_found():
    keys = key_table("src/manager/manager_config.c")
    names = {(k["section"], k["name"]) for k in keys}
    # One per section the contract pins, so a broken regex cannot pass quietly.
    for k in [("manager", "data_dir"), ("http", "admin_token"), ("spam_quarantine", "listen"),
              ("release", "primary_host"), ("auth_ldap", "uri"), ("auth_imap", "host"),
              ("notifications", "schedule")]:
        assert k in names, k
    assert len(keys) >= 60


def test_config_md_documents_every_lazaretd_key():
    rows = config_md_rows()
    missing = ["[%s] %s" % (k["section"], k["name"])
               for k in key_table("src/manager/manager_config.c")
               if (k["section"], k["name"]) not in rows]
    assert not missing, "keys missing from docs/CONFIG.md: %s" % missing


def test_config_md_documents_no_unknown_key():
    known = {(k["section"], k["name"]) for k in key_table("src/manager/manager_config.c")}
    stale = ["[%s] %s" % r for r in config_md_rows() if r not in known]
    assert not stale, "docs/CONFIG.md documents keys lazaretd refuses: %s" % stale


def test_config_md_types_and_defaults_match_the_parser():
    rows = config_md_rows()
    wrong = []
    for k in key_table("src/manager/manager_config.c"):
        row = rows.get((k["section"], k["name"]))
        if row is None:
            continue  # reported by the test above
        type_cell, default_cell = row
        where = "[%s] %s" % (k["section"], k["name"])
        if k["type"] == "CHOICE":
            for choice in k["choices"].split("|"):
                if "`%s`" % choice not in type_cell:
                    wrong.append("%s: type column lacks `%s`" % (where, choice))
        for word in TYPE_WORDS.get(k["type"], []):
            if word not in type_cell:
                wrong.append("%s: type column %r lacks %r" % (where, type_cell, word))
        if k["required"]:
            if "required" not in default_cell:
                wrong.append("%s: default column does not say required" % where)
        elif k["default"] is not None and k["default"] not in ticked(default_cell):
            wrong.append("%s: default column %r lacks `%s`" % (where, default_cell, k["default"]))
    assert not wrong, "\n".join(wrong)


# ---- lazaret-gw: docs/GATEWAY.md ----

def gateway_md_rows():
    """{(section, key): default cell} of the table under "## Configuration reference"."""
    rows = {}
    text = read("docs/GATEWAY.md")
    start = text.index("## Configuration reference")
    end = start + 1 + re.search(r"\n###? ", text[start + 1:]).start()
    for line in text[start:end].splitlines():
        if not line.startswith("| ") or line.startswith("| section") or line.startswith("|---"):
            continue
        c = cells(line)
        names = ticked(c[1])
        defaults = ticked(c[2])
        for i, name in enumerate(names):
            # "`a`, `b` | `1`, `2`": defaults in the order of the keys.
            d = [defaults[i]] if len(defaults) == len(names) else defaults
            rows[(c[0], name)] = (d, c[2])
    return rows


def test_gateway_key_table_is_found():
    names = {(k["section"], k["name"]) for k in key_table("src/gateway/gw_config.c")}
    for k in [("gateway", "name"), ("listener", "listen"), ("rat", "accept"),
              ("external_spam_quarantine", "sync_interval"), ("http", "admin_token")]:
        assert k in names, k


def test_gateway_md_documents_every_gateway_key():
    rows = gateway_md_rows()
    missing = ["[%s] %s" % (k["section"], k["name"]) for k in key_table("src/gateway/gw_config.c")
               if (k["section"], k["name"]) not in rows]
    assert not missing, "keys missing from docs/GATEWAY.md: %s" % missing


def test_gateway_md_documents_no_unknown_key_and_right_defaults():
    keys = {(k["section"], k["name"]): k for k in key_table("src/gateway/gw_config.c")}
    wrong = []
    for (section, name), (defaults, cell) in gateway_md_rows().items():
        if (section, name) == ("hat", "policy.NAME"):
            continue  # a family of keys, read by gw_config_extra
        k = keys.get((section, name))
        if k is None:
            wrong.append("[%s] %s is documented but lazaret-gw refuses it" % (section, name))
        elif k["required"]:
            if "required" not in cell:
                wrong.append("[%s] %s: default column does not say required" % (section, name))
        elif k["default"] is not None and k["default"] not in defaults:
            wrong.append("[%s] %s: default column %r lacks `%s`" % (section, name, cell,
                                                                   k["default"]))
    assert not wrong, "\n".join(wrong)


# ---- etc/lazaretd.conf.example ----

def example_keys():
    """(section, key) of every `key =` line, and of `; key =` lines (a key shown commented out)."""
    found = set()
    section = None
    for line in read("etc/lazaretd.conf.example").splitlines():
        h = re.match(r"^\s*\[([^\]]+)\]", line)
        if h:
            section = h.group(1)
            continue
        m = re.match(r"^\s*[;#]?\s*([A-Za-z0-9_.-]+)\s*=", line)
        if m and section is not None:
            found.add((section, m.group(1)))
    return found


def test_example_config_names_every_key():
    found = example_keys()
    missing = ["[%s] %s" % (k["section"], k["name"])
               for k in key_table("src/manager/manager_config.c")
               if (k["section"], k["name"]) not in found]
    assert not missing, "keys missing from etc/lazaretd.conf.example: %s" % missing


def test_example_config_passes_check_config():
    binary = lazaretd_path()
    if not os.access(binary, os.X_OK):
        pytest.fail("no lazaretd at %s (set LAZARET_BUILD)" % binary)
    r = subprocess.run([binary, "-c", os.path.join(REPO, "etc", "lazaretd.conf.example"),
                        "--check-config"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr

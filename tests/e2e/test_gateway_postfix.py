"""lazaret-gw as a Postfix content filter, proved with a private Postfix instance.

  smtplib -> Postfix smtpd (content_filter = lazaret:[127.0.0.1]:GW)
          -> lazaret-gw -> Postfix re-injection smtpd (127.0.0.1:REINJECT, no filter)
          -> Postfix smtp client -> aiosmtpd sink (relayhost)

The instance is configured entirely under a temporary folder and started with
`postfix -c DIR start` (as bench/ingest/run does); the system's /etc/postfix is never
used or changed. The main.cf and master.cf lines are those of docs/GATEWAY.md
"Postfix content filter".
"""

import os
import pwd
import subprocess

import pytest

from e2e_helpers import free_port, wait_for
from gw_fixtures import GTUBE, make_message, start_gateway  # noqa: F401

POSTFIX = "/usr/sbin/postfix"

BASE_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

# The content-filter part of master.cf, as docs/GATEWAY.md gives it.
FILTER_SERVICES = """\
{listen} inet n - n - - smtpd
lazaret   unix  -       -       n       -       10      smtp
  -o smtp_data_done_timeout=1200
  -o smtp_send_xforward_command=yes
  -o disable_dns_lookups=yes
  -o max_use=20
{reinject} inet n - n - - smtpd
  -o content_filter=
  -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks,no_milters
  -o smtpd_helo_restrictions=
  -o smtpd_client_restrictions=
  -o smtpd_sender_restrictions=
  -o smtpd_recipient_restrictions=permit_mynetworks,reject
  -o smtpd_relay_restrictions=permit_mynetworks,reject
  -o mynetworks=127.0.0.0/8
"""


class PrivatePostfix:
    def __init__(self, workdir, gw_port, sink_host):
        self.dir = os.path.join(workdir, "postfix")
        self.conf = os.path.join(self.dir, "conf")
        self.queue = os.path.join(self.dir, "queue")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.reinject_port = free_port()
        self.started = False
        pw = pwd.getpwnam("postfix")
        for d in (self.dir, self.conf, self.queue):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o755)
        os.makedirs(self.data, exist_ok=True)
        os.chown(self.data, pw.pw_uid, pw.pw_gid)
        main_cf = {
            "compatibility_level": "3.6",
            "config_directory": self.conf,
            "queue_directory": self.queue,
            "data_directory": self.data,
            "meta_directory": "/etc/postfix",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "mx.e2e.test",
            "mydomain": "e2e.test",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "smtpd_peername_lookup": "no",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "relayhost": "[127.0.0.1]:%s" % sink_host.rsplit(":", 1)[1],
            "smtp_dns_support_level": "disabled",
            "maillog_file": os.path.join(self.dir, "maillog"),
            # Postfix writes its log only under these prefixes; the test folder is in /tmp.
            "maillog_file_prefixes": "/var, /dev/stdout, /tmp",
            "biff": "no",
            # The documented line: every message goes through lazaret-gw first.
            "content_filter": "lazaret:[127.0.0.1]:%d" % gw_port,
        }
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            for k, v in main_cf.items():
                f.write("%s = %s\n" % (k, v))
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write(FILTER_SERVICES.format(listen="127.0.0.1:%d" % self.port,
                                           reinject="127.0.0.1:%d" % self.reinject_port))
            f.write(BASE_SERVICES)

    def postfix(self, *args):
        return subprocess.run([POSTFIX, "-c", self.conf] + list(args), capture_output=True,
                              timeout=120)

    def start(self):
        r = self.postfix("start")
        assert r.returncode == 0, r.stdout + r.stderr
        self.started = True

    def stop(self):
        if self.started:
            self.postfix("stop")
            self.started = False

    def maillog(self):
        try:
            with open(os.path.join(self.dir, "maillog"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""


@pytest.fixture
def private_postfix_factory(workdir):
    if os.geteuid() != 0 or not os.access(POSTFIX, os.X_OK):
        pytest.skip("a private Postfix instance needs root and the postfix package")
    made = []

    def factory(gw_port, sink_host):
        p = PrivatePostfix(workdir, gw_port, sink_host)
        made.append(p)
        p.start()
        return p
    yield factory
    for p in made:
        print("---- postfix maillog ----\n" + p.maillog()[-20000:])
        p.stop()


def test_postfix_content_filter_chain(start_gateway, aio_sink, private_postfix_factory):
    import smtplib
    gw = start_gateway("127.0.0.1:1", start=False, rat={"accept": "*"},
                       antispam={"positive_action": "tag"})
    pf = private_postfix_factory(gw.smtp_port, aio_sink.host)
    gw.apply({"delivery": {"next_hop": "127.0.0.1:%d" % pf.reinject_port}})
    gw.start()

    def postfix_up():
        try:
            smtplib.SMTP("127.0.0.1", pf.port, timeout=5).quit()
            return True
        except OSError:
            return False
    wait_for(postfix_up, 30, "Postfix to listen")

    s = smtplib.SMTP("127.0.0.1", pf.port, timeout=30)
    s.sendmail("alice@sender.test", ["bob@example.com"],
               make_message(subject="via postfix"))
    s.sendmail("spammer@sender.test", ["bob@example.com"],
               make_message(subject="pills", body="x\r\n%s\r\n" % GTUBE))
    s.quit()
    msgs = aio_sink.wait_count(2, timeout=60)
    by_subject = {}
    for m in msgs:
        for line in m["data"].split(b"\r\n"):
            if line.startswith(b"Subject: "):
                by_subject[line[9:]] = m
    assert set(by_subject) == {b"via postfix", b"[SUSPECTED SPAM] pills"}
    for m in msgs:
        assert m["rcpts"] == ["bob@example.com"]
        assert b"(lazaret-gw)" in m["data"]  # passed through the gateway
        # ...and through Postfix again after it (the re-injection smtpd's Received).
        assert m["data"].count(b"Received: ") >= 3
    gw.wait_log("gw.scanned")
    assert gw.log_text().count("gw.scanned") == 2
    # Without [listener] xforward_from Postfix is offered no XFORWARD: the client is Postfix.
    assert "gw.xforward" not in gw.log_text()
    for m in msgs:
        assert b"Received: from mx.e2e.test ([127.0.0.1])\r\n\tby gw-e2e (lazaret-gw)" \
            in m["data"]


def wait_postfix(pf):
    import smtplib

    def postfix_up():
        try:
            smtplib.SMTP("127.0.0.1", pf.port, timeout=5).quit()
            return True
        except OSError:
            return False
    wait_for(postfix_up, 30, "Postfix to listen")


def test_postfix_xforward_passes_the_original_client(start_gateway, start_manager, aio_sink,
                                                     private_postfix_factory):
    """smtp_send_xforward_command = yes: the gateway judges and labels Postfix's client."""
    import smtplib
    mgr = start_manager()
    gw = start_gateway("127.0.0.1:1", start=False, rat={"accept": "*"},
                       listener={"xforward_from": "127.0.0.1/32"},
                       external_spam_quarantine={"enabled": "yes", "host": "127.0.0.1",
                                                 "port": str(mgr.smtp_port)})
    pf = private_postfix_factory(gw.smtp_port, aio_sink.host)
    gw.apply({"delivery": {"next_hop": "127.0.0.1:%d" % pf.reinject_port}})
    gw.start()
    wait_postfix(pf)

    # The original client: 127.0.0.3, talking to Postfix's smtpd on 127.0.0.1.
    s = smtplib.SMTP("127.0.0.1", pf.port, timeout=30, source_address=("127.0.0.3", 0))
    s.ehlo("client.e2e.test")
    s.sendmail("alice@sender.test", ["bob@example.com"], make_message(subject="clean"))
    s.sendmail("spammer@sender.test", ["bob@example.com"],
               make_message(subject="pills", body="x\r\n%s\r\n" % GTUBE))
    s.quit()

    (d,) = aio_sink.wait_count(1, timeout=60)
    assert b"Subject: clean" in d["data"]
    # The gateway's own Received line names the original client, not Postfix.
    assert b"Received: from client.e2e.test ([127.0.0.3])\r\n\tby gw-e2e (lazaret-gw)" \
        in d["data"], d["data"][:800]

    wait_for(lambda: len(mgr.list_all()) == 1, 60, "the spam in the manager's quarantine")
    (q,) = mgr.list_all()
    raw = mgr.http("GET", "/api/v1/messages/%s/raw" % q["id"])[2]
    assert b"X-Lazaret-Client-Address: 127.0.0.3\r\n" in raw
    assert b"X-Lazaret-Client-Address: 127.0.0.1" not in raw
    assert gw.log_text().count("gw.xforward") == 2
    assert "addr=127.0.0.3" in gw.log_text()

"""Certificates for the TLS tests, made with the openssl CLI at test time.

A test CA issues a server certificate for localhost / 127.0.0.1 / ::1 (in the
subjectAltName) and a client certificate; a second, unrelated CA ("wrong") issues
the same pair, for peers that must be refused. Nothing is checked in: every run
makes fresh keys (EC P-256, quick to make).
"""

import os
import ssl
import subprocess

OPENSSL = "openssl"


def _run(args, cwd):
    r = subprocess.run([OPENSSL] + args, cwd=cwd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError("openssl %s failed: %s" % (" ".join(args), r.stderr))


def _ext_file(directory, name, text):
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text)
    return path


class Authority:
    """One CA and what it signed: (cert, key) paths for server and client."""

    def __init__(self, directory, name):
        self.dir = directory
        self.name = name
        self.ca = os.path.join(directory, "%s-ca.pem" % name)
        self.ca_key = os.path.join(directory, "%s-ca.key" % name)
        _run(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
              "-nodes", "-days", "2", "-subj", "/CN=Lazaret %s test CA" % name,
              "-addext", "basicConstraints=critical,CA:true",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign",
              "-keyout", self.ca_key, "-out", self.ca], directory)
        self.server = self._issue("server", "/CN=localhost",
                                  "basicConstraints=CA:false\n"
                                  "keyUsage=critical,digitalSignature\n"
                                  "extendedKeyUsage=serverAuth\n"
                                  "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n")
        self.client = self._issue("client", "/CN=gateway.e2e.test",
                                  "basicConstraints=CA:false\n"
                                  "keyUsage=critical,digitalSignature\n"
                                  "extendedKeyUsage=clientAuth\n")

    def _issue(self, what, subject, ext):
        base = os.path.join(self.dir, "%s-%s" % (self.name, what))
        key, csr, cert = base + ".key", base + ".csr", base + ".pem"
        extfile = _ext_file(self.dir, "%s-%s.ext" % (self.name, what), ext)
        _run(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
              "-nodes", "-subj", subject, "-keyout", key, "-out", csr], self.dir)
        _run(["x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
              "-CAcreateserial", "-days", "2", "-extfile", extfile, "-out", cert], self.dir)
        return cert, key


class TestPKI:
    """good: the CA the daemons are told to trust; wrong: one nobody trusts."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory):
        self.dir = os.path.join(directory, "pki")
        os.makedirs(self.dir, exist_ok=True)
        self.good = Authority(self.dir, "good")
        self.wrong = Authority(self.dir, "wrong")

    def client_context(self, ca=None, cert=None):
        """A verifying Python client context trusting ca (default: the good CA)."""
        ctx = ssl.create_default_context(cafile=ca or self.good.ca)
        if cert is not None:
            ctx.load_cert_chain(*cert)
        return ctx

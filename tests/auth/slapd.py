"""A real OpenLDAP ``slapd`` (Debian's package, installed by .ci/install-peers) started for a
test on a free loopback port, with a config file and database made in a temporary folder,
users loaded with ``ldapadd``."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.harness import free_port

SLAPD = "/usr/sbin/slapd"
SUFFIX = "dc=example,dc=com"
ROOTDN = f"cn=admin,{SUFFIX}"
ROOTPW = "directory-secret"

CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {dir}/slapd.pid
database mdb
maxsize 16777216
suffix "{suffix}"
rootdn "{rootdn}"
rootpw {rootpw}
directory {dir}/db
"""


def need_slapd() -> None:
    if os.path.exists(SLAPD) and shutil.which("ldapadd"):
        return
    if os.environ.get("CI") == "true":
        pytest.fail("slapd is not installed (.ci/install-peers installs Debian's slapd and "
                    "ldap-utils)")
    pytest.skip("slapd is not installed (apt-get install slapd ldap-utils)")


@dataclass
class Slapd:
    port: int
    folder: Path
    proc: subprocess.Popen[bytes] | None = None
    tls_port: int | None = None  # LDAPS (RFC 4513 §3.1.3 "ldaps"), with the TLS lines of CONF

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}/"

    @property
    def urls(self) -> str:
        tls = f" ldaps://127.0.0.1:{self.tls_port}/" if self.tls_port else ""
        return self.url + tls

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [SLAPD, "-f", str(self.folder / "slapd.conf"), "-h", self.urls, "-d", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("slapd exited: " + self.proc.stderr.read().decode()[-2000:]
                                   if self.proc.stderr else "slapd exited")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1",
                                                                         self.port), 0.2):
                return
            time.sleep(0.05)
        raise RuntimeError("slapd did not listen within 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # slapd's clean shutdown
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def add(self, ldif: str) -> None:
        subprocess.run(["ldapadd", "-x", "-H", self.url, "-D", ROOTDN, "-w", ROOTPW],
                       input=ldif.encode(), check=True, capture_output=True, timeout=10)


def person(uid: str, password: str, ou: str = "people", **extra: str) -> str:
    lines = [f"dn: uid={uid},ou={ou},{SUFFIX}", "objectClass: inetOrgPerson",
             f"uid: {uid}", f"cn: {uid}", f"sn: {uid}", f"userPassword: {password}"]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n\n"


@contextlib.contextmanager
def running_slapd(tls: tuple[Path, Path] | None = None) -> Iterator[Slapd]:
    """``tls``: (certificate, key) for an LDAPS port too."""
    need_slapd()
    folder = Path(tempfile.mkdtemp(prefix="suricate-slapd-"))
    try:
        (folder / "db").mkdir()
        conf = CONF.format(dir=folder, suffix=SUFFIX, rootdn=ROOTDN, rootpw=ROOTPW)
        if tls is not None:
            conf = f"TLSCertificateFile {tls[0]}\nTLSCertificateKeyFile {tls[1]}\n" + conf
        (folder / "slapd.conf").write_text(conf)
        slapd = Slapd(free_port(), folder, tls_port=free_port() if tls else None)
        slapd.start()
        try:
            slapd.add(f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\n"
                      f"o: Example\ndc: example\n\n"
                      f"dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n")
            yield slapd
        finally:
            slapd.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)

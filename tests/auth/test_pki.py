"""The pki method: SASL EXTERNAL for clients whose certificate chains to the c2s listener's
`tls.cacertfile` (verify_mode "peer"); the user comes from the certificate's xmppAddr (or its
CN with `sasl_external = ["common_name"]`). slixmpp logs in with it over real TLS."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from suricate.core.server import Server
from suricate.jid import JID
from tests.e2e.harness import (
    MODULES_TOML,
    Client,
    disconnect,
    free_port,
    general_toml,
    serving,
    sqlite_pool_toml,
)
from tests.s2s.pki import CertificateAuthority, Issued

XMPP_ADDR = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.5")


def client_cert(ca: CertificateAuthority, name: str, cn: str,
                xmpp_addrs: list[str]) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(ca.cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                              critical=False))
    if xmpp_addrs:
        # RFC 6120 §13.7.1.4: id-on-xmppAddr, a UTF8String.
        others: list[x509.GeneralName] = [
            x509.OtherName(XMPP_ADDR, b"\x0c" + bytes([len(a.encode())]) + a.encode())
            for a in xmpp_addrs]
        builder = builder.add_extension(x509.SubjectAlternativeName(others), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    certfile = ca.directory / f"{name}.crt"
    keyfile = ca.directory / f"{name}.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return str(certfile), str(keyfile)


def toml(ca: CertificateAuthority, server_cert: Issued, port: int, tmp: Path,
         sasl_external: str = '["standard"]') -> str:
    return f"""
{general_toml("localhost")}
[[listen.c2s]]
port = {port}
ip_address = "127.0.0.1"
tls.mode = "tls"
tls.certfile = "{server_cert.certfile}"
tls.keyfile = "{server_cert.keyfile}"
tls.verify_mode = "peer"
tls.cacertfile = "{ca.certfile}"

[auth]
methods = ["pki", "rdbms"]
sasl_external = {sasl_external}
password.scram_iterations = 4096
{sqlite_pool_toml(tmp / "db.sqlite")}
{MODULES_TOML}
"""


async def login(server: Server, jid: str, cert: tuple[str, str] | None,
                mech: str = "EXTERNAL") -> Client:
    client = Client(jid, "", sasl_mech=mech)
    if cert is not None:
        client.certfile, client.keyfile = cert
    client.enable_direct_tls = True
    client.enable_starttls = False
    client.connect("127.0.0.1", server.tls_port)  # type: ignore[attr-defined]
    await asyncio.wait_for(client.session_started, 10)
    return client


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "pki")


async def test_xmpp_addr_certificate_logs_in_with_external(tmp_path: Path,
                                                           ca: CertificateAuthority) -> None:
    port = free_port()
    server_cert = ca.issue("localhost")
    alice = client_cert(ca, "alice", "Alice", ["alice@localhost"])
    stranger = CertificateAuthority(tmp_path / "other", "Other CA")
    forged = client_cert(stranger, "mallory", "Mallory", ["alice@localhost"])
    elsewhere = client_cert(ca, "eve", "Eve", ["eve@example.org"])
    async with serving(tmp_path, toml(ca, server_cert, port, tmp_path), tls_port=port) as srv:
        a = await login(srv, "alice@localhost/cert", alice)
        assert str(a.boundjid) == "alice@localhost/cert"
        # A certificate for another domain proves nobody here.
        with pytest.raises((PermissionError, ConnectionError)):
            await login(srv, "eve@localhost/x", elsewhere)
        # A certificate from another CA fails the handshake itself.
        with pytest.raises((PermissionError, ConnectionError, OSError, asyncio.TimeoutError)):
            await login(srv, "alice@localhost/x", forged)
        # Without a certificate EXTERNAL is not offered; passwords still work (rdbms).
        with pytest.raises((PermissionError, ConnectionError)):
            await login(srv, "alice@localhost/x", None)
        await srv.auth.register(JID.parse("bob@localhost"), "pw")
        b = Client("bob@localhost/pw", "pw", sasl_mech="SCRAM-SHA-256")
        b.enable_direct_tls, b.enable_starttls = True, False
        b.connect("127.0.0.1", port)
        await asyncio.wait_for(b.session_started, 10)
        await disconnect(a, b)


async def test_common_name_mode(tmp_path: Path, ca: CertificateAuthority) -> None:
    port = free_port()
    server_cert = ca.issue("localhost")
    carol = client_cert(ca, "carol", "carol", [])
    async with serving(tmp_path, toml(ca, server_cert, port, tmp_path, '["common_name"]'),
                       tls_port=port) as srv:
        c = await login(srv, "carol@localhost/cn", carol)
        assert str(c.boundjid) == "carol@localhost/cn"
        await disconnect(c)


@pytest.mark.parametrize(("names", "any_authzid", "authzid", "expected"), [
    (["alice"], False, b"", "alice"),
    (["alice"], False, b"alice@localhost", "alice"),
    (["alice"], False, b"bob@localhost", "invalid-authzid"),
    (["alice"], False, b"alice@example.org", "invalid-authzid"),
    (["alice", "al"], False, b"", "invalid-authzid"),
    ([], False, b"", "not-authorized"),
    ([], True, b"bob@localhost", "bob"),
    (["alice"], False, b"alice@localhost/res", "invalid-authzid"),
])
def test_external_mechanism(names: list[str], any_authzid: bool, authzid: bytes,
                            expected: str) -> None:
    from suricate import sasl

    ctx = sasl.SaslContext(server="localhost", cert_usernames=names, cert_verified=True,
                           cert_any_authzid=any_authzid)
    result = sasl.create_mechanism("EXTERNAL", ctx).step(authzid)
    got = result.username if isinstance(result, sasl.Success) else result.condition  # type: ignore[union-attr]
    assert got == expected


def revocation_list(ca: CertificateAuthority, revoked: list[str], name: str) -> str:
    """A CRL of ``ca`` (PEM) revoking the certificates in the files ``revoked``."""
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
               .last_update(now - datetime.timedelta(minutes=5))
               .next_update(now + datetime.timedelta(days=1)))
    for certfile in revoked:
        serial = x509.load_pem_x509_certificate(Path(certfile).read_bytes()).serial_number
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial)
            .revocation_date(now - datetime.timedelta(minutes=1)).build())
    path = ca.directory / name
    path.write_bytes(builder.sign(ca.key, hashes.SHA256()).public_bytes(
        serialization.Encoding.PEM))
    return str(path)


async def test_crl_files_refuse_a_revoked_certificate(tmp_path: Path,
                                                      ca: CertificateAuthority) -> None:
    """tls.crl_files (6.4: checked for the peer's certificate): a revoked client certificate
    fails verification, so SASL EXTERNAL with it fails; the others log in as before."""
    port = free_port()
    server_cert = ca.issue("localhost")
    alice = client_cert(ca, "alice", "Alice", ["alice@localhost"])
    mallory = client_cert(ca, "mallory", "Mallory", ["mallory@localhost"])
    crl = revocation_list(ca, [mallory[0]], "ca.crl")
    config = toml(ca, server_cert, port, tmp_path).replace(
        f'tls.cacertfile = "{ca.certfile}"',
        f'tls.cacertfile = "{ca.certfile}"\ntls.crl_files = ["{crl}"]', 1)
    async with serving(tmp_path, config, tls_port=port) as srv:
        a = await login(srv, "alice@localhost/cert", alice)
        assert str(a.boundjid) == "alice@localhost/cert"
        with pytest.raises((PermissionError, ConnectionError, OSError, asyncio.TimeoutError)):
            await login(srv, "mallory@localhost/cert", mallory)
        await disconnect(a)


def test_crl_files_that_are_not_crls_are_refused(tmp_path: Path,
                                                 ca: CertificateAuthority) -> None:
    from suricate.config import parse_config
    from suricate.config.spec import ConfigError

    server_cert = ca.issue("localhost")
    config = toml(ca, server_cert, free_port(), tmp_path).replace(
        f'tls.cacertfile = "{ca.certfile}"',
        f'tls.cacertfile = "{ca.certfile}"\ntls.crl_files = ["{ca.certfile}"]', 1)
    with pytest.raises(ConfigError) as err:
        parse_config(config, tmp_path)
    assert [p.path for p in err.value.problems] == ["listen.c2s[0].tls.crl_files[0]"]
    assert "holds no certificate revocation list (PEM or DER)" in err.value.problems[0].message

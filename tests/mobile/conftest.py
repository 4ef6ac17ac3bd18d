from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from suricate.core.server import Server
from suricate.jid import JID
from tests.e2e.harness import ALL_MODULES, running_server

MOBILE_MODULES = ("mod_sasl2", "mod_bind2", "mod_fast_auth_token", "mod_stream_management",
                  "mod_carboncopy", "mod_csi")


def modules_toml(extra: str = "") -> str:
    names = [*ALL_MODULES, *MOBILE_MODULES]
    return "\n".join(f"[modules.{m}]" for m in names) + "\n" + extra


async def add_user(server: Server, name: str, password: str = "secret") -> None:
    await server.auth.register(JID(name, "localhost", None), password)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path, modules=modules_toml()) as srv:
        await add_user(srv, "alice")
        await add_user(srv, "bob")
        yield srv


def make_test_ca(directory: Path, names: tuple[str, ...] = ("localhost",)) -> Path:
    """A test CA and, signed by it, the server certificate the harness then reuses
    (certs/server.crt): node does not accept a self-signed leaf as a trust anchor through
    NODE_EXTRA_CA_CERTS, a CA it does. Returns the CA certificate file."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Suricate test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=365))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (directory / "server.key").write_bytes(key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (directory / "server.crt").write_bytes(leaf.public_bytes(pem))
    (directory / "ca.crt").write_bytes(ca.public_bytes(pem))
    return directory / "ca.crt"

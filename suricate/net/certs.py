"""Self-signed certificates for the embedded default: generated on first start, then reused.

One certificate per served domain (chosen by SNI) plus a default one covering them all, so a
client that sends no SNI still gets a certificate naming its domain.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509

from suricate.net.tls import CertKey

VALIDITY = datetime.timedelta(days=3650)


def _generate(names: Sequence[str], certfile: Path, keyfile: Path) -> None:
    # Only the first start generates: the others, which find the files, do not import these
    # (serialization alone is ~3 ms of start-up).
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certfile.parent.mkdir(parents=True, exist_ok=True)
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    os.chmod(keyfile, 0o600)
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _covers(certfile: Path, names: Sequence[str]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(certfile.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    have = set(san.get_values_for_type(x509.DNSName))
    expires = cert.not_valid_after_utc
    fresh = expires - datetime.datetime.now(datetime.UTC) > datetime.timedelta(days=30)
    return set(names) <= have and fresh


def ensure_self_signed(directory: Path, hosts: Sequence[str], services: Sequence[str] = ()
                       ) -> tuple[CertKey, dict[str, CertKey]]:
    """Return the default certificate and one per host, generating what is missing. Each
    host's certificate also names its ``services`` subdomains (``conference.<host>``...);
    with a single host, its certificate is the default."""
    directory.mkdir(parents=True, exist_ok=True)

    def names(host: str) -> list[str]:
        return [host, *(f"{service}.{host}" for service in services)]

    default_cert, default_key = directory / "server.crt", directory / "server.key"
    everything = [name for host in hosts for name in names(host)]
    if not _covers(default_cert, everything):
        _generate(everything, default_cert, default_key)
    per_host: dict[str, CertKey] = {}
    if len(hosts) == 1:
        # One host (the embedded default's localhost): the default names it all, and is the
        # one certificate a client trusts whether it names the host (SNI) or not.
        return CertKey(str(default_cert), str(default_key)), {
            hosts[0]: CertKey(str(default_cert), str(default_key))}
    for host in hosts:
        cert, key = directory / f"{host}.crt", directory / f"{host}.key"
        if not _covers(cert, names(host)):
            _generate(names(host), cert, key)
        per_host[host] = CertKey(str(cert), str(key))
    return CertKey(str(default_cert), str(default_key)), per_host

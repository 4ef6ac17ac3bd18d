"""Channel-binding types (RFC 5056) offered for SCRAM-*-PLUS.

- tls-unique (RFC 5929 §3): the first Finished message of the handshake. Only meaningful on
  TLS 1.2 and below; on TLS 1.3 it is not defined (RFC 9266 §3), so it is never offered there,
  whatever the TLS library returns.
- tls-server-end-point (RFC 5929 §4): a hash of our certificate; works on any version.
- tls-exporter (RFC 9266): keying material exported with label "EXPORTER-Channel-Binding".
  RFC 9266 §3 only makes it safe on TLS 1.2 with the extended master secret extension
  (RFC 7627); the TLS layer does not tell us whether EMS was negotiated, so we offer
  tls-exporter on TLS 1.3 only.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes

__all__ = ["CB_TYPES", "channel_binding_types", "server_end_point_hash"]

CB_TYPES = ("tls-exporter", "tls-server-end-point", "tls-unique")


def channel_binding_types(tls_version: str) -> list[str]:
    """Channel-binding types we offer on a connection, strongest first (XEP-0440 list)."""
    if tls_version == "TLSv1.3":
        return ["tls-exporter", "tls-server-end-point"]
    if tls_version == "TLSv1.2":
        return ["tls-unique", "tls-server-end-point"]
    return ["tls-server-end-point"]


def server_end_point_hash(cert_der: bytes) -> bytes:
    """tls-server-end-point data for a DER certificate (RFC 5929 §4.1).

    The hash is the one of the certificate's signature algorithm, except that MD5 and SHA-1
    are replaced by SHA-256. Raises ValueError when the algorithm has no single hash (e.g.
    Ed25519), for which RFC 5929 leaves the binding undefined: do not offer the type then.
    """
    cert = x509.load_der_x509_certificate(cert_der)
    try:
        algo = cert.signature_hash_algorithm
    except UnsupportedAlgorithm as e:
        raise ValueError(f"unsupported certificate signature algorithm: {e}") from None
    if algo is None:
        raise ValueError("certificate signature algorithm has no hash (RFC 5929 §4.1)")
    if isinstance(algo, hashes.MD5 | hashes.SHA1):
        algo = hashes.SHA256()
    h = hashes.Hash(algo)
    h.update(cert_der)
    return h.finalize()

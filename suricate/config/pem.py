"""Certificate revocation lists named by ``tls.crl_files``: read here, below both the config
spec (which refuses a file that holds none, at its TOML path) and net/tls.py (which gives them
to OpenSSL), so that both read a file the same way."""

from __future__ import annotations

import re
from typing import Any

_PEM_CRL = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", re.DOTALL)


def read_crls(path: str) -> list[Any]:
    """The CRLs of the file at ``path`` (cryptography ``CertificateRevocationList``): every
    PEM ``X509 CRL`` block, or one DER CRL. ValueError when it holds none; OSError when it
    cannot be read."""
    from cryptography import x509  # only a configuration with crl_files pays for it

    with open(path, "rb") as f:
        data = f.read()
    blocks = _PEM_CRL.findall(data)
    if blocks:
        return [x509.load_pem_x509_crl(block) for block in blocks]
    return [x509.load_der_x509_crl(data)]  # raises ValueError on anything else

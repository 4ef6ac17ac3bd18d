"""Judging a peer's certificate for server-to-server streams (RFC 6120 §13.7.1.2, §13.7.2;
RFC 6125 §6; XEP-0178): is it issued by a CA we trust, and does it name the domain?

The trust store is the listener's or ``s2s.outgoing``'s ``tls.cacertfile``, or the operating
system's CA certificates when that option is absent (MongooseIM 6.4).
"""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Sequence

from cryptography import x509
from cryptography.x509.oid import NameOID
from OpenSSL import crypto

from suricate.net.tls import add_crls

# RFC 6120 §13.7.1.4: the XmppAddr otherName (id-on-xmppAddr).
ID_ON_XMPPADDR = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.5")
# RFC 4985: SRVName otherName (id-on-dnsSRV), "_xmpp-server.example.com".
ID_ON_DNSSRV = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.7")


class TrustStore:
    __slots__ = ("_store", "source")

    def __init__(self, cacertfile: str | None = None, crl_files: Sequence[str] = ()) -> None:
        store = crypto.X509Store()
        if cacertfile:
            store.load_locations(cacertfile)
            self.source = cacertfile
        else:
            paths = ssl.get_default_verify_paths()
            store.load_locations(paths.cafile, paths.capath)
            self.source = "os"
        if crl_files:  # the listener's tls.crl_files (s2s verifies after the handshake)
            add_crls(store, crl_files)
        self._store = store

    def verifies(self, chain: Sequence[x509.Certificate], allow_self_signed: bool = False) -> bool:
        """True when ``chain[0]`` chains up to a trusted CA (or, with ``allow_self_signed``,
        is self-signed and within its validity)."""
        if not chain:
            return False
        leaf = crypto.X509.from_cryptography(chain[0])
        intermediates = [crypto.X509.from_cryptography(c) for c in chain[1:]]
        try:
            crypto.X509StoreContext(self._store, leaf, intermediates).verify_certificate()
            return True
        except crypto.X509StoreContextError:
            pass
        if allow_self_signed and chain[0].issuer == chain[0].subject:
            now = datetime.datetime.now(datetime.UTC)
            return chain[0].not_valid_before_utc <= now <= chain[0].not_valid_after_utc
        return False


def _der_utf8(value: bytes) -> str | None:
    """Decode the UTF8String inside an otherName value (DER: tag 0x0c, length, bytes)."""
    if len(value) < 2 or value[0] != 0x0C:
        return None
    length = value[1]
    offset = 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(value[2:2 + n], "big")
        offset = 2 + n
    try:
        return value[offset:offset + length].decode("utf-8")
    except UnicodeDecodeError:
        return None


def _ia5(value: bytes) -> str | None:
    if len(value) < 2 or value[0] != 0x16:
        return None
    return _der_utf8(b"\x0c" + value[1:])


def _dns_matches(pattern: str, domain: str) -> bool:
    pattern, domain = pattern.lower().rstrip("."), domain.lower().rstrip(".")
    if pattern == domain:
        return True
    # RFC 6125 §6.4.3: a wildcard only as the complete left-most label, matching one label.
    if pattern.startswith("*."):
        head, _, rest = domain.partition(".")
        return bool(head) and rest == pattern[2:]
    return False


def names_domain(cert: x509.Certificate, domain: str) -> bool:
    """RFC 6120 §13.7.1.2 / RFC 6125 §6: does ``cert`` identify the XMPP service ``domain``?
    SAN dNSName, SRVName (``_xmpp-server.``) and XmppAddr are checked; the subject CN only
    when the certificate has no SAN at all (RFC 6125 §6.4.4)."""
    domain = domain.lower()
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return any(_dns_matches(str(cn.value), domain) for cn in cns)
    if any(_dns_matches(name, domain) for name in san.get_values_for_type(x509.DNSName)):
        return True
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id == ID_ON_XMPPADDR:
            value = _der_utf8(other.value)
            if value is not None and value.lower() == domain:
                return True
        elif other.type_id == ID_ON_DNSSRV:
            value = _ia5(other.value)
            if value is not None and value.lower() in (f"_xmpp-server.{domain}",
                                                       f"_xmpps-server.{domain}"):
                return True
    return False



def xmpp_addrs(cert: x509.Certificate) -> list[str]:
    """The XmppAddr identities (RFC 6120 §13.7.1.4) of a certificate: for a client's, its JIDs."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out = []
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id == ID_ON_XMPPADDR:
            value = _der_utf8(other.value)
            if value is not None:
                out.append(value)
    return out


def common_names(cert: x509.Certificate) -> list[str]:
    return [str(cn.value) for cn in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]

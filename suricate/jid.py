"""XMPP addresses (JIDs) per RFC 7622.

A `JID` is immutable and hashable; its parts are stored already prepared, so two JIDs that
denote the same entity compare equal.

Preparation (RFC 7622 §3):
- localpart: PRECIS `UsernameCaseMapped` (RFC 8265 §3.3) plus the eight characters RFC 7622
  §3.3.1 forbids on top of it: ``" & ' / : < > @``;
- domainpart: lowercased, trailing dot stripped (§3.2), checked label by label; non-ASCII labels
  go through the stdlib IDNA codec (an IDNA2003/nameprep approximation of IDNA2008, since no
  IDNA2008 library is a dependency) and are kept as U-labels; IP literals are accepted;
- resourcepart: PRECIS `OpaqueString` (RFC 8265 §4.2, RFC 7622 §3.4).
Each part is 1..1023 octets once prepared (RFC 7622 §3.2, §3.3, §3.4).

Pure ASCII input takes a fast path that gives the same result as the PRECIS profiles (for
ASCII, UsernameCaseMapped is lowercasing of the printable range and OpaqueString is the
identity on %x20-7E). `JID.parse` is cached.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

import precis_i18n

__all__ = ["JID", "InvalidJID", "nodeprep", "nameprep", "resourceprep"]


class InvalidJID(ValueError):
    """The peer gave us an address that RFC 7622 does not allow."""


_USERNAME = precis_i18n.get_profile("UsernameCaseMapped")
_OPAQUE = precis_i18n.get_profile("OpaqueString")

_MAX_PART_OCTETS = 1023  # RFC 7622 §3.2 / §3.3 / §3.4
_MAX_LABEL = 63  # RFC 1034 §3.1

# RFC 7622 §3.3.1: forbidden in a localpart in addition to the PRECIS IdentifierClass rules.
_LOCAL_FORBIDDEN = frozenset("\"&'/:<>@")
# Printable ASCII that UsernameCaseMapped accepts (IdentifierClass: %x21-7E) minus the above.
_LOCAL_ASCII_OK = frozenset(chr(c) for c in range(0x21, 0x7F)) - _LOCAL_FORBIDDEN
# OpaqueString (FreeformClass) accepts all of %x20-7E unchanged.
_RESOURCE_ASCII_OK = frozenset(chr(c) for c in range(0x20, 0x7F))
# LDH labels; '_' is tolerated (seen in the wild in service names, e.g. SRV-style hosts).
_LABEL_ASCII_OK = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


def _check_length(part: str, what: str) -> None:
    n = len(part.encode("utf-8"))
    if n == 0:
        raise InvalidJID(f"empty {what}")
    if n > _MAX_PART_OCTETS:
        raise InvalidJID(f"{what} longer than {_MAX_PART_OCTETS} octets")


@functools.lru_cache(maxsize=16384)
def nodeprep(local: str) -> str:
    """Prepare a localpart (RFC 7622 §3.3). Raises InvalidJID."""
    if local and local.isascii() and all(c in _LOCAL_ASCII_OK for c in local):
        out = local.lower()
    else:
        try:
            out = _USERNAME.enforce(local)
        except UnicodeError as e:
            raise InvalidJID(f"invalid localpart: {e}") from None
        if any(c in _LOCAL_FORBIDDEN for c in out):
            raise InvalidJID("invalid character in localpart")
    _check_length(out, "localpart")
    return out


@functools.lru_cache(maxsize=16384)
def resourceprep(resource: str) -> str:
    """Prepare a resourcepart (RFC 7622 §3.4). Raises InvalidJID."""
    if resource and resource.isascii() and all(c in _RESOURCE_ASCII_OK for c in resource):
        out = resource
    else:
        try:
            out = _OPAQUE.enforce(resource)
        except UnicodeError as e:
            raise InvalidJID(f"invalid resourcepart: {e}") from None
    _check_length(out, "resourcepart")
    return out


def _check_ascii_labels(domain: str) -> None:
    for label in domain.split("."):
        if not label:
            raise InvalidJID("empty label in domainpart")
        if len(label) > _MAX_LABEL:
            raise InvalidJID("domain label longer than 63 octets")
        if label[0] == "-" or label[-1] == "-":
            raise InvalidJID("domain label starts or ends with a hyphen")
        if not all(c in _LABEL_ASCII_OK for c in label):
            raise InvalidJID("invalid character in domainpart")


@functools.lru_cache(maxsize=4096)
def nameprep(domain: str) -> str:
    """Prepare a domainpart (RFC 7622 §3.2). Raises InvalidJID."""
    # RFC 7622 §3.2: a final label separator is stripped before any use.
    if domain.endswith("."):
        domain = domain[:-1]
    if not domain:
        raise InvalidJID("empty domainpart")
    if domain[0] == "[":
        # RFC 7622 §3.2.1: IP-literal (IPv6 in brackets, RFC 3986 §3.2.2).
        if domain[-1] != "]":
            raise InvalidJID("malformed IP literal")
        try:
            ipaddress.IPv6Address(domain[1:-1])
        except ValueError:
            raise InvalidJID("malformed IPv6 literal") from None
        return domain.lower()
    if domain.isascii():
        out = domain.lower()
        _check_ascii_labels(out)
        if "xn--" in out:
            # RFC 7622 §3.2.2: A-labels are compared in their U-label form.
            try:
                out = out.encode("ascii").decode("idna").lower()
            except UnicodeError:
                raise InvalidJID("invalid A-label in domainpart") from None
    else:
        # IDNA: ToASCII validates and maps (case folding, width, dot variants), then back to
        # U-labels, which is the form we compare and store.
        try:
            a_labels = domain.encode("idna")
            out = a_labels.decode("idna")
        except UnicodeError:
            raise InvalidJID("invalid internationalized domainpart") from None
        _check_ascii_labels(a_labels.decode("ascii").lower())
        out = out.lower()
    _check_length(out, "domainpart")
    return out


class JID:
    """An immutable, prepared XMPP address."""

    __slots__ = ("local", "domain", "resource", "_hash", "_str", "_bare")

    local: str | None
    domain: str
    resource: str | None
    _hash: int | None
    _str: str | None
    _bare: JID | None

    def __init__(self, local: str | None, domain: str, resource: str | None = None) -> None:
        """Build a JID from raw parts, preparing each one. Raises InvalidJID."""
        _set = object.__setattr__
        _set(self, "local", None if local is None else nodeprep(local))
        _set(self, "domain", nameprep(domain))
        _set(self, "resource", None if resource is None else resourceprep(resource))
        _set(self, "_hash", None)
        _set(self, "_str", None)
        _set(self, "_bare", None)

    @classmethod
    def _prepared(cls, local: str | None, domain: str, resource: str | None) -> JID:
        # Parts already prepared: skip preparation.
        j = cls.__new__(cls)
        _set = object.__setattr__
        _set(j, "local", local)
        _set(j, "domain", domain)
        _set(j, "resource", resource)
        _set(j, "_hash", None)
        _set(j, "_str", None)
        _set(j, "_bare", None)
        return j

    @staticmethod
    def parse(s: str) -> JID:
        """Parse and prepare a JID string (RFC 7622 §3.2). Raises InvalidJID. Cached."""
        return _parse(s)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("JID is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("JID is immutable")

    @property
    def bare(self) -> JID:
        if self.resource is None:
            return self
        # Hot path: the session table and the router ask for it on every stanza; cached
        # (JID.parse results are themselves cached, so the routed 'to' JIDs are reused).
        bare = self._bare
        if bare is None:
            bare = JID._prepared(self.local, self.domain, None)
            object.__setattr__(self, "_bare", bare)
        return bare

    @property
    def is_bare(self) -> bool:
        return self.resource is None

    def with_resource(self, resource: str | None) -> JID:
        return JID._prepared(
            self.local, self.domain, None if resource is None else resourceprep(resource)
        )

    def __str__(self) -> str:
        s = self._str
        if s is None:
            s = self.domain
            if self.local is not None:
                s = f"{self.local}@{s}"
            if self.resource is not None:
                s = f"{s}/{self.resource}"
            object.__setattr__(self, "_str", s)
        return s

    def __repr__(self) -> str:
        return f"JID({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, JID):
            return NotImplemented
        return (
            self.domain == other.domain
            and self.local == other.local
            and self.resource == other.resource
        )

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = hash((self.local, self.domain, self.resource))
            object.__setattr__(self, "_hash", h)
        return h

    def __reduce__(self) -> tuple[Any, ...]:
        return (JID._prepared, (self.local, self.domain, self.resource))


@functools.lru_cache(maxsize=65536)
def _parse(s: str) -> JID:
    if not s:
        raise InvalidJID("empty JID")
    # RFC 7622 §3.2: the resourcepart is everything after the first '/', the localpart
    # everything before the first '@' of what remains.
    slash = s.find("/")
    if slash >= 0:
        rest, raw_resource = s[:slash], s[slash + 1 :]
        if not raw_resource:
            raise InvalidJID("empty resourcepart")
        resource: str | None = resourceprep(raw_resource)
    else:
        rest, resource = s, None
    at = rest.find("@")
    if at >= 0:
        raw_local, raw_domain = rest[:at], rest[at + 1 :]
        if not raw_local:
            raise InvalidJID("empty localpart")
        local: str | None = nodeprep(raw_local)
    else:
        local, raw_domain = None, rest
    if not raw_domain:
        raise InvalidJID("empty domainpart")
    return JID._prepared(local, nameprep(raw_domain), resource)

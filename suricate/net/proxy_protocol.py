"""The HAProxy PROXY protocol, versions 1 and 2 (haproxy.org proxy-protocol.txt), sans-IO.

A listener with ``proxy_protocol = true`` sits behind a load balancer that opens every
connection with a header naming the real client. The header comes before any other byte (even
before the TLS ClientHello of a Direct TLS listener), and the spec (§2, "the receiver MUST be
configured to only receive the protocol") forbids guessing: a connection without a valid header
is dropped, so nobody can connect around the proxy and pose as any address.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

V1_PREFIX = b"PROXY "
V1_MAX = 107  # §2.1: the longest v1 line, CRLF included
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"  # §2.2: 12 bytes that no v1 header or protocol starts with
V2_HEADER = 16
V2_MAX_LENGTH = 4096  # bytes of addresses and TLVs we accept after the 16-byte header

# §2.2: the address block sizes per family (ports included), TLVs follow.
_INET, _INET6, _UNIX = 0x1, 0x2, 0x3
_V2_ADDRESS_SIZE = {_INET: 12, _INET6: 36, _UNIX: 216}
_LOCAL, _PROXY = 0x0, 0x1
_STREAM = 0x1


class ProxyProtocolError(Exception):
    """Not a valid PROXY header: the connection must be closed."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """What the proxy told us. ``source`` is None when the header carries no address to use
    (v1 ``UNKNOWN``, v2 ``LOCAL`` or an unspecified family): keep the socket's own peer."""

    version: int
    source: tuple[str, int] | None
    destination: tuple[str, int] | None


def parse(data: bytes) -> tuple[ProxyHeader, bytes] | None:
    """The header at the start of ``data`` and the bytes after it, or None when more bytes
    are needed. Raises ProxyProtocolError as soon as the bytes cannot become a header."""
    if data[:len(V2_SIGNATURE)] == V2_SIGNATURE[:len(data)]:
        return _parse_v2(data)
    if data[:len(V1_PREFIX)] == V1_PREFIX[:len(data)]:
        return _parse_v1(data)
    raise ProxyProtocolError("no PROXY protocol header")


def _parse_v1(data: bytes) -> tuple[ProxyHeader, bytes] | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX:
            raise ProxyProtocolError("v1 header longer than 107 bytes")
        return None
    try:
        line = data[:end].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyProtocolError("v1 header is not ASCII") from None
    fields = line.split(" ")
    rest = data[end + 2:]
    if len(fields) >= 2 and fields[1] == "UNKNOWN":
        # §2.1: UNKNOWN (the proxy could not tell); whatever follows is ignored.
        return ProxyHeader(1, None, None), rest
    if len(fields) != 6 or fields[1] not in ("TCP4", "TCP6"):
        raise ProxyProtocolError("v1 header: expected PROXY TCP4|TCP6 src dst sport dport")
    version = 4 if fields[1] == "TCP4" else 6
    src = _v1_address(fields[2], version)
    dst = _v1_address(fields[3], version)
    return ProxyHeader(1, (src, _v1_port(fields[4])), (dst, _v1_port(fields[5]))), rest


def _v1_address(text: str, version: int) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyProtocolError(f"v1 header: bad address {text!r}") from None
    if address.version != version:
        raise ProxyProtocolError("v1 header: address does not match the protocol")
    return str(address)


def _v1_port(text: str) -> int:
    # §2.1: a decimal number 0..65535 (leading zeros are not allowed)
    if not text.isascii() or not text.isdigit() or len(text) > 5 or (
            len(text) > 1 and text[0] == "0"):
        raise ProxyProtocolError(f"v1 header: bad port {text!r}")
    port = int(text)
    if port > 65535:
        raise ProxyProtocolError(f"v1 header: bad port {text!r}")
    return port


def _parse_v2(data: bytes) -> tuple[ProxyHeader, bytes] | None:
    if len(data) < V2_HEADER:
        return None
    version_command, family_transport, length = struct.unpack_from("!BBH", data, 12)
    if version_command >> 4 != 2:
        raise ProxyProtocolError("v2 header: unknown version")
    command = version_command & 0x0F
    if command not in (_LOCAL, _PROXY):
        raise ProxyProtocolError("v2 header: unknown command")  # §2.2: must be dropped
    if length > V2_MAX_LENGTH:
        raise ProxyProtocolError("v2 header: too long")
    if len(data) < V2_HEADER + length:
        return None
    block = data[V2_HEADER:V2_HEADER + length]
    rest = data[V2_HEADER + length:]
    if command == _LOCAL:
        # §2.2: LOCAL is the proxy's own connection (health checks): use the real endpoints
        # and skip whatever the block holds.
        return ProxyHeader(2, None, None), rest
    family, transport = family_transport >> 4, family_transport & 0x0F
    if family not in (_INET, _INET6) or transport != _STREAM:
        # §2.2: an unspecified or a UNIX family carries nothing we can use as an address:
        # accept the connection with its real endpoints.
        if family not in (0, _INET, _INET6, _UNIX) or transport > 2:
            raise ProxyProtocolError("v2 header: unknown family or transport")
        return ProxyHeader(2, None, None), rest
    size = _V2_ADDRESS_SIZE[family]
    if length < size:
        raise ProxyProtocolError("v2 header: address block too short")
    if family == _INET:
        src_raw, dst_raw, sport, dport = struct.unpack_from("!4s4sHH", block)
        src = str(ipaddress.IPv4Address(src_raw))
        dst = str(ipaddress.IPv4Address(dst_raw))
    else:
        src_raw, dst_raw, sport, dport = struct.unpack_from("!16s16sHH", block)
        src = str(ipaddress.IPv6Address(src_raw))
        dst = str(ipaddress.IPv6Address(dst_raw))
    # TLVs after the addresses (ALPN, authority, SSL facts, ...) are not needed: skipped.
    return ProxyHeader(2, (src, sport), (dst, dport)), rest


def v1_header(src: tuple[str, int], dst: tuple[str, int]) -> bytes:
    """A v1 header, as a proxy would send it (for tests and the load generator)."""
    proto = "TCP6" if ":" in src[0] else "TCP4"
    return f"PROXY {proto} {src[0]} {dst[0]} {src[1]} {dst[1]}\r\n".encode("ascii")


def v2_header(src: tuple[str, int] | None, dst: tuple[str, int] | None,
              tlvs: bytes = b"") -> bytes:
    """A v2 header: PROXY over TCP with both addresses, or LOCAL when ``src`` is None."""
    if src is None or dst is None:
        return V2_SIGNATURE + struct.pack("!BBH", 0x20, 0x00, len(tlvs)) + tlvs
    s, d = ipaddress.ip_address(src[0]), ipaddress.ip_address(dst[0])
    family = _INET if s.version == 4 else _INET6
    block = s.packed + d.packed + struct.pack("!HH", src[1], dst[1]) + tlvs
    return V2_SIGNATURE + struct.pack("!BBH", 0x21, (family << 4) | _STREAM, len(block)) + block

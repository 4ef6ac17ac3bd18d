"""SDP (RFC 8866, formerly RFC 4566): the session descriptions SIP carries, parsed into lines
we can translate and written back. Only what a media session needs: o=, s=, c=, t=, m= and
a= lines; other lines (b=, i=, k=...) are read past, as RFC 8866 §5 lets a reader ignore what
it does not use.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field


class SdpError(ValueError):
    """Not an SDP we can read."""


@dataclass(slots=True)
class Media:
    """One m= section (RFC 8866 §5.14) with its c= and a= lines."""

    media: str
    port: int
    proto: str
    fmts: list[str]
    connection: str | None = None  # the address of a media-level c= line
    attrs: list[tuple[str, str | None]] = field(default_factory=list)

    def values(self, name: str) -> list[str]:
        return [v or "" for k, v in self.attrs if k == name]

    def value(self, name: str) -> str | None:
        for key, val in self.attrs:
            if key == name:
                return val or ""
        return None

    def has(self, name: str) -> bool:
        return any(k == name for k, _ in self.attrs)


@dataclass(slots=True)
class Sdp:
    origin: str = ""
    session_name: str = "-"
    connection: str | None = None
    attrs: list[tuple[str, str | None]] = field(default_factory=list)
    media: list[Media] = field(default_factory=list)

    def values(self, name: str) -> list[str]:
        return [v or "" for k, v in self.attrs if k == name]

    def value(self, name: str) -> str | None:
        for key, val in self.attrs:
            if key == name:
                return val or ""
        return None


def _connection_address(value: str) -> str:
    # c=<nettype> <addrtype> <connection-address> (§5.7); a multicast /ttl is dropped.
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN":
        raise SdpError(f"bad c= line {value!r}")
    return parts[2].split("/")[0]


def parse_sdp(text: str | bytes) -> Sdp:
    """Parse a description. ``v=`` and ``o=`` are not required, so that the fragments of
    INFO and trickle ICE (m= and a= lines only) read the same way."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SdpError("not UTF-8") from exc
    sdp = Sdp()
    current: Media | None = None
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"bad line {line[:60]!r}")
        kind, value = line[0], line[2:]
        if kind == "m":
            parts = value.split()
            if len(parts) < 4 or not parts[1].split("/")[0].isdigit():
                raise SdpError(f"bad m= line {value!r}")
            current = Media(parts[0], int(parts[1].split("/")[0]), parts[2], parts[3:])
            sdp.media.append(current)
        elif kind == "a":
            name, colon, val = value.partition(":")
            attr = (name, val if colon else None)
            (current.attrs if current is not None else sdp.attrs).append(attr)
        elif kind == "c":
            address = _connection_address(value)
            if current is not None:
                current.connection = address
            else:
                sdp.connection = address
        elif kind == "o" and current is None:
            sdp.origin = value
        elif kind == "s" and current is None:
            sdp.session_name = value
    return sdp


def _addr(address: str) -> str:
    return f"IN {'IP6' if ':' in address else 'IP4'} {address}"


def new_origin(address: str) -> str:
    """An o= value (§5.2): "-" as user name, a random session id, version 1."""
    return f"- {secrets.randbelow(2**62)} 1 {_addr(address)}"


def render_sdp(sdp: Sdp) -> str:
    lines = ["v=0", f"o={sdp.origin}", f"s={sdp.session_name or '-'}"]
    if sdp.connection:
        lines.append(f"c={_addr(sdp.connection)}")
    lines.append("t=0 0")
    lines.extend(_attr_line(k, v) for k, v in sdp.attrs)
    for m in sdp.media:
        lines.append(f"m={m.media} {m.port} {m.proto} {' '.join(m.fmts)}")
        if m.connection:
            lines.append(f"c={_addr(m.connection)}")
        lines.extend(_attr_line(k, v) for k, v in m.attrs)
    return "\r\n".join(lines) + "\r\n"


def _attr_line(name: str, value: str | None) -> str:
    return f"a={name}" if value is None else f"a={name}:{value}"

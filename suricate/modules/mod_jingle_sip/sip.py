"""SIP messages (RFC 3261 §7): parsing, writing and the header values the bridge reads.

Pure functions and data, no I/O: the user agent (``ua.py``) feeds bytes in and writes what
``SipMessage.to_bytes`` gives. What is not valid SIP raises ``SipParseError``; the caller
decides between dropping it (a datagram that is not SIP at all, RFC 3261 §18.3) and answering
400 (a request whose start line parsed, §8.2.2 / §16.3).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

#: RFC 3261 §7.3.3: the compact forms of header names.
_COMPACT = {
    "i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length",
    "c": "Content-Type", "f": "From", "s": "Subject", "k": "Supported", "t": "To", "v": "Via",
}
#: Canonical spellings for the headers we write or look up.
_CANONICAL = {name.lower(): name for name in (
    "Call-ID", "Contact", "Content-Length", "Content-Type", "CSeq", "From", "To", "Via",
    "Max-Forwards", "Route", "Record-Route", "User-Agent", "Allow", "Supported", "Reason",
)}
_CANONICAL["cseq"] = "CSeq"
_CANONICAL["call-id"] = "Call-ID"

#: RFC 3261 §8.1.1.7: a branch that starts with the magic cookie is unique per transaction.
BRANCH_COOKIE = "z9hG4bK"

_REQUEST_LINE = re.compile(r"^([A-Za-z]+) (\S+) SIP/2\.0$")
_STATUS_LINE = re.compile(r"^SIP/2\.0 ([1-6]\d\d) ?(.*)$")
_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")

REASONS = {
    100: "Trying", 180: "Ringing", 183: "Session Progress", 200: "OK",
    400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    415: "Unsupported Media Type", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 500: "Server Internal Error", 503: "Service Unavailable",
    603: "Decline",
}


class SipParseError(ValueError):
    """Not a SIP message we can read (RFC 3261 §7)."""


@dataclass(slots=True)
class SipMessage:
    """A request (``method`` and ``uri`` set) or a response (``status`` set)."""

    method: str | None = None
    uri: str | None = None
    status: int | None = None
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return self.method is not None

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        """Every value of ``name``, comma-separated lists split (RFC 3261 §7.3.1)."""
        wanted = name.lower()
        values: list[str] = []
        for key, value in self.headers:
            if key.lower() == wanted:
                values.extend(split_list(value))
        return values

    def set_header(self, name: str, value: str) -> None:
        self.headers = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        self.headers.append((name, value))

    @property
    def call_id(self) -> str:
        return self.header("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        """(number, method) of the CSeq header (RFC 3261 §8.1.1.5)."""
        value = self.header("CSeq") or ""
        parts = value.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise SipParseError(f"bad CSeq {value!r}")
        return int(parts[0]), parts[1].upper()

    @property
    def top_branch(self) -> str:
        vias = self.header_values("Via")
        if not vias:
            return ""
        return header_params(vias[0]).get("branch", "")

    def to_bytes(self) -> bytes:
        if self.method is not None:
            start = f"{self.method} {self.uri} SIP/2.0"
        else:
            start = f"SIP/2.0 {self.status} {self.reason}"
        lines = [start]
        for key, value in self.headers:
            if key.lower() != "content-length":
                lines.append(f"{key}: {value}")
        # §18.3 / §20.14: always written, so that a stream transport can frame the message.
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


def parse(data: bytes) -> SipMessage:
    """One whole message (a datagram, or what ``frame`` cut from a stream)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise SipParseError("no empty line after the headers")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError("headers are not UTF-8") from exc
    # §7.3.1: a line starting with white space continues the previous one.
    text = re.sub(r"\r\n[ \t]+", " ", text)
    lines = text.split("\r\n")
    msg = SipMessage()
    request = _REQUEST_LINE.match(lines[0])
    if request:
        msg.method, msg.uri = request.group(1).upper(), request.group(2)
    else:
        status = _STATUS_LINE.match(lines[0])
        if not status:
            raise SipParseError(f"bad start line {lines[0][:80]!r}")
        msg.status, msg.reason = int(status.group(1)), status.group(2)
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not _TOKEN.match(name):
            raise SipParseError(f"bad header line {line[:80]!r}")
        name = _COMPACT.get(name.lower(), name) if len(name) == 1 else name
        msg.headers.append((_CANONICAL.get(name.lower(), name), value.strip()))
    length = msg.header("Content-Length")
    if length is not None:
        if not length.isdigit():
            raise SipParseError("bad Content-Length")
        if int(length) > len(body):
            raise SipParseError("body shorter than Content-Length")
        body = body[:int(length)]
    msg.body = body
    for needed in ("Via", "From", "To", "Call-ID", "CSeq"):
        if msg.header(needed) is None:  # §8.1.1: the mandatory headers
            raise SipParseError(f"missing {needed}")
    msg.cseq  # noqa: B018 -- validates it
    return msg


def frame(buffer: bytes) -> tuple[bytes, bytes] | None:
    """Cut one message off a stream (RFC 3261 §18.3: Content-Length frames it): (message,
    rest), or None while incomplete. Leading CRLFs (keep-alives, RFC 5626 §4.4.1) go."""
    buffer = buffer.lstrip(b"\r\n")
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > 65536:
            raise SipParseError("headers too long")
        return None
    head = buffer[:end].decode("utf-8", "replace")
    match = re.search(r"(?im)^(?:content-length|l)[ \t]*:[ \t]*(\d+)[ \t]*$", head)
    if match is None:
        raise SipParseError("no Content-Length on a stream transport")
    total = end + 4 + int(match.group(1))
    if len(buffer) < total:
        return None
    return buffer[:total], buffer[total:]


# -- header values ----------------------------------------------------------------------------

def split_list(value: str) -> list[str]:
    """Split a comma-separated header value, keeping commas inside quotes and <...>."""
    out: list[str] = []
    depth, quoted, start = 0, False, 0
    for i, ch in enumerate(value):
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">":
            depth -= 1
        elif not quoted and depth == 0 and ch == ",":
            out.append(value[start:i].strip())
            start = i + 1
    tail = value[start:].strip()
    if tail:
        out.append(tail)
    return out


def header_params(value: str) -> dict[str, str]:
    """The ;params after a Via or a name-addr (``tag``, ``branch``, ``received``...)."""
    if ">" in value:
        value = value[value.rindex(">") + 1:]
    params: dict[str, str] = {}
    for part in value.split(";")[1:]:
        name, _, val = part.strip().partition("=")
        if name:
            params[name.lower()] = val.strip()
    return params


@dataclass(frozen=True, slots=True)
class SipUri:
    """sip:user@host:port;params (RFC 3261 §19.1.1), as far as the bridge needs it."""

    user: str | None
    host: str
    port: int | None = None
    params: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        params = "".join(f";{k}={v}" if v else f";{k}" for k, v in self.params)
        return f"sip:{user}{self.host}{port}{params}"


def parse_uri(text: str) -> SipUri:
    text = text.strip()
    scheme, colon, rest = text.partition(":")
    if not colon or scheme.lower() not in ("sip", "sips"):
        raise SipParseError(f"not a SIP URI: {text[:80]!r}")
    rest = rest.split("?", 1)[0]
    hostpart, *raw_params = rest.split(";")
    user: str | None = None
    if "@" in hostpart:
        user, hostpart = hostpart.rsplit("@", 1)
        user = user.split(":", 1)[0]  # user:password (deprecated) -> user
    port: int | None = None
    if hostpart.startswith("["):
        host, _, after = hostpart[1:].partition("]")
        if after.startswith(":") and after[1:].isdigit():
            port = int(after[1:])
    else:
        host, _, port_text = hostpart.partition(":")
        if port_text:
            if not port_text.isdigit():
                raise SipParseError(f"bad port in {text[:80]!r}")
            port = int(port_text)
    if not host:
        raise SipParseError(f"no host in {text[:80]!r}")
    params = tuple((p.partition("=")[0].lower(), p.partition("=")[2]) for p in raw_params if p)
    return SipUri(user or None, host.lower(), port, params)


def name_addr_uri(value: str) -> SipUri:
    """The URI of a From/To/Contact value: ``"Name" <sip:...>;tag=x`` or ``sip:...;tag=x``."""
    if "<" in value:
        inner = value[value.index("<") + 1:]
        if ">" not in inner:
            raise SipParseError(f"unclosed <> in {value[:80]!r}")
        return parse_uri(inner[:inner.index(">")])
    # §20.10: without <>, the parameters after the URI are header parameters (tag...).
    return parse_uri(value.split(";", 1)[0])


def tag_of(value: str | None) -> str | None:
    return None if value is None else header_params(value).get("tag")


def new_branch() -> str:
    return BRANCH_COOKIE + secrets.token_hex(8)


def new_tag() -> str:
    return secrets.token_hex(6)


def response_to(request: SipMessage, status: int, to_tag: str | None = None,
                reason: str | None = None) -> SipMessage:
    """RFC 3261 §8.2.6.2: a response copies Via, From, Call-ID and CSeq, and To with a tag
    (added unless the request had one, or the response is 100)."""
    resp = SipMessage(status=status, reason=reason or REASONS.get(status, "Unknown"))
    for key, value in request.headers:
        if key in ("Via", "From", "Call-ID", "CSeq", "Record-Route"):
            resp.headers.append((key, value))
    to = request.header("To") or ""
    if to_tag and tag_of(to) is None and status != 100:
        to = f"{to};tag={to_tag}"
    resp.headers.append(("To", to))
    return resp

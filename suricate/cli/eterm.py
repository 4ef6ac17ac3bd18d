"""A decoder for the part of Erlang's external term format (``term_to_binary``) that
MongooseIM's archive writes: an exml element, ``{xmlel, Name, Attrs, Children}`` with
``{xmlcdata, Text}`` children, possibly compressed (``term_to_binary(T, [compressed])``).

Only what such a term can hold is read: tuples, lists (proper, and byte strings), binaries,
atoms, small and big integers, floats and maps (exml 4 keeps attributes in a map). Anything
else (pids, references, funs, ports...) is refused with ``ETermError``: an archive row is
data, never code, and nothing here builds more than plain Python values.

Tags are those of the "External Term Format" chapter of Erlang's ERTS user's guide.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

from suricate.xml.element import Element

__all__ = ["Atom", "ETermError", "decode", "element_of", "message_element"]

VERSION = 131
MAX_DEPTH = 200  # a stanza is a few levels deep; refuse a term built to exhaust the stack
MAX_INFLATED = 16 * 1024 * 1024  # one archived message; refuse a compression bomb

_NEW_FLOAT, _BIT_BINARY, _COMPRESSED = 70, 77, 80
_SMALL_INTEGER, _INTEGER, _FLOAT = 97, 98, 99
_ATOM, _SMALL_TUPLE, _LARGE_TUPLE, _NIL = 100, 104, 105, 106
_STRING, _LIST, _BINARY, _SMALL_BIG, _LARGE_BIG = 107, 108, 109, 110, 111
_MAP, _ATOM_UTF8, _SMALL_ATOM_UTF8, _SMALL_ATOM = 116, 118, 119, 115


class ETermError(ValueError):
    """Not a term of the supported subset, or a malformed one."""


@dataclass(frozen=True, slots=True)
class Atom:
    name: str


def decode(data: bytes) -> Any:
    """The term of a ``term_to_binary`` result; raises ETermError."""
    if not data or data[0] != VERSION:
        raise ETermError("not an external term (no version byte 131)")
    if len(data) > 1 and data[1] == _COMPRESSED:
        if len(data) < 6:
            raise ETermError("truncated compressed term")
        size = struct.unpack(">I", data[2:6])[0]
        if size > MAX_INFLATED:
            raise ETermError(f"compressed term of {size} bytes, over the limit")
        inflater = zlib.decompressobj()
        try:
            body = inflater.decompress(data[6:], size + 1)
        except zlib.error as exc:
            raise ETermError(f"bad zlib data ({exc})") from None
        if len(body) != size:
            raise ETermError("compressed term: size does not match")
        data = bytes([VERSION]) + body
    reader = _Reader(data, 1)
    term = reader.term(0)
    if reader.pos != len(data):
        raise ETermError("trailing bytes after the term")
    return term


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int) -> None:
        self.data, self.pos = data, pos

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise ETermError("truncated term")
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def term(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise ETermError("term nested too deep")
        tag = self.u8()
        if tag == _SMALL_INTEGER:
            return self.u8()
        if tag == _INTEGER:
            return int(struct.unpack(">i", self.take(4))[0])
        if tag in (_SMALL_BIG, _LARGE_BIG):
            n = self.u8() if tag == _SMALL_BIG else self.u32()
            sign = self.u8()
            value = int.from_bytes(self.take(n), "little")
            return -value if sign else value
        if tag == _NEW_FLOAT:
            return float(struct.unpack(">d", self.take(8))[0])
        if tag == _FLOAT:
            return float(self.take(31).split(b"\0", 1)[0].decode("ascii"))
        if tag in (_ATOM, _ATOM_UTF8):
            return Atom(self.take(self.u16()).decode("utf-8" if tag == _ATOM_UTF8
                                                     else "latin-1"))
        if tag in (_SMALL_ATOM, _SMALL_ATOM_UTF8):
            return Atom(self.take(self.u8()).decode("utf-8" if tag == _SMALL_ATOM_UTF8
                                                    else "latin-1"))
        if tag in (_SMALL_TUPLE, _LARGE_TUPLE):
            arity = self.u8() if tag == _SMALL_TUPLE else self.u32()
            return tuple(self.term(depth + 1) for _ in range(arity))
        if tag == _NIL:
            return []
        if tag == _STRING:
            return list(self.take(self.u16()))
        if tag == _LIST:
            n = self.u32()
            if n > len(self.data) - self.pos:  # each element takes at least one byte
                raise ETermError("truncated term")
            items = [self.term(depth + 1) for _ in range(n)]
            tail = self.term(depth + 1)
            if tail != []:
                raise ETermError("improper list")
            return items
        if tag == _BINARY:
            return self.take(self.u32())
        if tag == _BIT_BINARY:
            raise ETermError("bitstring (not a binary)")
        if tag == _MAP:
            n = self.u32()
            if n > len(self.data) - self.pos:
                raise ETermError("truncated term")
            out: dict[Any, Any] = {}
            for _ in range(n):
                key = self.term(depth + 1)
                value = self.term(depth + 1)
                try:
                    out[key] = value
                except TypeError:
                    raise ETermError("map key of an unsupported type") from None
            return out
        raise ETermError(f"unsupported term tag {tag}")


def _text(value: Any) -> str:
    """A binary, or an iolist of binaries and bytes (exml accepts both), as text."""
    try:
        return _bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ETermError(f"text is not UTF-8 ({exc})") from None


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, list):
        return b"".join(bytes([v]) if isinstance(v, int) and 0 <= v < 256 else _bytes(v)
                        for v in value)
    raise ETermError(f"expected text, got {type(value).__name__}")


def element_of(term: Any, parent_ns: str = "") -> Element:
    """The Element of an exml ``{xmlel, Name, Attrs, Children}`` term; ``xmlns`` attributes
    become the element's namespace (inherited by children written without one)."""
    if not (isinstance(term, tuple) and len(term) == 4 and term[0] == Atom("xmlel")):
        raise ETermError("not an xmlel tuple")
    _, name, attrs, children = term
    try:
        pairs = list(attrs.items()) if isinstance(attrs, dict) else [tuple(a) for a in attrs]
        texts = [(_text(k), _text(v)) for k, v in pairs]
        tag = _text(name)
    except (TypeError, ValueError) as exc:
        raise ETermError(f"bad element name or attribute ({exc})") from None
    attributes = dict(texts)
    xmlns = attributes.pop("xmlns", parent_ns)
    if ":" in tag:
        raise ETermError(f"prefixed element name {tag!r}")
    el = Element(tag, xmlns, attributes)
    if not isinstance(children, list):
        raise ETermError("children is not a list")
    for child in children:
        if isinstance(child, tuple) and len(child) == 2 and child[0] == Atom("xmlcdata"):
            el.children.append(_text(child[1]))
        else:
            el.children.append(element_of(child, xmlns))
    return el


def message_element(data: bytes) -> Element:
    """An archived message (``mam_message.message``) as an Element: the external term
    format (MongooseIM's default ``db_message_format``, compressed or not), or XML text
    (``mam_message_xml``)."""
    from suricate.xml.parser import XMLStreamError, parse_fragment
    if data[:1] == bytes([VERSION]):
        return element_of(decode(data), "jabber:client")
    try:
        elements = parse_fragment(data.decode("utf-8"), "jabber:client")
    except (UnicodeDecodeError, XMLStreamError) as exc:
        raise ETermError(f"neither an external term nor XML ({exc})") from None
    if len(elements) != 1:
        raise ETermError("not one XML element")
    return elements[0]

"""What travels between nodes: marshalled tuples whose first item says what it is; stanzas
travel as nested tuples, not XML. ``frame``/``Deframer`` add a length prefix for a byte stream.

``marshal`` is C on both sides and its format is specific to the interpreter version: every
node of a cluster runs the same Suricate build (as the nodes of an Erlang cluster run the same
release). Turning an ``Element`` into tuples and back costs less than serializing and parsing
XML again. It is read only from the cluster's own Redis or nodes, never from clients.
"""

from __future__ import annotations

import marshal
from typing import Any

from suricate.protocol.c2s import STREAM_PREFIXES
from suricate.xml import ns
from suricate.xml.element import Element
from suricate.xml.parser import parse_fragment

# Frame kinds (the first item of each tuple).
STANZA = "s"     # (STANZA, from, to, stanza, mode): to a session of the receiving node
# (XML, from, to, data): a message or IQ to a full JID, ``data`` the bytes a client stream
# writes for it (``serialized``). When the recipient's session needs no element (no stream
# management, no receive filter) the receiving node writes them to its socket as they are:
# no unpack, no routing, no serialization there (issue 14); otherwise it parses them (``parse``)
# and goes the STANZA way, mode TO_FULL.
XML = "x"
REPLACE = "r"    # (REPLACE, full jid): a new session took the JID (RFC 6120 §7.7.2.2)
# (SERVICE, service name, hops, from, to, stanza): for a service of the receiving node (a MUC
# room it owns, mod_muc/placement.py), not for a session.
SERVICE = "v"
# Link framing (links.py), never handed to the node: (BATCH, items) carries the items written
# during one loop turn in one frame (one marshal call each side, one write); (ACK, count) goes
# back on the same connection: the receiver has handled the first ``count`` items.
BATCH = "b"
ACK = "a"

# STANZA modes: what the receiving node does when the session is gone or unavailable.
TO_FULL = 0        # sent to a full JID: RFC 6121 §8.5.3.2 there
ONLY_COPY = 1      # the only copy of a bare-JID stanza: to the bare JID there (§8.5.2)
ONE_OF_COPIES = 2  # one copy among several: a message to the bare JID there, presence dropped

_LENGTH = 4
MAX_FRAME = 64 * 1024 * 1024  # far above any stanza a listener accepts


def pack(el: Element) -> tuple[Any, ...]:
    return (el.name, el.xmlns, el.attrs,
            [pack(c) if isinstance(c, Element) else c for c in el.children])


def unpack(t: tuple[Any, ...]) -> Element:
    name, xmlns, attrs, children = t
    return Element(name, xmlns, attrs,
                   [c if isinstance(c, str) else unpack(c) for c in children])


def serialized(el: Element) -> bytes:
    """``el`` as a client stream writes it (its namespace implicit, RFC 6120 §4.8.3)."""
    return el.to_bytes(ns.CLIENT, STREAM_PREFIXES)


def parse(data: bytes) -> Element:
    """The element ``serialized`` wrote."""
    return parse_fragment(data.decode(), ns.CLIENT)[0]


def frame(*items: Any) -> bytes:
    body = marshal.dumps(items)
    return len(body).to_bytes(_LENGTH, "big") + body


class FrameError(Exception):
    """The peer sent something that is not a frame: a bug of ours, the link is dropped."""


class Deframer:
    """Bytes in, complete frames out."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[Any, ...]]:
        buf = self._buf
        buf += data
        frames: list[tuple[Any, ...]] = []
        pos = 0
        end = len(buf)
        # The view must be released before the buffer is resized below.
        with memoryview(buf) as view:
            while end - pos >= _LENGTH:
                size = int.from_bytes(view[pos:pos + _LENGTH], "big")
                if size > MAX_FRAME:
                    raise FrameError(f"frame of {size} bytes")
                start = pos + _LENGTH
                if end - start < size:
                    break
                try:
                    item = marshal.loads(view[start:start + size])
                except (ValueError, EOFError, TypeError) as exc:
                    raise FrameError(str(exc)) from None
                if not isinstance(item, tuple) or not item:
                    raise FrameError("not a tuple")
                frames.append(item)
                pos = start + size
        if pos:
            del buf[:pos]
        return frames

"""The bus wire format: length-prefixed frames, each a marshalled tuple whose first item says
what it is; stanzas travel as nested tuples, not XML.

``marshal`` is C on both sides and every worker is the same interpreter binary (they are
forked from one supervisor), so its version-specific format is no concern; it is never read
from anyone else (the bus sockets live in a directory only our user can open). Turning an
``Element`` into tuples and back costs less than serializing and parsing XML again, and a
cross-worker stanza pays one or the other on top of the single-worker path.
"""

from __future__ import annotations

import marshal
from typing import Any

from suricate.xml.element import Element

# Frame kinds (the first item of each tuple).
HELLO = "h"      # (HELLO, worker index): first frame on a link, names the sender
STATE = "p"      # (STATE, full jid, priority, presence|None, flags, blocklist): bound/changed
GONE = "g"       # (GONE, full jid): the session left
STANZA = "s"     # (STANZA, hops, full jid, stanza): deliver() on the owner
SEND = "o"       # (SEND, full jid, stanza): send() on the owner (roster pushes: no filters)
REPLACE = "r"    # (REPLACE, full jid): a new session took the JID (RFC 6120 §7.7.2.2)
KICK = "k"       # (KICK, full jid, condition, text): end the session with a stream error
ROSTER = "R"     # (ROSTER, bare jid): the account's roster changed in storage: reload caches
# Redis nodes only: (SERVICE, service name, hops, from, to, stanza): for a local service of
# the receiving node (a MUC room it owns), not for a session.
SERVICE = "v"

_LENGTH = 4
MAX_FRAME = 64 * 1024 * 1024  # far above any stanza a listener accepts


def pack(el: Element) -> tuple[Any, ...]:
    return (el.name, el.xmlns, el.attrs,
            [pack(c) if isinstance(c, Element) else c for c in el.children])


def unpack(t: tuple[Any, ...]) -> Element:
    name, xmlns, attrs, children = t
    return Element(name, xmlns, attrs,
                   [c if isinstance(c, str) else unpack(c) for c in children])


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

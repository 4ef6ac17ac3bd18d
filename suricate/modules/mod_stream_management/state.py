"""A resumable session as plain data: what travels from one node to another when a client
resumes its session elsewhere (``handover.py``) and what the Redis copy holds (``mirror.py``).

Plain data (str, int, bytes, lists, dicts, tuples) because it travels marshalled, over the
cluster's request channel or through Redis; stanzas as nested tuples (name, namespace,
attributes, children), not XML: turning them back costs no parsing. Read only from the
cluster's own Redis and nodes, never from clients.
"""

from __future__ import annotations

import marshal
import struct
from dataclasses import dataclass, field
from typing import Any

from suricate.jid import JID
from suricate.protocol.sm import MOD, StreamManagement
from suricate.xml.element import Element

Packed = tuple[Any, ...]


def pack(el: Element) -> Packed:
    return (el.name, el.xmlns, el.attrs,
            [pack(c) if isinstance(c, Element) else c for c in el.children])


def unpack(t: Packed | list[Any]) -> Element:
    name, xmlns, attrs, children = t
    return Element(name, xmlns, dict(attrs),
                   [c if isinstance(c, str) else unpack(c) for c in children])


def dumps(el: Element) -> bytes:
    return marshal.dumps(pack(el))


def loads(raw: bytes) -> Element:
    # marshal.loads ignores bytes after the object: an entry with its send time reads too.
    return unpack(marshal.loads(raw))


# An entry of the Redis copy's buffer (``smbuf:<id>``, mirror.py): the stanza as ``dumps``
# writes it, then when it was sent (XEP-0203: a message sent again carries that time as its
# delay) as 8 bytes (a little-endian double, Unix time), then ``SENT_MARK``: 9 bytes more
# per stanza. The time follows the stanza, so that a node that does not know it (an older
# version, during an upgrade) reads the stanza alone (``loads``). An entry written before
# the time was kept ends with the marshalled stanza, never with 0xff: the stanza's packed
# form ends with its last child, that is an empty list's 4-byte length, or a string (UTF-8
# or ASCII bytes, never 0xff, or the 4-byte index of a string marshalled before), so that
# such an entry loads with no time (``loads_sent``).
SENT_MARK = b"\xff"
_SENT = struct.Struct("<d")
_TRAILER = _SENT.size + len(SENT_MARK)


def dumps_sent(el: Element, when: float) -> bytes:
    return marshal.dumps(pack(el)) + _SENT.pack(when) + SENT_MARK


def loads_sent(raw: bytes) -> tuple[Element, float | None]:
    """An entry of the copy's buffer: the stanza, and when it was sent (None: an entry
    written before the time was kept)."""
    when = None
    if raw[-1:] == SENT_MARK and len(raw) > _TRAILER:
        when = _SENT.unpack_from(raw, len(raw) - _TRAILER)[0]
    return loads(raw), when


@dataclass
class SessionState:
    """One resumable session (XEP-0198 §5) away from its stream."""

    jid: JID  # the full JID it is bound to
    priority: int
    presence: Element | None  # the last available presence, None when unavailable
    h_in: int  # stanzas handled from the client
    acked: int  # the client's last acknowledgement: the buffer starts after it
    unacked: list[Element]  # sent (or waiting to be), not acknowledged, oldest first
    modules: dict[str, Any] = field(default_factory=dict)  # SESSION_HANDOVER, plain data

    def to_plain(self) -> dict[str, Any]:
        return {"jid": str(self.jid), "priority": self.priority,
                "presence": pack(self.presence) if self.presence is not None else None,
                "h_in": self.h_in, "acked": self.acked,
                "unacked": [pack(s) for s in self.unacked], "modules": self.modules}

    @classmethod
    def from_plain(cls, plain: dict[str, Any]) -> SessionState:
        presence = plain["presence"]
        return cls(JID.parse(plain["jid"]), int(plain["priority"]),
                   unpack(presence) if presence is not None else None,
                   int(plain["h_in"]), int(plain["acked"]),
                   [unpack(s) for s in plain["unacked"]], dict(plain.get("modules") or {}))

    def counters_for(self, sm: StreamManagement, client_h: int) -> list[Element]:
        """Put the counters in ``sm`` as the client's <resume h=.../> finds them; what it
        still has not acknowledged (to send again after <resumed/>).

        The client may acknowledge more than this state holds: after a node crash the copy
        in Redis lags by up to one mirror batch, and the stanzas of that lag reached the
        client (it counts them): nothing of them is left to send again."""
        sm.h_in = self.h_in % MOD
        handled = (client_h - self.acked) % MOD
        unacked = self.unacked[handled:] if handled <= len(self.unacked) else []
        sm.acked = sm.h_out = client_h % MOD
        return unacked

"""The limit on what waits in a connection's outgoing buffer (TCP, WebSocket).

A peer that does not read its socket must not grow our memory without bound: once more than
the limit waits for it, its stream ends with ``policy-violation``. But one element larger than
the limit is not a peer that does not read: with no ``max_stanza_size`` (the default, as in
MongooseIM) a 30 MB message is accepted, archived and delivered, and most of it waits in our
buffer however fast the recipient reads. Cutting the recipient off for it would cut them off
again at every login, when the archive (XEP-0313) or offline storage hands the same message
back. So such an element is allowed on top of the limit while it drains; what waits behind it
is held to the limit, and a second oversized element before the first has drained is not
allowed. The buffer stays bounded by the limit plus one write.
"""

from __future__ import annotations


class OutputCap:
    """Made by a connection the first time its buffer goes over the limit, dropped once the
    allowance has drained (most connections never have one)."""

    __slots__ = ("_allowed", "_since")

    def __init__(self) -> None:
        # Bytes buffered right after the last oversized write, allowed over the limit until
        # the peer has read them (the buffer is first in, first out)...
        self._allowed = 0
        # ... and the bytes written after that write, to tell what was read since.
        self._since = 0

    @property
    def active(self) -> bool:
        return self._allowed > 0

    def overflows(self, written: int, waiting: int, limit: int) -> bool:
        """After a write of ``written`` bytes, ``waiting`` bytes are buffered: is the peer over
        the limit?"""
        allowed_left = 0
        if self._allowed:
            self._since += written
            read = self._allowed + self._since - waiting
            allowed_left = max(0, self._allowed - read)
            if not allowed_left:
                self._allowed = self._since = 0
        behind = waiting - allowed_left
        if behind <= limit:
            return False
        # What waited before this write and was not read yet (the transport writes from the
        # front of its buffer: this write is at the end).
        older = max(0, behind - written)
        if written > limit and older <= limit and not allowed_left:
            # One element larger than the limit, for a peer that kept up so far.
            self._allowed, self._since = waiting, 0
            return False
        return True


def after_write(cap: OutputCap | None, written: int, waiting: int,
                limit: int) -> tuple[OutputCap | None, bool]:
    """A connection's cap after a write of ``written`` bytes left ``waiting`` buffered, and
    whether its peer is over ``limit``. The cap exists only while an allowance drains."""
    if cap is None:
        if waiting <= limit:
            return None, False
        cap = OutputCap()
    over = cap.overflows(written, waiting, limit)
    return (cap if cap.active else None), over

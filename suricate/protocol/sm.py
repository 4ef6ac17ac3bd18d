"""XEP-0198 Stream Management as data: the counters and the unacknowledged-stanza buffer of one
session, with no I/O. The c2s stream counts through it; mod_stream_management owns the policy
(enable, resumption, timeouts).

Counters are modulo 2^32 (XEP-0198 §4: "h" wraps). ``h_in`` counts the stanzas handled from
the client; the server's outbound stanzas wait in ``buffer`` until the client's <a h=.../>
covers them.
"""

from __future__ import annotations

from collections import deque

from suricate.xml.element import Element

__all__ = ["MOD", "BufferOverflow", "HandledCountTooHigh", "StreamManagement"]

MOD = 2 ** 32


class BufferOverflow(Exception):
    """More unacknowledged stanzas than buffer_max (the stream ends: resource-constraint)."""


class HandledCountTooHigh(Exception):
    """The client acknowledged stanzas we never sent (XEP-0198 §4: undefined-condition with
    <handled-count-too-high/>)."""

    def __init__(self, h: int, send_count: int) -> None:
        super().__init__(f"h={h} send-count={send_count}")
        self.h = h
        self.send_count = send_count


class StreamManagement:
    __slots__ = ("id", "resume", "h_in", "h_out", "acked", "buffer", "buffer_max", "ack_freq",
                 "_since_request")

    def __init__(self, sm_id: str, resume: bool, buffer_max: int | None,
                 ack_freq: int | None) -> None:
        self.id = sm_id
        self.resume = resume
        self.h_in = 0  # stanzas handled from the client
        self.h_out = 0  # stanzas sent to the client
        self.acked = 0  # the client's last <a h=.../>
        self.buffer: deque[Element] = deque()  # sent, not acknowledged, oldest first
        self.buffer_max = buffer_max  # None: unlimited
        self.ack_freq = ack_freq  # None: never request
        self._since_request = 0

    def stanza_in(self) -> None:
        self.h_in = (self.h_in + 1) % MOD

    def stanza_out(self, stanza: Element) -> bool:
        """Record a stanza sent; True when an <r/> should follow (every ack_freq stanzas)."""
        self.buffer.append(stanza)
        self.h_out = (self.h_out + 1) % MOD
        if self.buffer_max is not None and len(self.buffer) > self.buffer_max:
            raise BufferOverflow(len(self.buffer))
        if self.ack_freq is None:
            return False
        self._since_request += 1
        if self._since_request >= self.ack_freq:
            self._since_request = 0
            return True
        return False

    def ack(self, h: int) -> None:
        """The client handled our stanzas up to ``h``: forget them."""
        count = (h - self.acked) % MOD
        if count > len(self.buffer):
            raise HandledCountTooHigh(h, self.h_out)
        for _ in range(count):
            self.buffer.popleft()
        self.acked = h % MOD

    def take_unacked(self) -> list[Element]:
        """Empty the buffer (for retransmission after resumption, or re-routing when the
        session dies): the counters go back to the last acknowledgement."""
        pending = list(self.buffer)
        self.buffer.clear()
        self.h_out = self.acked
        return pending

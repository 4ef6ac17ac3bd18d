"""XEP-0198 Stream Management as data: the counters and the unacknowledged-stanza buffer of one
session, with no I/O. The c2s stream counts through it; mod_stream_management owns the policy
(enable, resumption, timeouts).

Counters are modulo 2^32 (XEP-0198 §4: "h" wraps). ``h_in`` counts the stanzas handled from
the client; the server's outbound stanzas wait in ``buffer`` until the client's <a h=.../>
covers them, with the time each was sent (``sent_at``): a message that leaves the buffer
unacknowledged (sent again on resumption, or re-routed to offline storage when nobody
resumed) carries that time as its XEP-0203 delay, not the time it is finally delivered.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from suricate.xml import ns
from suricate.xml.element import Element

__all__ = ["MOD", "BufferOverflow", "HandledCountTooHigh", "StreamManagement", "delayed",
           "delayed_since"]

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
    __slots__ = ("id", "resume", "h_in", "h_out", "acked", "buffer", "sent_at", "buffer_max",
                 "ack_freq", "_since_request", "_base_max")

    def __init__(self, sm_id: str, resume: bool, buffer_max: int | None,
                 ack_freq: int | None) -> None:
        self.id = sm_id
        self.resume = resume
        self.h_in = 0  # stanzas handled from the client
        self.h_out = 0  # stanzas sent to the client
        self.acked = 0  # the client's last <a h=.../>
        # Lists, not deques: an empty deque keeps a 64-slot block (~760 bytes with the object),
        # and every session holds these two whether it ever has anything unacknowledged; an
        # empty list is 56 bytes, and an ack drops a prefix in one step (``ack``).
        self.buffer: list[Element] = []  # sent, not acknowledged, oldest first
        self.sent_at: list[float] = []  # when each of them was sent (Unix time)
        self.buffer_max = buffer_max  # None: unlimited
        self.ack_freq = ack_freq  # None: never request
        self._since_request = 0
        self._base_max: int | None = None  # buffer_max while a burst is allowed (allow_burst)

    def stanza_in(self) -> None:
        self.h_in = (self.h_in + 1) % MOD

    def stanza_out(self, stanza: Element) -> bool:
        """Record a stanza sent; True when an <r/> should follow (every ack_freq stanzas)."""
        self.buffer.append(stanza)
        self.sent_at.append(time.time())
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

    def allow_burst(self, count: int) -> None:
        """Let ``count`` stanzas more than ``buffer_max`` wait for acknowledgement, until the
        client has acknowledged its way back under ``buffer_max``: the server sends them in
        one go (the messages stored while the account was offline, XEP-0160), faster than
        any client can answer the ``<r/>``s; past ``buffer_max`` the stream would end, and
        the same flood end the next login too."""
        if self.buffer_max is None or count <= 0:
            return
        if self._base_max is None:
            self._base_max = self.buffer_max
        self.buffer_max += count

    def ack(self, h: int) -> None:
        """The client handled our stanzas up to ``h``: forget them."""
        count = (h - self.acked) % MOD
        if count > len(self.buffer):
            raise HandledCountTooHigh(h, self.h_out)
        if count:
            del self.buffer[:count]
            del self.sent_at[:count]
        self.acked = h % MOD
        if self._base_max is not None and len(self.buffer) <= self._base_max:
            self.buffer_max, self._base_max = self._base_max, None  # the burst is over

    def take_unacked(self, delay_from: str | None = None) -> list[Element]:
        """Empty the buffer (for retransmission after resumption, or re-routing when the
        session dies): the counters go back to the last acknowledgement.

        With ``delay_from`` (the account's domain), each message comes back as a copy carrying
        ``<delay from=delay_from stamp=when it was sent/>`` (XEP-0203 §2: the stamp is when
        the stanza was originally sent): a phone that resumes after minutes in a tunnel, or
        finds the messages in offline storage once its session timed out, shows them at the
        time they arrived, not at the time it got them (mod_offline keeps a delay from the
        domain that is already there). Other stanzas come back as they are."""
        pending = [
            delayed(stanza, delay_from, when)
            if delay_from is not None and stanza.name == "message" else stanza
            for stanza, when in zip(self.buffer, self.sent_at, strict=True)]
        self.buffer.clear()
        self.sent_at.clear()
        self.h_out = self.acked
        return pending

    def requeue(self, stanzas: list[Element]) -> None:
        """Put ``stanzas`` (another node's ``take_unacked``) in the buffer, counted from the
        last acknowledgement, to be taken again and sent after <resumed/> (XEP-0198 §5);
        what arrives before that is buffered after them."""
        now = time.time()
        self.buffer.extend(stanzas)
        self.sent_at.extend(now for _ in stanzas)
        self.h_out = (self.acked + len(self.buffer)) % MOD


def delayed_since(message: Element, domain: str) -> float | None:
    """When ``message`` was first sent, from the ``<delay from=domain/>`` that ``delayed``
    added (Unix time); None without one."""
    for delay in message.find_all("delay", ns.DELAY):
        if delay.attrs.get("from") == domain:
            stamp = delay.attrs.get("stamp", "")
            try:
                return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
            except ValueError:
                return None
    return None


def delayed(message: Element, domain: str, when: float) -> Element:
    """``message`` with ``<delay from=domain stamp=when/>`` (XEP-0203), as a copy; itself
    when a delay from ``domain`` is there already (its first stamp stays)."""
    for delay in message.find_all("delay", ns.DELAY):
        if delay.attrs.get("from") == domain:
            return message  # delayed here before (stored offline, resumed once already)
    # A copy: the element may be shared with the other recipients of the same stanza.
    copy = message.copy()
    stamp = datetime.fromtimestamp(when, UTC)
    # XEP-0082 §3.2 DateTime, UTC, millisecond precision (as mod_offline's stamps).
    copy.add("delay", ns.DELAY, {
        "from": domain, "stamp": f"{stamp:%Y-%m-%dT%H:%M:%S}.{stamp.microsecond // 1000:03d}Z"})
    return copy

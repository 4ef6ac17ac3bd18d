"""XEP-0198 counters: a burst allowed past buffer_max (a login's stored messages) lasts
until the client has acknowledged its way back under buffer_max."""

from __future__ import annotations

import pytest

from suricate.protocol.sm import BufferOverflow, StreamManagement
from suricate.xml import ns
from suricate.xml.element import Element


def _message() -> Element:
    return Element("message", ns.CLIENT)


def test_a_burst_is_allowed_then_the_limit_comes_back() -> None:
    sm = StreamManagement("id", True, buffer_max=2, ack_freq=None)
    sm.allow_burst(3)
    for _ in range(5):
        sm.stanza_out(_message())  # 5 > 2 unacknowledged: allowed
    sm.ack(2)
    assert sm.buffer_max == 5  # 3 still unacknowledged: the burst is not over
    sm.ack(3)  # h counts from the start: 2 unacknowledged now
    assert sm.buffer_max == 2  # back at the limit: the configured one applies again
    with pytest.raises(BufferOverflow):
        sm.stanza_out(_message())


def test_no_limit_stays_no_limit() -> None:
    sm = StreamManagement("id", True, buffer_max=None, ack_freq=None)
    sm.allow_burst(10)
    assert sm.buffer_max is None

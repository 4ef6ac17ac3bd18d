"""What every session keeps whether it uses it or not stays small (docs/performance.md,
"Memory per connection as people connect"): the XEP-0198 buffers of a session with nothing
unacknowledged, and the roster items a login reads and keeps."""

from __future__ import annotations

import sys

from suricate.modules.mod_roster.store import _roster_item
from suricate.protocol.sm import StreamManagement
from suricate.xml import ns
from suricate.xml.element import Element


def _buffers(sm: StreamManagement) -> int:
    return sys.getsizeof(sm.buffer) + sys.getsizeof(sm.sent_at)


def test_sm_buffers_are_small_when_nothing_is_unacknowledged() -> None:
    sm = StreamManagement("id", True, buffer_max=100, ack_freq=1)
    assert _buffers(sm) < 200  # two empty deques: ~1.3 KB
    for _ in range(50):
        sm.stanza_out(Element("message", ns.CLIENT))
    sm.ack(20)
    assert len(sm.buffer) == len(sm.sent_at) == 30  # the oldest 20 went, in order
    sm.ack(50)
    assert sm.buffer == [] and sm.sent_at == []
    assert _buffers(sm) < 200  # back to empty, not kept at the burst's size


def test_roster_items_share_their_state_strings() -> None:
    # As the SQLite driver hands them back: a new string object per row and column.
    def row(jid: str) -> tuple[object, ...]:
        return (jid, None, "".join(["bo", "th"]), "".join(["no", "ne"]), 0, None, 0)

    a, b = _roster_item(row("a@x"), []), _roster_item(row("b@x"), [])
    assert (a.subscription, a.ask) == ("both", "none")
    assert a.subscription is b.subscription and a.ask is b.ask

"""The outgoing buffer's limit (suricate/net/output_cap.py): a peer that does not read is
over it; one element larger than it, for a peer that reads, is not."""

from __future__ import annotations

from suricate.net.output_cap import OutputCap

LIMIT = 1000


def test_writes_piling_up_behind_a_peer_that_does_not_read() -> None:
    cap = OutputCap()
    assert not cap.overflows(600, 600, LIMIT)
    assert cap.overflows(600, 1200, LIMIT)


def test_one_oversized_element_drains_then_the_limit_holds_again() -> None:
    cap = OutputCap()
    assert not cap.overflows(5000, 4800, LIMIT)  # the kernel took 200 bytes at once
    assert cap.active
    # the peer reads; small writes behind the big one stay within the limit
    assert not cap.overflows(100, 3000, LIMIT)
    assert not cap.overflows(100, 150, LIMIT)
    assert not cap.active  # the big element was read: no allowance left
    assert cap.overflows(200, 1100, LIMIT)


def test_a_peer_that_does_not_read_gets_no_second_allowance() -> None:
    cap = OutputCap()
    assert not cap.overflows(5000, 5000, LIMIT)
    assert not cap.overflows(500, 5500, LIMIT)  # behind the big one: within the limit
    assert cap.overflows(600, 6100, LIMIT)  # more than the limit behind it
    cap = OutputCap()
    assert not cap.overflows(5000, 5000, LIMIT)
    assert cap.overflows(5000, 10000, LIMIT)  # another big one before the first was read


def test_no_allowance_when_the_peer_was_already_behind() -> None:
    cap = OutputCap()
    assert cap.overflows(5000, 6500, LIMIT)  # 1500 bytes were already waiting

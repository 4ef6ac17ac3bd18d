"""KeyedLocks: one key's holders one at a time, in the order their tasks were made; nothing
kept once nobody holds or waits."""

from __future__ import annotations

import asyncio

from suricate.core.keyed_locks import KeyedLocks


async def test_one_key_at_a_time_in_task_order_and_nothing_left() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    order: list[str] = []

    async def work(key: str, name: str, delay: float) -> None:
        async with locks.hold(key):
            order.append(f"{name}+")
            await asyncio.sleep(delay)  # later tasks wait however long this takes
            order.append(f"{name}-")

    tasks = [asyncio.create_task(work("a", "a1", 0.03)),
             asyncio.create_task(work("a", "a2", 0.0)),
             asyncio.create_task(work("b", "b1", 0.01)),
             asyncio.create_task(work("a", "a3", 0.0))]
    await asyncio.sleep(0)
    assert "a" in locks and "b" in locks and locks
    await asyncio.gather(*tasks)
    a = [step for step in order if step.startswith("a")]
    assert a == ["a1+", "a1-", "a2+", "a2-", "a3+", "a3-"]
    assert order.index("b1+") < order.index("a1-")  # another key does not wait
    assert "a" not in locks and not locks


async def test_a_failing_holder_lets_the_next_one_in() -> None:
    locks: KeyedLocks[str] = KeyedLocks()

    async def fail() -> None:
        async with locks.hold("k"):
            raise ValueError("boom")

    failing = asyncio.create_task(fail())
    await asyncio.sleep(0)
    async with locks.hold("k"):
        pass
    assert isinstance(failing.exception(), ValueError)
    assert not locks


async def test_a_reserved_turn_comes_before_holders_that_ask_later() -> None:
    """``reserve`` takes the place at once, outside any task: a holder whose task was made
    before the reservation, but ran after it, comes after it."""
    locks: KeyedLocks[str] = KeyedLocks()
    order: list[str] = []

    async def work(name: str) -> None:
        async with locks.hold("k"):
            order.append(name)

    early = asyncio.create_task(work("made before"))  # its first step has not run yet
    turn = locks.reserve("k")
    assert "k" in locks
    late = asyncio.create_task(work("made after"))

    async def reserved() -> None:
        async with turn:
            await asyncio.sleep(0.01)
            order.append("reserved")

    await asyncio.gather(early, late, asyncio.create_task(reserved()))
    assert order == ["reserved", "made before", "made after"]
    assert not locks


async def test_a_turn_given_up_lets_the_next_one_in() -> None:
    """A turn released without being waited for (its task never started), twice, or
    cancelled while it waited does not hold the key back."""
    locks: KeyedLocks[str] = KeyedLocks()
    first = locks.reserve("k")
    waiting = locks.reserve("k")
    cancelled = asyncio.create_task(waiting.wait())
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    first.release()
    first.release()  # again: nothing
    async with locks.hold("k"):
        assert list(locks.held) == ["k"]
    assert not locks

"""suricate/core/offline_batch.py: a batch's reads are made once, and only the task that
handles the batch, for its account, sees it."""

from __future__ import annotations

import asyncio

import pytest

from suricate.core.offline_batch import OfflineBatch, current_batch
from suricate.jid import JID

BOB = JID.parse("bob@localhost")


async def test_a_read_is_made_once_per_batch_and_a_failure_not_kept() -> None:
    batch = OfflineBatch(BOB, 3)
    token = batch.enter()
    calls = 0

    async def load() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("database unavailable")
        return calls

    try:
        with pytest.raises(OSError):
            await batch.read("k", load)
        assert await batch.read("k", load) == 2
        assert await batch.read("k", load) == 2
        assert calls == 2
    finally:
        batch.leave(token)


async def test_only_the_batch_task_sees_its_batch_for_its_account() -> None:
    batch = OfflineBatch(BOB, 2)
    token = batch.enter()
    try:
        assert current_batch(BOB) is batch
        assert current_batch(JID.parse("alice@localhost")) is None
        # A task spawned while the batch is handled inherits the variable, not the batch.
        assert await asyncio.create_task(_seen()) is None
    finally:
        batch.leave(token)
    assert current_batch(BOB) is None


async def _seen() -> OfflineBatch | None:
    return current_batch(BOB)


async def test_deferred_writes_run_once_each_in_order() -> None:
    batch = OfflineBatch(BOB, 2)
    ran: list[str] = []

    async def first() -> None:
        ran.append("first")

    async def second() -> None:
        ran.append("second")

    batch.defer("a", first)
    batch.defer("b", second)
    batch.defer("a", second)  # one flush per key: the first one deferred
    assert batch.pending
    await batch.flush()
    await batch.flush()
    assert ran == ["first", "second"]
    assert not batch.pending

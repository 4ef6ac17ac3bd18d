"""What a shutdown says of spawned work that does not finish: ``Server.drain`` gives up after
its timeout and logs, for each task still pending, the await chain it is stuck in."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from suricate.core.server import Server, awaiting


async def _inner(event: asyncio.Event) -> None:
    await event.wait()


async def _outer(event: asyncio.Event) -> None:
    await _inner(event)


async def test_awaiting_names_each_coroutine_of_the_chain() -> None:
    event = asyncio.Event()
    task = asyncio.create_task(_outer(event))
    await asyncio.sleep(0)
    chain = awaiting(task.get_coro())
    assert [link.split()[0] for link in chain[:3]] == ["_outer", "_inner", "wait"]
    assert "test_drain.py:" in chain[0]
    event.set()
    await task


async def test_drain_logs_what_it_left_pending(caplog: pytest.LogCaptureFixture) -> None:
    event = asyncio.Event()
    server: Any = Server.__new__(Server)  # only drain and spawn's bookkeeping are used
    server._tasks = set()
    server.spawn(_outer(event))
    with caplog.at_level(logging.WARNING, logger="suricate.server"):
        await server.drain(timeout=0.05)
    [record] = [r for r in caplog.records if "drain_task_pending" in r.getMessage()]
    assert "_outer" in record.getMessage() and "_inner" in record.getMessage()
    event.set()
    await server.drain()
    assert not server._tasks

"""``suricate.cluster.stopping.within``: a node's stop waits a bounded time, even for work
that ignores its cancellation (which ``asyncio.wait_for`` would wait for forever)."""

from __future__ import annotations

import asyncio
import time

from suricate.cluster.stopping import within


async def _stubborn(release: asyncio.Event) -> None:
    """Ignores cancellation until ``release`` is set, as some library closes do."""
    while not release.is_set():
        try:
            await release.wait()
        except asyncio.CancelledError:
            continue


async def test_within_abandons_work_that_ignores_cancellation() -> None:
    release = asyncio.Event()
    started = time.monotonic()
    assert await within(_stubborn(release), 0.1, "stubborn") is False
    assert time.monotonic() - started < 1.0
    release.set()  # let the abandoned task end before the loop closes
    await asyncio.sleep(0)


async def test_within_returns_when_the_work_ends_or_fails() -> None:
    assert await within(asyncio.sleep(0.01), 5, "sleep") is True

    async def failing() -> None:
        raise RuntimeError("boom")

    assert await within(failing(), 5, "failing") is True  # logged, not raised

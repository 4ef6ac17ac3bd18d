"""Hooks.run_together: the async handlers of a hook wait at the same time; handlers that never
suspend (SQLite answers inline) run at once, without a task."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from suricate.core import hooks as H
from suricate.core.hooks import Hooks

HOOK = H.SESSION_OPENED


async def test_handlers_that_wait_wait_together() -> None:
    hooks = Hooks()
    started: list[str] = []
    release = asyncio.Event()

    def waiting(name: str) -> Any:
        async def handler(acc: None, c2s: Any) -> None:
            started.append(name)
            await release.wait()
            started.append(f"{name} done")
            return acc
        return handler

    hooks.add(HOOK, waiting("first"), 10)
    hooks.add(HOOK, waiting("second"), 20)
    run = asyncio.ensure_future(hooks.run_together(HOOK, None, object()))
    await asyncio.sleep(0)
    assert started == ["first", "second"]  # in priority order, both before either ended
    release.set()
    await asyncio.wait_for(run, 1)
    assert sorted(started[2:]) == ["first done", "second done"]


def test_handlers_that_never_suspend_finish_at_once() -> None:
    """Driven by hand, without a loop: nothing is scheduled, the run is over at its first
    step (a task for each would cost the SQLite login path a turn of the loop)."""
    hooks = Hooks()
    ran: list[str] = []

    async def inline(acc: None, c2s: Any) -> None:
        ran.append("inline")
        return acc

    def plain(acc: None, c2s: Any) -> None:
        ran.append("plain")
        return acc

    hooks.add(HOOK, inline, 10)
    hooks.add(HOOK, plain, 20)
    steps = hooks.run_together(HOOK, None, object())
    with pytest.raises(StopIteration):
        steps.send(None)
    assert ran == ["inline", "plain"]


async def test_a_failing_handler_is_logged_and_the_others_run(
        caplog: pytest.LogCaptureFixture) -> None:
    hooks = Hooks()
    ran: list[str] = []

    async def fails_at_once(acc: None, c2s: Any) -> None:
        raise RuntimeError("at once")

    async def fails_later(acc: None, c2s: Any) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("later")

    async def works(acc: None, c2s: Any) -> None:
        await asyncio.sleep(0)
        ran.append("works")
        return acc

    for priority, handler in enumerate((fails_at_once, fails_later, works)):
        hooks.add(HOOK, handler, priority)
    with caplog.at_level(logging.ERROR, logger="suricate.hooks"):
        await hooks.run_together(HOOK, None, object())
    assert ran == ["works"]
    assert sum("hook_handler_failed" in r.getMessage() for r in caplog.records) == 2

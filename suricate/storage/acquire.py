"""The wait for a pooled database connection, in an asyncio task of its own.

The server runs some steps at once, up to their first real suspension, and only the rest
becomes a task (suricate/core/eager.py: a session's end, a presence to a local account). Such a
step that reaches the database is, until then, driven by no task of its own: outside any task
(a connection's ``connection_lost``), or inside the task that started it.

The pools bound their wait for a free connection with ``asyncio.timeout`` (asyncpg's
``Pool.acquire(timeout=)``, our own for asyncmy), which needs the current task and cancels it
when the time is up. Outside any task it raises RuntimeError ("Timeout should be used inside a
task"): the step fails (mod_last's logout record on PostgreSQL, measured in
tests/e2e/test_pgsql.py) and asyncpg's half-started wait is never awaited (pytest's "coroutine
'Pool._acquire.<locals>._acquire_impl' was never awaited"). Inside the other task, its expiry
would cancel that task rather than the wait. A task of its own is the task the timeout needs;
the step goes on in whichever task awaits it (the one core/eager.py makes at this suspension).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def acquire_in_task(acquire: Awaitable[T],
                          release: Callable[[T], Awaitable[Any] | None]) -> T:
    """``await acquire`` in a task of its own; ``release`` gives back a connection that
    arrived after the caller was cancelled."""
    waiting = asyncio.ensure_future(acquire)
    try:
        return await waiting
    except asyncio.CancelledError:
        # The caller's cancellation cancels the wait too (it is what the caller awaits);
        # only a connection handed over just before would be left to nobody.
        if waiting.done() and not waiting.cancelled() and waiting.exception() is None:
            given_back = release(waiting.result())
            if inspect.isawaitable(given_back):
                await given_back
        raise

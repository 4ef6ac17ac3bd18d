"""Waiting for a pool connection from a coroutine that may run outside any task.

The server runs some coroutines at once, from a protocol callback, up to their first real
suspension (``Server.spawn_eager``, suricate/core/eager.py): a session's close hooks, a
presence to a bare JID. When such a coroutine reads PostgreSQL or MariaDB before anything
else suspends it, it waits for a pool connection with no current task; a bound on that wait
made with ``asyncio.timeout()`` (asyncpg's ``acquire(timeout=)`` on Python 3.11, our MySQL
pool) then raises ``RuntimeError("Timeout should be used inside a task")``. The hook handler
failed: with PostgreSQL, ``mod_last`` recorded no logout and ``mod_blocking``'s presence
filter failed on every presence to a bare JID (docs/delivery.md, "A database a few
milliseconds away"). SQLite waits for no pool, so the embedded default never showed it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


def in_a_task(waiting: Awaitable[T]) -> Awaitable[T]:
    """``waiting`` itself when a task runs the caller; else a task that awaits it (the
    caller's await is then its first real suspension, and its rest becomes a task, as
    ``spawn_eager`` intends). Costs a task only outside one."""
    if asyncio.current_task() is None:
        return asyncio.ensure_future(waiting)
    return waiting

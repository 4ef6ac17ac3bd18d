"""Bounded waits for a node's stop: a SIGTERM must end the process.

``asyncio.wait_for`` is not a bound: on its timeout it cancels the awaitable and then waits for
it to finish, however long that takes, and a library call that does not give up on
cancellation (a Redis connection being closed, a pub/sub reader) then holds the stop forever.
``within`` waits at most ``seconds`` and, past them, cancels and leaves the work behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

log = logging.getLogger("suricate.cluster")


async def within(work: Awaitable[Any], seconds: float, what: str) -> bool:
    """Wait for ``work`` at most ``seconds``; whether it ended (its failure is logged, not
    raised: a stop goes on). Past the bound it is cancelled and not waited for."""
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=max(0.0, seconds))
    if not done:
        task.cancel()
        log.warning("cluster_stop_abandoned part=%s after=%.1fs", what, seconds)
        return False
    if not task.cancelled() and task.exception() is not None:
        log.warning("cluster_stop_failed part=%s", what, exc_info=task.exception())
    return True

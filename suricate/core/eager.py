"""Coroutines run at once, up to their first real suspension.

Most steps of the server never really wait: SQLite answers inline, a presence to a local
account only reads the session table. Making each of them an asyncio task costs a task, a
loop callback and a turn of the loop (several microseconds, and 400 of them per login with a
200-contact roster), and delays what it sends behind whatever the loop does first. Run now,
only what is left after a real suspension becomes a task (what Python 3.12's eager task
factory does, for one call at a time).
"""

from __future__ import annotations

import types
from collections.abc import Coroutine, Generator
from typing import Any


@types.coroutine
def resume(steps: Generator[Any, Any, Any] | Coroutine[Any, Any, Any],
           yielded: Any) -> Generator[Any, Any, Any]:
    """Await the rest of a coroutine that already ran up to ``yielded`` (a future for the
    task to wait on): what ``await`` would have done from there on."""
    try:
        while True:
            try:
                sent = yield yielded
            except BaseException as exc:  # cancellation included: it goes to the step
                yielded = steps.throw(exc)
            else:
                yielded = steps.send(sent)
    except StopIteration as stop:
        return stop.value


async def finish(steps: Coroutine[Any, Any, Any], yielded: Any) -> Any:
    """``resume`` as a coroutine a task can run."""
    return await resume(steps, yielded)

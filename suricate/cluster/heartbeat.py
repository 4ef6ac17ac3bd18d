"""This node's heartbeat: the ``alive:<node>`` key, written by a thread of its own.

A node whose heartbeat key expires (``DEAD_AFTER``) is declared dead and reaped by a survivor
(redis_sm.py). Written from the event loop, the beat was only as punctual as the loop: on an
overloaded machine a live node's beat came more than 3 s late, the survivors reaped its
sessions, and stanzas toward them were lost or stored offline while the users were online
(issue 14, docs/cluster.md "Membership, death and cleanup"). So the beat runs in a thread
with its own blocking Redis connection: it needs the GIL for microseconds a second, which a
busy loop (pure-Python callbacks hand the GIL over every few milliseconds) does not withhold.

A node whose loop is wedged must still be declared dead, or its users would wait forever for
stanzas it never delivers: the loop advances a progress counter a few times a second, and the
thread stops beating once the counter has not moved for ``LOOP_STALL`` seconds (it beats again
when the loop comes back; a node reaped meanwhile rejoins, redis_sm.RedisNode._beater). A
SIGSTOP stops every thread of the process, the beat included: a paused node is reaped as
before.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis import Redis as SyncRedis

log = logging.getLogger("suricate.cluster")

# A beat every BEAT seconds; a node whose heartbeat is older than DEAD_AFTER is dead: three
# missed beats.
BEAT = 1.0
DEAD_AFTER = 3.0
# A loop that made no progress for this long is wedged: the beat stops so that the node is
# reaped. Far above any callback a live node runs (a 4 s CPU-bound stretch is tested), far
# below what a user would wait for before calling the node dead.
LOOP_STALL = 30.0
# How often the loop advances its progress counter.
_TICK = BEAT / 4


class Heartbeat:
    """Beats ``key`` (a TTL of ``dead_after``) every ``beat`` seconds from a thread, while the
    event loop that started it makes progress."""

    def __init__(self, connect: Callable[[], SyncRedis], key: str, *, beat: float = BEAT,
                 dead_after: float = DEAD_AFTER, loop_stall: float = LOOP_STALL) -> None:
        # a blocking client to the node's Redis (its master, with Sentinel), made in the thread
        self.connect = connect
        self.key = key
        self.beat = beat
        self.dead_after = dead_after
        self.loop_stall = loop_stall
        self.progress = 0  # advanced by the loop; read by the thread (an int: atomic enough)
        self.stalled = False
        self.beats = 0  # written successfully (tests, logs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tick_handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """From the event loop whose progress the beat follows."""
        self._tick()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat {self.key}",
                                        daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """No beat after this returns (a clean leave then deletes the key)."""
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        self._stop.set()
        if self._thread is not None:
            # At most one Redis command in flight, bounded by the socket timeout.
            await asyncio.to_thread(self._thread.join, 2 * self.beat + 1)
            self._thread = None

    def _tick(self) -> None:
        self.progress += 1
        self._tick_handle = asyncio.get_running_loop().call_later(_TICK, self._tick)

    # -- the thread ----------------------------------------------------------------------
    def _run(self) -> None:
        seen, seen_at = self.progress, time.monotonic()
        client: SyncRedis | None = None
        failing = False
        try:
            while not self._stop.wait(self.beat):
                now, progress = time.monotonic(), self.progress
                if progress != seen:
                    seen, seen_at = progress, now
                    if self.stalled:
                        self.stalled = False
                        log.warning("cluster_loop_resumed key=%s", self.key)
                elif now - seen_at >= self.loop_stall:
                    if not self.stalled:
                        self.stalled = True
                        log.warning("cluster_loop_stalled key=%s for=%.1fs: beat stopped",
                                    self.key, now - seen_at)
                    continue
                try:
                    if client is None:
                        client = self.connect()
                    client.set(self.key, "1", px=int(self.dead_after * 1000))
                    self.beats += 1
                    failing = False
                except Exception as exc:
                    # Redis away (or a bug): beat again next time rather than end the
                    # thread, which would get this live node reaped at every rejoin. The
                    # loop notices an outage too (its membership task) and rejoins after.
                    if not failing:
                        log.warning("cluster_beat_failed key=%s error=%r", self.key, exc,
                                    exc_info=not _is_redis_error(exc))
                    failing = True
        finally:
            if client is not None:
                client.close()


def _is_redis_error(exc: Exception) -> bool:
    import redis

    return isinstance(exc, redis.RedisError)

"""mod_cache_users: which accounts exist, remembered (MongooseIM 6.4's module of that name).

Many paths ask whether an account exists before acting for it: a message to an account with
no session (RFC 6121 §8.5.1: stored offline, or an error if there is no such account), a
presence probe, disco, ping, last activity, vCard, PEP. Each asks the authentication backend,
which for ``rdbms`` is a database query and for ``http``/``ldap`` a request. With this module
``Server.user_exists`` remembers the accounts found, so a busy account is looked up once per
rotation rather than once per stanza.

The cache is segmented, as MongooseIM's: ``number_of_segments`` tables, a new account goes
into the first one, and every ``time_to_live`` minutes the tables rotate: a new empty one
comes first and the last one is dropped, so an entry lives between ``(n - 1) x ttl`` and
``n x ttl``. With ``strategy = "lru"`` an entry found in an older table moves to the first
one (an account in use stays); with ``"fifo"`` it stays where it is (every entry is looked
up again in the end). Only accounts that exist are remembered: one registered a moment ago
is never refused from a stale "no". A removed account is forgotten at once here and, in a
cluster, on every other node (``Cluster.ask``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from suricate.config.spec import Int, IntOrInfinity, OneOf, Option, Section
from suricate.core import hooks as H
from suricate.core.module import Module
from suricate.instrument import Instrumentation
from suricate.instrument.events import HISTOGRAM, SPIRAL, declare
from suricate.jid import JID

log = logging.getLogger("suricate.mod_cache_users")

#: The cluster operation that forgets an account on another node.
FORGET_OP = "mod_cache_users.forget"

USER_CACHE_LOOKUP = declare(
    "user_cache_lookup", ("host_type", "cache_name"),
    {"hits": SPIRAL, "misses": SPIRAL, "latency": HISTOGRAM},
    "Look-ups in the cache of existing accounts: found (hits) or not (misses, then asked of "
    "the auth methods); latency of the look-up itself in microseconds")


class SegmentedCache:
    """``segments`` sets of keys, the newest first; ``rotate`` drops the oldest."""

    __slots__ = ("segments", "lru")

    def __init__(self, segments: int, lru: bool) -> None:
        self.segments: list[set[str]] = [set() for _ in range(max(1, segments))]
        self.lru = lru

    def __contains__(self, key: str) -> bool:
        first = self.segments[0]
        if key in first:
            return True
        for segment in self.segments[1:]:
            if key in segment:
                if self.lru:  # in use: it moves to the newest table
                    segment.discard(key)
                    first.add(key)
                return True
        return False

    def add(self, key: str) -> None:
        self.segments[0].add(key)

    def discard(self, key: str) -> None:
        for segment in self.segments:
            segment.discard(key)

    def rotate(self) -> None:
        self.segments.pop()
        self.segments.insert(0, set())

    def __len__(self) -> int:
        return sum(len(segment) for segment in self.segments)


class MeasuredCache(SegmentedCache):
    """The cache when instrumentation is on: each look-up is a user_cache_lookup event (the
    plain class is used otherwise, so nothing is measured at no cost)."""

    __slots__ = ("instrument",)

    def __init__(self, segments: int, lru: bool, instrument: Instrumentation) -> None:
        super().__init__(segments, lru)
        self.instrument = instrument

    def __contains__(self, key: str) -> bool:
        start = time.perf_counter()
        found = SegmentedCache.__contains__(self, key)
        latency = (time.perf_counter() - start) * 1e6
        # The key is a bare JID's text: the host type is its domain's.
        self.instrument.emit(USER_CACHE_LOOKUP,
                             {"host_type": key.rpartition("@")[2], "cache_name": CACHE_NAME},
                             {"hits" if found else "misses": 1, "latency": latency})
        return found


#: The cache_name label (6.4 names the cache after the module that owns it).
CACHE_NAME = "mod_cache_users"


class ModCacheUsers(Module):
    name = "mod_cache_users"
    options = Section({
        "strategy": Option(OneOf(["fifo", "lru"]), "fifo",
                           "fifo: an entry is looked up again once its table is dropped; lru: "
                           "an entry found moves to the newest table."),
        "time_to_live": Option(IntOrInfinity(min=1, unit="minutes"), 480,
                               "Minutes between two rotations of the tables (\"infinity\": "
                               "never; entries then stay until their account is removed)."),
        "number_of_segments": Option(Int(min=1), 3,
                                     "How many tables: an entry lives between (n - 1) and n "
                                     "times time_to_live."),
    }, doc="A cache of which accounts exist (Server.user_exists).")
    hooks = ((H.REMOVE_USER, "removed", 10),)

    def __init__(self, server: Any, opts: Any) -> None:
        super().__init__(server, opts)
        segments, lru = opts["number_of_segments"], opts["strategy"] == "lru"
        self.cache = MeasuredCache(segments, lru, server.instrument) \
            if server.instrument.enabled else SegmentedCache(segments, lru)
        self._ttl: int | None = opts["time_to_live"]
        self._timer: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        self.server.user_cache = self.cache
        self.server.cluster.answer_on(FORGET_OP, self._forget_here)
        if self._ttl is not None:
            self._schedule()

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.server.cluster.answer_off(FORGET_OP)
        if self.server.user_cache is self.cache:
            self.server.user_cache = None

    def _schedule(self) -> None:
        assert self._ttl is not None
        self._timer = asyncio.get_running_loop().call_later(self._ttl * 60, self._rotate)

    def _rotate(self) -> None:
        self.cache.rotate()
        self._schedule()

    async def removed(self, acc: None, jid: JID) -> None:
        """REMOVE_USER: the account is gone, here and on the other nodes of the cluster."""
        key = str(jid.bare)
        self.cache.discard(key)
        for node in await self.server.cluster.ask_others(FORGET_OP, key):
            # A node that does not answer forgets it at its next rotations at the latest.
            log.warning("cache_forget_unreachable node=%s user=%s", node, key)
        return acc

    async def _forget_here(self, key: str) -> bool:
        self.cache.discard(key)
        return True

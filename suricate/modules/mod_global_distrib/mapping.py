"""The global session table in Redis, and its cache on each node.

Keys (all under ``gd:``; every value written with ``redis.expire_after`` as its time to live
and written again every ``redis.refresh_after`` by the node that owns it, so that what a dead
data centre wrote disappears by itself, as in MongooseIM):

| key | type | content |
|-----|------|---------|
| ``gd:jid:<jid>`` | string | the ``local_host`` of the data centre holding the full or bare JID |
| ``gd:hosts`` | set | every data centre's ``local_host`` |
| ``gd:nodes:<local_host>`` | set | that data centre's nodes (running Suricate processes) |
| ``gd:ep:<local_host>:<node>`` | string | JSON list of ``"host:port"`` the node listens on |
| ``gd:dom:<local_host>:<node>`` | string | JSON list of the service domains the node serves |
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

PREFIX = "gd:"

# Delete a JID's entry only while it still names this data centre: the user may have
# logged in elsewhere since (the other data centre's write must stay).
_DELETE_IF_OURS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def jid_key(jid: str) -> str:
    return f"{PREFIX}jid:{jid}"


class JidCache:
    """JID -> local_host (None: not mapped, kept only with ``cache_missed``), each entry living
    ``lifetime`` seconds; at most ``max_jids`` entries (full: emptied, then filled again)."""

    __slots__ = ("lifetime", "max_jids", "cache_missed", "_entries")

    def __init__(self, lifetime: float, max_jids: int, cache_missed: bool) -> None:
        self.lifetime = lifetime
        self.max_jids = max_jids
        self.cache_missed = cache_missed
        self._entries: dict[str, tuple[str | None, float]] = {}

    def get(self, jid: str) -> tuple[bool, str | None]:
        """(found, local_host)."""
        entry = self._entries.get(jid)
        if entry is None:
            return False, None
        if entry[1] < time.monotonic():
            del self._entries[jid]
            return False, None
        return True, entry[0]

    def put(self, jid: str, host: str | None) -> None:
        if host is None and not self.cache_missed:
            self._entries.pop(jid, None)
            return
        if self.max_jids <= 0 or self.lifetime <= 0:
            return
        if len(self._entries) >= self.max_jids and jid not in self._entries:
            self._entries.clear()
        self._entries[jid] = (host, time.monotonic() + self.lifetime)

    def forget(self, jid: str) -> None:
        self._entries.pop(jid, None)


class Mapping:
    """What this data centre writes to and reads from the global Redis."""

    def __init__(self, redis: Any, local_host: str, node: str, expire_after: int) -> None:
        self.redis = redis
        self.local_host = local_host
        self.node = node
        self.expire = max(1, expire_after)
        self._delete = redis.register_script(_DELETE_IF_OURS)

    # -- JIDs -------------------------------------------------------------------------------
    async def put_jids(self, jids: Iterable[str]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for jid in jids:
            pipe.set(jid_key(jid), self.local_host, ex=self.expire)
        await pipe.execute()

    async def delete_jid(self, jid: str) -> None:
        await self._delete(keys=[jid_key(jid)], args=[self.local_host])

    async def get_jids(self, jids: list[str]) -> list[str | None]:
        values = await self.redis.mget([jid_key(j) for j in jids])
        return [v.decode() if isinstance(v, bytes) else v for v in values]

    # -- this node: its endpoints and service domains ----------------------------------------
    async def advertise(self, endpoints: list[str], domains: list[str]) -> None:
        host, node, ex = self.local_host, self.node, self.expire
        pipe = self.redis.pipeline(transaction=False)
        pipe.sadd(f"{PREFIX}hosts", host)
        pipe.sadd(f"{PREFIX}nodes:{host}", node)
        pipe.set(f"{PREFIX}ep:{host}:{node}", json.dumps(endpoints), ex=ex)
        pipe.set(f"{PREFIX}dom:{host}:{node}", json.dumps(domains), ex=ex)
        await pipe.execute()

    async def withdraw(self) -> None:
        host, node = self.local_host, self.node
        pipe = self.redis.pipeline(transaction=False)
        pipe.srem(f"{PREFIX}nodes:{host}", node)
        pipe.delete(f"{PREFIX}ep:{host}:{node}", f"{PREFIX}dom:{host}:{node}")
        await pipe.execute()

    # -- the others ----------------------------------------------------------------------------
    async def hosts(self) -> set[str]:
        return {_text(h) for h in await self.redis.smembers(f"{PREFIX}hosts")}

    async def _per_node(self, host: str, kind: str) -> list[str]:
        """The union of the lists the live nodes of ``host`` advertised (``ep`` or ``dom``);
        nodes whose entry expired are taken off the set."""
        nodes = sorted(_text(n) for n in await self.redis.smembers(f"{PREFIX}nodes:{host}"))
        if not nodes:
            return []
        values = await self.redis.mget([f"{PREFIX}{kind}:{host}:{n}" for n in nodes])
        out: list[str] = []
        gone = [n for n, v in zip(nodes, values, strict=True) if v is None]
        for value in values:
            if value is not None:
                out.extend(x for x in json.loads(value) if x not in out)
        if gone and kind == "ep":
            await self.redis.srem(f"{PREFIX}nodes:{host}", *gone)
        return out

    async def endpoints(self, host: str) -> list[str]:
        return await self._per_node(host, "ep")

    async def domains(self) -> dict[str, str]:
        """Service domain -> the local_host of the other data centre serving it."""
        out: dict[str, str] = {}
        for host in sorted(await self.hosts()):
            if host == self.local_host:
                continue
            for domain in await self._per_node(host, "dom"):
                out.setdefault(domain, host)
        return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

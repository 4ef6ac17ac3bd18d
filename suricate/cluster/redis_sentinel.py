"""The session table's Redis behind Redis Sentinel (``[outgoing_pools.redis.default.connection]
sentinels``, docs/cluster.md "Redis Sentinel").

Sentinel names the master of a service (``SENTINEL get-master-addr-by-name``); after a
failover it names the promoted replica. redis-py's Sentinel pool asks for the master before
each new connection and drops a connection the old master answers READONLY, so commands reach
the new master once it is promoted (a command failing meanwhile is retried by its caller, as
for a Redis restart: ``redis_sm._patiently`` and the writer's back-off).

What the pool cannot do is bring back what the new master never received: Redis replicates
asynchronously, so the last writes before the failover (a session row, a heartbeat, a room
claim) may be missing there. ``MasterWatch`` asks Sentinel at each beat which server is the
master; when it changed, the node writes its own rows again (``RedisNode`` ``_rewrite``), as
after a Redis that came back empty: the table is rebuilt from the live nodes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from redis.asyncio import BlockingConnectionPool
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

if TYPE_CHECKING:
    from redis import Redis as SyncRedis
    from redis.asyncio import Redis

log = logging.getLogger("suricate.cluster")

# A Sentinel that does not answer within this is skipped for the next one (redis-py asks them
# in turn): one beat must not wait long on a dead Sentinel.
SENTINEL_TIMEOUT = 0.5


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """The master's connections, found through Sentinel, and waited for past ``workers``
    (as the plain pool of ``redis_sm.connect``: never "Too many connections" under load)."""


def addresses(sentinels: list[str]) -> list[tuple[str, int]]:
    """``"host:port"`` items (validated by the configuration) as (host, port)."""
    found = []
    for item in sentinels:
        host, _, port = item.rpartition(":")
        found.append((host.strip("[]"), int(port)))
    return found


def sentinel(conn: dict[str, Any]) -> Sentinel:
    return Sentinel(
        addresses(conn["sentinels"]),
        sentinel_kwargs={"password": conn["sentinel_password"] or None,
                         "socket_connect_timeout": SENTINEL_TIMEOUT,
                         "socket_timeout": SENTINEL_TIMEOUT})


def connect(pool: dict[str, Any], queue_for: float) -> tuple[Redis, MasterWatch]:
    """A client for the master of ``service_name``, and the watch of that master."""
    conn = pool["connection"]
    manager = sentinel(conn)
    redis: Redis = manager.master_for(
        conn["service_name"], connection_pool_class=_BlockingSentinelPool,
        db=conn["database"], password=conn["password"] or None,
        max_connections=pool["workers"], socket_connect_timeout=5, timeout=queue_for)
    return redis, MasterWatch(manager, conn["service_name"])


def sync_master(pool: dict[str, Any], timeout: float) -> SyncRedis:
    """A blocking client for the master (the heartbeat thread's, heartbeat.py): it asks the
    Sentinels for the master at each new connection, as the loop's client does."""
    from redis.sentinel import Sentinel as SyncSentinel

    conn = pool["connection"]
    manager = SyncSentinel(
        addresses(conn["sentinels"]),
        sentinel_kwargs={"password": conn["sentinel_password"] or None,
                         "socket_connect_timeout": SENTINEL_TIMEOUT,
                         "socket_timeout": SENTINEL_TIMEOUT})
    return manager.master_for(conn["service_name"], db=conn["database"],
                              password=conn["password"] or None,
                              socket_connect_timeout=timeout, socket_timeout=timeout)


class MasterWatch:
    """Which server Sentinel names as the master, asked once a beat."""

    def __init__(self, manager: Sentinel, service: str) -> None:
        self.manager = manager
        self.service = service
        self.master: tuple[str, int] | None = None

    async def moved(self) -> bool:
        """Whether the master changed since the last call (not at the first). A Sentinel
        that cannot be asked answers "not moved": the beats to Redis tell whether it works."""
        try:
            found = tuple(await self.manager.discover_master(self.service))
        except Exception as exc:
            log.info("redis_sentinel_unanswered service=%s error=%s", self.service, exc)
            return False
        before, self.master = self.master, (str(found[0]), int(found[1]))
        if before is not None and before != self.master:
            log.warning("redis_failover service=%s from=%s:%d to=%s:%d", self.service,
                        *before, *self.master)
            return True
        return False

    async def aclose(self) -> None:
        for client in self.manager.sentinels:
            await client.aclose()

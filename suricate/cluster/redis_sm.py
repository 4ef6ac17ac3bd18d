"""The session table's Redis side (``[general] sm_backend = "redis"``, DESIGN §2.9, §7).

The in-process ``SessionTable`` stays the table the router reads (the hot path does not wait
for Redis); this node mirrors its local sessions into Redis so that every node can see, for a
bare JID, which resources exist on which node with which priority and availability. Node
membership is a heartbeat key with a time to live: a node that stops beating (SIGKILL, network
partition) is declared dead when the key expires, and one survivor removes its sessions.

Keys (all under ``PREFIX``; the pool's ``database`` separates deployments sharing a server):

- ``sess:<bare>``: hash, resource -> ``"<node>\\t<priority>\\t<available 0|1>"``
- ``node:<node>:jids``: set of the full JIDs this node registered (what a reaper removes)
- ``nodes``: hash, node -> its advertised address (``host:port`` of its cluster links)
- ``cookie``: the cluster cookie every link starts with (``links.py``)
- ``alive:<node>``: the heartbeat, a key that expires ``DEAD_AFTER`` seconds after its last beat

Removing a dead node's sessions happens exactly once because it is one Lua script (Redis runs a
script atomically): the script checks that the node is still listed in ``nodes`` and that its
heartbeat is gone, removes its rows, and delists it. A second survivor running the same script
finds the node delisted and does nothing; a node that came back in time (its heartbeat exists)
is left alone.

Writes are queued and applied in order by one task, so a session that registers and leaves
quickly cannot leave a stale row behind (the unregister is applied after the register).
"""

from __future__ import annotations

import asyncio
import logging
import marshal
import os
import random
import secrets
import socket
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from suricate.cluster import wire
from suricate.cluster.heartbeat import BEAT, DEAD_AFTER, Heartbeat
from suricate.cluster.links import COOKIE_SIZE, NodeLinks
from suricate.cluster.stopping import within
from suricate.core import hooks as H
from suricate.core.sessions import SessionTable
from suricate.jid import JID

if TYPE_CHECKING:
    from redis import Redis as SyncRedis
    from redis.asyncio import Redis

    from suricate.cluster.redis_sentinel import MasterWatch
    from suricate.core.server import Server
    from suricate.core.sessions import Session
    from suricate.xml.element import Element

log = logging.getLogger("suricate.cluster")

T = TypeVar("T")
# A service of this node taking a stanza another node forwarded (frm, to, stanza, hops).
ServiceHandler = Callable[["JID", "JID", "Element", int], None]

PREFIX = "suricate:"

# KEYS: nodes, alive:<node>, node:<node>:jids; ARGV: node, key prefix of the session hashes.
# Returns the number of sessions removed, or -1 when there was nothing to do (already reaped
# by another survivor, or the node is alive).
_REAP = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return -1 end
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
local removed = 0
for _, full in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  local slash = string.find(full, '/', 1, true)
  if slash then
    local key = ARGV[2] .. string.sub(full, 1, slash - 1)
    local resource = string.sub(full, slash + 1)
    local row = redis.call('HGET', key, resource)
    if row and string.sub(row, 1, string.len(ARGV[1]) + 1) == ARGV[1] .. '\\t' then
      redis.call('HDEL', key, resource)
      removed = removed + 1
    end
  end
end
redis.call('DEL', KEYS[3])
redis.call('HDEL', KEYS[1], ARGV[1])
return removed
"""

# KEYS: ids (index -> node), nodes; ARGV: our node, the index to try first, the count.
# The first index from ARGV[2] on that is free, ours, or held by a node no longer listed
# (it left or was reaped), now ours; -1 when every one is held by a listed node.
_CLAIM_INDEX = """
local count = tonumber(ARGV[3])
for i = 0, count - 1 do
  local index = (tonumber(ARGV[2]) + i) % count
  local holder = redis.call('HGET', KEYS[1], index)
  if not holder or holder == ARGV[1] or redis.call('HEXISTS', KEYS[2], holder) == 0 then
    redis.call('HSET', KEYS[1], index, ARGV[1])
    return index
  end
end
return -1
"""

# KEYS: ids; ARGV: our node, our index. Frees our index (a clean stop), never another's.
_FREE_INDEX = """
if redis.call('HGET', KEYS[1], ARGV[2]) == ARGV[1] then redis.call('HDEL', KEYS[1], ARGV[2]) end
return 1
"""

#: How many nodes can hold an index at once: the node bits of mod_mam's ids (8, DESIGN §7).
NODE_INDEXES = 256

# KEYS: sess:<bare>, node:<node>:jids; ARGV: resource, our row, our node, the full JID.
# Writes our row unless another node holds the resource; returns that node's row, or nil.
_CLAIM = """
local row = redis.call('HGET', KEYS[1], ARGV[1])
if row and string.sub(row, 1, string.len(ARGV[3]) + 1) ~= ARGV[3] .. '\\t' then
  return row
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[4])
return false
"""

# KEYS: sess:<bare>, node:<node>:jids; ARGV: resource, our node, the full JID.
# Removes our row, never another node's.
_REMOVE = """
local row = redis.call('HGET', KEYS[1], ARGV[1])
if row and string.sub(row, 1, string.len(ARGV[2]) + 1) == ARGV[2] .. '\\t' then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
redis.call('SREM', KEYS[2], ARGV[3])
return 1
"""

# How long a stanza for another node waits for Redis when Redis is unreachable before it is
# routed here by RFC 6121 §8 (offline storage or an error): a Redis restart takes a second or
# two, and a stanza that waits is delivered live once it is back.
QUEUE_FOR = 10.0
# After an outage, how long "no such session" from Redis is not trusted: every node beats
# within BEAT and then writes its sessions back.
REBUILD = 2 * BEAT + 0.5
# How long the node of a full JID found in Redis is reused for later stanzas to that JID
# without asking again. A session that left or moved meanwhile: the stanza reaches a node
# without it, which routes it by RFC 6121 §8 there (a chat message to the bare JID: the
# user's resources on that node, else offline storage), never lost.
ROW_TTL = 1.0
# How long a stopping node waits for Redis to take its last writes and its leave: past it,
# the others reap its rows as a dead node's (DEAD_AFTER), and the process exits.
LEAVE_WITHIN = 2.0
# A cached node used within this long of its expiry is looked up again in the background, so
# a steady flow of stanzas to one full JID keeps its fast path (no lookup on the path itself).
REFRESH_AHEAD = 0.25


@dataclass(frozen=True)
class Row:
    """One session as Redis records it."""

    node: str
    priority: int
    available: bool


def new_node_name() -> str:
    """A name no earlier run of this node had: a restarted node is a new member, so its
    predecessor's sessions are reaped rather than mistaken for its own."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class RedisSessions:
    """The Redis operations, usable without a server (tests, admin tools)."""

    def __init__(self, redis: Redis, node: str, prefix: str = PREFIX) -> None:
        self.redis = redis
        self.node = node
        self.prefix = prefix
        self._reap = redis.register_script(_REAP)
        self._claim = redis.register_script(_CLAIM)
        self._remove = redis.register_script(_REMOVE)
        self._claim_index = redis.register_script(_CLAIM_INDEX)
        self._free_index = redis.register_script(_FREE_INDEX)

    def _sess(self, bare: str) -> str:
        return f"{self.prefix}sess:{bare}"

    async def join(self, address: str = "") -> None:
        await self.beat()
        await self.redis.hset(f"{self.prefix}nodes", self.node, address)

    async def claim_index(self, first: int) -> int:
        """A node index no other listed node holds (tried from ``first`` on): the node bits
        of the ids a node makes (mod_mam's archive ids, ``microseconds << 8 | node``), so
        that two nodes never make the same id in the same microsecond. Raises when
        NODE_INDEXES nodes are listed."""
        index = int(await self._claim_index(
            keys=[f"{self.prefix}ids", f"{self.prefix}nodes"],
            args=[self.node, first % NODE_INDEXES, NODE_INDEXES]))
        if index < 0:
            raise RuntimeError(f"{NODE_INDEXES} nodes are listed in the cluster: no node "
                               "index is free for this one")
        return index

    async def free_index(self, index: int) -> None:
        await self._free_index(keys=[f"{self.prefix}ids"], args=[self.node, index])

    @property
    def alive_key(self) -> str:
        return f"{self.prefix}alive:{self.node}"

    async def beat(self) -> None:
        """One beat from the loop (joining); the regular ones come from ``Heartbeat``."""
        await self.redis.set(self.alive_key, "1", px=int(DEAD_AFTER * 1000))

    async def leave(self, index: int | None = None) -> None:
        """A clean stop: remove our rows at once rather than waiting to be reaped, and free
        our node ``index`` (``claim_index``)."""
        await self.redis.delete(self.alive_key)
        await self.reap(self.node)
        if index is not None:
            await self.free_index(index)

    async def put(self, jid: JID, priority: int, available: bool) -> Row | None:
        """Write our row for ``jid``; the row it replaced, if any (one transaction, so two
        nodes binding the same full JID at once each see the other's row or none)."""
        row = f"{self.node}\t{priority}\t{1 if available else 0}"
        key = self._sess(str(jid.bare))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hget(key, str(jid.resource))
            pipe.hset(key, str(jid.resource), row)
            pipe.sadd(f"{self.prefix}node:{self.node}:jids", str(jid))
            old, _, _ = await pipe.execute()
        return _parse(old) if old is not None else None

    async def claim(self, jid: JID, priority: int, available: bool) -> Row | None:
        """Write our row for ``jid`` unless another node holds it now; that node's row then
        (our session there is the older one: a node that was reaped while paused or cut
        from Redis finds its resources taken by sessions bound elsewhere meanwhile)."""
        row = f"{self.node}\t{priority}\t{1 if available else 0}"
        other = await self._claim(
            keys=[self._sess(str(jid.bare)), f"{self.prefix}node:{self.node}:jids"],
            args=[str(jid.resource), row, self.node, str(jid)])
        return _parse(other) if other else None

    async def remove(self, jid: JID) -> None:
        # Only our own row: after a conflict, or a session resumed on another node (XEP-0198
        # §5 handover), the resource may already belong to another node. One script (check
        # and delete at once): read, then delete, could delete the row another node wrote
        # in between.
        await self._remove(keys=[self._sess(str(jid.bare)),
                                 f"{self.prefix}node:{self.node}:jids"],
                           args=[str(jid.resource), self.node, str(jid)])

    async def cookie(self) -> bytes:
        """The cluster cookie: made by the first node, read by the others."""
        key = f"{self.prefix}cookie"
        await self.redis.set(key, secrets.token_bytes(COOKIE_SIZE), nx=True)
        value = await self.redis.get(key)
        assert isinstance(value, bytes) and len(value) == COOKIE_SIZE
        return value

    async def address(self, node: str) -> str | None:
        value = await self.redis.hget(f"{self.prefix}nodes", node)
        return _text(value) if value is not None else None

    async def resources(self, bare: JID) -> dict[str, Row]:
        raw = await self.redis.hgetall(self._sess(str(bare)))
        return {_text(k): _parse(v) for k, v in raw.items()}

    async def resources_listed(self, bares: list[JID]) -> tuple[list[dict[str, Row]], bool]:
        """``resources`` of each of ``bares`` and whether this node is still listed, in one
        round trip: not listed means Redis lost its data (restarted empty) or reaped us, so
        the rows may be incomplete until every node wrote its sessions back."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for bare in bares:
                pipe.hgetall(self._sess(str(bare)))
            pipe.hexists(f"{self.prefix}nodes", self.node)
            *raws, listed = await pipe.execute()
        return [{_text(k): _parse(v) for k, v in raw.items()} for raw in raws], bool(listed)

    async def count_user(self, bare: JID) -> int:
        return int(await self.redis.hlen(self._sess(str(bare))))

    async def nodes(self) -> dict[str, str]:
        raw = await self.redis.hgetall(f"{self.prefix}nodes")
        return {_text(k): _text(v) for k, v in raw.items()}

    async def reap(self, node: str) -> int:
        """Remove ``node``'s sessions if it is dead; -1 when someone else did or it lives."""
        return int(await self._reap(
            keys=[f"{self.prefix}nodes", f"{self.prefix}alive:{node}",
                  f"{self.prefix}node:{node}:jids"],
            args=[node, f"{self.prefix}sess:"]))

    async def reap_dead(self) -> dict[str, int]:
        """Reap every listed node whose heartbeat expired; what this call removed."""
        done: dict[str, int] = {}
        for node in await self.nodes():
            if node == self.node:
                continue
            if not await self.redis.exists(f"{self.prefix}alive:{node}"):
                removed = await self.reap(node)
                if removed >= 0:
                    done[node] = removed
        return done


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _parse(raw: Any) -> Row:
    node, priority, available = _text(raw).split("\t")
    return Row(node, int(priority), available == "1")


def connect(pool: dict[str, Any]) -> Redis:
    """A client for ``[outgoing_pools.redis.<tag>]`` (redis-py's asyncio client)."""
    from redis.asyncio import BlockingConnectionPool, Redis

    conn = pool["connection"]
    # Blocking: past ``workers`` commands at once, a command waits for a free connection
    # (the plain pool raises "Too many connections" instead: stanzas would be routed offline
    # under load).
    return Redis(connection_pool=BlockingConnectionPool(
        host=conn["host"], port=conn["port"], db=conn["database"],
        password=conn["password"] or None, max_connections=pool["workers"],
        socket_connect_timeout=5, timeout=QUEUE_FOR))


class RedisNode:
    """This server's membership: mirrors its local sessions, beats, reaps dead nodes."""

    # What ``_plain()`` answered, and the hooks' version it was computed at (none yet).
    _plain_answer = False
    _plain_version = -1

    def __init__(self, server: Server, redis: Redis | None = None,
                 node: str | None = None, prefix: str = PREFIX) -> None:
        self.server = server
        # With Sentinel (``connection.sentinels``): the master's client and the watch that
        # tells a failover (redis_sentinel.py), after which this node writes its rows again.
        self.failover: MasterWatch | None = None
        self._pool_cfg: dict[str, Any] | None = None
        if redis is None:
            pool = server.cfg["outgoing_pools"]["redis"]["default"]
            self._pool_cfg = pool
            if pool["connection"].get("sentinels"):
                from suricate.cluster import redis_sentinel  # redis-py, as connect(): lazily

                redis, self.failover = redis_sentinel.connect(pool, QUEUE_FOR)
            else:
                redis = connect(pool)
        self.redis = redis
        self.store = RedisSessions(self.redis, node or new_node_name(), prefix)
        # local session -> (priority, available) last written
        self._written: dict[Any, tuple[int, bool]] = {}
        self._queue: asyncio.Queue[tuple[str, JID, int, bool] | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[Any]] = []
        general = server.cfg["general"]
        self.links = NodeLinks(self._received, general["cluster_address"],
                               general["cluster_port"], self._undelivered)
        # full JIDs whose cached node is being looked up again ahead of expiry (REFRESH_AHEAD)
        self._refreshing: set[JID] = set()
        self._address = ""
        # full JID -> (its node, until when that answer is used without asking Redis)
        self._where: dict[JID, tuple[str, float]] = {}
        # lookups waiting for this loop turn's pipeline
        self._lookups: list[tuple[JID, asyncio.Future[dict[str, Row]]]] = []
        # node -> advertised address, refreshed at every beat
        self._addresses: dict[str, str] = {}
        # Since when Redis answers our beats again (monotonic): a node that was cut from
        # Redis does not reap others until they had time to beat too (they were cut as well).
        self._healthy_since = 0.0
        # Until when (monotonic) Redis may not know every session yet: it came back from an
        # outage, maybe empty, and the nodes write their sessions again at their next beat.
        self._rebuilding_until = 0.0
        # Services of this node that other nodes forward stanzas to (mod_muc's rooms), and
        # who wants to know that a node left the cluster (reaped as dead, or stopped): every
        # node calls them, within a beat of seeing the node delisted.
        self.services: dict[str, ServiceHandler] = {}
        self.departed_listeners: list[Callable[[str], None]] = []
        # A node that left: what this node wrote to it and it did not acknowledge is routed
        # again here (links.py), also when another survivor reaped it.
        self.departed_listeners.append(self.links.forget)
        self._members: set[str] = set()  # the nodes listed at the last beat
        self.index = 0  # this node's index among the listed ones (claim_index), from start
        # account -> its sends waiting behind one in flight (_in_order)
        # (the send, done once it ran: the sender's next stanza waits for it, route_held)
        self._pending: dict[JID, deque[tuple[Coroutine[Any, Any, None],
                                             asyncio.Future[None]]]] = {}
        # Who holds rows of its own besides the sessions (mod_muc's room claims) and must
        # write them again when Redis lost them: called after this node joined again (Redis
        # came back empty, a survivor reaped this node while paused) or after a Sentinel
        # failover (the new master may lack the last writes).
        self.rewrite_listeners: list[Callable[[], None]] = []
        # The beat, from a thread with a blocking client of its own: an overloaded loop does
        # not get a live node reaped (heartbeat.py).
        self.heartbeat = Heartbeat(self._beat_client, self.store.alive_key)

    @property
    def name(self) -> str:
        return self.store.node

    def _beat_client(self) -> SyncRedis:
        """A blocking client to the same Redis (the master, with Sentinel) and database as
        this node's pool, for the heartbeat thread; its commands time out within a beat."""
        import redis

        if self._pool_cfg is not None and self._pool_cfg["connection"].get("sentinels"):
            from suricate.cluster import redis_sentinel

            return redis_sentinel.sync_master(self._pool_cfg, BEAT)
        kwargs = self.redis.connection_pool.connection_kwargs
        return redis.Redis(host=kwargs.get("host", "127.0.0.1"), port=kwargs.get("port", 6379),
                           db=kwargs.get("db", 0), password=kwargs.get("password"),
                           socket_connect_timeout=BEAT, socket_timeout=BEAT)

    async def start(self) -> None:
        """Before ``server.start()``: fails (redis ConnectionError) when Redis is unreachable,
        so a node never serves clients it cannot record."""
        await self._refuse_redis_cluster()
        if self.failover is not None:
            await self.failover.moved()  # the master now: a failover is a change from it
        cookie = await self.store.cookie()
        self.server.cluster_cookie = cookie  # the dialback secret derives from it (s2s.py)
        self._address = await self.links.start(cookie)
        await self.store.join(self._address)
        # After join: a node listed holds its index. Read by mod_mam's id generator at its
        # start (the node bits of every archive id), so it is claimed before the modules.
        self.index = await self.store.claim_index(random.randrange(NODE_INDEXES))
        self._addresses = await self.store.nodes()
        reaped = await self.store.reap_dead()
        self._reaped(reaped)
        self._members = set(self._addresses) - set(reaped)
        sessions = self.server.sessions
        if sessions.observer is not None:
            raise RuntimeError("the session table already has an observer (--workers?)")
        sessions.observer = self
        # After mod_presence (80), which sets priority and presence.
        self.server.hooks.add(H.USER_SEND_PACKET, self._client_sent, 95)
        self.server.router.elsewhere = self
        sessions.count_elsewhere = self.count_elsewhere
        self.heartbeat.start()
        self._tasks = [asyncio.create_task(self._writer(), name="redis-sm-writer"),
                       asyncio.create_task(self._beater(), name="redis-sm-membership")]
        log.info("cluster_joined node=%s", self.name)

    async def _refuse_redis_cluster(self) -> None:
        """A Redis Cluster node is refused with the reason: the scripts (``_REAP``) touch
        the keys of several accounts at once, which Redis Cluster runs only when every key
        is in one hash slot (docs/cluster.md, "Redis Sentinel, not Redis Cluster")."""
        info = await self.redis.info("cluster")
        if int(info.get("cluster_enabled", 0)) == 1:
            raise RuntimeError(
                "Redis Cluster is not supported: the session table's scripts touch the keys "
                "of several users at once, which Redis Cluster accepts only within one hash "
                "slot; use one Redis server, or Redis Sentinel for failover "
                "(connection.sentinels)")

    async def stop(self) -> None:
        """After ``server.stop()``: the sessions are gone; leave the cluster cleanly."""
        self.server.hooks.remove(H.USER_SEND_PACKET, self._client_sent)
        if self.server.sessions.observer is self:
            self.server.sessions.observer = None
        if self.server.router.elsewhere is self:
            self.server.router.elsewhere = None
        self.server.sessions.count_elsewhere = SessionTable().count_elsewhere
        self._queue.put_nowait(None)
        writer, beater = self._tasks
        beater.cancel()
        # Each wait is bounded (``within``, not wait_for: a Redis call may ignore its
        # cancellation): a stop must end (SIGTERM). What is left, the others reap once this
        # node's heartbeat expires, as for a node that died.
        await within(writer, LEAVE_WITHIN, "session table writer")
        await within(beater, LEAVE_WITHIN, "membership")
        await self.heartbeat.stop()  # before leave() deletes the key: no beat after it
        await within(self.links.stop(), LEAVE_WITHIN, "links")
        await within(self.store.leave(self.index), LEAVE_WITHIN, "leave")
        await within(self.redis.aclose(), LEAVE_WITHIN, "redis")
        if self.failover is not None:
            await within(self.failover.aclose(), LEAVE_WITHIN, "sentinel")

    async def flush(self) -> None:
        """Wait until every queued write is in Redis (tests, shutdown)."""
        await self._queue.join()

    # -- the table's observer ------------------------------------------------------------
    def registered(self, session: Session) -> None:
        # A bind takes the resource over (RFC 6120 §7.7.2.2): "put", the only write that
        # replaces another node's row.
        self._written.pop(session, None)
        self._refresh(session, "put")

    def unregistered(self, session: Session) -> None:
        self._written.pop(session, None)
        self._queue.put_nowait(("del", session.jid, 0, False))

    def _client_sent(self, stanza: Element | None, c2s: Any) -> Element | None:
        # Presence changes priority/availability (mod_presence consumed it: None); messages
        # and IQs change nothing, so they cost one attribute read here.
        if stanza is None or stanza.name == "presence":
            self._refresh(c2s)
        return stanza

    def _refresh(self, session: Session, op: str = "claim") -> None:
        if session.jid is None or session.jid.resource is None:
            return
        state = (session.priority, session.available)
        if self._written.get(session) != state:
            self._written[session] = state
            self._queue.put_nowait((op, session.jid, state[0], state[1]))

    async def count_elsewhere(self, full: JID) -> int:
        """The account's sessions on other nodes, but ``full`` (which binding replaces)."""
        # In a task of its own: the bind may be driven outside any task, and the pool's wait
        # for a free connection (asyncio.timeout) needs one.
        return await asyncio.ensure_future(self._count_elsewhere(full))

    async def _count_elsewhere(self, full: JID) -> int:
        try:
            rows = await self.store.resources(full.bare)
        except Exception:
            # Redis away: count what this node knows rather than refuse every login.
            log.warning("redis_sm_lookup_failed to=%s", full, exc_info=True)
            return 0
        return sum(1 for resource, row in rows.items()
                   if row.node != self.name and resource != full.resource)

    # -- stanzas for sessions of other nodes (Router.elsewhere) ---------------------------
    def to_full(self, frm: JID, to: JID, stanza: Element) -> None:
        # Fast path: the node of a full JID looked up less than ROW_TTL ago, with its link
        # open: written at once, no Redis round trip, no task. Not while an earlier send to
        # the same account is still in flight (_in_order): this one would overtake it.
        if to.bare not in self._pending and self._written_now(frm, to, stanza):
            return
        self._in_order(to.bare, self._to_full(frm, to, stanza))

    def _written_now(self, frm: JID, to: JID, stanza: Element) -> bool:
        """The fast path: written on the open link to the node found less than ROW_TTL ago."""
        hit = self._where.get(to)
        if hit is None:
            return False
        left = hit[1] - time.monotonic()
        if left <= 0 or not self.links.send_now(hit[0], self._to_full_item(frm, to, stanza)):
            return False
        if left < REFRESH_AHEAD and to not in self._refreshing:
            self._refreshing.add(to)
            self.server.spawn(self._refresh_ahead(to))
        return True

    async def _refresh_ahead(self, to: JID) -> None:
        """Look ``to`` up again before its cached node expires (the stanzas keep taking the
        fast path meanwhile; a row that moved or left drops the cache entry)."""
        try:
            row = (await self._batched(to.bare)).get(str(to.resource))
            if row is not None and row.node != self.name and not self.links.gone(row.node):
                self._where[to] = (row.node, time.monotonic() + ROW_TTL)
            else:
                self._where.pop(to, None)
        except Exception:
            self._where.pop(to, None)  # Redis away: the next stanza takes the slow path
        finally:
            self._refreshing.discard(to)

    def to_bare(self, frm: JID, to: JID, stanza: Element, also: bool = False) -> None:
        self._in_order(to.bare, self._to_bare(frm, to, stanza, also))

    def _in_order(self, key: JID, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` after the earlier sends to the same account. A send off the fast
        path looks its node up in Redis (one pipeline per loop turn, on whichever pooled
        connection is free) and may open a link: two sends left to themselves can overtake
        each other, and a fast-path write can overtake a send still looking up (RFC 6120
        §10.1: stanzas keep their order; XEP-0045: every occupant sees the room's messages
        in one order). Frames written on one link arrive in order (links.py).

        One task per account drains its queue: a send whose node is known by then is written
        without suspending, so what queued behind one lookup leaves in the same loop turn.
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.server.router.hold(done)
        queue = self._pending.get(key)
        if queue is not None:
            queue.append((work, done))
            return
        self._pending[key] = deque([(work, done)])
        self.server.spawn(self._drain(key))

    async def _drain(self, key: JID) -> None:
        queue = self._pending[key]
        try:
            while queue:
                work, done = queue.popleft()
                try:
                    await work
                except Exception:
                    log.exception("redis_sm_send_failed to=%s", key)
                finally:
                    if not done.done():
                        done.set_result(None)
        finally:
            del self._pending[key]
            for work, done in queue:  # cancelled (the node stops): never started
                work.close()
                if not done.done():
                    done.set_result(None)

    async def _patiently(self, what: str, to: JID, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, tried again while Redis is unreachable, for up to ``QUEUE_FOR``
        seconds: the stanza waits rather than going offline during a Redis restart. Raises
        the last error after that (the caller routes the stanza here)."""
        deadline = time.monotonic() + QUEUE_FOR
        delay = 0.05
        failed = False
        while True:
            try:
                result = await call()
                if failed:
                    self._recovered()
                return result
            except Exception:
                failed = True
                if time.monotonic() + delay > deadline:
                    raise
                log.info("redis_sm_waiting op=%s to=%s", what, to)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _recovered(self) -> None:
        """Redis answers again after failing: until every node had a beat to write its
        sessions back, "no such session" from Redis is not trusted at once."""
        self._rebuilding_until = time.monotonic() + REBUILD

    async def _lookup(self, to: JID) -> dict[str, Row]:
        return await self._patiently("lookup", to, lambda: self._batched(to.bare))

    def _batched(self, bare: JID) -> asyncio.Future[dict[str, Row]]:
        """The lookups of one loop turn leave in one pipeline (one round trip for all):
        under load a cross-node stanza does not wait for a Redis round trip of its own."""
        future: asyncio.Future[dict[str, Row]] = asyncio.get_running_loop().create_future()
        self._lookups.append((bare, future))
        if len(self._lookups) == 1:
            self.server.spawn(self._flush_lookups())
        return future

    async def _flush_lookups(self) -> None:
        await asyncio.sleep(0)  # the rest of this turn's lookups join the batch
        batch, self._lookups = self._lookups, []
        try:
            rows, listed = await self.store.resources_listed([bare for bare, _ in batch])
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        if not listed:
            self._recovered()
        for (_, future), found in zip(batch, rows, strict=True):
            if not future.done():
                future.set_result(found)

    async def _until_rebuilt(self) -> bool:
        """Wait for the table to be rebuilt if it may not be yet; whether it was waited for
        (the caller looks again rather than routing by a half-empty table)."""
        wait = self._rebuilding_until - time.monotonic()
        if wait <= 0:
            return False
        await asyncio.sleep(wait)
        return True

    def to_owner(self, frm: JID, to: JID, stanza: Element) -> None:
        self._in_order(to.bare, self._to_owner(frm, to, stanza))

    async def _to_owner(self, frm: JID, to: JID, stanza: Element) -> None:
        try:
            rows = await self._lookup(to)
            # A node with an available resource first (RFC 6121 §3.1.3 delivers there).
            nodes = sorted({(not r.available, r.node) for r in rows.values()
                            if r.node != self.name})
            for _, node in nodes:
                if await self._send(node, frm, to.bare, stanza):
                    return
        except Exception:
            log.warning("redis_sm_lookup_failed to=%s", to, exc_info=True)
        self.server.router.route_here(frm, to, stanza)

    async def _to_full(self, frm: JID, to: JID, stanza: Element) -> None:
        # Its turn came (_in_order): the send before it may have found the node meanwhile,
        # so the sends queued behind one lookup do not each make their own.
        if self._written_now(frm, to, stanza):
            return
        try:
            for _ in range(2):
                row = (await self._lookup(to)).get(str(to.resource))
                if row is not None and row.node != self.name and await self._send(
                        row.node, frm, to, stanza):
                    if len(self._where) > 100_000:
                        self._where.clear()
                    self._where[to] = (row.node, time.monotonic() + ROW_TTL)
                    return
                self._where.pop(to, None)
                if not await self._until_rebuilt():
                    break
        except Exception:
            log.warning("redis_sm_lookup_failed to=%s", to, exc_info=True)
            self.server.router.route_here(frm, to, stanza)
            return
        # No session anywhere, or its node died (nobody listens on its channel): RFC 6121
        # §8.5.3.2 (a chat message to the bare JID: another resource, here or on another
        # node, offline storage or an error). The bare-JID path ends by itself: no loop.
        self.server.router.to_full_unavailable(frm, to, stanza)

    async def _to_bare(self, frm: JID, to: JID, stanza: Element, also: bool) -> None:
        """RFC 6121 §8.5.2.1.1 / §8.5.2.1.2 on the other nodes: every available resource
        (with a non-negative priority for a message)."""
        if await self._to_bare_once(frm, to, stanza, also) or also:
            return
        # Not found while the table may be rebuilding (Redis came back, or this node was
        # reaped and is rejoining): look once more after the rebuild; found nowhere then
        # either, §8.5.2.2 here (offline storage or an error), never dropped.
        if await self._until_rebuilt() and await self._to_bare_once(frm, to, stanza, also):
            return
        self.server.router.route_here(frm, to, stanza)

    async def _to_bare_once(self, frm: JID, to: JID, stanza: Element, also: bool) -> bool:
        """Whether it was delivered on another node (or handled: a probe, an error)."""
        delivered = False
        min_priority = 0 if stanza.name == "message" else -128
        try:
            rows = await self._lookup(to)
            if stanza.attrs.get("type") == "probe":
                # Answered by each node holding available resources, from their presence.
                for node in {r.node for r in rows.values() if r.available} - {self.name}:
                    await self._send(node, frm, to.bare, stanza)
                return True
            targets = [resource for resource, row in rows.items()
                       if row.node != self.name and row.available
                       and row.priority >= min_priority]
            # A copy that finds its session gone or no longer available is routed to the
            # bare JID there (§8.5.2: its other resources, or offline storage), a message
            # even when it was one copy among several (_received: at least once).
            mode = wire.ONLY_COPY if len(targets) == 1 and not also else wire.ONE_OF_COPIES
            for resource in targets:
                full = JID(to.local, to.domain, resource)
                delivered |= await self._send(rows[resource].node, frm, full, stanza, mode)
        except Exception:
            log.warning("redis_sm_lookup_failed to=%s", to, exc_info=True)
        return delivered

    async def _send(self, node: str, frm: JID, to: JID, stanza: Element,
                    mode: int = wire.TO_FULL) -> bool:
        """Over the link to ``node``; False when it is not listed or cannot be reached (it
        died, even before a survivor reaped it): the caller routes the stanza again.
        ``mode``: a stanza to a full JID, or a copy of a bare-JID fan-out (wire.py)."""
        if mode == wire.TO_FULL and to.resource is not None:
            item = self._to_full_item(frm, to, stanza)
        else:
            item = (wire.STANZA, str(frm), str(to), wire.pack(stanza), mode)
        return await self._link_send(node, item, to)

    def _to_full_item(self, frm: JID, to: JID, stanza: Element) -> tuple[Any, ...]:
        """What travels for a stanza to a full JID. A message or IQ travels as the bytes
        the recipient's socket gets (``wire.XML``) when the receiving node will likely write
        them as they are: every node runs the same configuration, so when this one has no
        filter that needs the element (mod_mam, mod_inbox archive a message to a full JID;
        blocking, carbons, CSI filter what a session receives; instrumentation counts
        elements), neither has the other. The receiver checks again (the session's own
        state: XEP-0198 counting) and parses the bytes when it must. Otherwise the element
        travels as tuples, cheaper to rebuild there than XML is to parse."""
        if stanza.name == "presence" or not self._plain():
            return (wire.STANZA, str(frm), str(to), wire.pack(stanza), wire.TO_FULL)
        return (wire.XML, str(frm), str(to), wire.serialized(stanza))

    def _plain(self) -> bool:
        """Whether nothing on this node needs a message or IQ to a full JID as an element
        on its way to the session (no ``filter_local_packet`` filter: mod_mam, mod_inbox;
        no ``user_receive_packet``: blocking, carbons, CSI; no instrumentation, which counts
        elements). Every node runs the same configuration: the sender's answer is the
        receiver's. Asked for every crossing message (both ends), so kept until a hook is
        added or removed (``Hooks.version``) rather than asked of the hooks each time."""
        hooks = self.server.hooks
        if self._plain_version != hooks.version:
            self._plain_answer = not (
                self.server.instrument.enabled or hooks.has(H.FILTER_LOCAL_PACKET)
                or hooks.has(H.USER_RECEIVE_PACKET))
            self._plain_version = hooks.version
        return self._plain_answer

    async def send_service(self, node: str, service: str, frm: JID, to: JID,
                           stanza: Element, hops: int) -> bool:
        """``stanza`` for the handler ``service`` registered on ``node`` (``services``: the
        rooms it owns, mod_muc/placement.py), over the link to it; False, as ``_send``, when
        the node is not listed or cannot be reached (it died or stopped)."""
        return await self._link_send(
            node, (wire.SERVICE, service, hops, str(frm), str(to), wire.pack(stanza)), to)

    async def _link_send(self, node: str, item: tuple[Any, ...], to: JID) -> bool:
        address = self._addresses.get(node)
        if address is None:
            address = await self._patiently("address", to, lambda: self.store.address(node))
            if not address:
                return False
            self._addresses[node] = address
        return await self.links.send(node, address, item)

    def _received(self, items: list[tuple[Any, ...]]) -> None:
        """The items of one frame from another node (links.py), in order. An item that fails
        is logged and the next one handled: each counts as handled (acknowledged)."""
        sessions = self.server.sessions
        plain = self._plain()
        written: list[Any] = []
        try:
            for item in items:
                try:
                    if plain and item[0] == wire.XML:
                        # The hot path (issue 14): the bytes to the session's socket as they
                        # are, no element. ``write_serialized`` refuses when the session
                        # itself needs the element (XEP-0198 counting) or is not established.
                        session = sessions.local(JID.parse(item[2]))
                        if session is not None:
                            write = getattr(session, "write_serialized", None)
                            if write is not None and write(item[3], written):
                                continue
                    self._received_item(item)
                except Exception:
                    log.exception("cluster_item_failed kind=%r", item[0])
        finally:
            # The frame's bytes leave now, one write per connection, in the loop turn that
            # read the frame (not one turn later, from a callback per connection).
            for conn in written:
                conn.flush_pending()

    def _received_item(self, item: tuple[Any, ...]) -> None:
        if item[0] == wire.REPLACE:
            old = self.server.sessions.local(JID.parse(item[1]))
            if old is not None:
                self.server.sessions.unregister(old)
                old.replaced()
            return
        if item[0] == wire.SERVICE:
            _, service, hops, frm_text, to_text, packed = item
            frm, to, stanza = JID.parse(frm_text), JID.parse(to_text), wire.unpack(packed)
            handler = self.services.get(service)
            if handler is not None:
                handler(frm, to, stanza, hops)
            else:
                # The service stopped here meanwhile: the local rules answer (an error).
                self.server.router.route_here(frm, to, stanza)
            return
        if item[0] == wire.XML:
            # Not written as bytes (_received): something needs the element (XEP-0198
            # counting, an archive, a filter) or the session left: as a STANZA to the full
            # JID.
            _, frm_text, to_text, data = item
            to = JID.parse(to_text)
            stanza, mode = wire.parse(data), wire.TO_FULL
        else:
            _, frm_text, to_text, packed, mode = item
            to, stanza = JID.parse(to_text), wire.unpack(packed)
        if to.resource is None:
            # A probe for the user's local resources (_to_bare), or a subscription stanza
            # processed here (_to_owner).
            self.server.router.route_here(JID.parse(frm_text), to, stanza)
            return
        session = self.server.sessions.local(to)
        if mode == wire.TO_FULL:
            if session is not None and stanza.name != "presence" \
                    and not self.server.hooks.has(H.FILTER_LOCAL_PACKET):
                # What Router._route_local does for a message or IQ to a session with no
                # filters, without its detours (the common case, on the hot path).
                session.deliver(stanza)
                return
            # Routed as a local stanza (as if it had come from a client of this node): the
            # local filters run (mod_mam archives a message to a full JID, RFC 6121 §8.5.3),
            # a subscription presence is processed, and a session that left while the stanza
            # travelled gets §8 here, never forwarded again (route_here).
            self.server.router.route_here(JID.parse(frm_text), to, stanza)
            return
        if session is None or not session.available:
            # A copy of a bare-JID stanza whose resource left or went unavailable while it
            # travelled (the client may be closing: what reaches its socket now is lost):
            # a message goes to the bare JID here (§8.5.2: a resource here, else offline
            # storage) even when other copies were sent (ONE_OF_COPIES): their sessions may
            # have left at the same instant, and a message shown twice beats one never shown.
            # A presence copy among several is dropped (the others carry the same state).
            if mode == wire.ONLY_COPY or stanza.name == "message":
                self.server.router.route_here(JID.parse(frm_text), to.bare, stanza)
            else:
                log.info("cluster_copy_dropped to=%s", to)
        else:
            session.deliver(stanza)

    def _undelivered(self, node: str, items: list[tuple[Any, ...]]) -> None:
        """Items written to ``node`` that it did not acknowledge before its link ended or it
        was reaped (links.py): it may have died with them unread. Routed again here, as if
        that node had no session (RFC 6121 §8): another resource of the account, offline
        storage for a message, or an error to the sender; never dropped silently. This node,
        the sender, is the one responsible: the dead node cannot do it any more."""
        self._where = {jid: hit for jid, hit in self._where.items() if hit[0] != node}
        router = self.server.router
        copies: set[bytes] = set()  # the bare-JID messages already routed again
        for item in items:
            kind = item[0]
            if kind == wire.XML:  # as the STANZA it stands for
                _, frm_text, to_text, data = item
                item = (wire.STANZA, frm_text, to_text, wire.pack(wire.parse(data)),
                        wire.TO_FULL)
                kind = wire.STANZA
            if kind == wire.STANZA:
                _, frm_text, to_text, packed, mode = item
                frm, to, stanza = JID.parse(frm_text), JID.parse(to_text), wire.unpack(packed)
                if mode != wire.TO_FULL and to.resource is not None:
                    # Several copies of one bare-JID message to resources of that node go
                    # to the bare JID once (else offline storage would hold it twice).
                    key = marshal.dumps((frm_text, str(to.bare), packed))
                    if key in copies:
                        continue
                    copies.add(key)
                log.info("cluster_rerouted to=%s kind=%s mode=%d", to, stanza.name, mode)
                if to.resource is None:
                    # A subscription stanza for the owner (processed on one node: its roster
                    # there); a probe is not repeated (the presence it asked for left too).
                    if stanza.attrs.get("type") != "probe":
                        router.route(frm, to, stanza)
                elif mode == wire.TO_FULL:
                    # §8.5.3.2: a chat message to the bare JID (other resources, here or on
                    # live nodes, else offline storage), an IQ answered with an error.
                    router.to_full_unavailable(frm, to, stanza)
                elif stanza.name == "message":
                    # A copy of a bare-JID message (§8.5.2.1.1): this node cannot know
                    # whether the other copies were delivered, so the message goes to the bare
                    # JID again: other resources may see it twice, but it is never lost.
                    router.route(frm, to.bare, stanza)
                # A presence copy: the resource it was for is gone with its node.
            elif kind == wire.SERVICE:
                # A stanza for a service of the dead node (a room): routed again, it waits
                # until the room's claim is taken over (mod_muc/placement.py).
                _, _, _, frm_text, to_text, packed = item
                router.route(JID.parse(frm_text), JID.parse(to_text), wire.unpack(packed))
            # REPLACE: the session to end died with its node.

    def _reaped(self, reaped: dict[str, int]) -> None:
        for node, count in reaped.items():
            log.warning("cluster_node_reaped node=%s sessions=%d", node, count)
            self.links.forget(node)

    def _departed(self, listed: set[str]) -> None:
        """Tell ``departed_listeners`` about the nodes listed at the last beat and no longer
        now: reaped (by this node or another) or stopped cleanly."""
        gone, self._members = self._members - listed - {self.name}, listed
        for node in sorted(gone):
            for listener in self.departed_listeners:
                try:
                    listener(node)
                except Exception:
                    log.exception("cluster_departed_listener_failed node=%s", node)

    # -- tasks ---------------------------------------------------------------------------
    async def _writer(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                if item is None:
                    return
                op, jid, priority, available = item
                await self._apply(op, jid, priority, available)
            finally:
                self._queue.task_done()

    async def _apply(self, op: str, jid: JID, priority: int, available: bool) -> None:
        # Redis briefly away: retry rather than lose the row (the heartbeat stops meanwhile,
        # so a long outage ends with this node reaped and its rows re-written on recovery).
        for attempt in range(10):
            try:
                if op == "put":
                    old = await self.store.put(jid, priority, available)
                    if old is not None and old.node != self.name:
                        # The same full JID was bound on another node: the older session
                        # ends with a conflict stream error there (RFC 6120 §7.7.2.2).
                        await self._link_send(old.node, (wire.REPLACE, str(jid)), jid)
                elif op == "claim":
                    other = await self.store.claim(jid, priority, available)
                    if other is not None:
                        self._taken(jid, other.node)
                else:
                    await self.store.remove(jid)
                return
            except Exception:
                log.warning("redis_sm_write_failed op=%s jid=%s attempt=%d", op, jid, attempt,
                            exc_info=attempt == 0)
                await asyncio.sleep(min(0.1 * 2 ** attempt, 2.0))

    def _taken(self, jid: JID, node: str) -> None:
        """Our session of ``jid`` is the older one: another node bound the same full JID
        while this node was reaped (paused, or cut from Redis). It ends with <conflict/>
        as if replaced at that bind (RFC 6120 §7.7.2.2), never coming back as a duplicate."""
        session = self.server.sessions.local(jid)
        if session is not None:
            log.warning("cluster_session_taken jid=%s by=%s", jid, node)
            self.server.sessions.unregister(session)
            session.replaced()

    async def _rewrite(self) -> None:
        """Redis lost (or may have lost) this node's rows: join again and write them back,
        the sessions as claims (a resource bound on another node meanwhile wins), then the
        other rows of this node (``rewrite_listeners``)."""
        self._recovered()
        await self.store.join(self._address)
        index = await self.store.claim_index(self.index)
        if index != self.index:
            # Reaped while paused, and another node took our index meanwhile: the ids made
            # here keep the old bits (the generators started with them), so both nodes may
            # make one id in the same microsecond. Said loudly; a restart of this node ends it.
            log.error("cluster_node_index_taken node=%s index=%d now=%d: restart this node",
                      self.name, self.index, index)
        self._written.clear()
        for session in list(self.server.sessions):
            self._refresh(session)
        for listener in self.rewrite_listeners:
            try:
                listener()
            except Exception:
                log.exception("cluster_rewrite_listener_failed node=%s", self.name)

    async def _beater(self) -> None:
        """Membership, every BEAT: rejoin if reaped, reap the dead, tell who departed. The
        heartbeat key itself is written by ``self.heartbeat`` (a thread)."""
        failing = False
        while True:
            await asyncio.sleep(BEAT)
            try:
                # Are we still listed? A survivor reaped us during a long pause, or Redis
                # restarted empty: join again and claim our live sessions back, unless a
                # resource was bound on another node meanwhile (that session wins).
                self._addresses = await self.store.nodes()
                if failing:
                    failing = False
                    self._healthy_since = time.monotonic()
                    self._recovered()
                    log.warning("redis_sm_reachable node=%s", self.name)
                moved = self.failover is not None and await self.failover.moved()
                if self.name not in self._addresses or moved:
                    log.warning("cluster_rejoin node=%s failover=%s", self.name, moved)
                    await self._rewrite()
                    self._addresses = await self.store.nodes()
                # Right after an outage every node's heartbeat may have expired: reap only
                # once the others had DEAD_AFTER to beat again. The same guard for telling
                # the departed listeners: a Redis that came back empty lists no one until
                # the others rejoin (within a beat), and they did not leave.
                if time.monotonic() - self._healthy_since >= DEAD_AFTER + BEAT:
                    reaped = await self.store.reap_dead()
                    self._reaped(reaped)
                    self._departed(set(self._addresses) - set(reaped))
            except Exception:
                if not failing:
                    log.warning("redis_sm_membership_failed node=%s", self.name, exc_info=True)
                failing = True

"""The session table's Redis side (``[general] sm_backend = "redis"``, DESIGN §2.9, §7).

The in-process ``SessionTable`` stays the table the router reads (the hot path does not wait
for Redis); this node mirrors its local sessions into Redis so that every node can see, for a
bare JID, which resources exist on which node with which priority and availability. Node
membership is a heartbeat key with a time to live: a node that stops beating (SIGKILL, network
partition) is declared dead when the key expires, and one survivor removes its sessions.

Keys (all under ``PREFIX``; the pool's ``database`` separates deployments sharing a server):

- ``sess:<bare>``: hash, resource -> ``"<node>\\t<priority>\\t<available 0|1>"``
- ``node:<node>:jids``: set of the full JIDs this node registered (what a reaper removes)
- ``nodes``: hash, node -> its advertised address (empty until routing between nodes exists)
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
import contextlib
import logging
import marshal
import os
import socket
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from suricate.cluster import wire
from suricate.core import hooks as H
from suricate.core.sessions import SessionTable
from suricate.jid import JID

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

    from suricate.core.server import Server
    from suricate.core.sessions import Session
    from suricate.xml.element import Element

log = logging.getLogger("suricate.cluster")

# A service of this node taking a stanza another node forwarded (frm, to, stanza, hops).
ServiceHandler = Callable[["JID", "JID", "Element", int], None]

PREFIX = "suricate:"
# A beat every BEAT seconds; a node whose heartbeat is older than DEAD_AFTER is dead. Three
# missed beats: a busy event loop is not mistaken for a dead node.
BEAT = 1.0
DEAD_AFTER = 3.0

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

    def _sess(self, bare: str) -> str:
        return f"{self.prefix}sess:{bare}"

    async def join(self, address: str = "") -> None:
        await self.beat()
        await self.redis.hset(f"{self.prefix}nodes", self.node, address)

    async def beat(self) -> None:
        await self.redis.set(f"{self.prefix}alive:{self.node}", "1", px=int(DEAD_AFTER * 1000))

    async def leave(self) -> None:
        """A clean stop: remove our rows at once rather than waiting to be reaped."""
        await self.redis.delete(f"{self.prefix}alive:{self.node}")
        await self.reap(self.node)

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

    async def remove(self, jid: JID) -> None:
        key = self._sess(str(jid.bare))
        row = await self.redis.hget(key, str(jid.resource))
        # Only our own row: after a conflict the resource may already belong to another node.
        if row is not None and _parse(row).node == self.node:
            await self.redis.hdel(key, str(jid.resource))
        await self.redis.srem(f"{self.prefix}node:{self.node}:jids", str(jid))

    def channel(self, node: str) -> str:
        """The pub/sub channel a node receives its stanzas on."""
        return f"{self.prefix}to:{node}"

    async def send(self, node: str, frm: JID, to: JID, stanza: Element) -> bool:
        """Publish ``stanza`` to ``node``; False when no node listens there (it died): the
        caller routes it again rather than losing it."""
        body = marshal.dumps((wire.STANZA, str(frm), str(to), wire.pack(stanza)))
        return int(await self.redis.publish(self.channel(node), body)) > 0

    async def send_service(self, node: str, service: str, frm: JID, to: JID,
                           stanza: Element, hops: int) -> bool:
        """Publish ``stanza`` to the handler ``service`` registered on ``node``
        (``RedisNode.services``); False when no node listens there."""
        body = marshal.dumps((wire.SERVICE, service, hops, str(frm), str(to),
                              wire.pack(stanza)))
        return int(await self.redis.publish(self.channel(node), body)) > 0

    async def replace(self, node: str, jid: JID) -> bool:
        """Tell ``node`` that a session of ours took ``jid`` (RFC 6120 §7.7.2.2)."""
        body = marshal.dumps((wire.REPLACE, str(jid)))
        return int(await self.redis.publish(self.channel(node), body)) > 0

    async def resources(self, bare: JID) -> dict[str, Row]:
        raw = await self.redis.hgetall(self._sess(str(bare)))
        return {_text(k): _parse(v) for k, v in raw.items()}

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
    from redis.asyncio import Redis

    conn = pool["connection"]
    return Redis(host=conn["host"], port=conn["port"], db=conn["database"],
                 password=conn["password"] or None, max_connections=pool["workers"],
                 socket_connect_timeout=5)


class RedisNode:
    """This server's membership: mirrors its local sessions, beats, reaps dead nodes."""

    def __init__(self, server: Server, redis: Redis | None = None,
                 node: str | None = None, prefix: str = PREFIX) -> None:
        self.server = server
        self.redis = redis if redis is not None else connect(
            server.cfg["outgoing_pools"]["redis"]["default"])
        self.store = RedisSessions(self.redis, node or new_node_name(), prefix)
        # local session -> (priority, available) last written
        self._written: dict[Any, tuple[int, bool]] = {}
        self._queue: asyncio.Queue[tuple[str, JID, int, bool] | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[Any]] = []
        self._pubsub: PubSub | None = None
        # Services of this node that other nodes forward stanzas to (mod_muc's rooms), and
        # who wants to know that a node left the cluster (reaped as dead, or stopped): every
        # node calls them, within a beat of seeing the node delisted.
        self.services: dict[str, ServiceHandler] = {}
        self.departed_listeners: list[Callable[[str], None]] = []
        self._members: set[str] = set()  # the nodes listed at the last beat
        # account -> the last send to it in flight (_in_order)
        self._tails: dict[JID, asyncio.Future[None]] = {}

    @property
    def name(self) -> str:
        return self.store.node

    async def start(self) -> None:
        """Before ``server.start()``: fails (redis ConnectionError) when Redis is unreachable,
        so a node never serves clients it cannot record."""
        await self.store.join()
        reaped = await self.store.reap_dead()
        self._reaped(reaped)
        self._members = set(await self.store.nodes())
        sessions = self.server.sessions
        if sessions.observer is not None:
            raise RuntimeError("the session table already has an observer (--workers?)")
        sessions.observer = self
        # After mod_presence (80), which sets priority and presence.
        self.server.hooks.add(H.USER_SEND_PACKET, self._client_sent, 95)
        self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(self.store.channel(self.name))
        self.server.router.elsewhere = self
        sessions.count_elsewhere = self.count_elsewhere
        self._tasks = [asyncio.create_task(self._writer(), name="redis-sm-writer"),
                       asyncio.create_task(self._beater(), name="redis-sm-heartbeat"),
                       asyncio.create_task(self._receiver(), name="redis-sm-receiver")]
        log.info("cluster_joined node=%s", self.name)

    async def stop(self) -> None:
        """After ``server.stop()``: the sessions are gone; leave the cluster cleanly."""
        self.server.hooks.remove(H.USER_SEND_PACKET, self._client_sent)
        if self.server.sessions.observer is self:
            self.server.sessions.observer = None
        if self.server.router.elsewhere is self:
            self.server.router.elsewhere = None
        self.server.sessions.count_elsewhere = SessionTable().count_elsewhere
        self._queue.put_nowait(None)
        writer, beater, receiver = self._tasks
        beater.cancel()
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(writer, 5)
        for task in (beater, receiver):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        try:
            await self.store.leave()
        finally:
            await self.redis.aclose()

    async def flush(self) -> None:
        """Wait until every queued write is in Redis (tests, shutdown)."""
        await self._queue.join()

    # -- the table's observer ------------------------------------------------------------
    def registered(self, session: Session) -> None:
        self._written.pop(session, None)
        self._refresh(session)

    def unregistered(self, session: Session) -> None:
        self._written.pop(session, None)
        self._queue.put_nowait(("del", session.jid, 0, False))

    def _client_sent(self, stanza: Element | None, c2s: Any) -> Element | None:
        # Presence changes priority/availability (mod_presence consumed it: None); messages
        # and IQs change nothing, so they cost one attribute read here.
        if stanza is None or stanza.name == "presence":
            self._refresh(c2s)
        return stanza

    def _refresh(self, session: Session) -> None:
        if session.jid is None or session.jid.resource is None:
            return
        state = (session.priority, session.available)
        if self._written.get(session) != state:
            self._written[session] = state
            self._queue.put_nowait(("put", session.jid, state[0], state[1]))

    async def count_elsewhere(self, full: JID) -> int:
        """The account's sessions on other nodes, but ``full`` (which binding replaces)."""
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
        self._in_order(to.bare, self._to_full(frm, to, stanza))

    def to_bare(self, frm: JID, to: JID, stanza: Element, also: bool = False) -> None:
        self._in_order(to.bare, self._to_bare(frm, to, stanza, also))

    def _in_order(self, key: JID, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` after the earlier sends to the same account: each does a lookup and
        a publish on whichever pooled connection is free, so two sends left to themselves
        can overtake each other (RFC 6120 §10.1: stanzas keep their order; XEP-0045 rooms:
        every occupant sees the room's messages in one order)."""
        before = self._tails.get(key)
        done = asyncio.get_running_loop().create_future()
        self._tails[key] = done
        self.server.spawn(self._after(key, before, done, work))

    async def _after(self, key: JID, before: asyncio.Future[None] | None,
                     done: asyncio.Future[None], work: Coroutine[Any, Any, None]) -> None:
        try:
            if before is not None:
                await asyncio.shield(before)
            await work
        finally:
            done.set_result(None)
            if self._tails.get(key) is done:
                del self._tails[key]

    async def _to_full(self, frm: JID, to: JID, stanza: Element) -> None:
        try:
            row = (await self.store.resources(to.bare)).get(str(to.resource))
            if row is not None and row.node != self.name \
                    and await self.store.send(row.node, frm, to, stanza):
                return
        except Exception:
            log.warning("redis_sm_lookup_failed to=%s", to, exc_info=True)
        # No session anywhere, or its node died (nobody listens on its channel): RFC 6121
        # §8.5.3.2 here (to the bare JID: another resource, offline storage or an error).
        self.server.router.route_here(frm, to, stanza)

    async def _to_bare(self, frm: JID, to: JID, stanza: Element, also: bool) -> None:
        """RFC 6121 §8.5.2.1.1 / §8.5.2.1.2 on the other nodes: every available resource
        (with a non-negative priority for a message)."""
        delivered = False
        min_priority = 0 if stanza.name == "message" else -128
        try:
            rows = await self.store.resources(to.bare)
            if stanza.attrs.get("type") == "probe":
                # Answered by each node holding available resources, from their presence.
                for node in {r.node for r in rows.values() if r.available} - {self.name}:
                    await self.store.send(node, frm, to.bare, stanza)
                return
            for resource, row in rows.items():
                if row.node != self.name and row.available and row.priority >= min_priority:
                    full = JID(to.local, to.domain, resource)
                    delivered |= await self.store.send(row.node, frm, full, stanza)
        except Exception:
            log.warning("redis_sm_lookup_failed to=%s", to, exc_info=True)
        if not delivered and not also:
            self.server.router.route_here(frm, to, stanza)

    async def _receiver(self) -> None:
        pubsub = self._pubsub
        assert pubsub is not None
        while True:
            try:
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._received(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("redis_sm_receive_failed node=%s", self.name, exc_info=True)
                await asyncio.sleep(0.5)

    def _received(self, data: bytes) -> None:
        item = marshal.loads(data)
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
        _, frm_text, to_text, packed = item
        to, stanza = JID.parse(to_text), wire.unpack(packed)
        if to.resource is None:
            # A probe for the user's local resources (_to_bare): answered here.
            self.server.router.route_here(JID.parse(frm_text), to, stanza)
            return
        session = self.server.sessions.local(to)
        if session is not None:
            session.deliver(stanza)
        else:
            # The session left while the stanza travelled: §8 here, never forwarded again.
            self.server.router.route_here(JID.parse(frm_text), to, stanza)

    def _reaped(self, reaped: dict[str, int]) -> None:
        for node, count in reaped.items():
            log.warning("cluster_node_reaped node=%s sessions=%d", node, count)

    def _departed(self, listed: set[str]) -> None:
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
                        await self.store.replace(old.node, jid)
                else:
                    await self.store.remove(jid)
                return
            except Exception:
                log.warning("redis_sm_write_failed op=%s jid=%s attempt=%d", op, jid, attempt,
                            exc_info=attempt == 0)
                await asyncio.sleep(min(0.1 * 2 ** attempt, 2.0))

    async def _beater(self) -> None:
        while True:
            await asyncio.sleep(BEAT)
            try:
                await self.store.beat()
                # Are we still listed? A survivor reaped us during a Redis outage or a long
                # pause: join again and re-write our live sessions.
                if self.name not in await self.store.nodes():
                    log.warning("cluster_rejoin node=%s", self.name)
                    await self.store.join()
                    self._written.clear()
                    for session in list(self.server.sessions):
                        self._refresh(session)
                self._reaped(await self.store.reap_dead())
                self._departed(set(await self.store.nodes()))
            except Exception:
                log.warning("redis_sm_heartbeat_failed node=%s", self.name, exc_info=True)

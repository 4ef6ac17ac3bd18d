"""The cluster as one service for the admin API and the modules (``sm_backend = "redis"``).

``ClusterAdmin`` is the backend of ``server.cluster`` (``suricate.core.cluster``):

- GraphQL ``session`` answers for every node: which sessions exist, on which node, with which
  priority comes from the Redis session table (``sess:<bare>`` hashes, ``redis_sm``); what only
  the owning node knows (connection type, client address and port, uptime) is asked of that
  node; acting on a session (kick, setPresence) is done by the node that holds it.
- ``cast``: a module hands a stanza to the account's sessions on the other nodes (carbons,
  roster pushes, subscription requests); each such node runs the module's handler for its own
  sessions.

Requests travel on a Redis pub/sub channel per node, ``ctl:<node>``, apart from the stanza
transport of ``redis_sm`` (whatever that transport is, the control plane needs only Redis):
a request names the node to answer and an id, the answer comes back on the asker's channel.
``PUBLISH`` answers how many nodes listen, so a request to a node that died fails at once
instead of waiting. Frames are marshalled tuples, read only from the cluster's own Redis
(as ``wire`` frames are).
"""

from __future__ import annotations

import asyncio
import logging
import marshal
import uuid
from typing import TYPE_CHECKING, Any

from suricate.admin.resolvers.session import (
    apply_presence,
    session_info,
    users_with_status_here,
)
from suricate.cluster import wire
from suricate.cluster.redis_sm import Row, _parse, _text
from suricate.cluster.stopping import within
from suricate.core.c2s import C2S
from suricate.core.cluster import NodeUnreachable
from suricate.instrument.prometheus import PrometheusHandler
from suricate.jid import JID

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

    from suricate.cluster.redis_sm import RedisSessions
    from suricate.core.server import Server
    from suricate.xml.element import Element

log = logging.getLogger("suricate.cluster")

# How long an asker waits for another node's answer: a live node answers within a loop turn
# and a Redis round trip; one that does not in this time is treated as gone for this request.
ANSWER_WITHIN = 3.0
# How long ``stop`` waits for the listener to end and the pub/sub connection to close: a
# node told to stop (SIGTERM) must exit even when Redis does not answer or redis-py turns the
# cancellation into a connection error (the listener would then retry forever).
STOP_WITHIN = 2.0

# Request kinds (the first item of a frame).
ASK = "ask"      # (ASK, id, asker node, operation, arguments...)
ANSWER = "ans"   # (ANSWER, id, result)
CAST = "cast"    # (CAST, topic, bare JID, packed stanza, arguments)


class NodeGone(NodeUnreachable):
    """The node holding a session does not listen any more (it died or stopped)."""


class ClusterAdmin:
    def __init__(self, server: Server, redis: Redis, store: RedisSessions) -> None:
        self.server = server
        self.redis = redis
        self.store = store
        self.node = store.node
        self.prefix = store.prefix
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[Any] | None = None
        self._waiting: dict[str, asyncio.Future[Any]] = {}
        self._stopping = False

    def channel(self, node: str) -> str:
        return f"{self.prefix}ctl:{node}"

    async def start(self) -> None:
        """After the node joined (``RedisNode.start``): listen, then plug in."""
        self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(self.channel(self.node))
        self._task = asyncio.create_task(self._receiver(), name="cluster-admin")
        self.server.cluster.backend = self
        for handler in self.server.handlers:
            if isinstance(handler, PrometheusHandler):
                handler.node = self.node

    async def stop(self) -> None:
        """Before the node leaves (its Redis client is closed then); bounded by
        ``STOP_WITHIN``: what has not ended by then is abandoned (the process exits)."""
        self._stopping = True
        if self.server.cluster.backend is self:
            self.server.cluster.backend = None
        for future in self._waiting.values():
            future.cancel()
        deadline = asyncio.get_running_loop().time() + STOP_WITHIN
        if self._task is not None:
            self._task.cancel()
            await within(self._task, STOP_WITHIN, "cluster admin listener")
        if self._pubsub is not None:
            # Not wait_for: closing a pub/sub connection may ignore its cancellation, and
            # wait_for would then wait for it for ever (a node that never stops).
            await within(self._pubsub.aclose(),
                         max(0.1, deadline - asyncio.get_running_loop().time()),
                         "cluster admin pub/sub")

    # -- the session table --------------------------------------------------------------
    async def _rows(self, domain: str | None) -> dict[str, dict[str, Row]]:
        """bare JID -> resource -> row, for every session of the cluster (of ``domain``)."""
        start = len(self.prefix) + len("sess:")
        pattern = f"{self.prefix}sess:*" if domain is None \
            else f"{self.prefix}sess:*@{_glob(domain)}"
        found: dict[str, dict[str, Row]] = {}
        async for key in self.redis.scan_iter(match=pattern, count=500):
            raw = await self.redis.hgetall(key)
            if raw:
                found[_text(key)[start:]] = {_text(k): _parse(v) for k, v in raw.items()}
        return found

    async def count_sessions(self, domain: str | None) -> int:
        start = len(self.prefix) + len("sess:")
        pattern = f"{self.prefix}sess:*" if domain is None \
            else f"{self.prefix}sess:*@{_glob(domain)}"
        total = 0
        async for key in self.redis.scan_iter(match=pattern, count=500):
            if domain is None or JID.parse(_text(key)[start:]).domain == domain:
                total += int(await self.redis.hlen(key))
        return total

    async def sessions(self, domain: str | None) -> list[dict[str, Any]]:
        rows = await self._rows(domain)
        if domain is not None:
            rows = {b: r for b, r in rows.items() if JID.parse(b).domain == domain}
        return await self._infos(rows)

    async def user_sessions(self, bare: JID) -> list[dict[str, Any]]:
        rows = await self.store.resources(bare)
        return await self._infos({str(bare): rows} if rows else {})

    async def _infos(self, rows: dict[str, dict[str, Row]]) -> list[dict[str, Any]]:
        """The GraphQL ``Session`` of each row: ``user``, ``node`` and ``priority`` from Redis,
        the rest from the node holding it (null when it does not answer)."""
        by_node: dict[str, list[str]] = {}
        for bare, resources in rows.items():
            for resource, row in resources.items():
                by_node.setdefault(row.node, []).append(f"{bare}/{resource}")
        details: dict[str, dict[str, Any]] = {}
        answers = await asyncio.gather(
            *(self._details(node, fulls) for node, fulls in by_node.items()))
        for answer in answers:
            details.update(answer)
        infos = []
        for bare, resources in rows.items():
            for resource, row in resources.items():
                full = f"{bare}/{resource}"
                info: dict[str, Any] = {"user": full, "connection": None, "ip": None, "port": None,
                        "uptime": None}
                info.update(details.get(full, {}))
                info["node"], info["priority"] = row.node, row.priority
                infos.append(info)
        return sorted(infos, key=lambda i: str(i["user"]))

    async def _details(self, node: str, fulls: list[str]) -> dict[str, dict[str, Any]]:
        if node == self.node:
            return self._local_details(fulls)
        try:
            answer: dict[str, dict[str, Any]] = await self._ask(node, "details", fulls)
            return answer
        except (NodeGone, TimeoutError):
            log.warning("cluster_admin_no_answer node=%s op=details", node)
            return {}

    def _local_details(self, fulls: list[str]) -> dict[str, dict[str, Any]]:
        found = {}
        for full in fulls:
            session = self.server.sessions.local(JID.parse(full))
            if isinstance(session, C2S):
                found[full] = session_info(session, self.node)
        return found

    async def users_with_status(self, domain: str | None, status: str) -> list[dict[str, Any]]:
        """Asked of every listed node: the presence show lives with the session only."""
        nodes = await self.store.nodes()

        async def of(node: str) -> list[dict[str, Any]]:
            if node == self.node:
                return users_with_status_here(self.server, domain, status)
            try:
                found: list[dict[str, Any]] = await self._ask(node, "status", domain, status)
                return found
            except (NodeGone, TimeoutError):
                log.warning("cluster_admin_no_answer node=%s op=status", node)
                return []

        answers = await asyncio.gather(*(of(node) for node in sorted(nodes)))
        return sorted((i for answer in answers for i in answer), key=lambda i: str(i["user"]))

    # -- acting through the owning node -----------------------------------------------
    async def _owner(self, full: JID) -> str | None:
        if self.server.sessions.local(full) is not None:
            return self.node
        row = (await self.store.resources(full.bare)).get(full.resource or "")
        return row.node if row is not None else None

    async def kick(self, full: JID, reason: str, condition: str = "policy-violation") -> bool:
        owner = await self._owner(full)
        if owner is None:
            return False
        if owner == self.node:
            return self.server.kick_session(full, reason, condition)
        try:
            return bool(await self._ask(owner, "kick", str(full), reason, condition))
        except (NodeGone, TimeoutError):
            return False

    async def set_presence(self, full: JID, args: dict[str, Any]) -> bool:
        owner = await self._owner(full)
        if owner is None:
            return False
        if owner == self.node:
            return apply_presence(self.server, full, args)
        try:
            plain = {k: v for k, v in args.items() if v is None or isinstance(v, (str, int))}
            return bool(await self._ask(owner, "presence", str(full), plain))
        except (NodeGone, TimeoutError):
            return False

    # -- a module's operations on another node (``server.cluster.ask``) -----------------
    async def ask(self, node: str, op: str, args: tuple[Any, ...]) -> Any:
        try:
            return await self._ask(node, op, *args)
        except TimeoutError:
            raise NodeUnreachable(f"{node} did not answer in {ANSWER_WITHIN} s") from None

    async def nodes(self) -> list[str]:
        return sorted(await self.store.nodes())

    # -- casts --------------------------------------------------------------------------
    def cast(self, bare: JID, topic: str, stanza: Element, args: tuple[str, ...]) -> None:
        self.server.spawn(self._cast([bare], topic, stanza, args))

    def cast_many(self, bares: list[JID], topic: str, stanza: Element,
                  args: tuple[str, ...]) -> None:
        self.server.spawn(self._cast(list(bares), topic, stanza, args))

    async def _cast(self, bares: list[JID], topic: str, stanza: Element,
                    args: tuple[str, ...]) -> None:
        try:
            rows_of, _ = await self.store.resources_listed(bares)
            frames: list[tuple[str, bytes]] = []
            packed = wire.pack(stanza)
            for bare, rows in zip(bares, rows_of, strict=True):
                for node in sorted({row.node for row in rows.values()} - {self.node}):
                    frames.append((node, marshal.dumps(
                        (CAST, topic, str(bare), packed, tuple(args)))))
            if not frames:
                return
            async with self.redis.pipeline(transaction=False) as pipe:
                for node, frame in frames:
                    pipe.publish(self.channel(node), frame)
                await pipe.execute()
        except Exception:
            # A copy for sessions elsewhere is lost with Redis away; the original stanza was
            # routed by the router, which has its own rules for an outage.
            log.warning("cluster_cast_failed topic=%s to=%s", topic,
                        bares[0] if len(bares) == 1 else f"{len(bares)} accounts",
                        exc_info=True)

    async def available(self, bares: list[JID], routable: bool = False) -> set[JID]:
        rows_of, _ = await self.store.resources_listed(bares)
        return {bare for bare, rows in zip(bares, rows_of, strict=True)
                if any(row.available and (row.priority >= 0 or not routable)
                       for row in rows.values())}

    async def nodes_of(self, bare: JID, reached: bool = False) -> set[str]:
        rows = await self.store.resources(bare)
        return {row.node for row in rows.values() if row.node != self.node
                and (not reached or row.available and row.priority >= 0)}

    # -- requests and answers ------------------------------------------------------------
    async def _ask(self, node: str, op: str, *args: Any) -> Any:
        rid = uuid.uuid4().hex
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = future
        try:
            frame = marshal.dumps((ASK, rid, self.node, op, *args))
            if int(await self.redis.publish(self.channel(node), frame)) == 0:
                raise NodeGone(node)
            return await asyncio.wait_for(future, ANSWER_WITHIN)
        finally:
            self._waiting.pop(rid, None)

    async def _receiver(self) -> None:
        pubsub = self._pubsub
        assert pubsub is not None
        while not self._stopping:
            try:
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._received(marshal.loads(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception:
                if self._stopping:
                    # redis-py may report the cancellation of a read as a connection error.
                    return
                log.warning("cluster_admin_receive_failed node=%s", self.node, exc_info=True)
                await asyncio.sleep(0.5)

    def _received(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == ANSWER:
            future = self._waiting.get(item[1])
            if future is not None and not future.done():
                future.set_result(item[2])
        elif kind == CAST:
            _, topic, bare, packed, args = item
            if not self.server.cluster.received(topic, JID.parse(bare), wire.unpack(packed),
                                                tuple(args)):
                log.warning("cluster_cast_unhandled topic=%s", topic)
        elif kind == ASK:
            _, rid, asker, op, *args = item
            self.server.spawn(self._answer(rid, asker, op, args))

    async def _answer(self, rid: str, asker: str, op: str, args: list[Any]) -> None:
        result: Any = None
        if op == "details":
            result = self._local_details(args[0])
        elif op == "status":
            result = users_with_status_here(self.server, args[0], args[1])
        elif op == "kick":
            # (full JID, reason[, condition]): a node of an earlier version sends no condition.
            result = self.server.kick_session(JID.parse(args[0]), *args[1:3])
        elif op == "presence":
            result = apply_presence(self.server, JID.parse(args[0]), args[1])
        elif op in self.server.cluster.answers:
            try:
                result = await self.server.cluster.answers[op](*args)
                frame = marshal.dumps((ANSWER, rid, result))
            except Exception:
                # The asker gets None rather than waiting out ANSWER_WITHIN.
                log.warning("cluster_answer_failed op=%s from=%s", op, asker, exc_info=True)
                frame = marshal.dumps((ANSWER, rid, None))
            await self.redis.publish(self.channel(asker), frame)
            return
        else:
            log.warning("cluster_admin_unknown_op op=%s from=%s", op, asker)
        await self.redis.publish(self.channel(asker), marshal.dumps((ANSWER, rid, result)))


def _glob(text: str) -> str:
    """``text`` matched literally by a Redis SCAN pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)

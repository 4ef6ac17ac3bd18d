"""Which node a room lives on, with ``[general] sm_backend = "redis"`` (docs/muc.md,
docs/cluster.md "MUC rooms").

A room is an object of one node's memory (``room.Room``): two nodes each holding their own copy
would split its occupants. So every room has one owner, recorded in Redis:

- ``muc:<room jid>``: the owner node's name. The first node that needs the room (a join, or
  any stanza for a persistent room) claims it atomically (one Lua script); every other node
  forwards the room's stanzas to the owner in one hop, on the direct link between the two
  nodes (``RedisNode.send_service``, frame ``wire.SERVICE``, cluster/links.py). The owner
  answers occupants wherever they are: their full JIDs go through the ordinary cross-node
  routing.
- ``node:<node>:rooms``: the rooms a node claimed, what is released when it stops cleanly or
  leaves the cluster dead (every node is told, ``RedisNode.departed_listeners``); the
  occupants whose sessions died with it leave this node's rooms (status 333).

A claim held by a node whose heartbeat key is gone (dead by the cluster's own rule, whether or
not a survivor reaped it yet) is taken over by the next node that needs the room; a persistent
room is then read back from the shared storage (configuration, affiliations, subject). Its
occupants were in the dead node's memory only: they are not in the restored room and must join
again; a XEP-0410 self-ping tells them so (``not-acceptable``, §3, answered by the room).

Order: stanzas for one room leave this node in the order they arrived (one forwarding queue;
stanzas wait in order while the owner is looked up or a claim is released).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from suricate.jid import JID
from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element

if TYPE_CHECKING:
    from collections.abc import Callable

    from suricate.modules.mod_muc import ModMuc

log = logging.getLogger("suricate.mod_muc")

SERVICE = "mod_muc"  # the handler name on every node (RedisNode.services)
# A stanza forwarded this many times is answered with an error rather than sent again (two
# nodes disagreeing for a moment about a claim must not bounce it between them for ever).
MAX_HOPS = 3
# How long a stanza waits for a silent owner (killed, its heartbeat not yet expired) before
# it is answered with an error: past the cluster's DEAD_AFTER, so the claim is taken over.
RETRY_EVERY = 0.25
RETRIES = 20

# KEYS: muc:<room>, node:<me>:rooms. ARGV: me, room, key prefix.
# The claim, or the live owner's name; nil when this node is not listed in ``nodes``: it was
# reaped (paused past its heartbeat) or Redis lost its data, so the other nodes already took
# it for departed and nobody would release a claim it made now; it claims again once it
# joined again (within a beat, ``RedisNode._rewrite``).
_CLAIM = """
if redis.call('HEXISTS', ARGV[3] .. 'nodes', ARGV[1]) == 0 then return false end
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then return owner end
if owner then
  if redis.call('EXISTS', ARGV[3] .. 'alive:' .. owner) == 1 then return owner end
  redis.call('SREM', ARGV[3] .. 'node:' .. owner .. ':rooms', ARGV[2])
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
return ARGV[1]
"""

# KEYS: node:<node>:rooms. ARGV: node, key prefix. Releases what the node still holds.
_RELEASE_ALL = """
local n = 0
for _, room in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[2] .. 'muc:' .. room
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
    n = n + 1
  end
end
redis.call('DEL', KEYS[1])
return n
"""

# KEYS: muc:<room>, node:<me>:rooms. ARGV: me, room.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('SREM', KEYS[2], ARGV[2])
return 1
"""


@runtime_checkable
class RoomCluster(Protocol):
    """What mod_muc needs of the cluster layer (``suricate.cluster.redis_sm.RedisNode``,
    which a module may not import: it sits above the modules)."""

    name: str
    redis: Any
    services: dict[str, Callable[[JID, JID, Element, int], None]]
    departed_listeners: list[Callable[[str], None]]
    rewrite_listeners: list[Callable[[], None]]
    store: Any  # RedisSessions: prefix, resources

    async def send_service(self, node: str, service: str, frm: JID, to: JID,
                           stanza: Element, hops: int) -> bool:
        """To ``services[service]`` on ``node``; False when the node is gone (not listed,
        or its link refused: it died or stopped)."""
        ...


Waiting = tuple[JID, JID, "Element", int]


class Placement:
    """The room claims of this node and the forwarding of other nodes' rooms' stanzas."""

    def __init__(self, muc: ModMuc, cluster: RoomCluster) -> None:
        self.muc = muc
        self.cluster = cluster
        self.me = cluster.name
        self.prefix: str = cluster.store.prefix
        redis = cluster.redis
        self._claim = redis.register_script(_CLAIM)
        self._release = redis.register_script(_RELEASE)
        self._release_all = redis.register_script(_RELEASE_ALL)
        self.owners: dict[JID, str] = {}  # the claims this node knows, its own included
        self.waiting: dict[JID, deque[Waiting]] = {}  # rooms being looked up or released
        self.unchecked: set[JID] = set()  # claimed here, not yet looked for in storage
        self._outbox: asyncio.Queue[tuple[str, JID, JID, Element, int] | None] = \
            asyncio.Queue()
        self._forwarder: asyncio.Task[None] | None = None
        self.forwarded = 0  # stanzas sent to other nodes (tests, metrics)

    def start(self) -> None:
        self.cluster.services[SERVICE] = self.received
        self.cluster.departed_listeners.append(self._node_departed)
        self.cluster.rewrite_listeners.append(self._rewrite)
        self._forwarder = asyncio.get_running_loop().create_task(self._forward())

    async def stop(self) -> None:
        """A clean stop: rooms were persisted by the caller; every claim goes now, so the
        next stanza for a room makes another node take it."""
        self.cluster.services.pop(SERVICE, None)
        if self._node_departed in self.cluster.departed_listeners:
            self.cluster.departed_listeners.remove(self._node_departed)
        if self._rewrite in self.cluster.rewrite_listeners:
            self.cluster.rewrite_listeners.remove(self._rewrite)
        if self._forwarder is not None:
            self._outbox.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._forwarder, 5)
            self._forwarder = None
        try:
            await self._release_all(keys=[self._rooms_key(self.me)],
                                    args=[self.me, self.prefix])
        except Exception:
            log.warning("muc_release_claims_failed node=%s", self.me, exc_info=True)
        self.owners.clear()
        # Stanzas still waiting for an owner are answered, not dropped.
        for queue in self.waiting.values():
            for _, _, stanza, _ in queue:
                self.muc.server.router.bounce(stanza, StanzaError(
                    "service-unavailable", "the service is stopping"))
        self.waiting.clear()

    def _key(self, room: JID) -> str:
        return f"{self.prefix}muc:{room}"

    def _rooms_key(self, node: str) -> str:
        return f"{self.prefix}node:{node}:rooms"

    # -- stanzas ----------------------------------------------------------------------------
    def route(self, frm: JID, to: JID, stanza: Element, hops: int = 0) -> None:
        """A stanza for a room (or an occupant of it) that is not in this node's memory."""
        key = to.bare
        queue = self.waiting.get(key)
        if queue is not None:
            queue.append((frm, to, stanza, hops))
            return
        owner = self.owners.get(key)
        if owner == self.me:
            self.muc.route_local(frm, to, stanza)
        elif owner is not None:
            self._outbox.put_nowait((owner, frm, to, stanza, hops))
        else:
            self.waiting[key] = deque([(frm, to, stanza, hops)])
            self.muc.server.spawn(self._resolve(key, None))

    def received(self, frm: JID, to: JID, stanza: Element, hops: int) -> None:
        """Another node forwarded a stanza, believing this node owns the room."""
        key = to.bare
        room = self.muc.rooms.get(key)
        if room is not None:
            room.route(frm, to, stanza)
            return
        if self.owners.get(key) not in (None, self.me):
            del self.owners[key]  # what this node knew is stale: look again, from Redis
        self.route(frm, to, stanza, hops)

    async def _resolve(self, key: JID, silent: str | None) -> None:
        """Find (or take) the owner of ``key``, then let the waiting stanzas go in order.
        ``silent``: a node that did not take a forwarded stanza (it died): wait for its
        heartbeat to expire, then the claim is taken over."""
        owner: str | None = None
        for _ in range(RETRIES):
            try:
                owner = await self._claimed(key)
            except Exception:
                log.warning("muc_claim_failed room=%s", key, exc_info=True)
                owner = None
            if owner is not None and owner != silent:
                break
            await asyncio.sleep(RETRY_EVERY)
        else:
            owner = None
        queue = self.waiting.pop(key, deque())
        if owner is None:
            for _, _, stanza, _ in queue:
                self.muc.server.router.bounce(stanza, StanzaError(
                    "service-unavailable", "the room's node does not answer"))
            return
        self.owners[key] = owner
        if owner == self.me and key not in self.muc.rooms:
            log.info("muc_room_claimed room=%s node=%s", key, self.me)
            self.unchecked.add(key)  # it may be a persistent room another node made
        # No await from here: the queue drains in order.
        for frm, to, stanza, hops in queue:
            self.route(frm, to, stanza, hops)

    async def _claimed(self, key: JID) -> str | None:
        """The owner of ``key``'s claim, this node claiming it when nobody (or a dead node)
        holds it; None while this node is not listed (_CLAIM)."""
        found = await self._claim(keys=[self._key(key), self._rooms_key(self.me)],
                                  args=[self.me, str(key), self.prefix])
        if found is None:
            return None
        return found.decode() if isinstance(found, bytes) else str(found)

    async def _forward(self) -> None:
        send = self.cluster.send_service
        while True:
            item = await self._outbox.get()
            if item is None:
                return
            node, frm, to, stanza, hops = item
            key = to.bare
            queue = self.waiting.get(key)
            if queue is not None:
                queue.append((frm, to, stanza, hops))  # behind the ones already waiting
                continue
            if hops >= MAX_HOPS:
                self.muc.server.router.bounce(stanza, StanzaError(
                    "internal-server-error", "the room's node could not be found"))
                continue
            try:
                ok = await send(node, SERVICE, frm, to, stanza, hops + 1)
            except Exception:
                log.warning("muc_forward_failed room=%s node=%s", key, node, exc_info=True)
                ok = False
            if ok:
                self.forwarded += 1
                continue
            # The owner is not listed or refuses the link: it died (or stopped). The stanza and
            # those behind it wait until the claim is taken over, then go again.
            log.warning("muc_owner_silent room=%s node=%s", key, node)
            if self.owners.get(key) == node:
                del self.owners[key]
            queue = self.waiting.get(key)
            if queue is None:
                self.waiting[key] = deque([(frm, to, stanza, hops)])
                self.muc.server.spawn(self._resolve(key, node))
            else:
                queue.append((frm, to, stanza, hops))

    # -- the admin API (graphql.py: an operation on a room runs on its node) ---------------
    async def owner(self, key: JID) -> tuple[str, bool]:
        """The node owning ``key``'s claim, this node claiming it if nobody (or a dead node)
        does, as a stanza for the room would; and whether this call claimed it."""
        for _ in range(RETRIES):
            # A lookup or a release in flight (stanzas waiting): what it ends with counts,
            # so this does not act on a room whose claim is about to go.
            if key not in self.waiting:
                break
            await asyncio.sleep(RETRY_EVERY)
        known = self.owners.get(key)
        if known is not None and key not in self.waiting:
            return known, False
        for _ in range(RETRIES):
            found = await self._claimed(key)
            if found is not None:
                break
            await asyncio.sleep(RETRY_EVERY)  # not listed: joining again
        else:
            raise RuntimeError(f"{self.me} is not a member of the cluster")
        owner = found
        claimed = owner == self.me and known != self.me and key not in self.muc.rooms
        if key not in self.waiting:  # else _resolve records it and drains its queue
            self.owners[key] = owner
        if claimed:
            log.info("muc_room_claimed room=%s node=%s by=admin", key, self.me)
            self.unchecked.add(key)  # it may be a persistent room another node made
        return owner, claimed

    def silent(self, key: JID, node: str) -> None:
        """``node``, taken for ``key``'s owner, did not answer: look the claim up again next
        time (it is taken over once the node's heartbeat expired)."""
        if self.owners.get(key) == node:
            del self.owners[key]

    def unclaim(self, key: JID) -> None:
        """An admin operation claimed ``key`` and found no room there: the claim goes again
        (no stale claim for a room that does not exist)."""
        if key not in self.muc.rooms and key not in self.muc.loading \
                and key not in self.muc.stored:
            self.unchecked.discard(key)
            self.release(key)

    # -- claims going ------------------------------------------------------------------------
    def release(self, key: JID) -> None:
        """The room ended here (temporary room emptied, destroyed): its claim goes; stanzas
        arriving meanwhile wait for the release, then claim it again."""
        if self.owners.get(key) != self.me or key in self.waiting:
            return
        del self.owners[key]
        self.unchecked.discard(key)
        self.waiting[key] = deque()
        self.muc.server.spawn(self._released(key))

    async def _released(self, key: JID) -> None:
        try:
            await self._release(keys=[self._key(key), self._rooms_key(self.me)],
                                args=[self.me, str(key)])
        except Exception:
            log.warning("muc_release_failed room=%s", key, exc_info=True)
        queue = self.waiting.pop(key, deque())
        for frm, to, stanza, hops in queue:
            self.route(frm, to, stanza, hops)

    # -- claims written again --------------------------------------------------------------
    def _rewrite(self) -> None:
        """This node joined the cluster again (Redis came back empty, or a survivor reaped
        it during a pause) or the Redis master changed (Sentinel): its claims may be gone."""
        self.muc.server.spawn(self._reclaim())

    async def _reclaim(self) -> None:
        """Claim again every room this node holds (in memory or hibernated). A room another
        node claimed meanwhile (it took this node for dead) is that node's now: this node's
        copy ends, its occupants leave with 110 + 333 and join again there."""
        held = {k for k, owner in self.owners.items() if owner == self.me} | set(self.muc.rooms)
        for key in sorted(held, key=str):
            try:
                owner = await self._claimed(key)
            except Exception:
                log.warning("muc_reclaim_failed room=%s", key, exc_info=True)
                continue
            if owner is None or owner == self.me:
                continue
            log.warning("muc_room_taken room=%s by=%s", key, owner)
            self.owners[key] = owner
            self.unchecked.discard(key)
            room = self.muc.rooms.get(key)
            if room is not None:
                self.muc.taken_over(room)
        if held:
            log.info("muc_claims_written_again node=%s rooms=%d", self.me, len(held))
        conferences = self.muc.conferences
        if conferences is not None:
            try:
                await conferences.write_back([(jid, room.jid)
                                              for room in list(self.muc.rooms.values())
                                              for jid in room.by_jid])
            except Exception:
                log.warning("muc_conferences_write_back_failed", exc_info=True)

    def _node_departed(self, node: str) -> None:
        """``node`` left the cluster (suricate.cluster.redis_sm, every node is told): its
        claims go (idempotent: every node runs it), and the occupants it held in this
        node's rooms leave."""
        for key in [k for k, owner in self.owners.items() if owner == node]:
            del self.owners[key]
        self.muc.server.spawn(self._release_dead(node))
        if self.muc.rooms:
            self.muc.server.spawn(self._drop_ghosts())

    async def _drop_ghosts(self) -> None:
        """Occupants whose session is no longer in the session table (their node died, its
        rows were reaped with it) leave with status 333 (XEP-0045 §15.6 status codes:
        removed because of a technical problem), through the room's own handling of a presence error from an
        occupant, as if their server had bounced one."""
        sessions = self.muc.server.sessions
        for room in list(self.muc.rooms.values()):
            # Each session of each occupant (multi-session: one may be gone, the others not).
            for jid, occ in list(room.by_jid.items()):
                if sessions.local(jid) is not None:
                    continue
                try:
                    rows = await self.cluster.store.resources(jid.bare)
                except Exception:
                    log.warning("muc_occupant_lookup_failed jid=%s", jid, exc_info=True)
                    return
                if str(jid.resource) not in rows and not room.gone \
                        and room.by_jid.get(jid) is occ:
                    log.info("muc_occupant_gone room=%s jid=%s", room.jid, jid)
                    to = JID._prepared(room.jid.local, room.jid.domain, occ.nick)
                    room.route(jid, to, Element("presence", ns.CLIENT, {
                        "type": "error", "from": str(jid), "to": str(to)}))

    async def _release_dead(self, node: str) -> None:
        try:
            n = await self._release_all(keys=[self._rooms_key(node)], args=[node, self.prefix])
            if n:
                log.warning("muc_claims_released node=%s rooms=%d", node, n)
        except Exception:
            log.warning("muc_release_claims_failed node=%s", node, exc_info=True)

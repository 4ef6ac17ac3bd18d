"""XEP-0198 §5 resumption of a session held by another node (``sm_backend = "redis"``).

A <resume/> whose ``previd`` this node does not hold reads the holder in Redis
(``sm:<id>``, mirror.py) and:

- the holder lives: it is asked over the cluster's request channel (``server.cluster.ask``,
  ``HANDOVER_OP``) to hand the session over. It acknowledges the client's 'h', gives the
  counters, what the client has not acknowledged, the JID, presence and priority, and the
  modules' per-session state (``SESSION_HANDOVER``), then lets go of its copy
  (``C2S.moved_away``: no close hooks, nothing re-routed, a connection still open dropped).
  The holder's loop runs one handover at a time and forgets the id at once, so of two
  resumes racing for one session exactly one gets it; the other is told
  ``<failed><item-not-found/></failed>``;
- the holder is gone (nobody listens on its request channel: it died, SIGKILL included): the
  session is rebuilt from its Redis copy (``copy_to_redis``), taken in one Lua script that
  succeeds for one resume only;
- the holder does not answer in time but still listens (paused, overloaded): the resume
  fails rather than risk two copies of the session.

Either way this stream then continues the session as if it had been bound here
(``C2S.enter_moved``), and what was not acknowledged is sent again after <resumed/>.
"""

from __future__ import annotations

import asyncio
import logging
import marshal
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from suricate.core import hooks as H
from suricate.core.c2s import STREAM_MANAGEMENT as SM
from suricate.core.cluster import NodeUnreachable
from suricate.jid import JID
from suricate.modules.mod_stream_management.state import SessionState
from suricate.protocol.sm import HandledCountTooHigh, delayed_since
from suricate.xml import ns
from suricate.xml.element import Element

if TYPE_CHECKING:
    from collections.abc import Callable

    from suricate.core.c2s import C2S
    from suricate.modules.mod_stream_management import ModStreamManagement
    from suricate.modules.mod_stream_management.mirror import Mirror

log = logging.getLogger("suricate.mod_stream_management")

HANDOVER_OP = "mod_stream_management.handover"
# How much longer than resume_timeout a dead node's keys live: the node ending its orphans
# finds them (mirror.py).
ORPHAN_GRACE = 60
# What the holder answers when the client acknowledges stanzas it never sent (§5, §6), with
# how many it sent: (TOO_HIGH, send_count).
TOO_HIGH = "handled-count-too-high"


@runtime_checkable
class SmCluster(Protocol):
    """What this module needs of the cluster layer (``suricate.cluster.redis_sm.RedisNode``,
    which a module may not import)."""

    name: str
    redis: Any
    departed_listeners: list[Callable[[str], None]]
    rewrite_listeners: list[Callable[[], None]]
    store: Any  # RedisSessions: prefix


class Handover:
    def __init__(self, module: ModStreamManagement, cluster: SmCluster, mirror: Mirror) -> None:
        self.module = module
        self.server = module.server
        self.cluster = cluster
        self.mirror = mirror
        self._timers: list[asyncio.TimerHandle] = []

    def start(self) -> None:
        self.server.cluster.answer_on(HANDOVER_OP, self.hand_over)
        self.cluster.departed_listeners.append(self._departed)
        self.cluster.rewrite_listeners.append(self._rewrite)

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self.server.cluster.answer_off(HANDOVER_OP)
        if self._departed in self.cluster.departed_listeners:
            self.cluster.departed_listeners.remove(self._departed)
        if self._rewrite in self.cluster.rewrite_listeners:
            self.cluster.rewrite_listeners.remove(self._rewrite)

    def _rewrite(self) -> None:
        # Redis came back empty, or a Sentinel failover: our records may be gone.
        self.mirror.rewrite(list(self.module.sessions))

    # -- the node a client resumes on ------------------------------------------------------
    async def resume(self, c2s: C2S, previd: str, client_h: int) -> Element:
        from suricate.modules.mod_stream_management import failed

        assert c2s.user is not None
        holder, jid, copy = await self.mirror.holder(previd)
        if holder is None or jid is None or holder == self.cluster.name \
                or jid.split("/", 1)[0] != str(c2s.user.bare):
            return failed("item-not-found")
        try:
            plain = await self.server.cluster.ask(holder, HANDOVER_OP, previd,
                                                  str(c2s.user.bare), client_h)
        except NodeUnreachable:
            if not copy or not await self._gone(holder):
                log.info("sm_resume_holder_silent id=%s node=%s", previd, holder)
                return failed("item-not-found")
            return await self._from_copy(c2s, previd, holder, client_h)
        if plain == TOO_HIGH or isinstance(plain, tuple) and plain[:1] == (TOO_HIGH,):
            # §6, as on one node (mod_stream_management._resume): the stream ends. (A node
            # of an older version answers the bare string, without the count it sent.)
            from suricate.modules.mod_stream_management import too_high

            sent = int(plain[1]) if isinstance(plain, tuple) else 0
            c2s.stream_error(too_high(HandledCountTooHigh(client_h, sent)))
            return failed("unexpected-request")  # not sent: the stream is closed
        if not isinstance(plain, dict):
            return failed("item-not-found")  # gone meanwhile, or another resume took it
        state = SessionState.from_plain(plain)
        await self.mirror.take(previd, holder)
        log.info("sm_resumed_from_node id=%s node=%s unacked=%d", previd, holder,
                 len(state.unacked))
        return await self.module.continue_here(c2s, previd, state, state.unacked)

    async def _from_copy(self, c2s: C2S, previd: str, holder: str,
                         client_h: int) -> Element:
        from suricate.modules.mod_stream_management import failed

        state = await self.mirror.take(previd, holder)
        if state is None or not state.jid.resource:
            return failed("item-not-found")
        sm = self.module.new_sm(previd)
        unacked = state.counters_for(sm, client_h)
        state.unacked = unacked
        log.warning("sm_resumed_from_copy id=%s dead_node=%s unacked=%d", previd, holder,
                    len(unacked))
        return await self.module.continue_here(c2s, previd, state, unacked, sm)

    async def _gone(self, node: str) -> bool:
        """Nobody listens on ``node``'s request channel (``ctl:<node>``, cluster/admin.py):
        its process is gone, even if its heartbeat has not expired yet."""
        channel = f"{self.cluster.store.prefix}ctl:{node}"
        counts = await self.cluster.redis.pubsub_numsub(channel)
        return not counts or int(counts[0][1]) == 0

    # -- the node holding the session --------------------------------------------------
    async def hand_over(self, previd: str, bare: str, client_h: int) -> Any:
        """``HANDOVER_OP``: give the session up to the asking node; None when it is not
        here (any more)."""
        c2s = self.module.sessions.get(previd)
        sm = SM.get(c2s) if c2s is not None else None
        if c2s is None or sm is None or c2s.jid is None or str(c2s.jid.bare) != bare:
            return None
        try:
            sm.ack(client_h)
        except HandledCountTooHigh as exc:
            return (TOO_HIGH, exc.send_count)
        self.module.forget(previd)
        self.mirror.moved(previd)
        modules: dict[str, Any] = self.server.hooks.fold(H.SESSION_HANDOVER, {}, c2s, False)
        state = SessionState(c2s.jid, c2s.priority, c2s.presence, sm.h_in, sm.acked,
                             sm.take_unacked(delay_from=c2s.jid.domain), modules)
        plain = state.to_plain()
        try:
            marshal.dumps(plain)  # what the answer does: checked before letting go
        except ValueError:
            log.error("sm_handover_state_not_plain id=%s modules=%s", previd, sorted(modules))
            plain["modules"] = {}
        c2s.moved_away()
        log.info("sm_handed_over id=%s jid=%s unacked=%d", previd, state.jid,
                 len(state.unacked))
        return plain

    # -- a node left the cluster -------------------------------------------------------
    def _departed(self, node: str) -> None:
        """Its sessions wait ``resume_timeout`` for their clients (every node is told and
        may rebuild them); then the ones nobody resumed end as a timed-out session ends
        here: what their clients never acknowledged is routed again (RFC 6121 §8: other
        resources, offline storage), by whichever node takes each first."""
        timeout = self.module.resume_timeout
        self.server.spawn(self.mirror.expire_node(node, timeout + ORPHAN_GRACE))
        self._timers.append(asyncio.get_running_loop().call_later(
            timeout, lambda: self.server.spawn(self._orphans(node))))

    async def _orphans(self, node: str) -> None:
        if not await self._gone(node):
            # Reaped while paused (SIGSTOP) and back: its sessions are its own again.
            log.warning("sm_departed_node_back node=%s", node)
            return
        for sm_id in await self.mirror.held_by(node):
            state = await self.mirror.take(sm_id, node)
            if state is None:
                continue  # resumed meanwhile, or another node took it
            self.mirror.ended(sm_id)
            routed = 0
            for stanza in state.unacked:
                if any(child.xmlns == ns.CARBONS for child in stanza.elements()):
                    continue  # a copy: the original reached its own recipient
                # When it reached the session (its delay): the account's resources that
                # came since get it, those there then had it (Server._others_had_it).
                self.server.undeliverable(stanza, _Gone(state.jid),
                                          delayed_since(stanza, state.jid.domain))
                routed += 1
            log.info("sm_orphan_ended id=%s dead_node=%s jid=%s rerouted=%d", sm_id, node,
                     state.jid, routed)


class _Gone:
    """The session of a dead node that nobody resumed, as ``Server.undeliverable`` reads it."""

    __slots__ = ("jid",)

    def __init__(self, jid: JID) -> None:
        self.jid = jid

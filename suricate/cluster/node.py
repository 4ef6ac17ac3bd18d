"""One worker's place in the cluster: it announces its sessions, keeps the replica of the
others' and acts on what they send it.

Announcements: a session entering or leaving the table (the table's observer) and any change
of what other workers' code reads on a session: priority and presence (mod_presence sets them
while handling the client's presence, hence the USER_SEND_PACKET handler placed after it), the
boolean module flags (mod_roster's "interested", mod_carboncopy's enabled) and the blocklist,
which IQs change (hence a look at each IQ answer delivered to the session). Each look compares
with what was last announced and costs a few attribute reads.

Roster caches: each session keeps its roster in mod_roster's ``ROSTER_CACHE`` slot, which it
updates in the sessions of the worker that changed the roster. When the account also has
sessions elsewhere, their workers are told to reload it from storage: after a subscription
stanza changed it (the ROSTER_*_SUBSCRIPTION hooks, after mod_roster), and after a roster set
from a client (its IQ answer).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from suricate.cluster import wire
from suricate.cluster.bus import Bus, Link
from suricate.cluster.remote import RemoteSession
from suricate.core import hooks as H
from suricate.jid import JID
from suricate.modules.mod_blocking import BLOCKLIST, blocklist
from suricate.modules.mod_roster import ROSTER_CACHE
from suricate.protocol.errors import StreamError
from suricate.xml import ns

if TYPE_CHECKING:
    from suricate.core.server import Server
    from suricate.core.sessions import Session
    from suricate.xml.element import Element

log = logging.getLogger("suricate.cluster")

# A stanza whose session moved on while it travelled is routed again where it arrives; two
# workers that disagree for a moment about where a JID lives must not bounce it forever.
MAX_HOPS = 3


class ClusterNode:
    def __init__(self, server: Server, index: int, count: int, run_dir: Path) -> None:
        self.server = server
        self.index = index
        self.bus = Bus(run_dir, index, count, self)
        # Non-zero while a stanza that arrived over the bus is being routed again.
        self.hops = 0
        # peer -> full JID -> its session there, as this worker sees it
        self._replica: dict[int, dict[JID, RemoteSession]] = {}
        # local session -> what was last announced about it
        self._announced: dict[Any, tuple[Any, ...]] = {}
        # (full JID, IQ id) of roster sets from our clients not answered yet
        self._roster_sets: set[tuple[JID, str]] = set()

    async def start(self) -> None:
        """Before ``server.start()``: the bus is up before any client can bind."""
        self.server.sessions.observer = self
        hooks = self.server.hooks
        # After mod_presence (80), which sets priority and presence.
        hooks.add(H.USER_SEND_PACKET, self._client_sent, 95)
        hooks.add(H.USER_RECEIVE_PACKET, self._client_receives, 95)
        # After mod_roster (50), which writes the change.
        hooks.add(H.ROSTER_OUT_SUBSCRIPTION, self._subscription_changed, 95)
        hooks.add(H.ROSTER_IN_SUBSCRIPTION, self._subscription_changed, 95)
        await self.bus.start()

    async def wait_linked(self, timeout: float) -> bool:
        return await self.bus.wait_linked(timeout)

    async def stop(self) -> None:
        """After ``server.stop()``: the sessions' departures have been announced."""
        await self.bus.stop()
        self.server.hooks.remove(H.USER_SEND_PACKET, self._client_sent)
        self.server.hooks.remove(H.USER_RECEIVE_PACKET, self._client_receives)
        self.server.hooks.remove(H.ROSTER_OUT_SUBSCRIPTION, self._subscription_changed)
        self.server.hooks.remove(H.ROSTER_IN_SUBSCRIPTION, self._subscription_changed)
        if self.server.sessions.observer is self:
            self.server.sessions.observer = None

    # -- announcing our sessions ------------------------------------------------------------------
    def registered(self, session: Session) -> None:
        self._announced.pop(session, None)
        self._refresh(session)

    def unregistered(self, session: Session) -> None:
        self._announced.pop(session, None)
        if self._roster_sets:
            self._roster_sets = {k for k in self._roster_sets if k[0] != session.jid}
        self.bus.broadcast(wire.frame(wire.GONE, str(session.jid)))

    def _client_sent(self, stanza: Element | None, c2s: Any) -> Element | None:
        # Broadcast presence was consumed (None) by mod_presence; messages change nothing.
        if stanza is None or stanza.name != "message":
            self._refresh(c2s)
            if stanza is not None and stanza.name == "iq" and stanza.attrs.get("type") == "set":
                child = stanza.first_element()
                if child is not None and child.xmlns == ns.ROSTER and c2s.jid is not None:
                    self._roster_sets.add((c2s.jid, stanza.attrs.get("id", "")))
        return stanza

    def _client_receives(self, stanza: Element | None, c2s: Any) -> Element | None:
        if stanza is not None and stanza.name == "iq":
            self._refresh(c2s)
            if self._roster_sets and stanza.attrs.get("type") in ("result", "error"):
                key = (c2s.jid, stanza.attrs.get("id", ""))
                if key in self._roster_sets:
                    self._roster_sets.discard(key)
                    self._roster_changed(c2s.jid.bare)
        return stanza

    async def _subscription_changed(self, outcome: Any, user: JID, contact: JID, type_: str,
                                    stanza: Element) -> Any:
        if outcome is not None:
            self._roster_changed(user)
        return outcome

    def _roster_changed(self, user: JID) -> None:
        """Tell the workers with sessions of ``user`` to reload its roster."""
        links = {s.link for s in self.server.sessions.resources(user)
                 if isinstance(s, RemoteSession)}
        for link in links:
            link.send(wire.frame(wire.ROSTER, str(user)), stanza=True)

    async def _reload_roster(self, user: JID) -> None:
        roster: Any = self.server.modules.get("mod_roster")
        lock = roster.locked(user) if roster is not None else contextlib.nullcontext()
        async with lock:
            sessions: list[Any] = [s for s in self.server.sessions.resources(user)
                                   if ROSTER_CACHE.get(s) is not None]
            if not sessions or user.local is None:
                return
            if roster is None:
                return
            items = await roster.get_roster(user)
            for session in sessions:
                ROSTER_CACHE.set(session, {JID.parse(item.jid): item for item in items})

    def _refresh(self, session: Any) -> None:
        jid = session.jid
        if jid is None:
            return
        owner: Any = self.server.sessions.local(jid)
        if owner is not session:
            return  # not bound (yet), or another stream's
        flags = _flags(session)
        blocked = blocklist(session)
        last = self._announced.get(session)
        if last is not None and last[0] == session.priority and last[1] is session.presence \
                and last[2] == flags and last[3] is blocked:
            return
        self._announced[session] = (session.priority, session.presence, flags, blocked)
        self.bus.broadcast(self._state(session, flags))

    @staticmethod
    def _state(session: Any, flags: tuple[str, ...]) -> bytes:
        presence = session.presence
        return wire.frame(wire.STATE, str(session.jid), session.priority,
                          wire.pack(presence) if presence is not None else None, flags,
                          tuple(str(j) for j in blocklist(session)))

    # -- the bus ----------------------------------------------------------------------------------
    def link_up(self, link: Link) -> Iterable[bytes]:
        """A peer (new or restarted) learns every local session at once."""
        return [self._state(s, _flags(s)) for s in self.server.sessions]

    def peer_joined(self, peer: int) -> None:
        log.info("cluster_peer_joined worker=%d peer=%d", self.index, peer)

    def peer_left(self, peer: int) -> None:
        """The peer stopped or died: its sessions are gone with its connections."""
        replica = self._replica.pop(peer, {})
        for session in replica.values():
            self.server.sessions.remove_remote(session)
        if replica:
            log.info("cluster_peer_left worker=%d peer=%d sessions=%d", self.index, peer,
                     len(replica))

    def frame_received(self, peer: int, frame: tuple[Any, ...]) -> None:
        kind = frame[0]
        if kind == wire.STANZA:
            _, hops, jid, packed = frame
            self._deliver(JID.parse(jid), wire.unpack(packed), hops)
        elif kind == wire.STATE:
            self._remote_state(peer, *frame[1:])
        elif kind == wire.GONE:
            session = self._replica.get(peer, {}).pop(JID.parse(frame[1]), None)
            if session is not None:
                self.server.sessions.remove_remote(session)
        elif kind == wire.SEND:
            local: Any = self.server.sessions.local(JID.parse(frame[1]))
            if local is not None:
                local.send(wire.unpack(frame[2]))
        elif kind == wire.REPLACE:
            local = self.server.sessions.local(JID.parse(frame[1]))
            if local is not None:
                local.replaced()
        elif kind == wire.KICK:
            local = self.server.sessions.local(JID.parse(frame[1]))
            if local is not None and hasattr(local, "stream_error"):
                local.stream_error(StreamError(frame[2], frame[3] or None))
        elif kind == wire.ROSTER:
            self.server.spawn(self._reload_roster(JID.parse(frame[1])))
        else:
            log.error("cluster_unknown_frame peer=%d kind=%r", peer, kind)

    def _remote_state(self, peer: int, jid_text: str, priority: int, presence: Any,
                      flags: tuple[str, ...], blocked: tuple[str, ...]) -> None:
        jid = JID.parse(jid_text)
        replica = self._replica.setdefault(peer, {})
        session = replica.get(jid)
        if session is None:
            session = replica[jid] = RemoteSession(jid, self, self.bus.links[peer])
            self.server.sessions.add_remote(session)
        session.priority = priority
        session.presence = wire.unpack(presence) if presence is not None else None
        session.module_state = dict.fromkeys(flags, True)
        if blocked:
            BLOCKLIST.set(session, frozenset(JID.parse(j) for j in blocked))

    def _deliver(self, jid: JID, stanza: Element, hops: int) -> None:
        session = self.server.sessions.local(jid)
        if session is not None:
            session.deliver(stanza)
            return
        # The session ended (or moved) while the stanza travelled: route it again from here,
        # as the router does for a full JID without a session (RFC 6121 §8.5.3.2).
        if hops >= MAX_HOPS:
            log.warning("cluster_stanza_dropped to=%s name=%s hops=%d", jid, stanza.name, hops)
            return
        frm_text = stanza.attrs.get("from")
        frm = JID.parse(frm_text) if frm_text else JID(None, jid.domain, None)
        self.hops = hops + 1
        try:
            self.server.router.route(frm, jid, stanza)
        finally:
            self.hops = 0


def _flags(session: Any) -> tuple[str, ...]:
    state = session.module_state
    return tuple(sorted(k for k, v in state.items() if v is True)) if state else ()

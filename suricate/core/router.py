"""Stanza routing and the RFC 6121 §8 delivery rules for local domains.

``route`` is synchronous: the common cases (to a connected full JID, to the available resources
of a bare JID, to a server IQ handler) finish on the spot. Cases that need the database (is
there such an account? store offline?) continue in a task the server tracks, so shutdown can
wait for them and nothing accepted is lost.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from suricate.core import hooks as H
from suricate.core.keyed_locks import KeyedLocks, Turn
from suricate.core.offline_batch import OfflineBatch, read_once
from suricate.jid import JID
from suricate.protocol.errors import StanzaError, error_reply
from suricate.protocol.stanza import message_type
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.core.server import Server
    from suricate.core.sessions import Session

log = logging.getLogger("suricate.router")

# RFC 6121 §8.5.2.1.1 / §8.5.3.2.1 message types.
_TO_BARE_ON_NO_RESOURCE = frozenset({"normal", "chat"})


def _news(stanza: Element) -> bool:
    """Whether a message to a full JID is something a person reads in a conversation (a chat
    or normal message with a ``<body/>``, RFC 6121 §5.2.3), whose order against the stored
    messages the account is being sent matters. Not the answers to what the client just
    asked (XEP-0313 and inbox results, which a client collects until the query's IQ result
    and must arrive before it), nor carbons, notifications or room traffic."""
    return message_type(stanza) in _TO_BARE_ON_NO_RESOURCE \
        and stanza.find("body") is not None


async def _after(before: asyncio.Task[None], routing: Coroutine[Any, Any, None]) -> None:
    """``routing`` once ``before`` is over, however it ended (its failure is its own)."""
    try:
        await asyncio.wait((before,))
    except BaseException:
        routing.close()  # cancelled while waiting (the server stopping): never started
        raise
    await routing


class Elsewhere(Protocol):
    """Sessions of other nodes (``sm_backend = "redis"``, suricate.cluster.redis_sm).

    Asked only when this node has no session for the destination, so the local case pays
    nothing. Each call takes the stanza over: it delivers it on another node or hands it back
    with ``Router.route_here`` (RFC 6121 §8 as if the user had no session anywhere)."""

    def to_full(self, frm: JID, to: JID, stanza: Element) -> None: ...

    def to_bare(self, frm: JID, to: JID, stanza: Element, also: bool = False) -> None:
        """To the available resources of ``to`` on other nodes (non-negative priority for
        a message, RFC 6121 §8.5.2.1.1; any for presence). ``also``: local resources got it
        too, so nothing is handed back when no other node has one."""

    def to_owner(self, frm: JID, to: JID, stanza: Element) -> None:
        """To one node holding a session of the bare JID ``to``, which routes it as its own
        (a subscription stanza is processed once, where the user's sessions are); handed
        back when no other node holds one."""


class Beyond(Protocol):
    """Other services sharing this domain (mod_global_distrib: other data centres, each a
    cluster of its own). Asked only where the router would otherwise store the stanza
    offline, bounce it or try federation: a recipient with a session in this cluster is
    routed as without it, and a server without the module pays one attribute test on those
    paths only. Each method answers True when it took the stanza over (it forwards it, or
    routes it again later, marked so that it is not taken a second time)."""

    def to_full(self, frm: JID, to: JID, stanza: Element) -> bool:
        """``to`` (a full JID of a served domain) has no session in this cluster."""

    def to_bare(self, frm: JID, to: JID, stanza: Element) -> bool:
        """``to`` (a bare JID) has no resource that takes ``stanza`` in this cluster."""

    def to_domain(self, frm: JID, to: JID, stanza: Element) -> bool:
        """``to``'s domain is neither served nor a component's here (before s2s)."""


class Router:
    __slots__ = ("server", "sessions", "hooks", "elsewhere", "beyond", "_held", "_holds",
                 "_route_filters_seen", "_route_filtered", "_offline_turns", "_turns_held",
                 "_presence_pending", "_offline_queues",
                 "bouncing")

    def __init__(self, server: Server) -> None:
        self.server = server
        self.sessions = server.sessions
        self.hooks = server.hooks
        self.elsewhere: Elsewhere | None = None
        #: mod_global_distrib's other data centres; None without the module.
        self.beyond: Beyond | None = None
        #: The error ``bounce`` is routing right now, back to the sender of a stanza that
        #: went nowhere (routing is synchronous up to the local filters): a filter that
        #: drops stanzas between domains (mod_domain_isolation) lets the server's own
        #: answer to the sender through.
        self.bouncing: Element | None = None
        # ``elsewhere`` while route_here holds it back: error bounces still use it.
        self._held: Elsewhere | None = None
        # While route_held runs: what the stanza's slow paths will have done when they
        # complete (``hold``).
        self._holds: list[Awaitable[None]] | None = None
        # Whether FILTER_LOCAL_ROUTE has handlers, as of hooks version ``_route_filters_seen``:
        # every stanza asks, nearly every server has none (mod_domain_isolation adds one).
        self._route_filters_seen = -1
        self._route_filtered = False
        #: Accounts whose messages are on the offline path (``_offline_or_error``).
        self._offline_turns: KeyedLocks[JID] = KeyedLocks()
        # Its keys, read on the message path: a dict's truth and one membership test, and
        # nothing at all while no account anywhere has its turn held.
        self._turns_held = self._offline_turns.held
        #: Per local bare JID, the last presence to it still on its way (waiting for
        #: storage: the block list, the roster): the next one waits for it
        #: (``_presence_in_order``). Empty while nothing waits.
        self._presence_pending: dict[JID, asyncio.Task[None]] = {}
        #: Per account, the messages waiting for the offline path behind the one being
        #: handled, with the turn they will take together (``_to_offline``).
        self._offline_queues: dict[JID, _OfflineQueue] = {}

    def reserve_offline_turn(self, user: JID) -> Turn:
        """A place in ``user``'s (a bare JID) offline turn, taken now; ``async with turn:``
        waits for it (in a task) and holds it. While it is held or waited for, messages
        routed to the account (its bare JID, or a full JID of its sessions here) wait for it,
        then go to the account's resources (or offline) in the order they came. mod_offline
        reserves it in the processing of the presence that makes a session available, and
        holds it while it delivers what it stored: a message sent after the account came
        online, even one routed before any task ran, does not overtake the ones kept for it
        (RFC 6120 §10.1, XEP-0160)."""
        return self._offline_turns.reserve(user)

    def _one_node(self) -> bool:
        """Whether this routing involves no other node: no cluster, or not inside
        ``route_here`` (which holds ``elsewhere`` back)."""
        return self.elsewhere is None and self._held is None

    def route_here(self, frm: JID, to: JID, stanza: Element) -> None:
        """Route with this node's sessions only (what ``elsewhere`` hands back): a stanza
        that came from another node, or found no session there, never travels again."""
        elsewhere, self.elsewhere = self.elsewhere, None
        held, self._held = self._held, elsewhere or self._held
        try:
            self.route(frm, to, stanza)
        finally:
            self.elsewhere = elsewhere
            self._held = held

    # -- entry points ---------------------------------------------------------------------
    def route_held(self, frm: JID, to: JID, stanza: Element) -> Awaitable[None] | None:
        """``route`` a client's stanza; when a part of it took a slow path (``elsewhere``
        waiting for the session table before sending it to another node), what completes
        once that part is routed. The c2s stream reads the client's next stanza only then:
        RFC 6120 §10.1 wants a client's stanzas processed in order, and an answer to the
        next one (a ping) must not overtake a message still on its way to another node
        (issue 14: it was lost with its node while the client had its answer)."""
        if self.elsewhere is None:
            self.route(frm, to, stanza)  # one node: nothing takes a slow path
            return None
        holds: list[Awaitable[None]] = []
        self._holds = holds
        try:
            self.route(frm, to, stanza)
        finally:
            self._holds = None
        if not holds:
            return None
        return _all_of(holds)

    def hold(self, routed: Awaitable[None]) -> None:
        """For ``elsewhere``: the stanza being routed continues in ``routed`` (a task's
        completion); the sender's next stanza waits for it (``route_held``)."""
        if self._holds is not None:
            self._holds.append(routed)

    def route(self, frm: JID, to: JID, stanza: Element) -> None:
        """Deliver ``stanza`` (from/to attributes already set) according to ``to``.

        A failure on the way (a module's handler, a bug of ours) is logged with its trace and
        answered with internal-server-error (RFC 6120 §8.3.3.8): the sender's connection stays
        up and the sender knows the stanza went nowhere."""
        try:
            self._route(frm, to, stanza)
        except Exception:
            log.exception("route_failed name=%s from=%s to=%s", stanza.name, frm, to)
            # An error reply is never answered (bounce drops it): no loop if this fails too.
            self.bounce(stanza, StanzaError("internal-server-error"))

    def _route(self, frm: JID, to: JID, stanza: Element) -> None:
        if self.server.is_local_domain(to.domain):
            hooks = self.hooks
            if hooks.version != self._route_filters_seen:
                self._route_filters_seen = hooks.version
                self._route_filtered = hooks.has(H.FILTER_LOCAL_ROUTE)
            if self._route_filtered:
                filtered = self.hooks.fold(H.FILTER_LOCAL_ROUTE, stanza, frm, to)
                if filtered is None:
                    return
                stanza = filtered
            self._route_local(frm, to, stanza)
        elif self.server.components.route(frm, to, stanza):
            pass  # a connected component serves the domain (XEP-0114)
        elif self.beyond is not None and self.beyond.to_domain(frm, to, stanza):
            pass  # another data centre serves it (mod_global_distrib: muc.<global host>)
        elif not self.server.s2s.route(frm, to, stanza):
            # Neither a component nor federation takes it: the sender learns the domain is
            # unreachable (RFC 6120 §8.3.3.16) rather than a silent drop.
            self.server.instrument.router_no_route_found(frm.domain)
            self.bounce(stanza, StanzaError("remote-server-not-found"))

    def bounce(self, stanza: Element, error: StanzaError) -> None:
        """Answer ``stanza`` with ``error`` unless it is itself an error or a result."""
        if stanza.attrs.get("type") in ("error", "result"):
            # RFC 6120 §8.3.1: never answer an error (or a result) with an error
            self.server.instrument.router_stanza_dropped("")
            return
        frm = stanza.attrs.get("from")
        if not frm:
            self.server.instrument.router_stanza_dropped("")
            return
        try:
            reply_to = JID.parse(frm)
            reply_from = JID.parse(stanza.attrs["to"]) if stanza.attrs.get("to") else None
        except ValueError:
            return
        reply = error_reply(stanza, error)
        reply_frm = reply_from or JID(None, reply_to.domain, None)
        outer, self.bouncing = self.bouncing, reply
        try:
            if self.elsewhere is None and self._held is not None:
                # Inside route_here (the stanza came from another node): the sender may well
                # be on another node, so the error travels (never answered: no loop).
                self.elsewhere = self._held
                try:
                    self.route(reply_frm, reply_to, reply)
                finally:
                    self.elsewhere = None
                return
            self.route(reply_frm, reply_to, reply)
        finally:
            self.bouncing = outer

    # -- local ----------------------------------------------------------------------------
    def _route_local(self, frm: JID, to: JID, stanza: Element) -> None:
        name = stanza.name
        if to.local is None:
            self._to_server(frm, to, stanza)
        elif to.resource is not None:
            session = self.sessions.lookup(to)
            if session is not None:
                if name == "presence" and stanza.attrs.get("type") in _SUBSCRIPTION_TYPES:
                    # RFC 6121 §3: subscription requests concern the bare JID.
                    self._to_bare(frm, to.bare, stanza)
                elif name == "message":
                    if self._turns_held and to.bare in self._turns_held and self._one_node() \
                            and _news(stanza):
                        # The account's offline turn is held (it just came online, and its
                        # stored messages are on their way): this one follows them rather
                        # than overtaking them.
                        self._close_offline_queue(to.bare)
                        self.server.spawn(self._to_full_in_turn(frm, to, stanza))
                    else:
                        self._message_to_session(frm, to, stanza, session)
                else:
                    session.deliver(stanza)
            elif self.elsewhere is not None:
                self.elsewhere.to_full(frm, to, stanza)
            else:
                self._to_full_unavailable(frm, to, stanza)
        else:
            self._to_bare(frm, to, stanza)

    def _message_to_session(self, frm: JID, to: JID, stanza: Element,
                            session: Session) -> None:
        """A message to the full JID of ``session``, through ``filter_local_packet`` (the
        archive, AMP, the inbox, push) when a module filters."""
        if self.hooks.has(H.FILTER_LOCAL_PACKET):
            filtered = self.hooks.fold(H.FILTER_LOCAL_PACKET, stanza, frm, to, [session])
            if filtered is not None:
                session.deliver(filtered)
        else:
            session.deliver(stanza)

    def to_full_unavailable(self, frm: JID, to: JID, stanza: Element) -> None:
        """RFC 6121 §8.5.3.2: the full JID has no session, on any node (``elsewhere`` found
        none): a chat message goes to the bare JID, whose resources may be on other nodes."""
        self._to_full_unavailable(frm, to, stanza)

    def _to_full_unavailable(self, frm: JID, to: JID, stanza: Element) -> None:
        """RFC 6121 §8.5.3.2: the full JID has no session."""
        if self.beyond is not None and self.beyond.to_full(frm, to, stanza):
            return  # in another data centre (mod_global_distrib)
        kind = stanza.name
        if kind == "message":
            # RFC 6121 §5.2.2: a type not understood is "normal", and goes where normal goes
            mtype = message_type(stanza)
            if mtype in _TO_BARE_ON_NO_RESOURCE:
                self._to_bare(frm, to.bare, stanza)
            elif mtype == "groupchat":
                self.bounce(stanza, StanzaError("service-unavailable"))
            # headline and error: silently ignored (§8.5.3.2.1)
            return
        stype = stanza.attrs.get("type")
        if kind == "presence":
            if stype in _SUBSCRIPTION_TYPES:
                self._to_bare(frm, to.bare, stanza)
            # other presence to an unavailable full JID: ignored (§8.5.3.2.3)
        elif kind == "iq" and stype in ("get", "set"):
            self.bounce(stanza, StanzaError("service-unavailable"))

    def _to_bare(self, frm: JID, to: JID, stanza: Element) -> None:
        kind = stanza.name
        if kind == "message":
            self._message_to_bare(frm, to, stanza)
        elif kind == "presence":
            if self.beyond is not None and not self.sessions.resources(to) \
                    and self.beyond.to_bare(frm, to, stanza):
                return  # the account's sessions are in another data centre
            if self.elsewhere is not None and stanza.attrs.get("type") in _SUBSCRIPTION \
                    and not self.sessions.resources(to):
                # RFC 6121 §3: the contact's server processes it and pushes the roster to
                # the contact's resources: on the node that has them.
                self.elsewhere.to_owner(frm, to, stanza)
                return
            if stanza.attrs.get("type") in (None, "unavailable") and \
                    self.server.is_local_domain(frm.domain) and \
                    not any(s.available for s in self.sessions.resources(to)):
                # A local entity's presence (a contact's broadcast) to an account with no
                # available resource here reaches no one here: not later either, when an
                # earlier presence to the account still waits for storage and a resource
                # has come meanwhile (Router._presence_in_order). That resource probed the
                # contacts at its own initial presence (RFC 6121 §4.2.2) and has this
                # presence, or a newer one, from there: delivered too, it came twice
                # (test_login_gets_each_contact_resource_presence_once with PostgreSQL 2
                # ms away). The hooks (blocklist, privacy, caps of remote clients, delivery)
                # have nothing to do for it; the other nodes get their copy.
                if self.elsewhere is not None:
                    self.elsewhere.to_bare(frm, to, stanza.copy(), also=True)
                return
            # ``elsewhere`` as it is now: None inside route_here, so a presence that came from
            # another node never travels again (no probe ping-pong between nodes).
            routing = self._presence_to_bare(frm, to, stanza, self.elsewhere)
            if self._one_node():
                # One node: run at once. A presence to an account's resources waits for
                # nothing, and then arrives in order with what the sender sends next (RFC
                # 6120 §10.1); only what waits for storage (a probe's roster read, a
                # subscription) becomes a task. With other nodes it stays a task: the
                # answers it routes must not run inside route_here (``elsewhere`` held back)
                # nor hold the sender's next stanza (route_held).
                self._presence_in_order(to, routing)
            else:
                self.server.spawn(routing)
        elif kind == "iq":
            self.server.iq.dispatch(frm, to, stanza, scope="sm")

    def _presence_in_order(self, to: JID, routing: Coroutine[Any, Any, None]) -> None:
        """Run ``routing`` (a presence to the bare JID ``to``) at once, or after the one
        before it to ``to`` if that still waits for storage, so that presences reach the
        account in the order they were routed (RFC 6120 §10.1). RFC 6121 §3.1.5: a contact's
        approval, then its current presence; the approval waits for the user's roster write,
        the presence for nothing, and with PostgreSQL (any database whose reads suspend) the
        presence came first (docs/delivery.md, "A database a few milliseconds away")."""
        pending = self._presence_pending
        before = pending.get(to) if pending else None
        if before is None:
            task = self.server.spawn_eager(routing)
            if task is None:
                return  # done at once: the common case, nothing kept
        else:
            task = self.server.spawn(_after(before, routing))
        pending[to] = task
        task.add_done_callback(functools.partial(self._presence_done, to))

    def _presence_done(self, to: JID, task: asyncio.Task[None]) -> None:
        if self._presence_pending.get(to) is task:
            del self._presence_pending[to]

    def _message_to_bare(self, frm: JID, to: JID, stanza: Element) -> None:
        """RFC 6121 §8.5.2.1.1: to every available resource with a non-negative priority."""
        stype = stanza.attrs.get("type", "normal")
        if stype == "error":
            targets = self.sessions.available(to)
            if targets:
                targets[0].deliver(stanza)
            elif self.beyond is not None and self.elsewhere is None:
                self.beyond.to_bare(frm, to, stanza)
            return
        if stype == "groupchat":
            # §8.5.2.1.1: a groupchat message to a bare JID is never delivered.
            self.bounce(stanza, StanzaError("service-unavailable"))
            return
        if self._turns_held and to in self._turns_held and self._one_node():
            # Earlier messages to the account are still on the offline path (it came online
            # meanwhile): this one follows them, delivered or stored in its turn (RFC 6120
            # §10.1), rather than overtaking them. (One node: with others, the offline path
            # of a message is decided after the other nodes were asked.)
            self._to_offline(frm, to, stanza)
            return
        if self._deliver_to_resources(frm, to, stanza):
            return
        if self.elsewhere is not None:
            self.elsewhere.to_bare(frm, to, stanza)
            return
        if self.beyond is not None and self.beyond.to_bare(frm, to, stanza):
            return  # the account's sessions are in another data centre
        if stype == "headline":
            return  # §8.5.2.1.1: headlines to no resource are ignored
        self._to_offline(frm, to, stanza)

    def _deliver_to_resources(self, frm: JID, to: JID, stanza: Element) -> bool:
        """§8.5.2.1.1: to the account's available resources of non-negative priority; False
        when it has none (here: other nodes are told too)."""
        targets = self._targets(to)
        if not targets:
            return False
        if self.hooks.has(H.FILTER_LOCAL_PACKET):
            filtered = self.hooks.fold(H.FILTER_LOCAL_PACKET, stanza, frm, to, targets)
            if filtered is None:
                return True
            stanza = filtered
        if self.elsewhere is not None:
            self.elsewhere.to_bare(frm, to, stanza.copy(), also=True)
        for session in targets:
            session.deliver(stanza if len(targets) == 1 else stanza.copy())
        return True

    def _to_offline(self, frm: JID, to: JID, stanza: Element) -> None:
        """The offline path for a message to the bare JID ``to``, in the account's offline
        turn: one account's messages go through it one after the other, in the order they
        were routed. Each waits for storage several times (the account's existence, its
        block list, the quota, the write), and on a database server those waits end in any
        order, which stored (and later delivered) a burst shuffled.

        The messages routed to the account while this path's task has not started, or
        while it holds the turn and no other turn was reserved after it, queue for it and
        are handled together as one batch (suricate/core/offline_batch.py: each
        per-account read once, one write): with the database 2 ms away a burst was stored
        at ~20 ms a message (docs/offline.md). The task takes the turn in its first step,
        as each message's own task did: a turn reserved before that (the account's login)
        still comes first. A turn reserved after it (the login), or a message to a full
        JID of the account waiting for the turn (``_close_offline_queue``), ends the queue:
        what is routed later waits behind them, as before."""
        queue = self._offline_queues.get(to)
        if queue is not None and queue.open:
            turns = self._turns_held.get(to) if queue.turn is not None else None
            if queue.turn is None or (turns and turns[-1] is queue.turn):
                queue.messages.append((frm, stanza))
                return
        queue = self._offline_queues[to] = _OfflineQueue([(frm, stanza)])
        task = self.server.spawn(self._offline_worker(to, queue))
        # Cancelled before its first step (a shutdown), the task never ran its ``finally``.
        task.add_done_callback(functools.partial(self._offline_queue_done, to, queue))

    def _close_offline_queue(self, to: JID) -> None:
        """No message routed from now on joins ``to``'s queue (a message routed before
        them waits for the turn on its own)."""
        queue = self._offline_queues.get(to)
        if queue is not None:
            queue.open = False

    def _offline_queue_done(self, to: JID, queue: _OfflineQueue, *_: Any) -> None:
        queue.open = False
        if self._offline_queues.get(to) is queue:
            del self._offline_queues[to]

    async def _offline_worker(self, to: JID, queue: _OfflineQueue) -> None:
        try:
            queue.turn = self._offline_turns.reserve(to)
            async with queue.turn:
                while queue.messages:
                    batch, queue.messages = queue.messages, []
                    await self._offline_batch(to, batch)
        finally:
            # At once, not in a done callback: nothing joins a queue whose task is over.
            self._offline_queue_done(to, queue)

    async def _offline_batch(self, to: JID, messages: list[tuple[JID, Element]]) -> None:
        batch = OfflineBatch(to, len(messages))
        token = batch.enter()
        try:
            for frm, stanza in messages:
                await self._offline_or_error(frm, to, stanza, batch)
            try:
                await batch.flush()
            except Exception:
                # A flush answers the senders of what it could not write; what fails after
                # the write (a delivery) must not stop the messages queued behind the batch.
                log.exception("offline_batch_failed to=%s", to)
        finally:
            batch.leave(token)

    async def _offline_or_error(self, frm: JID, to: JID, stanza: Element,
                                batch: OfflineBatch) -> None:
        try:
            if self.elsewhere is None and batch.pending and self._targets(to):
                # The account came online while the batch was handled: what the batch kept
                # is written (and taken to the session, mod_offline) before this one goes.
                await batch.flush()
            if self.elsewhere is None and self._deliver_to_resources(frm, to, stanza):
                return  # the account came online while earlier messages were stored
            if message_type(stanza) == "headline":
                return  # §8.5.2.1.1: a headline to no resource is ignored, not stored
            await self._offline(frm, to, stanza)
        except Exception:
            # The database is down (or a bug): the message was not stored, so the sender must
            # hear it rather than lose it silently.
            log.exception("offline_failed from=%s to=%s", frm, to)
            self.bounce(stanza, StanzaError("internal-server-error"))

    def _targets(self, to: JID) -> list[Any]:
        """The sessions a message to the bare JID ``to`` goes to (§8.5.2.1.1)."""
        return [s for s in self.sessions.available(to) if s.priority >= 0]

    async def _to_full_in_turn(self, frm: JID, to: JID, stanza: Element) -> None:
        """A message to a full JID with a session here while the account's offline turn is
        held: it goes out after what the turn's holders deliver (the stored messages), as
        ``_route_local`` would have sent it then."""
        bare = to.bare
        try:
            async with self._offline_turns.hold(bare):
                session = self.sessions.lookup(to)
                if session is not None:
                    self._message_to_session(frm, to, stanza, session)
                    return
                # The session went away meanwhile: RFC 6121 §8.5.3.2.1, in this turn still.
                mtype = message_type(stanza)
                if mtype == "groupchat":
                    self.bounce(stanza, StanzaError("service-unavailable"))
                elif mtype in _TO_BARE_ON_NO_RESOURCE \
                        and not self._deliver_to_resources(frm, bare, stanza):
                    await self._offline(frm, bare, stanza)
        except Exception:
            log.exception("offline_failed from=%s to=%s", frm, to)
            self.bounce(stanza, StanzaError("internal-server-error"))

    async def _offline(self, frm: JID, to: JID, stanza: Element) -> None:
        exists = await read_once(to, "user_exists", lambda: self.server.user_exists(to))
        if not exists:
            self.bounce(stanza, StanzaError("service-unavailable"))
            return
        allowed = await self.hooks.fold_async(H.PRIVACY_CHECK_INBOUND, True, self.server, to,
                                              frm, stanza)
        if not allowed:
            # XEP-0191 §3.2: stanzas from a blocked entity are dropped without telling it
            # (the blocker's privacy is the point).
            return
        stored, failed = await self.hooks.fold_async_checked(H.OFFLINE_MESSAGE, False, frm, to,
                                                             stanza)
        if not stored and failed:
            # A storage handler failed (database outage): not stored, and not the user's
            # choice either; the sender may retry later.
            self.bounce(stanza, StanzaError("internal-server-error"))
        elif not stored:
            # §8.5.2.2.1: no offline storage (or the quota is full): tell the sender.
            self.server.instrument.sm_message_bounced(to.domain)
            self.bounce(stanza, StanzaError("service-unavailable"))

    async def _presence_to_bare(self, frm: JID, to: JID, stanza: Element,
                                elsewhere: Elsewhere | None = None) -> None:
        stype = stanza.attrs.get("type")
        if elsewhere is not None and stype in (None, "unavailable", "probe"):
            # The user's resources on other nodes (RFC 6121 §8.5.2.1.2), and a probe for the
            # nodes that know their presence (§4.3.2), whatever a module does here.
            elsewhere.to_bare(frm, to, stanza.copy(), also=True)
        handled = await self.hooks.fold_async(H.PRESENCE_TO_USER, False, frm, to, stanza)
        if handled:
            return
        if stype in (None, "unavailable"):
            for session in self.sessions.available(to):
                session.deliver(stanza.copy())

    def _to_server(self, frm: JID, to: JID, stanza: Element) -> None:
        kind = stanza.name
        if kind == "iq":
            self.server.iq.dispatch(frm, to, stanza, scope="local")
        elif kind == "message" and stanza.attrs.get("type") not in ("error", "headline",
                                                                     "groupchat"):
            # RFC 6121 §8.5.1 leaves messages to the server to local policy: errors are
            # ignored, others answered so the sender knows nobody reads them.
            self.bounce(stanza, StanzaError("service-unavailable"))
        # presence to the server itself carries nothing for us to act on (§8.5.1)


class _OfflineQueue:
    """An account's messages waiting for the offline path, and the turn they take (None
    until their task starts)."""

    __slots__ = ("turn", "messages", "open")

    def __init__(self, messages: list[tuple[JID, Element]]) -> None:
        self.turn: Turn | None = None
        self.messages = messages
        #: Whether a message routed now may join (``Router._to_offline``).
        self.open = True


async def _all_of(holds: list[Awaitable[None]]) -> None:
    for routed in holds:
        await routed


_SUBSCRIPTION = frozenset({"subscribe", "subscribed", "unsubscribe", "unsubscribed"})
_SUBSCRIPTION_TYPES = _SUBSCRIPTION | {"probe"}

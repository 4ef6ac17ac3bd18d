"""mod_presence: presence broadcast, probes, directed presence and the stanza side of
subscriptions (RFC 6121 §3, §4).

Presence a client sends without 'to' is broadcast by the server (§4.2, §4.4, §4.5); with 'to'
it is either a subscription stanza, whose effect on the roster the roster owner decides
(the ROSTER_*_SUBSCRIPTION hooks, see ``protocol/subscription.py``), or directed presence (§4.6).
Broadcast reads the roster from the session's cache, never from storage, so it stays
synchronous; only subscription stanzas (which change the roster) go through a task.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from suricate.config.spec import Section
from suricate.core import hooks as H
from suricate.core.module import CarriedSlot, Module, SessionSlot, session_state_changed
from suricate.instrument.events import SM_PRESENCE_SUBSCRIPTION
from suricate.jid import JID, InvalidJID
from suricate.modules.mod_roster import ROSTER_CACHE, loaded_roster, roster_module
from suricate.modules.mod_roster.store import RosterItem
from suricate.protocol import subscription as sub
from suricate.xml import ns
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.core.c2s import C2S

log = logging.getLogger("suricate.mod_presence")

# RFC 6121 §4.6: the entities this session sent directed available presence to (they get
# unavailable presence when it goes offline, §4.6.3); created on the first one.
DIRECTED: SessionSlot[set[JID]] = SessionSlot("mod_presence.directed", set)
_CARRIED_DIRECTED = CarriedSlot(DIRECTED, lambda targets: sorted(str(j) for j in targets),
                                lambda plain: {JID.parse(j) for j in plain})

SUBSCRIPTION_TYPES = frozenset(sub.EVENTS)
# server.cluster topic: a subscription stanza shown on the other nodes (sm_backend = "redis")
CAST_TOPIC = "mod_presence"


def presence_priority(stanza: Element) -> int:
    """RFC 6121 §4.7.2.3: an integer from -128 to +127, 0 when absent; a value outside the
    range is the client's mistake and counts as the default."""
    text = stanza.find_text("priority")
    if not text:
        return 0
    try:
        value = int(text.strip())
    except ValueError:
        return 0
    return value if -128 <= value <= 127 else 0


def _state(item: RosterItem | None) -> sub.State:
    return sub.normalize(item.subscription, item.ask) if item is not None else sub.NONE


class ModPresence(Module):
    name = "mod_presence"
    options = Section({}, doc="RFC 6121 presence handling.")
    hooks = (
        # After stanza filters (blocking, privacy) that may drop the stanza first.
        (H.USER_SEND_PACKET, "user_send_presence", 80),
        (H.PRESENCE_TO_USER, "presence_to_user", 50),
        (H.UNSET_PRESENCE, "unset_presence", 50),
        # Before mod_muc's (60), which drops the session from the local rooms quietly.
        (H.SESSION_CLOSED, "session_closed", 50),
        (H.SESSION_HANDOVER, "handover", 50),
        (H.SESSION_SNAPSHOT, "snapshot", 50),
    )

    def handover(self, state: dict[str, Any], c2s: C2S, moved_in: bool) -> dict[str, Any]:
        """The session resumes on another node (XEP-0198 §5): the entities it sent directed
        presence to go along, so they get its unavailable presence when it ends there (RFC
        6121 §4.6.3): a room joined before the move does not keep a ghost occupant."""
        return _CARRIED_DIRECTED.handover(state, c2s, moved_in)

    def snapshot(self, state: dict[str, Any], c2s: C2S) -> dict[str, Any]:
        return _CARRIED_DIRECTED.snapshot(state, c2s)

    # -- presence from our clients -------------------------------------------------------------
    def user_send_presence(self, stanza: Element | None, c2s: C2S) -> Element | None:
        if stanza is None or stanza.name != "presence":
            return stanza
        type_ = stanza.attrs.get("type")
        to_attr = stanza.attrs.get("to")
        if not to_attr:
            if type_ is None:
                self._available(c2s, stanza)
            elif type_ == "unavailable":
                self._unavailable(c2s, stanza)
            # Other types without 'to' have no meaning for the server: dropped.
            return None
        try:
            to = JID.parse(to_attr)
        except (InvalidJID, ValueError):
            return stanza  # the c2s answers jid-malformed
        if type_ in SUBSCRIPTION_TYPES:
            self.server.spawn(self._outbound_subscription(c2s.jid, to.bare, type_, stanza))
            return None
        if type_ is None:
            targets = DIRECTED.setdefault(c2s)
            if to not in targets:
                targets.add(to)  # §4.6.2: remembered for the logout
                session_state_changed(c2s)
        elif type_ == "unavailable":
            known = DIRECTED.get(c2s)
            if known and to in known:
                known.discard(to)
                session_state_changed(c2s)
        return stanza  # directed presence, probe, error: routed by the c2s

    def _available(self, c2s: C2S, stanza: Element) -> None:
        """RFC 6121 §4.2.2 (initial presence) and §4.4.2 (later updates)."""
        first = c2s.presence is None
        was_negative = c2s.priority < 0
        c2s.presence = stanza
        c2s.priority = presence_priority(stanza)
        user = c2s.jid.bare
        roster = self._roster(c2s)
        for contact, item in roster.items():
            if _state(item).has_from and not self._blocked(c2s, contact):
                self._route_copy(c2s.jid, contact, stanza)
        # §4.2.2: also to all of the user's available resources, the sender included.
        for session in self.server.sessions.available(user):
            self._deliver_copy(session, stanza)
        if not first:
            if was_negative and c2s.priority >= 0:
                # Now it takes stanzas for the account: the requests kept meanwhile, and
                # what mod_offline stored (XEP-0160 §2: "next sends non-negative available
                # presence"). A hook of its own rather than a user_send_packet handler in
                # mod_offline: nothing is added to the path of every stanza a client sends.
                self._show_pending_requests(c2s, roster)
                self.server.hooks.fold(H.RESEND_OFFLINE_MESSAGES, None, c2s)
                self.server.spawn(self.server.hooks.fold_async(H.USER_PRIORITY_RAISED, None,
                                                               c2s))
            return
        # §4.2.2: probe the contacts the user is subscribed to (§4.3.1: from the bare JID).
        for contact, item in roster.items():
            if _state(item).has_to and not self._blocked(c2s, contact, notification=False):
                probe = Element("presence", ns.CLIENT, {"type": "probe", "from": str(user),
                                                         "to": str(contact)})
                self.server.router.route(user, contact, probe)
        # The new resource learns about the user's other available resources.
        for session in self.server.sessions.available(user):
            if session is not c2s and session.presence is not None:
                copy = session.presence.copy()
                copy.attrs["from"] = str(session.jid)
                copy.attrs["to"] = str(c2s.jid)
                c2s.deliver(copy)
        elsewhere = self.server.router.elsewhere
        if elsewhere is not None:
            # ...and those on other nodes (sm_backend = "redis"): a probe from the new
            # resource, answered by each node holding one (_probe, the user's own case).
            probe = Element("presence", ns.CLIENT, {"type": "probe", "from": str(c2s.jid),
                                                     "to": str(user)})
            elsewhere.to_bare(c2s.jid, user, probe, also=True)
        # §3.1.3: requests that arrived while the user was away are shown now.
        self._show_pending_requests(c2s, roster)
        # Offline messages (mod_offline), now: whatever is routed to the account from here
        # on must find them on their way already (XEP-0160; RFC 6120 §10.1).
        if c2s.priority >= 0:
            self.server.hooks.fold(H.RESEND_OFFLINE_MESSAGES, None, c2s)
        self.server.spawn(self.server.hooks.fold_async(H.USER_AVAILABLE, None, c2s))

    @staticmethod
    def _show_pending_requests(c2s: C2S, roster: dict[JID, RosterItem]) -> None:
        """RFC 6121 §3.1.3: the subscription requests kept for the user, to a resource that
        takes stanzas for the account: available with a non-negative priority, as a request
        that arrives live is shown (``_show_subscription``). A resource that comes online
        with a negative priority gets them once it raises it."""
        if c2s.priority < 0:
            return
        user = c2s.jid.bare
        for contact, item in roster.items():
            if _state(item).pending_in:
                request = Element("presence", ns.CLIENT, {"type": "subscribe",
                                                          "from": str(contact), "to": str(user)})
                if item.ask_message:
                    request.add("status", text=item.ask_message)
                c2s.deliver(request)

    def _unavailable(self, c2s: C2S, stanza: Element) -> None:
        """RFC 6121 §4.5.2: to the subscribers, the user's other resources and every entity
        that got directed presence (§4.6.3)."""
        was_available = c2s.presence is not None
        c2s.presence = None
        targets: set[JID] = set()
        if was_available:
            for contact, item in self._roster(c2s).items():
                if _state(item).has_from and not self._blocked(c2s, contact):
                    targets.add(contact)
        directed = DIRECTED.pop(c2s)
        if directed:
            targets |= directed
            session_state_changed(c2s)
        for target in targets:
            self._route_copy(c2s.jid, target, stanza)
        if was_available:
            for session in self.server.sessions.available(c2s.jid.bare):
                if session is not c2s:
                    self._deliver_copy(session, stanza)

    async def unset_presence(self, acc: None, c2s: C2S, status: str) -> None:
        """The session ended while available: the server says goodbye for it (§4.5.2). The
        session has already left the table, so it is not among "the other resources"."""
        if c2s.presence is None and not DIRECTED.get(c2s):
            return acc
        stanza = Element("presence", ns.CLIENT, {"type": "unavailable", "from": str(c2s.jid)})
        self._unavailable(c2s, stanza)
        return acc

    async def session_closed(self, acc: None, c2s: C2S, reason: str) -> None:
        """A session that never sent broadcast presence has no UNSET_PRESENCE (the c2s runs it
        for available sessions only), yet the entities it sent directed presence to must
        still get its unavailable presence (RFC 6121 §4.6.3): rooms on other servers, which
        only learn of the session's end this way."""
        if c2s.presence is None and DIRECTED.get(c2s):
            stanza = Element("presence", ns.CLIENT, {"type": "unavailable",
                                                      "from": str(c2s.jid)})
            self._unavailable(c2s, stanza)
        return acc

    # -- subscriptions the user sends (RFC 6121 §3.1.2, §3.1.5, §3.2.2, §3.3.2) ------------------
    async def _outbound_subscription(self, sender: JID, contact: JID, type_: str,
                                     stanza: Element) -> None:
        user = sender.bare
        if contact == user:
            return  # an account is not its own contact
        instrument = self.server.instrument
        if instrument.enabled:
            # 6.4's sm_presence_subscription: the subscription stanzas a user sends.
            metric = "subscription_count" if type_ in ("subscribe", "subscribed") \
                else "unsubscription_count"
            instrument.emit(SM_PRESENCE_SUBSCRIPTION, {"host_type": user.domain}, {metric: 1})
        # The subscription is between bare JIDs: stamp both (§3.1.2).
        stanza.attrs["from"] = str(user)
        stanza.attrs["to"] = str(contact)
        outcome: sub.Transition | None = await self.server.hooks.fold_async(
            H.ROSTER_OUT_SUBSCRIPTION, None, user, contact, type_, stanza)
        if outcome is None or outcome.forward:
            self.server.router.route(user, contact, stanza)
        if outcome is None:
            return
        if outcome.gained_from:
            # §3.1.5: the new subscriber gets the user's current presence at once.
            self._send_current_presence(user, contact)
        elif outcome.lost_from:
            # §3.2.2: a cancelled subscriber sees the user go unavailable.
            self._send_unavailable(user, contact)

    # -- presence to a local bare JID ------------------------------------------------------------
    async def presence_to_user(self, handled: bool, frm: JID, to: JID,
                               stanza: Element) -> bool:
        if handled:
            return handled
        type_ = stanza.attrs.get("type")
        if type_ in SUBSCRIPTION_TYPES:
            await self._inbound_subscription(frm.bare, to.bare, type_, stanza)
            return True
        if type_ == "probe":
            await self._probe(frm, to.bare)
            return True
        if type_ in (None, "unavailable", "error"):
            # §8.5.2.1.2 / §4.6: presence to the bare JID reaches every available resource.
            # So does an error: subscription requests leave from the bare JID (§3.1.2), and
            # their errors come back to it (RFC 6120 §8.3), e.g. remote-server-not-found for
            # a contact whose domain does not exist; dropped, the user would never learn
            # that the request went nowhere (Prosody delivers them too).
            for session in self.server.sessions.available(to.bare):
                session.deliver(stanza.copy())
            return True
        return handled

    async def _inbound_subscription(self, contact: JID, user: JID, type_: str,
                                    stanza: Element) -> None:
        """RFC 6121 §3.1.3, §3.1.6, §3.2.3, §3.3.3: the contact's stanza reaches the user."""
        # A connected account exists; asking storage only when none is keeps stanzas from one
        # contact in order in the common case.
        if not self.server.sessions.count_user(user) and not await self.server.user_exists(user):
            if type_ == "subscribe":
                # §3.1.3: there is no such account to subscribe to.
                self._send_type(user, contact, "unsubscribed")
            return
        stanza.attrs["from"] = str(contact)
        stanza.attrs["to"] = str(user)
        outcome: sub.Transition | None = await self.server.hooks.fold_async(
            H.ROSTER_IN_SUBSCRIPTION, None, user, contact, type_, stanza)
        if outcome is None or outcome.forward:
            self._show_subscription(user, stanza, (type_,))
            # ...and on the other nodes holding the user's sessions (sm_backend = "redis").
            self.server.cluster.cast(user, CAST_TOPIC, stanza, type_)
        if outcome is None:
            return
        if outcome.reply is not None:
            # §3.1.3 (already subscribed) and §3.4 (pre-approved): the server answers.
            self._send_type(user, contact, outcome.reply)
            if outcome.reply == "subscribed":
                self._send_current_presence(user, contact)
        elif outcome.lost_from:
            # §3.3.3: the former subscriber sees the user go unavailable.
            self._send_unavailable(user, contact)

    async def _probe(self, prober: JID, user: JID) -> None:
        """RFC 6121 §4.3.2: answer only a contact subscribed to the user's presence."""
        sessions = list(self.server.sessions.resources(user))
        if prober.bare == user and prober.resource is not None:
            # A new resource of the user on another node learns about these (§4.2.2).
            for session in sessions:
                if session.presence is not None and session.jid != prober:
                    self._route_copy(session.jid, prober, session.presence)
            return
        # §4.3.2: the answer is decided by the subscription; without a session of the user
        # to hold a copy of the roster, by the stored item (batched, see _item).
        item = await self._item(user, prober.bare, sessions)
        if not _state(item).has_from:
            # Not a subscriber: reveal nothing, and tell its server so its roster can catch up.
            if item is not None or await self.server.user_exists(user):
                self._send_type(user, prober.bare, "unsubscribed")
            return
        available = False
        for session in sessions:
            if session.presence is not None:
                available = True
                if not self._blocked(session, prober.bare):
                    self._route_copy(session.jid, prober, session.presence)
        if available or self.server.is_local_domain(prober.domain):
            # A local login probes every contact (§4.2.2): its client takes the silence
            # of those offline for unavailable, and an answer each would cost a stanza
            # and a read per offline contact at every login.
            return
        if self.server.cluster.spans_nodes and await self.server.cluster.available([user]):
            return  # the node holding the available resource answers
        # §4.3.2: a contact's server probing a user without an available resource SHOULD
        # get <presence type='unavailable'/> (from the bare JID), with the status and time of
        # the last one when mod_last keeps them (XEP-0012, XEP-0203); otherwise the contact
        # could go on showing a presence its server learnt before a crash of ours.
        await self._answer_unavailable(user, prober)

    async def _answer_unavailable(self, user: JID, prober: JID) -> None:
        answer = Element("presence", ns.CLIENT, {"type": "unavailable", "from": str(user),
                                                 "to": str(prober)})
        store = getattr(self.server.modules.get("mod_last"), "store", None)
        if store is not None and user.local is not None:
            record = await store.get_last(user.domain, user.local)
            if record is not None:
                seconds, status = record
                if status:
                    answer.add("status", ns.CLIENT, text=status)
                stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                answer.add("delay", ns.DELAY, {"from": user.domain, "stamp": stamp})
        if not await self.server.hooks.fold_async(H.PRIVACY_CHECK_OUTBOUND, True, self.server,
                                                  user, prober, answer):
            return  # hidden from the prober (XEP-0016 presence-out)
        self.server.router.route(user, prober, answer)

    # -- helpers -----------------------------------------------------------------------------------
    async def _item(self, user: JID, contact: JID, sessions: list[Any]) -> RosterItem | None:
        cache = loaded_roster(sessions)
        if cache is not None:
            return cache.get(contact)
        if not self.server.is_local_domain(user.domain) or user.local is None:
            return None
        roster = roster_module(self.server)  # without mod_roster nobody has a contact
        # Batched: a login probes all its contacts at once (§4.2.2), and the answers of the
        # contacts without a session are read together, one query rather than one each.
        return None if roster is None else await roster.get_roster_item(user, contact,
                                                                        batch=True)

    @staticmethod
    def _roster(c2s: Any) -> dict[JID, RosterItem]:
        cache = ROSTER_CACHE.get(c2s)
        return cache if cache is not None else {}

    def _blocked(self, c2s: Any, jid: JID, notification: bool = True) -> bool:
        """Whether the user's presence from ``c2s`` must not go to ``jid``: asked of the
        modules that filter it (XEP-0191's blocklist, XEP-0016's presence-out for
        notifications, §2.11) through the hook rather than by importing them, so a server
        without them neither loads nor asks them (no handler: an empty fold)."""
        return not self.server.hooks.fold(H.PRIVACY_CHECK_PACKET, True, c2s, jid, notification)

    async def start(self) -> None:
        self.server.cluster.on(CAST_TOPIC, self._show_subscription)

    async def stop(self) -> None:
        self.server.cluster.off(CAST_TOPIC)

    def _show_subscription(self, user: JID, stanza: Element, args: tuple[str, ...]) -> None:
        """A subscription stanza to the user's available resources on this node."""
        sessions = self.server.sessions.available(user)
        if args[0] == "subscribe":
            # A request goes to resources that take stanzas for the account; without one it
            # stays pending in the roster and is shown at the next login (§3.1.3).
            sessions = [s for s in sessions if s.priority >= 0]
        for session in sessions:
            session.deliver(stanza.copy())


    def _route_copy(self, frm: JID, to: JID, stanza: Element) -> None:
        copy = stanza.copy()
        copy.attrs["from"] = str(frm)
        copy.attrs["to"] = str(to)
        self.server.router.route(frm, to, copy)

    @staticmethod
    def _deliver_copy(session: Any, stanza: Element) -> None:
        copy = stanza.copy()
        copy.attrs["to"] = str(session.jid)
        session.deliver(copy)

    def _send_type(self, user: JID, contact: JID, type_: str) -> None:
        stanza = Element("presence", ns.CLIENT, {"type": type_, "from": str(user),
                                                  "to": str(contact)})
        self.server.router.route(user, contact, stanza)

    def _send_current_presence(self, user: JID, contact: JID) -> None:
        for session in self.server.sessions.available(user):
            if session.presence is not None and not self._blocked(session, contact):
                self._route_copy(session.jid, contact, session.presence)

    def _send_unavailable(self, user: JID, contact: JID) -> None:
        unavailable = Element("presence", ns.CLIENT, {"type": "unavailable"})
        for session in self.server.sessions.available(user):
            if session.presence is not None:  # a resource the contact may have seen
                self._route_copy(session.jid, contact, unavailable)

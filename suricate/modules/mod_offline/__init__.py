"""mod_offline: XEP-0160 offline message storage.

A message the router could not deliver (no available resource with a non-negative priority,
RFC 6121 §8.5.2.1.1) reaches the ``offline_message`` hook. We keep it when it is worth keeping
and the account's quota allows it. A message we do not keep goes back to the router, which
answers the sender ``service-unavailable`` (RFC 6121 §8.5.2.2.1); one over the quota is
answered here, ``resource-constraint``, as MongooseIM 6.4 does. Either way nothing disappears
without the sender knowing.
When the account next sends available presence with a non-negative priority, its messages
are taken out of storage and delivered to that resource, in arrival order, each with an
XEP-0203 delay stamp (XEP-0160 §2 step 5).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from suricate.config.loader import References
from suricate.config.modules_spec import backend
from suricate.config.spec import Bool, Option, Section, Str
from suricate.core import hooks as H
from suricate.core.c2s import STREAM_MANAGEMENT
from suricate.core.hooks import Stop
from suricate.core.keyed_locks import KeyedLocks, Turn
from suricate.core.module import GraphQLCategory, Module, PersonalData
from suricate.core.offline_batch import OfflineBatch, current_batch
from suricate.jid import JID
from suricate.modules.mod_offline.store import OfflineMessage, OfflineStore
from suricate.protocol.errors import StanzaError
from suricate.protocol.stanza import message_type
from suricate.xml import ns
from suricate.xml.element import Element
from suricate.xml.parser import XMLStreamError, parse_fragment

if TYPE_CHECKING:
    from suricate.core.c2s import C2S

log = logging.getLogger("suricate.mod_offline")

CHATSTATES = "http://jabber.org/protocol/chatstates"  # XEP-0085
HINTS = "urn:xmpp:hints"  # XEP-0334
X_EXPIRE = "jabber:x:expire"  # XEP-0023

# XEP-0160 §3: normal and chat are stored; groupchat only when configured; headline and error
# never (the router does not even offer those to us).
_STORED_TYPES = frozenset({"normal", "chat"})

# MongooseIM 6.4's answer (and its text) to a message over the recipient's quota.
QUEUE_FULL = "Your contact offline message queue is full. The message has been discarded."


class ModOffline(Module):
    name = "mod_offline"
    graphql = GraphQLCategory("suricate.modules.mod_offline.graphql")
    options = Section(
        {
            "access_max_user_messages": Option(
                Str(),
                "max_user_offline_messages",
                "Access rule giving the maximum number of stored messages per user.",
            ),
            "backend": backend(),
            "store_groupchat_messages": Option(
                Bool(), False, "Also store groupchat messages for offline users."
            ),
        },
        doc="XEP-0160 offline message storage.",
    )
    xeps = ("0023", "0160", "0203")
    hooks = (
        (H.OFFLINE_MESSAGE, "store_offline", 50),
        # XEP-0160 §2: a session's initial available presence, or its priority raised to
        # non-negative (mod_presence), in that presence's own processing.
        (H.RESEND_OFFLINE_MESSAGES, "resend_offline_messages", 50),
    )
    features = (ns.OFFLINE,)
    store_class = OfflineStore
    store: OfflineStore

    @classmethod
    def check_config(cls, opts: Mapping[str, Any], path: str, refs: References) -> None:
        refs.access_defined(f"{path}.access_max_user_messages",
                            opts.get("access_max_user_messages"))

    def __init__(self, server: Any, opts: Any) -> None:
        super().__init__(server, opts)
        self.quota_rule: str = opts.get("access_max_user_messages", "max_user_offline_messages")
        self.store_groupchat: bool = bool(opts.get("store_groupchat_messages", False))
        # One lock per account being written to, so that two messages arriving together
        # cannot both pass the quota check (count, then store, are two awaits).
        self._writers: KeyedLocks[JID] = KeyedLocks()

    # -- what is worth storing ----------------------------------------------------------------
    async def personal_data(self, jid: JID) -> list[PersonalData]:
        """What the account keeps here, for GDPR retrieval (``Module.personal_data``)."""
        server, user = jid.domain, jid.local or ""
        rows = await self.store.user_rows("offline_messages",
                                          ("stamp", "from_jid", "to_jid", "packet"),
                                          server, user, "id")
        # MongooseIM 6.4's header, the time as RFC 3339 (as its export writes it).
        return [PersonalData("offline", ("timestamp", "from", "to", "packet"), [
            (datetime.fromtimestamp(float(stamp), UTC).isoformat(timespec="microseconds")
             .replace("+00:00", "Z"), frm, to, packet) for stamp, frm, to, packet in rows])]

    def worth_storing(self, stanza: Element) -> bool:
        """XEP-0160 §3 for the message types, XEP-0085 ("Server Handling of Notifications")
        for standalone chat states, XEP-0334 §4 for the sender's storage hints."""
        stype = message_type(stanza)  # RFC 6121 §5.2.2: a type not understood is "normal"
        if stype == "groupchat":
            if not self.store_groupchat:
                return False
        elif stype not in _STORED_TYPES:
            return False
        if stanza.find("no-store", HINTS) is not None:
            return False
        if stanza.find("store", HINTS) is not None:
            return True
        return any(child.name != "thread" and child.xmlns != CHATSTATES
                   and child.xmlns != HINTS for child in stanza.elements())

    def quota(self, user: JID) -> int | None:
        """The account's maximum number of stored messages; None when unlimited."""
        value = self.server.access.evaluate(self.quota_rule, user.local, user.domain, None,
                                            user.domain, default="infinity")
        return value if isinstance(value, int) else None

    async def would_store(self, to: JID, stanza: Element) -> bool:
        """Whether ``store_offline`` would keep ``stanza`` for ``to`` now (worth storing, room
        in the quota), without storing it: mod_amp decides its XEP-0079 "deliver" condition
        on it before the message is stored (§3.3.1, "what the processor would do with the
        message at the moment of receipt")."""
        if not self.worth_storing(stanza):
            return False
        user = to.bare
        limit = self.quota(user)
        return limit is None or await self._stored_count(user, current_batch(user)) < limit

    async def _stored_count(self, user: JID, batch: OfflineBatch | None) -> int:
        """How many messages the account has stored, with those of the batch waiting for
        their write. In a batch, read once: the batch's writes are the only ones to the
        account meanwhile, the account's offline turn being the batch's."""
        if batch is None:
            return await self.store.count_offline(user.domain, user.local or "")
        state = self._batch_state(batch)
        if state.stored is None:
            state.stored = await self.store.count_offline(user.domain, user.local or "")
        return state.stored + len(state.rows)

    def _batch_state(self, batch: OfflineBatch) -> _BatchState:
        state: _BatchState = batch.state.setdefault(self.name, _BatchState())
        return state

    # -- offline_message hook ------------------------------------------------------------------
    async def store_offline(self, stored: bool, frm: JID, to: JID, stanza: Element) -> Any:
        if stored:
            return stored
        if not self.worth_storing(stanza):
            # XEP-0085 ("Server Handling of Notifications"): a standalone chat state is not
            # stored, and an error back would be noise about something ephemeral: it is
            # consumed here (True). Anything else we do not keep goes back to the router,
            # which tells the sender (False).
            return _is_standalone_chat_state(stanza)
        user = to.bare
        assert user.local is not None
        batch = current_batch(user)
        if batch is not None and batch.size > 1:
            # One of several messages the router handles together in the account's offline
            # turn: counted against the quota with those before it, written with them in
            # one INSERT at the end of the batch (``_flush``).
            if not await self._room_for(user, batch):
                return self._over_quota(user, stanza)
            now = time.time()
            self._batch_state(batch).rows.append((self._message(frm, to, stanza, now), stanza))
            batch.defer(self.name, lambda: self._flush(user, batch))
            return True
        async with self._writers.hold(user):
            if not await self._room_for(user, None):
                return self._over_quota(user, stanza)
            await self.store.store_offline(user.domain, user.local,
                                           self._message(frm, to, stanza, time.time()))
        await self._deliver_if_online(user)
        return True

    async def _room_for(self, user: JID, batch: OfflineBatch | None) -> bool:
        limit = self.quota(user)
        return limit is None or await self._stored_count(user, batch) < limit

    def _over_quota(self, user: JID, stanza: Element) -> Stop:
        # XEP-0160 §2 step 3: the sender must hear it. MongooseIM 6.4 answers
        # resource-constraint (RFC 6120 §8.3.3.18: the recipient lacks the resources, type
        # wait: worth retrying later) rather than the service-unavailable XEP-0160 suggests;
        # so do we, and answer here: the hook stops, so mod_offline_stub cannot turn it into
        # a silent drop.
        log.info("offline_quota_exceeded user=%s limit=%s", user, self.quota(user))
        self.server.router.bounce(stanza, StanzaError("resource-constraint", QUEUE_FULL))
        return Stop(True)

    @staticmethod
    def _message(frm: JID, to: JID, stanza: Element, now: float) -> OfflineMessage:
        return OfflineMessage(timestamp=now, from_jid=str(frm), to_jid=str(to),
                              packet=stanza.serialize(ns.CLIENT), expire=_expiry(stanza, now))

    async def _flush(self, user: JID, batch: OfflineBatch) -> None:
        """The batch's messages, in one INSERT (in their order: the ids that
        ``pop_offline`` sorts on follow the rows' order). A failure answers each sender
        internal-server-error, as for a message written alone (the router's)."""
        state = self._batch_state(batch)
        taken, state.rows = state.rows, []
        if not taken:
            return
        assert user.local is not None
        try:
            async with self._writers.hold(user):
                await self.store.store_offline_many(user.domain, user.local,
                                                    [msg for msg, _ in taken])
        except Exception:
            log.exception("offline_store_failed user=%s count=%d", user, len(taken))
            for _, stanza in taken:
                self.server.router.bounce(stanza, StanzaError("internal-server-error"))
            return
        if state.stored is not None:
            state.stored += len(taken)
        if self._available_session(user) is not None:
            state.stored = None  # taken out of storage now: counted again if asked
            await self._deliver_if_online(user)

    async def _deliver_if_online(self, user: JID) -> None:
        session = self._available_session(user)
        if session is not None:
            # The account came online while this message was being written: its initial
            # presence's delivery (``deliver_stored``) may have read storage before the
            # write ended, and the message would wait for the next login. What is stored is
            # delivered now (each stored message is taken from storage once). The router's
            # offline turn for the account is ours already (``_offline_or_error``).
            await self._deliver(session)

    def _available_session(self, user: JID) -> Any:
        """The account's session here that stored messages go to (XEP-0160 §2 step 5: a
        non-negative priority), the highest priority first; None when it has none."""
        sessions = self.server.sessions.available(user)
        return sessions[0] if sessions and sessions[0].priority >= 0 else None

    # -- resend_offline_messages hook -----------------------------------------------------------
    def resend_offline_messages(self, acc: Any, c2s: C2S) -> Any:
        """The session now takes the account's messages: the stored ones go to it first.

        The router's offline turn for the account is reserved here, in the processing of
        the presence, and the storage is read in a task that waits for it (outside a task,
        asyncpg's timeouts fail). Every message routed to the account from now on, to the
        bare JID or to a full JID, waits for the turn and goes out after the stored ones
        (they are older: RFC 6120 §10.1, XEP-0160). Taken in the task's first step
        instead, a message routed before the task ran (the contact's client answered the
        presence at once, or its message was read in the same turn of the loop) overtook
        them; the tasks that run user_available before mod_offline's handler made that
        window longer still."""
        # XEP-0160 §2 step 5: only a resource with non-negative presence gets them.
        if c2s.priority < 0 or c2s.jid is None or not c2s.available:
            return acc
        turn = self.server.router.reserve_offline_turn(c2s.jid.bare)
        task = self.server.spawn(self.deliver_stored(acc, c2s, turn))
        # A task cancelled before its first step (a shutdown) never enters the turn: its
        # place must not hold the account's messages back for ever.
        task.add_done_callback(turn.release)
        return acc

    async def deliver_stored(self, acc: Any, c2s: C2S, turn: Turn | None = None) -> Any:
        """Take the account's offline turn (``turn`` when reserved already) and deliver what
        is stored to ``c2s``."""
        if c2s.priority < 0 or c2s.jid is None or not c2s.available:
            if turn is not None:
                turn.release()
            return acc
        if turn is None:
            turn = self.server.router.reserve_offline_turn(c2s.jid.bare)
        async with turn:
            await self._deliver(c2s)
        return acc

    async def _deliver(self, c2s: C2S) -> None:
        """Take the account's stored messages out of storage and hand them to ``c2s``."""
        if c2s.priority < 0 or c2s.jid is None or not c2s.available:
            return
        user = c2s.jid.bare
        assert user.local is not None
        messages = await self.store.pop_offline(user.domain, user.local)
        if messages and (sm := STREAM_MANAGEMENT.get(c2s)) is not None:
            # XEP-0198: the flood goes out at once, before the client can acknowledge it;
            # it must not end the stream for exceeding buffer_max (the messages would go back
            # to storage, and the next login end the same way).
            sm.allow_burst(len(messages))
        for msg in messages:
            stanza = parse_stored(msg.packet)
            if stanza is None:
                log.error("offline_message_unreadable user=%s from=%s", user, msg.from_jid)
                continue
            stanza.attrs.setdefault("from", msg.from_jid)
            stanza.attrs.setdefault("to", msg.to_jid)
            self._stamp(stanza, user.domain, msg.timestamp)
            # deliver() hands the stanza back to the router if this session has gone away
            # meanwhile (server.undeliverable): it then reaches another resource or storage.
            c2s.deliver(stanza)
        if messages:
            log.debug("offline_delivered user=%s count=%d", c2s.jid, len(messages))

    @staticmethod
    def _stamp(stanza: Element, domain: str, timestamp: float) -> None:
        """XEP-0203 delay, unless we stamped it already (a message stored twice keeps its
        first, true, stamp)."""
        for delay in stanza.find_all("delay", ns.DELAY):
            if delay.attrs.get("from") == domain:
                return
        when = datetime.fromtimestamp(timestamp, UTC)
        # XEP-0082 §3.2 DateTime, UTC, millisecond precision.
        stamp = f"{when:%Y-%m-%dT%H:%M:%S}.{when.microsecond // 1000:03d}Z"
        stanza.add("delay", ns.DELAY, {"from": domain, "stamp": stamp}, "Offline Storage")


def _expiry(stanza: Element, now: float) -> float | None:
    """When a stored message stops being worth delivering: ``now`` plus the sender's XEP-0023
    ``<x xmlns='jabber:x:expire' seconds='N'/>`` (N > 0, as MongooseIM 6.4 reads it; the
    protocol is obsolete but clients still send it); None: never. Only the storage path
    looks, so a message delivered at once pays nothing."""
    x = stanza.find("x", X_EXPIRE)
    if x is None:
        return None
    try:
        seconds = int(x.attrs.get("seconds", ""))
    except ValueError:
        return None
    return now + seconds if seconds > 0 else None


class _BatchState:
    """What mod_offline keeps for a batch of the router (suricate/core/offline_batch.py)."""

    __slots__ = ("stored", "rows")

    def __init__(self) -> None:
        #: The account's stored messages, once counted (None: not yet).
        self.stored: int | None = None
        #: The batch's messages waiting for their write, in order.
        self.rows: list[tuple[OfflineMessage, Element]] = []


def _is_standalone_chat_state(stanza: Element) -> bool:
    children = list(stanza.elements())
    return any(c.xmlns == CHATSTATES for c in children) and all(
        c.xmlns in (CHATSTATES, HINTS) or c.name == "thread" for c in children)


def parse_stored(packet: str) -> Element | None:
    """A stanza serialized by ``store_offline`` back into an Element; None if it cannot be read."""
    try:
        elements = parse_fragment(packet, ns.CLIENT)
    except XMLStreamError:
        return None
    return elements[0] if elements else None


def offline_module(server: Any, domain: str) -> ModOffline | None:
    """The mod_offline instance serving ``domain`` (None where offline storage is off)."""
    module = server.module_for("mod_offline", domain)
    return module if isinstance(module, ModOffline) else None

"""mod_inbox: MongooseIM's inbox (``erlang-solutions.com:xmpp:inbox:0``, close to XEP-0430).

An account's inbox is one entry per conversation (a peer's bare JID, or a room's with
``groupchat = ["muc"]`` or ``["muclight"]``): the last message, its time, the number of unread messages, the box
it is in and until when it is muted. The message path only records what changed in memory
(``Change``, merged per entry); the writer turns the changes of a tick (``rdbms``) or of a
second (``rdbms_async``) into one upsert per entry, in one transaction, off the message path.
Anything that reads the inbox writes what is pending first.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from suricate.config.modules_spec import UNAVAILABLE_BACKENDS, iqdisc
from suricate.config.spec import (
    DEFAULTS,
    INVALID,
    Bool,
    Context,
    Int,
    IntOrInfinity,
    ListOf,
    OneOf,
    Option,
    Section,
    Spec,
    Str,
)
from suricate.core import hooks as H
from suricate.core.iq import IqRequest
from suricate.core.module import GraphQLCategory, Module, PersonalData
from suricate.instrument import Instrumentation
from suricate.instrument.events import ASYNC_POOL_REQUEST, SPIRAL, declare
from suricate.jid import JID, InvalidJID
from suricate.modules.mod_blocking import drops_on_delivery
from suricate.modules.mod_inbox.protocol import (
    CONVERSATION,
    INBOX,
    RESERVED_BOXES,
    RSM,
    add_properties,
    conversation_form,
    now_micros,
    parse_properties,
    parse_query,
    query_form,
    stamp,
)
from suricate.modules.mod_inbox.store import Change, Entry, InboxStore
from suricate.modules.mod_privacy import denies_message_delivery
from suricate.protocol.errors import StanzaError
from suricate.protocol.stanza import message_type
from suricate.xml import ns
from suricate.xml.element import Element
from suricate.xml.parser import XMLStreamError, parse_fragment

if TYPE_CHECKING:
    from suricate.core.c2s import C2S

log = logging.getLogger("suricate.mod_inbox")

MARKERS = "urn:xmpp:chat-markers:0"  # XEP-0333
HINTS = "urn:xmpp:hints"  # XEP-0334
MUC_LIGHT_AFFS = "urn:xmpp:muclight:0#affiliations"  # MUC Light protocol §5.4
MUC_USER = "http://jabber.org/protocol/muc#user"  # XEP-0045 §7.5: marks a room's PMs
SID = "urn:xmpp:sid:0"  # XEP-0359
_MARKER_NAMES = ("received", "displayed", "acknowledged")
#: 6.4's text for a conversation the account does not have (item-not-found).
_NOT_FOUND = "Entry not found"
#: A conversation's new properties for the account's sessions on other nodes (docs/cluster.md
#: "Casts").
PROPERTIES_CAST = "mod_inbox.properties"

#: How long the writer gathers changes before writing them: ``rdbms`` writes at once in
#: MongooseIM, here within 50 ms (the message path cannot wait for the database: it gathers,
#: and a busy conversation costs one upsert per interval, not one per message);
#: ``rdbms_async`` gathers for a second, as MongooseIM's async writer does.
FLUSH_SECONDS = {"rdbms": 0.05, "rdbms_async": 1.0}

UPDATED = declare("mod_inbox_updated", ("host_type",), {"count": SPIRAL},
                  "Inbox entries written (one per conversation per flush)")
QUERIED = declare("mod_inbox_queried", ("host_type",), {"count": SPIRAL, "size": SPIRAL},
                  "Inbox queries and the entries they returned")


class _BoxName(Spec):
    def normalize(self, value: Any, path: str, ctx: Context) -> Any:
        result = Str().normalize(value, path, ctx)
        if result is INVALID:
            return result
        # MongooseIM: inbox, archive and bin always exist; "all" means every box in a query.
        if result in (*RESERVED_BOXES, "all"):
            ctx.error(path, f"'{result}' is a reserved box name (inbox, archive and bin always "
                            "exist; all means every box)")
            return INVALID
        return result

    def describe(self) -> str:
        return "a box name"


OPTIONS = Section(
    {
        "backend": Option(
            OneOf(["rdbms", "rdbms_async"], UNAVAILABLE_BACKENDS,
                  "backend '{value}' is not available in this version of Suricate"),
            "rdbms",
            "rdbms writes the changes of each 50 ms, rdbms_async of each second (fewer "
            "writes); a crash loses at most that interval."),
        "async_writer": Option(
            Section({"pool_size": Option(Int(min=0), 2 * (os.cpu_count() or 1),
                                         "MongooseIM's number of inbox writers.",
                                         default_doc="2 x CPU cores")}),
            DEFAULTS, "MongooseIM 6.4's pool of inbox writers.", inert=True,
            inert_reason="one writer per process merges the changes of each entry and "
                         "writes them in one transaction per interval (backend)"),
        "reset_markers": Option(
            ListOf(OneOf(list(_MARKER_NAMES)), unique=True), ["displayed"],
            "XEP-0333 markers that, sent by the owner, reset the unread count."),
        "groupchat": Option(
            ListOf(OneOf(["muclight", "muc"]), unique=True), ["muclight"],
            "Group chats that have inbox entries: muclight (mod_muc_light rooms, an entry "
            "per member), muc (mod_muc rooms, an entry per occupant)."),
        "aff_changes": Option(Bool(), True, "A MUC Light notification that a member joined, "
                                            "changed role or left updates that member's "
                                            "entry of the room (an unread message)."),
        "remove_on_kicked": Option(Bool(), True, "A member removed from a MUC Light room (or "
                                                 "whose room is destroyed) loses its entry "
                                                 "of the room."),
        "boxes": Option(ListOf(_BoxName(), unique=True), [],
                        "Custom boxes besides inbox, archive and bin."),
        "bin_ttl": Option(Int(min=0, unit="days"), 30,
                          "Age (of the last message) after which an entry of the bin is "
                          "removed by the cleaner."),
        "bin_clean_after": Option(Int(min=0, unit="hours"), 1,
                                  "How often the bin cleaner runs (0: never)."),
        "delete_domain_limit": Option(IntOrInfinity(min=1), None,
                                      "Inbox rows erased per transaction when a domain is "
                                      "removed (\"infinity\": all in the domain's one "
                                      "transaction).", default_doc='"infinity"'),
        "max_result_limit": Option(IntOrInfinity(min=1), None,
                                   "Largest page of an inbox query; a larger RSM max is capped "
                                   "(\"infinity\": no cap).", default_doc='"infinity"'),
        "iqdisc": iqdisc("no_queue"),
    },
    doc="MongooseIM's inbox (erlang-solutions.com:xmpp:inbox:0): conversations with their last "
        "message and unread count.",
)


def _marker(stanza: Element) -> tuple[str, str] | None:
    """(type, id) of a XEP-0333 marker in the message, if any."""
    for child in stanza.children:
        if isinstance(child, Element) and child.xmlns == MARKERS \
                and child.name in _MARKER_NAMES:
            return child.name, child.attrs.get("id", "")
    return None


def _kept_message(stanza: Element) -> bool:
    """A message of the conversation: it has a body, and no XEP-0334 hint that it must not be
    stored (``no-store``, ``no-permanent-store``, §4): the inbox keeps the message, which
    offline storage and the archive would not (MongooseIM 6.4's is_archivable_message), and a
    client could then never fetch what the entry counts as unread."""
    body = False
    for child in stanza.children:  # one pass, no generator: on the message path
        if isinstance(child, Element):
            name = child.name
            if name == "body":
                body = True
            elif (name == "no-store" or name == "no-permanent-store") and child.xmlns == HINTS:
                return False
    return body


def _stanza_id(stanza: Element, by_jid: JID) -> str:
    """The XEP-0359 stanza-id ``by_jid`` gave the message, or "": a room's (the same in every
    copy), or the one the account's archive gave (mod_mam adds it before the inbox sees the
    message, by the account's bare JID)."""
    by = str(by_jid)
    for child in stanza.children:
        if isinstance(child, Element) and child.name == "stanza-id" and child.xmlns == SID \
                and child.attrs.get("by") == by:
            return child.attrs.get("id", "")
    return ""


def _handed_on(stanza: Element, domain: str) -> bool:
    """A message this server already delivered to the account and now hands on elsewhere:
    it carries the XEP-0203 delay the server adds (from the account's domain) when a
    session ends with it unacknowledged (XEP-0198 §5) or when offline storage keeps it. It
    was counted when it first reached the account."""
    for c in stanza.children:
        if isinstance(c, Element) and c.name == "delay" and c.xmlns == ns.DELAY \
                and c.attrs.get("from") == domain:
            return True
    return False


def _delayed(stanza: Element) -> bool:
    return any(isinstance(c, Element) and c.name == "delay" and c.xmlns == ns.DELAY
               for c in stanza.children)


def merge(old: Change, new: Change) -> None:
    """Apply ``new`` (a later change of the same entry) to ``old``, so that writing ``old`` once
    has the effect of writing both in order."""
    if new.remove:
        # Whatever was pending goes with the entry; only what ``new`` holds follows it.
        old.remove, old.reset, old.reset_if, old.unread = True, False, None, new.unread
        old.content, old.msg_id, old.timestamp = new.content, new.msg_id, new.timestamp
        old.stanza_id = new.stanza_id
        return
    if new.reset:
        old.reset, old.reset_if, old.unread = True, None, new.unread
    elif new.reset_if is not None:
        if old.content is not None:
            # The marker names the message now last (reset) or an older one (keep the count):
            # by its id (MongooseIM 6.4) or by its stanza-id (what group chat clients send).
            if new.reset_if in (old.msg_id, old.stanza_id):
                old.reset, old.reset_if, old.unread = True, None, 0
        elif not old.reset:
            old.reset_if = new.reset_if  # conditional on the stored last message
        old.unread += new.unread
    else:
        old.unread += new.unread
    if new.content is not None:
        old.content, old.msg_id, old.timestamp = new.content, new.msg_id, new.timestamp
        old.stanza_id = new.stanza_id


class InboxWriter:
    """Changes per entry, merged in memory and written in batches (never two at once, so an
    entry's changes land in order)."""

    def __init__(self, store: InboxStore, delay: float, spawn: Any,
                 on_written: Any = None, instrument: Instrumentation | None = None) -> None:
        self.store, self.delay, self.spawn, self.on_written = store, delay, spawn, on_written
        # 6.4's inbox pool aggregates changes per entry and makes one request per entry:
        # async_pool_request counts the entries each batch writes.
        self.instrument = instrument if instrument is not None else Instrumentation()
        self.pending: dict[tuple[str, str, str], Change] = {}
        self._lock = asyncio.Lock()
        self._scheduled = False

    def add(self, change: Change) -> None:
        key = (change.server, change.username, change.remote)
        old = self.pending.get(key)
        if old is None:
            self.pending[key] = change
            self.schedule()
        else:
            merge(old, change)

    def schedule(self) -> None:
        """Make sure a batch is written within ``delay`` (called when an entry has a first
        pending change)."""
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_later(self.delay, self._kick)

    def _kick(self) -> None:
        self._scheduled = False
        if self.pending:
            self.spawn(self.flush())

    async def flush(self) -> None:
        async with self._lock:
            if not self.pending:
                return
            batch, self.pending = self.pending, {}
            for change in batch.values():
                if isinstance(change.content, Element):
                    change.content = change.content.serialize(ns.CLIENT)
            if self.instrument.enabled:
                per_domain: dict[str, int] = {}
                for server, _, _ in batch:
                    per_domain[server] = per_domain.get(server, 0) + 1
                for server, count in per_domain.items():
                    self.instrument.emit(ASYNC_POOL_REQUEST,
                                         {"host_type": server, "pool_id": "inbox"},
                                         {"count": count})
            try:
                await self.store.apply(list(batch.values()))
            except Exception:
                log.exception("inbox_write_failed entries=%d (retried)", len(batch))
                # Put the batch back before what came meanwhile, and try again later.
                for key, change in batch.items():
                    newer = self.pending.get(key)
                    if newer is not None:
                        merge(change, newer)
                    self.pending[key] = change
                if not self._scheduled:
                    self._scheduled = True
                    asyncio.get_running_loop().call_later(max(self.delay, 1.0), self._kick)
                return
            if self.on_written is not None:
                self.on_written(batch)

    def discard(self, server: str, user: str) -> None:
        for key in [k for k in self.pending if k[0] == server and k[1] == user]:
            del self.pending[key]


class ModInbox(Module):
    name = "mod_inbox"
    options = OPTIONS
    store_class = InboxStore
    store: InboxStore
    graphql = GraphQLCategory("suricate.modules.mod_inbox.graphql")
    xeps = ("0430",)
    hooks = (
        # After mod_mam (75) put the sender's stanza-id, before carbons are made (80).
        (H.USER_SEND_PACKET, "outgoing", 78),
        # After mod_mam (50) added the recipient's stanza-id.
        (H.FILTER_LOCAL_PACKET, "incoming", 60),
        # After mod_mam (40), before mod_offline (50) stores it.
        (H.OFFLINE_MESSAGE, "incoming_offline", 45),
        (H.REMOVE_USER, "remove_inbox", 50),
        (H.MUC_LIGHT_TO_MEMBER, "muclight_to_member", 50),
        (H.MUC_MESSAGE_BROADCAST, "muc_broadcast", 50),
    )
    iq_handlers = (("sm", INBOX, "iq_inbox"), ("sm", CONVERSATION, "iq_conversation"))
    features = (INBOX,)

    def __init__(self, server: Any, opts: Mapping[str, Any]) -> None:
        super().__init__(server, opts)
        self.reset_markers = frozenset(opts["reset_markers"])
        self.muc = "muc" in opts["groupchat"]
        self.muclight = "muclight" in opts["groupchat"]
        self.aff_changes: bool = opts["aff_changes"]
        self.remove_on_kicked: bool = opts["remove_on_kicked"]
        self.boxes: tuple[str, ...] = tuple(opts["boxes"])
        self.max_limit: int | None = opts["max_result_limit"]
        self.writer: InboxWriter | None = None
        #: The groupchat message ids each account sent to each room and whose reflection
        #: (XEP-0045 §7.4) has not come back: the account's own messages, not unread ones.
        self._own_groupchat: dict[tuple[JID, JID], list[str]] = {}
        #: (account, room, message id) of the room messages counted lately: a room delivers
        #: one message to each session of an occupant (XEP-0045 multi-session), the inbox
        #: is the account's and counts it once. Oldest first, bounded.
        self._room_copies: dict[tuple[JID, JID, str], None] = {}
        self._cleaner: asyncio.Task[Any] | None = None

    async def start(self) -> None:
        delay = FLUSH_SECONDS[self.opts["backend"]]
        self.store.limit_domain_deletes(self.opts["delete_domain_limit"])
        self.writer = InboxWriter(self.store, delay, self.server.spawn, self._written,
                                  self.server.instrument)
        if self.opts["bin_clean_after"] > 0:
            self._cleaner = asyncio.get_running_loop().create_task(self._clean_bin())
        self.server.cluster.on(PROPERTIES_CAST, self._properties_from_elsewhere)

    async def stop(self) -> None:
        self.server.cluster.off(PROPERTIES_CAST)
        if self._cleaner is not None:
            self._cleaner.cancel()
        if self.writer is not None:
            await self.writer.flush()  # nothing pending is lost on a clean stop

    def _tell_resources_here(self, owner: JID, notice: Element) -> None:
        """The properties ``notice`` to each of this node's sessions of ``owner``."""
        for session in self.server.sessions.resources(owner):
            copy = Element(notice.name, notice.xmlns, {**notice.attrs, "to": str(session.jid)},
                           list(notice.children))  # the children are only read from here
            self.server.router.route(owner, session.jid, copy)

    def _properties_from_elsewhere(self, bare: JID, notice: Element,
                                   args: tuple[str, ...]) -> None:
        self._tell_resources_here(bare, notice)

    async def _clean_bin(self) -> None:
        period = self.opts["bin_clean_after"] * 3600
        while True:
            await asyncio.sleep(period)
            try:
                removed = await self.store.empty_global_bin(self.bin_bound(None))
                if removed:
                    log.info("inbox_bin_cleaned entries=%d", removed)
            except Exception:
                log.exception("inbox_bin_clean_failed")

    def bin_bound(self, days: int | None) -> int:
        """Entries of the bin older than this (microseconds) are removed: ``days`` given, else
        ``bin_ttl``."""
        ttl = self.opts["bin_ttl"] if days is None else days
        # GraphQL's Int goes to 2^31 days: bounded so that it stays a 64-bit integer for the
        # database (older than year 1 is older than anything stored).
        return max(now_micros() - ttl * 86_400_000_000, -(2**62))

    def _written(self, batch: Mapping[tuple[str, str, str], Change]) -> None:
        instrument = self.server.instrument
        if instrument.enabled:
            for server, _, _ in batch:
                instrument.emit(UPDATED, {"host_type": server}, {"count": 1})

    async def flush(self) -> None:
        if self.writer is not None:
            await self.writer.flush()

    # -- the message path -------------------------------------------------------------------
    def _message(self, owner: JID, remote: JID, stanza: Element, incoming: bool,
                 attrs: dict[str, str] | None = None, stanza_id: str = "") -> None:
        """A message of the conversation: updates the entry's pending change in place (one
        dict lookup; the change is written by the next batch). ``attrs``: the message's
        attributes as kept, when they are not the stanza's; ``stanza_id``: its XEP-0359
        stanza-id as the account knows it, which a marker may name instead of its id."""
        writer = self.writer
        assert writer is not None and owner.local is not None
        key = (owner.domain, owner.local, str(remote))
        change = writer.pending.get(key)
        if change is None:
            change = writer.pending[key] = Change(*key)
            writer.schedule()
        # A snapshot of the top level (later hooks add or remove children of the stanza, like
        # mod_mam's stanza-ids, but do not change the children themselves): serialized when
        # written, once per conversation per batch however many messages came.
        change.content = Element(stanza.name, stanza.xmlns,
                                 dict(stanza.attrs) if attrs is None else attrs,
                                 list(stanza.children))
        change.msg_id = stanza.attrs.get("id", "")
        change.stanza_id = stanza_id
        change.timestamp = time.time_ns() // 1000
        if incoming:
            change.unread += 1
        else:
            # The inbox extension, "Read": a message by oneself reads the conversation.
            change.reset, change.reset_if, change.unread = True, None, 0

    def _marker_sent(self, owner: JID, remote: JID, msg_id: str) -> None:
        assert self.writer is not None and owner.local is not None
        self.writer.add(Change(owner.domain, owner.local, str(remote), reset_if=msg_id))

    def outgoing(self, stanza: Element | None, c2s: C2S) -> Element | None:
        if stanza is None or stanza.name != "message":
            return stanza
        to_attr = stanza.attrs.get("to")
        if not to_attr:
            return stanza
        try:
            peer = JID.parse(to_attr).bare
        except (InvalidJID, ValueError):
            return stanza
        owner = c2s.jid.bare
        if peer == owner:
            return stanza
        stype = message_type(stanza)  # RFC 6121 §5.2.2: a type not understood is "normal"
        if stype == "groupchat":
            light = self._muclight_room(peer)
            if not (self.muclight if light else self.muc):
                return stanza
            if _kept_message(stanza):
                if not light:
                    # A MUC Light room sends the message back to its sender as to every
                    # member: the sender's entry is set then (muclight_to_member).
                    self._message(owner, peer, stanza, False)
                    sent = self._own_groupchat.setdefault((owner, peer), [])
                    sent.append(stanza.attrs.get("id", ""))
                    del sent[:-32]  # a reflection that never came back is forgotten
                return stanza
            marker = _marker(stanza)
            if marker is not None and marker[0] in self.reset_markers and marker[1]:
                self._marker_sent(owner, peer, marker[1])  # XEP-0333 in a room, as in a chat
            return stanza
        if stype not in ("chat", "normal"):
            return stanza
        if _kept_message(stanza):
            self._message(owner, peer, stanza, False)
            return stanza
        marker = _marker(stanza)
        # XEP-0333 §4: a marker names the message it marks (one without an id marks nothing).
        if marker is not None and marker[0] in self.reset_markers and marker[1]:
            # XEP-0333: the owner marked a message; it read the conversation if that message
            # is the last one of the entry.
            self._marker_sent(owner, peer, marker[1])
        return stanza

    def incoming(self, stanza: Element | None, frm: JID, to: JID,
                 sessions: list[Any]) -> Element | None:
        # A message the account blocks is dropped on delivery (XEP-0191 §3.3), as is one its
        # privacy list denies in every session it reaches (XEP-0016 §2.9): no entry, no
        # unread count for what the account never gets.
        if stanza is not None and not drops_on_delivery(sessions, frm) \
                and not denies_message_delivery(sessions, frm):
            self._incoming(stanza, frm, to)
        return stanza

    async def incoming_offline(self, stored: bool, frm: JID, to: JID, stanza: Element) -> bool:
        if not stored:
            self._incoming(stanza, frm, to)
        return stored

    def _incoming(self, stanza: Element, frm: JID, to: JID) -> None:
        if stanza.name != "message" or not _kept_message(stanza):
            return
        owner, remote = to.bare, frm.bare
        if owner == remote or owner.local is None:
            return
        stype = message_type(stanza)  # RFC 6121 §5.2.2: a type not understood is "normal"
        if stype == "groupchat":
            if not self.muc or _delayed(stanza) or self._muclight_room(remote) \
                    or self._muc_room(remote):
                # Room history sent on join is not news; a MUC Light room's messages come
                # once per member through muclight_to_member, a mod_muc room's of this
                # server once per occupant through muc_broadcast (on the room's node), not
                # once per session here.
                return
            stanza_id = _stanza_id(stanza, remote)
            if self._another_copy(owner, remote, stanza_id):
                return
            sent = self._own_groupchat.get((owner, remote))
            msg_id = stanza.attrs.get("id", "")
            if sent and msg_id in sent:
                sent.remove(msg_id)
                if not sent:
                    del self._own_groupchat[(owner, remote)]
                return  # the reflection of the account's own message
            # XEP-0333 1.0 in a group chat: a marker names the message by this stanza-id.
            self._message(owner, remote, stanza, True, stanza_id=stanza_id)
            return
        if stype in ("chat", "normal"):
            if _handed_on(stanza, owner.domain):
                return
            if stanza.find("x", MUC_USER) is not None and self._another_copy(
                    owner, remote, stanza.attrs.get("id", "")):
                return  # a room's private message, already counted for another session
            # The XEP-0359 stanza-id mod_mam gave it in the account's archive (by its bare
            # JID): a client that knows messages by their archive id marks them with it.
            self._message(owner, remote, stanza, True, stanza_id=_stanza_id(stanza, owner))

    def _another_copy(self, owner: JID, room: JID, msg_id: str) -> bool:
        """The room's message ``msg_id`` reached another session of ``owner`` already (the
        first copy is remembered; without an id nothing can be told apart)."""
        if not msg_id:
            return False
        key = (owner, room, msg_id)
        if key in self._room_copies:
            return True
        self._room_copies[key] = None
        if len(self._room_copies) > 4096:
            del self._room_copies[next(iter(self._room_copies))]
        return False

    # -- mod_muc rooms of this server (groupchat = ["muc"]) ----------------------------------
    def _muc_room(self, room: JID) -> bool:
        muc = self.server.modules.get("mod_muc")
        return muc is not None and room.domain in getattr(muc, "services", ())

    def muc_broadcast(self, acc: None, frm: JID, sender: JID | None, occupants: list[JID],
                      stanza: Element) -> None:
        """A room of this server broadcast a message: an unread message in the entry of the
        room of each occupant but its author, once per account however many sessions it has
        in the room and on whichever nodes (MongooseIM's update_inbox_for_muc). An account
        whose sessions here block the sender (XEP-0191) or deny it by their privacy list
        (XEP-0016) does not count it, as a chat message; one with sessions on other nodes
        only is not asked."""
        if not self.muc or not _kept_message(stanza):
            return acc
        room = frm.bare
        author = sender.bare if sender is not None else None
        stanza_id = _stanza_id(stanza, room)
        server = self.server
        for occupant in occupants:
            if occupant == author or occupant.local is None \
                    or not server.is_local_domain(occupant.domain) \
                    or not self.serves_domain(occupant.domain):
                continue
            sessions = server.sessions.resources(occupant)
            if sessions and (drops_on_delivery(sessions, frm)
                             or denies_message_delivery(sessions, frm)):
                continue
            self._message(occupant, room, stanza, True,
                          attrs={**stanza.attrs, "to": str(occupant)}, stanza_id=stanza_id)
        return acc

    # -- MUC Light rooms (groupchat = ["muclight"]) ------------------------------------------
    def _muclight_room(self, room: JID) -> bool:
        """A room of this server's MUC Light service (its messages reach the inbox through
        the muc_light_to_member hook, once per member)."""
        light = self.server.modules.get("mod_muc_light")
        return light is not None and room.domain in getattr(light, "services", ())

    def muclight_to_member(self, acc: None, frm: JID, member: JID, stanza: Element) -> None:
        """A MUC Light room sends a member a message or a notification (MongooseIM's
        mod_inbox_muclight): a member's message with a body is unread for the others and
        reads the room for its sender; a notification naming this member (it joined, its
        affiliation changed, it was removed or the room destroyed) updates its entry with
        ``aff_changes``, and a removal takes the entry away with ``remove_on_kicked``."""
        if not self.muclight or stanza.attrs.get("type") != "groupchat"                 or member.local is None:
            return acc
        room = frm.bare
        if frm.resource is not None:  # room@service/sender-bare-jid: a member's message
            if not _kept_message(stanza) or _marker(stanza) is not None:
                return acc  # chat states and markers are not messages of the conversation
            self._message(member, room, stanza, frm.resource != str(member),
                          _as_sent(stanza, frm, member), _stanza_id(stanza, room))
            return acc
        affiliation = _affiliation_of(stanza, str(member))
        if affiliation is None:
            return acc  # a configuration change, or other members' affiliations
        if self.aff_changes:
            self._message(member, room, stanza, True, _as_sent(stanza, frm, member),
                          _stanza_id(stanza, room))
        if affiliation == "none" and self.remove_on_kicked:
            assert self.writer is not None
            self.writer.add(Change(member.domain, member.local, str(room), remove=True))
        return acc

    # -- account removal ---------------------------------------------------------------------
    async def remove_inbox(self, acc: Any, jid: JID) -> Any:
        owner = jid.bare
        assert owner.local is not None
        if self.writer is not None:
            async with self.writer._lock:  # a batch being written goes first
                self.writer.discard(owner.domain, owner.local)
        await self.store.remove_inbox(owner.domain, owner.local)
        for key in [k for k in self._own_groupchat if k[0] == owner]:
            del self._own_groupchat[key]
        return acc

    async def personal_data(self, jid: JID) -> list[PersonalData]:
        await self.flush()
        assert jid.local is not None
        entries = await self.store.all_entries(jid.domain, jid.local)
        # MongooseIM 6.4's header.
        return [PersonalData("inbox", ("jid", "content", "unread_count", "timestamp"),
                             [(e.remote, e.content, e.unread, stamp(e.timestamp))
                              for e in entries])]

    # -- IQs -------------------------------------------------------------------------------------
    def _owner(self, iq: IqRequest) -> JID:
        owner = iq.to.bare
        if iq.frm.bare != owner:
            raise StanzaError("forbidden", "only the account itself reads its inbox")
        return owner

    async def iq_inbox(self, iq: IqRequest) -> Element | None:
        owner = self._owner(iq)
        name = iq.payload.name
        if name == "query" and iq.type == "get":
            return query_form(self.boxes)
        if name == "inbox" and iq.type == "set":
            return await self._query(iq, owner)
        if name == "empty-bin" and iq.type == "set":
            await self.flush()
            assert owner.local is not None
            removed = await self.store.empty_user_bin(owner.domain, owner.local, None)
            # 6.4 answers the number in a <num/> child; the attribute is Suricate's earlier
            # answer, kept for the clients that read it.
            answer = Element("empty-bin", INBOX, {"num": str(removed)})
            answer.add("num", INBOX, text=str(removed))
            return answer
        raise StanzaError("bad-request", "expected an <inbox/> set or a <query/> get")

    async def _query(self, iq: IqRequest, owner: JID) -> Element:
        assert owner.local is not None
        q = parse_query(iq.payload, self.boxes)
        limit = q.max
        if self.max_limit is not None:
            limit = self.max_limit if limit is None else min(limit, self.max_limit)
        await self.flush()
        entries = await self.store.query(owner.domain, owner.local, q.filters, limit)
        totals = await self.store.totals(owner.domain, owner.local, q.filters)
        query_id = q.query_id if q.query_id is not None else iq.stanza.attrs.get("id")
        now = now_micros()
        for entry in entries:
            self.server.router.route(owner, iq.frm, self._result(owner, iq.frm, entry,
                                                                 query_id, now))
        fin = Element("fin", INBOX)
        fin.add("count", INBOX, text=str(totals.count))
        fin.add("unread-messages", INBOX, text=str(totals.unread_messages))
        fin.add("active-conversations", INBOX, text=str(totals.active_conversations))
        # XEP-0059 §2: where the page starts and ends, to ask for the next with <before/> or
        # <after/> (the entries' times, in the query's order); an empty page has an empty
        # <set/> (as 6.4's), which tells a client paging on that it reached the end.
        rsm = fin.add("set", RSM)
        if entries:
            rsm.add("first", RSM, text=stamp(entries[0].timestamp))
            rsm.add("last", RSM, text=stamp(entries[-1].timestamp))
        if self.server.instrument.enabled:
            self.server.instrument.emit(QUERIED, {"host_type": owner.domain},
                                        {"count": 1, "size": len(entries)})
        return fin

    def _result(self, owner: JID, to: JID, entry: Entry, query_id: str | None,
                now: int) -> Element:
        msg = Element("message", ns.CLIENT, {"from": str(owner), "to": str(to),
                                             "id": secrets.token_hex(8)})
        attrs = {"unread": str(entry.unread)}
        if query_id is not None:
            attrs["queryid"] = query_id
        result = msg.add("result", INBOX, attrs)
        result.append(_forwarded(entry))
        add_properties(result, INBOX, entry, now, read=True)
        return msg

    async def iq_conversation(self, iq: IqRequest) -> Element | None:
        owner = self._owner(iq)
        assert owner.local is not None
        payload = iq.payload
        jid_attr = payload.attrs.get("jid")
        if payload.name == "query" and iq.type == "get" and jid_attr is None:
            return conversation_form(self.boxes)
        if payload.name not in ("query", "reset") or jid_attr is None:
            raise StanzaError("bad-request", "jid-required")  # 6.4's text
        try:
            remote = str(JID.parse(jid_attr).bare)
        except (InvalidJID, ValueError):
            raise StanzaError("jid-malformed", f"not a JID: {jid_attr}") from None
        await self.flush()
        if payload.name == "reset":  # the deprecated reset: read, nothing else
            if iq.type != "set":
                raise StanzaError("bad-request")
            if not await self.store.set_properties(owner.domain, owner.local, remote,
                                                   box=None, muted_until=None, read=True):
                raise StanzaError("item-not-found", _NOT_FOUND)
            return Element("reset", CONVERSATION)
        if iq.type == "get":
            entry = await self.store.get(owner.domain, owner.local, remote)
            if entry is None:
                raise StanzaError("item-not-found", _NOT_FOUND)
            result = Element("query", CONVERSATION, {"jid": remote})  # as 6.4's
            if payload.attrs.get("complete") in ("true", "1"):
                result.append(_forwarded(entry))
            add_properties(result, CONVERSATION, entry, now_micros())
            return result
        props = parse_properties(payload, self.boxes)
        now = now_micros()
        muted_until = None
        if props.mute_seconds is not None:
            muted_until = 0 if props.mute_seconds == 0 else now + props.mute_seconds * 1_000_000
        if not await self.store.set_properties(owner.domain, owner.local, remote, box=props.box,
                                               muted_until=muted_until, read=props.read):
            raise StanzaError("item-not-found", _NOT_FOUND)
        entry = await self.store.get(owner.domain, owner.local, remote)
        assert entry is not None
        # The extension's "Setting properties": every resource of the account learns the new
        # state (one message per resource: the account's bare JID could reach fewer), and the
        # requester gets the IQ result with it.
        iq_id = iq.stanza.attrs.get("id", "")
        notice = Element("message", ns.CLIENT, {"from": str(owner), "id": iq_id})
        # 6.4's notice names the request: queryid, the query's or else the IQ's id.
        add_properties(notice.add("x", CONVERSATION, {
            "jid": remote, "queryid": payload.attrs.get("queryid", iq_id)}),
            CONVERSATION, entry, now)
        self._tell_resources_here(owner, notice)
        # The account's sessions on other nodes learn it from theirs (a cast).
        self.server.cluster.cast(owner, PROPERTIES_CAST, notice)
        result = Element("query", CONVERSATION, {"jid": remote})
        add_properties(result, CONVERSATION, entry, now)
        return result


def _as_sent(stanza: Element, frm: JID, member: JID) -> dict[str, str]:
    """The attributes of a room's message as the member gets it: the room addresses each copy
    when it sends it, after the muc_light_to_member hook."""
    return {**stanza.attrs, "from": str(frm), "to": str(member)}


def _affiliation_of(stanza: Element, member: str) -> str | None:
    """The affiliation a MUC Light notification gives ``member`` (§5.4: a
    ``<x xmlns='...#affiliations'>`` with ``<user affiliation='...'>jid</user>`` items), or
    None when it does not name the member."""
    for x in stanza.children:
        if isinstance(x, Element) and x.name == "x" and x.xmlns == MUC_LIGHT_AFFS:
            for user in x.children:
                if isinstance(user, Element) and user.name == "user" \
                        and (user.text or "").strip() == member:
                    return user.attrs.get("affiliation")
    return None


def _forwarded(entry: Entry) -> Element:
    forwarded = Element("forwarded", ns.FORWARD)
    forwarded.add("delay", ns.DELAY, {"stamp": stamp(entry.timestamp)})
    try:
        parsed = parse_fragment(entry.content, ns.CLIENT)
    except XMLStreamError:
        parsed = []
    if parsed:
        forwarded.append(parsed[0])
    else:
        log.error("inbox_content_unreadable remote=%s", entry.remote)
        forwarded.append(Element("message", ns.CLIENT))
    return forwarded


def inbox_module(server: Any) -> ModInbox | None:
    module = server.modules.get("mod_inbox")
    return module if isinstance(module, ModInbox) else None


__all__ = ["ModInbox", "inbox_module", "merge"]

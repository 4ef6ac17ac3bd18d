"""mod_smart_markers: MongooseIM's smart markers (``esl:xmpp:smart-markers:0``).

The latest XEP-0333 chat marker an account sent in each conversation (a peer or a room) and
thread is kept, so that a client coming back learns where it (and its peers) left off. Markers
are taken from what local accounts send (``user_send_packet``), gathered in memory per key and
written in one transaction off the message path; a query writes what is pending first.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from suricate.config.modules_spec import UNAVAILABLE_BACKENDS, iqdisc
from suricate.config.spec import DEFAULTS, Bool, Int, OneOf, Option, Section
from suricate.core import hooks as H
from suricate.core.iq import IqRequest
from suricate.core.module import Module, PersonalData
from suricate.jid import JID, InvalidJID
from suricate.modules.mod_inbox.protocol import now_micros, stamp
from suricate.modules.mod_mam.query import parse_stamp
from suricate.modules.mod_smart_markers.store import Marker, SmartMarkersStore
from suricate.protocol.errors import StanzaError
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.core.c2s import C2S

log = logging.getLogger("suricate.mod_smart_markers")

SMART_MARKERS = "esl:xmpp:smart-markers:0"
MARKERS = "urn:xmpp:chat-markers:0"  # XEP-0333
_TYPES = ("received", "displayed", "acknowledged")
#: How long the writer gathers markers before writing them: ``rdbms`` writes at once in
#: MongooseIM, here within 50 ms (the message path cannot wait for the database: it gathers,
#: and a busy conversation costs one upsert per interval, not one per message);
#: ``rdbms_async`` gathers for a second, as MongooseIM's async writer does.
FLUSH_SECONDS = {"rdbms": 0.05, "rdbms_async": 1.0}

OPTIONS = Section(
    {
        "backend": Option(
            OneOf(["rdbms", "rdbms_async"], UNAVAILABLE_BACKENDS,
                  "backend '{value}' is not available in this version of Suricate"),
            "rdbms",
            "rdbms writes the markers of each 50 ms, rdbms_async of each second."),
        "async_writer": Option(
            Section({"pool_size": Option(Int(min=0), 2 * (os.cpu_count() or 1),
                                         "MongooseIM's number of marker writers.",
                                         default_doc="2 x CPU cores")}),
            DEFAULTS, "MongooseIM 6.4's pool of marker writers.", inert=True,
            inert_reason="one writer per process keeps the latest marker of each key and "
                         "writes them in one transaction per interval (backend)"),
        "keep_private": Option(Bool(), False,
                               "Markers are private to their sender: not routed to the peer, "
                               "and a query returns one's own markers only."),
        "iqdisc": iqdisc("no_queue"),
    },
    doc="MongooseIM's smart markers (esl:xmpp:smart-markers:0): the latest XEP-0333 marker "
        "per conversation and thread.",
)


class ModSmartMarkers(Module):
    name = "mod_smart_markers"
    options = OPTIONS
    store_class = SmartMarkersStore
    store: SmartMarkersStore
    xeps = ("0333",)
    # After mod_inbox (78) read the marker (it resets the unread count), before carbons (80).
    hooks = ((H.USER_SEND_PACKET, "outgoing", 79), (H.REMOVE_USER, "remove_user", 50),
             (H.ROOM_NEW_AFFILIATIONS, "room_new_affiliations", 60),
             (H.FORGET_ROOM, "forget_room", 85),
             (H.MUC_LIGHT_TO_MEMBER, "muclight_to_member", 60),
             (H.MUC_MESSAGE_BROADCAST, "muc_broadcast", 60))
    iq_handlers = (("sm", SMART_MARKERS, "iq_markers"),)
    features = (SMART_MARKERS,)

    def __init__(self, server: Any, opts: Mapping[str, Any]) -> None:
        super().__init__(server, opts)
        self.private: bool = opts["keep_private"]
        self.delay = FLUSH_SECONDS[opts["backend"]]
        # One marker per (account, peer or room, thread, type), MongooseIM 6.4's key.
        self.pending: dict[tuple[str, str, str, str, str], Marker] = {}
        self._lock = asyncio.Lock()
        self._scheduled = False

    async def stop(self) -> None:
        await self.flush()

    # -- the message path ---------------------------------------------------------------------
    def outgoing(self, stanza: Element | None, c2s: C2S) -> Element | None:
        if stanza is None or stanza.name != "message":
            return stanza
        found, thread = _marker_of(stanza)
        if found is None or stanza.attrs.get("type") == "error":
            return stanza
        to_attr = stanza.attrs.get("to")
        msg_id = found.attrs.get("id")
        if not to_attr or not msg_id:
            return stanza  # XEP-0333 §4: a marker names the message it marks
        try:
            peer = JID.parse(to_attr).bare
        except (InvalidJID, ValueError):
            return stanza
        owner = c2s.jid.bare
        assert owner.local is not None
        private = self.private and stanza.find("body") is None
        if not private and stanza.attrs.get("type") == "groupchat" and (
                self._muclight_service(peer.domain) or self._muc_service(peer.domain)):
            # 6.4 keeps a room's marker only from who can access the room (can_access_room):
            # a MUC Light room, which refuses a non-member, hands the sender its own copy of
            # what it accepted (muclight_to_member); a mod_muc room refuses a non-occupant's
            # groupchat message (XEP-0045 §7.4) and tells what it broadcast on its node,
            # which may be another one (muc_broadcast). Kept, either would show among the
            # others'.
            return stanza
        self._keep(owner, str(peer), thread, found.name, msg_id)
        if private:
            return None  # keep_private: the marker stays with its sender
        return stanza

    def _keep(self, owner: JID, peer: str, thread: str, type_: str, msg_id: str) -> None:
        assert owner.local is not None
        key = (owner.domain, owner.local, peer, thread, type_)
        self.pending[key] = Marker(*key, msg_id, now_micros())
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_later(self.delay, self._kick)

    def _muclight_service(self, domain: str) -> bool:
        """A service of this server's MUC Light in its modern protocol (there a member's
        message comes back to it from room@service/its-bare-jid; legacy_mode's nicknames
        cannot tell its own copy)."""
        light = self.server.modules.get("mod_muc_light")
        return light is not None and not getattr(light, "legacy", True) \
            and domain in getattr(light, "services", ())

    def _muc_service(self, domain: str) -> bool:
        """A service of this server's mod_muc (its rooms may live on another node)."""
        muc = self.server.modules.get("mod_muc")
        return muc is not None and domain in getattr(muc, "services", ())

    def muc_broadcast(self, acc: None, frm: JID, sender: JID | None, occupants: list[JID],
                      stanza: Element) -> None:
        """A mod_muc room (on this node) accepted an occupant's marker and broadcast it: the
        room knows the sender may access it, so it is kept (the sender's node, maybe another
        one, left it to the room)."""
        if sender is None or sender.local is None \
                or not self.server.is_local_domain(sender.domain) \
                or not self.serves_domain(sender.domain):
            return acc
        self._keep_room_marker(sender.bare, frm, stanza)
        return acc

    def muclight_to_member(self, acc: None, frm: JID, member: JID, stanza: Element) -> None:
        """A MUC Light room hands a member its own marker back: the room accepted it (the
        member belongs to the room), so it is kept."""
        if frm.resource is None or frm.resource != str(member) or member.local is None:
            return acc
        self._keep_room_marker(member.bare, frm, stanza)
        return acc

    def _keep_room_marker(self, owner: JID, room: JID, stanza: Element) -> None:
        """The marker ``stanza`` carries, if any, kept as ``owner``'s in ``room``."""
        found, thread = _marker_of(stanza)
        msg_id = found.attrs.get("id") if found is not None else None
        if found is not None and msg_id:
            self._keep(owner, str(room.bare), thread, found.name, msg_id)

    def _kick(self) -> None:
        self._scheduled = False
        if self.pending:
            self.server.spawn(self.flush())

    async def flush(self) -> None:
        async with self._lock:
            if not self.pending:
                return
            batch, self.pending = self.pending, {}
            try:
                await self.store.save(list(batch.values()))
            except Exception:
                log.exception("smart_markers_write_failed markers=%d", len(batch))
                for key, marker in batch.items():
                    self.pending.setdefault(key, marker)  # a newer marker wins
                if not self._scheduled:  # retried at the next interval
                    self._scheduled = True
                    asyncio.get_running_loop().call_later(max(self.delay, 1.0), self._kick)

    # -- the query ----------------------------------------------------------------------------
    async def iq_markers(self, iq: IqRequest) -> Element:
        owner = iq.to.bare
        if iq.frm.bare != owner:
            raise StanzaError("forbidden", "only the account itself reads its markers")
        query = iq.payload
        if iq.type != "get":
            raise StanzaError("not-allowed", "markers are read, not set")  # as MongooseIM
        if query.name != "query":
            raise StanzaError("bad-request", "expected a <query/> get")
        peer_attr = query.attrs.get("peer")
        if not peer_attr:
            raise StanzaError("bad-request", "the peer attribute is required")
        try:
            peer = JID.parse(peer_attr)
        except (InvalidJID, ValueError):
            raise StanzaError("jid-malformed", f"not a JID: {peer_attr}") from None
        if peer.resource is not None:
            raise StanzaError("bad-request", "peer must be a bare JID")
        after_attr = query.attrs.get("after")
        after = parse_stamp(after_attr) if after_attr else None
        await self.flush()
        assert owner.local is not None
        # A room is on a service of ours (conference.@HOST@, served like a component); a
        # remote account is not, and only the account's own markers to it are known.
        room = self.server.components.lookup(peer.domain) is not None
        markers = await self.store.conversation(
            # Without `thread`, the main thread (MongooseIM 6.4: encode_thread(undefined)).
            owner.domain, owner.local, str(peer), query.attrs.get("thread") or "", after,
            room=room, own_only=self.private)
        result = Element("query", SMART_MARKERS, {"peer": str(peer)})
        for m in markers:
            attrs = {"from": f"{m.username}@{m.server}", "id": m.msg_id, "type": m.type,
                     "timestamp": stamp(m.timestamp)}
            if m.thread:
                attrs["thread"] = m.thread
            result.add("marker", SMART_MARKERS, attrs)
        return result

    # -- account removal and personal data --------------------------------------------------
    async def remove_user(self, acc: Any, jid: JID) -> Any:
        owner = jid.bare
        assert owner.local is not None
        async with self._lock:
            for key in [k for k in self.pending if k[0] == owner.domain and k[1] == owner.local]:
                del self.pending[key]
        await self.store.remove_user(owner.domain, owner.local)
        return acc

    # -- MUC Light rooms (MongooseIM 6.4) ----------------------------------------------------
    async def room_new_affiliations(self, acc: None, host: str, room: JID,
                                    changed: dict[str, str]) -> None:
        """A member whose affiliation became none is out of the room: its markers to the room
        go (what it marked there is no one's business any more)."""
        for member, aff in changed.items():
            if aff != "none":
                continue
            try:
                who = JID.parse(member)
            except (InvalidJID, ValueError):
                continue
            if who.local is not None:
                await self._remove(str(room), who.domain, who.local)
        return acc

    async def forget_room(self, acc: None, host: str, room: JID) -> None:
        """The room was destroyed: every marker to it goes."""
        await self._remove(str(room))
        return acc

    async def _remove(self, room: str, server: str | None = None,
                      user: str | None = None) -> None:
        async with self._lock:  # after a batch being written, before the next one
            for key in [k for k in self.pending if k[2] == room
                        and (user is None or (k[0], k[1]) == (server, user))]:
                del self.pending[key]
            await self.store.remove_to(room, server, user)

    async def personal_data(self, jid: JID) -> list[PersonalData]:
        await self.flush()
        assert jid.local is not None
        markers = await self.store.of_user(jid.domain, jid.local)
        return [PersonalData("smart_markers", ("to_jid", "thread", "type", "msg_id", "timestamp"),
                             [(m.to_jid, m.thread, m.type, m.msg_id, stamp(m.timestamp))
                              for m in markers])]


__all__ = ["ModSmartMarkers", "SMART_MARKERS"]


def _marker_of(stanza: Element) -> tuple[Element | None, str]:
    """The XEP-0333 marker a message carries (the last one, if several) and its thread."""
    found = None
    thread = ""
    for child in stanza.children:
        if not isinstance(child, Element):
            continue
        if child.xmlns == MARKERS and child.name in _TYPES:
            found = child
        elif child.name == "thread":
            thread = child.text
    return found, thread

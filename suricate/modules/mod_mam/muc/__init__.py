"""mod_mam's MUC archive: XEP-0313 on room JIDs (``[modules.mod_mam.muc]``).

Every archivable groupchat message of a room on the section's ``host`` is kept once, in the
room's archive, with an id that is also the XEP-0359 ``<stanza-id by='room'/>`` every occupant
got (mod_muc asks ``new_id`` before it fans the message out). Rows leave the message path at
once through mod_mam's async writer (a second lane of the same ``AsyncWriter``, over this
package's own table ``mam_muc_message``); a query flushes the room's pending
rows first. Who may read a room's archive is the room's decision (mod_muc); this module
answers the query. XEP-0424 retractions (also MongooseIM's by stanza-id) and XEP-0425
moderation replace the archived message with a tombstone, in the room's lane of the writer;
destroying the room removes its archive.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from suricate.instrument.events import HISTOGRAM, SPIRAL, declare
from suricate.jid import JID
from suricate.modules.mod_mam.muc.store import MucArchiveStore
from suricate.modules.mod_mam.query import (
    MAM,
    RSM,
    fields_form,
    id_to_text,
    normalize_body,
    parse_query,
    stamp_of,
)
from suricate.modules.mod_mam.store import Row
from suricate.modules.mod_mam.writer import AsyncWriter, Retraction
from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element
from suricate.xml.parser import XMLStreamError, parse_fragment

if TYPE_CHECKING:
    from suricate.modules.mod_mam import ModMam

log = logging.getLogger("suricate.mod_mam")

SID = "urn:xmpp:sid:0"
HINTS = "urn:xmpp:hints"
#: End-to-end encryption payloads (OMEMO, XEP-0384, legacy and omemo:2), kept like a body, as
#: in the one-to-one archive (mod_mam's _ENCRYPTED).
ENCRYPTED = frozenset({"eu.siacs.conversations.axolotl", "urn:xmpp:omemo:2"})
MARKERS = "urn:xmpp:chat-markers:0"
RETRACT = "urn:xmpp:message-retract:1"
FASTEN = "urn:xmpp:fasten:0"  # XEP-0422
RETRACT_ESL = "urn:esl:message-retract-by-stanza-id:0"  # MongooseIM's, by stanza-id
OCCUPANT_ID = "urn:xmpp:occupant-id:0"
MUC_USER = "http://jabber.org/protocol/muc#user"

# -- instrumentation (MongooseIM 6.4: mod_mam_muc_*) -----------------------------------------
ARCHIVE_MESSAGE = declare(
    "mod_mam_muc_archive_message", ("host_type",), {"count": SPIRAL},
    "Groupchat messages put in a room archive (XEP-0313)")
FLUSHED = declare(
    "mod_mam_muc_flushed", ("host_type",), {"count": SPIRAL},
    "Room archive messages written to the database by the async writer")
LOOKUP = declare(
    "mod_mam_muc_lookup", ("host_type",),
    # As in 6.4: `size` (messages returned) and `time` (µs) are histograms.
    {"count": SPIRAL, "size": HISTOGRAM, "time": HISTOGRAM},
    "Room archive queries: how many, messages returned, microseconds spent")
REMOVE_ARCHIVE = declare(
    "mod_mam_muc_remove_archive", ("host_type",), {"count": SPIRAL},
    "Room archives removed with their room")
DROPPED_IQ = declare(
    "mod_mam_muc_dropped_iq", ("host_type",), {"count": SPIRAL},
    "Room archive requests answered with an error: malformed, not allowed, unknown ids, a "
    "failed lookup")


class MucArchive:
    """The room archives of one server (mod_muc's ``RoomArchive``)."""

    def __init__(self, mam: ModMam, opts: Mapping[str, Any]) -> None:
        self.mam = mam
        self.server = mam.server
        self.host: str = opts["host"]
        self.chat_markers: bool = opts["archive_chat_markers"]
        self.retraction: bool = opts["message_retraction"]
        self.full_text: bool = opts["full_text_search"]
        self.default_limit: int = opts["default_result_limit"]
        self.max_limit: int = opts["max_result_limit"]
        self.simple: bool = opts["enforce_simple_queries"]
        self.writer_opts: Mapping[str, Any] = opts["async_writer"]
        self.store: MucArchiveStore | None = None
        self.writer: AsyncWriter | None = None
        self._services: frozenset[str] | None = None

    async def start(self) -> None:
        store = await self.server.open_module_store("mod_mam_muc", MucArchiveStore)
        assert isinstance(store, MucArchiveStore)
        self.store = store
        # Ids are keys of both archives: never below one already given.
        self.mam.ids.last = max(self.mam.ids.last, await store.max_id())
        self.server.domains.listeners.append(self._domains_changed)
        aw = self.writer_opts
        self.writer = AsyncWriter(
            store,  # type: ignore[arg-type]  # the writer only calls insert_many
            batch_size=aw["batch_size"] * aw["pool_size"] if aw["enabled"] else 1,
            flush_interval_ms=aw["flush_interval"], spawn=self.server.spawn,
            retract=self._apply_retraction, on_flushed=self._flushed)
        # async_pool_flush and mod_mam_muc_dropped (6.4's events), under the room pool's id.
        self.writer.instrument = self.server.instrument
        self.writer.pool_id = "muc_mam"

    async def stop(self) -> None:
        if self._domains_changed in self.server.domains.listeners:
            self.server.domains.listeners.remove(self._domains_changed)
        if self.writer is not None:
            await self.writer.stop()

    # -- what is archived ------------------------------------------------------------------
    def archives(self, service: str) -> bool:
        # Asked for every groupchat message: the services are worked out again only after
        # the served domains changed (a dynamic domain added or removed).
        services = self._services
        if services is None:
            served = self.server.domains.served
            services = self._services = frozenset(
                self.host.replace("@HOST@", domain) for domain in served) \
                if "@HOST@" in self.host else frozenset((self.host,))
        return service in services

    def _domains_changed(self, domain: str, now: Any) -> None:
        self._services = None

    def archivable(self, message: Element) -> bool:
        """XEP-0313 §5: messages with a body, a <store/> hint or an OMEMO payload (or a chat
        marker, with archive_chat_markers); never those the sender asked not to store
        (XEP-0334 §4.2, §4.3), nor retractions (they act on the archive instead), XEP-0424's
        or MongooseIM's by stanza-id."""
        body = marker = store = False
        for child in message.children:
            if not isinstance(child, Element):
                continue
            if child.name == "body" and child.xmlns == ns.CLIENT:
                body = True
            elif child.xmlns == HINTS and child.name == "store":
                # XEP-0334 §4.4: "SHOULD be stored". Body-less messages clients mean to
                # keep carry it: XEP-0444 reactions above all, which a client catching up
                # on the room by MAM would otherwise never see.
                store = True
            elif child.xmlns in ENCRYPTED:
                store = True  # OMEMO in the room: an omemo:2 message has no body
            elif (child.xmlns == HINTS and child.name in ("no-store", "no-permanent-store")) \
                    or (child.xmlns == RETRACT and child.name == "retract") \
                    or (child.xmlns == FASTEN and child.name == "apply-to"
                        and child.find("retract", RETRACT_ESL) is not None):
                return False
            elif child.xmlns == MARKERS:
                marker = True
        return body or store or (marker and self.chat_markers)

    def new_id(self) -> int:
        return self.mam.ids.next()

    def keep(self, room: JID, mam_id: int, nick: str, sender: JID | None,
                      message: Element) -> None:
        writer = self.writer
        assert writer is not None
        origin = message.find("origin-id", SID)
        origin_id = origin.attrs.get("id") if origin is not None else message.attrs.get("id")
        body = message.find_text("body", ns.CLIENT) if self.full_text else None
        row: Row = (mam_id, room.domain, room.local or "",
                    str(sender.bare) if sender is not None else "", nick, "G",
                    message.attrs.get("from", ""), origin_id,
                    normalize_body(body) if body else None,
                    _without_muc_user(message).serialize(ns.CLIENT))
        writer.add(row)
        if self.server.instrument.enabled:
            self.server.instrument.emit(ARCHIVE_MESSAGE, {"host_type": self._host_type(room)},
                                        {"count": 1})

    # -- retraction (XEP-0424 §5, XEP-0425 §5) -----------------------------------------------
    def retract(self, room: JID, target: int, author: JID | None, retracted: Element) -> None:
        """Queue the tombstone of the room's message ``target`` (its stanza-id, which is its
        archive id) in the room's lane: a message still waiting there is written first."""
        if not self.retraction or self.writer is None or not 0 < target < 2**63:
            return  # an id that cannot be one of ours changes nothing
        self.writer.add_retraction(Retraction(
            room.domain, room.local or "", "" if author is None else str(author.bare),
            id_to_text(target), "G", self.new_id(), retracted.attrs.get("stamp", ""),
            True, retracted))

    async def _apply_retraction(self, r: Retraction) -> None:
        assert self.store is not None and r.retracted is not None
        target = int(r.target)
        found = await self.store.find(r.server, r.user, target)
        if found is None or target >= r.before:
            return
        sender, xml = found
        if r.peer and sender != r.peer:
            return  # XEP-0424 §4: only the author retracts (the room refused others)
        original = _parse(xml)
        if original is None:
            return
        # The tombstone keeps the envelope and the ids (who said it, where it was), the
        # content goes.
        tomb = Element("message", ns.CLIENT, dict(original.attrs))
        for child in original.children:
            if isinstance(child, Element) and (
                    child.xmlns in (SID, OCCUPANT_ID)):
                tomb.append(child)
        tomb.append(r.retracted)
        await self.store.replace_message(r.server, r.user, target, tomb.serialize(ns.CLIENT))

    # -- removal -------------------------------------------------------------------------------
    def remove_room(self, room: JID) -> None:
        if self.writer is not None:
            self.writer.discard_archive(room.domain, room.local or "")
        self.server.spawn(self._remove(room))

    async def _remove(self, room: JID) -> None:
        assert self.store is not None and self.writer is not None
        # A flush in flight may still write the room's rows: wait for it, then delete.
        await self.writer.flush_archive(room.domain, room.local or "")
        await self.store.remove_room(room.domain, room.local or "")
        if self.server.instrument.enabled:
            self.server.instrument.emit(REMOVE_ARCHIVE, {"host_type": self._host_type(room)},
                                        {"count": 1})

    async def remove_service(self, domain: str) -> None:
        """removeDomain: the archives of the rooms of the domain's service go with it (6.4's
        mod_mam remove_domain); a fixed service domain (no @HOST@) is every domain's."""
        if "@HOST@" not in self.host or self.store is None:
            return
        service = self.host.replace("@HOST@", domain)
        if self.writer is not None:
            await self.writer.discard_server(service)
        await self.store.execute("DELETE FROM mam_muc_message WHERE server = ?", service)

    # -- queries (XEP-0313 §4 on the room JID) ------------------------------------------------
    def query(self, room: JID, asker: JID, iq: Element, *, real_jids: bool) -> None:
        self.server.spawn(self._answer(room, asker, iq, real_jids))

    async def _answer(self, room: JID, asker: JID, iq: Element, real_jids: bool) -> None:
        try:
            payload = iq.first_element()
            assert payload is not None
            itype = iq.attrs.get("type")
            if payload.name == "query" and itype == "get":
                result: Element | None = Element("query", MAM,
                                                 children=[fields_form(self.full_text)])
            elif payload.name == "query" and itype == "set":
                result = await self._lookup(room, asker, payload, real_jids)
            elif payload.name == "metadata" and itype == "get":
                result = await self._metadata(room)
            elif payload.name == "prefs":
                # XEP-0441 preferences are an account's, not a room's.
                raise StanzaError("feature-not-implemented", "rooms have no archive prefs")
            else:
                raise StanzaError("bad-request")
        except StanzaError as err:
            self._dropped_iq(room)
            self.server.router.bounce(iq, err)
            return
        except Exception:
            log.exception("mam_muc_query_failed room=%s", room)
            self._dropped_iq(room)
            self.server.router.bounce(iq, StanzaError("internal-server-error"))
            return
        attrs = {"type": "result", "from": str(room), "to": str(asker)}
        if "id" in iq.attrs:
            attrs["id"] = iq.attrs["id"]
        self.server.router.route(room, asker, Element(
            "iq", ns.CLIENT, attrs, [result] if result is not None else []))

    def _dropped_iq(self, room: JID) -> None:
        """6.4's dropped_iq: a room archive request answered with an error."""
        instrument = self.server.instrument
        if instrument.enabled:
            instrument.emit(DROPPED_IQ, {"host_type": self._host_type(room)}, {"count": 1})

    async def _lookup(self, room: JID, asker: JID, payload: Element,
                      real_jids: bool) -> Element:
        assert self.store is not None and self.writer is not None
        began = time.perf_counter()
        service, name = room.domain, room.local or ""
        q = parse_query(payload, full_text_search=self.full_text)
        sender: str | None = None
        if q.with_jid is not None:
            if q.with_jid.bare == room:
                if q.with_jid.resource is None:
                    q.with_jid = None  # the room itself: every message
            elif not real_jids:
                # XEP-0313 §5.1.2: in a semi-anonymous room, senders are their occupant JIDs.
                raise StanzaError("forbidden", "real JIDs are hidden in this room: use "
                                               "the occupant JID (room@service/nick)")
            else:
                sender = str(q.with_jid.bare)
                q.with_jid = None
        limit = self.default_limit if q.max is None else min(q.max, self.max_limit)
        await self.writer.flush_archive(service, name)
        # XEP-0313 §4.1.3, §4.3.2: an id named by the client that the archive does not hold.
        missing = await self.store.missing(service, name, q.must_exist) if q.must_exist \
            else None
        if missing is not None:
            raise StanzaError("item-not-found", f"no message with id {missing}")
        page = await self.store.lookup(service, name, q, limit, self.simple, sender=sender)
        messages = list(reversed(page.messages)) if q.flip else page.messages
        for archived in messages:
            msg = Element("message", ns.CLIENT, {"from": str(room), "to": str(asker)})
            attrs = {"id": id_to_text(archived.id)}
            if q.query_id is not None:
                attrs["queryid"] = q.query_id
            forwarded = msg.add("result", MAM, attrs).add("forwarded", ns.FORWARD)
            forwarded.add("delay", ns.DELAY, {"stamp": stamp_of(archived.id)})
            original = _parse(archived.message)
            if original is None:
                log.error("mam_muc_message_unreadable room=%s id=%s", room, archived.id)
                original = Element("message", ns.CLIENT)
            # Rows archived before ``keep`` stripped the sender's own <x/> (XEP-0313 §7.3).
            original = _without_muc_user(original)
            if real_jids and archived.from_jid:
                # XEP-0313 §5.1.2: the real JID of the sender, where the asker may see it.
                x = original.add("x", MUC_USER)
                x.add("item", MUC_USER, {"jid": archived.from_jid})
            forwarded.append(original)
            self.server.router.route(room, asker, msg)
        fin = Element("fin", MAM, {"complete": "true" if page.complete else "false"})
        rsm = fin.add("set", RSM)
        if page.messages:
            first = rsm.add("first", RSM, text=id_to_text(page.messages[0].id))
            if page.first_index is not None:
                first.attrs["index"] = str(page.first_index)
            rsm.add("last", RSM, text=id_to_text(page.messages[-1].id))
        if page.count is not None:
            rsm.add("count", RSM, text=str(page.count))
        if self.server.instrument.enabled:
            self.server.instrument.emit(
                LOOKUP, {"host_type": self._host_type(room)},
                {"count": 1, "size": len(messages),
                 "time": int((time.perf_counter() - began) * 1_000_000)})
        return fin

    async def _metadata(self, room: JID) -> Element:
        assert self.store is not None and self.writer is not None
        await self.writer.flush_archive(room.domain, room.local or "")
        result = Element("metadata", MAM)
        bounds = await self.store.bounds(room.domain, room.local or "")
        if bounds is not None:
            for name, mam_id in (("start", bounds[0]), ("end", bounds[1])):
                result.add(name, MAM, {"id": id_to_text(mam_id), "timestamp": stamp_of(mam_id)})
        return result

    # -- for the GraphQL muc category --------------------------------------------------------
    async def recent(self, room: JID, limit: int,
                     before_micros: int | None) -> list[tuple[int, str, str]]:
        """(id, sender bare JID, message XML) of the newest ``limit`` messages, oldest first,
        older than ``before_micros`` when given."""
        assert self.store is not None and self.writer is not None
        from suricate.modules.mod_mam.query import Query
        await self.writer.flush_archive(room.domain, room.local or "")
        q = Query(end=None if before_micros is None else before_micros - 1, last_page=True)
        page = await self.store.lookup(room.domain, room.local or "", q, limit, True)
        return [(m.id, m.from_jid, m.message) for m in page.messages]

    def _flushed(self, service: str, count: int) -> None:
        if self.server.instrument.enabled:
            self.server.instrument.emit(FLUSHED, {"host_type": self._host_type_of(service)},
                                        {"count": count})

    def _host_type(self, room: JID) -> str:
        return self._host_type_of(room.domain)

    def _host_type_of(self, service: str) -> str:
        for domain in self.server.domains.served:
            if self.host.replace("@HOST@", domain) == service:
                return str(domain)
        return service


def _without_muc_user(message: Element) -> Element:
    """``message`` without the sender's <x xmlns='muc#user'/>: XEP-0313 §7.3, a room does not
    sanitize it, so the archive strips it before archiving (a result must not name, as the
    sender's real JID, one the sender wrote); a shallow copy when there is one (the stanza
    itself goes on to the occupants), else ``message``."""
    children = message.children
    if not any(isinstance(c, Element) and c.name == "x" and c.xmlns == MUC_USER
               for c in children):
        return message
    return Element(message.name, message.xmlns, dict(message.attrs),
                   [c for c in children
                    if not (isinstance(c, Element) and c.name == "x" and c.xmlns == MUC_USER)])


def _parse(xml: str) -> Element | None:
    try:
        elements = parse_fragment(xml, ns.CLIENT)
    except XMLStreamError:
        return None
    return elements[0] if elements else None


__all__ = ["MucArchive", "MucArchiveStore"]

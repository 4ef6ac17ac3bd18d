"""mod_muc_light: MongooseIM's MUC Light (ESL's ``urn:xmpp:muclight:0`` protocol) on a service
subdomain (``muclight.@HOST@``).

A room is a list of members (owner/member), not of present occupants: a message to the
room's bare JID goes to every member's bare JID, online sessions at once, offline members
through the normal rules for a message nobody took (mod_offline's
``store_groupchat_messages``). Rooms live in storage only (``store.py``); each request on a
room runs under that room's lock, in arrival order, so two changes never interleave. With
``cache_affs``, a room read from storage is kept in memory for ``time_to_live``.

The operations (``create``, ``change_config``, ``change_affiliations``, ``destroy``,
``send_message``) are shared by the two codecs, the modern one (this file) and the XEP-0045
compatibility mode (``legacy.py``, ``legacy_mode = true``), and by the GraphQL API.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from suricate.core import hooks as H
from suricate.core.module import GraphQLCategory, Module, PersonalData
from suricate.jid import JID, InvalidJID
from suricate.modules.mod_muc.archive import (
    RETRACT_ESL,
    RETRACT_TOMBSTONE,
    RoomArchive,
    archive_of,
    retracted_element,
    retraction_of,
)
from suricate.modules.mod_muc_light import rules
from suricate.modules.mod_muc_light.config import OPTIONS, ConfigSchema, ConfigValueError
from suricate.modules.mod_muc_light.store import MucLightStore, Room
from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.core.component_table import LocalService
    from suricate.core.domains import Domain
    from suricate.core.server import Server

log = logging.getLogger("suricate.mod_muc_light")

NS = "urn:xmpp:muclight:0"
NS_CREATE = NS + "#create"
NS_CONFIG = NS + "#configuration"
NS_AFFS = NS + "#affiliations"
NS_INFO = NS + "#info"
NS_DESTROY = NS + "#destroy"
NS_BLOCKING = NS + "#blocking"
SID = "urn:xmpp:sid:0"  # XEP-0359
RSM = "http://jabber.org/protocol/rsm"  # XEP-0059
MAM = "urn:xmpp:mam:2"  # XEP-0313
MAM_EXTENDED = "urn:xmpp:mam:2#extended"
#: A room's stanza for a member's sessions on other nodes (docs/cluster.md "Casts").
MEMBER_CAST = "mod_muc_light.to_member"


def new_version() -> str:
    """A room version: unique per room and change (§4.3), time-ordered."""
    return f"{time.time_ns() // 1000}-{secrets.token_hex(4)}"


def bare(jid: JID) -> str:
    return f"{jid.local}@{jid.domain}" if jid.local else jid.domain


@dataclass(slots=True)
class AffChange:
    """What a change of affiliations did: the members before and after, what changed."""

    before: dict[str, str]
    after: dict[str, str]
    changed: dict[str, str]
    prev_version: str
    version: str


class ModMucLight(Module):
    name = "mod_muc_light"
    options = OPTIONS
    store_class = MucLightStore
    store: MucLightStore
    graphql = GraphQLCategory("suricate.modules.mod_muc_light.graphql")
    xeps = ("0359",)
    hooks = ((H.REMOVE_USER, "remove_user", 50),
             (H.REMOVE_DOMAIN, "remove_domain", 50),
             (H.ROSTER_GET, "roster_get", 50))

    def __init__(self, server: Server, opts: Mapping[str, Any]) -> None:
        super().__init__(server, opts)
        self.schema = ConfigSchema(opts["config_schema"])
        self.services: dict[str, str] = {}  # service domain -> host
        self._added: dict[str, LocalService] = {}  # services of dynamic domains added later
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        cache = opts.get("cache_affs")
        self.cache_ttl: float | None = None
        if cache is not None:
            ttl = cache["time_to_live"]
            self.cache_ttl = float("inf") if ttl is None else ttl * 60.0
        self._cache: dict[tuple[str, str], tuple[float, Room]] = {}
        self.legacy = bool(opts["legacy_mode"])
        from suricate.modules.mod_muc_light import legacy, modern
        self.codec: Any = legacy if self.legacy else modern

    async def start(self) -> None:
        self.services.update(self.serve_subdomains(self.opts["host"], self.route))
        self.server.domains.listeners.append(self._domain_changed)
        self.server.cluster.on(MEMBER_CAST, self._to_member_from_elsewhere)

    async def stop(self) -> None:
        self.server.cluster.off(MEMBER_CAST)
        if self._domain_changed in self.server.domains.listeners:
            self.server.domains.listeners.remove(self._domain_changed)
        for local in self._added.values():
            self.server.components.unserve(local)
        self._added.clear()
        self.services.clear()  # those of serve_subdomains are undone by unwire
        self._cache.clear()

    def _domain_changed(self, domain: str, now: Domain | None) -> None:
        """A dynamic domain was added (it gets its service, as 6.4's dynamic domains do) or
        removed (the service it got goes; its rooms go in ``remove_domain``, disabled they
        stay)."""
        service = self.service_of(domain)
        # Only a domain of this instance's host types: a [[host_config]] that leaves the
        # module out of a host type gives its domains no service.
        if now is not None and now.enabled and domain in self.server.domains.served \
                and self.serves_domain(domain):
            if service not in self.services:
                parent = domain if "@HOST@" in self.opts["host"] else None
                self._added[service] = self.server.components.serve(service, self.route,
                                                                    parent=parent)
                self.services[service] = domain
        elif service in self._added:
            self.server.components.unserve(self._added.pop(service))
            del self.services[service]

    def service_of(self, host: str) -> str:
        return self.opts["host"].replace("@HOST@", host)

    # -- routing ----------------------------------------------------------------------------
    def route(self, frm: JID, to: JID, stanza: Element) -> None:
        """Every stanza to the service or a room (the component table's seam)."""
        if stanza.attrs.get("type") == "error":
            return  # §7: errors (a member's client bouncing a notification) need no answer
        self.server.spawn(self._handle(frm, to, stanza))

    async def _handle(self, frm: JID, to: JID, stanza: Element) -> None:
        try:
            await self.codec.handle(self, frm, to, stanza)
        except StanzaError as err:
            self.server.router.bounce(stanza, err)
        except Exception:
            log.exception("muc_light_request_failed from=%s to=%s", frm, to)
            self.server.router.bounce(stanza, StanzaError("internal-server-error"))

    def send(self, frm: JID, to: JID, stanza: Element) -> None:
        stanza.attrs["from"] = str(frm)
        stanza.attrs["to"] = str(to)
        self.server.router.route(frm, to, stanza)

    def iq_result(self, iq: Element, frm: JID, to: JID, payload: Element | None = None) -> None:
        attrs = {"type": "result"}
        if "id" in iq.attrs:
            attrs["id"] = iq.attrs["id"]
        self.send(frm, to, Element("iq", ns.CLIENT, attrs, [payload] if payload is not None
                                   else []))

    def to_member(self, frm: JID, member: str, stanza: Element) -> None:
        """A notification or message to a member's bare JID: each available session gets it
        (as MongooseIM's session manager delivers a groupchat message to a bare JID); with
        none, it is handled like any message nobody took (offline storage when mod_offline
        keeps groupchat messages, dropped silently otherwise)."""
        try:
            to = JID.parse(member)
        except InvalidJID:
            return
        if not self.server.is_local_domain(to.domain):
            self.send(frm, to, stanza)  # a member on another server: its server delivers
            return
        sessions = [s for s in self.server.sessions.resources(to)
                    if s.available and s.priority >= 0]
        if not sessions:
            stanza.attrs["from"], stanza.attrs["to"] = str(frm), member
            self.server.spawn(self._offline(frm, to, stanza))
            return
        self._to_member_hook(frm, to, stanza)
        if self.server.cluster.spans_nodes:
            # The member's sessions on other nodes get it from theirs (a cast).
            elsewhere = stanza.copy()
            elsewhere.attrs["from"], elsewhere.attrs["to"] = str(frm), member
            self.server.cluster.cast(to, MEMBER_CAST, elsewhere)
        for i, session in enumerate(sessions):
            copy = stanza if i == len(sessions) - 1 else stanza.copy()
            self.send(frm, session.jid, copy)

    def _to_member_from_elsewhere(self, bare: JID, stanza: Element,
                                  args: tuple[str, ...]) -> None:
        """A room's stanza for ``bare``, cast by the node that handled it (``to_member``):
        to this node's sessions of it (the member hook ran there, once)."""
        frm = JID.parse(stanza.attrs["from"])
        sessions = [s for s in self.server.sessions.resources(bare)
                    if s.available and s.priority >= 0]
        for i, session in enumerate(sessions):
            copy = stanza if i == len(sessions) - 1 else stanza.copy()
            self.send(frm, session.jid, copy)

    def _to_member_hook(self, frm: JID, to: JID, stanza: Element) -> None:
        """Once per local member, whatever its sessions (mod_inbox's entry of the room)."""
        if stanza.name == "message" and self.server.hooks.has(H.MUC_LIGHT_TO_MEMBER):
            self.server.hooks.fold(H.MUC_LIGHT_TO_MEMBER, None, frm, to, stanza)

    async def _offline(self, frm: JID, to: JID, stanza: Element) -> None:
        if not await self.server.user_exists(to):
            return
        self._to_member_hook(frm, to, stanza)
        if await self.server.cluster.available([to], routable=True):
            # Online on another node only: its sessions there get it (as in ``to_member``).
            self.server.cluster.cast(to, MEMBER_CAST, stanza)
            return
        if await self.server.hooks.fold_async(H.PRIVACY_CHECK_INBOUND, True, self.server, to,
                                              frm, stanza):
            await self.server.hooks.fold_async(H.OFFLINE_MESSAGE, False, frm, to, stanza)

    # -- rooms ------------------------------------------------------------------------------
    def lock(self, service: str, room: str) -> _RoomLock:
        return _RoomLock(self, (service, room))

    async def load(self, service: str, room: str) -> Room | None:
        key = (service, room)
        if self.cache_ttl is not None:
            cached = self._cache.get(key)
            if cached is not None and cached[0] > time.monotonic():
                return cached[1]
        found = await self.store.load_room(service, room)
        self._remember(key, found)
        return found

    def _remember(self, key: tuple[str, str], room: Room | None) -> None:
        if self.cache_ttl is None:
            return
        if room is None:
            self._cache.pop(key, None)
        else:
            self._cache[key] = (time.monotonic() + self.cache_ttl, room)

    async def room_of(self, service: str, room: str, requester: str | None) -> Room:
        """The room, for a member (``requester``) or the admin API (None): item-not-found
        for a missing room and for a user who is not a member (§7.1)."""
        found = await self.load(service, room)
        if found is None or (requester is not None and requester not in found.affiliations):
            raise StanzaError("item-not-found", "no such room" if found is None
                              else "you are not a member of this room")
        return found

    def all_can(self, room: Room, what: str) -> bool:
        """all_can_configure / all_can_invite: the room's own setting (a config_schema field
        with that internal key) or the module option."""
        value = room.config.get(what)
        return bool(self.opts[what]) if value is None else bool(value)

    async def _admissible(self, service: str, room: str, by: str,
                          newcomers: list[str]) -> set[str]:
        """Newcomers the service skips silently (§4.5): those blocking the room or ``by``,
        and those already in ``rooms_per_user`` rooms."""
        skipped: set[str] = set()
        limit = self.opts["rooms_per_user"]
        for jid in newcomers:
            blocked = self.opts["blocking"] and await self.store.blocks(
                jid, service, f"{room}@{service}", by)
            if blocked or (limit is not None
                           and await self.store.count_user_rooms(jid) >= limit):
                skipped.add(jid)
        return skipped

    def _check_users(self, jids: list[str]) -> None:
        """Members are users: a JID on one of this server's services (a MUC Light room, a
        MUC room, pubsub...) is refused. Two rooms made members of each other would
        otherwise relay each other's messages and notifications forever (a room's copy
        to a member room is a groupchat message from a member)."""
        from suricate.core.component_table import LocalService

        for jid in jids:
            domain = jid.rpartition("@")[2]
            if isinstance(self.server.components.lookup(domain), LocalService):
                raise StanzaError("bad-request", f"{jid} is a service's address, not a user's")

    def _check_size(self, members: Mapping[str, str]) -> None:
        limit = self.opts["max_occupants"]
        if limit is not None and len(members) > limit:
            # MongooseIM 6.4 answers bad-request for occupant_limit_exceeded.
            raise StanzaError("bad-request", f"a room has at most {limit} members "
                                             "(max_occupants)")

    # -- operations -------------------------------------------------------------------------
    async def create(self, creator: str, service: str, room: str | None,
                     raw_config: list[tuple[str, str]] | dict[str, Any],
                     occupants: list[tuple[str, str]]) -> tuple[str, Room]:
        """§5.1: a new room (``room`` None: a unique name chosen by the service, §5.1.1)."""
        limit = self.opts["rooms_per_user"]
        if limit is not None and await self.store.count_user_rooms(creator) >= limit:
            # MongooseIM 6.4 answers bad-request for room_limit_reached.
            raise StanzaError("bad-request", f"you are already in {limit} rooms "
                                             "(rooms_per_user)")
        config = self.schema.defaults()
        try:
            config.update(self.schema.parse(raw_config) if isinstance(raw_config, list)
                          else raw_config)
        except ConfigValueError as err:
            raise StanzaError("bad-request", str(err)) from None
        rules.check_request(occupants)
        self._check_users([j for j, _ in occupants])
        for jid, aff in occupants:
            if jid == creator or aff == "none":
                # §5.1: the list must not name the creator, and 'none' cannot be used.
                raise StanzaError("bad-request", "the occupant list must not name the creator "
                                                 "or use affiliation 'none'")
        name = room or new_version()
        equal = self.opts["equal_occupants"]
        creator_aff = "member" if equal else "owner"
        skipped = await self._admissible(service, name, creator, [j for j, _ in occupants])
        after, _ = rules.apply({creator: creator_aff},
                               [(j, a) for j, a in occupants if j not in skipped], equal)
        self._check_size(after)
        new = Room(new_version(), config, after)
        async with self.lock(service, name):
            if not await self.store.create_room(service, name, new):
                raise StanzaError("conflict", "Room already exists")
            self._remember((service, name), new)
        return name, new

    async def change_config(self, requester: str | None, service: str, room: str,
                            raw: list[tuple[str, str]] | dict[str, Any]
                            ) -> tuple[Room, str, dict[str, Any]]:
        """§5.3: (the room after, its previous version, the fields changed)."""
        async with self.lock(service, room):
            found = await self.room_of(service, room, requester)
            try:
                delta = self.schema.parse(raw) if isinstance(raw, list) else dict(raw)
            except ConfigValueError as err:
                raise StanzaError("bad-request", str(err)) from None
            if requester is not None and found.affiliations[requester] != "owner" \
                    and not self.all_can(found, "all_can_configure") \
                    and set(delta) - {"subject"}:
                # §7.4: members may change the subject only, unless all_can_configure.
                raise StanzaError("not-allowed", "only the owner may change the configuration")
            prev = found.version
            updated = Room(new_version(), {**found.config, **delta}, dict(found.affiliations))
            await self.store.set_config(service, room, updated.config, updated.version)
            self._remember((service, room), updated)
        return updated, prev, delta

    async def change_affiliations(self, requester: str | None, service: str, room: str,
                                  changes: list[tuple[str, str]]) -> AffChange:
        """§5.4: apply a change request by ``requester`` (None: the admin API, an owner's
        rights). A room left empty is destroyed (§5.2)."""
        async with self.lock(service, room):
            found = await self.room_of(service, room, requester)
            current = found.affiliations
            rules.check_request(changes)
            self._check_users([j for j, a in changes if j not in current and a != "none"])
            by = requester or ""
            if requester is not None and current[requester] != "owner":
                rules.member_may(requester, changes, current,
                                 self.all_can(found, "all_can_invite"))
            skipped = await self._admissible(
                service, room, by, [j for j, a in changes if j not in current and a != "none"])
            changes = [(j, a) for j, a in changes if j not in skipped]
            if not changes:
                # Everyone named blocks the request: nothing changes, nothing is sent.
                return AffChange(dict(current), dict(current), {}, found.version, found.version)
            after, changed = rules.apply(current, changes, self.opts["equal_occupants"])
            self._check_size(after)
            version = new_version()
            if after:
                await self.store.set_affiliations(service, room, changed, version)
                self._remember((service, room), Room(version, found.config, after))
            else:
                await self.store.destroy_room(service, room)
                self._remember((service, room), None)
                self._forget_archive(service, room)
            await self._affiliations_changed(service, room, changed, destroyed=not after)
            return AffChange(dict(current), after, changed, found.version, version)

    async def _affiliations_changed(self, service: str, room: str, changed: dict[str, str],
                                    destroyed: bool) -> None:
        """6.4's room_new_affiliations, and forget_room for a room that is gone."""
        host = self.services.get(service, service)
        room_jid = JID._prepared(room, service, None)
        if changed:
            await self.server.hooks.fold_async(H.ROOM_NEW_AFFILIATIONS, None, host, room_jid,
                                               dict(changed))
        if destroyed:
            await self.server.hooks.fold_async(H.FORGET_ROOM, None, host, room_jid)

    async def destroy(self, requester: str | None, service: str, room: str) -> dict[str, str]:
        """§5.2: only the owner (or the admin API) destroys a room; its members before."""
        async with self.lock(service, room):
            found = await self.room_of(service, room, requester)
            if requester is not None and found.affiliations[requester] != "owner":
                raise StanzaError("not-allowed", "only the owner may destroy the room")
            await self.store.destroy_room(service, room)
            self._remember((service, room), None)
            self._forget_archive(service, room)
            await self._affiliations_changed(
                service, room, dict.fromkeys(found.affiliations, "none"), destroyed=True)
            return dict(found.affiliations)

    async def send_message(self, sender: str, service: str, room: str, stanza: Element,
                           nick: str | None = None) -> str:
        """§4.1: a groupchat message from a member to every member, from the room JID with
        the sender's bare JID as resource, with the room's XEP-0359 stanza-id. When the room
        is archived (mod_mam's muc section, as in MongooseIM 6.4), the message is kept once
        in the room's archive and its stanza-id is the archive id (XEP-0313 §5.1.2), so a
        member can page the archive from an id it got. Returns the stanza-id."""
        found = await self.room_of(service, room, sender)
        room_jid = JID._prepared(room, service, None)
        if not self.server.is_local_domain(sender.rpartition("@")[2]) and any(
                c.name == "stanza-id" and c.xmlns == SID and c.attrs.get("by") == str(room_jid)
                for c in stanza.elements()):
            # A copy this room sent, back from a room on another server that is one of its
            # members and has it as a member: relayed again, it would go round between
            # the two servers forever (local rooms cannot be members, _check_users).
            raise StanzaError("not-acceptable", "this message is a copy this room sent")
        frm = JID._prepared(room, service, nick or sender)
        archive = self.archive()
        retraction = retraction_of(stanza) if archive is not None else None
        if archive is not None and retraction is not None and retraction[0].isdigit():
            # XEP-0424 §5 in a room: the id is the room's stanza-id (also in MongooseIM's
            # form by stanza-id, urn:esl:message-retract-by-stanza-id:0); the archive replaces
            # the message by a tombstone only if this member wrote it (it checks the author).
            target, esl = retraction
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            archive.retract(room_jid, int(target), JID.parse(sender),
                            retracted_element(room_jid, target, esl, stamp))
        mam_id: int | None = None
        if archive is not None and archive.archivable(stanza):
            mam_id = archive.new_id()
            stanza_id = str(mam_id)
        else:
            stanza_id = new_version()
        # XEP-0359 §3.1: a stanza-id claiming to be ours that the sender wrote is removed.
        children = [c for c in stanza.children
                    if not (isinstance(c, Element) and c.name == "stanza-id" and c.xmlns == SID
                            and c.attrs.get("by") == str(room_jid))]
        children.append(Element("stanza-id", SID, {"id": stanza_id, "by": str(room_jid)}))
        attrs = {"type": "groupchat", "id": stanza.attrs.get("id") or stanza_id}
        if mam_id is not None:
            assert archive is not None
            # Kept as the members get it, addressed from the sender's room JID.
            archive.keep(room_jid, mam_id, nick or sender, JID.parse(sender),
                         Element("message", ns.CLIENT, {**attrs, "from": str(frm)},
                                 list(children)))
        for member in sorted(found.affiliations):
            self.to_member(frm, member, Element("message", ns.CLIENT, dict(attrs),
                                                list(children)))
        return stanza_id

    def archive_notification(self, service: str, room: str, id_: str,
                             payload: Element) -> Element | None:
        """A room's notification (creation, affiliation or configuration change) kept in the
        room's archive, from the room's bare JID, as MongooseIM 6.4 does (its modern codec
        hands them to filter_room_packet): a member rebuilding the room from its archive
        sees who came and what changed. The ``<stanza-id/>`` to add to the copies whose
        content is the archived one; None when the room is not archived."""
        archive = self.archive()
        if archive is None:
            return None
        room_jid = JID._prepared(room, service, None)
        mam_id = archive.new_id()
        stanza_id = Element("stanza-id", SID, {"id": str(mam_id), "by": str(room_jid)})
        msg = Element("message", ns.CLIENT, {"type": "groupchat", "id": id_,
                                               "from": str(room_jid)}, [payload, Element("body", ns.CLIENT), stanza_id.copy()])
        archive.keep(room_jid, mam_id, "", None, msg)
        return stanza_id

    # -- the archive (XEP-0313 on the room JID) ----------------------------------------------
    def archive(self) -> RoomArchive | None:
        """The archive keeping this service's rooms: mod_mam's muc section, when it is on
        (MongooseIM 6.4 archives MUC Light rooms through the same section as MUC rooms)."""
        return archive_of(self.server)

    def mam_features(self) -> list[str]:
        """XEP-0313 §6.1.2: an archived room says so in its disco#info."""
        archive = self.archive()
        if archive is None:
            return []
        # Where retractions act on the archive: its tombstones (XEP-0424 §"Tombstones") and
        # MongooseIM's retraction by stanza-id.
        if archive.retraction:
            return [MAM, MAM_EXTENDED, RETRACT_TOMBSTONE, RETRACT_ESL]
        return [MAM, MAM_EXTENDED]

    async def mam_query(self, frm: JID, to: JID, stanza: Element) -> None:
        """A MAM IQ to a room: members only (MongooseIM 6.4 answers a non-member
        ``forbidden``, a missing room ``item-not-found``); the archive answers it. Members
        know each other's bare JIDs (they are the senders' resources), so the archive may
        show and filter on real JIDs."""
        archive = self.archive()
        service, room = to.domain, to.local or ""
        found = await self.load(service, room)
        if found is None:
            raise StanzaError("item-not-found", "no such room")
        if bare(frm) not in found.affiliations:
            raise StanzaError("forbidden", "only members read this room's archive")
        if archive is None:
            raise StanzaError("service-unavailable", "this room is not archived: enable "
                                                     "[modules.mod_mam.muc]")
        archive.query(JID._prepared(room, service, None), frm, stanza, real_jids=True)

    def _forget_archive(self, service: str, room: str) -> None:
        """The room was destroyed: its archive goes with it, so a new room of the same name
        starts empty."""
        archive = self.archive()
        if archive is not None:
            archive.remove_room(JID._prepared(room, service, None))

    # -- the service ------------------------------------------------------------------------
    async def user_rooms_page(self, user: str, service: str, rsm: Element | None
                              ) -> tuple[list[tuple[str, Room]], Element | None]:
        """§3.3: the user's rooms, one page (XEP-0059, at most ``rooms_per_page``)."""
        names = [r for _, r in await self.store.user_rooms(user, service)]
        per_page = self.opts["rooms_per_page"]
        start, end = 0, len(names)
        want = per_page
        if rsm is not None:
            text = rsm.find_text("max", RSM)
            if text is not None:
                try:
                    asked = int(text)
                except ValueError:
                    asked = -1
                if asked < 0:
                    # XEP-0059 §2.1: max is a non-negative integer (a negative one sliced
                    # the list from its end).
                    raise StanzaError("bad-request", "RSM max is not a non-negative integer")
                want = asked if per_page is None else min(asked, per_page)
            after, before = rsm.find("after", RSM), rsm.find("before", RSM)
            index = rsm.find_text("index", RSM)
            jids = [f"{n}@{service}" for n in names]
            if after is not None:
                if after.text not in jids:
                    raise StanzaError("item-not-found", "RSM after: no such room")
                start = jids.index(after.text) + 1
            elif before is not None:
                if before.text:
                    if before.text not in jids:
                        raise StanzaError("item-not-found", "RSM before: no such room")
                    end = jids.index(before.text)
                start = max(0, end - want) if want is not None else 0
            elif index is not None and index.isdigit():
                start = int(index)
        if want is not None:
            end = min(end, start + want)
        page = names[start:end]
        infos = await self.store.room_infos(service, page)
        rooms = [(n, infos[n]) for n in page if n in infos]
        if rsm is None and (per_page is None or len(names) <= per_page):
            return rooms, None
        out = Element("set", RSM)
        if rooms:
            out.add("first", attrs={"index": str(start)}, text=f"{rooms[0][0]}@{service}")
            out.add("last", text=f"{rooms[-1][0]}@{service}")
        out.add("count", text=str(len(names)))
        return rooms, out

    async def blocking_set(self, user: str, service: str,
                           items: list[tuple[str, str, str]]) -> None:
        if not self.opts["blocking"]:
            raise StanzaError("bad-request", "blocking is disabled on this service")
        await self.store.set_blocking(user, service, items)

    async def blocking_get(self, user: str, service: str) -> list[tuple[str, str]]:
        if not self.opts["blocking"]:
            raise StanzaError("bad-request", "blocking is disabled on this service")
        return await self.store.get_blocking(user, service)

    async def personal_data(self, jid: JID) -> list[PersonalData]:
        """The account's rooms with its affiliation, and what it blocks on each service
        (GDPR retrieval)."""
        user = bare(jid)
        columns = ("service", "what", "who")
        return [
            PersonalData("muc_light", ("room", "affiliation"), await self.store.member_rows(user)),
            PersonalData("muc_light_blocking", columns, await self.store.user_rows(
                "muc_light_blocking", columns, jid.domain, jid.local or "",
                "service, what, who")),
        ]

    # -- hooks ------------------------------------------------------------------------------
    async def remove_user(self, acc: None, jid: JID) -> None:
        """The account's memberships go with it: each of its rooms is told (a room it was
        the last member of ends, an owner leaving hands the room on, §5.4)."""
        user = bare(jid)
        for service, room in await self.store.user_rooms(user):
            try:
                change = await self.change_affiliations(None, service, room, [(user, "none")])
            except StanzaError:
                continue
            self.codec.notify_affiliations(self, service, room, "", JID.parse(user), change)
        return acc


    async def remove_domain(self, acc: None, host_type: str, domain: str) -> None:
        """removeDomain: the rooms of the domain's service (muclight.<domain>) go with it,
        as 6.4's mod_muc_light remove_domain; a fixed service domain is every domain's."""
        if self.serves_host_type(host_type) and "@HOST@" in self.opts["host"]:
            service = self.service_of(domain)
            for key in [k for k in self._cache if k[0] == service]:
                del self._cache[key]
            await self.store.delete_service(service)
        return acc

    async def roster_get(self, items: list[Element], user: JID) -> list[Element]:
        """rooms_in_rosters (MUC Light protocol §6.1): the user's rooms of its host's service
        as roster items of group urn:xmpp:muclight:0, subscription 'to', with the version."""
        if not self.opts["rooms_in_rosters"]:
            return items
        service = self.service_of(user.domain)
        names = [r for _, r in await self.store.user_rooms(bare(user), service)]
        infos = await self.store.room_infos(service, names)
        out = list(items)
        for name in names:
            found = infos.get(name)
            if found is None:
                continue
            item = Element("item", ns.ROSTER, {"jid": f"{name}@{service}",
                                               "name": self.schema.name_of(found.config, name),
                                               "subscription": "to"})
            item.add("group", text=NS)
            item.add("version", text=found.version)
            out.append(item)
        return out


class _RoomLock:
    """One room's turn: requests on a room run one at a time, in arrival order."""

    def __init__(self, module: ModMucLight, key: tuple[str, str]) -> None:
        self.module, self.key = module, key

    async def __aenter__(self) -> None:
        lock = self.module._locks.get(self.key)
        if lock is None:
            lock = self.module._locks[self.key] = asyncio.Lock()
        self.lock = lock
        await lock.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.lock.release()
        if not self.lock.locked() and not getattr(self.lock, "_waiters", None):
            self.module._locks.pop(self.key, None)

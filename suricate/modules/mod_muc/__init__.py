"""mod_muc: XEP-0045 Multi-User Chat on a service subdomain (``conference.@HOST@``).

The module owns its service domains through the module seam for subdomains
(``Module.serve_subdomains``, routed by the component table): every stanza to ``conference.<host>`` or a room or
occupant JID under it arrives in ``route``. Rooms (``room.Room``) are objects of this process;
a persistent room is written to the module's store after each change, so an idle one can be
dropped from memory (hibernation, ``hibernate_timeout``) and rebuilt from the store on its
next stanza. Stanzas arriving while a room is being read back wait in order.

Also: XEP-0249 direct invitations need nothing from the server (they go user to user);
XEP-0359 stanza-ids and XEP-0421 occupant-ids are stamped on every groupchat message;
XEP-0410 self-pings are answered by the room; XEP-0486 room avatars are the rooms' vCards
(``avatar``).

With ``[general] sm_backend = "redis"`` a room lives on one node of the cluster, claimed in
Redis; the other nodes forward its stanzas there (``placement``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Coroutine, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from suricate.core import hooks as H
from suricate.core.cluster import NodeUnreachable
from suricate.core.module import GraphQLCategory, Module, PersonalData
from suricate.instrument.events import GAUGE, SPIRAL, declare
from suricate.jid import JID, InvalidJID
from suricate.modules.mod_muc.archive import archive_of
from suricate.modules.mod_muc.avatar import parse_stored
from suricate.modules.mod_muc.config import MUC_OPTIONS, RoomConfig
from suricate.modules.mod_muc.limits import Limits
from suricate.modules.mod_muc.room import MUC, Room, count_down
from suricate.modules.mod_muc.store import MucStore
from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element, SharedElement

if TYPE_CHECKING:
    from suricate.config.loader import References
    from suricate.core.component_table import LocalService
    from suricate.core.domains import Domain
    from suricate.core.server import Server
    from suricate.modules.mod_muc.conferences import Conferences
    from suricate.modules.mod_muc.http_auth import HttpAuth
    from suricate.modules.mod_muc.placement import Placement, RoomCluster

log = logging.getLogger("suricate.mod_muc")

MOD_MUC_ROOMS = declare(
    "mod_muc_rooms", ("host_type",), {"online": GAUGE, "hibernated": GAUGE},
    "Rooms of the MUC service: online (in memory) and hibernated (persistent rooms whose "
    "state is only in storage)")
MOD_MUC_HIBERNATIONS = declare(
    "mod_muc_hibernations", ("host_type",), {"count": SPIRAL},
    "Idle persistent rooms dropped from memory after hibernate_timeout")
MOD_MUC_DEEP_HIBERNATIONS = declare(
    "mod_muc_deep_hibernations", ("host_type",), {"count": SPIRAL},
    "Persistent rooms stopped with only their owner in them after hibernated_room_timeout")

Pending = tuple[JID, JID, Element]
# Asked of every node (server.cluster.ask) for the service's disco#items: the rooms in its
# memory, which the shared storage does not list (temporary rooms) or lists as they were.
ITEMS_OP = "mod_muc.items"


class ModMuc(Module):
    name = "mod_muc"
    options = MUC_OPTIONS
    store_class = MucStore
    store: MucStore
    xeps = ("0045", "0249", "0359", "0410", "0421", "0486")
    graphql = GraphQLCategory("suricate.modules.mod_muc.graphql")
    hooks = ((H.SESSION_CLOSED, "session_closed", 60),
             (H.REMOVE_USER, "remove_user", 60),
             (H.REMOVE_DOMAIN, "remove_domain", 60))

    @classmethod
    def check_config(cls, opts: Mapping[str, Any], path: str, refs: References) -> None:
        for option in ("access", "access_create", "access_admin", "access_persistent"):
            refs.access_defined(f"{path}.{option}", opts.get(option))
        for option in ("room_shaper", "user_message_shaper", "user_presence_shaper"):
            refs.shaper_defined(f"{path}.{option}", opts.get(option))
        pool = opts.get("http_auth_pool")
        if pool not in (None, "none"):
            refs.pool_defined(f"{path}.http_auth_pool", "http", pool)

    def __init__(self, server: Server, opts: Mapping[str, Any]) -> None:
        super().__init__(server, opts)
        self.rooms: dict[JID, Room] = {}
        self.stored: set[JID] = set()  # persistent rooms in the store (online or not)
        self.loading: dict[JID, list[Pending]] = {}
        self.services: dict[str, str] = {}  # service domain -> the host it serves
        self._added: dict[str, LocalService] = {}  # services of dynamic domains added later
        self.user_rooms: dict[JID, int] = {}  # bare JID -> rooms joined (max_user_conferences)
        self.joined: dict[JID, set[Room]] = {}  # full JID -> rooms it is an occupant of
        self.hibernations = 0
        #: The history (§7.2.15) of hibernated rooms, and when their subject changed: they
        #: are in no storage, and a quiet channel would otherwise greet its next visitor
        #: with none once everyone left for hibernate_timeout (as MongooseIM's hibernated
        #: room process keeps them). Lost at a restart, as in 6.4.
        self.kept_history: dict[JID, tuple[deque[Any], float | None]] = {}
        #: mod_muc_log, set by it when it runs: rooms with logging on report their events to
        #: ``room_log.event`` (None: nothing is logged and rooms pay one attribute test).
        self.room_log: Any = None
        self._sweeper: asyncio.Task[None] | None = None
        self._locks: dict[JID, asyncio.Lock] = {}
        self.placement: Placement | None = None  # several nodes (sm_backend = "redis")
        # max_user_conferences across the nodes (several nodes and a limit): conferences.py
        self.conferences: Conferences | None = None
        timeout = opts["hibernate_timeout"]
        self.hibernate_after: float | None = None if timeout is None else timeout / 1000.0
        # MongooseIM's deep hibernation: a room hibernated (idle past hibernate_timeout) for
        # hibernated_room_timeout more, checked every hibernated_room_check_interval.
        check, deep = opts["hibernated_room_check_interval"], opts["hibernated_room_timeout"]
        self.deep_check_every: float | None = None
        self.deep_after: float | None = None
        if check is not None and deep is not None and self.hibernate_after is not None:
            self.deep_check_every = max(check / 1000.0, 0.05)
            self.deep_after = self.hibernate_after + deep / 1000.0
        self._deep_sweeper: asyncio.Task[None] | None = None
        self.deep_hibernations = 0
        lock_timeout = opts["room_lock_timeout"]
        #: Seconds a new locked room waits for its configuration (None: until it comes).
        self.lock_timeout: float | None = None if lock_timeout is None else lock_timeout / 1000
        #: min_message_interval, min_presence_interval, the shapers (limits.py); None: off.
        self.limits = Limits.from_options(opts, server.cfg["shaper"])
        #: http_auth_pool: room passwords checked by an HTTP service (None: the room's own).
        self.http_auth: HttpAuth | None = None
        pool = opts["http_auth_pool"]
        if pool != "none":
            # Imported only with a pool (with the pool's TLS context code): not at every start.
            from suricate.modules.mod_muc.http_auth import HttpAuth

            self.http_auth = HttpAuth(server.cfg["outgoing_pools"]["http"][pool])

    # -- life cycle -----------------------------------------------------------------------
    async def start(self) -> None:
        # The service domains, routed to ``route`` through the component table (the
        # module seam for subdomains) and listed in each host's disco#items.
        self.services.update(self.serve_subdomains(self.opts["host"], self.route))
        self.server.domains.listeners.append(self._domain_changed)
        for host, room in await self.store.all_rooms():
            self.stored.add(JID._prepared(room, host, None))
        # Captured now: the router's ``elsewhere`` is unset while it routes a stanza that
        # came from another node (Router.route_here).
        cluster = self.server.router.elsewhere
        if cluster is not None:
            # Several nodes only (sm_backend = "redis"): a single node imports none of it.
            from suricate.modules.mod_muc.placement import RoomCluster

            if isinstance(cluster, RoomCluster):
                self._place(cluster)
        if self.http_auth is not None:
            await self.http_auth.start()
        if self.opts["load_permanent_rooms_at_startup"]:
            await self._load_permanent_rooms()
        self._gauges()
        if self.hibernate_after is not None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        if self.deep_check_every is not None:
            self._deep_sweeper = asyncio.get_running_loop().create_task(self._deep_sweep())

    def _place(self, cluster: RoomCluster) -> None:
        """Rooms spread over the nodes (placement.py), and max_user_conferences across them."""
        from suricate.modules.mod_muc.conferences import Conferences
        from suricate.modules.mod_muc.graphql import ANSWER_OP, answer
        from suricate.modules.mod_muc.placement import Placement

        self.placement = Placement(self, cluster)
        self.placement.start()
        # The admin API's operations on a room run on the room's node (graphql.py).
        self.server.cluster.answer_on(ANSWER_OP, partial(answer, self.server))
        self.server.cluster.answer_on(ITEMS_OP, self._rooms_here)
        if self.opts["max_user_conferences"]:
            self.conferences = Conferences(cluster.redis, cluster.store.prefix,
                                           cluster.name, self.opts["max_user_conferences"])

    async def announce_stop(self) -> None:
        # XEP-0045 §15.6: every occupant leaves with 332 while the streams are up: those
        # on other servers would not get it once the s2s streams closed (Server.stop),
        # and their clients would go on showing a room that is gone.
        for room in list(self.rooms.values()):
            room.shutdown()

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._deep_sweeper is not None:
            self._deep_sweeper.cancel()
            self._deep_sweeper = None
        for room in list(self.rooms.values()):
            room.shutdown()
        if self.placement is not None:
            # §3 of the task: persisted first, then the claims go (another node may take a
            # room the moment its claim is gone, and reads it from storage).
            for _ in range(100):
                if not any(room.pending_writes for room in self.rooms.values()):
                    break
                await asyncio.sleep(0.05)
            from suricate.modules.mod_muc.graphql import ANSWER_OP
            self.server.cluster.answer_off(ANSWER_OP)
            self.server.cluster.answer_off(ITEMS_OP)
            await self.placement.stop()
            self.placement = None
            self.conferences = None
        self.rooms.clear()
        if self.http_auth is not None:
            await self.http_auth.stop()
        if self._domain_changed in self.server.domains.listeners:
            self.server.domains.listeners.remove(self._domain_changed)
        for local in self._added.values():
            self.server.components.unserve(local)
        self._added.clear()
        self.services.clear()  # those of serve_subdomains are undone by unwire
        # Storage writes in flight finish before the store closes (server.drain).

    async def _load_permanent_rooms(self) -> None:
        """load_permanent_rooms_at_startup: every stored room of the served services is read
        into memory now, as its first stanza would read it. With several nodes a room is
        loaded by the node that claims it (one owner per room, placement.py): the first
        node to start takes the free ones."""
        started = time.monotonic()
        loaded = 0
        for key in sorted(self.stored, key=str):
            if key.domain not in self.services or key in self.rooms:
                continue
            if self.placement is not None:
                try:
                    owner, _ = await self.placement.owner(key)
                except Exception:
                    log.warning("muc_load_claim_failed room=%s", key, exc_info=True)
                    continue
                if owner != self.placement.me:
                    continue
            if key not in self.loading:
                self.loading[key] = []
                await self._wake(key)
            loaded += key in self.rooms
        log.info("muc_permanent_rooms_loaded rooms=%d seconds=%.3f", loaded,
                 time.monotonic() - started)

    def _service_of(self, domain: str) -> str:
        return self.opts["host"].replace("@HOST@", domain)

    def _domain_changed(self, domain: str, now: Domain | None) -> None:
        """A dynamic domain was added (it gets its service) or removed (the service it got
        that way goes)."""
        service = self._service_of(domain)
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

    # -- routing ----------------------------------------------------------------------------
    def route(self, frm: JID, to: JID, stanza: Element) -> None:
        """Every stanza to the service, a room or an occupant (the router's service seam)."""
        stype = stanza.attrs.get("type")
        if stype not in ("error", "result", "unavailable") \
                and not self.allows(self.opts["access"], frm, to.domain):
            self.server.router.bounce(stanza, StanzaError(
                "forbidden", "access denied by service policy"))
            return
        if to.local is None:
            self._to_service(frm, to, stanza)
            return
        room = self.rooms.get(to.bare)
        if room is not None:
            room.route(frm, to, stanza)
        elif self.placement is not None:
            self.placement.route(frm, to, stanza)  # which node has it (placement.py)
        else:
            self.route_local(frm, to, stanza)

    def route_local(self, frm: JID, to: JID, stanza: Element) -> None:
        """A stanza for a room of this node (in memory, hibernated, or to be created)."""
        key = to.bare
        room = self.rooms.get(key)
        if room is not None:
            room.route(frm, to, stanza)
            return
        queue = self.loading.get(key)
        if queue is not None:
            queue.append((frm, to, stanza))
        elif key in self.stored or (self.placement is not None
                                    and key in self.placement.unchecked):
            # A hibernated room: read it back, stanzas wait in order meanwhile.
            self.loading[key] = [(frm, to, stanza)]
            self.server.spawn(self._wake(key))
        else:
            self._to_missing_room(frm, to, stanza)

    async def _wake(self, key: JID) -> None:
        queue = self.loading[key]
        if self.placement is not None:
            self.placement.unchecked.discard(key)
        try:
            stored = await self.store.load_room(key.domain, key.local or "")
        except Exception:
            log.exception("muc_room_load_failed room=%s", key)
            stored = None
            del self.loading[key]
            for _, _, stanza in queue:
                self.server.router.bounce(stanza, StanzaError("internal-server-error"))
            return
        room = None
        if stored is not None:
            config = RoomConfig.from_dict(stored.config)
            secret = stored.config.get("_secret")
            affiliations: dict[JID, tuple[str, str]] = {}
            for jid, entry in stored.affiliations.items():
                try:
                    affiliations[JID.parse(jid)] = entry
                except (InvalidJID, ValueError):
                    log.warning("muc_bad_stored_affiliation room=%s jid=%r", key, jid)
            nicks: dict[JID, str] = {}
            for jid, nick in stored.nicks.items():
                try:
                    nicks[JID.parse(jid)] = nick
                except (InvalidJID, ValueError):
                    log.warning("muc_bad_stored_nick room=%s jid=%r", key, jid)
            vcard = parse_stored(stored.vcard) if stored.vcard is not None else None
            if stored.vcard is not None and vcard is None:
                log.warning("muc_bad_stored_vcard room=%s", key)
            room = Room(self, key, config, affiliations=affiliations, subject=stored.subject,
                        subject_author=stored.subject_author,
                        secret=bytes.fromhex(secret) if secret else None, nicks=nicks,
                        vcard=vcard)
            kept = self.kept_history.pop(key, None)
            if kept is not None:
                room.history.extend(kept[0])  # history_size unchanged: it all fits
                room.subject_stamp = kept[1]
            self.rooms[key] = room
            self.stored.add(key)  # another node may have stored it
            self._gauges(key.domain)
        else:
            self.stored.discard(key)  # deleted meanwhile: the stanzas meet a missing room
            self.kept_history.pop(key, None)
        # No await from here on: nothing can join the queue while it is drained in order.
        del self.loading[key]
        for frm, to, stanza in queue:
            if room is not None and not room.gone:
                room.route(frm, to, stanza)
            else:
                self.route(frm, to, stanza)

    def _to_missing_room(self, frm: JID, to: JID, stanza: Element) -> None:
        stype = stanza.attrs.get("type")
        if stanza.name != "presence":
            # §7.? / XEP-0030: nothing lives at this address.
            self.server.router.bounce(stanza, StanzaError("item-not-found", "no such room"))
            return
        if stype is not None:
            return  # unavailable, error, subscriptions: nothing to leave or answer
        if not to.resource:
            self.server.router.bounce(stanza, StanzaError("jid-malformed",
                                                          "a room nickname is required"))
            return
        if not self.allows(self.opts["access_create"], frm, to.domain):
            # §10.1.1: a user who may not create rooms gets not-allowed.
            self.server.router.bounce(stanza, StanzaError(
                "not-allowed", "room creation is denied by service policy"))
            return
        max_id = self.opts["max_room_id"]
        if max_id is not None and len(to.local or "") > max_id:
            self.server.router.bounce(stanza, StanzaError("not-acceptable",
                                                          "room name too long (max_room_id)"))
            return
        defaults = self.opts["default_room"]
        config = RoomConfig.from_options(defaults)
        config.max_users = min(config.max_users, self.opts["max_users"])
        affiliations: dict[JID, tuple[str, str]] = {}
        for entry in defaults["affiliations"]:
            try:
                affiliations[JID(entry["user"], entry["server"])] = (entry["affiliation"], "")
            except InvalidJID:
                log.warning("muc_bad_default_affiliation %r", entry)
        affiliations[frm.bare] = ("owner", "")
        # §10.1.1: a client speaking MUC gets a locked room to configure; an older
        # (groupchat 1.0) client gets an instant room at once.
        locked = stanza.find("x", MUC) is not None
        room = Room(self, to.bare, config, affiliations=affiliations,
                    subject=defaults["subject"], subject_author=defaults["subject_author"],
                    locked=locked)
        self.rooms[room.jid] = room
        self._gauges(room.jid.domain)
        room.created(frm, to.resource, stanza)
        if locked and self.lock_timeout is not None:
            # Dino 0.4's "Join Channel" creates a room this way and never sends the owner
            # form: without a deadline nobody else could ever enter it (Prosody unlocks
            # after muc_room_lock_timeout, 300 s by default).
            asyncio.get_running_loop().call_later(self.lock_timeout, self._lock_expired, room)
        if not room.occupants and not room.holding:
            # The creator could not join (a limit): the room goes as it came.
            self._forget(room)
        elif not locked and config.persistent:
            self.store_room(room)

    def _lock_expired(self, room: Room) -> None:
        """room_lock_timeout: the owner did not configure the new room in time; it opens as
        an instant room (XEP-0045 §10.1.2: the default configuration)."""
        if room.locked and not room.gone and self.rooms.get(room.jid) is room:
            room.open_unconfigured()

    # -- what operations ask (the GraphQL muc category) -------------------------------------
    async def get_room(self, key: JID) -> Room | None:
        """The room at ``key`` in memory, read back first if it hibernates; None if there
        is no such room."""
        room = self.rooms.get(key)
        if room is not None:
            return room
        unchecked = self.placement is not None and key in self.placement.unchecked
        if (key in self.stored or unchecked) and key not in self.loading:
            self.loading[key] = []
            await self._wake(key)
        for _ in range(500):  # read back by a stanza meanwhile: wait for it
            if key not in self.loading:
                break
            await asyncio.sleep(0.01)
        return self.rooms.get(key)

    def create_room(self, key: JID, owner: JID) -> Room:
        """An unlocked room with the default configuration, ``owner`` its owner (MongooseIM's
        createInstantRoom: the room exists before anyone joins)."""
        defaults = self.opts["default_room"]
        config = RoomConfig.from_options(defaults)
        config.max_users = min(config.max_users, self.opts["max_users"])
        room = Room(self, key, config, affiliations={owner.bare: ("owner", "")},
                    subject=defaults["subject"], subject_author=defaults["subject_author"])
        self.rooms[key] = room
        self._gauges(key.domain)
        if config.persistent:
            self.store_room(room)
        return room

    async def room_names(self, service: str) -> list[tuple[str, Room | None, dict[str, Any]]]:
        """Every room of ``service``: (name, the room if in memory, stored configuration)."""
        found: dict[str, tuple[Room | None, dict[str, Any]]] = {}
        for name, config in await self.store.list_rooms(service):
            found[name] = (None, dict(config))
        for jid, room in self.rooms.items():
            if jid.domain == service and not room.locked:
                found[jid.local or ""] = (room, room.config.to_dict())
        return [(name, *found[name]) for name in sorted(found)]

    # -- the service itself (XEP-0045 §6.1, §6.3) ------------------------------------------
    def _to_service(self, frm: JID, to: JID, stanza: Element) -> None:
        stype = stanza.attrs.get("type")
        if stanza.name == "iq" and stype in ("get", "set"):
            payload = stanza.first_element()
            if stype == "get" and payload is not None and payload.xmlns == ns.DISCO_INFO:
                try:
                    info = self._service_info(payload)
                except StanzaError as err:
                    self.server.router.bounce(stanza, err)
                    return
                self._iq_result(to, frm, stanza, info)
            elif stype == "get" and payload is not None and payload.xmlns == ns.DISCO_ITEMS:
                self.server.spawn(self._service_items(frm, to, stanza, payload))
            elif stype == "get" and payload is not None and payload.xmlns == ns.PING:
                self._iq_result(to, frm, stanza, None)
            elif stype == "get" and payload is not None and payload.xmlns == ns.VCARD \
                    and payload.name == "vCard":
                # The service lists vcard-temp (XEP-0486 §3.1, for its rooms); it has no
                # vCard of its own: an empty one (XEP-0054 §3.1), as for a room without.
                self._iq_result(to, frm, stanza, Element("vCard", ns.VCARD))
            else:
                self.server.router.bounce(stanza, StanzaError("service-unavailable"))
        elif stanza.name == "message" and stype != "error":
            self.server.router.bounce(stanza, StanzaError("service-unavailable"))
        # presence to the service carries nothing for it

    def _iq_result(self, frm: JID, to: JID, iq: Element, payload: Element | None) -> None:
        attrs = {"type": "result", "from": str(frm), "to": str(to)}
        if "id" in iq.attrs:
            attrs["id"] = iq.attrs["id"]
        self.server.router.route(frm, to, Element("iq", ns.CLIENT, attrs,
                                                  [payload] if payload is not None else []))

    def _service_info(self, payload: Element) -> Element:
        if payload.attrs.get("node"):
            raise StanzaError("item-not-found")
        query = Element("query", ns.DISCO_INFO)
        query.add("identity", attrs={"category": "conference", "type": "text",
                                     "name": "Chatrooms"})
        # vcard-temp: XEP-0486 §3.1, a client checks the service before setting a room avatar.
        for var in sorted((ns.DISCO_INFO, ns.DISCO_ITEMS, MUC, ns.PING, ns.VCARD,
                           "urn:xmpp:occupant-id:0", "urn:xmpp:sid:0")):
            query.add("feature", attrs={"var": var})
        # mod_disco's server_info entries that name mod_muc (XEP-0157 on the service).
        disco = self.server.modules.get("mod_disco")
        if disco is not None:
            from suricate.modules.mod_disco import server_info_form
            form = server_info_form(disco.opts.get("server_info", []), self.name)
            if form is not None:
                query.append(form)
        return query

    async def _service_items(self, frm: JID, to: JID, stanza: Element,
                             payload: Element) -> None:
        """§6.3: the public rooms, online or hibernated."""
        query = Element("query", ns.DISCO_ITEMS)
        listed: dict[str, str] = {}
        try:
            for name, config in await self.store.list_rooms(to.domain):
                if config.get("public", True):
                    listed[name] = config.get("title") or name
        except Exception:
            log.exception("muc_list_rooms_failed service=%s", to.domain)
            self.server.router.bounce(stanza, StanzaError("internal-server-error"))
            return
        # What a room's node holds in memory is its current state (public or not, title).
        for name, title, shown in await self._rooms_in_memory(to.domain):
            if shown:
                listed[name] = title
            else:
                listed.pop(name, None)
        for name in sorted(listed):
            query.add("item", attrs={"jid": f"{name}@{to.domain}", "name": listed[name]})
        self._iq_result(to, frm, stanza, query)

    async def _rooms_here(self, service: str) -> list[tuple[str, str, bool]]:
        """The rooms of ``service`` in this node's memory: (name, title, listed in
        disco#items: public and unlocked, §6.3)."""
        return [(jid.local or "", room.config.title or jid.local or "",
                 room.config.public and not room.locked)
                for jid, room in self.rooms.items() if jid.domain == service]

    async def _rooms_in_memory(self, service: str) -> list[tuple[str, str, bool]]:
        """``_rooms_here`` of every node (of this one alone without a cluster); a node that
        does not answer in time contributes nothing (its stored rooms are listed anyway)."""
        if self.placement is None:
            return await self._rooms_here(service)
        cluster = self.server.cluster

        async def of(node: str) -> list[tuple[str, str, bool]]:
            try:
                found = await cluster.ask(node, ITEMS_OP, service)
            except NodeUnreachable:
                log.warning("muc_items_no_answer node=%s", node)
                return []
            return [(str(n), str(t), bool(p)) for n, t, p in found or ()]

        try:
            nodes = await cluster.nodes()
        except Exception:
            log.warning("muc_items_nodes_unknown", exc_info=True)  # Redis away: this node's
            return await self._rooms_here(service)
        answers = await asyncio.gather(*(of(node) for node in nodes))
        return [room for answer in answers for room in answer]

    # -- what rooms ask of the service --------------------------------------------------------
    def allows(self, rule: str, jid: JID, service: str) -> bool:
        """Access rule ``rule`` for ``jid`` on ``service``, checked for the domain the service
        belongs to (conference.a.test: a.test's users are its "local" ones, a.test's
        [[host_config]] rules apply), as 6.4's mod_muc checks its rules for its host."""
        return self.server.access_allows(rule, jid, self.services.get(service))

    def is_service_admin(self, jid: JID, service: str) -> bool:
        rule = self.opts["access_admin"]
        return rule != "none" and self.allows(rule, jid, service)

    def may_join_another(self, jid: JID) -> bool:
        limit = self.opts["max_user_conferences"]
        return not limit or self.user_rooms.get(jid.bare, 0) < limit

    def occupant_joined(self, jid: JID, room: Room, *, first: bool = True) -> None:
        """Session ``jid`` is in ``room`` now; ``first``: the account's first session there.
        The account's rooms (max_user_conferences) count ``room`` once, however many of its
        sessions are there (multi-session)."""
        if first:
            bare = jid.bare
            self.user_rooms[bare] = self.user_rooms.get(bare, 0) + 1
        self.joined.setdefault(jid, set()).add(room)

    def occupant_left(self, jid: JID, room: Room, *, last: bool = True) -> None:
        """Session ``jid`` left ``room``; ``last``: no other session of the account is
        there (only then does the room stop counting for it)."""
        rooms = self.joined.get(jid)
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self.joined[jid]
        if self.conferences is not None:
            self.server.spawn(self.conferences.leave(jid, room.jid))
        if not last:
            return
        count_down(self.user_rooms, jid.bare)

    async def session_closed(self, acc: None, c2s: Any, reason: str) -> None:
        """A local session ended: it leaves the rooms it is still in (mod_presence, when
        enabled, has already sent their unavailable presence for it)."""
        jid = c2s.jid
        if jid is not None and jid in self.joined:
            for room in list(self.joined.get(jid, ())):
                room.session_closed(jid)
        return acc

    async def personal_data(self, jid: JID) -> list[PersonalData]:
        """The rooms that name the account, for GDPR retrieval: its affiliations and
        registered nicks (stored, and those of rooms living in memory only), and the rooms it
        is in now with its nick there."""
        bare = jid.bare
        rows: dict[str, list[str]] = {}
        for host, room, aff, reason, nick in await self.store.account_rooms(str(bare)):
            rows[f"{room}@{host}"] = [aff, reason, nick, ""]
        for key, room_ in self.rooms.items():
            row = rows.setdefault(str(key), ["", "", "", ""])
            if bare in room_.affiliations:
                row[0], row[1] = room_.affiliations[bare]
            if bare in room_.nicks:
                row[2] = room_.nicks[bare]
        for full, joined in self.joined.items():
            if full.bare != bare:
                continue
            for room_ in joined:
                nicks = [n for n, occ in room_.occupants.items() if full in occ.sessions]
                if nicks:
                    rows.setdefault(str(room_.jid), ["", "", "", ""])[3] = nicks[0]
        return [PersonalData("muc", ("room", "affiliation", "reason", "registered_nick",
                                     "occupant_nick"),
                             [(room, *row) for room, row in sorted(rows.items()) if any(row)])]

    async def remove_user(self, acc: None, jid: JID) -> None:
        bare = jid.bare
        for room in self.rooms.values():
            room.affiliations.pop(bare, None)
            room.nicks.pop(bare, None)
        await self.store.remove_user(str(bare))
        return acc

    async def remove_domain(self, acc: None, host_type: str, domain: str) -> None:
        """removeDomain: the rooms of the domain's service (conference.<domain>) go with it,
        as in MongooseIM 6.4 (mod_muc's remove_domain), so a customer given the domain name
        later finds none of them. A fixed service domain (no @HOST@) is every domain's and
        keeps its rooms."""
        if not self.serves_host_type(host_type) or "@HOST@" not in self.opts["host"]:
            return acc
        service = self._service_of(domain)
        for room in [r for jid, r in self.rooms.items() if jid.domain == service]:
            room.destroy(None, "domain removed")  # §10.9: the occupants are told
        self.stored -= {jid for jid in self.stored if jid.domain == service}
        for jid in [j for j in self.kept_history if j.domain == service]:
            del self.kept_history[jid]
        await self.store.delete_service(service)
        return acc

    def fan_out(self, frm: JID, message: Element, targets: list[JID]) -> None:
        """One groupchat message to every occupant, serialized once (DESIGN §7 "Rooms"):
        the copies differ by ``to`` only, so they share their children and the children's
        XML (``SharedElement``)."""
        route = self.server.router.route
        name, xmlns, attrs, children = message.name, message.xmlns, message.attrs, \
            message.children
        shared: dict[object, Any] = {}
        for jid in targets:
            copy_attrs = dict(attrs)
            copy_attrs["to"] = str(jid)
            route(frm, jid, SharedElement(name, xmlns, copy_attrs, children, shared))

    def room_emptied(self, room: Room) -> None:
        if room.locked or not room.config.persistent:
            # §10.1 / §10.9: a temporary room ends with its last occupant.
            self._forget(room)
        elif self.hibernate_after == 0:
            self._hibernate(room)

    def room_destroyed(self, room: Room) -> None:
        self._forget(room)
        if room.jid in self.stored:
            self.stored.discard(room.jid)
            self.write(room, self.store.delete_room(room.jid.domain, room.jid.local or ""))

    def taken_over(self, room: Room) -> None:
        """Another node holds ``room``'s claim now (it took this node for dead): this copy
        ends without touching the claim, the storage or the archive, which are that node's."""
        room.gone = True
        room.taken_over()
        if self.rooms.get(room.jid) is room:
            del self.rooms[room.jid]
            self._gauges(room.jid.domain)

    def _forget(self, room: Room) -> None:
        """The room ends: destroyed (§10.9, by its owner or the admin API), or temporary and
        left by its last occupant."""
        room.gone = True
        self.kept_history.pop(room.jid, None)
        if self.rooms.get(room.jid) is room:
            del self.rooms[room.jid]
            self._gauges(room.jid.domain)
            if self.placement is not None:
                self.placement.release(room.jid)
            if not room.locked and self.server.hooks.has(H.FORGET_ROOM):
                # MongooseIM 6.4's forget_room: what other modules keep about the room goes
                # (mod_smart_markers: the markers sent to it), so a new room of the same name
                # starts without it. 6.4 runs it when a persistent room leaves its database;
                # here at every end of a room, as for its archive below: a temporary room's
                # markers would otherwise reach the next room of that name. Once per room
                # (inside the check that this is the room the node serves under its JID).
                host = self.services.get(room.jid.domain, room.jid.domain)
                self.server.spawn(self.server.hooks.fold_async(H.FORGET_ROOM, None, host,
                                                               room.jid))
        archive = archive_of(self.server)
        if not room.locked and archive is not None and archive.archives(room.jid.domain):
            # Its archive goes with it: a new room of the same name starts empty and does not
            # show the old one's messages to its new occupants.
            archive.remove_room(room.jid)

    def store_room(self, room: Room) -> None:
        self.stored.add(room.jid)
        config = room.config.to_dict()
        config["_secret"] = room.secret.hex()
        affiliations = {str(j): entry for j, entry in room.affiliations.items()}
        nicks = {str(j): nick for j, nick in room.nicks.items()}
        vcard = room.vcard.serialize() if room.vcard is not None else None
        self.write(room, self.store.store_room(room.jid.domain, room.jid.local or "", config,
                                               room.subject, room.subject_author,
                                               affiliations, nicks, vcard))

    def persistence_changed(self, room: Room, old: bool, new: bool) -> None:
        if old and not new:
            self.stored.discard(room.jid)
            if room.is_empty():
                self._forget(room)

    def write(self, room: Room, coro: Coroutine[Any, Any, Any]) -> None:
        """A storage write for ``room``, in order with its other writes; the room is not
        hibernated while one is pending."""
        room.pending_writes += 1
        lock = self._locks.get(room.jid)
        if lock is None:
            lock = self._locks[room.jid] = asyncio.Lock()
        self.server.spawn(self._write(room, lock, coro))

    async def _write(self, room: Room, lock: asyncio.Lock, coro: Coroutine[Any, Any, Any]) -> None:
        try:
            async with lock:
                await coro
        except Exception:
            log.exception("muc_room_write_failed room=%s", room.jid)
        finally:
            room.pending_writes -= 1
            if room.pending_writes == 0 and not lock.locked():
                self._locks.pop(room.jid, None)

    # -- hibernation -----------------------------------------------------------------------
    async def _sweep(self) -> None:
        assert self.hibernate_after is not None
        interval = min(max(self.hibernate_after / 2, 0.05), 30.0)
        while True:
            await asyncio.sleep(interval)
            deadline = time.monotonic() - self.hibernate_after
            for room in list(self.rooms.values()):
                if room.is_empty() and room.last_active <= deadline:
                    self._hibernate(room)

    async def _deep_sweep(self) -> None:
        """MongooseIM 6.4's deep hibernation (hibernated_room_check_interval,
        hibernated_room_timeout): a persistent room idle for hibernate_timeout plus
        hibernated_room_timeout leaves memory even when its only occupant is its owner, who
        is told so (an unavailable presence with 332). An empty one left already
        (``_sweep``), unless a write was pending then."""
        assert self.deep_check_every is not None and self.deep_after is not None
        while True:
            await asyncio.sleep(self.deep_check_every)
            deadline = time.monotonic() - self.deep_after
            for room in list(self.rooms.values()):
                if room.last_active > deadline or not room.config.persistent or room.locked \
                        or room.gone:
                    continue
                if room.is_empty():
                    self._hibernate(room)
                elif room.owner_alone():
                    room.stop_for_hibernation()
                    self.deep_hibernations += 1
                    domain = self.services.get(room.jid.domain, room.jid.domain)
                    self.server.instrument.emit(MOD_MUC_DEEP_HIBERNATIONS,
                                                {"host_type": domain}, {"count": 1})
                    self._hibernate(room)

    def _hibernate(self, room: Room) -> None:
        if not room.config.persistent or room.locked or room.pending_writes \
                or room.jid not in self.stored:
            return
        room.gone = True
        del self.rooms[room.jid]
        if room.history or room.subject_stamp is not None:
            self.kept_history[room.jid] = (room.history, room.subject_stamp)
        else:
            self.kept_history.pop(room.jid, None)
        self.hibernations += 1
        domain = self.services.get(room.jid.domain, room.jid.domain)
        self.server.instrument.emit(MOD_MUC_HIBERNATIONS, {"host_type": domain},
                                    {"count": 1})
        self._gauges(room.jid.domain)

    def _gauges(self, service: str | None = None) -> None:
        if not self.server.handlers:
            return  # no [instrumentation]: nothing to count for
        services = [service] if service is not None else list(self.services)
        for svc in services:
            online = sum(1 for j in self.rooms if j.domain == svc)
            hibernated = sum(1 for j in self.stored if j.domain == svc and j not in self.rooms)
            self.server.instrument.emit(
                MOD_MUC_ROOMS, {"host_type": self.services.get(svc, svc)},
                {"online": online, "hibernated": hibernated})

    def counts(self) -> tuple[int, int]:
        """(online, hibernated) rooms of this node."""
        return len(self.rooms), sum(1 for j in self.stored if j not in self.rooms)


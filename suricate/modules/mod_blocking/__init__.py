"""mod_blocking: XEP-0191 Blocking Command.

The blocklist lives in storage and is cached on every session of the account
(the ``BLOCKLIST`` session slot), loaded when the resource is bound and replaced on each change, so the
per-stanza checks never touch the database. Checks made here:
- outbound, from the user to a blocked entity: refused with ``not-acceptable`` + ``<blocked/>``
  (§3.3), presence dropped;
- inbound, to an online session from a blocked entity: presence and messages dropped without
  a word, IQ get/set answered ``service-unavailable`` (§3.3);
- presence to the account's bare JID (subscriptions, probes) and messages for an offline
  account, through ``presence_to_user`` and ``privacy_check_inbound``;
- stanzas the server generates on behalf of a user who blocked the recipient (presence
  broadcasts, probe answers) are stopped before delivery to a local recipient.
On a block, subscribers the block matches see the user go unavailable; on an unblock they get
the user's current presence again (§3.3, §3.4).
With several nodes (``sm_backend = "redis"``) a change made on one node is cast to the nodes
holding the account's other sessions (``server.cluster.cast``), which update their sessions'
cache, push the change and send the presence the change calls for from their own sessions:
every session applies the same list wherever a stanza enters.
XEP-0377 reports attached to a block's items are kept for the operator (``reports.py``; the
``spam`` category of the admin API, ``graphql.py``).
JID matching follows §6 "JID Matching" (the XEP-0016 order): a full JID item matches only that resource, a
bare JID item every resource, a domain item the domain and everything at it.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

from suricate.config.loader import References
from suricate.config.modules_spec import backend, iqdisc
from suricate.config.spec import ListOf, Option, Section, Str
from suricate.core import hooks as H
from suricate.core.iq import IqRequest
from suricate.core.module import GraphQLCategory, Module, PersonalData, SessionSlot
from suricate.core.offline_batch import read_once
from suricate.jid import JID, InvalidJID
from suricate.modules.mod_blocking.reports import REASONS, REPORTING, ReportDesk, parse_reports
from suricate.modules.mod_blocking.store import BlockingStore
from suricate.modules.mod_presence import DIRECTED
from suricate.modules.mod_roster import roster_module
from suricate.protocol.errors import StanzaError, StreamError, error_reply
from suricate.storage.base import StorageError
from suricate.xml import ns
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.core.c2s import C2S
    from suricate.core.server import Server

log = logging.getLogger("suricate.mod_blocking")

# The account's blocklist cached on each of its sessions.
BLOCKLIST: SessionSlot[frozenset[JID]] = SessionSlot("mod_blocking.list", frozenset)
_BLOCKLIST_KEY = BLOCKLIST.key  # read on every stanza: one global, one dict lookup
_NOTHING: frozenset[JID] = frozenset()
# A change of the account's list for its sessions on the other nodes: the stanza cast is the
# <block/> or <unblock/> element of the request (an <unblock/> without items: all).
CAST_TOPIC = "mod_blocking.changed"


def blocklist(session: Any) -> frozenset[JID]:
    """The blocklist cached on ``session`` (empty before it is loaded)."""
    return BLOCKLIST.get(session) or _NOTHING


def drops_on_delivery(sessions: list[Any], frm: JID) -> bool:
    """Whether the recipient's sessions will drop a stanza from ``frm`` on delivery
    (``filter_inbound``, XEP-0191 §3.3): for modules that act on a message before it is
    delivered (the archive, the inbox), which must not keep what the account blocked. The
    list is the account's, the same in each of its sessions."""
    if not sessions:
        return False
    session = sessions[0]
    blocked = session.module_state.get(_BLOCKLIST_KEY)
    return bool(blocked) and not _exempt(session.jid, frm) and is_blocked(blocked, frm)


def is_blocked(blocklist: frozenset[JID], jid: JID) -> bool:
    """XEP-0191 §6 (JID Matching): whether ``jid`` is matched by any item of ``blocklist``."""
    if not blocklist:
        return False
    if jid in blocklist:  # user@domain/resource or domain/resource, exactly
        return True
    if jid.resource is not None and jid.bare in blocklist:  # user@domain: any resource
        return True
    if (jid.local is not None or jid.resource is not None) and \
            JID._prepared(None, jid.domain, None) in blocklist:
        return True  # domain: the domain itself and every address at it
    # "... or address containing a subdomain": a blocked domain covers its subdomains.
    labels = jid.domain.split(".")
    for i in range(1, len(labels)):
        if JID._prepared(None, ".".join(labels[i:]), None) in blocklist:
            return True
    return False


class ModBlocking(Module):
    name = "mod_blocking"
    options = Section(
        {"iqdisc": iqdisc("one_queue"), "backend": backend(),
         "report_recipients": Option(
             ListOf(Str()), [],
             "JIDs told by message of every XEP-0377 report attached to a block (who "
             "reported whom, why, the text and the archived messages named); the reports are "
             "stored and logged either way.")},
        doc="XEP-0191 Blocking Command, with XEP-0377 reports.",
    )
    xeps = ("0191", "0377")
    graphql = GraphQLCategory("suricate.modules.mod_blocking.graphql")
    hooks = (
        (H.SESSION_OPENED, "load_blocklist", 20),
        (H.USER_SEND_PACKET, "filter_outbound", 40),
        (H.USER_RECEIVE_PACKET, "filter_inbound", 10),
        (H.PRESENCE_TO_USER, "filter_presence_to_user", 10),
        (H.PRIVACY_CHECK_INBOUND, "check_offline", 50),
        # Before mod_privacy's (41), as for the stanza filters.
        (H.PRIVACY_CHECK_PACKET, "check_presence_out", 40),
    )
    iq_handlers = (("sm", ns.BLOCKING, "handle_iq"),)
    # XEP-0377 §2: the feature, and the reasons of §3 this server understands.
    features = (ns.BLOCKING, REPORTING, *REASONS)
    store_class = BlockingStore
    store: BlockingStore
    reports: ReportDesk

    @classmethod
    def check_config(cls, opts: Mapping[str, Any], path: str, refs: References) -> None:
        # A recipient that is no JID would never be told: stop start-up with its path.
        for i, raw in enumerate(opts.get("report_recipients") or []):
            try:
                JID.parse(raw)
            except (InvalidJID, ValueError):
                refs.report.error(f"{path}.report_recipients[{i}]", f"{raw!r} is not a JID")

    # -- the cache ------------------------------------------------------------------------------
    async def load_blocklist(self, acc: Any, c2s: C2S) -> Any:
        user = c2s.jid.bare
        try:
            items = await self.store.get_blocklist(user.domain, user.local or "")
        except StorageError:
            # Without its blocklist the session would receive what the user refused: end it
            # rather than deliver blocked stanzas.
            log.exception("blocklist_load_failed user=%s", user)
            c2s.stream_error(StreamError("internal-server-error"))
            return acc
        BLOCKLIST.set(c2s, frozenset(_parse_all(items)))
        return acc

    async def _blocklist_of(self, user: JID, together: bool = False) -> frozenset[JID]:
        """The account's blocklist: from a session when one is bound, else from storage
        (``together``: read with the other reads of this event-loop turn,
        ``get_blocklist_batched``: a login's presence and probes reach its offline contacts
        at once)."""
        for session in self._sessions(user):
            return blocklist(session)
        # In a batch of messages to the offline account (suricate/core/offline_batch.py):
        # read once for the batch.
        return await read_once(user, (self.name, "blocklist"),
                               lambda: self._stored(user, together))

    async def _stored(self, user: JID, together: bool = False) -> frozenset[JID]:
        read = self.store.get_blocklist_batched if together else self.store.get_blocklist
        items = await read(user.domain, user.local or "")
        return frozenset(_parse_all(items))

    # -- IQ: §3.2 blocklist, §3.3 block, §3.4 unblock, §3.5 unblock all -------------------------
    async def handle_iq(self, iq: IqRequest) -> Element | None:
        user = iq.to.bare
        if iq.frm.bare != user:
            # The blocklist is the account's own business; to anyone else the account
            # offers no such service.
            raise StanzaError("service-unavailable")
        payload = iq.payload
        if iq.type == "get":
            if payload.name != "blocklist":
                raise StanzaError("bad-request")
            return await self._get(iq, user)
        if payload.name == "block":
            jids = _items(payload)
            if not jids:
                # §3.3: a block without any item is a bad request.
                raise StanzaError("bad-request", "nothing to block")
            await self._block(user, jids)
            # XEP-0377 §5: the block is done as without a report; then the report is kept.
            reports = parse_reports(payload)
            if reports:
                await self.reports.receive(user, reports, _peer_ip(
                    self.server.sessions.lookup(iq.frm)))
            return None
        if payload.name == "unblock":
            await self._unblock(user, _items(payload))
            return None
        raise StanzaError("bad-request")

    async def _get(self, iq: IqRequest, user: JID) -> Element:
        items = await self.store.get_blocklist(user.domain, user.local or "")
        # §3.3: pushes go to the resources that asked for the list.
        session = self.server.sessions.lookup(iq.frm)
        if session is not None:
            _state(session)["requested"] = True
        result = Element("blocklist", ns.BLOCKING)
        for jid in items:
            result.add("item", attrs={"jid": jid})
        return result

    async def _block(self, user: JID, jids: list[JID]) -> None:
        await self.store.block(user.domain, user.local or "", [str(j) for j in jids])
        self.server.cluster.cast(user, CAST_TOPIC, _change("block", jids))
        await self._blocked_here(user, jids)

    async def _unblock(self, user: JID, jids: list[JID]) -> None:
        if jids:
            await self.store.unblock(user.domain, user.local or "",
                                              [str(j) for j in jids])
            removed = frozenset(jids)
        else:
            held = await self.store.unblock_all(user.domain, user.local or "")
            removed = frozenset(_parse_all(held))
        self.server.cluster.cast(user, CAST_TOPIC, _change("unblock", jids))
        await self._unblocked_here(user, jids, removed)

    async def _blocked_here(self, user: JID, jids: list[JID]) -> None:
        """The account's sessions on this node: cache, push (§3.3), unavailable presence."""
        self._cache_blocked(user, jids)
        await self._send_unavailable(user, jids)

    def _cache_blocked(self, user: JID, jids: list[JID]) -> None:
        for session in self._sessions(user):
            BLOCKLIST.set(session, blocklist(session) | frozenset(jids))
        self._push(user, "block", jids)

    async def _unblocked_here(self, user: JID, jids: list[JID],
                              removed: frozenset[JID]) -> None:
        """The same for an unblock (§3.4; without items, §3.5: all of ``removed``)."""
        self._cache_unblocked(user, jids, removed)
        await self._send_current_presence(user, removed)

    def _cache_unblocked(self, user: JID, jids: list[JID], removed: frozenset[JID]) -> None:
        for session in self._sessions(user):
            BLOCKLIST.set(session, blocklist(session) - removed if jids else _NOTHING)
        self._push(user, "unblock", jids)

    async def start(self) -> None:
        self.server.cluster.on(CAST_TOPIC, self._changed_elsewhere)
        self.reports = ReportDesk(self.server, self.store, [
            JID.parse(raw) for raw in self.opts.get("report_recipients") or []])

    async def personal_data(self, jid: JID) -> list[PersonalData]:
        """The account's blocklist (XEP-0191) and the XEP-0377 reports it filed, for GDPR
        retrieval."""
        columns = ("reported", "reason", "report_text", "stanza_ids", "messages", "processing",
                   "created_at")
        return [PersonalData("blocking", ("jid",), await self.store.user_rows(
                    "blocklist", ("jid",), jid.domain, jid.local or "", "jid")),
                PersonalData("spam_reports", columns, await self.store.user_rows(
                    "spam_report", columns, jid.domain, jid.local or "", "id"))]

    async def stop(self) -> None:
        self.server.cluster.off(CAST_TOPIC)

    def _changed_elsewhere(self, user: JID, change: Element, args: tuple[str, ...]) -> None:
        """A change made on another node (stored there already): the sessions of this node
        apply it as if it was made here; never cast again (no loop)."""
        jids = list(_parse_all(item.attrs.get("jid", "") for item in change.elements()))
        # The caches change now, before any other stanza is handled here; the presence the
        # change calls for needs the roster (storage): in a task.
        if change.name == "block":
            self._cache_blocked(user, jids)
            self.server.spawn(self._send_unavailable(user, jids))
            return
        # "Unblock all": what the sessions here held is what was removed (one list per
        # account, so every node's cache holds the same).
        removed: frozenset[JID] = frozenset(jids) if jids else frozenset().union(
            *(blocklist(s) for s in self._sessions(user)))
        self._cache_unblocked(user, jids, removed)
        self.server.spawn(self._send_current_presence(user, removed))

    def _push(self, user: JID, action: str, jids: list[JID]) -> None:
        """§3.3/§3.4/§3.5: an IQ-set with the change to every resource that requested the
        blocklist (an unblock without items means "unblock all")."""
        for session in self._sessions(user):
            if not _state(session).get("requested"):
                continue
            push = Element("iq", ns.CLIENT, {"type": "set", "id": f"block-{secrets.token_hex(6)}",
                                             "from": str(user), "to": str(session.jid)})
            body = push.add(action, ns.BLOCKING)
            for jid in jids:
                body.add("item", attrs={"jid": str(jid)})
            session.deliver(push)

    async def _send_unavailable(self, user: JID, jids: list[JID]) -> None:
        """§3.3: a blocked contact that may see the user's presence is told the user went
        offline: subscribers (from/both) and entities that got directed presence."""
        blocked = frozenset(jids)
        # Resources the contact may have seen (a server-sent events session never was).
        available = [s for s in self._sessions(user) if s.presence is not None]
        if not available:
            return
        subscribers = await self._subscribers_matching(user, blocked)
        for session in available:
            directed = DIRECTED.get(session) or ()
            targets = subscribers | {j for j in directed if is_blocked(blocked, j)}
            for target in targets:
                presence = Element("presence", ns.CLIENT, {
                    "type": "unavailable", "from": str(session.jid), "to": str(target)})
                self.server.router.route(session.jid, target, presence)

    async def _send_current_presence(self, user: JID, unblocked: frozenset[JID]) -> None:
        """§3.4/§3.5: an unblocked subscriber gets the user's current presence again (unless
        another item still blocks it)."""
        available = [s for s in self._sessions(user) if s.presence is not None]
        if not available or not unblocked:
            return
        subscribers = await self._subscribers_matching(user, unblocked)
        for session in available:
            assert session.presence is not None
            for target in subscribers:
                # Another item still blocks it (check_presence_out), or another module's
                # filter stops it (an XEP-0016 list denying it presence-out).
                if not self.server.hooks.fold(H.PRIVACY_CHECK_PACKET, True, session, target,
                                              True):
                    continue
                presence = session.presence.copy()
                presence.attrs["from"] = str(session.jid)
                presence.attrs["to"] = str(target)
                self.server.router.route(session.jid, target, presence)

    async def _subscribers_matching(self, user: JID, items: frozenset[JID]) -> set[JID]:
        """The contacts with a subscription to the user's presence (RFC 6121 'from'/'both')
        that ``items`` match."""
        try:
            module = roster_module(self.server)  # without mod_roster nobody subscribes
            roster = [] if module is None else await module.get_roster(user)
        except StorageError:
            # The (un)block itself is done and stored; only this courtesy is missed.
            log.exception("blocking_roster_unavailable user=%s", user)
            return set()
        found: set[JID] = set()
        for item in roster:
            if item.subscription not in ("from", "both"):
                continue
            try:
                contact = JID.parse(item.jid)
            except InvalidJID:
                continue
            if is_blocked(items, contact):
                found.add(contact)
        return found

    # -- filtering ------------------------------------------------------------------------------
    def filter_outbound(self, stanza: Element | None, c2s: C2S) -> Element | None:
        """§3.3: the user's server does not route a stanza from the user to a blocked entity."""
        if stanza is None:
            return None
        blocked = c2s.module_state.get(_BLOCKLIST_KEY)
        if not blocked:
            return stanza
        to = _to(stanza)
        if to is None or _exempt(c2s.jid, to) or not is_blocked(blocked, to):
            return stanza
        self._blocked(c2s)
        stype = stanza.attrs.get("type")
        if stanza.name != "presence" and stype not in ("error", "result"):
            error = StanzaError("not-acceptable", type_="cancel",
                                app_condition=Element("blocked", ns.BLOCKING_ERRORS))
            c2s.send(error_reply(stanza, error))
        return None

    def check_presence_out(self, allow: bool, c2s: C2S, to: JID,
                           notification: bool) -> bool | H.Stop:
        """§3.3: presence the server sends for the user (broadcast, probe, probe answer) does
        not go to an entity the user blocked, whatever its kind."""
        blocked = c2s.module_state.get(_BLOCKLIST_KEY)
        if blocked and is_blocked(blocked, to):
            return H.Stop(False)
        return allow

    def filter_inbound(self, stanza: Element | None, c2s: C2S, *_: Any) -> Element | None:
        if stanza is None:
            return None
        frm = _from(stanza)
        if frm is None:
            return stanza
        if drops_on_delivery([c2s], frm):
            self._blocked(c2s)
            # §3.3: IQ get/set MUST be answered service-unavailable; presence MUST NOT be
            # answered. For messages the XEP suggests service-unavailable too, but with
            # offline storage an error would tell the sender it is blocked (an offline user
            # gives none), so messages are dropped in silence, here and for offline accounts.
            if stanza.name == "iq" and stanza.attrs.get("type") in ("get", "set"):
                self.server.router.bounce(stanza, StanzaError("service-unavailable"))
            return None
        if frm.local is not None and frm.bare != c2s.jid.bare and \
                self.server.is_local_domain(frm.domain) and \
                self._sender_blocks(frm, c2s.jid):
            # Made by the server for a user who blocked this recipient (presence broadcast,
            # probe answer): the user's server must not route it (§3.3). Unavailable presence
            # is what a blocked contact is meant to see, and errors must get through.
            if (stanza.name == "presence" and stanza.attrs.get("type") == "unavailable") or \
                    stanza.attrs.get("type") == "error":
                return stanza
            if stanza.name == "iq" and stanza.attrs.get("type") == "result":
                # The server's answer, for the user, to a request of this recipient (its
                # disco#info, vCard or PEP items at the user's bare JID): the data does not
                # go, but the request is answered (RFC 6120 §8.2.3), as an IQ to the user
                # is (§3.3: service-unavailable), rather than left to time out.
                error = Element("iq", ns.CLIENT, {
                    k: v for k, v in stanza.attrs.items() if k in ("id", "from", "to")})
                error.attrs["type"] = "error"
                error.append(StanzaError("service-unavailable").to_element())
                return error
            return None
        return stanza

    def _blocked(self, c2s: C2S) -> None:
        """6.4's mod_privacy_check_packet with a ``block`` decision: a stanza this session's
        blocklist refused (mod_privacy's filters, after these, do not see it)."""
        instrument = self.server.instrument
        if instrument.enabled:
            from suricate.modules.mod_privacy import MOD_PRIVACY_CHECK_PACKET
            instrument.emit(MOD_PRIVACY_CHECK_PACKET, {"host_type": c2s.jid.domain},
                            {"count": 1, "blocked_count": 1})

    def _sender_blocks(self, sender: JID, recipient: JID) -> bool:
        for session in self._sessions(sender.bare):
            return is_blocked(blocklist(session), recipient)
        return False

    def _sessions(self, user: JID) -> list[C2S]:
        return cast("list[C2S]", self.server.sessions.resources(user))

    async def filter_presence_to_user(self, handled: bool, frm: JID, to: JID,
                                      stanza: Element) -> Any:
        """§3.3: presence from a blocked entity (subscriptions and probes included) is
        dropped without an answer, whether or not the user is online."""
        if handled:
            return handled
        # Batched: a login's probes reach all its offline contacts at once.
        if is_blocked(await self._blocklist_of(to.bare, together=True), frm):
            return H.Stop(True)
        return handled

    async def check_offline(self, allow: bool, server: Server, user: JID, frm: JID,
                            stanza: Element) -> Any:
        """A message from a blocked entity to an offline account is neither stored nor
        answered, as when the user is online (§3.3); an IQ to the account's bare JID from
        one is refused (IqDispatcher answers it service-unavailable)."""
        if not allow or _exempt(user, frm):
            return allow
        if is_blocked(await self._blocklist_of(user.bare), frm):
            return H.Stop(False)
        return allow


def _exempt(user: JID, other: JID) -> bool:
    """The own account and the own server are never blocked: a domain item naming the
    user's server blocks the accounts there, not the answers to the user's own requests."""
    return other.bare == user.bare or (other.local is None and other.domain == user.domain
                                       and other.resource is None)


def _peer_ip(session: Any) -> str | None:
    peer = getattr(getattr(session, "conn", None), "peer", None)
    return str(peer[0]) if isinstance(peer, tuple | list) and peer else None


def _change(action: str, jids: list[JID]) -> Element:
    """The change cast to the other nodes: ``<block/>`` or ``<unblock/>`` with its items."""
    change = Element(action, ns.BLOCKING)
    for jid in jids:
        change.add("item", attrs={"jid": str(jid)})
    return change


def _state(session: Any) -> dict[str, Any]:
    state: dict[str, Any] = session.module_state.setdefault(ModBlocking.name, {})
    return state


def _items(payload: Element) -> list[JID]:
    """The JIDs of a block/unblock request, in order, without repeats; XEP-0191 schema (§10):
    every item carries a 'jid'."""
    jids: list[JID] = []
    for child in payload.elements():
        if child.name != "item" or child.xmlns != ns.BLOCKING:
            raise StanzaError("bad-request", f"unexpected <{child.name}/>")
        raw = child.attrs.get("jid")
        if not raw:
            raise StanzaError("bad-request", "an item needs a 'jid'")
        try:
            jid = JID.parse(raw)
        except InvalidJID:
            raise StanzaError("jid-malformed", f"cannot block {raw!r}") from None
        if jid not in jids:
            jids.append(jid)
    return jids


def _parse_all(items: Iterable[str]) -> Iterable[JID]:
    for item in items:
        try:
            yield JID.parse(item)
        except InvalidJID:
            log.warning("blocklist_item_unreadable jid=%r", item)


def _to(stanza: Element) -> JID | None:
    raw = stanza.attrs.get("to")
    if not raw:
        return None
    try:
        return JID.parse(raw)
    except InvalidJID:
        return None


def _from(stanza: Element) -> JID | None:
    raw = stanza.attrs.get("from")
    if not raw:
        return None
    try:
        return JID.parse(raw)
    except InvalidJID:
        return None

"""mod_roster: the roster (RFC 6121 §2), the subscription state it records (§3, Appendix A),
pre-approval (§3.4) and roster versioning (XEP-0237).

The roster lives in storage; every bound session also keeps a copy in its ``ROSTER_CACHE`` slot
(contact bare JID -> RosterItem), loaded when the session opens and updated on every change,
so presence broadcast never reads the database per stanza. All changes to one account's roster
run one at a time under a per-account lock, which keeps storage, the caches and the order of
roster pushes consistent when IQs and subscription stanzas arrive together.

Roster pushes (§2.1.6) go to the "interested" resources: those that asked for the roster in
this session (§2.2), marked in ``c2s.module_state["mod_roster"]``.

What a user is shown may differ from what is stored: a module with handlers of the
``roster_items`` and ``roster_get_jid_info`` hooks (mod_shared_roster_ldap) adds contacts or
changes how stored ones look. Clients (gets and pushes), the sessions' caches and the other
modules (``get_roster``, ``get_roster_item``) see that view; the subscription state machine
and the admin API's edits work on the stored items. Without such a module nothing is asked.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from suricate.config.modules_spec import backend, iqdisc
from suricate.config.spec import Bool, Option, Section
from suricate.core import hooks as H
from suricate.core.iq import IqRequest
from suricate.core.keyed_locks import KeyedLocks
from suricate.core.module import GraphQLCategory, Module, PersonalData, SessionSlot
from suricate.instrument.events import SPIRAL, declare
from suricate.jid import JID, InvalidJID
from suricate.modules.mod_roster.store import RosterItem, RosterStore
from suricate.protocol import subscription as sub
from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element, WrittenContent, escape_attr, escape_text

# Each bound session's copy of the account's roster (contact bare JID -> item), None while it
# loads; the "interested" flag (RFC 6121 §2.2) is the separate boolean under "mod_roster",
# which suricate.cluster replicates to the other workers.
ROSTER_CACHE: SessionSlot[dict[JID, RosterItem]] = SessionSlot("mod_roster.cache")


def loaded_roster(sessions: Iterable[Any]) -> dict[JID, RosterItem] | None:
    """The roster one of an account's ``sessions`` keeps (read at session open, kept up to
    date by the roster pushes), or None when none has it loaded: the other modules read the
    account's roster from there before asking storage."""
    for session in sessions:
        cache = ROSTER_CACHE.get(session)
        if cache is not None:
            return cache
    return None

if TYPE_CHECKING:
    from suricate.core.c2s import C2S

log = logging.getLogger("suricate.mod_roster")

# server.cluster topic: a roster change made on another node (sm_backend = "redis")
CAST_TOPIC = "mod_roster"

# RFC 6121 §2.3.3: the server may limit the length of names and groups (not-acceptable).
MAX_NAME_LENGTH = 1023


def item_element(item: RosterItem, remove: bool = False) -> Element:
    """The <item/> a client sees (RFC 6121 §2.1.2)."""
    el = Element("item", ns.ROSTER, {"jid": item.jid})
    if remove:
        el.attrs["subscription"] = "remove"
        return el
    if item.name:
        el.attrs["name"] = item.name
    state = sub.normalize(item.subscription, item.ask)
    el.attrs["subscription"] = state.subscription
    if state.pending_out:
        el.attrs["ask"] = "subscribe"  # §2.1.2.2: only our own pending request is shown
    if item.approved:
        el.attrs["approved"] = "true"  # §2.1.2.1
    for group in item.groups:
        el.add("group", text=group)
    return el


def item_xml(item: RosterItem) -> str:
    """``item_element(item)`` written in a parent of the roster namespace, made as text: a
    roster get (RFC 6121 §2.1.3) writes every item of the roster, at each login. Made once
    per item (kept on it: an item is immutable, and lives on between logins)."""
    written = item.written
    if written is None:
        written = _item_xml(item)
        object.__setattr__(item, "written", written)
    return written


def _item_xml(item: RosterItem) -> str:
    state = sub.normalize(item.subscription, item.ask)
    name = f' name="{escape_attr(item.name)}"' if item.name else ""
    ask = ' ask="subscribe"' if state.ask in ("out", "both") else ""  # State.pending_out
    approved = ' approved="true"' if item.approved else ""
    head = f'<item jid="{escape_attr(item.jid)}"{name} subscription="{state.subscription}"' \
        f'{ask}{approved}'
    if not item.groups:
        return head + "/>"
    groups = "".join([f"<group>{escape_text(group)}</group>" for group in item.groups])
    return f"{head}>{groups}</item>"


def is_visible(item: RosterItem | None) -> bool:
    """A record kept only to remember a contact's pending request (§3.1.3) is not part of the
    roster the user sees: the user has not added the contact."""
    return item is not None and not item.hidden


def computed_version(items: Iterable[RosterItem]) -> str:
    """XEP-0237 §4: the version is opaque; a digest of the visible roster changes exactly when
    the roster does."""
    digest = hashlib.sha1(usedforsecurity=False)
    for item in sorted(items, key=lambda i: i.jid):
        if is_visible(item):
            digest.update(item_element(item).serialize().encode())
            digest.update(b"\n")
    return digest.hexdigest()


MOD_ROSTER_GET = declare("mod_roster_get", ("host_type",), {"count": SPIRAL},
                         "Roster gets (RFC 6121 §2.2)")
MOD_ROSTER_SET = declare("mod_roster_set", ("host_type",), {"count": SPIRAL},
                         "Roster sets (RFC 6121 §2.3)")
MOD_ROSTER_PUSH = declare("mod_roster_push", ("host_type",), {"count": SPIRAL},
                          "Roster pushes sent to sessions (RFC 6121 §2.1.6)")


class ModRoster(Module):
    name = "mod_roster"
    graphql = GraphQLCategory("suricate.modules.mod_roster.graphql")
    options = Section(
        {
            "iqdisc": iqdisc("one_queue"),
            "versioning": Option(Bool(), False, "XEP-0237 roster versioning."),
            "store_current_id": Option(
                Bool(), False, "Store the roster version instead of computing it."
            ),
            "backend": backend(),
        },
        doc="RFC 6121 roster management.",
    )
    xeps = ("0237",)
    hooks = (
        (H.SESSION_OPENED, "load_roster", 10),
        (H.C2S_STREAM_FEATURES, "stream_features", 50),
        (H.ROSTER_OUT_SUBSCRIPTION, "out_subscription", 50),
        (H.ROSTER_IN_SUBSCRIPTION, "in_subscription", 50),
        (H.REMOVING_USER, "removing_user", 50),
    )
    iq_handlers = (("sm", ns.ROSTER, "process_iq"),)
    store_class = RosterStore
    store: RosterStore

    def __init__(self, server: Any, opts: Any) -> None:
        super().__init__(server, opts)
        self.versioning = bool(opts.get("versioning", False))
        self.store_current_id = bool(opts.get("store_current_id", False))
        self._locks: KeyedLocks[JID] = KeyedLocks()
        self._push_ids = itertools.count(1)

    # -- one account at a time ---------------------------------------------------------------
    def locked(self, user: JID) -> contextlib.AbstractAsyncContextManager[None]:
        return self._locks.hold(user)

    # -- what other modules and the admin API read (never the tables themselves) ------------
    async def personal_data(self, jid: JID) -> list[PersonalData]:
        """What the account keeps here, for GDPR retrieval (``Module.personal_data``)."""
        server, user = jid.domain, jid.local or ""
        groups: dict[str, list[str]] = {}
        for contact, group in await self.store.user_rows(
                "roster_groups", ("jid", "grp"), server, user, "jid, position"):
            groups.setdefault(contact, []).append(group)
        items = await self.store.user_rows(
            "roster_items", ("jid", "name", "subscription", "ask", "ask_message"), server,
            user, "jid")
        # MongooseIM 6.4's header: groups joined by ", ", xs (extra XML of the item) empty.
        return [PersonalData(
            "roster", ("jid", "name", "subscription", "ask", "groups", "askmessage", "xs"),
            [(contact, name or "", sub, ask, ", ".join(groups.get(contact, [])), msg or "", "")
             for contact, name, sub, ask, msg in items])]

    async def get_roster(self, user: JID) -> list[RosterItem]:
        """The account's roster items as its clients see them, sorted by JID."""
        return await self._items(user)

    async def get_roster_item(self, user: JID, contact: JID | str, *, batch: bool = False
                              ) -> RosterItem | None:
        """One contact as the account's clients see it (None: not in the roster).

        ``batch``: read together with the other batched reads of this event-loop turn
        (``RosterStore.get_roster_item_batched``), for a caller among many asking at once
        (the probes of a login, RFC 6121 §4.2.2). It always waits one turn, so the callers
        that ask alone keep the plain read, which with SQLite never suspends.
        """
        server, local = user.domain, user.local or ""
        if batch:
            stored = await self.store.get_roster_item_batched(server, local, str(contact))
        else:
            stored = await self.store.get_roster_item(server, local, str(contact))
        if not self.server.hooks.has(H.ROSTER_GET_JID_INFO):
            return stored
        return await self._shown(user, contact if isinstance(contact, JID) else _jid(contact),
                                 stored)

    async def _items(self, user: JID) -> list[RosterItem]:
        """The stored items, as the ``roster_items`` handlers show them."""
        items = await self.store.get_roster(user.domain, user.local or "")
        if self.server.hooks.has(H.ROSTER_ITEMS):
            shown: list[RosterItem] = await self.server.hooks.fold_async(
                H.ROSTER_ITEMS, items, user)
            return shown
        return items

    async def _shown(self, user: JID, contact: JID, stored: RosterItem | None
                     ) -> RosterItem | None:
        """One stored item (or None), as the ``roster_get_jid_info`` handlers show it."""
        if not self.server.hooks.has(H.ROSTER_GET_JID_INFO):
            return stored
        shown: RosterItem | None = await self.server.hooks.fold_async(
            H.ROSTER_GET_JID_INFO, stored, user, contact.bare)
        return shown

    # -- sessions ----------------------------------------------------------------------------
    async def load_roster(self, acc: None, c2s: C2S) -> None:
        user = c2s.jid.bare
        async with self.locked(user):
            items = await self._items(user)
            ROSTER_CACHE.set(c2s, {_jid(item.jid): item for item in items})
        return acc

    def stream_features(self, features: list[Element], c2s: C2S) -> list[Element]:
        # RFC 6121 §3.4: pre-approval is announced as a stream feature; XEP-0237 §2 likewise.
        extra = [Element("sub", ns.PRE_APPROVAL)]
        if self.versioning:
            extra.append(Element("ver", ns.ROSTER_VER))
        return features + extra

    # -- jabber:iq:roster --------------------------------------------------------------------
    async def process_iq(self, iq: IqRequest) -> Element | None:
        user = iq.to.bare
        if iq.frm.bare != user:
            # RFC 6121 §2.1.5 / §2.3.3: only the account's own resources see or edit its roster.
            raise StanzaError("forbidden")
        if iq.type == "get":
            self.server.instrument.emit(MOD_ROSTER_GET, {"host_type": user.domain}, {"count": 1})
            return await self._get(iq, user)
        self.server.instrument.emit(MOD_ROSTER_SET, {"host_type": user.domain}, {"count": 1})
        await self._set(iq, user)
        return None

    async def _get(self, iq: IqRequest, user: JID) -> Element | None:
        session: Any = self.server.sessions.lookup(iq.frm)
        if session is not None:
            # §2.2: asking for the roster makes the resource "interested" in pushes.
            session.module_state[self.name] = True
        async with self.locked(user):
            cached = None if session is None else ROSTER_CACHE.get(session)
            if cached is not None and not self.server.hooks.has(H.ROSTER_ITEMS):
                # The session's copy, read when it opened and kept in step with every change
                # since (``_cache_here``, and ``_mirror`` for other nodes' changes) under this
                # lock: the usual get, right after the session opened, does not read storage
                # a second time. Sorted by JID as ``RosterStore.get_roster`` returns them.
                items = sorted(cached.values(), key=_by_jid)
            else:
                items = await self._items(user)
            version = await self._current_version(user, items) if self.versioning else None
            if session is not None and self.server.hooks.has(H.ROSTER_ITEMS):
                # What the roster_items handlers add can change (a directory's groups): the
                # session's presence cache catches up with what its client is shown now.
                ROSTER_CACHE.set(session, {_jid(item.jid): item for item in items})
        attrs: dict[str, str] = {}
        if version is not None:
            # XEP-0237 §3: the client's version is current -> empty result, pushes follow.
            if iq.payload.attrs.get("ver") == version:
                return None
            attrs["ver"] = version
        # The items as text: the result is only written to the client.
        shown = [item_xml(item) for item in items if is_visible(item)]
        if self.server.hooks.has(H.ROSTER_GET):
            # Items that are not stored contacts (MUC Light rooms, rooms_in_rosters).
            for extra in await self.server.hooks.fold_async(H.ROSTER_GET, [], user):
                shown.append(extra.serialize(ns.ROSTER))
        return WrittenContent("query", ns.ROSTER, attrs, "".join(shown))

    async def _set(self, iq: IqRequest, user: JID) -> None:
        entries = iq.payload.find_all("item", ns.ROSTER)
        if len(entries) != 1:
            # RFC 6121 §2.3.3: a roster set carries exactly one item.
            raise StanzaError("bad-request", "a roster set carries exactly one item")
        entry = entries[0]
        try:
            contact = JID.parse(entry.attrs.get("jid", ""))
        except (InvalidJID, ValueError):
            raise StanzaError("bad-request", "the item has no valid 'jid'") from None
        if contact.bare == user:
            raise StanzaError("bad-request", "an account is not a contact of itself")
        if entry.attrs.get("subscription") == "remove":
            await self._remove(user, contact)
            return
        # §2.1.2.5 / §2.1.2.2 / §2.1.2.1: 'subscription', 'ask' and 'approved' set by a client
        # are ignored; only the name and the groups are the user's to edit.
        name = entry.attrs.get("name") or None
        if name is not None and len(name) > MAX_NAME_LENGTH:
            raise StanzaError("not-acceptable", "name too long")
        groups: list[str] = []
        for group_el in entry.find_all("group", ns.ROSTER):
            group = group_el.text
            if not group:
                raise StanzaError("not-acceptable", "empty group name")  # §2.3.3
            if len(group) > MAX_NAME_LENGTH:
                raise StanzaError("not-acceptable", "group name too long")
            if group in groups:
                raise StanzaError("bad-request", "duplicate group")  # §2.3.3
            groups.append(group)
        storage = self.store
        async with self.locked(user):
            old = await storage.get_roster_item(user.domain, user.local or "", str(contact))
            new = replace(old or RosterItem(jid=str(contact)), name=name, groups=tuple(groups),
                          hidden=False)  # the user adds the contact (§2.3)
            await self._save(user, contact, old, new, force_push=True)

    async def _remove(self, user: JID, contact: JID) -> None:
        """RFC 6121 §2.5.2: delete the item and end the subscriptions in both directions."""
        storage = self.store
        async with self.locked(user):
            old = await storage.get_roster_item(user.domain, user.local or "", str(contact))
            # A contact that is in the roster without the stored item (a shared roster's)
            # stays: the stored item goes, the push shows what remains (MongooseIM's
            # roster_process_item turns the removal into the shared item), and no
            # subscription ends, since the shared one does not.
            kept = await self._shown(user, contact.bare, None)
            if old is None and kept is None:
                raise StanzaError("item-not-found")  # §2.5.3
            await self._save(user, contact, old, None, force_push=True)
            if old is None or kept is not None:
                return
            state = sub.normalize(old.subscription, old.ask)
            if state.has_to or state.pending_out:
                self._send_presence(user, contact, "unsubscribe")
            if state.has_from or state.pending_in:
                self._send_presence(user, contact, "unsubscribed")
            if state.has_from:
                # The contact will not hear from us again: tell it we are gone (§3.2.2).
                self.send_unavailable(user, contact)

    async def removing_user(self, after: list[H.AfterRemoval], user: JID
                            ) -> list[H.AfterRemoval]:
        """The account is about to go with its roster: once it is gone, each contact hears
        what a removal of its item would have said (RFC 6121 §2.5.2): 'unsubscribe' where
        the account subscribed or asked to, 'unsubscribed' where the contact did, so the
        contacts' rosters stop showing a subscription nobody holds (MongooseIM 6.4's
        mod_roster:remove_user sends the same, from the bare JID; the pending requests are
        ours: they would otherwise wait forever in the contact's roster)."""
        items = await self.store.get_roster(user.domain, user.local or "")

        def unsubscribe() -> None:
            for item in items:
                contact = _jid(item.jid)
                state = sub.normalize(item.subscription, item.ask)
                if state.has_to or state.pending_out:
                    self._send_presence(user, contact, "unsubscribe")
                if state.has_from or state.pending_in:
                    self._send_presence(user, contact, "unsubscribed")
        if items:
            after.append(unsubscribe)
        return after

    # -- subscription state (RFC 6121 §3, Appendix A) ---------------------------------------
    async def out_subscription(self, acc: sub.Transition | None, user: JID, contact: JID,
                               type_: str, stanza: Element) -> sub.Transition:
        storage = self.store
        async with self.locked(user):
            old = await storage.get_roster_item(user.domain, user.local or "", str(contact))
            state = sub.normalize(old.subscription, old.ask) if old else sub.NONE
            outcome = sub.outbound(state, old.approved if old else False, type_)
            if outcome.changed:
                # The user acts on the contact: it is in the roster from now on (§3.1.2,
                # §3.1.5, §3.4), unless nothing is left to keep (_kept).
                new = self._apply(old, contact, outcome, hidden=False)
                await self._save(user, contact, old, _kept(old, new))
            return outcome

    async def in_subscription(self, acc: sub.Transition | None, user: JID, contact: JID,
                              type_: str, stanza: Element) -> sub.Transition:
        storage = self.store
        async with self.locked(user):
            old = await storage.get_roster_item(user.domain, user.local or "", str(contact))
            state = sub.normalize(old.subscription, old.ask) if old else sub.NONE
            outcome = sub.inbound(state, old.approved if old else False, type_)
            # A contact the user has no item for is remembered, out of sight (§3.1.3).
            new = self._apply(old, contact, outcome, hidden=old.hidden if old else True)
            if type_ == "subscribe" and outcome.after.pending_in:
                # §3.1.3: the request is kept until answered and shown again at the next
                # login; remember what the contact wrote with it.
                new = replace(new, ask_message=stanza.find_text("status") or None)
            if old is None and not outcome.changed:
                return outcome  # nothing to remember about a stranger
            if new != old:
                await self._save(user, contact, old, _kept(old, new))
            return outcome

    @staticmethod
    def _apply(old: RosterItem | None, contact: JID, outcome: sub.Transition,
               hidden: bool) -> RosterItem:
        base = old or RosterItem(jid=str(contact))
        after = outcome.after
        return replace(base, subscription=after.subscription, ask=after.ask,
                       approved=outcome.approved,
                       ask_message=base.ask_message if after.pending_in else None,
                       hidden=hidden)

    # -- storage, caches, pushes -------------------------------------------------------------
    async def _save(self, user: JID, contact: JID, old: RosterItem | None,
                    new: RosterItem | None, force_push: bool = False) -> None:
        """Write the change, mirror it in every session's cache, push it if the user sees it.
        Called with the account lock held."""
        storage = self.store
        local = user.local or ""
        if new is None:
            await storage.delete_roster_item(user.domain, local, str(contact))
        else:
            await storage.put_roster_item(user.domain, local, new)
        key = _jid(new.jid if new is not None else str(contact))
        # Sessions cache and clients are pushed what they are shown (roster_get_jid_info).
        old = await self._shown(user, key, old)
        new = await self._shown(user, key, new)
        self._cache_here(user, key, new)
        seen_before, seen_after = is_visible(old), is_visible(new)
        push: Element | None = None
        version = None
        if force_push or (seen_before or seen_after) and not (
                seen_before and seen_after and old is not None and new is not None
                and item_element(old) == item_element(new)):
            # (not pushed: nothing the client sees changed, e.g. a pending inbound request)
            version = await self._next_version(user) if self.versioning else None
            if new is None or not (seen_after or force_push):
                push = item_element(old or RosterItem(jid=str(contact)), remove=True)
            else:
                push = item_element(new)
            self._push(user, push, version)
        # The account's sessions on other nodes (sm_backend = "redis") mirror the change in
        # their caches (read back from storage, written above) and get the same push.
        self.server.cluster.cast(user, CAST_TOPIC, push or Element("item", ns.ROSTER, {
            "jid": str(key)}), version or "", "push" if push is not None else "")

    def _cache_here(self, user: JID, key: JID, new: RosterItem | None) -> None:
        for session in self._sessions(user):
            cache = ROSTER_CACHE.get(session)
            if cache is None:
                continue  # still loading: it reads storage after us (same lock)
            if new is None:
                cache.pop(key, None)
            else:
                cache[key] = new

    async def start(self) -> None:
        self.server.cluster.on(CAST_TOPIC, self._changed_elsewhere)

    async def stop(self) -> None:
        self.server.cluster.off(CAST_TOPIC)

    def _changed_elsewhere(self, user: JID, item: Element, args: tuple[str, ...]) -> None:
        self.server.spawn(self._mirror(user, item, args[0] or None, args[1] == "push"))

    async def _mirror(self, user: JID, item: Element, version: str | None, push: bool) -> None:
        """Another node changed ``user``'s roster: this node's sessions catch up."""
        key = _jid(item.attrs["jid"])
        async with self.locked(user):
            new = await self.store.get_roster_item(user.domain, user.local or "", str(key))
            self._cache_here(user, key, await self._shown(user, key, new))
            if push:
                self._push(user, item, version)

    def _push(self, user: JID, item: Element, version: str | None) -> None:
        """RFC 6121 §2.1.6: a roster set from the server to each interested resource."""
        for session in self._sessions(user):
            if not session.module_state.get(self.name):
                continue
            query = Element("query", ns.ROSTER, {}, [item.copy()])
            if version is not None:
                query.attrs["ver"] = version
            self.server.instrument.emit(MOD_ROSTER_PUSH, {"host_type": user.domain},
                                        {"count": 1})
            session.send(Element("iq", ns.CLIENT, {
                "type": "set", "id": f"push{next(self._push_ids)}", "to": str(session.jid),
            }, [query]))

    def _sessions(self, user: JID) -> list[Any]:
        return list(self.server.sessions.resources(user))

    async def _current_version(self, user: JID, items: list[RosterItem]) -> str:
        if not self.store_current_id:
            return computed_version(items)
        storage = self.store
        version = await storage.get_roster_version(user.domain, user.local or "")
        if version is None:
            version = _fresh_id()
            await storage.set_roster_version(user.domain, user.local or "", version)
        return version

    async def _next_version(self, user: JID) -> str:
        storage = self.store
        if self.store_current_id:
            version = _fresh_id()
            await storage.set_roster_version(user.domain, user.local or "", version)
            return version
        return computed_version(await self._items(user))

    # -- presence the roster itself sends ---------------------------------------------------
    def _send_presence(self, user: JID, contact: JID, type_: str) -> None:
        stanza = Element("presence", ns.CLIENT, {"type": type_, "from": str(user),
                                                  "to": str(contact)})
        self.server.router.route(user, contact, stanza)

    def send_unavailable(self, user: JID, contact: JID) -> None:
        for session in self._sessions(user):
            if session.presence is not None:  # a resource the contact may have seen
                stanza = Element("presence", ns.CLIENT, {
                    "type": "unavailable", "from": str(session.jid), "to": str(contact)})
                self.server.router.route(session.jid, contact, stanza)


def _kept(old: RosterItem | None, new: RosterItem) -> RosterItem | None:
    """What to store after a subscription change: None (delete) for a record that only held a
    stranger's request (§3.1.3, not in the roster the user sees) once the request is gone,
    declined by the user ('unsubscribed', §3.2) or withdrawn by the contact ('unsubscribe',
    §3.3): left as an empty item, it would become a contact the user never added."""
    if is_visible(old) or new.subscription != "none" or new.ask != "none" or new.name \
            or new.groups or new.approved:
        return new
    return None


def _jid(value: str) -> JID:
    return JID.parse(value)


def _by_jid(item: RosterItem) -> str:
    return item.jid


def _fresh_id() -> str:
    return f"{time.time_ns():x}"


def roster_module(server: Any) -> ModRoster | None:
    """The running mod_roster, for a module or the admin API that reads rosters (None when
    the module is not enabled: then nobody has a roster)."""
    module = server.modules.get("mod_roster")
    return module if isinstance(module, ModRoster) else None

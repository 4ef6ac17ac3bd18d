"""mod_privacy: XEP-0016 Privacy Lists.

An account keeps named lists of ordered items in storage (``store.py``); a session applies
its active list, else the account's default list (§2.2 rules 1-3). What a session applies is
cached on it (the ``APPLIED`` slot), set when the resource is bound and replaced on every
change, so the per-stanza checks never touch the database; a session that applies no list
has no entry, and a stanza then costs one dict lookup. Checks made here:

- inbound to a session (``user_receive_packet``): a denied IQ get/set is answered
  ``service-unavailable``, a denied message too (§2.14 since version 1.5 of the XEP), presence
  and other IQs are dropped without a word;
- outbound from a session (``user_send_packet``): a denied message or IQ is answered
  ``not-acceptable`` (§2.14), a denied directed presence dropped; presence the server
  broadcasts for the user is filtered through the ``privacy_check_packet`` hook that
  mod_presence runs per recipient (presence-out, §2.11);
- for an account without an available session, the default list: messages
  (``privacy_check_inbound``) and subscription stanzas (``presence_to_user``).

A change of a list (§2.6-§2.8) or of the default (§2.5) is applied to the account's sessions
of this node and cast to the other nodes (``server.cluster.cast``), which re-read what they
apply from storage; every resource gets the privacy list push of §2.2 rule 10.

mod_blocking (XEP-0191) may be enabled too: each module keeps its own lists and checks
stanzas on its own, so a stanza is refused when either refuses it (docs/privacy.md).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from suricate.config.modules_spec import backend, iqdisc
from suricate.config.spec import Section
from suricate.core import hooks as H
from suricate.core.iq import IqRequest
from suricate.core.module import Module, PersonalData, SessionSlot, session_state_changed
from suricate.core.offline_batch import read_once
from suricate.instrument.events import SPIRAL, declare
from suricate.jid import JID, InvalidJID
from suricate.modules.mod_presence import DIRECTED
from suricate.modules.mod_privacy.lists import (
    MAX_NAME,
    PrivacyList,
    inbound_kind,
    list_element,
    outbound_kind,
    parse_items,
)
from suricate.modules.mod_privacy.store import (
    IQ,
    MESSAGE,
    PRESENCE_IN,
    PRESENCE_OUT,
    PrivacyItem,
    PrivacyStore,
)
from suricate.modules.mod_roster import ROSTER_CACHE, roster_module
from suricate.protocol.errors import StanzaError, StreamError, error_reply
from suricate.storage.base import StorageError
from suricate.xml import ns
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.core.c2s import C2S
    from suricate.core.server import Server
    from suricate.modules.mod_roster.store import RosterItem

log = logging.getLogger("suricate.mod_privacy")

# -- instrumentation (MongooseIM 6.4 names) ----------------------------------------------------
MOD_PRIVACY_GET = declare("mod_privacy_get", ("host_type",), {"count": SPIRAL},
                          "XEP-0016 privacy IQ gets")
MOD_PRIVACY_SET = declare(
    "mod_privacy_set", ("host_type",),
    {"count": SPIRAL, "active_count": SPIRAL, "default_count": SPIRAL},
    "XEP-0016 privacy IQ sets; active_count and default_count: active (§2.4) and default "
    "(§2.5) lists changed")
MOD_PRIVACY_PUSH_ITEM = declare(
    "mod_privacy_push_item", ("host_type",), {"count": SPIRAL},
    "Privacy list pushes sent to sessions (§2.2 rule 10), one per session")
MOD_PRIVACY_CHECK_PACKET = declare(
    "mod_privacy_check_packet", ("host_type",),
    {"count": SPIRAL, "denied_count": SPIRAL, "blocked_count": SPIRAL},
    "Stanzas checked against what a session or account applies (mod_privacy's lists, and "
    "mod_blocking's blocklist: blocked_count); denied_count: refused by a privacy list")

#: The cluster topic of a change made on another node: the stanza cast is the ``<query/>``
#: naming what changed (a ``<list/>`` or ``<default/>``).
CAST_TOPIC = "mod_privacy.changed"


@dataclass(frozen=True, slots=True)
class Applied:
    """What one session applies: its active list (§2.4) and the account's default (§2.5);
    the active list, when set, is the only one applied (§2.2 rule 1)."""

    active: PrivacyList | None
    default: PrivacyList | None

    @property
    def effective(self) -> PrivacyList | None:
        return self.active if self.active is not None else self.default


APPLIED: SessionSlot[Applied] = SessionSlot("mod_privacy")
_APPLIED_KEY = APPLIED.key  # read on every stanza: one global, one dict lookup


def _set_applied(session: Any, active: PrivacyList | None,
                 default: PrivacyList | None) -> None:
    if active is None and default is None:
        APPLIED.pop(session)  # nothing applies: the hot path finds no entry
    else:
        APPLIED.set(session, Applied(active, default))


def _roster_item(session: Any, contact: JID) -> RosterItem | None:
    cache = ROSTER_CACHE.get(session)
    return cache.get(contact.bare) if cache else None


def denies_presence_out(session: Any, contact: JID, notification: bool = True) -> bool:
    """Whether what ``session`` applies stops presence from it to ``contact``: a
    notification (available/unavailable, §2.11) or, with ``notification`` False, another
    presence (a probe), which only whole-stanza items stop (§2.13). For mod_presence, which
    broadcasts for the user (the ``privacy_check_packet`` hook); False at once for a session
    without a list."""
    return _denies(session, contact, PRESENCE_OUT if notification else 0)


def denies_message_delivery(sessions: list[Any], frm: JID) -> bool:
    """Whether every one of the recipient's ``sessions`` (where the router delivers a message)
    drops a message from ``frm`` by the list it applies (``filter_inbound``, §2.9, §2.13):
    for modules that act on a message before its delivery (the inbox), which must not count
    what none of the account's sessions gets. False at once for a session without a list."""
    if not sessions:
        return False
    for session in sessions:  # noqa: SIM110 (a loop: no generator on the message path)
        if not _denies(session, frm, MESSAGE):
            return False
    return True


def _denies(session: Any, peer: JID | None, kind: int) -> bool:
    """Whether the list ``session`` applies (its active one, else the default) denies
    ``kind`` with ``peer`` (§2.13). No list, no peer, or the user's own entities
    (``_exempt``): nothing is denied."""
    applied: Applied | None = session.module_state.get(_APPLIED_KEY)
    if applied is None or peer is None:
        return False
    plist = applied.effective
    if plist is None or _exempt(session.jid, peer):
        return False
    item = _roster_item(session, peer) if plist.needs_roster else None
    return plist.denies(kind, peer, item)


class ModPrivacy(Module):
    name = "mod_privacy"
    options = Section(
        {"iqdisc": iqdisc("one_queue"), "backend": backend()},
        doc="XEP-0016 Privacy Lists (docs/privacy.md).",
    )
    xeps = ("0016",)
    hooks = (
        (H.SESSION_OPENED, "load_default", 21),
        # After mod_blocking's filters (40 and 10): either may refuse a stanza.
        (H.USER_SEND_PACKET, "filter_outbound", 41),
        (H.USER_RECEIVE_PACKET, "filter_inbound", 11),
        (H.PRESENCE_TO_USER, "filter_presence_to_user", 11),
        (H.PRIVACY_CHECK_INBOUND, "check_offline", 51),
        (H.PRIVACY_CHECK_OUTBOUND, "check_outbound_offline", 51),
        (H.PRIVACY_CHECK_PACKET, "check_presence_out", 41),
        (H.SESSION_HANDOVER, "handover", 50),
        (H.SESSION_SNAPSHOT, "snapshot", 50),
    )
    iq_handlers = (("sm", ns.PRIVACY, "handle_iq"),)
    store_class = PrivacyStore
    store: PrivacyStore

    def __init__(self, server: Any, opts: Any) -> None:
        super().__init__(server, opts)
        # Read on every stanza the filters see: one attribute test when nothing is measured.
        self.measured: bool = server.instrument.enabled

    def _checked(self, domain: str, denied: bool) -> None:
        self.server.instrument.emit(MOD_PRIVACY_CHECK_PACKET, {"host_type": domain},
                                    {"count": 1, "denied_count": 1} if denied else {"count": 1})

    async def start(self) -> None:
        self.server.cluster.on(CAST_TOPIC, self._changed_elsewhere)

    async def stop(self) -> None:
        self.server.cluster.off(CAST_TOPIC)

    async def personal_data(self, jid: JID) -> list[PersonalData]:
        """The account's lists, one row per item, for GDPR retrieval (MongooseIM's
        ``privacy_lists`` columns: the kinds of an item as match_* flags)."""
        rows = await self.store.user_rows(
            "privacy_list_items", ("name", "type", "value", "action", "ord", "stanzas"),
            jid.domain, jid.local or "", "name, ord")
        columns = ("name", "type", "value", "action", "order", "match_all", "match_iq",
                   "match_message", "match_presence_in", "match_presence_out")
        return [PersonalData("privacy_lists", columns, [
            (name, type_ or "", value or "", action, int(order), not kinds,
             bool(kinds & IQ), bool(kinds & MESSAGE), bool(kinds & PRESENCE_IN),
             bool(kinds & PRESENCE_OUT))
            for name, type_, value, action, order, kinds in rows])]

    # -- the cache ----------------------------------------------------------------------------
    async def load_default(self, acc: Any, c2s: C2S) -> Any:
        """§2.2 rule 2: a new session applies the account's default list."""
        user = c2s.jid.bare
        try:
            found = await self.store.get_default(user.domain, user.local or "")
        except StorageError:
            # Without its list the session would receive what the user refused: end it.
            log.exception("privacy_load_failed user=%s", user)
            c2s.stream_error(StreamError("internal-server-error"))
            return acc
        # A session resumed from another node may have brought its active list already.
        applied = APPLIED.get(c2s)
        _set_applied(c2s, applied.active if applied is not None else None,
                     PrivacyList.build(*found) if found is not None else None)
        return acc

    def handover(self, state: dict[str, Any], c2s: C2S, moved_in: bool) -> dict[str, Any]:
        """A session resumed on another node (XEP-0198 §5) keeps its active list (§2.4:
        for the duration of the session); the default list is the account's, read there."""
        if moved_in:
            plain = state.get(APPLIED.key)
            if plain:
                applied = APPLIED.get(c2s)
                _set_applied(c2s, _load_list(plain),
                             applied.default if applied is not None else None)
                session_state_changed(c2s)
            return state
        state = self.snapshot(state, c2s)
        APPLIED.pop(c2s)
        return state

    def snapshot(self, state: dict[str, Any], c2s: C2S) -> dict[str, Any]:
        applied = APPLIED.get(c2s)
        if applied is not None and applied.active is not None:
            state[APPLIED.key] = _dump_list(applied.active)
        return state

    def _sessions(self, user: JID) -> list[C2S]:
        return cast("list[C2S]", self.server.sessions.resources(user))

    async def _default_of(self, user: JID) -> PrivacyList | None:
        """The account's default list: from a session of this node, else from storage."""
        for session in self._sessions(user):
            applied = APPLIED.get(session)
            if applied is not None:  # not yet loaded, or a session without lists (SSE)
                return applied.default
        # In a batch of messages to the offline account (suricate/core/offline_batch.py):
        # read once for the batch.
        found = await read_once(user, (self.name, "default"), lambda: self.store.get_default(
            user.domain, user.local or ""))
        return PrivacyList.build(*found) if found is not None else None

    async def _refresh(self, user: JID, changed: str | None) -> None:
        """Re-read what the account's sessions of this node apply after a change: the default
        list, and the active list of the sessions whose active list is ``changed`` (None:
        only the default changed). A removed active list is no longer applied."""
        if not self._sessions(user):
            return
        found = await self.store.get_default(user.domain, user.local or "")
        default = PrivacyList.build(*found) if found is not None else None
        edited: PrivacyList | None = None
        if changed is not None:
            items = await self.store.get_list(user.domain, user.local or "", changed)
            edited = PrivacyList.build(changed, items) if items is not None else None
        for session in self._sessions(user):
            applied = APPLIED.get(session)
            active = applied.active if applied is not None else None
            if active is not None and changed is not None and active.name == changed:
                active = edited
            self._apply(session, active, default)

    def _apply(self, session: C2S, active: PrivacyList | None,
               default: PrivacyList | None) -> None:
        """Set what ``session`` applies; contacts that see its presence learn of the change."""
        before = APPLIED.get(session)
        _set_applied(session, active, default)
        if (before.active if before is not None else None) is not active:
            session_state_changed(session)  # the session's Redis copy takes the new one
        self._presence_after_change(session, before.effective if before else None,
                                    active if active is not None else default)

    # -- IQ: §2.3 retrieve, §2.4 active, §2.5 default, §2.6-§2.8 edit, add, remove ------------
    async def handle_iq(self, iq: IqRequest) -> Element | None:
        user = iq.to.bare
        if iq.frm.bare != user:
            # The lists are the account's own business: to anyone else, no such service.
            raise StanzaError("service-unavailable")
        query = iq.payload
        if query.name != "query":
            raise StanzaError("bad-request")
        children = list(query.elements())
        session = cast("C2S | None", self.server.sessions.lookup(iq.frm))
        if self.measured:
            self.server.instrument.emit(MOD_PRIVACY_GET if iq.type == "get" else MOD_PRIVACY_SET,
                                        {"host_type": user.domain}, {"count": 1})
        if iq.type == "get":
            if not children:
                return await self._names(user, session)
            if len(children) > 1:
                # §2.3: one list at a time.
                raise StanzaError("bad-request", "one list at a time")
            return await self._get_list(user, _named(children[0], "list", required=True))
        if len(children) != 1:
            # §2.1: a set carries exactly one <active/>, <default/> or <list/>.
            raise StanzaError("bad-request", "a set carries exactly one element")
        child = children[0]
        if session is None:
            raise StanzaError("not-allowed", "privacy lists are set from a bound session")
        if child.name == "active":
            await self._set_active(user, session, _named(child, "active", required=False))
            if self.measured:
                self.server.instrument.emit(MOD_PRIVACY_SET, {"host_type": user.domain},
                                            {"active_count": 1})
        elif child.name == "default":
            await self._set_default(user, session, _named(child, "default", required=False))
            if self.measured:
                self.server.instrument.emit(MOD_PRIVACY_SET, {"host_type": user.domain},
                                            {"default_count": 1})
        elif child.name == "list":
            name = _named(child, "list", required=True)
            assert name is not None
            if any(True for _ in child.elements()):
                await self._set_list(user, name, parse_items(child))
            else:
                await self._remove_list(user, session, name)
        else:
            raise StanzaError("bad-request", f"unexpected <{child.name}/>")
        return None

    async def _names(self, user: JID, session: C2S | None) -> Element:
        """§2.3: the active list of the requesting session, the default list, every list."""
        names, default = await self.store.list_names(user.domain, user.local or "")
        result = Element("query", ns.PRIVACY)
        applied = APPLIED.get(session) if session is not None else None
        if applied is not None and applied.active is not None:
            result.add("active", attrs={"name": applied.active.name})
        if default is not None:
            result.add("default", attrs={"name": default})
        for name in names:
            result.add("list", attrs={"name": name})
        return result

    async def _get_list(self, user: JID, name: str | None) -> Element:
        assert name is not None
        items = await self.store.get_list(user.domain, user.local or "", name)
        if items is None:
            raise StanzaError("item-not-found", f"no list {name!r}")
        result = Element("query", ns.PRIVACY)
        result.children.append(list_element(name, items))
        return result

    async def _set_active(self, user: JID, session: C2S, name: str | None) -> None:
        """§2.4: the list applies to this session from now on (before the result is sent);
        without a name the session declines any active list (the default applies again)."""
        applied = APPLIED.get(session)
        default = applied.default if applied is not None else None
        if name is None:
            self._apply(session, None, default)
            return
        items = await self.store.get_list(user.domain, user.local or "", name)
        if items is None:
            raise StanzaError("item-not-found", f"no list {name!r}")
        self._apply(session, PrivacyList.build(name, items), default)

    async def _set_default(self, user: JID, session: C2S, name: str | None) -> None:
        """§2.5: change or decline the default list; ``conflict`` while the current default
        applies to another resource (one without an active list)."""
        applied = APPLIED.get(session)
        current = applied.default if applied is not None else None
        if current is not None and (name is None or name != current.name) and \
                self._default_in_use_elsewhere(user, session):
            raise StanzaError("conflict", f"list {current.name!r} is in use by another resource")
        if not await self.store.set_default(user.domain, user.local or "", name):
            raise StanzaError("item-not-found", f"no list {name!r}")
        await self._changed(user, None, push=None)

    def _default_in_use_elsewhere(self, user: JID, session: C2S) -> bool:
        for other in self._sessions(user):
            if other is session:
                continue
            applied = APPLIED.get(other)
            if applied is not None and applied.active is None:
                return True
        return False

    async def _set_list(self, user: JID, name: str, items: list[Any]) -> None:
        """§2.6/§2.7: create or replace the list (all its items, never a delta)."""
        await self.store.set_list(user.domain, user.local or "", name, items)
        await self._changed(user, name, push=name)

    async def _remove_list(self, user: JID, session: C2S, name: str) -> None:
        """§2.8: remove a list; ``conflict`` while it applies to another resource (§2.2 rule
        11: as its active list, or as the default of a resource without one)."""
        for other in self._sessions(user):
            if other is session:
                continue
            applied = APPLIED.get(other)
            effective = applied.effective if applied is not None else None
            if effective is not None and effective.name == name:
                raise StanzaError("conflict", f"list {name!r} is in use by another resource")
        if not await self.store.remove_list(user.domain, user.local or "", name):
            raise StanzaError("item-not-found", f"no list {name!r}")
        await self._changed(user, name, push=name)

    async def _changed(self, user: JID, changed: str | None, push: str | None) -> None:
        """A stored change: this node's sessions apply it, the other nodes are told, and
        every resource gets the privacy list push (§2.2 rule 10) when a list changed."""
        await self._refresh(user, changed)
        change = Element("query", ns.PRIVACY)
        if changed is not None:
            change.add("list", attrs={"name": changed})
        else:
            change.add("default")
        self.server.cluster.cast(user, CAST_TOPIC, change)
        if push is not None:
            self._push(user, push)

    def _changed_elsewhere(self, user: JID, change: Element, args: tuple[str, ...]) -> None:
        """A change stored by another node: re-read it for the sessions of this node and
        push it to them; never cast again (no loop)."""
        lst = change.find("list", ns.PRIVACY)
        name = lst.attrs.get("name") if lst is not None else None
        self.server.spawn(self._refresh_and_push(user, name))

    async def _refresh_and_push(self, user: JID, name: str | None) -> None:
        try:
            await self._refresh(user, name)
        except StorageError:
            log.exception("privacy_refresh_failed user=%s", user)
            return
        if name is not None:
            self._push(user, name)

    def _push(self, user: JID, name: str) -> None:
        """§2.2 rule 10 and §2.6: an IQ set naming the changed list to every resource."""
        for session in self._sessions(user):
            push = Element("iq", ns.CLIENT, {"type": "set", "id": f"privacy-{secrets.token_hex(6)}",
                                             "from": str(user), "to": str(session.jid)})
            push.add("query", ns.PRIVACY).add("list", attrs={"name": name})
            session.deliver(push)
            if self.measured:
                self.server.instrument.emit(MOD_PRIVACY_PUSH_ITEM, {"host_type": user.domain},
                                            {"count": 1})

    # -- presence-out after a change (§2.11) --------------------------------------------------
    def _presence_after_change(self, session: C2S, before: PrivacyList | None,
                               after: PrivacyList | None) -> None:
        """§2.11: a contact now denied the user's presence sees the user go unavailable; one
        allowed again gets the current presence (both only for contacts that may see it:
        subscribers and those that got directed presence)."""
        if session.presence is None or before is after:
            return
        roster = ROSTER_CACHE.get(session) or {}
        targets = {c for c, item in roster.items() if item.subscription in ("from", "both")}
        targets |= DIRECTED.get(session) or set()
        hooks = self.server.hooks
        for contact in targets:
            if _exempt(session.jid, contact):
                continue
            item = roster.get(contact.bare)
            was = before is not None and before.denies(PRESENCE_OUT, contact, item)
            now = after is not None and after.denies(PRESENCE_OUT, contact, item)
            if now and not was:
                stanza = Element("presence", ns.CLIENT, {"type": "unavailable"})
            elif was and not now and hooks.fold(H.PRIVACY_CHECK_PACKET, True, session, contact,
                                                 True):
                # Allowed again by the list (now applied: check_presence_out agrees) and by
                # the other filters (XEP-0191's blocklist).
                stanza = session.presence.copy()
            else:
                continue
            stanza.attrs["from"] = str(session.jid)
            stanza.attrs["to"] = str(contact)
            self.server.router.route(session.jid, contact, stanza)

    # -- filtering ----------------------------------------------------------------------------
    def check_presence_out(self, allow: bool, c2s: C2S, to: JID,
                           notification: bool) -> bool | H.Stop:
        """§2.11, §2.13: presence the server sends for the user (mod_presence's broadcasts
        and probes, mod_blocking's after an unblock) against what the session applies."""
        if denies_presence_out(c2s, to, notification):
            return H.Stop(False)
        return allow

    def filter_inbound(self, stanza: Element | None, c2s: C2S, *_: Any) -> Element | None:
        """§2.9, §2.10, §2.12, §2.13 with §2.14's answers, for a stanza to this session."""
        if stanza is None:
            return None
        denied = _APPLIED_KEY in c2s.module_state and \
            _denies(c2s, _jid_attr(stanza, "from"), inbound_kind(stanza))
        if self.measured:
            self._checked(c2s.jid.domain, denied)
        if not denied:
            return stanza
        # §2.14: IQ get/set MUST get an error (service-unavailable), a message SHOULD (the
        # 1.5 change: no more "black hole"), presence MUST NOT. A message to the bare JID
        # reaching several resources is answered by a lone resource only, so that the sender
        # is not told "unavailable" about a copy another resource took.
        name, stype = stanza.name, stanza.attrs.get("type")
        if (name == "iq" and stype in ("get", "set")) or (_answered_message(stanza) and (
                _jid_attr(stanza, "to") == c2s.jid
                or len(self._sessions(c2s.jid.bare)) <= 1)):
            self.server.router.bounce(stanza, StanzaError("service-unavailable"))
        return None

    def filter_outbound(self, stanza: Element | None, c2s: C2S) -> Element | None:
        """§2.11, §2.13, §2.14: a stanza from the user to a denied entity is not routed; a
        message or IQ is answered ``not-acceptable``, a presence dropped."""
        if stanza is None:
            return None
        # Without 'to', a presence is a broadcast: mod_presence asks check_presence_out.
        denied = _APPLIED_KEY in c2s.module_state and \
            _denies(c2s, _jid_attr(stanza, "to"), outbound_kind(stanza))
        if self.measured:
            self._checked(c2s.jid.domain, denied)
        if not denied:
            return stanza
        if stanza.name != "presence" and stanza.attrs.get("type") not in ("error", "result"):
            c2s.send(error_reply(stanza, StanzaError("not-acceptable", type_="cancel")))
        return None

    async def filter_presence_to_user(self, handled: bool, frm: JID, to: JID,
                                      stanza: Element) -> Any:
        """Subscription stanzas go to the account, not to a session: the default list
        decides (§2.2 rule 2); only whole-stanza items stop them (§2.13), without an answer
        (§2.14). Notifications and probes are checked where they reach a session (or leave
        for the prober, through mod_presence)."""
        if handled or stanza.attrs.get("type") in (None, "unavailable", "probe", "error"):
            return handled
        denied = await self._default_denies(to.bare, frm, 0)
        if self.measured:
            self._checked(to.domain, denied)
        if denied:
            return H.Stop(True)
        return handled

    async def check_offline(self, allow: bool, server: Server, user: JID, frm: JID,
                            stanza: Element) -> Any:
        """A stanza for an account without an available session meets the default list
        (§2.2 rule 2); a denied message is answered ``service-unavailable`` (§2.14), as
        from an account that stores nothing, and not stored."""
        if not allow or _exempt(user, frm):
            return allow
        denied = await self._default_denies(user.bare, frm, inbound_kind(stanza))
        if self.measured:
            self._checked(user.domain, denied)
        if denied:
            if _answered_message(stanza):
                self.server.router.bounce(stanza, StanzaError("service-unavailable"))
            return H.Stop(False)
        return allow

    async def check_outbound_offline(self, allow: bool, server: Server, user: JID, to: JID,
                                     stanza: Element) -> Any:
        """Presence sent for an account without a session (the answer to a contact's probe)
        meets its default list (§2.2 rule 2, presence-out §2.11): a contact the user hides
        presence from learns nothing, not even that the user is offline or its last status."""
        if not allow or _exempt(user, to):
            return allow
        if await self._default_denies(user.bare, to, outbound_kind(stanza)):
            return H.Stop(False)
        return allow

    async def _default_denies(self, user: JID, contact: JID, kind: int) -> bool:
        default = await self._default_of(user)
        if default is None:
            return False
        item = None
        if default.needs_roster:
            roster = roster_module(self.server)
            item = None if roster is None else await roster.get_roster_item(user, contact.bare)
        return default.denies(kind, contact, item)


def _dump_list(plist: PrivacyList) -> list[Any]:
    """An active list as plain data (it travels marshalled with a resumed session)."""
    return [plist.name, [[i, "deny" if r.deny else "allow", r.type, r.value, r.kinds]
                         for i, r in enumerate(plist.rules)]]


def _load_list(plain: list[Any]) -> PrivacyList:
    name, rules = plain
    return PrivacyList.build(name, [PrivacyItem(*rule) for rule in rules])


def _answered_message(stanza: Element) -> bool:
    """A denied message that gets §2.14's error: not a groupchat message, since an error
    sent back to a room (XEP-0045, MUC Light) may remove the user from it."""
    return stanza.name == "message" and stanza.attrs.get("type") != "groupchat"


def _exempt(user: JID, other: JID) -> bool:
    """Never filtered: the user's own resources (§2.1: a list MUST NOT block them) and the
    user's own server, whose answers and pushes the session needs whatever the list says
    (a deny-all fall-through would otherwise cut the session off from its server)."""
    return other.bare == user.bare or (other.local is None and other.resource is None
                                       and other.domain == user.domain)


def _named(child: Element, what: str, required: bool) -> str | None:
    """The 'name' of an ``<active/>``, ``<default/>`` or ``<list/>``; bad-request when a
    list has none or a name is longer than the storage keeps."""
    if child.name != what or child.xmlns != ns.PRIVACY:
        raise StanzaError("bad-request", f"unexpected <{child.name}/>")
    name = child.attrs.get("name")
    if not name:
        if required:
            raise StanzaError("bad-request", f"<{what}/> needs a name")
        return None
    if len(name) > MAX_NAME:
        raise StanzaError("bad-request", f"a list name has at most {MAX_NAME} characters")
    return name


def _jid_attr(stanza: Element, attr: str) -> JID | None:
    raw = stanza.attrs.get(attr)
    if not raw:
        return None
    try:
        return JID.parse(raw)
    except InvalidJID:
        return None

"""One XEP-0045 room: its configuration, affiliations, occupants, history and subject.

A room lives on this node as a plain object; every stanza addressed to it (its bare JID or
an occupant JID) arrives through ``route`` in order, and everything it sends leaves through
the server's router. The room never awaits: storage writes are spawned (a persistent room is
written after each change, so that dropping it from memory — hibernation — loses nothing).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import itertools
import logging
import secrets
import time
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import precis_i18n

from suricate.core import hooks as H
from suricate.jid import JID, InvalidJID
from suricate.modules.mod_muc.archive import (
    RETRACT_ESL,
    RETRACT_TOMBSTONE,
    RoomArchive,
    archive_of,
    retracted_element,
    retraction_of,
)
from suricate.modules.mod_muc.avatar import AVATARHASH, accepted_vcard, avatar_hashes
from suricate.modules.mod_muc.config import (
    ROOMCONFIG,
    ROOMINFO,
    RoomConfig,
    apply_form,
    config_form,
)
from suricate.modules.mod_muc.limits import RoomLimiter
from suricate.protocol.errors import StanzaError, error_reply
from suricate.xml import ns
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.modules.mod_muc import ModMuc

log = logging.getLogger("suricate.mod_muc")

MUC = "http://jabber.org/protocol/muc"
MUC_USER = MUC + "#user"
MUC_ADMIN = MUC + "#admin"
MUC_OWNER = MUC + "#owner"
SID = "urn:xmpp:sid:0"  # XEP-0359
OCCUPANT_ID = "urn:xmpp:occupant-id:0"  # XEP-0421
CONFERENCE = "jabber:x:conference"  # XEP-0249
MUC_REQUEST = MUC + "#request"  # §7.13 voice requests
RETRACT = "urn:xmpp:message-retract:1"  # XEP-0424
MODERATE = "urn:xmpp:message-moderate:1"  # XEP-0425
# XEP-0425 0.2, before 0.3 (2023) renamed the namespaces: the request and the notice wrapped in
# a XEP-0422 <apply-to/>. Gajim 1.7 and nbxmpp 4 (Debian 12's) speak only this version, and
# show their moderation menu only where a room advertises it.
MODERATE_0 = "urn:xmpp:message-moderate:0"
RETRACT_0 = "urn:xmpp:message-retract:0"
FASTEN = "urn:xmpp:fasten:0"  # XEP-0422
MUC_REGISTER = MUC + "#register"  # §7.10
MAM = "urn:xmpp:mam:2"  # XEP-0313
MAM_EXTENDED = "urn:xmpp:mam:2#extended"
# XEP-0410 §3.3: a room that answers self-pings itself says so on its JID.
SELF_PING_OPTIMIZATION = MUC + "#self-ping-optimization"

AFFILIATIONS = ("owner", "admin", "member", "outcast", "none")
ROLES = ("moderator", "participant", "visitor", "none")
_AFF_RANK = {"owner": 4, "admin": 3, "member": 2, "none": 1, "outcast": 0}
# Stanza error conditions (RFC 6120 §8.3.3) saying an address cannot take stanzas any more:
# an occupant's session answering the room with one of them leaves (Room._error_reply).
_UNREACHABLE = frozenset({"gone", "item-not-found", "recipient-unavailable", "redirect",
                          "remote-server-not-found", "remote-server-timeout",
                          "service-unavailable"})

_iq_ids = itertools.count(1)


def _random_id() -> str:
    """A random stanza id (a uuid4's hex). uuid is imported on first use: its import (it
    loads platform) is ~2 ms of the start-up of every server with MUC."""
    import uuid

    return uuid.uuid4().hex


_NICKNAME = precis_i18n.get_profile("NicknameCaseMapped")


@functools.lru_cache(maxsize=8192)
def nick_key(nick: str) -> str | None:
    """What a nick is compared by (RFC 7700 §2.4, the Nickname profile's comparison: spaces
    trimmed and collapsed, NFKC, lower case), None for a nick that profile refuses (only
    spaces: XEP-0045 §7.2.1 says a nick is not that). Nicks keep the form their owner gave
    (resourceprep'd occupant JIDs); the key only decides which two are the same nick, so
    "Alice", "alice", "Alice " and the full-width "Ａlice" cannot be two occupants."""
    try:
        return str(_NICKNAME.enforce(nick))
    except UnicodeError:
        return None


def _now_stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _same_presence(a: Element, b: Element) -> bool:
    """Two client presences that show the same (show, status, priority, caps...)."""
    return a is b or a.serialize() == b.serialize()


def _parse_stamp(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class Occupant:
    """One nick in the room: one account (bare JID) with one or more sessions.

    Several sessions of one account under one nick (multi-session, allowed by the room's
    ``allow_multiple_sessions``) are one occupant: one nick, one role, one affiliation, one
    occupant-id (XEP-0421 §3: it is per bare JID). Each session keeps the presence it sent;
    the occupant shows the most recent one (the session that joined or sent presence last),
    and that session answers the IQs sent to the nick (XEP-0045 §7.5 leaves multi-session
    delivery to the service).
    """

    __slots__ = ("nick", "sessions", "role", "occupant_id")

    def __init__(self, nick: str, jid: JID, role: str, presence: Element,
                 occupant_id: str) -> None:
        self.nick = nick
        #: real full JID -> that session's presence (without the MUC x), oldest first: the
        #: last one is the most recent session.
        self.sessions: dict[JID, Element] = {jid: presence}
        self.role = role
        self.occupant_id = occupant_id

    @property
    def jid(self) -> JID:
        """The most recent session's real full JID (the one shown to those who see JIDs)."""
        return next(reversed(self.sessions))

    @property
    def presence(self) -> Element:
        """The presence the occupant shows: its most recent session's."""
        return self.sessions[self.jid]

    def update(self, jid: JID, presence: Element) -> None:
        """``jid``'s presence, which becomes the most recent session."""
        self.sessions.pop(jid, None)
        self.sessions[jid] = presence



def count_down(counts: dict[JID, int], key: JID) -> int:
    """One less of ``key`` in ``counts`` (gone from it at zero); what is left."""
    n = counts.get(key, 0) - 1
    if n > 0:
        counts[key] = n
    else:
        counts.pop(key, None)
    return n

class Room:
    def __init__(self, module: ModMuc, jid: JID, config: RoomConfig, *,
                 affiliations: dict[JID, tuple[str, str]] | None = None,
                 subject: str = "", subject_author: str = "", locked: bool = False,
                 secret: bytes | None = None, nicks: dict[JID, str] | None = None,
                 vcard: Element | None = None) -> None:
        self.module = module
        self.server = module.server
        self.jid = jid  # bare room JID
        self.config = config
        self.affiliations: dict[JID, tuple[str, str]] = affiliations or {}
        self.occupants: dict[str, Occupant] = {}
        self.by_jid: dict[JID, Occupant] = {}  # every session of every occupant
        # Sessions being removed now: the unavailable presence sent to one that cannot be
        # reached may bounce back at once (our s2s layer bounces while its link is down),
        # and that error must not remove the session again (_session_gone, re-entered).
        self._leaving: set[JID] = set()
        #: bare JID -> its sessions in the room, under any nick (``_attach``, ``_detach``):
        #: the account counts as in the room once (max_user_conferences).
        self._sessions_of: dict[JID, int] = {}
        # history_size = 0 keeps none (maxlen 0), never an unbounded deque.
        # (time, message, its size in characters, stanza-id, sender's occupant-id)
        self.history: deque[tuple[float, Element, int, str, str | None]] = deque(
            maxlen=module.opts["history_size"])
        self.subject = subject
        self.subject_author = subject_author
        #: When the subject was last changed here (time.time()), for the <delay/> of the
        #: subject a joining occupant gets (§7.2.15 since 1.34.0); None: not known (never
        #: changed, or changed before a restart: the store keeps no time).
        self.subject_stamp: float | None = None
        self.locked = locked  # XEP-0045 §10.1.1: new rooms are locked until configured
        self.last_active = time.monotonic()
        self.pending_writes = 0
        self.gone = False
        # XEP-0421 §3: occupant ids are stable per room and real bare JID, opaque to others.
        self.secret = secret or secrets.token_bytes(16)
        self._forwarded: dict[str, tuple[JID, str | None, str]] = {}
        #: §7.10 registered nicks: bare JID -> nick, reserved for that JID.
        self.nicks: dict[JID, str] = nicks or {}
        #: XEP-0486: the room's vCard (None: it has none) and the hashes of its photos.
        self.vcard = vcard
        self.avatar_hashes = avatar_hashes(vcard)
        # Several nodes with max_user_conferences (conferences.py): while a join waits for
        # its place in Redis, the room's stanzas wait behind it, in order.
        self._held: deque[tuple[JID, JID, Element]] | None = None
        self._admitted: set[JID] = set()  # joins whose place was taken, being replayed
        self._password_ok: set[JID] = set()  # joins the http_auth_pool service allowed
        #: min_message_interval, min_presence_interval and the shapers (limits.py); None
        #: when they are all off: the message path then pays this one attribute test.
        limits = module.limits
        self.limiter: RoomLimiter | None = None if limits is None else RoomLimiter(self, limits)

    @property
    def holding(self) -> bool:
        """A join is waiting for its place across the cluster (``_reserve``)."""
        return self._held is not None

    # -- facts -------------------------------------------------------------------------------
    def affiliation(self, jid: JID) -> str:
        if self.module.is_service_admin(jid, self.jid.domain):
            return "owner"
        entry = self.affiliations.get(jid.bare)
        if entry is None and jid.local is not None:
            entry = self.affiliations.get(JID(None, jid.domain))  # a whole server
        return entry[0] if entry else "none"

    def _default_role(self, aff: str) -> str:
        if aff in ("owner", "admin"):
            return "moderator"
        if aff == "member":
            return "participant"
        if aff == "outcast" or self.config.members_only:
            return "none"
        return "participant" if self.config.members_by_default else "visitor"

    def nick_reserved_for_other(self, nick: str, jid: JID) -> bool:
        """§7.10: a registered nick is only for the JID that registered it (compared as
        nicks are, ``nick_key``)."""
        key = nick_key(nick)
        return any(owner != jid.bare and (n == nick or nick_key(n) == key)
                   for owner, n in self.nicks.items())

    def nick_taken_by_other(self, nick: str, jid: JID) -> bool:
        """An occupant of another account has a nick that compares equal to ``nick``
        (§7.2.9, RFC 7700 §2.4): "alice" when "Alice" is there is a conflict, not a
        second Alice. (The same account may hold both: it spoofs no one.)"""
        key = nick_key(nick)
        bare = jid.bare
        return any(nick_key(n) == key and occ.jid.bare != bare
                   for n, occ in self.occupants.items())

    def _sees_jids(self, occ: Occupant) -> bool:
        return not self.config.anonymous or occ.role == "moderator"

    def occupant_id_of(self, jid: JID) -> str:
        digest = hashlib.sha256(self.secret + str(jid.bare).encode()).digest()
        return base64.urlsafe_b64encode(digest[:15]).decode()

    def is_empty(self) -> bool:
        return not self.occupants

    def _occupant_jid(self, nick: str) -> JID:
        # Nicks in the table come from prepared occupant JIDs (resourceprep, §7.2.1).
        return JID._prepared(self.jid.local, self.jid.domain, nick)

    # -- sending -----------------------------------------------------------------------------
    def _send(self, frm: JID, to: JID, stanza: Element) -> None:
        stanza.attrs["from"] = str(frm)
        stanza.attrs["to"] = str(to)
        self.server.router.route(frm, to, stanza)

    def _error(self, stanza: Element, condition: str, text: str | None = None) -> None:
        if stanza.attrs.get("type") in ("error", "result"):
            return
        self.server.router.bounce(stanza, StanzaError(condition, text))

    def _result(self, iq: Element, payload: Element | None = None) -> None:
        attrs = {"type": "result"}
        if "id" in iq.attrs:
            attrs["id"] = iq.attrs["id"]
        reply = Element("iq", ns.CLIENT, attrs, [payload] if payload is not None else [])
        self._send(JID.parse(iq.attrs["to"]), JID.parse(iq.attrs["from"]), reply)

    # -- entry point -------------------------------------------------------------------------
    def route(self, frm: JID, to: JID, stanza: Element) -> None:
        if self._held is not None:
            self._held.append((frm, to, stanza))
            return
        self.last_active = time.monotonic()
        kind = stanza.name
        if self.locked and self.affiliation(frm) != "owner" and frm not in self.by_jid:
            # §10.1.1: a locked room does not exist for anyone but its owner.
            if not (kind == "presence" and stanza.attrs.get("type") in ("unavailable", "error")):
                self._error(stanza, "item-not-found", "the room is locked")
            return
        if kind == "presence":
            self._presence(frm, to, stanza)
        elif kind == "message":
            if to.resource is None:
                self._message_to_room(frm, stanza)
            else:
                self._private_message(frm, to.resource, stanza)
        elif kind == "iq":
            if to.resource is None:
                self._iq_to_room(frm, stanza)
            else:
                self._iq_to_occupant(frm, to.resource, stanza)

    async def _reserve(self, frm: JID, created: bool) -> None:
        """The held join's place across the cluster; then the held stanzas go, in order.
        ``created``: the join that made the room (its creator, §10.1.1)."""
        conferences = self.module.conferences
        allowed = conferences is None or await conferences.enter(frm, self.jid)
        held, self._held = self._held or deque(), None
        first = held.popleft()
        if allowed:
            self._admitted.add(frm)
            if created and not self.gone:
                self._join(frm, first[1].resource or "", first[2], created=True)
            else:
                self._replay(*first)
            self._admitted.discard(frm)
            if frm not in self.by_jid and conferences is not None:
                # Refused by a check made again (the nick taken meanwhile...): the place goes.
                await conferences.leave(frm, self.jid)
        else:
            self._error(first[2], "resource-constraint", "too many rooms (max_user_conferences)")
        for item in held:
            if self._held is not None:  # another join holds the room again: behind it
                self._held.append(item)
            else:
                self._replay(*item)
        if not self.occupants and self._held is None and not self.gone:
            self.module.room_emptied(self)  # a creator refused: the room goes as it came

    def _replay(self, frm: JID, to: JID, stanza: Element) -> None:
        if self.gone:
            self.module.route(frm, to, stanza)  # the room ended meanwhile: as if new
        else:
            self.route(frm, to, stanza)

    # -- presence (§7.2, §7.6, §7.7, §7.14) --------------------------------------------------
    def _presence(self, frm: JID, to: JID, stanza: Element) -> None:
        ptype = stanza.attrs.get("type")
        if ptype is None and self.limiter is not None \
                and not self.limiter.presence(frm, to, stanza):
            return  # early (min_presence_interval, user_presence_shaper): it waits
        self._presence_now(frm, to, stanza, ptype)

    def presence_released(self, frm: JID, to: JID, stanza: Element) -> None:
        """A presence the limits held is due (limits.py)."""
        if self._held is not None:
            self._held.append((frm, to, stanza))  # behind a join waiting for its place
        else:
            self._presence_now(frm, to, stanza, stanza.attrs.get("type"))

    def _presence_now(self, frm: JID, to: JID, stanza: Element, ptype: str | None) -> None:
        occ = self.by_jid.get(frm)
        if ptype == "error":
            if occ is not None:
                # The session's client or server is gone: it leaves (status 333, §7.2.? of
                # XEP-0045 1.34: removed because of a technical problem).
                self._session_gone(occ, frm, codes=("333",))
            return
        if ptype == "unavailable":
            if occ is not None:
                self._session_gone(occ, frm, presence=self._clean_presence(stanza, occ.role))
            return
        if ptype is not None:
            return  # subscription stanzas and probes mean nothing to a room
        nick = to.resource
        if not nick:
            # §7.2.1: a join without a nick (the bare room JID) is jid-malformed.
            self._error(stanza, "jid-malformed", "a room nickname is required")
            return
        if occ is None:
            self._join(frm, nick, stanza)
        elif occ.nick != nick:
            self._change_nick(occ, frm, nick, stanza)
        elif stanza.find("x", MUC) is not None:
            # XEP-0045 §17.3 (Presence business rules): a join from a session that is
            # joined already is a full synchronization request: the client lost track of the
            # room (a reconnect the room never noticed, a failed XEP-0410 self-ping...) and
            # waits for everything a join gets, the subject last, before it shows the room.
            self._sync_session(occ, frm, stanza, new=False)
        else:
            # §7.7: a presence update; with several sessions it becomes the occupant's
            # presence (the most recent session's), seen by everyone.
            occ.update(frm, self._clean_presence(stanza, occ.role))
            self._broadcast_presence(occ)

    def _clean_presence(self, stanza: Element, role: str) -> Element:
        kept = [c for c in stanza.children
                if not (isinstance(c, Element) and c.xmlns in (MUC, MUC_USER, OCCUPANT_ID))]
        if role == "visitor" and not self.config.allow_visitor_status:
            kept = [c for c in kept if not (isinstance(c, Element) and c.name == "status")]
        return Element("presence", ns.CLIENT, {}, kept)

    def _account_here(self, jid: JID) -> bool:
        """A session of ``jid``'s account is in the room (under any nick)."""
        return jid.bare in self._sessions_of

    def _attach(self, jid: JID, occ: Occupant) -> None:
        """Session ``jid`` is in the room now, as ``occ``."""
        self.by_jid[jid] = occ
        bare = jid.bare
        n = self._sessions_of.get(bare, 0)
        self._sessions_of[bare] = n + 1
        self.module.occupant_joined(jid, self, first=n == 0)

    def _detach(self, jid: JID) -> None:
        """Session ``jid`` is out of the room (the occupant's table is the caller's)."""
        if self.by_jid.pop(jid, None) is None:
            return
        if self.limiter is not None:
            self.limiter.left(jid)
        n = count_down(self._sessions_of, jid.bare)
        self.module.occupant_left(jid, self, last=n <= 0)

    def _join(self, frm: JID, nick: str, stanza: Element, created: bool = False) -> None:
        aff = self.affiliation(frm)
        cfg = self.config
        if aff == "outcast":
            self._error(stanza, "forbidden", "you are banned from this room")  # §7.2.7
            return
        if cfg.members_only and _AFF_RANK[aff] < _AFF_RANK["member"]:
            self._error(stanza, "registration-required", "members only")  # §7.2.6
            return
        if nick_key(nick) is None:
            # RFC 7700: nothing left of the nick but spaces (§7.2.1: not a nick).
            self._error(stanza, "jid-malformed", "a room nickname is required")
            return
        other = self.occupants.get(nick)
        if other is not None and not (cfg.allow_multiple_sessions
                                      and other.jid.bare == frm.bare):
            # §7.2.9: the nick is someone else's (or the room keeps one session per nick).
            self._error(stanza, "conflict", "nickname in use")
            return
        if other is None and self.nick_taken_by_other(nick, frm):
            self._error(stanza, "conflict", "nickname in use")  # §7.2.9, RFC 7700 §2.4
            return
        if self.nick_reserved_for_other(nick, frm):
            self._error(stanza, "conflict", "nickname registered by someone else")  # §7.10
            return
        limit = cfg.max_users
        if aff in ("owner", "admin"):
            limit += self.module.opts["max_users_admin_threshold"]
        # §7.2.10 counts occupants: another session of one does not take a place.
        if other is None and len(self.occupants) >= limit:
            self._error(stanza, "service-unavailable", "the room is full")  # §7.2.10
            return
        if cfg.password_protected and aff != "owner" and frm not in self._password_ok:
            # Every session proves it knows the password (§7.2.5), not only the first.
            x = stanza.find("x", MUC)
            given = x.find_text("password", MUC) if x is not None else None
            http_auth = self.module.http_auth
            if http_auth is not None and given is not None:
                # http_auth_pool: the service decides (http_auth.py); the join goes on
                # when it answers, the room meanwhile serves the others.
                self.server.spawn(self._http_auth(http_auth, frm, nick, stanza, given))
                return
            if given != cfg.password:
                self._error(stanza, "not-authorized", "password required")  # §7.2.5
                return
        if not self._account_here(frm) and not self.module.may_join_another(frm):
            self._error(stanza, "resource-constraint", "too many rooms (max_user_conferences)")
            return
        if self.module.conferences is not None:
            if frm not in self._admitted:
                # The account's rooms on the other nodes count too: ask Redis first (a
                # room the account is in already is not counted twice: conferences.py).
                self._held = deque([(frm, self._occupant_jid(nick), stanza)])
                self.server.spawn(self._reserve(frm, created))
                return
            self._admitted.discard(frm)
        if other is not None:
            self._add_session(other, frm, stanza)
            return
        role = self._default_role(aff)
        occ = Occupant(nick, frm, role, self._clean_presence(stanza, role),
                       self.occupant_id_of(frm))
        # §7.2.3: first the presence of every occupant already there, ...
        sees = self._sees_jids(occ)
        for present in self.occupants.values():
            self._send(self._occupant_jid(present.nick), frm,
                       self._presence_of(present, with_jid=sees))
        self.occupants[nick] = occ
        self._attach(frm, occ)
        # ... then the newcomer's to everyone, its own last with the status codes of §7.2.
        self._broadcast_presence(occ, own=self._join_codes(created))
        if (room_log := self._room_log()) is not None:
            self._log(room_log, "join", nick)
        self._send_history(frm, stanza.find("x", MUC))
        self._send_subject(frm)

    async def _http_auth(self, http_auth: Any, frm: JID, nick: str, stanza: Element,
                         password: str) -> None:
        verdict = await http_auth.check(frm, self.jid, password)
        if verdict is None:
            self._error(stanza, "service-unavailable", "Internal server error")
        elif verdict is not True:
            self._error(stanza, "not-authorized", str(verdict))
        elif self.gone:
            self.module.route(frm, self._occupant_jid(nick), stanza)  # as if new
        elif frm not in self.by_jid:
            self._password_ok.add(frm)
            try:
                self._join(frm, nick, stanza)
            finally:
                self._password_ok.discard(frm)

    def _room_log(self) -> Any:
        """mod_muc_log when it runs and this room is logged, else None."""
        return self.module.room_log if self.config.logging else None

    def _log(self, room_log: Any, kind: str, nick: str, text: str = "", extra: str = "") -> None:
        room_log.event(self.jid, self.config.title, kind, nick, text, extra)

    def _join_codes(self, created: bool = False) -> list[str]:
        """The status codes of a joining session's own presence (§7.2)."""
        own: list[str] = ["110"]
        if not self.config.anonymous:
            own.append("100")  # §7.2.4: the room is non-anonymous
        if self.config.logging:
            own.append("170")  # §7.2.12: the room is logged
        if created:
            own.append("201")  # §10.1.1: the room was created (and is locked)
        return own

    def _add_session(self, occ: Occupant, frm: JID, stanza: Element) -> None:
        """Another session of ``occ``'s account joins under its nick (multi-session)."""
        self._sync_session(occ, frm, stanza, new=True)

    def _sync_session(self, occ: Occupant, frm: JID, stanza: Element, *, new: bool) -> None:
        """Session ``frm`` of ``occ`` gets what any joiner gets, in the order of §7.2.3 (the
        other occupants' presence, its own with 110 last, history, subject): a session that
        joins under the nick of its account (``new``, multi-session), or one joined already
        that sends its join again (§17.3, full synchronization). The occupant's other
        sessions see its presence as their own (110); the other occupants see no new
        occupant, only the nick's presence when this session changes it (§17.3: "SHOULD
        send a presence update to the other participants if the join presence is
        different"; XEP-0045 leaves multi-session to the service)."""
        shown = occ.presence
        sees = self._sees_jids(occ)
        for present in self.occupants.values():
            if present is not occ:
                self._send(self._occupant_jid(present.nick), frm,
                           self._presence_of(present, with_jid=sees))
        occ.update(frm, self._clean_presence(stanza, occ.role))
        if new:
            self._attach(frm, occ)
        self._broadcast_presence(occ, own=self._join_codes(),
                                 others=not _same_presence(shown, occ.presence))
        self._send_history(frm, stanza.find("x", MUC))
        self._send_subject(frm)

    def _presence_of(self, occ: Occupant, *, with_jid: bool, codes: Iterable[str] = (),
                     ptype: str | None = None, new_nick: str | None = None,
                     reason: str | None = None, actor: str | None = None,
                     role: str | None = None, affiliation: str | None = None,
                     real: JID | None = None, base: Element | None = None) -> Element:
        """The presence ``occ`` shows to one receiver (§7.2.3): with the real JID or not.
        ``real``: the session's JID to show (a session's own copy), the most recent one
        otherwise; ``base``: the client presence to show, the occupant's otherwise."""
        if base is None:
            base = occ.presence
        pres = Element("presence", ns.CLIENT, {}, list(base.children) if ptype is None else [
            c for c in base.children if isinstance(c, Element) and c.name == "status"])
        if ptype is not None:
            pres.attrs["type"] = ptype
        x = pres.add("x", MUC_USER)
        item = x.add("item", attrs={
            "affiliation": affiliation or self.affiliation(occ.jid),
            "role": role or occ.role})
        if with_jid:
            item.attrs["jid"] = str(real or occ.jid)
        if new_nick is not None:
            item.attrs["nick"] = new_nick
        if actor is not None:
            item.add("actor", attrs={"nick": actor})
        if reason:
            item.add("reason", text=reason)
        for code in codes:
            x.add("status", attrs={"code": code})
        pres.add("occupant-id", OCCUPANT_ID, {"id": occ.occupant_id})
        return pres

    def _broadcast_presence(self, occ: Occupant, *, codes: Iterable[str] = (),
                            own: Iterable[str] = ("110",), ptype: str | None = None,
                            others: bool = True, **extra: Any) -> None:
        """``occ``'s presence to every session of every other occupant (unless ``others``
        is false), then to each of its own sessions, last (§7.2.3), each with its own real
        JID and status 110."""
        codes = list(codes)
        frm = self._occupant_jid(occ.nick)
        if others:
            for other in list(self.occupants.values()):
                if other is occ:
                    continue
                sees = self._sees_jids(other)
                for jid in list(other.sessions):
                    self._send(frm, jid, self._presence_of(
                        occ, with_jid=sees, codes=codes, ptype=ptype, **extra))
        own_codes = list(own) + [c for c in codes if c not in own]
        for jid in list(occ.sessions):
            self._send(frm, jid, self._presence_of(occ, with_jid=True, codes=own_codes,
                                                   ptype=ptype, real=jid, **extra))

    def _change_nick(self, occ: Occupant, frm: JID, nick: str, stanza: Element) -> None:
        """§7.6: unavailable with 303 from the old nick, then available from the new one.
        A nick names the occupant, not a session: with several sessions all of them move
        (each gets the 303 and the new presence as its own, 110), so that one account never
        shows under two nicks because of one session's request."""
        if nick_key(nick) is None:
            self._error(stanza, "jid-malformed", "not a room nickname")  # RFC 7700
            return
        if nick in self.occupants or self.nick_taken_by_other(nick, occ.jid):
            # Also when the nick is another occupant of the same account: sessions are not
            # merged into it. Compared as nicks are (RFC 7700 §2.4).
            self._error(stanza, "conflict", "nickname in use")
            return
        if self.nick_reserved_for_other(nick, occ.jid):
            self._error(stanza, "conflict", "nickname registered by someone else")  # §7.10
            return
        if occ.role == "visitor" and not self.config.allow_visitor_nickchange:
            self._error(stanza, "not-acceptable", "visitors may not change their nick")
            return
        self._broadcast_presence(occ, codes=["303"], ptype="unavailable", new_nick=nick)
        if (room_log := self._room_log()) is not None:
            self._log(room_log, "nick", occ.nick, extra=nick)
        del self.occupants[occ.nick]
        occ.nick = nick
        occ.update(frm, self._clean_presence(stanza, occ.role))
        self.occupants[nick] = occ
        self._broadcast_presence(occ)

    def _session_gone(self, occ: Occupant, jid: JID, codes: Iterable[str] = (),
                      presence: Element | None = None) -> None:
        """§7.14: session ``jid`` of ``occ`` leaves (``presence``: its unavailable presence,
        cleaned). The last session takes the occupant with it: everybody sees it go. One of
        several goes alone: it gets its own unavailable presence (110), the others see
        nothing, unless what the nick shows changes (the most recent session's presence)."""
        if jid in self._leaving:
            return
        self._leaving.add(jid)
        try:
            self._session_leaves(occ, jid, codes, presence)
        finally:
            self._leaving.discard(jid)

    def _session_leaves(self, occ: Occupant, jid: JID, codes: Iterable[str],
                        presence: Element | None) -> None:
        if len(occ.sessions) == 1:
            if presence is not None:
                occ.update(jid, presence)
            self._remove(occ, codes=codes)
            return
        shown = occ.presence
        leaving = occ.sessions.pop(jid)
        self._send(self._occupant_jid(occ.nick), jid, self._presence_of(
            occ, with_jid=True, real=jid, base=presence if presence is not None else leaving,
            codes=["110", *codes], ptype="unavailable", role="none"))
        self._detach(jid)
        if not _same_presence(shown, occ.presence):
            self._broadcast_presence(occ)

    def _remove(self, occ: Occupant, codes: Iterable[str] = (), **extra: Any) -> None:
        """The occupant leaves with all its sessions (a kick, a ban, its last session)."""
        extra.setdefault("role", "none")  # §7.14: an occupant who left has no role
        codes = tuple(codes)
        marked = set(occ.sessions) - self._leaving
        self._leaving |= marked  # its own copy may bounce back at once (see __init__)
        try:
            self._broadcast_presence(occ, codes=codes, ptype="unavailable", **extra)
            if (room_log := self._room_log()) is not None:
                kind = "kick" if "307" in codes else "ban" if "301" in codes else "leave"
                self._log(room_log, kind, occ.nick, extra.get("reason") or "")
            self._drop(occ)
        finally:
            self._leaving -= marked

    def _drop(self, occ: Occupant) -> None:
        self.occupants.pop(occ.nick, None)
        for jid in list(occ.sessions):
            self._detach(jid)
        if not self.occupants:
            self.module.room_emptied(self)

    # -- history and subject (§7.2.15, §7.2.16) -------------------------------------------
    def _send_history(self, to: JID, x: Element | None) -> None:
        """§7.2.15: the history to the session ``to`` that joins."""
        if not self.history:
            return
        spec = x.find("history", MUC) if x is not None else None
        maxstanzas = maxchars = None
        after = None
        if spec is not None:
            try:
                if "maxstanzas" in spec.attrs:
                    maxstanzas = int(spec.attrs["maxstanzas"])
                if "maxchars" in spec.attrs:
                    maxchars = int(spec.attrs["maxchars"])
                if "seconds" in spec.attrs:
                    after = time.time() - int(spec.attrs["seconds"])
            except ValueError:
                pass  # §7.2.15 leaves a malformed limit to the service: the default applies
            if "since" in spec.attrs:
                since = _parse_stamp(spec.attrs["since"])
                if since is not None:
                    after = since if after is None else max(after, since)
        chosen: list[tuple[float, Element]] = []
        chars = 0
        for stamp, message, size, _, _ in reversed(self.history):
            if maxstanzas is not None and len(chosen) >= maxstanzas:
                break
            if after is not None and stamp < after:
                break
            if maxchars is not None and chars + size > maxchars:
                break
            chars += size
            chosen.append((stamp, message))
        room = str(self.jid)
        for stamp, message in reversed(chosen):
            copy = message.copy()
            copy.add("delay", ns.DELAY, {"from": room, "stamp": _now_stamp(stamp)})
            self._send(JID.parse(message.attrs["from"]), to, copy)

    def _subject_message(self) -> tuple[JID, Element]:
        msg = Element("message", ns.CLIENT, {"type": "groupchat", "id": _random_id()})
        msg.add("subject", text=self.subject or None)
        frm = self._occupant_jid(self.subject_author) if self.subject_author else self.jid
        return frm, msg

    def _send_subject(self, to: JID) -> None:
        # §7.2.16: always sent (empty when there is none): clients take it as the end of join.
        frm, msg = self._subject_message()
        if self.subject_stamp is not None:
            # §7.2.15 (1.34.0): "stamped with XEP-0203 information ... the time at which
            # the subject was last modified", from the room.
            msg.add("delay", ns.DELAY, {"from": str(self.jid),
                                        "stamp": _now_stamp(self.subject_stamp)})
        self._send(frm, to, msg)

    # -- messages (§7.4, §7.5, §7.8, §8.1) ------------------------------------------------
    def _message_to_room(self, frm: JID, stanza: Element) -> None:
        mtype = stanza.attrs.get("type", "normal")
        if mtype == "error":
            self._error_reply(frm, stanza)
            return
        occ = self.by_jid.get(frm)
        if mtype != "groupchat":
            x = stanza.find("x", MUC_USER)
            if x is not None and (x.find("invite", MUC_USER) is not None
                                  or x.find("decline", MUC_USER) is not None):
                self._invitations(frm, occ, x, stanza)
                return
            form = stanza.find("x", ns.DATA_FORMS)
            if form is not None and _form_type(form) == MUC_REQUEST:
                self._voice_request(occ, form, stanza)
                return
            self._error(stanza, "bad-request", "only groupchat messages go to the room")
            return
        if occ is None:
            self._error(stanza, "not-acceptable", "only occupants may send messages")  # §7.4
            return
        if self.limiter is not None and not self.limiter.message(frm, stanza):
            return  # early (min_message_interval, the shapers): it waits, or was refused
        self._groupchat(occ, frm, stanza)

    def groupchat_released(self, frm: JID, stanza: Element) -> None:
        """A groupchat message the limits held is due (limits.py): it goes if its sender is
        still an occupant."""
        occ = self.by_jid.get(frm)
        if occ is not None:
            self._groupchat(occ, frm, stanza)

    def _groupchat(self, occ: Occupant, frm: JID, stanza: Element) -> None:
        subject = stanza.find("subject", ns.CLIENT)
        if subject is not None:
            # XEP-0045 §8.1: a <subject/> without a <body/> changes the subject. An empty
            # <body/> carries no message (mcabber's /room topic sends one with the subject):
            # it is no body, or the room would relay a "topic change" every client shows,
            # but keep the old subject for those who join next.
            body = stanza.find("body", ns.CLIENT)
            if body is None or not body.text.strip():
                self._change_subject(occ, subject.text, stanza)
                return
        if occ.role == "visitor" and self.config.moderated:
            self._error(stanza, "forbidden", "visitors have no voice")  # §7.4
            return
        if occ.role == "none":
            self._error(stanza, "forbidden")
            return
        retraction = retraction_of(stanza)
        if retraction is not None:
            # XEP-0424 §5.1 in a room: the id is the room's stanza-id, and only the author
            # retracts its message (a moderator uses XEP-0425). MongooseIM's form
            # (<apply-to id='...'><retract xmlns='urn:esl:message-retract-by-stanza-id:0'/>)
            # names the same stanza-id and follows the same rules.
            target, esl = retraction
            entry = self._history_entry(target)
            if entry is not None:
                if entry[4] != occ.occupant_id:
                    self._error(stanza, "forbidden", "not your message")
                    return
                self.history.remove(entry)
            archive = self.archive()
            if archive is not None and target.isdigit():
                # The archive checks the author itself (the message may be older than the
                # history): its copy becomes a tombstone (XEP-0424 §5).
                retracted = retracted_element(self.jid, target, esl, _now_stamp(time.time()))
                archive.retract(self.jid, int(target), occ.jid.bare, retracted)
        # The sending session (not the most recent one) is the sender the archive keeps.
        self.broadcast_message(occ.nick, occ.occupant_id, stanza, sender=frm)

    def _history_entry(self, stanza_id: str) -> tuple[float, Element, int, str, str | None] | None:
        for entry in self.history:
            if entry[3] == stanza_id:
                return entry
        return None

    def archive(self) -> RoomArchive | None:
        """The archive keeping this room's messages (mod_mam's muc section), if any."""
        archive = archive_of(self.server)
        if archive is None or self.locked or not archive.archives(self.jid.domain):
            return None
        return archive

    def broadcast_message(self, nick: str, occupant_id: str | None, stanza: Element, *,
                          sender: JID | None = None) -> str:
        """A groupchat message from ``nick`` to every occupant, with the room's stanza-id
        (XEP-0359) and the sender's occupant-id (XEP-0421); kept in the history and, when
        the room is archived, in its archive with the stanza-id as archive id (XEP-0313
        §5.1.2). Returns the stanza-id."""
        room = str(self.jid)
        children: list[Any] = []
        for child in stanza.children:
            if isinstance(child, Element):
                # XEP-0359 §5 and XEP-0421 §4: ids claimed by a client in the room's name are
                # removed, only the room sets them.
                if child.xmlns == SID and child.name == "stanza-id" \
                        and child.attrs.get("by") == room:
                    continue
                if child.xmlns == OCCUPANT_ID:
                    continue
            children.append(child)
        archive = self.archive()
        mam_id: int | None = None
        if archive is None:
            stanza_id = _random_id()  # for the history's moderation (XEP-0425) by stanza-id
        elif archive.archivable(stanza):
            mam_id = archive.new_id()
            stanza_id = str(mam_id)
        else:
            # An archived room's stanza-id is an archive id (XEP-0313 §3.5, §5.1.2): clients
            # catch up from the last one they saw (RSM <after/>), so a message the archive
            # does not keep (a chat state, a marker, a no-store hint) gets none, rather than
            # one the archive would answer item-not-found for.
            stanza_id = ""
        if stanza_id:
            children.append(Element("stanza-id", SID, {"id": stanza_id, "by": room}))
        if occupant_id is not None:
            children.append(Element("occupant-id", OCCUPANT_ID, {"id": occupant_id}))
        attrs = {"type": "groupchat"}
        if "id" in stanza.attrs:
            attrs["id"] = stanza.attrs["id"]
        if "xml:lang" in stanza.attrs:
            attrs["xml:lang"] = stanza.attrs["xml:lang"]
        frm = self._occupant_jid(nick) if nick else self.jid
        attrs["from"] = str(frm)
        message = Element("message", ns.CLIENT, attrs, children)
        if self.history.maxlen and message.find("body", ns.CLIENT) is not None \
                and retraction_of(message) is None:
            self.history.append((time.time(), message, len(message.serialize()), stanza_id,
                                 occupant_id))
        if mam_id is not None:
            assert archive is not None
            archive.keep(self.jid, mam_id, nick, sender, message)
        if nick and (room_log := self._room_log()) is not None:
            body = message.find_text("body", ns.CLIENT)
            if body is not None and retraction_of(message) is None:
                self._log(room_log, "message", nick, body)
        # Every session of every occupant (by_jid's keys): still one serialization.
        self.module.fan_out(frm, message, list(self.by_jid))
        hooks = self.server.hooks
        if hooks.has(H.MUC_MESSAGE_BROADCAST):
            # Once per occupant, here: its sessions may be on several nodes (mod_inbox).
            occupants = list(dict.fromkeys(jid.bare for jid in self.by_jid))
            hooks.fold(H.MUC_MESSAGE_BROADCAST, None, frm, sender, occupants, message)
        return stanza_id

    def _change_subject(self, occ: Occupant, subject: str, stanza: Element) -> None:
        # §8.1: moderators always; participants when the room lets them.
        if not (occ.role == "moderator"
                or (self.config.allow_change_subj and occ.role == "participant")):
            self._error(stanza, "forbidden", "you may not change the subject")
            return
        self.subject = subject
        self.subject_author = occ.nick
        self.subject_stamp = time.time()
        frm, msg = self._subject_message()
        if "id" in stanza.attrs:
            msg.attrs["id"] = stanza.attrs["id"]  # §7.2.16: the author recognizes its change
        archive = self.archive()
        if archive is not None:
            # XEP-0313 §5.1.2: "subject change stanzas" are stored with the messages, so a
            # client catching up sees the change where it happened; its stanza-id is its
            # archive id, as for messages (§3.5). The subject a join gets is not a change
            # and carries none (_send_subject).
            mam_id = archive.new_id()
            msg.add("stanza-id", SID, {"id": str(mam_id), "by": str(self.jid)})
        msg.add("occupant-id", OCCUPANT_ID, {"id": occ.occupant_id})  # XEP-0421 §4
        if archive is not None:
            kept = msg.copy()
            kept.attrs["from"] = str(frm)  # as the occupants get it (broadcast_message)
            archive.keep(self.jid, mam_id, occ.nick, occ.jid, kept)
        for jid in self.by_jid:
            self._send(frm, jid, msg.copy())
        if (room_log := self._room_log()) is not None:
            self._log(room_log, "subject", occ.nick, subject)
        if self.config.persistent:
            self.module.write(self, self.module.store.set_subject(
                self.jid.domain, self.jid.local or "", subject, occ.nick))

    def _error_reply(self, frm: JID, stanza: Element) -> None:
        """A message error from an occupant's session, to the room or to an occupant JID (the
        room's copies come from there): if it says the session cannot be reached, the session
        leaves with status 333 (XEP-0045 §15.6: "removed because of an error reply (for
        example when an s2s link fails between the MUC and the removed user's server)").
        A user's server that crashed never sends the room its unavailable presence (RFC 6121
        §4.6.3); then every groupchat copy comes back service-unavailable (RFC 6121
        §8.5.3.2.1) or remote-server-not-found (our s2s layer, RFC 6120 §8.3.3.16), and
        the ghost occupant would stay forever. Other errors (a client refusing one private
        message) change nothing."""
        occ = self.by_jid.get(frm)
        if occ is None:
            return
        error = stanza.find("error", stanza.xmlns)
        conditions = {child.name for child in error.elements()
                      if child.xmlns == ns.STANZAS_ERRORS} if error is not None else set()
        if conditions & _UNREACHABLE:
            self._session_gone(occ, frm, codes=("333",))

    def _private_message(self, frm: JID, nick: str, stanza: Element) -> None:
        """§7.5: a message to an occupant JID goes to the occupant's real JID."""
        mtype = stanza.attrs.get("type", "normal")
        if mtype == "error":
            self._error_reply(frm, stanza)
            return
        if mtype == "groupchat":
            self._error(stanza, "bad-request", "private messages are not groupchat")
            return
        occ = self.by_jid.get(frm)
        if occ is None:
            self._error(stanza, "not-acceptable", "only occupants may send private messages")
            return
        # §10.2 muc#roomconfig_allowpm: which roles may send private messages.
        allowed = self.config.allowpm
        if allowed == "none" or (allowed == "participants" and occ.role == "visitor") \
                or (allowed == "moderators" and occ.role != "moderator"):
            self._error(stanza, "forbidden", f"private messages are for {allowed} in this "
                                             "room" if allowed != "none" else
                        "private messages are disabled in this room")
            return
        target = self.occupants.get(nick)
        if target is None:
            self._error(stanza, "item-not-found", "no such occupant")
            return
        msg = Element("message", ns.CLIENT, dict(stanza.attrs), [
            c for c in stanza.children
            if not (isinstance(c, Element) and c.xmlns in (MUC_USER, OCCUPANT_ID))])
        msg.add("x", MUC_USER)
        msg.add("occupant-id", OCCUPANT_ID, {"id": occ.occupant_id})
        # Every session of the occupant gets it: the nick is the address (multi-session).
        frm_nick = self._occupant_jid(occ.nick)
        sessions = list(target.sessions)
        for jid in sessions[:-1]:
            self._send(frm_nick, jid, msg.copy())
        self._send(frm_nick, sessions[-1], msg)

    def _invitations(self, frm: JID, occ: Occupant | None, x: Element,
                     stanza: Element) -> None:
        """§7.8.2 mediated invitations and their declines."""
        for decline in x.find_all("decline", MUC_USER):
            try:
                to = JID.parse(decline.attrs.get("to", ""))
            except (InvalidJID, ValueError):
                self._error(stanza, "jid-malformed")
                return
            out = Element("message", ns.CLIENT)
            ux = out.add("x", MUC_USER)
            d = ux.add("decline", attrs={"from": str(frm.bare)})
            reason = decline.find_text("reason", MUC_USER)
            if reason:
                d.add("reason", text=reason)
            self._send(self.jid, to, out)
        invites = x.find_all("invite", MUC_USER)
        if not invites:
            return
        if occ is None:
            self._error(stanza, "not-acceptable", "only occupants may invite")
            return
        aff = self.affiliation(frm)
        privileged = aff in ("owner", "admin")
        if not (self.config.allow_user_invites or privileged):
            # §10.2 muc#roomconfig_allowinvites ("Whether to Allow Occupants to Invite
            # Others", MongooseIM's allow_user_invites): off, only admins and owners invite,
            # in an open room too (§7.8.2: forbidden).
            self._error(stanza, "forbidden", "only admins may invite to this room")
            return
        targets: list[tuple[JID, str]] = []
        for invite in invites:
            try:
                # §7.8.2: the room sends the invitation "to the invitee specified in the 'to'
                # address", a full JID included (as Prosody and ejabberd do): a client that
                # names one session reaches it even when that session sent no presence and
                # a bare JID would not (RFC 6121 §8.5.2.1.1).
                targets.append((JID.parse(invite.attrs.get("to", "")),
                                invite.find_text("reason", MUC_USER) or ""))
            except (InvalidJID, ValueError):
                self._error(stanza, "jid-malformed")
                return
            if self.affiliation(targets[-1][0].bare) == "outcast":
                # The invitation would make the banned user a member (members-only) or be
                # refused at the door (§7.2.7): a ban is lifted by an admin's affiliation
                # change (§9.2), never by an occupant's invitation. Nothing is sent.
                self._error(stanza, "forbidden", f"{targets[-1][0].bare} is banned from this "
                                                 "room")
                return
        for to, reason in targets:
            if self.config.members_only \
                    and _AFF_RANK[self.affiliation(to.bare)] < _AFF_RANK["member"]:
                # §7.8.2: in a members-only room the invitee becomes a member.
                self._set_affiliation(to.bare, "member", "", actor=None)
            out = Element("message", ns.CLIENT)
            out.add("body", text=f"{frm.bare} invites you to the room {self.jid}"
                    + (f": {reason}" if reason else ""))
            ux = out.add("x", MUC_USER)
            inv = ux.add("invite", attrs={"from": str(frm.bare)})
            if reason:
                inv.add("reason", text=reason)
            if self.config.password_protected:
                ux.add("password", text=self.config.password)
            self._send(self.jid, to, out)

    def _voice_request(self, occ: Occupant | None, form: Element, stanza: Element) -> None:
        """§7.13: a visitor asks for voice (form to the moderators); a moderator's
        submitted answer with muc#request_allow grants it (§8.6)."""
        if occ is None:
            self._error(stanza, "not-acceptable", "only occupants may ask for voice")
            return
        values = _form_values(form)
        if form.attrs.get("type") == "submit" and "muc#request_allow" in values:
            if occ.role != "moderator":
                self._error(stanza, "forbidden", "only moderators approve voice requests")
                return
            if values["muc#request_allow"] not in ("1", "true"):
                return
            target = self.occupants.get(values.get("muc#roomnick", ""))
            if target is not None and target.role == "visitor":
                self._set_role(target, "participant", "", occ.nick)
            return
        if values.get("muc#role", "participant") != "participant":
            self._error(stanza, "not-acceptable", "only voice (participant) can be requested")
            return
        if occ.role != "visitor":
            return  # already has voice: nothing to ask for
        request = Element("message", ns.CLIENT)
        x = request.add("x", ns.DATA_FORMS, {"type": "form"})
        x.add("title", text="Voice request")
        x.add("instructions", text="To approve this request for voice, select the "
              "\"Grant voice to this person?\" checkbox and submit the form.")
        for var, ftype, label, value in (
                ("FORM_TYPE", "hidden", "", MUC_REQUEST),
                ("muc#role", "list-single", "Requested role", "participant"),
                ("muc#jid", "jid-single", "User ID", str(occ.jid)),
                ("muc#roomnick", "text-single", "Room nickname", occ.nick),
                ("muc#request_allow", "boolean", "Grant voice to this person?", "false")):
            f = x.add("field", attrs={"var": var, "type": ftype})
            if label:
                f.attrs["label"] = label
            f.add("value", text=value)
        for moderator in self.occupants.values():
            if moderator.role == "moderator":
                for jid in moderator.sessions:
                    self._send(self.jid, jid, request.copy())

    # -- IQs --------------------------------------------------------------------------------
    def _iq_to_occupant(self, frm: JID, nick: str, stanza: Element) -> None:
        itype = stanza.attrs.get("type")
        if itype in ("result", "error"):
            # The answer to an IQ we forwarded to an occupant (§7.? "IQ to an occupant").
            pending = self._forwarded.pop(stanza.attrs.get("id", ""), None)
            if pending is None:
                return
            asker, asker_id, target_nick = pending
            reply = Element("iq", ns.CLIENT, dict(stanza.attrs), list(stanza.children))
            reply.set("id", asker_id)
            self._send(self._occupant_jid(target_nick), asker, reply)
            return
        occ = self.by_jid.get(frm)
        if occ is None:
            # XEP-0410 §3: a self-ping from someone not joined is not-acceptable.
            self._error(stanza, "not-acceptable", "not an occupant of the room")
            return
        target = self.occupants.get(nick)
        if target is None:
            self._error(stanza, "item-not-found", "no such occupant")
            return
        payload = stanza.first_element()
        if target is occ and payload is not None and payload.xmlns == ns.PING:
            # XEP-0410 §3: the room answers a joined client's self-ping (each session of a
            # multi-session occupant is joined: ``by_jid`` has each).
            self._result(stanza)
            return
        new_id = f"muc{next(_iq_ids)}"
        self._forwarded[new_id] = (frm, stanza.attrs.get("id"), target.nick)
        if len(self._forwarded) > 1000:  # never answered: forget the oldest
            self._forwarded.pop(next(iter(self._forwarded)))
        fwd = Element("iq", ns.CLIENT, {"type": itype or "get", "id": new_id},
                      list(stanza.children))
        if itype == "get" and payload is not None and payload.xmlns == ns.VCARD \
                and payload.name == "vCard":
            # XEP-0054 §3.3: a vCard is the account's and its server answers for it, never
            # a client. Sent to the occupant's full JID, a client answers an error (or
            # nothing), and clients that fetch occupants' avatars so (XEP-0153) show none:
            # the occupant's bare JID it is, as ejabberd, Prosody and Openfire route it. The
            # answer still comes back from the occupant JID, the real JID stays hidden.
            self._send(self._occupant_jid(occ.nick), target.jid.bare, fwd)
            return
        # An IQ has one answer: with several sessions, the most recent one answers it
        # (XEP-0045 §7.5 leaves multi-session delivery to the service).
        self._send(self._occupant_jid(occ.nick), target.jid, fwd)

    def _iq_to_room(self, frm: JID, stanza: Element) -> None:
        itype = stanza.attrs.get("type")
        if itype in ("result", "error"):
            return
        payload = stanza.first_element()
        if payload is None or len(stanza.find_all()) != 1:
            self._error(stanza, "bad-request")
            return
        xmlns = payload.xmlns
        try:
            if xmlns == ns.DISCO_INFO and itype == "get":
                self._result(stanza, self._disco_info(frm, payload))
            elif xmlns == ns.DISCO_ITEMS and itype == "get":
                self._result(stanza, self._disco_items(frm, payload))
            elif xmlns == MUC_ADMIN:
                self._admin(frm, itype, payload, stanza)
            elif xmlns == MUC_OWNER:
                self._owner(frm, itype, payload, stanza)
            elif xmlns == ns.PING and itype == "get":
                self._result(stanza)
            elif xmlns == MODERATE and itype == "set" and payload.name == "moderate":
                self._moderate(frm, stanza, payload.attrs.get("id", ""),
                               payload.find("retract", RETRACT) is not None,
                               payload.find_text("reason", MODERATE))
            elif xmlns == FASTEN and itype == "set" and payload.name == "apply-to" \
                    and (legacy := payload.find("moderate", MODERATE_0)) is not None:
                # XEP-0425 0.2 §4: <apply-to id='STANZA-ID'><moderate><retract/>.
                self._moderate(frm, stanza, payload.attrs.get("id", ""),
                               legacy.find("retract", RETRACT_0) is not None,
                               legacy.find_text("reason", MODERATE_0))
            elif xmlns == MAM:
                self._mam(frm, stanza)
            elif xmlns == ns.REGISTER and payload.name == "query":
                self._register(frm, itype, payload, stanza)
            elif xmlns == ns.VCARD and payload.name == "vCard":
                self._vcard(frm, itype, payload, stanza)
            else:
                self._error(stanza, "service-unavailable")
        except StanzaError as err:
            if stanza.attrs.get("type") not in ("error", "result"):
                self.server.router.bounce(stanza, err)

    def _moderate(self, frm: JID, stanza: Element, stanza_id: str, retract_asked: bool,
                  reason: str | None) -> None:
        """XEP-0425 §4: a moderator retracts a message; every occupant gets the
        retraction (XEP-0424) marked as moderated, and the history forgets it. The request
        is of 0.3 (``<moderate/>``) or of 0.2 (``<apply-to/>``); the notice carries both
        forms, so that the clients of either version apply it."""
        occ = self.by_jid.get(frm)
        if occ is None or occ.role != "moderator":
            raise StanzaError("forbidden", "only moderators moderate messages")
        if not retract_asked:
            raise StanzaError("bad-request", "only retraction is supported")
        if not stanza_id:
            raise StanzaError("bad-request", "the stanza-id to moderate is required")
        entry = self._history_entry(stanza_id)
        if entry is not None:
            self.history.remove(entry)
        notice = Element("message", ns.CLIENT, {"type": "groupchat",
                                                "id": _random_id()})
        retract = notice.add("retract", RETRACT, {"id": stanza_id})
        moderated = retract.add("moderated", MODERATE,
                                {"by": str(self._occupant_jid(occ.nick))})
        moderated.add("occupant-id", OCCUPANT_ID, {"id": occ.occupant_id})
        if reason:
            retract.add("reason", RETRACT, text=reason)
        # XEP-0425 0.2 §4: the same notice as a XEP-0422 fastening on the stanza-id.
        legacy = notice.add("apply-to", FASTEN, {"id": stanza_id}).add(
            "moderated", MODERATE_0, {"by": str(self._occupant_jid(occ.nick))})
        legacy.add("retract", RETRACT_0)
        if reason:
            legacy.add("reason", MODERATE_0, text=reason)
        archive = self.archive()
        if archive is not None and stanza_id.isdigit():
            # XEP-0425 §5: the archived message is replaced by a tombstone that says who
            # moderated it (and why).
            retracted = Element("retracted", RETRACT, {"stamp": _now_stamp(time.time()),
                                                       "id": stanza_id},
                                [moderated.copy()])
            if reason:
                retracted.add("reason", RETRACT, text=reason)
            archive.retract(self.jid, int(stanza_id), None, retracted)
        self._result(stanza)
        for jid in list(self.by_jid):
            self._send(self.jid, jid, notice.copy())

    # -- nick registration (§7.10) ---------------------------------------------------------
    def _register(self, frm: JID, itype: str | None, query: Element, stanza: Element) -> None:
        bare = frm.bare
        current = self.nicks.get(bare)
        if itype == "get":
            out = Element("query", ns.REGISTER)
            if current is not None:
                # XEP-0077 §3.1: already registered, with what.
                out.add("registered")
                out.add("username", text=current)
            else:
                out.add("instructions", text="Register a nickname reserved for you in this "
                                             "room")
                blank = out.add("x", ns.DATA_FORMS, {"type": "form"})
                blank.add("title", text=f"Registration with {self.jid}")
                hidden = blank.add("field", attrs={"var": "FORM_TYPE", "type": "hidden"})
                hidden.add("value", text=MUC_REGISTER)
                nick_field = blank.add("field", attrs={"var": "muc#register_roomnick",
                                                      "type": "text-single",
                                                      "label": "Nickname"})
                nick_field.add("required")
            self._result(stanza, out)
            return
        if query.find("remove", ns.REGISTER) is not None:
            # XEP-0077 §3.2: cancelling frees the nick (the membership stays, an admin's).
            if current is None:
                raise StanzaError("item-not-found", "no nick registered")
            del self.nicks[bare]
            self._persist_nick(bare, None)
            self._result(stanza)
            return
        aff = self.affiliation(frm)
        if aff == "outcast":
            raise StanzaError("forbidden", "you are banned from this room")
        if self.config.members_only and _AFF_RANK[aff] < _AFF_RANK["member"]:
            # Joining would need membership anyway: an admin grants it first.
            raise StanzaError("registration-required", "only members register in this room")
        form = query.find("x", ns.DATA_FORMS)
        if form is None or form.attrs.get("type") != "submit":
            raise StanzaError("bad-request", "submit the muc#register form")
        values = _form_values(form)
        if values.get("FORM_TYPE", MUC_REGISTER) != MUC_REGISTER:
            raise StanzaError("bad-request", f"FORM_TYPE must be {MUC_REGISTER}")
        wanted = values.get("muc#register_roomnick", "").strip()
        if not wanted:
            raise StanzaError("not-acceptable", "muc#register_roomnick is required")
        nick = self._reservable(wanted, frm)  # §7.10
        self.nicks[bare] = nick
        if aff == "none":
            # §7.10: a registered user is a member of the room.
            self._set_affiliation(bare, "member", "", actor=None)
        self._persist_nick(bare, nick)
        self._result(stanza)

    def _persist_nick(self, jid: JID, nick: str | None) -> None:
        if self.config.persistent and not self.locked:
            self.module.write(self, self.module.store.register_nick(
                self.jid.domain, self.jid.local or "", str(jid), nick))

    # -- the room's vCard and avatar (XEP-0486) ---------------------------------------------
    def _vcard(self, frm: JID, itype: str | None, payload: Element, stanza: Element) -> None:
        if itype == "get":
            # §3.4: anyone the room answers disco#info, which shows the hash anyway. Without
            # a vCard, an empty one (XEP-0054 §3.1's answer, as ejabberd): a client editing
            # the room's vCard reads it first, and an error would read as "not supported"
            # (XEP-0486 §3.2 gives service-unavailable that meaning).
            self._result(stanza, self.vcard.copy() if self.vcard is not None
                         else Element("vCard", ns.VCARD))
            return
        if self.affiliation(frm) != "owner":
            # §3.2 and §6: owners (service admins are owners of every room) only.
            raise StanzaError("forbidden", "Only owners are allowed to set avatars.")
        vcard = accepted_vcard(payload)
        before = self.vcard.serialize() if self.vcard is not None else None
        after = vcard.serialize() if vcard is not None else None
        self.vcard = vcard
        self.avatar_hashes = avatar_hashes(vcard)
        self._result(stanza)
        if after == before:
            return
        if self.config.persistent and not self.locked:
            # A locked room is stored, with its vCard, when its configuration is submitted.
            self.module.write(self, self.module.store.set_vcard(
                self.jid.domain, self.jid.local or "", after))
        if self.locked:
            return
        # §3.2: the occupants hear of a configuration change (104); the hash is in the
        # disco#info they fetch then. Not the presence from the room's bare JID some servers
        # send (XEP-0486 §5.2 discourages it: clients took it for an occupant's).
        notice = Element("message", ns.CLIENT, {"type": "groupchat", "id": _random_id()})
        notice.add("x", MUC_USER).add("status", attrs={"code": "104"})
        for jid in list(self.by_jid):
            self._send(self.jid, jid, notice.copy())

    def _mam(self, frm: JID, stanza: Element) -> None:
        """XEP-0313 §4 on the room JID: who may read the archive follows who may see the
        room's messages (XEP-0313 §6.1.2 leaves it to the room's access rules)."""
        archive = self.archive()
        if archive is None:
            raise StanzaError("service-unavailable", "this room is not archived")
        aff = self.affiliation(frm)
        occupant = frm in self.by_jid
        if aff == "outcast":
            raise StanzaError("forbidden", "you are banned from this room")
        if self.config.members_only and _AFF_RANK[aff] < _AFF_RANK["member"]:
            raise StanzaError("forbidden", "only members read this room's archive")
        if self.config.password_protected and not occupant \
                and _AFF_RANK[aff] < _AFF_RANK["member"]:
            raise StanzaError("forbidden", "join the room to read its archive")
        # Real JIDs: in non-anonymous rooms, and for those who would see them as moderators.
        real_jids = not self.config.anonymous or aff in ("owner", "admin") or (
            occupant and self.by_jid[frm].role == "moderator")
        archive.query(self.jid, frm, stanza, real_jids=real_jids)

    def features(self) -> list[str]:
        cfg = self.config
        features = [ns.DISCO_INFO, ns.DISCO_ITEMS, MUC, SID, OCCUPANT_ID, ns.PING,
                    SELF_PING_OPTIMIZATION, MODERATE, MODERATE_0, RETRACT, ns.REGISTER,
                    ns.VCARD,  # XEP-0486 §3.1: room vCards (avatars)
                    "muc_public" if cfg.public else "muc_hidden",
                    "muc_persistent" if cfg.persistent else "muc_temporary",
                    "muc_membersonly" if cfg.members_only else "muc_open",
                    "muc_moderated" if cfg.moderated else "muc_unmoderated",
                    "muc_semianonymous" if cfg.anonymous else "muc_nonanonymous",
                    "muc_passwordprotected" if cfg.password_protected else "muc_unsecured"]
        archive = self.archive()
        if archive is not None:
            features += [MAM, MAM_EXTENDED]  # XEP-0313 §6.1.2: the room is archived
            if archive.retraction:
                # XEP-0424 §"Tombstones": retracted messages stay in the archive as
                # tombstones; and MongooseIM's retraction by stanza-id, as its archived rooms.
                features += [RETRACT_TOMBSTONE, RETRACT_ESL]
        return features

    def _disco_info(self, frm: JID, payload: Element) -> Element:
        node = payload.attrs.get("node")
        if node == "x-roomuser-item":
            # §7.12: the asker's registered nick, if any.
            query = Element("query", ns.DISCO_INFO, {"node": node})
            nick = self.nicks.get(frm.bare)
            if nick is not None:
                query.add("identity", attrs={"category": "conference", "type": "text",
                                             "name": nick})
            return query
        if node:
            raise StanzaError("item-not-found")
        query = Element("query", ns.DISCO_INFO)
        query.add("identity", attrs={"category": "conference", "type": "text",
                                     "name": self.config.title or self.jid.local or ""})
        for var in sorted(self.features()):
            query.add("feature", attrs={"var": var})
        # §15.5.4 muc#roominfo (XEP-0128 extended info).
        form = query.add("x", ns.DATA_FORMS, {"type": "result"})
        for var, value in (("FORM_TYPE", ROOMINFO),
                           ("muc#roominfo_description", self.config.description),
                           ("muc#roominfo_subject", self.subject),
                           ("muc#roominfo_occupants", str(len(self.occupants))),
                           ("muc#roomconfig_roomname", self.config.title)):
            f = form.add("field", attrs={"var": var})
            if var == "FORM_TYPE":
                f.attrs["type"] = "hidden"
            f.add("value", text=value)
        if self.avatar_hashes:
            # XEP-0486 §3.3: the avatar's hashes, one value per photo (§5.1); no field
            # without an avatar (§4).
            f = form.add("field", attrs={"var": AVATARHASH, "type": "text-multi",
                                         "label": "Avatar hash"})
            for digest in self.avatar_hashes:
                f.add("value", text=digest)
        return query

    def _disco_items(self, frm: JID, payload: Element) -> Element:
        query = Element("query", ns.DISCO_ITEMS)
        # §6.5: occupants may be listed; only when the room allows it (public_list, or the
        # asker is an occupant and allow_query_users).
        asker = self.by_jid.get(frm)
        if self.config.public_list or (asker is not None and self.config.allow_query_users):
            for nick in sorted(self.occupants):
                query.add("item", attrs={"jid": str(self._occupant_jid(nick))})
        return query

    # -- muc#admin (§8, §9) -----------------------------------------------------------------
    def _admin(self, frm: JID, itype: str | None, query: Element, stanza: Element) -> None:
        items = query.find_all("item", MUC_ADMIN)
        if not items:
            raise StanzaError("bad-request", "an item is required")
        actor_aff = self.affiliation(frm)
        actor = self.by_jid.get(frm)
        actor_role = actor.role if actor is not None else "none"
        if itype == "get":
            self._result(stanza, self._admin_list(items[0], actor_aff, actor_role))
            return
        # Validate everything first: one set is all or nothing (§9.? "the service MUST apply
        # all changes or none").
        changes: list[tuple[str, Any, str, str]] = []
        # Affiliations as the request leaves them so far: a later role item is checked
        # against them (made admin, then silenced by the same request: not-allowed).
        pending: dict[JID, str] = {}
        nick_reserved: dict[str | None, JID] = {}  # nicks this request reserves
        for item in items:
            reason = item.find_text("reason", MUC_ADMIN) or ""
            if "role" in item.attrs and "nick" in item.attrs:
                role = item.attrs["role"]
                target = self.occupants.get(item.attrs["nick"])
                if role not in ROLES:
                    raise StanzaError("bad-request", f"unknown role {role}")
                if target is None:
                    raise StanzaError("item-not-found", "no such occupant")
                self._check_role_change(actor_role, actor_aff, target, role,
                                        pending.get(target.jid.bare))
                changes.append(("role", target, role, reason))
            elif "affiliation" in item.attrs and ("jid" in item.attrs or "nick" in item.attrs):
                aff = item.attrs["affiliation"]
                if aff not in AFFILIATIONS:
                    raise StanzaError("bad-request", f"unknown affiliation {aff}")
                if "jid" in item.attrs:
                    try:
                        jid = JID.parse(item.attrs["jid"]).bare
                    except (InvalidJID, ValueError):
                        raise StanzaError("jid-malformed") from None
                else:
                    occ = self.occupants.get(item.attrs["nick"])
                    if occ is None:
                        raise StanzaError("item-not-found", "no such occupant")
                    jid = occ.jid.bare
                if aff == "outcast" and jid == frm.bare:
                    # §9.1, §9.2: admins and owners cannot ban themselves.
                    raise StanzaError("not-allowed", "you cannot ban yourself")
                self._check_affiliation_change(actor_aff, jid, aff)
                changes.append(("affiliation", jid, aff, reason))
                pending[jid] = aff
                if "jid" in item.attrs and "nick" in item.attrs \
                        and aff in ("member", "admin", "owner"):
                    # §9.3, §9.5: the nick given with a membership is reserved for it
                    # (§7.10); an empty one frees the reservation.
                    nick = self._reservable(item.attrs["nick"], jid)
                    if nick and nick_reserved.setdefault(nick_key(nick), jid) != jid:
                        raise StanzaError("conflict", f"the nick {nick} is given twice")
                    changes.append(("nick", jid, nick, ""))
            else:
                raise StanzaError("bad-request", "an item needs nick and role, or jid and "
                                                 "affiliation")
        self._check_owners_left(changes)
        actor_nick = actor.nick if actor is not None else None
        for kind, who, value, reason in changes:
            if kind == "role":
                present = self.occupants.get(who.nick)
                if present is None or present is not who:
                    continue  # an earlier item of this request took it out (kick, ban)
                self._set_role(present, value, reason, actor_nick)
            elif kind == "nick":
                self._reserve_nick(who, value or None)
            else:
                self._set_affiliation(who, value, reason, actor=actor_nick)
        self._result(stanza)

    def _reservable(self, wanted: str, jid: JID) -> str:
        """``wanted`` as a nick ``jid`` may reserve (§7.10 rules), "" for none."""
        if not wanted:
            return ""
        try:
            nick = JID(self.jid.local, self.jid.domain, wanted).resource or ""
        except (InvalidJID, ValueError):
            raise StanzaError("jid-malformed", f"not a valid nick: {wanted!r}") from None
        if nick_key(nick) is None:
            raise StanzaError("jid-malformed", f"not a valid nick: {wanted!r}")
        if self.nick_reserved_for_other(nick, jid) or self.nick_taken_by_other(nick, jid):
            raise StanzaError("conflict", f"the nick {nick} is someone else's")
        return nick

    def _reserve_nick(self, jid: JID, nick: str | None) -> None:
        """``jid``'s reserved nick (§7.10) is ``nick`` now (None: it has none)."""
        if nick is None:
            if self.nicks.pop(jid, None) is None:
                return
        else:
            self.nicks[jid] = nick
        self._persist_nick(jid, nick)

    def _admin_list(self, item: Element, actor_aff: str, actor_role: str) -> Element:
        out = Element("query", MUC_ADMIN)
        if "affiliation" in item.attrs:
            aff = item.attrs["affiliation"]
            if aff not in AFFILIATIONS or aff == "none":
                raise StanzaError("bad-request", f"cannot list affiliation {aff}")
            allowed = actor_aff in ("owner", "admin") or (
                aff == "member" and (actor_role in self.config.maygetmemberlist
                                     or actor_aff in self.config.maygetmemberlist))
            if not allowed:
                raise StanzaError("forbidden")  # §9.5
            for jid, (a, reason) in sorted(self.affiliations.items(), key=lambda e: str(e[0])):
                if a == aff:
                    i = out.add("item", attrs={"affiliation": a, "jid": str(jid)})
                    if (nick := self.nicks.get(jid)) is not None:
                        i.attrs["nick"] = nick  # §9.5: the member's reserved nick
                    if reason:
                        i.add("reason", text=reason)
            return out
        role = item.attrs.get("role")
        if role not in ("moderator", "participant", "visitor"):
            raise StanzaError("bad-request")
        if actor_role != "moderator":
            raise StanzaError("forbidden")  # §8.5 / §9.8
        for occ in sorted(self.occupants.values(), key=lambda o: o.nick):
            if occ.role == role:
                out.add("item", attrs={"nick": occ.nick, "role": occ.role,
                                       "affiliation": self.affiliation(occ.jid),
                                       "jid": str(occ.jid)})
        return out

    def _check_role_change(self, actor_role: str, actor_aff: str, target: Occupant,
                           role: str, target_aff: str | None = None) -> None:
        if actor_role != "moderator":
            raise StanzaError("forbidden", "only moderators change roles")  # §8
        if target_aff is None:
            target_aff = self.affiliation(target.jid)
        if role != "moderator" and target_aff in ("owner", "admin"):
            # §8.2 / §8.4: an admin or owner cannot be kicked or silenced; §9.7: nor lose
            # the moderator status that comes with the affiliation.
            raise StanzaError("not-allowed", "cannot change the role of an admin or owner")
        if (role == "moderator" or target.role == "moderator") \
                and actor_aff not in ("owner", "admin"):
            # §9.6 / §9.7: granting or revoking moderator is for admins and owners.
            raise StanzaError("forbidden", "only admins change moderators")

    def _check_affiliation_change(self, actor_aff: str, jid: JID, aff: str) -> None:
        current = self.affiliation(jid)
        if actor_aff not in ("owner", "admin"):
            raise StanzaError("forbidden", "only admins and owners change affiliations")
        if actor_aff == "admin":
            # §9: admins manage members and outcasts below them.
            if aff in ("owner", "admin"):
                raise StanzaError("forbidden", "only owners grant admin or owner")
            if current in ("owner", "admin"):
                raise StanzaError("not-allowed", "cannot change an admin or owner")

    def _check_owners_left(self, changes: list[tuple[str, Any, str, str]]) -> None:
        """§10.4 (§10.6): a room keeps at least one owner, also when one request changes
        several owners at once: every item alone may leave one, all of them together none
        (then nothing is applied, §9: all changes or none)."""
        owners = {j for j, (a, _) in self.affiliations.items() if a == "owner"}
        if not owners:
            return  # only service admins own it (access_admin): nothing to keep
        after = set(owners)
        for kind, target, value, _ in changes:
            if kind == "affiliation":
                if value == "owner":
                    after.add(target)
                else:
                    after.discard(target)
        if not after:
            raise StanzaError("conflict", "a room keeps at least one owner")

    def _set_role(self, occ: Occupant, role: str, reason: str, actor: str | None) -> None:
        if role == "none":
            # §8.2 kick: 307 to everyone, the kicked occupant's copy with 110 too.
            self._remove(occ, codes=["307"], reason=reason, actor=actor, role="none")
            return
        occ.role = role
        self._broadcast_presence(occ, reason=reason, actor=actor)

    def _set_affiliation(self, jid: JID, aff: str, reason: str, actor: str | None) -> None:
        if aff == "none":
            self.affiliations.pop(jid, None)
        else:
            self.affiliations[jid] = (aff, reason)
        if aff == "outcast":
            # §9.2: a banned user's reserved nick is free again.
            self._reserve_nick(jid, None)
        if self.config.persistent:
            self.module.write(self, self.module.store.set_affiliation(
                self.jid.domain, self.jid.local or "", str(jid), aff, reason))
        for occ in [o for o in self.occupants.values() if o.jid.bare == jid]:
            if aff == "outcast":
                self._remove(occ, codes=["301"], reason=reason, actor=actor, role="none")
            elif aff == "none" and self.config.members_only:
                # §9.4: out of a members-only room with the membership (321).
                self._remove(occ, codes=["321"], reason=reason, actor=actor, role="none")
            else:
                occ.role = self._default_role(aff)
                self._broadcast_presence(occ, reason=reason, actor=actor)

    # -- muc#owner (§10) --------------------------------------------------------------------
    def _owner(self, frm: JID, itype: str | None, query: Element, stanza: Element) -> None:
        if self.affiliation(frm) != "owner":
            raise StanzaError("forbidden", "only owners configure the room")  # §10.2
        destroy = query.find("destroy", MUC_OWNER)
        if itype == "set" and destroy is not None:
            self._result(stanza)
            self.destroy(destroy.attrs.get("jid"), destroy.find_text("reason", MUC_OWNER))
            return
        if itype == "get":
            out = Element("query", MUC_OWNER)
            out.append(config_form(self.config, self.module.opts["max_users"]))
            self._result(stanza, out)
            return
        form = query.find("x", ns.DATA_FORMS)
        if form is None:
            raise StanzaError("bad-request", "a data form is required")
        ftype = form.attrs.get("type")
        if ftype == "cancel":
            self._result(stanza)
            if self.locked:
                # §10.1.3: cancelling the first configuration destroys the new room.
                self.destroy(None, None)
            return
        if ftype != "submit":
            raise StanzaError("bad-request", "expected a submitted form")
        opts = self.module.opts
        new = apply_form(self.config, form, opts["max_users"], opts["max_room_name"],
                         opts["max_room_desc"],
                         password_checked_elsewhere=self.module.http_auth is not None)
        if new.persistent and not self.config.persistent \
                and not self.module.allows(opts["access_persistent"], frm, self.jid.domain):
            raise StanzaError("forbidden", "you may not make rooms persistent "
                                           "(access_persistent)")
        room_log = self.module.room_log
        if new.logging != self.config.logging and room_log is not None \
                and not room_log.may_change(frm, self.module.services.get(self.jid.domain)):
            # mod_muc_log's access_log decides who turns a room's logging on or off.
            raise StanzaError("forbidden", "you may not change the room's logging (access_log)")
        self._reconfigure(new)
        self._result(stanza)

    def _reconfigure(self, new: RoomConfig) -> None:
        old, self.config = self.config, new
        was_locked, self.locked = self.locked, False
        if new.persistent:
            self.module.store_room(self)
        elif old.persistent:
            self.module.write(self, self.module.store.delete_room(self.jid.domain,
                                                                  self.jid.local or ""))
        self.module.persistence_changed(self, old.persistent, new.persistent)
        if was_locked:
            return
        # §10.2.1: occupants hear of the change (104), and of anonymity changes (172/173).
        codes = ["104"]
        if old.anonymous and not new.anonymous:
            codes.append("172")
        elif new.anonymous and not old.anonymous:
            codes.append("173")
        if new.logging != old.logging:
            codes.append("170" if new.logging else "171")
        notice = Element("message", ns.CLIENT, {"type": "groupchat"})
        x = notice.add("x", MUC_USER)
        for code in codes:
            x.add("status", attrs={"code": code})
        for jid in list(self.by_jid):
            self._send(self.jid, jid, notice.copy())
        if new.members_only and not old.members_only:
            # §9.? : non-members leave when the room becomes members-only (322).
            for occ in list(self.occupants.values()):
                if _AFF_RANK[self.affiliation(occ.jid)] < _AFF_RANK["member"]:
                    self._remove(occ, codes=["322"], role="none")

    def destroy(self, alternate: str | None, reason: str | None) -> None:
        """§10.9: every occupant leaves with the <destroy/> (and its alternate venue)."""
        for occ in list(self.occupants.values()):
            for jid in list(occ.sessions):
                pres = Element("presence", ns.CLIENT, {"type": "unavailable"})
                x = pres.add("x", MUC_USER)
                x.add("item", attrs={"affiliation": "none", "role": "none"})
                d = x.add("destroy")
                if alternate:
                    d.attrs["jid"] = alternate
                if reason:
                    d.add("reason", text=reason)
                self._send(self._occupant_jid(occ.nick), jid, pres)
                self._detach(jid)
        self.occupants.clear()
        self.module.room_destroyed(self)

    def session_closed(self, jid: JID) -> None:
        """The occupant's session ended without leaving (no mod_presence to say goodbye
        for it): it leaves as with an unavailable presence (§7.14); the occupant's other
        sessions stay."""
        occ = self.by_jid.get(jid)
        if occ is not None:
            self._session_gone(occ, jid, presence=Element("presence", ns.CLIENT))

    # -- shutdown (status 332) -----------------------------------------------------------------
    def shutdown(self) -> None:
        """The service stops: occupants leave with status 332 (§15.6: system shutdown)."""
        if self.limiter is not None:
            self.limiter.close()
        for occ in list(self.occupants.values()):
            for jid in list(occ.sessions):
                self._send(self._occupant_jid(occ.nick), jid, self._presence_of(
                    occ, with_jid=True, real=jid, codes=["110", "332"], ptype="unavailable",
                    role="none"))
        self.occupants.clear()
        self.by_jid.clear()
        self._sessions_of.clear()

    # -- deep hibernation (hibernated_room_timeout) ------------------------------------------
    def owner_alone(self) -> bool:
        """The only occupant is an owner of the room (with any number of its sessions)."""
        if len(self.occupants) != 1:
            return False
        occ = next(iter(self.occupants.values()))
        return self.affiliation(occ.jid) == "owner"

    def stop_for_hibernation(self) -> None:
        """MongooseIM's deep hibernation of a room whose only occupant is its owner: the
        owner's sessions leave with an unavailable presence (110, 332 and the reason "Room
        hibernation"), and the room can leave memory; joining again reads it back."""
        for occ in list(self.occupants.values()):
            for jid in list(occ.sessions):
                self._send(self._occupant_jid(occ.nick), jid, self._presence_of(
                    occ, with_jid=True, real=jid, codes=["110", "332"], ptype="unavailable",
                    role="none", reason="Room hibernation"))
                self._detach(jid)
        self.occupants.clear()

    def taken_over(self) -> None:
        """Another node owns the room now (this node was taken for dead while paused or cut
        from Redis): every occupant leaves this copy with 110 + 333 (§15.6: removed because
        of a technical problem) and joins again, which reaches the room on that node."""
        for occ in list(self.occupants.values()):
            for jid in list(occ.sessions):  # every session of the occupant joins again
                self._send(self._occupant_jid(occ.nick), jid, self._presence_of(
                    occ, with_jid=True, real=jid, codes=["110", "333"], ptype="unavailable",
                    role="none"))
                self._detach(jid)
        self.occupants.clear()

    # -- creation -------------------------------------------------------------------------------
    def created(self, frm: JID, nick: str, stanza: Element) -> None:
        """The first presence made the room: its sender joins as owner (§10.1.1)."""
        self._join(frm, nick, stanza, created=True)

    def open_unconfigured(self) -> None:
        """The lock of a new room ran out (room_lock_timeout) with no configuration from its
        owner: the room is the instant room §10.1.2 would have made of it, stored now if
        its default configuration is persistent, as a submitted form would have."""
        self.locked = False
        log.info("muc_room_lock_expired room=%s", self.jid)
        if self.config.persistent:
            self.module.store_room(self)

    def snapshot(self) -> dict[str, Any]:
        return self.config.to_dict()


def _form_type(form: Element) -> str | None:
    return _form_values(form).get("FORM_TYPE")


def _form_values(form: Element) -> dict[str, str]:
    """The first value of each field of a data form (XEP-0004)."""
    out: dict[str, str] = {}
    for f in form.find_all("field", ns.DATA_FORMS):
        value = f.find("value", ns.DATA_FORMS)
        out[f.attrs.get("var", "")] = value.text if value is not None else ""
    return out


def make_error(stanza: Element, condition: str) -> Element:
    return error_reply(stanza, StanzaError(condition))


__all__ = ["Room", "Occupant", "MUC", "MUC_USER", "MUC_ADMIN", "MUC_OWNER", "ROOMCONFIG"]

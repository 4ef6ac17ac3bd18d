"""mod_mam: XEP-0313 Message Archive Management for one-to-one chats.

Every archivable message is kept once in each local account it concerns: the sender's archive
(``user_send_packet``) and the recipient's (``filter_local_packet`` for a recipient with
sessions, ``offline_message`` for one without, before mod_offline stores it). Each copy gets a
64-bit id (``microseconds << 8 | node``, DESIGN §7) that is also its XEP-0359
``<stanza-id by='account'/>``: on the live copy the recipient gets, on the offline copy, and on
the carbons (XEP-0280) of the sender's other resources.

Rows leave the message path at once: they are written in batches by the async writer
(``writer.py``); a query flushes its archive's pending rows first. Queries (``query.py``) use the
XEP-0313 form (urn:xmpp:mam:2 and #extended) with XEP-0059 paging; preferences are XEP-0441;
XEP-0424 retractions (by origin-id, or by stanza-id in MongooseIM's
urn:esl:message-retract-by-stanza-id:0 form) turn the archived message into a tombstone.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from suricate.config.modules_spec import backend
from suricate.config.spec import (
    DEFAULTS,
    INVALID,
    OMIT,
    Bool,
    Context,
    Int,
    IntOrInfinity,
    Option,
    Section,
    Spec,
)
from suricate.core import hooks as H
from suricate.core.iq import IqRequest
from suricate.core.module import GraphQLCategory, Module, PersonalData
from suricate.core.offline_batch import read_once
from suricate.instrument.events import HISTOGRAM, SPIRAL, declare
from suricate.jid import JID, InvalidJID
from suricate.modules.mod_blocking import drops_on_delivery
from suricate.modules.mod_mam.muc import MucArchive
from suricate.modules.mod_mam.query import (
    MAM,
    MAM_EXTENDED,
    RSM,
    Query,
    fields_form,
    id_from_text,
    id_to_text,
    normalize_body,
    parse_query,
    stamp_of,
)
from suricate.modules.mod_mam.store import MamStore, Prefs, Row
from suricate.modules.mod_mam.writer import BATCH_FLOOR, AsyncWriter, Retraction
from suricate.modules.mod_roster import loaded_roster, roster_module
from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element, Node, WrittenElement, escape_attr
from suricate.xml.parser import XMLStreamError, parse_fragment

if TYPE_CHECKING:
    from suricate.core.c2s import C2S

log = logging.getLogger("suricate.mod_mam")

SID = "urn:xmpp:sid:0"  # XEP-0359
RETRACT = "urn:xmpp:message-retract:1"  # XEP-0424 (v0.4)
#: XEP-0424 §"Tombstones": an archive that keeps a tombstone in place of a retracted message
#: says so (Monal, for one, ignores the tombstones of an archive that does not).
RETRACT_TOMBSTONE = RETRACT + "#tombstone"
RETRACT_0 = "urn:xmpp:message-retract:0"  # XEP-0424 before v0.4, inside XEP-0422 apply-to
FASTEN = "urn:xmpp:fasten:0"  # XEP-0422
#: MongooseIM's extension of XEP-0424: <apply-to id='STANZA-ID' xmlns='urn:xmpp:fasten:0'>
#: <retract xmlns='urn:esl:message-retract-by-stanza-id:0'/></apply-to> names the message by
#: the stanza-id its archive gave it (XEP-0359), not by its origin-id; the tombstone's
#: <retracted/> is in this namespace too (docs/mam.md).
RETRACT_ESL = "urn:esl:message-retract-by-stanza-id:0"
MARKERS = "urn:xmpp:chat-markers:0"  # XEP-0333
HINTS = "urn:xmpp:hints"  # XEP-0334
MUC_USER = "http://jabber.org/protocol/muc#user"

UNAVAILABLE = "not available in this version of Suricate"

# -- instrumentation (MongooseIM 6.4 names) -----------------------------------------------------
ARCHIVE_MESSAGE = declare(
    "mod_mam_pm_archive_message", ("host_type",), {"count": SPIRAL},
    "Messages put in a one-to-one archive (XEP-0313)")
FLUSHED = declare(
    "mod_mam_pm_flushed", ("host_type",), {"count": SPIRAL},
    "Archived messages written to the database by the async writer")
LOOKUP = declare(
    "mod_mam_pm_lookup", ("host_type",),
    # As in 6.4: `size` (messages returned) and `time` (µs) are histograms.
    {"count": SPIRAL, "size": HISTOGRAM, "time": HISTOGRAM},
    "Archive queries: how many, messages returned, microseconds spent")
GET_PREFS = declare(
    "mod_mam_pm_get_prefs", ("host_type",), {"count": SPIRAL}, "XEP-0441 prefs read")
SET_PREFS = declare(
    "mod_mam_pm_set_prefs", ("host_type",), {"count": SPIRAL}, "XEP-0441 prefs changed")
REMOVE_ARCHIVE = declare(
    "mod_mam_pm_remove_archive", ("host_type",), {"count": SPIRAL},
    "Archives removed with their account")
DROPPED_IQ = declare(
    "mod_mam_pm_dropped_iq", ("host_type",), {"count": SPIRAL},
    "Archive requests (query, prefs, metadata) answered with an error: malformed, not the "
    "account's own archive, unknown ids, a failed lookup")


# -- options ----------------------------------------------------------------------------------
class _Only(Spec):
    """An option whose MongooseIM values beyond ``value`` are not implemented: those are refused
    by name rather than accepted without effect."""

    def __init__(self, value: Any, base: Spec) -> None:
        self.value, self.base = value, base

    def normalize(self, value: Any, path: str, ctx: Context) -> Any:
        result = self.base.normalize(value, path, ctx)
        if result is INVALID:
            return result
        if result != self.value:
            ctx.error(path, f"{result!r} is {UNAVAILABLE} (only {self.value!r})")
            return INVALID
        return result

    def describe(self) -> str:
        return f"{self.value!r} (other values are {UNAVAILABLE})"


class _Str(Spec):
    def normalize(self, value: Any, path: str, ctx: Context) -> Any:
        if not isinstance(value, str) or not value:
            ctx.error(path, "expected a non-empty string")
            return INVALID
        return value

    def describe(self) -> str:
        return "a string"


def _common(default: Any) -> dict[str, Option]:
    """Options of the top level that ``pm`` may override; ``default`` is DEFAULTS-style values
    at the top and OMIT (inherit) inside ``pm``."""

    def d(value: Any) -> Any:
        return value if default is None else default

    writer = Section({
        "enabled": Option(Bool(), True, "Write archived messages in batches, off the "
                                        "message path; false writes each at once."),
        "flush_interval": Option(Int(min=1, unit="milliseconds"), 2000,
                                 "Longest time a row waits in memory before its batch is "
                                 "written (and what a crash can lose)."),
        "batch_size": Option(Int(min=1), 30, "Rows per writer: a full batch is written at "
                                             "once."),
        "pool_size": Option(Int(min=1), 4 * (os.cpu_count() or 1),
                            "MongooseIM's number of writers: the lane of this process (one "
                            "event loop) flushes at batch_size x pool_size rows (one-to-one "
                            "archives: at least 2048, see docs/mam.md).",
                            default_doc="4 x CPU cores"),
    }, doc="MongooseIM's async_writer.")
    return {
        "backend": Option(backend().type, d("rdbms"), backend().doc),
        "no_stanzaid_element": Option(Bool(), d(False), "Do not add XEP-0359 <stanza-id/> "
                                                        "to live messages."),
        "is_archivable_message": Option(
            _Only("mod_mam_utils", _Str()), d("mod_mam_utils"),
            "The module deciding what is archived; only the built-in rules (XEP-0313 §5)."),
        "archive_chat_markers": Option(Bool(), d(False), "Archive XEP-0333 chat markers "
                                                         "(which have no body)."),
        "message_retraction": Option(Bool(), d(True), "Apply XEP-0424 retractions to the "
                                                      "archive (tombstones)."),
        "full_text_search": Option(Bool(), d(True), "Offer the full-text-search field "
                                                    "(every word, any order)."),
        "cache_users": Option(Bool(), d(True), "Keep the XEP-0441 preferences of connected "
                                               "accounts in memory."),
        "default_result_limit": Option(Int(min=0), d(50), "Page size when a query gives no "
                                                          "RSM max."),
        "max_result_limit": Option(Int(min=1), d(50), "Largest page; a larger max is "
                                                      "capped to it."),
        "enforce_simple_queries": Option(Bool(), d(False), "Never count (no RSM count or "
                                                           "index): cheaper queries."),
        "delete_domain_limit": Option(IntOrInfinity(min=1), d(None),
                                      "Archive rows erased per transaction when a domain is "
                                      "removed (\"infinity\": all in the domain's one "
                                      "transaction).", default_doc='"infinity"'),
        "async_writer": Option(writer, DEFAULTS if default is None else OMIT,
                               "Batched archive writes (MongooseIM's async_writer)."),
        "user_prefs_store": Option(_Only("rdbms", _Str()), d("rdbms"),
                                   "Where XEP-0441 preferences live: the RDBMS."),
    }


# 6.4 options that name Erlang callback modules, or pick how MongooseIM encodes its own
# archive tables: each refusal says why, and what to do instead.
_ERLANG_CALLBACK = (f"is {UNAVAILABLE}: it names an Erlang module (a MongooseIM callback), "
                    "which Suricate cannot load; remove it")
_DB_FORMAT = (f"is {UNAVAILABLE}: it picks how MongooseIM encodes its archive tables; "
              "Suricate's archive has one format of its own (docs/storage.md), into which "
              "`suricate import-mongooseim` converts a MongooseIM archive "
              "(docs/moving-in.md); remove it")
_UNAVAILABLE_KEYS = {
    "send_message": f"'send_message' {_ERLANG_CALLBACK}",
    "extra_fin_element": f"'extra_fin_element' {_ERLANG_CALLBACK}",
    "extra_lookup_params": f"'extra_lookup_params' {_ERLANG_CALLBACK}",
    "db_jid_format": f"'db_jid_format' {_DB_FORMAT}",
    "db_message_format": f"'db_message_format' {_DB_FORMAT}",
    "simple": f"'simple' {_DB_FORMAT}",
    "cache": f"'cache' is {UNAVAILABLE}: it tunes MongooseIM's cache of archive ids; "
    "Suricate keys archives by account and needs none (cache_users keeps preferences in "
    "memory); remove it",
}

_PM = Section(
    {
        **_common(OMIT),
        "archive_groupchats": Option(_Only(False, Bool()), False,
                                     "Archive groupchat messages sent to the account."),
        "same_mam_id_for_peers": Option(_Only(False, Bool()), False,
                                        "One id for the sender's and recipient's copies."),
    },
    doc="One-to-one archives; setting this section (even empty) enables them.",
    unavailable=_UNAVAILABLE_KEYS,
)


def _muc_options() -> dict[str, Option]:
    options = _common(OMIT)
    # Rooms have no XEP-0441 preferences here: nothing to cache or store. Their archives
    # are keyed by room, not by account: a domain's removal does not erase them.
    del options["cache_users"], options["user_prefs_store"], options["delete_domain_limit"]
    # mod_muc stamps every groupchat message with the room's stanza-id (the archive id).
    options["no_stanzaid_element"] = Option(
        _Only(False, Bool()), OMIT,
        "Rooms always stamp XEP-0359 <stanza-id/> (mod_muc, mod_muc_light).")
    options["host"] = Option(_Str(), "conference.@HOST@",
                             "The MUC service whose rooms are archived (@HOST@ is each "
                             "served domain): the host of [modules.mod_muc]. MUC Light "
                             "rooms ([modules.mod_muc_light]) are archived too.")
    return options


_MUC = Section(
    _muc_options(),
    doc="Room archives (XEP-0313 on room JIDs, with mod_muc); setting this section (even "
        "empty) enables them.",
    unavailable={**_UNAVAILABLE_KEYS, **{
        key: f"'{key}' does not apply to rooms (they have no archive preferences)"
        for key in ("cache_users", "user_prefs_store")},
        "delete_domain_limit": "'delete_domain_limit' does not apply to rooms (room archives "
                               "are keyed by room, not erased with a domain)"},
)


def _post(out: dict[str, Any], raw: Mapping[str, Any], path: str, ctx: Context) -> None:
    if "pm" not in out and "muc" not in out:
        ctx.warn(path, "no [modules.mod_mam.pm] section: nothing is archived (as in "
                       "MongooseIM, the pm section enables one-to-one archives)")


OPTIONS = Section(
    {**_common(None), "pm": Option(_PM, OMIT, _PM.doc),
     "muc": Option(_MUC, OMIT, _MUC.doc)},
    doc="XEP-0313 Message Archive Management (one-to-one and room archives, XEP-0359 stanza "
        "ids, XEP-0441 preferences, XEP-0424 retraction, XEP-0425 moderation).",
    post=_post,
    unavailable=_UNAVAILABLE_KEYS,
)


#: The cast (docs/cluster.md "Casts") telling an account's other nodes its prefs changed.
PREFS_CAST = "mod_mam.prefs"


class IdGenerator:
    """Ids that grow with time on this node: ``microseconds << 8 | node`` (DESIGN §7)."""

    __slots__ = ("node", "last")

    def __init__(self, node: int = 0) -> None:
        self.node = node & 0xFF
        self.last = 0

    def next(self) -> int:
        candidate = (time.time_ns() // 1000) << 8 | self.node
        if candidate <= self.last:
            # Same microsecond (or the clock went back): the next microsecond, our node.
            candidate = ((self.last >> 8) + 1) << 8 | self.node
        self.last = candidate
        return candidate

    def after(self) -> int:
        """The id after the last one, without reading the clock: for the recipient's copy of
        a message whose sender's copy got its id a moment ago (a local sender), one
        microsecond later as far as the ids say. Still unique and growing: ``next`` never
        goes below it."""
        candidate = self.last = ((self.last >> 8) + 1) << 8 | self.node
        return candidate


#: The prefs of an account that stored none (archive everything), one shared instance, never
#: changed: an account's cached prefs that are these are recognized by identity.
ARCHIVE_ALL = Prefs("always", [], [])

_NEVER_ARCHIVED = frozenset({ns.CARBONS, MAM, MUC_USER})
#: End-to-end encryption payloads (OMEMO, XEP-0384, legacy and omemo:2): the message is kept
#: like one with a body. An omemo:2 message has no <body> (the text is inside the XEP-0420
#: envelope); XEP-0420 asks senders for a <store/> hint, but a message from a client that
#: forgets it is still a chat message, which offline storage keeps and push announces.
_ENCRYPTED = frozenset({"eu.siacs.conversations.axolotl", "urn:xmpp:omemo:2"})
#: Message types whose messages a one-to-one archive does not keep (XEP-0313 §5.1.1).
_UNARCHIVED_TYPES = frozenset({"error", "headline", "groupchat"})

#: How long a room's private message is remembered per account (``_incoming_pm``): the copies a
#: room sends to each of the account's joined sessions arrive within this many seconds.
PM_WINDOW = 30.0
#: The most private messages remembered across accounts (the oldest go first).
PM_REMEMBERED = 10_000

#: Modules that read the sender's stanza-id before ``drop_own_id`` takes it off (``wire``).
_SENDER_ID_READERS = ("mod_carboncopy", "mod_inbox")


class _Scan:
    """What the archive keeps of a message, found in one pass (``ModMam.scan``)."""

    __slots__ = ("search_body", "origin_id", "retract", "sid", "by_stanza_id")

    def __init__(self, search_body: str | None, origin_id: str | None, retract: str | None,
                 sid: bool, by_stanza_id: bool = False) -> None:
        self.search_body, self.origin_id, self.retract, self.sid = \
            search_body, origin_id, retract, sid
        #: ``retract`` is a stanza-id of the archive (RETRACT_ESL), not an origin-id.
        self.by_stanza_id = by_stanza_id

    #: A room's private message (``_PmScan``); a class attribute, nothing per message.
    muc_pm = False


class _PmScan(_Scan):
    """The scan of a private message through a room (XEP-0045 §7.5: ``type='chat'`` with
    ``<x xmlns='http://jabber.org/protocol/muc#user'/>``). Its ``sid`` is always true: the
    message path's stanza-id branches (rare: only messages that carry stanza-ids take them)
    are where such a message leaves the ordinary path, so ordinary messages pay nothing."""

    __slots__ = ()
    muc_pm = True


class ModMam(Module):
    name = "mod_mam"
    options = OPTIONS
    store_class = MamStore
    store: MamStore
    graphql = GraphQLCategory("suricate.modules.mod_mam.graphql")
    xeps = ("0313", "0359", "0059", "0441", "0424", "0425")
    hooks = ((H.REMOVE_USER, "remove_archive", 50),
             (H.REMOVE_DOMAIN, "remove_domain", 50))
    iq_handlers = (("sm", MAM, "iq_mam"),)

    # Archiving hooks, wired only when the pm section enables one-to-one archives. Outgoing
    # runs after mod_blocking (40) refused what the user blocked, and before mod_carboncopy
    # (80) copies the message to the other resources: the copy then carries the sender's
    # stanza-id, which ``drop_own_id`` (after 80) takes off the stanza going to the peer.
    _ARCHIVING = (
        (H.USER_SEND_PACKET, "outgoing", 75),
        (H.USER_SEND_PACKET, "drop_own_id", 85),
        (H.FILTER_LOCAL_PACKET, "incoming", 50),
        (H.OFFLINE_MESSAGE, "incoming_offline", 40),  # before mod_offline (50) stores it
        (H.SESSION_OPENED, "load_prefs", 60),
        (H.SESSION_CLOSED, "forget_prefs", 60),
    )

    def __init__(self, server: Any, opts: Mapping[str, Any]) -> None:
        super().__init__(server, opts)
        pm = opts.get("pm")
        self.pm_enabled = pm is not None
        eff: dict[str, Any] = {**opts, **(pm or {})}
        self.eff = eff
        self.stanza_ids = not eff["no_stanzaid_element"]
        #: Whether the sender's copy gets its stanza-id for carbons and inbox (``wire``).
        self.sender_ids = self.stanza_ids
        self.chat_markers: bool = eff["archive_chat_markers"]
        self.retraction: bool = eff["message_retraction"]
        self.full_text: bool = eff["full_text_search"]
        self.cache_users: bool = eff["cache_users"]
        self.default_limit: int = eff["default_result_limit"]
        self.max_limit: int = eff["max_result_limit"]
        self.simple: bool = eff["enforce_simple_queries"]
        self.ids = IdGenerator(0)
        self.writer: AsyncWriter | None = None
        self._instrument = server.instrument
        #: XEP-0441 prefs of accounts with sessions (cache_users); a miss is resolved when
        #: the row is written.
        #: Keyed by the bare JID's text: looked up twice per message, and a str key is hashed
        #: and compared in C where a JID's __hash__ and __eq__ are Python calls.
        self._prefs: dict[str, Prefs] = {}
        #: Ids whose prefs were unknown on the message path: checked before writing.
        self._unchecked: set[int] = set()
        #: Stanza ids we gave to messages from remote senders: a message coming back through
        #: the router (a session that went away) keeps its id and is not archived twice,
        #: while an id a remote server forged (XEP-0359 §3) is replaced.
        self._issued: OrderedDict[tuple[JID, str], None] = OrderedDict()
        #: Rooms' private messages archived a moment ago, per account (``_incoming_pm``):
        #: (account, occupant JID, origin-id or id, body) -> (when, archive id, resources).
        self._pm_seen: OrderedDict[tuple[str, str, str, str], tuple[float, int, set[str]]] = \
            OrderedDict()
        self._own_id: tuple[Element, Element] | None = None
        #: The start of the recipient's <stanza-id/> XML per account (``_archive_incoming``).
        self._sid_heads: dict[str, str] = {}
        #: The sender's archive's last stanza: its XML, its scan, its attributes and
        #: children as they were then (``_sent_now``), and its archive id.
        self._last_out: tuple[Element, str, _Scan, dict[str, str], list[Node], int] | None = \
            None
        muc = opts.get("muc")
        #: Room archives (the muc section), found by mod_muc as ``muc_archive``.
        self.muc_archive: MucArchive | None = None if muc is None else \
            MucArchive(self, {**opts, **muc})

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        # With several worker processes (suricate serve --workers), each worker is a node of
        # the id space, so two workers never give the same id in the same microsecond.
        node = getattr(self.server.sessions, "observer", None)
        self.ids = IdGenerator(int(getattr(node, "index", 0) or 0))
        # Ids are the table's key: never below one already given (a clock set back).
        self.ids.last = await self.store.max_id()
        self.store.limit_domain_deletes(self.eff["delete_domain_limit"])
        aw = self.eff["async_writer"]
        enabled = aw["enabled"]
        self.writer = AsyncWriter(
            self.store,
            batch_size=max(BATCH_FLOOR, aw["batch_size"] * aw["pool_size"]) if enabled else 1,
            flush_interval_ms=aw["flush_interval"], spawn=self.server.spawn,
            retract=self._apply_retraction, admit=self._admit, on_flushed=self._flushed)
        # async_pool_flush and mod_mam_pm_dropped (6.4's events).
        self.writer.instrument = self.server.instrument
        if self.muc_archive is not None:
            await self.muc_archive.start()
        self.server.cluster.on(PREFS_CAST, self._prefs_changed_elsewhere)

    def _prefs_changed_elsewhere(self, bare: JID, stanza: Element, args: tuple[str, ...]) -> None:
        """The account changed its prefs on another node: forget ours (read again from
        storage at the next message)."""
        self._prefs.pop(str(bare), None)

    async def stop(self) -> None:
        self.server.cluster.off(PREFS_CAST)
        if self.writer is not None:
            await self.writer.stop()
        if self.muc_archive is not None:
            await self.muc_archive.stop()
        await self.store.close_writer()

    def wire(self) -> None:
        super().wire()
        # The sender's stanza-id is read only by modules between ``outgoing`` (75) and
        # ``drop_own_id`` (85): mod_carboncopy (XEP-0280 copies carry it, XEP-0313 §5.1.2)
        # and mod_inbox (the sender's entry). Without them it would be made only to be taken
        # off before routing: neither it nor the hook that removes it then run. Every module
        # is made before any is wired (Server._start_modules), so the set is known here.
        modules = self.server.modules
        self.sender_ids = self.stanza_ids and any(name in modules
                                                  for name in _SENDER_ID_READERS)
        if self.pm_enabled:
            for hook, method, priority in self._ARCHIVING:
                if method == "drop_own_id" and not self.sender_ids:
                    continue
                self.server.hooks.add(hook, getattr(self, method), priority)
            self.server.hooks.add(H.DISCO_SM_FEATURES, self._mam_features, 50)
            # On the server's own disco#info too, as MongooseIM's mod_mam_pm
            # (disco_local_features) and ejabberd do: clients that look only there, such as
            # profanity 0.13 (its /mam and OMEMO checks read the domain's and its items'
            # features, never the account's), otherwise never ask the archive.
            self.server.hooks.add(H.DISCO_LOCAL_FEATURES,
                                  self._handler(H.DISCO_LOCAL_FEATURES, "_mam_features"), 50)

    def unwire(self) -> None:
        super().unwire()
        for hook, method, _ in self._ARCHIVING:
            self.server.hooks.remove(hook, getattr(self, method))
        self.server.hooks.remove(H.DISCO_SM_FEATURES, self._mam_features)
        self.server.hooks.remove(H.DISCO_LOCAL_FEATURES,
                                 self._handler(H.DISCO_LOCAL_FEATURES, "_mam_features"))

    def _mam_features(self, acc: set[str], jid: Any) -> set[str]:
        # XEP-0313 §6.1 (on the account's bare JID; ``jid`` is the domain when the server's
        # own features are asked), XEP-0359 §6, XEP-0424 §2.
        extra = {MAM, MAM_EXTENDED, SID}
        if self.retraction:
            # MongooseIM advertises its retraction by stanza-id next to XEP-0424's.
            extra.add(RETRACT)
            extra.add(RETRACT_TOMBSTONE)
            extra.add(RETRACT_ESL)
        return acc | extra

    # -- what is archived (XEP-0313 §5 "Business rules", XEP-0334) -------------------------------
    def scan(self, stanza: Element) -> _Scan | None:
        """One pass over a message's children: None when it is not archived, else what the
        archive needs of it (the message path pays for this scan only)."""
        stype = stanza.attrs.get("type", "normal")
        if stype != "chat" and stype != "normal" and stype in _UNARCHIVED_TYPES:
            # error, headline; groupchat only with archive_groupchats. A type the server does
            # not know is "normal" (RFC 6121 §5.2.2): archived like one.
            return None
        body: Element | None = None
        origin: str | None = None
        retract: str | None = None
        store = marker = sid = by_sid = False
        for child in stanza.children:
            if not isinstance(child, Element):
                continue
            name, xmlns = child.name, child.xmlns
            if name == "body":
                if body is None:
                    body = child
            elif xmlns == SID:
                if name == "origin-id":
                    origin = child.attrs.get("id")
                else:
                    sid = True
            elif xmlns == HINTS:
                if name == "no-store" or name == "no-permanent-store":
                    return None  # XEP-0334 §4.2/§4.3
                if name == "store":
                    store = True
            elif xmlns in _NEVER_ARCHIVED:
                if xmlns == MUC_USER and name == "x" and stype == "chat":
                    return self._pm_scan(stanza, child)
                if name != "private" or xmlns != ns.CARBONS:
                    return None  # copies and archive results are never archived again
                # XEP-0280 §6 <private/> only keeps the message from being copied to other
                # resources: archived (biboumi marks every message it sends so, IRC private
                # messages included).
            elif xmlns in _ENCRYPTED:
                store = True  # an end-to-end encrypted message, with or without a body
            elif xmlns == MARKERS:
                marker = True
            elif xmlns == RETRACT and name == "retract":
                retract = child.attrs.get("id") or None
            elif name == "apply-to" and xmlns == FASTEN:
                if child.find("retract", RETRACT_0) is not None:
                    retract = child.attrs.get("id") or None
                elif child.find("retract", RETRACT_ESL) is not None:
                    retract = child.attrs.get("id") or None
                    by_sid = retract is not None
        if body is None and not store and retract is None and not (marker and self.chat_markers):
            return None
        text: str | None = None
        if body is not None and self.full_text:
            # A body is nearly always one text node: take it without Element.text's join.
            kids = body.children
            text = kids[0] if len(kids) == 1 and type(kids[0]) is str else body.text
        return _Scan(normalize_body(text) if text else None,
                     origin if origin is not None else stanza.attrs.get("id"),
                     retract if self.retraction else None, sid, by_sid)

    def _pm_scan(self, stanza: Element, x: Element) -> _PmScan | None:
        """A private message through a room (XEP-0045 §7.5) is archived like any chat
        message (XEP-0313 §5.1.1 leaves out groupchat messages, not these): the rest of the
        stanza decides, scanned without its muc#user ``<x/>``. Rooms send a copy to each
        joined session of the recipient: ``_incoming_pm`` keeps one."""
        rest = Element(stanza.name, stanza.xmlns, stanza.attrs,
                       [c for c in stanza.children if c is not x])
        scan = self.scan(rest)
        if scan is None:
            return None
        return _PmScan(scan.search_body, scan.origin_id, scan.retract, True, scan.by_stanza_id)

    def archivable(self, stanza: Element) -> bool:
        return self.scan(stanza) is not None

    # -- outgoing: the sender's archive ----------------------------------------------------------
    def outgoing(self, stanza: Element | None, c2s: C2S) -> Element | None:
        if stanza is None or stanza.name != "message":
            return stanza
        scan = self.scan(stanza)
        if scan is None:
            return stanza
        owner = c2s.jid.bare
        to_attr = stanza.attrs.get("to")
        try:
            peer = JID.parse(to_attr) if to_attr else owner
        except (InvalidJID, ValueError):
            return stanza  # c2s answers jid-malformed
        if scan.sid:
            # XEP-0359 §3: a stanza-id the client wrote in our name (or in its peer's, when
            # the peer is local and we are about to vouch for it) is removed.
            _strip_ids(stanza, owner, peer.bare)
        peer_bare = peer.bare
        archive = self._decide(owner, peer_bare, (c2s,))
        if archive is False:
            return stanza
        mam_id = self.ids.next()
        attrs = stanza.attrs
        attrs["to"] = str(peer)
        # The sender's row. Its XML is kept with the stanza's attributes and children as
        # they are now: the recipient's hook reuses it while they are unchanged (_sent_now).
        xml = stanza.serialize(ns.CLIENT)
        self._last_out = (stanza, xml, scan, attrs.copy(), stanza.children.copy(), mam_id)
        self._add_row(mam_id, owner, peer_bare, peer.resource, "O", c2s.jid, scan, xml,
                      archive is None)
        if scan.retract is not None:
            self._retract(owner, peer_bare, scan.retract, "O", mam_id, scan.by_stanza_id)
        if self.sender_ids:
            sid = Element("stanza-id", SID, {"by": str(owner), "id": str(mam_id)})
            stanza.children.append(sid)
            self._own_id = (stanza, sid)
        return stanza

    def drop_own_id(self, stanza: Element | None, c2s: C2S) -> Element | None:
        """The sender's stanza-id was for its carbons (made at priority 80); the peer gets
        its own (or none, when remote)."""
        own = self._own_id
        if own is not None:
            self._own_id = None
            if own[0] is stanza:
                stanza.children.remove(own[1])
        return stanza

    # -- incoming: the recipient's archive -----------------------------------------------------
    def incoming(self, stanza: Element | None, frm: JID, to: JID,
                 sessions: list[Any]) -> Element | None:
        if stanza is None:
            return stanza
        owner = to.bare
        # Parts compared inline: JID.__eq__ is a Python call, on every message.
        if frm.local == owner.local and frm.domain == owner.domain:
            # The account's own message: archived once, as sent.
            return self._own_message(stanza, owner, sessions)
        last = self._last_out
        if last is not None and last[0] is stanza and not last[2].sid \
                and stanza.attrs == last[3] and stanza.children == last[4]:
            return self._incoming_sent_now(stanza, frm, owner, last, sessions)
        sent = self._sent_now(stanza)
        # The sender's archive just scanned this very stanza (a local sender): its scan
        # holds, unless the stanza carried stanza-ids (kept for _already_archived).
        scan = last[2] if sent and last is not None and not last[2].sid else self.scan(stanza)
        if scan is None:
            return stanza
        if scan.sid:
            if scan.muc_pm:
                return self._incoming_pm(stanza, frm, to, scan, sessions)
            if self._already_archived(stanza, frm, owner):
                return stanza
        if drops_on_delivery(sessions, frm):
            return stanza
        wire = self._archive_incoming(stanza, frm, owner, scan,
                                      self._decide(owner, frm.bare, sessions), sent)
        if wire is not None and len(sessions) == 1:
            # One session gets this very stanza (more get copies): its bytes are the
            # archive's XML with the stanza-id, not a second serialization of the message.
            return WrittenElement(stanza, wire)
        return stanza

    def _own_message(self, stanza: Element, owner: JID, sessions: list[Any]) -> Element:
        """A message an account sent to itself (a note to self) is in its archive once, as
        sent (``outgoing``, a moment ago); the copy it receives carries that archive id
        (XEP-0359 §4), which clients match against what they later fetch from the archive."""
        last = self._last_out
        if last is None or last[0] is not stanza or not self.stanza_ids:
            return stanza
        self._last_out = None
        unchanged = stanza.attrs == last[3] and stanza.children == last[4]
        wire = self._stamp(stanza, owner, last[5], last[1] if unchanged else None)
        return WrittenElement(stanza, wire) if wire is not None and len(sessions) == 1 \
            else stanza

    def _incoming_sent_now(self, stanza: Element, frm: JID, owner: JID,
                           last: tuple[Element, str, _Scan, dict[str, str], list[Node], int],
                           sessions: list[Any]) -> Element:
        """``incoming`` for the common case, inline: a local sender's message the sender's
        archive took a moment ago, unchanged since (``_sent_now``). Its scan and XML hold;
        the sender is local (so its stanza-id is not one we must remember, XEP-0359 §3);
        the recipient's id is the one after the sender's (no clock read)."""
        if drops_on_delivery(sessions, frm):
            return stanza
        frm_bare = frm.bare
        archive = self._decide(owner, frm_bare, sessions)
        if archive is False:
            return stanza
        ids = self.ids
        mam_id = ids.last = ((ids.last >> 8) + 1) << 8 | ids.node  # IdGenerator.after
        scan, xml = last[2], last[1]
        self._last_out = None
        self._add_row(mam_id, owner, frm_bare, frm.resource, "I", frm, scan, xml,
                      archive is None)
        if scan.retract is not None:
            self._retract(owner, frm_bare, scan.retract, "I", mam_id, scan.by_stanza_id)
        if not self.stanza_ids:
            return stanza
        wire = self._stamp(stanza, owner, mam_id, xml)
        # One session gets this very stanza: its bytes are the archive's XML with the
        # stanza-id, not a second serialization.
        return WrittenElement(stanza, wire) if wire is not None and len(sessions) == 1 \
            else stanza

    async def incoming_offline(self, stored: bool, frm: JID, to: JID, stanza: Element) -> bool:
        owner = to.bare
        if stored or frm.bare == owner:
            return stored
        scan = self.scan(stanza)
        if scan is None:
            return stored
        if scan.sid:
            if self._already_archived(stanza, frm, owner):
                return stored
            if scan.muc_pm and self._pm_copy(stanza, frm, to, scan):
                return stored  # another session's copy was archived: this one has its id
        archive = self._decide(owner, frm.bare)
        if archive is None:
            archive = self._decide_with(await self._load_prefs(owner), owner, frm.bare)
        if archive is None:
            # 'roster': decided now, not when written, so that the stored copy carries a
            # stanza-id only if it is archived (``_decide``).
            archive = await self._in_roster(owner, frm.bare)
        self._archive_incoming(stanza, frm, owner, scan, archive)
        if scan.muc_pm and archive is not False:
            self._remember_pm(stanza, frm, to, scan, self.ids.last)  # the id just given
        return stored  # mod_offline still stores it (now with its stanza-id)

    # -- a room's private messages (XEP-0045 §7.5) -----------------------------------------------
    def _incoming_pm(self, stanza: Element, frm: JID, to: JID, scan: _Scan,
                     sessions: list[Any]) -> Element:
        """``incoming`` for a private message from a room occupant. The room sends one copy
        to each joined session of the account (XEP-0045 multi-session, a nick used from a
        phone and a laptop), as separate stanzas: the first is archived, the others (same
        sender, same id or origin-id, same body, another resource of the account, within
        ``PM_WINDOW`` seconds) get the first one's stanza-id and no row. This holds for our
        own rooms and for remote rooms and gateways (biboumi) alike: the account's side is
        the only one that sees every copy."""
        owner = to.bare
        if self._already_archived(stanza, frm, owner):
            return stanza  # a copy coming back through the router, with the id we gave it
        if drops_on_delivery(sessions, frm) or self._pm_copy(stanza, frm, to, scan):
            return stanza
        archive = self._decide(owner, frm.bare, sessions)
        if archive is False:
            return stanza
        self._archive_incoming(stanza, frm, owner, scan, archive)
        self._remember_pm(stanza, frm, to, scan, self.ids.last)
        return stanza

    @staticmethod
    def _pm_key(stanza: Element, frm: JID, to: JID, scan: _Scan) -> tuple[str, str, str, str]:
        return (str(to.bare), str(frm), scan.origin_id or "", stanza.find_text("body") or "")

    def _pm_copy(self, stanza: Element, frm: JID, to: JID, scan: _Scan) -> bool:
        """Whether this private message is another session's copy of one archived a moment
        ago (``_incoming_pm``); if so it gets that message's stanza-id. The same message
        to the same resource again is a new message (a client that reuses its ids)."""
        seen = self._pm_seen
        now = time.monotonic()
        while seen:
            oldest = next(iter(seen.values()))
            if now - oldest[0] < PM_WINDOW:
                break
            seen.popitem(last=False)
        entry = seen.get(self._pm_key(stanza, frm, to, scan))
        resource = _addressed_resource(stanza)
        if entry is None or resource in entry[2]:
            return False
        entry[2].add(resource)
        if self.stanza_ids:
            self._stamp(stanza, to.bare, entry[1], None)
        return True

    def _remember_pm(self, stanza: Element, frm: JID, to: JID, scan: _Scan,
                     mam_id: int) -> None:
        seen = self._pm_seen
        key = self._pm_key(stanza, frm, to, scan)
        seen.pop(key, None)
        seen[key] = (time.monotonic(), mam_id, {_addressed_resource(stanza)})
        if len(seen) > PM_REMEMBERED:
            seen.popitem(last=False)

    def _archive_incoming(self, stanza: Element, frm: JID, owner: JID, scan: _Scan,
                          archive: bool | None, sent_now: bool | None = None) -> str | None:
        """Archive the recipient's copy and stamp its stanza-id; return the stanza's XML
        with that stanza-id when it is known without serializing the stanza again (the
        sender's archive serialized it: a local sender), else None. ``sent_now``: the
        sender's archive took this stanza in the same call (``_sent_now``; its id is then the
        last one given); None: not known (the offline path), the clock gives the id."""
        if archive is False:
            return None
        mam_id = self.ids.after() if sent_now else self.ids.next()
        xml = self._enqueue_received(mam_id, owner, frm, stanza, scan, archive is None,
                                     sent_now)
        if scan.retract is not None:
            self._retract(owner, frm.bare, scan.retract, "I", mam_id, scan.by_stanza_id)
        if not self.stanza_ids:
            return None
        if not self.server.is_local_domain(frm.domain):
            self._issued[(owner, str(mam_id))] = None
            if len(self._issued) > 100_000:
                self._issued.popitem(last=False)
        return self._stamp(stanza, owner, mam_id, xml)

    def _stamp(self, stanza: Element, owner: JID, mam_id: int, xml: str | None) -> str | None:
        """Give the recipient's copy its ``<stanza-id/>`` (XEP-0359 §4: the archive id, by the
        account); return ``xml`` (the sender's archive's serialization of this stanza, if
        known) with it written before the end tag, as the serializer would write it as the
        last child, else None."""
        text = str(mam_id)
        by = str(owner)
        stanza.children.append(Element("stanza-id", SID, {"by": by, "id": text}))
        if xml is None or stanza.xmlns != ns.CLIENT or not xml.endswith("</message>"):
            return None
        head = self._sid_heads.get(by)
        if head is None:
            if len(self._sid_heads) >= 100_000:
                self._sid_heads.clear()
            head = self._sid_heads[by] = f'<stanza-id xmlns="{SID}" by="{escape_attr(by)}" id="'
        return f'{xml[:-10]}{head}{text}"/></message>'

    def _already_archived(self, stanza: Element, frm: JID, owner: JID) -> bool:
        """A message coming back through the router (its session went away, XEP-0198
        resumption failed) still carries the id we gave it: archived already. Any other
        stanza-id in the owner's name is forged and goes (XEP-0359 §3)."""
        by = str(owner)
        for child in stanza.find_all("stanza-id", SID):
            if child.attrs.get("by") != by:
                continue
            local_sender = self.server.is_local_domain(frm.domain)
            if local_sender or (owner, child.attrs.get("id", "")) in self._issued:
                return True  # local senders' forgeries were removed on the way out
            stanza.children.remove(child)
        return False

    def _sent_now(self, stanza: Element) -> bool:
        """Whether the sender's archive took this very stanza last (a local sender) and its
        attributes and children are still what they were then: its XML and scan hold.
        Compared in C (a dict, a list by identity): nothing between the sender's hook and
        the recipient's changes a message in practice, and should something do it, the
        recipient's row and live copy are serialized afresh rather than stale."""
        last = self._last_out
        return last is not None and last[0] is stanza and stanza.attrs == last[3] \
            and stanza.children == last[4]

    def _enqueue_received(self, mam_id: int, owner: JID, frm: JID, stanza: Element,
                          scan: _Scan, check: bool, sent: bool | None = None) -> str | None:
        """Queue the recipient's row; return the XML when it is the sender's archive's
        serialization of this very stanza (a local sender), which the live copy may reuse
        (``incoming``). ``sent``: ``_sent_now(stanza)`` when the caller knows it. (The
        sender's row is queued inline by ``outgoing``.)"""
        # Between a local sender and a local recipient the stanza is the same object, with
        # the same content, on both sides: one serialization serves both archives.
        last = self._last_out
        reused: str | None = None
        if last is not None and (self._sent_now(stanza) if sent is None else sent):
            xml = reused = last[1]
        else:
            xml = stanza.serialize(ns.CLIENT)
        self._last_out = None
        self._add_row(mam_id, owner, frm.bare, frm.resource, "I", frm, scan, xml, check)
        return reused

    def _add_row(self, mam_id: int, owner: JID, peer: JID, resource: str | None,
                 direction: str, frm: JID, scan: _Scan, xml: str, check: bool) -> None:
        """Queue one archived message in the writer's lane (``check``: the owner's prefs were
        not known on the message path, ``_admit`` decides before writing)."""
        assert self.writer is not None and owner.local is not None
        if check:
            self._unchecked.add(mam_id)
        self.writer.add((mam_id, owner.domain, owner.local, str(peer), resource or "",
                         direction, str(frm), scan.origin_id, scan.search_body, xml))
        if self._instrument.enabled:
            self._instrument.emit(ARCHIVE_MESSAGE, {"host_type": owner.domain}, {"count": 1})

    # -- XEP-0441 preferences --------------------------------------------------------------------
    def _decide(self, owner: JID, peer: JID, sessions: Sequence[Any] = ()) -> bool | None:
        """Whether to archive a message between owner and peer (bare JIDs); None when the
        answer needs the database (prefs not cached, or the roster not loaded in any of the
        owner's ``sessions``)."""
        prefs = self._prefs.get(str(owner))
        if prefs is None:
            return None
        if prefs is ARCHIVE_ALL:
            return True  # what nearly every account has: no lists to look through
        decision = self._decide_with(prefs, owner, peer)
        if decision is None:
            # XEP-0441 'roster', from the roster the owner's session holds: decided on the
            # message path, a message not archived gets no stanza-id (XEP-0313 §3.5: it is
            # the archive id; a client would page from it and get item-not-found).
            decision = self._roster_has(peer, sessions)
        return decision

    def _roster_has(self, peer: JID, sessions: Sequence[Any]) -> bool | None:
        """Whether ``peer`` is in the roster a session of the owner keeps (mod_roster's
        cache, as the clients see it); None when none has it loaded, or when modules change
        what a roster shows (roster_items, roster_get_jid_info): ``_admit`` asks then."""
        hooks = self.server.hooks
        if hooks.has(H.ROSTER_ITEMS) or hooks.has(H.ROSTER_GET_JID_INFO):
            return None
        cache = loaded_roster(sessions)
        return None if cache is None else peer in cache

    async def _in_roster(self, owner: JID, peer: JID) -> bool:
        roster = roster_module(self.server)
        return roster is not None and await roster.get_roster_item(owner, peer) is not None

    @staticmethod
    def _decide_with(prefs: Prefs, owner: JID, peer: JID) -> bool | None:
        text = str(peer)
        if text in prefs.always:
            return True
        if text in prefs.never:
            return False
        if prefs.default == "always":
            return True
        if prefs.default == "never":
            return False
        return None  # roster: decided with the roster when written

    async def _load_prefs(self, owner: JID) -> Prefs:
        cached = self._prefs.get(str(owner))
        if cached is not None:
            return cached
        assert owner.local is not None
        # In a batch of messages to the offline account (suricate/core/offline_batch.py):
        # read once for the batch.
        local = owner.local
        prefs = await read_once(owner, (self.name, "prefs"),
                                lambda: self.store.get_prefs(owner.domain, local))
        if prefs is None or prefs == ARCHIVE_ALL:
            prefs = ARCHIVE_ALL  # the one instance ``_decide`` recognizes by identity
        if self.cache_users and self.server.sessions.resources(owner):
            self._prefs[str(owner)] = prefs
        return prefs

    async def load_prefs(self, acc: Any, c2s: C2S) -> Any:
        if self.cache_users:
            await self._load_prefs(c2s.jid.bare)
        return acc

    async def forget_prefs(self, acc: Any, c2s: C2S, reason: str) -> Any:
        owner = c2s.jid.bare
        if not self.server.sessions.resources(owner):
            self._prefs.pop(str(owner), None)
        return acc

    async def _admit(self, rows: list[Row]) -> list[Row]:
        """Rows archived before the owner's prefs were known: decide now."""
        if not self._unchecked:
            return rows
        kept: list[Row] = []
        seen: dict[JID, Prefs] = {}  # one read per archive per batch
        for row in rows:
            if row[0] not in self._unchecked:
                kept.append(row)
                continue
            self._unchecked.discard(row[0])
            owner = JID(row[2], row[1], None)
            peer = JID.parse(row[3])
            prefs = seen.get(owner)
            if prefs is None:
                prefs = seen[owner] = await self._load_prefs(owner)
            decision = self._decide_with(prefs, owner, peer)
            if decision is None:  # roster mode: archived when the peer is a contact
                decision = await self._in_roster(owner, peer)
            if decision:
                kept.append(row)
        return kept

    # -- XEP-0424 retraction ---------------------------------------------------------------------
    def _retract(self, owner: JID, peer: JID, target: str, direction: str,
                 mam_id: int, by_stanza_id: bool = False) -> None:
        """Queue the tombstone for the message ``target`` (its origin-id, or with
        ``by_stanza_id`` its archive id) in ``owner``'s archive, in the writer's lane: a
        message still waiting there is written first. XEP-0424 §4: only the author's own
        message: same conversation, same direction (the sender's outgoing one, the
        recipient's incoming one)."""
        assert owner.local is not None and self.writer is not None
        self.writer.add_retraction(Retraction(owner.domain, owner.local, str(peer), target,
                                              direction, mam_id, stamp_of(mam_id),
                                              by_stanza_id))

    async def _apply_retraction(self, r: Retraction) -> None:
        if r.by_stanza_id:
            await self._apply_by_stanza_id(r)
            return
        found = await self.store.find_retractable(r.server, r.user, r.peer, r.target,
                                                  r.direction, r.before)
        if found is None:
            return
        mam_id, xml = found
        original = _parse(xml)
        if original is None:
            return
        # XEP-0424 §5 tombstone: the content goes, the envelope and origin-id stay.
        tomb = Element("message", ns.CLIENT, {k: v for k, v in original.attrs.items()})
        origin = original.find("origin-id", SID)
        if origin is not None:
            tomb.append(origin)
        tomb.add("retracted", RETRACT, {"stamp": r.stamp, "id": r.target})
        await self.store.replace_message(r.server, r.user, mam_id, tomb.serialize(ns.CLIENT))

    async def _apply_by_stanza_id(self, r: Retraction) -> None:
        """MongooseIM's retraction by stanza-id (RETRACT_ESL). The id is the one the
        retracting user's archive gave the message (the stanza-id on its carbon, or its
        MAM result id). The rules (docs/mam.md):

        - the sender's archive ('O'): the row with that id, sent by the owner to this peer;
        - the recipient's archive ('I'): the row with that id, received from the peer (an id
          this archive gave, as with MongooseIM's same_mam_id_for_peers); failing that, when
          the sender is local, its copy of the sender's row: the sender's row with that id,
          sent by the sender to the owner, then among the messages the owner received from
          the same full JID with the same origin-id, the one of the same rank as that row
          among the sender's (the only one when origin-ids are unique).

        Either way only a message of the one who retracts (XEP-0424 §4): someone else's id,
        an unknown or malformed one, change nothing."""
        mam_id = id_from_text(r.target)
        if mam_id is None:
            return
        store = self.store
        found = await store.find_by_stanza_id(r.server, r.user, r.peer, mam_id, r.direction,
                                              r.before)
        target: tuple[int, str] | None = None if found is None else (found.id, found.message)
        if target is None and r.direction == "I":
            try:
                sender = JID.parse(r.peer)
            except (InvalidJID, ValueError):
                return
            if sender.local is None or not self.server.is_local_domain(sender.domain):
                return  # a remote sender's archive ids are not ours to check
            sent = await store.find_by_stanza_id(sender.domain, sender.local,
                                                 f"{r.user}@{r.server}", mam_id, "O",
                                                 r.before)
            if sent is None or sent.origin_id is None:
                # Not the sender's message to this owner; or one without an origin-id (nor
                # id attribute), whose copy here cannot be told apart from its neighbours.
                return
            rank = await store.count_sent_before(sender.domain, sender.local,
                                                 f"{r.user}@{r.server}", sent.from_jid,
                                                 sent.origin_id, sent.id)
            target = await store.find_received_copy(r.server, r.user, r.peer, sent.from_jid,
                                                    sent.origin_id, rank, r.before)
        if target is None:
            return
        row_id, xml = target
        original = _parse(xml)
        if original is None:
            return
        # The tombstone keeps the envelope and origin-id; its <retracted/> is in MongooseIM's
        # namespace and names the message by the stanza-id this archive gave it (what the
        # owner's clients know it by: their live copy's or carbon's stanza-id, the MAM id).
        tomb = Element("message", ns.CLIENT, dict(original.attrs))
        origin = original.find("origin-id", SID)
        if origin is not None:
            tomb.append(origin)
        retracted = tomb.add("retracted", RETRACT_ESL, {"stamp": r.stamp})
        retracted.add("stanza-id", SID, {"id": id_to_text(row_id),
                                         "by": f"{r.user}@{r.server}"})
        await store.replace_message(r.server, r.user, row_id, tomb.serialize(ns.CLIENT))

    def _flushed(self, domain: str, count: int) -> None:
        instrument = self.server.instrument
        if instrument.enabled:
            instrument.emit(FLUSHED, {"host_type": domain}, {"count": count})

    # -- account removal -------------------------------------------------------------------------
    async def received_messages(self, owner: JID, peer: JID, stanza_ids: Sequence[str]
                                ) -> list[str]:
        """The messages of ``owner``'s archive with these stanza-ids (the ids this archive
        gave) that ``peer`` sent: what mod_blocking keeps with an XEP-0377 report. Ids that
        are not ours, or messages of someone else, are left out."""
        if owner.local is None or self.writer is None:
            return []
        await self.writer.flush_archive(owner.domain, owner.local)
        found: list[str] = []
        for raw in stanza_ids:
            mam_id = id_from_text(raw)
            if mam_id is None:
                continue
            row = await self.store.find_by_stanza_id(owner.domain, owner.local, str(peer.bare),
                                                     mam_id, "I", (1 << 63) - 1)
            if row is not None:
                found.append(row.message)
        return found

    async def remove_archive(self, acc: Any, jid: JID) -> Any:
        owner = jid.bare
        assert owner.local is not None
        if self.writer is not None:
            self.writer.discard_archive(owner.domain, owner.local)
            # A batch being written (in the SQLite writer thread, or a COPY) holds the shard's
            # lock and may still hold rows of this archive: wait for it, so that none of them
            # lands after the delete below.
            await self.writer.flush_archive(owner.domain, owner.local)
        # The account's tables went with it (user_tables); a batch written meanwhile too.
        await self.store.remove_archive(owner.domain, owner.local)
        self._prefs.pop(str(owner), None)
        if self.server.instrument.enabled:
            self.server.instrument.emit(REMOVE_ARCHIVE,
                                        {"host_type": owner.domain}, {"count": 1})
        return acc

    async def remove_domain(self, acc: Any, host_type: str, domain: str) -> Any:
        """removeDomain: the one-to-one archives are the accounts' rows (user_tables); the
        room archives of the domain's MUC service go here."""
        if self.muc_archive is not None and self.serves_host_type(host_type):
            await self.muc_archive.remove_service(domain)
        return acc

    async def personal_data(self, jid: JID) -> list[PersonalData]:
        """The account's one-to-one archive (GDPR retrieval), as MongooseIM's ``mam_pm``."""
        owner = jid.bare
        assert owner.local is not None
        if self.writer is not None:
            await self.writer.flush_archive(owner.domain, owner.local)
        rows = await self.store.fetch(
            "SELECT id, from_jid, message FROM mam_message WHERE server = ? AND username = ?"
            " ORDER BY id", owner.domain, owner.local)
        # MongooseIM 6.4's headers (the id holds the time: XEP-0313 ids are time-ordered).
        parts = [PersonalData("mam_pm", ("id", "from", "message"),
                              [(id_to_text(int(r[0])), str(r[1]), str(r[2])) for r in rows])]
        muc = self.muc_archive
        if muc is not None and muc.store is not None:
            # MongooseIM's mam_muc: what the account said in rooms (kept when it goes: the
            # rooms' archives are their occupants' conversations).
            if muc.writer is not None:
                await muc.writer.flush_all()
            parts.append(PersonalData(
                "mam_muc", ("id", "message"),
                [(id_to_text(i), message)
                 for i, _room, message in await muc.store.sent_by(str(owner))]))
        return parts

    # -- IQs -----------------------------------------------------------------------------------
    async def iq_mam(self, iq: IqRequest) -> Element | None:
        try:
            return await self._iq_mam(iq)
        except Exception:
            # Answered with an error by the IQ dispatcher: 6.4's dropped_iq.
            if self._instrument.enabled:
                self._instrument.emit(DROPPED_IQ, {"host_type": iq.to.domain}, {"count": 1})
            raise

    async def _iq_mam(self, iq: IqRequest) -> Element | None:
        owner = iq.to.bare
        # XEP-0313 §4: an account queries its own archive only.
        if iq.frm.bare != owner:
            raise StanzaError("forbidden", "only the account itself reads its archive")
        if not self.pm_enabled:
            raise StanzaError("service-unavailable", "one-to-one archives are not enabled")
        name = iq.payload.name
        if name == "query":
            if iq.type == "get":
                # XEP-0313 §4.1.2: the form's fields.
                return Element("query", MAM, children=[fields_form(self.full_text)])
            return await self._lookup(iq, owner)
        if name == "prefs":
            return await self._prefs_iq(iq, owner)
        if name == "metadata" and iq.type == "get":
            return await self._metadata(owner)
        raise StanzaError("bad-request")

    async def _lookup(self, iq: IqRequest, owner: JID) -> Element:
        assert owner.local is not None and self.writer is not None
        began = time.perf_counter()
        q = parse_query(iq.payload, full_text_search=self.full_text)
        limit = self.default_limit if q.max is None else min(q.max, self.max_limit)
        # The archive as of now: rows still in the writer's batch are written first.
        await self.writer.flush_archive(owner.domain, owner.local)
        # XEP-0313 §4.1.3, §4.3.2: an id named by the client that the archive does not hold.
        missing = await self.store.missing(owner.domain, owner.local, q.must_exist) if q.must_exist \
            else None
        if missing is not None:
            raise StanzaError("item-not-found", f"no message with id {missing}")
        page = await self.store.lookup(owner.domain, owner.local, q, limit, self.simple)
        messages = list(reversed(page.messages)) if q.flip else page.messages
        for archived in messages:
            self.server.router.route(owner, iq.frm, self._result(q, owner, iq.frm, archived))
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
                LOOKUP, {"host_type": owner.domain},
                {"count": 1, "size": len(messages),
                 "time": int((time.perf_counter() - began) * 1_000_000)})
        return fin

    def _result(self, q: Query, owner: JID, to: JID, archived: Any) -> Element:
        msg = Element("message", ns.CLIENT, {"from": str(owner), "to": str(to)})
        attrs = {"id": id_to_text(archived.id)}
        if q.query_id is not None:
            attrs["queryid"] = q.query_id
        forwarded = msg.add("result", MAM, attrs).add("forwarded", ns.FORWARD)
        forwarded.add("delay", ns.DELAY, {"stamp": stamp_of(archived.id)})
        original = _parse(archived.message)
        if original is None:
            log.error("mam_message_unreadable user=%s id=%s", owner, archived.id)
            original = Element("message", ns.CLIENT)
        forwarded.append(original)
        return msg

    async def _prefs_iq(self, iq: IqRequest, owner: JID) -> Element:
        assert owner.local is not None
        if iq.type == "set":
            prefs = _parse_prefs(iq.payload)
            await self.store.set_prefs(owner.domain, owner.local, prefs)
            if self.cache_users and self.server.sessions.resources(owner):
                self._prefs[str(owner)] = ARCHIVE_ALL if prefs == ARCHIVE_ALL else prefs
            else:
                self._prefs.pop(str(owner), None)
            # The account's other nodes cache the old prefs for their sessions of it, and
            # decide the messages that enter there: they read the new ones back (a cast).
            self.server.cluster.cast(owner, PREFS_CAST, Element("prefs", MAM))
            event = SET_PREFS
        else:
            prefs = await self.store.get_prefs(owner.domain, owner.local) or \
                Prefs("always", [], [])
            event = GET_PREFS
        if self.server.instrument.enabled:
            self.server.instrument.emit(event, {"host_type": owner.domain}, {"count": 1})
        return _prefs_element(prefs)

    async def _metadata(self, owner: JID) -> Element:
        assert owner.local is not None and self.writer is not None
        await self.writer.flush_archive(owner.domain, owner.local)
        result = Element("metadata", MAM)
        bounds = await self.store.bounds(owner.domain, owner.local)
        if bounds is not None:
            for name, mam_id in (("start", bounds[0]), ("end", bounds[1])):
                result.add(name, MAM, {"id": id_to_text(mam_id), "timestamp": stamp_of(mam_id)})
        return result


def _addressed_resource(stanza: Element) -> str:
    """The resource the sender addressed (the stanza's ``to``), which the session that gets
    it may not have: a copy to a session that is gone goes to the account's other sessions,
    or to offline storage, as to the bare JID (RFC 6121 §8.5.3.2.1)."""
    return stanza.attrs.get("to", "").partition("/")[2]


def _strip_ids(stanza: Element, *owners: JID) -> None:
    names = {str(o) for o in owners}
    forged = [c for c in stanza.find_all("stanza-id", SID) if c.attrs.get("by") in names]
    for child in forged:
        stanza.children.remove(child)


def _parse(xml: str) -> Element | None:
    try:
        elements = parse_fragment(xml, ns.CLIENT)
    except XMLStreamError:
        return None
    return elements[0] if elements else None


def _parse_prefs(prefs: Element) -> Prefs:
    default = prefs.attrs.get("default")
    if default not in ("always", "never", "roster"):
        raise StanzaError("bad-request", "default must be always, never or roster")
    lists: dict[str, list[str]] = {"always": [], "never": []}
    for name, jids in lists.items():
        holder = prefs.find(name, MAM)
        if holder is None:
            continue
        for item in holder.find_all("jid", MAM):
            try:
                jids.append(str(JID.parse(item.text.strip()).bare))
            except (InvalidJID, ValueError):
                raise StanzaError("bad-request", f"bad JID: {item.text}") from None
    return Prefs(default, lists["always"], lists["never"])


def _prefs_element(prefs: Prefs) -> Element:
    el = Element("prefs", MAM, {"default": prefs.default})
    for name, jids in (("always", prefs.always), ("never", prefs.never)):
        holder = el.add(name, MAM)
        for jid in jids:
            holder.add("jid", MAM, text=jid)
    return el


__all__ = ["ModMam", "IdGenerator", "id_from_text"]

"""mod_caps: XEP-0115 Entity Capabilities. The server learns what each client supports from
the ``<c/>`` element of its presence, so PEP (mod_pubsub) notifies only the clients that asked
for a node with ``<node>+notify`` (XEP-0163 §4.3).

A known verification string is answered from the cache at once; an unknown one costs one
disco#info query to the client (XEP-0115 §6.2), whose answer is hashed as §5.1 says and cached
only when it is well-formed and the hash matches (§5.4: an ill-formed answer, with a duplicate
identity or feature or two forms of one FORM_TYPE, and a mismatch are never cached nor
trusted). Nothing runs per
stanza but a name check on the client's own stanzas, and only while the module is enabled.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from suricate.config.modules_spec import backend
from suricate.config.spec import Int, Option, Section
from suricate.core import hooks as H
from suricate.core.iq import IqRequest
from suricate.core.module import CarriedSlot, Module, SessionSlot, session_state_changed
from suricate.jid import JID
from suricate.xml import ns
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.core.c2s import C2S

log = logging.getLogger("suricate.mod_caps")

CAPS = "http://jabber.org/protocol/caps"
#: XEP-0115 §5.1 hash names (IANA "Hash Function Textual Names") we can compute.
HASHES = {"sha-1": "sha1", "sha-224": "sha224", "sha-256": "sha256", "sha-384": "sha384",
          "sha-512": "sha512"}
#: The node of the server's own caps (XEP-0115 §4: a URI identifying the software).
SERVER_NODE = "urn:suricate:server"
#: Remote contacts remembered at most (their servers may vanish without unavailable presence).
REMOTE_LIMIT = 100_000
#: How long the server waits for a client to answer its disco#info query.
QUERY_TIMEOUT = 10.0


class SessionCaps:
    """What the server knows of one session's client."""

    __slots__ = ("key", "features", "pending")

    def __init__(self, key: tuple[str, str, str], features: frozenset[str]) -> None:
        self.key = key  # (node, ver, hash)
        self.features = features
        # The key of the client's newest presence while its features are being asked for
        # (XEP-0115 §6.2); None when ``key`` is the newest. Not carried with the session.
        self.pending: tuple[str, str, str] | None = None


CAPS_SLOT: SessionSlot[SessionCaps] = SessionSlot("mod_caps")
_CARRIED_CAPS = CarriedSlot(
    CAPS_SLOT, lambda caps: [list(caps.key), sorted(caps.features)],
    lambda plain: SessionCaps((plain[0][0], plain[0][1], plain[0][2]), frozenset(plain[1])))


def session_features(session: Any) -> frozenset[str]:
    """The features of a session's client as far as the server knows (empty when unknown)."""
    caps = CAPS_SLOT.get(session)
    return caps.features if caps is not None else frozenset()


def _identities(query: Element) -> list[tuple[str, str, str, str]]:
    return [(i.attrs.get("category", ""), i.attrs.get("type", ""), i.attrs.get("xml:lang", ""),
             i.attrs.get("name", "")) for i in query.find_all("identity", ns.DISCO_INFO)]


def _features(query: Element) -> list[str]:
    return [f.attrs.get("var", "") for f in query.find_all("feature", ns.DISCO_INFO)]


def _form_type(form: Element) -> list[str]:
    """The values of a form's FORM_TYPE field; none when it has no FORM_TYPE of type hidden
    (XEP-0115 §5.4 step 3.6: such a form is ignored)."""
    for field in form.find_all("field", ns.DATA_FORMS):
        if field.attrs.get("var") == "FORM_TYPE":
            if field.attrs.get("type") != "hidden":
                return []
            return [v.text for v in field.find_all("value", ns.DATA_FORMS)]
    return []


def ill_formed(query: Element) -> str | None:
    """Why a disco#info result cannot stand for a caps hash (XEP-0115 §5.4 steps 3.3 to 3.5),
    or None. Such an answer is not cached for the hash nor used, as one that does not verify."""
    identities = _identities(query)
    if len(set(identities)) != len(identities):
        return "identity twice"  # §5.4 3.3: same category/type/lang/name
    features = _features(query)
    if len(set(features)) != len(features):
        return "feature twice"  # §5.4 3.4
    seen: set[str] = set()
    for form in query.find_all("x", ns.DATA_FORMS):
        values = set(_form_type(form))
        if len(values) > 1:
            return "FORM_TYPE with several values"  # §5.4 3.5
        if values:
            (form_type,) = values
            if form_type in seen:
                return "two forms with one FORM_TYPE"  # §5.4 3.5
            seen.add(form_type)
    return None


def verification_string(query: Element) -> str:
    """XEP-0115 §5.1: the string hashed into 'ver', from a disco#info result."""
    out: list[str] = []
    for identity in sorted(_identities(query)):
        out.append("/".join(identity) + "<")
    for var in sorted(_features(query)):
        out.append(var + "<")
    forms: list[tuple[str, list[str]]] = []
    for form in query.find_all("x", ns.DATA_FORMS):
        types = _form_type(form)
        # §5.4 step 3.6: an extension without a hidden FORM_TYPE is ignored.
        form_type = types[0] if types else ""
        if not form_type:
            continue
        fields: list[tuple[str, list[str]]] = []
        for field in form.find_all("field", ns.DATA_FORMS):
            var = field.attrs.get("var", "")
            if var != "FORM_TYPE":
                fields.append((var, sorted(v.text for v in field.find_all("value",
                                                                          ns.DATA_FORMS))))
        parts = [form_type + "<"]
        for var, values in sorted(fields):
            parts.append(var + "<")
            parts.extend(v + "<" for v in values)
        forms.append((form_type, parts))
    for _, parts in sorted(forms):
        out.extend(parts)
    return "".join(out)


def caps_hash(query: Element, algo: str) -> str:
    digest = hashlib.new(HASHES[algo], verification_string(query).encode()).digest()
    return base64.b64encode(digest).decode()


class ModCaps(Module):
    name = "mod_caps"
    options = Section({
        "cache_size": Option(Int(min=1), 1000, "How many verified caps hashes are remembered."),
        "cache_life_time": Option(Int(min=1), 86400,
                                  "Seconds a verified caps hash stays in the cache."),
        # The cache lives in memory; MongooseIM's choice of table has no meaning here.
        "backend": dataclasses.replace(backend(), inert=True),
    }, doc="XEP-0115 Entity Capabilities: the clients' features, learnt from their presence, "
           "decide PEP notifications. The cache of verified hashes is kept in memory.")
    xeps = ("0115",)
    hooks = (
        # Before mod_presence (80), which consumes broadcast presence.
        (H.USER_SEND_PACKET, "user_send_packet", 70),
        (H.C2S_STREAM_FEATURES, "stream_features", 90),
        (H.DISCO_LOCAL_NODE, "local_node", 50),
        # Before mod_presence (50), which delivers it: a remote contact's caps.
        (H.PRESENCE_TO_USER, "presence_to_user", 10),
        (H.SESSION_HANDOVER, "handover", 50),
        (H.SESSION_SNAPSHOT, "snapshot", 50),
    )

    def __init__(self, server: Any, opts: Any) -> None:
        super().__init__(server, opts)
        # (node, ver, hash) -> (features, expires at); least recently used first.
        self._cache: OrderedDict[tuple[str, str, str], tuple[frozenset[str], float]] = \
            OrderedDict()
        self._own: dict[str, str] = {}
        # Remote contacts' available resources (bare -> full -> features), from the presence
        # they send our users; dropped at their unavailable presence.
        self._remote: dict[JID, dict[JID, frozenset[str]]] = {}  # domain -> the server's own caps 'ver'
        self._inflight: dict[tuple[str, str, str], asyncio.Future[frozenset[str] | None]] = {}
        # Remote full JID -> the local users already told of its features (its presence
        # reaches each of them on its own): each hears once per caps hash.
        self._told: dict[JID, tuple[frozenset[str], set[JID]]] = {}

    # -- cache -----------------------------------------------------------------------------
    def cached(self, key: tuple[str, str, str]) -> frozenset[str] | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        features, expires = entry
        if expires < time.monotonic():
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        return features

    def remember(self, key: tuple[str, str, str], features: frozenset[str]) -> None:
        self._cache[key] = (features, time.monotonic() + self.opts["cache_life_time"])
        self._cache.move_to_end(key)
        while len(self._cache) > self.opts["cache_size"]:
            self._cache.popitem(last=False)

    # -- the server's own caps (XEP-0115 §6.3: in stream features) -----------------------
    def _own_ver(self, domain: str) -> str | None:
        ver = self._own.get(domain)
        if ver is None:
            disco: Any = self.server.modules.get("mod_disco")
            if disco is None:
                return None  # nobody answers disco#info: nothing to announce
            jid = JID(None, domain, None)
            request = IqRequest(jid, jid, "get", Element("query", ns.DISCO_INFO),
                                Element("iq", ns.CLIENT))
            # The features are fixed once the modules started: hashed once per domain.
            ver = self._own[domain] = caps_hash(disco.local_info(request), "sha-1")
        return ver

    @staticmethod
    def _set_caps(c2s: C2S, caps: SessionCaps) -> None:
        CAPS_SLOT.set(c2s, caps)
        session_state_changed(c2s)  # the session's Redis copy keeps it (SESSION_SNAPSHOT)

    def handover(self, state: dict[str, Any], c2s: C2S, moved_in: bool) -> dict[str, Any]:
        """The session resumes on another node (XEP-0198 §5): what its client's caps told
        goes along, so PEP keeps notifying the resumed session (XEP-0163 §4: notifications
        follow the +notify features) without the client sending its presence again. The
        last items are not sent again: the client had them before it moved."""
        return _CARRIED_CAPS.handover(state, c2s, moved_in)

    def snapshot(self, state: dict[str, Any], c2s: C2S) -> dict[str, Any]:
        return _CARRIED_CAPS.snapshot(state, c2s)

    def stream_features(self, features: list[Element], c2s: C2S) -> list[Element]:
        domain = c2s.jid.domain if c2s.jid is not None else c2s.domain
        ver = self._own_ver(domain) if domain else None
        if ver is not None:
            features.append(Element("c", CAPS, {"hash": "sha-1", "node": SERVER_NODE,
                                                "ver": ver}))
        return features

    def local_node(self, known: bool, domain: str, node: str) -> bool:
        return known or node == f"{SERVER_NODE}#{self._own.get(domain)}"

    # -- presence from our clients ---------------------------------------------------------
    def user_send_packet(self, stanza: Element | None, c2s: C2S) -> Element | None:
        if stanza is None or stanza.name != "presence" or "type" in stanza.attrs \
                or "to" in stanza.attrs:
            return stanza
        c = stanza.find("c", CAPS)
        if c is None:
            return stanza
        node, ver = c.attrs.get("node", ""), c.attrs.get("ver", "")
        algo = c.attrs.get("hash", "")
        if not ver:
            return stanza
        key = (node, ver, algo)
        current = CAPS_SLOT.get(c2s)
        # Before mod_presence (80) records it: no presence yet, or the client was
        # unavailable, makes this an initial presence (RFC 6121 §4.2), after which PEP
        # sends the last items again (XEP-0163 §4.3.3.2), whatever the hash.
        initial = c2s.presence is None
        if current is not None and current.key == key and current.pending is None:
            if initial and current.features:
                self.server.spawn(self._recognised(c2s, current.features))
            return stanza  # nothing new (a status change)
        features = self.cached(key)
        if features is not None:
            self._set_caps(c2s, SessionCaps(key, features))
            self.server.spawn(self._recognised(c2s, features))
        else:
            if current is None:
                # Nothing known yet: a placeholder that only says which hash is newest.
                current = SessionCaps(("", "", ""), frozenset())
                CAPS_SLOT.set(c2s, current)
            current.pending = key
            self.server.spawn(self._learn(c2s, key))
        return stanza

    async def _features(self, key: tuple[str, str, str], domain: str,
                        jid: JID) -> frozenset[str] | None:
        """The features behind ``key``, asking ``jid`` (from our ``domain``) when unknown."""
        # Only a hash we verify is shared (XEP-0115 §5.4 step 2: for another hash, or legacy
        # caps, what an entity answers is associated with that entity only).
        pending = self._inflight.get(key) if key[2] in HASHES else None
        if pending is not None:
            # Another entity with the same hash is being asked: one query is enough...
            features = await asyncio.shield(pending)
            if features is not None:
                return features
            # ...unless its answer did not verify (or never came): §5.4 step 3.9, check
            # another entity that announces the value, this one.
            return await self._query(domain, jid, key)
        fut: asyncio.Future[frozenset[str] | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            features = await self._query(domain, jid, key)
            fut.set_result(features)
        except BaseException:
            fut.set_result(None)
            raise
        finally:
            self._inflight.pop(key, None)
        return features

    async def _learn(self, c2s: C2S, key: tuple[str, str, str]) -> None:
        features = await self._features(key, c2s.jid.domain, c2s.jid)
        if features is None or c2s.jid is None:
            return
        # The client may have sent another hash meanwhile: the newest presence wins. (The
        # features of the previous hash stay until the new ones are known; comparing with
        # them instead of with the newest presence kept a client that changed its caps to
        # an unknown hash on its old features.)
        current = CAPS_SLOT.get(c2s)
        if current is not None and current.pending != key:
            return
        self._set_caps(c2s, SessionCaps(key, features))
        await self._recognised(c2s, features)

    # -- presence from remote entities to our users (notifications across servers) ---------
    def remote_features(self, bare: JID) -> list[tuple[JID, frozenset[str]]]:
        """The known resources of a remote contact and their features."""
        return list(self._remote.get(bare, {}).items())

    async def presence_to_user(self, handled: bool, frm: JID, to: JID,
                               stanza: Element) -> bool:
        if handled or frm.resource is None or self.server.is_local_domain(frm.domain):
            return handled
        type_ = stanza.attrs.get("type")
        resources = self._remote.get(frm.bare)
        if type_ == "unavailable":
            self._told.pop(frm, None)
            if resources is not None:
                resources.pop(frm, None)
                if not resources:
                    del self._remote[frm.bare]
            return handled
        c = stanza.find("c", CAPS) if type_ is None else None
        if c is None or not c.attrs.get("ver"):
            return handled
        key = (c.attrs.get("node", ""), c.attrs["ver"], c.attrs.get("hash", ""))
        features = self.cached(key)
        if features is not None:
            self._remember_remote(frm, features)
            self._tell(frm, to.bare, features)
        else:
            # Asked in a task: the presence itself is not held up by the query.
            self.server.spawn(self._learn_remote(key, to, frm))
        return handled

    async def _learn_remote(self, key: tuple[str, str, str], to: JID, frm: JID) -> None:
        features = await self._features(key, to.domain, frm)
        if features is not None:
            self._remember_remote(frm, features)
            self._tell(frm, to.bare, features)

    def _tell(self, frm: JID, user: JID, features: frozenset[str]) -> None:
        """REMOTE_CAPS_RECOGNISED once per (remote resource, local user, features)."""
        known, told = self._told.get(frm, (features, set()))
        if known != features:
            told = set()
        if user in told:
            return
        told.add(user)
        if frm not in self._told and len(self._told) >= REMOTE_LIMIT:
            self._told.pop(next(iter(self._told)))
        self._told[frm] = (features, told)
        self.server.spawn(self.server.hooks.fold_async(H.REMOTE_CAPS_RECOGNISED, None, frm,
                                                       user, features))

    def _remember_remote(self, frm: JID, features: frozenset[str]) -> None:
        if frm.bare not in self._remote and len(self._remote) >= REMOTE_LIMIT:
            # Entities whose server never said goodbye: the oldest are forgotten.
            self._remote.pop(next(iter(self._remote)))
        self._remote.setdefault(frm.bare, {})[frm] = features

    async def _query(self, domain: str, jid: JID,
                     key: tuple[str, str, str]) -> frozenset[str] | None:
        node, ver, algo = key
        # XEP-0115 §6.2: ask the entity itself for the info of node#ver.
        query = Element("query", ns.DISCO_INFO, {"node": f"{node}#{ver}"} if node else {})
        try:
            answer = await self.server.iq.request(JID(None, domain, None), jid, "get", query,
                                                  QUERY_TIMEOUT)
        except TimeoutError:
            log.info("caps_query_timeout jid=%s", jid)
            return None
        result = answer.find("query", ns.DISCO_INFO)
        if answer.attrs.get("type") != "result" or result is None:
            return None
        features = frozenset(_features(result))
        if algo in HASHES:
            reason = ill_formed(result)
            if reason is not None:
                # §5.4 steps 3.3-3.5: "consider the entire response to be ill-formed"; it
                # is then neither cached for this hash nor trusted, as a mismatch below.
                log.info("caps_ill_formed jid=%s node=%s reason=%s", jid, node, reason)
                return None
            if caps_hash(result, algo) != ver:
                # §5.4 step 6: a hash that does not match is not to be trusted or cached.
                log.info("caps_hash_mismatch jid=%s node=%s", jid, node)
                return None
            self.remember(key, features)
        # Legacy caps (no 'hash', §7.1): used for this session, never cached.
        return features

    async def _recognised(self, c2s: C2S, features: frozenset[str]) -> None:
        await self.server.hooks.fold_async(H.CAPS_RECOGNISED, None, c2s, features)

"""mod_vcard: XEP-0054 vcard-temp: every account may publish one vCard, which anyone can read;
XEP-0153 vCard-based avatars: the SHA-1 of the vCard's PHOTO is stamped on the account's
presence (``vcard-temp:x:update``), so contacts and rooms learn when the avatar changes, whoever
changed it (the client, or XEP-0398 conversion from a PEP avatar by mod_pubsub).

The XEP-0055 user directory (``host``, ``search``, ``matches``) is not served yet: the options
are accepted so that MongooseIM configurations load unchanged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from suricate.config.modules_spec import backend, iqdisc
from suricate.config.spec import Bool, IntOrInfinity, Option, Section, Str
from suricate.core import hooks as H
from suricate.core.c2s import C2S
from suricate.core.iq import IqRequest
from suricate.core.module import GraphQLCategory, Module, PersonalData
from suricate.jid import JID
from suricate.modules.mod_disco import SERVER_NAME
from suricate.modules.mod_vcard.store import VcardStore
from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element
from suricate.xml.parser import XMLStreamError, parse_fragment

#: XEP-0153 §3: the presence extension carrying the avatar's hash.
VCARD_UPDATE = "vcard-temp:x:update"

# A vCard is profile data, not a file store: a photo belongs in a reasonably sized avatar.
MAX_VCARD_BYTES = 64 * 1024


class ModVcard(Module):
    name = "mod_vcard"
    graphql = GraphQLCategory("suricate.modules.mod_vcard.graphql")
    options = Section(
        {
            "iqdisc": iqdisc("parallel"),
            "backend": backend(),
            "host": Option(
                Str(lower=True),
                "vjud.@HOST@",
                "Domain of the user directory; @HOST@ is replaced by each served domain.",
                inert=True,
            ),
            "search": Option(
                Bool(), True, "Whether the user directory can be searched.", inert=True
            ),
            "matches": Option(
                IntOrInfinity(min=0),
                30,
                "Maximum number of search results returned.",
                inert=True,
            ),
        },
        doc="XEP-0054 vcard-temp and XEP-0055 Jabber Search.",
        unavailable={"ldap": "the ldap backend is not available in this version of Suricate"},
    )
    xeps = ("0054",)
    iq_handlers = (
        ("sm", ns.VCARD, "account_vcard"),
        ("local", ns.VCARD, "server_vcard"),
    )
    # XEP-0054 §4: support is advertised as the "vcard-temp" feature.
    features = (ns.VCARD,)
    sm_features = (ns.VCARD,)
    store_class = VcardStore
    store: VcardStore
    hooks = (
        # Before mod_presence (80) stores and broadcasts the presence; after blocking (40).
        (H.USER_SEND_PACKET, "stamp_presence", 60),
        (H.SESSION_OPENED, "session_opened", 50),
        (H.SESSION_CLOSED, "session_closed", 50),
    )

    def __init__(self, server: Any, opts: Any) -> None:
        super().__init__(server, opts)
        # Bare JID -> SHA-1 (hex) of its vCard PHOTO, "" without one; for accounts online.
        self.photos: dict[JID, str] = {}

    async def personal_data(self, jid: JID) -> list[PersonalData]:
        """What the account keeps here, for GDPR retrieval (``Module.personal_data``)."""
        server, user = jid.domain, jid.local or ""
        return [
            PersonalData("vcard", ("vcard",), await self.store.user_rows(
                "vcards", ("vcard",), server, user, None)),
        ]

    async def account_vcard(self, iq: IqRequest) -> Element | None:
        if iq.payload.name != "vCard":
            raise StanzaError("bad-request")
        owner = iq.to.bare
        own = iq.frm.bare == owner
        if iq.type == "set":
            if not own:
                # XEP-0054 §3.2: only one's own vCard can be changed.
                raise StanzaError("forbidden")
            await self._store(iq)
            return None
        assert owner.local is not None
        stored = None
        if own or await self.server.user_exists(owner):
            stored = await self.store.get_vcard(owner.domain, owner.local)
        if stored:
            return _parse_stored(stored)
        if own:
            # §3.1: no vCard yet -> an empty <vCard/> (the other allowed answer is an error).
            return Element("vCard", ns.VCARD)
        # §3.3: no vCard or no such user -> service-unavailable, one answer for both so the
        # reply does not tell whether the account exists.
        raise StanzaError("service-unavailable")

    async def _store(self, iq: IqRequest) -> None:
        vcard = Element("vCard", ns.VCARD, dict(iq.payload.attrs), iq.payload.children)
        xml = vcard.serialize()
        if len(xml.encode()) > MAX_VCARD_BYTES:
            raise StanzaError("not-acceptable", f"a vCard is limited to {MAX_VCARD_BYTES} bytes")
        await self.set_vcard(iq.to.bare, vcard)

    async def set_vcard(self, user: JID, vcard: Element) -> None:
        """Store ``vcard`` as the account's, from a client or the admin API alike: contacts
        see the avatar change (XEP-0153 §4.1, the hash of §4.3 on the next presence) and
        XEP-0398 publishes a new PHOTO to PEP. Writing the store directly would leave online
        sessions announcing the old hash."""
        assert user.local is not None
        # XEP-0054 §3.2: the set replaces the whole vCard (there are no partial updates).
        await self.store.set_vcard(user.domain, user.local, vcard.serialize())
        self._photo_changed(user, photo_hash(vcard))
        await self.server.hooks.fold_async(H.VCARD_STORED, None, user, vcard)

    # -- XEP-0153 avatars --------------------------------------------------------------------
    async def get_vcard(self, user: JID) -> Element | None:
        assert user.local is not None
        stored = await self.store.get_vcard(user.domain, user.local)
        return _parse_stored(stored) if stored else None

    async def set_photo(self, user: JID, mime: str | None, data: bytes | None) -> None:
        """Put ``data`` as the PHOTO of the account's vCard (None: remove it), keeping the rest
        (XEP-0398 §3: the PEP avatar becomes the vCard avatar). Does not run VCARD_STORED:
        the change came from PEP, which is already up to date."""
        assert user.local is not None
        vcard = await self.get_vcard(user) or Element("vCard", ns.VCARD)
        vcard.children = [c for c in vcard.children
                          if not (isinstance(c, Element) and c.name == "PHOTO")]
        if data is not None:
            photo = vcard.add("PHOTO")
            if mime:
                photo.add("TYPE", text=mime)
            photo.add("BINVAL", text=base64.b64encode(data).decode())
        xml = vcard.serialize()
        if len(xml.encode()) > MAX_VCARD_BYTES:
            return  # an avatar too big for a vCard stays a PEP avatar only
        await self.store.set_vcard(user.domain, user.local, xml)
        self._photo_changed(user, photo_hash(vcard))

    def _photo_changed(self, user: JID, digest: str) -> None:
        """XEP-0153 §4.1: a new avatar is announced by sending presence again; the server
        does it for the account's available sessions, with the new hash stamped."""
        if self.photos.get(user) == digest:
            return
        self.photos[user] = digest
        for session in list(self.server.sessions.resources(user)):
            presence = session.presence if isinstance(session, C2S) else None
            if presence is None:
                continue  # unavailable, or a session of another node of the cluster
            again = presence.copy()
            again.attrs.pop("to", None)
            self.server.hooks.fold(H.USER_SEND_PACKET, again, session)

    def stamp_presence(self, stanza: Element | None, c2s: C2S) -> Element | None:
        if stanza is None or stanza.name != "presence" or "type" in stanza.attrs \
                or c2s.jid is None:
            return stanza
        digest = self.photos.get(c2s.jid.bare)
        if digest is None:
            return stanza  # not known yet: what the client said stays
        # XEP-0153 §4.3 / XEP-0398: the server knows the current avatar; its hash replaces
        # whatever the client believed.
        stanza.children = [c for c in stanza.children if not (
            isinstance(c, Element) and c.name == "x" and c.xmlns == VCARD_UPDATE)]
        update = stanza.add("x", VCARD_UPDATE)
        update.add("photo", text=digest or None)
        return stanza

    async def session_opened(self, acc: None, c2s: C2S) -> None:
        user = c2s.jid.bare
        if user not in self.photos:
            vcard = await self.get_vcard(user)
            self.photos.setdefault(user, photo_hash(vcard) if vcard is not None else "")
        return acc

    async def session_closed(self, acc: None, c2s: C2S, reason: str) -> None:
        if c2s.jid is not None and not self.server.sessions.count_user(c2s.jid.bare):
            self.photos.pop(c2s.jid.bare, None)
        return acc

    def server_vcard(self, iq: IqRequest) -> Element:
        """The server's own vCard (XEP-0054 §3.3 note: a server may have one)."""
        if iq.type != "get":
            raise StanzaError("not-allowed")
        vcard = Element("vCard", ns.VCARD)
        vcard.add("FN", text=SERVER_NAME)
        vcard.add("DESC", text="XMPP server")
        return vcard


def photo_data(vcard: Element) -> tuple[str | None, bytes] | None:
    """The (type, bytes) of a vCard's PHOTO BINVAL, None without a readable one."""
    photo = vcard.find("PHOTO", ns.VCARD)
    text = photo.find_text("BINVAL", ns.VCARD) if photo is not None else None
    if not text:
        return None
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    return (photo.find_text("TYPE", ns.VCARD) if photo is not None else None), data


def photo_hash(vcard: Element) -> str:
    """XEP-0153 §4.1: the hex SHA-1 of the photo's bytes, "" without a photo."""
    found = photo_data(vcard)
    return hashlib.sha1(found[1]).hexdigest() if found else ""


def _parse_stored(xml: str) -> Element:
    try:
        elements = parse_fragment(xml)
    except XMLStreamError:
        elements = []
    if len(elements) != 1:
        raise StanzaError("internal-server-error", "stored vCard is unreadable")
    return elements[0]

"""mod_vcard: XEP-0054 vcard-temp: every account may publish one vCard, which anyone can read;
XEP-0153 vCard-based avatars: the SHA-1 of the vCard's PHOTO is stamped on the account's
presence (``vcard-temp:x:update``), so contacts and rooms learn when the avatar changes, whoever
changed it (the client, or XEP-0398 conversion from a PEP avatar by mod_pubsub).

Two backends, as MongooseIM 6.4's: ``rdbms`` stores what each account sets; ``ldap``
(``ldap.py``, docs/vcard_ldap.md) reads every vCard from an LDAP directory, read-only. Both
serve the XEP-0055 user directory on ``host`` (``vjud.@HOST@``) when ``search`` is on, at most
``matches`` users per search: the rdbms backend searches the fields it indexes of each stored
vCard (``search.py``), the ldap backend asks the directory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from collections.abc import Mapping
from typing import Any

from suricate.auth.ldap import LdapPool
from suricate.auth.methods import AuthUnavailable
from suricate.config.loader import References
from suricate.config.modules_spec import UNAVAILABLE_BACKENDS, iqdisc
from suricate.config.spec import (
    INVALID,
    OMIT,
    Bool,
    Context,
    IntOrInfinity,
    OneOf,
    Option,
    Section,
    Str,
    join,
)
from suricate.core import hooks as H
from suricate.core.c2s import C2S
from suricate.core.iq import IqRequest
from suricate.core.module import GraphQLCategory, Module, PersonalData
from suricate.jid import JID
from suricate.modules.mod_disco import SERVER_NAME, server_info_form
from suricate.modules.mod_vcard.ldap import LDAP_SECTION, VcardDirectory
from suricate.modules.mod_vcard.search import RdbmsDirectory
from suricate.modules.mod_vcard.store import VcardStore
from suricate.protocol.errors import StanzaError, error_reply
from suricate.protocol.rsm import rsm_page
from suricate.protocol.stanza import result_reply
from suricate.storage.base import StorageError
from suricate.xml import ns
from suricate.xml.element import Element
from suricate.xml.parser import XMLStreamError, parse_fragment

log = logging.getLogger("suricate.mod_vcard")

#: XEP-0153 §3: the presence extension carrying the avatar's hash.
VCARD_UPDATE = "vcard-temp:x:update"
#: A new avatar hash for the account's sessions on other nodes (docs/cluster.md "Casts").
PHOTO_CAST = "mod_vcard.photo"
#: XEP-0055: the user directory's namespace.
SEARCH = "jabber:iq:search"

# A vCard is profile data, not a file store: a photo belongs in a reasonably sized avatar.
MAX_VCARD_BYTES = 64 * 1024


def _post(out: dict[str, Any], raw: Mapping[str, Any], path: str, ctx: Context) -> None:
    if out["backend"] == "ldap":
        if "ldap" not in out:
            # 6.4 fails at start without ldap.base; here the configuration says so.
            section = LDAP_SECTION.normalize({}, join(path, "ldap"), ctx)
            if section is not INVALID:
                out["ldap"] = section
        return
    if "ldap" in out:
        ctx.warn(join(path, "ldap"), 'ignored: backend is not "ldap"')
        del out["ldap"]


class ModVcard(Module):
    name = "mod_vcard"
    graphql = GraphQLCategory("suricate.modules.mod_vcard.graphql")
    options = Section(
        {
            "iqdisc": iqdisc("parallel"),
            "backend": Option(
                OneOf(["rdbms", "ldap"],
                      [b for b in UNAVAILABLE_BACKENDS if b != "ldap"],
                      "backend '{value}' is not available in this version of Suricate"),
                "rdbms",
                "Where vCards are: stored through the RDBMS pool, or read from an LDAP "
                "directory (read-only, the `ldap` section).",
            ),
            "host": Option(
                Str(lower=True),
                "vjud.@HOST@",
                "Domain of the user directory (XEP-0055); @HOST@ is replaced by each served "
                "domain.",
            ),
            "search": Option(
                Bool(), True, "Whether the user directory (XEP-0055) is served."
            ),
            "matches": Option(
                IntOrInfinity(min=0),
                30,
                "Maximum number of users a directory search returns.",
            ),
            "ldap": Option(LDAP_SECTION, OMIT, LDAP_SECTION.doc,
                           default_doc='required with backend = "ldap" (for `base`)'),
        },
        doc="XEP-0054 vcard-temp and XEP-0055 Jabber Search.",
        post=_post,
    )
    xeps = ("0054", "0055")
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
        # The ldap backend's directory (None: the rdbms backend).
        self.pool: LdapPool | None = None
        self.directory: VcardDirectory | None = None
        # What the XEP-0055 search asks: the ldap directory, or the rdbms one.
        self.search_directory: VcardDirectory | RdbmsDirectory | None = None
        self._directory_down = False

    @classmethod
    def check_config(cls, opts: Mapping[str, Any], path: str, refs: References) -> None:
        ldap = opts.get("ldap")
        if opts.get("backend") == "ldap" and isinstance(ldap, Mapping):
            refs.pool_defined(f"{path}.ldap.pool_tag", "ldap", ldap.get("pool_tag"))

    async def start(self) -> None:
        if self.opts["backend"] == "ldap":
            ldap = self.opts["ldap"]
            tag = str(ldap["pool_tag"])
            self.pool = LdapPool(tag, self.server.cfg["outgoing_pools"]["ldap"][tag])
            self.directory = self.search_directory = VcardDirectory(self.pool, ldap)
        elif self.opts["search"]:
            self.search_directory = RdbmsDirectory(self.store)
            # vCards stored before the directory existed (mod_vcard's migration 2), off the
            # start-up path: the anti-join reads every vCard, which a big installation should
            # not wait for before it accepts connections (they are found once indexed).
            self.server.spawn(self._index_unindexed())
        if self.opts["search"]:
            self.serve_subdomains(self.opts["host"], self.route_directory)
        self.server.cluster.on(PHOTO_CAST, self._photo_changed_elsewhere)

    async def _index_unindexed(self) -> None:
        indexed = await self.store.index_unindexed()
        if indexed:
            log.info("vcard_search_indexed count=%d", indexed)

    async def stop(self) -> None:
        self.server.cluster.off(PHOTO_CAST)
        if self.pool is not None:
            self.pool.close()

    async def personal_data(self, jid: JID) -> list[PersonalData]:
        """What the account keeps here, for GDPR retrieval (``Module.personal_data``)."""
        server, user = jid.domain, jid.local or ""
        if self.directory is not None:
            # 6.4 lists the directory's vCard too: it is what this server shows of the user.
            try:
                vcard = await self.directory.vcard(user, server)
            except AuthUnavailable as exc:
                raise StorageError(f"mod_vcard: the LDAP directory: {exc}") from exc
            rows = [] if vcard is None else [(str(jid.bare), vcard.serialize())]
            return [PersonalData("vcard", ("jid", "vcard"), rows)]
        # MongooseIM 6.4's header: the account's JID, then its vCard.
        rows = await self.store.user_rows("vcards", ("vcard",), server, user, None)
        return [PersonalData("vcard", ("jid", "vcard"), [(str(jid.bare), r[0]) for r in rows])]

    async def account_vcard(self, iq: IqRequest) -> Element | None:
        if iq.payload.name != "vCard":
            raise StanzaError("bad-request")
        owner = iq.to.bare
        own = iq.frm.bare == owner
        if iq.type == "set":
            if not own:
                # XEP-0054 §3.2: only one's own vCard can be changed.
                raise StanzaError("forbidden")
            if self.directory is not None:
                # The directory is read-only here. 6.4's ldap backend refuses with
                # not-allowed, which its mod_vcard turns into this answer (any backend error
                # on a set becomes unexpected-request, type cancel): the same on the wire.
                raise StanzaError("unexpected-request", "vCards are read from the LDAP "
                                  "directory and cannot be changed here", "cancel")
            await self._store(iq)
            return None
        assert owner.local is not None
        if self.directory is not None:
            found = None
            if own or await self.server.user_exists(owner):
                found = await self._directory_vcard(owner)
            if found is not None:
                return found
        else:
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

    # -- the ldap backend ----------------------------------------------------------------------
    async def _directory_vcard(self, user: JID) -> Element | None:
        """The user's vCard from the directory (None: no entry). A directory that cannot
        answer is ``internal-server-error`` of type wait (RFC 6120 §8.3.2: retry later), not
        service-unavailable, which XEP-0054 §3.3 gives to "no such vCard": a client would
        take the outage for the user having none. Logged once until it answers again."""
        try:
            vcard = await self.get_vcard(user)
        except AuthUnavailable:
            raise StanzaError("internal-server-error", "the user directory cannot be "
                              "reached now", "wait") from None
        if user in self.photos:
            # XEP-0153 §4.1: an avatar changed in the directory is announced when seen.
            self._photo_changed(user, photo_hash(vcard) if vcard is not None else "")
        return vcard

    def _directory_failed(self, exc: Exception) -> None:
        if not self._directory_down:
            self._directory_down = True
            log.warning("vcard_ldap_unavailable error=%s", exc)

    def _directory_answered(self) -> None:
        if self._directory_down:
            self._directory_down = False
            log.info("vcard_ldap_available")

    # -- XEP-0055 user directory ------------------------------------------------------------------
    def route_directory(self, frm: JID, to: JID, stanza: Element) -> None:
        """Every stanza to vjud.<domain> (``Module.serve_subdomains``)."""
        if stanza.get("type") in ("error", "result") or stanza.name == "presence":
            # RFC 6120 §8.2.3: results and errors are never answered; the directory has no
            # presence to share and answers none (as the other services here).
            return
        self.server.spawn(self._directory_request(frm, to, stanza))

    async def _directory_request(self, frm: JID, to: JID, stanza: Element) -> None:
        try:
            payload = stanza.first_element()
            if stanza.name != "iq" or payload is None or to.local is not None \
                    or to.resource is not None:
                raise StanzaError("service-unavailable")
            reply = await self._directory_iq(to, stanza.get("type") or "", payload)
        except StanzaError as err:
            self.server.router.route(to, frm, error_reply(stanza, err))
            return
        self.server.router.route(to, frm, result_reply(stanza, frm, to, reply))

    async def _directory_iq(self, to: JID, type_: str, payload: Element) -> Element:
        key = (type_, payload.name, payload.xmlns)
        if key == ("get", "query", ns.DISCO_INFO):
            query = Element("query", ns.DISCO_INFO)
            query.add("identity", attrs={"category": "directory", "type": "user",
                                         "name": "vCard User Search"})
            for feature in (ns.DISCO_INFO, ns.DISCO_ITEMS, SEARCH, ns.VCARD):
                query.add("feature", attrs={"var": feature})
            # mod_disco's server_info entries for every module or naming mod_vcard: XEP-0157
            # on the directory too, as 6.4 answers it.
            disco = self.server.modules.get("mod_disco")
            if disco is not None:
                form = server_info_form(disco.opts.get("server_info", []), self.name)
                if form is not None:
                    query.append(form)
            return query
        if key == ("get", "query", ns.DISCO_ITEMS):
            return Element("query", ns.DISCO_ITEMS)
        if key == ("get", "vCard", ns.VCARD):
            vcard = Element("vCard", ns.VCARD)
            vcard.add("FN", text="vCard User Search")
            vcard.add("DESC", text=f"{SERVER_NAME} user directory (XEP-0055)")
            return vcard
        if key == ("get", "query", SEARCH):
            return self._search_form()
        if key == ("set", "query", SEARCH):
            return await self._search(to, payload)
        raise StanzaError("service-unavailable")

    def _search_form(self) -> Element:
        """XEP-0055 §3.1 with a data form (XEP-0004): one text field per search field,
        its ``var`` the attribute searched (6.4's form)."""
        assert self.search_directory is not None
        query = Element("query", SEARCH)
        query.add("instructions", text="Fill in one or more fields to search for users.")
        form = query.add("x", ns.DATA_FORMS, {"type": "form"})
        form.add("title", text="Search users")
        form.add("instructions", text="Fill in one or more fields to search for users.")
        hidden = form.add("field", attrs={"type": "hidden", "var": "FORM_TYPE"})
        hidden.add("value", text=SEARCH)
        for label, attribute in self.search_directory.search_fields:
            form.add("field", attrs={"type": "text-single", "label": label, "var": attribute})
        return query

    async def _search(self, to: JID, query: Element) -> Element:
        """XEP-0055 §3.2: the users matching the submitted form, as a result form whose
        columns are the directory's reported fields, each item with the user's JID."""
        directory = self.search_directory
        assert directory is not None
        form = query.find("x", ns.DATA_FORMS)
        if form is None or form.get("type") != "submit":
            # Only the data form is supported (§3 extensibility), as in 6.4.
            raise StanzaError("bad-request", "submit the search data form (XEP-0004)")
        searchable = {attribute for _, attribute in directory.search_fields}
        criteria = []
        for field in form.children:
            if not isinstance(field, Element) or field.name != "field":
                continue
            var = field.get("var") or ""
            if var in searchable:  # never an attribute the operator did not offer
                criteria.append((var, (field.find_text("value", ns.DATA_FORMS) or "").strip()))
        domain = self._served_domain(to.domain)
        limit = self.opts["matches"]
        try:
            found = await directory.search(domain, criteria, limit)
        except (AuthUnavailable, StorageError) as exc:
            if isinstance(exc, AuthUnavailable):
                self._directory_failed(exc)
            else:
                log.warning("vcard_search_failed error=%s", exc)
            # RFC 6120 §8.3.3.5, type wait: the same search may work later.
            raise StanzaError("internal-server-error", "the user directory cannot be "
                              "reached now", "wait") from None
        self._directory_answered()
        result = Element("query", SEARCH)
        out = result.add("x", ns.DATA_FORMS, {"type": "result"})
        out.add("title", text=f"Search Results for {to}")
        hidden = out.add("field", attrs={"type": "hidden", "var": "FORM_TYPE"})
        hidden.add("value", text=SEARCH)
        reported = out.add("reported")
        reported.add("field", attrs={"type": "jid-single", "label": "Jabber ID", "var": "jid"})
        for label, vcard_field in directory.reported:
            reported.add("field", attrs={"type": "text-single", "label": label,
                                         "var": vcard_field})
        items: list[tuple[str, Element]] = []
        for item in found:
            try:
                jid = JID.parse(f"{item.username}@{domain}")
            except ValueError:
                continue  # not a username here (JID preparation refuses it)
            if not await self.server.user_exists(jid):
                continue  # 6.4: only users that have an account
            element = Element("item", ns.DATA_FORMS)
            element.add("field", attrs={"var": "jid"}).add("value", text=str(jid))
            for var, value in item.fields:
                element.add("field", attrs={"var": var}).add("value", text=value)
            items.append((str(jid), element))
        rsm = query.find("set", ns.RSM)
        start, end = 0, len(items)
        if rsm is not None:
            # XEP-0059 over the (at most ``matches``) users found, in JID order, as 6.4.
            items.sort(key=lambda pair: pair[0])
            start, end, answer = rsm_page([jid for jid, _ in items], rsm)
        for _, element in items[start:end]:
            out.append(element)
        if rsm is not None:
            result.append(answer)
        return result

    def _served_domain(self, service: str) -> str:
        """The domain a directory service belongs to (vjud.example.com -> example.com)."""
        pattern = str(self.opts["host"])
        for host in self.server.domains.served:
            if pattern.replace("@HOST@", host) == service:
                return host
        raise StanzaError("service-unavailable")

    # -- XEP-0153 avatars --------------------------------------------------------------------
    async def get_vcard(self, user: JID) -> Element | None:
        """The account's vCard, None without one; with the ldap backend, from the directory
        (``AuthUnavailable`` when it cannot answer, logged once)."""
        assert user.local is not None
        if self.directory is not None:
            try:
                vcard = await self.directory.vcard(user.local, user.domain)
            except AuthUnavailable as exc:
                self._directory_failed(exc)
                raise
            self._directory_answered()
            return vcard
        stored = await self.store.get_vcard(user.domain, user.local)
        return _parse_stored(stored) if stored else None

    async def set_photo(self, user: JID, mime: str | None, data: bytes | None) -> None:
        """Put ``data`` as the PHOTO of the account's vCard (None: remove it), keeping the rest
        (XEP-0398 §3: the PEP avatar becomes the vCard avatar). Does not run VCARD_STORED:
        the change came from PEP, which is already up to date. Nothing with the ldap
        backend: the directory's photo stays the vCard's."""
        assert user.local is not None
        if self.directory is not None:
            log.debug("vcard_ldap_photo_not_changed user=%s", user)
            return
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
        does it for the account's available sessions, with the new hash stamped: this
        node's, and the other nodes' for theirs (a cast: each keeps its own ``photos``)."""
        self.server.cluster.cast(user, PHOTO_CAST, Element("photo", VCARD_UPDATE), digest)
        self._photo_changed_here(user, digest)

    def _photo_changed_elsewhere(self, bare: JID, stanza: Element,
                                 args: tuple[str, ...]) -> None:
        self._photo_changed_here(bare, args[0])

    def _photo_changed_here(self, user: JID, digest: str) -> None:
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
            try:
                vcard = await self.get_vcard(user)
            except AuthUnavailable:
                # The directory cannot say now: the hash the client sends stays untouched.
                return acc
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

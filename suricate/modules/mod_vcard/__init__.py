"""mod_vcard: XEP-0054 vcard-temp: every account may publish one vCard, which anyone can read.

The XEP-0055 user directory (``host``, ``search``, ``matches``) is not served yet: the options
are accepted so that MongooseIM configurations load unchanged.
"""

from __future__ import annotations

from suricate.config.modules_spec import backend, iqdisc
from suricate.config.spec import Bool, IntOrInfinity, Option, Section, Str
from suricate.core.iq import IqRequest
from suricate.core.module import GraphQLCategory, Module, PersonalData
from suricate.jid import JID
from suricate.modules.mod_disco import SERVER_NAME
from suricate.modules.mod_vcard.store import VcardStore
from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element
from suricate.xml.parser import XMLStreamError, parse_fragment

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
        user = iq.to.bare
        assert user.local is not None
        # §3.2: the set replaces the whole vCard (there are no partial updates).
        await self.store.set_vcard(user.domain, user.local, xml)

    def server_vcard(self, iq: IqRequest) -> Element:
        """The server's own vCard (XEP-0054 §3.3 note: a server may have one)."""
        if iq.type != "get":
            raise StanzaError("not-allowed")
        vcard = Element("vCard", ns.VCARD)
        vcard.add("FN", text=SERVER_NAME)
        vcard.add("DESC", text="XMPP server")
        return vcard


def _parse_stored(xml: str) -> Element:
    try:
        elements = parse_fragment(xml)
    except XMLStreamError:
        elements = []
    if len(elements) != 1:
        raise StanzaError("internal-server-error", "stored vCard is unreadable")
    return elements[0]

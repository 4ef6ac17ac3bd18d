"""mod_private: XEP-0049 Private XML Storage: an account keeps XML fragments on its server,
one slot per namespace, readable and writable by the account alone.
"""

from __future__ import annotations

from suricate.config.modules_spec import backend, iqdisc
from suricate.config.spec import Section
from suricate.core import hooks as H
from suricate.core.iq import IqRequest
from suricate.core.module import GraphQLCategory, Module, PersonalData
from suricate.jid import JID
from suricate.modules.mod_private.store import PrivateStore
from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element
from suricate.xml.parser import XMLStreamError, parse_fragment

# A child with no namespace of its own inherits jabber:iq:private (or jabber:client): it has
# no slot to be stored in (XEP-0049 §2.3: "a proper namespace"). The stream namespaces are
# reserved too (§2.3, §3 "Not Acceptable"): jabber:server and jabber:component:accept are as
# much the protocol's own as jabber:client, and a client spelling one out gets the same answer.
_NOT_A_SLOT = frozenset({ns.PRIVATE, ns.CLIENT, ns.SERVER, ns.COMPONENT, ""})


class ModPrivate(Module):
    name = "mod_private"
    graphql = GraphQLCategory("suricate.modules.mod_private.graphql")
    options = Section({"iqdisc": iqdisc("one_queue"), "backend": backend()},
                      doc="XEP-0049 Private XML Storage.")
    store_class = PrivateStore
    store: PrivateStore
    xeps = ("0049",)
    iq_handlers = (("sm", ns.PRIVATE, "private"),)
    sm_features = (ns.PRIVATE,)
    # On the server's own disco#info too, as Prosody 0.12's mod_private: poezio 0.14 looks
    # for remote bookmark storage (XEP-0048 in private XML, or PEP) in the domain's features
    # only, and without it never reads nor saves its bookmarks on the server.
    features = (ns.PRIVATE,)

    async def personal_data(self, jid: JID) -> list[PersonalData]:
        """What the account keeps here, for GDPR retrieval (``Module.personal_data``), with
        MongooseIM 6.4's header."""
        server, user = jid.domain, jid.local or ""
        return [
            PersonalData("private", ("ns", "xml"), await self.store.user_rows(
                "private_storage", ("namespace", "data"), server, user, "namespace")),
        ]

    async def private(self, iq: IqRequest) -> Element | None:
        user = iq.to.bare
        # XEP-0049 §2.3 and §4: only the account itself reads or writes its private XML.
        if iq.frm.bare != user:
            raise StanzaError("forbidden")
        assert user.local is not None
        query = iq.payload
        if query.name != "query":
            raise StanzaError("bad-request")
        children = query.find_all()
        # §2.3: at least one child element in its own namespace, else not-acceptable.
        if not children or any(c.xmlns in _NOT_A_SLOT for c in children):
            raise StanzaError("not-acceptable", "one child element in its own namespace "
                                                "is required")
        if iq.type == "set":
            await self._store(user.domain, user.local, children)
            return None
        return await self._retrieve(user.domain, user.local, children)

    async def _store(self, domain: str, local: str, children: list[Element]) -> None:
        # §2.3: a set may hold several elements of one namespace; they share its slot.
        by_ns: dict[str, list[Element]] = {}
        for child in children:
            by_ns.setdefault(child.xmlns, []).append(child)
        for namespace, elements in by_ns.items():
            xml = "".join(e.serialize() for e in elements)
            await self.store.set_private(domain, local, namespace, xml)
            await self.server.hooks.fold_async(H.PRIVATE_STORED, None, JID(local, domain),
                                               namespace, elements)

    async def _retrieve(self, domain: str, local: str, children: list[Element]) -> Element:
        result = Element("query", ns.PRIVATE)
        seen: set[str] = set()
        for child in children:
            if child.xmlns in seen:
                continue
            seen.add(child.xmlns)
            stored = await self.store.get_private(domain, local, child.xmlns)
            elements = _parse_stored(stored) if stored else []
            if elements:
                for element in elements:
                    result.append(element)
            else:
                # Nothing stored: the requested element comes back empty (XEP-0049 §2.3
                # examples), so the client can tell "empty" from an error.
                result.append(Element(child.name, child.xmlns))
        return result


def _parse_stored(xml: str) -> list[Element]:
    try:
        return parse_fragment(xml)
    except XMLStreamError:
        raise StanzaError("internal-server-error", "stored data is unreadable") from None

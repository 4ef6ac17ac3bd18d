"""mod_disco: XEP-0030 Service Discovery for the served domains and, on their behalf, for the
accounts they host; XEP-0128 extended information carrying the XEP-0157 contact addresses.

The module only answers the queries: what the server can do is gathered from the other modules
through the ``disco_*`` hooks (each module declares its features as class data).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from suricate.config.modules_spec import iqdisc
from suricate.config.spec import Bool, ListOf, Option, Section, Str
from suricate.core import hooks as H
from suricate.core.iq import IqRequest
from suricate.core.module import Module
from suricate.instrument.events import SPIRAL, declare
from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element

SERVER_NAME = "Suricate"


MOD_DISCO_ROSTER_GET = declare(
    "mod_disco_roster_get", ("host_type",), {"count": SPIRAL},
    "Disco#info and disco#items gets to an account (6.4 reads the asker's roster for each); "
    "labelled with the asker's host type (the account's for a remote asker)")


def server_info_form(entries: Sequence[Mapping[str, Any]], module: str) -> Element | None:
    """The XEP-0157 form (XEP-0128 extension of disco#info) for the disco#info answered by
    ``module``: an entry without ``modules`` applies to every module (MongooseIM 6.4
    ``server_info``)."""
    fields = [e for e in entries if e.get("modules") is None or module in e["modules"]]
    if not fields:
        return None
    form = Element("x", ns.DATA_FORMS, {"type": "result"})
    # XEP-0128 §3: the form is scoped by a hidden FORM_TYPE field.
    form.add("field", attrs={"var": "FORM_TYPE", "type": "hidden"}).add(
        "value", text=ns.SERVERINFO)
    # XEP-0004 §3.2: a field's var is unique in its form. Two entries of one name (one for
    # every module, one for mod_muc only, say) make one field holding the addresses of both,
    # in order and each once: a repeated field would also break XEP-0115 hashing (§5.4).
    urls: dict[str, list[str]] = {}
    for entry in fields:
        listed = urls.setdefault(entry["name"], [])
        listed.extend(url for url in entry["urls"] if url not in listed)
    for name, values in urls.items():
        # XEP-0157 §5.1 registers the address fields as list-multi.
        field = form.add("field", attrs={"var": name, "type": "list-multi"})
        for url in values:
            field.add("value", text=url)
    return form


class ModDisco(Module):
    name = "mod_disco"
    options = Section(
        {
            "iqdisc": iqdisc("one_queue"),
            "extra_domains": Option(
                ListOf(Str(lower=True), unique=True), [], "Extra domains listed in disco#items."
            ),
            "server_info": Option(
                ListOf(
                    Section(
                        {
                            "name": Option(Str(), doc="Form field name (e.g. abuse-addresses)."),
                            "urls": Option(ListOf(Str()), doc="Addresses listed for this field."),
                            "modules": Option(
                                ListOf(Str()),
                                None,
                                "The modules whose disco#info carries this field: mod_disco "
                                "(the domain's), mod_muc (its service's), mod_vcard (its "
                                "user directory's); every one of them when omitted.",
                            ),
                        }
                    )
                ),
                [],
                "XEP-0157 contact addresses added to the server's disco#info.",
            ),
            "users_can_see_hidden_services": Option(
                Bool(),
                True,
                "Whether users see the components of a listener with hidden_components in the "
                "server's disco#items; false leaves them out for every JID with a user part "
                "(servers and components still see them).",
            ),
        },
        doc="XEP-0030 Service Discovery.",
    )
    xeps = ("0030", "0128", "0157")
    iq_handlers = (
        ("local", ns.DISCO_INFO, "local_info"),
        ("local", ns.DISCO_ITEMS, "local_items"),
        ("sm", ns.DISCO_INFO, "account_info"),
        ("sm", ns.DISCO_ITEMS, "account_items"),
    )
    # XEP-0030 §3.1: every entity that answers disco#info lists the disco namespaces it speaks.
    features = (ns.DISCO_INFO, ns.DISCO_ITEMS)
    sm_features = (ns.DISCO_INFO, ns.DISCO_ITEMS)

    # -- the served domain ------------------------------------------------------------------
    def local_info(self, iq: IqRequest) -> Element:
        query = _query(iq, ns.DISCO_INFO)
        domain = iq.to.domain
        node = iq.payload.attrs.get("node")
        if node and _node_info(self, iq, query, node):
            return query
        if node and not self.server.hooks.fold(H.DISCO_LOCAL_NODE, False, domain, node):
            # No other node of the server carries information (XEP-0030 §3.1: unknown node).
            raise StanzaError("item-not-found")
        query.add("identity", attrs={"category": "server", "type": "im", "name": SERVER_NAME})
        for identity in self.server.hooks.fold(H.DISCO_LOCAL_IDENTITY, [], domain):
            query.append(identity)
        features: set[str] = self.server.hooks.fold(H.DISCO_LOCAL_FEATURES, set(), domain)
        for var in sorted(features):
            query.add("feature", attrs={"var": var})
        extra: list[Element] = []
        form = server_info_form(self.opts.get("server_info", []), self.name)
        if form is not None:
            extra.append(form)
        extra = self.server.hooks.fold(H.DISCO_INFO_EXTRA, extra, domain)
        for element in extra:
            query.append(element)
        return query

    def local_items(self, iq: IqRequest) -> Element:
        query = _query(iq, ns.DISCO_ITEMS)
        if iq.payload.attrs.get("node"):
            return _node_items(self, iq, query)
        # MongooseIM's extra_domains are listed as they are, unverified.
        items = [Element("item", ns.DISCO_ITEMS, {"jid": d})
                 for d in self.opts.get("extra_domains", [])]
        items = self.server.hooks.fold(H.DISCO_LOCAL_ITEMS, items, iq.to.domain)
        if iq.frm.local is not None and not self.opts["users_can_see_hidden_services"]:
            # MongooseIM 6.4: hidden components are left out for users (a JID with a user
            # part) only; servers and components get every item.
            components = self.server.components
            items = [i for i in items if not components.hidden(i.attrs.get("jid", ""))]
        for item in items:
            query.append(item)
        return query

    # -- an account, answered by the server on its behalf (RFC 6120 §10.3.3) ----------------
    async def account_info(self, iq: IqRequest) -> Element:
        await self._require_account(iq)
        query = _query(iq, ns.DISCO_INFO)
        node = iq.payload.attrs.get("node")
        if node:
            if _node_info(self, iq, query, node):
                return query
            # A node kept in storage (a PEP node, XEP-0060 §5.3) is read without blocking:
            # disco_node_info is a sync fold, this one may await the database.
            info, failed = await self.server.hooks.fold_async_checked(
                H.DISCO_SM_NODE_INFO, None, iq.frm, iq.to.bare, node)
            if info is None:
                # RFC 6120 §8.3.3.8 when a handler failed rather than "no such node".
                raise StanzaError("internal-server-error" if failed else "item-not-found")
            for element in info:
                query.append(element)
            return query
        # XEP-0030 §3.1 and the registry: a registered account is account/registered.
        query.add("identity", attrs={"category": "account", "type": "registered"})
        for identity in self.server.hooks.fold(H.DISCO_SM_IDENTITY, [], iq.to.bare):
            query.append(identity)
        features: set[str] = self.server.hooks.fold(H.DISCO_SM_FEATURES, set(), iq.to.bare)
        for var in sorted(features):
            query.add("feature", attrs={"var": var})
        return query

    async def account_items(self, iq: IqRequest) -> Element:
        await self._require_account(iq)
        query = _query(iq, ns.DISCO_ITEMS)
        node = iq.payload.attrs.get("node")
        if node:
            found = self.server.hooks.fold(H.DISCO_NODE_ITEMS, None, iq.frm, iq.to, node)
            failed = False
            if found is None:
                # A node kept in storage (a PEP node, XEP-0060 §5.5), read without blocking.
                found, failed = await self.server.hooks.fold_async_checked(
                    H.DISCO_SM_NODE_ITEMS, None, iq.frm, iq.to.bare, node)
            if found is None:
                raise StanzaError("internal-server-error" if failed else "item-not-found")
            for item in found:
                query.append(item)
            return query
        items = await self.server.hooks.fold_async(H.DISCO_SM_ITEMS, [], iq.frm, iq.to.bare)
        for item in items:
            query.append(item)
        return query

    async def _require_account(self, iq: IqRequest) -> None:
        if iq.type != "get":
            raise StanzaError("not-allowed")
        instrument = self.server.instrument
        if instrument.enabled:
            # 6.4 reads the asker's roster for each disco get to an account (to answer
            # subscribers only) and counts it as mod_disco_roster_get, under the asker's host
            # type. Suricate answers without the roster; the count is of the same requests.
            asker = iq.frm.domain if self.server.is_local_domain(iq.frm.domain) \
                else iq.to.domain
            instrument.emit(MOD_DISCO_ROSTER_GET, {"host_type": asker}, {"count": 1})
        # RFC 6121 §8.5.1: an IQ to an account that does not exist gets service-unavailable,
        # the same answer as an unsupported namespace, so nothing leaks about the account.
        if not await self.server.user_exists(iq.to.bare):
            raise StanzaError("service-unavailable")


def _node_info(module: Module, iq: IqRequest, query: Element, node: str) -> bool:
    """Fill ``query`` with what a module says of ``node`` (DISCO_NODE_INFO); False when no
    module knows it."""
    info = module.server.hooks.fold(H.DISCO_NODE_INFO, None, iq.frm, iq.to, node)
    if info is None:
        return False
    for element in info:
        query.append(element)
    return True


def _node_items(module: Module, iq: IqRequest, query: Element) -> Element:
    items = module.server.hooks.fold(H.DISCO_NODE_ITEMS, None, iq.frm, iq.to,
                                     iq.payload.attrs["node"])
    if items is None:
        raise StanzaError("item-not-found")  # XEP-0030 §4.1: a node nobody has
    for item in items:
        query.append(item)
    return query


def _query(iq: IqRequest, xmlns: str) -> Element:
    if iq.type != "get":
        # Discovery is read-only: there is nothing to set (XEP-0030 defines only "get").
        raise StanzaError("not-allowed")
    query = Element("query", xmlns)
    node = iq.payload.attrs.get("node")
    if node:
        query.attrs["node"] = node  # XEP-0030 §3.1: the answer echoes the node
    return query

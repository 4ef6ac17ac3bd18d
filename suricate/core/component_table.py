"""The table of services by domain that are not accounts' domains: connected external
components (XEP-0114) and the service domains modules serve inside the server
(`conference.@HOST@`, `pubsub.@HOST@`, `upload.@HOST@`). The router asks it before federation.
Apart from ``suricate.core.component`` (the stream handler) so that a server without component
listeners does not import the stream machinery at start-up.

A module's service is routed exactly like a component: one table, one lookup on the routing
path, and both are listed in the parent domain's disco#items (XEP-0030 §4.2), which is how
clients find the MUC, PubSub and upload services.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from suricate.core import hooks as H
from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.core.component import Component
    from suricate.core.server import Server
    from suricate.jid import JID


#: A module's handler of every stanza addressed to its service domain: (from, to, stanza).
ServiceHandler = Callable[["JID", "JID", Element], None]


class LocalService:
    """A service domain served by a module in this process; quacks like a component."""

    __slots__ = ("domains", "handler", "parent")

    #: No listener options: no access rule, listed in disco#items.
    opts: Mapping[str, Any] = {}

    def __init__(self, domain: str, handler: ServiceHandler, parent: str | None = None) -> None:
        self.domains = (domain,)
        self.handler = handler
        #: The served domain this service belongs to (``conference.@HOST@`` made for
        #: ``HOST``), None for a fixed domain.
        self.parent = parent

    def deliver(self, frm: JID, stanza: Element) -> None:
        from suricate.jid import JID

        self.handler(frm, JID.parse(stanza.attrs["to"]), stanza)

    def kicked(self) -> None:
        """A service is never replaced by a component (``serve`` refuses the domain)."""


class ComponentTable:
    """Components and module services by domain; the router asks it before federation."""

    __slots__ = ("server", "_by_domain")

    def __init__(self, server: Server) -> None:
        self.server = server
        self._by_domain: dict[str, Component] = {}
        server.hooks.add(H.DISCO_LOCAL_ITEMS, self._disco_items)

    def lookup(self, domain: str) -> Component | None:
        return self._by_domain.get(domain)

    def parent_domain(self, domain: str) -> str | None:
        """The served domain a module's service domain was made for (``conference.a.test``:
        ``a.test``); None for a component, a fixed service domain or an unknown domain."""
        service = self._by_domain.get(domain)
        return service.parent if isinstance(service, LocalService) else None

    def register(self, component: Component) -> str | None:
        """Add ``component`` for its domains; return a domain already taken (refused)."""
        behaviour = component.opts.get("conflict_behaviour") or "disconnect"
        taken = [(domain, old) for domain in component.domains
                 if (old := self._by_domain.get(domain)) is not None and old is not component]
        for domain, old in taken:
            # kick_old replaces a component, never a module's service of this server
            # (conference.@HOST@...): that domain would be served by nothing once the
            # component left. Checked for every domain first, so that a refused
            # is_subdomain component kicks nobody.
            if behaviour != "kick_old" or isinstance(old, LocalService):
                return domain
        # MongooseIM conflict_behaviour = "kick_old": the newcomer wins (each old one once).
        for old in {id(old): old for _, old in taken}.values():
            self.unregister(old)
            old.kicked()
        for domain in component.domains:
            self._by_domain[domain] = component
        return None

    def unregister(self, component: Component) -> None:
        for domain in component.domains:
            if self._by_domain.get(domain) is component:
                del self._by_domain[domain]

    def serve(self, domain: str, handler: ServiceHandler,
              parent: str | None = None) -> LocalService:
        """Serve ``domain`` with a module's ``handler`` until ``unserve``; ``parent``: the
        served domain it was made for. A domain a component or another module already
        serves is our configuration's bug: refused loudly."""
        service = LocalService(domain.lower(), handler, parent)
        taken = self.register(service)  # type: ignore[arg-type]
        if taken is not None:
            raise RuntimeError(f"service domain {taken} is already served")
        return service

    def unserve(self, service: LocalService) -> None:
        self.unregister(service)  # type: ignore[arg-type]

    def route(self, frm: JID, to: JID, stanza: Element) -> bool:
        """Deliver to the component serving ``to``'s domain; False when there is none."""
        component = self._by_domain.get(to.domain)
        if component is None:
            return False
        hooks = self.server.hooks
        if hooks.has(H.FILTER_LOCAL_ROUTE):
            filtered = hooks.fold(H.FILTER_LOCAL_ROUTE, stanza, frm, to)
            if filtered is None:
                return True  # taken: dropped (or answered) by the filter
            stanza = filtered
        access = component.opts.get("access") or "all"
        if not self.server.access.allows(access, frm.local, frm.domain, frm.resource,
                                         frm.domain):
            # listen.component.access decides who may send to the components.
            self.server.router.bounce(stanza, StanzaError("forbidden"))
            return True
        component.deliver(frm, stanza)
        return True

    def __iter__(self) -> Iterator[Component]:
        return iter(set(self._by_domain.values()))

    def hidden(self, domain: str) -> bool:
        """A component connected to a listener with ``hidden_components``: mod_disco decides
        who is shown it (``users_can_see_hidden_services``)."""
        component = self._by_domain.get(domain)
        return component is not None and bool(component.opts.get("hidden_components"))

    def _disco_items(self, items: list[Element], domain: str) -> list[Element]:
        # Components under the queried domain, the hidden ones too (mod_disco leaves those
        # out for the users who may not see them, as MongooseIM 6.4 does).
        known = {i.attrs.get("jid") for i in items}
        for name in sorted(self._by_domain):
            if name.endswith("." + domain) and name not in known:
                items.append(Element("item", ns.DISCO_ITEMS, {"jid": name}))
                known.add(name)
        return items

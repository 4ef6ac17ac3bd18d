"""Service subdomains served inside the server by a module (MongooseIM's ``pubsub.@HOST@``,
``conference.@HOST@``): the router asks this table after the local domains and before the
external components (XEP-0114), so a module "owns" a domain with one ``register`` call and gets
every stanza addressed to it, whatever the JID's local part and resource.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from suricate.jid import JID
    from suricate.xml.element import Element

#: route(frm, to, stanza): the stanza's from/to attributes are already set.
ServiceHandler = Callable[["JID", "JID", "Element"], None]


class ServiceDomains:
    __slots__ = ("_by_domain",)

    def __init__(self) -> None:
        self._by_domain: dict[str, ServiceHandler] = {}

    def register(self, domain: str, handler: ServiceHandler) -> None:
        if domain in self._by_domain:
            raise ValueError(f"service domain {domain} is already served by another module")
        self._by_domain[domain] = handler

    def unregister(self, domain: str) -> None:
        self._by_domain.pop(domain, None)

    def lookup(self, domain: str) -> ServiceHandler | None:
        return self._by_domain.get(domain)

    def route(self, frm: JID, to: JID, stanza: Element) -> bool:
        """Hand the stanza to the module serving ``to``'s domain; False when none does."""
        handler = self._by_domain.get(to.domain)
        if handler is None:
            return False
        handler(frm, to, stanza)
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._by_domain))

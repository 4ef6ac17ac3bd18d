"""mod_domain_isolation: the users of one served domain cannot reach those of another (hosting
several tenants, static or dynamic domains, on one server).

Behaviour of MongooseIM 6.4's module of the same name (it has no options):

- every stanza (message, presence, IQ) the router is about to hand to a local destination (an
  account, a served domain, a module's service such as ``conference.<domain>``, a connected
  component) is refused when the sender's domain and the destination's domain differ;
- a module's service domain made from a ``@HOST@`` pattern counts as its parent domain, so
  ``alice@a.test`` still joins rooms of ``conference.a.test`` but not of ``conference.b.test``;
  a fixed service domain and a component's domain count as themselves;
- the sender gets a service-unavailable error (RFC 6120 §8.3.3.19), except for an error
  or a result, which is dropped without answer (§8.3.1: never answer an error); the errors
  the server itself routes back to a sender (``Router.bounce``: a stanza that went
  nowhere) pass, so that nothing the sender sent is silently lost;
- the check is on delivery, as in MongooseIM: stanzas that leave over s2s are not looked at,
  while stanzas arriving from another server for a local user are refused like any other
  domain's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from suricate.config.spec import Section
from suricate.core import hooks as H
from suricate.core.module import Module
from suricate.jid import JID
from suricate.protocol.errors import StanzaError, error_reply
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.core.server import Server

REFUSED_TEXT = "Stanzas between different domains are not allowed on this server"


class ModDomainIsolation(Module):
    name = "mod_domain_isolation"
    options = Section(
        {},
        doc="Refuses stanzas between users of different served domains (a module's "
            "subdomains count as their domain); the sender gets service-unavailable.",
    )
    # Early (MongooseIM: 10) so that nothing else acts on a stanza that goes nowhere.
    hooks = ((H.FILTER_LOCAL_ROUTE, "isolate", 10),)

    def __init__(self, server: Server, opts: Mapping[str, Any]) -> None:
        super().__init__(server, opts)
        # The error this module is routing back right now: it crosses domains too, and must
        # get through (routing is synchronous up to this filter, so one slot is enough).
        self._answering: Element | None = None

    def tenant(self, domain: str) -> str:
        """The served domain ``domain`` belongs to: a module's ``@HOST@`` service domain
        belongs to its host, anything else to itself."""
        return self.server.components.parent_domain(domain) or domain

    def isolate(self, stanza: Element | None, frm: JID, to: JID) -> Element | None:
        if stanza is None or stanza is self._answering or stanza is self.server.router.bouncing:
            # Our own error, or the server's answer to a stanza of the recipient's that went
            # nowhere (its domain disabled, no route...): the sender must learn it.
            return stanza
        if frm.domain == to.domain or self.tenant(frm.domain) == self.tenant(to.domain):
            return stanza
        if stanza.attrs.get("type") not in ("error", "result") and stanza.attrs.get("from"):
            reply = error_reply(stanza, StanzaError("service-unavailable", REFUSED_TEXT))
            self._answering = reply
            try:
                self.server.router.route(to, frm, reply)
            finally:
                self._answering = None
        return None

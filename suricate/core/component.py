"""External components (XEP-0114): the stream handler (the table of connected components is in
``suricate.core.component_table``, imported by every server; this module only with a listener).

A component authenticates with the handshake (SHA-1 of the stream id and the listener's
``password``), then sends and receives stanzas for its domain. MongooseIM's extension
``is_subdomain='true'`` in the stream header registers ``<name>.<host>`` for every served host.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from suricate.core.component_table import ComponentTable
from suricate.core.stream import XmppStream
from suricate.jid import JID, InvalidJID
from suricate.protocol import component as P
from suricate.protocol.component import ComponentState as S
from suricate.protocol.errors import StanzaError, StreamError, error_reply
from suricate.protocol.fsm import StateMachine
from suricate.protocol.stanza import STANZA_NAMES, to_internal
from suricate.xml import ns
from suricate.xml.element import Element
from suricate.xml.parser import StreamOpen

if TYPE_CHECKING:
    from suricate.core.server import Server
    from suricate.net.connection import Connection

__all__ = ["Component", "ComponentTable"]

log = logging.getLogger("suricate.component")


class Component(XmppStream):
    """One component connection (MongooseIM: mongoose_component_connection)."""

    connection_type = "component"
    content_ns = ns.COMPONENT

    def __init__(self, server: Server, conn: Connection, opts: Mapping[str, Any]) -> None:
        super().__init__(server, conn, StateMachine(P.TRANSITIONS, S.CONNECT), P.TIMED_STATES,
                         S.CLOSED, opts.get("max_stanza_size"), opts.get("state_timeout", 5000))
        self.opts = opts
        self.domain = ""
        self.domains: tuple[str, ...] = ()
        self.registered = False
        self.goto(S.WAIT_FOR_STREAM)

    @property
    def host_type(self) -> str:
        # The host_type label of its xmpp_element_* series: a component belongs to no host
        # type of ours, so it is empty, as in 6.4 (mongoose_instrument_xmpp).
        return ""

    def opening_header(self) -> bytes:
        return P.stream_header(self.stream_id, self.domain or self.server.default_domain)

    # -- negotiation ------------------------------------------------------------------------
    def handle_stream_open(self, header: StreamOpen) -> None:
        if self.state != S.WAIT_FOR_STREAM:
            raise StreamError("not-well-formed")
        to = header.attrs.get("to", "")
        try:
            domain = JID.parse(to).domain if to else ""
        except (InvalidJID, ValueError):
            domain = ""
        self.domain = domain
        if header.name != "stream" or header.xmlns != ns.STREAM \
                or header.content_ns != ns.COMPONENT:
            raise StreamError("invalid-namespace")
        if not domain:
            # XEP-0114 §3: the component names its domain in 'to'; without one there is
            # nothing to serve (RFC 6120 §4.9.3.6, MongooseIM 6.4 answers the same).
            raise StreamError("host-unknown", "no domain in 'to'")
        if header.attrs.get("is_subdomain") == "true":
            self.domains = tuple(f"{domain}.{host}" for host in sorted(self.server.hosts))
        else:
            self.domains = (domain,)
        if any(self.server.is_local_domain(d) for d in self.domains):
            raise StreamError("host-unknown", "a served domain cannot be a component")
        self.stream_id = secrets.token_hex(8)
        self.conn.write(self.opening_header())
        self.goto(S.WAIT_FOR_HANDSHAKE)

    def handle_element(self, el: Element) -> None:
        if self.state == S.WAIT_FOR_HANDSHAKE:
            self._handshake(el)
        elif self.state == S.STREAM_ESTABLISHED:
            self._stanza(el)

    def _handshake(self, el: Element) -> None:
        if el.name != "handshake" or el.xmlns != ns.COMPONENT:
            raise StreamError("not-authorized", "handshake expected")
        if not P.handshake_matches(el.text, self.stream_id, self.opts.get("password") or ""):
            self.server.instrument.auth_failed("component", self.host_type)
            log.info("component_auth_failed connection_type=component domain=%s peer=%s",
                     self.domain, self.conn.peer)
            raise StreamError("not-authorized")
        conflict = self.server.components.register(self)
        if conflict is not None:
            # listen.component.conflict_behaviour = "disconnect" (the default)
            raise StreamError("conflict", f"{conflict} is already connected")
        self.registered = True
        self.send_element(Element("handshake", ns.COMPONENT))
        self.goto(S.STREAM_ESTABLISHED)
        log.info("component_connected connection_type=component domains=%s peer=%s tls=%s",
                 ",".join(self.domains), self.conn.peer, self.conn.tls is not None)

    def _stanza(self, el: Element) -> None:
        if el.name not in STANZA_NAMES or el.xmlns not in (ns.COMPONENT, ns.CLIENT):
            raise StreamError("unsupported-stanza-type")
        frm_attr, to_attr = el.attrs.get("from"), el.attrs.get("to")
        if not frm_attr or not to_attr:
            # XEP-0114 §3: a component's stanzas carry both addresses. As MongooseIM 6.4
            # (and Prosody) do, the stanza is answered with bad-request and the stream stays:
            # one faulty stanza must not cut all of a gateway's users off.
            to_internal(el, el.xmlns)
            self._answer_error(el, StanzaError("bad-request", "a component's stanza needs "
                                               "both 'from' and 'to' (XEP-0114 §3)"))
            return
        try:
            frm = JID.parse(frm_attr)
        except (InvalidJID, ValueError):
            raise StreamError("invalid-from") from None
        if self.opts.get("check_from", True) and frm.domain not in self.domains:
            # listen.component.check_from: the component speaks for its own domain only.
            raise StreamError("invalid-from")
        to_internal(el, el.xmlns)
        try:
            to = JID.parse(to_attr)
        except (InvalidJID, ValueError):
            self.server.router.bounce(el, StanzaError("jid-malformed"))
            return
        self.server.router.route(frm, to, el)

    def _answer_error(self, el: Element, error: StanzaError) -> None:
        """Answer the component itself (the stanza cannot be routed back by its addresses)."""
        if el.attrs.get("type") in ("error", "result"):
            # RFC 6120 §8.3.1: never answer an error (or a result) with an error
            log.info("component_stanza_dropped connection_type=component domain=%s "
                     "reason=%s", self.domain, error.text)
            return
        self.send_stanza(error_reply(el, error))

    # -- delivery -------------------------------------------------------------------------
    def deliver(self, frm: JID, stanza: Element) -> None:
        if self.state != S.STREAM_ESTABLISHED or self._closing:
            self.server.router.bounce(stanza, StanzaError("service-unavailable"))
            return
        self.send_stanza(stanza)

    def kicked(self) -> None:
        self.registered = False
        self.stream_error(StreamError("conflict", "replaced by a new connection"))

    def on_closed(self, exc: Exception | None) -> None:
        if self.registered:
            self.registered = False
            self.server.components.unregister(self)
            log.info("component_disconnected connection_type=component domains=%s",
                     ",".join(self.domains))

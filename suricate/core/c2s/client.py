"""The glue: ``C2S``, one client stream and, once bound, the session the router delivers to.

It assembles the layers, each one concept, each built on the one below:

    XmppStream (core/stream.py)   parser per stream, negotiation timer, stream errors, close
    C2SStream  (stream.py)        feeding, ordering and back-pressure, header, hibernation
    Delivery   (delivery.py)      what is sent to the client; XEP-0198 counting
    Negotiation (negotiation.py)  STARTTLS, SASL, SASL2, bind, Bind 2 (protocol/negotiation.py
                                  decides, this layer executes)
    EstablishedSession (session.py)  stanza checks, routing, takeover, the end
    C2S        (here)             the slots, the constructor, the (state, element) table

Per-session state of modules is not here: it lives in ``module_state`` through each module's
``SessionSlot`` (DESIGN §7).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from suricate.core.c2s.negotiation import CredentialSource
from suricate.core.c2s.session import EstablishedSession
from suricate.core.c2s.stream import DispatchTable, ElementHandler
from suricate.protocol import c2s as P
from suricate.protocol.c2s import C2SState as S
from suricate.protocol.negotiation import SaslNegotiator, UserAgent

if TYPE_CHECKING:
    from suricate.core.server import Server
    from suricate.jid import JID
    from suricate.net.connection import Connection
    from suricate.net.tls import TLSConfig
    from suricate.xml.element import Element


class C2S(EstablishedSession):
    """One client stream; after binding, also the session the router delivers to."""

    __slots__ = ()  # each layer declares the slots it uses

    def __init__(self, server: Server, conn: Connection, opts: Mapping[str, Any],
                 tls_config: TLSConfig | None) -> None:
        super().__init__(server, conn, P.C2SStateMachine(), P.TIMED_STATES, S.CLOSED,
                         opts.get("max_stanza_size"), opts.get("state_timeout", 5000))
        self.opts = opts
        self.tls_config = tls_config
        self.domain: str | None = None
        self.lang = "en"
        # Set at bind; None before (typed as JID because only bound sessions are routed to).
        self.jid: JID = None  # type: ignore[assignment]
        self.user: JID | None = None  # authenticated bare JID
        self.negotiator = SaslNegotiator()
        self._busy = False
        self._backlog: list[Any] = []
        self._ended = False
        # session state (RFC 6121)
        self.priority = 0
        self.presence: Element | None = None
        self.anonymous = False
        self.started_at = time.time()
        self._heir: Any = None
        self._inherited: list[Element] | None = None
        self.module_state: dict[str, Any] = {}
        self.user_agent: UserAgent | None = None
        self.credential_source: CredentialSource | None = None
        # The authentication arrived as TLS 1.3 early data (RFC 8446 §2.3): FAST insists on
        # a replay counter then (XEP-0484 §3.4).
        self.early_data_auth = False
        self._active = True
        self._hibernatable = True
        self._dispatch = self.DISPATCH_COUNTED if server.instrument.enabled else self.DISPATCH
        self._goto(S.WAIT_FOR_STREAM)
        if tls_config is not None and tls_config.mode == "tls":
            # Direct TLS (XEP-0368): the handshake is the first thing, the same review.
            self.allow_certificate_review()


def _compile(cls: type[C2S], counted: bool) -> DispatchTable:
    """protocol.c2s.ELEMENT_HANDLERS and DEFAULT_HANDLERS as methods of ``cls``; ``counted``:
    each wrapped to emit xmpp_element_in first, an established session's stanzas timed
    (c2s_message_processed)."""
    table: dict[S, tuple[Mapping[tuple[str, str], ElementHandler] | None, ElementHandler]] = {}

    def handler(name: str) -> ElementHandler:
        method: ElementHandler = getattr(cls, "_on_" + name)
        if not counted:
            return method
        if method is cls._process_stanza:
            method = cls._timed_stanza
        return _counting(method)

    for state in S:
        default = handler(P.DEFAULT_HANDLERS.get(state, "not_authorized"))
        named = P.ELEMENT_HANDLERS.get(state)
        by_name = ({key: handler(name) for key, name in named.items()} if named else None)
        table[state] = (by_name, default)
    return table


def _counting(method: ElementHandler) -> ElementHandler:
    def counted(stream: Any, el: Element) -> Any:
        stream.server.instrument.xmpp_element_in("c2s", stream.domain or "", el)
        return method(stream, el)
    return counted


C2S.DISPATCH = _compile(C2S, counted=False)
C2S.DISPATCH_COUNTED = _compile(C2S, counted=True)

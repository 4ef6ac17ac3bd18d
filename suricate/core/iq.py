"""IQ handlers registered by namespace for two scopes, as MongooseIM's gen_iq_handler does:
``local`` (addressed to a served domain) and ``sm`` (addressed to an account's bare JID, answered by
the server on the account's behalf, RFC 6120 §10.3.3). Also the server's own outgoing IQs.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from suricate.core import hooks as H
from suricate.jid import JID
from suricate.protocol.errors import StanzaError, error_reply
from suricate.xml import ns
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.core.server import Server

log = logging.getLogger("suricate.iq")

Scope = Literal["local", "sm"]


@dataclass(slots=True)
class IqRequest:
    frm: JID
    to: JID
    type: str  # "get" or "set"
    payload: Element
    stanza: Element


IqResult = Element | None
IqHandler = Callable[[IqRequest], "IqResult | Awaitable[IqResult]"]


class IqDispatcher:
    __slots__ = ("server", "_handlers", "_by_domain", "_pending", "_ids")

    def __init__(self, server: Server) -> None:
        self.server = server
        self._handlers: dict[tuple[Scope, str], IqHandler] = {}
        #: Handlers of module instances serving some domains only ([[host_config]]):
        #: (serves(domain), handler), the first that serves the IQ's domain answers.
        self._by_domain: dict[tuple[Scope, str], list[tuple[Callable[[str], bool],
                                                             IqHandler]]] = {}
        self._pending: dict[str, asyncio.Future[Element]] = {}
        self._ids = itertools.count(1)

    def register(self, scope: Scope, xmlns: str, handler: IqHandler,
                 serves: Callable[[str], bool] | None = None) -> None:
        """``serves``: the handler answers only IQs to the domains it says yes to."""
        key = (scope, xmlns)
        if key in self._handlers or (serves is None and key in self._by_domain):
            raise ValueError(f"IQ handler for {scope} {xmlns} registered twice")
        if serves is None:
            self._handlers[key] = handler
        else:
            self._by_domain.setdefault(key, []).append((serves, handler))

    def unregister(self, scope: Scope, xmlns: str, handler: IqHandler | None = None) -> None:
        self._handlers.pop((scope, xmlns), None)
        entries = [e for e in self._by_domain.get((scope, xmlns), ())
                   if handler is not None and e[1] != handler]
        if entries:
            self._by_domain[(scope, xmlns)] = entries
        else:
            self._by_domain.pop((scope, xmlns), None)

    def _handler(self, scope: Scope, xmlns: str, to: JID) -> IqHandler | None:
        handler = self._handlers.get((scope, xmlns))
        if handler is None and self._by_domain:
            for serves, candidate in self._by_domain.get((scope, xmlns), ()):
                if serves(to.domain):
                    return candidate
        return handler

    def dispatch(self, frm: JID, to: JID, stanza: Element, scope: Scope) -> None:
        stype = stanza.attrs.get("type")
        if stype in ("result", "error"):
            fut = self._pending.pop(stanza.attrs.get("id", ""), None)
            if fut is not None and not fut.done():
                fut.set_result(stanza)
            return  # RFC 6120 §8.2.3: never answer a result or an error
        payload = stanza.first_element()
        # RFC 6120 §8.2.3: get/set carry exactly one payload element.
        if stype not in ("get", "set") or payload is None or len(stanza.find_all()) != 1:
            self.server.router.bounce(stanza, StanzaError("bad-request"))
            return
        handler = self._handler(scope, payload.xmlns, to)
        if handler is None:
            self.server.router.bounce(stanza, StanzaError("service-unavailable"))
            return
        request = IqRequest(frm, to, stype, payload, stanza)
        if scope == "sm" and (frm.local != to.local or frm.domain != to.domain) \
                and self.server.hooks.has(H.PRIVACY_CHECK_INBOUND):
            # An IQ to an account's bare JID is answered by the server on the account's
            # behalf (its vCard, last activity, PEP items, disco#info): one from an entity
            # the account blocks gets service-unavailable, as if sent to the account itself
            # (XEP-0191 §3.3; an XEP-0016 default list denying IQs alike), whether it comes from here or over s2s (a
            # local requester's answer was also stopped on delivery; a remote one got it,
            # e.g. "last active 0 seconds ago" from a user meant to look offline to it).
            self.server.spawn(self._dispatch_allowed(request, handler))
            return
        self._run(request, handler)

    async def _dispatch_allowed(self, request: IqRequest, handler: IqHandler) -> None:
        allowed = await self.server.hooks.fold_async(H.PRIVACY_CHECK_INBOUND, True,
                                                     self.server, request.to.bare,
                                                     request.frm, request.stanza)
        if not allowed:
            self.server.router.bounce(request.stanza, StanzaError("service-unavailable"))
            return
        self._run(request, handler)

    def _run(self, request: IqRequest, handler: IqHandler) -> None:
        stanza = request.stanza
        try:
            result = handler(request)
        except StanzaError as err:
            self.server.router.bounce(stanza, err)
            return
        except Exception:
            log.exception("iq_handler_failed xmlns=%s", request.payload.xmlns)
            self.server.router.bounce(stanza, StanzaError("internal-server-error"))
            return
        if inspect.isawaitable(result):
            self.server.spawn(self._finish(request, result))
        else:
            self._reply(request, result)

    async def _finish(self, request: IqRequest, pending: Awaitable[IqResult]) -> None:
        try:
            result = await pending
        except StanzaError as err:
            self.server.router.bounce(request.stanza, err)
            return
        except Exception:
            log.exception("iq_handler_failed xmlns=%s", request.payload.xmlns)
            self.server.router.bounce(request.stanza, StanzaError("internal-server-error"))
            return
        self._reply(request, result)

    def _reply(self, request: IqRequest, payload: IqResult) -> None:
        attrs = {"type": "result", "to": str(request.frm), "from": str(request.to)}
        if "id" in request.stanza.attrs:
            attrs["id"] = request.stanza.attrs["id"]
        reply = Element("iq", ns.CLIENT, attrs)
        if payload is not None:
            reply.append(payload)
        self.server.router.route(request.to, request.frm, reply)

    async def request(self, frm: JID, to: JID, type_: str, payload: Element,
                      timeout: float) -> Element:
        """Send an IQ from the server; return the answer, raise TimeoutError."""
        iq_id = f"s{next(self._ids)}"
        fut: asyncio.Future[Element] = asyncio.get_running_loop().create_future()
        self._pending[iq_id] = fut
        iq = Element("iq", ns.CLIENT, {"type": type_, "id": iq_id, "from": str(frm),
                                        "to": str(to)}, [payload])
        self.server.router.route(frm, to, iq)
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._pending.pop(iq_id, None)


def error_for(stanza: Element, condition: str) -> Element:
    return error_reply(stanza, StanzaError(condition))

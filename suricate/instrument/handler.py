"""The handler interface: what an instrumentation back end (Prometheus, log, ...) implements.

A handler *is* an ``Instrumentation``: the server calls the same typed methods on it as on the
no-op base. This base turns every typed call into the generic ``emit(spec, labels,
measurements)`` (``spec`` is the declared ``EventSpec``), so a new handler only writes ``emit``; a handler that sits on the message
hot path (Prometheus) overrides the typed calls with O(1) updates instead.

To add a handler: subclass ``Handler``, give it a ``name`` and an ``emit``, add it to
``suricate.instrument.setup.HANDLERS`` and its options to ``[instrumentation.<name>]`` in the
config schema.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from suricate.instrument import Instrumentation
from suricate.instrument.events import (
    AUTH_FAILED_BY_TYPE,
    C2S_MESSAGE_PROCESSED,
    ELEMENT_COUNTERS,
    ROUTER_NO_ROUTE_FOUND,
    ROUTER_STANZA_DROPPED,
    SM_MESSAGE_BOUNCED,
    SM_SESSION,
    TCP_DATA_IN,
    TCP_DATA_OUT,
    TLS_DATA_IN,
    TLS_DATA_OUT,
    XMPP_ELEMENT_IN,
    XMPP_ELEMENT_OUT,
    EventSpec,
    element_kind,
)
from suricate.instrument.size import xml_size
from suricate.xml import ns
from suricate.xml.element import Element

#: The stream namespace an element is sized in: a stanza inherits it and carries no xmlns.
STREAM_NS = {"c2s": ns.CLIENT, "s2s": ns.SERVER, "component": ns.COMPONENT}


def element_size(connection_type: str, element: Element) -> int:
    """6.4's byte_size of a received element: its size serialized in its stream."""
    return xml_size(element, STREAM_NS.get(connection_type, ns.CLIENT))


def element_measurements(element: Element, size: int) -> dict[str, float]:
    counts = dict.fromkeys(ELEMENT_COUNTERS, 0.0)
    counts["count"] = 1
    kind = element_kind(element.name)
    if kind >= 0:
        counts["stanza_count"] = 1
        counts[ELEMENT_COUNTERS[kind]] = 1
        if element.attrs.get("type") == "error":
            counts["error_count"] = 1
            counts[ELEMENT_COUNTERS[kind + 4]] = 1
    elif element.name == "error" and element.xmlns == ns.STREAM:
        counts["error_count"] = 1  # <stream:error/>: an error, not a stanza (6.4)
    measurements: dict[str, float] = {k: v for k, v in counts.items() if v}
    measurements["byte_size"] = size
    return measurements


def same(domain: str) -> str:
    """Host type of a domain when nothing else is known: a static host is its own host type."""
    return domain


class Handler(Instrumentation):
    enabled = True
    name: ClassVar[str]

    def __init__(self, opts: Mapping[str, Any], host_type_of: Callable[[str], str] = same) -> None:
        self.opts = opts
        # The c2s reports the stream's domain; labels carry the domain's host type (6.4).
        self.host_type_of = host_type_of

    def labels_changed(self) -> None:
        """Domains moved between host types (dynamic domains): forget cached label keys."""

    async def start(self) -> None:
        """Anything the handler runs beside the calls (timers, connections)."""

    async def stop(self) -> None:
        pass

    # -- typed calls, as generic events ---------------------------------------------------------
    def xmpp_element_in(self, connection_type: str, host_type: str, element: Element) -> None:
        self.emit(XMPP_ELEMENT_IN, {"connection_type": connection_type,
                                   "host_type": self.host_type_of(host_type)},
                  element_measurements(element, element_size(connection_type, element)))

    def xmpp_element_out(self, connection_type: str, host_type: str, element: Element,
                         size: int) -> None:
        self.emit(XMPP_ELEMENT_OUT, {"connection_type": connection_type,
                                    "host_type": self.host_type_of(host_type)},
                  element_measurements(element, size))

    def data_in(self, connection_type: str, tls: bool, size: int) -> None:
        self.emit(TLS_DATA_IN if tls else TCP_DATA_IN, {"connection_type": connection_type},
                  {"byte_size": size})

    def data_out(self, connection_type: str, tls: bool, size: int) -> None:
        self.emit(TLS_DATA_OUT if tls else TCP_DATA_OUT, {"connection_type": connection_type},
                  {"byte_size": size})

    def auth_failed(self, connection_type: str, host_type: str) -> None:
        spec = AUTH_FAILED_BY_TYPE.get(connection_type)
        if spec is not None:
            labels = {"host_type": self.host_type_of(host_type)} if spec.labels else {}
            self.emit(spec, labels, {"count": 1})

    def sm_session(self, host_type: str, logins: int = 0, logouts: int = 0) -> None:
        self.emit(SM_SESSION, {"host_type": self.host_type_of(host_type)},
                  {"count": logins - logouts, "logins": logins, "logouts": logouts})

    def sm_message_bounced(self, host_type: str) -> None:
        self.emit(SM_MESSAGE_BOUNCED, {"host_type": self.host_type_of(host_type)},
                  {"count": 1})

    def c2s_message_processed(self, host_type: str, microseconds: int) -> None:
        self.emit(C2S_MESSAGE_PROCESSED, {"host_type": self.host_type_of(host_type)},
                  {"time": microseconds})

    def router_no_route_found(self, host_type: str) -> None:
        self.emit(ROUTER_NO_ROUTE_FOUND, {"host_type": self.host_type_of(host_type)},
                  {"count": 1})

    def router_stanza_dropped(self, host_type: str) -> None:
        self.emit(ROUTER_STANZA_DROPPED, {"host_type": self.host_type_of(host_type)},
                  {"count": 1})

    def emit(self, event: EventSpec, labels: Mapping[str, str],
             measurements: Mapping[str, float]) -> None:
        raise NotImplementedError


class Fanout(Instrumentation):
    """Several handlers at once: every call goes to each, in configuration order."""

    enabled = True

    def __init__(self, handlers: list[Handler]) -> None:
        self.handlers = handlers

    def xmpp_element_in(self, connection_type: str, host_type: str, element: Element) -> None:
        for h in self.handlers:
            h.xmpp_element_in(connection_type, host_type, element)

    def xmpp_element_out(self, connection_type: str, host_type: str, element: Element,
                         size: int) -> None:
        for h in self.handlers:
            h.xmpp_element_out(connection_type, host_type, element, size)

    def data_in(self, connection_type: str, tls: bool, size: int) -> None:
        for h in self.handlers:
            h.data_in(connection_type, tls, size)

    def data_out(self, connection_type: str, tls: bool, size: int) -> None:
        for h in self.handlers:
            h.data_out(connection_type, tls, size)

    def auth_failed(self, connection_type: str, host_type: str) -> None:
        for h in self.handlers:
            h.auth_failed(connection_type, host_type)

    def sm_session(self, host_type: str, logins: int = 0, logouts: int = 0) -> None:
        for h in self.handlers:
            h.sm_session(host_type, logins, logouts)

    def sm_message_bounced(self, host_type: str) -> None:
        for h in self.handlers:
            h.sm_message_bounced(host_type)

    def c2s_message_processed(self, host_type: str, microseconds: int) -> None:
        for h in self.handlers:
            h.c2s_message_processed(host_type, microseconds)

    def router_no_route_found(self, host_type: str) -> None:
        for h in self.handlers:
            h.router_no_route_found(host_type)

    def router_stanza_dropped(self, host_type: str) -> None:
        for h in self.handlers:
            h.router_stanza_dropped(host_type)

    def emit(self, event: EventSpec, labels: Mapping[str, str],
             measurements: Mapping[str, float]) -> None:
        for h in self.handlers:
            h.emit(event, labels, measurements)

    def set_up(self, event: EventSpec, labels: Mapping[str, str]) -> None:
        for h in self.handlers:
            h.set_up(event, labels)

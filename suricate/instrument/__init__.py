"""Instrumentation: the events the server emits, named as in MongooseIM 6.4.

``Instrumentation`` is the interface the rest of the server calls; this base records nothing,
so a server without ``[instrumentation]`` pays one method call per event. Handlers (Prometheus,
log) implement it in their own modules (``handler.py`` says how to add one); events are
declared in ``events.py`` and next to the modules that emit them. Labels follow 6.4: ``connection_type`` (c2s, s2s,
component) and ``host_type`` (the domain for static hosts; "" when not known yet).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.instrument.events import EventSpec


class Instrumentation:
    enabled = False

    # -- xmpp_element_in / xmpp_element_out: once per parsed element, once per element sent --
    def xmpp_element_in(self, connection_type: str, host_type: str, element: Element) -> None:
        pass

    def xmpp_element_out(self, connection_type: str, host_type: str, element: Element,
                         size: int) -> None:
        pass

    # -- tcp_data_in/out (bytes on the wire), tls_data_in/out (plaintext through TLS) ---------
    def data_in(self, connection_type: str, tls: bool, size: int) -> None:
        pass

    def data_out(self, connection_type: str, tls: bool, size: int) -> None:
        pass

    # -- authentication, sessions, routing ------------------------------------------------------
    def auth_failed(self, connection_type: str, host_type: str) -> None:
        pass

    def sm_session(self, host_type: str, logins: int = 0, logouts: int = 0) -> None:
        pass

    def sm_message_bounced(self, host_type: str) -> None:
        pass

    def c2s_message_processed(self, host_type: str, microseconds: int) -> None:
        pass

    def router_no_route_found(self, host_type: str) -> None:
        pass

    def router_stanza_dropped(self, host_type: str) -> None:
        pass

    def emit(self, event: EventSpec, labels: Mapping[str, str],
             measurements: Mapping[str, float]) -> None:
        """Any other event, given as the ``EventSpec`` its ``declare(...)`` returned (module
        events such as ``MOD_ROSTER_GET``, ``MOD_PING_RESPONSE``), never by name: a misspelt
        event is then an error at import, like a misspelt hook."""

    def set_up(self, event: EventSpec, labels: Mapping[str, str]) -> None:
        """Not an event: the series ``labels`` of ``event`` exists from now on, at zero
        (6.4's ``set_up``, made at start-up for each host type: ``initial.py``)."""

    # -- not an event: dynamic domains moved, so cached label keys are stale ----------------
    def labels_changed(self) -> None:
        pass

"""The series a server sets up at zero when it starts (MongooseIM 6.4's ``set_up``).

6.4 declares each event's series for every host type when it starts (its core events) or
when a module starts (the module's events, for the host types the module serves), and
initializes the counters among them to 0. That matters to dashboards and alerts: Prometheus
computes ``rate()`` and ``increase()`` from two samples of a series, so a series that first
appears at 1 loses that first event (the first failed login of a day, the first bounced
message), and a panel on a series that does not exist shows "No data" instead of 0.

The Prometheus handler makes the same series at start-up; histograms are set up empty, and
shown only once they observed something (6.4 does not initialize them either).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from suricate.instrument.events import (
    AUTH_FAILED_BY_TYPE,
    COUNTER,
    EVENTS,
    SPIRAL,
    TCP_DATA_IN,
    TCP_DATA_OUT,
    TLS_DATA_IN,
    TLS_DATA_OUT,
    XMPP_ELEMENT_IN,
    XMPP_ELEMENT_OUT,
    EventSpec,
)

#: Where the server's own events are declared (the hook events, declared by
#: suricate.core.hook_events, are given by the server: those of hooks with handlers).
CORE_OWNER = "suricate.instrument.events"
XMPP_EVENTS = (XMPP_ELEMENT_IN, XMPP_ELEMENT_OUT)
DATA_EVENTS = (TCP_DATA_IN, TCP_DATA_OUT, TLS_DATA_IN, TLS_DATA_OUT)


def _owned_by(spec: EventSpec, package: str) -> bool:
    return spec.owner == package or spec.owner.startswith(package + ".")


def initial_series(
    host_types: Iterable[str],
    modules: Iterable[Any],
    connection_types: Iterable[str],
    hook_events: Iterable[EventSpec] = (),
) -> Iterator[tuple[EventSpec, dict[str, str]]]:
    """(event, labels) of every series to exist at zero: the core events labelled only by
    ``host_type`` for each host type, the traffic events for each connection type (6.4:
    element events for the unknown host type "" and each host type, components only "";
    data events per connection type), each running module's ``host_type`` events for
    the host types it serves (``module.host_types``, None for all), and the ``hook_<name>``
    events of the hooks that have handlers (6.4 sets those up as their handlers are added),
    for each host type."""
    all_types = list(host_types)
    for conn in connection_types:
        failed = AUTH_FAILED_BY_TYPE[conn]
        if not failed.labels:  # s2s, component: one series (c2s: per host type, below)
            yield failed, {}
        for event in DATA_EVENTS:
            yield event, {"connection_type": conn}
        for host_type in ["", *(all_types if conn != "component" else ())]:
            for event in XMPP_EVENTS:
                yield event, {"connection_type": conn, "host_type": host_type}
    # Events with a spiral or a counter: 0 is their value until something happens. Gauges
    # (mod_muc_rooms) are set by their owner; 6.4 does not initialize them either.
    per_host = [
        spec
        for spec in EVENTS.values()
        if spec.labels == ("host_type",)
        and not spec.probe
        and any(t in (SPIRAL, COUNTER) for t in spec.metrics.values())
    ]
    for spec in per_host:
        if spec.owner == CORE_OWNER:
            for host_type in all_types:
                yield spec, {"host_type": host_type}
    for module in modules:
        package = type(module).__module__
        served = module.host_types
        for spec in per_host:
            if spec.owner != CORE_OWNER and _owned_by(spec, package):
                for host_type in all_types:
                    if served is None or host_type in served:
                        yield spec, {"host_type": host_type}
    for spec in hook_events:
        for host_type in all_types:
            yield spec, {"host_type": host_type}

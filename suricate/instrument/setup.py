"""Builds the configured instrumentation from ``[instrumentation]``.

No section, or a section without handlers: the no-op ``Instrumentation`` (one method call per
event and nothing else). One handler: that handler itself. Several: a ``Fanout``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from suricate.instrument import Instrumentation
from suricate.instrument.handler import Fanout, Handler, same


def _prometheus() -> type[Handler]:
    from suricate.instrument.prometheus import PrometheusHandler
    return PrometheusHandler


def _log() -> type[Handler]:
    from suricate.instrument.log import LogHandler
    return LogHandler


#: Handler name (the `[instrumentation.<name>]` table) -> its class, imported on demand.
HANDLERS: dict[str, Callable[[], type[Handler]]] = {
    "prometheus": _prometheus,
    "log": _log,
}


def build_handlers(cfg: Mapping[str, Any] | None,
                   host_type_of: Callable[[str], str] = same) -> list[Handler]:
    if not cfg:
        return []
    return [HANDLERS[name]()(opts, host_type_of) for name, opts in cfg.items()
            if name in HANDLERS and opts is not None]


def combine(handlers: list[Handler]) -> Instrumentation:
    if not handlers:
        return Instrumentation()
    if len(handlers) == 1:
        return handlers[0]
    return Fanout(handlers)


def find_handler(instrument: Instrumentation, name: str) -> Handler | None:
    """The configured handler called ``name`` (the Prometheus store for /metrics, GraphQL)."""
    handlers = instrument.handlers if isinstance(instrument, Fanout) else [instrument]
    for handler in handlers:
        if isinstance(handler, Handler) and handler.name == name:
            return handler
    return None

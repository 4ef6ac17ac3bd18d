"""The ``log`` handler: every event as one structured log line at the configured level
(``[instrumentation.log] level``, default ``debug`` as in 6.4)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from suricate.instrument.events import EventSpec
from suricate.instrument.handler import Handler, same

LEVELS = {
    "none": logging.CRITICAL + 10, "emergency": logging.CRITICAL, "alert": logging.CRITICAL,
    "critical": logging.CRITICAL, "error": logging.ERROR, "warning": logging.WARNING,
    "notice": logging.INFO, "info": logging.INFO, "debug": logging.DEBUG, "all": logging.DEBUG,
}


class LogHandler(Handler):
    name = "log"

    def __init__(self, opts: Mapping[str, Any], host_type_of: Callable[[str], str] = same) -> None:
        super().__init__(opts, host_type_of)
        self.level = LEVELS.get(str(opts.get("level", "debug")), logging.DEBUG)
        self.logger = logging.getLogger("suricate.instrument.log")

    def emit(self, event: EventSpec, labels: Mapping[str, str],
             measurements: Mapping[str, float]) -> None:
        # Checked per call: the log level can change at run time (server setLoglevel).
        if not self.logger.isEnabledFor(self.level):
            return
        fields = " ".join(f"{k}={v}" for k, v in (*labels.items(), *measurements.items()))
        self.logger.log(self.level, "event=%s %s", event.name, fields)

    # The element and data calls happen per stanza: skip building their measurements when
    # the level is off.
    def xmpp_element_in(self, connection_type: str, host_type: str, element: Any) -> None:
        if self.logger.isEnabledFor(self.level):
            super().xmpp_element_in(connection_type, host_type, element)

    def xmpp_element_out(self, connection_type: str, host_type: str, element: Any,
                         size: int) -> None:
        if self.logger.isEnabledFor(self.level):
            super().xmpp_element_out(connection_type, host_type, element, size)

    def data_in(self, connection_type: str, tls: bool, size: int) -> None:
        if self.logger.isEnabledFor(self.level):
            super().data_in(connection_type, tls, size)

    def data_out(self, connection_type: str, tls: bool, size: int) -> None:
        if self.logger.isEnabledFor(self.level):
            super().data_out(connection_type, tls, size)

"""SASL ANONYMOUS (RFC 4505)."""

from __future__ import annotations

from suricate.sasl.base import Failure, Mechanism, Result, SaslStateError, Success

__all__ = ["Anonymous"]

# RFC 4505 §3: trace information is at most 255 UTF-8 characters (4 octets each at most).
_MAX_TRACE_OCTETS = 255 * 4


class Anonymous(Mechanism):
    name = "ANONYMOUS"

    _done = False

    def step(self, data: bytes) -> Result:
        if self._done:
            raise SaslStateError("ANONYMOUS is a single step")
        self._done = True
        # RFC 4505 §3: the optional trace is informational only; we just validate it.
        if len(data) > _MAX_TRACE_OCTETS:
            return Failure("malformed-request", "trace too long")
        try:
            trace = data.decode("utf-8")
        except UnicodeDecodeError:
            return Failure("malformed-request", "trace not UTF-8")
        if len(trace) > 255:
            return Failure("malformed-request", "trace too long")
        # A fresh unique localpart per session (MongooseIM does the same). uuid is imported
        # here: its import (it loads platform) is ~2 ms of every start-up, ANONYMOUS or not.
        import uuid

        return Success(uuid.uuid4().hex, None, None)

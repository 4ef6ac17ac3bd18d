"""What every stream over one connection shares, whatever its kind (c2s, s2s in and out,
component): a parser per stream, made anew at each restart (RFC 6120 §4.3.3, §6.4.6), the
negotiation deadline of each timed state (the listener's ``state_timeout``), writing elements,
ending with a stream error written after our header (RFC 6120 §4.9.1.1) and the closing tag.

``state_timeout`` is in milliseconds (MongooseIM's meaning); 0 means no deadline, on every kind
of stream alike (the config spec accepts a non-negative integer and has no "infinity").

Every handler has a ``connection_type`` ("c2s", "s2s" or "component"), the label MongooseIM
6.4 puts on the events of these connections; every log line carries it. The c2s stream
(``suricate.core.c2s``) drives its own event loop on top of this, for its back-pressure on
database steps and its hibernation.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from suricate.protocol.errors import StreamError
from suricate.protocol.fsm import StateMachine
from suricate.protocol.stanza import PREFIXES, to_wire
from suricate.protocol.stream import STREAM_CLOSE
from suricate.xml import ns
from suricate.xml.element import Element
from suricate.xml.parser import StreamClose, StreamOpen, StreamParser, XMLStreamError

if TYPE_CHECKING:
    from suricate.core.server import Server
    from suricate.net.connection import Connection

log = logging.getLogger("suricate.stream")


def state_timeout_seconds(state_timeout_ms: int | None) -> float | None:
    """The deadline of a negotiation step, None for none (``state_timeout = 0``)."""
    if not state_timeout_ms:
        return None
    return state_timeout_ms / 1000


def parse(parser: StreamParser, data: bytes) -> tuple[list[Any], XMLStreamError | None]:
    """Feed ``data``: the events it completed and, when the bytes went bad, the error. What
    completed before the bad bytes is handled first, so the outcome does not depend on how
    the peer's bytes were split into reads."""
    try:
        return parser.feed(data), None
    except XMLStreamError as exc:
        return exc.events, exc


class XmppStream:
    """Base of one stream over one connection; subclasses handle the parsed events."""

    __slots__ = ("server", "conn", "fsm", "_timed_states", "_closed_state", "_max_stanza_size",
                 "_state_timeout", "parser", "stream_id", "_timer", "_deadline", "_closing",
                 "log")

    connection_type = "unknown"
    content_ns = ns.SERVER

    def __init__(self, server: Server, conn: Connection, fsm: StateMachine[Any],
                 timed_states: frozenset[Any], closed_state: enum.Enum,
                 max_stanza_size: int | None, state_timeout_ms: int) -> None:
        self.server = server
        self.conn = conn
        self.fsm = fsm
        self._timed_states = timed_states
        self._closed_state = closed_state
        self._max_stanza_size = max_stanza_size
        self._state_timeout = state_timeout_seconds(state_timeout_ms)
        self.parser: StreamParser | None = StreamParser(max_stanza_size)
        self.stream_id = ""
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None  # loop time the current timed state ends
        self._closing = False
        self.log = logging.getLogger(f"suricate.{self.connection_type}")

    # -- state ----------------------------------------------------------------------------
    @property
    def state(self) -> Any:
        return self.fsm.state

    @property
    def closed(self) -> bool:
        return self.fsm.state is self._closed_state

    def goto(self, new: Any, restart: bool = False) -> None:
        """Move to ``new``; ``restart`` makes a new parser (RFC 6120 §4.3.3, §6.4.6)."""
        self.fsm.goto(new)
        if restart:
            old = self.parser
            self.parser = StreamParser(self._max_stanza_size)
            if old is not None:
                old.release()
        self.restart_state_timer()

    def restart_state_timer(self) -> None:
        """A full ``state_timeout`` for the current state from now (none for an untimed
        state).

        A login goes through some eight timed states in a few milliseconds: rather than a
        timer cancelled and made anew for each (7 µs each, the loop's heap compared in
        Python), the deadline moves and the one timer armed checks it when it fires,
        re-armed for what is left."""
        if self._state_timeout is None or self.fsm.state not in self._timed_states:
            self._cancel_timer()
            return
        loop = self.conn.loop
        deadline = loop.time() + self._state_timeout
        timer = self._timer
        if timer is None or timer.when() > deadline:
            # (none yet, or armed for a longer deadline, ``extend_state_deadline``'s)
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_later(self._state_timeout, self._timed_out)
        self._deadline = deadline

    def extend_state_deadline(self, seconds: float) -> None:
        """At least ``seconds`` from now for the current state, where it is timed and
        ``state_timeout`` would end it sooner: a step that waits on a person (an in-band
        registration form), not on a program. The next state gets ``state_timeout`` again."""
        if self._deadline is None:
            return
        deadline = self.conn.loop.time() + seconds
        if deadline > self._deadline:
            self._deadline = deadline

    def state_time_left(self) -> float | None:
        """Seconds before the current state times out; None when it has no deadline."""
        if self._deadline is None:
            return None
        return self._deadline - self.conn.loop.time()

    def _cancel_timer(self) -> None:
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if self._deadline is None:
            return
        left = self._deadline - self.conn.loop.time()
        if left > 0:
            # The state changed (or its deadline moved) since the timer was armed.
            self._timer = self.conn.loop.call_later(left, self._timed_out)
            return
        self._deadline = None
        if self.state in self._timed_states:
            self.log.info("%s_state_timeout connection_type=%s state=%s peer=%s",
                          self.connection_type, self.connection_type, self.state.value,
                          self.conn.peer)
            self.on_timeout()

    def on_timeout(self) -> None:
        self.stream_error(StreamError("connection-timeout"))

    # -- driver callbacks -----------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None or self.closed:
            return
        events, error = parse(parser, data)
        self._handle_events(parser, events)
        if error is not None and not (self.closed or self._closing):
            self.stream_error(StreamError(error.condition, error.text))

    def _handle_events(self, parser: StreamParser, events: list[Any]) -> None:
        for event in events:
            if self.closed or self._closing:
                return
            try:
                if isinstance(event, Element):
                    self.server.instrument.xmpp_element_in(self.connection_type,
                                                           self.host_type, event)
                    self.handle_element(event)
                elif isinstance(event, StreamOpen):
                    self.handle_stream_open(event)
                elif isinstance(event, StreamClose):
                    self.handle_stream_close()
            except StreamError as err:
                self.stream_error(err)
                return
            except Exception:
                self.log.exception("%s_internal_error connection_type=%s state=%s",
                                   self.connection_type, self.connection_type,
                                   self.state.value)
                self.stream_error(StreamError("internal-server-error"))
                return
            if self.parser is not parser:
                return  # the stream restarted: later events belonged to the old stream

    def eof_received(self) -> None:
        self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        if not self.closed:
            self.fsm.goto(self._closed_state)
        self.on_closed(exc)

    def write_overflow(self) -> None:
        self.stream_error(StreamError("policy-violation", "peer does not read its socket"))

    # -- to be provided by subclasses -----------------------------------------------------
    def handle_stream_open(self, header: StreamOpen) -> None:
        raise NotImplementedError

    def handle_element(self, el: Element) -> None:
        raise NotImplementedError

    def handle_stream_close(self) -> None:
        self.close()

    def on_closed(self, exc: Exception | None) -> None:
        """The connection is gone (called once)."""

    def on_closing(self) -> None:
        """We are closing the stream (after the closing tag, before the socket closes)."""

    def opening_header(self) -> bytes:
        """Our header, written before a stream error when none was sent yet (§4.9.1.1)."""
        raise NotImplementedError

    @property
    def host_type(self) -> str:
        """The local domain of this stream (the ``host_type`` label), "" when not known."""
        return ""

    # -- output ---------------------------------------------------------------------------
    def send_element(self, el: Element, prefixes: Mapping[str, str] | None = None) -> None:
        data = el.to_bytes(self.content_ns, dict(prefixes or PREFIXES))
        self.server.instrument.xmpp_element_out(self.connection_type, self.host_type, el,
                                                len(data))
        self.conn.write(data)

    def send_stanza(self, stanza: Element) -> int:
        """Write ``stanza``; the bytes it took (s2s_out keeps them for a peer's size limit)."""
        data = to_wire(stanza)
        self.server.instrument.xmpp_element_out(self.connection_type, self.host_type, stanza,
                                                len(data))
        self.conn.write(data)
        return len(data)

    def stream_error(self, err: StreamError) -> None:
        if self.closed or self._closing:
            return
        self.log_stream_error(err)
        if not self.stream_id:
            # RFC 6120 §4.9.1.1: an error before our header still opens the stream first.
            self.stream_id = secrets.token_hex(8)
            self.conn.write(self.opening_header())
        self.send_element(err.to_element())
        self.close()

    def log_stream_error(self, err: StreamError) -> None:
        self.log.info("%s_stream_error connection_type=%s condition=%s text=%s peer=%s",
                      self.connection_type, self.connection_type, err.condition, err.text,
                      self.conn.peer)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._cancel_timer()
        if self.stream_id:
            self.conn.write(STREAM_CLOSE)
        if not self.closed:
            self.fsm.goto(self._closed_state)
        self.on_closing()
        self.conn.close()
        # connection_lost follows and calls on_closed

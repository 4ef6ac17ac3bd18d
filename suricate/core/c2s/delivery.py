"""What is sent to the client: elements written on the stream (``send``) and stanzas the
router hands to the session (``deliver``, after the ``user_receive_packet`` filters).

XEP-0198 counting happens here because every stanza sent passes here: when the client
enabled stream management (mod_stream_management puts the counters in the session's
``STREAM_MANAGEMENT`` slot), each stanza waits in its buffer until acknowledged, an ``<r/>``
follows every ``ack_freq`` stanzas, and while the session waits for resumption (§5) what the
router delivers is kept for the client that comes back. Nothing else is on this path: one
dict lookup for the slot, one serialization, one coalesced write.
"""

from __future__ import annotations

from typing import Any

from suricate.core import hooks as H
from suricate.core.c2s.stream import SM_KEY, C2SStream
from suricate.core.module import SessionSlot
from suricate.protocol.c2s import STREAM_PREFIXES
from suricate.protocol.c2s import C2SState as S
from suricate.protocol.errors import StreamError
from suricate.protocol.sm import BufferOverflow, StreamManagement
from suricate.protocol.stanza import STANZA_NAMES
from suricate.xml import ns
from suricate.xml.element import Element

# XEP-0198 counters of a session, owned by mod_stream_management (it creates them on
# <enable/>); the c2s counts through them.
STREAM_MANAGEMENT: SessionSlot[StreamManagement] = SessionSlot(SM_KEY)

_SM_REQUEST = Element("r", ns.SM).to_bytes(ns.CLIENT)


class Delivery(C2SStream):
    __slots__ = ()

    def send(self, element: Element) -> None:
        """Write ``element`` to the client (RFC 6120 §8: stanzas and stream-level elements)."""
        sm: StreamManagement | None = self.module_state.get(SM_KEY)
        request = False
        if sm is not None and element.name in STANZA_NAMES and element.xmlns == ns.CLIENT:
            try:
                request = sm.stanza_out(element)
            except BufferOverflow:
                # XEP-0198 §4 leaves the limit to the server; past buffer_max the session
                # ends, and what the client did not acknowledge is delivered elsewhere.
                self.stream_error(StreamError("resource-constraint",
                                              "too many unacknowledged stanzas"))
                return
        data = element.to_bytes(ns.CLIENT, STREAM_PREFIXES)
        self.server.instrument.xmpp_element_out("c2s", self.domain or "", element, len(data))
        self.conn.write(data)
        if request:
            self.conn.write(_SM_REQUEST)

    def write_serialized(self, data: bytes, written: list[Any] | None = None) -> bool:
        """Write a stanza another node serialized for this session (cluster/wire.py ``XML``)
        as it is, when nothing here needs it as an element: an established session without
        XEP-0198 counting (its buffer keeps elements), no ``user_receive_packet`` filter
        (blocking, carbons, CSI) and no instrumentation (it counts elements). False when
        something does: the caller parses it and delivers it the full way (``deliver``).

        With ``written``: the connection's flush is left to the caller, which calls
        ``flush_pending`` on each connection appended there before its callback returns (a
        connection without ``write_deferred``, WebSocket or BOSH, is written as usual)."""
        if self.fsm.state is not S.SESSION_ESTABLISHED or self._closing \
                or self.module_state.get(SM_KEY) is not None or self.server.instrument.enabled \
                or self.server.hooks.has(H.USER_RECEIVE_PACKET):
            return False
        conn = self.conn
        if written is not None and hasattr(conn, "write_deferred"):
            conn.write_deferred(data)
            written.append(conn)
        else:
            conn.write(data)
        return True

    def deliver(self, stanza: Element) -> None:
        """The router hands us a stanza for this session (RFC 6121 §8.5.3)."""
        state = self.fsm.state
        if state is S.RESUME_SESSION:
            # XEP-0198 §5: a waiting session keeps it for the client that resumes (or
            # re-routes it if none does).
            waiting: StreamManagement | None = self.module_state.get(SM_KEY)
            if waiting is None:
                self.server.undeliverable(stanza, self)
                return
        elif state is not S.SESSION_ESTABLISHED or self._closing:
            # XEP-0198 §5 across nodes: a session resumed from another node is in the table
            # before its stream has written <resumed/> (``enter_moved``): kept in its buffer,
            # after what is sent again (the only session in the table that is not yet
            # established and has counters; never on the path of an established one).
            waiting = None if state is S.CLOSED or self._closing \
                else self.module_state.get(SM_KEY)
            if waiting is None:
                self.server.undeliverable(stanza, self)
                return
        else:
            waiting = None
        filtered = self.server.hooks.fold(H.USER_RECEIVE_PACKET, stanza, self)
        if filtered is None:
            return
        if waiting is None:
            self.send(filtered)
            return
        try:
            waiting.stanza_out(filtered)
        except BufferOverflow:
            if state is not S.RESUME_SESSION:
                # moving in: a live stream, ended as send() ends it
                self.stream_error(StreamError("resource-constraint",
                                              "too many unacknowledged stanzas"))
                return
            self.fsm.goto(S.CLOSED)
            self._end_session("stream management buffer full")

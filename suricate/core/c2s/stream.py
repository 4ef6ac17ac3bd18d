"""The c2s stream driver: bytes in, parsed events handled in order, one step at a time.

Processing is strictly ordered per connection (RFC 6120 §10.1: stanzas from one stream are
handled in the order received). Most elements are handled synchronously; when a step needs
the database (SASL credentials, binding, an account lookup) the connection stops reading until
that step is done, then carries on with what was already parsed (back-pressure: TCP's window
slows the client, nothing piles up in memory). A step that does not really suspend (SQLite
answers inline) runs at once, with no task.

Also here: the stream header (RFC 6120 §4.7, §4.9.3 for the errors a bad one deserves),
hibernation of idle sessions (DESIGN §3: the parser is most of an idle connection's memory),
and the (state, element) dispatch through the table the glue (``client.py``) compiles.

The parser, the negotiation timer, stream errors and the close come from the stream base all
stream kinds share (``suricate.core.stream``).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from suricate.core import hooks as H
from suricate.core.eager import resume
from suricate.core.stream import XmppStream, parse
from suricate.jid import JID, InvalidJID
from suricate.protocol import c2s as P
from suricate.protocol.c2s import C2SState as S
from suricate.protocol.errors import StreamError
from suricate.protocol.sm import MOD, BufferOverflow
from suricate.xml import ns
from suricate.xml.element import Element
from suricate.xml.parser import StreamClose, StreamOpen, StreamParser, XMLStreamError

if TYPE_CHECKING:
    from suricate.protocol.sm import StreamManagement

log = logging.getLogger("suricate.c2s")

# What a re-made parser is fed before the bytes that woke the session (the header's 'to',
# 'version' and language were checked when the client sent it).
_HIBERNATION_HEADER = (
    f"<stream:stream xmlns='{ns.CLIENT}' xmlns:stream='{ns.STREAM}'>".encode())

# The module_state key of the session's XEP-0198 counters (mod_stream_management's slot,
# ``suricate.core.c2s.delivery.STREAM_MANAGEMENT``): the stream reads it directly because it
# counts every stanza in and out.
SM_KEY = "mod_stream_management"

# An element handler: what to await before the next element, or None.
ElementHandler = Callable[[Any, Element], "Awaitable[None] | None"]
# Per state: handlers by (namespace, name), or None when the state has only the default;
# and the default handler.
DispatchTable = Mapping[S, tuple[Mapping[tuple[str, str], ElementHandler] | None,
                                 ElementHandler]]


class C2SStream(XmppStream):
    """The driver part of ``C2S``: feeding, ordering, back-pressure, header, hibernation."""

    __slots__ = ("opts", "domain", "lang", "user", "jid", "module_state", "_busy", "_backlog",
                 "_ended", "_active", "_hibernatable", "_dispatch")

    connection_type = "c2s"
    content_ns = ns.CLIENT
    # (state, element) -> handler, compiled by the glue from protocol.c2s.ELEMENT_HANDLERS;
    # DISPATCH_COUNTED's handlers also emit xmpp_element_in (and time established stanzas):
    # the glue picks one per stream (``_dispatch``) by whether instrumentation is on, so a
    # server without it makes no call per element for it.
    DISPATCH: ClassVar[DispatchTable]
    DISPATCH_COUNTED: ClassVar[DispatchTable]
    _dispatch: DispatchTable

    # set by the glue's constructor
    opts: Mapping[str, Any]
    domain: str | None
    lang: str
    user: JID | None
    jid: JID
    module_state: dict[str, Any]
    _busy: bool
    _backlog: list[Any]
    _ended: bool
    _active: bool
    _hibernatable: bool

    # -- provided by the layers above -----------------------------------------------------
    def send(self, element: Element) -> None:
        raise NotImplementedError

    def _features_before_auth(self) -> list[Element]:
        raise NotImplementedError

    def _features_after_auth(self) -> list[Element]:
        raise NotImplementedError

    def _end_session(self, reason: str) -> None:
        raise NotImplementedError

    # -- state ----------------------------------------------------------------------------
    def _goto(self, new: S) -> None:
        # A new stream (restart after TLS or SASL) needs a new parser (RFC 6120 §4.3.3,
        # §6.4.6); the first one was made with the stream.
        self.goto(new, restart=new is S.WAIT_FOR_STREAM and self.fsm.state is not S.CONNECT)

    @property
    def host_type(self) -> str:
        return self.domain or ""

    def opening_header(self) -> bytes:
        return P.stream_header(self.stream_id, self.domain or self.server.default_domain)

    @property
    def _sm(self) -> StreamManagement | None:
        sm: StreamManagement | None = self.module_state.get(SM_KEY)
        return sm

    @property
    def resumable(self) -> bool:
        """An established session whose client negotiated stream resumption: a connection
        that ends without the stream closing leaves it waiting for the client (XEP-0198 §5)."""
        sm = self._sm
        return self.fsm.state is S.SESSION_ESTABLISHED and sm is not None and sm.resume

    def hold_for_stop(self) -> int | None:
        """The server is stopping (``Server._collect_acknowledgements``): a XEP-0198 session
        is asked (<r/>, §4) what it received, and the chat messages the router hands it from
        now on are kept in its buffer, not written, so that the answer covers every one
        written; what is kept goes offline (or to its other resources) when the session
        ends, and reaches the client once, at its next login (a room's messages, presence
        and IQs are written as before: offline storage would not keep them). The count the client must acknowledge, or None
        (no counters, or nothing to acknowledge)."""
        sm = self._sm
        if self.fsm.state is not S.SESSION_ESTABLISHED or self._closing or sm is None:
            return None
        # This session only becomes one that holds: ``deliver``, the hot path, stays as it
        # is for every other (no flag tested per stanza).
        self.__class__ = _holding(type(self))
        if sm.acked == sm.h_out:
            return None
        self.send(Element("r", ns.SM))
        return sm.h_out

    def tell_handled(self) -> None:
        """Before the stop's stream error: <a h=.../> unasked (XEP-0198 §4 allows it), so
        the client does not send again, on its next session, stanzas the server handled."""
        sm = self._sm
        if self.fsm.state is S.SESSION_ESTABLISHED and not self._closing and sm is not None:
            self.send(Element("a", ns.SM, {"h": str(sm.h_in)}))

    def acknowledged(self, count: int) -> bool:
        """Whether the client acknowledged ``count`` (``hold_for_stop``), or is gone."""
        sm = self._sm
        return self.fsm.state is not S.SESSION_ESTABLISHED or self._closing or sm is None \
            or (sm.acked - count) % MOD < MOD // 2

    # -- driver callbacks -----------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._busy:
            self._backlog.append(data)
            return
        self._active = True
        parser = self.parser
        if parser is None:
            if self.fsm.state is not S.SESSION_ESTABLISHED:
                return
            # Waking from hibernation: a parser inside the stream the client opened.
            parser = self.parser = StreamParser.primed(self.opts.get("max_stanza_size"),
                                                       _HIBERNATION_HEADER)
        elif self.fsm.state is S.CLOSED:
            return
        events, error = parse(parser, data)
        if error is None:
            if events:
                self._process(events)
            return
        if events:
            self._process(events)
            if self._busy:
                self._backlog.append(error)  # the error follows the step now running
                return
        if self.fsm.state is not S.CLOSED:
            self.stream_error(StreamError(error.condition, error.text))

    def _process(self, events: list[Any]) -> None:
        for index, event in enumerate(events):
            if self.fsm.state is S.CLOSED:
                return
            parser = self.parser
            try:
                pending = self._handle_event(event)
            except StreamError as err:
                self.stream_error(err)
                return
            except Exception:
                log.exception("c2s_internal_error state=%s", self.state.value)
                self.stream_error(StreamError("internal-server-error"))
                return
            if pending is not None:
                # Run the step right away: most never really suspend (SQLite answers inline),
                # and then the connection needs no task, no pause and no resume.
                rest_of_step = (self._step_now(pending) if self.server.storage.inline
                                else pending)
                if rest_of_step is not None:
                    rest = events[index + 1:] if self.parser is parser else []
                    self._busy = True
                    self.conn.pause_reading()
                    self.server.spawn(self._await_step(rest_of_step, rest))
                    return
                if self.fsm.state is S.CLOSED:
                    return
            if self.parser is not parser:
                return  # stream restarted: later events belonged to the old stream

    def _step_now(self, pending: Awaitable[None]) -> Awaitable[None] | None:
        """Run ``pending`` up to its first real suspension; None when it finished (errors
        handled as ``_await_step`` does), else what is left of it to await."""
        steps = pending.__await__()
        try:
            yielded = steps.send(None)
        except StopIteration:
            return None
        except StreamError as err:
            self.stream_error(err)
            return None
        except Exception:
            log.exception("c2s_internal_error state=%s", self.state.value)
            self.stream_error(StreamError("internal-server-error"))
            return None
        return resume(steps, yielded)

    async def _await_step(self, pending: Awaitable[None], rest: list[Any]) -> None:
        try:
            await pending
        except StreamError as err:
            self.stream_error(err)
        except Exception:
            log.exception("c2s_internal_error state=%s", self.state.value)
            self.stream_error(StreamError("internal-server-error"))
        self._busy = False
        if self.fsm.state is S.CLOSED:
            return
        if rest:
            self._process(rest)
        if not self._busy:
            backlog, self._backlog = self._backlog, []
            for index, chunk in enumerate(backlog):
                if self._busy:
                    self._backlog.extend(backlog[index:])
                    break
                if isinstance(chunk, XMLStreamError):
                    self.stream_error(StreamError(chunk.condition, chunk.text))
                    return
                self.data_received(chunk)
            if not self._busy:
                self.conn.resume_reading()

    def eof_received(self) -> None:
        # The client half-closed without </stream:stream>: nothing more can arrive, so the
        # session ends; our pending output is still flushed before the socket closes.
        if self.resumable:
            # XEP-0198 §5: no </stream:stream>, so not a clean end: the session may stay
            # resumable (connection_lost follows the abort).
            self.conn.abort()
            return
        self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        was_state = self.fsm.state
        if was_state is S.SESSION_ESTABLISHED and not self._closing and not self._ended \
                and self.server.hooks.fold(H.SESSION_SUSPEND, False, self):
            # XEP-0198 §5: a module keeps the session for a client that resumes it.
            self.fsm.goto(S.RESUME_SESSION)
            log.info("c2s_session_suspended jid=%s", self.jid)
            return
        if was_state is not S.CLOSED:
            self.fsm.goto(S.CLOSED)
        self._end_session("connection lost" if exc is None else f"connection lost: {exc}")

    def write_overflow(self) -> None:
        self.stream_error(StreamError("policy-violation", "client does not read its socket"))

    # -- ending -----------------------------------------------------------------------------
    def stream_error(self, err: StreamError) -> None:
        if self.fsm.state is S.CLOSED or self._closing:
            return
        if not self.stream_id and self.server.cfg["general"].get("hide_service_name"):
            self.log_stream_error(err)
            self._vanish()  # general.hide_service_name: no header, no error
            return
        super().stream_error(err)

    def log_stream_error(self, err: StreamError) -> None:
        log.info("c2s_stream_error condition=%s text=%s peer=%s jid=%s", err.condition, err.text,
                 self.conn.peer, self.jid)

    def _vanish(self) -> None:
        """Close at once: nothing more is written (no stream error, no </stream:stream>)."""
        self._closing = True
        self.fsm.goto(S.CLOSED)
        self.conn.abort()

    def on_closing(self) -> None:
        self._end_session("closed")

    # -- events -----------------------------------------------------------------------------
    def _handle_event(self, event: Any) -> Awaitable[None] | None:
        if isinstance(event, Element):
            # Dispatch on (state, element): one lookup by state; by name only in the
            # negotiation states (an established session has just the stanza handler).
            by_name, default = self._dispatch[self.fsm.state]
            if by_name is None:
                return default(self, event)
            return by_name.get((event.xmlns, event.name), default)(self, event)
        if isinstance(event, StreamOpen):
            self._stream_open(event)
            return None
        if isinstance(event, StreamClose):
            self.close()
            return None
        return None

    def hibernate(self) -> bool:
        """Drop the parser of an idle established session (it is most of an idle connection's
        memory, DESIGN §3); ``data_received`` makes a primed one when bytes arrive. Called by
        the listener's periodic sweep: a session is idle if no byte came since the last one."""
        parser = self.parser
        if self._active:
            self._active = False
            return False
        if (parser is None or not parser.idle or not self._hibernatable
                or self.fsm.state is not S.SESSION_ESTABLISHED or self._busy):
            return False
        self.parser = None
        parser.release()
        return True

    # -- the stream header (RFC 6120 §4.7) ------------------------------------------------------
    def _stream_open(self, header: StreamOpen) -> None:
        if self.fsm.state is not S.WAIT_FOR_STREAM:
            raise StreamError("not-well-formed")
        if set(header.prefixes) - {"stream"}:
            # Prefixes we would not re-declare when re-making the parser: keep this one.
            self._hibernatable = False
        to = header.attrs.get("to")
        self.lang = header.attrs.get("xml:lang") or "en"
        domain = None
        if to:
            try:
                domain = JID.parse(to).domain
            except (InvalidJID, ValueError):
                domain = None
        if self.domain is None:
            self.domain = domain if domain and self.server.is_local_domain(domain) else None
        error = self._check_header(header, to, domain)
        if error is not None and self.server.cfg["general"].get("hide_service_name") \
                and self.user is None:
            # general.hide_service_name: a peer that cannot open a valid stream learns
            # nothing about what listens here (no header, no stream error, RFC 6120 §4.9.1.1
            # notwithstanding): the connection just closes.
            self._vanish()
            return
        self.stream_id = secrets.token_hex(8)
        self.conn.write(P.stream_header(self.stream_id, self.domain or self.server.default_domain,
                                        "en"))
        if error is not None:
            raise error
        if self.user is None:
            self._goto(S.WAIT_FOR_FEATURE_BEFORE_AUTH)
            self.send(P.features_element(self._features_before_auth()))
        else:
            self._goto(S.WAIT_FOR_FEATURE_AFTER_AUTH)
            self.send(P.features_element(self._features_after_auth()))

    def _check_header(self, header: StreamOpen, to: str | None,
                      domain: str | None) -> StreamError | None:
        """RFC 6120 §4.9.3: the stream error a bad header deserves, in the order a peer would
        want to hear about them."""
        if header.name != "stream" or header.xmlns != ns.STREAM:
            return StreamError("invalid-namespace")
        if header.content_ns != ns.CLIENT:
            return StreamError("invalid-namespace")
        if not to:
            return StreamError("host-unknown", "no 'to' in the stream header")
        if domain is None or not self.server.is_local_domain(domain):
            return StreamError("host-unknown")
        if self.domain != domain:
            return StreamError("host-unknown", "the domain changed on stream restart")
        version = header.attrs.get("version", "0.9")
        try:
            major = int(version.split(".")[0])
        except ValueError:
            major = 0
        if major < 1:
            return StreamError("unsupported-version")
        return None


_HOLDING: dict[type, type] = {}


def _holding(cls: type) -> type:
    """``cls`` (a C2S class: TCP, WebSocket, BOSH) whose ``deliver`` keeps what the router
    hands the session in its XEP-0198 buffer instead of writing it (``hold_for_stop``); no
    slot of its own, so an instance's class can become it."""
    made = _HOLDING.get(cls)
    if made is None:
        made = _HOLDING[cls] = type(f"Holding{cls.__name__}", (cls,),
                                    {"__slots__": (), "deliver": _hold})
    return made


def _hold(self: Any, stanza: Element) -> None:
    sm = self._sm
    plain: Any = type(self).__mro__[1]
    if sm is None or self.fsm.state is not S.SESSION_ESTABLISHED or self._closing \
            or stanza.name != "message" \
            or stanza.attrs.get("type") in ("groupchat", "headline", "error"):
        # Ending, or what offline storage would not keep (a room's message, presence, IQ):
        # written as to any session.
        plain.deliver(self, stanza)
        return
    filtered = self.server.hooks.fold(H.USER_RECEIVE_PACKET, stanza, self)
    if filtered is None:
        return
    try:
        sm.stanza_out(filtered)
    except BufferOverflow:
        self.server.undeliverable(filtered, self)

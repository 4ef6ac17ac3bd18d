"""``mod_websockets``: XMPP over WebSocket (RFC 7395) as a ``[[listen.http]]`` handler.

A WebSocket session is a c2s session like any other: the same ``C2S`` engine (SASL, SASL2,
Bind 2, FAST, stream management, every module) is driven through ``WebSocketTransport``, which
offers the C2S the interface of the TCP driver (``net/connection.py``: write, close, abort,
pause/resume reading, ``peer``, ``tls``, ``loop``). Only the framing differs, and it is
translated here, at the edge, so the engine never knows:

- in: ``<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' .../>`` becomes the stream header
  the C2S parser expects (``<stream:stream xmlns='jabber:client' ...>``, same attributes);
  ``<close/>`` becomes ``</stream:stream>``; every other message (one complete element,
  RFC 7395 §3.3.3) is fed unchanged after it.
- out: each write of the C2S is one element (or our header, or ``</stream:stream>``) and
  becomes one text message: the header becomes ``<open/>``, the stream end ``<close/>``, and
  elements that relied on the stream's declarations get them (``xmlns='jabber:client'`` on
  stanzas, ``xmlns:stream`` on ``<stream:features/>`` and ``<stream:error/>``, §3.3.3).

Frames are written by us straight to the transport (unmasked text frames, RFC 6455 §5.2), all
the messages of one loop tick in one write, as the TCP driver coalesces; aiohttp does the
handshake, reads frames and closes. Pings are answered here and the idle timeout is one timer
per session, moved lazily (``_IdleTimer``): aiohttp's own receive timeout arms and cancels a
timer for every message read, which cost more than the rest of the WebSocket layer together.
Messages aiohttp has already read when the session looks are fed to the parser as one chunk
when they hold stanzas only (``_stanzas``): a parser feed per message made a message over
WebSocket cost the server half again as much as over TCP (docs/performance.md, "WebSocket").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import struct
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any
from xml.parsers import expat

from suricate.instrument.events import SPIRAL, declare
from suricate.net.http.forwarded import behind_tls_proxy, client_address
from suricate.net.http.message import Request, Response
from suricate.net.output_cap import OutputCap, after_write
from suricate.protocol.c2s import C2SState as S
from suricate.protocol.errors import StreamError
from suricate.xml import ns
from suricate.xml.element import escape_attr

if TYPE_CHECKING:
    from aiohttp import web

    from suricate.core.c2s import C2S
    from suricate.core.server import Server
    from suricate.net.http.listener import HttpListener

log = logging.getLogger("suricate.websocket")

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
SUBPROTOCOL = "xmpp"
# Past this much unsent data the C2S is told (it ends the stream), as on TCP; one element
# larger than this is allowed on top while it drains (see suricate/net/output_cap.py).
MAX_WRITE_BUFFER = 4 * 1024 * 1024
# How long a closing handshake may take before the connection is dropped.
CLOSE_TIMEOUT = 5.0

WS_DATA_RECEIVED = declare(
    "mod_websocket_data_received", (), {"byte_size": SPIRAL},
    "Data received from clients over WebSocket (text message payloads).")
WS_DATA_SENT = declare(
    "mod_websocket_data_sent", (), {"byte_size": SPIRAL},
    "Data sent to clients over WebSocket (text message payloads).")

_OPEN = f"<open xmlns='{FRAMING}'".encode()
_CLOSE = f"<close xmlns='{FRAMING}'/>".encode()
_STREAM_CLOSE = b"</stream:stream>"
_CLIENT_NS = f' xmlns="{ns.CLIENT}"'.encode()
_STREAM_NS = f' xmlns:stream="{ns.STREAM}"'.encode()
_XMLNS = b' xmlns="'
_TAG = re.compile(rb"<[^\s/>]+")
# RFC 7395 §3.3.2: the framing elements, told from stanzas by their name alone (the start of
# a message, whitespace stripped).
_FRAMING_ELEMENT = re.compile(r"<(open|close)(?=[\s/>]|$)")
_XML_DECLARATION = re.compile(r"^\s*<\?xml\s[^>]*\?>")
_HEADER_ATTR = re.compile(rb"""([\w:.-]+)=(?:'([^']*)'|"([^"]*)")""")


class WebSocketEndpoint:
    """One ``[[listen.http.handlers.mod_websockets]]`` entry."""

    def __init__(self, server: Server, opts: Mapping[str, Any]) -> None:
        self.server = server
        self.opts = opts
        self.timeout: float | None = opts["timeout"] / 1000 if opts.get("timeout") else None
        self.ping_rate: float | None = opts["ping_rate"] / 1000 if opts.get("ping_rate") \
            else None
        # What the C2S reads from a c2s listener's options (MongooseIM 6.4 starts its
        # mongoose_c2s with the same defaults: access all, no shaper).
        self.c2s_opts: dict[str, Any] = {
            "access": "all", "shaper": "none",
            "max_stanza_size": opts.get("max_stanza_size"),
            "state_timeout": opts.get("state_timeout", 5000),
            "backwards_compatible_session": opts.get("backwards_compatible_session", True),
        }
        self.sessions: set[WebSocketTransport] = set()
        self.listener: HttpListener | None = None  # set by the listener serving this path
        #: What the server's hibernation sweep reads (core/hibernation.py): idle sessions
        #: drop their parser, as c2s connections do (DESIGN §3).
        self.swept = SweptSessions(self, lambda: self.sessions)

    async def handle(self, request: Request) -> Response:
        # Only reached without aiohttp (never in practice): handle_web serves the path.
        return Response.text(426, "WebSocket (RFC 7395) only\n", headers={"upgrade": "websocket"})

    async def handle_web(self, request: web.BaseRequest) -> web.StreamResponse:
        from aiohttp import web

        if request.headers.get("Upgrade", "").lower() != "websocket":
            # A plain GET (a browser opening the URL): say what is served here.
            return web.Response(status=426, text="XMPP over WebSocket (RFC 7395) only\n",
                                headers={"Upgrade": "websocket"})
        max_size = self.opts.get("max_stanza_size")
        ws = web.WebSocketResponse(
            # autoping off: pings and pongs reach the session, which answers pings and counts
            # both as activity for its idle timer (no receive_timeout: see _IdleTimer).
            protocols=(SUBPROTOCOL,), autoping=False, heartbeat=self.ping_rate,
            timeout=CLOSE_TIMEOUT,
            # A message a little over the stanza limit reaches the parser, which answers
            # with the policy-violation stream error; far over it, aiohttp closes (1009).
            max_msg_size=max_size * 2 + 4096 if max_size else 0,
            compress=False)
        await ws.prepare(request)
        if ws.ws_protocol != SUBPROTOCOL:
            # RFC 7395 §3.1: without the "xmpp" subprotocol this is no XMPP session; the
            # client did not offer it, so we close at once (1002: protocol error).
            log.info("websocket_refused peer=%s reason=no_xmpp_subprotocol offered=%s",
                     request.remote, request.headers.get("Sec-WebSocket-Protocol"))
            await ws.close(code=1002, message=b"RFC 7395: the xmpp subprotocol is required")
            return ws
        session = WebSocketTransport(self, ws, request)
        self.sessions.add(session)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)
        return ws

    def shutdown(self) -> None:
        """Server stopping: every WebSocket stream ends with system-shutdown."""
        for session in list(self.sessions):
            handler = session.handler
            if handler is not None:
                handler.stream_error(StreamError("system-shutdown"))


class SweptSessions:
    """What the hibernation sweep reads of a c2s listener, for the sessions of one HTTP
    endpoint (WebSocket here, BOSH in bosh.py): ``hibernate_after`` of the HTTP listener
    serving it, and its sessions (each with its ``handler``) as ``sessions()`` gives them."""

    __slots__ = ("endpoint", "_sessions")

    def __init__(self, endpoint: Any, sessions: Callable[[], Collection[Any]]) -> None:
        self.endpoint = endpoint  # has ``listener``: the HttpListener serving it, or None
        self._sessions = sessions

    @property
    def opts(self) -> Mapping[str, Any]:
        listener = self.endpoint.listener
        return listener.opts if listener is not None else {}

    @property
    def port(self) -> int | None:
        listener = self.endpoint.listener
        return listener.port if listener is not None else None

    @property
    def connections(self) -> Collection[Any]:
        return self._sessions()


class WebSocketTransport:
    """What a C2S sees of its WebSocket: the TCP driver's interface."""

    __slots__ = ("endpoint", "ws", "transport", "loop", "peer", "tls", "handler", "closing",
                 "instrument", "connection_type", "_readable", "_out", "_flush_handle",
                 "_lost", "_close_task", "_cap", "last_in", "_idle")

    def __init__(self, endpoint: WebSocketEndpoint, ws: web.WebSocketResponse,
                 request: web.BaseRequest) -> None:
        self.endpoint = endpoint
        self.ws = ws
        self.transport = request.transport
        self.loop = asyncio.get_running_loop()
        direct = self.transport.get_extra_info("peername") if self.transport else None
        self.peer = client_address(direct, request.headers)
        ssl_object = self.transport.get_extra_info("ssl_object") if self.transport else None
        self.tls: _StdlibTLS | None = _StdlibTLS(ssl_object) if ssl_object is not None \
            else _StdlibTLS(None) if behind_tls_proxy(direct, request.headers) else None
        self.instrument = endpoint.server.instrument
        self.connection_type = "c2s"
        self.closing = False
        self._readable = asyncio.Event()
        self._readable.set()
        self._out: list[bytes] = []
        self._flush_handle: asyncio.Handle | None = None
        self._lost = False
        self._close_task: asyncio.Task[Any] | None = None
        self._cap: OutputCap | None = None  # made when the buffer first goes over the limit
        #: When the client last sent anything (a message, a ping, a pong): _IdleTimer reads it.
        self.last_in = _monotonic()
        self._idle = _IdleTimer(self, endpoint.timeout) if endpoint.timeout else None
        self.handler: C2S | None = endpoint.server.make_c2s(
            self, endpoint.c2s_opts)  # the same c2s engine as TCP

    # -- reading --------------------------------------------------------------------------------
    async def run(self) -> None:
        from aiohttp import WebSocketError, WSMsgType

        ws = self.ws
        reason: Exception | None = None
        text, ping, pong = WSMsgType.TEXT, WSMsgType.PING, WSMsgType.PONG
        # The messages aiohttp has read and not yet handed out (a deque of (message, size)),
        # looked at only to tell whether more stanzas wait: None on an aiohttp without it.
        waiting = getattr(getattr(ws, "_reader", None), "_buffer", None)
        if not isinstance(waiting, deque):
            waiting = None
        try:
            while not self.closing:
                if not self._readable.is_set():
                    await self._readable.wait()
                    if self.closing:
                        break
                msg = await ws.receive()
                kind = msg.type
                self.last_in = _monotonic()
                if kind is text:
                    data = msg.data
                    if waiting and _stanza_only(data):
                        # More messages read already: the stanzas among them go to the parser
                        # as one chunk, as several stanzas in one TCP read do (the cost of a
                        # parser feed is paid once, not per message).
                        batch = [data]
                        while waiting and len(batch) < MAX_BATCH:
                            # By the message's names, not its place in aiohttp's private
                            # tuple: anything unexpected ends the batch, never the stream.
                            queued = waiting[0][0]
                            following = getattr(queued, "data", None)
                            if getattr(queued, "type", None) is not text \
                                    or not isinstance(following, str) \
                                    or not _stanza_only(following):
                                break
                            batch.append((await ws.receive()).data)  # queued: no wait
                        if len(batch) > 1:
                            self._stanzas(batch)
                            continue
                    self._text(data)
                elif kind is ping:  # RFC 6455 §5.5.2: answered with its application data
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await ws.pong(msg.data)
                elif kind is pong:  # an answer to our ping_rate pings (aiohttp's heartbeat)
                    continue
                elif kind == WSMsgType.BINARY:
                    # RFC 7395 §3.2: XMPP messages are text frames (UTF-8) only.
                    self._error(StreamError("bad-format", "binary frames are not XMPP "
                                                          "(RFC 7395 §3.2)"))
                else:  # CLOSE, CLOSING, CLOSED, ERROR: the client went away
                    if msg.type == WSMsgType.ERROR:
                        reason = msg.data if isinstance(msg.data, Exception) else None
                        if isinstance(reason, WebSocketError):
                            self._refused(reason)
                    break
        finally:
            if self._idle is not None:
                self._idle.cancel()
            if self._close_task is not None and not self._close_task.done():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(self._close_task), CLOSE_TIMEOUT)
            self._connection_lost(reason)

    def _text(self, text: str) -> None:
        handler = self.handler
        if handler is None:
            return
        data = text.encode()
        if self.instrument.enabled:
            self.instrument.emit(WS_DATA_RECEIVED, {}, {"byte_size": len(data)})
        start = text.lstrip()[:7]
        if start.startswith("<?xml"):
            # RFC 7395 §3.3.3: a message is a complete XML document, which may begin with an
            # XML declaration (XML 1.0 §2.8); the stream's parser is past any place for one.
            text = _XML_DECLARATION.sub("", text, count=1)
            data = text.encode()
            start = text.lstrip()[:7]
        if not start.startswith("<"):
            # Not XML at all: expat could wait for more before it complains (text before the
            # root), and RFC 7395 §3.3.3 promises a complete element per message.
            self._error(StreamError("not-well-formed", "a WebSocket message must be an XML "
                                                       "element (RFC 7395 §3.3.3)"))
            return
        framing = _FRAMING_ELEMENT.match(start) if start.startswith(("<o", "<c")) else None
        if framing is not None and framing.group(1) == "open":
            if handler.state is not S.WAIT_FOR_STREAM:
                # RFC 7395 §3.7: <open/> starts a stream, or restarts it where a restart is
                # due (after SASL success); anywhere else the parser would take it for the
                # start of an element whose end never comes, and the session would hang.
                self._error(StreamError("not-well-formed", "<open/> where no stream restart "
                                                           "is due (RFC 7395 §3.7)"))
                return
            handler.data_received(self._stream_header(data))
            return
        if framing is not None:
            # RFC 7395 §3.6: the client ends the stream; the C2S answers <close/> and we
            # close the WebSocket.
            if handler.state is S.WAIT_FOR_STREAM:
                # No stream open (before the first <open/> or a restart's): nothing to parse
                # the end of; answered in kind all the same.
                if not handler.stream_id:
                    self.write(_STREAM_CLOSE)
                handler.close()
                return
            handler.data_received(_STREAM_CLOSE)
            return
        handler.data_received(data)
        self._check_complete(handler)

    def _stanzas(self, texts: list[str]) -> None:
        """Messages that each hold stanzas (``_stanza_only``), read together: fed as one chunk.
        RFC 7395 §3.3.3's complete element per message is checked at the end of the chunk:
        an element split across messages that arrived together is taken whole, like several
        elements in one message (see docs/http.md); one left unfinished still ends the
        stream."""
        handler = self.handler
        if handler is None:
            return
        chunks = [text.encode() for text in texts]
        if self.instrument.enabled:
            for chunk in chunks:
                self.instrument.emit(WS_DATA_RECEIVED, {}, {"byte_size": len(chunk)})
        handler.data_received(b"".join(chunks))
        self._check_complete(handler)

    def _check_complete(self, handler: C2S) -> None:
        parser = handler.parser
        if parser is not None and parser.depth > 1 and not self.closing:
            # RFC 7395 §3.3.3: each message is one complete element; an unfinished one
            # would leave the stream waiting for a continuation that must never come.
            self._error(StreamError("not-well-formed", "a WebSocket message must hold "
                                                       "complete elements (RFC 7395 §3.3.3)"))

    def _stream_header(self, data: bytes) -> bytes:
        """``<open/>`` (RFC 7395 §3.4) as the stream header the C2S parser expects: the same
        attributes, the framing namespace standing for the stream's. Another element or
        namespace gets the C2S's invalid-namespace stream error (RFC 6120 §4.9.3.10)."""
        attrs: dict[str, str] = {}
        tag: list[str] = []

        def start(name: str, attributes: dict[str, str]) -> None:
            if not tag:
                tag.append(name)
                attrs.update(attributes)

        parser = expat.ParserCreate("UTF-8", " ")
        parser.StartElementHandler = start
        parser.StartDoctypeDeclHandler = _refuse  # no DTD, no entities (RFC 6120 §11.1)
        parser.EntityDeclHandler = _refuse
        try:
            parser.Parse(data, True)
        except (expat.ExpatError, ValueError):
            return b"<>"  # the C2S parser reports not-well-formed
        name = tag[0] if tag else ""
        xmlns, _, local = name.rpartition(" ")
        # Anything but the framing namespace's <open/> gets a header in a namespace that is
        # not the stream's: the C2S answers with invalid-namespace.
        stream_ns = ns.STREAM if xmlns == FRAMING and local == "open" \
            else escape_attr(xmlns or "urn:suricate:no-namespace")
        out = [f"<stream:stream xmlns:stream='{stream_ns}' xmlns='{ns.CLIENT}'"]
        for key, value in attrs.items():
            key = "xml:lang" if key == "http://www.w3.org/XML/1998/namespace lang" else key
            if " " not in key:
                out.append(f" {key}='{escape_attr(value)}'")
        out.append(">")
        return "".join(out).encode()

    def idle_timeout(self) -> None:
        """mod_websockets ``timeout``: nothing (not even a pong) for that long."""
        handler = self.handler
        if handler is not None and handler.resumable:
            # The client most likely went away without closing (a phone asleep, a lost
            # network). RFC 7395 §3.6: a WebSocket that ends before the XMPP stream leaves a
            # session with resumption negotiated alive for the client to resume (XEP-0198
            # §5), as in MongooseIM, whose idle timeout closes the socket: so no stream
            # error, which would end the session, but a WebSocket close (1001, going away),
            # after which connection_lost suspends the session.
            log.info("websocket_idle_timeout peer=%s jid=%s action=suspend", self.peer,
                     handler.jid)
            self.close(code=1001)
            return
        self._error(StreamError("connection-timeout"))

    def _refused(self, exc: Exception) -> None:
        """aiohttp refused a message (too large, not UTF-8, bad framing) and has already sent
        its WebSocket close (1009, 1007, 1002): no stream error can follow a close frame
        (RFC 6455 §5.5.1), but the client broke the protocol, so the session ends with the
        condition the parser would have given (RFC 6120 §4.9.3) rather than wait for a
        resumption that would bring the same message again."""
        code = getattr(exc, "code", None)
        if code == 1009:
            err = StreamError("policy-violation", "message over the size limit")
        elif code == 1007:
            err = StreamError("unsupported-encoding", "text that is not UTF-8")
        else:
            err = StreamError("bad-format", str(exc))
        self._error(err)

    def _error(self, err: StreamError) -> None:
        if self.handler is not None and not self.closing:
            self.handler.stream_error(err)

    def _connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self.closing = True
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        handler, self.handler = self.handler, None
        if handler is not None:
            handler.connection_lost(exc)

    # -- what the C2S uses ----------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.closing:
            return
        self._out.append(data)
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self.flush)

    def flush_now(self) -> None:
        """``Connection.flush_now``: what is pending leaves now, not at the end of the tick."""
        handle = self._flush_handle
        if handle is not None:
            handle.cancel()
            self.flush()

    def flush(self) -> None:
        self._flush_handle = None
        if not self._out or self.transport is None or self.transport.is_closing():
            self._out.clear()
            return
        messages = [_to_message(data) for data in self._out]
        self._out.clear()
        if self.instrument.enabled:
            for message in messages:
                self.instrument.emit(WS_DATA_SENT, {}, {"byte_size": len(message)})
        frames = [_text_frame(message) for message in messages]
        data = b"".join(frames) if len(frames) > 1 else frames[0]
        self.transport.write(data)
        waiting = self.transport.get_write_buffer_size()
        if waiting > MAX_WRITE_BUFFER or self._cap is not None:
            self._cap, over = after_write(self._cap, len(data), waiting, MAX_WRITE_BUFFER)
            if over and self.handler:
                self.handler.write_overflow()

    def close(self, code: int = 1000) -> None:
        """Flush, then the WebSocket closing handshake (1000, RFC 6455 §7.4.1)."""
        if self.closing:
            return
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self.flush()
        self.closing = True
        self._readable.set()  # a paused reader wakes up to see it
        self._close_task = self.loop.create_task(self.ws.close(code=code))

    def abort(self) -> None:
        self.closing = True
        self._readable.set()
        if self.transport is not None:
            self.transport.abort()

    @property
    def reading(self) -> bool:
        return self._readable.is_set()

    def pause_reading(self) -> None:
        self._readable.clear()

    def resume_reading(self) -> None:
        self._readable.set()

    def start_tls(self, config: Any) -> None:  # never offered: the C2S has no TLS config
        raise RuntimeError("no STARTTLS over WebSocket")


_monotonic = time.monotonic  # the clock of asyncio's loop.time()
# At most this many messages read together are fed to the parser as one chunk.
MAX_BATCH = 64


def _stanza_only(text: str) -> bool:
    """A message that can be fed with others: an element that is neither a framing element
    (``<open/>``, ``<close/>``) nor after an XML declaration or whitespace (those go through
    ``_text``, one by one)."""
    return text[:1] == "<" and text[1:2] not in ("o", "c", "?")


class _IdleTimer:
    """mod_websockets ``timeout`` for one session, at the cost of a float stored per message
    received (``WebSocketTransport.last_in``): one timer, which when it fires early (something
    came meanwhile) moves itself to ``last_in + timeout`` rather than being cancelled and
    re-armed for every message."""

    __slots__ = ("session", "timeout", "_handle")

    def __init__(self, session: WebSocketTransport, timeout: float) -> None:
        self.session = session
        self.timeout = timeout
        self._handle: asyncio.TimerHandle | None = session.loop.call_at(
            session.last_in + timeout, self._fire)

    def _fire(self) -> None:
        session = self.session
        due = session.last_in + self.timeout
        if session.closing:
            self._handle = None
        elif not session.reading:
            # Reading paused (the C2S awaits a step): what the client sends waits unread, so
            # its silence is not known; as aiohttp's receive timeout, which only ran while
            # reading, the count starts again.
            self._handle = session.loop.call_at(_monotonic() + self.timeout, self._fire)
        elif due > _monotonic():  # something came meanwhile
            self._handle = session.loop.call_at(due, self._fire)
        else:
            self._handle = None
            session.idle_timeout()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class _StdlibTLS:
    """What the C2S and its modules ask of a TLS layer, for wss (stdlib ssl inside aiohttp,
    or ``None`` for TLS ended by a reverse proxy on this host): the stream is encrypted (PLAIN
    and FAST are offered, XEP-0484 §6), but stdlib ssl cannot export keying material (DESIGN
    §4) and a proxy's TLS is not ours to bind to, so no channel binding is offered: no -PLUS
    mechanisms, HT-*-NONE for FAST."""

    __slots__ = ("_ssl",)
    established = True
    closed = False
    alpn = None

    def __init__(self, ssl_object: Any) -> None:
        self._ssl = ssl_object

    @property
    def version(self) -> str:
        return str(self._ssl.version() or "") if self._ssl is not None else ""

    @property
    def tls_version(self) -> str:
        return self.version

    @property
    def server_name(self) -> str | None:
        return getattr(self._ssl, "server_hostname", None) if self._ssl is not None else None

    def peer_certificate(self) -> None:
        return None

    def binding(self, cb_type: str) -> bytes | None:
        return None

    def channel_binding_types(self) -> list[str]:
        return []


def _to_message(data: bytes) -> bytes:
    """One C2S write (an element, our stream header, or the stream end) as an RFC 7395
    message."""
    if data.startswith(b"<?xml") or data.startswith(b"<stream:stream"):
        data = data[data.find(b"<stream:stream"):]  # not the XML declaration's version
        attrs = b"".join(
            b" " + key + b"='" + (single or double) + b"'"
            for key, single, double in _HEADER_ATTR.findall(data)
            if not key.startswith(b"xmlns"))
        return _OPEN + attrs + b"/>"
    if data == _STREAM_CLOSE:
        return _CLOSE
    tag = _TAG.match(data)
    if tag is None:
        return data
    end = tag.end()
    if data.startswith(b"<stream:"):
        return data[:end] + _STREAM_NS + data[end:]
    # Our serializer writes an element's own namespace declaration right after its name, and
    # escapes quotes in attribute values: a declaration is there or nowhere. (Searching the
    # whole start tag would take a sender's id='a xmlns=b' for one and leave the stanza
    # without jabber:client.)
    if data.startswith(_XMLNS, end):
        return data
    return data[:end] + _CLIENT_NS + data[end:]


def _text_frame(payload: bytes) -> bytes:
    """An unmasked, final text frame (RFC 6455 §5.2; servers do not mask, §5.1)."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 65536:
        return struct.pack("!BBH", 0x81, 126, size) + payload
    return struct.pack("!BBQ", 0x81, 127, size) + payload


def _refuse(*args: Any) -> None:
    raise ValueError("DTD refused")

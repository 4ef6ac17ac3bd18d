"""``mod_bosh``: XMPP over BOSH (XEP-0124, XEP-0206) as a ``[[listen.http]]`` handler.

A BOSH session is one c2s session, whatever the HTTP connections under it: ``BoshSession``
offers the ``C2S`` engine the TCP driver's interface (as the WebSocket adapter does), so SASL,
SASL2, stream management and every module work unchanged. Translation at the edge:

- in: the session creation request and every ``xmpp:restart`` become the stream header the
  C2S parser expects; the children of each ``<body/>`` are fed in ``rid`` order;
  ``type='terminate'`` becomes ``</stream:stream>``.
- out: every element the C2S writes waits in the session until a request is held, then
  leaves in that request's response (all the elements of one loop tick in one body). Our
  stream header is not sent (its id is the creation response's ``authid``), the stream end
  becomes ``type='terminate'``.

Requests (XEP-0124 §§7-14): the server holds up to ``hold`` requests, answers the oldest when
it has data or after ``wait`` seconds, processes payloads strictly in ``rid`` order (a request
ahead of a gap waits for it, within the ``requests`` window), replays the cached response of
a ``rid`` it already answered (§14.3), and ends the session with ``item-not-found`` for a
``rid`` outside the window or an unknown ``sid``, ``bad-request`` for a malformed body. With
no request held for ``inactivity`` seconds (or the ``pause`` asked for, up to ``max_pause``),
the session ends as a lost connection (stream management may keep it resumable).
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Mapping
from pyexpat import ExpatError, ParserCreate
from typing import TYPE_CHECKING, Any, TypeAlias

from suricate.instrument.events import SPIRAL, declare
from suricate.net.http.forwarded import behind_tls_proxy, client_address
from suricate.net.http.message import Request, Response
from suricate.net.http.websocket import MAX_WRITE_BUFFER, SweptSessions, _to_message
from suricate.net.output_cap import OutputCap, after_write
from suricate.protocol.c2s import C2SState
from suricate.protocol.errors import StreamError
from suricate.xml import ns
from suricate.xml.element import Element, escape_attr
from suricate.xml.parser import StreamClose, StreamOpen, StreamParser, XMLStreamError

if TYPE_CHECKING:
    from aiohttp import web

    from suricate.core.c2s import C2S
    from suricate.core.server import Server
    from suricate.net.http.listener import HttpListener

log = logging.getLogger("suricate.bosh")

HTTPBIND = "http://jabber.org/protocol/httpbind"
XBOSH = "urn:xmpp:xbosh"
VERSION = "1.11"
DEFAULT_WAIT = 60
MAX_HOLD = 2
# XEP-0124 §7.2 'polling': the shortest interval (seconds) between two empty requests of a
# polling session (§12); sooner, and the session ends with policy-violation.
POLLING = 1
# XEP-0124 §7.1: the Content-Type of every response, unless the session asked for another
# with 'content'.
CONTENT_TYPE = "text/xml; charset=utf-8"
# What a 'content' attribute may ask for: a media type with parameters, nothing that would
# break the header line (a character reference can put a newline in an attribute value).
_CONTENT = re.compile(r"[\w.+-]+/[\w.+-]+(\s*;\s*[\w.+-]+=[\w.+\"-]+)*")
CORS = {"Access-Control-Allow-Origin": "*"}
PREFLIGHT = {**CORS, "Access-Control-Allow-Methods": "POST, OPTIONS",
             "Access-Control-Allow-Headers": "Content-Type", "Access-Control-Max-Age": "86400"}

BOSH_DATA_RECEIVED = declare(
    "mod_bosh_data_received", (), {"byte_size": SPIRAL},
    "Data received from clients over BOSH (request bodies).")
BOSH_DATA_SENT = declare(
    "mod_bosh_data_sent", (), {"byte_size": SPIRAL},
    "Data sent to clients over BOSH (response bodies).")

_STREAM_CLOSE = b"</stream:stream>"
_RESTART = re.compile(rb"""\s[\w.-]+:restart=['"]true['"]""")
_XMPP_VERSION = re.compile(rb"""\s[\w.-]+:version=['"]([0-9.]+)['"]""")
_STREAM_ID = re.compile(rb"""\sid=['"]([^'"]+)['"]""")
_STREAM_ERROR = re.compile(rb"<stream:error(?:\s[^>]*)?>(.*)</stream:error>", re.S)
_EMPTY = f"<body xmlns='{HTTPBIND}'/>".encode()


# What a request gets: its response body, or the future of it while the session holds it.
Answer: TypeAlias = bytes | asyncio.Future[bytes]


def _terminate(condition: str | None = None, content: bytes = b"") -> bytes:
    cond = f" condition='{condition}'" if condition else ""
    head = f"<body xmlns='{HTTPBIND}' type='terminate'{cond}"
    if not content:
        return (head + "/>").encode()
    return head.encode() + b" xmlns:stream='" + ns.STREAM.encode() + b"'>" + content + b"</body>"


class BoshEndpoint:
    """One ``[[listen.http.handlers.mod_bosh]]`` entry: the sessions by ``sid``."""

    def __init__(self, server: Server, opts: Mapping[str, Any],
                 mod_opts: Mapping[str, Any]) -> None:
        self.server = server
        self.opts = opts
        # [modules.mod_bosh] (inactivity, max_wait, server_acks, max_pause), or its defaults
        # when only the handler is configured: handed over by the server.
        self.mod_opts: Mapping[str, Any] = mod_opts
        self.c2s_opts: dict[str, Any] = {"access": "all", "shaper": "none",
                                         "max_stanza_size": None, "state_timeout": 5000,
                                         "backwards_compatible_session": True}
        self.sessions: dict[str, BoshSession] = {}
        self.listener: HttpListener | None = None  # set by the listener serving this path
        #: What the server's hibernation sweep reads (core/hibernation.py): an idle session
        #: drops its C2S parser, as c2s connections and WebSocket sessions do (DESIGN §3).
        self.swept = SweptSessions(self, self.sessions.values)

    async def handle(self, request: Request) -> Response:
        return Response.text(405, "BOSH: POST only\n", headers={"allow": "POST, OPTIONS"})

    async def handle_web(self, request: web.BaseRequest) -> web.StreamResponse:
        from aiohttp import web

        if request.method == "OPTIONS":  # CORS preflight of a page on another origin
            return web.Response(status=200, headers=PREFLIGHT)
        if request.method != "POST":
            return web.Response(status=405, text="XMPP over BOSH (XEP-0206): POST only\n",
                                headers={"Allow": "POST, OPTIONS", **CORS})
        if request.content.is_eof():
            # The whole body came with the headers (a BOSH body is small): no timeout to arm.
            body = await request.read()
        else:
            from suricate.net.http.web import answer_timeout, read_body

            late = await read_body(request)
            if late is None:
                return await answer_timeout(request)
            body = late
        instrument = self.server.instrument
        if instrument.enabled:
            instrument.emit(BOSH_DATA_RECEIVED, {}, {"byte_size": len(body)})
        answer, content_type = self.serve(body, request)
        # A held request (for up to 'wait', the whole life of an idle session) keeps nothing
        # of its body, and no coroutine frame but this one: the session's future is awaited
        # here, not through serve() and request() as coroutines (about 600 bytes each).
        del body
        out = answer if isinstance(answer, bytes) else await answer
        if instrument.enabled:
            instrument.emit(BOSH_DATA_SENT, {}, {"byte_size": len(out)})
        return web.Response(body=out, headers={"Content-Type": content_type, **CORS})

    def serve(self, raw: bytes, request: web.BaseRequest) -> tuple[Answer, str]:
        """The response body to one request (or the future of it, when held) and its
        Content-Type: the session's (§7.1), also for the response that ends it."""
        try:
            attrs, children = _parse_body(raw)
            rid = int(attrs["rid"])
        except (XMLStreamError, KeyError, ValueError):
            # XEP-0124 §17.2: a malformed body ends the session it names, if any.
            session = self.sessions.get(_sid_of(raw) or "")
            if session is not None:
                session.fail("bad-request")
                return _terminate("bad-request"), session.content_type
            return _terminate("bad-request"), CONTENT_TYPE
        sid = attrs.get("sid")
        if sid is None:
            session = BoshSession(self, secrets.token_urlsafe(16), request)
            self.sessions[session.sid] = session
            return session.create(rid, attrs), session.content_type
        session = self.sessions.get(sid)
        if session is None:
            # XEP-0124 §17.3: unknown sid
            return _terminate("item-not-found"), CONTENT_TYPE
        return session.request(rid, attrs, children, raw), session.content_type

    def shutdown(self) -> None:
        for session in list(self.sessions.values()):
            if session.handler is not None:
                session.handler.stream_error(StreamError("system-shutdown"))


class BoshSession:
    """One BOSH session; what its C2S sees is the TCP driver's interface."""

    __slots__ = ("endpoint", "sid", "loop", "peer", "tls", "handler", "closing", "wait",
                 "hold", "requests", "rid", "held", "ahead", "out", "cache", "stream_id",
                 "domain", "lang", "_idle_at", "_idle_handle", "_wait_handle", "_flush_handle",
                 "_terminated", "_pause",
                 "_ack_pending", "_created_rid", "content_type", "polling", "inactivity",
                 "_empty_poll_at", "ver", "_out_size", "_cap")

    def __init__(self, endpoint: BoshEndpoint, sid: str, request: web.BaseRequest) -> None:
        self.endpoint = endpoint
        self.sid = sid
        self.loop = asyncio.get_running_loop()
        transport = request.transport
        direct = transport.get_extra_info("peername") if transport else None
        # Behind a proxy on this host (nginx): the client's address and whether its TLS was
        # ended there, as for mod_websockets (forwarded.py); otherwise every client would be
        # 127.0.0.1 to registration_timeout and ip_access.
        self.peer = client_address(direct, request.headers)
        ssl_object = transport.get_extra_info("ssl_object") if transport else None
        from suricate.net.http.websocket import _StdlibTLS

        self.tls = _StdlibTLS(ssl_object) if ssl_object is not None \
            else _StdlibTLS(None) if behind_tls_proxy(direct, request.headers) else None
        self.handler: C2S | None = None
        self.closing = False
        self.wait = DEFAULT_WAIT
        self.hold = 1
        self.requests = 2
        self.rid = 0  # the last rid whose payload was processed
        # Requests held for the server's next words: (rid, future of the response body, when
        # 'wait' runs out for it). One timer per session (_wait_handle) for all of them, not
        # one per request: armed for the earliest, moved on when it fires early.
        # A list, not a deque: at most hold + 1 (3) entries, and an empty deque is 600 bytes
        # more than an empty list on an idle session.
        self.held: list[tuple[int, asyncio.Future[bytes], float]] = []
        self._wait_handle: asyncio.TimerHandle | None = None
        # Requests ahead of a gap in rids, waiting for it to fill (XEP-0124 §14.3).
        self.ahead: dict[int, tuple[dict[str, str], list[bytes], bytes,
                                    asyncio.Future[bytes]]] = {}
        self.out: list[bytes] = []  # elements for the next response
        # Their size: a client that stops asking (no request held, up to inactivity or
        # max_pause) while messages pour in is held to the output cap of the TCP and
        # WebSocket transports (suricate/net/output_cap.py), not to all the memory there is.
        self._out_size = 0
        self._cap: OutputCap | None = None
        self.cache: dict[int, bytes] = {}  # responses by rid, for replays
        self.stream_id = ""
        self.domain = ""
        self.lang = "en"
        # Inactivity (§10): when it ends the session (None while a request is held), and the
        # session's one timer for it, left armed (and moved on) when a request comes before.
        self._idle_at: float | None = None
        self._idle_handle: asyncio.TimerHandle | None = None
        self._flush_handle: asyncio.Handle | None = None
        self._terminated: bytes | None = None  # the terminate body, once the stream ended
        self._pause: int | None = None
        self._ack_pending = False
        self._created_rid = -1
        self.content_type = CONTENT_TYPE
        self.polling = False  # a polling session (XEP-0124 §12): no request is held
        self.inactivity: int | None = None  # seconds; None: as long as the client likes
        # When the last empty poll of a polling session came, while its answer brought
        # nothing (§12): the next empty poll must not come sooner than POLLING seconds.
        self._empty_poll_at: float | None = None
        self.ver = VERSION

    # -- requests -------------------------------------------------------------------------------
    def create(self, rid: int, attrs: dict[str, str]) -> Answer:
        mod = self.endpoint.mod_opts
        try:
            wait = int(attrs.get("wait", DEFAULT_WAIT))
            hold = int(attrs.get("hold", 1))
        except ValueError:
            self._forget()
            return _terminate("bad-request")
        if wait < 0 or hold < 0:
            self._forget()
            return _terminate("bad-request")
        content = attrs.get("content")
        if content is not None and _CONTENT.fullmatch(content):
            self.content_type = content  # §7.1: the Content-Type of all our responses
        max_wait = mod.get("max_wait")
        # XEP-0124 §7.1: 'wait' or 'hold' set to 0 asks for a polling session (§12): every
        # request is answered at once, one request at a time ('requests' 1).
        self.polling = wait == 0 or hold == 0
        # §7.2: our 'wait' MUST NOT be more than the client's
        self.wait = min(wait, max_wait) if max_wait else wait
        self.hold = 0 if self.polling else min(hold, MAX_HOLD)
        self.requests = self.hold + 1  # §7.2: one more than 'hold'
        self.inactivity = mod.get("inactivity")
        if self.polling and self.inactivity is not None:
            # §12: a polling session gets a longer inactivity, by more than 'polling'
            self.inactivity += 2 * POLLING
        self.rid = rid
        self.domain = attrs.get("to", "")
        self.lang = attrs.get("xml:lang", "en")
        self.ver = _version(attrs.get("ver"))
        self._ack_pending = attrs.get("ack") == "1" and bool(mod.get("server_acks"))
        self._created_rid = rid
        self.handler = self.endpoint.server.make_c2s(
            self, self.endpoint.c2s_opts)  # the same c2s engine as TCP
        future = self.loop.create_future()
        self._hold(rid, future)
        self._feed(self._stream_header(attrs.get("xmpp:version") or "1.0"))
        return future

    def request(self, rid: int, attrs: dict[str, str], children: list[bytes],
                raw: bytes) -> Answer:
        # The inactivity clock (§10) stops only when a request is held (_hold): a replay or
        # a request ahead of a gap that never fills must not keep a session forever.
        if rid <= self.rid:
            cached = self.cache.get(rid)
            if cached is not None:
                # XEP-0124 §14.3: the client lost our response; same again. That is a
                # response: the inactivity clock starts again from it (§10).
                self._restart_idle()
                return cached
            for index, (held_rid, held, _deadline) in enumerate(self.held):
                if held_rid == rid:
                    # XEP-0124 §14.3: the connection broke before we answered and the client
                    # sent the same request again: the copy takes the held one's place.
                    return self._rehold(index, held)
            self.fail("item-not-found")
            return _terminate("item-not-found")
        if rid > self.rid + self.requests:
            self.fail("item-not-found")  # far outside the window: not this client
            return _terminate("item-not-found")
        future = self.loop.create_future()
        earlier = self.ahead.get(rid)
        if earlier is not None and not earlier[3].done():
            # The same request again while it waits for a gap (§14.3): the copy waits in its
            # place; the earlier connection, if still there, gets an empty body.
            earlier[3].set_result(self._body(b"", rid))
        self.ahead[rid] = (attrs, children, raw, future)
        while self.rid + 1 in self.ahead:
            next_rid = self.rid + 1
            a, c, r, f = self.ahead.pop(next_rid)
            self.rid = next_rid
            self._process(next_rid, a, c, r, f)
        return future

    def _rehold(self, index: int, old: asyncio.Future[bytes]) -> asyncio.Future[bytes]:
        """The held request at ``index`` was sent again: the new copy is held instead, with a
        fresh ``wait``. The old connection, if it is still there, gets an empty body."""
        rid = self.held[index][0]
        future = self.loop.create_future()
        # later than the deadline the wait timer is armed for: it moves on when it fires
        self.held[index] = (rid, future, self.loop.time() + self.wait)
        if not old.done():
            old.set_result(self._body(b"", rid))
        return future

    def _process(self, rid: int, attrs: dict[str, str], children: list[bytes], raw: bytes,
                 future: asyncio.Future[bytes]) -> None:
        if self._terminated is not None:
            self._answer(rid, future, self._terminated)
            self._forget()
            return
        self._hold(rid, future)
        if self.polling and self._too_soon(attrs, children, raw):
            self.fail("policy-violation")  # XEP-0124 §12: polling too often
            return
        pause = attrs.get("pause")
        if pause is not None:
            try:
                seconds = int(pause)
            except ValueError:
                seconds = -1
            if not 0 < seconds <= self.endpoint.mod_opts.get("max_pause", 120):
                self.fail("policy-violation")  # XEP-0124 §10: pause over maxpause
                return
            self._pause = seconds
            self._release(all_held=True)  # §10: answer every held request now
        if _RESTART.search(raw[:raw.find(b">")]):
            # XEP-0206 §5: a stream restart (after SASL); the C2S made a new parser for it.
            # At any other time the header would open an element inside the stream that
            # swallows every later stanza: a request we cannot accept (XEP-0124 §17.2).
            handler = self.handler
            if handler is not None and handler.fsm.state is not C2SState.WAIT_FOR_STREAM:
                self.fail("bad-request")
                return
            self._feed(self._stream_header("1.0"))
        handler = self.handler
        if len(children) > 1 and handler is not None \
                and handler.fsm.state is C2SState.SESSION_ESTABLISHED:
            # One parser feed for the stanzas of a request, as a TCP read brings several.
            # Not before: a child (SASL success) may restart the stream mid-request.
            self._feed(b"".join(children))
        else:
            for child in children:
                self._feed(child)
        if attrs.get("type") == "terminate":
            self._feed(_STREAM_CLOSE)  # XEP-0124 §12: the client ends the session
        self._schedule()

    def _too_soon(self, attrs: dict[str, str], children: list[bytes], raw: bytes) -> bool:
        """XEP-0124 §12: two empty polls in a row sooner than 'polling' seconds apart, the
        first answered with nothing. A request with payloads, 'pause', 'type' or a restart is
        not an empty poll."""
        if (children or "pause" in attrs or "type" in attrs
                or _RESTART.search(raw[:raw.find(b">")])):
            self._empty_poll_at = None
            return False
        now = self.loop.time()
        last, self._empty_poll_at = self._empty_poll_at, now
        return last is not None and now - last < POLLING

    def _hold(self, rid: int, future: asyncio.Future[bytes]) -> None:
        self._idle_at = None  # a request is held: no inactivity (§10)
        # A polling session answers at the end of this loop tick (_flush), with what the
        # request's payloads brought by then; 'wait' is only a safety net there.
        deadline = self.loop.time() + (max(self.wait, 1) if self.polling else self.wait)
        self.held.append((rid, future, deadline))
        if self._wait_handle is None:
            # Every later request's deadline is later ('wait' is the session's): one timer.
            self._wait_handle = self.loop.call_at(deadline, self._wait_expired)
        while len(self.held) > max(self.hold, 1):
            self._release()  # §11: over hold, the oldest is answered (empty if nothing)
        if self.polling:
            self._schedule()

    def _wait_expired(self) -> None:
        """The wait timer: every held request whose 'wait' ran out gets an empty body; the
        timer moves on to the next deadline, if any."""
        self._wait_handle = None
        now = self.loop.time()
        expired = False
        index = 0
        while index < len(self.held):
            rid, future, deadline = self.held[index]
            if deadline <= now:
                del self.held[index]
                self._answer(rid, future, self._body(b"", rid))  # with 'ack' (§9.1)
                expired = True
            else:
                index += 1
        if self.held:
            self._wait_handle = self.loop.call_at(min(d for _, _, d in self.held),
                                                  self._wait_expired)
        if expired:
            self._idle()

    def _release(self, all_held: bool = False) -> None:
        while self.held:
            rid, future, _deadline = self.held.pop(0)
            content = b"".join(self.out)
            self.out.clear()
            self._out_size = 0
            if content:
                self._empty_poll_at = None  # §12: that poll brought something
            self._answer(rid, future, self._body(content, rid))
            if not all_held:
                break
        self._idle()

    def _answer(self, rid: int, future: asyncio.Future[bytes], body: bytes) -> None:
        if not future.done():
            future.set_result(body)
        self.cache[rid] = body
        # Keep the responses a client may still ask for again (its window of requests).
        for old in [r for r in self.cache if r <= rid - self.requests]:
            del self.cache[old]

    def _body(self, content: bytes, rid: int = -1) -> bytes:
        attrs = ""
        if rid == self._created_rid:
            mod = self.endpoint.mod_opts
            inactivity = self.inactivity
            attrs = (f" sid='{self.sid}' wait='{self.wait}' requests='{self.requests}'"
                     f" hold='{self.hold}' ver='{self.ver}' polling='{POLLING}'"
                     f" maxpause='{mod.get('max_pause', 120)}'"
                     + (f" inactivity='{inactivity}'" if inactivity else "")
                     + f" from='{escape_attr(self.domain)}' authid='{self.stream_id}'"
                     f" xmlns:xmpp='{XBOSH}' xmpp:version='1.0' xmpp:restartlogic='true'")
            if self.tls is not None:
                attrs += " secure='true'"
            if self._ack_pending:
                attrs += f" ack='{rid}'"
        elif self._ack_pending and rid != self.rid and rid >= 0:
            attrs = f" ack='{self.rid}'"  # XEP-0124 §9.1: the highest rid processed
        if not content:
            return f"<body xmlns='{HTTPBIND}'{attrs}/>".encode() if attrs else _EMPTY
        return (f"<body xmlns='{HTTPBIND}' xmlns:stream='{ns.STREAM}'{attrs}>".encode()
                + content + b"</body>")

    def _idle(self) -> None:
        """No request held: the inactivity clock runs (XEP-0124 §7.1, §10)."""
        if self.held or self._idle_at is not None:
            return
        seconds = self._pause or self.inactivity
        self._pause = None
        if seconds:
            at = self._idle_at = self.loop.time() + seconds
            handle = self._idle_handle
            if handle is not None and handle.when() > at:
                handle.cancel()  # a 'pause' shorter than what it was armed for
                handle = None
            if handle is None:
                self._idle_handle = self.loop.call_at(at, self._inactive)

    def _restart_idle(self) -> None:
        self._idle_at = None
        self._idle()

    def _inactive(self) -> None:
        self._idle_handle = None
        at = self._idle_at
        if self.held or at is None:
            return
        if at > self.loop.time():
            # A request came and went since the timer was armed: the clock started again.
            self._idle_handle = self.loop.call_at(at, self._inactive)
            return
        self._idle_at = None
        log.info("bosh_session_inactive sid=%s", self.sid)
        self.fail("item-not-found")  # requests still ahead of a gap learn it ended

    def fail(self, condition: str) -> None:
        """End the session with a terminal binding condition (XEP-0124 §17)."""
        body = _terminate(condition)
        while self.held:
            rid, future, _deadline = self.held.pop(0)
            self._answer(rid, future, body)
        for _, _, _, future in self.ahead.values():
            if not future.done():
                future.set_result(body)
        self.ahead.clear()
        self._forget()
        self._lost()

    def _forget(self) -> None:
        self.endpoint.sessions.pop(self.sid, None)
        self._idle_at = None
        for handle in (self._idle_handle, self._wait_handle):
            if handle is not None:
                handle.cancel()
        self._idle_handle = self._wait_handle = None

    def _lost(self) -> None:
        self.closing = True
        handler, self.handler = self.handler, None
        if handler is not None:
            handler.connection_lost(None)

    # -- the C2S side ---------------------------------------------------------------------------
    def _stream_header(self, version: str) -> bytes:
        return (f"<stream:stream xmlns='{ns.CLIENT}' xmlns:stream='{ns.STREAM}'"
                f" to='{escape_attr(self.domain)}' version='{escape_attr(version)}'"
                f" xml:lang='{escape_attr(self.lang)}'>").encode()

    def _feed(self, data: bytes) -> None:
        if self.handler is not None and not self.closing:
            self.handler.data_received(data)

    def write(self, data: bytes) -> None:
        if self.closing:
            return
        if data.startswith(b"<?xml") or data.startswith(b"<stream:stream"):
            found = _STREAM_ID.search(data)
            if found:
                self.stream_id = found.group(1).decode()
            return
        if data == _STREAM_CLOSE:
            return  # the terminate body says it (close() follows)
        self.out.append(_to_message(data))
        waiting = self._out_size = self._out_size + len(data)
        if waiting > MAX_WRITE_BUFFER or self._cap is not None:
            self._cap, over = after_write(self._cap, len(data), waiting, MAX_WRITE_BUFFER)
            if over:
                # Not from here: the stream error it writes would come back to this check.
                self.loop.call_soon(self._overflow)
        self._schedule()

    def flush_now(self) -> None:
        """``Connection.flush_now``: what is pending leaves now (on a held request), not at
        the end of the tick."""
        handle = self._flush_handle
        if handle is not None:
            handle.cancel()
            self._flush()

    def _overflow(self) -> None:
        if self.handler is not None and not self.closing:
            self.handler.write_overflow()  # policy-violation: the session ends

    def _schedule(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        if self.held and (self.out or self.polling):
            # a polling session answers every request now, empty if nothing came (§12)
            self._release(all_held=self.polling)

    def close(self) -> None:
        """The stream ended (our </stream:stream>): the next response terminates."""
        if self.closing:
            return
        self.closing = True
        # XEP-0206 "remote-stream-error": the terminate body holds a copy of the content
        # of <stream:error/> (its condition, text, application element), not the element.
        error = False
        for index, element in enumerate(self.out):
            if element.startswith(b"<stream:error"):
                error = True
                found = _STREAM_ERROR.fullmatch(element)
                if found:
                    self.out[index] = found.group(1)
        body = _terminate("remote-stream-error" if error else None, b"".join(self.out))
        self.out.clear()
        self._out_size = 0
        self._terminated = body
        if self.held:
            rid, future, _deadline = self.held.pop(0)
            self._answer(rid, future, body)
            while self.held:
                rid, future, _deadline = self.held.pop(0)
                self._answer(rid, future, _terminate())
            self._forget()
        else:
            # Delivered on the next request; gone after the inactivity time anyway.
            self._idle()
        self.handler = None  # the C2S ended its session itself

    def abort(self) -> None:
        self.fail("undefined-condition")

    def pause_reading(self) -> None:
        pass  # requests are fed as they come; the C2S keeps its own backlog while busy

    def resume_reading(self) -> None:
        pass

    def start_tls(self, config: Any) -> None:
        raise RuntimeError("no STARTTLS over BOSH")


class _NotPlain(Exception):
    """The body is not of the plain kind ``_parse_plain`` takes."""


_BODY_NAME = HTTPBIND + " body"
# An empty <body/> whose attributes have plain names (no prefix) and printable ASCII values
# with nothing to decode or normalize (no reference, no tab or newline, XML 1.0 §3.3.3).
_WS = rb"[ \t\r\n]"
_ATTRIBUTE = re.compile(_WS + rb"+([A-Za-z_][A-Za-z0-9_.-]*)" + _WS + rb"*=" + _WS
                        + rb"""*(?:'([ !"#-%(-;=-~]*)'|"([ !#-%'-;=-~]*)")""")
_EMPTY_BODY = re.compile(rb"<body((?:" + _ATTRIBUTE.pattern + rb")*)" + _WS + rb"*/>" + _WS
                         + rb"*")


def _parse_plain(raw: bytes) -> tuple[dict[str, str], list[bytes]] | None:
    """``_parse_body`` for the common body, without building its children: their own bytes,
    for the C2S parser to build once. A body is plain when its start tag declares no prefix
    and has no namespaced attribute, it holds only whitespace between its children, each
    child declares its own default namespace (so that, with no prefix from ``<body/>``, a
    child parses the same in the C2S stream as inside ``<body/>``), and it has no markup
    declaration, comment, processing instruction or CDATA. Anything else (None) takes
    ``_parse_body``, which also reports what is wrong with a malformed body."""
    empty = _EMPTY_BODY.fullmatch(raw)
    if empty is not None:
        # an empty body (a poll), the most frequent: a strict subset of XML, no parser
        pairs = _ATTRIBUTE.findall(empty.group(1))
        attrs = {key.decode(): (single or double).decode() for key, single, double in pairs}
        if len(attrs) == len(pairs) and attrs.pop("xmlns", None) == HTTPBIND:
            return attrs, []
    if b"<!" in raw or b"<?" in raw:
        return None
    parser = ParserCreate("UTF-8", " ")
    parser.buffer_text = True
    depth = 0
    own_default = False
    root: dict[str, str] = {}
    starts: list[int] = []
    end = -1

    def ns_decl(prefix: str | None, uri: str) -> None:
        nonlocal own_default
        if depth == 0:
            if prefix is not None:
                raise _NotPlain
        elif depth == 1 and prefix is None:
            own_default = True  # declared on the child about to start

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal depth, own_default, root
        depth += 1
        if depth == 2:
            if not own_default:
                raise _NotPlain
            own_default = False
            starts.append(parser.CurrentByteIndex)
        elif depth == 1:
            if name != _BODY_NAME or any(" " in key for key in attrs):
                raise _NotPlain
            root = attrs

    def finish(name: str) -> None:
        nonlocal depth, end
        depth -= 1
        if depth == 0:
            end = parser.CurrentByteIndex

    def text(data: str) -> None:
        if depth == 1 and not data.isspace():
            raise _NotPlain

    parser.StartNamespaceDeclHandler = ns_decl
    parser.StartElementHandler = start
    parser.EndElementHandler = finish
    parser.CharacterDataHandler = text
    try:
        parser.Parse(raw, True)
    except (ExpatError, _NotPlain):
        return None
    finally:
        # parser -> handlers -> their cell of 'parser': a cycle per request for the cyclic
        # collector, unless broken here
        parser.StartNamespaceDeclHandler = parser.StartElementHandler = None
        parser.EndElementHandler = parser.CharacterDataHandler = None
    if end < 0:
        return None
    bounds = [*starts, end]
    return root, [raw[bounds[i]:bounds[i + 1]] for i in range(len(starts))]


def _parse_body(raw: bytes) -> tuple[dict[str, str], list[bytes]]:
    """The attributes of ``<body/>`` and its children serialized for the C2S stream (RFC 6120
    §11 restrictions apply: no DTD, no entities). The common body takes ``_parse_plain``."""
    plain = _parse_plain(raw)
    if plain is not None:
        return plain
    parser = StreamParser()
    events = parser.feed(raw)
    if not events or not isinstance(events[0], StreamOpen):
        raise XMLStreamError("bad-format")
    head = events[0]
    if head.name != "body" or head.xmlns != HTTPBIND or not isinstance(events[-1], StreamClose):
        raise XMLStreamError("bad-format")
    attrs = dict(head.attrs)
    found = _XMPP_VERSION.search(raw[:raw.find(b">")])
    if found:
        attrs["xmpp:version"] = found.group(1).decode()
    children = [e.to_bytes(ns.CLIENT) for e in events[1:-1] if isinstance(e, Element)]
    return attrs, children


def _version(asked: str | None) -> str:
    """XEP-0124 §7.2: the lower of our BOSH version and the client's 'ver', each number of
    "major.minor" an integer of its own; ours when the client's is missing or not a
    version."""
    ours = tuple(int(n) for n in VERSION.split("."))
    try:
        major, minor = (asked or "").split(".")
        theirs = (int(major), int(minor))
    except ValueError:
        return VERSION
    if theirs >= ours or min(theirs) < 0:
        return VERSION
    return f"{theirs[0]}.{theirs[1]}"


def _sid_of(raw: bytes) -> str | None:
    found = re.search(rb"""\ssid=['"]([^'"]+)['"]""", raw[:2048])
    return found.group(1).decode() if found else None

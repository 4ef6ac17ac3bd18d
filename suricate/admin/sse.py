"""Server-Sent Events streams that are sessions of an account: what the REST client API's
``GET /sse`` (``rest/sse.py``) and the GraphQL subscriptions at ``{path}/sse``
(``endpoint.py``) share.

The connection is a session of the account: MongooseIM 6.4 opens one in its session manager
for both (``mongoose_stanza_api:open_session``) with the resource ``sse-<uuid>`` and priority
1, so the router hands it what it hands an available resource. Here an ``SseSession`` enters
the session table the same way:

- a message to the bare JID reaches it as it reaches every available resource with a
  non-negative priority (RFC 6121 §8.5.2.1.1): the account's XMPP sessions still get theirs;
  with the stream as its only session the account is online, and such a message is delivered
  to the stream, not stored offline (6.4 the same). Offline messages stored earlier stay for
  the next XMPP session (only an available presence flushes them);
- MUC Light rooms deliver their messages and affiliation changes to the members' available
  sessions, so to it as well;
- it has no presence: contacts never see it; no privacy or blocking list applies to it and it
  gets no carbons (6.4's SSE session has none);
- with ``sm_backend = "redis"`` the session table's observer announces it like any session, so
  messages routed on other nodes reach it.

What each API makes of a delivered stanza is its own (``convert``, called at delivery with
the delivery time in microseconds, None to drop the stanza), and so is how an item becomes an
event on the wire (``render``, called as the stream writes it). A stream ends when the client
closes it (noticed within ``POLL``), at server stop, when the account is removed, after
``MAX_QUEUE`` items the client did not read, and after ``idle_timeout`` seconds without an
event when one is given.

A stanza delivered to a stream in the moment between the client leaving and the stream
noticing it is not written anywhere: as with an XMPP session whose TCP connection died
unnoticed, the server had handed it over.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from suricate.core import hooks as H

if TYPE_CHECKING:
    from aiohttp import web

    from suricate.core.server import Server
    from suricate.jid import JID
    from suricate.net.http.message import Response
    from suricate.xml.element import Element

log = logging.getLogger("suricate.sse")

Item = TypeVar("Item")
#: A delivered stanza and the delivery time (microseconds) -> what the stream queues, or None.
Convert = Callable[["Element", int], "Item | None"]
#: A queued item -> the event written: (event name or None for the default, JSON data), or
#: None to write nothing for it.
Render = Callable[[Item], Awaitable["tuple[str | None, Any] | None"]]

#: Items waiting for a client that does not read: past this, its stream ends.
MAX_QUEUE = 1000
#: How often the stream checks that the client is still there.
POLL = 1.0
#: A comment line this often keeps proxies from closing an idle stream.
KEEPALIVE = 25.0


class SseSession(Generic[Item]):
    """One SSE connection as a session of the table (see the module's docstring)."""

    __slots__ = ("jid", "priority", "presence", "module_state", "queue", "ended", "convert")

    def __init__(self, jid: JID, convert: Convert[Item]) -> None:
        self.jid = jid
        self.priority = 1  # 6.4's open_session
        self.presence: Element | None = None  # never shown to contacts
        self.module_state: dict[str, Any] = {}
        self.queue: asyncio.Queue[Item | None] = asyncio.Queue()
        self.ended = False
        self.convert = convert

    @property
    def available(self) -> bool:
        """Takes what the router hands the account's available resources."""
        return not self.ended

    def deliver(self, stanza: Element) -> None:
        if self.ended:
            return
        item = self.convert(stanza, time.time_ns() // 1000)
        if item is None:
            return
        if self.queue.qsize() >= MAX_QUEUE:
            log.warning("sse_client_too_slow jid=%s", self.jid)
            self.end()
            return
        self.queue.put_nowait(item)

    def send(self, element: Element) -> None:
        """What a module sends a session directly (roster pushes): as delivered."""
        self.deliver(element)

    def replaced(self) -> None:
        self.end()

    def stream_error(self, error: object) -> None:
        """What ends a c2s session (account removal, a kick): the stream ends."""
        self.end()

    def end(self) -> None:
        if not self.ended:
            self.ended = True
            self.queue.put_nowait(None)

    def __repr__(self) -> str:
        return f"<SseSession {self.jid}>"


class SseStreams:
    """The SSE sessions of one HTTP handler: opened into the session table, streamed, closed."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.sessions: set[SseSession[Any]] = set()
        self._hooked = False

    def open(self, account: JID, convert: Convert[Item]
             ) -> SseSession[Item]:
        """A session ``account/sse-<uuid>`` in the table, delivering what ``convert`` keeps;
        the caller streams it (``stream``) or closes it."""
        if not self._hooked:
            self._hooked = True
            self.server.hooks.add(H.REMOVE_USER, self.remove_user)
        session = SseSession(account.bare.with_resource(f"sse-{uuid.uuid4()}"), convert)
        self.sessions.add(session)
        old = self.server.sessions.register(session)
        if old is not None:  # a random resource: never in practice
            old.replaced()
        log.info("sse_opened jid=%s", session.jid)
        return session

    def close(self, session: SseSession[Any]) -> None:
        session.end()
        if session in self.sessions:
            self.sessions.discard(session)
            self.server.sessions.unregister(session)
            log.info("sse_closed jid=%s", session.jid)

    async def remove_user(self, acc: None, jid: JID) -> None:
        for session in [s for s in self.sessions if s.jid.bare == jid.bare]:
            session.end()

    def shutdown(self) -> None:
        for session in list(self.sessions):
            session.end()
        if self._hooked:
            self.server.hooks.remove(H.REMOVE_USER, self.remove_user)
            self._hooked = False

    async def stream(self, request: web.BaseRequest, session: SseSession[Item],
                     headers: dict[str, str], render: Render[Item],
                     idle_timeout: float | None = None) -> web.StreamResponse:
        """Answer 200 ``text/event-stream`` and write ``session``'s events until it ends;
        the session is closed however the stream ends."""
        from aiohttp import web

        response = web.StreamResponse(status=200, headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache", **headers})
        try:
            await response.prepare(request)
            await _pump(request, response, session, render, idle_timeout)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.close(session)
        return response


async def _pump(request: web.BaseRequest, response: web.StreamResponse,
                session: SseSession[Item], render: Render[Item],
                idle_timeout: float | None) -> None:
    loop = asyncio.get_running_loop()
    number = 0
    last_write = last_event = loop.time()
    while True:
        try:
            item = await asyncio.wait_for(session.queue.get(), POLL)
        except TimeoutError:
            transport = request.transport
            if transport is None or transport.is_closing():
                return  # the client left
            now = loop.time()
            if idle_timeout is not None and now - last_event >= idle_timeout:
                log.info("sse_idle_timeout jid=%s", session.jid)
                return
            if now - last_write >= KEEPALIVE:
                last_write = now
                await response.write(b": keepalive\n\n")
            continue
        if item is None:
            return
        event = await render(item)
        if event is None:
            continue
        last_write = last_event = loop.time()
        number += 1
        name, payload = event
        data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        head = f"id: {number}\n" if name is None else f"id: {number}\nevent: {name}\n"
        await response.write(f"{head}data: {data}\n\n".encode())


def to_web(response: Response) -> web.Response:
    """A document answer (an error before the stream starts) as aiohttp's response."""
    from aiohttp import web

    return web.Response(status=response.status, body=response.body, headers=response.headers)

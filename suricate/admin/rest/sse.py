"""The client API's ``sse`` part: ``GET {path}/sse`` streams what reaches the user as
Server-Sent Events, as MongooseIM 6.4's ``mongoose_client_api_sse``.

The connection is a session of the account: 6.4 opens one in its session manager
(``mongoose_stanza_api:open_session``) with the resource ``sse-<uuid>`` and priority 1, so the
router hands it what it hands an available resource. Here an ``SseSession`` enters the
session table the same way:

- a message to the bare JID reaches it as it reaches every available resource with a
  non-negative priority (RFC 6121 §8.5.2.1.1): the account's XMPP sessions still get theirs;
  with the SSE connection as its only session the account is online, and such a message is
  delivered to it, not stored offline (6.4 the same). Offline messages stored earlier stay for
  the next XMPP session (only an available presence flushes them);
- MUC Light rooms deliver their messages and affiliation changes to the members' available
  sessions: these come as ``room.message`` events;
- it has no presence: contacts never see it, presence reaching it is dropped, and so is
  anything but a ``chat`` or ``groupchat`` message (6.4 sends events for those two types only);
  no privacy or blocking list applies to it and it gets no carbons (6.4's SSE session has none);
- with ``sm_backend = "redis"`` the session table's observer announces it like any session, so
  messages routed on other nodes reach it.

Events (6.4's names and payloads): ``message`` with ``{"from", "to", "id", "body",
"timestamp"}`` (plus ``thread``/``parent`` and Smack ``properties`` when the message has them),
``room.message`` with ``{"id", "from", "room", "timestamp", "type": "message", "body"}`` or
``{"type": "affiliation", "affiliation", "user"}``; each with an ``id`` counting from 1. As in
6.4, an event's ``timestamp`` is the time of delivery in **microseconds** (the archive reads
of ``GET /messages`` give milliseconds).

The stream ends when the client closes it (noticed within a second), at server stop, when the
account is removed, and after ``MAX_QUEUE`` events the client did not read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from suricate.admin.auth import Unauthorized, authenticate
from suricate.admin.rest.common import error_response
from suricate.core import hooks as H
from suricate.jid import JID, InvalidJID
from suricate.xml import ns

if TYPE_CHECKING:
    from aiohttp import web

    from suricate.core.server import Server
    from suricate.net.http.message import Response
    from suricate.xml.element import Element

log = logging.getLogger("suricate.rest.sse")

SMACK_PROPERTIES = "http://www.jivesoftware.com/xmlns/xmpp/properties"
CHAT_MARKERS = "urn:xmpp:chat-markers:0"
MUC_LIGHT_AFFILIATIONS = "urn:xmpp:muclight:0#affiliations"
#: Events waiting for a client that does not read: past this, its stream ends.
MAX_QUEUE = 1000
#: How often the stream checks that the client is still there.
POLL = 1.0
#: A comment line this often keeps proxies from closing an idle stream.
KEEPALIVE = 25.0


# -- JSON of a message, as 6.4 encodes it ------------------------------------------------------
def message_json(message: Element, timestamp: int) -> dict[str, Any]:
    """A one-to-one message (6.4's ``mongoose_client_api_messages:encode``)."""
    out: dict[str, Any] = {"from": message.attrs.get("from"), "to": message.attrs.get("to"),
                           "id": message.attrs.get("id"), "body": _text(message, "body"),
                           "timestamp": timestamp}
    props = message.find("properties", SMACK_PROPERTIES)
    if props is not None:
        out["properties"] = {p.find_text("name"): p.find_text("value")
                             for p in props.elements()}
    thread = _child(message, "thread")
    if thread is not None:
        out["thread"] = thread.text
        if "parent" in thread.attrs:
            out["parent"] = thread.attrs["parent"]
    return out


def room_message_json(message: Element, sender: JID, timestamp: int) -> dict[str, Any]:
    """A MUC Light room's message or affiliation change (6.4's
    ``mongoose_client_api_rooms_messages``); ``sender`` is room@service/member-bare-jid, or the
    room's bare JID for a notification."""
    entry: dict[str, Any] = {"id": message.attrs.get("id"),
                             "from": sender.resource or str(sender), "timestamp": timestamp}
    x = message.find("x", MUC_LIGHT_AFFILIATIONS)
    user = x.find("user", MUC_LIGHT_AFFILIATIONS) if x is not None else None
    if user is not None:
        entry.update({"type": "affiliation", "affiliation": user.attrs.get("affiliation"),
                      "user": user.text})
        return entry
    entry["type"] = "message"
    body = _text(message, "body")
    if body is not None:
        entry["body"] = body
    for child in message.elements():
        if child.xmlns == CHAT_MARKERS:
            if child.name == "markable":
                entry["markable"] = True
            else:
                entry["chat_marker"] = {"type": child.name, "id": child.attrs.get("id")}
            break
    return entry


def _child(message: Element, name: str) -> Element | None:
    found = message.find(name, ns.CLIENT)
    return found if found is not None else message.find(name)


def _text(message: Element, name: str) -> str | None:
    found = _child(message, name)
    return found.text if found is not None else None


def event_of(message: Element, timestamp: int) -> tuple[str, dict[str, Any]] | None:
    """The SSE event of a delivered stanza: (name, payload), None when 6.4 sends none."""
    if message.name != "message":
        return None
    mtype = message.attrs.get("type")
    if mtype == "chat":
        return "message", message_json(message, timestamp)
    if mtype == "groupchat":
        try:
            sender = JID.parse(message.attrs.get("from", ""))
        except (InvalidJID, ValueError):
            return None
        payload = room_message_json(message, sender, timestamp)
        payload["room"] = sender.local
        return "room.message", payload
    return None


# -- the session --------------------------------------------------------------------------------
class SseSession:
    """One SSE connection as a session of the table (see the module's docstring)."""

    __slots__ = ("jid", "priority", "presence", "module_state", "queue", "ended")

    def __init__(self, jid: JID) -> None:
        self.jid = jid
        self.priority = 1  # 6.4's open_session
        self.presence: Element | None = None  # never shown to contacts
        self.module_state: dict[str, Any] = {}
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()
        self.ended = False

    @property
    def available(self) -> bool:
        """Takes what the router hands the account's available resources."""
        return not self.ended

    def deliver(self, stanza: Element) -> None:
        if self.ended:
            return
        event = event_of(stanza, time.time_ns() // 1000)
        if event is None:
            return
        if self.queue.qsize() >= MAX_QUEUE:
            log.warning("sse_client_too_slow jid=%s", self.jid)
            self.end()
            return
        self.queue.put_nowait(event)

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
    """The SSE sessions of one ``mongoose_client_api`` handler."""

    def __init__(self, server: Server, opts: Any) -> None:
        self.server = server
        self.opts = opts
        self.sessions: set[SseSession] = set()
        self._hooked = False

    async def remove_user(self, acc: None, jid: JID) -> None:
        for session in [s for s in self.sessions if s.jid.bare == jid.bare]:
            session.end()

    def shutdown(self) -> None:
        for session in list(self.sessions):
            session.end()
        if self._hooked:
            self.server.hooks.remove(H.REMOVE_USER, self.remove_user)
            self._hooked = False

    async def serve(self, request: web.BaseRequest, cors: dict[str, str]) -> web.StreamResponse:
        from aiohttp import web

        try:
            caller = await authenticate(self.server, "user", self.opts,
                                        request.headers.get("Authorization"))
        except Unauthorized as err:
            return _aiohttp(error_response(
                401, str(err), {"www-authenticate": 'Basic realm="suricate", charset="UTF-8"',
                                **cors}))
        assert caller.jid is not None
        if not self._hooked:
            self._hooked = True
            self.server.hooks.add(H.REMOVE_USER, self.remove_user)
        session = SseSession(caller.jid.bare.with_resource(f"sse-{uuid.uuid4()}"))
        response = web.StreamResponse(status=200, headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache", **cors})
        await response.prepare(request)
        self.sessions.add(session)
        old = self.server.sessions.register(session)
        if old is not None:  # a random resource: never in practice
            old.replaced()
        log.info("sse_opened jid=%s", session.jid)
        try:
            await self._pump(request, response, session)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            session.end()
            self.sessions.discard(session)
            self.server.sessions.unregister(session)
            log.info("sse_closed jid=%s", session.jid)
        return response

    @staticmethod
    async def _pump(request: web.BaseRequest, response: web.StreamResponse,
                    session: SseSession) -> None:
        number = 0
        quiet = 0.0
        while True:
            try:
                event = await asyncio.wait_for(session.queue.get(), POLL)
            except TimeoutError:
                transport = request.transport
                if transport is None or transport.is_closing():
                    return  # the client left
                quiet += POLL
                if quiet >= KEEPALIVE:
                    quiet = 0.0
                    await response.write(b": keepalive\n\n")
                continue
            if event is None:
                return
            quiet = 0.0
            number += 1
            name, payload = event
            data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
            await response.write(f"id: {number}\nevent: {name}\ndata: {data}\n\n".encode())


def _aiohttp(response: Response) -> web.Response:
    from aiohttp import web

    return web.Response(status=response.status, body=response.body, headers=response.headers)

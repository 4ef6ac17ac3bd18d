"""The client API's ``sse`` part: ``GET {path}/sse`` streams what reaches the user as
Server-Sent Events, as MongooseIM 6.4's ``mongoose_client_api_sse``.

The connection is a session of the account, as 6.4's ``mongoose_stanza_api:open_session``
opens one (``suricate/admin/sse.py``: resource ``sse-<uuid>``, priority 1, no presence, what
the router hands an available resource). Of what reaches it, presence is dropped, and so is
anything but a ``chat`` or ``groupchat`` message (6.4 sends events for those two types only);
MUC Light rooms' messages and affiliation changes come as ``room.message`` events.

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

from typing import TYPE_CHECKING, Any

from suricate.admin.auth import Unauthorized, authenticate
from suricate.admin.rest.common import error_response
from suricate.admin.sse import SseStreams, to_web
from suricate.jid import JID, InvalidJID
from suricate.net.http.forwarded import client_address
from suricate.xml import ns

if TYPE_CHECKING:
    from aiohttp import web

    from suricate.xml.element import Element

SMACK_PROPERTIES = "http://www.jivesoftware.com/xmlns/xmpp/properties"
CHAT_MARKERS = "urn:xmpp:chat-markers:0"
MUC_LIGHT_AFFILIATIONS = "urn:xmpp:muclight:0#affiliations"


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


# -- the stream --------------------------------------------------------------------------------
async def _as_is(event: tuple[str, dict[str, Any]]) -> tuple[str | None, Any]:
    return event


async def serve(streams: SseStreams, opts: Any, request: web.BaseRequest,
                cors: dict[str, str]) -> web.StreamResponse:
    """``GET {path}/sse``: HTTP Basic as the other endpoints, then the account's stream."""
    try:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        caller = await authenticate(streams.server, "user", opts,
                                    request.headers.get("Authorization"),
                                    client_address(peer, request.headers))
    except Unauthorized as err:
        return to_web(error_response(
            401, str(err), {"www-authenticate": 'Basic realm="suricate", charset="UTF-8"',
                            **cors}))
    assert caller.jid is not None
    return await streams.stream(request, streams.open(caller.jid, event_of), cors, _as_is)

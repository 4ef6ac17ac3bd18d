"""``mongoose_client_api``: MongooseIM 6.4's REST client API, where a user authenticates with
HTTP Basic as its bare JID and password and acts on its own account: messages (send, archive),
contacts, and MUC Light rooms. Each endpoint runs the GraphQL user resolver that does the same
(so the rights of a member or an owner are the module's), with 6.4's JSON shapes.

``GET /sse`` holds the connection and streams what reaches the user (``sse.py``); aiohttp's
request goes to ``handle_web`` for that path only, every other request is a document.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from suricate.admin.rest.admin_api import (
    SUBSCRIPTION_ACTIONS,
    contact_json,
    iso,
    jid_arg,
    last_messages,
    micros_of,
    parsed,
)
from suricate.admin.rest.common import (
    Call,
    RestEndpoint,
    RestError,
    Route,
    json_response,
    no_content,
    route,
)
from suricate.admin.rest.sse import message_json, room_message_json, serve
from suricate.admin.sse import SseStreams
from suricate.jid import JID, InvalidJID
from suricate.net.http.message import Request

if TYPE_CHECKING:
    from collections.abc import Mapping

    from aiohttp import web

    from suricate.core.server import Server
    from suricate.net.http.message import Response

USER = "user"


def me(call: Call) -> JID:
    assert call.caller.jid is not None
    return call.caller.jid


async def run(call: Call, type_name: str, field: str, args: dict[str, Any],
              statuses: Mapping[str, int] | None = None) -> Any:
    return await call.run(type_name, field, args, endpoint=USER, statuses=statuses)


# -- messages ---------------------------------------------------------------------------------
async def send_message(call: Call) -> Response:
    to = call.field("to")
    body = call.field("body")
    jid_arg(to, "recipient")
    # The user API's sendMessage takes a full or bare JID of one's own as sender.
    result = await run(call, "StanzaUserMutation", "sendMessage",
                       {"from": str(me(call)), "to": to, "body": body})
    return json_response(200, {"id": result["id"]})


async def get_messages(call: Call) -> Response:
    with_jid = None
    if "with" in call.params:
        try:
            with_jid = JID.parse(call.params["with"])
        except (InvalidJID, ValueError):
            raise RestError(404, "Invalid interlocutor JID") from None
    limit = call.query_int("limit", 50, 0)
    before = call.query_int("before", None)
    assert limit is not None
    rows = await last_messages(call, me(call), with_jid, limit,
                               before * 1000 if before else None, endpoint=USER)
    return json_response(200, [message_json(message, micros // 1000)
                               for micros, _, message in rows])


# -- contacts ---------------------------------------------------------------------------------
async def list_contacts(call: Call) -> Response:
    items = await run(call, "RosterUserQuery", "listContacts", {})
    return json_response(200, [contact_json(i) for i in items])


async def add_contact(call: Call) -> Response:
    contact = jid_arg(call.field("jid", "JID"), "contact")
    await run(call, "RosterUserMutation", "addContact", {"contact": str(contact.bare)})
    return no_content()


async def contact_action(call: Call) -> Response:
    contact = jid_arg(call.params["jid"], "contact")
    action = SUBSCRIPTION_ACTIONS.get(call.field("action"))
    if action is None:
        raise RestError(400, "Invalid action")
    # 6.4: only a contact already in the roster can be invited or accepted.
    await run(call, "RosterUserQuery", "getContact", {"contact": str(contact.bare)})
    await run(call, "RosterUserMutation", "subscription",
              {"contact": str(contact.bare), "action": action})
    return no_content()


async def delete_contact(call: Call) -> Response:
    contact = jid_arg(call.params["jid"], "contact")
    await run(call, "RosterUserMutation", "deleteContact", {"contact": str(contact.bare)})
    return no_content()


async def delete_contacts(call: Call) -> Response:
    wanted = call.field("to_delete", kind=list)
    if not all(isinstance(j, str) for j in wanted):
        raise RestError(400, "Invalid to_delete: expected a list of JIDs")
    not_deleted = []
    for jid in wanted:
        try:
            await run(call, "RosterUserMutation", "deleteContact",
                      {"contact": str(jid_arg(jid, "contact").bare)})
        except RestError:
            not_deleted.append(jid)
    return json_response(200, {"not_deleted": not_deleted})


# -- rooms (MUC Light) ------------------------------------------------------------------------
def room_jid(call: Call) -> str:
    """``{id}`` is the room's name on the caller's MUC Light service, or its bare JID."""
    module = call.server.modules.get("mod_muc_light")
    if module is None:
        raise RestError(501, "mod_muc_light is not enabled")
    raw = call.params["id"]
    service = module.service_of(me(call).domain)  # type: ignore[attr-defined]
    try:
        jid = JID.parse(raw) if "@" in raw else JID(raw, service, None)
    except (InvalidJID, ValueError):
        raise RestError(400, "invalid_room_id") from None
    if jid.local is None or jid.resource is not None:
        raise RestError(400, "invalid_room_id")
    return str(jid)


#: The room exists but the caller may not do that (not a member, not the owner): 403.
ROOM_STATUSES = {"not_allowed": 403, "not_found": 404}


async def list_rooms(call: Call) -> Response:
    rooms = await run(call, "MUCLightUserQuery", "listRooms", {})
    out = []
    for jid in rooms:
        try:
            room = await run(call, "MUCLightUserQuery", "getRoomConfig", {"room": jid})
        except RestError:
            continue  # left or destroyed meanwhile
        out.append({"id": JID.parse(jid).local, "name": room["name"],
                    "subject": room["subject"]})
    return json_response(200, out)


async def get_room(call: Call) -> Response:
    room = await run(call, "MUCLightUserQuery", "getRoomConfig", {"room": room_jid(call)},
                     ROOM_STATUSES)
    return json_response(200, {
        "name": room["name"], "subject": room["subject"],
        "participants": [{"user": p["jid"], "role": str(p["affiliation"]).lower()}
                         for p in room["participants"]]})


async def _create_room(call: Call, room_id: str | None) -> Response:
    args: dict[str, Any] = {"mucDomain": me(call).domain, "name": call.field("name"),
                            "subject": call.field("subject")}
    if room_id is not None:
        args["id"] = room_id
    room = await run(call, "MUCLightUserMutation", "createRoom", args, ROOM_STATUSES)
    return json_response(201, {"id": JID.parse(room["jid"]).local})


async def create_room(call: Call) -> Response:
    return await _create_room(call, None)


async def create_room_with_id(call: Call) -> Response:
    return await _create_room(call, JID.parse(room_jid(call)).local)


async def change_config(call: Call) -> Response:
    await run(call, "MUCLightUserMutation", "changeRoomConfiguration",
              {"room": room_jid(call), "name": call.field("name"),
               "subject": call.field("subject")}, ROOM_STATUSES)
    return no_content()


async def add_user(call: Call) -> Response:
    user = jid_arg(call.field("user"), "user")
    await run(call, "MUCLightUserMutation", "inviteUser",
              {"room": room_jid(call), "recipient": str(user.bare)}, ROOM_STATUSES)
    return no_content()


async def remove_user(call: Call) -> Response:
    user = jid_arg(call.params["user"], "user")
    await run(call, "MUCLightUserMutation", "kickUser",
              {"room": room_jid(call), "user": str(user.bare)}, ROOM_STATUSES)
    return no_content()


async def room_messages(call: Call) -> Response:
    limit = call.query_int("limit", 50, 1)
    before = call.query_int("before", None)
    args: dict[str, Any] = {"room": room_jid(call), "pageSize": limit}
    if before:
        args["before"] = iso(before * 1000)
    page = await run(call, "MUCLightUserQuery", "getRoomMessages", args, ROOM_STATUSES)
    out = []
    for item in page["stanzas"]:
        message = parsed(item["stanza"])
        if message is None:
            continue
        out.append(room_message_json(message, JID.parse(item["sender"]),
                                     micros_of(item["timestamp"]) // 1000))
    return json_response(200, out)


async def send_room_message(call: Call) -> Response:
    body = call.field("body")
    await run(call, "MUCLightUserMutation", "sendMessageToRoom",
              {"room": room_jid(call), "body": body}, ROOM_STATUSES)
    return json_response(200, {"id": str(uuid.uuid4())})


async def sse_document(call: Call) -> Response:
    # GET /sse is served by ClientRestEndpoint.handle_web; this answers only without aiohttp.
    raise RestError(400, "open the stream with an HTTP client that reads text/event-stream")


ROUTES: list[Route] = [
    route("sse", "/sse", GET=sse_document),
    route("messages", "/messages", GET=get_messages, POST=send_message),
    route("messages", "/messages/{with}", GET=get_messages),
    route("contacts", "/contacts", GET=list_contacts, POST=add_contact,
          DELETE=delete_contacts),
    route("contacts", "/contacts/{jid}", PUT=contact_action, DELETE=delete_contact),
    route("rooms", "/rooms", GET=list_rooms, POST=create_room),
    route("rooms", "/rooms/{id}", GET=get_room, PUT=create_room_with_id),
    route("rooms_config", "/rooms/{id}/config", PUT=change_config),
    route("rooms_users", "/rooms/{id}/users", POST=add_user),
    route("rooms_users", "/rooms/{id}/users/{user}", DELETE=remove_user),
    route("rooms_messages", "/rooms/{id}/messages", GET=room_messages, POST=send_room_message),
]

class ClientRestEndpoint(RestEndpoint):
    endpoint = "user"

    def __init__(self, server: Server, opts: Mapping[str, Any]) -> None:
        super().__init__(server, opts, ROUTES, [])
        self.sse = SseStreams(server) if "sse" in opts["handlers"] else None

    def holds(self, method: str, path: str) -> bool:
        """The requests ``handle_web`` serves (the listener asks): ``GET /sse``."""
        return self.sse is not None and method == "GET" \
            and path.rstrip("/") == f"{self.base}/sse"

    async def handle_web(self, request: web.BaseRequest) -> web.StreamResponse:
        assert self.sse is not None
        return await serve(self.sse, self.opts, request, self.cors_headers(
            Request(request.method, request.path, "", "", {
                k.lower(): v for k, v in request.headers.items()})))

    def shutdown(self) -> None:
        """Server stop: the event streams end."""
        if self.sse is not None:
            self.sse.shutdown()

    def cors_headers(self, request: Request) -> dict[str, str]:
        origin = request.headers.get("origin")
        if origin is None:
            return {}
        return {"access-control-allow-origin": origin,
                "access-control-allow-methods": "GET, OPTIONS, POST, PUT, DELETE",
                "access-control-allow-credentials": "true",
                "access-control-allow-headers": "authorization, content-type"}

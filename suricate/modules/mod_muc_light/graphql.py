"""mod_muc_light's ``muc_light`` category of the GraphQL admin API (MongooseIM 6.4's names;
SDL next to this file). The resolvers run the module's own operations, so members are told
of every change exactly as when a client makes it."""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError

from suricate.admin.context import Context, enabled_module, fail, me, parse_jid
from suricate.jid import JID
from suricate.modules.mod_mam.query import parse_stamp, stamp_of
from suricate.modules.mod_muc_light import ModMucLight, bare
from suricate.modules.mod_muc_light.store import Room
from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element
from suricate.xml.parser import XMLStreamError, parse_fragment

#: Stanza error conditions of the operations as GraphQL error codes.
_CODES = {"item-not-found": "not_found", "not-allowed": "not_allowed",
          "conflict": "already_exists", "bad-request": "bad_request"}


def _module(ctx: Context) -> ModMucLight:
    return enabled_module(ctx, ModMucLight)


def _failed(err: StanzaError) -> GraphQLError:
    return fail(err.text or err.condition, _CODES.get(err.condition, "internal_error"))


def _room_arg(m: ModMucLight, value: Any) -> tuple[str, str]:
    room = parse_jid(value, "room", bare=True)
    if room.domain not in m.services:
        raise fail(f"room: {room.domain} is not a MUC Light service of this server",
                   "muc_server_not_found")
    return room.domain, room.local or ""


def _user(value: Any, what: str = "user") -> str:
    return bare(parse_jid(value, what, bare=None))


def _room_out(m: ModMucLight, service: str, name: str, room: Room) -> dict[str, Any]:
    options = m.schema.render(room.config)
    by_name = dict(options)
    return {
        "jid": f"{name}@{service}",
        "name": by_name.get("roomname"),
        "subject": by_name.get("subject"),
        "participants": [{"jid": j, "affiliation": a.upper()}
                         for j, a in sorted(room.affiliations.items())],
        "options": [{"key": k, "value": v} for k, v in options],
    }


def _options(name: str, subject: str, options: list[dict[str, str]] | None
             ) -> list[tuple[str, str]]:
    raw = [(o["key"], o["value"]) for o in options or []
           if o["key"] not in ("roomname", "subject")]
    return [("roomname", name), ("subject", subject), *raw]


async def create_room(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    m = _module(ctx)
    domain = str(a["mucDomain"]).strip().lower()
    service = domain if domain in m.services else m.service_of(domain)
    if service not in m.services:
        raise fail(f"mucDomain: {domain} is not a MUC Light service of this server",
                   "muc_server_not_found")
    owner = _user(a["owner"], "owner")
    if not await ctx.server.user_exists(JID.parse(owner)):
        raise fail(f"owner: {owner} does not exist", "user_not_found")
    raw = _options(a["name"], a["subject"], a.get("options"))
    room = a.get("id")
    if room is not None:
        checked = parse_jid(f"{room}@{service}", "id", bare=True)
        room = checked.local
    try:
        name, created = await m.create(owner, service, room, raw, [])
    except StanzaError as err:
        raise _failed(err) from None
    m.codec.notify_created(m, service, name, "", created, JID.parse(owner))
    return _room_out(m, service, name, created)


async def change_room_configuration(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    m = _module(ctx)
    service, name = _room_arg(m, a["room"])
    owner = _user(a["owner"], "owner")
    try:
        after, prev, delta = await m.change_config(owner, service, name,
                                                   _options(a["name"], a["subject"],
                                                            a.get("options")))
    except StanzaError as err:
        raise _failed(err) from None
    m.codec.notify_config(m, service, name, "", after, prev, delta)
    return _room_out(m, service, name, after)


async def invite_user(ctx: Context, a: dict[str, Any]) -> str:
    m = _module(ctx)
    service, name = _room_arg(m, a["room"])
    sender, recipient = _user(a["sender"], "sender"), _user(a["recipient"], "recipient")
    try:
        change = await m.change_affiliations(sender, service, name, [(recipient, "member")])
    except StanzaError as err:
        raise _failed(err) from None
    m.codec.notify_affiliations(m, service, name, "", JID.parse(sender), change)
    return "User invited successfully"


async def delete_room(ctx: Context, a: dict[str, Any], requester: str | None = None) -> str:
    m = _module(ctx)
    service, name = _room_arg(m, a["room"])
    try:
        members = await m.destroy(requester, service, name)
    except StanzaError as err:
        raise _failed(err) from None
    m.codec.notify_destroyed(m, service, name, "", members)
    return "Room deleted successfully"


async def kick_user(ctx: Context, a: dict[str, Any], requester: str | None = None) -> str:
    m = _module(ctx)
    service, name = _room_arg(m, a["room"])
    user = _user(a["user"])
    try:
        found = await m.room_of(service, name, requester)
        if user not in found.affiliations:
            raise StanzaError("item-not-found", f"{user} is not a member of the room")
        change = await m.change_affiliations(requester, service, name, [(user, "none")])
    except StanzaError as err:
        raise _failed(err) from None
    m.codec.notify_affiliations(m, service, name, "", None if requester is None
                                else JID.parse(requester), change)
    return "User kicked successfully"


async def send_message_to_room(ctx: Context, a: dict[str, Any]) -> str:
    m = _module(ctx)
    service, name = _room_arg(m, a["room"])
    sender = _user(a["from"], "from")
    msg = Element("message", ns.CLIENT, {"type": "groupchat"})
    msg.add("body", text=a["body"])
    try:
        async with m.lock(service, name):
            await m.send_message(sender, service, name, msg)
    except StanzaError as err:
        raise _failed(err) from None
    return "Message sent successfully"


async def get_room_messages(ctx: Context, a: dict[str, Any],
                            requester: str | None = None) -> dict[str, Any]:
    """The newest ``pageSize`` messages of the room's archive (mod_mam's muc section),
    older than ``before`` when given, oldest first (MongooseIM 6.4's argument names)."""
    m = _module(ctx)
    service, name = _room_arg(m, a["room"])
    found = await m.load(service, name)
    if found is None:
        raise fail(f"room: {name}@{service} does not exist", "not_found")
    if requester is not None and requester not in found.affiliations:
        raise fail("you are not a member of this room", "not_room_member")
    archive = m.archive()
    if archive is None:
        raise fail("MUC Light rooms are not archived: enable [modules.mod_mam.muc]",
                   "module_not_loaded")
    # 0 is refused as any page size below 1, not taken for the default (`or 50` did).
    limit = 50 if a.get("pageSize") is None else a["pageSize"]
    if limit < 1:
        raise fail("pageSize must be positive")
    before = None
    if a.get("before"):
        try:
            before = parse_stamp(str(a["before"]))
        except StanzaError:
            raise fail(f"before: not an XEP-0082 date and time: {a['before']}") from None
    room = JID._prepared(name, service, None)
    stanzas = []
    for mam_id, _, xml in await archive.recent(room, limit, before):
        try:
            message = parse_fragment(xml, ns.CLIENT)[0]
        except (XMLStreamError, IndexError):
            continue
        stanzas.append({"sender": message.attrs.get("from", str(room)),
                        "timestamp": stamp_of(mam_id), "stanza_id": str(mam_id),
                        "stanza": xml})
    return {"stanzas": stanzas, "limit": limit}


async def get_room_config(ctx: Context, a: dict[str, Any],
                          requester: str | None = None) -> dict[str, Any]:
    m = _module(ctx)
    service, name = _room_arg(m, a["room"])
    try:
        found = await m.room_of(service, name, requester)
    except StanzaError as err:
        raise _failed(err) from None
    return _room_out(m, service, name, found)


async def list_room_users(ctx: Context, a: dict[str, Any],
                          requester: str | None = None) -> list[dict[str, str]]:
    return (await get_room_config(ctx, a, requester))["participants"]  # type: ignore[no-any-return]


async def list_user_rooms(ctx: Context, a: dict[str, Any]) -> list[str]:
    m = _module(ctx)
    user = parse_jid(a["user"], bare=None)
    if not await ctx.server.user_exists(user.bare):
        raise fail(f"user: {user.bare} does not exist", "user_not_found")
    return [f"{room}@{service}" for service, room in await m.store.user_rooms(bare(user))
            if service in m.services]


def _service_for(m: ModMucLight, user: JID) -> str:
    return m.service_of(user.domain)


async def get_blocking_list(ctx: Context, a: dict[str, Any]) -> list[dict[str, str]]:
    m = _module(ctx)
    user = parse_jid(a["user"], bare=None)
    try:
        items = await m.blocking_get(bare(user), _service_for(m, user))
    except StanzaError as err:
        raise _failed(err) from None
    return [{"entityType": what.upper(), "action": "DENY", "entity": who}
            for what, who in items]


async def set_blocking_list(ctx: Context, a: dict[str, Any]) -> str:
    m = _module(ctx)
    user = parse_jid(a["user"], bare=None)
    if not await ctx.server.user_exists(user.bare):
        # A list stored for nobody would wait for whoever registers that name.
        raise fail(f"user: {user.bare} does not exist", "user_not_found")
    items = [(i["entityType"].lower(), i["action"].lower(), _user(i["entity"], "entity"))
             for i in a["items"]]
    try:
        await m.blocking_set(bare(user), _service_for(m, user), items)
    except StanzaError as err:
        raise _failed(err) from None
    return "User blocking list updated successfully"


ADMIN_RESOLVERS = {
    ("MUCLightAdminMutation", "createRoom"): create_room,
    ("MUCLightAdminMutation", "changeRoomConfiguration"): change_room_configuration,
    ("MUCLightAdminMutation", "inviteUser"): invite_user,
    ("MUCLightAdminMutation", "deleteRoom"): delete_room,
    ("MUCLightAdminMutation", "kickUser"): kick_user,
    ("MUCLightAdminMutation", "sendMessageToRoom"): send_message_to_room,
    ("MUCLightAdminMutation", "setBlockingList"): set_blocking_list,
    ("MUCLightAdminQuery", "getRoomMessages"): get_room_messages,
    ("MUCLightAdminQuery", "getRoomConfig"): get_room_config,
    ("MUCLightAdminQuery", "listRoomUsers"): list_room_users,
    ("MUCLightAdminQuery", "listUserRooms"): list_user_rooms,
    ("MUCLightAdminQuery", "getBlockingList"): get_blocking_list,
}


# -- the user API: the same operations, as the calling account ------------------------------
def _as(arg: str, fn: Any) -> Any:
    """Run an admin resolver with ``arg`` set to the caller's bare JID."""
    async def run(ctx: Context, a: dict[str, Any]) -> Any:
        return await fn(ctx, {**a, arg: bare(me(ctx))})
    return run


def _by_me(fn: Any) -> Any:
    """Run an admin resolver with the caller as the requester (member rights apply)."""
    async def run(ctx: Context, a: dict[str, Any]) -> Any:
        return await fn(ctx, a, bare(me(ctx)))
    return run


async def _kick_as_me(ctx: Context, a: dict[str, Any]) -> str:
    # 6.4: user omitted means the caller leaves.
    return await kick_user(ctx, {**a, "user": a.get("user") or bare(me(ctx))}, bare(me(ctx)))


USER_RESOLVERS = {
    ("MUCLightUserMutation", "createRoom"): _as("owner", create_room),
    ("MUCLightUserMutation", "changeRoomConfiguration"): _as("owner",
                                                             change_room_configuration),
    ("MUCLightUserMutation", "inviteUser"): _as("sender", invite_user),
    ("MUCLightUserMutation", "deleteRoom"): _by_me(delete_room),
    ("MUCLightUserMutation", "kickUser"): _kick_as_me,
    ("MUCLightUserMutation", "sendMessageToRoom"): _as("from", send_message_to_room),
    ("MUCLightUserMutation", "setBlockingList"): _as("user", set_blocking_list),
    ("MUCLightUserQuery", "getRoomMessages"): _by_me(get_room_messages),
    ("MUCLightUserQuery", "getRoomConfig"): _by_me(get_room_config),
    ("MUCLightUserQuery", "listRoomUsers"): _by_me(list_room_users),
    ("MUCLightUserQuery", "listRooms"): _as("user", list_user_rooms),
    ("MUCLightUserQuery", "getBlockingList"): _as("user", get_blocking_list),
}

"""mod_muc's `muc` category of the GraphQL API (MongooseIM 6.4's operations and argument
names; SDL next to this file, collected through `ModMuc.graphql`).

Operations that act as a user (enterRoom, exitRoom, sendMessageToRoom, sendPrivateMessage,
inviteUser) send the stanza that user's client would send, through the router: the room
applies XEP-0045's rules to it as to any client's, and its answers go to that user.

On a cluster (``sm_backend = "redis"``, placement.py) a room lives in one node's memory: an
operation on a room runs on the node owning the room's claim (this node claims it when nobody
does, as a stanza for the room would), asked over ``server.cluster.ask``; the answer, or the
error, comes back as if it ran here. listRooms asks every node for the rooms in its memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn

from graphql import GraphQLError

from suricate.admin.context import (
    Caller,
    Context,
    enabled_module,
    fail,
    me,
    parse_jid,
    served_domain,
)
from suricate.core.cluster import NodeUnreachable
from suricate.jid import JID, InvalidJID
from suricate.modules.mod_mam.query import parse_stamp, stamp_of
from suricate.modules.mod_muc import ModMuc
from suricate.modules.mod_muc.archive import archive_of
from suricate.modules.mod_muc.config import RoomConfig
from suricate.modules.mod_muc.room import MUC, MUC_USER, ROLES, Room
from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element
from suricate.xml.parser import XMLStreamError, parse_fragment

if TYPE_CHECKING:
    from suricate.core.server import Server

log = logging.getLogger("suricate.mod_muc")

Resolver = Callable[[Context, dict[str, Any]], Awaitable[Any]]

#: The ``server.cluster.ask`` operation running one of this category's operations on the
#: node of its room (registered by ModMuc.start on a cluster).
ANSWER_OP = "mod_muc.admin"
# An operation handed on this many times (claims moving meanwhile) fails rather than going on.
MAX_HOPS = 2

#: MUCRoomConfig(Input) field -> RoomConfig attribute.
_CONFIG_FIELDS = {
    "title": "title", "description": "description",
    "allowChangeSubject": "allow_change_subj", "allowQueryUsers": "allow_query_users",
    "allowPrivateMessages": "allow_private_messages",
    "allowVisitorStatus": "allow_visitor_status",
    "allowVisitorNickchange": "allow_visitor_nickchange", "public": "public",
    "publicList": "public_list", "persistent": "persistent", "moderated": "moderated",
    "membersByDefault": "members_by_default", "membersOnly": "members_only",
    "allowUserInvites": "allow_user_invites", "passwordProtected": "password_protected",
    "password": "password", "anonymous": "anonymous", "mayGetMemberList": "maygetmemberlist",
    "maxUsers": "max_users", "allowMultipleSession": "allow_multiple_sessions",
}


def _muc(ctx: Context) -> ModMuc:
    return enabled_module(ctx, ModMuc)


def _service(ctx: Context, muc: ModMuc, name: Any) -> str:
    service = str(name).strip().lower()
    if service not in muc.services:
        raise fail(f"{service} is not a MUC service of this server", "muc_service_not_found")
    return service


def _room_jid(ctx: Context, muc: ModMuc, value: Any) -> JID:
    jid = parse_jid(value, "room", bare=True)
    _service(ctx, muc, jid.domain)
    return jid


async def _room(ctx: Context, value: Any) -> tuple[ModMuc, Room]:
    muc = _muc(ctx)
    jid = _room_jid(ctx, muc, value)
    room = await muc.get_room(jid)
    if room is None or room.gone:
        raise fail(f"room {jid} does not exist", "room_not_found")
    return muc, room


def _user(ctx: Context, value: Any, what: str, full: bool | None = None) -> JID:
    jid = parse_jid(value, what, bare=None if full is None else not full)
    served_domain(ctx, jid.domain)
    return jid


def _desc(room_jid: str, config: dict[str, Any], users: int) -> dict[str, Any]:
    return {"jid": room_jid, "title": config.get("title") or room_jid.partition("@")[0],
            "private": not config.get("public", True), "usersNumber": users}


def _config_out(config: RoomConfig) -> dict[str, Any]:
    return {name: getattr(config, attr) for name, attr in _CONFIG_FIELDS.items()}


# -- queries ---------------------------------------------------------------------------------
def _sees(room: Room, viewer: JID) -> bool:
    """A hidden room is listed to those who have a place in it."""
    return room.affiliation(viewer) != "none" or viewer in room.by_jid


async def _rooms_everywhere(ctx: Context, muc: ModMuc, service: str,
                            viewer: JID | None) -> list[dict[str, Any]]:
    """listRooms on a cluster: the rooms in every node's memory (each node says which of its
    rooms ``viewer`` sees), and the stored rooms no node holds."""
    listed: dict[str, dict[str, Any]] = {}
    held: set[str] = set()
    here = {"mucDomain": service, "from": str(viewer) if viewer else None}

    async def rooms_of(node: str) -> Any:
        try:
            return await ctx.server.cluster.ask(node, ANSWER_OP, "_roomsHere", here,
                                                ctx.caller.kind, ctx.caller.domain, MAX_HOPS)
        except NodeUnreachable:
            return None

    nodes = await ctx.server.cluster.nodes()
    for node, reply in zip(nodes, await asyncio.gather(*map(rooms_of, nodes)), strict=True):
        if not isinstance(reply, tuple) or reply[0] != "ok":
            # Its rooms in memory are not listed; its stored ones are, from storage.
            log.warning("muc_list_rooms_no_answer node=%s", node)
            continue
        shown, hidden = reply[1]
        listed.update((d["jid"], d) for d in shown)
        held.update(d["jid"] for d in shown)
        held.update(hidden)
    for name, config in await muc.store.list_rooms(service):
        jid = f"{name}@{service}"
        if jid in held:
            continue
        if viewer is not None and not config.get("public", True):
            try:
                seen = await _dispatch(ctx, "_sees", {"room": jid, "from": str(viewer)}, 0)
            except GraphQLError:
                seen = False  # deleted meanwhile, or its node does not answer
            if not seen:
                continue
        listed[jid] = _desc(jid, dict(config), 0)
    return [listed[jid] for jid in sorted(listed)]


async def _rooms_here(ctx: Context, a: dict[str, Any]) -> tuple[list[Any], list[str]]:
    """The unlocked rooms in this node's memory: those shown to ``from``, and the others."""
    muc = _muc(ctx)
    service = _service(ctx, muc, a["mucDomain"])
    viewer = parse_jid(a["from"], "from") if a.get("from") else None
    shown, hidden = [], []
    for jid, room in sorted(muc.rooms.items(), key=lambda i: str(i[0])):
        if jid.domain != service or room.locked or room.gone:
            continue
        if viewer is not None and not room.config.public and not _sees(room, viewer):
            hidden.append(str(jid))
        else:
            shown.append(_desc(str(jid), room.config.to_dict(), len(room.occupants)))
    return shown, hidden


async def _room_sees(ctx: Context, a: dict[str, Any]) -> bool:
    _, room = await _room(ctx, a["room"])
    return _sees(room, parse_jid(a["from"], "from"))


async def list_rooms(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    muc = _muc(ctx)
    service = _service(ctx, muc, a["mucDomain"])
    viewer = _user(ctx, a["from"], "from") if a.get("from") else None
    rooms = []
    if muc.placement is not None:
        rooms = await _rooms_everywhere(ctx, muc, service, viewer)
    else:
        for name, room, config in await muc.room_names(service):
            jid = f"{name}@{service}"
            if viewer is not None and not config.get("public", True):
                room = room or await muc.get_room(JID._prepared(name, service, None))
                if room is None or not _sees(room, viewer):
                    continue
            rooms.append(_desc(jid, config, len(room.occupants) if room is not None else 0))
    index = a.get("index") or 0
    limit = a.get("limit")
    if index < 0 or (limit is not None and limit < 0):
        raise fail("limit and index must not be negative")
    page = rooms[index:] if limit is None else rooms[index:index + limit]
    return {"rooms": page, "count": len(rooms), "index": index,
            "first": page[0]["jid"] if page else None,
            "last": page[-1]["jid"] if page else None}


async def get_room_config(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    _, room = await _room(ctx, a["room"])
    return _config_out(room.config)


async def list_room_users(ctx: Context, a: dict[str, Any]) -> list[dict[str, Any]]:
    _, room = await _room(ctx, a["room"])
    return [{"jid": str(occ.jid), "nick": nick, "role": occ.role.upper()}
            for nick, occ in sorted(room.occupants.items())]


async def list_room_affiliations(ctx: Context, a: dict[str, Any]) -> list[dict[str, Any]]:
    _, room = await _room(ctx, a["room"])
    wanted = a.get("affiliation")
    out = [{"jid": str(jid), "affiliation": aff.upper()}
           for jid, (aff, _) in sorted(room.affiliations.items(), key=lambda i: str(i[0]))]
    return [o for o in out if wanted is None or o["affiliation"] == wanted]


async def get_room_messages(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    muc, room = await _room(ctx, a["room"])
    archive = archive_of(ctx.server)
    if archive is None or not archive.archives(room.jid.domain):
        raise fail("rooms of this service are not archived: enable [modules.mod_mam.muc]",
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
    stanzas = []
    for mam_id, _, xml in await archive.recent(room.jid, limit, before):
        try:
            message = parse_fragment(xml, ns.CLIENT)[0]
        except (XMLStreamError, IndexError):
            continue
        stanzas.append({"sender": message.attrs.get("from", str(room.jid)),
                        "timestamp": stamp_of(mam_id), "stanza_id": str(mam_id),
                        "stanza": xml})
    return {"stanzas": stanzas, "limit": limit}


# -- mutations ---------------------------------------------------------------------------------
async def create_instant_room(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    muc = _muc(ctx)
    service = _service(ctx, muc, a["mucDomain"])
    owner = _user(ctx, a["owner"], "owner")
    if not await ctx.server.user_exists(owner.bare):
        # 6.4 (admin_try_create_instant_room_with_nonexistent_user): no room for nobody.
        raise fail(f"owner: {owner.bare} not found", "user_not_found")
    if not str(a["nick"]).strip():
        raise fail("nick must not be empty")
    try:
        jid = JID.parse(f"{a['name']}@{service}")
    except ValueError:
        raise fail(f"name: {a['name']!r} is not a valid room name", "bad_jid") from None
    if jid.local is None or jid.resource is not None:
        raise fail(f"name: {a['name']!r} is not a valid room name", "bad_jid")
    if await muc.get_room(jid) is not None:
        raise fail(f"room {jid} already exists", "room_exists")
    room = muc.create_room(jid, owner)
    return _desc(str(jid), room.config.to_dict(), 0)


def _route(ctx: Context, frm: JID, to: JID, stanza: Element) -> None:
    stanza.attrs["from"] = str(frm)
    stanza.attrs["to"] = str(to)
    ctx.server.router.route(frm, to, stanza)


async def invite_user(ctx: Context, a: dict[str, Any]) -> str:
    _, room = await _room(ctx, a["room"])
    sender = _user(ctx, a["sender"], "sender")
    recipient = parse_jid(a["recipient"], "recipient")
    message = Element("message", ns.CLIENT)
    invite = message.add("x", MUC_USER).add("invite", attrs={"to": str(recipient)})
    if a.get("reason"):
        invite.add("reason", text=a["reason"])
    # Each session of the sender in the room would send it the same way (§7.8.2).
    occupant = next((j for j in room.by_jid if j.bare == sender.bare), None)
    if occupant is None:
        raise fail(f"{sender} is not in the room {room.jid}", "not_occupant")
    _route(ctx, occupant, room.jid, message)
    return "Invitation sent"


async def kick_user(ctx: Context, a: dict[str, Any]) -> str:
    _, room = await _room(ctx, a["room"])
    occ = room.occupants.get(a["nick"])
    if occ is None:
        raise fail(f"no occupant {a['nick']} in {room.jid}", "user_not_found")
    room._set_role(occ, "none", a.get("reason") or "", None)
    return f"User {a['nick']} kicked successfully"


async def send_message_to_room(ctx: Context, a: dict[str, Any]) -> str:
    _, room = await _room(ctx, a["room"])
    frm = _user(ctx, a["from"], "from", full=True)
    message = Element("message", ns.CLIENT, {"type": "groupchat"})
    message.add("body", text=a["body"])
    _route(ctx, frm, room.jid, message)
    return "Message sent successfully"


async def send_private_message(ctx: Context, a: dict[str, Any]) -> str:
    _, room = await _room(ctx, a["room"])
    frm = _user(ctx, a["from"], "from", full=True)
    message = Element("message", ns.CLIENT, {"type": "chat"})
    message.add("body", text=a["body"])
    _route(ctx, frm, room.jid.with_resource(a["toNick"]), message)
    return "Private message sent successfully"


async def delete_room(ctx: Context, a: dict[str, Any]) -> str:
    _, room = await _room(ctx, a["room"])
    room.destroy(None, a.get("reason"))
    return f"Room {room.jid} deleted successfully"


async def change_room_configuration(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    muc, room = await _room(ctx, a["room"])
    new = room.config.copy()
    for name, value in a["config"].items():
        if value is None:
            continue
        setattr(new, _CONFIG_FIELDS[name], list(value) if isinstance(value, list) else value)
    max_users = muc.opts["max_users"]
    if not 1 <= new.max_users <= max_users:
        raise fail(f"maxUsers: from 1 to {max_users}", "bad_config")
    if new.password_protected and not new.password and muc.http_auth is None:
        raise fail("a password-protected room needs a password", "bad_config")
    if "allowPrivateMessages" in a["config"]:
        new.allowpm = "anyone" if new.allow_private_messages else "none"
    room._reconfigure(new)
    return _config_out(room.config)


async def set_user_role(ctx: Context, a: dict[str, Any]) -> str:
    _, room = await _room(ctx, a["room"])
    role = str(a["role"]).lower()
    if role not in ROLES:
        raise fail(f"role: unknown {a['role']}")
    occ = room.occupants.get(a["nick"])
    if occ is None:
        raise fail(f"no occupant {a['nick']} in {room.jid}", "user_not_found")
    room._set_role(occ, role, "", None)
    return f"Role of {a['nick']} set to {role}"


async def set_user_affiliation(ctx: Context, a: dict[str, Any]) -> str:
    _, room = await _room(ctx, a["room"])
    user = parse_jid(a["user"], "user").bare
    aff = str(a["affiliation"]).lower()
    if aff != "owner" and room.affiliations.get(user, ("", ""))[0] == "owner" \
            and sum(1 for v in room.affiliations.values() if v[0] == "owner") == 1:
        raise fail("a room keeps at least one owner", "bad_affiliation")  # XEP-0045 §10.4
    room._set_affiliation(user, aff, "", None)
    return f"Affiliation of {user} set to {aff}"


async def enter_room(ctx: Context, a: dict[str, Any]) -> str:
    muc = _muc(ctx)
    room = _room_jid(ctx, muc, a["room"])
    user = _user(ctx, a["user"], "user", full=True)
    presence = Element("presence", ns.CLIENT)
    x = presence.add("x", MUC)
    if a.get("password"):
        x.add("password", MUC, text=a["password"])
    _route(ctx, user, room.with_resource(a["nick"]), presence)
    return "Entering the room"


async def exit_room(ctx: Context, a: dict[str, Any]) -> str:
    muc = _muc(ctx)
    room = _room_jid(ctx, muc, a["room"])
    user = _user(ctx, a["user"], "user", full=True)
    _route(ctx, user, room.with_resource(a["nick"]),
           Element("presence", ns.CLIENT, {"type": "unavailable"}))
    return "Exiting the room"


# -- the user API: the same operations as the calling account, with its rights ----------------
# 6.4's user muc category acts as the caller: an owner may read and change the configuration,
# read the affiliations and destroy the room; a moderator (an occupant whose role is
# moderator) may kick and change roles; an owner or admin may change affiliations (an admin,
# of those below admin only, XEP-0045 §9). Each check runs with the room, on its node: the
# caller's JID goes along as "_caller".
_RANK = {"outcast": -1, "none": 0, "member": 1, "admin": 2, "owner": 3}


def _caller(a: dict[str, Any]) -> JID:
    return JID.parse(str(a["_caller"]))


def _refuse(room: Room, caller: JID, what: str) -> NoReturn:
    raise fail(f"{caller} may not {what} in room {room.jid}", "not_allowed")


def _need_affiliation(room: Room, caller: JID, least: str, what: str) -> None:
    if _RANK[room.affiliation(caller)] < _RANK[least]:
        _refuse(room, caller, what)


def _need_moderator(room: Room, caller: JID, what: str) -> None:
    if not any(jid.bare == caller.bare and occ.role == "moderator"
               for jid, occ in room.by_jid.items()):
        _refuse(room, caller, what)


def _may_moderate(room: Room, caller: JID, nick: Any, what: str) -> None:
    """XEP-0045 §8.2, §9.6: a moderator, and an admin or owner only by one ranked above."""
    _need_moderator(room, caller, what)
    occ = room.occupants.get(str(nick))
    if occ is None:
        return  # the operation says there is no such occupant
    target = max((_RANK[room.affiliation(jid)] for jid in occ.sessions), default=0)
    if target >= _RANK["admin"] and target >= _RANK[room.affiliation(caller)]:
        _refuse(room, caller, f"{what} {nick}")


def _as_caller(fn: Resolver, check: Callable[[Room, JID], None]) -> Resolver:
    async def run(ctx: Context, a: dict[str, Any]) -> Any:
        _, room = await _room(ctx, a["room"])
        check(room, _caller(a))
        return await fn(ctx, a)
    return run


def _moderating(fn: Resolver, what: str) -> Resolver:
    async def run(ctx: Context, a: dict[str, Any]) -> Any:
        _, room = await _room(ctx, a["room"])
        _may_moderate(room, _caller(a), a.get("nick"), what)
        return await fn(ctx, a)
    return run


def _may_read_archive(room: Room, caller: JID) -> None:
    aff = room.affiliation(caller)
    if aff == "outcast" or (room.config.members_only and _RANK[aff] < _RANK["member"]):
        _refuse(room, caller, "read the archive")


def _may_list_users(room: Room, caller: JID) -> None:
    if _RANK[room.affiliation(caller)] < _RANK["member"] and \
            not any(jid.bare == caller.bare for jid in room.by_jid):
        _refuse(room, caller, "list the occupants")


async def _user_set_affiliation(ctx: Context, a: dict[str, Any]) -> str:
    _, room = await _room(ctx, a["room"])
    caller = _caller(a)
    mine = room.affiliation(caller)
    target = parse_jid(a["user"], "user").bare
    wanted = str(a["affiliation"]).lower()
    if mine != "owner" and (mine != "admin" or _RANK[room.affiliation(target)] >= _RANK["admin"]
                            or _RANK.get(wanted, 0) >= _RANK["admin"]):
        _refuse(room, caller, f"make {target} {wanted}")
    return await set_user_affiliation(ctx, a)


async def _in_room_as(ctx: Context, a: dict[str, Any]) -> JID:
    """The caller's session that speaks: caller/resource, or its session in the room."""
    caller = _caller(a)
    if a.get("resource"):
        return caller.with_resource(a["resource"])
    _, room = await _room(ctx, a["room"])
    mine = sorted((j for j in room.by_jid if j.bare == caller.bare), key=str)
    if not mine:
        raise fail(f"{caller} is not in room {room.jid}: give the resource of a session",
                   "not_occupant")
    return mine[0]


async def _user_send_message(ctx: Context, a: dict[str, Any]) -> str:
    return await send_message_to_room(ctx, {**a, "from": str(await _in_room_as(ctx, a))})


async def _user_send_private(ctx: Context, a: dict[str, Any]) -> str:
    return await send_private_message(ctx, {**a, "from": str(await _in_room_as(ctx, a))})


USER_ON_ROOM: dict[str, Resolver] = {
    "getRoomConfig": _as_caller(get_room_config, lambda r, c: _need_affiliation(
        r, c, "owner", "read the configuration")),
    "listRoomUsers": _as_caller(list_room_users, _may_list_users),
    "listRoomAffiliations": _as_caller(list_room_affiliations, lambda r, c: _need_affiliation(
        r, c, "admin", "list the affiliations")),
    "getRoomMessages": _as_caller(get_room_messages, _may_read_archive),
    "kickUser": _moderating(kick_user, "kick"),
    "setUserRole": _moderating(set_user_role, "change the role of"),
    "deleteRoom": _as_caller(delete_room, lambda r, c: _need_affiliation(
        r, c, "owner", "destroy the room")),
    "changeRoomConfiguration": _as_caller(change_room_configuration,
                                          lambda r, c: _need_affiliation(
                                              r, c, "owner", "change the configuration")),
    "setUserAffiliation": _user_set_affiliation,
    "sendMessageToRoom": _user_send_message,
    "sendPrivateMessage": _user_send_private,
}


def _user_op(field: str, extra: Callable[[JID, dict[str, Any]], dict[str, Any]] | None = None
             ) -> Resolver:
    """A user operation: the admin one with the caller's arguments (``extra``), or, for one
    with a check (USER_ON_ROOM), that one, on the room's node."""
    async def run(ctx: Context, a: dict[str, Any]) -> Any:
        caller = me(ctx)
        args = {**a, **(extra(caller, a) if extra else {}), "_caller": str(caller)}
        name = f"user:{field}" if field in USER_ON_ROOM else field
        return await _dispatch(ctx, name, args, 0)
    return run


async def _user_list_rooms(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    return await list_rooms(ctx, {**a, "from": str(me(ctx))})


# -- on a cluster: each operation on a room runs on the room's node -----------------------------
#: Operation -> resolver, for those that act on or read one room (run where it lives).
ON_ROOM: dict[str, Resolver] = {
    "getRoomConfig": get_room_config,
    "listRoomUsers": list_room_users,
    "listRoomAffiliations": list_room_affiliations,
    "getRoomMessages": get_room_messages,
    "createInstantRoom": create_instant_room,
    "inviteUser": invite_user,
    "kickUser": kick_user,
    "sendMessageToRoom": send_message_to_room,
    "sendPrivateMessage": send_private_message,
    "deleteRoom": delete_room,
    "changeRoomConfiguration": change_room_configuration,
    "setUserRole": set_user_role,
    "setUserAffiliation": set_user_affiliation,
    "enterRoom": enter_room,
    "exitRoom": exit_room,
    "_sees": _room_sees,  # listRooms: whether a viewer sees a hidden room no node holds
    **{f"user:{name}": fn for name, fn in USER_ON_ROOM.items()},
}


def _room_key(field: str, a: dict[str, Any]) -> JID | None:
    """The room an operation is about; None when the argument is not a room JID (the
    resolver, run here, then gives its error)."""
    try:
        value = f"{a['name']}@{a['mucDomain']}" if field.endswith("createInstantRoom") \
            else a["room"]
        jid = JID.parse(str(value))
    except (InvalidJID, ValueError, KeyError):
        return None
    return jid.bare if jid.local is not None else None


async def _dispatch(ctx: Context, field: str, a: dict[str, Any], hops: int) -> Any:
    """Run ``field`` on the node owning the room's claim and return its result."""
    muc = _muc(ctx)
    placement = muc.placement
    key = _room_key(field, a)
    if placement is None or key is None or key.domain not in muc.services:
        return await ON_ROOM[field](ctx, a)
    try:
        owner, claimed = await placement.owner(key)
    except Exception:
        log.warning("muc_claim_failed room=%s", key, exc_info=True)
        raise fail(f"the node of room {key} cannot be found (Redis does not answer)",
                   "internal_error") from None
    if owner == placement.me:
        try:
            return await ON_ROOM[field](ctx, a)
        finally:
            if claimed:
                placement.unclaim(key)
    if hops >= MAX_HOPS:
        raise fail(f"the node of room {key} cannot be found (its claim keeps moving)",
                   "internal_error")
    try:
        reply = await ctx.server.cluster.ask(owner, ANSWER_OP, field, a, ctx.caller.kind,
                                             ctx.caller.domain, hops + 1)
    except NodeUnreachable:
        placement.silent(key, owner)
        raise fail(f"the node of room {key} ({owner}) does not answer",
                   "internal_error") from None
    if not isinstance(reply, tuple) or not reply:
        raise fail(f"the node of room {key} ({owner}) failed to run {field}",
                   "internal_error")
    if reply[0] == "error":
        raise fail(reply[1], reply[2])
    return reply[1]


async def answer(server: Server, field: str, a: dict[str, Any], kind: Any,
                 domain: str | None, hops: int) -> tuple[Any, ...]:
    """Another node's request (``ANSWER_OP``): ``("ok", result)`` or ``("error", message,
    code)``; it runs here if this node still owns the room, else goes on to its owner."""
    ctx = Context(server, Caller(kind, domain))
    try:
        if field == "_roomsHere":
            return ("ok", await _rooms_here(ctx, a))
        return ("ok", await _dispatch(ctx, field, a, hops))
    except GraphQLError as err:
        code = (err.extensions or {}).get("code", "bad_request")
        return ("error", err.message, code)


def _on_room_node(field: str) -> Resolver:
    async def run(ctx: Context, a: dict[str, Any]) -> Any:
        return await _dispatch(ctx, field, a, 0)
    return run


ADMIN_RESOLVERS = {
    ("MUCAdminQuery", "listRooms"): list_rooms,
    ("MUCAdminQuery", "getRoomConfig"): _on_room_node("getRoomConfig"),
    ("MUCAdminQuery", "listRoomUsers"): _on_room_node("listRoomUsers"),
    ("MUCAdminQuery", "listRoomAffiliations"): _on_room_node("listRoomAffiliations"),
    ("MUCAdminQuery", "getRoomMessages"): _on_room_node("getRoomMessages"),
    ("MUCAdminMutation", "createInstantRoom"): _on_room_node("createInstantRoom"),
    ("MUCAdminMutation", "inviteUser"): _on_room_node("inviteUser"),
    ("MUCAdminMutation", "kickUser"): _on_room_node("kickUser"),
    ("MUCAdminMutation", "sendMessageToRoom"): _on_room_node("sendMessageToRoom"),
    ("MUCAdminMutation", "sendPrivateMessage"): _on_room_node("sendPrivateMessage"),
    ("MUCAdminMutation", "deleteRoom"): _on_room_node("deleteRoom"),
    ("MUCAdminMutation", "changeRoomConfiguration"): _on_room_node("changeRoomConfiguration"),
    ("MUCAdminMutation", "setUserRole"): _on_room_node("setUserRole"),
    ("MUCAdminMutation", "setUserAffiliation"): _on_room_node("setUserAffiliation"),
    ("MUCAdminMutation", "enterRoom"): _on_room_node("enterRoom"),
    ("MUCAdminMutation", "exitRoom"): _on_room_node("exitRoom"),
}
USER_RESOLVERS = {
    ("MUCUserQuery", "listRooms"): _user_list_rooms,
    **{("MUCUserQuery", f): _user_op(f)
       for f in ("getRoomConfig", "listRoomUsers", "listRoomAffiliations", "getRoomMessages")},
    ("MUCUserMutation", "createInstantRoom"): _user_op(
        "createInstantRoom", lambda c, a: {"owner": str(c)}),
    ("MUCUserMutation", "inviteUser"): _user_op("inviteUser", lambda c, a: {"sender": str(c)}),
    **{("MUCUserMutation", f): _user_op(f)
       for f in ("kickUser", "sendMessageToRoom", "sendPrivateMessage", "deleteRoom",
                 "changeRoomConfiguration", "setUserRole", "setUserAffiliation")},
    ("MUCUserMutation", "enterRoom"): _user_op(
        "enterRoom", lambda c, a: {"user": str(c.with_resource(a["resource"]))}),
    ("MUCUserMutation", "exitRoom"): _user_op(
        "exitRoom", lambda c, a: {"user": str(c.with_resource(a["resource"]))}),
}

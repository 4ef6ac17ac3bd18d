"""``mongoose_admin_api``: MongooseIM 6.4's REST admin API (paths, methods, bodies and status
codes of its ``mongoose_admin_api_*`` handlers), each endpoint running the GraphQL admin
resolver that does the same thing.

Success: 200 with JSON for reads, 201 with a ``location`` header and the new resource's name
as text for creations, 204 for other changes. Errors: 400 (bad input), 401 (credentials),
403 (not allowed, or the user exists), 404 (unknown user, room, session, domain or path), 409
(a room or domain already exists), 501 (a module the endpoint needs is not enabled, or a part
not implemented), each with a JSON body ``{"error": kind, "message": text}``.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from suricate.admin.resolvers.stanza import iso
from suricate.admin.rest.common import (
    Call,
    RestEndpoint,
    RestError,
    Route,
    created,
    json_response,
    no_content,
    route,
)
from suricate.jid import JID, InvalidJID
from suricate.xml import ns
from suricate.xml.parser import XMLStreamError, parse_fragment

if TYPE_CHECKING:
    from collections.abc import Mapping

    from suricate.core.server import Server
    from suricate.net.http.message import Response


def jid_arg(value: Any, what: str) -> JID:
    try:
        jid = JID.parse(str(value))
    except (InvalidJID, ValueError):
        raise RestError(400, f"Invalid {what} JID") from None
    return jid


def user_jid(domain: str, username: str) -> str:
    try:
        return str(JID(username, domain, None))
    except (InvalidJID, ValueError):
        raise RestError(400, "Invalid user name or domain") from None


async def require_user(call: Call, jid: JID, status: int = 404) -> None:
    if jid.local is None or not await call.server.user_exists(jid.bare):
        raise RestError(status, f"User {jid.bare} does not exist")


def micros_of(stamp: str) -> int:
    when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return int(when.timestamp()) * 1_000_000 + when.microsecond


def parsed(xml: str) -> Any:
    try:
        found = parse_fragment(xml, ns.CLIENT)
    except XMLStreamError:
        return None
    return found[0] if found else None


def service_for(call: Call, module_name: str, domain: str) -> str:
    """The MUC (Light) service of an XMPP host (6.4's paths name either); unchanged when it
    is a service already or the module is not enabled (its resolver says so then)."""
    module = call.server.modules.get(module_name)
    services: dict[str, str] = getattr(module, "services", {}) or {}
    if domain in services:
        return domain
    for service, host in services.items():
        if host == domain:
            return service
    return domain


# -- users ------------------------------------------------------------------------------------
async def list_users(call: Call) -> Response:
    users = await call.run("AccountAdminQuery", "listUsers", {"domain": call.params["domain"]})
    return json_response(200, users)


async def register_user(call: Call) -> Response:
    domain = call.params["domain"]
    username = call.field("username", "user name")
    password = call.field("password")
    result = await call.run("AccountAdminMutation", "registerUser",
                            {"domain": domain, "username": username, "password": password})
    return created(f"{call.request.path.rstrip('/')}/{username}", result["message"])


async def change_password(call: Call) -> Response:
    jid = user_jid(call.params["domain"], call.params["username"])
    await call.run("AccountAdminMutation", "changeUserPassword",
                   {"user": jid, "newPassword": call.field("newpass", "new password")})
    return no_content()


async def remove_user(call: Call) -> Response:
    jid = user_jid(call.params["domain"], call.params["username"])
    await call.run("AccountAdminMutation", "removeUser", {"user": jid})
    return no_content()


# -- sessions ---------------------------------------------------------------------------------
async def list_sessions(call: Call) -> Response:
    sessions = await call.run("SessionAdminQuery", "listSessions",
                              {"domain": call.params["domain"]})
    return json_response(200, [s["user"] for s in sessions])


async def kick_session(call: Call) -> Response:
    try:
        jid = JID(call.params["username"], call.params["domain"], call.params["resource"])
    except (InvalidJID, ValueError):
        raise RestError(400, "Invalid user name, domain or resource") from None
    await call.run("SessionAdminMutation", "kickUserSession",
                   {"user": str(jid), "reason": "kicked"})
    return no_content()


# -- messages and stanzas ---------------------------------------------------------------------
async def send_message(call: Call) -> Response:
    sender = jid_arg(call.field("caller", "sender JID"), "sender")
    to = jid_arg(call.field("to", "recipient JID"), "recipient")
    body = call.field("body", "message body")
    if not call.server.is_local_domain(sender.domain):
        raise RestError(400, "Unknown domain")
    await require_user(call, sender, 400)
    await call.run("StanzaAdminMutation", "sendMessage",
                   {"from": str(sender), "to": str(to), "body": body})
    return no_content()


async def last_messages(call: Call, owner: JID, with_jid: JID | None, limit: int,
                        before_micros: int | None, endpoint: str = "admin") -> list[Any]:
    """The newest ``limit`` archived messages of ``owner`` (oldest first), as
    (MAM timestamp in microseconds, message element)."""
    args: dict[str, Any] = {"limit": limit}
    if with_jid is not None:
        args["with"] = str(with_jid)
    if before_micros:
        args["before"] = iso(before_micros)
    if endpoint == "admin":
        args["caller"] = str(owner)
        page = await call.run("StanzaAdminQuery", "getLastMessages", args)
    else:
        page = await call.run("StanzaUserQuery", "getLastMessages", args, endpoint="user")
    found = []
    for item in page["stanzas"]:
        message = parsed(item["stanza"])
        if message is not None:
            found.append((micros_of(item["timestamp"]), item["sender"], message))
    return found


async def get_messages(call: Call) -> Response:
    owner = jid_arg(call.params["owner"], "owner")
    with_jid = jid_arg(call.params["with"], "interlocutor") if "with" in call.params else None
    limit = call.query_int("limit", 100, 0, 500)
    before = call.query_int("before", 0)
    assert limit is not None
    rows = await last_messages(call, owner, with_jid, limit,
                               (before or 0) * 1_000_000)
    return json_response(200, [
        {"sender": sender, "timestamp": micros // 1_000_000,
         "message_id": message.attrs.get("id", ""), "body": message.find_text("body")}
        for micros, sender, message in rows])


async def send_stanza(call: Call) -> Response:
    stanza = call.field("stanza")
    await call.run("StanzaAdminMutation", "sendStanza", {"stanza": stanza})
    return no_content()


# -- contacts ---------------------------------------------------------------------------------
def contact_json(item: Mapping[str, Any]) -> dict[str, Any]:
    return {"jid": item["jid"], "subscription": item["subscription"], "ask": item["ask"]}


async def list_contacts(call: Call) -> Response:
    user = jid_arg(call.params["user"], "user")
    await require_user(call, user)
    items = await call.run("RosterAdminQuery", "listContacts", {"user": str(user.bare)})
    return json_response(200, [contact_json(i) for i in items])


async def add_contact(call: Call) -> Response:
    user = jid_arg(call.params["user"], "user")
    contact = jid_arg(call.field("jid", "JID"), "contact")
    await require_user(call, user)
    await call.run("RosterAdminMutation", "addContact",
                   {"user": str(user.bare), "contact": str(contact.bare)})
    return no_content()


#: 6.4 takes subscribe/subscribed (its older documentation said invite/accept: both work).
SUBSCRIPTION_ACTIONS = {"subscribe": "INVITE", "subscribed": "ACCEPT", "invite": "INVITE",
                        "accept": "ACCEPT"}


async def subscription(call: Call) -> Response:
    user = jid_arg(call.params["user"], "user")
    contact = jid_arg(call.params["contact"], "contact")
    action = SUBSCRIPTION_ACTIONS.get(call.field("action"))
    if action is None:
        raise RestError(400, "Invalid action")
    await call.run("RosterAdminMutation", "subscription",
                   {"user": str(user.bare), "contact": str(contact.bare), "action": action})
    return no_content()


async def delete_contact(call: Call) -> Response:
    user = jid_arg(call.params["user"], "user")
    contact = jid_arg(call.params["contact"], "contact")
    await call.run("RosterAdminMutation", "deleteContact",
                   {"user": str(user.bare), "contact": str(contact.bare)})
    return no_content()


async def manage(call: Call) -> Response:
    user = jid_arg(call.params["user"], "user")
    contact = jid_arg(call.params["contact"], "contact")
    action = {"connect": "CONNECT", "disconnect": "DISCONNECT"}.get(call.field("action"))
    if action is None:
        raise RestError(400, "Invalid action")
    await call.run("RosterAdminMutation", "setMutualSubscription",
                   {"userA": str(user.bare), "userB": str(contact.bare), "action": action})
    return no_content()


# -- MUC Light --------------------------------------------------------------------------------
#: 6.4 answers 403 ("denied") when a room with the id exists or the sender is no member.
MUC_LIGHT_STATUSES = {"already_exists": 403, "not_allowed": 403}


def room_jid(call: Call, module: str, param: str, invalid: str) -> str:
    """The room the path names: its ``param`` on the service of ``module`` for the path's
    domain; 400 with ``invalid`` (6.4's text) when that is no JID."""
    service = service_for(call, module, call.params["domain"])
    try:
        return str(JID(call.params[param], service, None))
    except (InvalidJID, ValueError):
        raise RestError(400, invalid) from None


def muc_light_room(call: Call) -> str:
    return room_jid(call, "mod_muc_light", "id", "Invalid room ID or domain name")


async def _create_light_room(call: Call, room_id: str | None) -> Response:
    args: dict[str, Any] = {
        "mucDomain": call.params["domain"],
        "owner": str(jid_arg(call.field("owner", "owner JID"), "owner")),
        "name": call.field("name", "room name"),
        "subject": call.field("subject", "room subject"),
    }
    if room_id is not None:
        args["id"] = room_id
    room = await call.run("MUCLightAdminMutation", "createRoom", args,
                          statuses=MUC_LIGHT_STATUSES)
    return created(f"{call.request.path.rstrip('/')}/{room['jid']}", room["jid"])


async def create_light_room(call: Call) -> Response:
    return await _create_light_room(call, None)


async def create_light_room_with_id(call: Call) -> Response:
    return await _create_light_room(call, call.field("id", "room ID"))


async def invite_to_light_room(call: Call) -> Response:
    room = muc_light_room(call)
    sender = jid_arg(call.field("sender", "sender JID"), "sender")
    recipient = jid_arg(call.field("recipient", "recipient JID"), "recipient")
    await call.run("MUCLightAdminMutation", "inviteUser",
                   {"room": room, "sender": str(sender), "recipient": str(recipient)},
                   statuses=MUC_LIGHT_STATUSES)
    return no_content()


async def send_to_light_room(call: Call) -> Response:
    room = muc_light_room(call)
    sender = jid_arg(call.field("from", "sender JID"), "sender")
    await call.run("MUCLightAdminMutation", "sendMessageToRoom",
                   {"room": room, "from": str(sender),
                    "body": call.field("body", "message body")},
                   statuses=MUC_LIGHT_STATUSES)
    return no_content()


async def delete_light_room(call: Call) -> Response:
    await call.run("MUCLightAdminMutation", "deleteRoom", {"room": muc_light_room(call)})
    return no_content()


# -- MUC --------------------------------------------------------------------------------------
def muc_room(call: Call) -> str:
    return room_jid(call, "mod_muc", "name", "Invalid room name")


async def create_muc_room(call: Call) -> Response:
    name = call.field("name", "room name")
    owner = jid_arg(call.field("owner", "owner JID"), "owner")
    nick = call.field("nick", "nickname")
    service = service_for(call, "mod_muc", call.params["domain"])
    await require_user(call, owner)
    await call.run("MUCAdminMutation", "createInstantRoom",
                   {"mucDomain": service, "name": name, "owner": str(owner.bare),
                    "nick": nick})
    return created(f"{call.request.path.rstrip('/')}/{name}", name)


async def muc_room_post(call: Call) -> Response:
    room = muc_room(call)
    arg = call.params["arg"]
    if arg == "participants":
        sender = jid_arg(call.field("sender", "sender JID"), "sender")
        recipient = jid_arg(call.field("recipient", "recipient JID"), "recipient")
        reason = call.field("reason", "invite reason")
        await call.run("MUCAdminMutation", "inviteUser",
                       {"room": room, "sender": str(sender), "recipient": str(recipient),
                        "reason": reason})
    elif arg == "messages":
        sender = jid_arg(call.field("from", "sender JID"), "sender")
        await call.run("MUCAdminMutation", "sendMessageToRoom",
                       {"room": room, "from": str(sender),
                        "body": call.field("body", "message body")})
    else:
        raise RestError(404, f"no such endpoint: {call.request.path}")
    return no_content()


async def muc_kick(call: Call) -> Response:
    await call.run("MUCAdminMutation", "kickUser",
                   {"room": muc_room(call), "nick": call.params["arg"],
                    "reason": "User kicked from the admin REST API"})
    return no_content()


# -- inbox ------------------------------------------------------------------------------------
def _days(call: Call) -> int:
    try:
        days = int(call.params["days"])
    except ValueError:
        raise RestError(400, "Invalid number of days") from None
    if days < 0:
        raise RestError(400, "Invalid number of days")
    return days


async def flush_global_bin(call: Call) -> Response:
    days = _days(call)
    count = await call.run("InboxAdminMutation", "flushGlobalBin",
                           {"hostType": call.params["host_type"], "days": days})
    return json_response(200, count)


async def flush_user_bin(call: Call) -> Response:
    days = _days(call)
    jid = user_jid(call.params["domain"], call.params["user"])
    if not call.server.is_local_domain(call.params["domain"].lower()):
        raise RestError(404, "Domain not found")
    await require_user(call, JID.parse(jid))
    count = await call.run("InboxAdminMutation", "flushUserBin", {"user": jid, "days": days})
    return json_response(200, count)


# -- dynamic domains --------------------------------------------------------------------------
#: The statuses of the domain API's refusals; static, unknown or wrong host type are 6.4's
#: "denied".
_DOMAIN_STATUSES = {"domain_not_found": 404, "domain_duplicate": 409, "domain_static": 403,
                    "unknown_host_type": 403, "wrong_host_type": 403}


async def _domain_op(call: Call, field: str, args: dict[str, Any]) -> Any:
    return await call.run("DomainAdminMutation" if field != "domainDetails"
                          else "DomainAdminQuery", field, args, statuses=_DOMAIN_STATUSES)


async def get_domain(call: Call) -> Response:
    found = await _domain_op(call, "domainDetails", {"domain": call.params["domain"]})
    return json_response(200, {"host_type": found["hostType"],
                               "status": str(found["status"]).lower()})


async def add_domain(call: Call) -> Response:
    host_type = call.field("host_type", "'host_type' field")
    try:
        await _domain_op(call, "addDomain", {"domain": call.params["domain"],
                                             "hostType": host_type})
    except RestError as err:
        # 6.4: adding a domain again with the same host type succeeds.
        if not (err.status == 409 and "with host type" not in err.message):
            raise
    return no_content()


async def patch_domain(call: Call) -> Response:
    enabled = call.field("enabled", "'enabled' field", bool)
    await _domain_op(call, "enableDomain" if enabled else "disableDomain",
                     {"domain": call.params["domain"]})
    return no_content()


async def delete_domain(call: Call) -> Response:
    host_type = call.field("host_type", "'host_type' field")
    try:
        await _domain_op(call, "removeDomain", {"domain": call.params["domain"],
                                                "hostType": host_type})
    except RestError as err:
        if err.status != 404:  # 6.4: "removed or not found"
            raise
    return no_content()


ROUTES: list[Route] = [
    route("users", "/users/{domain}", GET=list_users, POST=register_user),
    route("users", "/users/{domain}/{username}", PUT=change_password, DELETE=remove_user),
    route("sessions", "/sessions/{domain}", GET=list_sessions),
    route("sessions", "/sessions/{domain}/{username}/{resource}", DELETE=kick_session),
    route("messages", "/messages", POST=send_message),
    route("messages", "/messages/{owner}", GET=get_messages),
    route("messages", "/messages/{owner}/{with}", GET=get_messages),
    route("stanzas", "/stanzas", POST=send_stanza),
    route("contacts", "/contacts/{user}", GET=list_contacts, POST=add_contact),
    route("contacts", "/contacts/{user}/{contact}", PUT=subscription, DELETE=delete_contact),
    route("contacts", "/contacts/{user}/{contact}/manage", PUT=manage),
    route("muc_light", "/muc-lights/{domain}", POST=create_light_room,
          PUT=create_light_room_with_id),
    route("muc_light", "/muc-lights/{domain}/{id}/participants", POST=invite_to_light_room),
    route("muc_light", "/muc-lights/{domain}/{id}/messages", POST=send_to_light_room),
    route("muc_light", "/muc-lights/{domain}/{id}/management", DELETE=delete_light_room),
    route("muc", "/mucs/{domain}", POST=create_muc_room),
    route("muc", "/mucs/{domain}/{name}/{arg}", POST=muc_room_post, DELETE=muc_kick),
    route("inbox", "/inbox/{host_type}/{days}/bin", DELETE=flush_global_bin),
    route("inbox", "/inbox/{domain}/{user}/{days}/bin", DELETE=flush_user_bin),
    route("domain", "/domains/{domain}", GET=get_domain, PUT=add_domain, PATCH=patch_domain,
          DELETE=delete_domain),
]

NOT_IMPLEMENTED = [
    ("metrics", "metrics", "the REST metrics API is not implemented: metrics are served by "
     "the mongoose_prometheus_handler (see docs/operations.md)"),
]


class AdminRestEndpoint(RestEndpoint):
    endpoint = "admin"
    cors = {"access-control-allow-methods": "GET, OPTIONS, PUT, POST, PATCH, DELETE",
            "access-control-allow-origin": "*",
            "access-control-allow-headers": "Content-Type, Authorization"}

    def __init__(self, server: Server, opts: Mapping[str, Any]) -> None:
        super().__init__(server, opts, ROUTES, NOT_IMPLEMENTED)

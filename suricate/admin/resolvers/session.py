"""session: list, count, kick, resources, presence."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from graphql import GraphQLError

from suricate.admin.context import Context, fail, parse_jid, served_domain
from suricate.core import hooks as H
from suricate.core.c2s import C2S
from suricate.jid import JID
from suricate.xml import ns
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.core.server import Server


def _sessions(ctx: Context, domain: str | None) -> list[C2S]:
    found = [s for s in ctx.server.sessions if isinstance(s, C2S)]
    if domain is not None:
        found = [s for s in found if s.jid.domain == domain]
    return sorted(found, key=lambda s: str(s.jid))


def session_info(session: C2S, node: str = "local") -> dict[str, Any]:
    peer = session.conn.peer
    ip, port = (peer[0], peer[1]) if isinstance(peer, tuple) and len(peer) >= 2 else (None, None)
    return {
        "user": str(session.jid), "connection": "c2s_tls" if session.is_tls else "c2s",
        "ip": ip, "port": port, "priority": session.priority, "node": node,
        "uptime": int(time.time() - session.started_at),
    }


def _domain_arg(ctx: Context, a: dict[str, Any]) -> str | None:
    return served_domain(ctx, a["domain"]) if a.get("domain") is not None else None


# With several nodes (sm_backend = "redis") the answers are the whole cluster's: the backend
# reads the Redis session table and asks the owning node for what only it knows or can do
# (suricate.cluster.admin); on one node, this process's table.
async def list_sessions(ctx: Context, a: dict[str, Any]) -> list[dict[str, Any]]:
    backend = ctx.server.cluster.backend
    if backend is not None:
        return await backend.sessions(_domain_arg(ctx, a))
    return [session_info(s) for s in _sessions(ctx, _domain_arg(ctx, a))]


async def count_sessions(ctx: Context, a: dict[str, Any]) -> int:
    backend = ctx.server.cluster.backend
    if backend is not None:
        return await backend.count_sessions(_domain_arg(ctx, a))
    return len(_sessions(ctx, _domain_arg(ctx, a)))


def user_sessions(ctx: Context, user: Any) -> list[C2S]:
    bare = parse_jid(user).bare
    found = [s for s in ctx.server.sessions.resources(bare) if isinstance(s, C2S)]
    return sorted(found, key=lambda s: s.jid.resource or "")


async def user_infos(ctx: Context, user: Any) -> list[dict[str, Any]]:
    """The account's sessions as GraphQL ``Session``s, on every node of a cluster."""
    backend = ctx.server.cluster.backend
    if backend is not None:
        return await backend.user_sessions(parse_jid(user).bare)
    return [session_info(s) for s in user_sessions(ctx, user)]


async def _no_user(ctx: Context, jid: JID) -> GraphQLError | None:
    """6.4's refusal (``mongoose_session_api``) of an account that does not exist: an empty
    list would tell a typo in the JID from an account that is offline no better than a kick
    that did nothing. Asked only when the account has no session."""
    if await ctx.server.user_exists(jid.bare):
        return None
    return fail("Given user does not exist", "no_user")


async def account_infos(ctx: Context, user: Any) -> list[dict[str, Any]]:
    """``user_infos`` of an account that exists (``no_user`` otherwise)."""
    jid = parse_jid(user)
    infos = await user_infos(ctx, jid)
    if not infos and (error := await _no_user(ctx, jid)) is not None:
        raise error
    return infos


async def list_user_sessions(ctx: Context, a: dict[str, Any]) -> list[dict[str, Any]]:
    return await account_infos(ctx, a["user"])


async def count_user_resources(ctx: Context, a: dict[str, Any]) -> int:
    return len(await account_infos(ctx, a["user"]))


async def get_user_resource(ctx: Context, a: dict[str, Any]) -> str:
    sessions = await account_infos(ctx, a["user"])
    # 0 is a wrong number, not the default (1): `or 1` answered the first resource for it.
    number = 1 if a.get("number") is None else a["number"]
    if not 1 <= number <= len(sessions):
        raise fail(f"wrong resource number {number}: the user has {len(sessions)} sessions",
                   "wrong_resource_number")
    return JID.parse(sessions[number - 1]["user"]).resource or ""


def _show(session: C2S) -> str:
    presence = session.presence
    return (presence.find_text("show", ns.CLIENT) or "online") if presence is not None else ""


async def list_users_with_status(ctx: Context, a: dict[str, Any]) -> list[dict[str, Any]]:
    status = str(a["status"]).lower()
    backend = ctx.server.cluster.backend
    if backend is not None:
        # The presence show is not in Redis: every node answers for its own sessions.
        return await backend.users_with_status(_domain_arg(ctx, a), status)
    return users_with_status_here(ctx.server, _domain_arg(ctx, a), status)


def users_with_status_here(server: Server, domain: str | None,
                           status: str) -> list[dict[str, Any]]:
    """This node's sessions whose presence show is ``status`` (GraphQL ``UserStatus``)."""
    sessions = sorted((s for s in server.sessions if isinstance(s, C2S)
                       and (domain is None or s.jid.domain == domain)),
                      key=lambda s: str(s.jid))
    return [{"user": str(s.jid), "priority": s.priority,
             "text": s.presence.find_text("status", ns.CLIENT) if s.presence else None}
            for s in sessions if _show(s) == status]


async def count_users_with_status(ctx: Context, a: dict[str, Any]) -> int:
    return len(await list_users_with_status(ctx, a))


async def kick(ctx: Context, jid: JID, reason: str) -> bool:
    """End the session ``jid``, on whichever node of a cluster holds it."""
    backend = ctx.server.cluster.backend
    if backend is not None:
        return await backend.kick(jid, reason)
    return ctx.server.kick_session(jid, reason)


async def kick_everywhere(ctx: Context, bare: JID, reason: str) -> int:
    """End every session of the account, on every node of a cluster; how many ended."""
    return await ctx.server.end_account_sessions(bare, "policy-violation", reason)


async def kick_user_session(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    jid = parse_jid(a["user"], bare=False)
    if not await kick(ctx, jid, a.get("reason") or "kicked by the administrator"):
        raise await _no_user(ctx, jid) or fail(f"No active session {jid}", "no_session")
    return {"jid": str(jid), "kicked": True, "code": None, "message": "Session kicked"}


async def kick_user(ctx: Context, a: dict[str, Any]) -> list[dict[str, Any]]:
    bare = parse_jid(a["user"], bare=True)
    reason = a.get("reason") or "kicked by the administrator"
    kicked = []
    for info in await account_infos(ctx, bare):
        jid = JID.parse(info["user"])
        if await kick(ctx, jid, reason):
            kicked.append({"jid": str(jid), "kicked": True, "code": None,
                           "message": "Session kicked"})
        else:  # it ended meanwhile
            kicked.append({"jid": str(jid), "kicked": False, "code": "no_session",
                           "message": "No active session"})
    return kicked


async def set_presence(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    jid = parse_jid(a["user"], bare=False)
    backend = ctx.server.cluster.backend
    if backend is not None and ctx.server.sessions.local(jid) is None:
        done = await backend.set_presence(jid, a)
    else:
        done = apply_presence(ctx.server, jid, a)
    if not done:
        raise await _no_user(ctx, jid) or fail(f"No active session {jid}", "no_session")
    return {"jid": str(jid), "message": "Presence set successfully"}


def apply_presence(server: Server, jid: JID, a: dict[str, Any]) -> bool:
    """``setPresence`` on this node's session ``jid``; False when it has none."""
    session = server.sessions.lookup(jid)
    if not isinstance(session, C2S):
        return False
    presence = Element("presence", ns.CLIENT, {"from": str(jid)})
    if a["type"] == "UNAVAILABLE":
        presence.attrs["type"] = "unavailable"
    else:
        show = (a.get("show") or "ONLINE").lower()
        if show != "online":
            presence.add("show", ns.CLIENT, text=show)
        if a.get("priority") is not None:
            presence.add("priority", ns.CLIENT, text=str(a["priority"]))
    if a.get("status"):
        presence.add("status", ns.CLIENT, text=a["status"])
    # As if the client had sent it: mod_presence broadcasts and keeps the session's state.
    server.hooks.fold(H.USER_SEND_PACKET, presence, session)
    return True


RESOLVERS = {
    ("SessionAdminQuery", "listSessions"): list_sessions,
    ("SessionAdminQuery", "countSessions"): count_sessions,
    ("SessionAdminQuery", "listUserSessions"): list_user_sessions,
    ("SessionAdminQuery", "countUserResources"): count_user_resources,
    ("SessionAdminQuery", "getUserResource"): get_user_resource,
    ("SessionAdminQuery", "listUsersWithStatus"): list_users_with_status,
    ("SessionAdminQuery", "countUsersWithStatus"): count_users_with_status,
    ("SessionAdminMutation", "kickUserSession"): kick_user_session,
    ("SessionAdminMutation", "kickUser"): kick_user,
    ("SessionAdminMutation", "setPresence"): set_presence,
}

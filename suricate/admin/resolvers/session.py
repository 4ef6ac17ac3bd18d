"""session: list, count, kick, resources, presence."""

from __future__ import annotations

import time
from typing import Any

from suricate.admin.context import Context, fail, parse_jid, served_domain
from suricate.core import hooks as H
from suricate.core.c2s import C2S
from suricate.xml import ns
from suricate.xml.element import Element


def _sessions(ctx: Context, domain: str | None) -> list[C2S]:
    found = [s for s in ctx.server.sessions if isinstance(s, C2S)]
    if domain is not None:
        found = [s for s in found if s.jid.domain == domain]
    return sorted(found, key=lambda s: str(s.jid))


def session_info(session: C2S) -> dict[str, Any]:
    peer = session.conn.peer
    ip, port = (peer[0], peer[1]) if isinstance(peer, tuple) and len(peer) >= 2 else (None, None)
    return {
        "user": str(session.jid), "connection": "c2s_tls" if session.is_tls else "c2s",
        "ip": ip, "port": port, "priority": session.priority, "node": "local",
        "uptime": int(time.time() - session.started_at),
    }


def _domain_arg(ctx: Context, a: dict[str, Any]) -> str | None:
    return served_domain(ctx, a["domain"]) if a.get("domain") is not None else None


async def list_sessions(ctx: Context, a: dict[str, Any]) -> list[dict[str, Any]]:
    return [session_info(s) for s in _sessions(ctx, _domain_arg(ctx, a))]


async def count_sessions(ctx: Context, a: dict[str, Any]) -> int:
    return len(_sessions(ctx, _domain_arg(ctx, a)))


def user_sessions(ctx: Context, user: Any) -> list[C2S]:
    bare = parse_jid(user).bare
    found = [s for s in ctx.server.sessions.resources(bare) if isinstance(s, C2S)]
    return sorted(found, key=lambda s: s.jid.resource or "")


async def list_user_sessions(ctx: Context, a: dict[str, Any]) -> list[dict[str, Any]]:
    return [session_info(s) for s in user_sessions(ctx, a["user"])]


async def count_user_resources(ctx: Context, a: dict[str, Any]) -> int:
    return len(user_sessions(ctx, a["user"]))


async def get_user_resource(ctx: Context, a: dict[str, Any]) -> str:
    sessions = user_sessions(ctx, a["user"])
    number = a.get("number") or 1
    if not 1 <= number <= len(sessions):
        raise fail(f"wrong resource number {number}: the user has {len(sessions)} sessions",
                   "wrong_resource_number")
    return sessions[number - 1].jid.resource or ""


def _show(session: C2S) -> str:
    presence = session.presence
    return (presence.find_text("show", ns.CLIENT) or "online") if presence is not None else ""


async def list_users_with_status(ctx: Context, a: dict[str, Any]) -> list[dict[str, Any]]:
    status = str(a["status"]).lower()
    return [{"user": str(s.jid), "priority": s.priority,
             "text": s.presence.find_text("status", ns.CLIENT) if s.presence else None}
            for s in _sessions(ctx, _domain_arg(ctx, a)) if _show(s) == status]


async def count_users_with_status(ctx: Context, a: dict[str, Any]) -> int:
    return len(await list_users_with_status(ctx, a))


async def kick_user_session(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    jid = parse_jid(a["user"], bare=False)
    if not ctx.server.kick_session(jid, a.get("reason") or "kicked by the administrator"):
        raise fail(f"no session {jid}", "no_session")
    return {"jid": str(jid), "message": "Session kicked"}


async def kick_user(ctx: Context, a: dict[str, Any]) -> list[dict[str, Any]]:
    bare = parse_jid(a["user"], bare=True)
    sessions = user_sessions(ctx, bare)
    reason = a.get("reason") or "kicked by the administrator"
    return [{"jid": str(s.jid), "message": "Session kicked"} for s in sessions
            if ctx.server.kick_session(s.jid, reason)]


async def set_presence(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    jid = parse_jid(a["user"], bare=False)
    session = ctx.server.sessions.lookup(jid)
    if not isinstance(session, C2S):
        raise fail(f"no session {jid}", "no_session")
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
    ctx.server.hooks.fold(H.USER_SEND_PACKET, presence, session)
    return {"jid": str(jid), "message": "Presence set"}


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

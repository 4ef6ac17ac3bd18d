"""stat: figures for the server and per domain."""

from __future__ import annotations

import time
from typing import Any

from suricate.admin.context import Context, served_domain
from suricate.core.c2s import C2S


async def global_stats(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    server = ctx.server
    registered = 0
    for domain in sorted(server.domains.served):
        registered += await server.storage.count_users(domain)
    online = sum(1 for s in server.sessions if isinstance(s, C2S))
    incoming = sum(len(lst.connections) for lst in server.listeners if lst.kind == "s2s")
    outgoing_conns: Any = getattr(getattr(server, "s2s", None), "outgoing", {})
    return {
        "uptimeSeconds": int(time.time() - server.started_at),
        "registeredUsers": registered,
        "onlineUsersNode": online,
        "onlineUsers": online,  # one node: the cluster is this process
        "incomingS2S": incoming,
        "outgoingS2S": len(outgoing_conns) if hasattr(outgoing_conns, "__len__") else 0,
    }


async def domain_stats(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    domain = served_domain(ctx, a["domain"])
    online = sum(1 for s in ctx.server.sessions
                 if isinstance(s, C2S) and s.jid.domain == domain)
    return {"registeredUsers": await ctx.server.storage.count_users(domain),
            "onlineUsers": online}


RESOLVERS = {
    ("StatsAdminQuery", "globalStats"): global_stats,
    ("StatsAdminQuery", "domainStats"): domain_stats,
}

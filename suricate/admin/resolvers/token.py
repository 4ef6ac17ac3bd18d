"""token: FAST tokens (XEP-0484, mod_fast_auth_token): list and revoke."""

from __future__ import annotations

from typing import Any

from suricate.admin.context import Context, enabled_module, parse_jid, served_domain
from suricate.modules.mod_fast_auth_token import ModFastAuthToken


async def list_tokens(ctx: Context, a: dict[str, Any]) -> list[dict[str, Any]]:
    user = parse_jid(a["user"], bare=True)
    served_domain(ctx, user.domain)
    tokens = await enabled_module(ctx, ModFastAuthToken).store.list_fast_tokens(user.domain, user.local or "")
    # Never the secret: which client holds one, for what mechanism, until when.
    return [{"userAgentId": agent, "mechanism": t.mechanism, "expiresAt": int(t.expire)}
            for agent, t in tokens]


async def revoke_token(ctx: Context, a: dict[str, Any]) -> str:
    user = parse_jid(a["user"], bare=True)
    served_domain(ctx, user.domain)
    count = await enabled_module(ctx, ModFastAuthToken).store.revoke_fast_tokens(user.domain, user.local or "")
    return f"Revoked the tokens of {count} clients"


RESOLVERS = {
    ("TokenAdminQuery", "listTokens"): list_tokens,
    ("TokenAdminMutation", "revokeToken"): revoke_token,
}

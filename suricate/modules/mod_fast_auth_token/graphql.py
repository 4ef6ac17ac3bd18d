"""mod_fast_auth_token's `token` category of the GraphQL API (SDL next to this file,
collected through `ModFastAuthToken.graphql`): list and revoke FAST tokens (XEP-0484)."""

from __future__ import annotations

from typing import Any

from suricate.admin.context import Context, as_me, enabled_module, parse_jid, served_domain
from suricate.modules.mod_fast_auth_token import ModFastAuthToken
from suricate.modules.mod_fast_auth_token.store import FastTokenStore


def _store(ctx: Context) -> FastTokenStore:
    # The category is mod_fast_auth_token's: without the module there is nothing to read or write.
    return enabled_module(ctx, ModFastAuthToken).store


async def list_tokens(ctx: Context, a: dict[str, Any]) -> list[dict[str, Any]]:
    user = parse_jid(a["user"], bare=True)
    served_domain(ctx, user.domain)
    tokens = await _store(ctx).list_fast_tokens(user.domain, user.local or "")
    # Never the secret: which client holds one, for what mechanism, until when.
    return [{"userAgentId": agent, "mechanism": t.mechanism, "expiresAt": int(t.expire)}
            for agent, t in tokens]


async def revoke_token(ctx: Context, a: dict[str, Any]) -> str:
    user = parse_jid(a["user"], bare=True)
    served_domain(ctx, user.domain)
    count = await _store(ctx).revoke_fast_tokens(user.domain, user.local or "")
    return f"Revoked the tokens of {count} clients"


ADMIN_RESOLVERS = {
    ("TokenAdminQuery", "listTokens"): list_tokens,
    ("TokenAdminMutation", "revokeToken"): revoke_token,
}
USER_RESOLVERS = {
    ("TokenUserQuery", "listTokens"): as_me(list_tokens),
    ("TokenUserMutation", "revokeToken"): as_me(revoke_token),
}

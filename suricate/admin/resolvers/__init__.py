"""Resolvers, one file per category. Each file maps (GraphQL type, field) to a coroutine
``fn(ctx, args) -> value``; user-endpoint resolvers reuse the admin ones with the caller's
own JID."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from suricate.admin.context import Context

Resolver = Callable[[Context, dict[str, Any]], Awaitable[Any] | Any]


def _collect(*tables: Mapping[tuple[str, str], Resolver]) -> dict[tuple[str, str], Resolver]:
    merged: dict[tuple[str, str], Resolver] = {}
    for table in tables:
        merged.update(table)
    return merged


from suricate.admin.resolvers import (  # noqa: E402 - after Resolver, which they import
    account,
    check_auth,
    domain,
    gdpr,
    metric,
    server,
    session,
    stanza,
    stat,
    unsupported,
    user,
)

ADMIN_RESOLVERS = _collect(
    check_auth.RESOLVERS, account.RESOLVERS, domain.RESOLVERS, session.RESOLVERS, stanza.RESOLVERS,

    stat.RESOLVERS, metric.RESOLVERS, server.RESOLVERS, gdpr.RESOLVERS, unsupported.RESOLVERS,
)
USER_RESOLVERS = user.RESOLVERS

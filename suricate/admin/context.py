"""Who is calling and what they may see: passed to every resolver as ``info.context``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from graphql import GraphQLError

from suricate.jid import JID, InvalidJID

if TYPE_CHECKING:
    from suricate.admin.sse import Convert
    from suricate.core.module import Module
    from suricate.core.server import Server

ModuleT = TypeVar("ModuleT", bound="Module")

CallerKind = Literal["admin", "domain_admin", "user"]


@dataclass(frozen=True)
class Caller:
    kind: CallerKind
    domain: str | None = None  # the domain of a domain admin
    jid: JID | None = None  # the account on the user endpoint


class Subscription:
    """A subscription operation's stream, as its resolver sees it (GET ``{path}/sse``).

    As MongooseIM 6.4's ``mongoose_graphql_sse_handler``, the operation runs once to open the
    stream (``event`` is None: the resolver checks its arguments, calls ``open`` and answers
    null), then once per item the stream's session queued (``event`` is that item: the
    resolver answers what the client gets, or null for nothing).
    """

    def __init__(self, opener: Callable[[JID, Convert[Any]], object]) -> None:
        self._opener = opener
        self.opened = False
        self.event: Any = None

    def open(self, account: JID, convert: Convert[Any]) -> None:
        """Open the session of ``account`` that queues what ``convert`` makes of each stanza
        delivered to it. Once per operation: an alias selecting the field again shares it."""
        if not self.opened:
            self.opened = True
            self._opener(account, convert)


@dataclass
class Context:
    server: Server
    caller: Caller
    allowed_categories: frozenset[str] | None = None
    #: Set on a subscription's stream (GET {path}/sse) only.
    subscription: Subscription | None = None


def fail(message: str, code: str = "bad_request") -> GraphQLError:
    """An error the caller caused, with a machine-readable code (``extensions.code``)."""
    return GraphQLError(message, extensions={"code": code})


def enabled_module(ctx: Context, cls: type[ModuleT]) -> ModuleT:
    """The running module a category's data belongs to (roster, offline, vCard, ...).

    Without it the data has no owner to read or write it: the call fails with
    ``module_not_loaded``, as MongooseIM answers for a category whose module is not loaded.
    """
    module = ctx.server.modules.get(cls.name)
    if not isinstance(module, cls):
        raise fail(f"{cls.name} is not enabled", "module_not_loaded")
    return module


def me(ctx: Context) -> JID:
    """The account calling the user endpoint."""
    assert ctx.caller.jid is not None
    return ctx.caller.jid


UserResolver = Callable[[Context, dict[str, Any]], Awaitable[Any]]


def as_me(fn: UserResolver) -> UserResolver:
    """An admin resolver run on the user endpoint for the caller's own account."""
    async def run(ctx: Context, a: dict[str, Any]) -> Any:
        return await fn(ctx, {**a, "user": str(me(ctx))})
    return run


def user_or_me(fn: UserResolver) -> UserResolver:
    """An admin resolver run on the user endpoint for `user`, the caller when omitted."""
    async def run(ctx: Context, a: dict[str, Any]) -> Any:
        return await fn(ctx, {**a, "user": a.get("user") or str(me(ctx))})
    return run


def parse_jid(value: Any, what: str = "user", bare: bool | None = None) -> JID:
    """A JID argument: ``bare=True`` wants user@domain, ``False`` a full JID, ``None`` either;
    a local part is always required."""
    try:
        jid = JID.parse(str(value))
    except (InvalidJID, ValueError) as exc:
        raise fail(f"{what}: invalid JID {value!r} ({exc})", "bad_jid") from None
    if jid.local is None:
        raise fail(f"{what}: {value!r} has no user part", "bad_jid")
    if bare is True and jid.resource is not None:
        raise fail(f"{what}: give a bare JID (user@domain), not {value!r}", "bad_jid")
    if bare is False and jid.resource is None:
        raise fail(f"{what}: give a full JID (user@domain/resource), not {value!r}", "bad_jid")
    return jid


async def known_user(ctx: Context, jid: JID) -> JID:
    """``jid`` when its account exists here: a sender or archive owner an admin names
    (6.4's ``mongoose_stanza_api`` checks, with its codes and messages). Without it an admin
    could speak for a foreign domain (a forged ``from`` sent on over s2s) or for nobody (an
    archive made for an account that does not exist)."""
    if not ctx.server.is_local_domain(jid.domain):
        raise fail("User's domain does not exist", "unknown_user")
    if not await ctx.server.user_exists(jid.bare):
        raise fail("User does not exist", "unknown_user")
    return jid


async def existing_user(ctx: Context, value: Any, what: str = "user") -> JID:
    """The bare JID ``value`` names, an existing account of a served domain: whose data an
    operation writes (vCard, private XML, last activity), so that nothing is stored for
    nobody and handed to whoever registers that name later."""
    jid = parse_jid(value, what, bare=True)
    served_domain(ctx, jid.domain)
    if not await ctx.server.user_exists(jid):
        raise fail(f"User {jid} does not exist", "user_does_not_exist")
    return jid


def served_domain(ctx: Context, domain: Any) -> str:
    name = str(domain).strip().lower()
    if not ctx.server.is_local_domain(name):
        raise fail(f"domain {name} is not served here", "domain_not_found")
    return name

"""``@protected`` and ``allowed_categories``, enforced on every field as it is resolved.

The rules are read from the schema's own directives once, when the schema is built, so what
the SDL says is what is enforced: a GLOBAL field is refused to a domain admin; a DOMAIN field
is allowed when each argument it names is the domain admin's domain (or a JID in it), or a
service subdomain of it (a MUC or MUC light room).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphql import (
    EnumValueNode,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    ListValueNode,
    StringValueNode,
)

from suricate.admin.context import Context, fail
from suricate.jid import JID, InvalidJID

ALWAYS_ALLOWED = frozenset({"checkAuth", "__typename", "__schema", "__type"})


@dataclass(frozen=True)
class Rule:
    scope: str  # GLOBAL or DOMAIN
    args: tuple[str, ...]


def read_rules(schema: GraphQLSchema) -> dict[tuple[str, str], Rule]:
    rules: dict[tuple[str, str], Rule] = {}
    for type_name, gtype in schema.type_map.items():
        if not isinstance(gtype, GraphQLObjectType) or type_name.startswith("__"):
            continue
        for field_name, field in gtype.fields.items():
            node = field.ast_node
            for directive in (node.directives if node is not None else ()) or ():
                if directive.name.value != "protected":
                    continue
                scope: str = "DOMAIN"
                args: tuple[str, ...] = ()
                for arg in directive.arguments or ():
                    if arg.name.value == "type" and isinstance(arg.value, EnumValueNode):
                        scope = arg.value.value
                    elif arg.name.value == "args" and isinstance(arg.value, ListValueNode):
                        args = tuple(v.value for v in arg.value.values
                                     if isinstance(v, StringValueNode))
                rules[(type_name, field_name)] = Rule(scope, args)
    return rules


def _domain_of(value: Any) -> str:
    text = str(value)
    if "@" in text or "/" in text:
        try:
            return JID.parse(text).domain
        except (InvalidJID, ValueError):
            return ""
    return text.strip().lower()


def _in_domain(ctx: Context, domain: str, admin_domain: str | None) -> bool:
    """``domain`` is the domain admin's: its domain, or a service subdomain made for it from a
    module's ``@HOST@`` pattern (``conference.a.test`` for ``a.test``), as 6.4 lets a domain
    admin run its rooms (mongoose_graphql_permissions asks the subdomain's parent domain). A
    fixed service domain or a component belongs to no domain: the global admin's."""
    if domain == admin_domain:
        return True
    # A served domain is its own tenant's, even were it named like another's subdomain
    # (conference.a.test added as a domain of its own): never the admin of a.test's.
    return (admin_domain is not None and not ctx.server.is_local_domain(domain)
            and ctx.server.components.parent_domain(domain) == admin_domain)


def _arg_values(args: dict[str, Any], name: str) -> list[Any]:
    """The values an ``args`` entry of ``@protected`` names: an argument (``user``), or a field
    of an input object argument, or of each item of a list of them (``contacts.jid``, as
    6.4 writes it). Empty when not given."""
    values: list[Any] = [args]
    for part in name.split("."):
        found: list[Any] = []
        for value in values:
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, dict) and item.get(part) is not None:
                    found.append(item[part])
        values = found
    return [v for value in values for v in (value if isinstance(value, list) else [value])]


def middleware(rules: dict[tuple[str, str], Rule]) -> Callable[..., Any]:
    def protect(next_: Callable[..., Any], root: Any, info: GraphQLResolveInfo,
                **args: Any) -> Any:
        ctx: Context = info.context
        if info.path.prev is None and ctx.allowed_categories is not None \
                and info.field_name not in ALWAYS_ALLOWED \
                and info.field_name not in ctx.allowed_categories:
            # Name the option: the operator reading this in the CLI fixes it in the TOML.
            allowed = ", ".join(sorted(ctx.allowed_categories)) or "none"
            raise fail(f"category {info.field_name} is not allowed on this endpoint "
                       f"(its allowed_categories: {allowed})", "category_not_allowed")
        caller = ctx.caller
        if caller.kind == "domain_admin":
            rule = rules.get((info.parent_type.name, info.field_name))
            if rule is not None:
                if rule.scope == "GLOBAL":
                    raise fail(f"{info.field_name} is only for the global admin",
                               "no_permissions")
                for name in rule.args:
                    values = _arg_values(args, name)
                    if not values:
                        raise fail(f"{info.field_name}: a domain admin must give {name}",
                                   "no_permissions")
                    if not all(_in_domain(ctx, _domain_of(v), caller.domain) for v in values):
                        raise fail(f"{info.field_name}: {name} is outside the domain "
                                   f"{caller.domain} of this admin", "no_permissions")
        return next_(root, info, **args)

    return protect

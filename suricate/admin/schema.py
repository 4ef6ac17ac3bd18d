"""Loading the shipped ``.graphql`` files and binding resolvers to them.

A category type (``AccountAdminQuery``, ``SessionUserQuery``, ...) must have a resolver for
every field: a field without one is refused when the schema is built (tests build both), so the
SDL cannot promise what the code does not do.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from inspect import isawaitable
from typing import TYPE_CHECKING, Any

from graphql import (
    GraphQLError,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    StringValueNode,
    Undefined,
    ValueNode,
    build_schema,
)

from suricate.admin.protect import Rule, read_rules
from suricate.admin.resolvers import ADMIN_RESOLVERS, USER_RESOLVERS, Resolver

if TYPE_CHECKING:
    from suricate.core.module import GraphQLCategory

log = logging.getLogger("suricate.admin")

SCHEMA_FOLDERS = {"admin": ("common", "admin"), "domain_admin": ("common", "admin"),
                  "user": ("common", "user")}


# What a module's package holds for each endpoint (see GraphQLCategory).
MODULE_SDL = {"admin": ("common.graphql", "admin.graphql"),
              "domain_admin": ("common.graphql", "admin.graphql"),
              "user": ("common.graphql", "user.graphql")}


def module_categories() -> list[GraphQLCategory]:
    """The categories the feature modules declare (``Module.graphql``), by module name: of every
    module of the catalogue, enabled or not, so the schema does not depend on the
    configuration (a category whose module is not enabled answers ``module_not_loaded``)."""
    # The catalogue (config layer) imports each module by name: admin sits below modules.
    from suricate.config.catalog import CATALOG

    return [cls.graphql for _, cls in sorted(CATALOG.items()) if cls.graphql is not None]


def sdl(endpoint: str) -> str:
    """The schema text of an endpoint: the files of each folder in name order, then the
    modules' files (``extend type AdminQuery ...``)."""
    base = resources.files("suricate.admin").joinpath("schema")
    texts: list[str] = []
    for folder in SCHEMA_FOLDERS[endpoint]:
        entries = sorted(base.joinpath(folder).iterdir(), key=lambda e: e.name)
        texts += [e.read_text(encoding="utf-8") for e in entries if e.name.endswith(".graphql")]
    for category in module_categories():
        for name in MODULE_SDL[endpoint]:
            entry = resources.files(category.package).joinpath(name)
            if entry.is_file():
                texts.append(entry.read_text(encoding="utf-8"))
    return "\n".join(texts)


def resolvers(endpoint: str) -> dict[tuple[str, str], Resolver]:
    """The resolvers of an endpoint: admin/resolvers/ and the modules' ``resolvers`` code."""
    user = endpoint == "user"
    found = dict(USER_RESOLVERS if user else ADMIN_RESOLVERS)
    for category in module_categories():
        code = importlib.import_module(category.resolvers)
        found.update(getattr(code, "USER_RESOLVERS" if user else "ADMIN_RESOLVERS"))
    return found


def _crash(info: Any, exc: Exception) -> GraphQLError:
    """Our bug in a resolver (DESIGN §5): logged with its trace; the caller reads that it was
    one (6.4's words and code), not the exception's text, which may show internals."""
    field = f"{info.parent_type.name}.{info.field_name}"
    log.error("graphql_resolver_crash field=%s", field, exc_info=exc)
    return GraphQLError(f"Unexpected {info.parent_type.name} resolver crash (see the server "
                        "log)", extensions={"code": "internal_server_error"})


async def _guarded(result: Awaitable[Any], info: Any) -> Any:
    try:
        return await result
    except GraphQLError:
        raise
    except Exception as exc:
        raise _crash(info, exc) from None


def _bind(fn: Resolver) -> Callable[..., Any]:
    # GraphQL argument names are not always Python names (`from`): resolvers take a dict.
    def resolve(_root: Any, info: Any, **args: Any) -> Any:
        try:
            result = fn(info.context, args)
        except GraphQLError:
            raise
        except Exception as exc:
            raise _crash(info, exc) from None
        return _guarded(result, info) if isawaitable(result) else result
    return resolve


def _category(_root: Any, _info: Any, **_args: Any) -> Any:
    return {}  # a category object carries nothing; its fields do the work


class BuiltSchema:
    def __init__(self, schema: GraphQLSchema, rules: dict[tuple[str, str], Rule]) -> None:
        self.schema = schema
        self.rules = rules


def _text(kind: str) -> tuple[Callable[[Any], Any], Callable[..., Any]]:
    """The input coercion of a scalar written as a string (JID, DomainName): a number, a
    boolean, a list or an object is refused where the value comes in (GraphQL §3.5: a custom
    scalar defines its coercion), with the type's name, rather than handed to the resolver as
    whatever it was. Whether the text is a valid JID is the resolver's to say (``bad_jid``)."""

    def parse_value(value: Any) -> str:
        if not isinstance(value, str):
            raise GraphQLError(f"{kind} must be a string, as in \"{_EXAMPLE[kind]}\"; "
                               f"got {value!r}")
        return value

    def parse_literal(node: ValueNode, _variables: Any = None) -> Any:
        return node.value if isinstance(node, StringValueNode) else Undefined

    return parse_value, parse_literal


_EXAMPLE = {"JID": "alice@localhost", "DomainName": "localhost"}


def build(endpoint: str) -> BuiltSchema:
    schema = build_schema(sdl(endpoint))
    for kind in _EXAMPLE:
        scalar = schema.type_map.get(kind)
        if isinstance(scalar, GraphQLScalarType):
            parse_value, parse_literal = _text(kind)
            # graphql-core 3.3 reads coerce_input_*; the parse_* names are its older ones.
            scalar.parse_value = parse_value  # type: ignore[method-assign,assignment]
            scalar.coerce_input_value = parse_value
            scalar.parse_literal = parse_literal  # type: ignore[method-assign]
            scalar.coerce_input_literal = parse_literal
    bound: Mapping[tuple[str, str], Resolver] = resolvers(endpoint)
    roots = [t for t in (schema.query_type, schema.mutation_type, schema.subscription_type)
             if t is not None]
    missing: list[str] = []
    for root in roots:
        for name, field in root.fields.items():
            fn = bound.get((root.name, name))
            if fn is not None:
                field.resolve = _bind(fn)
                continue
            field.resolve = _category
            category = field.type
            if not isinstance(category, GraphQLObjectType):
                missing.append(f"{root.name}.{name}")
                continue
            for op_name, op in category.fields.items():
                op_fn = bound.get((category.name, op_name))
                if op_fn is None:
                    missing.append(f"{category.name}.{op_name}")
                else:
                    op.resolve = _bind(op_fn)
    if missing:
        raise RuntimeError(f"{endpoint} schema fields without a resolver: {missing}")
    return BuiltSchema(schema, read_rules(schema))


def categories(schema: GraphQLSchema) -> list[tuple[str, str, GraphQLObjectType]]:
    """(root kind, category name, category type) of a schema: ``query``/``mutation``."""
    found = []
    for kind, root in (("query", schema.query_type), ("mutation", schema.mutation_type)):
        if root is None:
            continue
        for name, field in root.fields.items():
            if isinstance(field.type, GraphQLObjectType) and name != "checkAuth":
                found.append((kind, name, field.type))
    return found

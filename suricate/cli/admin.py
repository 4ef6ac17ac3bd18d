"""``suricate <category> <operation> --arg value``: the admin GraphQL schema as a command line,
like ``mongooseimctl``, talking to the running server's admin endpoint.

Every category and operation of the shipped admin schema becomes a sub-command; its arguments
become options typed from the schema, its description the ``--help`` text. The command sends
one GraphQL document selecting every scalar of the result and prints the result as JSON.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import ipaddress
import json
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    Undefined,
    build_schema,
    get_named_type,
    print_type,
)

from suricate.admin.schema import categories, sdl

#: Commands that are not categories (kept out of the generated set).
RESERVED = {"serve", "check-config", "graphql", "status", "stop"}
#: Options every generated command has (the configuration, the endpoint).
OWN_OPTIONS = {"config", "url", "data-dir"}


class AdminCliError(Exception):
    pass


class CredentialsRefused(AdminCliError):
    """The admin endpoint answered 401: wrong credentials, or another server than the one
    meant (the embedded default's password is its data folder's own)."""


class ServerUnreachable(AdminCliError):
    """Nothing answers at the admin endpoint: the server is not running (or not there).

    ``refused``: the connection was refused, so nothing listens there, which is what a stopped
    server looks like; otherwise (a timeout, a TLS failure, an answer that is not HTTP)
    something is there, and the request may even have been carried out."""

    def __init__(self, message: str, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


@dataclass
class Target:
    url: str
    host: str | None
    username: str | None
    password: str | None
    #: The listener's own certificate (``tls.certfile``), trusted for an https endpoint on
    #: another machine besides the system's CAs: a self-signed one is then accepted.
    certfile: str | None = None


def admin_schema() -> GraphQLSchema:
    return build_schema(sdl("admin"))


def find_target(cfg: Mapping[str, Any], url: str | None = None) -> Target:
    """The admin endpoint of the configuration's ``[[listen.http]]`` (or ``--url``)."""
    for listener in cfg["listen"].get("http", []):
        for handler in listener["handlers"].get("mongoose_graphql_handler", []):
            if handler["schema_endpoint"] != "admin":
                continue
            ip = listener.get("ip_address") or "127.0.0.1"
            if ip in ("0.0.0.0", "::"):
                ip = "127.0.0.1"
            if ":" in ip:
                ip = f"[{ip}]"
            scheme = "https" if listener.get("tls") else "http"
            found = url or f"{scheme}://{ip}:{listener['port']}{handler['path']}"
            host = None if handler["host"] == "_" else handler["host"]
            tls = listener.get("tls") or {}
            return Target(found, host, handler.get("username"), handler.get("password"),
                          tls.get("certfile"))
    if url:
        return Target(url, None, None, None)
    raise AdminCliError("no admin endpoint in the configuration: add a [[listen.http]] with a "
                        '[[listen.http.handlers.mongoose_graphql_handler]] schema_endpoint = '
                        '"admin" (or give --url)')


def post(target: Target, document: str, variables: Mapping[str, Any] | None = None
         ) -> dict[str, Any]:
    body = json.dumps({"query": document, "variables": dict(variables or {})}).encode()
    headers = {"content-type": "application/json", "accept": "application/json"}
    if target.host:
        headers["host"] = target.host
    if target.username is not None:
        token = base64.b64encode(f"{target.username}:{target.password}".encode()).decode()
        headers["authorization"] = f"Basic {token}"
    request = urllib.request.Request(target.url, data=body, headers=headers, method="POST")
    context = tls_context(target)
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            data = response.read()
    except urllib.error.HTTPError as err:
        data = err.read()
        if err.code == 401:
            raise CredentialsRefused(_refused_credentials(target, data)) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        reason = err.reason if isinstance(err, urllib.error.URLError) else err
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise AdminCliError(
                f"the certificate of {target.url} is not trusted ({reason.verify_message}): "
                "the credentials were not sent. Give --config with the server's configuration "
                "(its listener's tls.certfile is trusted), or the CA that signed it in "
                f"{CAFILE_ENV}") from None
        reason = err.reason if isinstance(err, urllib.error.URLError) else err
        raise ServerUnreachable(f"cannot reach the server at {target.url}: {err} "
                                "(is it running?)",
                                refused=isinstance(reason, ConnectionRefusedError)) from None
    try:
        result: dict[str, Any] = json.loads(data)
    except json.JSONDecodeError:
        raise AdminCliError(f"unexpected answer from {target.url}: {data[:200]!r}") from None
    return result


#: A CA file (PEM) the admin commands trust for an https endpoint, besides the system's.
CAFILE_ENV = "SURICATE_ADMIN_CAFILE"


def tls_context(target: Target) -> ssl.SSLContext | None:
    """How an https endpoint is checked. On this machine (a loopback address) it is the
    server's own listener, often with the self-signed certificate ``serve`` generated: not
    checked. Anywhere else the Basic credentials would go to whoever answers, so the
    certificate is verified against the system's CAs, the listener's own certificate of the
    configuration (``--config``) and ``SURICATE_ADMIN_CAFILE``."""
    parts = urllib.parse.urlsplit(target.url)
    if parts.scheme != "https":
        return None
    if _loopback(parts.hostname or ""):
        return ssl._create_unverified_context()
    context = ssl.create_default_context()
    for cafile in (target.certfile, os.environ.get(CAFILE_ENV)):
        if cafile:
            try:
                context.load_verify_locations(cafile)
            except (OSError, ssl.SSLError) as err:
                raise AdminCliError(f"cannot read the certificate {cafile}: {err}") from None
    return context


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refused_credentials(target: Target, body: bytes) -> str:
    """What to do when the endpoint answers 401: the credentials the command sent are the
    configuration's (or none, with ``--url`` alone)."""
    try:
        said = "; ".join(str(e.get("message")) for e in json.loads(body)["errors"])
    except (ValueError, KeyError, TypeError, AttributeError):
        said = "401"
    if target.username is None:
        return (f"the admin endpoint at {target.url} asks for credentials ({said}): give "
                "--config FILE, the running server's configuration, whose "
                "mongoose_graphql_handler (schema_endpoint = \"admin\") has them")
    return (f"the admin endpoint at {target.url} refused the credentials ({said}): the "
            "username and password of the configuration's mongoose_graphql_handler "
            '(schema_endpoint = "admin") are not those of the running server; was it started '
            "with another configuration?")


# -- generation ----------------------------------------------------------------------------------
def _scalar_parser(gtype: Any) -> Any:
    named = get_named_type(gtype)
    if isinstance(named, GraphQLInputObjectType):
        return _json_object
    if isinstance(named, GraphQLScalarType):
        if named.name == "Int":
            return int
        if named.name == "Float":
            return float
        if named.name == "Boolean":
            return _boolean
    return str


def _json_object(text: str) -> dict[str, Any]:
    """An input object argument (muc changeRoomConfiguration --config), given as JSON."""
    try:
        value = json.loads(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r} ({err})") \
            from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _boolean(text: str) -> bool:
    if text.lower() in ("true", "yes", "1"):
        return True
    if text.lower() in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _type_name(gtype: Any) -> str:
    if isinstance(gtype, GraphQLNonNull):
        return _type_name(gtype.of_type) + "!"
    if isinstance(gtype, GraphQLList):
        return "[" + _type_name(gtype.of_type) + "]"
    return str(gtype.name)


def _add_argument(parser: argparse.ArgumentParser, name: str, arg: GraphQLArgument) -> None:
    gtype: GraphQLInputType = arg.type
    has_default = arg.default_value is not Undefined and arg.default_value is not None
    required = isinstance(gtype, GraphQLNonNull) and not has_default
    inner = gtype.of_type if isinstance(gtype, GraphQLNonNull) else gtype
    kwargs: dict[str, Any] = {"dest": f"gql_{name}", "required": required,
                              "metavar": _type_name(get_named_type(gtype))}
    named = get_named_type(gtype)
    if isinstance(named, GraphQLEnumType):
        kwargs["choices"] = list(named.values)
        kwargs.pop("metavar")
    else:
        kwargs["type"] = _scalar_parser(gtype)
    if isinstance(inner, GraphQLList):
        kwargs["nargs"] = "+"
    helptext = arg.description or _type_name(gtype)
    if has_default:
        helptext += f" (default: {arg.default_value})"
    elif required:
        helptext += " (required)"
    flag = name
    if name in OWN_OPTIONS:
        # The command's own option (--config FILE) keeps its meaning; the GraphQL argument
        # of that name (muc changeRoomConfiguration's config) is --gql-config.
        flag = f"gql-{name}"
        helptext += f" (GraphQL argument {name!r})"
    parser.add_argument(f"--{flag}", help=helptext, **kwargs)


def selection(gtype: Any, depth: int = 0) -> str:
    """Every scalar of an object type, objects nested up to three levels."""
    named = get_named_type(gtype)
    if not isinstance(named, GraphQLObjectType):
        return ""
    parts = []
    for name, field in named.fields.items():
        sub = get_named_type(field.type)
        if isinstance(sub, GraphQLObjectType):
            if depth < 3:
                parts.append(name + " " + selection(sub, depth + 1))
        else:
            parts.append(name)
    return "{ " + " ".join(parts) + " }"


def document(kind: str, category: str, name: str, field: GraphQLField,
             given: Mapping[str, Any]) -> str:
    var_defs = ", ".join(f"${a}: {_type_name(field.args[a].type)}" for a in given)
    args = ", ".join(f"{a}: ${a}" for a in given)
    header = f"{kind} Cli({var_defs})" if var_defs else kind
    call = f"{name}({args})" if args else name
    return f"{header} {{ {category} {{ {call} {selection(field.type)} }} }}"


@dataclass
class Operation:
    kind: str  # query or mutation
    category: str
    name: str
    field: GraphQLField


def add_categories(sub: Any, existing: Mapping[str, Any], config_args: Any) -> None:
    """Add every admin category (or extend the parser of one that exists: ``account``)."""
    schema = admin_schema()
    by_category: dict[str, list[Operation]] = {}
    descriptions: dict[str, str] = {}
    for kind, name, ctype in categories(schema):
        root = schema.query_type if kind == "query" else schema.mutation_type
        assert root is not None
        descriptions.setdefault(name, root.fields[name].description or name)
        for op_name, field in ctype.fields.items():
            by_category.setdefault(name, []).append(Operation(kind, name, op_name, field))
    for category, operations in sorted(by_category.items()):
        if category in RESERVED:
            continue
        ops_sub = existing.get(category)
        if ops_sub is None:
            parser = sub.add_parser(category, help=f"{descriptions[category]} (admin API)",
                                    description=f"{descriptions[category]}: operations of the "
                                                "admin GraphQL API, run by the server.")
            ops_sub = parser.add_subparsers(dest="action", metavar="OPERATION")
            ops_sub.required = True
        for op in operations:
            text = op.field.description or op.name
            p = ops_sub.add_parser(op.name, help=text,
                                   description=f"{text}.\n\nGraphQL: {op.kind} {{ {category} "
                                               f"{{ {op.name} }} }}",
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
            for arg_name, arg in op.field.args.items():
                _add_argument(p, arg_name, arg)
            p.add_argument("--url", help="admin endpoint URL (default: from the configuration)")
            config_args(p)
            p.set_defaults(func=None, admin_operation=op)


def run_operation(cfg: Mapping[str, Any], args: argparse.Namespace) -> int:
    op: Operation = args.admin_operation
    given = {name: getattr(args, f"gql_{name}") for name in op.field.args
             if getattr(args, f"gql_{name}", None) is not None}
    target = find_target(cfg, args.url)
    result = post(target, document(op.kind, op.category, op.name, op.field, given), given)
    return print_result(result, (op.category, op.name))


def print_result(result: Mapping[str, Any], path: tuple[str, ...] = ()) -> int:
    data: Any = result.get("data")
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    if path and data is not None:
        print(json.dumps(data, indent=2, ensure_ascii=False))
    elif not path and "data" in result:
        print(json.dumps(result["data"], indent=2, ensure_ascii=False))
    errors = result.get("errors") or []
    for err in errors:
        code = (err.get("extensions") or {}).get("code")
        print(f"suricate: {err.get('message')}" + (f" ({code})" if code else ""),
              file=sys.stderr)
    return 1 if errors else 0


def describe_schema() -> str:
    schema = admin_schema()
    return "\n\n".join(print_type(t) for _, _, t in categories(schema))

"""``mongoose_graphql_handler``: GraphQL over HTTP (POST JSON, or GET for queries), HTTP Basic
authentication per ``schema_endpoint``, and a GraphiQL page for browsers.

graphql-core is imported with this module, i.e. only when a GraphQL handler is configured.
Status codes: 401 for missing or wrong credentials, 400 for a request that is not GraphQL
(bad JSON, a syntax or validation error), 200 once the operation ran, with any field errors in
``errors`` (each with ``extensions.code``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import partial
from inspect import isawaitable
from typing import TYPE_CHECKING, Any

from graphql import (
    ExecutionResult,
    GraphQLError,
    OperationType,
    execute,
    get_operation_ast,
    parse,
    validate,
)

from suricate.admin.auth import Unauthorized, authenticate
from suricate.admin.context import Caller, Context
from suricate.admin.graphiql import graphiql_page
from suricate.admin.protect import middleware
from suricate.admin.resolvers import metric
from suricate.admin.schema import BuiltSchema, build
from suricate.net.http.message import Request, Response

if TYPE_CHECKING:
    from suricate.core.server import Server

_CHALLENGE = {"www-authenticate": 'Basic realm="suricate", charset="UTF-8"'}


class GraphQLEndpoint:
    def __init__(self, server: Server, opts: Mapping[str, Any]) -> None:
        self.server = server
        self.opts = opts
        self.endpoint: str = opts["schema_endpoint"]
        allowed = opts.get("allowed_categories")
        self.allowed = frozenset(allowed) if allowed is not None else None
        self.built: BuiltSchema = build(self.endpoint)
        self._middleware = [middleware(self.built.rules)]
        if self.endpoint == "admin":
            # getClusterMetricsAsDicts of another node asks this one for its metrics.
            server.cluster.answer_on(metric.CLUSTER_OP,
                                     partial(metric.answer_metrics, server))

    async def handle(self, request: Request) -> Response:
        if request.method == "GET" and "query" not in request.query \
                and "text/html" in request.headers.get("accept", ""):
            return Response.text(200, graphiql_page(request.path, self.endpoint),
                                 "text/html; charset=utf-8")
        if request.method not in ("GET", "POST"):
            return Response.json(405, _errors("use GET or POST", "method_not_allowed"),
                                 {"allow": "GET, POST"})
        try:
            caller = await authenticate(self.server, self.endpoint, self.opts,
                                        request.headers.get("authorization"))
        except Unauthorized as err:
            return Response.json(401, _errors(str(err), "no_permissions"), _CHALLENGE)
        try:
            document, variables, operation = _read(request)
        except ValueError as err:
            return Response.json(400, _errors(str(err), "bad_request"))
        status, result = await self.run(document, variables, operation, caller,
                                        read_only=request.method == "GET")
        return Response.json(status, result)

    async def run(self, document: str, variables: dict[str, Any] | None,
                  operation: str | None, caller: Caller,
                  read_only: bool = False) -> tuple[int, dict[str, Any]]:
        schema = self.built.schema
        try:
            ast = parse(document)
        except GraphQLError as err:
            return 400, {"errors": [_with_code(err, "parsing_error")]}
        problems = validate(schema, ast)
        if problems:
            return 400, {"errors": [_with_code(e, "validation_error") for e in problems]}
        op = get_operation_ast(ast, operation)
        if read_only and op is not None and op.operation != OperationType.QUERY:
            # GraphQL over HTTP: a GET must not change anything.
            return 405, _errors("mutations need POST", "method_not_allowed")
        ctx = Context(self.server, caller, self.allowed)
        result = execute(schema, ast, context_value=ctx, variable_values=variables,
                         operation_name=operation, middleware=self._middleware)
        if isawaitable(result):
            result = await result
        assert isinstance(result, ExecutionResult)
        return 200, dict(result.formatted)


def _read(request: Request) -> tuple[str, dict[str, Any] | None, str | None]:
    if request.method == "GET":
        params: dict[str, Any] = dict(request.query)
        if isinstance(params.get("variables"), str) and params["variables"]:
            try:
                params["variables"] = json.loads(params["variables"])
            except json.JSONDecodeError:
                raise ValueError("variables: not JSON") from None
    else:
        ctype = request.headers.get("content-type", "application/json").split(";")[0].strip()
        if ctype == "application/graphql":
            params = {"query": request.body.decode("utf-8", "replace")}
        else:
            try:
                params = json.loads(request.body or b"null")
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise ValueError("the body is not JSON") from None
    if not isinstance(params, dict) or not isinstance(params.get("query"), str):
        raise ValueError('expected {"query": "...", "variables": {...}}')
    variables = params.get("variables")
    if variables is not None and not isinstance(variables, dict):
        raise ValueError("variables must be an object")
    operation = params.get("operationName")
    return params["query"], variables, operation if isinstance(operation, str) else None


def _errors(message: str, code: str) -> dict[str, Any]:
    return {"errors": [{"message": message, "extensions": {"code": code}}]}


def _with_code(err: GraphQLError, code: str) -> dict[str, Any]:
    formatted = dict(err.formatted)
    formatted["extensions"] = {"code": code}
    return formatted

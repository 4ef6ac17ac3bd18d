"""``mongoose_graphql_handler``: GraphQL over HTTP (POST JSON, or GET for queries), HTTP Basic
authentication per ``schema_endpoint``, and a GraphiQL page for browsers; subscriptions over
Server-Sent Events at ``{path}/sse``, as MongooseIM 6.4's ``mongoose_graphql_sse_handler``.

graphql-core is imported with this module, i.e. only when a GraphQL handler is configured.
Status codes: 401 for missing or wrong credentials, 400 for a request that is not GraphQL
(bad JSON, a syntax or validation error) or an operation of a kind not served at that path
(a subscription at the endpoint, a query or mutation at ``/sse``), 200 once the operation ran,
with any field errors in ``errors`` (each with ``extensions.code``).

``GET {path}/sse`` takes the operation as a GET to the endpoint does (``query``,
``operationName``, ``variables`` as JSON; 6.4's ``gather``) with the same credentials. As in
6.4 the subscription runs once to open its stream: when that answers without opening one (a
field error: unknown user, no permission) the answer is that result as a 200 JSON document;
otherwise 200 ``text/event-stream``, and the operation runs again for each item the stream's
session queued, each result with a non-null value written as an event ``id: N`` /
``data: {"data": ...}`` (no event name: an EventSource's ``message``). The stream ends after
``sse_idle_timeout`` milliseconds without an event (6.4: cowboy's idle timeout of the stream,
1 hour by default; an EventSource reconnects), besides the ends of ``suricate.admin.sse``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import partial
from inspect import isawaitable
from typing import TYPE_CHECKING, Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    OperationType,
    execute,
    get_operation_ast,
    parse,
    validate,
)

from suricate.admin.auth import Unauthorized, authenticate
from suricate.admin.context import Caller, Context, Subscription
from suricate.admin.graphiql import graphiql_page
from suricate.admin.protect import middleware
from suricate.admin.resolvers import metric
from suricate.admin.schema import BuiltSchema, build
from suricate.admin.sse import SseSession, SseStreams, to_web
from suricate.net.http.forwarded import client_address
from suricate.net.http.message import Request, Response

if TYPE_CHECKING:
    from aiohttp import web

    from suricate.core.server import Server

_CHALLENGE = {"www-authenticate": 'Basic realm="suricate", charset="UTF-8"'}


class _Refused(Exception):
    """A request answered before the operation runs: its status and GraphQL error body."""

    def __init__(self, status: int, body: dict[str, Any],
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers


class GraphQLEndpoint:
    def __init__(self, server: Server, opts: Mapping[str, Any]) -> None:
        self.server = server
        self.opts = opts
        self.endpoint: str = opts["schema_endpoint"]
        allowed = opts.get("allowed_categories")
        self.allowed = frozenset(allowed) if allowed is not None else None
        self.built: BuiltSchema = build(self.endpoint)
        self._middleware = [middleware(self.built.rules)]
        #: Where subscriptions are served (6.4's route Path ++ "/sse").
        self.sse_path = f"{str(opts.get('path', '')).rstrip('/')}/sse"
        self.streams = SseStreams(server)
        idle = opts.get("sse_idle_timeout", 3600000)
        self.sse_idle_timeout: float | None = None if idle is None else idle / 1000
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
            caller, document, variables, operation = await self._request(request)
        except _Refused as refused:
            return Response.json(refused.status, refused.body, refused.headers)
        status, result = await self.run(document, variables, operation, caller,
                                        read_only=request.method == "GET")
        return Response.json(status, result)

    async def run(self, document: str, variables: dict[str, Any] | None,
                  operation: str | None, caller: Caller,
                  read_only: bool = False) -> tuple[int, dict[str, Any]]:
        try:
            ast = self._document(document, operation, "GET" if read_only else "POST")
        except _Refused as refused:
            return refused.status, refused.body
        ctx = Context(self.server, caller, self.allowed)
        result = await self._execute(ast, ctx, variables, operation)
        # Nothing ran (a variable's value could not be coerced): a request error, as a
        # literal of the wrong type is refused before it runs (400, as 6.4 answers).
        return (400 if result.get("data") is None and result.get("errors") else 200), result

    async def _request(self, request: Request
                       ) -> tuple[Caller, str, dict[str, Any] | None, str | None]:
        """The caller (401 otherwise) and the operation (400 for a request that is not
        GraphQL) of a GET or POST."""
        try:
            caller = await authenticate(self.server, self.endpoint, self.opts,
                                        request.headers.get("authorization"),
                                        client_address(request.peer, request.headers))
        except Unauthorized as err:
            raise _Refused(401, _errors(str(err), "no_permissions"), _CHALLENGE) from None
        try:
            document, variables, operation = _read(request)
        except ValueError as err:
            raise _Refused(400, _errors(str(err), "bad_request")) from None
        return caller, document, variables, operation

    def _document(self, document: str, operation: str | None, how: str) -> DocumentNode:
        """The parsed and validated document, if its operation is served ``how`` (GET or
        POST to the endpoint, SSE at ``/sse``)."""
        try:
            ast = parse(document)
        except GraphQLError as err:
            raise _Refused(400, {"errors": [_with_code(err, "parsing_error")]}) from None
        problems = validate(self.built.schema, ast)
        if problems:
            raise _Refused(400, {"errors": [_with_code(e, "validation_error")
                                            for e in problems]})
        op = get_operation_ast(ast, operation)
        kind = op.operation if op is not None else None
        if how == "SSE":
            if kind is not None and kind != OperationType.SUBSCRIPTION:
                # 6.4 answers 400 for a query at /sse (graphql_sse_SUITE); mutations alike.
                raise _Refused(400, _errors(
                    f"only subscriptions are served at {self.sse_path}; queries and "
                    f"mutations at the endpoint itself", "bad_request"))
        elif kind == OperationType.SUBSCRIPTION:
            raise _Refused(400, _errors(
                f"subscriptions are served over Server-Sent Events: GET {self.sse_path}",
                "bad_request"))
        elif how == "GET" and kind == OperationType.MUTATION:
            # GraphQL over HTTP: a GET must not change anything.
            raise _Refused(405, _errors("mutations need POST", "method_not_allowed"))
        return ast

    async def _execute(self, ast: DocumentNode, ctx: Context,
                       variables: dict[str, Any] | None,
                       operation: str | None) -> dict[str, Any]:
        result = execute(self.built.schema, ast, context_value=ctx, variable_values=variables,
                         operation_name=operation, middleware=self._middleware)
        if isawaitable(result):
            result = await result
        assert isinstance(result, ExecutionResult)
        formatted: dict[str, Any] = dict(result.formatted)
        errors: list[dict[str, Any]] = formatted.get("errors") or []
        for error in errors:
            if "path" not in error and not error.get("extensions"):
                # graphql-core's own request errors (a variable's value of the wrong type)
                # carry no code: 6.4's for them.
                error["extensions"] = {"code": "input_coercion"}
        return formatted

    # -- subscriptions: GET {path}/sse ----------------------------------------------------------
    def holds(self, method: str, path: str) -> bool:
        """The requests ``handle_web`` serves (the listener asks): every one to ``/sse``."""
        return path.rstrip("/") == self.sse_path

    async def handle_web(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.method != "GET":
            # 6.4's lasse handler answers 405 to anything but GET.
            return to_web(Response.json(
                405, _errors("subscriptions use GET", "method_not_allowed"), {"allow": "GET"}))
        plain = Request("GET", request.path, request.query_string, "",
                        {"authorization": request.headers.get("Authorization", "")})
        try:
            caller, document, variables, operation = await self._request(plain)
            ast = self._document(document, operation, "SSE")
        except _Refused as refused:
            return to_web(Response.json(refused.status, refused.body, refused.headers))
        opened: list[SseSession[Any]] = []
        sub = Subscription(lambda jid, convert: opened.append(self.streams.open(jid, convert)))
        ctx = Context(self.server, caller, self.allowed, sub)
        first = await self._execute(ast, ctx, variables, operation)
        if not opened or "errors" in first:
            for session in opened:
                self.streams.close(session)
            return to_web(Response.json(200, first))  # 6.4: the result, no stream

        async def render(item: Any) -> tuple[str | None, Any] | None:
            sub.event = item
            try:
                result = await self._execute(ast, ctx, variables, operation)
            finally:
                sub.event = None
            # 6.4 writes a result only when it holds a non-null value (has_non_null_value).
            return (None, result) if _has_value(result.get("data")) else None

        return await self.streams.stream(request, opened[0], {}, render,
                                         self.sse_idle_timeout)

    def shutdown(self) -> None:
        """Server stop: the subscriptions' streams end."""
        self.streams.shutdown()


def _has_value(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_has_value(v) for v in value.values())
    return value is not None


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

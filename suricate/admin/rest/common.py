"""What both REST APIs share: routing by path pattern, HTTP Basic authentication, JSON
bodies, and running a GraphQL resolver with its error code turned into a status.

The REST APIs are a thin layer: each endpoint reads its arguments from the path, query string
or JSON body and calls the resolver of the GraphQL field that does the same
(``suricate.admin.schema.resolvers``: the admin/ resolvers and those the modules declare), so
both APIs act through the same code, with the same checks.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from graphql import GraphQLError

from suricate.admin.auth import Unauthorized, authenticate
from suricate.admin.context import Caller, Context
from suricate.admin.schema import resolvers
from suricate.net.http.forwarded import client_address
from suricate.net.http.message import Request, Response

if TYPE_CHECKING:
    from suricate.core.server import Server

log = logging.getLogger("suricate.rest")

#: GraphQL error codes (``extensions.code``) as the status 6.4's REST API gives that case.
STATUS_OF_CODE = {
    "bad_request": 400, "bad_jid": 400, "bad_password": 400, "bad_stanza": 400,
    "bad_limit": 400, "bad_timestamp": 400, "bad_days": 400, "bad_domain": 400,
    "bad_config": 400, "bad_affiliation": 400, "wrong_resource_number": 400,
    "user_does_not_exist": 404, "user_not_found": 404, "contact_not_found": 404,
    "no_session": 404, "no_user": 404, "domain_not_found": 404, "not_found": 404, "room_not_found": 404,
    "muc_server_not_found": 404, "muc_service_not_found": 404, "unknown_host_type": 404,
    "not_occupant": 403, "not_allowed": 403, "no_permissions": 403, "too_many_users": 403,
    # 6.4 answers an existing user with its "denied" (mongoose_admin_api_users: 403).
    "user_exists": 403, "already_exists": 409, "room_exists": 409,
    "module_not_loaded": 501,
}

#: The JSON error body's ``error``: the status as 6.4 names its error types.
KIND_OF_STATUS = {400: "bad_request", 401: "unauthorized", 403: "denied", 404: "not_found",
                  405: "method_not_allowed", 409: "duplicate", 415: "unsupported_media_type",
                  500: "internal", 501: "not_implemented"}


class RestError(Exception):
    """The answer to a request that cannot be served; the message is safe to show."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str,
                   headers: dict[str, str] | None = None) -> Response:
    return Response.json(status, {"error": KIND_OF_STATUS.get(status, "error"),
                                  "message": message}, headers)


Handler = Callable[["Call"], Awaitable[Response]]


@dataclass(frozen=True)
class Route:
    """``/users/{domain}/{username}``: each ``{name}`` matches one path segment."""
    part: str  # the `handlers` entry that serves it
    pattern: tuple[str, ...]
    methods: Mapping[str, Handler]

    def match(self, segments: list[str]) -> dict[str, str] | None:
        if len(segments) != len(self.pattern):
            return None
        bound: dict[str, str] = {}
        for want, got in zip(self.pattern, segments, strict=True):
            if want.startswith("{"):
                if not got:
                    return None
                bound[want[1:-1]] = unquote(got)
            elif want != got:
                return None
        return bound


def route(part: str, pattern: str, **methods: Handler) -> Route:
    return Route(part, tuple(pattern.strip("/").split("/")), methods)


@dataclass
class Call:
    """One request, as the endpoint functions see it."""
    server: Server
    request: Request
    caller: Caller
    params: dict[str, str]
    base: str  # the handler's path, for Location headers
    _body: Any = field(default=None, init=False)

    @property
    def ctx(self) -> Context:
        return Context(self.server, self.caller)

    def body(self) -> dict[str, Any]:
        """The JSON object of the body; 400 for anything else (never a 500)."""
        if self._body is None:
            ctype = self.request.headers.get("content-type", "application/json")
            if ctype.split(";")[0].strip().lower() not in ("application/json", ""):
                raise RestError(415, "the body must be application/json")
            try:
                value = json.loads(self.request.body or b"null")
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise RestError(400, "Invalid request body: not JSON") from None
            if not isinstance(value, dict):
                raise RestError(400, "Invalid request body: expected a JSON object")
            self._body = value
        return dict(self._body)

    def field(self, name: str, what: str | None = None, kind: type = str) -> Any:
        """A required body field of the given JSON type; 400 "Missing ..." otherwise."""
        body = self.body()
        if name not in body or body[name] is None:
            raise RestError(400, f"Missing {what or name}")
        value = body[name]
        if kind is str and not isinstance(value, str) or kind is bool and not isinstance(
                value, bool) or kind is list and not isinstance(value, list):
            raise RestError(400, f"Invalid {what or name}: expected a {kind.__name__}")
        return value

    def query_int(self, name: str, default: int | None, low: int = 0,
                  high: int | None = None) -> int | None:
        raw = self.request.query.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise RestError(400, f"Invalid value of '{name}'") from None
        if value < low or high is not None and value > high:
            raise RestError(400, f"Invalid value of '{name}'")
        return value

    async def run(self, type_name: str, field_name: str, args: dict[str, Any],
                  endpoint: str = "admin", statuses: Mapping[str, int] | None = None) -> Any:
        """Run the resolver of GraphQL field ``type_name.field_name``; a field error becomes
        a RestError with the status of its code (``statuses`` overrides)."""
        fn = _resolvers(endpoint)[(type_name, field_name)]
        try:
            result = fn(self.ctx, args)
            if isinstance(result, Awaitable):
                result = await result
        except GraphQLError as err:
            code = str((err.extensions or {}).get("code", "bad_request"))
            status = (statuses or {}).get(code) or STATUS_OF_CODE.get(code, 400)
            raise RestError(status, err.message) from None
        return result


_RESOLVERS: dict[str, dict[tuple[str, str], Any]] = {}


def _resolvers(endpoint: str) -> dict[tuple[str, str], Any]:
    if endpoint not in _RESOLVERS:  # the table only depends on the installed code
        _RESOLVERS[endpoint] = resolvers(endpoint)
    return _RESOLVERS[endpoint]


def json_response(status: int, value: Any) -> Response:
    return Response.json(status, value)


def no_content() -> Response:
    return Response(204)


def created(location: str, text: str) -> Response:
    """201 with the new resource's path; the body is its name, as text, as 6.4 sends it."""
    return Response.text(201, text, headers={"location": location})


class RestEndpoint:
    """A REST API mounted at the handler's ``path``: its routes, filtered by ``handlers``."""

    endpoint: str  # "admin" or "user": how callers authenticate
    cors: dict[str, str] = {}

    def __init__(self, server: Server, opts: Mapping[str, Any], routes: list[Route],
                 not_implemented: list[tuple[str, str, str]]) -> None:
        self.server = server
        self.opts = opts
        self.base = opts["path"].rstrip("/")
        enabled = set(opts["handlers"])
        self.routes = [r for r in routes if r.part in enabled]
        # (part, first path segment, why) of 6.4's API we do not serve: they answer 501.
        self.not_implemented = {segment: text for part, segment, text in not_implemented
                                if part in enabled}

    def cors_headers(self, request: Request) -> dict[str, str]:
        return dict(self.cors)

    async def handle(self, request: Request) -> Response:
        cors = self.cors_headers(request)
        response = await self._handle(request)
        for key, value in cors.items():
            response.headers.setdefault(key, value)
        return response

    async def _handle(self, request: Request) -> Response:
        rest = request.path[len(self.base):] if request.path.startswith(self.base) else ""
        segments = rest.strip("/").split("/") if rest.strip("/") else []
        found = [(r, p) for r in self.routes if (p := r.match(segments)) is not None]
        if not found:
            head = segments[0] if segments else ""
            if head in self.not_implemented:
                return error_response(501, self.not_implemented[head])
            return error_response(404, f"no such endpoint: {request.path}")
        if request.method == "OPTIONS":
            return Response(200)
        matched = [(r, p) for r, p in found if request.method in r.methods]
        if not matched:
            allowed = sorted({m for r, _ in found for m in r.methods} | {"OPTIONS"})
            return error_response(405, f"use {', '.join(allowed)}",
                                  {"allow": ", ".join(allowed)})
        try:
            caller = await authenticate(self.server, self.endpoint, self.opts,
                                        request.headers.get("authorization"),
                                        client_address(request.peer, request.headers))
        except Unauthorized as err:
            return error_response(401, str(err),
                                  {"www-authenticate": 'Basic realm="suricate", charset="UTF-8"'})
        chosen, params = matched[0]
        call = Call(self.server, request, caller, params, self.base)
        try:
            return await chosen.methods[request.method](call)
        except RestError as err:
            log.info("rest_error status=%s path=%s: %s", err.status, request.path, err.message)
            return error_response(err.status, err.message)

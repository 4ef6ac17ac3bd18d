"""The aiohttp side of ``[[listen.http]]``: imported when the first HTTP connection arrives
(see listener.py), never at start-up.

aiohttp's low-level ``web.Server`` is the protocol factory of our listening socket; every
request comes to ``dispatch``, which finds the route and either converts the request to our
plain ``Request`` (document handlers: GraphQL, metrics, host-meta) or hands aiohttp's request
to the handler's ``handle_web`` (connection-holding handlers: WebSocket, BOSH). A handler that
holds the connection for some requests only (the REST client API's ``GET /sse``) says which
with ``holds(method, path)``; its other requests are documents.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

from suricate.net.http.message import Request, Response, host_of

if TYPE_CHECKING:
    from suricate.net.http.listener import HttpListener

# A connection that sends nothing, or its request line and headers slowly, is closed this long
# after it connected or after its previous response (Cowboy's request_timeout, which
# MongooseIM's HTTP listeners have): aiohttp's own default is an hour, so a few hundred silent
# sockets held every slot of transport.max_connections, and no BOSH or WebSocket user got in.
REQUEST_TIMEOUT = 5.0
# The body of a request (a BOSH <body/>, a GraphQL query) must have arrived this long after its
# headers (Cowboy's read_body period); a body sent a byte at a time gets 408 and the close.
BODY_TIMEOUT = 15.0


async def read_body(request: web.BaseRequest) -> bytes | None:
    """The request's body, or None when it did not arrive within ``BODY_TIMEOUT`` (the caller
    answers with ``answer_timeout``)."""
    try:
        return await asyncio.wait_for(request.read(), BODY_TIMEOUT)
    except TimeoutError:
        return None


async def answer_timeout(request: web.BaseRequest) -> web.StreamResponse:
    """408 (RFC 9110 §15.5.9) and the close, at once: aiohttp would otherwise linger up to
    10 s reading what is left of the body, which the slow peer keeps sending."""
    response = web.Response(status=408, text="request body too slow\n")
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()
    return response


def make_server(listener: HttpListener) -> web.Server:
    async def dispatch(request: web.BaseRequest) -> web.StreamResponse:
        host = host_of(request.headers.get("Host", ""))
        path = request.path
        if listener.host_meta is not None and path.startswith("/.well-known/host-meta"):
            return to_aiohttp(await listener.host_meta.handle(_convert(request, b"")),
                              request, listener.compress)
        route = listener.find(host, path)
        if route is None:
            return web.Response(status=404, text="not found\n")
        native = getattr(route.handler, "handle_web", None)
        holds = getattr(route.handler, "holds", None)
        if native is not None and (holds is None or holds(request.method, path)):
            return await native(request)  # type: ignore[no-any-return]
        body = await read_body(request) if request.can_read_body else b""
        if body is None:
            return await answer_timeout(request)
        response = await route.handler.handle(_convert(request, body))
        return to_aiohttp(response, request, listener.compress)

    # Bodies over 1 MiB are refused with 413 by aiohttp's request (client_max_size).
    if listener.server_name is None:
        return web.Server(dispatch, access_log=None, keepalive_timeout=REQUEST_TIMEOUT)
    return web.Server(dispatch, access_log=None, keepalive_timeout=REQUEST_TIMEOUT,
                      request_factory=_named_requests(listener.server_name))


def _named_requests(server_name: str) -> Any:
    """general.http_server_name: the ``Server`` header of every response, including those of
    WebSocket/BOSH upgrades and aiohttp's own errors (400, 413), which all go through the
    request's prepare hook before aiohttp fills in its default name."""

    class NamedRequest(web.BaseRequest):
        async def _prepare_hook(self, response: web.StreamResponse) -> None:
            response.headers["Server"] = server_name

    def make(message: Any, payload: Any, protocol: Any, writer: Any,
             task: asyncio.Task[None]) -> web.BaseRequest:
        return NamedRequest(message, payload, protocol, writer, task,
                            asyncio.get_running_loop())

    return make


def _convert(request: web.BaseRequest, body: bytes) -> Request:
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    version = f"HTTP/{request.version.major}.{request.version.minor}"
    peer: Any = request.transport.get_extra_info("peername") if request.transport else None
    return Request(request.method, request.path, request.query_string, version, headers,
                   body, peer)


def to_aiohttp(response: Response, request: web.BaseRequest,
               compress: bool) -> web.Response:
    out = web.Response(status=response.status, body=response.body, headers=response.headers)
    if compress and len(response.body) > 256:
        # listen.http protocol.compress: gzip or deflate as the client's Accept-Encoding allows.
        out.enable_compression()
    return out

"""The GraphQL administration API (MongooseIM 6.4's admin, domain_admin and user endpoints).

Schema first: the ``.graphql`` files under ``schema/`` are the API; ``resolvers/`` gives each
field its code (one file per category) and ``schema.py`` refuses to build a schema with a field
left without one. The command line is generated from the same admin schema (``suricate.cli``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from suricate.core.server import HttpHandlerFactory, Server
    from suricate.net.http.message import HttpHandler


def graphql_handler(server: Server, opts: Mapping[str, Any]) -> HttpHandler:
    """``mongoose_graphql_handler``; graphql-core is imported only when one is configured,
    and on a single node only at the endpoint's first request (``_FirstRequest``)."""
    if server.cfg["general"]["sm_backend"] == "redis":
        # Other nodes ask this one for its metrics (getClusterMetricsAsDicts) from the start.
        from suricate.admin.endpoint import GraphQLEndpoint

        return GraphQLEndpoint(server, opts)
    return cast("HttpHandler", _FirstRequest(server, opts))


class _FirstRequest:
    """The endpoint made at its first request: importing graphql-core and building the
    schema cost about 80 ms, nearly as much as the rest of a start-up (an admin endpoint is
    in the embedded default, for the CLI, which may never be used)."""

    def __init__(self, server: Server, opts: Mapping[str, Any]) -> None:
        self.server, self.opts = server, opts
        #: Where subscriptions are served (``GraphQLEndpoint.sse_path``).
        self.sse_path = f"{str(opts.get('path', '')).rstrip('/')}/sse"
        self._endpoint: Any = None

    def _made(self) -> Any:
        if self._endpoint is None:
            from suricate.admin.endpoint import GraphQLEndpoint

            self._endpoint = GraphQLEndpoint(self.server, self.opts)
        return self._endpoint

    async def handle(self, request: Any) -> Any:
        return await self._made().handle(request)

    def holds(self, method: str, path: str) -> bool:
        return path.rstrip("/") == self.sse_path

    async def handle_web(self, request: Any) -> Any:
        return await self._made().handle_web(request)

    def shutdown(self) -> None:
        if self._endpoint is not None:
            self._endpoint.shutdown()


def admin_rest_handler(server: Server, opts: Mapping[str, Any]) -> HttpHandler:
    """``mongoose_admin_api``: 6.4's REST admin API over the same resolvers."""
    from suricate.admin.rest.admin_api import AdminRestEndpoint

    return AdminRestEndpoint(server, opts)


def client_rest_handler(server: Server, opts: Mapping[str, Any]) -> HttpHandler:
    """``mongoose_client_api``: 6.4's REST client API over the user resolvers."""
    from suricate.admin.rest.client_api import ClientRestEndpoint

    return ClientRestEndpoint(server, opts)


#: The HTTP handlers of this package, for ``Server(..., http_handlers=HTTP_HANDLERS)``.
HTTP_HANDLERS: Mapping[str, HttpHandlerFactory] = {
    "mongoose_graphql_handler": graphql_handler,
    "mongoose_admin_api": admin_rest_handler,
    "mongoose_client_api": client_rest_handler,
}

"""The GraphQL administration API (MongooseIM 6.4's admin, domain_admin and user endpoints).

Schema first: the ``.graphql`` files under ``schema/`` are the API; ``resolvers/`` gives each
field its code (one file per category) and ``schema.py`` refuses to build a schema with a field
left without one. The command line is generated from the same admin schema (``suricate.cli``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from suricate.core.server import HttpHandlerFactory, Server
    from suricate.net.http.message import HttpHandler


def graphql_handler(server: Server, opts: Mapping[str, Any]) -> HttpHandler:
    """``mongoose_graphql_handler``; graphql-core is imported only when one is configured."""
    from suricate.admin.endpoint import GraphQLEndpoint

    return GraphQLEndpoint(server, opts)


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

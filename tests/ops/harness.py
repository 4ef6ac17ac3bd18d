"""Operations tests: a real server with [instrumentation] and [[listen.http]] (Prometheus,
GraphQL admin, domain admin and user endpoints), driven over real HTTP."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from suricate.admin import HTTP_HANDLERS
from suricate.config import parse_config
from suricate.core.server import Server
from suricate.modules import MODULES
from tests.e2e.harness import free_port, server_toml

ADMIN = ("admin", "s3cret")


def admin_endpoint_toml(http: int) -> str:
    """An HTTP listener on ``http`` with the admin GraphQL endpoint at /api/graphql (its
    SSE at /api/graphql/sse), ``ADMIN``'s credentials."""
    return f"""
[[listen.http]]
port = {http}
ip_address = "127.0.0.1"

[[listen.http.handlers.mongoose_graphql_handler]]
host = "_"
path = "/api/graphql"
schema_endpoint = "admin"
username = "{ADMIN[0]}"
password = "{ADMIN[1]}"
"""


def ops_toml(tmp: Path, c2s: int, tls: int, http: int, instrumentation: str | None = None,
             allowed: str = "", modules: str | None = None, auth_extra: str = "") -> str:
    if instrumentation is None:
        instrumentation = "[instrumentation]\nprobe_interval = 1\n[instrumentation.prometheus]"
    extra = f"""
{instrumentation}

[[listen.http]]
port = {http}
ip_address = "127.0.0.1"

[[listen.http.handlers.mongoose_prometheus_handler]]
host = "_"
path = "/metrics"

[[listen.http.handlers.mongoose_graphql_handler]]
host = "_"
path = "/api/graphql"
schema_endpoint = "admin"
username = "{ADMIN[0]}"
password = "{ADMIN[1]}"
{allowed}

[[listen.http.handlers.mongoose_graphql_handler]]
host = "_"
path = "/api/graphql/domain"
schema_endpoint = "domain_admin"

[[listen.http.handlers.mongoose_graphql_handler]]
host = "_"
path = "/api/graphql/user"
schema_endpoint = "user"
"""
    text = server_toml(tmp, c2s, tls, extra, modules=modules, auth_extra=auth_extra)
    return text.replace('default_server_domain = "localhost"',
                        'default_server_domain = "localhost"\nhost_types = ["dynamic"]', 1)


@contextlib.asynccontextmanager
async def ops_server(tmp: Path, **kwargs: Any) -> AsyncIterator[Server]:
    c2s, tls, http = free_port(), free_port(), free_port()
    cfg = parse_config(ops_toml(tmp, c2s, tls, http, **kwargs), tmp)
    server = Server(cfg, tmp, MODULES, http_handlers=HTTP_HANDLERS)
    await server.start()
    server.c2s_port = c2s  # type: ignore[attr-defined]
    server.tls_port = tls  # type: ignore[attr-defined]
    server.http_port = http  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        await server.stop()


def _request(url: str, body: bytes | None, headers: dict[str, str],
             method: str) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


async def http(server: Server, path: str, body: bytes | None = None,
               headers: dict[str, str] | None = None,
               method: str | None = None) -> tuple[int, dict[str, str], bytes]:
    url = f"http://127.0.0.1:{server.http_port}{path}"  # type: ignore[attr-defined]
    return await asyncio.to_thread(_request, url, body, headers or {},
                                   method or ("POST" if body is not None else "GET"))


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"authorization": f"Basic {token}"}


async def gql(server: Server, query: str, variables: dict[str, Any] | None = None,
              auth: tuple[str, str] | None = ADMIN, path: str = "/api/graphql"
              ) -> tuple[int, dict[str, Any]]:
    headers = {"content-type": "application/json"}
    if auth is not None:
        headers.update(basic(*auth))
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    status, _, data = await http(server, path, body, headers)
    return status, json.loads(data)


async def admin(server: Server, query: str, **variables: Any) -> Any:
    """Run an admin operation that must succeed; return its data."""
    status, result = await gql(server, query, variables)
    assert status == 200 and "errors" not in result, result
    return result["data"]

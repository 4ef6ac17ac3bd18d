"""A real server with a c2s listener and an HTTP listener serving mod_websockets (and the
discovery documents), for the browser transports' end-to-end tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from suricate.core.server import Server
from suricate.net.certs import ensure_self_signed
from tests.e2e.harness import free_port, server_toml, serving
from tests.mobile.conftest import add_user, modules_toml


def http_toml(port: int, handlers: str = "", listener_extra: str = "") -> str:
    return f"""
[[listen.http]]
port = {port}
ip_address = "127.0.0.1"
{listener_extra}

[[listen.http.handlers.mod_websockets]]
host = "_"
path = "/ws-xmpp"
{handlers}
"""


@contextlib.asynccontextmanager
async def web_server(tmp: Path, extra: str = "", modules_extra: str = "", https: bool = False,
                     general_extra: str = "", **http: str) -> AsyncIterator[Server]:
    """``server.http_port`` serves WebSockets at /ws-xmpp (over TLS with ``https``, with the
    certificate of the c2s listeners); alice and bob exist. ``general_extra``: lines added to
    [general]."""
    c2s, tls, port = free_port(), free_port(), free_port()
    if https:
        cert, _ = ensure_self_signed(tmp / "certs", ["localhost"])
        http["listener_extra"] = (http.get("listener_extra", "")
                                  + f'\ntls.certfile = "{cert.certfile}"\n'
                                  f'tls.keyfile = "{cert.keyfile}"\ntls.verify_mode = "none"\n')
    toml = server_toml(tmp, c2s, tls, http_toml(port, **http) + extra,
                       modules=modules_toml(modules_extra))
    toml = toml.replace("[general]\n", "[general]\n" + general_extra, 1)
    async with serving(tmp, toml, c2s_port=c2s, tls_port=tls, http_port=port) as server:
        await add_user(server, "alice")
        await add_user(server, "bob")
        yield server

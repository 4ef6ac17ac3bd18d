"""Two (or more) Suricate servers in one test process, federating over loopback: each serves
its own domain, listens for s2s on its own port, and reaches the others through
``[[s2s.outgoing.address]]`` overrides."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from suricate.core.server import Server
from suricate.jid import JID
from suricate.net.certs import ensure_self_signed
from tests.e2e.harness import (
    MODULES_TOML,
    Client,
    auth_toml,
    c2s_listener_toml,
    connect,
    free_port,
    general_toml,
    serving,
    sqlite_pool_toml,
)
from tests.s2s.pki import CertificateAuthority


def federated_toml(tmp: Path, domain: str, c2s_port: int, s2s_port: int,
                   peers: dict[str, tuple[str, int]], auth: str,
                   ca: CertificateAuthority | None, extra: str = "",
                   s2s_extra: str = "", outgoing_extra: str = "",
                   listen_tls: bool = True) -> str:
    """``auth``: "external" (CA-signed certificates both ways, SASL EXTERNAL) or "dialback"
    (self-signed certificates nobody checks: TLS for privacy, dialback for identity)."""
    c2s_cert, _ = ensure_self_signed(tmp / "c2s-certs", [domain])
    if auth == "external":
        assert ca is not None
        issued = ca.issue(domain)
        cert, key = issued.certfile, issued.keyfile
        listen_tls_toml = f"""tls.certfile = "{cert}"
tls.keyfile = "{key}"
tls.cacertfile = "{ca.certfile}"
"""
        out_tls_toml = f"""tls.certfile = "{cert}"
tls.keyfile = "{key}"
tls.cacertfile = "{ca.certfile}"
"""
    else:
        own, _ = ensure_self_signed(tmp / "s2s-certs", [domain])
        listen_tls_toml = f"""tls.certfile = "{own.certfile}"
tls.keyfile = "{own.keyfile}"
tls.verify_mode = "none"
"""
        out_tls_toml = 'tls.verify_mode = "none"\n'
    addresses = "\n".join(f"""
[[s2s.outgoing.address]]
host = "{host}"
ip_address = "{ip}"
port = {port}
""" for host, (ip, port) in peers.items())
    return f"""
{general_toml(domain)}
{c2s_listener_toml(c2s_port, c2s_cert.certfile, c2s_cert.keyfile)}

[[listen.s2s]]
port = {s2s_port}
ip_address = "127.0.0.1"
{listen_tls_toml if listen_tls else ""}
{s2s_extra}

{auth_toml()}
{sqlite_pool_toml(tmp / 'suricate.db')}

[s2s]
default_policy = "allow"

[s2s.outgoing]
connection_timeout = 3000
{"" if "state_timeout" in outgoing_extra else "state_timeout = 5000"}
max_retry_delay = 2
{out_tls_toml}
{outgoing_extra}
{addresses}

{extra}

{MODULES_TOML}
"""


@contextlib.asynccontextmanager
async def federated_server(tmp: Path, domain: str, toml: str, c2s_port: int,
                           s2s_port: int) -> AsyncIterator[Server]:
    tmp.mkdir(parents=True, exist_ok=True)
    async with serving(tmp, toml, c2s_port=c2s_port, s2s_port=s2s_port) as server:
        yield server


@contextlib.asynccontextmanager
async def two_servers(tmp: Path, auth: str, a: str = "alpha.test", b: str = "beta.test",
                      **kwargs: Any) -> AsyncIterator[tuple[Server, Server]]:
    ca = CertificateAuthority(tmp / "ca") if auth == "external" else None
    ports = {d: (free_port(), free_port()) for d in (a, b)}
    tomls = {}
    for me, other in ((a, b), (b, a)):
        tomls[me] = federated_toml(tmp / me, me, ports[me][0], ports[me][1],
                                   {other: ("127.0.0.1", ports[other][1])}, auth, ca,
                                   **kwargs.get(me, {}))
    async with federated_server(tmp / a, a, tomls[a], *ports[a]) as sa, \
            federated_server(tmp / b, b, tomls[b], *ports[b]) as sb:
        yield sa, sb


async def register(server: Server, user: str, password: str = "pass") -> None:
    await server.auth.register(JID(user, server.default_domain, None), password)


async def login(server: Server, jid: str, password: str = "pass",
                plugins: tuple[str, ...] = ()) -> Client:
    return await connect(server, jid, password, plugins=plugins)

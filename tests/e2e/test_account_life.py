"""An account's life on the embedded default (``suricate serve`` with no ``--config``), as
clients drive it: registered in band (XEP-0077 §3.1), its password changed (§3.3, in band as
Conversations and Gajim do it, and by the administrator through GraphQL), then cancelled
(§3.2, Conversations' "delete account"). Real clients over real TLS: slixmpp (its xep_0077
plugin), our SCRAM-PLUS client and our SASL2/FAST client where no library does it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from suricate.admin import HTTP_HANDLERS
from suricate.config import parse_config
from suricate.core.defaults import default_config_toml
from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules import MODULES
from suricate.net.certs import ensure_self_signed
from tests.e2e.harness import Client, connect, disconnect, free_port
from tests.e2e.tls_client import TestClient
from tests.mobile.client import Sasl2Client, bind2, request_token
from tests.ops.harness import ADMIN, admin

REGISTER = ("xep_0004", "xep_0066", "xep_0077")


@contextlib.asynccontextmanager
async def default_server(tmp: Path) -> AsyncIterator[Server]:
    """The embedded default on free ports, plus a GraphQL admin listener (the default has
    none) for the administrator's side."""
    cert, _ = ensure_self_signed(tmp / "certs", ["localhost"],
                                 services=("conference", "pubsub", "upload"))
    ports = {"c2s_port": free_port(), "tls_port": free_port(), "http_port": free_port()}
    toml = default_config_toml(cert.certfile, cert.keyfile, str(tmp / "suricate.db"),
                               c2s_port=ports["c2s_port"], tls_port=ports["tls_port"],
                               http_port=free_port(), https_port=free_port())
    toml += f"""
[[listen.http]]
port = {ports["http_port"]}
ip_address = "127.0.0.1"
[[listen.http.handlers.mongoose_graphql_handler]]
host = "_"
path = "/api/graphql"
schema_endpoint = "admin"
username = "{ADMIN[0]}"
password = "{ADMIN[1]}"
"""
    server = Server(parse_config(toml, tmp), tmp, MODULES, http_handlers=HTTP_HANDLERS)
    await server.start()
    for name, port in ports.items():
        setattr(server, name, port)
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with default_server(tmp_path) as srv:
        yield srv


def stream_error_of(client: Client) -> asyncio.Future[str]:
    fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def on_error(error: Any) -> None:
        if not fut.done():
            fut.set_result(error["condition"])

    client.add_event_handler("stream_error", on_error)
    return fut


async def logs_in(server: Server, user: str, password: str, mech: str) -> bool:
    """A slixmpp login with ``mech``, or SCRAM-SHA-256-PLUS (tls-exporter) with ours."""
    if mech.endswith("-PLUS"):
        def plus() -> bool:
            client = TestClient(server.c2s_port, tls_version="1.3")  # type: ignore[attr-defined]
            try:
                client.open_stream()
                client.starttls()
                ok, _ = client.scram_login(user, password, "SHA-256", cb_type="tls-exporter")
                return ok
            finally:
                client.close()
        return await asyncio.to_thread(plus)
    try:
        client = await connect(server, f"{user}@localhost/check", password, sasl_mech=mech)
    except (PermissionError, ConnectionError):
        return False
    await disconnect(client)
    return True


def fast_token(server: Server, user: str, password: str) -> str:
    """A XEP-0484 token, asked for at a SASL2 PLAIN login as Conversations does."""
    client = Sasl2Client(server.tls_port, direct_tls=True)  # type: ignore[attr-defined]
    try:
        client.features()
        out = client.plain(user, password, bind2() + request_token("HT-SHA-256-NONE"),
                           agent="phone")
        assert out.ok and out.token is not None, out.xml
        return str(out.token[0])
    finally:
        client.close()


def fast_login_ok(server: Server, user: str, token: str) -> bool:
    client = Sasl2Client(server.tls_port, direct_tls=True)  # type: ignore[attr-defined]
    try:
        client.features()
        return bool(client.fast(user, token, "HT-SHA-256-NONE", bind2()).ok)
    finally:
        client.close()


# -- password change ------------------------------------------------------------------------
MECHS = ("SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", "PLAIN")


async def test_in_band_password_change(server: Server) -> None:
    await server.auth.register(JID.parse("alice@localhost"), "old-pw")
    token = await asyncio.to_thread(fast_token, server, "alice", "old-pw")
    phone = await connect(server, "alice@localhost/phone", "old-pw", direct_tls=True,
                          plugins=("xep_0030", *REGISTER))
    laptop = await connect(server, "alice@localhost/laptop", "old-pw")
    laptop_error = stream_error_of(laptop)
    phone_error = stream_error_of(phone)
    await phone.plugin["xep_0077"].change_password("new-pw")
    # The other session was opened with the old password: it ends (as in Prosody), with
    # 'reset' (RFC 6120 §4.9.3.19: its credentials were revoked); the client logs in again
    # with the new password or asks its user for it.
    assert await asyncio.wait_for(laptop_error, 5) == "reset"
    # The session that changed it stays, and still answers.
    await phone.plugin["xep_0030"].get_info(jid="localhost", timeout=5)
    assert not phone_error.done()
    for mech in MECHS:
        assert not await logs_in(server, "alice", "old-pw", mech), mech
        assert await logs_in(server, "alice", "new-pw", mech), mech
    # XEP-0484 §6 (Security Considerations): tokens issued before go with the old password.
    assert not await asyncio.to_thread(fast_login_ok, server, "alice", token)
    await disconnect(phone, laptop)


async def test_password_change_by_the_administrator(server: Server) -> None:
    await server.auth.register(JID.parse("bob@localhost"), "old-pw")
    token = await asyncio.to_thread(fast_token, server, "bob", "old-pw")
    phone = await connect(server, "bob@localhost/phone", "old-pw")
    error = stream_error_of(phone)
    await admin(server, 'mutation { account { changeUserPassword(user: "bob@localhost", '
                'newPassword: "new-pw") { message } } }')
    # No session of the account made the change: every one of them ends.
    assert await asyncio.wait_for(error, 5) == "reset"
    for mech in MECHS:
        assert not await logs_in(server, "bob", "old-pw", mech), mech
        assert await logs_in(server, "bob", "new-pw", mech), mech
    assert not await asyncio.to_thread(fast_login_ok, server, "bob", token)
    await disconnect(phone)

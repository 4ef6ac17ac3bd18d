"""The http method against a local aiohttp service speaking MongooseIM 6.4's protocol
(GET check_password/get_password/user_exists with ?user=&server=&pass=, POST register/
set_password/remove_user with the same fields as a form), with slixmpp clients over TLS."""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from suricate.jid import JID
from suricate.net.certs import ensure_self_signed
from tests.auth.common import offered, plain_auth, plain_outcome
from tests.e2e.harness import RawClient, connect, disconnect, free_port, running_server

BASIC = "suricate:s3cret"


class AuthService:
    """The service: accounts in a dict, keyed by (user, server); checks Basic auth."""

    def __init__(self) -> None:
        self.users: dict[tuple[str, str], str] = {}
        self.calls: list[str] = []
        self.down = False
        self.delay = 0.0  # seconds before answering: a slow service

    def _key(self, fields: Any) -> tuple[str, str]:
        return fields["user"], fields["server"]

    async def handle(self, request: web.Request) -> web.Response:
        verb = request.match_info["verb"]
        self.calls.append(verb)
        await asyncio.sleep(self.delay)
        if self.down:
            return web.Response(status=500)
        expected = "Basic " + base64.b64encode(BASIC.encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401)
        fields: Any = request.query if request.method == "GET" else await request.post()
        key = self._key(fields)
        if verb == "check_password":
            ok = self.users.get(key) == fields["pass"]
            return web.Response(text="true" if ok else "false")
        if verb == "user_exists":
            return web.Response(text="true" if key in self.users else "false")
        if verb == "get_password":
            if key not in self.users:
                return web.Response(status=404)
            return web.Response(text=self.users[key])
        if verb == "register":
            if key in self.users:
                return web.Response(status=409)
            self.users[key] = fields["pass"]
            return web.Response(status=201)
        if verb == "set_password":
            if key not in self.users:
                return web.Response(status=404)
            self.users[key] = fields["pass"]
            return web.Response(status=204)
        if verb == "remove_user":
            if self.users.pop(key, None) is None:
                return web.Response(status=404)
            return web.Response(status=204)
        return web.Response(status=400)


@pytest.fixture
async def service() -> AsyncIterator[tuple[AuthService, int]]:
    svc = AuthService()
    app = web.Application()
    app.router.add_route("*", "/auth/{verb}", svc.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield svc, port
    await runner.cleanup()


def pool(port: int) -> str:
    return f"""
[outgoing_pools.http.auth.connection]
host = "http://127.0.0.1:{port}"
path_prefix = "/auth/"
request_timeout = 1000
"""


HTTP_AUTH = f"""
[auth.http]
basic_auth = "{BASIC}"
"""


def methods(*names: str, fmt: str = "plain") -> str:
    listed = ", ".join(f'"{n}"' for n in names)
    return f'methods = [{listed}]\npassword.format = "{fmt}"'


async def test_plain_passwords_scram_and_plain_logins(tmp_path: Path,
                                                      service: tuple[AuthService, int]) -> None:
    svc, port = service
    svc.users[("alice", "localhost")] = "wonderland"
    async with running_server(tmp_path, auth_extra=methods("http"),
                              extra=pool(port) + HTTP_AUTH) as server:
        # get_password gives the password: SCRAM works, as with a database.
        assert "SCRAM-SHA-256" in await offered(server)
        a = await connect(server, "alice@localhost/r", "wonderland", sasl_mech="SCRAM-SHA-256")
        assert "get_password" in svc.calls
        svc.calls.clear()
        b = await connect(server, "alice@localhost/p", "wonderland", sasl_mech="PLAIN")
        assert svc.calls == ["check_password"]
        with pytest.raises(PermissionError):
            await connect(server, "alice@localhost/x", "wrong", sasl_mech="PLAIN")
        with pytest.raises(PermissionError):
            await connect(server, "nobody@localhost/x", "wrong", sasl_mech="SCRAM-SHA-1")
        # Accounts are created, changed and removed through the service.
        bob = JID.parse("bob@localhost")
        assert await server.auth.register(bob, "builder")
        assert not await server.auth.register(bob, "again")
        assert svc.users[("bob", "localhost")] == "builder"
        assert await server.auth.user_exists(bob)
        assert await server.auth.set_password(bob, "new")
        assert await server.auth.check_password(bob, "new")
        assert await server.auth.remove(bob)
        assert not await server.auth.user_exists(bob)
        await disconnect(a, b)


async def test_scram_format_sends_records_and_checks_locally(
        tmp_path: Path, service: tuple[AuthService, int]) -> None:
    svc, port = service
    async with running_server(tmp_path, auth_extra=methods("http", fmt="scram"),
                              extra=pool(port) + HTTP_AUTH) as server:
        assert await server.auth.register(JID.parse("carol@localhost"), "pw")
        # 6.4: with SCRAM the service stores the serialized record, never the password.
        assert svc.users[("carol", "localhost")].startswith("==MULTI_SCRAM==")
        c = await connect(server, "carol@localhost/r", "pw", sasl_mech="SCRAM-SHA-512")
        d = await connect(server, "carol@localhost/s", "pw", sasl_mech="PLAIN")
        await disconnect(c, d)


async def test_service_down_gives_temporary_auth_failure(
        tmp_path: Path, service: tuple[AuthService, int]) -> None:
    svc, port = service
    svc.users[("alice", "localhost")] = "wonderland"
    async with running_server(tmp_path, auth_extra=methods("http"),
                              extra=pool(port) + HTTP_AUTH) as server:
        svc.down = True  # HTTP 500
        assert await plain_outcome(server, "alice", "wonderland") == "temporary-auth-failure"
        svc.down = False
        assert await plain_outcome(server, "alice", "wonderland") == "success"
        assert await plain_outcome(server, "alice", "bad") == "not-authorized"
    # Nothing listening at all.
    async with running_server(tmp_path / "2", auth_extra=methods("http"),
                              extra=pool(free_port()) + HTTP_AUTH) as server:
        assert await plain_outcome(server, "alice", "wonderland") == "temporary-auth-failure"


async def test_a_slow_service_answers_before_the_state_timeout(
        tmp_path: Path, service: tuple[AuthService, int]) -> None:
    """request_timeout (5 s) longer than the listener's state_timeout (1 s): the client gets
    temporary-auth-failure (RFC 6120 §6.5.12) in time, not a connection-timeout."""
    svc, port = service
    svc.users[("alice", "localhost")] = "wonderland"
    svc.delay = 3
    slow_pool = pool(port).replace("request_timeout = 1000", "request_timeout = 5000")
    async with running_server(tmp_path, auth_extra=methods("http"),
                              extra=slow_pool + HTTP_AUTH, tls_mode="tls",
                              c2s_extra="state_timeout = 1000") as server:
        port = server.c2s_port  # type: ignore[attr-defined]
        started = time.monotonic()
        assert await plain_outcome(server, "alice", "wonderland", port) \
            == "temporary-auth-failure"
        assert time.monotonic() - started < 1.5


async def test_wrong_basic_auth_is_a_service_failure(
        tmp_path: Path, service: tuple[AuthService, int]) -> None:
    svc, port = service
    svc.users[("alice", "localhost")] = "wonderland"
    wrong = '\n[auth.http]\nbasic_auth = "suricate:nope"\n'
    async with running_server(tmp_path, auth_extra=methods("http"),
                              extra=pool(port) + wrong) as server:
        assert await plain_outcome(server, "alice", "wonderland") == "temporary-auth-failure"


async def test_methods_in_order_http_then_rdbms(tmp_path: Path,
                                                service: tuple[AuthService, int]) -> None:
    svc, port = service
    svc.users[("alice", "localhost")] = "from-http"
    async with running_server(tmp_path, auth_extra=methods("http", "rdbms"),
                              extra=pool(port) + HTTP_AUTH) as server:
        await server.storage.create_user("localhost", "dave", "from-db", None)
        a = await connect(server, "alice@localhost/r", "from-http", sasl_mech="PLAIN")
        d = await connect(server, "dave@localhost/r", "from-db", sasl_mech="PLAIN")
        d2 = await connect(server, "dave@localhost/s", "from-db", sasl_mech="SCRAM-SHA-1")
        # The first method that accepts wins; the service down does not hide the database.
        svc.down = True
        assert await plain_outcome(server, "dave", "from-db") == "success"
        assert await plain_outcome(server, "alice", "from-http") == "temporary-auth-failure"
        # SCRAM too: get_password failing does not hide the database's record
        d3 = await connect(server, "dave@localhost/t", "from-db", sasl_mech="SCRAM-SHA-256")
        await asyncio.sleep(0)
        await disconnect(a, d, d2, d3)


async def test_fast_token_after_a_plain_login_through_http(
        tmp_path: Path, service: tuple[AuthService, int]) -> None:
    """XEP-0484 tokens bind to the credentials get_password gives; a changed password at the
    service ends them."""
    from tests.mobile.client import Sasl2Client, bind2, request_token
    from tests.mobile.conftest import modules_toml

    svc, port = service
    svc.users[("alice", "localhost")] = "wonderland"

    def run(server_port: int) -> tuple[bool, bool, bool]:
        c = Sasl2Client(server_port, direct_tls=True)
        c.features()
        out = c.plain("alice", "wonderland", bind2() + request_token("HT-SHA-256-NONE"))
        c.close()
        assert out.ok and out.token is not None, out.xml
        c = Sasl2Client(server_port, direct_tls=True)
        c.features()
        fast = c.fast("alice", out.token[0], "HT-SHA-256-NONE", bind2())
        c.close()
        svc.users[("alice", "localhost")] = "changed"
        c = Sasl2Client(server_port, direct_tls=True)
        c.features()
        stale = c.fast("alice", out.token[0], "HT-SHA-256-NONE", bind2())
        c.close()
        return out.ok, fast.ok, stale.ok

    async with running_server(tmp_path, auth_extra=methods("http"), modules=modules_toml(),
                              extra=pool(port) + HTTP_AUTH) as server:
        assert await asyncio.to_thread(run, server.tls_port) == (  # type: ignore[attr-defined]
            True, True, False)


async def test_login_anon_one_connection_per_name_even_at_once(
        tmp_path: Path, service: tuple[AuthService, int]) -> None:
    """Two guests logging in with the same name at the same moment, while the service is
    asked whether the name is an account's: one gets in, the other is refused (6.4's
    allow_multiple_connections = false)."""
    svc, port = service
    svc.delay = 0.3
    auth = methods("http", "anonymous") + '\nanonymous.protocol = "login_anon"'
    async with running_server(tmp_path, auth_extra=auth, extra=pool(port) + HTTP_AUTH) as server:
        clients = [await RawClient.open(server.tls_port, tls=True)  # type: ignore[attr-defined]
                   for _ in range(2)]
        try:
            for raw in clients:
                await raw.open_stream()
            for raw in clients:
                await raw.send(plain_auth("guest", "any"))
            answers = await asyncio.gather(*(raw.expect(r"<success.*?/>|<failure.*?</failure>")
                                             for raw in clients))
        finally:
            for raw in clients:
                await raw.close()
        assert sorted(a[:8] for a in answers) == ["<failure", "<success"], answers


async def test_pool_tls_verifies_the_service_against_its_cacertfile(tmp_path: Path) -> None:
    """The pool's ``tls`` table is used: a service with its own certificate (not in the OS
    store) is reached when it is given as ``tls.cacertfile``; without it the certificate is
    refused and the login fails for want of an answer (the password is never sent)."""
    svc = AuthService()
    svc.users[("alice", "localhost")] = "wonderland"
    app = web.Application()
    app.router.add_route("*", "/auth/{verb}", svc.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    cert, _ = ensure_self_signed(tmp_path / "service", ["localhost"])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert.certfile, cert.keyfile)
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    https = pool(port).replace("http://127.0.0.1", "https://localhost")
    try:
        async with running_server(tmp_path / "a", auth_extra=methods("http"),
                                  extra=https + HTTP_AUTH) as server:
            with pytest.raises(PermissionError):
                await connect(server, "alice@localhost/r", "wonderland", sasl_mech="PLAIN")
            assert svc.calls == []
        trusted = https + f'tls.cacertfile = "{cert.certfile}"\n'
        async with running_server(tmp_path / "b", auth_extra=methods("http"),
                                  extra=trusted + HTTP_AUTH) as server:
            alice = await connect(server, "alice@localhost/r", "wonderland", sasl_mech="PLAIN")
            assert svc.calls == ["check_password"]
            await disconnect(alice)
    finally:
        await runner.cleanup()

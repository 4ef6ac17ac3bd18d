"""mod_muc's http_auth_pool (MongooseIM 6.4): the passwords of password-protected rooms are
checked by an HTTP service (a local aiohttp server here), through an
[outgoing_pools.http] pool; slixmpp clients over TLS."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from slixmpp import JID as SJID
from slixmpp.exceptions import PresenceError

from suricate.config.loader import ConfigError, parse_config
from suricate.net.certs import ensure_self_signed
from tests.e2e.harness import disconnect, free_port, running_server
from tests.muc.conftest import SERVICE, codes, muc_toml, user

ROOM = f"secret@{SERVICE}"


@pytest.fixture
async def auth_service() -> AsyncIterator[tuple[int, list[dict[str, str]]]]:
    """check_password: "open sesame" is right (code 0), "broken" gets a 500, others code 1."""
    async with _service(None) as started:
        yield started


@contextlib.asynccontextmanager
async def _service(context: ssl.SSLContext | None
                   ) -> AsyncIterator[tuple[int, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []

    async def check_password(request: web.Request) -> web.Response:
        seen.append(dict(request.query))
        if request.query.get("pass") == "broken":
            return web.Response(status=500, text="oops")
        if request.query.get("pass") == "open sesame":
            return web.json_response({"code": 0, "msg": "OK"})
        return web.json_response({"code": 1, "msg": "wrong password"})

    app = web.Application()
    app.router.add_get("/muc/check_password", check_password)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    try:
        yield port, seen
    finally:
        await runner.cleanup()


async def _join(client: Any, nick: str, password: str | None) -> Any:
    pres, _, _, _ = await client.plugin["xep_0045"].join_muc_wait(
        SJID(ROOM), nick, password=password, timeout=5)
    return pres


async def test_http_auth_pool_checks_room_passwords(
        tmp_path: Path, auth_service: tuple[int, list[dict[str, str]]]) -> None:
    port, seen = auth_service
    pools = (f'[outgoing_pools.http.muc_auth.connection]\nhost = "http://127.0.0.1:{port}"\n'
             'path_prefix = "/muc"\n')
    options = ('http_auth_pool = "muc_auth"\ndefault_room.password_protected = true\n')
    async with running_server(tmp_path, extra=pools, modules=muc_toml(options)) as server:
        alice, bob = await user(server, "alice"), await user(server, "bob")
        # The creator is the owner: no check (as in 6.4), an instant room.
        pres = await _join(alice, "Alice", None)
        assert "201" in codes(pres)
        form = alice.plugin["xep_0004"].make_form(ftype="submit")
        await alice.plugin["xep_0045"].set_room_config(SJID(ROOM), form, timeout=5)
        assert seen == []
        # The service says no: not-authorized with its code and message.
        with pytest.raises(PresenceError) as refused:
            await _join(bob, "Bob", "guess")
        assert refused.value.condition == "not-authorized"
        assert refused.value.text == "1 wrong password"
        assert seen[-1] == {"from": "bob@localhost/r", "to": ROOM, "pass": "guess"}
        # The service fails: service-unavailable.
        with pytest.raises(PresenceError) as failed:
            await _join(bob, "Bob", "broken")
        assert failed.value.condition == "service-unavailable"
        # No password at all: not-authorized without asking the service.
        asked = len(seen)
        with pytest.raises(PresenceError) as missing:
            await _join(bob, "Bob", None)
        assert missing.value.condition == "not-authorized" and len(seen) == asked
        # The service says yes: Bob is in (the room's own password, empty, is not consulted).
        pres = await _join(bob, "Bob", "open sesame")
        assert "110" in codes(pres) and pres["muc"]["role"] == "participant"
        await disconnect(alice, bob)


async def test_http_auth_pool_tls_cacertfile(tmp_path: Path) -> None:
    """The pool's ``tls`` table is used: a service with its own certificate is reached
    over https when it is the pool's ``tls.cacertfile``."""
    cert, _ = ensure_self_signed(tmp_path / "service", ["localhost"])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert.certfile, cert.keyfile)
    async with _service(context) as (port, seen):
        pools = (f'[outgoing_pools.http.muc_auth.connection]\nhost = "https://localhost:{port}"\n'
                 f'path_prefix = "/muc"\ntls.cacertfile = "{cert.certfile}"\n')
        options = 'http_auth_pool = "muc_auth"\ndefault_room.password_protected = true\n'
        async with running_server(tmp_path, extra=pools, modules=muc_toml(options)) as server:
            alice, bob = await user(server, "alice"), await user(server, "bob")
            await _join(alice, "Alice", None)
            form = alice.plugin["xep_0004"].make_form(ftype="submit")
            await alice.plugin["xep_0045"].set_room_config(SJID(ROOM), form, timeout=5)
            pres = await _join(bob, "Bob", "open sesame")
            assert "110" in codes(pres) and len(seen) == 1
            await disconnect(alice, bob)


def test_http_auth_pool_must_name_a_pool(tmp_path: Path) -> None:
    toml = ('[general]\nhosts = ["localhost"]\ndefault_server_domain = "localhost"\n'
            '[modules.mod_muc]\nhttp_auth_pool = "nowhere"\n')
    with pytest.raises(ConfigError) as err:
        parse_config(toml, tmp_path)
    assert ("modules.mod_muc.http_auth_pool: pool 'nowhere' is not defined in "
            "[outgoing_pools.http]") in str(err.value)
